//! Running a plan: its images are submitted as jobs of the engine ([`submit`]), then either waited
//! for ([`Submitted::wait`]) or followed as a stream of live previews and finished images
//! ([`Submitted::progress`]). Whichever way, the jobs not collected when the request is dropped (the
//! client hung up) are cancelled, and no wait outlasts the engine's own deadline: a request whose jobs
//! say nothing for longer than that ends with [`GenerateError::TimedOut`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use zimage_contract::JobEvent;

use super::ImagesPlan;
use crate::access::identity::Requester;
use crate::job_id::JobId;
use crate::jobs::{JobError, Jobs, StreamItem};

/// What the engine may take, beyond the job deadline, between two events of a job that is still alive:
/// saving the image, and the watchdog's round.
const SLACK: Duration = Duration::from_secs(60);

/// Running a plan failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A job was not accepted (the line is full, the journal cannot be written, shutting down).
    #[error(transparent)]
    Job(#[from] JobError),
    /// A job failed at ComfyUI or while saving.
    #[error("{message}")]
    Failed { code: String, message: String },
    /// Someone cancelled one of the jobs (from the studio's page).
    #[error("the job was cancelled")]
    Cancelled,
    /// The gateway is shutting down before the images were done.
    #[error("the studio is restarting")]
    Restarting,
    /// The jobs said nothing for longer than the job deadline allows: the wait is given up (and the
    /// jobs cancelled) so that the request always has an answer.
    #[error("no word of the images for {waited:?}")]
    TimedOut { waited: Duration },
}

/// One finished image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Made {
    pub id: JobId,
    pub seed: u64,
}

/// What a followed request sees happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A live preview of image `image` (its index in the plan), the `index`-th sent of it.
    Partial {
        image: usize,
        index: u32,
        preview: Bytes,
        mime: &'static str,
    },
    /// Image `image` is finished and stored.
    Done { image: usize, made: Made },
}

/// Every image of a plan accepted as a job; dropping it cancels those not collected.
pub struct Submitted {
    jobs: Jobs,
    made: Vec<Made>,
    batch: Batch,
    /// The longest silence of the jobs before the wait is given up.
    silence: Duration,
}

/// Submits every image of `plan` as a job of its own for `requester`, each once accepted recorded for
/// cancellation. `deadline` is the engine's job deadline, which bounds every later wait.
pub async fn submit(
    jobs: &Jobs,
    plan: &ImagesPlan,
    requester: Requester,
    deadline: Duration,
) -> Result<Submitted, GenerateError> {
    let batch = Batch {
        jobs: jobs.clone(),
        requester,
        claim: Arc::new(Mutex::new(Claim::default())),
    };
    // In a task of its own, so that a job the engine accepts after the client hung up is still
    // claimed by the batch, and so cancelled: the claim's lock orders the two.
    let submitting = {
        let (jobs, claim) = (jobs.clone(), Arc::clone(&batch.claim));
        let images = plan.images.clone();
        tokio::spawn(async move {
            let mut made = Vec::with_capacity(images.len());
            for params in images {
                let accepted = jobs.submit(params, requester.client).await?;
                let id: JobId = accepted.id.parse().map_err(|_| {
                    JobError::Journal(std::io::Error::other("the engine gave an unparsable job id"))
                })?;
                if !lock(&claim).take(id) {
                    cancel(&jobs, id, requester);
                    return Err(GenerateError::Restarting);
                }
                made.push(Made {
                    id,
                    seed: accepted.seed,
                });
            }
            Ok(made)
        })
    };
    let made = submitting
        .await
        .map_err(|error| JobError::Journal(std::io::Error::other(error)))??;
    Ok(Submitted {
        jobs: jobs.clone(),
        made,
        batch,
        silence: deadline.saturating_add(SLACK),
    })
}

impl Submitted {
    /// The accepted jobs, in the plan's order.
    pub fn made(&self) -> &[Made] {
        &self.made
    }

