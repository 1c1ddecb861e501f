//! The harness end to end: `lockstep-jepsen run` with 3 real members in
//! network namespaces for about 20 s under every nemesis, then its results.
//!
//! Needs root, `ip netns`, iptables, etcdctl and the `lockstep` binary (built
//! by `cargo build -p lockstep`, or named by `JEPSEN_LOCKSTEP_BIN`). Without them the
//! test prints why and skips; under `CI=true` it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;

const HARNESS: &str = env!("CARGO_BIN_EXE_lockstep-jepsen");

fn lockstep_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("JEPSEN_LOCKSTEP_BIN") {
        return Some(PathBuf::from(path));
    }
    let sibling = PathBuf::from(HARNESS).parent()?.join("lockstep");
    sibling.is_file().then_some(sibling)
}

/// Why the run cannot happen here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status.lines().any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Some("not running as root".into());
    }
    let works =
        |program: &str, args: &[&str]| Command::new(program).args(args).output().is_ok_and(|o| o.status.success());
    if !works("ip", &["netns", "list"]) {
        return Some("`ip netns` is not available".into());
    }
    if !works("iptables", &["--version"]) {
        return Some("iptables is not installed (apt-get install iptables)".into());
    }
    if !works("etcdctl", &["version"]) {
        return Some("etcdctl is not installed (apt-get install etcd-client)".into());
    }
    if lockstep_binary().is_none() {
        return Some("the lockstep binary is not built (cargo build -p lockstep, or set JEPSEN_LOCKSTEP_BIN)".into());
    }
    None
}

#[test]
fn a_short_run_with_every_nemesis_is_linearizable_and_cleans_up() {
    if let Some(reason) = missing_prerequisite() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must run the Jepsen harness test, but {reason}");
        eprintln!("SKIP a_short_run_with_every_nemesis_is_linearizable_and_cleans_up: {reason}");
        return;
    }
    let out = std::env::temp_dir().join(format!("lsj-harness-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let lockstep = lockstep_binary().expect("checked above");
    // Leftovers of a run that died without cleaning up (pid 0x7fffff is above
    // any pid_max, so that run is certainly dead): the next run removes them.
    let ip = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
    let _ = ip(&["netns", "del", "lsj-7fffff-1"]);
    let _ = ip(&["link", "del", "lsj7fffff"]);
    assert!(ip(&["netns", "add", "lsj-7fffff-1"]));
    assert!(ip(&["link", "add", "lsj7fffff", "type", "bridge"]));
    // Every nemesis but disk (its members run on tmpfs, which takes O_DIRECT
    // only on Linux 6.6 and later) and member (membership changes take
    // seconds each, too slow for 3 s faults); the clock nemesis only where
    // libfaketime is installed (the harness refuses it otherwise).
    let faketime = ["/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime", "/usr/lib/faketime"]
        .iter()
        .any(|dir| Path::new(dir).join("libfaketimeMT.so.1").is_file());
    let nemesis = if faketime { "kill,pause,partition,asymmetric,clock" } else { "kill,pause,partition,asymmetric" };
    let output = Command::new(HARNESS)
        .args(["run", "--members", "3", "--time-limit", "20s", "--workload", "register", "--nemesis", nemesis])
        .args(["--nemesis-interval", "3s", "--concurrency", "6", "--seed", "7", "--out"])
        .arg(&out)
        .arg("--lockstep")
        .arg(&lockstep)
        .output()
        .expect("the harness starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stdout.lines().last(), Some("linearizable"), "{context}");
    assert_eq!(output.status.code(), Some(0), "{context}");

    for file in ["history.jsonl", "nemesis.jsonl", "summary.json", "summary.txt", "report.html", "members/1.log"] {
        assert!(out.join(file).is_file(), "{file} missing; {context}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["checker"]["verdict"], "linearizable");
    assert_eq!(summary["recovered"], true);
    assert!(summary["ops"]["ok"].as_u64().unwrap() > 20, "too few ops: {summary}");
    // Faults at 3, 9 and 15 s, each healed 3 s later, plus the final heal.
    let events = summary["faults"].as_array().unwrap();
    assert!(events.len() >= 7, "{summary}");

    // The checker agrees when run on its own.
    let check = Command::new(HARNESS).arg("check").arg(out.join("history.jsonl")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout).lines().last(), Some("linearizable"));

    // Nothing of the run is left behind.
    let run_id = summary["run_id"].as_str().unwrap();
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!netns.contains(&format!("lsj-{run_id}-")), "namespaces left: {netns}");
    let links = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains(&format!("lsj{run_id}")), "links left: {links}");
    assert!(!std::env::temp_dir().join(format!("lsj-{run_id}")).exists(), "data directories left");
    assert!(!netns.contains("lsj-7fffff-1"), "a dead run's namespace was not removed: {netns}");
    assert!(!links.contains("lsj7fffff"), "a dead run's bridge was not removed: {links}");
    assert!(stderr.contains("removed leftovers of earlier runs"), "{context}");
    let _ = std::fs::remove_dir_all(&out);
}
