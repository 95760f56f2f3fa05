//! Readiness: a background probe of ComfyUI (reachable? node packs and model files present? which
//! device?) whose latest answer `/readyz` and the page read without ever waiting on ComfyUI.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use app::api::{BackendState, Readiness};
use tokio::sync::watch;

use crate::comfy::client::{ComfyClient, Probe};
use crate::comfy::workflow::Workflow;

/// How often ComfyUI is probed.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTuning {
    /// While ComfyUI is not ready: soon after it comes up, the studio should say so.
    pub while_waiting: Duration,
    /// Once ready: only to notice it going away.
    pub while_ready: Duration,
}

impl Default for ProbeTuning {
    fn default() -> ProbeTuning {
        ProbeTuning {
            while_waiting: Duration::from_secs(2),
            while_ready: Duration::from_secs(15),
        }
    }
}

/// Starts probing; the receiver always holds the latest answer.
pub fn spawn(
    comfy: ComfyClient,
    workflow: Arc<Workflow>,
    comfy_url: String,
    demo: bool,
    tuning: ProbeTuning,
) -> (watch::Receiver<Readiness>, tokio::task::JoinHandle<()>) {
    let initial = unreachable(&comfy_url, demo, "not checked yet");
    let (sender, receiver) = watch::channel(initial);
    let task = tokio::spawn(async move {
        loop {
            let readiness = match comfy.probe(&workflow).await {
                Ok(probe) => from_probe(probe, &comfy_url, demo),
                Err(error) => unreachable(&comfy_url, demo, &error.to_string()),
            };
            let pause = if readiness.ready {
                tuning.while_ready
            } else {
                tuning.while_waiting
            };
            let changed = sender.borrow().state != readiness.state;
            if changed {
                tracing::info!(state = ?readiness.state, message = %readiness.message, "backend readiness changed");
            }
            if sender.send(readiness).is_err() {
                return;
            }
            tokio::time::sleep(pause).await;
        }
    });
    (receiver, task)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn unreachable(comfy_url: &str, demo: bool, reason: &str) -> Readiness {
    Readiness {
        ready: false,
        state: BackendState::Unreachable,
        demo,
        message: format!("Waiting for ComfyUI at {comfy_url} ({reason})."),
        missing_nodes: Vec::new(),
        missing_models: Vec::new(),
        device: None,
        warnings: Vec::new(),
        checked_at: now_ms(),
    }
}

/// Turns a probe into the answer people read.
pub fn from_probe(probe: Probe, comfy_url: &str, demo: bool) -> Readiness {
    let mut problems = Vec::new();
    if !probe.missing_nodes.is_empty() {
        problems.push(format!(
            "ComfyUI lacks the node types {} (is the ComfyUI-GGUF node pack installed?)",
            probe.missing_nodes.join(", ")
        ));
    }
    if !probe.missing_models.is_empty() {
        problems.push(format!(
            "model files not installed: {} (run `zimage models fetch`)",
            probe.missing_models.join(", ")
        ));
    }
    problems.extend(probe.other_problems.iter().cloned());
    let mut warnings = Vec::new();
    if let Some(device) = &probe.device
        && device.kind == "cpu"
    {
        warnings.push(
            "ComfyUI runs on the CPU: each image will take minutes. Check that the container sees the GPU \
             (nvidia-smi inside it) and that the NVIDIA Container Toolkit is installed."
                .to_owned(),
        );
    }
    let ready = problems.is_empty();
    let message = if !ready {
        problems.join("; ")
    } else if demo {
        "Demo mode: a built-in ComfyUI simulator makes test patterns instead of images.".to_owned()
    } else {
        match &probe.device {
            Some(device) => format!("Ready on {}.", device.name),
            None => format!("Ready: ComfyUI at {comfy_url}."),
        }
    };
    Readiness {
        ready,
        state: if ready {
            BackendState::Ready
        } else {
            BackendState::Starting
        },
        demo,
        message,
        missing_nodes: probe.missing_nodes,
        missing_models: probe.missing_models,
        device: probe.device,
        warnings,
        checked_at: now_ms(),
    }
}
