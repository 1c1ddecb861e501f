//! [`FjallStorage`]: the KV state machine's [`Storage`] on fjall.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use lockstep_core::kv::{Storage, WriteBatch, WriteOp};
use lockstep_core::LogIndex;

/// The keyspace holding the state machine's pairs.
const DATA_KEYSPACE: &str = "data";
/// The keyspace holding the applied index.
const META_KEYSPACE: &str = "meta";
/// The applied index's key in [`META_KEYSPACE`], a `u64` little-endian.
const APPLIED_INDEX_KEY: &[u8] = b"applied_index";

/// Why [`FjallStorage::open`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOpenError {
    /// The database directory.
    pub path: PathBuf,
    /// What went wrong.
    pub error: String,
}

impl fmt::Display for StorageOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot open the KV storage in {}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for StorageOpenError {}

/// The KV state machine's data in one fjall database: the pairs in the `data`
/// keyspace, the applied index in the `meta` keyspace, both written by one
/// atomic fjall batch per run of applied entries: [`Storage::write`] keeps a
/// batch's changes in memory (reads see them) and [`Storage::flush`], which
/// the node calls after each run, writes them all with one applied-index
/// write (per entry, that write and fjall's per-batch work were about a third
/// of the storage's cost under puts).
///
/// A batch goes into fjall's journal buffer when it is written; the buffer
/// reaches the operating system when it fills or at [`Storage::sync`], which
/// also `fsync`s it (`manual_journal_persist`: no `write` system call per
/// batch, which cost 7% of a leader's CPU under puts). After a crash fjall
/// recovers whole batches only, so the storage is as of the end of some batch,
/// which the stored applied index names, and at least as of the last sync:
/// the member syncs at every checkpoint and then lets its WAL drop the log
/// before it (docs/storage.md), so from then on this directory is the only
/// copy of the state before the checkpoint.
///
/// [`Storage`] has no error path: an I/O error of fjall panics, with a message
/// that says so. The data is then as of some earlier batch, and the member
/// replays the log after its applied index on restart. Calls block the calling
/// thread (fjall is synchronous and runs its flushes and compactions on its own
/// threads).
pub struct FjallStorage {
    path: PathBuf,
    db: Database,
    data: Keyspace,
    meta: Keyspace,
    applied: LogIndex,
    /// Batches written since the last flush, not in fjall yet: each key's last
    /// change (`None`: deleted). Reads look here first.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The applied index fjall holds.
    flushed: LogIndex,
}

/// The data keyspace's memtable size (fjall's default is 64 MiB): the
/// memtable is resident until it is flushed, and the revisions it holds are
/// also in the Raft log in memory until the next snapshot. fjall stores a
/// keyspace's options when it creates it: a store created with another size
/// keeps it.
const MEMTABLE_BYTES_MAX: u64 = 32 << 20;

/// Changes kept in memory before [`FjallStorage`] writes them out even without
/// a [`Storage::flush`] (a bound on memory, for callers that never flush).
const PENDING_MAX: usize = 4096;

impl fmt::Debug for FjallStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallStorage").field("path", &self.path).field("applied", &self.applied).finish_non_exhaustive()
    }
}

fn fatal(path: &Path, operation: &str, error: &fjall::Error) -> ! {
    panic!(
        "fjall {operation} in {} failed: {error}. The KV storage cannot continue: the member stops; on restart it \
         recovers the storage as of its last whole batch and replays the log after it",
        path.display()
    )
}

impl FjallStorage {
    /// Opens (or creates) the database in `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<FjallStorage, StorageOpenError> {
        let path = path.as_ref().to_path_buf();
        let err = |error: fjall::Error| StorageOpenError { path: path.clone(), error: error.to_string() };
        let db = Database::builder(&path).manual_journal_persist(true).open().map_err(err)?;
        let data = db
            .keyspace(DATA_KEYSPACE, || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES_MAX))
            .map_err(err)?;
        let meta = db.keyspace(META_KEYSPACE, KeyspaceCreateOptions::default).map_err(err)?;
        let applied = match meta.get(APPLIED_INDEX_KEY).map_err(err)? {
            None => 0,
            Some(bytes) => {
                let bytes: [u8; 8] = bytes.as_ref().try_into().map_err(|_| StorageOpenError {
                    path: path.clone(),
                    error: format!("the stored applied index has {} bytes, not 8", bytes.len()),
                })?;
                u64::from_le_bytes(bytes)
            }
        };
        Ok(FjallStorage { path, db, data, meta, applied, pending: BTreeMap::new(), flushed: applied })
    }

    /// The pending changes and the applied index as one fjall batch (`None`
    /// when fjall is up to date); they count as written out from here on.
    fn take_pending(&mut self) -> Option<fjall::OwnedWriteBatch> {
        if self.pending.is_empty() && self.applied == self.flushed {
            return None;
        }
        let mut writes = self.db.batch();
        for (key, change) in std::mem::take(&mut self.pending) {
            match change {
                Some(value) => writes.insert(&self.data, key, value),
                None => writes.remove(&self.data, key),
            }
        }
        writes.insert(&self.meta, APPLIED_INDEX_KEY, self.applied.to_le_bytes());
        self.flushed = self.applied;
        Some(writes)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the database takes on disk (journals and tables).
    pub fn disk_space(&self) -> u64 {
        self.db.disk_space().unwrap_or_else(|e| fatal(&self.path, "disk space", &e))
    }
}

