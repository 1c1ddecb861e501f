//! [`KvStore`]: the MVCC store, leases and watches composed into the state
//! machine that plugs into [`crate::Node`].

use rkyv::rancor;

use super::auth::{AuthEvent, AuthStore};
use super::errors::KvError;
use super::layout::{aligned, to_bytes};
use super::lease::{LeaseTimer, LEASE_TTL_MAX_S};
use super::mvcc::Mvcc;
use super::range;
use super::request::{
    AlarmAction, AlarmMember, AlarmResponse, AlarmType, AuthResponse, CompactionResponse, Event, KvCommand, KvQuery,
    KvResponse, KvResult, LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseId,
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, RangeRequest, RangeResponse, ResponseHeader, Revision,
};
use super::storage::{Storage, WriteBatch};
use super::txn::{self, TxnLimits};
use super::watch::{WatchConfig, WatchCreateRequest, WatchHub, WatchId, WatchResponse};
use super::wire::{decode_result, encode_result, KV_FORMAT};
use crate::raft::message::Payload;
use crate::state_machine::{RestoreError, StateMachine};
use crate::types::{LogIndex, Millis};

/// The magic bytes at the start of a KV snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"LKKV";

/// The magic bytes at the start of a KV checkpoint marker
/// ([`StateMachine::checkpoint`]): the state is in the store's own storage.
pub const CHECKPOINT_MAGIC: [u8; 4] = *b"LKCP";

/// A checkpoint marker: magic, format, the applied index it stands for.
const CHECKPOINT_LEN: usize = 4 + 1 + 8;

/// Whether the snapshot a member recovered is a checkpoint, so that its state
/// storage must be kept and opened (otherwise it is rebuilt from the snapshot
/// and the log, from empty storage).
pub fn recovered_from_checkpoint(recovered: &crate::io::Recovered) -> bool {
    recovered.snapshot.as_ref().is_some_and(|(_, data)| checkpoint_index(data).is_some())
}

/// Whether `data` is a checkpoint marker rather than a full snapshot, and the
/// applied index it stands for.
pub fn checkpoint_index(data: &[u8]) -> Option<LogIndex> {
    if data.len() != CHECKPOINT_LEN || data[..4] != CHECKPOINT_MAGIC || data[4] != KV_FORMAT {
        return None;
    }
    Some(u64::from_le_bytes(data[5..].try_into().ok()?))
}

/// Limits and policies of the KV state machine. Every member of a group must
/// use the same values: they decide what is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvConfig {
    /// Compares, or ops per branch, per txn level (etcd's `--max-txn-ops`, 128).
    pub txn_ops_max: u32,
    /// Txn nesting depth (at most [`super::wire::WIRE_TXN_DEPTH_MAX`]).
    pub txn_depth_max: u32,
    /// Bytes of an encoded command (etcd's `--max-request-bytes`, 1.5 MiB).
    pub request_bytes_max: u64,
    /// Lease TTLs below this are raised to it (etcd derives it from the election
    /// timeout: 2 s with default settings).
    pub lease_ttl_min_s: i64,
    /// The watch hub's limits (local, not replicated).
    pub watch: WatchConfig,
    /// The stored revision records may hold this many bytes; a write that would
    /// exceed it raises the NOSPACE alarm (etcd's `--quota-backend-bytes`; 8 GiB).
    pub quota_bytes: u64,
    /// A revoke of an expired lease that has not taken effect after this long is
    /// proposed again (local, not replicated).
    pub lease_revoke_retry_ms: Millis,
    /// The leader records every lease's remaining TTL through the log this
    /// often, so that a new leader neither extends nor cuts TTLs by much
    /// (etcd's lease checkpoints, 5 minutes); 0 turns checkpoints off.
    pub lease_checkpoint_interval_ms: Millis,
    /// The key of the in-memory key index's hash (local, not replicated): a
    /// production member draws a random one at start so that clients cannot
    /// choose keys that collide (SipHash-1-3 under this key); 0 by
    /// default, for repeatable tests and simulations.
    pub index_hash_key: u64,
}

