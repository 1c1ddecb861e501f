//! The watch workload's watchers and checker.
//!
//! The clients run the register workload on `lsj/r` (checked for
//! linearizability as usual). Beside them, `WATCHERS` watcher threads each
//! follow the key's changes from revision 1: one `etcdctl watch lsj/r
//! --rev=N -w json` at a time, killed after `WATCH_WINDOW` (it replays every
//! event from `N` at once, then streams live ones), then the next from the
//! revision after the last event seen. A watcher's client is bound to one
//! member, like the other clients, and keeps going through kills and
//! partitions (a call that fails is retried from the same revision).
//!
//! Every event a watcher sees goes to `watch.jsonl`
//! (`{"watcher":0,"revision":17,"value":12,"time":..}`). After the final heal,
//! one more watch from revision 1 through every member gives the reference
//! sequence of the key's changes. [`check`] then requires:
//!
//! - every member's final sequence is the same;
//! - each watcher's events, in the order seen, are a prefix of it: strictly
//!   increasing revisions, no gap, no duplicate, each with the value the
//!   reference has at that revision;
//! - every value in it was written by a client (invoked), and every write
//!   that returned `ok` is in it (no acknowledged write lost).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lockstep_jepsen::{Op, OpType, Value, F};
use serde_json::{json, Value as Json};

use crate::client;

/// Watcher threads.
pub const WATCHERS: u64 = 3;
/// How long one `etcdctl watch` call runs before it is killed.
const WATCH_WINDOW: Duration = Duration::from_secs(3);
/// How many of each kind of problem the report lists.
const PROBLEMS_SHOWN_MAX: usize = 10;

/// One change of the key as a watch reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The revision of the change (the kv's `mod_revision`).
    pub revision: u64,
    /// The value written; `None` for a delete or a value that is not an integer.
    pub value: Option<i64>,
}

/// Decodes standard base64 (with or without padding).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0_u32;
    let mut bit_count = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for byte in text.bytes().filter(|byte| *byte != b'=') {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            out.push((bits >> bit_count) as u8);
            bits &= (1 << bit_count) - 1;
        }
    }
    Some(out)
}

/// The changes in `etcdctl watch -w json` output (one JSON object per
/// response; etcdctl 3.4 prints each on one line).
pub fn parse_watch_output(stdout: &str) -> Result<Vec<Change>, String> {
    let mut changes = Vec::new();
    for line in stdout.lines().filter(|line| line.trim_start().starts_with('{')) {
        let json: Json = serde_json::from_str(line).map_err(|error| format!("watch output {line:?}: {error}"))?;
        for event in json.get("Events").and_then(Json::as_array).into_iter().flatten() {
            let kv = event.get("kv").ok_or_else(|| format!("event without kv: {event}"))?;
            let revision = kv
                .get("mod_revision")
                .and_then(Json::as_u64)
                .ok_or_else(|| format!("event without revision: {event}"))?;
            let deleted = event.get("type").and_then(Json::as_u64) == Some(1)
                || event.get("type").and_then(Json::as_str) == Some("DELETE");
            let value = if deleted {
                None
            } else {
                kv.get("value")
                    .and_then(Json::as_str)
                    .and_then(base64_decode)
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .and_then(|text| text.parse::<i64>().ok())
            };
            changes.push(Change { revision, value });
        }
    }
    Ok(changes)
}

/// Runs one `etcdctl watch KEY --rev=REV -w json` for `window`; returns the
/// changes it printed (an error when it printed nothing usable and failed).
pub fn watch_once(endpoint: &str, key: &str, revision: u64, window: Duration) -> Result<Vec<Change>, String> {
    let output = Command::new("timeout")
        .args(["-s", "KILL", &window.as_secs().max(1).to_string(), "etcdctl"])
        .args(client::global_flags(endpoint))
        .args(["watch", key, &format!("--rev={revision}"), "-w", "json"])
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|error| format!("cannot start etcdctl: {error}"))?;
    parse_watch_output(&String::from_utf8_lossy(&output.stdout))
}

/// One event a watcher saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Which watcher.
    pub watcher: u64,
    /// The change.
    pub change: Change,
    /// Nanoseconds since the workload started.
    pub time_ns: u64,
}

/// `watch.jsonl`, written as it happens.
pub struct WatchLog {
    start: Instant,
    inner: Mutex<(BufWriter<File>, Vec<Seen>)>,
}

impl WatchLog {
    /// Creates `watch.jsonl` in `dir`.
    pub fn create(dir: &Path, start: Instant) -> std::io::Result<WatchLog> {
        let file = BufWriter::new(File::create(dir.join("watch.jsonl"))?);
        Ok(WatchLog { start, inner: Mutex::new((file, Vec::new())) })
    }

