//! An in-memory data directory that carries out [`WalAction`]s: the reference for
//! what a runtime does with them, and the disk of the WAL's own tests.

use std::collections::BTreeMap;

use crate::wal::error::WalError;
use crate::wal::identity::WalIdentity;
use crate::wal::recover::{recover, RecoveryReport};
use crate::wal::segment::SegmentId;
use crate::wal::writer::WalAction;

/// Segment files and the snapshot file, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemDir {
    /// Whether `CreateSegment` preallocates (zero-fills) to its `preallocate_len`.
    pub preallocate: bool,
    segments: BTreeMap<SegmentId, Vec<u8>>,
    snapshot: Option<Vec<u8>>,
}

impl MemDir {
    /// An empty directory.
    pub fn new(preallocate: bool) -> MemDir {
        MemDir { preallocate, ..MemDir::default() }
    }

    /// Carries out one action completely.
    pub fn apply(&mut self, action: &WalAction) {
        self.apply_prefix(action, usize::MAX);
    }

    /// Carries out the first `written` bytes of an action, as a crash in the middle
    /// of it would leave them: `CreateSegment` and `Append` write only that many of
    /// their bytes (the rest of a preallocated file stays zero); any other action
    /// happens entirely if `written > 0` and not at all otherwise.
    pub fn apply_prefix(&mut self, action: &WalAction, written: usize) {
        match action {
            WalAction::CreateSegment { segment, bytes, preallocate_len } => {
                assert!(!self.segments.contains_key(segment), "{segment} already exists");
                let mut file = bytes[..written.min(bytes.len())].to_vec();
                if self.preallocate {
                    let len = usize::try_from(*preallocate_len).expect("preallocation fits in memory");
                    file.resize(file.len().max(len), 0);
                }
                self.segments.insert(*segment, file);
            }
            WalAction::Append { segment, offset, bytes } => {
                let file = self.segments.get_mut(segment).expect("appending to an existing segment");
                let offset = usize::try_from(*offset).expect("offset fits in memory");
                assert!(offset <= file.len(), "append at {offset} beyond the end of {segment} ({})", file.len());
                // Without preallocation an append goes at the end of the file, or over
                // zero bytes after it: the start of a write cut short can be zero (a
                // record length's low byte, a padding record of length 0), and
                // recovery reads such bytes as the end of the records.
                assert!(
                    self.preallocate || file[offset..].iter().all(|b| *b == 0),
                    "append at {offset} is not at the end of {segment}"
                );
                let bytes = &bytes[..written.min(bytes.len())];
                let end = offset + bytes.len();
                if file.len() < end {
                    file.resize(end, 0);
                }
                file[offset..end].copy_from_slice(bytes);
            }
            _ if written == 0 => {}
            WalAction::Sync { .. } => {}
            WalAction::WriteSnapshot { bytes } => self.snapshot = Some(bytes.clone()),
            WalAction::DeleteSegments { segments } => {
                for segment in segments {
                    assert!(self.segments.remove(segment).is_some(), "deleting {segment}, which does not exist");
                }
            }
            WalAction::TruncateSegment { segment, len } => {
                let file = self.segments.get_mut(segment).expect("truncating an existing segment");
                file.truncate(usize::try_from(*len).expect("length fits in memory"));
            }
        }
    }

    /// The segment files as `(name, bytes)`, oldest first.
    pub fn segment_files(&self) -> Vec<(String, &[u8])> {
        self.segments.iter().map(|(id, bytes)| (id.file_name(), bytes.as_slice())).collect()
    }

    /// A segment's bytes, for inspection and fault injection.
    pub fn segment_mut(&mut self, segment: &SegmentId) -> Option<&mut Vec<u8>> {
        self.segments.get_mut(segment)
    }

    /// The snapshot file, if there is one.
    pub fn snapshot(&self) -> Option<&[u8]> {
        self.snapshot.as_deref()
    }

    /// The snapshot file, for fault injection.
    pub fn snapshot_mut(&mut self) -> Option<&mut Vec<u8>> {
        self.snapshot.as_mut()
    }

    /// Runs [`recover()`](super::recover()) over the directory's files.
    pub fn recover(&self, identity: &WalIdentity) -> Result<RecoveryReport, WalError> {
        recover(identity, &self.segment_files(), self.snapshot())
    }
}
