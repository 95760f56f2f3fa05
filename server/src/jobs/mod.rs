//! The job engine: every generation request from acceptance to its end. It owns the waiting line (the
//! gateway's, not ComfyUI's: each ComfyUI backend only ever holds the one job it is running), hands
//! the next job (fair share between clients, [`schedule`]) to an idle, ready backend, follows it through
//! that backend's socket events, checks it against the backend's records whenever events may have been
//! lost, moves it to another backend when its own dies, stores the finished image and its record, and
//! only then announces it.
//!
//! A job's life is the state machine of [`state`]; this module runs its effects (I/O, in tasks the
//! engine owns) and feeds their results back. A request handler only asks and awaits an answer, so a
//! client hanging up changes nothing. Accepted jobs are journaled ([`journal`]) until they end, so a
//! crash or a restart of the gateway loses none: they are checked against ComfyUI and carried on.

pub mod journal;
pub mod schedule;
pub mod state;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use tokio::sync::{mpsc, watch};
use zimage_contract::{
    self as api, BackendView, JobAccepted, JobEvent, JobFailure, JobStatus, JobView, Readiness, Timings,
};

use self::journal::{Entry, Journal};
use self::schedule::{Candidate, FairShare};
use self::state::{CancelRefused, Effect, Input, Phase, Transition};
use crate::access::identity::{ClientId, Requester};
use crate::comfy::{self, ComfyEvent, OutputImage, RemoteState, client::ComfyClient, workflow::Workflow};
use crate::history::{History, HistoryRecord};
use crate::images::{ImageError, ImageStore, Variant, png_size};
use crate::job_id::JobId;
use crate::png_story::{self, ImageStory};
use crate::relay::{EventLog, Sequenced};
use crate::storage;
use crate::validation::GenerationParams;

/// How long a client refused by the queue cap is asked to wait: about one image on the target card.
const QUEUE_FULL_RETRY: Duration = Duration::from_secs(20);

/// How long a live preview waits before it is announced (see [`Jobs::announce_preview_later`]): a
/// fraction of a sampling step (about 400 ms on the target card), longer than a progress event takes to
/// reach a thousand watchers on one core.
const PREVIEW_ANNOUNCE_DELAY: Duration = Duration::from_millis(25);

/// The largest image the gateway accepts from ComfyUI's `/view`: a 1024x1024 PNG is a few MiB.
const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;

/// The longest wait between two checks of a silent job whose checks keep failing.
const MAX_RECONCILE_BACKOFF: Duration = Duration::from_secs(10);

/// How long a backend that did not answer a submission gets no other job: long enough for its socket
/// to notice it is gone, short enough that a blip costs little.
const SUBMIT_FAILURE_PAUSE: Duration = Duration::from_secs(2);

/// How many recent jobs a backend's median time per image is taken over.
const TIMING_WINDOW: usize = 32;

/// Timing knobs and limits of the job machinery; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct JobTuning {
    /// Unfinished jobs held at most (waiting, at ComfyUI, or being saved); further submissions get
    /// [`JobError::QueueFull`]. 0 for no cap.
    pub max_unfinished: usize,
    /// How often unfinished jobs are looked at.
    pub watchdog_interval: Duration,
    /// A job at ComfyUI that heard nothing for this long is checked against ComfyUI's records.
    pub silence: Duration,
    /// How long a finished job stays in memory (its image and record stay in the history).
    pub retention: Duration,
    /// How many times a finished image is fetched before the job fails.
    pub fetch_attempts: u32,
    /// The longest a job may hold ComfyUI (from its hand-over to the verdict), and the longest jobs
    /// wait in line while ComfyUI cannot be reached. Generous: the first job after a start loads the
    /// models from disk.
    pub deadline: Duration,
}

impl Default for JobTuning {
    fn default() -> JobTuning {
        JobTuning {
            max_unfinished: 0,
            watchdog_interval: Duration::from_secs(1),
            silence: Duration::from_secs(10),
            retention: Duration::from_secs(3600),
            fetch_attempts: 3,
            deadline: Duration::from_secs(600),
        }
    }
}

/// A job operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no such job")]
    NotFound,
    #[error("the job has already ended")]
    AlreadyEnded,
    #[error("the job's image is already being saved")]
    AlreadySaving,
    #[error("{unfinished} jobs are unfinished already")]
    QueueFull {
        unfinished: usize,
        retry_after: Duration,
    },
    #[error("the job belongs to another client")]
    NotYours,
    #[error("the studio is shutting down")]
    ShuttingDown,
    /// The job could not be written down, so it was not accepted.
    #[error("cannot record the job: {0}")]
    Journal(#[source] std::io::Error),
}

/// One item of a job's event stream.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// One of the job's events, with its id.
    Event(Arc<Sequenced>),
    /// The gateway is shutting down; the job goes on after the restart. Always the stream's last item.
    Restarting,
}

/// One ComfyUI backend the engine hands jobs to.
pub struct Backend {
    /// The name people see (in `/api/backends`, on each image); never its address.
    pub name: String,
    pub comfy: ComfyClient,
    /// Whether it can run the workflow now (connected, every node and model file there), as
    /// [`crate::readiness`] keeps it.
    pub readiness: watch::Receiver<Readiness>,
}

/// Everything the jobs need. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    backends: Vec<Backend>,
    workflow: Arc<Workflow>,
    images: ImageStore,
    history: History,
    journal: Journal,
    previews: bool,
    tuning: JobTuning,
    /// The id of the first event of every job's log in this run: above any id of an earlier run, so a
    /// browser resuming with an id from before a restart gets everything the new log holds.
    first_event_id: u64,
    /// Set once the gateway begins to shut down: no new jobs, nothing more sent to ComfyUI, and every
    /// event stream ends with [`StreamItem::Restarting`].
    stopping: watch::Sender<bool>,
    /// How many jobs are being saved; the shutdown waits for none.
    saving: watch::Sender<usize>,
}

/// The engine's state, behind one lock taken briefly and never across an await.
struct Registry {
    jobs: HashMap<JobId, Job>,
    /// The waiting line: jobs in [`Phase::Waiting`] by fair-share tag, then age ([`schedule`]); a job
    /// sent back to the line keeps its tag and so its turn.
    line: BTreeSet<(u64, JobId)>,
    fair: FairShare<Option<ClientId>>,
    /// One per backend, in the order of [`Inner::backends`].
    slots: Vec<Slot>,
    /// Jobs taken back from the journal whose backend is not known yet: until one of the backends
    /// claims them (or none does), nothing new is dispatched, so none is sent twice.
    unplaced: HashSet<JobId>,
    /// Jobs moved away from a backend that was out of reach: if it comes back still holding one, it
    /// is told to drop it, so its GPU is free for the jobs the gateway sends it next.
    orphans: Vec<(usize, JobId)>,
}

