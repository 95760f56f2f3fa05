//! The studio's user interface, compiled twice: with `ssr` inside the gateway, with `hydrate` for the
//! browser (Trunk builds that bundle).
//!
//! [`api`] is the wire contract between this UI and the gateway; both sides use the same types.
//! The UI's decisions live in plain, unit-tested types ([`form`], [`job`], [`history`], [`backend`]);
//! [`studio`] wires them to signals and the gateway, and the components only render.

pub mod api;
pub mod app;
pub mod backend;
pub mod browser;
pub mod client;
pub mod components;
pub mod form;
pub mod history;
pub mod job;
pub mod pages;
pub mod shell;
pub mod studio;

/// The bundle's entry point: takes over the page the gateway rendered.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
