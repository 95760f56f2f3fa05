//! A TCP proxy between the gateway and the simulator that notes the instant each `progress` message
//! leaves the simulator: the clock the relay latency is measured from. HTTP calls pass through
//! untouched; on the WebSocket it reads the server's frames (unmasked, uncompressed: neither side
//! negotiates an extension) as they go by and forwards every byte as soon as it is read.
//!
//! What it measures is therefore "simulator writes progress" to "browser reads the event", including
//! one extra loopback hop through this proxy (tens of microseconds), which only makes the gateway look
//! slower than it is.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// When each progress message `(prompt_id, step)` went by.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProgressClock {
    sent: Arc<Mutex<HashMap<(String, u32), Instant>>>,
}

impl ProgressClock {
    /// The instant progress `step` of `prompt_id` left the simulator, if it did.
    pub(crate) fn sent_at(&self, prompt_id: &str, step: u32) -> Option<Instant> {
        self.lock().get(&(prompt_id.to_owned(), step)).copied()
    }

    fn record(&self, prompt_id: String, step: u32, at: Instant) {
        self.lock().entry((prompt_id, step)).or_insert(at);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Instant>> {
        // Only inserts and lookups happen under the lock; a poisoned map is still whole.
        self.sent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Listens on `127.0.0.1:0` and forwards every connection to `upstream`. Returns the address to give
/// the gateway as its ComfyUI, and the clock.
pub(crate) async fn spawn(upstream: SocketAddr) -> std::io::Result<(SocketAddr, ProgressClock)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let clock = ProgressClock::default();
    let shared = clock.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let clock = shared.clone();
            tokio::spawn(async move {
                if let Err(error) = forward(client, upstream, clock).await {
                    eprintln!("proxy connection ended: {error}");
                }
            });
        }
    });
    Ok((addr, clock))
}

async fn forward(client: TcpStream, upstream: SocketAddr, clock: ProgressClock) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upward = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    let mut watcher = FrameWatcher::default();
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let read = server_read.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        let at = Instant::now();
        for (prompt_id, step) in watcher.feed(&buffer[..read]) {
            clock.record(prompt_id, step, at);
        }
        client_write.write_all(&buffer[..read]).await?;
    }
    let _ = client_write.shutdown().await;
    upward.abort();
    Ok(())
}

/// Follows the server's side of a connection: an HTTP response head, then (after `101 Switching
/// Protocols`) WebSocket frames. Anything that is not a WebSocket is ignored.
#[derive(Debug, Default)]
struct FrameWatcher {
    pending: Vec<u8>,
    state: WatchState,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum WatchState {
    #[default]
    Head,
    Frames,
    /// Plain HTTP (or something unexpected): stop looking.
    Ignore,
}

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: ProgressData,
}

#[derive(Deserialize, Default)]
struct ProgressData {
    #[serde(default)]
    prompt_id: Option<String>,
    #[serde(default)]
    value: f64,
}

impl FrameWatcher {
    /// Takes the next bytes from the server; returns the progress messages completed by them.
    fn feed(&mut self, bytes: &[u8]) -> Vec<(String, u32)> {
        if self.state == WatchState::Ignore {
            return Vec::new();
        }
        self.pending.extend_from_slice(bytes);
        let mut found = Vec::new();
        if self.state == WatchState::Head {
            let Some(end) = self.pending.windows(4).position(|window| window == b"\r\n\r\n") else {
                return found;
            };
            let upgraded = self.pending.starts_with(b"HTTP/1.1 101");
            self.pending.drain(..end + 4);
            self.state = if upgraded {
                WatchState::Frames
            } else {
                WatchState::Ignore
            };
            if !upgraded {
                self.pending = Vec::new();
                return found;
            }
        }
        while let Some((opcode, payload, length)) = next_frame(&self.pending) {
            // Text frames only; ComfyUI does not fragment its messages.
            if opcode == 1
                && let Ok(message) = serde_json::from_slice::<Message>(payload)
                && message.kind == "progress"
                && let Some(prompt_id) = message.data.prompt_id
            {
                found.push((prompt_id, message.data.value as u32));
            }
            self.pending.drain(..length);
        }
        found
    }
}

/// A whole frame at the start of `bytes`: its opcode, payload and total length.
fn next_frame(bytes: &[u8]) -> Option<(u8, &[u8], usize)> {
    let first = *bytes.first()?;
    let second = *bytes.get(1)?;
    let masked = second & 0x80 != 0;
    let (length, mut offset): (usize, usize) = match second & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        short => (usize::from(short), 2),
    };
    if masked {
        // Servers never mask; a masked frame here would be a protocol error, so skip its key.
        offset += 4;
    }
    let end = offset.checked_add(length)?;
    let payload = bytes.get(offset..end)?;
    Some((first & 0x0f, payload, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_frame(text: &str) -> Vec<u8> {
        let mut frame = vec![0x81];
        match text.len() {
            length @ 0..=125 => frame.push(length as u8),
            length @ 126..=65535 => {
                frame.push(126);
                frame.extend_from_slice(&(length as u16).to_be_bytes());
            }
            length => {
                frame.push(127);
                frame.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(text.as_bytes());
        frame
    }

    #[test]
    fn progress_messages_are_found_in_frames_split_across_reads() {
        let mut stream = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n".to_vec();
        stream.extend(text_frame(r#"{"type": "status", "data": {"sid": "x"}}"#));
        let padding = "p".repeat(300);
        stream.extend(text_frame(&format!(
            r#"{{"type": "progress", "data": {{"value": 3, "max": 8, "prompt_id": "abc", "node": "{padding}"}}}}"#
        )));
        stream.extend([0x82, 3, 0, 0, 1]);
        stream.extend(text_frame(
            r#"{"type": "progress", "data": {"value": 4.0, "max": 8, "prompt_id": "abc"}}"#,
        ));
        let mut watcher = FrameWatcher::default();
        let mut found = Vec::new();
        for piece in stream.chunks(7) {
            found.extend(watcher.feed(piece));
        }
        assert_eq!(found, vec![("abc".to_owned(), 3), ("abc".to_owned(), 4)]);
    }

    #[test]
    fn plain_http_answers_are_ignored() {
        let mut watcher = FrameWatcher::default();
        let found = watcher.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n\x81\x02{}");
        assert!(found.is_empty());
        assert_eq!(watcher.state, WatchState::Ignore);
    }

    #[tokio::test]
    async fn bytes_pass_through_the_proxy_unchanged_both_ways() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = upstream.accept().await.unwrap();
            let mut request = [0_u8; 5];
            socket.read_exact(&mut request).await.unwrap();
            assert_eq!(&request, b"hello");
            socket
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
                .await
                .unwrap();
            let frame =
                text_frame(r#"{"type": "progress", "data": {"value": 1, "max": 8, "prompt_id": "p"}}"#);
            socket.write_all(&frame).await.unwrap();
        });
        let (addr, clock) = spawn(upstream_addr).await.unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert!(received.starts_with(b"HTTP/1.1 101"));
        assert!(received.ends_with(br#""prompt_id": "p"}}"#));
        assert!(clock.sent_at("p", 1).is_some());
        assert!(clock.sent_at("p", 2).is_none());
    }
}
