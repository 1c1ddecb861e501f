//! Stable, versioned, checksummed binary encoding of everything that crosses the
//! wire or lands on disk.
//!
//! A frame is a 12-byte header followed by an rkyv body:
//!
//! ```text
//! 0      4        5      6        8          12
//! | magic | version | kind | reserved | body len | body crc32c | body ...
//!   "LKSP"   u8       u8      u16        u32          u32
//! ```
//! (all integers little-endian; the header is 16 bytes in total.) Decoding checks
//! magic, version, kind, length and checksum before rkyv validates the body with
//! bytecheck, so hostile bytes yield a [`DecodeError`], never a panic.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::raft::message::{Entry, HardState, Message, MessageBody, Payload, SnapshotMeta};

/// The magic bytes at the start of every frame.
pub const MAGIC: [u8; 4] = *b"LKSP";
/// The current format version. Bump it whenever a wire or disk type changes.
pub const FORMAT_VERSION: u8 = 1;
/// Length of a frame header in bytes.
pub const HEADER_LEN: usize = 16;
/// The largest body a frame may carry (64 MiB).
pub const BODY_LEN_MAX: u32 = 64 << 20;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A [`Message`].
    Message = 1,
    /// An [`Entry`].
    Entry = 2,
    /// A [`HardState`].
    HardState = 3,
    /// A [`SnapshotMeta`].
    SnapshotMeta = 4,
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the announced body.
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The magic bytes are wrong: not a lockstep frame.
    BadMagic,
    /// Written by an incompatible version.
    UnsupportedVersion(u8),
    /// A frame of another kind than expected.
    WrongKind {
        /// The kind expected.
        expected: u8,
        /// The kind found.
        found: u8,
    },
    /// The body is larger than [`BODY_LEN_MAX`].
    TooLarge(u32),
    /// The checksum does not match: the bytes were corrupted.
    BadChecksum {
        /// The checksum in the header.
        expected: u32,
        /// The checksum of the body.
        actual: u32,
    },
    /// The body passed the checksum but is not a valid encoding.
    Invalid(String),
    /// Bytes follow the frame where none were expected.
    TrailingBytes(u64),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated { needed, available } => {
                write!(f, "truncated frame: need {needed} bytes, have {available}")
            }
            DecodeError::BadMagic => write!(f, "not a lockstep frame (bad magic)"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "frame format version {v} is not supported (this build reads {FORMAT_VERSION})")
            }
            DecodeError::WrongKind { expected, found } => write!(f, "expected frame kind {expected}, found {found}"),
            DecodeError::TooLarge(len) => write!(f, "frame body of {len} bytes exceeds the {BODY_LEN_MAX} byte limit"),
            DecodeError::BadChecksum { expected, actual } => {
                write!(f, "checksum mismatch: header says {expected:#010x}, body is {actual:#010x}")
            }
            DecodeError::Invalid(why) => write!(f, "invalid frame body: {why}"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the frame"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn frame(kind: FrameKind, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("frame body fits in u32");
    assert!(len <= BODY_LEN_MAX, "frame body of {len} bytes exceeds the limit");
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads a frame header; returns the total frame length (header + body).
pub fn frame_len(bytes: &[u8]) -> Result<usize, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated { needed: HEADER_LEN as u64, available: bytes.len() as u64 });
    }
    if bytes[0..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(bytes[4]));
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if len > BODY_LEN_MAX {
        return Err(DecodeError::TooLarge(len));
    }
    Ok(HEADER_LEN + len as usize)
}

/// Checks a frame and returns its body, copied into an aligned buffer.
fn unframe(kind: FrameKind, bytes: &[u8]) -> Result<AlignedVec, DecodeError> {
    let total = frame_len(bytes)?;
    if bytes[5] != kind as u8 {
        return Err(DecodeError::WrongKind { expected: kind as u8, found: bytes[5] });
    }
    if bytes.len() < total {
        return Err(DecodeError::Truncated { needed: total as u64, available: bytes.len() as u64 });
    }
    if bytes.len() > total {
        return Err(DecodeError::TrailingBytes((bytes.len() - total) as u64));
    }
    let body = &bytes[HEADER_LEN..total];
    let expected = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    let actual = crc32c::crc32c(body);
    if expected != actual {
        return Err(DecodeError::BadChecksum { expected, actual });
    }
    let mut aligned = AlignedVec::with_capacity(body.len());
    aligned.extend_from_slice(body);
    Ok(aligned)
}

macro_rules! codec_pair {
    ($encode:ident, $decode:ident, $ty:ty, $kind:expr) => {
        #[doc = concat!("Encodes a [`", stringify!($ty), "`] as one checksummed frame.")]
        pub fn $encode(value: &$ty) -> Vec<u8> {
            let body = rkyv::to_bytes::<rancor::Error>(value).expect("in-memory values always serialize");
            frame($kind, &body)
        }

        #[doc = concat!("Decodes one frame holding a [`", stringify!($ty), "`]; never panics.")]
        pub fn $decode(bytes: &[u8]) -> Result<$ty, DecodeError> {
            let body = unframe($kind, bytes)?;
            let value =
                rkyv::from_bytes::<$ty, rancor::Error>(&body).map_err(|e| DecodeError::Invalid(e.to_string()))?;
            validate(&value)?;
            Ok(value)
        }
    };
}

