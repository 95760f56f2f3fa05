//! The workflow template: an API-format ComfyUI graph loaded once, whose nodes are found by their
//! `class_type`, and filled per job with the prompt, seed, size and the configured model files.
//!
//! A job that starts from a picture gets the same graph with the empty latent replaced, as the graphs
//! recorded on ComfyUI 0.8.0 do it: `LoadImage` (the picture the gateway uploaded) -> `VAEEncode` ->
//! the sampler's `latent_image`, with `denoise` the job's strength (image to image); to paint over a
//! part, the uploaded PNG carries the mask as its alpha and `SetLatentNoiseMask` takes `LoadImage`'s
//! MASK output between the encoder and the sampler.
//!
//! Only literal values of known inputs are ever replaced: a client's string becomes the text of the one
//! `CLIPTextEncode` node and nothing else, never a node id, an input name or a file name (the picture's
//! name is the one ComfyUI answered for the gateway's own upload).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The model files the loaders of the workflow load, as ComfyUI's loaders list them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// Diffusion model, loaded by `UnetLoaderGGUF` (`unet_name`).
    pub unet: String,
    /// Text encoder, loaded by `CLIPLoaderGGUF` (`clip_name`).
    pub text_encoder: String,
    /// VAE, loaded by `VAELoader` (`vae_name`).
    pub vae: String,
}

/// One model file the workflow needs: which loader class loads it, through which input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInput {
    /// The loader, e.g. `UnetLoaderGGUF`.
    pub class_type: String,
    /// Its input that names the file, e.g. `unet_name`.
    pub input: String,
    /// The configured file name.
    pub file: String,
}

/// A loaded, checked workflow template.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// The template with the configured model names already written into the loaders.
    graph: Map<String, Value>,
    roles: Roles,
    models: ModelFiles,
}

/// Why a template cannot be used. Each variant names the node or input at fault.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("cannot read the workflow template {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the workflow template {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the workflow template must be a ComfyUI API-format graph (an object of nodes, as saved with \
         \"Export (API)\"), not {found}"
    )]
    NotApiFormat { found: String },
    #[error("node {node} of the workflow template has no class_type or no inputs object")]
    MalformedNode { node: String },
    #[error("the workflow template has no {class_type} node ({role})")]
    MissingRole { class_type: String, role: &'static str },
    #[error("the workflow template has {count} {class_type} nodes ({nodes}); exactly one is needed ({role})")]
    AmbiguousRole {
        class_type: String,
        role: &'static str,
        count: usize,
        nodes: String,
    },
    #[error(
        "input {input} of node {node} ({class_type}) must be a literal value in the template, not {found}"
    )]
    InputNotLiteral {
        node: String,
        class_type: String,
        input: String,
        found: String,
    },
}

/// Something the running ComfyUI would refuse in this workflow, found by [`Workflow::check_against`].
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// ComfyUI does not know a node class: a node pack is not installed.
    MissingNode { class_type: String },
    /// A loader does not offer the configured model file: it is not installed.
    MissingModel {
        class_type: String,
        input: String,
        file: String,
    },
    /// A combo input holds a value the node does not offer (sampler, scheduler, CLIP type...).
    OptionNotOffered {
        node: String,
        class_type: String,
        input: String,
        value: String,
        offered: Vec<String>,
    },
    /// A number lies outside the node's declared min/max.
    OutOfRange {
        node: String,
        class_type: String,
        input: String,
        value: String,
        min: Option<f64>,
        max: Option<f64>,
    },
    /// A required input of the node is absent from the template.
    MissingInput {
        node: String,
        class_type: String,
        input: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingNode { class_type } => write!(
                formatter,
                "ComfyUI has no node type {class_type}{}",
                node_pack_hint(class_type)
                    .map(|pack| format!(" (install the {pack} node pack)"))
                    .unwrap_or_default()
            ),
            Problem::MissingModel {
                class_type,
                input,
                file,
            } => {
                write!(
                    formatter,
                    "model file {file} is not installed ({class_type} does not offer it as {input})"
                )
            }
            Problem::OptionNotOffered {
                node,
                class_type,
                input,
                value,
                offered,
            } => write!(
                formatter,
                "{input} {value:?} of node {node} ({class_type}) is not offered by ComfyUI (offered: {})",
                summarize_options(offered)
            ),
            Problem::OutOfRange {
                node,
                class_type,
                input,
                value,
                min,
                max,
            } => {
                let min = min.map(|min| min.to_string()).unwrap_or_else(|| "-".to_owned());
                let max = max.map(|max| max.to_string()).unwrap_or_else(|| "-".to_owned());
                write!(
                    formatter,
                    "{input} {value} of node {node} ({class_type}) is outside {min}..={max}"
                )
            }
            Problem::MissingInput {
                node,
                class_type,
                input,
            } => {
                write!(
                    formatter,
                    "node {node} ({class_type}) lacks its required input {input}"
                )
            }
        }
    }
}

/// The node pack that provides a node class we use, for messages that tell a person what to install.
pub(crate) fn node_pack_hint(class_type: &str) -> Option<&'static str> {
    match class_type {
        "UnetLoaderGGUF" | "CLIPLoaderGGUF" | "UnetLoaderGGUFAdvanced" | "DualCLIPLoaderGGUF" => {
            Some("ComfyUI-GGUF")
        }
        _ => None,
    }
}

/// The picture a job starts from, as the graph takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceImage<'a> {
    /// The name ComfyUI answered for the upload (`ComfyClient::upload_source`), e.g. `zimage/source-0.png`.
    pub image: &'a str,
    /// How much may change: the sampler's `denoise`, 0.2 to 1.0.
    pub strength: f32,
    /// Whether the picture's alpha channel is a mask of the part to paint over (alpha 0: repaint).
    pub masked: bool,
}

