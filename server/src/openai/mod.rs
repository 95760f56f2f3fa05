//! The OpenAI-compatible images API as plain decisions: an [`ImagesRequest`] becomes an [`ImagesPlan`]
//! (one [`JobSpec`] per image, seeds consecutive, and a [`Delivery`]: how the images go back);
//! [`run`] runs the plan as jobs of the engine (waited for, or followed as a stream of previews and
//! images) and cancels every one of them if the wait is abandoned; [`encode`] and [`answer`] make the
//! answer, for generations and edits; [`edit`] takes an edit's picture and mask as the jobs' source
//! (a plan with a source starts every image from it).

pub mod answer;
pub mod edit;
pub mod encode;
pub mod run;

use zimage_contract::openai::{self, Background, ImagesRequest, OutputFormat, Quality, ResponseFormat};
use zimage_contract::{self as api, CreateJobRequest};

pub use self::encode::Encoding;
pub use self::run::{GenerateError, Made, Progress, Submitted, submit};
use crate::pictures::Source;
use crate::validation::{JobSpec, Rule, Seed, ValidationError};

/// OpenAI's fixed sizes that lie beyond the studio's 1024 px cap, and what each becomes: the same
/// aspect with the longer side 1024 and the shorter rounded down to a multiple of 16.
pub const OPENAI_SIZES: [((u32, u32), (u32, u32)); 4] = [
    ((1536, 1024), (1024, 672)),
    ((1024, 1536), (672, 1024)),
    ((1792, 1024), (1024, 576)),
    ((1024, 1792), (576, 1024)),
];

/// What one request asks for, checked: the images to make and how to return them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagesPlan {
    /// One job each, in seed order.
    pub images: Vec<JobSpec>,
    pub delivery: Delivery,
    /// The prompt as sent, to tell whether trimming changed it.
    pub sent_prompt: String,
}

/// How the images of a request go back, and what the answer echoes of its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub format: ResponseFormat,
    pub encoding: Encoding,
    pub quality: Quality,
    /// The answer's `size`: as the request named it, or the size made.
    pub size: String,
    /// `Some(partial_images)` when the answer is a stream of events.
    pub stream: Option<u32>,
    /// Which route the images answer, which names the stream's events.
    pub operation: Operation,
}

/// What a request asks for: new images, or a picture changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Operation {
    /// `POST /v1/images/generations`: events `image_generation.*`.
    #[default]
    Generation,
    /// `POST /v1/images/edits`: events `image_edit.*`.
    Edit,
}

impl Delivery {
    /// Checks the settings every image route shares; `size` is the echo (see [`ImagesPlan`]).
    pub fn from_request(request: &ImagesRequest, size: String) -> Result<Delivery, ValidationError> {
        if request.background == Some(Background::Transparent) {
            return Err(ValidationError::new("background", Rule::TransparentBackground));
        }
        let compression = request.output_compression.unwrap_or(100);
        if compression > 100 {
            return Err(ValidationError::new("output_compression", Rule::CompressionRange));
        }
        let partials = request.partial_images.unwrap_or(0);
        if partials > openai::MAX_PARTIAL_IMAGES {
            return Err(ValidationError::new("partial_images", Rule::PartialImages));
        }
        let output = request.output_format.unwrap_or_default();
        let stream = request.stream.unwrap_or(false).then_some(partials);
        let format = match (stream, request.response_format) {
            // The events carry base64 alone, as OpenAI's do.
            (Some(_), _) => ResponseFormat::B64Json,
            (None, Some(format)) => format,
            (None, None) => default_format(request.model.as_deref()),
        };
        if format == ResponseFormat::Url && output != OutputFormat::Png {
            return Err(ValidationError::new("output_format", Rule::UrlIsPng));
        }
        Ok(Delivery {
            format,
            encoding: Encoding::new(output, compression),
            quality: request.quality.unwrap_or_default(),
            size,
            stream,
            operation: Operation::Generation,
        })
    }
}

