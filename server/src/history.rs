//! History: the record of every finished image, one row per job in the SQLite database
//! `<data>/history.sqlite3`, with a full-text index of the prompts and the stars. A row is visible only
//! once its transaction is committed (durably: WAL with `synchronous = FULL`); rows whose image is
//! missing are dropped by `storage::recover`. The JSON records of older versions (`<data>/history/`)
//! are imported once, then kept aside as `<data>/history.imported/`.
//!
//! Search: the prompt's full-text index uses FTS5's `trigram` tokenizer, which finds any substring of
//! three characters or more, in English as in Chinese (which has no spaces between words); shorter
//! terms go through the index's vocabulary or a reading of the prompts ([`search`] has the plan). A
//! query that is a whole number also matches the seed. Pages are newest first in the order the images
//! were kept.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension as _, params};
use rusqlite_migration::{M, Migrations};
use serde::{Deserialize, Serialize};
use zimage_contract::{self as api, HistoryItem, SourceInfo, Timings};

use crate::access::identity::ClientId;
use crate::atomic_file;
use crate::job_id::JobId;

mod search;

use search::SELECTED;
pub use search::{Filter, MAX_QUERY_CHARS, MAX_QUERY_TERMS, SearchText, SearchTextError};

/// The database's file name in the data folder.
pub const DATABASE_FILE: &str = "history.sqlite3";
/// The folder of one JSON record per job, as older versions kept the history.
pub const LEGACY_DIR: &str = "history";
/// Where that folder goes once imported, kept as it was.
pub const IMPORTED_DIR: &str = "history.imported";

/// The schema, one migration per version (`PRAGMA user_version` counts them).
const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "CREATE TABLE history (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        owner TEXT,
        prompt TEXT NOT NULL,
        seed INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        queued_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        elapsed_ms INTEGER NOT NULL,
        backend TEXT,
        starred INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX history_starred ON history (id) WHERE starred = 1;
    CREATE INDEX history_seed ON history (seed);
    CREATE VIRTUAL TABLE history_fts USING fts5 (
        prompt, content = 'history', content_rowid = 'seq', tokenize = 'trigram'
    );
    CREATE TRIGGER history_inserted AFTER INSERT ON history BEGIN
        INSERT INTO history_fts (rowid, prompt) VALUES (new.seq, new.prompt);
    END;
    CREATE TRIGGER history_deleted AFTER DELETE ON history BEGIN
        INSERT INTO history_fts (history_fts, rowid, prompt) VALUES ('delete', old.seq, old.prompt);
    END;
    CREATE TRIGGER history_updated AFTER UPDATE OF prompt ON history BEGIN
        INSERT INTO history_fts (history_fts, rowid, prompt) VALUES ('delete', old.seq, old.prompt);
        INSERT INTO history_fts (rowid, prompt) VALUES (new.seq, new.prompt);
    END;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
    ),
    // Version 2, for searches that read a page, not the table (`search`): every prompt is indexed
    // with a space after it, so each two-character substring begins an indexed trigram, which the
    // vocabulary table lists; the stars are indexed in the order pages walk (`seq`).
    M::up(
        "DROP TRIGGER history_inserted;
    DROP TRIGGER history_deleted;
    DROP TRIGGER history_updated;
    CREATE TRIGGER history_inserted AFTER INSERT ON history BEGIN
        INSERT INTO history_fts (rowid, prompt) VALUES (new.seq, new.prompt || ' ');
    END;
    CREATE TRIGGER history_deleted AFTER DELETE ON history BEGIN
        INSERT INTO history_fts (history_fts, rowid, prompt) VALUES ('delete', old.seq, old.prompt || ' ');
    END;
    CREATE TRIGGER history_updated AFTER UPDATE OF prompt ON history BEGIN
        INSERT INTO history_fts (history_fts, rowid, prompt) VALUES ('delete', old.seq, old.prompt || ' ');
        INSERT INTO history_fts (rowid, prompt) VALUES (new.seq, new.prompt || ' ');
    END;
    INSERT INTO history_fts (history_fts) VALUES ('delete-all');
    INSERT INTO history_fts (rowid, prompt) SELECT seq, prompt || ' ' FROM history;
    INSERT INTO history_fts (history_fts) VALUES ('optimize');
    CREATE VIRTUAL TABLE history_terms USING fts5vocab (history_fts, row);
    DROP INDEX history_starred;
    CREATE INDEX history_starred ON history (seq) WHERE starred = 1;",
    ),
    // Version 3: the picture an image started from, and how strongly (`SourceInfo` as JSON).
    M::up("ALTER TABLE history ADD COLUMN source TEXT;"),
    // Version 4: the LoRAs an image was made with (`[LoraChoice]` as JSON; NULL for none), and their
    // names in the search index after the prompt, so a LoRA's name finds its images.
    M::up(
        "ALTER TABLE history ADD COLUMN loras TEXT;
    DROP TRIGGER history_inserted;
    DROP TRIGGER history_deleted;
    DROP TRIGGER history_updated;
    CREATE TRIGGER history_inserted AFTER INSERT ON history BEGIN
        INSERT INTO history_fts (rowid, prompt) VALUES (new.seq, new.prompt || ' ' || coalesce(
            (SELECT group_concat(json_extract(value, '$.name'), ' ') FROM json_each(new.loras)) || ' ', ''));
    END;
    CREATE TRIGGER history_deleted AFTER DELETE ON history BEGIN
        INSERT INTO history_fts (history_fts, rowid, prompt) VALUES ('delete', old.seq, old.prompt || ' ' || coalesce(
            (SELECT group_concat(json_extract(value, '$.name'), ' ') FROM json_each(old.loras)) || ' ', ''));
    END;
    CREATE TRIGGER history_updated AFTER UPDATE OF prompt, loras ON history BEGIN
        INSERT INTO history_fts (history_fts, rowid, prompt) VALUES ('delete', old.seq, old.prompt || ' ' || coalesce(
            (SELECT group_concat(json_extract(value, '$.name'), ' ') FROM json_each(old.loras)) || ' ', ''));
        INSERT INTO history_fts (rowid, prompt) VALUES (new.seq, new.prompt || ' ' || coalesce(
            (SELECT group_concat(json_extract(value, '$.name'), ' ') FROM json_each(new.loras)) || ' ', ''));
    END;",
    ),
    // Version 5: the saved styles (`crate::styles`), in this database so that backups carry them. A
    // name is unique whatever its case (ASCII letters), as people type it again in any case.
    M::up(
        "CREATE TABLE styles (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        prompt_before TEXT NOT NULL DEFAULT '',
        prompt_after TEXT NOT NULL DEFAULT '',
        aspect_ratio TEXT,
        loras TEXT NOT NULL DEFAULT '[]',
        updated_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;",
    ),
];

