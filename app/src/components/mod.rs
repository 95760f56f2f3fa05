//! The parts of the studio page. They render [`crate::studio::Studio`]'s signals and call its actions;
//! the decisions are made in the plain types.
//!
//! The larger components end in [`erase`]: on the gateway their view types are erased into `AnyView`,
//! which keeps the page's type shallow enough for the compiler's query depth limit there; in the
//! browser they keep their concrete types, because every `AnyView` carries its own copy of the
//! asynchronous hydration code (about a third of the bundle when every component was one).
//!
//! The parts that only work with the bundle (the picture to start from, LoRAs and styles) are not
//! rendered by the gateway: they are drawn as plain elements into an empty element once the page is
//! hydrated ([`mount_plain`]), at a fraction of the bundle bytes of views.

pub mod delete_button;
pub mod gallery;
pub mod image_card;
pub mod progress;
pub mod prompt_form;
pub mod source_picker;
pub mod stage;
pub mod status_light;
pub mod styles;
pub mod viewer;

use leptos::prelude::*;

use crate::browser;
use crate::plain::{Acted, El};

/// Draws a part made of plain elements into the empty element `root_id`: `build` again whenever a
/// signal it reads changes, patched into the page in place (`browser::draw`), and every event of
/// `kinds` inside it passed to `act`. Called once, after hydration; the part lives as long as the page.
pub fn mount_plain(
    root_id: &'static str,
    kinds: &[&str],
    build: impl Fn() -> Vec<El> + 'static,
    act: impl Fn(&leptos::ev::Event, Acted) + 'static,
) {
    let drawn = StoredValue::new(Vec::new());
    Effect::new(move |_| {
        let tree = build();
        drawn.update_value(|drawn| {
            browser::draw(root_id, drawn, &tree);
            *drawn = tree;
        });
    });
    browser::on_acts(root_id, kinds, act);
}

/// A component's view as the gateway renders it: type-erased.
#[cfg(feature = "ssr")]
pub fn erase(view: impl IntoView + 'static) -> AnyView {
    view.into_any()
}

/// A component's view as the browser hydrates it: as it is.
#[cfg(not(feature = "ssr"))]
pub fn erase<V: IntoView>(view: V) -> V {
    view
}
