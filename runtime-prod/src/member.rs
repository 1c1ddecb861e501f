//! One member of a cluster on a glommio executor: core's [`Node`] composed with
//! the etcd MVCC state machine over fjall, driven by the WAL, the peer
//! transport and glommio's timers.
//!
//! This is the production twin of the simulator's member: the same `Node`, the
//! same state machine, the same command contract; only the I/O differs.
//!
//! ```text
//!  peer frames ─┐                    ┌─► Send ─────────────► Transport
//!  client calls ├─► Member::step ──► Node ─► AppendLog/Sync ─► Wal ─► (persisted task) ─► step(Persisted)
//!  timer task ──┘   (one RefCell,    │   ─► Reply ─────────► waiting client / forwarding member
//!                    never across    └─► SetTimer ─────────► timer task
//!                    an await)
//! ```
//!
//! Every input steps the node synchronously and carries out the commands it
//! emits before returning, in order; nothing holds the state across an
//! `await`. Three tasks feed inputs: the peer listener, the timer task and the
//! persisted task (one `wait_persisted` at a time: group commit happens in the
//! WAL, which covers every sync submitted meanwhile with one fsync).
//!
//! The KV state in fjall (`state/`) is durable in its own right: every
//! `raft.snapshot_threshold_entries` the member syncs it and records in the
//! WAL's snapshot only a checkpoint marker naming the applied index it holds
//! (no copy of the state), and at start it opens it and replays the log after
//! that index, as the simulator does with its in-memory storage. Until the
//! first checkpoint, and with encryption at rest (the state then lives in
//! memory), the WAL's snapshot holds the full state and `state/` is rebuilt
//! from it at every start.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use lockstep_core::kv::{
    decode_reply as decode_result, recovered_from_checkpoint, KvCommand, KvConfig, KvQuery, KvResult, KvStore,
};
use lockstep_core::wal::{WalConfig, WalIdentity};
use lockstep_core::{
    ClientError, Command, Config, Event, Membership, Message, Millis, Node, NodeId, Reply, Request, RequestId,
    Response, Role, StateMachine,
};

use crate::fjall_storage::{FjallStorage, MemoryState, StateStorage};

fn decode_kv(bytes: &[u8]) -> Result<KvResult, ClientError> {
    decode_result(bytes).map_err(|why| ClientError::Invalid(format!("undecodable state machine result: {why}")))
}
use crate::local::{Notify, Slot, SlotSender};
use crate::metrics::Metrics;
use crate::transport::{Inbound, PeerStats, Transport, TransportOptions};
use crate::wal::{Wal, WalStats};
use crate::wire::Forward;

/// The state machine a production member runs.
pub type Store = KvStore<StateStorage>;

/// How a member with an empty data directory starts. A member whose WAL holds
/// state restarts from it and ignores this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartMode {
    /// Found a new cluster with this initial membership.
    Bootstrap(Membership),
    /// Wait to be added to an existing cluster (the leader sends the log or a
    /// snapshot once a member adds this one).
    Join,
}

/// Everything a member needs to start.
#[derive(Debug, Clone)]
pub struct MemberOptions {
    /// Raft settings; `raft.id` is this member.
    pub raft: Config,
    /// The cluster this member belongs to (checked in every peer handshake and
    /// in the WAL's segment headers).
    pub cluster_id: u64,
    /// The KV state machine's settings.
    pub kv: KvConfig,
    /// The WAL's settings.
    pub wal: WalConfig,
    /// The WAL directory.
    pub wal_dir: PathBuf,
    /// The KV state's directory (derived data, rebuilt at start).
    pub state_dir: PathBuf,
    /// Where to accept peer connections.
    pub peer_listen: SocketAddr,
    /// The peer address other members dial (`host:port`), told to peers in
    /// handshakes so that they learn where a new member listens.
    pub peer_advertise: String,
    /// Peer addresses (`host:port`) by member id; this member's own entry is ignored.
    pub peers: BTreeMap<NodeId, String>,
    /// What to do with an empty data directory.
    pub start: StartMode,
    /// Peer transport limits.
    pub transport: TransportOptions,
    /// Mutual TLS between members, if on (see [`crate::transport`]).
    pub peer_tls: Option<crate::tls::TlsContext>,
    /// Encryption at rest, if on: the WAL's records and the snapshot file are
    /// sealed with it, and the KV state stays in memory (no `state_dir`
    /// files), see [`crate::crypt`].
    pub encryption: Option<lockstep_core::wal::Cipher>,
}

