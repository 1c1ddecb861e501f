//! The [`Backend`] trait: what the etcd API needs from a lockstep member.
//!
//! The gRPC service ([`crate::EtcdService`]) turns each RPC into one of these
//! calls. Implementations: the replicated member (in the node crate) and
//! [`crate::MemoryBackend`] (one process, no Raft). The futures are not `Send`:
//! a backend lives on one executor thread together with the connections it
//! serves.

use std::sync::Arc;

use lockstep_core::kv::{
    AuthEvent, AuthStore, KvCommand, KvQuery, KvResult, WatchCreateRequest, WatchId, WatchResponse,
};
use lockstep_core::ClientError;

/// Identity fields of every response header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderInfo {
    /// The cluster's id.
    pub cluster_id: u64,
    /// The id of the member answering.
    pub member_id: u64,
    /// The member's current Raft term.
    pub raft_term: u64,
}

/// Why the member could not serve a request (the KV-level outcome is inside
/// `Ok(KvResult)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// Raft refused or lost the request (see [`ClientError`] for which may have
    /// taken effect).
    Client(ClientError),
    /// The member cannot serve at all (stopping, not started, its WAL failed);
    /// the text is sent with gRPC status `UNAVAILABLE`.
    Unavailable(String),
    /// One of etcd's specific refusals (membership, leadership transfer).
    Etcd(EtcdError),
    /// The backend does not implement this call (`UNIMPLEMENTED`).
    Unimplemented(&'static str),
}

/// etcd's refusals of cluster and maintenance requests, each sent with etcd's
/// status code and text (`api/v3rpc/rpctypes/error.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdError {
    /// `ErrGRPCMemberNotFound`.
    MemberNotFound,
    /// `ErrGRPCMemberExist`.
    MemberExists,
    /// `ErrGRPCPeerURLExist`.
    PeerUrlExists,
    /// `ErrGRPCMemberBadURLs`.
    MemberBadUrls,
    /// `ErrGRPCMemberNotLearner`.
    MemberNotLearner,
    /// `ErrGRPCLearnerNotReady`.
    LearnerNotReady,
    /// `ErrGRPCMemberNotEnoughStarted`.
    NotEnoughStartedMembers,
    /// `ErrGRPCNotLeader` (`FAILED_PRECONDITION`, as etcd sends it for
    /// `MoveLeader`).
    NotLeader,
    /// `ErrGRPCBadLeaderTransferee`.
    BadLeaderTransferee,
    /// `ErrGRPCFutureRev` (a hash asked at a revision not reached yet).
    FutureRevision,
    /// `ErrGRPCCompacted` (a hash asked below the compacted revision).
    Compacted,
}

impl From<ClientError> for BackendError {
    fn from(e: ClientError) -> BackendError {
        BackendError::Client(e)
    }
}

/// A member's state for etcd's `Maintenance/Status` (`etcdctl endpoint status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStatus {
    /// The server version reported to clients (etcd's, e.g. "3.5.0", so that
    /// clients checking versions accept it).
    pub version: String,
    /// Bytes the member's data takes on disk.
    pub db_size_bytes: i64,
    /// Bytes of that in use (etcd's `dbSizeInUse`).
    pub db_size_in_use_bytes: i64,
    /// The leader's member id, 0 if unknown.
    pub leader: u64,
    /// The member's last log index.
    pub raft_index: u64,
    /// The member's current term.
    pub raft_term: u64,
    /// The member's applied index.
    pub raft_applied_index: u64,
    /// Active problems (etcd lists alarms here: "memberID:... alarm:NOSPACE").
    pub errors: Vec<String>,
    /// The member is a learner (non-voting).
    pub is_learner: bool,
}

/// One member of the cluster, for etcd's `Cluster/MemberList` (`etcdctl
/// member list`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member's id.
    pub id: u64,
    /// Its name; etcd shows a member without one as "unstarted".
    pub name: String,
    /// The URLs its peers reach it at.
    pub peer_urls: Vec<String>,
    /// The URLs clients reach it at.
    pub client_urls: Vec<String>,
    /// It is a learner (non-voting).
    pub is_learner: bool,
}

/// The outcome of `Maintenance/HashKV`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvHash {
    /// The hash of every revision record up to `hash_revision`.
    pub hash: u32,
    /// The compacted revision when the hash was computed.
    pub compact_revision: i64,
    /// The revision the hash covers.
    pub hash_revision: i64,
}

/// What the etcd API needs from a member. Futures are !Send: one backend lives
/// on one glommio executor thread.
#[async_trait::async_trait(?Send)]
pub trait Backend {
    /// The identity fields of response headers, as of now.
    fn header(&self) -> HeaderInfo;

    /// Proposes a write through Raft (forwarded to the leader if needed);
    /// resolves once applied here.
    async fn write(&self, command: KvCommand) -> Result<KvResult, BackendError>;

    /// A read: linearizable (ReadIndex) or serializable (local state).
    async fn read(&self, query: KvQuery, linearizable: bool) -> Result<KvResult, BackendError>;

