//! Integration tests: the real gateway on port 0 in front of the ComfyUI simulator, spoken to over
//! HTTP and SSE exactly as the browser does.

#[path = "../common/mod.rs"]
mod common;

mod backends;
mod cancel;
mod comfy_link;
mod completion;
mod compression;
mod demo;
mod engine;
mod engine_support;
mod events;
mod gallery;
mod generate;
mod generate_command;
mod language;
mod load;
mod loras;
mod openai;
mod openai_clients;
mod openai_edits;
mod pacing;
mod pictures;
mod resilience;
mod security;
mod site_bundle;
mod start_from;
mod storage;
mod styles;
mod support;
mod upgrade;
mod validation;
