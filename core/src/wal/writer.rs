//! The writer: turns core's write commands into file actions for a runtime.
//!
//! [`WalWriter::handle`] takes every [`Command`] a node emits (it ignores the ones
//! that are not storage) and returns [`WalAction`]s. The runtime carries them out
//! **in order, each finished before the next begins**; the writer has already put
//! the syncs that the format's safety depends on between them (the previous
//! segment is synced before a new one is created, earlier writes are synced before
//! a snapshot file replaces the old one and before segments are deleted).

use crate::io::Command;
use crate::raft::message::{Entry, HardState, SnapshotMeta};
use crate::types::{LogIndex, Term};
use crate::wal::bytes::to_u64;
use crate::wal::identity::WalIdentity;
use crate::wal::log_shape::LogShape;
use crate::wal::record::{encode_entry_record, Record};
use crate::wal::recover::RecoveryReport;
use crate::wal::roll::{roll_decision, Roll};
use crate::wal::segment::{SegmentHeader, SegmentId};
use crate::wal::snapshot_file::encode_snapshot_file;

/// Limits and options of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalConfig {
    /// A segment is closed before a record would take it past this size (a single
    /// larger record gets a segment of its own).
    pub segment_size_max: u64,
    /// Ask the runtime to preallocate each new segment to `segment_size_max`
    /// (zero-filled space, which recovery reads as the end of the records).
    pub preallocate: bool,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig { segment_size_max: 64 << 20, preallocate: true }
    }
}

/// One thing the runtime must do to the member's data directory. Carry actions
/// out in the order given, each finished before the next begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalAction {
    /// Create the segment file `segment.file_name()` holding `bytes` (its header and
    /// first records). If `preallocate_len` is larger than `bytes`, reserve the file
    /// up to that length with zeroes (for example `fallocate`). Then write to it.
    CreateSegment {
        /// The new segment.
        segment: SegmentId,
        /// Its first bytes.
        bytes: Vec<u8>,
        /// The length to preallocate, 0 for none.
        preallocate_len: u64,
    },
    /// Write `bytes` at `offset` of the segment (always its current end of data).
    Append {
        /// The segment.
        segment: SegmentId,
        /// Where the bytes go.
        offset: u64,
        /// The records.
        bytes: Vec<u8>,
    },
    /// Make durable: fsync every listed segment, then the directory if `directory`
    /// (a segment was created, deleted or truncated since the last sync). With
    /// `id: Some(id)` this answers `Command::Sync { id }`: report
    /// `Event::Persisted { up_to: id }` when done.
    Sync {
        /// The core sync this answers, if any.
        id: Option<u64>,
        /// Segments written since the last sync.
        segments: Vec<SegmentId>,
        /// Whether the directory must be synced as well.
        directory: bool,
    },
    /// Replace the snapshot file atomically: write `bytes` to
    /// `SNAPSHOT_TEMP_FILE_NAME`, fsync it, rename it to `SNAPSHOT_FILE_NAME`, fsync
    /// the directory. It must be durable before any later action is carried out.
    WriteSnapshot {
        /// The whole snapshot file ([`crate::wal::encode_snapshot_file`]).
        bytes: Vec<u8>,
    },
    /// Delete these segment files, in the order given (the oldest first).
    DeleteSegments {
        /// The segments.
        segments: Vec<SegmentId>,
    },
    /// Cut the segment to `len` bytes (dropping an incomplete record at its end that
    /// recovery found) and fsync it, before anything is written to it. Re-preallocating
    /// the space after `len` with zeroes is allowed.
    TruncateSegment {
        /// The segment.
        segment: SegmentId,
        /// Its new length.
        len: u64,
    },
}

/// The pure WAL writer of one member: tracks the segments, the current segment's
/// length, and the shape of the log, hard state and snapshot that new segments
/// start with.
///
/// - Construct with [`WalWriter::new`] (an empty data directory) or
///   [`WalWriter::resume`] (after [`crate::wal::recover()`]).
/// - Input: [`WalWriter::handle`] for every command the node emits, in order.
/// - Output: the [`WalAction`]s it returns, carried out in order.
/// - Getters: [`WalWriter::segments`], [`WalWriter::segment_len`], [`WalWriter::next_index`].
#[derive(Debug, Clone)]
pub struct WalWriter {
    identity: WalIdentity,
    config: WalConfig,
    segments: Vec<SegmentId>,
    segment_len: u64,
    segment_fresh: bool,
    log: LogShape,
    hard_state: Option<HardState>,
    snapshot: Option<(LogIndex, Term)>,
    unsynced: Vec<SegmentId>,
    directory_dirty: bool,
    pending: Vec<u8>,
    pending_offset: u64,
}