/// What the engine keeps of one backend.
struct Slot {
    /// The client id of its socket connection that is up, if one is.
    link: Option<String>,
    /// Since when no connection has been up.
    link_down_since: Instant,
    /// The job of ours it holds (or is being handed).
    held: Option<JobId>,
    /// Since when it has held none.
    idle_since: Instant,
    /// No jobs before this (it did not answer a submission).
    paused_until: Option<Instant>,
    jobs_done: u64,
    /// Times from hand-over to saved image of its latest jobs.
    timings: VecDeque<Duration>,
}

impl Slot {
    /// Connected, ready (its probe passed) and not pausing after a failed submission: it could run a
    /// job now, or as soon as it finishes the one it holds.
    fn can_work(&self, backend: &Backend, now: Instant) -> bool {
        self.link.is_some()
            && self.paused_until.is_none_or(|until| now >= until)
            && backend.readiness.borrow().ready
    }

    fn new(now: Instant) -> Slot {
        Slot {
            link: None,
            link_down_since: now,
            held: None,
            idle_since: now,
            paused_until: None,
            jobs_done: 0,
            timings: VecDeque::with_capacity(TIMING_WINDOW),
        }
    }
}

/// One job the gateway is following (or followed recently).
struct Job {
    /// The browser that started it: only it (or someone signed in) may cancel it or delete its image.
    owner: Option<ClientId>,
    prompt: String,
    seed: u64,
    width: u32,
    height: u32,
    phase: Phase,
    position: Option<u32>,
    timings: Timings,
    log: EventLog,
    /// The latest live preview, while the job runs.
    preview: Option<(Bytes, &'static str)>,
    previews_sent: u32,
    /// How often ComfyUI lost it and it was sent again.
    resubmits: u32,
    /// Its fair-share tag: its place in the waiting line.
    tag: u64,
    /// The backend it is at (or was last at, once it ended), as an index into [`Inner::backends`].
    backend: Option<usize>,
    /// The socket connection it was handed over under; its events go to that connection only.
    client_id: Option<String>,
    /// When it was handed to ComfyUI: its deadline runs from here.
    dispatched_at: Option<Instant>,
    last_heard: Instant,
    check: Check,
    ended: Option<Instant>,
}

/// The bookkeeping of checks against ComfyUI's records (I/O state, not the job's life).
#[derive(Debug, Clone, Copy)]
struct Check {
    in_flight: bool,
    failures: u32,
    not_before: Instant,
}

impl Job {
    fn new(entry: &Entry, phase: Phase, log: EventLog) -> Job {
        let now = Instant::now();
        Job {
            owner: entry.owner,
            prompt: entry.prompt.clone(),
            seed: entry.seed,
            width: entry.width,
            height: entry.height,
            phase,
            position: None,
            timings: Timings {
                queued_at: entry.id.created_at_ms(),
                started_at: None,
                finished_at: None,
            },
            log,
            preview: None,
            previews_sent: 0,
            resubmits: 0,
            tag: 0,
            backend: None,
            client_id: None,
            dispatched_at: None,
            last_heard: now,
            check: Check {
                in_flight: false,
                failures: 0,
                not_before: now,
            },
            ended: None,
        }
    }

    fn view(&self, id: JobId, backends: &[Backend]) -> JobView {
        let id_text = id.to_string();
        let completed = matches!(self.phase, Phase::Completed { .. });
        JobView {
            image_url: completed.then(|| api::paths::image(&id_text)),
            thumbnail_url: completed.then(|| api::paths::thumbnail(&id_text)),
            preview_url: self
                .preview
                .is_some()
                .then(|| preview_url(&id_text, self.previews_sent)),
            id: id_text,
            prompt: self.prompt.clone(),
            seed: self.seed,
            width: self.width,
            height: self.height,
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
                .backend
                .and_then(|index| backends.get(index))
                .map(|backend| backend.name.clone()),
        }
    }
}

/// What a transition asks of the engine once the lock is released.
#[derive(Default)]
struct Followup {
    effects: Vec<Effect>,
    /// The job ended: its journal entry goes.
    ended: bool,
}

impl Registry {
    /// Applies a legal transition to a job: its phase, its events, the line, the timings.
    fn enter(&mut self, id: JobId, transition: Transition, saving: &watch::Sender<usize>) -> Followup {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Followup::default();
        };
        let was_saving = matches!(job.phase, Phase::Saving);
        let was_running = job.phase.status() == JobStatus::Running;
        job.phase = transition.next;
        job.last_heard = Instant::now();
        if !was_running && job.phase.status() == JobStatus::Running && job.timings.started_at.is_none() {
            job.timings.started_at = Some(now_ms());
        }
        if !matches!(job.phase, Phase::Running { .. } | Phase::Cancelling) {
            // A preview belongs to a running job; once it ends or moves on, it is gone.
            job.preview = None;
        }
        for event in transition.events {
            job.log.push(event);
        }
        let is_saving = matches!(job.phase, Phase::Saving);
        if was_saving != is_saving {
            saving.send_modify(|count| {
                *count = if is_saving {
                    count.saturating_add(1)
                } else {
                    count.saturating_sub(1)
                }
            });
        }
        let now = Instant::now();
        // The backend is free once the job no longer holds it (finished there, or moved away).
        if let Some(index) = job.backend
            && (transition.requeue || !job.phase.holds_comfy())
            && let Some(slot) = self.slots.get_mut(index)
            && slot.held == Some(id)
        {
            slot.held = None;
            slot.idle_since = now;
        }
        if let (Phase::Completed { .. }, Some(index), Some(dispatched)) =
            (&job.phase, job.backend, job.dispatched_at)
            && let Some(slot) = self.slots.get_mut(index)
        {
            slot.jobs_done += 1;
            if slot.timings.len() == TIMING_WINDOW {
                slot.timings.pop_front();
            }
            slot.timings.push_back(now.duration_since(dispatched));
        }
        if transition.requeue {
            job.resubmits += 1;
            job.client_id = None;
            job.dispatched_at = None;
            // Events its old backend may still send are not its any more.
            job.backend = None;
            self.line.insert((job.tag, id));
        }
        if transition.requeue || job.phase.is_final() {
            self.unplaced.remove(&id);
        }
        let ended = job.phase.is_final();
        if ended {
            job.ended = Some(now);
            job.timings.finished_at = Some(match &job.phase {
                Phase::Completed { record } => record.timings.finished_at.unwrap_or_else(now_ms),
                _ => now_ms(),
            });
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
        Followup {
            effects: transition.effects,
            ended,
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

    /// What the scheduler needs to know of each backend now.
    fn candidates(&self, backends: &[Backend], now: Instant) -> Vec<Candidate> {
        self.slots
            .iter()
            .zip(backends)
            .map(|(slot, backend)| Candidate {
                available: slot.held.is_none() && slot.can_work(backend, now),
                median: schedule::median(slot.timings.iter().copied()),
                idle_since: slot.idle_since,
            })
            .collect()
    }

    fn unfinished(&self) -> usize {
        self.jobs.values().filter(|job| !job.phase.is_final()).count()
    }
}

fn preview_url(id: &str, serial: u32) -> String {
    format!("{}?n={serial}", api::paths::job_preview(id))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl Jobs {
    /// Builds the engine over `backends` (at least one) and takes back the unfinished jobs of the
    /// journal at `journal_dir`. Call [`Jobs::run`] to start following the backends.
    pub async fn open(
        backends: Vec<Backend>,
        workflow: Arc<Workflow>,
        images: ImageStore,
        history: History,
        journal_dir: &std::path::Path,
        previews: bool,
        tuning: JobTuning,
    ) -> std::io::Result<Jobs> {
        let (journal, unfinished) = Journal::open(journal_dir).await?;
        // Milliseconds since the epoch, times a thousand events per job: above every earlier run's ids
        // and still exact in a JavaScript number.
        let first_event_id = now_ms().saturating_mul(1000).saturating_add(1);
        let mut jobs = HashMap::new();
        let mut unplaced = HashSet::new();
        for entry in &unfinished {
            if history.get(entry.id).is_some() {
                // Saved just before the crash that kept its journal entry.
                let _ = journal.remove(entry.id).await;
                continue;
            }
            // A backend may hold it, may have finished it, or none may ever have seen it: until their
            // records say, it counts as held (so nothing new is sent) and is looked for as they come up.
            let mut job = Job::new(entry, Phase::Queued, EventLog::starting_at(first_event_id));
            job.dispatched_at = Some(Instant::now());
            jobs.insert(entry.id, job);
            unplaced.insert(entry.id);
        }
        let now = Instant::now();
        if !jobs.is_empty() {
            tracing::info!(count = jobs.len(), "unfinished jobs taken back from the journal");
        }
        Ok(Jobs {
            inner: Arc::new(Inner {
                registry: Mutex::new(Registry {
                    jobs,
                    line: BTreeSet::new(),
                    fair: FairShare::default(),
                    slots: backends.iter().map(|_| Slot::new(now)).collect(),
                    unplaced,
                    orphans: Vec::new(),
                }),
                backends,
                workflow,
                images,
                history,
                journal,
                previews,
                tuning,
                first_event_id,
                stopping: watch::channel(false).0,
                saving: watch::channel(0).0,
            }),
        })
    }

    /// Follows the backends' events (each tagged with its backend's index) and runs the watchdog until
    /// the event channel closes.
    pub async fn run(self, mut events: mpsc::Receiver<(usize, ComfyEvent)>) {
        // A backend turning ready gets its job at once, not at the watchdog's next round.
        let watchers: Vec<tokio::task::JoinHandle<()>> = self
            .inner
            .backends
            .iter()
            .map(|backend| {
                let mut readiness = backend.readiness.clone();
                let jobs = self.clone();
                tokio::spawn(async move {
                    while readiness.changed().await.is_ok() {
                        if readiness.borrow_and_update().ready {
                            jobs.pump();
                        }
                    }
                })
            })
            .collect();
        let mut watchdog = tokio::time::interval(self.inner.tuning.watchdog_interval);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some((backend, event)) => self.on_comfy_event(backend, event),
                    None => break,
                },
                _ = watchdog.tick() => self.watch(),
            }
        }
        for watcher in watchers {
            watcher.abort();
        }
    }

