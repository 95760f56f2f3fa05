//! A lean server-sent events client over a plain TCP stream, for watching jobs the way a browser's
//! `EventSource` does. It stamps each event with the instant its last bytes were read from the socket,
//! and costs little per connection, so a thousand of them in the measuring process disturb little.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest response head accepted before the stream starts.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Why a stream could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SseError {
    #[error("connection to the gateway failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the gateway answered {0} instead of an event stream")]
    Status(String),
    #[error("the event stream is malformed: {0}")]
    Malformed(&'static str),
}

/// One event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) name: String,
    pub(crate) data: String,
}

/// An open event stream.
pub(crate) struct SseStream {
    socket: TcpStream,
    /// Bytes read but not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body text not yet parsed into events.
    body: Vec<u8>,
    chunked: bool,
    /// Bytes left in the current chunk (chunked encoding), and whether its trailing CRLF is pending.
    chunk_left: usize,
    chunk_crlf: bool,
    ended: bool,
}

impl SseStream {
    /// Opens `GET path` on the gateway at `addr`, as `EventSource` does, and reads the response head.
    pub(crate) async fn open(addr: SocketAddr, path: &str) -> Result<SseStream, SseError> {
        let mut socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(1024);
        let end = loop {
            if let Some(end) = find(&head, b"\r\n\r\n") {
                break end;
            }
            if head.len() > MAX_HEAD_BYTES {
                return Err(SseError::Malformed("response head too long"));
            }
            let mut buffer = [0_u8; 4096];
            let read = socket.read(&mut buffer).await?;
            if read == 0 {
                return Err(SseError::Malformed("connection closed before the response head"));
            }
            head.extend_from_slice(&buffer[..read]);
        };
        let head_text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
        let status_line = head_text.lines().next().unwrap_or_default().to_owned();
        if !status_line.starts_with("http/1.1 200") {
            return Err(SseError::Status(status_line));
        }
        let chunked = head_text.lines().any(|line| {
            line.split_once(':')
                .is_some_and(|(name, value)| name.trim() == "transfer-encoding" && value.contains("chunked"))
        });
        Ok(SseStream {
            socket,
            raw: head[end + 4..].to_vec(),
            body: Vec::new(),
            chunked,
            chunk_left: 0,
            chunk_crlf: false,
            ended: false,
        })
    }

    /// The next event and when its bytes arrived; `None` once the server ends the stream. Events
    /// already buffered keep the instant of the read that brought them.
    pub(crate) async fn next(&mut self, read_at: &mut Instant) -> Result<Option<SseEvent>, SseError> {
        loop {
            self.dechunk()?;
            if let Some(event) = self.take_event() {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            let mut buffer = [0_u8; 8192];
            let read = self.socket.read(&mut buffer).await?;
            *read_at = Instant::now();
            if read == 0 {
                self.ended = true;
                continue;
            }
            self.raw.extend_from_slice(&buffer[..read]);
        }
    }

    /// Moves whole chunk payloads from `raw` into `body`.
    fn dechunk(&mut self) -> Result<(), SseError> {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return Ok(());
        }
        if self.ended {
            // The last chunk was read; what follows (the trailer) carries no events.
            return Ok(());
        }
        loop {
            if self.chunk_left > 0 {
                let take = self.chunk_left.min(self.raw.len());
                if take == 0 {
                    return Ok(());
                }
                self.body.extend(self.raw.drain(..take));
                self.chunk_left -= take;
                continue;
            }
            if self.chunk_crlf {
                if self.raw.len() < 2 {
                    return Ok(());
                }
                if &self.raw[..2] != b"\r\n" {
                    return Err(SseError::Malformed("chunk not followed by CRLF"));
                }
                self.raw.drain(..2);
                self.chunk_crlf = false;
            }
            let Some(line_end) = find(&self.raw, b"\r\n") else {
                return Ok(());
            };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]);
            let size_text = size_text.split(';').next().unwrap_or_default().trim().to_owned();
            let size =
                usize::from_str_radix(&size_text, 16).map_err(|_| SseError::Malformed("bad chunk size"))?;
            self.raw.drain(..line_end + 2);
            if size == 0 {
                self.ended = true;
                return Ok(());
            }
            self.chunk_left = size;
            self.chunk_crlf = true;
        }
    }

    /// Parses one complete event (ended by a blank line) out of `body`. Comments (keep-alives) and
    /// `id:` lines are skipped; an event without a name is a `message`.
    fn take_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = find(&self.body, b"\n\n")?;
            let block: Vec<u8> = self.body.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            let mut name = None;
            let mut data: Option<String> = None;
            for line in text.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => name = Some(value.to_owned()),
                    "data" => match &mut data {
                        Some(data) => {
                            data.push('\n');
                            data.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    },
                    _ => {}
                }
            }
            if let Some(data) = data {
                let name = name.unwrap_or_else(|| "message".to_owned());
                return Some(SseEvent { name, data });
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot server that writes the response in the given pieces, flushing between them.
    async fn serve(pieces: Vec<Vec<u8>>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0_u8; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            for piece in pieces {
                socket.write_all(&piece).await.unwrap();
                socket.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        addr
    }

    /// `text` as one HTTP chunk.
    fn chunk(text: &str) -> String {
        format!("{:x}\r\n{text}\r\n", text.len())
    }

    async fn collect(addr: SocketAddr) -> Vec<SseEvent> {
        let mut stream = SseStream::open(addr, "/api/jobs/x/events").await.unwrap();
        let mut at = Instant::now();
        let mut events = Vec::new();
        while let Some(event) = stream.next(&mut at).await.unwrap() {
            events.push(event);
        }
        events
    }

    #[tokio::test]
    async fn chunked_events_split_anywhere_are_reassembled_in_order() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let body = [
            chunk("id: 1\nevent: progress\ndata: {\"step\":1,\"total\":8}\n\n"),
            chunk(": keep-alive\n\n"),
            chunk("id: 2\nevent: progress\ndata: {\"step\":2,\"total\":8}\n\n"),
            "0\r\n\r\n".to_owned(),
        ]
        .concat();
        // Cut the body at awkward places: inside a size line, a CRLF and an event.
        let mut pieces = vec![head.as_bytes().to_vec()];
        let bytes = body.as_bytes();
        let cuts = [1, 30, 45, 58, 59, 90, bytes.len()];
        let mut start = 0;
        for cut in cuts {
            pieces.push(bytes[start..cut].to_vec());
            start = cut;
        }
        let events = collect(serve(pieces).await).await;
        let names: Vec<&str> = events.iter().map(|event| event.name.as_str()).collect();
        assert_eq!(names, ["progress", "progress"]);
        assert_eq!(events[1].data, r#"{"step":2,"total":8}"#);
    }

    #[tokio::test]
    async fn a_stream_without_chunked_encoding_ends_when_the_connection_closes() {
        let response = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
                        event: completed\ndata: {}\n\ndata: x\ndata: y\n\n";
        let events = collect(serve(vec![response.as_bytes().to_vec()]).await).await;
        assert_eq!(
            events[0],
            SseEvent {
                name: "completed".to_owned(),
                data: "{}".to_owned()
            }
        );
        assert_eq!(
            events[1],
            SseEvent {
                name: "message".to_owned(),
                data: "x\ny".to_owned()
            }
        );
    }

    #[tokio::test]
    async fn an_error_status_is_reported_with_its_status_line() {
        let addr = serve(vec![
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
        ])
        .await;
        let error = SseStream::open(addr, "/api/jobs/x/events").await.err().unwrap();
        assert!(
            matches!(&error, SseError::Status(line) if line.contains("404")),
            "{error}"
        );
    }
}
