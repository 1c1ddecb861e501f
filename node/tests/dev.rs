//! `lockstep dev`, the README's start command: three member lines once a
//! leader exists, the health endpoints answer, Ctrl-C stops it cleanly, and a
//! second run on the same data directory restarts the same cluster.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{signal_and_wait, BIN};

/// Starts `lockstep dev --data-dir DIR`, returns the child and the member lines.
fn start_dev(dir: &std::path::Path) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["dev", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with("leader: member ");
        lines.push(line);
        if done || started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    (child, lines)
}

#[test]
fn dev_prints_three_members_serves_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_dev(dir.path());
    assert_eq!(lines[0], format!("data directory: {}", dir.path().display()), "{lines:?}");
    let members: Vec<&String> = lines.iter().filter(|l| l.starts_with("member ")).collect();
    assert_eq!(members.len(), 3, "{lines:?}");
    let mut admins = Vec::new();
    for (i, line) in members.iter().enumerate() {
        // `member 1  client http://127.0.0.1:2379  admin http://127.0.0.1:8080  peer 127.0.0.1:2380`
        let fields: Vec<&str> = line.split("  ").collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(fields[0], format!("member {}", i + 1));
        assert!(fields[1].starts_with("client http://127.0.0.1:"), "{line}");
        assert!(fields[2].starts_with("admin http://127.0.0.1:"), "{line}");
        assert!(fields[3].starts_with("peer 127.0.0.1:"), "{line}");
        admins.push(fields[2].trim_start_matches("admin ").to_string());
    }
    for admin in &admins {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = lockstep::admin_client::call("GET", admin, "/health", None).unwrap();
            if reply.status == 200 {
                let checks = reply.body["checks"].as_object().unwrap();
                assert_eq!(checks.keys().collect::<Vec<_>>(), vec!["disk", "raft", "store"]);
                break;
            }
            assert!(Instant::now() < deadline, "{admin}/health: {reply:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(signal_and_wait(&mut child, "INT"), Some(0));
    // The same data directory restarts the same cluster (same member lines).
    let (mut again, lines_again) = start_dev(dir.path());
    let members_again: Vec<&String> = lines_again.iter().filter(|l| l.starts_with("member ")).collect();
    assert_eq!(members_again, members, "{lines_again:?}");
    assert_eq!(signal_and_wait(&mut again, "INT"), Some(0));
}
