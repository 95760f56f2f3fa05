//! The engine's core: one value owns every job, the waiting line and what is known of each backend,
//! and [`Engine::handle`] applies one [`Msg`] at a time: a route's command, a backend's event, an
//! effect's result or the clock's tick. It never does I/O and never reads a clock: what it wants done
//! comes out as [`Command`]s (run by `runner.rs`, whose results come back as messages), and the time
//! is an argument. So the same code runs in the gateway's actor task and, step by step under a seeded
//! schedule of faults, in the simulation test (`sim.rs`).
//!
//! Nothing is stored twice: which backend is busy is read off the jobs' phases ([`Phase::holder`]), a
//! waiting job's place is its index in the line.

mod answers;
mod dispatch;
mod job;
mod requests;
mod upkeep;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use zimage_contract::{self as api, BackendView, JobEvent, JobStatus, JobView};

pub use self::job::Slot;
#[cfg(test)]
pub(super) use self::job::unprobed;
pub use super::messages::{Command, Msg, Notice, SaveOutcome, SubmitOutcome};

use self::job::{Job, preview_url};

use super::JobTuning;
use super::journal::{Ending, Entry};
use super::schedule::{self, FairShare};
use super::state::{self, At, Effect, Input, Phase, Transition};
use crate::access::identity::ClientId;
use crate::history::HistoryRecord;
use crate::job_id::JobId;
use crate::pictures::Source;
use crate::relay::EventLog;

/// How long a client refused by the queue cap is asked to wait: about one image on the target card.
pub const QUEUE_FULL_RETRY: Duration = Duration::from_secs(20);

/// How long a live preview waits before it is announced: a fraction of a sampling step (about 400 ms
/// on the target card), longer than a progress event takes to reach a thousand watchers on one core.
/// ComfyUI sends each step's progress and preview back to back; announced at once, the preview's
/// fan-out interleaves with the progress's and, with hundreds of watchers, doubles how long the last
/// one waits for its progress. A preview is a picture each watcher then downloads, so it can wait.
pub const PREVIEW_ANNOUNCE_DELAY: Duration = Duration::from_millis(25);

/// The longest wait between two checks of a silent job whose checks keep failing.
const MAX_RECONCILE_BACKOFF: Duration = Duration::from_secs(10);

/// How long a backend that did not answer a submission gets no other job: long enough for its socket
/// to notice it is gone, short enough that a blip costs little.
const SUBMIT_FAILURE_PAUSE: Duration = Duration::from_secs(2);

/// How many recent jobs a backend's median time per image is taken over.
const TIMING_WINDOW: usize = 32;

/// After a restart, how many silences a backend that has not connected yet keeps the jobs the journal
/// says it holds before they are sent elsewhere.
const RESTART_GRACE_SILENCES: u32 = 3;

/// What an engine is made of.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The backends' names, in index order.
    pub backends: Vec<String>,
    /// The workflow's sampler node (its progress is the job's) and output node (its files the image).
    pub sampler_node: String,
    pub output_node: String,
    pub tuning: JobTuning,
    /// The id of the first event of every job's log in this run (above any earlier run's).
    pub first_event_id: u64,
}

/// The engine's state: see the module's comment.
#[derive(Debug)]
pub struct Engine {
    jobs: BTreeMap<JobId, Job>,
    /// The waiting line: accepted jobs in [`Phase::Waiting`] by fair-share tag, then age.
    line: BTreeSet<(u64, JobId)>,
    fair: FairShare<Option<ClientId>>,
    slots: Vec<Slot>,
    /// Jobs a backend is to be told to drop when it connects: moved away while it was out of reach, or
    /// cancelled across a restart.
    orphans: BTreeSet<(usize, JobId)>,
    tuning: JobTuning,
    sampler_node: String,
    output_node: String,
    /// The id of the first event of every job's log in this run: above any id of an earlier run.
    first_event_id: u64,
    stopping: bool,
    /// The last moment some backend could take a job: a waiting job's deadline runs from here (or
    /// from its acceptance, if later).
    last_able: Instant,
    /// Every LoRA some backend has listed in this run.
    ever_listed: BTreeSet<String>,
    /// Jobs whose journal entry changed in the message being handled.
    dirty: BTreeSet<JobId>,
    /// Completed jobs whose journal entries are removed at the next tick: nobody waits for that, and
    /// a removal written at once would share the announcement's moment (and, on one core, delay it).
    /// A crash before then loses nothing: start-up removes an entry whose image is in the history.
    completed_entries: Vec<JobId>,
    out: Vec<Command>,
}

