//! The few browser facilities the studio uses (fetch, EventSource, localStorage, the clock, page
//! visibility, scrolling into view, files, the painting canvas, and drawing plain elements), behind one
//! small façade.
//!
//! The components are compiled for the server too, where none of this exists; there the same functions
//! do nothing, which is right because the server only renders and never runs event handlers or effects.

use crate::api::JobEvent;
use crate::client::ClientError;
use crate::paint::{MaskPainting, Point, ScreenRect};
use crate::plain::{Acted, El};

pub use platform::*;

/// What became of a job stream's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Connected and receiving.
    Open,
    /// Dropped; the browser is reconnecting with `Last-Event-ID` on its own.
    Reconnecting,
    /// Given up by the browser (the gateway refused the stream): the caller must resynchronise.
    Closed,
}

#[cfg(feature = "hydrate")]
mod platform {
    use std::cell::RefCell;

    use wasm_bindgen::JsCast as _;
    use wasm_bindgen::prelude::Closure;
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{EventSource, MessageEvent, Request, RequestInit, Response};

    use super::{Acted, ClientError, El, JobEvent, MaskPainting, Point, ScreenRect, StreamState};
    use crate::job::decode_event;

    /// The SSE event names of a job stream, one listener each.
    const JOB_EVENT_NAMES: [&str; 8] = [
        "queued",
        "running",
        "retrying",
        "progress",
        "preview",
        "completed",
        "failed",
        "cancelled",
    ];

    /// Sends a request and returns the status and body text. Only a missing answer is an error here.
    pub async fn fetch_text(
        method: &str,
        url: &str,
        body: Option<String>,
    ) -> Result<(u16, String), ClientError> {
        let init = RequestInit::new();
        init.set_method(method);
        let headers = web_sys::Headers::new().map_err(|_| ClientError::Unexpected)?;
        headers
            .set("Accept", "application/json")
            .map_err(|_| ClientError::Unexpected)?;
        if let Some(body) = body {
            headers
                .set("Content-Type", "application/json")
                .map_err(|_| ClientError::Unexpected)?;
            init.set_body(&wasm_bindgen::JsValue::from_str(&body));
        }
        init.set_headers(&headers);
        let response = send(url, &init).await?;
        let text = response.text().map_err(|_| ClientError::Network)?;
        let text = JsFuture::from(text).await.map_err(|_| ClientError::Network)?;
        Ok((response.status(), text.as_string().unwrap_or_default()))
    }

    /// An open `EventSource` on a job; closed when dropped.
    pub struct JobStream {
        source: EventSource,
        // The listeners live as long as the stream; JavaScript calls them until `close`.
        _listeners: Vec<Closure<dyn FnMut(MessageEvent)>>,
        _on_open: Closure<dyn FnMut(web_sys::Event)>,
        _on_error: Closure<dyn FnMut(web_sys::Event)>,
    }

    impl Drop for JobStream {
        fn drop(&mut self) {
            self.source.close();
        }
    }

    thread_local! {
        // One job is watched at a time; replacing it closes the previous stream.
        static WATCHED: RefCell<Option<JobStream>> = const { RefCell::new(None) };
    }

