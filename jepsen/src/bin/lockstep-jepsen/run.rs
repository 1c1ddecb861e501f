//! `lockstep-jepsen run`: build the network, start the members, run clients
//! and the nemesis, heal, read, stop, check, and write the results.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lockstep_jepsen::{OpType, Value};

use crate::bank;
use crate::check_cmd;
use crate::cli::{RunArgs, Workload};
use crate::client::{self, Outcome, Reads, Request};
use crate::cluster::{self, Member};
use crate::disk;
use crate::history_log::HistoryLog;
use crate::lock;
use crate::nemesis::{self, Fault, NemesisKind, Target};
use crate::netns::{self, Names};
use crate::results::{self, CheckInfo, RunInfo};
use crate::rng::Rng;
use crate::watch;
use crate::workload::Generator;

/// How long the cluster may take to elect a leader and get ready.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the checker may take before the verdict is `unknown`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a run cannot start here (exit 2 with the message).
pub fn preflight(args: &RunArgs) -> Result<PathBuf, String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .is_some_and(|line| line.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Err(
            "lockstep-jepsen run must run as root (it creates network namespaces, a bridge and iptables rules)".into(),
        );
    }
    let netns_works = Command::new("ip").args(["netns", "list"]).output().is_ok_and(|output| output.status.success());
    if !netns_works {
        return Err("`ip netns` is not available (install iproute2; the kernel needs network namespaces)".into());
    }
    let has = |program: &str, flag: &str| Command::new(program).arg(flag).output().is_ok_and(|o| o.status.success());
    let partitions = [NemesisKind::Partition, NemesisKind::Asymmetric];
    if partitions.iter().any(|kind| args.nemesis.0.contains(kind)) && !has("iptables", "--version") {
        return Err("the partition and asymmetric nemeses need iptables (apt-get install iptables)".into());
    }
    if args.nemesis.0.contains(&NemesisKind::Clock) && faketime_library().is_none() {
        return Err("the clock nemesis needs libfaketime (apt-get install faketime)".into());
    }
    if args.nemesis.0.contains(&NemesisKind::Disk) {
        disk::check_supported().map_err(|error| format!("the disk nemesis needs a tmpfs per member: {error}"))?;
    }
    if !has("etcdctl", "version") {
        return Err("etcdctl is not installed (apt-get install etcd-client)".into());
    }
    let lockstep = match &args.lockstep {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("lockstep")))
            .filter(|path| path.is_file())
            .unwrap_or_else(|| PathBuf::from("lockstep")),
    };
    let runs = Command::new(&lockstep).arg("version").output().is_ok_and(|output| output.status.success());
    if !runs {
        return Err(format!(
            "cannot run the lockstep binary {} (build it with `cargo build -p lockstep` or pass --lockstep PATH)",
            lockstep.display()
        ));
    }
    Ok(std::fs::canonicalize(&lockstep).unwrap_or(lockstep))
}

/// UTC `YYYYMMDDTHHMMSSZ` of a Unix time.
pub fn utc_timestamp(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let seconds = unix_s % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", seconds / 3600, seconds % 3600 / 60, seconds % 60)
}

/// What this run created; dropping it removes all of it, whatever happened.
struct Environment {
    names: Names,
    members: Vec<Member>,
    work_dir: PathBuf,
}

impl Drop for Environment {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
        let removed = netns::cleanup(Some(&self.names.run_id));
        if !removed.is_empty() {
            eprintln!("cleanup: removed {}", removed.join(", "));
        }
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

/// Runs the subcommand; returns the exit code. The last line printed is the verdict.
pub fn run(args: &RunArgs, stop: &Arc<AtomicBool>) -> i32 {
    let lockstep = match preflight(args) {
        Ok(path) => path,
        Err(message) => {
            eprintln!("lockstep-jepsen run: refusing to run: {message}");
            println!("unknown");
            return 2;
        }
    };
    match run_checked(args, &lockstep, stop) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("lockstep-jepsen run: error: {message}");
            println!("unknown");
            2
        }
    }
}

