//! One seeded chaos run: a cluster, concurrent clients, a nemesis injecting the
//! profile's faults, then heal, liveness, final reads and every check.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockstep_core::kv::{
    decode_reply, Compare, CompareResult, CompareTarget, KvCommand, KvQuery, KvResponse, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use lockstep_core::register::{RegisterCommand, RegisterQuery, RegisterResult};
use lockstep_core::{ClientError, Config, Membership, NodeId, Request, Response};
use lockstep_jepsen::{check, CheckConfig, History, HistoryRecorder, OpType, Value, F};
use lockstep_sim::dice::Dice;
use lockstep_sim::disk::DiskConfig;
use lockstep_sim::invariants::lock;
use lockstep_sim::machine::MachineKind;
use lockstep_sim::net::NetConfig;
use lockstep_sim::{ClientOutcome, Cluster, ClusterConfig, MemberStatus, SimStats};
use madsim::rand::thread_rng;
use madsim::time::sleep;

use crate::admin::{plan_membership_change, plan_transfer, Plan};
use crate::figure8;
use crate::profile::{Fault, FaultProfile, ProfileSpec};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The seed: the whole run is a function of it (and of the options).
    pub seed: u64,
    /// Voters.
    pub nodes: u64,
    /// Length of the chaos phase, simulated.
    pub duration: Duration,
    /// Which faults.
    pub faults: FaultProfile,
    /// A planted bug (needs the `mutations` feature).
    pub mutation: Option<String>,
    /// Concurrent client processes.
    pub clients: u64,
    /// Registers the clients use.
    pub keys: u64,
    /// Longest client think time between operations, ms.
    pub think_ms_max: u64,
    /// Trace records to show on failure.
    pub trace_tail: usize,
    /// Run the linearizability checker.
    pub check_linearizability: bool,
    /// The state machine the members run.
    pub state_machine: MachineKind,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            seed: 0,
            nodes: 5,
            duration: Duration::from_secs(30),
            faults: FaultProfile::All,
            mutation: None,
            clients: 5,
            keys: 3,
            think_ms_max: 30,
            trace_tail: 50,
            check_linearizability: true,
            state_machine: MachineKind::Register,
        }
    }
}

/// A failed run.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Which invariant (or "panic").
    pub invariant: String,
    /// What happened.
    pub detail: String,
    /// The last trace records before the failure.
    pub trace_tail: Vec<String>,
}

/// Client operation counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Acknowledged.
    pub ok: u64,
    /// Certainly not executed.
    pub fail: u64,
    /// Unknown outcome.
    pub info: u64,
}

/// Outcomes of the membership changes and leadership transfers a run asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdminCounts {
    /// Membership changes answered with the new membership.
    pub membership_ok: u64,
    /// Of those, changes that replaced two or more voters at once.
    pub replaced_several_ok: u64,
    /// Of those, changes that removed the leader they were sent to.
    pub leader_removed_ok: u64,
    /// Membership changes refused or of unknown outcome (busy, not leader,
    /// dropped, timed out, member down): normal under chaos.
    pub membership_other: u64,
    /// Transfers answered `Transferred` during the chaos phase.
    pub transfers_ok: u64,
    /// Transfers refused or timed out during the chaos phase.
    pub transfers_other: u64,
    /// True if the transfer in the healthy period after heal completed (only
    /// profiles with transfers try one).
    pub healthy_transfer: bool,
    /// Voters at the end of the run.
    pub final_voters: u64,
    /// Learners at the end of the run.
    pub final_learners: u64,
    /// Figure 8 episodes that went to plan (profile `figure8`).
    pub figure8_complete: u64,
    /// Figure 8 episodes abandoned (an election or a delivery did not happen
    /// in time).
    pub figure8_abandoned: u64,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The fingerprint of everything the members stepped and emitted.
    pub trace_hash: u64,
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
    /// Simulator counters.
    pub stats: SimStats,
    /// Client outcomes.
    pub ops: OpCounts,
    /// Simulated time the run took.
    pub sim_elapsed: Duration,
    /// Wall-clock time the run took (simulation and checks).
    pub wall_elapsed: Duration,
    /// Wall-clock time of the linearizability check alone.
    pub check_elapsed: Duration,
    /// Highest committed index.
    pub commit_index: u64,
    /// Terms that had a leader.
    pub terms: usize,
    /// Membership changes and transfers.
    pub admin: AdminCounts,
    /// Whether the members served reads from leases.
    pub lease_reads: bool,
}

/// How long the cluster gets after healing to elect a leader and commit a write.
const LIVENESS_BOUND: Duration = Duration::from_secs(20);
/// Client-side timeout of one request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a healthy cluster gets to have the target of a transfer lead.
const TRANSFER_BOUND: Duration = Duration::from_secs(3);
/// Transfers tried in the healthy period before the run fails.
const HEALTHY_TRANSFER_TRIES: usize = 3;
/// How often log matching is checked during the run.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

thread_local! {
    static PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs a panic hook that records the message and location of a panic for the
/// report instead of printing it (set `SIM_PANIC_PRINT=1` to print as well).
pub fn install_panic_hook() {
    let print = std::env::var_os("SIM_PANIC_PRINT").is_some();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic)".into());
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        PANIC.with(|p| *p.borrow_mut() = Some(format!("{message}{location}")));
        if print {
            default(info);
        }
    }));
}

