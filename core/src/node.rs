//! The composition of one member: Raft, the state machine, and the client
//! requests waiting on them.
//!
//! ```text
//!  Event ──► Node::step ──► Raft ──► committed entries ──► StateMachine::apply
//!                              │                                  │
//!                              ├── read states ──► wait for apply ─┤
//!                              ▼                                  ▼
//!                   Send / SaveHardState / AppendLog / Sync   Reply
//! ```
//!
//! A reply to a write is sent only after its entry is committed, durable here and
//! applied; a linearizable read is answered only once the state machine has
//! applied up to a read index that a quorum confirmed after the read arrived.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::io::{ClientError, Command, Event, Recovered, Reply, Request, Response};
use crate::raft::message::{HardState, Membership, Payload, SnapshotMeta};
use crate::raft::{Raft, RecoveryError, Role, Snapshot};
use crate::state_machine::StateMachine;
use crate::types::{LogIndex, Millis, NodeId, RequestId, Term};

#[derive(Debug, Clone)]
struct PendingWrite {
    id: RequestId,
    term: Term,
    deadline: Millis,
}

#[derive(Debug, Clone)]
struct PendingRead {
    query: Vec<u8>,
    /// Served by `StateMachine::leader_request`, on the leader only.
    leader_only: bool,
    deadline: Millis,
    /// Known once leadership was confirmed.
    index: Option<LogIndex>,
    /// When a follower last asked the leader for a read index (the request or
    /// its answer may be lost; it asks again after a heartbeat interval).
    asked_at: Millis,
}

/// One member: a Raft actor composed with a state machine and client requests.
///
/// Inputs: [`Node::step`] with an [`Event`] and `now`. Outputs:
/// [`Node::drain_commands`], to be called after every step and executed in order.
#[derive(Debug)]
pub struct Node<S: StateMachine> {
    raft: Raft,
    sm: S,
    writes: BTreeMap<LogIndex, PendingWrite>,
    reads: BTreeMap<RequestId, PendingRead>,
    membership_change: Option<(RequestId, LogIndex, Term, Millis)>,
    transfer: Option<(RequestId, Millis)>,
    timer_at: Option<Millis>,
    /// Whether the state machine was last told it leads.
    sm_leader: bool,
}

impl<S: StateMachine> Node<S> {
    /// First start of a member of a new group with the given initial membership.
    /// Emits the initial (empty) snapshot, which must be persisted.
    pub fn bootstrap(config: Config, sm: S, membership: Membership, now: Millis) -> Result<Node<S>, RecoveryError> {
        membership.validate().map_err(|e| RecoveryError::BadMembership(e.to_string()))?;
        let data = sm.snapshot();
        let meta = SnapshotMeta {
            group: config.group,
            index: 0,
            term: 0,
            membership,
            size: data.len() as u64,
            checksum: crc32c::crc32c(&data),
        };
        let snapshot = Snapshot { meta, data: Arc::new(data) };
        let raft = Raft::new(config, HardState::default(), Some(snapshot.clone()), Vec::new(), now)?;
        let mut node = Node::with_raft(raft, sm);
        node.raft.save_initial_snapshot(snapshot);
        node.finish_step(now);
        Ok(node)
    }

    /// First start of a member that an existing group will add: it has no state
    /// and waits for the leader to send it the log or a snapshot.
    pub fn join(config: Config, sm: S, now: Millis) -> Result<Node<S>, RecoveryError> {
        let raft = Raft::new(config, HardState::default(), None, Vec::new(), now)?;
        let mut node = Node::with_raft(raft, sm);
        node.finish_step(now);
        Ok(node)
    }

    /// Restart from durable state.
    pub fn restart(config: Config, mut sm: S, recovered: Recovered, now: Millis) -> Result<Node<S>, RecoveryError> {
        let snapshot = match recovered.snapshot {
            Some((meta, data)) => {
                sm.restore(&data).map_err(|e| RecoveryError::BadSnapshot(e.to_string()))?;
                Some(Snapshot { meta, data: Arc::new(data) })
            }
            None => None,
        };
        let raft = Raft::new(config, recovered.hard_state, snapshot, recovered.entries, now)?;
        let mut node = Node::with_raft(raft, sm);
        node.finish_step(now);
        Ok(node)
    }

    fn with_raft(raft: Raft, sm: S) -> Node<S> {
        Node {
            raft,
            sm,
            writes: BTreeMap::new(),
            reads: BTreeMap::new(),
            membership_change: None,
            transfer: None,
            timer_at: None,
            sm_leader: false,
        }
    }

