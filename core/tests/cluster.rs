//! Whole-group behaviour of the core composition, driven by the deterministic
//! harness in `common`: elections, replication, reads, crashes, partitions,
//! membership changes, leadership transfer, snapshots.

mod common;

use common::{default_config, Cluster};
use lockstep_core::register::RegisterCommand;
use lockstep_core::{ClientError, Config, Membership, NodeId, Request, Response, Role};
use proptest::prelude::*;

fn written(reply: &lockstep_core::Reply) -> bool {
    matches!(reply, Ok(Response::Written { .. }))
}

#[test]
fn three_members_elect_one_leader_and_replicate() {
    let mut c = Cluster::new(3, 1);
    let leader = c.wait_for_leader(3_000);
    for i in 0..20 {
        assert!(written(&c.write(leader, "k", i)), "write {i}");
    }
    c.run_for(500);
    for id in 1..=3 {
        assert_eq!(c.value(id, "k"), Some(19), "member {id}");
    }
    let leaders: Vec<NodeId> = (1..=3).filter(|&id| c.node(id).raft().role() == Role::Leader).collect();
    assert_eq!(leaders, vec![leader]);
}

#[test]
fn followers_refuse_writes_and_name_the_leader() {
    let mut c = Cluster::new(3, 2);
    let leader = c.wait_for_leader(3_000);
    c.run_for(200);
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let cmd = RegisterCommand::Write { key: "k".into(), value: 1 }.encode();
    let reply = c.call(follower, Request::Write(cmd), 1_000);
    assert_eq!(reply, Err(ClientError::NotLeader { leader: Some(leader) }));
}

#[test]
fn reads_on_followers_are_linearizable() {
    let mut c = Cluster::new(3, 3);
    let leader = c.wait_for_leader(3_000);
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    assert!(written(&c.write(leader, "x", 42)));
    // Served right after the write was acknowledged: ReadIndex makes the follower
    // wait until it has applied the write.
    assert_eq!(c.read(follower, "x"), Ok(Some(42)));
    assert_eq!(c.read(leader, "x"), Ok(Some(42)));
    assert_eq!(c.read(leader, "nothing"), Ok(None));
}

#[test]
fn leader_crash_keeps_acknowledged_writes() {
    for seed in 0..10 {
        let mut c = Cluster::new(5, seed);
        let leader = c.wait_for_leader(3_000);
        for i in 0..10 {
            assert!(written(&c.write(leader, "k", i)));
        }
        c.crash(leader);
        let next = c.wait_for_leader(5_000);
        assert_ne!(next, leader);
        assert_eq!(c.read(next, "k"), Ok(Some(9)), "seed {seed}");
        c.restart(leader);
        c.run_for(2_000);
        assert_eq!(c.value(leader, "k"), Some(9), "seed {seed}: restarted member caught up");
    }
}

#[test]
fn isolated_leader_steps_down_and_cannot_serve_reads() {
    let mut c = Cluster::new(3, 4);
    let old = c.wait_for_leader(3_000);
    assert!(written(&c.write(old, "k", 1)));
    c.isolate(old);
    // check-quorum: the old leader steps down within about an election timeout.
    c.run_for(1_000);
    assert_ne!(c.node(old).raft().role(), Role::Leader);
    let new = c.leader().expect("the majority elected a leader");
    assert_ne!(new, old);
    assert!(written(&c.write(new, "k", 2)));
    // The old member cannot confirm a read: it fails instead of returning 1.
    let read = c.read(old, "k");
    assert!(matches!(read, Err(ClientError::NotLeader { .. }) | Err(ClientError::Timeout)), "{read:?}");
    c.heal();
    c.run_for(1_000);
    assert_eq!(c.read(old, "k"), Ok(Some(2)));
}

#[test]
fn prevote_keeps_a_rejoining_member_from_disrupting_the_leader() {
    let mut c = Cluster::new(3, 5);
    let leader = c.wait_for_leader(3_000);
    let term = c.node(leader).raft().term();
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    c.isolate(follower);
    c.run_for(5_000);
    // Without pre-vote the isolated member would have raised its term many times.
    assert_eq!(c.node(follower).raft().term(), term);
    c.heal();
    c.run_for(1_000);
    assert_eq!(c.leader(), Some(leader));
    assert_eq!(c.node(leader).raft().term(), term);
}