fn core_tune(
    mutation: Option<String>,
    spec: &ProfileSpec,
    lease_reads: bool,
) -> Arc<dyn Fn(&mut Config) + Send + Sync> {
    let (append_bytes_max, inflight_msgs_max) = (spec.append_bytes_max, spec.inflight_msgs_max);
    let election_timeout_ms = spec.election_timeout_ms;
    let clock_drift_max_ms = spec.clock_drift_max_ms;
    Arc::new(move |config: &mut Config| {
        config.snapshot_threshold_entries = 300;
        config.compaction_lag_entries = 50;
        if lease_reads {
            config.lease_reads = true;
            config.clock_drift_max_ms = clock_drift_max_ms;
        }
        if let Some(bytes) = append_bytes_max {
            config.append_bytes_max = bytes;
        }
        if let Some(inflight) = inflight_msgs_max {
            config.inflight_msgs_max = inflight;
        }
        if let Some(timeout) = election_timeout_ms {
            config.election_timeout_ms = timeout;
            config.heartbeat_interval_ms = (timeout / 6).max(1);
        }
        #[cfg(feature = "mutations")]
        {
            config.mutation = mutation.as_deref().and_then(lockstep_core::config::Mutation::from_name);
        }
        #[cfg(not(feature = "mutations"))]
        let _ = &mutation;
    })
}

/// Checks that a mutation name can be used in this build.
pub fn validate_mutation(name: &str) -> Result<(), String> {
    #[cfg(feature = "mutations")]
    {
        if lockstep_core::config::Mutation::from_name(name).is_some() {
            return Ok(());
        }
        let names: Vec<_> = lockstep_core::config::Mutation::ALL.iter().map(|m| m.name()).collect();
        Err(format!("unknown mutation {name:?}; one of {}", names.join(", ")))
    }
    #[cfg(not(feature = "mutations"))]
    Err(format!("--mutation {name} needs a build with `--features mutations`"))
}

/// The planted bugs this build knows.
pub fn mutation_names() -> Vec<&'static str> {
    #[cfg(feature = "mutations")]
    return lockstep_core::config::Mutation::ALL.iter().map(|m| m.name()).collect();
    #[cfg(not(feature = "mutations"))]
    Vec::new()
}

fn cluster_config(options: &RunOptions, spec: &ProfileSpec, lease_reads: bool) -> ClusterConfig {
    ClusterConfig {
        nodes: options.nodes,
        group: 1,
        seed: options.seed,
        net: NetConfig {
            latency_us_min: spec.latency_us.0,
            latency_us_max: spec.latency_us.1,
            spike_ppm: spec.spike_ppm,
            spike_us_max: 300_000,
            loss_ppm: spec.loss_ppm,
            duplicate_ppm: spec.duplicate_ppm,
            corrupt_ppm: spec.corrupt_ppm,
        },
        disk: DiskConfig {
            fsync_us_min: spec.fsync_us.0,
            fsync_us_max: spec.fsync_us.1,
            fsync_slow_ppm: spec.fsync_slow_ppm,
            fsync_error_ppm: spec.fsync_error_ppm,
            fsync_slow_us_max: 200_000,
            torn_write_ppm: spec.torn_write_ppm,
            keep_unsynced_prefix: spec.keep_unsynced_prefix,
            ..DiskConfig::default()
        },
        clock_offset_ms_max: 1_000_000,
        clock_drift_ppm_max: spec.drift_ppm_max,
        client_latency_us: (100, 1_000),
        trace_ring_len: options.trace_tail,
        crash_after_vote_ppm: spec.crash_after_vote_ppm,
        crash_after_elected_ppm: spec.crash_after_elected_ppm,
        crash_after_commit_ppm: spec.crash_after_commit_ppm,
        crash_point_delay_us: spec.crash_point_delay_us,
        crash_point_down_ms: (20, 300),
        state_machine: options.state_machine,
        tune: core_tune(options.mutation.clone(), spec, lease_reads),
    }
}