/// Why a member could not start.
#[derive(Debug)]
pub enum StartError {
    /// The WAL could not be opened or recovered (damage is named there).
    Wal(crate::WalOpenError),
    /// The state directory could not be prepared.
    Storage(String),
    /// Core refused the recovered state.
    Recovery(String),
    /// The peer port could not be bound.
    Listen(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Wal(e) => write!(f, "{e}"),
            StartError::Storage(e) => write!(f, "state storage: {e}"),
            StartError::Recovery(e) => write!(f, "recovery: {e}"),
            StartError::Listen(e) => write!(f, "peer listener: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A snapshot of a member's state, for status endpoints and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// This member.
    pub id: NodeId,
    /// The cluster.
    pub cluster_id: u64,
    /// The current term.
    pub term: u64,
    /// Leader, follower or candidate.
    pub role: Role,
    /// The leader this member knows of.
    pub leader: Option<NodeId>,
    /// The highest index known committed.
    pub commit_index: u64,
    /// The highest index applied to the state machine.
    pub applied_index: u64,
    /// The highest index durable in this member's WAL.
    pub persisted_index: u64,
    /// The last log index.
    pub last_index: u64,
    /// The membership in force.
    pub membership: Membership,
    /// On the leader: each member's replication progress (match index).
    pub progress: BTreeMap<NodeId, u64>,
    /// Requests waiting for an answer.
    pub pending_requests: usize,
    /// The KV store's revision.
    pub revision: i64,
    /// The KV store's compacted revision.
    pub compact_revision: i64,
    /// Live keys in the KV store.
    pub keys: u64,
    /// Bytes of stored revisions (what the quota counts).
    pub db_size_bytes: u64,
    /// Leader changes seen since start.
    pub leader_changes: u64,
    /// What the WAL did.
    pub wal: WalStats,
    /// Per peer transport counters.
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Set once the member stopped on a fatal error.
    pub failure: Option<String>,
    /// Milliseconds since the member started.
    pub uptime_ms: u64,
    /// Free and total bytes of the file system holding the WAL.
    pub disk: Option<DiskSpace>,
}

/// Who this member is and what it knows of the leadership: what every client
/// response header needs, without building a whole [`MemberStatus`] (which
/// copies the membership and peer counters and asks the file system for free
/// space).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftView {
    /// This member.
    pub id: NodeId,
    /// The cluster.
    pub cluster_id: u64,
    /// The current term.
    pub term: u64,
    /// Leader, follower or candidate.
    pub role: Role,
    /// The leader this member knows of.
    pub leader: Option<NodeId>,
}

/// Space on a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes available to this process.
    pub free_bytes: u64,
    /// Bytes in total.
    pub total_bytes: u64,
}

/// The space of the file system holding `path` (`statvfs`).
pub fn disk_space(path: &std::path::Path) -> Option<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u64;
    Some(DiskSpace { free_bytes: stat.f_bavail as u64 * block, total_bytes: stat.f_blocks as u64 * block })
}

struct Inner {
    node: Node<Store>,
    wal: Wal,
    transport: Transport,
    cluster_id: u64,
    data_dir: PathBuf,
    epoch: Instant,
    commands: Vec<Command>,
    next_request: RequestId,
    /// Local callers waiting for a reply, by request id.
    replies: BTreeMap<RequestId, SlotSender<Reply>>,
    /// Requests served for another member: our id → (member, its id).
    forwarded_in: BTreeMap<RequestId, (NodeId, u64)>,
    /// Requests this member forwarded, waiting for the leader's reply.
    forwarded_out: BTreeMap<u64, Forwarded>,
    timer_at: Option<Millis>,
    sync_submitted: u64,
    last_leader: Option<NodeId>,
    last_applied: u64,
    last_fsync: Option<Duration>,
    leader_changes: u64,
    failure: Option<String>,
    stopped: bool,
    metrics: Metrics,
    /// Client requests (local and forwarded) waiting for the request task,
    /// which steps all of them as one batch ([`Node::step_many`]).
    queued: Vec<Event>,
}

