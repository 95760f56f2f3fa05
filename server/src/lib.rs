//! The z-image-local gateway.
pub mod comfy;
