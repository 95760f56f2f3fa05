//! LoRAs and saved styles in the form: the LoRAs the backends have (`GET /api/loras`), up to four
//! picked, each with a strength slider and its trigger words (a tap adds them to the prompt); the
//! household's saved styles as chips (a tap applies one), the current settings saved under a name,
//! and the applied style renamed or deleted.
//!
//! Like the picture picker, it needs the bundle: mounted into an empty element of the form once the
//! page is hydrated, never rendered by the gateway. It is drawn as plain elements ([`crate::plain`]):
//! [`panel`] is what a person sees for a state, [`Act`] what they can do; as Leptos views the same
//! controls cost five times the bundle bytes.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::styles::MAX_LORAS;
use crate::api::{LoraInfo, Style, StyleRequest};
use crate::browser;
use crate::client;
use crate::components::mount_plain;
use crate::form::{Field, FormLora, LoraStrength, StudioForm};
use crate::i18n::Ui;
use crate::plain::{Acted, El};
use crate::studio::Studio;

/// The element of the form it is mounted into.
pub const STYLES_ROOT_ID: &str = "styles-root";
/// The fields of "save as a style": read when a button is pressed, never drawn over (what a person
/// types stays).
const STYLE_NAME_ID: &str = "style-name";
const WORDS_BEFORE_ID: &str = "style-before";
const WORDS_AFTER_ID: &str = "style-after";

/// What the panel shows besides the form: the lists from the gateway and the last refusal of a
/// style's call.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    pub loras: Vec<LoraInfo>,
    pub styles: Vec<Style>,
    pub error: Option<String>,
}

impl Lists {
    /// The applied style, as last listed.
    fn applied(&self, form: &StudioForm) -> Option<&Style> {
        let applied = form.style.as_deref()?;
        self.styles.iter().find(|style| style.name == applied)
    }
}

/// Mounts the LoRAs and styles into the form (once, after hydration): loads the lists, draws the panel
/// again whenever the form or the lists change, and acts on what a person does in it.
pub fn mount(studio: Studio) {
    let lists = RwSignal::new(Lists::default());
    // A studio without LoRAs (or without the route) shows no picker; a failure shows nothing either:
    // the styles' own calls say what is wrong.
    spawn_local(async move {
        if let Ok(loras) = client::loras().await {
            lists.update(|lists| lists.loras = loras);
        }
    });
    reload_styles(studio, lists);
    let build = move || {
        studio.form.with(|form| {
            studio.form_error.with(|error| {
                let lora_error = error.as_ref().and_then(|error| error.message_for(Field::Loras));
                lists.with(|lists| panel(studio.ui, form, lists, lora_error))
            })
        })
    };
    mount_plain(
        STYLES_ROOT_ID,
        &["click", "input", "change"],
        build,
        move |_, acted| {
            if let Some(act) = Act::read(&acted) {
                act.run(studio, lists);
            }
        },
    );
}

fn reload_styles(studio: Studio, lists: RwSignal<Lists>) {
    spawn_local(async move {
        match client::styles().await {
            Ok(styles) => lists.update(|lists| lists.styles = styles),
            Err(error) => lists.update(|lists| lists.error = Some(error.message(studio.ui))),
        }
    });
}

/// What a person does in the panel, read from the element's `data-act` (see [`panel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// A LoRA picked from the list.
    AddLora(String),
    /// A LoRA's slider moved, to this strength in hundredths.
    Strength(String, u8),
    RemoveLora(String),
    /// A LoRA's trigger words tapped.
    Words(String),
    /// A style's chip tapped; `None` for "No style".
    Apply(Option<String>),
    Save,
    Rename,
    Delete,
}