    /// Waits until every image exists, and gives them in the plan's order. Any job ending otherwise
    /// cancels the others.
    pub async fn wait(self) -> Result<Vec<Made>, GenerateError> {
        let mut made = self.made.clone();
        let progress = self.progress(0).await;
        let mut progress = std::pin::pin!(progress);
        while let Some(item) = progress.next().await {
            if let Progress::Done { image, made: done } = item? {
                made[image] = done;
            }
        }
        Ok(made)
    }

    /// Follows the jobs: up to `partials` live previews of each image, spread over its steps, and
    /// each image once it is stored (in the order they finish). Ends after the last image, or with
    /// the first error; a job's failure, or dropping the stream, cancels the jobs still unfinished.
    pub async fn progress(
        self,
        partials: u32,
    ) -> impl Stream<Item = Result<Progress, GenerateError>> + Send + 'static {
        let mut sources = Vec::with_capacity(self.made.len());
        let mut missing = None;
        for (image, made) in self.made.iter().enumerate() {
            match self.jobs.events(made.id, None).await {
                Some(events) => sources.push(events.map(move |item| (image, item)).boxed()),
                None => missing = Some(GenerateError::Job(JobError::NotFound)),
            }
        }
        let follow = Follow {
            steps: vec![Steps::default(); self.made.len()],
            left: self.made.len(),
            jobs: self.jobs,
            made: self.made,
            partials,
            batch: self.batch,
            silence: self.silence,
        };
        let events = futures_util::stream::select_all(sources);
        futures_util::stream::unfold(
            (follow, events, missing),
            |(mut follow, mut events, missing)| async move {
                if let Some(error) = missing {
                    return Some((Err(error), (follow.ended(), events, None)));
                }
                if follow.left == 0 {
                    return None;
                }
                loop {
                    let next = tokio::time::timeout(follow.silence, events.next()).await;
                    let step = match next {
                        Err(_) => Err(GenerateError::TimedOut {
                            waited: follow.silence,
                        }),
                        Ok(None) => Err(GenerateError::Restarting),
                        Ok(Some((image, item))) => match follow.on(image, item).await {
                            Ok(None) => continue,
                            Ok(Some(progress)) => Ok(progress),
                            Err(error) => Err(error),
                        },
                    };
                    if step.is_err() {
                        // Nothing more comes after an error: the stream ends with it.
                        return Some((step, (follow.ended(), events, None)));
                    }
                    return Some((step, (follow, events, None)));
                }
            },
        )
    }
}

/// How far one image's job has come.
#[derive(Debug, Clone, Copy, Default)]
struct Steps {
    step: u32,
    total: u32,
    partials_sent: u32,
}

/// The state of a followed request.
struct Follow {
    jobs: Jobs,
    made: Vec<Made>,
    steps: Vec<Steps>,
    partials: u32,
    /// Images not yet finished; 0 once the stream has ended.
    left: usize,
    /// Owned by the stream, so that dropping it cancels the jobs still unfinished.
    batch: Batch,
    silence: Duration,
}

impl Follow {
    /// What one event of image `image`'s job means for the request.
    async fn on(&mut self, image: usize, item: StreamItem) -> Result<Option<Progress>, GenerateError> {
        let event = match item {
            StreamItem::Event(sequenced) => sequenced,
            StreamItem::Restarting => return Err(GenerateError::Restarting),
        };
        let steps = &mut self.steps[image];
        match &event.event {
            JobEvent::Progress { step, total } => {
                steps.step = *step;
                steps.total = *total;
                Ok(None)
            }
            JobEvent::Preview { .. } => {
                if !partial_due(*steps, self.partials) {
                    return Ok(None);
                }
                // The newest preview; gone when the job has moved on meanwhile.
                let Some((preview, mime)) = self.jobs.preview(self.made[image].id).await else {
                    return Ok(None);
                };
                let index = steps.partials_sent;
                steps.partials_sent += 1;
                Ok(Some(Progress::Partial {
                    image,
                    index,
                    preview,
                    mime,
                }))
            }
            JobEvent::Completed { .. } => {
                self.left -= 1;
                if self.left == 0 {
                    // Every image exists: nothing is left to cancel.
                    lock(&self.batch.claim).ids.clear();
                }
                Ok(Some(Progress::Done {
                    image,
                    made: self.made[image],
                }))
            }
            JobEvent::Failed { code, message } => Err(GenerateError::Failed {
                code: code.clone(),
                message: message.clone(),
            }),
            JobEvent::Cancelled {} => Err(GenerateError::Cancelled),
            JobEvent::Queued { .. } | JobEvent::Running {} | JobEvent::Retrying { .. } => Ok(None),
        }
    }

