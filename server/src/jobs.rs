//! Jobs: a generation request from submission to its end. Submits the filled workflow to ComfyUI,
//! follows it through the socket's events, reconciles it by polling whenever events may have been
//! lost, stores the finished image and its history record, and keeps the job's event log for watchers.
//!
//! ComfyUI's WebSocket is a hint, not the truth: it drops messages while disconnected and can stall
//! without closing. So every unfinished job that has been silent for a while is checked against
//! ComfyUI's own records, and a job ComfyUI no longer knows fails clearly instead of hanging.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use app::api::{self, JobAccepted, JobEvent, JobFailure, JobStatus, JobView, Timings};
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::{Notify, mpsc, watch};

use crate::access::identity::{ClientId, Requester};
use crate::comfy::{self, ComfyEvent, OutputImage, RemoteState, client::ComfyClient, workflow::Workflow};
use crate::history::{History, HistoryRecord};
use crate::images::{ImageError, ImageStore, Variant, png_size};
use crate::job_id::JobId;
use crate::relay::{EventLog, Sequenced};
use crate::validation::GenerationParams;

/// How long a client refused by the queue cap is asked to wait: about one image on the target card.
const QUEUE_FULL_RETRY: Duration = Duration::from_secs(20);

/// How long a live preview waits before it is announced (see [`Jobs::announce_preview_later`]): a
/// fraction of a sampling step (about 400 ms on the target card), longer than a progress event takes to
/// reach a thousand watchers on one core.
const PREVIEW_ANNOUNCE_DELAY: Duration = Duration::from_millis(25);

/// How long a submission waits for the socket's first connection after the start.
const FIRST_CONNECTION_PATIENCE: Duration = Duration::from_secs(5);

/// The largest image the gateway accepts from ComfyUI's `/view`: a 1024x1024 PNG is a few MiB.
const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;

/// Timing knobs and limits of the job machinery; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct JobTuning {
    /// Unfinished jobs (queued or running) held at most; further submissions get
    /// [`JobError::QueueFull`]. 0 for no cap.
    pub max_unfinished: usize,
    /// How often unfinished jobs are looked at.
    pub watchdog_interval: Duration,
    /// An unfinished job that heard nothing for this long is checked against ComfyUI's records.
    pub silence: Duration,
    /// How long a finished job stays in memory (its image and record stay in the history).
    pub retention: Duration,
    /// How many times a finished image is fetched before the job fails.
    pub fetch_attempts: u32,
}