fn run_checked(args: &RunArgs, lockstep: &Path, stop: &Arc<AtomicBool>) -> Result<i32, String> {
    let wall = Instant::now();
    let unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let started_utc = utc_timestamp(unix_s);
    let seed = args
        .seed
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("jepsen-results").join(&started_utc));
    std::fs::create_dir_all(out.join("members"))
        .map_err(|error| format!("cannot create {}: {error}", out.display()))?;

    let stale = netns::cleanup(None);
    if !stale.is_empty() {
        eprintln!("removed leftovers of earlier runs: {}", stale.join(", "));
    }
    let pid = std::process::id();
    let names = Names::new(pid, netns::free_subnet(pid));
    let work_dir = std::env::temp_dir().join(format!("lsj-{}", names.run_id));
    let _ = std::fs::remove_dir_all(&work_dir);
    std::fs::create_dir_all(&work_dir).map_err(|error| format!("cannot create {}: {error}", work_dir.display()))?;
    let mut env = Environment { names: names.clone(), members: Vec::new(), work_dir: work_dir.clone() };
    eprintln!(
        "run {} (seed {seed}): {} members on {}.0/24 (bridge {}), results in {}",
        names.run_id,
        args.members,
        names.bridge_ip().trim_end_matches(".254"),
        names.bridge(),
        out.display()
    );
    for command in names.setup_commands(args.members) {
        netns::ip(&command)?;
    }
    for id in 1..=args.members {
        let log_path = out.join("members").join(format!("{id}.log"));
        let mut member =
            Member::new(&names, id, args.members, &work_dir, log_path).map_err(|error| error.to_string())?;
        if args.nemesis.0.contains(&NemesisKind::Disk) {
            disk::mount(&member.data_dir, &disk::source_name(&names.run_id, id))?;
            // Without preallocated segments every WAL append needs new
            // blocks, so a full disk is felt at the next write.
            member.append_config("wal:\n  preallocate: false\n").map_err(|error| error.to_string())?;
        }
        if args.nemesis.0.contains(&NemesisKind::Clock) {
            let library = faketime_library().ok_or("libfaketime disappeared")?;
            let offset_file = work_dir.join(format!("clock-{id}"));
            write_clock(&offset_file, 0)?;
            member.faketime = Some((library, offset_file));
        }
        member.start(lockstep)?;
        env.members.push(member);
    }
    let leader = cluster::wait_healthy(&env.members, RECOVERY_TIMEOUT, stop).map_err(|message| {
        let tails: Vec<String> = env
            .members
            .iter()
            .map(|member| format!("--- member {} log ---\n{}", member.id, member.log_tail(5)))
            .collect();
        format!("{message}\n{}", tails.join("\n"))
    })?;
    eprintln!("cluster up: leader {leader} after {:.1} s", wall.elapsed().as_secs_f64());

    let start = Instant::now();
    let log = Arc::new(HistoryLog::create(&out, start).map_err(|error| format!("cannot write the history: {error}"))?);
    let generator = Arc::new(Generator::new(args.workload));
    let endpoints: Vec<String> = env.members.iter().map(Member::client_url).collect();
    let deadline = start + args.time_limit;
    let concurrency = u64::from(args.concurrency);
    let clients = Arc::new(Clients { log: Arc::clone(&log), concurrency, reads: args.reads });
    let bank_log = if args.workload == Workload::Bank {
        bank::setup(&endpoints[0])?;
        let bank_log =
            bank::BankLog::create(&out, start).map_err(|error| format!("cannot write bank.jsonl: {error}"))?;
        Some(Arc::new(bank_log))
    } else {
        None
    };
    let watch_log = if args.workload == Workload::Watch {
        let watch_log =
            watch::WatchLog::create(&out, start).map_err(|error| format!("cannot write watch.jsonl: {error}"))?;
        Some(Arc::new(watch_log))
    } else {
        None
    };
    let lock_log = if args.workload == Workload::Lock {
        let lock_log =
            lock::LockLog::create(&out, start).map_err(|error| format!("cannot write lock.jsonl: {error}"))?;
        Some(Arc::new(lock_log))
    } else {
        None
    };
    let watchers_done = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> = watch_log
        .iter()
        .flat_map(|watch_log| (0..watch::WATCHERS).map(move |watcher| (Arc::clone(watch_log), watcher)))
        .map(|(watch_log, watcher)| {
            let endpoint = endpoints[(watcher % endpoints.len() as u64) as usize].clone();
            let done = Arc::clone(&watchers_done);
            let key = Generator::etcd_key(None);
            std::thread::spawn(move || watch::watcher(&watch_log, watcher, &endpoint, &key, &done))
        })
        .collect();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (clients, generator, stop) = (Arc::clone(&clients), Arc::clone(&generator), Arc::clone(stop));
            let bank_log = bank_log.clone();
            let lock_log = lock_log.clone();
            let endpoint = endpoints[(worker % endpoints.len() as u64) as usize].clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (worker + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut process = worker;
                let mut round = 0;
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    if let Some(lock_log) = &lock_log {
                        lock::round(lock_log, worker, round, &endpoint);
                        round += 1;
                        std::thread::sleep(Duration::from_millis(rng.below(200)));
                        continue;
                    }
                    if let Some(bank_log) = &bank_log {
                        if !bank::step(bank_log, &mut rng, &mut process, concurrency, &endpoint) {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        continue;
                    }
                    let planned = generator.next(&mut rng, start.elapsed());
                    if !clients.run_op(
                        &mut process,
                        &endpoint,
                        planned.key.as_deref(),
                        &planned.etcd_key,
                        planned.request,
                    ) {
                        // Not every op of a dead member's client needs to wait a full dial timeout.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                process
            })
        })
        .collect();

    let mut warnings = Vec::new();
    let steps = nemesis::schedule(seed, &args.nemesis.0, args.members, args.time_limit, args.nemesis_interval);
    for step in &steps {
        watch_until(start + step.start, stop, &mut env.members, lockstep, &log, &mut warnings);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        inject(&step.fault, &mut env.members, &names, lockstep, &log)?;
        watch_until(start + step.heal, stop, &mut env.members, lockstep, &log, &mut warnings);
        heal(&step.fault, &mut env.members, &names, lockstep, &log)?;
    }
    watch_until(deadline, stop, &mut env.members, lockstep, &log, &mut warnings);
    let processes: Vec<u64> = workers.into_iter().map(|worker| worker.join().unwrap_or(u64::MAX)).collect();
    watchers_done.store(true, Ordering::Relaxed);
    for watcher in watchers {
        let _ = watcher.join();
    }

    // The end: heal everything, wait for recovery, read the final values.
    let interrupted = stop.load(Ordering::Relaxed);
    heal_all(&mut env.members, &names, lockstep, &log)?;
    let mut recovered = false;
    let mut watch_finals = Vec::new();
    if !interrupted {
        match recover(&mut env.members, lockstep, &log, &mut warnings, stop) {
            Ok(leader) => {
                recovered = true;
                eprintln!("recovered: leader {leader}; final reads");
                final_reads(&clients, &generator, &env.members, &processes, start.elapsed());
                if let Some(bank_log) = &bank_log {
                    bank_final_reads(bank_log, &env.members, &processes);
                }
                if watch_log.is_some() {
                    watch_finals = final_watches(&env.members);
                }
            }
            Err(message) => warnings.push(message),
        }
    } else {
        warnings.push("interrupted (Ctrl-C): no final reads".to_owned());
    }
    for member in &mut env.members {
        if let Some(code) = member.terminate(Duration::from_secs(20)) {
            if code != 0 {
                warnings.push(format!("member {} exited with code {code} on SIGTERM", member.id));
            }
        }
    }
    drop(env);

    // Check the history as written to disk, as anyone else would.
    let history_path = out.join("history.jsonl");
    let text = std::fs::read_to_string(&history_path).map_err(|error| format!("cannot read the history: {error}"))?;
    let history =
        check_cmd::parse(&history_path, &text).map_err(|error| format!("the history is malformed: {error}"))?;
    eprintln!("checking {} events", history.len());
    let check = match check_cmd::check_with_timeout(history, Some(CHECK_TIMEOUT)) {
        Some((result, elapsed)) => CheckInfo {
            verdict: check_cmd::verdict_line(result.verdict).to_owned(),
            time_s: elapsed.as_secs_f64(),
            result: Some(result),
        },
        None => CheckInfo { verdict: "unknown".to_owned(), time_s: CHECK_TIMEOUT.as_secs_f64(), result: None },
    };
    let (ops, events) = log.snapshot();
    let bank_report = bank_log.as_ref().map(|bank_log| bank::check(&bank_log.events()));
    let lock_report = lock_log.as_ref().map(|lock_log| lock::check(&lock_log.intervals()));
    let watch_report = watch_log.as_ref().map(|watch_log| watch::check(&watch_log.seen(), &watch_finals, &ops));
    let info = RunInfo {
        run_id: names.run_id.clone(),
        started_utc,
        seed,
        members: args.members,
        workload: match args.reads {
            Reads::Linearizable => args.workload.as_str().to_owned(),
            Reads::Serializable => format!("{} (serializable reads: stale reads expected)", args.workload.as_str()),
        },
        nemesis: args.nemesis.describe(),
        time_limit_s: args.time_limit.as_secs_f64(),
        concurrency: args.concurrency,
        wall_s: wall.elapsed().as_secs_f64(),
        recovered,
        warnings,
    };
    let summary = results::summary_json(&info, &ops, &events, &check);
    let mut summary = summary;
    let mut text = results::summary_text(&summary, &check);
    if let Some(report) = &bank_report {
        summary["bank"] = serde_json::json!({
            "valid": report.valid(), "reads": report.reads, "transfers": report.transfers,
            "bad_count": report.bad_count, "bad": report.bad,
        });
        text.push_str(&report.text());
    }
    if let Some(report) = &lock_report {
        summary["lock"] = serde_json::json!({
            "valid": report.valid(), "intervals": report.intervals, "deadline_ended": report.deadline_ended,
            "overlap_count": report.overlap_count, "overlaps": report.overlaps,
        });
        text.push_str(&report.text());
    }
    if let Some(report) = &watch_report {
        summary["watch"] = serde_json::json!({
            "valid": report.valid(), "changes": report.changes, "seen": report.seen, "problems": report.problems,
        });
        text.push_str(&report.text());
    }
    let write = |name: &str, contents: &str| {
        std::fs::write(out.join(name), contents).map_err(|error| format!("cannot write {name}: {error}"))
    };
    write("summary.json", &format!("{}\n", serde_json::to_string_pretty(&summary).unwrap_or_default()))?;
    write("summary.txt", &text)?;
    write("report.html", &results::html(&text, &ops, &events, &check))?;
    print!("{text}");
    println!("results: {}", out.display());
    let own_verdict =
        bank_report.as_ref().map(bank::BankReport::valid).or(lock_report.as_ref().map(lock::LockReport::valid));
    if let Some(valid) = own_verdict {
        // The bank and lock workloads have no register history: the verdict is their checker's.
        let (line, code) = match (recovered, valid) {
            (_, false) => ("invalid", 1),
            (true, true) => ("valid", 0),
            (false, true) => ("unknown", 2),
        };
        if !recovered {
            println!(
                "the cluster did not recover after the final heal (or the run was interrupted): the verdict is unknown"
            );
        }
        println!("{line}");
        return Ok(code);
    }
    if let Some(report) = &watch_report {
        // Valid only if the register history is linearizable and the watches check.
        let register = check.result.as_ref().map(|result| result.verdict);
        let (line, code) = match (register, report.valid(), recovered) {
            (Some(lockstep_jepsen::Verdict::Invalid), _, _) | (_, false, _) => ("invalid", 1),
            (Some(lockstep_jepsen::Verdict::Valid), true, true) => ("valid", 0),
            _ => ("unknown", 2),
        };
        if !recovered {
            println!(
                "the cluster did not recover after the final heal (or the run was interrupted): the verdict is unknown"
            );
        }
        println!("{line}");
        return Ok(code);
    }
    let verdict = match check.result.as_ref().map(|result| result.verdict) {
        // A run whose cluster never came back, or that was cut short, proves too little to pass.
        Some(lockstep_jepsen::Verdict::Valid) if !recovered => lockstep_jepsen::Verdict::Unknown,
        Some(verdict) => verdict,
        None => lockstep_jepsen::Verdict::Unknown,
    };
    if !recovered {
        println!(
            "the cluster did not recover after the final heal (or the run was interrupted): the verdict is unknown"
        );
    }
    println!("{}", check_cmd::verdict_line(verdict));
    Ok(check_cmd::exit_code(verdict))
}