    /// Every backend as people see it: its state, device, jobs done and median time per image.
    pub fn backends(&self) -> Vec<BackendView> {
        let registry = self.registry();
        self.inner
            .backends
            .iter()
            .zip(&registry.slots)
            .map(|(backend, slot)| {
                crate::readiness::backend_view(
                    &backend.name,
                    &backend.readiness.borrow(),
                    slot.held.is_some(),
                    slot.jobs_done,
                    schedule::median(slot.timings.iter().copied()),
                )
            })
            .collect()
    }

    /// Accepts validated parameters into the waiting line. Returns once the job is journaled, whatever
    /// happens to the caller meanwhile: the acceptance runs in a task of its own.
    pub async fn submit(
        &self,
        params: GenerationParams,
        owner: Option<ClientId>,
    ) -> Result<JobAccepted, JobError> {
        let jobs = self.clone();
        tokio::spawn(async move { jobs.accept(params, owner).await })
            .await
            .unwrap_or_else(|error| Err(JobError::Journal(std::io::Error::other(error))))
    }

    async fn accept(
        &self,
        params: GenerationParams,
        owner: Option<ClientId>,
    ) -> Result<JobAccepted, JobError> {
        let entry = Entry {
            id: JobId::new(),
            owner,
            prompt: params.prompt.as_str().to_owned(),
            seed: params.seed.get(),
            width: params.width.get(),
            height: params.height.get(),
        };
        let id = entry.id;
        {
            let mut registry = self.registry();
            if *self.inner.stopping.borrow() {
                return Err(JobError::ShuttingDown);
            }
            // Counted and reserved under one lock, so concurrent submissions cannot overshoot the cap.
            let unfinished = registry.unfinished();
            let cap = self.inner.tuning.max_unfinished;
            if cap > 0 && unfinished >= cap {
                tracing::info!(unfinished, "queue full; job refused");
                return Err(JobError::QueueFull {
                    unfinished,
                    retry_after: QUEUE_FULL_RETRY,
                });
            }
            let log = EventLog::starting_at(self.inner.first_event_id);
            let mut job = Job::new(&entry, Phase::Waiting, log);
            job.tag = registry.fair.tag(owner);
            registry.jobs.insert(id, job);
        }
        if let Err(error) = self.inner.journal.add(&entry).await {
            self.registry().jobs.remove(&id);
            tracing::error!(%id, %error, "cannot journal the job; refused");
            return Err(JobError::Journal(error));
        }
        {
            let mut registry = self.registry();
            let tag = registry.jobs.get(&id).map_or(0, |job| job.tag);
            registry.line.insert((tag, id));
            registry.reposition();
        }
        tracing::info!(%id, seed = entry.seed, width = entry.width, height = entry.height, "job accepted");
        self.pump();
        Ok(JobAccepted {
            id: id.to_string(),
            seed: entry.seed,
            width: entry.width,
            height: entry.height,
            status: JobStatus::Queued,
        })
    }

    /// The job as the API shows it, from memory or, after a restart, from the history.
    pub fn view(&self, id: JobId) -> Option<JobView> {
        if let Some(job) = self.registry().jobs.get(&id) {
            return Some(job.view(id, &self.inner.backends));
        }
        self.inner.history.get(id).map(|record| completed_view(&record))
    }

    /// The latest live preview of a running job.
    pub fn preview(&self, id: JobId) -> Option<(Bytes, &'static str)> {
        self.registry().jobs.get(&id).and_then(|job| job.preview.clone())
    }

