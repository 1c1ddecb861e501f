//! Why a WAL could not be recovered, with what to do about it.

use crate::types::{LogIndex, Term};
use crate::wal::identity::IdentityField;
use crate::wal::record::RecordProblem;
use crate::wal::segment::{HeaderProblem, SegmentId};
use crate::wal::snapshot_file::{SnapshotProblem, SNAPSHOT_FILE_NAME};

/// What an operator can do when durable data is damaged.
pub const DAMAGE_ADVICE: &str = "Run `lockstep fsck` on this member's data directory for a full report \
(`--repair` drops only torn tails and data a snapshot covers). Do not edit or delete WAL files by hand. \
If the rest of the cluster is healthy, remove this member, wipe its data directory and add it back: it \
rejoins from a snapshot. Otherwise restore the cluster from a backup snapshot.";

/// What an operator can do when the data directory is not this member's.
pub const IDENTITY_ADVICE: &str = "This data directory was not written by this member of this cluster: \
check the configured data directory, cluster id and member id. Never start a member on another member's data.";

/// Why a WAL (with its snapshot) could not be recovered. Every variant names the
/// file and, where there is one, the byte offset; `Display` adds what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalError {
    /// A file handed in as a segment does not have a segment file name.
    BadSegmentName {
        /// The file.
        file: String,
    },
    /// Two segments have the same sequence number.
    DuplicateSegment {
        /// One file.
        file: String,
        /// The other.
        other: String,
    },
    /// The sequence numbers skip: a segment between these two is missing.
    MissingSegment {
        /// The segment before the hole.
        after: String,
        /// The segment after the hole.
        before: String,
    },
    /// A segment's header is unreadable (and it is not a segment whose creation
    /// was cut short at the end of the log).
    BadSegmentHeader {
        /// The file.
        file: String,
        /// What is wrong.
        problem: HeaderProblem,
    },
    /// A segment or the snapshot was written for another cluster, member or group.
    WrongIdentity {
        /// The file.
        file: String,
        /// Which id differs.
        field: IdentityField,
        /// This member's.
        expected: u64,
        /// The file's.
        found: u64,
    },
    /// A segment's header disagrees with its file name (renamed or copied?).
    NameMismatch {
        /// The file.
        file: String,
        /// What the header says.
        header: SegmentId,
    },
    /// A segment does not start where the previous one ended: segments are out of
    /// order, or one was replaced.
    SegmentDoesNotFollow {
        /// The file.
        file: String,
        /// Its first index.
        first_index: LogIndex,
        /// Where the previous segment's log ended.
        expected: LogIndex,
    },
    /// A record is damaged where a crash cannot explain it: it is followed by
    /// valid data or is in a segment that is not the last. Such a record was
    /// synced, so dropping it could lose acknowledged writes.
    Corrupt {
        /// The file.
        file: String,
        /// Byte offset of the damaged record.
        offset: u64,
        /// Its position among the segment's records (0 is the first).
        record: u64,
        /// What is wrong.
        problem: RecordProblem,
    },
    /// An entry record leaves a hole after the log.
    Gap {
        /// The file.
        file: String,
        /// Byte offset of the record.
        offset: u64,
        /// Its position among the segment's records.
        record: u64,
        /// The entry's index.
        index: LogIndex,
        /// The largest index it could have had.
        expected: LogIndex,
    },
    /// The snapshot file is unreadable.
    BadSnapshot(SnapshotProblem),
    /// The WAL records a snapshot that the snapshot file does not hold (it is
    /// missing or older): the snapshot file was lost or replaced.
    SnapshotMissing {
        /// The snapshot's index according to the WAL.
        index: LogIndex,
        /// The snapshot's term according to the WAL.
        term: Term,
        /// `(index, term)` of the snapshot file, if there is one.
        found: Option<(LogIndex, Term)>,
    },
    /// After replay, log entries between the snapshot and the first surviving entry
    /// are missing.
    MissingEntries {
        /// The first missing index.
        from: LogIndex,
        /// The last missing index.
        to: LogIndex,
    },
}