impl Act {
    /// The act of an event (`click`, `input`, `change`); `None` for an event that does nothing (a
    /// click on a slider).
    pub fn read(acted: &Acted) -> Option<Act> {
        let (arg, value) = (acted.arg.as_str(), acted.value.clone());
        Some(match (acted.kind.as_str(), acted.act.as_str()) {
            ("change", "add") if !value.is_empty() => Act::AddLora(value),
            ("input", "strength") => Act::Strength(arg.to_owned(), LoraStrength::from_input(&value)?),
            ("click", "remove") => Act::RemoveLora(arg.to_owned()),
            ("click", "words") => Act::Words(arg.to_owned()),
            ("click", "apply") => Act::Apply((!arg.is_empty()).then(|| arg.to_owned())),
            ("click", "save") => Act::Save,
            ("click", "rename") => Act::Rename,
            ("click", "delete") => Act::Delete,
            _ => return None,
        })
    }

    fn run(self, studio: Studio, lists: RwSignal<Lists>) {
        let form = studio.form;
        match self {
            Act::AddLora(name) => {
                form.update(|form| form.add_lora(name));
                studio.clear_error_of(Field::Loras);
            }
            Act::Strength(name, strength) => form.update(|form| form.set_lora_strength(&name, strength)),
            Act::RemoveLora(name) => {
                form.update(|form| form.remove_lora(&name));
                studio.clear_error_of(Field::Loras);
            }
            Act::Words(words) => form.update(|form| form.add_words(&words)),
            Act::Apply(None) => form.update(|form| form.style = None),
            Act::Apply(Some(name)) => {
                let style = lists
                    .with_untracked(|lists| lists.styles.iter().find(|style| style.name == name).cloned());
                if let Some(style) = style {
                    form.update(|form| form.apply_style(&style));
                }
            }
            Act::Save => {
                let request = form.with_untracked(|form| {
                    form.style_request(
                        browser::field_value(STYLE_NAME_ID),
                        browser::field_value(WORDS_BEFORE_ID),
                        browser::field_value(WORDS_AFTER_ID),
                    )
                });
                save(studio, lists, None, request);
            }
            Act::Rename => {
                let applied =
                    form.with_untracked(|form| lists.with_untracked(|lists| lists.applied(form).cloned()));
                if let Some(style) = applied {
                    let request = StyleRequest {
                        name: browser::field_value(STYLE_NAME_ID),
                        prompt_before: style.prompt_before,
                        prompt_after: style.prompt_after,
                        aspect_ratio: style.aspect_ratio,
                        loras: style.loras,
                    };
                    save(studio, lists, Some(style.id), request);
                }
            }
            Act::Delete => {
                let applied =
                    form.with_untracked(|form| lists.with_untracked(|lists| lists.applied(form).cloned()));
                if let Some(style) = applied {
                    spawn_local(async move {
                        let answer = client::delete_style(&style.id).await;
                        if answer.is_ok() {
                            form.update(|form| form.style = None);
                        }
                        settle(studio, lists, answer.err());
                    });
                }
            }
        }
    }
}

/// Saves a new style (`id` none) or an existing one again, and applies what was saved.
fn save(studio: Studio, lists: RwSignal<Lists>, id: Option<String>, request: StyleRequest) {
    spawn_local(async move {
        match client::save_style(id.as_deref(), &request).await {
            Ok(style) => {
                studio.form.update(|form| form.apply_style(&style));
                browser::clear_field(STYLE_NAME_ID);
                settle(studio, lists, None);
            }
            Err(error) => settle(studio, lists, Some(error)),
        }
    });
}

/// After a style's call: its refusal shown (or the last one cleared), and the list read again.
fn settle(studio: Studio, lists: RwSignal<Lists>, error: Option<client::ClientError>) {
    lists.update(|lists| lists.error = error.map(|error| error.message(studio.ui)));
    reload_styles(studio, lists);
}

/// The panel for a state: the LoRAs' fieldset (hidden while no backend lists any and none is
/// picked) and the styles' fieldset.
pub fn panel(ui: &Ui, form: &StudioForm, lists: &Lists, lora_error: Option<&str>) -> Vec<El> {
    vec![
        lora_fieldset(ui, form, lists, lora_error),
        style_fieldset(ui, form, lists),
    ]
}

