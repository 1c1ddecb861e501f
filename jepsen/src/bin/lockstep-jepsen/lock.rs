//! The lock workload: clients take turns holding a lease-backed lock key and
//! record when they believed they held it; no two such intervals may overlap.
//!
//! One round of a client, each step one `etcdctl` call:
//!
//! 1. `lease grant TTL_S`: a lease, its deadline `TTL_S` after this request
//!    was sent (by the client's clock).
//! 2. acquire: `txn` `create("lsj/lock") = "0"` / `put lsj/lock TOKEN
//!    --lease=ID`. `SUCCESS`: held; `FAILURE`: someone else holds it; an
//!    error: unknown (the client does not count itself as holder, revokes the
//!    lease and starts over).
//! 3. hold for `HOLD`, sending `lease keep-alive --once` first; each success
//!    moves the deadline to `TTL_S` after that request was sent.
//! 4. release: `txn` `value("lsj/lock") = "TOKEN"` / `del lsj/lock`, then
//!    `lease revoke`.
//!
//! The interval a client believed it held the lock runs from the acquire's
//! `ok` to the earlier of the release's invocation and the lease deadline
//! (a client that could not keep its lease alive stops believing at the
//! deadline, as a careful client of etcd's locks must). The checker reports
//! every overlap of two such intervals. It can hold only if lockstep never
//! lets a lease expire before `TTL_S` has passed since a grant or keep-alive
//! that succeeded was sent, and never grants `create = 0` while the key
//! exists. What it cannot hold against, and does not test, is a client that
//! is itself paused (GC, SIGSTOP) past its deadline while it still believes
//! it holds the lock: no lease-based lock is safe then, etcd's included.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use crate::client::etcdctl;

/// The lock key.
pub const KEY: &str = "lsj/lock";
/// The lease's TTL, seconds.
pub const TTL_S: u64 = 5;
/// How long a holder keeps the lock.
const HOLD: Duration = Duration::from_millis(1000);

/// The lease id in `lease grant` output (`lease 694d7c9d0a8a2a0b granted with TTL(5s)`).
pub fn parse_grant(stdout: &str) -> Option<String> {
    let mut words = stdout.split_whitespace();
    (words.next()? == "lease").then_some(())?;
    let id = words.next()?;
    (words.next()? == "granted" && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// The acquire txn's stdin.
pub fn acquire_txn(token: &str, lease: &str) -> String {
    format!("create(\"{KEY}\") = \"0\"\n\nput {KEY} {token} --lease={lease}\n\n\n")
}

/// The release txn's stdin.
pub fn release_txn(token: &str) -> String {
    format!("value(\"{KEY}\") = \"{token}\"\n\ndel {KEY}\n\n\n")
}

/// `lock.jsonl`, written as it happens.
pub struct LockLog {
    start: Instant,
    inner: Mutex<(BufWriter<File>, Vec<Held>)>,
}

/// One interval a client believed it held the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The client process.
    pub process: u64,
    /// Its token (the lock key's value while it held it).
    pub token: String,
    /// The acquire's `ok`, ns since the workload started.
    pub start_ns: u64,
    /// The earlier of the release's invocation and the lease deadline, ns.
    pub end_ns: u64,
    /// Whether the end was the lease deadline (keep-alives failed).
    pub deadline_ended: bool,
}

impl LockLog {
    /// Creates `lock.jsonl` in `dir`.
    pub fn create(dir: &Path, start: Instant) -> std::io::Result<LockLog> {
        let file = BufWriter::new(File::create(dir.join("lock.jsonl"))?);
        Ok(LockLog { start, inner: Mutex::new((file, Vec::new())) })
    }

    /// Nanoseconds since the workload started.
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records one event (`f`: grant, acquire, keepalive, release, revoke).
    fn event(&self, process: u64, op_type: &str, f: &str, value: Json) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let line = json!({"process": process, "type": op_type, "f": f, "value": value, "time": self.now_ns()});
        let _ = writeln!(inner.0, "{line}");
        let _ = inner.0.flush();
    }

    /// Records a holding interval.
    fn held(&self, held: Held) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let line = json!({
            "process": held.process, "type": "held", "f": "hold", "value": held.token,
            "start": held.start_ns, "end": held.end_ns, "deadline_ended": held.deadline_ended, "time": held.end_ns,
        });
        let _ = writeln!(inner.0, "{line}");
        let _ = inner.0.flush();
        inner.1.push(held);
    }

    /// Every holding interval recorded.
    pub fn intervals(&self) -> Vec<Held> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
    }
}

/// Runs one etcdctl call as a logged operation; returns its outcome:
/// `Some(stdout)` when it succeeded, `None` otherwise.
fn logged(
    log: &LockLog,
    process: u64,
    f: &str,
    value: &Json,
    run: impl FnOnce() -> Result<(bool, String, String), String>,
) -> Option<String> {
    log.event(process, "invoke", f, value.clone());
    match run() {
        Ok((true, stdout, _)) => {
            log.event(process, "ok", f, json!(stdout.trim()));
            Some(stdout)
        }
        Ok((false, _, stderr)) => {
            log.event(process, "info", f, json!(stderr.trim().lines().last().unwrap_or("")));
            None
        }
        Err(error) => {
            log.event(process, "fail", f, json!(error));
            None
        }
    }
}

