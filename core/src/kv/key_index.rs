//! The in-memory index from each key to the revisions that changed it (etcd's
//! `treeIndex`), and the key ranges requests select.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::Arc;

use siphasher::sip::SipHasher13;

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

/// SipHash-1-3 under a key the runtime chooses ([`super::KvConfig::index_hash_key`]):
/// clients choose the keys, so with a fixed, known hash key they could make
/// many keys collide and every lookup of them slow (hash flooding). Core picks
/// no randomness itself; the simulator and tests use a fixed key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexHasher {
    key: u64,
}

impl BuildHasher for IndexHasher {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.key, self.key.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15)
    }
}

/// For every key, its changes in revision order (etcd's `treeIndex`).
///
/// Two structures over the same keys: a hash map holds each key's history, so
/// that a put finds its key's latest change in one probe (in an ordered map of
/// heap-allocated keys each comparison on the way down is a cache miss: that
/// search was 9-10 % of a member's CPU under puts of random keys), and an
/// ordered set serves ranges and compaction in key order. The hash map's order
/// is never observed: everything that iterates goes through the ordered set.
///
/// Invariants (asserted): entries of a key ascend strictly by revision; no key
/// has an empty list; a key's `latest` is `Some` exactly when its last entry is
/// a put; the two structures hold the same keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndex {
    histories: Histories,
    order: BTreeSet<Arc<[u8]>>,
    entries: u64,
}

/// The hash map of key histories, behind an interface with no iteration: the
/// only hash map in core (core/tests/purity.rs and clippy.toml refuse others),
/// because nothing can observe its order.
#[allow(clippy::disallowed_types)]
#[derive(Clone, Default, PartialEq, Eq)]
struct Histories(std::collections::HashMap<Arc<[u8]>, KeyHistory, IndexHasher>);

impl Histories {
    fn get(&self, key: &[u8]) -> Option<&KeyHistory> {
        self.0.get(key)
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut KeyHistory> {
        self.0.get_mut(key)
    }

    fn insert_new(&mut self, key: Arc<[u8]>) -> &mut KeyHistory {
        self.0.entry(key).or_default()
    }

    fn remove(&mut self, key: &[u8]) {
        self.0.remove(key);
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Histories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histories({} keys)", self.0.len())
    }
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

    /// An empty index hashing with `hash_key` (see [`IndexHasher`]).
    pub fn with_hash_key(hash_key: u64) -> KeyIndex {
        #[allow(clippy::disallowed_types)]
        let map = std::collections::HashMap::with_hasher(IndexHasher { key: hash_key });
        KeyIndex { histories: Histories(map), ..KeyIndex::default() }
    }

    /// The hash key this index was made with.
    pub fn hash_key(&self) -> u64 {
        self.histories.0.hasher().key
    }

    /// Records a change of `key`, a put with `meta` or a delete (`None`); it
    /// must be later than the key's last change.
    pub fn push(&mut self, key: &[u8], rev: Rev, meta: Option<PutMeta>) {
        let history = match self.histories.get_mut(key) {
            Some(history) => history,
            None => {
                let key: Arc<[u8]> = Arc::from(key);
                self.order.insert(Arc::clone(&key));
                self.histories.insert_new(key)
            }
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
        let history = self.histories.get(key)?;
        let meta = history.latest?;
        Some((history.entries.last().expect("no key has an empty list").rev, meta))
    }

    /// Keys with history in the index (live keys and deleted keys whose
    /// tombstone is not compacted yet): etcd's `keys_total`.
    pub fn key_count(&self) -> u64 {
        self.histories.len() as u64
    }

    /// The revision of `key`'s value as of `at`, `None` if absent then.
    pub fn get(&self, key: &[u8], at: Revision) -> Option<Rev> {
        let entry = at_revision(&self.histories.get(key)?.entries, at)?;
        (!entry.tombstone).then_some(entry.rev)
    }

    /// Calls `visit` with each key present in `range` as of `at`, in key order,
    /// until it returns false.
    pub fn visit(&self, range: &KeyRange, at: Revision, mut visit: impl FnMut(&[u8], Rev) -> bool) {
        let Some(bounds) = range.bounds() else { return };
        for key in self.order.range::<[u8], _>(bounds) {
            let history = self.histories.get(key).expect("the index's structures hold the same keys");
            if let Some(e) = at_revision(&history.entries, at) {
                if !e.tombstone && !visit(key, e.rev) {
                    return;
                }
            }
        }
    }

    /// The change of `key` just before `rev`, if it was a put.
    pub fn previous_put(&self, key: &[u8], rev: Rev) -> Option<Rev> {
        let entries = &self.histories.get(key)?.entries;
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
        let histories = &mut self.histories;
        // In key order, so that what is removed comes out in the same order on
        // every member.
        self.order.retain(|key| {
            let entries = &mut histories.get_mut(key).expect("the index's structures hold the same keys").entries;
            let old = entries.partition_point(|e| e.rev.main < at);
            let keep_from = match old.checked_sub(1) {
                Some(last_old) if !entries[last_old].tombstone => last_old,
                _ => old,
            };
            removed.extend(entries.drain(..keep_from).map(|e| e.rev));
            let keep = !entries.is_empty();
            if !keep {
                histories.remove(key);
            }
            keep
        });
        assert_eq!(self.order.len(), self.histories.len(), "the index's structures hold the same keys");
        self.entries -= removed.len() as u64;
        removed
    }

    /// The number of keys with any history.
    pub fn keys(&self) -> usize {
        self.histories.len()
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

#[cfg(test)]
mod hash_key_tests {
    use super::*;

    fn filled(hash_key: u64) -> KeyIndex {
        let mut index = KeyIndex::with_hash_key(hash_key);
        for main in 1..=300i64 {
            let key = format!("k{:03}", (main * 37) % 101).into_bytes();
            let meta = (main % 7 != 0).then_some(PutMeta { create_revision: main, version: 1, lease: 0 });
            index.push(&key, Rev { main, sub: 0 }, meta);
        }
        index
    }

    #[test]
    fn the_hash_key_changes_nothing_observable() {
        let (mut a, mut b) = (filled(0), filled(0xdead_beef));
        assert_eq!((a.keys(), a.entries()), (101, 300));
        let visit = |index: &KeyIndex| {
            let mut seen = Vec::new();
            index.visit(&KeyRange::From(b"k".to_vec()), 200, |key, rev| {
                seen.push((key.to_vec(), rev));
                true
            });
            seen
        };
        assert_eq!(visit(&a), visit(&b));
        assert!(visit(&a).windows(2).all(|w| w[0].0 < w[1].0), "keys come in order");
        for key in [&b"k000"[..], b"k050", b"k100", b"absent"] {
            assert_eq!(a.latest(key), b.latest(key));
            assert_eq!(a.get(key, 150), b.get(key, 150));
        }
        // Compaction removes the same revisions in the same (key) order.
        assert_eq!(a.compact(250), b.compact(250));
        assert_eq!((a.keys(), a.entries()), (b.keys(), b.entries()));
        assert_eq!(a, b);
    }
}
