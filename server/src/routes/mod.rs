//! HTTP translation only: each module owns its routes, extracts, calls a domain module and answers.
//! This file is the route table and the layers every request passes.

mod access;
mod deadline;
mod error;
mod events;
mod health;
mod history;
mod images;
mod jobs;
mod language;
mod openai;
mod openapi;
mod pictures;
mod serve;
mod site;
mod styles;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::middleware::from_fn_with_state;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use zimage_contract::MAX_BODY_BYTES;

pub use error::ApiError;
pub use openapi::{ApiDoc, OPENAPI_PATH, document_json};
pub use serve::{HEAD_TIMEOUT, serve};

use crate::job_id::JobId;
use crate::state::AppState;

/// Time allowed to produce a response's head; event streams then run as long as the job.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Every route: the API with its state, then the web UI (which owns the fallback), all under one set
/// of layers.
pub fn router(state: AppState, site_root: &std::path::Path) -> Router {
    let api = Router::new()
        .merge(jobs::router())
        .merge(events::router().route_layer(from_fn_with_state(state.clone(), access::limit_streams)))
        .merge(images::router())
        .merge(pictures::router())
        .merge(history::router())
        .merge(styles::router())
        .merge(health::router())
        .merge(access::router())
        .merge(openai::router())
        .merge(openapi::router())
        .merge(language::router())
        .with_state(state.clone());
    // Answered when its images exist, however long the line: added after the timeout layer, which
    // then does not wrap it. Its body still has to arrive in time (`deadline`, below).
    let waiting = openai::waiting_router().with_state(state.clone());
    api.merge(site::router(site_root))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .merge(waiting)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Every route's body, the waiting ones' included, arrives in time or is cut off (408).
        .layer(axum::middleware::from_fn(deadline::limit_body_time))
        .layer(TraceLayer::new_for_http().on_failure(()))
        // The door is the first check, so a client outside the allowlist meets nothing else.
        .layer(from_fn_with_state(state, access::door))
        // Outside the door, so the door's refusals under `/v1` take OpenAI's shape too.
        .layer(axum::middleware::from_fn(error::openai_dialect))
        // Every text answer (pages, JSON, the pairing and sign-in pages) in br or gzip, as the browser
        // asks. Outside the dialect, which replaces error bodies (and would otherwise keep a
        // `content-encoding` for a body it wrote plain). The default predicate leaves out what must not
        // or need not be: `text/event-stream` (a compressor would hold events back until its buffer
        // fills), images (PNG and JPEG are compressed already), bodies under 32 bytes, and answers
        // already encoded (ServeDir's precompressed `.gz` files under /pkg).
        .layer(CompressionLayer::new().br(true).gzip(true))
        // Outermost: every answer, the door's refusals included, is in the request's language.
        .layer(axum::middleware::from_fn(language::scope))
}

/// A job id from the path. Anything that is not one of our ids is simply not found: client text
/// never goes further than this parse.
pub struct JobIdParam(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<JobIdParam, ApiError> {
        let not_found = || ApiError::NotFound(language::text().no_such_job_or_image);
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        text.parse().map(JobIdParam).map_err(|_| not_found())
    }
}
