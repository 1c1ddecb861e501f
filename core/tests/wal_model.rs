//! The WAL against a reference model: random core-like command sequences go
//! through the writer into an in-memory directory; recovery must give back
//! exactly what the model holds, after clean restarts, and after a crash at any
//! byte of the write stream (then: the state after some prefix of the records,
//! never an error, never a record that was not fully written). Throughout, no
//! action writes into a block that holds synced data, and a crash that leaves
//! every block written after a sync zeroed recovers exactly what that sync covered.

use std::collections::BTreeMap;

use lockstep_core::wal::{
    MemDir, RecoveryReport, SegmentHeader, SegmentId, WalAction, WalConfig, WalIdentity, WalWriter,
};
use lockstep_core::{Command, Entry, HardState, LogIndex, Membership, Payload, Recovered, SnapshotMeta, Term};
use proptest::prelude::*;

const ID: WalIdentity = WalIdentity { cluster_id: 0xC0FFEE, member_id: 2, group_id: 5 };

/// An abstract step; [`Model::commands`] turns it into commands that core could emit.
#[derive(Debug, Clone)]
enum Op {
    HardState { bump: bool, vote: Option<u64> },
    Append { back: u64, count: u64, bump: bool, len: usize },
    Truncate { back: u64 },
    LocalSnapshot { back: u64 },
    InstallSnapshot { ahead: i64, matching: bool },
    Compact { back: u64 },
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (any::<bool>(), proptest::option::of(1u64..4)).prop_map(|(bump, vote)| Op::HardState { bump, vote }),
        8 => (0u64..4, 1u64..5, proptest::bool::weighted(0.2), 0usize..40)
            .prop_map(|(back, count, bump, len)| Op::Append { back, count, bump, len }),
        1 => (0u64..4).prop_map(|back| Op::Truncate { back }),
        1 => (0u64..6).prop_map(|back| Op::LocalSnapshot { back }),
        1 => (-3i64..4, any::<bool>()).prop_map(|(ahead, matching)| Op::InstallSnapshot { ahead, matching }),
        1 => (0u64..6).prop_map(|back| Op::Compact { back }),
        3 => Just(Op::Sync),
    ]
}

/// What the driver contract says is durable after a sequence of commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    hard_state: HardState,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    log: BTreeMap<LogIndex, Entry>,
    term: Term,
    sync_id: u64,
}

impl Model {
    fn from_recovered(recovered: &Recovered) -> Model {
        let term = recovered.entries.iter().map(|e| e.term).chain([recovered.hard_state.term]).max().unwrap_or(0);
        Model {
            hard_state: recovered.hard_state,
            snapshot: recovered.snapshot.clone(),
            log: recovered.entries.iter().map(|e| (e.index, e.clone())).collect(),
            term,
            sync_id: 1_000_000,
        }
    }

