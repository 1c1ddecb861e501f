//! Unit tests of single Raft actors: feed an input, assert the exact commands.

use super::*;
use crate::raft::message::Payload;

fn config(id: NodeId) -> Config {
    let mut c = Config::new(id, 1, 7);
    c.election_timeout_ms = 100;
    c.heartbeat_interval_ms = 10;
    c
}

/// A snapshot of `data` at `(index, term)` for a group of `voters`.
fn snapshot_meta(index: LogIndex, term: Term, voters: &[NodeId], data: &[u8]) -> SnapshotMeta {
    SnapshotMeta {
        group: 1,
        index,
        term,
        membership: Membership::with_voters(voters.iter().copied()),
        size: data.len() as u64,
        checksum: crc32c::crc32c(data),
    }
}

/// Member `id` of a group bootstrapped with `voters`, restarted with `hard_state` and `entries`.
fn raft_with(config: Config, voters: &[NodeId], hard_state: HardState, entries: Vec<Entry>) -> Raft {
    let snapshot = Snapshot { meta: snapshot_meta(0, 0, voters, &[]), data: Arc::new(Vec::new()) };
    Raft::new(config, hard_state, Some(snapshot), entries, 0).expect("valid state")
}

fn raft(id: NodeId, voters: &[NodeId], hard_state: HardState, entries: Vec<Entry>) -> Raft {
    raft_with(config(id), voters, hard_state, entries)
}

fn msg(from: NodeId, to: NodeId, term: Term, body: MessageBody) -> Message {
    Message { group: 1, from, to, term, body }
}

fn entry(index: LogIndex, term: Term) -> Entry {
    Entry { index, term, payload: Payload::Noop }
}

fn sends(out: &[Command]) -> Vec<&Message> {
    out.iter().filter_map(|c| if let Command::Send(m) = c { Some(m) } else { None }).collect()
}

/// Makes `r` (member 1 of `voters`) leader of `term`, with every vote durable.
fn elect(r: &mut Raft, now: Millis) {
    r.tick(now + 1_000);
    r.end_step(now);
    let term = r.term() + 1;
    for &peer in &r.membership().voters.clone() {
        if peer != r.id() {
            r.step(now, msg(peer, r.id(), term, MessageBody::PreVoteResponse { granted: true }));
        }
    }
    r.end_step(now);
    r.persisted(now, r.sync_issued);
    for &peer in &r.membership().voters.clone() {
        if peer != r.id() {
            r.step(now, msg(peer, r.id(), term, MessageBody::VoteResponse { granted: true }));
        }
    }
    r.end_step(now);
    assert_eq!(r.role(), Role::Leader);
    r.out.clear();
}

#[test]
fn a_vote_is_sent_only_once_it_is_durable() {
    let mut r = raft(1, &[1, 2, 3], HardState::default(), vec![]);
    r.step(0, msg(2, 1, 1, MessageBody::Vote { last_index: 0, last_term: 0, transfer: false }));
    r.end_step(0);
    assert_eq!(
        r.out.drain(..).filter(|c| !matches!(c, Command::SetTimer { .. })).collect::<Vec<_>>(),
        vec![Command::SaveHardState(HardState { term: 1, vote: Some(2) }), Command::Sync { id: 1 }]
    );
    r.persisted(0, 1);
    assert_eq!(
        r.out,
        vec![Command::Send(msg(1, 2, 1, MessageBody::VoteResponse { granted: true }))],
        "the vote goes out with the sync that made it durable"
    );
}

#[test]
fn a_candidate_counts_its_own_vote_only_once_durable() {
    let mut r = raft(1, &[1], HardState::default(), vec![]);
    r.tick(1_000);
    r.end_step(1_000);
    assert_eq!(r.role(), Role::Candidate, "a single voter wins pre-vote at once but must persist its vote");
    r.persisted(1_000, r.sync_issued);
    assert_eq!(r.role(), Role::Leader);
}

#[test]
fn appends_are_acknowledged_only_once_durable() {
    let mut r = raft(2, &[1, 2, 3], HardState { term: 1, vote: Some(1) }, vec![]);
    let append = MessageBody::Append { prev_index: 0, prev_term: 0, entries: vec![entry(1, 1)], commit: 0 };
    r.step(0, msg(1, 2, 1, append));
    r.end_step(0);
    assert!(sends(&r.out).is_empty(), "no acknowledgement before the sync: {:?}", r.out);
    assert!(r.out.contains(&Command::AppendLog(vec![entry(1, 1)])));
    r.out.clear();
    r.persisted(0, r.sync_issued);
    let ack = MessageBody::AppendResponse { success: true, index: 1, hint_index: 0, hint_term: 0 };
    assert_eq!(r.out, vec![Command::Send(msg(2, 1, 1, ack))]);
}

#[test]
fn a_leader_commits_old_entries_only_through_one_of_its_own_term() {
    // Figure 8: entry 2 of term 2 is on a majority, but a leader of term 3 must not
    // commit it by counting replicas until its own entry 3 is on a majority too.
    let mut r = raft(1, &[1, 2, 3], HardState { term: 2, vote: None }, vec![entry(1, 1), entry(2, 2)]);
    elect(&mut r, 0);
    assert_eq!((r.term(), r.last_index(), r.term_at(3)), (3, 3, Some(3)));
    let ack = |index| MessageBody::AppendResponse { success: true, index, hint_index: 0, hint_term: 0 };
    r.step(0, msg(2, 1, 3, ack(2)));
    r.end_step(0);
    assert_eq!(r.commit_index(), 0, "entry 2 is on members 1 and 2 but is of an older term");
    r.step(0, msg(2, 1, 3, ack(3)));
    r.end_step(0);
    assert_eq!(r.commit_index(), 0, "the leader has not persisted entry 3 yet, so only member 2 has it");
    r.persisted(0, r.sync_issued);
    assert_eq!(r.commit_index(), 3, "entry 3 is durable on a majority; entries 1 and 2 commit with it");
}

