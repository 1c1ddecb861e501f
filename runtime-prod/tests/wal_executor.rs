//! The WAL executor on real files: what is written through `WalWriter` + `Wal`
//! recovers to what core's in-memory reference directory recovers to, byte for
//! byte; a cut tail is dropped and reported; a flipped byte stops the member with
//! the file and offset; concurrent syncs share fsyncs, and no block is written
//! twice; a block size the device cannot align to is refused.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};
use lockstep_core::wal::{MemDir, WalConfig, WalError, WalIdentity, WalWriter};
use lockstep_core::{Command, Entry, HardState, Membership, Payload, SnapshotMeta, Term};
use lockstep_runtime::{Wal, WalOpenError};

const ID: WalIdentity = WalIdentity { cluster_id: 0xC0FFEE, member_id: 2, group_id: 5 };
const CONFIG: WalConfig = WalConfig { segment_size_max: 8 << 10, preallocate: true, block_size: 4096 };

/// Runs `future` on a fresh glommio executor on this thread.
fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("a glommio executor starts")
        .run(future)
}

fn entries(from: u64, to: u64, term: Term) -> Vec<Entry> {
    (from..=to)
        .map(|index| Entry { term, index, payload: Payload::Command(vec![index as u8; 100 + (index as usize % 300)]) })
        .collect()
}

fn snapshot(index: u64, term: Term) -> Command {
    let data = vec![index as u8; 5000];
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

/// A history over several segments: hard states, appends, a conflicting
/// append, a truncation, a snapshot with compaction, and syncs.
fn history() -> Vec<Command> {
    let mut commands = vec![Command::SaveHardState(HardState { term: 1, vote: Some(1) })];
    let mut sync = 0;
    for batch in 0..12u64 {
        commands.push(Command::AppendLog(entries(batch * 5 + 1, batch * 5 + 5, 1)));
        sync += 1;
        commands.push(Command::Sync { id: sync });
    }
    commands.push(Command::SaveHardState(HardState { term: 2, vote: Some(3) }));
    commands.push(Command::AppendLog(entries(58, 62, 2)));
    commands.push(Command::TruncateLog { from: 61 });
    commands.push(snapshot(40, 1));
    commands.push(Command::CompactLog { up_to: 40 });
    commands.push(Command::AppendLog(entries(61, 70, 2)));
    commands.push(Command::Sync { id: sync + 1 });
    commands
}

/// What core's reference directory holds after the same commands.
fn reference(commands: &[Command]) -> MemDir {
    let mut dir = MemDir::new(true);
    let mut writer = WalWriter::new(ID, CONFIG);
    for command in commands {
        for action in writer.handle(command) {
            dir.apply(&action);
        }
    }
    dir
}

/// Writes `commands` through a fresh WAL in `dir` and closes it.
fn write(dir: &Path, commands: &[Command]) {
    run(async {
        let (wal, report) = Wal::open(dir, ID, CONFIG).await.expect("opens");
        assert!(report.is_blank());
        for command in commands {
            wal.submit(command).expect("accepted");
            if let Command::Sync { id } = command {
                assert!(wal.wait_persisted(*id).await.expect("syncs") >= *id);
            }
        }
        wal.close().await.expect("closes");
    });
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("lists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    paths.sort();
    paths
}

/// Where each record of a segment starts, and its kind, up to the zeroes after the records.
fn records(bytes: &[u8]) -> Vec<(usize, u8)> {
    let mut out = Vec::new();
    let mut at = 64;
    while at + 16 <= bytes.len() && bytes[at..at + 16].iter().any(|b| *b != 0) {
        out.push((at, bytes[at + 4]));
        at += 16 + u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
    }
    out
}

fn trim_zeros(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1)]
}