#[test]
fn leadership_transfer() {
    let mut c = Cluster::new(3, 6);
    let leader = c.wait_for_leader(3_000);
    let target = (1..=3).find(|&id| id != leader).expect("a follower");
    assert!(written(&c.write(leader, "k", 7)));
    let reply = c.call(leader, Request::TransferLeader { to: target }, 3_000);
    assert!(matches!(reply, Ok(Response::Transferred { .. })), "{reply:?}");
    c.run_for(500);
    assert_eq!(c.leader(), Some(target));
    assert_eq!(c.read(target, "k"), Ok(Some(7)));
}

#[test]
fn add_a_member_then_replace_voters_by_joint_consensus() {
    let mut c = Cluster::new(3, 7);
    let leader = c.wait_for_leader(3_000);
    for i in 0..5 {
        assert!(written(&c.write(leader, "k", i)));
    }
    c.add_empty(4);
    c.add_empty(5);
    let reply = c.call(leader, Request::ChangeMembership { voters: vec![1, 2, 3], learners: vec![4, 5] }, 3_000);
    assert_eq!(
        reply,
        Ok(Response::Membership(Membership { voters: vec![1, 2, 3], outgoing: vec![], learners: vec![4, 5] }))
    );
    c.run_for(1_000);
    assert_eq!(c.value(4, "k"), Some(4), "the learner caught up");
    assert_eq!(c.node(4).raft().role(), Role::Follower);
    // Promote both learners and remove two old voters in one joint change.
    let leader = c.leader().expect("leader");
    let voters = if leader == 1 { vec![1, 4, 5] } else { vec![leader, 4, 5] };
    let reply = c.call(leader, Request::ChangeMembership { voters: voters.clone(), learners: vec![] }, 5_000);
    let mut sorted = voters.clone();
    sorted.sort_unstable();
    assert_eq!(
        reply,
        Ok(Response::Membership(Membership { voters: sorted.clone(), outgoing: vec![], learners: vec![] }))
    );
    c.run_for(500);
    let leader = c.leader().expect("leader");
    assert!(written(&c.write(leader, "k", 100)));
    // Removed members may be crashed now without losing the quorum.
    for id in 1..=3u64 {
        if !sorted.contains(&id) {
            c.crash(id);
        }
    }
    let leader = c.wait_for_leader(3_000);
    assert!(written(&c.write(leader, "k", 101)));
    for id in sorted {
        c.run_for(200);
        assert_eq!(c.value(id, "k"), Some(101), "member {id}");
    }
}

#[test]
fn removing_the_leader_hands_over() {
    let mut c = Cluster::new(3, 8);
    let leader = c.wait_for_leader(3_000);
    let rest: Vec<NodeId> = (1..=3).filter(|&id| id != leader).collect();
    let reply = c.call(leader, Request::ChangeMembership { voters: rest.clone(), learners: vec![] }, 3_000);
    assert!(matches!(reply, Ok(Response::Membership(_))), "{reply:?}");
    c.run_for(100);
    assert_ne!(c.node(leader).raft().role(), Role::Leader);
    let next = c.wait_for_leader(3_000);
    assert!(rest.contains(&next));
    assert!(written(&c.write(next, "k", 1)));
}

fn snapshot_config(id: NodeId, seed: u64) -> Config {
    let mut c = default_config(id, seed);
    c.snapshot_threshold_entries = 20;
    c.compaction_lag_entries = 5;
    c.snapshot_chunk_bytes_max = 64;
    c
}

#[test]
fn lagging_member_catches_up_by_chunked_snapshot() {
    let mut c = Cluster::with_config(3, 9, snapshot_config);
    let leader = c.wait_for_leader(3_000);
    let lagging = (1..=3).find(|&id| id != leader).expect("a follower");
    c.crash(lagging);
    for i in 0..100 {
        let key = format!("k{}", i % 13);
        assert!(written(&c.write(leader, &key, i)));
    }
    assert!(c.node(leader).raft().first_index() > 20, "the leader compacted its log");
    c.restart(lagging);
    c.run_for(2_000);
    let node = c.node(lagging);
    assert!(node.raft().snapshot().is_some_and(|s| s.meta.index > 20), "installed a snapshot");
    assert_eq!(
        node.state_machine().iter().collect::<Vec<_>>(),
        c.node(leader).state_machine().iter().collect::<Vec<_>>()
    );
    // A restart from its own snapshot keeps the state too.
    c.crash(lagging);
    c.restart(lagging);
    c.run_for(1_000);
    assert_eq!(c.value(lagging, "k12"), c.value(leader, "k12"));
}