    /// The job's events after `last_seen` (all when `None`, or when `last_seen` is beyond the log, as
    /// an id from before a restart may be), then live ones, ending with the terminal event, or with
    /// [`StreamItem::Restarting`] when the gateway shuts down first. `None` when the job is unknown.
    pub fn events(
        &self,
        id: JobId,
        last_seen: Option<u64>,
    ) -> Option<impl Stream<Item = StreamItem> + Send + 'static> {
        let subscription = match self.registry().jobs.get(&id) {
            Some(job) => job.log.subscribe(last_seen),
            None => {
                let record = self.inner.history.get(id)?;
                EventLog::finished(state::completed_event(&record), self.inner.first_event_id)
                    .subscribe(last_seen)
            }
        };
        let jobs = self.clone();
        let events = subscription.into_stream(move |after| {
            jobs.registry()
                .jobs
                .get(&id)
                .map(|job| job.log.after(after))
                .unwrap_or_default()
        });
        let engine = self.clone();
        let stop = async move { engine.shutdown_begun().await };
        let events: Pin<Box<dyn Stream<Item = Arc<Sequenced>> + Send>> = Box::pin(events);
        let stop: Pin<Box<dyn std::future::Future<Output = ()> + Send>> = Box::pin(stop);
        Some(futures_util::stream::unfold(
            Some((events, stop)),
            |running| async move {
                let (mut events, mut stop) = running?;
                tokio::select! {
                    // Events already there go out before the goodbye.
                    biased;
                    next = events.next() => next.map(|event| (StreamItem::Event(event), Some((events, stop)))),
                    () = &mut stop => Some((StreamItem::Restarting, None)),
                }
            },
        ))
    }

    /// Cancels a job for `requester`, who must be allowed to change it (see [`Jobs::authorize`]).
    /// A waiting job leaves the line at once; one at ComfyUI is dropped from its queue or interrupted,
    /// and ends when ComfyUI confirms.
    pub fn cancel(&self, id: JobId, requester: Requester) -> Result<JobView, JobError> {
        self.authorize(id, requester)?;
        {
            let registry = self.registry();
            let job = registry.jobs.get(&id).ok_or(JobError::AlreadyEnded)?;
            state::may_cancel(&job.phase).map_err(|refused| match refused {
                CancelRefused::AlreadyEnded => JobError::AlreadyEnded,
                CancelRefused::Saving => JobError::AlreadySaving,
            })?;
        }
        tracing::info!(%id, "job cancel requested");
        self.apply(id, Input::Cancel);
        self.view(id).ok_or(JobError::NotFound)
    }

    /// Checks that `requester` may cancel the job or delete its image: its own jobs, or any job once
    /// signed in. The owner is known while the job is in memory and, afterwards, from the history.
    pub fn authorize(&self, id: JobId, requester: Requester) -> Result<(), JobError> {
        let owner = match self.registry().jobs.get(&id) {
            Some(job) => job.owner,
            None => self.inner.history.get(id).ok_or(JobError::NotFound)?.owner,
        };
        if requester.may_change(owner) {
            Ok(())
        } else {
            Err(JobError::NotYours)
        }
    }

    /// A stored image (or its thumbnail, made when first asked for). `None` when there is none.
    pub async fn image(&self, id: JobId, variant: Variant) -> Result<Option<Bytes>, ImageError> {
        self.inner.images.read(id, variant).await
    }

