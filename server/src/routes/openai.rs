//! The OpenAI-compatible images API: `GET /v1/models`, `POST /v1/images/generations` and
//! `POST /v1/images/edits` (a multipart form or JSON), for OpenAI's SDKs and the chat front ends built
//! on them. The door and the limits are the studio's own; errors take OpenAI's shape in
//! [`super::error::openai_dialect`]; the decisions are [`crate::openai`]'s.

use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest as _, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt as _};
use zimage_contract::ErrorDetail;
use zimage_contract::openai::{
    self, ImageEditForm, ImageEditRequest, ImageStreamEvent, ImagesRequest, ImagesResponse, ListObject,
    MAX_EDIT_BODY_BYTES, MAX_EDIT_PARTS, MAX_EDIT_TEXT_BYTES, Model, ModelList, ModelObject, OpenAiErrorBody,
};
use zimage_contract::pictures::MAX_PICTURE_BYTES;

use super::access::Caller;
use super::error::{ApiError, ApiJson, openai_error, parse_json};
use super::jobs::admit;
use super::language;
use crate::i18n::Lang;
use crate::openai::answer::{self, unix_seconds};
use crate::openai::edit::{self, EditRefusal, Form, Pictures};
use crate::openai::{Delivery, GenerateError, ImagesPlan, Progress, model_style, submit};
use crate::state::AppState;

/// The saved style a request's `model` names (`z-image-turbo:watercolor`); an unknown one is refused,
/// naming `model`.
async fn requested_style(
    state: &AppState,
    model: Option<&str>,
) -> Result<Option<zimage_contract::Style>, ApiError> {
    match model_style(model) {
        Some(name) => Ok(Some(state.styles.find(name, "model").await?)),
        None => Ok(None),
    }
}

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

/// `POST /v1/images/generations` and `POST /v1/images/edits`, answered only once the images exist:
/// they must not run under the request timeout of the other routes. An edit's body may hold two
/// pictures: its limit replaces the studio's small one for that route alone.
pub(super) fn waiting_router() -> Router<AppState> {
    Router::new()
        .route(openai::paths::IMAGES_GENERATIONS, post(generations))
        .route(
            openai::paths::IMAGES_EDITS,
            post(edits).route_layer(DefaultBodyLimit::max(MAX_EDIT_BODY_BYTES)),
        )
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
    let style = requested_style(&state, request.model.as_deref()).await?;
    let plan = ImagesPlan::new(request, None, style.as_ref())?;
    answer_plan(state, caller, headers, plan).await
}

#[utoipa::path(post, path = "/v1/images/edits", tag = "openai",
    request_body(description = "The picture to change and the prompt, as OpenAI's SDKs send them: a multipart form (`image` or `image[]`, one file; `mask`; the other fields as text parts), \
or JSON with the picture as a base64 `data:` URL in `images` (an `http(s)` URL or a `file_id` is refused: the gateway fetches nothing). \
The picture is taken as `POST /api/pictures` takes one (PNG, JPEG or WebP, at most 25 MiB, turned as its EXIF says, scaled to fit 1024 pixels); the mask has the picture's size and is scaled with it.",
        content((ImageEditForm = "multipart/form-data"), (ImageEditRequest = "application/json"))),
    responses(
        (status = 200, description = "As for `POST /v1/images/generations`: answered once every image exists, or streamed with `stream: true`, whose events are `image_edit.partial_image` and `image_edit.completed`. \
Each image is a job of the studio's that starts from the picture (`strength` 0.6 by default, 1.0 with a mask) and lands in its history with its source.",
            content((ImagesResponse = "application/json"), (ImageStreamEvent = "text/event-stream")),
            headers(("x-zimage-model" = String, description = "The model that made the images (`z-image-turbo`), whatever `model` named."))),
        (status = 400, description = "A parameter broke a rule; `param` names it: a setting as for generations, `image` / `images` (none or several, not a picture, unreadable, too large or too small to decode, a remote URL or file id, not a data: URL), \
`mask` (not a PNG or WebP with transparency, another size than the picture), `strength`; or the form cannot be read (`unreadable_body`), has too many parts (`too_many_parts`), or is neither a form nor JSON (`unsupported_media_type`).", body = OpenAiErrorBody),
        (status = 409, description = "A job was cancelled from the studio's page (`cancelled`).", body = OpenAiErrorBody),
        (status = 413, description = "A file is larger than 25 MiB (`file_too_large`, naming it) or the body larger than about 68 MiB (`body_too_large`).", body = OpenAiErrorBody),
        (status = 429, description = "This device starts jobs too fast (`too_many_jobs`) or the line is full (`queue_full`).",
            body = OpenAiErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 500, description = "A generation failed (`generation_failed`), answered with `x-should-retry: false`; or the studio's own fault (`internal`).", body = OpenAiErrorBody),
        (status = 503, description = "No backend is ready (`comfyui_unreachable`, `comfyui_not_ready`), the studio is restarting (`restarting`) or cannot write its data (`storage_unavailable`).", body = OpenAiErrorBody),
        (status = 507, description = "The disk holding the images is full (`disk_full`).", body = OpenAiErrorBody),
    ))]