/// The `meta` key set, in the import's own transaction, once the JSON records are in.
const JSON_IMPORTED: &str = "json_imported";
/// The `meta` key a studio writes when it closes the history with every save finished, and takes
/// away when it opens it: present at a start, the last run ended cleanly.
const CLOSED_CLEANLY: &str = "closed_cleanly";

const COLUMNS: &str = "id, owner, prompt, seed, width, height, queued_at, started_at, finished_at, \
                       elapsed_ms, backend, starred, source, loras";

/// What the history keeps of a finished job (also the JSON record of older versions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The picture it started from, and how strongly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfo>,
    /// The LoRAs it was made with, in the order they were chained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<api::LoraChoice>,
}

impl HistoryRecord {
    /// The record as the API shows it, not starred (a record just made).
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
            starred: false,
            source: self.source.clone(),
            loras: self.loras.clone(),
        }
    }
}

/// A record as the gallery shows it: with its star.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub record: HistoryRecord,
    pub starred: bool,
}

impl Entry {
    /// The entry as the API shows it.
    pub fn item(&self) -> HistoryItem {
        HistoryItem {
            starred: self.starred,
            ..self.record.item()
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
    #[error("the history database {path} cannot be used")]
    Database { path: PathBuf, source: rusqlite::Error },
    #[error("the history database {path} cannot be brought to the current schema")]
    Schema {
        path: PathBuf,
        source: rusqlite_migration::Error,
    },
    #[error("cannot read the history")]
    Read(#[source] rusqlite::Error),
}

impl HistoryError {
    /// The error as an `io::Error`, for the callers that sort failures by kind (a full disk).
    pub fn into_io(self) -> io::Error {
        match self {
            HistoryError::Folder { source, .. } | HistoryError::Write { source, .. } => source,
            HistoryError::Database { source, .. } | HistoryError::Read(source) => sqlite_io(source),
            HistoryError::Schema { source, .. } => io::Error::other(source),
        }
    }
}

/// SQLite's "disk full" as the `io::Error` the rest of the studio recognises.
fn sqlite_io(error: rusqlite::Error) -> io::Error {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => io::Error::new(io::ErrorKind::StorageFull, error),
        _ => io::Error::other(error),
    }
}

/// What [`History::add_with`] does just before its transaction commits (the crash tests stop there).
#[derive(Debug)]
pub(crate) enum BeforeCommit {
    Commit,
    /// Give up as a crash would: the transaction is never committed.
    Abandon,
    /// The commit fails with this error.
    Fail(io::Error),
}

/// The persisted history. Cheap to clone; all clones share one database.
#[derive(Debug, Clone)]
pub struct History {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Writes, one at a time. Its automatic checkpoint is off (see [`WRITES_PER_CHECKPOINT`]).
    writer: Mutex<Connection>,
    /// Reads: WAL lets them run beside a write.
    reader: Mutex<Connection>,
    /// Held by the checkpoint under way, which runs on a connection of its own (opened for it and
    /// closed after it: it is needed every few dozen images and costs no memory between them), so that
    /// neither a write nor a read ever waits for one.
    checkpointing: Mutex<()>,
    /// Writes since the last checkpoint.
    writes: AtomicU32,
}

/// Writes (transactions of a few pages each) between two checkpoints of the write-ahead log. SQLite's
/// own automatic checkpoint (every 1,000 pages) runs inside the commit that crosses the mark: it
/// copies the pages into the database file and flushes it, milliseconds on a disk, added to the job
/// whose image happened to be saved then. So the writer's is turned off, and a checkpoint runs on a
/// blocking thread after every this many writes, beside the announcement instead of before it. A
/// checkpoint only tidies: every commit is already durable in the log.
const WRITES_PER_CHECKPOINT: u32 = 64;

/// Opens a connection with the studio's settings: WAL (readers beside the writer, and the online
/// backup while the studio runs) and a commit that is on the disk when it returns.
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    // A checkpointed WAL is cut back to this size, so a large import leaves no large file to scan at
    // the next start.
    connection.pragma_update(None, "journal_size_limit", 4 * 1024 * 1024)?;
    search::register_fold(&connection)?;
    Ok(connection)
}

impl History {
    /// Opens (creating if needed) the history of the data folder `data_dir`: the database brought to
    /// the current schema, and the JSON records of an older version imported the first time. A JSON
    /// record that cannot be read is skipped with a warning (its file stays in `history.imported/`).
    pub async fn open(data_dir: &Path) -> Result<History, HistoryError> {
        let data_dir = data_dir.to_owned();
        blocking(move || History::open_blocking(&data_dir)).await
    }

