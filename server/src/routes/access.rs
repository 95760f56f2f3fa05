//! The door applied to HTTP: [`door`] is the layer every request passes first (client address, size of
//! the request head, Host, identity and sign-in, same-origin check, security headers), [`limit_streams`]
//! caps the event streams of a client, and [`router`] holds signing in and pairing a phone.
//!
//! The decisions are [`crate::access`]'s; this file only reads headers, asks, and answers.

use super::language::text;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt as _;
use zimage_contract::{ErrorBody, PairingLink, SessionRequest, SessionStatus, paths};

use super::error::{ApiError, ApiJson};
use crate::access::headers as security;
use crate::access::identity::{ClientId, Requester};
use crate::access::network::canonical;
use crate::access::origin::{check_same_origin, is_cross_site, is_state_changing};
use crate::access::pairing::PAIRING_LIFETIME;
use crate::access::secret::SESSION_LIFETIME;
use crate::access::{SignInError, cookies};
use crate::state::AppState;

/// The sign-in and pairing routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(paths::SESSION, get(session_status).post(sign_in).delete(sign_out))
        .route(paths::PAIRINGS, post(create_pairing))
        .route(paths::SIGN_IN_PAGE, get(sign_in_page))
        .route(paths::PAIR_PAGE, get(pair_page))
        .route("/pair/{token}", get(redeem_pairing))
}

/// Who sent a request: the client's address and what the door made of its cookies and token. The
/// door puts it in every request it lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Caller {
    pub(super) address: IpAddr,
    pub(super) requester: Requester,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Caller, ApiError> {
        // Missing only on a route the door does not guard, which would be a wiring mistake: refuse.
        parts.extensions.get::<Caller>().copied().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "a route runs without the door");
            ApiError::Forbidden {
                code: "no_door",
                message: text().not_served.to_owned(),
            }
        })
    }
}

/// The nonce of the page being rendered: the Content-Security-Policy admits inline scripts and
/// styles carrying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PageNonce(pub(super) Arc<str>);

/// For the Leptos renderer (`leptos_routes_with_context`): makes the page's inline scripts carry the
/// nonce that the door put in the Content-Security-Policy of the response.
pub(super) fn provide_page_nonce() {
    use leptos::prelude::{provide_context, use_context};
    let nonce = use_context::<Parts>().and_then(|parts| parts.extensions.get::<PageNonce>().cloned());
    if let Some(PageNonce(nonce)) = nonce {
        provide_context(leptos::nonce::Nonce::from_value(nonce));
    }
}

