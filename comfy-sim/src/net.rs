//! The simulator's TCP edge: a listener that can refuse connections ("ComfyUI is down"), streams
//! that a restart cuts, the way a dying process cuts its sockets, and streams that freeze while the
//! process is stalled (the OS still accepts connections, but nobody reads or writes them).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Decides which connections live: bumping the epoch cuts every connection accepted before.
#[derive(Debug)]
pub(crate) struct Gate {
    epoch: watch::Sender<u64>,
    refusing: AtomicBool,
    /// While true, no connection is read or written (see `Faults::stall`).
    stalled: watch::Sender<bool>,
    /// Connections accepted and not yet closed.
    open: AtomicUsize,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            epoch: watch::Sender::new(0),
            refusing: AtomicBool::new(false),
            stalled: watch::Sender::new(false),
            open: AtomicUsize::new(0),
        }
    }
}

impl Gate {
    /// Cuts every open connection (HTTP keep-alive and WebSocket alike).
    pub(crate) fn cut_all(&self) {
        self.epoch.send_modify(|epoch| *epoch += 1);
    }

    /// While refusing, new connections are accepted and closed at once, and open ones are cut.
    pub(crate) fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
        if refusing {
            self.cut_all();
        }
    }

    fn refusing(&self) -> bool {
        self.refusing.load(Ordering::SeqCst)
    }

    /// Freezes (or thaws) every connection, open and future, where it stands.
    pub(crate) fn set_stalled(&self, stalled: bool) {
        self.stalled.send_replace(stalled);
    }

    pub(crate) fn is_stalled(&self) -> bool {
        *self.stalled.borrow()
    }

    /// Resolves once the process is not stalled (at once when it is not).
    pub(crate) fn resumed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stalled.subscribe();
        async move {
            // An error means the gate is gone with the simulator: nothing stalls any more.
            let _ = rx.wait_for(|stalled| !*stalled).await;
        }
    }

    /// Connections accepted and not yet closed (WebSockets included).
    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Resolves once the connections of the current epoch are cut.
    pub(crate) fn cut_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.epoch.subscribe();
        let accepted_in = *rx.borrow_and_update();
        async move {
            loop {
                if rx.changed().await.is_err() {
                    // The gate is gone with the simulator; nothing will cut this connection.
                    std::future::pending::<()>().await;
                }
                if *rx.borrow_and_update() != accepted_in {
                    return;
                }
            }
        }
    }
}

/// The listener axum serves from.
pub(crate) struct GatedListener {
    inner: TcpListener,
    gate: Arc<Gate>,
}

impl GatedListener {
    pub(crate) fn new(inner: TcpListener, gate: Arc<Gate>) -> Self {
        Self { inner, gate }
    }
}

impl axum::serve::Listener for GatedListener {
    type Io = GatedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            };
            if self.gate.refusing() {
                tracing::debug!(%addr, "refusing connection");
                drop(stream);
                continue;
            }
            self.gate.open.fetch_add(1, Ordering::SeqCst);
            return (
                GatedStream {
                    inner: stream,
                    cut: Box::pin(self.gate.cut_signal()),
                    dead: false,
                    resume: None,
                    gate: Arc::clone(&self.gate),
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A TCP stream that fails every read and write once its gate epoch has passed, and waits in every
/// read and write while the gate is stalled.
pub(crate) struct GatedStream {
    inner: TcpStream,
    cut: Signal,
    dead: bool,
    /// The wait for the end of a stall, while one lasts.
    resume: Option<Signal>,
    gate: Arc<Gate>,
}

impl GatedStream {
    fn is_cut(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.dead && self.cut.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        self.dead
    }

    /// Pending while the process is stalled; the waker is then woken when it resumes.
    fn poll_awake(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.gate.is_stalled() {
            self.resume = None;
            return Poll::Ready(());
        }
        let gate = &self.gate;
        let resume = self.resume.get_or_insert_with(|| Box::pin(gate.resumed()));
        let awake = resume.as_mut().poll(cx);
        if awake.is_ready() {
            self.resume = None;
        }
        awake
    }

    /// `Some` when the stream may not do IO now: a cut one answers `when_cut`, a stalled one waits.
    fn blocked<T>(&mut self, cx: &mut Context<'_>, when_cut: impl FnOnce() -> T) -> Option<Poll<T>> {
        if self.is_cut(cx) {
            return Some(Poll::Ready(when_cut()));
        }
        if self.poll_awake(cx).is_pending() {
            return Some(Poll::Pending);
        }
        None
    }
}

impl Drop for GatedStream {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::SeqCst);
    }
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection cut by the simulator")
}

impl AsyncRead for GatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(blocked) = self.blocked(cx, || Err(cut_error())) {
            return blocked;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(blocked) = self.blocked(cx, || Err(cut_error())) {
            return blocked;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(blocked) = self.blocked(cx, || Err(cut_error())) {
            return blocked;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(blocked) = self.blocked(cx, || Ok(())) {
            return blocked;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
