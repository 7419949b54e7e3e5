//! Serving the router over HTTP/1.1 with the limits a server on the internet needs: a time limit
//! on request heads (slowloris), on connections where nothing moves, and a bound on open
//! connections. `axum::serve` gives hyper no timer and takes no limits, so connections are
//! served here with hyper's own connection builder.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// The connection limits of [`serve_with`], each with its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeConfig {
    /// `NEXUS_HEADER_TIMEOUT_MS`: how long a request head (request line and headers) may take to
    /// arrive once the server waits for one; past it the connection is closed. The wait for the
    /// next request on a kept-alive connection counts too, so it also bounds how long an idle
    /// keep-alive connection stays open. Default 10 s.
    pub header_timeout: Duration,
    /// `NEXUS_IDLE_TIMEOUT_MS`: a connection on which no byte moves either way for this long
    /// (a client that stops reading its answer, or stops sending its body) is closed. Upgraded
    /// WebSocket connections keep to their own ping and pong instead. Default 60 s.
    pub idle_timeout: Duration,
    /// `NEXUS_MAX_CONNECTIONS`: open connections (WebSocket ones included). At the bound the
    /// server stops accepting: new connections wait in the kernel's accept queue until one
    /// closes, as Go's `LimitListener` and nginx do, rather than being accepted and dropped.
    /// Default 10000; keep it below the process's open-file limit.
    pub max_connections: usize,
    /// `NEXUS_MAX_HEADER_BYTES`: most bytes of a request head (request line and headers). Above
    /// it the request is refused with `431` and the error envelope; a head more than twice as
    /// large is cut off by hyper while it is read (a bare `431`, the connection closed), so no
    /// request can make the server buffer more. Default 32768.
    pub max_header_bytes: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_header_bytes: 32_768,
        }
    }
}

/// Serves `router` on `listener` with the default [`ServeConfig`] until `shutdown` completes,
/// then finishes requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ServeConfig::default(), shutdown).await
}

/// Serves `router` on `listener` within `config`'s limits until `shutdown` completes: then it
/// stops accepting, asks every open connection to close after its request in flight, and
/// returns once they have. Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_header_size(config.max_header_bytes.max(1024).saturating_mul(2));
    let builder = Arc::new(builder);
    // Connections watch `draining`; each holds a `closed` receiver, so the sender sees every
    // one of them gone when `closed()` resolves.
    let (draining, _) = watch::channel(false);
    let (closed_tx, closed_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        // A slot first: at the bound, new connections wait in the kernel's queue.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // No Nagle: WebSocket frames and answers are small and latency matters more than
        // packets.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        tokio::spawn(connection(
            Arc::clone(&builder),
            router.clone(),
            Tracked::new(tcp, slot),
            peer,
            config,
            draining.subscribe(),
            closed_rx.clone(),
        ));
    }
    drop(listener);
    drop(closed_rx);
    draining.send_replace(true);
    closed_tx.closed().await;
    Ok(())
}

/// Accept errors: a connection that died in the queue is nobody's business; running out of
/// descriptors or memory is, and accepting again at once would spin, so wait a little.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One connection: served until it ends, is idle for the idle timeout, or the server drains.
async fn connection(
    builder: Arc<hyper::server::conn::http1::Builder>,
    router: Router,
    io: Tracked,
    peer: SocketAddr,
    config: ServeConfig,
    mut draining: watch::Receiver<bool>,
    _closed: watch::Receiver<()>,
) {
    let activity = Arc::clone(&io.activity);
    let max_header_bytes = config.max_header_bytes;
    let idle_timeout = config.idle_timeout;
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let size = head_size(&request);
        if size > max_header_bytes {
            request.extensions_mut().insert(HeadTooLarge {
                size,
                limit: max_header_bytes,
            });
        }
        let mut router = router.clone();
        async move {
            // A router is always ready; its error type is `Infallible`.
            tower::Service::call(&mut router, request.map(Body::new)).await
        }
    });
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = pin!(conn);
    let mut idle = pin!(idle(activity, idle_timeout));
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut idle => {
                tracing::debug!(%peer, idle_ms = idle_timeout.as_millis() as u64, "idle connection closed");
                return;
            }
            changed = draining.changed(), if !asked_to_close => {
                if changed.is_err() || *draining.borrow() {
                    asked_to_close = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A request whose head is larger than `NEXUS_MAX_HEADER_BYTES`: the router refuses it with the
/// envelope (`431`), so it carries a request id like every other refusal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadTooLarge {
    pub(crate) size: usize,
    pub(crate) limit: usize,
}

/// The bytes of a request head as sent: request line, each `name: value\r\n`, the blank line.
fn head_size<B>(request: &hyper::Request<B>) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |p| p.as_str().len());
    let line = request.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + headers + 2
}

/// Resolves once nothing has moved on the connection for `limit`.
async fn idle(activity: Arc<Activity>, limit: Duration) {
    loop {
        let quiet = activity.quiet_for();
        if quiet >= limit {
            return;
        }
        tokio::time::sleep(limit - quiet).await;
    }
}

/// When a byte last moved on a connection.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened`.
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let since_open = self.opened.elapsed();
        since_open.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A TCP stream that records when bytes move and holds its connection slot for as long as it
/// lives, upgraded to a WebSocket included.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
    _slot: OwnedSemaphorePermit,
}

impl Tracked {
    fn new(inner: TcpStream, slot: OwnedSemaphorePermit) -> Self {
        Tracked {
            inner,
            activity: Arc::new(Activity {
                opened: Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
            _slot: slot,
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
