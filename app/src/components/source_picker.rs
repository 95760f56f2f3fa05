//! "Start from a picture" in the form: choose a file (on a phone, the camera or the photo library),
//! paste or drop one; then the picture small with its remove button, the strength said in words, and
//! "Paint over a part": the picture with a canvas over it on which a finger or the mouse paints the
//! part to change, with the brush size, undo, clear and show/hide beside it.
//!
//! It works only with the bundle, so the gateway does not render it: it is drawn as plain elements
//! ([`crate::plain`]) into an empty element of the form once the page is hydrated. [`picker`] is what
//! a person sees for a state, [`Act`] what they can do. The strokes, undo and the mask live in
//! [`crate::paint::MaskPainting`]; this passes the pointer on.

use leptos::prelude::*;

use crate::api::pictures::paths;
use crate::browser;
use crate::components::mount_plain;
use crate::form::{Field, SourcePicture, Strength};
use crate::i18n::Ui;
use crate::paint::{Brush, MaskPainting};
use crate::plain::{Acted, El};
use crate::studio::{PAINTING_CANVAS_ID, SOURCE_ID, Studio};

/// The element of the form the picker is mounted into.
pub const SOURCE_ROOT_ID: &str = "source-root";

/// What the picker shows, read from the studio.
#[derive(Debug, Clone, Copy)]
pub struct Picker<'a> {
    pub source: Option<&'a SourcePicture>,
    pub strength: Strength,
    /// The gateway's word on the picture, if it refused it.
    pub error: Option<&'a str>,
    /// A picture is being sent.
    pub busy: bool,
    pub painting: Option<Painted>,
    /// "Paint over a part" is open.
    pub painting_open: bool,
}

/// What the picker shows of the painting. It changes when a stroke starts or ends, not with every
/// move of the pointer (each of which updates the painting itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Painted {
    pub shown: bool,
    pub brush: Brush,
    pub can_undo: bool,
    pub empty: bool,
}

impl Painted {
    pub fn of(painting: &MaskPainting) -> Painted {
        Painted {
            shown: painting.shown,
            brush: painting.brush,
            can_undo: painting.can_undo(),
            empty: painting.is_empty(),
        }
    }
}

/// Mounts the picker into the form (once, after hydration).
pub fn mount(studio: Studio) {
    // The picker is drawn again when this changes, not on every move of a stroke.
    let painted = Memo::new(move |_| {
        studio
            .painting
            .with(|painting| painting.as_ref().map(Painted::of))
    });
    let build = move || {
        studio.form.with(|form| {
            studio.form_error.with(|error| {
                let state = Picker {
                    source: form.source.as_ref(),
                    strength: form.strength,
                    error: error.as_ref().and_then(|error| error.message_for(Field::Source)),
                    busy: studio.picture_busy.get(),
                    painting: painted.get(),
                    painting_open: studio.painting_open.get(),
                };
                picker(studio.ui, state)
            })
        })
    };
    let kinds = [
        "click",
        "input",
        "change",
        "dragover",
        "drop",
        "pointerdown",
        "pointermove",
        "pointerup",
        "pointercancel",
        "lostpointercapture",
    ];
    mount_plain(SOURCE_ROOT_ID, &kinds, build, move |event, acted| {
        if let Some(act) = Act::read(&acted) {
            act.run(studio, event);
        }
    });
}

/// What a person does in the picker, read from the event and the element's `data-act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// A file was chosen in the file input.
    Choose,
    /// Something is dragged over the picker: it may be dropped.
    DragOver,
    Drop,
    /// "Paint over a part" pressed: opens or closes the painting.
    PaintOver,
    Remove,
    Strength(Strength),
    Brush(Brush),
    Undo,
    Clear,
    ShowPainting,
    Done,
    /// The pointer went down on the canvas, moved on it, or let go.
    PaintDown,
    PaintMove,
    PaintEnd,
}

