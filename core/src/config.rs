//! Tunables of one member. Limits carry a `_max` suffix; durations are in ms.

use crate::types::{GroupId, Millis, NodeId};

/// A deliberately broken behaviour, compiled in only with the `mutations` feature,
/// so that the simulator can prove it catches real consensus bugs.
#[cfg(feature = "mutations")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Commit entries of an earlier term by counting replicas (violates Figure 8).
    CommitOldTerm,
    /// Send a vote before the vote is durable.
    VoteBeforePersist,
    /// Answer ReadIndex without confirming leadership with a quorum.
    ReadWithoutQuorum,
    /// Grant votes without checking that the candidate's log is up to date.
    VoteIgnoresLog,
}

#[cfg(feature = "mutations")]
impl Mutation {
    /// Every mutation, for sweeps.
    pub const ALL: [Mutation; 4] =
        [Mutation::CommitOldTerm, Mutation::VoteBeforePersist, Mutation::ReadWithoutQuorum, Mutation::VoteIgnoresLog];

    /// Parses the kebab-case name used on command lines.
    pub fn from_name(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The kebab-case name used on command lines.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::CommitOldTerm => "commit-old-term",
            Mutation::VoteBeforePersist => "vote-before-persist",
            Mutation::ReadWithoutQuorum => "read-without-quorum",
            Mutation::VoteIgnoresLog => "vote-ignores-log",
        }
    }
}

/// Configuration of one member of one Raft group.
#[derive(Debug, Clone)]
pub struct Config {
    /// This member's id (non-zero).
    pub id: NodeId,
    /// The group this member belongs to.
    pub group: GroupId,
    /// Seed of the actor's random number generator (election timeouts).
    pub seed: u64,
    /// Minimum election timeout; each timeout is drawn from `[min, 2 * min)`.
    pub election_timeout_ms: Millis,
    /// Interval between leader heartbeats; must be well below the election timeout.
    pub heartbeat_interval_ms: Millis,
    /// Run a pre-vote round before disrupting the cluster with a new term.
    pub pre_vote: bool,
    /// Leaders step down when they have not heard from a quorum for an election timeout.
    pub check_quorum: bool,
    /// Serve linearizable reads from a leader lease instead of a heartbeat round.
    /// Safe only while clocks drift less than `clock_drift_max_ms` per election timeout.
    pub lease_reads: bool,
    /// The clock drift the lease tolerates over one election timeout.
    pub clock_drift_max_ms: Millis,
    /// Append messages in flight to one follower in replicate state.
    pub inflight_msgs_max: u32,
    /// Bytes of entries per append message (at least one entry is always sent).
    pub append_bytes_max: u64,
    /// Bytes of snapshot data per chunk.
    pub snapshot_chunk_bytes_max: u64,
    /// Largest snapshot a follower accepts.
    pub snapshot_bytes_max: u64,
    /// Take a snapshot once this many entries were applied since the last one.
    pub snapshot_threshold_entries: u64,
    /// Entries kept in the log behind a snapshot, so slow followers need not get one.
    pub compaction_lag_entries: u64,
    /// Client requests waiting for commit or for a read index.
    pub pending_requests_max: u32,
    /// A client request not answered within this time fails with `Timeout`.
    pub request_timeout_ms: Millis,
    /// Bytes of one proposal.
    pub proposal_bytes_max: u64,
    /// A planted bug, for the simulator's self-test only.
    #[cfg(feature = "mutations")]
    pub mutation: Option<Mutation>,
}

impl Config {
    /// Defaults suited to a LAN: 1 s election timeout, 100 ms heartbeats.
    pub fn new(id: NodeId, group: GroupId, seed: u64) -> Config {
        Config {
            id,
            group,
            seed,
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            pre_vote: true,
            check_quorum: true,
            lease_reads: false,
            clock_drift_max_ms: 100,
            inflight_msgs_max: 64,
            append_bytes_max: 1 << 20,
            snapshot_chunk_bytes_max: 1 << 20,
            snapshot_bytes_max: 1 << 32,
            snapshot_threshold_entries: 10_000,
            compaction_lag_entries: 1_000,
            pending_requests_max: 10_000,
            request_timeout_ms: 10_000,
            proposal_bytes_max: 1536 * 1024,
            #[cfg(feature = "mutations")]
            mutation: None,
        }
    }

    /// Checks the relations between the values.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("id must be non-zero".into());
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms * 2 > self.election_timeout_ms {
            return Err(format!(
                "heartbeat_interval_ms ({}) must be positive and at most half of election_timeout_ms ({})",
                self.heartbeat_interval_ms, self.election_timeout_ms
            ));
        }
        if self.lease_reads && self.clock_drift_max_ms >= self.election_timeout_ms {
            return Err("clock_drift_max_ms must be below election_timeout_ms when lease_reads is on".into());
        }
        if self.inflight_msgs_max == 0 || self.append_bytes_max == 0 || self.snapshot_chunk_bytes_max == 0 {
            return Err("inflight_msgs_max, append_bytes_max and snapshot_chunk_bytes_max must be positive".into());
        }
        if self.pending_requests_max == 0 {
            return Err("pending_requests_max must be positive".into());
        }
        Ok(())
    }

    /// True if the planted bug `m` is active.
    #[cfg(feature = "mutations")]
    pub fn mutated(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }
}