    /// The Raft actor, for inspection.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The state machine, for inspection.
    pub fn state_machine(&self) -> &S {
        &self.sm
    }

    /// Ends the node, handing back its state machine (a driver keeps what of
    /// its storage a crash would leave).
    pub fn into_state_machine(self) -> S {
        self.sm
    }

    /// The state machine, for its local, unreplicated parts (a KV store's watch
    /// hub). A driver must never change replicated state through it: that would
    /// make this member diverge from the others.
    pub fn state_machine_mut(&mut self) -> &mut S {
        &mut self.sm
    }

    /// Client requests waiting for an answer.
    pub fn pending_requests(&self) -> usize {
        self.writes.len()
            + self.reads.len()
            + usize::from(self.membership_change.is_some())
            + usize::from(self.transfer.is_some())
    }

    /// Moves the commands produced so far into `out`, in the order they must be
    /// carried out.
    pub fn drain_commands(&mut self, out: &mut Vec<Command>) {
        out.append(&mut self.raft.out);
    }

    /// Handles one input.
    pub fn step(&mut self, now: Millis, event: Event) {
        self.handle(now, event);
        self.finish_step(now);
    }

    /// Handles several inputs as one step: what they call for comes out
    /// together, so client requests that arrived together are proposed as one
    /// batch (one append per follower carrying all their entries, one `Sync`,
    /// one heartbeat round for all their read indexes), as etcd's raft does
    /// between two `Ready`s. The same as stepping them one by one, except that
    /// commands are merged.
    pub fn step_many(&mut self, now: Millis, events: impl IntoIterator<Item = Event>) {
        for event in events {
            self.handle(now, event);
        }
        self.finish_step(now);
    }

    fn handle(&mut self, now: Millis, event: Event) {
        match event {
            Event::Tick => {
                self.raft.tick(now);
                self.expire_requests(now);
            }
            Event::Message(m) => self.raft.step(now, m),
            Event::Request { id, request } => self.handle_request(now, id, request),
            Event::Persisted { up_to } => self.raft.persisted(now, up_to),
        }
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        self.raft.out.push(Command::Reply { id, reply });
    }

    fn handle_request(&mut self, now: Millis, id: RequestId, request: Request) {
        if self.pending_requests() >= self.raft.config().pending_requests_max as usize {
            return self.reply(id, Err(ClientError::Busy));
        }
        let deadline = now + self.raft.config().request_timeout_ms;
        match request {
            Request::Write(command) => {
                if command.len() as u64 > self.raft.config().proposal_bytes_max {
                    return self.reply(id, Err(ClientError::TooLarge));
                }
                if let Err(why) = self.sm.validate(&command) {
                    return self.reply(id, Err(ClientError::Invalid(why)));
                }
                match self.raft.propose(Payload::Command(command)) {
                    Ok(index) => {
                        let term = self.raft.term();
                        if let Some(old) = self.writes.insert(index, PendingWrite { id, term, deadline }) {
                            // Our earlier entry at this index was replaced before we
                            // became leader again: as leader we would hold it if it
                            // had been committed, so it never will be.
                            assert!(old.term < term, "two pending writes at index {index} in term {term}");
                            self.reply(old.id, Err(ClientError::Dropped));
                        }
                    }
                    Err(e) => self.reply(id, Err(e)),
                }
            }
            Request::Read(query) => {
                self.reads.insert(id, PendingRead { query, leader_only: false, deadline, index: None, asked_at: now });
                self.raft.read_index(now, id);
            }
            Request::LeaderRequest(query) => {
                if self.raft.role() != Role::Leader {
                    return self.reply(id, Err(ClientError::NotLeader { leader: self.raft.leader() }));
                }
                self.reads.insert(id, PendingRead { query, leader_only: true, deadline, index: None, asked_at: now });
                self.raft.read_index(now, id);
            }
            Request::ChangeMembership { voters, learners } => {
                if self.membership_change.is_some() {
                    return self.reply(id, Err(ClientError::Busy));
                }
                match self.raft.propose_membership(&voters, &learners) {
                    Ok(index) => self.membership_change = Some((id, index, self.raft.term(), deadline)),
                    Err(e) => self.reply(id, Err(e)),
                }
            }
            Request::TransferLeader { to } => {
                if self.transfer.is_some() {
                    return self.reply(id, Err(ClientError::Busy));
                }
                match self.raft.transfer_leader(now, to) {
                    Ok(()) if to == self.raft.id() => {
                        self.reply(id, Ok(Response::Transferred { leader: Some(to) }));
                    }
                    Ok(()) => self.transfer = Some((id, deadline)),
                    Err(e) => self.reply(id, Err(e)),
                }
            }
        }
    }