/// The layer in front of everything, in the order the checks must run.
pub(super) async fn door(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let access = &state.access;
    let nonce = PageNonce(security::new_nonce().into());

    // 1. The client's address, before anything else is looked at.
    let Some(address) = peer_address(&request) else {
        tracing::error!("no client address on the request: the server must be started with connect info");
        return decorate(forbidden("no_address", text().no_address), &nonce, None);
    };
    // The health check runs on the machine itself and must work whatever the allowlist says.
    let health_probe = is_health_probe(request.method(), request.uri().path());
    let admitted = access.admits_address(address) || (health_probe && access.admits_health_probe(address));
    if !admitted {
        if access.should_log_refusal(address) {
            tracing::warn!(%address, method = %request.method(), path = %request.uri().path(),
                "refused a client outside the address allowlist (ZIMAGE_ALLOW)");
        }
        let message = text().address_not_allowed;
        return decorate(forbidden("address_not_allowed", message), &nonce, None);
    }

    // 2. The size of the request head.
    let header_sizes = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().len(), value.len()));
    let uri_length = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if let Err(too_large) = security::check_head(uri_length, header_sizes) {
        return decorate(ApiError::from(too_large).into_response(), &nonce, None);
    }

    // 3. The Host it is meant for (DNS rebinding).
    let headers = request.headers();
    // A Host that is not plain ASCII names nothing the studio answers to: it is checked as "".
    let host =
        optional_text(headers, header::HOST).map_or(Some(String::new()), |host| host.map(str::to_owned));
    if !access.admits_host(host.as_deref()) {
        if access.should_log_refusal(address) {
            tracing::warn!(%address, host = host.as_deref().unwrap_or_default(),
                "refused a request for a host name the studio does not answer to (ZIMAGE_ALLOWED_HOSTS)");
        }
        let message = text().unknown_host;
        return decorate(forbidden("unknown_host", message), &nonce, None);
    }

    // 3b. No control characters in any query parameter: a 422 naming it, before any handler reads one.
    if let Err(control) = security::check_query(request.uri().query().unwrap_or_default()) {
        let error = ApiError::InvalidField {
            message: (text().query_control)(&control.parameter),
            field: Some(control.parameter),
        };
        return decorate(error.into_response(), &nonce, None);
    }

    // 4. Who it is: the anonymous identity (or, without the cookie, the bearer token's or the address's),
    //    a session or a bearer token.
    let cookie_headers: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let client_cookie = cookies::find(cookie_headers.iter().copied(), cookies::CLIENT);
    let session_cookie = cookies::find(cookie_headers.iter().copied(), cookies::SESSION);
    let authorization = optional_text(headers, header::AUTHORIZATION).ok().flatten();
    let identification = access.identify(
        client_cookie.as_deref(),
        session_cookie.as_deref(),
        authorization,
        address,
    );
    match identification.bad_bearer {
        Some(SignInError::TooManyAttempts { retry_after }) => {
            return decorate(too_many_attempts(retry_after).into_response(), &nonce, None);
        }
        Some(_) => {
            let error = ApiError::Unauthorized {
                code: "wrong_token",
                message: text().wrong_token.to_owned(),
            };
            return decorate(error.into_response(), &nonce, None);
        }
        None => {}
    }
    let mut requester = identification.requester;
    let path = request.uri().path().to_owned();
    let method = request.method().clone();

    // 5. With a secret, only the signed in get further than the door's own pages.
    if access.secret_required() && !requester.signed_in && !is_public(&path) {
        let response = sign_in_first(
            &method,
            &path,
            request.uri().query(),
            headers,
            session_cookie.is_some(),
        );
        return decorate(response, &nonce, None);
    }

    // 6. A browser's state-changing request must come from the studio's own pages, as JSON.
    let mut new_client = None;
    if is_state_changing(method.as_str()) {
        let origin = optional_text(headers, header::ORIGIN).unwrap_or(Some("null"));
        let fetch_site = optional_text(headers, "sec-fetch-site").unwrap_or(Some("invalid"));
        if let Err(cross_site) = check_same_origin(host.as_deref(), origin, fetch_site) {
            tracing::info!(%address, %path, reason = %cross_site, "refused a cross-site request");
            let message = text().cross_origin;
            return decorate(forbidden("cross_origin", message), &nonce, None);
        }
        // A body the API reads is JSON; HTML forms cannot send that, so no page can forge one.
        // (`POST /api/pictures` takes a file's bytes and checks their type itself: `image/*` or
        // `application/octet-stream`, which no form can send either.)
        // `POST /v1/images/edits` takes OpenAI's multipart form from programs (SDKs, chat servers),
        // which send neither `Origin` nor `Sec-Fetch-Site`; a page in a browser sends it as JSON.
        let program_form = path == zimage_contract::openai::paths::IMAGES_EDITS
            && !from_browser(headers)
            && is_multipart(headers);
        if is_api(&path)
            && has_body(headers)
            && !is_json(headers)
            && path != zimage_contract::pictures::paths::PICTURES
            && !program_form
        {
            return decorate(unsupported_media_type().into_response(), &nonce, None);
        }
        // The identity is handed out with the first change a browser makes (its first job), never
        // on a page load: a cross-site navigation arrives without the SameSite=Strict cookie, and a
        // new one would replace the browser's identity. Only to browsers (they mark their requests
        // with `Origin` or `Sec-Fetch-Site`): a script keeps no cookies, so a new identity with each
        // request would make it a new client each time; it keeps the one of its token or address.
        if !identification.from_cookie && from_browser(headers) {
            let client = ClientId::new();
            requester.client = Some(client);
            new_client = Some(client);
        }
    }

    request.extensions_mut().insert(Caller { address, requester });
    request.extensions_mut().insert(nonce.clone());
    let response = next.run(request).await;
    decorate(response, &nonce, new_client)
}

