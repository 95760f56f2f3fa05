//! LoRAs and saved styles in the form: the LoRAs the backends have (`GET /api/loras`), up to four
//! picked, each with a strength slider and its trigger words (a tap adds them to the prompt); the
//! household's saved styles as chips (a tap applies one), the current settings saved under a name,
//! and the applied style renamed or deleted.
//!
//! Like the picture picker, it needs the bundle: mounted into an empty element of the form once the
//! page is hydrated, never rendered by the gateway. Plain HTML controls only (bundle bytes).

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::styles::MAX_LORAS;
use crate::api::{LoraInfo, Style};
use crate::client;
use crate::form::{Field, FormLora, LoraStrength};
use crate::studio::Studio;

/// The element of the form it is mounted into.
pub const STYLES_ROOT_ID: &str = "styles-root";

/// Mounts the LoRAs and styles into the form (once, after hydration).
#[cfg(feature = "hydrate")]
pub fn mount(studio: Studio) {
    use wasm_bindgen::JsCast as _;
    let root = crate::browser::element_by_id(STYLES_ROOT_ID)
        .and_then(|element| element.dyn_into::<leptos::web_sys::HtmlElement>().ok());
    if let Some(root) = root {
        leptos::mount::mount_to(root, move || view! { <LorasAndStyles studio/> }).forget();
    }
}

/// The gateway renders the empty element only.
#[cfg(not(feature = "hydrate"))]
pub fn mount(_studio: Studio) {}

/// What the two parts share: the lists from the gateway and the last refusal.
#[derive(Clone, Copy)]
struct Lists {
    loras: RwSignal<Vec<LoraInfo>>,
    styles: RwSignal<Vec<Style>>,
    error: RwSignal<Option<String>>,
}

impl Lists {
    fn reload_styles(self, studio: Studio) {
        spawn_local(async move {
            match client::styles().await {
                Ok(styles) => self.styles.set(styles),
                Err(error) => self.error.set(Some(error.message(studio.ui))),
            }
        });
    }
}

/// The LoRA picker and the saved styles.
#[component]
pub fn LorasAndStyles(studio: Studio) -> impl IntoView {
    let lists = Lists {
        loras: RwSignal::new(Vec::new()),
        styles: RwSignal::new(Vec::new()),
        error: RwSignal::new(None),
    };
    // A studio without LoRAs (or without the route) shows no picker; a failure shows nothing either:
    // the styles' own calls say what is wrong.
    spawn_local(async move {
        if let Ok(loras) = client::loras().await {
            lists.loras.set(loras);
        }
    });
    lists.reload_styles(studio);
    view! {
        <LoraPicker studio lists/>
        <StylePicker studio lists/>
    }
}

/// The LoRAs picked, each with its slider, and the list to pick more from.
#[component]
fn LoraPicker(studio: Studio, lists: Lists) -> impl IntoView {
    let ui = studio.ui;
    // By name only: moving a slider re-renders nothing (the slider keeps its focus).
    let picked = Memo::new(move |_| {
        studio.form.with(|form| {
            form.loras
                .iter()
                .map(|lora| lora.name.clone())
                .collect::<Vec<_>>()
        })
    });
    let shown = Memo::new(move |_| !lists.loras.with(Vec::is_empty) || !picked.with(Vec::is_empty));
    let error = move || {
        studio.form_error.with(|error| {
            error
                .as_ref()
                .and_then(|error| error.message_for(Field::Loras))
                .map(str::to_owned)
        })
    };
    let add = move |event: leptos::ev::Event| {
        let name = event_target_value(&event);
        if !name.is_empty() {
            studio.form.update(|form| form.add_lora(name));
            studio.clear_error_of(Field::Loras);
        }
    };
    move || {
        shown.get().then(|| {
            view! {
                <fieldset class="field loras" aria-describedby="loras-hint loras-error">
                    <legend>{ui.loras}</legend>
                    <ul class="lora-list">
                        {move || {
                            picked
                                .get()
                                .into_iter()
                                .map(|name| view! { <PickedLora studio lists name/> })
                                .collect_view()
                        }}
                    </ul>
                    <select
                        class="lora-add"
                        aria-label=ui.add_lora
                        disabled=move || picked.with(|picked| picked.len() >= MAX_LORAS)
                        prop:value=""
                        on:change=add
                    >
                        <option value="">{ui.add_lora}</option>
                        {move || {
                            lists
                                .loras
                                .get()
                                .into_iter()
                                .filter(|info| picked.with(|picked| !picked.contains(&info.name)))
                                .map(|info| {
                                    let value = info.name.clone();
                                    view! { <option value=value>{info.name}</option> }
                                })
                                .collect_view()
                        }}
                    </select>
                    <p id="loras-hint" class="hint">{ui.loras_hint}</p>
                    <p id="loras-error" class="field-error" aria-live="polite">{error}</p>
                </fieldset>
            }
        })
    }
}

