//! The Figure 8 nemesis: a scripted episode that steers the cluster into the
//! situation of Figure 8 of the Raft paper, where a leader that committed an
//! entry of an earlier term by counting replicas would lose a committed entry.
//!
//! With `n` members, `q = n / 2 + 1` of them a majority:
//!
//! 1. Leader A of term `t` is cut off, appends entries that only it holds
//!    (a write of the nemesis, client writes), and crashes once they are durable.
//! 2. Another member B is elected in a later term `tb`; the instant it is seen
//!    leading, every other member crashes (which drops the messages on their
//!    way to them), so B's first entry, at an index where A holds its own, stays
//!    on B; B crashes once it is durable.
//! 3. A and `q - 1` others restart; A is elected in a term `ta > tb` and sends
//!    its old entries (one per message with the profile's `append_bytes_max`).
//!    Each of the others crashes the instant it has persisted (and so
//!    acknowledged) A's first stranded entry, before A's entry of term `ta`
//!    reaches it. A crashes a moment later, once the acknowledgements are in.
//!    A majority now holds A's old entry, but no entry of term `ta`: Raft
//!    forbids committing it (A's own term has nothing on a majority), a leader
//!    that commits by counting replicas does.
//! 4. B and the same `q - 1` members restart: B's last term `tb` beats theirs,
//!    so B is elected, overwrites A's entries with its own and commits them. If
//!    A had counted its old entry committed, commit safety, state-machine safety
//!    or linearizability fails.
//!
//! Each step waits with [`Cluster::wait_until`], which checks the condition
//! after every member step, so the crashes land at the exact simulated instant
//! the state is reached. The timing still depends on the seed: how many entries
//! are stranded, who is elected, which members form the majority, small random
//! delays, the random latencies and election timeouts. An episode that does not
//! go to plan (an election that does not happen in time, a member that got an
//! entry too early) is abandoned and the cluster restored.

use std::time::Duration;

use lockstep_core::{LogIndex, NodeId, Request, Role, Term};
use lockstep_sim::dice::Dice;
use lockstep_sim::{Cluster, ClusterView, MemberStatus};
use madsim::rand::thread_rng;
use madsim::time::sleep;

/// How long an episode waits for an election.
const ELECTION_WAIT: Duration = Duration::from_secs(5);
/// How long an episode waits for a write to become durable or replicated.
const PROGRESS_WAIT: Duration = Duration::from_millis(1_500);

/// Runs one episode, then restores the cluster (network healed, every crashed
/// member restarted). `latency_max` is the network's longest one-way latency.
/// Returns true if the episode went to plan, false if it was abandoned.
pub async fn episode(cluster: &Cluster, latency_max: Duration) -> bool {
    let complete = match run(cluster, latency_max).await {
        Ok(()) => {
            cluster.note("figure8: episode complete".into());
            true
        }
        Err(why) => {
            cluster.note(format!("figure8: episode abandoned: {why}"));
            false
        }
    };
    restore(cluster);
    complete
}

fn restore(cluster: &Cluster) {
    cluster.heal_network();
    for id in cluster.members() {
        if cluster.status(id) == MemberStatus::Down {
            cluster.restart(id);
        }
    }
}

/// The leader, if an entry of its term is committed (it has settled in).
fn settled_leader(view: &ClusterView<'_>) -> Option<(NodeId, Term)> {
    let (leader, term) = view.leader()?;
    let raft = view.raft(leader)?;
    (raft.term_at(raft.commit_index()) == Some(term)).then_some((leader, term))
}

/// True if `id` runs as leader of a term above `above`.
fn leads_above(view: &ClusterView<'_>, id: NodeId, above: Term) -> bool {
    view.raft(id).is_some_and(|r| r.role() == Role::Leader && r.term() > above)
}

/// Durable local index of `id` (0 if it is not running).
fn persisted(view: &ClusterView<'_>, id: NodeId) -> LogIndex {
    view.raft(id).map_or(0, |r| r.persisted_index().min(r.last_index()))
}

fn pick<T: Copy>(items: &mut Vec<T>) -> T {
    let at = thread_rng().below(items.len() as u64) as usize;
    items.remove(at)
}

