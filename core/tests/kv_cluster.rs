//! The etcd MVCC state machine inside a replicated group: writes through the log,
//! linearizable reads on followers, and lease expiry decided by the leader's clock
//! and applied through the log, across a leader change.

mod common;

use common::{default_config, Cluster};
use lockstep_core::kv::{
    decode_reply, KvCommand, KvConfig, KvQuery, KvResponse, KvStore, LeaseGrantRequest, MemStorage, PutRequest,
    RangeRequest,
};
use lockstep_core::{NodeId, Request, Response};

type Kv = KvStore<MemStorage>;

fn kv() -> Kv {
    KvStore::open(KvConfig::default(), MemStorage::new()).expect("empty storage opens")
}

fn kv_cluster(seed: u64) -> Cluster<Kv> {
    Cluster::with_state_machine(3, seed, default_config, kv)
}

fn write(c: &mut Cluster<Kv>, to: NodeId, command: KvCommand) -> KvResponse {
    match c.call(to, Request::Write(command.encode()), 5_000) {
        Ok(Response::Written { result, .. }) => decode_reply(&result).expect("decodes").expect("succeeds"),
        other => panic!("write failed: {other:?}"),
    }
}

fn get(c: &mut Cluster<Kv>, to: NodeId, key: &str) -> Option<Vec<u8>> {
    let query = KvQuery::Range(RangeRequest { key: key.as_bytes().to_vec(), ..RangeRequest::default() });
    match c.call(to, Request::Read(query.encode()), 5_000) {
        Ok(Response::Read(bytes)) => match decode_reply(&bytes).expect("decodes").expect("succeeds") {
            KvResponse::Range(r) => r.kvs.into_iter().next().map(|kv| kv.value),
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("read failed: {other:?}"),
    }
}

fn put(key: &str, value: &str, lease: i64) -> KvCommand {
    KvCommand::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        lease,
        ..PutRequest::default()
    })
}

#[test]
fn puts_replicate_and_followers_read_them() {
    let mut c = kv_cluster(1);
    let leader = c.wait_for_leader(3_000);
    write(&mut c, leader, put("a", "1", 0));
    write(&mut c, leader, put("a", "2", 0));
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    assert_eq!(get(&mut c, follower, "a"), Some(b"2".to_vec()));
    c.run_for(200);
    let revisions: Vec<i64> = (1..=3).map(|id| c.node(id).state_machine().current_revision()).collect();
    assert_eq!(revisions, vec![3, 3, 3], "every member is at the same revision");
}

#[test]
fn an_expired_lease_is_revoked_through_the_log() {
    let mut c = kv_cluster(2);
    let leader = c.wait_for_leader(3_000);
    write(&mut c, leader, KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 7 }));
    write(&mut c, leader, put("session", "alive", 7));
    let granted_at = c.now;
    c.run_until(granted_at + 4_000);
    assert_eq!(get(&mut c, leader, "session"), Some(b"alive".to_vec()), "not before its TTL");
    c.run_until(granted_at + 6_500);
    for id in 1..=3 {
        assert_eq!(get(&mut c, id, "session"), None, "member {id}: the key went with its lease");
        assert!(c.node(id).state_machine().mvcc().leases().get(7).is_none(), "member {id}: lease revoked");
    }
}

#[test]
fn a_new_leader_never_cuts_a_lease_short() {
    let mut c = kv_cluster(3);
    let leader = c.wait_for_leader(3_000);
    write(&mut c, leader, KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 9 }));
    write(&mut c, leader, put("lock", "held", 9));
    c.run_for(5_000);
    c.crash(leader);
    let next = c.wait_for_leader(5_000);
    let promoted_at = c.now;
    // The new leader restarts the lease's clock from its own promotion.
    c.run_until(promoted_at + 9_000);
    assert_eq!(get(&mut c, next, "lock"), Some(b"held".to_vec()), "still held: the new leader gives a full TTL");
    c.run_until(promoted_at + 12_000);
    assert_eq!(get(&mut c, next, "lock"), None, "revoked once the full TTL passed under the new leader");
}

fn keep_alive(c: &mut Cluster<Kv>, to: NodeId, id: i64) -> lockstep_core::Reply {
    let request = KvQuery::LeaseKeepAlive(lockstep_core::kv::LeaseKeepAliveRequest { id });
    c.call(to, Request::LeaderRequest(request.encode()), 5_000)
}

