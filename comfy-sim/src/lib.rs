//! A ComfyUI simulator: speaks ComfyUI 0.8.0's HTTP and WebSocket protocol, as recorded from a
//! genuine server, so the gateway can be tested and demonstrated without a GPU.
//!
//! # Layout
//! - [`Simulator::spawn`] serves on a bound listener and returns a [`SimHandle`]; its [`Faults`]
//!   script failures for tests (refused connections, a frozen process, dropped or stalled sockets,
//!   node errors, slow `/view`, restarts) and count what the simulator was sent.
//! - `http` and `ws` are the wire; `validation` is ComfyUI's prompt validator; `executor` runs one
//!   prompt at a time and emits the recorded message sequence; `jobs` is the 0.8.0 jobs API;
//!   `images` draws the seed-determined pictures (blended with the uploaded picture a graph starts
//!   from); `uploads` is `/upload/image` and the input folder `LoadImage` reads.
//! - `catalog` holds the recorded `/object_info`; `state` what a ComfyUI process keeps in memory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;

mod catalog;
mod executor;
mod frames;
mod http;
mod hub;
pub mod images;
mod jobs;
mod net;
mod ordered;
mod pyfmt;
mod shared;
mod state;
mod uploads;
mod validation;
mod ws;

use crate::catalog::ModelFiles;
use crate::shared::{Dirs, Shared, lock};

/// How a simulator starts.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Milliseconds each KSampler step takes (0 runs steps back to back).
    pub step_ms: u64,
    /// Previews for every prompt, like `--preview-method latent2rgb` (a prompt can still say
    /// `extra_data.preview_method: "none"`, and without this a prompt can ask for them).
    pub previews: bool,
    /// Diffusion model files offered by `UnetLoaderGGUF`.
    pub unet_models: Vec<String>,
    /// Text encoder files offered by `CLIPLoaderGGUF`.
    pub text_encoders: Vec<String>,
    /// VAE files offered by `VAELoader` (which also always offers `pixel_space`).
    pub vaes: Vec<String>,
    /// LoRA files in models/loras, offered by `LoraLoaderModelOnly` (sorted, as ComfyUI lists them).
    pub loras: Vec<String>,
    /// Trigger phrases of some of those files (served in their `/view_metadata/loras` answer).
    pub lora_triggers: std::collections::BTreeMap<String, String>,
    /// Where SaveImage writes; `None` makes a fresh temporary folder, removed with the simulator.
    pub output_dir: Option<PathBuf>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            step_ms: 40,
            previews: false,
            unet_models: vec!["z_image_turbo-Q8_0.gguf".to_owned()],
            text_encoders: vec!["Qwen3-4B-Q4_K_M.gguf".to_owned()],
            vaes: vec!["ae.safetensors".to_owned()],
            loras: Vec::new(),
            lora_triggers: std::collections::BTreeMap::new(),
            output_dir: None,
        }
    }
}

/// Which failure [`Faults::fail_node`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// An ordinary exception (`ValueError: GGUF magic invalid` for the GGUF loaders, as recorded;
    /// a `RuntimeError` elsewhere).
    Generic,
    /// `torch.OutOfMemoryError` with ComfyUI's out-of-memory tip appended to the message.
    OutOfMemory,
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Serves the simulator on `listener` (bind `127.0.0.1:0` in tests) until
    /// [`SimHandle::shutdown`]. Fails only if the output folder cannot be created.
    pub async fn spawn(listener: TcpListener, options: SimOptions) -> std::io::Result<SimHandle> {
        let addr = listener.local_addr()?;
        let dirs = Dirs::create(options.output_dir.clone())?;
        let mut loras = options.loras.clone();
        loras.sort();
        loras.dedup();
        let models = ModelFiles {
            unet: options.unet_models.clone(),
            text_encoders: options.text_encoders.clone(),
            vae: options.vaes.clone(),
            loras,
        };
        let shared = Arc::new(Shared::new(
            models,
            options.lora_triggers.clone(),
            dirs,
            options.previews,
            options.step_ms,
        ));
        shared.start_worker();

        let app = http::router(Arc::clone(&shared));
        let listener = net::GatedListener::new(listener, Arc::clone(&shared.gate));
        let mut stop = shared.shutdown.subscribe();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "simulator server failed");
            }
        });
        tracing::info!(%addr, output = %shared.dirs.output.display(), "ComfyUI simulator listening");
        Ok(SimHandle {
            addr,
            faults: Faults { shared },
        })
    }
}

/// A running simulator. Cloning is cheap; dropping a handle does not stop the simulator.
#[derive(Clone)]
pub struct SimHandle {
    addr: SocketAddr,
    faults: Faults,
}

impl SimHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, the base URL a ComfyUI client is configured with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Puts `loras` in models/loras in place of what was there (a file dropped in or removed): the
    /// next `/object_info` lists them and prompts are checked against them, as ComfyUI re-reads the
    /// folder on each request.
    pub fn set_loras(&self, loras: Vec<String>) {
        self.faults.shared.set_loras(loras);
    }

    /// The LoRA files it lists now, sorted.
    pub fn loras(&self) -> Vec<String> {
        self.faults.shared.loras()
    }

    /// The folder SaveImage writes to (what `/view?type=output` serves).
    pub fn output_dir(&self) -> PathBuf {
        self.faults.shared.dirs.output.clone()
    }

    /// Stops serving and cuts every connection.
    pub fn shutdown(&self) {
        self.faults.shared.shut_down();
    }

    /// The fault knobs and test probes.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }
}