impl Default for JobTuning {
    fn default() -> JobTuning {
        JobTuning {
            max_unfinished: 0,
            watchdog_interval: Duration::from_secs(2),
            silence: Duration::from_secs(10),
            retention: Duration::from_secs(3600),
            fetch_attempts: 3,
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
    #[error("{unfinished} jobs are unfinished already")]
    QueueFull {
        unfinished: usize,
        retry_after: Duration,
    },
    #[error("the job belongs to another client")]
    NotYours,
    #[error(transparent)]
    Backend(#[from] comfy::Error),
}

/// Everything the jobs need. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<HashMap<JobId, Job>>,
    comfy: ComfyClient,
    workflow: Arc<Workflow>,
    images: ImageStore,
    history: History,
    previews: bool,
    tuning: JobTuning,
    queue_changed: Notify,
    /// How many finished images are being written to disk; every change wakes those who wait for one
    /// (a thumbnail request, the shutdown).
    saves: watch::Sender<usize>,
    /// The client id of the socket connection last seen coming up (its `Connected` event): prompts
    /// are submitted under it. `None` before the first connection.
    comfy_client_id: watch::Sender<Option<String>>,
}

/// One job the gateway is following (or followed recently).
struct Job {
    /// The browser that started it: only it (or someone signed in) may cancel it or delete its image.
    owner: Option<ClientId>,
    prompt: String,
    seed: u64,
    width: u32,
    height: u32,
    status: JobStatus,
    queue_position: Option<u32>,
    step: u32,
    timings: Timings,
    error: Option<JobFailure>,
    log: EventLog,
    preview: Option<(Bytes, &'static str)>,
    previews_sent: u32,
    outputs: Vec<OutputImage>,
    /// ComfyUI accepted the prompt.
    submitted: bool,
    /// A person asked to cancel; an interrupt is on its way.
    cancel_requested: bool,
    /// The image is being fetched and stored.
    finishing: bool,
    /// A poll of ComfyUI's records is under way.
    reconciling: bool,
    /// The finished PNG while it is being written: served from memory until it is on disk (and for as
    /// long as the job is kept when writing failed).
    unsaved: Option<Bytes>,
    /// The finished image and its record are being written.
    saving: bool,
    last_heard: Instant,
    ended: Option<Instant>,
}

impl Job {
    fn view(&self, id: JobId) -> JobView {
        let id = id.to_string();
        let completed = self.status == JobStatus::Completed;
        JobView {
            image_url: completed.then(|| api::paths::image(&id)),
            thumbnail_url: completed.then(|| api::paths::thumbnail(&id)),
            preview_url: (self.preview.is_some() && self.status == JobStatus::Running)
                .then(|| preview_url(&id, self.previews_sent)),
            id,
            prompt: self.prompt.clone(),
            seed: self.seed,
            width: self.width,
            height: self.height,
            status: self.status,
            queue_position: self.queue_position,
            step: self.step,
            total_steps: api::STEPS,
            timings: self.timings,
            error: self.error.clone(),
        }
    }

    fn is_ended(&self) -> bool {
        self.status.is_terminal()
    }

    fn start_running(&mut self) {
        if self.status == JobStatus::Queued {
            self.status = JobStatus::Running;
            self.queue_position = None;
            self.timings.started_at = Some(now_ms());
            self.log.push(JobEvent::Running {});
        }
    }

    fn end(&mut self, status: JobStatus, event: JobEvent) {
        if self.is_ended() {
            return;
        }
        self.status = status;
        self.queue_position = None;
        self.timings.finished_at = Some(now_ms());
        self.ended = Some(Instant::now());
        if let JobEvent::Failed { code, message } = &event {
            self.error = Some(JobFailure {
                code: code.clone(),
                message: message.clone(),
            });
        }
        self.log.push(event);
    }

    fn fail(&mut self, code: &str, message: impl Into<String>) {
        let message = message.into();
        self.end(
            JobStatus::Failed,
            JobEvent::Failed {
                code: code.to_owned(),
                message,
            },
        );
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
    /// Builds the job machinery. Call [`Jobs::run`] to start following ComfyUI.
    pub fn new(
        comfy: ComfyClient,
        workflow: Arc<Workflow>,
        images: ImageStore,
        history: History,
        previews: bool,
        tuning: JobTuning,
    ) -> Jobs {
        Jobs {
            inner: Arc::new(Inner {
                registry: Mutex::new(HashMap::new()),
                comfy,
                workflow,
                images,
                history,
                previews,
                tuning,
                queue_changed: Notify::new(),
                saves: watch::channel(0).0,
                comfy_client_id: watch::channel(None).0,
            }),
        }
    }

    /// Follows ComfyUI's events, watches for silent jobs and keeps queue positions fresh, until the
    /// event channel closes.
    pub async fn run(self, mut events: mpsc::Receiver<ComfyEvent>) {
        let mut watchdog = tokio::time::interval(self.inner.tuning.watchdog_interval);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let positions = tokio::spawn(self.clone().keep_queue_positions());
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.apply(event),
                    None => break,
                },
                _ = watchdog.tick() => self.watch(),
            }
        }
        positions.abort();
    }

    /// Validated parameters become a queued ComfyUI prompt.
    pub async fn submit(
        &self,
        params: GenerationParams,
        owner: Option<ClientId>,
    ) -> Result<JobAccepted, JobError> {
        let id = JobId::new();
        let (seed, width, height) = (params.seed.get(), params.width.get(), params.height.get());
        let graph = self
            .inner
            .workflow
            .fill(params.prompt.as_str(), seed, width, height);
        {
            let mut registry = self.registry();
            // Counted and inserted under one lock, so concurrent submissions cannot overshoot the cap.
            let unfinished = registry.values().filter(|job| !job.is_ended()).count();
            let cap = self.inner.tuning.max_unfinished;
            if cap > 0 && unfinished >= cap {
                tracing::info!(unfinished, "queue full; job refused");
                return Err(JobError::QueueFull {
                    unfinished,
                    retry_after: QUEUE_FULL_RETRY,
                });
            }
            registry.insert(
                id,
                Job {
                    owner,
                    prompt: params.prompt.as_str().to_owned(),
                    seed,
                    width,
                    height,
                    status: JobStatus::Queued,
                    queue_position: None,
                    step: 0,
                    timings: Timings {
                        queued_at: id.created_at_ms(),
                        started_at: None,
                        finished_at: None,
                    },
                    error: None,
                    log: EventLog::new(),
                    preview: None,
                    previews_sent: 0,
                    outputs: Vec::new(),
                    submitted: false,
                    cancel_requested: false,
                    finishing: false,
                    reconciling: false,
                    unsaved: None,
                    saving: false,
                    last_heard: Instant::now(),
                    ended: None,
                },
            );
        }
        let submitted = match self.comfy_client_id().await {
            Some(client_id) => {
                self.inner
                    .comfy
                    .submit(&id.to_string(), &client_id, graph, self.inner.previews)
                    .await
            }
            None => Err(comfy::Error::Unreachable),
        };
        if let Err(error) = submitted {
            self.registry().remove(&id);
            tracing::warn!(%id, %error, "ComfyUI refused the job");
            return Err(error.into());
        }
        let cancel_now = {
            let mut registry = self.registry();
            let ahead = registry
                .values()
                .filter(|job| job.submitted && !job.is_ended())
                .count();
            match registry.get_mut(&id) {
                Some(job) => {
                    job.submitted = true;
                    if job.status == JobStatus::Queued {
                        let position = u32::try_from(ahead).unwrap_or(u32::MAX).saturating_add(1);
                        job.queue_position = Some(position);
                        job.log.push(JobEvent::Queued { position });
                    }
                    job.cancel_requested
                }
                None => false,
            }
        };
        tracing::info!(%id, seed, width, height, "job queued");
        self.inner.queue_changed.notify_one();
        if cancel_now {
            let _ = self.cancel_unchecked(id).await;
        }
        Ok(JobAccepted {
            id: id.to_string(),
            seed,
            width,
            height,
            status: JobStatus::Queued,
        })
    }

    /// The job as the API shows it, from memory or, after a restart, from the history.
    pub fn view(&self, id: JobId) -> Option<JobView> {
        if let Some(job) = self.registry().get(&id) {
            return Some(job.view(id));
        }
        self.inner.history.get(id).map(|record| completed_view(&record))
    }

    /// The latest live preview of a running job.
    pub fn preview(&self, id: JobId) -> Option<(Bytes, &'static str)> {
        self.registry().get(&id).and_then(|job| job.preview.clone())
    }

    /// The job's events after `last_seen` (all when `None`), then live ones, ending with the terminal
    /// event. `None` when the job is unknown.
    pub fn events(
        &self,
        id: JobId,
        last_seen: Option<u64>,
    ) -> Option<impl Stream<Item = Arc<Sequenced>> + Send + 'static> {
        let subscription = match self.registry().get(&id) {
            Some(job) => job.log.subscribe(last_seen),
            None => {
                let record = self.inner.history.get(id)?;
                EventLog::finished(completed_event(&record)).subscribe(last_seen)
            }
        };
        let jobs = self.clone();
        Some(subscription.into_stream(move |after| {
            jobs.registry()
                .get(&id)
                .map(|job| job.log.after(after))
                .unwrap_or_default()
        }))
    }

