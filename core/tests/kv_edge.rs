//! etcd edge cases of the KV state machine, one test each.

use lockstep_core::kv::*;
use lockstep_core::StateMachine;

fn store() -> KvStore<MemStorage> {
    KvStore::open(KvConfig::default(), MemStorage::new()).expect("opens")
}

struct Log {
    store: KvStore<MemStorage>,
    index: u64,
}

impl Log {
    fn new() -> Log {
        Log { store: store(), index: 0 }
    }

    fn run(&mut self, command: KvCommand) -> KvResult {
        self.index += 1;
        self.store.execute(self.index, &command)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> i64 {
        let put = PutRequest { key: key.to_vec(), value: value.to_vec(), ..PutRequest::default() };
        match self.run(KvCommand::Put(put)) {
            Ok(KvResponse::Put(p)) => p.header.revision,
            other => panic!("put failed: {other:?}"),
        }
    }

    fn keys(&self, key: &[u8], range_end: &[u8], revision: i64) -> Result<Vec<Vec<u8>>, KvError> {
        let r = RangeRequest { key: key.to_vec(), range_end: range_end.to_vec(), revision, ..RangeRequest::default() };
        self.store.range(&r).map(|r| r.kvs.into_iter().map(|kv| kv.key).collect())
    }
}

fn keys(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|k| k.to_vec()).collect()
}

#[test]
fn empty_store_is_at_revision_one_and_first_put_makes_two() {
    let mut log = Log::new();
    assert_eq!(log.store.current_revision(), 1);
    assert_eq!(log.put(b"foo", b"bar"), 2);
    let r = log.store.range(&RangeRequest { key: b"foo".to_vec(), ..RangeRequest::default() }).expect("reads");
    assert_eq!(
        r.kvs[0],
        KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"bar".to_vec(),
            lease: 0
        }
    );
}

#[test]
fn range_end_zero_means_every_key_from_key() {
    let mut log = Log::new();
    for k in [&b"a"[..], b"b", b"c", b"\xff"] {
        log.put(k, b"v");
    }
    assert_eq!(log.keys(b"b", b"\0", 0), Ok(keys(&[b"b", b"c", b"\xff"])));
    assert_eq!(log.keys(b"\0", b"\0", 0), Ok(keys(&[b"a", b"b", b"c", b"\xff"])));
    assert_eq!(log.keys(b"c", b"a", 0), Ok(vec![]), "an inverted range is empty");
}

#[test]
fn prefix_of_0xff_reaches_the_end_of_the_key_space() {
    let mut log = Log::new();
    for k in [&b"\xfe"[..], b"\xff", b"\xff\x00", b"\xff\xff\x01"] {
        log.put(k, b"v");
    }
    // etcd's GetPrefixRangeEnd("\xff") is "\0": no byte can be incremented.
    assert_eq!(log.keys(b"\xff", b"\0", 0), Ok(keys(&[b"\xff", b"\xff\x00", b"\xff\xff\x01"])));
    assert_eq!(log.keys(b"\xfe", b"\xff", 0), Ok(keys(&[b"\xfe"])));
}

#[test]
fn compaction_keeps_reads_at_and_above_the_compacted_revision() {
    let mut log = Log::new();
    log.put(b"a", b"1"); // 2
    log.put(b"a", b"2"); // 3
    log.put(b"b", b"1"); // 4
    log.run(KvCommand::DeleteRange(DeleteRangeRequest { key: b"b".to_vec(), ..DeleteRangeRequest::default() }))
        .expect("deletes"); // 5
    log.put(b"a", b"3"); // 6
    let compact = |rev| KvCommand::Compaction(CompactionRequest { revision: rev, physical: true });
    assert_eq!(log.run(compact(7)), Err(KvError::FutureRevision));
    let before = log.store.mvcc().index().entries();
    assert!(matches!(log.run(compact(5)), Ok(KvResponse::Compaction(c)) if c.header.revision == 6));
    assert_eq!(log.store.mvcc().index().entries(), before - 1, "a@2 is superseded and removed");
    assert_eq!(log.keys(b"a", b"\0", 5), Ok(keys(&[b"a"])));
    assert_eq!(log.keys(b"a", b"\0", 4), Err(KvError::Compacted));
    assert_eq!(log.run(compact(5)), Err(KvError::Compacted));
    assert_eq!(KvError::Compacted.to_string(), "etcdserver: mvcc: required revision has been compacted");
    let r =
        log.store.range(&RangeRequest { key: b"a".to_vec(), revision: 5, ..RangeRequest::default() }).expect("reads");
    assert_eq!(r.kvs[0].value, b"2".to_vec());
    assert_eq!(r.header.revision, 6, "the header carries the current revision");
}