#[test]
fn what_is_written_recovers_and_matches_the_reference_byte_for_byte() {
    let temp = tempfile::tempdir().expect("temp dir");
    let commands = history();
    write(temp.path(), &commands);
    let reference = reference(&commands);
    let expected = reference.recover(&ID).expect("the reference recovers");

    // The files hold exactly the reference's bytes (up to zero padding).
    let files = segment_paths(temp.path());
    let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let reference_files = reference.segment_files();
    assert_eq!(names, reference_files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
    assert!(
        names.len() >= 2 && !names[0].starts_with("0000000000000001-"),
        "several segments, some deleted: {names:?}"
    );
    for (path, (_, bytes)) in files.iter().zip(&reference_files) {
        let on_disk = std::fs::read(path).expect("reads");
        assert_eq!(on_disk.len() as u64, CONFIG.segment_size_max, "{} is preallocated", path.display());
        assert_eq!(trim_zeros(&on_disk), trim_zeros(bytes), "{}", path.display());
    }
    let snapshot = std::fs::read(temp.path().join("snapshot.snap")).expect("snapshot file");
    assert_eq!(Some(snapshot.as_slice()), reference.snapshot());

    // Recovery on the real files gives the same state; the WAL goes on after it.
    let recovered = run(async {
        let (wal, report) = Wal::open(temp.path(), ID, CONFIG).await.expect("recovers");
        assert!(report.torn_tail.is_none());
        assert_eq!(report.recovered, expected.recovered);
        assert_eq!(report.next_index, expected.next_index);
        wal.submit(&Command::AppendLog(entries(71, 75, 2))).expect("accepted");
        wal.submit(&Command::Sync { id: 1 }).expect("accepted");
        wal.wait_persisted(1).await.expect("syncs");
        wal.close().await.expect("closes");
        let (wal, report) = Wal::open(temp.path(), ID, CONFIG).await.expect("recovers again");
        wal.close().await.expect("closes");
        report
    });
    let last = recovered.recovered.entries.last().expect("entries");
    assert_eq!((last.index, last.term), (75, 2));
    assert_eq!(recovered.recovered.entries.first().map(|e| e.index), Some(41));
}

#[test]
fn a_cut_tail_is_dropped_and_reported_and_the_wal_continues() {
    let temp = tempfile::tempdir().expect("temp dir");
    let commands = history();
    write(temp.path(), &commands);
    let full = reference(&commands).recover(&ID).expect("the reference recovers");
    let last = *full.segments.last().expect("segments");
    let path = temp.path().join(last.id.file_name());

    // A crash in the middle of the last entry and the padding after it (one write):
    // the entry's last 7 bytes never arrived.
    let placed = records(&std::fs::read(&path).expect("reads"));
    let (padding_at, kind) = *placed.last().expect("records");
    assert_eq!(kind, 5, "a synced segment ends with padding");
    assert_eq!(last.valid_len % u64::from(CONFIG.block_size), 0);
    let cut = padding_at as u64 - 7;
    std::fs::OpenOptions::new().write(true).open(&path).expect("opens").set_len(cut).expect("cuts");
    let report = run(async {
        let (wal, report) = Wal::open(temp.path(), ID, CONFIG).await.expect("a torn tail is not corruption");
        // The log continues where the dropped record was.
        let next = report.next_index;
        wal.submit(&Command::AppendLog(entries(next, next + 2, 2))).expect("accepted");
        wal.submit(&Command::Sync { id: 1 }).expect("accepted");
        wal.wait_persisted(1).await.expect("syncs");
        wal.close().await.expect("closes");
        report
    });
    let torn = report.torn_tail.expect("the torn tail is reported");
    assert_eq!(torn.segment, last.id);
    assert!(torn.offset < cut);
    assert!(report.to_string().contains("dropped an incomplete record"), "{report}");
    let mut expected = full.recovered.entries.clone();
    let dropped = expected.pop().expect("an entry was dropped");
    assert_eq!(report.recovered.entries, expected);
    assert_eq!(report.next_index, dropped.index);

    let again = run(async {
        let (wal, report) = Wal::open(temp.path(), ID, CONFIG).await.expect("clean after the repair");
        wal.close().await.expect("closes");
        report
    });
    assert!(again.torn_tail.is_none());
    let tail: Vec<u64> = again.recovered.entries.iter().rev().take(3).map(|e| e.index).collect();
    assert_eq!(tail, vec![dropped.index + 2, dropped.index + 1, dropped.index]);
}

#[test]
fn a_flipped_byte_mid_segment_is_refused_with_file_and_offset() {
    let temp = tempfile::tempdir().expect("temp dir");
    let commands = history();
    write(temp.path(), &commands);
    let full = reference(&commands).recover(&ID).expect("the reference recovers");
    let first = full.segments[0];
    let path = temp.path().join(first.id.file_name());
    let mut bytes = std::fs::read(&path).expect("reads");
    let at = (first.valid_len / 2) as usize;
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).expect("writes");

    let error = run(async { Wal::open(temp.path(), ID, CONFIG).await.expect_err("corruption is refused") });
    let WalOpenError::Recovery { dir, error: WalError::Corrupt { file, offset, .. } } = &error else {
        panic!("not a corruption error: {error}");
    };
    assert_eq!(dir, temp.path());
    assert_eq!(file, &first.id.file_name());
    assert!(*offset <= at as u64 && at as u64 - offset < 1024, "the damaged record starts at {offset}, flip at {at}");
    let message = error.to_string();
    assert!(message.contains(&first.id.file_name()) && message.contains(&offset.to_string()), "{message}");
    assert!(message.contains("lockstep fsck"), "says what to do: {message}");
}

