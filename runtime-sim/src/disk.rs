//! A simulated disk for one member that outlives the member's process.
//!
//! Core's write commands are appended as checksummed records to a write-ahead log.
//! A record is durable once an fsync that started after it completes; an fsync
//! takes a random time and covers every record written before it started, so one
//! fsync may complete several [`lockstep_core::Command::Sync`]s (group commit).
//!
//! On a crash the durable records survive; of the others a random prefix survives,
//! and the last survivor may be torn (cut short). Recovery drops a bad record after
//! the durable prefix (a torn tail) but refuses to start when a durable record is
//! bad (media corruption): a member must never silently forget what it made durable.

use std::collections::BTreeMap;

use lockstep_core::codec::{
    decode_entry, decode_hard_state, decode_snapshot_meta, encode_entry, encode_hard_state, encode_snapshot_meta,
};
use lockstep_core::{Entry, HardState, LogIndex, Recovered, SnapshotMeta};

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
    /// On a crash, the probability (ppm) that the last surviving unsynced write is torn.
    pub torn_write_ppm: u32,
    /// On a crash, whether a random prefix of the unsynced writes survives (true)
    /// or all of them are lost (false).
    pub keep_unsynced_prefix: bool,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            fsync_us_min: 200,
            fsync_us_max: 3_000,
            fsync_slow_ppm: 0,
            fsync_slow_us_max: 50_000,
            torn_write_ppm: 0,
            keep_unsynced_prefix: true,
        }
    }
}

const TAG_HARD_STATE: u8 = 1;
const TAG_APPEND: u8 = 2;
const TAG_TRUNCATE: u8 = 3;
const TAG_SNAPSHOT: u8 = 4;
const TAG_COMPACT: u8 = 5;
/// Record header: body length (u32), CRC32C of the body (u32).
const RECORD_HEADER_LEN: usize = 8;

/// One write core asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskWrite {
    /// `Command::SaveHardState`.
    HardState(HardState),
    /// `Command::AppendLog`.
    Append(Vec<Entry>),
    /// `Command::TruncateLog`.
    Truncate {
        /// The first index removed.
        from: LogIndex,
    },
    /// `Command::SaveSnapshot`.
    Snapshot {
        /// The snapshot's description.
        meta: SnapshotMeta,
        /// The snapshot's data.
        data: Vec<u8>,
    },
    /// `Command::CompactLog`.
    Compact {
        /// The last index that may be deleted.
        up_to: LogIndex,
    },
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&u32::try_from(value).expect("record part fits in u32").to_le_bytes());
}

