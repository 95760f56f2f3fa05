//! The history gallery as plain data: the pages loaded so far from `GET /api/history`, newest first,
//! for the search text and the starred filter in force (both also kept in the page's URL, so a reload
//! keeps them), and which image the full-screen viewer shows.
//!
//! Pages can overlap (an image finished between two loads shifts everything by one), so items are
//! keyed by id and never shown twice.

use crate::api::{DEFAULT_HISTORY_LIMIT, HistoryItem, HistoryPage, paths};

/// What the gallery shows: images whose prompt holds the words of `query` (or whose seed it is), and
/// only starred ones when `starred_only`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GalleryFilter {
    pub query: String,
    pub starred_only: bool,
}

/// The page URL's query parameters of the gallery.
pub const QUERY_PARAM: &str = "q";
pub const STARRED_PARAM: &str = "starred";
/// The image the viewer shows (a history entry of its own, so the back button closes it).
pub const VIEW_PARAM: &str = "view";

impl GalleryFilter {
    /// The query string (`?q=...&starred=true`, or empty) of the gallery's API calls and of the page's
    /// own URL.
    pub fn query_string(&self) -> String {
        let mut parts = Vec::new();
        let query = self.query.trim();
        if !query.is_empty() {
            parts.push(format!("{QUERY_PARAM}={}", encode_query_value(query)));
        }
        if self.starred_only {
            parts.push(format!("{STARRED_PARAM}=true"));
        }
        parts.join("&")
    }
}

/// The page's URL state: the filter and the image open in the viewer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageState {
    pub filter: GalleryFilter,
    pub viewing: Option<String>,
}

impl PageState {
    /// Reads a URL's query string (`location.search`, with or without its `?`).
    pub fn from_query(search: &str) -> PageState {
        let mut state = PageState::default();
        for pair in search.trim_start_matches('?').split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode_query_value(value);
            match key {
                QUERY_PARAM => state.filter.query = value,
                STARRED_PARAM => state.filter.starred_only = value == "true",
                VIEW_PARAM if !value.is_empty() => state.viewing = Some(value),
                _ => {}
            }
        }
        state
    }

    /// The page URL for this state (`/` plus the query string).
    pub fn url(&self) -> String {
        let mut query = self.filter.query_string();
        if let Some(id) = &self.viewing {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&format!("{VIEW_PARAM}={}", encode_query_value(id)));
        }
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }
}

/// The loaded part of the history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gallery {
    /// Newest first.
    pub items: Vec<HistoryItem>,
    /// Where the next (older) page starts; `None` before the first load and after the last page.
    next_before: Option<String>,
    /// True once a first page arrived.
    loaded: bool,
    filter: GalleryFilter,
    /// Older pages loaded because the end of the gallery came into view, since the filter was set or
    /// "Load more" was last pressed.
    pages_by_scroll: u8,
}

/// How many older pages scrolling loads by itself before "Load more" must be pressed: enough to fill
/// any screen and to scroll through a good while, few enough that the page's foot (with "Pair a
/// phone") can be reached in a gallery of thousands.
pub const PAGES_BY_SCROLL: u8 = 3;

impl Gallery {
    /// The filter in force.
    pub fn filter(&self) -> &GalleryFilter {
        &self.filter
    }

    /// Starts over with another filter: nothing loaded, the first page next. False when it is the
    /// same filter (nothing to do).
    pub fn set_filter(&mut self, filter: GalleryFilter) -> bool {
        if filter == self.filter {
            return false;
        }
        *self = Gallery {
            filter,
            ..Gallery::default()
        };
        true
    }

    /// Records a star; under the starred filter an unstarred image leaves the gallery.
    pub fn set_starred(&mut self, id: &str, starred: bool) {
        for item in &mut self.items {
            if item.id == id {
                item.starred = starred;
            }
        }
        if self.filter.starred_only && !starred {
            self.remove(id);
        }
    }

    /// The id of the image `step` places after (positive: older) or before `id`, in the gallery as
    /// filtered; `None` past either end.
    pub fn neighbour(&self, id: &str, step: isize) -> Option<&str> {
        let at = self.items.iter().position(|item| item.id == id)?;
        let to = at.checked_add_signed(step)?;
        self.items.get(to).map(|item| item.id.as_str())
    }

    /// Where `id` stands: (position from 1, how many are loaded).
    pub fn position(&self, id: &str) -> Option<(usize, usize)> {
        let at = self.items.iter().position(|item| item.id == id)?;
        Some((at + 1, self.items.len()))
    }

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

    /// Whether the end of the gallery coming into view loads the next page: after the first page, while
    /// older ones remain, [`PAGES_BY_SCROLL`] times before the button must be pressed again.
    pub fn loads_on_scroll(&self) -> bool {
        self.loaded && self.next_before.is_some() && self.pages_by_scroll < PAGES_BY_SCROLL
    }

    /// Counts a page that scrolling asked for.
    pub fn count_page_by_scroll(&mut self) {
        self.pages_by_scroll = self.pages_by_scroll.saturating_add(1);
    }

    /// "Load more" was pressed: scrolling loads by itself again.
    pub fn more_asked(&mut self) {
        self.pages_by_scroll = 0;
    }