    /// Applies what became committed, answers what became answerable, and closes
    /// the step.
    fn finish_step(&mut self, now: Millis) {
        if let Some(snapshot) = self.raft.take_installed_snapshot() {
            self.restore_snapshot(&snapshot);
        }
        self.apply_committed();
        for state in self.raft.take_read_states() {
            let Some(read) = self.reads.get_mut(&state.ctx) else { continue };
            match state.index {
                Some(index) => read.index = Some(index),
                None => {
                    self.reads.remove(&state.ctx);
                    let leader = self.raft.leader().filter(|&l| l != self.raft.id());
                    self.reply(state.ctx, Err(ClientError::NotLeader { leader }));
                }
            }
        }
        self.leader_duties(now);
        self.serve_reads(now);
        self.check_admin_requests();
        self.maybe_snapshot();
        self.raft.end_step(now);
        // A deadline that is already due would never fire again (the driver
        // just delivered the tick for it): the timer always lies in the future.
        let at = self.next_deadline().max(now + 1);
        if self.timer_at != Some(at) {
            self.timer_at = Some(at);
            self.raft.out.push(Command::SetTimer { at });
        }
    }

    fn restore_snapshot(&mut self, snapshot: &Snapshot) {
        // The snapshot's checksum was verified on receipt, so a failure here is a
        // state machine that cannot read its own format: a programmer error.
        if let Err(e) = self.sm.restore(&snapshot.data) {
            panic!("restoring a verified snapshot at index {} failed: {e}", snapshot.meta.index);
        }
        // Writes covered by the snapshot: we no longer know whether they were ours.
        let covered: Vec<LogIndex> = self.writes.range(..=snapshot.meta.index).map(|(&i, _)| i).collect();
        for index in covered {
            let write = self.writes.remove(&index).expect("listed above");
            self.reply(write.id, Err(ClientError::Timeout));
        }
    }

    fn apply_committed(&mut self) {
        let mut applied = false;
        while let Some(entry) = self.raft.next_to_apply() {
            applied = true;
            let (index, term) = (entry.index, entry.term);
            let result = self.sm.apply(index, &entry.payload);
            self.raft.applied_to(index);
            if let Some(write) = self.writes.remove(&index) {
                let reply = if write.term == term {
                    Ok(Response::Written { index, result })
                } else {
                    // Another leader's entry took this index: ours is gone for good.
                    Err(ClientError::Dropped)
                };
                self.reply(write.id, reply);
            }
        }
        if applied {
            self.sm.applied_run();
        }
    }

    fn serve_reads(&mut self, now: Millis) {
        let applied = self.raft.applied_index();
        let ready: Vec<RequestId> =
            self.reads.iter().filter(|(_, r)| r.index.is_some_and(|i| i <= applied)).map(|(&id, _)| id).collect();
        for id in ready {
            let read = self.reads.remove(&id).expect("listed above");
            let reply = if !read.leader_only {
                Ok(Response::Read(self.sm.query(&read.query)))
            } else if self.sm_leader {
                Ok(Response::Read(self.sm.leader_request(now, &read.query)))
            } else {
                Err(ClientError::NotLeader { leader: self.raft.leader().filter(|&l| l != self.raft.id()) })
            };
            self.reply(id, reply);
        }
    }

    fn check_admin_requests(&mut self) {
        if let Some((id, index, term, _)) = self.membership_change {
            let latest = self.raft.last_membership_index();
            if self.raft.term_at(index).is_some_and(|t| t != term) {
                // Another leader's entry replaced ours.
                self.membership_change = None;
                self.reply(id, Err(ClientError::Dropped));
            } else if latest >= index && self.raft.commit_index() >= latest && !self.raft.membership().is_joint() {
                self.membership_change = None;
                let membership = self.raft.membership().clone();
                self.reply(id, Ok(Response::Membership(membership)));
            } else if self.raft.role() != Role::Leader {
                self.membership_change = None;
                self.reply(id, Err(ClientError::Timeout));
            }
        }
        if let Some((id, _)) = self.transfer {
            if self.raft.role() != Role::Leader {
                self.transfer = None;
                let leader = self.raft.leader();
                self.reply(id, Ok(Response::Transferred { leader }));
            } else if !self.raft.transferring() {
                self.transfer = None;
                self.reply(id, Err(ClientError::Timeout));
            }
        }
    }

