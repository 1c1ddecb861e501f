//! Three real members on loopback, each on its own glommio executor thread:
//! they elect a leader, writes sent to any member (forwarded to the leader)
//! are applied everywhere, and a restarted member recovers from its WAL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockstep_core::kv::{KvCommand, KvConfig, KvQuery, KvResponse, PutRequest, RangeRequest};
use lockstep_core::wal::WalConfig;
use lockstep_core::{Config, Membership, NodeId};
use lockstep_runtime::{Member, MemberOptions, StartMode, TransportOptions};

fn free_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], lockstep_runtime::net::free_port().unwrap()))
}

fn options(id: NodeId, root: &Path, peers: &BTreeMap<NodeId, SocketAddr>) -> MemberOptions {
    let mut raft = Config::new(id, 1, id);
    raft.election_timeout_ms = 300;
    raft.heartbeat_interval_ms = 50;
    MemberOptions {
        raft,
        cluster_id: 0xC1,
        kv: KvConfig::default(),
        wal: WalConfig { preallocate: false, ..WalConfig::default() },
        wal_dir: root.join(format!("m{id}/wal")),
        state_dir: root.join(format!("m{id}/state")),
        peer_listen: peers[&id],
        peer_advertise: peers[&id].to_string(),
        peers: peers.iter().map(|(id, a)| (*id, a.to_string())).collect(),
        start: StartMode::Bootstrap(Membership { voters: vec![1, 2, 3], outgoing: vec![], learners: vec![] }),
        transport: TransportOptions::default(),
        peer_tls: None,
        encryption: None,
    }
}

fn put(key: &str, value: &str) -> KvCommand {
    KvCommand::Put(PutRequest { key: key.into(), value: value.into(), ..PutRequest::default() })
}

fn range(key: &str) -> KvQuery {
    KvQuery::Range(RangeRequest { key: key.into(), ..RangeRequest::default() })
}

/// Runs a member on its own executor; `work` runs once it started, then the
/// member runs until `stop` is set.
fn spawn_member<F, Fut>(options: MemberOptions, stop: Arc<AtomicBool>, work: F) -> glommio::ExecutorJoinHandle<()>
where
    F: FnOnce(Member) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let member = Member::start(options).await.expect("member starts");
            work(member.clone()).await;
            while !stop.load(Ordering::SeqCst) {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            member.shutdown(Duration::from_secs(2)).await;
        })
        .unwrap()
}

#[test]
fn three_members_elect_replicate_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let revision = write_restart_and_count(dir.path(), |_| {}, 3);
    assert_eq!(revision, 51, "50 puts, each applied once");
}

#[test]
fn members_restart_from_checkpoints_of_their_state_directory() {
    // A checkpoint every 20 entries: the WAL's snapshot is a marker, the state
    // directory is kept across the restart, and the log after the marker is
    // replayed without applying an entry twice.
    let dir = tempfile::tempdir().unwrap();
    let tweak = |o: &mut MemberOptions| {
        o.raft.snapshot_threshold_entries = 20;
        o.raft.compaction_lag_entries = 5;
    };
    let revision = write_restart_and_count(dir.path(), tweak, 1024);
    assert_eq!(revision, 51, "50 puts, each applied once");
    for id in 1..=3 {
        let snap = dir.path().join(format!("m{id}/wal/snapshot.snap"));
        let bytes = std::fs::read(&snap).unwrap();
        // A full snapshot would hold the 50 KiB of values.
        assert!(bytes.len() < 1024, "member {id}: snapshot.snap has {} bytes, not a checkpoint marker", bytes.len());
        let marker = lockstep_core::kv::CHECKPOINT_MAGIC;
        assert!(bytes.windows(4).any(|w| w == marker), "member {id}: no checkpoint marker in snapshot.snap");
    }
}

/// Writes 50 keys (values of `value_len` bytes) through member 3 of a new
/// three-member cluster, restarts all three, and checks every member holds the
/// 50 keys; returns the revision they report.
fn write_restart_and_count(root: &Path, tweak: fn(&mut MemberOptions), value_len: usize) -> i64 {
    let options = |id: NodeId, peers: &BTreeMap<NodeId, SocketAddr>| {
        let mut o = options(id, root, peers);
        tweak(&mut o);
        o
    };
    let peers: BTreeMap<NodeId, SocketAddr> = (1..=3).map(|id| (id, free_port())).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<Result<(), String>>();
    let mut threads = Vec::new();
    for id in 1..=3 {
        let done_tx = done_tx.clone();
        threads.push(spawn_member(options(id, &peers), stop.clone(), move |member| async move {
            if id != 3 {
                return;
            }
            // Member 3 writes through whoever leads (forwarded if it follows).
            let started = Instant::now();
            let mut result = Ok(());
            for i in 0..50 {
                let value = format!("v{i}:{}", "x".repeat(value_len));
                match member.kv_write(&put(&format!("k{i}"), &value)).await {
                    Ok(Ok(KvResponse::Put(_))) => {}
                    other => {
                        result = Err(format!("put {i}: {other:?}"));
                        break;
                    }
                }
            }
            if result.is_ok() {
                match member.kv_read(&range("k49"), true).await {
                    Ok(Ok(KvResponse::Range(r))) if r.kvs.len() == 1 && r.kvs[0].value.starts_with(b"v49:") => {}
                    other => result = Err(format!("read: {other:?}")),
                }
            }
            eprintln!("50 writes via member 3 in {:?}", started.elapsed());
            done_tx.send(result).unwrap();
        }));
    }
    let outcome = done_rx.recv_timeout(Duration::from_secs(30)).expect("the workload finishes");
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    outcome.unwrap();

    // Restart all three from their WALs: every write is still there, on every member.
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<(NodeId, Result<(i64, i64), String>)>();
    let mut threads = Vec::new();
    for id in 1..=3 {
        let done_tx = done_tx.clone();
        threads.push(spawn_member(options(id, &peers), stop.clone(), move |member| async move {
            let all = KvQuery::Range(RangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                ..RangeRequest::default()
            });
            let result = match member.kv_read(&all, true).await {
                Ok(Ok(KvResponse::Range(r))) => Ok((r.count, r.header.revision)),
                other => Err(format!("{other:?}")),
            };
            done_tx.send((id, result)).unwrap();
        }));
    }
    let mut counts = BTreeMap::new();
    for _ in 0..3 {
        let (id, result) = done_rx.recv_timeout(Duration::from_secs(30)).expect("reads finish");
        counts.insert(id, result);
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let revision = counts.get(&1).and_then(|r| r.as_ref().ok()).map_or(0, |&(_, rev)| rev);
    let expected: BTreeMap<NodeId, Result<(i64, i64), String>> = (1..=3).map(|id| (id, Ok((50, revision)))).collect();
    assert_eq!(counts, expected);
    revision
}
