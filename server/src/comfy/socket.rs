//! The gateway's one WebSocket to ComfyUI: connect, handshake, decode, publish [`ComfyEvent`]s and
//! the [`Link`] state, and reconnect after a drop or a silence, with a short capped backoff and a
//! fresh client id each time.
//!
//! ComfyUI replays nothing: every `Connected` tells the gateway that events may have been missed, so
//! unfinished jobs must be reconciled by polling. A socket counts as dead when nothing (no frame, no
//! pong to our pings) arrives for [`SocketOptions::silence_limit`], which is how a stalled ComfyUI
//! shows. The link is the gateway's liveness check of ComfyUI: readiness reads it, so nothing else
//! needs to poll ComfyUI while it is idle.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::{Fuse, FutureExt};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use url::Url;

use super::messages::{self, ServerMessage};
use super::{ComfyEvent, Link};

/// Timing of the socket's watchdog and reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// How often we ping ComfyUI (aiohttp answers pings by itself while its event loop runs).
    pub ping_every: Duration,
    /// A socket with no frame and no pong for this long is dropped and reconnected: the longest a
    /// silent ComfyUI still counts as up.
    pub silence_limit: Duration,
    /// How long the TCP connect plus WebSocket handshake may take. A stalled ComfyUI still accepts
    /// TCP connections, so an attempt made during a stall completes as soon as it resumes.
    pub connect_timeout: Duration,
    /// Waits between reconnect attempts.
    pub backoff: Backoff,
}

impl Default for SocketOptions {
    fn default() -> SocketOptions {
        SocketOptions {
            ping_every: Duration::from_secs(2),
            silence_limit: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
        }
    }
}

/// Capped exponential backoff: `first`, twice that, four times... never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failed attempt.
    pub first: Duration,
    /// The longest wait: how long a ComfyUI that answers again may go unnoticed at worst. A refused
    /// connection costs next to nothing, so once the backoff reaches this it retries at this period.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            first: Duration::from_millis(250),
            max: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The wait after the `failures`-th failed attempt in a row (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// Owns the socket task. Dropping the handle leaves the task running until the shutdown future fires.
#[derive(Debug)]
pub struct SocketHandle {
    task: JoinHandle<()>,
    reconnect: mpsc::Sender<()>,
    link: watch::Receiver<Link>,
}

impl SocketHandle {
    /// Drops the current connection and opens a new one at once (for a watchdog that finds a job
    /// silent although the socket still answers pings). Does nothing while no connection is open.
    pub fn reconnect(&self) {
        // A full channel already holds a request; one is enough.
        let _ = self.reconnect.try_send(());
    }

    /// The link state, starting `Down`. It turns `Up { client_id }` right after the `Connected` event
    /// of that connection is handed over, and `Down` as soon as the connection is found lost, before
    /// its `Disconnected` event.
    pub fn link(&self) -> watch::Receiver<Link> {
        self.link.clone()
    }

    /// True once the task has stopped (after shutdown, or when nobody receives its events any more).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the task to stop.
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the ComfyUI socket task failed");
        }
    }
}

/// Starts the socket task with the default [`SocketOptions`]. Events go to `events`; the task stops
/// when `shutdown` completes or `events` is closed.
///
/// Every connection registers under a fresh client id, named by its `Connected` event and by
/// [`SocketHandle::link`]. Nothing is sent before the first connection succeeds; after it, each lost
/// connection gives one `Disconnected` and each new one a `Connected`.
pub fn spawn(
    base: Url,
    events: mpsc::Sender<ComfyEvent>,
    shutdown: impl Future + Send + 'static,
) -> SocketHandle {
    spawn_with(base, events, shutdown, SocketOptions::default())
}

/// [`spawn`] with chosen timings.
pub fn spawn_with(
    base: Url,
    events: mpsc::Sender<ComfyEvent>,
    shutdown: impl Future + Send + 'static,
    options: SocketOptions,
) -> SocketHandle {
    let (reconnect, reconnect_requests) = mpsc::channel(1);
    let (link, link_receiver) = watch::channel(Link::Down {
        reason: NOT_YET.to_owned(),
    });
    let shutdown: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(shutdown.map(|_| ()));
    let socket = Socket {
        base,
        events,
        link,
        shutdown: shutdown.fuse(),
        options,
        reconnect_requests,
    };
    SocketHandle {
        task: tokio::spawn(socket.run()),
        reconnect,
        link: link_receiver,
    }
}

/// The link's reason before the first connection.
const NOT_YET: &str = "no connection yet";

