//! What the engine keeps of each backend ([`Slot`]) and of each job ([`Job`]: its journal entry, its
//! phase, its events, its place in line), and how a job looks to the API.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;
use zimage_contract::{self as api, BackendState, JobAccepted, JobView, Readiness, Timings};

use super::super::JobError;
use super::super::journal::Entry;
use super::super::state::Phase;
use super::{Command, TIMING_WINDOW};
use crate::job_id::JobId;
use crate::relay::EventLog;
use crate::validation::Lora;

/// What the engine keeps of one backend.
#[derive(Debug)]
pub struct Slot {
    pub name: String,
    /// The client id of its socket connection that is up, if one is.
    pub(super) link: Option<String>,
    /// Whether it has been connected in this run (after a restart, the journal's jobs wait for it a
    /// while).
    pub(super) ever_up: bool,
    pub(super) link_down_since: Instant,
    pub(super) readiness: Readiness,
    /// Since when it has held none of our jobs.
    pub(super) idle_since: Instant,
    /// No jobs before this (it did not answer a submission).
    pub(super) paused_until: Option<Instant>,
    pub(super) jobs_done: u64,
    /// Times from hand-over to saved image of its latest jobs.
    pub(super) timings: VecDeque<Duration>,
    /// The LoRA files it listed last; `None` before it ever answered in this run.
    pub(super) loras: Option<BTreeSet<String>>,
    /// The last moment it could take a job (see [`Slot::can_work`]).
    pub(super) last_able: Option<Instant>,
}

impl Slot {
    pub(super) fn new(name: String, now: Instant) -> Slot {
        Slot {
            name,
            link: None,
            ever_up: false,
            link_down_since: now,
            // Until its probe says otherwise (the actor forwards the current value at once).
            readiness: unprobed(),
            idle_since: now,
            paused_until: None,
            jobs_done: 0,
            timings: VecDeque::with_capacity(TIMING_WINDOW),
            loras: None,
            last_able: None,
        }
    }

    /// Whether it listed every one of `loras` last time it said.
    pub(super) fn has_all(&self, loras: &[Lora]) -> bool {
        loras.is_empty()
            || self
                .loras
                .as_ref()
                .is_some_and(|listed| loras.iter().all(|lora| listed.contains(lora.name.as_str())))
    }

    /// Whether it lists `name` now.
    pub(super) fn lists(&self, name: &str) -> bool {
        self.loras.as_ref().is_some_and(|listed| listed.contains(name))
    }

    /// Connected, ready (its probe passed) and not pausing after a failed submission: it could run a
    /// job now, or as soon as it finishes the one it holds.
    pub(super) fn can_work(&self, now: Instant) -> bool {
        self.link.is_some() && self.readiness.ready && self.paused_until.is_none_or(|until| now >= until)
    }
}

/// One job the gateway is following (or followed recently).
#[derive(Debug)]
pub(super) struct Job {
    /// Its journal entry as it should be on disk: spec, owner, backend, cancel, ending.
    pub(super) entry: Entry,
    pub(super) phase: Phase,
    /// Journaled and acknowledged: in the line, visible, cancellable.
    pub(super) accepted: bool,
    pub(super) accepted_at: Instant,
    pub(super) position: Option<u32>,
    pub(super) timings: Timings,
    pub(super) log: EventLog,
    /// The latest live preview, while the job runs.
    pub(super) preview: Option<(Bytes, &'static str)>,
    pub(super) previews_sent: u32,
    /// How often it went back to the line (lost by ComfyUI, or its backend).
    pub(super) resubmits: u32,
    /// How often it was handed to a backend.
    pub(super) dispatches: u32,
    /// The backend it was last handed to, while it is not back in the line.
    pub(super) last_backend: Option<usize>,
    /// Its fair-share tag: its place in the waiting line.
    pub(super) tag: u64,
    pub(super) last_heard: Instant,
    pub(super) check: Check,
    pub(super) ended: Option<Instant>,
    /// The submitter, until the journal has the job.
    pub(super) accept_reply: Option<oneshot::Sender<Result<JobAccepted, JobError>>>,
    /// People waiting for the journal to have their cancel.
    pub(super) cancel_replies: Vec<oneshot::Sender<Result<JobView, JobError>>>,
    /// The cancel is on disk.
    pub(super) cancel_journaled: bool,
    /// The save of an image that ComfyUI finished before the job's first journal write was done: it
    /// starts once that write is.
    pub(super) held_save: Option<Command>,
}

/// The bookkeeping of checks against a backend's records (I/O state, not the job's life).
#[derive(Debug, Clone, Copy)]
pub(super) struct Check {
    pub(super) in_flight: bool,
    pub(super) failures: u32,
    pub(super) not_before: Instant,
}

impl Job {
    pub(super) fn new(entry: Entry, phase: Phase, log: EventLog, now: Instant) -> Job {
        let queued_at = entry.id.created_at_ms();
        Job {
            entry,
            phase,
            accepted: false,
            accepted_at: now,
            position: None,
            timings: Timings {
                queued_at,
                started_at: None,
                finished_at: None,
            },
            log,
            preview: None,
            previews_sent: 0,
            resubmits: 0,
            dispatches: 0,
            last_backend: None,
            tag: 0,
            last_heard: now,
            check: Check {
                in_flight: false,
                failures: 0,
                not_before: now,
            },
            ended: None,
            accept_reply: None,
            cancel_replies: Vec::new(),
            cancel_journaled: false,
            held_save: None,
        }
    }

    pub(super) fn view(&self, id: JobId, slots: &[Slot]) -> JobView {
        let id_text = id.to_string();
        let completed = matches!(self.phase, Phase::Completed { .. });
        let spec = &self.entry.spec;
        JobView {
            image_url: completed.then(|| api::paths::image(&id_text)),
            thumbnail_url: completed.then(|| api::paths::thumbnail(&id_text)),
            preview_url: self
                .preview
                .is_some()
                .then(|| preview_url(&id_text, self.previews_sent)),
            id: id_text,
            prompt: spec.prompt.as_str().to_owned(),
            seed: spec.seed.get(),
            width: spec.width.get(),
            height: spec.height.get(),
            status: self.phase.status(),
            queue_position: self.position,
            step: self.phase.step(),
            total_steps: api::STEPS,
            timings: self.timings,
            error: match &self.phase {
                Phase::Failed { failure } => Some(failure.clone()),
                _ => None,
            },
            backend: self
                .last_backend
                .and_then(|index| slots.get(index))
                .map(|slot| slot.name.clone()),
        }
    }
}

/// A backend's readiness before its first probe has said anything: not ready, nothing known.
pub(in crate::jobs) fn unprobed() -> Readiness {
    Readiness {
        ready: false,
        state: BackendState::Unreachable,
        demo: false,
        message: String::new(),
        missing_nodes: Vec::new(),
        missing_models: Vec::new(),
        device: None,
        warnings: Vec::new(),
        checked_at: 0,
        backends: Vec::new(),
    }
}

pub(super) fn preview_url(id: &str, serial: u32) -> String {
    format!("{}?n={serial}", api::paths::job_preview(id))
}