/// Classes of the nodes a job that starts from a picture adds.
const LOAD_IMAGE_CLASS: &str = "LoadImage";
const ENCODE_CLASS: &str = "VAEEncode";
const NOISE_MASK_CLASS: &str = "SetLatentNoiseMask";
/// `LoadImage`'s outputs: the picture, and the mask made from its alpha (1 where alpha is 0).
const LOAD_IMAGE_PIXELS: u64 = 0;
const LOAD_IMAGE_MASK: u64 = 1;
/// The node that applies a LoRA to the diffusion model (ComfyUI's own `nodes.py`), and its inputs.
pub const LORA_CLASS: &str = "LoraLoaderModelOnly";
pub const LORA_NAME_INPUT: &str = "lora_name";
const LORA_STRENGTH_INPUT: &str = "strength_model";
/// A name that stands for an upload where the graphs are checked before any upload exists.
const PLACEHOLDER_IMAGE: &str = "zimage/source-0.png";

/// The class names of the roles, and the inputs the gateway fills.
const TEXT_ENCODER_CLASS: &str = "CLIPTextEncode";
const SAMPLER_CLASS: &str = "KSampler";
const LATENT_CLASS: &str = "EmptySD3LatentImage";
const OUTPUT_CLASS: &str = "SaveImage";
const UNET_LOADER: (&str, &str) = ("UnetLoaderGGUF", "unet_name");
const TEXT_ENCODER_LOADER: (&str, &str) = ("CLIPLoaderGGUF", "clip_name");
const VAE_LOADER: (&str, &str) = ("VAELoader", "vae_name");

/// Node ids of each role, found once at load.
#[derive(Debug, Clone)]
struct Roles {
    text: String,
    sampler: String,
    latent: String,
    output: String,
    unet_loader: String,
    text_encoder_loader: String,
    vae_loader: String,
}

impl Workflow {
    /// Reads an API-format template, finds its nodes and writes the model names into its loaders.
    pub fn load(path: &Path, models: ModelFiles) -> Result<Workflow, WorkflowError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkflowError::Read {
            path: path.to_owned(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|source| WorkflowError::Json {
            path: path.to_owned(),
            source,
        })?;
        Workflow::from_value(value, models)
    }

    /// Builds a workflow from an already parsed template (see [`Workflow::load`]).
    pub fn from_value(template: Value, models: ModelFiles) -> Result<Workflow, WorkflowError> {
        let Value::Object(mut graph) = template else {
            return Err(WorkflowError::NotApiFormat {
                found: json_kind(&template).to_owned(),
            });
        };
        // A UI-format export has "nodes" and "links" arrays instead of node objects keyed by id.
        if graph.contains_key("nodes") && graph.contains_key("links") {
            return Err(WorkflowError::NotApiFormat {
                found: "a UI-format workflow (with nodes and links)".to_owned(),
            });
        }
        for (node, body) in &graph {
            let well_formed = body.get("class_type").is_some_and(Value::is_string)
                && body.get("inputs").is_some_and(Value::is_object);
            if !well_formed {
                return Err(WorkflowError::MalformedNode { node: node.clone() });
            }
        }
        let roles = Roles {
            text: find_one(&graph, TEXT_ENCODER_CLASS, "the prompt")?,
            sampler: find_one(&graph, SAMPLER_CLASS, "the sampler that takes the seed")?,
            latent: find_one(&graph, LATENT_CLASS, "the image size")?,
            output: find_one(&graph, OUTPUT_CLASS, "the saved image")?,
            unet_loader: find_one(&graph, UNET_LOADER.0, "the diffusion model")?,
            text_encoder_loader: find_one(&graph, TEXT_ENCODER_LOADER.0, "the text encoder")?,
            vae_loader: find_one(&graph, VAE_LOADER.0, "the VAE")?,
        };
        let filled_inputs = [
            (&roles.text, "text"),
            (&roles.sampler, "seed"),
            (&roles.latent, "width"),
            (&roles.latent, "height"),
            (&roles.latent, "batch_size"),
            (&roles.unet_loader, UNET_LOADER.1),
            (&roles.text_encoder_loader, TEXT_ENCODER_LOADER.1),
            (&roles.vae_loader, VAE_LOADER.1),
        ];
        for (node, input) in filled_inputs {
            require_literal(&graph, node, input)?;
        }
        set_input(
            &mut graph,
            &roles.unet_loader,
            UNET_LOADER.1,
            Value::from(models.unet.clone()),
        );
        set_input(
            &mut graph,
            &roles.text_encoder_loader,
            TEXT_ENCODER_LOADER.1,
            Value::from(models.text_encoder.clone()),
        );
        set_input(
            &mut graph,
            &roles.vae_loader,
            VAE_LOADER.1,
            Value::from(models.vae.clone()),
        );
        set_input(&mut graph, &roles.latent, "batch_size", Value::from(1));
        Ok(Workflow { graph, roles, models })
    }

    /// The graph to submit for one job: the template with the prompt, seed and size written in.
    pub fn fill(&self, prompt: &str, seed: u64, width: u32, height: u32) -> Value {
        self.fill_from(prompt, seed, width, height, None)
    }

    /// [`Workflow::fill`] for a job that may start from a picture. With a `source`, the empty latent
    /// gives way to the uploaded picture, encoded (and masked when `source.masked`), and the sampler's
    /// `denoise` is the strength; the size is then the picture's, which the gateway made
    /// `width` x `height` before uploading it.
    pub fn fill_from(
        &self,
        prompt: &str,
        seed: u64,
        width: u32,
        height: u32,
        source: Option<&SourceImage<'_>>,
    ) -> Value {
        let mut graph = self.graph.clone();
        set_input(&mut graph, &self.roles.text, "text", Value::from(prompt));
        set_input(&mut graph, &self.roles.sampler, "seed", Value::from(seed));
        set_input(&mut graph, &self.roles.latent, "width", Value::from(width));
        set_input(&mut graph, &self.roles.latent, "height", Value::from(height));
        if let Some(source) = source {
            self.start_from(&mut graph, source);
        }
        Value::Object(graph)
    }