/// Runs one seed in a fresh madsim runtime. A panic anywhere in the run (core
/// asserts its invariants) is a failure of the seed, not of the process.
pub fn run_seed(options: &RunOptions) -> RunReport {
    let slot: Arc<Mutex<Option<Cluster>>> = Arc::new(Mutex::new(None));
    let wall = std::time::Instant::now();
    let runtime = madsim::runtime::Runtime::with_seed_and_config(options.seed, madsim::Config::default());
    PANIC.with(|p| p.borrow_mut().take());
    let outcome = {
        let options = options.clone();
        let slot = slot.clone();
        catch_unwind(AssertUnwindSafe(|| runtime.block_on(scenario(options, slot))))
    };
    let sim_wall = wall.elapsed();
    drop(runtime);
    let cluster = lock(&slot).take();
    let tail = |cluster: &Option<Cluster>| -> Vec<String> {
        cluster.as_ref().map(|c| c.trace_tail().iter().map(|r| r.to_string()).collect()).unwrap_or_default()
    };
    let mut report = RunReport {
        seed: options.seed,
        trace_hash: cluster.as_ref().map_or(0, |c| c.trace_hash()),
        failure: None,
        stats: cluster.as_ref().map(|c| c.stats()).unwrap_or_default(),
        ops: OpCounts::default(),
        sim_elapsed: Duration::ZERO,
        wall_elapsed: sim_wall,
        check_elapsed: Duration::ZERO,
        commit_index: cluster.as_ref().map_or(0, |c| c.commit_index()),
        terms: cluster.as_ref().map_or(0, |c| c.terms_with_leader()),
        admin: AdminCounts::default(),
        lease_reads: false,
    };
    match outcome {
        Err(_) => {
            let last = cluster.as_ref().and_then(|c| c.trace_tail().last().map(|r| r.sim_us));
            report.sim_elapsed = Duration::from_micros(last.unwrap_or(0));
            let message = PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| "unknown panic".into());
            report.failure = Some(Failure { invariant: "panic".into(), detail: message, trace_tail: tail(&cluster) });
        }
        Ok(done) => {
            report.ops = done.ops;
            report.admin = done.admin;
            report.lease_reads = done.lease_reads;
            report.sim_elapsed = done.sim_elapsed;
            if let Some(violation) = done.violation {
                report.failure = Some(Failure {
                    invariant: violation.invariant.to_string(),
                    detail: violation.detail,
                    trace_tail: tail(&cluster),
                });
            } else if options.check_linearizability {
                let started = std::time::Instant::now();
                let result = check(&done.history, &CheckConfig::default());
                report.check_elapsed = started.elapsed();
                if !result.valid {
                    let detail: Vec<String> = result.failures().map(|k| k.to_string()).collect();
                    report.failure = Some(Failure {
                        invariant: format!("linearizability ({:?})", result.verdict),
                        detail: detail.join("\n"),
                        trace_tail: tail(&cluster),
                    });
                }
            }
        }
    }
    report.wall_elapsed = wall.elapsed();
    report
}

struct Done {
    history: History,
    ops: OpCounts,
    admin: AdminCounts,
    lease_reads: bool,
    violation: Option<lockstep_sim::invariants::Violation>,
    sim_elapsed: Duration,
}

struct Shared {
    cluster: Cluster,
    spec: ProfileSpec,
    lease_reads: bool,
    admin: Mutex<AdminCounts>,
    /// True while the nemesis waits for the answer to a membership change or
    /// transfer: one at a time, as an operator would.
    admin_busy: AtomicBool,
    history: Mutex<HistoryRecorder>,
    ops: Mutex<OpCounts>,
    /// Last value seen per key, for compare-and-set arguments.
    last_value: Mutex<BTreeMap<String, i64>>,
    next_value: Mutex<i64>,
    stop_clients: AtomicBool,
    stop_nemesis: AtomicBool,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.cluster.now_us() * 1_000
    }
}

async fn scenario(options: RunOptions, slot: Arc<Mutex<Option<Cluster>>>) -> Done {
    let spec = options.faults.spec();
    let lease_reads = spec.lease_reads_percent > 0 && thread_rng().below(100) < spec.lease_reads_percent;
    let cluster = Cluster::start(cluster_config(&options, &spec, lease_reads));
    *lock(&slot) = Some(cluster.clone());
    for spare in 1..=spec.spare_members {
        cluster.add_member(options.nodes + spare);
    }
    cluster.note(format!(
        "seed {} nodes {} spare {} faults {} lease_reads {lease_reads} mutation {:?}",
        options.seed, options.nodes, spec.spare_members, options.faults, options.mutation
    ));
    if options.state_machine != MachineKind::Register {
        cluster.note(format!("state machine {}", options.state_machine));
    }
    let shared = Arc::new(Shared {
        cluster: cluster.clone(),
        spec: spec.clone(),
        lease_reads,
        admin: Mutex::new(AdminCounts::default()),
        admin_busy: AtomicBool::new(false),
        history: Mutex::new(HistoryRecorder::new()),
        ops: Mutex::new(OpCounts::default()),
        last_value: Mutex::new(BTreeMap::new()),
        next_value: Mutex::new(1),
        stop_clients: AtomicBool::new(false),
        stop_nemesis: AtomicBool::new(false),
    });
    let mut clients = Vec::new();
    for client in 0..options.clients {
        let shared = shared.clone();
        let options = options.clone();
        let read_percent = spec.read_percent;
        clients.push(madsim::task::spawn(async move { run_client(shared, client, &options, read_percent).await }));
    }
    let nemesis = {
        let shared = shared.clone();
        let spec = spec.clone();
        madsim::task::spawn(async move { run_nemesis(shared, spec).await })
    };

    // Chaos phase: check log matching periodically, stop early on a violation.
    let chaos_end = cluster.now_us() + options.duration.as_micros() as u64;
    while cluster.now_us() < chaos_end && cluster.violation().is_none() {
        sleep(CHECK_INTERVAL).await;
        cluster.check_log_matching();
    }
    shared.stop_nemesis.store(true, Ordering::Relaxed);
    shared.stop_clients.store(true, Ordering::Relaxed);
    let _ = nemesis.await;

    if cluster.violation().is_none() {
        heal_everything(&cluster);
        // Pending client operations end within the client timeout.
        for client in clients {
            let _ = client.await;
        }
        liveness(&shared, &options).await;
        cluster.check_log_matching();
    }
    let ops = *lock(&shared.ops);
    let admin = *lock(&shared.admin);
    let history = std::mem::take(&mut *lock(&shared.history)).finish();
    Done {
        history,
        ops,
        admin,
        lease_reads,
        violation: cluster.violation(),
        sim_elapsed: Duration::from_micros(cluster.now_us()),
    }
}

