//! Parse, don't validate: a [`CreateJobRequest`] from the wire becomes a [`JobSpec`], whose newtypes
//! can only hold values the studio accepts. Every refusal names the request field. The spec then
//! travels whole: through the engine, the journal, the ComfyUI graph, the history record and the
//! PNG's story.

use zimage_contract::{self as api, CreateJobRequest};

pub use crate::pictures::{PictureId, Source, Strength};

/// A request field broke a rule. `field` is the JSON name, so the UI can point at the control; the
/// sentence people read is the rule's, in their language (`crate::i18n`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {}", crate::i18n::Text::EN.rule(*.rule, .field))]
pub struct ValidationError {
    pub field: &'static str,
    pub rule: Rule,
}

/// The rule a request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    PromptEmpty,
    /// The prompt's length in characters (Unicode scalar values, as the limit counts them).
    PromptTooLong {
        length: usize,
    },
    PromptControlCharacters,
    SeedOutOfRange,
    SideOutOfRange,
    SideNotAStep,
    OneImageAtATime,
    RatioOrSize,
    WidthNeedsHeight,
    HeightNeedsWidth,
    // The OpenAI-compatible images API's own (`crate::openai`).
    /// `n` outside 1..=[`api::openai::MAX_IMAGES`].
    ImageCount,
    /// Both `size` and `aspect_ratio`.
    SizeOrRatio,
    /// A first seed whose following ones would pass [`api::MAX_SEED`].
    SeedsOutOfRange {
        count: u32,
    },
    /// A `size` that is neither `auto` nor `WIDTHxHEIGHT`.
    SizeFormat,
    /// A source picture given where none can be taken, or written down wrongly.
    StoredSource,
    /// `background: transparent`: the model makes opaque images.
    TransparentBackground,
    /// `output_compression` above 100.
    CompressionRange,
    /// `partial_images` above [`api::openai::MAX_PARTIAL_IMAGES`].
    PartialImages,
    /// `response_format: url` with an `output_format` other than `png`: the URL is the stored PNG's.
    UrlIsPng,
    /// More than [`api::MAX_LORAS`] LoRAs.
    TooManyLoras,
    /// A LoRA file name that cannot be one ComfyUI lists: empty, too long, a control character, a
    /// `..` segment or a leading slash.
    LoraName,
    /// A strength that is not a finite number in [`api::styles::MIN_LORA_STRENGTH`]..=[`api::styles::MAX_LORA_STRENGTH`].
    LoraStrength,
    /// The same LoRA named twice.
    LoraTwice,
}

impl ValidationError {
    pub fn new(field: &'static str, rule: Rule) -> ValidationError {
        ValidationError { field, rule }
    }
}

/// A prompt of 1..=[`api::MAX_PROMPT_CHARS`] characters, trimmed, without control characters other
/// than line breaks and tabs (they would only confuse the text encoder, and NUL breaks logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt(String);

