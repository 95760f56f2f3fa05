//! Starting from a picture: the upload's answer, a job's source picture (with its strength and optional
//! mask) as a request sends it and as a job's record shows it, and the limits the gateway applies.

use serde::{Deserialize, Serialize};

/// Largest upload `POST /api/pictures` reads: a 12-megapixel phone JPEG is 3 to 8 MB.
pub const MAX_PICTURE_BYTES: usize = 25 * 1024 * 1024;
/// Largest side of an uploaded file the gateway agrees to decode, in pixels.
pub const MAX_DECODED_SIDE: u32 = 12_000;
/// Most pixels of an uploaded file the gateway agrees to decode (about 100 megapixels).
pub const MAX_DECODED_PIXELS: u64 = 100_000_000;
/// Smallest side of a clean picture, in pixels, after scaling to the cap.
pub const MIN_PICTURE_SIDE: u32 = 64;
/// The clean picture's longer side is at most this ([`crate::MAX_SIDE`]); each side is a multiple of
/// [`crate::SIDE_STEP`].
pub const MAX_PICTURE_SIDE: u32 = crate::MAX_SIDE;
/// Least a job started from a picture may change it (the sampler's `denoise`).
pub const MIN_STRENGTH: f32 = 0.2;
/// Most a job started from a picture may change it: everything.
pub const MAX_STRENGTH: f32 = 1.0;
/// Strength when a request gives none and has no mask.
pub const DEFAULT_STRENGTH: f32 = 0.6;
/// Strength when a request gives none and has a mask: the painted part is made anew.
pub const DEFAULT_MASKED_STRENGTH: f32 = 1.0;
/// A picture's id: the sha256 of its clean PNG, in lowercase hexadecimal.
pub const PICTURE_ID_LEN: usize = 64;

/// Route paths of the pictures.
pub mod paths {
    /// `POST` a picture's raw bytes (`?kind=mask` for a mask): answered by [`super::PictureUploaded`].
    pub const PICTURES: &str = "/api/pictures";

    /// `GET` a stored clean picture (PNG).
    pub fn picture(id: &str) -> String {
        format!("/api/pictures/{id}")
    }
}

/// What an upload is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PictureKind {
    /// A picture to start from: scaled to the cap, stored as an RGB or RGBA PNG.
    #[default]
    Picture,
    /// A mask: a PNG or WebP with an alpha channel whose transparent pixels (alpha 0) mark what to
    /// repaint; stored at its own size.
    Mask,
}

/// Answer to `POST /api/pictures` (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PictureUploaded {
    /// The sha256 of the clean PNG, 64 lowercase hexadecimal digits.
    pub id: String,
    pub width: u32,
    pub height: u32,
    pub kind: PictureKind,
}

/// A job's source picture in `POST /api/jobs` (`source`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SourceRequest {
    /// An id answered by `POST /api/pictures`.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 64, max_length = 64, pattern = "^[0-9a-f]{64}$")
    )]
    pub picture: String,
    /// How much may change, 0.2 to 1.0; 0.6 when left out, 1.0 with a mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.2, maximum = 1.0))]
    pub strength: Option<f32>,
    /// An id of an uploaded mask (`kind=mask`) of the picture's size: only its transparent part changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 64, max_length = 64, pattern = "^[0-9a-f]{64}$")
    )]
    pub mask: Option<String>,
}

/// What a job started from, as its view, its `completed` event and its history record show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceInfo {
    /// The source picture's id (`GET /api/pictures/{id}`).
    pub picture: String,
    /// How much could change, 0.2 to 1.0.
    pub strength: f32,
    /// Whether only a masked part was repainted.
    pub masked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CreateJobRequest;

    #[test]
    fn a_job_request_without_a_source_is_written_as_before() {
        let request = CreateJobRequest {
            prompt: "fox".to_owned(),
            ..CreateJobRequest::default()
        };
        assert_eq!(serde_json::to_string(&request).unwrap(), r#"{"prompt":"fox"}"#);
    }

    #[test]
    fn a_source_is_read_with_its_optional_parts() {
        let id = "a".repeat(PICTURE_ID_LEN);
        let request: CreateJobRequest =
            serde_json::from_str(&format!(r#"{{"prompt": "x", "source": {{"picture": "{id}"}}}}"#)).unwrap();
        assert_eq!(
            request.source,
            Some(SourceRequest {
                picture: id.clone(),
                strength: None,
                mask: None
            })
        );
        let json = format!(r#"{{"picture": "{id}", "strength": 0.5, "mask": "{id}"}}"#);
        let source: SourceRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(source.strength, Some(0.5));
        assert_eq!(source.mask.as_deref(), Some(id.as_str()));
        assert!(
            serde_json::from_str::<SourceRequest>(&format!(r#"{{"picture": "{id}", "denoise": 1}}"#))
                .is_err()
        );
        assert!(
            serde_json::from_str::<SourceRequest>(&format!(r#"{{"picture": "{id}", "strength": "a lot"}}"#))
                .is_err()
        );
    }

    #[test]
    fn an_upload_answer_names_its_kind_in_snake_case() {
        let answer = PictureUploaded {
            id: "0".repeat(PICTURE_ID_LEN),
            width: 1024,
            height: 768,
            kind: PictureKind::Mask,
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["kind"], "mask");
        assert_eq!(serde_json::from_value::<PictureUploaded>(json).unwrap(), answer);
    }

    #[test]
    fn the_default_strengths_lie_in_the_accepted_range() {
        for strength in [DEFAULT_STRENGTH, DEFAULT_MASKED_STRENGTH] {
            assert!((MIN_STRENGTH..=MAX_STRENGTH).contains(&strength));
        }
    }
}
