//! Range requests: revision checks, filters, sort, limit, as etcd's applier
//! serves them.

use std::cmp::Ordering;

use super::errors::KvError;
use super::key_index::KeyRange;
use super::mvcc::Mvcc;
use super::request::{KeyValue, RangeRequest, RangeResponse, ResponseHeader, Revision, SortOrder, SortTarget};
use super::storage::Storage;
use super::write_txn::WriteTxn;

/// A consistent state to read from: the committed store, or a write in progress.
pub trait ReadView {
    /// The revision reads default to, reported in headers.
    fn rev(&self) -> Revision;
    /// Revisions below this one are gone.
    fn compact_rev(&self) -> Revision;
    /// See [`Mvcc::collect`].
    fn collect(&self, range: &KeyRange, at: Revision, fetch: Option<usize>, count_only: bool) -> (i64, Vec<KeyValue>);
}

impl<S: Storage> ReadView for Mvcc<S> {
    fn rev(&self) -> Revision {
        self.current_rev()
    }
    fn compact_rev(&self) -> Revision {
        Mvcc::compact_rev(self)
    }
    fn collect(&self, range: &KeyRange, at: Revision, fetch: Option<usize>, count_only: bool) -> (i64, Vec<KeyValue>) {
        Mvcc::collect(self, range, at, fetch, count_only)
    }
}

impl<S: Storage> ReadView for WriteTxn<'_, S> {
    fn rev(&self) -> Revision {
        WriteTxn::rev(self)
    }
    fn compact_rev(&self) -> Revision {
        self.mvcc().compact_rev()
    }
    fn collect(&self, range: &KeyRange, at: Revision, fetch: Option<usize>, count_only: bool) -> (i64, Vec<KeyValue>) {
        WriteTxn::collect(self, range, at, fetch, count_only)
    }
}

/// etcd's `checkRangeRequest`.
pub fn check_range(req: &RangeRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

fn by_target(target: SortTarget, a: &KeyValue, b: &KeyValue) -> Ordering {
    match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    }
}

/// Serves a range against `view`.
///
/// `count` is the number of keys in the range at the revision read, before the
/// min/max filters (etcd counts in the index, then prunes). Sorting is stable:
/// keys that tie on the target stay in key order, in both directions (etcd's
/// sort is unstable, so any tie order is etcd's).
pub fn range(view: &impl ReadView, req: &RangeRequest) -> Result<RangeResponse, KvError> {
    let current = view.rev();
    if req.revision > current {
        return Err(KvError::FutureRevision);
    }
    let at = if req.revision <= 0 { current } else { req.revision };
    if at < view.compact_rev() {
        return Err(KvError::Compacted);
    }
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let fetch = if req.sort_order != SortOrder::None || filtered || req.limit <= 0 {
        None
    } else {
        // One extra to learn whether there are more.
        Some(usize::try_from(req.limit).unwrap_or(usize::MAX).saturating_add(1))
    };
    let (count, mut kvs) = view.collect(&KeyRange::new(&req.key, &req.range_end), at, fetch, req.count_only);
    if req.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
    }
    if req.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
    }
    if req.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= req.max_create_revision);
    }
    if req.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= req.min_create_revision);
    }
    let order = match (req.sort_target, req.sort_order) {
        (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
        (SortTarget::Key, order) => order,
        (_, SortOrder::None) => SortOrder::Ascend,
        (_, order) => order,
    };
    match order {
        SortOrder::None => {}
        SortOrder::Ascend => kvs.sort_by(|a, b| by_target(req.sort_target, a, b)),
        SortOrder::Descend => kvs.sort_by(|a, b| by_target(req.sort_target, b, a)),
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() as u64 > req.limit as u64 {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse { header: ResponseHeader { revision: current }, kvs, more, count })
}
