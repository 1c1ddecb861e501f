//! `lockstep fsck` against real data directories: written on disk by core's
//! `WalWriter` through the library's `DataDir::apply` executor, then damaged the
//! way disks and crashes damage them, then checked by running the built binary.

use std::path::{Path, PathBuf};
use std::process::Output;

use lockstep::data_dir::{LockMode, LOCK_FILE_NAME, WAL_DIR_NAME};
use lockstep::identity::IDENTITY_FILE_NAME;
use lockstep::DataDir;
use lockstep_core::wal::{recover, SegmentId, WalAction, WalConfig, WalIdentity, WalWriter, SNAPSHOT_FILE_NAME};
use lockstep_core::{Command, Entry, HardState, Membership, Payload, SnapshotMeta};

const ID: WalIdentity = WalIdentity { cluster_id: 0xC1_u64 << 32 | 7, member_id: 2, group_id: 1 };

fn lockstep(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lockstep")).args(args).output().expect("run lockstep")
}

fn fsck(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let path = dir.to_str().expect("utf-8 temp path");
    let mut args = vec!["fsck", path];
    args.extend_from_slice(extra);
    let output = lockstep(&args);
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8(output.stderr).expect("utf-8 stderr");
    (output.status.code().expect("exit code, not a signal"), stdout, stderr)
}

fn entry(index: u64) -> Entry {
    Entry { index, term: 1, payload: Payload::Command(format!("put key-{index} value-{index}").into_bytes()) }
}

/// Where an entry's record landed.
#[derive(Debug, Clone, Copy)]
struct Placed {
    segment: SegmentId,
    offset: u64,
    len: u64,
}

/// A member's WAL on disk, written through core's writer.
struct Member {
    dir: DataDir,
    writer: WalWriter,
    placed: Vec<Placed>,
    next_sync: u64,
}

impl Member {
    fn new(root: &Path, config: WalConfig) -> Member {
        let dir = DataDir::create(root, ID).expect("create data dir");
        let mut member = Member { dir, writer: WalWriter::new(ID, config), placed: Vec::new(), next_sync: 1 };
        member.run(&Command::SaveHardState(HardState { term: 1, vote: Some(ID.member_id) }));
        member
    }

    fn run(&mut self, command: &Command) -> Vec<WalAction> {
        let actions = self.writer.handle(command);
        for action in &actions {
            self.dir.apply(action).expect("carry out a WAL action");
        }
        actions
    }

    /// Appends one entry and remembers where its record went.
    fn append(&mut self, index: u64) {
        let actions = self.run(&Command::AppendLog(vec![entry(index)]));
        let Some(WalAction::Append { segment, offset, bytes }) =
            actions.iter().rev().find(|a| matches!(a, WalAction::Append { .. }))
        else {
            panic!("appending entry {index} wrote no record: {actions:?}");
        };
        let len = u64::try_from(bytes.len()).expect("fits");
        self.placed.push(Placed { segment: *segment, offset: *offset, len });
    }

    fn sync(&mut self) {
        let id = self.next_sync;
        self.next_sync += 1;
        let actions = self.run(&Command::Sync { id });
        assert!(actions.iter().any(|a| matches!(a, WalAction::Sync { id: Some(s), .. } if *s == id)));
    }

    /// Appends entries `from..=to`, each acknowledged (synced) before the next.
    fn append_acked(&mut self, from: u64, to: u64) {
        for index in from..=to {
            self.append(index);
            self.sync();
        }
    }

    fn segment_path(&self, segment: SegmentId) -> PathBuf {
        self.dir.wal_dir().join(segment.file_name())
    }
}

/// What a member restarting on `root` would recover: its log entries.
fn recovered_entries(root: &Path) -> Vec<Entry> {
    let dir = DataDir::open(root).expect("open");
    let listing = dir.list().expect("list");
    let segments: Vec<(String, Vec<u8>)> = listing
        .segments
        .iter()
        .map(|(name, _)| (name.clone(), dir.read_wal_file(name, &mut |_| {}).expect("read")))
        .collect();
    let snapshot = listing.snapshot.map(|_| dir.read_wal_file(SNAPSHOT_FILE_NAME, &mut |_| {}).expect("read"));
    let report = recover(&ID, &segments, snapshot.as_deref()).expect("recovers");
    report.recovered.entries.into_iter().collect()
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    let at = usize::try_from(offset).expect("fits");
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).expect("write");
}