#[test]
fn keep_alives_on_the_leader_hold_a_lease_and_followers_refuse_them() {
    let mut c = kv_cluster(4);
    let leader = c.wait_for_leader(3_000);
    write(&mut c, leader, KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 3, id: 11 }));
    write(&mut c, leader, put("member/a", "up", 11));
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    assert_eq!(
        keep_alive(&mut c, follower, 11),
        Err(lockstep_core::ClientError::NotLeader { leader: Some(leader) }),
        "only the leader renews leases"
    );
    for _ in 0..5 {
        c.run_for(2_000);
        match keep_alive(&mut c, leader, 11) {
            Ok(Response::Read(bytes)) => match decode_reply(&bytes).expect("decodes") {
                Ok(KvResponse::LeaseKeepAlive(r)) => assert_eq!((r.id, r.ttl), (11, 3)),
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("keep-alive failed: {other:?}"),
        }
    }
    assert_eq!(get(&mut c, leader, "member/a"), Some(b"up".to_vec()), "10 s later, kept alive past its 3 s TTL");
    c.run_for(4_000);
    assert_eq!(get(&mut c, leader, "member/a"), None, "expired once the keep-alives stopped");
    let gone = keep_alive(&mut c, leader, 11);
    match gone {
        Ok(Response::Read(bytes)) => {
            assert_eq!(decode_reply(&bytes).expect("decodes"), Err(lockstep_core::kv::KvError::LeaseNotFound))
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn kv_checkpointing() -> Kv {
    let config = KvConfig { lease_checkpoint_interval_ms: 2_000, ..KvConfig::default() };
    KvStore::open(config, MemStorage::new()).expect("empty storage opens")
}

#[test]
fn checkpoints_keep_a_new_leader_from_extending_a_lease() {
    let mut c = Cluster::with_state_machine(3, 5, default_config, kv_checkpointing);
    let leader = c.wait_for_leader(3_000);
    write(&mut c, leader, KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 20, id: 21 }));
    write(&mut c, leader, put("lock", "held", 21));
    let granted_at = c.now;
    c.run_until(granted_at + 9_000);
    // Every member applied a checkpoint: about 12 s were left at the last one.
    for id in 1..=3 {
        let remaining = c.node(id).state_machine().mvcc().leases().get(21).expect("lease").remaining_ttl;
        assert!((11..=13).contains(&remaining), "member {id}: checkpointed {remaining} s");
    }
    c.crash(leader);
    let next = c.wait_for_leader(5_000);
    let promoted_at = c.now;
    c.run_until(promoted_at + 10_000);
    assert_eq!(get(&mut c, next, "lock"), Some(b"held".to_vec()), "not cut short");
    c.run_until(promoted_at + 14_500);
    assert_eq!(get(&mut c, next, "lock"), None, "revoked at the checkpointed remainder, not after a full 20 s TTL");
}

#[test]
fn a_renewed_lease_gets_its_full_ttl_back_after_a_leader_change() {
    let mut c = Cluster::with_state_machine(3, 6, default_config, kv_checkpointing);
    let leader = c.wait_for_leader(3_000);
    write(&mut c, leader, KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 20, id: 22 }));
    write(&mut c, leader, put("lock", "held", 22));
    c.run_for(9_000);
    assert!(keep_alive(&mut c, leader, 22).is_ok());
    c.run_for(500);
    // The renewal cleared the checkpoint everywhere.
    for id in 1..=3 {
        let remaining = c.node(id).state_machine().mvcc().leases().get(22).expect("lease").remaining_ttl;
        assert_eq!(remaining, 0, "member {id}: checkpoint cleared by the renewal");
    }
    c.crash(leader);
    let next = c.wait_for_leader(5_000);
    let promoted_at = c.now;
    c.run_until(promoted_at + 18_000);
    assert_eq!(get(&mut c, next, "lock"), Some(b"held".to_vec()), "the renewed lease keeps its full TTL");
}

// ----- checkpoints: the state's own storage stands for it in snapshots -------

