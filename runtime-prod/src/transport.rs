//! The peer transport: TCP on glommio between the members of a cluster.
//!
//! Each member dials every peer it sends to and keeps one outbound connection
//! per peer; a member's own listener only reads. So a connection carries
//! traffic one way, and a reply (an append ack, a forwarded request's answer)
//! travels on the other member's connection.
//!
//! - **Handshake**: the dialer sends a [`Handshake`] naming its cluster, itself
//!   and the member it wants; the acceptor answers with its own, or with a
//!   [`crate::wire::Refusal`] and closes. Both sides log why a connection was
//!   refused (another cluster, wrong member, incompatible version).
//! - **Frames**: core's checksummed Raft frames (`LKSP`) and forward frames
//!   (`LKFW`); a frame larger than `max_frame_bytes`, a bad checksum or an
//!   undecodable body closes the connection with a log line (the dialer
//!   reconnects; Raft retransmits what was lost).
//! - **Backpressure**: a bounded queue per peer (`peer_queue_messages`); when it
//!   is full new messages to that peer are dropped and counted: Raft treats
//!   them as lost and retries, so a slow or dead peer never grows memory.
//! - **Batching**: the writer takes everything queued for a peer and writes it
//!   with one `write_all`.
//! - **TLS** (when the member has peer TLS): mutual TLS under the handshake
//!   above. The dialer presents its member certificate and verifies the
//!   acceptor's against the cluster CA bundle; the acceptor requires a client
//!   certificate signed by that bundle. A refused TLS handshake is logged
//!   (warning, with the remote address and the reason) and counted in the TLS
//!   context's status (`lockstep_network_peer_tls_handshake_failures_total`).
//! - **Reconnect**: exponential backoff from `reconnect_backoff_min_ms` to
//!   `reconnect_backoff_max_ms` with ±50 % jitter.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use lockstep_core::codec::{decode_message, encode_message, frame_len, MAGIC};
use lockstep_core::{Message, NodeId};
use rustls::ClientConfig;

use crate::local::Notify;
use crate::tls::{Conn, TlsContext};
use crate::wire::{Forward, Handshake, FORWARD_MAGIC, FRAME_HEADER_LEN, HANDSHAKE_FIXED_LEN, PROTOCOL_VERSION};

/// How long frames for an unreachable peer are kept before they are dropped.
const STALE_AFTER: Duration = Duration::from_secs(2);

/// Limits and timings of the peer transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportOptions {
    /// The largest frame accepted from a peer, in bytes.
    pub max_frame_bytes: u32,
    /// Frames queued for one peer before new ones are dropped.
    pub peer_queue_messages: usize,
    /// The first reconnect delay.
    pub reconnect_backoff_min_ms: u64,
    /// The longest reconnect delay.
    pub reconnect_backoff_max_ms: u64,
    /// How long a dial (connect and handshake) may take.
    pub dial_timeout_ms: u64,
}

impl Default for TransportOptions {
    fn default() -> TransportOptions {
        TransportOptions {
            max_frame_bytes: 64 << 20,
            peer_queue_messages: 4096,
            reconnect_backoff_min_ms: 50,
            reconnect_backoff_max_ms: 2000,
            dial_timeout_ms: 1000,
        }
    }
}

/// What arrived from a peer.
#[derive(Debug)]
pub enum Inbound {
    /// A Raft message (checksum-verified and decoded).
    Message(Message),
    /// A forwarded request or a reply to one.
    Forward {
        /// The member that sent it.
        from: NodeId,
        /// The frame.
        frame: Forward,
    },
}

/// Counters of one peer, for metrics and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Bytes written to the peer.
    pub sent_bytes: u64,
    /// Bytes read from the peer.
    pub received_bytes: u64,
    /// Frames dropped because the peer's queue was full.
    pub dropped_frames: u64,
    /// Whether the outbound connection is up.
    pub connected: bool,
    /// Successful dials.
    pub connects: u64,
    /// Round-trip time of the last handshake, µs.
    pub handshake_rtt_us: u64,
}