impl WalWriter {
    /// A writer for an empty data directory; the first write creates segment 1.
    pub fn new(identity: WalIdentity, config: WalConfig) -> WalWriter {
        assert!(config.segment_size_max > 0, "segment_size_max must be positive");
        WalWriter {
            identity,
            config,
            segments: Vec::new(),
            segment_len: 0,
            segment_fresh: true,
            log: LogShape::new((0, 0), [], 1),
            hard_state: None,
            snapshot: None,
            unsynced: Vec::new(),
            directory_dirty: false,
            pending: Vec::new(),
            pending_offset: 0,
        }
    }

    /// A writer that continues the WAL that `report` describes. The actions
    /// returned come first: they drop what recovery dropped (an incomplete record or
    /// segment at the end) and, if the snapshot file was newer than the WAL's last
    /// snapshot marker, append that marker so that the WAL says what recovery decided.
    #[must_use]
    pub fn resume(identity: WalIdentity, config: WalConfig, report: &RecoveryReport) -> (WalWriter, Vec<WalAction>) {
        let mut writer = WalWriter::new(identity, config);
        let mut out = Vec::new();
        let snapshot = report.recovered.snapshot.as_ref().map(|(meta, _)| (meta.index, meta.term));
        let entries = report.recovered.entries.iter().map(|e| (e.index, e.term));
        writer.log = LogShape::new(snapshot.unwrap_or((0, 0)), entries, report.next_index);
        writer.snapshot = snapshot;
        writer.hard_state = report.hard_state_found.then_some(report.recovered.hard_state);
        writer.segments = report.segments.iter().map(|s| s.id).collect();
        if let Some(torn) = &report.torn_segment {
            out.push(WalAction::DeleteSegments { segments: vec![torn.segment] });
            writer.directory_dirty = true;
        }
        if let Some(last) = report.segments.last() {
            writer.segment_len = last.valid_len;
            writer.segment_fresh = false;
            writer.pending_offset = last.valid_len;
            if let Some(torn) = &report.torn_tail {
                assert_eq!(torn.segment, last.id, "a torn tail is in the last segment");
                out.push(WalAction::TruncateSegment { segment: last.id, len: torn.offset });
                writer.directory_dirty = true;
            }
            // The last segment must hold the hard state and the snapshot marker, as a
            // new segment would: a torn tail (or fsck's repair of one) may have cut
            // off the ones it started with, and older segments may be deleted. These
            // records go into the last segment whatever its size: until the marker
            // below is written, the log's next index may differ from what replaying
            // the segments gives, and a new segment must start at the latter.
            if let (Some(hard_state), false) = (writer.hard_state, last.holds_hard_state) {
                writer.push_into_current(&Record::HardState(hard_state).encode());
            }
            // A snapshot file newer than the WAL's last marker gets its marker now, so
            // that the WAL says what recovery decided.
            let marker = match (&report.snapshot_ahead, snapshot) {
                (Some(ahead), _) => Some((ahead.index, ahead.term, ahead.discard_after)),
                (None, Some((index, term))) if !last.holds_snapshot_marker => Some((index, term, false)),
                _ => None,
            };
            if let Some((index, term, discard_after)) = marker {
                writer.push_into_current(&Record::Snapshot { index, term, discard_after }.encode());
            }
        }
        writer.flush(&mut out);
        (writer, out)
    }

    /// The live segments, oldest first.
    pub fn segments(&self) -> &[SegmentId] {
        &self.segments
    }

    /// The length of the current (last) segment's data.
    pub fn segment_len(&self) -> u64 {
        self.segment_len
    }

    /// One past the last log entry.
    pub fn next_index(&self) -> LogIndex {
        self.log.next()
    }