/// Route layer of the event streams: at most so many open at once per client address.
pub(super) async fn limit_streams(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
    next: Next,
) -> Response {
    let Some(permit) = state.access.open_stream(caller.address) else {
        let error = ApiError::TooManyRequests {
            code: "too_many_streams",
            message: text().too_many_streams.to_owned(),
            retry_after: Duration::from_secs(5),
        };
        return error.into_response();
    };
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    // The permit lives as long as the stream does: it is dropped with the body.
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

#[utoipa::path(get, path = "/api/session", tag = "access",
    responses((status = 200, description = "Whether a secret is required and this client is signed in.", body = SessionStatus)))]
pub(super) async fn session_status(State(state): State<AppState>, caller: Caller) -> Json<SessionStatus> {
    Json(SessionStatus {
        secret_required: state.access.secret_required(),
        signed_in: caller.requester.signed_in,
    })
}

#[utoipa::path(post, path = "/api/session", tag = "access", request_body = SessionRequest,
    responses(
        (status = 200, description = "Signed in: the session cookie is set.", body = SessionStatus),
        (status = 400, description = "Not JSON (`malformed_json`, `unsupported_media_type`).", body = ErrorBody),
        (status = 401, description = "Not the secret (`wrong_secret`).", body = ErrorBody),
        (status = 409, description = "The studio has no secret (`conflict`).", body = ErrorBody),
        (status = 413, description = "The body is too large (`body_too_large`).", body = ErrorBody),
        (status = 422, description = "A field is missing or unknown (`invalid_field`).", body = ErrorBody),
    ))]
pub(super) async fn sign_in(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<SessionRequest>,
) -> Result<Response, ApiError> {
    let token = state
        .access
        .sign_in(&request.password, caller.address)
        .map_err(sign_in_error)?;
    let status = SessionStatus {
        secret_required: true,
        signed_in: true,
    };
    Ok(with_session_cookie(Json(status).into_response(), &token))
}

#[utoipa::path(delete, path = "/api/session", tag = "access",
    responses((status = 200, description = "Signed out: the session cookie is cleared.", body = SessionStatus)))]
pub(super) async fn sign_out(State(state): State<AppState>) -> Response {
    let status = SessionStatus {
        secret_required: state.access.secret_required(),
        signed_in: false,
    };
    let mut response = Json(status).into_response();
    append_cookie(&mut response, &cookies::clear(cookies::SESSION));
    response
}

#[utoipa::path(post, path = "/api/pairings", tag = "access",
    responses(
        (status = 201, description = "A one-time link that signs a phone in, and its QR code.", body = PairingLink),
        (status = 400, description = "A body that is not JSON (`unsupported_media_type`).", body = ErrorBody),
    ))]
pub(super) async fn create_pairing(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let link = pairing_link(&state, &headers)?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(link),
    )
        .into_response())
}

async fn redeem_pairing(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    if !state.access.secret_required() {
        return Ok(Redirect::to("/").into_response());
    }
    // A link another site's page made the browser open costs that browser's client nothing.
    let cross_site = is_cross_site(
        optional_text(&headers, header::HOST).ok().flatten(),
        optional_text(&headers, header::ORIGIN),
        optional_text(&headers, header::REFERER),
        optional_text(&headers, "sec-fetch-site"),
    );
    match state.access.redeem_pairing(&token, caller.address, cross_site) {
        Ok(session) => Ok(with_session_cookie(Redirect::to("/").into_response(), &session)),
        Err(SignInError::TooManyAttempts { retry_after }) => Err(too_many_attempts(retry_after)),
        Err(_) => Ok((StatusCode::FORBIDDEN, Html(pages::stale_link())).into_response()),
    }
}

