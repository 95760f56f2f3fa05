//! The node classes the simulator knows: ComfyUI 0.8.0's recorded `/object_info`, with the model
//! file lists replaced by the files this simulator was told it has.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Recorded `/object_info` entries of the Z-Image graph's nodes (ComfyUI 0.8.0).
const RECORDED: &str = include_str!("../fixtures/object_info.json");
/// Node classes the recorded protocol runs use besides the Z-Image graph, written from ComfyUI's source.
const EXTRA: &str = include_str!("../fixtures/object_info_extra.json");
/// Recorded `/object_info` entries of the nodes that bring a picture in (ComfyUI 0.8.0).
const IMAGE_INPUT: &str = include_str!("../fixtures/object_info_image_input.json");
/// Of [`IMAGE_INPUT`], the classes the simulator runs: image to image and painting over a part.
const IMAGE_INPUT_CLASSES: [&str; 4] = ["LoadImage", "VAEEncode", "SetLatentNoiseMask", LORA_LOADER];
/// The class that applies a LoRA to the diffusion model; its `lora_name` combo lists models/loras.
pub(crate) const LORA_LOADER: &str = "LoraLoaderModelOnly";
/// The class whose `image` combo lists the files of the input folder (see [`Catalog::all_with_inputs`]).
pub(crate) const LOAD_IMAGE: &str = "LoadImage";

/// Where an input is declared in `INPUT_TYPES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputCategory {
    Required,
    Optional,
}

/// The declared type of an input: a named type (`INT`, `MODEL`, ...) or a combo's option list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InputType {
    Named(String),
    Combo(Vec<Value>),
}

/// One declared input of a node class.
#[derive(Debug, Clone)]
pub(crate) struct InputDef {
    pub(crate) name: String,
    pub(crate) category: InputCategory,
    pub(crate) input_type: InputType,
    /// The options dict (`{"min": .., "max": .., ...}`), `{}` when the spec has none.
    pub(crate) extra: Map<String, Value>,
}

impl InputDef {
    /// `input_config` as ComfyUI reports it in validation errors: `[input_type, extra_info]`.
    pub(crate) fn config(&self) -> Value {
        let input_type = match &self.input_type {
            InputType::Named(name) => Value::String(name.clone()),
            InputType::Combo(options) => Value::Array(options.clone()),
        };
        Value::Array(vec![input_type, Value::Object(self.extra.clone())])
    }
}

/// One node class: its raw `/object_info` entry and the parts the validator and executor need.
#[derive(Debug, Clone)]
pub(crate) struct NodeClass {
    pub(crate) raw: Value,
    /// Declared inputs, required first, each group in `input_order`.
    pub(crate) inputs: Vec<InputDef>,
    /// `RETURN_TYPES`.
    pub(crate) outputs: Vec<String>,
    /// `OUTPUT_NODE`: SaveImage and friends, the roots execution starts from.
    pub(crate) output_node: bool,
}

/// The model files the loaders offer.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelFiles {
    pub(crate) unet: Vec<String>,
    pub(crate) text_encoders: Vec<String>,
    pub(crate) vae: Vec<String>,
    /// The files of models/loras, as `LoraLoaderModelOnly` lists them.
    pub(crate) loras: Vec<String>,
}

/// Every node class the simulator can run, by class name.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    classes: BTreeMap<String, NodeClass>,
}

impl Catalog {
    /// Builds the catalog from the embedded recordings, offering `models` in the loaders' combos.
    pub(crate) fn new(models: &ModelFiles) -> Self {
        let mut raw_entries: Map<String, Value> = serde_json::from_str(RECORDED).unwrap_or_default();
        let extra: Map<String, Value> = serde_json::from_str(EXTRA).unwrap_or_default();
        raw_entries.extend(extra);
        let image_input: Map<String, Value> = serde_json::from_str(IMAGE_INPUT).unwrap_or_default();
        raw_entries.extend(
            image_input
                .into_iter()
                .filter(|(name, _)| IMAGE_INPUT_CLASSES.contains(&name.as_str())),
        );

        let strings = |names: &[String]| -> Value { names.iter().cloned().map(Value::String).collect() };
        // VAELoader always offers `pixel_space` after the files (nodes.py `VAELoader.vae_list`).
        let mut vae_names = models.vae.clone();
        vae_names.push("pixel_space".to_owned());
        replace_combo(
            &mut raw_entries,
            "UnetLoaderGGUF",
            "unet_name",
            strings(&models.unet),
        );
        replace_combo(
            &mut raw_entries,
            "CLIPLoaderGGUF",
            "clip_name",
            strings(&models.text_encoders),
        );
        replace_combo(&mut raw_entries, "VAELoader", "vae_name", strings(&vae_names));
        replace_combo(&mut raw_entries, LORA_LOADER, "lora_name", strings(&models.loras));

        let classes = raw_entries
            .into_iter()
            .map(|(name, raw)| {
                let class = parse_class(raw);
                (name, class)
            })
            .collect();
        Self { classes }
    }

    /// The `/object_info` entry of `class_type`, with `LoadImage` offering `input_files` as ComfyUI
    /// lists them when asked (the files directly in input/, sorted; uploads in subfolders are not listed
    /// but load all the same).
    pub(crate) fn entry(&self, class_type: &str, input_files: &[String]) -> Option<Value> {
        let mut raw = self.classes.get(class_type)?.raw.clone();
        if class_type == LOAD_IMAGE
            && let Some(Value::Array(spec)) = raw.pointer_mut("/input/required/image")
            && let Some(first) = spec.first_mut()
        {
            *first = input_files.iter().cloned().map(Value::String).collect();
        }
        Some(raw)
    }

