//! Segment files: their names and their 64-byte header.

use crate::types::LogIndex;
use crate::wal::bytes::{to_u64, u32_at, u64_at};
use crate::wal::identity::WalIdentity;

/// The first eight bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LKSPWAL\0";
/// The segment format this build writes and reads. Version 2 added the block
/// size to the header and the padding record; version 1 segments are refused.
pub const SEGMENT_FORMAT_VERSION: u32 = 2;
/// The smallest block size a segment may declare.
pub const BLOCK_SIZE_MIN: u32 = 64;
/// The largest block size a segment may declare.
pub const BLOCK_SIZE_MAX: u32 = 1 << 20;
/// Length of a segment header in bytes; records start right after it.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// The suffix of every segment file name.
pub const SEGMENT_FILE_SUFFIX: &str = ".wal";

/// Names one segment: its sequence number and the log index that came next when
/// it was created. The file name is `{seq:016x}-{first_index:016x}.wal`, so a
/// plain sort of the names is the order of the segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    /// Increases by one with every new segment; segments are replayed in this order.
    pub seq: u64,
    /// The index after the last log entry when the segment was created. Every
    /// live entry of earlier segments has a smaller index, so once a snapshot
    /// covers `first_index - 1` every earlier segment can be deleted.
    pub first_index: LogIndex,
}

impl SegmentId {
    /// The segment's file name: `{seq:016x}-{first_index:016x}.wal`.
    pub fn file_name(&self) -> String {
        format!("{:016x}-{:016x}{SEGMENT_FILE_SUFFIX}", self.seq, self.first_index)
    }

    /// Parses a file name written by [`SegmentId::file_name`] (exactly: 16 lower-case
    /// hex digits, `-`, 16 lower-case hex digits, `.wal`); anything else is `None`.
    pub fn parse(name: &str) -> Option<SegmentId> {
        let stem = name.strip_suffix(SEGMENT_FILE_SUFFIX)?;
        let (seq, first_index) = stem.split_once('-')?;
        Some(SegmentId { seq: parse_hex16(seq)?, first_index: parse_hex16(first_index)? })
    }
}

impl std::fmt::Display for SegmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file_name())
    }
}