/// A request forwarded to the leader. It fails (indeterminate: `Timeout`) when
/// the leader changes meanwhile ([`Inner::execute`]) or when its deadline
/// passes ([`Member::forward_sweeper`]): no timer per request (one per
/// forwarded request woke a follower's executor every 20 ms while it waited).
struct Forwarded {
    leader: NodeId,
    deadline: Instant,
    reply: SlotSender<Reply>,
}

impl Inner {
    fn now(&self) -> Millis {
        self.epoch.elapsed().as_millis() as Millis
    }
}

#[derive(Clone, Default)]
struct Signals {
    timer: Notify,
    sync: Notify,
    applied: Notify,
    stopped: Notify,
    /// A request was queued (see `Inner::queued`).
    queued: Notify,
}

/// A running member. Cheap to clone; every clone drives the same member. Lives
/// on the glommio executor that started it (`!Send`).
#[derive(Clone)]
pub struct Member {
    inner: Rc<RefCell<Inner>>,
    signals: Signals,
    request_timeout: Duration,
}

impl Member {
    /// Opens the WAL (recovering it), rebuilds the KV state, starts the peer
    /// listener and the member's tasks. Must run inside a glommio executor.
    pub async fn start(options: MemberOptions) -> Result<Member, StartError> {
        let id = options.raft.id;
        let identity = WalIdentity { cluster_id: options.cluster_id, member_id: id, group_id: options.raft.group };
        let (wal, report) = Wal::open_with_cipher(&options.wal_dir, identity, options.wal, options.encryption.clone())
            .await
            .map_err(StartError::Wal)?;
        // The KV state in state/ is kept when the WAL's snapshot is a
        // checkpoint of it (the usual case once a member has taken a
        // snapshot); otherwise it is rebuilt from the WAL's full snapshot and
        // log, from an empty directory (which also removes one left from
        // before encryption was turned on).
        let checkpointed = options.encryption.is_none() && recovered_from_checkpoint(&report.recovered);
        if options.state_dir.exists() && !checkpointed {
            std::fs::remove_dir_all(&options.state_dir)
                .map_err(|e| StartError::Storage(format!("cannot clear {}: {e}", options.state_dir.display())))?;
        }
        let storage = if options.encryption.is_some() {
            StateStorage::Memory(MemoryState::default())
        } else {
            StateStorage::Disk(FjallStorage::open(&options.state_dir).map_err(|e| StartError::Storage(e.to_string()))?)
        };
        // The key index's hash key: random per start, so that clients cannot
        // pick keys that collide in it.
        let index_hash_key = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u64);
        let kv = KvConfig { index_hash_key, ..options.kv };
        let store = KvStore::open(kv, storage).map_err(StartError::Storage)?;
        let listener = crate::net::listen(options.peer_listen)
            .map_err(|e| StartError::Listen(format!("cannot listen on {}: {e}", options.peer_listen)))?;
        let epoch = Instant::now();
        let node = if report.is_blank() {
            match &options.start {
                StartMode::Bootstrap(membership) => {
                    tracing::info!(member = id, voters = ?membership.voters, "bootstrapping a new cluster");
                    Node::bootstrap(options.raft.clone(), store, membership.clone(), 0)
                }
                StartMode::Join => {
                    tracing::info!(member = id, "empty data directory: waiting to be added to the cluster");
                    Node::join(options.raft.clone(), store, 0)
                }
            }
        } else {
            let r = &report.recovered;
            tracing::info!(
                member = id,
                term = r.hard_state.term,
                snapshot_index = r.snapshot.as_ref().map_or(0, |(m, _)| m.index),
                entries = r.entries.len(),
                "restarting from the WAL"
            );
            Node::restart(options.raft.clone(), store, report.recovered, 0)
        }
        .map_err(|e| StartError::Recovery(format!("{e:?}")))?;
        let transport = Transport::new(
            id,
            options.cluster_id,
            options.peer_advertise.clone(),
            options.transport,
            options.peer_tls.clone(),
        );
        for (peer, address) in &options.peers {
            transport.set_peer(*peer, address.clone());
        }
        let metrics = Metrics::new(id);
        let inner = Inner {
            node,
            wal,
            transport: transport.clone(),
            cluster_id: options.cluster_id,
            data_dir: options.wal_dir.clone(),
            epoch,
            commands: Vec::new(),
            next_request: 1,
            replies: BTreeMap::new(),
            forwarded_in: BTreeMap::new(),
            forwarded_out: BTreeMap::new(),
            timer_at: None,
            sync_submitted: 0,
            last_leader: None,
            last_applied: 0,
            last_fsync: None,
            leader_changes: 0,
            failure: None,
            stopped: false,
            metrics,
            queued: Vec::new(),
        };
        let member = Member {
            inner: Rc::new(RefCell::new(inner)),
            signals: Signals::default(),
            request_timeout: Duration::from_millis(options.raft.request_timeout_ms),
        };
        // Carry out what the constructor emitted (the bootstrap snapshot, timers).
        member.inner.borrow_mut().execute(&member.signals);
        glommio::spawn_local(member.clone().timer_task()).detach();
        glommio::spawn_local(member.clone().persisted_task()).detach();
        glommio::spawn_local(member.clone().request_task()).detach();
        glommio::spawn_local(member.clone().forward_sweeper()).detach();
        // Weak: the transport's tasks must not keep a stopped member (and its
        // open fjall database, whose lock a restart in the same process needs)
        // alive.
        let deliver: Rc<dyn Fn(Inbound)> = {
            let inner = Rc::downgrade(&member.inner);
            let (signals, request_timeout) = (member.signals.clone(), member.request_timeout);
            Rc::new(move |inbound| {
                if let Some(inner) = inner.upgrade() {
                    Member { inner, signals: signals.clone(), request_timeout }.deliver(inbound);
                }
            })
        };
        glommio::spawn_local(async move { transport.serve(listener, deliver).await }).detach();
        #[cfg(feature = "mutation-follower-reads")]
        tracing::warn!(
            member = id,
            "built with the planted bug mutation-follower-reads: followers answer linearizable reads \
             without ReadIndex; this build is for testing the Jepsen harness only"
        );
        tracing::info!(member = id, peer = %options.peer_listen, "member started");
        Ok(member)
    }

    /// Feeds one event to the node and carries out what it emits.
    fn step(&self, event: Event) {
        self.step_many(std::iter::once(event));
    }

    fn step_many(&self, events: impl IntoIterator<Item = Event>) {
        let mut inner = self.inner.borrow_mut();
        if inner.failure.is_some() || inner.stopped {
            return;
        }
        let now = inner.now();
        let applied = inner.node.raft().applied_index();
        let started = Instant::now();
        inner.node.step_many(now, events);
        if inner.node.raft().applied_index() != applied {
            // Applying writes the entries to fjall: etcd's backend commit.
            inner.metrics.observe_backend_commit(started.elapsed());
        }
        inner.execute(&self.signals);
    }

    fn deliver(&self, inbound: Inbound) {
        match inbound {
            Inbound::Message(message) => self.step_message(message),
            Inbound::Forward { from, frame: Forward::Request { id, request } } => {
                let local = {
                    let mut inner = self.inner.borrow_mut();
                    let local = inner.next_request;
                    inner.next_request += 1;
                    inner.forwarded_in.insert(local, (from, id));
                    local
                };
                self.enqueue(Event::Request { id: local, request });
            }
            Inbound::Forward { frame: Forward::Reply { id, reply }, .. } => {
                if let Some(forwarded) = self.inner.borrow_mut().forwarded_out.remove(&id) {
                    forwarded.reply.send(reply);
                }
            }
        }
    }

    fn step_message(&self, message: Message) {
        self.step(Event::Message(message));
    }

    /// Asks this member's node directly (no forwarding); the reply comes once
    /// the node answers (it times requests out itself).
    pub async fn request_local(&self, request: Request) -> Reply {
        let (tx, rx) = Slot::new();
        let id = {
            let mut inner = self.inner.borrow_mut();
            if let Some(failure) = &inner.failure {
                return Err(ClientError::Invalid(format!("member stopped: {failure}")));
            }
            let id = inner.next_request;
            inner.next_request += 1;
            inner.replies.insert(id, tx);
            id
        };
        self.enqueue(Event::Request { id, request });
        rx.await.unwrap_or(Err(ClientError::Timeout))
    }

    /// Queues a client request for the request task: the requests that arrive
    /// while other tasks run (the many streams of one HTTP/2 read, the
    /// requests of one forwarded frame batch) are stepped together.
    fn enqueue(&self, event: Event) {
        let first = {
            let mut inner = self.inner.borrow_mut();
            inner.queued.push(event);
            inner.queued.len() == 1
        };
        if first {
            self.signals.queued.notify();
        }
    }

    /// Steps the queued requests as one batch whenever there are some.
    async fn request_task(self) {
        let mut batch = Vec::new();
        loop {
            let seen = self.signals.queued.generation();
            let stopped = {
                let mut inner = self.inner.borrow_mut();
                std::mem::swap(&mut batch, &mut inner.queued);
                inner.stopped || inner.failure.is_some()
            };
            if stopped {
                return;
            }
            if batch.is_empty() {
                self.signals.queued.changed_since(seen).await;
            } else {
                self.step_many(batch.drain(..));
            }
        }
    }

    /// Forwards `request` to `leader` and waits for its reply. If the leader
    /// changes meanwhile the request may or may not take effect: it is answered
    /// at once (indeterminate, `Timeout`) instead of waiting out the timeout,
    /// so the client retries against the new leader.
    async fn request_forwarded(&self, leader: NodeId, request: Request) -> Reply {
        let (reply, rx) = Slot::new();
        {
            let mut inner = self.inner.borrow_mut();
            let id = inner.next_request;
            inner.next_request += 1;
            let deadline = Instant::now() + self.request_timeout;
            inner.forwarded_out.insert(id, Forwarded { leader, deadline, reply });
            inner.transport.forward(leader, &Forward::Request { id, request });
        }
        rx.await.unwrap_or(Err(ClientError::Timeout))
    }

    /// Fails forwarded requests whose deadline passed (the leader may have
    /// died without answering), a few times per request timeout. Ends as soon
    /// as the member stops (it must not keep the member, and its open fjall
    /// database, alive).
    async fn forward_sweeper(self) {
        let period = (self.request_timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
        loop {
            let seen = self.signals.stopped.generation();
            {
                let mut inner = self.inner.borrow_mut();
                if inner.stopped || inner.failure.is_some() {
                    return;
                }
                let now = Instant::now();
                // Dropping a reply's sender answers its waiter with `Timeout`.
                inner.forwarded_out.retain(|_, forwarded| forwarded.deadline > now);
            }
            future::or(glommio::timer::sleep(period), self.signals.stopped.changed_since(seen)).await;
        }
    }

    /// Serves a client request the way etcd does for any member: writes and
    /// leader requests go to the leader (forwarded over the peer transport),
    /// linearizable reads are confirmed with ReadIndex from this member. While
    /// there is no leader it retries until the request timeout.
    pub async fn submit(&self, request: Request) -> Reply {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let (role, leader, me) = {
                let inner = self.inner.borrow();
                (inner.node.raft().role(), inner.node.raft().leader(), inner.node.raft().id())
            };
            let forwardable = matches!(request, Request::Write(_) | Request::LeaderRequest(_));
            let reply = match leader {
                Some(leader) if forwardable && role != Role::Leader && leader != me => {
                    self.request_forwarded(leader, request.clone()).await
                }
                _ => self.request_local(request.clone()).await,
            };
            match reply {
                Err(ClientError::NotLeader { .. }) if Instant::now() < deadline => {
                    // An election is under way or the leader moved: wait for the
                    // next leader rather than failing the client.
                    let leader_known = self.inner.borrow().node.raft().leader();
                    let wait = if leader_known.is_some() && leader_known != leader { 0 } else { 50 };
                    glommio::timer::sleep(Duration::from_millis(wait)).await;
                }
                Err(ClientError::NotLeader { .. }) => return Err(ClientError::Timeout),
                other => return other,
            }
        }
    }

    /// Proposes a KV command (from any member: forwarded to the leader) and
    /// returns the state machine's result once it is applied.
    pub async fn kv_write(&self, command: &KvCommand) -> Result<KvResult, ClientError> {
        match self.submit(Request::Write(command.encode())).await? {
            Response::Written { result, .. } => decode_kv(&result),
            other => Err(ClientError::Invalid(format!("unexpected response {other:?}"))),
        }
    }

    /// Answers a KV query: linearizable (ReadIndex, confirmed by a quorum after
    /// the call) or serializable (this member's state as it is).
    pub async fn kv_read(&self, query: &KvQuery, linearizable: bool) -> Result<KvResult, ClientError> {
        if !linearizable {
            return decode_kv(&self.query_local(&query.encode()));
        }
        // A planted bug for the Jepsen harness's self-test (see docs/jepsen.md):
        // a follower answers a linearizable read from its own state without
        // ReadIndex. Only a build with the feature has it; no config enables it.
        #[cfg(feature = "mutation-follower-reads")]
        if self.inner.borrow().node.raft().role() != Role::Leader {
            return decode_kv(&self.query_local(&query.encode()));
        }
        match self.submit(Request::Read(query.encode())).await? {
            Response::Read(result) => decode_kv(&result),
            other => Err(ClientError::Invalid(format!("unexpected response {other:?}"))),
        }
    }

    /// A request only the leader serves (lease keep-alive, exact lease TTL),
    /// forwarded to the leader.
    pub async fn kv_leader_request(&self, query: &KvQuery) -> Result<KvResult, ClientError> {
        match self.submit(Request::LeaderRequest(query.encode())).await? {
            Response::Read(result) => decode_kv(&result),
            other => Err(ClientError::Invalid(format!("unexpected response {other:?}"))),
        }
    }

    /// Answers a query from this member's state without confirming leadership
    /// (etcd's serializable reads).
    pub fn query_local(&self, query: &[u8]) -> Vec<u8> {
        self.inner.borrow().node.state_machine().query(query)
    }

    /// Runs `f` on the KV store, for its local parts (watches). Must not change
    /// replicated state.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(self.inner.borrow_mut().node.state_machine_mut())
    }

    /// Resolves after the state machine applied something since `seen`
    /// ([`Member::applied_generation`]).
    pub async fn applied_since(&self, seen: u64) {
        self.signals.applied.changed_since(seen).await
    }

    /// The generation of the applied-notifier.
    pub fn applied_generation(&self) -> u64 {
        self.signals.applied.generation()
    }

    /// Wakes watchers as if something was applied (after creating a watcher
    /// whose first responses are ready).
    pub fn poke_watchers(&self) {
        self.signals.applied.notify()
    }

    /// The member's id.
    pub fn id(&self) -> NodeId {
        self.inner.borrow().node.raft().id()
    }

    /// How long the last WAL sync took (submit to durable).
    pub fn last_fsync(&self) -> Option<Duration> {
        self.inner.borrow().last_fsync
    }

    /// The member's metrics registry.
    pub fn metrics(&self) -> Metrics {
        self.inner.borrow().metrics.clone()
    }

    /// Sets a peer's address (for members added after start).
    pub fn set_peer(&self, id: NodeId, address: String) {
        let transport = self.inner.borrow().transport.clone();
        transport.set_peer(id, address);
    }

    /// Stops sending to a member (it left the cluster).
    pub fn remove_peer(&self, id: NodeId) {
        let transport = self.inner.borrow().transport.clone();
        transport.remove_peer(id);
    }

    /// Every peer address this member knows (configured, set, or learned from
    /// handshakes).
    pub fn peer_addresses(&self) -> BTreeMap<NodeId, String> {
        self.inner.borrow().transport.peer_addresses()
    }

    /// Identity, term and leadership, cheaply (see [`RaftView`]).
    pub fn raft_view(&self) -> RaftView {
        let inner = self.inner.borrow();
        let raft = inner.node.raft();
        RaftView {
            id: raft.id(),
            cluster_id: inner.cluster_id,
            term: raft.term(),
            role: raft.role(),
            leader: raft.leader(),
        }
    }

    /// The current state.
    pub fn status(&self) -> MemberStatus {
        let inner = self.inner.borrow();
        let raft = inner.node.raft();
        let store = inner.node.state_machine();
        let membership = raft.membership().clone();
        let progress = if raft.role() == Role::Leader {
            membership
                .voters
                .iter()
                .chain(&membership.outgoing)
                .chain(&membership.learners)
                .filter_map(|id| raft.progress(*id).map(|p| (*id, p.match_index)))
                .collect()
        } else {
            BTreeMap::new()
        };
        MemberStatus {
            id: raft.id(),
            cluster_id: inner.cluster_id,
            term: raft.term(),
            role: raft.role(),
            leader: raft.leader(),
            commit_index: raft.commit_index(),
            applied_index: raft.applied_index(),
            persisted_index: raft.persisted_index(),
            last_index: raft.last_index(),
            membership,
            progress,
            pending_requests: inner.node.pending_requests(),
            revision: store.current_revision(),
            compact_revision: store.compact_revision(),
            keys: store.mvcc().index().key_count(),
            db_size_bytes: store.mvcc().size_bytes(),
            leader_changes: inner.leader_changes,
            wal: inner.wal.stats(),
            peers: inner.transport.stats(),
            failure: inner.failure.clone(),
            uptime_ms: inner.now(),
            disk: disk_space(&inner.data_dir),
        }
    }

    /// Resolves when the member stops on a fatal error (a WAL failure); returns it.
    pub async fn failed(&self) -> String {
        loop {
            let seen = self.signals.stopped.generation();
            if let Some(failure) = self.inner.borrow().failure.clone() {
                return failure;
            }
            self.signals.stopped.changed_since(seen).await;
        }
    }

    /// Stops the member: a leader first hands leadership to the most
    /// caught-up voter (bounded by `transfer_timeout`; zero skips it), requests
    /// in flight get their answers (bounded by `transfer_timeout` again), then
    /// the tasks stop, the transport closes and the WAL finishes its queued
    /// writes.
    pub async fn shutdown(self, transfer_timeout: Duration) {
        let target = {
            let inner = self.inner.borrow();
            let raft = inner.node.raft();
            if raft.role() == Role::Leader && inner.failure.is_none() && !transfer_timeout.is_zero() {
                raft.membership()
                    .voters
                    .iter()
                    .filter(|id| **id != raft.id())
                    .filter_map(|id| raft.progress(*id).map(|p| (p.match_index, *id)))
                    .max()
                    .map(|(_, id)| id)
            } else {
                None
            }
        };
        if let Some(to) = target {
            tracing::info!(to, "shutting down: transferring leadership first");
            let transfer = async { Some(self.request_local(Request::TransferLeader { to }).await) };
            let timeout = async {
                glommio::timer::sleep(transfer_timeout).await;
                None
            };
            match future::or(transfer, timeout).await {
                Some(Ok(_)) => tracing::info!(to, "leadership transferred"),
                Some(Err(e)) => tracing::warn!(to, "leadership transfer failed: {e:?}"),
                None => tracing::warn!(to, "leadership transfer timed out"),
            }
        }
        // Let requests already in flight finish (or fail over) before stopping.
        let drain_until = Instant::now() + transfer_timeout;
        while self.inner.borrow().node.pending_requests() > 0 && Instant::now() < drain_until {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        let wal = {
            let mut inner = self.inner.borrow_mut();
            inner.stopped = true;
            inner.transport.close();
            inner.replies.clear();
            inner.queued.clear();
            inner.forwarded_out.clear();
            inner.wal.clone()
        };
        self.signals.stopped.notify();
        self.signals.timer.notify();
        self.signals.sync.notify();
        self.signals.queued.notify();
        if let Err(e) = wal.close().await {
            tracing::error!("WAL close failed: {e}");
        }
        tracing::info!("member stopped");
    }

    async fn timer_task(self) {
        loop {
            let seen = self.signals.timer.generation();
            let (at, now, stopped) = {
                let inner = self.inner.borrow();
                (inner.timer_at, inner.now(), inner.stopped || inner.failure.is_some())
            };
            if stopped {
                return;
            }
            match at {
                Some(at) if at <= now => {
                    self.inner.borrow_mut().timer_at = None;
                    self.step(Event::Tick);
                }
                Some(at) => {
                    let sleep = glommio::timer::sleep(Duration::from_millis(at - now));
                    future::or(sleep, self.signals.timer.changed_since(seen)).await;
                }
                None => self.signals.timer.changed_since(seen).await,
            }
        }
    }

    async fn persisted_task(self) {
        let mut reported = 0;
        loop {
            let seen = self.signals.sync.generation();
            let (target, wal, stopped) = {
                let inner = self.inner.borrow();
                (inner.sync_submitted, inner.wal.clone(), inner.stopped || inner.failure.is_some())
            };
            if stopped {
                return;
            }
            if target <= reported {
                self.signals.sync.changed_since(seen).await;
                continue;
            }
            let started = Instant::now();
            match wal.wait_persisted(target).await {
                Ok(up_to) => {
                    let took = started.elapsed();
                    let mut inner = self.inner.borrow_mut();
                    inner.metrics.observe_fsync(took);
                    inner.last_fsync = Some(took);
                    drop(inner);
                    reported = up_to;
                    self.step(Event::Persisted { up_to });
                }
                Err(failure) => {
                    let why = failure.to_string();
                    tracing::error!("WAL failure, the member stops (an fsync is never retried): {why}");
                    self.inner.borrow_mut().failure = Some(why);
                    self.signals.stopped.notify();
                    return;
                }
            }
        }
    }
}