/// One picked LoRA: its name, its strength slider, its trigger words, and remove.
#[component]
fn PickedLora(studio: Studio, lists: Lists, name: String) -> impl IntoView {
    let ui = studio.ui;
    let strength = {
        let name = name.clone();
        Memo::new(move |_| {
            studio.form.with(|form| {
                form.loras
                    .iter()
                    .find(|lora| lora.name == name)
                    .map_or(0, |lora| lora.strength)
            })
        })
    };
    let slider_id = format!(
        "lora-{}",
        name.bytes().fold(0u32, |hash, byte| hash
            .wrapping_mul(31)
            .wrapping_add(u32::from(byte)))
    );
    let words = lists.loras.with_untracked(|loras| {
        loras
            .iter()
            .find(|info| info.name == name)
            .map(|info| info.trigger_words.clone())
            .unwrap_or_default()
    });
    let remove_name = name.clone();
    view! {
        <li class="lora">
            <div class="field-head">
                <label for=slider_id.clone() class="lora-name">{name.clone()}</label>
                <output class="lora-value" aria-hidden="true">{move || LoraStrength::text(strength.get())}</output>
                <button
                    type="button"
                    class="icon-button"
                    aria-label=(ui.remove_lora)(&name)
                    title=(ui.remove_lora)(&name)
                    on:click=move |_| {
                        studio.form.update(|form| form.loras.retain(|lora| lora.name != remove_name));
                    }
                >
                    "×"
                </button>
            </div>
            <input
                id=slider_id
                type="range"
                min="0"
                max=LoraStrength::text(FormLora::MAX)
                step=LoraStrength::text(FormLora::STEP)
                prop:value=move || LoraStrength::text(strength.get())
                aria-label=(ui.lora_strength)(&name)
                on:input={
                    let name = name.clone();
                    move |event| {
                        if let Some(strength) = LoraStrength::from_input(&event_target_value(&event)) {
                            studio.form.update(|form| {
                                if let Some(lora) = form.loras.iter_mut().find(|lora| lora.name == name) {
                                    lora.strength = strength;
                                }
                            });
                        }
                    }
                }
            />
            {(!words.is_empty())
                .then(|| {
                    view! {
                        <div class="examples" role="group" aria-label=ui.trigger_words>
                            {words
                                .into_iter()
                                .map(|word| {
                                    view! {
                                        <button
                                            type="button"
                                            class="link-button example"
                                            on:click=move |_| {
                                                studio.form.update(|form| {
                                                    if !form.prompt.trim().is_empty() {
                                                        form.prompt.push_str(", ");
                                                    }
                                                    form.prompt.push_str(&word);
                                                });
                                            }
                                        >
                                            {word.clone()}
                                        </button>
                                    }
                                })
                                .collect_view()}
                        </div>
                    }
                })}
        </li>
    }
}