/// What every client shares: the history, the process-id stride, how to read.
struct Clients {
    log: Arc<HistoryLog>,
    concurrency: u64,
    reads: Reads,
}

impl Clients {
    /// Runs one operation as `process` and records it; returns whether it completed `ok`.
    fn run_op(&self, process: &mut u64, endpoint: &str, key: Option<&str>, etcd_key: &str, request: Request) -> bool {
        let log = &self.log;
        let f = request.f();
        let invoke_value = match request {
            Request::Read => Value::Nil,
            Request::Write(value) => Value::Int(value),
            Request::Cas(expected, new) => Value::Cas { expected: Some(expected), new },
        };
        log.record(*process, OpType::Invoke, f, key, invoke_value);
        match client::execute(endpoint, etcd_key, request, self.reads) {
            Outcome::Ok(read) => {
                let value = if request == Request::Read { read.map_or(Value::Nil, Value::Int) } else { invoke_value };
                log.record(*process, OpType::Ok, f, key, value);
                true
            }
            Outcome::Fail(_) => {
                log.record(*process, OpType::Fail, f, key, invoke_value);
                false
            }
            Outcome::Info(_) => {
                log.record(*process, OpType::Info, f, key, invoke_value);
                // The process may still have an operation in flight: continue as a new one.
                *process += self.concurrency;
                false
            }
        }
    }
}