impl Inner {
    /// Carries out the node's commands in order.
    fn execute(&mut self, signals: &Signals) {
        let mut commands = std::mem::take(&mut self.commands);
        self.node.drain_commands(&mut commands);
        for command in commands.drain(..) {
            match command {
                Command::Send(message) => self.transport.send(&message),
                Command::Reply { id, reply } => {
                    if reply.is_err() {
                        self.metrics.proposals_failed.inc();
                    }
                    if let Some(tx) = self.replies.remove(&id) {
                        tx.send(reply);
                    } else if let Some((member, their_id)) = self.forwarded_in.remove(&id) {
                        self.transport.forward(member, &Forward::Reply { id: their_id, reply });
                    }
                }
                Command::SetTimer { at } => {
                    if self.timer_at != Some(at) {
                        self.timer_at = Some(at);
                        signals.timer.notify();
                    }
                }
                Command::Sync { id } => {
                    if let Err(failure) = self.wal.submit(&command) {
                        self.fail(failure.to_string(), signals);
                        break;
                    }
                    self.sync_submitted = id;
                    signals.sync.notify();
                }
                other => {
                    if let Err(failure) = self.wal.submit(&other) {
                        self.fail(failure.to_string(), signals);
                        break;
                    }
                }
            }
        }
        self.commands = commands;
        let raft = self.node.raft();
        let leader = raft.leader();
        if leader != self.last_leader {
            if leader.is_some() {
                self.leader_changes += 1;
                self.metrics.leader_changes.inc();
                tracing::info!(leader = ?leader, term = raft.term(), "leader changed");
            }
            self.last_leader = leader;
            // Requests forwarded to another leader may or may not take effect:
            // dropping their senders answers them `Timeout` (indeterminate).
            self.forwarded_out.retain(|_, forwarded| Some(forwarded.leader) == leader);
        }
        let applied = raft.applied_index();
        if applied != self.last_applied {
            self.metrics.proposals_applied.inc_by(applied.saturating_sub(self.last_applied));
            self.last_applied = applied;
            signals.applied.notify();
        }
    }

    fn fail(&mut self, why: String, signals: &Signals) {
        tracing::error!("WAL failure, the member stops: {why}");
        self.failure = Some(why);
        signals.stopped.notify();
    }
}
