//! `GET /healthz` (the process answers), `GET /readyz` (at least one ComfyUI backend is connected and
//! can run the workflow, and the data folder's disk has room: 503 otherwise, the body saying why and
//! which backends are not ready; a disk getting full is a warning before it is a 503) and
//! `GET /api/backends` (each backend by name: state, GPU, jobs done, median time per image; never its
//! address). All read state only; none waits on ComfyUI.

use app::api::{BackendList, paths};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;
use crate::storage::DiskSpace;

/// The health routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(paths::HEALTHZ, get(healthz))
        .route(paths::READYZ, get(readyz))
        .route(paths::BACKENDS, get(backends))
}

async fn backends(State(state): State<AppState>) -> Response {
    (
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(BackendList {
            backends: state.jobs.backends(),
        }),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let mut readiness = state.readiness.borrow().clone();
    readiness.backends = state.jobs.backends();
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
