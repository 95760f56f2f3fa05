//! `zimage backup DIR` and `zimage restore DIR`: a copy of the history (stars and search included)
//! and of the images that a running studio keeps serving and saving meanwhile.
//!
//! A backup folder holds `history.sqlite3` (SQLite's online backup: a snapshot taken while the studio
//! may be writing), `images/<id>.png` for every row of that snapshot, and `zimage-backup.json`, written
//! last, which says the folder is a whole backup. Images never change once saved, so a backup into an
//! earlier backup's folder copies only the new ones and removes the deleted ones. Thumbnails are made
//! again on demand and are not kept.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::history::{self, History, HistoryError};
use crate::images;
use crate::job_id::JobId;

/// The file that makes a folder a backup; written last.
pub const MANIFEST: &str = "zimage-backup.json";
/// The version of the backup layout.
const FORMAT: u32 = 1;

/// What `zimage-backup.json` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub records: usize,
}

/// What a backup or a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// History rows in the copy.
    pub records: usize,
    /// Images copied now.
    pub images_copied: usize,
    /// Images already in the backup folder from an earlier backup.
    pub images_kept: usize,
    /// Images of an earlier backup deleted from the studio since, removed from the backup.
    pub images_removed: usize,
    /// Rows whose image was deleted while the backup ran, left out.
    pub rows_left_out: usize,
}

/// A backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path} has no studio data (no {})", history::DATABASE_FILE)]
    NoData { path: PathBuf },
    #[error(
        "{path} is not empty and is not a backup folder: back up into an empty folder or an earlier backup"
    )]
    NotABackupFolder { path: PathBuf },
    #[error("{path} is not a backup: {reason}")]
    NotABackup { path: PathBuf, reason: String },
    #[error("the data folder {path} is not empty: restore only into an empty (or new) data folder")]
    DataNotEmpty { path: PathBuf },
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("cannot use {path}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `zimage backup`: copies the history and images of `data_dir` into `dir`.
pub async fn backup(data_dir: PathBuf, dir: PathBuf) -> Result<Report, BackupError> {
    in_blocking(move || backup_blocking(&data_dir, &dir)).await
}

/// `zimage restore`: brings the backup in `dir` back into the empty data folder `data_dir`.
pub async fn restore(dir: PathBuf, data_dir: PathBuf) -> Result<Report, BackupError> {
    in_blocking(move || restore_blocking(&dir, &data_dir)).await
}

async fn in_blocking(
    work: impl FnOnce() -> Result<Report, BackupError> + Send + 'static,
) -> Result<Report, BackupError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| BackupError::Io {
            path: PathBuf::new(),
            source: io::Error::other(error.to_string()),
        })?
}

/// [`backup`] on the calling thread.
pub fn backup_blocking(data_dir: &Path, dir: &Path) -> Result<Report, BackupError> {
    let database = data_dir.join(history::DATABASE_FILE);
    if !database.is_file() {
        return Err(BackupError::NoData {
            path: data_dir.to_owned(),
        });
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    // An earlier backup, or one cut short before its manifest (only this module's names in it).
    let ours = [
        MANIFEST,
        history::DATABASE_FILE,
        "images",
        PICTURES,
        ".history.sqlite3.partial",
    ];
    let mut names = std::fs::read_dir(dir).map_err(io_error(dir))?;
    let only_ours =
        names.all(|entry| entry.is_ok_and(|entry| ours.iter().any(|name| entry.file_name() == *name)));
    if !only_ours {
        return Err(BackupError::NotABackupFolder { path: dir.to_owned() });
    }
    // The snapshot first: every image it names was durably on disk before its row was committed.
    let snapshot = dir.join(".history.sqlite3.partial");
    remove_if_there(&snapshot)?;
    history::copy_database(&database, &snapshot)?;
    let ids = history::check_database(&snapshot)?;

    let (from_images, to_images) = (data_dir.join("images"), dir.join("images"));
    std::fs::create_dir_all(&to_images).map_err(io_error(&to_images))?;
    let mut report = Report::default();
    let mut gone = Vec::new();
    for id in &ids {
        let name = format!("{id}.png");
        let (from, to) = (from_images.join(&name), to_images.join(&name));
        let size = match std::fs::metadata(&from) {
            Ok(metadata) => metadata.len(),
            // Deleted after the snapshot: the backup leaves its row out too.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                gone.push(*id);
                continue;
            }
            Err(error) => return Err(io_error(&from)(error)),
        };
        if std::fs::metadata(&to).is_ok_and(|kept| kept.len() == size) {
            report.images_kept += 1;
            continue;
        }
        match copy_durably(&from, &to) {
            Ok(()) => report.images_copied += 1,
            Err(error) if error.kind() == io::ErrorKind::NotFound => gone.push(*id),
            Err(error) => return Err(io_error(&from)(error)),
        }
    }
    if !gone.is_empty() {
        history::delete_rows(&snapshot, &gone)?;
    }
    report.rows_left_out = gone.len();
    report.records = ids.len() - gone.len();
    let kept: BTreeSet<JobId> = ids.difference(&gone.into_iter().collect()).copied().collect();
    report.images_removed = remove_others(&to_images, &kept)?;
    atomic_file::sync_dir_blocking(&to_images).map_err(io_error(&to_images))?;
    // The pictures images started from (named by their content, so a copy of the same size is the
    // same picture).
    mirror_pictures(&data_dir.join(PICTURES), &dir.join(PICTURES))?;

    // The database in place, then the manifest: a backup cut short has no new manifest, and an old
    // manifest with a newer database still names only images that are there.
    std::fs::File::open(&snapshot)
        .and_then(|file| file.sync_all())
        .map_err(io_error(&snapshot))?;
    let final_database = dir.join(history::DATABASE_FILE);
    std::fs::rename(&snapshot, &final_database).map_err(io_error(&final_database))?;
    let manifest = Manifest {
        format: FORMAT,
        created_at: now_ms(),
        records: report.records,
    };
    write_durably(
        &dir.join(MANIFEST),
        &serde_json::to_vec_pretty(&manifest).map_err(|error| io_error(dir)(error.into()))?,
    )?;
    atomic_file::sync_dir_blocking(dir).map_err(io_error(dir))?;
    tracing::info!(
        records = report.records,
        copied = report.images_copied,
        kept = report.images_kept,
        removed = report.images_removed,
        "backup written"
    );
    Ok(report)
}

