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
