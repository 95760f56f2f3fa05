//! The browser bundle's entry point: the page's script calls `hydrate()` once the WebAssembly is loaded,
//! and the studio takes over the HTML the gateway rendered.

use wasm_bindgen::prelude::wasm_bindgen;

/// Attaches the studio to the server-rendered page.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::app::App);
}
