//! Records: the framed, checksummed units a segment holds after its header.
//!
//! ```text
//! offset size field
//!      0    4 len          u32, body length in bytes
//!      4    1 kind         u8: 1 entry, 2 hard state, 3 truncate-from, 4 snapshot marker, 5 padding
//!      5    3 reserved     = 0
//!      8    4 body_crc     u32, CRC32C of the body
//!     12    4 header_crc   u32, CRC32C of bytes 0..12
//!     16  len body
//! ```
//!
//! The header has its own checksum so that a damaged length is recognised as
//! damage instead of being followed to a wrong place, and kind 0 is never valid,
//! so zeroed (preallocated) space never reads as a record.
//!
//! A padding record (kind 5) carries no data: its body is zero bytes, and it ends
//! exactly on a block boundary of the segment's block size (see
//! [`crate::wal::segment::SegmentHeader::block_size`]). The writer puts one in
//! front of every sync whose data would otherwise end inside a block, so that the
//! next write starts on a fresh block and a block that holds synced data is never
//! written again. Its body is shorter than one block (the record is at least a
//! header: when less than [`RECORD_HEADER_LEN`] bytes are left in the block, it
//! runs to the end of the next one).

use crate::codec::{self, decode_entry, decode_hard_state, encode_entry, encode_hard_state};
use crate::raft::message::{Entry, HardState};
use crate::types::{LogIndex, Term};
use crate::wal::bytes::{u32_at, u64_at};

/// Length of a record header in bytes.
pub const RECORD_HEADER_LEN: usize = 16;
/// The largest record body: one codec frame of the largest size the codec allows.
pub const RECORD_BODY_LEN_MAX: u32 = codec::BODY_LEN_MAX + codec::HEADER_LEN as u32;

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_TRUNCATE_FROM: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;
const KIND_PADDING: u8 = 5;
/// Header byte 5: the body is sealed (`crate::wal::cipher`).
pub(crate) const FLAG_SEALED: u8 = 1;
const TRUNCATE_BODY_LEN: usize = 8;
const SNAPSHOT_BODY_LEN: usize = 17;

