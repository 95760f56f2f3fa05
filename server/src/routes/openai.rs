//! The OpenAI-compatible images API: `GET /v1/models` and `POST /v1/images/generations`, for OpenAI's
//! SDKs and the chat front ends built on them. The door and the limits are the studio's own; errors
//! take OpenAI's shape in [`super::error::openai_dialect`]; the decisions are [`crate::openai`]'s.

use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt as _};
use zimage_contract::ErrorDetail;
use zimage_contract::openai::{
    self, ImageStreamEvent, ImagesRequest, ImagesResponse, ListObject, Model, ModelList, ModelObject,
    OpenAiErrorBody,
};

use super::access::Caller;
use super::error::{ApiError, ApiJson, openai_error};
use super::jobs::admit;
use super::language;
use crate::i18n::Lang;
use crate::openai::answer::{self, unix_seconds};
use crate::openai::{Delivery, GenerateError, ImagesPlan, Progress, model_style, submit};
use crate::state::AppState;

/// How often an idle stream says it is alive (a comment line), so proxies keep it open while an
/// image waits in line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
    responses(
        (status = 200, description = "The model the studio offers, then each saved style as a model of its own (`z-image-turbo:<style name>`): choosing one applies the style.", body = ModelList),
        (status = 500, description = "The styles cannot be read (`internal`).", body = OpenAiErrorBody),
    ))]
pub(super) async fn models(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let model = |id: String| Model {
        id,
        object: ModelObject::Model,
        created: *STARTED,
        owned_by: "z-image-local".to_owned(),
    };
    let styles = state.styles.list().await?;
    let data = std::iter::once(openai::MODEL_ID.to_owned())
        .chain(
            styles
                .into_iter()
                .map(|style| format!("{}:{}", openai::MODEL_ID, style.name)),
        )
        .map(model)
        .collect();
    Ok(Json(ModelList {
        object: ListObject::List,
        data,
    }))
}

async fn unknown() -> ApiError {
    ApiError::NotFound("There is no such route of the OpenAI-compatible API.")
}

#[utoipa::path(post, path = "/v1/images/generations", tag = "openai", request_body = ImagesRequest,
    responses(
        (status = 200, description = "Answered once every image exists (no request timeout; a wait with no word from the jobs for longer than the job deadline gives up with 500 `generation_failed`). \
Each image is a job of the studio's and lands in its history. A client that hangs up first cancels its jobs. Every `model` name is served by the studio's one model, which `x-zimage-model` names; a name with a `:` applies the saved style named after it (`z-image-turbo:watercolor`). \
With `stream: true` the answer is server-sent events instead: each event's `event:` field is its `type` (`image_generation.partial_image`, `image_generation.completed`) and its `data:` the `ImageStreamEvent`'s JSON; \
a failure after the stream began is an event `error` whose data is an `OpenAiErrorBody`. The stream ends after the last image.",
            content((ImagesResponse = "application/json"), (ImageStreamEvent = "text/event-stream")),
            headers(("x-zimage-model" = String, description = "The model that made the images (`z-image-turbo`), whatever `model` named."))),
        (status = 400, description = "A parameter broke a rule; `param` names it (`invalid_field`; `model` naming a style there is none of after its `:`, `background` `transparent`, `output_compression` above 100, `partial_images` above 3, `url` with a `jpeg` or `webp` `output_format`; `too_many_jobs` for `n` above the rate's burst), or the body is not JSON.", body = OpenAiErrorBody),
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
) -> Result<Response, ApiError> {
    let style = match model_style(request.model.as_deref()) {
        Some(name) => Some(state.styles.find(name, "model").await?),
        None => None,
    };
    let plan = ImagesPlan::with_style(request, style.as_ref())?;
    admit(
        &state,
        &caller,
        u32::try_from(plan.images.len()).unwrap_or(u32::MAX),
    )?;
    let submitted = submit(&state.jobs, &plan, caller.requester, state.job_deadline).await?;
    let mut response = match plan.delivery.stream {
        // Dropped when the client hangs up, which cancels the jobs.
        None => {
            let made = submitted.wait().await?;
            let revised = plan
                .images
                .first()
                .map(|params| params.prompt.as_str())
                .filter(|prompt| *prompt != plan.sent_prompt);
            let body = answer::response(&state.jobs, &plan.delivery, &made, revised, &origin(&headers))
                .await
                .map_err(|error| ApiError::Internal(error.to_string()))?;
            Json(body).into_response()
        }
        Some(partials) => {
            let lang = language::of_request(&headers);
            events(state, plan.delivery, submitted.progress(partials).await, lang)
        }
    };
    response
        .headers_mut()
        .insert(openai::MODEL_HEADER, HeaderValue::from_static(openai::MODEL_ID));
    Ok(response)
}

/// The answer of `stream: true`: one event per preview and image as they come, then the end. The
/// stream owns the jobs: when the client hangs up, it is dropped and they are cancelled.
fn events(
    state: AppState,
    delivery: Delivery,
    progress: impl Stream<Item = Result<Progress, GenerateError>> + Send + 'static,
    lang: Lang,
) -> Response {
    let delivery = Arc::new(delivery);
    let events = progress.filter_map(move |item| {
        let (jobs, delivery) = (state.jobs.clone(), Arc::clone(&delivery));
        async move {
            let event = match item {
                Ok(progress) => match answer::event(&jobs, &delivery, progress).await {
                    Ok(Some(event)) => Event::default()
                        .event(event.name())
                        .json_data(&event)
                        .unwrap_or_else(|error| error_event(lang, ApiError::Internal(error.to_string()))),
                    Ok(None) => return None,
                    Err(error) => error_event(lang, ApiError::Internal(error.to_string())),
                },
                Err(error) => error_event(lang, error.into()),
            };
            Some(Ok::<Event, Infallible>(event))
        }
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Tell reverse proxies (nginx) not to buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A failure after the stream began: an `error` event with OpenAI's error body, which the SDKs raise.
fn error_event(lang: Lang, error: ApiError) -> Event {
    let answer = language::within(lang, || error.into_response());
    let detail = answer.extensions().get::<ErrorDetail>().cloned();
    let body = openai_error(answer.status(), detail);
    Event::default()
        .event("error")
        .json_data(&body)
        .unwrap_or_else(|_| Event::default().event("error").data("{}"))
}

/// `http://` and the host the client asked for (the door has checked it is one of the studio's names).
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}
