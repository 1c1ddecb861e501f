//! What travels on a peer connection besides core's Raft frames: the handshake
//! that opens every connection, and the frames that forward a client request to
//! the leader and carry its reply back. Pure encoding and checks; the transport
//! does the I/O.
//!
//! ```text
//! handshake:     "LKHS" | version u16 | status u16 | cluster u64 | from u64 | to u64
//!                | address len u16 | address (the sender's advertised peer address) | crc32c u32
//! forward frame:        "LKFW" | version u8 | kind u8 | 0u16 | body len u32 | body crc32c u32 | body
//! ```
//!
//! Core's Raft frames start with `LKSP` and carry the same 16-byte header shape,
//! so a reader looks at the first four bytes to tell them apart. All integers are
//! little-endian; every byte is covered by a CRC32C.

use lockstep_core::{ClientError, LogIndex, NodeId, Reply, Request, Response};

/// The peer protocol version this build speaks. A peer with another version is
/// refused with [`Refusal::Version`].
pub const PROTOCOL_VERSION: u16 = 1;
/// Magic bytes of a handshake.
pub const HANDSHAKE_MAGIC: [u8; 4] = *b"LKHS";
/// Length of a handshake's fixed part (up to and including the address length).
pub const HANDSHAKE_FIXED_LEN: usize = 34;
/// The longest advertised address a handshake carries.
pub const HANDSHAKE_ADDRESS_MAX: usize = 256;
/// Magic bytes of a forward frame.
pub const FORWARD_MAGIC: [u8; 4] = *b"LKFW";
/// Length of a frame header (forward frames and core's frames alike).
pub const FRAME_HEADER_LEN: usize = 16;
const FORWARD_VERSION: u8 = 1;
const KIND_REQUEST: u8 = 1;
const KIND_REPLY: u8 = 2;

/// The first thing each side of a peer connection sends. The dialer says who
/// it is and whom it wants; the acceptor answers with its own identity and a
/// status (0 = accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The sender's protocol version.
    pub version: u16,
    /// 0 from the dialer and in an acceptance; a [`Refusal`] code otherwise.
    pub status: u16,
    /// The sender's cluster.
    pub cluster_id: u64,
    /// The sender.
    pub from: NodeId,
    /// The member the sender wants to talk to.
    pub to: NodeId,
    /// The sender's advertised peer address (`host:port`), so that members learn
    /// where a newly added member listens; empty if unknown.
    pub address: String,
}

/// Why an acceptor refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The dialer belongs to another cluster.
    Cluster = 1,
    /// The dialer asked for another member id than the acceptor's.
    Member = 2,
    /// The dialer speaks another protocol version.
    Version = 3,
    /// The dialer claims a member id of 0, or the acceptor's own id.
    Identity = 4,
}

impl Refusal {
    fn from_code(code: u16) -> Option<Refusal> {
        [Refusal::Cluster, Refusal::Member, Refusal::Version, Refusal::Identity].into_iter().find(|r| *r as u16 == code)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Cluster => "it belongs to another cluster (check cluster.token and cluster.initial_members)",
            Refusal::Member => "it expected another member id at this address (check the peer addresses)",
            Refusal::Version => "it speaks an incompatible peer protocol version (upgrade or downgrade one side)",
            Refusal::Identity => "its member id is invalid (0, or the receiver's own id)",
        })
    }
}

/// A handshake that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a lockstep peer handshake (wrong magic: another protocol on this port).
    BadMagic,
    /// The checksum does not match.
    BadChecksum,
    /// Fewer or more bytes than the handshake announces.
    Truncated,
    /// The advertised address is longer than [`HANDSHAKE_ADDRESS_MAX`].
    AddressTooLong(usize),
    /// The advertised address is not UTF-8.
    BadAddress,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::BadMagic => {
                f.write_str("not a lockstep peer handshake (another protocol on the peer port?)")
            }
            HandshakeError::BadChecksum => f.write_str("handshake checksum mismatch"),
            HandshakeError::Truncated => f.write_str("truncated handshake"),
            HandshakeError::AddressTooLong(n) => write!(f, "handshake address of {n} bytes is too long"),
            HandshakeError::BadAddress => f.write_str("handshake address is not UTF-8"),
        }
    }
}