    /// The URL of the next page to load, `None` at the end.
    pub fn next_page_url(&self) -> Option<String> {
        if !self.loaded {
            return Some(first_page_url(&self.filter));
        }
        self.next_before.as_deref().map(|before| {
            format!(
                "{}&before={}",
                first_page_url(&self.filter),
                encode_query_value(before)
            )
        })
    }

    fn contains(&self, id: &str) -> bool {
        self.items.iter().any(|item| item.id == id)
    }
}

/// The URL of the newest page under `filter`.
pub fn first_page_url(filter: &GalleryFilter) -> String {
    let query = filter.query_string();
    if query.is_empty() {
        format!("{}?limit={DEFAULT_HISTORY_LIMIT}", paths::HISTORY)
    } else {
        format!("{}?limit={DEFAULT_HISTORY_LIMIT}&{query}", paths::HISTORY)
    }
}

/// Undoes [`encode_query_value`] (and `+` for a space, as forms write it); bytes that do not make
/// UTF-8 become replacement characters.
fn decode_query_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let hex = |at: usize| bytes.get(at).and_then(|byte| char::from(*byte).to_digit(16));
                match (hex(index + 1), hex(index + 2)) {
                    (Some(high), Some(low)) => {
                        decoded.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                        index += 2;
                    }
                    _ => decoded.push(b'%'),
                }
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
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
            source: None,
            loras: Vec::new(),
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
    fn scrolling_loads_a_few_pages_then_waits_for_the_button() {
        let mut gallery = Gallery::default();
        // The first page comes with the page, not with scrolling.
        assert!(!gallery.loads_on_scroll());
        gallery.append_page(page(&["z"], Some("z")));
        for n in 0..PAGES_BY_SCROLL {
            assert!(gallery.loads_on_scroll(), "page {n} by scroll");
            gallery.count_page_by_scroll();
            gallery.append_page(page(&[&format!("y{n}")], Some("y")));
        }
        assert!(!gallery.loads_on_scroll());
        assert!(gallery.has_more(), "the button still offers the rest");
        gallery.more_asked();
        assert!(gallery.loads_on_scroll());
        // Another filter starts the count over; the last page ends it.
        gallery.count_page_by_scroll();
        gallery.set_filter(GalleryFilter {
            query: "fox".to_owned(),
            starred_only: false,
        });
        gallery.append_page(page(&["f"], Some("f")));
        for _ in 0..PAGES_BY_SCROLL {
            assert!(gallery.loads_on_scroll());
            gallery.count_page_by_scroll();
        }
        gallery.more_asked();
        gallery.append_page(page(&["e"], None));
        assert!(!gallery.loads_on_scroll());
    }

    #[test]
    fn a_filter_goes_into_the_api_and_page_urls_and_back() {
        let mut gallery = Gallery::default();
        gallery.append_page(page(&["b", "a"], Some("a")));
        let filter = GalleryFilter {
            query: " 红狐狸 & fox ".to_owned(),
            starred_only: true,
        };
        assert!(gallery.set_filter(filter.clone()));
        assert!(!gallery.set_filter(filter.clone()));
        assert!(gallery.items.is_empty() && !gallery.is_loaded());
        assert_eq!(
            gallery.next_page_url().as_deref(),
            Some("/api/history?limit=24&q=%E7%BA%A2%E7%8B%90%E7%8B%B8%20%26%20fox&starred=true")
        );
        gallery.append_page(page(&["d"], Some("d")));
        assert_eq!(
            gallery.next_page_url().as_deref(),
            Some("/api/history?limit=24&q=%E7%BA%A2%E7%8B%90%E7%8B%B8%20%26%20fox&starred=true&before=d")
        );
        let state = PageState {
            filter: GalleryFilter {
                query: "红狐狸 & fox".to_owned(),
                starred_only: true,
            },
            viewing: Some("d".to_owned()),
        };
        assert_eq!(PageState::from_query(&state.url()[1..]), state);
        assert_eq!(
            PageState::from_query("?q=red+fox&starred=yes&x=1"),
            PageState {
                filter: GalleryFilter {
                    query: "red fox".to_owned(),
                    starred_only: false,
                },
                viewing: None,
            }
        );
        assert_eq!(PageState::from_query("q=%zz%4").filter.query, "%zz%4");
        assert_eq!(PageState::default().url(), "/");
    }

    #[test]
    fn the_viewer_moves_through_the_gallery_as_filtered() {
        let mut gallery = Gallery::default();
        gallery.append_page(page(&["c", "b", "a"], None));
        assert_eq!(gallery.neighbour("b", 1), Some("a"));
        assert_eq!(gallery.neighbour("b", -1), Some("c"));
        assert_eq!(gallery.neighbour("a", 1), None);
        assert_eq!(gallery.neighbour("c", -1), None);
        assert_eq!(gallery.neighbour("x", 1), None);
        assert_eq!(gallery.position("b"), Some((2, 3)));
        gallery.set_starred("b", true);
        assert!(gallery.get("b").unwrap().starred);
        gallery.set_filter(GalleryFilter {
            query: String::new(),
            starred_only: true,
        });
        gallery.append_page(page(&["c", "b"], None));
        gallery.set_starred("c", false);
        assert_eq!(ids(&gallery), ["b"]);
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