fn snapshot_of_all(dir: &DataDir) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.root())
        .expect("ls")
        .chain(std::fs::read_dir(dir.wal_dir()).expect("ls wal"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read")))
        .collect();
    files.sort();
    files
}

const SMALL_SEGMENTS: WalConfig = WalConfig { segment_size_max: 1024, preallocate: false, block_size: 64 };

#[test]
fn a_clean_directory_exits_0_and_a_check_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut member = Member::new(tmp.path(), SMALL_SEGMENTS);
    member.append_acked(1, 40);
    assert!(member.writer.segments().len() >= 3, "the test wants several segments");
    let before = snapshot_of_all(&member.dir);
    let (code, stdout, stderr) = fsck(tmp.path(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("result: clean"), "{stdout}");
    assert!(stdout.contains("log entries 1 to 40"), "{stdout}");
    assert!(stdout.contains(&format!("member {}", ID.member_id)), "{stdout}");
    assert_eq!(snapshot_of_all(&member.dir), before, "a check changes nothing");
    assert!(!tmp.path().join(LOCK_FILE_NAME).exists(), "a check creates no lock file");
}

#[test]
fn a_flipped_byte_mid_segment_exits_1_naming_file_and_offset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut member = Member::new(tmp.path(), SMALL_SEGMENTS);
    member.append_acked(1, 40);
    let first = member.writer.segments()[0];
    let in_first: Vec<Placed> = member.placed.iter().copied().filter(|p| p.segment == first).collect();
    let victim = in_first[in_first.len() / 2];
    flip_byte(&member.segment_path(victim.segment), victim.offset + victim.len / 2);

    let (code, stdout, stderr) = fsck(tmp.path(), &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let file = format!("{WAL_DIR_NAME}/{}", victim.segment.file_name());
    let line = stdout
        .lines()
        .find(|l| l.contains(&format!("corrupt at byte offset {}", victim.offset)))
        .unwrap_or_else(|| panic!("no problem line at offset {}: {stdout}", victim.offset));
    assert!(line.contains("checksum"), "{line}");
    assert!(stdout.contains(&format!("{file} ")), "the report names the file: {stdout}");
    assert!(stdout.contains("REFUSE TO START"), "{stdout}");
    assert!(stdout.contains("what to do:"), "{stdout}");
    // No snapshot covers it: there is no safe repair, and --repair changes nothing.
    let before = snapshot_of_all(&member.dir);
    let (code, stdout, _) = fsck(tmp.path(), &["--repair"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("No safe automatic repair"), "{stdout}");
    let after: Vec<_> =
        snapshot_of_all(&member.dir).into_iter().filter(|(p, _)| !p.ends_with(LOCK_FILE_NAME)).collect();
    assert_eq!(after, before, "an unrepairable directory is left as it is");
}

/// A crash in the middle of writing an unacknowledged entry leaves a torn tail;
/// `--repair` cuts it, and every acknowledged entry survives.
#[test]
fn a_torn_tail_is_reported_repaired_and_loses_no_acknowledged_entry() {
    for preallocate in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut member = Member::new(tmp.path(), WalConfig { segment_size_max: 4096, preallocate, block_size: 512 });
        member.append_acked(1, 25);
        member.append(26); // Written, never synced: never acknowledged.
        let torn = *member.placed.last().expect("placed");
        let path = member.segment_path(torn.segment);
        let cut_at = torn.offset + torn.len / 2;
        if preallocate {
            // The write reached the disk only in part; the preallocated space stays zero.
            let mut bytes = std::fs::read(&path).expect("read");
            let (from, to) =
                (usize::try_from(cut_at).expect("fits"), usize::try_from(torn.offset + torn.len).expect("fits"));
            bytes[from..to].fill(0);
            std::fs::write(&path, bytes).expect("write");
        } else {
            let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
            file.set_len(cut_at).expect("truncate the tail");
        }

        let (code, stdout, stderr) = fsck(tmp.path(), &[]);
        assert_eq!(code, 1, "preallocate {preallocate}: {stdout}{stderr}");
        assert!(stdout.contains(&format!("torn at byte offset {}", torn.offset)), "{stdout}");
        assert!(stdout.contains("TORN TAIL"), "{stdout}");
        assert!(stdout.contains("would:"), "a check says what --repair would do: {stdout}");

        let (code, stdout, stderr) = fsck(tmp.path(), &["--repair"]);
        assert_eq!(code, 0, "preallocate {preallocate}: {stdout}{stderr}");
        let file = format!("{WAL_DIR_NAME}/{}", torn.segment.file_name());
        assert!(stdout.contains(&format!("truncated {file} from ")), "{stdout}");
        assert!(stdout.contains(&format!(" to {} bytes", torn.offset)), "{stdout}");
        assert!(stdout.contains("re-checked from disk after the repairs: clean"), "{stdout}");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), torn.offset);

        let (code, stdout, _) = fsck(tmp.path(), &[]);
        assert_eq!(code, 0, "{stdout}");
        let expected: Vec<Entry> = (1..=25).map(entry).collect();
        assert_eq!(recovered_entries(tmp.path()), expected, "every acknowledged entry survives");
    }
}