    /// [`History::open`], on the calling thread.
    pub fn open_blocking(data_dir: &Path) -> Result<History, HistoryError> {
        std::fs::create_dir_all(data_dir).map_err(|source| HistoryError::Folder {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let database = |source| HistoryError::Database {
            path: path.clone(),
            source,
        };
        let mut writer = connect(&path).map_err(database)?;
        let version: i64 = writer
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(database)?;
        if version > 0 && version < MIGRATIONS.len() as i64 {
            // Re-indexing a large history takes a few seconds, once.
            tracing::info!(
                from = version,
                to = MIGRATIONS.len(),
                "updating the history database"
            );
        }
        Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut writer)
            .map_err(|source| HistoryError::Schema {
                path: path.clone(),
                source,
            })?;
        import_json(&mut writer, data_dir).map_err(database)?;
        let reader = connect(&path).map_err(database)?;
        // Only now: an import above is checkpointed at its commit as usual.
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(database)?;
        let history = History {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                checkpointing: Mutex::new(()),
                writes: AtomicU32::new(0),
            }),
        };
        tracing::info!(count = history.len(), "history opened");
        Ok(history)
    }

    /// Persists a record durably, then makes it visible (both at its commit).
    pub async fn add(&self, record: HistoryRecord) -> Result<(), HistoryError> {
        self.add_with(record, || BeforeCommit::Commit).await.map(|_| ())
    }

    /// [`History::add`], asking `before_commit` what to do once the row is written but not committed.
    /// True when it was committed.
    pub(crate) async fn add_with(
        &self,
        record: HistoryRecord,
        before_commit: impl FnOnce() -> BeforeCommit + Send + 'static,
    ) -> Result<bool, HistoryError> {
        let history = self.clone();
        blocking(move || history.add_with_blocking(record, before_commit)).await
    }

    /// [`History::add_with`] on the calling thread (a blocking one): the row inserted and committed,
    /// nothing more. The write-ahead log is checkpointed afterwards, off this path (see
    /// [`WRITES_PER_CHECKPOINT`]).
    pub(crate) fn add_with_blocking(
        &self,
        record: HistoryRecord,
        before_commit: impl FnOnce() -> BeforeCommit,
    ) -> Result<bool, HistoryError> {
        let id = record.id;
        let write = |source: rusqlite::Error| HistoryError::Write {
            id,
            source: sqlite_io(source),
        };
        let committed = {
            let mut writer = self.writer();
            let transaction = writer.transaction().map_err(write)?;
            insert(&transaction, &record, false).map_err(write)?;
            match before_commit() {
                BeforeCommit::Commit => transaction.commit().map_err(write).map(|()| true),
                // Dropping the transaction rolls it back, as the next start would after a crash.
                BeforeCommit::Abandon => Ok(false),
                BeforeCommit::Fail(source) => Err(HistoryError::Write { id, source }),
            }
        };
        self.wrote();
        committed
    }

    /// Whether the studio that last used this history closed it cleanly, with every save finished
    /// ([`History::close_cleanly`]). The mark is taken away (durably) before this returns, so a crash
    /// of this run reads as one at the next start.
    pub async fn take_clean_close(&self) -> Result<bool, HistoryError> {
        let history = self.clone();
        blocking(move || {
            history
                .writer()
                .execute("DELETE FROM meta WHERE key = ?1", [CLOSED_CLEANLY])
                .map(|deleted| deleted > 0)
                .map_err(|source| HistoryError::Database {
                    path: history.path().to_owned(),
                    source,
                })
        })
        .await
    }