/// One record of a segment. Replaying the records of all segments in order
/// rebuilds the log, the hard state and the position of the latest snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Record {
    /// A log entry; body: one [`codec::encode_entry`] frame. Replaying it removes
    /// every entry with an index `>= entry.index`, then appends it, so the records of
    /// `AppendLog(entries)` replay as "truncate from `entries[0].index`, append".
    Entry(Entry),
    /// The term and vote; body: one [`codec::encode_hard_state`] frame. The last one wins.
    HardState(HardState),
    /// Removes every entry whose index is at least this one; body: the index, `u64`.
    TruncateFrom(LogIndex),
    /// A snapshot at `(index, term)` was made durable (the snapshot file itself is
    /// written before this record). Body: index `u64`, term `u64`, flags `u8`
    /// (bit 0: `discard_after`). Replaying it drops entries `<= index`; with
    /// `discard_after` it drops every entry and the log continues at `index + 1`
    /// (an installed snapshot that the log did not match).
    Snapshot {
        /// The last index the snapshot covers.
        index: LogIndex,
        /// The term of the entry at `index`.
        term: Term,
        /// Whether the entries after `index` are obsolete as well.
        discard_after: bool,
    },
    /// No data: `len` zero bytes that fill the rest of a block, so that the next
    /// record starts on a block boundary. Replaying it changes nothing. Recovery
    /// checks that the body is zero and that the record ends on a block boundary
    /// of its segment, less than one block after the header.
    Padding {
        /// The body's length.
        len: u32,
    },
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordProblem {
    /// The record header's checksum does not match.
    HeaderChecksum {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the header bytes.
        actual: u32,
    },
    /// The body's checksum does not match.
    BodyChecksum {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the body.
        actual: u32,
    },
    /// The header is intact but its kind is unknown (written by a newer lockstep?).
    UnknownKind(u8),
    /// The header is intact but its reserved bytes are set (written by a newer lockstep?).
    ReservedNotZero,
    /// The header is intact but announces a body longer than [`RECORD_BODY_LEN_MAX`].
    TooLong(u32),
    /// The record is incomplete (cut short), which is only acceptable at the very
    /// end of the last segment.
    Incomplete(TornReason),
    /// Zero bytes, which mark preallocated space, are followed by more data.
    DataAfterPadding {
        /// Where the first non-zero byte after the padding is.
        data_at: u64,
    },
    /// The checksums match but the body is not a valid record of its kind.
    Invalid(String),
    /// The record is encrypted and cannot be read: no key, another key, or
    /// its sealed body does not authenticate (tampering).
    Sealed(crate::wal::cipher::SealProblem),
    /// A padding record (checksums and body valid) that does not end on a block
    /// boundary of its segment, or skips a whole block: not what the writer writes.
    MisalignedPadding {
        /// Where the record ends.
        end: u64,
        /// The segment's block size.
        block_size: u32,
    },
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordProblem::HeaderChecksum { stored, actual } => {
                write!(f, "record header checksum mismatch (stored {stored:#010x}, computed {actual:#010x})")
            }
            RecordProblem::BodyChecksum { stored, actual } => {
                write!(f, "record body checksum mismatch (stored {stored:#010x}, computed {actual:#010x})")
            }
            RecordProblem::UnknownKind(kind) => {
                write!(f, "unknown record kind {kind} (written by a newer lockstep?)")
            }
            RecordProblem::ReservedNotZero => {
                write!(f, "reserved record header bytes are set (written by a newer lockstep?)")
            }
            RecordProblem::TooLong(len) => {
                write!(f, "record announces a {len}-byte body, above the {RECORD_BODY_LEN_MAX}-byte limit")
            }
            RecordProblem::Incomplete(reason) => write!(f, "incomplete record: {reason}"),
            RecordProblem::DataAfterPadding { data_at } => {
                write!(f, "zero padding is followed by data at offset {data_at}")
            }
            RecordProblem::Invalid(why) => write!(f, "invalid record body: {why}"),
            RecordProblem::Sealed(problem) => write!(f, "encrypted record: {problem}"),
            RecordProblem::MisalignedPadding { end, block_size } => write!(
                f,
                "padding record ending at offset {end} does not end on the first {block_size}-byte block boundary \
                 after its header"
            ),
        }
    }
}

/// How the record at the end of the last segment was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TornReason {
    /// Fewer bytes than a record header remain, and they are not all zero.
    PartialHeader {
        /// The bytes that remain.
        available: u64,
    },
    /// The record header's checksum fails and only zeroes follow the header.
    TornHeader,
    /// The header is intact but the body runs past the end of the file.
    BodyBeyondEnd {
        /// The body length the header announces.
        len: u64,
        /// The body bytes present.
        available: u64,
    },
    /// The header is intact, the body's checksum fails, and only zeroes follow it.
    BodyChecksum,
}

impl std::fmt::Display for TornReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TornReason::PartialHeader { available } => write!(
                f,
                "only {available} of the {RECORD_HEADER_LEN} header bytes are present before the end of the file"
            ),
            TornReason::TornHeader => {
                write!(f, "the record header fails its checksum and only zero bytes follow it")
            }
            TornReason::BodyBeyondEnd { len, available } => {
                write!(f, "the header announces a {len}-byte body but only {available} bytes are present")
            }
            TornReason::BodyChecksum => {
                write!(f, "the body fails its checksum and only zero bytes follow it")
            }
        }
    }
}

/// A record header that passed its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) len: u32,
    pub(crate) kind: u8,
    pub(crate) body_crc: u32,
    /// The body is sealed (encrypted and authenticated, see `crate::wal::cipher`).
    pub(crate) sealed: bool,
}