fn encode_record(write: &DiskWrite) -> Vec<u8> {
    let mut body = Vec::new();
    match write {
        DiskWrite::HardState(hard_state) => {
            body.push(TAG_HARD_STATE);
            body.extend_from_slice(&encode_hard_state(hard_state));
        }
        DiskWrite::Append(entries) => {
            body.push(TAG_APPEND);
            put_u32(&mut body, entries.len());
            for entry in entries {
                let bytes = encode_entry(entry);
                put_u32(&mut body, bytes.len());
                body.extend_from_slice(&bytes);
            }
        }
        DiskWrite::Truncate { from } => {
            body.push(TAG_TRUNCATE);
            body.extend_from_slice(&from.to_le_bytes());
        }
        DiskWrite::Snapshot { meta, data } => {
            body.push(TAG_SNAPSHOT);
            let bytes = encode_snapshot_meta(meta);
            put_u32(&mut body, bytes.len());
            body.extend_from_slice(&bytes);
            body.extend_from_slice(data);
        }
        DiskWrite::Compact { up_to } => {
            body.push(TAG_COMPACT);
            body.extend_from_slice(&up_to.to_le_bytes());
        }
    }
    let mut record = Vec::with_capacity(RECORD_HEADER_LEN + body.len());
    put_u32(&mut record, body.len());
    record.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    record.extend_from_slice(&body);
    record
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("need {n} bytes, have {}", self.0.len()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<usize, String> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    }

    fn u64(&mut self) -> Result<u64, String> {
        let bytes = self.take(8)?;
        let mut array = [0; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }
}

fn decode_record(record: &[u8]) -> Result<DiskWrite, String> {
    let mut header = Reader(record);
    let len = header.u32()?;
    let crc = header.u32()? as u32;
    let body = header.0;
    if body.len() != len {
        return Err(format!("record body is {} bytes, header says {len}", body.len()));
    }
    if crc32c::crc32c(body) != crc {
        return Err("record checksum mismatch".into());
    }
    let mut reader = Reader(body);
    let tag = reader.take(1)?[0];
    let write = match tag {
        TAG_HARD_STATE => DiskWrite::HardState(decode_hard_state(reader.0).map_err(|e| e.to_string())?),
        TAG_APPEND => {
            let count = reader.u32()?;
            let mut entries = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let len = reader.u32()?;
                entries.push(decode_entry(reader.take(len)?).map_err(|e| e.to_string())?);
            }
            DiskWrite::Append(entries)
        }
        TAG_TRUNCATE => DiskWrite::Truncate { from: reader.u64()? },
        TAG_SNAPSHOT => {
            let len = reader.u32()?;
            let meta = decode_snapshot_meta(reader.take(len)?).map_err(|e| e.to_string())?;
            DiskWrite::Snapshot { meta, data: reader.0.to_vec() }
        }
        TAG_COMPACT => DiskWrite::Compact { up_to: reader.u64()? },
        other => return Err(format!("unknown record tag {other}")),
    };
    Ok(write)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fsync {
    done_us: u64,
    covers: usize,
    sync_id: u64,
}

/// What a crash did to the unsynced writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashEffect {
    /// Unsynced records when the crash happened.
    pub unsynced: usize,
    /// Of those, how many survived (the last possibly torn).
    pub kept: usize,
    /// Whether the last kept record was torn.
    pub torn: bool,
}

/// Why a member could not recover from its disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The durable record that failed to decode.
    pub record: usize,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "durable record {} is corrupt: {}", self.record, self.reason)
    }
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The state to hand to `Node::restart`.
    pub recovered: Recovered,
    /// True if the disk held nothing at all (the member never made its bootstrap durable).
    pub blank: bool,
    /// Records dropped from a torn tail.
    pub torn_dropped: usize,
}

/// One member's disk: a log of records, the first `durable` of which are durable.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    config: DiskConfig,
    records: Vec<Vec<u8>>,
    durable: usize,
    fsync: Option<Fsync>,
    /// The highest sync id requested while an fsync was already running.
    waiting: Option<u64>,
    bytes_written: u64,
}

impl Disk {
    /// An empty disk.
    pub fn new(config: DiskConfig) -> Disk {
        Disk { config, ..Disk::default() }
    }

    /// Changes timing and fault rates.
    pub fn set_config(&mut self, config: DiskConfig) {
        self.config = config;
    }

    /// Appends one write (not yet durable).
    pub fn write(&mut self, write: &DiskWrite) {
        let record = encode_record(write);
        self.bytes_written += record.len() as u64;
        self.records.push(record);
    }

