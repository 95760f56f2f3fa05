//! The full-screen viewer: one image of the gallery over the page, with its prompt, seed, size, time
//! taken, backend and the picture it started from, and copy prompt, reuse, start from this, download,
//! star and delete. Arrow keys and swipes move
//! through the gallery as filtered; Esc, the close button and the phone's back button close it.

use leptos::prelude::*;

use crate::api::pictures::paths;
use crate::api::{HistoryItem, SourceInfo};
use crate::components::delete_button::DeleteButton;
use crate::components::gallery::StarButton;
use crate::form::Strength;
use crate::job::format_elapsed;
use crate::studio::Studio;

/// The element id of the viewer (swipes are watched on it).
const VIEWER_ID: &str = "viewer";

/// The viewer; renders nothing while no image is open.
#[component]
pub fn Viewer(studio: Studio) -> impl IntoView {
    let ui = studio.ui;
    watch_swipes(studio);
    let shown = move || {
        let id = studio.viewing.get()?;
        studio.gallery.with(|gallery| gallery.get(&id).cloned())
    };
    let is_open = move || studio.viewing.with(Option::is_some);
    // A closure rather than `<Show>`, and the parts below erased only on the gateway: in the browser
    // every type-erased view carries its own copy of the hydration code.
    crate::components::erase(view! {
        {move || {
            is_open().then(|| {
                view! {
                    <div id=VIEWER_ID class="viewer" role="dialog" aria-modal="true" aria-label=ui.viewer>
                        {move || shown().map(|item| view! { <ViewerContent studio item/> })}
                    </div>
                }
            })
        }}
    })
}

/// One image in the viewer: the bar, the image, and its details.
#[component]
fn ViewerContent(studio: Studio, item: HistoryItem) -> impl IntoView {
    let ui = studio.ui;
    let position = studio
        .gallery
        .with_untracked(|gallery| gallery.position(&item.id))
        .map(|(at, of)| (ui.position)(at, of))
        .unwrap_or_default();
    crate::components::erase(view! {
        <div class="viewer-bar">
            <span class="viewer-position">{position}</span>
            <button
                type="button"
                class="viewer-close"
                aria-label=ui.close
                title=ui.close
                on:click=move |_| studio.close_viewer()
            >
                "✕"
            </button>
        </div>
        <div class="viewer-stage">
            <button
                type="button"
                class="viewer-step previous"
                aria-label=ui.previous_image
                on:click=move |_| studio.view_next(-1)
            >
                "‹"
            </button>
            <img
                class="viewer-image"
                src=item.image_url.clone()
                alt=item.prompt.clone()
                width=item.width
                height=item.height
            />
            <button
                type="button"
                class="viewer-step next"
                aria-label=ui.next_image
                on:click=move |_| studio.view_next(1)
            >
                "›"
            </button>
        </div>
        <ViewerDetails studio item/>
    })
}

/// The image's facts and actions.
#[component]
fn ViewerDetails(studio: Studio, item: HistoryItem) -> impl IntoView {
    let ui = studio.ui;
    let elapsed = item
        .timings
        .finished_at
        .map(|finished| format_elapsed(finished.saturating_sub(item.timings.queued_at), ui));
    let download_name = format!("z-image-{}.png", item.seed);
    crate::components::erase(view! {
        <div class="viewer-details">
            <p class="viewer-prompt">{item.prompt.clone()}</p>
            <dl class="facts">
                <div>
                    <dt>{ui.seed}</dt>
                    <dd class="viewer-seed">{item.seed}</dd>
                </div>
                <div>
                    <dt>{ui.size}</dt>
                    <dd class="viewer-size">{format!("{} × {}", item.width, item.height)}</dd>
                </div>
                {elapsed
                    .map(|elapsed| {
                        view! {
                            <div>
                                <dt>{ui.time}</dt>
                                <dd>{elapsed}</dd>
                            </div>
                        }
                    })}
                {item
                    .backend
                    .clone()
                    .map(|backend| {
                        view! {
                            <div>
                                <dt>{ui.made_on}</dt>
                                <dd class="viewer-backend">{backend}</dd>
                            </div>
                        }
                    })}
                {item.source.clone().map(|source| view! { <StartedFrom studio source/> })}
                {(!item.loras.is_empty())
                    .then(|| {
                        let loras = item
                            .loras
                            .iter()
                            .map(|lora| format!("{} ({})", lora.name, crate::form::LoraStrength::text_of(lora.strength)))
                            .collect::<Vec<_>>()
                            .join(", ");
                        view! {
                            <div>
                                <dt>{ui.loras}</dt>
                                <dd class="viewer-loras">{loras}</dd>
                            </div>
                        }
                    })}
            </dl>
            <ViewerActions studio item download_name/>
        </div>
    })
}

/// The picture an image started from, small, and how much could change, in words.
#[component]
fn StartedFrom(studio: Studio, source: SourceInfo) -> impl IntoView {
    let ui = studio.ui;
    let strength = Strength::from_value(source.strength).value_text(ui);
    view! {
        <div class="viewer-source">
            <dt>{ui.started_from}</dt>
            <dd>
                <img src=paths::picture(&source.picture) alt=ui.chosen_picture width="48" height="48"/>
                <span>{strength}</span>
                {source.masked.then(|| view! { <span>{ui.painted_part_changes}</span> })}
            </dd>
        </div>
    }
}

/// Star, copy prompt, reuse, start from this, download, delete.
#[component]
fn ViewerActions(studio: Studio, item: HistoryItem, download_name: String) -> impl IntoView {
    let ui = studio.ui;
    let (copy_prompt, reuse_item, delete_id) = (item.prompt.clone(), item.clone(), item.id.clone());
    let start_url = item.image_url.clone();
    crate::components::erase(view! {
        <div class="actions">
            <StarButton studio id=item.id.clone() starred=item.starred class="button"/>
            <button type="button" class="button" on:click=move |_| studio.copy_prompt(copy_prompt.clone())>
                {ui.copy_prompt}
            </button>
            <button type="button" class="button" on:click=move |_| studio.reuse_from_viewer(&reuse_item)>
                {ui.reuse_image}
            </button>
            <button
                type="button"
                class="button"
                disabled={Signal::<bool>::from(studio.picture_busy)}
                on:click=move |_| studio.start_from_image(start_url.clone())
            >
                {ui.start_from_this}
            </button>
            <a class="button" href=item.image_url.clone() download=download_name>
                {ui.download}
            </a>
            <DeleteButton studio id=delete_id group_label=ui.delete_question/>
            <span class="viewer-note" aria-live="polite">
                {move || studio.viewer_note.get()}
            </span>
        </div>
    })
}

/// Swipes on the viewer move through the gallery; watched each time the viewer opens.
#[cfg(feature = "hydrate")]
fn watch_swipes(studio: Studio) {
    let opened = Memo::new(move |_| studio.viewing.get().is_some());
    Effect::new(move |_| {
        if opened.get() {
            // After this render, once the viewer's element is in the page.
            request_animation_frame(move || {
                if let Some(element) = crate::browser::element_by_id(VIEWER_ID) {
                    crate::browser::on_swipe(&element, move |step| studio.view_next(step));
                }
            });
        }
    });
}

/// The server renders no open viewer.
#[cfg(not(feature = "hydrate"))]
fn watch_swipes(_studio: Studio) {}