codec_pair!(encode_message, decode_message, Message, FrameKind::Message);
codec_pair!(encode_entry, decode_entry, Entry, FrameKind::Entry);
codec_pair!(encode_hard_state, decode_hard_state, HardState, FrameKind::HardState);
codec_pair!(encode_snapshot_meta, decode_snapshot_meta, SnapshotMeta, FrameKind::SnapshotMeta);

/// Semantic checks beyond the encoding: what a well-formed value of each type is.
trait Validate {
    fn validate(&self) -> Result<(), DecodeError>;
}

fn validate<T: Validate>(value: &T) -> Result<(), DecodeError> {
    value.validate()
}

impl Validate for Entry {
    fn validate(&self) -> Result<(), DecodeError> {
        if self.index == 0 {
            return Err(DecodeError::Invalid("entry index 0".into()));
        }
        if let Payload::Membership(m) = &self.payload {
            m.validate().map_err(|e| DecodeError::Invalid(e.to_string()))?;
        }
        Ok(())
    }
}

impl Validate for HardState {
    fn validate(&self) -> Result<(), DecodeError> {
        if self.vote == Some(0) {
            return Err(DecodeError::Invalid("vote for member 0".into()));
        }
        Ok(())
    }
}

impl Validate for SnapshotMeta {
    fn validate(&self) -> Result<(), DecodeError> {
        // Index 0 is the empty bootstrap snapshot; any other needs a valid membership.
        if self.index > 0 || !self.membership.voters.is_empty() {
            self.membership.validate().map_err(|e| DecodeError::Invalid(e.to_string()))?;
        }
        Ok(())
    }
}

impl Validate for Message {
    fn validate(&self) -> Result<(), DecodeError> {
        if self.from == 0 || self.to == 0 {
            return Err(DecodeError::Invalid("message from or to member 0".into()));
        }
        match &self.body {
            MessageBody::Append { prev_index, entries, .. } => {
                for (i, entry) in entries.iter().enumerate() {
                    entry.validate()?;
                    if entry.index != prev_index.saturating_add(1 + i as u64) || entry.term > self.term {
                        return Err(DecodeError::Invalid("append entries are not contiguous".into()));
                    }
                }
                if entries.windows(2).any(|w| w[0].term > w[1].term) {
                    return Err(DecodeError::Invalid("append entry terms decrease".into()));
                }
                Ok(())
            }
            MessageBody::InstallSnapshot { meta, offset, data, .. } => {
                meta.validate()?;
                let end = offset.checked_add(data.len() as u64);
                if end.is_none_or(|end| end > meta.size) {
                    return Err(DecodeError::Invalid("snapshot chunk beyond the snapshot's size".into()));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Membership;
    use proptest::prelude::*;

    fn sample() -> Message {
        Message {
            group: 7,
            from: 1,
            to: 2,
            term: 3,
            body: MessageBody::Append {
                prev_index: 4,
                prev_term: 2,
                entries: vec![
                    Entry { term: 3, index: 5, payload: Payload::Command(b"hello".to_vec()) },
                    Entry { term: 3, index: 6, payload: Payload::Membership(Membership::with_voters([1, 2, 3])) },
                ],
                commit: 4,
            },
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = encode_message(&m);
        assert_eq!(decode_message(&bytes), Ok(m));
        let hs = HardState { term: 9, vote: Some(2) };
        assert_eq!(decode_hard_state(&encode_hard_state(&hs)), Ok(hs));
    }

    #[test]
    fn header_is_checked() {
        let bytes = encode_message(&sample());
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(decode_message(&bad), Err(DecodeError::BadMagic));
        let mut bad = bytes.clone();
        bad[4] = 99;
        assert_eq!(decode_message(&bad), Err(DecodeError::UnsupportedVersion(99)));
        assert!(matches!(decode_entry(&bytes), Err(DecodeError::WrongKind { expected: 2, found: 1 })));
        assert!(matches!(decode_message(&bytes[..bytes.len() - 1]), Err(DecodeError::Truncated { .. })));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode_message(&long), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn every_bit_flip_in_the_body_is_caught() {
        let bytes = encode_message(&sample());
        for i in HEADER_LEN * 8..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(matches!(decode_message(&bad), Err(DecodeError::BadChecksum { .. })), "bit {i}");
        }
    }

    #[test]
    fn semantic_validation() {
        let mut m = sample();
        if let MessageBody::Append { entries, .. } = &mut m.body {
            entries[1].index = 9;
        }
        assert!(matches!(decode_message(&encode_message(&m)), Err(DecodeError::Invalid(_))));
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_message(&bytes);
            let _ = decode_entry(&bytes);
            let _ = decode_hard_state(&bytes);
            let _ = decode_snapshot_meta(&bytes);
        }

        #[test]
        fn hostile_bodies_with_valid_checksums_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            // A correct header and checksum around random bytes reaches rkyv's validation.
            for kind in [FrameKind::Message, FrameKind::Entry, FrameKind::HardState, FrameKind::SnapshotMeta] {
                let bytes = frame(kind, &body);
                let _ = decode_message(&bytes);
                let _ = decode_entry(&bytes);
                let _ = decode_hard_state(&bytes);
                let _ = decode_snapshot_meta(&bytes);
            }
        }

        #[test]
        fn entries_round_trip(term in 0u64..1000, index in 1u64..1_000_000, data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let e = Entry { term, index, payload: Payload::Command(data) };
            prop_assert_eq!(decode_entry(&encode_entry(&e)), Ok(e));
        }
    }
}