    fn snap_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(0, |(m, _)| m.index)
    }

    fn next(&self) -> LogIndex {
        self.log.keys().next_back().map_or(self.snap_index() + 1, |last| last + 1)
    }

    fn expected(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.log.values().cloned().collect(),
        }
    }

    /// The contract's meaning of each write command; `SaveSnapshot` is replayed the
    /// way core installs a snapshot (the log after it survives only if it holds the
    /// snapshot's index with its term).
    fn apply(&mut self, command: &Command) {
        match command {
            Command::SaveHardState(hs) => self.hard_state = *hs,
            Command::AppendLog(entries) => {
                if let Some(first) = entries.first() {
                    self.log.split_off(&first.index);
                }
                self.log.extend(entries.iter().map(|e| (e.index, e.clone())));
            }
            Command::TruncateLog { from } => {
                self.log.split_off(from);
            }
            Command::SaveSnapshot { meta, data } => {
                let last = self.next() - 1;
                let kept = meta.index < last && self.log.get(&meta.index).is_some_and(|e| e.term == meta.term);
                self.log = if kept { self.log.split_off(&(meta.index + 1)) } else { BTreeMap::new() };
                self.snapshot = Some((meta.clone(), data.clone()));
            }
            _ => {}
        }
        let first = self.snap_index() + 1;
        assert!(self.log.keys().copied().eq(first..first + self.log.len() as u64), "model log is contiguous");
    }

    fn snapshot_command(&self, index: LogIndex, term: Term) -> Command {
        let data = index.to_le_bytes().repeat(3);
        let meta = SnapshotMeta {
            group: ID.group_id,
            index,
            term,
            membership: Membership::with_voters([1, 2, 3]),
            size: data.len() as u64,
            checksum: crc32c::crc32c(&data),
        };
        Command::SaveSnapshot { meta, data }
    }

    /// Commands core could emit for `op`, applied to the model as they are made.
    fn commands(&mut self, op: &Op) -> Vec<Command> {
        let next = self.next();
        let lo = self.snap_index() + 1;
        let mut out = Vec::new();
        match *op {
            Op::HardState { bump, vote } => {
                self.term = self.term.max(self.hard_state.term) + u64::from(bump);
                out.push(Command::SaveHardState(HardState { term: self.term, vote }));
            }
            Op::Append { back, count, bump, len } => {
                self.term += u64::from(bump);
                let start = next - back.min(next - lo);
                let entries = (start..start + count)
                    .map(|index| Entry { term: self.term, index, payload: Payload::Command(vec![index as u8; len]) })
                    .collect();
                out.push(Command::AppendLog(entries));
            }
            Op::Truncate { back } => out.push(Command::TruncateLog { from: next - back.min(next - lo) }),
            Op::LocalSnapshot { back } => {
                if next > lo {
                    let index = (next - 1) - back.min(next - 1 - lo);
                    out.push(self.snapshot_command(index, self.log[&index].term));
                }
            }
            Op::InstallSnapshot { ahead, matching } => {
                let index = (next as i64 - 1 + ahead).max(lo as i64) as u64;
                let term = match self.log.get(&index) {
                    Some(e) if matching => e.term,
                    _ => {
                        self.term += 1;
                        self.term
                    }
                };
                let kept = index < next - 1 && self.log.get(&index).is_some_and(|e| e.term == term);
                out.push(self.snapshot_command(index, term));
                if !kept {
                    out.push(Command::TruncateLog { from: index + 1 });
                }
            }
            Op::Compact { back } => {
                if self.snapshot.is_some() {
                    out.push(Command::CompactLog { up_to: self.snap_index().saturating_sub(back) });
                }
            }
            Op::Sync => {
                self.sync_id += 1;
                out.push(Command::Sync { id: self.sync_id });
            }
        }
        for command in &out {
            self.apply(command);
        }
        out
    }
}

fn config(segment_size_max: u64, preallocate: bool, block_size: u32) -> WalConfig {
    WalConfig { segment_size_max, preallocate, block_size }
}

/// Block sizes to test with: small ones, so that small segments see many blocks,
/// and the default.
fn block_size() -> impl Strategy<Value = u32> {
    prop_oneof![Just(64u32), Just(128), Just(512), Just(4096)]
}

/// Checks the writer's promise that a block holding synced data is never written
/// again: every `Append` (and every cut) starts at or after the end of the data
/// the last `Sync` of its segment covered, rounded down to its block, and every
/// `Sync` leaves the data of the segments it syncs on a block boundary.
#[derive(Debug, Clone, Default)]
struct SyncedBlocks {
    /// Per live segment: `(block size, end of the data written, end of the data synced)`.
    segments: BTreeMap<SegmentId, (u64, u64, u64)>,
}

impl SyncedBlocks {
    fn observe(&mut self, action: &WalAction) {
        self.observe_prefix(action, usize::MAX);
    }

