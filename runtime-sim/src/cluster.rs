//! The madsim driver: one task per member steps its [`Node`] and executes its
//! commands against the simulated network, disk and clock; [`Cluster`] is the
//! handle scenarios use to start members, send client requests and inject faults.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use lockstep_core::codec::{decode_message, encode_message};
use lockstep_core::{
    Command, Config, Event, GroupId, LogIndex, Membership, MessageBody, Millis, Node, NodeId, Raft, Reply, Request,
    RequestId, Response, Role, Term,
};
use madsim::rand::thread_rng;
use madsim::runtime::Handle;
use madsim::time::{sleep_until, Instant, Sleep};

use crate::clock::{Clock, Ppm};
use crate::dice::Dice;
use crate::disk::{Disk, DiskConfig, DiskError};
use crate::invariants::{lock, Invariants, Observed, Violation};
use crate::machine::{MachineKind, SimMachine};
use crate::net::{NetConfig, NetStats, Network};
use crate::oneshot;
use crate::trace::{Trace, TraceRecord};
use lockstep_core::kv::{recovered_from_checkpoint, MemStorage};
use lockstep_core::wal::WalIdentity;

/// The state machine every simulated member runs.
pub type SimNode = Node<Observed<SimMachine>>;

/// How to build a cluster.
#[derive(Clone)]
pub struct ClusterConfig {
    /// Initial voters, with ids `1..=nodes`.
    pub nodes: u64,
    /// The Raft group id.
    pub group: GroupId,
    /// Mixed into every member's core RNG seed.
    pub seed: u64,
    /// Network rates.
    pub net: NetConfig,
    /// Disk timing and fault rates.
    pub disk: DiskConfig,
    /// Largest initial clock offset between members, ms.
    pub clock_offset_ms_max: Millis,
    /// Largest clock drift, ppm (each member draws one in `[-max, max]`).
    pub clock_drift_ppm_max: Ppm,
    /// Client-to-member one-way latency range, µs.
    pub client_latency_us: (u64, u64),
    /// Trace records kept for failure reports.
    pub trace_ring_len: usize,
    /// Crash points: the probability (ppm) that a member crashes within
    /// `crash_point_delay_us` after it sends a granted vote, and restarts after
    /// `crash_point_down_ms`. Crashes strike at arbitrary moments; this aims a few
    /// of them at the moments where durability matters most.
    pub crash_after_vote_ppm: u32,
    /// Crash points: the probability (ppm) that a member crashes within
    /// `crash_point_delay_us` after it becomes leader (before its first entries
    /// are replicated, typically).
    pub crash_after_elected_ppm: u32,
    /// Crash points: the probability (ppm) that a leader crashes within
    /// `crash_point_delay_us` after its commit index advances.
    pub crash_after_commit_ppm: u32,
    /// Longest delay between the crash point and the crash, µs.
    pub crash_point_delay_us: u64,
    /// How long a member crashed at a crash point stays down, ms.
    pub crash_point_down_ms: (u64, u64),
    /// The state machine every member runs.
    pub state_machine: MachineKind,
    /// Adjusts each member's core configuration (timeouts, limits, mutations).
    pub tune: Arc<dyn Fn(&mut Config) + Send + Sync>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("nodes", &self.nodes)
            .field("group", &self.group)
            .field("seed", &self.seed)
            .field("state_machine", &self.state_machine)
            .field("net", &self.net)
            .field("disk", &self.disk)
            .finish_non_exhaustive()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: 3,
            group: 1,
            seed: 0,
            net: NetConfig::default(),
            disk: DiskConfig::default(),
            clock_offset_ms_max: 1_000_000,
            clock_drift_ppm_max: 0,
            client_latency_us: (100, 1_000),
            trace_ring_len: 64,
            crash_after_vote_ppm: 0,
            crash_after_elected_ppm: 0,
            crash_after_commit_ppm: 0,
            crash_point_delay_us: 5_000,
            crash_point_down_ms: (20, 300),
            state_machine: MachineKind::Register,
            tune: Arc::new(|_| {}),
        }
    }
}

/// Where a member is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberStatus {
    /// Running.
    Up,
    /// Frozen (SIGSTOP): time passes, nothing runs, messages queue up.
    Paused,
    /// Crashed; its disk waits for a restart.
    Down,
    /// Refused to start: its disk is corrupt or core rejected what it read. Stays down.
    Refused(String),
}

/// What a client got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutcome {
    /// The member answered.
    Reply(Reply),
    /// The member is down: the request never reached it.
    Unavailable,
    /// The member crashed with the request pending: it may or may not take effect.
    Lost,
    /// No answer in time: it may or may not take effect.
    TimedOut,
}

