//! The HTTP contract of the gateway: request and response bodies, SSE payloads, route paths and limits.
//! Defined once here, free of any UI or web framework; the gateway, the browser UI, the command line
//! and the benchmarks all use these types. With the `openapi` feature (the gateway's alone) every type
//! also derives utoipa's `ToSchema`, so the OpenAPI document is generated from these very types.

use serde::{Deserialize, Serialize};

pub mod openai;
pub mod pictures;
pub mod styles;
pub mod whole;

pub use pictures::{PictureKind, PictureUploaded, SourceInfo, SourceRequest};
pub use styles::{LoraChoice, LoraInfo, LoraList, Style, StyleList, StyleRequest};

/// Longest prompt accepted, in characters (Unicode scalar values) after trimming.
pub const MAX_PROMPT_CHARS: usize = 2000;
/// Smallest side of an image, in pixels.
pub const MIN_SIDE: u32 = 256;
/// Largest side of an image, in pixels: the 12 GB card's comfortable limit for Z-Image-Turbo.
pub const MAX_SIDE: u32 = 1024;
/// Both sides must be multiples of this: the VAE downsamples by 8 and Z-Image's patch size is 2.
pub const SIDE_STEP: u32 = 16;
/// Largest seed: seeds above 2^53 - 1 lose precision in JavaScript numbers.
pub const MAX_SEED: u64 = (1 << 53) - 1;
/// Sampling steps of the distilled model; fixed.
pub const STEPS: u32 = 8;
/// Largest request body the gateway reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default page size of `GET /api/history`.
pub const DEFAULT_HISTORY_LIMIT: usize = 24;
/// Largest page size of `GET /api/history`.
pub const MAX_HISTORY_LIMIT: usize = 100;

/// Route paths, shared so the UI never spells a URL by hand.
pub mod paths {
    pub const JOBS: &str = "/api/jobs";
    pub const HISTORY: &str = "/api/history";
    /// The OpenAPI 3.1 document of `/api` and `/v1`.
    pub const OPENAPI: &str = "/api/openapi.json";
    pub const HEALTHZ: &str = "/healthz";
    pub const READYZ: &str = "/readyz";
    /// Every ComfyUI backend, by name ([`super::BackendList`]).
    pub const BACKENDS: &str = "/api/backends";

    /// `GET`/`DELETE` one job.
    pub fn job(id: &str) -> String {
        format!("/api/jobs/{id}")
    }
    /// The job's server-sent events.
    pub fn job_events(id: &str) -> String {
        format!("/api/jobs/{id}/events")
    }
    /// The job's latest live preview (JPEG or PNG).
    pub fn job_preview(id: &str) -> String {
        format!("/api/jobs/{id}/preview")
    }
    /// The finished image (PNG).
    pub fn image(id: &str) -> String {
        format!("/api/images/{id}")
    }
    /// A small JPEG of the finished image, for galleries.
    pub fn thumbnail(id: &str) -> String {
        format!("/api/images/{id}/thumbnail")
    }
    /// One history entry (for `DELETE`).
    pub fn history_item(id: &str) -> String {
        format!("/api/history/{id}")
    }

    /// `GET` whether a secret is required and this browser signed in, `POST` [`super::SessionRequest`]
    /// to sign in, `DELETE` to sign out.
    pub const SESSION: &str = "/api/session";
    /// `POST` (JSON body `{}`) by a signed-in device: a one-time link that signs a phone in.
    pub const PAIRINGS: &str = "/api/pairings";
    /// The gateway's own sign-in page (works without the UI bundle); `?next=/path` returns there.
    pub const SIGN_IN_PAGE: &str = "/sign-in";
    /// The gateway's own page showing a pairing QR code.
    pub const PAIR_PAGE: &str = "/pair";
}

/// The aspect ratios the studio offers; each maps to a size whose longer side is [`MAX_SIDE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AspectRatio {
    #[serde(rename = "1:1")]
    Square,
    #[serde(rename = "3:4")]
    Portrait3x4,
    #[serde(rename = "4:3")]
    Landscape4x3,
    #[serde(rename = "16:9")]
    Wide16x9,
    #[serde(rename = "9:16")]
    Tall9x16,
}

impl AspectRatio {
    /// Every ratio, in the order the UI shows them.
    pub const ALL: [AspectRatio; 5] = [
        AspectRatio::Square,
        AspectRatio::Portrait3x4,
        AspectRatio::Landscape4x3,
        AspectRatio::Wide16x9,
        AspectRatio::Tall9x16,
    ];

