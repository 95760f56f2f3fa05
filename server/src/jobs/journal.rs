//! The journal of jobs: one small JSON file per accepted job under `<data>/jobs`, written durably
//! before the job is acknowledged, so a job survives a crash or a restart of the gateway. It also
//! notes, before each hand-over, the backend the job goes to (so after a restart only that backend's
//! records count, never an abandoned copy's; a job that finds a backend free has it in its first
//! entry, and goes there while that entry is written: it is acknowledged only once the write is done,
//! and no other write of the job comes before), a person's cancel (durably, before the cancel is
//! acknowledged, so it is final across a crash), and how a job that did not complete ended, kept for
//! [`ENDINGS_KEPT`] so its ending stays readable across restarts. A completed job's entry is removed
//! within a second, after `completed` is out (the history has the job; start-up removes an entry a
//! crash left behind).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zimage_contract::{JobFailure, JobStatus};

use crate::access::identity::ClientId;
use crate::atomic_file;
use crate::job_id::JobId;
use crate::validation::JobSpec;

/// How long the ending of a failed or cancelled job stays readable.
pub const ENDINGS_KEPT: Duration = Duration::from_secs(2 * 24 * 3600);

/// What is needed to run a job again, exactly as it was asked for, and what became of it so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: JobId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ClientId>,
    #[serde(flatten)]
    pub spec: JobSpec,
    /// The backend (by name) it is handed to: written before the hand-over, cleared when the job goes
    /// back to the line. A job without one is at no backend the gateway listens to (a copy it left
    /// on a backend it was moved away from is ignored, and told to drop the job while the gateway runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// A person cancelled it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// How it ended, when it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ending>,
}

/// How a journal write is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// A job just accepted, whose entry is new: on the disk when the write returns, with one disk flush
    /// ([`atomic_file::create`]; a power cut before it returns may leave part of an entry, which the
    /// next start sets aside: the job was not acknowledged).
    New,
    /// On the disk when the write returns, the entry's earlier content kept until then.
    Durable,
    /// Read by a later start unless the machine itself loses power ([`atomic_file::replace`]).
    Cached,
}

/// The end of a job that did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ending {
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<JobFailure>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl Entry {
    /// A job just accepted.
    pub fn new(id: JobId, owner: Option<ClientId>, spec: JobSpec) -> Entry {
        Entry {
            id,
            owner,
            spec,
            at: None,
            cancelled: false,
            ended: None,
        }
    }
}

