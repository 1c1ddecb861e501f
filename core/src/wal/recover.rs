//! Recovery: from the bytes of the segments and the snapshot file to the state a
//! restarting member hands to [`crate::node::Node::restart`], plus a report of
//! what was found and what was dropped.

use crate::io::Recovered;
use crate::types::{LogIndex, Term};
use crate::wal::bytes::{all_zero, to_u64};
use crate::wal::cipher::{is_sealed_snapshot, open_snapshot_file, Cipher};
use crate::wal::error::WalError;
use crate::wal::identity::{IdentityField, WalIdentity};
use crate::wal::record::{Record, RecordProblem, TornReason};
use crate::wal::replay::Replay;
use crate::wal::scan::{scan, Stop};
use crate::wal::segment::{HeaderProblem, SegmentHeader, SegmentId, SEGMENT_HEADER_LEN};
use crate::wal::snapshot_file::{decode_snapshot_file, SnapshotFile, SnapshotProblem};

/// What recovery found and decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The state to hand to `Node::restart`.
    pub recovered: Recovered,
    /// The index the next log entry may have at most; the writer resumes here.
    pub next_index: LogIndex,
    /// The segments that hold the log, in order, with what each holds.
    pub segments: Vec<SegmentSummary>,
    /// An incomplete record at the end of the last segment, dropped.
    pub torn_tail: Option<TornTail>,
    /// The last segment, dropped because its own header is incomplete: it was
    /// being created when the node stopped.
    pub torn_segment: Option<TornSegment>,
    /// Set when the snapshot file is newer than the last snapshot marker in the
    /// WAL (the node stopped between writing the two): what that did to the log.
    pub snapshot_ahead: Option<SnapshotAhead>,
    /// Entries dropped because the snapshot covers them.
    pub covered_entries_dropped: u64,
    /// Whether any hard state record was found (if not, the hard state is the default).
    pub hard_state_found: bool,
    /// The last snapshot marker in the WAL, `(index, term)`.
    pub last_marker: Option<(LogIndex, Term)>,
}

/// One segment as recovery read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The segment.
    pub id: SegmentId,
    /// Records read (including the ones written when the segment was created).
    pub records: u64,
    /// Bytes of header and valid records; the writer continues the last segment here.
    pub valid_len: u64,
    /// The file's length (valid bytes, a dropped torn record, zero padding).
    pub file_len: u64,
    /// Whether the segment holds a hard state record. New segments start with one
    /// (when there is a hard state), but a torn tail can cut it off; the writer then
    /// restates it, so that deleting older segments never loses the hard state.
    pub holds_hard_state: bool,
    /// Whether the segment holds a snapshot marker (see `holds_hard_state`).
    pub holds_snapshot_marker: bool,
    /// The block size in the segment's header: the writer resumes padding the
    /// last segment to it.
    pub block_size: u32,
}

/// An incomplete record at the very end of the log, dropped by recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment.
    pub segment: SegmentId,
    /// Where the incomplete record starts; the file is cut to this length.
    pub offset: u64,
    /// Bytes of the incomplete record that reached the disk (up to its last non-zero byte).
    pub record_bytes: u64,
    /// Bytes cut from the file in all (the record and any zero padding after it).
    pub bytes_dropped: u64,
    /// How the record is incomplete.
    pub reason: TornReason,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: dropped an incomplete record at byte offset {} ({} bytes of it reached the disk; the file is \
             cut to {} bytes, {} bytes less): {}. This is safe: it is the last record of the log, so it was \
             being written when the node stopped. A write is acknowledged only after a sync that covers all of \
             its bytes, and a sync covers every earlier byte too, so an incomplete final record was never \
             synced and nothing that depends on it was acknowledged.",
            self.segment, self.offset, self.record_bytes, self.offset, self.bytes_dropped, self.reason
        )
    }
}

/// The last segment, dropped because its header is incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornSegment {
    /// The segment (from its file name).
    pub segment: SegmentId,
    /// The file's length.
    pub bytes: u64,
    /// What is wrong with its header.
    pub problem: HeaderProblem,
}

impl std::fmt::Display for TornSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: dropped the whole file ({} bytes): its header is incomplete ({}) and nothing but zeroes \
             follows it. This is safe: it is the last segment and it was being created when the node stopped; \
             the writer syncs every earlier segment before it creates a new one, and nothing was ever synced \
             in this one.",
            self.segment, self.bytes, self.problem
        )
    }
}

/// The snapshot file is newer than the WAL's last snapshot marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotAhead {
    /// The snapshot file's index.
    pub index: LogIndex,
    /// The snapshot file's term.
    pub term: Term,
    /// Whether the log after the snapshot was obsolete (it held `index` with
    /// another term) and was dropped.
    pub discard_after: bool,
    /// How many obsolete entries were dropped.
    pub obsolete_entries_dropped: u64,
}

