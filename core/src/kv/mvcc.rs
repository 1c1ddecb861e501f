//! The multi-version store: every change of every key since the last
//! compaction, in a [`Storage`], indexed in memory by a [`KeyIndex`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::auth::{AuthCommand, AuthError, AuthEvent, AuthStore};
use super::errors::KvError;
use super::key_index::{KeyIndex, KeyRange, Rev};
use super::layout::{self, StoredKv, StoredLease};
use super::lease::LeaseTable;
use super::request::{AlarmMember, AlarmType, Event, EventKind, KeyValue, LeaseId, Revision};
use super::storage::{Storage, WriteBatch};
use super::write_txn::{Change, Prev, WriteTxn};

/// The revision of an empty store (etcd's too: the first write makes revision 2).
pub const FIRST_REVISION: Revision = 1;

/// The in-memory part of the state, rebuilt from storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Loaded {
    index: KeyIndex,
    leases: LeaseTable,
    current_rev: Revision,
    compact_rev: Revision,
    alarms: Vec<AlarmMember>,
    size_bytes: u64,
    auth: AuthStore,
}

fn encode_alarms(alarms: &[AlarmMember]) -> Vec<u8> {
    let mut out = Vec::with_capacity(alarms.len() * 9);
    for a in alarms {
        out.extend_from_slice(&a.member_id.to_le_bytes());
        out.push(match a.alarm {
            AlarmType::None => 0,
            AlarmType::NoSpace => 1,
            AlarmType::Corrupt => 2,
        });
    }
    out
}

fn decode_alarms(bytes: &[u8]) -> Result<Vec<AlarmMember>, String> {
    if !bytes.len().is_multiple_of(9) {
        return Err("bad alarm list length".into());
    }
    let mut alarms = Vec::new();
    for chunk in bytes.chunks_exact(9) {
        let mut id = [0u8; 8];
        id.copy_from_slice(&chunk[..8]);
        let alarm = match chunk[8] {
            1 => AlarmType::NoSpace,
            2 => AlarmType::Corrupt,
            other => return Err(format!("unknown alarm type {other}")),
        };
        alarms.push(AlarmMember { member_id: u64::from_le_bytes(id), alarm });
    }
    if alarms.windows(2).any(|w| w[0] >= w[1]) {
        return Err("alarm list is not sorted and unique".into());
    }
    Ok(alarms)
}

