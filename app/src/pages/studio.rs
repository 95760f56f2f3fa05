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
pub fn StudioPage() -> impl IntoView {
    let studio = Studio::new();
    let ui = studio.ui;
    let other = crate::i18n::use_lang().other();
    // Effects run only in the browser, once the bundle has hydrated the server-rendered page.
    Effect::new(move |_| {
        untrack(|| {
            studio.start();
            crate::components::source_picker::mount(studio);
            crate::components::styles::mount(studio);
        });
    });
    crate::components::erase(view! {
        <div class="studio" data-hydrated=move || studio.hydrated.get().then_some("true")>
            <header class="topbar">
                <h1 class="title">{ui.title}</h1>
                <StatusLight studio/>
                // The switch names the other language in that language (and says so, for screen readers
                // and for the check that no word of the other language is on screen). At the top, where
                // nothing above it grows: the foot of the page moves as the gallery loads.
                <nav class="language" aria-label=ui.language>
                    <a
                        class="button"
                        href=other.switch_path()
                        hreflang=other.tag()
                        lang=other.tag()
                        rel="alternate"
                    >
                        {other.ui().name}
                    </a>
                </nav>
            </header>
            <main class="workspace">
                <PromptForm studio/>
                <Stage studio/>
            </main>
            <HistoryGallery studio/>
            <footer class="footer">
                <a class="button" href=paths::PAIR_PAGE>
                    {ui.pair_phone}
                </a>
                <span class="hint">{ui.pair_hint}</span>
            </footer>
        </div>
    })
}