fn heal_everything(cluster: &Cluster) {
    cluster.note("heal everything".into());
    cluster.disable_crash_points();
    cluster.stop_disk_faults();
    cluster.heal_network();
    let net = NetConfig { latency_us_min: 200, latency_us_max: 3_000, ..NetConfig::default() };
    cluster.set_net_config(net);
    for id in cluster.members() {
        match cluster.status(id) {
            MemberStatus::Paused => cluster.resume(id),
            MemberStatus::Down => cluster.restart(id),
            MemberStatus::Up | MemberStatus::Refused(_) => {}
        }
    }
}

/// After healing: a leader must commit a write; the membership must settle (not
/// joint, committed); members outside it are stopped for good, and the leader
/// must still commit a write that every running member of the final membership
/// applies, each reporting that same membership; where the profile transfers
/// leadership, a transfer must complete; then each key is read once more
/// (recorded in the history, so a lost acknowledged write fails the
/// linearizability check).
async fn liveness(shared: &Shared, options: &RunOptions) {
    let cluster = &shared.cluster;
    let deadline = cluster.now_us() + LIVENESS_BOUND.as_micros() as u64;
    if commit_probe(cluster, deadline).await.is_none() {
        return;
    }
    let Some(membership) = settled_membership(cluster, deadline).await else {
        return;
    };
    {
        let mut admin = lock(&shared.admin);
        admin.final_voters = membership.voters.len() as u64;
        admin.final_learners = membership.learners.len() as u64;
    }
    // Removed members stop for good: from now on only the final membership can
    // make progress, so a leader that still counted a removed voter would stall.
    for id in cluster.members() {
        if !membership.contains(id) && matches!(cluster.status(id), MemberStatus::Up | MemberStatus::Paused) {
            cluster.note(format!("stop n{id}: not in the final membership {membership:?}"));
            cluster.crash(id);
        }
    }
    let deadline = cluster.now_us() + LIVENESS_BOUND.as_micros() as u64;
    let Some(index) = commit_probe(cluster, deadline).await else {
        return;
    };
    if !catch_up(cluster, &membership, index, deadline).await {
        return;
    }
    for id in membership.members() {
        if cluster.status(id) != MemberStatus::Up {
            continue;
        }
        let seen = cluster.with_node(id, |n| n.raft().membership().clone());
        if seen.as_ref() != Some(&membership) {
            cluster.fail(
                "membership agreement",
                format!("n{id} reports membership {seen:?}, the leader {membership:?} (after catching up to {index})"),
            );
            return;
        }
    }
    if shared.spec.injects(Fault::TransferLeader) && !healthy_transfer(shared, &membership).await {
        return;
    }
    for key in 0..options.keys {
        let key = format!("k{key}");
        let process = 1_000_000 + options.clients * 1_000;
        let mut done = false;
        for _ in 0..20 {
            let Some((leader, _)) = cluster.leader() else {
                sleep(Duration::from_millis(100)).await;
                continue;
            };
            if client_op(shared, process, leader, &key, F::Read, Value::Nil).await == OpType::Ok {
                done = true;
                break;
            }
        }
        if !done {
            cluster.fail("liveness", format!("final read of {key} did not succeed after healing"));
            return;
        }
    }
}

