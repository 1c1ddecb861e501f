//! Simulator tests: determinism, a small sweep of every fault profile, and the
//! mutation self-test. Run with
//! `RUSTFLAGS="--cfg madsim" cargo test -p sim-tests --release --target-dir target/madsim`
//! (add `--features mutations` for the self-test).
#![cfg(madsim)]

use std::time::Duration;

use lockstep_sim::machine::MachineKind;
use sim_tests::profile::FaultProfile;
use sim_tests::scenario::{install_panic_hook, run_seed, RunOptions, RunReport};

fn options(seed: u64, faults: FaultProfile, seconds: u64) -> RunOptions {
    RunOptions { seed, faults, duration: Duration::from_secs(seconds), ..RunOptions::default() }
}

fn describe(report: &RunReport) -> String {
    match &report.failure {
        None => format!("seed {} passed", report.seed),
        Some(failure) => format!(
            "seed {} violated {}: {}\n{}",
            report.seed,
            failure.invariant,
            failure.detail,
            failure.trace_tail.join("\n")
        ),
    }
}

#[test]
fn same_seed_same_trace() {
    install_panic_hook();
    for faults in [FaultProfile::None, FaultProfile::All] {
        let first = run_seed(&options(42, faults, 10));
        let second = run_seed(&options(42, faults, 10));
        assert!(first.failure.is_none(), "{}", describe(&first));
        assert_ne!(first.trace_hash, 0);
        assert_eq!(first.trace_hash, second.trace_hash, "profile {faults}: same seed, different runs");
        assert_eq!(first.stats, second.stats);
        let other = run_seed(&options(43, faults, 10));
        assert_ne!(first.trace_hash, other.trace_hash, "different seeds should differ");
    }
}

#[test]
fn small_sweep_of_every_profile_passes() {
    install_panic_hook();
    for faults in FaultProfile::ALL {
        for seed in 0..4 {
            let report = run_seed(&options(seed, faults, 15));
            assert!(report.failure.is_none(), "profile {faults}: {}", describe(&report));
            assert!(report.ops.ok > 0, "profile {faults} seed {seed}: no client operation succeeded");
        }
    }
}

#[test]
fn three_member_sweep_passes() {
    install_panic_hook();
    for seed in 100..110 {
        let report = run_seed(&RunOptions { nodes: 3, ..options(seed, FaultProfile::All, 15) });
        assert!(report.failure.is_none(), "{}", describe(&report));
    }
}

/// Sweeps `seeds` of `faults` and returns the reports; every seed must pass.
fn sweep(faults: FaultProfile, seeds: std::ops::Range<u64>, seconds: u64) -> Vec<RunReport> {
    install_panic_hook();
    seeds
        .map(|seed| {
            let report = run_seed(&options(seed, faults, seconds));
            assert!(report.failure.is_none(), "profile {faults}: {}", describe(&report));
            assert!(report.ops.ok > 0, "profile {faults} seed {seed}: no client operation succeeded");
            report
        })
        .collect()
}

#[test]
fn disk_faults_are_exercised_and_recovered_from() {
    let reports = sweep(FaultProfile::Disk, 0..12, 20);
    let total = |f: fn(&RunReport) -> u64| reports.iter().map(f).sum::<u64>();
    assert!(total(|r| r.stats.fsync_errors) > 0, "no fsync failed");
    assert!(total(|r| r.stats.disk_full) > 0, "no disk filled up");
    assert!(total(|r| r.stats.torn_dropped) > 0, "no torn tail was dropped at recovery");
    assert!(total(|r| r.stats.refused) > 0, "no corrupted member refused to start");
    assert!(total(|r| r.stats.restarts) > 0, "no member restarted from its disk");
}

#[test]
fn membership_changes_under_chaos() {
    let reports = sweep(FaultProfile::Membership, 0..30, 20);
    let total = |f: fn(&RunReport) -> u64| reports.iter().map(f).sum::<u64>();
    // Each run already checked agreement on the final membership, progress
    // with removed members stopped, and a transfer in the healthy period.
    assert!(reports.iter().all(|r| r.admin.healthy_transfer));
    assert!(total(|r| r.admin.membership_ok) >= 60, "too few membership changes completed");
    assert!(total(|r| r.admin.replaced_several_ok) > 0, "no change replaced several voters at once");
    assert!(total(|r| r.admin.leader_removed_ok) > 0, "no change removed the leader");
    assert!(reports.iter().any(|r| r.admin.final_learners > 0), "no run ended with learners");
    assert!(reports.iter().any(|r| r.admin.final_voters != 5), "no run ended with another voter count");
}

#[test]
fn leadership_transfers_under_chaos() {
    let reports = sweep(FaultProfile::Transfer, 0..30, 20);
    assert!(reports.iter().all(|r| r.admin.healthy_transfer));
    assert!(reports.iter().filter(|r| r.admin.transfers_ok > 0).count() >= 20, "few transfers completed in chaos");
}