/// Bytes a stored revision record counts toward the quota.
fn record_size(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

/// Rebuilds the in-memory state from the stored pairs, given in key order; the
/// key index hashes with `hash_key`.
fn load(hash_key: u64, scan: impl FnOnce(&mut dyn FnMut(&[u8], &[u8]) -> bool)) -> Result<Loaded, String> {
    let mut loaded =
        Loaded { index: KeyIndex::with_hash_key(hash_key), current_rev: FIRST_REVISION, ..Loaded::default() };
    let mut lease_of: BTreeMap<Vec<u8>, LeaseId> = BTreeMap::new();
    let mut last_main = 0;
    let mut current = None;
    let mut failure = None;
    let mut step = |k: &[u8], v: &[u8]| -> Result<(), String> {
        if let Some(outcome) = loaded.auth.load_pair(k, v) {
            outcome?;
        } else if k == layout::META_ALARMS {
            loaded.alarms = decode_alarms(v)?;
        } else if k == layout::META_COMPACT || k == layout::META_CURRENT {
            let value = layout::decode_i64(v).ok_or("bad meta value")?;
            if k == layout::META_COMPACT {
                loaded.compact_rev = value;
            } else {
                current = Some(value);
            }
        } else if let Some(id) = layout::parse_lease_key(k) {
            let lease = layout::decode_lease(v)?;
            if id == 0 || lease.ttl <= 0 {
                return Err(format!("bad lease {id}"));
            }
            loaded.leases.insert(id, lease.ttl, lease.remaining_ttl);
        } else if let Some(rev) = layout::parse_rev_key(k) {
            let kv = layout::decode_kv(v)?;
            let sane = if kv.tombstone {
                kv.version == 0 && kv.create_revision == 0 && kv.lease == 0
            } else {
                kv.version >= 1 && kv.create_revision >= 1 && kv.create_revision <= rev.main
            };
            if !sane || rev.main < 1 {
                return Err(format!("inconsistent record at {rev:?}"));
            }
            loaded.size_bytes += record_size(k, v);
            loaded.index.push(&kv.key, rev, kv.put_meta());
            if kv.tombstone || kv.lease == 0 {
                lease_of.remove(&kv.key);
            } else {
                lease_of.insert(kv.key.clone(), kv.lease);
            }
            last_main = rev.main;
        } else {
            return Err(format!("unknown storage key {k:?}"));
        }
        Ok(())
    };
    scan(&mut |k, v| match step(k, v) {
        Ok(()) => true,
        Err(e) => {
            failure = Some(e);
            false
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    for (key, lease) in lease_of {
        if !loaded.leases.contains(lease) {
            return Err(format!("key {key:?} attached to missing lease {lease}"));
        }
        loaded.leases.attach(lease, &key);
    }
    loaded.current_rev = current.unwrap_or(FIRST_REVISION);
    if loaded.current_rev < last_main.max(FIRST_REVISION) || loaded.compact_rev > loaded.current_rev {
        return Err(format!(
            "revisions inconsistent: current {}, last record {last_main}, compacted {}",
            loaded.current_rev, loaded.compact_rev
        ));
    }
    Ok(loaded)
}

/// The multi-version key-value state: revisions, history, leases.
///
/// Reads take `&self`; writes are staged in a [`WriteTxn`] (which sees its own
/// changes) and become one revision with [`Mvcc::commit`], written to storage
/// in one batch. Invariants (asserted): the index and the storage hold the
/// same revisions; `compact_rev <= current_rev`; every key's lease exists.
#[derive(Debug)]
pub struct Mvcc<S: Storage> {
    storage: S,
    index: KeyIndex,
    leases: LeaseTable,
    current_rev: Revision,
    compact_rev: Revision,
    alarms: Vec<AlarmMember>,
    /// Bytes of the stored revision records: what the quota limits. Logical, so
    /// every member computes the same number from the same log.
    size_bytes: u64,
    /// Users, roles and permissions. Shared with readers (the API layer's
    /// permission checks) and copied on write.
    auth: Arc<AuthStore>,
}

impl<S: Storage> Mvcc<S> {
    /// Opens the state held in `storage` (empty storage: an empty store); the
    /// key index hashes with `index_hash_key` ([`super::KvConfig::index_hash_key`]).
    pub fn open(storage: S, index_hash_key: u64) -> Result<Mvcc<S>, String> {
        let loaded = load(index_hash_key, |visit| storage.scan(&[], None, visit))?;
        Ok(Mvcc {
            storage,
            index: loaded.index,
            leases: loaded.leases,
            current_rev: loaded.current_rev,
            compact_rev: loaded.compact_rev,
            alarms: loaded.alarms,
            size_bytes: loaded.size_bytes,
            auth: Arc::new(loaded.auth),
        })
    }

    /// Every stored pair, in key order (the snapshot's content).
    pub fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut pairs = Vec::new();
        self.storage.scan(&[], None, &mut |k, v| {
            pairs.push((k.to_vec(), v.to_vec()));
            true
        });
        pairs
    }

    /// Replaces the whole state with `pairs` (from [`Mvcc::dump`]) at applied
    /// index `applied_index`. On error nothing changed.
    pub fn replace(&mut self, pairs: Vec<(Vec<u8>, Vec<u8>)>, applied_index: u64) -> Result<(), String> {
        if pairs.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("snapshot keys are not sorted and unique".into());
        }
        let loaded = load(self.index.hash_key(), |visit| {
            for (k, v) in &pairs {
                if !visit(k, v) {
                    return;
                }
            }
        })?;
        let mut batch = WriteBatch::new(applied_index);
        for (k, _) in self.dump() {
            batch.delete(k);
        }
        for (k, v) in pairs {
            batch.put(k, v);
        }
        self.storage.write(batch);
        self.index = loaded.index;
        self.leases = loaded.leases;
        self.current_rev = loaded.current_rev;
        self.compact_rev = loaded.compact_rev;
        self.alarms = loaded.alarms;
        self.size_bytes = loaded.size_bytes;
        self.auth = Arc::new(loaded.auth);
        Ok(())
    }

    /// The auth state (users, roles, permissions), shared: a cheap copy that
    /// later changes do not affect.
    pub fn auth(&self) -> Arc<AuthStore> {
        Arc::clone(&self.auth)
    }

    /// Applies an auth command (see [`AuthStore::apply`]).
    pub fn apply_auth(
        &mut self,
        command: &AuthCommand,
        index: u64,
        batch: &mut WriteBatch,
        events: &mut Vec<AuthEvent>,
    ) -> Result<String, AuthError> {
        Arc::make_mut(&mut self.auth).apply(command, index, batch, events)
    }

    /// Bytes of the stored revision records (the quota's measure).
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The active alarms, sorted.
    pub fn alarms(&self) -> &[AlarmMember] {
        &self.alarms
    }

    /// True if an alarm of type `alarm` is active for any member.
    pub fn has_alarm(&self, alarm: AlarmType) -> bool {
        self.alarms.iter().any(|a| a.alarm == alarm)
    }

    /// Raises (`true`) or clears alarms; clearing with member 0 or type `None`
    /// matches every member or type. Returns whether anything changed.
    pub fn set_alarm(&mut self, raise: bool, member: AlarmMember, batch: &mut WriteBatch) -> bool {
        let before = self.alarms.clone();
        if raise {
            if member.alarm != AlarmType::None && !self.alarms.contains(&member) {
                self.alarms.push(member);
                self.alarms.sort_unstable();
            }
        } else {
            self.alarms.retain(|a| {
                let member_matches = member.member_id == 0 || a.member_id == member.member_id;
                let type_matches = member.alarm == AlarmType::None || a.alarm == member.alarm;
                !(member_matches && type_matches)
            });
        }
        let changed = self.alarms != before;
        if changed {
            batch.put(layout::META_ALARMS.to_vec(), encode_alarms(&self.alarms));
        }
        changed
    }

    /// The revision of the last write (1 for an empty store).
    pub fn current_rev(&self) -> Revision {
        self.current_rev
    }

    /// Revisions below this one were compacted (0: never compacted).
    pub fn compact_rev(&self) -> Revision {
        self.compact_rev
    }

    /// The leases.
    pub fn leases(&self) -> &LeaseTable {
        &self.leases
    }

    /// The key index.
    pub fn index(&self) -> &KeyIndex {
        &self.index
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, to sync it.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Writes a batch that holds no change of the KV state (only the applied
    /// index, or lease records).
    pub fn write(&mut self, batch: WriteBatch) {
        for op in &batch.ops {
            match op {
                super::storage::WriteOp::Put { key, value } if key.first() == Some(&layout::REV_PREFIX) => {
                    self.size_bytes += record_size(key, value);
                }
                super::storage::WriteOp::Delete { key } if key.first() == Some(&layout::REV_PREFIX) => {
                    // Revision records are only ever deleted by compaction.
                    if let Some(old) = self.storage.get(key) {
                        self.size_bytes -= record_size(key, &old);
                    }
                }
                _ => {}
            }
        }
        self.storage.write(batch);
    }

    /// The record of an indexed revision.
    pub fn record(&self, rev: Rev) -> StoredKv {
        let bytes = self
            .storage
            .get(&layout::rev_key(rev))
            .unwrap_or_else(|| panic!("indexed revision {rev:?} is missing from storage"));
        layout::decode_kv(&bytes).unwrap_or_else(|e| panic!("record {rev:?} is corrupt: {e}"))
    }

    /// The key-value of an indexed put revision.
    pub fn kv_at(&self, rev: Rev) -> KeyValue {
        self.record(rev).to_kv(rev).unwrap_or_else(|| panic!("revision {rev:?} is a tombstone"))
    }

    /// `key` as of revision `at`.
    pub fn get(&self, key: &[u8], at: Revision) -> Option<KeyValue> {
        self.index.get(key, at).map(|rev| self.kv_at(rev))
    }

    /// The keys in `range` as of `at`: their number, and the key-values of the
    /// first `fetch` of them (all when `None`; none when `count_only`).
    pub fn collect(
        &self,
        range: &KeyRange,
        at: Revision,
        fetch: Option<usize>,
        count_only: bool,
    ) -> (i64, Vec<KeyValue>) {
        let mut revs = Vec::new();
        self.index.visit(range, at, |_, rev| {
            revs.push(rev);
            true
        });
        let count = revs.len() as i64;
        if count_only {
            return (count, Vec::new());
        }
        let take = fetch.unwrap_or(revs.len());
        (count, revs.into_iter().take(take).map(|rev| self.kv_at(rev)).collect())
    }

    /// Starts staging a write.
    pub fn begin_write(&self) -> WriteTxn<'_, S> {
        WriteTxn::new(self)
    }

    /// Makes staged changes one new revision: records into `batch`, the index
    /// and leases updated. Returns the revision and its events, or `None` when
    /// there was no change (no revision is created then).
    ///
    /// An event's `prev_kv` is filled only where `wants_prev(key)` (someone,
    /// a watcher with `prev_kv`, will read it): a put's previous value is read
    /// from storage only then, never just to be dropped.
    pub fn commit(
        &mut self,
        changes: Vec<Change>,
        batch: &mut WriteBatch,
        wants_prev: &dyn Fn(&[u8]) -> bool,
    ) -> Option<(Revision, Vec<Event>)> {
        if changes.is_empty() {
            return None;
        }
        let main = self.current_rev + 1;
        let mut events = Vec::with_capacity(changes.len());
        for (sub, change) in changes.into_iter().enumerate() {
            let rev = Rev { main, sub: sub as i64 };
            if let Some(lease) = change.prev.as_ref().map(Prev::lease).filter(|&l| l != 0) {
                self.leases.detach(lease, &change.key);
            }
            let record = match &change.kv {
                Some(kv) => {
                    assert!(kv.mod_revision == main && kv.key == change.key, "staged put does not match its revision");
                    if kv.lease != 0 {
                        assert!(self.leases.contains(kv.lease), "put attaches missing lease {}", kv.lease);
                        self.leases.attach(kv.lease, &kv.key);
                    }
                    StoredKv {
                        key: kv.key.clone(),
                        value: kv.value.clone(),
                        create_revision: kv.create_revision,
                        version: kv.version,
                        lease: kv.lease,
                        tombstone: false,
                    }
                }
                None => {
                    assert!(change.prev.is_some(), "deleting absent key {:?}", change.key);
                    StoredKv {
                        key: change.key.clone(),
                        value: Vec::new(),
                        create_revision: 0,
                        version: 0,
                        lease: 0,
                        tombstone: true,
                    }
                }
            };
            batch.put(layout::rev_key(rev), layout::to_bytes(&record));
            self.index.push(&change.key, rev, record.put_meta());
            let prev_kv = match change.prev {
                Some(Prev::Loaded(kv)) => Some(kv),
                // Still in storage (this batch is not written yet, and does not touch it).
                Some(Prev::Stored { rev, .. }) if wants_prev(&change.key) => Some(self.kv_at(rev)),
                Some(Prev::Stored { .. }) | None => None,
            };
            events.push(match change.kv {
                Some(kv) => Event { kind: EventKind::Put, kv, prev_kv },
                None => Event {
                    kind: EventKind::Delete,
                    kv: KeyValue { key: change.key, mod_revision: main, ..KeyValue::default() },
                    prev_kv,
                },
            });
        }
        self.current_rev = main;
        batch.put(layout::META_CURRENT.to_vec(), layout::encode_i64(main));
        Some((main, events))
    }

    /// Removes history before `at` (see [`KeyIndex::compact`]).
    pub fn compact(&mut self, at: Revision, batch: &mut WriteBatch) -> Result<(), KvError> {
        if at <= self.compact_rev {
            return Err(KvError::Compacted);
        }
        if at > self.current_rev {
            return Err(KvError::FutureRevision);
        }
        for rev in self.index.compact(at) {
            batch.delete(layout::rev_key(rev));
        }
        self.compact_rev = at;
        batch.put(layout::META_COMPACT.to_vec(), layout::encode_i64(at));
        Ok(())
    }

    /// Adds a lease.
    pub fn grant_lease(&mut self, id: LeaseId, ttl: i64, batch: &mut WriteBatch) {
        self.leases.insert(id, ttl, 0);
        batch.put(layout::lease_key(id), layout::to_bytes(&StoredLease { ttl, remaining_ttl: 0 }));
    }

    /// Removes a lease that holds no keys any more.
    pub fn drop_lease(&mut self, id: LeaseId, batch: &mut WriteBatch) {
        let lease = self.leases.remove(id).unwrap_or_else(|| panic!("dropping missing lease {id}"));
        assert!(lease.keys.is_empty(), "dropping lease {id} that still holds keys");
        batch.delete(layout::lease_key(id));
    }

    /// Records a lease's remaining TTL; false if the lease does not exist.
    pub fn checkpoint_lease(&mut self, id: LeaseId, remaining_ttl: i64, batch: &mut WriteBatch) -> bool {
        if !self.leases.checkpoint(id, remaining_ttl) {
            return false;
        }
        let ttl = self.leases.get(id).map_or(0, |l| l.ttl);
        batch.put(layout::lease_key(id), layout::to_bytes(&StoredLease { ttl, remaining_ttl }));
        true
    }

    /// Calls `visit` with every change at revision `from` or later, in revision
    /// order, until it returns false.
    pub fn visit_history(&self, from: Revision, mut visit: impl FnMut(Rev, StoredKv) -> bool) {
        let start = layout::rev_key(Rev { main: from.max(0), sub: 0 });
        self.storage.scan(&start, Some(&[layout::REV_PREFIX + 1]), &mut |k, v| {
            let rev = layout::parse_rev_key(k).unwrap_or_else(|| panic!("bad record key {k:?}"));
            let record = layout::decode_kv(v).unwrap_or_else(|e| panic!("record {rev:?} is corrupt: {e}"));
            visit(rev, record)
        });
    }

    /// The event a stored change describes, with the key's previous value when
    /// `with_prev` and it is still stored.
    pub fn event_of(&self, rev: Rev, record: StoredKv, with_prev: bool) -> Event {
        let prev_kv = if with_prev { self.index.previous_put(&record.key, rev).map(|p| self.kv_at(p)) } else { None };
        match record.to_kv(rev) {
            Some(kv) => Event { kind: EventKind::Put, kv, prev_kv },
            None => Event {
                kind: EventKind::Delete,
                kv: KeyValue { key: record.key, mod_revision: rev.main, ..KeyValue::default() },
                prev_kv,
            },
        }
    }
}
