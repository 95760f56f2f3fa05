//! The OpenAI-compatible images API as plain decisions: an [`ImagesRequest`] becomes an [`ImagesPlan`]
//! (one [`GenerationParams`] per image, seeds consecutive), and [`generate`] runs the plan as jobs of the
//! engine, waits for their images and cancels every one of them if the wait is abandoned.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::StreamExt as _;
use zimage_contract::openai::{self, ImagesRequest, ResponseFormat};
use zimage_contract::{self as api, CreateJobRequest, JobEvent};

use crate::access::identity::Requester;
use crate::job_id::JobId;
use crate::jobs::{JobError, Jobs, StreamItem};
use crate::validation::{GenerationParams, Rule, Seed, ValidationError};

/// OpenAI's fixed sizes that lie beyond the studio's 1024 px cap, and what each becomes: the same
/// aspect with the longer side 1024 and the shorter rounded down to a multiple of 16.
pub const OPENAI_SIZES: [((u32, u32), (u32, u32)); 4] = [
    ((1536, 1024), (1024, 672)),
    ((1024, 1536), (672, 1024)),
    ((1792, 1024), (1024, 576)),
    ((1024, 1792), (576, 1024)),
];

/// What one request asks for, checked: the images to make and how to return them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagesPlan {
    /// One job each, in seed order.
    pub images: Vec<GenerationParams>,
    pub format: ResponseFormat,
    /// The prompt as sent, to tell whether trimming changed it.
    pub sent_prompt: String,
}

impl TryFrom<ImagesRequest> for ImagesPlan {
    type Error = ValidationError;

