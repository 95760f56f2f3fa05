//! The OpenAI-compatible images API under `/v1`: the bodies OpenAI's SDKs and Open WebUI's "OpenAI"
//! image engine send and expect, with the studio's two extensions (`seed`, `aspect_ratio`).

use serde::{Deserialize, Serialize};

use crate::AspectRatio;

/// The one model the studio offers, as `GET /v1/models` lists it.
pub const MODEL_ID: &str = "z-image-turbo";
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// The PNG, base64-encoded, in the answer.
    #[default]
    B64Json,
    /// The absolute URL of the stored PNG (`/api/images/{id}`); with a secret, fetch it with the same
    /// `Authorization` header.
    Url,
}

/// Body of `POST /v1/images/generations`. Fields OpenAI defines but the studio has no use for are
/// `user`, `quality` and `style`: accepted and ignored. Any other field is refused, naming it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImagesRequest {
    /// What to draw: 1 to 2000 characters after trimming.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub prompt: String,
    /// One of the ids `GET /v1/models` lists; `z-image-turbo` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How many images, 1 to 4: each is a job of its own, with consecutive seeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4))]
    pub n: Option<u32>,
    /// `auto` (the default: 1024x1024, or `aspect_ratio`), `WxH` with sides of 256 to 1024 pixels in
    /// steps of 16, or one of OpenAI's sizes, made at the same aspect with the longer side 1024:
    /// `1536x1024` → 1024x672, `1024x1536` → 672x1024, `1792x1024` → 1024x576, `1024x1792` → 576x1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(auto|[0-9]{1,5}x[0-9]{1,5})$"))]
    pub size: Option<String>,
    /// `b64_json` (the default) or `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Accepted and ignored: the studio's sampler is fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// Extension: the first image's seed (0 to 2^53 - 1); the next images take the following seeds.
    /// Random when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 9007199254740991.0))]
    pub seed: Option<u64>,
    /// Extension: one of the studio's aspect ratios, instead of `size` (which must then be left out
    /// or be `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<AspectRatio>,
}

/// Answer to `POST /v1/images/generations` (200), once every image exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImagesResponse {
    /// When the images were made, in seconds since the Unix epoch.
    pub created: u64,
    /// One entry per image, in seed order.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 4))]
    pub data: Vec<ImageData>,
}

/// One image: `b64_json` or `url`, as the request's `response_format` asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageData {
    /// The PNG, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    /// The absolute URL of the stored PNG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The prompt as the model got it, when the studio changed it (it only trims spaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
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
}