fn checkpoint_config(id: NodeId, seed: u64) -> lockstep_core::Config {
    let mut c = default_config(id, seed);
    c.snapshot_threshold_entries = 20;
    c.compaction_lag_entries = 5;
    c
}

/// What a crash leaves of a KV store's storage, opened again: the batches
/// since the last sync up to about half of them (so that the stored state may
/// be ahead of the checkpoint, and the restart skips entries it holds).
fn reopen(old: Kv) -> Kv {
    let mut storage = old.into_storage();
    let keep = storage.unsynced_batches() / 2;
    storage.crash_keeping(keep);
    KvStore::open(KvConfig::default(), storage).expect("the crashed storage opens")
}

fn checkpointing_cluster(seed: u64) -> Cluster<Kv> {
    let mut c = Cluster::with_state_machine(3, seed, checkpoint_config, kv);
    c.reopen = Some(reopen);
    c
}

/// A member's revision and stored pairs.
type Contents = (i64, Vec<(Vec<u8>, Vec<u8>)>);

/// Every member's keys and revision, for comparing members.
fn contents(c: &Cluster<Kv>, id: NodeId) -> Contents {
    let store = c.node(id).state_machine();
    (store.current_revision(), store.mvcc().dump())
}

#[test]
fn local_snapshots_are_checkpoint_markers_and_a_restart_opens_the_stored_state() {
    let mut c = checkpointing_cluster(11);
    let leader = c.wait_for_leader(3_000);
    for i in 0..50 {
        write(&mut c, leader, put(&format!("k{i}"), &format!("v{i}"), 0));
    }
    c.run_for(300);
    for id in 1..=3 {
        let snapshot = c.node(id).raft().snapshot().expect("a snapshot after 50 entries");
        let marked = lockstep_core::kv::checkpoint_index(&snapshot.data);
        assert_eq!(marked, Some(snapshot.meta.index), "member {id}: the snapshot is a 13-byte marker");
        assert!(snapshot.meta.index >= 20, "member {id}: the log was compacted behind it");
    }
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let before = contents(&c, follower);
    c.crash(follower);
    c.restart(follower);
    c.run_for(500);
    assert_eq!(contents(&c, follower), before, "the restarted member has the same state");
    assert_eq!(get(&mut c, follower, "k49"), Some(b"v49".to_vec()));
    write(&mut c, leader, put("after", "restart", 0));
    c.run_for(300);
    assert_eq!(contents(&c, follower), contents(&c, leader), "and keeps applying");
}

#[test]
fn a_follower_behind_the_compacted_log_is_sent_the_full_state() {
    let mut c = checkpointing_cluster(12);
    let leader = c.wait_for_leader(3_000);
    write(&mut c, leader, put("first", "1", 0));
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    c.crash(follower);
    for i in 0..80 {
        write(&mut c, leader, put(&format!("k{}", i % 7), &format!("v{i}"), 0));
    }
    let compacted = c.node(leader).raft().snapshot().expect("snapshot").meta.index;
    assert!(compacted > 40, "the leader compacted its log past the follower ({compacted})");
    c.restart(follower);
    c.run_for(2_000);
    assert_eq!(contents(&c, follower), contents(&c, leader), "the follower caught up through a snapshot");
    let installed = c.node(follower).raft().snapshot().expect("snapshot").meta.index;
    assert!(installed > compacted - 20, "it installed a snapshot from the leader (at {installed})");
    assert_eq!(get(&mut c, follower, "k6"), Some(b"v76".to_vec()));
}

#[test]
fn a_member_whose_state_storage_is_lost_refuses_to_start_with_a_clear_error() {
    let mut c = checkpointing_cluster(13);
    let leader = c.wait_for_leader(3_000);
    for i in 0..30 {
        write(&mut c, leader, put(&format!("k{i}"), "v", 0));
    }
    c.run_for(300);
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    c.crash(follower);
    c.kept.remove(&follower);
    let recovered = c.disks[&follower].recovered();
    let error = lockstep_core::Node::restart(checkpoint_config(follower, 13), kv(), recovered, c.now)
        .expect_err("an empty state storage behind a checkpoint");
    let message = format!("{error}");
    assert!(message.contains("the state directory was lost, replaced or damaged"), "{message}");
    assert!(message.contains("holds only index 0"), "{message}");
}