/// Largest message and frame we accept. Previews are tens of KiB; a full-size PNG through
/// SaveImageWebsocket is a few MiB. The caps bound memory if something else speaks on the socket.
const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// How long a goodbye (close frame) may take at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

type Shutdown = Fuse<Pin<Box<dyn Future<Output = ()> + Send>>>;
type TcpSocket = WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Socket {
    base: Url,
    events: mpsc::Sender<ComfyEvent>,
    link: watch::Sender<Link>,
    /// Fused: it may be polled again after it fired, in the select of the next await point.
    shutdown: Shutdown,
    options: SocketOptions,
    reconnect_requests: mpsc::Receiver<()>,
}

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
    /// Shutdown, or nobody listens to the events: the task stops.
    Stop,
    /// The connection dropped, went silent or a reconnect was asked for: connect again.
    Lost { reason: String, at_once: bool },
}

impl Socket {
    async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            // A fresh id for every attempt, so an old socket's late cleanup inside ComfyUI (its
            // same-clientId reconnect bug) cannot unregister the new one.
            let client_id = fresh_client_id();
            let at_once = match self.connect(&client_id).await {
                Connect::Stop => return,
                Connect::Failed(reason) => {
                    failures = failures.saturating_add(1);
                    // The first failure of a streak is worth a warning; the rest would flood the log.
                    if failures == 1 {
                        tracing::warn!(%reason, url = %self.base, "cannot connect to ComfyUI's WebSocket; retrying");
                    } else {
                        tracing::debug!(%reason, failures, "ComfyUI WebSocket still unreachable");
                    }
                    self.set_down(format!("cannot open its WebSocket: {reason}"));
                    false
                }
                Connect::Open(stream) => {
                    failures = 0;
                    tracing::info!(%client_id, "connected to ComfyUI's WebSocket");
                    match self.session(*stream, &client_id).await {
                        Ended::Stop => return,
                        Ended::Lost { at_once, .. } => at_once,
                    }
                }
            };
            if !at_once {
                let delay = self.options.backoff.delay(failures.max(1));
                tokio::select! {
                    () = &mut self.shutdown => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    async fn connect(&mut self, client_id: &str) -> Connect {
        let url = match socket_url(&self.base, client_id) {
            Ok(url) => url,
            Err(reason) => return Connect::Failed(reason),
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        // No Origin header is sent: ComfyUI checks Origin only when one is present.
        let connecting = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        tokio::select! {
            () = &mut self.shutdown => Connect::Stop,
            connected = tokio::time::timeout(self.options.connect_timeout, connecting) => match connected {
                Ok(Ok((stream, _response))) => Connect::Open(Box::new(stream)),
                Ok(Err(error)) => Connect::Failed(error.to_string()),
                Err(_) => Connect::Failed("timed out".to_owned()),
            },
        }
    }

    /// Runs one connection, registered under `client_id`, until it ends: announces it (`Connected`,
    /// then the link up) once the handshake is out, and its loss (the link down, then
    /// `Disconnected`) when it ends. Generic over the transport so tests can run it over an
    /// in-memory pipe with the paused clock.
    async fn session<S>(&mut self, stream: WebSocketStream<S>, client_id: &str) -> Ended
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut sink, source) = stream.split();
        // A reconnect asked for before this connection existed is already done.
        while self.reconnect_requests.try_recv().is_ok() {}
        // The handshake must be the first message we send: it switches previews to type-4 frames, which
        // carry their prompt id.
        let handshake = Message::text(messages::feature_flags_handshake());
        if let Err(reason) = send_bounded(&mut sink, handshake, self.options.silence_limit).await {
            // Never announced, so there is nothing to take back.
            self.set_down(format!("its WebSocket failed at the handshake: {reason}"));
            return Ended::Lost {
                reason,
                at_once: false,
            };
        }
        let connected = ComfyEvent::Connected {
            client_id: client_id.to_owned(),
        };
        if !self.publish(connected).await {
            return Ended::Stop;
        }
        // After the event: whoever sees the link up can count on the event being queued before
        // anything submitted under this id.
        self.link.send_replace(Link::Up {
            client_id: client_id.to_owned(),
        });
        let ended = self.relay(&mut sink, source).await;
        match &ended {
            Ended::Stop => {
                self.set_down("the gateway is shutting down".to_owned());
            }
            Ended::Lost { reason, .. } => {
                tracing::warn!(%reason, "lost ComfyUI's WebSocket; reconnecting");
                // The link first: readiness turns at once, whatever the events' receiver is busy with.
                self.set_down(format!("its WebSocket was lost: {reason}"));
                if !self.publish(ComfyEvent::Disconnected).await {
                    return Ended::Stop;
                }
            }
        }
        ended
    }

    /// Pings, watches for silence and turns frames into events until the connection ends.
    async fn relay<S>(
        &mut self,
        sink: &mut SplitSink<WebSocketStream<S>, Message>,
        mut source: SplitStream<WebSocketStream<S>>,
    ) -> Ended
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut translator = Translator::default();
        let mut ping =
            tokio::time::interval_at(Instant::now() + self.options.ping_every, self.options.ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let silence = tokio::time::sleep(self.options.silence_limit);
        tokio::pin!(silence);
        loop {
            let frame = tokio::select! {
                () = &mut self.shutdown => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
                    return Ended::Stop;
                }
                Some(()) = self.reconnect_requests.recv() => {
                    return Ended::Lost { reason: "reconnect requested".to_owned(), at_once: true };
                }
                () = &mut silence => {
                    let reason = format!("no frame and no pong for {:?}", self.options.silence_limit);
                    return Ended::Lost { reason, at_once: false };
                }
                _ = ping.tick() => {
                    if let Err(reason) = send_bounded(sink, Message::Ping(bytes::Bytes::new()), self.options.silence_limit).await {
                        return Ended::Lost { reason, at_once: false };
                    }
                    continue;
                }
                frame = source.next() => frame,
            };
            let message = match frame {
                None => {
                    return Ended::Lost {
                        reason: "closed".to_owned(),
                        at_once: false,
                    };
                }
                Some(Err(error)) => {
                    return Ended::Lost {
                        reason: error.to_string(),
                        at_once: false,
                    };
                }
                Some(Ok(message)) => message,
            };
            silence
                .as_mut()
                .reset(Instant::now() + self.options.silence_limit);
            let decoded = match message {
                Message::Text(text) => messages::decode_text(text.as_str()),
                Message::Binary(frame) => messages::decode_binary(&frame),
                Message::Close(frame) => {
                    let reason =
                        frame.map_or_else(|| "closed".to_owned(), |frame| format!("closed: {frame}"));
                    return Ended::Lost {
                        reason,
                        at_once: false,
                    };
                }
                // Pongs only prove liveness; tungstenite answers pings itself.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            let message = match decoded {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "ignoring a ComfyUI WebSocket frame that does not decode");
                    continue;
                }
            };
            if let Some(event) = translator.translate(message)
                && !self.publish(event).await
            {
                return Ended::Stop;
            }
        }
    }

    /// Marks the link down for `reason`; a repeat of the same reason changes nothing (and wakes
    /// nobody), so a long outage does not churn the readers.
    fn set_down(&self, reason: String) {
        self.link.send_if_modified(|link| match link {
            Link::Down { reason: current } if *current == reason => false,
            _ => {
                *link = Link::Down { reason };
                true
            }
        });
    }

    /// Hands an event to the gateway; false when the task should stop (shutdown, or no receiver).
    async fn publish(&mut self, event: ComfyEvent) -> bool {
        tokio::select! {
            () = &mut self.shutdown => false,
            sent = self.events.send(event) => sent.is_ok(),
        }
    }
}

