//! The simulator's shared core: process state, connected clients, fault knobs and the worker
//! that runs one prompt at a time. HTTP handlers, socket tasks and the worker all go through it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::FailureKind;
use crate::catalog::Catalog;
use crate::hub::{Hub, Target};
use crate::net::Gate;
use crate::state::{QueueItem, State};

/// The folders `/view` serves (`type=output|input|temp`), all absolute and normalised.
#[derive(Debug)]
pub(crate) struct Dirs {
    pub(crate) output: PathBuf,
    pub(crate) input: PathBuf,
    pub(crate) temp: PathBuf,
    /// Temporary folders removed when the simulator goes away.
    _owned: Vec<tempfile::TempDir>,
}

impl Dirs {
    /// Uses `output` when given (created if missing), otherwise a fresh temporary folder.
    pub(crate) fn create(output: Option<PathBuf>) -> std::io::Result<Self> {
        let scratch = tempfile::Builder::new().prefix("comfy-sim-").tempdir()?;
        let output = match output {
            Some(dir) => {
                std::fs::create_dir_all(&dir)?;
                dir
            }
            None => scratch.path().join("output"),
        };
        let input = scratch.path().join("input");
        let temp = scratch.path().join("temp");
        for dir in [&output, &input, &temp] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            output: std::fs::canonicalize(&output)?,
            input: std::fs::canonicalize(&input)?,
            temp: std::fs::canonicalize(&temp)?,
            _owned: vec![scratch],
        })
    }
}

/// The fault knobs tests turn (see `Faults` for their meaning).
#[derive(Debug)]
pub(crate) struct Knobs {
    pub(crate) step_ms: watch::Sender<u64>,
    pub(crate) hold_at_step: watch::Sender<Option<u32>>,
    pub(crate) hold_at_node: watch::Sender<Option<String>>,
    pub(crate) drop_at_step: Mutex<Option<u32>>,
    pub(crate) stall_at_step: Mutex<Option<u32>>,
    pub(crate) fail_node: Mutex<Option<(String, FailureKind)>>,
    pub(crate) slow_view: watch::Sender<Option<Duration>>,
    pub(crate) slow_prompt: watch::Sender<Option<Duration>>,
    /// `POST /interrupt` lands too late to change anything (see [`crate::Faults::ignore_interrupts`]).
    pub(crate) ignore_interrupts: std::sync::atomic::AtomicBool,
}

/// Everything one simulated ComfyUI process shares between its tasks.
pub(crate) struct Shared {
    /// Rebuilt when the LoRA files change ([`Shared::set_loras`]), as ComfyUI re-reads models/loras.
    catalog: std::sync::RwLock<Arc<Catalog>>,
    models: Mutex<crate::catalog::ModelFiles>,
    /// Trigger phrases of LoRA files, by name (their `modelspec.trigger_phrase`).
    lora_triggers: std::collections::BTreeMap<String, String>,
    pub(crate) dirs: Dirs,
    /// `--preview-method latent2rgb` on the command line (previews unless a prompt says `none`).
    pub(crate) server_previews: bool,
    pub(crate) state: Mutex<State>,
    pub(crate) hub: Hub,
    pub(crate) gate: Arc<Gate>,
    pub(crate) knobs: Knobs,
    /// ComfyUI's global interrupt flag; cleared when a prompt starts.
    pub(crate) interrupt: watch::Sender<bool>,
    /// Wakes the worker when a prompt is queued.
    pub(crate) queue_wakeup: Notify,
    pub(crate) worker: Mutex<Option<JoinHandle<()>>>,
    /// Every body `POST /prompt` accepted, for tests to inspect.
    pub(crate) received: Mutex<Vec<Value>>,
    /// The largest `queue_remaining` so far, for tests of a client that feeds one prompt at a time.
    pub(crate) peak_queue: AtomicUsize,
    /// How many requests each `METHOD /path` got, for tests to inspect (see [`Shared::count_request`]).
    pub(crate) requests: Mutex<BTreeMap<String, u64>>,
    pub(crate) shutdown: watch::Sender<bool>,
}

/// How many distinct `METHOD /path` keys the request counts keep.
const MAX_COUNTED_PATHS: usize = 1024;