    /// The ratio as written on the wire and on the chip, e.g. `"16:9"`.
    pub fn label(self) -> &'static str {
        match self {
            AspectRatio::Square => "1:1",
            AspectRatio::Portrait3x4 => "3:4",
            AspectRatio::Landscape4x3 => "4:3",
            AspectRatio::Wide16x9 => "16:9",
            AspectRatio::Tall9x16 => "9:16",
        }
    }

    /// Parses the label written by [`AspectRatio::label`].
    pub fn from_label(label: &str) -> Option<AspectRatio> {
        AspectRatio::ALL.into_iter().find(|ratio| ratio.label() == label)
    }

    /// Width and height in pixels: the longer side is [`MAX_SIDE`], the shorter rounded down to [`SIDE_STEP`].
    pub fn size(self) -> (u32, u32) {
        let (across, down) = match self {
            AspectRatio::Square => (1, 1),
            AspectRatio::Portrait3x4 => (3, 4),
            AspectRatio::Landscape4x3 => (4, 3),
            AspectRatio::Wide16x9 => (16, 9),
            AspectRatio::Tall9x16 => (9, 16),
        };
        let shorter =
            |numerator: u32, denominator: u32| MAX_SIDE * numerator / denominator / SIDE_STEP * SIDE_STEP;
        if across >= down {
            (MAX_SIDE, shorter(down, across))
        } else {
            (shorter(across, down), MAX_SIDE)
        }
    }
}

/// Body of `POST /api/jobs`. Unknown fields are refused; the gateway turns this into validated parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateJobRequest {
    /// What to draw: 1 to 2000 characters after trimming, without control characters other than line breaks and tabs.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub prompt: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u64"
    )]
    /// 0 to 2^53 - 1; random when left out.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 9007199254740991.0))]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Instead of `width` and `height`; 1:1 when all three are left out.
    pub aspect_ratio: Option<AspectRatio>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u32"
    )]
    /// 256 to 1024 pixels in steps of 16, with `height`.
    #[cfg_attr(feature = "openapi", schema(minimum = 256, maximum = 1024, multiple_of = 16))]
    pub width: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u32"
    )]
    /// 256 to 1024 pixels in steps of 16, with `width`.
    #[cfg_attr(feature = "openapi", schema(minimum = 256, maximum = 1024, multiple_of = 16))]
    pub height: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u32"
    )]
    /// One image per job: only 1 is accepted.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1))]
    pub batch_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Start from an uploaded picture instead of noise. Without `width`, `height` and `aspect_ratio`
    /// the image has the picture's size; with them the picture is cropped (centred) and scaled to it.
    pub source: Option<SourceRequest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// LoRAs to apply, at most 4, each name once; each must be one some backend has (`GET /api/loras`).
    /// The job goes only to a backend that has all of them.
    #[cfg_attr(feature = "openapi", schema(max_items = 4))]
    pub loras: Vec<LoraChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// A saved style's name: its words wrap the prompt, its LoRAs apply unless `loras` names some, its
    /// shape applies unless the request gives a size or shape. Applied when the job is accepted.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 60))]
    pub style: Option<String>,
}

/// Answer to `POST /api/jobs` (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobAccepted {
    pub id: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub status: JobStatus,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// True once the job can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// When things happened, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timings {
    pub queued_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
}

/// A failure a person can read: a stable `code` for programs and a `message` for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobFailure {
    pub code: String,
    pub message: String,
}

/// Answer to `GET /api/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub id: String,
    pub prompt: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub status: JobStatus,
    /// 1 when next in line; present only while queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// Sampling steps done so far.
    pub step: u32,
    pub total_steps: u32,
    pub timings: Timings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobFailure>,
    /// The name of the ComfyUI backend running or that ran the job (never its address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// One finished image in `GET /api/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryItem {
    /// The id of the job that made it (also the image id).
    pub id: String,
    pub prompt: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub timings: Timings,
    /// Milliseconds since the Unix epoch at which the job was created.
    pub created_at: u64,
    pub image_url: String,
    pub thumbnail_url: String,
    /// The name of the ComfyUI backend that made it; absent for images made before backends had names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Kept apart by someone (the gallery is shared: any admitted device may star or unstar).
    #[serde(default)]
    pub starred: bool,
    /// The picture it started from and how strongly; absent for an image made from words alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfo>,
    /// The LoRAs it was made with, and their strengths; absent for an image made without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<LoraChoice>,
}

