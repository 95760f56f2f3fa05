//! The page for any address the studio does not have (the gateway answers it with 404).

use leptos::prelude::*;
use leptos_meta::Title;

/// "Page not found", with the way back.
#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <Title text="Not found · Z-Image-Turbo (Local)"/>
        <main class="not-found">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address."</p>
            <p>
                <a class="button primary" href="/">"Back to the studio"</a>
            </p>
        </main>
    }
}
