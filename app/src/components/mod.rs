//! The parts of the studio page. They render [`crate::studio::Studio`]'s signals and call its actions;
//! the decisions are made in the plain types.
//!
//! The larger components return `AnyView`: erasing their view types keeps the page's type shallow
//! enough for the compiler's query depth limit where the gateway renders it.

pub mod gallery;
pub mod image_card;
pub mod progress;
pub mod prompt_form;
pub mod stage;
pub mod status_light;
pub mod viewer;
