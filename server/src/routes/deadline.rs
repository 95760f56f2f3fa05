//! The time a request's body has to arrive: a body not in whole within [`BODY_TIMEOUT`] of the
//! request's head (more for a large upload, at a slow network's pace) is cut off, and the handler reading it answers 408 (`body_timeout`). So a client that
//! announces a body and never sends it holds nothing for long, on every route, the long answers of
//! `/v1` included: their wait for the images comes after the body and is not bound by this.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody as _};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::Stream;

/// Time from the request's head to the end of its body. A JSON body (64 KiB at most) arrives in far
/// less on any network that can show its images.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The slowest pace a large body (a phone's photo) is given time for beyond [`BODY_TIMEOUT`]: 2 Mbit/s,
/// a weak Wi-Fi. A 6 MB photo gets 33 s in all, the largest upload (25 MiB) about two minutes.
const SLOWEST_BYTES_PER_SECOND: u64 = 256 * 1024;

/// The body did not arrive by its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request's body did not arrive within {} seconds", BODY_TIMEOUT.as_secs())]
pub(super) struct BodyTimedOut;

/// The layer: every request with a body gets its deadline.
pub(super) async fn limit_body_time(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // The size the client announced (the body limits refuse a body that is larger).
    let announced = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    let allowed = BODY_TIMEOUT + Duration::from_secs(announced / SLOWEST_BYTES_PER_SECOND);
    let body = Body::from_stream(Deadline {
        body: body.into_data_stream(),
        deadline: Box::pin(tokio::time::sleep(allowed)),
        over: false,
    });
    next.run(Request::from_parts(parts, body)).await
}

/// True when `error` (a failed body read) or one of its causes is [`BodyTimedOut`].
pub(super) fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// A body's chunks until its deadline, then [`BodyTimedOut`] and the end.
struct Deadline {
    body: BodyDataStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    over: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, axum::BoxError>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.over {
            return Poll::Ready(None);
        }
        if let Poll::Ready(chunk) = Pin::new(&mut this.body).poll_next(context) {
            return Poll::Ready(chunk.map(|chunk| chunk.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(context).is_ready() {
            this.over = true;
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use tower::ServiceExt as _;

    async fn read(body: Body) -> Result<Bytes, StatusCode> {
        let app = Router::new()
            .route(
                "/",
                post(|request: Request| async move {
                    match axum::body::to_bytes(request.into_body(), 1024).await {
                        Ok(bytes) => (StatusCode::OK, bytes),
                        Err(error) if timed_out(&error) => (StatusCode::REQUEST_TIMEOUT, Bytes::new()),
                        Err(_) => (StatusCode::BAD_REQUEST, Bytes::new()),
                    }
                }),
            )
            .layer(axum::middleware::from_fn(limit_body_time));
        let request = Request::post("/").body(body).unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        if status == StatusCode::OK {
            Ok(bytes)
        } else {
            Err(status)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        assert_eq!(read(Body::from("whole")).await, Ok(Bytes::from("whole")));
        assert_eq!(read(Body::empty()).await, Ok(Bytes::new()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_is_cut_off_at_its_deadline() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        sender.send(Ok(Bytes::from("ten bytes."))).await.unwrap();
        let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
        // The sender stays alive and silent: without the deadline the read would never end.
        assert_eq!(read(body).await, Err(StatusCode::REQUEST_TIMEOUT));
        drop(sender);
    }
}
