//! The in-memory view of the replicated log: a snapshot point followed by entries.

use std::collections::VecDeque;

use super::message::Entry;
use crate::types::{LogIndex, Term};

/// Approximate encoded size of an entry, for batching.
pub fn entry_size(entry: &Entry) -> u64 {
    let payload = match &entry.payload {
        super::message::Payload::Noop => 0,
        super::message::Payload::Command(bytes) => bytes.len() as u64,
        super::message::Payload::Membership(m) => 8 * (m.voters.len() + m.outgoing.len() + m.learners.len()) as u64,
    };
    payload + 32
}

/// The log after the last snapshot, plus the commit, apply and durability marks.
///
/// Invariants: `snapshot_index <= applied <= commit <= last_index()`, and
/// `entries[i].index == snapshot_index + 1 + i`.
#[derive(Debug, Clone)]
pub struct RaftLog {
    snapshot_index: LogIndex,
    snapshot_term: Term,
    entries: VecDeque<Entry>,
    /// The highest index known committed.
    pub commit: LogIndex,
    /// The highest index applied to the state machine.
    pub applied: LogIndex,
    /// The highest index such that the log up to it is durable on this member.
    pub persisted: LogIndex,
}

impl RaftLog {
    /// A log that starts right after a snapshot at `(index, term)`.
    pub fn new(snapshot_index: LogIndex, snapshot_term: Term) -> RaftLog {
        RaftLog {
            snapshot_index,
            snapshot_term,
            entries: VecDeque::new(),
            commit: snapshot_index,
            applied: snapshot_index,
            persisted: snapshot_index,
        }
    }

