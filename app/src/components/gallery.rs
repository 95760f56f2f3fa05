//! The history gallery: thumbnails newest first from the gateway's history, more loaded on scroll.

use leptos::prelude::*;

use crate::studio::Studio;

/// The gallery below the form and the stage.
#[component]
pub fn HistoryGallery(studio: Studio) -> impl IntoView {
    let end_marker = NodeRef::<leptos::html::Div>::new();
    watch_end_marker(studio, end_marker);
    let items = move || studio.gallery.with(|gallery| gallery.items.clone());
    // Memos, so the parts they show are made again only when the answer changes (as `<Show>` does,
    // without its type-erased children: see `components::erase`).
    let is_empty = Memo::new(move |_| {
        studio
            .gallery
            .with(|gallery| gallery.is_loaded() && gallery.items.is_empty())
    });
    let has_more = Memo::new(move |_| studio.gallery.with(|gallery| gallery.has_more()));
    let ui = studio.ui;
    crate::components::erase(view! {
        <section class="gallery" aria-labelledby="gallery-title">
            <h2 id="gallery-title">{ui.history}</h2>
            {move || is_empty.get().then(|| view! { <p class="hint">{ui.history_empty}</p> })}
            <ul class="thumbs">
                <For each=items key=|item| item.id.clone() let(item)>
                    <li>
                        <button
                            type="button"
                            class="thumb"
                            aria-label=(ui.show_image)(&item.prompt)
                            title=item.prompt.clone()
                            on:click={
                                let item = item.clone();
                                move |_| studio.select(item.clone())
                            }
                        >
                            <img src=item.thumbnail_url.clone() alt="" loading="lazy" width=item.width height=item.height/>
                        </button>
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
                        on:click=move |_| studio.load_more()
                    >
                        {move || if studio.gallery_loading.get() { ui.loading } else { ui.load_more }}
                    </button>
                })}
            </div>
        </section>
    })
}

/// Loads the next page whenever the end of the gallery comes near the screen.
#[cfg(feature = "hydrate")]
fn watch_end_marker(studio: Studio, end_marker: NodeRef<leptos::html::Div>) {
    let watch = StoredValue::new_local(None::<crate::browser::VisibilityWatch>);
    Effect::new(move |_| {
        // A fresh observer after every load reports at once whether the end is still in view (a tall
        // screen may show a whole page), so loading goes on until the screen is full.
        let loading = studio.gallery_loading.get();
        let element = end_marker.get();
        watch.set_value(None);
        if let (false, Some(element)) = (loading, element) {
            let on_visible = move || {
                if studio.gallery.with_untracked(|gallery| gallery.is_loaded()) {
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