#[test]
fn txn_rejects_duplicate_keys_and_too_many_ops() {
    let mut log = Log::new();
    let put = |k: &[u8]| RequestOp::Put(PutRequest { key: k.to_vec(), ..PutRequest::default() });
    let del = |k: &[u8], e: &[u8]| {
        RequestOp::DeleteRange(DeleteRangeRequest { key: k.to_vec(), range_end: e.to_vec(), prev_kv: false })
    };
    let txn = |success: Vec<RequestOp>| KvCommand::Txn(TxnRequest { compare: vec![], success, failure: vec![] });
    assert_eq!(log.run(txn(vec![put(b"a"), put(b"a")])), Err(KvError::DuplicateKey));
    assert_eq!(log.run(txn(vec![put(b"b"), del(b"a", b"c")])), Err(KvError::DuplicateKey));
    assert_eq!(log.run(txn(vec![put(b"b"), del(b"a", b"\0")])), Err(KvError::DuplicateKey));
    assert!(log.run(txn(vec![del(b"a", b"c"), del(b"b", b"d")])).is_ok(), "overlapping deletes are fine");
    let nested = TxnRequest { compare: vec![], success: vec![put(b"a")], failure: vec![put(b"a")] };
    assert!(log.run(txn(vec![RequestOp::Txn(nested.clone())])).is_ok(), "then and else exclude each other");
    assert_eq!(log.run(txn(vec![RequestOp::Txn(nested), put(b"a")])), Err(KvError::DuplicateKey));
    let many: Vec<RequestOp> = (0..129u32).map(|i| put(&i.to_be_bytes())).collect();
    assert_eq!(log.run(txn(many.clone())), Err(KvError::TooManyOps));
    assert_eq!(KvError::TooManyOps.to_string(), "etcdserver: too many operations in txn request");
    assert!(log.run(txn(many[..128].to_vec())).is_ok());
    assert_eq!(KvError::DuplicateKey.to_string(), "etcdserver: duplicate key given in txn request");
}

#[test]
fn txn_compares_and_sub_revisions() {
    let mut log = Log::new();
    log.put(b"k", b"v1"); // 2
    let cmp = |target| Compare { result: CompareResult::Equal, target, key: b"k".to_vec(), range_end: vec![] };
    let t = TxnRequest {
        compare: vec![
            cmp(CompareTarget::Value(b"v1".to_vec())),
            cmp(CompareTarget::Version(1)),
            cmp(CompareTarget::ModRevision(2)),
        ],
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"k".to_vec(),
                value: b"v2".to_vec(),
                prev_kv: true,
                ..PutRequest::default()
            }),
            RequestOp::Put(PutRequest { key: b"m".to_vec(), value: b"x".to_vec(), ..PutRequest::default() }),
            RequestOp::Range(RangeRequest { key: b"k".to_vec(), range_end: b"\0".to_vec(), ..RangeRequest::default() }),
        ],
        failure: vec![],
    };
    let Ok(KvResponse::Txn(r)) = log.run(KvCommand::Txn(t)) else { panic!("txn failed") };
    assert!(r.succeeded);
    assert_eq!(r.header.revision, 3);
    let ResponseOp::Range(range) = &r.responses[2] else { panic!("range answer") };
    assert_eq!(range.kvs.len(), 2, "reads in a txn see its earlier writes");
    assert_eq!(range.kvs[0].version, 2);
    // A value compare on a missing key is false, whatever the relation.
    let missing = Compare {
        result: CompareResult::NotEqual,
        target: CompareTarget::Value(b"x".to_vec()),
        key: b"zz".to_vec(),
        range_end: vec![],
    };
    let t = TxnRequest { compare: vec![missing], success: vec![], failure: vec![] };
    assert!(matches!(log.run(KvCommand::Txn(t)), Ok(KvResponse::Txn(r)) if !r.succeeded && r.header.revision == 3));
}