/// Counters for reports and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events stepped, all members together.
    pub steps: u64,
    /// Commands emitted.
    pub commands: u64,
    /// Messages that failed to decode (corrupted on the wire) and were dropped.
    pub decode_errors: u64,
    /// Messages dropped because the receiver was down.
    pub dropped_down: u64,
    /// Crashes.
    pub crashes: u64,
    /// Restarts.
    pub restarts: u64,
    /// Restarts that opened the KV store's storage kept from before the crash
    /// (the snapshot on disk was a checkpoint of it).
    pub checkpoint_restarts: u64,
    /// Unsynced disk writes lost in crashes.
    pub writes_lost: u64,
    /// Bytes of torn tails dropped at recovery.
    pub torn_dropped: u64,
    /// Members stopped by a failed fsync.
    pub fsync_errors: u64,
    /// Members stopped by a full disk.
    pub disk_full: u64,
    /// Members that refused to start (corruption or recovery error).
    pub refused: u64,
    /// Fsyncs completed (each may cover several syncs).
    pub fsyncs: u64,
    /// Client requests that reached a member.
    pub requests: u64,
    /// Reads answered in the very step that received them: only a leader lease
    /// allows that (a ReadIndex round needs a heartbeat round trip).
    pub lease_reads: u64,
    /// Network counters.
    pub net: NetStats,
}

enum Inbound {
    Message(Vec<u8>),
    Request { request: Request, reply: oneshot::Sender<Reply> },
}

struct Member {
    sim_node: madsim::task::NodeId,
    initial: bool,
    status: MemberStatus,
    incarnation: u64,
    node: Option<SimNode>,
    disk: Disk,
    /// The KV store's own storage (the KV machine only), kept across crashes
    /// like the disk: what a crash leaves of it ([`MemStorage::crash`]) is what
    /// the next start opens, so checkpoints are tested against crashes.
    state: Option<MemStorage>,
    clock: Clock,
    inbox: BTreeMap<(u64, u64), Inbound>,
    pending: BTreeMap<RequestId, oneshot::Sender<Reply>>,
    next_request: RequestId,
    timer_at: Option<Millis>,
    /// The last term this member was seen leading.
    led_term: Term,
    /// The commit index this member last had as leader.
    led_commit: LogIndex,
    /// When the driver sleeps until (µs), `None` when it sleeps until woken.
    wake_at_us: Option<u64>,
    woken: bool,
    waker: Option<Waker>,
}

struct Inner {
    config: ClusterConfig,
    start: Instant,
    members: BTreeMap<NodeId, Member>,
    net: Network,
    trace: Trace,
    invariants: Invariants,
    seq: u64,
    stats: SimStats,
    scratch: Vec<Command>,
    /// The read request being stepped, to count reads served from a lease.
    stepping_read: Option<(NodeId, RequestId)>,
    /// Crashes requested by crash points: (member, delay µs, down ms).
    crash_points: Vec<(NodeId, u64, u64)>,
    /// Members stopped by a disk error, to restart after the given ms.
    disk_restarts: Vec<(NodeId, u64)>,
    handle: Handle,
    /// A madsim node for fault tasks, so that they outlive the members they crash.
    faults_node: madsim::runtime::NodeHandle,
    /// Conditions scenarios wait for ([`Cluster::wait_until`]), by id.
    watches: BTreeMap<u64, Watch>,
    next_watch: u64,
}

/// A condition on the members, evaluated after every step.
type Predicate = Box<dyn FnMut(&ClusterView<'_>) -> bool + Send>;

struct Watch {
    predicate: Predicate,
    fired: bool,
    waker: Option<Waker>,
}

/// A read-only view of the members, for the conditions of [`Cluster::wait_until`].
pub struct ClusterView<'a> {
    members: &'a BTreeMap<NodeId, Member>,
}

impl ClusterView<'_> {
    /// A member's Raft state, if it is running or paused.
    pub fn raft(&self, id: NodeId) -> Option<&Raft> {
        self.members.get(&id).and_then(|m| m.node.as_ref()).map(|n| n.raft())
    }

    /// A member's status.
    pub fn status(&self, id: NodeId) -> Option<&MemberStatus> {
        self.members.get(&id).map(|m| &m.status)
    }

    /// The running leader with the highest term, if any.
    pub fn leader(&self) -> Option<(NodeId, Term)> {
        self.members
            .iter()
            .filter(|(_, m)| m.status == MemberStatus::Up)
            .filter_map(|(id, m)| m.node.as_ref().map(|n| (*id, n.raft())))
            .filter(|(_, raft)| raft.role() == Role::Leader)
            .map(|(id, raft)| (id, raft.term()))
            .max_by_key(|(_, term)| *term)
    }
}

fn rng() -> madsim::rand::GlobalRng {
    thread_rng()
}

impl Inner {
    fn now_us(&self) -> u64 {
        Instant::now().duration_since(self.start).as_micros() as u64
    }

    fn note(&mut self, member: NodeId, note: String) {
        let now_us = self.now_us();
        self.trace.note(now_us, member, note);
    }