impl WalError {
    /// The file the error is about, if it is about one.
    pub fn file(&self) -> Option<&str> {
        let file = match self {
            WalError::BadSegmentName { file }
            | WalError::DuplicateSegment { file, .. }
            | WalError::BadSegmentHeader { file, .. }
            | WalError::WrongIdentity { file, .. }
            | WalError::NameMismatch { file, .. }
            | WalError::SegmentDoesNotFollow { file, .. }
            | WalError::Corrupt { file, .. }
            | WalError::Gap { file, .. } => file,
            WalError::MissingSegment { before, .. } => before,
            WalError::BadSnapshot(_) | WalError::SnapshotMissing { .. } => SNAPSHOT_FILE_NAME,
            WalError::MissingEntries { .. } => return None,
        };
        Some(file)
    }

    /// The byte offset the error is about, if it is about one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            WalError::Corrupt { offset, .. } | WalError::Gap { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    fn advice(&self) -> &'static str {
        match self {
            WalError::WrongIdentity { .. } => IDENTITY_ADVICE,
            WalError::BadSegmentHeader {
                problem: HeaderProblem::UnsupportedVersion(_) | HeaderProblem::UnsupportedFlags,
                ..
            }
            | WalError::BadSnapshot(SnapshotProblem::UnsupportedVersion(_)) => {
                "Start the lockstep release that wrote these files (or a newer one); this build cannot read them."
            }
            WalError::BadSnapshot(SnapshotProblem::WrongCluster { .. } | SnapshotProblem::WrongGroup { .. }) => {
                IDENTITY_ADVICE
            }
            _ => DAMAGE_ADVICE,
        }
    }
}

impl WalError {
    /// What is wrong, without the advice that `Display` adds.
    pub fn message(&self) -> String {
        struct Describe<'a>(&'a WalError);
        impl std::fmt::Display for Describe<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.describe(f)
            }
        }
        Describe(self).to_string()
    }

    fn describe(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalError::BadSegmentName { file } => {
                write!(f, "{file}: not a WAL segment name (expected {{seq:016x}}-{{first_index:016x}}.wal)")?
            }
            WalError::DuplicateSegment { file, other } => {
                write!(f, "{file} and {other} have the same sequence number")?
            }
            WalError::MissingSegment { after, before } => {
                write!(f, "a WAL segment is missing between {after} and {before}")?
            }
            WalError::BadSegmentHeader { file, problem } => write!(f, "{file}: unreadable segment header: {problem}")?,
            WalError::WrongIdentity { file, field, expected, found } => {
                write!(f, "{file}: written for {field} {found}, but this member has {field} {expected}")?
            }
            WalError::NameMismatch { file, header } => {
                write!(f, "{file}: the header names this segment {header}: the file was renamed or copied")?
            }
            WalError::SegmentDoesNotFollow { file, first_index, expected } => write!(
                f,
                "{file}: the segment starts at log index {first_index} but the previous segment ends before \
                 index {expected}: segments are out of order or one was replaced"
            )?,
            WalError::Corrupt { file, offset, record, problem } => write!(
                f,
                "{file}: record #{record} at byte offset {offset} is corrupt: {problem}. It is not an \
                 unfinished write at the end of the log (valid data follows it, or later segments exist), so \
                 it was synced and may hold acknowledged data; recovery refuses to skip it"
            )?,
            WalError::Gap { file, offset, record, index, expected } => write!(
                f,
                "{file}: record #{record} at byte offset {offset} holds log entry {index}, but the log ends \
                 before index {expected}: entries are missing"
            )?,
            WalError::BadSnapshot(problem) => write!(f, "{SNAPSHOT_FILE_NAME}: unreadable snapshot: {problem}")?,
            WalError::SnapshotMissing { index, term, found } => {
                write!(f, "the WAL records a snapshot at index {index} (term {term}) but ")?;
                match found {
                    None => write!(f, "there is no {SNAPSHOT_FILE_NAME}")?,
                    Some((i, t)) => write!(f, "{SNAPSHOT_FILE_NAME} holds index {i} (term {t})")?,
                }
                write!(f, ": the snapshot file was lost or replaced")?
            }
            WalError::MissingEntries { from, to } => write!(
                f,
                "log entries {from} to {to} are missing: neither the snapshot nor the WAL segments hold them"
            )?,
        }
        Ok(())
    }
}

impl std::fmt::Display for WalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.describe(f)?;
        write!(f, ". {}", self.advice())
    }
}

impl std::error::Error for WalError {}
