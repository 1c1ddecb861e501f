//! Puts, deletes and txns: etcd's request checks (`checkPutRequest`,
//! `checkTxnRequest`, `checkIntervals`) and its applier (`compareToPath`,
//! `checkRequests`, `executeTxn`).
//!
//! A txn runs in three steps, as in etcd: (1) every compare, nested ones
//! included, is evaluated against the state before the txn, fixing the path of
//! branches taken; (2) the puts on that path are checked (key exists for
//! `ignore_*`, lease exists), then its ranges (revision not compacted, not in
//! the future); (3) the ops run in order, each seeing the ones before. Any error
//! leaves the store untouched: changes are staged and dropped.

use std::collections::BTreeSet;

use super::errors::KvError;
use super::key_index::KeyRange;
use super::range::{self, ReadView};
use super::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyValue, PutRequest, PutResponse,
    RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use super::storage::Storage;
use super::write_txn::WriteTxn;

/// The limits on a txn's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnLimits {
    /// Compares, or ops in one branch, per txn level (etcd's `--max-txn-ops`).
    pub ops_max: u32,
    /// Nesting depth, the outermost txn being 1.
    pub depth_max: u32,
}

/// etcd's `checkPutRequest`.
pub fn check_put(req: &PutRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

/// etcd's `checkDeleteRequest`.
pub fn check_delete(req: &DeleteRangeRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

/// Everything about a txn that can be checked without the store: sizes, empty
/// keys, depth, and keys written twice.
pub fn check_txn(req: &TxnRequest, limits: TxnLimits) -> Result<(), KvError> {
    check_txn_level(req, 1, limits)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn_level(req: &TxnRequest, depth: u32, limits: TxnLimits) -> Result<(), KvError> {
    if depth > limits.depth_max {
        return Err(KvError::TxnTooDeep { depth_max: limits.depth_max });
    }
    let ops = req.compare.len().max(req.success.len()).max(req.failure.len());
    if ops as u64 > u64::from(limits.ops_max) {
        return Err(KvError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(KvError::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        match op {
            RequestOp::Range(r) => range::check_range(r)?,
            RequestOp::Put(p) => check_put(p)?,
            RequestOp::DeleteRange(d) => check_delete(d)?,
            RequestOp::Txn(t) => check_txn_level(t, depth + 1, limits)?,
        }
    }
    Ok(())
}

/// etcd's `checkIntervals`: within one branch, a key may be put once and not
/// also deleted; the branches of a nested txn exclude each other, so each may
/// put the same key. Returns the keys put and the ranges deleted.
///
/// Unlike etcd, a delete with `range_end` `[0]` conflicts with puts of every key
/// `>= key` (etcd's interval tree reads it as an empty interval and misses them).
fn check_intervals(reqs: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<KeyRange>), KvError> {
    let mut dels: Vec<KeyRange> = reqs
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some(KeyRange::new(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let deleted = |dels: &[KeyRange], key: &[u8]| dels.iter().any(|r| r.contains(key));
    let mut puts: BTreeSet<Vec<u8>> = BTreeSet::new();
    for op in reqs {
        let RequestOp::Txn(t) = op else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted(&dels, key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in puts_else {
            if (puts.contains(&key) && !puts_then.contains(&key)) || deleted(&dels, &key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in reqs {
        let RequestOp::Put(p) = op else { continue };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(KvError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// Does a put: etcd's `Put` applier (lease checked first, then the key for
/// `ignore_value`/`ignore_lease`).
pub fn put<S: Storage>(txn: &mut WriteTxn<'_, S>, req: &PutRequest) -> Result<PutResponse, KvError> {
    if req.lease != 0 && !txn.mvcc().leases().contains(req.lease) {
        return Err(KvError::LeaseNotFound);
    }
    let prev = if req.ignore_value || req.ignore_lease || req.prev_kv { txn.get(&req.key) } else { None };
    if (req.ignore_value || req.ignore_lease) && prev.is_none() {
        return Err(KvError::KeyNotFound);
    }
    let value = match (&prev, req.ignore_value) {
        (Some(p), true) => p.value.clone(),
        _ => req.value.clone(),
    };
    let lease = match (&prev, req.ignore_lease) {
        (Some(p), true) => p.lease,
        _ => req.lease,
    };
    let revision = txn.put(&req.key, value, lease);
    Ok(PutResponse { header: ResponseHeader { revision }, prev_kv: prev.filter(|_| req.prev_kv) })
}

/// Does a delete: etcd's `DeleteRange` applier.
pub fn delete_range<S: Storage>(txn: &mut WriteTxn<'_, S>, req: &DeleteRangeRequest) -> DeleteRangeResponse {
    let deleted = txn.delete_range(&KeyRange::new(&req.key, &req.range_end));
    DeleteRangeResponse {
        header: ResponseHeader { revision: txn.rev() },
        deleted: deleted.len() as i64,
        prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &c.target {
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::CreateRevision(v) => kv.create_revision.cmp(v),
        CompareTarget::ModRevision(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
    };
    match c.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

/// etcd's `applyCompare`: true when the compare holds for every key in its
/// range; a range without keys compares a zero key-value, except that a value
/// compare then fails.
pub fn compare(view: &impl ReadView, c: &Compare) -> bool {
    let (_, kvs) = view.collect(&KeyRange::new(&c.key, &c.range_end), view.rev(), None, false);
    if kvs.is_empty() {
        return !matches!(c.target, CompareTarget::Value(_)) && compare_kv(c, &KeyValue::default());
    }
    kvs.iter().all(|kv| compare_kv(c, kv))
}

/// etcd's `compareToPath`: the branch taken by this txn and, depth first, by
/// every nested txn on that branch, all decided against the same state.
fn path(view: &impl ReadView, req: &TxnRequest, out: &mut Vec<bool>) {
    let succeeded = req.compare.iter().all(|c| compare(view, c));
    out.push(succeeded);
    for op in if succeeded { &req.success } else { &req.failure } {
        if let RequestOp::Txn(t) = op {
            path(view, t, out);
        }
    }
}

fn check_on_path(
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
    check: &mut impl FnMut(&RequestOp) -> Result<(), KvError>,
) -> Result<(), KvError> {
    let succeeded = path[*at];
    *at += 1;
    for op in if succeeded { &req.success } else { &req.failure } {
        match op {
            RequestOp::Txn(t) => check_on_path(t, path, at, check)?,
            op => check(op)?,
        }
    }
    Ok(())
}

fn execute<S: Storage>(
    txn: &mut WriteTxn<'_, S>,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
    nested: bool,
) -> Result<TxnResponse, KvError> {
    let succeeded = path[*at];
    *at += 1;
    let ops = if succeeded { &req.success } else { &req.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        responses.push(match op {
            RequestOp::Range(r) => ResponseOp::Range(range::range(&*txn, r)?),
            RequestOp::Put(p) => ResponseOp::Put(put(txn, p)?),
            RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(delete_range(txn, d)),
            RequestOp::Txn(t) => ResponseOp::Txn(execute(txn, t, path, at, true)?),
        });
    }
    // etcd leaves the header of nested txn responses empty.
    let revision = if nested { 0 } else { txn.rev() };
    Ok(TxnResponse { header: ResponseHeader { revision }, succeeded, responses })
}

/// Runs a checked txn ([`check_txn`]) on `txn`. On error the caller must drop
/// the staged changes.
pub fn txn<S: Storage>(txn: &mut WriteTxn<'_, S>, req: &TxnRequest) -> Result<TxnResponse, KvError> {
    assert!(!txn.has_changes(), "a txn starts on a fresh write");
    let mut taken = Vec::new();
    path(&*txn, req, &mut taken);
    let before: &WriteTxn<'_, S> = txn;
    let (begin, compacted) = (before.begin_rev(), before.mvcc().compact_rev());
    check_on_path(req, &taken, &mut 0, &mut |op| match op {
        RequestOp::Put(p) => {
            if (p.ignore_value || p.ignore_lease) && before.get(&p.key).is_none() {
                return Err(KvError::KeyNotFound);
            }
            if p.lease != 0 && !before.mvcc().leases().contains(p.lease) {
                return Err(KvError::LeaseNotFound);
            }
            Ok(())
        }
        _ => Ok(()),
    })?;
    check_on_path(req, &taken, &mut 0, &mut |op| match op {
        RequestOp::Range(r) if r.revision != 0 && r.revision > begin => Err(KvError::FutureRevision),
        RequestOp::Range(r) if r.revision != 0 && r.revision < compacted => Err(KvError::Compacted),
        _ => Ok(()),
    })?;
    execute(txn, req, &taken, &mut 0, false)
}