/// Checks the backup in `dir`: its manifest, the database's integrity, and a whole PNG for every row.
/// The rows' ids.
pub fn check_backup(dir: &Path) -> Result<BTreeSet<JobId>, BackupError> {
    let not_a_backup = |reason: String| BackupError::NotABackup {
        path: dir.to_owned(),
        reason,
    };
    let manifest: Manifest = std::fs::read(dir.join(MANIFEST))
        .map_err(|error| not_a_backup(format!("no readable {MANIFEST} ({error})")))
        .and_then(|bytes| {
            serde_json::from_slice(&bytes).map_err(|error| not_a_backup(format!("{MANIFEST}: {error}")))
        })?;
    if manifest.format != FORMAT {
        return Err(not_a_backup(format!(
            "format {} (this studio reads format {FORMAT})",
            manifest.format
        )));
    }
    let database = dir.join(history::DATABASE_FILE);
    if !database.is_file() {
        return Err(not_a_backup(format!("no {}", history::DATABASE_FILE)));
    }
    let ids = history::check_database(&database)
        .map_err(|error| not_a_backup(format!("the database fails its check: {error:#}")))?;
    for id in &ids {
        let path = dir.join("images").join(format!("{id}.png"));
        let png =
            std::fs::read(&path).map_err(|error| not_a_backup(format!("{}: {error}", path.display())))?;
        images::png_size(&png).map_err(|error| not_a_backup(format!("{}: {error}", path.display())))?;
    }
    Ok(ids)
}

/// [`restore`] on the calling thread.
pub fn restore_blocking(dir: &Path, data_dir: &Path) -> Result<Report, BackupError> {
    let has_anything = match std::fs::read_dir(data_dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => false,
        Err(error) => return Err(io_error(data_dir)(error)),
    };
    if has_anything {
        return Err(BackupError::DataNotEmpty {
            path: data_dir.to_owned(),
        });
    }
    let ids = check_backup(dir)?;
    let (from_images, to_images) = (dir.join("images"), data_dir.join("images"));
    std::fs::create_dir_all(&to_images).map_err(io_error(&to_images))?;
    let mut report = Report {
        records: ids.len(),
        ..Report::default()
    };
    // Images first, the database last: a restore cut short leaves images without rows, which the
    // studio's start-up moves to the lost and found; running the restore again needs an empty folder.
    for id in &ids {
        let name = format!("{id}.png");
        copy_durably(&from_images.join(&name), &to_images.join(&name)).map_err(io_error(&to_images))?;
        report.images_copied += 1;
    }
    atomic_file::sync_dir_blocking(&to_images).map_err(io_error(&to_images))?;
    mirror_pictures(&dir.join(PICTURES), &data_dir.join(PICTURES))?;
    let database = data_dir.join(history::DATABASE_FILE);
    copy_durably(&dir.join(history::DATABASE_FILE), &database).map_err(io_error(&database))?;
    atomic_file::sync_dir_blocking(data_dir).map_err(io_error(data_dir))?;
    // Opening it brings it to this build's schema, in WAL mode, as the studio will.
    let restored = History::open_blocking(data_dir)?;
    tracing::info!(
        records = restored.len(),
        images = report.images_copied,
        "backup restored"
    );
    Ok(report)
}

