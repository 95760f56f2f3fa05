//! The HTTP routes of ComfyUI 0.8.0 that clients use, each also under `/api/` (server.py
//! `add_routes` registers every route twice), with the recorded status codes and bodies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::images;
use crate::jobs;
use crate::ordered::OValue;
use crate::shared::{Shared, lock, now_ms, wait_adjustable};
use crate::state::QueueItem;
use crate::uploads;
use crate::validation::validate_prompt;
use crate::ws;

type AppState = State<Arc<Shared>>;

/// The recorded `/system_stats` of ComfyUI 0.8.0 on CPU.
const SYSTEM_STATS: &str = include_str!("../fixtures/system_stats.json");

/// All routes, plain and under `/api`, behind ComfyUI's origin check.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let routes = Router::new()
        .route("/prompt", get(get_prompt).post(post_prompt))
        .route("/queue", get(get_queue).post(post_queue))
        .route("/interrupt", axum::routing::post(post_interrupt))
        .route("/history", get(get_history).post(post_history))
        .route("/history/{prompt_id}", get(get_history_entry))
        .route("/view", get(view))
        .route(
            "/upload/image",
            axum::routing::post(uploads::upload_image)
                .layer(axum::extract::DefaultBodyLimit::max(uploads::MAX_UPLOAD_BYTES)),
        )
        .route("/system_stats", get(system_stats))
        .route("/object_info", get(object_info))
        .route("/object_info/{class}", get(object_info_class))
        .route("/view_metadata/{folder}", get(view_metadata))
        .route("/free", axum::routing::post(post_free))
        .route("/features", get(features))
        .route("/embeddings", get(empty_list))
        .route("/extensions", get(empty_list))
        .route("/ws", get(websocket))
        // The jobs routes are written with their prefix, so the second registration makes
        // `/api/api/jobs` (recorded), and there is no `/jobs`.
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{prompt_id}", get(get_job));
    Router::new()
        .merge(routes.clone())
        .nest("/api", routes)
        .fallback(not_found)
        .layer(middleware::from_fn(origin_only))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            count_requests,
        ))
        .with_state(shared)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn ok_json(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}

/// aiohttp's answer when a handler raises (e.g. `await request.json()` on a non-JSON body).
pub(crate) fn internal_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "500 Internal Server Error\n\nServer got itself in trouble",
    )
        .into_response()
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

async fn empty_list() -> Response {
    ok_json(&json!([]))
}

/// Counts every request that reaches the simulator (not ComfyUI behaviour: a probe for tests).
async fn count_requests(State(shared): AppState, request: Request, next: Next) -> Response {
    shared.count_request(request.method().as_str(), request.uri().path());
    next.run(request).await
}

/// server.py `create_origin_only_middleware`: a browser page on another origin must not reach a
/// ComfyUI bound to loopback, so a loopback Host with a different Origin is refused.
async fn origin_only(request: Request, next: Next) -> Response {
    if let (Some(host), Some(origin)) = (
        header_str(request.headers(), header::HOST),
        header_str(request.headers(), header::ORIGIN),
    ) && origin_mismatch(&host, &origin)
    {
        tracing::warn!(%host, %origin, "request with non matching host and origin, returning 403");
        return StatusCode::FORBIDDEN.into_response();
    }
    if request.method() == Method::OPTIONS {
        return StatusCode::OK.into_response();
    }
    next.run(request).await
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_lowercase)
}

/// Splits `host[:port]` (with `[v6]` brackets) into its name and port.
fn split_host(authority: &str) -> (String, Option<String>) {
    if let Some(rest) = authority.strip_prefix('[')
        && let Some((name, after)) = rest.split_once(']')
    {
        return (name.to_owned(), after.strip_prefix(':').map(str::to_owned));
    }
    match authority.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name.to_owned(), Some(port.to_owned())),
        _ => (authority.to_owned(), None),
    }
}

fn origin_mismatch(host: &str, origin: &str) -> bool {
    let (host_name, host_port) = split_host(host);
    let loopback = host_name == "localhost"
        || host_name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return false;
    }
    let origin_authority = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    let (origin_name, origin_port) = split_host(origin_authority);
    // Ports are compared only when both sides name one.
    let (host_side, origin_side) = match (&host_port, &origin_port) {
        (Some(_), Some(_)) => (host.to_owned(), origin_authority.to_owned()),
        _ => (host_name, origin_name),
    };
    !host_side.is_empty() && !origin_side.is_empty() && host_side != origin_side
}

async fn get_prompt(State(shared): AppState) -> Response {
    let remaining = shared.state().queue_remaining();
    ok_json(&json!({"exec_info": {"queue_remaining": remaining}}))
}