struct Peer {
    address: String,
    queue: VecDeque<Vec<u8>>,
    queued: Notify,
    stats: PeerStats,
    removed: bool,
}

struct Shared {
    local: NodeId,
    cluster_id: u64,
    options: TransportOptions,
    peers: BTreeMap<NodeId, Rc<RefCell<Peer>>>,
    /// Bytes received per sending member.
    received: BTreeMap<NodeId, u64>,
    /// This member's advertised peer address, sent in handshakes.
    advertise: String,
    /// Peer TLS (mutual), if on.
    tls: Option<TlsContext>,
    closed: bool,
    /// Notified by [`Transport::close`]: ends the accept loop.
    closing: crate::local::Notify,
}

/// The peer transport of one member. Cheap to clone; lives on one executor.
#[derive(Clone)]
pub struct Transport {
    shared: Rc<RefCell<Shared>>,
}

impl Transport {
    /// A transport for member `local` of cluster `cluster_id`, advertising
    /// `advertise` as its peer address, with no peers yet; with mutual TLS
    /// on every connection when `tls` is set.
    pub fn new(
        local: NodeId,
        cluster_id: u64,
        advertise: String,
        options: TransportOptions,
        tls: Option<TlsContext>,
    ) -> Transport {
        Transport {
            shared: Rc::new(RefCell::new(Shared {
                local,
                cluster_id,
                options,
                peers: BTreeMap::new(),
                received: BTreeMap::new(),
                advertise,
                tls,
                closed: false,
                closing: crate::local::Notify::new(),
            })),
        }
    }

    /// Adds a peer (or changes its address) and starts its writer task.
    pub fn set_peer(&self, id: NodeId, address: String) {
        let mut shared = self.shared.borrow_mut();
        if id == shared.local {
            return;
        }
        if let Some(peer) = shared.peers.get(&id) {
            let mut peer = peer.borrow_mut();
            if peer.address != address {
                tracing::info!(peer = id, %address, "peer address changed");
                peer.address = address;
            }
            return;
        }
        let peer = Rc::new(RefCell::new(Peer {
            address,
            queue: VecDeque::new(),
            queued: Notify::new(),
            stats: PeerStats::default(),
            removed: false,
        }));
        shared.peers.insert(id, peer.clone());
        let (local, cluster_id, options) = (shared.local, shared.cluster_id, shared.options);
        let advertise = shared.advertise.clone();
        let tls = shared.tls.as_ref().and_then(TlsContext::client_config);
        let dialer = Dialer { local, cluster_id, advertise, tls };
        glommio::spawn_local(write_to_peer(dialer, id, options, peer)).detach();
    }

    /// Stops sending to a peer.
    pub fn remove_peer(&self, id: NodeId) {
        if let Some(peer) = self.shared.borrow_mut().peers.remove(&id) {
            let mut peer = peer.borrow_mut();
            peer.removed = true;
            peer.queue.clear();
            peer.queued.notify();
        }
    }

    /// The address of a peer.
    pub fn peer_address(&self, id: NodeId) -> Option<String> {
        self.shared.borrow().peers.get(&id).map(|p| p.borrow().address.clone())
    }

    /// Every peer's address.
    pub fn peer_addresses(&self) -> BTreeMap<NodeId, String> {
        self.shared.borrow().peers.iter().map(|(id, p)| (*id, p.borrow().address.clone())).collect()
    }

    /// Queues a Raft message for its receiver (dropped when the receiver is
    /// unknown or its queue is full: Raft retries).
    pub fn send(&self, message: &Message) {
        self.enqueue(message.to, encode_message(message));
    }

    /// Queues a forward frame for `to`.
    pub fn forward(&self, to: NodeId, frame: &Forward) {
        self.enqueue(to, frame.encode());
    }

    fn enqueue(&self, to: NodeId, frame: Vec<u8>) {
        let shared = self.shared.borrow();
        let Some(peer) = shared.peers.get(&to) else {
            tracing::trace!(peer = to, "frame for an unknown peer dropped");
            return;
        };
        let mut peer = peer.borrow_mut();
        if peer.queue.len() >= shared.options.peer_queue_messages {
            peer.stats.dropped_frames += 1;
            return;
        }
        peer.queue.push_back(frame);
        peer.queued.notify();
    }

