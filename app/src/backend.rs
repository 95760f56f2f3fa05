//! The backend status light: what `GET /readyz` says, in a word and a sentence.

use crate::api::{self, BackendState, Readiness};

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
    pub fn light(&self) -> StatusLight {
        match self {
            BackendStatus::Unknown => StatusLight {
                tone: Tone::Unknown,
                label: "Checking".to_owned(),
                detail: "Asking the gateway whether ComfyUI is ready.".to_owned(),
            },
            BackendStatus::GatewayUnreachable => StatusLight {
                tone: Tone::Down,
                label: "Offline".to_owned(),
                detail: "The studio's gateway does not answer. Check the network.".to_owned(),
            },
            BackendStatus::Known(readiness) => {
                let mut lines = vec![readiness.message.clone()];
                if !readiness.missing_nodes.is_empty() {
                    lines.push(format!(
                        "Missing node packs: {}",
                        readiness.missing_nodes.join(", ")
                    ));
                }
                if !readiness.missing_models.is_empty() {
                    lines.push(format!(
                        "Missing model files: {}",
                        readiness.missing_models.join(", ")
                    ));
                }
                lines.extend(readiness.warnings.iter().cloned());
                lines.retain(|line| !line.trim().is_empty());
                let (tone, label) = match (readiness.state, readiness.demo) {
                    (BackendState::Ready, true) => (Tone::Demo, "Demo"),
                    (BackendState::Ready, false) => (Tone::Ready, "Ready"),
                    (BackendState::Starting, _) => (Tone::Starting, "Starting"),
                    (BackendState::Unreachable, _) => (Tone::Down, "Unreachable"),
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
                        format!("{ready} of {total} GPUs ready")
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
        let tone = |state, demo| BackendStatus::Known(readiness(state, demo)).light().tone;
        assert_eq!(tone(BackendState::Ready, false), Tone::Ready);
        assert_eq!(tone(BackendState::Ready, true), Tone::Demo);
        assert_eq!(tone(BackendState::Starting, false), Tone::Starting);
        assert_eq!(tone(BackendState::Unreachable, false), Tone::Down);
        assert_eq!(BackendStatus::Unknown.light().tone, Tone::Unknown);
        assert_eq!(BackendStatus::GatewayUnreachable.light().tone, Tone::Down);
    }

    #[test]
    fn starting_names_what_is_missing_and_warnings_follow() {
        let mut starting = readiness(BackendState::Starting, false);
        starting.missing_models = vec!["ae.safetensors".to_owned()];
        starting.missing_nodes = vec!["UnetLoaderGGUF".to_owned()];
        starting.warnings = vec!["ComfyUI runs on the CPU".to_owned()];
        let light = BackendStatus::Known(starting).light();
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
        };
        let mut ready = readiness(BackendState::Ready, false);
        ready.backends = vec![
            backend("gpu0", api::BackendStatus::Busy),
            backend("gpu1", api::BackendStatus::Ready),
            backend("den", api::BackendStatus::Down),
        ];
        assert_eq!(
            BackendStatus::Known(ready.clone()).light().label,
            "2 of 3 GPUs ready"
        );
        ready.backends.truncate(1);
        assert_eq!(BackendStatus::Known(ready).light().label, "Ready");
    }
}
