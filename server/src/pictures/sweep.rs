//! Pictures nobody uses do not pile up: at start-up and every [`SWEEP_EVERY`], the clean PNGs that no
//! unfinished or recently ended job (the journal) and no history record names, and that were neither
//! uploaded nor named by a job for [`GRACE`], are removed from `<data>/pictures`. The decision
//! ([`unused`]) is a plain function of the folder's listing, the references and the clock; the effect
//! ([`sweep`]) lists, gathers and removes.
//!
//! A job submitted while a sweep runs is never robbed of its picture. A picture's age is the time it
//! was last uploaded or named by a job's `source` ([`PictureStore::resolve`] refreshes it before the job
//! is written to the journal), so a picture a job is being submitted with is young. The sweep works in
//! an order that leaves no gap: (1) it lists the pictures old enough to go; (2) it reads the journal,
//! then the history (a finished job is written to the history before its journal entry goes, so
//! reading in this order sees it in one or the other); (3) it removes each old unreferenced picture
//! only after looking at its age again, holding the store's freshness lock, which every refresh also
//! takes. A job named after (1) refreshed its picture, so (3) sees it young; a job named before (1)
//! more than [`GRACE`] ago is in the journal or the history by (2).

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{PictureId, PictureStore};
use crate::history::History;
use crate::jobs::journal::Journal;

/// How long a picture nobody names is kept after its upload (or after a job last named it): time for
/// a person to upload a picture, paint a mask, think, and press Make.
pub const GRACE: Duration = Duration::from_secs(24 * 3600);

/// How often a running studio sweeps (and once at start-up).
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// A kept picture as the folder lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub id: PictureId,
    /// When it was last uploaded or named by a job (the file's modification time).
    pub fresh_at: SystemTime,
}

/// The pictures to remove: those no reference names, older than `grace` at `now`. A clock that went
/// backwards makes a picture young, never old.
pub fn unused(
    listed: &[Listed],
    referenced: &BTreeSet<PictureId>,
    now: SystemTime,
    grace: Duration,
) -> Vec<PictureId> {
    listed
        .iter()
        .filter(|picture| !referenced.contains(&picture.id))
        .filter(|picture| is_old(picture.fresh_at, now, grace))
        .map(|picture| picture.id)
        .collect()
}

/// Whether something fresh at `fresh_at` is older than `grace` at `now`.
pub(super) fn is_old(fresh_at: SystemTime, now: SystemTime, grace: Duration) -> bool {
    now.duration_since(fresh_at).is_ok_and(|age| age > grace)
}

/// Every picture and mask the journal's entries (in `journal_dir`) and the history's records name.
/// Read in this order: see the module's description.
pub async fn references(journal_dir: &Path, history: &History) -> io::Result<BTreeSet<PictureId>> {
    let mut referenced = BTreeSet::new();
    for entry in Journal::list(journal_dir).await? {
        if let Some(source) = entry.spec.source {
            referenced.insert(source.picture);
            referenced.extend(source.mask);
        }
    }
    let history = history.clone();
    let named = tokio::task::spawn_blocking(move || history.source_pictures())
        .await
        .map_err(io::Error::other)?
        .map_err(|error| error.into_io())?;
    referenced.extend(named.iter().filter_map(|id| PictureId::parse(id)));
    Ok(referenced)
}

/// One sweep of `store` at `now`: the pictures removed. Any error stops it before it removes anything
/// more (a journal or history it cannot read removes nothing at all).
pub async fn sweep(
    store: &PictureStore,
    journal_dir: &Path,
    history: &History,
    now: SystemTime,
) -> io::Result<Vec<PictureId>> {
    let listed = store.list().await?;
    let old: Vec<Listed> = listed
        .into_iter()
        .filter(|picture| is_old(picture.fresh_at, now, GRACE))
        .collect();
    if old.is_empty() {
        return Ok(Vec::new());
    }
    let referenced = references(journal_dir, history).await?;
    let mut removed = Vec::new();
    for id in unused(&old, &referenced, now, GRACE) {
        if store.remove_if_old(id, now, GRACE).await? {
            removed.push(id);
        }
    }
    Ok(removed)
}

/// Sweeps at once and then every [`SWEEP_EVERY`], for ever (the studio aborts it when it stops).
/// A failed sweep is logged and tried again at the next turn.
pub async fn every(store: PictureStore, journal_dir: std::path::PathBuf, history: History) {
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match sweep(&store, &journal_dir, &history, SystemTime::now()).await {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => tracing::info!(count = removed.len(), "removed pictures no job or image uses"),
            Err(error) => tracing::warn!(%error, "cannot sweep the pictures folder"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> PictureId {
        PictureId([byte; 32])
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn only_old_unreferenced_pictures_go() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let listed = [
            // Referenced by a job or an image, however old.
            Listed {
                id: id(1),
                fresh_at: now - 30 * 24 * HOUR,
            },
            // Old and unreferenced.
            Listed {
                id: id(2),
                fresh_at: now - 25 * HOUR,
            },
            // Unreferenced but young: uploaded an hour ago, its job not made yet.
            Listed {
                id: id(3),
                fresh_at: now - HOUR,
            },
            // From the future (the clock was set back): young.
            Listed {
                id: id(4),
                fresh_at: now + HOUR,
            },
            // Exactly the grace old: stays.
            Listed {
                id: id(5),
                fresh_at: now - GRACE,
            },
        ];
        let referenced = BTreeSet::from([id(1)]);
        assert_eq!(unused(&listed, &referenced, now, GRACE), vec![id(2)]);
        assert_eq!(unused(&listed, &BTreeSet::from([id(2)]), now, GRACE), vec![id(1)]);
        assert!(unused(&[], &referenced, now, GRACE).is_empty());
    }
}
