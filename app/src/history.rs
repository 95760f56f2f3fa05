//! The history gallery as plain data: the pages loaded so far from `GET /api/history`, newest first.
//!
//! Pages can overlap (an image finished between two loads shifts everything by one), so items are
//! keyed by id and never shown twice.

use crate::api::{DEFAULT_HISTORY_LIMIT, HistoryItem, HistoryPage, paths};

/// The loaded part of the history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gallery {
    /// Newest first.
    pub items: Vec<HistoryItem>,
    /// Where the next (older) page starts; `None` before the first load and after the last page.
    next_before: Option<String>,
    /// True once a first page arrived.
    loaded: bool,
}

impl Gallery {
    /// Appends an older page (infinite scroll) and remembers where the next one starts.
    pub fn append_page(&mut self, page: HistoryPage) {
        for item in page.items {
            if !self.contains(&item.id) {
                self.items.push(item);
            }
        }
        self.next_before = page.next_before;
        self.loaded = true;
    }

    /// Puts the newest items of a fresh first page in front (after an image finished). The older
    /// pages already loaded stay; when nothing was loaded yet this is the first page.
    pub fn merge_newest(&mut self, page: HistoryPage) {
        if !self.loaded {
            self.append_page(page);
            return;
        }
        let fresh: Vec<HistoryItem> = page
            .items
            .into_iter()
            .filter(|item| !self.contains(&item.id))
            .collect();
        self.items.splice(0..0, fresh);
    }

    /// Forgets a deleted item.
    pub fn remove(&mut self, id: &str) {
        self.items.retain(|item| item.id != id);
    }

    /// The item with this id, if loaded.
    pub fn get(&self, id: &str) -> Option<&HistoryItem> {
        self.items.iter().find(|item| item.id == id)
    }

    /// True before the first page or while older pages remain.
    pub fn has_more(&self) -> bool {
        !self.loaded || self.next_before.is_some()
    }

    /// True once the first page arrived.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// The URL of the next page to load, `None` at the end.
    pub fn next_page_url(&self) -> Option<String> {
        if !self.loaded {
            return Some(first_page_url());
        }
        self.next_before.as_deref().map(|before| {
            format!(
                "{}?limit={DEFAULT_HISTORY_LIMIT}&before={}",
                paths::HISTORY,
                encode_query_value(before)
            )
        })
    }

    fn contains(&self, id: &str) -> bool {
        self.items.iter().any(|item| item.id == id)
    }
}

/// The URL of the newest page.
pub fn first_page_url() -> String {
    format!("{}?limit={DEFAULT_HISTORY_LIMIT}", paths::HISTORY)
}

/// Percent-encodes everything but unreserved characters. Ids are opaque to the UI, so it does not
/// assume they are URL-safe.
fn encode_query_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Timings;

    fn item(id: &str) -> HistoryItem {
        HistoryItem {
            id: id.to_owned(),
            prompt: format!("prompt {id}"),
            seed: 1,
            width: 1024,
            height: 1024,
            timings: Timings::default(),
            created_at: 0,
            image_url: paths::image(id),
            thumbnail_url: paths::thumbnail(id),
            backend: None,
            starred: false,
        }
    }

    fn page(ids: &[&str], next_before: Option<&str>) -> HistoryPage {
        HistoryPage {
            items: ids.iter().map(|id| item(id)).collect(),
            next_before: next_before.map(str::to_owned),
        }
    }

    fn ids(gallery: &Gallery) -> Vec<&str> {
        gallery.items.iter().map(|item| item.id.as_str()).collect()
    }

    #[test]
    fn pages_append_in_order_until_the_last_one() {
        let mut gallery = Gallery::default();
        assert!(gallery.has_more());
        assert_eq!(gallery.next_page_url().as_deref(), Some("/api/history?limit=24"));
        gallery.append_page(page(&["e", "d", "c"], Some("c")));
        assert_eq!(
            gallery.next_page_url().as_deref(),
            Some("/api/history?limit=24&before=c")
        );
        gallery.append_page(page(&["b", "a"], None));
        assert_eq!(ids(&gallery), ["e", "d", "c", "b", "a"]);
        assert!(!gallery.has_more());
        assert_eq!(gallery.next_page_url(), None);
    }

    #[test]
    fn overlapping_pages_show_each_image_once() {
        let mut gallery = Gallery::default();
        gallery.append_page(page(&["d", "c"], Some("c")));
        gallery.append_page(page(&["c", "b"], None));
        assert_eq!(ids(&gallery), ["d", "c", "b"]);
    }

    #[test]
    fn a_new_image_goes_in_front_of_what_is_loaded() {
        let mut gallery = Gallery::default();
        gallery.append_page(page(&["b", "a"], Some("a")));
        gallery.merge_newest(page(&["d", "c", "b"], Some("b")));
        assert_eq!(ids(&gallery), ["d", "c", "b", "a"]);
        // The scroll position in older pages is kept.
        assert_eq!(
            gallery.next_page_url().as_deref(),
            Some("/api/history?limit=24&before=a")
        );
    }

    #[test]
    fn merging_before_the_first_load_is_the_first_load() {
        let mut gallery = Gallery::default();
        gallery.merge_newest(page(&["b", "a"], None));
        assert!(gallery.is_loaded());
        assert!(!gallery.has_more());
        assert_eq!(ids(&gallery), ["b", "a"]);
    }

    #[test]
    fn deleting_removes_only_that_image() {
        let mut gallery = Gallery::default();
        gallery.append_page(page(&["c", "b", "a"], None));
        gallery.remove("b");
        assert_eq!(ids(&gallery), ["c", "a"]);
        assert!(gallery.get("b").is_none());
        assert_eq!(
            gallery.get("a").map(|item| item.prompt.as_str()),
            Some("prompt a")
        );
    }

    #[test]
    fn ids_are_encoded_in_the_next_page_url() {
        let mut gallery = Gallery::default();
        gallery.append_page(page(&["x"], Some("a b/ü")));
        assert_eq!(
            gallery.next_page_url().as_deref(),
            Some("/api/history?limit=24&before=a%20b%2F%C3%BC")
        );
    }
}
