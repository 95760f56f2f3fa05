//! The job engine: every generation request from acceptance to its end. It owns the waiting line (the
//! gateway's, not ComfyUI's: each ComfyUI backend only ever holds the one job it is running), hands
//! the next job (fair share between clients, [`schedule`]) to an idle, ready backend, follows it through
//! that backend's socket events, checks it against the backend's records whenever events may have been
//! lost, moves it to another backend when its own dies, stores the finished image and its record, and
//! only then announces it.
//!
//! One task owns every job: the actor of [`Jobs::open`], which reads one channel and feeds each
//! message to the [`engine::Engine`] (the waiting line, the jobs, what is known of each backend; no
//! lock, no I/O, no clock). A job's life is the state machine of [`state`]; the I/O the engine asks
//! for runs in [`runner`], whose results come back on the same channel. A request handler only sends
//! a message and awaits the answer, so a client hanging up changes nothing. Accepted jobs are
//! journaled ([`journal`]) until they end, so a crash or a restart of the gateway loses none.
//! [`sim`] (tests only) drives the same engine through thousands of seeded fault schedules.

pub mod engine;
pub mod journal;
mod messages;
pub mod runner;
pub mod schedule;
#[cfg(test)]
mod sim;
pub mod state;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use tokio::sync::{mpsc, oneshot, watch};
use zimage_contract::{self as api, BackendView, JobAccepted, JobEvent, JobStatus, JobView, Readiness};

use self::engine::{Engine, Msg, Setup};
use self::journal::{Entry, Journal};
use self::runner::{JournalWriter, Runner};
use crate::access::identity::{ClientId, Requester};
use crate::comfy::{ComfyEvent, client::ComfyClient, workflow::Workflow};
use crate::history::{History, HistoryRecord};
use crate::images::{ImageError, ImageStore, PngPieces, Variant};
use crate::job_id::JobId;
use crate::pictures::PictureStore;
use crate::relay::{EventLog, Sequenced};
use crate::validation::JobSpec;

/// Timing knobs and limits of the job machinery; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct JobTuning {
    /// Unfinished jobs held at most (waiting, at ComfyUI, or being saved); further submissions get
    /// [`JobError::QueueFull`]. 0 for no cap. One client may hold [`engine::per_client_share`] of them.
    pub max_unfinished: usize,
    /// How often unfinished jobs are looked at. A job ends at most this long after its deadline.
    pub watchdog_interval: Duration,
    /// A job at ComfyUI that heard nothing for this long is checked against ComfyUI's records.
    pub silence: Duration,
    /// How long a finished job stays in memory (its image and record stay in the history, a failed
    /// or cancelled job's ending in the journal for [`journal::ENDINGS_KEPT`]).
    pub retention: Duration,
    /// How many times a finished image is fetched before the job fails.
    pub fetch_attempts: u32,
    /// The longest a job may hold a backend (from its hand-over to the verdict), and the longest a job
    /// waits in line while no backend can take a job (none connected and ready). Generous: the first
    /// job after a start loads the models from disk.
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
    /// The client holds its whole share of the line already.
    #[error("this client has {share} unfinished jobs already")]
    ShareFull { share: usize, retry_after: Duration },
    #[error("the job belongs to another client")]
    NotYours,
    #[error("the studio is shutting down")]
    ShuttingDown,
    /// A LoRA no backend lists (`field` names it in the request, e.g. `loras[0].name`).
    #[error("no backend has the LoRA {name}")]
    UnknownLora { field: &'static str, name: String },
    /// The job (or the cancel) could not be written down, so it was not accepted.
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
    /// The LoRA files it listed last ([`crate::readiness::LoraListing`]).
    pub loras: watch::Receiver<crate::readiness::LoraListing>,
}

/// The handle everything else holds: it sends the engine messages and awaits the answers. Cheap to
/// clone.
#[derive(Clone)]
pub struct Jobs {
    inbox: mpsc::UnboundedSender<Msg>,
    history: History,
    images: ImageStore,
    journal: Journal,
    first_event_id: u64,
    /// Set once the gateway begins to shut down: every event stream ends with
    /// [`StreamItem::Restarting`] (the engine is told too, and sends nothing more to ComfyUI).
    stopping: Arc<watch::Sender<bool>>,
    /// How many jobs are being saved; the shutdown waits for none.
    saving: watch::Receiver<usize>,
}

