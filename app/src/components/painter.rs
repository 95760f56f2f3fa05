//! "Paint over a part": the chosen picture with a canvas over it on which a finger or the mouse paints
//! the part to change, and the brush size, undo, clear and show/hide beside it. The strokes, undo and
//! the mask live in [`crate::paint::MaskPainting`]; this only renders and passes pointers on.

use leptos::prelude::*;

use crate::api::pictures::paths;
use crate::browser;
use crate::paint::{Brush, MaskPainting};
use crate::studio::{PAINTING_CANVAS_ID, Studio};

/// The painting over the chosen picture (shown while open).
#[component]
pub fn Painter(studio: Studio) -> impl IntoView {
    let ui = studio.ui;
    let picture = studio.form.with_untracked(|form| form.source.clone())?;
    let (width, height) = (picture.width, picture.height);
    let with_painting = move |read: fn(&MaskPainting) -> bool| {
        studio
            .painting
            .with(|painting| painting.as_ref().is_some_and(read))
    };
    let shown = move || with_painting(|painting| painting.shown);
    let faded = Signal::derive(move || !shown());
    let pressed = Signal::derive(move || if shown() { "true" } else { "false" });
    let cannot_undo = Signal::derive(move || !with_painting(MaskPainting::can_undo));
    let nothing_painted = Signal::derive(move || with_painting(MaskPainting::is_empty));
    redraw_when_shown(studio);
    Some(crate::components::erase(view! {
        <div id="painter" class="painter" role="group" aria-label=ui.paint_over>
            <p class="hint">{ui.painting_hint}</p>
            // As wide as the form allows while the height stays within the screen.
            <div
                class="painter-stage"
                style:aspect-ratio=format!("{width} / {height}")
                style:width=format!("min(100%, calc(70svh * {width} / {height}))")
            >
                <img class="painter-picture" src=paths::picture(&picture.id) alt="" width=width height=height/>
                <canvas
                    id=PAINTING_CANVAS_ID
                    class="painter-canvas"
                    class:faded=faded
                    width=width
                    height=height
                    role="img"
                    aria-label=ui.painting_canvas
                    on:pointerdown=move |event| {
                        if let Some(at) = browser::pointer_on(&event, PAINTING_CANVAS_ID, width, height) {
                            event.prevent_default();
                            browser::capture_pointer(&event);
                            studio.paint_begin(at);
                        }
                    }
                    on:pointermove=move |event| {
                        if let Some(at) = browser::pointer_on(&event, PAINTING_CANVAS_ID, width, height) {
                            studio.paint_to(at);
                        }
                    }
                    on:pointerup=move |_| studio.paint_end()
                    on:pointercancel=move |_| studio.paint_end()
                    on:lostpointercapture=move |_| studio.paint_end()
                ></canvas>
            </div>
            <div class="painter-tools">
                <fieldset class="brushes">
                    <legend class="visually-hidden">{ui.brush_size}</legend>
                    {Brush::ALL.into_iter().map(|brush| view! { <BrushChip studio brush/> }).collect_view()}
                </fieldset>
                <div class="painter-actions">
                    <button
                        type="button"
                        class="button"
                        disabled=cannot_undo
                        on:click=move |_| studio.edit_painting(|painting| {
                            painting.undo();
                        })
                    >
                        {ui.undo}
                    </button>
                    <button
                        type="button"
                        class="button"
                        disabled=nothing_painted
                        on:click=move |_| studio.edit_painting(MaskPainting::clear)
                    >
                        {ui.clear}
                    </button>
                    <button
                        type="button"
                        class="button"
                        aria-pressed=pressed
                        on:click=move |_| studio.edit_painting(|painting| painting.shown = !painting.shown)
                    >
                        {ui.show_painting}
                    </button>
                    <button type="button" class="button primary" on:click=move |_| studio.painting_open.set(false)>
                        {ui.done_painting}
                    </button>
                </div>
            </div>
        </div>
    }))
}

/// One brush size: a radio drawn as a chip with a dot of its size.
#[component]
fn BrushChip(studio: Studio, brush: Brush) -> impl IntoView {
    let ui = studio.ui;
    let (label, dot) = match brush {
        Brush::Small => (ui.brush_small, 8),
        Brush::Medium => (ui.brush_medium, 14),
        Brush::Large => (ui.brush_large, 22),
    };
    let selected = Signal::derive(move || {
        studio
            .painting
            .with(|painting| painting.as_ref().is_some_and(|painting| painting.brush == brush))
    });
    view! {
        <label class="brush-chip" class:selected=selected>
            <input
                type="radio"
                name="brush"
                prop:checked=selected
                on:change=move |_| studio.choose_brush(brush)
            />
            <span class="brush-dot" aria-hidden="true" style=format!("width: {dot}px; height: {dot}px")></span>
            <span>{label}</span>
        </label>
    }
}

/// Draws the painting once its canvas is in the page (it is made anew each time the painting opens).
#[cfg(feature = "hydrate")]
fn redraw_when_shown(studio: Studio) {
    request_animation_frame(move || studio.redraw_painting());
}

/// The server never renders an open painting.
#[cfg(not(feature = "hydrate"))]
fn redraw_when_shown(_studio: Studio) {}