/// Sleeps until `deadline`, restarting (and reporting) members that died on their own.
fn watch_until(
    deadline: Instant,
    stop: &AtomicBool,
    members: &mut [Member],
    lockstep: &Path,
    log: &HistoryLog,
    warnings: &mut Vec<String>,
) {
    loop {
        for member in members.iter_mut() {
            if let Some(status) = member.exited() {
                let message = format!("member {} exited on its own ({status}); restarted", member.id);
                eprintln!("warning: {message}");
                log.nemesis("crash", &message);
                warnings.push(message);
                let _ = member.start(lockstep);
            }
        }
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return;
        }
        sleep_until(deadline.min(Instant::now() + Duration::from_millis(250)), stop);
    }
}

fn resolve(target: Target, members: &[Member]) -> (u64, String) {
    match target {
        Target::Member(id) => (id, format!("member {id}")),
        Target::Leader => match cluster::find_leader(members) {
            Some(id) => (id, format!("member {id} (the leader)")),
            None => (members[0].id, format!("member {} (no leader known)", members[0].id)),
        },
    }
}

fn member_mut(members: &mut [Member], id: u64) -> Result<&mut Member, String> {
    members.iter_mut().find(|member| member.id == id).ok_or_else(|| format!("no member {id}"))
}

fn iptables(names: &Names, member: u64, args: &[String]) -> Result<(), String> {
    let mut command = vec!["netns".to_owned(), "exec".to_owned(), names.netns(member), "iptables".to_owned()];
    command.extend(args.iter().cloned());
    netns::ip(&command)
}