impl Handshake {
    /// Encodes the handshake. An address longer than [`HANDSHAKE_ADDRESS_MAX`]
    /// is a configuration bug and panics.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.address.len() <= HANDSHAKE_ADDRESS_MAX, "advertised peer address too long");
        let mut out = Vec::with_capacity(HANDSHAKE_FIXED_LEN + self.address.len() + 4);
        out.extend_from_slice(&HANDSHAKE_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.cluster_id.to_le_bytes());
        out.extend_from_slice(&self.from.to_le_bytes());
        out.extend_from_slice(&self.to.to_le_bytes());
        out.extend_from_slice(&(self.address.len() as u16).to_le_bytes());
        out.extend_from_slice(self.address.as_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the fixed part: checks the magic and returns how many more bytes
    /// (address and checksum) follow.
    pub fn rest_len(fixed: &[u8; HANDSHAKE_FIXED_LEN]) -> Result<usize, HandshakeError> {
        if fixed[0..4] != HANDSHAKE_MAGIC {
            return Err(HandshakeError::BadMagic);
        }
        let len = u16::from_le_bytes([fixed[32], fixed[33]]) as usize;
        if len > HANDSHAKE_ADDRESS_MAX {
            return Err(HandshakeError::AddressTooLong(len));
        }
        Ok(len + 4)
    }

    /// Decodes a whole handshake (fixed part, address, checksum); never panics.
    pub fn decode(bytes: &[u8]) -> Result<Handshake, HandshakeError> {
        let fixed: &[u8; HANDSHAKE_FIXED_LEN] =
            bytes.get(..HANDSHAKE_FIXED_LEN).and_then(|b| b.try_into().ok()).ok_or(HandshakeError::Truncated)?;
        let rest = Handshake::rest_len(fixed)?;
        if bytes.len() != HANDSHAKE_FIXED_LEN + rest {
            return Err(HandshakeError::Truncated);
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(HandshakeError::BadChecksum);
        }
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let address =
            std::str::from_utf8(&body[HANDSHAKE_FIXED_LEN..]).map_err(|_| HandshakeError::BadAddress)?.to_string();
        Ok(Handshake {
            version: u16_at(4),
            status: u16_at(6),
            cluster_id: u64_at(8),
            from: u64_at(16),
            to: u64_at(24),
            address,
        })
    }

    /// The acceptor's decision on a dialer's handshake: `Ok` or why not.
    pub fn check_dialer(&self, cluster_id: u64, local: NodeId) -> Result<(), Refusal> {
        if self.version != PROTOCOL_VERSION {
            return Err(Refusal::Version);
        }
        if self.cluster_id != cluster_id {
            return Err(Refusal::Cluster);
        }
        if self.to != local {
            return Err(Refusal::Member);
        }
        if self.from == 0 || self.from == local {
            return Err(Refusal::Identity);
        }
        Ok(())
    }

    /// The dialer's reading of the acceptor's answer: `Ok` when accepted.
    pub fn check_answer(&self, cluster_id: u64, wanted: NodeId) -> Result<(), String> {
        if let Some(refusal) = Refusal::from_code(self.status) {
            return Err(format!("member {} refused the connection: {refusal}", self.from));
        }
        if self.status != 0 {
            return Err(format!("member {} refused the connection (status {})", self.from, self.status));
        }
        if self.version != PROTOCOL_VERSION {
            return Err(format!(
                "member {} speaks peer protocol version {}, this member {PROTOCOL_VERSION}",
                self.from, self.version
            ));
        }
        if self.cluster_id != cluster_id {
            return Err(format!("the member at this address belongs to cluster {:016x}", self.cluster_id));
        }
        if self.from != wanted {
            return Err(format!("the member at this address is member {}, not {wanted}", self.from));
        }
        Ok(())
    }
}

/// A client request forwarded to the leader, or the leader's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// Serve `request` and reply with the same id.
    Request {
        /// Chosen by the forwarding member.
        id: u64,
        /// Only `Write`, `Read` and `LeaderRequest` are forwarded.
        request: Request,
    },
    /// The answer to a forwarded request.
    Reply {
        /// The request's id.
        id: u64,
        /// The answer.
        reply: Reply,
    },
}

/// A forward frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardError(pub String);

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad forward frame: {}", self.0)
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ForwardError> {
        if self.bytes.len() < n {
            return Err(ForwardError("truncated body".into()));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ForwardError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, ForwardError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, ForwardError> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        Ok(self.take(len)?.to_vec())
    }

    fn finish(self) -> Result<(), ForwardError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(ForwardError(format!("{} trailing bytes", self.bytes.len())))
        }
    }
}

