//! Runs queued prompts one at a time like ComfyUI's prompt worker and `PromptExecutor`: the node
//! order of `ExecutionList`, the classic output cache, and every WebSocket message in the order
//! and to the clients the recorded traces show.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use image::{GrayImage, RgbImage};
use serde_json::{Map, Value, json};

use crate::FailureKind;
use crate::catalog::{Catalog, InputType};
use crate::frames::{self, ImageFormat};
use crate::hub::Target;
use crate::images::{self, Recipe};
use crate::ordered::OValue;
use crate::shared::{Shared, lock, now_ms, wait_adjustable, ws_text};
use crate::state::{HistoryEntry, QueueItem};
use crate::uploads;
use crate::validation::converted_inputs;

/// What a node produced, as far as the simulation needs to know.
#[derive(Debug, Clone)]
pub(crate) enum NodeValue {
    /// A model, CLIP, VAE or conditioning: nothing to compute with.
    Opaque,
    /// A diffusion model with the LoRAs applied to it (name, strength), in order.
    Model {
        loras: Vec<(String, f64)>,
    },
    Latent {
        /// The colour cast of the LoRAs of the model that sampled it (see [`images::lora_tint`]).
        tint: Option<images::Tint>,
        width: u32,
        height: u32,
        batch: u32,
        seed: Option<u64>,
        /// The encoded picture this latent starts from (VAEEncode), if any.
        init: Option<Init>,
    },
    Image {
        recipe: Recipe,
        batch: u32,
    },
    /// LoadImage: the picture (slot 0) and the mask made from its alpha (slot 1).
    Loaded {
        picture: Arc<RgbImage>,
        mask: Arc<GrayImage>,
    },
}

/// A picture a latent starts from: what VAEEncode encoded, the noise mask SetLatentNoiseMask put on
/// it, and how much the sampler let change (its `denoise`).
#[derive(Debug, Clone)]
pub(crate) struct Init {
    picture: Arc<RgbImage>,
    mask: Option<Arc<GrayImage>>,
    denoise: f32,
}

/// A cached node output: its value and, for output nodes, the UI output `executed` replays.
#[derive(Debug, Clone)]
pub(crate) struct CacheEntry {
    value: NodeValue,
    ui: Option<Value>,
}

/// How a prompt ended.
enum Outcome {
    Success,
    Interrupted { node_id: String },
    Error { node_id: String, exception: Exception },
}

/// A Python exception as `execution_error` reports it.
struct Exception {
    message: String,
    type_name: String,
    traceback: Vec<String>,
}

/// Why a node stopped early.
enum NodeStop {
    Interrupted,
    Failed(Exception),
}

/// The prompt worker: takes the next prompt, runs it, records it, forever.
pub(crate) async fn worker(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut state = shared.state();
            let next = state.take_next();
            if next.is_some() {
                shared.broadcast_status(&state);
            } else if state.free_memory_requested {
                state.cache.clear();
                state.free_memory_requested = false;
            }
            next
        };
        match next {
            Some(item) => {
                let mut run = Run::new(&shared, &item);
                let outcome = run.execute().await;
                run.finish(outcome);
            }
            None => shared.queue_wakeup.notified().await,
        }
    }
}

/// Progress of one node in `progress_state` (comfy_execution/progress.py): a fresh entry holds
/// ints 0/1, `start_progress` sets floats 0.0/1.0, and `finish_progress` copies max into value.
#[derive(Debug, Clone)]
struct NodeProgress {
    value: Value,
    max: Value,
    running: bool,
}

/// One prompt being executed.
struct Run<'a> {
    shared: &'a Shared,
    item: &'a QueueItem,
    target: Target,
    has_client: bool,
    previews: bool,
    nodes: Vec<(String, OValue)>,
    messages: Vec<(String, Value)>,
    progress: Vec<(String, NodeProgress)>,
    executed: Vec<String>,
    ui_outputs: Vec<(String, Value)>,
    values: HashMap<String, NodeValue>,
}

impl<'a> Run<'a> {
    fn new(shared: &'a Shared, item: &'a QueueItem) -> Self {
        let client_id = item.client_id();
        // `extra_data.preview_method` (0.8.0) overrides `--preview-method` for this prompt only.
        let previews = match item.extra_data.get("preview_method").and_then(Value::as_str) {
            Some("none") => false,
            Some("latent2rgb" | "taesd" | "auto") => true,
            _ => shared.server_previews,
        };
        let nodes = item
            .graph
            .entries()
            .unwrap_or_default()
            .into_iter()
            .map(|(id, node)| (id.to_owned(), node.clone()))
            .collect();
        Self {
            shared,
            item,
            target: Target::from_client_id(client_id.as_deref()),
            has_client: client_id.is_some(),
            previews,
            nodes,
            messages: Vec::new(),
            progress: Vec::new(),
            executed: Vec::new(),
            ui_outputs: Vec::new(),
            values: HashMap::new(),
        }
    }

    fn prompt_id(&self) -> &str {
        &self.item.prompt_id
    }

    fn node(&self, id: &str) -> Option<&OValue> {
        self.nodes.iter().find(|(k, _)| k == id).map(|(_, v)| v)
    }

