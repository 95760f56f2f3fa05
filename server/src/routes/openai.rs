//! The OpenAI-compatible images API: `GET /v1/models` and `POST /v1/images/generations`, for OpenAI's
//! SDKs and the chat front ends built on them. The door and the limits are the studio's own; errors
//! take OpenAI's shape in [`super::error::openai_dialect`]; the decisions are [`crate::openai`]'s.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use zimage_contract::openai::{
    self, ImageData, ImagesRequest, ImagesResponse, ListObject, Model, ModelList, ModelObject,
    OpenAiErrorBody, ResponseFormat,
};
use zimage_contract::paths;

use super::access::Caller;
use super::error::{ApiError, ApiJson};
use super::jobs::admit;
use crate::images::Variant;
use crate::openai::{ImagesPlan, generate};
use crate::state::AppState;

/// When the routes were built, which is when the gateway started: the model list's `created`.
static STARTED: LazyLock<u64> = LazyLock::new(unix_seconds);

/// `/v1` routes answered at once.
pub(super) fn router() -> Router<AppState> {
    LazyLock::force(&STARTED);
    Router::new()
        .route(openai::paths::MODELS, get(models))
        // An unknown `/v1` path is an OpenAI-shaped 404, not the studio's page.
        .route("/v1/{*rest}", any(unknown))
}

/// `POST /v1/images/generations`, answered only once the images exist: it must not run under the
/// request timeout of the other routes.
pub(super) fn waiting_router() -> Router<AppState> {
    Router::new().route(openai::paths::IMAGES_GENERATIONS, post(generations))
}

#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, description = "The model the studio offers.", body = ModelList)))]
pub(super) async fn models() -> Json<ModelList> {
    Json(ModelList {
        object: ListObject::List,
        data: vec![Model {
            id: openai::MODEL_ID.to_owned(),
            object: ModelObject::Model,
            created: *STARTED,
            owned_by: "z-image-local".to_owned(),
        }],
    })
}

async fn unknown() -> ApiError {
    ApiError::NotFound("There is no such route of the OpenAI-compatible API.")
}

#[utoipa::path(post, path = "/v1/images/generations", tag = "openai", request_body = ImagesRequest,
    responses(
        (status = 200, description = "Answered once every image exists (no request timeout). Each image is a job of the studio's and lands in its history. A client that hangs up first cancels its jobs.", body = ImagesResponse),
        (status = 400, description = "A parameter broke a rule; `param` names it (`invalid_field`, `too_many_jobs` for `n` above the rate's burst), or the body is not JSON.", body = OpenAiErrorBody),
        (status = 409, description = "A job was cancelled from the studio's page (`cancelled`).", body = OpenAiErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (`body_too_large`).", body = OpenAiErrorBody),
        (status = 429, description = "This device starts jobs too fast (`too_many_jobs`) or the line is full (`queue_full`).",
            body = OpenAiErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 500, description = "A generation failed (`generation_failed`), answered with `x-should-retry: false`; or the studio's own fault (`internal`).", body = OpenAiErrorBody),
        (status = 503, description = "No backend is ready (`comfyui_unreachable`, `comfyui_not_ready`), or the studio is restarting (`restarting`).", body = OpenAiErrorBody),
        (status = 507, description = "The disk holding the images is full (`disk_full`).", body = OpenAiErrorBody),
    ))]
pub(super) async fn generations(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ImagesRequest>,
) -> Result<Json<ImagesResponse>, ApiError> {
    let plan = ImagesPlan::try_from(request)?;
    admit(
        &state,
        &caller,
        u32::try_from(plan.images.len()).unwrap_or(u32::MAX),
    )?;
    // Dropped when the client hangs up, which cancels the jobs.
    let made = generate(&state.jobs, &plan, caller.requester).await?;
    let created = unix_seconds();
    let origin = origin(&headers);
    let mut data = Vec::with_capacity(made.len());
    for (image, params) in made.iter().zip(&plan.images) {
        let revised_prompt =
            (params.prompt.as_str() != plan.sent_prompt).then(|| params.prompt.as_str().to_owned());
        let path = paths::image(&image.id.to_string());
        data.push(match plan.format {
            ResponseFormat::Url => ImageData {
                b64_json: None,
                url: Some(format!("{origin}{path}")),
                revised_prompt,
            },
            ResponseFormat::B64Json => {
                let png =
                    state.jobs.image(image.id, Variant::Full).await?.ok_or_else(|| {
                        ApiError::Internal(format!("the image of job {} is gone", image.id))
                    })?;
                ImageData {
                    b64_json: Some(base64::engine::general_purpose::STANDARD.encode(&png)),
                    url: None,
                    revised_prompt,
                }
            }
        });
    }
    Ok(Json(ImagesResponse { created, data }))
}

/// `http://` and the host the client asked for (the door has checked it is one of the studio's names).
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