/// Writes a probe through the leader until one commits; returns its index, or
/// records a liveness failure at `deadline_us`.
async fn commit_probe(cluster: &Cluster, deadline_us: u64) -> Option<u64> {
    while cluster.now_us() < deadline_us {
        if let Some((leader, _)) = cluster.leader() {
            let probe = cluster.state_machine().write_command("probe", 0);
            if let ClientOutcome::Reply(Ok(Response::Written { index, .. })) =
                cluster.request(leader, Request::Write(probe), CLIENT_TIMEOUT).await
            {
                return Some(index);
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
    let statuses: Vec<_> = cluster.members().into_iter().map(|id| (id, cluster.status(id))).collect();
    cluster.fail(
        "liveness",
        format!("no leader committed a write within {LIVENESS_BOUND:?} after healing; members {statuses:?}"),
    );
    None
}

/// Waits until a leader that is one of its voters holds a membership that is
/// neither joint nor uncommitted, and returns it.
async fn settled_membership(cluster: &Cluster, deadline_us: u64) -> Option<Membership> {
    while cluster.now_us() < deadline_us {
        let settled = cluster.leader().and_then(|(leader, _)| {
            cluster
                .with_node(leader, |n| {
                    let raft = n.raft();
                    let membership = raft.membership();
                    let settled = !membership.is_joint()
                        && raft.last_membership_index() <= raft.commit_index()
                        && membership.voters.contains(&leader);
                    settled.then(|| membership.clone())
                })
                .flatten()
        });
        if settled.is_some() {
            return settled;
        }
        sleep(Duration::from_millis(50)).await;
    }
    let seen: Vec<_> = cluster
        .members()
        .into_iter()
        .filter_map(|id| cluster.with_node(id, |n| (id, n.raft().role(), n.raft().membership().clone())))
        .collect();
    cluster.fail("liveness", format!("the membership did not settle after healing: {seen:?}"));
    None
}

/// Waits until every running member of `membership` has committed `index`.
async fn catch_up(cluster: &Cluster, membership: &Membership, index: u64, deadline_us: u64) -> bool {
    loop {
        let lagging: Vec<(NodeId, u64)> = cluster
            .commit_indices()
            .into_iter()
            .filter(|(id, commit)| {
                membership.contains(*id) && *commit < index && cluster.status(*id) == MemberStatus::Up
            })
            .collect();
        if lagging.is_empty() {
            return true;
        }
        if cluster.now_us() >= deadline_us {
            cluster.fail(
                "liveness",
                format!("members {lagging:?} (id, commit) did not catch up to index {index} after healing"),
            );
            return false;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// In the healthy cluster after heal, the leader must hand leadership to another
/// running voter within a few tries.
async fn healthy_transfer(shared: &Shared, membership: &Membership) -> bool {
    let cluster = &shared.cluster;
    let mut tries = Vec::new();
    for _ in 0..HEALTHY_TRANSFER_TRIES {
        let Some((leader, _)) = cluster.leader() else {
            sleep(Duration::from_millis(200)).await;
            continue;
        };
        let targets: Vec<NodeId> = membership
            .voters
            .iter()
            .copied()
            .filter(|id| *id != leader && cluster.status(*id) == MemberStatus::Up)
            .collect();
        if targets.is_empty() {
            // A single running voter: there is no one to hand leadership to.
            return true;
        }
        let to = targets[thread_rng().below(targets.len() as u64) as usize];
        cluster.note(format!("healthy transfer n{leader} -> n{to}"));
        let outcome = cluster.request(leader, Request::TransferLeader { to }, CLIENT_TIMEOUT).await;
        if let ClientOutcome::Reply(Ok(Response::Transferred { .. })) = outcome {
            let deadline = cluster.now_us() + TRANSFER_BOUND.as_micros() as u64;
            while cluster.now_us() < deadline {
                if cluster.leader().map(|(id, _)| id) == Some(to) {
                    lock(&shared.admin).healthy_transfer = true;
                    return true;
                }
                sleep(Duration::from_millis(20)).await;
            }
        }
        tries.push((leader, to, outcome, cluster.leader()));
    }
    cluster.fail(
        "transfer",
        format!("no leadership transfer completed in a healthy cluster; (from, to, answer, leader after): {tries:?}"),
    );
    false
}

async fn run_client(shared: Arc<Shared>, client: u64, options: &RunOptions, read_percent: u64) {
    let cluster = &shared.cluster;
    let members = cluster.members();
    let mut process = client;
    let mut hint: Option<NodeId> = None;
    while !shared.stop_clients.load(Ordering::Relaxed) {
        let think = thread_rng().between(0, options.think_ms_max);
        sleep(Duration::from_millis(think)).await;
        if shared.stop_clients.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("k{}", thread_rng().below(options.keys.max(1)));
        let roll = thread_rng().below(100);
        let (f, value) = if roll < read_percent {
            (F::Read, Value::Nil)
        } else if roll < read_percent + (100 - read_percent) * 2 / 3 {
            (F::Write, Value::Int(next_value(&shared)))
        } else {
            let expected = lock(&shared.last_value).get(&key).copied();
            (F::Cas, Value::Cas { expected, new: next_value(&shared) })
        };
        let target = match hint {
            Some(leader) if thread_rng().below(100) < 80 => leader,
            _ => members[thread_rng().below(members.len() as u64) as usize],
        };
        let (outcome, new_hint) = client_op_hinted(&shared, process, target, &key, f, value).await;
        hint = new_hint;
        if outcome == OpType::Info {
            // The operation may still take effect: this process is gone for good.
            process += options.clients;
        }
    }
}

async fn client_op(shared: &Shared, process: u64, target: NodeId, key: &str, f: F, value: Value) -> OpType {
    client_op_hinted(shared, process, target, key, f, value).await.0
}

fn next_value(shared: &Shared) -> i64 {
    let mut next = lock(&shared.next_value);
    *next += 1;
    *next
}

/// Runs one operation against `target` and records it; returns its outcome and
/// where the client should send its next request.
async fn client_op_hinted(
    shared: &Shared,
    process: u64,
    target: NodeId,
    key: &str,
    f: F,
    value: Value,
) -> (OpType, Option<NodeId>) {
    let cluster = &shared.cluster;
    let machine = cluster.state_machine();
    let request = encode_op(machine, key, f, value);
    let op = {
        let mut history = lock(&shared.history);
        history.invoke(process, f, Some(key), value, shared.now_ns()).expect("one op per process at a time")
    };
    let outcome = cluster.request(target, request, CLIENT_TIMEOUT).await;
    let mut hint = Some(target);
    let (op_type, result) = match outcome {
        ClientOutcome::Reply(Ok(Response::Read(bytes))) if f == F::Read => match decode_read(machine, key, &bytes) {
            Ok(Some(v)) => (OpType::Ok, Value::Int(v)),
            Ok(None) => (OpType::Ok, Value::Nil),
            Err(why) => {
                cluster.fail("client protocol", format!("read of {key} answered {why}"));
                (OpType::Info, value)
            }
        },
        ClientOutcome::Reply(Ok(Response::Written { result, .. })) if f != F::Read => {
            match decode_write(machine, f, &result) {
                Ok(true) => (OpType::Ok, value),
                Ok(false) if f == F::Cas => (OpType::Fail, value),
                other => {
                    cluster.fail("client protocol", format!("{f:?} of {key} answered {other:?}"));
                    (OpType::Info, value)
                }
            }
        }
        ClientOutcome::Reply(Ok(other)) => {
            cluster.fail("client protocol", format!("{f:?} of {key} answered {other:?}"));
            (OpType::Info, value)
        }
        ClientOutcome::Reply(Err(error)) => match error {
            ClientError::NotLeader { leader } => {
                hint = leader;
                (OpType::Fail, value)
            }
            ClientError::Dropped | ClientError::Busy | ClientError::TooLarge | ClientError::Invalid(_) => {
                hint = None;
                (OpType::Fail, value)
            }
            ClientError::Timeout => {
                hint = None;
                (OpType::Info, value)
            }
        },
        ClientOutcome::Unavailable => {
            hint = None;
            (OpType::Fail, value)
        }
        ClientOutcome::Lost | ClientOutcome::TimedOut => {
            hint = None;
            (OpType::Info, value)
        }
    };
    if op_type == OpType::Ok {
        let seen = match result {
            Value::Int(v) => Some(v),
            Value::Cas { new, .. } => Some(new),
            Value::Nil => None,
        };
        if let Some(v) = seen {
            lock(&shared.last_value).insert(key.to_string(), v);
        }
    }
    {
        let mut history = lock(&shared.history);
        history.complete(op, op_type, result, shared.now_ns()).expect("completes the op invoked above");
    }
    let mut ops = lock(&shared.ops);
    match op_type {
        OpType::Ok => ops.ok += 1,
        OpType::Fail => ops.fail += 1,
        _ => ops.info += 1,
    }
    (op_type, hint)
}

/// The request for a client operation on `machine`. On the KV store: a write is
/// a put of the decimal string, a read a linearizable range of the one key, a
/// cas a txn that puts the new value if the stored one equals the expected one
/// (or, expecting nil, if the key is absent: version 0).
fn encode_op(machine: MachineKind, key: &str, f: F, value: Value) -> Request {
    match (machine, f, value) {
        (MachineKind::Register, F::Read, _) => Request::Read(RegisterQuery { key: key.into() }.encode()),
        (MachineKind::Register, F::Write, Value::Int(v)) => {
            Request::Write(RegisterCommand::Write { key: key.into(), value: v }.encode())
        }
        (MachineKind::Register, F::Cas, Value::Cas { expected, new }) => {
            // The register has no "never written" sentinel: a cas expecting nil is
            // sent as a cas expecting a value no client ever writes.
            let expected = expected.unwrap_or(i64::MIN);
            Request::Write(RegisterCommand::Cas { key: key.into(), expected, new }.encode())
        }
        (MachineKind::Kv, F::Read, _) => Request::Read(
            KvQuery::Range(RangeRequest {
                key: key.as_bytes().to_vec(),
                serializable: false,
                ..RangeRequest::default()
            })
            .encode(),
        ),
        (MachineKind::Kv, F::Write, Value::Int(v)) => Request::Write(machine.write_command(key, v)),
        (MachineKind::Kv, F::Cas, Value::Cas { expected, new }) => {
            let target = match expected {
                Some(expected) => CompareTarget::Value(expected.to_string().into_bytes()),
                None => CompareTarget::Version(0),
            };
            let put = PutRequest {
                key: key.as_bytes().to_vec(),
                value: new.to_string().into_bytes(),
                ..PutRequest::default()
            };
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal,
                    target,
                    key: key.as_bytes().to_vec(),
                    range_end: Vec::new(),
                }],
                success: vec![RequestOp::Put(put)],
                failure: Vec::new(),
            };
            Request::Write(KvCommand::Txn(txn).encode())
        }
        _ => unreachable!("op shapes are built by the client"),
    }
}

/// The value a read reply holds (`None`: the key is absent), or why the reply
/// makes no sense.
fn decode_read(machine: MachineKind, key: &str, bytes: &[u8]) -> Result<Option<i64>, String> {
    match machine {
        MachineKind::Register => match RegisterResult::decode(bytes) {
            Ok(RegisterResult::Value(v)) => Ok(v),
            other => Err(format!("{other:?}")),
        },
        MachineKind::Kv => match decode_reply(bytes) {
            Ok(Ok(KvResponse::Range(range))) => match range.kvs.as_slice() {
                [] if range.count == 0 => Ok(None),
                [kv] if kv.key == key.as_bytes() && range.count == 1 => std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .map(Some)
                    .ok_or_else(|| format!("{range:?} (not a decimal value)")),
                _ => Err(format!("{range:?} (not one key)")),
            },
            other => Err(format!("{other:?}")),
        },
    }
}

/// Whether a write or cas took effect (`false`: the cas did not match), or why
/// the reply makes no sense.
fn decode_write(machine: MachineKind, f: F, bytes: &[u8]) -> Result<bool, String> {
    match machine {
        MachineKind::Register => match RegisterResult::decode(bytes) {
            Ok(RegisterResult::Ok) => Ok(true),
            Ok(RegisterResult::CasFailed { .. }) if f == F::Cas => Ok(false),
            other => Err(format!("{other:?}")),
        },
        MachineKind::Kv => match (f, decode_reply(bytes)) {
            (F::Write, Ok(Ok(KvResponse::Put(_)))) => Ok(true),
            (F::Cas, Ok(Ok(KvResponse::Txn(txn)))) if txn.responses.len() == usize::from(txn.succeeded) => {
                Ok(txn.succeeded)
            }
            (_, other) => Err(format!("{other:?}")),
        },
    }
}

async fn run_nemesis(shared: Arc<Shared>, spec: ProfileSpec) {
    let cluster = shared.cluster.clone();
    let total: u32 = spec.faults.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return;
    }
    let mut corrupted = false;
    let mut admin_tasks = Vec::new();
    loop {
        let wait = thread_rng().between(spec.interval_ms.0, spec.interval_ms.1);
        sleep(Duration::from_millis(wait)).await;
        if shared.stop_nemesis.load(Ordering::Relaxed) {
            break;
        }
        let mut roll = thread_rng().below(u64::from(total)) as u32;
        let fault = spec
            .faults
            .iter()
            .find(|(_, w)| {
                if roll < *w {
                    return true;
                }
                roll -= w;
                false
            })
            .map(|(f, _)| *f)
            .expect("roll below total");
        match fault {
            Fault::ChangeMembership | Fault::TransferLeader => admin_tasks.extend(start_admin(&shared, fault)),
            Fault::Figure8 => {
                let complete = figure8::episode(&cluster, Duration::from_micros(spec.latency_us.1)).await;
                let mut admin = lock(&shared.admin);
                if complete {
                    admin.figure8_complete += 1;
                } else {
                    admin.figure8_abandoned += 1;
                }
            }
            _ => inject(&cluster, &spec, shared.lease_reads, fault, &mut corrupted),
        }
    }
    // The last request's answer comes within the client timeout; the membership
    // it asked for must be in the log (or not) before the cluster heals.
    for task in admin_tasks {
        let _ = task.await;
    }
}

/// Sends the leader a membership change or a transfer and checks the answer, in
/// a task of its own; one at a time. Returns the task, or `None` if nothing was
/// sent (another request pending, no leader, nothing to change).
fn start_admin(shared: &Arc<Shared>, fault: Fault) -> Option<madsim::task::JoinHandle<()>> {
    if shared.admin_busy.swap(true, Ordering::Relaxed) {
        return None;
    }
    let cluster = &shared.cluster;
    let planned = cluster.leader().and_then(|(leader, _)| {
        let current = cluster.with_node(leader, |n| n.raft().membership().clone())?;
        match fault {
            Fault::ChangeMembership => {
                let usable = |id| !matches!(cluster.status(id), MemberStatus::Refused(_));
                let plan = plan_membership_change(&mut thread_rng(), &current, leader, &cluster.members(), usable)?;
                Some((leader, Admin::Membership(plan)))
            }
            _ => plan_transfer(&mut thread_rng(), &current, leader).map(|to| (leader, Admin::Transfer(to))),
        }
    });
    let Some((leader, admin)) = planned else {
        shared.admin_busy.store(false, Ordering::Relaxed);
        return None;
    };
    let shared = shared.clone();
    Some(madsim::task::spawn(async move {
        let cluster = &shared.cluster;
        let request = match &admin {
            Admin::Membership(plan) => {
                Request::ChangeMembership { voters: plan.voters.clone(), learners: plan.learners.clone() }
            }
            Admin::Transfer(to) => Request::TransferLeader { to: *to },
        };
        cluster.note(format!("nemesis asks n{leader}: {admin:?}"));
        let outcome = cluster.request(leader, request, CLIENT_TIMEOUT).await;
        cluster.note(format!("n{leader} answers {admin:?}: {outcome:?}"));
        check_admin_outcome(&shared, leader, &admin, outcome);
        shared.admin_busy.store(false, Ordering::Relaxed);
    }))
}

/// A request of the nemesis.
#[derive(Debug, Clone)]
enum Admin {
    Membership(Plan),
    Transfer(NodeId),
}

fn check_admin_outcome(shared: &Shared, leader: NodeId, admin: &Admin, outcome: ClientOutcome) {
    let cluster = &shared.cluster;
    let mut counts = lock(&shared.admin);
    let refused = |error: &ClientError| {
        matches!(error, ClientError::Busy | ClientError::NotLeader { .. } | ClientError::Timeout | ClientError::Dropped)
    };
    match (admin, outcome) {
        (Admin::Membership(plan), ClientOutcome::Reply(Ok(Response::Membership(membership)))) => {
            if !plan.matches(&membership) {
                cluster.fail(
                    "membership reply",
                    format!("n{leader} asked for {plan:?} answered that {membership:?} is in force"),
                );
            }
            counts.membership_ok += 1;
            if plan.voters_removed >= 2 {
                counts.replaced_several_ok += 1;
            }
            if !plan.voters.contains(&leader) {
                counts.leader_removed_ok += 1;
            }
        }
        (Admin::Transfer(to), ClientOutcome::Reply(Ok(Response::Transferred { leader: now }))) => {
            if now == Some(leader) {
                cluster.fail("transfer reply", format!("n{leader} asked to hand over to n{to} says it still leads"));
            }
            counts.transfers_ok += 1;
        }
        (Admin::Membership(_), ClientOutcome::Reply(Err(error))) if refused(&error) => counts.membership_other += 1,
        // A transfer target may stop being a voter between the choice and the
        // request (a change of unknown outcome commits meanwhile).
        (Admin::Transfer(_), ClientOutcome::Reply(Err(error)))
            if refused(&error) || matches!(error, ClientError::Invalid(_)) =>
        {
            counts.transfers_other += 1
        }
        (admin, ClientOutcome::Reply(reply)) => {
            cluster.fail("admin protocol", format!("n{leader} answered {admin:?} with {reply:?}"));
        }
        (Admin::Membership(_), _) => counts.membership_other += 1,
        (Admin::Transfer(_), _) => counts.transfers_other += 1,
    }
}

fn random_member(cluster: &Cluster) -> NodeId {
    let members = cluster.members();
    members[thread_rng().below(members.len() as u64) as usize]
}

fn later(cluster: &Cluster, spec: &ProfileSpec, what: impl FnOnce(&Cluster) + Send + 'static) {
    let cluster = cluster.clone();
    let down = thread_rng().between(spec.down_ms.0, spec.down_ms.1);
    madsim::task::spawn(async move {
        sleep(Duration::from_millis(down)).await;
        what(&cluster);
    });
}

fn inject(cluster: &Cluster, spec: &ProfileSpec, lease_reads: bool, fault: Fault, corrupted: &mut bool) {
    let members = cluster.members();
    match fault {
        Fault::PartitionRandom => {
            let mut left = Vec::new();
            let mut right = Vec::new();
            for id in &members {
                if thread_rng().below(2) == 0 {
                    left.push(*id);
                } else {
                    right.push(*id);
                }
            }
            cluster.partition(&[left, right]);
        }
        Fault::IsolateLeader => {
            if let Some((leader, _)) = cluster.leader() {
                let rest: Vec<_> = members.iter().copied().filter(|id| *id != leader).collect();
                cluster.partition(&[vec![leader], rest]);
            }
        }
        Fault::OneWay => {
            for _ in 0..thread_rng().between(1, 3) {
                let (from, to) = (random_member(cluster), random_member(cluster));
                if from != to {
                    cluster.block(from, to);
                }
            }
        }
        Fault::Clog => {
            let (from, to) = (random_member(cluster), random_member(cluster));
            if from != to {
                cluster.clog(from, to, Duration::from_millis(thread_rng().between(100, 2_000)));
            }
        }
        Fault::Heal => cluster.heal_network(),
        Fault::Crash | Fault::CrashLeader => {
            let target = match fault {
                Fault::CrashLeader => cluster.leader().map(|(id, _)| id),
                _ => Some(random_member(cluster)),
            };
            if let Some(id) = target {
                cluster.crash(id);
                later(cluster, spec, move |c| c.restart(id));
            }
        }
        Fault::Pause | Fault::PauseLeader => {
            let target = match fault {
                Fault::PauseLeader => cluster.leader().map(|(id, _)| id),
                _ => Some(random_member(cluster)),
            };
            if let Some(id) = target {
                cluster.pause(id);
                later(cluster, spec, move |c| c.resume(id));
            }
        }
        Fault::ClockJump => {
            // A follower whose clock jumps forward stops honouring a leader it
            // heard from early, which a lease relies on: with leases, only a
            // leader's clock jumps (which shortens its own lease).
            let target = if lease_reads { cluster.leader().map(|(id, _)| id) } else { Some(random_member(cluster)) };
            if let Some(id) = target {
                cluster.clock_jump(id, thread_rng().between(100, 3_000));
            }
        }
        Fault::Drift => {
            let id = random_member(cluster);
            let max = spec.drift_ppm_max.unsigned_abs();
            cluster.set_drift(id, thread_rng().between(0, 2 * max) as i64 - max as i64);
        }
        Fault::ChangeMembership | Fault::TransferLeader => unreachable!("sent by start_admin"),
        Fault::Figure8 => unreachable!("run by run_nemesis"),
        Fault::DiskFull => cluster.fill_disk(random_member(cluster)),
        Fault::CorruptAndCrash => {
            // Once per run, so that a quorum always survives.
            if !*corrupted {
                let id = random_member(cluster);
                if cluster.status(id) == MemberStatus::Up && cluster.corrupt_disk(id) {
                    *corrupted = true;
                    cluster.crash(id);
                    later(cluster, spec, move |c| c.restart(id));
                }
            }
        }
    }
}