/// The saved styles as chips, and saving, renaming and deleting.
#[component]
fn StylePicker(studio: Studio, lists: Lists) -> impl IntoView {
    let ui = studio.ui;
    let name = RwSignal::new(String::new());
    let before = RwSignal::new(String::new());
    let after = RwSignal::new(String::new());
    let applied = Memo::new(move |_| studio.form.with(|form| form.style.clone()));
    // The applied style, as last listed.
    let current = move || {
        applied.with(|applied| {
            applied.as_ref().and_then(|applied| {
                lists
                    .styles
                    .with(|styles| styles.iter().find(|style| &style.name == applied).cloned())
            })
        })
    };
    let save = move |_| {
        let request = studio.form.with_untracked(|form| {
            form.style_request(
                name.get_untracked(),
                before.get_untracked(),
                after.get_untracked(),
            )
        });
        spawn_local(async move {
            match client::save_style(None, &request).await {
                Ok(style) => {
                    lists.error.set(None);
                    studio.form.update(|form| form.apply_style(&style));
                    name.set(String::new());
                    lists.reload_styles(studio);
                }
                Err(error) => lists.error.set(Some(error.message(ui))),
            }
        });
    };
    let rename = move |_| {
        if let Some(style) = current() {
            let (new_name, style_id) = (name.get_untracked(), style.id.clone());
            let request = crate::api::StyleRequest {
                name: new_name,
                prompt_before: style.prompt_before,
                prompt_after: style.prompt_after,
                aspect_ratio: style.aspect_ratio,
                loras: style.loras,
            };
            spawn_local(async move {
                match client::save_style(Some(&style_id), &request).await {
                    Ok(style) => {
                        lists.error.set(None);
                        studio.form.update(|form| form.style = Some(style.name));
                        name.set(String::new());
                        lists.reload_styles(studio);
                    }
                    Err(error) => lists.error.set(Some(error.message(ui))),
                }
            });
        }
    };
    let delete = move |_| {
        if let Some(style) = current() {
            spawn_local(async move {
                match client::delete_style(&style.id).await {
                    Ok(()) => {
                        lists.error.set(None);
                        studio.form.update(|form| form.style = None);
                        lists.reload_styles(studio);
                    }
                    Err(error) => lists.error.set(Some(error.message(ui))),
                }
            });
        }
    };
    let chip = move |label: String, style: Option<Style>| {
        let pressed = {
            let name = style.as_ref().map(|style| style.name.clone());
            move || if applied.get() == name { "true" } else { "false" }
        };
        view! {
            <button
                type="button"
                class="button style-chip"
                aria-pressed=pressed
                on:click=move |_| {
                    studio.form.update(|form| match &style {
                        Some(style) => form.apply_style(style),
                        None => form.style = None,
                    });
                }
            >
                {label}
            </button>
        }
    };
    view! {
        <fieldset class="field styles" aria-describedby="styles-error">
            <legend>{ui.styles}</legend>
            <div class="style-chips">
                {chip(ui.no_style.to_owned(), None)}
                {move || {
                    lists
                        .styles
                        .get()
                        .into_iter()
                        .map(|style| chip(style.name.clone(), Some(style)))
                        .collect_view()
                }}
            </div>
            <p class="hint style-words">
                {move || current().map(|style| format!("{} … {}", style.prompt_before, style.prompt_after))}
            </p>
            <details class="style-save">
                <summary>{ui.save_style}</summary>
                <label for="style-name">{ui.style_name}</label>
                <input id="style-name" type="text" maxlength="60" autocomplete="off" bind:value=name/>
                <label for="style-before">{ui.words_before}</label>
                <input id="style-before" type="text" maxlength="500" autocomplete="off" bind:value=before/>
                <label for="style-after">{ui.words_after}</label>
                <input id="style-after" type="text" maxlength="500" autocomplete="off" bind:value=after/>
                <div class="actions">
                    <button type="button" class="button" on:click=save>
                        {ui.save_style}
                    </button>
                    <button type="button" class="button" disabled=move || current().is_none() on:click=rename>
                        {ui.rename_style}
                    </button>
                    <button type="button" class="button danger-outline" disabled=move || current().is_none() on:click=delete>
                        {ui.delete_style}
                    </button>
                </div>
            </details>
            <p id="styles-error" class="field-error" aria-live="polite">{move || lists.error.get()}</p>
        </fieldset>
    }
}
