//! `GET /api/jobs/{id}/events`: the job's events as server-sent events, resumable with `Last-Event-ID`.

use super::language::text;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt as _;
use zimage_contract::{ErrorBody, JobEvent};

use super::JobIdParam;
use super::error::ApiError;
use crate::jobs::StreamItem;
use crate::state::AppState;

/// Comment lines on idle streams keep proxies and phone browsers from closing them.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The event route.
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/jobs/{id}/events", get(events))
}

#[utoipa::path(get, path = "/api/jobs/{id}/events", tag = "jobs", params(("id" = String, Path, description = "The job's id (a UUID), which is also its image's id."),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id (browsers' EventSource sends it by itself).")),
    responses(
        (status = 200, description = "Server-sent events until the job's end. Each event's `event:` field is one of the names of `JobEvent` \
(`queued`, `running`, `retrying`, `progress`, `preview`, `completed`, `failed`, `cancelled`) and its `data:` field the JSON of that variant's `data`; \
each has an `id:` to resume from. The last is `completed`, `failed` or `cancelled`, or `restarting` (data `{}`, no id) when the gateway shuts down first: \
reconnect with `Last-Event-ID` once it is back. Comment lines keep idle streams open.",
            content_type = "text/event-stream", body = JobEvent),
        (status = 400, description = "`Last-Event-ID` is not a number (`invalid_header`).", body = ErrorBody),
        (status = 404, description = "No such job (`not_found`).", body = ErrorBody),
        (status = 429, description = "This device follows too many jobs at once (`too_many_streams`).", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ))]
pub(super) async fn events(
    State(state): State<AppState>,
    JobIdParam(id): JobIdParam,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let last_seen = last_event_id(&headers)?;
    let stream = state
        .jobs
        .events(id, last_seen)
        .await
        .ok_or_else(|| ApiError::NotFound(text().no_such_job))?;
    let stream = stream.map(|item| {
        Ok::<Event, Infallible>(match item {
            StreamItem::Event(sequenced) => Event::default()
                .id(sequenced.id.to_string())
                .event(sequenced.event.name())
                .data(&sequenced.data),
            // No id: a browser resumes after the job's last real event once the studio is back.
            StreamItem::Restarting => Event::default().event("restarting").data("{}"),
        })
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Tell reverse proxies (nginx) not to buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    Ok(response)
}

/// Parses `Last-Event-ID`: absent or empty means from the start; anything but a number is refused.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let invalid = || ApiError::BadRequest {
        code: "invalid_header",
        message: text().last_event_id.to_owned(),
        field: Some("Last-Event-ID".to_owned()),
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<u64>().map(Some).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(value: &str) -> Result<Option<u64>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", value.parse().unwrap());
        last_event_id(&headers)
    }

    #[test]
    fn last_event_ids_are_numbers_or_nothing() {
        assert_eq!(last_event_id(&HeaderMap::new()).unwrap(), None);
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse(" 7 ").unwrap(), Some(7));
        for bad in ["-1", "abc", "1e9", "99999999999999999999999", "../1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn a_header_value_is_a_number_exactly_when_it_parses(value in "[ -~]{0,64}") {
            let trimmed = value.trim();
            match parse(&value) {
                Ok(None) => prop_assert!(trimmed.is_empty()),
                Ok(Some(id)) => prop_assert_eq!(trimmed.parse::<u64>().ok(), Some(id)),
                Err(error) => {
                    prop_assert!(trimmed.parse::<u64>().is_err());
                    let named = matches!(error, ApiError::BadRequest { field: Some(ref field), .. } if field == "Last-Event-ID");
                    prop_assert!(named, "{:?}", error);
                }
            }
        }

        #[test]
        fn every_id_round_trips(id in any::<u64>()) {
            prop_assert_eq!(parse(&id.to_string()).unwrap(), Some(id));
        }
    }
}
