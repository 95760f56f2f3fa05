//! Integration tests: the real gateway on port 0 in front of the ComfyUI simulator, spoken to over
//! HTTP and SSE exactly as the browser does.

#[path = "../common/mod.rs"]
mod common;

mod cancel;
mod comfy_link;
mod completion;
mod demo;
mod engine;
mod engine_support;
mod events;
mod gallery;
mod generate;
mod load;
mod pacing;
mod resilience;
mod security;
mod storage;
mod support;
mod validation;
