//! The in-memory index from each key to the revisions that changed it (etcd's
//! `treeIndex`), and the key ranges requests select.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::request::Revision;

/// A full revision: the main revision of the write and the position of the
/// change within it (etcd's `revision{main, sub}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rev {
    /// The write's revision.
    pub main: Revision,
    /// The change's position within the write, from 0.
    pub sub: i64,
}

/// Lower and upper bounds of a key range, for `BTreeMap::range`.
pub type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The keys a request selects, decoded from etcd's `key` + `range_end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly one key (`range_end` empty).
    Single(Vec<u8>),
    /// Keys `>= start` and `< end` (empty when `end <= start`).
    Span {
        /// First key.
        start: Vec<u8>,
        /// Bound, exclusive.
        end: Vec<u8>,
    },
    /// Every key `>= start` (`range_end` is `[0]`).
    From(Vec<u8>),
}

impl KeyRange {
    /// Decodes etcd's convention.
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::From(key.to_vec()),
            end => KeyRange::Span { start: key.to_vec(), end: end.to_vec() },
        }
    }

    /// True when `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_slice() == key,
            KeyRange::Span { start, end } => start.as_slice() <= key && key < end.as_slice(),
            KeyRange::From(start) => start.as_slice() <= key,
        }
    }

    /// The range as `BTreeMap::range` bounds, or `None` when it is empty.
    pub fn bounds(&self) -> Option<KeyBounds<'_>> {
        match self {
            KeyRange::Single(k) => Some((Bound::Included(k.as_slice()), Bound::Included(k.as_slice()))),
            KeyRange::Span { start, end } if start < end => {
                Some((Bound::Included(start.as_slice()), Bound::Excluded(end.as_slice())))
            }
            KeyRange::Span { .. } => None,
            KeyRange::From(start) => Some((Bound::Included(start.as_slice()), Bound::Unbounded)),
        }
    }

    /// True when some key lies in both ranges.
    pub fn intersects(&self, other: &KeyRange) -> bool {
        let (Some((a_lo, a_hi)), Some((b_lo, b_hi))) = (self.bounds(), other.bounds()) else { return false };
        let lo_below_hi = |lo: Bound<&[u8]>, hi: Bound<&[u8]>| match (lo, hi) {
            (_, Bound::Unbounded) => true,
            (Bound::Included(l), Bound::Included(h)) => l <= h,
            (Bound::Included(l), Bound::Excluded(h)) => l < h,
            _ => unreachable!("lower bounds are always inclusive"),
        };
        lo_below_hi(a_lo, b_hi) && lo_below_hi(b_lo, a_hi)
    }
}

/// One change of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// When.
    pub rev: Rev,
    /// The change deleted the key.
    pub tombstone: bool,
}

/// What a put needs to know of the key's current value besides the value
/// itself: kept for the latest change of every key, so that a put does not
/// read the previous record from storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PutMeta {
    /// The revision of the put that created the key (since its last delete).
    pub create_revision: Revision,
    /// Puts since creation, 1 for the first.
    pub version: i64,
    /// The lease the key is attached to (0: none).
    pub lease: i64,
}

/// One key's changes in revision order, and the latest one's [`PutMeta`] when
/// it is a put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeyHistory {
    entries: Vec<IndexEntry>,
    latest: Option<PutMeta>,
}

/// For every key, its changes in revision order.
///
/// Invariants (asserted): entries of a key ascend strictly by revision; no key
/// has an empty list; a key's `latest` is `Some` exactly when its last entry is
/// a put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndex {
    keys: BTreeMap<Vec<u8>, KeyHistory>,
    entries: u64,
}

/// The latest entry with `main <= at` in one key's list.
fn at_revision(entries: &[IndexEntry], at: Revision) -> Option<&IndexEntry> {
    let n = entries.partition_point(|e| e.rev.main <= at);
    n.checked_sub(1).map(|i| &entries[i])
}

impl KeyIndex {
    /// An empty index.
    pub fn new() -> KeyIndex {
        KeyIndex::default()
    }

    /// Records a change of `key`, a put with `meta` or a delete (`None`); it
    /// must be later than the key's last change.
    pub fn push(&mut self, key: &[u8], rev: Rev, meta: Option<PutMeta>) {
        let history = match self.keys.get_mut(key) {
            Some(history) => history,
            None => self.keys.entry(key.to_vec()).or_default(),
        };
        if let Some(last) = history.entries.last() {
            assert!(last.rev < rev, "index: change {rev:?} of {key:?} not after {:?}", last.rev);
        }
        history.entries.push(IndexEntry { rev, tombstone: meta.is_none() });
        history.latest = meta;
        self.entries += 1;
    }

    /// The revision and [`PutMeta`] of `key`'s latest change, if it is a put
    /// (the key is present now).
    pub fn latest(&self, key: &[u8]) -> Option<(Rev, PutMeta)> {
        let history = self.keys.get(key)?;
        let meta = history.latest?;
        Some((history.entries.last().expect("no key has an empty list").rev, meta))
    }

    /// Keys with history in the index (live keys and deleted keys whose
    /// tombstone is not compacted yet): etcd's `keys_total`.
    pub fn key_count(&self) -> u64 {
        self.keys.len() as u64
    }