    /// Evaluates the pending watches and wakes those whose condition holds.
    fn check_watches(&mut self) {
        if self.watches.is_empty() {
            return;
        }
        let view = ClusterView { members: &self.members };
        for watch in self.watches.values_mut().filter(|w| !w.fired) {
            if (watch.predicate)(&view) {
                watch.fired = true;
                if let Some(waker) = watch.waker.take() {
                    waker.wake();
                }
            }
        }
    }

    fn member(&mut self, id: NodeId) -> &mut Member {
        self.members.get_mut(&id).unwrap_or_else(|| panic!("no member n{id}"))
    }

    fn wake(&mut self, id: NodeId, at_us: u64) {
        let member = self.member(id);
        if member.wake_at_us.is_none_or(|wake_at| at_us < wake_at) {
            member.woken = true;
            if let Some(waker) = member.waker.take() {
                waker.wake();
            }
        }
    }

    fn core_config(&self, id: NodeId, incarnation: u64) -> Config {
        let seed = self.config.seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ incarnation.wrapping_mul(0xff51_afd7);
        let mut config = Config::new(id, self.config.group, seed);
        (self.config.tune)(&mut config);
        config
    }

    /// Processes every event that is due for `id`, in a random order among kinds.
    fn run_ready(&mut self, id: NodeId) {
        loop {
            let now_us = self.now_us();
            let member = self.member(id);
            if member.status != MemberStatus::Up {
                return;
            }
            let disk_due = member.disk.next_completion_us().is_some_and(|t| t <= now_us);
            let inbox_due = member.inbox.first_key_value().is_some_and(|((t, _), _)| *t <= now_us);
            let timer_due = member.timer_at.is_some_and(|at| member.clock.now_ms(now_us) >= at);
            let due = [disk_due, inbox_due, timer_due];
            let count = due.iter().filter(|d| **d).count() as u64;
            if count == 0 {
                return;
            }
            let mut pick = rng().below(count);
            let kind = due.iter().position(|d| {
                if *d {
                    if pick == 0 {
                        return true;
                    }
                    pick -= 1;
                }
                false
            });
            match kind {
                Some(0) => match member.disk.poll(now_us, &mut rng()) {
                    Some(Ok(sync)) => {
                        self.stats.fsyncs += 1;
                        self.step(id, Event::Persisted { up_to: sync });
                    }
                    Some(Err(error)) => self.disk_failed(id, error),
                    None => {}
                },
                Some(1) => {
                    let (_, inbound) = member.inbox.pop_first().expect("due");
                    match inbound {
                        Inbound::Message(bytes) => match decode_message(&bytes) {
                            Ok(message) if message.to == id && message.group == self.config.group => {
                                self.step(id, Event::Message(message));
                            }
                            Ok(_) | Err(_) => self.stats.decode_errors += 1,
                        },
                        Inbound::Request { request, reply } => {
                            let request_id = member.next_request;
                            member.next_request += 1;
                            member.pending.insert(request_id, reply);
                            self.stats.requests += 1;
                            if matches!(request, Request::Read(_)) {
                                self.stepping_read = Some((id, request_id));
                            }
                            self.step(id, Event::Request { id: request_id, request });
                            self.stepping_read = None;
                        }
                    }
                }
                _ => {
                    member.timer_at = None;
                    self.step(id, Event::Tick);
                }
            }
        }
    }

    fn next_wake_us(&mut self, id: NodeId) -> Option<u64> {
        let member = self.member(id);
        let disk = member.disk.next_completion_us();
        let inbox = member.inbox.first_key_value().map(|((t, _), _)| *t);
        let timer = member.timer_at.map(|at| member.clock.sim_us_at(at));
        let wake = [disk, inbox, timer].into_iter().flatten().min();
        member.wake_at_us = wake;
        wake
    }

    fn step(&mut self, id: NodeId, event: Event) {
        let now_us = self.now_us();
        let member = self.members.get_mut(&id).expect("member");
        let local = member.clock.now_ms(now_us);
        let mut node = member.node.take().expect("a running member has a node");
        self.trace.step(now_us, id, local, &event);
        self.stats.steps += 1;
        node.step(local, event);
        self.finish_step(id, node, now_us, local);
    }

    /// Drains and executes the node's commands, checks the invariants, and puts
    /// the node back.
    fn finish_step(&mut self, id: NodeId, mut node: SimNode, now_us: u64, local: Millis) {
        let mut commands = std::mem::take(&mut self.scratch);
        node.drain_commands(&mut commands);
        self.invariants.after_step(id, node.raft());
        let (role, term, commit) = (node.raft().role(), node.raft().term(), node.raft().commit_index());
        let member = self.member(id);
        member.node = Some(node);
        self.check_watches();
        let member = self.member(id);
        if role == Role::Leader && member.led_term != term {
            member.led_term = term;
            member.led_commit = commit;
            self.crash_point(id, self.config.crash_after_elected_ppm);
        } else if role == Role::Leader && commit > member.led_commit {
            member.led_commit = commit;
            self.crash_point(id, self.config.crash_after_commit_ppm);
        }
        for command in commands.drain(..) {
            if self.member(id).status != MemberStatus::Up {
                // A disk error stopped the member: the rest never happens.
                break;
            }
            self.trace.command(now_us, id, local, &command);
            self.stats.commands += 1;
            self.execute(id, now_us, command);
        }
        self.scratch = commands;
    }

