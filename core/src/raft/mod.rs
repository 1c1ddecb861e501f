//! Raft consensus as a sans-I/O actor.
//!
//! [`Raft`] holds one member's view of one group. Its inputs take `now`:
//! [`Raft::tick`], [`Raft::step`] (a message), [`Raft::persisted`] (a sync
//! completed), and the leader-side requests [`Raft::propose`],
//! [`Raft::propose_membership`], [`Raft::read_index`], [`Raft::transfer_leader`].
//! Its outputs are [`Command`]s queued in `out`, plus what the node composition
//! pulls: committed entries ([`Raft::next_to_apply`]), read states
//! ([`Raft::take_read_states`]) and installed snapshots
//! ([`Raft::take_installed_snapshot`]). Every input must be followed by
//! [`Raft::end_step`], which batches appends and closes the step's writes with
//! one `Sync`.
//!
//! Durability: term, vote and log writes are commands. Anything that promises
//! them to another member (a granted vote, an append or snapshot acknowledgement)
//! is held back until the driver reports the covering sync; the leader counts
//! itself towards a commit quorum only up to its own persisted index.

pub mod log;
pub mod membership;
// rkyv derives undocumented resolver types; every item in the module is documented by hand.
#[allow(missing_docs)]
pub mod message;
pub mod progress;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::config::Config;
use crate::io::{ClientError, Command};
use crate::rng::SeededRng;
use crate::types::{GroupId, LogIndex, Millis, NodeId, Term};
use log::RaftLog;
use membership::VoteResult;
use message::{Entry, HardState, Membership, Message, MessageBody, Payload, SnapshotMeta};
use progress::{Progress, ProgressState};

/// A member's role in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks whether it could win an election, without changing terms.
    PreCandidate,
    /// Campaigns in a new term.
    Candidate,
    /// Leads the group in its term.
    Leader,
}

/// A snapshot held in memory: the local one (the compaction point, which may
/// be only a state machine's checkpoint marker) or one being sent to a
/// follower that fell behind (always the full state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Describes the data.
    pub meta: SnapshotMeta,
    /// The state machine's serialized state.
    pub data: Arc<Vec<u8>>,
}

/// The outcome of a read-index request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// The context the request was made with.
    pub ctx: u64,
    /// The index a linearizable read must wait for; `None` if leadership could not
    /// be confirmed and the read must fail.
    pub index: Option<LogIndex>,
}

/// Why a member could not be rebuilt from its durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryError {
    /// The recovered log is not contiguous.
    Gap {
        /// The index expected next.
        expected: LogIndex,
        /// The index found.
        found: LogIndex,
    },
    /// The recovered log's terms decrease.
    TermsDecrease(LogIndex),
    /// A recovered membership is invalid.
    BadMembership(String),
    /// The snapshot's data does not match its checksum or size.
    BadSnapshot(String),
    /// The configuration is invalid.
    BadConfig(String),
}

impl std::fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryError::Gap { expected, found } => {
                write!(f, "log has a gap: expected index {expected}, found {found}")
            }
            RecoveryError::TermsDecrease(i) => write!(f, "log terms decrease at index {i}"),
            RecoveryError::BadMembership(why) => write!(f, "invalid membership in the log: {why}"),
            RecoveryError::BadSnapshot(why) => write!(f, "invalid snapshot: {why}"),
            RecoveryError::BadConfig(why) => write!(f, "invalid configuration: {why}"),
        }
    }
}

impl std::error::Error for RecoveryError {}

#[derive(Debug, Clone)]
struct SyncRecord {
    id: u64,
    last_index: LogIndex,
    hard_state: HardState,
    snapshot: Option<Snapshot>,
}

#[derive(Debug, Clone)]
struct PendingRead {
    ctx: u64,
    from: NodeId,
    index: LogIndex,
    round: u64,
}

#[derive(Debug, Clone)]
struct IncomingSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// One member of one Raft group.
#[derive(Debug)]
pub struct Raft {
    config: Config,
    rng: SeededRng,
    term: Term,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    membership: Membership,
    /// Memberships in the log (after the snapshot), plus the snapshot's first.
    membership_log: Vec<(LogIndex, Membership)>,
    snapshot: Option<Snapshot>,

    election_deadline: Millis,
    heartbeat_deadline: Millis,
    check_quorum_deadline: Millis,
    last_leader_contact: Option<Millis>,

    votes: BTreeMap<NodeId, bool>,

    progress: BTreeMap<NodeId, Progress>,
    round: u64,
    rounds_sent: VecDeque<(u64, Millis)>,
    lease_until: Millis,
    /// A `TimeoutNow` went out in this term: no more lease reads in it.
    lease_forfeited: bool,
    pending_reads: VecDeque<PendingRead>,
    reads_awaiting_commit: Vec<(u64, NodeId)>,
    broadcast_round: bool,
    broadcast_append: bool,
    /// The commit index advanced in this step: followers are told at once,
    /// with an empty append if no entries go to them (as etcd's raft does), so
    /// that they apply, answer reads and notify watchers without waiting for
    /// the next write or heartbeat.
    broadcast_commit: bool,
    transfer: Option<(NodeId, Millis)>,

    read_states: Vec<ReadState>,

    persisted_hard_state: HardState,
    hard_state_dirty: bool,
    writes_pending: bool,
    sync_issued: u64,
    sync_done: u64,
    sync_records: VecDeque<SyncRecord>,
    deferred: VecDeque<(u64, Message)>,
    pending_snapshot: Option<Snapshot>,

    incoming: Option<IncomingSnapshot>,
    installed: Option<Snapshot>,
    snapshot_in_progress: bool,
    /// The snapshot sent to followers that need one: the state machine's full
    /// state at an applied index, made on demand ([`Raft::offer_snapshot`])
    /// because the local snapshot may be a checkpoint marker, and dropped once
    /// no transfer uses it.
    outgoing: Option<Snapshot>,
    /// A follower needs a snapshot and `outgoing` is missing or too old.
    outgoing_wanted: bool,

    /// Commands for the driver, drained by the node composition.
    pub(crate) out: Vec<Command>,
}

