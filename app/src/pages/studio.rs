//! The studio page: the form and the stage side by side on a desktop (stacked on a phone), the
//! history gallery below.

use leptos::prelude::*;

use crate::api::paths;

use crate::components::gallery::HistoryGallery;
use crate::components::prompt_form::PromptForm;
use crate::components::stage::Stage;
use crate::components::status_light::StatusLight;
use crate::studio::Studio;

/// The one page people use, at `/`.
#[component]
pub fn StudioPage() -> AnyView {
    let studio = Studio::new();
    // Effects run only in the browser, once the bundle has hydrated the server-rendered page.
    Effect::new(move |_| untrack(|| studio.start()));
    view! {
        <div class="studio" data-hydrated=move || studio.hydrated.get().then_some("true")>
            <header class="topbar">
                <h1 class="title">"Z-Image-Turbo (Local)"</h1>
                <StatusLight studio/>
            </header>
            <main class="workspace">
                <PromptForm studio/>
                <Stage studio/>
            </main>
            <HistoryGallery studio/>
            <footer class="footer">
                <a class="button" href=paths::PAIR_PAGE>
                    "Pair a phone"
                </a>
                <span class="hint">"A QR code that opens the studio on a phone of this network."</span>
            </footer>
        </div>
    }
    .into_any()
}