/// `POST /prompt`: number, validate, queue (server.py `post_prompt`).
async fn post_prompt(State(shared): AppState, body: Bytes) -> Response {
    // A busy ComfyUI (the event loop blocked by a model load, say) takes its time to even look at it.
    let started = tokio::time::Instant::now();
    wait_adjustable(shared.knobs.slow_prompt.subscribe(), started, |delay| *delay).await;
    tracing::info!("got prompt");
    let Ok(Value::Object(body_json)) = serde_json::from_slice::<Value>(&body) else {
        return internal_error();
    };
    // The number is taken before anything is checked, so rejected prompts use one up too.
    let (number, sort_key) = {
        let mut state = shared.state();
        match body_json.get("number") {
            Some(given) => match given
                .as_f64()
                .or_else(|| given.as_str().and_then(|s| s.trim().parse().ok()))
            {
                Some(n) => (json!(n), n),
                None => return internal_error(),
            },
            None => {
                let mut number = state.next_number;
                if body_json.get("front").is_some_and(truthy) {
                    number = -number;
                }
                state.next_number += 1;
                (json!(number), number as f64)
            }
        }
    };
    if !body_json.contains_key("prompt") {
        let error = json!({"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}});
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": error, "node_errors": {}}),
        );
    }
    #[derive(serde::Deserialize)]
    struct OrderedPrompt {
        prompt: OValue,
    }
    let Ok(OrderedPrompt { prompt }) = serde_json::from_slice::<OrderedPrompt>(&body) else {
        return internal_error();
    };
    let prompt_id = match body_json.get("prompt_id") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(id)) => id.clone(),
        Some(other) => crate::pyfmt::str_of(other),
    };
    let partial: Option<Vec<String>> = body_json
        .get("partial_execution_targets")
        .and_then(Value::as_array)
        .map(|targets| targets.iter().map(crate::pyfmt::str_of).collect());
    let input_files = |name: &str| uploads::load_image_path(&shared, name).is_some_and(|path| path.is_file());
    let validated = match validate_prompt(&shared.catalog(), &prompt, partial.as_deref(), &input_files) {
        Ok(validated) => validated,
        Err(error) => {
            tracing::warn!(%error, "prompt could not be processed");
            return internal_error();
        }
    };
    let mut extra_data = match body_json.get("extra_data") {
        None => Map::new(),
        Some(Value::Object(extra)) => extra.clone(),
        Some(_) => return internal_error(),
    };
    if let Some(client_id) = body_json.get("client_id") {
        extra_data.insert("client_id".to_owned(), client_id.clone());
    }
    match validated {
        Ok(accepted) => {
            // Secrets for API nodes are kept out of the queue and history (SENSITIVE_EXTRA_DATA_KEYS).
            extra_data.remove("auth_token_comfy_org");
            extra_data.remove("api_key_comfy_org");
            let create_time = shared.state().next_create_time(now_ms());
            extra_data.insert("create_time".to_owned(), json!(create_time));
            lock(&shared.received).push(Value::Object(body_json));
            let response =
                json!({"prompt_id": prompt_id, "number": number, "node_errors": accepted.node_errors});
            shared.enqueue(QueueItem {
                number,
                sort_key,
                prompt_id,
                graph: prompt,
                extra_data,
                outputs: accepted.outputs,
            });
            ok_json(&response)
        }
        Err(rejection) => {
            tracing::warn!(error = %rejection.error, "invalid prompt");
            json_response(StatusCode::BAD_REQUEST, &rejection.body())
        }
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

async fn get_queue(State(shared): AppState) -> Response {
    let state = shared.state();
    let running: Vec<Value> = state.running.iter().map(|item| item.to_json()).collect();
    let pending: Vec<Value> = state.pending.iter().map(|item| item.to_json()).collect();
    ok_json(&json!({"queue_running": running, "queue_pending": pending}))
}

/// `POST /queue`: `{"clear": true}` and/or `{"delete": [ids]}`; never touches the running prompt.
async fn post_queue(State(shared): AppState, body: Bytes) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return internal_error();
    };
    if body.get("clear").is_some_and(truthy) {
        shared.wipe_queue();
    }
    if let Some(ids) = body.get("delete").and_then(Value::as_array) {
        for id in ids.iter().filter_map(Value::as_str) {
            shared.delete_pending(id);
        }
    }
    StatusCode::OK.into_response()
}

/// `POST /interrupt`: a body that is not JSON counts as no body.
async fn post_interrupt(State(shared): AppState, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or_else(|_| json!({}));
    let prompt_id = body
        .get("prompt_id")
        .filter(|id| truthy(id))
        .map(crate::pyfmt::str_of);
    shared.interrupt(prompt_id.as_deref());
    StatusCode::OK.into_response()
}