    /// Begins the shutdown: no new jobs are accepted, nothing more is sent to ComfyUI, and every open
    /// event stream ends with [`StreamItem::Restarting`]. Unfinished jobs stay in the journal and carry
    /// on after the restart; ComfyUI finishes the one it holds meanwhile.
    pub fn begin_shutdown(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// Resolves once [`Jobs::begin_shutdown`] has been called.
    pub async fn shutdown_begun(&self) {
        let mut stopping = self.inner.stopping.subscribe();
        // The sender lives as long as `self`, so the wait ends only by the shutdown.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }

    /// Waits until no finished image is half-way to the disk; the server calls it when shutting down.
    /// (A save cut short by the exit is no loss: the job is still journaled and saved after the
    /// restart, from ComfyUI's records.)
    pub async fn flush(&self) {
        let mut saving = self.inner.saving.subscribe();
        let _ = saving.wait_for(|count| *count == 0).await;
    }

    /// How many finished images are being saved right now.
    pub fn saves_under_way(&self) -> usize {
        *self.inner.saving.borrow()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Every update leaves the registry consistent, so a poisoned lock's data is still good.
        self.inner.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Feeds one input to a job's state machine and starts what the transition asks for.
    fn apply(&self, id: JobId, input: Input) {
        let followup = {
            let mut registry = self.registry();
            let Some(job) = registry.jobs.get(&id) else { return };
            match state::advance(&job.phase, input, job.resubmits) {
                Ok(transition) => registry.enter(id, transition, &self.inner.saving),
                Err(illegal) => {
                    tracing::debug!(%id, %illegal, "input ignored");
                    return;
                }
            }
        };
        self.follow_up(id, followup);
        self.pump();
    }

    fn follow_up(&self, id: JobId, followup: Followup) {
        for effect in followup.effects {
            self.start(id, effect);
        }
        if followup.ended {
            let journal = self.inner.journal.clone();
            tokio::spawn(async move {
                if let Err(error) = journal.remove(id).await {
                    tracing::warn!(%id, %error, "cannot remove the journal entry of an ended job");
                }
            });
        }
    }

    /// Moves jobs off backends that are gone when another can take them, then hands waiting jobs, in
    /// fair-share order, to the backends that can take one ([`schedule::pick_backend`]).
    fn pump(&self) {
        self.fail_over();
        loop {
            let dispatched = {
                let mut registry = self.registry();
                if *self.inner.stopping.borrow() || !registry.unplaced.is_empty() {
                    return;
                }
                let Some(&(tag, id)) = registry.line.first() else {
                    return;
                };
                let candidates = registry.candidates(&self.inner.backends, Instant::now());
                let Some(index) = schedule::pick_backend(&candidates) else {
                    return;
                };
                let Some(client_id) = registry.slots[index].link.clone() else {
                    return;
                };
                let Some(job) = registry.jobs.get_mut(&id) else {
                    registry.line.remove(&(tag, id));
                    continue;
                };
                match state::advance(&job.phase, Input::Dispatch, job.resubmits) {
                    Ok(transition) => {
                        job.client_id = Some(client_id);
                        job.dispatched_at = Some(Instant::now());
                        job.backend = Some(index);
                        registry.slots[index].held = Some(id);
                        registry.fair.served(tag);
                        (id, registry.enter(id, transition, &self.inner.saving))
                    }
                    Err(illegal) => {
                        // Only waiting jobs are in the line; anything else is a bug worth seeing.
                        tracing::error!(%id, %illegal, "a job in the waiting line cannot be dispatched");
                        registry.line.remove(&(tag, id));
                        registry.reposition();
                        continue;
                    }
                }
            };
            let (id, followup) = dispatched;
            self.follow_up(id, followup);
        }
    }

    /// A backend that died or stopped answering while holding a job: when another backend is ready,
    /// the job goes back to the line (keeping its turn) to be sent there. With no other backend ready
    /// it stays, and is checked against its backend's records when that one comes back, as with a
    /// single ComfyUI.
    fn fail_over(&self) {
        let stranded: Vec<(usize, JobId, String)> = {
            let registry = self.registry();
            let now = Instant::now();
            let elsewhere = |gone: usize| {
                registry
                    .slots
                    .iter()
                    .zip(&self.inner.backends)
                    .enumerate()
                    .any(|(index, (slot, backend))| index != gone && slot.can_work(backend, now))
            };
            registry
                .slots
                .iter()
                .enumerate()
                .filter(|(index, slot)| slot.link.is_none() && elsewhere(*index))
                .filter_map(|(index, slot)| {
                    let id = slot.held?;
                    let job = registry.jobs.get(&id)?;
                    // Mid-submission the submission's own answer comes first.
                    (job.phase != Phase::Submitting).then(|| {
                        (
                            index,
                            id,
                            format!(
                                "The backend {} stopped answering; the image is made again on another.",
                                self.inner.backends[index].name
                            ),
                        )
                    })
                })
                .collect()
        };
        for (from, id, reason) in stranded {
            tracing::warn!(%id, %reason, "moving the job to another backend");
            let followup = {
                let mut registry = self.registry();
                registry.orphans.push((from, id));
                let Some(job) = registry.jobs.get(&id) else {
                    continue;
                };
                match state::advance(&job.phase, Input::BackendLost { reason }, job.resubmits) {
                    Ok(transition) => registry.enter(id, transition, &self.inner.saving),
                    Err(illegal) => {
                        tracing::debug!(%id, %illegal, "input ignored");
                        continue;
                    }
                }
            };
            self.follow_up(id, followup);
        }
    }

    /// Starts one effect of a transition in a task of its own; its result comes back through
    /// [`Jobs::apply`].
    fn start(&self, id: JobId, effect: Effect) {
        match effect {
            Effect::Submit => self.submit_to_comfy(id),
            Effect::Reconcile => self.reconcile(id),
            Effect::DeletePending => {
                let Some((_, comfy)) = self.backend_of(id) else {
                    return;
                };
                tokio::spawn(async move {
                    if let Err(error) = comfy.delete_pending(&id.to_string()).await {
                        tracing::warn!(%id, %error, "cannot remove the job from ComfyUI's queue");
                    }
                });
            }
            Effect::Interrupt => {
                let Some((_, comfy)) = self.backend_of(id) else {
                    return;
                };
                tokio::spawn(async move {
                    if let Err(error) = comfy.interrupt(&id.to_string()).await {
                        tracing::warn!(%id, %error, "cannot interrupt the job");
                    }
                });
            }
            Effect::Save { outputs } => {
                let jobs = self.clone();
                tokio::spawn(async move {
                    let input = jobs.save(id, outputs).await;
                    jobs.apply(id, input);
                });
            }
        }
    }

    /// The backend a job is at: its index and client.
    fn backend_of(&self, id: JobId) -> Option<(usize, ComfyClient)> {
        let index = self.registry().jobs.get(&id)?.backend?;
        let backend = self.inner.backends.get(index)?;
        Some((index, backend.comfy.clone()))
    }

    fn submit_to_comfy(&self, id: JobId) {
        let submission = {
            let registry = self.registry();
            registry.jobs.get(&id).and_then(|job| {
                let graph = self
                    .inner
                    .workflow
                    .fill(&job.prompt, job.seed, job.width, job.height);
                Some((graph, job.client_id.clone()?, job.backend?))
            })
        };
        let Some((graph, client_id, index)) = submission else {
            return;
        };
        let comfy = self.inner.backends[index].comfy.clone();
        let jobs = self.clone();
        tokio::spawn(async move {
            let prompt_id = id.to_string();
            let input = match comfy
                .submit(&prompt_id, &client_id, graph, jobs.inner.previews)
                .await
            {
                Ok(()) => Input::SubmitAccepted,
                Err(comfy::Error::Rejected { code, message }) => {
                    tracing::warn!(%id, code, %message, "ComfyUI refused the job");
                    Input::SubmitRefused {
                        failure: JobFailure {
                            code: code.to_owned(),
                            message,
                        },
                    }
                }
                Err(comfy::Error::Unreachable) => {
                    // Another backend, if any, gets the job meanwhile.
                    if let Some(slot) = jobs.registry().slots.get_mut(index) {
                        slot.paused_until = Some(Instant::now() + SUBMIT_FAILURE_PAUSE);
                    }
                    tracing::warn!(%id, backend = %jobs.inner.backends[index].name, "the backend did not answer the submission");
                    Input::SubmitUnreachable
                }
                Err(error) => {
                    tracing::warn!(%id, %error, "no clear answer to the submission; asking ComfyUI");
                    Input::SubmitUncertain
                }
            };
            let accepted = input == Input::SubmitAccepted;
            jobs.apply(id, input);
            if accepted {
                tracing::info!(%id, "job handed to ComfyUI");
                // The connection it went under was replaced meanwhile: its events are lost, ask.
                let replaced = jobs
                    .registry()
                    .slots
                    .get(index)
                    .is_none_or(|slot| slot.link.as_deref() != Some(client_id.as_str()));
                if replaced {
                    jobs.reconcile(id);
                }
            }
        });
    }

    /// Asks the job's backend what became of it (or, for a job taken back from the journal, every
    /// backend that is up: [`Jobs::locate`]) and feeds the answer back. A failed check is retried with
    /// backoff by the watchdog (and the deadline ends the job if no backend ever answers).
    fn reconcile(&self, id: JobId) {
        let claimed = {
            let mut registry = self.registry();
            registry.jobs.get_mut(&id).is_some_and(|job| {
                // While the submission is under way its own answer comes first: asking then could
                // find the prompt not there yet and send the job twice.
                let claim = job.phase.holds_comfy() && job.phase != Phase::Submitting && !job.check.in_flight;
                job.check.in_flight |= claim;
                claim
            })
        };
        if !claimed {
            return;
        }
        let placed = self.backend_of(id);
        let jobs = self.clone();
        tokio::spawn(async move {
            let answer = match placed {
                Some((_, comfy)) => comfy.remote_state(&id.to_string()).await,
                None => jobs.locate(id).await,
            };
            {
                let mut registry = jobs.registry();
                let Some(job) = registry.jobs.get_mut(&id) else {
                    return;
                };
                job.check.in_flight = false;
                match &answer {
                    Ok(_) => job.check.failures = 0,
                    Err(error) => {
                        job.check.failures += 1;
                        let backoff = Duration::from_millis(250)
                            .saturating_mul(1 << job.check.failures.min(8))
                            .min(MAX_RECONCILE_BACKOFF);
                        job.check.not_before = Instant::now() + backoff;
                        tracing::warn!(%id, %error, failures = job.check.failures, ?backoff, "cannot check the job with ComfyUI");
                    }
                }
            }
            if let Ok(state) = answer {
                jobs.apply(id, Input::Remote(state));
            }
        });
    }

    /// Looks for a job taken back from the journal at every backend that is up. The first that knows
    /// it gets it (its records are the answer). When every backend says it does not know the job, it
    /// is lost ([`RemoteState::Unknown`]: sent again); so it is too when the backends that answered do
    /// not know it and the others stayed out of reach for a while, rather than holding every new job
    /// back (at worst a backend that comes back later makes the same image twice).
    async fn locate(&self, id: JobId) -> Result<RemoteState, comfy::Error> {
        let up: Vec<usize> = {
            let registry = self.registry();
            registry
                .slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| slot.link.is_some())
                .map(|(index, _)| index)
                .collect()
        };
        let prompt_id = id.to_string();
        let answers = futures_util::future::join_all(up.iter().map(|index| {
            let comfy = self.inner.backends[*index].comfy.clone();
            let prompt_id = prompt_id.clone();
            async move { comfy.remote_state(&prompt_id).await }
        }))
        .await;
        let mut unknown = 0;
        let mut last_error = None;
        for (index, answer) in up.iter().zip(answers) {
            match answer {
                Ok(RemoteState::Unknown) => unknown += 1,
                Ok(state) => {
                    let mut registry = self.registry();
                    if let Some(job) = registry.jobs.get_mut(&id) {
                        job.backend = Some(*index);
                        job.last_heard = Instant::now();
                        registry.unplaced.remove(&id);
                        let slot = &mut registry.slots[*index];
                        slot.held.get_or_insert(id);
                        if let Some(client_id) = slot.link.clone() {
                            registry
                                .jobs
                                .entry(id)
                                .and_modify(|job| job.client_id = Some(client_id));
                        }
                    }
                    tracing::info!(%id, backend = %self.inner.backends[*index].name, "a backend still knows the job");
                    return Ok(state);
                }
                Err(error) => last_error = Some(error),
            }
        }
        let waited = self
            .registry()
            .jobs
            .get(&id)
            .and_then(|job| job.dispatched_at)
            .is_some_and(|since| since.elapsed() >= self.inner.tuning.silence.saturating_mul(3));
        if unknown == self.inner.backends.len() || (unknown > 0 && waited) {
            Ok(RemoteState::Unknown)
        } else {
            Err(last_error.unwrap_or(comfy::Error::Unreachable))
        }
    }

    /// Fetches the finished image and writes it and its record to disk: the input that completes the
    /// job, or fails it with a sentence.
    async fn save(&self, id: JobId, outputs: Vec<OutputImage>) -> Input {
        let Some((index, comfy)) = self.backend_of(id) else {
            return Input::SaveFailed {
                failure: JobFailure {
                    code: "image_unavailable".to_owned(),
                    message: "The studio lost track of the backend that made this image.".to_owned(),
                },
            };
        };
        let outputs = if outputs.is_empty() {
            // The `executed` message was lost: ComfyUI's records name the file.
            match comfy.remote_state(&id.to_string()).await {
                Ok(RemoteState::Completed { images }) => images,
                _ => Vec::new(),
            }
        } else {
            outputs
        };
        let (png, (width, height)) = match self.fetch_image(id, &comfy, outputs).await {
            Ok(fetched) => fetched,
            Err(message) if self.registry().slots[index].link.is_none() && self.inner.backends.len() > 1 => {
                // The backend died with the image: another makes it again.
                tracing::warn!(%id, %message, "the backend went away before its image was fetched");
                return Input::BackendLost {
                    reason: format!(
                        "The backend {} went away before its image could be fetched; the image is made \
                         again on another.",
                        self.inner.backends[index].name
                    ),
                };
            }
            Err(message) => {
                tracing::warn!(%id, %message, "cannot keep the finished image");
                return Input::SaveFailed {
                    failure: JobFailure {
                        code: "image_unavailable".to_owned(),
                        message,
                    },
                };
            }
        };
        let Some(record) = self.registry().jobs.get(&id).map(|job| {
            if (width, height) != (job.width, job.height) {
                tracing::warn!(%id, width, height, "ComfyUI made an image of another size than asked");
            }
            let finished_at = now_ms();
            HistoryRecord {
                id,
                owner: job.owner,
                prompt: job.prompt.clone(),
                seed: job.seed,
                width,
                height,
                timings: Timings {
                    finished_at: Some(finished_at),
                    ..job.timings
                },
                elapsed_ms: finished_at.saturating_sub(job.timings.queued_at),
                backend: Some(self.inner.backends[index].name.clone()),
            }
        }) else {
            return Input::SaveFailed {
                failure: JobFailure {
                    code: "image_unavailable".to_owned(),
                    message: "The job was forgotten while its image was saved.".to_owned(),
                },
            };
        };
        let png = self.with_story(png, &record);
        match self.persist(record.clone(), png).await {
            Ok(()) => {
                tracing::info!(%id, elapsed_ms = record.elapsed_ms, "job completed");
                Input::Saved { record }
            }
            Err(failure) => {
                tracing::error!(%id, code = %failure.code, message = %failure.message, "the finished image could not be written to disk");
                Input::SaveFailed { failure }
            }
        }
    }

    /// The image with its prompt, seed, size and model files written into it as PNG text chunks
    /// ([`png_story`]); as ComfyUI made it should that fail, since the image matters more than its story.
    fn with_story(&self, png: Bytes, record: &HistoryRecord) -> Bytes {
        let story = ImageStory {
            prompt: &record.prompt,
            seed: record.seed,
            width: record.width,
            height: record.height,
            models: self.inner.workflow.models(),
        };
        match png_story::with_story(&png, &story) {
            Ok(told) => Bytes::from(told),
            Err(error) => {
                tracing::warn!(id = %record.id, %error, "cannot write the prompt and seed into the PNG; keeping it as it is");
                png
            }
        }
    }

    /// Writes the image, then its record: both on disk, or neither ([`storage::save`]).
    async fn persist(&self, record: HistoryRecord, png: Bytes) -> Result<(), JobFailure> {
        storage::save(&self.inner.images, &self.inner.history, record, png)
            .await
            .map_err(|error| JobFailure {
                code: if error.is_disk_full() {
                    "disk_full"
                } else {
                    "storage_failed"
                }
                .to_owned(),
                message: error.to_string(),
            })
    }

    /// Fetches the finished image (retrying a few times) and reads its size from its header.
    async fn fetch_image(
        &self,
        id: JobId,
        comfy: &ComfyClient,
        outputs: Vec<OutputImage>,
    ) -> Result<(Bytes, (u32, u32)), String> {
        let image = outputs
            .into_iter()
            .next()
            .ok_or("ComfyUI finished without an image.")?;
        let mut attempt = 0;
        let png = loop {
            attempt += 1;
            match comfy.fetch_output(&image, MAX_IMAGE_BYTES).await {
                Ok(bytes) => break bytes,
                Err(error) if attempt < self.inner.tuning.fetch_attempts => {
                    tracing::warn!(%id, %error, attempt, "fetching the image failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(error) => return Err(format!("The image could not be fetched from ComfyUI: {error}")),
            }
        };
        let size = png_size(&png).map_err(|error| format!("The image could not be stored: {error}"))?;
        Ok((png, size))
    }

    /// Applies one socket event of backend `backend`.
    fn on_comfy_event(&self, backend: usize, event: ComfyEvent) {
        let Some(name) = self
            .inner
            .backends
            .get(backend)
            .map(|backend| backend.name.as_str())
        else {
            return;
        };
        let (prompt_id, input) = match event {
            ComfyEvent::Connected { client_id } => {
                tracing::info!(
                    backend = name,
                    "ComfyUI socket connected; checking the jobs it may hold"
                );
                let orphans: Vec<JobId> = {
                    let mut registry = self.registry();
                    if let Some(slot) = registry.slots.get_mut(backend) {
                        slot.link = Some(client_id);
                    }
                    let (here, elsewhere) = std::mem::take(&mut registry.orphans)
                        .into_iter()
                        .partition(|(index, _)| *index == backend);
                    registry.orphans = elsewhere;
                    here.into_iter().map(|(_, id)| id).collect()
                };
                self.drop_orphans(backend, orphans);
                self.reconcile_held(backend);
                self.pump();
                return;
            }
            ComfyEvent::Disconnected => {
                tracing::warn!(backend = name, "ComfyUI socket lost");
                if let Some(slot) = self.registry().slots.get_mut(backend) {
                    slot.link = None;
                    slot.link_down_since = Instant::now();
                }
                // Its job moves to another backend, if one is ready.
                self.pump();
                return;
            }
            // The gateway's own line decides positions; ComfyUI's queue holds one job of ours at most.
            ComfyEvent::QueueRemaining(_) => return,
            ComfyEvent::Preview {
                prompt_id,
                image,
                mime,
            } => {
                self.on_preview(backend, &prompt_id, image, mime);
                return;
            }
            ComfyEvent::Started { prompt_id } | ComfyEvent::NodeStarted { prompt_id, .. } => {
                (prompt_id, Input::Started)
            }
            ComfyEvent::Progress {
                prompt_id,
                node,
                value,
                max,
            } => {
                if node != self.inner.workflow.sampler_node() {
                    return;
                }
                (
                    prompt_id,
                    Input::Progress {
                        step: value,
                        total: max,
                    },
                )
            }
            ComfyEvent::Output {
                prompt_id,
                node,
                images,
            } => {
                if node != self.inner.workflow.output_node() {
                    return;
                }
                (prompt_id, Input::Output { images })
            }
            ComfyEvent::Succeeded { prompt_id } => (prompt_id, Input::Succeeded),
            ComfyEvent::Failed { prompt_id, failure } => {
                tracing::warn!(%prompt_id, node = %failure.node_type, error = %failure.exception_message, "ComfyUI failed the job");
                let failure = JobFailure {
                    code: failure.code().to_owned(),
                    message: failure.human_message(),
                };
                (prompt_id, Input::ComfyFailed { failure })
            }
            ComfyEvent::Interrupted { prompt_id } => (prompt_id, Input::Interrupted),
            ComfyEvent::Finished { prompt_id } => (prompt_id, Input::Finished),
        };
        // Prompts the gateway did not submit (someone using ComfyUI directly) are none of our business,
        // and neither is a job's news from a backend it was moved away from.
        let Ok(id) = prompt_id.parse::<JobId>() else {
            return;
        };
        match self.registry().jobs.get_mut(&id) {
            Some(job) if job.backend == Some(backend) => job.last_heard = Instant::now(),
            _ => return,
        }
        self.apply(id, input);
    }

    fn on_preview(&self, backend: usize, prompt_id: &str, image: Bytes, mime: &'static str) {
        let Ok(id) = prompt_id.parse::<JobId>() else {
            return;
        };
        let serial = {
            let mut registry = self.registry();
            let Some(job) = registry
                .jobs
                .get_mut(&id)
                .filter(|job| job.backend == Some(backend))
            else {
                return;
            };
            job.last_heard = Instant::now();
            if !matches!(job.phase, Phase::Running { .. }) {
                return;
            }
            job.preview = Some((image, mime));
            job.previews_sent += 1;
            job.previews_sent
        };
        self.announce_preview_later(id, serial);
    }

    /// Announces the job's `serial`-th live preview a moment from now, if it is still the newest and the
    /// job still runs. ComfyUI sends each step's progress and preview back to back; announced at once,
    /// the preview's fan-out to every watcher interleaves with the progress's and, with hundreds of
    /// watchers, doubles how long the last one waits for its progress. A preview is a picture that each
    /// watcher then downloads, so it can wait [`PREVIEW_ANNOUNCE_DELAY`]; the progress bar cannot.
    fn announce_preview_later(&self, id: JobId, serial: u32) {
        let jobs = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PREVIEW_ANNOUNCE_DELAY).await;
            if let Some(job) = jobs.registry().jobs.get_mut(&id)
                && matches!(job.phase, Phase::Running { .. })
                && job.previews_sent == serial
            {
                let url = preview_url(&id.to_string(), serial);
                job.log.push(JobEvent::Preview { url });
            }
        });
    }

    /// Tells a backend that came back to drop the jobs that were moved away from it while it was out of
    /// reach (each by its prompt id: nothing of anyone else's is touched).
    fn drop_orphans(&self, backend: usize, orphans: Vec<JobId>) {
        if orphans.is_empty() {
            return;
        }
        let comfy = self.inner.backends[backend].comfy.clone();
        tokio::spawn(async move {
            for id in orphans {
                let prompt_id = id.to_string();
                if let Err(error) = comfy.delete_pending(&prompt_id).await {
                    tracing::debug!(%id, %error, "cannot remove a moved job from its old backend's queue");
                }
                if let Err(error) = comfy.interrupt(&prompt_id).await {
                    tracing::debug!(%id, %error, "cannot interrupt a moved job on its old backend");
                }
            }
        });
    }

    /// Checks every job `backend` may hold against its records (after a reconnect, events may be lost),
    /// and looks there for the jobs taken back from the journal.
    fn reconcile_held(&self, backend: usize) {
        let held: Vec<JobId> = self
            .registry()
            .jobs
            .iter()
            .filter(|(_, job)| job.phase.holds_comfy() && job.backend.is_none_or(|index| index == backend))
            .map(|(id, _)| *id)
            .collect();
        for id in held {
            self.reconcile(id);
        }
    }

    /// One watchdog round: deadlines, silent jobs, long-finished jobs.
    fn watch(&self) {
        let tuning = self.inner.tuning;
        let now = Instant::now();
        let (overdue, silent, unreachable_line) = {
            let mut registry = self.registry();
            registry.jobs.retain(|_, job| {
                job.ended
                    .is_none_or(|ended| now.duration_since(ended) < tuning.retention)
            });
            let overdue: Vec<JobId> = registry
                .jobs
                .iter()
                .filter(|(_, job)| {
                    job.phase.holds_comfy()
                        && job
                            .dispatched_at
                            .is_some_and(|since| now.duration_since(since) >= tuning.deadline)
                })
                .map(|(id, _)| *id)
                .collect();
            let silent: Vec<JobId> = registry
                .jobs
                .iter()
                .filter(|(_, job)| {
                    job.phase.holds_comfy()
                        && now.duration_since(job.last_heard) >= tuning.silence
                        && now >= job.check.not_before
                })
                .map(|(id, _)| *id)
                .collect();
            // Every backend out of reach for a whole deadline: the line cannot move, so it ends.
            let unreachable_line: Vec<JobId> = if registry.slots.iter().all(|slot| {
                slot.link.is_none() && now.duration_since(slot.link_down_since) >= tuning.deadline
            }) {
                registry.line.iter().map(|(_, id)| *id).collect()
            } else {
                Vec::new()
            };
            (overdue, silent, unreachable_line)
        };
        for id in overdue.into_iter().chain(unreachable_line) {
            tracing::warn!(%id, deadline = ?tuning.deadline, "job past its deadline");
            self.apply(
                id,
                Input::Deadline {
                    limit: tuning.deadline,
                },
            );
        }
        for id in silent {
            self.reconcile(id);
        }
        self.pump();
    }
}

/// The API view of a job known only from the history.
fn completed_view(record: &HistoryRecord) -> JobView {
    let item = record.item();
    JobView {
        id: item.id,
        prompt: item.prompt,
        seed: item.seed,
        width: item.width,
        height: item.height,
        status: JobStatus::Completed,
        queue_position: None,
        step: api::STEPS,
        total_steps: api::STEPS,
        timings: item.timings,
        image_url: Some(item.image_url),
        thumbnail_url: Some(item.thumbnail_url),
        preview_url: None,
        error: None,
        backend: item.backend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_with_waiting(count: usize) -> (Registry, Vec<JobId>) {
        let mut slot = Slot::new(Instant::now());
        slot.link = Some("zimage-test".to_owned());
        let mut registry = Registry {
            jobs: HashMap::new(),
            line: BTreeSet::new(),
            fair: FairShare::default(),
            slots: vec![slot],
            unplaced: HashSet::new(),
            orphans: Vec::new(),
        };
        let mut ids = Vec::new();
        for index in 0..count {
            let entry = Entry {
                id: JobId::new(),
                owner: None,
                prompt: format!("fox {index}"),
                seed: index as u64,
                width: 512,
                height: 512,
            };
            let mut job = Job::new(&entry, Phase::Waiting, EventLog::new());
            job.tag = registry.fair.tag(None);
            registry.line.insert((job.tag, entry.id));
            registry.jobs.insert(entry.id, job);
            ids.push(entry.id);
        }
        registry.reposition();
        (registry, ids)
    }

    fn positions(registry: &Registry, ids: &[JobId]) -> Vec<Option<u32>> {
        ids.iter().map(|id| registry.jobs[id].position).collect()
    }

    fn queued_events(registry: &Registry, id: JobId) -> Vec<u32> {
        registry.jobs[&id]
            .log
            .after(0)
            .iter()
            .filter_map(|event| match event.event {
                JobEvent::Queued { position } => Some(position),
                _ => None,
            })
            .collect()
    }

    fn step(registry: &mut Registry, id: JobId, input: Input, saving: &watch::Sender<usize>) -> Followup {
        if input == Input::Dispatch {
            // As the engine's pump does.
            registry.jobs.get_mut(&id).unwrap().backend = Some(0);
            registry.jobs.get_mut(&id).unwrap().dispatched_at = Some(Instant::now());
            registry.slots[0].held = Some(id);
        }
        let job = &registry.jobs[&id];
        let transition = state::advance(&job.phase, input, job.resubmits).unwrap();
        registry.enter(id, transition, saving)
    }

    #[test]
    fn places_in_line_count_from_one_and_move_up_as_the_line_moves() {
        let saving = watch::channel(0).0;
        let (mut registry, ids) = registry_with_waiting(3);
        assert_eq!(positions(&registry, &ids), vec![Some(1), Some(2), Some(3)]);
        assert!(registry.slots[0].held.is_none());

        let followup = step(&mut registry, ids[0], Input::Dispatch, &saving);
        assert_eq!(followup.effects, vec![Effect::Submit]);
        assert!(registry.slots[0].held.is_some());
        assert_eq!(positions(&registry, &ids), vec![None, Some(1), Some(2)]);
        assert_eq!(queued_events(&registry, ids[2]), vec![3, 2]);

        // The last one leaves: nobody ahead of the others moved, so they hear nothing new.
        step(&mut registry, ids[2], Input::Cancel, &saving);
        assert_eq!(positions(&registry, &ids), vec![None, Some(1), None]);
        assert_eq!(queued_events(&registry, ids[1]), vec![2, 1]);
        assert_eq!(registry.unfinished(), 2);
    }

    #[test]
    fn a_job_comfyui_lost_goes_back_to_its_own_place_at_the_front() {
        let saving = watch::channel(0).0;
        let (mut registry, ids) = registry_with_waiting(3);
        step(&mut registry, ids[0], Input::Dispatch, &saving);
        step(&mut registry, ids[0], Input::SubmitAccepted, &saving);
        step(
            &mut registry,
            ids[0],
            Input::Remote(RemoteState::Unknown),
            &saving,
        );
        let job = &registry.jobs[&ids[0]];
        assert_eq!((job.resubmits, job.phase.clone()), (1, Phase::Waiting));
        assert_eq!(registry.line.first().map(|(_, id)| *id), Some(ids[0]));
        assert_eq!(
            job.backend, None,
            "its old backend's news is not its own any more"
        );
        assert_eq!(positions(&registry, &ids), vec![Some(1), Some(2), Some(3)]);
        assert!(registry.slots[0].held.is_none());
    }

    #[test]
    fn a_preview_goes_with_the_running_job_and_saves_are_counted() {
        let saving = watch::channel(0).0;
        let (mut registry, ids) = registry_with_waiting(1);
        let id = ids[0];
        step(&mut registry, id, Input::Dispatch, &saving);
        step(&mut registry, id, Input::Started, &saving);
        assert!(registry.jobs[&id].timings.started_at.is_some());
        registry.jobs.get_mut(&id).unwrap().preview = Some((Bytes::from_static(b"jpeg"), "image/jpeg"));
        step(&mut registry, id, Input::Progress { step: 8, total: 8 }, &saving);
        assert!(registry.jobs[&id].preview.is_some());

        step(&mut registry, id, Input::Succeeded, &saving);
        assert!(registry.jobs[&id].preview.is_none());
        assert!(registry.jobs[&id].view(id, &[]).preview_url.is_none());
        assert_eq!(*saving.borrow(), 1);
        // Saving leaves ComfyUI free for the next job.
        assert!(registry.slots[0].held.is_none());

        let failure = JobFailure {
            code: "storage_failed".to_owned(),
            message: "The disk is full.".to_owned(),
        };
        let followup = step(&mut registry, id, Input::SaveFailed { failure }, &saving);
        assert!(followup.ended);
        assert_eq!(*saving.borrow(), 0);
        let view = registry.jobs[&id].view(id, &[]);
        assert_eq!(view.status, JobStatus::Failed);
        assert_eq!(
            view.error.map(|error| error.code),
            Some("storage_failed".to_owned())
        );
        assert!(view.timings.finished_at.is_some());
    }
}