pub(super) async fn edits(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let form = match essence.as_str() {
        "multipart/form-data" => Form::Multipart,
        "application/json" => Form::Json,
        _ => return Err(EditRefusal::NotFormOrJson.into_api()),
    };
    // A body announced as too large is refused before any of it is read.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_EDIT_BODY_BYTES as u64) {
        return Err(EditRefusal::BodyTooLarge(MAX_EDIT_BODY_BYTES).into_api());
    }
    // Bodies with pictures are read a few at a time, as the pictures' uploads are.
    let turn = state.pictures.reading_turn().await?;
    let (request, pictures) = match form {
        Form::Multipart => read_form(request).await?,
        Form::Json => {
            let bytes = Bytes::from_request(request, &()).await.map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    EditRefusal::BodyTooLarge(MAX_EDIT_BODY_BYTES).into_api()
                } else if super::deadline::timed_out(&rejection) {
                    ApiError::BodyTimeout
                } else {
                    EditRefusal::UnreadableForm(rejection.body_text()).into_api()
                }
            })?;
            let request: ImageEditRequest = parse_json(&bytes)?;
            let pictures = edit::json_pictures(&request.images, request.mask.as_ref(), request.strength)
                .map_err(EditRefusal::into_api)?;
            (request, pictures)
        }
    };
    let settings = request.settings();
    // Every setting is checked before any picture is decoded.
    pictures.picture().map_err(EditRefusal::into_api)?;
    let style = requested_style(&state, settings.model.as_deref()).await?;
    ImagesPlan::new(settings.clone(), None, style.as_ref())?;
    let source = edit::source(&state.pictures, pictures).await?;
    drop(turn);
    let plan = ImagesPlan::new(settings, Some(source), style.as_ref())?;
    answer_plan(state, caller, headers, plan).await
}

/// A multipart edit: its files (`image`, `image[]`, `mask`) as bytes, each read up to its limit, and its
/// text fields as the JSON request they stand for. File names and part types are never used.
async fn read_form(request: Request) -> Result<(ImageEditRequest, Pictures), ApiError> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|rejection| EditRefusal::UnreadableForm(rejection.body_text()).into_api())?;
    let mut pictures = Pictures {
        form: Form::Multipart,
        images: Vec::new(),
        mask: None,
        strength: None,
    };
    let mut fields = Vec::new();
    let mut parts = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(form_error)? {
        parts += 1;
        if parts > MAX_EDIT_PARTS {
            return Err(EditRefusal::TooManyParts(MAX_EDIT_PARTS).into_api());
        }
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "image" | "image[]" => {
                if !pictures.images.is_empty() {
                    return Err(EditRefusal::SeveralImages { param: "image" }.into_api());
                }
                let file = read_part(&mut field, MAX_PICTURE_BYTES)
                    .await?
                    .ok_or(EditRefusal::FileTooLarge { param: "image" }.into_api())?;
                pictures.images.push(file);
            }
            "mask" => {
                if pictures.mask.is_some() {
                    return Err(EditRefusal::SeveralMasks.into_api());
                }
                let file = read_part(&mut field, MAX_PICTURE_BYTES)
                    .await?
                    .ok_or(EditRefusal::FileTooLarge { param: "mask" }.into_api())?;
                pictures.mask = Some(file);
            }
            _ => {
                let Some(bytes) = read_part(&mut field, MAX_EDIT_TEXT_BYTES).await? else {
                    return Err(EditRefusal::TextTooLong {
                        param: name,
                        limit: MAX_EDIT_TEXT_BYTES,
                    }
                    .into_api());
                };
                let Ok(text) = String::from_utf8(bytes.to_vec()) else {
                    return Err(EditRefusal::NotText { param: name }.into_api());
                };
                fields.push((name, text));
            }
        }
    }
    let object = edit::form_fields(fields).map_err(EditRefusal::into_api)?;
    let bytes = serde_json::to_vec(&object).map_err(|error| ApiError::Internal(error.to_string()))?;
    let request: ImageEditRequest = parse_json(&bytes)?;
    pictures.strength = request.strength;
    Ok((request, pictures))
}

/// A part's bytes, or `None` once it runs past `limit`.
async fn read_part(
    field: &mut axum::extract::multipart::Field<'_>,
    limit: usize,
) -> Result<Option<Bytes>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(form_error)? {
        if bytes.len() + chunk.len() > limit {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(Bytes::from(bytes)))
}

/// A form that breaks off, runs past the body's limit or its deadline, or is not a form.
fn form_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if super::deadline::timed_out(&error) {
        ApiError::BodyTimeout
    } else if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        EditRefusal::BodyTooLarge(MAX_EDIT_BODY_BYTES).into_api()
    } else {
        EditRefusal::UnreadableForm(error.body_text()).into_api()
    }
}

impl EditRefusal {
    fn into_api(self) -> ApiError {
        ApiError::Edit(self.into())
    }
}

/// Runs a checked plan and answers it: the images once they exist, or the stream of their events.
async fn answer_plan(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    plan: ImagesPlan,
) -> Result<Response, ApiError> {
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
