//! Writing files so that neither a reader nor a crash ever sees half of one, and so that a write that
//! returned is on the disk: write a temporary sibling, flush it, rename it over the final name, then
//! flush the folder (the rename lives in the folder's entries; until the folder is flushed a power cut
//! may undo it).
//!
//! A write is two steps, [`stage`] and [`Staged::commit`], so that `storage` can order several writes
//! and stop between them in its crash tests; [`write`] does both. Each has a `_blocking` twin for callers
//! already on a blocking thread: a finished image's whole save is one hand-off to the blocking pool.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tempfile::TempPath;

/// Every temporary is named `.<final name>.<random>.tmp`, so [`sweep_temporaries`] knows them (and a
/// folder listing hides them).
const TEMPORARY_SUFFIX: &str = ".tmp";

/// A file written in full under a temporary name, not yet in place. Dropping it removes the temporary.
#[derive(Debug)]
pub struct Staged {
    temporary: Temporary,
    path: PathBuf,
}

/// The temporary of a [`Staged`] file: flushed already, or (a new file) to be flushed once in place.
#[derive(Debug)]
enum Temporary {
    Flushed(TempPath),
    Unflushed(tempfile::NamedTempFile),
}

impl Staged {
    /// Renames the temporary over the final name and flushes the folder: when this returns `Ok` the
    /// file survives a crash or a power cut. On an error the temporary is removed; the final name may
    /// then hold the new content or the old.
    pub async fn commit(self) -> io::Result<()> {
        in_blocking(move || self.commit_blocking()).await
    }

    /// [`Staged::commit`] on the calling thread.
    pub fn commit_blocking(self) -> io::Result<()> {
        let Staged { temporary, path } = self;
        match temporary {
            Temporary::Flushed(temporary) => {
                temporary.persist(&path).map_err(|error| error.error)?;
            }
            Temporary::Unflushed(temporary) => {
                // The rename first, then the flush: on a journaling file system (ext4, XFS) the file's
                // flush commits the journal's transaction, which holds the rename too, so the folder's
                // flush below finds nothing left to write. One disk flush instead of two.
                let file = temporary.persist(&path).map_err(|error| error.error)?;
                file.sync_all()?;
            }
        }
        sync_folder_of(&path)
    }

    /// Leaves the temporary on the disk as a crash would (the crash tests); the path it has.
    pub fn abandon(self) -> io::Result<PathBuf> {
        match self.temporary {
            Temporary::Flushed(temporary) => temporary.keep(),
            Temporary::Unflushed(temporary) => temporary.into_temp_path().keep(),
        }
        .map_err(|error| error.error)
    }

    /// Where the file goes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `bytes` to a temporary sibling of `path` and flushes it to the disk.
pub async fn stage(path: &Path, bytes: Bytes) -> io::Result<Staged> {
    let path = path.to_owned();
    in_blocking(move || stage_blocking(&path, &[&bytes])).await
}

/// [`stage`] on the calling thread, of `pieces` written one after another: a file put together from
/// pieces (an image with text spliced in) is never copied into one buffer first.
pub fn stage_blocking(path: &Path, pieces: &[&[u8]]) -> io::Result<Staged> {
    let mut file = temporary_beside(path)?;
    // On an error the temporary is dropped, which removes it.
    for piece in pieces {
        file.write_all(piece)?;
    }
    file.as_file().sync_all()?;
    Ok(Staged {
        temporary: Temporary::Flushed(file.into_temp_path()),
        path: path.to_owned(),
    })
}

/// [`stage_blocking`] for a name that holds nothing worth keeping (a new job's journal entry, a new
/// image): written but not flushed yet; [`Staged::commit`] puts it in place and then flushes it, with
/// one disk flush where [`stage_blocking`] and the commit take two. A reader still sees all of the file
/// or none of it, and once the commit returns it survives a power cut. A power cut during the commit
/// may leave the name holding part of the file, so it serves only names whose reader checks what it
/// finds (an image without its record is moved aside at start-up, an entry that does not parse is set
/// aside): never to replace a file worth keeping.
pub fn stage_new_blocking(path: &Path, pieces: &[&[u8]]) -> io::Result<Staged> {
    let mut file = temporary_beside(path)?;
    for piece in pieces {
        file.write_all(piece)?;
    }
    Ok(Staged {
        temporary: Temporary::Unflushed(file),
        path: path.to_owned(),
    })
}

/// [`write_bytes`] for a new file ([`stage_new_blocking`]): durable when it returns, with one flush.
pub async fn create(path: &Path, bytes: Bytes) -> io::Result<()> {
    let path = path.to_owned();
    in_blocking(move || create_blocking(&path, &bytes)).await
}

/// [`create`] on the calling thread.
pub fn create_blocking(path: &Path, bytes: &[u8]) -> io::Result<()> {
    stage_new_blocking(path, &[bytes])?.commit_blocking()
}

/// A new temporary file in `path`'s folder, named as [`sweep_temporaries`] expects.
fn temporary_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let (folder, file_name) = split(path)?;
    tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(TEMPORARY_SUFFIX)
        // As `File::create` would (0666 less the umask), not tempfile's private 0600: the data
        // folder is often a volume that people back up or browse from the host.
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(folder)
}

