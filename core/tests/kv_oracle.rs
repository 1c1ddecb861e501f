//! The KV state machine against a plain reference model of etcd's MVCC
//! semantics: full history per key, no index, no storage, no compaction of
//! data (reads below the compaction revision are refused instead).

use std::collections::BTreeMap;

use lockstep_core::kv::*;
use lockstep_core::raft::message::Payload;
use lockstep_core::StateMachine;
use proptest::prelude::*;

// ---------------------------------------------------------------- the model

/// One change in a key's history: (main, sub, the value after it or None).
type Change = (i64, i64, Option<KeyValue>);

#[derive(Debug, Clone)]
struct Model {
    rev: i64,
    compacted: i64,
    /// Changes staged by the write in progress (all at `rev + 1`).
    staged: i64,
    history: BTreeMap<Vec<u8>, Vec<Change>>,
    /// Lease id → granted TTL. A lease's keys are those whose value names it.
    leases: BTreeMap<i64, i64>,
    ops_max: usize,
    ttl_min: i64,
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

fn cmp_i64(stored: i64, given: i64, result: CompareResult) -> bool {
    match result {
        CompareResult::Equal => stored == given,
        CompareResult::NotEqual => stored != given,
        CompareResult::Greater => stored > given,
        CompareResult::Less => stored < given,
    }
}

impl Model {
    fn new() -> Model {
        Model {
            rev: 1,
            compacted: 0,
            staged: 0,
            history: BTreeMap::new(),
            leases: BTreeMap::new(),
            ops_max: 128,
            ttl_min: 2,
        }
    }

    /// The revision reads see now.
    fn now(&self) -> i64 {
        if self.staged > 0 {
            self.rev + 1
        } else {
            self.rev
        }
    }

    fn value_at(&self, key: &[u8], rev: i64) -> Option<KeyValue> {
        let changes = self.history.get(key)?;
        changes.iter().rev().find(|(main, _, _)| *main <= rev).and_then(|(_, _, kv)| kv.clone())
    }

    fn all_at(&self, start: &[u8], end: &[u8], rev: i64) -> Vec<KeyValue> {
        self.history.keys().filter(|k| in_range(k, start, end)).filter_map(|k| self.value_at(k, rev)).collect()
    }

    fn record(&mut self, key: &[u8], kv: Option<KeyValue>) {
        let sub = self.staged;
        self.staged += 1;
        self.history.entry(key.to_vec()).or_default().push((self.rev + 1, sub, kv));
    }

