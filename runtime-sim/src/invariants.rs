//! Raft's safety properties, checked on every step of every member.
//!
//! - **Election safety**: at most one leader per term, over every member ever seen.
//! - **Committed entries never change** (commit safety): once any member reports
//!   index `i` committed with entry `e`, no member ever reports a different entry
//!   committed at `i`.
//! - **Leader completeness**: when a member becomes leader of term `t`, its log holds
//!   every entry known committed in an earlier term (those behind its snapshot are
//!   covered by it). The commit's term is the observer's term when the commit was
//!   first seen, which is at least the term in which it happened: a candidate
//!   paused after winning its votes may become leader of an old term long after
//!   a newer term committed entries it cannot hold, and Raft allows that.
//! - **State-machine safety**: every member applies the same entry at each index
//!   ([`Observed`] reports each apply to an [`ApplyLog`]).
//! - **Log matching**: if two logs hold an entry with the same index and term, they
//!   are identical up to that index ([`Invariants::check_log_matching`], run
//!   periodically and at the end, since it compares whole logs).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use lockstep_core::state_machine::RestoreError;
use lockstep_core::{Entry, LogIndex, Millis, NodeId, Payload, Raft, Role, StateMachine, Term};

use crate::trace::fnv_hash;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: &'static str,
    /// What exactly was seen.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// Locks a mutex, ignoring poisoning: a panic already fails the run, and the
/// report still wants to read the state.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every apply by every member: index -> (hash of the payload, first member).
#[derive(Debug, Default)]
pub struct ApplyLog {
    applied: BTreeMap<LogIndex, (u64, NodeId)>,
    applies: u64,
    violation: Option<Violation>,
}

impl ApplyLog {
    fn record(&mut self, member: NodeId, index: LogIndex, payload: &Payload) {
        self.applies += 1;
        let hash = fnv_hash(payload);
        match self.applied.get(&index) {
            None => {
                self.applied.insert(index, (hash, member));
            }
            Some(&(first_hash, first_member)) if first_hash != hash && self.violation.is_none() => {
                self.violation = Some(Violation {
                    invariant: "state-machine safety",
                    detail: format!(
                        "n{member} applied {payload:?} at index {index}, but n{first_member} applied a different \
                         entry there"
                    ),
                });
            }
            Some(_) => {}
        }
    }

    /// Applies seen, by all members together.
    pub fn applies(&self) -> u64 {
        self.applies
    }

    /// The highest index any member applied.
    pub fn highest(&self) -> LogIndex {
        self.applied.keys().next_back().copied().unwrap_or(0)
    }
}

/// A state machine that reports every apply to a shared [`ApplyLog`].
#[derive(Debug)]
pub struct Observed<S> {
    inner: S,
    member: NodeId,
    log: Arc<Mutex<ApplyLog>>,
}

impl<S> Observed<S> {
    /// Wraps `inner`, reporting applies as `member`.
    pub fn new(inner: S, member: NodeId, log: Arc<Mutex<ApplyLog>>) -> Observed<S> {
        Observed { inner, member, log }
    }

    /// The wrapped state machine.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the state machine.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: StateMachine> StateMachine for Observed<S> {
    fn apply(&mut self, index: LogIndex, payload: &Payload) -> Vec<u8> {
        lock(&self.log).record(self.member, index, payload);
        self.inner.apply(index, payload)
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        self.inner.query(query)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.inner.snapshot()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), RestoreError> {
        self.inner.restore(data)
    }

    fn checkpoint(&mut self, index: LogIndex) -> Option<Vec<u8>> {
        self.inner.checkpoint(index)
    }

    fn validate(&self, command: &[u8]) -> Result<(), String> {
        self.inner.validate(command)
    }

    // The leader duties have default implementations in the trait: without
    // these, the wrapper would silently replace the inner machine's with them.

    fn on_leadership(&mut self, now: Millis, leader: bool) {
        self.inner.on_leadership(now, leader)
    }

    fn leader_proposals(&mut self, now: Millis, max: usize) -> Vec<Vec<u8>> {
        self.inner.leader_proposals(now, max)
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.inner.next_deadline()
    }

    fn leader_request(&mut self, now: Millis, request: &[u8]) -> Vec<u8> {
        self.inner.leader_request(now, request)
    }
}

/// The per-step invariants and what they remember.
#[derive(Debug, Default)]
pub struct Invariants {
    leaders: BTreeMap<Term, NodeId>,
    /// Entry term, entry hash, and the term in which the commit was first seen.
    committed: BTreeMap<LogIndex, (Term, u64, Term)>,
    commit_seen: BTreeMap<NodeId, LogIndex>,
    leader_checked: BTreeSet<(Term, NodeId)>,
    violation: Option<Violation>,
    apply_log: Arc<Mutex<ApplyLog>>,
}

impl Invariants {
    /// Fresh invariants with their apply log.
    pub fn new() -> Invariants {
        Invariants::default()
    }

    /// The log that [`Observed`] state machines must report to.
    pub fn apply_log(&self) -> Arc<Mutex<ApplyLog>> {
        self.apply_log.clone()
    }

    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<Violation> {
        self.violation.clone().or_else(|| lock(&self.apply_log).violation.clone())
    }

