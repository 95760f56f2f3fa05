//! The engine's vocabulary: the messages of its one channel ([`Msg`]: routes' commands, backends'
//! events, effects' results, the clock) and the I/O it asks for ([`Command`]).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use zimage_contract::{BackendView, JobAccepted, JobFailure, JobView, Readiness};

use super::JobError;
use super::journal::{Entry, Keep};
use super::state::At;
use crate::access::identity::{ClientId, Requester};
use crate::comfy::{ComfyEvent, OutputImage, RemoteState};
use crate::history::HistoryRecord;
use crate::job_id::JobId;
use crate::relay::{Sequenced, Subscription};
use crate::validation::JobSpec;

/// Everything that can change the engine, on one channel.
#[derive(Debug)]
pub enum Msg {
    /// A checked job to accept (its id made by the caller); answered once it is journaled.
    Submit {
        id: JobId,
        spec: JobSpec,
        owner: Option<ClientId>,
        reply: oneshot::Sender<Result<JobAccepted, JobError>>,
    },
    /// A person's cancel; answered once it is journaled. `NotFound` for jobs not in memory.
    Cancel {
        id: JobId,
        requester: Requester,
        reply: oneshot::Sender<Result<JobView, JobError>>,
    },
    View {
        id: JobId,
        reply: oneshot::Sender<Option<JobView>>,
    },
    /// Starts watching a job's events (after `last_seen`).
    Watch {
        id: JobId,
        last_seen: Option<u64>,
        reply: oneshot::Sender<Option<Subscription>>,
    },
    /// The job's events after `after`, for a watcher that fell behind.
    Catchup {
        id: JobId,
        after: u64,
        reply: oneshot::Sender<Vec<Arc<Sequenced>>>,
    },
    Preview {
        id: JobId,
        reply: oneshot::Sender<Option<(Bytes, &'static str)>>,
    },
    /// Who started a job in memory (`None` when it is not in memory).
    Owner {
        id: JobId,
        reply: oneshot::Sender<Option<Option<ClientId>>>,
    },
    Backends {
        reply: oneshot::Sender<Vec<BackendView>>,
    },
    /// The gateway shuts down: nothing more is sent to any backend and new jobs are refused.
    Stop,
    /// A backend's socket said something.
    Comfy { backend: usize, event: ComfyEvent },
    /// A backend's readiness changed.
    Readiness { backend: usize, readiness: Readiness },
    /// The LoRA files a backend lists (sent before the readiness that came with them).
    Loras {
        backend: usize,
        loras: crate::readiness::LoraListing,
    },
    /// A journal write asked for by [`Command::Journal`] with a notice is done, or failed (with the
    /// kind of its error: a full disk is told apart).
    Journaled {
        id: JobId,
        notice: Notice,
        result: Result<(), std::io::ErrorKind>,
    },
    /// The answer to [`Command::Submit`].
    Submitted {
        id: JobId,
        at: At,
        link: String,
        outcome: SubmitOutcome,
    },
    /// The answer to [`Command::Check`]: the backend's records of the job, or why there are none.
    Checked {
        id: JobId,
        at: At,
        answer: Result<RemoteState, String>,
    },
    /// The answer to [`Command::Save`].
    SaveDone { id: JobId, at: At, outcome: SaveOutcome },
    /// Time to announce a job's `serial`-th live preview, if it is still the newest.
    AnnouncePreview { id: JobId, serial: u32 },
    /// The clock: deadlines, silent jobs, jobs long ended.
    Tick,
}

/// Why a journal write is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Accepted,
    Cancelled,
}

/// How a submission went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Accepted,
    Refused(JobFailure),
    /// Nothing answered: the backend cannot have it.
    Unreachable,
    /// The answer never came: the backend may or may not have it.
    Uncertain,
}

/// How a save went.
#[derive(Debug, Clone, PartialEq)]
pub enum SaveOutcome {
    Saved(HistoryRecord),
    /// The image could not be fetched from the backend (it may have died with it).
    FetchFailed(String),
    /// It could not be kept (the disk).
    Failed(JobFailure),
}

/// I/O the engine wants done. Each result comes back as a [`Msg`].
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Write (or, for `None`, remove) the job's journal entry, in order with the job's other writes;
    /// with a notice, answer [`Msg::Journaled`].
    Journal {
        id: JobId,
        entry: Option<Entry>,
        keep: Keep,
        notice: Option<Notice>,
    },
    /// Journal `entry` (it names the backend), then hand the job to `at.backend` under the connection
    /// `link`; answer [`Msg::Submitted`]. When `journaled`, `entry` as it is is on the disk already, or
    /// is the job's first entry, being written beside this hand-over (the job is acknowledged once that
    /// write is done), and the hand-over goes at once.
    Submit {
        at: At,
        link: String,
        entry: Entry,
        journaled: bool,
    },
    /// Ask `at.backend`'s records about the job; answer [`Msg::Checked`].
    Check { id: JobId, at: At },
    /// Tell a backend to let go of a job: drop it from its queue and/or interrupt it. No answer.
    Drop {
        id: JobId,
        backend: usize,
        pending: bool,
        interrupt: bool,
    },
    /// Fetch the finished image from `at.backend` and keep it with `draft` (its size and finishing
    /// time filled in); answer [`Msg::SaveDone`].
    Save {
        id: JobId,
        at: At,
        outputs: Vec<OutputImage>,
        draft: HistoryRecord,
    },
    /// After [`super::engine::PREVIEW_ANNOUNCE_DELAY`], send [`Msg::AnnouncePreview`].
    AnnouncePreviewLater { id: JobId, serial: u32 },
}
