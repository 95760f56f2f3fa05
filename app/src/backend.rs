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

/// What the light shows: a tone, a short label and lines of detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLight {
    pub tone: Tone,
    pub label: String,
    /// What the backend waits for, what is missing, warnings.
    pub detail: Vec<DetailLine>,
}

/// One line of the light's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailLine {
    pub text: String,
    /// The gateway's own words (English), for what only it can say: why ComfyUI does not answer,
    /// what else a probe found wrong. Shown as written and marked as English, since they carry
    /// addresses and system errors that have no translation.
    pub gateway_words: bool,
}

impl DetailLine {
    fn ours(text: impl ToString) -> DetailLine {
        DetailLine {
            text: text.to_string(),
            gateway_words: false,
        }
    }

    fn gateway(text: &str) -> DetailLine {
        DetailLine {
            text: text.to_owned(),
            gateway_words: true,
        }
    }
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
    /// The light for this state, in the page's language: its sentences are built from what the
    /// answer says in fields (state, device, what is missing), not from the gateway's English
    /// `message`, which comes only where it says what no field does.
    pub fn light(&self, ui: &Ui) -> StatusLight {
        match self {
            BackendStatus::Unknown => StatusLight {
                tone: Tone::Unknown,
                label: ui.checking.to_owned(),
                detail: vec![DetailLine::ours(ui.checking_detail)],
            },
            BackendStatus::GatewayUnreachable => StatusLight {
                tone: Tone::Down,
                label: ui.offline.to_owned(),
                detail: vec![DetailLine::ours(ui.offline_detail)],
            },
            BackendStatus::Known(readiness) => {
                let (tone, label) = match (readiness.state, readiness.demo) {
                    // Every backend is fine, but the studio takes no job (its disk is full).
                    (BackendState::Ready, _) if !readiness.ready => (Tone::Starting, ui.not_ready),
                    (BackendState::Ready, true) => (Tone::Demo, ui.demo),
                    (BackendState::Ready, false) => (Tone::Ready, ui.ready),
                    (BackendState::Starting, _) => (Tone::Starting, ui.backend_starting),
                    (BackendState::Unreachable, _) => (Tone::Down, ui.unreachable),
                };
                let (label, mut detail) = if readiness.backends.len() > 1 {
                    several_backends(readiness, ui)
                } else {
                    (label.to_owned(), one_backend(readiness, ui))
                };
                // Written by the gateway in the page's language (the request carries it).
                detail.extend(readiness.warnings.iter().map(DetailLine::ours));
                StatusLight { tone, label, detail }
            }
        }
    }
}

/// The lines of the only backend.
fn one_backend(readiness: &Readiness, ui: &Ui) -> Vec<DetailLine> {
    let missing = missing_lines(readiness, ui);
    let mut lines = match (readiness.state, readiness.demo, &readiness.device) {
        // The warnings say why.
        (BackendState::Ready, _, _) if !readiness.ready => Vec::new(),
        (BackendState::Ready, true, _) => vec![DetailLine::ours(ui.demo_banner)],
        (BackendState::Ready, false, Some(device)) => vec![DetailLine::ours((ui.ready_on)(&device.name))],
        (BackendState::Ready, false, None) => vec![DetailLine::ours(ui.ready_detail)],
        (BackendState::Starting, _, _) if !missing.is_empty() => vec![DetailLine::ours(ui.starting_detail)],
        (BackendState::Starting, _, _) => vec![
            DetailLine::ours(ui.starting_detail),
            DetailLine::gateway(&readiness.message),
        ],
        (BackendState::Unreachable, _, _) => vec![
            DetailLine::ours(ui.unreachable_detail),
            DetailLine::gateway(&readiness.message),
        ],
    };
    lines.extend(missing);
    lines
}

/// With several GPUs the word becomes a count ("2 of 3 GPUs ready") and each backend has its line.
fn several_backends(readiness: &Readiness, ui: &Ui) -> (String, Vec<DetailLine>) {
    let mut ready = 0;
    let mut lines = Vec::new();
    // A backend that is down says why in the gateway's words; one that is starting says what it
    // misses below, for all backends at once (else in the gateway's words too).
    let missing_said = !readiness.missing_nodes.is_empty() || !readiness.missing_models.is_empty();
    for backend in &readiness.backends {
        let word = match backend.state {
            api::BackendStatus::Ready => ui.ready,
            api::BackendStatus::Busy => ui.backend_busy,
            api::BackendStatus::NotReady => ui.backend_starting,
            api::BackendStatus::Down => ui.unreachable,
        };
        if matches!(
            backend.state,
            api::BackendStatus::Ready | api::BackendStatus::Busy
        ) {
            ready += 1;
        }
        let device = backend
            .device
            .as_ref()
            .map_or_else(String::new, |device| format!(" ({})", device.name));
        lines.push(DetailLine::ours(format!("{}: {word}{device}", backend.name)));
        if let Some(reason) = &backend.reason
            && (backend.state == api::BackendStatus::Down || !missing_said)
        {
            lines.push(DetailLine::gateway(&format!("{}: {reason}", backend.name)));
        }
    }
    lines.extend(missing_lines(readiness, ui));
    ((ui.gpus_ready)(ready, readiness.backends.len()), lines)
}

