//! Requests and responses mirroring etcd's `etcdserverpb` and `mvccpb` messages.
//!
//! Field names and meanings follow etcd's `rpc.proto`; integers keep etcd's
//! `int64` so a gRPC gateway converts without loss. Header fields other than the
//! revision (cluster id, member id, raft term) belong to the node and are filled
//! in there. The recursive types ([`TxnRequest`], [`TxnResponse`]) are flattened
//! for encoding by [`crate::kv::wire`]; everything else derives rkyv directly.

use rkyv::{Archive, Deserialize, Serialize};

use super::auth::AuthCommand;
use super::errors::KvError;

/// A main revision: the store's logical clock, bumped once per write that changes
/// something. The empty store is at revision 1, as etcd's is.
pub type Revision = i64;

/// A lease id. 0 means "no lease".
pub type LeaseId = i64;

/// The revision part of etcd's `ResponseHeader`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The store's revision when the request was served (see each response).
    pub revision: Revision,
}

/// A key with its value and MVCC metadata (etcd's `mvccpb.KeyValue`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The revision of the put that created the key (after its last delete).
    pub create_revision: Revision,
    /// The revision of the last change to the key.
    pub mod_revision: Revision,
    /// Puts since creation, starting at 1; a delete resets it.
    pub version: i64,
    /// The value.
    pub value: Vec<u8>,
    /// The lease the key is attached to, 0 for none.
    pub lease: LeaseId,
}

/// How a range sorts its result.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Key order, unless the target is not the key (then ascending).
    #[default]
    None,
    /// Ascending by the target; ties keep key order.
    Ascend,
    /// Descending by the target; ties keep key order.
    Descend,
}

/// What a range sorts by.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// etcd's `RangeRequest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// The first key of the range (must not be empty).
    pub key: Vec<u8>,
    /// Empty: just `key`; `[0]`: every key `>= key`; otherwise `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// At most this many keys (0 or negative: no limit); `more` says if others exist.
    pub limit: i64,
    /// Read as of this revision (0 or negative: the current one).
    pub revision: Revision,
    /// The order of the result.
    pub sort_order: SortOrder,
    /// What the result is sorted by.
    pub sort_target: SortTarget,
    /// Serve from the local state without a quorum round (a node concern).
    pub serializable: bool,
    /// Leave values out.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Keep keys with mod revision `>=` this (0: no bound).
    pub min_mod_revision: Revision,
    /// Keep keys with mod revision `<=` this (0: no bound).
    pub max_mod_revision: Revision,
    /// Keep keys with create revision `>=` this (0: no bound).
    pub min_create_revision: Revision,
    /// Keep keys with create revision `<=` this (0: no bound).
    pub max_create_revision: Revision,
}

/// etcd's `RangeResponse`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The current revision (not the one read at).
    pub header: ResponseHeader,
    /// The keys found, after filters, sort and limit.
    pub kvs: Vec<KeyValue>,
    /// More keys passed the filters than `limit` allowed.
    pub more: bool,
    /// The number of keys in the range at the revision read, before filters.
    pub count: i64,
}

/// etcd's `PutRequest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// The key (must not be empty).
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The lease to attach the key to (0: none, detaching it from any).
    pub lease: LeaseId,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist; `value` must be empty).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist; `lease` must be 0).
    pub ignore_lease: bool,
}

/// etcd's `PutResponse`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The revision of the put.
    pub header: ResponseHeader,
    /// The previous key-value, when asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// etcd's `DeleteRangeRequest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// The first key (must not be empty).
    pub key: Vec<u8>,
    /// As in [`RangeRequest::range_end`].
    pub range_end: Vec<u8>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// etcd's `DeleteRangeResponse`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// The revision of the delete (the current one if nothing was deleted).
    pub header: ResponseHeader,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted key-values, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// How a compare relates the stored field to the given one.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CompareResult {
    /// Stored `==` given.
    #[default]
    Equal,
    /// Stored `>` given.
    Greater,
    /// Stored `<` given.
    Less,
    /// Stored `!=` given.
    NotEqual,
}

/// The field a compare looks at, with the value to compare against (etcd's
/// `target` plus its `target_union`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The version (0 for a missing key).
    Version(i64),
    /// The create revision (0 for a missing key).
    CreateRevision(Revision),
    /// The mod revision (0 for a missing key).
    ModRevision(Revision),
    /// The value, compared bytewise; a compare on a missing key is false.
    Value(Vec<u8>),
    /// The lease (0 for none or a missing key).
    Lease(LeaseId),
}

/// etcd's `Compare`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The relation that must hold.
    pub result: CompareResult,
    /// The field and the value.
    pub target: CompareTarget,
    /// The key (must not be empty).
    pub key: Vec<u8>,
    /// As in [`RangeRequest::range_end`]; the compare must hold for every key in
    /// the range.
    pub range_end: Vec<u8>,
}

/// One operation of a txn branch (etcd's `RequestOp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOp {
    /// A range.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested txn.
    Txn(TxnRequest),
}