#[test]
fn put_errors_are_etcds() {
    let mut log = Log::new();
    let run = |log: &mut Log, p: PutRequest| log.run(KvCommand::Put(p));
    assert_eq!(run(&mut log, PutRequest::default()), Err(KvError::EmptyKey));
    assert_eq!(KvError::EmptyKey.to_string(), "etcdserver: key is not provided");
    let k = b"k".to_vec();
    assert_eq!(
        run(&mut log, PutRequest { key: k.clone(), ignore_value: true, ..PutRequest::default() }),
        Err(KvError::KeyNotFound)
    );
    assert_eq!(
        run(&mut log, PutRequest { key: k.clone(), value: b"v".to_vec(), ignore_value: true, ..PutRequest::default() }),
        Err(KvError::ValueProvided)
    );
    assert_eq!(
        run(&mut log, PutRequest { key: k.clone(), lease: 5, ignore_lease: true, ..PutRequest::default() }),
        Err(KvError::LeaseProvided)
    );
    assert_eq!(
        run(&mut log, PutRequest { key: k.clone(), lease: 5, ..PutRequest::default() }),
        Err(KvError::LeaseNotFound)
    );
    assert_eq!(KvError::LeaseNotFound.to_string(), "etcdserver: requested lease not found");
    assert_eq!(log.store.current_revision(), 1, "failed writes create no revision");
    let big = KvCommand::Put(PutRequest { key: k, value: vec![0; 2 << 20], ..PutRequest::default() }).encode();
    assert_eq!(log.store.validate(&big), Err("etcdserver: request is too large".to_string()));
}

#[test]
fn lease_revoke_deletes_its_keys_in_one_revision() {
    let mut log = Log::new();
    let grant = log.run(KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 1, id: 7 }));
    assert!(matches!(grant, Ok(KvResponse::LeaseGrant(g)) if g.id == 7 && g.ttl == 2), "TTL raised to the minimum");
    assert_eq!(log.run(KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 7 })), Err(KvError::LeaseExists));
    for k in [&b"c"[..], b"a", b"b"] {
        log.run(KvCommand::Put(PutRequest { key: k.to_vec(), lease: 7, ..PutRequest::default() })).expect("puts");
    }
    log.put(b"a", b"detached"); // moves a off the lease: revision 5
    let watch = log.store.watch_create(WatchCreateRequest {
        key: b"\0".to_vec(),
        range_end: b"\0".to_vec(),
        ..WatchCreateRequest::default()
    });
    let id = watch.expect("created");
    assert!(log.store.watch_poll().is_some_and(|r| r.created));
    assert!(
        matches!(log.run(KvCommand::LeaseRevoke(LeaseRevokeRequest { id: 7 })), Ok(KvResponse::LeaseRevoke(r)) if r.header.revision == 6)
    );
    assert_eq!(log.keys(b"\0", b"\0", 0), Ok(keys(&[b"a"])));
    let events = log.store.watch_poll().expect("events");
    assert_eq!(events.watch_id, id);
    assert_eq!(events.header.revision, 6);
    let deleted: Vec<(EventKind, Vec<u8>, i64)> =
        events.events.into_iter().map(|e| (e.kind, e.kv.key, e.kv.mod_revision)).collect();
    assert_eq!(deleted, vec![(EventKind::Delete, b"b".to_vec(), 6), (EventKind::Delete, b"c".to_vec(), 6)]);
    assert_eq!(log.run(KvCommand::LeaseRevoke(LeaseRevokeRequest { id: 7 })), Err(KvError::LeaseNotFound));
    // Generated ids are deterministic, positive and distinct.
    let mut other = Log::new();
    let a = log.run(KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 0 }));
    other.index = log.index - 1;
    let b = other.run(KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 0 }));
    assert_eq!(
        a,
        b.map(|r| match r {
            KvResponse::LeaseGrant(g) =>
                KvResponse::LeaseGrant(LeaseGrantResponse { header: ResponseHeader { revision: 6 }, ..g }),
            r => r,
        })
    );
    assert!(matches!(a, Ok(KvResponse::LeaseGrant(g)) if g.id > 0));
}