/// The folder of the pictures jobs start from, in a data folder and in a backup.
const PICTURES: &str = "pictures";

/// Copies every picture of `from` that `to` lacks (a folder without pictures is no error: a studio
/// that never started from a picture has none).
fn mirror_pictures(from: &Path, to: &Path) -> Result<(), BackupError> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error(from)(error)),
    };
    std::fs::create_dir_all(to).map_err(io_error(to))?;
    for entry in entries {
        let entry = entry.map_err(io_error(from))?;
        let name = entry.file_name();
        let is_picture = name
            .to_str()
            .is_some_and(|name| name.ends_with(".png") && !atomic_file::is_temporary(name));
        if !is_picture {
            continue;
        }
        let size = entry.metadata().map_err(io_error(from))?.len();
        let target = to.join(&name);
        if std::fs::metadata(&target).is_ok_and(|kept| kept.len() == size) {
            continue;
        }
        copy_durably(&entry.path(), &target).map_err(io_error(&target))?;
    }
    atomic_file::sync_dir_blocking(to).map_err(io_error(to))
}

/// Copies a file under a temporary name, flushes it, then renames it into place.
fn copy_durably(from: &Path, to: &Path) -> io::Result<()> {
    let temporary = to.with_extension("partial");
    std::fs::copy(from, &temporary)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, to)
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(io_error(path))
}

fn remove_if_there(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(io_error(path)(error)),
        _ => Ok(()),
    }
}