impl RecoveryReport {
    /// True when there was nothing at all: no segment and no snapshot (a member
    /// that never made its bootstrap durable).
    pub fn is_blank(&self) -> bool {
        self.segments.is_empty() && self.recovered.snapshot.is_none()
    }
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.recovered.snapshot.as_ref().map(|(meta, _)| (meta.index, meta.term));
        let entries = &self.recovered.entries;
        write!(f, "recovered term {}, vote {:?}", self.recovered.hard_state.term, self.recovered.hard_state.vote)?;
        match snapshot {
            Some((index, term)) => write!(f, ", snapshot at index {index} (term {term})")?,
            None => write!(f, ", no snapshot")?,
        }
        match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => write!(f, ", log entries {} to {}", first.index, last.index)?,
            _ => write!(f, ", no log entries")?,
        }
        write!(f, ", from {} segment(s)", self.segments.len())?;
        if self.covered_entries_dropped > 0 {
            write!(f, "; {} entries the snapshot covers were dropped", self.covered_entries_dropped)?;
        }
        if let Some(ahead) = &self.snapshot_ahead {
            write!(
                f,
                "; the snapshot file (index {}) is newer than the WAL's last snapshot marker (the node stopped \
                 between the two writes)",
                ahead.index
            )?;
            if ahead.discard_after {
                write!(
                    f,
                    " and the log did not match it: {} obsolete entries dropped",
                    ahead.obsolete_entries_dropped
                )?;
            }
        }
        if let Some(torn) = &self.torn_segment {
            write!(f, "\n{torn}")?;
        }
        if let Some(torn) = &self.torn_tail {
            write!(f, "\n{torn}")?;
        }
        Ok(())
    }
}

/// A segment file: its parsed name, the name as given, and its bytes.
pub(crate) struct NamedSegment<'a> {
    pub(crate) id: SegmentId,
    pub(crate) name: &'a str,
    pub(crate) bytes: &'a [u8],
}

/// Parses the names and sorts by sequence number; refuses bad names, duplicate
/// sequence numbers and holes in the sequence.
pub(crate) fn order_segments<N: AsRef<str>, B: AsRef<[u8]>>(
    segments: &[(N, B)],
) -> Result<Vec<NamedSegment<'_>>, WalError> {
    let mut named = Vec::with_capacity(segments.len());
    for (name, bytes) in segments {
        let name = name.as_ref();
        let id = SegmentId::parse(name).ok_or_else(|| WalError::BadSegmentName { file: name.to_string() })?;
        named.push(NamedSegment { id, name, bytes: bytes.as_ref() });
    }
    named.sort_by_key(|s| (s.id.seq, s.id.first_index));
    for pair in named.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.id.seq == b.id.seq {
            return Err(WalError::DuplicateSegment { file: b.name.to_string(), other: a.name.to_string() });
        }
        if a.id.seq.checked_add(1) != Some(b.id.seq) {
            return Err(WalError::MissingSegment { after: a.name.to_string(), before: b.name.to_string() });
        }
    }
    Ok(named)
}

/// Checks a segment header's identity and name.
pub(crate) fn check_header(
    identity: &WalIdentity,
    segment: &NamedSegment<'_>,
    header: &SegmentHeader,
) -> Result<(), WalError> {
    let fields = [
        (IdentityField::Cluster, identity.cluster_id, header.identity.cluster_id),
        (IdentityField::Member, identity.member_id, header.identity.member_id),
        (IdentityField::Group, identity.group_id, header.identity.group_id),
    ];
    for (field, expected, found) in fields {
        if expected != found {
            return Err(WalError::WrongIdentity { file: segment.name.to_string(), field, expected, found });
        }
    }
    if header.id != segment.id {
        return Err(WalError::NameMismatch { file: segment.name.to_string(), header: header.id });
    }
    Ok(())
}

/// Reads the snapshot file and checks that it belongs to this member's group.
pub(crate) fn read_snapshot<'a>(identity: &WalIdentity, bytes: &'a [u8]) -> Result<SnapshotFile<'a>, SnapshotProblem> {
    let file = decode_snapshot_file(bytes)?;
    if file.cluster_id != identity.cluster_id {
        return Err(SnapshotProblem::WrongCluster { expected: identity.cluster_id, found: file.cluster_id });
    }
    if file.meta.index == LogIndex::MAX {
        return Err(SnapshotProblem::BadMeta(crate::codec::DecodeError::Invalid("snapshot index out of range".into())));
    }
    if file.meta.group != identity.group_id {
        return Err(SnapshotProblem::WrongGroup { expected: identity.group_id, found: file.meta.group });
    }
    Ok(file)
}