    /// The index of the snapshot the log starts after.
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }

    /// The term of the snapshot the log starts after.
    pub fn snapshot_term(&self) -> Term {
        self.snapshot_term
    }

    /// The first index held in memory.
    pub fn first_index(&self) -> LogIndex {
        self.snapshot_index + 1
    }

    /// The last index (the snapshot's if the log is empty).
    pub fn last_index(&self) -> LogIndex {
        self.snapshot_index + self.entries.len() as u64
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot_term, |e| e.term)
    }

    /// The term at `index`, if known (compacted and future indexes are unknown).
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }

    /// True if a log ending at `(last_index, last_term)` is at least as up to date
    /// as this one (Raft §5.4.1).
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Appends `entries`, first removing any entry at or after `entries[0].index`.
    /// Returns the index the removal started at, if anything was removed.
    pub fn append(&mut self, entries: &[Entry]) -> Option<LogIndex> {
        let first = entries.first()?;
        assert!(first.index > self.commit, "truncating committed entry {} (commit {})", first.index, self.commit);
        assert!(first.index <= self.last_index() + 1, "gap: append at {} after {}", first.index, self.last_index());
        let truncated = (first.index <= self.last_index()).then_some(first.index);
        self.entries.truncate((first.index - self.snapshot_index - 1) as usize);
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index, first.index + i as u64, "entries must be contiguous");
            assert!(entry.term >= self.last_term(), "terms must not decrease");
            self.entries.push_back(entry.clone());
        }
        if let Some(from) = truncated {
            self.persisted = self.persisted.min(from - 1);
        }
        truncated
    }

    /// Up to `bytes_max` bytes of entries starting at `from` (at least one entry if
    /// any exists).
    pub fn entries_from(&self, from: LogIndex, bytes_max: u64) -> Vec<Entry> {
        assert!(from > self.snapshot_index, "entries from {from} are compacted");
        let mut out = Vec::new();
        let mut size = 0;
        let mut index = from;
        while let Some(entry) = self.entry(index) {
            size += entry_size(entry);
            if !out.is_empty() && size > bytes_max {
                break;
            }
            out.push(entry.clone());
            index += 1;
        }
        out
    }

    /// The last index `<= index` whose term is `<= term`: where a leader probing
    /// at `(index, term)` can resume after a rejection.
    pub fn hint(&self, index: LogIndex, term: Term) -> (LogIndex, Term) {
        let mut i = index.min(self.last_index());
        while i > self.snapshot_index {
            let t = self.term(i).unwrap_or(0);
            if t <= term {
                return (i, t);
            }
            i -= 1;
        }
        (self.snapshot_index, self.snapshot_term)
    }

    /// Raises the commit index; it never moves back.
    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        assert!(index <= self.last_index(), "commit {index} beyond last index {}", self.last_index());
        if index > self.commit {
            self.commit = index;
            true
        } else {
            false
        }
    }

    /// Drops entries up to `index` from memory (they are covered by a snapshot).
    pub fn compact(&mut self, index: LogIndex) {
        if index <= self.snapshot_index {
            return;
        }
        assert!(index <= self.applied, "compacting {index} beyond applied {}", self.applied);
        let term = self.term(index).expect("compaction point is in the log");
        let count = (index - self.snapshot_index) as usize;
        self.entries.drain(..count);
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// Replaces the log's prefix with a snapshot at `(index, term)`. Entries after it
    /// survive only if the log holds `index` with `term`; returns whether they did.
    pub fn restore(&mut self, index: LogIndex, term: Term) -> bool {
        let keep = index < self.last_index() && self.term(index) == Some(term);
        if keep {
            let count = (index - self.snapshot_index) as usize;
            self.entries.drain(..count);
        } else {
            self.entries.clear();
        }
        self.persisted = self.persisted.min(self.snapshot_index);
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.commit = self.commit.max(index);
        self.applied = index;
        keep
    }

    /// Iterates over the entries held in memory.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Payload;

    fn e(index: LogIndex, term: Term) -> Entry {
        Entry { index, term, payload: Payload::Noop }
    }

    #[test]
    fn append_truncates_conflicts_and_lowers_persisted() {
        let mut log = RaftLog::new(0, 0);
        assert_eq!(log.append(&[e(1, 1), e(2, 1), e(3, 1)]), None);
        log.persisted = 3;
        assert_eq!(log.append(&[e(2, 2)]), Some(2));
        assert_eq!(log.last_index(), 2);
        assert_eq!(log.term(2), Some(2));
        assert_eq!(log.persisted, 1);
    }

    #[test]
    #[should_panic(expected = "truncating committed entry")]
    fn never_truncates_committed() {
        let mut log = RaftLog::new(0, 0);
        log.append(&[e(1, 1), e(2, 1)]);
        log.commit_to(2);
        log.append(&[e(2, 2)]);
    }

    #[test]
    fn hint_skips_whole_terms() {
        let mut log = RaftLog::new(0, 0);
        log.append(&[e(1, 1), e(2, 1), e(3, 3), e(4, 3), e(5, 3)]);
        assert_eq!(log.hint(5, 2), (2, 1));
        assert_eq!(log.hint(9, 3), (5, 3));
        assert_eq!(log.hint(5, 0), (0, 0));
    }

    #[test]
    fn compact_and_restore() {
        let mut log = RaftLog::new(0, 0);
        log.append(&[e(1, 1), e(2, 1), e(3, 2)]);
        log.commit_to(3);
        log.applied = 2;
        log.compact(2);
        assert_eq!((log.first_index(), log.last_index(), log.term(2)), (3, 3, Some(1)));
        assert!(log.restore(2, 1) || log.last_index() == 2);
        let mut log2 = RaftLog::new(0, 0);
        log2.append(&[e(1, 1), e(2, 1), e(3, 2)]);
        assert!(log2.restore(2, 1));
        assert_eq!(log2.last_index(), 3);
        assert!(!log2.restore(5, 4));
        assert_eq!((log2.last_index(), log2.commit, log2.applied), (5, 5, 5));
    }

    #[test]
    fn batches_respect_byte_limit() {
        let mut log = RaftLog::new(0, 0);
        let big = |i| Entry { index: i, term: 1, payload: Payload::Command(vec![0; 100]) };
        log.append(&[big(1), big(2), big(3)]);
        assert_eq!(log.entries_from(1, 300).len(), 2);
        assert_eq!(log.entries_from(1, 1).len(), 1);
        assert_eq!(log.entries_from(4, 1).len(), 0);
    }
}