    /// Observes the first `written` bytes of an action, as `MemDir::apply_prefix` carries them out.
    fn observe_prefix(&mut self, action: &WalAction, written: usize) {
        match action {
            WalAction::CreateSegment { segment, bytes, .. } => {
                let header = SegmentHeader::decode(bytes).expect("a new segment starts with a whole header");
                let len = written.min(bytes.len()) as u64;
                self.segments.insert(*segment, (u64::from(header.block_size), len, 0));
            }
            WalAction::Append { segment, offset, bytes } => {
                let (block, end, synced) = self.segments.get_mut(segment).expect("appending to a known segment");
                let block_start = *offset / *block * *block;
                assert!(
                    block_start >= *synced,
                    "{segment}: an append at {offset} writes the block at {block_start}, which holds data synced up \
                     to {synced}"
                );
                *end = offset + written.min(bytes.len()) as u64;
            }
            _ if written == 0 => {}
            WalAction::Sync { segments, .. } => {
                for segment in segments {
                    let (block, end, synced) = self.segments.get_mut(segment).expect("syncing a known segment");
                    assert_eq!(*end % *block, 0, "{segment}: a sync at {end} does not end on a block boundary");
                    *synced = *end;
                }
            }
            WalAction::TruncateSegment { segment, len } => {
                let (_, end, synced) = self.segments.get_mut(segment).expect("cutting a known segment");
                assert!(*len >= *synced, "{segment}: cut to {len}, below the synced end {synced}");
                *end = *len;
            }
            WalAction::DeleteSegments { segments } => {
                for segment in segments {
                    self.segments.remove(segment);
                }
            }
            WalAction::WriteSnapshot { .. } => {}
        }
    }

    /// After recovery the data of each segment ends where recovery says (a padding
    /// record cut short in preallocated space reads as whole: its body is zeroes).
    fn recovered(&mut self, report: &RecoveryReport) {
        for summary in &report.segments {
            if let Some((_, end, synced)) = self.segments.get_mut(&summary.id) {
                assert!(summary.valid_len >= *synced, "{}: recovery lost synced data", summary.id);
                *end = summary.valid_len;
            }
        }
    }
}

/// Runs `ops` from `model` through `writer` into `dir`; returns the commands.
fn run(model: &mut Model, writer: &mut WalWriter, dir: &mut MemDir, check: &mut SyncedBlocks, ops: &[Op]) {
    for op in ops {
        for command in model.commands(op) {
            for action in writer.handle(&command) {
                check.observe(&action);
                dir.apply(&action);
            }
        }
    }
}

