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
    /// `POST` an [`super::ImageEditRequest`] (JSON) or [`super::ImageEditForm`] (multipart): the same
    /// answers as generations, made from a picture.
    pub const IMAGES_EDITS: &str = "/v1/images/edits";
    /// `GET` the models.
    pub const MODELS: &str = "/v1/models";
}

/// Most parts a multipart edit may have: OpenAI's fields (16 or so) with room to spare, far from the
/// thousands a hostile form could hold.
pub const MAX_EDIT_PARTS: usize = 64;
/// Largest text field of a multipart edit (the prompt is the longest: 2,000 characters of up to
/// 4 bytes each, far under this).
pub const MAX_EDIT_TEXT_BYTES: usize = 64 * 1024;
/// Largest body of `POST /v1/images/edits`: a picture and a mask of
/// [`crate::pictures::MAX_PICTURE_BYTES`] each, as base64 (4 bytes for 3) in JSON, and the other fields.
pub const MAX_EDIT_BODY_BYTES: usize = crate::pictures::MAX_PICTURE_BYTES / 3 * 4 * 2 + 1024 * 1024;

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

/// OpenAI's `input_fidelity` (how closely its GPT image models keep faces and details of the input):
/// accepted and ignored, the picture's `strength` decides how much may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InputFidelity {
    High,
    Low,
}

/// A picture in the JSON form of `POST /v1/images/edits`, as OpenAI's `ImageRefParam`: the studio
/// takes a `data:` URL (`data:image/png;base64,...`) alone. An `http(s)` URL is refused, the gateway
/// fetches nothing from elsewhere, and so is a `file_id`, the studio keeps no OpenAI files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    /// A base64 `data:` URL of a PNG, JPEG or WebP (at most 25 MiB once decoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Refused: the studio has no Files API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
}

/// Body of `POST /v1/images/edits` sent as JSON (OpenAI's `EditImageBodyJsonParam`), and the text fields
/// of its multipart form: every field of OpenAI's edits, each with its meaning here, and the studio's
/// extensions (`seed`, `aspect_ratio`, `strength`). The settings mean what they mean for generations.
/// Any other field is refused, naming it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImageEditRequest {
    /// The picture to start from, exactly one (the studio changes one picture; OpenAI's GPT image
    /// models also take up to 16 as references, which the studio's model cannot use: more than one is
    /// refused, naming `images`). Only in the JSON form; the multipart form sends files as `image`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1))]
    pub images: Vec<ImageRef>,
    /// A PNG or WebP whose transparent pixels (alpha 0) mark what to change; the rest is kept. The
    /// picture's size (as sent, or as the studio scaled it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<ImageRef>,
    /// What the picture should become: 1 to 2000 characters after trimming.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub prompt: String,
    /// As for generations: any name, served by the studio's model.
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
    /// `auto` (the default: the picture's own size, as the studio scaled it to fit 1024 pixels) or a
    /// size as for generations: the picture is then cropped (centred) to its aspect and scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(auto|[0-9]{1,5}x[0-9]{1,5})$"))]
    pub size: Option<String>,
    /// As for generations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// As for generations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<OutputFormat>,
    /// As for generations.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u32"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub output_compression: Option<u32>,
    /// As for generations: `transparent` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Background>,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_fidelity: Option<InputFidelity>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<Moderation>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `true`: server-sent events, `image_edit.partial_image` and `image_edit.completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// As for generations.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u32"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 3))]
    pub partial_images: Option<u32>,
    /// Extension: the first image's seed, as for generations.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u64"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 9007199254740991.0))]
    pub seed: Option<u64>,
    /// Extension: one of the studio's aspect ratios instead of `size`; the picture is cropped to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<AspectRatio>,
    /// Extension: how much may change, 0.2 to 1.0 (OpenAI has no such setting). Left out: 0.6, or 1.0
    /// with a mask (the masked part is made anew, the rest kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.2, maximum = 1.0))]
    pub strength: Option<f32>,
}