/// Whether the last segment's header is one whose creation was cut short.
pub(crate) fn is_torn_creation(problem: &HeaderProblem, bytes: &[u8]) -> bool {
    problem.could_be_torn() && all_zero(bytes.get(SEGMENT_HEADER_LEN..).unwrap_or(&[]))
}

/// Recovers a member's durable state from its WAL segments (`(file name, bytes)`,
/// in any order) and its snapshot file, if it has one.
///
/// Records are replayed in order. An incomplete record at the very end of the
/// last segment (followed only by zeroes or the end of the file) is dropped and
/// reported: it was never synced. Any other damage, a hole in the sequence of
/// segments or of log indexes, a segment of another cluster, member or group, or
/// a snapshot file older than the WAL says is an error that names the file and
/// offset: recovery never skips a record. Entries the snapshot covers are
/// dropped; if the snapshot file is newer than the WAL's last snapshot marker, the
/// log after it survives only if the log holds the snapshot's index with its term.
pub fn recover<N: AsRef<str>, B: AsRef<[u8]>>(
    identity: &WalIdentity,
    segments: &[(N, B)],
    snapshot: Option<&[u8]>,
) -> Result<RecoveryReport, WalError> {
    recover_with_cipher(identity, segments, snapshot, None)
}

/// [`recover()`] of a WAL whose records and snapshot file may be sealed
/// (encryption at rest): they are opened with `cipher`. A sealed record or
/// file that cannot be opened (no key, another key, tampering) is an error
/// that names the file and offset, as other damage; plain records are read
/// as they are (a WAL written before encryption was turned on).
pub fn recover_with_cipher<N: AsRef<str>, B: AsRef<[u8]>>(
    identity: &WalIdentity,
    segments: &[(N, B)],
    snapshot: Option<&[u8]>,
    cipher: Option<&Cipher>,
) -> Result<RecoveryReport, WalError> {
    let opened = match snapshot {
        Some(bytes) if is_sealed_snapshot(bytes) => {
            Some(open_snapshot_file(cipher, bytes).map_err(|p| WalError::BadSnapshot(SnapshotProblem::Sealed(p)))?)
        }
        _ => None,
    };
    let snapshot = opened.as_deref().or(snapshot);
    let snapshot = snapshot.map(|bytes| read_snapshot(identity, bytes)).transpose().map_err(WalError::BadSnapshot)?;
    let files = order_segments(segments)?;
    let mut replay: Option<Replay> = None;
    let mut summaries = Vec::with_capacity(files.len());
    let mut torn_tail = None;
    let mut torn_segment = None;
    for (position, segment) in files.iter().enumerate() {
        let last = position + 1 == files.len();
        let header = match SegmentHeader::decode(segment.bytes) {
            Ok(header) => header,
            Err(problem) if last && is_torn_creation(&problem, segment.bytes) => {
                torn_segment = Some(TornSegment { segment: segment.id, bytes: to_u64(segment.bytes.len()), problem });
                break;
            }
            Err(problem) => return Err(WalError::BadSegmentHeader { file: segment.name.to_string(), problem }),
        };
        check_header(identity, segment, &header)?;
        let replay = replay.get_or_insert_with(|| Replay::new(segment.id.first_index));
        if segment.id.first_index != replay.next {
            return Err(WalError::SegmentDoesNotFollow {
                file: segment.name.to_string(),
                first_index: segment.id.first_index,
                expected: replay.next,
            });
        }
        let (records, stop) = scan(segment.bytes, SEGMENT_HEADER_LEN, Some(header.block_size), cipher);
        let count = to_u64(records.len());
        let holds_hard_state = records.iter().any(|r| matches!(r.record, Record::HardState(_)));
        let holds_snapshot_marker = records.iter().any(|r| matches!(r.record, Record::Snapshot { .. }));
        for (n, scanned) in records.into_iter().enumerate() {
            replay.apply(scanned.record).map_err(|gap| WalError::Gap {
                file: segment.name.to_string(),
                offset: scanned.offset,
                record: to_u64(n),
                index: gap.index,
                expected: gap.expected,
            })?;
        }
        let corrupt =
            |offset, problem| WalError::Corrupt { file: segment.name.to_string(), offset, record: count, problem };
        let valid_len = match stop {
            Stop::End { at } => at,
            Stop::Torn { at, reason } if last => {
                torn_tail = Some(torn(segment, at, reason));
                at
            }
            Stop::Torn { at, reason } => return Err(corrupt(at, RecordProblem::Incomplete(reason))),
            Stop::Damaged { at, problem, .. } => return Err(corrupt(at, problem)),
        };
        summaries.push(SegmentSummary {
            id: segment.id,
            records: count,
            valid_len,
            file_len: to_u64(segment.bytes.len()),
            holds_hard_state,
            holds_snapshot_marker,
            block_size: header.block_size,
        });
    }
    let replay = replay.unwrap_or_else(|| Replay::new(1));
    resolve(replay, snapshot, summaries, torn_tail, torn_segment)
}

