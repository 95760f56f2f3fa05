//! The backend status light: what `GET /readyz` says, in a word and a sentence.

use crate::api::{self, BackendState, Readiness};
use crate::i18n::Ui;

/// The colour of the light.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Not asked yet (the server-rendered page, before the bundle runs).
    Unknown,
    Ready,
    Demo,
    Starting,
    Down,
}

impl Tone {
    /// The CSS class suffix of the light.
    pub fn class(self) -> &'static str {
        match self {
            Tone::Unknown => "unknown",
            Tone::Ready => "ready",
            Tone::Demo => "demo",
            Tone::Starting => "starting",
            Tone::Down => "down",
        }
    }
}

/// What the light shows: a tone, a short label and the gateway's sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLight {
    pub tone: Tone,
    pub label: String,
    /// One or more lines for people: what the backend waits for, warnings.
    pub detail: String,
}

/// What the page last learned about the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendStatus {
    /// Nothing asked yet.
    Unknown,
    /// The gateway answered `/readyz`.
    Known(Readiness),
    /// The gateway itself did not answer.
    GatewayUnreachable,
}

impl BackendStatus {
    /// The light for this state.
    pub fn light(&self, ui: &Ui) -> StatusLight {
        match self {
            BackendStatus::Unknown => StatusLight {
                tone: Tone::Unknown,
                label: ui.checking.to_owned(),
                detail: ui.checking_detail.to_owned(),
            },
            BackendStatus::GatewayUnreachable => StatusLight {
                tone: Tone::Down,
                label: ui.offline.to_owned(),
                detail: ui.offline_detail.to_owned(),
            },
            BackendStatus::Known(readiness) => {
                let mut lines = vec![readiness.message.clone()];
                if !readiness.missing_nodes.is_empty() {
                    lines.push((ui.missing_nodes)(&readiness.missing_nodes.join(", ")));
                }
                if !readiness.missing_models.is_empty() {
                    lines.push((ui.missing_models)(&readiness.missing_models.join(", ")));
                }
                lines.extend(readiness.warnings.iter().cloned());
                lines.retain(|line| !line.trim().is_empty());
                let (tone, label) = match (readiness.state, readiness.demo) {
                    (BackendState::Ready, true) => (Tone::Demo, ui.demo),
                    (BackendState::Ready, false) => (Tone::Ready, ui.ready),
                    (BackendState::Starting, _) => (Tone::Starting, ui.backend_starting),
                    (BackendState::Unreachable, _) => (Tone::Down, ui.unreachable),
                };
                // With several GPUs the word becomes a count: "2 of 3 GPUs ready".
                let label = match readiness.backends.len() {
                    0 | 1 => label.to_owned(),
                    total => {
                        let ready = readiness
                            .backends
                            .iter()
                            .filter(|backend| {
                                matches!(
                                    backend.state,
                                    api::BackendStatus::Ready | api::BackendStatus::Busy
                                )
                            })
                            .count();
                        (ui.gpus_ready)(ready, total)
                    }
                };
                StatusLight {
                    tone,
                    label,
                    detail: lines.join("\n"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::{EN, ZH_CN};

    fn readiness(state: BackendState, demo: bool) -> Readiness {
        Readiness {
            ready: state == BackendState::Ready,
            state,
            demo,
            message: "waiting for ComfyUI at http://comfyui:8188".to_owned(),
            missing_nodes: Vec::new(),
            missing_models: Vec::new(),
            device: None,
            warnings: Vec::new(),
            checked_at: 0,
            backends: Vec::new(),
        }
    }

    #[test]
    fn each_backend_state_has_its_own_light() {
        let tone = |state, demo| BackendStatus::Known(readiness(state, demo)).light(&EN).tone;
        assert_eq!(tone(BackendState::Ready, false), Tone::Ready);
        assert_eq!(tone(BackendState::Ready, true), Tone::Demo);
        assert_eq!(tone(BackendState::Starting, false), Tone::Starting);
        assert_eq!(tone(BackendState::Unreachable, false), Tone::Down);
        assert_eq!(BackendStatus::Unknown.light(&EN).tone, Tone::Unknown);
        assert_eq!(BackendStatus::GatewayUnreachable.light(&EN).tone, Tone::Down);
    }

    #[test]
    fn starting_names_what_is_missing_and_warnings_follow() {
        let mut starting = readiness(BackendState::Starting, false);
        starting.missing_models = vec!["ae.safetensors".to_owned()];
        starting.missing_nodes = vec!["UnetLoaderGGUF".to_owned()];
        starting.warnings = vec!["ComfyUI runs on the CPU".to_owned()];
        let light = BackendStatus::Known(starting).light(&EN);
        assert_eq!(light.label, "Starting");
        assert!(light.detail.contains("Missing model files: ae.safetensors"));
        assert!(light.detail.contains("Missing node packs: UnetLoaderGGUF"));
        assert!(light.detail.ends_with("ComfyUI runs on the CPU"));
    }

    #[test]
    fn several_gpus_are_counted_in_the_label() {
        let backend = |name: &str, state| api::BackendView {
            name: name.to_owned(),
            state,
            reason: None,
            device: None,
            jobs_done: 0,
            median_seconds_per_image: None,
            loras: Vec::new(),
        };
        let mut ready = readiness(BackendState::Ready, false);
        ready.backends = vec![
            backend("gpu0", api::BackendStatus::Busy),
            backend("gpu1", api::BackendStatus::Ready),
            backend("den", api::BackendStatus::Down),
        ];
        assert_eq!(
            BackendStatus::Known(ready.clone()).light(&EN).label,
            "2 of 3 GPUs ready"
        );
        assert_eq!(
            BackendStatus::Known(ready.clone()).light(&ZH_CN).label,
            "3 块显卡中 2 块就绪"
        );
        ready.backends.truncate(1);
        assert_eq!(BackendStatus::Known(ready).light(&EN).label, "Ready");
    }
}