    /// Records written, durable or not.
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// Records known durable.
    pub fn durable(&self) -> usize {
        self.durable
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

    /// Asks for every write so far to become durable, then for `Persisted { up_to: sync_id }`.
    pub fn sync(&mut self, sync_id: u64, now_us: u64, dice: &mut impl Dice) {
        if self.fsync.is_some() {
            self.waiting = Some(self.waiting.map_or(sync_id, |w| w.max(sync_id)));
        } else {
            let done_us = now_us + self.fsync_us(dice);
            self.fsync = Some(Fsync { done_us, covers: self.records.len(), sync_id });
        }
    }

    /// When the running fsync completes, if one runs.
    pub fn next_completion_us(&self) -> Option<u64> {
        self.fsync.map(|f| f.done_us)
    }

    /// Completes the running fsync if it is due; returns the sync id it completes.
    pub fn poll(&mut self, now_us: u64, dice: &mut impl Dice) -> Option<u64> {
        let fsync = self.fsync?;
        if fsync.done_us > now_us {
            return None;
        }
        self.durable = self.durable.max(fsync.covers);
        self.fsync = None;
        if let Some(waiting) = self.waiting.take() {
            self.sync(waiting, now_us, dice);
        }
        Some(fsync.sync_id)
    }

    /// The process died: unsynced writes are lost except a random prefix, the last
    /// of which may be torn. A running fsync is abandoned.
    pub fn crash(&mut self, dice: &mut impl Dice) -> CrashEffect {
        self.fsync = None;
        self.waiting = None;
        let unsynced = self.records.len() - self.durable;
        let kept = if self.config.keep_unsynced_prefix { dice.below(unsynced as u64 + 1) as usize } else { 0 };
        self.records.truncate(self.durable + kept);
        let mut torn = false;
        if kept > 0 && dice.chance_ppm(self.config.torn_write_ppm) {
            let last = self.records.last_mut().expect("kept > 0");
            let len = dice.below(last.len() as u64) as usize;
            last.truncate(len);
            torn = true;
        }
        CrashEffect { unsynced, kept, torn }
    }

    /// Flips one bit of a random durable record (media corruption); returns which
    /// record, or `None` if nothing is durable.
    pub fn corrupt(&mut self, dice: &mut impl Dice) -> Option<usize> {
        if self.durable == 0 {
            return None;
        }
        let record = dice.below(self.durable as u64) as usize;
        let bytes = &mut self.records[record];
        let bit = dice.below(bytes.len() as u64 * 8);
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        Some(record)
    }

    /// Reads the disk back after a crash. A bad record in the durable prefix is
    /// corruption; a bad record after it is a torn tail, dropped with everything
    /// after it. What remains counts as durable from now on.
    pub fn recover(&mut self) -> Result<Recovery, Corruption> {
        let mut hard_state = None;
        let mut snapshot: Option<(SnapshotMeta, Vec<u8>)> = None;
        let mut log: BTreeMap<LogIndex, Entry> = BTreeMap::new();
        let mut good = self.records.len();
        for (i, record) in self.records.iter().enumerate() {
            let write = match decode_record(record) {
                Ok(write) => write,
                Err(reason) if i < self.durable => return Err(Corruption { record: i, reason }),
                Err(_) => {
                    good = i;
                    break;
                }
            };
            match write {
                DiskWrite::HardState(hs) => hard_state = Some(hs),
                DiskWrite::Append(entries) => {
                    if let Some(first) = entries.first() {
                        log.split_off(&first.index);
                    }
                    for entry in entries {
                        log.insert(entry.index, entry);
                    }
                }
                DiskWrite::Truncate { from } => {
                    log.split_off(&from);
                }
                DiskWrite::Snapshot { meta, data } => snapshot = Some((meta, data)),
                DiskWrite::Compact { up_to } => log = log.split_off(&(up_to + 1)),
            }
        }
        let torn_dropped = self.records.len() - good;
        self.records.truncate(good);
        self.durable = self.records.len();
        let blank = hard_state.is_none() && snapshot.is_none() && log.is_empty();
        let entries = match &snapshot {
            Some((meta, _)) if log.get(&meta.index).is_some_and(|e| e.term != meta.term) => Vec::new(),
            Some((meta, _)) => contiguous(&log, meta.index + 1),
            None => log.keys().next().map_or_else(Vec::new, |first| contiguous(&log, *first)),
        };
        let recovered = Recovered { hard_state: hard_state.unwrap_or_default(), snapshot, entries };
        Ok(Recovery { recovered, blank, torn_dropped })
    }
}

fn contiguous(log: &BTreeMap<LogIndex, Entry>, from: LogIndex) -> Vec<Entry> {
    (from..)
        .zip(log.range(from..))
        .take_while(|(next, (index, _))| next == *index)
        .map(|(_, (_, e))| e.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use lockstep_core::Payload;

    use super::*;
    use crate::dice::SplitMix;

    fn entry(term: u64, index: u64) -> Entry {
        Entry { term, index, payload: Payload::Command(vec![index as u8; 3]) }
    }

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        let membership = lockstep_core::Membership::with_voters([1]);
        SnapshotMeta { index, term, membership, checksum: crc32c::crc32c(&[]), ..SnapshotMeta::default() }
    }

    fn synced(disk: &mut Disk, dice: &mut SplitMix) {
        disk.sync(1, 0, dice);
        let done = disk.next_completion_us().expect("fsync running");
        assert_eq!(disk.poll(done, dice), Some(1));
    }

    #[test]
    fn recovery_replays_appends_truncates_and_snapshots() {
        let mut dice = SplitMix(1);
        let mut disk = Disk::new(DiskConfig::default());
        disk.write(&DiskWrite::HardState(HardState { term: 2, vote: Some(3) }));
        disk.write(&DiskWrite::Snapshot { meta: meta(0, 0), data: vec![] });
        disk.write(&DiskWrite::Append((1..=5).map(|i| entry(1, i)).collect()));
        disk.write(&DiskWrite::Append(vec![entry(2, 4)]));
        disk.write(&DiskWrite::Truncate { from: 4 });
        disk.write(&DiskWrite::Append(vec![entry(2, 4), entry(2, 5)]));
        disk.write(&DiskWrite::Snapshot { meta: meta(1, 1), data: vec![] });
        disk.write(&DiskWrite::Compact { up_to: 1 });
        synced(&mut disk, &mut dice);
        let recovery = disk.recover().expect("no corruption");
        assert!(!recovery.blank);
        assert_eq!(recovery.recovered.hard_state, HardState { term: 2, vote: Some(3) });
        let terms: Vec<_> = recovery.recovered.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(terms, vec![(2, 1), (3, 1), (4, 2), (5, 2)]);
    }

    #[test]
    fn a_conflicting_entry_at_the_snapshot_index_drops_the_log() {
        let mut dice = SplitMix(2);
        let mut disk = Disk::new(DiskConfig::default());
        disk.write(&DiskWrite::Append((1..=5).map(|i| entry(1, i)).collect()));
        disk.write(&DiskWrite::Snapshot { meta: meta(3, 2), data: vec![] });
        synced(&mut disk, &mut dice);
        assert!(disk.recover().expect("clean").recovered.entries.is_empty());
    }

    #[test]
    fn crash_loses_only_unsynced_writes_and_torn_tails_are_dropped() {
        for seed in 0..200 {
            let mut dice = SplitMix(seed);
            let config = DiskConfig { torn_write_ppm: 500_000, ..DiskConfig::default() };
            let mut disk = Disk::new(config);
            disk.write(&DiskWrite::HardState(HardState { term: 1, vote: None }));
            synced(&mut disk, &mut dice);
            for i in 2..6 {
                disk.write(&DiskWrite::HardState(HardState { term: i, vote: None }));
            }
            let effect = disk.crash(&mut dice);
            let term = disk.recover().expect("torn tails are not corruption").recovered.hard_state.term;
            let survived = effect.kept as u64 - u64::from(effect.torn);
            assert_eq!(term, 1 + survived, "seed {seed}: {effect:?}");
        }
    }

    #[test]
    fn durable_corruption_is_refused() {
        let mut dice = SplitMix(3);
        let mut disk = Disk::new(DiskConfig::default());
        disk.write(&DiskWrite::Append((1..=5).map(|i| entry(1, i)).collect()));
        disk.write(&DiskWrite::HardState(HardState { term: 2, vote: None }));
        synced(&mut disk, &mut dice);
        assert!(disk.corrupt(&mut dice).is_some());
        assert!(disk.recover().is_err());
    }

    #[test]
    fn group_commit_covers_later_syncs() {
        let mut dice = SplitMix(4);
        let mut disk = Disk::new(DiskConfig::default());
        disk.write(&DiskWrite::Truncate { from: 1 });
        disk.sync(1, 0, &mut dice);
        disk.write(&DiskWrite::Truncate { from: 2 });
        disk.sync(2, 0, &mut dice);
        disk.sync(3, 0, &mut dice);
        let first = disk.next_completion_us().expect("running");
        assert_eq!(disk.poll(first, &mut dice), Some(1));
        assert_eq!(disk.durable(), 1);
        let second = disk.next_completion_us().expect("the waiting syncs start one fsync");
        assert_eq!(disk.poll(second, &mut dice), Some(3));
        assert_eq!(disk.durable(), 2);
        assert_eq!(disk.next_completion_us(), None);
    }
}