    /// Records a violation found elsewhere (the first one wins).
    pub fn fail(&mut self, invariant: &'static str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { invariant, detail });
        }
    }

    /// Terms that had a leader, and who.
    pub fn leaders(&self) -> &BTreeMap<Term, NodeId> {
        &self.leaders
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> LogIndex {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    /// Checks what can be checked after one step of `member`.
    pub fn after_step(&mut self, member: NodeId, raft: &Raft) {
        if self.violation.is_some() {
            return;
        }
        let term = raft.term();
        if raft.role() == Role::Leader {
            match self.leaders.get(&term) {
                Some(&other) if other != member => {
                    self.fail("election safety", format!("n{member} and n{other} were both leader in term {term}"))
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(term, member);
                }
            }
            if self.leader_checked.insert((term, member)) {
                self.check_leader_completeness(member, raft);
            }
        }
        let seen = self.commit_seen.get(&member).copied().unwrap_or(0);
        let commit = raft.commit_index();
        if commit > seen {
            for index in (seen + 1).max(raft.first_index())..=commit {
                let Some(entry) = raft.entry(index) else { continue };
                self.record_commit(member, entry, term);
            }
            self.commit_seen.insert(member, commit);
        }
    }

    fn record_commit(&mut self, member: NodeId, entry: &Entry, seen_term: Term) {
        let hash = fnv_hash(entry);
        match self.committed.get(&entry.index) {
            None => {
                self.committed.insert(entry.index, (entry.term, hash, seen_term));
            }
            Some(&(term, known, _)) if known != hash => self.fail(
                "commit safety",
                format!(
                    "n{member} committed {entry:?} at index {}, where an entry of term {term} was committed before",
                    entry.index
                ),
            ),
            Some(_) => {}
        }
    }

    fn check_leader_completeness(&mut self, member: NodeId, raft: &Raft) {
        let first = raft.first_index();
        let mut missing = None;
        for (&index, &(term, hash, seen_term)) in self.committed.range(first..) {
            if seen_term >= raft.term() {
                continue;
            }
            let found = raft.entry(index);
            if !found.is_some_and(|e| e.term == term && fnv_hash(e) == hash) {
                missing = Some((index, term, found.map(|e| e.term)));
                break;
            }
        }
        if let Some((index, term, found)) = missing {
            self.fail(
                "leader completeness",
                format!(
                    "n{member} became leader of term {} without committed entry {index} (term {term}); its log \
                     has {} there (first index {first}, last index {})",
                    raft.term(),
                    found.map_or("nothing".to_string(), |t| format!("term {t}")),
                    raft.last_index()
                ),
            );
        }
    }

    /// Log matching across every pair of logs given.
    pub fn check_log_matching(&mut self, logs: &[(NodeId, &Raft)]) {
        for (i, (a, left)) in logs.iter().enumerate() {
            for (b, right) in &logs[i + 1..] {
                if let Some(detail) = log_mismatch(left, right) {
                    self.fail("log matching", format!("n{a} and n{b}: {detail}"));
                    return;
                }
            }
        }
    }
}

/// Where two logs break log matching, if they do.
fn log_mismatch(left: &Raft, right: &Raft) -> Option<String> {
    let first = left.first_index().max(right.first_index());
    let last = left.last_index().min(right.last_index());
    if first > last {
        return None;
    }
    // The highest index where both hold an entry of the same term.
    let mut matched = None;
    for index in (first..=last).rev() {
        if left.term_at(index).is_some() && left.term_at(index) == right.term_at(index) {
            matched = Some(index);
            break;
        }
    }
    let matched = matched?;
    for index in first..=matched {
        let (x, y) = (left.entry(index), right.entry(index));
        if x != y {
            return Some(format!(
                "both hold term {:?} at index {matched}, but differ at index {index}: {x:?} vs {y:?}",
                left.term_at(matched)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state machine with leader duties, recording what it is told.
    #[derive(Debug, Default)]
    struct Duties {
        leadership: Vec<(Millis, bool)>,
        asked: Vec<(Millis, usize)>,
        requests: Vec<(Millis, Vec<u8>)>,
    }

    impl StateMachine for Duties {
        fn apply(&mut self, _index: LogIndex, _payload: &Payload) -> Vec<u8> {
            Vec::new()
        }

        fn query(&self, _query: &[u8]) -> Vec<u8> {
            Vec::new()
        }

        fn snapshot(&self) -> Vec<u8> {
            Vec::new()
        }

        fn restore(&mut self, _data: &[u8]) -> Result<(), RestoreError> {
            Ok(())
        }

        fn validate(&self, _command: &[u8]) -> Result<(), String> {
            Ok(())
        }

        fn on_leadership(&mut self, now: Millis, leader: bool) {
            self.leadership.push((now, leader));
        }

        fn leader_proposals(&mut self, now: Millis, max: usize) -> Vec<Vec<u8>> {
            self.asked.push((now, max));
            vec![b"revoke".to_vec()]
        }

        fn next_deadline(&self) -> Option<Millis> {
            Some(42)
        }

        fn leader_request(&mut self, now: Millis, request: &[u8]) -> Vec<u8> {
            self.requests.push((now, request.to_vec()));
            b"renewed".to_vec()
        }
    }

    #[test]
    fn observed_forwards_leader_duties() {
        let mut observed = Observed::new(Duties::default(), 1, Arc::new(Mutex::new(ApplyLog::default())));
        observed.on_leadership(10, true);
        assert_eq!(observed.leader_proposals(11, 3), vec![b"revoke".to_vec()]);
        assert_eq!(observed.next_deadline(), Some(42));
        assert_eq!(observed.leader_request(13, b"keep-alive"), b"renewed".to_vec());
        assert_eq!(observed.inner().requests, vec![(13, b"keep-alive".to_vec())]);
        observed.on_leadership(12, false);
        assert_eq!(observed.inner().leadership, vec![(10, true), (12, false)]);
        assert_eq!(observed.inner().asked, vec![(11, 3)]);
    }
}