/// The writer resumes on a repaired directory and the log goes on.
#[test]
fn a_repaired_directory_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut member = Member::new(tmp.path(), SMALL_SEGMENTS);
    member.append_acked(1, 10);
    member.append(11);
    let torn = *member.placed.last().expect("placed");
    let file = std::fs::OpenOptions::new().write(true).open(member.segment_path(torn.segment)).expect("open");
    file.set_len(torn.offset + 3).expect("truncate");
    assert_eq!(fsck(tmp.path(), &["--repair"]).0, 0);

    let dir = DataDir::open(tmp.path()).expect("open");
    let listing = dir.list().expect("list");
    let segments: Vec<(String, Vec<u8>)> =
        listing.segments.iter().map(|(n, _)| (n.clone(), dir.read_wal_file(n, &mut |_| {}).expect("read"))).collect();
    let report = recover(&ID, &segments, None).expect("recovers");
    assert!(report.torn_tail.is_none(), "the repair removed the torn tail");
    let (writer, actions) = WalWriter::resume(ID, SMALL_SEGMENTS, &report);
    for action in &actions {
        dir.apply(action).expect("apply");
    }
    let mut member = Member { dir, writer, placed: Vec::new(), next_sync: 100 };
    member.append_acked(11, 15);
    assert_eq!(fsck(tmp.path(), &[]).0, 0);
    assert_eq!(recovered_entries(tmp.path()), (1..=15).map(entry).collect::<Vec<_>>());
}

/// Damage in a segment that the snapshot covers is repaired by deleting the segment.
#[test]
fn a_damaged_segment_the_snapshot_covers_is_deleted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut member = Member::new(tmp.path(), SMALL_SEGMENTS);
    member.append_acked(1, 40);
    let data = b"state machine at 30".to_vec();
    let meta = SnapshotMeta {
        group: ID.group_id,
        index: 30,
        term: 1,
        membership: Membership::with_voters([ID.member_id]),
        size: u64::try_from(data.len()).expect("fits"),
        checksum: crc32c::crc32c(&data),
    };
    member.run(&Command::SaveSnapshot { meta, data });
    member.sync();
    // No CompactLog: the old segments stay, as after a crash before compaction.
    let first = member.writer.segments()[0];
    let victim = member.placed.iter().copied().find(|p| p.segment == first).expect("a record in segment 1");
    flip_byte(&member.segment_path(first), victim.offset + victim.len - 1);

    let (code, stdout, _) = fsck(tmp.path(), &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("the snapshot covers every live entry in this segment"), "{stdout}");
    let (code, stdout, _) = fsck(tmp.path(), &["--repair"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains(&format!("deleted {WAL_DIR_NAME}/{}", first.file_name())), "{stdout}");
    assert!(!member.segment_path(first).exists());
    assert_eq!(fsck(tmp.path(), &[]).0, 0);
    assert_eq!(recovered_entries(tmp.path()), (31..=40).map(entry).collect::<Vec<_>>());
}