async fn run(cluster: &Cluster, latency_max: Duration) -> Result<(), String> {
    let members = cluster.members();
    let n = members.len();
    if n < 3 {
        return Err("fewer than three members".into());
    }
    let majority = n / 2 + 1;

    // 0. Everyone up under a settled leader A of term t.
    let everyone = members.clone();
    let ready = cluster
        .wait_until(ELECTION_WAIT, move |v| {
            everyone.iter().all(|id| v.status(*id) == Some(&MemberStatus::Up)) && settled_leader(v).is_some()
        })
        .await;
    let (a, t) = cluster.view(settled_leader).filter(|_| ready).ok_or("no settled leader")?;
    let others: Vec<NodeId> = members.iter().copied().filter(|id| *id != a).collect();

    // 1. Strand entries on A.
    let before = cluster.with_node(a, |n| n.raft().last_index()).ok_or("leader gone")?;
    cluster.partition(&[vec![a], others.clone()]);
    let writes = thread_rng().between(1, 3);
    cluster.note(format!("figure8: n{a} (term {t}) cut off to strand {writes} writes after index {before}"));
    for k in 0..writes {
        let cluster = cluster.clone();
        let write = cluster.state_machine().write_command("figure8", k as i64);
        madsim::task::spawn(async move {
            let _ = cluster.request(a, Request::Write(write), Duration::from_secs(1)).await;
        });
    }
    let want = before + writes;
    let stranded = cluster
        .wait_until(PROGRESS_WAIT, move |v| {
            v.raft(a).is_some_and(|r| r.role() == Role::Leader && r.term() == t) && persisted(v, a) >= want
        })
        .await;
    if !stranded {
        return Err(format!("n{a} did not make its writes durable"));
    }
    sleep(Duration::from_micros(thread_rng().between(0, 20_000))).await;
    let first = before + 1;
    let first_term = cluster.with_node(a, |n| n.raft().term_at(first)).flatten().ok_or("stranded entry gone")?;
    cluster.crash(a);
    cluster.heal_network();

    // 2. B leads a later term alone.
    let voters = others.clone();
    let elected =
        cluster.wait_until(ELECTION_WAIT, move |v| voters.iter().any(|id| leads_above(v, *id, first_term))).await;
    let b = cluster
        .view(|v| others.iter().copied().find(|id| leads_above(v, *id, first_term)))
        .filter(|_| elected)
        .ok_or("no leader after the stranding")?;
    for id in &others {
        if *id != b {
            cluster.crash(*id);
        }
    }
    let (tb, b_last) = cluster.with_node(b, |n| (n.raft().term(), n.raft().last_index())).ok_or("B gone")?;
    cluster.note(format!("figure8: n{b} leads term {tb} alone with last index {b_last}; n{a} holds from {first}"));
    if cluster.wait_until(PROGRESS_WAIT, move |v| persisted(v, b) >= b_last).await {
        sleep(Duration::from_micros(thread_rng().between(0, 30_000))).await;
    }
    cluster.crash(b);

    // 3. A leads a later term with a bare majority that it brings its old
    // entries to; each crashes as soon as it holds the first one.
    let mut rest: Vec<NodeId> = others.iter().copied().filter(|id| *id != b).collect();
    let majority_of_a: Vec<NodeId> = (1..majority).map(|_| pick(&mut rest)).collect();
    cluster.restart(a);
    for id in &majority_of_a {
        cluster.restart(*id);
    }
    if !cluster.wait_until(ELECTION_WAIT, move |v| leads_above(v, a, tb)).await {
        return Err(format!("n{a} was not elected with {majority_of_a:?}"));
    }
    let ta = cluster.with_node(a, |n| n.raft().term()).ok_or("A gone")?;
    cluster.note(format!("figure8: n{a} leads term {ta}; {majority_of_a:?} crash once they hold index {first}"));
    let mut pending = majority_of_a.clone();
    while !pending.is_empty() {
        let waiting = pending.clone();
        let holds = move |v: &ClusterView<'_>, id: NodeId| {
            persisted(v, id) >= first && v.raft(id).and_then(|r| r.term_at(first)) == Some(first_term)
        };
        if !cluster.wait_until(PROGRESS_WAIT, move |v| waiting.iter().any(|id| holds(v, *id))).await {
            return Err(format!("{pending:?} did not receive index {first} from n{a}"));
        }
        let done: Vec<NodeId> = cluster.view(|v| pending.iter().copied().filter(|id| holds(v, *id)).collect());
        for id in &done {
            cluster.crash(*id);
        }
        pending.retain(|id| !done.contains(id));
    }
    // The acknowledgements are on their way to A: let them arrive.
    let settle = 2 * latency_max.as_micros() as u64 + 2_000;
    sleep(Duration::from_micros(thread_rng().between(settle, settle + 20_000))).await;
    cluster.crash(a);

    // 4. B comes back with the same majority and overwrites A's entries.
    cluster.restart(b);
    for id in &majority_of_a {
        cluster.restart(*id);
    }
    if !cluster.wait_until(ELECTION_WAIT, move |v| leads_above(v, b, ta)).await {
        return Err(format!("n{b} was not elected with {majority_of_a:?}"));
    }
    let tb2 = cluster.with_node(b, |n| n.raft().term()).ok_or("B gone")?;
    cluster.note(format!("figure8: n{b} leads term {tb2}"));
    let committed = cluster
        .wait_until(PROGRESS_WAIT, move |v| {
            v.raft(b).is_some_and(|r| r.term_at(r.commit_index()) == Some(tb2) && r.term() == tb2)
        })
        .await;
    if !committed {
        return Err(format!("n{b} did not commit in term {tb2}"));
    }
    Ok(())
}
