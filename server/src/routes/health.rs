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
use zimage_contract::{BackendList, DeviceInfo, LoraInfo, LoraList, Readiness, paths};

use super::language;
use crate::i18n::Text;
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
    let text = language::text();
    readiness.warnings = cpu_warnings(&readiness, text);
    // The disk is the other half of being ready: a job that cannot be saved is no use.
    let disk = DiskSpace::of(state.images.dir());
    if let Some(warning) = disk_warning(disk, text) {
        if matches!(disk, DiskSpace::Full { .. }) {
            readiness.ready = false;
            readiness.message = warning.clone();
        }
        readiness.warnings.push(warning);
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

/// Backends that compute on the CPU (ComfyUI found no GPU), in the request's language; with several
/// backends each is named.
fn cpu_warnings(readiness: &Readiness, text: &Text) -> Vec<String> {
    let on_cpu = |device: Option<&DeviceInfo>| device.is_some_and(|device| device.kind == "cpu");
    if readiness.backends.len() > 1 {
        readiness
            .backends
            .iter()
            .filter(|backend| on_cpu(backend.device.as_ref()))
            .map(|backend| format!("{}: {}", backend.name, text.cpu_warning))
            .collect()
    } else if on_cpu(readiness.device.as_ref()) {
        vec![text.cpu_warning.to_owned()]
    } else {
        Vec::new()
    }
}

/// The disk getting full, or full, in the request's language.
fn disk_warning(disk: DiskSpace, text: &Text) -> Option<String> {
    let mib = |bytes: u64| bytes / (1024 * 1024);
    match disk {
        DiskSpace::Plenty => None,
        DiskSpace::Low { free } => Some((text.disk_low_warning)(mib(free))),
        DiskSpace::Full { free } => Some((text.disk_full_warning)(mib(free))),
    }
}

#[cfg(test)]
mod tests {
    use zimage_contract::{BackendState, BackendStatus, BackendView};

    use super::*;
    use crate::storage::{LOW_FREE_SPACE_BYTES, MIN_FREE_SPACE_BYTES};

    fn device(kind: &str) -> DeviceInfo {
        DeviceInfo {
            name: kind.to_owned(),
            kind: kind.to_owned(),
            vram_total_bytes: 0,
            vram_free_bytes: 0,
        }
    }

    fn backend(name: &str, kind: &str) -> BackendView {
        BackendView {
            name: name.to_owned(),
            state: BackendStatus::Ready,
            reason: None,
            device: Some(device(kind)),
            jobs_done: 0,
            median_seconds_per_image: None,
            loras: Vec::new(),
        }
    }

    fn readiness(device: Option<DeviceInfo>, backends: Vec<BackendView>) -> Readiness {
        Readiness {
            ready: true,
            state: BackendState::Ready,
            demo: false,
            message: String::new(),
            missing_nodes: Vec::new(),
            missing_models: Vec::new(),
            device,
            warnings: Vec::new(),
            checked_at: 0,
            backends,
        }
    }

    #[test]
    fn a_backend_on_the_cpu_is_a_warning_in_the_request_s_language_named_among_several() {
        let zh = Text::of(crate::i18n::Lang::ZhCn);
        let one = readiness(Some(device("cpu")), vec![backend("gpu0", "cpu")]);
        assert_eq!(cpu_warnings(&one, zh), [zh.cpu_warning]);
        assert_eq!(
            cpu_warnings(&one, &Text::EN),
            [
                "ComfyUI runs on the CPU: each image will take minutes. Check that its container sees the GPU \
              (nvidia-smi inside it) and that the NVIDIA Container Toolkit is installed."
            ]
        );
        let several = readiness(
            Some(device("cuda")),
            vec![backend("gpu0", "cuda"), backend("den", "cpu")],
        );
        assert_eq!(cpu_warnings(&several, zh), [format!("den: {}", zh.cpu_warning)]);
        assert!(cpu_warnings(&readiness(Some(device("cuda")), Vec::new()), zh).is_empty());
        assert!(cpu_warnings(&readiness(None, Vec::new()), zh).is_empty());
    }

    #[test]
    fn the_disk_s_warnings_say_how_much_is_free() {
        let low = DiskSpace::from_free(LOW_FREE_SPACE_BYTES - 1);
        let full = DiskSpace::from_free(MIN_FREE_SPACE_BYTES - 1);
        assert!(
            disk_warning(low, &Text::EN)
                .unwrap()
                .contains("Only 255 MiB are free")
        );
        assert!(
            disk_warning(full, &Text::EN)
                .unwrap()
                .contains("is full (31 MiB free)")
        );
        let zh = Text::of(crate::i18n::Lang::ZhCn);
        assert!(disk_warning(full, zh).unwrap().contains("已满（剩余 31 MiB）"));
        assert_eq!(disk_warning(DiskSpace::Plenty, zh), None);
    }
}