/// A client id never used before: `zimage-` and a random UUID.
fn fresh_client_id() -> String {
    format!("zimage-{}", uuid::Uuid::new_v4().simple())
}

/// Sends one frame, bounded in time: a peer that stopped reading must not block us forever.
async fn send_bounded<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    message: Message,
    limit: Duration,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(limit, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("sending timed out".to_owned()),
    }
}

enum Connect {
    /// Boxed: an open socket is much larger than the other variants.
    Open(Box<TcpSocket>),
    Failed(String),
    Stop,
}

/// `ws://host:port/<base path>/ws?clientId=<id>` from ComfyUI's HTTP base URL.
fn socket_url(base: &Url, client_id: &str) -> Result<Url, String> {
    let mut url = base.clone();
    let scheme = match base.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(format!(
                "ComfyUI URL {base} has scheme {other}, not http or https"
            ));
        }
    };
    url.set_scheme(scheme)
        .map_err(|()| format!("cannot make a WebSocket URL from {base}"))?;
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| format!("ComfyUI URL {base} cannot be a base"))?
        .pop_if_empty()
        .push("ws");
    url.query_pairs_mut().clear().append_pair("clientId", client_id);
    Ok(url)
}

/// Turns decoded messages into events for the gateway, attributing legacy previews (type 1, which
/// carry no prompt id) to the prompt of the latest `progress` or `executing` message.
#[derive(Debug, Default)]
struct Translator {
    latest_prompt: Option<String>,
}