/// Starts a fault, recording it.
fn inject(
    fault: &Fault,
    members: &mut [Member],
    names: &Names,
    lockstep: &Path,
    log: &HistoryLog,
) -> Result<(), String> {
    match fault {
        Fault::Member(target) => {
            let (id, text) = resolve(*target, members);
            let raft_id = member_mut(members, id)?.raft_id;
            let endpoints: Vec<String> =
                members.iter().filter(|member| member.id != id && !member.removed).map(Member::admin_url).collect();
            let endpoints = endpoints.join(",");
            let output = Command::new(lockstep)
                .args(["cluster", "remove", &raft_id.to_string(), "--endpoints", &endpoints])
                .output();
            // A remove that timed out may still commit: ask the others whether it did.
            let timed_out_but_done = match &output {
                Ok(output) if output.status.success() => None,
                _ => Some((0..3).any(|_| {
                    std::thread::sleep(Duration::from_secs(2));
                    listed(lockstep, &endpoints, raft_id) == Some(false)
                })),
            };
            match output {
                Ok(_) if timed_out_but_done != Some(false) => {
                    let member = member_mut(members, id)?;
                    member.kill();
                    member.removed = true;
                    let how = if timed_out_but_done == Some(true) {
                        " (`lockstep cluster remove` failed, but the change committed)"
                    } else {
                        ""
                    };
                    let text = format!("{text} (raft id {raft_id}): removed from the cluster and stopped{how}");
                    log.nemesis("member-remove", &text);
                    eprintln!("nemesis: {text}");
                }
                other => {
                    let why = match other {
                        Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                        Err(error) => error.to_string(),
                    };
                    let text = format!("{text} (raft id {raft_id}): `lockstep cluster remove` failed: {why}");
                    log.nemesis("member-remove-failed", &text);
                    eprintln!("nemesis: {text}");
                }
            }
        }
        Fault::Kill(target) => {
            let (id, text) = resolve(*target, members);
            member_mut(members, id)?.kill();
            log.nemesis(fault.kind().as_str(), &text);
            eprintln!("nemesis: kill {text}");
        }
        Fault::Pause(target) => {
            let (id, text) = resolve(*target, members);
            member_mut(members, id)?.pause();
            log.nemesis(fault.kind().as_str(), &text);
            eprintln!("nemesis: pause {text}");
        }
        Fault::Clock(target, offset_s) => {
            let (id, text) = resolve(*target, members);
            let member = member_mut(members, id)?;
            let (_, offset_file) = member.faketime.as_ref().ok_or("clock nemesis without libfaketime")?;
            write_clock(offset_file, *offset_s)?;
            let text = format!("{text}: clock jumps {offset_s:+} s");
            log.nemesis(fault.kind().as_str(), &text);
            eprintln!("nemesis: clock of {text}");
        }
        Fault::Disk(target) => {
            let (id, text) = resolve(*target, members);
            let member = member_mut(members, id)?;
            let written = disk::fill(&member.data_dir)?;
            let text = format!("{text}: data file system full ({} MiB of filler)", written >> 20);
            log.nemesis(fault.kind().as_str(), &text);
            eprintln!("nemesis: disk of {text}");
        }
        Fault::Partition(kind) => {
            let ids: Vec<u64> = members.iter().map(|member| member.id).collect();
            let leader = cluster::find_leader(members);
            let grudge = nemesis::grudge(kind, &ids, leader);
            for (member, args) in nemesis::iptables_rules(&grudge, |id| names.member_ip(id)) {
                iptables(names, member, &args)?;
            }
            let cut: Vec<String> = grudge
                .iter()
                .filter(|(_, dropped)| !dropped.is_empty())
                .map(|(member, dropped)| format!("{member} drops {dropped:?}"))
                .collect();
            let text = format!("{fault} (leader {leader:?}): {}", cut.join("; "));
            log.nemesis(fault.kind().as_str(), &text);
            eprintln!("nemesis: {text}");
        }
    }
    Ok(())
}