    /// Cancels a job for `requester`, who must be allowed to change it (see [`Jobs::authorize`]).
    pub async fn cancel(&self, id: JobId, requester: Requester) -> Result<JobView, JobError> {
        self.authorize(id, requester)?;
        self.cancel_unchecked(id).await
    }

    /// Checks that `requester` may cancel the job or delete its image: its own jobs, or any job once
    /// signed in. The owner is known while the job is in memory and, afterwards, from the history.
    pub fn authorize(&self, id: JobId, requester: Requester) -> Result<(), JobError> {
        let owner = match self.registry().get(&id) {
            Some(job) => job.owner,
            None => self.inner.history.get(id).ok_or(JobError::NotFound)?.owner,
        };
        if requester.may_change(owner) {
            Ok(())
        } else {
            Err(JobError::NotYours)
        }
    }

    /// Cancels a job: a pending one leaves ComfyUI's queue, a running one is interrupted by its
    /// prompt id only (never a global interrupt, which would hit someone else's job).
    async fn cancel_unchecked(&self, id: JobId) -> Result<JobView, JobError> {
        let (status, submitted) = {
            let mut registry = self.registry();
            let job = registry.get_mut(&id).ok_or(JobError::NotFound)?;
            if job.is_ended() {
                return Err(JobError::AlreadyEnded);
            }
            job.cancel_requested = true;
            (job.status, job.submitted)
        };
        let prompt_id = id.to_string();
        if submitted {
            if status == JobStatus::Queued {
                self.inner.comfy.delete_pending(&prompt_id).await?;
            }
            // Whatever we believed, ComfyUI's records decide: the job may have started meanwhile.
            match self.inner.comfy.remote_state(&prompt_id).await? {
                RemoteState::Pending | RemoteState::Unknown | RemoteState::Cancelled => {
                    self.with_job(id, |job| job.end(JobStatus::Cancelled, JobEvent::Cancelled {}));
                }
                RemoteState::Running => self.inner.comfy.interrupt(&prompt_id).await?,
                // It ended on its own first; the events (or the watchdog) will say how.
                RemoteState::Completed { .. } | RemoteState::Failed { .. } => {}
            }
            self.inner.queue_changed.notify_one();
        }
        tracing::info!(%id, "job cancel requested");
        self.view(id).ok_or(JobError::NotFound)
    }

