//! "Start from a picture" in the form: choose a file (on a phone, the camera or the photo library),
//! paste or drop one; then the picture small with its remove button, "Paint over a part", and the
//! strength said in words.
//!
//! It works only with the bundle, so the gateway does not render it: it is mounted into an empty
//! element of the form once the page is hydrated. Being built, never hydrated, its views carry no
//! hydration code in the bundle.

use leptos::either::Either;
use leptos::prelude::*;

use crate::api::pictures::paths;
use crate::browser;
use crate::components::painter::Painter;
use crate::form::{Field, SourcePicture, Strength};
use crate::paint::MaskPainting;
use crate::studio::{SOURCE_ID, Studio};

/// The element of the form the picker is mounted into.
pub const SOURCE_ROOT_ID: &str = "source-root";

/// Mounts the picker into the form (once, after hydration).
#[cfg(feature = "hydrate")]
pub fn mount(studio: Studio) {
    use wasm_bindgen::JsCast as _;
    let root = browser::element_by_id(SOURCE_ROOT_ID)
        .and_then(|element| element.dyn_into::<leptos::web_sys::HtmlElement>().ok());
    if let Some(root) = root {
        // The picker lives as long as the page.
        leptos::mount::mount_to(root, move || view! { <SourcePicker studio/> }).forget();
    }
}

/// The gateway renders the empty element only.
#[cfg(not(feature = "hydrate"))]
pub fn mount(_studio: Studio) {}

/// The picture to start from, in the form.
#[component]
pub fn SourcePicker(studio: Studio) -> impl IntoView {
    let ui = studio.ui;
    let source_error = move || {
        studio.form_error.with(|error| {
            error
                .as_ref()
                .and_then(|error| error.message_for(Field::Source))
                .map(str::to_owned)
        })
    };
    let source = Memo::new(move |_| studio.form.with(|form| form.source.clone()));
    crate::components::erase(view! {
        <fieldset
            id=SOURCE_ID
            class="field source"
            aria-describedby="source-error"
            on:dragover=|event| browser::allow_drop(&event)
            on:drop=move |event| {
                if let Some(image) = browser::dropped_image(&event) {
                    studio.choose_picture(image);
                }
            }
        >
            <legend>{ui.source_legend}</legend>
            {move || match source.get() {
                None => Either::Left(view! { <PictureChooser studio/> }),
                Some(picture) => Either::Right(view! { <ChosenPicture studio picture/> }),
            }}
            <p id="source-error" class="field-error" aria-live="polite">
                {source_error}
            </p>
        </fieldset>
    })
}

/// Nothing chosen yet: the file button (a label around the input, so it works before hydration's
/// handlers too and the camera is offered on a phone) and the hint about pasting and dropping.
#[component]
fn PictureChooser(studio: Studio) -> impl IntoView {
    let ui = studio.ui;
    let busy: Signal<bool> = studio.picture_busy.into();
    let disabled = Signal::derive(move || busy.get() || !studio.hydrated.get());
    let text = Signal::derive(move || {
        if busy.get() {
            ui.uploading_picture
        } else {
            ui.choose_picture
        }
    });
    view! {
        <div class="picture-drop">
            <label class="button picture-choose" class:busy=busy>
                // No `capture`: a phone then offers both the camera and the photo library.
                <input
                    type="file"
                    accept="image/*"
                    class="visually-hidden"
                    aria-describedby="picture-hint"
                    disabled=disabled
                    on:change=move |event| {
                        if let Some(image) = browser::chosen_image(&event) {
                            studio.choose_picture(image);
                        }
                    }
                />
                {text}
            </label>
            <p id="picture-hint" class="hint">{ui.picture_hint}</p>
        </div>
    }
}

/// The chosen picture, small, with what can be done with it.
#[component]
fn ChosenPicture(studio: Studio, picture: SourcePicture) -> impl IntoView {
    let ui = studio.ui;
    let url = paths::picture(&picture.id);
    let not_painted = Signal::derive(move || {
        studio
            .painting
            .with(|painting| painting.as_ref().is_none_or(MaskPainting::is_empty))
    });
    let open = studio.painting_open;
    let expanded = Signal::derive(move || if open.get() { "true" } else { "false" });
    view! {
        <div class="picture-chosen">
            <img
                class="picture-thumb"
                src=url
                alt=ui.chosen_picture
                width=picture.width
                height=picture.height
            />
            <div class="picture-tools">
                <span class="picture-size">{format!("{} × {}", picture.width, picture.height)}</span>
                <button
                    type="button"
                    class="button"
                    aria-expanded=expanded
                    on:click=move |_| {
                        if open.get_untracked() {
                            studio.painting_open.set(false);
                        } else {
                            studio.open_painting();
                        }
                    }
                >
                    {ui.paint_over}
                </button>
                <button
                    type="button"
                    class="button danger-outline"
                    disabled={Signal::<bool>::from(studio.picture_busy)}
                    on:click=move |_| studio.remove_picture()
                >
                    {ui.remove_picture}
                </button>
            </div>
        </div>
        // Closures rather than `<Show>`: its children are type-erased views, each with its own copy of
        // the hydration code in the bundle.
        {move || open.get().then(|| view! { <Painter studio/> })}
        <p class="hint" class:hidden=not_painted>{ui.painted_part_changes}</p>
        <StrengthControl studio/>
    }
}

/// How much may change: a range input whose value is said in words beside it and to assistive
/// technology (`aria-valuetext`).
#[component]
fn StrengthControl(studio: Studio) -> impl IntoView {
    let ui = studio.ui;
    let strength = Signal::derive(move || studio.form.with(|form| form.strength));
    let value_text = Signal::derive(move || strength.get().value_text(ui));
    let value = Signal::derive(move || strength.get().input_value());
    view! {
        <div class="strength">
            <div class="field-head">
                <label for="strength">{ui.strength}</label>
                <output class="strength-value" aria-hidden="true">{value_text}</output>
            </div>
            <input
                id="strength"
                type="range"
                min=Strength::from_value(0.0).input_value()
                max=Strength::from_value(1.0).input_value()
                step=Strength::input_step()
                prop:value=value
                aria-valuetext=value_text
                on:input=move |event| {
                    if let Some(strength) = Strength::from_input(&event_target_value(&event)) {
                        studio.form.update(|form| form.choose_strength(strength));
                    }
                }
            />
        </div>
    }
}