/// etcd's `TxnRequest`: if every compare holds, do `success`, else `failure`,
/// atomically, in one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// The conditions, all evaluated against the state before the txn.
    pub compare: Vec<Compare>,
    /// The ops done when every compare holds.
    pub success: Vec<RequestOp>,
    /// The ops done otherwise.
    pub failure: Vec<RequestOp>,
}

/// The answer to one [`RequestOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOp {
    /// To a range.
    Range(RangeResponse),
    /// To a put.
    Put(PutResponse),
    /// To a delete.
    DeleteRange(DeleteRangeResponse),
    /// To a nested txn.
    Txn(TxnResponse),
}

/// etcd's `TxnResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// The revision after the txn; 0 in nested txns, as etcd sends it.
    pub header: ResponseHeader,
    /// Every compare held.
    pub succeeded: bool,
    /// One answer per op of the branch taken.
    pub responses: Vec<ResponseOp>,
}

/// etcd's `CompactionRequest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionRequest {
    /// Remove history before this revision.
    pub revision: Revision,
    /// Answer once the data is removed physically (always so here: compaction is
    /// synchronous).
    pub physical: bool,
}

/// etcd's `CompactionResponse`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionResponse {
    /// The current revision (compaction does not create one).
    pub header: ResponseHeader,
}

/// etcd's `LeaseGrantRequest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseGrantRequest {
    /// The time to live in seconds; raised to the configured minimum.
    pub ttl: i64,
    /// The id to use; 0 lets the store choose one (deterministically).
    pub id: LeaseId,
}

/// etcd's `LeaseGrantResponse`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseGrantResponse {
    /// The current revision (granting does not create one).
    pub header: ResponseHeader,
    /// The lease's id.
    pub id: LeaseId,
    /// The granted time to live in seconds.
    pub ttl: i64,
    /// etcd's (unused) error string; always empty.
    pub error: String,
}

/// etcd's `LeaseRevokeRequest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRevokeRequest {
    /// The lease to revoke; its keys are deleted in one revision.
    pub id: LeaseId,
}

/// etcd's `LeaseRevokeResponse`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRevokeResponse {
    /// The revision after the revoke (of the key deletions, if there were keys).
    pub header: ResponseHeader,
}

/// etcd's `LeaseCheckpoint`: the remaining TTL of a lease, recorded through the
/// log so that a new leader does not hand out a full TTL again.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseCheckpoint {
    /// The lease.
    pub id: LeaseId,
    /// Its remaining time to live in seconds.
    pub remaining_ttl: i64,
}

/// etcd's `LeaseCheckpointRequest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseCheckpointRequest {
    /// The checkpoints; ones for unknown leases are ignored.
    pub checkpoints: Vec<LeaseCheckpoint>,
}

/// etcd's `LeaseTimeToLiveRequest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTimeToLiveRequest {
    /// The lease.
    pub id: LeaseId,
    /// List the attached keys too.
    pub keys: bool,
}

/// etcd's `LeaseTimeToLiveResponse`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTimeToLiveResponse {
    /// The current revision.
    pub header: ResponseHeader,
    /// The lease.
    pub id: LeaseId,
    /// Remaining seconds; -1 if the lease does not exist. The replicated state
    /// knows only the last checkpoint (or the granted TTL); the leader's
    /// [`crate::kv::LeaseTimer`] knows better and the node overrides this.
    pub ttl: i64,
    /// The TTL granted.
    pub granted_ttl: i64,
    /// The attached keys, in order, when asked for.
    pub keys: Vec<Vec<u8>>,
}

/// etcd's `LeaseKeepAliveRequest`: renew a lease. Served by the leader alone,
/// from its lease timer, without the log (`StateMachine::leader_request`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseKeepAliveRequest {
    /// The lease.
    pub id: LeaseId,
}

/// etcd's `LeaseKeepAliveResponse`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseKeepAliveResponse {
    /// The current revision.
    pub header: ResponseHeader,
    /// The lease.
    pub id: LeaseId,
    /// The renewed TTL in seconds.
    pub ttl: i64,
}

/// etcd's `LeaseLeasesResponse` (the request has no fields).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseLeasesResponse {
    /// The current revision.
    pub header: ResponseHeader,
    /// Every lease id, ascending.
    pub leases: Vec<LeaseId>,
}

/// etcd's `AlarmType`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlarmType {
    /// No alarm (etcd's `NONE`; in a request: every alarm type).
    #[default]
    None,
    /// The store reached its quota: only deletes, compactions and reads are served
    /// until an operator frees space and disarms the alarm (etcd's `NOSPACE`).
    NoSpace,
    /// A member's data was found corrupt (etcd's `CORRUPT`).
    Corrupt,
}

/// What an [`AlarmRequest`] does.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AlarmAction {
    /// List the active alarms (a query: `KvQuery::Alarms`).
    #[default]
    Get,
    /// Raise an alarm.
    Activate,
    /// Clear an alarm (etcdctl `alarm disarm`).
    Deactivate,
}

/// etcd's `AlarmMember`: one active alarm.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct AlarmMember {
    /// The member that raised it (0: raised by the replicated state itself).
    pub member_id: u64,
    /// The alarm.
    pub alarm: AlarmType,
}

