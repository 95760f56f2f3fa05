//! The parts of the studio page. They render [`crate::studio::Studio`]'s signals and call its actions;
//! the decisions are made in the plain types.
//!
//! The larger components end in [`erase`]: on the gateway their view types are erased into `AnyView`,
//! which keeps the page's type shallow enough for the compiler's query depth limit there; in the
//! browser they keep their concrete types, because every `AnyView` carries its own copy of the
//! asynchronous hydration code (about a third of the bundle when every component was one).

pub mod delete_button;
pub mod gallery;
pub mod image_card;
pub mod painter;
pub mod progress;
pub mod prompt_form;
pub mod source_picker;
pub mod stage;
pub mod status_light;
pub mod styles;
pub mod viewer;

use leptos::prelude::*;

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