/// Writes `bytes` to `path` atomically and durably: when this returns `Ok` the file has all of the new
/// content and survives a crash; otherwise it keeps its old content (or stays absent) and no temporary
/// is left behind.
pub async fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_bytes(path, Bytes::copy_from_slice(bytes)).await
}

/// [`write`] without copying `bytes`: one hand-off to the blocking pool for the whole write.
pub async fn write_bytes(path: &Path, bytes: Bytes) -> io::Result<()> {
    let path = path.to_owned();
    in_blocking(move || write_blocking(&path, &bytes)).await
}

/// [`write`] on the calling thread.
pub fn write_blocking(path: &Path, bytes: &[u8]) -> io::Result<()> {
    stage_blocking(path, &[bytes])?.commit_blocking()
}

/// Writes `bytes` to `path` atomically but without flushing anything: a reader, or a start after this
/// process was killed, sees the old content or the new (the page cache outlives the process), but a
/// power cut may undo it. For notes that are worth keeping but not worth a disk flush on the hot path.
pub async fn replace(path: &Path, bytes: Bytes) -> io::Result<()> {
    let path = path.to_owned();
    in_blocking(move || replace_blocking(&path, &bytes)).await
}

/// [`replace`] on the calling thread.
pub fn replace_blocking(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = temporary_beside(path)?;
    file.write_all(bytes)?;
    file.into_temp_path().persist(path).map_err(|error| error.error)
}

/// Removes a file durably (its folder is flushed). Returns whether it existed.
pub async fn remove(path: &Path) -> io::Result<bool> {
    let path = path.to_owned();
    in_blocking(move || remove_blocking(&path)).await
}

/// [`remove`] on the calling thread.
pub fn remove_blocking(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_folder_of(path).map(|()| true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// Moves a file to `to` (on the same file system) durably: both folders are flushed.
pub async fn rename(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (from.to_owned(), to.to_owned());
    in_blocking(move || {
        std::fs::rename(&from, &to)?;
        sync_folder_of(&to)?;
        if from.parent() != to.parent() {
            sync_folder_of(&from)?;
        }
        Ok(())
    })
    .await
}

/// Creates `dir` (and its parents) if needed, durably: the folder that received it is flushed too.
pub async fn create_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_owned();
    in_blocking(move || {
        if dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir)?;
        sync_folder_of(&dir)
    })
    .await
}

/// Removes leftovers of writes interrupted by a crash (hidden `.tmp` files) from `dir`. Returns how
/// many there were.
pub async fn sweep_temporaries(dir: &Path) -> io::Result<usize> {
    let dir = dir.to_owned();
    // One blocking pass: the folder may hold 100,000 images, and tokio's reader hops to a blocking
    // thread for every 32 names.
    in_blocking(move || {
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if is_temporary(&entry.file_name().to_string_lossy()) && entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_folder(&dir)?;
        }
        Ok(removed)
    })
    .await
}

/// Whether a file name is one of this module's temporaries.
pub fn is_temporary(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.ends_with(TEMPORARY_SUFFIX)
}

fn split(path: &Path) -> io::Result<(&Path, &str)> {
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Ok((folder, file_name))
}

fn sync_folder_of(path: &Path) -> io::Result<()> {
    sync_folder(split(path)?.0)
}

