//! History: the record of every finished image, one JSON file per job under `<data>/history`, loaded
//! at start-up and kept in memory ordered by id (so newest first is a reverse walk). A record is in
//! memory only once its file is durably on disk; records whose image is missing are dropped by
//! `storage::recover`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use zimage_contract::{self as api, HistoryItem, Timings};

use crate::access::identity::ClientId;
use crate::atomic_file;
use crate::job_id::JobId;

/// What the history keeps of a finished job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub id: JobId,
    /// The browser that made it; only it (or someone signed in) may delete it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ClientId>,
    pub prompt: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub timings: Timings,
    pub elapsed_ms: u64,
    /// The name of the ComfyUI backend that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl HistoryRecord {
    /// The record as the API shows it.
    pub fn item(&self) -> HistoryItem {
        let id = self.id.to_string();
        HistoryItem {
            image_url: api::paths::image(&id),
            thumbnail_url: api::paths::thumbnail(&id),
            id,
            prompt: self.prompt.clone(),
            seed: self.seed,
            width: self.width,
            height: self.height,
            timings: self.timings,
            created_at: self.timings.queued_at,
            backend: self.backend.clone(),
        }
    }
}

/// Reading or writing the history failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot use the history folder {path}")]
    Folder { path: PathBuf, source: io::Error },
    #[error("cannot write the history record of {id}")]
    Write { id: JobId, source: io::Error },
}

/// A record written and flushed under a temporary name, not yet in place nor visible; dropping it
/// removes the temporary.
#[derive(Debug)]
pub(crate) struct StagedRecord {
    file: atomic_file::Staged,
    record: HistoryRecord,
}

impl StagedRecord {
    /// Leaves the temporary on the disk as a crash would (the crash tests).
    pub(crate) fn abandon(self) -> io::Result<PathBuf> {
        self.file.abandon()
    }
}

/// The persisted history. Cheap to clone; all clones share one store.
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
    records: Arc<RwLock<BTreeMap<JobId, HistoryRecord>>>,
}

