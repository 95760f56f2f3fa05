//! The backend status light in the title bar, fed by `/readyz`.

use leptos::prelude::*;

use crate::backend::Tone;
use crate::studio::Studio;

/// A coloured dot and a word (Ready, Starting, Unreachable, Demo); the details open on tap.
#[component]
pub fn StatusLight(studio: Studio) -> impl IntoView {
    let ui = studio.ui;
    let light = Memo::new(move |_| studio.backend.with(|backend| backend.light(ui)));
    let is_demo = Memo::new(move |_| light.with(|light| light.tone == Tone::Demo));
    crate::components::erase(view! {
        <details class="status">
            <summary class="status-summary">
                <span
                    class=move || format!("status-dot tone-{}", light.with(|light| light.tone.class()))
                    aria-hidden="true"
                ></span>
                <span class="status-label" aria-live="polite">
                    <span class="visually-hidden">{ui.backend}</span>
                    {move || light.with(|light| light.label.clone())}
                </span>
            </summary>
            <div class="status-detail">
                {move || {
                    light
                        .with(|light| light.detail.clone())
                        .into_iter()
                        .map(|line| {
                            // The gateway's words are English whatever the page's language.
                            view! { <p lang=line.gateway_words.then_some("en")>{line.text}</p> }
                        })
                        .collect_view()
                }}
            </div>
        </details>
        {move || is_demo.get().then(|| view! { <p class="demo-banner">{ui.demo_banner}</p> })}
    })
}
