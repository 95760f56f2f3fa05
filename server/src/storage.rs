//! Keeping a finished image: the rule is **written, then announced**. [`save`] puts the PNG durably on
//! disk and then commits its history row, and returns only when both are there, so a job announced
//! `completed` after it survives a `kill -9` or a power cut. [`recover`], run at start-up, finishes
//! what a crash interrupted so that every image has its row and every row its image: after a crash at
//! any point of [`save`], a restart shows the image with its row, or neither.
//!
//! Also the free space of the data folder ([`free_bytes`], [`LOW_FREE_SPACE_BYTES`]), since a full
//! disk is how saving usually fails.
//!
//! The order of [`save`], and what a crash after each step leaves (see [`SavePoint`]):
//!
//! | crash after | on disk | [`recover`] |
//! |---|---|---|
//! | the PNG's temporary is flushed | a hidden `.tmp` | removes it: neither |
//! | the PNG is in place | a PNG without a row | moves it to the lost and found: neither |
//! | the row is written, not committed | the PNG, an uncommitted transaction | SQLite rolls it back when the database opens; the PNG as above: neither |
//! | the row is committed | both | nothing to do: both |

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::atomic_file;
use crate::history::{BeforeCommit, History, HistoryError, HistoryRecord};
use crate::images::{ImageError, ImageStore, PngPieces, Variant};
use crate::job_id::JobId;

/// Free space under which the studio should warn (in `/readyz`): a few hundred images' worth (a
/// 1024x1024 PNG is 1 to 3 MiB), so a person has time to make room before saving fails.
pub const LOW_FREE_SPACE_BYTES: u64 = 256 * 1024 * 1024;

/// Saving a finished image failed; nothing of it is left on disk (or, if even taking it back failed,
/// [`recover`] takes it back at the next start).
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// No room left on the disk (or the user's quota is used up).
    #[error(
        "The disk holding the studio's data is full: the finished image could not be saved. \
         Make room on it (delete old images or other files) and generate the image again."
    )]
    DiskFull(#[source] io::Error),
    /// ComfyUI's image is not a whole PNG.
    #[error(transparent)]
    NotAnImage(ImageError),
    /// Any other failure to write.
    #[error("The finished image could not be written to the studio's data folder: {0}")]
    Io(#[source] io::Error),
}

impl SaveError {
    /// Whether the disk is full, the one failure a person can fix by making room.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, SaveError::DiskFull(_))
    }
}

impl From<io::Error> for SaveError {
    fn from(error: io::Error) -> SaveError {
        // std maps ENOSPC to `StorageFull` and EDQUOT to `QuotaExceeded`. EFBIG (a file-size limit)
        // is not a full disk, and says so.
        match error.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => SaveError::DiskFull(error),
            _ => SaveError::Io(error),
        }
    }
}

impl From<ImageError> for SaveError {
    fn from(error: ImageError) -> SaveError {
        match error {
            ImageError::Io(error) => error.into(),
            not_an_image => SaveError::NotAnImage(not_an_image),
        }
    }
}

impl From<HistoryError> for SaveError {
    fn from(error: HistoryError) -> SaveError {
        error.into_io().into()
    }
}

/// Puts `png` (the image of `record.id`) and then `record` durably on disk; returns when both are
/// there and the record is in the history. On an error neither is kept. The job engine announces
/// `completed` only after this returned `Ok`.
///
/// The whole save is one hand-off to the blocking pool (a task there runs to its end even if the
/// caller stops waiting, so dropping this future never leaves half a save): the PNG written from its
/// pieces, renamed, flushed with its folder (one disk flush on ext4), the row inserted and committed:
/// two disk flushes in all. Nothing else is on
/// this path: the thumbnail is made when a gallery first asks for it, and the history's log is
/// checkpointed after the commit, on another thread.
pub async fn save(
    images: &ImageStore,
    history: &History,
    record: HistoryRecord,
    png: impl Into<PngPieces>,
) -> Result<(), SaveError> {
    save_with(images, history, record, png.into(), Arc::new(|_| AtPoint::Go))
        .await
        .map(|_| ())
}