/// The engine's task, to be run with [`EngineTask::run`].
pub struct EngineTask {
    engine: Engine,
    inbox: mpsc::UnboundedReceiver<Msg>,
    sender: mpsc::UnboundedSender<Msg>,
    runner: Runner,
    readiness: Vec<(
        watch::Receiver<Readiness>,
        watch::Receiver<crate::readiness::LoraListing>,
    )>,
    watchdog_interval: Duration,
    saving: watch::Sender<usize>,
}

impl Jobs {
    /// Builds the engine over `backends` (at least one) and takes back the journal at `journal_dir`.
    /// Spawn [`EngineTask::run`] to start it.
    #[expect(
        clippy::too_many_arguments,
        reason = "every store and knob the engine is built over, once"
    )]
    pub async fn open(
        backends: Vec<Backend>,
        workflow: Arc<Workflow>,
        images: ImageStore,
        history: History,
        pictures: PictureStore,
        journal_dir: &std::path::Path,
        previews: bool,
        tuning: JobTuning,
    ) -> std::io::Result<(Jobs, EngineTask)> {
        let (journal, entries) = Journal::open(journal_dir, engine::now_ms()).await?;
        // Milliseconds since the epoch, times a thousand events per job: above every earlier run's ids
        // and still exact in a JavaScript number.
        let first_event_id = engine::now_ms().saturating_mul(1000).saturating_add(1);
        let mut unfinished = Vec::new();
        for entry in entries {
            if entry.ended.is_none() && history.get(entry.id).is_some() {
                // Saved just before the crash that kept its journal entry.
                let _ = journal.remove(entry.id).await;
                continue;
            }
            unfinished.push(entry);
        }
        let taken_back = unfinished.iter().filter(|entry| entry.ended.is_none()).count();
        if taken_back > 0 {
            tracing::info!(count = taken_back, "unfinished jobs taken back from the journal");
        }
        let setup = Setup {
            backends: backends.iter().map(|backend| backend.name.clone()).collect(),
            sampler_node: workflow.sampler_node().to_owned(),
            output_node: workflow.output_node().to_owned(),
            tuning,
            first_event_id,
        };
        let engine = Engine::new(setup, tokio::time::Instant::now().into_std(), unfinished);
        let (sender, inbox) = mpsc::unbounded_channel();
        let (saving_sender, saving) = watch::channel(0);
        let journal_writer = JournalWriter::spawn(journal.clone(), sender.clone())?;
        let runner = Runner {
            backends: backends.iter().map(|backend| backend.comfy.clone()).collect(),
            workflow,
            images: images.clone(),
            history: history.clone(),
            journal: journal_writer,
            pictures,
            inbox: sender.clone(),
            previews,
            fetch_attempts: tuning.fetch_attempts,
        };
        let jobs = Jobs {
            inbox: sender.clone(),
            history,
            images,
            journal,
            first_event_id,
            stopping: Arc::new(watch::channel(false).0),
            saving,
        };
        let task = EngineTask {
            engine,
            inbox,
            sender,
            runner,
            readiness: backends
                .into_iter()
                .map(|backend| (backend.readiness, backend.loras))
                .collect(),
            watchdog_interval: tuning.watchdog_interval,
            saving: saving_sender,
        };
        Ok((jobs, task))
    }

    /// Asks the engine and awaits its answer; `None` once the engine has stopped.
    async fn ask<T>(&self, message: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.inbox.send(message(reply)).ok()?;
        answer.await.ok()
    }

    /// Every backend as people see it: its state, device, jobs done and median time per image.
    pub async fn backends(&self) -> Vec<BackendView> {
        self.ask(|reply| Msg::Backends { reply })
            .await
            .unwrap_or_default()
    }

    /// Accepts a checked job into the waiting line. Returns once the job is journaled, whatever
    /// happens to the caller meanwhile: the engine goes on with it either way.
    pub async fn submit(&self, spec: JobSpec, owner: Option<ClientId>) -> Result<JobAccepted, JobError> {
        if *self.stopping.borrow() {
            return Err(JobError::ShuttingDown);
        }
        let id = JobId::new();
        self.ask(|reply| Msg::Submit {
            id,
            spec,
            owner,
            reply,
        })
        .await
        .unwrap_or(Err(JobError::ShuttingDown))
    }

    /// The job as the API shows it: from the engine, or once it has left memory, from the history
    /// (completed) or the journal (failed or cancelled, for a while).
    pub async fn view(&self, id: JobId) -> Option<JobView> {
        if let Some(view) = self.ask(|reply| Msg::View { id, reply }).await.flatten() {
            return Some(view);
        }
        if let Some(record) = self.history.get(id) {
            return Some(completed_view(&record));
        }
        let entry = self.journal.read(id).await?;
        entry.ended.is_some().then(|| ended_view(&entry))
    }

    /// The latest live preview of a running job.
    pub async fn preview(&self, id: JobId) -> Option<(Bytes, &'static str)> {
        self.ask(|reply| Msg::Preview { id, reply }).await.flatten()
    }

    /// The job's events after `last_seen` (all when `None`, or when `last_seen` is beyond the log, as
    /// an id from before a restart may be), then live ones, ending with the terminal event, or with
    /// [`StreamItem::Restarting`] when the gateway shuts down first. `None` when the job is unknown.
    pub async fn events(
        &self,
        id: JobId,
        last_seen: Option<u64>,
    ) -> Option<impl Stream<Item = StreamItem> + Send + 'static> {
        let subscription = match self
            .ask(|reply| Msg::Watch { id, last_seen, reply })
            .await
            .flatten()
        {
            Some(subscription) => subscription,
            None => {
                let terminal = match self.history.get(id) {
                    Some(record) => state::completed_event(&record),
                    None => ended_event(
                        &self
                            .journal
                            .read(id)
                            .await
                            .filter(|entry| entry.ended.is_some())?,
                    ),
                };
                EventLog::finished(terminal, self.first_event_id).subscribe(last_seen)
            }
        };
        let inbox = self.inbox.clone();
        let events = subscription.into_stream(move |after| {
            let (reply, answer) = oneshot::channel();
            let _ = inbox.send(Msg::Catchup { id, after, reply });
            async move { answer.await.unwrap_or_default() }
        });
        let mut stopping = self.stopping.subscribe();
        let stop = async move {
            // The sender lives as long as the handle, so the wait ends only by the shutdown.
            let _ = stopping.wait_for(|stopping| *stopping).await;
        };
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

    /// Cancels a job for `requester`, who must be allowed to change it. A waiting job leaves the line
    /// at once; one at ComfyUI is dropped from its queue or interrupted. Once this answers `Ok` the
    /// cancel is on disk and final: the job ends `cancelled` whatever ComfyUI does.
    pub async fn cancel(&self, id: JobId, requester: Requester) -> Result<JobView, JobError> {
        match self
            .ask(|reply| Msg::Cancel { id, requester, reply })
            .await
            .unwrap_or(Err(JobError::ShuttingDown))
        {
            // Not in memory: it ended a while ago, or never was.
            Err(JobError::NotFound) => {
                self.authorize(id, requester).await?;
                Err(JobError::AlreadyEnded)
            }
            answer => answer,
        }
    }

    /// Checks that `requester` may cancel the job or delete its image: its own jobs, or any job once
    /// signed in. The owner is known while the job is in memory and, afterwards, from the history.
    pub async fn authorize(&self, id: JobId, requester: Requester) -> Result<(), JobError> {
        let owner = match self.ask(|reply| Msg::Owner { id, reply }).await.flatten() {
            Some(owner) => owner,
            None => match self.history.get(id) {
                Some(record) => record.owner,
                None => {
                    self.journal
                        .read(id)
                        .await
                        .filter(|entry| entry.ended.is_some())
                        .ok_or(JobError::NotFound)?
                        .owner
                }
            },
        };
        if requester.may_change(owner) {
            Ok(())
        } else {
            Err(JobError::NotYours)
        }
    }

    /// A stored image (or its thumbnail, made when first asked for). `None` when there is none.
    pub async fn image(&self, id: JobId, variant: Variant) -> Result<Option<Bytes>, ImageError> {
        self.images.read(id, variant).await
    }

    /// A stored image as pieces ([`ImageStore::read_full`]): the one saved last is not copied into
    /// one buffer to be sent.
    pub async fn image_pieces(&self, id: JobId) -> Result<Option<PngPieces>, ImageError> {
        self.images.read_full(id).await
    }

    /// Begins the shutdown: no new jobs are accepted, nothing more is sent to ComfyUI, and every open
    /// event stream ends with [`StreamItem::Restarting`]. Unfinished jobs stay in the journal and carry
    /// on after the restart; ComfyUI finishes the one it holds meanwhile.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
        let _ = self.inbox.send(Msg::Stop);
    }

    /// Resolves once [`Jobs::begin_shutdown`] has been called.
    pub async fn shutdown_begun(&self) {
        let mut stopping = self.stopping.subscribe();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }

    /// Waits until no finished image is half-way to the disk; the server calls it when shutting down.
    /// (A save cut short by the exit is no loss: the job is still journaled and saved after the
    /// restart, from ComfyUI's records.)
    pub async fn flush(&self) {
        let mut saving = self.saving.clone();
        let _ = saving.wait_for(|count| *count == 0).await;
    }

    /// How many finished images are being saved right now.
    pub fn saves_under_way(&self) -> usize {
        *self.saving.borrow()
    }
}