async fn sign_in_page(
    State(state): State<AppState>,
    caller: Caller,
    nonce: Option<axum::Extension<PageNonce>>,
    RawQuery(query): RawQuery,
) -> Response {
    let next = next_page(query.as_deref());
    if !state.access.secret_required() || caller.requester.signed_in {
        return Redirect::to(&next).into_response();
    }
    let nonce = nonce.map(|axum::Extension(nonce)| nonce.0).unwrap_or_default();
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(pages::sign_in(&nonce, &next)),
    )
        .into_response()
}

async fn pair_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    nonce: Option<axum::Extension<PageNonce>>,
) -> Result<Response, ApiError> {
    let link = pairing_link(&state, &headers)?;
    let nonce = nonce.map(|axum::Extension(nonce)| nonce.0).unwrap_or_default();
    let host = optional_text(&headers, header::HOST)
        .ok()
        .flatten()
        .unwrap_or_default();
    let loopback = crate::access::host::parse_authority(host).is_some_and(|authority| match authority.host {
        crate::access::host::HostName::Ip(address) => address.is_loopback(),
        crate::access::host::HostName::Name(name) => name == "localhost" || name.ends_with(".localhost"),
    });
    let page = pages::pair(&nonce, &link, state.access.secret_required(), loopback);
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response())
}

/// A link that signs a phone in (or, without a secret, simply the studio's address), with its QR code.
fn pairing_link(state: &AppState, headers: &HeaderMap) -> Result<PairingLink, ApiError> {
    let host = optional_text(headers, header::HOST)
        .ok()
        .flatten()
        .unwrap_or("localhost");
    let (url, expires_in_s) = match state.access.open_pairing() {
        Ok(token) => (
            format!("http://{host}/pair/{token}"),
            Some(PAIRING_LIFETIME.as_secs()),
        ),
        Err(_) => (format!("http://{host}/"), None),
    };
    let qr_svg = qr_svg(&url)?;
    Ok(PairingLink {
        url,
        expires_in_s,
        qr_svg,
    })
}

/// The QR code of `text` as an SVG element, ready to be put into a page.
fn qr_svg(text: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|error| ApiError::Internal(error.to_string()))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(232, 232)
        .build();
    // The XML declaration belongs to a file, not to an element inside a page.
    Ok(svg
        .find("<svg")
        .map_or(svg.clone(), |start| svg[start..].to_owned()))
}

/// A request that only asks whether the studio is up or ready.
fn is_health_probe(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD) && matches!(path, paths::HEALTHZ | paths::READYZ)
}

/// Paths that work without signing in: health, the door's own pages and routes, the API's description,
/// and the static bundle
/// (it holds no data; the manifest and icons are fetched without cookies when a phone adds the studio
/// to its home screen).
fn is_public(path: &str) -> bool {
    matches!(
        path,
        paths::HEALTHZ | paths::SESSION | paths::SIGN_IN_PAGE | paths::OPENAPI
    ) || path.starts_with("/pair/")
        || path.starts_with("/pkg/")
        // Choosing a language only sets a cookie; the sign-in page offers it too.
        || path.starts_with("/language/")
}

/// The studio's API and the OpenAI-compatible one: programs, answered in JSON, never sent to a page.
fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/v1/")
}

/// The answer to someone who must sign in first: a page visit goes to the sign-in page, an API call
/// gets 401.
fn sign_in_first(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    has_session: bool,
) -> Response {
    let is_page = matches!(*method, Method::GET | Method::HEAD) && !is_api(path) && path != paths::READYZ;
    if !is_page {
        let error = ApiError::Unauthorized {
            code: "sign_in_required",
            message: text().sign_in_first.to_owned(),
        };
        return error.into_response();
    }
    // A link followed from another site arrives without the SameSite=Strict session cookie; reloading
    // from the studio's own page sends it. Without a cookie there is nothing to gain, and a same-origin
    // request cannot loop here.
    let fetch_site = optional_text(headers, "sec-fetch-site")
        .ok()
        .flatten()
        .unwrap_or_default();
    if !has_session && matches!(fetch_site, "cross-site" | "same-site") {
        return ([(header::CACHE_CONTROL, "no-store")], Html(pages::reload())).into_response();
    }
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let next: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
    Redirect::to(&format!("{}?next={next}", paths::SIGN_IN_PAGE)).into_response()
}

