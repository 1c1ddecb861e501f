//! `simulate`: runs seeded chaos scenarios against lockstep-core on the madsim
//! simulator and checks Raft's safety invariants, linearizability and liveness.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" cargo run --release -p sim-tests --bin simulate \
//!     --target-dir target/madsim -- --seed 7 --nodes 5 --duration 30s
//! ```

#[cfg(madsim)]
mod cli {
    use std::process::ExitCode;
    use std::time::Duration;

    use clap::Parser;
    use lockstep_sim::machine::MachineKind;
    use sim_tests::profile::FaultProfile;
    use sim_tests::scenario::{install_panic_hook, run_seed, validate_mutation, RunOptions, RunReport};

    /// Seeded deterministic chaos runs of a lockstep cluster.
    #[derive(Parser, Debug)]
    #[command(name = "simulate", version)]
    struct Args {
        /// Run one seed.
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// Run a range of seeds, `FIRST..END` (END excluded) or `FIRST..=LAST`.
        #[arg(long)]
        seeds: Option<String>,
        /// Voting members.
        #[arg(long, default_value_t = 5)]
        nodes: u64,
        /// Simulated length of the chaos phase, e.g. `30s`, `500ms`, `2m`.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        duration: Duration,
        /// Fault profile: none, network, crash, disk, clock, all, crash-heavy,
        /// partition-reads, churn, membership, transfer, leases,
        /// lease-transfer-race, figure8. Default: all, or the mutation's own
        /// profile.
        #[arg(long)]
        faults: Option<FaultProfile>,
        /// A planted bug in core (build with `--features mutations`).
        #[arg(long)]
        mutation: Option<String>,
        /// Concurrent client processes.
        #[arg(long, default_value_t = 5)]
        clients: u64,
        /// Registers the clients use.
        #[arg(long, default_value_t = 3)]
        keys: u64,
        /// The state machine the members run: `register` (core's register) or
        /// `kv` (the etcd-style MVCC store; reads are ranges, cas is a txn).
        #[arg(long, default_value = "register", value_parser = parse_machine)]
        state_machine: MachineKind,
        /// Trace records to print for a failing seed (the latest ones).
        #[arg(long, default_value_t = 50)]
        trace_tail: usize,
        /// Skip the linearizability check.
        #[arg(long)]
        no_linearizability: bool,
        /// Stop a sweep at the first failing seed.
        #[arg(long)]
        fail_fast: bool,
        /// Measure simulation speed: 5 members, no faults, client load; reports
        /// simulated time per wall-clock time.
        #[arg(long)]
        bench: bool,
    }