impl Act {
    /// The act of an event; `None` for one that does nothing.
    pub fn read(acted: &Acted) -> Option<Act> {
        Some(match (acted.kind.as_str(), acted.act.as_str()) {
            ("dragover", _) => Act::DragOver,
            ("drop", _) => Act::Drop,
            ("change", "choose") => Act::Choose,
            ("change", "brush") => Act::Brush(*Brush::ALL.get(acted.arg.parse::<usize>().ok()?)?),
            ("input", "strength") => Act::Strength(Strength::from_input(&acted.value)?),
            ("click", "paint-over") => Act::PaintOver,
            ("click", "remove") => Act::Remove,
            ("click", "undo") => Act::Undo,
            ("click", "clear") => Act::Clear,
            ("click", "show") => Act::ShowPainting,
            ("click", "done") => Act::Done,
            ("pointerdown", "paint") => Act::PaintDown,
            ("pointermove", "paint") => Act::PaintMove,
            ("pointerup" | "pointercancel" | "lostpointercapture", "paint") => Act::PaintEnd,
            _ => return None,
        })
    }

    fn run(self, studio: Studio, event: &leptos::ev::Event) {
        match self {
            Act::Choose => {
                if let Some(image) = browser::chosen_image(event) {
                    studio.choose_picture(image);
                }
            }
            Act::DragOver => browser::allow_drop(event),
            Act::Drop => {
                if let Some(image) = browser::dropped_image(event) {
                    studio.choose_picture(image);
                }
            }
            Act::PaintOver if studio.painting_open.get_untracked() => studio.painting_open.set(false),
            Act::PaintOver => {
                studio.open_painting();
                // The canvas is new: drawn once it is in the page, and brought into view (on a phone it
                // opens below the screen's edge, under the sticky Generate bar).
                browser::next_frame(move || {
                    studio.redraw_painting();
                    browser::scroll_into_view(PAINTING_CANVAS_ID);
                });
            }
            Act::Remove => studio.remove_picture(),
            Act::Strength(strength) => studio.form.update(|form| form.choose_strength(strength)),
            Act::Brush(brush) => studio.choose_brush(brush),
            Act::Undo => studio.edit_painting(|painting| {
                painting.undo();
            }),
            Act::Clear => studio.edit_painting(MaskPainting::clear),
            Act::ShowPainting => studio.edit_painting(|painting| painting.shown = !painting.shown),
            Act::Done => studio.painting_open.set(false),
            Act::PaintDown | Act::PaintMove => {
                let size = studio.form.with_untracked(|form| {
                    form.source
                        .as_ref()
                        .map(|picture| (picture.width, picture.height))
                });
                let Some((width, height)) = size else { return };
                let Some(at) = browser::pointer_on(event, PAINTING_CANVAS_ID, width, height) else {
                    return;
                };
                if self == Act::PaintMove {
                    studio.paint_to(at);
                } else {
                    event.prevent_default();
                    browser::capture_pointer(event);
                    studio.paint_begin(at);
                }
            }
            Act::PaintEnd => studio.paint_end(),
        }
    }
}

/// The picker for a state.
pub fn picker(ui: &Ui, state: Picker<'_>) -> Vec<El> {
    let body = match state.source {
        None => vec![chooser(ui, state.busy)],
        Some(picture) => chosen(ui, picture, state),
    };
    vec![
        El::with(
            "fieldset",
            &[("class", "field source"), ("aria-describedby", "source-error")],
        )
        .attr("id", SOURCE_ID)
        .child(El::new("legend").text(ui.source_legend))
        .children(body)
        .child(
            El::with(
                "p",
                &[
                    ("id", "source-error"),
                    ("class", "field-error"),
                    ("aria-live", "polite"),
                ],
            )
            .text(state.error.unwrap_or_default()),
        ),
    ]
}

