//! The write-ahead log and the snapshot file: on-disk format, writer decisions,
//! recovery and fsck, as pure code over bytes.
//!
//! Runtimes (glommio DMA files in production, the simulated disk under madsim)
//! only read and write bytes: they feed core's [`crate::io::Command`]s to a
//! [`WalWriter`] and carry out the [`WalAction`]s it returns; on restart they read
//! every segment and the snapshot file and call [`recover()`], hand
//! [`RecoveryReport::recovered`] to `Node::restart`, and continue with
//! [`WalWriter::resume`]. `lockstep fsck` calls [`fsck()`].
//!
//! # On-disk format, version 2
//!
//! A member's data directory holds WAL segments `{seq:016x}-{first_index:016x}.wal`
//! ([`SegmentId`]) and at most one snapshot file, `snapshot.snap`
//! ([`SNAPSHOT_FILE_NAME`]). All integers are little-endian and explicitly sized;
//! all checksums are CRC32C.
//!
//! ## Segment
//!
//! A 64-byte header ([`SegmentHeader`]), then records back to back, then
//! optionally zeroes (preallocated space, which is not corruption):
//!
//! ```text
//! offset size field
//!      0    8 magic        "LKSPWAL\0"
//!      8    4 version      u32 = 2
//!     12    4 flags        u32 = 0
//!     16    8 cluster_id   u64
//!     24    8 member_id    u64
//!     32    8 group_id     u64
//!     40    8 seq          u64   (also in the file name)
//!     48    8 first_index  u64   (also in the file name)
//!     56    4 block_size   u32   (a power of two, 64 to 1 MiB; WalConfig::block_size)
//!     60    4 header_crc   u32, over bytes 0..60
//! ```
//!
//! Version 1 (no block size, no padding record) is refused with
//! [`HeaderProblem::UnsupportedVersion`]; no version 1 data was ever deployed.
//!
//! `seq` increases by one per segment. `first_index` is the index after the last
//! log entry when the segment was created: every live entry of earlier segments
//! is below it, so a snapshot that covers `first_index - 1` makes every earlier
//! segment deletable, and on replay each segment must start exactly where the
//! previous one's log ends. A new segment starts with a hard state record and a
//! snapshot marker restating the current ones (if any), so deleting old segments
//! never loses them.
//!
//! ## Record
//!
//! ```text
//! offset size field
//!      0    4 len          u32, body length (at most RECORD_BODY_LEN_MAX)
//!      4    1 kind         u8
//!      5    3 reserved     = 0
//!      8    4 body_crc     u32, over the body
//!     12    4 header_crc   u32, over bytes 0..12
//!     16  len body
//! ```
//!
//! | kind | record | body | replay |
//! |------|--------|------|--------|
//! | 1 | entry | `codec::encode_entry` frame | remove entries `>= index`, append (an index beyond the end is a gap: error) |
//! | 2 | hard state | `codec::encode_hard_state` frame | replaces the hard state |
//! | 3 | truncate-from | `from: u64` (≥ 1) | remove entries `>= from` |
//! | 4 | snapshot marker | `index: u64, term: u64, flags: u8` | drop entries `<= index`; flag bit 0 (`discard_after`): drop all entries, the log continues at `index + 1` |
//! | 5 | padding | `len` zero bytes | nothing |
//!
//! A padding record fills the rest of a block: it ends on the first multiple of
//! the segment's `block_size` that is at least a record header (16 bytes) after
//! its start, so its body is shorter than one block. The writer appends one before
//! every `Sync` whose data would otherwise end inside a block. Recovery checks its
//! checksums, that its body is zero and where it ends (any other padding record is
//! corruption), and replays it as nothing; one torn at the very end of the last
//! segment is a torn tail like any other record.
//!
//! Core's commands map onto records: `SaveHardState` → hard state;
//! `AppendLog(entries)` → one entry record each (replaying the first removes what
//! follows it, which is the command's "truncate, then append"); `TruncateLog` →
//! truncate-from; `SaveSnapshot` → the snapshot file, then a marker whose
//! `discard_after` says whether core's log kept the entries after the snapshot
//! (it does only if it holds the snapshot's index with the snapshot's term).
//! `CompactLog { up_to }` deletes the segments `i` with
//! `segments[i + 1].first_index - 1 <= up_to` (never the last). `Sync` pads the
//! current segment to its next block boundary, then syncs.
//!
//! ## Snapshot file
//!
//! ```text
//!      0         8 magic       "LKSPSNAP"
//!      8         4 version     u32 = 1
//!     12         4 meta_len    u32
//!     16         8 cluster_id  u64
//!     24         8 data_len    u64
//!     32  meta_len meta        codec::encode_snapshot_meta frame
//!      …  data_len data
//!      …         4 crc         u32, over every byte before it
//! ```
//!
//! Written to `snapshot.snap.tmp`, synced, renamed over `snapshot.snap`, directory
//! synced: it is always whole, so any damage is an error.
//!
//! # Write ordering (what the writer's actions guarantee)
//!
//! 1. A segment is synced before the next one is created, so only the last
//!    segment can end in an unsynced (possibly incomplete) write.
//! 2. Earlier writes are synced before a snapshot file replaces the old one, and
//!    the snapshot file is durable before its marker is written, so the marker is
//!    never ahead of the snapshot file.
//! 3. Later segments are synced before older ones are deleted.
//! 4. The directory is synced whenever a segment was created, deleted or cut.
//! 5. After recovery ([`WalWriter::resume`]) the writer first cuts what recovery
//!    dropped, then makes the last segment hold the hard state and snapshot marker
//!    again if a torn tail cut off the copies it started with, and records a
//!    snapshot file that was newer than the WAL's last marker; these records go
//!    into the last segment whatever its size. Then it pads and syncs the last
//!    segment, so that what recovery read is durable before the node acts on it.
//! 6. Every sync ends on a block boundary (a padding record fills the rest of the
//!    block), so every write after it starts on a fresh block: **a block that
//!    holds synced data is never written again**, even by a runtime that writes
//!    whole blocks (`O_DIRECT`). A write torn by a power cut (a block left with
//!    any content at all) can only damage data that no sync covered, never an
//!    acknowledged record. The one block written again is the partial last block
//!    after recovery (rule 5), which holds only data no sync covered.
//!
//! # Recovery rules
//!
//! - Segments are ordered by `seq`; a hole or duplicate, a header of another
//!   cluster, member or group, a header that disagrees with its file name, an
//!   unknown version, or a segment that does not start where the previous one
//!   ended is an error.
//! - Padding records are checked (checksums, zero body, ending on the first block
//!   boundary after their header) and skipped; they are never data.
//! - Zeroes after the last record are preallocated space. An incomplete record at
//!   the very end of the **last** segment (a partial header, a body running past
//!   the end of the file, or a checksum failure followed only by zeroes) is a
//!   write cut short by a crash: it was never synced, so it is dropped and
//!   reported ([`TornTail`]). So is a last segment whose own header is incomplete
//!   ([`TornSegment`]).
//! - Any other damage (a bad record followed by valid data, anywhere in a segment
//!   that is not the last, data after zero padding, a checksum-valid record that
//!   does not decode) is corruption: [`WalError::Corrupt`] names the file, offset
//!   and record and says what to do. A record is never skipped.
//! - Entries the snapshot covers are dropped. If the WAL's last marker names a
//!   snapshot newer than the snapshot file, the file was lost: error. If the
//!   snapshot file is newer than the last marker (the node stopped between the
//!   two writes), the log after the snapshot survives only if the log holds the
//!   snapshot's index with its term; otherwise it is obsolete and dropped.
//! - The surviving entries must start right after the snapshot (or at 1).
//!
//! # Files
//!
//! [`segment`] (names, header), [`record`] (framing, kinds), `scan` (reading a
//! segment, torn versus damaged), `replay` (what records mean), `log_shape` (the
//! writer's view of the log), [`roll`] (segment size policy), [`snapshot_file`],
//! [`writer`], [`recover`](mod@recover), [`fsck`](mod@fsck), [`mem_dir`] (an in-memory
//! directory that carries out actions), [`error`], [`identity`].

