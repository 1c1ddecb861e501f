//! The command line: `check` and `run`, and the parsers for their values.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::nemesis::NemesisKind;

/// Jepsen-style testing of lockstep: run real clusters under real faults, and
/// check histories for linearizability.
#[derive(Debug, Parser)]
#[command(name = "lockstep-jepsen", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a history file (JSON Lines or Jepsen EDN) for linearizability.
    /// The last line is `linearizable`, `not linearizable` or `unknown`; the
    /// exit code 0, 1 or 2 (2 also for unreadable input).
    Check(CheckArgs),
    /// Convert a history (Jepsen console log, Jepsen EDN or JSON Lines) to
    /// JSON Lines or Jepsen EDN.
    Convert(ConvertArgs),
    /// Run a lockstep cluster in network namespaces under a nemesis, record a
    /// history and check it (needs root and `ip netns`).
    Run(RunArgs),
}

/// The model a history is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Model {
    /// A register with read, write and compare-and-set, starting out nil.
    CasRegister,
    /// A register with read and write (cas ops are accepted and checked as cas).
    Register,
    /// Independent registers, one per key (every model splits by key).
    Kv,
    /// A `bank.jsonl` of the bank workload: every read holds the same total
    /// and no negative balance. The last line is `valid` or `invalid`.
    Bank,
}

/// `lockstep-jepsen check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The model to check against.
    #[arg(long, value_enum, default_value = "cas-register")]
    pub model: Model,
    /// Give up after this many seconds; the verdict is then `unknown`.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// The history: `.edn` (or content starting with `{` `:`, `[` or `#`) is
    /// read as Jepsen EDN, anything else as JSON Lines.
    pub file: PathBuf,
}

/// The format `convert` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// JSON Lines, as `run` records and `check` reads.
    Jsonl,
    /// Jepsen `history.edn`: one op map per line.
    Edn,
}

/// `lockstep-jepsen convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The format to write.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub to: Format,
    /// Where to write; default standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The history: a Jepsen console log (`.log`, or `jepsen.util - ` on its
    /// first line), Jepsen EDN (as for `check`) or JSON Lines.
    pub file: PathBuf,
}

/// The client workload of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// One register: reads, writes of unique integers, and cas.
    Register,
    /// Many independent registers, one key each, a few keys active at a time.
    Registers,
    /// Transfers between accounts by multi-key txn; every read must see the
    /// same total and no negative balance (history in `bank.jsonl`).
    Bank,
    /// The register workload, plus watchers following the key from revision
    /// 1 (events in `watch.jsonl`), checked against the final sequence.
    Watch,
    /// Clients take turns holding a lease-backed lock key; no two holding
    /// intervals may overlap (events in `lock.jsonl`).
    Lock,
}

impl Workload {
    /// The name as written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Registers => "registers",
            Workload::Bank => "bank",
            Workload::Watch => "watch",
            Workload::Lock => "lock",
        }
    }
}

/// `lockstep-jepsen run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Members in the cluster (1 to 9).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub members: u64,
    /// How long clients run operations: `60s`, `10m`, `500ms`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub time_limit: Duration,
    /// The workload.
    #[arg(long, value_enum, default_value = "register")]
    pub workload: Workload,
    /// Faults to inject: a comma-separated list of kill, pause, partition,
    /// asymmetric (one-way partitions), clock (clock jumps, needs libfaketime),
    /// disk (a full data file system), member (remove a member, re-join it);
    /// `all` for all of them, `none` for none.
    #[arg(long, default_value = "all", value_parser = parse_nemesis)]
    pub nemesis: NemesisSet,
    /// How long each fault lasts, and the quiet time after each heal.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub nemesis_interval: Duration,
    /// Concurrent clients (each a thread running one operation at a time).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub concurrency: u32,
    /// Where to write the results; default `jepsen-results/<UTC timestamp>/`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The `lockstep` binary; default: next to this binary, else on PATH.
    #[arg(long)]
    pub lockstep: Option<PathBuf>,
    /// How reads are served: `serializable` lets any member answer from its
    /// own, possibly stale, state; a self-test that stale reads are caught.
    #[arg(long, value_enum, default_value = "linearizable")]
    pub reads: crate::client::Reads,
    /// Seed of the nemesis schedule and the operation mix; default: from the clock.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The nemeses of a run, without duplicates, in a fixed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NemesisSet(pub BTreeSet<NemesisKind>);

impl NemesisSet {
    /// The kinds as a comma-separated list, or `none`.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none".to_owned();
        }
        self.0.iter().map(|kind| kind.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// Parses `60s`, `10m`, `500ms`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 60s, 10m or 500ms"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" | "min" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if duration.is_zero() {
        return Err(format!("{text:?}: a duration must be positive"));
    }
    Ok(duration)
}

/// Parses `kill,pause,partition`, `all` or `none`.
pub fn parse_nemesis(text: &str) -> Result<NemesisSet, String> {
    let mut kinds = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        match part {
            "all" => kinds.extend(NemesisKind::ALL),
            "none" => {}
            name => match NemesisKind::from_name(name) {
                Some(kind) => {
                    kinds.insert(kind);
                }
                None => {
                    return Err(format!(
                        "unknown nemesis {name:?}: use kill, pause, partition, asymmetric, clock, disk, member, all or none"
                    ));
                }
            },
        }
    }
    Ok(NemesisSet(kinds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 days").is_err());
    }

    #[test]
    fn nemesis_lists() {
        let all = parse_nemesis("all").unwrap();
        assert_eq!(all.0.len(), 7);
        assert_eq!(all.describe(), "kill,pause,partition,asymmetric,clock,disk,member");
        assert_eq!(parse_nemesis("partition,kill,kill").unwrap().describe(), "kill,partition");
        assert_eq!(parse_nemesis("none").unwrap().describe(), "none");
        let error = parse_nemesis("kill,network").unwrap_err();
        assert!(error.contains("network"), "{error}");
    }

    #[test]
    fn run_options() {
        let cli = Cli::try_parse_from([
            "lockstep-jepsen",
            "run",
            "--members",
            "3",
            "--time-limit",
            "20s",
            "--workload",
            "registers",
            "--nemesis",
            "kill,pause",
            "--seed",
            "42",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.members, 3);
        assert_eq!(args.time_limit, Duration::from_secs(20));
        assert_eq!(args.workload, Workload::Registers);
        assert_eq!(args.nemesis.describe(), "kill,pause");
        assert_eq!(args.concurrency, 10);
        assert_eq!(args.seed, Some(42));
        assert!(Cli::try_parse_from(["lockstep-jepsen", "run", "--members", "0"]).is_err());
        assert!(Cli::try_parse_from(["lockstep-jepsen", "run", "--nemesis", "net"]).is_err());
    }

    #[test]
    fn check_options() {
        let cli =
            Cli::try_parse_from(["lockstep-jepsen", "check", "--model", "kv", "h.jsonl", "--timeout", "1.5"]).unwrap();
        let Command::Check(args) = cli.command else { panic!("not check") };
        assert_eq!(args.model, Model::Kv);
        assert_eq!(args.timeout, Some(1.5));
        assert_eq!(args.file, PathBuf::from("h.jsonl"));
    }
}