impl History {
    /// Opens (creating if needed) the history folder and loads every record in it. A record that
    /// cannot be read is skipped with a warning rather than stopping the studio.
    pub async fn open(dir: &Path) -> Result<History, HistoryError> {
        let folder_error = |source| HistoryError::Folder {
            path: dir.to_owned(),
            source,
        };
        atomic_file::create_dir(dir).await.map_err(folder_error)?;
        let mut records = BTreeMap::new();
        let mut entries = tokio::fs::read_dir(dir).await.map_err(folder_error)?;
        while let Some(entry) = entries.next_entry().await.map_err(folder_error)? {
            let path = entry.path();
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            match tokio::fs::read(&path)
                .await
                .map(|bytes| serde_json::from_slice::<HistoryRecord>(&bytes))
            {
                Ok(Ok(record)) => {
                    records.insert(record.id, record);
                }
                Ok(Err(error)) => {
                    tracing::warn!(path = %path.display(), %error, "skipping an unreadable history record")
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "skipping an unreadable history record")
                }
            }
        }
        tracing::info!(count = records.len(), "history loaded");
        Ok(History {
            dir: dir.to_owned(),
            records: Arc::new(RwLock::new(records)),
        })
    }

    /// Persists a record durably, then makes it visible.
    pub async fn add(&self, record: HistoryRecord) -> Result<(), HistoryError> {
        let staged = self.stage(record).await?;
        self.commit(staged).await
    }

    /// The first half of [`History::add`]: the record written and flushed under a temporary name.
    pub(crate) async fn stage(&self, record: HistoryRecord) -> Result<StagedRecord, HistoryError> {
        let id = record.id;
        let json = serde_json::to_vec_pretty(&record).map_err(|error| HistoryError::Write {
            id,
            source: error.into(),
        })?;
        let file = atomic_file::stage(&self.record_path(id), json.into())
            .await
            .map_err(|source| HistoryError::Write { id, source })?;
        Ok(StagedRecord { file, record })
    }

    /// The second half of [`History::add`]: the record put in place, flushed, then made visible.
    pub(crate) async fn commit(&self, staged: StagedRecord) -> Result<(), HistoryError> {
        let StagedRecord { file, record } = staged;
        let id = record.id;
        file.commit()
            .await
            .map_err(|source| HistoryError::Write { id, source })?;
        self.write_records().insert(id, record);
        Ok(())
    }

    /// The record of one job.
    pub fn get(&self, id: JobId) -> Option<HistoryRecord> {
        self.read_records().get(&id).cloned()
    }

    /// Up to `limit` records older than `before` (or the newest), newest first, and the id to pass as
    /// `before` for the next page when there is one.
    pub fn page(&self, limit: usize, before: Option<JobId>) -> (Vec<HistoryRecord>, Option<JobId>) {
        let records = self.read_records();
        let older = match before {
            Some(before) => records.range(..before),
            None => records.range(..),
        };
        let mut page: Vec<HistoryRecord> = older
            .rev()
            .take(limit.saturating_add(1))
            .map(|(_, record)| record.clone())
            .collect();
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|record| record.id)
        } else {
            None
        };
        (page, next)
    }

    /// Forgets a record and deletes its file durably. Returns whether it existed.
    pub async fn remove(&self, id: JobId) -> Result<bool, HistoryError> {
        let existed = self.write_records().remove(&id).is_some();
        let deleted = atomic_file::remove(&self.record_path(id))
            .await
            .map_err(|source| HistoryError::Write { id, source })?;
        Ok(existed || deleted)
    }

    /// The ids of every record, oldest first.
    pub fn ids(&self) -> Vec<JobId> {
        self.read_records().keys().copied().collect()
    }

    /// The history folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.read_records().len()
    }

    /// True when no image was ever kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record_path(&self, id: JobId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    // A poisoned lock only means another thread panicked mid-update of a map whose every state is
    // valid, so the data is still safe to use.
    fn read_records(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<JobId, HistoryRecord>> {
        self.records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_records(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<JobId, HistoryRecord>> {
        self.records
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(prompt: &str) -> HistoryRecord {
        HistoryRecord {
            owner: None,
            id: JobId::new(),
            prompt: prompt.to_owned(),
            seed: 1,
            width: 1024,
            height: 576,
            timings: Timings {
                queued_at: 1,
                started_at: Some(2),
                finished_at: Some(3),
            },
            elapsed_ms: 2,
            backend: None,
        }
    }

    #[tokio::test]
    async fn records_survive_a_reopen_and_list_newest_first_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        let records: Vec<_> = (0..5).map(|n| record(&format!("prompt {n}"))).collect();
        for record in &records {
            history.add(record.clone()).await.unwrap();
        }
        let reopened = History::open(dir.path()).await.unwrap();
        let (first, next) = reopened.page(2, None);
        assert_eq!(first, vec![records[4].clone(), records[3].clone()]);
        assert_eq!(next, Some(records[3].id));
        let (second, next) = reopened.page(2, next);
        assert_eq!(second, vec![records[2].clone(), records[1].clone()]);
        let (last, next) = reopened.page(2, next);
        assert_eq!(last, vec![records[0].clone()]);
        assert_eq!(next, None);
    }

    #[tokio::test]
    async fn a_record_is_visible_only_once_it_is_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        let kept = record("staged");
        let staged = history.stage(kept.clone()).await.unwrap();
        assert!(history.get(kept.id).is_none());
        assert!(History::open(dir.path()).await.unwrap().is_empty());
        history.commit(staged).await.unwrap();
        assert_eq!(history.get(kept.id), Some(kept.clone()));
        assert_eq!(History::open(dir.path()).await.unwrap().ids(), vec![kept.id]);
    }

    #[tokio::test]
    async fn removing_a_record_deletes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        let kept = record("kept");
        history.add(kept.clone()).await.unwrap();
        assert!(history.remove(kept.id).await.unwrap());
        assert!(!history.remove(kept.id).await.unwrap());
        assert!(History::open(dir.path()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unreadable_record_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.json"), b"{ not json").unwrap();
        let history = History::open(dir.path()).await.unwrap();
        assert!(history.is_empty());
    }

    #[test]
    fn an_item_links_to_the_image_by_id() {
        let record = record("fox");
        let item = record.item();
        assert_eq!(item.image_url, format!("/api/images/{}", record.id));
        assert_eq!(item.thumbnail_url, format!("/api/images/{}/thumbnail", record.id));
        assert_eq!(item.created_at, 1);
    }
}