/// The page to return to after signing in: a local path from `?next=`, or the studio.
fn next_page(query: Option<&str>) -> String {
    let next = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "next")
        .map(|(_, value)| value.into_owned());
    next.filter(|next| is_local_path(next))
        .unwrap_or_else(|| "/".to_owned())
}

/// A path on this server: starts with one `/`, never `//` or `/\` (which browsers read as another
/// host), and holds only visible ASCII.
fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= security::MAX_URI_BYTES
        && path.bytes().all(|byte| byte.is_ascii_graphic())
}

/// Adds the security headers, the page's Content-Security-Policy and a new client cookie.
fn decorate(mut response: Response, nonce: &PageNonce, new_client: Option<ClientId>) -> Response {
    let headers = response.headers_mut();
    for (name, value) in security::ALWAYS {
        headers
            .entry(HeaderName::from_static(name))
            .or_insert(HeaderValue::from_static(value));
    }
    let is_page = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    let policy = if is_page {
        security::page_policy(&nonce.0)
    } else {
        security::RESOURCE_POLICY.to_owned()
    };
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(policy);
    }
    if let Some(client) = new_client {
        append_cookie(
            &mut response,
            &cookies::set(cookies::CLIENT, &client.to_string(), cookies::CLIENT_LIFETIME),
        );
    }
    response
}

fn with_session_cookie(mut response: Response, token: &str) -> Response {
    append_cookie(
        &mut response,
        &cookies::set(cookies::SESSION, token, SESSION_LIFETIME),
    );
    response
}

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn peer_address(request: &Request) -> Option<IpAddr> {
    let ConnectInfo(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
    Some(canonical(peer.ip()))
}

/// A header as text: `Ok(None)` when absent, `Err` when present but not visible ASCII.
fn optional_text(
    headers: &HeaderMap,
    name: impl axum::http::header::AsHeaderName,
) -> Result<Option<&str>, ()> {
    headers
        .get(name)
        .map(|value| value.to_str().map_err(|_| ()))
        .transpose()
}

/// True when a browser sent the request: browsers mark every request they send from a page with
/// `Sec-Fetch-Site` (and older ones a change with `Origin`); scripts send neither.
fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key("sec-fetch-site") || headers.contains_key(header::ORIGIN)
}

/// True when the request announces a body (a length above zero, or chunks).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || optional_text(headers, header::CONTENT_LENGTH)
            .ok()
            .flatten()
            .is_some_and(|length| length.trim() != "0")
}

