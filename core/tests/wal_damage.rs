//! Damaged, foreign and hostile WAL files: corruption is refused with the file
//! and offset, a cut-short tail is dropped and reported, preallocated zeroes are
//! fine, identity and format mismatches are clear errors, and no input panics.

use lockstep_core::wal::{
    encode_snapshot_file, fsck, recover, FsckMode, HeaderProblem, IdentityField, MemDir, ProblemKind, RecordProblem,
    SegmentHeader, SegmentId, SnapshotProblem, WalAction, WalConfig, WalError, WalIdentity, WalWriter,
    SEGMENT_HEADER_LEN,
};
use lockstep_core::{Command, Entry, HardState, Membership, Payload, Recovered, SnapshotMeta, Term};
use proptest::prelude::*;

const ID: WalIdentity = WalIdentity { cluster_id: 0xC0FFEE, member_id: 2, group_id: 5 };

fn entries(from: u64, to: u64, term: Term) -> Vec<Entry> {
    (from..=to).map(|index| Entry { term, index, payload: Payload::Command(vec![index as u8; 10]) }).collect()
}

fn snapshot(index: u64, term: Term) -> Command {
    let data = vec![index as u8; 7];
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

fn write(dir: &mut MemDir, writer: &mut WalWriter, commands: &[Command]) {
    for command in commands {
        for action in writer.handle(command) {
            dir.apply(&action);
        }
    }
}

/// A WAL of several segments: a hard state and 20 entries in batches of 4.
fn sample(preallocate: bool) -> MemDir {
    let mut dir = MemDir::new(preallocate);
    let mut writer = WalWriter::new(ID, WalConfig { segment_size_max: 600, preallocate, block_size: 128 });
    let mut commands = vec![Command::SaveHardState(HardState { term: 1, vote: Some(1) })];
    for batch in 0..5 {
        commands.push(Command::AppendLog(entries(batch * 4 + 1, batch * 4 + 4, 1)));
    }
    commands.push(Command::Sync { id: 1 });
    write(&mut dir, &mut writer, &commands);
    assert!(dir.segment_files().len() >= 3, "the sample spans several segments");
    dir
}

fn expected_full() -> Recovered {
    Recovered { hard_state: HardState { term: 1, vote: Some(1) }, snapshot: None, entries: entries(1, 20, 1) }
}

/// The kind byte of a padding record.
const PADDING: u8 = 5;

/// Where each record of a segment starts, and where the records end.
fn record_starts(bytes: &[u8]) -> (Vec<usize>, usize) {
    let mut starts = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while at + 16 <= bytes.len() && bytes[at..at + 16].iter().any(|b| *b != 0) {
        starts.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 16 + len;
    }
    (starts, at)
}

fn segments_of(dir: &MemDir) -> Vec<(String, Vec<u8>)> {
    dir.segment_files().into_iter().map(|(name, bytes)| (name, bytes.to_vec())).collect()
}

#[test]
fn the_sample_recovers() {
    for preallocate in [false, true] {
        let report = sample(preallocate).recover(&ID).expect("clean");
        assert_eq!(report.recovered, expected_full());
        assert!(report.torn_tail.is_none());
    }
}

#[test]
fn a_flipped_byte_before_the_tail_is_an_error_naming_file_and_offset() {
    let segments = segments_of(&sample(false));
    let last = segments.len() - 1;
    let mut checked = 0;
    for (s, (name, bytes)) in segments.iter().enumerate() {
        let (starts, end) = record_starts(bytes);
        for position in 0..end {
            let mut damaged = segments.clone();
            damaged[s].1[position] ^= 0x40;
            let result = recover(&ID, &damaged, None);
            if position < SEGMENT_HEADER_LEN {
                let error = result.expect_err("a damaged segment header is refused");
                assert!(
                    matches!(&error, WalError::BadSegmentHeader { file, .. } if file == name),
                    "byte {position} of {name}: {error}"
                );
                continue;
            }
            let record = starts.iter().rposition(|start| *start <= position).expect("inside a record");
            let offset = starts[record] as u64;
            let final_record = s == last && record + 1 == starts.len();
            let padding = bytes[starts[record] + 4] == PADDING;
            match result {
                Err(WalError::Corrupt { file, offset: at, record: n, .. }) => {
                    assert_eq!((file.as_str(), at, n), (name.as_str(), offset, record as u64), "byte {position}");
                    let message = recover(&ID, &damaged, None).expect_err("same").to_string();
                    assert!(message.contains(name) && message.contains(&format!("offset {offset}")), "{message}");
                    assert!(message.contains("lockstep fsck"), "the error says what to do: {message}");
                    checked += 1;
                }
                // Damage to the very last record looks exactly like a torn write. That
                // is the padding that ends the sync, which holds no data: damage to
                // the last entry before it is corruption, since the padding follows.
                Ok(report) if final_record => {
                    assert!(padding, "the last record of a synced WAL is padding");
                    assert_eq!(report.torn_tail.map(|t| t.offset), Some(offset));
                    assert_eq!(report.recovered, expected_full());
                }
                other => panic!("byte {position} of {name}: {other:?}"),
            }
        }
    }
    assert!(checked > 1_000, "checked {checked} corrupt bytes");
}

#[test]
fn a_cut_tail_is_dropped_and_reported() {
    for preallocate in [false, true] {
        let mut dir = sample(preallocate);
        let last = segments_of(&dir).last().map(|(n, _)| n.clone()).expect("segments");
        let id = SegmentId::parse(&last).expect("segment name");
        let bytes = dir.segment_mut(&id).expect("last segment");
        let (starts, end) = record_starts(bytes);
        // The last entry and the padding after it were one write, cut short.
        assert_eq!(bytes[starts[starts.len() - 1] + 4], PADDING);
        let final_start = starts[starts.len() - 2];
        bytes.truncate(final_start + 5);
        if preallocate {
            bytes.resize(end + 4096, 0);
        }
        let report = dir.recover(&ID).expect("a torn tail is not corruption");
        let torn = report.torn_tail.expect("reported");
        assert_eq!((torn.segment, torn.offset, torn.record_bytes), (id, final_start as u64, 5));
        let text = torn.to_string();
        assert!(text.contains(&last) && text.contains(&format!("offset {final_start}")), "{text}");
        assert!(text.contains("never") && text.contains("synced"), "the report says why it is safe: {text}");
        assert_eq!(report.recovered.entries, entries(1, 19, 1));
        // The resumed writer cuts the file before writing on; the next recovery is clean.
        let (mut writer, actions) =
            WalWriter::resume(ID, WalConfig { segment_size_max: 600, preallocate, ..WalConfig::default() }, &report);
        for action in &actions {
            dir.apply(action);
        }
        write(&mut dir, &mut writer, &[Command::AppendLog(entries(20, 21, 2)), Command::Sync { id: 2 }]);
        let report = dir.recover(&ID).expect("clean after repair");
        assert!(report.torn_tail.is_none());
        let mut want = entries(1, 19, 1);
        want.extend(entries(20, 21, 2));
        assert_eq!(report.recovered.entries, want);
    }
}

/// A record with valid checksums: header (`len`, `kind`, reserved, body and header
/// checksums) and body.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    let header_crc = crc32c::crc32c(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn padding_records_are_checked_and_never_data() {
    let segments = segments_of(&sample(false));
    assert_eq!(recover(&ID, &segments, None).expect("clean").recovered, expected_full());
    // The first segment ends with the padding written before the sync that closed it.
    let (starts, end) = record_starts(&segments[0].1);
    let at = *starts.last().expect("records");
    assert_eq!((segments[0].1[at + 4], end % 128), (PADDING, 0));
    let body_len = end - at - 16;
    let name = segments[0].0.clone();
    let corrupt_at = |replacement: Vec<u8>| {
        let mut damaged = segments.clone();
        damaged[0].1.truncate(at);
        damaged[0].1.extend_from_slice(&replacement);
        let error = recover(&ID, &damaged, None).expect_err("refused");
        let report = fsck(&ID, &damaged, None, FsckMode::Check);
        let problem = &report.files[0].problems[0];
        assert_eq!((problem.offset, problem.kind), (at as u64, ProblemKind::Corruption), "{report}");
        error
    };
    // Checksums valid, but it ends one byte short of the boundary (a zero byte follows).
    let mut short = frame(PADDING, &vec![0; body_len - 1]);
    short.push(0);
    let error = corrupt_at(short);
    assert!(
        matches!(&error, WalError::Corrupt { file, offset, problem: RecordProblem::MisalignedPadding { end: e, block_size: 128 }, .. }
            if *file == name && *offset == at as u64 && *e == end as u64 - 1),
        "{error}"
    );
    assert!(error.to_string().contains("block boundary"), "{error}");
    // Checksums valid, but it skips a whole block.
    let error = corrupt_at(frame(PADDING, &vec![0; body_len + 128]));
    assert!(matches!(&error, WalError::Corrupt { problem: RecordProblem::MisalignedPadding { .. }, .. }), "{error}");
    // Checksums valid, but the body is not zero: whatever it is, it is not padding.
    let mut body = vec![0; body_len];
    body[3] = 1;
    let error = corrupt_at(frame(PADDING, &body));
    assert!(matches!(&error, WalError::Corrupt { problem: RecordProblem::Invalid(_), .. }), "{error}");

    // A padding record cut short at the very end of the log is a torn tail, and drops no data.
    for preallocate in [false, true] {
        let mut segments = segments_of(&sample(preallocate));
        let last = segments.len() - 1;
        let (starts, end) = record_starts(&segments[last].1);
        let at = *starts.last().expect("records");
        assert_eq!(segments[last].1[at + 4], PADDING);
        for cut in [at + 3, at + 15, at + 16, end - 1] {
            let mut torn = segments.clone();
            torn[last].1.truncate(cut);
            if preallocate {
                torn[last].1.resize(end + 512, 0);
            }
            let report = recover(&ID, &torn, None).expect("a torn padding record is a torn tail");
            assert_eq!(report.recovered, expected_full(), "cut at {cut}");
            // With preallocation a padding record whose header arrived is whole:
            // its body is the zeroes already there.
            let whole = preallocate && cut >= at + 16;
            assert_eq!(report.torn_tail.map(|t| t.offset), (!whole).then_some(at as u64), "cut at {cut}");
        }
        // A flipped byte in its body, with only zeroes after it, is a torn tail too.
        segments[last].1[end - 1] = 1;
        let report = recover(&ID, &segments, None).expect("torn");
        assert_eq!(report.torn_tail.map(|t| t.offset), Some(at as u64));
        assert_eq!(report.recovered, expected_full());
    }
}