    /// [`Catalog::all`] with `LoadImage` offering `input_files` (see [`Catalog::entry`]).
    pub(crate) fn all_with_inputs(&self, input_files: &[String]) -> Value {
        Value::Object(
            self.classes
                .keys()
                .filter_map(|name| Some((name.clone(), self.entry(name, input_files)?)))
                .collect(),
        )
    }

    pub(crate) fn get(&self, class_type: &str) -> Option<&NodeClass> {
        self.classes.get(class_type)
    }
}

fn replace_combo(entries: &mut Map<String, Value>, class: &str, input: &str, options: Value) {
    if let Some(spec) = entries
        .get_mut(class)
        .and_then(|c| c.pointer_mut(&format!("/input/required/{input}")))
        .and_then(Value::as_array_mut)
        && let Some(first) = spec.first_mut()
    {
        *first = options;
    }
}

fn parse_class(raw: Value) -> NodeClass {
    let mut inputs = Vec::new();
    for (category, key) in [
        (InputCategory::Required, "required"),
        (InputCategory::Optional, "optional"),
    ] {
        let Some(specs) = raw.pointer(&format!("/input/{key}")).and_then(Value::as_object) else {
            continue;
        };
        // `input_order` is the declaration order; fall back to the spec map for classes without one.
        let order: Vec<String> = raw
            .pointer(&format!("/input_order/{key}"))
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| specs.keys().cloned().collect());
        for name in order {
            let Some(spec) = specs.get(&name).and_then(Value::as_array) else {
                continue;
            };
            let input_type = match spec.first() {
                Some(Value::Array(options)) => InputType::Combo(options.clone()),
                Some(Value::String(name)) => InputType::Named(name.clone()),
                _ => continue,
            };
            let extra = spec
                .get(1)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            inputs.push(InputDef {
                name,
                category,
                input_type,
                extra,
            });
        }
    }
    let outputs = raw
        .get("output")
        .and_then(Value::as_array)
        .map(|o| o.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let output_node = raw.get("output_node").and_then(Value::as_bool).unwrap_or(false);
    NodeClass {
        raw,
        inputs,
        outputs,
        output_node,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn models() -> ModelFiles {
        ModelFiles {
            unet: vec!["z.gguf".to_owned()],
            text_encoders: vec!["q.gguf".to_owned()],
            vae: vec!["ae.safetensors".to_owned()],
            loras: vec!["ink.safetensors".to_owned()],
        }
    }

    #[test]
    fn loaders_offer_the_configured_model_files() {
        let catalog = Catalog::new(&models());
        let all = catalog.all_with_inputs(&[]);
        assert_eq!(
            all.pointer("/UnetLoaderGGUF/input/required/unet_name/0"),
            Some(&json!(["z.gguf"]))
        );
        assert_eq!(
            all.pointer("/CLIPLoaderGGUF/input/required/clip_name/0"),
            Some(&json!(["q.gguf"]))
        );
        assert_eq!(
            all.pointer("/VAELoader/input/required/vae_name/0"),
            Some(&json!(["ae.safetensors", "pixel_space"]))
        );
    }

    #[test]
    fn inputs_follow_the_declared_order_with_their_configs() {
        let catalog = Catalog::new(&models());
        let ksampler = catalog.get("KSampler").unwrap();
        let names: Vec<&str> = ksampler.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "model",
                "seed",
                "steps",
                "cfg",
                "sampler_name",
                "scheduler",
                "positive",
                "negative",
                "latent_image",
                "denoise"
            ]
        );
        let empty_image = catalog.get("EmptyImage").unwrap();
        assert_eq!(
            empty_image.inputs[0].config(),
            json!(["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}])
        );
        assert_eq!(
            catalog.get("UnetLoaderGGUF").unwrap().inputs[0].config(),
            json!([["z.gguf"], {}])
        );
    }

    #[test]
    fn output_nodes_and_return_types_come_from_the_recording() {
        let catalog = Catalog::new(&models());
        assert!(catalog.get("SaveImage").unwrap().output_node);
        assert!(catalog.get("SaveImageWebsocket").unwrap().output_node);
        assert!(!catalog.get("KSampler").unwrap().output_node);
        assert_eq!(catalog.get("VAEDecode").unwrap().outputs, ["IMAGE"]);
        assert!(catalog.get("ImageScale").is_some());
        assert!(catalog.get("NoSuchNode").is_none());
        assert_eq!(catalog.get("LoadImage").unwrap().outputs, ["IMAGE", "MASK"]);
        assert_eq!(catalog.get("SetLatentNoiseMask").unwrap().outputs, ["LATENT"]);
        // Only the image-input classes the simulator runs are offered.
        assert!(catalog.get("VAEEncodeForInpaint").is_none());
    }

    #[test]
    fn load_image_offers_the_files_of_the_input_folder() {
        let catalog = Catalog::new(&models());
        let files = ["a.png".to_owned(), "b (1).png".to_owned()];
        let entry = catalog.entry("LoadImage", &files).unwrap();
        assert_eq!(
            entry.pointer("/input/required/image"),
            Some(&json!([["a.png", "b (1).png"], {"image_upload": true}]))
        );
        assert_eq!(
            catalog
                .all_with_inputs(&[])
                .pointer("/LoadImage/input/required/image/0"),
            Some(&json!([]))
        );
        assert_eq!(
            catalog.entry("KSampler", &files),
            Some(catalog.get("KSampler").unwrap().raw.clone())
        );
    }
}
