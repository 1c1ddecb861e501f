//! `lockstep config check` and `lockstep config default`, run as the built binary
//! on files in a temporary directory (named relatively, so messages are exact).

use std::path::Path;

/// Exit code, stdout, stderr.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `lockstep ARGS` in `dir` with `env` and no other `LOCKSTEP_*` variable.
fn lockstep(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lockstep"));
    command.current_dir(dir).args(args);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("LOCKSTEP_") {
            command.env_remove(var);
        }
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("run lockstep");
    Run {
        code: output.status.code().expect("exit code, not a signal"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

const THREE: &str = "\
member_id: 2
data_dir: /var/lib/lockstep
cluster:
  token: prod
  initial_members:
    - {id: 1, peer: \"10.0.0.1:2380\", client: \"http://10.0.0.1:2379\", admin: \"http://10.0.0.1:8080\"}
    - {id: 2, peer: \"10.0.0.2:2380\", client: \"http://10.0.0.2:2379\", admin: \"http://10.0.0.2:8080\"}
    - {id: 3, peer: \"10.0.0.3:2380\", client: \"http://10.0.0.3:2379\", admin: \"http://10.0.0.3:8080\"}
listen:
  peer: 0.0.0.0:2380
advertise:
  peer: 10.0.0.2:2380
raft:
  heartbeat_interval_ms: 200
  election_timeout_ms: 2000
";

/// A temporary directory holding `member.yaml` with `text`.
fn with_file(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("member.yaml"), text).expect("write member.yaml");
    dir
}

fn check(text: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = with_file(text);
    let mut args = vec!["config", "check", "member.yaml"];
    args.extend_from_slice(extra);
    lockstep(dir.path(), &args, env)
}

#[test]
fn a_valid_file_is_ok() {
    let run = check(THREE, &[], &[]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
    assert_eq!(run.stdout, "member.yaml: ok (member 2 of cluster d63fb8e04f72c314, 3 initial members)\n");

    let joiner = "member_id: 4\ndata_dir: /d\ncluster:\n  join: http://10.0.0.1:8080\n";
    let run = check(joiner, &[], &[]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "member.yaml: ok (member 4, joining the cluster of http://10.0.0.1:8080)\n")
    );
}

#[test]
fn default_config_is_complete_and_valid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = lockstep(dir.path(), &["config", "default"], &[]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
    assert!(run.stdout.contains("member_id: 1\n"), "{}", run.stdout);
    assert!(run.stdout.contains("  election_timeout_ms: 1000\n"), "{}", run.stdout);
    std::fs::write(dir.path().join("member.yaml"), &run.stdout).expect("write");
    let run = lockstep(dir.path(), &["config", "check", "member.yaml"], &[]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
    assert_eq!(run.stdout, "member.yaml: ok (member 1 of cluster ae3535ac5b735d81, 1 initial member)\n");
}

#[test]
fn unknown_key_names_file_line_and_suggestion() {
    let run = check(&format!("{THREE}  heartbeat_ms: 100\n"), &[], &[]);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""));
    assert_eq!(
        run.stderr,
        "member.yaml:16: unknown key `raft.heartbeat_ms` (did you mean `raft.heartbeat_interval_ms`?)\n"
    );
}

#[test]
fn out_of_range_values_name_the_accepted_range() {
    let text = THREE
        .replace("election_timeout_ms: 2000", "election_timeout_ms: 5")
        .replace("raft:", "wal:\n  block_size: 1000\nraft:");
    let run = check(&text, &[], &[]);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""));
    assert_eq!(
        run.stderr,
        "member.yaml:14: wal.block_size = 1000: must be a power of two between 512 and 65536\n\
         member.yaml:17: raft.election_timeout_ms = 5: must be between 20 and 60000, and at least 2 × raft.heartbeat_interval_ms\n"
    );
    let run = check(THREE, &["--set", "raft.election_timeout_ms=300"], &[]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (1, "--set raft.election_timeout_ms=300: must be at least 2 × raft.heartbeat_interval_ms (2 × 200 = 400)\n")
    );
}

#[test]
fn environment_overrides_and_their_errors() {
    let run = check(THREE, &[], &[("LOCKSTEP_RAFT_HEARTBEAT_INTERVAL_MS", "abc")]);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""));
    assert_eq!(run.stderr, "LOCKSTEP_RAFT_HEARTBEAT_INTERVAL_MS=abc: not an integer; must be between 10 and 10000\n");

    let run = check(THREE, &[], &[("LOCKSTEP_RAFT_ELECTION_TIMEOUT", "3000")]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            1,
            "LOCKSTEP_RAFT_ELECTION_TIMEOUT: unknown variable (did you mean \
             LOCKSTEP_RAFT_ELECTION_TIMEOUT_MS?); every LOCKSTEP_* variable sets a config key, and docs/config.md lists them\n"
        )
    );

    // A valid override applies (member 3's view of the same cluster has the same id),
    // and variables that are not keys are left alone.
    let env = [("LOCKSTEP_MEMBER_ID", "3"), ("LOCKSTEP_ADVERTISE_PEER", "10.0.0.3:2380"), ("LOCKSTEP_CONFIG", "x")];
    let run = check(THREE, &[], &env);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
    assert_eq!(run.stdout, "member.yaml: ok (member 3 of cluster d63fb8e04f72c314, 3 initial members)\n");
}