impl RecordHeader {
    /// Reads a header from the first [`RECORD_HEADER_LEN`] bytes, which must be present.
    pub(crate) fn decode(bytes: &[u8]) -> Result<RecordHeader, RecordProblem> {
        let header = bytes.get(..RECORD_HEADER_LEN).unwrap_or(&[]);
        let (Some(len), Some(body_crc), Some(stored)) = (u32_at(header, 0), u32_at(header, 8), u32_at(header, 12))
        else {
            let available = crate::wal::bytes::to_u64(header.len());
            return Err(RecordProblem::Incomplete(TornReason::PartialHeader { available }));
        };
        let actual = crc32c::crc32c(&header[0..12]);
        if stored != actual {
            return Err(RecordProblem::HeaderChecksum { stored, actual });
        }
        if header[5] > FLAG_SEALED || header[6..8] != [0, 0] {
            return Err(RecordProblem::ReservedNotZero);
        }
        let sealed = header[5] == FLAG_SEALED;
        let kind = header[4];
        if !(KIND_ENTRY..=KIND_PADDING).contains(&kind) {
            return Err(RecordProblem::UnknownKind(kind));
        }
        if len > RECORD_BODY_LEN_MAX {
            return Err(RecordProblem::TooLong(len));
        }
        Ok(RecordHeader { len, kind, body_crc, sealed })
    }

    /// The body's length.
    pub(crate) fn body_len(&self) -> usize {
        usize::try_from(self.len).expect("u32 fits in usize on every supported target")
    }
}

fn frame(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    frame_with_flags(kind, 0, body, out);
}

fn frame_with_flags(kind: u8, flags: u8, body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len()).expect("record body fits in u32");
    assert!(len <= RECORD_BODY_LEN_MAX, "record body of {len} bytes exceeds the limit");
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[kind, flags, 0, 0]);
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    let header_crc = crc32c::crc32c(&out[start..start + 12]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(body);
}

/// Appends to `out` the encoded plain record `plain` (header and body, as
/// [`Record::encode`] writes it) sealed with `cipher` for `offset`; padding
/// stays plain.
pub(crate) fn seal_framed(cipher: &crate::wal::cipher::Cipher, plain: &[u8], offset: u64, out: &mut Vec<u8>) {
    let kind = plain[4];
    assert_eq!(plain[5], 0, "only plain records are sealed");
    let body = &plain[RECORD_HEADER_LEN..];
    if kind == KIND_PADDING {
        out.extend_from_slice(plain);
        return;
    }
    let sealed = crate::wal::cipher::seal_record_body(cipher, kind, offset, body);
    frame_with_flags(kind, FLAG_SEALED, &sealed, out);
}

/// Whether a record of `kind` is padding.
pub(crate) fn is_padding_kind(kind: u8) -> bool {
    kind == KIND_PADDING
}

/// Appends the record for one log entry to `out` (without cloning the entry).
pub(crate) fn encode_entry_record(entry: &Entry, out: &mut Vec<u8>) {
    assert!(entry.index > 0, "log entries start at index 1");
    frame(KIND_ENTRY, &encode_entry(entry), out);
}