#[test]
fn zero_filled_preallocated_space_is_not_corruption() {
    let mut segments = segments_of(&sample(false));
    for (_, bytes) in &mut segments {
        bytes.resize(bytes.len() + 3 * 4096 + 17, 0);
    }
    let report = recover(&ID, &segments, None).expect("zeroes are preallocated space");
    assert_eq!(report.recovered, expected_full());
    assert!(report.torn_tail.is_none());
    assert!(report.segments.iter().all(|s| s.file_len > s.valid_len));
}

#[test]
fn data_after_zero_padding_is_corruption() {
    let mut segments = segments_of(&sample(false));
    let last = segments.len() - 1;
    let end = segments[last].1.len();
    segments[last].1.resize(end + 100, 0);
    segments[last].1.push(1);
    let error = recover(&ID, &segments, None).expect_err("data after padding");
    assert!(
        matches!(&error, WalError::Corrupt { offset, problem: RecordProblem::DataAfterPadding { data_at }, .. }
            if *offset == end as u64 && *data_at == end as u64 + 100),
        "{error}"
    );
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_never_torn() {
    let mut segments = segments_of(&sample(false));
    let (starts, _) = record_starts(&segments[0].1);
    let final_start = *starts.last().expect("records");
    segments[0].1.truncate(final_start + 3);
    let error = recover(&ID, &segments, None).expect_err("a non-last segment was synced");
    assert!(
        matches!(&error, WalError::Corrupt { file, offset, problem: RecordProblem::Incomplete(_), .. }
            if *file == segments[0].0 && *offset == final_start as u64),
        "{error}"
    );
}

#[test]
fn a_last_segment_whose_creation_was_cut_short_is_dropped() {
    for cut in [0, 1, 30, SEGMENT_HEADER_LEN - 1] {
        let mut segments = segments_of(&sample(false));
        let last = segments.len() - 1;
        let name = segments[last].0.clone();
        segments[last].1.truncate(cut);
        segments[last].1.resize(cut + 512, 0);
        let report = recover(&ID, &segments, None).expect("a torn creation is not corruption");
        assert_eq!(report.torn_segment.map(|t| t.segment.file_name()), Some(name));
        assert!(report.recovered.entries.len() < 20);
        // The same in a segment that is not the last is an error.
        segments.swap(0, last);
        let mut renamed = segments.clone();
        renamed[0].0 = segments[last].0.clone();
        renamed[last].0 = segments[0].0.clone();
        assert!(recover(&ID, &renamed, None).is_err());
    }
}

fn with_header(bytes: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut out = bytes.to_vec();
    edit(&mut out[..SEGMENT_HEADER_LEN]);
    let crc = crc32c::crc32c(&out[..60]);
    out[60..64].copy_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn identity_version_and_ordering_mismatches_are_clear_errors() {
    let segments = segments_of(&sample(false));
    for (identity, field) in [
        (WalIdentity { cluster_id: 1, ..ID }, IdentityField::Cluster),
        (WalIdentity { member_id: 3, ..ID }, IdentityField::Member),
        (WalIdentity { group_id: 6, ..ID }, IdentityField::Group),
    ] {
        let error = recover(&identity, &segments, None).expect_err("foreign data");
        assert!(matches!(&error, WalError::WrongIdentity { field: f, .. } if *f == field), "{error}");
        let message = error.to_string();
        assert!(message.contains(&field.to_string()) && message.contains("data directory"), "{message}");
    }

    let mut newer = segments.clone();
    newer[1].1 = with_header(&newer[1].1, |h| h[8] = 3);
    let error = recover(&ID, &newer, None).expect_err("unknown version");
    assert!(
        matches!(&error, WalError::BadSegmentHeader { problem: HeaderProblem::UnsupportedVersion(3), file } if *file == newer[1].0),
        "{error}"
    );
    assert!(error.to_string().contains("version 3"));

    // Version 1 (no block size, no padding) is refused, saying what to do.
    let mut older = segments.clone();
    older[0].1 = with_header(&older[0].1, |h| {
        h[8] = 1;
        h[56..60].fill(0);
    });
    let error = recover(&ID, &older, None).expect_err("version 1");
    assert!(matches!(&error, WalError::BadSegmentHeader { problem: HeaderProblem::UnsupportedVersion(1), .. }));
    let message = error.to_string();
    assert!(message.contains("version 1") && message.contains("this build reads version 2"), "{message}");

    let mut bad_block = segments.clone();
    bad_block[0].1 = with_header(&bad_block[0].1, |h| h[56..60].copy_from_slice(&1000u32.to_le_bytes()));
    let error = recover(&ID, &bad_block, None).expect_err("bad block size");
    assert!(matches!(&error, WalError::BadSegmentHeader { problem: HeaderProblem::BadBlockSize(1000), .. }));

    let mut renamed = segments.clone();
    let id = SegmentId::parse(&renamed[1].0).expect("name");
    renamed[1].0 = SegmentId { first_index: id.first_index + 1, ..id }.file_name();
    assert!(matches!(recover(&ID, &renamed, None), Err(WalError::NameMismatch { .. })));

    let mut missing = segments.clone();
    missing.remove(1);
    assert!(matches!(recover(&ID, &missing, None), Err(WalError::MissingSegment { .. })));

    let mut duplicate = segments.clone();
    let id = SegmentId::parse(&duplicate[1].0).expect("name");
    duplicate.push((SegmentId { first_index: 999, ..id }.file_name(), duplicate[1].1.clone()));
    assert!(matches!(recover(&ID, &duplicate, None), Err(WalError::DuplicateSegment { .. })));

    // A segment whose header and name agree but that does not continue the log.
    let mut out_of_order = segments.clone();
    let id = SegmentId::parse(&out_of_order[1].0).expect("name");
    let moved = SegmentId { first_index: id.first_index + 3, ..id };
    out_of_order[1] = (
        moved.file_name(),
        with_header(&out_of_order[1].1, |h| h[48..56].copy_from_slice(&moved.first_index.to_le_bytes())),
    );
    let error = recover(&ID, &out_of_order, None).expect_err("does not follow");
    assert!(matches!(&error, WalError::SegmentDoesNotFollow { file, .. } if *file == moved.file_name()), "{error}");

    let mut bad_name = segments.clone();
    bad_name[0].0 = "log.wal".to_string();
    assert!(matches!(recover(&ID, &bad_name, None), Err(WalError::BadSegmentName { .. })));

    // Segments may be handed over in any order.
    let mut shuffled = segments.clone();
    shuffled.reverse();
    assert_eq!(recover(&ID, &shuffled, None).expect("sorted by name").recovered, expected_full());

    // Valid segments of another identity's header, decoded.
    assert_eq!(SegmentHeader::decode(&segments[0].1).map(|h| h.identity), Ok(ID));
}

#[test]
fn a_lost_first_segment_is_missing_entries() {
    let mut segments = segments_of(&sample(false));
    segments.remove(0);
    let error = recover(&ID, &segments, None).expect_err("entries are missing");
    assert!(matches!(error, WalError::MissingEntries { from: 1, .. }), "{error}");
}

/// A WAL with a snapshot at index 8, compacted.
fn with_snapshot() -> (MemDir, Vec<u8>) {
    let mut dir = sample(false);
    let report = dir.recover(&ID).expect("clean");
    let (mut writer, _) =
        WalWriter::resume(ID, WalConfig { segment_size_max: 600, preallocate: false, ..WalConfig::default() }, &report);
    let before = dir.snapshot().map(<[u8]>::to_vec);
    assert!(before.is_none());
    write(&mut dir, &mut writer, &[snapshot(4, 1), Command::Sync { id: 2 }]);
    let older = dir.snapshot().expect("written").to_vec();
    write(&mut dir, &mut writer, &[snapshot(8, 1), Command::CompactLog { up_to: 8 }, Command::Sync { id: 3 }]);
    (dir, older)
}

#[test]
fn snapshot_file_problems_are_errors() {
    let (dir, older) = with_snapshot();
    let report = dir.recover(&ID).expect("clean");
    assert_eq!(report.recovered.entries, entries(9, 20, 1));
    assert_eq!(report.last_marker, Some((8, 1)));
    let segments = segments_of(&dir);
    assert!(SegmentId::parse(&segments[0].0).expect("name").seq > 1, "compaction deleted segments");

    let error = recover(&ID, &segments, None).expect_err("the snapshot file is gone");
    assert!(matches!(error, WalError::SnapshotMissing { index: 8, term: 1, found: None }), "{error}");
    let error = recover(&ID, &segments, Some(&older)).expect_err("the snapshot file is older");
    assert!(matches!(error, WalError::SnapshotMissing { index: 8, found: Some((4, 1)), .. }), "{error}");

    let mut damaged = dir.snapshot().expect("snapshot").to_vec();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 1;
    let error = recover(&ID, &segments, Some(&damaged)).expect_err("damaged snapshot");
    assert!(matches!(error, WalError::BadSnapshot(SnapshotProblem::BadChecksum { .. })), "{error}");

    let (meta, data) = report.recovered.snapshot.clone().expect("snapshot");
    let foreign = encode_snapshot_file(77, &meta, &data);
    let error = recover(&ID, &segments, Some(&foreign)).expect_err("another cluster's snapshot");
    assert!(matches!(error, WalError::BadSnapshot(SnapshotProblem::WrongCluster { found: 77, .. })), "{error}");
}

#[test]
fn a_snapshot_file_newer_than_the_wal_drops_an_obsolete_log() {
    // The node stopped after renaming the new snapshot file into place but before
    // the marker reached the WAL. The log holds index 3 with term 1; the snapshot
    // says term 2, so everything after it is obsolete.
    let mut dir = MemDir::new(false);
    let mut writer = WalWriter::new(ID, WalConfig::default());
    write(&mut dir, &mut writer, &[Command::AppendLog(entries(1, 5, 1)), Command::Sync { id: 1 }]);
    let Command::SaveSnapshot { meta, data } = snapshot(3, 2) else { unreachable!() };
    let mut only_file = MemDir::new(false);
    for action in writer.clone().handle(&Command::SaveSnapshot { meta: meta.clone(), data: data.clone() }) {
        if matches!(action, WalAction::WriteSnapshot { .. }) {
            only_file.apply(&action);
        }
    }
    let snapshot_file = only_file.snapshot().expect("written").to_vec();
    let report = recover(&ID, &dir.segment_files(), Some(&snapshot_file)).expect("recovers");
    let ahead = report.snapshot_ahead.expect("reported");
    assert!(ahead.discard_after);
    assert_eq!((ahead.obsolete_entries_dropped, report.covered_entries_dropped), (2, 3));
    assert!(report.recovered.entries.is_empty());
    assert_eq!(report.next_index, 4);
    // The resumed writer records the decision; the next recovery agrees without it.
    let mut dir = dir.clone();
    dir.apply(&WalAction::WriteSnapshot { bytes: snapshot_file.clone() });
    let (mut writer, actions) = WalWriter::resume(ID, WalConfig::default(), &report);
    for action in &actions {
        dir.apply(action);
    }
    write(&mut dir, &mut writer, &[Command::AppendLog(entries(4, 6, 2)), Command::Sync { id: 2 }]);
    let report = dir.recover(&ID).expect("recovers");
    assert!(report.snapshot_ahead.is_none());
    assert_eq!(report.recovered.entries, entries(4, 6, 2));
}

#[test]
fn entries_appended_after_installing_a_conflicting_snapshot_survive() {
    // Core installs a snapshot whose term at its index differs from the log's:
    // SaveSnapshot, TruncateLog { from: index + 1 }, then new entries. The old entry
    // at the snapshot's index must not make recovery drop the new ones.
    let mut dir = MemDir::new(false);
    let mut writer = WalWriter::new(ID, WalConfig::default());
    write(
        &mut dir,
        &mut writer,
        &[
            Command::AppendLog(entries(1, 5, 1)),
            snapshot(3, 2),
            Command::TruncateLog { from: 4 },
            Command::AppendLog(entries(4, 6, 2)),
            Command::Sync { id: 1 },
        ],
    );
    let report = dir.recover(&ID).expect("recovers");
    assert_eq!(report.recovered.entries, entries(4, 6, 2));
    assert_eq!(report.recovered.snapshot.map(|(m, _)| (m.index, m.term)), Some((3, 2)));
}

fn segment_names(count: usize) -> Vec<String> {
    (1..=count as u64).map(|seq| SegmentId { seq, first_index: 1 }.file_name()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn hostile_bytes_never_panic(
        files in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
        snapshot in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        valid_header in any::<bool>(),
    ) {
        let names = segment_names(files.len());
        let segments: Vec<(String, Vec<u8>)> = names
            .into_iter()
            .zip(files)
            .enumerate()
            .map(|(i, (name, mut bytes))| {
                if valid_header {
                    let id = SegmentId { seq: i as u64 + 1, first_index: 1 };
                    let mut framed = SegmentHeader { identity: ID, id, block_size: 4096 }.encode().to_vec();
                    framed.append(&mut bytes);
                    bytes = framed;
                }
                (name, bytes)
            })
            .collect();
        let _ = recover(&ID, &segments, snapshot.as_deref());
        let _ = fsck(&ID, &segments, snapshot.as_deref(), FsckMode::Repair).to_string();
    }

    #[test]
    fn edited_real_wals_never_panic_and_never_recover_edited_records(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let (dir, _) = with_snapshot();
        let mut segments = segments_of(&dir);
        for (file, position, value) in &edits {
            let file = file.index(segments.len());
            let bytes = &mut segments[file].1;
            let position = position.index(bytes.len());
            bytes[position] = *value;
        }
        if let Some(cut) = cut {
            let last = segments.len() - 1;
            let len = cut.index(segments[last].1.len() + 1);
            segments[last].1.truncate(len);
        }
        let clean = dir.recover(&ID).expect("clean").recovered;
        match recover(&ID, &segments, dir.snapshot()) {
            // Whatever survives is a prefix of the real log.
            Ok(report) => {
                prop_assert_eq!(&report.recovered.snapshot, &clean.snapshot);
                prop_assert!(clean.entries.starts_with(&report.recovered.entries));
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
        let _ = fsck(&ID, &segments, dir.snapshot(), FsckMode::Repair).to_string();
    }
}

#[test]
fn extreme_names_and_indexes_never_panic() {
    let header = |seq: u64, first_index: u64| {
        let id = SegmentId { seq, first_index };
        (id.file_name(), SegmentHeader { identity: ID, id, block_size: 4096 }.encode().to_vec())
    };
    let cases = [
        vec![header(u64::MAX - 1, 1), header(u64::MAX, u64::MAX)],
        vec![header(u64::MAX, 1)],
        vec![header(0, 0)],
        vec![header(3, u64::MAX), header(4, u64::MAX)],
    ];
    for segments in &cases {
        let _ = recover(&ID, segments, None);
        let _ = fsck(&ID, segments, None, FsckMode::Repair).to_string();
    }
    let data = vec![1, 2];
    let meta = SnapshotMeta {
        group: ID.group_id,
        index: u64::MAX,
        term: u64::MAX,
        membership: Membership::with_voters([1]),
        size: 2,
        checksum: crc32c::crc32c(&data),
    };
    let file = encode_snapshot_file(ID.cluster_id, &meta, &data);
    assert!(matches!(recover(&ID, &cases[1], Some(&file)), Err(WalError::BadSnapshot(_))));
    let _ = fsck(&ID, &cases[1], Some(&file), FsckMode::Repair).to_string();
}
