//! The writer: turns core's write commands into file actions for a runtime.
//!
//! [`WalWriter::handle`] takes every [`Command`] a node emits (it ignores the ones
//! that are not storage) and returns [`WalAction`]s. The runtime carries them out
//! **in order, each finished before the next begins**; the writer has already put
//! the syncs that the format's safety depends on between them (the previous
//! segment is synced before a new one is created, earlier writes are synced before
//! a snapshot file replaces the old one and before segments are deleted).
//!
//! Every sync ends on a block boundary: before each [`WalAction::Sync`] the writer
//! pads the current segment with a [`Record::Padding`] up to the next multiple of
//! the segment's block size, so the next write starts on a fresh block and **no
//! block that holds synced data is ever written again**. A runtime that writes
//! whole blocks (`O_DIRECT`) therefore never rewrites a synced block, and a write
//! torn by a power cut can only damage data that no sync covered.

use crate::io::Command;
use crate::raft::message::{Entry, HardState, SnapshotMeta};
use crate::types::{LogIndex, Term};
use crate::wal::bytes::to_u64;
use crate::wal::cipher::{seal_snapshot_file, Cipher};
use crate::wal::identity::WalIdentity;
use crate::wal::log_shape::LogShape;
use crate::wal::record::{encode_entry_record, seal_framed, Record, RECORD_HEADER_LEN};
use crate::wal::recover::RecoveryReport;
use crate::wal::roll::{roll_decision, Roll};
use crate::wal::segment::{block_size_is_valid, SegmentHeader, SegmentId, BLOCK_SIZE_MAX, BLOCK_SIZE_MIN};
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
    /// Every sync ends on a multiple of this many bytes (a padding record fills
    /// the rest of the block), so that a block holding synced data is never
    /// written again. A power of two in [`BLOCK_SIZE_MIN`]`..=`[`BLOCK_SIZE_MAX`],
    /// at least the device's physical block (its unit of atomic writes) and a
    /// multiple of the runtime's `O_DIRECT` alignment. Recorded in each segment's
    /// header when the segment is created; a resumed segment keeps its own.
    pub block_size: u32,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig { segment_size_max: 64 << 20, preallocate: true, block_size: 4096 }
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
    /// Write `bytes` at `offset` of the segment (always its current end of data,
    /// which never lies in a block that a `Sync` covered: every sync ends on a
    /// block boundary).
    Append {
        /// The segment.
        segment: SegmentId,
        /// Where the bytes go.
        offset: u64,
        /// The records.
        bytes: Vec<u8>,
    },
    /// Make durable: fsync every listed segment, then the directory if `directory`
    /// (a segment was created, deleted or truncated since the last sync). The
    /// data of every segment ends on a multiple of its block size here. With
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
    /// The current segment's block size (from its header).
    block_size: u32,
    segment_fresh: bool,
    log: LogShape,
    hard_state: Option<HardState>,
    snapshot: Option<(LogIndex, Term)>,
    unsynced: Vec<SegmentId>,
    directory_dirty: bool,
    pending: Vec<u8>,
    pending_offset: u64,
    /// Seals every record but padding, and the snapshot file (encryption at
    /// rest); `None`: plain text.
    cipher: Option<Cipher>,
}

/// What sealing may add to a record, for the roll decision (the key id and
/// an AEAD's nonce and tag, with room to spare).
const SEAL_OVERHEAD_MAX: u64 = 64;

impl WalWriter {
    /// A writer for an empty data directory; the first write creates segment 1.
    pub fn new(identity: WalIdentity, config: WalConfig) -> WalWriter {
        assert!(config.segment_size_max > 0, "segment_size_max must be positive");
        assert!(
            block_size_is_valid(config.block_size),
            "block_size {} is not a power of two in {BLOCK_SIZE_MIN}..={BLOCK_SIZE_MAX}",
            config.block_size
        );
        WalWriter {
            identity,
            config,
            segments: Vec::new(),
            segment_len: 0,
            block_size: config.block_size,
            segment_fresh: true,
            log: LogShape::new((0, 0), [], 1),
            hard_state: None,
            snapshot: None,
            unsynced: Vec::new(),
            directory_dirty: false,
            pending: Vec::new(),
            pending_offset: 0,
            cipher: None,
        }
    }

    /// A writer for an empty data directory that seals what it writes with
    /// `cipher` (see [`crate::wal::cipher`]).
    pub fn new_with_cipher(identity: WalIdentity, config: WalConfig, cipher: Option<Cipher>) -> WalWriter {
        WalWriter { cipher, ..WalWriter::new(identity, config) }
    }

