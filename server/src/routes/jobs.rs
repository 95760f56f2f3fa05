//! `POST /api/jobs`, `GET` and `DELETE /api/jobs/{id}`, and the job's live preview image.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use zimage_contract::{BackendState, CreateJobRequest, ErrorBody, JobAccepted, JobView, paths};

use super::JobIdParam;
use super::access::Caller;
use super::error::{ApiError, ApiJson};
use super::language::text;
use crate::state::AppState;
use crate::storage::DiskSpace;
use crate::validation::JobSpec;

/// The job routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(paths::JOBS, axum::routing::post(create))
        .route("/api/jobs/{id}", get(show).delete(cancel))
        .route("/api/jobs/{id}/preview", get(preview))
}

#[utoipa::path(post, path = "/api/jobs", tag = "jobs",
    request_body = CreateJobRequest,
    responses(
        (status = 202, description = "Accepted: the job waits in line.", body = JobAccepted,
            headers(("Location" = String, description = "The job's URL."))),
        (status = 400, description = "Not JSON (`malformed_json`) or not sent as JSON (`unsupported_media_type`).", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (`body_too_large`).", body = ErrorBody),
        (status = 422, description = "A field broke a rule (`invalid_field`); `error.field` names it (`style` for a style there is none of).", body = ErrorBody),
        (status = 429, description = "This device starts jobs too fast (`too_many_jobs`) or the line is full (`queue_full`).",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "ComfyUI cannot take jobs (`comfyui_unreachable`, `comfyui_not_ready`), the studio is restarting (`restarting`) or cannot write its data (`storage_unavailable`).", body = ErrorBody),
        (status = 507, description = "The disk holding the images is full (`disk_full`).", body = ErrorBody),
    ))]
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateJobRequest>,
) -> Result<Response, ApiError> {
    // The picture and the mask must exist and fit: checked against the store before anything else.
    let source = match &request.source {
        Some(source) => Some(state.pictures.resolve(source).await?),
        None => None,
    };
    // A style is applied now, whole: the job keeps what it made of the request, whatever becomes of it.
    let request = state.styles.resolve(request, "style").await?;
    let params = JobSpec::from_request(request, source)?;
    admit(&state, &caller, 1)?;
    let accepted = state.jobs.submit(params, caller.requester.client).await?;
    let location = paths::job(&accepted.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(accepted),
    )
        .into_response())
}

/// Whether `count` new jobs of `caller` may start now: ComfyUI can take them, the disk has room, and
/// the caller is within its rate. Shared by `POST /api/jobs` and `POST /v1/images/generations`.
pub(super) fn admit(state: &AppState, caller: &Caller, count: u32) -> Result<(), ApiError> {
    // A job is accepted only while ComfyUI can take it: a missing model is not something waiting in
    // line would fix, and the person learns it now rather than at the job's deadline. (Jobs accepted
    // before ComfyUI went away wait for it.)
    let readiness = state.readiness.borrow().clone();
    if !readiness.ready {
        return Err(ApiError::NotReady {
            code: match readiness.state {
                BackendState::Unreachable => "comfyui_unreachable",
                BackendState::Starting | BackendState::Ready => "comfyui_not_ready",
            },
            message: readiness.message,
        });
    }
    // A job that could not be saved would waste the GPU's minutes: refuse it while the disk is full.
    if let DiskSpace::Full { free } = DiskSpace::of(state.images.dir()) {
        return Err(ApiError::Storage(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("{free} bytes free in the data folder"),
        )));
    }
    state
        .access
        .admit_jobs(caller.address, count)
        .map_err(|wait| match wait {
            Some(retry_after) => ApiError::TooManyRequests {
                code: "too_many_jobs",
                message: text().too_fast.to_owned(),
                retry_after,
            },
            None => ApiError::BadRequest {
                code: "too_many_jobs",
                message: (text().too_many_at_once)(count),
                field: Some("n".to_owned()),
            },
        })
}

#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "The job's id (a UUID), which is also its image's id.")),
    responses(
        (status = 200, description = "The job now.", body = JobView),
        (status = 404, description = "No such job (`not_found`).", body = ErrorBody),
    ))]
pub(super) async fn show(
    State(state): State<AppState>,
    JobIdParam(id): JobIdParam,
) -> Result<Response, ApiError> {
    let view = state
        .jobs
        .view(id)
        .await
        .ok_or_else(|| ApiError::NotFound(text().no_such_job))?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(view)).into_response())
}

#[utoipa::path(delete, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "The job's id (a UUID), which is also its image's id.")),
    responses(
        (status = 202, description = "Cancelling: a waiting job ends at once, one at ComfyUI when ComfyUI confirms.", body = JobView),
        (status = 403, description = "Another browser's job (`not_yours`), or the door refused.", body = ErrorBody),
        (status = 404, description = "No such job (`not_found`).", body = ErrorBody),
        (status = 409, description = "The job has already ended or its image is being saved (`conflict`).", body = ErrorBody),
        (status = 503, description = "The studio is restarting (`restarting`).", body = ErrorBody),
    ))]
pub(super) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    JobIdParam(id): JobIdParam,
) -> Result<Response, ApiError> {
    let view = state.jobs.cancel(id, caller.requester).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

#[utoipa::path(get, path = "/api/jobs/{id}/preview", tag = "jobs", params(("id" = String, Path, description = "The job's id (a UUID), which is also its image's id.")),
    responses(
        (status = 200, description = "The latest live preview of a running job (JPEG or PNG).", content_type = "image/jpeg"),
        (status = 404, description = "No such job, or no preview yet (`not_found`).", body = ErrorBody),
    ))]
pub(super) async fn preview(
    State(state): State<AppState>,
    JobIdParam(id): JobIdParam,
) -> Result<Response, ApiError> {
    let (image, mime) = state
        .jobs
        .preview(id)
        .await
        .ok_or_else(|| ApiError::NotFound(text().no_preview))?;
    Ok((
        [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-store")],
        image,
    )
        .into_response())
}
