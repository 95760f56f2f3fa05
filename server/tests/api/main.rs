//! Integration tests: the real gateway on port 0 in front of the ComfyUI simulator, spoken to over
//! HTTP and SSE exactly as the browser does.

mod cancel;
mod comfy_link;
mod completion;
mod demo;
mod events;
mod generate;
mod load;
mod pacing;
mod resilience;
mod security;
mod support;
mod validation;