impl Default for KvConfig {
    fn default() -> KvConfig {
        KvConfig {
            txn_ops_max: 128,
            txn_depth_max: 16,
            request_bytes_max: 1536 * 1024,
            lease_ttl_min_s: 2,
            watch: WatchConfig::default(),
            quota_bytes: 8 << 30,
            lease_revoke_retry_ms: 1_000,
            lease_checkpoint_interval_ms: 300_000,
            index_hash_key: 0,
        }
    }
}

/// An etcd v3 key-value state machine over a [`Storage`].
///
/// Writes ([`KvCommand`]) are applied from the log with
/// [`KvStore::execute`] (or `StateMachine::apply` with encoded bytes); each
/// writes one storage batch carrying the entry's index, and a write that
/// changes keys creates one revision whose events go to the watch hub. Reads
/// ([`KvQuery`]) take `&self`. Watches are local: [`KvStore::watch_create`],
/// [`KvStore::watch_cancel`], [`KvStore::watch_progress`], and
/// [`KvStore::watch_poll`] to drain responses.
#[derive(Debug)]
pub struct KvStore<S: Storage> {
    config: KvConfig,
    mvcc: Mvcc<S>,
    watches: WatchHub,
    applied: LogIndex,
    /// Lease deadlines, tracked on the leader only.
    lease_timer: LeaseTimer,
    /// Leases were granted or revoked since the timer last looked.
    leases_changed: bool,
    /// On the leader: renewed leases whose checkpointed remaining TTL must be
    /// cleared (a checkpoint of 0), so that a new leader gives them their full
    /// TTL again rather than the stale remainder.
    checkpoint_resets: Vec<LeaseId>,
    /// What applied auth commands tell the API layer (issued simple tokens,
    /// invalidated users), oldest first, at most [`AUTH_EVENTS_MAX`]. Local:
    /// not replicated, not persisted.
    auth_events: std::collections::VecDeque<AuthEvent>,
}

/// Auth events kept for the API layer; older ones are dropped (their tokens
/// are then unknown to this member, and clients authenticate again).
pub const AUTH_EVENTS_MAX: usize = 10_000;

/// Lease checkpoints in one proposal (the rest wait for the next interval).
const CHECKPOINTS_PER_PROPOSAL_MAX: usize = 1000;

/// Record overhead per stored revision beyond key and value (revision key,
/// create/mod revision, version, lease), for the quota estimate.
const RECORD_OVERHEAD_BYTES: u64 = 64;

