//! Downloading one model file: streamed into `<name>.part` beside its final place, resumed with a range
//! request after any interruption, retried with backoff, checked (size, sha256) and only then renamed
//! to its final name, so ComfyUI never sees half a file under that name.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _, BufWriter};

use super::digest::{Sha256Digest, hash_file};
use super::hub::{Hub, HubError, RemoteInfo, content_range};
use super::manifest::ModelFile;
use super::progress::{Progress, ProgressMode};
use super::record::HashSource;
use super::{Error, io_error};

/// How often and how patiently a broken transfer is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Failed attempts in a row (without a byte of progress) before giving up.
    pub attempts: u32,
    /// Wait after the first failure; it doubles after each further one.
    pub first_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 8,
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th failure in a row (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.first_delay
            .saturating_mul(1_u32 << doublings)
            .min(self.max_delay)
    }
}

/// What the download must turn out to be.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    /// Size in bytes, when known before starting.
    pub(crate) size: Option<u64>,
    /// The sha256 to match and where it comes from.
    pub(crate) sha256: Option<(Sha256Digest, HashSource)>,
}

/// A file in its final place.
#[derive(Debug, Clone)]
pub(crate) struct Downloaded {
    pub(crate) size: u64,
    pub(crate) sha256: Sha256Digest,
    pub(crate) hash_source: HashSource,
    pub(crate) commit: Option<String>,
    /// Bytes that came over the network in this run.
    pub(crate) transferred: u64,
}

/// The temporary name of a download in progress: `<name>.part` in the same folder (same file system,
/// so the final rename is atomic; a name ComfyUI does not list, as it ends neither in `.gguf` nor in
/// `.safetensors`).
pub(crate) fn part_path(destination: &Path) -> PathBuf {
    let mut name = destination
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    destination.with_file_name(name)
}

/// Downloads `file` to `destination` (see the module comment).
pub(crate) async fn download(
    hub: &Hub,
    file: &ModelFile,
    destination: &Path,
    expected: Expected,
    retry: &RetryPolicy,
    mode: ProgressMode,
) -> Result<Downloaded, Error> {
    let part = part_path(destination);
    let mut transfer = PartFile::open(&part, expected.size).await?;
    // A `.part` left by an earlier run might belong to another revision; if the finished file does not
    // match, it is thrown away and the download starts once more from zero before giving up.
    let mut may_restart = transfer.written > 0;
    loop {
        let mut progress = Progress::new(mode, file.name(), expected.size, transfer.written);
        let remote = transfer_with_retries(hub, file, &mut transfer, &expected, retry, &mut progress).await?;
        progress.finish();
        let outcome = transfer.finish(file, &expected, &remote).await;
        match outcome {
            Ok((sha256, hash_source)) => {
                tokio::fs::rename(&part, destination)
                    .await
                    .map_err(|error| io_error(destination, error))?;
                sync_parent(destination).await;
                return Ok(Downloaded {
                    size: transfer.written,
                    sha256,
                    hash_source,
                    commit: remote.commit,
                    transferred: transfer.transferred,
                });
            }
            Err(error) => {
                let _ = tokio::fs::remove_file(&part).await;
                if may_restart && matches!(error, Error::ChecksumMismatch { .. } | Error::SizeMismatch { .. })
                {
                    tracing::warn!(
                        "{}: the resumed download does not match ({error}); starting over",
                        file.name()
                    );
                    may_restart = false;
                    transfer = PartFile::open(&part, expected.size).await?;
                    continue;
                }
                return Err(error);
            }
        }
    }
}