impl Storage for FjallStorage {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(change) = self.pending.get(key) {
            return change.clone();
        }
        self.data.get(key).unwrap_or_else(|e| fatal(&self.path, "get", &e)).map(|v| v.to_vec())
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) {
        let upper = match end {
            Some(end) if end <= start => return,
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        // fjall's pairs merged with the pending changes, which win on equal keys.
        let mut pending = self.pending.range::<[u8], _>((Bound::Included(start), upper)).peekable();
        for guard in self.data.range::<&[u8], _>((Bound::Included(start), upper)) {
            let (key, value) = guard.into_inner().unwrap_or_else(|e| fatal(&self.path, "scan", &e));
            let mut replaced = false;
            while let Some((pending_key, change)) = pending.next_if(|(k, _)| k.as_slice() <= &*key) {
                replaced = pending_key.as_slice() == &*key;
                if let Some(value) = change {
                    if !visit(pending_key, value) {
                        return;
                    }
                }
            }
            if !replaced && !visit(&key, &value) {
                return;
            }
        }
        for (key, change) in pending {
            if let Some(value) = change {
                if !visit(key, value) {
                    return;
                }
            }
        }
    }

    fn write(&mut self, batch: WriteBatch) {
        assert!(
            batch.applied_index >= self.applied,
            "batch applied index {} below the stored {}",
            batch.applied_index,
            self.applied
        );
        for op in batch.ops {
            match op {
                WriteOp::Put { key, value } => self.pending.insert(key, Some(value)),
                WriteOp::Delete { key } => self.pending.insert(key, None),
            };
        }
        self.applied = batch.applied_index;
        if self.pending.len() >= PENDING_MAX {
            self.flush();
        }
    }

    /// Writes the pending changes and the applied index as one fjall batch:
    /// one journal record and one applied-index write per run of entries
    /// instead of per entry.
    fn flush(&mut self) {
        if let Some(writes) = self.take_pending() {
            writes.commit().unwrap_or_else(|e| fatal(&self.path, "batch write", &e));
        }
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn sync(&mut self) {
        self.flush();
        self.db.persist(PersistMode::SyncAll).unwrap_or_else(|e| fatal(&self.path, "sync", &e));
    }

    fn persistent(&self) -> bool {
        true
    }
}

impl Drop for FjallStorage {
    /// A clean close keeps every written batch: the pending ones go to fjall
    /// (whose own close writes its journal out). A failure here is only logged:
    /// the log after the stored applied index replays them at the next start.
    fn drop(&mut self) {
        let Some(writes) = self.take_pending() else { return };
        if let Err(e) = writes.commit() {
            tracing::warn!(path = %self.path.display(), "could not write the last applied entries to fjall at close: {e}; \
                they are replayed from the log at the next start");
        }
    }
}

/// The KV state kept in memory only: a `BTreeMap`, never written to disk.
/// Used with encryption at rest, so that no plain-text state file exists (the
/// state is rebuilt from the encrypted WAL, whose snapshots then hold the full
/// state, at every start). Costs
/// about the live keys' and values' size in memory, plus the map's overhead
/// (about 50 bytes per pair).
#[derive(Debug, Default)]
pub struct MemoryState {
    data: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    applied: LogIndex,
}

impl Storage for MemoryState {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.data.get(key).cloned()
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) {
        let upper = match end {
            Some(end) if end <= start => return,
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        for (key, value) in self.data.range::<[u8], _>((Bound::Included(start), upper)) {
            if !visit(key, value) {
                return;
            }
        }
    }

    fn write(&mut self, batch: WriteBatch) {
        assert!(
            batch.applied_index >= self.applied,
            "batch applied index {} below the stored {}",
            batch.applied_index,
            self.applied
        );
        for op in batch.ops {
            match op {
                WriteOp::Put { key, value } => {
                    self.data.insert(key, value);
                }
                WriteOp::Delete { key } => {
                    self.data.remove(&key);
                }
            }
        }
        self.applied = batch.applied_index;
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn sync(&mut self) {}

    fn persistent(&self) -> bool {
        false
    }
}

/// Where a member keeps its KV state: fjall files under `state/`, or memory
/// only (with encryption at rest).
#[derive(Debug)]
pub enum StateStorage {
    /// fjall, on disk.
    Disk(FjallStorage),
    /// Memory only.
    Memory(MemoryState),
}

impl Storage for StateStorage {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self {
            StateStorage::Disk(s) => s.get(key),
            StateStorage::Memory(s) => s.get(key),
        }
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) {
        match self {
            StateStorage::Disk(s) => s.scan(start, end, visit),
            StateStorage::Memory(s) => s.scan(start, end, visit),
        }
    }

    fn write(&mut self, batch: WriteBatch) {
        match self {
            StateStorage::Disk(s) => s.write(batch),
            StateStorage::Memory(s) => s.write(batch),
        }
    }

    fn applied_index(&self) -> LogIndex {
        match self {
            StateStorage::Disk(s) => s.applied_index(),
            StateStorage::Memory(s) => s.applied_index(),
        }
    }

    fn sync(&mut self) {
        match self {
            StateStorage::Disk(s) => s.sync(),
            StateStorage::Memory(s) => s.sync(),
        }
    }

    fn flush(&mut self) {
        match self {
            StateStorage::Disk(s) => s.flush(),
            StateStorage::Memory(s) => s.flush(),
        }
    }

    fn persistent(&self) -> bool {
        match self {
            StateStorage::Disk(s) => s.persistent(),
            StateStorage::Memory(s) => s.persistent(),
        }
    }
}