impl Prompt {
    /// Trims and checks a prompt.
    pub fn parse(raw: &str) -> Result<Prompt, ValidationError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new("prompt", Rule::PromptEmpty));
        }
        let length = trimmed.chars().count();
        if length > api::MAX_PROMPT_CHARS {
            return Err(ValidationError::new("prompt", Rule::PromptTooLong { length }));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ValidationError::new("prompt", Rule::PromptControlCharacters));
        }
        Ok(Prompt(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A seed in 0..=[`api::MAX_SEED`], so it survives a round trip through JavaScript numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed(u64);

impl Seed {
    /// Checks a seed the client chose.
    pub fn parse(value: u64) -> Result<Seed, ValidationError> {
        if value > api::MAX_SEED {
            return Err(ValidationError::new("seed", Rule::SeedOutOfRange));
        }
        Ok(Seed(value))
    }

    /// A random seed, for requests that leave it out.
    pub fn random() -> Seed {
        Seed(rand::random::<u64>() & api::MAX_SEED)
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// One side of the image: [`api::MIN_SIDE`]..=[`api::MAX_SIDE`] pixels in steps of [`api::SIDE_STEP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side(u32);

impl Side {
    /// Checks a side length; `field` is `width` or `height`.
    pub fn parse(field: &'static str, value: u32) -> Result<Side, ValidationError> {
        if !(api::MIN_SIDE..=api::MAX_SIDE).contains(&value) {
            return Err(ValidationError::new(field, Rule::SideOutOfRange));
        }
        if !value.is_multiple_of(api::SIDE_STEP) {
            return Err(ValidationError::new(field, Rule::SideNotAStep));
        }
        Ok(Side(value))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The allowed side closest to `pixels`.
    pub fn nearest(pixels: u32) -> Side {
        let stepped = (pixels + api::SIDE_STEP / 2) / api::SIDE_STEP * api::SIDE_STEP;
        Side(stepped.clamp(api::MIN_SIDE, api::MAX_SIDE))
    }
}

/// The JSON names of each LoRA's fields, by index (the error's field is a `&'static str`).
const LORA_NAME_FIELDS: [&str; api::styles::MAX_LORAS] =
    ["loras[0].name", "loras[1].name", "loras[2].name", "loras[3].name"];
const LORA_STRENGTH_FIELDS: [&str; api::styles::MAX_LORAS] = [
    "loras[0].strength",
    "loras[1].strength",
    "loras[2].strength",
    "loras[3].strength",
];

/// The JSON name of the `index`th LoRA's name (`loras` past the limit).
pub fn lora_name_field(index: usize) -> &'static str {
    LORA_NAME_FIELDS.get(index).copied().unwrap_or("loras")
}

/// A LoRA file's name as ComfyUI lists it (`styles/ink.safetensors` in a subfolder): 1 to
/// [`api::styles::MAX_LORA_NAME_CHARS`] characters, no control characters, no `..` segment and no
/// leading slash, so it can only name a file inside a backend's `models/loras`. Whether a backend has
/// it is the engine's question (it knows the lists).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LoraName(String);

impl LoraName {
    pub fn parse(field: &'static str, raw: &str) -> Result<LoraName, ValidationError> {
        let refused = || ValidationError::new(field, Rule::LoraName);
        let length = raw.chars().count();
        if length == 0 || length > api::styles::MAX_LORA_NAME_CHARS {
            return Err(refused());
        }
        if raw.chars().any(char::is_control) || raw.starts_with(['/', '\\']) {
            return Err(refused());
        }
        if raw.split(['/', '\\']).any(|segment| segment == "..") {
            return Err(refused());
        }
        Ok(LoraName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LoraName {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// How strongly a LoRA applies: a finite number in
/// [`api::styles::MIN_LORA_STRENGTH`]..=[`api::styles::MAX_LORA_STRENGTH`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraStrength(f64);

impl LoraStrength {
    pub fn parse(field: &'static str, value: f64) -> Result<LoraStrength, ValidationError> {
        if !value.is_finite()
            || !(api::styles::MIN_LORA_STRENGTH..=api::styles::MAX_LORA_STRENGTH).contains(&value)
        {
            return Err(ValidationError::new(field, Rule::LoraStrength));
        }
        Ok(LoraStrength(value))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// One LoRA a job uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Lora {
    pub name: LoraName,
    pub strength: LoraStrength,
}

impl Lora {
    /// As the wire shows it.
    pub fn choice(&self) -> api::LoraChoice {
        api::LoraChoice {
            name: self.name.0.clone(),
            strength: self.strength.0,
        }
    }
}

/// Checks a request's `loras`: at most [`api::styles::MAX_LORAS`], each name well formed and once,
/// each strength in range.
pub fn parse_loras(choices: &[api::LoraChoice]) -> Result<Vec<Lora>, ValidationError> {
    if choices.len() > api::styles::MAX_LORAS {
        return Err(ValidationError::new("loras", Rule::TooManyLoras));
    }
    let mut loras: Vec<Lora> = Vec::with_capacity(choices.len());
    for (index, choice) in choices.iter().enumerate() {
        let name = LoraName::parse(LORA_NAME_FIELDS[index], &choice.name)?;
        if loras.iter().any(|lora| lora.name == name) {
            return Err(ValidationError::new(LORA_NAME_FIELDS[index], Rule::LoraTwice));
        }
        let strength = LoraStrength::parse(LORA_STRENGTH_FIELDS[index], choice.strength)?;
        loras.push(Lora { name, strength });
    }
    Ok(loras)
}

/// Everything a job may vary, checked; the rest of the workflow is fixed by configuration. Stored (in
/// the journal) as its plain fields, and checked again when read back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "StoredSpec", into = "StoredSpec")]
pub struct JobSpec {
    pub prompt: Prompt,
    pub seed: Seed,
    pub width: Side,
    pub height: Side,
    /// The picture it starts from, checked against the picture store when it was asked for.
    pub source: Option<Source>,
    /// The LoRAs it uses, in the order they are chained; the engine gives it only to a backend that
    /// has every one.
    pub loras: Vec<Lora>,
}

/// A [`JobSpec`] as it is written down: the same names as the request's fields.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSpec {
    prompt: String,
    seed: u64,
    width: u32,
    height: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<StoredSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    loras: Vec<api::LoraChoice>,
}

/// A [`Source`] as it is written down.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSource {
    picture: String,
    strength: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mask: Option<String>,
    width: u32,
    height: u32,
}

impl From<JobSpec> for StoredSpec {
    fn from(spec: JobSpec) -> StoredSpec {
        StoredSpec {
            prompt: spec.prompt.0,
            seed: spec.seed.get(),
            width: spec.width.get(),
            height: spec.height.get(),
            source: spec.source.map(|source| StoredSource {
                picture: source.picture.to_hex(),
                strength: source.strength.get(),
                mask: source.mask.map(PictureId::to_hex),
                width: source.width,
                height: source.height,
            }),
            loras: spec.loras.iter().map(Lora::choice).collect(),
        }
    }
}

impl TryFrom<StoredSpec> for JobSpec {
    type Error = ValidationError;

    fn try_from(stored: StoredSpec) -> Result<JobSpec, ValidationError> {
        let source = match stored.source {
            Some(source) => {
                let id = |text: &str| {
                    PictureId::parse(text).ok_or(ValidationError::new("source", Rule::StoredSource))
                };
                let mask = source.mask.as_deref().map(id).transpose()?;
                Some(Source {
                    picture: id(&source.picture)?,
                    strength: Strength::parse(Some(source.strength), mask.is_some())
                        .map_err(|_| ValidationError::new("source", Rule::StoredSource))?,
                    mask,
                    width: source.width,
                    height: source.height,
                })
            }
            None => None,
        };
        Ok(JobSpec {
            prompt: Prompt::parse(&stored.prompt)?,
            seed: Seed::parse(stored.seed)?,
            width: Side::parse("width", stored.width)?,
            height: Side::parse("height", stored.height)?,
            source,
            loras: parse_loras(&stored.loras)?,
        })
    }
}

impl JobSpec {
    /// A request and its `source`, already resolved against the picture store (which checks that the
    /// picture and the mask exist and fit). Without a size or a ratio, a job that starts from a picture
    /// has the picture's size (within the sides a job may have; the picture is cropped to fit).
    pub fn from_request(
        request: CreateJobRequest,
        source: Option<Source>,
    ) -> Result<JobSpec, ValidationError> {
        let sized_by_picture =
            request.aspect_ratio.is_none() && request.width.is_none() && request.height.is_none();
        let mut spec = JobSpec::parse(CreateJobRequest {
            source: None,
            ..request
        })?;
        if let Some(source) = source {
            if sized_by_picture {
                spec.width = Side::nearest(source.width);
                spec.height = Side::nearest(source.height);
            }
            spec.source = Some(source);
        }
        Ok(spec)
    }

    /// A request without a source (one with a source needs [`JobSpec::from_request`]).
    fn parse(request: CreateJobRequest) -> Result<JobSpec, ValidationError> {
        if request.source.is_some() {
            return Err(ValidationError::new("source", Rule::StoredSource));
        }
        let prompt = Prompt::parse(&request.prompt)?;
        let loras = parse_loras(&request.loras)?;
        let seed = match request.seed {
            Some(value) => Seed::parse(value)?,
            None => Seed::random(),
        };
        if let Some(batch_size) = request.batch_size
            && batch_size != 1
        {
            return Err(ValidationError::new("batch_size", Rule::OneImageAtATime));
        }
        let (width, height) = match (request.aspect_ratio, request.width, request.height) {
            (Some(_), Some(_), _) => {
                return Err(ValidationError::new("width", Rule::RatioOrSize));
            }
            (Some(_), None, Some(_)) => {
                return Err(ValidationError::new("height", Rule::RatioOrSize));
            }
            (Some(ratio), None, None) => ratio.size(),
            (None, Some(width), Some(height)) => (width, height),
            (None, Some(_), None) => return Err(ValidationError::new("height", Rule::WidthNeedsHeight)),
            (None, None, Some(_)) => return Err(ValidationError::new("width", Rule::HeightNeedsWidth)),
            (None, None, None) => api::AspectRatio::Square.size(),
        };
        Ok(JobSpec {
            prompt,
            seed,
            width: Side::parse("width", width)?,
            height: Side::parse("height", height)?,
            source: None,
            loras,
        })
    }
}

impl TryFrom<CreateJobRequest> for JobSpec {
    type Error = ValidationError;

    /// A request without a source.
    fn try_from(request: CreateJobRequest) -> Result<JobSpec, ValidationError> {
        JobSpec::parse(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use zimage_contract::AspectRatio;

    fn request(prompt: &str) -> CreateJobRequest {
        CreateJobRequest {
            prompt: prompt.to_owned(),
            ..CreateJobRequest::default()
        }
    }

    fn field_of(request: CreateJobRequest) -> &'static str {
        JobSpec::try_from(request).unwrap_err().field
    }

    #[test]
    fn a_minimal_request_gets_a_square_image_and_a_random_seed_in_range() {
        let params = JobSpec::try_from(request("  a fox  ")).unwrap();
        assert_eq!(params.prompt.as_str(), "a fox");
        assert_eq!((params.width.get(), params.height.get()), (1024, 1024));
        assert!(params.seed.get() <= api::MAX_SEED);
    }

    #[test]
    fn an_aspect_ratio_becomes_its_size() {
        let params = JobSpec::try_from(CreateJobRequest {
            aspect_ratio: Some(AspectRatio::Wide16x9),
            seed: Some(42),
            ..request("fox")
        })
        .unwrap();
        assert_eq!(
            (params.width.get(), params.height.get(), params.seed.get()),
            (1024, 576, 42)
        );
    }

    #[test]
    fn empty_and_blank_prompts_are_refused_on_the_prompt_field() {
        assert_eq!(field_of(request("")), "prompt");
        assert_eq!(field_of(request(" \n\t ")), "prompt");
    }

    #[test]
    fn prompts_are_counted_in_characters_not_bytes() {
        let chinese = "狐".repeat(api::MAX_PROMPT_CHARS);
        assert!(JobSpec::try_from(request(&chinese)).is_ok());
        assert_eq!(field_of(request(&format!("{chinese}狐"))), "prompt");
    }

    #[test]
    fn control_characters_are_refused_but_line_breaks_are_kept() {
        assert_eq!(field_of(request("a\u{0}b")), "prompt");
        assert_eq!(field_of(request("a\u{1b}[31mb")), "prompt");
        let params = JobSpec::try_from(request("line one\nline two")).unwrap();
        assert_eq!(params.prompt.as_str(), "line one\nline two");
    }

    #[test]
    fn a_batch_other_than_one_is_refused() {
        assert_eq!(
            field_of(CreateJobRequest {
                batch_size: Some(2),
                ..request("x")
            }),
            "batch_size"
        );
        assert_eq!(
            field_of(CreateJobRequest {
                batch_size: Some(0),
                ..request("x")
            }),
            "batch_size"
        );
        assert!(
            JobSpec::try_from(CreateJobRequest {
                batch_size: Some(1),
                ..request("x")
            })
            .is_ok()
        );
    }

    #[test]
    fn sizes_must_come_in_pairs_and_not_beside_an_aspect_ratio() {
        assert_eq!(
            field_of(CreateJobRequest {
                width: Some(512),
                ..request("x")
            }),
            "height"
        );
        assert_eq!(
            field_of(CreateJobRequest {
                height: Some(512),
                ..request("x")
            }),
            "width"
        );
        let both = CreateJobRequest {
            aspect_ratio: Some(AspectRatio::Square),
            width: Some(512),
            height: Some(512),
            ..request("x")
        };
        assert_eq!(field_of(both), "width");
    }

    #[test]
    fn the_seed_limit_is_two_to_the_53_minus_one() {
        assert!(Seed::parse(api::MAX_SEED).is_ok());
        assert_eq!(
            field_of(CreateJobRequest {
                seed: Some(api::MAX_SEED + 1),
                ..request("x")
            }),
            "seed"
        );
    }

    fn with_loras(loras: serde_json::Value) -> CreateJobRequest {
        CreateJobRequest {
            loras: serde_json::from_value(loras).unwrap(),
            ..request("x")
        }
    }

    #[test]
    fn loras_are_checked_and_each_refusal_names_its_field() {
        let spec = JobSpec::try_from(with_loras(serde_json::json!([
            {"name": "styles/ink.safetensors", "strength": -2.0},
            {"name": "b.safetensors"},
        ])))
        .unwrap();
        assert_eq!(spec.loras.len(), 2);
        assert_eq!(spec.loras[0].name.as_str(), "styles/ink.safetensors");
        assert_eq!(spec.loras[1].strength.get(), 1.0);
        let cases = [
            (serde_json::json!([{"name": ""}]), "loras[0].name", Rule::LoraName),
            (
                serde_json::json!([{"name": "../x"}]),
                "loras[0].name",
                Rule::LoraName,
            ),
            (
                serde_json::json!([{"name": "a/../../x"}]),
                "loras[0].name",
                Rule::LoraName,
            ),
            (
                serde_json::json!([{"name": "a\\..\\x"}]),
                "loras[0].name",
                Rule::LoraName,
            ),
            (
                serde_json::json!([{"name": "/abs"}]),
                "loras[0].name",
                Rule::LoraName,
            ),
            (
                serde_json::json!([{"name": "\\abs"}]),
                "loras[0].name",
                Rule::LoraName,
            ),
            (
                serde_json::json!([{"name": "a\nb"}]),
                "loras[0].name",
                Rule::LoraName,
            ),
            (
                serde_json::json!([{"name": "x".repeat(256)}]),
                "loras[0].name",
                Rule::LoraName,
            ),
            (
                serde_json::json!([{"name": "a", "strength": 1e308}]),
                "loras[0].strength",
                Rule::LoraStrength,
            ),
            (
                serde_json::json!([{"name": "a"}, {"name": "b", "strength": 2.01}]),
                "loras[1].strength",
                Rule::LoraStrength,
            ),
            (
                serde_json::json!([{"name": "a"}, {"name": "a", "strength": 0.1}]),
                "loras[1].name",
                Rule::LoraTwice,
            ),
            (
                serde_json::json!([{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}, {"name": "e"}]),
                "loras",
                Rule::TooManyLoras,
            ),
        ];
        for (loras, field, rule) in cases {
            let error = JobSpec::try_from(with_loras(loras.clone())).unwrap_err();
            assert_eq!((error.field, error.rule), (field, rule), "{loras}");
        }
        // A name with dots that are not a `..` segment is a name like any other.
        assert!(LoraName::parse("loras[0].name", "v1..2.safetensors").is_ok());
        // Not finite: never from JSON, but the type refuses it all the same.
        assert!(LoraStrength::parse("loras[0].strength", f64::NAN).is_err());
        assert!(LoraStrength::parse("loras[0].strength", f64::INFINITY).is_err());
    }

    #[test]
    fn a_spec_with_loras_is_written_down_and_read_back_whole() {
        let spec = JobSpec::try_from(with_loras(serde_json::json!([
            {"name": "styles/ink.safetensors", "strength": 0.8},
            {"name": "b.safetensors"},
        ])))
        .unwrap();
        let written = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            written["loras"],
            serde_json::json!([
                {"name": "styles/ink.safetensors", "strength": 0.8},
                {"name": "b.safetensors", "strength": 1.0},
            ])
        );
        let read: JobSpec = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(read, spec);
        // A spec of an older version, without LoRAs, reads as none.
        let mut older = written;
        older.as_object_mut().unwrap().remove("loras");
        let read: JobSpec = serde_json::from_value(older).unwrap();
        assert!(read.loras.is_empty());
        // And one tampered with is checked again.
        let mut tampered = serde_json::to_value(&spec).unwrap();
        tampered["loras"][0]["name"] = serde_json::json!("../../etc/passwd");
        assert!(serde_json::from_value::<JobSpec>(tampered).is_err());
    }

    proptest! {
        #[test]
        fn every_in_range_size_is_accepted(width in 16u32..=64, height in 16u32..=64) {
            let (width, height) = (width * 16, height * 16);
            let params = JobSpec::try_from(CreateJobRequest {
                width: Some(width), height: Some(height), ..request("x")
            }).unwrap();
            prop_assert_eq!((params.width.get(), params.height.get()), (width, height));
        }

        #[test]
        fn every_out_of_range_or_unaligned_side_is_refused_on_its_field(side in any::<u32>(), pick_width in any::<bool>()) {
            prop_assume!(!((api::MIN_SIDE..=api::MAX_SIDE).contains(&side) && side % api::SIDE_STEP == 0));
            let (width, height) = if pick_width { (side, 512) } else { (512, side) };
            let error = JobSpec::try_from(CreateJobRequest {
                width: Some(width), height: Some(height), ..request("x")
            }).unwrap_err();
            prop_assert_eq!(error.field, if pick_width { "width" } else { "height" });
        }

        #[test]
        fn any_prompt_either_parses_within_limits_or_is_refused_on_the_prompt_field(raw in any::<String>()) {
            match Prompt::parse(&raw) {
                Ok(prompt) => {
                    prop_assert!(!prompt.as_str().is_empty());
                    prop_assert!(prompt.as_str().chars().count() <= api::MAX_PROMPT_CHARS);
                }
                Err(error) => prop_assert_eq!(error.field, "prompt"),
            }
        }
    }
}
