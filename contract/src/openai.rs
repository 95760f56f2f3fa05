//! The OpenAI-compatible images API under `/v1`: the bodies OpenAI's SDKs and the chat front ends
//! built on them (Open WebUI, LibreChat) send and expect, the streamed events, and the studio's two
//! extensions (`seed`, `aspect_ratio`).

use serde::{Deserialize, Serialize};

use crate::AspectRatio;

/// The one model the studio offers, as `GET /v1/models` lists it; every `model` name is served by it.
pub const MODEL_ID: &str = "z-image-turbo";
/// The answer's header that names the model that made the images, whatever `model` asked for.
pub const MODEL_HEADER: &str = "x-zimage-model";
/// Most images one request may ask for (`n`); each is a job of its own.
pub const MAX_IMAGES: u32 = 4;

/// Route paths of the OpenAI-compatible API.
pub mod paths {
    /// `POST` an [`super::ImagesRequest`]: answered once the images exist.
    pub const IMAGES_GENERATIONS: &str = "/v1/images/generations";
    /// `GET` the models.
    pub const MODELS: &str = "/v1/models";
}

/// How the images come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// The image, base64-encoded, in the answer.
    B64Json,
    /// The absolute URL of the stored PNG (`/api/images/{id}`); with a secret, fetch it with the same
    /// `Authorization` header.
    Url,
}

/// What the image is encoded as: `png` (the default), `jpeg` or `webp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// The stored PNG as it is, with its prompt, seed and size in text chunks.
    #[default]
    Png,
    /// Transcoded from the PNG, at `output_compression` as the JPEG quality.
    Jpeg,
    /// Transcoded from the PNG, losslessly (see `output_compression`).
    Webp,
}

impl OutputFormat {
    /// The media type, as `data:` URLs and `Content-Type` name it.
    pub fn media_type(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }
}

/// The background asked for. The model makes opaque images: `transparent` is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Background {
    #[default]
    Auto,
    Opaque,
    Transparent,
}

/// The background of the images made, as answers echo it: always `opaque`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MadeBackground {
    Opaque,
}

/// OpenAI's quality settings (`standard` and `hd` for its `dall-e-3`, the others for its GPT image
/// models): accepted and echoed; the studio's sampler is the same for all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    #[default]
    Auto,
    Low,
    Medium,
    High,
    Standard,
    Hd,
}

/// OpenAI's `dall-e-3` styles: accepted and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Style {
    Vivid,
    Natural,
}

/// OpenAI's content moderation levels: accepted and ignored (the studio moderates nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Moderation {
    Auto,
    Low,
}

/// Most live previews one image may send as `image_generation.partial_image` events.
pub const MAX_PARTIAL_IMAGES: u32 = 3;

