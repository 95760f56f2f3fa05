//! `POST /api/jobs`, `GET` and `DELETE /api/jobs/{id}`, and the job's live preview image.

use super::language::text;
use app::api::{BackendState, CreateJobRequest, paths};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::JobIdParam;
use super::access::Caller;
use super::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::storage::DiskSpace;
use crate::validation::GenerationParams;

/// The job routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(paths::JOBS, axum::routing::post(create))
        .route("/api/jobs/{id}", get(show).delete(cancel))
        .route("/api/jobs/{id}/preview", get(preview))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateJobRequest>,
) -> Result<Response, ApiError> {
    let params = GenerationParams::try_from(request)?;
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
        .admit_job(caller.address)
        .map_err(|retry_after| ApiError::TooManyRequests {
            code: "too_many_jobs",
            message: text().too_fast.to_owned(),
            retry_after,
        })?;
    let accepted = state.jobs.submit(params, caller.requester.client).await?;
    let location = paths::job(&accepted.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(accepted),
    )
        .into_response())
}

async fn show(State(state): State<AppState>, JobIdParam(id): JobIdParam) -> Result<Response, ApiError> {
    let view = state
        .jobs
        .view(id)
        .ok_or_else(|| ApiError::NotFound(text().no_such_job))?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(view)).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    JobIdParam(id): JobIdParam,
) -> Result<Response, ApiError> {
    let view = state.jobs.cancel(id, caller.requester)?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

async fn preview(State(state): State<AppState>, JobIdParam(id): JobIdParam) -> Result<Response, ApiError> {
    let (image, mime) = state
        .jobs
        .preview(id)
        .ok_or_else(|| ApiError::NotFound(text().no_preview))?;
    Ok((
        [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-store")],
        image,
    )
        .into_response())
}
