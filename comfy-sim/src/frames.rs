//! Binary WebSocket frames (server.py `encode_bytes`, `send_image`, `send_image_with_metadata`):
//! a big-endian u32 event type, then the payload.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;

/// Image formats of a type-1 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    fn code(self) -> u32 {
        match self {
            ImageFormat::Jpeg => 1,
            ImageFormat::Png => 2,
        }
    }

    fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }
}

/// Type 1, `PREVIEW_IMAGE`: `[u32 1][u32 format][image]`, for clients without the handshake.
pub(crate) fn preview_image(format: ImageFormat, image: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + image.len());
    out.put_u32(1);
    out.put_u32(format.code());
    out.put_slice(image);
    out.freeze()
}

/// Type 4, `PREVIEW_IMAGE_WITH_METADATA`: `[u32 4][u32 json_len][json][image]`, for clients that
/// sent `supports_preview_metadata`.
pub(crate) fn preview_image_with_metadata(
    format: ImageFormat,
    image: &[u8],
    node_id: &str,
    prompt_id: &str,
) -> Bytes {
    let metadata = json!({
        "node_id": node_id,
        "prompt_id": prompt_id,
        "display_node_id": node_id,
        "parent_node_id": null,
        "real_node_id": node_id,
        "image_type": format.mime(),
    })
    .to_string();
    let mut out = BytesMut::with_capacity(8 + metadata.len() + image.len());
    out.put_u32(4);
    out.put_u32(u32::try_from(metadata.len()).unwrap_or(u32::MAX));
    out.put_slice(metadata.as_bytes());
    out.put_slice(image);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_1_frame_starts_with_its_type_and_format() {
        let frame = preview_image(ImageFormat::Jpeg, b"\xff\xd8jpeg");
        assert_eq!(&frame[..8], &[0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(&frame[8..], b"\xff\xd8jpeg");
        assert_eq!(
            &preview_image(ImageFormat::Png, b"")[..8],
            &[0, 0, 0, 1, 0, 0, 0, 2]
        );
    }

    #[test]
    fn a_type_4_frame_carries_its_metadata_length_then_json_then_image() {
        let frame = preview_image_with_metadata(ImageFormat::Jpeg, b"IMG", "7", "p-1");
        assert_eq!(&frame[..4], &[0, 0, 0, 4]);
        let len = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
        let metadata: serde_json::Value = serde_json::from_slice(&frame[8..8 + len]).unwrap();
        assert_eq!(metadata["node_id"], "7");
        assert_eq!(metadata["prompt_id"], "p-1");
        assert_eq!(metadata["image_type"], "image/jpeg");
        assert!(metadata["parent_node_id"].is_null());
        assert_eq!(&frame[8 + len..], b"IMG");
    }
}
