//! `zimage models fetch`: brings every file of a set, and the manifest's LoRAs, into the models folder.
//! Files already checked are left alone without hashing them again; files found there but unchecked are
//! hashed; the rest are asked of their server first (so a gated repository or a missing file stops
//! everything before any download, and the free disk space is known to suffice), then downloaded one
//! after another.

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use url::Url;

use super::digest::{Sha256Digest, hash_file};
use super::disk::available_space;
use super::download::{Expected, RetryPolicy, download, part_path};
use super::hub::{Hub, RemoteInfo};
use super::manifest::{ModelFile, Source};
use super::progress::{ProgressMode, format_bytes};
use super::record::{HashSource, Record, RecordedFile, RecordedOrigin, modified_ns};
use super::{Error, io_error};

/// Room left free beyond the downloads themselves (the record, logs, rounding of the size hints).
const SPACE_MARGIN: u64 = 128 * 1024 * 1024;

/// Downloads model sets from one hub into one models folder.
#[derive(Debug, Clone)]
pub struct Fetcher {
    hub: Hub,
    models_dir: PathBuf,
    retry: RetryPolicy,
    progress: ProgressMode,
}

/// What `fetch` did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// It was there and recorded as checked: nothing to do.
    Present,
    /// It was there but not recorded; hashed now and found right.
    Checked,
    /// Downloaded; `transferred` bytes came over the network in this run (less than the size on a resume).
    Downloaded { transferred: u64 },
}

/// One file of the set, in place and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    /// `folder/name` under the models folder.
    pub path: String,
    /// What was done.
    pub outcome: FetchOutcome,
    /// Its sha256.
    pub sha256: Sha256Digest,
    /// What that hash was checked against.
    pub hash_source: HashSource,
}

impl Fetcher {
    /// A fetcher for the hub at `hub_url` (with `token` for gated repositories) into `models_dir`.
    pub fn new(hub_url: Url, token: Option<String>, models_dir: PathBuf) -> Result<Self, Error> {
        Ok(Self {
            hub: Hub::new(hub_url, token).map_err(Error::Hub)?,
            models_dir,
            retry: RetryPolicy::default(),
            progress: ProgressMode::Quiet,
        })
    }

    /// Uses `retry` for broken transfers and passing server troubles.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Shows download progress as `mode` says.
    pub fn with_progress(mut self, mode: ProgressMode) -> Self {
        self.progress = mode;
        self
    }

