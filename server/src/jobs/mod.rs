//! The job engine: every generation request from acceptance to its end. It owns the waiting line (the
//! gateway's, not ComfyUI's: ComfyUI only ever holds the one job it is running), hands the next job to
//! ComfyUI when the socket is up and ComfyUI is free, follows it through the socket's events, checks it
//! against ComfyUI's records whenever events may have been lost, stores the finished image and its
//! record, and only then announces it.
//!
//! A job's life is the state machine of [`state`]; this module runs its effects (I/O, in tasks the
//! engine owns) and feeds their results back. A request handler only asks and awaits an answer, so a
//! client hanging up changes nothing. Accepted jobs are journaled ([`journal`]) until they end, so a
//! crash or a restart of the gateway loses none: they are checked against ComfyUI and carried on.

pub mod journal;
pub mod state;

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use app::api::{self, JobAccepted, JobEvent, JobFailure, JobStatus, JobView, Timings};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use tokio::sync::{mpsc, watch};

use self::journal::{Entry, Journal};
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

/// Everything the jobs need. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    comfy: ComfyClient,
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
    /// The waiting line: jobs in [`Phase::Waiting`], oldest first (ids are time-ordered, so a job sent
    /// back to the line takes its old place).
    line: BTreeSet<JobId>,
    /// The client id of the socket connection that is up, if one is.
    link: Option<String>,
    /// Since when no connection has been up.
    link_down_since: Instant,
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

    fn view(&self, id: JobId) -> JobView {
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
            backend: None,
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
        if transition.requeue {
            job.resubmits += 1;
            job.client_id = None;
            job.dispatched_at = None;
            self.line.insert(id);
        }
        let ended = job.phase.is_final();
        if ended {
            job.ended = Some(Instant::now());
            job.timings.finished_at = Some(match &job.phase {
                Phase::Completed { record } => record.timings.finished_at.unwrap_or_else(now_ms),
                _ => now_ms(),
            });
        }
        // Places in line change only when the line does: not on every progress step.
        let line_changed = if job.phase == Phase::Waiting {
            transition.requeue
        } else {
            self.line.remove(&id)
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
        for (index, id) in self.line.iter().enumerate() {
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
            if job.position.is_some() && !self.line.contains(id) {
                job.position = None;
            }
        }
    }

    /// True while a job of ours is at ComfyUI (or being handed to it).
    fn comfy_busy(&self) -> bool {
        self.jobs.values().any(|job| job.phase.holds_comfy())
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
    /// Builds the engine and takes back the unfinished jobs of the journal at `journal_dir`. Call
    /// [`Jobs::run`] to start following ComfyUI.
    pub async fn open(
        comfy: ComfyClient,
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
        for entry in &unfinished {
            if history.get(entry.id).is_some() {
                // Saved just before the crash that kept its journal entry.
                let _ = journal.remove(entry.id).await;
                continue;
            }
            // ComfyUI may hold it, may have finished it, or may never have seen it: until its records
            // say, it counts as held (so nothing else is sent) and is checked once the socket is up.
            let mut job = Job::new(entry, Phase::Queued, EventLog::starting_at(first_event_id));
            job.dispatched_at = Some(Instant::now());
            jobs.insert(entry.id, job);
        }
        if !jobs.is_empty() {
            tracing::info!(count = jobs.len(), "unfinished jobs taken back from the journal");
        }
        Ok(Jobs {
            inner: Arc::new(Inner {
                registry: Mutex::new(Registry {
                    jobs,
                    line: BTreeSet::new(),
                    link: None,
                    link_down_since: Instant::now(),
                }),
                comfy,
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

    /// Follows ComfyUI's events and runs the watchdog until the event channel closes.
    pub async fn run(self, mut events: mpsc::Receiver<ComfyEvent>) {
        let mut watchdog = tokio::time::interval(self.inner.tuning.watchdog_interval);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_comfy_event(event),
                    None => break,
                },
                _ = watchdog.tick() => self.watch(),
            }
        }
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
            registry.jobs.insert(id, Job::new(&entry, Phase::Waiting, log));
        }
        if let Err(error) = self.inner.journal.add(&entry).await {
            self.registry().jobs.remove(&id);
            tracing::error!(%id, %error, "cannot journal the job; refused");
            return Err(JobError::Journal(error));
        }
        {
            let mut registry = self.registry();
            registry.line.insert(id);
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
            return Some(job.view(id));
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

    /// Hands the next waiting job to ComfyUI when the socket is up and ComfyUI holds none of ours.
    fn pump(&self) {
        let dispatched = {
            let mut registry = self.registry();
            if *self.inner.stopping.borrow() || registry.comfy_busy() {
                return;
            }
            let Some(client_id) = registry.link.clone() else {
                return;
            };
            let Some(id) = registry.line.first().copied() else {
                return;
            };
            let Some(job) = registry.jobs.get_mut(&id) else {
                return;
            };
            match state::advance(&job.phase, Input::Dispatch, job.resubmits) {
                Ok(transition) => {
                    job.client_id = Some(client_id);
                    job.dispatched_at = Some(Instant::now());
                    Some((id, registry.enter(id, transition, &self.inner.saving)))
                }
                Err(illegal) => {
                    // Only waiting jobs are in the line; anything else is a bug worth seeing.
                    tracing::error!(%id, %illegal, "a job in the waiting line cannot be dispatched");
                    registry.line.remove(&id);
                    None
                }
            }
        };
        if let Some((id, followup)) = dispatched {
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
                let comfy = self.inner.comfy.clone();
                tokio::spawn(async move {
                    if let Err(error) = comfy.delete_pending(&id.to_string()).await {
                        tracing::warn!(%id, %error, "cannot remove the job from ComfyUI's queue");
                    }
                });
            }
            Effect::Interrupt => {
                let comfy = self.inner.comfy.clone();
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

    fn submit_to_comfy(&self, id: JobId) {
        let submission = {
            let registry = self.registry();
            registry.jobs.get(&id).and_then(|job| {
                let graph = self
                    .inner
                    .workflow
                    .fill(&job.prompt, job.seed, job.width, job.height);
                job.client_id.clone().map(|client_id| (graph, client_id))
            })
        };
        let Some((graph, client_id)) = submission else {
            return;
        };
        let jobs = self.clone();
        tokio::spawn(async move {
            let prompt_id = id.to_string();
            let input = match jobs
                .inner
                .comfy
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
                Err(comfy::Error::Unreachable) => Input::SubmitUnreachable,
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
                let replaced = jobs.registry().link.as_deref() != Some(client_id.as_str());
                if replaced {
                    jobs.reconcile(id);
                }
            }
        });
    }

    /// Asks ComfyUI what became of a job and feeds the answer back. A failed check is retried with
    /// backoff by the watchdog (and the deadline ends the job if ComfyUI never answers).
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
        let jobs = self.clone();
        tokio::spawn(async move {
            let answer = jobs.inner.comfy.remote_state(&id.to_string()).await;
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

    /// Fetches the finished image and writes it and its record to disk: the input that completes the
    /// job, or fails it with a sentence.
    async fn save(&self, id: JobId, outputs: Vec<OutputImage>) -> Input {
        let outputs = if outputs.is_empty() {
            // The `executed` message was lost: ComfyUI's records name the file.
            match self.inner.comfy.remote_state(&id.to_string()).await {
                Ok(RemoteState::Completed { images }) => images,
                _ => Vec::new(),
            }
        } else {
            outputs
        };
        let (png, (width, height)) = match self.fetch_image(id, outputs).await {
            Ok(fetched) => fetched,
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
                backend: None,
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
    async fn fetch_image(&self, id: JobId, outputs: Vec<OutputImage>) -> Result<(Bytes, (u32, u32)), String> {
        let image = outputs
            .into_iter()
            .next()
            .ok_or("ComfyUI finished without an image.")?;
        let mut attempt = 0;
        let png = loop {
            attempt += 1;
            match self.inner.comfy.fetch_output(&image, MAX_IMAGE_BYTES).await {
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

    /// Applies one socket event.
    fn on_comfy_event(&self, event: ComfyEvent) {
        let (prompt_id, input) = match event {
            ComfyEvent::Connected { client_id } => {
                tracing::info!("ComfyUI socket connected; checking the jobs it may hold");
                self.registry().link = Some(client_id);
                self.reconcile_held();
                self.pump();
                return;
            }
            ComfyEvent::Disconnected => {
                tracing::warn!("ComfyUI socket lost");
                let mut registry = self.registry();
                registry.link = None;
                registry.link_down_since = Instant::now();
                return;
            }
            // The gateway's own line decides positions; ComfyUI's queue holds one job of ours at most.
            ComfyEvent::QueueRemaining(_) => return,
            ComfyEvent::Preview {
                prompt_id,
                image,
                mime,
            } => {
                self.on_preview(&prompt_id, image, mime);
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
        // Prompts the gateway did not submit (someone using ComfyUI directly) are none of our business.
        let Ok(id) = prompt_id.parse::<JobId>() else {
            return;
        };
        if let Some(job) = self.registry().jobs.get_mut(&id) {
            job.last_heard = Instant::now();
        }
        self.apply(id, input);
    }

    fn on_preview(&self, prompt_id: &str, image: Bytes, mime: &'static str) {
        let Ok(id) = prompt_id.parse::<JobId>() else {
            return;
        };
        let serial = {
            let mut registry = self.registry();
            let Some(job) = registry.jobs.get_mut(&id) else {
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

    /// Checks every job ComfyUI may hold against its records (after a reconnect, events may be lost).
    fn reconcile_held(&self) {
        let held: Vec<JobId> = self
            .registry()
            .jobs
            .iter()
            .filter(|(_, job)| job.phase.holds_comfy())
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
            // ComfyUI out of reach for a whole deadline: the line cannot move, so it ends.
            let unreachable_line: Vec<JobId> = if registry.link.is_none()
                && now.duration_since(registry.link_down_since) >= tuning.deadline
            {
                registry.line.iter().copied().collect()
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
        let mut registry = Registry {
            jobs: HashMap::new(),
            line: BTreeSet::new(),
            link: Some("zimage-test".to_owned()),
            link_down_since: Instant::now(),
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
            registry
                .jobs
                .insert(entry.id, Job::new(&entry, Phase::Waiting, EventLog::new()));
            registry.line.insert(entry.id);
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
        let job = &registry.jobs[&id];
        let transition = state::advance(&job.phase, input, job.resubmits).unwrap();
        registry.enter(id, transition, saving)
    }

    #[test]
    fn places_in_line_count_from_one_and_move_up_as_the_line_moves() {
        let saving = watch::channel(0).0;
        let (mut registry, ids) = registry_with_waiting(3);
        assert_eq!(positions(&registry, &ids), vec![Some(1), Some(2), Some(3)]);
        assert!(!registry.comfy_busy());

        let followup = step(&mut registry, ids[0], Input::Dispatch, &saving);
        assert_eq!(followup.effects, vec![Effect::Submit]);
        assert!(registry.comfy_busy());
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
        assert_eq!(registry.line.first(), Some(&ids[0]));
        assert_eq!(positions(&registry, &ids), vec![Some(1), Some(2), Some(3)]);
        assert!(!registry.comfy_busy());
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
        assert!(registry.jobs[&id].view(id).preview_url.is_none());
        assert_eq!(*saving.borrow(), 1);
        // Saving leaves ComfyUI free for the next job.
        assert!(!registry.comfy_busy());

        let failure = JobFailure {
            code: "storage_failed".to_owned(),
            message: "The disk is full.".to_owned(),
        };
        let followup = step(&mut registry, id, Input::SaveFailed { failure }, &saving);
        assert!(followup.ended);
        assert_eq!(*saving.borrow(), 0);
        let view = registry.jobs[&id].view(id);
        assert_eq!(view.status, JobStatus::Failed);
        assert_eq!(
            view.error.map(|error| error.code),
            Some("storage_failed".to_owned())
        );
        assert!(view.timings.finished_at.is_some());
    }
}