    fn try_from(request: ImagesRequest) -> Result<ImagesPlan, ValidationError> {
        if let Some(model) = &request.model
            && model != openai::MODEL_ID
        {
            return Err(ValidationError::new("model", Rule::UnknownModel));
        }
        let count = request.n.unwrap_or(1);
        if !(1..=openai::MAX_IMAGES).contains(&count) {
            return Err(ValidationError::new("n", Rule::ImageCount));
        }
        let size = match request.size.as_deref().map(str::trim) {
            None | Some("auto") => None,
            Some(text) => Some(parse_size(text)?),
        };
        if size.is_some() && request.aspect_ratio.is_some() {
            return Err(ValidationError::new("aspect_ratio", Rule::SizeOrRatio));
        }
        let first_seed = match request.seed {
            Some(seed) => {
                let last = seed.checked_add(u64::from(count - 1));
                if last.is_none_or(|last| last > api::MAX_SEED) {
                    return Err(ValidationError::new("seed", Rule::SeedsOutOfRange { count }));
                }
                seed
            }
            // Room for the following seeds below the limit.
            None => Seed::random().get().min(api::MAX_SEED - u64::from(count - 1)),
        };
        let images = (0..u64::from(count))
            .map(|offset| {
                let job = CreateJobRequest {
                    prompt: request.prompt.clone(),
                    seed: Some(first_seed + offset),
                    aspect_ratio: request.aspect_ratio,
                    width: size.map(|(width, _)| width),
                    height: size.map(|(_, height)| height),
                    batch_size: None,
                    source: None,
                };
                // The studio's own rules, with its field names turned into this API's.
                GenerationParams::try_from(job).map_err(|error| match error.field {
                    "width" | "height" => ValidationError::new("size", error.rule),
                    _ => error,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ImagesPlan {
            images,
            format: request.response_format.unwrap_or_default(),
            sent_prompt: request.prompt,
        })
    }
}

/// `WxH`, OpenAI's large sizes mapped to the studio's; the studio's limits are checked afterwards.
fn parse_size(text: &str) -> Result<(u32, u32), ValidationError> {
    let invalid = || ValidationError::new("size", Rule::SizeFormat);
    let (width, height) = text.split_once(['x', 'X']).ok_or_else(invalid)?;
    let side = |text: &str| text.parse::<u32>().map_err(|_| invalid());
    let asked = (side(width)?, side(height)?);
    Ok(OPENAI_SIZES
        .iter()
        .find(|(openai, _)| *openai == asked)
        .map_or(asked, |(_, studio)| *studio))
}

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
}

/// One finished image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Made {
    pub id: JobId,
    pub seed: u64,
}

/// Submits every image of `plan` as a job of its own for `requester`, and waits until all exist.
/// Dropping the returned future (the client went away) or any job ending otherwise cancels the jobs
/// still unfinished: nobody would collect them.
pub async fn generate(
    jobs: &Jobs,
    plan: &ImagesPlan,
    requester: Requester,
) -> Result<Vec<Made>, GenerateError> {
    let mut batch = Batch {
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
    futures_util::future::try_join_all(made.iter().map(|made| finished(jobs, made.id))).await?;
    batch.collected();
    Ok(made)
}

/// Waits for the job's last event.
async fn finished(jobs: &Jobs, id: JobId) -> Result<(), GenerateError> {
    let Some(events) = jobs.events(id, None) else {
        return Err(JobError::NotFound.into());
    };
    let mut events = std::pin::pin!(events);
    while let Some(item) = events.next().await {
        match item {
            StreamItem::Event(sequenced) => match &sequenced.event {
                JobEvent::Completed { .. } => return Ok(()),
                JobEvent::Failed { code, message } => {
                    return Err(GenerateError::Failed {
                        code: code.clone(),
                        message: message.clone(),
                    });
                }
                JobEvent::Cancelled {} => return Err(GenerateError::Cancelled),
                _ => {}
            },
            StreamItem::Restarting => return Err(GenerateError::Restarting),
        }
    }
    Err(GenerateError::Restarting)
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
    // A job that already ended refuses, which is just as good.
    match jobs.cancel(id, requester) {
        Ok(_) => tracing::info!(%id, "job cancelled: its OpenAI-compatible request was abandoned"),
        Err(error) => tracing::debug!(%id, %error, "abandoned job not cancelled"),
    }
}

/// The jobs of one request; those not collected when it is dropped are cancelled.
struct Batch {
    jobs: Jobs,
    requester: Requester,
    claim: Arc<Mutex<Claim>>,
}

impl Batch {
    /// Every image exists: nothing is left to cancel.
    fn collected(&mut self) {
        lock(&self.claim).ids.clear();
    }
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
    use zimage_contract::AspectRatio;

    fn plan(json: serde_json::Value) -> Result<ImagesPlan, ValidationError> {
        ImagesPlan::try_from(serde_json::from_value::<ImagesRequest>(json).unwrap())
    }

    fn sizes(plan: &ImagesPlan) -> Vec<(u32, u32)> {
        plan.images
            .iter()
            .map(|params| (params.width.get(), params.height.get()))
            .collect()
    }

    fn field(json: serde_json::Value) -> &'static str {
        plan(json).unwrap_err().field
    }

    #[test]
    fn a_bare_prompt_is_one_square_image_as_base64() {
        let plan = plan(serde_json::json!({"prompt": " a fox "})).unwrap();
        assert_eq!(sizes(&plan), [(1024, 1024)]);
        assert_eq!(plan.format, ResponseFormat::B64Json);
        assert_eq!(plan.images[0].prompt.as_str(), "a fox");
    }

    #[test]
    fn n_images_get_consecutive_seeds() {
        let plan = plan(serde_json::json!({"prompt": "x", "n": 3, "seed": 41})).unwrap();
        let seeds: Vec<u64> = plan.images.iter().map(|params| params.seed.get()).collect();
        assert_eq!(seeds, [41, 42, 43]);
        let random = super::ImagesPlan::try_from(ImagesRequest {
            prompt: "x".to_owned(),
            n: Some(4),
            ..ImagesRequest::default()
        })
        .unwrap();
        let seeds: Vec<u64> = random.images.iter().map(|params| params.seed.get()).collect();
        assert_eq!(seeds.windows(2).filter(|pair| pair[1] == pair[0] + 1).count(), 3);
        assert!(seeds[3] <= api::MAX_SEED);
    }

    #[test]
    fn openai_sizes_keep_their_aspect_with_the_longer_side_1024() {
        for ((asked, _), expected) in
            OPENAI_SIZES
                .iter()
                .zip([(1024, 672), (672, 1024), (1024, 576), (576, 1024)])
        {
            let plan =
                plan(serde_json::json!({"prompt": "x", "size": format!("{}x{}", asked.0, asked.1)})).unwrap();
            assert_eq!(sizes(&plan), [expected]);
        }
        for (text, expected) in [
            ("1024x1024", (1024, 1024)),
            ("512x512", (512, 512)),
            ("256x256", (256, 256)),
            ("auto", (1024, 1024)),
            ("768x1024", (768, 1024)),
        ] {
            assert_eq!(
                sizes(&plan(serde_json::json!({"prompt": "x", "size": text})).unwrap()),
                [expected],
                "{text}"
            );
        }
    }

    #[test]
    fn an_aspect_ratio_stands_in_for_the_size_but_not_beside_one() {
        let wide = plan(serde_json::json!({"prompt": "x", "aspect_ratio": "16:9", "size": "auto"})).unwrap();
        assert_eq!(sizes(&wide), [AspectRatio::Wide16x9.size()]);
        assert_eq!(
            field(serde_json::json!({"prompt": "x", "aspect_ratio": "16:9", "size": "512x512"})),
            "aspect_ratio"
        );
    }

    #[test]
    fn refusals_name_this_apis_parameters() {
        assert_eq!(field(serde_json::json!({"prompt": "  "})), "prompt");
        assert_eq!(field(serde_json::json!({"prompt": "x", "n": 0})), "n");
        assert_eq!(field(serde_json::json!({"prompt": "x", "n": 5})), "n");
        assert_eq!(
            field(serde_json::json!({"prompt": "x", "model": "dall-e-3"})),
            "model"
        );
        for size in [
            "2048x2048",
            "1000x1000",
            "100x100",
            "big",
            "1024",
            "x1024",
            "-5x10",
        ] {
            assert_eq!(
                field(serde_json::json!({"prompt": "x", "size": size})),
                "size",
                "{size}"
            );
        }
        assert_eq!(
            field(serde_json::json!({"prompt": "x", "n": 2, "seed": api::MAX_SEED})),
            "seed"
        );
        assert!(plan(serde_json::json!({"prompt": "x", "n": 1, "seed": api::MAX_SEED})).is_ok());
        assert!(plan(serde_json::json!({"prompt": "x", "model": "z-image-turbo"})).is_ok());
    }
}
