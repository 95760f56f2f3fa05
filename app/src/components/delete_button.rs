//! "Delete" for an image, with its confirmation: one tap asks "Delete this image?", and only "Yes,
//! delete" deletes. The result card and the viewer both use it.

use leptos::either::Either;
use leptos::prelude::*;

use crate::studio::Studio;

/// The delete button of image `id`; `group_label` names the confirmation for assistive technology.
#[component]
pub fn DeleteButton(studio: Studio, id: String, group_label: &'static str) -> impl IntoView {
    let ui = studio.ui;
    let confirming = RwSignal::new(false);
    move || {
        if !confirming.get() {
            Either::Left(view! {
                <button type="button" class="button danger-outline" on:click=move |_| confirming.set(true)>
                    {ui.delete}
                </button>
            })
        } else {
            let id = id.clone();
            Either::Right(view! {
                <span class="confirm" role="group" aria-label=group_label>
                    <span>{ui.delete_question}</span>
                    <button
                        type="button"
                        class="button danger"
                        on:click=move |_| {
                            confirming.set(false);
                            studio.delete(id.clone());
                        }
                    >
                        {ui.yes_delete}
                    </button>
                    <button type="button" class="button" on:click=move |_| confirming.set(false)>
                        {ui.keep}
                    </button>
                </span>
            })
        }
    }
}
