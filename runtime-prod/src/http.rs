//! HTTP serving on glommio with hyper: gRPC (HTTP/2 cleartext, prior
//! knowledge, as etcd clients speak it on `http://` endpoints) and plain
//! HTTP/1.1 (curl, Prometheus) on the same port.
//!
//! hyper is runtime-agnostic; this module gives it what it needs from glommio:
//! [`GIo`] (hyper's `Read`/`Write` over a glommio TCP stream), [`GExec`] (it
//! spawns hyper's per-stream tasks with `glommio::spawn_local`, so nothing has
//! to be `Send`) and [`GTimer`] (sleeps for HTTP/2 keep-alive pings and HTTP/1
//! header timeouts). [`serve`] accepts connections and serves each with
//! hyper-util's *auto* builder, which reads the connection preface and picks
//! HTTP/1.1 or HTTP/2; [`ServeOptions::protocols`] can pin one.
//!
//! Services are created per connection by the caller's `make_service` and may
//! be `!Send` (an `Rc` backend on this executor thread). Callers bind with
//! [`HttpListener::bind`] and need no glommio type ([`serve`] also takes a
//! `glommio::net::TcpListener`).
//!
//! Timers: hyper demands `Send + Sync` sleeps, and glommio's timers are
//! thread-local (`Rc`). Rather than asserting `Send` with `unsafe`, [`GTimer`]
//! uses `futures-timer`, whose sleeps are `Send + Sync` and driven by one
//! helper thread per process. It fires only for keep-alive pings and header
//! timeouts, so its cost does not matter.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use hyper::body::{Body, Incoming};
use hyper::rt::{ReadBufCursor, Sleep, Timer};
use hyper_util::server::conn::auto;

use crate::tls::{Conn, TlsContext};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes read from the socket per read call.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// hyper's I/O traits over a glommio TCP stream.
///
/// Reads go through a small owned buffer and are copied into hyper's
/// (uninitialised) buffer, which keeps this code free of `unsafe`.
pub struct GIo {
    stream: Conn,
    chunk: Box<[u8]>,
}

impl GIo {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> GIo {
        GIo::with_conn(Conn::Plain(stream))
    }

    /// Wraps a plain or TLS connection.
    pub fn with_conn(stream: Conn) -> GIo {
        GIo { stream, chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice() }
    }
}

impl std::fmt::Debug for GIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GIo").field("peer", &self.stream.tcp().peer_addr().ok()).finish_non_exhaustive()
    }
}

impl hyper::rt::Read for GIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let want = buf.remaining().min(this.chunk.len());
        if want == 0 {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.stream).poll_read(cx, &mut this.chunk[..want]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&this.chunk[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for GIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.get_mut().stream).poll_close(cx) {
            // The peer closed first: nothing left to shut down.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

/// hyper's executor: spawns on the current glommio executor (no `Send`
/// needed).
#[derive(Debug, Clone, Copy, Default)]
pub struct GExec;

impl<F> hyper::rt::Executor<F> for GExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, future: F) {
        glommio::spawn_local(future).detach();
    }
}

/// hyper's timer (see the module doc for why it is not glommio's).
#[derive(Debug, Clone, Copy, Default)]
pub struct GTimer;

struct GSleep(futures_timer::Delay);

impl std::future::Future for GSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl Sleep for GSleep {}

impl Timer for GTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(GSleep(futures_timer::Delay::new(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        *sleep = self.sleep_until(new_deadline);
    }
}

/// Which HTTP versions a server speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 and HTTP/2 (prior knowledge), told apart by the preface.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only (gRPC).
    Http2,
}

/// Settings of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// The HTTP versions spoken.
    pub protocols: Protocols,
    /// Concurrent HTTP/2 streams (gRPC calls, watch streams included) per
    /// connection; etcd's default is effectively unbounded (`math.MaxUint32`),
    /// grpc-go clients open at most this many at a time.
    pub http2_streams_max: u32,
    /// Ping an idle HTTP/2 client this often (etcd's
    /// `--grpc-keepalive-interval`, 2 h); `None`: never.
    pub http2_keep_alive_interval: Option<Duration>,
    /// Close the connection when a ping is not answered within this (etcd's
    /// `--grpc-keepalive-timeout`, 20 s).
    pub http2_keep_alive_timeout: Duration,
    /// Time allowed for an HTTP/1 request's headers.
    pub http1_header_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            protocols: Protocols::Auto,
            http2_streams_max: 1024,
            http2_keep_alive_interval: Some(Duration::from_secs(2 * 3600)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http1_header_read_timeout: Duration::from_secs(30),
        }
    }
}