/// A step of [`save`] that has just been done: where the crash tests stop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SavePoint {
    /// The PNG is written under a temporary name.
    ImageStaged,
    /// The PNG is in place (renamed, then flushed with its folder).
    ImageInPlace,
    /// The record's row is written in a transaction not yet committed.
    RecordStaged,
    /// The row is committed: the record is in the history.
    RecordInPlace,
}

impl SavePoint {
    #[cfg(test)]
    const ALL: [SavePoint; 4] = [
        SavePoint::ImageStaged,
        SavePoint::ImageInPlace,
        SavePoint::RecordStaged,
        SavePoint::RecordInPlace,
    ];
}

/// What a test's observer makes [`save_with`] do at a [`SavePoint`].
#[derive(Debug)]
pub(crate) enum AtPoint {
    /// Go on.
    Go,
    /// Stop as a crash would: leave every file as it is, take nothing back.
    #[cfg_attr(not(test), allow(dead_code, reason = "only the crash tests stop a save"))]
    Crash,
    /// The step fails with this error (a disk that fills up, a folder flush that fails).
    #[cfg_attr(not(test), allow(dead_code, reason = "only the fault tests fail a save"))]
    Fail(io::Error),
}

type Observer = Arc<dyn Fn(SavePoint) -> AtPoint + Send + Sync>;

/// How [`save_with`] ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Saved,
    #[cfg_attr(not(test), allow(dead_code, reason = "only the crash tests stop a save"))]
    Crashed(SavePoint),
}

/// [`save`], asking `observe` after each step what to do.
pub(crate) async fn save_with(
    images: &ImageStore,
    history: &History,
    record: HistoryRecord,
    png: PngPieces,
    observe: Observer,
) -> Result<Outcome, SaveError> {
    let (images, history) = (images.clone(), history.clone());
    let id = record.id;
    tokio::task::spawn_blocking(move || {
        let saved = save_steps(&images, &history, record, &png, &observe);
        match &saved {
            Ok(Outcome::Saved) => images.hold_just_saved(id, png),
            Ok(Outcome::Crashed(_)) => {}
            Err(error) => take_back(&images, &history, id, error),
        }
        saved
    })
    .await
    .map_err(|error| SaveError::Io(io::Error::other(format!("the saving task stopped: {error}"))))?
}

/// The steps of a save, on a blocking thread; on an error the caller takes back whatever is in place.
fn save_steps(
    images: &ImageStore,
    history: &History,
    record: HistoryRecord,
    png: &PngPieces,
    observe: &Observer,
) -> Result<Outcome, SaveError> {
    // Each stop leaves its temporaries on the disk, as a crash would; a failure drops them, which
    // removes them.
    let (image, _size) = images.stage_blocking(record.id, png)?;
    match observe(SavePoint::ImageStaged) {
        AtPoint::Go => {}
        AtPoint::Crash => {
            image.abandon()?;
            return Ok(Outcome::Crashed(SavePoint::ImageStaged));
        }
        AtPoint::Fail(error) => return Err(error.into()),
    }
    image.commit_blocking()?;
    match observe(SavePoint::ImageInPlace) {
        AtPoint::Go => {}
        AtPoint::Crash => return Ok(Outcome::Crashed(SavePoint::ImageInPlace)),
        AtPoint::Fail(error) => return Err(error.into()),
    }
    let before_commit = || match observe(SavePoint::RecordStaged) {
        AtPoint::Go => BeforeCommit::Commit,
        AtPoint::Crash => BeforeCommit::Abandon,
        AtPoint::Fail(error) => BeforeCommit::Fail(error),
    };
    if !history.add_with_blocking(record, before_commit)? {
        return Ok(Outcome::Crashed(SavePoint::RecordStaged));
    }
    match observe(SavePoint::RecordInPlace) {
        AtPoint::Go => Ok(Outcome::Saved),
        AtPoint::Crash => Ok(Outcome::Crashed(SavePoint::RecordInPlace)),
        AtPoint::Fail(error) => Err(error.into()),
    }
}