    /// Brings every one of `files` into place (see the module comment): a set's files and, for
    /// `zimage models fetch`, the LoRAs too (`Manifest::files_with_loras`). On success each file is under
    /// its final name, checked, and recorded.
    pub async fn fetch(&self, files: &[&ModelFile]) -> Result<Vec<FetchedFile>, Error> {
        for file in files {
            let folder = self.models_dir.join(file.folder.as_str());
            tokio::fs::create_dir_all(&folder)
                .await
                .map_err(|error| io_error(&folder, error))?;
        }
        let mut record = Record::load(&self.models_dir).await;
        let mut done: Vec<Option<FetchedFile>> = Vec::new();
        let mut missing = Vec::new();

        for (index, file) in files.iter().enumerate() {
            let destination = self.destination(file);
            let checked = match tokio::fs::metadata(&destination).await {
                Ok(metadata) if metadata.is_file() => {
                    self.check_in_place(file, &destination, &metadata, &mut record)
                        .await?
                }
                Ok(_) => {
                    return Err(io_error(
                        &destination,
                        io::Error::other("is in the way of a model file: not a file"),
                    ));
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                Err(error) => return Err(io_error(&destination, error)),
            };
            if checked.is_none() {
                missing.push(index);
            }
            done.push(checked);
        }

        // Ask the servers about every missing file before downloading any.
        let mut planned = Vec::new();
        let mut needed = 0_u64;
        for &index in &missing {
            let file = files[index];
            let remote = self.probe(file).await?;
            let expected = expected_download(file, &remote)?;
            let part_len = match tokio::fs::metadata(part_path(&self.destination(file))).await {
                Ok(metadata) => metadata.len(),
                Err(_) => 0,
            };
            if let Some(size) = expected.size.or(file.approx_size) {
                needed += size.saturating_sub(part_len);
            }
            planned.push((index, expected, remote));
        }
        if !planned.is_empty() {
            self.check_space(needed)?;
        }

        for (index, expected, remote) in planned {
            let file = files[index];
            let destination = self.destination(file);
            tracing::info!(
                "downloading {} from {} ({})",
                file.display_path(),
                file.source,
                expected
                    .size
                    .or(file.approx_size)
                    .map_or_else(|| "size unknown".to_owned(), format_bytes),
            );
            let downloaded = download(
                &self.hub,
                file,
                &destination,
                expected,
                &self.retry,
                self.progress,
            )
            .await?;
            let metadata = tokio::fs::metadata(&destination)
                .await
                .map_err(|error| io_error(&destination, error))?;
            record.insert(
                file,
                RecordedFile {
                    origin: RecordedOrigin::of(&file.source),
                    commit: downloaded.commit.or(remote.commit),
                    size: downloaded.size,
                    modified_ns: modified_ns(&metadata),
                    sha256: downloaded.sha256.clone(),
                    hash_source: downloaded.hash_source,
                },
            );
            self.save(&record).await?;
            if downloaded.hash_source == HashSource::Local {
                tracing::warn!(
                    "{}: no sha256 is published for this file; recorded its own hash {}",
                    file.display_path(),
                    downloaded.sha256
                );
            }
            done[index] = Some(FetchedFile {
                path: file.display_path(),
                outcome: FetchOutcome::Downloaded {
                    transferred: downloaded.transferred,
                },
                sha256: downloaded.sha256,
                hash_source: downloaded.hash_source,
            });
        }
        Ok(done.into_iter().flatten().collect())
    }

    fn destination(&self, file: &ModelFile) -> PathBuf {
        self.models_dir.join(file.relative_path())
    }

    /// A file already in place: trusted from the record, or hashed and compared. `None` when it had to
    /// go (it did not match) and must be downloaded.
    async fn check_in_place(
        &self,
        file: &ModelFile,
        destination: &Path,
        metadata: &Metadata,
        record: &mut Record,
    ) -> Result<Option<FetchedFile>, Error> {
        if record.trusts(file, metadata)
            && let Some(entry) = record.entry_for(file)
        {
            return Ok(Some(FetchedFile {
                path: file.display_path(),
                outcome: FetchOutcome::Present,
                sha256: entry.sha256.clone(),
                hash_source: entry.hash_source,
            }));
        }
        // Not recorded, or changed since: compare with the manifest's hash, else the hub's.
        let mut reference = file.sha256.clone().map(|sha| (sha, HashSource::Manifest));
        let mut size = file.size;
        let mut commit = None;
        if reference.is_none() {
            match self.hub.probe(file).await {
                Ok(remote) => {
                    reference = remote.sha256.map(|sha| (sha, HashSource::Hub));
                    size = size.or(remote.size);
                    commit = remote.commit;
                }
                Err(error) => tracing::warn!(
                    "{}: cannot ask {} about it ({error}); keeping the file found there",
                    file.display_path(),
                    self.hub.file_url(file)
                ),
            }
        }
        let wrong_size = size.is_some_and(|size| size != metadata.len());
        let actual = if wrong_size {
            None
        } else {
            tracing::info!(
                "checking {} ({})",
                file.display_path(),
                format_bytes(metadata.len())
            );
            let (hasher, _) = hash_file(destination, None)
                .await
                .map_err(|error| io_error(destination, error))?;
            Some(Sha256Digest::from_hasher(hasher))
        };
        match (actual, reference) {
            (Some(actual), reference) if reference.as_ref().is_none_or(|(wanted, _)| *wanted == actual) => {
                let hash_source = reference.map_or(HashSource::Local, |(_, source)| source);
                record.insert(
                    file,
                    RecordedFile {
                        origin: RecordedOrigin::of(&file.source),
                        commit,
                        size: metadata.len(),
                        modified_ns: modified_ns(metadata),
                        sha256: actual.clone(),
                        hash_source,
                    },
                );
                self.save(record).await?;
                Ok(Some(FetchedFile {
                    path: file.display_path(),
                    outcome: FetchOutcome::Checked,
                    sha256: actual,
                    hash_source,
                }))
            }
            _ => {
                tracing::warn!(
                    "{} is not the file the manifest names (wrong size or sha256); downloading it again",
                    file.display_path()
                );
                tokio::fs::remove_file(destination)
                    .await
                    .map_err(|error| io_error(destination, error))?;
                record.remove(file);
                self.save(record).await?;
                Ok(None)
            }
        }
    }

    /// Asks the hub about `file`, trying again on passing troubles.
    async fn probe(&self, file: &ModelFile) -> Result<RemoteInfo, Error> {
        let mut failures = 0_u32;
        loop {
            match self.hub.probe(file).await {
                Ok(remote) => return Ok(remote),
                Err(error) if !error.is_retryable() => return Err(Error::from_hub(&self.hub, file, error)),
                Err(error) => {
                    failures += 1;
                    if failures > self.retry.attempts {
                        return Err(Error::Network {
                            file: file.name().to_owned(),
                            attempts: failures,
                            cause: error.to_string(),
                        });
                    }
                    let wait = self.retry.delay(failures);
                    tracing::warn!(
                        "{}: {error}; asking again in {}s",
                        file.name(),
                        wait.as_secs_f32().ceil()
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn check_space(&self, needed: u64) -> Result<(), Error> {
        let available =
            available_space(&self.models_dir).map_err(|error| io_error(&self.models_dir, error))?;
        match available {
            Some(available) if needed.saturating_add(SPACE_MARGIN) > available => Err(Error::NoSpace {
                dir: self.models_dir.clone(),
                needed,
                available,
            }),
            _ => Ok(()),
        }
    }

    async fn save(&self, record: &Record) -> Result<(), Error> {
        record
            .save(&self.models_dir)
            .await
            .map_err(|error| io_error(&self.models_dir, error))
    }
}

/// What a download must produce: the manifest's size and hash where it has them, else the hub's. A
/// manifest and a hub that disagree stop here, before a byte is downloaded.
fn expected_download(file: &ModelFile, remote: &RemoteInfo) -> Result<Expected, Error> {
    if let (Some(pinned), Some(announced)) = (&file.sha256, &remote.sha256)
        && pinned != announced
    {
        let at = match &file.source {
            Source::Hub { repo, revision, .. } => format!("revision `{revision}` of {repo}"),
            Source::Url { url, .. } => url.to_string(),
        };
        return Err(Error::HubDisagrees {
            file: file.name().to_owned(),
            at,
            manifest: pinned.clone(),
            hub: announced.clone(),
        });
    }
    if let (Some(pinned), Some(announced)) = (file.size, remote.size)
        && pinned != announced
    {
        return Err(Error::SizeMismatch {
            file: file.name().to_owned(),
            expected: pinned,
            actual: announced,
            removed: false,
        });
    }
    let sha256 = match (&file.sha256, &remote.sha256) {
        (Some(pinned), _) => Some((pinned.clone(), HashSource::Manifest)),
        (None, Some(announced)) => Some((announced.clone(), HashSource::Hub)),
        (None, None) => None,
    };
    Ok(Expected {
        size: file.size.or(remote.size),
        sha256,
    })
}