/// Nothing chosen yet: the file button (a label around the input, so the camera is offered on a
/// phone) and the hint about pasting and dropping.
fn chooser(ui: &Ui, busy: bool) -> El {
    // No `capture`: a phone then offers both the camera and the photo library.
    let input = El::with(
        "input",
        &[
            ("type", "file"),
            ("accept", "image/*"),
            ("class", "visually-hidden"),
            ("aria-describedby", "picture-hint"),
        ],
    )
    .flag("disabled", busy)
    .act("choose", "");
    El::with("div", &[("class", "picture-drop")])
        .child(
            El::new("label")
                .attr(
                    "class",
                    if busy {
                        "button picture-choose busy"
                    } else {
                        "button picture-choose"
                    },
                )
                .child(input)
                .child(El::new("span").text(if busy {
                    ui.uploading_picture
                } else {
                    ui.choose_picture
                })),
        )
        .child(El::with("p", &[("id", "picture-hint"), ("class", "hint")]).text(ui.picture_hint))
}

/// The chosen picture, small, with what can be done with it; the painting when open; the strength.
fn chosen(ui: &Ui, picture: &SourcePicture, state: Picker<'_>) -> Vec<El> {
    let (width, height) = (picture.width.to_string(), picture.height.to_string());
    let painted = state.painting.is_some_and(|painting| !painting.empty);
    let tools = El::with("div", &[("class", "picture-tools")])
        .child(El::with("span", &[("class", "picture-size")]).text(format!("{width} × {height}")))
        .child(
            El::with("button", &[("type", "button"), ("class", "button")])
                .attr(
                    "aria-expanded",
                    if state.painting_open { "true" } else { "false" },
                )
                .act("paint-over", "")
                .text(ui.paint_over),
        )
        .child(
            El::with(
                "button",
                &[("type", "button"), ("class", "button danger-outline")],
            )
            .flag("disabled", state.busy)
            .act("remove", "")
            .text(ui.remove_picture),
        );
    let thumb = El::with("img", &[("class", "picture-thumb")])
        .attr("src", paths::picture(&picture.id))
        .attr("alt", ui.chosen_picture)
        .attr("width", width.as_str())
        .attr("height", height.as_str());
    let painter = state
        .painting
        .filter(|_| state.painting_open)
        .map(|painting| painter(ui, picture, painting));
    let strength = state.strength.value_text(ui);
    let slider = El::with("input", &[("id", "strength"), ("type", "range")])
        .attr("min", Strength::from_value(0.0).input_value())
        .attr("max", Strength::from_value(1.0).input_value())
        .attr("step", Strength::input_step())
        .attr("aria-valuetext", strength.as_str())
        .act("strength", "")
        .attr("value", state.strength.input_value());
    let mut parts = vec![
        El::with("div", &[("class", "picture-chosen")])
            .child(thumb)
            .child(tools),
    ];
    parts.extend(painter);
    parts.push(
        El::new("p")
            .attr("class", if painted { "hint" } else { "hint hidden" })
            .text(ui.painted_part_changes),
    );
    parts.push(
        El::with("div", &[("class", "strength")])
            .child(
                El::with("div", &[("class", "field-head")])
                    .child(El::with("label", &[("for", "strength")]).text(ui.strength))
                    .child(
                        El::with("output", &[("class", "strength-value"), ("aria-hidden", "true")])
                            .text(strength),
                    ),
            )
            .child(slider),
    );
    parts
}