#[test]
fn lease_reads_under_chaos() {
    let reports = sweep(FaultProfile::Leases, 0..30, 20);
    for report in &reports {
        assert!(report.lease_reads, "seed {}: lease reads off", report.seed);
        assert!(report.stats.lease_reads > 0, "seed {}: no read was served from a lease", report.seed);
    }
}

#[test]
fn kv_store_under_chaos() {
    // The MVCC KV store as the state machine: puts, linearizable ranges and
    // txn compare-and-sets, under every fault of `all`, checked as registers.
    install_panic_hook();
    let kv = |seed| RunOptions { state_machine: MachineKind::Kv, ..options(seed, FaultProfile::All, 15) };
    let reports: Vec<RunReport> = (0..20)
        .map(|seed| {
            let report = run_seed(&kv(seed));
            assert!(report.failure.is_none(), "kv: {}", describe(&report));
            // Some schedules stall most of a run (seed 13 removes the leader during
            // a partition, then fills two voters' disks); the 20-seed floor below
            // is what shows the store makes progress under chaos.
            assert!(report.ops.ok > 0, "kv seed {seed}: no operation succeeded");
            report
        })
        .collect();
    let ok: u64 = reports.iter().map(|r| r.ops.ok).sum();
    assert!(ok >= 5_000, "kv: only {ok} operations succeeded in 20 seeds");
    // Members restarted from checkpoints (their storage kept, the log replayed
    // after the checkpoint), not only from full snapshots.
    let from_checkpoints: u64 = reports.iter().map(|r| r.stats.checkpoint_restarts).sum();
    assert!(from_checkpoints >= 5, "kv: only {from_checkpoints} restarts from a checkpoint in 20 seeds");
    // Deterministic, and not the register run under another name.
    assert_eq!(run_seed(&kv(0)).trace_hash, reports[0].trace_hash, "kv: same seed, different runs");
    assert_ne!(run_seed(&options(0, FaultProfile::All, 15)).trace_hash, reports[0].trace_hash);
}

#[test]
fn figure8_episodes_go_to_plan() {
    // The unmutated core passes the scripted Figure 8 episodes (a leader that
    // committed its old entry by counting replicas would lose it), and they
    // mostly go to plan: a profile whose episodes were always abandoned would
    // catch nothing.
    install_panic_hook();
    for nodes in [3, 5] {
        let reports: Vec<RunReport> = (0..8)
            .map(|seed| {
                let report = run_seed(&RunOptions { nodes, ..options(seed, FaultProfile::Figure8, 15) });
                assert!(report.failure.is_none(), "{nodes} members: {}", describe(&report));
                report
            })
            .collect();
        let complete: u64 = reports.iter().map(|r| r.admin.figure8_complete).sum();
        let abandoned: u64 = reports.iter().map(|r| r.admin.figure8_abandoned).sum();
        assert!(
            complete >= 8 && complete >= 2 * abandoned,
            "{nodes} members: {complete} complete, {abandoned} abandoned"
        );
    }
}

#[test]
fn the_all_profile_mixes_in_membership_transfers_and_leases() {
    let reports = sweep(FaultProfile::All, 200..220, 20);
    assert!(reports.iter().any(|r| r.admin.membership_ok > 0));
    assert!(reports.iter().any(|r| r.admin.transfers_ok > 0));
    assert!(reports.iter().all(|r| r.admin.healthy_transfer));
    assert!(reports.iter().any(|r| r.lease_reads) && reports.iter().any(|r| !r.lease_reads));
}

/// Every planted bug must be caught within its seed budget, with the fault
/// profile and cluster size given here (see docs/simulation.md).
#[cfg(feature = "mutations")]
#[test]
#[ignore = "run with `--features mutations -- --ignored mutation`"]
fn every_mutation_is_caught() {
    install_panic_hook();
    // (mutation, members, seed budget)
    let budgets: [(&str, u64, u64); 4] = [
        ("read-without-quorum", 5, 20),
        ("vote-ignores-log", 5, 20),
        ("vote-before-persist", 5, 200),
        ("commit-old-term", 5, 10),
    ];
    for (mutation, nodes, budget) in budgets {
        let faults = FaultProfile::for_mutation(mutation);
        let caught = (0..budget).find_map(|seed| {
            let run = RunOptions { seed, nodes, faults, mutation: Some(mutation.to_string()), ..RunOptions::default() };
            let report = run_seed(&run);
            report.failure.map(|f| (seed, f.invariant))
        });
        assert!(caught.is_some(), "{mutation} survived {budget} seeds of profile {faults}");
        let (seed, invariant) = caught.expect("checked");
        eprintln!("{mutation}: caught at seed {seed} by {invariant}");
    }
}