/// Body of `POST /v1/images/generations`: every field of OpenAI's Images API, each with its meaning
/// here, and the studio's two extensions. Any other field is refused, naming it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImagesRequest {
    /// What to draw: 1 to 2000 characters after trimming.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub prompt: String,
    /// Any name: every model name (the ids `GET /v1/models` lists, OpenAI's `gpt-image-1`,
    /// `gpt-image-1.5`, `gpt-image-2`, `dall-e-3`, `dall-e-2`, or any other) is served by the studio's
    /// one model, which the answer's `x-zimage-model` header names. The name only chooses the default
    /// `response_format`, as at OpenAI: `url` for names beginning `dall-e`, else `b64_json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How many images, 1 to 4: each is a job of its own, with consecutive seeds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u32"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4))]
    pub n: Option<u32>,
    /// `auto` (the default: 1024x1024, or `aspect_ratio`), `WxH` with sides of 256 to 1024 pixels in
    /// steps of 16, or one of OpenAI's sizes, made at the same aspect with the longer side 1024:
    /// `1536x1024` → 1024x672, `1024x1536` → 672x1024, `1792x1024` → 1024x576, `1024x1792` → 576x1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(auto|[0-9]{1,5}x[0-9]{1,5})$"))]
    pub size: Option<String>,
    /// `b64_json` or `url` (the stored PNG, so only with `output_format` `png`). Left out: `url` for
    /// model names beginning `dall-e`, `b64_json` for every other, as OpenAI answers. Ignored with
    /// `stream`, whose events carry base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// `png` (the default: the stored PNG), `jpeg` or `webp` (transcoded from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<OutputFormat>,
    /// 0 to 100, default 100: the JPEG quality for `jpeg` (0 is taken as 1). Accepted and ignored for
    /// `png`, and for `webp`, which the studio encodes losslessly.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u32"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub output_compression: Option<u32>,
    /// `auto` or `opaque`; `transparent` is refused (400 naming `background`): the model makes
    /// opaque images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Background>,
    /// Accepted and echoed in the answer; the studio's sampler is fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<Style>,
    /// Accepted and ignored: the studio moderates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<Moderation>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `true`: answer with server-sent events (`text/event-stream`) instead of JSON: up to
    /// `partial_images` `image_generation.partial_image` events per image, from its live previews,
    /// then one `image_generation.completed` per image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// 0 to 3 (default 0): how many live previews of each image `stream` sends, spread over its
    /// steps. Fewer come when the image is done sooner, or when ComfyUI sends no previews. Accepted
    /// and ignored without `stream`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u32"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 3))]
    pub partial_images: Option<u32>,
    /// Extension: the first image's seed (0 to 2^53 - 1); the next images take the following seeds.
    /// Random when left out.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u64"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 9007199254740991.0))]
    pub seed: Option<u64>,
    /// Extension: one of the studio's aspect ratios, instead of `size` (which must then be left out
    /// or be `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<AspectRatio>,
}

/// Answer to `POST /v1/images/generations` (200), once every image exists, with the settings echoed
/// where OpenAI's answer has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImagesResponse {
    /// When the images were made, in seconds since the Unix epoch.
    pub created: u64,
    /// One entry per image, in seed order.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 4))]
    pub data: Vec<ImageData>,
    /// Always `opaque`.
    pub background: MadeBackground,
    /// The encoding of the images in `b64_json` (a `url` is always the stored PNG).
    pub output_format: OutputFormat,
    /// The request's `quality`, `auto` when left out.
    pub quality: Quality,
    /// The request's `size` as it named it, or, for `auto` or none, the size made (`1024x1024`, or the
    /// `aspect_ratio`'s). OpenAI's large sizes are made smaller: the image's own header has its size.
    pub size: String,
    /// Token counts, in OpenAI's shape: the studio counts no tokens, so every count is 0.
    pub usage: ImageUsage,
}

/// OpenAI's token usage of an image request. The studio bills nothing and counts no tokens: zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub input_tokens_details: InputTokensDetails,
}

/// The input tokens by kind (always 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InputTokensDetails {
    pub text_tokens: u64,
    pub image_tokens: u64,
}

/// One image: `b64_json` or `url`, as the request's `response_format` asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageData {
    /// The image in `output_format`, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    /// The absolute URL of the stored PNG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The prompt as the model got it, when the studio changed it (it only trims spaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
}

/// One server-sent event of a streamed `POST /v1/images/generations`: its `event:` field is the
/// `type`, its `data:` field this object's JSON. A failure after the stream began is an `error` event
/// whose data is an [`OpenAiErrorBody`] (OpenAI's SDKs raise it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type")]
pub enum ImageStreamEvent {
    /// A live preview of one image, while it is made.
    #[serde(rename = "image_generation.partial_image")]
    PartialImage(PartialImage),
    /// One finished image; one event per image, in the order they finish.
    #[serde(rename = "image_generation.completed")]
    Completed(CompletedImage),
}

impl ImageStreamEvent {
    /// The SSE `event:` name, which is also the `type`.
    pub fn name(&self) -> &'static str {
        match self {
            ImageStreamEvent::PartialImage(_) => "image_generation.partial_image",
            ImageStreamEvent::Completed(_) => "image_generation.completed",
        }
    }
}

/// `image_generation.partial_image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartialImage {
    /// The preview in `output_format`, base64-encoded (ComfyUI's previews are smaller than the image).
    pub b64_json: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// As in [`ImagesResponse::size`].
    pub size: String,
    pub quality: Quality,
    pub background: MadeBackground,
    pub output_format: OutputFormat,
    /// 0-based, counted per image.
    pub partial_image_index: u32,
    /// Extension: which image of the request (0-based, in seed order) this preview is of.
    pub image_index: u32,
}