fn torn(segment: &NamedSegment<'_>, at: u64, reason: TornReason) -> TornTail {
    let start = usize::try_from(at).unwrap_or(usize::MAX).min(segment.bytes.len());
    let rest = &segment.bytes[start..];
    let record_bytes = to_u64(rest.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1));
    TornTail { segment: segment.id, offset: at, record_bytes, bytes_dropped: to_u64(rest.len()), reason }
}

/// Reconciles the replayed log with the snapshot file and checks that nothing is missing.
fn resolve(
    mut replay: Replay,
    snapshot: Option<SnapshotFile<'_>>,
    segments: Vec<SegmentSummary>,
    torn_tail: Option<TornTail>,
    torn_segment: Option<TornSegment>,
) -> Result<RecoveryReport, WalError> {
    let marker = replay.marker;
    let point = snapshot.as_ref().map(|s| (s.meta.index, s.meta.term));
    if let Some((index, term)) = marker {
        let behind = point.is_none_or(|(i, t)| i < index || (i == index && t != term));
        if behind {
            return Err(WalError::SnapshotMissing { index, term, found: point });
        }
    }
    let mut snapshot_ahead = None;
    let mut covered_entries_dropped = 0;
    if let Some((index, term)) = point {
        if marker.is_none_or(|(i, _)| index > i) {
            // The node stopped after the snapshot file was renamed into place but
            // before the marker reached the disk. Do what installing it did: keep
            // the log after it only if the log holds the snapshot's entry.
            let discard_after = replay.term_of(index).is_some_and(|t| t != term);
            let obsolete_entries_dropped = if discard_after {
                let below = replay.entries.iter().filter(|e| e.index <= index).count();
                covered_entries_dropped += to_u64(below);
                replay.discard_all(index + 1) - to_u64(below)
            } else {
                0
            };
            snapshot_ahead = Some(SnapshotAhead { index, term, discard_after, obsolete_entries_dropped });
        }
        covered_entries_dropped += replay.drop_through(index);
    }
    let base = point.map_or(0, |(index, _)| index);
    let first = replay.first_index();
    if first > base + 1 {
        return Err(WalError::MissingEntries { from: base + 1, to: first - 1 });
    }
    let recovered = Recovered {
        hard_state: replay.hard_state.unwrap_or_default(),
        snapshot: snapshot.map(|s| (s.meta, s.data.to_vec())),
        entries: replay.entries.into(),
    };
    Ok(RecoveryReport {
        recovered,
        next_index: replay.next.max(base + 1),
        segments,
        torn_tail,
        torn_segment,
        snapshot_ahead,
        covered_entries_dropped,
        hard_state_found: replay.hard_state.is_some(),
        last_marker: marker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::{Membership, SnapshotMeta};
    use crate::wal::snapshot_file::encode_snapshot_file;

    const ID: WalIdentity = WalIdentity { cluster_id: 9, member_id: 1, group_id: 4 };
    const NONE: [(&str, &[u8]); 0] = [];

    #[test]
    fn nothing_at_all_is_a_blank_member() {
        let report = recover(&ID, &NONE, None).expect("blank");
        assert!(report.is_blank());
        assert_eq!((report.next_index, report.recovered.clone()), (1, Recovered::default()));
        assert!(!report.hard_state_found);
    }

    #[test]
    fn a_snapshot_without_segments_continues_after_it() {
        let data = vec![5; 4];
        let meta = SnapshotMeta {
            group: ID.group_id,
            index: 12,
            term: 3,
            membership: Membership::with_voters([1, 2]),
            size: 4,
            checksum: crc32c::crc32c(&data),
        };
        let file = encode_snapshot_file(ID.cluster_id, &meta, &data);
        let report = recover(&ID, &NONE, Some(&file)).expect("snapshot only");
        assert!(!report.is_blank());
        assert_eq!(report.next_index, 13);
        assert_eq!(report.recovered.snapshot, Some((meta, data)));
        assert!(report.snapshot_ahead.is_some_and(|a| !a.discard_after));
        let wrong_group = WalIdentity { group_id: 5, ..ID };
        assert!(matches!(
            recover(&wrong_group, &NONE, Some(&file)),
            Err(WalError::BadSnapshot(SnapshotProblem::WrongGroup { expected: 5, found: 4 }))
        ));
    }
}