    /// Chains one `LoraLoaderModelOnly` per LoRA (file name, strength), in order, between the
    /// diffusion model's loader and whatever took its model (`ModelSamplingAuraFlow` in the studio's
    /// graph). The node ids are the gateway's: past every id of the graph.
    pub fn with_loras(&self, graph: Value, loras: &[(&str, f64)]) -> Value {
        let Value::Object(mut graph) = graph else {
            return graph;
        };
        if loras.is_empty() {
            return Value::Object(graph);
        }
        let loader = self.roles.unet_loader.clone();
        let ids = new_ids(&graph, loras.len());
        let last = ids.last().cloned().unwrap_or_default();
        // Everything that took the loader's model takes the last LoRA's now.
        for node in graph.values_mut() {
            if let Some(inputs) = node.get_mut("inputs").and_then(Value::as_object_mut) {
                for value in inputs.values_mut() {
                    if is_link_to(value, &loader) {
                        *value = Value::Array(vec![Value::from(last.as_str()), Value::from(0)]);
                    }
                }
            }
        }
        let mut model_from = loader;
        for (id, (name, strength)) in ids.into_iter().zip(loras) {
            graph.insert(
                id.clone(),
                serde_json::json!({"class_type": LORA_CLASS, "inputs": {
                    "model": [model_from, 0],
                    LORA_NAME_INPUT: name,
                    LORA_STRENGTH_INPUT: strength,
                }}),
            );
            model_from = id;
        }
        Value::Object(graph)
    }

    /// Rewires `graph` to start from the uploaded picture (see [`Workflow::fill_from`]).
    fn start_from(&self, graph: &mut Map<String, Value>, source: &SourceImage<'_>) {
        let mut ids = new_ids(graph, if source.masked { 3 } else { 2 }).into_iter();
        let load = ids.next().unwrap_or_default();
        let encode = ids.next().unwrap_or_default();
        let mask = ids.next();
        let link = |node: &str, slot: u64| Value::Array(vec![Value::from(node), Value::from(slot)]);
        graph.insert(
            load.clone(),
            serde_json::json!({"class_type": LOAD_IMAGE_CLASS, "inputs": {"image": source.image}}),
        );
        graph.insert(
            encode.clone(),
            serde_json::json!({"class_type": ENCODE_CLASS, "inputs": {
                "pixels": link(&load, LOAD_IMAGE_PIXELS),
                "vae": link(&self.roles.vae_loader, 0),
            }}),
        );
        let latent = match mask {
            Some(mask) => {
                graph.insert(
                    mask.clone(),
                    serde_json::json!({"class_type": NOISE_MASK_CLASS, "inputs": {
                        "samples": link(&encode, 0),
                        "mask": link(&load, LOAD_IMAGE_MASK),
                    }}),
                );
                mask
            }
            None => encode,
        };
        set_input(graph, &self.roles.sampler, "latent_image", link(&latent, 0));
        set_input(
            graph,
            &self.roles.sampler,
            "denoise",
            Value::from(denoise(source.strength)),
        );
        // The empty latent feeds nothing now: it goes, unless another node of the template uses it.
        let still_used = graph.values().any(|node| {
            node.get("inputs")
                .and_then(Value::as_object)
                .is_some_and(|inputs| inputs.values().any(|value| is_link_to(value, &self.roles.latent)))
        });
        if !still_used {
            graph.remove(&self.roles.latent);
        }
    }

    /// Node classes a job that starts from a picture adds to the graph.
    pub fn source_classes(&self) -> [&'static str; 3] {
        [LOAD_IMAGE_CLASS, ENCODE_CLASS, NOISE_MASK_CLASS]
    }

    /// What ComfyUI would refuse in the graphs of jobs that start from a picture (image to image and
    /// painting over a part) beyond what [`Workflow::check_against`] finds in the template: nodes it
    /// lacks, inputs they miss. `LoadImage`'s file is left out: it exists once uploaded.
    pub fn check_sources_against(&self, object_info: &Value) -> Vec<Problem> {
        let text_problems = self.check_against(object_info);
        let source = SourceImage {
            image: PLACEHOLDER_IMAGE,
            strength: 0.6,
            masked: true,
        };
        let Value::Object(graph) = self.fill_from("", 0, 1024, 1024, Some(&source)) else {
            return Vec::new();
        };
        check_graph(&graph, object_info, &self.model_inputs())
            .into_iter()
            .filter(|problem| !text_problems.contains(problem))
            .collect()
    }

    /// The model files written into the loaders.
    pub fn models(&self) -> &ModelFiles {
        &self.models
    }

    /// Id of the KSampler node, whose `progress` messages count the sampling steps.
    pub fn sampler_node(&self) -> &str {
        &self.roles.sampler
    }

    /// Id of the SaveImage node, whose `executed` message names the finished image.
    pub fn output_node(&self) -> &str {
        &self.roles.output
    }

    /// Every node class the graph uses, sorted and without repeats.
    pub fn required_classes(&self) -> Vec<&str> {
        let classes: BTreeSet<&str> = self.graph.values().filter_map(|node| class_of(node)).collect();
        classes.into_iter().collect()
    }

    /// The configured model files, with the loader class and input that take each.
    pub fn model_inputs(&self) -> Vec<ModelInput> {
        [
            (UNET_LOADER, &self.models.unet),
            (TEXT_ENCODER_LOADER, &self.models.text_encoder),
            (VAE_LOADER, &self.models.vae),
        ]
        .into_iter()
        .map(|((class_type, input), file)| ModelInput {
            class_type: class_type.to_owned(),
            input: input.to_owned(),
            file: file.clone(),
        })
        .collect()
    }