/// Body of `PATCH /api/history/{id}`: star or unstar an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HistoryPatch {
    pub starred: bool,
}

/// Answer to `GET /api/history?limit=N&before=ID&q=TEXT&starred=true`, newest first (in the order the
/// images were saved, the order the gallery received them live). `q` finds the
/// images whose prompt holds every word (any part of a word, in any language; a number also matches
/// the seed); `starred=true` keeps only starred images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPage {
    pub items: Vec<HistoryItem>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

/// One server-sent event of `GET /api/jobs/{id}/events`. The SSE `event:` field is [`JobEvent::name`]
/// and the `data:` field is the JSON of the variant's fields.
///
/// One more event can end a stream: `restarting` (data `{}`, no id) when the gateway shuts down before
/// the job ended. The job goes on after the restart; a client reconnects with `Last-Event-ID` (browsers'
/// `EventSource` does so by itself) and gets what it missed, then the job's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum JobEvent {
    Queued {
        position: u32,
    },
    Running {},
    /// The backend running the job was lost (it died, restarted or stopped answering): the job is sent
    /// again, to the same or another backend, with the same prompt, seed and size.
    Retrying {
        /// A sentence saying why, e.g. "the backend gpu0 stopped answering".
        reason: String,
        /// 1 for the first retry.
        attempt: u32,
    },
    Progress {
        step: u32,
        total: u32,
    },
    Preview {
        url: String,
    },
    Completed {
        image_url: String,
        thumbnail_url: String,
        seed: u64,
        width: u32,
        height: u32,
        elapsed_ms: u64,
        /// The name of the backend that made it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backend: Option<String>,
    },
    Failed {
        code: String,
        message: String,
    },
    Cancelled {},
}

impl JobEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::Queued { .. } => "queued",
            JobEvent::Running {} => "running",
            JobEvent::Retrying { .. } => "retrying",
            JobEvent::Progress { .. } => "progress",
            JobEvent::Preview { .. } => "preview",
            JobEvent::Completed { .. } => "completed",
            JobEvent::Failed { .. } => "failed",
            JobEvent::Cancelled {} => "cancelled",
        }
    }

    /// True for the last event a job sends.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobEvent::Completed { .. } | JobEvent::Failed { .. } | JobEvent::Cancelled {}
        )
    }

    /// Rebuilds an event from an SSE `event:` name and its `data:` JSON.
    pub fn from_sse(name: &str, data: &str) -> Result<JobEvent, serde_json::Error>
    where
        Self: Sized,
    {
        let data: serde_json::Value = serde_json::from_str(data)?;
        serde_json::from_value(serde_json::json!({ "event": name, "data": data }))
    }

    /// The JSON written in the SSE `data:` field.
    pub fn data_json(&self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut fields)) => fields
                .remove("data")
                .map(|data| data.to_string())
                .unwrap_or_else(|| "{}".to_owned()),
            _ => "{}".to_owned(),
        }
    }
}

/// Body of `POST /api/session`: sign in with the studio's access secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub password: String,
}

/// Answer to `GET`, `POST` and `DELETE /api/session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionStatus {
    /// The studio has an access secret: without signing in, only the sign-in page works.
    pub secret_required: bool,
    /// This browser is signed in (it may also cancel and delete other people's jobs).
    pub signed_in: bool,
}

/// Answer to `POST /api/pairings` (201): a link for a phone and its QR code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PairingLink {
    /// Opening it signs the phone in once (or, when the studio has no secret, simply opens it).
    pub url: String,
    /// Seconds the link works; absent when the studio has no secret and the link is just its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
    /// The QR code of `url`, as an `<svg>` element.
    pub qr_svg: String,
}

/// The JSON body of every error answer: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for people (`message`) and programs (`code`), and which request field, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// The request field at fault, or null.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub field: Option<String>,
}

/// The state of the backend as `GET /readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    /// ComfyUI answers and has every node and model the workflow needs.
    Ready,
    /// ComfyUI answers but something the workflow needs is missing.
    Starting,
    /// ComfyUI does not answer.
    Unreachable,
}