impl Forward {
    /// Encodes the frame (header and body). Requests other than `Write`, `Read`
    /// and `LeaderRequest` are never forwarded; encoding one is a bug.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let kind = match self {
            Forward::Request { id, request } => {
                body.extend_from_slice(&id.to_le_bytes());
                let (tag, bytes) = match request {
                    Request::Write(b) => (1, b),
                    Request::Read(b) => (2, b),
                    Request::LeaderRequest(b) => (3, b),
                    other => panic!("request {other:?} is never forwarded"),
                };
                body.push(tag);
                put_bytes(&mut body, bytes);
                KIND_REQUEST
            }
            Forward::Reply { id, reply } => {
                body.extend_from_slice(&id.to_le_bytes());
                encode_reply(&mut body, reply);
                KIND_REPLY
            }
        };
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
        out.extend_from_slice(&FORWARD_MAGIC);
        out.push(FORWARD_VERSION);
        out.push(kind);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// The body length announced by a forward frame header, checked against
    /// `max` (the header's magic must be [`FORWARD_MAGIC`]).
    pub fn body_len(header: &[u8; FRAME_HEADER_LEN], max: u32) -> Result<usize, ForwardError> {
        if header[4] != FORWARD_VERSION {
            return Err(ForwardError(format!("unsupported forward frame version {}", header[4])));
        }
        let len = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if len > max {
            return Err(ForwardError(format!("body of {len} bytes exceeds the frame limit of {max} bytes")));
        }
        Ok(len as usize)
    }

    /// Decodes a frame from its header and body; never panics.
    pub fn decode(header: &[u8; FRAME_HEADER_LEN], body: &[u8]) -> Result<Forward, ForwardError> {
        if header[0..4] != FORWARD_MAGIC {
            return Err(ForwardError("wrong magic".into()));
        }
        if header[6..8] != [0, 0] {
            return Err(ForwardError("reserved header bytes are not zero".into()));
        }
        let crc = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
        if crc32c::crc32c(body) != crc {
            return Err(ForwardError("body checksum mismatch".into()));
        }
        let mut r = Reader { bytes: body };
        let id = r.u64()?;
        let frame = match header[5] {
            KIND_REQUEST => {
                let tag = r.u8()?;
                let bytes = r.bytes()?;
                let request = match tag {
                    1 => Request::Write(bytes),
                    2 => Request::Read(bytes),
                    3 => Request::LeaderRequest(bytes),
                    other => return Err(ForwardError(format!("unknown request kind {other}"))),
                };
                Forward::Request { id, request }
            }
            KIND_REPLY => Forward::Reply { id, reply: decode_reply(&mut r)? },
            other => return Err(ForwardError(format!("unknown frame kind {other}"))),
        };
        r.finish()?;
        Ok(frame)
    }
}

fn encode_reply(out: &mut Vec<u8>, reply: &Reply) {
    match reply {
        Ok(Response::Written { index, result }) => {
            out.push(0);
            out.extend_from_slice(&index.to_le_bytes());
            put_bytes(out, result);
        }
        Ok(Response::Read(bytes)) => {
            out.push(1);
            put_bytes(out, bytes);
        }
        Err(ClientError::NotLeader { leader }) => {
            out.push(2);
            out.extend_from_slice(&leader.unwrap_or(0).to_le_bytes());
        }
        Err(ClientError::Dropped) => out.push(3),
        Err(ClientError::Timeout) => out.push(4),
        Err(ClientError::Busy) => out.push(5),
        Err(ClientError::TooLarge) => out.push(6),
        Err(ClientError::Invalid(why)) => {
            out.push(7);
            put_bytes(out, why.as_bytes());
        }
        // Membership changes and transfers are served where they arrive.
        Ok(other) => {
            out.push(7);
            put_bytes(out, format!("unexpected forwarded response {other:?}").as_bytes());
        }
    }
}