/// Heals a fault, recording it.
fn heal(fault: &Fault, members: &mut [Member], names: &Names, lockstep: &Path, log: &HistoryLog) -> Result<(), String> {
    match fault {
        Fault::Kill(_) => {
            for member in members.iter_mut().filter(|member| !member.running()) {
                member.start(lockstep)?;
                log.nemesis("restart", &format!("member {}", member.id));
            }
        }
        Fault::Pause(_) => {
            for member in members.iter_mut().filter(|member| member.paused) {
                member.resume();
                log.nemesis("resume", &format!("member {}", member.id));
            }
        }
        Fault::Partition(_) => {
            for member in members.iter() {
                iptables(names, member.id, &nemesis::iptables_heal())?;
            }
            log.nemesis("heal", "every partition");
        }
        Fault::Clock(..) => {
            reset_clocks(members)?;
            log.nemesis("heal", "every clock back to real time");
        }
        Fault::Disk(_) => {
            for member in members.iter() {
                disk::free(&member.data_dir);
            }
            log.nemesis("heal", "every data file system freed");
        }
        Fault::Member(_) => rejoin_removed(members, names, lockstep, log)?,
    }
    Ok(())
}

/// Whether the members behind `endpoints` list Raft member `raft_id`; `None`
/// when none of them answers.
fn listed(lockstep: &Path, endpoints: &str, raft_id: u64) -> Option<bool> {
    let output = Command::new(lockstep)
        .args(["cluster", "members", "--output", "json", "--endpoints", endpoints])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let members = json["members"].as_array()?;
    Some(members.iter().any(|member| member["id"].as_u64() == Some(raft_id)))
}