/// The key requests beyond [`MAX_COUNTED_PATHS`] are counted under.
pub(crate) const OTHER_REQUESTS: &str = "(other)";

/// Locks a mutex, carrying on after a panic elsewhere (every update here is a single assignment
/// or push, so a poisoned lock still holds consistent data).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch, the unit of every ComfyUI timestamp.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Waits until `delay` has passed since `start`, where `delay` is read from a knob and re-read
/// whenever the knob changes (so a test can shorten or lengthen a wait already under way).
/// `None` means no wait; a delay too long to represent waits until the knob changes.
pub(crate) async fn wait_adjustable<T>(
    mut knob: watch::Receiver<T>,
    start: tokio::time::Instant,
    delay: impl Fn(&T) -> Option<Duration>,
) {
    loop {
        let Some(wait) = delay(&knob.borrow_and_update()) else {
            return;
        };
        let deadline = start.checked_add(wait);
        tokio::select! {
            () = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            } => return,
            changed = knob.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// A WebSocket text frame `{"type": .., "data": ..}`.
pub(crate) fn ws_text(kind: &str, data: Value) -> String {
    json!({"type": kind, "data": data}).to_string()
}

impl Shared {
    /// The node classes as they are now.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(
            &self
                .catalog
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The LoRA files now in models/loras (a file dropped in or removed).
    pub(crate) fn set_loras(&self, mut loras: Vec<String>) {
        loras.sort();
        loras.dedup();
        let catalog = {
            let mut models = self
                .models
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            models.loras = loras;
            Catalog::new(&models)
        };
        *self
            .catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(catalog);
    }

    /// The `__metadata__` of a LoRA file: what a trainer writes (its name), and the trigger phrase
    /// where it was given one.
    pub(crate) fn lora_metadata(&self, name: &str) -> Option<Value> {
        let stem = name.rsplit('/').next()?.strip_suffix(".safetensors")?;
        let mut metadata = serde_json::Map::new();
        metadata.insert("ss_output_name".to_owned(), Value::from(stem));
        metadata.insert("modelspec.architecture".to_owned(), Value::from("z-image/lora"));
        if let Some(phrase) = self.lora_triggers.get(name) {
            metadata.insert(
                "modelspec.trigger_phrase".to_owned(),
                Value::from(phrase.as_str()),
            );
        }
        Some(Value::Object(metadata))
    }

    /// The LoRA files listed now.
    pub(crate) fn loras(&self) -> Vec<String> {
        self.models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .loras
            .clone()
    }

    pub(crate) fn new(
        models: crate::catalog::ModelFiles,
        lora_triggers: std::collections::BTreeMap<String, String>,
        dirs: Dirs,
        server_previews: bool,
        step_ms: u64,
    ) -> Self {
        Self {
            catalog: std::sync::RwLock::new(Arc::new(Catalog::new(&models))),
            models: Mutex::new(models),
            lora_triggers,
            dirs,
            server_previews,
            state: Mutex::new(State::default()),
            hub: Hub::default(),
            gate: Arc::new(Gate::default()),
            knobs: Knobs {
                step_ms: watch::Sender::new(step_ms),
                hold_at_step: watch::Sender::new(None),
                hold_at_node: watch::Sender::new(None),
                drop_at_step: Mutex::new(None),
                stall_at_step: Mutex::new(None),
                fail_node: Mutex::new(None),
                slow_view: watch::Sender::new(None),
                slow_prompt: watch::Sender::new(None),
                ignore_interrupts: std::sync::atomic::AtomicBool::new(false),
            },
            interrupt: watch::Sender::new(false),
            queue_wakeup: Notify::new(),
            worker: Mutex::new(None),
            received: Mutex::new(Vec::new()),
            peak_queue: AtomicUsize::new(0),
            requests: Mutex::new(BTreeMap::new()),
            shutdown: watch::Sender::new(false),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Counts one request. The demo runs a simulator for as long as the gateway, so the table is
    /// bounded: past [`MAX_COUNTED_PATHS`] distinct keys, new ones are counted under `OTHER`.
    pub(crate) fn count_request(&self, method: &str, path: &str) {
        let key = format!("{method} {path}");
        let mut requests = lock(&self.requests);
        let key = if requests.len() < MAX_COUNTED_PATHS || requests.contains_key(&key) {
            key
        } else {
            OTHER_REQUESTS.to_owned()
        };
        *requests.entry(key).or_default() += 1;
    }

    /// `{"status": {"exec_info": {"queue_remaining": N}}}` (+ `sid` in the greeting).
    pub(crate) fn status_message(queue_remaining: usize, sid: Option<&str>) -> String {
        let mut data = json!({"status": {"exec_info": {"queue_remaining": queue_remaining}}});
        if let Some(sid) = sid {
            data["sid"] = Value::String(sid.to_owned());
        }
        ws_text("status", data)
    }

    /// ComfyUI's `queue_updated()`: the queue size, to every socket. Called with the state locked
    /// so that status messages leave in the order the queue changed.
    pub(crate) fn broadcast_status(&self, state: &State) {
        self.hub.send_text(
            &Target::Broadcast,
            Self::status_message(state.queue_remaining(), None),
        );
    }

    /// Queues a validated prompt and wakes the worker.
    pub(crate) fn enqueue(&self, item: QueueItem) {
        let mut state = self.state();
        state.pending.push(Arc::new(item));
        // Only a new prompt makes the queue longer (starting one moves it from pending to running).
        self.peak_queue
            .fetch_max(state.queue_remaining(), Ordering::SeqCst);
        self.broadcast_status(&state);
        drop(state);
        self.queue_wakeup.notify_one();
    }

    /// `POST /queue {"delete": [..]}` for one id: removes it if pending.
    pub(crate) fn delete_pending(&self, prompt_id: &str) {
        let mut state = self.state();
        let Some(index) = state.pending.iter().position(|item| item.prompt_id == prompt_id) else {
            return;
        };
        // `delete_queue_item` wipes the queue when it held one item, and wiping reports the queue
        // too: that case sends two status messages, as the recording shows.
        if state.pending.len() == 1 {
            state.pending.clear();
            self.broadcast_status(&state);
        } else {
            state.pending.remove(index);
        }
        self.broadcast_status(&state);
    }

    /// `POST /queue {"clear": true}`.
    pub(crate) fn wipe_queue(&self) {
        let mut state = self.state();
        state.pending.clear();
        self.broadcast_status(&state);
    }

    /// `POST /interrupt`: global, or only if `prompt_id` is the one running.
    pub(crate) fn interrupt(&self, prompt_id: Option<&str>) {
        if self
            .knobs
            .ignore_interrupts
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            tracing::info!(
                ?prompt_id,
                "interrupt arrives after the last check; the prompt runs on"
            );
            return;
        }
        if let Some(prompt_id) = prompt_id {
            let running = self
                .state()
                .running
                .as_ref()
                .is_some_and(|item| item.prompt_id == prompt_id);
            if !running {
                tracing::info!(prompt_id, "prompt is not currently running, skipping interrupt");
                return;
            }
            tracing::info!(prompt_id, "interrupting prompt");
        } else {
            tracing::info!("global interrupt (no prompt_id specified)");
        }
        self.interrupt.send_replace(true);
    }

    /// Starts the worker that runs queued prompts one at a time.
    pub(crate) fn start_worker(self: &Arc<Self>) {
        let handle = tokio::spawn(crate::executor::worker(Arc::clone(self)));
        if let Some(old) = lock(&self.worker).replace(handle) {
            old.abort();
        }
    }

    /// Loses everything a process restart loses and cuts every connection.
    pub(crate) fn restart(self: &Arc<Self>) {
        if let Some(worker) = lock(&self.worker).take() {
            worker.abort();
        }
        *self.state() = State::default();
        self.hub.reset();
        self.gate.cut_all();
        self.interrupt.send_replace(false);
        if !*self.shutdown.borrow() {
            self.start_worker();
        }
        tracing::info!("simulated restart");
    }

    /// Stops serving: cuts connections and ends the worker.
    pub(crate) fn shut_down(&self) {
        self.shutdown.send_replace(true);
        if let Some(worker) = lock(&self.worker).take() {
            worker.abort();
        }
        self.gate.cut_all();
    }
}