impl Record {
    /// A short name for reports.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Record::Entry(_) => "entry",
            Record::HardState(_) => "hard state",
            Record::TruncateFrom(_) => "truncate-from",
            Record::Snapshot { .. } => "snapshot marker",
            Record::Padding { .. } => "padding",
        }
    }

    /// The record's bytes: header and body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the record's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Record::Entry(entry) => encode_entry_record(entry, out),
            Record::HardState(hard_state) => frame(KIND_HARD_STATE, &encode_hard_state(hard_state), out),
            Record::TruncateFrom(from) => {
                assert!(*from > 0, "truncating from index 0");
                frame(KIND_TRUNCATE_FROM, &from.to_le_bytes(), out);
            }
            Record::Snapshot { index, term, discard_after } => {
                let mut body = [0u8; SNAPSHOT_BODY_LEN];
                body[0..8].copy_from_slice(&index.to_le_bytes());
                body[8..16].copy_from_slice(&term.to_le_bytes());
                body[16] = u8::from(*discard_after);
                frame(KIND_SNAPSHOT, &body, out);
            }
            Record::Padding { len } => {
                let body = vec![0u8; usize::try_from(*len).expect("u32 fits in usize on every supported target")];
                frame(KIND_PADDING, &body, out);
            }
        }
    }

    /// Decodes a body whose header and checksum were already verified.
    pub(crate) fn decode_body(kind: u8, body: &[u8]) -> Result<Record, RecordProblem> {
        let invalid = |e: codec::DecodeError| RecordProblem::Invalid(e.to_string());
        match kind {
            KIND_ENTRY => match decode_entry(body).map_err(invalid)? {
                entry if entry.index == LogIndex::MAX => Err(RecordProblem::Invalid("entry index out of range".into())),
                entry => Ok(Record::Entry(entry)),
            },
            KIND_HARD_STATE => decode_hard_state(body).map(Record::HardState).map_err(invalid),
            KIND_TRUNCATE_FROM => match u64_at(body, 0) {
                Some(from) if body.len() == TRUNCATE_BODY_LEN && from > 0 => Ok(Record::TruncateFrom(from)),
                _ => Err(RecordProblem::Invalid("a truncate-from body is one index, at least 1".into())),
            },
            KIND_SNAPSHOT => match (u64_at(body, 0), u64_at(body, 8), body.get(16)) {
                (Some(index), Some(term), Some(flags @ (0 | 1)))
                    if body.len() == SNAPSHOT_BODY_LEN && index < LogIndex::MAX =>
                {
                    Ok(Record::Snapshot { index, term, discard_after: *flags == 1 })
                }
                _ => Err(RecordProblem::Invalid("a snapshot marker body is index, term and flags 0 or 1".into())),
            },
            KIND_PADDING if crate::wal::bytes::all_zero(body) => {
                Ok(Record::Padding { len: u32::try_from(body.len()).expect("record bodies fit in u32") })
            }
            KIND_PADDING => Err(RecordProblem::Invalid("a padding body is zero bytes".into())),
            other => Err(RecordProblem::UnknownKind(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Payload;

    fn samples() -> Vec<Record> {
        vec![
            Record::Entry(Entry { term: 3, index: 9, payload: Payload::Command(b"x".to_vec()) }),
            Record::HardState(HardState { term: 4, vote: Some(2) }),
            Record::TruncateFrom(5),
            Record::Snapshot { index: 0, term: 0, discard_after: false },
            Record::Snapshot { index: 7, term: 2, discard_after: true },
            Record::Padding { len: 0 },
            Record::Padding { len: 4000 },
        ]
    }

    #[test]
    fn records_round_trip() {
        for record in samples() {
            let bytes = record.encode();
            let header = RecordHeader::decode(&bytes).expect("valid header");
            assert_eq!(header.body_len(), bytes.len() - RECORD_HEADER_LEN);
            let body = &bytes[RECORD_HEADER_LEN..];
            assert_eq!(crc32c::crc32c(body), header.body_crc);
            assert_eq!(Record::decode_body(header.kind, body), Ok(record));
        }
    }

    #[test]
    fn every_header_bit_flip_is_caught() {
        let bytes = Record::TruncateFrom(5).encode();
        for bit in 0..RECORD_HEADER_LEN * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(RecordHeader::decode(&bad), Err(RecordProblem::HeaderChecksum { .. })), "bit {bit}");
        }
    }

    #[test]
    fn an_all_zero_header_is_never_valid() {
        assert!(RecordHeader::decode(&[0u8; RECORD_HEADER_LEN]).is_err());
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert!(Record::decode_body(KIND_TRUNCATE_FROM, &0u64.to_le_bytes()).is_err());
        assert!(Record::decode_body(KIND_TRUNCATE_FROM, &[1, 0, 0]).is_err());
        let mut marker = [0u8; SNAPSHOT_BODY_LEN];
        marker[16] = 2;
        assert!(Record::decode_body(KIND_SNAPSHOT, &marker).is_err());
        assert!(Record::decode_body(KIND_SNAPSHOT, &marker[..16]).is_err());
        marker[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        marker[16] = 0;
        assert!(Record::decode_body(KIND_SNAPSHOT, &marker).is_err(), "replay computes index + 1");
        let huge = Entry { term: 1, index: u64::MAX, payload: Payload::Noop };
        assert!(Record::decode_body(KIND_ENTRY, &crate::codec::encode_entry(&huge)).is_err());
        assert!(Record::decode_body(KIND_ENTRY, b"garbage").is_err());
        assert!(Record::decode_body(KIND_PADDING, &[0, 0, 1]).is_err(), "padding is zero bytes");
        assert!(Record::decode_body(9, b"").is_err());
    }
}