    /// Marks the history closed cleanly: nothing is half-way to the disk. The next start then
    /// skips the crash recovery's walk through every image.
    pub async fn close_cleanly(&self) -> Result<(), HistoryError> {
        let history = self.clone();
        blocking(move || {
            history
                .writer()
                .execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                    params![CLOSED_CLEANLY, "1"],
                )
                .map(|_| ())
                .map_err(|source| HistoryError::Database {
                    path: history.path().to_owned(),
                    source,
                })
        })
        .await
    }

    /// The record of one job (a lookup by key: quick enough for the async callers).
    pub fn get(&self, id: JobId) -> Option<HistoryRecord> {
        self.entry(id).map(|entry| entry.record)
    }

    /// The record of one job with its star.
    pub fn entry(&self, id: JobId) -> Option<Entry> {
        let reader = self.reader();
        let found = reader
            .prepare_cached(&format!("SELECT {SELECTED} FROM history h WHERE h.id = ?1"))
            .and_then(|mut statement| statement.query_row([id.to_string()], row_entry).optional());
        match found {
            Ok(entry) => entry,
            Err(error) => {
                tracing::error!(%id, %error, "cannot read a history record");
                None
            }
        }
    }

    /// Up to `limit` records older than `before` (or the newest), newest first, and the id to pass as
    /// `before` for the next page when there is one.
    pub async fn page(
        &self,
        limit: usize,
        before: Option<JobId>,
    ) -> Result<(Vec<Entry>, Option<JobId>), HistoryError> {
        self.search(Filter::default(), limit, before).await
    }

    /// [`History::page`] of the records that pass `filter`.
    pub async fn search(
        &self,
        filter: Filter,
        limit: usize,
        before: Option<JobId>,
    ) -> Result<(Vec<Entry>, Option<JobId>), HistoryError> {
        let history = self.clone();
        blocking(move || history.search_blocking(&filter, limit, before)).await
    }

    /// [`History::search`] on the calling thread.
    pub fn search_blocking(
        &self,
        filter: &Filter,
        limit: usize,
        before: Option<JobId>,
    ) -> Result<(Vec<Entry>, Option<JobId>), HistoryError> {
        search::page(&self.reader(), filter, limit, before).map_err(HistoryError::Read)
    }

    /// Stars or unstars a record. False when there is no such record.
    pub async fn set_starred(&self, id: JobId, starred: bool) -> Result<bool, HistoryError> {
        let history = self.clone();
        blocking(move || {
            let changed = history
                .writer()
                .execute(
                    "UPDATE history SET starred = ?2 WHERE id = ?1",
                    params![id.to_string(), starred],
                )
                .map(|changed| changed > 0)
                .map_err(|source| HistoryError::Write {
                    id,
                    source: sqlite_io(source),
                });
            history.wrote();
            changed
        })
        .await
    }

    /// Forgets a record, durably. Returns whether it existed.
    pub async fn remove(&self, id: JobId) -> Result<bool, HistoryError> {
        let history = self.clone();
        blocking(move || history.remove_blocking(id)).await
    }

    /// [`History::remove`] on the calling thread.
    pub(crate) fn remove_blocking(&self, id: JobId) -> Result<bool, HistoryError> {
        let removed = self
            .writer()
            .execute("DELETE FROM history WHERE id = ?1", [id.to_string()])
            .map(|changed| changed > 0)
            .map_err(|source| HistoryError::Write {
                id,
                source: sqlite_io(source),
            });
        self.wrote();
        removed
    }

    /// The ids of every record, oldest first.
    pub fn ids(&self) -> Result<BTreeSet<JobId>, HistoryError> {
        let ids = self.texts("SELECT id FROM history")?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// The one text column of every row `sql` selects.
    fn texts(&self, sql: &str) -> Result<Vec<String>, HistoryError> {
        let reader = self.reader();
        let mut statement = reader.prepare_cached(sql).map_err(HistoryError::Read)?;
        statement
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(Iterator::collect::<rusqlite::Result<Vec<String>>>)
            .map_err(HistoryError::Read)
    }

    /// The ids of the pictures records started from (for the pictures' sweep).
    pub fn source_pictures(&self) -> Result<BTreeSet<String>, HistoryError> {
        let sources = self.texts("SELECT source FROM history WHERE source IS NOT NULL")?;
        Ok(sources
            .iter()
            .filter_map(|json| serde_json::from_str::<SourceInfo>(json).ok())
            .map(|source| source.picture)
            .collect())
    }

    /// Runs `work` on a blocking thread with the connection that writes (one write at a time), for
    /// the other tables of this database: the saved styles (`crate::styles`) live here so that a
    /// backup carries them.
    pub(crate) async fn with_writer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        let history = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            let done = work(&mut history.writer());
            history.wrote();
            done
        })
        .await;
        done.unwrap_or_else(|error| {
            Err(rusqlite::Error::ToSqlConversionFailure(Box::new(
                io::Error::other(format!("the history task stopped: {error}")),
            )))
        })
    }

    /// [`History::with_writer`] with the connection that reads.
    pub(crate) async fn with_reader<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        let history = self.clone();
        let done = tokio::task::spawn_blocking(move || work(&history.reader())).await;
        done.unwrap_or_else(|error| {
            Err(rusqlite::Error::ToSqlConversionFailure(Box::new(
                io::Error::other(format!("the history task stopped: {error}")),
            )))
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.reader()
            .query_row("SELECT count(*) FROM history", [], |row| row.get::<_, i64>(0))
            .map_or(0, |count| usize::try_from(count).unwrap_or(0))
    }

    /// True when no image was ever kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A poisoned lock only means another thread panicked mid-call; SQLite's transactions keep the
    // data whole, so the connection is still safe to use.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.inner
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a write (after it is done); every [`WRITES_PER_CHECKPOINT`] writes, checkpoints on a
    /// blocking thread of its own (here, without a runtime).
    fn wrote(&self) {
        if self.inner.writes.fetch_add(1, Ordering::Relaxed) + 1 < WRITES_PER_CHECKPOINT {
            return;
        }
        self.inner.writes.store(0, Ordering::Relaxed);
        let history = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || history.checkpoint())),
            Err(_) => history.checkpoint(),
        }
    }

    /// Copies the write-ahead log's pages into the database file (a passive checkpoint: it neither
    /// waits for nor blocks the writer). A failure only leaves the log longer; the next one tries again.
    fn checkpoint(&self) {
        let _one_at_a_time = self
            .inner
            .checkpointing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let connection = match connect(self.path()) {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(%error, "cannot open the history for a checkpoint");
                return;
            }
        };
        let checkpointed = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match checkpointed {
            Ok((log, copied)) => tracing::debug!(log, copied, "history checkpointed"),
            Err(error) => tracing::warn!(%error, "cannot checkpoint the history"),
        }
    }
}

/// A consistent copy of the database `from` (a studio may be writing it: SQLite's online backup copies
/// a snapshot) written to `to` as a single file (no WAL), for backups.
pub fn copy_database(from: &Path, to: &Path) -> Result<(), HistoryError> {
    let database = |path: &Path| {
        let path = path.to_owned();
        move |source| HistoryError::Database { path, source }
    };
    if !from.is_file() {
        return Err(HistoryError::Folder {
            path: from.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no history database"),
        });
    }
    let source = Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(database(from))?;
    source
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(database(from))?;
    source.backup(rusqlite::MAIN_DB, to, None).map_err(database(to))?;
    let copy = Connection::open(to).map_err(database(to))?;
    copy.pragma_update(None, "journal_mode", "DELETE")
        .map_err(database(to))?;
    Ok(())
}

/// Checks a database file (SQLite's integrity check, the schema this build knows or an older one)
/// and lists its ids.
pub fn check_database(path: &Path) -> Result<BTreeSet<JobId>, HistoryError> {
    let database = |source| HistoryError::Database {
        path: path.to_owned(),
        source,
    };
    let connection =
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(database)?;
    let verdict: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(database)?;
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(database)?;
    if verdict != "ok" || version < 1 || version > MIGRATIONS.len() as i64 {
        return Err(database(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(format!("integrity check: {verdict}; schema version {version}")),
        )));
    }
    let mut statement = connection.prepare("SELECT id FROM history").map_err(database)?;
    let ids = statement
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(Iterator::collect::<rusqlite::Result<Vec<String>>>)
        .map_err(database)?;
    ids.iter()
        .map(|id| {
            id.parse().map_err(|_| {
                database(rusqlite::Error::InvalidColumnType(
                    0,
                    id.clone(),
                    rusqlite::types::Type::Text,
                ))
            })
        })
        .collect()
}