#[test]
fn lease_reads_are_served_without_a_round() {
    fn lease_config(id: NodeId, seed: u64) -> Config {
        let mut c = default_config(id, seed);
        c.lease_reads = true;
        c.clock_drift_max_ms = 30;
        c
    }
    let mut c = Cluster::with_config(3, 10, lease_config);
    let leader = c.wait_for_leader(3_000);
    assert!(written(&c.write(leader, "k", 5)));
    c.run_for(200);
    // With a valid lease the read completes in the same step, with no network at all.
    let id = c.request(leader, Request::Read(lockstep_core::register::RegisterQuery { key: "k".into() }.encode()));
    assert!(c.replies.contains_key(&id), "answered without waiting for a heartbeat round");
}

/// `CLUSTER_CASES=5000 cargo test -p lockstep-core --test cluster --release` for a long run.
#[allow(clippy::disallowed_methods)] // A test knob, not core code.
fn cases() -> u32 {
    std::env::var("CLUSTER_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Random crashes, partitions and message loss never break safety (checked
    /// after every step by the harness) and the group recovers once faults heal.
    #[test]
    fn random_faults_keep_safety_and_recover(seed in 0u64..1_000_000, rounds in 3usize..8) {
        let mut c = Cluster::new(5, seed);
        c.loss_percent = 5;
        let mut acked = Vec::new();
        let mut value = 0;
        for round in 0..rounds {
            let victim = 1 + (seed + round as u64) % 5;
            match (seed as usize + round) % 3 {
                0 => c.crash(victim),
                1 => c.isolate(victim),
                _ => {}
            }
            c.run_for(600);
            for id in 1..=5 {
                value += 1;
                if c.is_up(id) {
                    let cmd = RegisterCommand::Write { key: "k".into(), value }.encode();
                    let rid = c.request(id, Request::Write(cmd));
                    c.run_for(100);
                    if let Some(Ok(Response::Written { .. })) = c.replies.remove(&rid) {
                        acked.push(value);
                    }
                }
            }
            if !c.is_up(victim) {
                c.restart(victim);
            }
            c.heal();
        }
        c.loss_percent = 0;
        let leader = c.wait_for_leader(10_000);
        prop_assert!(written(&c.write(leader, "k", -1)));
        c.run_for(1_000);
        for id in 1..=5 {
            prop_assert_eq!(c.value(id, "k"), Some(-1), "member {} (seed {})", id, seed);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// A harsher schedule: several members down at once, random splits of the
    /// group, heavy loss, snapshots, and writes and reads to random members. The
    /// harness checks election safety, leader completeness and state-machine
    /// safety after every step; here every acknowledged write must still be in the
    /// log of the final leader, and the group must recover once faults heal.
    #[test]
    fn chaos_keeps_acknowledged_writes(seed in 0u64..1_000_000) {
        let mut c = Cluster::with_config(5, seed, snapshot_config);
        let mut rng = lockstep_core::rng::SeededRng::new(seed);
        let mut acked: Vec<(u64, u64)> = Vec::new();
        let mut pending = Vec::new();
        for value in 0..60i64 {
            match rng.range(0, 10) {
                0 => {
                    let down = (1..=5).filter(|&id| !c.is_up(id)).count();
                    if down < 2 {
                        c.crash(rng.range(1, 6));
                    }
                }
                1 => {
                    let id = rng.range(1, 6);
                    if !c.is_up(id) {
                        c.restart(id);
                    }
                }
                2 => {
                    c.heal();
                    let split = rng.range(1, 5);
                    for a in 1..=5u64 {
                        for b in 1..=5u64 {
                            if (a <= split) != (b <= split) {
                                c.blocked.insert((a, b));
                            }
                        }
                    }
                }
                3 => c.heal(),
                4 => c.loss_percent = rng.range(0, 30),
                _ => {}
            }
            let to = rng.range(1, 6);
            if c.is_up(to) {
                let cmd = RegisterCommand::Write { key: format!("k{}", value % 3), value }.encode();
                pending.push(c.request(to, Request::Write(cmd)));
            }
            let ms = rng.range(5, 400);
            c.run_for(ms);
            pending.retain(|rid| match c.replies.remove(rid) {
                Some(Ok(Response::Written { index, .. })) => {
                    acked.push((index, 0));
                    false
                }
                Some(_) => false,
                None => true,
            });
        }
        c.heal();
        c.loss_percent = 0;
        for id in 1..=5 {
            if !c.is_up(id) {
                c.restart(id);
            }
        }
        // A leader elected just before healing may still be deposed once: retry.
        let mut leader = c.wait_for_leader(10_000);
        let mut reply = c.write(leader, "final", 1);
        for _ in 0..3 {
            if written(&reply) {
                break;
            }
            leader = c.wait_for_leader(10_000);
            reply = c.write(leader, "final", 1);
        }
        prop_assert!(written(&reply), "seed {}: {:?}", seed, reply);
        let raft = c.node(leader).raft();
        for (index, _) in &acked {
            let entry = c.applied.get(index);
            prop_assert!(entry.is_some(), "acknowledged write at {} was never applied (seed {})", index, seed);
            if let Some(t) = raft.term_at(*index) {
                prop_assert_eq!(Some(t), entry.map(|e| e.term), "acknowledged entry {} replaced (seed {})", index, seed);
            }
        }
        c.run_for(2_000);
        let reference = c.node(leader).state_machine().iter().map(|(k, v)| (k.to_string(), v)).collect::<Vec<_>>();
        for id in 1..=5 {
            let state = c.node(id).state_machine().iter().map(|(k, v)| (k.to_string(), v)).collect::<Vec<_>>();
            prop_assert_eq!(&state, &reference, "member {} diverged (seed {})", id, seed);
        }
    }
}

#[test]
fn requests_stepped_together_go_out_as_one_append_per_follower_and_one_sync() {
    use lockstep_core::{Command, Event, MessageBody};
    let mut c = Cluster::new(3, 21);
    let leader = c.wait_for_leader(3_000);
    c.run_for(200);
    let now = c.now;
    let node = c.nodes.get_mut(&leader).and_then(|n| n.as_mut()).expect("the leader runs");
    let requests = (0..10).map(|i| Event::Request {
        id: 1_000 + i,
        request: Request::Write(RegisterCommand::Write { key: "k".into(), value: i as i64 }.encode()),
    });
    node.step_many(now, requests);
    let mut out = Vec::new();
    node.drain_commands(&mut out);
    let appends: Vec<(NodeId, usize)> = out
        .iter()
        .filter_map(|c| match c {
            Command::Send(m) => match &m.body {
                MessageBody::Append { entries, .. } if !entries.is_empty() => Some((m.to, entries.len())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let followers: Vec<NodeId> = (1..=3).filter(|&id| id != leader).collect();
    assert_eq!(appends, followers.iter().map(|&f| (f, 10)).collect::<Vec<_>>(), "one append of 10 entries each");
    let logs = out.iter().filter(|c| matches!(c, Command::AppendLog(_))).count();
    let syncs = out.iter().filter(|c| matches!(c, Command::Sync { .. })).count();
    assert_eq!((logs, syncs), (10, 1), "the entries are appended, then one sync covers them");
}

fn slow_heartbeats(id: NodeId, seed: u64) -> Config {
    let mut c = default_config(id, seed);
    c.heartbeat_interval_ms = 400;
    c.election_timeout_ms = 2_000;
    c
}

#[test]
fn followers_learn_a_new_commit_index_at_once_not_at_the_next_heartbeat() {
    // Followers apply (and so answer follower reads and notify watchers) as
    // soon as the leader commits: the leader sends the new commit index in an
    // empty append instead of waiting for the next write or heartbeat.
    let mut c = Cluster::with_config(3, 22, slow_heartbeats);
    let leader = c.wait_for_leader(10_000);
    c.run_for(1_000);
    for i in 0..5 {
        assert!(c.write(leader, "k", i).is_ok());
        let committed = c.node(leader).raft().commit_index();
        // Two network hops of at most 5 ms each, far below the 400 ms heartbeat.
        c.run_for(12);
        for id in 1..=3 {
            let raft = c.node(id).raft();
            assert_eq!(raft.commit_index(), committed, "member {id} after write {i}");
            assert_eq!(raft.applied_index(), committed, "member {id} applied after write {i}");
        }
    }
}