    /// A writer that continues the WAL that `report` describes. The actions
    /// returned come first: they drop what recovery dropped (an incomplete record or
    /// segment at the end) and, if the snapshot file was newer than the WAL's last
    /// snapshot marker, append that marker so that the WAL says what recovery
    /// decided. They end with a sync of the last segment (padded to its block
    /// size): what recovery read may never have been synced (the node stopped
    /// between a write and its fsync), and the node will treat it as durable.
    #[must_use]
    pub fn resume(identity: WalIdentity, config: WalConfig, report: &RecoveryReport) -> (WalWriter, Vec<WalAction>) {
        WalWriter::resume_with_cipher(identity, config, report, None)
    }

    /// [`WalWriter::resume`] for a writer that seals what it writes with
    /// `cipher` (see [`crate::wal::cipher`]).
    #[must_use]
    pub fn resume_with_cipher(
        identity: WalIdentity,
        config: WalConfig,
        report: &RecoveryReport,
        cipher: Option<Cipher>,
    ) -> (WalWriter, Vec<WalAction>) {
        let mut writer = WalWriter::new_with_cipher(identity, config, cipher);
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
            writer.block_size = last.block_size;
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
            writer.mark_unsynced();
        }
        if !writer.unsynced.is_empty() || writer.directory_dirty {
            writer.sync(None, &mut out);
        }
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
            Command::Sync { id } => self.sync(Some(*id), &mut out),
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
        if !self.unsynced.is_empty() || self.directory_dirty {
            self.sync(None, out);
        }
        let plain = encode_snapshot_file(self.identity.cluster_id, meta, data);
        let bytes = match &self.cipher {
            Some(cipher) => seal_snapshot_file(cipher, &plain),
            None => plain,
        };
        out.push(WalAction::WriteSnapshot { bytes });
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
        let len = to_u64(record.len()) + if self.cipher.is_some() { SEAL_OVERHEAD_MAX } else { 0 };
        if self.segments.is_empty() {
            self.create_segment(out);
        } else if roll_decision(self.segment_len, self.segment_fresh, len, self.config.segment_size_max)
            == Roll::NewSegment
        {
            // The old segment is durable before the new one exists: recovery treats
            // damage in any segment but the last as corruption.
            self.sync(None, out);
            self.create_segment(out);
        }
        self.push_into_current(record);
    }

    /// Appends one encoded record to the current segment, whatever its size
    /// (sealed first, with a cipher).
    fn push_into_current(&mut self, record: &[u8]) {
        let before = self.pending.len();
        match &self.cipher {
            Some(cipher) => seal_framed(cipher, record, self.segment_len, &mut self.pending),
            None => self.pending.extend_from_slice(record),
        }
        self.segment_len += to_u64(self.pending.len() - before);
        self.segment_fresh = false;
        self.mark_unsynced();
    }

    /// Creates the next segment. It starts with the current hard state and snapshot
    /// marker, so that deleting older segments never loses them.
    fn create_segment(&mut self, out: &mut Vec<WalAction>) {
        assert!(self.pending.is_empty(), "pending bytes belong to the previous segment");
        let seq = self.segments.last().map_or(1, |s| s.seq.checked_add(1).expect("segment sequence numbers last"));
        let segment = SegmentId { seq, first_index: self.log.next() };
        let block_size = self.config.block_size;
        let mut bytes = SegmentHeader { identity: self.identity, id: segment, block_size }.encode().to_vec();
        let mut records = Vec::new();
        if let Some(hard_state) = self.hard_state {
            records.push(Record::HardState(hard_state).encode());
        }
        if let Some((index, term)) = self.snapshot {
            // Restating the snapshot changes nothing: entries up to it are already gone.
            records.push(Record::Snapshot { index, term, discard_after: false }.encode());
        }
        for record in records {
            match &self.cipher {
                Some(cipher) => {
                    let offset = to_u64(bytes.len());
                    seal_framed(cipher, &record, offset, &mut bytes);
                }
                None => bytes.extend_from_slice(&record),
            }
        }
        let len = to_u64(bytes.len());
        let preallocate_len = if self.config.preallocate { self.config.segment_size_max.max(len) } else { 0 };
        out.push(WalAction::CreateSegment { segment, bytes, preallocate_len });
        self.segments.push(segment);
        self.segment_len = len;
        self.block_size = block_size;
        self.segment_fresh = true;
        self.pending_offset = len;
        self.mark_unsynced();
        self.directory_dirty = true;
    }

    /// Appends a padding record that ends on the current segment's next block
    /// boundary (the one after, when less than a record header is left), unless the
    /// segment already ends on one. The segment stays fresh: padding is no record
    /// of the log.
    fn pad_to_block(&mut self) {
        if self.segments.is_empty() {
            return;
        }
        let block = u64::from(self.block_size);
        let used = self.segment_len % block;
        if used == 0 {
            return;
        }
        let header = to_u64(RECORD_HEADER_LEN);
        let mut gap = block - used;
        if gap < header {
            gap += block;
        }
        let len = u32::try_from(gap - header).expect("padding is shorter than a block");
        self.pending.extend_from_slice(&Record::Padding { len }.encode());
        self.segment_len += gap;
        self.mark_unsynced();
        assert_eq!(self.segment_len % block, 0, "padding ends on a block boundary");
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

    /// Pads the current segment to its next block boundary and emits everything
    /// written so far, then the sync.
    fn sync(&mut self, id: Option<u64>, out: &mut Vec<WalAction>) {
        self.pad_to_block();
        self.flush(out);
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
        SegmentHeader { identity: ID, id: segment, block_size: 4096 }.encode().to_vec()
    }

    fn config(segment_size_max: u64, preallocate: bool) -> WalConfig {
        WalConfig { segment_size_max, preallocate, ..WalConfig::default() }
    }

    /// The padding record from `offset` to the next 4096-byte boundary.
    fn padding(offset: u64) -> Vec<u8> {
        let len = 4096 - offset % 4096 - to_u64(RECORD_HEADER_LEN);
        Record::Padding { len: u32::try_from(len).expect("short") }.encode()
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

    /// A WAL written through a cipher: recovers with the key, holds no plain
    /// text of what was written, and refuses clearly without the key, with
    /// another key and after tampering.
    #[test]
    fn a_sealed_wal_recovers_only_with_its_key() {
        use crate::wal::cipher::toy::ToyCipher;
        use crate::wal::cipher::{Cipher, SealProblem};
        use crate::wal::error::WalError;
        use crate::wal::mem_dir::MemDir;
        use crate::wal::record::RecordProblem;
        use crate::wal::recover::recover_with_cipher;
        use crate::wal::snapshot_file::SnapshotProblem;

        let cipher = Cipher::new(ToyCipher::new(42));
        let mut dir = MemDir::new(false);
        let mut writer = WalWriter::new_with_cipher(ID, config(4096, false), Some(cipher.clone()));
        let secret = |i: u64| Entry { index: i, term: 1, payload: Payload::Command(format!("secret-{i:03}").into()) };
        let mut commands = vec![Command::SaveHardState(HS)];
        commands.extend((1..=40).map(|i| Command::AppendLog(vec![secret(i)])));
        commands.push(Command::Sync { id: 1 });
        commands.push(snapshot(20, 1));
        commands.extend((41..=60).map(|i| Command::AppendLog(vec![secret(i)])));
        commands.push(Command::Sync { id: 2 });
        for command in &commands {
            for action in writer.handle(command) {
                dir.apply(&action);
            }
        }
        let files = dir.segment_files();
        assert!(files.len() > 1, "the test covers several segments");
        for (name, bytes) in &files {
            assert!(!bytes.windows(7).any(|w| w == b"secret-"), "{name} holds plain text");
        }
        let snapshot_bytes = dir.snapshot().expect("a snapshot file").to_vec();
        assert!(crate::wal::cipher::is_sealed_snapshot(&snapshot_bytes));

        let report = recover_with_cipher(&ID, &files, Some(&snapshot_bytes), Some(&cipher)).unwrap();
        let indexes: Vec<LogIndex> = report.recovered.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (21..=60).collect::<Vec<_>>());
        assert_eq!(report.recovered.entries.last().unwrap().payload, Payload::Command(b"secret-060".to_vec()));
        assert_eq!(report.recovered.hard_state, HS);

        // Without the key, or with another: refused, naming what is needed.
        let no_key = recover_with_cipher(&ID, &files, None, None).unwrap_err().to_string();
        assert!(no_key.contains("no key was given"), "{no_key}");
        let other = Cipher::new(ToyCipher::new(43));
        let wrong = recover_with_cipher(&ID, &files, Some(&snapshot_bytes), Some(&other)).unwrap_err();
        assert!(matches!(wrong, WalError::BadSnapshot(SnapshotProblem::Sealed(SealProblem::WrongKey { .. }))));
        let wrong = recover_with_cipher(&ID, &files, None, Some(&other)).unwrap_err();
        match &wrong {
            WalError::Corrupt {
                offset,
                problem: RecordProblem::Sealed(SealProblem::WrongKey { sealed_with, key_id }),
                ..
            } => {
                assert_eq!((*offset, *sealed_with, *key_id), (64, cipher.key_id(), other.key_id()));
            }
            other => panic!("{other:?}"),
        }
        assert!(wrong.to_string().contains(&format!("{:016x}", cipher.key_id())), "{wrong}");

        // A changed byte in a sealed body whose checksum was recomputed (so
        // only the authentication can tell): refused at that record.
        let (name, bytes) = files.last().unwrap();
        let mut tampered = bytes.to_vec();
        let at = 64 + RECORD_HEADER_LEN + 12;
        tampered[at] ^= 1;
        let len = u32::from_le_bytes(tampered[64..68].try_into().unwrap()) as usize;
        let crc = crc32c::crc32c(&tampered[64 + RECORD_HEADER_LEN..64 + RECORD_HEADER_LEN + len]);
        tampered[72..76].copy_from_slice(&crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&tampered[64..76]);
        tampered[76..80].copy_from_slice(&header_crc.to_le_bytes());
        let mut changed: Vec<(String, Vec<u8>)> = files.iter().map(|(n, b)| (n.clone(), b.to_vec())).collect();
        changed.last_mut().unwrap().1 = tampered;
        let error = recover_with_cipher(&ID, &changed, Some(&snapshot_bytes), Some(&cipher)).unwrap_err();
        match &error {
            WalError::Corrupt {
                file, offset, problem: RecordProblem::Sealed(SealProblem::Unauthenticated), ..
            } => {
                assert_eq!((file.as_str(), *offset), (name.as_str(), 64));
            }
            other => panic!("{other:?}"),
        }
        assert!(error.to_string().contains("authentication failed"), "{error}");

        // Resuming keeps sealing.
        let (mut resumed, actions) =
            WalWriter::resume_with_cipher(ID, config(4096, false), &report, Some(cipher.clone()));
        for action in actions.iter().chain(&resumed.handle(&Command::AppendLog(vec![secret(61)]))) {
            dir.apply(action);
        }
        for action in resumed.handle(&Command::Sync { id: 3 }) {
            dir.apply(&action);
        }
        let files = dir.segment_files();
        assert!(files.iter().all(|(_, b)| !b.windows(7).any(|w| w == b"secret-")));
        let again = recover_with_cipher(&ID, &files, dir.snapshot(), Some(&cipher)).unwrap();
        assert_eq!(again.recovered.entries.last().unwrap().index, 61);
    }

    #[test]
    fn the_first_write_creates_segment_one_and_a_sync_covers_it() {
        let mut writer = WalWriter::new(ID, config(1 << 20, true));
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
        let end = offset + to_u64(entry_record(&e).len());
        assert_eq!(
            writer.handle(&Command::Sync { id: 7 }),
            vec![
                WalAction::Append { segment: SEG1, offset: end, bytes: padding(end) },
                WalAction::Sync { id: Some(7), segments: vec![SEG1], directory: true },
            ]
        );
        assert_eq!(writer.segment_len(), 4096, "the sync ends on a block boundary");
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
        let mut writer = WalWriter::new(ID, config(limit, false));
        let _ = writer.handle(&Command::SaveHardState(HS));
        let seg2 = SegmentId { seq: 2, first_index: 2 };
        let mut seg2_bytes = header(seg2);
        seg2_bytes.extend_from_slice(&hs);
        let offset = to_u64(SEGMENT_HEADER_LEN + hs.len());
        let mut bytes = entry_record(&e1);
        bytes.extend_from_slice(&padding(offset + to_u64(bytes.len())));
        assert_eq!(
            writer.handle(&Command::AppendLog(vec![e1.clone(), e2.clone()])),
            vec![
                // The old segment is padded too: whatever follows, its synced block is never written again.
                WalAction::Append { segment: SEG1, offset, bytes },
                WalAction::Sync { id: None, segments: vec![SEG1], directory: true },
                WalAction::CreateSegment { segment: seg2, bytes: seg2_bytes.clone(), preallocate_len: 0 },
                WalAction::Append { segment: seg2, offset: to_u64(seg2_bytes.len()), bytes: entry_record(&e2) },
            ]
        );
        assert_eq!(writer.segments(), &[SEG1, seg2]);
    }

    #[test]
    fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
        let mut writer = WalWriter::new(ID, config(10, false));
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
            [
                WalAction::Append { .. },
                WalAction::Sync { id: None, .. },
                WalAction::WriteSnapshot { .. },
                WalAction::Append { .. }
            ]
        ));
        let WalAction::Append { bytes, .. } = &actions[3] else { unreachable!() };
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
        let mut writer = WalWriter::new(ID, config(10, false));
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
    fn with_less_than_a_header_left_the_padding_runs_to_the_block_after() {
        let small_blocks = WalConfig { block_size: 64, ..config(1 << 20, false) };
        // An entry whose record leaves 8 bytes of a 64-byte block: too few for a header.
        let e = (0..64)
            .map(|len| Entry { index: 1, term: 1, payload: Payload::Command(vec![1; len]) })
            .find(|e| entry_record(e).len() % 64 == 56)
            .expect("some payload length fits");
        for (payload, gap) in [(None, 40), (Some(e), 8 + 64)] {
            let mut writer = WalWriter::new(ID, small_blocks);
            let _ = writer.handle(&Command::SaveHardState(HS));
            let _ = writer.handle(&Command::Sync { id: 1 });
            let start = writer.segment_len();
            assert_eq!(start % 64, 0);
            let record = match payload {
                // A truncate-from record is 24 bytes: 40 are left.
                None => Command::TruncateLog { from: 1 },
                Some(e) => Command::AppendLog(vec![e]),
            };
            let written: u64 = writer
                .handle(&record)
                .iter()
                .map(|a| match a {
                    WalAction::Append { bytes, .. } => to_u64(bytes.len()),
                    other => panic!("{other:?}"),
                })
                .sum();
            let actions = writer.handle(&Command::Sync { id: 2 });
            let WalAction::Append { offset, bytes, .. } = &actions[0] else { panic!("{actions:?}") };
            assert_eq!(*offset, start + written);
            assert_eq!(to_u64(bytes.len()), gap);
            assert_eq!(bytes[..16], Record::Padding { len: u32::try_from(gap - 16).expect("short") }.encode()[..16]);
            assert_eq!((offset + gap) % 64, 0);
            assert!(matches!(actions[1], WalAction::Sync { id: Some(2), .. }));
        }
    }

    #[test]
    fn resume_pads_and_syncs_the_last_segment_with_its_own_block_size() {
        let mut dir = crate::wal::MemDir::new(false);
        let mut writer = WalWriter::new(ID, WalConfig { block_size: 128, ..config(1 << 20, false) });
        for command in [Command::SaveHardState(HS), Command::AppendLog(vec![entry(1, 1)])] {
            for action in writer.handle(&command) {
                dir.apply(&action);
            }
        }
        // Stopped before any sync: the end of the data is inside a block.
        let report = dir.recover(&ID).expect("recovers");
        let last = report.segments[0];
        assert_ne!(last.valid_len % 128, 0);
        assert_eq!(last.block_size, 128);
        // Resumed with another block size: the last segment keeps its own.
        let (writer, actions) = WalWriter::resume(ID, config(1 << 20, false), &report);
        let padding = Record::Padding { len: u32::try_from(128 - last.valid_len % 128 - 16).expect("short") };
        assert_eq!(
            actions,
            vec![
                WalAction::Append { segment: SEG1, offset: last.valid_len, bytes: padding.encode() },
                WalAction::Sync { id: None, segments: vec![SEG1], directory: false },
            ]
        );
        assert_eq!(writer.segment_len() % 128, 0);
        // Even an aligned end is synced: the data may never have been.
        for action in &actions {
            dir.apply(action);
        }
        let report = dir.recover(&ID).expect("recovers");
        let (_, actions) = WalWriter::resume(ID, config(1 << 20, false), &report);
        assert_eq!(actions, vec![WalAction::Sync { id: None, segments: vec![SEG1], directory: false }]);
        // A blank directory needs nothing.
        let blank = crate::wal::MemDir::new(false).recover(&ID).expect("blank");
        assert!(WalWriter::resume(ID, config(1 << 20, false), &blank).1.is_empty());
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn a_bad_block_size_is_a_bug() {
        let _ = WalWriter::new(ID, WalConfig { block_size: 1000, ..WalConfig::default() });
    }

    #[test]
    #[should_panic(expected = "leaves a gap")]
    fn an_append_with_a_gap_is_a_bug() {
        let mut writer = WalWriter::new(ID, WalConfig::default());
        let _ = writer.handle(&Command::AppendLog(vec![entry(2, 1)]));
    }
}
