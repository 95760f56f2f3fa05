//! The generate form: prompt with its counter, the picture to start from, aspect ratio chips, seed with
//! the dice, and the Generate / Cancel button in a bar that stays under the thumb on a phone.

use leptos::ev::{KeyboardEvent, SubmitEvent};
use leptos::prelude::*;

use crate::api::{AspectRatio, MAX_PROMPT_CHARS};
use crate::components::source_picker::SOURCE_ROOT_ID;
use crate::components::styles::STYLES_ROOT_ID;
use crate::form::Field;
use crate::studio::{FORM_ID, Studio};

/// The form on the left (desktop) or on top (phone).
#[component]
pub fn PromptForm(studio: Studio) -> impl IntoView {
    let error_for = move |field: Field| {
        move || {
            studio.form_error.with(|error| {
                error
                    .as_ref()
                    .and_then(|error| error.message_for(field))
                    .map(str::to_owned)
            })
        }
    };
    let general_error = move || {
        studio.form_error.with(|error| {
            error
                .as_ref()
                .filter(|error| error.field.is_none())
                .map(|error| error.message.clone())
        })
    };
    let active = move || studio.job_is_active();
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        if studio.job_is_active() {
            studio.cancel()
        } else {
            studio.generate()
        }
    };
    let on_prompt_keydown = move |event: KeyboardEvent| {
        // Ctrl+Enter, or Cmd+Enter on a Mac, generates from inside the text area.
        if event.key() == "Enter" && (event.ctrl_key() || event.meta_key()) {
            event.prevent_default();
            studio.generate();
        }
    };
    let prompt_chars = move || studio.form.with(|form| form.prompt_chars());
    let ui = studio.ui;
    let prompt_error = error_for(Field::Prompt);
    let seed_error = error_for(Field::Seed);

    crate::components::erase(view! {
        <form id=FORM_ID class="composer" on:submit=on_submit novalidate aria-label=ui.form_label>
            <div class="field">
                <div class="field-head">
                    <label for="prompt">{ui.prompt}</label>
                    <span
                        id="prompt-count"
                        class="counter"
                        class:over=move || studio.form.with(|form| form.prompt_too_long())
                    >
                        {prompt_chars}
                        " / "
                        {MAX_PROMPT_CHARS}
                    </span>
                </div>
                <textarea
                    id="prompt"
                    rows="4"
                    placeholder=ui.prompt_placeholder
                    aria-describedby="prompt-count prompt-error"
                    aria-invalid=move || prompt_error().is_some().then_some("true")
                    prop:value=move || studio.form.with(|form| form.prompt.clone())
                    on:input=move |event| {
                        let value = event_target_value(&event);
                        studio.form.update(|form| form.prompt = value);
                        studio.clear_error_of(Field::Prompt);
                    }
                    on:keydown=on_prompt_keydown
                ></textarea>
                <p id="prompt-error" class="field-error" aria-live="polite">
                    {prompt_error}
                </p>
                <div class="examples" role="group" aria-label=ui.examples>
                    {ui
                        .example_prompts
                        .into_iter()
                        .map(|(label, prompt)| {
                            view! {
                                <button
                                    type="button"
                                    class="link-button example"
                                    title=prompt
                                    on:click=move |_| {
                                        studio.form.update(|form| prompt.clone_into(&mut form.prompt));
                                        studio.clear_error_of(Field::Prompt);
                                    }
                                >
                                    {label}
                                </button>
                            }
                        })
                        .collect_view()}
                </div>
            </div>

            // "Start from a picture" needs the bundle: it is mounted here once the page is hydrated.
            <div id=SOURCE_ROOT_ID></div>
            // LoRAs and saved styles, likewise.
            <div id=STYLES_ROOT_ID></div>

            <RatioField studio/>

            <div class="field">
                <label for="seed">{ui.seed}</label>
                <div class="seed-row">
                    <input
                        id="seed"
                        type="text"
                        inputmode="numeric"
                        autocomplete="off"
                        placeholder=ui.seed_placeholder
                        aria-describedby="seed-hint seed-error"
                        aria-invalid=move || seed_error().is_some().then_some("true")
                        prop:value=move || studio.form.with(|form| form.seed.clone())
                        on:input=move |event| {
                            let value = event_target_value(&event);
                            studio.form.update(|form| form.seed = value);
                            studio.clear_error_of(Field::Seed);
                        }
                    />
                    <button
                        type="button"
                        class="icon-button"
                        aria-label=ui.roll_seed
                        title=ui.roll_seed
                        on:click=move |_| studio.roll_dice()
                    >
                        <DiceIcon/>
                    </button>
                    <button
                        type="button"
                        class="icon-button"
                        aria-label=ui.random_every_time
                        title=ui.random_every_time
                        disabled=move || studio.form.with(|form| form.seed.is_empty())
                        on:click=move |_| {
                            studio.form.update(|form| form.seed.clear());
                            studio.clear_error_of(Field::Seed);
                        }
                    >
                        <ClearIcon/>
                    </button>
                </div>
                <p id="seed-hint" class="hint">{ui.seed_hint}</p>
                <p id="seed-error" class="field-error" aria-live="polite">
                    {seed_error}
                </p>
            </div>

            <noscript>
                <p class="form-error">{ui.needs_javascript}</p>
            </noscript>
            <p class="form-error" role="alert" aria-live="assertive">
                {general_error}
            </p>

            <div class="action-bar">
                <MiniProgress studio/>
                <button
                    type="submit"
                    class="primary generate"
                    class:cancel=active
                    disabled=move || studio.submitting.get() || studio.job.with(|job| job.as_ref().is_some_and(|job| job.cancel_requested && job.is_active()))
                    aria-keyshortcuts="Control+Enter Meta+Enter"
                >
                    {move || if active() { ui.cancel } else if studio.submitting.get() { ui.sending } else { ui.generate }}
                </button>
            </div>
        </form>
    })
}