fn restart(dir: &mut MemDir, check: &mut SyncedBlocks, config: WalConfig) -> (Recovered, WalWriter) {
    let report = dir.recover(&ID).unwrap_or_else(|e| panic!("recovery failed: {e}"));
    check.recovered(&report);
    let (writer, actions) = WalWriter::resume(ID, config, &report);
    for action in &actions {
        check.observe(action);
        dir.apply(action);
    }
    (report.recovered, writer)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn recovery_equals_the_model(
        batches in proptest::collection::vec(proptest::collection::vec(op(), 0..25), 1..5),
        segment_size_max in 150u64..3_000,
        preallocate in any::<bool>(),
        block_size in block_size(),
    ) {
        let config = config(segment_size_max, preallocate, block_size);
        let mut dir = MemDir::new(preallocate);
        let mut check = SyncedBlocks::default();
        let mut writer = WalWriter::new(ID, config);
        let mut model = Model::default();
        for batch in &batches {
            run(&mut model, &mut writer, &mut dir, &mut check, batch);
            let ids: Vec<_> = dir.segment_files().iter().map(|(name, _)| name.clone()).collect();
            prop_assert_eq!(ids, writer.segments().iter().map(|s| s.file_name()).collect::<Vec<_>>());
            let report = dir.recover(&ID).unwrap_or_else(|e| panic!("recovery failed: {e}"));
            prop_assert_eq!(&report.recovered, &model.expected());
            prop_assert_eq!(report.next_index, model.next());
            prop_assert!(report.torn_tail.is_none() && report.torn_segment.is_none());
            let (recovered, resumed) = restart(&mut dir, &mut check, config);
            prop_assert_eq!(recovered, model.expected());
            writer = resumed;
        }
    }

    #[test]
    fn a_crash_at_any_byte_recovers_a_prefix_of_the_records(
        ops in proptest::collection::vec(op(), 1..30),
        more in proptest::collection::vec(op(), 0..15),
        segment_size_max in 150u64..2_000,
        preallocate in any::<bool>(),
        block_size in block_size(),
        cut_permille in 0u64..=1000,
    ) {
        let config = config(segment_size_max, preallocate, block_size);
        let history = History::record(&ops, config);
        let total = history.total();
        let cut = total * cut_permille / 1000;
        let (mut dir, mut check) = history.crash_at_checked(cut, preallocate);
        let report = dir.recover(&ID).unwrap_or_else(|e| panic!("cut at {cut} of {total}: recovery failed: {e}"));
        let candidates = history.candidates_at(cut);
        prop_assert!(
            candidates.contains(&report.recovered),
            "cut at {} of {}: recovered {:?}, expected one of {:?}", cut, total, report.recovered, candidates
        );
        // The member restarts on what it recovered, writes more, and recovers again;
        // no write before or after the crash touches a block holding synced data.
        let (recovered, mut writer) = restart(&mut dir, &mut check, config);
        let mut model = Model::from_recovered(&recovered);
        run(&mut model, &mut writer, &mut dir, &mut check, &more);
        let report = dir.recover(&ID).unwrap_or_else(|e| panic!("second recovery failed: {e}"));
        prop_assert_eq!(report.recovered, model.expected());
    }

    /// The failure the padding exists for: a power cut tears the writes that
    /// followed a sync, and the device leaves every block they touched zeroed
    /// (with `O_DIRECT` each write covers whole blocks). What that sync covered
    /// is recovered exactly: those blocks never hold synced data.
    #[test]
    fn blocks_torn_after_a_sync_never_lose_what_it_covered(
        ops in proptest::collection::vec(op(), 1..30),
        segment_size_max in 150u64..2_000,
        preallocate in any::<bool>(),
        block_size in block_size(),
        which in any::<prop::sample::Index>(),
        written_permille in 0u64..=1000,
    ) {
        let config = config(segment_size_max, preallocate, block_size);
        let history = History::record(&ops, config);
        let syncs: Vec<usize> =
            history.actions.iter().enumerate().filter(|(_, (_, a))| matches!(a, WalAction::Sync { .. })).map(|(i, _)| i).collect();
        prop_assume!(!syncs.is_empty());
        let sync = syncs[which.index(syncs.len())];
        let durable = history.crash_at(history.start_of(sync + 1), preallocate);
        let expected = durable.recover(&ID).unwrap_or_else(|e| panic!("recovery after a sync failed: {e}"));
        // The appends up to the next action that is not one (a sync, or a snapshot
        // file, which the writer puts only after a sync), some of them written.
        let window: Vec<&WalAction> = history.actions[sync + 1..]
            .iter()
            .map(|(_, a)| a)
            .take_while(|a| matches!(a, WalAction::Append { .. }))
            .collect();
        let bytes: u64 = window.iter().map(|a| weight(a)).sum();
        let mut left = bytes * written_permille / 1000;
        let mut torn = durable.clone();
        let mut blocks = Vec::new();
        for action in &window {
            let WalAction::Append { segment, offset, bytes } = action else { unreachable!() };
            if left > 0 {
                let written = left.min(bytes.len() as u64);
                torn.apply_prefix(action, written as usize);
                // A write cut short ends the stream: nothing after it was written.
                left = if written < bytes.len() as u64 { 0 } else { left - written };
            }
            let block = u64::from(block_size);
            blocks.push((*segment, *offset / block * block, (*offset + bytes.len() as u64).div_ceil(block) * block));
        }
        for (segment, from, to) in blocks {
            let file = torn.segment_mut(&segment).expect("appended to");
            let end = (to as usize).min(file.len());
            if (from as usize) < end {
                file[from as usize..end].fill(0);
            }
        }
        let report = torn.recover(&ID).unwrap_or_else(|e| panic!("recovery after torn blocks failed: {e}"));
        prop_assert_eq!(report.recovered, expected.recovered);
        prop_assert_eq!(report.next_index, expected.next_index);
    }
}

/// Every action of a run, the command each came from, and the model around each command.
struct History {
    commands: Vec<Command>,
    /// `(command number, action)`.
    actions: Vec<(usize, WalAction)>,
    /// `models[c]`: the model before command `c`; the last one after all.
    models: Vec<Model>,
}

/// How many "bytes" of the write stream an action is: its data, or 1 for an
/// action that happens entirely or not at all.
fn weight(action: &WalAction) -> u64 {
    match action {
        WalAction::CreateSegment { bytes, .. } | WalAction::Append { bytes, .. } => bytes.len() as u64,
        _ => 1,
    }
}