impl Translator {
    fn translate(&mut self, message: ServerMessage) -> Option<ComfyEvent> {
        match message {
            ServerMessage::Status { queue_remaining, .. } => {
                Some(ComfyEvent::QueueRemaining(queue_remaining))
            }
            ServerMessage::FeatureFlags {
                supports_preview_metadata,
            } => {
                tracing::debug!(
                    supports_preview_metadata,
                    "ComfyUI answered the feature-flags handshake"
                );
                None
            }
            ServerMessage::ExecutionStart { prompt_id } => {
                self.latest_prompt = Some(prompt_id.clone());
                Some(ComfyEvent::Started { prompt_id })
            }
            ServerMessage::ExecutionCached { .. } => None,
            ServerMessage::Executing {
                prompt_id: Some(prompt_id),
                node: Some(node),
            } => {
                self.latest_prompt = Some(prompt_id.clone());
                Some(ComfyEvent::NodeStarted { prompt_id, node })
            }
            ServerMessage::Executing {
                prompt_id: Some(prompt_id),
                node: None,
            } => {
                if self.latest_prompt.as_ref() == Some(&prompt_id) {
                    self.latest_prompt = None;
                }
                Some(ComfyEvent::Finished { prompt_id })
            }
            // The replay on connect names a node but no prompt; reconciliation covers it.
            ServerMessage::Executing { prompt_id: None, .. } => None,
            ServerMessage::Progress {
                prompt_id: Some(prompt_id),
                node: Some(node),
                value,
                max,
            } => {
                self.latest_prompt = Some(prompt_id.clone());
                Some(ComfyEvent::Progress {
                    prompt_id,
                    node,
                    value,
                    max,
                })
            }
            ServerMessage::Progress { .. } => None,
            ServerMessage::Executed {
                prompt_id,
                node,
                images,
            } => Some(ComfyEvent::Output {
                prompt_id,
                node,
                images,
            }),
            ServerMessage::ExecutionSuccess { prompt_id } => Some(ComfyEvent::Succeeded { prompt_id }),
            ServerMessage::ExecutionError { prompt_id, failure } => {
                Some(ComfyEvent::Failed { prompt_id, failure })
            }
            ServerMessage::ExecutionInterrupted { prompt_id, .. } => {
                Some(ComfyEvent::Interrupted { prompt_id })
            }
            ServerMessage::Preview(preview) => {
                let prompt_id = preview.prompt_id.or_else(|| self.latest_prompt.clone())?;
                Some(ComfyEvent::Preview {
                    prompt_id,
                    image: preview.image,
                    mime: preview.mime,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::Router;
    use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
    use axum::extract::{Query, State};
    use axum::response::Response;
    use axum::routing::get;
    use bytes::Bytes;
    use tokio::sync::oneshot;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;
    use crate::comfy::OutputImage;

    /// Generous: these tests wait for events, never for a fixed time.
    const PATIENCE: Duration = Duration::from_secs(10);

    async fn next_event(events: &mut mpsc::Receiver<ComfyEvent>) -> ComfyEvent {
        tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("an event in time")
            .expect("the socket runs")
    }

    fn quick_options() -> SocketOptions {
        SocketOptions {
            ping_every: Duration::from_millis(100),
            silence_limit: Duration::from_millis(400),
            connect_timeout: Duration::from_secs(2),
            backoff: Backoff {
                first: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
        }
    }

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_the_cap() {
        let backoff = Backoff {
            first: Duration::from_millis(250),
            max: Duration::from_secs(10),
        };
        let schedule: Vec<u128> = (1..=9)
            .map(|failures| backoff.delay(failures).as_millis())
            .collect();
        assert_eq!(
            schedule,
            [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
        assert_eq!(backoff.delay(0), Duration::from_millis(250));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn by_default_a_comfyui_that_answers_again_is_retried_within_a_second() {
        let backoff = Backoff::default();
        assert!((1..=64).all(|failures| backoff.delay(failures) <= Duration::from_secs(1)));
    }

    #[test]
    fn the_socket_url_follows_the_base_url() {
        let plain = socket_url(&Url::parse("http://comfyui:8188").unwrap(), "zimage-1").unwrap();
        assert_eq!(plain.as_str(), "ws://comfyui:8188/ws?clientId=zimage-1");
        let prefixed = socket_url(&Url::parse("https://lan.example/comfy/?x=1#top").unwrap(), "a&b").unwrap();
        assert_eq!(prefixed.as_str(), "wss://lan.example/comfy/ws?clientId=a%26b");
        assert!(socket_url(&Url::parse("ftp://comfyui/").unwrap(), "x").is_err());
    }

    #[test]
    fn legacy_previews_go_to_the_prompt_of_the_latest_progress() {
        let mut translator = Translator::default();
        let preview = || {
            ServerMessage::Preview(messages::Preview {
                prompt_id: None,
                node: None,
                image: Bytes::from_static(b"\xff\xd8\xff"),
                mime: "image/jpeg",
            })
        };
        assert_eq!(
            translator.translate(preview()),
            None,
            "no prompt to attribute it to yet"
        );
        let progress = ServerMessage::Progress {
            prompt_id: Some("p".to_owned()),
            node: Some("8".to_owned()),
            value: 1,
            max: 8,
        };
        assert_eq!(
            translator.translate(progress),
            Some(ComfyEvent::Progress {
                prompt_id: "p".to_owned(),
                node: "8".to_owned(),
                value: 1,
                max: 8
            })
        );
        assert!(matches!(
            translator.translate(preview()),
            Some(ComfyEvent::Preview { prompt_id, mime: "image/jpeg", .. }) if prompt_id == "p"
        ));
        let done = ServerMessage::Executing {
            prompt_id: Some("p".to_owned()),
            node: None,
        };
        assert_eq!(
            translator.translate(done),
            Some(ComfyEvent::Finished {
                prompt_id: "p".to_owned()
            })
        );
        assert_eq!(translator.translate(preview()), None, "the prompt is over");
    }

    #[test]
    fn tagged_previews_keep_their_own_prompt_and_replays_without_prompt_are_dropped() {
        let mut translator = Translator::default();
        let tagged = ServerMessage::Preview(messages::Preview {
            prompt_id: Some("q".to_owned()),
            node: Some("8".to_owned()),
            image: Bytes::from_static(b"\x89PNG"),
            mime: "image/png",
        });
        assert!(
            matches!(translator.translate(tagged), Some(ComfyEvent::Preview { prompt_id, .. }) if prompt_id == "q")
        );
        let replay = ServerMessage::Executing {
            prompt_id: None,
            node: Some("8".to_owned()),
        };
        assert_eq!(translator.translate(replay), None);
        let cached = ServerMessage::ExecutionCached {
            prompt_id: "q".to_owned(),
            nodes: vec!["1".to_owned()],
        };
        assert_eq!(translator.translate(cached), None);
    }

    /// A socket task's parts, driven by hand over an in-memory pipe.
    struct Harness {
        socket: Socket,
        events: mpsc::Receiver<ComfyEvent>,
        link: watch::Receiver<Link>,
        reconnect: mpsc::Sender<()>,
        _shutdown: oneshot::Sender<()>,
    }

    fn harness(options: SocketOptions) -> Harness {
        let (events_tx, events) = mpsc::channel(64);
        let (reconnect, reconnect_requests) = mpsc::channel(1);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (link_tx, link) = watch::channel(Link::Down {
            reason: NOT_YET.to_owned(),
        });
        let shutdown: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(shutdown_rx.map(|_| ()));
        let socket = Socket {
            base: Url::parse("http://comfyui:8188").unwrap(),
            events: events_tx,
            link: link_tx,
            shutdown: shutdown.fuse(),
            options,
            reconnect_requests,
        };
        Harness {
            socket,
            events,
            link,
            reconnect,
            _shutdown: shutdown_tx,
        }
    }

    async fn pipe() -> (PipeEnd, PipeEnd) {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        (client, server)
    }

    const TEST_ID: &str = "zimage-test";

    fn connected() -> ComfyEvent {
        ComfyEvent::Connected {
            client_id: TEST_ID.to_owned(),
        }
    }

    type PipeEnd = WebSocketStream<tokio::io::DuplexStream>;
    type Received = Option<Result<Message, tokio_tungstenite::tungstenite::Error>>;

    /// A peer that reads the handshake and then neither reads nor writes: no frames, no pongs.
    fn silent_peer(mut server: PipeEnd) -> JoinHandle<(Received, PipeEnd)> {
        tokio::spawn(async move {
            let handshake = server.next().await;
            (handshake, server)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_silent_past_the_limit_is_dropped_even_though_pings_go_out() {
        let mut harness = harness(SocketOptions::default());
        let (client, server) = pipe().await;
        let peer = silent_peer(server);
        let started = Instant::now();
        let ended = harness.socket.session(client, TEST_ID).await;
        let waited = started.elapsed();
        assert!(matches!(ended, Ended::Lost { at_once: false, .. }));
        assert_eq!(waited, SocketOptions::default().silence_limit);
        assert_eq!(harness.events.recv().await, Some(connected()));
        assert_eq!(harness.events.recv().await, Some(ComfyEvent::Disconnected));
        let (handshake, _server) = peer.await.unwrap();
        let Some(Ok(Message::Text(text))) = handshake else {
            panic!("{handshake:?}")
        };
        assert_eq!(text.as_str(), messages::feature_flags_handshake());
    }

    #[tokio::test(start_paused = true)]
    async fn by_default_the_link_is_up_with_the_connections_id_and_down_within_five_seconds_of_silence() {
        let Harness {
            mut socket,
            mut events,
            mut link,
            _shutdown,
            ..
        } = harness(SocketOptions::default());
        let watcher = tokio::spawn(async move {
            let mut seen = vec![(Instant::now(), link.borrow_and_update().clone())];
            while link.changed().await.is_ok() {
                seen.push((Instant::now(), link.borrow_and_update().clone()));
            }
            seen
        });
        let (client, server) = pipe().await;
        let _peer = silent_peer(server);
        let started = Instant::now();
        socket.session(client, TEST_ID).await;
        // Dropping the socket drops the link's sender, which ends the watcher.
        drop(socket);
        let seen = watcher.await.unwrap();
        let [.., (up_at, up), (down_at, down)] = seen.as_slice() else {
            panic!("{seen:?}")
        };
        assert_eq!(
            *up,
            Link::Up {
                client_id: TEST_ID.to_owned()
            }
        );
        assert_eq!(*up_at, started, "up as soon as the handshake is out");
        let Link::Down { reason } = down else {
            panic!("{down:?}")
        };
        assert!(reason.contains("no frame and no pong"), "{reason}");
        assert!(
            down_at.duration_since(started) <= Duration::from_secs(5),
            "a silent ComfyUI counted as up for {:?}",
            down_at.duration_since(started)
        );
        assert_eq!(events.recv().await, Some(connected()));
        assert_eq!(events.recv().await, Some(ComfyEvent::Disconnected));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_socket_that_answers_pings_stays_up() {
        let mut harness = harness(SocketOptions::default());
        let (client, mut server) = pipe().await;
        // Reading is what makes tungstenite answer pings.
        tokio::spawn(async move { while server.next().await.is_some() {} });
        let reconnect = harness.reconnect.clone();
        let link = harness.link.clone();
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(120)).await;
            let then = link.borrow().clone();
            reconnect.send(()).await.unwrap();
            then
        });
        let started = Instant::now();
        let ended = harness.socket.session(client, TEST_ID).await;
        assert!(
            matches!(ended, Ended::Lost { at_once: true, .. }),
            "ended by the reconnect request only"
        );
        assert!(started.elapsed() >= Duration::from_secs(120));
        assert_eq!(
            later.await.unwrap().client_id(),
            Some(TEST_ID),
            "still up after two minutes"
        );
        assert!(
            matches!(&*harness.link.borrow(), Link::Down { reason } if reason.contains("reconnect requested"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_handshake_is_neither_connected_nor_disconnected() {
        let mut harness = harness(SocketOptions::default());
        let (client, server) = pipe().await;
        // The peer is gone before the handshake can be sent.
        drop(server);
        let ended = harness.socket.session(client, TEST_ID).await;
        assert!(matches!(ended, Ended::Lost { at_once: false, .. }), "{ended:?}");
        drop(harness.socket);
        assert_eq!(harness.events.recv().await, None, "no event at all");
        assert!(matches!(&*harness.link.borrow(), Link::Down { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn frames_become_events_in_order() {
        let mut harness = harness(SocketOptions::default());
        let (client, mut server) = pipe().await;
        let frames = vec![
            Message::text(
                r#"{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}, "sid": "x"}}"#,
            ),
            Message::text(r#"{"type": "execution_start", "data": {"prompt_id": "p", "timestamp": 1}}"#),
            Message::text(r#"{"type": "progress_state", "data": {"prompt_id": "p", "nodes": {}}}"#),
            Message::text(
                r#"{"type": "progress", "data": {"value": 1, "max": 8, "prompt_id": "p", "node": "8"}}"#,
            ),
            Message::binary(Bytes::from_static(
                b"\x00\x00\x00\x01\x00\x00\x00\x01\xff\xd8\xff",
            )),
            Message::text("this frame is garbage"),
            Message::text(
                r#"{"type": "executed", "data": {"node": "10", "output": {"images": [{"filename": "a.png",
                "subfolder": "", "type": "output"}]}, "prompt_id": "p"}}"#,
            ),
            Message::text(r#"{"type": "execution_success", "data": {"prompt_id": "p", "timestamp": 2}}"#),
            Message::text(r#"{"type": "executing", "data": {"node": null, "prompt_id": "p"}}"#),
        ];
        tokio::spawn(async move {
            for frame in frames {
                server.send(frame).await.unwrap();
            }
            server.close(None).await.unwrap();
        });
        let ended = harness.socket.session(client, TEST_ID).await;
        assert!(matches!(ended, Ended::Lost { .. }));
        let mut events = Vec::new();
        while let Ok(event) = harness.events.try_recv() {
            events.push(event);
        }
        let prompt_id = || "p".to_owned();
        assert_eq!(
            events,
            vec![
                connected(),
                ComfyEvent::QueueRemaining(1),
                ComfyEvent::Started {
                    prompt_id: prompt_id()
                },
                ComfyEvent::Progress {
                    prompt_id: prompt_id(),
                    node: "8".to_owned(),
                    value: 1,
                    max: 8
                },
                ComfyEvent::Preview {
                    prompt_id: prompt_id(),
                    image: Bytes::from_static(b"\xff\xd8\xff"),
                    mime: "image/jpeg"
                },
                ComfyEvent::Output {
                    prompt_id: prompt_id(),
                    node: "10".to_owned(),
                    images: vec![OutputImage {
                        filename: "a.png".to_owned(),
                        subfolder: String::new(),
                        folder_type: "output".to_owned()
                    }]
                },
                ComfyEvent::Succeeded {
                    prompt_id: prompt_id()
                },
                ComfyEvent::Finished {
                    prompt_id: prompt_id()
                },
                ComfyEvent::Disconnected,
            ]
        );
    }

    /// A WebSocket server that records each connection's clientId and first message, sends a short
    /// script, then closes, or (with `stall`) goes silent.
    #[derive(Clone)]
    struct Stub {
        /// Each connection's clientId and first message, in order.
        seen: mpsc::UnboundedSender<(String, Option<String>)>,
        stall: bool,
    }

    fn stub(stall: bool) -> (Stub, mpsc::UnboundedReceiver<(String, Option<String>)>) {
        let (seen, records) = mpsc::unbounded_channel();
        (Stub { seen, stall }, records)
    }

    async fn next_record(
        records: &mut mpsc::UnboundedReceiver<(String, Option<String>)>,
    ) -> (String, Option<String>) {
        tokio::time::timeout(PATIENCE, records.recv())
            .await
            .expect("a connection in time")
            .expect("the stub runs")
    }

    async fn stub_socket(
        upgrade: WebSocketUpgrade,
        Query(query): Query<HashMap<String, String>>,
        State(stub): State<Stub>,
    ) -> Response {
        let client_id = query.get("clientId").cloned().unwrap_or_default();
        upgrade.on_upgrade(move |mut socket: WebSocket| async move {
            let first = match socket.recv().await {
                Some(Ok(AxumMessage::Text(text))) => Some(text.as_str().to_owned()),
                _ => None,
            };
            let _ = stub.seen.send((client_id, first));
            if stub.stall {
                // Keep the connection open without reading (so no pongs) until the client leaves.
                std::future::pending::<()>().await;
            }
            let status = r#"{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}}"#;
            let _ = socket.send(AxumMessage::Text(status.into())).await;
            let _ = socket.send(AxumMessage::Close(None)).await;
        })
    }

    fn stub_router(stub: Stub) -> Router {
        Router::new().route("/ws", get(stub_socket)).with_state(stub)
    }

    async fn serve_stub(stub: Stub) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, stub_router(stub)).await.unwrap() });
        Url::parse(&format!("http://{address}")).unwrap()
    }

    fn connected_id(event: ComfyEvent) -> String {
        match event {
            ComfyEvent::Connected { client_id } => client_id,
            other => panic!("expected Connected, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn every_reconnect_uses_a_fresh_client_id_and_starts_with_the_handshake() {
        let (stub, mut records) = stub(false);
        let base = serve_stub(stub).await;
        let (events_tx, mut events) = mpsc::channel(64);
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = spawn_with(base, events_tx, stopped, quick_options());
        let mut announced = Vec::new();
        for _ in 0..2 {
            announced.push(connected_id(next_event(&mut events).await));
            assert_eq!(next_event(&mut events).await, ComfyEvent::QueueRemaining(0));
            assert_eq!(next_event(&mut events).await, ComfyEvent::Disconnected);
        }
        announced.push(connected_id(next_event(&mut events).await));
        stop.send(()).unwrap();
        tokio::time::timeout(PATIENCE, handle.stopped()).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(next_record(&mut records).await);
        }
        let registered: Vec<String> = seen.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            announced, registered,
            "each Connected names the id its connection registered"
        );
        let ids: std::collections::HashSet<&String> = registered.iter().collect();
        assert_eq!(ids.len(), seen.len(), "no id is reused: {seen:?}");
        assert!(
            seen.iter()
                .all(|(_, first)| first.as_deref() == Some(messages::feature_flags_handshake().as_str()))
        );
    }

    #[tokio::test]
    async fn a_stalled_server_is_noticed_and_reconnected() {
        let (stub, _records) = stub(true);
        let base = serve_stub(stub).await;
        let (events_tx, mut events) = mpsc::channel(64);
        let handle = spawn_with(base, events_tx, std::future::pending::<()>(), quick_options());
        let first = connected_id(next_event(&mut events).await);
        assert_eq!(next_event(&mut events).await, ComfyEvent::Disconnected);
        let second = connected_id(next_event(&mut events).await);
        assert_ne!(first, second);
        drop(events);
        // With nobody listening, the task stops at its next event.
        tokio::time::timeout(PATIENCE, handle.stopped()).await.unwrap();
    }

    #[tokio::test]
    async fn an_attempt_made_while_comfyui_is_stalled_completes_when_it_resumes() {
        // A listener nobody accepts from: the OS completes the TCP handshake (as for a frozen
        // ComfyUI), and the WebSocket handshake waits.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let (stub, mut records) = stub(true);
        let (events_tx, mut events) = mpsc::channel(64);
        let options = SocketOptions {
            // Longer than the test's patience: only the attempt under way can connect in time.
            connect_timeout: PATIENCE * 6,
            silence_limit: PATIENCE * 6,
            ..quick_options()
        };
        let handle = spawn_with(base, events_tx, std::future::pending::<()>(), options);
        let link = handle.link();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(events.try_recv().is_err(), "nothing answers yet");
        assert!(matches!(&*link.borrow(), Link::Down { .. }));

        tokio::spawn(async move { axum::serve(listener, stub_router(stub)).await.unwrap() });
        let announced = connected_id(next_event(&mut events).await);
        let (registered, _) = next_record(&mut records).await;
        assert_eq!(announced, registered);
        assert_eq!(link.borrow().client_id(), Some(announced.as_str()));
    }

    #[tokio::test]
    async fn a_reconnect_request_replaces_the_connection() {
        let (stub, mut records) = stub(true);
        let base = serve_stub(stub).await;
        let (events_tx, mut events) = mpsc::channel(64);
        let options = SocketOptions {
            silence_limit: Duration::from_secs(60),
            ..quick_options()
        };
        let handle = spawn_with(base, events_tx, std::future::pending::<()>(), options);
        let first_announced = connected_id(next_event(&mut events).await);
        handle.reconnect();
        assert_eq!(next_event(&mut events).await, ComfyEvent::Disconnected);
        let second_announced = connected_id(next_event(&mut events).await);
        let (first, _) = next_record(&mut records).await;
        let (second, _) = next_record(&mut records).await;
        assert_ne!(first, second);
        assert_eq!((first_announced, second_announced), (first, second));
    }

    #[tokio::test]
    async fn nothing_listening_means_quiet_retries_until_shutdown() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let (events_tx, mut events) = mpsc::channel(64);
        let (stop, stopped) = oneshot::channel::<()>();
        let base = Url::parse(&format!("http://{address}")).unwrap();
        let handle = spawn_with(base, events_tx, stopped, quick_options());
        let mut link = handle.link();
        let down = link
            .wait_for(|link| matches!(link, Link::Down { reason } if reason != NOT_YET))
            .await
            .unwrap()
            .clone();
        let Link::Down { reason } = down else {
            unreachable!()
        };
        assert!(reason.starts_with("cannot open its WebSocket"), "{reason}");
        stop.send(()).unwrap();
        tokio::time::timeout(PATIENCE, handle.stopped()).await.unwrap();
        assert_eq!(
            events.recv().await,
            None,
            "no Connected, and no Disconnected without a connection"
        );
    }
}