    /// Counters per peer.
    pub fn stats(&self) -> BTreeMap<NodeId, PeerStats> {
        let shared = self.shared.borrow();
        let mut out: BTreeMap<NodeId, PeerStats> = shared.peers.iter().map(|(id, p)| (*id, p.borrow().stats)).collect();
        for (from, bytes) in &shared.received {
            out.entry(*from).or_default().received_bytes = *bytes;
        }
        out
    }

    /// Stops every writer task and refuses new inbound frames.
    pub fn close(&self) {
        let ids: Vec<NodeId> = self.shared.borrow().peers.keys().copied().collect();
        for id in ids {
            self.remove_peer(id);
        }
        self.shared.borrow_mut().closed = true;
        let closing = self.shared.borrow().closing.clone();
        closing.notify();
    }

    /// Accepts peer connections on `listener` until the transport is closed,
    /// handing every frame to `deliver`.
    pub async fn serve(&self, listener: TcpListener, deliver: Rc<dyn Fn(Inbound)>) {
        let closing = self.shared.borrow().closing.clone();
        let seen = closing.generation();
        loop {
            if self.shared.borrow().closed {
                // The listener is dropped here: the port is free for a member
                // started again in the same process.
                return;
            }
            let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
                closing.changed_since(seen).await;
                None
            })
            .await;
            let Some(accepted) = accepted else { return };
            let stream = match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!("peer listener: accept failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.shared.borrow().closed {
                return;
            }
            let this = self.clone();
            let deliver = deliver.clone();
            let tls = self.shared.borrow().tls.clone();
            glommio::spawn_local(async move {
                let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                let stream = match &tls {
                    None => Conn::Plain(stream),
                    Some(tls) => match crate::tls::accept(tls, stream).await {
                        Ok(conn) => conn,
                        Err((reason, e)) => {
                            tracing::warn!(%remote, reason, "refused a peer connection: TLS handshake failed: {e}");
                            return;
                        }
                    },
                };
                if let Err(why) = this.read_from_peer(stream, deliver).await {
                    tracing::debug!(%remote, "peer connection closed: {why}");
                }
            })
            .detach();
        }
    }

    async fn read_from_peer(&self, mut stream: Conn, deliver: Rc<dyn Fn(Inbound)>) -> Result<(), String> {
        let (local, cluster_id, max_frame) = {
            let shared = self.shared.borrow();
            (shared.local, shared.cluster_id, shared.options.max_frame_bytes)
        };
        stream.tcp().set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        let hello = read_handshake(&mut stream).await?;
        let decision = hello.check_dialer(cluster_id, local);
        let answer = Handshake {
            version: PROTOCOL_VERSION,
            status: decision.err().map_or(0, |r| r as u16),
            cluster_id,
            from: local,
            to: hello.from,
            address: self.shared.borrow().advertise.clone(),
        };
        stream.write_all(&answer.encode()).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        if let Err(refusal) = decision {
            tracing::warn!(
                peer = hello.from,
                peer_cluster = format_args!("{:016x}", hello.cluster_id),
                peer_version = hello.version,
                "refused a peer connection: {refusal}"
            );
            return Err(format!("refused: {refusal}"));
        }
        stream.tcp().set_read_timeout(None).map_err(|e| e.to_string())?;
        let from = hello.from;
        // A member this one does not know yet (one just added) tells where it
        // listens: learn it, so this member can reach it if it leads later.
        if !hello.address.is_empty() && !self.shared.borrow().peers.contains_key(&from) {
            tracing::info!(peer = from, address = %hello.address, "learned a new peer's address from its handshake");
            self.set_peer(from, hello.address.clone());
        }
        let mut reader = futures_lite::io::BufReader::with_capacity(64 << 10, stream);
        let mut header = [0u8; FRAME_HEADER_LEN];
        let mut body = Vec::new();
        loop {
            reader.read_exact(&mut header).await.map_err(|e| e.to_string())?;
            let received = if header[0..4] == MAGIC {
                let total = frame_len(&header).map_err(|e| format!("bad frame from member {from}: {e}"))?;
                if total - FRAME_HEADER_LEN > max_frame as usize {
                    tracing::warn!(peer = from, bytes = total, "peer frame over transport.max_frame_bytes; closing");
                    return Err("frame too large".into());
                }
                body.clear();
                body.extend_from_slice(&header);
                body.resize(total, 0);
                reader.read_exact(&mut body[FRAME_HEADER_LEN..]).await.map_err(|e| e.to_string())?;
                let message = decode_message(&body).map_err(|e| {
                    tracing::warn!(peer = from, "undecodable Raft frame from a peer: {e}; closing the connection");
                    e.to_string()
                })?;
                if message.from != from || message.to != local {
                    tracing::warn!(peer = from, "Raft frame addressed {} → {}; closing", message.from, message.to);
                    return Err("misaddressed frame".into());
                }
                deliver(Inbound::Message(message));
                total
            } else if header[0..4] == FORWARD_MAGIC {
                let len = Forward::body_len(&header, max_frame).map_err(|e| e.to_string())?;
                body.clear();
                body.resize(len, 0);
                reader.read_exact(&mut body).await.map_err(|e| e.to_string())?;
                let frame = Forward::decode(&header, &body).map_err(|e| {
                    tracing::warn!(peer = from, "{e}; closing the connection");
                    e.to_string()
                })?;
                deliver(Inbound::Forward { from, frame });
                FRAME_HEADER_LEN + len
            } else {
                tracing::warn!(peer = from, "unknown frame magic {:?} from a peer; closing", &header[0..4]);
                return Err("unknown frame".into());
            };
            *self.shared.borrow_mut().received.entry(from).or_default() += received as u64;
        }
    }
}