/// Removes the record and the image of a save that failed. The job's id is new, so nothing older is
/// lost. What cannot be removed now (the disk may be failing) [`recover`] removes at the next start.
fn take_back(images: &ImageStore, history: &History, id: JobId, cause: &SaveError) {
    tracing::error!(%id, error = %cause, "the finished image could not be saved; taking it back");
    if let Err(error) = history.remove_blocking(id) {
        tracing::error!(%id, %error, "cannot take back the history record; the next start will");
    }
    if let Err(error) = images.remove_blocking(id) {
        tracing::error!(%id, %error, "cannot take back the image; the next start will");
    }
}

/// What [`recover`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Temporaries of interrupted writes, removed.
    pub temporaries_removed: usize,
    /// Images without a record, moved into the image folder's `lost+found`.
    pub images_moved_aside: Vec<JobId>,
    /// Thumbnails without an image, removed.
    pub thumbnails_removed: Vec<JobId>,
    /// Records whose image is missing, removed.
    pub records_dropped: Vec<JobId>,
    /// Things that could not be tidied (each logged); the next start tries again.
    pub failures: usize,
}

impl Recovery {
    /// True when there was nothing to do.
    pub fn is_clean(&self) -> bool {
        *self == Recovery::default()
    }
}

/// Start-up recovery could not read the data folders.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("cannot read the image folder {path}")]
    Images {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("cannot read the history")]
    History(#[source] HistoryError),
}

/// Tidies what a crash left, before anything else uses the stores: removes the temporaries of
/// interrupted writes, drops records whose image is missing, moves images without a record into the
/// image folder's `lost+found` (kept for a person to find rather than deleted: the GPU's work, and a
/// rename costs nothing) and removes thumbnails without an image. Logs what it did. Fails only when a
/// folder cannot be read; a single file that cannot be tidied is logged, counted and left for the next
/// start, so a stubborn file never keeps the studio from starting.
pub async fn recover(images: &ImageStore, history: &History) -> Result<Recovery, RecoverError> {
    let images_error = |source| RecoverError::Images {
        path: images.dir().to_owned(),
        source,
    };
    let mut recovery = Recovery {
        temporaries_removed: atomic_file::sweep_temporaries(images.dir())
            .await
            .map_err(images_error)?,
        ..Recovery::default()
    };
    let files = images.files().await.map_err(|error| match error {
        ImageError::Io(source) => images_error(source),
        other => images_error(io::Error::other(other.to_string())),
    })?;
    let with_image: BTreeSet<JobId> = files
        .iter()
        .filter(|file| file.variant == Variant::Full)
        .map(|file| file.id)
        .collect();
    let with_thumbnail: BTreeSet<JobId> = files
        .iter()
        .filter(|file| file.variant == Variant::Thumbnail)
        .map(|file| file.id)
        .collect();

    let with_record = history.ids().map_err(RecoverError::History)?;
    for &id in with_record.difference(&with_image) {
        match history.remove(id).await {
            Ok(_) => {
                tracing::warn!(%id, "dropped a history record whose image is missing");
                recovery.records_dropped.push(id);
            }
            Err(error) => {
                tracing::error!(%id, %error, "cannot drop a history record whose image is missing");
                recovery.failures += 1;
            }
        }
    }
    for &id in with_image.difference(&with_record) {
        match images.move_aside(id).await {
            Ok(path) => {
                tracing::warn!(%id, path = %path.display(), "moved an image without a history record to the lost and found");
                recovery.images_moved_aside.push(id);
            }
            Err(error) => {
                tracing::error!(%id, %error, "cannot move aside an image without a history record");
                recovery.failures += 1;
            }
        }
    }
    for &id in with_thumbnail.difference(&with_image) {
        match images.remove(id).await {
            Ok(()) => {
                tracing::info!(%id, "removed a thumbnail without an image");
                recovery.thumbnails_removed.push(id);
            }
            Err(error) => {
                tracing::error!(%id, %error, "cannot remove a thumbnail without an image");
                recovery.failures += 1;
            }
        }
    }
    if recovery.is_clean() {
        tracing::debug!("the data folder needed no recovery");
    } else {
        tracing::warn!(
            temporaries = recovery.temporaries_removed,
            images_moved_aside = recovery.images_moved_aside.len(),
            thumbnails_removed = recovery.thumbnails_removed.len(),
            records_dropped = recovery.records_dropped.len(),
            failures = recovery.failures,
            "tidied what an interrupted run left in the data folder"
        );
    }
    Ok(recovery)
}