    /// Watches a job's events at `url`, replacing any stream watched before. The browser reconnects a
    /// dropped stream itself, sending `Last-Event-ID`, so the gateway resends exactly what was missed.
    pub fn watch_job(
        url: &str,
        on_event: impl Fn(JobEvent) + 'static,
        on_state: impl Fn(StreamState) + 'static,
    ) {
        stop_watching();
        let Ok(source) = EventSource::new(url) else {
            on_state(StreamState::Closed);
            return;
        };
        let on_event = std::rc::Rc::new(on_event);
        let mut listeners = Vec::with_capacity(JOB_EVENT_NAMES.len());
        for name in JOB_EVENT_NAMES {
            let on_event = on_event.clone();
            let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
                let data = message.data().as_string().unwrap_or_default();
                match decode_event(name, &data) {
                    Ok(event) => on_event(event),
                    Err(error) => leptos::logging::warn!("ignored an unreadable {name} event: {error}"),
                }
            });
            if source
                .add_event_listener_with_callback(name, listener.as_ref().unchecked_ref())
                .is_ok()
            {
                listeners.push(listener);
            }
        }
        let on_state = std::rc::Rc::new(on_state);
        let on_open = {
            let on_state = on_state.clone();
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_| on_state(StreamState::Open))
        };
        let on_error = {
            let source = source.clone();
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
                // CONNECTING means the browser retries by itself; CLOSED means it gave up.
                if source.ready_state() == EventSource::CLOSED {
                    on_state(StreamState::Closed);
                } else {
                    on_state(StreamState::Reconnecting);
                }
            })
        };
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let stream = JobStream {
            source,
            _listeners: listeners,
            _on_open: on_open,
            _on_error: on_error,
        };
        WATCHED.with(|watched| *watched.borrow_mut() = Some(stream));
    }

    /// Closes the watched stream, if any.
    pub fn stop_watching() {
        // Taken out before dropping, so the drop cannot run inside the borrow.
        let previous = WATCHED.with(|watched| watched.borrow_mut().take());
        drop(previous);
    }

    /// True while a job stream is open or reconnecting.
    pub fn is_watching() -> bool {
        WATCHED.with(|watched| {
            watched
                .borrow()
                .as_ref()
                .is_some_and(|stream| stream.source.ready_state() != EventSource::CLOSED)
        })
    }

    /// Milliseconds since the Unix epoch, by the browser's clock.
    pub fn now_ms() -> u64 {
        js_sys::Date::now().max(0.0) as u64
    }

    /// A random number in [0, 1).
    pub fn random_unit() -> f64 {
        js_sys::Math::random()
    }

    /// The path of the page's address (`/` for the studio).
    pub fn path() -> String {
        web_sys::window()
            .and_then(|window| window.location().pathname().ok())
            .unwrap_or_default()
    }

    /// The language the gateway rendered the page in (`<html lang>`), so hydration uses the same words.
    pub fn document_lang() -> crate::i18n::Lang {
        web_sys::window()
            .and_then(|window| window.document())
            .and_then(|document| document.document_element())
            .and_then(|root| root.get_attribute("lang"))
            .and_then(|tag| crate::i18n::Lang::from_tag(&tag))
            .unwrap_or_default()
    }

    fn local_storage() -> Option<web_sys::Storage> {
        web_sys::window()?.local_storage().ok().flatten()
    }

    /// A value saved in `localStorage` (absent when storage is off, as in some private modes).
    pub fn load(key: &str) -> Option<String> {
        local_storage()?.get_item(key).ok().flatten()
    }

    /// Saves a value in `localStorage`; best effort.
    pub fn save(key: &str, value: &str) {
        if let Some(storage) = local_storage() {
            // Storage may be full or off; remembering is a convenience, never required.
            let _ = storage.set_item(key, value);
        }
    }

    /// Forgets a value saved in `localStorage`.
    pub fn forget(key: &str) {
        if let Some(storage) = local_storage() {
            let _ = storage.remove_item(key);
        }
    }

    /// Calls `callback` whenever the page becomes visible again or the network comes back: the moments
    /// a phone may have dropped a stream while its screen was locked.
    pub fn on_page_resumed(callback: impl Fn() + 'static) {
        let Some(window) = web_sys::window() else { return };
        let callback = std::rc::Rc::new(callback);
        if let Some(document) = window.document() {
            let callback = callback.clone();
            let document_for_check = document.clone();
            let listener = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
                if document_for_check.visibility_state() == web_sys::VisibilityState::Visible {
                    callback();
                }
            });
            if document
                .add_event_listener_with_callback("visibilitychange", listener.as_ref().unchecked_ref())
                .is_ok()
            {
                // The listener lives as long as the page.
                listener.forget();
            }
        }
        let listener = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| callback());
        if window
            .add_event_listener_with_callback("online", listener.as_ref().unchecked_ref())
            .is_ok()
        {
            listener.forget();
        }
    }

    /// Leaves the studio for another page of the gateway (such as its sign-in page).
    pub fn go_to(url: &str) {
        if let Some(window) = web_sys::window() {
            // If even navigating fails there is nothing better to do than stay.
            let _ = window.location().assign(url);
        }
    }

    /// Scrolls the element with this id into view, gently.
    pub fn scroll_into_view(element_id: &str) {
        let element = web_sys::window()
            .and_then(|window| window.document())
            .and_then(|document| document.get_element_by_id(element_id));
        if let Some(element) = element {
            let options = web_sys::ScrollIntoViewOptions::new();
            options.set_behavior(web_sys::ScrollBehavior::Smooth);
            options.set_block(web_sys::ScrollLogicalPosition::Nearest);
            element.scroll_into_view_with_scroll_into_view_options(&options);
        }
    }

    /// The page URL's query string (`?q=...`), empty when it has none.
    pub fn location_search() -> String {
        web_sys::window()
            .and_then(|window| window.location().search().ok())
            .unwrap_or_default()
    }

    /// Adds a history entry for `url` (same page): the back button then comes back here.
    pub fn push_url(url: &str) {
        if let Some(history) = web_sys::window().and_then(|window| window.history().ok()) {
            let _ = history.push_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(url));
        }
    }

    /// Changes the current history entry's URL without adding one.
    pub fn replace_url(url: &str) {
        if let Some(history) = web_sys::window().and_then(|window| window.history().ok()) {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(url));
        }
    }

    /// The back button, pressed by the page.
    pub fn history_back() {
        if let Some(history) = web_sys::window().and_then(|window| window.history().ok()) {
            let _ = history.back();
        }
    }

    /// Calls `callback` when the person moves through the page's history (back, forward).
    pub fn on_popstate(callback: impl Fn() + 'static) {
        let Some(window) = web_sys::window() else { return };
        let listener = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| callback());
        if window
            .add_event_listener_with_callback("popstate", listener.as_ref().unchecked_ref())
            .is_ok()
        {
            listener.forget();
        }
    }

    /// Calls `callback` with the key of every key press on the page (not while typing in a field);
    /// when it returns true the browser's own action is prevented.
    pub fn on_key(callback: impl Fn(&str) -> bool + 'static) {
        let Some(window) = web_sys::window() else { return };
        let listener =
            Closure::<dyn FnMut(web_sys::KeyboardEvent)>::new(move |event: web_sys::KeyboardEvent| {
                let typing = event
                    .target()
                    .and_then(|target| target.dyn_into::<web_sys::Element>().ok())
                    .is_some_and(|element| matches!(element.tag_name().as_str(), "INPUT" | "TEXTAREA"));
                if !typing && callback(&event.key()) {
                    event.prevent_default();
                }
            });
        if window
            .add_event_listener_with_callback("keydown", listener.as_ref().unchecked_ref())
            .is_ok()
        {
            listener.forget();
        }
    }

    /// Horizontal swipes on `element`: `on_swipe(1)` for a swipe to the left (the next image),
    /// `on_swipe(-1)` to the right. A mostly vertical move is a scroll, not a swipe.
    pub fn on_swipe(element: &web_sys::Element, on_swipe: impl Fn(isize) + 'static) {
        let start = std::rc::Rc::new(std::cell::Cell::new(None::<(i32, i32)>));
        let first_touch = |event: &web_sys::TouchEvent| {
            event
                .changed_touches()
                .get(0)
                .map(|touch| (touch.client_x(), touch.client_y()))
        };
        let started = {
            let start = start.clone();
            Closure::<dyn FnMut(web_sys::TouchEvent)>::new(move |event: web_sys::TouchEvent| {
                start.set(first_touch(&event));
            })
        };
        let ended = Closure::<dyn FnMut(web_sys::TouchEvent)>::new(move |event: web_sys::TouchEvent| {
            if let (Some((x0, y0)), Some((x1, y1))) = (start.take(), first_touch(&event)) {
                let (dx, dy) = (x1 - x0, y1 - y0);
                if dx.abs() >= 40 && dx.abs() > dy.abs() {
                    on_swipe(if dx < 0 { 1 } else { -1 });
                }
            }
        });
        if element
            .add_event_listener_with_callback("touchstart", started.as_ref().unchecked_ref())
            .is_ok()
            && element
                .add_event_listener_with_callback("touchend", ended.as_ref().unchecked_ref())
                .is_ok()
        {
            // The viewer's element lives as long as the page.
            started.forget();
            ended.forget();
        }
    }

    /// Puts `text` on the clipboard; false when the browser refused (an insecure origin, no
    /// permission).
    pub async fn copy_text(text: &str) -> bool {
        use js_sys::{Function, Promise, Reflect};
        let Some(window) = web_sys::window() else {
            return false;
        };
        let write = || -> Option<Promise> {
            let navigator = Reflect::get(&window, &"navigator".into()).ok()?;
            let clipboard = Reflect::get(&navigator, &"clipboard".into()).ok()?;
            if clipboard.is_undefined() {
                return None;
            }
            let write_text = Reflect::get(&clipboard, &"writeText".into())
                .ok()?
                .dyn_into::<Function>()
                .ok()?;
            write_text
                .call1(&clipboard, &text.into())
                .ok()?
                .dyn_into::<Promise>()
                .ok()
        };
        match write() {
            Some(promise) => JsFuture::from(promise).await.is_ok(),
            None => false,
        }
    }

    /// The element with this id.
    pub fn element_by_id(id: &str) -> Option<web_sys::Element> {
        web_sys::window()?.document()?.get_element_by_id(id)
    }

    /// Brings the children of the element with id `root_id` from the tree `old` (what was drawn last)
    /// to `new`, in place: an element whose tag is unchanged keeps its node (a slider being dragged
    /// keeps its focus), only the attributes and text that changed are written, and a `value` attribute
    /// also sets the live property when it differs.
    pub fn draw(root_id: &str, old: &[El], new: &[El]) {
        let Some(root) = element_by_id(root_id) else {
            return;
        };
        let Some(document) = root.owner_document() else {
            return;
        };
        draw_children(&document, &root, old, new);
    }

    fn draw_children(document: &web_sys::Document, parent: &web_sys::Element, old: &[El], new: &[El]) {
        let nodes = parent.children();
        for (index, next) in new.iter().enumerate() {
            let current = nodes.item(index as u32);
            match (old.get(index), current) {
                (Some(before), Some(element)) if before.tag == next.tag => {
                    draw_element(document, &element, before, next);
                }
                (_, current) => {
                    let Some(fresh) = create_element(document, next) else {
                        continue;
                    };
                    let _ = match current {
                        Some(element) => parent.replace_child(&fresh, &element),
                        None => parent.append_child(&fresh),
                    };
                }
            }
        }
        while parent.child_element_count() as usize > new.len() {
            let Some(last) = parent.last_element_child() else {
                break;
            };
            last.remove();
        }
    }

    fn draw_element(document: &web_sys::Document, element: &web_sys::Element, before: &El, next: &El) {
        for (name, value) in &next.attrs {
            if before.get(name) != Some(value.as_str()) {
                let _ = element.set_attribute(name, value);
            }
        }
        for (name, _) in &before.attrs {
            if next.get(name).is_none() {
                let _ = element.remove_attribute(name);
            }
        }
        match &next.text {
            Some(text) if before.text.as_ref() != Some(text) => element.set_text_content(Some(text)),
            Some(_) => {}
            None => {
                let old = if before.text.is_some() {
                    element.set_text_content(None);
                    &[][..]
                } else {
                    &before.children[..]
                };
                draw_children(document, element, old, &next.children);
            }
        }
        sync_live(element, next);
    }

    fn create_element(document: &web_sys::Document, el: &El) -> Option<web_sys::Element> {
        let element = document.create_element(el.tag).ok()?;
        for (name, value) in &el.attrs {
            let _ = element.set_attribute(name, value);
        }
        if let Some(text) = &el.text {
            element.set_text_content(Some(text));
        }
        for child in &el.children {
            if let Some(child) = create_element(document, child) {
                let _ = element.append_child(&child);
            }
        }
        sync_live(&element, el);
        Some(element)
    }

    /// The live properties that an attribute sets only at first: a control's `value` (after its
    /// children, as a list's value names one of its options) and a radio's `checked`.
    fn sync_live(element: &web_sys::Element, el: &El) {
        if let Some(value) = el.get("value") {
            set_live(element, "value", wasm_bindgen::JsValue::from_str(value));
        }
        if el.get("type") == Some("radio") {
            set_live(
                element,
                "checked",
                wasm_bindgen::JsValue::from_bool(el.get("checked").is_some()),
            );
        }
    }

    /// A property set only when it differs (setting `value` moves the caret of a text field and would
    /// fight a slider being dragged).
    fn set_live(element: &web_sys::Element, name: &str, value: wasm_bindgen::JsValue) {
        let key = wasm_bindgen::JsValue::from_str(name);
        if js_sys::Reflect::get(element, &key).ok().as_ref() != Some(&value) {
            let _ = js_sys::Reflect::set(element, &key, &value);
        }
    }

    /// Calls `callback` with every event of these `kinds` inside the element with id `root_id`: the
    /// event, and what it means to the part ([`Acted`]: read from the element with a `data-act`
    /// around its target, see `El::act`).
    pub fn on_acts(root_id: &str, kinds: &[&str], callback: impl Fn(&web_sys::Event, Acted) + 'static) {
        let Some(root) = element_by_id(root_id) else {
            return;
        };
        let callback = std::rc::Rc::new(callback);
        for kind in kinds {
            let callback = callback.clone();
            let listener = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
                let actor = event
                    .target()
                    .and_then(|target| target.dyn_into::<web_sys::Element>().ok())
                    .and_then(|target| target.closest("[data-act]").ok().flatten());
                let mut acted = Acted {
                    kind: event.type_(),
                    ..Acted::default()
                };
                if let Some(actor) = actor {
                    let attribute = |name| actor.get_attribute(name).unwrap_or_default();
                    acted.act = attribute("data-act");
                    acted.arg = attribute("data-arg");
                    acted.value = js_sys::Reflect::get(&actor, &wasm_bindgen::JsValue::from_str("value"))
                        .ok()
                        .and_then(|value| value.as_string())
                        .unwrap_or_default();
                }
                callback(&event, acted);
            });
            if root
                .add_event_listener_with_callback(kind, listener.as_ref().unchecked_ref())
                .is_ok()
            {
                // The listener lives as long as the page.
                listener.forget();
            }
        }
    }

    /// Calls `callback` before the browser paints next (after the effects that draw the page ran).
    pub fn next_frame(callback: impl FnOnce() + 'static) {
        leptos::prelude::request_animation_frame(callback);
    }

    /// The text in the field with this id (empty when there is none).
    pub fn field_value(id: &str) -> String {
        element_by_id(id)
            .and_then(|element| element.dyn_into::<web_sys::HtmlInputElement>().ok())
            .map(|input| input.value())
            .unwrap_or_default()
    }

    /// Empties the field with this id.
    pub fn clear_field(id: &str) {
        if let Some(input) =
            element_by_id(id).and_then(|element| element.dyn_into::<web_sys::HtmlInputElement>().ok())
        {
            input.set_value("");
        }
    }

    /// A file or other bytes the browser holds: a chosen or dropped file, a pasted image, an image
    /// fetched from the gallery, a painted mask.
    pub type Blob = web_sys::Blob;

    /// Sends `blob` as the raw body of a `POST` to `url` (the gateway sniffs what it is) and returns the
    /// status and body text.
    pub async fn post_blob(url: &str, blob: &Blob) -> Result<(u16, String), ClientError> {
        let init = RequestInit::new();
        init.set_method("POST");
        let headers = web_sys::Headers::new().map_err(|_| ClientError::Unexpected)?;
        headers
            .set("Accept", "application/json")
            .map_err(|_| ClientError::Unexpected)?;
        // A file the browser could not type (an unknown extension) goes as plain bytes: the gateway
        // reads what it is from the bytes themselves, and refuses a body without a file's type.
        let kind = blob.type_();
        let kind = if kind.is_empty() {
            "application/octet-stream".to_owned()
        } else {
            kind
        };
        headers
            .set("Content-Type", &kind)
            .map_err(|_| ClientError::Unexpected)?;
        init.set_headers(&headers);
        init.set_body(blob);
        let response = send(url, &init).await?;
        let text = response.text().map_err(|_| ClientError::Network)?;
        let text = JsFuture::from(text).await.map_err(|_| ClientError::Network)?;
        Ok((response.status(), text.as_string().unwrap_or_default()))
    }

    /// The bytes at `url` (an image of the gateway's gallery).
    pub async fn fetch_blob(url: &str) -> Result<Blob, ClientError> {
        let init = RequestInit::new();
        init.set_method("GET");
        let response = send(url, &init).await?;
        if !response.ok() {
            return Err(ClientError::Status(response.status()));
        }
        let blob = response.blob().map_err(|_| ClientError::Network)?;
        JsFuture::from(blob)
            .await
            .map_err(|_| ClientError::Network)?
            .dyn_into()
            .map_err(|_| ClientError::Unexpected)
    }

    async fn send(url: &str, init: &RequestInit) -> Result<Response, ClientError> {
        let window = web_sys::window().ok_or(ClientError::Network)?;
        let request = Request::new_with_str_and_init(url, init).map_err(|_| ClientError::Unexpected)?;
        JsFuture::from(window.fetch_with_request(&request))
            .await
            .map_err(|_| ClientError::Network)?
            .dyn_into()
            .map_err(|_| ClientError::Unexpected)
    }

    /// The first image among `files` (a file input's, a drop's or a paste's).
    fn first_image(files: Option<web_sys::FileList>) -> Option<Blob> {
        let files = files?;
        (0..files.length())
            .filter_map(|index| files.get(index))
            .find(|file| file.type_().starts_with("image/"))
            .map(Into::into)
    }

    /// The image a file input's `change` event chose (the input is emptied, so choosing the same file
    /// again is a change too).
    pub fn chosen_image(event: &web_sys::Event) -> Option<Blob> {
        let input = event.target()?.dyn_into::<web_sys::HtmlInputElement>().ok()?;
        let image = first_image(input.files());
        input.set_value("");
        image
    }

    /// The image dropped on an element, if any; the browser's own handling (opening the file) is
    /// prevented.
    pub fn dropped_image(event: &web_sys::Event) -> Option<Blob> {
        event.prevent_default();
        first_image(event.dyn_ref::<web_sys::DragEvent>()?.data_transfer()?.files())
    }

    /// Lets an element accept drops (a `dragover` that is not prevented refuses them).
    pub fn allow_drop(event: &web_sys::Event) {
        event.prevent_default();
    }

    /// Calls `callback` with the image of every paste on the page that carries one (a copied picture
    /// or file); pasting text goes on as usual.
    pub fn on_paste_image(callback: impl Fn(Blob) + 'static) {
        let Some(window) = web_sys::window() else { return };
        let listener =
            Closure::<dyn FnMut(web_sys::ClipboardEvent)>::new(move |event: web_sys::ClipboardEvent| {
                if let Some(image) = event.clipboard_data().and_then(|data| first_image(data.files())) {
                    event.prevent_default();
                    callback(image);
                }
            });
        if window
            .add_event_listener_with_callback("paste", listener.as_ref().unchecked_ref())
            .is_ok()
        {
            listener.forget();
        }
    }

    /// Where the element with this id is on screen.
    pub fn element_rect(id: &str) -> Option<ScreenRect> {
        let rect = element_by_id(id)?.get_bounding_client_rect();
        Some(ScreenRect {
            left: rect.left(),
            top: rect.top(),
            width: rect.width(),
            height: rect.height(),
        })
    }

    /// The picture pixel under a pointer event on the canvas `canvas_id` that shows a picture of
    /// `width` x `height`.
    pub fn pointer_on(event: &web_sys::Event, canvas_id: &str, width: u32, height: u32) -> Option<Point> {
        let event = event.dyn_ref::<web_sys::PointerEvent>()?;
        element_rect(canvas_id)?.to_picture(
            f64::from(event.client_x()),
            f64::from(event.client_y()),
            width,
            height,
        )
    }

    /// Keeps a pointer's moves coming to the element it went down on, even off its edge.
    pub fn capture_pointer(event: &web_sys::Event) {
        let Some(event) = event.dyn_ref::<web_sys::PointerEvent>() else {
            return;
        };
        if let Some(element) = event
            .target()
            .and_then(|target| target.dyn_into::<web_sys::Element>().ok())
        {
            // Without capture, painting still works while the pointer stays on the canvas.
            let _ = element.set_pointer_capture(event.pointer_id());
        }
    }

    /// The colour strokes are shown in (the canvas itself is drawn half transparent).
    const STROKE_COLOUR: &str = "#ff2d87";

    fn canvas_context(canvas_id: &str) -> Option<web_sys::CanvasRenderingContext2d> {
        let canvas = element_by_id(canvas_id)?
            .dyn_into::<web_sys::HtmlCanvasElement>()
            .ok()?;
        let context = canvas
            .get_context("2d")
            .ok()??
            .dyn_into::<web_sys::CanvasRenderingContext2d>()
            .ok()?;
        context.set_line_cap("round");
        context.set_line_join("round");
        context.set_stroke_style_str(STROKE_COLOUR);
        context.set_fill_style_str(STROKE_COLOUR);
        Some(context)
    }

    fn draw_on(context: &web_sys::CanvasRenderingContext2d, from: Point, to: Point, radius: f32) {
        if from == to {
            context.begin_path();
            let _ = context.arc(
                f64::from(to.x),
                f64::from(to.y),
                f64::from(radius),
                0.0,
                std::f64::consts::TAU,
            );
            context.fill();
        } else {
            context.set_line_width(f64::from(radius) * 2.0);
            context.begin_path();
            context.move_to(f64::from(from.x), f64::from(from.y));
            context.line_to(f64::from(to.x), f64::from(to.y));
            context.stroke();
        }
    }

    /// Draws one new piece of a stroke (a dot when `from == to`) on the canvas `canvas_id`, whose
    /// pixels are the picture's.
    pub fn draw_segment(canvas_id: &str, from: Point, to: Point, radius: f32) {
        if let Some(context) = canvas_context(canvas_id) {
            draw_on(&context, from, to, radius);
        }
    }

    /// Draws the whole painting anew (after undo, clear, or when the canvas appears).
    pub fn draw_painting(canvas_id: &str, painting: &MaskPainting) {
        let Some(context) = canvas_context(canvas_id) else {
            return;
        };
        context.clear_rect(
            0.0,
            0.0,
            f64::from(painting.width()),
            f64::from(painting.height()),
        );
        for stroke in painting.strokes() {
            let mut previous = None;
            for &point in &stroke.points {
                draw_on(&context, previous.unwrap_or(point), point, stroke.radius);
                previous = Some(point);
            }
        }
    }

    /// The painting's mask as a PNG, encoded by the browser's canvas at the picture's size.
    pub async fn mask_png(painting: &MaskPainting) -> Option<Blob> {
        let (width, height) = (painting.width(), painting.height());
        let rgba = painting.mask_rgba();
        let document = web_sys::window()?.document()?;
        let canvas = document
            .create_element("canvas")
            .ok()?
            .dyn_into::<web_sys::HtmlCanvasElement>()
            .ok()?;
        canvas.set_width(width);
        canvas.set_height(height);
        let context = canvas
            .get_context("2d")
            .ok()??
            .dyn_into::<web_sys::CanvasRenderingContext2d>()
            .ok()?;
        let pixels = web_sys::ImageData::new_with_u8_clamped_array_and_sh(
            wasm_bindgen::Clamped(rgba.as_slice()),
            width,
            height,
        )
        .ok()?;
        context.put_image_data(&pixels, 0.0, 0.0).ok()?;
        // `toBlob` answers through a callback: a promise resolved by it.
        let promise = js_sys::Promise::new(&mut |resolve: js_sys::Function, _reject| {
            let resolve_with_blob = resolve.clone();
            let callback = Closure::once_into_js(move |blob: wasm_bindgen::JsValue| {
                let _ = resolve_with_blob.call1(&wasm_bindgen::JsValue::NULL, &blob);
            });
            if canvas
                .to_blob_with_type(callback.unchecked_ref(), "image/png")
                .is_err()
            {
                let _ = resolve.call1(&wasm_bindgen::JsValue::NULL, &wasm_bindgen::JsValue::NULL);
            }
        });
        JsFuture::from(promise).await.ok()?.dyn_into::<Blob>().ok()
    }

    /// An `IntersectionObserver` on one element; disconnected when dropped.
    pub struct VisibilityWatch {
        observer: web_sys::IntersectionObserver,
        _callback: Closure<dyn FnMut(js_sys::Array)>,
    }

    impl Drop for VisibilityWatch {
        fn drop(&mut self) {
            self.observer.disconnect();
        }
    }

    /// Calls `on_visible` each time `element` scrolls into view (or near it): infinite scroll.
    pub fn watch_visibility(
        element: &web_sys::Element,
        on_visible: impl Fn() + 'static,
    ) -> Option<VisibilityWatch> {
        let callback = Closure::<dyn FnMut(js_sys::Array)>::new(move |entries: js_sys::Array| {
            let visible = entries.iter().any(|entry| {
                entry
                    .dyn_into::<web_sys::IntersectionObserverEntry>()
                    .is_ok_and(|entry| entry.is_intersecting())
            });
            if visible {
                on_visible();
            }
        });
        let options = web_sys::IntersectionObserverInit::new();
        // Start loading a little before the end is on screen.
        options.set_root_margin("400px 0px");
        let observer =
            web_sys::IntersectionObserver::new_with_options(callback.as_ref().unchecked_ref(), &options)
                .ok()?;
        observer.observe(element);
        Some(VisibilityWatch {
            observer,
            _callback: callback,
        })
    }
}

