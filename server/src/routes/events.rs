//! `GET /api/jobs/{id}/events`: the job's events as server-sent events, resumable with `Last-Event-ID`.
//! Each event's frame is encoded once, when it happens ([`crate::relay::Sequenced`]), and the same
//! bytes go to every watcher.

use super::language::text;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
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
    let frames = stream.map(|item| match item {
        StreamItem::Event(sequenced) => sequenced.frame.clone(),
        // No id: a browser resumes after the job's last real event once the studio is back.
        StreamItem::Restarting => Bytes::from_static(RESTARTING),
    });
    let body = Body::from_stream(with_keep_alive(frames, KEEP_ALIVE));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // Tell reverse proxies (nginx) not to buffer the stream.
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response())
}

/// The frame that ends a stream when the gateway shuts down.
const RESTARTING: &[u8] = b"event: restarting\ndata: {}\n\n";
/// A comment line: nothing for the browser, bytes on the wire for whatever would close a quiet stream.
const KEEP_ALIVE_FRAME: &[u8] = b":\n\n";

/// The frames (each already a whole SSE frame, shared by every watcher), with a comment every `every`
/// in between, until the frames end. The comment's clock is one interval per stream, set once; axum's
/// `Sse` resets a timer after every event of every watcher.
fn with_keep_alive(
    frames: impl Stream<Item = Bytes> + Send + 'static,
    every: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures_util::stream::unfold((Box::pin(frames), ticks), |(mut frames, mut ticks)| async move {
        let frame = tokio::select! {
            biased;
            frame = frames.next() => frame?,
            _ = ticks.tick() => Bytes::from_static(KEEP_ALIVE_FRAME),
        };
        Some((Ok(frame), (frames, ticks)))
    })
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

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_gets_a_comment_every_interval_and_ends_with_its_frames() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let every = Duration::from_secs(15);
        let mut stream = Box::pin(with_keep_alive(
            tokio_stream::wrappers::UnboundedReceiverStream::new(receiver),
            every,
        ));
        sender.send(Bytes::from_static(b"id: 1\n\n")).unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), &b"id: 1\n\n"[..]);
        let started = tokio::time::Instant::now();
        assert_eq!(stream.next().await.unwrap().unwrap(), KEEP_ALIVE_FRAME);
        assert_eq!(started.elapsed(), every);
        assert_eq!(stream.next().await.unwrap().unwrap(), KEEP_ALIVE_FRAME);
        sender.send(Bytes::from_static(b"id: 2\n\n")).unwrap();
        drop(sender);
        assert_eq!(stream.next().await.unwrap().unwrap(), &b"id: 2\n\n"[..]);
        assert!(stream.next().await.is_none(), "the stream ends with its frames");
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
