//! Encryption at rest with real processes: a member with
//! `encryption.key_file` writes no plain text of a key or value to its data
//! directory, recovers everything after a restart with its key, refuses to
//! start with another key (and loses nothing), and `lockstep fsck` and
//! `lockstep snapshot` work with the key file and refuse clearly without it.
//! A byte changed in a sealed record (checksums recomputed, so only the
//! authentication can tell) is refused naming the file and offset.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{etcdctl, etcdctl_available, stdout, Cluster, BIN};
use lockstep::data_dir::WAL_DIR_NAME;
use lockstep::DataDir;
use lockstep_core::wal::{WalAction, WalCipher, WalConfig, WalIdentity, WalWriter};
use lockstep_core::{Command, Entry, HardState, Payload};
use lockstep_runtime::crypt::AesGcm;

const STARTUP: Duration = Duration::from_secs(20);
const VALUE: &str = "plaintext-value-5f3a9c";
const KEY: &str = "plaintext-key-7d21e0";

fn lockstep(args: &[&str]) -> Output {
    std::process::Command::new(BIN).args(args).output().expect("run lockstep")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn init_key(path: &Path) {
    let out = lockstep(&["encryption", "init-key", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("key id"), "{}", text(&out));
}

/// Every byte of every file under `dir`.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn contains(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn an_encrypted_member_keeps_no_plain_text_and_needs_its_key() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::new(1);
    let key_path = cluster.dir.path().join("lockstep.key");
    let other_key = cluster.dir.path().join("other.key");
    init_key(&key_path);
    init_key(&other_key);
    let set_key = |cluster: &mut Cluster, key: &Path| {
        let m = &mut cluster.members[0];
        m.config.encryption.key_file = Some(key.to_path_buf());
        std::fs::write(&m.config_path, m.config.to_yaml()).unwrap();
    };
    set_key(&mut cluster, &key_path);
    cluster.members[0].start(&[]);
    cluster.wait_leader(STARTUP);
    cluster.members[0].wait_ready(STARTUP);
    let endpoints = cluster.running_clients();
    for i in 0..50 {
        let out = etcdctl(&endpoints, &["put", &format!("{KEY}-{i}"), &format!("{VALUE}-{i}")]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let data_dir = cluster.members[0].config.data_dir.clone();
    assert_eq!(cluster.members[0].terminate(), Some(0));

    // Nothing on disk holds a key or value in plain text.
    let files = files_under(&data_dir);
    assert!(files.iter().any(|(p, _)| p.extension().is_some_and(|e| e == "wal")), "{files:?}");
    for (path, bytes) in &files {
        assert!(!contains(bytes, KEY) && !contains(bytes, VALUE), "{} holds plain text", path.display());
    }

    // fsck needs the key, says so, and is clean with it.
    let dir = data_dir.to_str().unwrap();
    let out = lockstep(&["fsck", dir]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no key was given"), "{}", text(&out));
    let out = lockstep(&["fsck", dir, "--key-file", key_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Another key: the member refuses to start, naming both key ids, and
    // nothing is lost.
    set_key(&mut cluster, &other_key);
    cluster.members[0].start(&[]);
    let deadline = Instant::now() + STARTUP;
    let code = loop {
        if let Some(status) = cluster.members[0].child.as_mut().unwrap().try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "a member with the wrong key kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    cluster.members[0].child = None;
    assert_ne!(code, Some(0));
    let log = std::fs::read_to_string(&cluster.members[0].log_path).unwrap();
    let wanted = format!("{:016x}", AesGcm::load(&key_path).unwrap().key_id());
    assert!(log.contains("encrypted with key id") && log.contains(&wanted), "{log}");

    // The right key again: everything is there.
    set_key(&mut cluster, &key_path);
    cluster.members[0].start(&[]);
    cluster.wait_leader(STARTUP);
    cluster.members[0].wait_ready(STARTUP);
    let out = etcdctl(&endpoints, &["get", &format!("{KEY}-49"), "--print-value-only"]);
    assert_eq!(stdout(&out).trim(), format!("{VALUE}-49"), "{}", text(&out));
    let out = etcdctl(&endpoints, &["get", KEY, "--prefix", "--keys-only"]);
    assert_eq!(stdout(&out).lines().filter(|l| !l.is_empty()).count(), 50, "{}", text(&out));

    // An encrypted backup: no plain text, restores only with its key.
    let backup = cluster.dir.path().join("backup.snap");
    let admin = cluster.members[0].config.advertise_admin();
    let out = lockstep(&[
        "snapshot",
        "save",
        backup.to_str().unwrap(),
        "--endpoint",
        &admin,
        "--key-file",
        key_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("encrypted, key id"), "{}", text(&out));
    let bytes = std::fs::read(&backup).unwrap();
    assert!(!contains(&bytes, KEY) && !contains(&bytes, VALUE));
    cluster.members[0].terminate();
    let config = cluster.members[0].config_path.to_str().unwrap().to_string();
    let fresh = cluster.dir.path().join("restored");
    let args =
        ["snapshot", "restore", backup.to_str().unwrap(), "--config", &config, "--data-dir", fresh.to_str().unwrap()];
    let out = lockstep(&args);
    assert!(!out.status.success() && text(&out).contains("no key was given"), "{}", text(&out));
    let mut with_key = args.to_vec();
    with_key.extend(["--key-file", key_path.to_str().unwrap()]);
    let out = lockstep(&with_key);
    assert!(out.status.success(), "{}", text(&out));
    // The restored directory is encrypted with the config's key too.
    for (path, bytes) in files_under(&fresh) {
        assert!(!contains(&bytes, KEY) && !contains(&bytes, VALUE), "{} holds plain text", path.display());
    }
}

const ID: WalIdentity = WalIdentity { cluster_id: 0xC1_u64 << 32 | 7, member_id: 2, group_id: 1 };

#[test]
fn a_changed_byte_in_a_sealed_record_is_refused_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k");
    init_key(&key_path);
    let cipher = AesGcm::load_cipher(&key_path).unwrap();
    let root = dir.path().join("member");
    let data = DataDir::create(&root, ID).unwrap();
    let config = WalConfig { preallocate: false, ..WalConfig::default() };
    let mut writer = WalWriter::new_with_cipher(ID, config, Some(cipher));
    let mut appended = Vec::new();
    let mut commands = vec![Command::SaveHardState(HardState { term: 1, vote: Some(2) })];
    commands.extend((1..=5).map(|i| {
        let payload = Payload::Command(format!("put secret-{i}").into_bytes());
        Command::AppendLog(vec![Entry { index: i, term: 1, payload }])
    }));
    commands.push(Command::Sync { id: 1 });
    for command in &commands {
        for action in writer.handle(command) {
            if let WalAction::Append { segment, offset, bytes } = &action {
                appended.push((*segment, *offset, bytes.len()));
            }
            data.apply(&action).unwrap();
        }
    }
    let key = key_path.to_str().unwrap();
    let path = root.to_str().unwrap();
    let out = lockstep(&["fsck", path, "--key-file", key]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Entry 3's record: change one byte of its sealed body, then fix both
    // checksums so that only the authentication tag can tell.
    let (segment, offset, _) = appended[3];
    let file = root.join(WAL_DIR_NAME).join(segment.file_name());
    let mut bytes = std::fs::read(&file).unwrap();
    let at = usize::try_from(offset).unwrap();
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    bytes[at + 16 + 20] ^= 0x01;
    let body_crc = crc32c::crc32c(&bytes[at + 16..at + 16 + len]);
    bytes[at + 8..at + 12].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&bytes[at..at + 12]);
    bytes[at + 12..at + 16].copy_from_slice(&header_crc.to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();

    let out = lockstep(&["fsck", path, "--key-file", key]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = text(&out);
    assert!(report.contains("authentication failed"), "{report}");
    assert!(report.contains(&segment.file_name()) && report.contains(&offset.to_string()), "{report}");
    // Refused, not repaired away.
    let out = lockstep(&["fsck", path, "--key-file", key, "--repair"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "fsck --repair changed a tampered segment");
}
