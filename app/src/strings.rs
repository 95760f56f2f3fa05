//! The visible English words of the gallery's search, stars and full-screen viewer, in one place (for
//! the translation catalogue).

/// The search box's label and placeholder.
pub const SEARCH_LABEL: &str = "Search the history";
pub const SEARCH_PLACEHOLDER: &str = "Search prompts or a seed";
/// The filter beside it.
pub const STARRED_FILTER: &str = "Starred";
/// The gallery when a search or the filter finds nothing.
pub const NOTHING_FOUND: &str = "No image matches.";
/// A thumbnail's button: opens the viewer.
pub fn show_image(prompt: &str) -> String {
    format!("Show image: {prompt}")
}
/// The star button, by what pressing it does.
pub const STAR: &str = "Star";
pub const UNSTAR: &str = "Unstar";
/// The viewer's name for assistive technology.
pub const VIEWER: &str = "Image viewer";
pub const CLOSE: &str = "Close";
pub const PREVIOUS: &str = "Previous image";
pub const NEXT: &str = "Next image";
pub const COPY_PROMPT: &str = "Copy prompt";
pub const COPIED: &str = "Copied";
pub const COPY_FAILED: &str = "Could not copy";
pub const REUSE: &str = "Reuse";
pub const DOWNLOAD: &str = "Download";
pub const DELETE: &str = "Delete";
pub const CONFIRM_DELETE: &str = "Delete this image?";
pub const YES_DELETE: &str = "Yes, delete";
pub const KEEP: &str = "Keep";
/// The facts' names.
pub const SEED: &str = "Seed";
pub const SIZE: &str = "Size";
pub const TIME: &str = "Time";
pub const BACKEND: &str = "Made on";
/// "3 of 24": where the viewer stands in the loaded gallery.
pub fn position(at: usize, of: usize) -> String {
    format!("{at} of {of}")
}