/// etcd's `AlarmRequest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmRequest {
    /// Raise or clear.
    pub action: AlarmAction,
    /// The member (0 with `Deactivate`: every member).
    pub member_id: u64,
    /// The alarm (`None` with `Deactivate`: every type).
    pub alarm: AlarmType,
}

/// etcd's `AlarmResponse`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmResponse {
    /// The revision when answered.
    pub header: ResponseHeader,
    /// The alarms active afterwards.
    pub alarms: Vec<AlarmMember>,
}

/// The answer to an [`AuthCommand`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthResponse {
    /// The current revision of the KV store (auth changes create none).
    pub header: ResponseHeader,
    /// The auth revision after the command.
    pub auth_revision: u64,
    /// The issued token (`Authenticate` only; empty otherwise).
    pub token: String,
}

/// A write, as proposed through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvCommand {
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A txn (also read-only ones, when the client wants them in the log).
    Txn(TxnRequest),
    /// A compaction.
    Compaction(CompactionRequest),
    /// A lease grant.
    LeaseGrant(LeaseGrantRequest),
    /// A lease revoke, by a client or for expiry (proposed by the leader from
    /// [`crate::kv::LeaseTimer::expired_leases`]).
    LeaseRevoke(LeaseRevokeRequest),
    /// Remaining-TTL checkpoints.
    LeaseCheckpoint(LeaseCheckpointRequest),
    /// Raise or clear an alarm.
    Alarm(AlarmRequest),
    /// Change the auth state (users, roles, permissions, enabled), or issue
    /// a simple token.
    Auth(AuthCommand),
    /// A client's command with who sent it: while auth is enabled it is
    /// applied only if the sender may (checked at apply, as etcd's
    /// `authApplierV3`), so a request never slips past an auth change
    /// committed before it.
    AsUser(UserCommand),
}

/// A [`KvCommand`] with its sender (etcd's `RequestHeader.username` and
/// `auth_revision`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCommand {
    /// The user (empty: the request carried no token).
    pub user: String,
    /// The auth revision the sender's token stands for.
    pub auth_revision: u64,
    /// The command; never another `AsUser`.
    pub command: Box<KvCommand>,
}

/// A read, served by `StateMachine::query` without going through the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvQuery {
    /// A range.
    Range(RangeRequest),
    /// A txn without puts or deletes (others are refused as malformed here).
    Txn(TxnRequest),
    /// A lease's TTL and keys.
    LeaseTimeToLive(LeaseTimeToLiveRequest),
    /// Every lease.
    LeaseLeases,
    /// The active alarms.
    Alarms,
    /// Renew a lease: only as a leader request (`StateMachine::leader_request`).
    LeaseKeepAlive(LeaseKeepAliveRequest),
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvResponse {
    /// To a range.
    Range(RangeResponse),
    /// To a put.
    Put(PutResponse),
    /// To a delete.
    DeleteRange(DeleteRangeResponse),
    /// To a txn.
    Txn(TxnResponse),
    /// To a compaction.
    Compaction(CompactionResponse),
    /// To a lease grant.
    LeaseGrant(LeaseGrantResponse),
    /// To a lease revoke.
    LeaseRevoke(LeaseRevokeResponse),
    /// To lease checkpoints.
    LeaseCheckpoint(ResponseHeader),
    /// To an alarm command or query.
    Alarm(AlarmResponse),
    /// To a keep-alive.
    LeaseKeepAlive(LeaseKeepAliveResponse),
    /// To a lease TTL query.
    LeaseTimeToLive(LeaseTimeToLiveResponse),
    /// To a lease listing.
    LeaseLeases(LeaseLeasesResponse),
    /// To an auth command.
    Auth(AuthResponse),
    /// To a log entry that is not a KV command (a leader's no-op, a membership
    /// change).
    Noop,
}

/// The outcome of a command or query.
pub type KvResult = Result<KvResponse, KvError>;

impl KvCommand {
    /// The command itself, without its sender.
    pub fn inner(&self) -> &KvCommand {
        match self {
            KvCommand::AsUser(u) => &u.command,
            other => other,
        }
    }
}

impl RequestOp {
    /// True for puts and deletes, and txns holding one in either branch.
    pub fn writes(&self) -> bool {
        match self {
            RequestOp::Range(_) => false,
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => true,
            RequestOp::Txn(t) => t.writes(),
        }
    }
}

impl TxnRequest {
    /// True when some op in either branch, at any depth, is a put or delete.
    pub fn writes(&self) -> bool {
        self.success.iter().chain(&self.failure).any(RequestOp::writes)
    }
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was put.
    Put,
    /// The key was deleted.
    Delete,
}

/// A change of one key (etcd's `mvccpb.Event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key-value after a put; after a delete only the key and the
    /// `mod_revision` of the delete, as etcd sends it.
    pub kv: KeyValue,
    /// The key-value before the change, if the key existed (and its record was
    /// not compacted away).
    pub prev_kv: Option<KeyValue>,
}