#[test]
fn watch_from_a_compacted_revision_is_canceled_with_the_compact_revision() {
    let mut log = Log::new();
    for i in 0..5u8 {
        log.put(b"k", &[i]); // 2..=6
    }
    log.run(KvCommand::Compaction(CompactionRequest { revision: 5, physical: false })).expect("compacts");
    let id = log
        .store
        .watch_create(WatchCreateRequest { key: b"k".to_vec(), start_revision: 3, ..WatchCreateRequest::default() })
        .expect("created");
    assert!(log.store.watch_poll().is_some_and(|r| r.created && r.watch_id == id));
    let canceled = log.store.watch_poll().expect("canceled");
    assert!(canceled.canceled);
    assert_eq!(canceled.compact_revision, 5);
    assert_eq!(canceled.cancel_reason, "etcdserver: mvcc: required revision has been compacted");
    assert_eq!(log.store.watches().len(), 0);
    // From the compaction revision itself the history is complete.
    let id = log
        .store
        .watch_create(WatchCreateRequest {
            key: b"k".to_vec(),
            start_revision: 5,
            prev_kv: true,
            ..WatchCreateRequest::default()
        })
        .expect("created");
    assert!(log.store.watch_take(id).is_some_and(|r| r.created));
    // Caught-up history comes batched, like etcd's: one response, headed
    // with the current revision, carrying the events of revisions 5 and 6.
    let responses: Vec<_> = std::iter::from_fn(|| log.store.watch_take(id)).collect();
    assert_eq!(responses.iter().map(|r| r.header.revision).collect::<Vec<_>>(), vec![6]);
    let revs: Vec<i64> = responses[0].events.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revs, vec![5, 6]);
}

#[test]
fn slow_watcher_catches_up_from_storage_without_blocking_writes() {
    let watch = WatchConfig { buffer_events_max: 2, buffer_responses_max: 2, watchers_max: 4, catch_up_changes_max: 3 };
    let mut log = Log {
        store: KvStore::open(KvConfig { watch, ..KvConfig::default() }, MemStorage::new()).expect("opens"),
        index: 0,
    };
    let id = log
        .store
        .watch_create(WatchCreateRequest {
            key: b"k".to_vec(),
            range_end: b"\0".to_vec(),
            prev_kv: true,
            ..WatchCreateRequest::default()
        })
        .expect("created");
    for i in 0..20u8 {
        log.put(&[b'k', i % 3], &[i]);
    }
    assert_eq!(log.store.watches().is_synced(id), Some(false), "the buffer overflowed");
    assert!(log.store.watches().buffered(id) <= 2);
    let mut revisions = vec![];
    while let Some(r) = log.store.watch_poll() {
        assert!(log.store.watches().buffered(id) <= 3);
        for e in r.events {
            assert_eq!(e.kind, EventKind::Put);
            if e.kv.version > 1 {
                assert_eq!(e.prev_kv.expect("prev").version, e.kv.version - 1);
            }
            revisions.push(e.kv.mod_revision);
        }
    }
    assert_eq!(revisions, (2..=21).collect::<Vec<i64>>(), "every revision exactly once, in order");
    assert_eq!(log.store.watches().is_synced(id), Some(true));
    log.put(b"kz", b"live");
    assert_eq!(log.store.watch_poll().map(|r| r.header.revision), Some(22));
    log.store.watch_progress(true);
    assert_eq!(log.store.watch_poll().map(|r| (r.events.len(), r.header.revision)), Some((0, 22)));
    assert!(log.store.watch_cancel(id).is_some_and(|r| r.canceled));
}

