//! What a leader knows about each follower's log, and the flow control over it.

use std::collections::VecDeque;

use crate::types::LogIndex;

/// How a leader currently replicates to one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// The follower's log position is unknown: send one append at a time and wait.
    Probe,
    /// The follower is in sync: stream appends, up to the in-flight limit.
    Replicate,
    /// The follower needs a snapshot: stream its chunks.
    Snapshot {
        /// The index of the snapshot being sent.
        index: LogIndex,
        /// The next byte to send.
        offset: u64,
    },
}

/// The leader's view of one follower.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The highest index known to be replicated (and durable) on the follower.
    pub match_index: LogIndex,
    /// The next index to send.
    pub next_index: LogIndex,
    /// The replication state.
    pub state: ProgressState,
    /// In probe or snapshot state: a message is outstanding, wait for an answer.
    pub paused: bool,
    /// Last index of each append in flight (replicate state), oldest first.
    pub inflights: VecDeque<LogIndex>,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Acknowledged an append since the last heartbeat.
    pub advanced_since_heartbeat: bool,
    /// The highest heartbeat round the follower acknowledged.
    pub acked_round: u64,
}

impl Progress {
    /// A follower about which nothing is known yet.
    pub fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            paused: false,
            inflights: VecDeque::new(),
            recent_active: false,
            advanced_since_heartbeat: false,
            acked_round: 0,
        }
    }

    /// Restarts probing at `next_index`.
    pub fn become_probe(&mut self, next_index: LogIndex) {
        self.state = ProgressState::Probe;
        self.next_index = next_index.max(self.match_index + 1);
        self.paused = false;
        self.inflights.clear();
    }

    /// Starts streaming after the follower's match.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.paused = false;
        self.inflights.clear();
    }

    /// Starts sending the snapshot at `index`.
    pub fn become_snapshot(&mut self, index: LogIndex) {
        self.state = ProgressState::Snapshot { index, offset: 0 };
        self.paused = false;
        self.inflights.clear();
    }

    /// Records an acknowledged match; returns whether it advanced.
    pub fn update_match(&mut self, index: LogIndex) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
            self.advanced_since_heartbeat = true;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflights.front().is_some_and(|&last| last <= index) {
            self.inflights.pop_front();
        }
        advanced
    }

    /// True if no more appends may be sent now.
    pub fn is_paused(&self, inflight_max: u32) -> bool {
        match self.state {
            ProgressState::Probe => self.paused,
            ProgressState::Replicate => self.inflights.len() >= inflight_max as usize,
            ProgressState::Snapshot { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_free_on_ack() {
        let mut p = Progress::new(1);
        p.become_replicate();
        p.inflights.extend([3, 5, 8]);
        assert!(p.is_paused(3));
        assert!(p.update_match(5));
        assert_eq!(p.inflights, VecDeque::from([8]));
        assert!(!p.is_paused(3));
        assert!(!p.update_match(4));
        assert_eq!(p.match_index, 5);
    }

    #[test]
    fn probe_never_goes_below_match() {
        let mut p = Progress::new(10);
        p.update_match(6);
        p.become_probe(2);
        assert_eq!(p.next_index, 7);
    }
}
