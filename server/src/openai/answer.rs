//! OpenAI's answers made from finished jobs: the JSON answer ([`response`]) and the streamed events
//! ([`event`]), each image as base64 in the delivery's encoding or as the URL of the stored PNG, with
//! the settings echoed where OpenAI's answers have them. Any route that answers with images uses
//! these (generations and edits; the streamed events are named after the route, `image_generation.*`
//! or `image_edit.*`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use zimage_contract::openai::{
    CompletedImage, ImageData, ImageStreamEvent, ImageUsage, ImagesResponse, MadeBackground, PartialImage,
    ResponseFormat,
};
use zimage_contract::paths;

use super::encode::EncodeError;
use super::{Delivery, Made, Operation, Progress};
use crate::images::{ImageError, Variant};
use crate::job_id::JobId;
use crate::jobs::Jobs;

/// An answer could not be made from images that exist.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("the image of job {0} is gone")]
    Gone(JobId),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// The answer to a request whose images all exist, in the plan's order. `revised` is the prompt the
/// model got when the studio changed it; `origin` (`http://host`) makes URLs absolute.
pub async fn response(
    jobs: &Jobs,
    delivery: &Delivery,
    made: &[Made],
    revised: Option<&str>,
    origin: &str,
) -> Result<ImagesResponse, AnswerError> {
    let mut data = Vec::with_capacity(made.len());
    for image in made {
        let revised_prompt = revised.map(str::to_owned);
        data.push(match delivery.format {
            ResponseFormat::Url => ImageData {
                b64_json: None,
                url: Some(format!("{origin}{}", paths::image(&image.id.to_string()))),
                revised_prompt,
            },
            ResponseFormat::B64Json => ImageData {
                b64_json: Some(base64(&encoded(jobs, delivery, image.id).await?)),
                url: None,
                revised_prompt,
            },
        });
    }
    Ok(ImagesResponse {
        created: unix_seconds(),
        data,
        background: MadeBackground::Opaque,
        output_format: delivery.encoding.format,
        quality: delivery.quality,
        size: delivery.size.clone(),
        usage: ImageUsage::default(),
    })
}

/// The event for one step of a streamed request; `None` for a preview that cannot be read (a
/// preview is a hint: a broken one is skipped, not the request's failure).
pub async fn event(
    jobs: &Jobs,
    delivery: &Delivery,
    progress: Progress,
) -> Result<Option<ImageStreamEvent>, AnswerError> {
    let image_index = |image: usize| u32::try_from(image).unwrap_or(u32::MAX);
    Ok(Some(match progress {
        Progress::Partial {
            image,
            index,
            preview,
            mime,
        } => {
            let preview = match delivery.encoding.transcode_off_thread(preview, mime).await {
                Ok(preview) => preview,
                Err(error) => {
                    tracing::warn!(%error, "live preview skipped");
                    return Ok(None);
                }
            };
            let partial = PartialImage {
                b64_json: base64(&preview),
                created_at: unix_seconds(),
                size: delivery.size.clone(),
                quality: delivery.quality,
                background: MadeBackground::Opaque,
                output_format: delivery.encoding.format,
                partial_image_index: index,
                image_index: image_index(image),
            };
            match delivery.operation {
                Operation::Generation => ImageStreamEvent::PartialImage(partial),
                Operation::Edit => ImageStreamEvent::EditPartialImage(partial),
            }
        }
        Progress::Done { image, made } => {
            let completed = CompletedImage {
                b64_json: base64(&encoded(jobs, delivery, made.id).await?),
                created_at: unix_seconds(),
                size: delivery.size.clone(),
                quality: delivery.quality,
                background: MadeBackground::Opaque,
                output_format: delivery.encoding.format,
                usage: ImageUsage::default(),
                image_index: image_index(image),
            };
            match delivery.operation {
                Operation::Generation => ImageStreamEvent::Completed(completed),
                Operation::Edit => ImageStreamEvent::EditCompleted(completed),
            }
        }
    }))
}

/// The stored PNG of a job in the delivery's encoding.
async fn encoded(jobs: &Jobs, delivery: &Delivery, id: JobId) -> Result<Bytes, AnswerError> {
    let png = jobs
        .image(id, Variant::Full)
        .await?
        .ok_or(AnswerError::Gone(id))?;
    Ok(delivery.encoding.transcode_off_thread(png, "image/png").await?)
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Seconds since the Unix epoch, as OpenAI's `created` and `created_at` are.
pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