#[test]
fn cannot_run_exits_2_and_says_why() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = fsck(&tmp.path().join("no-such-dir"), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no such directory"), "{stderr}");

    let (code, _, stderr) = fsck(tmp.path(), &[]);
    assert_eq!(code, 2, "an empty directory is not a data directory: {stderr}");
    assert!(stderr.contains("not a lockstep data directory"), "{stderr}");

    let mut member = Member::new(&tmp.path().join("m"), SMALL_SEGMENTS);
    member.append_acked(1, 3);
    let identity = member.dir.root().join(IDENTITY_FILE_NAME);
    let text = std::fs::read_to_string(&identity).expect("read").replace("member_id 2", "member_id 3");
    std::fs::write(&identity, text).expect("write");
    let (code, _, stderr) = fsck(member.dir.root(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unreadable identity file: checksum mismatch"), "{stderr}");
}

#[test]
fn a_locked_directory_is_not_repaired() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut member = Member::new(tmp.path(), SMALL_SEGMENTS);
    member.append_acked(1, 3);
    let held = member.dir.lock(LockMode::Exclusive).expect("lock").expect("held");
    for args in [&[][..], &["--repair"][..]] {
        let (code, _, stderr) = fsck(tmp.path(), args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("held by another process"), "{stderr}");
    }
    drop(held);
    assert_eq!(fsck(tmp.path(), &["--repair"]).0, 0);
}

#[test]
fn json_output_is_one_document_with_the_verdict() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut member = Member::new(tmp.path(), SMALL_SEGMENTS);
    member.append_acked(1, 5);
    member.append(6);
    let torn = *member.placed.last().expect("placed");
    let file = std::fs::OpenOptions::new().write(true).open(member.segment_path(torn.segment)).expect("open");
    file.set_len(torn.offset + 5).expect("truncate");

    let (code, stdout, _) = fsck(tmp.path(), &["--output", "json"]);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(doc["status"], "problems");
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(doc["identity"]["member_id"], ID.member_id);
    assert_eq!(doc["totals"]["torn"], 1);
    let last = doc["files"].as_array().and_then(|f| f.last()).expect("files");
    assert_eq!(last["status"], "torn");
    assert_eq!(last["problems"][0]["offset"], torn.offset);
    assert_eq!(doc["repairs"][0]["action"], "truncate");
    assert_eq!(doc["repairs"][0]["applied"], false);
    assert_eq!(doc["recovery"]["ok"], true);

    let (code, stdout, _) = fsck(tmp.path(), &["--repair", "--output", "json"]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(doc["status"], "repaired");
    assert_eq!(doc["repairs"][0]["applied"], true);
    assert_eq!(doc["recheck"]["clean"], true);

    let (code, stdout, _) = fsck(&tmp.path().join("missing"), &["--output", "json"]);
    assert_eq!(code, 2);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(doc["status"], "error");
}

#[test]
fn version_names_the_format_versions() {
    let output = lockstep(&["version"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(text.starts_with(&format!("lockstep {}", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains("WAL segment format:    2"), "{text}");
    assert!(text.contains("git commit:"), "{text}");
    let output = lockstep(&["version", "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(doc["wal_segment_format"], 2);
    assert_eq!(doc["snapshot_file_format"], 1);
    assert_eq!(doc["data_dir_layout"], 1);
}

#[test]
fn help_documents_exit_codes() {
    let output = lockstep(&["fsck", "--help"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(text.contains("Exit status:") && text.contains("--repair"), "{text}");
}

/// Files that each read cleanly but do not fit together (a segment deleted by
/// hand) are a problem too; leftovers and strangers in `wal/` are only noted.
#[test]
fn a_missing_segment_fails_recovery_and_strangers_are_noted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut member = Member::new(tmp.path(), SMALL_SEGMENTS);
    member.append_acked(1, 40);
    std::fs::write(member.dir.wal_dir().join("snapshot.snap.tmp"), b"half a snapshot").expect("write");
    std::fs::write(member.dir.wal_dir().join("notes.txt"), b"hello").expect("write");
    let (code, stdout, _) = fsck(tmp.path(), &[]);
    assert_eq!(code, 0, "notes are not problems: {stdout}");
    assert!(stdout.contains("note: wal/snapshot.snap.tmp (15 bytes)"), "{stdout}");
    assert!(stdout.contains("note: wal/notes.txt is not a lockstep file"), "{stdout}");

    let second = member.writer.segments()[1];
    std::fs::remove_file(member.segment_path(second)).expect("rm");
    let (code, stdout, _) = fsck(tmp.path(), &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("a WAL segment is missing between"), "{stdout}");
    assert!(stdout.contains("result: every file reads cleanly, but together"), "{stdout}");
}