/// Bytes free for the studio (not root's reserve) on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let stats = rustix::fs::statvfs(dir)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Free space under which a new job is refused: less than a few images' worth, so it would fail at
/// its save anyway, after minutes of GPU time.
pub const MIN_FREE_SPACE_BYTES: u64 = 32 * 1024 * 1024;

/// How the disk holding the data folder stands, for `/readyz` and for accepting jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskSpace {
    Plenty,
    /// Below [`LOW_FREE_SPACE_BYTES`]: say so while there is still room.
    Low {
        free: u64,
    },
    /// Below [`MIN_FREE_SPACE_BYTES`]: no new jobs.
    Full {
        free: u64,
    },
}

impl DiskSpace {
    /// Classifies `free` bytes.
    pub fn from_free(free: u64) -> DiskSpace {
        if free < MIN_FREE_SPACE_BYTES {
            DiskSpace::Full { free }
        } else if free < LOW_FREE_SPACE_BYTES {
            DiskSpace::Low { free }
        } else {
            DiskSpace::Plenty
        }
    }

    /// Checks the disk holding `dir`; one `statvfs`, no I/O on the files. A disk that cannot be asked
    /// counts as plenty: the save itself still reports a full disk clearly.
    pub fn of(dir: &Path) -> DiskSpace {
        match free_bytes(dir) {
            Ok(free) => DiskSpace::from_free(free),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot tell the free disk space");
                DiskSpace::Plenty
            }
        }
    }
}

#[cfg(test)]
mod disk_space_tests {
    use super::*;