#[test]
fn missing_and_unreadable_files_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = lockstep(dir.path(), &["config", "check", "missing.yaml"], &[]);
    assert_eq!((run.code, run.stdout.as_str()), (2, ""));
    assert_eq!(run.stderr, "lockstep config check: cannot read missing.yaml: No such file or directory (os error 2)\n");

    let run = lockstep(dir.path(), &["config", "check", "missing.yaml", "--output", "json"], &[]);
    assert_eq!(run.code, 2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(doc["status"], "error");
    assert_eq!(doc["exit_code"], 2);
    assert_eq!(doc["error"], "cannot read missing.yaml: No such file or directory (os error 2)");
}

#[test]
fn syntax_errors_and_missing_keys() {
    let run = check("member_id: 1\n  data_dir: /d\n", &[], &[]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (1, "member.yaml:2: invalid YAML: mapping values are not allowed in this context\n")
    );
    let run = check("raft:\n  pre_vote: true\n", &[], &[]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            1,
            "member.yaml: missing required key `member_id` (set it in the file, with LOCKSTEP_MEMBER_ID, or with --set member_id=...)\n\
             member.yaml: missing required key `data_dir` (set it in the file, with LOCKSTEP_DATA_DIR, or with --set data_dir=...)\n"
        )
    );
}

#[test]
fn json_output() {
    let run = check(THREE, &["--output", "json"], &[]);
    assert_eq!(run.code, 0);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["member_id"], 2);
    assert_eq!(doc["name"], "member-2");
    assert_eq!(doc["cluster_id"], "d63fb8e04f72c314");
    assert_eq!(doc["initial_members"], 3);
    assert_eq!(doc["join"], serde_json::Value::Null);

    let run = check(&format!("{THREE}  pre_vote: maybe\n"), &["--output", "json", "--set", "kv.max_txn_ops=0"], &[]);
    assert_eq!((run.code, run.stderr.as_str()), (1, ""));
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(doc["status"], "invalid");
    assert_eq!(doc["exit_code"], 1);
    let problems = doc["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 2);
    assert_eq!(problems[0]["text"], "member.yaml:16: raft.pre_vote = maybe: must be true or false");
    assert_eq!(problems[0]["line"], 16);
    assert_eq!(problems[0]["key"], "raft.pre_vote");
    assert_eq!(problems[0]["value"], "maybe");
    assert_eq!(problems[0]["message"], "must be true or false");
    assert_eq!(problems[1]["text"], "--set kv.max_txn_ops=0: must be between 1 and 100000");
    assert_eq!(problems[1]["flag"], true);
}

#[test]
fn other_subcommands_still_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = lockstep(dir.path(), &["version"], &[]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.starts_with("lockstep "), "{}", run.stdout);
    let run = lockstep(dir.path(), &["config", "check"], &[]);
    assert_eq!(run.code, 2, "clap's usage error");
    let run = lockstep(dir.path(), &["fsck", "no-such-dir"], &[]);
    assert_eq!(run.code, 2);
}

#[test]
fn set_flags_and_their_errors() {
    let run = check(THREE, &["--set", "raft.pre_vote", "--set", "kv.max_txn_op=5"], &[]);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""));
    assert_eq!(
        run.stderr,
        "--set kv.max_txn_op=5: unknown key `kv.max_txn_op` (did you mean `kv.max_txn_ops`?)\n\
         --set raft.pre_vote: expected KEY=VALUE, like --set raft.election_timeout_ms=2000\n"
    );
    let run = check(THREE, &["--set", "raft.pre_vote=false", "--set", "name=beta"], &[]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
}