#[test]
fn a_read_waits_for_a_quorum_round() {
    let mut r = raft(1, &[1, 2, 3], HardState::default(), vec![]);
    elect(&mut r, 0);
    r.persisted(0, r.sync_issued);
    let ack = MessageBody::AppendResponse { success: true, index: 1, hint_index: 0, hint_term: 0 };
    r.step(0, msg(2, 1, 1, ack));
    r.end_step(0);
    assert_eq!(r.commit_index(), 1);
    r.out.clear();
    r.read_index(0, 77);
    r.end_step(0);
    assert!(r.take_read_states().is_empty(), "not before a quorum confirms leadership");
    let round = sends(&r.out)
        .iter()
        .find_map(|m| if let MessageBody::Heartbeat { round, .. } = m.body { Some(round) } else { None })
        .expect("a heartbeat round went out");
    r.step(0, msg(3, 1, 1, MessageBody::HeartbeatResponse { round, last_index: 0 }));
    assert_eq!(r.take_read_states(), vec![ReadState { ctx: 77, index: Some(1) }]);
}

#[test]
fn a_stale_round_does_not_confirm_a_newer_read() {
    let mut r = raft(1, &[1, 2, 3], HardState::default(), vec![]);
    elect(&mut r, 0);
    r.persisted(0, r.sync_issued);
    r.step(0, msg(2, 1, 1, MessageBody::AppendResponse { success: true, index: 1, hint_index: 0, hint_term: 0 }));
    r.tick(1_000); // A heartbeat round goes out before the read arrives.
    r.end_step(1_000);
    r.read_index(1_000, 5);
    r.end_step(1_000);
    let old_round = r.round - 1;
    r.step(1_000, msg(2, 1, 1, MessageBody::HeartbeatResponse { round: old_round, last_index: 1 }));
    assert!(r.take_read_states().is_empty(), "an acknowledgement of an older round proves nothing");
}

#[test]
fn recovery_rejects_a_log_with_a_gap() {
    let meta = SnapshotMeta::default();
    let snapshot = Snapshot { meta, data: Arc::new(Vec::new()) };
    let err = Raft::new(config(1), HardState::default(), Some(snapshot), vec![entry(1, 1), entry(3, 1)], 0);
    assert_eq!(err.err(), Some(RecoveryError::Gap { expected: 2, found: 3 }));
}

#[test]
fn recovery_drops_a_log_that_does_not_continue_the_snapshot() {
    let data = b"state".to_vec();
    let meta = snapshot_meta(2, 3, &[1, 2, 3], &data);
    let snapshot = Snapshot { meta, data: Arc::new(data) };
    let entries = vec![entry(1, 1), entry(2, 2), entry(3, 2)];
    let r = Raft::new(config(1), HardState::default(), Some(snapshot), entries, 0).expect("valid");
    assert_eq!((r.first_index(), r.last_index(), r.term_at(2)), (3, 2, Some(3)));
}

#[test]
fn installing_a_snapshot_over_a_divergent_log_drops_the_entry_at_its_index() {
    let mut r = raft(2, &[1, 2, 3], HardState { term: 1, vote: Some(1) }, vec![entry(1, 1), entry(2, 1), entry(3, 1)]);
    let data = b"state".to_vec();
    let meta = snapshot_meta(3, 2, &[1, 2, 3], &data);
    let chunk = MessageBody::InstallSnapshot { meta: meta.clone(), offset: 0, data: data.clone(), done: true };
    r.step(0, msg(1, 2, 2, chunk));
    r.end_step(0);
    let writes: Vec<&Command> =
        r.out.iter().filter(|c| matches!(c, Command::SaveSnapshot { .. } | Command::TruncateLog { .. })).collect();
    assert_eq!(writes, vec![&Command::SaveSnapshot { meta, data }, &Command::TruncateLog { from: 3 }]);
    assert_eq!((r.first_index(), r.last_index(), r.commit_index()), (4, 3, 3));
}

#[test]
fn a_leader_that_sent_timeout_now_takes_no_more_leases_in_its_term() {
    // Found by the simulator (profile lease-transfer-race, seed 1136): a paused
    // target acted on a stale TimeoutNow after the transfer was abandoned, won
    // an election that ignored leases, while the old leader still served lease reads.
    let mut c = config(1);
    c.lease_reads = true;
    c.clock_drift_max_ms = 10;
    let mut r = raft_with(c, &[1, 2, 3], HardState::default(), vec![]);
    elect(&mut r, 0);
    r.persisted(0, r.sync_issued);
    for peer in [2, 3] {
        r.step(
            0,
            msg(peer, 1, 1, MessageBody::AppendResponse { success: true, index: 1, hint_index: 0, hint_term: 0 }),
        );
    }
    r.transfer_leader(0, 2).expect("leader");
    assert!(sends(&r.out).iter().any(|m| m.body == MessageBody::TimeoutNow), "member 2 is up to date");
    r.tick(200); // The transfer is abandoned after an election timeout.
    r.end_step(200);
    assert!(!r.transferring());
    let round = r.round;
    r.step(200, msg(2, 1, 1, MessageBody::HeartbeatResponse { round, last_index: 1 }));
    r.read_index(200, 1);
    r.end_step(200);
    assert!(r.take_read_states().is_empty(), "no lease: the read waits for a round");
}