#[test]
fn concurrent_syncs_share_fsyncs_and_report_the_highest_id() {
    let temp = tempfile::tempdir().expect("temp dir");
    let proposers = 32u64;
    let rounds = 20u64;
    let (stats, recovered) = run(async {
        let config = WalConfig { segment_size_max: 1 << 20, preallocate: true, ..WalConfig::default() };
        let (wal, _) = Wal::open(temp.path(), ID, config).await.expect("opens");
        let next = Rc::new(std::cell::Cell::new((1u64, 1u64)));
        let mut tasks = Vec::new();
        for _ in 0..proposers {
            let (wal, next) = (wal.clone(), next.clone());
            tasks.push(glommio::spawn_local(async move {
                for _ in 0..rounds {
                    let (index, sync) = next.get();
                    next.set((index + 1, sync + 1));
                    wal.submit(&Command::AppendLog(entries(index, index, 1))).expect("accepted");
                    wal.submit(&Command::Sync { id: sync }).expect("accepted");
                    let persisted = wal.wait_persisted(sync).await.expect("syncs");
                    assert!(persisted >= sync);
                }
            }));
        }
        for task in tasks {
            task.await;
        }
        let stats = wal.stats();
        wal.close().await.expect("closes");
        let (wal, report) = Wal::open(temp.path(), ID, config).await.expect("recovers");
        wal.close().await.expect("closes");
        (stats, report)
    });
    assert_eq!(stats.syncs_completed, proposers * rounds);
    // Every round ends with a sync, which the writer padded to a block boundary:
    // the next round starts on a fresh block, and no block is written twice.
    let segment = recovered.segments[0];
    assert_eq!(recovered.segments.len(), 1);
    assert_eq!(segment.valid_len % u64::from(WalConfig::default().block_size), 0);
    assert_eq!(stats.bytes_written, segment.valid_len, "every block is written once");
    assert!(
        stats.group_commits < stats.syncs_completed / 4,
        "group commit shares fsyncs: {} rounds for {} syncs",
        stats.group_commits,
        stats.syncs_completed
    );
    assert_eq!(recovered.recovered.entries.len() as u64, proposers * rounds);
}

#[test]
fn a_block_size_the_device_cannot_align_to_is_refused() {
    let temp = tempfile::tempdir().expect("temp dir");
    // 64 bytes is a valid block size for the format, but no O_DIRECT device aligns to it.
    let config = WalConfig { block_size: 64, ..CONFIG };
    let failure = run(async {
        let (wal, _) = Wal::open(temp.path(), ID, config).await.expect("opens an empty directory");
        wal.submit(&Command::SaveHardState(HardState { term: 1, vote: Some(1) })).expect("accepted");
        wal.submit(&Command::Sync { id: 1 }).expect("accepted");
        let failure = wal.wait_persisted(1).await.expect_err("the segment is refused");
        assert!(wal.close().await.is_err());
        failure
    });
    assert!(failure.to_string().contains("O_DIRECT alignment"), "{failure}");
}

/// Regression (found by running docs/security.md as written): a WAL in a
/// relative directory (`lockstep dev --data-dir dev`) failed to open with
/// "Bad file descriptor", because glommio opens a relative directory against
/// no directory.
#[test]
fn a_wal_in_a_relative_directory_opens_and_recovers() {
    let temp = tempfile::tempdir_in(".").expect("temp dir under the current directory");
    let name = temp.path().file_name().expect("a name").to_owned();
    let relative = Path::new(&name).join("wal");
    assert!(relative.is_relative());
    write(&relative, &history());
    let report = run(async {
        let (wal, report) = Wal::open(&relative, ID, CONFIG).await.expect("reopens");
        wal.close().await.expect("closes");
        report
    });
    assert!(!report.is_blank());
}