    /// The revision of `key`'s value as of `at`, `None` if absent then.
    pub fn get(&self, key: &[u8], at: Revision) -> Option<Rev> {
        let entry = at_revision(&self.keys.get(key)?.entries, at)?;
        (!entry.tombstone).then_some(entry.rev)
    }

    /// Calls `visit` with each key present in `range` as of `at`, in key order,
    /// until it returns false.
    pub fn visit(&self, range: &KeyRange, at: Revision, mut visit: impl FnMut(&[u8], Rev) -> bool) {
        let Some(bounds) = range.bounds() else { return };
        for (key, history) in self.keys.range::<[u8], _>(bounds) {
            if let Some(e) = at_revision(&history.entries, at) {
                if !e.tombstone && !visit(key, e.rev) {
                    return;
                }
            }
        }
    }

    /// The change of `key` just before `rev`, if it was a put.
    pub fn previous_put(&self, key: &[u8], rev: Rev) -> Option<Rev> {
        let entries = &self.keys.get(key)?.entries;
        let n = entries.partition_point(|e| e.rev < rev);
        let prev = entries.get(n.checked_sub(1)?)?;
        (!prev.tombstone).then_some(prev.rev)
    }

    /// Removes history before `at`: of the changes with `main < at` only the last
    /// one of each key stays, and only if it is a put, so that reads at `at` or
    /// later still find it. Changes at `at` and later all stay, so revision `at`
    /// remains complete for watchers starting there. Returns what was removed.
    pub fn compact(&mut self, at: Revision) -> Vec<Rev> {
        let mut removed = Vec::new();
        self.keys.retain(|_, history| {
            let entries = &mut history.entries;
            let old = entries.partition_point(|e| e.rev.main < at);
            let keep_from = match old.checked_sub(1) {
                Some(last_old) if !entries[last_old].tombstone => last_old,
                _ => old,
            };
            removed.extend(entries.drain(..keep_from).map(|e| e.rev));
            !entries.is_empty()
        });
        self.entries -= removed.len() as u64;
        removed
    }

    /// The number of keys with any history.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// The number of changes recorded.
    pub fn entries(&self) -> u64 {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64, sub: i64) -> Rev {
        Rev { main, sub }
    }

    #[test]
    fn ranges_decode_etcd_conventions() {
        assert!(KeyRange::new(b"a", b"").contains(b"a"));
        assert!(!KeyRange::new(b"a", b"").contains(b"ab"));
        assert!(KeyRange::new(b"a", b"\0").contains(b"\xff\xff"));
        assert!(!KeyRange::new(b"b", b"\0").contains(b"a"));
        assert!(KeyRange::new(b"a", b"c").contains(b"b"));
        assert!(!KeyRange::new(b"a", b"c").contains(b"c"));
        assert_eq!(KeyRange::new(b"c", b"a").bounds(), None);
        assert!(KeyRange::new(b"a", b"c").intersects(&KeyRange::new(b"b", b"")));
        assert!(!KeyRange::new(b"a", b"c").intersects(&KeyRange::new(b"c", b"")));
        assert!(KeyRange::new(b"a", b"\0").intersects(&KeyRange::new(b"z", b"zz")));
        assert!(!KeyRange::new(b"c", b"a").intersects(&KeyRange::new(b"a", b"\0")));
    }

    #[test]
    fn reads_at_revisions_and_compaction() {
        let mut index = KeyIndex::new();
        let put = |create_revision, version| Some(PutMeta { create_revision, version, lease: 0 });
        index.push(b"a", rev(2, 0), put(2, 1));
        index.push(b"a", rev(3, 0), put(2, 2));
        assert_eq!(index.latest(b"a"), Some((rev(3, 0), PutMeta { create_revision: 2, version: 2, lease: 0 })));
        index.push(b"a", rev(4, 0), None);
        assert_eq!(index.latest(b"a"), None);
        index.push(b"b", rev(4, 1), put(4, 1));
        index.push(b"a", rev(6, 0), put(6, 1));
        assert_eq!(index.get(b"a", 1), None);
        assert_eq!(index.get(b"a", 3), Some(rev(3, 0)));
        assert_eq!(index.get(b"a", 5), None);
        assert_eq!(index.get(b"a", 9), Some(rev(6, 0)));
        assert_eq!(index.previous_put(b"a", rev(4, 0)), Some(rev(3, 0)));
        assert_eq!(index.previous_put(b"a", rev(6, 0)), None);
        // Compacting at 5: a's tombstone at 4 and everything before it go; b's put stays.
        assert_eq!(index.compact(5), vec![rev(2, 0), rev(3, 0), rev(4, 0)]);
        assert_eq!(index.get(b"b", 5), Some(rev(4, 1)));
        assert_eq!(index.get(b"a", 9), Some(rev(6, 0)));
        assert_eq!(index.entries(), 2);
        assert_eq!(index.latest(b"a"), Some((rev(6, 0), PutMeta { create_revision: 6, version: 1, lease: 0 })));
        assert_eq!(index.latest(b"b"), Some((rev(4, 1), PutMeta { create_revision: 4, version: 1, lease: 0 })));
        assert_eq!(index.latest(b"c"), None);
    }
}