/// `GET /history?max_items=N&offset=M`: oldest first; with `max_items` alone, the newest N.
async fn get_history(State(shared): AppState, Query(query): Query<HashMap<String, String>>) -> Response {
    let parse = |name: &str| query.get(name).map(|v| v.trim().parse::<i64>());
    let max_items = match parse("max_items") {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return internal_error(),
    };
    let mut offset = match parse("offset") {
        None => -1,
        Some(Ok(n)) => n,
        Some(Err(_)) => return internal_error(),
    };
    let state = shared.state();
    let len = i64::try_from(state.history.len()).unwrap_or(i64::MAX);
    if offset < 0
        && let Some(max) = max_items
    {
        offset = len - max;
    }
    let mut out = Vec::new();
    for (index, (id, entry)) in state.history.iter().enumerate() {
        if i64::try_from(index).unwrap_or(i64::MAX) >= offset {
            out.push((id.clone(), entry.to_json()));
            if max_items.is_some_and(|max| i64::try_from(out.len()).unwrap_or(i64::MAX) >= max) {
                break;
            }
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        ordered_object(&out),
    )
        .into_response()
}

/// A JSON object written with its keys in the given order: serde_json's map would sort them, and
/// the history's order (oldest first) is part of its meaning.
fn ordered_object(entries: &[(String, Value)]) -> String {
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v))
        .collect();
    format!("{{{}}}", body.join(","))
}

async fn get_history_entry(State(shared): AppState, UrlPath(prompt_id): UrlPath<String>) -> Response {
    let state = shared.state();
    match state.history_entry(&prompt_id) {
        Some(entry) => ok_json(&json!({ prompt_id: entry.to_json() })),
        // `{}` both for an unknown id and for a prompt that has not finished yet.
        None => ok_json(&json!({})),
    }
}

async fn post_history(State(shared): AppState, body: Bytes) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return internal_error();
    };
    let mut state = shared.state();
    if body.get("clear").is_some_and(truthy) {
        state.history.clear();
    }
    if let Some(ids) = body.get("delete").and_then(Value::as_array) {
        let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
        state.history.retain(|(id, _)| !ids.contains(&id.as_str()));
    }
    StatusCode::OK.into_response()
}

