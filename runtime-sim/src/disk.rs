//! A simulated disk for one member that outlives the member's process, holding
//! core's real on-disk format.
//!
//! Core's write commands go through [`lockstep_core::wal::WalWriter::handle`]; the
//! [`WalAction`]s it returns are carried out on an in-memory directory of byte
//! buffers (segment files and the snapshot file). Recovery at restart is
//! [`lockstep_core::wal::recover()`] over those bytes, and the writer continues with
//! [`WalWriter::resume`], as in production.
//!
//! Durability is tracked per file, in bytes. A `Sync { id }` starts an fsync of
//! random latency that covers the bytes of the segments it lists as they are when
//! it starts; syncs issued while one runs wait and are covered by the next one
//! (group commit), and `Event::Persisted { up_to }` reports the highest. Every other
//! action that the writer orders behind earlier writes (an internal sync, creating
//! or deleting a segment, writing the snapshot file, cutting a segment) first
//! finishes whatever fsync is running or waiting, as a runtime that carries actions
//! out one after the other would; the snapshot file is replaced atomically and is
//! durable at once.
//!
//! On a crash the synced bytes survive; of the writes since a file's last
//! completed fsync a random prefix survives (or none, in profiles that say so), and
//! the last survivor may be torn (cut at a random byte). With preallocation the
//! lost bytes read back as zeroes.
//!
//! Faults: a failed fsync (decided when it starts, seen when it would complete), a
//! full disk (the next write fails), and a bit flip in a synced record that is not
//! the last one (media corruption). A failed write or fsync stops the member at
//! once: the caller crashes it (never retrying the fsync).
//!
//! The disk also keeps a model of what it must recover: every storage command,
//! split into the records it wrote (one per entry), with where its bytes end. A
//! crash keeps exactly the records whose bytes survived, so
//! [`Disk::recover`] can check that recovery returned every durable record and
//! a prefix of the unsynced ones — nothing else — and that it refuses to start only
//! when corruption was injected.

use std::collections::{BTreeMap, BTreeSet};

use lockstep_core::wal::{
    recover, WalAction, WalConfig, WalIdentity, WalWriter, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use lockstep_core::wal::{RecoveryReport, SegmentId};
use lockstep_core::{Command, Entry, HardState, LogIndex, Recovered, SnapshotMeta};

use crate::dice::Dice;

/// Timing and fault rates of a simulated disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// Fastest fsync, in simulated µs.
    pub fsync_us_min: u64,
    /// Slowest ordinary fsync, in simulated µs.
    pub fsync_us_max: u64,
    /// Probability (ppm) that an fsync is a slow outlier.
    pub fsync_slow_ppm: u32,
    /// Slowest outlier fsync, in simulated µs.
    pub fsync_slow_us_max: u64,
    /// Probability (ppm) that an fsync fails (the member stops at once).
    pub fsync_error_ppm: u32,
    /// On a crash, the probability (ppm) that the last surviving unsynced write is torn.
    pub torn_write_ppm: u32,
    /// On a crash, whether a random prefix of the unsynced writes survives (true)
    /// or all of them are lost (false).
    pub keep_unsynced_prefix: bool,
    /// The WAL's segment size (small, so that runs roll and delete segments).
    pub segment_size_max: u64,
    /// Whether segments are preallocated (zero-filled) to `segment_size_max`.
    pub preallocate: bool,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            fsync_us_min: 200,
            fsync_us_max: 3_000,
            fsync_slow_ppm: 0,
            fsync_slow_us_max: 50_000,
            fsync_error_ppm: 0,
            torn_write_ppm: 0,
            keep_unsynced_prefix: true,
            segment_size_max: 32 << 10,
            preallocate: true,
        }
    }
}

