//! Styles people keep: the LoRAs a job asks for (with a strength each), what the gateway knows of the
//! LoRAs its backends have, and saved styles (a name for a set of settings), with their limits.

use serde::{Deserialize, Serialize};

use crate::AspectRatio;

/// Most LoRAs one job may use.
pub const MAX_LORAS: usize = 4;
/// Weakest strength of a LoRA (a negative strength pushes away from what it teaches).
pub const MIN_LORA_STRENGTH: f64 = -2.0;
/// Strongest strength of a LoRA.
pub const MAX_LORA_STRENGTH: f64 = 2.0;
/// Strength of a LoRA when a request gives none.
pub const DEFAULT_LORA_STRENGTH: f64 = 1.0;
/// Longest LoRA file name accepted, in characters.
pub const MAX_LORA_NAME_CHARS: usize = 255;
/// Longest style name, in characters after trimming.
pub const MAX_STYLE_NAME_CHARS: usize = 60;
/// Longest text a style adds before or after the prompt, in characters after trimming.
pub const MAX_STYLE_TEXT_CHARS: usize = 500;
/// Most styles a household keeps.
pub const MAX_STYLES: usize = 200;

/// Route paths of LoRAs and styles.
pub mod paths {
    /// `GET` every LoRA any backend has ([`super::LoraList`]).
    pub const LORAS: &str = "/api/loras";
    /// `GET` the saved styles ([`super::StyleList`]), `POST` a new one ([`super::StyleRequest`]).
    pub const STYLES: &str = "/api/styles";

    /// `PUT` ([`super::StyleRequest`], a rename included) or `DELETE` one style.
    pub fn style(id: &str) -> String {
        format!("/api/styles/{id}")
    }
}

/// One LoRA a job uses, as a request names it (`loras` of `POST /api/jobs`) and as a record shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoraChoice {
    /// The file's name as ComfyUI lists it (for example `watercolor.safetensors`, or `styles/ink.safetensors`
    /// in a subfolder): one of `GET /api/loras`.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub name: String,
    /// How strongly it applies, -2 to 2; 1 when left out.
    #[serde(default = "default_lora_strength")]
    #[cfg_attr(feature = "openapi", schema(minimum = -2.0, maximum = 2.0, default = 1.0))]
    pub strength: f64,
}

fn default_lora_strength() -> f64 {
    DEFAULT_LORA_STRENGTH
}

/// A LoRA some backend has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoraInfo {
    /// The file's name as ComfyUI lists it.
    pub name: String,
    /// The backends that have it, by name.
    pub backends: Vec<String>,
    /// Words the LoRA was trained to answer to, where its file says so; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trigger_words: Vec<String>,
}

/// Answer to `GET /api/loras`, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoraList {
    pub loras: Vec<LoraInfo>,
}

/// A saved style: a name for a set of settings, shared by the household's devices. Named `SavedStyle`
/// in the OpenAPI document, beside the OpenAI images API's own `Style` (`vivid`, `natural`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = SavedStyle))]
pub struct Style {
    /// The style's id, kept across renames.
    pub id: String,
    pub name: String,
    /// Words put before the prompt (joined with a space).
    #[serde(default)]
    pub prompt_before: String,
    /// Words put after the prompt (joined with a space).
    #[serde(default)]
    pub prompt_after: String,
    /// The shape it picks when a job gives no size of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<AspectRatio>,
    /// The LoRAs it uses when a job names none of its own.
    #[serde(default)]
    pub loras: Vec<LoraChoice>,
    /// When it was last saved, milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

/// Body of `POST /api/styles` and `PUT /api/styles/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StyleRequest {
    /// 1 to 60 characters after trimming, no control characters, not already another style's.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 60))]
    pub name: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub prompt_before: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub prompt_after: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<AspectRatio>,
    /// At most 4, each name once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 4))]
    pub loras: Vec<LoraChoice>,
}

/// Answer to `GET /api/styles`, sorted by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StyleList {
    pub styles: Vec<Style>,
}