    fn parse_duration(text: &str) -> Result<Duration, String> {
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| format!("bad duration {text:?}"))?;
        match unit {
            "ms" => Ok(Duration::from_millis(number)),
            "s" | "" => Ok(Duration::from_secs(number)),
            "m" => Ok(Duration::from_secs(number * 60)),
            _ => Err(format!("bad duration unit in {text:?}: use ms, s or m")),
        }
    }

    fn parse_machine(text: &str) -> Result<MachineKind, String> {
        MachineKind::from_name(text).ok_or_else(|| format!("unknown state machine {text:?}: use register or kv"))
    }

    fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
        let bad = || format!("bad seed range {text:?}: use FIRST..END or FIRST..=LAST");
        if let Some((first, last)) = text.split_once("..=") {
            let (first, last) = (first.parse::<u64>().map_err(|_| bad())?, last.parse::<u64>().map_err(|_| bad())?);
            return Ok((first..=last).collect());
        }
        let (first, end) = text.split_once("..").ok_or_else(bad)?;
        let (first, end) = (first.parse::<u64>().map_err(|_| bad())?, end.parse::<u64>().map_err(|_| bad())?);
        Ok((first..end).collect())
    }

    fn replay_command(args: &Args, options: &RunOptions) -> String {
        let features = if options.mutation.is_some() { " --features mutations" } else { "" };
        let mutation = options.mutation.as_ref().map(|m| format!(" --mutation {m}")).unwrap_or_default();
        let machine = match options.state_machine {
            MachineKind::Register => String::new(),
            kind => format!(" --state-machine {kind}"),
        };
        format!(
            "RUSTFLAGS=\"--cfg madsim\" cargo run --release -p sim-tests --bin simulate --target-dir target/madsim{features} -- \
             --seed {} --nodes {} --duration {}ms --faults {} --clients {} --keys {}{machine}{mutation}",
            options.seed,
            options.nodes,
            options.duration.as_millis(),
            options.faults,
            args.clients,
            args.keys,
        )
    }

    /// Disk faults that stopped members, if any.
    fn disk_summary(report: &RunReport) -> String {
        let stats = &report.stats;
        if stats.fsync_errors + stats.disk_full == 0 {
            return String::new();
        }
        format!(" disk_errors(fsync/full)={}/{}", stats.fsync_errors, stats.disk_full)
    }

    fn print_report(args: &Args, options: &RunOptions, report: &RunReport, verbose: bool) {
        let status = if report.failure.is_some() { "FAIL" } else { "ok" };
        println!(
            "seed={} {status} trace_hash={:016x} sim={:.1}s wall={:.2}s commit={} terms={} ops(ok/fail/info)={}/{}/{} \
             crashes={} decode_errors={} refused={}{}{}",
            report.seed,
            report.trace_hash,
            report.sim_elapsed.as_secs_f64(),
            report.wall_elapsed.as_secs_f64(),
            report.commit_index,
            report.terms,
            report.ops.ok,
            report.ops.fail,
            report.ops.info,
            report.stats.crashes,
            report.stats.decode_errors,
            report.stats.refused,
            disk_summary(report),
            admin_summary(report),
        );
        if verbose {
            println!("  stats: {:?}", report.stats);
        }
        if let Some(failure) = &report.failure {
            println!("violated: {}", failure.invariant);
            println!("{}", failure.detail);
            println!("last {} trace records:", failure.trace_tail.len());
            for line in &failure.trace_tail {
                println!("  {line}");
            }
            println!("replay: {}", replay_command(args, options));
        }
    }

    /// The membership changes, transfers and lease reads of a run, where it had any.
    fn admin_summary(report: &RunReport) -> String {
        let admin = &report.admin;
        let mut summary = String::new();
        if admin.membership_ok + admin.membership_other > 0 {
            summary += &format!(
                " membership(ok/other)={}/{} replaced={} leader_removed={} final={}v+{}l",
                admin.membership_ok,
                admin.membership_other,
                admin.replaced_several_ok,
                admin.leader_removed_ok,
                admin.final_voters,
                admin.final_learners,
            );
        }
        if admin.transfers_ok + admin.transfers_other > 0 || admin.healthy_transfer {
            summary += &format!(
                " transfers(ok/other)={}/{} healthy_transfer={}",
                admin.transfers_ok, admin.transfers_other, admin.healthy_transfer
            );
        }
        if report.lease_reads {
            summary += &format!(" lease_reads={}", report.stats.lease_reads);
        }
        if admin.figure8_complete + admin.figure8_abandoned > 0 {
            summary += &format!(" figure8(complete/abandoned)={}/{}", admin.figure8_complete, admin.figure8_abandoned);
        }
        summary
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        install_panic_hook();
        if let Some(mutation) = &args.mutation {
            if let Err(why) = validate_mutation(mutation) {
                eprintln!("error: {why}");
                return ExitCode::from(2);
            }
        }
        let faults = args
            .faults
            .unwrap_or_else(|| args.mutation.as_deref().map_or(FaultProfile::All, FaultProfile::for_mutation));
        let base = RunOptions {
            nodes: args.nodes,
            duration: args.duration,
            faults,
            mutation: args.mutation.clone(),
            clients: args.clients,
            keys: args.keys,
            check_linearizability: !args.no_linearizability,
            trace_tail: args.trace_tail,
            state_machine: args.state_machine,
            ..RunOptions::default()
        };
        if args.bench {
            return bench(&args, base);
        }
        let seeds = match (&args.seed, &args.seeds) {
            (Some(seed), _) => vec![*seed],
            (None, Some(range)) => match parse_seeds(range) {
                Ok(seeds) => seeds,
                Err(why) => {
                    eprintln!("error: {why}");
                    return ExitCode::from(2);
                }
            },
            (None, None) => vec![0],
        };
        let single = seeds.len() == 1;
        let mut failed = Vec::new();
        let started = std::time::Instant::now();
        for seed in &seeds {
            let options = RunOptions { seed: *seed, ..base.clone() };
            let report = run_seed(&options);
            print_report(&args, &options, &report, single);
            if report.failure.is_some() {
                failed.push(*seed);
                if args.fail_fast {
                    break;
                }
            }
        }
        if !single {
            println!(
                "sweep: {} seeds, {} failed {:?}, {:.1}s wall",
                seeds.len(),
                failed.len(),
                failed,
                started.elapsed().as_secs_f64()
            );
        }
        if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    fn bench(args: &Args, base: RunOptions) -> ExitCode {
        let options = RunOptions {
            seed: args.seed.unwrap_or(1),
            nodes: 5,
            faults: args.faults.unwrap_or(FaultProfile::None),
            ..base
        };
        let report = run_seed(&options);
        print_report(args, &options, &report, true);
        let sim = report.sim_elapsed.as_secs_f64();
        let wall = report.wall_elapsed.as_secs_f64();
        let sim_wall = (report.wall_elapsed - report.check_elapsed).as_secs_f64();
        println!(
            "bench: {:.1}s simulated in {:.2}s wall ({:.2}s simulating, {:.2}s checking linearizability): \
             {:.0}x real time ({:.0}x without the check); {} steps ({:.0}/s wall), {} client ops ok",
            sim,
            wall,
            sim_wall,
            report.check_elapsed.as_secs_f64(),
            sim / wall,
            sim / sim_wall,
            report.stats.steps,
            report.stats.steps as f64 / sim_wall,
            report.ops.ok,
        );
        if report.failure.is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "simulate runs only on the madsim simulator; build it with\n  RUSTFLAGS=\"--cfg madsim\" cargo run --release \
         -p sim-tests --bin simulate --target-dir target/madsim -- --seed 7"
    );
    std::process::ExitCode::from(2)
}