impl DiskConfig {
    /// The WAL writer's configuration.
    #[allow(clippy::field_reassign_with_default)] // `WalConfig` may gain fields.
    pub fn wal_config(&self) -> WalConfig {
        let mut wal = WalConfig::default();
        wal.segment_size_max = self.segment_size_max;
        wal.preallocate = self.preallocate;
        wal
    }
}

/// Why the member must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskError {
    /// An fsync failed: what it covered may or may not be on disk.
    FsyncFailed,
    /// A write failed: the disk is full.
    Full,
}

impl std::fmt::Display for DiskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskError::FsyncFailed => write!(f, "fsync failed"),
            DiskError::Full => write!(f, "disk full"),
        }
    }
}

/// What a crash did to the unsynced writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashEffect {
    /// Unsynced writes when the crash happened.
    pub unsynced: usize,
    /// Of those, how many survived (the last possibly torn).
    pub kept: usize,
    /// Whether the last kept write was torn.
    pub torn: bool,
}

/// Why a member could not start from its disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What recovery said.
    pub reason: String,
    /// Whether corruption was injected into this disk (a refusal without it is a bug).
    pub injected: bool,
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The state to hand to `Node::restart`.
    pub recovered: Recovered,
    /// True if the disk held nothing at all (the member never made its bootstrap durable).
    pub blank: bool,
    /// Bytes of a torn tail (or torn segment) that recovery dropped.
    pub torn_dropped: u64,
    /// Recovery's own summary, for the trace.
    pub summary: String,
    /// If recovery returned something other than the records that survived the
    /// crash: what differs (a failed check).
    pub mismatch: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct File {
    /// The file's bytes; with preallocation, zeroes after `len`.
    data: Vec<u8>,
    /// The end of the written data.
    len: usize,
    /// The end of the synced data.
    durable: usize,
    /// Where each write started (record boundaries), in order.
    starts: Vec<usize>,
}

impl File {
    fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Writes at `offset`, which is the end of the data as recovery saw it: with
    /// preallocation that may be before or after `len` when the bytes around it
    /// are zeroes.
    fn write(&mut self, offset: usize, bytes: &[u8], preallocated: bool) {
        if offset < self.len {
            assert!(self.data[offset..self.len].iter().all(|b| *b == 0), "a write over data");
            self.cut(offset, preallocated);
        }
        assert!(preallocated || offset == self.len, "writes append at the end of the data");
        let end = offset + bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset..end].copy_from_slice(bytes);
        self.starts.push(offset);
        self.len = end;
    }

    fn cut(&mut self, len: usize, preallocated: bool) {
        if preallocated {
            self.data[len..self.len.max(len)].fill(0);
        } else {
            self.data.truncate(len);
        }
        self.len = len;
        self.durable = self.durable.min(len);
        self.starts.retain(|s| *s < len);
    }
}

/// Where a record's bytes end, or that it is durable whatever happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Durable,
    At(SegmentId, usize),
}

/// One record's effect on what recovery must return.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    HardState(HardState),
    Entry(Entry),
    Truncate(LogIndex),
    Snapshot(SnapshotMeta, Vec<u8>),
}