/// One round of a client (see the module doc); `round` makes the token unique.
pub fn round(log: &LockLog, process: u64, round: u64, endpoint: &str) {
    let token = format!("p{process}r{round}");
    let grant_sent = log.now_ns();
    let ttl = TTL_S.to_string();
    let Some(stdout) =
        logged(log, process, "grant", &json!(TTL_S), || etcdctl(endpoint, &["lease", "grant", &ttl], None))
    else {
        return;
    };
    let Some(lease) = parse_grant(&stdout) else { return };
    let mut deadline_ns = grant_sent + TTL_S * 1_000_000_000;
    let acquire = acquire_txn(&token, &lease);
    let acquired = logged(log, process, "acquire", &json!(token), || etcdctl(endpoint, &["txn"], Some(&acquire)));
    let held = match acquired {
        Some(stdout) if stdout.trim_start().starts_with("SUCCESS") => true,
        // FAILURE: someone else holds it; or unknown: give the lease back either way.
        _ => false,
    };
    if held {
        let start_ns = log.now_ns();
        let keepalive_sent = log.now_ns();
        let kept = logged(log, process, "keepalive", &json!(lease), || {
            etcdctl(endpoint, &["lease", "keep-alive", "--once", &lease], None)
        });
        if kept.is_some_and(|stdout| stdout.contains("keepalived")) {
            deadline_ns = deadline_ns.max(keepalive_sent + TTL_S * 1_000_000_000);
        }
        let hold_until = start_ns + HOLD.as_nanos() as u64;
        let now = log.now_ns();
        if now < hold_until {
            std::thread::sleep(Duration::from_nanos(hold_until - now));
        }
        let release_sent = log.now_ns();
        let release = release_txn(&token);
        let _ = logged(log, process, "release", &json!(token), || etcdctl(endpoint, &["txn"], Some(&release)));
        log.held(Held {
            process,
            token,
            start_ns,
            // A lease that ran out before the acquire returned never covered the hold.
            end_ns: release_sent.min(deadline_ns).max(start_ns),
            deadline_ended: deadline_ns < release_sent,
        });
    }
    let _ = logged(log, process, "revoke", &json!(lease), || etcdctl(endpoint, &["lease", "revoke", &lease], None));
}

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockReport {
    /// Holding intervals.
    pub intervals: u64,
    /// Of them, cut short by the lease deadline.
    pub deadline_ended: u64,
    /// Overlapping pairs (the first 20), and how many in all.
    pub overlaps: Vec<String>,
    /// Overlapping pairs, all of them.
    pub overlap_count: u64,
}

impl LockReport {
    /// Whether no two intervals overlap.
    pub fn valid(&self) -> bool {
        self.overlap_count == 0
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut text = format!(
            "lock: {} holding intervals ({} cut short by the lease deadline)\n",
            self.intervals, self.deadline_ended
        );
        if self.valid() {
            text.push_str("lock: no two holders overlap\n");
        } else {
            text.push_str(&format!("lock: {} overlapping pairs; the first:\n", self.overlap_count));
            for overlap in &self.overlaps {
                text.push_str(&format!("  {overlap}\n"));
            }
        }
        text
    }
}

/// Finds every pair of overlapping holding intervals.
pub fn check(intervals: &[Held]) -> LockReport {
    let mut sorted: Vec<&Held> = intervals.iter().collect();
    sorted.sort_by_key(|held| (held.start_ns, held.end_ns));
    let mut report = LockReport {
        intervals: intervals.len() as u64,
        deadline_ended: intervals.iter().filter(|held| held.deadline_ended).count() as u64,
        ..LockReport::default()
    };
    for (index, first) in sorted.iter().enumerate() {
        for second in sorted[index + 1..].iter().take_while(|second| second.start_ns < first.end_ns) {
            report.overlap_count += 1;
            if report.overlaps.len() < 20 {
                report.overlaps.push(format!(
                    "{} held {:.3}..{:.3} s and {} held {:.3}..{:.3} s",
                    first.token,
                    first.start_ns as f64 / 1e9,
                    first.end_ns as f64 / 1e9,
                    second.token,
                    second.start_ns as f64 / 1e9,
                    second.end_ns as f64 / 1e9
                ));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(token: &str, start_ns: u64, end_ns: u64) -> Held {
        Held { process: 0, token: token.to_owned(), start_ns, end_ns, deadline_ended: false }
    }

    #[test]
    fn etcdctl_text() {
        assert_eq!(parse_grant("lease 694d7c9d0a8a2a0b granted with TTL(5s)\n"), Some("694d7c9d0a8a2a0b".to_owned()));
        assert_eq!(parse_grant("Error: etcdserver: no leader"), None);
        assert_eq!(acquire_txn("p1r2", "abc"), "create(\"lsj/lock\") = \"0\"\n\nput lsj/lock p1r2 --lease=abc\n\n\n");
        assert_eq!(release_txn("p1r2"), "value(\"lsj/lock\") = \"p1r2\"\n\ndel lsj/lock\n\n\n");
    }

    #[test]
    fn overlaps_are_found_and_touching_intervals_are_not() {
        let report = check(&[held("a", 0, 10), held("b", 10, 20), held("c", 30, 40)]);
        assert!(report.valid(), "{}", report.text());
        assert_eq!(report.intervals, 3);
        let report = check(&[held("a", 0, 10), held("b", 5, 20), held("c", 8, 9), held("d", 30, 40)]);
        assert_eq!(report.overlap_count, 3, "{}", report.text());
        assert!(report.overlaps[0].starts_with("a held 0.000..0.000 s and b held"), "{}", report.overlaps[0]);
        assert!(report.text().contains("3 overlapping pairs"));
    }
}