    /// Turns one command into file actions. Commands that are not storage writes
    /// (`Send`, `Reply`, `SetTimer`) produce none.
    #[must_use]
    pub fn handle(&mut self, command: &Command) -> Vec<WalAction> {
        let mut out = Vec::new();
        match command {
            Command::SaveHardState(hard_state) => {
                self.push_record(&Record::HardState(*hard_state).encode(), &mut out);
                self.hard_state = Some(*hard_state);
            }
            Command::AppendLog(entries) => self.append(entries, &mut out),
            Command::TruncateLog { from } => {
                assert!(*from > 0, "truncating from index 0");
                // Core truncates from a snapshot's own index after installing it over
                // a divergent log (for drivers that keep entries at or below the
                // snapshot); here the snapshot marker already covers those, so only
                // the entries after the snapshot go.
                let from = (*from).max(self.log.snapshot_index() + 1);
                self.push_record(&Record::TruncateFrom(from).encode(), &mut out);
                self.log.truncate(from);
            }
            Command::SaveSnapshot { meta, data } => self.save_snapshot(meta, data, &mut out),
            Command::CompactLog { up_to } => self.compact(*up_to, &mut out),
            Command::Sync { id } => {
                self.flush(&mut out);
                self.sync(Some(*id), &mut out);
            }
            Command::Send(_) | Command::Reply { .. } | Command::SetTimer { .. } => {}
        }
        self.flush(&mut out);
        out
    }

