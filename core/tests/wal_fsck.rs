//! fsck: every problem reported with file and offset, repairs limited to torn
//! tails and data a snapshot covers, and what recovery says after the repairs.

use lockstep_core::wal::{
    fsck, FsckMode, MemDir, ProblemKind, RepairAction, SegmentId, WalConfig, WalIdentity, WalWriter,
    SEGMENT_HEADER_LEN, SNAPSHOT_FILE_NAME,
};
use lockstep_core::{Command, Entry, HardState, Membership, Payload, SnapshotMeta};

const ID: WalIdentity = WalIdentity { cluster_id: 0xC0FFEE, member_id: 2, group_id: 5 };

fn entries(from: u64, to: u64) -> Vec<Entry> {
    (from..=to).map(|index| Entry { term: 1, index, payload: Payload::Command(vec![index as u8; 10]) }).collect()
}

fn snapshot(index: u64) -> Command {
    let data = vec![index as u8; 7];
    let meta = SnapshotMeta {
        group: ID.group_id,
        index,
        term: 1,
        membership: Membership::with_voters([1, 2, 3]),
        size: data.len() as u64,
        checksum: crc32c::crc32c(&data),
    };
    Command::SaveSnapshot { meta, data }
}

/// Segments of a WAL with 20 entries; with `snapshot_at`, a snapshot there (no compaction).
fn sample(snapshot_at: Option<u64>) -> MemDir {
    let mut dir = MemDir::new(false);
    let mut writer =
        WalWriter::new(ID, WalConfig { segment_size_max: 600, preallocate: false, ..WalConfig::default() });
    let mut commands = vec![Command::SaveHardState(HardState { term: 1, vote: Some(1) })];
    for batch in 0..5 {
        commands.push(Command::AppendLog(entries(batch * 4 + 1, batch * 4 + 4)));
    }
    commands.extend(snapshot_at.map(snapshot));
    commands.push(Command::Sync { id: 1 });
    for command in &commands {
        for action in writer.handle(command) {
            dir.apply(&action);
        }
    }
    dir
}

fn files(dir: &MemDir) -> Vec<(String, Vec<u8>)> {
    dir.segment_files().into_iter().map(|(n, b)| (n, b.to_vec())).collect()
}

fn second_record(bytes: &[u8]) -> usize {
    let len = u32::from_le_bytes(bytes[SEGMENT_HEADER_LEN..SEGMENT_HEADER_LEN + 4].try_into().expect("4 bytes"));
    SEGMENT_HEADER_LEN + 16 + len as usize
}

#[test]
fn a_clean_wal_is_clean() {
    let dir = sample(Some(6));
    let report = fsck(&ID, &dir.segment_files(), dir.snapshot(), FsckMode::Repair);
    assert!(report.is_clean(), "{report}");
    assert!(report.repairs.is_empty() && report.after_repair.is_none());
    assert_eq!(report.files[0].name, SNAPSHOT_FILE_NAME);
    assert_eq!(report.files.len(), 1 + dir.segment_files().len());
    let records: u64 = report.files.iter().skip(1).map(|f| f.records).sum();
    assert!(records >= 22, "hard state, 20 entries, marker and checkpoints: {records}");
    for file in &report.files {
        assert_eq!(file.valid_bytes, file.bytes, "{}", file.name);
    }
}

#[test]
fn a_torn_tail_is_reported_and_repaired_by_truncation() {
    let dir = sample(None);
    let mut segments = files(&dir);
    let last = segments.len() - 1;
    let full = segments[last].1.len();
    segments[last].1.truncate(full - 3);
    let check = fsck(&ID, &segments, None, FsckMode::Check);
    assert!(check.recovery.is_ok() && check.repairs.is_empty());
    let problem = &check.files[last].problems[0];
    assert_eq!(problem.kind, ProblemKind::Torn);
    let report = fsck(&ID, &segments, None, FsckMode::Repair);
    let id = SegmentId::parse(&segments[last].0).expect("name");
    assert!(
        matches!(&report.repairs[..], [RepairAction::TruncateSegment { segment, len, .. }] if *segment == id && *len == problem.offset),
        "{report}"
    );
    assert_eq!(report.after_repair, Some(Ok(())));
    assert!(report.to_string().contains("truncate"));
}

#[test]
fn every_corruption_is_reported_with_its_offset() {
    let dir = sample(None);
    let mut segments = files(&dir);
    let last = segments.len() - 1;
    // Damage the first and the second record of the last segment and a record of the first one.
    let first = SEGMENT_HEADER_LEN;
    let second = second_record(&segments[last].1);
    segments[last].1[first + 20] ^= 1;
    segments[last].1[second + 3] ^= 1;
    let other = second_record(&segments[0].1);
    segments[0].1[other + 30] ^= 0xff;
    let report = fsck(&ID, &segments, None, FsckMode::Repair);
    let error = report.recovery.as_ref().expect_err("recovery refuses");
    assert_eq!(error.file(), Some(segments[0].0.as_str()));
    let offsets: Vec<u64> = report.files[last].problems.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, vec![first as u64, second as u64], "{report}");
    assert!(report.files[last].problems.iter().all(|p| p.kind == ProblemKind::Corruption));
    assert_eq!(report.files[0].problems.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![other as u64]);
    assert!(report.files[last].records > 2, "fsck reads on past damage");
    assert!(report.repairs.is_empty(), "corruption that no snapshot covers is not repaired: {report}");
    let text = report.to_string();
    assert!(text.contains("CORRUPT") && text.contains(&format!("offset {second}")), "{text}");
}

#[test]
fn corruption_that_the_snapshot_covers_is_repaired_by_deleting_segments() {
    let dir = sample(Some(18));
    let mut segments = files(&dir);
    assert!(segments.len() >= 3);
    let other = second_record(&segments[0].1);
    segments[0].1[other + 30] ^= 0xff;
    let report = fsck(&ID, &segments, dir.snapshot(), FsckMode::Repair);
    assert!(report.recovery.is_err());
    let deleted: Vec<String> = report
        .repairs
        .iter()
        .map(|r| match r {
            RepairAction::DeleteSegment { segment, .. } => segment.file_name(),
            other => panic!("unexpected repair {other:?}"),
        })
        .collect();
    assert_eq!(deleted, vec![segments[0].0.clone()], "{report}");
    assert_eq!(report.after_repair, Some(Ok(())), "{report}");
}

#[test]
fn a_torn_segment_creation_is_repaired_by_deleting_it() {
    let dir = sample(None);
    let mut segments = files(&dir);
    let last = segments.len() - 1;
    segments[last].1.truncate(20);
    let report = fsck(&ID, &segments, None, FsckMode::Repair);
    assert!(report.recovery.as_ref().is_ok_and(|r| r.torn_segment.is_some()));
    assert!(matches!(&report.repairs[..], [RepairAction::DeleteSegment { .. }]), "{report}");
    assert_eq!(report.after_repair, Some(Ok(())));
}

#[test]
fn a_damaged_snapshot_file_is_reported() {
    let dir = sample(Some(6));
    let mut bytes = dir.snapshot().expect("snapshot").to_vec();
    bytes[40] ^= 1;
    let report = fsck(&ID, &dir.segment_files(), Some(&bytes), FsckMode::Check);
    assert_eq!(report.files[0].problems.len(), 1);
    assert!(report.recovery.is_err());
    assert!(!report.is_clean());
}