/// `image_generation.completed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompletedImage {
    /// The image in `output_format`, base64-encoded.
    pub b64_json: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub size: String,
    pub quality: Quality,
    pub background: MadeBackground,
    pub output_format: OutputFormat,
    pub usage: ImageUsage,
    /// Extension: which image of the request (0-based, in seed order) this is.
    pub image_index: u32,
}

/// The `object` of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ListObject {
    List,
}

/// The `object` of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ModelObject {
    Model,
}

/// Answer to `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelList {
    pub object: ListObject,
    pub data: Vec<Model>,
}

/// One model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Model {
    /// The name to pass as `model`.
    pub id: String,
    pub object: ModelObject,
    /// Seconds since the Unix epoch at which the gateway started.
    pub created: u64,
    pub owned_by: String,
}

/// The kind of an error, as OpenAI names them (SDKs choose their exception by the status code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OpenAiErrorType {
    /// 400 and other refusals of the request itself (404, 405, 409, 413, 415, 507...).
    InvalidRequestError,
    /// 401: the studio's secret is missing or wrong.
    AuthenticationError,
    /// 403: the door refused (network address, host name, another site).
    PermissionError,
    /// 429: a limit was reached; `Retry-After` says when to try again.
    RateLimitError,
    /// 5xx: no backend ready, the studio restarting, or a generation that failed.
    ServerError,
}

/// The body of every error answer under `/v1`: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OpenAiErrorBody {
    pub error: OpenAiError,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OpenAiError {
    /// A sentence for people.
    pub message: String,
    #[serde(rename = "type")]
    pub kind: OpenAiErrorType,
    /// The request field at fault, if one is (`prompt`, `n`, `size`, `model`, `seed`...).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub param: Option<String>,
    /// The studio's stable code for programs (the same as the studio API's `error.code`).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sdk_request_with_only_a_prompt_parses_and_unknown_fields_are_refused() {
        let request: ImagesRequest = serde_json::from_str(r#"{"prompt": "a fox"}"#).unwrap();
        assert_eq!(request.prompt, "a fox");
        assert_eq!(request.n, None);
        let with_nulls: ImagesRequest =
            serde_json::from_str(r#"{"prompt": "a fox", "n": null, "size": null, "user": "u1"}"#).unwrap();
        assert_eq!(with_nulls.size, None);
        assert!(serde_json::from_str::<ImagesRequest>(r#"{"prompt": "x", "steps": 50}"#).is_err());
    }

    #[test]
    fn errors_serialize_with_null_param_and_code_as_openai_does() {
        let body = OpenAiErrorBody {
            error: OpenAiError {
                message: "m".to_owned(),
                kind: OpenAiErrorType::InvalidRequestError,
                param: None,
                code: None,
            },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"error": {"message": "m", "type": "invalid_request_error", "param": null, "code": null}})
        );
        let format: ResponseFormat = serde_json::from_str(r#""b64_json""#).unwrap();
        assert_eq!(format, ResponseFormat::B64Json);
    }

    #[test]
    fn librechats_request_parses_and_stream_events_carry_their_type() {
        let request: ImagesRequest = serde_json::from_str(
            r#"{"model": "gpt-image-1", "prompt": "p", "n": 1, "background": "auto", "output_format": "png",
                "output_compression": 100, "quality": "auto", "size": "auto"}"#,
        )
        .unwrap();
        assert_eq!(request.background, Some(Background::Auto));
        assert_eq!(request.output_format, Some(OutputFormat::Png));
        let event = ImageStreamEvent::PartialImage(PartialImage {
            b64_json: "AA==".to_owned(),
            created_at: 1,
            size: "1024x1024".to_owned(),
            quality: Quality::Auto,
            background: MadeBackground::Opaque,
            output_format: OutputFormat::Webp,
            partial_image_index: 0,
            image_index: 0,
        });
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], event.name());
        assert_eq!(json["output_format"], "webp");
        assert_eq!(json["background"], "opaque");
        assert_eq!(serde_json::from_value::<ImageStreamEvent>(json).unwrap(), event);
    }
}