fn missing_lines(readiness: &Readiness, ui: &Ui) -> Vec<DetailLine> {
    let mut lines = Vec::new();
    if !readiness.missing_nodes.is_empty() {
        lines.push(DetailLine::ours((ui.missing_nodes)(
            &readiness.missing_nodes.join(", "),
        )));
    }
    if !readiness.missing_models.is_empty() {
        lines.push(DetailLine::ours((ui.missing_models)(
            &readiness.missing_models.join(", "),
        )));
    }
    lines
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

    fn device(name: &str, kind: &str) -> api::DeviceInfo {
        api::DeviceInfo {
            name: name.to_owned(),
            kind: kind.to_owned(),
            vram_total_bytes: 0,
            vram_free_bytes: 0,
        }
    }

    fn texts(light: &StatusLight) -> Vec<(&str, bool)> {
        light
            .detail
            .iter()
            .map(|line| (line.text.as_str(), line.gateway_words))
            .collect()
    }

    #[test]
    fn starting_names_what_is_missing_and_the_gateway_s_warnings_follow() {
        let mut starting = readiness(BackendState::Starting, false);
        starting.missing_models = vec!["ae.safetensors".to_owned()];
        starting.missing_nodes = vec!["UnetLoaderGGUF".to_owned()];
        starting.warnings = vec!["ComfyUI runs on the CPU".to_owned()];
        let light = BackendStatus::Known(starting).light(&EN);
        assert_eq!(light.label, "Starting");
        assert_eq!(
            texts(&light),
            [
                (EN.starting_detail, false),
                ("Missing node packs: UnetLoaderGGUF", false),
                ("Missing model files: ae.safetensors", false),
                ("ComfyUI runs on the CPU", false),
            ]
        );
    }

    #[test]
    fn the_gateway_s_words_come_only_for_what_no_field_says_and_are_marked() {
        let down = BackendStatus::Known(readiness(BackendState::Unreachable, false));
        assert_eq!(
            texts(&down.light(&ZH_CN)),
            [
                (ZH_CN.unreachable_detail, false),
                ("waiting for ComfyUI at http://comfyui:8188", true),
            ]
        );
        // A probe's other trouble has no field: the gateway says it.
        let starting = BackendStatus::Known(readiness(BackendState::Starting, false));
        assert!(texts(&starting.light(&ZH_CN))[1].1);
        let mut ready = readiness(BackendState::Ready, false);
        ready.message = "Ready on NVIDIA GeForce RTX 3060.".to_owned();
        ready.device = Some(device("NVIDIA GeForce RTX 3060", "cuda"));
        assert_eq!(
            texts(&BackendStatus::Known(ready).light(&ZH_CN)),
            [("已就绪，运行在 NVIDIA GeForce RTX 3060 上。", false)]
        );
        assert_eq!(
            texts(&BackendStatus::Known(readiness(BackendState::Ready, true)).light(&ZH_CN)),
            [(ZH_CN.demo_banner, false)]
        );
        // A full disk: every backend is fine, the studio is not ready, and its warning says why.
        let mut full = readiness(BackendState::Ready, false);
        full.ready = false;
        full.warnings = vec!["存放图片的磁盘已满".to_owned()];
        let light = BackendStatus::Known(full).light(&ZH_CN);
        assert_eq!(
            (light.tone, light.label.as_str()),
            (Tone::Starting, ZH_CN.not_ready)
        );
        assert_eq!(texts(&light), [("存放图片的磁盘已满", false)]);
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
        ready.backends[0].device = Some(device("cpu", "cpu"));
        ready.backends[2].reason = Some("Waiting for ComfyUI at http://den:8188 (refused).".to_owned());
        ready.warnings = vec!["gpu0: ComfyUI 正在用 CPU 运行".to_owned()];
        assert_eq!(
            texts(&BackendStatus::Known(ready.clone()).light(&ZH_CN)),
            [
                ("gpu0: 忙碌 (cpu)", false),
                ("gpu1: 就绪", false),
                ("den: 无法连接", false),
                ("den: Waiting for ComfyUI at http://den:8188 (refused).", true),
                ("gpu0: ComfyUI 正在用 CPU 运行", false),
            ]
        );
        ready.backends.truncate(1);
        assert_eq!(BackendStatus::Known(ready).light(&EN).label, "Ready");
    }
}
