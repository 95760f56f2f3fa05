//! The history gallery: a search box and a "Starred" filter above thumbnails newest first from the
//! gateway's history, older pages loaded on scroll (a few, then "Load more"), a star and "Start from
//! this" on each (and the picture an image started from); tapping one opens the full-screen viewer.

use leptos::prelude::*;

use crate::api::pictures::paths;
use crate::components::viewer::Viewer;
use crate::form::Strength;
use crate::history::Gallery;
use crate::studio::Studio;

/// The gallery below the form and the stage.
#[component]
pub fn HistoryGallery(studio: Studio) -> impl IntoView {
    let end_marker = NodeRef::<leptos::html::Div>::new();
    watch_end_marker(studio, end_marker);
    let items = move || studio.gallery.with(|gallery| gallery.items.clone());
    let filtered = move || {
        studio.gallery.with(|gallery| {
            let filter = gallery.filter();
            filter.starred_only || !filter.query.trim().is_empty()
        })
    };
    let is_empty = move || {
        studio
            .gallery
            .with(|gallery| gallery.is_loaded() && gallery.items.is_empty())
    };
    let has_more = Memo::new(move |_| studio.gallery.with(|gallery| gallery.has_more()));
    let starred_only = move || studio.gallery.with(|gallery| gallery.filter().starred_only);
    let ui = studio.ui;
    crate::components::erase(view! {
        <section class="gallery" aria-labelledby="gallery-title">
            <h2 id="gallery-title">{ui.history}</h2>
            <div class="gallery-tools" role="search">
                <input
                    type="search"
                    id="gallery-search"
                    class="gallery-search"
                    aria-label=ui.search_label
                    placeholder=ui.search_placeholder
                    enterkeyhint="search"
                    prop:value=move || studio.search_text.get()
                    on:input=move |event| studio.search(event_target_value(&event))
                />
                <label class="starred-filter">
                    <input
                        type="checkbox"
                        prop:checked=starred_only
                        disabled=move || !studio.hydrated.get()
                        on:change=move |event| studio.show_starred_only(event_target_checked(&event))
                    />
                    <span>{ui.starred_filter}</span>
                </label>
            </div>
            // A closure rather than `<Show>`, whose children are a type-erased view (its own copy of
            // the hydration code in the bundle).
            {move || {
                is_empty()
                    .then(|| {
                        view! {
                            <p class="hint">
                                {if filtered() { ui.nothing_found } else { ui.history_empty }}
                            </p>
                        }
                    })
            }}
            <ul class="thumbs">
                <For each=items key=|item| (item.id.clone(), item.starred) let(item)>
                    <li>
                        <button
                            type="button"
                            class="thumb"
                            aria-label=(ui.show_image)(&item.prompt)
                            title=item.prompt.clone()
                            on:click={
                                let id = item.id.clone();
                                move |_| studio.open_viewer(id.clone())
                            }
                        >
                            <img src=item.thumbnail_url.clone() alt="" loading="lazy" width=item.width height=item.height/>
                        </button>
                        <StarButton studio id=item.id.clone() starred=item.starred class="thumb-star"/>
                        <button
                            type="button"
                            class="thumb-start"
                            aria-label=ui.start_from_this
                            title=ui.start_from_this
                            disabled={Signal::<bool>::from(studio.picture_busy)}
                            on:click={
                                let url = item.image_url.clone();
                                move |_| studio.start_from_image(url.clone())
                            }
                        >
                            "✎"
                        </button>
                        {item.source.clone().map(|source| {
                            let words = format!(
                                "{}: {}",
                                ui.started_from,
                                Strength::from_value(source.strength).value_text(ui),
                            );
                            view! {
                                <img
                                    class="thumb-source"
                                    src=paths::picture(&source.picture)
                                    alt=words.clone()
                                    title=words
                                    loading="lazy"
                                    width="32"
                                    height="32"
                                />
                            }
                        })}
                    </li>
                </For>
            </ul>
            <p class="gallery-error" role="alert" aria-live="polite">
                {move || studio.gallery_error.get()}
            </p>
            <div class="gallery-end" node_ref=end_marker>
                {move || has_more.get().then(|| view! {
                    <button
                        type="button"
                        class="button"
                        disabled=move || studio.gallery_loading.get() || !studio.hydrated.get()
                        on:click=move |_| {
                            studio.gallery.update_untracked(Gallery::more_asked);
                            studio.load_more();
                        }
                    >
                        {move || if studio.gallery_loading.get() { ui.loading } else { ui.load_more }}
                    </button>
                })}
            </div>
            <Viewer studio/>
        </section>
    })
}

/// A star that stars or unstars one image.
#[component]
pub fn StarButton(studio: Studio, id: String, starred: bool, class: &'static str) -> impl IntoView {
    let ui = studio.ui;
    let label = if starred { ui.unstar } else { ui.star };
    view! {
        <button
            type="button"
            class=format!("star {class}")
            class:starred=starred
            aria-label=label
            aria-pressed=if starred { "true" } else { "false" }
            title=label
            on:click=move |_| studio.star(id.clone(), !starred)
        >
            {if starred { "★" } else { "☆" }}
        </button>
    }
}

/// Loads the next page whenever the end of the gallery comes near the screen, a few pages at a time
/// ([`Gallery::loads_on_scroll`]): a gallery that grew without end would keep the page's foot away.
#[cfg(feature = "hydrate")]
fn watch_end_marker(studio: Studio, end_marker: NodeRef<leptos::html::Div>) {
    let watch = StoredValue::new_local(None::<crate::browser::VisibilityWatch>);
    Effect::new(move |_| {
        // A fresh observer after every load reports at once whether the end is still in view (a tall
        // screen may show a whole page), so loading goes on until the screen is full. A new filter
        // starts over.
        let loading = studio.gallery_loading.get();
        studio.gallery.with(|gallery| gallery.filter().clone());
        let element = end_marker.get();
        watch.set_value(None);
        if let (false, Some(element)) = (loading, element) {
            let on_visible = move || {
                if studio.gallery.with_untracked(Gallery::loads_on_scroll) {
                    studio.gallery.update_untracked(Gallery::count_page_by_scroll);
                    studio.load_more();
                }
            };
            watch.set_value(crate::browser::watch_visibility(&element, on_visible));
        }
    });
}

/// The server renders the first state only; scrolling happens in the browser.
#[cfg(not(feature = "hydrate"))]
fn watch_end_marker(_studio: Studio, _end_marker: NodeRef<leptos::html::Div>) {}