/// Removes the files of `dir` that are not the image of a kept id (deleted images, partial copies).
fn remove_others(dir: &Path, kept: &BTreeSet<JobId>) -> Result<usize, BackupError> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let id = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".png"))
            .and_then(|id| id.parse::<JobId>().ok());
        if id.is_some_and(|id| kept.contains(&id)) {
            continue;
        }
        std::fs::remove_file(&path).map_err(io_error(&path))?;
        if id.is_some() {
            removed += 1;
        }
    }
    Ok(removed)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Filter, HistoryRecord, SearchText};
    use crate::images::ImageStore;
    use zimage_contract::Timings;

    fn png(side: u32) -> bytes::Bytes {
        let image = image::RgbImage::from_fn(side, side, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = std::io::Cursor::new(Vec::new());
        image.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner().into()
    }

    fn record(prompt: &str) -> HistoryRecord {
        HistoryRecord {
            id: JobId::new(),
            owner: None,
            prompt: prompt.to_owned(),
            seed: 42,
            width: 16,
            height: 16,
            timings: Timings {
                queued_at: 1,
                started_at: Some(2),
                finished_at: Some(3),
            },
            elapsed_ms: 2,
            backend: Some("gpu-1".to_owned()),
            source: None,
            loras: Vec::new(),
        }
    }

    /// A studio's data folder, open (as a running studio has it), with images and stars.
    async fn studio(root: &Path, prompts: &[&str]) -> (History, ImageStore, Vec<HistoryRecord>) {
        let history = History::open(root).await.unwrap();
        let images = ImageStore::open(&root.join("images")).await.unwrap();
        let mut records = Vec::new();
        for (n, prompt) in prompts.iter().enumerate() {
            let record = record(prompt);
            crate::storage::save(&images, &history, record.clone(), png(16 + n as u32))
                .await
                .unwrap();
            records.push(record);
        }
        (history, images, records)
    }

    async fn search(history: &History, text: &str, starred_only: bool) -> Vec<JobId> {
        let filter = Filter {
            text: SearchText::parse(text).unwrap(),
            starred_only,
        };
        let (found, _) = history.search(filter, 100, None).await.unwrap();
        found.into_iter().map(|entry| entry.record.id).collect()
    }

    #[tokio::test]
    async fn a_backup_of_a_running_studio_restores_stars_search_and_images() {
        let (data, kept, empty) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let (history, _images, records) = studio(
            data.path(),
            &["一只在雪地里的红狐狸", "a heron at dawn", "an owl"],
        )
        .await;
        assert!(history.set_starred(records[1].id, true).await.unwrap());
        // A picture one of them started from.
        let pictures = data.path().join(PICTURES);
        std::fs::create_dir_all(&pictures).unwrap();
        let picture = format!("{}.png", "ab".repeat(32));
        std::fs::write(pictures.join(&picture), png(24)).unwrap();

        // The studio stays open (and keeps its connections) while the backup runs.
        let report = backup(data.path().to_owned(), kept.path().to_owned())
            .await
            .unwrap();
        assert_eq!((report.records, report.images_copied), (3, 3));
        assert_eq!(check_backup(kept.path()).unwrap().len(), 3);

        let restored_dir = empty.path().join("data");
        let report = restore(kept.path().to_owned(), restored_dir.clone())
            .await
            .unwrap();
        assert_eq!((report.records, report.images_copied), (3, 3));
        let restored = History::open(&restored_dir).await.unwrap();
        assert_eq!(search(&restored, "狐狸", false).await, vec![records[0].id]);
        assert_eq!(search(&restored, "", true).await, vec![records[1].id]);
        assert_eq!(restored.get(records[2].id), Some(records[2].clone()));
        assert_eq!(
            std::fs::read(restored_dir.join(PICTURES).join(&picture)).unwrap(),
            png(24)
        );
        let restored_images = ImageStore::open(&restored_dir.join("images")).await.unwrap();
        let recovery = crate::storage::recover(&restored_images, &restored)
            .await
            .unwrap();
        assert!(recovery.is_clean(), "{recovery:?}");
        for (n, record) in records.iter().enumerate() {
            let bytes = restored_images
                .read(record.id, crate::images::Variant::Full)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(bytes, png(16 + n as u32));
        }
        drop(history);
    }

    #[tokio::test]
    async fn a_second_backup_into_the_same_folder_copies_only_what_changed() {
        let (data, kept) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (history, images, records) = studio(data.path(), &["one", "two", "three"]).await;
        backup_blocking(data.path(), kept.path()).unwrap();
        history.remove(records[0].id).await.unwrap();
        images.remove(records[0].id).await.unwrap();
        let added = record("four");
        crate::storage::save(&images, &history, added.clone(), png(40))
            .await
            .unwrap();
        let report = backup_blocking(data.path(), kept.path()).unwrap();
        assert_eq!(
            report,
            Report {
                records: 3,
                images_copied: 1,
                images_kept: 2,
                images_removed: 1,
                rows_left_out: 0,
            }
        );
        let ids = check_backup(kept.path()).unwrap();
        assert_eq!(
            ids,
            [records[1].id, records[2].id, added.id].into_iter().collect()
        );
    }

    #[tokio::test]
    async fn an_image_deleted_while_the_backup_runs_leaves_its_row_out() {
        let (data, kept) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_history, _images, records) = studio(data.path(), &["one", "two"]).await;
        // As if the image went between the snapshot and the copy: gone from the folder, row still there.
        std::fs::remove_file(data.path().join("images").join(format!("{}.png", records[0].id))).unwrap();
        let report = backup_blocking(data.path(), kept.path()).unwrap();
        assert_eq!((report.records, report.rows_left_out), (1, 1));
        assert_eq!(
            check_backup(kept.path()).unwrap(),
            [records[1].id].into_iter().collect()
        );
    }

    #[tokio::test]
    async fn restore_refuses_a_data_folder_in_use_and_a_damaged_backup() {
        let (data, kept, other) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let (_history, _images, records) = studio(data.path(), &["one", "two"]).await;
        backup_blocking(data.path(), kept.path()).unwrap();
        // A data folder with anything in it is never overwritten.
        assert!(matches!(
            restore_blocking(kept.path(), data.path()),
            Err(BackupError::DataNotEmpty { .. })
        ));
        // Backing up into a folder of other things is refused.
        std::fs::write(other.path().join("notes.txt"), b"mine").unwrap();
        assert!(matches!(
            backup_blocking(data.path(), other.path()),
            Err(BackupError::NotABackupFolder { .. })
        ));
        assert!(matches!(
            restore_blocking(other.path(), &other.path().join("data")),
            Err(BackupError::NotABackup { .. })
        ));
        assert!(matches!(
            backup_blocking(other.path(), kept.path()),
            Err(BackupError::NoData { .. })
        ));
        // A cut image, then a missing one.
        let image = kept.path().join("images").join(format!("{}.png", records[0].id));
        let bytes = std::fs::read(&image).unwrap();
        std::fs::write(&image, &bytes[..bytes.len() / 2]).unwrap();
        let target = other.path().join("restored");
        assert!(matches!(
            restore_blocking(kept.path(), &target),
            Err(BackupError::NotABackup { .. })
        ));
        std::fs::remove_file(&image).unwrap();
        assert!(matches!(
            restore_blocking(kept.path(), &target),
            Err(BackupError::NotABackup { .. })
        ));
        assert!(!target.exists(), "a refused restore writes nothing");
        // A damaged database.
        std::fs::write(&image, &bytes).unwrap();
        std::fs::write(kept.path().join(history::DATABASE_FILE), b"not a database at all").unwrap();
        assert!(matches!(
            restore_blocking(kept.path(), &target),
            Err(BackupError::NotABackup { .. })
        ));
    }
}