    fn execute(&mut self, id: NodeId, now_us: u64, command: Command) {
        match command {
            Command::Send(message) => {
                if matches!(message.body, MessageBody::VoteResponse { granted: true }) {
                    self.crash_point(id, self.config.crash_after_vote_ppm);
                }
                let to = message.to;
                let bytes = encode_message(&message);
                self.trace.executed(Command::Send(message));
                let copies = self.net.route(id, to, bytes, now_us, &mut rng());
                let reachable =
                    self.members.get(&to).is_some_and(|m| matches!(m.status, MemberStatus::Up | MemberStatus::Paused));
                if !reachable {
                    self.stats.dropped_down += copies.len() as u64;
                    return;
                }
                for (at_us, bytes) in copies {
                    self.seq += 1;
                    let seq = self.seq;
                    self.member(to).inbox.insert((at_us, seq), Inbound::Message(bytes));
                    self.wake(to, at_us);
                }
            }
            Command::SaveHardState(_)
            | Command::AppendLog(_)
            | Command::TruncateLog { .. }
            | Command::SaveSnapshot { .. }
            | Command::CompactLog { .. }
            | Command::Sync { .. } => {
                let result = self.member(id).disk.execute(&command, now_us, &mut rng());
                self.trace.executed(command);
                if let Err(error) = result {
                    self.disk_failed(id, error);
                }
            }
            Command::Reply { id: request, reply } => {
                if self.stepping_read == Some((id, request)) && matches!(reply, Ok(Response::Read(_))) {
                    self.stats.lease_reads += 1;
                }
                let sender = self.member(id).pending.remove(&request);
                self.trace.executed(Command::Reply { id: request, reply: reply.clone() });
                if let Some(sender) = sender {
                    sender.send(reply);
                }
            }
            Command::SetTimer { at } => {
                self.member(id).timer_at = Some(at);
                self.trace.executed(Command::SetTimer { at });
            }
        }
    }

    /// A write or fsync failed: the member stops at once, as if it crashed before
    /// the failed operation (a failed fsync is never retried), and restarts from its
    /// disk a little later (after its operator freed space, for a full disk).
    fn disk_failed(&mut self, id: NodeId, error: DiskError) {
        match error {
            DiskError::FsyncFailed => self.stats.fsync_errors += 1,
            DiskError::Full => self.stats.disk_full += 1,
        }
        self.note(id, format!("n{id} stops: {error}"));
        self.crash_member(id);
        let (low, high) = self.config.crash_point_down_ms;
        let down_ms = rng().between(low, high);
        self.disk_restarts.push((id, down_ms));
    }

    /// Crashes a running or paused member (its madsim node is killed by the caller
    /// or restarted later); returns whether it was running.
    fn crash_member(&mut self, id: NodeId) -> bool {
        let member = self.member(id);
        if !matches!(member.status, MemberStatus::Up | MemberStatus::Paused) {
            return false;
        }
        member.status = MemberStatus::Down;
        if let Some(node) = member.node.take() {
            member.state = node.into_state_machine().into_inner().into_kv_storage();
        }
        if let Some(state) = &mut member.state {
            // Some of the batches since the last sync may have reached the
            // disk (fjall's journal buffer fills and is written by itself).
            let keep = rng().between(0, state.unsynced_batches() as u64) as usize;
            state.crash_keeping(keep);
        }
        member.inbox.clear();
        member.pending.clear();
        member.timer_at = None;
        member.waker = None;
        member.woken = false;
        let effect = member.disk.crash(&mut rng());
        self.stats.crashes += 1;
        self.stats.writes_lost += (effect.unsynced - effect.kept) as u64;
        self.note(
            id,
            format!(
                "crash n{id}: {} unsynced writes, {} kept{}",
                effect.unsynced,
                effect.kept,
                if effect.torn { ", last one torn" } else { "" }
            ),
        );
        true
    }

    /// With probability `ppm`, schedules a crash of `id` soon, and its restart.
    fn crash_point(&mut self, id: NodeId, ppm: u32) {
        if ppm > 0 && rng().chance_ppm(ppm) {
            let delay_us = rng().between(0, self.config.crash_point_delay_us);
            let (low, high) = self.config.crash_point_down_ms;
            let down_ms = rng().between(low, high);
            self.crash_points.push((id, delay_us, down_ms));
        }
    }

    fn is_current(&self, id: NodeId, incarnation: u64) -> bool {
        self.members.get(&id).is_some_and(|m| m.incarnation == incarnation && m.status != MemberStatus::Down)
    }