/// Knobs that make the simulator misbehave the ways a real ComfyUI does, and probes for tests.
#[derive(Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl Faults {
    /// While `true`, new TCP connections are accepted and closed at once and open connections
    /// (WebSockets and keep-alive HTTP) are cut: ComfyUI is down. `false` brings it back, with
    /// its queue and history intact.
    pub fn refuse_connections(&self, refuse: bool) {
        self.shared.gate.set_refusing(refuse);
    }

    /// While `true`, ComfyUI is frozen, as under `docker pause` or with its event loop blocked: the
    /// OS still accepts connections, but nothing is read or written on any connection, open or new
    /// (HTTP calls and WebSocket handshakes hang, pings go unanswered, nothing is sent), and sampling
    /// stops at the end of the step under way. `false` resumes everything where it stood.
    pub fn stall(&self, stalled: bool) {
        self.shared.gate.set_stalled(stalled);
    }

    /// Changes how long each sampling step takes, the step under way included.
    pub fn set_step_ms(&self, step_ms: u64) {
        self.shared.knobs.step_ms.send_replace(step_ms);
    }

    /// Makes the running prompt (and every later one) stop before it sends progress step `k`,
    /// until [`Faults::release`] or an interrupt. Prompts queued behind it stay pending.
    pub fn hold_at_step(&self, step: Option<u32>) {
        self.shared.knobs.hold_at_step.send_replace(step);
    }

    /// Makes a prompt stop when node `node_id` begins (after its `executing` message, where
    /// ComfyUI checks for interrupts), until [`Faults::release`] or an interrupt: for example to
    /// cancel "during text encoding" deterministically.
    pub fn hold_at_node(&self, node_id: Option<String>) {
        self.shared.knobs.hold_at_node.send_replace(node_id);
    }

    /// While `true`, `POST /interrupt` changes nothing: as with a genuine ComfyUI whose prompt is past
    /// the last point where it checks the flag (decoding or saving the image), the prompt finishes.
    pub fn ignore_interrupts(&self, ignore: bool) {
        self.shared
            .knobs
            .ignore_interrupts
            .store(ignore, std::sync::atomic::Ordering::Relaxed);
    }

    /// Lets a held prompt go on and clears both holds.
    pub fn release(&self) {
        self.shared.knobs.hold_at_step.send_replace(None);
        self.shared.knobs.hold_at_node.send_replace(None);
    }

    /// Closes every WebSocket when a prompt reaches sampling step `k`; the prompt still completes
    /// (visible in `/history` and `/api/jobs`).
    pub fn drop_websockets_at_step(&self, step: Option<u32>) {
        *lock(&self.shared.knobs.drop_at_step) = step;
    }

    /// From sampling step `k`, every open WebSocket stops sending and reading (pings go unanswered)
    /// without closing; the prompt still completes. New connections work normally.
    pub fn stall_websockets_at_step(&self, step: Option<u32>) {
        *lock(&self.shared.knobs.stall_at_step) = step;
    }

    /// Fails the node with this id (when it runs, not when it is cached) with `execution_error`.
    pub fn fail_node(&self, failure: Option<(String, FailureKind)>) {
        *lock(&self.shared.knobs.fail_node) = failure;
    }

    /// Makes `/view` wait this long before answering (`Duration::MAX`: until the knob changes).
    /// A change applies to requests already waiting.
    pub fn slow_view(&self, delay: Option<Duration>) {
        self.shared.knobs.slow_view.send_replace(delay);
    }

    /// Makes `POST /prompt` wait this long before it looks at the body (`Duration::MAX`: until the
    /// knob changes): a slow or busy ComfyUI. Nothing is numbered or queued until then. A change
    /// applies to requests already waiting.
    pub fn slow_prompt(&self, delay: Option<Duration>) {
        self.shared.knobs.slow_prompt.send_replace(delay);
    }

    /// Simulates a process restart: the queue, history, cache and running prompt are lost and
    /// every connection is cut. Queue numbers start again from 0; files already saved stay.
    pub fn restart(&self) {
        self.shared.restart();
    }

    /// Sends a text frame to every open WebSocket now, whatever it holds: a broken or hostile
    /// ComfyUI (garbage JSON, unknown message types, messages about prompts nobody submitted).
    pub fn inject_text(&self, text: impl Into<String>) {
        self.shared
            .hub
            .send_text(&crate::hub::Target::Broadcast, text.into());
    }

    /// Sends a binary frame to every open WebSocket now, whatever it holds.
    pub fn inject_binary(&self, frame: impl Into<bytes::Bytes>) {
        self.shared
            .hub
            .send_binary(&crate::hub::Target::Broadcast, frame.into());
    }

    /// Every `POST /prompt` body that was accepted (200), oldest first; kept across restarts.
    pub fn prompts_received(&self) -> Vec<Value> {
        lock(&self.shared.received).clone()
    }

    /// The most prompts held at once (pending plus running, `queue_remaining`) since the simulator
    /// started; kept across restarts.
    pub fn peak_queue_remaining(&self) -> usize {
        self.shared.peak_queue.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many requests each `"METHOD /path"` got since the start (`"GET /ws"` counts WebSocket
    /// handshakes), kept across restarts. Past 1024 distinct keys, new ones count under `"(other)"`.
    pub fn requests_received(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.requests).clone()
    }

    /// The number of requests whose `"METHOD /path"` starts with `prefix`, e.g. `"GET /object_info"`.
    pub fn requests_to(&self, prefix: &str) -> u64 {
        lock(&self.shared.requests)
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(_, count)| count)
            .sum()
    }

    /// TCP connections accepted and still open (keep-alive HTTP and WebSockets alike).
    pub fn open_connections(&self) -> usize {
        self.shared.gate.open_connections()
    }
}