/// OpenAI's default `response_format` for a model name: its `dall-e-*` models answer with URLs, its
/// GPT image models (and the studio's own name, and any other) with base64.
pub fn default_format(model: Option<&str>) -> ResponseFormat {
    match model {
        Some(name) if name.trim().to_ascii_lowercase().starts_with("dall-e") => ResponseFormat::Url,
        _ => ResponseFormat::B64Json,
    }
}

/// The saved style a `model` name asks for: what follows `z-image-turbo:` (`z-image-turbo:watercolor`
/// asks for `watercolor`). OpenAI's clients can only pick a model, so each style is offered as one
/// (`GET /v1/models`). Any other name, colon or not (`gpt-image-1`, a client's `image:latest`), is
/// served by the studio's model as it is, as every name was before styles.
pub fn model_style(model: Option<&str>) -> Option<&str> {
    let (model, style) = model?.trim().split_once(':')?;
    model.eq_ignore_ascii_case(openai::MODEL_ID).then_some(style)
}

impl TryFrom<ImagesRequest> for ImagesPlan {
    type Error = ValidationError;

    fn try_from(request: ImagesRequest) -> Result<ImagesPlan, ValidationError> {
        ImagesPlan::new(request, None, None)
    }
}

impl ImagesPlan {
    /// The plan of a request, its images started from `source` when it has one (an edit): then
    /// `size` `auto` (or none) is the picture's own size, and any other size or ratio crops it. The
    /// events of a plan with a source are the edits' own. When its `model` asked for `style`
    /// ([`model_style`], looked up by the caller), each image's job request is made by the style before
    /// the studio's rules check it.
    pub fn new(
        request: ImagesRequest,
        source: Option<Source>,
        style: Option<&api::Style>,
    ) -> Result<ImagesPlan, ValidationError> {
        let operation = if source.is_some() {
            Operation::Edit
        } else {
            Operation::Generation
        };
        // Any `model` is served by the studio's one model (the answer's header says so).
        let count = request.n.unwrap_or(1);
        if !(1..=openai::MAX_IMAGES).contains(&count) {
            return Err(ValidationError::new("n", Rule::ImageCount));
        }
        let asked = request
            .size
            .as_deref()
            .map(str::trim)
            .filter(|size| *size != "auto");
        let size = asked.map(parse_size).transpose()?;
        if size.is_some() && request.aspect_ratio.is_some() {
            return Err(ValidationError::new("aspect_ratio", Rule::SizeOrRatio));
        }
        let first_seed = match request.seed {
            Some(seed) => {
                let last = seed.checked_add(u64::from(count - 1));
                if last.is_none_or(|last| last > api::MAX_SEED) {
                    return Err(ValidationError::new("seed", Rule::SeedsOutOfRange { count }));
                }
                seed
            }
            // Room for the following seeds below the limit.
            None => Seed::random().get().min(api::MAX_SEED - u64::from(count - 1)),
        };
        let images = (0..u64::from(count))
            .map(|offset| {
                let job = CreateJobRequest {
                    prompt: request.prompt.clone(),
                    seed: Some(first_seed + offset),
                    aspect_ratio: request.aspect_ratio,
                    width: size.map(|(width, _)| width),
                    height: size.map(|(_, height)| height),
                    batch_size: None,
                    source: None,
                    loras: Vec::new(),
                    style: None,
                };
                let job = match style {
                    Some(style) => crate::styles::apply(style, job),
                    None => job,
                };
                // The studio's own rules, with its field names turned into this API's.
                JobSpec::from_request(job, source).map_err(|error| match error.field {
                    "width" | "height" => ValidationError::new("size", error.rule),
                    _ => error,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let made = images
            .first()
            .map(|params| format!("{}x{}", params.width.get(), params.height.get()))
            .unwrap_or_default();
        let mut delivery = Delivery::from_request(&request, asked.map_or(made, str::to_owned))?;
        delivery.operation = operation;
        Ok(ImagesPlan {
            images,
            delivery,
            sent_prompt: request.prompt,
        })
    }
}

/// `WxH`, OpenAI's large sizes mapped to the studio's; the studio's limits are checked afterwards.
fn parse_size(text: &str) -> Result<(u32, u32), ValidationError> {
    let invalid = || ValidationError::new("size", Rule::SizeFormat);
    let (width, height) = text.split_once(['x', 'X']).ok_or_else(invalid)?;
    let side = |text: &str| text.parse::<u32>().map_err(|_| invalid());
    let asked = (side(width)?, side(height)?);
    Ok(OPENAI_SIZES
        .iter()
        .find(|(openai, _)| *openai == asked)
        .map_or(asked, |(_, studio)| *studio))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zimage_contract::AspectRatio;

    fn plan(json: serde_json::Value) -> Result<ImagesPlan, ValidationError> {
        ImagesPlan::try_from(serde_json::from_value::<ImagesRequest>(json).unwrap())
    }

    fn sizes(plan: &ImagesPlan) -> Vec<(u32, u32)> {
        plan.images
            .iter()
            .map(|params| (params.width.get(), params.height.get()))
            .collect()
    }

    fn field(json: serde_json::Value) -> &'static str {
        plan(json).unwrap_err().field
    }

    #[test]
    fn a_model_name_with_a_colon_asks_for_the_style_after_it() {
        assert_eq!(model_style(Some("z-image-turbo:watercolor")), Some("watercolor"));
        assert_eq!(model_style(Some("Z-Image-Turbo:ink: wash")), Some("ink: wash"));
        assert_eq!(model_style(Some("image:latest")), None);
        assert_eq!(model_style(Some("z-image-turbo")), None);
        assert_eq!(model_style(Some("dall-e-3")), None);
        assert_eq!(model_style(None), None);
    }

    #[test]
    fn a_style_makes_each_image_s_job() {
        let style = api::Style {
            id: String::new(),
            name: "ink".to_owned(),
            prompt_before: "ink wash of".to_owned(),
            prompt_after: String::new(),
            aspect_ratio: Some(AspectRatio::Tall9x16),
            loras: Vec::new(),
            updated_at_ms: 0,
        };
        let request = |json| serde_json::from_value::<ImagesRequest>(json).unwrap();
        let plan = ImagesPlan::new(
            request(serde_json::json!({"prompt": "a heron", "n": 2})),
            None,
            Some(&style),
        )
        .unwrap();
        assert_eq!(sizes(&plan), [(576, 1024), (576, 1024)]);
        assert_eq!(plan.images[1].prompt.as_str(), "ink wash of a heron");
        assert_eq!(plan.delivery.size, "576x1024");
        // The request's own size wins over the style's shape.
        let sized = ImagesPlan::new(
            request(serde_json::json!({"prompt": "a heron", "size": "512x512"})),
            None,
            Some(&style),
        )
        .unwrap();
        assert_eq!(sizes(&sized), [(512, 512)]);
    }

    #[test]
    fn a_bare_prompt_is_one_square_image_as_base64() {
        let plan = plan(serde_json::json!({"prompt": " a fox "})).unwrap();
        assert_eq!(sizes(&plan), [(1024, 1024)]);
        assert_eq!(plan.delivery.format, ResponseFormat::B64Json);
        assert_eq!(plan.delivery.size, "1024x1024");
        assert_eq!(plan.delivery.encoding.format, OutputFormat::Png);
        assert_eq!(plan.delivery.stream, None);
        assert_eq!(plan.images[0].prompt.as_str(), "a fox");
    }

    #[test]
    fn n_images_get_consecutive_seeds() {
        let plan = plan(serde_json::json!({"prompt": "x", "n": 3, "seed": 41})).unwrap();
        let seeds: Vec<u64> = plan.images.iter().map(|params| params.seed.get()).collect();
        assert_eq!(seeds, [41, 42, 43]);
        let random = super::ImagesPlan::try_from(ImagesRequest {
            prompt: "x".to_owned(),
            n: Some(4),
            ..ImagesRequest::default()
        })
        .unwrap();
        let seeds: Vec<u64> = random.images.iter().map(|params| params.seed.get()).collect();
        assert_eq!(seeds.windows(2).filter(|pair| pair[1] == pair[0] + 1).count(), 3);
        assert!(seeds[3] <= api::MAX_SEED);
    }

    #[test]
    fn openai_sizes_keep_their_aspect_with_the_longer_side_1024() {
        for ((asked, _), expected) in
            OPENAI_SIZES
                .iter()
                .zip([(1024, 672), (672, 1024), (1024, 576), (576, 1024)])
        {
            let plan =
                plan(serde_json::json!({"prompt": "x", "size": format!("{}x{}", asked.0, asked.1)})).unwrap();
            assert_eq!(sizes(&plan), [expected]);
        }
        for (text, expected) in [
            ("1024x1024", (1024, 1024)),
            ("512x512", (512, 512)),
            ("256x256", (256, 256)),
            ("auto", (1024, 1024)),
            ("768x1024", (768, 1024)),
        ] {
            assert_eq!(
                sizes(&plan(serde_json::json!({"prompt": "x", "size": text})).unwrap()),
                [expected],
                "{text}"
            );
        }
    }

    #[test]
    fn an_aspect_ratio_stands_in_for_the_size_but_not_beside_one() {
        let wide = plan(serde_json::json!({"prompt": "x", "aspect_ratio": "16:9", "size": "auto"})).unwrap();
        assert_eq!(sizes(&wide), [AspectRatio::Wide16x9.size()]);
        assert_eq!(
            field(serde_json::json!({"prompt": "x", "aspect_ratio": "16:9", "size": "512x512"})),
            "aspect_ratio"
        );
    }

    #[test]
    fn refusals_name_this_apis_parameters() {
        assert_eq!(field(serde_json::json!({"prompt": "  "})), "prompt");
        assert_eq!(field(serde_json::json!({"prompt": "x", "n": 0})), "n");
        assert_eq!(field(serde_json::json!({"prompt": "x", "n": 5})), "n");
        for size in [
            "2048x2048",
            "1000x1000",
            "100x100",
            "big",
            "1024",
            "x1024",
            "-5x10",
        ] {
            assert_eq!(
                field(serde_json::json!({"prompt": "x", "size": size})),
                "size",
                "{size}"
            );
        }
        assert_eq!(
            field(serde_json::json!({"prompt": "x", "n": 2, "seed": api::MAX_SEED})),
            "seed"
        );
        assert!(plan(serde_json::json!({"prompt": "x", "n": 1, "seed": api::MAX_SEED})).is_ok());
        assert!(plan(serde_json::json!({"prompt": "x", "model": "z-image-turbo"})).is_ok());
        assert_eq!(
            field(serde_json::json!({"prompt": "x", "background": "transparent"})),
            "background"
        );
        assert_eq!(
            field(serde_json::json!({"prompt": "x", "output_compression": 101})),
            "output_compression"
        );
        assert_eq!(
            field(serde_json::json!({"prompt": "x", "stream": true, "partial_images": 4})),
            "partial_images"
        );
        assert_eq!(
            field(serde_json::json!({"prompt": "x", "response_format": "url", "output_format": "webp"})),
            "output_format"
        );
    }

    #[test]
    fn every_model_name_is_served_and_only_dall_e_names_default_to_urls() {
        for (model, format) in [
            (None, ResponseFormat::B64Json),
            (Some("z-image-turbo"), ResponseFormat::B64Json),
            (Some("gpt-image-1"), ResponseFormat::B64Json),
            (Some("gpt-image-1.5"), ResponseFormat::B64Json),
            (Some("gpt-image-2"), ResponseFormat::B64Json),
            (Some("some-model-of-mine"), ResponseFormat::B64Json),
            (Some("dall-e-3"), ResponseFormat::Url),
            (Some("dall-e-2"), ResponseFormat::Url),
        ] {
            let plan = plan(serde_json::json!({"prompt": "x", "model": model})).unwrap();
            assert_eq!(plan.delivery.format, format, "{model:?}");
        }
        // Asked for, the format is the one asked for, whatever the model.
        let asked =
            plan(serde_json::json!({"prompt": "x", "model": "dall-e-3", "response_format": "b64_json"}));
        assert_eq!(asked.unwrap().delivery.format, ResponseFormat::B64Json);
    }

    #[test]
    fn librechats_request_is_one_png_with_its_settings_echoed() {
        let plan = plan(
            serde_json::json!({"model": "gpt-image-1", "prompt": "a fox", "n": 1,
            "background": "auto", "output_format": "png", "output_compression": 100,
            "quality": "auto", "size": "auto"}),
        )
        .unwrap();
        assert_eq!(sizes(&plan), [(1024, 1024)]);
        let delivery = plan.delivery;
        assert_eq!(delivery.format, ResponseFormat::B64Json);
        assert_eq!(delivery.encoding, Encoding::new(OutputFormat::Png, 100));
        assert_eq!(
            (delivery.quality, delivery.size.as_str()),
            (Quality::Auto, "1024x1024")
        );
    }

    #[test]
    fn the_echoed_size_is_the_one_named_or_the_one_made() {
        let named = plan(serde_json::json!({"prompt": "x", "size": "1536x1024"})).unwrap();
        assert_eq!(
            (named.delivery.size.as_str(), sizes(&named)[0]),
            ("1536x1024", (1024, 672))
        );
        let ratio = plan(serde_json::json!({"prompt": "x", "aspect_ratio": "16:9"})).unwrap();
        let made = AspectRatio::Wide16x9.size();
        assert_eq!(ratio.delivery.size, format!("{}x{}", made.0, made.1));
    }

    fn source(width: u32, height: u32) -> Source {
        Source {
            picture: crate::pictures::PictureId::of(b"a picture"),
            strength: crate::pictures::Strength::parse(None, false).unwrap(),
            mask: None,
            width,
            height,
        }
    }

    fn edit(json: serde_json::Value, width: u32, height: u32) -> Result<ImagesPlan, ValidationError> {
        ImagesPlan::new(
            serde_json::from_value::<ImagesRequest>(json).unwrap(),
            Some(source(width, height)),
            None,
        )
    }

    #[test]
    fn an_edit_is_the_pictures_size_unless_told_and_names_its_events() {
        let own = edit(
            serde_json::json!({"prompt": "x", "size": "auto", "n": 2}),
            768,
            512,
        )
        .unwrap();
        assert_eq!(sizes(&own), [(768, 512), (768, 512)]);
        assert_eq!(own.delivery.size, "768x512");
        assert_eq!(own.delivery.operation, Operation::Edit);
        assert!(
            own.images
                .iter()
                .all(|spec| spec.source == Some(source(768, 512)))
        );
        let cropped = edit(serde_json::json!({"prompt": "x", "size": "1536x1024"}), 768, 512).unwrap();
        assert_eq!(sizes(&cropped), [(1024, 672)]);
        assert_eq!(cropped.delivery.size, "1536x1024");
        // The generations' refusals, unchanged.
        assert_eq!(
            edit(serde_json::json!({"prompt": "x", "n": 9}), 768, 512)
                .unwrap_err()
                .field,
            "n"
        );
        let generation = plan(serde_json::json!({"prompt": "x"})).unwrap();
        assert_eq!(generation.delivery.operation, Operation::Generation);
        assert!(generation.images[0].source.is_none());
    }

    #[test]
    fn a_stream_always_carries_base64_and_compression_is_the_jpeg_quality() {
        let streamed = plan(
            serde_json::json!({"prompt": "x", "stream": true, "partial_images": 2,
            "response_format": "url", "output_format": "jpeg", "output_compression": 40}),
        )
        .unwrap();
        assert_eq!(streamed.delivery.stream, Some(2));
        assert_eq!(streamed.delivery.format, ResponseFormat::B64Json);
        assert_eq!(streamed.delivery.encoding.jpeg_quality, 40);
        let not_streamed =
            plan(serde_json::json!({"prompt": "x", "stream": false, "partial_images": 3})).unwrap();
        assert_eq!(not_streamed.delivery.stream, None);
    }
}
