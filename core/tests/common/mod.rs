//! A small synchronous, deterministic cluster harness for core's own tests: an
//! in-memory network with latency and partitions, an in-memory disk per member
//! that loses unsynced writes on crash, a jumping clock, and safety checks after
//! every step. (The full fault simulator lives in runtime-sim / sim-tests.)

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use lockstep_core::register::{Register, RegisterCommand, RegisterQuery, RegisterResult};
use lockstep_core::rng::SeededRng;
use lockstep_core::{
    Command, Config, Entry, Event, HardState, LogIndex, Membership, Message, Millis, Node, NodeId, Recovered, Reply,
    Request, RequestId, Response, Role, SnapshotMeta, StateMachine, Term,
};

/// One member's disk: durable state plus writes not yet synced.
#[derive(Debug, Default, Clone)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    pub entries: BTreeMap<LogIndex, Entry>,
    pub unsynced: Vec<Command>,
}

impl Disk {
    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::SaveHardState(hs) => self.hard_state = hs,
            Command::AppendLog(entries) => {
                if let Some(first) = entries.first() {
                    let _ = self.entries.split_off(&first.index);
                }
                for e in entries {
                    self.entries.insert(e.index, e);
                }
            }
            Command::TruncateLog { from } => {
                let _ = self.entries.split_off(&from);
            }
            Command::SaveSnapshot { meta, data } => self.snapshot = Some((meta, data)),
            Command::CompactLog { up_to } => self.entries = self.entries.split_off(&(up_to + 1)),
            other => panic!("not a write: {other:?}"),
        }
    }

    pub fn sync(&mut self) {
        for cmd in std::mem::take(&mut self.unsynced) {
            self.apply(cmd);
        }
    }

    /// A crash: a prefix of the unsynced writes reached the disk, the rest is lost.
    pub fn crash(&mut self, keep: usize) {
        let writes = std::mem::take(&mut self.unsynced);
        for cmd in writes.into_iter().take(keep) {
            self.apply(cmd);
        }
    }

    pub fn recovered(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.values().cloned().collect(),
        }
    }
}

pub struct Cluster<S: StateMachine = Register> {
    pub now: Millis,
    pub rng: SeededRng,
    pub seed: u64,
    pub nodes: BTreeMap<NodeId, Option<Node<S>>>,
    pub disks: BTreeMap<NodeId, Disk>,
    pub timers: BTreeMap<NodeId, Millis>,
    pub net: BTreeMap<(Millis, u64), Message>,
    pub syncs: BTreeMap<(Millis, NodeId), u64>,
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    pub replies: BTreeMap<RequestId, Reply>,
    pub next_request: RequestId,
    pub seq: u64,
    pub latency_ms: (u64, u64),
    pub loss_percent: u64,
    /// Term -> the leader observed in it.
    pub leaders: BTreeMap<Term, NodeId>,
    /// Index -> (term, entry) of every entry any member applied.
    pub applied: BTreeMap<LogIndex, Entry>,
    pub checked_applied: BTreeMap<NodeId, LogIndex>,
    pub config: fn(NodeId, u64) -> Config,
    pub new_sm: fn() -> S,
    /// Set: a crashed member's state machine is kept and handed to this at
    /// restart (which opens what a crash left of its storage); unset: a
    /// restart starts from `new_sm`.
    pub reopen: Option<fn(S) -> S>,
    pub kept: BTreeMap<NodeId, S>,
}

pub fn default_config(id: NodeId, seed: u64) -> Config {
    let mut c = Config::new(id, 1, seed);
    c.election_timeout_ms = 300;
    c.heartbeat_interval_ms = 50;
    c.request_timeout_ms = 3_000;
    c
}

impl Cluster<Register> {
    pub fn new(n: u64, seed: u64) -> Cluster {
        Cluster::with_config(n, seed, default_config)
    }

    pub fn with_config(n: u64, seed: u64, config: fn(NodeId, u64) -> Config) -> Cluster {
        Cluster::with_state_machine(n, seed, config, Register::new)
    }
}

