//! Replays records, in order, into the log, hard state and snapshot position they
//! describe. This is the meaning of the record stream; [`crate::wal::writer`]
//! tracks the same shape of the log ([`crate::wal::log_shape`]) while writing.

use std::collections::VecDeque;

use crate::raft::message::{Entry, HardState};
use crate::types::{LogIndex, Term};
use crate::wal::record::Record;

/// The state described by the records replayed so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replay {
    /// The last hard state record, if any.
    pub(crate) hard_state: Option<HardState>,
    /// The live entries, contiguous, ending at `next - 1`.
    pub(crate) entries: VecDeque<Entry>,
    /// The index the next appended entry may have at most: one past the last entry.
    pub(crate) next: LogIndex,
    /// The last snapshot marker.
    pub(crate) marker: Option<(LogIndex, Term)>,
}

/// An entry record whose index leaves a hole after the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplayGap {
    /// The entry's index.
    pub(crate) index: LogIndex,
    /// The largest index it could have had.
    pub(crate) expected: LogIndex,
}

impl Replay {
    /// Starts replaying at a segment whose first index is `next`: what came before
    /// it is unknown (compacted away).
    pub(crate) fn new(next: LogIndex) -> Replay {
        Replay { hard_state: None, entries: VecDeque::new(), next: next.max(1), marker: None }
    }

    /// The index of the first live entry (`next` when there is none).
    pub(crate) fn first_index(&self) -> LogIndex {
        self.next - crate::wal::bytes::to_u64(self.entries.len())
    }

    /// The term of the live entry at `index`, if there is one.
    pub(crate) fn term_of(&self, index: LogIndex) -> Option<Term> {
        let position = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(position).ok()?).map(|e| e.term)
    }

    /// Applies one record.
    pub(crate) fn apply(&mut self, record: Record) -> Result<(), ReplayGap> {
        match record {
            Record::Entry(entry) => {
                if entry.index > self.next {
                    return Err(ReplayGap { index: entry.index, expected: self.next });
                }
                self.truncate(entry.index);
                self.next = entry.index + 1;
                self.entries.push_back(entry);
            }
            Record::HardState(hard_state) => self.hard_state = Some(hard_state),
            Record::Padding { .. } => {}
            Record::TruncateFrom(from) => self.truncate(from),
            Record::Snapshot { index, term, discard_after } => {
                self.marker = Some((index, term));
                if discard_after {
                    self.discard_all(index + 1);
                } else {
                    self.drop_through(index);
                }
            }
        }
        debug_assert_eq!(self.entries.back().map_or(self.next, |e| e.index + 1), self.next);
        Ok(())
    }

    /// Removes the entries with index `>= from`.
    fn truncate(&mut self, from: LogIndex) {
        if from >= self.next {
            return;
        }
        let keep = from.saturating_sub(self.first_index());
        self.entries.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        self.next = from;
    }

    /// Removes the entries with index `<= index` (a snapshot covers them); returns
    /// how many there were.
    pub(crate) fn drop_through(&mut self, index: LogIndex) -> u64 {
        let mut dropped = 0;
        while self.entries.front().is_some_and(|e| e.index <= index) {
            self.entries.pop_front();
            dropped += 1;
        }
        self.next = self.next.max(index + 1);
        dropped
    }

    /// Removes every entry and continues the log at `next`; returns how many there were.
    pub(crate) fn discard_all(&mut self, next: LogIndex) -> u64 {
        let dropped = crate::wal::bytes::to_u64(self.entries.len());
        self.entries.clear();
        self.next = next;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Payload;

    fn entry(index: LogIndex, term: Term) -> Record {
        Record::Entry(Entry { index, term, payload: Payload::Noop })
    }

    fn shape(replay: &Replay) -> Vec<(LogIndex, Term)> {
        replay.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn entries_truncate_and_markers() {
        let mut replay = Replay::new(1);
        for i in 1..=5 {
            replay.apply(entry(i, 1)).expect("contiguous");
        }
        replay.apply(entry(3, 2)).expect("overwrites");
        assert_eq!(shape(&replay), vec![(1, 1), (2, 1), (3, 2)]);
        assert_eq!(replay.apply(entry(5, 2)), Err(ReplayGap { index: 5, expected: 4 }));
        replay.apply(Record::TruncateFrom(3)).expect("truncate");
        assert_eq!(replay.next, 3);
        replay.apply(Record::Snapshot { index: 1, term: 1, discard_after: false }).expect("marker");
        assert_eq!(shape(&replay), vec![(2, 1)]);
        assert_eq!(replay.term_of(2), Some(1));
        assert_eq!(replay.term_of(1), None);
        replay.apply(Record::Snapshot { index: 9, term: 3, discard_after: true }).expect("marker");
        assert!(replay.entries.is_empty());
        assert_eq!((replay.next, replay.first_index(), replay.marker), (10, 10, Some((9, 3))));
    }

    #[test]
    fn a_segment_can_start_after_a_compacted_prefix() {
        let mut replay = Replay::new(100);
        replay.apply(entry(100, 4)).expect("continues at the first index");
        replay.apply(entry(98, 5)).expect("overwrites below the known region");
        assert_eq!(shape(&replay), vec![(98, 5)]);
    }
}