/// The painting over the chosen picture, as wide as the form allows while its height stays within
/// the screen.
fn painter(ui: &Ui, picture: &SourcePicture, painting: Painted) -> El {
    let (width, height) = (picture.width, picture.height);
    let stage_style =
        format!("aspect-ratio: {width} / {height}; width: min(100%, calc(70svh * {width} / {height}))");
    let (width, height) = (width.to_string(), height.to_string());
    let canvas = El::with("canvas", &[("role", "img")])
        .attr("id", PAINTING_CANVAS_ID)
        .attr(
            "class",
            if painting.shown {
                "painter-canvas"
            } else {
                "painter-canvas faded"
            },
        )
        .attr("width", width.as_str())
        .attr("height", height.as_str())
        .attr("aria-label", ui.painting_canvas)
        .act("paint", "");
    let stage = El::with("div", &[("class", "painter-stage")])
        .attr("style", stage_style)
        .child(
            El::with("img", &[("class", "painter-picture"), ("alt", "")])
                .attr("src", paths::picture(&picture.id))
                .attr("width", width.as_str())
                .attr("height", height.as_str()),
        )
        .child(canvas);
    let brushes = Brush::ALL.iter().enumerate().map(|(index, brush)| {
        let (label, dot) = match brush {
            Brush::Small => (ui.brush_small, 8),
            Brush::Medium => (ui.brush_medium, 14),
            Brush::Large => (ui.brush_large, 22),
        };
        let selected = painting.brush == *brush;
        El::new("label")
            .attr(
                "class",
                if selected {
                    "brush-chip selected"
                } else {
                    "brush-chip"
                },
            )
            .child(
                El::with("input", &[("type", "radio"), ("name", "brush")])
                    .flag("checked", selected)
                    .act("brush", index.to_string()),
            )
            .child(
                El::with("span", &[("class", "brush-dot"), ("aria-hidden", "true")])
                    .attr("style", format!("width: {dot}px; height: {dot}px")),
            )
            .child(El::new("span").text(label))
    });
    let button = |act: &'static str, label: &'static str| {
        El::with("button", &[("type", "button"), ("class", "button")])
            .act(act, "")
            .text(label)
    };
    let actions = El::with("div", &[("class", "painter-actions")])
        .child(button("undo", ui.undo).flag("disabled", !painting.can_undo))
        .child(button("clear", ui.clear).flag("disabled", painting.empty))
        .child(
            button("show", ui.show_painting)
                .attr("aria-pressed", if painting.shown { "true" } else { "false" }),
        )
        .child(button("done", ui.done_painting).attr("class", "button primary"));
    El::with(
        "div",
        &[("id", "painter"), ("class", "painter"), ("role", "group")],
    )
    .attr("aria-label", ui.paint_over)
    .child(El::with("p", &[("class", "hint")]).text(ui.painting_hint))
    .child(stage)
    .child(
        El::with("div", &[("class", "painter-tools")])
            .child(
                El::with("fieldset", &[("class", "brushes")])
                    .child(El::with("legend", &[("class", "visually-hidden")]).text(ui.brush_size))
                    .children(brushes),
            )
            .child(actions),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::EN;
    use crate::plain::find;

    fn acting(act: &'static str) -> impl Fn(&El) -> bool {
        move |el| el.get("data-act") == Some(act)
    }

    fn empty() -> Picker<'static> {
        Picker {
            source: None,
            strength: Strength::DEFAULT,
            error: None,
            busy: false,
            painting: None,
            painting_open: false,
        }
    }

    #[test]
    fn without_a_picture_the_file_button_shows_and_is_closed_while_one_is_sent() {
        let tree = picker(&EN, empty());
        assert_eq!(tree[0].get("id"), Some(SOURCE_ID));
        let input = find(&tree, acting("choose"))[0];
        assert_eq!(
            (input.get("type"), input.get("accept"), input.get("disabled")),
            (Some("file"), Some("image/*"), None)
        );
        assert!(find(&tree, |el| el.tag == "canvas" || el.get("id") == Some("strength")).is_empty());

        let busy = picker(
            &EN,
            Picker {
                busy: true,
                error: Some("Too big."),
                ..empty()
            },
        );
        assert_eq!(find(&busy, acting("choose"))[0].get("disabled"), Some(""));
        assert_eq!(
            find(&busy, |el| el.tag == "span")[0].text.as_deref(),
            Some(EN.uploading_picture)
        );
        assert_eq!(
            find(&busy, |el| el.get("id") == Some("source-error"))[0]
                .text
                .as_deref(),
            Some("Too big.")
        );
    }

    #[test]
    fn a_chosen_picture_shows_its_size_its_strength_in_words_and_the_painting_only_when_open() {
        let picture = SourcePicture {
            id: "p1".to_owned(),
            width: 1024,
            height: 768,
        };
        let mut painting = MaskPainting::new(1024, 768);
        let state = Picker {
            source: Some(&picture),
            painting: Some(Painted::of(&painting)),
            ..empty()
        };
        let closed = picker(&EN, state);
        assert_eq!(
            find(&closed, |el| el.get("class") == Some("picture-size"))[0]
                .text
                .as_deref(),
            Some("1024 × 768")
        );
        assert_eq!(
            find(&closed, acting("paint-over"))[0].get("aria-expanded"),
            Some("false")
        );
        assert!(find(&closed, |el| el.tag == "canvas").is_empty());
        let slider = find(&closed, acting("strength"))[0];
        assert_eq!(
            slider.get("value"),
            Some(Strength::DEFAULT.input_value().as_str())
        );
        assert_eq!(
            slider.get("aria-valuetext"),
            Some(Strength::DEFAULT.value_text(&EN).as_str())
        );
        // "Only the painted part changes" waits for a painted part.
        assert_eq!(
            find(&closed, |el| el.text.as_deref() == Some(EN.painted_part_changes))[0].get("class"),
            Some("hint hidden")
        );

        let open = picker(
            &EN,
            Picker {
                painting_open: true,
                ..state
            },
        );
        let canvas = find(&open, |el| el.tag == "canvas")[0];
        assert_eq!(
            (canvas.get("id"), canvas.get("width"), canvas.get("height")),
            (Some(PAINTING_CANVAS_ID), Some("1024"), Some("768"))
        );
        let checked: Vec<_> = find(&open, acting("brush"))
            .iter()
            .map(|radio| radio.get("checked").is_some())
            .collect();
        assert_eq!(checked, [false, true, false]);
        assert_eq!(find(&open, acting("undo"))[0].get("disabled"), Some(""));

        painting.begin(crate::paint::Point { x: 10.0, y: 10.0 });
        painting.end();
        let painted = picker(
            &EN,
            Picker {
                source: Some(&picture),
                painting: Some(Painted::of(&painting)),
                painting_open: true,
                ..empty()
            },
        );
        assert_eq!(find(&painted, acting("undo"))[0].get("disabled"), None);
        assert_eq!(
            find(&painted, |el| el.text.as_deref() == Some(EN.painted_part_changes))[0].get("class"),
            Some("hint")
        );
    }

    #[test]
    fn events_read_as_acts_and_nothing_else() {
        let read = |kind, act, arg, value| Act::read(&Acted::of(kind, act, arg, value));
        // A drop anywhere on the picker counts, not only on an element with an act.
        assert_eq!(read("dragover", "", "", ""), Some(Act::DragOver));
        assert_eq!(read("drop", "remove", "", ""), Some(Act::Drop));
        assert_eq!(read("change", "choose", "", ""), Some(Act::Choose));
        assert_eq!(read("change", "brush", "2", "on"), Some(Act::Brush(Brush::Large)));
        assert_eq!(read("change", "brush", "3", "on"), None);
        assert_eq!(
            read("input", "strength", "", "0.6"),
            Some(Act::Strength(Strength::from_value(0.6)))
        );
        assert_eq!(read("input", "strength", "", "much"), None);
        assert_eq!(read("pointermove", "paint", "", ""), Some(Act::PaintMove));
        assert_eq!(read("lostpointercapture", "paint", "", ""), Some(Act::PaintEnd));
        // Moving over the picture's tools paints nothing; a click on the canvas is not a stroke.
        assert_eq!(read("pointermove", "undo", "", ""), None);
        assert_eq!(read("click", "paint", "", ""), None);
        assert_eq!(read("click", "", "", ""), None);
    }
}