/// Reads one handshake (fixed part, then the announced rest).
async fn read_handshake(stream: &mut Conn) -> Result<Handshake, String> {
    let mut fixed = [0u8; HANDSHAKE_FIXED_LEN];
    stream.read_exact(&mut fixed).await.map_err(|e| format!("reading the handshake: {e}"))?;
    let rest = Handshake::rest_len(&fixed).map_err(|e| e.to_string())?;
    let mut bytes = fixed.to_vec();
    bytes.resize(HANDSHAKE_FIXED_LEN + rest, 0);
    stream.read_exact(&mut bytes[HANDSHAKE_FIXED_LEN..]).await.map_err(|e| format!("reading the handshake: {e}"))?;
    Handshake::decode(&bytes).map_err(|e| e.to_string())
}

/// A jittered exponential backoff; the jitter comes from a xorshift seeded by
/// the peer ids (the runtime may use any randomness; this keeps it dependency-free).
struct Backoff {
    current_ms: u64,
    min_ms: u64,
    max_ms: u64,
    state: u64,
}

impl Backoff {
    fn new(min_ms: u64, max_ms: u64, seed: u64) -> Backoff {
        Backoff { current_ms: min_ms, min_ms, max_ms, state: seed | 1 }
    }

    fn reset(&mut self) {
        self.current_ms = self.min_ms;
    }

    fn next_delay(&mut self) -> Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let base = self.current_ms.max(1);
        // Between half and one and a half of the current delay.
        let delay = base / 2 + self.state % base;
        self.current_ms = (self.current_ms * 2).min(self.max_ms);
        Duration::from_millis(delay)
    }
}

/// What a member needs to dial its peers.
struct Dialer {
    local: NodeId,
    cluster_id: u64,
    advertise: String,
    /// Peer TLS's client side, if on.
    tls: Option<Arc<ClientConfig>>,
}

