//! hyper 1 on glommio: the I/O, executor and timer glue, and a server loop that
//! serves HTTP/1.1 and HTTP/2 (h2c with prior knowledge, what gRPC clients
//! send to `http://` endpoints) on the same port.
//!
//! No tokio runtime is involved: hyper's traits are implemented over glommio's
//! `TcpStream` and timers, and every connection is a local task on the
//! executor that accepted it, so services may hold `Rc` state and await
//! glommio futures.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use hyper::body::{Body, Incoming};
use hyper::rt::{Read, ReadBufCursor, Sleep, Timer, Write};
use hyper::service::Service;
use hyper_util::server::conn::auto;

/// Limits of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// HTTP/2 streams one connection may have open.
    pub max_concurrent_streams: u32,
    /// HTTP/2 keep-alive pings on idle connections (`None`: off).
    pub keepalive_interval: Option<Duration>,
    /// A connection whose keep-alive ping is not answered within this is closed.
    pub keepalive_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            max_concurrent_streams: 1000,
            keepalive_interval: None,
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// A glommio TCP stream as hyper I/O.
pub struct GlommioIo(pub TcpStream);

impl Read for GlommioIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        // SAFETY: the slice is only written by `poll_read` below (initialised by
        // zeroing first), and `advance` is called with the bytes it wrote.
        let uninit = unsafe { buf.as_mut() };
        for byte in uninit.iter_mut() {
            byte.write(0);
        }
        // SAFETY: every byte was just initialised.
        let slice = unsafe { &mut *(uninit as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        match Pin::new(&mut self.get_mut().0).poll_read(cx, slice) {
            Poll::Ready(Ok(n)) => {
                // SAFETY: `n` bytes were filled by the read.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Write for GlommioIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.get_mut().0).poll_close(cx) {
            // The peer closed first: nothing left to shut down.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

/// Runs hyper's background futures as local tasks on the current executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlommioExecutor;

impl<F> hyper::rt::Executor<F> for GlommioExecutor
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, future: F) {
        glommio::spawn_local(future).detach();
    }
}

/// hyper's timer on glommio's timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlommioTimer;

struct GlommioSleep {
    timer: glommio::timer::Timer,
}

// SAFETY: hyper requires `Sleep: Send + Sync`, but glommio timers are `Rc`
// based. Every connection (and so every sleep hyper creates for it) lives in a
// local task of the executor that created it and is never moved to another
// thread, so the value is only ever touched from one thread.
unsafe impl Send for GlommioSleep {}
// SAFETY: see `Send` above.
unsafe impl Sync for GlommioSleep {}

impl Future for GlommioSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().timer).poll(cx).map(|_| ())
    }
}

impl Sleep for GlommioSleep {}

impl Timer for GlommioTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(GlommioSleep { timer: glommio::timer::Timer::new(duration) })
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }
}

/// Accepts connections on `listener` and serves each with a service from
/// `make_service`, HTTP/1.1 or HTTP/2 as the client speaks, until the listener
/// fails for good.
pub async fn serve<S, M, B>(listener: TcpListener, make_service: M, options: ServeOptions)
where
    M: Fn() -> S,
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + 'static,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let local: Option<SocketAddr> = listener.local_addr().ok();
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(listen = ?local, "accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = make_service();
        let options = options.clone();
        glommio::spawn_local(async move {
            let mut builder = auto::Builder::new(GlommioExecutor);
            builder
                .http2()
                .timer(GlommioTimer)
                .max_concurrent_streams(options.max_concurrent_streams)
                .keep_alive_interval(options.keepalive_interval)
                .keep_alive_timeout(options.keepalive_timeout);
            builder.http1().timer(GlommioTimer);
            if let Err(e) = builder.serve_connection(GlommioIo(stream), service).await {
                tracing::debug!("connection ended: {e}");
            }
        })
        .detach();
    }
}