/// An upper bound of the record bytes `command` may add; 0 for commands that add
/// no data (deletes, compactions, revokes, checkpoints, alarms).
fn added_bytes(command: &KvCommand) -> u64 {
    fn txn_bytes(t: &super::request::TxnRequest) -> u64 {
        t.success
            .iter()
            .chain(&t.failure)
            .map(|op| match op {
                super::request::RequestOp::Put(p) => (p.key.len() + p.value.len()) as u64 + RECORD_OVERHEAD_BYTES,
                super::request::RequestOp::Txn(inner) => txn_bytes(inner),
                _ => 0,
            })
            .sum()
    }
    match command {
        KvCommand::Put(p) => (p.key.len() + p.value.len()) as u64 + RECORD_OVERHEAD_BYTES,
        KvCommand::Txn(t) => txn_bytes(t),
        KvCommand::LeaseGrant(_) => RECORD_OVERHEAD_BYTES,
        KvCommand::AsUser(u) => added_bytes(&u.command),
        _ => 0,
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl<S: Storage> KvStore<S> {
    /// Opens the state in `storage` (empty storage: an empty store at revision 1).
    pub fn open(config: KvConfig, storage: S) -> Result<KvStore<S>, String> {
        assert!(config.txn_depth_max <= super::wire::WIRE_TXN_DEPTH_MAX, "txn_depth_max above the wire limit");
        let applied = storage.applied_index();
        let mvcc = Mvcc::open(storage, config.index_hash_key)?;
        let watches = WatchHub::new(config.watch, mvcc.current_rev());
        let lease_timer =
            LeaseTimer::new(config.lease_revoke_retry_ms).with_checkpoints(config.lease_checkpoint_interval_ms);
        Ok(KvStore {
            config,
            mvcc,
            watches,
            applied,
            lease_timer,
            leases_changed: false,
            checkpoint_resets: Vec::new(),
            auth_events: std::collections::VecDeque::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// The multi-version store.
    pub fn mvcc(&self) -> &Mvcc<S> {
        &self.mvcc
    }

    /// The revision of the last change.
    pub fn current_revision(&self) -> Revision {
        self.mvcc.current_rev()
    }

    /// The compaction revision (0: never compacted).
    pub fn compact_revision(&self) -> Revision {
        self.mvcc.compact_rev()
    }

    /// The index of the last applied log entry.
    pub fn applied_index(&self) -> LogIndex {
        self.applied
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        self.mvcc.storage()
    }

    /// The storage, to sync it.
    pub fn storage_mut(&mut self) -> &mut S {
        self.mvcc.storage_mut()
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.mvcc.into_storage()
    }

    /// Every lease with the TTL a new leader should give it: the last
    /// checkpointed remaining TTL, else the granted one. For
    /// [`super::LeaseTimer::promote`] and [`super::LeaseTimer::reconcile`].
    pub fn lease_ttls(&self) -> Vec<(LeaseId, i64)> {
        self.mvcc
            .leases()
            .iter()
            .map(|(id, l)| (id, if l.remaining_ttl > 0 { l.remaining_ttl } else { l.ttl }))
            .collect()
    }

    fn limits(&self) -> TxnLimits {
        TxnLimits { ops_max: self.config.txn_ops_max, depth_max: self.config.txn_depth_max }
    }

    /// The checks that need no state (etcd does them before proposing).
    pub fn check(&self, command: &KvCommand) -> Result<(), KvError> {
        match command {
            KvCommand::Put(p) => txn::check_put(p),
            KvCommand::DeleteRange(d) => txn::check_delete(d),
            KvCommand::Txn(t) => txn::check_txn(t, self.limits()),
            KvCommand::Alarm(a) if a.action == AlarmAction::Get => {
                Err(KvError::Malformed("listing alarms is a query, not a command".into()))
            }
            KvCommand::Compaction(_)
            | KvCommand::LeaseGrant(_)
            | KvCommand::LeaseRevoke(_)
            | KvCommand::LeaseCheckpoint(_)
            | KvCommand::Alarm(_)
            | KvCommand::Auth(_) => Ok(()),
            KvCommand::AsUser(u) if matches!(*u.command, KvCommand::AsUser(_)) => {
                Err(KvError::Malformed("nested AsUser command".into()))
            }
            KvCommand::AsUser(u) => self.check(&u.command),
        }
    }

    /// Whether the sender of `command` may have it applied (etcd's
    /// `authApplierV3`): always while auth is disabled; otherwise the checks
    /// of `super::auth::authorize`.
    fn authorize(&self, command: &super::request::UserCommand) -> Result<(), KvError> {
        let auth = self.mvcc.auth();
        let caller = super::auth::AuthInfo { user: command.user.clone(), revision: command.auth_revision };
        let lease_keys = |id: LeaseId| -> Vec<Vec<u8>> {
            self.mvcc.leases().get(id).map(|l| l.keys.iter().cloned().collect()).unwrap_or_default()
        };
        super::auth::authorize(&auth, &caller, &command.command, &lease_keys).map_err(KvError::Auth)
    }

    /// The quota gate, decided from replicated state only so that every member
    /// agrees: while the NOSPACE alarm is active, or when a write would take the
    /// stored records past `quota_bytes` (which raises the alarm), writes that add
    /// data fail with `NoSpace`; deletes, compactions and reads go on, so an
    /// operator can free space and disarm.
    fn quota_gate(&mut self, command: &KvCommand, batch: &mut WriteBatch) -> Result<(), KvError> {
        let added = added_bytes(command);
        if added == 0 {
            return Ok(());
        }
        if self.mvcc.has_alarm(AlarmType::NoSpace) {
            return Err(KvError::NoSpace);
        }
        if self.mvcc.size_bytes().saturating_add(added) > self.config.quota_bytes {
            self.mvcc.set_alarm(true, AlarmMember { member_id: 0, alarm: AlarmType::NoSpace }, batch);
            return Err(KvError::NoSpace);
        }
        Ok(())
    }

    /// Applies the log entry `index` holding `command`. Entries at or below the
    /// applied index (replayed over storage that already holds them) are skipped
    /// with [`KvError::AlreadyApplied`].
    pub fn execute(&mut self, index: LogIndex, command: &KvCommand) -> KvResult {
        self.apply_with(index, |store, batch| store.run(command, batch))
    }

    fn apply_with(
        &mut self,
        index: LogIndex,
        run: impl FnOnce(&mut Self, &mut WriteBatch) -> (KvResult, Option<(Revision, Vec<Event>)>),
    ) -> KvResult {
        if index <= self.applied {
            return Err(KvError::AlreadyApplied);
        }
        self.applied = index;
        let mut batch = WriteBatch::new(index);
        let (result, committed) = run(self, &mut batch);
        self.mvcc.write(batch);
        if let Some((rev, events)) = committed {
            self.watches.notify(rev, &events);
        }
        result
    }

    fn header(&self) -> ResponseHeader {
        ResponseHeader { revision: self.mvcc.current_rev() }
    }

    fn run(&mut self, command: &KvCommand, batch: &mut WriteBatch) -> (KvResult, Option<(Revision, Vec<Event>)>) {
        if let Err(e) = self.check(command) {
            return (Err(e), None);
        }
        let command = match command {
            KvCommand::AsUser(u) => {
                if let Err(e) = self.authorize(u) {
                    return (Err(e), None);
                }
                &*u.command
            }
            other => other,
        };
        if let Err(e) = self.quota_gate(command, batch) {
            return (Err(e), None);
        }
        let staged = {
            let mut write = self.mvcc.begin_write();
            let result = match command {
                KvCommand::Put(p) => txn::put(&mut write, p).map(KvResponse::Put),
                KvCommand::DeleteRange(d) => Ok(KvResponse::DeleteRange(txn::delete_range(&mut write, d))),
                KvCommand::Txn(t) => txn::txn(&mut write, t).map(KvResponse::Txn),
                _ => Ok(KvResponse::Noop),
            };
            result.map(|r| (r, write.into_changes()))
        };
        let result = match (command, staged) {
            (_, Err(e)) => Err(e),
            (KvCommand::Put(_) | KvCommand::DeleteRange(_) | KvCommand::Txn(_), Ok((response, changes))) => {
                let watches = &self.watches;
                let committed = self.mvcc.commit(changes, batch, &|key| watches.wants_prev_kv(key));
                return (Ok(response), committed);
            }
            (KvCommand::Compaction(c), _) => self
                .mvcc
                .compact(c.revision, batch)
                .map(|()| KvResponse::Compaction(CompactionResponse { header: self.header() })),
            (KvCommand::LeaseGrant(g), _) => self.grant(g, batch),
            (KvCommand::LeaseRevoke(r), _) => return self.revoke(r.id, batch),
            (KvCommand::Alarm(a), _) => {
                let member = AlarmMember { member_id: a.member_id, alarm: a.alarm };
                self.mvcc.set_alarm(a.action == AlarmAction::Activate, member, batch);
                Ok(KvResponse::Alarm(self.alarm_response()))
            }
            (KvCommand::AsUser(_), _) => Err(KvError::Malformed("nested AsUser command".into())),
            (KvCommand::Auth(a), _) => {
                let mut events = Vec::new();
                let applied = self.mvcc.apply_auth(a, self.applied, batch, &mut events);
                self.push_auth_events(events);
                applied.map_err(KvError::Auth).map(|token| {
                    KvResponse::Auth(AuthResponse {
                        header: self.header(),
                        auth_revision: self.mvcc.auth().revision(),
                        token,
                    })
                })
            }
            (KvCommand::LeaseCheckpoint(c), _) => {
                for checkpoint in &c.checkpoints {
                    self.mvcc.checkpoint_lease(checkpoint.id, checkpoint.remaining_ttl, batch);
                }
                Ok(KvResponse::LeaseCheckpoint(self.header()))
            }
        };
        (result, None)
    }

    fn grant(&mut self, req: &LeaseGrantRequest, batch: &mut WriteBatch) -> KvResult {
        if req.ttl > LEASE_TTL_MAX_S {
            return Err(KvError::LeaseTtlTooLarge);
        }
        let id = if req.id != 0 {
            if self.mvcc.leases().contains(req.id) {
                return Err(KvError::LeaseExists);
            }
            req.id
        } else {
            // Deterministic: every member derives the same id from the entry index.
            let leases = self.mvcc.leases();
            let mut attempts = (0..64u64).map(|a| (splitmix64(self.applied ^ splitmix64(a)) >> 1) as i64);
            attempts.find(|&id| id != 0 && !leases.contains(id)).expect("64 random lease ids cannot all collide")
        };
        let ttl = req.ttl.max(self.config.lease_ttl_min_s);
        self.mvcc.grant_lease(id, ttl, batch);
        Ok(KvResponse::LeaseGrant(LeaseGrantResponse { header: self.header(), id, ttl, error: String::new() }))
    }

    fn revoke(&mut self, id: LeaseId, batch: &mut WriteBatch) -> (KvResult, Option<(Revision, Vec<Event>)>) {
        let Some(lease) = self.mvcc.leases().get(id) else { return (Err(KvError::LeaseNotFound), None) };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        let changes = {
            let mut write = self.mvcc.begin_write();
            for key in &keys {
                write.delete_range(&super::key_index::KeyRange::Single(key.clone()));
            }
            write.into_changes()
        };
        let watches = &self.watches;
        let committed = self.mvcc.commit(changes, batch, &|key| watches.wants_prev_kv(key));
        self.mvcc.drop_lease(id, batch);
        (Ok(KvResponse::LeaseRevoke(LeaseRevokeResponse { header: self.header() })), committed)
    }

    fn push_auth_events(&mut self, events: Vec<AuthEvent>) {
        for event in events {
            if self.auth_events.len() == AUTH_EVENTS_MAX {
                self.auth_events.pop_front();
            }
            self.auth_events.push_back(event);
        }
    }

    /// The auth state as of the last applied entry (a shared copy).
    pub fn auth(&self) -> std::sync::Arc<AuthStore> {
        self.mvcc.auth()
    }

    /// Takes the auth events of the entries applied since the last call
    /// (see [`AuthEvent`]), oldest first.
    pub fn take_auth_events(&mut self) -> Vec<AuthEvent> {
        self.auth_events.drain(..).collect()
    }

    /// Serves a range.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        range::check_range(req)?;
        range::range(&self.mvcc, req)
    }

    fn alarm_response(&self) -> AlarmResponse {
        AlarmResponse { header: self.header(), alarms: self.mvcc.alarms().to_vec() }
    }

    /// Serves a read.
    pub fn read(&self, query: &KvQuery) -> KvResult {
        match query {
            KvQuery::Alarms => Ok(KvResponse::Alarm(self.alarm_response())),
            KvQuery::LeaseKeepAlive(_) => {
                Err(KvError::Malformed("a keep-alive is served by the leader (a leader request), not as a read".into()))
            }
            KvQuery::Range(r) => self.range(r).map(KvResponse::Range),
            KvQuery::Txn(t) => {
                if t.writes() {
                    return Err(KvError::Malformed("a txn with puts or deletes must go through the log".into()));
                }
                txn::check_txn(t, self.limits())?;
                let mut view = self.mvcc.begin_write();
                txn::txn(&mut view, t).map(KvResponse::Txn)
            }
            KvQuery::LeaseTimeToLive(LeaseTimeToLiveRequest { id, keys }) => {
                let header = self.header();
                Ok(KvResponse::LeaseTimeToLive(match self.mvcc.leases().get(*id) {
                    None => LeaseTimeToLiveResponse { header, id: *id, ttl: -1, ..LeaseTimeToLiveResponse::default() },
                    Some(l) => LeaseTimeToLiveResponse {
                        header,
                        id: *id,
                        ttl: if l.remaining_ttl > 0 { l.remaining_ttl } else { l.ttl },
                        granted_ttl: l.ttl,
                        keys: if *keys { l.keys.iter().cloned().collect() } else { Vec::new() },
                    },
                }))
            }
            KvQuery::LeaseLeases => Ok(KvResponse::LeaseLeases(LeaseLeasesResponse {
                header: self.header(),
                leases: self.mvcc.leases().iter().map(|(id, _)| id).collect(),
            })),
        }
    }

    /// Adds a watcher (see [`WatchHub::create`]).
    pub fn watch_create(&mut self, req: WatchCreateRequest) -> Result<WatchId, WatchResponse> {
        self.watches.create(req)
    }

    /// Removes a watcher (see [`WatchHub::cancel`]).
    pub fn watch_cancel(&mut self, id: WatchId) -> Option<WatchResponse> {
        self.watches.cancel(id)
    }

    /// Queues progress notifications (see [`WatchHub::progress`]).
    pub fn watch_progress(&mut self, all: bool) {
        self.watches.progress(all);
    }

    /// Catches unsynced watchers up from storage (bounded), then returns the
    /// next buffered response of any watcher.
    pub fn watch_poll(&mut self) -> Option<WatchResponse> {
        self.watches.catch_up(&self.mvcc);
        self.watches.poll()
    }

    /// The next buffered response of watcher `id`, after catch-up.
    pub fn watch_take(&mut self, id: WatchId) -> Option<WatchResponse> {
        self.watches.catch_up(&self.mvcc);
        self.watches.take(id)
    }

    /// The watch hub, for inspection.
    pub fn watches(&self) -> &WatchHub {
        &self.watches
    }
}

impl<S: Storage> StateMachine for KvStore<S> {
    fn apply(&mut self, index: LogIndex, payload: &Payload) -> Vec<u8> {
        let result = match payload {
            Payload::Command(bytes) => match KvCommand::decode(bytes) {
                Ok(command) => {
                    if matches!(command.inner(), KvCommand::LeaseGrant(_) | KvCommand::LeaseRevoke(_)) {
                        self.leases_changed = true;
                    }
                    self.execute(index, &command)
                }
                Err(why) => self.apply_with(index, |_, _| (Err(KvError::Malformed(why)), None)),
            },
            Payload::Noop | Payload::Membership(_) => self.apply_with(index, |_, _| (Ok(KvResponse::Noop), None)),
        };
        encode_result(&result)
    }

    fn applied_run(&mut self) {
        self.storage_mut().flush();
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        let result = match KvQuery::decode(query) {
            Ok(query) => self.read(&query),
            Err(why) => Err(KvError::Malformed(why)),
        };
        encode_result(&result)
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = SNAPSHOT_MAGIC.to_vec();
        out.push(KV_FORMAT);
        out.extend_from_slice(&self.applied.to_le_bytes());
        out.extend_from_slice(&to_bytes(&self.mvcc.dump()));
        out
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), RestoreError> {
        if let Some(index) = checkpoint_index(data) {
            // The state is the storage's own, opened with the store.
            let stored = self.mvcc.storage().applied_index();
            if stored < index {
                return Err(RestoreError(format!(
                    "the snapshot is a checkpoint of the state at applied index {index}, but the state storage holds \
                     only index {stored}: the state directory was lost, replaced or damaged; restore this member \
                     from a backup (lockstep snapshot restore) or remove it and add it again"
                )));
            }
            return Ok(());
        }
        let header_len = SNAPSHOT_MAGIC.len() + 1 + 8;
        if data.len() < header_len || data[..4] != SNAPSHOT_MAGIC || data[4] != KV_FORMAT {
            return Err(RestoreError("not a KV snapshot of this format".into()));
        }
        let applied = u64::from_le_bytes(data[5..13].try_into().map_err(|_| RestoreError("bad header".into()))?);
        let pairs = rkyv::from_bytes::<Vec<(Vec<u8>, Vec<u8>)>, rancor::Error>(&aligned(&data[header_len..]))
            .map_err(|e| RestoreError(e.to_string()))?;
        self.mvcc.replace(pairs, applied).map_err(RestoreError)?;
        self.applied = applied;
        self.watches.reset(self.mvcc.current_rev());
        self.leases_changed = true;
        // Users may have been deleted or changed their password meanwhile.
        self.push_auth_events(vec![AuthEvent::Reset]);
        Ok(())
    }

    /// With persistent storage: syncs it and returns a marker for `index`
    /// (every change up to the applied index is in the synced storage).
    fn checkpoint(&mut self, index: LogIndex) -> Option<Vec<u8>> {
        if !self.mvcc.storage().persistent() {
            return None;
        }
        assert!(index <= self.applied, "checkpoint at {index} beyond the applied index {}", self.applied);
        self.mvcc.storage_mut().sync();
        let mut marker = Vec::with_capacity(CHECKPOINT_LEN);
        marker.extend_from_slice(&CHECKPOINT_MAGIC);
        marker.push(KV_FORMAT);
        marker.extend_from_slice(&index.to_le_bytes());
        Some(marker)
    }

    fn validate(&self, command: &[u8]) -> Result<(), String> {
        if command.len() as u64 > self.config.request_bytes_max {
            return Err(KvError::RequestTooLarge.to_string());
        }
        let command = KvCommand::decode(command).map_err(|why| KvError::Malformed(why).to_string())?;
        self.check(&command).map_err(|e| e.to_string())?;
        // Admission: refuse early what the quota gate would refuse at apply.
        if added_bytes(&command) > 0 && self.mvcc.has_alarm(AlarmType::NoSpace) {
            return Err(KvError::NoSpace.to_string());
        }
        Ok(())
    }

    fn on_leadership(&mut self, now: Millis, leader: bool) {
        if leader {
            // Every lease gets its (checkpointed) TTL again from now: a new leader
            // never cuts a lease short (see `lease.rs`).
            self.lease_timer.promote(now, self.lease_ttls());
            self.leases_changed = false;
        } else {
            self.lease_timer.demote();
            self.checkpoint_resets.clear();
        }
    }

    fn leader_proposals(&mut self, now: Millis, max: usize) -> Vec<Vec<u8>> {
        if self.leases_changed {
            self.leases_changed = false;
            self.lease_timer.reconcile(now, self.lease_ttls());
        }
        let mut proposals: Vec<Vec<u8>> = self
            .lease_timer
            .expired_leases(now, max)
            .into_iter()
            .map(|id| KvCommand::LeaseRevoke(LeaseRevokeRequest { id }).encode())
            .collect();
        let mut checkpoints: Vec<LeaseCheckpoint> = std::mem::take(&mut self.checkpoint_resets)
            .into_iter()
            .map(|id| LeaseCheckpoint { id, remaining_ttl: 0 })
            .collect();
        checkpoints.extend(
            self.lease_timer
                .checkpoints_due(now, CHECKPOINTS_PER_PROPOSAL_MAX)
                .into_iter()
                .map(|(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl }),
        );
        if !checkpoints.is_empty() && proposals.len() < max {
            proposals.push(KvCommand::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints }).encode());
        }
        proposals
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.lease_timer.next_deadline()
    }

    fn leader_request(&mut self, now: Millis, request: &[u8]) -> Vec<u8> {
        if self.leases_changed {
            self.leases_changed = false;
            self.lease_timer.reconcile(now, self.lease_ttls());
        }
        let result = match KvQuery::decode(request) {
            Err(why) => Err(KvError::Malformed(why)),
            Ok(KvQuery::LeaseKeepAlive(LeaseKeepAliveRequest { id })) => match self.lease_timer.keep_alive(now, id) {
                Some(ttl) => {
                    if self.mvcc.leases().get(id).is_some_and(|l| l.remaining_ttl > 0) {
                        self.checkpoint_resets.push(id);
                    }
                    Ok(KvResponse::LeaseKeepAlive(LeaseKeepAliveResponse { header: self.header(), id, ttl }))
                }
                None => Err(KvError::LeaseNotFound),
            },
            // The leader's timer knows the remaining TTL better than the replicated
            // checkpoint does.
            Ok(query @ KvQuery::LeaseTimeToLive(LeaseTimeToLiveRequest { id, .. })) => {
                self.read(&query).map(|response| match response {
                    KvResponse::LeaseTimeToLive(mut r) => {
                        if let Some(ttl) = self.lease_timer.remaining_ttl_s(now, id) {
                            r.ttl = ttl;
                        }
                        KvResponse::LeaseTimeToLive(r)
                    }
                    other => other,
                })
            }
            Ok(query) => self.read(&query),
        };
        encode_result(&result)
    }
}

/// Decodes a result from `StateMachine::apply` or `query`.
pub fn decode_reply(bytes: &[u8]) -> Result<KvResult, String> {
    decode_result(bytes)
}
