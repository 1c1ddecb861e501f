//! The shape of the log as core sees it (indexes and terms, no payloads), kept by
//! the writer so that it can decide what an installed snapshot does to the log
//! and where a new segment starts, exactly as [`crate::wal::replay`] will.

use crate::types::{LogIndex, Term};

/// Runs of equal terms over the live log, plus the latest snapshot point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogShape {
    /// The latest snapshot's `(index, term)`; `(0, 0)` before any.
    snapshot: (LogIndex, Term),
    /// `(first index, term)` of each run of entries with one term, in order.
    runs: Vec<(LogIndex, Term)>,
    /// One past the last entry.
    next: LogIndex,
}

impl LogShape {
    /// A log with the given snapshot point, entries (as `(index, term)`, contiguous)
    /// and next index.
    pub(crate) fn new(
        snapshot: (LogIndex, Term),
        entries: impl IntoIterator<Item = (LogIndex, Term)>,
        next: LogIndex,
    ) -> Self {
        let mut shape = LogShape { snapshot, runs: Vec::new(), next: next.max(1) };
        let mut expected = None;
        for (index, term) in entries {
            assert!(expected.is_none_or(|e| e == index), "recovered entries are contiguous");
            if shape.runs.last().is_none_or(|r| r.1 != term) {
                shape.runs.push((index, term));
            }
            expected = Some(index + 1);
        }
        if let Some(end) = expected {
            assert_eq!(end, shape.next, "recovered entries end just before the next index");
        }
        shape
    }

    /// One past the last entry.
    pub(crate) fn snapshot_index(&self) -> LogIndex {
        self.snapshot.0
    }

    pub(crate) fn next(&self) -> LogIndex {
        self.next
    }

    fn term_of(&self, index: LogIndex) -> Option<Term> {
        if index < self.next {
            if let Some(run) = self.runs.iter().rev().find(|r| r.0 <= index) {
                return Some(run.1);
            }
        }
        (index == self.snapshot.0).then_some(self.snapshot.1)
    }

    /// Appends an entry at `index <= next`, replacing the entries from `index` on.
    pub(crate) fn append(&mut self, index: LogIndex, term: Term) {
        assert!(index >= 1 && index <= self.next, "append at {index} leaves a gap after {}", self.next - 1);
        assert!(index > self.snapshot.0, "append at {index} rewrites the snapshot at {}", self.snapshot.0);
        self.truncate(index);
        if self.runs.last().is_none_or(|r| r.1 != term) {
            self.runs.push((index, term));
        }
        self.next = index + 1;
    }

    /// Removes the entries with index `>= from`.
    pub(crate) fn truncate(&mut self, from: LogIndex) {
        assert!(from > self.snapshot.0, "truncating from {from} removes the snapshot at {}", self.snapshot.0);
        if from >= self.next {
            return;
        }
        while self.runs.last().is_some_and(|r| r.0 >= from) {
            self.runs.pop();
        }
        self.next = from;
    }

    /// Installs a snapshot at `(index, term)` the way core's log does: entries after
    /// it survive only if the log holds `index` with `term` and goes beyond it.
    /// Returns whether they did; if not, the log continues at `index + 1`.
    pub(crate) fn restore(&mut self, index: LogIndex, term: Term) -> bool {
        let kept = index + 1 < self.next && self.term_of(index) == Some(term);
        if kept {
            // Drop the runs wholly at or below `index`, then start the first at `index + 1`.
            let whole = self.runs.iter().take_while(|r| r.0 <= index).count();
            let straddling = whole > 0 && self.runs.get(whole).is_none_or(|r| r.0 > index + 1);
            let term_at_next = self.runs.get(whole.wrapping_sub(1)).map(|r| r.1);
            self.runs.drain(..whole);
            if let (true, Some(t)) = (straddling, term_at_next) {
                self.runs.insert(0, (index + 1, t));
            }
        } else {
            self.runs.clear();
            self.next = index + 1;
        }
        self.snapshot = (index, term);
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(shape: &LogShape) -> Vec<Option<Term>> {
        (0..shape.next + 1).map(|i| shape.term_of(i)).collect()
    }

    #[test]
    fn runs_follow_appends_and_truncations() {
        let mut shape = LogShape::new((0, 0), [], 1);
        for (i, t) in [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)] {
            shape.append(i, t);
        }
        assert_eq!(terms(&shape), vec![Some(0), Some(1), Some(1), Some(2), Some(2), Some(3), None]);
        shape.append(4, 4);
        assert_eq!(shape.next(), 5);
        assert_eq!(shape.term_of(4), Some(4));
        shape.truncate(2);
        assert_eq!(terms(&shape), vec![Some(0), Some(1), None]);
    }

    #[test]
    fn restore_keeps_a_matching_log_and_clears_a_conflicting_one() {
        let mut shape = LogShape::new((0, 0), [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)], 6);
        assert!(shape.restore(2, 1));
        assert_eq!(terms(&shape), vec![None, None, Some(1), Some(1), Some(2), Some(2), None]);
        assert!(!shape.restore(4, 3), "term mismatch");
        assert_eq!((shape.next(), shape.term_of(4), shape.term_of(5)), (5, Some(3), None));
        assert!(!shape.restore(4, 3), "nothing after the snapshot to keep");
        assert!(!shape.restore(9, 3), "beyond the log");
        assert_eq!(shape.next(), 10);
        shape.append(10, 3);
        assert!(!shape.restore(10, 3), "the snapshot is the last entry");
        assert_eq!(shape.next(), 11);
    }

    #[test]
    #[should_panic(expected = "leaves a gap")]
    fn appending_past_the_end_is_a_bug() {
        let mut shape = LogShape::new((0, 0), [], 1);
        shape.append(3, 1);
    }
}
