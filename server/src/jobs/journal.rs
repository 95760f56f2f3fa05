//! The journal of unfinished jobs: one small JSON file per accepted job under `<data>/jobs`, written
//! (durably) before the job is acknowledged and removed once it has ended, so a job survives a crash or
//! a restart of the gateway: at start-up every entry becomes a job again and is checked against
//! ComfyUI's records (still running there, finished there, or sent again).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::access::identity::ClientId;
use crate::atomic_file;
use crate::job_id::JobId;

/// What is needed to run a job again, exactly as it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: JobId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ClientId>,
    pub prompt: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
}

/// The journal folder.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Opens (creating if needed) the folder and reads every entry in it, oldest job first. An entry
    /// that cannot be read is moved aside (`*.json.unreadable`) with a warning rather than stopping the
    /// studio or being retried at every start.
    pub async fn open(dir: &Path) -> io::Result<(Journal, Vec<Entry>)> {
        tokio::fs::create_dir_all(dir).await?;
        atomic_file::sweep_temporaries(dir).await?;
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
                    entries.push(entry);
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
        Ok((Journal { dir: dir.to_owned() }, entries))
    }

    /// Records an accepted job; returns once it is on disk.
    pub async fn add(&self, entry: &Entry) -> io::Result<()> {
        let json = serde_json::to_vec(entry).map_err(io::Error::other)?;
        atomic_file::write(&self.path(entry.id), &json).await
    }

    /// Forgets an ended job. A missing entry is fine (it was never written, or removed already).
    pub async fn remove(&self, id: JobId) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(id)).await {
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
        Entry {
            id: JobId::new(),
            owner: None,
            prompt: prompt.to_owned(),
            seed: 7,
            width: 512,
            height: 768,
        }
    }

    #[tokio::test]
    async fn entries_come_back_oldest_first_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, found) = Journal::open(dir.path()).await.unwrap();
        assert!(found.is_empty());
        let (first, second) = (entry("一只狐狸"), entry("a fox"));
        journal.add(&second).await.unwrap();
        journal.add(&first).await.unwrap();
        let (journal, found) = Journal::open(dir.path()).await.unwrap();
        assert_eq!(found, vec![first.clone(), second.clone()]);
        journal.remove(first.id).await.unwrap();
        journal.remove(first.id).await.unwrap();
        let (_, found) = Journal::open(dir.path()).await.unwrap();
        assert_eq!(found, vec![second]);
    }

    #[tokio::test]
    async fn a_damaged_entry_is_moved_aside_and_the_others_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).await.unwrap();
        let good = entry("fox");
        journal.add(&good).await.unwrap();
        let damaged = JobId::new();
        std::fs::write(dir.path().join(format!("{damaged}.json")), b"{\"id\":").unwrap();
        // A whole entry under another job's name is not trusted either.
        std::fs::write(
            dir.path().join(format!("{}.json", JobId::new())),
            serde_json::to_vec(&good).unwrap(),
        )
        .unwrap();
        let (_, found) = Journal::open(dir.path()).await.unwrap();
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
        let (_, again) = Journal::open(dir.path()).await.unwrap();
        assert_eq!(again.len(), 1);
    }
}