fn lora_fieldset(ui: &Ui, form: &StudioForm, lists: &Lists, error: Option<&str>) -> El {
    let picked = |name: &str| form.loras.iter().any(|lora| lora.name == name);
    let options = lists.loras.iter().filter(|info| !picked(&info.name)).map(|info| {
        El::new("option")
            .attr("value", info.name.as_str())
            .text(info.name.as_str())
    });
    El::with(
        "fieldset",
        &[
            ("class", "field loras"),
            ("aria-describedby", "loras-hint loras-error"),
        ],
    )
    .flag("hidden", lists.loras.is_empty() && form.loras.is_empty())
    .child(El::new("legend").text(ui.loras))
    .child(
        El::with("ul", &[("class", "lora-list")])
            .children(form.loras.iter().map(|lora| picked_lora(ui, lora, lists))),
    )
    .child(
        El::with("select", &[("class", "lora-add")])
            .attr("aria-label", ui.add_lora)
            .flag("disabled", form.loras.len() >= MAX_LORAS)
            .act("add", "")
            .child(El::new("option").attr("value", "").text(ui.add_lora))
            .children(options)
            .attr("value", ""),
    )
    .child(El::with("p", &[("id", "loras-hint"), ("class", "hint")]).text(ui.loras_hint))
    .child(
        El::with(
            "p",
            &[
                ("id", "loras-error"),
                ("class", "field-error"),
                ("aria-live", "polite"),
            ],
        )
        .text(error.unwrap_or_default()),
    )
}

/// One picked LoRA: its name, its strength slider, remove, and its trigger words.
fn picked_lora(ui: &Ui, lora: &FormLora, lists: &Lists) -> El {
    let name = lora.name.as_str();
    let strength = LoraStrength::text(lora.strength);
    // An id from the name: a file's name may hold characters an id should not.
    let slider_id = format!(
        "lora-{:x}",
        name.bytes().fold(0u32, |hash, byte| hash
            .wrapping_mul(31)
            .wrapping_add(u32::from(byte)))
    );
    let words = lists
        .loras
        .iter()
        .find(|info| info.name == name)
        .map(|info| info.trigger_words.as_slice())
        .unwrap_or_default();
    let head = El::with("div", &[("class", "field-head")])
        .child(
            El::new("label")
                .attr("for", slider_id.as_str())
                .attr("class", "lora-name")
                .text(name),
        )
        .child(
            El::with("output", &[("class", "lora-value"), ("aria-hidden", "true")]).text(strength.as_str()),
        )
        .child(
            El::with("button", &[("type", "button"), ("class", "icon-button")])
                .attr("aria-label", (ui.remove_lora)(name))
                .attr("title", (ui.remove_lora)(name))
                .act("remove", name)
                .text("×"),
        );
    let slider = El::with("input", &[("type", "range"), ("min", "0")])
        .attr("id", slider_id)
        .attr("max", LoraStrength::text(FormLora::MAX))
        .attr("step", LoraStrength::text(FormLora::STEP))
        .attr("aria-label", (ui.lora_strength)(name))
        .act("strength", name)
        .attr("value", strength);
    let words = (!words.is_empty()).then(|| {
        El::with("div", &[("class", "examples"), ("role", "group")])
            .attr("aria-label", ui.trigger_words)
            .children(words.iter().map(|words| {
                El::with("button", &[("type", "button"), ("class", "link-button example")])
                    .act("words", words.as_str())
                    .text(words.as_str())
            }))
    });
    El::with("li", &[("class", "lora")])
        .child(head)
        .child(slider)
        .children(words)
}