/// Runs attempts until the whole file is in the `.part` file, waiting between failures.
async fn transfer_with_retries(
    hub: &Hub,
    file: &ModelFile,
    transfer: &mut PartFile,
    expected: &Expected,
    retry: &RetryPolicy,
    progress: &mut Progress,
) -> Result<RemoteInfo, Error> {
    let mut failures = 0_u32;
    loop {
        let before = transfer.written;
        match attempt(hub, file, transfer, expected, progress).await {
            Ok(remote) => return Ok(remote),
            Err(Failure::Fatal(error)) => return Err(error),
            Err(Failure::Hub(error)) if !error.is_retryable() => {
                return Err(Error::from_hub(hub, file, error));
            }
            Err(Failure::Hub(error)) => {
                // Progress since the last failure means the connection works: count afresh.
                if transfer.written > before {
                    failures = 0;
                }
                failures += 1;
                progress.interrupt();
                if failures > retry.attempts {
                    return Err(Error::Network {
                        file: file.name().to_owned(),
                        attempts: failures,
                        cause: error.to_string(),
                    });
                }
                let wait = error
                    .retry_after()
                    .unwrap_or_default()
                    .clamp(retry.delay(failures), retry.max_delay);
                tracing::warn!(
                    "{}: {error}; trying again in {}s from byte {} (attempt {} of {})",
                    file.name(),
                    wait.as_secs_f32().ceil(),
                    transfer.written,
                    failures + 1,
                    retry.attempts + 1,
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

enum Failure {
    /// Worth sorting by `HubError::is_retryable`.
    Hub(HubError),
    /// Never retried (disk full, a size the manifest contradicts, a local file error).
    Fatal(Error),
}

impl From<HubError> for Failure {
    fn from(error: HubError) -> Self {
        Self::Hub(error)
    }
}

/// One request: asks for the bytes from `transfer.written` on and appends them.
async fn attempt(
    hub: &Hub,
    file: &ModelFile,
    transfer: &mut PartFile,
    expected: &Expected,
    progress: &mut Progress,
) -> Result<RemoteInfo, Failure> {
    let (mut response, mut remote) = hub.open(file, transfer.written).await?;
    let status = response.status();
    let range = content_range(response.headers());
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        // The `.part` already holds the whole file (or more): check it as it is, or start over.
        let total = range
            .and_then(|range| range.total)
            .or(expected.size)
            .or(remote.size);
        if total == Some(transfer.written) {
            remote.size = total;
            return Ok(remote);
        }
        transfer.restart(progress).await.map_err(Failure::Fatal)?;
        return Err(HubError::Transfer("the server refused to resume; starting over".to_owned()).into());
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if range.and_then(|range| range.start) != Some(transfer.written) {
            transfer.restart(progress).await.map_err(Failure::Fatal)?;
            return Err(HubError::Transfer(
                "the server sent another part than asked; starting over".to_owned(),
            )
            .into());
        }
        if remote.size.is_none() {
            remote.size = range.and_then(|range| range.total);
        }
    } else {
        // A whole-file answer: a server without range support starts from zero again.
        if transfer.written > 0 {
            tracing::info!(
                "{}: the server does not resume downloads; starting over",
                file.name()
            );
            transfer.restart(progress).await.map_err(Failure::Fatal)?;
        }
        if remote.size.is_none() {
            remote.size = response.content_length();
        }
    }
    if let (Some(pinned), Some(served)) = (expected.size, remote.size)
        && pinned != served
    {
        return Err(Failure::Fatal(Error::SizeMismatch {
            file: file.name().to_owned(),
            expected: pinned,
            actual: served,
            removed: false,
        }));
    }
    progress.set_total(remote.size);
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(error) => {
                transfer.flush().await.map_err(Failure::Fatal)?;
                return Err(HubError::Transfer(format!("the transfer broke off: {error}")).into());
            }
        };
        transfer.append(&chunk).await.map_err(Failure::Fatal)?;
        progress.advance(chunk.len() as u64);
    }
    transfer.flush().await.map_err(Failure::Fatal)?;
    if let Some(size) = remote.size
        && transfer.written < size
    {
        return Err(HubError::Transfer(format!(
            "the connection closed at byte {} of {size}",
            transfer.written
        ))
        .into());
    }
    Ok(remote)
}

/// The `.part` file, with the hash of everything written to it so far.
struct PartFile {
    path: PathBuf,
    writer: BufWriter<File>,
    hasher: Sha256,
    written: u64,
    transferred: u64,
}

impl PartFile {
    /// Opens `path` to go on from its end (hashing what is there), or creates it.
    async fn open(path: &Path, expected_size: Option<u64>) -> Result<Self, Error> {
        let existing = match tokio::fs::metadata(path).await {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
            Err(error) => return Err(io_error(path, error)),
        };
        // A partial file longer than the whole file cannot be resumed.
        let keep = if expected_size.is_some_and(|size| existing > size) {
            0
        } else {
            existing
        };
        let (hasher, written) = if keep > 0 {
            tracing::info!("{}: resuming after {} bytes already there", path.display(), keep);
            hash_file(path, Some(keep))
                .await
                .map_err(|error| io_error(path, error))?
        } else {
            (Sha256::new(), 0)
        };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .await
            .map_err(|error| io_error(path, error))?;
        file.set_len(written)
            .await
            .map_err(|error| io_error(path, error))?;
        file.seek(SeekFrom::Start(written))
            .await
            .map_err(|error| io_error(path, error))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, file),
            hasher,
            written,
            transferred: 0,
        })
    }

    async fn append(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(|error| self.write_error(error))?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.transferred += bytes.len() as u64;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.writer.flush().await.map_err(|error| self.write_error(error))
    }

    /// Empties the file to start from byte 0.
    async fn restart(&mut self, progress: &mut Progress) -> Result<(), Error> {
        self.flush().await?;
        let file = self.writer.get_mut();
        file.set_len(0)
            .await
            .map_err(|error| io_error(&self.path, error))?;
        file.seek(SeekFrom::Start(0))
            .await
            .map_err(|error| io_error(&self.path, error))?;
        self.hasher = Sha256::new();
        self.written = 0;
        progress.restart_at(0);
        Ok(())
    }

    /// Makes the bytes durable and checks size and sha256; returns the digest and what it was checked against.
    async fn finish(
        &mut self,
        file: &ModelFile,
        expected: &Expected,
        remote: &RemoteInfo,
    ) -> Result<(Sha256Digest, HashSource), Error> {
        self.flush().await?;
        self.writer
            .get_mut()
            .sync_all()
            .await
            .map_err(|error| self.write_error(error))?;
        let actual = Sha256Digest::from_hasher(std::mem::take(&mut self.hasher));
        let size = expected.size.or(remote.size);
        if let Some(size) = size
            && size != self.written
        {
            return Err(Error::SizeMismatch {
                file: file.name().to_owned(),
                expected: size,
                actual: self.written,
                removed: true,
            });
        }
        // The manifest's hash if it has one, else the one the hub announced on this download.
        let reference = expected
            .sha256
            .clone()
            .or_else(|| remote.sha256.clone().map(|sha| (sha, HashSource::Hub)));
        match reference {
            Some((wanted, source)) if wanted != actual => Err(Error::ChecksumMismatch {
                file: file.name().to_owned(),
                expected: wanted,
                actual,
                reference: source,
            }),
            Some((_, source)) => Ok((actual, source)),
            None => Ok((actual, HashSource::Local)),
        }
    }

    fn write_error(&self, error: io::Error) -> Error {
        if error.kind() == io::ErrorKind::StorageFull {
            Error::DiskFull {
                path: self.path.clone(),
            }
        } else {
            io_error(&self.path, error)
        }
    }
}