    #[test]
    fn free_space_is_plenty_low_or_full() {
        assert_eq!(DiskSpace::from_free(LOW_FREE_SPACE_BYTES), DiskSpace::Plenty);
        assert_eq!(
            DiskSpace::from_free(LOW_FREE_SPACE_BYTES - 1),
            DiskSpace::Low {
                free: LOW_FREE_SPACE_BYTES - 1
            }
        );
        assert_eq!(
            DiskSpace::from_free(MIN_FREE_SPACE_BYTES - 1),
            DiskSpace::Full {
                free: MIN_FREE_SPACE_BYTES - 1
            }
        );
        // The folder a test runs in has room.
        assert_ne!(DiskSpace::of(Path::new(".")), DiskSpace::Full { free: 0 });
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use bytes::Bytes;
    use zimage_contract::Timings;

    use super::*;
    use crate::images::LOST_AND_FOUND;

    /// A PNG of noise (so it does not compress) of about `side * side * 3` bytes.
    fn noise_png(side: u32) -> Bytes {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let image = image::RgbImage::from_fn(side, side, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let [r, g, b, ..] = state.to_le_bytes();
            image::Rgb([r, g, b])
        });
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgb8(image)
            .write_to(&mut io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        Bytes::from(bytes)
    }

    fn record(id: JobId) -> HistoryRecord {
        HistoryRecord {
            id,
            owner: None,
            prompt: "a heron at dawn".to_owned(),
            seed: 7,
            width: 64,
            height: 64,
            timings: Timings {
                queued_at: 1,
                started_at: Some(2),
                finished_at: Some(3),
            },
            elapsed_ms: 2,
            backend: None,
            source: None,
            loras: Vec::new(),
        }
    }

    /// A data folder with its two stores, as `serve` opens them.
    struct Data {
        images: ImageStore,
        history: History,
    }

    impl Data {
        async fn open(root: &Path) -> Data {
            Data {
                images: ImageStore::open(&root.join("images")).await.unwrap(),
                history: History::open(root).await.unwrap(),
            }
        }

        /// Every name in the image folder (the lost and found's content as `lost+found/<name>`).
        fn names(&self) -> Vec<String> {
            let mut names = Vec::new();
            for dir in [self.images.dir()] {
                for entry in std::fs::read_dir(dir).unwrap() {
                    let entry = entry.unwrap();
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if entry.file_type().unwrap().is_dir() {
                        for inner in std::fs::read_dir(entry.path()).unwrap() {
                            names.push(format!("{name}/{}", inner.unwrap().file_name().to_string_lossy()));
                        }
                    } else {
                        names.push(name);
                    }
                }
            }
            names.sort();
            names
        }

        /// Asserts "both or neither" for `id`, from a fresh look at the disk; true when both.
        async fn both_or_neither(&self, id: JobId, png: &Bytes) -> bool {
            // A store of its own, which holds no image in memory: what is on the disk.
            let on_disk = ImageStore::open(self.images.dir()).await.unwrap();
            let image = on_disk.read(id, Variant::Full).await.unwrap();
            match self.history.get(id) {
                Some(kept) => {
                    assert_eq!(kept, record(id));
                    assert_eq!(image.as_ref(), Some(png), "a record without its image");
                    true
                }
                None => {
                    assert!(image.is_none(), "an image without its record");
                    false
                }
            }
        }
    }

    #[tokio::test]
    async fn a_saved_image_and_its_record_are_both_on_disk_when_save_returns() {
        let root = tempfile::tempdir().unwrap();
        let data = Data::open(root.path()).await;
        let (id, png) = (JobId::new(), noise_png(64));
        save(&data.images, &data.history, record(id), png.clone())
            .await
            .unwrap();
        assert_eq!(data.history.get(id), Some(record(id)));
        assert_eq!(data.names(), vec![format!("{id}.png")]);

        let reopened = Data::open(root.path()).await;
        assert!(
            recover(&reopened.images, &reopened.history)
                .await
                .unwrap()
                .is_clean()
        );
        assert!(reopened.both_or_neither(id, &png).await);
    }

    #[tokio::test]
    async fn something_that_is_not_a_png_is_refused_and_nothing_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let data = Data::open(root.path()).await;
        let id = JobId::new();
        let error = save(
            &data.images,
            &data.history,
            record(id),
            Bytes::from_static(b"<html>"),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, SaveError::NotAnImage(ImageError::NotPng)),
            "{error:?}"
        );
        assert!(data.names().is_empty());
        assert!(data.history.get(id).is_none());
    }

    #[tokio::test]
    async fn a_crash_at_any_point_of_saving_leaves_both_or_neither_after_recovery() {
        for point in SavePoint::ALL {
            let root = tempfile::tempdir().unwrap();
            let data = Data::open(root.path()).await;
            let (id, png) = (JobId::new(), noise_png(64));
            let stopped = save_with(
                &data.images,
                &data.history,
                record(id),
                png.clone().into(),
                Arc::new(move |at| if at == point { AtPoint::Crash } else { AtPoint::Go }),
            )
            .await
            .unwrap();
            assert_eq!(stopped, Outcome::Crashed(point));
            // The crashed process and everything it held in memory are gone.
            drop(data);

            let data = Data::open(root.path()).await;
            let recovery = recover(&data.images, &data.history).await.unwrap();
            check_recovered(&data, id, &png, point, &recovery).await;
        }
    }

    /// What recovery must have found and left after a crash at `point`.
    async fn check_recovered(data: &Data, id: JobId, png: &Bytes, point: SavePoint, recovery: &Recovery) {
        let expected = match point {
            SavePoint::ImageStaged => Recovery {
                temporaries_removed: 1,
                ..Recovery::default()
            },
            SavePoint::ImageInPlace => Recovery {
                images_moved_aside: vec![id],
                ..Recovery::default()
            },
            SavePoint::RecordStaged => Recovery {
                images_moved_aside: vec![id],
                ..Recovery::default()
            },
            SavePoint::RecordInPlace => Recovery::default(),
        };
        assert_eq!(*recovery, expected, "{point:?}");
        let both = data.both_or_neither(id, png).await;
        assert_eq!(both, point == SavePoint::RecordInPlace, "{point:?}");
        let names = data.names();
        match point {
            SavePoint::RecordInPlace => assert_eq!(names, vec![format!("{id}.png")]),
            SavePoint::ImageStaged => assert!(names.is_empty(), "{names:?}"),
            _ => {
                assert_eq!(names, vec![format!("{LOST_AND_FOUND}/{id}.png")], "{point:?}");
                let aside = data.images.dir().join(LOST_AND_FOUND).join(format!("{id}.png"));
                assert_eq!(std::fs::read(aside).unwrap(), png.as_ref());
            }
        }
        // Recovery is done once: a second start finds nothing to do.
        let again = Data::open(data.images.dir().parent().unwrap()).await;
        assert!(recover(&again.images, &again.history).await.unwrap().is_clean());
    }

    #[tokio::test]
    async fn a_failure_at_any_point_of_saving_takes_everything_back_at_once() {
        let enospc = || io::Error::from(io::ErrorKind::StorageFull);
        for point in SavePoint::ALL {
            let root = tempfile::tempdir().unwrap();
            let data = Data::open(root.path()).await;
            let (id, png) = (JobId::new(), noise_png(64));
            let error = save_with(
                &data.images,
                &data.history,
                record(id),
                png.clone().into(),
                Arc::new(move |at| {
                    if at == point {
                        AtPoint::Fail(enospc())
                    } else {
                        AtPoint::Go
                    }
                }),
            )
            .await
            .unwrap_err();
            assert!(error.is_disk_full(), "{point:?}: {error:?}");
            // Without any recovery: the running studio shows neither, and nothing is left on disk.
            assert!(data.history.get(id).is_none(), "{point:?}");
            assert!(data.history.is_empty(), "{point:?}");
            assert!(
                data.images.read(id, Variant::Full).await.unwrap().is_none(),
                "{point:?}"
            );
            assert_eq!(data.names(), Vec::<String>::new(), "{point:?}");
        }
    }

    #[test]
    fn a_full_disk_is_told_apart_from_other_failures_in_words_a_person_understands() {
        let full = SaveError::from(io::Error::from_raw_os_error(28)); // ENOSPC
        assert!(full.is_disk_full());
        assert!(
            full.to_string()
                .starts_with("The disk holding the studio's data is full: "),
            "{full}"
        );
        let quota = SaveError::from(io::Error::from_raw_os_error(122)); // EDQUOT
        assert!(quota.is_disk_full());
        let history = SaveError::from(HistoryError::Write {
            id: JobId::new(),
            source: io::Error::from_raw_os_error(28),
        });
        assert!(history.is_disk_full());
        let image = SaveError::from(ImageError::Io(io::Error::from_raw_os_error(28)));
        assert!(image.is_disk_full());
        for other in [
            io::Error::from_raw_os_error(27), // EFBIG: a file-size limit, not a full disk
            io::Error::from_raw_os_error(5),  // EIO
            io::Error::from(io::ErrorKind::PermissionDenied),
        ] {
            let error = SaveError::from(other);
            assert!(!error.is_disk_full(), "{error:?}");
            assert!(
                error
                    .to_string()
                    .starts_with("The finished image could not be written")
            );
        }
    }

    #[tokio::test]
    async fn recovery_drops_records_without_images_and_thumbnails_without_images() {
        let root = tempfile::tempdir().unwrap();
        let data = Data::open(root.path()).await;
        let (kept, without_image, thumbnail_only) = (JobId::new(), JobId::new(), JobId::new());
        let png = noise_png(32);
        save(&data.images, &data.history, record(kept), png.clone())
            .await
            .unwrap();
        data.images.read(kept, Variant::Thumbnail).await.unwrap().unwrap();
        data.history.add(record(without_image)).await.unwrap();
        let thumbnail = data.images.dir().join(format!("{kept}.thumb.jpg"));
        std::fs::copy(
            &thumbnail,
            data.images.dir().join(format!("{thumbnail_only}.thumb.jpg")),
        )
        .unwrap();
        std::fs::write(data.images.dir().join("notes.txt"), b"someone else's").unwrap();
        drop(data);

        let data = Data::open(root.path()).await;
        let recovery = recover(&data.images, &data.history).await.unwrap();
        assert_eq!(
            recovery,
            Recovery {
                records_dropped: vec![without_image],
                thumbnails_removed: vec![thumbnail_only],
                ..Recovery::default()
            }
        );
        assert!(data.both_or_neither(kept, &png).await);
        assert!(data.history.get(without_image).is_none());
        assert_eq!(
            data.names(),
            vec![
                format!("{kept}.png"),
                format!("{kept}.thumb.jpg"),
                "notes.txt".to_owned()
            ]
        );
        assert!(
            History::open(root.path())
                .await
                .unwrap()
                .get(without_image)
                .is_none()
        );
    }

    #[test]
    fn free_space_is_what_df_reports_as_available() {
        let dir = tempfile::tempdir().unwrap();
        let before = free_bytes(dir.path()).unwrap();
        let df = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(dir.path())
            .output()
            .unwrap();
        let reported: u64 = String::from_utf8(df.stdout)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let after = free_bytes(dir.path()).unwrap();
        // Others write on this disk meanwhile: df's answer lies between the two, give or take.
        let slack = 16 * 1024 * 1024;
        let (low, high) = (before.min(after).saturating_sub(slack), before.max(after) + slack);
        assert!(
            (low..=high).contains(&reported),
            "statvfs {before} then {after}, df {reported}"
        );
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }

    // Real crashes and real write failures: the test binary runs one of its own tests again as a child
    // process, told by environment variables what to do.

    const CHILD_TASK: &str = "ZIMAGE_STORAGE_TEST_TASK";
    const CHILD_DIR: &str = "ZIMAGE_STORAGE_TEST_DIR";
    const CHILD_ID: &str = "ZIMAGE_STORAGE_TEST_ID";

    /// The child side, run only by the tests below (as an ignored test, so that a plain run does not
    /// count it): `crash:<point>` saves and aborts the process at that point; `limited` saves under a
    /// file-size limit smaller than the PNG.
    #[test]
    #[ignore = "a child process of the crash tests, which run it"]
    fn child_process() {
        #[allow(
            clippy::disallowed_methods,
            reason = "a test's child process, told by its parent test what to do"
        )]
        let (Ok(task), Ok(dir), Ok(id)) = (
            std::env::var(CHILD_TASK),
            std::env::var(CHILD_DIR),
            std::env::var(CHILD_ID),
        ) else {
            return;
        };
        let (root, id) = (PathBuf::from(dir), id.parse::<JobId>().unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let data = Data::open(&root).await;
            let png = noise_png(CHILD_PNG_SIDE);
            if let Some(point) = task.strip_prefix("crash:") {
                let point = *SavePoint::ALL
                    .iter()
                    .find(|candidate| format!("{candidate:?}") == point)
                    .unwrap();
                // No core file for this deliberate abort.
                rustix::process::setrlimit(
                    rustix::process::Resource::Core,
                    rustix::process::Rlimit {
                        current: Some(0),
                        maximum: Some(0),
                    },
                )
                .unwrap();
                let observer: Observer = Arc::new(move |at| {
                    if at == point {
                        std::process::abort();
                    }
                    AtPoint::Go
                });
                let _ = save_with(&data.images, &data.history, record(id), png.into(), observer).await;
                // Reaching this line means the point was never reached: the parent sees a normal exit.
            } else if task == "limited" {
                rustix::process::setrlimit(
                    rustix::process::Resource::Fsize,
                    rustix::process::Rlimit {
                        current: Some(CHILD_FILE_SIZE_LIMIT),
                        maximum: None,
                    },
                )
                .unwrap();
                let error = save(&data.images, &data.history, record(id), png)
                    .await
                    .unwrap_err();
                // EFBIG: the kernel refused the write part way; honest about not being a full disk.
                assert!(
                    matches!(&error, SaveError::Io(io) if io.kind() == io::ErrorKind::FileTooLarge),
                    "{error:?}"
                );
                assert!(data.history.get(id).is_none());
                assert!(data.names().is_empty(), "{:?}", data.names());
                std::fs::write(root.join("checked"), b"").unwrap();
            }
        });
    }

    /// The child's PNG: about 300 KB of noise.
    const CHILD_PNG_SIDE: u32 = 320;
    const CHILD_FILE_SIZE_LIMIT: u64 = 64 * 1024;

    /// Runs [`child_process`] with `task` on the data folder `root`; its exit status.
    fn run_child(task: &str, root: &Path, id: JobId) -> std::process::ExitStatus {
        let executable = std::env::current_exe().unwrap();
        // SIGXFSZ would kill the child at the file-size limit: ignored (which `exec` keeps) so that the
        // write fails with EFBIG instead.
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"trap '' XFSZ; exec "$0" "$@""#)
            .arg(executable)
            .args([
                "--exact",
                "storage::tests::child_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_TASK, task)
            .env(CHILD_DIR, root)
            .env(CHILD_ID, id.to_string())
            .output()
            .unwrap();
        if !output.status.success() {
            eprintln!(
                "child {task}: {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output.status
    }

    #[test]
    fn a_process_killed_at_any_point_of_saving_leaves_both_or_neither_after_recovery() {
        use std::os::unix::process::ExitStatusExt as _;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for point in SavePoint::ALL {
            let root = tempfile::tempdir().unwrap();
            let id = JobId::new();
            let status = run_child(&format!("crash:{point:?}"), root.path(), id);
            assert_eq!(
                status.signal(),
                Some(6),
                "{point:?}: the child did not abort there: {status}"
            );
            runtime.block_on(async {
                let data = Data::open(root.path()).await;
                let recovery = recover(&data.images, &data.history).await.unwrap();
                check_recovered(&data, id, &noise_png(CHILD_PNG_SIDE), point, &recovery).await;
            });
        }
    }

    #[test]
    fn a_write_the_kernel_refuses_part_way_leaves_nothing_behind() {
        let root = tempfile::tempdir().unwrap();
        assert!(noise_png(CHILD_PNG_SIDE).len() as u64 > 2 * CHILD_FILE_SIZE_LIMIT);
        let status = run_child("limited", root.path(), JobId::new());
        assert!(status.success(), "{status}");
        assert!(
            root.path().join("checked").exists(),
            "the child did not run its checks"
        );
    }

    #[tokio::test]
    async fn the_image_just_saved_is_read_once_from_memory_then_from_the_disk() {
        let root = tempfile::tempdir().unwrap();
        let data = Data::open(root.path()).await;
        let (id, png) = (JobId::new(), noise_png(64));
        save(&data.images, &data.history, record(id), png.clone())
            .await
            .unwrap();
        // Gone from the disk behind the store's back: only the copy in memory can answer.
        let path = data.images.dir().join(format!("{id}.png"));
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk, png);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            data.images.read(id, Variant::Full).await.unwrap(),
            Some(png.clone())
        );
        assert_eq!(
            data.images.read(id, Variant::Full).await.unwrap(),
            None,
            "held after its first read"
        );

        // A deleted image is not served from memory either.
        let other = JobId::new();
        save(&data.images, &data.history, record(other), png.clone())
            .await
            .unwrap();
        data.images.remove(other).await.unwrap();
        assert_eq!(data.images.read(other, Variant::Full).await.unwrap(), None);

        // Only the last image is held: an earlier one is read from its file.
        let (first, second) = (JobId::new(), JobId::new());
        save(&data.images, &data.history, record(first), png.clone())
            .await
            .unwrap();
        save(&data.images, &data.history, record(second), png.clone())
            .await
            .unwrap();
        std::fs::remove_file(data.images.dir().join(format!("{first}.png"))).unwrap();
        assert_eq!(data.images.read(first, Variant::Full).await.unwrap(), None);
        assert_eq!(data.images.read(second, Variant::Full).await.unwrap(), Some(png));
    }
}