/// Answer to `GET /readyz` (200 when `ready`, 503 otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    pub ready: bool,
    pub state: BackendState,
    /// True when the gateway runs its built-in simulator instead of a real ComfyUI.
    pub demo: bool,
    /// One line for people, e.g. "Waiting for ComfyUI at http://comfyui:8188 (connection refused).". In
    /// English: it carries ComfyUI's address and system errors (the studio page says the rest in its
    /// own language from the other fields, and shows this only where no field says it).
    pub message: String,
    /// Node classes the workflow needs that ComfyUI does not offer (a node pack is missing).
    #[serde(default)]
    pub missing_nodes: Vec<String>,
    /// Model files the workflow names that ComfyUI's loaders do not offer.
    #[serde(default)]
    pub missing_models: Vec<String>,
    /// The device ComfyUI computes on, from its `/system_stats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceInfo>,
    /// Things that work but will disappoint (a backend running on the CPU, the disk getting full), in
    /// the request's language (its `zimage_lang` cookie, else `Accept-Language`).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Milliseconds since the Unix epoch of the probe that produced this answer.
    #[serde(default)]
    pub checked_at: u64,
    /// Every configured ComfyUI backend (the gateway is ready while at least one is).
    #[serde(default)]
    pub backends: Vec<BackendView>,
}

/// What a backend can do right now, as `GET /api/backends` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BackendStatus {
    /// Up, with every node and model the workflow needs, and idle.
    Ready,
    /// Up and running one of the gateway's jobs.
    Busy,
    /// Does not answer.
    Down,
    /// Answers, but something the workflow needs is missing (see `reason`).
    NotReady,
}

/// One ComfyUI backend, by name; its address is never shown to the LAN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendView {
    pub name: String,
    pub state: BackendStatus,
    /// Why it is `down` or `not_ready`, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its GPU, from its `/system_stats`, once it has answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceInfo>,
    /// Images it finished since the gateway started.
    pub jobs_done: u64,
    /// The median seconds per image of its recent jobs, from submission to the image; absent before one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_seconds_per_image: Option<f64>,
    /// The LoRA files it has, as it last listed them (sorted).
    #[serde(default)]
    pub loras: Vec<String>,
}

/// Answer to `GET /api/backends`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendList {
    pub backends: Vec<BackendView>,
}

/// ComfyUI's compute device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceInfo {
    pub name: String,
    /// `cuda`, `cpu`, `mps`...
    pub kind: String,
    pub vram_total_bytes: u64,
    pub vram_free_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_aspect_ratio_has_a_longer_side_of_1024_and_sides_in_steps_of_16() {
        for ratio in AspectRatio::ALL {
            let (width, height) = ratio.size();
            assert_eq!(width.max(height), MAX_SIDE, "{ratio:?}");
            assert_eq!(width % SIDE_STEP, 0, "{ratio:?}");
            assert_eq!(height % SIDE_STEP, 0, "{ratio:?}");
            assert!(width.min(height) >= MIN_SIDE, "{ratio:?}");
        }
        assert_eq!(AspectRatio::Wide16x9.size(), (1024, 576));
        assert_eq!(AspectRatio::Portrait3x4.size(), (768, 1024));
    }

    #[test]
    fn aspect_ratio_labels_round_trip_through_serde() {
        for ratio in AspectRatio::ALL {
            let json = serde_json::to_string(&ratio).unwrap();
            assert_eq!(json, format!("\"{}\"", ratio.label()));
            assert_eq!(AspectRatio::from_label(ratio.label()), Some(ratio));
        }
    }

    #[test]
    fn job_events_round_trip_through_their_sse_form() {
        let events = [
            JobEvent::Queued { position: 2 },
            JobEvent::Running {},
            JobEvent::Progress { step: 3, total: 8 },
            JobEvent::Completed {
                image_url: "/api/images/x".to_owned(),
                thumbnail_url: "/api/images/x/thumbnail".to_owned(),
                seed: 7,
                width: 1024,
                height: 576,
                elapsed_ms: 3000,
                backend: Some("gpu0".to_owned()),
            },
            JobEvent::Retrying {
                reason: "The backend gpu0 stopped answering.".to_owned(),
                attempt: 1,
            },
            JobEvent::Cancelled {},
        ];
        for event in events {
            let back = JobEvent::from_sse(event.name(), &event.data_json()).unwrap();
            assert_eq!(back, event);
        }
        assert_eq!(
            JobEvent::Progress { step: 3, total: 8 }.data_json(),
            r#"{"step":3,"total":8}"#
        );
    }
}