impl<S: StateMachine> Cluster<S> {
    pub fn with_state_machine(n: u64, seed: u64, config: fn(NodeId, u64) -> Config, new_sm: fn() -> S) -> Cluster<S> {
        let mut c = Cluster {
            now: 0,
            rng: SeededRng::new(seed),
            seed,
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            timers: BTreeMap::new(),
            net: BTreeMap::new(),
            syncs: BTreeMap::new(),
            blocked: BTreeSet::new(),
            replies: BTreeMap::new(),
            next_request: 1,
            seq: 0,
            latency_ms: (1, 5),
            loss_percent: 0,
            leaders: BTreeMap::new(),
            applied: BTreeMap::new(),
            checked_applied: BTreeMap::new(),
            config,
            new_sm,
            reopen: None,
            kept: BTreeMap::new(),
        };
        let membership = Membership::with_voters(1..=n);
        for id in 1..=n {
            let node = Node::bootstrap((c.config)(id, seed), (c.new_sm)(), membership.clone(), 0).expect("bootstrap");
            c.nodes.insert(id, Some(node));
            c.disks.insert(id, Disk::default());
            c.drain(id);
        }
        c
    }

    /// Adds a brand-new, empty member (it still has to be added by a membership change).
    pub fn add_empty(&mut self, id: NodeId) {
        let node = Node::join((self.config)(id, self.seed), (self.new_sm)(), self.now).expect("join");
        self.nodes.insert(id, Some(node));
        self.disks.insert(id, Disk::default());
        self.drain(id);
    }