fn builder(options: &ServeOptions) -> auto::Builder<GExec> {
    let mut builder = auto::Builder::new(GExec);
    builder
        .http2()
        .timer(GTimer)
        .max_concurrent_streams(options.http2_streams_max)
        .keep_alive_interval(options.http2_keep_alive_interval)
        .keep_alive_timeout(options.http2_keep_alive_timeout);
    builder.http1().timer(GTimer).header_read_timeout(options.http1_header_read_timeout);
    match options.protocols {
        Protocols::Auto => builder,
        Protocols::Http1 => builder.http1_only(),
        Protocols::Http2 => builder.http2_only(),
    }
}

/// A bound TCP listener for [`serve`], so that callers outside this crate need
/// no glommio type. Must be created on the glommio executor that serves it.
#[derive(Debug)]
pub struct HttpListener(TcpListener);

impl HttpListener {
    /// Binds `addr` (port 0: any free port); a port another socket listens on
    /// is refused ([`crate::net::listen`]).
    pub fn bind(addr: SocketAddr) -> io::Result<HttpListener> {
        crate::net::listen(addr).map(HttpListener)
    }

    /// The bound address (with the port chosen for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr().map_err(io::Error::from)
    }
}

impl From<TcpListener> for HttpListener {
    fn from(listener: TcpListener) -> HttpListener {
        HttpListener(listener)
    }
}

/// A service that tells the services behind it who is calling: every request
/// carries the connection's remote address as a `std::net::SocketAddr`
/// extension (the API's audit records name it).
struct WithPeer<S> {
    inner: S,
    peer: Option<SocketAddr>,
}

impl<S> hyper::service::Service<http::Request<Incoming>> for WithPeer<S>
where
    S: hyper::service::Service<http::Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: http::Request<Incoming>) -> S::Future {
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(peer);
        }
        self.inner.call(request)
    }
}

/// Serves one accepted connection to its end; requests carry `peer` (see
/// [`WithPeer`]).
async fn serve_connection<S, B>(
    stream: Conn,
    service: S,
    peer: Option<SocketAddr>,
    options: ServeOptions,
) -> Result<(), BoxError>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>> + 'static,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    let builder = builder(&options);
    builder.serve_connection(GIo::with_conn(stream), WithPeer { inner: service, peer }).await
}

/// Accepts connections on `listener` forever, serving each in its own task on
/// this executor with a service from `make_service`. Accept errors (a full file
/// table, a connection reset before accept) are logged and retried after a
/// short pause; a connection's errors end only that connection.
pub async fn serve<S, B>(listener: impl Into<HttpListener>, make_service: impl Fn() -> S, options: ServeOptions)
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>> + 'static,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    serve_with_tls(listener, make_service, options, None).await;
}

/// [`serve`], with TLS when `tls` is set: each connection's handshake runs in
/// its own task (a slow client never holds up the accept loop), within
/// [`crate::tls::HANDSHAKE_TIMEOUT`]. A failed handshake (no client
/// certificate where one is required, a certificate from another CA, plain
/// text on a TLS port) is logged as a warning with the client's address and
/// the reason, and counted in the context's status.
pub async fn serve_with_tls<S, B>(
    listener: impl Into<HttpListener>,
    make_service: impl Fn() -> S,
    options: ServeOptions,
    tls: Option<TlsContext>,
) where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>> + 'static,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    serve_gated(listener, |_| Some(make_service()), options, tls).await;
}

/// [`serve_with_tls`], with a service made per connection from the client's
/// address: `make_service` returning `None` refuses the connection (it is
/// closed at once, before any TLS handshake; the caller counts and logs
/// what it refuses).
pub async fn serve_gated<S, B>(
    listener: impl Into<HttpListener>,
    make_service: impl Fn(Option<SocketAddr>) -> Option<S>,
    options: ServeOptions,
    tls: Option<TlsContext>,
) where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>> + 'static,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    let HttpListener(listener) = listener.into();
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer: Option<SocketAddr> = stream.peer_addr().ok();
        let Some(service) = make_service(peer) else {
            drop(stream);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(?peer, error = %e, "set_nodelay failed");
        }
        let tls = tls.clone();
        glommio::spawn_local(async move {
            let conn = match &tls {
                None => Conn::Plain(stream),
                Some(tls) => match crate::tls::accept(tls, stream).await {
                    Ok(conn) => conn,
                    Err((reason, e)) => {
                        tracing::warn!(listener = tls.listener(), ?peer, reason, "refused a TLS connection: {e}");
                        return;
                    }
                },
            };
            if let Err(e) = serve_connection(conn, service, peer, options).await {
                // Clients that just go away (etcdctl resets) end here too.
                tracing::debug!(?peer, error = %e, "connection ended with an error");
            }
        })
        .detach();
    }
}