impl Raft {
    /// Rebuilds a member from its durable state. With no snapshot the log starts at
    /// index 0 with an empty membership (a member waiting to be added).
    pub fn new(
        config: Config,
        hard_state: HardState,
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
        now: Millis,
    ) -> Result<Raft, RecoveryError> {
        config.validate().map_err(RecoveryError::BadConfig)?;
        let (snap_index, snap_term, snap_membership) = match &snapshot {
            Some(s) => {
                if s.data.len() as u64 != s.meta.size || crc32c::crc32c(&s.data) != s.meta.checksum {
                    return Err(RecoveryError::BadSnapshot(format!(
                        "snapshot at index {} does not match its size or checksum",
                        s.meta.index
                    )));
                }
                (s.meta.index, s.meta.term, s.meta.membership.clone())
            }
            None => (0, 0, Membership::default()),
        };
        let mut log = RaftLog::new(snap_index, snap_term);
        let mut membership_log = vec![(snap_index, snap_membership.clone())];
        let mut membership = snap_membership;
        // Entries at or before the snapshot are covered by it; an entry at the
        // snapshot's index with another term means the rest of the log is obsolete.
        let mut usable = Vec::new();
        for entry in entries {
            if entry.index < snap_index {
                continue;
            }
            if entry.index == snap_index {
                if entry.term != snap_term {
                    break;
                }
                continue;
            }
            let expected = snap_index + 1 + usable.len() as u64;
            if entry.index != expected {
                return Err(RecoveryError::Gap { expected, found: entry.index });
            }
            if entry.term < log.snapshot_term() || usable.last().is_some_and(|e: &Entry| e.term > entry.term) {
                return Err(RecoveryError::TermsDecrease(entry.index));
            }
            if let Payload::Membership(m) = &entry.payload {
                m.validate().map_err(|e| RecoveryError::BadMembership(e.to_string()))?;
                membership = m.clone();
                membership_log.push((entry.index, m.clone()));
            }
            usable.push(entry);
        }
        log.append(&usable);
        log.persisted = log.last_index();
        let rng = SeededRng::new(config.seed ^ config.id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut raft = Raft {
            config,
            rng,
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: None,
            log,
            membership,
            membership_log,
            snapshot,
            election_deadline: now,
            heartbeat_deadline: now,
            check_quorum_deadline: now,
            last_leader_contact: None,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            round: 0,
            rounds_sent: VecDeque::new(),
            lease_until: 0,
            lease_forfeited: false,
            pending_reads: VecDeque::new(),
            reads_awaiting_commit: Vec::new(),
            broadcast_round: false,
            broadcast_append: false,
            broadcast_commit: false,
            transfer: None,
            read_states: Vec::new(),
            persisted_hard_state: hard_state,
            hard_state_dirty: false,
            writes_pending: false,
            sync_issued: 0,
            sync_done: 0,
            sync_records: VecDeque::new(),
            deferred: VecDeque::new(),
            pending_snapshot: None,
            incoming: None,
            installed: None,
            snapshot_in_progress: false,
            outgoing: None,
            outgoing_wanted: false,
            out: Vec::new(),
        };
        raft.reset_election_deadline(now);
        Ok(raft)
    }

    /// Persists a snapshot as part of this step's writes (used at bootstrap).
    pub(crate) fn save_initial_snapshot(&mut self, snapshot: Snapshot) {
        self.out.push(Command::SaveSnapshot { meta: snapshot.meta.clone(), data: snapshot.data.to_vec() });
        self.writes_pending = true;
    }

    // ----- getters -------------------------------------------------------------

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The group's id.
    pub fn group(&self) -> GroupId {
        self.config.group
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The vote cast in the current term.
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this member knows of in its term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> LogIndex {
        self.log.commit
    }

    /// The highest index applied to the state machine.
    pub fn applied_index(&self) -> LogIndex {
        self.log.applied
    }

    /// The highest index known durable on this member.
    pub fn persisted_index(&self) -> LogIndex {
        self.log.persisted
    }

    /// The first index held in the in-memory log.
    pub fn first_index(&self) -> LogIndex {
        self.log.first_index()
    }

    /// The last index of the log.
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// The entry at `index`, if held in memory.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The term of the entry at `index`, if known.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// The membership in force (the latest one in the log).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The membership in force at `index` (which must not be compacted).
    pub fn membership_at(&self, index: LogIndex) -> &Membership {
        self.membership_log
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, m)| m)
            .expect("membership at a compacted index")
    }

    /// The index of the latest membership entry (the snapshot's index if the log
    /// holds none).
    pub fn last_membership_index(&self) -> LogIndex {
        self.membership_log.last().map_or(0, |(i, _)| *i)
    }

    /// The latest durable snapshot held in memory.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// True when a follower needs a snapshot and none is ready to send: the
    /// node then hands the state machine's full state to
    /// [`Raft::offer_snapshot`].
    pub fn wants_snapshot_to_send(&self) -> bool {
        self.outgoing_wanted && self.role == Role::Leader
    }