/// The journal folder.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Opens (creating if needed) the folder and reads every entry in it, oldest job first. An entry
    /// that cannot be read is moved aside (`*.json.unreadable`) with a warning rather than stopping the
    /// studio or being retried at every start. Endings older than [`ENDINGS_KEPT`] (before `now_ms`)
    /// are removed.
    pub async fn open(dir: &Path, now_ms: u64) -> io::Result<(Journal, Vec<Entry>)> {
        tokio::fs::create_dir_all(dir).await?;
        atomic_file::sweep_temporaries(dir).await?;
        let journal = Journal { dir: dir.to_owned() };
        let mut entries = Vec::new();
        let mut listing = tokio::fs::read_dir(dir).await?;
        while let Some(file) = listing.next_entry().await? {
            let path = file.path();
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            let parsed = tokio::fs::read(&path)
                .await
                .map_err(|error| error.to_string())
                .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).map_err(|error| error.to_string()));
            match parsed {
                Ok(entry)
                    if path
                        .file_stem()
                        .is_some_and(|stem| *stem == *entry.id.to_string()) =>
                {
                    if entry.ended.as_ref().is_some_and(|ending| {
                        now_ms.saturating_sub(ending.at_ms) > ENDINGS_KEPT.as_millis() as u64
                    }) {
                        journal.remove(entry.id).await?;
                    } else {
                        entries.push(entry);
                    }
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(path = %path.display(), ?parsed, "moving an unreadable journal entry aside");
                    let mut aside = path.clone().into_os_string();
                    aside.push(".unreadable");
                    tokio::fs::rename(&path, aside).await?;
                }
            }
        }
        entries.sort_by_key(|entry| entry.id);
        Ok((journal, entries))
    }

    /// The entries in `dir` now, read without changing anything (for the pictures' sweep). Files that
    /// are not entries, or cannot be read, are left out: the journal's own start moves those aside.
    pub async fn list(dir: &Path) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let mut listing = match tokio::fs::read_dir(dir).await {
            Ok(listing) => listing,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(entries),
            Err(error) => return Err(error),
        };
        while let Some(file) = listing.next_entry().await? {
            let path = file.path();
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            match tokio::fs::read(&path).await {
                Ok(bytes) => entries.extend(serde_json::from_slice::<Entry>(&bytes).ok()),
                // Removed since the listing (its job completed): the history has it.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(entries)
    }

    /// Records an entry, on the calling thread (a blocking one: the journal's writer has a thread of
    /// its own); returns once it is kept as `keep` says.
    pub fn write_blocking(&self, entry: &Entry, keep: Keep) -> io::Result<()> {
        let json = serde_json::to_vec(entry).map_err(io::Error::other)?;
        let path = self.path(entry.id);
        match keep {
            Keep::New => atomic_file::create_blocking(&path, &json),
            Keep::Durable => atomic_file::write_blocking(&path, &json),
            Keep::Cached => atomic_file::replace_blocking(&path, &json),
        }
    }

    /// The entry of a job, if the journal has one (an unfinished job, or a recent ending).
    pub async fn read(&self, id: JobId) -> Option<Entry> {
        let bytes = tokio::fs::read(self.path(id)).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Forgets a job. A missing entry is fine (it was never written, or removed already).
    pub async fn remove(&self, id: JobId) -> io::Result<()> {
        let journal = self.clone();
        tokio::task::spawn_blocking(move || journal.remove_blocking(id))
            .await
            .map_err(io::Error::other)?
    }

    /// [`Journal::remove`] on the calling thread.
    pub fn remove_blocking(&self, id: JobId) -> io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    fn path(&self, id: JobId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(prompt: &str) -> Entry {
        let spec = JobSpec {
            prompt: crate::validation::Prompt::parse(prompt).unwrap(),
            seed: crate::validation::Seed::parse(7).unwrap(),
            width: crate::validation::Side::parse("width", 512).unwrap(),
            height: crate::validation::Side::parse("height", 768).unwrap(),
            source: None,
            loras: Vec::new(),
        };
        Entry::new(JobId::new(), None, spec)
    }

    #[tokio::test]
    async fn an_entry_keeps_its_backend_its_cancel_and_its_ending_and_old_endings_go() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path(), 0).await.unwrap();
        let mut cancelled = entry("a cancelled fox");
        cancelled.at = Some("gpu1".to_owned());
        cancelled.cancelled = true;
        cancelled.ended = Some(Ending {
            status: JobStatus::Cancelled,
            failure: None,
            at_ms: 1_000,
        });
        journal.write_blocking(&cancelled, Keep::Durable).unwrap();
        let waiting = entry("a waiting fox");
        journal.write_blocking(&waiting, Keep::Cached).unwrap();
        assert_eq!(journal.read(cancelled.id).await, Some(cancelled.clone()));

        let (_, found) = Journal::open(dir.path(), 2_000).await.unwrap();
        assert_eq!(found.len(), 2);
        assert!(found.contains(&cancelled) && found.contains(&waiting));
        // Two days later the ending is gone; the unfinished job is not.
        let later = 1_000 + ENDINGS_KEPT.as_millis() as u64 + 1;
        let (journal, found) = Journal::open(dir.path(), later).await.unwrap();
        assert_eq!(found, vec![waiting]);
        assert_eq!(journal.read(cancelled.id).await, None);
    }

    #[test]
    fn entries_of_the_previous_version_still_read() {
        let id = JobId::new();
        let old = format!(r#"{{"id":"{id}","prompt":"a fox","seed":7,"width":512,"height":768}}"#);
        let entry: Entry = serde_json::from_str(&old).unwrap();
        assert_eq!((entry.at, entry.cancelled, entry.ended), (None, false, None));
        assert_eq!(entry.spec.prompt.as_str(), "a fox");
        // A spec the studio would refuse is not trusted from the disk either.
        let bad = format!(r#"{{"id":"{id}","prompt":"a fox","seed":7,"width":7,"height":768}}"#);
        assert!(serde_json::from_str::<Entry>(&bad).is_err());
    }

    #[tokio::test]
    async fn entries_come_back_oldest_first_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, found) = Journal::open(dir.path(), 0).await.unwrap();
        assert!(found.is_empty());
        let (first, second) = (entry("一只狐狸"), entry("a fox"));
        journal.write_blocking(&second, Keep::New).unwrap();
        journal.write_blocking(&first, Keep::Durable).unwrap();
        let (journal, found) = Journal::open(dir.path(), 0).await.unwrap();
        assert_eq!(found, vec![first.clone(), second.clone()]);
        journal.remove(first.id).await.unwrap();
        journal.remove(first.id).await.unwrap();
        let (_, found) = Journal::open(dir.path(), 0).await.unwrap();
        assert_eq!(found, vec![second]);
    }

    #[tokio::test]
    async fn a_damaged_entry_is_moved_aside_and_the_others_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path(), 0).await.unwrap();
        let good = entry("fox");
        journal.write_blocking(&good, Keep::New).unwrap();
        let damaged = JobId::new();
        std::fs::write(dir.path().join(format!("{damaged}.json")), b"{\"id\":").unwrap();
        // A whole entry under another job's name is not trusted either.
        std::fs::write(
            dir.path().join(format!("{}.json", JobId::new())),
            serde_json::to_vec(&good).unwrap(),
        )
        .unwrap();
        let (_, found) = Journal::open(dir.path(), 0).await.unwrap();
        assert_eq!(found, vec![good]);
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|file| {
                file.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".unreadable")
            })
            .count();
        assert_eq!(aside, 2);
        let (_, again) = Journal::open(dir.path(), 0).await.unwrap();
        assert_eq!(again.len(), 1);
    }
}
