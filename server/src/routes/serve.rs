//! The studio's HTTP/1.1 server on its listener: hyper serving each connection with the time limit
//! that axum's own `serve` leaves out (it gives hyper no timer, so a client that never finishes its
//! request's head held its connection for ever), and the door's cap on the connections one client
//! holds open at once. Each request carries its peer's address (`ConnectInfo`) for the door.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::access::Access;

/// Time a client has to send a request's head, counted from when the server waits for one: on a new
/// connection, and after each answer on a kept-alive one, so an idle connection is closed too.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves `app` on `listener` until `shutdown` resolves; then takes no more connections, lets each
/// open one finish its request (kept-alive ones close), and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    access: Access,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // A connection that failed before it was accepted concerns that client alone;
                    // anything else (out of file descriptors) passes with time.
                    if !is_connection_error(&error) {
                        tracing::warn!(%error, "cannot accept connections; trying again in a second");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Each connection is a task and a socket: a client holding its limit gets no more (closed at
        // once; a browser needs a handful per host, and one per event stream).
        let Some(place) = access.hold_connection(peer.ip()) else {
            if access.should_log_refusal(peer.ip()) {
                tracing::warn!(address = %peer.ip(), "refused a connection: the client holds its limit of open connections");
            }
            continue;
        };
        // Every answer, and every event of a stream, goes out at once: with Nagle's algorithm a small
        // write waits for the peer's acknowledgement of the last, which a client delays by up to 40 ms.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, address = %peer, "cannot turn off Nagle's algorithm");
        }
        let service = app.clone().map_request(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(axum::body::Body::new)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _place = place;
            if let Err(error) = connection.await {
                tracing::debug!(%error, address = %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