/// Deletes rows from a database file that no studio uses (a backup whose images went away meanwhile).
pub fn delete_rows(path: &Path, ids: &[JobId]) -> Result<(), HistoryError> {
    let database = |source| HistoryError::Database {
        path: path.to_owned(),
        source,
    };
    let mut connection = Connection::open(path).map_err(database)?;
    let transaction = connection.transaction().map_err(database)?;
    for id in ids {
        transaction
            .execute("DELETE FROM history WHERE id = ?1", [id.to_string()])
            .map_err(database)?;
    }
    transaction.commit().map_err(database)
}

/// Runs SQLite's blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, HistoryError> + Send + 'static,
) -> Result<T, HistoryError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        HistoryError::Read(rusqlite::Error::ToSqlConversionFailure(Box::new(
            io::Error::other(format!("the history task stopped: {error}")),
        )))
    })?
}

/// SQLite keeps 64-bit signed integers: a seed above `i64::MAX` is kept by its bits.
fn seed_to_sql(seed: u64) -> i64 {
    i64::from_ne_bytes(seed.to_ne_bytes())
}

fn seed_from_sql(seed: i64) -> u64 {
    u64::from_ne_bytes(seed.to_ne_bytes())
}

fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn insert(connection: &Connection, record: &HistoryRecord, or_ignore: bool) -> rusqlite::Result<usize> {
    let verb = if or_ignore { "INSERT OR IGNORE" } else { "INSERT" };
    connection
        .prepare_cached(&format!(
            "{verb} INTO history ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?12, ?13)"
        ))?
        .execute(params![
            record.id.to_string(),
            record.owner.map(|owner| owner.to_string()),
            record.prompt,
            seed_to_sql(record.seed),
            record.width,
            record.height,
            to_sql(record.timings.queued_at),
            record.timings.started_at.map(to_sql),
            record.timings.finished_at.map(to_sql),
            to_sql(record.elapsed_ms),
            record.backend,
            record
                .source
                .as_ref()
                .and_then(|source| serde_json::to_string(source).ok()),
            (!record.loras.is_empty())
                .then(|| serde_json::to_string(&record.loras).ok())
                .flatten(),
        ])
}

fn row_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let text = |index: usize, value: String| -> rusqlite::Result<JobId> {
        value.parse().map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Text,
                Box::new(io::Error::other("not a job id")),
            )
        })
    };
    let id = text(0, row.get(0)?)?;
    // An owner that no longer parses only loses the right to delete without signing in.
    let owner = row
        .get::<_, Option<String>>(1)?
        .and_then(|owner| owner.parse::<ClientId>().ok());
    Ok(Entry {
        record: HistoryRecord {
            id,
            owner,
            prompt: row.get(2)?,
            seed: seed_from_sql(row.get(3)?),
            width: row.get(4)?,
            height: row.get(5)?,
            timings: Timings {
                queued_at: from_sql(row.get(6)?),
                started_at: row.get::<_, Option<i64>>(7)?.map(from_sql),
                finished_at: row.get::<_, Option<i64>>(8)?.map(from_sql),
            },
            elapsed_ms: from_sql(row.get(9)?),
            backend: row.get(10)?,
            // A source that no longer reads only loses the "started from" note.
            source: row
                .get::<_, Option<String>>(13)?
                .and_then(|json| serde_json::from_str(&json).ok()),
            loras: row
                .get::<_, Option<String>>(14)?
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
        },
        starred: row.get(11)?,
    })
}

/// Imports the JSON records of `<data>/history/` once, in one transaction with the mark that says it
/// is done: a crash part way leaves no mark, and the next start imports again (rows already there are
/// kept as they are). Then the folder is renamed `history.imported`, kept as it was.
fn import_json(connection: &mut Connection, data_dir: &Path) -> rusqlite::Result<()> {
    let legacy = data_dir.join(LEGACY_DIR);
    let done = connection
        .query_row("SELECT value FROM meta WHERE key = ?1", [JSON_IMPORTED], |row| {
            row.get::<_, String>(0)
        })
        .optional()?
        .is_some();
    if !done {
        let records = read_json_records(&legacy);
        let transaction = connection.transaction()?;
        let mut imported = 0;
        for record in &records {
            imported += insert(&transaction, record, true)?;
        }
        transaction.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![JSON_IMPORTED, records.len().to_string()],
        )?;
        transaction.commit()?;
        if imported > 0 {
            // One insert per record left the full-text index in many small segments; merged into
            // one, a search reads one list per term (about twice as fast at 100,000 records).
            connection.execute("INSERT INTO history_fts (history_fts) VALUES ('optimize')", [])?;
        }
        if !records.is_empty() {
            tracing::info!(
                imported,
                found = records.len(),
                "imported the JSON history records"
            );
        }
    }
    if legacy.is_dir() {
        let aside = data_dir.join(IMPORTED_DIR);
        match std::fs::rename(&legacy, &aside) {
            Ok(()) => {
                if let Err(error) = atomic_file::sync_dir_blocking(data_dir) {
                    tracing::warn!(%error, "cannot flush the data folder after moving the JSON records aside");
                }
            }
            Err(error) => tracing::warn!(
                from = %legacy.display(),
                to = %aside.display(),
                %error,
                "cannot move the imported JSON history records aside; they stay (and are not imported again)"
            ),
        }
    }
    Ok(())
}