/// Makes a rename durable: syncs the folder that holds `path` (a best effort: not every file system
/// lets a folder be opened for that).
async fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(folder) = File::open(parent).await
    {
        let _ = folder.sync_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_file_sits_beside_the_final_name() {
        assert_eq!(
            part_path(Path::new("/m/vae/ae.safetensors")),
            Path::new("/m/vae/ae.safetensors.part")
        );
    }

    #[test]
    fn waits_double_up_to_the_limit() {
        let retry = RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
        };
        let waits: Vec<u64> = (1..=5).map(|failure| retry.delay(failure).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 10, 10]);
        assert_eq!(retry.delay(u32::MAX), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_part_file_goes_on_from_its_end_and_hashes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gguf.part");
        std::fs::write(&path, b"hello ").unwrap();
        let mut part = PartFile::open(&path, Some(11)).await.unwrap();
        assert_eq!(part.written, 6);
        part.append(b"world").await.unwrap();
        part.flush().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        let mut expected = Sha256::new();
        expected.update(b"hello world");
        assert_eq!(
            Sha256Digest::from_hasher(part.hasher.clone()),
            Sha256Digest::from_hasher(expected)
        );
        assert_eq!(part.transferred, 5);
    }

    #[tokio::test]
    async fn a_part_file_longer_than_the_whole_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gguf.part");
        std::fs::write(&path, b"far too long").unwrap();
        let part = PartFile::open(&path, Some(4)).await.unwrap();
        assert_eq!(part.written, 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
