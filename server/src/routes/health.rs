//! `GET /healthz` (the process answers) and `GET /readyz` (the WebSocket to ComfyUI is up and ComfyUI
//! can run the workflow: 503 otherwise, the body saying why). Both read state only; neither waits on
//! ComfyUI.

use app::api::paths;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;

/// The health routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(paths::HEALTHZ, get(healthz))
        .route(paths::READYZ, get(readyz))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.readiness.borrow().clone();
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