/// Every readable record of the JSON folder, oldest first. A missing folder has none.
fn read_json_records(dir: &Path) -> Vec<HistoryRecord> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            tracing::error!(dir = %dir.display(), %error, "cannot read the JSON history records");
            return Vec::new();
        }
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|extension| extension != "json") {
            continue;
        }
        match std::fs::read(&path).map(|bytes| serde_json::from_slice::<HistoryRecord>(&bytes)) {
            Ok(Ok(record)) => records.push(record),
            Ok(Err(error)) => {
                tracing::warn!(path = %path.display(), %error, "skipping an unreadable history record")
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "skipping an unreadable history record")
            }
        }
    }
    records.sort_by_key(|record| record.id);
    records
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
            source: None,
            loras: Vec::new(),
        }
    }

    fn records(entries: Vec<Entry>) -> Vec<HistoryRecord> {
        entries.into_iter().map(|entry| entry.record).collect()
    }

    async fn find(history: &History, text: &str) -> Vec<String> {
        let filter = Filter {
            text: SearchText::parse(text).unwrap(),
            starred_only: false,
        };
        let (found, _) = history.search(filter, 100, None).await.unwrap();
        found.into_iter().map(|entry| entry.record.prompt).collect()
    }

    #[tokio::test]
    async fn records_survive_a_reopen_and_list_newest_first_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        let records: Vec<_> = (0..5).map(|n| record(&format!("prompt {n}"))).collect();
        for record in &records {
            history.add(record.clone()).await.unwrap();
        }
        drop(history);
        let reopened = History::open(dir.path()).await.unwrap();
        let (first, next) = reopened.page(2, None).await.unwrap();
        assert_eq!(
            super::tests::records(first),
            vec![records[4].clone(), records[3].clone()]
        );
        assert_eq!(next, Some(records[3].id));
        let (second, next) = reopened.page(2, next).await.unwrap();
        assert_eq!(
            super::tests::records(second),
            vec![records[2].clone(), records[1].clone()]
        );
        let (last, next) = reopened.page(2, next).await.unwrap();
        assert_eq!(super::tests::records(last), vec![records[0].clone()]);
        assert_eq!(next, None);
    }

    #[tokio::test]
    async fn a_record_is_visible_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        let kept = record("abandoned");
        assert!(
            !history
                .add_with(kept.clone(), || BeforeCommit::Abandon)
                .await
                .unwrap()
        );
        assert!(history.get(kept.id).is_none());
        let error = history
            .add_with(kept.clone(), || {
                BeforeCommit::Fail(io::Error::from(io::ErrorKind::StorageFull))
            })
            .await
            .unwrap_err();
        assert_eq!(error.into_io().kind(), io::ErrorKind::StorageFull);
        assert!(history.is_empty());
        history.add(kept.clone()).await.unwrap();
        assert_eq!(history.get(kept.id), Some(kept.clone()));
        drop(history);
        let reopened = History::open(dir.path()).await.unwrap();
        assert_eq!(reopened.ids().unwrap(), BTreeSet::from([kept.id]));
    }

    #[tokio::test]
    async fn the_picture_an_image_started_from_is_kept_with_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        let source = SourceInfo {
            picture: "0f".repeat(32),
            strength: 0.35,
            masked: false,
        };
        let kept = HistoryRecord {
            source: Some(source.clone()),
            ..record("a sketch, repainted")
        };
        history.add(kept.clone()).await.unwrap();
        drop(history);
        let reopened = History::open(dir.path()).await.unwrap();
        assert_eq!(reopened.get(kept.id), Some(kept.clone()));
        let filter = Filter {
            text: SearchText::parse("sketch").unwrap(),
            starred_only: false,
        };
        let (found, _) = reopened.search(filter, 10, None).await.unwrap();
        assert_eq!(found[0].item().source, Some(source));
    }

    #[tokio::test]
    async fn the_loras_of_an_image_are_kept_shown_and_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        let loras = vec![
            api::LoraChoice {
                name: "styles/watercolor-v2.safetensors".to_owned(),
                strength: 0.8,
            },
            api::LoraChoice {
                name: "ink.safetensors".to_owned(),
                strength: -0.5,
            },
        ];
        let kept = HistoryRecord {
            loras: loras.clone(),
            ..record("a harbour at dusk")
        };
        let plain = record("a harbour at noon");
        history.add(kept.clone()).await.unwrap();
        history.add(plain.clone()).await.unwrap();
        drop(history);
        let reopened = History::open(dir.path()).await.unwrap();
        assert_eq!(reopened.get(kept.id), Some(kept.clone()));
        assert_eq!(reopened.get(plain.id).unwrap().loras, Vec::new());
        assert_eq!(kept.item().loras, loras);
        for words in ["watercolor", "ink.safetensors", "harbour watercolor"] {
            let filter = Filter {
                text: SearchText::parse(words).unwrap(),
                starred_only: false,
            };
            let (found, _) = reopened.search(filter, 10, None).await.unwrap();
            let ids: Vec<JobId> = found.iter().map(|entry| entry.record.id).collect();
            assert_eq!(ids, [kept.id], "{words}");
        }
        // Gone with its record, from the index too.
        assert!(reopened.remove(kept.id).await.unwrap());
        let filter = Filter {
            text: SearchText::parse("watercolor").unwrap(),
            starred_only: false,
        };
        assert!(reopened.search(filter, 10, None).await.unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn removing_a_record_forgets_it_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        let kept = record("kept");
        history.add(kept.clone()).await.unwrap();
        assert!(history.remove(kept.id).await.unwrap());
        assert!(!history.remove(kept.id).await.unwrap());
        assert!(find(&history, "kept").await.is_empty());
        drop(history);
        assert!(History::open(dir.path()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_log_is_checkpointed_after_the_writes_never_inside_their_commits() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        let writer_setting: i64 = history
            .writer()
            .query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))
            .unwrap();
        assert_eq!(writer_setting, 0, "the writer never checkpoints inside a commit");
        // Pages reach the database file only at a checkpoint; until then they sit in the log.
        let database_size = || std::fs::metadata(history.path()).unwrap().len();
        let before = database_size();
        for index in 1..WRITES_PER_CHECKPOINT {
            history.add(record(&format!("fox number {index}"))).await.unwrap();
        }
        assert_eq!(database_size(), before);
        history.add(record("the last fox")).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while database_size() == before {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("no checkpoint ran");
        assert_eq!(history.len(), WRITES_PER_CHECKPOINT as usize);
        drop(history);
        let reopened = History::open(dir.path()).await.unwrap();
        assert_eq!(find(&reopened, "the last fox").await.len(), 1);
    }

    #[tokio::test]
    async fn search_finds_english_words_chinese_substrings_and_seeds() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        let mut seeded = record("a lighthouse at dusk");
        seeded.seed = 424242;
        let mut big_seed = record("the largest seed");
        big_seed.seed = u64::MAX;
        for kept in [
            record("A red Fox in the snow"),
            record("一只在雪地里的红狐狸"),
            record("狐狸和兔子"),
            record("a cat on a mat, 100% cute_ish"),
            seeded,
            big_seed,
        ] {
            history.add(kept).await.unwrap();
        }
        assert_eq!(find(&history, "fox").await, vec!["A red Fox in the snow"]);
        assert_eq!(find(&history, "SNOW red").await, vec!["A red Fox in the snow"]);
        assert_eq!(
            find(&history, "狐狸").await,
            vec!["狐狸和兔子", "一只在雪地里的红狐狸"]
        );
        assert_eq!(find(&history, "红狐狸").await, vec!["一只在雪地里的红狐狸"]);
        assert_eq!(find(&history, "雪地 狐").await, vec!["一只在雪地里的红狐狸"]);
        assert_eq!(find(&history, "424242").await, vec!["a lighthouse at dusk"]);
        assert_eq!(
            find(&history, &u64::MAX.to_string()).await,
            vec!["the largest seed"]
        );
        assert_eq!(
            find(&history, "100%").await,
            vec!["a cat on a mat, 100% cute_ish"]
        );
        assert!(find(&history, "0%").await.len() == 1);
        assert!(find(&history, "e_i").await.len() == 1);
        assert!(
            find(&history, "%").await.len() == 1,
            "% matches itself, not everything"
        );
        assert!(find(&history, "unicorn").await.is_empty());
        assert!(find(&history, "fox unicorn").await.is_empty());
        // FTS5 syntax is text, not a query.
        for odd in ["\"", "fox\"", "NOT fox", "fox*", "a OR b", "(", "NEAR(", ":"] {
            let _ = find(&history, odd).await;
        }
        assert!(find(&history, "NOT").await.is_empty());
    }

    #[tokio::test]
    async fn stars_filter_and_page_with_a_search() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        let foxes: Vec<_> = (0..5).map(|n| record(&format!("fox {n}"))).collect();
        for fox in &foxes {
            history.add(fox.clone()).await.unwrap();
        }
        history.add(record("owl")).await.unwrap();
        for fox in [&foxes[0], &foxes[2], &foxes[4]] {
            assert!(history.set_starred(fox.id, true).await.unwrap());
        }
        assert!(history.set_starred(foxes[4].id, false).await.unwrap());
        assert!(!history.set_starred(JobId::new(), true).await.unwrap());
        let starred = Filter {
            text: None,
            starred_only: true,
        };
        let (page, next) = history.search(starred.clone(), 1, None).await.unwrap();
        assert_eq!(records(page.clone()), vec![foxes[2].clone()]);
        assert!(page[0].starred);
        let (page, next) = history.search(starred, 1, next).await.unwrap();
        assert_eq!(records(page), vec![foxes[0].clone()]);
        assert_eq!(next, None);
        let owls = Filter {
            text: SearchText::parse("owl").unwrap(),
            starred_only: true,
        };
        assert!(history.search(owls, 10, None).await.unwrap().0.is_empty());
    }

    /// A data folder as older versions left it: one JSON record per job, some from before `owner` and
    /// `backend` existed, one unreadable, one temporary of an interrupted write.
    fn legacy_folder(root: &Path) -> Vec<HistoryRecord> {
        let dir = root.join(LEGACY_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let mut kept = Vec::new();
        for n in 0..30u64 {
            let id = JobId::new();
            let json = if n % 3 == 0 {
                // The oldest format: no owner, no backend.
                format!(
                    r#"{{
  "id": "{id}",
  "prompt": "old record {n} 红狐狸",
  "seed": {n},
  "width": 1024,
  "height": 1024,
  "timings": {{ "queued_at": 1700000000000 }},
  "elapsed_ms": 0
}}"#
                )
            } else {
                serde_json::to_string_pretty(&serde_json::json!({
                    "id": id.to_string(),
                    "owner": ClientId::default().to_string(),
                    "prompt": format!("new record {n} fox"),
                    "seed": u64::MAX - n,
                    "width": 1024,
                    "height": 576,
                    "timings": {"queued_at": 1_800_000_000_000u64, "started_at": 1_800_000_000_100u64, "finished_at": 1_800_000_009_000u64},
                    "elapsed_ms": 9000,
                    "backend": "gpu-1",
                }))
                .unwrap()
            };
            std::fs::write(dir.join(format!("{id}.json")), &json).unwrap();
            kept.push(serde_json::from_str::<HistoryRecord>(&json).unwrap());
        }
        std::fs::write(dir.join("broken.json"), b"{ not json").unwrap();
        std::fs::write(dir.join(".0190.json.tmp"), b"{").unwrap();
        kept
    }

    #[tokio::test]
    async fn the_json_records_of_an_older_version_are_imported_once_nothing_lost() {
        let root = tempfile::tempdir().unwrap();
        let expected = legacy_folder(root.path());
        let history = History::open(root.path()).await.unwrap();
        let (page, _) = history.page(100, None).await.unwrap();
        let mut imported = records(page);
        imported.reverse();
        assert_eq!(imported, expected);
        assert_eq!(find(&history, "红狐狸").await.len(), 10);
        assert_eq!(find(&history, "fox").await.len(), 20);
        // The folder is kept aside as it was, and not imported again.
        assert!(!root.path().join(LEGACY_DIR).exists());
        assert_eq!(
            std::fs::read_dir(root.path().join(IMPORTED_DIR)).unwrap().count(),
            32
        );
        history.remove(expected[0].id).await.unwrap();
        drop(history);
        let reopened = History::open(root.path()).await.unwrap();
        assert_eq!(reopened.len(), 29);
    }

    #[tokio::test]
    async fn an_import_cut_short_runs_again_without_duplicates() {
        let root = tempfile::tempdir().unwrap();
        let expected = legacy_folder(root.path());
        // The import's transaction never committed: the database is there, the mark is not.
        {
            let mut connection = connect(&root.path().join(DATABASE_FILE)).unwrap();
            Migrations::from_slice(MIGRATIONS)
                .to_latest(&mut connection)
                .unwrap();
            let transaction = connection.transaction().unwrap();
            for record in &expected {
                insert(&transaction, record, true).unwrap();
            }
            drop(transaction);
            // And a run that got further: some rows in, the mark still missing (a crash before the
            // folder was renamed cannot leave this, but an older build of the import could).
            insert(&connection, &expected[3], false).unwrap();
        }
        let history = History::open(root.path()).await.unwrap();
        assert_eq!(history.len(), expected.len());
        assert_eq!(
            history.ids().unwrap(),
            expected.iter().map(|record| record.id).collect()
        );
        // A crash after the commit but before the rename: the folder is back where it was.
        drop(history);
        std::fs::rename(root.path().join(IMPORTED_DIR), root.path().join(LEGACY_DIR)).unwrap();
        let history = History::open(root.path()).await.unwrap();
        assert_eq!(history.len(), expected.len());
        assert!(root.path().join(IMPORTED_DIR).is_dir());
    }

    #[tokio::test]
    async fn a_history_of_the_first_schema_is_brought_up_to_date_searchable() {
        let root = tempfile::tempdir().unwrap();
        let kept = [
            record("一只红狐狸"),
            record("雪地里的狐狸"),
            record("a fox at dusk"),
        ];
        {
            let mut connection = connect(&root.path().join(DATABASE_FILE)).unwrap();
            Migrations::from_slice(&MIGRATIONS[..1])
                .to_latest(&mut connection)
                .unwrap();
            connection
                .execute("INSERT INTO meta (key, value) VALUES (?1, '0')", [JSON_IMPORTED])
                .unwrap();
            for record in &kept {
                // As the first schema's studio wrote it: without the columns added since.
                connection
                    .execute(
                        "INSERT INTO history (id, owner, prompt, seed, width, height, queued_at, \
                         started_at, finished_at, elapsed_ms, backend, starred) \
                         VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0)",
                        params![
                            record.id.to_string(),
                            record.prompt,
                            seed_to_sql(record.seed),
                            record.width,
                            record.height,
                            to_sql(record.timings.queued_at),
                            record.timings.started_at.map(to_sql),
                            record.timings.finished_at.map(to_sql),
                            to_sql(record.elapsed_ms),
                            record.backend,
                        ],
                    )
                    .unwrap();
            }
            connection
                .execute(
                    "UPDATE history SET starred = 1 WHERE id = ?1",
                    [kept[0].id.to_string()],
                )
                .unwrap();
        }
        let history = History::open(root.path()).await.unwrap();
        // Two characters at the very end of a prompt: found through the trailing space the
        // migration indexed.
        assert_eq!(find(&history, "狐狸").await, vec!["雪地里的狐狸", "一只红狐狸"]);
        assert_eq!(find(&history, "sk").await, vec!["a fox at dusk"]);
        assert_eq!(find(&history, "红狐狸").await, vec!["一只红狐狸"]);
        let starred = Filter {
            text: SearchText::parse("狐狸").unwrap(),
            starred_only: true,
        };
        let (page, _) = history.search(starred, 10, None).await.unwrap();
        assert_eq!(records(page), vec![kept[0].clone()]);
        // Later rows are indexed the same way, and a deleted one leaves the index.
        history.add(record("城市")).await.unwrap();
        assert_eq!(find(&history, "城市").await, vec!["城市"]);
        history.remove(kept[1].id).await.unwrap();
        assert_eq!(find(&history, "狐狸").await, vec!["一只红狐狸"]);
    }

    #[tokio::test]
    async fn a_clean_close_is_read_once_and_a_crash_never_reads_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).await.unwrap();
        assert!(!history.take_clean_close().await.unwrap(), "a new history");
        history.close_cleanly().await.unwrap();
        drop(history);
        let history = History::open(dir.path()).await.unwrap();
        assert!(history.take_clean_close().await.unwrap());
        // This run crashes: no mark is written, and the next start sees none.
        drop(history);
        let history = History::open(dir.path()).await.unwrap();
        assert!(!history.take_clean_close().await.unwrap());
    }

    #[test]
    fn an_item_links_to_the_image_by_id() {
        let record = record("fox");
        let item = Entry {
            record: record.clone(),
            starred: true,
        }
        .item();
        assert_eq!(item.image_url, format!("/api/images/{}", record.id));
        assert_eq!(item.thumbnail_url, format!("/api/images/{}/thumbnail", record.id));
        assert_eq!(item.created_at, 1);
        assert!(item.starred);
    }
}