    /// Checks the template (as it will be sent, with the configured models) against ComfyUI's
    /// `/object_info` answer, the way ComfyUI's own validation would: missing classes, model files not
    /// offered, combo values not offered, numbers out of range and missing required inputs.
    ///
    /// The values the gateway fills per job (text, seed, width, height) are checked with the
    /// template's values; the gateway's own validation keeps job values inside ComfyUI's limits.
    pub fn check_against(&self, object_info: &Value) -> Vec<Problem> {
        check_graph(&self.graph, object_info, &self.model_inputs())
    }
}

/// [`Workflow::check_against`] for any graph: each node's literal inputs against ComfyUI's spec.
fn check_graph(graph: &Map<String, Value>, object_info: &Value, model_inputs: &[ModelInput]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut missing_classes = BTreeSet::new();
    for (node, body) in sorted_nodes(graph) {
        let Some(class_type) = class_of(body) else {
            continue;
        };
        let Some(schema) = object_info.get(class_type).and_then(|info| info.get("input")) else {
            missing_classes.insert(class_type.to_owned());
            continue;
        };
        let inputs = body.get("inputs").and_then(Value::as_object);
        for section in ["required", "optional"] {
            let Some(declared) = schema.get(section).and_then(Value::as_object) else {
                continue;
            };
            // Sorted by name so the report does not depend on the JSON map's ordering feature.
            let mut declared: Vec<(&String, &Value)> = declared.iter().collect();
            declared.sort_by_key(|(input, _)| *input);
            for (input, spec) in declared {
                let value = inputs.and_then(|inputs| inputs.get(input));
                let Some(value) = value else {
                    if section == "required" {
                        problems.push(Problem::MissingInput {
                            node: node.to_owned(),
                            class_type: class_type.to_owned(),
                            input: input.clone(),
                        });
                    }
                    continue;
                };
                if value.is_array() {
                    // A link to another node's output: nothing to check by value.
                    continue;
                }
                if class_type == LOAD_IMAGE_CLASS && input == "image" {
                    // Its options are the files in ComfyUI's input/: the upload made just before the
                    // prompt is among them, a name checked earlier need not be.
                    continue;
                }
                let is_model_input = model_inputs
                    .iter()
                    .any(|model| model.class_type == class_type && &model.input == input);
                if let Some(problem) = check_value(node, class_type, input, value, spec, is_model_input) {
                    problems.push(problem);
                }
            }
        }
    }
    let mut all = missing_classes
        .into_iter()
        .map(|class_type| Problem::MissingNode { class_type })
        .collect::<Vec<_>>();
    all.append(&mut problems);
    all
}

/// Whether `value` is a link (`["node", slot]`) to `node`.
/// `count` new node ids, past every numeric id of `graph` (and never one it holds).
fn new_ids(graph: &Map<String, Value>, count: usize) -> Vec<String> {
    let mut next_id = graph
        .keys()
        .filter_map(|id| id.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    (0..count)
        .map(|_| {
            next_id += 1;
            // A template with ids that are not numbers could hold "n+1" as a name: skip past it.
            while graph.contains_key(&next_id.to_string()) {
                next_id += 1;
            }
            next_id.to_string()
        })
        .collect()
}

fn is_link_to(value: &Value, node: &str) -> bool {
    value
        .as_array()
        .and_then(|link| link.first())
        .and_then(Value::as_str)
        .is_some_and(|target| target == node)
}

/// The strength as the sampler's `denoise`: to three decimals, so 0.6 is written 0.6 and not as the
/// nearest `f32` (0.6000000238418579).
fn denoise(strength: f32) -> f64 {
    (f64::from(strength) * 1000.0).round() / 1000.0
}

/// Checks one literal input value against its `/object_info` spec: `[type_or_options, {min, max, options...}]`.
fn check_value(
    node: &str,
    class_type: &str,
    input: &str,
    value: &Value,
    spec: &Value,
    is_model_input: bool,
) -> Option<Problem> {
    let kind = spec.get(0)?;
    let options = spec.get(1);
    let offered = match kind {
        Value::Array(offered) => Some(offered),
        // Newer nodes describe combos as ["COMBO", {"options": [...]}].
        Value::String(kind) if kind == "COMBO" => options
            .and_then(|options| options.get("options"))
            .and_then(Value::as_array),
        _ => None,
    };
    if let Some(offered) = offered {
        if offered.contains(value) {
            return None;
        }
        let shown = value
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        if is_model_input {
            return Some(Problem::MissingModel {
                class_type: class_type.to_owned(),
                input: input.to_owned(),
                file: shown,
            });
        }
        return Some(Problem::OptionNotOffered {
            node: node.to_owned(),
            class_type: class_type.to_owned(),
            input: input.to_owned(),
            value: shown,
            offered: offered
                .iter()
                .map(|option| {
                    option
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| option.to_string())
                })
                .collect(),
        });
    }
    if !matches!(kind.as_str(), Some("INT" | "FLOAT")) {
        return None;
    }
    let options = options?;
    let min = options.get("min").filter(|min| min.is_number());
    let max = options.get("max").filter(|max| max.is_number());
    let below = min.is_some_and(|min| compare_numbers(value, min) == Some(std::cmp::Ordering::Less));
    let above = max.is_some_and(|max| compare_numbers(value, max) == Some(std::cmp::Ordering::Greater));
    // ComfyUI coerces numbers with int()/float(); a value that is not a number at all is refused as well.
    let not_a_number = !value.is_number();
    (below || above || not_a_number).then(|| Problem::OutOfRange {
        node: node.to_owned(),
        class_type: class_type.to_owned(),
        input: input.to_owned(),
        value: value.to_string(),
        min: min.and_then(Value::as_f64),
        max: max.and_then(Value::as_f64),
    })
}