impl EngineTask {
    /// The actor: follows the backends' events (each tagged with its backend's index), their
    /// readiness and the clock, and every message of the handles, one at a time, until every sender
    /// is gone.
    pub async fn run(self, mut events: mpsc::Receiver<(usize, ComfyEvent)>) {
        let EngineTask {
            mut engine,
            mut inbox,
            sender,
            runner,
            readiness,
            watchdog_interval,
            saving,
        } = self;
        let mut feeders = Vec::new();
        // The backends' events join the one channel.
        let forward = sender.clone();
        feeders.push(tokio::spawn(async move {
            while let Some((backend, event)) = events.recv().await {
                if forward.send(Msg::Comfy { backend, event }).is_err() {
                    return;
                }
            }
        }));
        // So does each backend's readiness, from its current value on, each time after its LoRA list
        // (which the prober publishes first): a backend is never ready before its list is known.
        for (backend, (mut readiness, mut loras)) in readiness.into_iter().enumerate() {
            let forward = sender.clone();
            feeders.push(tokio::spawn(async move {
                loop {
                    let listed = loras.borrow_and_update().clone();
                    let current = readiness.borrow_and_update().clone();
                    let sent = forward.send(Msg::Loras {
                        backend,
                        loras: listed,
                    });
                    if sent.is_err()
                        || forward
                            .send(Msg::Readiness {
                                backend,
                                readiness: current,
                            })
                            .is_err()
                    {
                        return;
                    }
                    let changed = tokio::select! {
                        changed = readiness.changed() => changed,
                        changed = loras.changed() => changed,
                    };
                    if changed.is_err() {
                        return;
                    }
                }
            }));
        }
        let forward = sender.clone();
        feeders.push(tokio::spawn(async move {
            let mut watchdog = tokio::time::interval(watchdog_interval);
            watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                watchdog.tick().await;
                if forward.send(Msg::Tick).is_err() {
                    return;
                }
            }
        }));
        // The handles and the runner hold senders too; the loop ends when the gateway drops the task.
        drop(sender);
        while let Some(message) = inbox.recv().await {
            engine.handle(now(), message);
            for command in engine.take_commands() {
                runner.start(command);
            }
            saving.send_if_modified(|count| {
                let now_saving = engine.saves_under_way();
                let changed = *count != now_saving;
                *count = now_saving;
                changed
            });
        }
        for feeder in feeders {
            feeder.abort();
        }
    }
}