/// `GET /view` with ComfyUI's path guards, in their order.
/// `GET /view_metadata/{folder}?filename=`: a `.safetensors` file's `__metadata__` (server.py): 404
/// for another folder than `loras` (the only one the simulator has files in), a name that is not a
/// `.safetensors` file it lists, or a file without metadata.
async fn view_metadata(
    State(shared): AppState,
    UrlPath(folder): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(name) = query.get("filename") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if folder != "loras" || !name.ends_with(".safetensors") || !shared.loras().contains(name) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match shared.lora_metadata(name) {
        Some(metadata) => ok_json(&metadata),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn view(State(shared): AppState, Query(query): Query<HashMap<String, String>>) -> Response {
    let started = tokio::time::Instant::now();
    wait_adjustable(shared.knobs.slow_view.subscribe(), started, |delay| *delay).await;
    let Some(raw_name) = query.get("filename") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // `folder_paths.annotated_filepath`: "name [output]" picks the folder by itself.
    let (name, annotated_dir) = match [
        (" [output]", &shared.dirs.output),
        (" [input]", &shared.dirs.input),
        (" [temp]", &shared.dirs.temp),
    ]
    .into_iter()
    .find(|(suffix, _)| raw_name.ends_with(suffix))
    {
        Some((suffix, dir)) => (&raw_name[..raw_name.len() - suffix.len()], Some(dir.clone())),
        None => (raw_name.as_str(), None),
    };
    if name.is_empty() || name.starts_with('/') || name.contains("..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let base = match annotated_dir {
        Some(dir) => dir,
        None => match query.get("type").map_or("output", String::as_str) {
            "output" => shared.dirs.output.clone(),
            "input" => shared.dirs.input.clone(),
            "temp" => shared.dirs.temp.clone(),
            _ => return StatusCode::BAD_REQUEST.into_response(),
        },
    };
    let mut folder = base.clone();
    if let Some(subfolder) = query.get("subfolder") {
        folder = images::normalize(&base.join(subfolder));
        if !folder.starts_with(&base) {
            return StatusCode::FORBIDDEN.into_response();
        }
    }
    let file_name = Path::new(name).file_name().map(PathBuf::from).unwrap_or_default();
    let path = folder.join(&file_name);
    let Ok(bytes) = tokio::fs::read(&path).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let display_name = file_name.to_string_lossy().into_owned();
    if let Some(preview) = query.get("preview") {
        return preview_response(&bytes, preview, &display_name);
    }
    let content_type = content_type_for(&display_name);
    let disposition = HeaderValue::from_str(&format!("filename=\"{display_name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("inline"));
    let mut response = Response::new(Body::from(bytes));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CONTENT_DISPOSITION, disposition);
    response
}

/// `preview=<format>[;<quality>]`: a re-encoded copy. The simulator encodes JPEG for every
/// format (its image codecs have no WebP encoder), and says so in the content type.
fn preview_response(bytes: &[u8], preview: &str, name: &str) -> Response {
    let Ok(image) = image::load_from_memory(bytes) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let _ = preview;
    let mut out = std::io::Cursor::new(Vec::new());
    if image
        .to_rgb8()
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .is_err()
    {
        return internal_error();
    }
    let stem = Path::new(name)
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let disposition = HeaderValue::from_str(&format!("filename=\"{stem}.jpeg\""))
        .unwrap_or_else(|_| HeaderValue::from_static("inline"));
    let mut response = Response::new(Body::from(out.into_inner()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    response
        .headers_mut()
        .insert(header::CONTENT_DISPOSITION, disposition);
    response
}

/// `mimetypes.guess_type`, with html/js/css forced to octet-stream as ComfyUI does.
fn content_type_for(name: &str) -> &'static str {
    let extension = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "json" => "application/json",
        "txt" => "text/plain",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

async fn system_stats() -> Response {
    let stats: Value = serde_json::from_str(SYSTEM_STATS).unwrap_or_else(|_| json!({}));
    ok_json(&stats)
}

async fn object_info(State(shared): AppState) -> Response {
    ok_json(
        &shared
            .catalog()
            .all_with_inputs(&uploads::listed_files(&shared.dirs.input)),
    )
}

async fn object_info_class(State(shared): AppState, UrlPath(class): UrlPath<String>) -> Response {
    match shared
        .catalog()
        .entry(&class, &uploads::listed_files(&shared.dirs.input))
    {
        Some(entry) => ok_json(&json!({ class: entry })),
        None => ok_json(&json!({})),
    }
}

/// `POST /free`: `free_memory` drops the node cache once the running prompt (if any) is done.
async fn post_free(State(shared): AppState, body: Bytes) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return internal_error();
    };
    if body.get("free_memory").is_some_and(truthy) {
        shared.state().free_memory_requested = true;
        shared.queue_wakeup.notify_one();
    }
    StatusCode::OK.into_response()
}

async fn features() -> Response {
    ok_json(&ws::server_features())
}

#[derive(serde::Deserialize)]
struct WsQuery {
    #[serde(rename = "clientId")]
    client_id: Option<String>,
}

async fn websocket(
    State(shared): AppState,
    Query(query): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| ws::serve_socket(socket, shared, query.client_id))
}

async fn list_jobs(State(shared): AppState, Query(query): Query<HashMap<String, String>>) -> Response {
    let answer = jobs::list(&shared.state(), &query);
    match answer {
        Ok(body) => ok_json(&body),
        Err(error) => json_response(StatusCode::BAD_REQUEST, &json!({"error": error.0})),
    }
}

async fn get_job(State(shared): AppState, UrlPath(prompt_id): UrlPath<String>) -> Response {
    let job = jobs::get(&shared.state(), &prompt_id);
    match job {
        Some(job) => ok_json(&job),
        None => json_response(StatusCode::NOT_FOUND, &json!({"error": "Job not found"})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_host_refuses_a_foreign_origin_only() {
        assert!(origin_mismatch("127.0.0.1:8188", "http://evil.example"));
        assert!(origin_mismatch("localhost:8188", "http://localhost:3000"));
        assert!(!origin_mismatch("127.0.0.1:8188", "http://127.0.0.1:8188"));
        assert!(!origin_mismatch("127.0.0.1:8188", "http://127.0.0.1"));
        assert!(!origin_mismatch("comfyui:8188", "http://evil.example"));
        assert!(origin_mismatch("[::1]:8188", "http://evil.example:8188"));
    }

    #[test]
    fn content_types_follow_the_extension_and_never_serve_html() {
        assert_eq!(content_type_for("a_00001_.png"), "image/png");
        assert_eq!(content_type_for("x.JPG"), "image/jpeg");
        assert_eq!(content_type_for("page.html"), "application/octet-stream");
    }

    #[test]
    fn history_keeps_its_order_in_the_answer_text() {
        let text = ordered_object(&[("b".to_owned(), json!(1)), ("a".to_owned(), json!({"x": "y"}))]);
        assert_eq!(text, r#"{"b":1,"a":{"x":"y"}}"#);
    }
}