/// Compares two JSON numbers exactly when both are integers (seeds reach 2^64 - 1), else as floats.
fn compare_numbers(left: &Value, right: &Value) -> Option<std::cmp::Ordering> {
    let as_integer = |value: &Value| {
        value
            .as_u64()
            .map(i128::from)
            .or_else(|| value.as_i64().map(i128::from))
    };
    match (as_integer(left), as_integer(right)) {
        (Some(left), Some(right)) => Some(left.cmp(&right)),
        _ => left.as_f64()?.partial_cmp(&right.as_f64()?),
    }
}

fn summarize_options(offered: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut shown = offered.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if offered.len() > SHOWN {
        shown.push_str(&format!(" and {} more", offered.len() - SHOWN));
    }
    shown
}

fn class_of(node: &Value) -> Option<&str> {
    node.get("class_type").and_then(Value::as_str)
}

/// Nodes in numeric id order when ids are numbers (ComfyUI's own exports), so messages read naturally.
fn sorted_nodes(graph: &Map<String, Value>) -> Vec<(&str, &Value)> {
    let mut nodes: Vec<(&str, &Value)> = graph.iter().map(|(id, body)| (id.as_str(), body)).collect();
    nodes.sort_by(|(left, _), (right, _)| {
        (left.parse::<u64>().ok(), *left).cmp(&(right.parse::<u64>().ok(), *right))
    });
    nodes
}

fn find_one(
    graph: &Map<String, Value>,
    class_type: &str,
    role: &'static str,
) -> Result<String, WorkflowError> {
    let nodes: Vec<&str> = sorted_nodes(graph)
        .into_iter()
        .filter(|(_, body)| class_of(body) == Some(class_type))
        .map(|(id, _)| id)
        .collect();
    match nodes.as_slice() {
        [node] => Ok((*node).to_owned()),
        [] => Err(WorkflowError::MissingRole {
            class_type: class_type.to_owned(),
            role,
        }),
        several => Err(WorkflowError::AmbiguousRole {
            class_type: class_type.to_owned(),
            role,
            count: several.len(),
            nodes: several.join(", "),
        }),
    }
}

/// The input must exist and hold a value, not a link (`["node", slot]`), or filling it would rewire the graph.
fn require_literal(graph: &Map<String, Value>, node: &str, input: &str) -> Result<(), WorkflowError> {
    let body = &graph[node];
    let value = body.get("inputs").and_then(|inputs| inputs.get(input));
    let found = match value {
        None => "absent".to_owned(),
        Some(Value::Array(_)) => "a link to another node".to_owned(),
        Some(Value::Object(_)) => "an object".to_owned(),
        Some(_) => return Ok(()),
    };
    Err(WorkflowError::InputNotLiteral {
        node: node.to_owned(),
        class_type: class_of(body).unwrap_or_default().to_owned(),
        input: input.to_owned(),
        found,
    })
}