    fn finish(&mut self) {
        if self.staged > 0 {
            self.rev += 1;
            self.staged = 0;
        }
    }

    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, KvError> {
        let current = self.now();
        if r.revision > current {
            return Err(KvError::FutureRevision);
        }
        let at = if r.revision > 0 { r.revision } else { current };
        if at < self.compacted {
            return Err(KvError::Compacted);
        }
        let all = self.all_at(&r.key, &r.range_end, at);
        let count = all.len() as i64;
        if r.count_only {
            return Ok(RangeResponse { header: ResponseHeader { revision: current }, kvs: vec![], more: false, count });
        }
        let mut kvs: Vec<KeyValue> = all
            .into_iter()
            .filter(|kv| r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            .filter(|kv| r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            .filter(|kv| r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
            .filter(|kv| r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            .collect();
        let target = |kv: &KeyValue| -> (i64, Vec<u8>) {
            match r.sort_target {
                SortTarget::Key => (0, kv.key.clone()),
                SortTarget::Version => (kv.version, vec![]),
                SortTarget::Create => (kv.create_revision, vec![]),
                SortTarget::Mod => (kv.mod_revision, vec![]),
                SortTarget::Value => (0, kv.value.clone()),
            }
        };
        let descend = r.sort_order == SortOrder::Descend;
        let ascend =
            r.sort_order == SortOrder::Ascend || (r.sort_order == SortOrder::None && r.sort_target != SortTarget::Key);
        if ascend {
            kvs.sort_by_key(|kv| target(kv));
        } else if descend {
            kvs.sort_by_key(|kv| std::cmp::Reverse(target(kv)));
        }
        let mut more = false;
        if r.limit > 0 && kvs.len() > r.limit as usize {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.keys_only {
            for kv in &mut kvs {
                kv.value = vec![];
            }
        }
        Ok(RangeResponse { header: ResponseHeader { revision: current }, kvs, more, count })
    }

    fn put(&mut self, p: &PutRequest) -> Result<PutResponse, KvError> {
        if p.lease != 0 && !self.leases.contains_key(&p.lease) {
            return Err(KvError::LeaseNotFound);
        }
        let prev = self.value_at(&p.key, self.now());
        if (p.ignore_value || p.ignore_lease) && prev.is_none() {
            return Err(KvError::KeyNotFound);
        }
        let rev = self.rev + 1;
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(0, |p| p.version) + 1,
            value: if p.ignore_value {
                prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
            } else {
                p.value.clone()
            },
            lease: if p.ignore_lease { prev.as_ref().map_or(0, |p| p.lease) } else { p.lease },
        };
        self.record(&p.key, Some(kv));
        Ok(PutResponse { header: ResponseHeader { revision: rev }, prev_kv: if p.prev_kv { prev } else { None } })
    }

    fn delete(&mut self, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed = self.all_at(&d.key, &d.range_end, self.now());
        for kv in &doomed {
            self.record(&kv.key, None);
        }
        DeleteRangeResponse {
            header: ResponseHeader { revision: self.now() },
            deleted: doomed.len() as i64,
            prev_kvs: if d.prev_kv { doomed } else { vec![] },
        }
    }

    fn shape_ok(&self, t: &TxnRequest, depth: u32) -> Result<(), KvError> {
        if depth > 16 {
            return Err(KvError::TxnTooDeep { depth_max: 16 });
        }
        if t.compare.len() > self.ops_max || t.success.len() > self.ops_max || t.failure.len() > self.ops_max {
            return Err(KvError::TooManyOps);
        }
        if t.compare.iter().any(|c| c.key.is_empty()) {
            return Err(KvError::EmptyKey);
        }
        for op in t.success.iter().chain(t.failure.iter()) {
            match op {
                RequestOp::Range(r) if r.key.is_empty() => return Err(KvError::EmptyKey),
                RequestOp::DeleteRange(d) if d.key.is_empty() => return Err(KvError::EmptyKey),
                RequestOp::Put(p) => put_ok(p)?,
                RequestOp::Txn(inner) => self.shape_ok(inner, depth + 1)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn eval(&self, c: &Compare) -> bool {
        let kvs = self.all_at(&c.key, &c.range_end, self.rev);
        if kvs.is_empty() {
            return match &c.target {
                CompareTarget::Value(_) => false,
                CompareTarget::Version(v)
                | CompareTarget::CreateRevision(v)
                | CompareTarget::ModRevision(v)
                | CompareTarget::Lease(v) => cmp_i64(0, *v, c.result),
            };
        }
        kvs.iter().all(|kv| match &c.target {
            CompareTarget::Value(v) => match c.result {
                CompareResult::Equal => kv.value == *v,
                CompareResult::NotEqual => kv.value != *v,
                CompareResult::Greater => kv.value > *v,
                CompareResult::Less => kv.value < *v,
            },
            CompareTarget::Version(v) => cmp_i64(kv.version, *v, c.result),
            CompareTarget::CreateRevision(v) => cmp_i64(kv.create_revision, *v, c.result),
            CompareTarget::ModRevision(v) => cmp_i64(kv.mod_revision, *v, c.result),
            CompareTarget::Lease(v) => cmp_i64(kv.lease, *v, c.result),
        })
    }

    /// The ops on the branch taken, with the nested txns' branches decided too
    /// (all against the state before the txn).
    fn branch<'a>(&self, t: &'a TxnRequest) -> (bool, &'a [RequestOp]) {
        let ok = t.compare.iter().all(|c| self.eval(c));
        (ok, if ok { &t.success } else { &t.failure })
    }

    fn leaves<'a>(&self, t: &'a TxnRequest, out: &mut Vec<&'a RequestOp>) {
        for op in self.branch(t).1 {
            match op {
                RequestOp::Txn(inner) => self.leaves(inner, out),
                op => out.push(op),
            }
        }
    }

    fn run_txn(&mut self, t: &TxnRequest, nested: bool, before: &Model) -> TxnResponse {
        let (succeeded, ops) = before.branch(t);
        let mut responses = vec![];
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r).expect("checked")),
                RequestOp::Put(p) => ResponseOp::Put(self.put(p).expect("checked")),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete(d)),
                RequestOp::Txn(inner) => ResponseOp::Txn(self.run_txn(inner, true, before)),
            });
        }
        TxnResponse { header: ResponseHeader { revision: if nested { 0 } else { self.now() } }, succeeded, responses }
    }

    fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, KvError> {
        self.shape_ok(t, 1)?;
        writes_once(&t.success)?;
        writes_once(&t.failure)?;
        let mut leaves = vec![];
        self.leaves(t, &mut leaves);
        for op in &leaves {
            if let RequestOp::Put(p) = op {
                if (p.ignore_value || p.ignore_lease) && self.value_at(&p.key, self.rev).is_none() {
                    return Err(KvError::KeyNotFound);
                }
                if p.lease != 0 && !self.leases.contains_key(&p.lease) {
                    return Err(KvError::LeaseNotFound);
                }
            }
        }
        for op in &leaves {
            if let RequestOp::Range(r) = op {
                if r.revision != 0 && r.revision > self.rev {
                    return Err(KvError::FutureRevision);
                }
                if r.revision != 0 && r.revision < self.compacted {
                    return Err(KvError::Compacted);
                }
            }
        }
        let before = self.clone();
        let response = self.run_txn(t, false, &before);
        self.finish();
        Ok(response)
    }

    fn compact(&mut self, rev: i64) -> Result<CompactionResponse, KvError> {
        if rev <= self.compacted {
            return Err(KvError::Compacted);
        }
        if rev > self.rev {
            return Err(KvError::FutureRevision);
        }
        self.compacted = rev;
        Ok(CompactionResponse { header: ResponseHeader { revision: self.rev } })
    }