fn style_fieldset(ui: &Ui, form: &StudioForm, lists: &Lists) -> El {
    let applied = lists.applied(form);
    let chip = |label: &str, name: &str, pressed: bool| {
        El::with("button", &[("type", "button"), ("class", "button style-chip")])
            .attr("aria-pressed", if pressed { "true" } else { "false" })
            .act("apply", name)
            .text(label)
    };
    let chips = std::iter::once(chip(ui.no_style, "", form.style.is_none())).chain(lists.styles.iter().map(
        |style| {
            chip(
                &style.name,
                &style.name,
                form.style.as_deref() == Some(style.name.as_str()),
            )
        },
    ));
    let words = applied.map_or_else(String::new, |style| {
        format!("{} … {}", style.prompt_before, style.prompt_after)
    });
    let field = |id: &'static str, label: &'static str, max: &'static str| {
        [
            El::new("label").attr("for", id).text(label),
            El::with("input", &[("type", "text"), ("autocomplete", "off")])
                .attr("id", id)
                .attr("maxlength", max),
        ]
    };
    let button = |class: &'static str, act: &'static str, label: &'static str, disabled: bool| {
        El::with("button", &[("type", "button")])
            .attr("class", class)
            .flag("disabled", disabled)
            .act(act, "")
            .text(label)
    };
    El::with(
        "fieldset",
        &[("class", "field styles"), ("aria-describedby", "styles-error")],
    )
    .child(El::new("legend").text(ui.styles))
    .child(El::with("div", &[("class", "style-chips")]).children(chips))
    .child(El::with("p", &[("class", "hint style-words")]).text(words))
    .child(
        El::with("details", &[("class", "style-save")])
            .child(El::new("summary").text(ui.save_style))
            .children(field(STYLE_NAME_ID, ui.style_name, "60"))
            .children(field(WORDS_BEFORE_ID, ui.words_before, "500"))
            .children(field(WORDS_AFTER_ID, ui.words_after, "500"))
            .child(
                El::with("div", &[("class", "actions")])
                    .child(button("button", "save", ui.save_style, false))
                    .child(button("button", "rename", ui.rename_style, applied.is_none()))
                    .child(button(
                        "button danger-outline",
                        "delete",
                        ui.delete_style,
                        applied.is_none(),
                    )),
            ),
    )
    .child(
        El::with(
            "p",
            &[
                ("id", "styles-error"),
                ("class", "field-error"),
                ("aria-live", "polite"),
            ],
        )
        .text(lists.error.clone().unwrap_or_default()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AspectRatio, LoraChoice};
    use crate::i18n::EN;
    use crate::plain::find;

    fn lists() -> Lists {
        let lora = |name: &str, words: &[&str]| LoraInfo {
            name: name.to_owned(),
            backends: vec!["gpu-1".to_owned()],
            trigger_words: words.iter().map(|word| (*word).to_owned()).collect(),
        };
        Lists {
            loras: vec![
                lora("watercolor.safetensors", &["wtrclr style"]),
                lora("ink.safetensors", &[]),
            ],
            styles: vec![Style {
                id: "7".to_owned(),
                name: "Ink".to_owned(),
                prompt_before: "ink of".to_owned(),
                prompt_after: "on paper".to_owned(),
                aspect_ratio: Some(AspectRatio::Wide16x9),
                loras: vec![LoraChoice {
                    name: "ink.safetensors".to_owned(),
                    strength: 0.8,
                }],
                updated_at_ms: 0,
            }],
            error: None,
        }
    }

    fn class(name: &'static str) -> impl Fn(&El) -> bool {
        move |el| {
            el.get("class")
                .is_some_and(|class| class.split(' ').any(|part| part == name))
        }
    }

    #[test]
    fn without_loras_listed_or_picked_the_picker_is_hidden_and_styles_still_show() {
        let tree = panel(&EN, &StudioForm::default(), &Lists::default(), None);
        assert_eq!(find(&tree, class("loras"))[0].get("hidden"), Some(""));
        let chips = find(&tree, class("style-chip"));
        assert_eq!(chips.len(), 1);
        assert_eq!(
            (chips[0].text.as_deref(), chips[0].get("aria-pressed")),
            (Some("No style"), Some("true"))
        );
        // Rename and delete wait for an applied style.
        for act in ["rename", "delete"] {
            assert_eq!(
                find(&tree, |el| el.get("data-act") == Some(act))[0].get("disabled"),
                Some("")
            );
        }
    }

    #[test]
    fn a_picked_lora_has_its_slider_its_words_and_leaves_the_list_to_pick_from() {
        let mut form = StudioForm::default();
        form.add_lora("watercolor.safetensors".to_owned());
        form.set_lora_strength("watercolor.safetensors", 85);
        let tree = panel(&EN, &form, &lists(), Some("No backend has it."));
        assert_eq!(find(&tree, class("loras"))[0].get("hidden"), None);
        let slider = find(&tree, |el| el.get("type") == Some("range"))[0];
        assert_eq!(
            slider.get("aria-label"),
            Some("Strength of watercolor.safetensors")
        );
        assert_eq!(
            (slider.get("value"), slider.get("max"), slider.get("step")),
            (Some("0.85"), Some("2"), Some("0.05"))
        );
        let label = find(&tree, class("lora-name"))[0];
        assert_eq!(label.get("for"), slider.get("id"));
        assert_eq!(find(&tree, class("lora-value"))[0].text.as_deref(), Some("0.85"));
        let words = find(&tree, |el| el.get("data-act") == Some("words"));
        assert_eq!(words[0].get("data-arg"), Some("wtrclr style"));
        let options: Vec<_> = find(&tree, |el| el.tag == "option")
            .iter()
            .map(|el| el.get("value"))
            .collect();
        assert_eq!(options, [Some(""), Some("ink.safetensors")]);
        assert_eq!(
            find(&tree, |el| el.get("id") == Some("loras-error"))[0]
                .text
                .as_deref(),
            Some("No backend has it.")
        );
    }

    #[test]
    fn four_picked_loras_close_the_list() {
        let mut form = StudioForm::default();
        for name in ["a", "b", "c", "d"] {
            form.add_lora(name.to_owned());
        }
        let tree = panel(&EN, &form, &lists(), None);
        assert_eq!(find(&tree, class("lora")).len(), 4);
        assert_eq!(find(&tree, class("lora-add"))[0].get("disabled"), Some(""));
    }

    #[test]
    fn the_applied_style_is_pressed_says_its_words_and_can_be_renamed_or_deleted() {
        let mut form = StudioForm::default();
        form.apply_style(&lists().styles[0]);
        let tree = panel(&EN, &form, &lists(), None);
        let pressed: Vec<_> = find(&tree, class("style-chip"))
            .iter()
            .map(|chip| {
                (
                    chip.text.clone().unwrap_or_default(),
                    chip.get("aria-pressed") == Some("true"),
                )
            })
            .collect();
        assert_eq!(
            pressed,
            [("No style".to_owned(), false), ("Ink".to_owned(), true)]
        );
        assert_eq!(
            find(&tree, class("style-words"))[0].text.as_deref(),
            Some("ink of … on paper")
        );
        for act in ["rename", "delete"] {
            assert_eq!(
                find(&tree, |el| el.get("data-act") == Some(act))[0].get("disabled"),
                None
            );
        }
    }

    #[test]
    fn events_read_as_acts_and_nothing_else() {
        let read = |kind, act, arg, value| Act::read(&Acted::of(kind, act, arg, value));
        assert_eq!(
            read("change", "add", "", "ink.safetensors"),
            Some(Act::AddLora("ink.safetensors".to_owned()))
        );
        assert_eq!(read("change", "add", "", ""), None);
        assert_eq!(
            read("input", "strength", "ink", "0.87"),
            Some(Act::Strength("ink".to_owned(), 85))
        );
        assert_eq!(read("input", "strength", "ink", "x"), None);
        // A click on the slider, or a change of a field without an act, does nothing.
        assert_eq!(read("click", "strength", "ink", "1"), None);
        assert_eq!(read("click", "apply", "", ""), Some(Act::Apply(None)));
        assert_eq!(
            read("click", "apply", "Ink", ""),
            Some(Act::Apply(Some("Ink".to_owned())))
        );
        assert_eq!(
            read("click", "remove", "ink", ""),
            Some(Act::RemoveLora("ink".to_owned()))
        );
        assert_eq!(
            read("click", "words", "wtrclr", ""),
            Some(Act::Words("wtrclr".to_owned()))
        );
        assert_eq!(read("click", "delete", "", ""), Some(Act::Delete));
        assert_eq!(read("input", "save", "", ""), None);
    }
}