    /// The id to submit under; right after the start the socket may not be connected yet, so this
    /// waits a little for its first connection. `None` when none came.
    async fn comfy_client_id(&self) -> Option<String> {
        let mut ids = self.inner.comfy_client_id.subscribe();
        let first = tokio::time::timeout(FIRST_CONNECTION_PATIENCE, ids.wait_for(Option::is_some)).await;
        match first {
            Ok(Ok(id)) => id.clone(),
            _ => None,
        }
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<JobId, Job>> {
        // Every update leaves the map consistent, so a poisoned lock's data is still good.
        self.inner.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_job<T>(&self, id: JobId, change: impl FnOnce(&mut Job) -> T) -> Option<T> {
        self.registry().get_mut(&id).map(change)
    }

    /// Applies one socket event.
    fn apply(&self, event: ComfyEvent) {
        let prompt_id = match &event {
            ComfyEvent::Connected { client_id } => {
                tracing::info!("ComfyUI socket connected; checking unfinished jobs");
                self.inner.comfy_client_id.send_replace(Some(client_id.clone()));
                self.reconcile_all();
                return;
            }
            ComfyEvent::Disconnected => {
                tracing::warn!("ComfyUI socket lost");
                return;
            }
            ComfyEvent::QueueRemaining(_) => {
                self.inner.queue_changed.notify_one();
                return;
            }
            ComfyEvent::Started { prompt_id }
            | ComfyEvent::NodeStarted { prompt_id, .. }
            | ComfyEvent::Progress { prompt_id, .. }
            | ComfyEvent::Preview { prompt_id, .. }
            | ComfyEvent::Output { prompt_id, .. }
            | ComfyEvent::Succeeded { prompt_id }
            | ComfyEvent::Failed { prompt_id, .. }
            | ComfyEvent::Interrupted { prompt_id }
            | ComfyEvent::Finished { prompt_id } => prompt_id,
        };
        // Prompts the gateway did not submit (someone using ComfyUI directly) are none of our business.
        let Ok(id) = prompt_id.parse::<JobId>() else {
            return;
        };
        let sampler = self.inner.workflow.sampler_node();
        let output = self.inner.workflow.output_node();
        let mut finish = false;
        let mut reconcile = false;
        let mut announce_preview = None;
        {
            let mut registry = self.registry();
            let Some(job) = registry.get_mut(&id) else { return };
            job.last_heard = Instant::now();
            if job.is_ended() {
                return;
            }
            match event {
                ComfyEvent::Started { .. } | ComfyEvent::NodeStarted { .. } => job.start_running(),
                ComfyEvent::Progress { node, value, max, .. } if node == sampler => {
                    job.start_running();
                    if value > job.step {
                        job.step = value.min(max);
                        job.log.push(JobEvent::Progress {
                            step: job.step,
                            total: max,
                        });
                    }
                }
                ComfyEvent::Preview { image, mime, .. } if job.status == JobStatus::Running => {
                    job.preview = Some((image, mime));
                    job.previews_sent += 1;
                    announce_preview = Some(job.previews_sent);
                }
                ComfyEvent::Output { node, images, .. } if node == output => job.outputs = images,
                ComfyEvent::Succeeded { .. } => finish = true,
                ComfyEvent::Failed { failure, .. } => {
                    tracing::warn!(%id, node = %failure.node_type, error = %failure.exception_message, "ComfyUI failed the job");
                    job.fail(failure.code(), failure.human_message());
                }
                ComfyEvent::Interrupted { .. } => {
                    if !job.cancel_requested {
                        tracing::info!(%id, "job interrupted from outside the studio");
                    }
                    job.end(JobStatus::Cancelled, JobEvent::Cancelled {});
                }
                // `executing {node: null}` without an earlier verdict: ask ComfyUI what happened.
                ComfyEvent::Finished { .. } => reconcile = !job.finishing,
                _ => {}
            }
        }
        if let Some(serial) = announce_preview {
            self.announce_preview_later(id, serial);
        }
        if finish {
            self.finish(id);
        } else if reconcile {
            self.reconcile(id);
        }
        // Queue changes need no nudge here: ComfyUI sends `status` on each of them.
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
            jobs.with_job(id, |job| {
                if job.status == JobStatus::Running && job.previews_sent == serial {
                    let url = preview_url(&id.to_string(), serial);
                    job.log.push(JobEvent::Preview { url });
                }
            });
        });
    }