async fn dial(dialer: &Dialer, id: NodeId, address: &str, timeout: Duration) -> Result<(Conn, u64), String> {
    let Dialer { local, cluster_id, .. } = *dialer;
    let target: SocketAddr = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to nothing"))?;
    let started = std::time::Instant::now();
    let stream = TcpStream::connect_timeout(target, timeout).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let mut stream = match &dialer.tls {
        None => Conn::Plain(stream),
        Some(config) => {
            let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
            crate::tls::connect(config.clone(), host, stream).await.map_err(|e| format!("TLS handshake: {e}"))?
        }
    };
    let hello = Handshake {
        version: PROTOCOL_VERSION,
        status: 0,
        cluster_id,
        from: local,
        to: id,
        address: dialer.advertise.clone(),
    };
    stream.write_all(&hello.encode()).await.map_err(|e| format!("handshake: {e}"))?;
    stream.flush().await.map_err(|e| format!("handshake: {e}"))?;
    let answer = read_handshake(&mut stream).await?;
    answer.check_answer(cluster_id, id)?;
    let rtt_us = started.elapsed().as_micros() as u64;
    Ok((stream, rtt_us))
}

/// The writer task of one peer: dial, then write batches of queued frames,
/// redialling with backoff after any failure, until the peer is removed.
async fn write_to_peer(dialer: Dialer, id: NodeId, options: TransportOptions, peer: Rc<RefCell<Peer>>) {
    let local = dialer.local;
    let mut backoff = Backoff::new(
        options.reconnect_backoff_min_ms,
        options.reconnect_backoff_max_ms,
        local.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ id,
    );
    let mut last_error = String::new();
    let mut unreachable_since: Option<std::time::Instant> = None;
    let mut batch = Vec::new();
    'dial: loop {
        if peer.borrow().removed {
            return;
        }
        let address = peer.borrow().address.clone();
        let timeout = Duration::from_millis(options.dial_timeout_ms);
        let mut stream = match dial(&dialer, id, &address, timeout).await {
            Ok((stream, rtt_us)) => {
                let mut p = peer.borrow_mut();
                p.stats.connected = true;
                p.stats.connects += 1;
                p.stats.handshake_rtt_us = rtt_us;
                tracing::info!(peer = id, %address, "connected to peer");
                last_error.clear();
                unreachable_since = None;
                backoff.reset();
                stream
            }
            Err(why) => {
                if why != last_error {
                    // Log each new reason once, not every retry.
                    tracing::warn!(peer = id, %address, "cannot reach peer: {why}; retrying with backoff");
                    last_error = why;
                }
                // Frames queued while the peer is unreachable for long are stale
                // by the time it comes back (Raft resends what still matters);
                // a short gap (a peer still starting) keeps them.
                let down_for = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if down_for.elapsed() > STALE_AFTER {
                    peer.borrow_mut().queue.clear();
                }
                glommio::timer::sleep(backoff.next_delay()).await;
                continue 'dial;
            }
        };
        loop {
            let seen = peer.borrow().queued.generation();
            {
                let mut p = peer.borrow_mut();
                if p.removed {
                    return;
                }
                batch.clear();
                while let Some(frame) = p.queue.pop_front() {
                    batch.extend_from_slice(&frame);
                    if batch.len() >= 1 << 20 {
                        break;
                    }
                }
            }
            if batch.is_empty() {
                let queued = peer.borrow().queued.clone();
                queued.changed_since(seen).await;
                continue;
            }
            let written = match stream.write_all(&batch).await {
                Ok(()) => stream.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                peer.borrow_mut().stats.connected = false;
                tracing::info!(peer = id, "peer connection lost: {e}; reconnecting");
                glommio::timer::sleep(backoff.next_delay()).await;
                continue 'dial;
            }
            peer.borrow_mut().stats.sent_bytes += batch.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(50, 2000, 7);
        let delays: Vec<u64> = (0..10).map(|_| backoff.next_delay().as_millis() as u64).collect();
        for (i, delay) in delays.iter().enumerate() {
            let base = (50u64 << i.min(6)).min(2000);
            assert!(*delay >= base / 2 && *delay < base / 2 + base, "delay {delay} for base {base}");
        }
        backoff.reset();
        assert!(backoff.next_delay().as_millis() < 75);
    }
}