/// Lets every removed member join again: wiped, under a new Raft id (ids are
/// never reused), through the leader's (or any running member's) admin URL.
fn rejoin_removed(members: &mut [Member], names: &Names, lockstep: &Path, log: &HistoryLog) -> Result<(), String> {
    let leader = cluster::find_leader(members);
    for index in 0..members.len() {
        if !members[index].removed {
            continue;
        }
        let through = members
            .iter()
            .filter(|member| !member.removed && member.running())
            .min_by_key(|member| Some(member.id) != leader)
            .map(Member::admin_url)
            .ok_or("no member to join through")?;
        let raft_id = members.iter().map(|member| member.raft_id).max().unwrap_or(0) + 1;
        let member = &mut members[index];
        member.prepare_join(names, raft_id, &through)?;
        member.start(lockstep)?;
        member.removed = false;
        let text = format!("member {} joins again as raft id {raft_id} through {through}", member.id);
        log.nemesis("member-join", &text);
        eprintln!("nemesis: {text}");
    }
    Ok(())
}

/// Waits until the cluster agrees on a leader and every member is ready,
/// restarting (and reporting) members that exit on their own meanwhile: a
/// member that was still stopping when the final heal looked (a panic takes
/// seconds to print its backtrace) is restarted too.
fn recover(
    members: &mut [Member],
    lockstep: &Path,
    log: &HistoryLog,
    warnings: &mut Vec<String>,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    loop {
        for member in members.iter_mut() {
            if let Some(status) = member.exited() {
                let message =
                    format!("member {} exited on its own ({status}) after the final heal; restarted", member.id);
                eprintln!("warning: {message}");
                log.nemesis("crash", &message);
                warnings.push(message);
                member.start(lockstep)?;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match cluster::wait_healthy(members, left.min(Duration::from_secs(2)), stop) {
            Ok(leader) => return Ok(leader),
            Err(_) if !left.is_zero() && !stop.load(Ordering::Relaxed) => {}
            Err(message) => {
                // wait_healthy names its own (last, short) timeout; name the whole wait instead.
                let detail = message.split_once(": ").map_or(message.as_str(), |(_, detail)| detail);
                return Err(format!("the cluster did not recover within {RECOVERY_TIMEOUT:?}: {detail}"));
            }
        }
    }
}

/// Where libfaketime's multi-threaded library is, if installed.
fn faketime_library() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
        "/usr/local/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|path| path.is_file())
}

/// Sets a member's clock offset (libfaketime reads it within a second).
fn write_clock(offset_file: &Path, offset_s: i64) -> Result<(), String> {
    std::fs::write(offset_file, nemesis::faketime_offset(offset_s))
        .map_err(|error| format!("cannot write {}: {error}", offset_file.display()))
}

/// Sets every member's clock back to real time.
fn reset_clocks(members: &[Member]) -> Result<(), String> {
    for member in members {
        if let Some((_, offset_file)) = &member.faketime {
            write_clock(offset_file, 0)?;
        }
    }
    Ok(())
}

/// Heals whatever is still broken at the end.
fn heal_all(members: &mut [Member], names: &Names, lockstep: &Path, log: &HistoryLog) -> Result<(), String> {
    // Disks and clocks first: a member restarted on a full disk would fail again.
    reset_clocks(members)?;
    for member in members.iter() {
        disk::free(&member.data_dir);
    }
    rejoin_removed(members, names, lockstep, log)?;
    for member in members.iter_mut() {
        if member.paused {
            member.resume();
            log.nemesis("resume", &format!("member {} (final heal)", member.id));
        }
        if !member.running() {
            member.start(lockstep)?;
            log.nemesis("restart", &format!("member {} (final heal)", member.id));
        }
    }
    for member in members.iter() {
        iptables(names, member.id, &nemesis::iptables_heal())?;
    }
    log.nemesis("heal", "final heal: every member running, no partition, real clocks, free disks");
    Ok(())
}

/// The final sequence of the watched key through every member (`None` where
/// the watch failed).
fn final_watches(members: &[Member]) -> Vec<(u64, Option<Vec<watch::Change>>)> {
    let key = Generator::etcd_key(None);
    members
        .iter()
        .map(|member| {
            let changes = (0..3).find_map(|_| {
                watch::watch_once(&member.client_url(), &key, 1, Duration::from_secs(3))
                    .ok()
                    .filter(|changes| !changes.is_empty())
            });
            (member.id, changes)
        })
        .collect()
}

/// Reads every balance through every member (a few tries each), as the
/// workers' last processes.
fn bank_final_reads(bank_log: &bank::BankLog, members: &[Member], processes: &[u64]) {
    let processes: Vec<u64> = processes.iter().copied().filter(|process| *process != u64::MAX).collect();
    for (index, member) in members.iter().enumerate() {
        let Some(process) = processes.get(index % processes.len().max(1)) else { return };
        for _ in 0..5 {
            if bank::logged_read(bank_log, *process, &member.client_url()).is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Reads every key used, through every member, until each read succeeds
/// (a few tries), as the workers' last processes.
fn final_reads(clients: &Clients, generator: &Generator, members: &[Member], processes: &[u64], elapsed: Duration) {
    let mut processes: Vec<u64> = processes.iter().copied().filter(|process| *process != u64::MAX).collect();
    if processes.is_empty() {
        return;
    }
    let mut next = 0;
    for key in generator.keys_until(elapsed) {
        let etcd_key = Generator::etcd_key(key.as_deref());
        for member in members {
            let slot = next % processes.len();
            next += 1;
            for _ in 0..5 {
                if clients.run_op(&mut processes[slot], &member.client_url(), key.as_deref(), &etcd_key, Request::Read)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(0), "19700101T000000Z");
        assert_eq!(utc_timestamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_timestamp(1_795_700_000), "20261126T133320Z");
    }
}