    /// Starts member `id`: `fresh` for its very first start, otherwise from its disk.
    /// Returns the incarnation to drive, or `None` if it refused to start.
    fn boot(&mut self, id: NodeId, fresh: bool) -> Option<u64> {
        let now_us = self.now_us();
        let voters: Vec<NodeId> = (1..=self.config.nodes).collect();
        let apply_log = self.invariants.apply_log();
        let incarnation = self.member(id).incarnation + 1;
        let config = self.core_config(id, incarnation);
        if let Err(why) = config.validate() {
            panic!("invalid core config for n{id}: {why}");
        }
        let member = self.members.get_mut(&id).expect("member");
        member.incarnation = incarnation;
        member.inbox.clear();
        member.pending.clear();
        member.timer_at = None;
        member.wake_at_us = None;
        member.woken = false;
        member.waker = None;
        let local = member.clock.now_ms(now_us);
        let initial = member.initial;
        let mut recovery = None;
        if fresh {
            member.disk.start_fresh();
            member.state = None;
        } else {
            match member.disk.recover() {
                Ok(found) => recovery = Some(found),
                Err(refusal) => {
                    let why = format!("disk corruption: {}", refusal.reason);
                    member.status = MemberStatus::Refused(why.clone());
                    self.stats.refused += 1;
                    self.note(id, format!("n{id} refuses to start: {why}"));
                    if !refusal.injected {
                        self.invariants.fail(
                            "recovery",
                            format!("n{id} refused to start without injected corruption: {}", refusal.reason),
                        );
                    }
                    return None;
                }
            }
        }
        if let Some(found) = &recovery {
            self.note(id, format!("n{id} recovers: {}", found.summary));
            if let Some(mismatch) = &found.mismatch {
                self.invariants.fail("recovery", format!("n{id}: {mismatch}"));
            }
        }
        // As a production member does with its state directory: kept when the
        // snapshot on disk is a checkpoint of it, otherwise rebuilt from the
        // snapshot and the log.
        let checkpointed =
            recovery.as_ref().is_some_and(|found| !found.blank && recovered_from_checkpoint(&found.recovered));
        let kept = self.member(id).state.take();
        let state = if checkpointed { kept } else { None };
        if state.is_some() {
            self.stats.checkpoint_restarts += 1;
        }
        let machine = Observed::new(self.config.state_machine.build_on(state), id, apply_log);
        let started = match recovery {
            Some(found) if !found.blank => {
                self.stats.torn_dropped += found.torn_dropped;
                Node::restart(config, machine, found.recovered, local)
            }
            // A blank disk: the member never made its first start durable, so it
            // starts from scratch, as its operator would.
            _ if initial => Node::bootstrap(config, machine, Membership::with_voters(voters), local),
            _ => Node::join(config, machine, local),
        };
        let node = match started {
            Ok(node) => node,
            Err(error) => {
                let why = format!("core rejected its start: {error}");
                self.member(id).status = MemberStatus::Refused(why.clone());
                self.stats.refused += 1;
                self.note(id, format!("n{id} refuses to start: {why}"));
                return None;
            }
        };
        self.member(id).status = MemberStatus::Up;
        let how = if fresh { "starts" } else { "restarts" };
        self.note(id, format!("n{id} {how} (incarnation {incarnation})"));
        self.finish_step(id, node, now_us, local);
        Some(incarnation)
    }
}

/// Waits until the member is woken or its next deadline passes.
struct Wait<'a> {
    inner: &'a Mutex<Inner>,
    id: NodeId,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut inner = lock(self.inner);
            let member = inner.member(self.id);
            if member.woken {
                member.woken = false;
                return Poll::Ready(());
            }
            member.waker = Some(cx.waker().clone());
        }
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

async fn drive(inner: Arc<Mutex<Inner>>, id: NodeId, incarnation: u64) {
    loop {
        let (wake_at, start) = {
            let mut guard = lock(&inner);
            if !guard.is_current(id, incarnation) {
                return;
            }
            guard.run_ready(id);
            for (member, down_ms) in std::mem::take(&mut guard.disk_restarts) {
                let cluster = Cluster { inner: inner.clone(), handle: guard.handle.clone() };
                guard.faults_node.spawn(async move {
                    madsim::time::sleep(Duration::from_millis(down_ms)).await;
                    cluster.restart(member);
                });
            }
            for (member, delay_us, down_ms) in std::mem::take(&mut guard.crash_points) {
                let cluster = Cluster { inner: inner.clone(), handle: guard.handle.clone() };
                guard.faults_node.spawn(async move {
                    madsim::time::sleep(Duration::from_micros(delay_us)).await;
                    cluster.note(format!("crash point for n{member}"));
                    cluster.crash(member);
                    madsim::time::sleep(Duration::from_millis(down_ms)).await;
                    cluster.restart(member);
                });
            }
            (guard.next_wake_us(id), guard.start)
        };
        let sleep = wake_at.map(|us| Box::pin(sleep_until(start + Duration::from_micros(us))));
        Wait { inner: &inner, id, sleep }.await;
    }
}