    /// The state machine's full state as of the applied `index`, to send to
    /// the followers that need a snapshot (see [`Raft::wants_snapshot_to_send`]).
    pub fn offer_snapshot(&mut self, index: LogIndex, data: Vec<u8>) {
        self.outgoing_wanted = false;
        assert!(index <= self.log.applied, "offered snapshot at {index} beyond applied {}", self.log.applied);
        let Some(term) = self.log.term(index) else { return };
        let meta = self.snapshot_meta(index, term, &data);
        self.outgoing = Some(Snapshot { meta, data: Arc::new(data) });
        let waiting: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, pr)| {
                !matches!(pr.state, ProgressState::Snapshot { .. }) && self.log.term(pr.next_index - 1).is_none()
            })
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            self.start_snapshot(id);
        }
    }

    /// True while a local snapshot is being saved.
    pub fn snapshot_in_progress(&self) -> bool {
        self.snapshot_in_progress
    }

    /// The leader's view of a follower, for status reporting.
    pub fn progress(&self, id: NodeId) -> Option<&Progress> {
        self.progress.get(&id)
    }

    /// True if a leadership transfer is in progress.
    pub fn transferring(&self) -> bool {
        self.transfer.is_some()
    }

    /// The next time [`Raft::tick`] has work to do.
    pub fn next_deadline(&self) -> Millis {
        match self.role {
            Role::Leader => {
                let mut at = self.heartbeat_deadline;
                if self.config.check_quorum {
                    at = at.min(self.check_quorum_deadline);
                }
                if let Some((_, deadline)) = self.transfer {
                    at = at.min(deadline);
                }
                at
            }
            _ => self.election_deadline,
        }
    }

    // ----- outputs pulled by the node composition --------------------------------

    /// The next committed and durable entry to apply, if any.
    pub fn next_to_apply(&self) -> Option<&Entry> {
        let limit = self.log.commit.min(self.log.persisted);
        if self.log.applied < limit {
            self.log.entry(self.log.applied + 1)
        } else {
            None
        }
    }

    /// Records that the state machine applied every entry up to `index`.
    pub fn applied_to(&mut self, index: LogIndex) {
        assert_eq!(index, self.log.applied + 1, "entries are applied in order");
        assert!(index <= self.log.commit && index <= self.log.persisted, "applying an uncommitted entry");
        self.log.applied = index;
    }

    /// Read states produced since the last call.
    pub fn take_read_states(&mut self) -> Vec<ReadState> {
        std::mem::take(&mut self.read_states)
    }

    /// A snapshot received from the leader that the state machine must restore.
    pub fn take_installed_snapshot(&mut self) -> Option<Snapshot> {
        self.installed.take()
    }

    // ----- inputs ----------------------------------------------------------------

    /// Advances time: elections, heartbeats, check-quorum, transfer timeouts.
    pub fn tick(&mut self, now: Millis) {
        match self.role {
            Role::Leader => {
                if self.config.check_quorum && now >= self.check_quorum_deadline {
                    let me = self.config.id;
                    let active = self
                        .membership
                        .has_quorum(|id| id == me || self.progress.get(&id).is_some_and(|p| p.recent_active));
                    if !active {
                        self.become_follower(now, self.term, None);
                        return;
                    }
                    for p in self.progress.values_mut() {
                        p.recent_active = false;
                    }
                    self.check_quorum_deadline = now + self.config.election_timeout_ms;
                }
                if let Some((_, deadline)) = self.transfer {
                    if now >= deadline {
                        self.transfer = None;
                    }
                }
                if now >= self.heartbeat_deadline {
                    self.heartbeat_deadline = now + self.config.heartbeat_interval_ms;
                    self.broadcast_heartbeat(now);
                }
            }
            _ => {
                if now >= self.election_deadline {
                    self.reset_election_deadline(now);
                    if self.membership.is_voter(self.config.id) {
                        self.campaign(now, false);
                    }
                }
            }
        }
    }

    /// Handles a message from another member.
    pub fn step(&mut self, now: Millis, m: Message) {
        if m.group != self.config.group || m.to != self.config.id || m.from == self.config.id {
            return;
        }
        if m.term > self.term {
            let in_lease = self.role == Role::Leader
                || self.config.check_quorum
                    && self.leader.is_some()
                    && self.last_leader_contact.is_some_and(|t| now < t + self.config.election_timeout_ms);
            match &m.body {
                MessageBody::PreVote { .. } | MessageBody::Vote { transfer: false, .. } if in_lease => {
                    // A leader was heard from recently: ignore disruptive candidates.
                    return;
                }
                MessageBody::PreVote { .. } => {}
                MessageBody::PreVoteResponse { granted: true } => {}
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => {
                    self.become_follower(now, m.term, Some(m.from));
                }
                _ => self.become_follower(now, m.term, None),
            }
        } else if m.term < self.term {
            match &m.body {
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => {
                    // A stale leader: tell it about the newer term so it steps down.
                    self.send(
                        m.from,
                        MessageBody::AppendResponse { success: false, index: 0, hint_index: 0, hint_term: 0 },
                    );
                }
                MessageBody::PreVote { .. } => {
                    self.send(m.from, MessageBody::PreVoteResponse { granted: false });
                }
                _ => {}
            }
            return;
        }

        match m.body {
            MessageBody::PreVote { last_index, last_term } => {
                let granted = m.term > self.term && self.log_ok_for_vote(last_index, last_term);
                let body = MessageBody::PreVoteResponse { granted };
                let term = if granted { m.term } else { self.term };
                self.send_with_term(m.from, term, body);
            }
            MessageBody::Vote { last_index, last_term, .. } => {
                let can_vote = self.vote == Some(m.from) || (self.vote.is_none() && self.leader.is_none());
                let granted = can_vote && self.log_ok_for_vote(last_index, last_term);
                if granted {
                    if self.vote != Some(m.from) {
                        self.vote = Some(m.from);
                        self.save_hard_state();
                    }
                    self.reset_election_deadline(now);
                    let msg = self.message(m.from, self.term, MessageBody::VoteResponse { granted: true });
                    if mutated!(self.config, VoteBeforePersist) {
                        self.out.push(Command::Send(msg));
                    } else {
                        self.send_durable(msg);
                    }
                } else {
                    self.send(m.from, MessageBody::VoteResponse { granted: false });
                }
            }
            MessageBody::PreVoteResponse { granted } => {
                if self.role == Role::PreCandidate && (m.term == self.term + 1 || !granted) {
                    self.votes.insert(m.from, granted);
                    self.tally(now);
                }
            }
            MessageBody::VoteResponse { granted } => {
                if self.role == Role::Candidate {
                    self.votes.insert(m.from, granted);
                    self.tally(now);
                }
            }
            MessageBody::Append { prev_index, prev_term, entries, commit } => {
                self.follow(now, m.from);
                self.handle_append(m.from, prev_index, prev_term, entries, commit);
            }
            MessageBody::Heartbeat { commit, round } => {
                self.follow(now, m.from);
                self.log.commit_to(commit.min(self.log.last_index()).max(self.log.commit));
                let last_index = self.log.last_index();
                self.send(m.from, MessageBody::HeartbeatResponse { round, last_index });
            }
            MessageBody::InstallSnapshot { meta, offset, data, done } => {
                self.follow(now, m.from);
                self.handle_snapshot_chunk(m.from, meta, offset, data, done);
            }
            MessageBody::AppendResponse { success, index, hint_index, hint_term } => {
                if self.role == Role::Leader {
                    self.handle_append_response(now, m.from, success, index, hint_index, hint_term);
                }
            }
            MessageBody::HeartbeatResponse { round, .. } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(now, m.from, round);
                }
            }
            MessageBody::InstallSnapshotResponse { snapshot_index, next_offset, done } => {
                if self.role == Role::Leader {
                    self.handle_snapshot_response(m.from, snapshot_index, next_offset, done);
                }
            }
            MessageBody::ReadIndex { ctx } => {
                if self.role == Role::Leader && self.membership.contains(m.from) {
                    self.read_index_for(now, ctx, m.from);
                } else {
                    self.send(m.from, MessageBody::ReadIndexResponse { ctx, index: None });
                }
            }
            MessageBody::ReadIndexResponse { ctx, index } => {
                self.read_states.push(ReadState { ctx, index });
            }
            MessageBody::TimeoutNow => {
                if self.membership.is_voter(self.config.id) && self.role != Role::Leader {
                    self.campaign(now, true);
                }
            }
        }
    }

    /// Handles the driver's report that the sync `up_to` (and all before it) is
    /// durable.
    pub fn persisted(&mut self, now: Millis, up_to: u64) {
        if up_to <= self.sync_done {
            return;
        }
        assert!(up_to <= self.sync_issued, "persisted sync {up_to} was never issued ({})", self.sync_issued);
        self.sync_done = up_to;
        while self.sync_records.front().is_some_and(|r| r.id <= up_to) {
            let record = self.sync_records.pop_front().expect("checked non-empty");
            self.log.persisted = record.last_index.min(self.log.last_index());
            self.persisted_hard_state = record.hard_state;
            if let Some(snapshot) = record.snapshot {
                self.adopt_local_snapshot(snapshot);
            }
        }
        while self.deferred.front().is_some_and(|(id, _)| *id <= up_to) {
            let (_, msg) = self.deferred.pop_front().expect("checked non-empty");
            self.out.push(Command::Send(msg));
        }
        match self.role {
            Role::Leader => self.maybe_commit(now),
            Role::Candidate => self.tally(now),
            _ => {}
        }
    }

    /// Proposes a state-machine command; returns the index it will have if
    /// committed.
    pub fn propose(&mut self, payload: Payload) -> Result<LogIndex, ClientError> {
        if self.role != Role::Leader {
            return Err(ClientError::NotLeader { leader: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ClientError::Busy);
        }
        Ok(self.append_new(payload))
    }

    /// Proposes a new membership. Voter changes go through joint consensus; the
    /// leader leaves the joint configuration on its own once it is committed.
    pub fn propose_membership(&mut self, voters: &[NodeId], learners: &[NodeId]) -> Result<LogIndex, ClientError> {
        if self.role != Role::Leader {
            return Err(ClientError::NotLeader { leader: self.leader });
        }
        if self.transfer.is_some() || self.membership.is_joint() || self.membership_pending() {
            return Err(ClientError::Busy);
        }
        let mut target = Membership::with_voters(voters.iter().copied());
        let mut learners: Vec<NodeId> = learners.iter().copied().filter(|id| !target.voters.contains(id)).collect();
        learners.sort_unstable();
        learners.dedup();
        target.learners = learners;
        target.validate().map_err(|e| ClientError::Invalid(e.to_string()))?;
        if target.voters != self.membership.voters {
            target.outgoing = self.membership.voters.clone();
        }
        Ok(self.append_new(Payload::Membership(target)))
    }

    /// Starts a read: on the leader a ReadIndex round (or a lease check), on a
    /// follower a request to the leader. The result appears in the read states.
    pub fn read_index(&mut self, now: Millis, ctx: u64) {
        if self.role == Role::Leader {
            self.read_index_for(now, ctx, self.config.id);
        } else if let Some(leader) = self.leader {
            self.send(leader, MessageBody::ReadIndex { ctx });
        } else {
            self.read_states.push(ReadState { ctx, index: None });
        }
    }

    /// Starts handing leadership to `to`: it is brought up to date, then told to
    /// campaign at once. Proposals are refused meanwhile; the transfer is abandoned
    /// after an election timeout.
    pub fn transfer_leader(&mut self, now: Millis, to: NodeId) -> Result<(), ClientError> {
        if self.role != Role::Leader {
            return Err(ClientError::NotLeader { leader: self.leader });
        }
        if to == self.config.id {
            return Ok(());
        }
        if !self.membership.is_voter(to) {
            return Err(ClientError::Invalid(format!("member {to} is not a voter")));
        }
        self.transfer = Some((to, now + self.config.election_timeout_ms));
        // The new leader will be elected despite the followers' leases: ours ends now.
        self.lease_until = 0;
        if self.progress.get(&to).is_some_and(|p| p.match_index == self.log.last_index()) {
            self.send_timeout_now(to);
        } else {
            self.send_append(to, false);
        }
        Ok(())
    }

    /// The metadata of a snapshot of this group's state at `index` (of `term`).
    fn snapshot_meta(&self, index: LogIndex, term: Term, data: &[u8]) -> SnapshotMeta {
        SnapshotMeta {
            group: self.config.group,
            index,
            term,
            membership: self.membership_at(index).clone(),
            size: data.len() as u64,
            checksum: crc32c::crc32c(data),
        }
    }

    /// Saves a snapshot of the state machine at `index` (which must be applied),
    /// after which the log before it is compacted.
    pub fn save_local_snapshot(&mut self, index: LogIndex, data: Vec<u8>) {
        assert!(index <= self.log.applied, "snapshot at {index} beyond applied {}", self.log.applied);
        assert!(!self.snapshot_in_progress, "one local snapshot at a time");
        let term = self.log.term(index).expect("snapshot index is in the log");
        let meta = self.snapshot_meta(index, term, &data);
        self.out.push(Command::SaveSnapshot { meta: meta.clone(), data: data.clone() });
        self.writes_pending = true;
        self.pending_snapshot = Some(Snapshot { meta, data: Arc::new(data) });
        self.snapshot_in_progress = true;
    }

    /// Ends a step: sends the batched appends and heartbeats and closes the step's
    /// writes with one `Sync`.
    pub fn end_step(&mut self, now: Millis) {
        if self.role == Role::Leader {
            // A single-member group commits as soon as its own write is durable; a
            // commit may also append (leaving joint consensus), sent just below.
            self.maybe_commit(now);
        }
        if self.role == Role::Leader {
            if self.broadcast_append || self.broadcast_commit {
                let allow_empty = std::mem::take(&mut self.broadcast_commit);
                self.broadcast_append = false;
                let peers: Vec<NodeId> = self.progress.keys().copied().collect();
                for id in peers {
                    self.send_append(id, allow_empty);
                }
            }
            if self.broadcast_round {
                self.broadcast_heartbeat(now);
            }
        }
        self.broadcast_round = false;
        self.broadcast_commit = false;
        if self.outgoing.is_some()
            && (self.role != Role::Leader
                || !self.progress.values().any(|pr| matches!(pr.state, ProgressState::Snapshot { .. })))
        {
            // No transfer uses it: a copy of the whole state is not kept around.
            self.outgoing = None;
        }
        if self.role != Role::Leader {
            self.outgoing_wanted = false;
        }
        if self.hard_state_dirty {
            self.hard_state_dirty = false;
            self.out.push(Command::SaveHardState(HardState { term: self.term, vote: self.vote }));
        }
        if self.writes_pending {
            self.writes_pending = false;
            self.sync_issued += 1;
            let id = self.sync_issued;
            self.out.push(Command::Sync { id });
            self.sync_records.push_back(SyncRecord {
                id,
                last_index: self.log.last_index(),
                hard_state: HardState { term: self.term, vote: self.vote },
                snapshot: self.pending_snapshot.take(),
            });
        }
    }

    // ----- elections -------------------------------------------------------------

    fn reset_election_deadline(&mut self, now: Millis) {
        let base = self.config.election_timeout_ms;
        self.election_deadline = now + self.rng.range(base, 2 * base);
    }

    fn log_ok_for_vote(&self, last_index: LogIndex, last_term: Term) -> bool {
        mutated!(self.config, VoteIgnoresLog) || self.log.is_up_to_date(last_index, last_term)
    }

    fn campaign(&mut self, now: Millis, transfer: bool) {
        self.votes.clear();
        if self.config.pre_vote && !transfer {
            self.role = Role::PreCandidate;
            self.leader = None;
            self.votes.insert(self.config.id, true);
            let term = self.term + 1;
            let body = MessageBody::PreVote { last_index: self.log.last_index(), last_term: self.log.last_term() };
            self.send_to_voters(term, body);
        } else {
            self.become_candidate(now, transfer);
        }
        self.tally(now);
    }

    fn become_candidate(&mut self, now: Millis, transfer: bool) {
        self.role = Role::Candidate;
        self.term += 1;
        self.vote = Some(self.config.id);
        self.leader = None;
        self.last_leader_contact = None;
        self.votes.clear();
        self.save_hard_state();
        self.reset_election_deadline(now);
        let body = MessageBody::Vote { last_index: self.log.last_index(), last_term: self.log.last_term(), transfer };
        self.send_to_voters(self.term, body);
    }

    fn send_to_voters(&mut self, term: Term, body: MessageBody) {
        let voters: Vec<NodeId> = self.membership.members();
        for id in voters {
            if id != self.config.id && self.membership.is_voter(id) {
                self.send_with_term(id, term, body.clone());
            }
        }
    }

    fn tally(&mut self, now: Millis) {
        let me = self.config.id;
        let result = match self.role {
            Role::PreCandidate => self.membership.vote_result(|id| self.votes.get(&id).copied()),
            Role::Candidate => {
                // Our own vote counts only once it is durable.
                let self_vote_durable = self.persisted_hard_state == HardState { term: self.term, vote: Some(me) };
                self.membership.vote_result(|id| {
                    if id == me {
                        self_vote_durable.then_some(true)
                    } else {
                        self.votes.get(&id).copied()
                    }
                })
            }
            _ => return,
        };
        match (self.role, result) {
            (Role::PreCandidate, VoteResult::Won) => self.become_candidate(now, false),
            (Role::Candidate, VoteResult::Won) => self.become_leader(now),
            (_, VoteResult::Lost) => self.become_follower(now, self.term, None),
            _ => {}
        }
    }

    fn become_follower(&mut self, now: Millis, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "terms never decrease ({term} < {})", self.term);
        if self.role == Role::Leader {
            self.fail_pending_reads();
        }
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.save_hard_state();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.progress.clear();
        self.transfer = None;
        self.lease_until = 0;
        self.reset_election_deadline(now);
    }

    fn become_leader(&mut self, now: Millis) {
        assert_eq!(self.role, Role::Candidate, "only a candidate becomes leader");
        assert_eq!(self.vote, Some(self.config.id), "a leader voted for itself");
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.votes.clear();
        self.round = 0;
        self.rounds_sent.clear();
        self.lease_until = 0;
        self.lease_forfeited = false;
        self.pending_reads.clear();
        self.reads_awaiting_commit.clear();
        self.transfer = None;
        self.progress.clear();
        self.sync_progress();
        self.check_quorum_deadline = now + self.config.election_timeout_ms;
        self.heartbeat_deadline = now + self.config.heartbeat_interval_ms;
        self.append_new(Payload::Noop);
    }

    /// A message from the current leader arrived.
    fn follow(&mut self, now: Millis, leader: NodeId) {
        assert!(
            !(self.role == Role::Leader && leader != self.config.id),
            "two leaders in term {}: {} and {leader}",
            self.term,
            self.config.id
        );
        if self.role != Role::Follower || self.leader != Some(leader) {
            self.become_follower(now, self.term, Some(leader));
        }
        self.last_leader_contact = Some(now);
        self.reset_election_deadline(now);
    }

    // ----- log replication: follower side ----------------------------------------

    fn handle_append(
        &mut self,
        from: NodeId,
        mut prev_index: LogIndex,
        mut prev_term: Term,
        mut entries: Vec<Entry>,
        commit: LogIndex,
    ) {
        if prev_index < self.log.commit {
            // The prefix up to our commit index is settled; skip what it covers.
            let skip = (self.log.commit - prev_index).min(entries.len() as u64) as usize;
            for e in &entries[..skip] {
                if let Some(t) = self.log.term(e.index) {
                    assert_eq!(t, e.term, "committed entry {} differs from the leader's", e.index);
                }
            }
            entries.drain(..skip);
            prev_index = self.log.commit;
            prev_term = self.log.term(prev_index).expect("the commit index is in the log");
        }
        if self.log.term(prev_index) != Some(prev_term) {
            let (hint_index, hint_term) = self.log.hint(prev_index, prev_term);
            let body = MessageBody::AppendResponse { success: false, index: prev_index, hint_index, hint_term };
            self.send(from, body);
            return;
        }
        let last_new = prev_index + entries.len() as u64;
        if let Some(pos) = entries.iter().position(|e| self.log.term(e.index) != Some(e.term)) {
            let fresh = &entries[pos..];
            self.log_append(fresh);
        }
        self.log.commit_to(commit.min(last_new).max(self.log.commit));
        let body = MessageBody::AppendResponse { success: true, index: last_new, hint_index: 0, hint_term: 0 };
        let msg = self.message(from, self.term, body);
        self.send_durable(msg);
    }

    /// Appends to the in-memory log, emits the write, and tracks memberships.
    fn log_append(&mut self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut membership_changed = false;
        if let Some(from) = self.log.append(entries) {
            for record in &mut self.sync_records {
                record.last_index = record.last_index.min(from - 1);
            }
            if self.membership_log.last().is_some_and(|(i, _)| *i >= from) {
                self.membership_log.retain(|(i, _)| *i < from);
                self.membership = self.membership_log.last().map(|(_, m)| m.clone()).unwrap_or_default();
                membership_changed = true;
            }
        }
        for e in entries {
            if let Payload::Membership(m) = &e.payload {
                self.membership_log.push((e.index, m.clone()));
                self.membership = m.clone();
                membership_changed = true;
            }
        }
        self.out.push(Command::AppendLog(entries.to_vec()));
        self.writes_pending = true;
        if self.role == Role::Leader && membership_changed {
            self.sync_progress();
        }
    }

    fn handle_snapshot_chunk(&mut self, from: NodeId, meta: SnapshotMeta, offset: u64, data: Vec<u8>, done: bool) {
        let index = meta.index;
        if index <= self.log.commit {
            // We already have everything the snapshot covers.
            let body =
                MessageBody::InstallSnapshotResponse { snapshot_index: index, next_offset: meta.size, done: true };
            self.send(from, body);
            return;
        }
        if meta.size > self.config.snapshot_bytes_max || meta.membership.validate().is_err() {
            return;
        }
        if offset == 0 {
            self.incoming = Some(IncomingSnapshot { meta: meta.clone(), data: Vec::new() });
        }
        let expected = match &self.incoming {
            Some(inc) if inc.meta == meta => inc.data.len() as u64,
            _ => 0,
        };
        if offset != expected || self.incoming.is_none() {
            let body =
                MessageBody::InstallSnapshotResponse { snapshot_index: index, next_offset: expected, done: false };
            self.send(from, body);
            return;
        }
        let incoming = self.incoming.as_mut().expect("checked above");
        incoming.data.extend_from_slice(&data);
        if incoming.data.len() as u64 > meta.size {
            self.incoming = None;
            return;
        }
        if !done {
            let next_offset = incoming.data.len() as u64;
            let body = MessageBody::InstallSnapshotResponse { snapshot_index: index, next_offset, done: false };
            self.send(from, body);
            return;
        }
        let incoming = self.incoming.take().expect("checked above");
        if incoming.data.len() as u64 != meta.size || crc32c::crc32c(&incoming.data) != meta.checksum {
            let body = MessageBody::InstallSnapshotResponse { snapshot_index: index, next_offset: 0, done: false };
            self.send(from, body);
            return;
        }
        self.install_snapshot(Snapshot { meta, data: Arc::new(incoming.data) });
        let body = MessageBody::InstallSnapshotResponse { snapshot_index: index, next_offset: 0, done: true };
        let msg = self.message(from, self.term, body);
        self.send_durable(msg);
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = &snapshot.meta;
        assert!(meta.index > self.log.commit, "installing a snapshot behind the commit index");
        let old_first = self.log.first_index();
        let kept = self.log.restore(meta.index, meta.term);
        for record in &mut self.sync_records {
            record.last_index = record.last_index.min(old_first - 1);
        }
        self.out.push(Command::SaveSnapshot { meta: meta.clone(), data: snapshot.data.to_vec() });
        if !kept {
            // The old entry at the snapshot's index (if any) has another term: drop
            // it too, or a restart would see the log diverge from the snapshot
            // there and discard every entry appended after it.
            self.out.push(Command::TruncateLog { from: meta.index });
        }
        self.writes_pending = true;
        let mut history = vec![(meta.index, meta.membership.clone())];
        if kept {
            history.extend(self.membership_log.iter().filter(|(i, _)| *i > meta.index).cloned());
        }
        self.membership = history.last().map(|(_, m)| m.clone()).unwrap_or_default();
        self.membership_log = history;
        self.incoming = None;
        self.installed = Some(snapshot.clone());
        self.snapshot = Some(snapshot);
    }

    fn adopt_local_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshot_in_progress = false;
        if self.snapshot.as_ref().is_some_and(|s| s.meta.index >= snapshot.meta.index) {
            return;
        }
        let index = snapshot.meta.index;
        self.snapshot = Some(snapshot);
        // Keep a tail of entries so that slightly slow followers need no snapshot.
        let up_to = index.saturating_sub(self.config.compaction_lag_entries);
        if up_to > self.log.snapshot_index() {
            self.log.compact(up_to);
            let keep_from = self.membership_log.iter().rposition(|(i, _)| *i <= up_to).unwrap_or(0);
            self.membership_log.drain(..keep_from);
            self.out.push(Command::CompactLog { up_to });
        }
    }

    // ----- log replication: leader side ------------------------------------------

    fn append_new(&mut self, payload: Payload) -> LogIndex {
        let index = self.log.last_index() + 1;
        let entry = Entry { term: self.term, index, payload };
        self.log_append(&[entry]);
        self.broadcast_append = true;
        index
    }

    /// True if the latest membership entry is not yet committed.
    fn membership_pending(&self) -> bool {
        self.membership_log.last().is_some_and(|(i, _)| *i > self.log.commit)
    }

    /// Adds progress for new members and drops it for removed ones.
    fn sync_progress(&mut self) {
        let me = self.config.id;
        let members = self.membership.members();
        self.progress.retain(|id, _| members.binary_search(id).is_ok());
        let next = self.log.last_index() + 1;
        for id in members {
            if id != me {
                self.progress.entry(id).or_insert_with(|| Progress::new(next));
            }
        }
    }

    fn send_append(&mut self, to: NodeId, allow_empty: bool) {
        let Some(pr) = self.progress.get(&to) else { return };
        if let ProgressState::Snapshot { .. } = pr.state {
            self.send_snapshot_chunk(to);
            return;
        }
        if pr.is_paused(self.config.inflight_msgs_max) {
            return;
        }
        let next = pr.next_index;
        let state = pr.state;
        let prev_index = next - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            self.start_snapshot(to);
            return;
        };
        let entries = if next <= self.log.last_index() {
            self.log.entries_from(next, self.config.append_bytes_max)
        } else {
            Vec::new()
        };
        if entries.is_empty() && !allow_empty && state == ProgressState::Replicate {
            return;
        }
        let last = entries.last().map(|e| e.index);
        let commit = self.log.commit;
        let pr = self.progress.get_mut(&to).expect("checked above");
        match state {
            ProgressState::Replicate => {
                if let Some(last) = last {
                    pr.next_index = last + 1;
                    pr.inflights.push_back(last);
                }
            }
            ProgressState::Probe => pr.paused = true,
            ProgressState::Snapshot { .. } => unreachable!("handled above"),
        }
        self.send(to, MessageBody::Append { prev_index, prev_term, entries, commit });
    }

    fn start_snapshot(&mut self, to: NodeId) {
        // Usable while the log holds every entry after it.
        let usable = self.outgoing.as_ref().map(|s| s.meta.index).filter(|&i| self.log.term(i).is_some());
        let Some(index) = usable else {
            // The node offers one at the end of this step.
            self.outgoing_wanted = true;
            return;
        };
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.become_snapshot(index);
        }
        self.send_snapshot_chunk(to);
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(snapshot) = self.outgoing.clone() else { return };
        let Some(pr) = self.progress.get_mut(&to) else { return };
        let ProgressState::Snapshot { index, offset } = pr.state else { return };
        if pr.paused {
            return;
        }
        if index != snapshot.meta.index {
            // A newer snapshot replaced the one being sent: start over with it.
            pr.become_snapshot(snapshot.meta.index);
            return self.send_snapshot_chunk(to);
        }
        pr.paused = true;
        let start = offset.min(snapshot.meta.size) as usize;
        let end = (offset + self.config.snapshot_chunk_bytes_max).min(snapshot.meta.size) as usize;
        let data = snapshot.data[start..end].to_vec();
        let done = end as u64 == snapshot.meta.size;
        self.send(to, MessageBody::InstallSnapshot { meta: snapshot.meta.clone(), offset, data, done });
    }

    fn handle_snapshot_response(&mut self, from: NodeId, snapshot_index: LogIndex, next_offset: u64, done: bool) {
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.recent_active = true;
        if done {
            pr.update_match(snapshot_index);
            if let ProgressState::Snapshot { index, .. } = pr.state {
                if index <= pr.match_index {
                    pr.become_probe(pr.match_index + 1);
                }
            }
            self.send_append(from, true);
            return;
        }
        if let ProgressState::Snapshot { index, .. } = pr.state {
            if index == snapshot_index {
                pr.state = ProgressState::Snapshot { index, offset: next_offset };
                pr.paused = false;
                self.send_snapshot_chunk(from);
            }
        }
    }

    fn handle_append_response(
        &mut self,
        now: Millis,
        from: NodeId,
        success: bool,
        index: LogIndex,
        hint_index: LogIndex,
        hint_term: Term,
    ) {
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.recent_active = true;
        if success {
            if index > last_index {
                return; // Not an answer to anything this leader sent.
            }
            let advanced = pr.update_match(index);
            match pr.state {
                ProgressState::Probe => pr.become_replicate(),
                ProgressState::Snapshot { index: snap, .. } if pr.match_index >= snap => {
                    pr.become_probe(pr.match_index + 1)
                }
                _ => {}
            }
            if advanced {
                self.maybe_commit(now);
            }
            if let Some((target, _)) = self.transfer {
                if target == from && self.progress.get(&from).is_some_and(|p| p.match_index == last_index) {
                    self.send_timeout_now(from);
                }
            }
            self.send_append(from, false);
        } else {
            let stale = match pr.state {
                ProgressState::Replicate => index <= pr.match_index,
                ProgressState::Probe => index != pr.next_index.saturating_sub(1),
                ProgressState::Snapshot { .. } => true,
            };
            if stale {
                return;
            }
            // Resume at the follower's hint, skipping every entry of a conflicting term.
            let (leader_hint, _) = self.log.hint(hint_index, hint_term);
            let next = index.min(leader_hint + 1);
            let pr = self.progress.get_mut(&from).expect("checked above");
            pr.become_probe(next);
            self.send_append(from, false);
        }
    }

    fn handle_heartbeat_response(&mut self, now: Millis, from: NodeId, round: u64) {
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.recent_active = true;
        pr.acked_round = pr.acked_round.max(round);
        if pr.match_index < last_index {
            // An answer from a follower we are waiting on: probe or resend the chunk.
            if !matches!(pr.state, ProgressState::Replicate) {
                pr.paused = false;
            }
            self.send_append(from, false);
        }
        self.advance_reads(now);
    }

    fn broadcast_heartbeat(&mut self, now: Millis) {
        self.round += 1;
        let round = self.round;
        self.rounds_sent.push_back((round, now));
        while self.rounds_sent.len() > 1024 {
            self.rounds_sent.pop_front();
        }
        let commit = self.log.commit;
        let peers: Vec<(NodeId, LogIndex)> = self.progress.iter().map(|(&id, p)| (id, p.match_index)).collect();
        for (id, matched) in peers {
            if let Some(pr) = self.progress.get_mut(&id) {
                // Replication that made no progress for a whole heartbeat lost a
                // message: probe again from the last known match.
                if pr.state == ProgressState::Replicate
                    && !pr.advanced_since_heartbeat
                    && !pr.inflights.is_empty()
                    && pr.match_index < self.log.last_index()
                {
                    pr.become_probe(pr.match_index + 1);
                }
                pr.advanced_since_heartbeat = false;
            }
            self.send(id, MessageBody::Heartbeat { commit: commit.min(matched), round });
        }
        // A single-voter group confirms its rounds by itself.
        self.advance_reads(now);
    }

    fn maybe_commit(&mut self, now: Millis) {
        if self.role != Role::Leader {
            return;
        }
        let me = self.config.id;
        let own = self.log.persisted.min(self.log.last_index());
        let index = self.membership.committed_index(|id| {
            if id == me {
                own
            } else {
                self.progress.get(&id).map_or(0, |p| p.match_index)
            }
        });
        if index <= self.log.commit || index == LogIndex::MAX {
            return;
        }
        // Figure 8: only entries of the current term are committed by counting
        // replicas; earlier ones are committed indirectly.
        let current_term = self.log.term(index) == Some(self.term);
        if !current_term && !mutated!(self.config, CommitOldTerm) {
            return;
        }
        self.log.commit_to(index);
        self.broadcast_commit = true;
        self.on_commit_advanced(now);
    }

    fn on_commit_advanced(&mut self, now: Millis) {
        // Leave joint consensus once the joint membership is committed.
        if self.membership.is_joint() && !self.membership_pending() {
            let leave = Membership {
                voters: self.membership.voters.clone(),
                outgoing: Vec::new(),
                learners: self.membership.learners.clone(),
            };
            self.append_new(Payload::Membership(leave));
        }
        // A leader that is no longer a voter steps down once that is committed.
        if !self.membership_pending() && !self.membership.voters.contains(&self.config.id) {
            self.become_follower(now, self.term, None);
            return;
        }
        if self.log.term(self.log.commit) == Some(self.term) && !self.reads_awaiting_commit.is_empty() {
            for (ctx, from) in std::mem::take(&mut self.reads_awaiting_commit) {
                self.read_index_for(now, ctx, from);
            }
        }
    }

    // ----- linearizable reads ----------------------------------------------------

    fn read_index_for(&mut self, now: Millis, ctx: u64, from: NodeId) {
        if self.log.term(self.log.commit) != Some(self.term) {
            // Until an entry of this term commits, the commit index may lag.
            self.reads_awaiting_commit.push((ctx, from));
            return;
        }
        let index = self.log.commit;
        let lease_ok = self.config.lease_reads && now < self.lease_until;
        if lease_ok || mutated!(self.config, ReadWithoutQuorum) {
            self.read_ready(ctx, from, index);
            return;
        }
        // Confirm leadership with the next heartbeat round, sent at the end of this step.
        let round = self.round + 1;
        self.broadcast_round = true;
        self.pending_reads.push_back(PendingRead { ctx, from, index, round });
    }

    /// Tells `to` to campaign at once. The target may act on it at any later time
    /// in this term (it could be paused, the message delayed), and voters ignore
    /// their lease for its election, so this leader gives up lease reads for the
    /// rest of its term.
    fn send_timeout_now(&mut self, to: NodeId) {
        self.lease_forfeited = true;
        self.lease_until = 0;
        self.send(to, MessageBody::TimeoutNow);
    }

    fn read_ready(&mut self, ctx: u64, from: NodeId, index: LogIndex) {
        if from == self.config.id {
            self.read_states.push(ReadState { ctx, index: Some(index) });
        } else {
            self.send(from, MessageBody::ReadIndexResponse { ctx, index: Some(index) });
        }
    }

    /// Completes reads (and extends the lease) for rounds a quorum acknowledged.
    fn advance_reads(&mut self, now: Millis) {
        let me = self.config.id;
        let round = self.round;
        let acked = self.membership.committed_index(|id| {
            if id == me {
                round
            } else {
                self.progress.get(&id).map_or(0, |p| p.acked_round)
            }
        });
        if acked == 0 || acked == LogIndex::MAX {
            return;
        }
        let lease_allowed = self.transfer.is_none() && !self.lease_forfeited;
        if let Some(&(_, sent)) = self.rounds_sent.iter().find(|(r, _)| *r == acked && lease_allowed) {
            let lease =
                self.config.election_timeout_ms - self.config.clock_drift_max_ms.min(self.config.election_timeout_ms);
            self.lease_until = self.lease_until.max(sent + lease);
        }
        while self.rounds_sent.front().is_some_and(|(r, _)| *r < acked) {
            self.rounds_sent.pop_front();
        }
        let _ = now;
        while self.pending_reads.front().is_some_and(|r| r.round <= acked) {
            let read = self.pending_reads.pop_front().expect("checked non-empty");
            self.read_ready(read.ctx, read.from, read.index);
        }
    }

    fn fail_pending_reads(&mut self) {
        let mut failed: Vec<(u64, NodeId)> = self.pending_reads.drain(..).map(|r| (r.ctx, r.from)).collect();
        failed.append(&mut self.reads_awaiting_commit);
        for (ctx, from) in failed {
            if from == self.config.id {
                self.read_states.push(ReadState { ctx, index: None });
            } else {
                self.send(from, MessageBody::ReadIndexResponse { ctx, index: None });
            }
        }
    }

    // ----- messaging and persistence ---------------------------------------------

    fn message(&self, to: NodeId, term: Term, body: MessageBody) -> Message {
        Message { group: self.config.group, from: self.config.id, to, term, body }
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        let msg = self.message(to, self.term, body);
        self.out.push(Command::Send(msg));
    }

    fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let msg = self.message(to, term, body);
        self.out.push(Command::Send(msg));
    }

    /// Sends `msg` once every write issued so far is durable.
    fn send_durable(&mut self, msg: Message) {
        let needed = if self.writes_pending { self.sync_issued + 1 } else { self.sync_issued };
        if needed <= self.sync_done {
            self.out.push(Command::Send(msg));
        } else {
            self.deferred.push_back((needed, msg));
        }
    }

    /// Marks term and vote for saving; one write at the end of the step covers
    /// every change made during it.
    fn save_hard_state(&mut self) {
        self.hard_state_dirty = true;
        self.writes_pending = true;
    }
}

#[cfg(test)]
mod tests;