impl History {
    fn record(ops: &[Op], config: WalConfig) -> History {
        let mut model = Model::default();
        let mut writer = WalWriter::new(ID, config);
        let mut history = History { commands: Vec::new(), actions: Vec::new(), models: vec![model.clone()] };
        for op in ops {
            let mut generator = model.clone();
            for command in generator.commands(op) {
                model.apply(&command);
                let c = history.commands.len();
                history.actions.extend(writer.handle(&command).into_iter().map(|a| (c, a)));
                history.commands.push(command);
                history.models.push(model.clone());
            }
            assert_eq!(model.expected(), generator.expected());
            model = generator;
        }
        history
    }

    fn total(&self) -> u64 {
        self.actions.iter().map(|(_, a)| weight(a)).sum()
    }

    /// The directory after the first `cut` bytes of the write stream reached the disk.
    fn crash_at(&self, cut: u64, preallocate: bool) -> MemDir {
        self.crash_at_checked(cut, preallocate).0
    }

    /// [`History::crash_at`], with the synced-block check of every action carried out.
    fn crash_at_checked(&self, cut: u64, preallocate: bool) -> (MemDir, SyncedBlocks) {
        let mut dir = MemDir::new(preallocate);
        let mut check = SyncedBlocks::default();
        let mut left = cut;
        for (_, action) in &self.actions {
            let w = weight(action);
            if left >= w {
                check.observe(action);
                dir.apply(action);
                left -= w;
            } else {
                check.observe_prefix(action, left as usize);
                dir.apply_prefix(action, left as usize);
                break;
            }
        }
        (dir, check)
    }

    /// The command being carried out when the stream was cut at `cut`, and whether
    /// the cut falls exactly after its last action.
    fn command_at(&self, cut: u64) -> Option<(usize, bool)> {
        let mut done = 0;
        for (i, (c, action)) in self.actions.iter().enumerate() {
            done += weight(action);
            if done > cut {
                return Some((*c, false));
            }
            if done == cut {
                let last_of_command = self.actions.get(i + 1).is_none_or(|(next, _)| next != c);
                return Some((*c, last_of_command));
            }
        }
        None
    }

    /// The states recovery may return after a cut at `cut`.
    fn candidates_at(&self, cut: u64) -> Vec<Recovered> {
        let Some((c, complete)) = self.command_at(cut) else {
            return vec![self.models.last().expect("initial model").expected()];
        };
        let (before, after) = (&self.models[c], &self.models[c + 1]);
        if complete {
            return vec![after.expected()];
        }
        let mut out = vec![before.expected(), after.expected()];
        if let Command::AppendLog(entries) = &self.commands[c] {
            for k in 1..entries.len() {
                let mut partial = before.clone();
                partial.apply(&Command::AppendLog(entries[..k].to_vec()));
                out.push(partial.expected());
            }
        }
        out
    }
}

/// One fixed run, cut at every byte of its write stream, with and without
/// preallocated (zero-filled) files.
#[test]
fn a_crash_at_every_byte_of_a_fixed_run_recovers_a_prefix() {
    let ops = [
        Op::HardState { bump: true, vote: Some(1) },
        Op::Append { back: 0, count: 3, bump: false, len: 5 },
        Op::Sync,
        Op::Append { back: 1, count: 2, bump: true, len: 0 },
        Op::LocalSnapshot { back: 1 },
        Op::Compact { back: 0 },
        Op::InstallSnapshot { ahead: 0, matching: false },
        Op::Append { back: 0, count: 2, bump: false, len: 9 },
        Op::Truncate { back: 1 },
        Op::HardState { bump: true, vote: None },
        Op::Sync,
    ];
    for (preallocate, block_size) in [(false, 64), (true, 64), (false, 512), (true, 512)] {
        let config = config(400, preallocate, block_size);
        let history = History::record(&ops, config);
        let total = history.total();
        assert!(total > 1_000, "the run is long enough to roll segments ({total} bytes)");
        let mut check = SyncedBlocks::default();
        for (_, action) in &history.actions {
            check.observe(action);
        }
        let mut torn = 0;
        for cut in 0..=total {
            let dir = history.crash_at(cut, preallocate);
            let report = dir.recover(&ID).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            let candidates = history.candidates_at(cut);
            assert!(candidates.contains(&report.recovered), "cut {cut}: {:?}", report.recovered);
            torn += usize::from(report.torn_tail.is_some() || report.torn_segment.is_some());
        }
        assert!(torn as u64 > total / 2, "most cuts land inside a record ({torn} of {total})");
    }
}