    /// Fetches the image of a job ComfyUI finished and completes the job, then writes the image and its
    /// record to disk.
    fn finish(&self, id: JobId) {
        let outputs = {
            let mut registry = self.registry();
            let Some(job) = registry.get_mut(&id) else { return };
            if job.finishing || job.is_ended() {
                return;
            }
            job.finishing = true;
            job.outputs.clone()
        };
        let jobs = self.clone();
        tokio::spawn(async move {
            let outputs = if outputs.is_empty() {
                // The `executed` message was lost: ComfyUI's records name the file.
                match jobs.inner.comfy.remote_state(&id.to_string()).await {
                    Ok(RemoteState::Completed { images }) => images,
                    _ => Vec::new(),
                }
            } else {
                outputs
            };
            let fetched = jobs.fetch_image(id, outputs).await;
            let history = jobs.inner.history.clone();
            let announced = jobs.with_job(id, |job| match fetched {
                Ok((png, (width, height))) => {
                    if (width, height) != (job.width, job.height) {
                        tracing::warn!(%id, width, height, "ComfyUI made an image of another size than asked");
                    }
                    let finished_at = now_ms();
                    let record = HistoryRecord {
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
                    };
                    // The image is announced as soon as it can be served (from memory), and written to
                    // disk right behind: the disk's flushes and the thumbnail cost tens of milliseconds
                    // that nobody has to wait for. The history shows it from now on, as the gallery
                    // reloads on `completed`.
                    history.remember(record.clone());
                    job.unsaved = Some(png.clone());
                    job.saving = true;
                    jobs.inner.saves.send_modify(|saving| *saving += 1);
                    job.timings = record.timings;
                    job.ended = Some(Instant::now());
                    job.status = JobStatus::Completed;
                    job.queue_position = None;
                    job.step = job.step.max(api::STEPS);
                    job.log.push(completed_event(&record));
                    tracing::info!(%id, elapsed_ms = record.elapsed_ms, "job completed");
                    Some((record, png))
                }
                Err(message) => {
                    tracing::warn!(%id, %message, "cannot keep the finished image");
                    job.finishing = false;
                    job.fail("image_unavailable", message);
                    None
                }
            });
            if let Some(Some((record, png))) = announced {
                // Let the watchers' streams carry `completed` out before the writes begin.
                tokio::task::yield_now().await;
                jobs.save(id, png, record).await;
            }
        });
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

    /// Writes an announced image and then its history record (the thumbnail is made when first asked
    /// for). When that fails the record is taken back (a restart would not find the image) and the
    /// image stays in memory for as long as the job is kept.
    async fn save(&self, id: JobId, png: Bytes, record: HistoryRecord) {
        let written = match self.inner.images.store(id, png).await {
            Ok(_) => self
                .inner
                .history
                .add(record)
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let written = match written {
            Ok(()) => true,
            Err(message) => {
                tracing::error!(%id, %message, "the finished image could not be written to disk");
                if let Err(error) = self.inner.history.remove(id).await {
                    tracing::error!(%id, %error, "cannot take back the history record");
                }
                false
            }
        };
        self.with_job(id, |job| {
            job.saving = false;
            if written {
                job.unsaved = None;
            }
        });
        self.inner
            .saves
            .send_modify(|saving| *saving = saving.saturating_sub(1));
    }

    /// A stored image, or a finished one that is still being written: the PNG from memory, the
    /// thumbnail once the PNG is on disk (made then if it is asked for the first time). `None` when there
    /// is no such image.
    pub async fn image(&self, id: JobId, variant: Variant) -> Result<Option<Bytes>, ImageError> {
        match variant {
            Variant::Full => {
                // Set before the job was announced and cleared only once the file is written, so
                // when it is gone the disk has the image.
                if let Some(png) = self.registry().get(&id).and_then(|job| job.unsaved.clone()) {
                    return Ok(Some(png));
                }
            }
            Variant::Thumbnail => self.wait_saved(id).await,
        }
        self.inner.images.read(id, variant).await
    }

    /// Before an image is deleted: waits until it is written (so the write cannot bring it back) and
    /// drops any copy held in memory.
    pub async fn release_image(&self, id: JobId) {
        self.wait_saved(id).await;
        self.with_job(id, |job| job.unsaved = None);
    }

    /// Waits while the job's image is being written.
    async fn wait_saved(&self, id: JobId) {
        // Subscribed before looking, so a save that ends in between still wakes us.
        let mut changes = self.inner.saves.subscribe();
        while self.registry().get(&id).is_some_and(|job| job.saving) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until every announced image is on disk; the server calls it when shutting down.
    pub async fn flush(&self) {
        let mut changes = self.inner.saves.subscribe();
        let _ = changes.wait_for(|saving| *saving == 0).await;
    }

    /// Checks every unfinished job against ComfyUI's records.
    fn reconcile_all(&self) {
        let ids: Vec<JobId> = self
            .registry()
            .iter()
            .filter(|(_, job)| job.submitted && !job.is_ended() && !job.finishing)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.reconcile(id);
        }
    }

    /// Asks ComfyUI what became of a job and brings it up to date.
    fn reconcile(&self, id: JobId) {
        let claimed = self.with_job(id, |job| {
            let claim = job.submitted && !job.is_ended() && !job.finishing && !job.reconciling;
            job.reconciling |= claim;
            claim
        });
        if claimed != Some(true) {
            return;
        }
        let jobs = self.clone();
        tokio::spawn(async move {
            let state = jobs.inner.comfy.remote_state(&id.to_string()).await;
            let mut finish = false;
            jobs.with_job(id, |job| {
                job.reconciling = false;
                let state = match state {
                    Ok(state) => state,
                    Err(error) => {
                        tracing::debug!(%id, %error, "cannot check the job with ComfyUI yet");
                        return;
                    }
                };
                job.last_heard = Instant::now();
                match state {
                    RemoteState::Pending => {}
                    RemoteState::Running => job.start_running(),
                    RemoteState::Completed { images } => {
                        job.outputs = images;
                        finish = true;
                    }
                    RemoteState::Failed {
                        failure: Some(failure),
                    } => job.fail(failure.code(), failure.human_message()),
                    RemoteState::Failed { failure: None } if job.cancel_requested => {
                        job.end(JobStatus::Cancelled, JobEvent::Cancelled {});
                    }
                    RemoteState::Failed { failure: None } => {
                        job.fail("execution_error", "ComfyUI stopped the job.")
                    }
                    RemoteState::Cancelled => job.end(JobStatus::Cancelled, JobEvent::Cancelled {}),
                    RemoteState::Unknown if job.cancel_requested => {
                        job.end(JobStatus::Cancelled, JobEvent::Cancelled {});
                    }
                    RemoteState::Unknown => job.fail(
                        "lost",
                        "ComfyUI no longer knows this job (it probably restarted). Please generate it again.",
                    ),
                }
            });
            if finish {
                jobs.finish(id);
            }
        });
    }

    /// One watchdog round: check silent jobs, forget long-finished ones.
    fn watch(&self) {
        let tuning = self.inner.tuning;
        let silent: Vec<JobId> = {
            let mut registry = self.registry();
            registry.retain(|_, job| job.ended.is_none_or(|ended| ended.elapsed() < tuning.retention));
            registry
                .iter()
                .filter(|(_, job)| {
                    job.submitted && !job.is_ended() && job.last_heard.elapsed() >= tuning.silence
                })
                .map(|(id, _)| *id)
                .collect()
        };
        for id in silent {
            self.reconcile(id);
        }
    }

    /// Keeps `queue_position` of queued jobs in line with ComfyUI's queue whenever it changes.
    async fn keep_queue_positions(self) {
        loop {
            self.inner.queue_changed.notified().await;
            let anyone_waiting = self
                .registry()
                .values()
                .any(|job| job.status == JobStatus::Queued && job.submitted);
            if !anyone_waiting {
                continue;
            }
            let Ok(order) = self.inner.comfy.queue_order().await else {
                continue;
            };
            let mut registry = self.registry();
            for (id, job) in registry.iter_mut() {
                if job.status != JobStatus::Queued || !job.submitted {
                    continue;
                }
                let Some(index) = order.iter().position(|prompt_id| *prompt_id == id.to_string()) else {
                    continue;
                };
                let position = u32::try_from(index).unwrap_or(u32::MAX).max(1);
                if job.queue_position != Some(position) {
                    job.queue_position = Some(position);
                    job.log.push(JobEvent::Queued { position });
                }
            }
        }
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
    }
}

fn completed_event(record: &HistoryRecord) -> JobEvent {
    let item = record.item();
    JobEvent::Completed {
        image_url: item.image_url,
        thumbnail_url: item.thumbnail_url,
        seed: record.seed,
        width: record.width,
        height: record.height,
        elapsed_ms: record.elapsed_ms,
    }
}