impl Engine {
    /// An engine as `setup` says, taking back the journal's `entries` (those whose image is in the
    /// history already left out by the caller).
    pub fn new(setup: Setup, now: Instant, entries: Vec<Entry>) -> Engine {
        let mut engine = Engine {
            jobs: BTreeMap::new(),
            line: BTreeSet::new(),
            fair: FairShare::default(),
            slots: setup
                .backends
                .into_iter()
                .map(|name| Slot::new(name, now))
                .collect(),
            orphans: BTreeSet::new(),
            tuning: setup.tuning,
            sampler_node: setup.sampler_node,
            output_node: setup.output_node,
            first_event_id: setup.first_event_id,
            stopping: false,
            last_able: now,
            ever_listed: BTreeSet::new(),
            dirty: BTreeSet::new(),
            completed_entries: Vec::new(),
            out: Vec::new(),
        };
        for entry in entries {
            engine.restore(entry, now);
        }
        engine.reposition();
        engine.flush_journal();
        engine
    }

    /// Takes one journal entry back: an ending stays on disk only (read there by the caller), a
    /// cancel is final at once (every backend is told to drop the job), a job the journal places at
    /// a backend is held there until that backend's records say otherwise, any other is sent (again).
    fn restore(&mut self, entry: Entry, now: Instant) {
        if entry.ended.is_some() {
            return;
        }
        let id = entry.id;
        let placed = entry
            .at
            .as_ref()
            .and_then(|name| self.slots.iter().position(|slot| slot.name == *name));
        let mut job = Job::new(
            entry,
            Phase::Waiting,
            EventLog::starting_at(self.first_event_id),
            now,
        );
        job.accepted = true;
        if job.entry.cancelled {
            job.cancel_journaled = true;
            for backend in 0..self.slots.len() {
                self.orphans.insert((backend, id));
            }
            self.jobs.insert(id, job);
            let transition = state::advance(&Phase::Waiting, Input::Cancel, 0);
            if let Ok(transition) = transition {
                self.enter(id, transition, now);
            }
            return;
        }
        match placed {
            Some(backend) => {
                job.last_backend = Some(backend);
                // Attempt 0: a hand-over of an earlier run. Two such jobs may claim one backend (one
                // was being saved when the other was handed over) until its records are read.
                job.phase = Phase::Queued(At {
                    backend,
                    attempt: 0,
                    since: now,
                });
                // Abandoned copies elsewhere are told to let go.
                for other in (0..self.slots.len()).filter(|other| *other != backend) {
                    self.orphans.insert((other, id));
                }
            }
            None => {
                job.tag = self.fair.tag(job.entry.owner);
                self.line.insert((job.tag, id));
            }
        }
        self.jobs.insert(id, job);
    }

    /// Applies one message at time `now`. The commands it gives rise to are then in
    /// [`Engine::take_commands`].
    pub fn handle(&mut self, now: Instant, msg: Msg) {
        match msg {
            Msg::Submit {
                id,
                spec,
                owner,
                reply,
            } => self.submit(now, id, spec, owner, reply),
            Msg::Cancel { id, requester, reply } => self.cancel(now, id, requester, reply),
            Msg::View { id, reply } => {
                let _ = reply.send(self.view(id));
            }
            Msg::Watch { id, last_seen, reply } => {
                let subscription = self
                    .jobs
                    .get(&id)
                    .filter(|job| job.accepted)
                    .map(|job| job.log.subscribe(last_seen));
                let _ = reply.send(subscription);
            }
            Msg::Catchup { id, after, reply } => {
                let _ = reply.send(
                    self.jobs
                        .get(&id)
                        .map(|job| job.log.after(after))
                        .unwrap_or_default(),
                );
            }
            Msg::Preview { id, reply } => {
                let _ = reply.send(self.jobs.get(&id).and_then(|job| job.preview.clone()));
            }
            Msg::Owner { id, reply } => {
                let owner = self
                    .jobs
                    .get(&id)
                    .filter(|job| job.accepted)
                    .map(|job| job.entry.owner);
                let _ = reply.send(owner);
            }
            Msg::Backends { reply } => {
                let _ = reply.send(self.backends());
            }
            Msg::Stop => {
                self.stopping = true;
                self.remove_completed_entries();
            }
            Msg::Comfy { backend, event } => self.on_comfy_event(now, backend, event),
            Msg::Readiness { backend, readiness } => {
                if let Some(slot) = self.slots.get_mut(backend) {
                    slot.readiness = readiness;
                }
            }
            Msg::Loras { backend, loras } => self.on_loras(now, backend, loras),
            Msg::Journaled { id, notice, result } => self.journaled(now, id, notice, result),
            Msg::Submitted {
                id,
                at,
                link,
                outcome,
            } => self.submitted(now, id, at, &link, outcome),
            Msg::Checked { id, at, answer } => self.checked(now, id, at, answer),
            Msg::SaveDone { id, at, outcome } => self.save_done(now, id, at, outcome),
            Msg::AnnouncePreview { id, serial } => {
                if let Some(job) = self.jobs.get_mut(&id)
                    && matches!(job.phase, Phase::Running { .. })
                    && job.previews_sent == serial
                {
                    job.log.push(JobEvent::Preview {
                        url: preview_url(&id.to_string(), serial),
                    });
                }
            }
            Msg::Tick => self.watch(now),
        }
        self.pump(now);
        self.flush_journal();
    }

