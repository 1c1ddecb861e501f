//! A write being staged: reads see its own changes, nothing is stored until
//! [`crate::kv::Mvcc::commit`].

use std::collections::BTreeMap;

use super::key_index::{KeyRange, PutMeta, Rev};
use super::mvcc::Mvcc;
use super::request::{KeyValue, LeaseId, Revision};
use super::storage::Storage;

/// One staged change of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: Vec<u8>,
    /// The new key-value; `None` for a delete.
    pub kv: Option<KeyValue>,
    /// The key-value before the change (within this write, the previous change).
    pub prev: Option<Prev>,
}

/// The value a change replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prev {
    /// Read already (a delete collects what it deletes; a staged change).
    Loaded(KeyValue),
    /// A put's previous value, still only in storage: a put needs just its
    /// [`PutMeta`], from the index; the value is read only if someone asks for
    /// it (a watcher with `prev_kv`), see [`crate::kv::Mvcc::commit`].
    Stored {
        /// The revision of the stored record.
        rev: Rev,
        /// Its metadata.
        meta: PutMeta,
    },
}

impl Prev {
    /// The lease the previous value was attached to.
    pub fn lease(&self) -> LeaseId {
        match self {
            Prev::Loaded(kv) => kv.lease,
            Prev::Stored { meta, .. } => meta.lease,
        }
    }
}

/// Where a key's current value lives.
#[derive(Debug, Clone, Copy)]
enum Source {
    Stored(Rev),
    Staged(usize),
}

/// Changes staged on top of the committed state, all to become revision
/// `begin_rev + 1`. Reads at the write's revision see the staged changes; reads
/// at earlier revisions see only committed history.
#[derive(Debug)]
pub struct WriteTxn<'a, S: Storage> {
    mvcc: &'a Mvcc<S>,
    begin_rev: Revision,
    changes: Vec<Change>,
    /// Key → index in `changes` of its latest change.
    latest: BTreeMap<Vec<u8>, usize>,
}

impl<'a, S: Storage> WriteTxn<'a, S> {
    /// Starts a write on top of `mvcc`'s current revision.
    pub fn new(mvcc: &'a Mvcc<S>) -> WriteTxn<'a, S> {
        WriteTxn { mvcc, begin_rev: mvcc.current_rev(), changes: Vec::new(), latest: BTreeMap::new() }
    }

    /// The committed store underneath.
    pub fn mvcc(&self) -> &'a Mvcc<S> {
        self.mvcc
    }

    /// The revision before this write.
    pub fn begin_rev(&self) -> Revision {
        self.begin_rev
    }

    /// The revision reads see: `begin_rev + 1` once something is staged.
    pub fn rev(&self) -> Revision {
        if self.changes.is_empty() {
            self.begin_rev
        } else {
            self.begin_rev + 1
        }
    }

    /// True once something is staged.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The staged changes, in order.
    pub fn into_changes(self) -> Vec<Change> {
        self.changes
    }

    /// `key` as it is now, staged changes included.
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        match self.latest.get(key) {
            Some(&i) => self.changes[i].kv.clone(),
            None => self.mvcc.get(key, self.begin_rev),
        }
    }

    fn sources(&self, range: &KeyRange) -> Vec<(Vec<u8>, Source)> {
        let mut merged: BTreeMap<Vec<u8>, Source> = BTreeMap::new();
        self.mvcc.index().visit(range, self.begin_rev, |key, rev| {
            merged.insert(key.to_vec(), Source::Stored(rev));
            true
        });
        if let Some(bounds) = range.bounds() {
            for (key, &i) in self.latest.range::<[u8], _>(bounds) {
                if self.changes[i].kv.is_some() {
                    merged.insert(key.clone(), Source::Staged(i));
                } else {
                    merged.remove(key);
                }
            }
        }
        merged.into_iter().collect()
    }

    fn kv_of(&self, source: Source) -> KeyValue {
        match source {
            Source::Stored(rev) => self.mvcc.kv_at(rev),
            Source::Staged(i) => self.changes[i].kv.clone().expect("staged sources are puts"),
        }
    }

    /// Like [`Mvcc::collect`], at `at <= self.rev()`, staged changes included
    /// when `at` is the write's own revision.
    pub fn collect(
        &self,
        range: &KeyRange,
        at: Revision,
        fetch: Option<usize>,
        count_only: bool,
    ) -> (i64, Vec<KeyValue>) {
        assert!(at <= self.rev(), "reading {at} above the write's revision {}", self.rev());
        if at <= self.begin_rev {
            return self.mvcc.collect(range, at, fetch, count_only);
        }
        let sources = self.sources(range);
        let count = sources.len() as i64;
        if count_only {
            return (count, Vec::new());
        }
        let take = fetch.unwrap_or(sources.len());
        (count, sources.into_iter().take(take).map(|(_, s)| self.kv_of(s)).collect())
    }

    fn stage(&mut self, key: Vec<u8>, kv: Option<KeyValue>, prev: Option<Prev>) {
        self.latest.insert(key.clone(), self.changes.len());
        self.changes.push(Change { key, kv, prev });
    }

    /// Stages a put; returns the write's revision. The lease must exist.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: LeaseId) -> Revision {
        let rev = self.begin_rev + 1;
        let prev = match self.latest.get(key) {
            Some(&i) => self.changes[i].kv.clone().map(Prev::Loaded),
            // The index's latest change is at `begin_rev`: nothing committed since.
            None => self.mvcc.index().latest(key).map(|(rev, meta)| Prev::Stored { rev, meta }),
        };
        let (create_revision, version) = match &prev {
            Some(Prev::Loaded(p)) => (p.create_revision, p.version + 1),
            Some(Prev::Stored { meta, .. }) => (meta.create_revision, meta.version + 1),
            None => (rev, 1),
        };
        let kv = KeyValue { key: key.to_vec(), create_revision, mod_revision: rev, version, value, lease };
        self.stage(key.to_vec(), Some(kv), prev);
        rev
    }

    /// Stages the deletion of every key in `range`; returns what was deleted.
    pub fn delete_range(&mut self, range: &KeyRange) -> Vec<KeyValue> {
        let at = self.rev();
        let (_, doomed) = self.collect(range, at, None, false);
        for kv in &doomed {
            self.stage(kv.key.clone(), None, Some(Prev::Loaded(kv.clone())));
        }
        doomed
    }
}