    /// The stream ends: the jobs still unfinished are cancelled now rather than when the request is
    /// dropped, so that a failed image frees the line for everyone at once.
    fn ended(mut self) -> Follow {
        self.left = 0;
        let ids = std::mem::take(&mut lock(&self.batch.claim).ids);
        for id in ids.into_iter().rev() {
            cancel(&self.jobs, id, self.batch.requester);
        }
        self
    }
}

/// Whether a preview arriving now should go out: the `i`-th of `partials` (1-based) once the job has
/// done `i / (partials + 1)` of its steps, so the previews spread over the image's making rather than
/// all showing its first, noisiest steps. Unknown progress sends at once.
fn partial_due(steps: Steps, partials: u32) -> bool {
    if steps.partials_sent >= partials {
        return false;
    }
    if steps.total == 0 {
        return true;
    }
    let next = u64::from(steps.partials_sent) + 1;
    // step / total >= next / (partials + 1), in integers.
    u64::from(steps.step) * (u64::from(partials) + 1) >= next * u64::from(steps.total)
}

/// The jobs of one request, as far as they were accepted.
#[derive(Debug, Default)]
struct Claim {
    ids: Vec<JobId>,
    /// The request was dropped before its images were collected: later jobs are cancelled at once.
    abandoned: bool,
}

impl Claim {
    /// Records an accepted job; false when the request was abandoned meanwhile.
    fn take(&mut self, id: JobId) -> bool {
        if self.abandoned {
            return false;
        }
        self.ids.push(id);
        true
    }
}

fn lock(claim: &Mutex<Claim>) -> MutexGuard<'_, Claim> {
    // A claim is a list and a flag, consistent after every update.
    claim.lock().unwrap_or_else(PoisonError::into_inner)
}

fn cancel(jobs: &Jobs, id: JobId, requester: Requester) {
    let jobs = jobs.clone();
    // Often called as the request is dropped, where nothing can be awaited.
    tokio::spawn(async move {
        // A job that already ended refuses, which is just as good.
        match jobs.cancel(id, requester).await {
            Ok(_) => tracing::info!(%id, "job cancelled: its OpenAI-compatible request was abandoned"),
            Err(error) => tracing::debug!(%id, %error, "abandoned job not cancelled"),
        }
    });
}

/// The jobs of one request; those not collected when it is dropped are cancelled.
struct Batch {
    jobs: Jobs,
    requester: Requester,
    claim: Arc<Mutex<Claim>>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        let ids = {
            let mut claim = lock(&self.claim);
            claim.abandoned = true;
            std::mem::take(&mut claim.ids)
        };
        // The last first: the ones still waiting leave the line before the one at ComfyUI frees it.
        for id in ids.into_iter().rev() {
            cancel(&self.jobs, id, self.requester);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(step: u32, total: u32, partials_sent: u32) -> Steps {
        Steps {
            step,
            total,
            partials_sent,
        }
    }

    #[test]
    fn partial_images_spread_over_the_steps() {
        // Three of eight steps' previews: after steps 2, 4 and 6.
        let due: Vec<u32> = (1..=8)
            .scan(0, |sent, step| {
                let now = partial_due(steps(step, 8, *sent), 3);
                if now {
                    *sent += 1;
                }
                Some((step, now))
            })
            .filter_map(|(step, now)| now.then_some(step))
            .collect();
        assert_eq!(due, [2, 4, 6]);
        // One: half way.
        assert!(!partial_due(steps(3, 8, 0), 1));
        assert!(partial_due(steps(4, 8, 0), 1));
        // None asked, none sent; no more than asked.
        assert!(!partial_due(steps(8, 8, 0), 0));
        assert!(!partial_due(steps(8, 8, 3), 3));
        // Progress not known yet: the preview goes.
        assert!(partial_due(steps(0, 0, 0), 2));
    }
}