/// The state recovery must return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    hard_state: Option<HardState>,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    log: BTreeMap<LogIndex, Entry>,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::HardState(hard_state) => self.hard_state = Some(*hard_state),
            Op::Entry(entry) => {
                self.log.split_off(&entry.index);
                self.log.insert(entry.index, entry.clone());
            }
            Op::Truncate(from) => {
                self.log.split_off(from);
            }
            Op::Snapshot(meta, data) => {
                if self.log.get(&meta.index).is_some_and(|e| e.term == meta.term) {
                    self.log = self.log.split_off(&(meta.index + 1));
                } else {
                    self.log.clear();
                }
                self.snapshot = Some((meta.clone(), data.clone()));
            }
        }
    }

    fn recovered(&self) -> Recovered {
        let after = self.snapshot.as_ref().map_or(0, |(meta, _)| meta.index);
        Recovered {
            hard_state: self.hard_state.unwrap_or_default(),
            snapshot: self.snapshot.clone(),
            entries: self.log.range(after + 1..).map(|(_, e)| e.clone()).collect(),
        }
    }

    fn from_report(report: &RecoveryReport) -> Model {
        let recovered = &report.recovered;
        Model {
            hard_state: report.hard_state_found.then_some(recovered.hard_state),
            snapshot: recovered.snapshot.clone(),
            log: recovered.entries.iter().map(|e| (e.index, e.clone())).collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Fsync {
    done_us: u64,
    covers: Vec<(SegmentId, usize)>,
    sync_id: u64,
    fails: bool,
}

/// One member's disk: its data directory and the WAL writer of its running process.
#[derive(Debug, Clone)]
pub struct Disk {
    config: DiskConfig,
    identity: WalIdentity,
    writer: Option<WalWriter>,
    segments: BTreeMap<SegmentId, File>,
    snapshot: Option<Vec<u8>>,
    fsync: Option<Fsync>,
    /// The highest sync id requested while an fsync was running, and the segments
    /// those syncs listed.
    waiting: Option<(u64, BTreeSet<SegmentId>)>,
    full: bool,
    bytes_written: u64,
    /// What the durable records say.
    base: Model,
    /// Records not yet known durable, in order.
    ops: Vec<(Op, Position)>,
    /// What the next recovery must return (set by a crash).
    expected: Option<Model>,
    corrupted: bool,
}

/// Not a record kind: marks that the snapshot file was written.
const KIND_SNAPSHOT_FILE: u8 = u8::MAX;

/// The records (kind, segment, end offset) in one action's bytes.
fn records_of(segment: SegmentId, start: usize, bytes: &[u8], out: &mut Vec<(u8, SegmentId, usize)>) {
    let mut at = 0;
    while at + RECORD_HEADER_LEN <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let kind = bytes[at + 4];
        at += RECORD_HEADER_LEN + len;
        out.push((kind, segment, start + at));
    }
}

impl Disk {
    /// An empty disk of the member `identity` names.
    pub fn new(config: DiskConfig, identity: WalIdentity) -> Disk {
        Disk {
            config,
            identity,
            writer: None,
            segments: BTreeMap::new(),
            snapshot: None,
            fsync: None,
            waiting: None,
            full: false,
            bytes_written: 0,
            base: Model::default(),
            ops: Vec::new(),
            expected: None,
            corrupted: false,
        }
    }

    /// Changes timing and fault rates (the WAL's segment size applies to the next start).
    pub fn set_config(&mut self, config: DiskConfig) {
        self.config = config;
    }

    /// A process starts on this (empty) disk for the first time.
    pub fn start_fresh(&mut self) {
        assert!(self.segments.is_empty() && self.snapshot.is_none(), "a fresh start on a used disk");
        self.writer = Some(WalWriter::new(self.identity, self.config.wal_config()));
    }

    /// Fills the disk (true): every later write fails until it is freed (false).
    pub fn set_full(&mut self, full: bool) {
        self.full = full;
    }

    /// Whether the disk is full.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Segment files on the disk.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Bytes written since the disk was created.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    fn fsync_us(&self, dice: &mut impl Dice) -> u64 {
        if dice.chance_ppm(self.config.fsync_slow_ppm) {
            dice.between(self.config.fsync_us_max, self.config.fsync_slow_us_max.max(self.config.fsync_us_max))
        } else {
            dice.between(self.config.fsync_us_min, self.config.fsync_us_max.max(self.config.fsync_us_min))
        }
    }

    /// Carries out one command of the running member (commands that are not
    /// storage do nothing). An error means the member must stop at once.
    pub fn execute(&mut self, command: &Command, now_us: u64, dice: &mut impl Dice) -> Result<(), DiskError> {
        let actions = self.writer.as_mut().expect("a running member has a WAL writer").handle(command);
        let mut records = Vec::new();
        let mut result = Ok(());
        for action in &actions {
            if let Err(error) = self.apply(action, now_us, dice, &mut records) {
                result = Err(error);
                break;
            }
        }
        self.note_ops(command, &records);
        self.fold();
        result
    }

    /// Adds the records a command wrote to the model.
    fn note_ops(&mut self, command: &Command, records: &[(u8, SegmentId, usize)]) {
        const KIND_ENTRY: u8 = 1;
        const KIND_HARD_STATE: u8 = 2;
        const KIND_TRUNCATE: u8 = 3;
        let last_of = |kind: u8| records.iter().rev().find(|r| r.0 == kind).map(|r| Position::At(r.1, r.2));
        match command {
            Command::SaveHardState(hard_state) => {
                if let Some(at) = last_of(KIND_HARD_STATE) {
                    self.ops.push((Op::HardState(*hard_state), at));
                }
            }
            Command::AppendLog(entries) => {
                // Each entry is one record; a new segment's restated hard state and
                // snapshot marker change nothing.
                let ends = records.iter().filter(|r| r.0 == KIND_ENTRY);
                for (entry, (_, segment, end)) in entries.iter().zip(ends) {
                    self.ops.push((Op::Entry(entry.clone()), Position::At(*segment, *end)));
                }
            }
            Command::TruncateLog { from } => {
                if let Some(at) = last_of(KIND_TRUNCATE) {
                    self.ops.push((Op::Truncate(*from), at));
                }
            }
            // The snapshot file is durable once written (its marker only restates it).
            Command::SaveSnapshot { meta, data } if records.iter().any(|r| r.0 == KIND_SNAPSHOT_FILE) => {
                self.ops.push((Op::Snapshot(meta.clone(), data.clone()), Position::Durable));
            }
            _ => {}
        }
    }

    fn is_durable(&self, position: Position) -> bool {
        match position {
            Position::Durable => true,
            Position::At(segment, end) => self.segments.get(&segment).is_some_and(|f| f.durable >= end),
        }
    }

    /// Moves the durable prefix of the records into the base model.
    fn fold(&mut self) {
        let durable = self.ops.iter().take_while(|(_, at)| self.is_durable(*at)).count();
        for (op, _) in self.ops.drain(..durable) {
            self.base.apply(&op);
        }
    }

    /// Finishes every running and waiting fsync (and syncs everything written).
    fn barrier(&mut self) {
        for file in self.segments.values_mut() {
            file.durable = file.len;
        }
        self.fold();
    }

    fn apply(
        &mut self,
        action: &WalAction,
        now_us: u64,
        dice: &mut impl Dice,
        records: &mut Vec<(u8, SegmentId, usize)>,
    ) -> Result<(), DiskError> {
        let preallocate = self.config.preallocate;
        match action {
            WalAction::Append { segment, offset, bytes } => {
                if self.full {
                    return Err(DiskError::Full);
                }
                let offset = usize::try_from(*offset).expect("offset fits");
                let file = self.segments.get_mut(segment).expect("appending to an existing segment");
                file.write(offset, bytes, preallocate);
                self.bytes_written += bytes.len() as u64;
                records_of(*segment, offset, bytes, records);
            }
            WalAction::CreateSegment { segment, bytes, preallocate_len } => {
                if self.full {
                    return Err(DiskError::Full);
                }
                self.barrier();
                let mut file = File::default();
                if preallocate {
                    file.data = vec![0; usize::try_from(*preallocate_len).expect("preallocation fits")];
                }
                file.write(0, bytes, preallocate);
                self.bytes_written += bytes.len() as u64;
                records_of(*segment, SEGMENT_HEADER_LEN, &bytes[SEGMENT_HEADER_LEN.min(bytes.len())..], records);
                assert!(self.segments.insert(*segment, file).is_none(), "{segment} already exists");
            }
            WalAction::Sync { id: None, .. } => self.barrier(),
            WalAction::Sync { id: Some(id), segments, .. } => {
                if self.fsync.is_some() {
                    let (highest, listed) = self.waiting.get_or_insert_with(|| (*id, BTreeSet::new()));
                    *highest = (*highest).max(*id);
                    listed.extend(segments.iter().copied());
                } else {
                    self.start_fsync(*id, segments.iter().copied(), now_us, dice);
                }
            }
            WalAction::WriteSnapshot { bytes } => {
                if self.full {
                    return Err(DiskError::Full);
                }
                self.barrier();
                self.bytes_written += bytes.len() as u64;
                self.snapshot = Some(bytes.clone());
                records.push((KIND_SNAPSHOT_FILE, SegmentId { seq: 0, first_index: 0 }, 0));
            }
            WalAction::DeleteSegments { segments } => {
                self.barrier();
                for segment in segments {
                    assert!(self.segments.remove(segment).is_some(), "deleting {segment}, which does not exist");
                }
            }
            WalAction::TruncateSegment { segment, len } => {
                self.barrier();
                let file = self.segments.get_mut(segment).expect("truncating an existing segment");
                file.cut(usize::try_from(*len).expect("length fits"), preallocate);
                file.durable = file.len;
            }
        }
        Ok(())
    }

    fn start_fsync(
        &mut self,
        sync_id: u64,
        segments: impl Iterator<Item = SegmentId>,
        now_us: u64,
        dice: &mut impl Dice,
    ) {
        let covers = segments.filter_map(|s| self.segments.get(&s).map(|f| (s, f.len))).collect();
        let done_us = now_us + self.fsync_us(dice);
        let fails = dice.chance_ppm(self.config.fsync_error_ppm);
        self.fsync = Some(Fsync { done_us, covers, sync_id, fails });
    }

    /// When the running fsync completes, if one runs.
    pub fn next_completion_us(&self) -> Option<u64> {
        self.fsync.as_ref().map(|f| f.done_us)
    }

    /// Completes the running fsync if it is due: the sync id it completes, or
    /// [`DiskError::FsyncFailed`] (the member must stop; nothing it covered is
    /// known durable).
    pub fn poll(&mut self, now_us: u64, dice: &mut impl Dice) -> Option<Result<u64, DiskError>> {
        if self.fsync.as_ref()?.done_us > now_us {
            return None;
        }
        let fsync = self.fsync.take().expect("checked");
        if fsync.fails {
            self.waiting = None;
            return Some(Err(DiskError::FsyncFailed));
        }
        for (segment, len) in &fsync.covers {
            if let Some(file) = self.segments.get_mut(segment) {
                file.durable = file.durable.max(*len);
            }
        }
        self.fold();
        if let Some((id, segments)) = self.waiting.take() {
            self.start_fsync(id, segments.into_iter(), now_us, dice);
        }
        Some(Ok(fsync.sync_id))
    }

    /// The process died: of each file's writes since its last completed fsync, a
    /// random prefix survives, the last possibly torn. A running fsync is abandoned.
    pub fn crash(&mut self, dice: &mut impl Dice) -> CrashEffect {
        self.fsync = None;
        self.waiting = None;
        self.writer = None;
        let preallocate = self.config.preallocate;
        let mut effect = CrashEffect { unsynced: 0, kept: 0, torn: false };
        for file in self.segments.values_mut() {
            let unsynced: Vec<usize> = file.starts.iter().copied().filter(|s| *s >= file.durable).collect();
            if unsynced.is_empty() {
                continue;
            }
            effect.unsynced += unsynced.len();
            let kept =
                if self.config.keep_unsynced_prefix { dice.below(unsynced.len() as u64 + 1) as usize } else { 0 };
            effect.kept += kept;
            let mut end = unsynced.get(kept).copied().unwrap_or(file.len);
            if kept > 0 && dice.chance_ppm(self.config.torn_write_ppm) {
                let start = unsynced[kept - 1];
                end = start + dice.below((end - start) as u64) as usize;
                effect.torn = true;
            }
            if preallocate {
                // Cut-off zeroes read back as the zeroes of the preallocated space.
                end += file.data[end..file.len].iter().take_while(|b| **b == 0).count();
            }
            file.cut(end, preallocate);
            file.durable = end;
        }
        // What recovery must return: the durable records and the ones whose bytes
        // survived.
        let mut expected = self.base.clone();
        let mut lost = false;
        for (op, at) in std::mem::take(&mut self.ops) {
            let survived = match at {
                Position::Durable => true,
                Position::At(segment, end) => self.segments.get(&segment).is_some_and(|f| f.len >= end),
            };
            assert!(!(lost && survived), "a record survived a crash after one that did not");
            lost |= !survived;
            if survived {
                expected.apply(&op);
            }
        }
        self.base = expected.clone();
        self.expected = Some(expected);
        effect
    }

    /// Flips one bit of a synced record that is followed by another synced record
    /// (media corruption, never mistakable for a torn tail); returns where, or
    /// `None` if there is no such record.
    pub fn corrupt(&mut self, dice: &mut impl Dice) -> Option<String> {
        let last = self.segments.keys().next_back().copied();
        // Per segment, the bytes before its last synced write (or all synced bytes
        // of a segment that is not the last).
        let candidates: Vec<(SegmentId, usize)> = self
            .segments
            .iter()
            .filter_map(|(id, file)| {
                let limit = if Some(*id) == last {
                    file.starts.iter().copied().rfind(|s| *s < file.durable).unwrap_or(0)
                } else {
                    file.durable
                };
                (limit > SEGMENT_HEADER_LEN).then_some((*id, limit))
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (segment, limit) = candidates[dice.below(candidates.len() as u64) as usize];
        let byte = dice.between(SEGMENT_HEADER_LEN as u64, limit as u64 - 1) as usize;
        let bit = dice.below(8);
        self.segments.get_mut(&segment).expect("exists").data[byte] ^= 1 << bit;
        self.corrupted = true;
        Some(format!("{} byte {byte} bit {bit}", segment.file_name()))
    }

    /// Reads the disk back after a crash with [`recover()`], checks the result
    /// against the records that survived, and readies the WAL writer to continue
    /// (carrying out what [`WalWriter::resume`] asks: cutting a torn tail).
    pub fn recover(&mut self) -> Result<Recovery, Refusal> {
        let files: Vec<(String, &[u8])> = self.segments.iter().map(|(id, f)| (id.file_name(), f.bytes())).collect();
        let report = match recover(&self.identity, &files, self.snapshot.as_deref()) {
            Ok(report) => report,
            Err(error) => return Err(Refusal { reason: error.to_string(), injected: self.corrupted }),
        };
        let torn_dropped = report.torn_tail.as_ref().map_or(0, |t| t.bytes_dropped)
            + report.torn_segment.as_ref().map_or(0, |t| t.bytes);
        let expected = self.expected.take().unwrap_or_else(|| self.base.clone());
        let mismatch = (report.recovered != expected.recovered()).then(|| {
            format!(
                "recovery returned {} but the disk held {}",
                describe(&report.recovered),
                describe(&expected.recovered())
            )
        });
        let summary = report.to_string();
        let (writer, actions) = WalWriter::resume(self.identity, self.config.wal_config(), &report);
        self.writer = Some(writer);
        self.base = Model::from_report(&report);
        self.ops.clear();
        let mut records = Vec::new();
        let mut dice = crate::dice::SplitMix(0);
        for action in &actions {
            // A full disk fails resume's writes at the member's next one instead.
            let full = std::mem::replace(&mut self.full, false);
            self.apply(action, 0, &mut dice, &mut records).expect("not full");
            self.full = full;
        }
        let blank = report.is_blank();
        Ok(Recovery { recovered: report.recovered, blank, torn_dropped, summary, mismatch })
    }
}

fn describe(recovered: &Recovered) -> String {
    let snapshot = recovered.snapshot.as_ref().map(|(meta, _)| (meta.index, meta.term));
    let first = recovered.entries.first().map(|e| (e.index, e.term));
    let last = recovered.entries.last().map(|e| (e.index, e.term));
    format!(
        "hard state {:?}, snapshot {snapshot:?}, {} entries {first:?}..={last:?}",
        recovered.hard_state,
        recovered.entries.len()
    )
}

#[cfg(test)]
mod tests {
    use lockstep_core::{Membership, Payload};

    use super::*;
    use crate::dice::SplitMix;

    const ID: WalIdentity = WalIdentity { cluster_id: 1, member_id: 1, group_id: 0 };

    fn entry(term: u64, index: u64) -> Entry {
        Entry { term, index, payload: Payload::Command(vec![index as u8; 3]) }
    }

    fn snapshot(index: u64, term: u64) -> Command {
        let meta = SnapshotMeta {
            group: ID.group_id,
            index,
            term,
            membership: Membership::with_voters([1]),
            checksum: crc32c::crc32c(&[]),
            ..SnapshotMeta::default()
        };
        Command::SaveSnapshot { meta, data: vec![] }
    }

    fn disk(config: DiskConfig) -> Disk {
        let mut disk = Disk::new(config, ID);
        disk.start_fresh();
        disk
    }

    fn run(disk: &mut Disk, dice: &mut SplitMix, commands: &[Command]) {
        for command in commands {
            disk.execute(command, 0, dice).expect("no faults");
        }
    }

    fn synced(disk: &mut Disk, dice: &mut SplitMix, id: u64) {
        disk.execute(&Command::Sync { id }, 0, dice).expect("no faults");
        let done = disk.next_completion_us().expect("fsync running");
        assert_eq!(disk.poll(done, dice), Some(Ok(id)));
    }

    #[test]
    fn recovery_replays_appends_truncates_and_snapshots() {
        let mut dice = SplitMix(1);
        let mut disk = disk(DiskConfig::default());
        run(
            &mut disk,
            &mut dice,
            &[
                Command::SaveHardState(HardState { term: 2, vote: Some(3) }),
                snapshot(0, 0),
                Command::AppendLog((1..=5).map(|i| entry(1, i)).collect()),
                Command::AppendLog(vec![entry(2, 4)]),
                Command::TruncateLog { from: 4 },
                Command::AppendLog(vec![entry(2, 4), entry(2, 5)]),
                snapshot(1, 1),
                Command::CompactLog { up_to: 1 },
            ],
        );
        synced(&mut disk, &mut dice, 1);
        disk.crash(&mut dice);
        let recovery = disk.recover().expect("no corruption");
        assert_eq!(recovery.mismatch, None);
        assert!(!recovery.blank);
        assert_eq!(recovery.recovered.hard_state, HardState { term: 2, vote: Some(3) });
        let terms: Vec<_> = recovery.recovered.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(terms, vec![(2, 1), (3, 1), (4, 2), (5, 2)]);
    }

    #[test]
    fn crash_keeps_durable_records_and_a_prefix_of_the_rest() {
        for seed in 0..300 {
            let mut dice = SplitMix(seed);
            let config = DiskConfig { torn_write_ppm: 500_000, segment_size_max: 1 << 10, ..DiskConfig::default() };
            let mut disk = disk(config);
            run(&mut disk, &mut dice, &[Command::SaveHardState(HardState { term: 1, vote: None })]);
            synced(&mut disk, &mut dice, 1);
            for i in 1..40 {
                run(&mut disk, &mut dice, &[Command::AppendLog(vec![entry(1, i)])]);
                if i % 7 == 0 {
                    synced(&mut disk, &mut dice, i);
                }
            }
            disk.crash(&mut dice);
            let recovery = disk.recover().expect("torn tails are not corruption");
            assert_eq!(recovery.mismatch, None, "seed {seed}");
            assert!(recovery.recovered.entries.len() >= 35, "seed {seed}: synced entries survive");
            // The member continues and crashes again.
            run(&mut disk, &mut dice, &[Command::AppendLog(vec![entry(2, 36)])]);
            synced(&mut disk, &mut dice, 100);
            disk.crash(&mut dice);
            let recovery = disk.recover().expect("clean");
            assert_eq!(recovery.mismatch, None, "seed {seed}");
            assert_eq!(recovery.recovered.entries.last().map(|e| (e.index, e.term)), Some((36, 2)));
        }
    }

    #[test]
    fn synced_corruption_is_refused() {
        for seed in 0..100 {
            let mut dice = SplitMix(seed);
            let mut disk = disk(DiskConfig::default());
            run(&mut disk, &mut dice, &[Command::AppendLog((1..=5).map(|i| entry(1, i)).collect())]);
            synced(&mut disk, &mut dice, 1);
            run(&mut disk, &mut dice, &[Command::SaveHardState(HardState { term: 2, vote: None })]);
            synced(&mut disk, &mut dice, 2);
            assert!(disk.corrupt(&mut dice).is_some());
            disk.crash(&mut dice);
            let refusal = disk.recover().expect_err("corruption is refused");
            assert!(refusal.injected);
        }
    }

    #[test]
    fn a_failed_fsync_makes_nothing_durable() {
        let mut dice = SplitMix(5);
        let mut disk =
            disk(DiskConfig { fsync_error_ppm: 1_000_000, keep_unsynced_prefix: false, ..DiskConfig::default() });
        run(&mut disk, &mut dice, &[Command::SaveHardState(HardState { term: 3, vote: None })]);
        disk.execute(&Command::Sync { id: 1 }, 0, &mut dice).expect("starts");
        let done = disk.next_completion_us().expect("running");
        assert_eq!(disk.poll(done, &mut dice), Some(Err(DiskError::FsyncFailed)));
        disk.crash(&mut dice);
        let recovery = disk.recover().expect("a torn segment is not corruption");
        assert_eq!(recovery.mismatch, None);
        assert!(recovery.blank);
    }

    #[test]
    fn a_full_disk_fails_writes() {
        let mut dice = SplitMix(6);
        let mut disk = disk(DiskConfig::default());
        run(&mut disk, &mut dice, &[Command::SaveHardState(HardState { term: 3, vote: None })]);
        synced(&mut disk, &mut dice, 1);
        disk.set_full(true);
        let append = Command::AppendLog(vec![entry(3, 1)]);
        assert_eq!(disk.execute(&append, 0, &mut dice), Err(DiskError::Full));
        disk.crash(&mut dice);
        disk.set_full(false);
        let recovery = disk.recover().expect("clean");
        assert_eq!(recovery.mismatch, None);
        assert_eq!(recovery.recovered.hard_state.term, 3);
        assert!(recovery.recovered.entries.is_empty());
    }

    #[test]
    fn group_commit_covers_later_syncs() {
        let mut dice = SplitMix(4);
        let mut disk = disk(DiskConfig::default());
        run(&mut disk, &mut dice, &[Command::TruncateLog { from: 1 }, Command::Sync { id: 1 }]);
        run(
            &mut disk,
            &mut dice,
            &[Command::TruncateLog { from: 2 }, Command::Sync { id: 2 }, Command::Sync { id: 3 }],
        );
        let first = disk.next_completion_us().expect("running");
        assert_eq!(disk.poll(first, &mut dice), Some(Ok(1)));
        let second = disk.next_completion_us().expect("the waiting syncs start one fsync");
        assert_eq!(disk.poll(second, &mut dice), Some(Ok(3)));
        assert_eq!(disk.next_completion_us(), None);
    }
}