/// Waits for a watch of [`Cluster::wait_until`] to fire; removes it when dropped.
struct WatchWait<'a> {
    inner: &'a Mutex<Inner>,
    id: u64,
}

impl Future for WatchWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = lock(self.inner);
        match inner.watches.get_mut(&self.id) {
            Some(watch) if !watch.fired => {
                watch.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}

impl Drop for WatchWait<'_> {
    fn drop(&mut self) {
        lock(self.inner).watches.remove(&self.id);
    }
}

/// A handle on a simulated cluster; cheap to clone. Must be used inside a madsim runtime.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Mutex<Inner>>,
    handle: Handle,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    /// Creates the members `1..=config.nodes` and bootstraps them.
    pub fn start(config: ClusterConfig) -> Cluster {
        let handle = Handle::current();
        let mut dice = rng();
        let mut members = BTreeMap::new();
        for id in 1..=config.nodes {
            members.insert(id, Self::new_member(&handle, &config, id, true, &mut dice));
        }
        let inner = Inner {
            start: Instant::now(),
            members,
            net: Network::new(config.net.clone()),
            trace: Trace::new(config.trace_ring_len),
            invariants: Invariants::new(),
            seq: 0,
            stats: SimStats::default(),
            scratch: Vec::new(),
            stepping_read: None,
            crash_points: Vec::new(),
            disk_restarts: Vec::new(),
            faults_node: handle.create_node().name("faults").build(),
            handle: handle.clone(),
            config,
            watches: BTreeMap::new(),
            next_watch: 0,
        };
        let cluster = Cluster { inner: Arc::new(Mutex::new(inner)), handle };
        let ids = cluster.members();
        for id in ids {
            cluster.boot(id, true);
        }
        cluster
    }

    fn new_member(handle: &Handle, config: &ClusterConfig, id: NodeId, initial: bool, dice: &mut impl Dice) -> Member {
        let sim_node = handle.create_node().name(format!("n{id}")).build().id();
        let drift_max = config.clock_drift_ppm_max.unsigned_abs();
        let drift = dice.between(0, 2 * drift_max) as Ppm - drift_max as Ppm;
        let clock = Clock::new(dice.between(0, config.clock_offset_ms_max), drift);
        Member {
            sim_node,
            initial,
            status: MemberStatus::Down,
            incarnation: 0,
            node: None,
            disk: Disk::new(config.disk.clone(), WalIdentity { cluster_id: 1, member_id: id, group_id: config.group }),
            state: None,
            clock,
            inbox: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_request: 1,
            timer_at: None,
            led_term: 0,
            led_commit: 0,
            wake_at_us: None,
            woken: false,
            waker: None,
        }
    }

    fn boot(&self, id: NodeId, fresh: bool) {
        let (incarnation, sim_node) = {
            let mut inner = lock(&self.inner);
            let sim_node = inner.member(id).sim_node;
            (inner.boot(id, fresh), sim_node)
        };
        if let Some(incarnation) = incarnation {
            let spawner = self.handle.get_node(sim_node).expect("sim node exists");
            spawner.spawn(drive(self.inner.clone(), id, incarnation));
        }
    }

    /// Adds a brand-new member `id` that starts empty with `Node::join`; it takes
    /// part once a membership change adds it.
    pub fn add_member(&self, id: NodeId) {
        {
            let mut inner = lock(&self.inner);
            assert!(!inner.members.contains_key(&id), "n{id} exists");
            let config = inner.config.clone();
            let member = Self::new_member(&self.handle, &config, id, false, &mut rng());
            inner.members.insert(id, member);
        }
        self.boot(id, true);
    }

    /// Every member id, in order.
    pub fn members(&self) -> Vec<NodeId> {
        lock(&self.inner).members.keys().copied().collect()
    }

    /// Simulated µs since the cluster started.
    pub fn now_us(&self) -> u64 {
        lock(&self.inner).now_us()
    }

    /// The state machine the members run.
    pub fn state_machine(&self) -> MachineKind {
        lock(&self.inner).config.state_machine
    }

    /// Records a scenario action in the trace.
    pub fn note(&self, note: String) {
        lock(&self.inner).note(0, note);
    }

    /// A member's status.
    pub fn status(&self, id: NodeId) -> MemberStatus {
        lock(&self.inner).member(id).status.clone()
    }

    /// Kills member `id` (a crash: unsynced writes are lost, pending requests get
    /// [`ClientOutcome::Lost`]). No effect if it is already down.
    pub fn crash(&self, id: NodeId) {
        let mut inner = lock(&self.inner);
        let sim_node = inner.member(id).sim_node;
        if inner.crash_member(id) {
            self.handle.kill(sim_node);
        }
    }

    /// Restarts a crashed member from its disk (freeing space first if the disk
    /// is full). No effect unless it is down.
    pub fn restart(&self, id: NodeId) {
        let sim_node = {
            let mut inner = lock(&self.inner);
            let member = inner.member(id);
            if member.status != MemberStatus::Down {
                return;
            }
            if member.disk.is_full() {
                member.disk.set_full(false);
                inner.note(id, format!("free space on the disk of n{id}"));
            }
            inner.stats.restarts += 1;
            inner.member(id).sim_node
        };
        self.handle.restart(sim_node);
        self.boot(id, false);
    }

    /// Freezes a running member.
    pub fn pause(&self, id: NodeId) {
        let mut inner = lock(&self.inner);
        let member = inner.member(id);
        if member.status == MemberStatus::Up {
            member.status = MemberStatus::Paused;
            let sim_node = member.sim_node;
            self.handle.pause(sim_node);
            inner.note(id, format!("pause n{id}"));
        }
    }

    /// Unfreezes a paused member.
    pub fn resume(&self, id: NodeId) {
        let mut inner = lock(&self.inner);
        let member = inner.member(id);
        if member.status == MemberStatus::Paused {
            member.status = MemberStatus::Up;
            let sim_node = member.sim_node;
            self.handle.resume(sim_node);
            inner.note(id, format!("resume n{id}"));
            inner.wake(id, 0);
        }
    }

    /// Flips a bit in one of the member's synced WAL records (one followed by
    /// another synced record); it will refuse to restart after its next crash.
    /// Returns false if there was no such record yet.
    pub fn corrupt_disk(&self, id: NodeId) -> bool {
        let mut inner = lock(&self.inner);
        let record = inner.member(id).disk.corrupt(&mut rng());
        inner.note(id, format!("corrupt a durable record of n{id}: {record:?}"));
        record.is_some()
    }

    /// Fills the member's disk: its next write fails and stops it; it restarts
    /// (with space freed) shortly after.
    pub fn fill_disk(&self, id: NodeId) {
        let mut inner = lock(&self.inner);
        inner.member(id).disk.set_full(true);
        inner.note(id, format!("fill the disk of n{id}"));
    }

    /// Ends disk faults: no more failed fsyncs, and every full disk gets space.
    pub fn stop_disk_faults(&self) {
        let mut inner = lock(&self.inner);
        let mut config = inner.config.disk.clone();
        config.fsync_error_ppm = 0;
        for member in inner.members.values_mut() {
            member.disk.set_config(config.clone());
            member.disk.set_full(false);
        }
        inner.config.disk = config;
        inner.note(0, "disk faults off".into());
    }

    /// Changes the disk timing and fault rates of every member.
    pub fn set_disk_config(&self, config: DiskConfig) {
        let mut inner = lock(&self.inner);
        for member in inner.members.values_mut() {
            member.disk.set_config(config.clone());
        }
        inner.config.disk = config;
    }

    /// Changes the network rates.
    pub fn set_net_config(&self, config: NetConfig) {
        let mut inner = lock(&self.inner);
        inner.note(0, format!("network rates {config:?}"));
        inner.net.set_config(config);
    }

    /// Splits the members into groups that cannot reach each other.
    pub fn partition(&self, groups: &[Vec<NodeId>]) {
        let mut inner = lock(&self.inner);
        inner.net.partition(groups);
        inner.note(0, format!("partition {groups:?}"));
    }

    /// Drops every message from `from` to `to` (one direction).
    pub fn block(&self, from: NodeId, to: NodeId) {
        let mut inner = lock(&self.inner);
        inner.net.block(from, to);
        inner.note(0, format!("block n{from} -> n{to}"));
    }

    /// Holds every message from `from` to `to` for `duration`.
    pub fn clog(&self, from: NodeId, to: NodeId, duration: Duration) {
        let mut inner = lock(&self.inner);
        let until = inner.now_us() + duration.as_micros() as u64;
        inner.net.clog(from, to, until);
        inner.note(0, format!("clog n{from} -> n{to} for {duration:?}"));
    }

    /// Turns every crash point off (before checking liveness).
    pub fn disable_crash_points(&self) {
        let mut inner = lock(&self.inner);
        inner.config.crash_after_vote_ppm = 0;
        inner.config.crash_after_elected_ppm = 0;
        inner.config.crash_after_commit_ppm = 0;
    }

    /// Removes every partition, block and clog.
    pub fn heal_network(&self) {
        let mut inner = lock(&self.inner);
        inner.net.heal();
        inner.note(0, "heal network".into());
    }

    /// Moves a member's clock forward.
    pub fn clock_jump(&self, id: NodeId, jump_ms: Millis) {
        let mut inner = lock(&self.inner);
        let now_us = inner.now_us();
        inner.member(id).clock.jump(now_us, jump_ms);
        inner.note(id, format!("clock of n{id} jumps {jump_ms} ms"));
        inner.wake(id, 0);
    }

    /// Changes a member's clock drift.
    pub fn set_drift(&self, id: NodeId, drift_ppm: Ppm) {
        let mut inner = lock(&self.inner);
        let now_us = inner.now_us();
        inner.member(id).clock.set_drift(now_us, drift_ppm);
        inner.note(id, format!("clock of n{id} drifts {drift_ppm} ppm"));
        inner.wake(id, 0);
    }

    /// Sends a client request to member `id` and waits up to `timeout` for the answer.
    pub async fn request(&self, id: NodeId, request: Request, timeout: Duration) -> ClientOutcome {
        let receiver = {
            let mut inner = lock(&self.inner);
            let (low, high) = inner.config.client_latency_us;
            let at_us = inner.now_us() + rng().between(low, high);
            inner.seq += 1;
            let seq = inner.seq;
            let member = inner.member(id);
            if !matches!(member.status, MemberStatus::Up | MemberStatus::Paused) {
                return ClientOutcome::Unavailable;
            }
            let (sender, receiver) = oneshot::channel();
            member.inbox.insert((at_us, seq), Inbound::Request { request, reply: sender });
            inner.wake(id, at_us);
            receiver
        };
        match madsim::time::timeout(timeout, receiver).await {
            Ok(Some(reply)) => ClientOutcome::Reply(reply),
            Ok(None) => ClientOutcome::Lost,
            Err(_) => ClientOutcome::TimedOut,
        }
    }

    /// The running leader with the highest term, if any.
    pub fn leader(&self) -> Option<(NodeId, Term)> {
        let inner = lock(&self.inner);
        inner
            .members
            .iter()
            .filter(|(_, m)| m.status == MemberStatus::Up)
            .filter_map(|(id, m)| m.node.as_ref().map(|n| (*id, n.raft())))
            .filter(|(_, raft)| raft.role() == Role::Leader)
            .map(|(id, raft)| (id, raft.term()))
            .max_by_key(|(_, term)| *term)
    }

    /// Waits until `condition` holds, up to `timeout`; returns whether it did.
    /// The condition is evaluated now and after every step of every member (its
    /// commands executed), so a scenario can act at the exact simulated instant
    /// a state is reached, before any message sent in that step is delivered.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl FnMut(&ClusterView<'_>) -> bool + Send + 'static,
    ) -> bool {
        let id = {
            let mut inner = lock(&self.inner);
            let id = inner.next_watch;
            inner.next_watch += 1;
            let mut watch = Watch { predicate: Box::new(condition), fired: false, waker: None };
            watch.fired = (watch.predicate)(&ClusterView { members: &inner.members });
            inner.watches.insert(id, watch);
            id
        };
        let waiting = WatchWait { inner: &self.inner, id };
        madsim::time::timeout(timeout, waiting).await.is_ok()
    }

    /// Runs `f` with a view of the members.
    pub fn view<T>(&self, f: impl FnOnce(&ClusterView<'_>) -> T) -> T {
        let inner = lock(&self.inner);
        f(&ClusterView { members: &inner.members })
    }

    /// Runs `f` on a member's node, if it is running or paused.
    pub fn with_node<T>(&self, id: NodeId, f: impl FnOnce(&SimNode) -> T) -> Option<T> {
        let inner = lock(&self.inner);
        inner.members.get(&id).and_then(|m| m.node.as_ref()).map(f)
    }

    /// Commit index of every member that has a node.
    pub fn commit_indices(&self) -> BTreeMap<NodeId, LogIndex> {
        let inner = lock(&self.inner);
        inner.members.iter().filter_map(|(id, m)| m.node.as_ref().map(|n| (*id, n.raft().commit_index()))).collect()
    }

    /// Checks log matching across every member that has a node.
    pub fn check_log_matching(&self) {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let logs: Vec<_> =
            inner.members.iter().filter_map(|(id, m)| m.node.as_ref().map(|n| (*id, n.raft()))).collect();
        inner.invariants.check_log_matching(&logs);
    }

    /// Records a violation found by the scenario (liveness, linearizability).
    pub fn fail(&self, invariant: &'static str, detail: String) {
        lock(&self.inner).invariants.fail(invariant, detail);
    }

    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<Violation> {
        lock(&self.inner).invariants.violation()
    }

    /// The highest index known committed, over all members.
    pub fn commit_index(&self) -> LogIndex {
        lock(&self.inner).invariants.commit_index()
    }

    /// The number of terms that had a leader.
    pub fn terms_with_leader(&self) -> usize {
        lock(&self.inner).invariants.leaders().len()
    }

    /// The run's fingerprint so far.
    pub fn trace_hash(&self) -> u64 {
        lock(&self.inner).trace.hash()
    }

    /// The latest trace records.
    pub fn trace_tail(&self) -> Vec<TraceRecord> {
        lock(&self.inner).trace.tail()
    }

    /// Counters.
    pub fn stats(&self) -> SimStats {
        let inner = lock(&self.inner);
        SimStats { net: inner.net.stats().clone(), ..inner.stats.clone() }
    }

    /// Applies observed, all members together.
    pub fn applies(&self) -> u64 {
        let inner = lock(&self.inner);
        let log = inner.invariants.apply_log();
        let applies = lock(&log).applies();
        applies
    }
}
