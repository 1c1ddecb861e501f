//! The snapshot file: one file holding the latest snapshot, replaced atomically.
//!
//! ```text
//! offset      size      field
//!      0         8      magic        "LKSPSNAP"
//!      8         4      version      u32 = 1
//!     12         4      meta_len     u32
//!     16         8      cluster_id   u64
//!     24         8      data_len     u64
//!     32  meta_len      meta         one codec::encode_snapshot_meta frame
//!      …  data_len      data         the state machine's snapshot
//!      …         4      crc          u32, CRC32C of every byte before it
//! ```
//!
//! The runtime writes it to [`SNAPSHOT_TEMP_FILE_NAME`], syncs it, renames it to
//! [`SNAPSHOT_FILE_NAME`] and syncs the directory, so the file is always either
//! the old snapshot or the new one, whole. A damaged snapshot file is therefore
//! never a torn write, always an error.

use crate::codec::{decode_snapshot_meta, encode_snapshot_meta, DecodeError};
use crate::raft::message::SnapshotMeta;
use crate::wal::bytes::{to_u64, u32_at, u64_at};

/// The first eight bytes of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"LKSPSNAP";
/// The snapshot file format this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// Length of the fixed part of the snapshot file header.
pub const SNAPSHOT_HEADER_LEN: usize = 32;
/// The name of the snapshot file in a member's data directory.
pub const SNAPSHOT_FILE_NAME: &str = "snapshot.snap";
/// The name a new snapshot is written under before it is renamed into place; a
/// leftover file of this name is an unfinished snapshot and may be deleted.
pub const SNAPSHOT_TEMP_FILE_NAME: &str = "snapshot.snap.tmp";

const CRC_LEN: usize = 4;

/// A decoded snapshot file; `data` borrows from the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile<'a> {
    /// The cluster that wrote it.
    pub cluster_id: u64,
    /// The snapshot's description (its `group`, `index`, `term`, `size`, `checksum`).
    pub meta: SnapshotMeta,
    /// The state machine's snapshot, `meta.size` bytes with CRC32C `meta.checksum`.
    pub data: &'a [u8],
}

/// Why a snapshot file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotProblem {
    /// Shorter than the smallest snapshot file.
    Short {
        /// The file's length.
        len: u64,
    },
    /// Not a lockstep snapshot file.
    BadMagic,
    /// Written in a format version this build cannot read.
    UnsupportedVersion(u32),
    /// The lengths in the header do not add up to the file's length.
    BadLength {
        /// The length the header implies.
        expected: u64,
        /// The file's length.
        actual: u64,
    },
    /// The file checksum does not match.
    BadChecksum {
        /// The checksum at the end of the file.
        stored: u32,
        /// The checksum of the file's bytes.
        actual: u32,
    },
    /// The metadata frame does not decode.
    BadMeta(DecodeError),
    /// The data's size or checksum does not match the metadata.
    DataMismatch,
    /// Written for another cluster.
    WrongCluster {
        /// This member's cluster id.
        expected: u64,
        /// The file's.
        found: u64,
    },
    /// Written for another Raft group.
    WrongGroup {
        /// This member's group id.
        expected: u64,
        /// The file's.
        found: u64,
    },
    /// The file is encrypted and cannot be read: no key, another key, or
    /// tampering (see `crate::wal::cipher`).
    Sealed(crate::wal::cipher::SealProblem),
}

impl std::fmt::Display for SnapshotProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotProblem::Short { len } => write!(f, "the file is only {len} bytes long"),
            SnapshotProblem::BadMagic => write!(f, "it does not start with the snapshot magic {SNAPSHOT_MAGIC:?}"),
            SnapshotProblem::UnsupportedVersion(v) => write!(
                f,
                "snapshot format version {v} is not supported (this build reads version {SNAPSHOT_FORMAT_VERSION})"
            ),
            SnapshotProblem::BadLength { expected, actual } => {
                write!(f, "the header implies a {expected}-byte file but it is {actual} bytes long")
            }
            SnapshotProblem::BadChecksum { stored, actual } => {
                write!(f, "file checksum mismatch: stored {stored:#010x}, computed {actual:#010x}")
            }
            SnapshotProblem::BadMeta(e) => write!(f, "the snapshot metadata does not decode: {e}"),
            SnapshotProblem::DataMismatch => write!(f, "the data does not match the size or checksum in the metadata"),
            SnapshotProblem::WrongCluster { expected, found } => {
                write!(f, "it belongs to cluster {found:#x}, this member to cluster {expected:#x}")
            }
            SnapshotProblem::WrongGroup { expected, found } => {
                write!(f, "it belongs to group {found}, this member's log to group {expected}")
            }
            SnapshotProblem::Sealed(problem) => write!(f, "encrypted snapshot file: {problem}"),
        }
    }
}

