//! The language of each request: the browser's remembered choice (the `zimage_lang` cookie), else its
//! `Accept-Language`. The outermost layer puts it in scope for everything the request runs, so an
//! error becomes a sentence in that language wherever it is answered; the page renderer gets it as
//! context; `/language/{tag}` remembers a choice on the device.

use std::time::Duration;

use app::i18n::{LANG_COOKIE, LANGUAGE_PATH};
use axum::Router;
use axum::extract::{Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::access::cookies;
use crate::i18n::{Lang, Text};

tokio::task_local! {
    static LANGUAGE: Lang;
}

/// How long a device remembers its choice (as long as browsers keep a cookie).
const CHOICE_LIFETIME: Duration = Duration::from_secs(400 * 24 * 3600);

/// The language a request asks for.
pub(super) fn of_request(headers: &HeaderMap) -> Lang {
    let cookie_headers = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok());
    let chosen = cookies::find(cookie_headers, LANG_COOKIE);
    let accepted = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok());
    Lang::negotiate(chosen.as_deref(), accepted)
}

/// The outermost layer: runs the request with its language in scope.
pub(super) async fn scope(request: Request, next: Next) -> Response {
    let lang = of_request(request.headers());
    let mut response = LANGUAGE.scope(lang, next.run(request)).await;
    // Answers differ by these headers; caches must not mix them up.
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("accept-language, cookie"));
    response
}

/// The language of the request being answered (English outside a request).
pub(super) fn current() -> Lang {
    LANGUAGE.try_with(|lang| *lang).unwrap_or_default()
}

/// Runs `f` in `lang`, for work a request leaves behind it (the events of a stream it answered with).
pub(super) fn within<T>(lang: Lang, f: impl FnOnce() -> T) -> T {
    LANGUAGE.sync_scope(lang, f)
}

/// The words of the request being answered.
pub(super) fn text() -> &'static Text {
    Text::of(current())
}

/// For the page renderer: the request's language as context, read by the app's `use_lang`.
pub(super) fn provide_for_page() {
    use leptos::prelude::{provide_context, use_context};
    let lang = use_context::<Parts>().map_or_else(Lang::default, |parts| of_request(&parts.headers));
    provide_context(lang);
}

/// `GET /language/{tag}`: remembers the language on this device and goes back to the studio. A plain
/// link, so the switch works before the page is hydrated, and the server's next render is right.
pub(super) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(&format!("{LANGUAGE_PATH}/{{tag}}"), get(choose))
}

async fn choose(Path(tag): Path<String>) -> Response {
    let Some(lang) = Lang::from_tag(&tag) else {
        return Redirect::to("/").into_response();
    };
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookies::set(LANG_COOKIE, lang.tag(), CHOICE_LIFETIME)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