    /// The commands the last messages gave rise to, in order.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.out)
    }

    /// How many finished images are being fetched or written now.
    pub fn saves_under_way(&self) -> usize {
        self.jobs
            .values()
            .filter(|job| matches!(job.phase, Phase::Saving(_)))
            .count()
    }

    /// The job the API would show, if it is in memory.
    pub fn view(&self, id: JobId) -> Option<JobView> {
        let job = self.jobs.get(&id).filter(|job| job.accepted)?;
        Some(job.view(id, &self.slots))
    }

    /// Every backend as people see it.
    pub fn backends(&self) -> Vec<BackendView> {
        let busy = self.busy();
        self.slots
            .iter()
            .zip(busy)
            .map(|(slot, busy)| {
                let mut view = crate::readiness::backend_view(
                    &slot.name,
                    &slot.readiness,
                    busy.is_some(),
                    slot.jobs_done,
                    schedule::median(slot.timings.iter().copied()),
                );
                view.loras = slot.loras.iter().flatten().cloned().collect();
                view
            })
            .collect()
    }

    /// A backend's LoRA list, as it listed it now: kept, and every waiting job that no backend can
    /// run any more fails, naming the LoRA.
    fn on_loras(&mut self, now: Instant, backend: usize, loras: crate::readiness::LoraListing) {
        let Some(slot) = self.slots.get_mut(backend) else {
            return;
        };
        let listed: Option<BTreeSet<String>> = loras.map(|names| names.into_iter().collect());
        if slot.loras == listed {
            return;
        }
        slot.loras = listed;
        self.ever_listed.extend(slot.loras.iter().flatten().cloned());
        let mut unrunnable = Vec::new();
        for (_, id) in &self.line {
            let Some(job) = self.jobs.get(id) else { continue };
            if let Some(lora) = job
                .entry
                .spec
                .loras
                .iter()
                .find(|lora| self.lora_gone(lora.name.as_str()))
            {
                unrunnable.push((*id, lora.name.to_string()));
            }
        }
        for (id, name) in unrunnable {
            tracing::warn!(%id, lora = %name, "no backend lists the job's LoRA any more");
            let failure = api::JobFailure {
                code: "lora_missing".to_owned(),
                message: (crate::i18n::Text::EN.lora_gone)(&name),
            };
            self.apply(now, id, Input::Unrunnable { failure });
        }
    }

    /// No backend lists `name` now, and one did earlier in this run or every backend has said what it
    /// has: a waiting job that needs it can never run.
    fn lora_gone(&self, name: &str) -> bool {
        !self.slots.iter().any(|slot| slot.lists(name))
            && (self.ever_listed.contains(name) || self.slots.iter().all(|slot| slot.loras.is_some()))
    }

    /// The first of `loras` a new job may not ask for: no backend lists it now, and none listed it
    /// earlier in this run (or every backend has said what it has). One that a backend listed and is
    /// only away or busy is fine: the job waits for it.
    fn unknown_lora<'a>(&self, loras: &'a [crate::validation::Lora]) -> Option<(usize, &'a str)> {
        loras.iter().enumerate().find_map(|(index, lora)| {
            let name = lora.name.as_str();
            let refused = !self.slots.iter().any(|slot| slot.lists(name))
                && (!self.ever_listed.contains(name) || self.slots.iter().all(|slot| slot.loras.is_some()));
            refused.then_some((index, name))
        })
    }

    /// The last moment a backend that has every LoRA of `job` could take a job.
    fn last_able_for(&self, job: &Job) -> Instant {
        if job.entry.spec.loras.is_empty() {
            return self.last_able;
        }
        self.slots
            .iter()
            .filter(|slot| slot.has_all(&job.entry.spec.loras))
            .filter_map(|slot| slot.last_able)
            .max()
            .unwrap_or(job.accepted_at)
    }

    /// The job each backend holds, read off the phases.
    fn busy(&self) -> Vec<Option<JobId>> {
        let mut busy = vec![None; self.slots.len()];
        for (id, job) in &self.jobs {
            if let Some(at) = job.phase.holder()
                && let Some(slot) = busy.get_mut(at.backend)
            {
                *slot = Some(*id);
            }
        }
        busy
    }

    fn unfinished(&self, owner: Option<Option<ClientId>>) -> usize {
        self.jobs
            .values()
            .filter(|job| !job.phase.is_final() && owner.is_none_or(|owner| job.entry.owner == owner))
            .count()
    }

    /// True when the job is where `at` says (the same hand-over).
    fn is_at(&self, id: JobId, at: At) -> bool {
        self.jobs.get(&id).is_some_and(|job| job.phase.at() == Some(at))
    }

    /// Feeds one input to a job's state machine and records what follows.
    fn apply(&mut self, now: Instant, id: JobId, input: Input) {
        let Some(job) = self.jobs.get(&id) else { return };
        match state::advance(&job.phase, input, job.resubmits) {
            Ok(transition) => self.enter(id, transition, now),
            Err(illegal) => tracing::debug!(%id, %illegal, "input ignored"),
        }
    }

    /// Records a legal transition: the phase, the events, the line, the timings, the journal, and the
    /// effects as commands.
    fn enter(&mut self, id: JobId, transition: Transition, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let held_before = job.phase.holder();
        let at_before = job.phase.at();
        let was_running = job.phase.status() == JobStatus::Running;
        job.phase = transition.next;
        job.last_heard = now;
        if !was_running && job.phase.status() == JobStatus::Running && job.timings.started_at.is_none() {
            job.timings.started_at = Some(now_ms());
        }
        if !matches!(job.phase, Phase::Running { .. } | Phase::Cancelling(_)) {
            // A preview belongs to a running job; once it ends or moves on, it is gone.
            job.preview = None;
        }
        for event in transition.events {
            job.log.push(event);
        }
        // The backend is free once the job no longer holds it (saving, ended, or moved away).
        if let Some(before) = held_before
            && job.phase.holder().is_none()
            && let Some(slot) = self.slots.get_mut(before.backend)
        {
            slot.idle_since = now;
        }
        if let (Phase::Completed { .. }, Some(at)) = (&job.phase, at_before)
            && let Some(slot) = self.slots.get_mut(at.backend)
        {
            slot.jobs_done += 1;
            if slot.timings.len() == TIMING_WINDOW {
                slot.timings.pop_front();
            }
            slot.timings.push_back(now.duration_since(at.since));
        }
        if transition.requeue {
            job.resubmits += 1;
            // Events its old backend may still send are not its any more, nor is it there for the journal.
            job.last_backend = None;
            job.entry.at = None;
            self.dirty.insert(id);
            // One not yet acknowledged joins the line once its first write is done.
            if job.accepted {
                self.line.insert((job.tag, id));
            }
        }
        if job.phase.is_final() {
            job.ended = Some(now);
            let finished_at = match &job.phase {
                Phase::Completed { record } => record.timings.finished_at.unwrap_or_else(now_ms),
                _ => now_ms(),
            };
            job.timings.finished_at = Some(finished_at);
            job.entry.ended = match &job.phase {
                Phase::Failed { failure } => Some(Ending {
                    status: JobStatus::Failed,
                    failure: Some(failure.clone()),
                    at_ms: finished_at,
                }),
                Phase::Cancelled => Some(Ending {
                    status: JobStatus::Cancelled,
                    failure: None,
                    at_ms: finished_at,
                }),
                _ => None,
            };
            self.dirty.insert(id);
            // Nobody waits on an ending for a cancel that is not on disk yet but the canceller.
        }
        // Places in line change only when the line does: not on every progress step.
        let line_changed = if job.phase == Phase::Waiting {
            transition.requeue
        } else {
            self.line.remove(&(job.tag, id))
        };
        if line_changed {
            self.reposition();
        }
        for effect in transition.effects {
            self.start(id, effect);
        }
    }

    /// Turns one effect of a transition into a command.
    fn start(&mut self, id: JobId, effect: Effect) {
        match effect {
            Effect::Submit(at) => {
                let Some(link) = self.slots.get(at.backend).and_then(|slot| slot.link.clone()) else {
                    return;
                };
                let Some(job) = self.jobs.get_mut(&id) else { return };
                job.entry.at = Some(self.slots[at.backend].name.clone());
                // This write carries any change not written yet.
                self.dirty.remove(&id);
                // A job not yet acknowledged reaches the line only once its first write is done, so
                // its hand-over now is the one at its submission, whose first entry names this
                // backend: it needs no write of its own.
                let journaled = !job.accepted;
                self.out.push(Command::Submit {
                    at,
                    link,
                    entry: job.entry.clone(),
                    journaled,
                });
            }
            Effect::Reconcile(_) => self.reconcile(id),
            Effect::DeletePending { backend } => self.out.push(Command::Drop {
                id,
                backend,
                pending: true,
                interrupt: false,
            }),
            Effect::Interrupt { backend } => self.out.push(Command::Drop {
                id,
                backend,
                pending: false,
                interrupt: true,
            }),
            Effect::Save { at, outputs } => {
                let Some(job) = self.jobs.get_mut(&id) else { return };
                let draft = HistoryRecord {
                    id,
                    owner: job.entry.owner,
                    prompt: job.entry.spec.prompt.as_str().to_owned(),
                    seed: job.entry.spec.seed.get(),
                    width: job.entry.spec.width.get(),
                    height: job.entry.spec.height.get(),
                    timings: job.timings,
                    elapsed_ms: 0,
                    backend: self.slots.get(at.backend).map(|slot| slot.name.clone()),
                    source: job.entry.spec.source.as_ref().map(Source::info),
                    loras: job
                        .entry
                        .spec
                        .loras
                        .iter()
                        .map(crate::validation::Lora::choice)
                        .collect(),
                };
                let save = Command::Save {
                    id,
                    at,
                    outputs,
                    draft,
                };
                if job.accepted {
                    self.out.push(save);
                } else {
                    // Finished before its first journal write was done: kept only once it is, so a
                    // job that write fails for (refused, nobody told of it) never enters the history.
                    job.held_save = Some(save);
                }
            }
        }
    }

    /// Brings every waiting job's place in line up to date, telling its watchers when it changed.
    fn reposition(&mut self) {
        for (index, (_, id)) in self.line.iter().enumerate() {
            let Some(job) = self.jobs.get_mut(id) else {
                continue;
            };
            let position = u32::try_from(index).unwrap_or(u32::MAX).saturating_add(1);
            if job.position != Some(position) {
                job.position = Some(position);
                job.log.push(JobEvent::Queued { position });
            }
        }
        for (id, job) in &mut self.jobs {
            if job.position.is_some() && !self.line.contains(&(job.tag, *id)) {
                job.position = None;
            }
        }
    }
}

/// The most unfinished jobs one client may hold under a cap of `cap` (0: no cap): half of the
/// places, so one person's batch cannot shut everyone else out, and at least the four one OpenAI
/// request may ask for.
pub fn per_client_share(cap: usize) -> usize {
    if cap == 0 {
        0
    } else {
        (cap / 2).max(api::openai::MAX_IMAGES as usize).min(cap)
    }
}

/// Milliseconds since the Unix epoch (for people's timestamps; never for the engine's decisions).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// What the simulation test reads of the engine to check its promises.
#[cfg(test)]
impl Engine {
    /// Every job in memory: its phase, its place in line, whether it was acknowledged.
    pub(super) fn inspect(&self) -> impl Iterator<Item = (JobId, &Phase, Option<u32>, bool)> + '_ {
        self.jobs
            .iter()
            .map(|(id, job)| (*id, &job.phase, job.position, job.accepted))
    }

    /// Whether the job is in memory.
    pub(super) fn has(&self, id: JobId) -> bool {
        self.jobs.contains_key(&id)
    }

    /// The waiting line, in order.
    pub(super) fn line(&self) -> Vec<JobId> {
        self.line.iter().map(|(_, id)| *id).collect()
    }
}