/// The bytes of a snapshot file. `meta.size` and `meta.checksum` must describe `data`.
pub fn encode_snapshot_file(cluster_id: u64, meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
    assert_eq!(meta.size, to_u64(data.len()), "snapshot size does not match its data");
    assert_eq!(meta.checksum, crc32c::crc32c(data), "snapshot checksum does not match its data");
    let meta_bytes = encode_snapshot_meta(meta);
    let meta_len = u32::try_from(meta_bytes.len()).expect("snapshot metadata fits in u32");
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + meta_bytes.len() + data.len() + CRC_LEN);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&meta_len.to_le_bytes());
    out.extend_from_slice(&cluster_id.to_le_bytes());
    out.extend_from_slice(&meta.size.to_le_bytes());
    out.extend_from_slice(&meta_bytes);
    out.extend_from_slice(data);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a snapshot file; checks its framing, checksum and metadata. Never panics.
pub fn decode_snapshot_file(bytes: &[u8]) -> Result<SnapshotFile<'_>, SnapshotProblem> {
    let actual_len = to_u64(bytes.len());
    if bytes.len() < SNAPSHOT_HEADER_LEN + CRC_LEN {
        return Err(SnapshotProblem::Short { len: actual_len });
    }
    if bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(SnapshotProblem::BadMagic);
    }
    let (Some(version), Some(meta_len), Some(cluster_id), Some(data_len)) =
        (u32_at(bytes, 8), u32_at(bytes, 12), u64_at(bytes, 16), u64_at(bytes, 24))
    else {
        return Err(SnapshotProblem::Short { len: actual_len });
    };
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotProblem::UnsupportedVersion(version));
    }
    let expected = to_u64(SNAPSHOT_HEADER_LEN + CRC_LEN)
        .checked_add(u64::from(meta_len))
        .and_then(|n| n.checked_add(data_len))
        .unwrap_or(u64::MAX);
    if expected != actual_len {
        return Err(SnapshotProblem::BadLength { expected, actual: actual_len });
    }
    let body_end = bytes.len() - CRC_LEN;
    let stored = u32_at(bytes, body_end).unwrap_or(0);
    let actual = crc32c::crc32c(&bytes[..body_end]);
    if stored != actual {
        return Err(SnapshotProblem::BadChecksum { stored, actual });
    }
    // The length check above bounds meta_len by the file's length, so it fits in usize.
    let meta_end = SNAPSHOT_HEADER_LEN + usize::try_from(meta_len).unwrap_or(usize::MAX).min(body_end);
    let meta = decode_snapshot_meta(&bytes[SNAPSHOT_HEADER_LEN..meta_end]).map_err(SnapshotProblem::BadMeta)?;
    let data = &bytes[meta_end..body_end];
    if meta.size != to_u64(data.len()) || meta.checksum != crc32c::crc32c(data) {
        return Err(SnapshotProblem::DataMismatch);
    }
    Ok(SnapshotFile { cluster_id, meta, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Membership;
    use proptest::prelude::*;

    fn meta(data: &[u8]) -> SnapshotMeta {
        SnapshotMeta {
            group: 3,
            index: 10,
            term: 2,
            membership: Membership::with_voters([1, 2, 3]),
            size: to_u64(data.len()),
            checksum: crc32c::crc32c(data),
        }
    }

    #[test]
    fn round_trip() {
        let data = b"state machine".to_vec();
        let bytes = encode_snapshot_file(7, &meta(&data), &data);
        let file = decode_snapshot_file(&bytes).expect("valid");
        assert_eq!((file.cluster_id, &file.meta, file.data), (7, &meta(&data), &data[..]));
    }

    #[test]
    fn every_bit_flip_and_every_cut_is_refused() {
        let data = b"abc".to_vec();
        let bytes = encode_snapshot_file(7, &meta(&data), &data);
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_snapshot_file(&bad).is_err(), "bit {bit}");
        }
        for cut in 0..bytes.len() {
            assert!(decode_snapshot_file(&bytes[..cut]).is_err(), "cut {cut}");
        }
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_snapshot_file(&bytes);
            let mut framed = bytes.clone();
            if framed.len() >= SNAPSHOT_HEADER_LEN + CRC_LEN {
                framed[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
                framed[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
                let end = framed.len() - CRC_LEN;
                let crc = crc32c::crc32c(&framed[..end]);
                framed[end..].copy_from_slice(&crc.to_le_bytes());
                let _ = decode_snapshot_file(&framed);
            }
        }
    }
}