    fn append(&mut self, entries: &[Entry], out: &mut Vec<WalAction>) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index >= 1 && first.index <= self.log.next(),
            "AppendLog at index {} leaves a gap after index {}",
            first.index,
            self.log.next() - 1
        );
        let mut record = Vec::new();
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index, first.index + to_u64(offset), "AppendLog entries are contiguous");
            record.clear();
            encode_entry_record(entry, &mut record);
            self.push_record(&record, out);
            self.log.append(entry.index, entry.term);
        }
    }

    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8], out: &mut Vec<WalAction>) {
        assert_eq!(meta.group, self.identity.group_id, "snapshot of another group");
        // Every earlier write is durable before the new snapshot replaces the old
        // one, so the snapshot never gets ahead of the hard state and log before it.
        self.flush(out);
        if !self.unsynced.is_empty() || self.directory_dirty {
            self.sync(None, out);
        }
        out.push(WalAction::WriteSnapshot { bytes: encode_snapshot_file(self.identity.cluster_id, meta, data) });
        let mut after = self.log.clone();
        let kept = after.restore(meta.index, meta.term);
        let marker = Record::Snapshot { index: meta.index, term: meta.term, discard_after: !kept };
        self.push_record(&marker.encode(), out);
        self.log = after;
        self.snapshot = Some((meta.index, meta.term));
    }

    fn compact(&mut self, up_to: LogIndex, out: &mut Vec<WalAction>) {
        // Every live entry of segment i is below segments[i + 1].first_index, so
        // segment i may go once the snapshot covers first_index - 1. The last
        // segment always stays.
        let deletable =
            self.segments.windows(2).take_while(|pair| pair[1].first_index.saturating_sub(1) <= up_to).count();
        if deletable == 0 {
            return;
        }
        assert!(
            self.snapshot.is_some_and(|(index, _)| index >= up_to),
            "CompactLog up to {up_to} without a snapshot that covers it"
        );
        // The later segments (with the hard state and snapshot marker they start
        // with) are durable before the older ones disappear.
        self.flush(out);
        if !self.unsynced.is_empty() || self.directory_dirty {
            self.sync(None, out);
        }
        let segments: Vec<SegmentId> = self.segments.drain(..deletable).collect();
        out.push(WalAction::DeleteSegments { segments });
        self.directory_dirty = true;
    }

    /// Appends one encoded record to the current segment, starting a new segment
    /// first if the roll policy says so.
    fn push_record(&mut self, record: &[u8], out: &mut Vec<WalAction>) {
        let len = to_u64(record.len());
        if self.segments.is_empty() {
            self.create_segment(out);
        } else if roll_decision(self.segment_len, self.segment_fresh, len, self.config.segment_size_max)
            == Roll::NewSegment
        {
            // The old segment is durable before the new one exists: recovery treats
            // damage in any segment but the last as corruption.
            self.flush(out);
            self.sync(None, out);
            self.create_segment(out);
        }
        self.push_into_current(record);
    }

    /// Appends one encoded record to the current segment, whatever its size.
    fn push_into_current(&mut self, record: &[u8]) {
        self.pending.extend_from_slice(record);
        self.segment_len += to_u64(record.len());
        self.segment_fresh = false;
        self.mark_unsynced();
    }

    /// Creates the next segment. It starts with the current hard state and snapshot
    /// marker, so that deleting older segments never loses them.
    fn create_segment(&mut self, out: &mut Vec<WalAction>) {
        assert!(self.pending.is_empty(), "pending bytes belong to the previous segment");
        let seq = self.segments.last().map_or(1, |s| s.seq.checked_add(1).expect("segment sequence numbers last"));
        let segment = SegmentId { seq, first_index: self.log.next() };
        let mut bytes = SegmentHeader { identity: self.identity, id: segment }.encode().to_vec();
        if let Some(hard_state) = self.hard_state {
            Record::HardState(hard_state).encode_into(&mut bytes);
        }
        if let Some((index, term)) = self.snapshot {
            // Restating the snapshot changes nothing: entries up to it are already gone.
            Record::Snapshot { index, term, discard_after: false }.encode_into(&mut bytes);
        }
        let len = to_u64(bytes.len());
        let preallocate_len = if self.config.preallocate { self.config.segment_size_max.max(len) } else { 0 };
        out.push(WalAction::CreateSegment { segment, bytes, preallocate_len });
        self.segments.push(segment);
        self.segment_len = len;
        self.segment_fresh = true;
        self.pending_offset = len;
        self.mark_unsynced();
        self.directory_dirty = true;
    }

    fn mark_unsynced(&mut self) {
        let current = *self.segments.last().expect("a segment exists once a record is written");
        if self.unsynced.last() != Some(&current) {
            self.unsynced.push(current);
        }
    }

    /// Emits the bytes appended to the current segment since the last flush.
    fn flush(&mut self, out: &mut Vec<WalAction>) {
        if self.pending.is_empty() {
            return;
        }
        let segment = *self.segments.last().expect("pending bytes belong to a segment");
        let bytes = std::mem::take(&mut self.pending);
        let offset = self.pending_offset;
        self.pending_offset += to_u64(bytes.len());
        out.push(WalAction::Append { segment, offset, bytes });
    }

    fn sync(&mut self, id: Option<u64>, out: &mut Vec<WalAction>) {
        assert!(self.pending.is_empty(), "flush before sync");
        let segments = std::mem::take(&mut self.unsynced);
        let directory = std::mem::replace(&mut self.directory_dirty, false);
        out.push(WalAction::Sync { id, segments, directory });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::{Membership, Payload};
    use crate::wal::segment::SEGMENT_HEADER_LEN;

    const ID: WalIdentity = WalIdentity { cluster_id: 9, member_id: 1, group_id: 4 };
    const HS: HardState = HardState { term: 1, vote: Some(1) };

    fn entry(index: LogIndex, term: Term) -> Entry {
        Entry { index, term, payload: Payload::Command(vec![7; 5]) }
    }

    fn entry_record(e: &Entry) -> Vec<u8> {
        Record::Entry(e.clone()).encode()
    }

    fn header(segment: SegmentId) -> Vec<u8> {
        SegmentHeader { identity: ID, id: segment }.encode().to_vec()
    }

    fn snapshot(index: LogIndex, term: Term) -> Command {
        let data = vec![1, 2, 3];
        let meta = SnapshotMeta {
            group: ID.group_id,
            index,
            term,
            membership: Membership::with_voters([1]),
            size: 3,
            checksum: crc32c::crc32c(&data),
        };
        Command::SaveSnapshot { meta, data }
    }

    const SEG1: SegmentId = SegmentId { seq: 1, first_index: 1 };

    #[test]
    fn the_first_write_creates_segment_one_and_a_sync_covers_it() {
        let mut writer = WalWriter::new(ID, WalConfig { segment_size_max: 1 << 20, preallocate: true });
        assert_eq!(
            writer.handle(&Command::SaveHardState(HS)),
            vec![
                WalAction::CreateSegment { segment: SEG1, bytes: header(SEG1), preallocate_len: 1 << 20 },
                WalAction::Append { segment: SEG1, offset: 64, bytes: Record::HardState(HS).encode() },
            ]
        );
        let e = entry(1, 1);
        let offset = to_u64(SEGMENT_HEADER_LEN + Record::HardState(HS).encode().len());
        assert_eq!(
            writer.handle(&Command::AppendLog(vec![e.clone()])),
            vec![WalAction::Append { segment: SEG1, offset, bytes: entry_record(&e) }]
        );
        assert_eq!(
            writer.handle(&Command::Sync { id: 7 }),
            vec![WalAction::Sync { id: Some(7), segments: vec![SEG1], directory: true }]
        );
        assert_eq!(
            writer.handle(&Command::Sync { id: 8 }),
            vec![WalAction::Sync { id: Some(8), segments: vec![], directory: false }]
        );
        assert!(writer.handle(&Command::SetTimer { at: 5 }).is_empty());
        assert_eq!(writer.next_index(), 2);
    }

    #[test]
    fn a_full_segment_is_synced_before_the_next_starts_with_the_hard_state() {
        let (e1, e2) = (entry(1, 1), entry(2, 1));
        let hs = Record::HardState(HS).encode();
        let limit = to_u64(SEGMENT_HEADER_LEN + hs.len() + entry_record(&e1).len());
        let mut writer = WalWriter::new(ID, WalConfig { segment_size_max: limit, preallocate: false });
        let _ = writer.handle(&Command::SaveHardState(HS));
        let seg2 = SegmentId { seq: 2, first_index: 2 };
        let mut seg2_bytes = header(seg2);
        seg2_bytes.extend_from_slice(&hs);
        assert_eq!(
            writer.handle(&Command::AppendLog(vec![e1.clone(), e2.clone()])),
            vec![
                WalAction::Append {
                    segment: SEG1,
                    offset: to_u64(SEGMENT_HEADER_LEN + hs.len()),
                    bytes: entry_record(&e1)
                },
                WalAction::Sync { id: None, segments: vec![SEG1], directory: true },
                WalAction::CreateSegment { segment: seg2, bytes: seg2_bytes.clone(), preallocate_len: 0 },
                WalAction::Append { segment: seg2, offset: to_u64(seg2_bytes.len()), bytes: entry_record(&e2) },
            ]
        );
        assert_eq!(writer.segments(), &[SEG1, seg2]);
    }

    #[test]
    fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
        let mut writer = WalWriter::new(ID, WalConfig { segment_size_max: 10, preallocate: false });
        for i in 1..=3 {
            let _ = writer.handle(&Command::AppendLog(vec![entry(i, 1)]));
        }
        assert_eq!(writer.segments().len(), 3);
    }

    #[test]
    fn a_snapshot_follows_a_sync_and_its_marker_says_whether_the_log_survives() {
        let mut writer = WalWriter::new(ID, WalConfig::default());
        let _ = writer.handle(&Command::AppendLog((1..=5).map(|i| entry(i, 1)).collect()));
        let actions = writer.handle(&snapshot(3, 1));
        assert!(matches!(
            &actions[..],
            [WalAction::Sync { id: None, .. }, WalAction::WriteSnapshot { .. }, WalAction::Append { .. }]
        ));
        let WalAction::Append { bytes, .. } = &actions[2] else { unreachable!() };
        assert_eq!(bytes, &Record::Snapshot { index: 3, term: 1, discard_after: false }.encode());
        assert_eq!(writer.next_index(), 6);
        // Nothing unsynced: no sync first. A conflicting term discards the log.
        let _ = writer.handle(&Command::Sync { id: 1 });
        let actions = writer.handle(&snapshot(4, 2));
        assert!(matches!(&actions[..], [WalAction::WriteSnapshot { .. }, WalAction::Append { .. }]));
        let WalAction::Append { bytes, .. } = &actions[1] else { unreachable!() };
        assert_eq!(bytes, &Record::Snapshot { index: 4, term: 2, discard_after: true }.encode());
        assert_eq!(writer.next_index(), 5);
    }

    #[test]
    fn compaction_deletes_covered_segments_after_a_sync_and_keeps_the_last() {
        let mut writer = WalWriter::new(ID, WalConfig { segment_size_max: 10, preallocate: false });
        for i in 1..=4 {
            let _ = writer.handle(&Command::AppendLog(vec![entry(i, 1)]));
        }
        let _ = writer.handle(&snapshot(4, 1));
        let _ = writer.handle(&Command::Sync { id: 1 });
        let before = writer.segments().to_vec();
        assert_eq!(before.iter().map(|s| s.first_index).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert!(writer.handle(&Command::CompactLog { up_to: 0 }).is_empty());
        assert_eq!(
            writer.handle(&Command::CompactLog { up_to: 2 }),
            vec![WalAction::DeleteSegments { segments: before[..2].to_vec() }]
        );
        let actions = writer.handle(&Command::CompactLog { up_to: 4 });
        assert_eq!(
            actions,
            vec![
                WalAction::Sync { id: None, segments: vec![], directory: true },
                WalAction::DeleteSegments { segments: before[2..4].to_vec() },
            ]
        );
        assert_eq!(writer.segments(), &before[4..]);
        assert!(writer.handle(&Command::CompactLog { up_to: 100 }).is_empty(), "never the last segment");
    }

    #[test]
    #[should_panic(expected = "leaves a gap")]
    fn an_append_with_a_gap_is_a_bug() {
        let mut writer = WalWriter::new(ID, WalConfig::default());
        let _ = writer.handle(&Command::AppendLog(vec![entry(2, 1)]));
    }
}