/// Writes one input of one node; the node and its inputs object were checked to exist at load.
fn set_input(graph: &mut Map<String, Value>, node: &str, input: &str, value: Value) {
    if let Some(inputs) = graph
        .get_mut(node)
        .and_then(|body| body.get_mut("inputs"))
        .and_then(Value::as_object_mut)
    {
        inputs.insert(input.to_owned(), value);
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The committed template and the default model files, for the tests of every ComfyUI module.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{ModelFiles, Workflow};

    const TEMPLATE: &str = include_str!("../../../backend/workflows/z_image_turbo.json");

    /// The model files the configuration names by default.
    pub(crate) fn default_models() -> ModelFiles {
        ModelFiles {
            unet: "z_image_turbo-Q8_0.gguf".to_owned(),
            text_encoder: "Qwen3-4B-Q4_K_M.gguf".to_owned(),
            vae: "ae.safetensors".to_owned(),
        }
    }

    /// The committed template, as JSON.
    pub(crate) fn template() -> serde_json::Value {
        serde_json::from_str(TEMPLATE).unwrap()
    }

    /// The committed template with these model files written in.
    pub(crate) fn committed_workflow(models: ModelFiles) -> Workflow {
        Workflow::from_value(template(), models).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{default_models, template};
    use super::*;
    use serde_json::json;

    const OBJECT_INFO: &str = include_str!("fixtures/object_info.json");

    fn object_info() -> Value {
        serde_json::from_str(OBJECT_INFO).unwrap()
    }

    fn workflow() -> Workflow {
        super::fixtures::committed_workflow(default_models())
    }

    #[test]
    fn the_committed_template_loads_from_its_file_and_finds_every_role() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../backend/workflows/z_image_turbo.json");
        let workflow = Workflow::load(&path, default_models()).unwrap();
        assert_eq!(workflow.sampler_node(), "8");
        assert_eq!(workflow.output_node(), "10");
    }

    #[test]
    fn the_committed_template_validates_against_comfyui_object_info() {
        assert_eq!(workflow().check_against(&object_info()), vec![]);
    }

    #[test]
    fn a_filled_graph_matches_its_snapshot() {
        let graph = workflow().fill("a red fox in snow, golden hour", 123_456_789, 1024, 576);
        // Sorted, so the snapshot does not depend on serde_json's `preserve_order` feature.
        insta::with_settings!({ sort_maps => true }, { insta::assert_json_snapshot!(graph) });
    }

    #[test]
    fn fill_changes_only_the_prompt_seed_and_size() {
        let workflow = workflow();
        let filled = workflow.fill("\"; DROP", 42, 512, 768);
        let mut expected = template();
        expected["1"]["inputs"]["unet_name"] = json!("z_image_turbo-Q8_0.gguf");
        expected["2"]["inputs"]["clip_name"] = json!("Qwen3-4B-Q4_K_M.gguf");
        expected["3"]["inputs"]["vae_name"] = json!("ae.safetensors");
        expected["5"]["inputs"]["text"] = json!("\"; DROP");
        expected["8"]["inputs"]["seed"] = json!(42);
        expected["7"]["inputs"]["width"] = json!(512);
        expected["7"]["inputs"]["height"] = json!(768);
        expected["7"]["inputs"]["batch_size"] = json!(1);
        assert_eq!(filled, expected);
    }

    #[test]
    fn configured_model_names_replace_those_of_the_template() {
        let models = ModelFiles {
            unet: "z_image_turbo-Q5_K_M.gguf".to_owned(),
            text_encoder: "Qwen3-4B-Q8_0.gguf".to_owned(),
            vae: "other-vae.safetensors".to_owned(),
        };
        let workflow = Workflow::from_value(template(), models).unwrap();
        let filled = workflow.fill("x", 1, 256, 256);
        assert_eq!(filled["1"]["inputs"]["unet_name"], "z_image_turbo-Q5_K_M.gguf");
        assert_eq!(filled["2"]["inputs"]["clip_name"], "Qwen3-4B-Q8_0.gguf");
        assert_eq!(filled["3"]["inputs"]["vae_name"], "other-vae.safetensors");
        assert_eq!(
            workflow.model_inputs()[0],
            ModelInput {
                class_type: "UnetLoaderGGUF".to_owned(),
                input: "unet_name".to_owned(),
                file: "z_image_turbo-Q5_K_M.gguf".to_owned()
            }
        );
    }

    #[test]
    fn a_batch_size_in_the_template_is_forced_to_one() {
        let mut template = template();
        template["7"]["inputs"]["batch_size"] = json!(4);
        let workflow = Workflow::from_value(template, default_models()).unwrap();
        assert_eq!(workflow.fill("x", 1, 256, 256)["7"]["inputs"]["batch_size"], 1);
    }

    #[test]
    fn required_classes_lists_each_class_once_in_order() {
        assert_eq!(
            workflow().required_classes(),
            vec![
                "CLIPLoaderGGUF",
                "CLIPTextEncode",
                "ConditioningZeroOut",
                "EmptySD3LatentImage",
                "KSampler",
                "ModelSamplingAuraFlow",
                "SaveImage",
                "UnetLoaderGGUF",
                "VAEDecode",
                "VAELoader"
            ]
        );
    }

    #[test]
    fn a_template_without_a_sampler_is_refused_by_name() {
        let mut template = template();
        template.as_object_mut().unwrap().remove("8");
        let error = Workflow::from_value(template, default_models()).unwrap_err();
        assert!(matches!(&error, WorkflowError::MissingRole { class_type, .. } if class_type == "KSampler"));
        assert!(error.to_string().contains("no KSampler node"), "{error}");
    }

    #[test]
    fn a_template_with_two_prompt_nodes_is_refused_naming_both() {
        let mut template = template();
        template["11"] = json!({"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": ""}});
        let error = Workflow::from_value(template, default_models())
            .unwrap_err()
            .to_string();
        assert!(error.contains("2 CLIPTextEncode nodes (5, 11)"), "{error}");
    }

    #[test]
    fn a_linked_prompt_input_is_refused() {
        let mut template = template();
        template["5"]["inputs"]["text"] = json!(["2", 0]);
        let error = Workflow::from_value(template, default_models())
            .unwrap_err()
            .to_string();
        assert!(error.contains("input text of node 5 (CLIPTextEncode)"), "{error}");
        assert!(error.contains("a link"), "{error}");
    }

    #[test]
    fn non_graph_templates_are_refused() {
        let ui_format = json!({"nodes": [], "links": [], "version": 0.4});
        assert!(matches!(
            Workflow::from_value(ui_format, default_models()),
            Err(WorkflowError::NotApiFormat { .. })
        ));
        assert!(matches!(
            Workflow::from_value(json!([1, 2]), default_models()),
            Err(WorkflowError::NotApiFormat { .. })
        ));
        let mut template = template();
        template["99"] = json!({"inputs": {}});
        assert!(matches!(
            Workflow::from_value(template, default_models()),
            Err(WorkflowError::MalformedNode { node }) if node == "99"
        ));
    }

    #[test]
    fn a_missing_template_file_names_the_path() {
        let error = Workflow::load(Path::new("no/such/workflow.json"), default_models())
            .unwrap_err()
            .to_string();
        assert!(error.contains("no/such/workflow.json"), "{error}");
    }

    #[test]
    fn check_reports_missing_node_packs_once_per_class() {
        let mut info = object_info();
        info.as_object_mut().unwrap().remove("UnetLoaderGGUF");
        info.as_object_mut().unwrap().remove("CLIPLoaderGGUF");
        let problems = workflow().check_against(&info);
        assert_eq!(
            problems,
            vec![
                Problem::MissingNode {
                    class_type: "CLIPLoaderGGUF".to_owned()
                },
                Problem::MissingNode {
                    class_type: "UnetLoaderGGUF".to_owned()
                },
            ]
        );
        assert!(
            problems[0].to_string().contains("ComfyUI-GGUF"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn check_reports_model_files_the_loaders_do_not_offer() {
        let models = ModelFiles {
            unet: "missing.gguf".to_owned(),
            ..default_models()
        };
        let workflow = Workflow::from_value(template(), models).unwrap();
        assert_eq!(
            workflow.check_against(&object_info()),
            vec![Problem::MissingModel {
                class_type: "UnetLoaderGGUF".to_owned(),
                input: "unet_name".to_owned(),
                file: "missing.gguf".to_owned()
            }]
        );
    }

    #[test]
    fn check_reports_options_not_offered_and_numbers_out_of_range() {
        let mut template = template();
        template["8"]["inputs"]["sampler_name"] = json!("no_such_sampler");
        template["8"]["inputs"]["steps"] = json!(0);
        template["4"]["inputs"]["shift"] = json!(1000.5);
        template["7"]["inputs"]["width"] = json!(99_999);
        let problems = Workflow::from_value(template, default_models())
            .unwrap()
            .check_against(&object_info());
        let described: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{described:#?}");
        assert!(matches!(&problems[0], Problem::OutOfRange { input, .. } if input == "shift"));
        assert!(matches!(&problems[1], Problem::OutOfRange { input, .. } if input == "width"));
        assert!(matches!(&problems[2], Problem::OptionNotOffered { input, .. } if input == "sampler_name"));
        assert!(matches!(&problems[3], Problem::OutOfRange { input, .. } if input == "steps"));
        assert!(described[1].contains("width 99999 of node 7 (EmptySD3LatentImage) is outside 16..=16384"));
    }

    #[test]
    fn check_reports_missing_required_inputs() {
        let mut template = template();
        template["8"]["inputs"].as_object_mut().unwrap().remove("denoise");
        let problems = Workflow::from_value(template, default_models())
            .unwrap()
            .check_against(&object_info());
        assert_eq!(
            problems,
            vec![Problem::MissingInput {
                node: "8".to_owned(),
                class_type: "KSampler".to_owned(),
                input: "denoise".to_owned()
            }]
        );
    }

    #[test]
    fn check_understands_the_newer_combo_spelling() {
        let mut info = object_info();
        info["KSampler"]["input"]["required"]["scheduler"] = json!(["COMBO", {"options": ["karras"]}]);
        let problems = workflow().check_against(&info);
        assert!(matches!(&problems[..], [Problem::OptionNotOffered { input, .. }] if input == "scheduler"));
    }

    #[test]
    fn seeds_up_to_the_largest_u64_are_in_range() {
        let info = object_info();
        let spec = &info["KSampler"]["input"]["required"]["seed"];
        assert_eq!(
            check_value("8", "KSampler", "seed", &json!(u64::MAX), spec, false),
            None
        );
        assert!(check_value("8", "KSampler", "seed", &json!(-1), spec, false).is_some());
        assert!(check_value("8", "KSampler", "seed", &json!("7"), spec, false).is_some());
    }

    const IMAGE_INPUT_OBJECT_INFO: &str = include_str!("fixtures/object_info_image_input.json");
    const RECORDED_IMG2IMG: &str = include_str!("fixtures/graphs/img2img_64.json");
    const RECORDED_INPAINT: &str = include_str!("fixtures/graphs/inpaint_64.json");

    /// The recorded `/object_info` of the template's nodes and of the image-input nodes together.
    #[test]
    fn loras_are_chained_between_the_model_loader_and_what_took_its_model() {
        let workflow = workflow();
        let plain = workflow.fill("a fox", 1, 512, 512);
        assert_eq!(workflow.with_loras(plain.clone(), &[]), plain);
        let graph = workflow.with_loras(
            plain.clone(),
            &[("ink.safetensors", 0.8), ("sub/a b.safetensors", -1.5)],
        );
        let graph = graph.as_object().unwrap();
        let loader = &workflow.roles.unet_loader;
        let loras: Vec<(&String, &Value)> = graph
            .iter()
            .filter(|(_, node)| class_of(node) == Some(LORA_CLASS))
            .collect();
        assert_eq!(loras.len(), 2);
        let first = graph
            .iter()
            .find(|(_, node)| node["inputs"]["model"] == json!([loader, 0]))
            .unwrap();
        assert_eq!(first.1["inputs"]["lora_name"], "ink.safetensors");
        assert_eq!(first.1["inputs"]["strength_model"], 0.8);
        let second = graph
            .iter()
            .find(|(_, node)| node["inputs"]["model"] == json!([first.0, 0]))
            .unwrap();
        assert_eq!(second.1["inputs"]["lora_name"], "sub/a b.safetensors");
        // ModelSamplingAuraFlow takes the last LoRA's model; nothing takes the loader's any more.
        let sampling = graph
            .values()
            .find(|node| class_of(node) == Some("ModelSamplingAuraFlow"))
            .unwrap();
        assert_eq!(sampling["inputs"]["model"], json!([second.0, 0]));
        // The ids are new: every node of the plain graph is still there.
        assert!(plain.as_object().unwrap().keys().all(|id| graph.contains_key(id)));
        // ComfyUI's own checks pass once the backend lists the files.
        let mut info = full_object_info();
        info["LoraLoaderModelOnly"]["input"]["required"]["lora_name"][0] =
            json!(["ink.safetensors", "sub/a b.safetensors"]);
        assert_eq!(check_graph(graph, &info, &workflow.model_inputs()), vec![]);
        info["LoraLoaderModelOnly"]["input"]["required"]["lora_name"][0] = json!(["ink.safetensors"]);
        assert_ne!(check_graph(graph, &info, &workflow.model_inputs()), vec![]);
    }

    fn full_object_info() -> Value {
        let mut info = object_info();
        let extra: Value = serde_json::from_str(IMAGE_INPUT_OBJECT_INFO).unwrap();
        info.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        info
    }

    fn source(masked: bool) -> SourceImage<'static> {
        SourceImage {
            image: "zimage/source-2.png",
            strength: 0.6,
            masked,
        }
    }

    /// The picture's way into the sampler: each link (node class, input, linked class, slot) of the
    /// image-input nodes and the sampler's latent, whatever the node ids. (The recorded graphs differ
    /// from the template elsewhere: their negative prompt is a second CLIPTextEncode.)
    fn shape(graph: &Value) -> BTreeSet<(String, String, String, u64)> {
        let graph = graph.as_object().unwrap();
        let mut edges = BTreeSet::new();
        for body in graph.values() {
            for (input, value) in body["inputs"].as_object().unwrap() {
                let class_type = class_of(body).unwrap();
                let on_the_way = ["LoadImage", "VAEEncode", "SetLatentNoiseMask"].contains(&class_type)
                    || (class_type == "KSampler" && input == "latent_image");
                if !on_the_way {
                    continue;
                }
                if let Some([target, slot]) = value.as_array().map(Vec::as_slice) {
                    let target = &graph[target.as_str().unwrap()];
                    edges.insert((
                        class_of(body).unwrap().to_owned(),
                        input.clone(),
                        class_of(target).unwrap().to_owned(),
                        slot.as_u64().unwrap(),
                    ));
                }
            }
        }
        edges
    }

    fn node_of<'a>(graph: &'a Value, class_type: &str) -> (&'a str, &'a Value) {
        let nodes: Vec<(&str, &Value)> = graph
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, body)| class_of(body) == Some(class_type))
            .map(|(id, body)| (id.as_str(), body))
            .collect();
        assert_eq!(nodes.len(), 1, "{class_type}");
        nodes[0]
    }

    #[test]
    fn without_a_source_fill_from_is_fill() {
        let workflow = workflow();
        assert_eq!(
            workflow.fill_from("x", 7, 512, 768, None),
            workflow.fill("x", 7, 512, 768)
        );
    }

    #[test]
    fn an_image_to_image_graph_has_the_recorded_shape() {
        let graph = workflow().fill_from("a fox", 42, 1024, 768, Some(&source(false)));
        let recorded: Value = serde_json::from_str(RECORDED_IMG2IMG).unwrap();
        assert_eq!(shape(&graph), shape(&recorded));
        let (load, body) = node_of(&graph, "LoadImage");
        assert_eq!(body["inputs"], json!({"image": "zimage/source-2.png"}));
        let (encode, _) = node_of(&graph, "VAEEncode");
        let (_, sampler) = node_of(&graph, "KSampler");
        assert_eq!(sampler["inputs"]["latent_image"], json!([encode, 0]));
        assert_eq!(sampler["inputs"]["denoise"], json!(0.6));
        assert_eq!(
            node_of(&graph, "VAEEncode").1["inputs"]["pixels"],
            json!([load, 0])
        );
        assert!(
            graph
                .as_object()
                .unwrap()
                .values()
                .all(|node| class_of(node) != Some("EmptySD3LatentImage")),
            "the empty latent is gone"
        );
        insta::with_settings!({ sort_maps => true }, { insta::assert_json_snapshot!(graph) });
    }

    #[test]
    fn a_paint_over_graph_has_the_recorded_shape() {
        let source = SourceImage {
            strength: 1.0,
            ..source(true)
        };
        let graph = workflow().fill_from("a fox", 42, 1024, 768, Some(&source));
        let recorded: Value = serde_json::from_str(RECORDED_INPAINT).unwrap();
        assert_eq!(shape(&graph), shape(&recorded));
        let (load, _) = node_of(&graph, "LoadImage");
        let (encode, _) = node_of(&graph, "VAEEncode");
        let (mask, body) = node_of(&graph, "SetLatentNoiseMask");
        assert_eq!(body["inputs"], json!({"samples": [encode, 0], "mask": [load, 1]}));
        let (_, sampler) = node_of(&graph, "KSampler");
        assert_eq!(sampler["inputs"]["latent_image"], json!([mask, 0]));
        assert_eq!(sampler["inputs"]["denoise"], json!(1.0));
        insta::with_settings!({ sort_maps => true }, { insta::assert_json_snapshot!(graph) });
    }

    #[test]
    fn the_new_nodes_take_fresh_ids_and_the_strength_is_written_as_given() {
        let graph = workflow().fill_from(
            "x",
            1,
            512,
            512,
            Some(&SourceImage {
                strength: 0.35,
                ..source(true)
            }),
        );
        assert_eq!(node_of(&graph, "LoadImage").0, "11");
        assert_eq!(node_of(&graph, "VAEEncode").0, "12");
        assert_eq!(node_of(&graph, "SetLatentNoiseMask").0, "13");
        assert_eq!(node_of(&graph, "KSampler").1["inputs"]["denoise"], json!(0.35));
        // Everything else is as a job from words has it.
        let plain = workflow().fill("x", 1, 512, 512);
        for (id, body) in plain.as_object().unwrap() {
            if id == "7" || id == "8" {
                continue;
            }
            assert_eq!(&graph[id], body, "node {id}");
        }
    }

    #[test]
    fn an_empty_latent_that_another_node_uses_stays() {
        let mut template = template();
        template["11"] = json!({"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["3", 0]}});
        let workflow = Workflow::from_value(template, default_models()).unwrap();
        let graph = workflow.fill_from("x", 1, 512, 512, Some(&source(false)));
        assert_eq!(graph["7"]["class_type"], "EmptySD3LatentImage");
        assert_eq!(node_of(&graph, "LoadImage").0, "12");
    }

    #[test]
    fn the_source_graphs_validate_against_comfyui_object_info() {
        let workflow = workflow();
        assert_eq!(workflow.check_sources_against(&full_object_info()), vec![]);
        // Without the image-input nodes, each is reported (the template alone stays fine).
        let problems = workflow.check_sources_against(&object_info());
        assert_eq!(
            problems,
            ["LoadImage", "SetLatentNoiseMask", "VAEEncode"]
                .into_iter()
                .map(|class_type| Problem::MissingNode {
                    class_type: class_type.to_owned()
                })
                .collect::<Vec<_>>()
        );
        assert_eq!(workflow.check_against(&object_info()), vec![]);
    }
}