    /// A request only the leader serves (LeaseKeepAlive, LeaseTimeToLive with
    /// its exact TTL).
    async fn leader_request(&self, query: KvQuery) -> Result<KvResult, BackendError>;

    /// Adds a watcher to the local watch hub (see core's
    /// `KvStore::watch_create`); a refused one gets its canceled response.
    fn watch_create(&self, request: WatchCreateRequest) -> Result<WatchId, WatchResponse>;

    /// Removes a watcher; its canceled response, or `None` if unknown.
    fn watch_cancel(&self, id: WatchId) -> Option<WatchResponse>;

    /// Queues progress notifications: for every synced watcher when `all`,
    /// otherwise for those created with `progress_notify`. The service calls it
    /// with `true` for a client's progress request; the member's owner should
    /// call it with `false` periodically (etcd: every 10 minutes), since the
    /// API layer has no timers.
    fn watch_progress(&self, all: bool);

    /// The next buffered response of that watcher.
    fn watch_take(&self, id: WatchId) -> Option<WatchResponse>;

    /// Resolves after the state machine applied something (or a watch got a
    /// response) since the call.
    async fn watch_changed(&self);

    /// The auth state (users, roles, permissions, enabled) as of the last
    /// applied entry: a shared copy, cheap to take on every request.
    fn auth(&self) -> Arc<AuthStore>;

    /// The auth events of the entries applied since the last call (issued
    /// simple tokens, voided users; see core's `KvStore::take_auth_events`).
    fn take_auth_events(&self) -> Vec<AuthEvent>;

    /// Runs CPU-heavy work (bcrypt hashing and checking) where it does not
    /// stall the member; resolves when it is done. The default runs it at
    /// once; a member on an async executor runs it on a blocking thread.
    async fn offload(&self, job: Box<dyn FnOnce() + Send>) {
        job();
    }

    /// The member's state for `Maintenance/Status`. The default derives what it
    /// can from [`Backend::header`] (this member as leader, no sizes or
    /// indexes); a real member overrides it.
    async fn status(&self) -> Result<MemberStatus, BackendError> {
        let header = self.header();
        Ok(MemberStatus {
            version: crate::grpc::ETCD_VERSION.to_string(),
            leader: header.member_id,
            raft_term: header.raft_term,
            ..MemberStatus::default()
        })
    }

    /// The cluster's members, as of the member's membership (`linearizable`:
    /// the client asked for the committed view). The default lists this member
    /// alone, unnamed and without URLs; a real member overrides it.
    async fn members(&self, linearizable: bool) -> Result<Vec<MemberInfo>, BackendError> {
        let _ = linearizable;
        Ok(vec![MemberInfo { id: self.header().member_id, ..MemberInfo::default() }])
    }

    /// `Cluster/MemberAdd`: registers a new member reachable at `peer_urls`
    /// (as a learner when `is_learner`) under a fresh id; the added member and
    /// the members afterwards.
    async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(MemberInfo, Vec<MemberInfo>), BackendError> {
        let _ = (peer_urls, is_learner);
        Err(BackendError::Unimplemented("Cluster/MemberAdd"))
    }

    /// `Cluster/MemberRemove`: the members afterwards.
    async fn member_remove(&self, id: u64) -> Result<Vec<MemberInfo>, BackendError> {
        let _ = id;
        Err(BackendError::Unimplemented("Cluster/MemberRemove"))
    }

    /// `Cluster/MemberUpdate`: changes a member's peer URLs; the members
    /// afterwards.
    async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> Result<Vec<MemberInfo>, BackendError> {
        let _ = (id, peer_urls);
        Err(BackendError::Unimplemented("Cluster/MemberUpdate"))
    }

    /// `Cluster/MemberPromote`: makes a caught-up learner a voter; the members
    /// afterwards.
    async fn member_promote(&self, id: u64) -> Result<Vec<MemberInfo>, BackendError> {
        let _ = id;
        Err(BackendError::Unimplemented("Cluster/MemberPromote"))
    }

    /// `Maintenance/Snapshot`: the member's state as one file (the service
    /// streams it in chunks).
    async fn snapshot(&self) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Unimplemented("Maintenance/Snapshot"))
    }

    /// `Maintenance/Hash`: a hash of everything the member stores.
    async fn hash(&self) -> Result<u32, BackendError> {
        Err(BackendError::Unimplemented("Maintenance/Hash"))
    }

    /// `Maintenance/HashKV`: a hash of the revision records up to `revision`
    /// (0: the current one), equal on every member at the same revision.
    async fn hash_kv(&self, revision: i64) -> Result<KvHash, BackendError> {
        let _ = revision;
        Err(BackendError::Unimplemented("Maintenance/HashKV"))
    }

    /// `Maintenance/MoveLeader`: hands leadership to `target` (leader only).
    async fn move_leader(&self, target: u64) -> Result<(), BackendError> {
        let _ = target;
        Err(BackendError::Unimplemented("Maintenance/MoveLeader"))
    }
}