/// The engine's clock: tokio's, so tests with a paused clock move it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
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

/// The API view of a failed or cancelled job known only from the journal.
fn ended_view(entry: &Entry) -> JobView {
    let ending = entry.ended.as_ref();
    JobView {
        id: entry.id.to_string(),
        prompt: entry.spec.prompt.as_str().to_owned(),
        seed: entry.spec.seed.get(),
        width: entry.spec.width.get(),
        height: entry.spec.height.get(),
        status: ending.map_or(JobStatus::Cancelled, |ending| ending.status),
        queue_position: None,
        step: 0,
        total_steps: api::STEPS,
        timings: api::Timings {
            queued_at: entry.id.created_at_ms(),
            started_at: None,
            finished_at: ending.map(|ending| ending.at_ms),
        },
        image_url: None,
        thumbnail_url: None,
        preview_url: None,
        error: ending.and_then(|ending| ending.failure.clone()),
        backend: entry.at.clone(),
    }
}

/// The terminal event of a failed or cancelled job known only from the journal.
fn ended_event(entry: &Entry) -> JobEvent {
    match entry.ended.as_ref().and_then(|ending| ending.failure.clone()) {
        Some(failure) => JobEvent::Failed {
            code: failure.code,
            message: failure.message,
        },
        None => JobEvent::Cancelled {},
    }
}