impl ImageEditRequest {
    /// The settings an edit shares with a generation, with their meanings and refusals.
    pub fn settings(&self) -> ImagesRequest {
        ImagesRequest {
            prompt: self.prompt.clone(),
            model: self.model.clone(),
            n: self.n,
            size: self.size.clone(),
            response_format: self.response_format,
            output_format: self.output_format,
            output_compression: self.output_compression,
            background: self.background,
            quality: self.quality,
            style: None,
            moderation: self.moderation,
            user: self.user.clone(),
            stream: self.stream,
            partial_images: self.partial_images,
            seed: self.seed,
            aspect_ratio: self.aspect_ratio,
        }
    }
}

/// The multipart form of `POST /v1/images/edits` (`multipart/form-data`), as OpenAI's SDKs, Open WebUI
/// and LibreChat send it: the files below, and the text fields of [`ImageEditRequest`] (all but
/// `images` and `mask`) as text parts (`n=2`, `stream=true`). At most 64 parts; a text part at most
/// 64 KiB; a file at most 25 MiB; the body at most about 68 MiB. File names are never used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageEditForm {
    /// The picture (PNG, JPEG or WebP), as `image` or `image[]` (OpenAI's SDKs name a list so):
    /// exactly one file.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Binary))]
    pub image: Vec<u8>,
    /// A PNG or WebP whose transparent pixels mark what to change (see [`ImageEditRequest::mask`]).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Binary))]
    pub mask: Option<Vec<u8>>,
    /// As in [`ImageEditRequest::prompt`].
    pub prompt: String,
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

/// One server-sent event of a streamed `POST /v1/images/generations` (`image_generation.*`) or
/// `POST /v1/images/edits` (`image_edit.*`, the same fields): its `event:` field is the
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
    /// A live preview of one image of `POST /v1/images/edits`.
    #[serde(rename = "image_edit.partial_image")]
    EditPartialImage(PartialImage),
    /// One finished image of `POST /v1/images/edits`.
    #[serde(rename = "image_edit.completed")]
    EditCompleted(CompletedImage),
}

impl ImageStreamEvent {
    /// The SSE `event:` name, which is also the `type`.
    pub fn name(&self) -> &'static str {
        match self {
            ImageStreamEvent::PartialImage(_) => "image_generation.partial_image",
            ImageStreamEvent::Completed(_) => "image_generation.completed",
            ImageStreamEvent::EditPartialImage(_) => "image_edit.partial_image",
            ImageStreamEvent::EditCompleted(_) => "image_edit.completed",
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

    #[test]
    fn the_json_edit_parses_openais_image_refs_and_shares_the_generations_settings() {
        let request: ImageEditRequest = serde_json::from_str(
            r#"{"model": "gpt-image-1", "prompt": "p", "n": 2, "size": "auto", "input_fidelity": "high",
                "images": [{"image_url": "data:image/png;base64,AA=="}], "mask": {"file_id": "file-1"},
                "strength": 0.5, "stream": true}"#,
        )
        .unwrap();
        assert_eq!(
            request.images[0].image_url.as_deref(),
            Some("data:image/png;base64,AA==")
        );
        assert_eq!(
            request.mask.as_ref().and_then(|mask| mask.file_id.as_deref()),
            Some("file-1")
        );
        let settings = request.settings();
        assert_eq!(
            (settings.n, settings.stream, settings.size.as_deref()),
            (Some(2), Some(true), Some("auto"))
        );
        assert!(serde_json::from_str::<ImageEditRequest>(r#"{"prompt": "p", "style": "vivid"}"#).is_err());
        assert!(
            serde_json::from_str::<ImageEditRequest>(r#"{"prompt": "p", "images": [{"url": "x"}]}"#).is_err()
        );
    }

    #[test]
    fn edit_events_carry_the_edits_names() {
        let completed = CompletedImage {
            b64_json: "AA==".to_owned(),
            created_at: 1,
            size: "auto".to_owned(),
            quality: Quality::Auto,
            background: MadeBackground::Opaque,
            output_format: OutputFormat::Png,
            usage: ImageUsage::default(),
            image_index: 0,
        };
        let event = ImageStreamEvent::EditCompleted(completed);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "image_edit.completed");
        assert_eq!(event.name(), "image_edit.completed");
        assert_eq!(serde_json::from_value::<ImageStreamEvent>(json).unwrap(), event);
    }
}