/// The aspect ratio chips (with a picture, one more that keeps its shape) and their error.
#[component]
fn RatioField(studio: Studio) -> impl IntoView {
    let ratio_error = move || {
        studio.form_error.with(|error| {
            error
                .as_ref()
                .and_then(|error| error.message_for(Field::AspectRatio))
                .map(str::to_owned)
        })
    };
    let has_picture = Signal::derive(move || studio.form.with(|form| form.source.is_some()));
    crate::components::erase(view! {
        <fieldset class="field ratios" aria-describedby="ratio-error">
            <legend>{studio.ui.aspect_ratio}</legend>
            <div class="chips" class:with-picture=has_picture>
                {move || {
                    studio.form.with(|form| {
                        form.source
                            .as_ref()
                            .map(|picture| (picture.width, picture.height))
                    })
                    .map(|(width, height)| view! { <PictureChip studio width height/> })
                }}
                {AspectRatio::ALL.into_iter().map(|ratio| view! { <RatioChip studio ratio/> }).collect_view()}
            </div>
            <p id="ratio-error" class="field-error" aria-live="polite">
                {ratio_error}
            </p>
        </fieldset>
    })
}

/// One aspect ratio: a radio button drawn as a chip with the shape and the pixel size it gives.
#[component]
fn RatioChip(studio: Studio, ratio: AspectRatio) -> impl IntoView {
    let (width, height) = ratio.size();
    let selected = move || studio.form.with(|form| form.aspect_ratio == Some(ratio));
    // The shape inside the chip, at most 24 px on its longer side.
    let shape_style = format!("width: {}px; height: {}px", width * 24 / 1024, height * 24 / 1024);
    crate::components::erase(view! {
        <label class="chip" class:selected=selected>
            <input
                type="radio"
                name="aspect_ratio"
                value=ratio.label()
                checked=selected
                prop:checked=selected
                on:change=move |_| {
                    studio.form.update(|form| form.aspect_ratio = Some(ratio));
                    studio.clear_error_of(Field::AspectRatio);
                }
            />
            <span class="chip-frame" aria-hidden="true">
                <span class="chip-shape" style=shape_style></span>
            </span>
            <span class="chip-label">{ratio.label()}</span>
            <span class="chip-size">{format!("{width}×{height}")}</span>
        </label>
    })
}

/// With a picture to start from: the chip that keeps the picture's shape and size (no ratio is sent).
#[component]
fn PictureChip(studio: Studio, width: u32, height: u32) -> impl IntoView {
    let ui = studio.ui;
    let selected = Signal::derive(move || studio.form.with(|form| form.aspect_ratio.is_none()));
    let longer = width.max(height).max(1);
    let shape_style = format!(
        "width: {}px; height: {}px",
        width * 24 / longer,
        height * 24 / longer
    );
    view! {
        <label class="chip" class:selected=selected>
            <input
                type="radio"
                name="aspect_ratio"
                value="picture"
                prop:checked=selected
                on:change=move |_| {
                    studio.form.update(|form| form.aspect_ratio = None);
                    studio.clear_error_of(Field::AspectRatio);
                }
            />
            <span class="chip-frame" aria-hidden="true">
                <span class="chip-shape" style=shape_style></span>
            </span>
            <span class="chip-label">{ui.picture_shape}</span>
            <span class="chip-size">{format!("{width}×{height}")}</span>
        </label>
    }
}

/// The thin bar above the button, so a phone shows progress while the form is on screen.
#[component]
fn MiniProgress(studio: Studio) -> impl IntoView {
    let width = move || {
        studio.job.with(|job| {
            job.as_ref()
                .filter(|job| job.is_active())
                .map_or(0, |job| job.permille())
        })
    };
    view! {
        <div class="mini-progress" aria-hidden="true" class:visible=move || studio.job_is_active()>
            <div class="mini-progress-fill" style:width=move || crate::job::percent_text(width())></div>
        </div>
    }
}

/// A die, drawn inline so the page loads nothing from elsewhere.
#[component]
fn DiceIcon() -> impl IntoView {
    view! {
        <svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false">
            <rect x="3" y="3" width="18" height="18" rx="4" fill="none" stroke="currentColor" stroke-width="2"></rect>
            <circle cx="8.5" cy="8.5" r="1.6" fill="currentColor"></circle>
            <circle cx="15.5" cy="15.5" r="1.6" fill="currentColor"></circle>
            <circle cx="12" cy="12" r="1.6" fill="currentColor"></circle>
            <circle cx="15.5" cy="8.5" r="1.6" fill="currentColor"></circle>
            <circle cx="8.5" cy="15.5" r="1.6" fill="currentColor"></circle>
        </svg>
    }
}

/// A cross, for clearing the seed.
#[component]
fn ClearIcon() -> impl IntoView {
    view! {
        <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">
            <path d="M6 6l12 12M18 6L6 18" stroke="currentColor" stroke-width="2" stroke-linecap="round"></path>
        </svg>
    }
}