    fn record(&self, watcher: u64, changes: &[Change]) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let time_ns = self.start.elapsed().as_nanos() as u64;
        for change in changes {
            let line = json!({"watcher": watcher, "revision": change.revision, "value": change.value, "time": time_ns});
            let _ = writeln!(inner.0, "{line}");
            inner.1.push(Seen { watcher, change: *change, time_ns });
        }
        let _ = inner.0.flush();
    }

    /// Every event seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
    }
}

/// A watcher: follows `key` through `endpoint` from revision 1 until `done`.
pub fn watcher(log: &WatchLog, watcher: u64, endpoint: &str, key: &str, done: &AtomicBool) {
    let mut next = 1;
    while !done.load(Ordering::Relaxed) {
        match watch_once(endpoint, key, next, WATCH_WINDOW) {
            Ok(changes) if !changes.is_empty() => {
                log.record(watcher, &changes);
                next = changes.iter().map(|change| change.revision).max().unwrap_or(next) + 1;
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchReport {
    /// Changes in the reference sequence.
    pub changes: u64,
    /// Events seen per watcher.
    pub seen: BTreeMap<u64, u64>,
    /// What is wrong (the first few of each kind), empty when nothing is.
    pub problems: Vec<String>,
}

impl WatchReport {
    /// Whether nothing is wrong.
    pub fn valid(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let seen: Vec<String> = self.seen.iter().map(|(watcher, count)| format!("w{watcher} {count}")).collect();
        let mut text = format!(
            "watch: {} changes in the final sequence; events seen per watcher: {}\n",
            self.changes,
            if seen.is_empty() { "none".to_owned() } else { seen.join(", ") }
        );
        if self.valid() {
            text.push_str(
                "watch: every watcher saw a gap-free, duplicate-free prefix of it; no acknowledged write missing\n",
            );
        } else {
            text.push_str(&format!("watch: {} problems:\n", self.problems.len()));
            for problem in &self.problems {
                text.push_str(&format!("  {problem}\n"));
            }
        }
        text
    }
}

/// Checks the watchers' events against the final sequences (one per member,
/// `None` where a member could not be read) and the client history.
pub fn check(seen: &[Seen], finals: &[(u64, Option<Vec<Change>>)], ops: &[Op]) -> WatchReport {
    let mut report = WatchReport::default();
    let mut problems = Vec::new();
    let read: Vec<&(u64, Option<Vec<Change>>)> = finals.iter().filter(|(_, changes)| changes.is_some()).collect();
    let Some((reference_member, Some(reference))) = read.first().copied() else {
        report.problems.push("no member answered the final watch".to_owned());
        return report;
    };
    for (member, changes) in finals {
        match changes {
            None => problems.push(format!("member {member} did not answer the final watch")),
            Some(changes) if changes != reference => problems.push(format!(
                "member {member}'s final sequence ({} changes) differs from member {reference_member}'s ({})",
                changes.len(),
                reference.len()
            )),
            Some(_) => {}
        }
    }
    report.changes = reference.len() as u64;
    for pair in reference.windows(2) {
        if pair[1].revision <= pair[0].revision {
            problems.push(format!("final sequence not increasing at revision {}", pair[1].revision));
        }
    }
    let mut by_watcher: BTreeMap<u64, Vec<&Seen>> = BTreeMap::new();
    for event in seen {
        by_watcher.entry(event.watcher).or_default().push(event);
    }
    for (watcher, events) in &by_watcher {
        report.seen.insert(*watcher, events.len() as u64);
        let mut shown = 0;
        for (position, event) in events.iter().enumerate() {
            let problem = match reference.get(position) {
                Some(expected) if *expected == event.change => None,
                Some(expected) => Some(format!(
                    "watcher {watcher} event {position} at {:.3} s: revision {} value {:?}, expected revision {} value {:?} ({})",
                    event.time_ns as f64 / 1e9,
                    event.change.revision,
                    event.change.value,
                    expected.revision,
                    expected.value,
                    if event.change.revision > expected.revision {
                        "a gap"
                    } else if event.change.revision < expected.revision {
                        "a duplicate or out of order"
                    } else {
                        "another value"
                    }
                )),
                None => Some(format!(
                    "watcher {watcher} event {position}: revision {} beyond the final sequence",
                    event.change.revision
                )),
            };
            if let Some(problem) = problem {
                if shown < PROBLEMS_SHOWN_MAX {
                    problems.push(problem);
                }
                shown += 1;
            }
        }
    }
    let invoked: BTreeSet<i64> = ops
        .iter()
        .filter(|op| op.op_type == OpType::Invoke)
        .filter_map(|op| match op.value {
            Value::Int(value) => Some(value),
            Value::Cas { new, .. } => Some(new),
            Value::Nil => None,
        })
        .collect();
    let in_sequence: BTreeSet<i64> = reference.iter().filter_map(|change| change.value).collect();
    let phantom: Vec<i64> = in_sequence.difference(&invoked).copied().take(PROBLEMS_SHOWN_MAX).collect();
    if !phantom.is_empty() {
        problems.push(format!("values in the final sequence no client wrote: {phantom:?}"));
    }
    let acknowledged: BTreeSet<i64> = ops
        .iter()
        .filter(|op| op.op_type == OpType::Ok && matches!(op.f, F::Write | F::Cas))
        .filter_map(|op| match op.value {
            Value::Int(value) => Some(value),
            Value::Cas { new, .. } => Some(new),
            Value::Nil => None,
        })
        .collect();
    let lost: Vec<i64> = acknowledged.difference(&in_sequence).copied().take(PROBLEMS_SHOWN_MAX).collect();
    if !lost.is_empty() {
        problems.push(format!("acknowledged writes missing from the final sequence: {lost:?}"));
    }
    report.problems = problems;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(revision: u64, value: i64) -> Change {
        Change { revision, value: Some(value) }
    }

    fn seen(watcher: u64, revision: u64, value: i64) -> Seen {
        Seen { watcher, change: change(revision, value), time_ns: 0 }
    }

    fn op(op_type: OpType, f: F, value: Value) -> Op {
        Op { process: 0, op_type, f, key: None, value, time_ns: 0 }
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("bHNqL3I="), Some(b"lsj/r".to_vec()));
        assert_eq!(base64_decode("MTI="), Some(b"12".to_vec()));
        assert_eq!(base64_decode("MTIz"), Some(b"123".to_vec()));
        assert_eq!(base64_decode("M!"), None);
    }

    #[test]
    fn parses_etcdctl_json_watch_output() {
        let stdout = r#"{"Header":{"cluster_id":1,"member_id":2,"revision":5,"raft_term":3},"Events":[{"kv":{"key":"bHNqL3I=","create_revision":2,"mod_revision":4,"version":3,"value":"MTI="}},{"type":1,"kv":{"key":"bHNqL3I=","mod_revision":5}}],"CompactRevision":0,"Canceled":false,"Created":false}
{"Header":{"revision":6},"Events":[{"kv":{"key":"bHNqL3I=","mod_revision":6,"value":"MTM="}}]}
"#;
        assert_eq!(
            parse_watch_output(stdout),
            Ok(vec![change(4, 12), Change { revision: 5, value: None }, change(6, 13)])
        );
        assert!(parse_watch_output("{broken").is_err());
    }

    #[test]
    fn a_clean_run_checks_valid() {
        let reference = vec![change(2, 1), change(3, 2), change(5, 3)];
        let finals = vec![(1, Some(reference.clone())), (2, Some(reference.clone()))];
        let seen = vec![seen(0, 2, 1), seen(0, 3, 2), seen(1, 2, 1), seen(0, 5, 3)];
        let ops = vec![
            op(OpType::Invoke, F::Write, Value::Int(1)),
            op(OpType::Ok, F::Write, Value::Int(1)),
            op(OpType::Invoke, F::Write, Value::Int(2)),
            op(OpType::Info, F::Write, Value::Int(2)),
            op(OpType::Invoke, F::Cas, Value::Cas { expected: Some(2), new: 3 }),
            op(OpType::Ok, F::Cas, Value::Cas { expected: Some(2), new: 3 }),
            op(OpType::Invoke, F::Write, Value::Int(4)),
        ];
        let report = check(&seen, &finals, &ops);
        assert!(report.valid(), "{}", report.text());
        assert_eq!(report.changes, 3);
        assert_eq!(report.seen, [(0, 3), (1, 1)].into_iter().collect());
    }

    #[test]
    fn gaps_duplicates_divergence_phantoms_and_lost_writes_are_found() {
        let reference = vec![change(2, 1), change(3, 2), change(5, 3)];
        let finals = vec![(1, Some(reference.clone())), (2, Some(vec![change(2, 1)])), (3, None)];
        let seen = vec![seen(0, 2, 1), seen(0, 5, 3), seen(1, 2, 1), seen(1, 2, 1)];
        let ops = vec![
            op(OpType::Invoke, F::Write, Value::Int(1)),
            op(OpType::Invoke, F::Write, Value::Int(3)),
            op(OpType::Ok, F::Write, Value::Int(9)),
        ];
        let report = check(&seen, &finals, &ops);
        let text = report.problems.join("\n");
        assert!(text.contains("member 2's final sequence (1 changes) differs"), "{text}");
        assert!(text.contains("member 3 did not answer"), "{text}");
        assert!(text.contains("watcher 0 event 1") && text.contains("a gap"), "{text}");
        assert!(text.contains("watcher 1 event 1") && text.contains("a duplicate"), "{text}");
        assert!(text.contains("no client wrote: [2]"), "{text}");
        assert!(text.contains("acknowledged writes missing from the final sequence: [9]"), "{text}");
        assert_eq!(report.problems.len(), 6, "{text}");
    }
}
