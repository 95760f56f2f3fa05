//! `GET /healthz` (the process answers), `GET /readyz` (at least one ComfyUI backend is connected and
//! can run the workflow, and the data folder's disk has room: 503 otherwise, the body saying why and
//! which backends are not ready; a disk getting full is a warning before it is a 503) and
//! `GET /api/backends` (each backend by name: state, GPU, jobs done, median time per image; never its
//! address, with the LoRA files it lists), and `GET /api/loras` (every LoRA some backend lists, with
//! the backends that have it). All read state only; none waits on ComfyUI.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use zimage_contract::{BackendList, LoraInfo, LoraList, Readiness, paths};

use crate::state::AppState;
use crate::storage::DiskSpace;

/// The health routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(paths::HEALTHZ, get(healthz))
        .route(paths::READYZ, get(readyz))
        .route(paths::BACKENDS, get(backends))
        .route(zimage_contract::styles::paths::LORAS, get(loras))
}

#[utoipa::path(get, path = "/api/loras", tag = "health",
    responses((status = 200, description = "Every LoRA file some backend lists (as it last listed them), sorted by name, with the backends that have it. A job may use only these.", body = LoraList)))]
pub(super) async fn loras(State(state): State<AppState>) -> Response {
    (
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(lora_list(&state.jobs.backends().await, &state.lora_triggers)),
    )
        .into_response()
}

/// The LoRAs of every backend, by name, each with the backends that list it.
fn lora_list(
    backends: &[zimage_contract::BackendView],
    triggers: &crate::readiness::TriggerWords,
) -> LoraList {
    let mut by_name: std::collections::BTreeMap<&str, Vec<String>> = std::collections::BTreeMap::new();
    for backend in backends {
        for name in &backend.loras {
            by_name
                .entry(name.as_str())
                .or_default()
                .push(backend.name.clone());
        }
    }
    LoraList {
        loras: by_name
            .into_iter()
            .map(|(name, backends)| LoraInfo {
                name: name.to_owned(),
                backends,
                trigger_words: triggers.get(name),
            })
            .collect(),
    }
}

#[utoipa::path(get, path = "/api/backends", tag = "health",
    responses((status = 200, description = "Every ComfyUI backend by name (never its address): state, GPU, jobs done, median seconds per image.", body = BackendList)))]
pub(super) async fn backends(State(state): State<AppState>) -> Response {
    (
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(BackendList {
            backends: state.jobs.backends().await,
        }),
    )
        .into_response()
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
    readiness.backends = state.jobs.backends().await;
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