    fn class_type(&self, id: &str) -> String {
        self.node(id)
            .and_then(|n| n.get("class_type"))
            .and_then(OValue::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    fn send(&self, kind: &str, data: Value) {
        self.shared.hub.send_text(&self.target, ws_text(kind, data));
    }

    /// `PromptExecutor.add_message`: stamped, kept for history, and sent only when the prompt has a
    /// client (or, for `execution_interrupted`, to everyone when it has none).
    fn add_message(&mut self, event: &str, mut data: Value, broadcast: bool) {
        data["timestamp"] = json!(now_ms());
        self.messages.push((event.to_owned(), data.clone()));
        if self.has_client || broadcast {
            self.send(event, data);
        }
    }

    fn send_progress_state(&self) {
        let nodes: Map<String, Value> = self
            .progress
            .iter()
            .map(|(id, p)| {
                (
                    id.clone(),
                    json!({
                        "value": p.value,
                        "max": p.max,
                        "state": if p.running { "running" } else { "finished" },
                        "node_id": id,
                        "prompt_id": self.prompt_id(),
                        "display_node_id": id,
                        "parent_node_id": null,
                        "real_node_id": id,
                    }),
                )
            })
            .collect();
        self.send(
            "progress_state",
            json!({"prompt_id": self.prompt_id(), "nodes": nodes}),
        );
    }

    fn progress_entry(&mut self, id: &str) -> &mut NodeProgress {
        if let Some(index) = self.progress.iter().position(|(k, _)| k == id) {
            return &mut self.progress[index].1;
        }
        self.progress.push((
            id.to_owned(),
            NodeProgress {
                value: json!(0),
                max: json!(1),
                running: false,
            },
        ));
        let last = self.progress.len() - 1;
        &mut self.progress[last].1
    }

    fn start_progress(&mut self, id: &str) {
        *self.progress_entry(id) = NodeProgress {
            value: json!(0.0),
            max: json!(1.0),
            running: true,
        };
        self.send_progress_state();
    }

    fn update_progress(&mut self, id: &str, value: u32, max: u32) {
        *self.progress_entry(id) = NodeProgress {
            value: json!(value),
            max: json!(max),
            running: true,
        };
        self.send_progress_state();
    }

    fn finish_progress(&mut self, id: &str) {
        let entry = self.progress_entry(id);
        entry.value = entry.max.clone();
        entry.running = false;
        self.send_progress_state();
    }

    async fn execute(&mut self) -> Outcome {
        self.shared.interrupt.send_replace(false);
        self.add_message("execution_start", json!({"prompt_id": self.prompt_id()}), false);

        let signatures = signatures(&self.nodes, &self.files_changed().await);
        let live: HashSet<u64> = signatures.values().flatten().copied().collect();
        let mut cached_entries: HashMap<String, CacheEntry> = HashMap::new();
        let mut cached_ids = Vec::new();
        {
            let mut state = self.shared.state();
            // The classic cache keeps only what the current prompt can use.
            state.cache.retain(|signature, _| live.contains(signature));
            for (id, _) in &self.nodes {
                if let Some(entry) = signatures
                    .get(id)
                    .copied()
                    .flatten()
                    .and_then(|s| state.cache.get(&s))
                {
                    cached_ids.push(id.clone());
                    cached_entries.insert(id.clone(), entry.clone());
                }
            }
        }
        self.add_message(
            "execution_cached",
            json!({"nodes": cached_ids, "prompt_id": self.prompt_id()}),
            false,
        );

        let cached: HashSet<String> = cached_entries.keys().cloned().collect();
        // Cached nodes feed the ones that run, just as their stored outputs do in ComfyUI.
        for (id, entry) in &cached_entries {
            self.values.insert(id.clone(), entry.value.clone());
        }
        let shared = self.shared;
        let nodes = self.nodes.clone();
        let catalog = shared.catalog();
        let mut list = ExecutionList::new(&catalog, &nodes, &cached);
        for output in &self.item.outputs {
            list.add_node(output);
        }
        loop {
            let node_id = match list.stage() {
                Stage::Node(id) => id,
                Stage::Done => break,
                Stage::Cycle(id) => {
                    let exception = Exception {
                        message: "Dependency cycle detected".to_owned(),
                        type_name: "comfy_execution.graph.DependencyCycleError".to_owned(),
                        traceback: Vec::new(),
                    };
                    return Outcome::Error {
                        node_id: id,
                        exception,
                    };
                }
            };
            if let Some(entry) = cached_entries.get(&node_id) {
                // Only output nodes are staged while cached: replay their UI output, no `executing`.
                let entry = entry.clone();
                if self.has_client {
                    self.send(
                        "executed",
                        json!({"node": node_id, "display_node": node_id, "output": entry.ui, "prompt_id": self.prompt_id()}),
                    );
                }
                if let Some(ui) = entry.ui {
                    self.ui_outputs.push((node_id.clone(), ui));
                }
                self.finish_progress(&node_id);
                self.values.insert(node_id.clone(), entry.value);
                list.complete(&node_id);
                continue;
            }
            self.start_progress(&node_id);
            self.shared.state().last_node_id = Some(node_id.clone());
            if self.has_client {
                self.send(
                    "executing",
                    json!({"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id()}),
                );
            }
            let mut hold = self.shared.knobs.hold_at_node.subscribe();
            let held_here = node_id.clone();
            let result = match self
                .interruptible(async move {
                    let _ = hold
                        .wait_for(|held| held.as_deref() != Some(held_here.as_str()))
                        .await;
                })
                .await
                .and_then(|()| self.check_before_node(&node_id))
            {
                Ok(()) => self.run_node(&node_id).await,
                Err(stop) => Err(stop),
            };
            let (value, ui) = match result {
                Ok(done) => done,
                Err(NodeStop::Interrupted) => return Outcome::Interrupted { node_id },
                Err(NodeStop::Failed(exception)) => return Outcome::Error { node_id, exception },
            };
            if let Some(ui) = &ui {
                if self.has_client {
                    self.send(
                        "executed",
                        json!({"node": node_id, "display_node": node_id, "output": ui, "prompt_id": self.prompt_id()}),
                    );
                }
                self.ui_outputs.push((node_id.clone(), ui.clone()));
            }
            self.finish_progress(&node_id);
            self.executed.push(node_id.clone());
            if let Some(signature) = signatures.get(&node_id).copied().flatten() {
                self.shared.state().cache.insert(
                    signature,
                    CacheEntry {
                        value: value.clone(),
                        ui,
                    },
                );
            }
            self.values.insert(node_id.clone(), value);
            list.complete(&node_id);
        }
        Outcome::Success
    }

    /// LoadImage's `IS_CHANGED` for each of its nodes: a hash of the file it names, as it is now.
    async fn files_changed(&self) -> HashMap<String, u64> {
        let mut changed = HashMap::new();
        for (id, node) in &self.nodes {
            if node.get("class_type").and_then(OValue::as_str) != Some("LoadImage") {
                continue;
            }
            let name = node
                .get("inputs")
                .and_then(|inputs| inputs.get("image"))
                .map(|image| crate::pyfmt::str_of(&image.to_value()))
                .unwrap_or_default();
            let bytes = match uploads::load_image_path(self.shared, &name) {
                Some(path) => tokio::fs::read(path).await.unwrap_or_default(),
                None => Vec::new(),
            };
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            changed.insert(id.clone(), hasher.finish());
        }
        changed
    }

    /// The interrupt flag and the fail-node fault, checked as a node begins (after `executing`).
    fn check_before_node(&self, node_id: &str) -> Result<(), NodeStop> {
        if *self.shared.interrupt.borrow() {
            return Err(NodeStop::Interrupted);
        }
        let fault = lock(&self.shared.knobs.fail_node).clone();
        match fault {
            Some((id, kind)) if id == node_id => Err(NodeStop::Failed(injected_failure(
                &self.class_type(node_id),
                kind,
            ))),
            _ => Ok(()),
        }
    }

    /// The value a linked input receives.
    fn linked(&self, inputs: &OValue, name: &str) -> Option<NodeValue> {
        let OValue::Array(link) = inputs.get(name)? else {
            return None;
        };
        self.values.get(link.first()?.as_str()?).cloned()
    }

    async fn run_node(&mut self, node_id: &str) -> Result<(NodeValue, Option<Value>), NodeStop> {
        let class_type = self.class_type(node_id);
        let inputs = self
            .node(node_id)
            .and_then(|n| n.get("inputs"))
            .cloned()
            .unwrap_or(OValue::Object(Vec::new()));
        let widgets = converted_inputs(&self.shared.catalog(), &class_type, &inputs);
        let int = |name: &str| widgets.get(name).and_then(Value::as_u64).unwrap_or(0);
        let dimension = |name: &str| u32::try_from(int(name)).unwrap_or(u32::MAX);
        let value = match class_type.as_str() {
            "UnetLoaderGGUF" | "UNETLoader" => NodeValue::Model { loras: Vec::new() },
            // The model passes through; the LoRAs it carries are what the simulation keeps of it.
            "ModelSamplingAuraFlow" => match self.linked(&inputs, "model") {
                Some(model @ NodeValue::Model { .. }) => model,
                _ => NodeValue::Opaque,
            },
            crate::catalog::LORA_LOADER => {
                let mut loras = match self.linked(&inputs, "model") {
                    Some(NodeValue::Model { loras }) => loras,
                    _ => Vec::new(),
                };
                let name = widgets
                    .get("lora_name")
                    .map(crate::pyfmt::str_of)
                    .unwrap_or_default();
                let strength = widgets
                    .get("strength_model")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0);
                loras.push((name, strength));
                NodeValue::Model { loras }
            }
            "EmptySD3LatentImage" | "EmptyLatentImage" => NodeValue::Latent {
                tint: None,
                // The latent is 1/8 of the size, so VAEDecode gives back multiples of 8.
                width: dimension("width") / 8 * 8,
                height: dimension("height") / 8 * 8,
                batch: dimension("batch_size").max(1),
                seed: None,
                init: None,
            },
            "LoadImage" => {
                let name = widgets.get("image").map(crate::pyfmt::str_of).unwrap_or_default();
                let path = uploads::load_image_path(self.shared, &name);
                let loaded = tokio::task::spawn_blocking(move || images::load_picture(path.as_deref())).await;
                match loaded {
                    Ok(Ok((picture, mask))) => NodeValue::Loaded {
                        picture: Arc::new(picture),
                        mask: Arc::new(mask),
                    },
                    Ok(Err(message)) => {
                        return Err(NodeStop::Failed(Exception {
                            message: format!("{message}\n"),
                            type_name: "PIL.UnidentifiedImageError".to_owned(),
                            traceback: execution_frames(&[]),
                        }));
                    }
                    Err(_) => return Err(NodeStop::Failed(missing_input(&class_type, "image"))),
                }
            }
            "VAEEncode" => {
                let picture = match self.linked(&inputs, "pixels") {
                    Some(NodeValue::Loaded { picture, .. }) => picture,
                    Some(NodeValue::Image { recipe, .. }) => Arc::new(recipe.render(0)),
                    _ => return Err(NodeStop::Failed(missing_input(&class_type, "pixels"))),
                };
                // `vae_encode_crop_pixels`: the centre, in multiples of 8.
                let (width, height) = (picture.width() / 8 * 8, picture.height() / 8 * 8);
                NodeValue::Latent {
                    tint: None,
                    width,
                    height,
                    batch: 1,
                    seed: None,
                    init: Some(Init {
                        picture: Arc::new(images::crop_centre(&picture, width, height)),
                        mask: None,
                        denoise: 1.0,
                    }),
                }
            }
            "SetLatentNoiseMask" => {
                let Some(NodeValue::Latent {
                    tint,
                    width,
                    height,
                    batch,
                    seed,
                    init,
                }) = self.linked(&inputs, "samples")
                else {
                    return Err(NodeStop::Failed(missing_input(&class_type, "samples")));
                };
                let Some(NodeValue::Loaded { mask, .. }) = self.linked(&inputs, "mask") else {
                    return Err(NodeStop::Failed(missing_input(&class_type, "mask")));
                };
                NodeValue::Latent {
                    tint,
                    width,
                    height,
                    batch,
                    seed,
                    init: init.map(|init| Init {
                        mask: Some(mask),
                        ..init
                    }),
                }
            }
            "KSampler" => {
                let Some(NodeValue::Latent {
                    width,
                    height,
                    batch,
                    init,
                    ..
                }) = self.linked(&inputs, "latent_image")
                else {
                    return Err(NodeStop::Failed(missing_input(&class_type, "latent_image")));
                };
                let seed = int("seed");
                let steps = dimension("steps");
                let denoise = widgets.get("denoise").and_then(Value::as_f64).unwrap_or(1.0);
                let tint = match self.linked(&inputs, "model") {
                    Some(NodeValue::Model { loras }) => images::lora_tint(&loras),
                    _ => None,
                };
                self.sample(node_id, width, height, seed, steps).await?;
                NodeValue::Latent {
                    tint,
                    width,
                    height,
                    batch,
                    seed: Some(seed),
                    init: init.map(|init| Init {
                        denoise: denoise.clamp(0.0, 1.0) as f32,
                        ..init
                    }),
                }
            }
            "VAEDecode" => {
                let Some(NodeValue::Latent {
                    tint,
                    width,
                    height,
                    batch,
                    seed,
                    init,
                }) = self.linked(&inputs, "samples")
                else {
                    return Err(NodeStop::Failed(missing_input(&class_type, "samples")));
                };
                let seed = seed.unwrap_or(0);
                let recipe = match init {
                    // The sampled pattern over the picture, as far as the denoise and the mask let it.
                    Some(init) => Recipe::Blended {
                        width,
                        height,
                        seed,
                        picture: init.picture,
                        mask: init.mask,
                        strength: init.denoise,
                    },
                    None => Recipe::Sampled { width, height, seed },
                };
                let recipe = match tint {
                    Some(tint) => Recipe::Tinted {
                        inner: Box::new(recipe),
                        tint,
                    },
                    None => recipe,
                };
                NodeValue::Image { recipe, batch }
            }
            "EmptyImage" => NodeValue::Image {
                recipe: Recipe::Solid {
                    width: dimension("width"),
                    height: dimension("height"),
                    color: u32::try_from(int("color")).unwrap_or(0),
                },
                batch: dimension("batch_size").max(1),
            },
            "ImageInvert" | "ImageBlur" | "ImageScale" => {
                let Some(NodeValue::Image { recipe, batch }) = self.linked(&inputs, "image") else {
                    return Err(NodeStop::Failed(missing_input(&class_type, "image")));
                };
                let recipe = match class_type.as_str() {
                    "ImageInvert" => Recipe::Inverted(Box::new(recipe)),
                    "ImageBlur" => Recipe::Blurred(Box::new(recipe)),
                    _ => {
                        let (w, h) = recipe.size();
                        // A side of 0 keeps the aspect ratio (comfy.utils.common_upscale callers).
                        let (tw, th) = match (dimension("width"), dimension("height")) {
                            (0, 0) => (w, h),
                            (0, th) => (w.saturating_mul(th) / h.max(1), th),
                            (tw, 0) => (tw, h.saturating_mul(tw) / w.max(1)),
                            sides => sides,
                        };
                        Recipe::Scaled {
                            inner: Box::new(recipe),
                            width: tw.max(1),
                            height: th.max(1),
                        }
                    }
                };
                NodeValue::Image { recipe, batch }
            }
            "SaveImage" => {
                let Some(NodeValue::Image { recipe, batch }) = self.linked(&inputs, "images") else {
                    return Err(NodeStop::Failed(missing_input(&class_type, "images")));
                };
                let prefix = widgets
                    .get("filename_prefix")
                    .and_then(Value::as_str)
                    .unwrap_or("ComfyUI")
                    .to_owned();
                let ui = self.save_images(recipe, batch, prefix).await?;
                return Ok((NodeValue::Opaque, Some(ui)));
            }
            "SaveImageWebsocket" => {
                let Some(NodeValue::Image { recipe, batch }) = self.linked(&inputs, "images") else {
                    return Err(NodeStop::Failed(missing_input(&class_type, "images")));
                };
                self.send_images(node_id, recipe, batch).await?;
                NodeValue::Opaque
            }
            _ => NodeValue::Opaque,
        };
        Ok((value, None))
    }

    /// Waits out `fut` unless the prompt is interrupted first.
    async fn interruptible<T>(&self, fut: impl Future<Output = T>) -> Result<T, NodeStop> {
        let mut interrupt = self.shared.interrupt.subscribe();
        tokio::select! {
            biased;
            _ = interrupt.wait_for(|set| *set) => Err(NodeStop::Interrupted),
            out = fut => Ok(out),
        }
    }

    /// KSampler: one progress step every `step_ms`, with previews and the step faults.
    async fn sample(
        &mut self,
        node_id: &str,
        width: u32,
        height: u32,
        seed: u64,
        steps: u32,
    ) -> Result<(), NodeStop> {
        for step in 1..=steps {
            let started = tokio::time::Instant::now();
            let step_ms = self.shared.knobs.step_ms.subscribe();
            // A stalled process computes nothing either: the step ends only once it resumes.
            let resumed = self.shared.gate.resumed();
            self.interruptible(async move {
                // Even a zero-length step yields, so an interrupt or a fault can get in between steps.
                tokio::task::yield_now().await;
                wait_adjustable(step_ms, started, |ms| Some(Duration::from_millis(*ms))).await;
                resumed.await;
            })
            .await?;
            let mut hold = self.shared.knobs.hold_at_step.subscribe();
            self.interruptible(async move {
                let _ = hold.wait_for(|held| *held != Some(step)).await;
            })
            .await?;
            if *lock(&self.shared.knobs.drop_at_step) == Some(step) {
                tracing::info!(step, "fault: dropping every websocket");
                self.shared.hub.drop_all();
            }
            if *lock(&self.shared.knobs.stall_at_step) == Some(step) {
                tracing::info!(step, "fault: stalling every websocket");
                self.shared.hub.stall_all();
            }

            self.update_progress(node_id, step, steps);
            let preview = if self.previews {
                match images::preview_jpeg(width, height, seed, step, steps) {
                    Ok(jpeg) => Some(jpeg),
                    Err(error) => {
                        tracing::warn!(%error, "could not encode a preview");
                        None
                    }
                }
            } else {
                None
            };
            // With the handshake the type-4 frame comes before `progress`; without, type 1 after.
            let with_metadata = self.shared.hub.supports_preview_metadata(&self.target);
            if let Some(jpeg) = &preview
                && with_metadata
            {
                let frame =
                    frames::preview_image_with_metadata(ImageFormat::Jpeg, jpeg, node_id, self.prompt_id());
                self.shared.hub.send_binary(&self.target, frame);
            }
            self.send(
                "progress",
                json!({"value": step, "max": steps, "prompt_id": self.prompt_id(), "node": node_id}),
            );
            if let Some(jpeg) = &preview
                && !with_metadata
            {
                self.shared
                    .hub
                    .send_binary(&self.target, frames::preview_image(ImageFormat::Jpeg, jpeg));
            }
        }
        Ok(())
    }

    /// SaveImage: PNG files named `<prefix>_<counter:05>_.png` under the output folder.
    async fn save_images(&self, recipe: Recipe, batch: u32, prefix: String) -> Result<Value, NodeStop> {
        let output_dir = self.shared.dirs.output.clone();
        let saved = tokio::task::spawn_blocking(move || -> Result<Value, String> {
            let (width, height) = recipe.size();
            let target = images::save_target(&output_dir, &prefix, width, height)?;
            std::fs::create_dir_all(&target.folder).map_err(|e| format!("[Errno 13] {e}"))?;
            let mut results = Vec::new();
            for index in 0..batch {
                let name = format!(
                    "{}_{:05}_.png",
                    target.filename.replace("%batch_num%", &index.to_string()),
                    target.counter + index
                );
                let png = images::encode_png(&recipe.render(index)).map_err(|e| e.to_string())?;
                std::fs::write(target.folder.join(&name), png).map_err(|e| format!("[Errno 5] {e}"))?;
                results.push(json!({"filename": name, "subfolder": target.subfolder, "type": "output"}));
            }
            Ok(json!({"images": results}))
        })
        .await;
        match saved {
            Ok(Ok(ui)) => Ok(ui),
            Ok(Err(message)) => Err(NodeStop::Failed(Exception {
                message: format!("{message}\n"),
                type_name: "Exception".to_owned(),
                traceback: execution_frames(&[
                    "  File \"/app/ComfyUI/nodes.py\", line 1625, in save_images\n    full_output_folder, filename, counter, subfolder, filename_prefix = folder_paths.get_save_image_path(filename_prefix, self.output_dir, images[0].shape[1], images[0].shape[0])\n",
                ]),
            })),
            Err(join_error) => Err(NodeStop::Failed(Exception {
                message: format!("{join_error}\n"),
                type_name: "RuntimeError".to_owned(),
                traceback: Vec::new(),
            })),
        }
    }

    /// SaveImageWebsocket: each image as a full-size PNG frame, announced by a progress update.
    async fn send_images(&mut self, node_id: &str, recipe: Recipe, batch: u32) -> Result<(), NodeStop> {
        for index in 0..batch {
            let rendered = recipe.clone();
            let png = tokio::task::spawn_blocking(move || images::encode_png(&rendered.render(index)))
                .await
                .map_err(|e| {
                    NodeStop::Failed(Exception {
                        message: format!("{e}\n"),
                        type_name: "RuntimeError".to_owned(),
                        traceback: Vec::new(),
                    })
                })?
                .map_err(|e| {
                    NodeStop::Failed(Exception {
                        message: format!("{e}\n"),
                        type_name: "OSError".to_owned(),
                        traceback: Vec::new(),
                    })
                })?;
            self.update_progress(node_id, index, batch);
            let with_metadata = self.shared.hub.supports_preview_metadata(&self.target);
            if with_metadata {
                let frame =
                    frames::preview_image_with_metadata(ImageFormat::Png, &png, node_id, self.prompt_id());
                self.shared.hub.send_binary(&self.target, frame);
            }
            self.send(
                "progress",
                json!({"value": index, "max": batch, "prompt_id": self.prompt_id(), "node": node_id}),
            );
            if !with_metadata {
                self.shared
                    .hub
                    .send_binary(&self.target, frames::preview_image(ImageFormat::Png, &png));
            }
        }
        Ok(())
    }

    /// `execution_error`'s `current_inputs`: every input as a one-element list, objects as Python
    /// would print them.
    fn current_inputs(&self, node_id: &str) -> Value {
        let class_type = self.class_type(node_id);
        let inputs = self
            .node(node_id)
            .and_then(|n| n.get("inputs"))
            .cloned()
            .unwrap_or(OValue::Object(Vec::new()));
        let catalog = self.shared.catalog();
        let widgets = converted_inputs(&catalog, &class_type, &inputs);
        let mut out = Map::new();
        if let Some(class) = catalog.get(&class_type) {
            for input in &class.inputs {
                let value = match (inputs.get(&input.name), &input.input_type) {
                    (None, _) => continue,
                    (Some(OValue::Array(_)), InputType::Named(type_name)) => {
                        Value::String(python_object(type_name))
                    }
                    (Some(_), _) => widgets.get(&input.name).cloned().unwrap_or(Value::Null),
                };
                out.insert(input.name.clone(), json!([value]));
            }
        }
        Value::Object(out)
    }

    /// Sends the final event, writes history, reports the queue, then `executing {node: null}`.
    fn finish(mut self, outcome: Outcome) {
        let prompt_id = self.prompt_id().to_owned();
        let success = matches!(outcome, Outcome::Success);
        match outcome {
            Outcome::Success => self.add_message("execution_success", json!({"prompt_id": prompt_id}), false),
            Outcome::Interrupted { node_id } => {
                let data = json!({
                    "prompt_id": prompt_id,
                    "node_id": node_id,
                    "node_type": self.class_type(&node_id),
                    "executed": self.executed,
                });
                self.add_message("execution_interrupted", data, true);
            }
            Outcome::Error { node_id, exception } => {
                let current_outputs: Vec<&String> = self.nodes.iter().map(|(id, _)| id).collect();
                let data = json!({
                    "prompt_id": prompt_id,
                    "node_id": node_id,
                    "node_type": self.class_type(&node_id),
                    "executed": self.executed,
                    "exception_message": exception.message,
                    "exception_type": exception.type_name,
                    "traceback": exception.traceback,
                    "current_inputs": self.current_inputs(&node_id),
                    "current_outputs": current_outputs,
                });
                self.add_message("execution_error", data, false);
            }
        }
        {
            let mut state = self.shared.state();
            state.running = None;
            state.last_node_id = None;
            state.add_history(HistoryEntry {
                item: Arc::new(self.item.clone()),
                outputs: std::mem::take(&mut self.ui_outputs),
                success,
                messages: std::mem::take(&mut self.messages),
            });
            if state.free_memory_requested {
                state.cache.clear();
                state.free_memory_requested = false;
            }
            self.shared.broadcast_status(&state);
        }
        if self.has_client {
            self.send("executing", json!({"node": null, "prompt_id": prompt_id}));
        }
    }
}

/// How Python prints the object a linked input carried.
fn python_object(type_name: &str) -> String {
    match type_name {
        "MODEL" => "<comfy.model_patcher.ModelPatcher object at 0x7f3a2c1d5e50>".to_owned(),
        "CLIP" => "<comfy.sd.CLIP object at 0x7f3a2c1d6f10>".to_owned(),
        "VAE" => "<comfy.sd.VAE object at 0x7f3a2c1d7c40>".to_owned(),
        "LATENT" => "{'samples': tensor([[[[0., 0., 0.,  ..., 0., 0., 0.]]]])}".to_owned(),
        other => format!("<{} object at 0x7f3a2c1d8a90>", other.to_lowercase()),
    }
}

/// The frames every node failure's traceback starts with (execution.py, 0.8.0).
fn execution_frames(node_frames: &[&str]) -> Vec<String> {
    let mut frames = vec![
        "  File \"/app/ComfyUI/execution.py\", line 518, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\n".to_owned(),
        "  File \"/app/ComfyUI/execution.py\", line 329, in get_output_data\n    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\n".to_owned(),
        "  File \"/app/ComfyUI/execution.py\", line 303, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n".to_owned(),
        "  File \"/app/ComfyUI/execution.py\", line 291, in process_inputs\n    result = f(**inputs)\n             ^^^^^^^^^^^\n".to_owned(),
    ];
    frames.extend(node_frames.iter().map(|f| (*f).to_owned()));
    frames
}

/// The text ComfyUI appends to an out-of-memory message (execution.py `execute`).
const OOM_TIPS: &str = "This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might have accidentally set the batch_size to a large number.";

/// The exception the fail-node fault raises in `class_type`.
fn injected_failure(class_type: &str, kind: FailureKind) -> Exception {
    match kind {
        FailureKind::OutOfMemory => Exception {
            // torch's message with the cudaMallocAsync allocator, then ComfyUI's tip.
            message: format!("Allocation on device \n{OOM_TIPS}"),
            type_name: "torch.OutOfMemoryError".to_owned(),
            traceback: execution_frames(&[
                "  File \"/app/ComfyUI/comfy/model_management.py\", line 1211, in cast_to\n    r = torch.empty_like(weight, dtype=dtype, device=device)\n        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
            ]),
        },
        FailureKind::Generic if class_type == "UnetLoaderGGUF" || class_type == "CLIPLoaderGGUF" => {
            Exception {
                // The recorded failure of a corrupt GGUF file (err_runtime_broken_gguf).
                message: "GGUF magic invalid\n".to_owned(),
                type_name: "ValueError".to_owned(),
                traceback: execution_frames(&[
                    "  File \"/app/ComfyUI/custom_nodes/ComfyUI-GGUF/loader.py\", line 55, in gguf_sd_loader\n    reader = gguf.GGUFReader(path)\n             ^^^^^^^^^^^^^^^^^^^^^\n",
                    "  File \"/app/venv/lib/python3.11/site-packages/gguf/gguf_reader.py\", line 138, in __init__\n    raise ValueError('GGUF magic invalid')\n",
                ]),
            }
        }
        FailureKind::Generic => Exception {
            message: format!("simulated failure in {class_type}\n"),
            type_name: "RuntimeError".to_owned(),
            traceback: execution_frames(&[]),
        },
    }
}

fn missing_input(class_type: &str, input: &str) -> Exception {
    Exception {
        message: format!("{class_type} got no usable '{input}' input\n"),
        type_name: "AttributeError".to_owned(),
        traceback: execution_frames(&[]),
    }
}

/// `is_link`: `[node_id: str, slot: int|float]`.
fn link_source(value: &OValue) -> Option<&str> {
    match value {
        OValue::Array(items) if items.len() == 2 && matches!(items[1], OValue::Number(_)) => {
            items[0].as_str()
        }
        _ => None,
    }
}

/// Cache keys: a node's class and widget values plus the keys of everything upstream, so the same
/// computation under other node ids hits too (`CacheKeySetInputSignature`). SaveImageWebsocket's
/// `IS_CHANGED` returns the time, so it (and anything downstream) never hits; LoadImage's is the hash
/// of its file (`is_changed`, by node id), so a file replaced under its name is loaded again.
fn signatures(nodes: &[(String, OValue)], is_changed: &HashMap<String, u64>) -> HashMap<String, Option<u64>> {
    fn visit(
        id: &str,
        nodes: &[(String, OValue)],
        is_changed: &HashMap<String, u64>,
        memo: &mut HashMap<String, Option<u64>>,
        visiting: &mut HashSet<String>,
    ) -> Option<u64> {
        if let Some(known) = memo.get(id) {
            return *known;
        }
        if !visiting.insert(id.to_owned()) {
            return None;
        }
        let node = nodes.iter().find(|(k, _)| k == id).map(|(_, v)| v);
        let result = node.and_then(|node| {
            let class_type = node.get("class_type")?.as_str()?;
            if class_type == "SaveImageWebsocket" {
                return None;
            }
            let mut inputs = node.get("inputs")?.entries()?;
            inputs.sort_by(|a, b| a.0.cmp(b.0));
            let mut hasher = DefaultHasher::new();
            class_type.hash(&mut hasher);
            is_changed.get(id).hash(&mut hasher);
            for (name, value) in inputs {
                name.hash(&mut hasher);
                if let (Some(source), OValue::Array(link)) = (link_source(value), value) {
                    visit(source, nodes, is_changed, memo, visiting)?.hash(&mut hasher);
                    link[1].to_value().to_string().hash(&mut hasher);
                } else {
                    value.to_value().to_string().hash(&mut hasher);
                }
            }
            Some(hasher.finish())
        });
        visiting.remove(id);
        memo.insert(id.to_owned(), result);
        result
    }
    let mut memo = HashMap::new();
    let mut visiting = HashSet::new();
    for (id, _) in nodes {
        visit(id, nodes, is_changed, &mut memo, &mut visiting);
    }
    memo
}

enum Stage {
    Node(String),
    Done,
    Cycle(String),
}

/// comfy_execution/graph.py `ExecutionList`: a topological order that prefers output nodes and
/// their near ancestors, walking inputs depth-first in the order they were written.
struct ExecutionList<'a> {
    catalog: &'a Catalog,
    nodes: &'a [(String, OValue)],
    cached: &'a HashSet<String>,
    pending: Vec<String>,
    block_count: HashMap<String, usize>,
    blocking: HashMap<String, Vec<String>>,
}

impl<'a> ExecutionList<'a> {
    fn new(catalog: &'a Catalog, nodes: &'a [(String, OValue)], cached: &'a HashSet<String>) -> Self {
        Self {
            catalog,
            nodes,
            cached,
            pending: Vec::new(),
            block_count: HashMap::new(),
            blocking: HashMap::new(),
        }
    }

    fn inputs(&self, id: &str) -> Vec<(&'a str, &'a OValue)> {
        self.nodes
            .iter()
            .find(|(k, _)| k == id)
            .and_then(|(_, node)| node.get("inputs"))
            .and_then(OValue::entries)
            .unwrap_or_default()
    }

    fn is_output(&self, id: &str) -> bool {
        self.nodes
            .iter()
            .find(|(k, _)| k == id)
            .and_then(|(_, node)| node.get("class_type"))
            .and_then(OValue::as_str)
            .and_then(|class| self.catalog.get(class))
            .is_some_and(|class| class.output_node)
    }

    fn add_node(&mut self, id: &str) {
        let mut stack = vec![id.to_owned()];
        let mut links = Vec::new();
        while let Some(unique_id) = stack.pop() {
            if self.pending.contains(&unique_id) {
                continue;
            }
            self.pending.push(unique_id.clone());
            self.block_count.insert(unique_id.clone(), 0);
            self.blocking.insert(unique_id.clone(), Vec::new());
            for (_, value) in self.inputs(&unique_id) {
                if let Some(source) = link_source(value) {
                    if !self.cached.contains(source) {
                        stack.push(source.to_owned());
                    }
                    links.push((source.to_owned(), unique_id.clone()));
                }
            }
        }
        for (from, to) in links {
            if self.cached.contains(&from) || !self.nodes.iter().any(|(k, _)| *k == from) {
                continue;
            }
            self.add_node(&from);
            let blocked = self.blocking.entry(from).or_default();
            if !blocked.contains(&to) {
                blocked.push(to.clone());
                *self.block_count.entry(to).or_default() += 1;
            }
        }
    }

    fn blocked_by(&self, id: &str) -> &[String] {
        self.blocking.get(id).map_or(&[], Vec::as_slice)
    }

    /// `ux_friendly_pick_node`: an output first, then a node feeding an output, then one two hops away.
    fn stage(&self) -> Stage {
        let ready: Vec<&String> = self
            .pending
            .iter()
            .filter(|id| self.block_count.get(*id).copied().unwrap_or(0) == 0)
            .collect();
        let Some(first) = ready.first() else {
            return match self.pending.first() {
                Some(id) => Stage::Cycle(id.clone()),
                None => Stage::Done,
            };
        };
        let pick = ready
            .iter()
            .find(|id| self.is_output(id))
            .or_else(|| {
                ready
                    .iter()
                    .find(|id| self.blocked_by(id).iter().any(|b| self.is_output(b)))
            })
            .or_else(|| {
                ready.iter().find(|id| {
                    self.blocked_by(id)
                        .iter()
                        .any(|b| self.blocked_by(b).iter().any(|b1| self.is_output(b1)))
                })
            })
            .unwrap_or(first);
        Stage::Node((*pick).clone())
    }

    fn complete(&mut self, id: &str) {
        self.pending.retain(|k| k != id);
        for blocked in self.blocking.get(id).cloned().unwrap_or_default() {
            if let Some(count) = self.block_count.get_mut(&blocked) {
                *count = count.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ModelFiles;

    const ZIMAGE: &str = r#"{
        "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "z.gguf"}},
        "2": {"class_type": "CLIPLoaderGGUF", "inputs": {"clip_name": "q.gguf", "type": "lumina2"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["2", 0]}},
        "4": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["3", 0]}},
        "5": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["1", 0], "shift": 3.0}},
        "6": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {"model": ["5", 0], "seed": 42, "steps": 8, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["6", 0], "denoise": 1.0}},
        "8": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["8", 0]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "x"}}}"#;

    fn nodes(text: &str) -> Vec<(String, OValue)> {
        let graph: OValue = serde_json::from_str(text).unwrap();
        graph
            .entries()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect()
    }

    fn order(nodes: &[(String, OValue)], outputs: &[&str], cached: &HashSet<String>) -> Vec<String> {
        let catalog = Catalog::new(&ModelFiles::default());
        let mut list = ExecutionList::new(&catalog, nodes, cached);
        for output in outputs {
            list.add_node(output);
        }
        let mut order = Vec::new();
        while let Stage::Node(id) = list.stage() {
            list.complete(&id);
            order.push(id);
        }
        order
    }

    #[test]
    fn the_zimage_graph_runs_in_the_recorded_order() {
        let nodes = nodes(ZIMAGE);
        assert_eq!(
            order(&nodes, &["10"], &HashSet::new()),
            ["8", "6", "2", "3", "4", "1", "5", "7", "9", "10"]
        );
    }

    #[test]
    fn cached_nodes_are_skipped_and_their_dependents_run() {
        let nodes = nodes(ZIMAGE);
        let cached: HashSet<String> = ["1", "2", "3", "4", "5", "6", "8"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(order(&nodes, &["10"], &cached), ["7", "9", "10"]);
    }

    #[test]
    fn the_model_free_graph_sends_the_websocket_output_early() {
        let nodes = nodes(
            r#"{
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 16711680}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "peer_modelfree"}},
            "4": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}"#,
        );
        assert_eq!(order(&nodes, &["4", "3"], &HashSet::new()), ["1", "4", "2", "3"]);
        assert_eq!(order(&nodes, &["3", "4"], &HashSet::new()), ["1", "4", "2", "3"]);
    }

    #[test]
    fn signatures_ignore_node_ids_and_change_with_any_upstream_value() {
        let a = signatures(&nodes(ZIMAGE), &HashMap::new());
        let renamed = ZIMAGE.replace("\"a cat\"", "\"a dog\"");
        let b = signatures(&nodes(&renamed), &HashMap::new());
        assert_eq!(a["1"], b["1"]);
        assert_eq!(a["2"], b["2"]);
        assert_ne!(a["3"], b["3"]);
        assert_ne!(a["10"], b["10"]);
        assert!(a.values().all(Option::is_some));
    }

    #[test]
    fn a_websocket_output_is_never_cached() {
        let sigs = signatures(
            &nodes(
                r#"{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}"#,
            ),
            &HashMap::new(),
        );
        assert!(sigs["1"].is_some());
        assert!(sigs["2"].is_none());
    }
}
