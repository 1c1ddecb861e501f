//! The storage the KV state machine keeps its data in: a small, synchronous,
//! ordered byte map with atomic batches.
//!
//! Production backs it with fjall (in the runtime crate), the simulator and the
//! tests with [`crate::kv::MemStorage`]. Every batch carries the Raft index of
//! the last entry it reflects, written atomically with the batch, so after a
//! crash the storage holds the state as of some applied index and the node
//! replays the log from the entry after it.

use crate::types::LogIndex;

/// One change in a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` (a no-op if absent).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// Changes applied atomically, together with the applied Raft index they bring
/// the storage to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The changes, applied in order.
    pub ops: Vec<WriteOp>,
    /// The applied index stored with the batch; never lower than the stored one.
    pub applied_index: LogIndex,
}

impl WriteBatch {
    /// An empty batch that moves the applied index to `applied_index`.
    pub fn new(applied_index: LogIndex) -> WriteBatch {
        WriteBatch { ops: Vec::new(), applied_index }
    }

    /// Adds a put.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(WriteOp::Put { key, value });
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(WriteOp::Delete { key });
    }
}

/// An ordered map from byte keys to byte values with atomic batches.
///
/// Contract: after [`Storage::write`] returns, reads see the whole batch; a crash
/// leaves the storage as of the end of some batch written before it (never part
/// of one), and at least as of the last [`Storage::sync`]. A storage may keep
/// written batches in memory and write them out as one at [`Storage::flush`]
/// (or sooner); a crash then loses them whole. Methods take no time argument
/// and never block on anything but the storage itself.
pub trait Storage {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;

    /// Calls `visit` with every pair whose key is `>= start` and `< end` (no upper
    /// bound when `end` is `None`), in ascending key order, until it returns false.
    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool);

    /// Applies the batch atomically and records its applied index.
    fn write(&mut self, batch: WriteBatch);

    /// The applied index of the last batch written (0 before any).
    fn applied_index(&self) -> LogIndex;

    /// Makes every batch written so far durable.
    fn sync(&mut self);

    /// Ends a run of writes: batches kept in memory are written out together.
    /// The default does nothing (every write goes out at once).
    fn flush(&mut self) {}

    /// Whether synced batches outlive the process, so that the store may
    /// stand for the state in a snapshot ([`crate::StateMachine::checkpoint`]).
    /// False for storage that lives in memory only.
    fn persistent(&self) -> bool;
}