#[cfg(not(feature = "hydrate"))]
mod platform {
    //! The server renders and never runs handlers or effects: these keep the components compiling.

    use super::{Acted, ClientError, El, JobEvent, MaskPainting, Point, ScreenRect, StreamState};

    /// No browser, no fetch.
    pub async fn fetch_text(
        _method: &str,
        _url: &str,
        _body: Option<String>,
    ) -> Result<(u16, String), ClientError> {
        Err(ClientError::Network)
    }

    /// No browser, no stream.
    pub fn watch_job(
        _url: &str,
        _on_event: impl Fn(JobEvent) + 'static,
        on_state: impl Fn(StreamState) + 'static,
    ) {
        on_state(StreamState::Closed);
    }

    /// Nothing to stop.
    pub fn stop_watching() {}

    /// Never watching.
    pub fn is_watching() -> bool {
        false
    }

    /// The server's clock.
    pub fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
            })
    }

    /// Not random: only the browser rolls dice.
    pub fn random_unit() -> f64 {
        0.0
    }

    /// No storage.
    pub fn load(_key: &str) -> Option<String> {
        None
    }

    /// No storage.
    pub fn save(_key: &str, _value: &str) {}

    /// No storage.
    pub fn forget(_key: &str) {}

    /// A server page never resumes.
    pub fn on_page_resumed(_callback: impl Fn() + 'static) {}

    /// Nowhere to go.
    pub fn go_to(_url: &str) {}

    /// Nothing to scroll.
    pub fn scroll_into_view(_element_id: &str) {}

    /// Nothing to draw into.
    pub fn draw(_root_id: &str, _old: &[El], _new: &[El]) {}

    /// No events.
    pub fn on_acts(_root_id: &str, _kinds: &[&str], _callback: impl Fn(&leptos::ev::Event, Acted) + 'static) {
    }

    /// No frames.
    pub fn next_frame(_callback: impl FnOnce() + 'static) {}

    /// No fields.
    pub fn field_value(_id: &str) -> String {
        String::new()
    }

    /// No fields.
    pub fn clear_field(_id: &str) {}

    /// No URL.
    pub fn location_search() -> String {
        String::new()
    }

    /// No history.
    pub fn push_url(_url: &str) {}

    /// No history.
    pub fn replace_url(_url: &str) {}

    /// No history.
    pub fn history_back() {}

    /// No history.
    pub fn on_popstate(_callback: impl Fn() + 'static) {}

    /// No keys.
    pub fn on_key(_callback: impl Fn(&str) -> bool + 'static) {}

    /// No clipboard.
    pub async fn copy_text(_text: &str) -> bool {
        false
    }

    /// No browser, no files.
    #[derive(Debug, Clone)]
    pub struct Blob;

    /// No browser, no upload.
    pub async fn post_blob(_url: &str, _blob: &Blob) -> Result<(u16, String), ClientError> {
        Err(ClientError::Network)
    }

    /// No browser, no fetch.
    pub async fn fetch_blob(_url: &str) -> Result<Blob, ClientError> {
        Err(ClientError::Network)
    }

    /// No files.
    pub fn chosen_image(_event: &leptos::ev::Event) -> Option<Blob> {
        None
    }

    /// No files.
    pub fn dropped_image(_event: &leptos::ev::Event) -> Option<Blob> {
        None
    }

    /// No drops.
    pub fn allow_drop(_event: &leptos::ev::Event) {}

    /// No clipboard.
    pub fn on_paste_image(_callback: impl Fn(Blob) + 'static) {}

    /// No screen.
    pub fn element_rect(_id: &str) -> Option<ScreenRect> {
        None
    }

    /// No pointer.
    pub fn pointer_on(
        _event: &leptos::ev::Event,
        _canvas_id: &str,
        _width: u32,
        _height: u32,
    ) -> Option<Point> {
        None
    }

    /// No pointer.
    pub fn capture_pointer(_event: &leptos::ev::Event) {}

    /// No canvas.
    pub fn draw_segment(_canvas_id: &str, _from: Point, _to: Point, _radius: f32) {}

    /// No canvas.
    pub fn draw_painting(_canvas_id: &str, _painting: &MaskPainting) {}

    /// No canvas.
    pub async fn mask_png(_painting: &MaskPainting) -> Option<Blob> {
        None
    }
}