    pub fn node(&self, id: NodeId) -> &Node<S> {
        self.nodes[&id].as_ref().expect("member is up")
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.is_some())
    }

    fn drain(&mut self, id: NodeId) {
        let mut cmds = Vec::new();
        if let Some(Some(node)) = self.nodes.get_mut(&id) {
            node.drain_commands(&mut cmds);
        }
        for cmd in cmds {
            match cmd {
                Command::Send(m) => {
                    let dropped = self.blocked.contains(&(m.from, m.to))
                        || (self.loss_percent > 0 && self.rng.range(0, 100) < self.loss_percent);
                    if !dropped {
                        let at = self.now + self.rng.range(self.latency_ms.0, self.latency_ms.1 + 1);
                        self.seq += 1;
                        self.net.insert((at, self.seq), m);
                    }
                }
                Command::Sync { id: sync } => {
                    let at = self.now + self.rng.range(1, 3);
                    self.syncs.insert((at, id), sync);
                }
                Command::Reply { id: rid, reply } => {
                    self.replies.insert(rid, reply);
                }
                Command::SetTimer { at } => {
                    self.timers.insert(id, at);
                }
                write => self.disks.get_mut(&id).expect("disk").unsynced.push(write),
            }
        }
        self.check(id);
    }

    fn step(&mut self, id: NodeId, event: Event) {
        let now = self.now;
        if let Some(Some(node)) = self.nodes.get_mut(&id) {
            node.step(now, event);
        } else {
            return;
        }
        self.drain(id);
    }

    /// Safety checks after every step of member `id`.
    fn check(&mut self, id: NodeId) {
        let Some(Some(node)) = self.nodes.get(&id) else { return };
        let raft = node.raft();
        if raft.role() == Role::Leader {
            let prev = self.leaders.insert(raft.term(), id);
            assert!(prev.is_none_or(|p| p == id), "two leaders in term {}: {prev:?} and {id}", raft.term());
            if prev.is_none() {
                // Leader completeness: a new leader holds every entry applied so far.
                for (&index, entry) in self.applied.range(raft.first_index()..) {
                    let t = raft.term_at(index);
                    assert_eq!(t, Some(entry.term), "new leader {id} lacks committed entry {index}");
                }
            }
        }
        let from = self.checked_applied.get(&id).copied().unwrap_or(0);
        let applied = raft.applied_index();
        for index in (from + 1)..=applied {
            if let Some(entry) = raft.entry(index) {
                if let Some(seen) = self.applied.get(&index) {
                    assert_eq!(seen, entry, "member {id} applied a different entry at {index}");
                } else {
                    self.applied.insert(index, entry.clone());
                }
            }
        }
        self.checked_applied.insert(id, applied);
    }

    /// Runs every event due until `until`.
    pub fn run_until(&mut self, until: Millis) {
        loop {
            let net = self.net.keys().next().map(|&(at, _)| at);
            let sync = self.syncs.keys().next().map(|&(at, _)| at);
            let timer = self.timers.values().copied().min();
            let Some(next) = [net, sync, timer].into_iter().flatten().min() else { break };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if sync == Some(next) {
                let (key, sync_id) = self.syncs.pop_first().expect("present");
                let id = key.1;
                if self.is_up(id) {
                    self.disks.get_mut(&id).expect("disk").sync();
                    self.step(id, Event::Persisted { up_to: sync_id });
                }
            } else if net == Some(next) {
                let (_, m) = self.net.pop_first().expect("present");
                let to = m.to;
                if !self.blocked.contains(&(m.from, m.to)) {
                    self.step(to, Event::Message(m));
                }
            } else {
                let id = *self.timers.iter().find(|(_, &at)| at == next).expect("present").0;
                self.timers.remove(&id);
                self.step(id, Event::Tick);
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, ms: Millis) {
        let until = self.now + ms;
        self.run_until(until);
    }

    pub fn leader(&self) -> Option<NodeId> {
        // The leader of the highest term among live members.
        self.nodes
            .iter()
            .filter_map(|(&id, n)| n.as_ref().map(|n| (id, n)))
            .filter(|(_, n)| n.raft().role() == Role::Leader)
            .max_by_key(|(_, n)| n.raft().term())
            .map(|(id, _)| id)
    }

    pub fn wait_for_leader(&mut self, within: Millis) -> NodeId {
        let deadline = self.now + within;
        while self.now < deadline {
            self.run_for(10);
            if let Some(l) = self.leader() {
                return l;
            }
        }
        panic!("no leader within {within} ms (seed {})", self.seed);
    }

    pub fn request(&mut self, to: NodeId, request: Request) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.step(to, Event::Request { id, request });
        id
    }

    /// Sends a request and runs until it is answered.
    pub fn call(&mut self, to: NodeId, request: Request, within: Millis) -> Reply {
        let id = self.request(to, request);
        let deadline = self.now + within;
        while self.now < deadline {
            if let Some(reply) = self.replies.remove(&id) {
                return reply;
            }
            self.run_for(5);
        }
        self.replies.remove(&id).unwrap_or_else(|| panic!("request {id} to {to} unanswered (seed {})", self.seed))
    }

    pub fn crash(&mut self, id: NodeId) {
        let unsynced = self.disks[&id].unsynced.len() as u64;
        let keep = self.rng.range(0, unsynced + 1) as usize;
        self.disks.get_mut(&id).expect("disk").crash(keep);
        if let Some(Some(node)) = self.nodes.insert(id, None) {
            if self.reopen.is_some() {
                self.kept.insert(id, node.into_state_machine());
            }
        }
        self.timers.remove(&id);
        self.syncs.retain(|&(_, n), _| n != id);
        self.checked_applied.remove(&id);
    }

    pub fn restart(&mut self, id: NodeId) {
        let recovered = self.disks[&id].recovered();
        let sm = match (self.reopen, self.kept.remove(&id)) {
            (Some(reopen), Some(old)) => reopen(old),
            _ => (self.new_sm)(),
        };
        let node = Node::restart((self.config)(id, self.seed), sm, recovered, self.now).expect("restart");
        self.nodes.insert(id, Some(node));
        self.drain(id);
    }

    pub fn isolate(&mut self, id: NodeId) {
        let all: Vec<NodeId> = self.nodes.keys().copied().collect();
        for other in all {
            if other != id {
                self.blocked.insert((id, other));
                self.blocked.insert((other, id));
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }
}

impl Cluster<Register> {
    pub fn write(&mut self, to: NodeId, key: &str, value: i64) -> Reply {
        let cmd = RegisterCommand::Write { key: key.into(), value }.encode();
        self.call(to, Request::Write(cmd), 5_000)
    }

    pub fn read(&mut self, to: NodeId, key: &str) -> Result<Option<i64>, lockstep_core::ClientError> {
        let q = RegisterQuery { key: key.into() }.encode();
        match self.call(to, Request::Read(q), 5_000)? {
            Response::Read(bytes) => match RegisterResult::decode(&bytes).expect("decodes") {
                RegisterResult::Value(v) => Ok(v),
                other => panic!("unexpected read result {other:?}"),
            },
            other => panic!("unexpected response {other:?}"),
        }
    }

    pub fn value(&self, id: NodeId, key: &str) -> Option<i64> {
        self.node(id).state_machine().get(key)
    }
}