fn parse_hex16(text: &str) -> Option<u64> {
    let canonical = text.len() == 16 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !canonical {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// The header at the start of every segment.
///
/// ```text
/// offset size field
///      0    8 magic        "LKSPWAL\0"
///      8    4 version      u32 = 2
///     12    4 flags        u32 = 0 (reserved)
///     16    8 cluster_id   u64
///     24    8 member_id    u64
///     32    8 group_id     u64
///     40    8 seq          u64
///     48    8 first_index  u64
///     56    4 block_size   u32, a power of two in BLOCK_SIZE_MIN..=BLOCK_SIZE_MAX
///     60    4 header_crc   u32, CRC32C of bytes 0..60
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentHeader {
    /// Whose log the segment belongs to.
    pub identity: WalIdentity,
    /// The segment's sequence number and first index (also in its file name).
    pub id: SegmentId,
    /// The block size the segment's syncs are aligned to: every padding record in
    /// it ends on a multiple of it. A power of two in
    /// [`BLOCK_SIZE_MIN`]`..=`[`BLOCK_SIZE_MAX`].
    pub block_size: u32,
}

/// Whether `block_size` is one a segment may declare.
pub fn block_size_is_valid(block_size: u32) -> bool {
    block_size.is_power_of_two() && (BLOCK_SIZE_MIN..=BLOCK_SIZE_MAX).contains(&block_size)
}

/// Why a segment header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderProblem {
    /// The file is shorter than a header.
    Short {
        /// The file's length in bytes.
        len: u64,
    },
    /// The magic bytes are wrong: not a lockstep WAL segment.
    BadMagic,
    /// Written in a format version this build cannot read.
    UnsupportedVersion(u32),
    /// The header checksum does not match.
    BadChecksum {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the header bytes.
        actual: u32,
    },
    /// A reserved field is not zero: written by a newer format this build cannot read.
    UnsupportedFlags,
    /// The block size is not a power of two in [`BLOCK_SIZE_MIN`]`..=`[`BLOCK_SIZE_MAX`].
    BadBlockSize(u32),
}

impl HeaderProblem {
    /// Whether a header with this problem could be a header whose write was cut
    /// short by a crash (its bytes a prefix of a real header, the rest zero).
    pub(crate) fn could_be_torn(&self) -> bool {
        matches!(
            self,
            HeaderProblem::Short { .. }
                | HeaderProblem::BadMagic
                | HeaderProblem::BadChecksum { .. }
                | HeaderProblem::UnsupportedVersion(0)
        )
    }
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderProblem::Short { len } => {
                write!(f, "the file is {len} bytes long, shorter than the {SEGMENT_HEADER_LEN}-byte segment header")
            }
            HeaderProblem::BadMagic => write!(f, "it does not start with the segment magic {SEGMENT_MAGIC:?}"),
            HeaderProblem::UnsupportedVersion(v) if *v < SEGMENT_FORMAT_VERSION => write!(
                f,
                "segment format version {v} is not supported (this build reads version {SEGMENT_FORMAT_VERSION}, \
                 and does not convert older segments); run the lockstep release that wrote it, or remove this \
                 member, wipe its data directory and add it back (it rejoins from a snapshot)"
            ),
            HeaderProblem::UnsupportedVersion(v) => write!(
                f,
                "segment format version {v} is not supported (this build reads version {SEGMENT_FORMAT_VERSION}); \
                 run the lockstep release that wrote it"
            ),
            HeaderProblem::BadChecksum { stored, actual } => {
                write!(f, "header checksum mismatch: stored {stored:#010x}, computed {actual:#010x}")
            }
            HeaderProblem::UnsupportedFlags => {
                write!(f, "reserved header fields are set: written by a newer lockstep this build cannot read")
            }
            HeaderProblem::BadBlockSize(size) => {
                write!(f, "block size {size} is not a power of two between {BLOCK_SIZE_MIN} and {BLOCK_SIZE_MAX} bytes")
            }
        }
    }
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        assert!(block_size_is_valid(self.block_size), "segment block size {} is invalid", self.block_size);
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.identity.cluster_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.identity.member_id.to_le_bytes());
        out[32..40].copy_from_slice(&self.identity.group_id.to_le_bytes());
        out[40..48].copy_from_slice(&self.id.seq.to_le_bytes());
        out[48..56].copy_from_slice(&self.id.first_index.to_le_bytes());
        out[56..60].copy_from_slice(&self.block_size.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the header at the start of `bytes` (the rest of the file is ignored).
    /// Checks, in order: length, magic, version, checksum, reserved fields, block size.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        let Some(header) = bytes.get(..SEGMENT_HEADER_LEN) else {
            return Err(HeaderProblem::Short { len: to_u64(bytes.len()) });
        };
        if header[0..8] != SEGMENT_MAGIC {
            return Err(HeaderProblem::BadMagic);
        }
        let field32 = |at| u32_at(header, at).unwrap_or(0);
        let field64 = |at| u64_at(header, at).unwrap_or(0);
        let version = field32(8);
        if version != SEGMENT_FORMAT_VERSION {
            return Err(HeaderProblem::UnsupportedVersion(version));
        }
        let stored = field32(60);
        let actual = crc32c::crc32c(&header[0..60]);
        if stored != actual {
            return Err(HeaderProblem::BadChecksum { stored, actual });
        }
        if field32(12) != 0 {
            return Err(HeaderProblem::UnsupportedFlags);
        }
        let block_size = field32(56);
        if !block_size_is_valid(block_size) {
            return Err(HeaderProblem::BadBlockSize(block_size));
        }
        Ok(SegmentHeader {
            identity: WalIdentity { cluster_id: field64(16), member_id: field64(24), group_id: field64(32) },
            id: SegmentId { seq: field64(40), first_index: field64(48) },
            block_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            identity: WalIdentity { cluster_id: 0xC1, member_id: 2, group_id: 3 },
            id: SegmentId { seq: 7, first_index: 0x401 },
            block_size: 4096,
        }
    }

    fn with_field(bytes: [u8; SEGMENT_HEADER_LEN], at: usize, value: u32) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = bytes;
        out[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn names_round_trip_and_sort_in_sequence_order() {
        let id = SegmentId { seq: 0x1f, first_index: 0xabc };
        assert_eq!(id.file_name(), "000000000000001f-0000000000000abc.wal");
        assert_eq!(SegmentId::parse(&id.file_name()), Some(id));
        let later = SegmentId { seq: 0x20, first_index: 1 };
        assert!(id.file_name() < later.file_name());
        for bad in [
            "000000000000001f-0000000000000abc.wa",
            "000000000000001F-0000000000000abc.wal",
            "00000000000001f-0000000000000abc.wal",
            "000000000000001f_0000000000000abc.wal",
            "+00000000000001f-0000000000000abc.wal",
            "snapshot.snap",
            "",
        ] {
            assert_eq!(SegmentId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_round_trip_and_checks() {
        let bytes = header().encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header()));
        assert_eq!(SegmentHeader::decode(&bytes[..10]), Err(HeaderProblem::Short { len: 10 }));
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderProblem::BadMagic));
        let mut bad = bytes;
        bad[8] = 9;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderProblem::UnsupportedVersion(9)));
        let mut bad = bytes;
        bad[20] ^= 1;
        assert!(matches!(SegmentHeader::decode(&bad), Err(HeaderProblem::BadChecksum { .. })));
        assert_eq!(SegmentHeader::decode(&with_field(bytes, 12, 1)), Err(HeaderProblem::UnsupportedFlags));
        for size in [0, 32, 100, 4097, 2 << 20] {
            assert_eq!(SegmentHeader::decode(&with_field(bytes, 56, size)), Err(HeaderProblem::BadBlockSize(size)));
        }
        for size in [64, 512, 4096, 1 << 20] {
            assert_eq!(SegmentHeader::decode(&with_field(bytes, 56, size)).map(|h| h.block_size), Ok(size));
        }
    }

    #[test]
    fn a_version_1_segment_is_refused_with_what_to_do() {
        let old = with_field(header().encode(), 8, 1);
        let problem = SegmentHeader::decode(&old).expect_err("version 1 is refused");
        assert_eq!(problem, HeaderProblem::UnsupportedVersion(1));
        assert!(!problem.could_be_torn());
        let message = problem.to_string();
        assert!(message.contains("version 1") && message.contains("reads version 2"), "{message}");
        assert!(message.contains("wipe its data directory"), "{message}");
    }

    #[test]
    fn every_prefix_of_a_header_is_torn_looking() {
        let bytes = header().encode();
        for cut in 0..SEGMENT_HEADER_LEN {
            let mut torn = [0u8; SEGMENT_HEADER_LEN];
            torn[..cut].copy_from_slice(&bytes[..cut]);
            if torn == bytes {
                continue; // The missing bytes happened to be zero: the header is whole.
            }
            let problem = SegmentHeader::decode(&torn).expect_err("a torn header is refused");
            assert!(problem.could_be_torn(), "cut {cut}: {problem:?}");
            let problem = SegmentHeader::decode(&bytes[..cut]).expect_err("a short header is refused");
            assert!(problem.could_be_torn(), "cut {cut}: {problem:?}");
        }
    }
}
