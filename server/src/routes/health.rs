//! `GET /healthz` (the process answers) and `GET /readyz` (the WebSocket to ComfyUI is up and ComfyUI
//! can run the workflow, and the data folder's disk has room: 503 otherwise, the body saying why; a disk
//! getting full is a warning before it is a 503). Both read state only; neither waits on ComfyUI.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use zimage_contract::{Readiness, paths};

use crate::state::AppState;
use crate::storage::DiskSpace;

/// The health routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(paths::HEALTHZ, get(healthz))
        .route(paths::READYZ, get(readyz))
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers.", content_type = "text/plain", body = String, example = "ok")))]
pub(super) async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready: jobs are accepted.", body = Readiness),
        (status = 503, description = "Not ready; `message` says why.", body = Readiness),
    ))]
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let mut readiness = state.readiness.borrow().clone();
    // The disk is the other half of being ready: a job that cannot be saved is no use.
    let disk = DiskSpace::of(state.images.dir());
    if let Some(message) = disk.message() {
        if matches!(disk, DiskSpace::Full { .. }) {
            readiness.ready = false;
            readiness.message = message.clone();
        }
        readiness.warnings.push(message);
    }
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(readiness),
    )
        .into_response()
}