    fn grant(&mut self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, KvError> {
        if ttl > 9_000_000_000 {
            return Err(KvError::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(KvError::LeaseExists);
        }
        let ttl = ttl.max(self.ttl_min);
        self.leases.insert(id, ttl);
        Ok(LeaseGrantResponse { header: ResponseHeader { revision: self.rev }, id, ttl, error: String::new() })
    }

    fn revoke(&mut self, id: i64) -> Result<LeaseRevokeResponse, KvError> {
        if self.leases.remove(&id).is_none() {
            return Err(KvError::LeaseNotFound);
        }
        let keys: Vec<Vec<u8>> =
            self.all_at(&[0], &[0], self.rev).into_iter().filter(|kv| kv.lease == id).map(|kv| kv.key).collect();
        for key in keys {
            self.record(&key, None);
        }
        self.finish();
        Ok(LeaseRevokeResponse { header: ResponseHeader { revision: self.rev } })
    }

    fn apply(&mut self, command: &KvCommand, granted: Option<i64>) -> KvResult {
        let result = match command {
            KvCommand::Put(p) => put_ok(p).and_then(|()| self.put(p)).map(KvResponse::Put),
            KvCommand::DeleteRange(d) if d.key.is_empty() => Err(KvError::EmptyKey),
            KvCommand::DeleteRange(d) => Ok(KvResponse::DeleteRange(self.delete(d))),
            KvCommand::Txn(t) => self.txn(t).map(KvResponse::Txn),
            KvCommand::Compaction(c) => self.compact(c.revision).map(KvResponse::Compaction),
            KvCommand::LeaseGrant(g) => self
                .grant(if g.id == 0 { granted.expect("store chose an id") } else { g.id }, g.ttl)
                .map(KvResponse::LeaseGrant),
            KvCommand::LeaseRevoke(r) => self.revoke(r.id).map(KvResponse::LeaseRevoke),
            KvCommand::LeaseCheckpoint(_) | KvCommand::Alarm(_) => unreachable!("not generated"),
        };
        self.finish();
        result
    }
}

fn put_ok(p: &PutRequest) -> Result<(), KvError> {
    if p.key.is_empty() {
        Err(KvError::EmptyKey)
    } else if p.ignore_value && !p.value.is_empty() {
        Err(KvError::ValueProvided)
    } else if p.ignore_lease && p.lease != 0 {
        Err(KvError::LeaseProvided)
    } else {
        Ok(())
    }
}

/// etcd's rule that a txn branch writes each key once, written as a plain
/// walk: returns the keys put and the (key, range_end) deleted.
#[allow(clippy::type_complexity)]
fn writes_once(ops: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>), KvError> {
    let mut deletes: Vec<(Vec<u8>, Vec<u8>)> = vec![];
    for op in ops {
        if let RequestOp::DeleteRange(d) = op {
            deletes.push((d.key.clone(), d.range_end.clone()));
        }
    }
    let hit = |deletes: &Vec<(Vec<u8>, Vec<u8>)>, key: &[u8]| deletes.iter().any(|(s, e)| in_range(key, s, e));
    let mut puts: Vec<Vec<u8>> = vec![];
    for op in ops {
        if let RequestOp::Txn(t) = op {
            let (then_puts, then_dels) = writes_once(&t.success)?;
            let (else_puts, else_dels) = writes_once(&t.failure)?;
            for k in &then_puts {
                if puts.contains(k) || hit(&deletes, k) {
                    return Err(KvError::DuplicateKey);
                }
                puts.push(k.clone());
            }
            for k in &else_puts {
                if (puts.contains(k) && !then_puts.contains(k)) || hit(&deletes, k) {
                    return Err(KvError::DuplicateKey);
                }
                if !puts.contains(k) {
                    puts.push(k.clone());
                }
            }
            deletes.extend(then_dels);
            deletes.extend(else_dels);
        }
    }
    for op in ops {
        if let RequestOp::Put(p) = op {
            if puts.contains(&p.key) || hit(&deletes, &p.key) {
                return Err(KvError::DuplicateKey);
            }
            puts.push(p.key.clone());
        }
    }
    Ok((puts, deletes))
}

// ---------------------------------------------------------------- generated ops

const KEYS: [&[u8]; 6] = [b"a", b"ab", b"b", b"c", b"\xff", b"\xff\x01"];

fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().expect("not empty") += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn range_end(key: &[u8], sel: u8) -> Vec<u8> {
    match sel % 6 {
        0 | 1 => vec![],
        2 => vec![0],
        3 => prefix_end(key),
        n => KEYS[(n as usize * 3 + key.len()) % KEYS.len()].to_vec(),
    }
}

/// A revision relative to the model's state when the op runs.
fn pick_rev(model: &Model, sel: u8) -> i64 {
    match sel % 8 {
        0..=2 => 0,
        3 => model.rev + 1,
        4 => model.compacted.max(1),
        5 => (model.compacted - 1).max(1),
        n => (model.rev - i64::from(n)).max(1),
    }
}

#[derive(Debug, Clone)]
enum Leaf {
    Put { key: u8, value: u8, lease: u8, prev_kv: bool, ignore: u8 },
    Range { key: u8, end: u8, limit: i64, rev: u8, sort: u8, flags: u8, filter: u8 },
    Delete { key: u8, end: u8, prev_kv: bool },
}

#[derive(Debug, Clone)]
enum TxnOp {
    Leaf(Leaf),
    Txn(Box<TxnSpec>),
}

#[derive(Debug, Clone)]
struct TxnSpec {
    compares: Vec<(u8, u8, u8, i64, u8)>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

#[derive(Debug, Clone)]
enum Op {
    Leaf(Leaf),
    Txn(TxnSpec),
    Compact { back: u8 },
    Grant { id: u8, ttl: i64 },
    Revoke { id: u8 },
    Sync,
}

fn leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        4 => (0u8..6, 0u8..4, 0u8..5, any::<bool>(), 0u8..8)
            .prop_map(|(key, value, lease, prev_kv, ignore)| Leaf::Put { key, value, lease, prev_kv, ignore }),
        3 => (0u8..6, any::<u8>(), -1i64..4, any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(key, end, limit, rev, sort, flags, filter)| Leaf::Range { key, end, limit, rev, sort, flags, filter }),
        2 => (0u8..6, any::<u8>(), any::<bool>()).prop_map(|(key, end, prev_kv)| Leaf::Delete { key, end, prev_kv }),
    ]
}

fn txn_spec() -> impl Strategy<Value = TxnSpec> {
    let compare = (0u8..6, 0u8..6, 0u8..4, -1i64..6, 0u8..5);
    let base = (
        proptest::collection::vec(compare.clone(), 0..3),
        proptest::collection::vec(leaf(), 0..3),
        proptest::collection::vec(leaf(), 0..3),
    )
        .prop_map(|(compares, s, f)| TxnSpec {
            compares,
            success: s.into_iter().map(TxnOp::Leaf).collect(),
            failure: f.into_iter().map(TxnOp::Leaf).collect(),
        });
    base.prop_recursive(2, 12, 3, move |inner| {
        let op = prop_oneof![3 => leaf().prop_map(TxnOp::Leaf), 1 => inner.prop_map(|t| TxnOp::Txn(Box::new(t)))];
        (
            proptest::collection::vec(compare.clone(), 0..3),
            proptest::collection::vec(op.clone(), 0..4),
            proptest::collection::vec(op, 0..3),
        )
            .prop_map(|(compares, success, failure)| TxnSpec { compares, success, failure })
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => leaf().prop_map(Op::Leaf),
        3 => txn_spec().prop_map(Op::Txn),
        1 => (0u8..6).prop_map(|back| Op::Compact { back }),
        1 => (0u8..5, -1i64..4).prop_map(|(id, ttl)| Op::Grant { id, ttl }),
        1 => (0u8..5).prop_map(|id| Op::Revoke { id }),
        1 => Just(Op::Sync),
    ]
}

fn leaf_request(model: &Model, leaf: &Leaf) -> RequestOp {
    match *leaf {
        Leaf::Put { key, value, lease, prev_kv, ignore } => {
            let key = KEYS[key as usize].to_vec();
            RequestOp::Put(PutRequest {
                key,
                value: if value == 0 { vec![] } else { vec![b'v', value] },
                lease: i64::from(lease),
                prev_kv,
                ignore_value: ignore == 1 || ignore == 3,
                ignore_lease: ignore == 2 || ignore == 3,
            })
        }
        Leaf::Range { key, end, limit, rev, sort, flags, filter } => {
            let k = KEYS[key as usize];
            let f = |bit: u8| i64::from(filter >> bit & 1) * (model.rev / 2 + 1);
            RequestOp::Range(RangeRequest {
                key: k.to_vec(),
                range_end: range_end(k, end),
                limit,
                revision: pick_rev(model, rev),
                sort_order: [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][(sort % 3) as usize],
                sort_target: [
                    SortTarget::Key,
                    SortTarget::Version,
                    SortTarget::Create,
                    SortTarget::Mod,
                    SortTarget::Value,
                ][((sort / 3) % 5) as usize],
                serializable: false,
                keys_only: flags & 1 == 1,
                count_only: flags & 6 == 6,
                min_mod_revision: f(0),
                max_mod_revision: f(1) * 2,
                min_create_revision: f(2),
                max_create_revision: f(3) * 2,
            })
        }
        Leaf::Delete { key, end, prev_kv } => {
            let k = KEYS[key as usize];
            RequestOp::DeleteRange(DeleteRangeRequest { key: k.to_vec(), range_end: range_end(k, end), prev_kv })
        }
    }
}

fn txn_request(model: &Model, spec: &TxnSpec) -> TxnRequest {
    let branch = |ops: &[TxnOp]| -> Vec<RequestOp> {
        ops.iter()
            .map(|op| match op {
                TxnOp::Leaf(l) => leaf_request(model, l),
                TxnOp::Txn(t) => RequestOp::Txn(txn_request(model, t)),
            })
            .collect()
    };
    TxnRequest {
        compare: spec
            .compares
            .iter()
            .map(|&(key, end, result, n, target)| {
                let k = KEYS[key as usize];
                Compare {
                    result: [
                        CompareResult::Equal,
                        CompareResult::Greater,
                        CompareResult::Less,
                        CompareResult::NotEqual,
                    ][result as usize],
                    target: match target {
                        0 => CompareTarget::Version(n),
                        1 => CompareTarget::CreateRevision(model.rev - n),
                        2 => CompareTarget::ModRevision(model.rev - n),
                        3 => CompareTarget::Value(vec![b'v', n.max(0) as u8]),
                        _ => CompareTarget::Lease(n),
                    },
                    key: k.to_vec(),
                    range_end: if end < 4 { vec![] } else { range_end(k, end) },
                }
            })
            .collect(),
        success: branch(&spec.success),
        failure: branch(&spec.failure),
    }
}

// ---------------------------------------------------------------- the harness

fn new_store() -> KvStore<MemStorage> {
    KvStore::open(KvConfig::default(), MemStorage::new()).expect("empty storage opens")
}

/// Applies through the encoded state-machine interface, as the node would.
fn apply(store: &mut KvStore<MemStorage>, index: u64, command: &KvCommand) -> KvResult {
    let bytes = command.encode();
    let verdict = store.validate(&bytes);
    let result = decode_reply(&store.apply(index, &Payload::Command(bytes))).expect("results decode");
    if let Err(why) = verdict {
        assert_eq!(result.as_ref().err().map(ToString::to_string), Some(why), "validate and apply disagree");
    }
    result
}

fn query(store: &KvStore<MemStorage>, q: &KvQuery) -> KvResult {
    decode_reply(&store.query(&q.encode())).expect("results decode")
}

/// Compares every readable revision of the store with the model.
fn same_state(store: &KvStore<MemStorage>, model: &Model) {
    assert_eq!(store.current_revision(), model.rev);
    assert_eq!(store.compact_revision(), model.compacted);
    for rev in model.compacted.max(1)..=model.rev {
        let all = RangeRequest { key: vec![0], range_end: vec![0], revision: rev, ..RangeRequest::default() };
        assert_eq!(store.range(&all), model.range(&all), "state at revision {rev}");
    }
    let leases = query(store, &KvQuery::LeaseLeases);
    let expected: Vec<i64> = model.leases.keys().copied().collect();
    assert_eq!(
        leases,
        Ok(KvResponse::LeaseLeases(LeaseLeasesResponse {
            header: ResponseHeader { revision: model.rev },
            leases: expected
        }))
    );
    for (&id, &ttl) in &model.leases {
        let keys: Vec<Vec<u8>> =
            model.all_at(&[0], &[0], model.rev).into_iter().filter(|kv| kv.lease == id).map(|kv| kv.key).collect();
        let got = query(store, &KvQuery::LeaseTimeToLive(LeaseTimeToLiveRequest { id, keys: true }));
        let want =
            LeaseTimeToLiveResponse { header: ResponseHeader { revision: model.rev }, id, ttl, granted_ttl: ttl, keys };
        assert_eq!(got, Ok(KvResponse::LeaseTimeToLive(want)));
    }
}

/// Turns a generated op into a command or query against the model's state.
enum Step {
    Write(KvCommand),
    Read(KvQuery),
    Sync,
}

fn step(model: &Model, op: &Op) -> Step {
    match op {
        Op::Leaf(l) => match leaf_request(model, l) {
            RequestOp::Range(r) => Step::Read(KvQuery::Range(r)),
            RequestOp::Put(p) => Step::Write(KvCommand::Put(p)),
            RequestOp::DeleteRange(d) => Step::Write(KvCommand::DeleteRange(d)),
            RequestOp::Txn(_) => unreachable!(),
        },
        Op::Txn(spec) => {
            let t = txn_request(model, spec);
            if t.writes() || spec.compares.len() == 1 {
                Step::Write(KvCommand::Txn(t))
            } else {
                Step::Read(KvQuery::Txn(t))
            }
        }
        Op::Compact { back } => Step::Write(KvCommand::Compaction(CompactionRequest {
            revision: match back {
                0 => model.rev + 1,
                1 => model.compacted,
                b => model.rev - i64::from(*b) + 2,
            },
            physical: false,
        })),
        Op::Grant { id, ttl } => {
            Step::Write(KvCommand::LeaseGrant(LeaseGrantRequest { ttl: *ttl, id: i64::from(*id) }))
        }
        Op::Revoke { id } => Step::Write(KvCommand::LeaseRevoke(LeaseRevokeRequest { id: i64::from(*id) })),
        Op::Sync => Step::Sync,
    }
}

fn read_model(model: &Model, q: &KvQuery) -> KvResult {
    match q {
        KvQuery::Range(r) => model.range(r).map(KvResponse::Range),
        KvQuery::Txn(t) => {
            let mut scratch = model.clone();
            scratch.txn(t).map(KvResponse::Txn)
        }
        _ => unreachable!(),
    }
}

fn granted_id(result: &KvResult) -> Option<i64> {
    match result {
        Ok(KvResponse::LeaseGrant(g)) => Some(g.id),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Long random histories give identical answers, revisions and errors, and
    /// two members applying the same log end with byte-identical snapshots.
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..160)) {
        let mut store = new_store();
        let mut twin = new_store();
        let mut model = Model::new();
        let mut index = 0;
        for op in &ops {
            match step(&model, op) {
                Step::Write(command) => {
                    index += 1;
                    let got = apply(&mut store, index, &command);
                    let twin_got = apply(&mut twin, index, &command);
                    prop_assert_eq!(&got, &twin_got);
                    let want = model.apply(&command, granted_id(&got));
                    prop_assert_eq!(got, want, "command {:?}", command);
                }
                Step::Read(q) => {
                    prop_assert_eq!(query(&store, &q), read_model(&model, &q), "query {:?}", q);
                }
                Step::Sync => {
                    index += 1;
                    store.apply(index, &Payload::Noop);
                    twin.apply(index, &Payload::Noop);
                }
            }
        }
        same_state(&store, &model);
        let snapshot = store.snapshot();
        prop_assert_eq!(&snapshot, &twin.snapshot());
        let mut restored = new_store();
        restored.restore(&snapshot).expect("restores");
        prop_assert_eq!(restored.snapshot(), snapshot);
        same_state(&restored, &model);
    }

    /// Random ops with syncs at random points, then a crash: the recovered
    /// store is the model as of the last sync, and replaying the whole log
    /// (skipping what storage already holds) reaches the final model.
    #[test]
    fn crash_recovery_matches_synced_model(ops in proptest::collection::vec(op(), 1..120)) {
        let mut store = new_store();
        let mut model = Model::new();
        let mut synced = (Model::new(), 0u64);
        let mut log: Vec<KvCommand> = vec![];
        for op in &ops {
            match step(&model, op) {
                Step::Write(command) => {
                    log.push(command.clone());
                    let got = apply(&mut store, log.len() as u64, &command);
                    let want = model.apply(&command, granted_id(&got));
                    prop_assert_eq!(got, want);
                }
                Step::Read(_) => {}
                Step::Sync => {
                    store.storage_mut().sync();
                    synced = (model.clone(), log.len() as u64);
                }
            }
        }
        let mut storage = store.into_storage();
        storage.crash();
        let mut recovered = KvStore::open(KvConfig::default(), storage).expect("recovers");
        prop_assert_eq!(recovered.applied_index(), synced.1);
        same_state(&recovered, &synced.0);
        for (i, command) in log.iter().enumerate() {
            let index = i as u64 + 1;
            let got = recovered.execute(index, command);
            if index <= synced.1 {
                prop_assert_eq!(got, Err(KvError::AlreadyApplied));
            }
        }
        same_state(&recovered, &model);
    }
}

/// The events a watcher of `[key, end)` from `start` must see, from the
/// model's history: every change in (revision, sub-revision) order.
fn expected_events(
    model: &Model,
    key: &[u8],
    end: &[u8],
    start: i64,
    prev: bool,
    no_put: bool,
    no_delete: bool,
) -> Vec<Event> {
    let mut all: Vec<(i64, i64, Event)> = vec![];
    for (k, changes) in &model.history {
        if !in_range(k, key, end) {
            continue;
        }
        for (i, (main, sub, kv)) in changes.iter().enumerate() {
            if *main < start {
                continue;
            }
            let prev_kv = if prev && i > 0 { changes[i - 1].2.clone() } else { None };
            let event = match kv {
                Some(kv) => Event { kind: EventKind::Put, kv: kv.clone(), prev_kv },
                None => Event {
                    kind: EventKind::Delete,
                    kv: KeyValue { key: k.clone(), mod_revision: *main, ..KeyValue::default() },
                    prev_kv,
                },
            };
            if (event.kind == EventKind::Put && no_put) || (event.kind == EventKind::Delete && no_delete) {
                continue;
            }
            all.push((*main, *sub, event));
        }
    }
    all.sort_by_key(|(main, sub, _)| (*main, *sub));
    all.into_iter().map(|(_, _, e)| e).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Watchers with tiny buffers, created at random revisions and polled at
    /// random points, receive exactly the model's events, in order, once.
    #[test]
    fn watchers_see_every_event_once(ops in proptest::collection::vec((op(), any::<u8>(), any::<u8>()), 1..100)) {
        let watch = WatchConfig { buffer_events_max: 3, buffer_responses_max: 2, watchers_max: 16, catch_up_changes_max: 4 };
        let mut store = KvStore::open(KvConfig { watch, ..KvConfig::default() }, MemStorage::new()).expect("opens");
        let mut model = Model::new();
        let mut index = 0;
        type Spec = (Vec<u8>, Vec<u8>, i64, bool, bool, bool);
        let mut watchers: BTreeMap<WatchId, (Spec, Vec<Event>)> = BTreeMap::new();
        let drain = |store: &mut KvStore<MemStorage>, watchers: &mut BTreeMap<WatchId, (Spec, Vec<Event>)>, n: usize| {
            for _ in 0..n {
                let Some(response) = store.watch_poll() else { break };
                assert!(!response.canceled, "no compaction here: {response:?}");
                let (_, seen) = watchers.get_mut(&response.watch_id).expect("known watcher");
                if !response.events.is_empty() {
                    // Live events come one revision per response; caught-up
                    // ones batched under the then current revision (etcd's way).
                    assert!(response.events.iter().all(|e| e.kv.mod_revision <= response.header.revision));
                }
                seen.extend(response.events);
            }
        };
        for (op, action, param) in &ops {
            if matches!(op, Op::Compact { .. }) {
                continue;
            }
            match step(&model, op) {
                Step::Write(command) => {
                    index += 1;
                    let got = apply(&mut store, index, &command);
                    let want = model.apply(&command, granted_id(&got));
                    prop_assert_eq!(got, want);
                }
                Step::Read(_) | Step::Sync => {}
            }
            match action % 4 {
                0 if watchers.len() < 8 => {
                    let k = KEYS[(*param % 6) as usize];
                    let end = range_end(k, param / 6);
                    let start = match param % 3 { 0 => 0, 1 => (model.rev - i64::from(param % 5)).max(1), _ => model.rev + 2 };
                    let (prev, no_put, no_delete) = (action & 4 != 0, action & 8 != 0 && action & 16 == 0, action & 16 != 0 && action & 8 == 0);
                    let req = WatchCreateRequest { key: k.to_vec(), range_end: end.clone(), start_revision: start, prev_kv: prev, no_put, no_delete, ..WatchCreateRequest::default() };
                    let id = store.watch_create(req).expect("created");
                    let from = if start == 0 { model.rev + 1 } else { start };
                    watchers.insert(id, ((k.to_vec(), end, from, prev, no_put, no_delete), vec![]));
                }
                1 => drain(&mut store, &mut watchers, usize::from(*param % 8)),
                _ => {}
            }
        }
        drain(&mut store, &mut watchers, 100_000);
        prop_assert!(store.watch_poll().is_none());
        for (id, ((key, end, from, prev, no_put, no_delete), seen)) in &watchers {
            prop_assert_eq!(store.watches().is_synced(*id), Some(true));
            let want = expected_events(&model, key, end, *from, *prev, *no_put, *no_delete);
            prop_assert_eq!(seen, &want, "watcher {}", id);
        }
    }
}
