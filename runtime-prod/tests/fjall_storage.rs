//! `FjallStorage` against core's `MemStorage`: the KV state machine over random
//! operations gives the same answers and byte-identical snapshots on both, and
//! the state survives closing and reopening the database.

use lockstep_core::kv::{
    CompactionRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KvCommand, KvConfig, KvQuery,
    KvStore, LeaseGrantRequest, LeaseRevokeRequest, MemStorage, PutRequest, RangeRequest, RequestOp, Storage,
    TxnRequest, WriteBatch,
};
use lockstep_core::{Payload, StateMachine};
use lockstep_runtime::FjallStorage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn key(rng: &mut ChaCha8Rng) -> Vec<u8> {
    format!("k{:02}", rng.random_range(0..40u32)).into_bytes()
}

fn value(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let len = rng.random_range(0..64usize);
    (0..len).map(|_| rng.random::<u8>()).collect()
}

fn range_end(rng: &mut ChaCha8Rng, start: &[u8]) -> Vec<u8> {
    match rng.random_range(0..4u32) {
        0 => Vec::new(),
        1 => vec![0],
        _ => {
            let mut end = start.to_vec();
            *end.last_mut().expect("keys are not empty") += rng.random_range(1..5u8);
            end
        }
    }
}

/// A random command over a small key space; `rev` is the store's revision.
fn command(rng: &mut ChaCha8Rng, rev: i64, leases: &[i64]) -> KvCommand {
    let lease = |rng: &mut ChaCha8Rng| {
        if leases.is_empty() || rng.random_bool(0.7) {
            0
        } else {
            leases[rng.random_range(0..leases.len())]
        }
    };
    match rng.random_range(0..100u32) {
        0..=44 => KvCommand::Put(PutRequest {
            key: key(rng),
            value: value(rng),
            lease: lease(rng),
            prev_kv: rng.random_bool(0.3),
            ..PutRequest::default()
        }),
        45..=59 => {
            let k = key(rng);
            KvCommand::DeleteRange(DeleteRangeRequest {
                range_end: range_end(rng, &k),
                key: k,
                prev_kv: rng.random_bool(0.5),
            })
        }
        60..=79 => {
            let k = key(rng);
            let compare = Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Version(rng.random_range(0..3)),
                key: k.clone(),
                range_end: Vec::new(),
            };
            let put = RequestOp::Put(PutRequest { key: key(rng), value: value(rng), ..PutRequest::default() });
            let delete =
                RequestOp::DeleteRange(DeleteRangeRequest { key: k.clone(), range_end: Vec::new(), prev_kv: false });
            let read = RequestOp::Range(RangeRequest { key: k, ..RangeRequest::default() });
            KvCommand::Txn(TxnRequest { compare: vec![compare], success: vec![put, read], failure: vec![delete] })
        }
        80..=86 => {
            KvCommand::Compaction(CompactionRequest { revision: rng.random_range(1..=rev.max(1) + 1), physical: true })
        }
        87..=94 => KvCommand::LeaseGrant(LeaseGrantRequest { ttl: rng.random_range(5..100), id: 0 }),
        _ => KvCommand::LeaseRevoke(LeaseRevokeRequest {
            id: if leases.is_empty() { 1 } else { leases[rng.random_range(0..leases.len())] },
        }),
    }
}

fn leases_of<S: Storage>(store: &KvStore<S>) -> Vec<i64> {
    store.lease_ttls().into_iter().map(|(id, _)| id).collect()
}

fn whole_range(rev: i64) -> Vec<u8> {
    KvQuery::Range(RangeRequest { key: vec![0], range_end: vec![0], revision: rev, ..RangeRequest::default() }).encode()
}

#[test]
fn the_kv_store_on_fjall_matches_the_one_in_memory_byte_for_byte_and_survives_reopening() {
    for seed in 0..4u64 {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut fjall = KvStore::open(KvConfig::default(), FjallStorage::open(temp.path()).expect("opens"))
            .expect("empty storage opens");
        let mut mem = KvStore::open(KvConfig::default(), MemStorage::new()).expect("empty storage opens");
        for index in 1..=600u64 {
            let command = command(&mut rng, mem.current_revision(), &leases_of(&mem));
            let payload = Payload::Command(command.encode());
            assert_eq!(
                fjall.apply(index, &payload),
                mem.apply(index, &payload),
                "seed {seed} index {index}: {command:?}"
            );
            if index % 50 == 0 {
                assert_eq!(fjall.snapshot(), mem.snapshot(), "seed {seed} index {index}");
                let rev = mem.current_revision();
                for read in [whole_range(0), whole_range(rev - 1)] {
                    assert_eq!(fjall.query(&read), mem.query(&read), "seed {seed} index {index}");
                }
            }
            if rng.random_bool(0.05) {
                fjall.storage_mut().sync();
            } else if rng.random_bool(0.5) {
                // The end of a run of entries (some runs are several entries).
                fjall.applied_run();
            }
        }
        let snapshot = mem.snapshot();
        assert_eq!(fjall.snapshot(), snapshot);
        assert_eq!(fjall.storage().applied_index(), 600);

        // Close (without a final sync: a clean close keeps every written batch) and reopen.
        drop(fjall);
        let reopened = KvStore::open(KvConfig::default(), FjallStorage::open(temp.path()).expect("reopens"))
            .expect("the stored state opens");
        assert_eq!(reopened.applied_index(), 600);
        assert_eq!(reopened.snapshot(), snapshot, "seed {seed}: state after reopening");
    }
}

#[test]
fn storage_scans_and_the_applied_index_match_mem_storage() {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut fjall = FjallStorage::open(temp.path()).expect("opens");
    let mut mem = MemStorage::new();
    assert_eq!(fjall.applied_index(), 0);
    for index in 1..=300u64 {
        let mut batch = WriteBatch::new(index);
        for _ in 0..rng.random_range(0..6) {
            if rng.random_bool(0.7) {
                batch.put(key(&mut rng), value(&mut rng));
            } else {
                batch.delete(key(&mut rng));
            }
        }
        fjall.write(batch.clone());
        mem.write(batch);
        if rng.random_bool(0.3) {
            // Written out; otherwise reads merge the pending changes.
            fjall.flush();
        }
        let start = key(&mut rng);
        let end = if rng.random_bool(0.3) { None } else { Some(key(&mut rng)) };
        let limit = rng.random_range(1..50usize);
        let collect = |s: &dyn Storage| {
            let mut seen = Vec::new();
            s.scan(&start, end.as_deref(), &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                seen.len() < limit
            });
            seen
        };
        assert_eq!(collect(&fjall), collect(&mem), "index {index}");
        let probe = key(&mut rng);
        assert_eq!(fjall.get(&probe), mem.get(&probe));
    }
    fjall.sync();
    drop(fjall);
    let fjall = FjallStorage::open(temp.path()).expect("reopens");
    assert_eq!(fjall.applied_index(), 300);
    let mut all = Vec::new();
    fjall.scan(b"", None, &mut |k, v| {
        all.push((k.to_vec(), v.to_vec()));
        true
    });
    let mut expected = Vec::new();
    mem.scan(b"", None, &mut |k, v| {
        expected.push((k.to_vec(), v.to_vec()));
        true
    });
    assert_eq!(all, expected);
}