#[test]
fn watch_filters_and_future_start() {
    let mut log = Log::new();
    let no_put = log
        .store
        .watch_create(WatchCreateRequest { key: b"a".to_vec(), no_put: true, ..WatchCreateRequest::default() })
        .expect("created");
    let future = log
        .store
        .watch_create(WatchCreateRequest { key: b"a".to_vec(), start_revision: 4, ..WatchCreateRequest::default() })
        .expect("created");
    assert_eq!(
        log.store
            .watch_create(WatchCreateRequest { key: b"a".to_vec(), watch_id: future, ..WatchCreateRequest::default() })
            .map_err(|r| r.cancel_reason),
        Err("mvcc: duplicate watch ID provided on the WatchStream".to_string())
    );
    log.put(b"a", b"1"); // 2
    log.put(b"a", b"2"); // 3
    log.run(KvCommand::DeleteRange(DeleteRangeRequest { key: b"a".to_vec(), ..DeleteRangeRequest::default() }))
        .expect("deletes"); // 4
    let drain = |log: &mut Log, id| -> Vec<(EventKind, i64)> {
        std::iter::from_fn(|| log.store.watch_take(id))
            .flat_map(|r| r.events)
            .map(|e| (e.kind, e.kv.mod_revision))
            .collect()
    };
    assert_eq!(drain(&mut log, no_put), vec![(EventKind::Delete, 4)]);
    assert_eq!(drain(&mut log, future), vec![(EventKind::Delete, 4)]);
}

#[test]
fn snapshot_restores_into_a_fresh_member() {
    let mut log = Log::new();
    log.run(KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 30, id: 1 })).expect("grants");
    log.run(KvCommand::Put(PutRequest { key: b"x".to_vec(), lease: 1, ..PutRequest::default() })).expect("puts");
    log.put(b"y", b"1");
    let snapshot = log.store.snapshot();
    let mut fresh = store();
    fresh.restore(&snapshot).expect("restores");
    assert_eq!(fresh.applied_index(), log.store.applied_index());
    assert_eq!(fresh.snapshot(), snapshot);
    assert_eq!(fresh.lease_ttls(), vec![(1, 30)]);
    assert!(fresh.restore(b"LKKV").is_err());
    let mut corrupt = snapshot.clone();
    let last = corrupt.len() - 20;
    corrupt[last] ^= 0xff;
    let _ = fresh.restore(&corrupt);
}

#[test]
fn live_events_carry_the_previous_value_only_to_watchers_that_ask() {
    // A put learns the previous version from the index and reads the previous
    // value from storage only for a synced watcher with prev_kv: both kinds of
    // watcher must still see exactly etcd's events.
    let mut log = Log::new();
    log.put(b"a", b"one"); // 2
    log.put(b"b", b"uno"); // 3
    let create = |prev_kv| WatchCreateRequest {
        key: b"a".to_vec(),
        range_end: b"c".to_vec(),
        prev_kv,
        ..WatchCreateRequest::default()
    };
    let with_prev = log.store.watch_create(create(true)).expect("created");
    let without = log.store.watch_create(create(false)).expect("created");
    assert!(log.store.watch_take(with_prev).is_some_and(|r| r.created));
    assert!(log.store.watch_take(without).is_some_and(|r| r.created));
    log.put(b"a", b"two"); // 4
    log.put(b"b", b"dos"); // 5
    log.put(b"zz", b"outside"); // 6: no watcher's range
    let mut events = |id| -> Vec<Event> {
        std::iter::from_fn(|| log.store.watch_take(id)).flat_map(|r| r.events).collect::<Vec<_>>()
    };
    let seen = events(with_prev);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].kv.value, b"two");
    assert_eq!((seen[0].kv.create_revision, seen[0].kv.version, seen[0].kv.mod_revision), (2, 2, 4));
    let prev = seen[0].prev_kv.as_ref().expect("prev_kv asked for");
    assert_eq!((prev.value.as_slice(), prev.mod_revision, prev.version), (&b"one"[..], 2, 1));
    assert_eq!(seen[1].prev_kv.as_ref().map(|p| p.value.clone()), Some(b"uno".to_vec()));
    let plain = events(without);
    assert_eq!(plain.len(), 2);
    assert!(plain.iter().all(|e| e.prev_kv.is_none()));
    assert_eq!((plain[1].kv.create_revision, plain[1].kv.version), (3, 2));
}