    /// Tells the state machine about leadership and proposes what its time-driven
    /// duties call for. The state machine leads only once an entry of this term
    /// is applied, so it starts from the state every earlier leader committed.
    fn leader_duties(&mut self, now: Millis) {
        let raft = &self.raft;
        let leading = raft.role() == Role::Leader
            && raft.term_at(raft.applied_index()) == Some(raft.term())
            && !raft.transferring();
        if leading != self.sm_leader {
            self.sm_leader = leading;
            self.sm.on_leadership(now, leading);
        }
        if !leading {
            return;
        }
        // Bounded per step; what is left is proposed on the next tick.
        const PROPOSALS_PER_STEP_MAX: usize = 64;
        for command in self.sm.leader_proposals(now, PROPOSALS_PER_STEP_MAX) {
            if self.sm.validate(&command).is_ok() {
                // Nobody waits for the result: a failed proposal is retried by the
                // state machine's own policy.
                let _ = self.raft.propose(Payload::Command(command));
            }
        }
    }

    /// Compacts the log behind a local snapshot every
    /// `snapshot_threshold_entries`: a checkpoint of a state machine whose
    /// state is durable by itself (a marker naming the applied index), else
    /// its full state. Followers that need a snapshot are sent the full state,
    /// made when one is wanted.
    fn maybe_snapshot(&mut self) {
        let applied = self.raft.applied_index();
        let since = applied - self.raft.snapshot().map_or(0, |s| s.meta.index);
        // A member that joined empty and was sent the log from its start (not
        // a snapshot) does not know the membership before the first
        // membership entry it holds (the group's initial one is only in the
        // founders' bootstrap snapshots): it waits until it applied one, as a
        // snapshot records the membership at its index.
        if since >= self.raft.config().snapshot_threshold_entries
            && !self.raft.snapshot_in_progress()
            && !self.raft.membership_at(applied).voters.is_empty()
        {
            let data = self.sm.checkpoint(applied).unwrap_or_else(|| self.sm.snapshot());
            self.raft.save_local_snapshot(applied, data);
        }
        if self.raft.wants_snapshot_to_send() {
            let data = self.sm.snapshot();
            self.raft.offer_snapshot(applied, data);
        }
    }

    fn expire_requests(&mut self, now: Millis) {
        let expired: Vec<LogIndex> = self.writes.iter().filter(|(_, w)| w.deadline <= now).map(|(&i, _)| i).collect();
        for index in expired {
            let write = self.writes.remove(&index).expect("listed above");
            self.reply(write.id, Err(ClientError::Timeout));
        }
        let expired: Vec<RequestId> = self.reads.iter().filter(|(_, r)| r.deadline <= now).map(|(&id, _)| id).collect();
        for id in expired {
            self.reads.remove(&id);
            self.reply(id, Err(ClientError::Timeout));
        }
        self.reask_read_indexes(now);
        if self.membership_change.is_some_and(|(_, _, _, deadline)| deadline <= now) {
            let (id, _, _, _) = self.membership_change.take().expect("checked");
            self.reply(id, Err(ClientError::Timeout));
        }
        if self.transfer.is_some_and(|(_, deadline)| deadline <= now) {
            let (id, _) = self.transfer.take().expect("checked");
            self.reply(id, Err(ClientError::Timeout));
        }
    }

    /// On a follower, asks the leader again for the read index of reads that
    /// have waited a heartbeat interval: the request or its answer may have been
    /// lost, and nothing else would resend it before the read times out.
    fn reask_read_indexes(&mut self, now: Millis) {
        if self.raft.role() == Role::Leader || self.raft.leader().is_none() {
            return;
        }
        let interval = self.raft.config().heartbeat_interval_ms;
        let due: Vec<RequestId> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_none() && r.asked_at + interval <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.reads.get_mut(&id).expect("listed above").asked_at = now;
            self.raft.read_index(now, id);
        }
    }

    /// The next time something is due. Request deadlines grow with arrival, so
    /// the first pending request of each kind is (close to) the earliest; a late
    /// timeout is harmless.
    fn next_deadline(&self) -> Millis {
        [
            Some(self.raft.next_deadline()),
            self.writes.values().next().map(|w| w.deadline),
            self.reads.values().next().map(|r| r.deadline),
            self.reads
                .values()
                .next()
                .filter(|r| r.index.is_none() && self.raft.role() != Role::Leader && self.raft.leader().is_some())
                .map(|r| r.asked_at + self.raft.config().heartbeat_interval_ms),
            self.membership_change.map(|(_, _, _, d)| d),
            self.transfer.map(|(_, d)| d),
            if self.sm_leader { self.sm.next_deadline() } else { None },
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("the raft deadline is always present")
    }

    /// The id of the member this node is.
    pub fn id(&self) -> NodeId {
        self.raft.id()
    }
}
