//! Listening sockets.
//!
//! glommio's `TcpListener::bind` sets `SO_REUSEPORT`, meant for several
//! executors sharing one port. A member has one executor per process, and with
//! `SO_REUSEPORT` a second process (or a second listener of this one) binding
//! the same port succeeds silently and the kernel splits the connections
//! between the two: a client would reach another member's admin server, say.
//! [`listen`] binds without it, so a busy port fails at start with
//! "address in use".

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Binds and listens on `addr` (port 0: any free port) for the current glommio
/// executor; fails if any socket already listens there.
pub fn listen(addr: SocketAddr) -> io::Result<glommio::net::TcpListener> {
    // std sets SO_REUSEADDR (a restart may rebind a port with connections in
    // TIME_WAIT) but not SO_REUSEPORT.
    let std = std::net::TcpListener::bind(addr)?;
    // SAFETY: `into_raw_fd` hands over a bound, listening socket that nothing
    // else owns; glommio's listener takes ownership of it.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(std.into_raw_fd()) })
}

/// Whether nothing listens on loopback port `port` now.
pub fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The ports [`free_port`] picks from: below Linux's ephemeral range
/// (32768-60999 by default), so that no outgoing connection takes a picked port
/// between the pick and the bind.
pub const FREE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// How many ports [`free_port`] has handed out (or skipped) in this process.
static PICKED: AtomicU32 = AtomicU32::new(0);

/// A loopback port that nothing listens on now and that this process has not
/// handed out before, for configs that need the port before the listener
/// exists (the dev cluster, tests). Binding port 0 and closing the socket can
/// hand the same port out twice and picks from the ephemeral range, where
/// outgoing connections take ports too; this does neither. Another process may
/// still take the port first: the listener then fails loudly ([`listen`]).
pub fn free_port() -> io::Result<u16> {
    let span = u32::from(FREE_PORTS.end - FREE_PORTS.start);
    // Processes start at different places, so two of them seldom probe the
    // same ports at once.
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let picked = PICKED.fetch_add(1, Ordering::Relaxed);
        let port = FREE_PORTS.start + ((start + picked) % span) as u16;
        if port_free(port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(io::ErrorKind::AddrInUse, format!("no free loopback port in {FREE_PORTS:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_port_is_refused() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let first = listen("127.0.0.1:0".parse().unwrap()).unwrap();
                let addr = first.local_addr().unwrap();
                let second = listen(addr).unwrap_err();
                assert_eq!(second.kind(), io::ErrorKind::AddrInUse);
                // Nor does glommio's own bind slip in beside it.
                assert!(glommio::net::TcpListener::bind(addr).is_err());
                // Connections still reach the first.
                let client = std::net::TcpStream::connect(addr).unwrap();
                let accepted = first.accept().await.unwrap();
                assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn free_ports_are_distinct_free_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|p| FREE_PORTS.contains(p)));
        // A port someone listens on is skipped.
        let busy = std::net::TcpListener::bind(("127.0.0.1", free_port().unwrap())).unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        PICKED.fetch_sub(1, Ordering::Relaxed);
        assert_ne!(free_port().unwrap(), busy_port);
    }
}