mod bytes;
pub mod cipher;
pub mod error;
pub mod fsck;
pub mod identity;
mod log_shape;
pub mod mem_dir;
pub mod record;
pub mod recover;
mod replay;
pub mod roll;
mod scan;
pub mod segment;
pub mod snapshot_file;
pub mod writer;

pub use cipher::{Cipher, SealProblem, WalCipher};
pub use error::WalError;
pub use fsck::{fsck, fsck_with_cipher, FileCheck, FsckMode, FsckReport, Problem, ProblemKind, RepairAction};
pub use identity::{IdentityField, WalIdentity};
pub use mem_dir::MemDir;
pub use record::{Record, RecordProblem, TornReason, RECORD_BODY_LEN_MAX, RECORD_HEADER_LEN};
pub use recover::{recover, recover_with_cipher, RecoveryReport, SegmentSummary, SnapshotAhead, TornSegment, TornTail};
pub use roll::{roll_decision, Roll};
pub use segment::{
    HeaderProblem, SegmentHeader, SegmentId, BLOCK_SIZE_MAX, BLOCK_SIZE_MIN, SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_LEN,
};
pub use snapshot_file::{
    decode_snapshot_file, encode_snapshot_file, SnapshotFile, SnapshotProblem, SNAPSHOT_FILE_NAME,
    SNAPSHOT_TEMP_FILE_NAME,
};
pub use writer::{WalAction, WalConfig, WalWriter};