/// Flushes a folder's entries (names, renames, removals) to the disk.
fn sync_folder(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// [`sync_folder`] for callers already on a blocking thread (the history's import, backups).
pub fn sync_dir_blocking(dir: &Path) -> io::Result<()> {
    sync_folder(dir)
}

/// Runs blocking file work on tokio's blocking pool: one hand-off for the whole sequence of calls,
/// where `tokio::fs` would take one per call.
async fn in_blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        write(&path, b"first version, longer").await.unwrap();
        write(&path, b"second").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(names(dir.path()), vec!["record.json"]);
    }

    #[tokio::test]
    async fn a_written_file_is_readable_by_others_as_a_created_one_would_be() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("written.png");
        let created = dir.path().join("created.png");
        write(&written, b"png").await.unwrap();
        std::fs::write(&created, b"png").unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&written), mode(&created));
    }

    #[tokio::test]
    async fn a_staged_file_is_a_named_temporary_until_committed_and_gone_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        let staged = stage(&path, Bytes::from_static(b"whole")).await.unwrap();
        let [temporary] = names(dir.path()).try_into().unwrap();
        assert!(
            temporary.starts_with(".a.png.") && is_temporary(&temporary),
            "{temporary}"
        );
        assert!(!path.exists());
        staged.commit().await.unwrap();
        assert_eq!(names(dir.path()), vec!["a.png"]);

        drop(stage(&path, Bytes::from_static(b"other")).await.unwrap());
        assert_eq!(names(dir.path()), vec!["a.png"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
    }

    #[tokio::test]
    async fn a_new_file_is_hidden_until_committed_then_whole_and_an_abandoned_one_is_a_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry.json");
        let staged = stage_new_blocking(&path, &[b"{\"whole\"", b": true}"]).unwrap();
        assert!(!path.exists(), "a reader sees nothing before the commit");
        staged.commit_blocking().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"whole\": true}");
        assert_eq!(names(dir.path()), vec!["entry.json"]);

        create(&dir.path().join("other.json"), Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(names(dir.path()), vec!["entry.json", "other.json"]);

        let left = stage_new_blocking(&dir.path().join("crash.png"), &[b"part"])
            .unwrap()
            .abandon()
            .unwrap();
        assert!(is_temporary(&left.file_name().unwrap().to_string_lossy()));
        assert_eq!(sweep_temporaries(dir.path()).await.unwrap(), 1);
        drop(stage_new_blocking(&dir.path().join("dropped.png"), &[b"part"]).unwrap());
        assert_eq!(names(dir.path()), vec!["entry.json", "other.json"]);
    }

    #[test]
    fn a_file_staged_in_pieces_holds_them_one_after_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        stage_blocking(&path, &[b"head", b"", b" story ", b"tail"])
            .unwrap()
            .commit_blocking()
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"head story tail");
        assert_eq!(names(dir.path()), vec!["a.png"]);
    }

    #[tokio::test]
    async fn an_abandoned_temporary_stays_until_swept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        let kept = stage(&path, Bytes::from_static(b"half"))
            .await
            .unwrap()
            .abandon()
            .unwrap();
        assert!(kept.exists());
        assert_eq!(sweep_temporaries(dir.path()).await.unwrap(), 1);
        assert!(names(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_write_into_a_missing_folder_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("a.json");
        assert!(write(&path, b"x").await.is_err());
        assert!(names(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn removing_and_renaming_report_what_they_did() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        write(&path, b"x").await.unwrap();
        create_dir(&dir.path().join("aside")).await.unwrap();
        let aside = dir.path().join("aside").join("a.png");
        rename(&path, &aside).await.unwrap();
        assert!(!path.exists());
        assert!(remove(&aside).await.unwrap());
        assert!(!remove(&aside).await.unwrap());
    }

    #[tokio::test]
    async fn sweeping_removes_only_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".a.json.123.tmp"), b"half").unwrap();
        std::fs::write(dir.path().join("a.json"), b"whole").unwrap();
        std::fs::write(dir.path().join("notes.tmp"), b"not hidden: not ours").unwrap();
        assert_eq!(sweep_temporaries(dir.path()).await.unwrap(), 1);
        assert_eq!(names(dir.path()), vec!["a.json", "notes.tmp"]);
    }
}
