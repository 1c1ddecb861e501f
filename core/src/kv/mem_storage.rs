//! An in-memory [`Storage`] with crash semantics, for the simulator and tests.

use std::collections::BTreeMap;

use super::storage::{Storage, WriteBatch, WriteOp};
use crate::types::LogIndex;

/// A [`Storage`] held in a `BTreeMap`.
///
/// Writes are visible at once; only batches covered by a [`Storage::sync`]
/// survive [`MemStorage::crash`], and they survive whole (a batch is never torn).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStorage {
    live: BTreeMap<Vec<u8>, Vec<u8>>,
    live_applied: LogIndex,
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    durable_applied: LogIndex,
    /// Batches written since the last sync, replayed onto `durable` by the next one.
    unsynced: Vec<WriteBatch>,
    syncs: u64,
}

fn apply_to(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, batch: &WriteBatch) {
    for op in &batch.ops {
        match op {
            WriteOp::Put { key, value } => {
                map.insert(key.clone(), value.clone());
            }
            WriteOp::Delete { key } => {
                map.remove(key);
            }
        }
    }
}

impl MemStorage {
    /// Empty storage.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Loses everything written since the last sync, as a power cut would.
    pub fn crash(&mut self) {
        self.crash_keeping(0);
    }

    /// A power cut after the first `keep` batches written since the last sync
    /// reached the disk by themselves (a buffer that filled up), the rest
    /// lost: the storage is as of the end of some batch, never before the
    /// last sync.
    pub fn crash_keeping(&mut self, keep: usize) {
        for batch in self.unsynced.drain(..).take(keep) {
            apply_to(&mut self.durable, &batch);
            self.durable_applied = batch.applied_index;
        }
        self.live = self.durable.clone();
        self.live_applied = self.durable_applied;
        self.unsynced.clear();
    }

    /// The number of pairs visible now.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when no pair is visible.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Batches written but not yet synced.
    pub fn unsynced_batches(&self) -> usize {
        self.unsynced.len()
    }

    /// The applied index that would survive a crash now.
    pub fn durable_applied_index(&self) -> LogIndex {
        self.durable_applied
    }

    /// How many times [`Storage::sync`] was called.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }
}

impl Storage for MemStorage {
    /// True: the simulator keeps a member's storage across its crashes
    /// ([`MemStorage::crash`]).
    fn persistent(&self) -> bool {
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.live.get(key).cloned()
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) {
        use std::ops::Bound;
        let upper = match end {
            Some(end) if end <= start => return,
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        for (k, v) in self.live.range::<[u8], _>((Bound::Included(start), upper)) {
            if !visit(k, v) {
                return;
            }
        }
    }

    fn write(&mut self, batch: WriteBatch) {
        assert!(
            batch.applied_index >= self.live_applied,
            "batch applied index {} below the stored {}",
            batch.applied_index,
            self.live_applied
        );
        apply_to(&mut self.live, &batch);
        self.live_applied = batch.applied_index;
        self.unsynced.push(batch);
    }

    fn applied_index(&self) -> LogIndex {
        self.live_applied
    }

    fn sync(&mut self) {
        for batch in self.unsynced.drain(..) {
            apply_to(&mut self.durable, &batch);
            self.durable_applied = batch.applied_index;
        }
        self.syncs += 1;
        debug_assert_eq!(self.durable, self.live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(index: LogIndex, ops: &[(&str, Option<&str>)]) -> WriteBatch {
        let mut b = WriteBatch::new(index);
        for (k, v) in ops {
            match v {
                Some(v) => b.put(k.as_bytes().to_vec(), v.as_bytes().to_vec()),
                None => b.delete(k.as_bytes().to_vec()),
            }
        }
        b
    }

    #[test]
    fn only_synced_batches_survive_a_crash() {
        let mut s = MemStorage::new();
        s.write(batch(1, &[("a", Some("1")), ("b", Some("2"))]));
        s.sync();
        s.write(batch(2, &[("a", None), ("c", Some("3"))]));
        assert_eq!(s.get(b"a"), None);
        assert_eq!(s.applied_index(), 2);
        s.crash();
        assert_eq!(s.get(b"a"), Some(b"1".to_vec()));
        assert_eq!(s.get(b"c"), None);
        assert_eq!(s.applied_index(), 1);
    }

    #[test]
    fn a_crash_may_keep_whole_batches_written_after_the_sync() {
        let mut s = MemStorage::new();
        s.write(batch(1, &[("a", Some("1"))]));
        s.sync();
        s.write(batch(2, &[("b", Some("2"))]));
        s.write(batch(3, &[("a", None), ("c", Some("3"))]));
        s.crash_keeping(1);
        assert_eq!((s.get(b"a"), s.get(b"b"), s.get(b"c")), (Some(b"1".to_vec()), Some(b"2".to_vec()), None));
        assert_eq!((s.applied_index(), s.durable_applied_index(), s.unsynced_batches()), (2, 2, 0));
        s.write(batch(3, &[("c", Some("3"))]));
        s.crash_keeping(5);
        assert_eq!((s.get(b"c"), s.applied_index()), (Some(b"3".to_vec()), 3), "more than written keeps all");
    }

    #[test]
    fn scan_is_ordered_and_bounded() {
        let mut s = MemStorage::new();
        s.write(batch(1, &[("b", Some("2")), ("a", Some("1")), ("c", Some("3"))]));
        let mut seen = Vec::new();
        s.scan(b"a", Some(b"c"), &mut |k, _| {
            seen.push(k.to_vec());
            true
        });
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
        seen.clear();
        s.scan(b"b", None, &mut |k, _| {
            seen.push(k.to_vec());
            false
        });
        assert_eq!(seen, vec![b"b".to_vec()]);
        s.scan(b"c", Some(b"a"), &mut |_, _| panic!("empty range"));
    }
}