fn is_json(headers: &HeaderMap) -> bool {
    let essence = optional_text(headers, header::CONTENT_TYPE)
        .ok()
        .flatten()
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    essence.is_some_and(|essence| {
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

fn is_multipart(headers: &HeaderMap) -> bool {
    optional_text(headers, header::CONTENT_TYPE)
        .ok()
        .flatten()
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"))
}

fn forbidden(code: &'static str, message: &str) -> Response {
    ApiError::Forbidden {
        code,
        message: message.to_owned(),
    }
    .into_response()
}

fn unsupported_media_type() -> ApiError {
    ApiError::BadRequest {
        code: "unsupported_media_type",
        message: text().json_required.to_owned(),
        field: None,
    }
}

fn too_many_attempts(retry_after: Duration) -> ApiError {
    ApiError::TooManyRequests {
        code: "too_many_attempts",
        message: text().too_many_attempts.to_owned(),
        retry_after,
    }
}

fn sign_in_error(error: SignInError) -> ApiError {
    match error {
        SignInError::NoSecret => ApiError::Conflict(text().no_secret),
        SignInError::TooManyAttempts { retry_after } => too_many_attempts(retry_after),
        SignInError::WrongSecret | SignInError::UnknownLink => ApiError::Unauthorized {
            code: "wrong_secret",
            message: text().wrong_secret.to_owned(),
        },
    }
}

/// The door's own small pages, rendered here so that signing in works before (and without) the web
/// UI's bundle. Their inline style and script carry the page's nonce.
mod pages {
    use zimage_contract::PairingLink;

    use super::super::language;

    const STYLE: &str = "body{font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Noto Sans\",\
        \"Noto Sans CJK SC\",\"PingFang SC\",\"Microsoft YaHei\",sans-serif;line-break:strict;margin:0;min-height:100vh;display:grid;place-items:center;\
        background:#f6f5f2;color:#1d1d1f}main{max-width:22rem;padding:1.5rem}h1{font-size:1.3rem}\
        input,button{font:inherit;width:100%;box-sizing:border-box;padding:.6rem;margin:.3rem 0;border-radius:.5rem;\
        border:1px solid #aaa}button{background:#1d1d1f;color:#fff;border:0}#message{color:#b00020;min-height:1.5em}\
        code{word-break:break-all;font-size:.8rem}svg{width:100%;height:auto;background:#fff}\
        @media (prefers-color-scheme:dark){body{background:#15161a;color:#eee}button{background:#eee;color:#15161a}\
        #message{color:#ff8a80}}";

    const SIGN_IN_SCRIPT: &str = r#"
const form = document.getElementById("sign-in");
const message = document.getElementById("message");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  message.textContent = "";
  try {
    const response = await fetch("/api/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ password: form.elements.password.value }),
    });
    if (response.ok) {
      location.replace(form.dataset.next);
      return;
    }
    const body = await response.json();
    message.textContent = body.error.message;
  } catch (error) {
    message.textContent = form.dataset.noAnswer;
  }
});
"#;

    fn document(nonce: &str, title: &str, body: &str, script: Option<&str>) -> String {
        let script = script
            .map(|script| format!("<script nonce=\"{nonce}\">{script}</script>"))
            .unwrap_or_default();
        format!(
            "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title>\
             <style nonce=\"{nonce}\">{STYLE}</style></head><body><main>{body}</main>{script}</body></html>",
            language::current().tag()
        )
    }

    /// The sign-in form; it returns to `next` (a local path) once signed in.
    pub(super) fn sign_in(nonce: &str, next: &str) -> String {
        let text = language::text();
        let body = format!(
            "<h1>{}</h1><p>{}</p>\
             <form id=\"sign-in\" data-next=\"{}\" data-no-answer=\"{}\"><input name=\"password\" \
             type=\"password\" autocomplete=\"current-password\" placeholder=\"{}\" aria-label=\"{}\" required autofocus>\
             <button type=\"submit\">{}</button><p id=\"message\" role=\"alert\"></p></form>\
             <noscript>{}</noscript><p>{}</p>{}",
            text.studio,
            text.sign_in_intro,
            escape(next),
            escape(text.no_answer),
            text.secret_placeholder,
            // A placeholder is no name: screen readers and axe need one that stays once typing starts.
            text.secret_placeholder,
            text.sign_in,
            text.sign_in_needs_javascript,
            text.pair_instead,
            language_switch(),
        );
        document(nonce, text.sign_in_title, &body, Some(SIGN_IN_SCRIPT))
    }

    /// The link to the other language (its name in that language); it comes back to the studio, which
    /// sends a browser that is not signed in here again.
    fn language_switch() -> String {
        let other = language::current().other();
        format!(
            "<p><a href=\"{}\" hreflang=\"{tag}\" lang=\"{tag}\">{}</a></p>",
            other.switch_path(),
            other.ui().name,
            tag = other.tag(),
        )
    }

    /// The pairing code for a phone.
    pub(super) fn pair(nonce: &str, link: &PairingLink, secret: bool, loopback: bool) -> String {
        let text = language::text();
        let explanation = if secret {
            let minutes = link.expires_in_s.unwrap_or_default() / 60;
            (text.pair_with_secret)(minutes)
        } else {
            text.pair_without_secret.to_owned()
        };
        let warning = if loopback {
            format!("<p id=\"message\">{}</p>", text.pair_on_localhost)
        } else {
            String::new()
        };
        let body = format!(
            "<h1>{}</h1><p>{explanation}</p>{warning}{}<p><code>{}</code></p><p><a href=\"/\">{}</a></p>",
            text.pair_heading,
            link.qr_svg,
            escape(&link.url),
            text.back_to_studio,
        );
        document(nonce, text.pair_title, &body, None)
    }

    /// A used or expired pairing link.
    pub(super) fn stale_link() -> String {
        let text = language::text();
        let body = format!(
            "<h1>{}</h1><p>{}</p><p><a href=\"/sign-in\">{}</a></p>",
            text.stale_heading, text.stale_text, text.sign_in
        );
        document("", text.stale_title, &body, None)
    }

    /// Reloads the page from itself, so the browser sends its SameSite=Strict cookies.
    pub(super) fn reload() -> String {
        "<!DOCTYPE html><html><head><meta http-equiv=\"refresh\" content=\"0\"></head><body></body></html>"
            .to_owned()
    }

    /// Text made safe for HTML content and quoted attributes.
    pub(super) fn escape(text: &str) -> String {
        let mut escaped = String::with_capacity(text.len());
        for character in text.chars() {
            match character {
                '&' => escaped.push_str("&amp;"),
                '<' => escaped.push_str("&lt;"),
                '>' => escaped.push_str("&gt;"),
                '"' => escaped.push_str("&quot;"),
                '\'' => escaped.push_str("&#39;"),
                other => escaped.push(other),
            }
        }
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_local_paths_are_followed_after_signing_in() {
        assert_eq!(next_page(Some("next=%2Fgallery%3Fx%3D1")), "/gallery?x=1");
        for bad in [
            "next=https://evil.example",
            "next=//evil.example",
            "next=/\\evil.example",
            "next=gallery",
            "next=/a%0Ab",
            "",
        ] {
            assert_eq!(next_page(Some(bad)), "/", "{bad}");
        }
        assert_eq!(next_page(None), "/");
    }

    #[test]
    fn only_reading_health_and_readiness_is_a_health_probe() {
        assert!(is_health_probe(&Method::GET, "/healthz"));
        assert!(is_health_probe(&Method::HEAD, "/readyz"));
        assert!(!is_health_probe(&Method::POST, "/healthz"));
        for other in [
            "/",
            "/healthz/",
            "/healthzz",
            "/api/healthz",
            "/api/history",
            "/pkg/app.js",
        ] {
            assert!(!is_health_probe(&Method::GET, other), "{other}");
        }
    }

    #[test]
    fn the_door_pages_and_the_bundle_are_public_and_nothing_else() {
        for public in ["/healthz", "/api/session", "/sign-in", "/pair/abc", "/pkg/app.js"] {
            assert!(is_public(public), "{public}");
        }
        for private in [
            "/",
            "/readyz",
            "/api/jobs",
            "/api/history",
            "/pair",
            "/api/pairings",
            "/pkgx",
            "/sign-in/x",
        ] {
            assert!(!is_public(private), "{private}");
        }
    }

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            pages::escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_sign_in_page_carries_the_nonce_on_its_script_and_style() {
        let page = pages::sign_in("n0nce", "/\"><script>");
        assert!(page.contains("<script nonce=\"n0nce\">") && page.contains("<style nonce=\"n0nce\">"));
        assert!(page.contains("data-next=\"/&quot;&gt;&lt;script&gt;\""));
    }

    #[test]
    fn a_qr_code_is_an_svg_element() {
        let svg = qr_svg("http://192.168.1.20:7860/pair/0123").unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
    }

    #[test]
    fn a_body_is_announced_by_its_length_or_by_chunks() {
        let mut headers = HeaderMap::new();
        assert!(!has_body(&headers));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(!has_body(&headers));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert!(has_body(&headers));
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert!(has_body(&headers));
    }

    #[test]
    fn json_content_types_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json(&headers));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&headers));
    }

    proptest! {
        #[test]
        fn any_next_parameter_yields_a_local_path(query in ".{0,80}") {
            let next = next_page(Some(&query));
            prop_assert!(is_local_path(&next));
        }
    }
}