impl History {
    /// The stream position where action `i` starts.
    fn start_of(&self, i: usize) -> u64 {
        self.actions[..i].iter().map(|(_, a)| weight(a)).sum()
    }
}

/// A crash can cut off the hard state and snapshot marker a new segment starts
/// with. The resumed writer restates them, so compacting the older segments away
/// later does not lose the hard state (which would let the member vote twice).
#[test]
fn a_checkpoint_cut_off_by_a_crash_is_restated_before_compaction() {
    let ops = [
        Op::HardState { bump: true, vote: Some(3) },
        Op::Append { back: 0, count: 3, bump: false, len: 30 },
        Op::LocalSnapshot { back: 0 },
        Op::Append { back: 0, count: 3, bump: false, len: 30 },
        Op::LocalSnapshot { back: 0 },
        Op::Append { back: 0, count: 3, bump: false, len: 30 },
    ];
    let config = config(200, false, 64);
    let history = History::record(&ops, config);
    let mut meaningful = 0;
    for (i, (_, action)) in history.actions.iter().enumerate() {
        let WalAction::CreateSegment { bytes, .. } = action else { continue };
        if bytes.len() <= 64 + 5 {
            continue;
        }
        let (mut dir, mut check) = history.crash_at_checked(history.start_of(i) + 64 + 5, false);
        let torn = dir.recover(&ID).expect("a torn checkpoint is a torn tail").torn_tail.expect("torn");
        assert_eq!(torn.offset, 64);
        let (recovered, mut writer) = restart(&mut dir, &mut check, config);
        let mut model = Model::from_recovered(&recovered);
        let segments_before = dir.segment_files().len();
        run(&mut model, &mut writer, &mut dir, &mut check, &[Op::Compact { back: 0 }, Op::Sync]);
        meaningful += usize::from(dir.segment_files().len() == 1 && segments_before > 1);
        let report = dir.recover(&ID).expect("recovers after compaction");
        assert_eq!(report.recovered, model.expected(), "crash inside action {i}");
        assert_eq!(report.recovered.hard_state.vote, Some(3));
    }
    assert!(meaningful > 0, "some case compacted every segment but the torn one away");
}

/// The node stopped after the new snapshot file was in place but before its
/// marker reached the WAL, with the last segment full. The resumed writer
/// records the marker in that segment instead of starting a new one (whose first
/// index would not match what replaying the old segments gives).
#[test]
fn resuming_after_a_lost_marker_does_not_start_a_segment_first() {
    let ops = [
        Op::Append { back: 0, count: 3, bump: true, len: 4 },
        Op::InstallSnapshot { ahead: 2, matching: false },
        Op::Append { back: 0, count: 2, bump: false, len: 4 },
    ];
    // So small that every record after the first of a segment starts a new one.
    let config = config(100, false, 64);
    let history = History::record(&ops, config);
    let write = history
        .actions
        .iter()
        .position(|(_, a)| matches!(a, WalAction::WriteSnapshot { .. }))
        .expect("a snapshot is written");
    let (mut dir, mut check) = history.crash_at_checked(history.start_of(write + 1), false);
    let report = dir.recover(&ID).expect("recovers");
    assert!(report.snapshot_ahead.is_some(), "{report}");
    let (recovered, mut writer) = restart(&mut dir, &mut check, config);
    let mut model = Model::from_recovered(&recovered);
    let ops = [Op::Append { back: 0, count: 2, bump: false, len: 4 }, Op::Sync];
    run(&mut model, &mut writer, &mut dir, &mut check, &ops);
    let report = dir.recover(&ID).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.recovered, model.expected());
    assert!(report.snapshot_ahead.is_none());
}