fn decode_reply(r: &mut Reader<'_>) -> Result<Reply, ForwardError> {
    Ok(match r.u8()? {
        0 => {
            let index: LogIndex = r.u64()?;
            Ok(Response::Written { index, result: r.bytes()? })
        }
        1 => Ok(Response::Read(r.bytes()?)),
        2 => {
            let leader = r.u64()?;
            Err(ClientError::NotLeader { leader: (leader != 0).then_some(leader) })
        }
        3 => Err(ClientError::Dropped),
        4 => Err(ClientError::Timeout),
        5 => Err(ClientError::Busy),
        6 => Err(ClientError::TooLarge),
        7 => Err(ClientError::Invalid(String::from_utf8_lossy(&r.bytes()?).into_owned())),
        other => return Err(ForwardError(format!("unknown reply kind {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Handshake {
        Handshake {
            version: PROTOCOL_VERSION,
            status: 0,
            cluster_id: 0xabc,
            from: 2,
            to: 1,
            address: "10.0.0.2:2380".into(),
        }
    }

    #[test]
    fn handshake_round_trips_and_rejects_damage() {
        let bytes = hello().encode();
        assert_eq!(Handshake::decode(&bytes), Ok(hello()));
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert_eq!(Handshake::decode(&bad), Err(HandshakeError::BadChecksum));
        let mut http = [0u8; HANDSHAKE_FIXED_LEN];
        http[..4].copy_from_slice(b"GET ");
        assert_eq!(Handshake::rest_len(&http), Err(HandshakeError::BadMagic));
        assert_eq!(Handshake::decode(&bytes[..bytes.len() - 1]), Err(HandshakeError::Truncated));
        let mut long = bytes.clone();
        long[32..34].copy_from_slice(&1000u16.to_le_bytes());
        assert_eq!(Handshake::decode(&long), Err(HandshakeError::AddressTooLong(1000)));
        for cut in 0..bytes.len() {
            assert!(Handshake::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn acceptor_refuses_strangers() {
        assert_eq!(hello().check_dialer(0xabc, 1), Ok(()));
        assert_eq!(hello().check_dialer(0xabd, 1), Err(Refusal::Cluster));
        assert_eq!(hello().check_dialer(0xabc, 3), Err(Refusal::Member));
        assert_eq!(Handshake { version: 2, ..hello() }.check_dialer(0xabc, 1), Err(Refusal::Version));
        assert_eq!(Handshake { from: 1, ..hello() }.check_dialer(0xabc, 1), Err(Refusal::Identity));
    }

    #[test]
    fn dialer_reads_refusals() {
        let answer = Handshake {
            version: PROTOCOL_VERSION,
            status: Refusal::Cluster as u16,
            cluster_id: 9,
            from: 1,
            to: 2,
            address: String::new(),
        };
        assert_eq!(
            answer.check_answer(0xabc, 1),
            Err("member 1 refused the connection: it belongs to another cluster (check cluster.token and \
                 cluster.initial_members)"
                .into())
        );
        let ok = Handshake { status: 0, cluster_id: 0xabc, ..answer.clone() };
        assert_eq!(ok.check_answer(0xabc, 1), Ok(()));
        assert_eq!(ok.check_answer(0xabc, 3), Err("the member at this address is member 1, not 3".into()));
    }

    #[test]
    fn forward_frames_round_trip() {
        let frames = [
            Forward::Request { id: 7, request: Request::Write(vec![1, 2, 3]) },
            Forward::Request { id: 8, request: Request::Read(vec![]) },
            Forward::Request { id: 9, request: Request::LeaderRequest(vec![9]) },
            Forward::Reply { id: 7, reply: Ok(Response::Written { index: 42, result: vec![5] }) },
            Forward::Reply { id: 8, reply: Ok(Response::Read(vec![6, 7])) },
            Forward::Reply { id: 9, reply: Err(ClientError::NotLeader { leader: Some(3) }) },
            Forward::Reply { id: 9, reply: Err(ClientError::NotLeader { leader: None }) },
            Forward::Reply { id: 9, reply: Err(ClientError::Timeout) },
            Forward::Reply { id: 9, reply: Err(ClientError::Invalid("no".into())) },
        ];
        for frame in frames {
            let bytes = frame.encode();
            let header: [u8; FRAME_HEADER_LEN] = bytes[..FRAME_HEADER_LEN].try_into().unwrap();
            assert_eq!(Forward::body_len(&header, 1 << 20), Ok(bytes.len() - FRAME_HEADER_LEN));
            assert_eq!(Forward::decode(&header, &bytes[FRAME_HEADER_LEN..]), Ok(frame));
        }
    }

    #[test]
    fn damaged_forward_frames_are_errors() {
        let bytes = Forward::Request { id: 7, request: Request::Write(vec![1, 2, 3]) }.encode();
        let header: [u8; FRAME_HEADER_LEN] = bytes[..FRAME_HEADER_LEN].try_into().unwrap();
        let mut body = bytes[FRAME_HEADER_LEN..].to_vec();
        body[9] ^= 0xff;
        assert_eq!(Forward::decode(&header, &body), Err(ForwardError("body checksum mismatch".into())));
        assert_eq!(
            Forward::body_len(&header, 4),
            Err(ForwardError(format!("body of {} bytes exceeds the frame limit of 4 bytes", bytes.len() - 16)))
        );
        // Every truncation is an error, never a panic.
        for cut in 0..body.len() {
            let mut h = header;
            h[12..16].copy_from_slice(&crc32c::crc32c(&body[..cut]).to_le_bytes());
            assert!(Forward::decode(&h, &bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + cut]).is_err());
        }
    }
}
