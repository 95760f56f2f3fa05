//! The page for any address the studio does not have (the gateway answers it with 404).

use leptos::prelude::*;

/// "Page not found", with the way back.
#[component]
pub fn NotFound() -> impl IntoView {
    let ui = crate::i18n::use_ui();
    view! {
        <main class="not-found">
            <h1>{ui.not_found_heading}</h1>
            <p>{ui.not_found_text}</p>
            <p>
                <a class="button primary" href="/">{ui.back_to_studio}</a>
            </p>
        </main>
    }
}
