//! The command line of `lockstep bench`, shaped like etcd's `benchmark` tool:
//! global connection and load flags, then one subcommand per workload.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// `lockstep bench`: drive any etcd v3 endpoint (lockstep or etcd) with load.
#[derive(Args, Debug, Clone)]
#[command(after_help = BENCH_AFTER_HELP)]
pub struct BenchArgs {
    /// The workload.
    #[command(subcommand)]
    pub workload: Workload,
    /// Client URLs of the members, comma-separated; connections go to them round-robin.
    #[arg(long, global = true, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// Concurrent clients (workers), sharing the connections round-robin.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: u64,
    /// gRPC connections (HTTP/2 channels), each to one endpoint.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: u64,
    /// Requests to send in all (for `watch`: puts to watch).
    #[arg(long, global = true, default_value_t = 10_000)]
    pub total: u64,
    /// Stop sending after this long even if --total is not reached (e.g. 10s, 500ms).
    #[arg(long, global = true, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Key size in bytes.
    #[arg(long, global = true, default_value_t = 8)]
    pub key_size: u64,
    /// Value size in bytes.
    #[arg(long, global = true, default_value_t = 256)]
    pub val_size: u64,
    /// Keys are drawn uniformly from this many distinct keys.
    #[arg(long, global = true, default_value_t = 1)]
    pub key_space: u64,
    /// `put`: request number n writes key n (modulo --key-space) instead of a
    /// random one, so `--total` equal to `--key-space` writes every key once
    /// (loading a store of a given size).
    #[arg(long, global = true)]
    pub sequential_keys: bool,
    /// Per-request timeout; a request that takes longer counts as an error.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Report format: `human` text, or one `json` document on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// A free-form label stored in the JSON report (compare.sh: the system's name).
    #[arg(long, global = true, default_value = "")]
    pub label: String,
    /// A free-form name stored in the JSON report (compare.sh: the table row).
    #[arg(long, global = true, default_value = "")]
    pub name: String,
    /// Seed of the key choice, so that runs are repeatable.
    #[arg(long, global = true, default_value_t = 1)]
    pub seed: u64,
    /// Threads of the client runtime: 0 for one per CPU (as Go's GOMAXPROCS
    /// in etcd's benchmark), 1 for a single thread (no cross-thread wake-ups).
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
}

const BENCH_AFTER_HELP: &str = "Every request's latency goes into an HDR histogram; the report gives throughput, \
p50/p90/p99/p99.9/max and every error by kind. The load speaks only the etcd v3 gRPC API, so it drives etcd \
and lockstep alike.\n\n\
Examples:\n  \
lockstep bench put --endpoints http://127.0.0.1:2379 --clients 100 --conns 10 --total 100000 --key-space 100000\n  \
lockstep bench range foo --consistency s --clients 100 --conns 10 --total 100000\n  \
lockstep bench watch --watchers 100 --streams 10 --put-rate 100 --total 1000\n  \
lockstep bench put --total 1000 --output json --label lockstep > put.json\n  \
lockstep bench table put.json etcd-put.json\n  \
lockstep bench plot --x clients --out scaling/clients lockstep-*.json etcd-*.json";

/// One workload (or a tool that reads reports).
#[derive(Subcommand, Debug, Clone)]
pub enum Workload {
    /// Put random keys from --key-space with values of --val-size bytes.
    Put,
    /// Range over one key (written once with a --val-size value before the run).
    Range(RangeArgs),
    /// Transactions of --txn-ops puts each, to distinct keys from --key-space.
    TxnPut(TxnPutArgs),
    /// Event latency: time from a put being sent to its event reaching each watcher.
    Watch(WatchArgs),
    /// Lease keep-alives: each client grants a lease, then renews it on one stream.
    LeaseKeepalive(LeaseArgs),
    /// Print the comparison table of JSON reports (rows by --name, systems by --label).
    Table(TableArgs),
    /// Draw SVG charts of throughput and p99 from JSON reports.
    Plot(PlotArgs),
}

impl Workload {
    /// The workload's name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range(_) => "range",
            Workload::TxnPut(_) => "txn-put",
            Workload::Watch(_) => "watch",
            Workload::LeaseKeepalive(_) => "lease-keepalive",
            Workload::Table(_) => "table",
            Workload::Plot(_) => "plot",
        }
    }
}

/// `range` flags.
#[derive(Args, Debug, Clone)]
pub struct RangeArgs {
    /// The key to read.
    #[arg(default_value = "bench-range-key")]
    pub key: String,
    /// `l`: linearizable (a quorum confirms the read), `s`: serializable (the member's local state).
    #[arg(long, value_enum, default_value_t = Consistency::L)]
    pub consistency: Consistency,
}

/// Read consistency, as etcd's benchmark spells it.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable.
    L,
    /// Serializable.
    S,
}

/// `txn-put` flags.
#[derive(Args, Debug, Clone)]
pub struct TxnPutArgs {
    /// Puts per transaction.
    #[arg(long, default_value_t = 1)]
    pub txn_ops: u64,
}

/// `watch` flags.
#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Watchers in all, each receiving every event.
    #[arg(long, default_value_t = 100)]
    pub watchers: u64,
    /// Watch streams the watchers are spread over (each on a connection, round-robin).
    #[arg(long, default_value_t = 10)]
    pub streams: u64,
    /// Puts per second (0: as fast as --clients putters go).
    #[arg(long, default_value_t = 100)]
    pub put_rate: u64,
    /// The watched key.
    #[arg(long, default_value = "bench-watch-key")]
    pub key: String,
    /// How long to wait for events after the last put before counting them as lost.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
}

/// `lease-keepalive` flags.
#[derive(Args, Debug, Clone)]
pub struct LeaseArgs {
    /// TTL of each client's lease, in seconds.
    #[arg(long, default_value_t = 60)]
    pub ttl_s: i64,
}

/// `table` flags.
#[derive(Args, Debug, Clone)]
pub struct TableArgs {
    /// JSON reports (from --output json), any number of runs per row and system.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The label of the system whose throughput is the numerator of the ratio.
    #[arg(long, default_value = "lockstep")]
    pub candidate: String,
    /// The label of the system whose throughput is the denominator.
    #[arg(long, default_value = "etcd")]
    pub baseline: String,
}

/// `plot` flags.
#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// JSON reports; one line per --label.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// What varies along the x axis.
    #[arg(long, value_enum)]
    pub x: PlotAxis,
    /// Output path prefix: PREFIX-throughput.svg and PREFIX-p99.svg are written.
    #[arg(long)]
    pub out: PathBuf,
    /// Chart title (default: the workload and what varies).
    #[arg(long)]
    pub title: Option<String>,
}

/// The varying parameter of a scaling chart.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotAxis {
    /// --clients.
    Clients,
    /// --val-size.
    ValSize,
}

/// Report formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Text for a person.
    Human,
    /// One JSON document.
    Json,
}

/// Parses `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration (like 10s, 500ms, 2m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use ms, s or m)")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{text}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl BenchArgs {
    /// Checks the flags against each other; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err("--endpoints: give at least one client URL".into());
        }
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if self.conns == 0 {
            return Err("--conns must be at least 1".into());
        }
        if self.conns > self.clients && !matches!(self.workload, Workload::Watch(_)) {
            return Err(format!("--conns ({}) cannot exceed --clients ({})", self.conns, self.clients));
        }
        if self.total == 0 {
            return Err("--total must be at least 1".into());
        }
        if self.key_size == 0 || self.key_size > 1024 {
            return Err("--key-size must be between 1 and 1024".into());
        }
        if self.val_size > 16 << 20 {
            return Err("--val-size must be at most 16 MiB".into());
        }
        if self.key_space == 0 {
            return Err("--key-space must be at least 1".into());
        }
        let digits = self.key_space.saturating_sub(1).to_string().len() as u64;
        if digits > self.key_size {
            return Err(format!(
                "--key-space {} needs keys of at least {digits} bytes (--key-size is {})",
                self.key_space, self.key_size
            ));
        }
        match &self.workload {
            Workload::TxnPut(t) if t.txn_ops == 0 || t.txn_ops > self.key_space => Err(format!(
                "--txn-ops must be between 1 and --key-space ({}): the keys of one transaction are distinct",
                self.key_space
            )),
            Workload::Watch(w) if w.watchers == 0 || w.streams == 0 || w.streams > w.watchers => {
                Err("--watchers and --streams must be at least 1, and --streams at most --watchers".into())
            }
            Workload::Watch(_) if self.val_size < crate::workload::WATCH_VALUE_BYTES_MIN => Err(format!(
                "watch: --val-size must be at least {} (the value carries the put's sequence number)",
                crate::workload::WATCH_VALUE_BYTES_MIN
            )),
            Workload::LeaseKeepalive(l) if l.ttl_s < 5 => Err("--ttl-s must be at least 5".into()),
            _ => Ok(()),
        }
    }

    /// The endpoints, with `http://` added where no scheme is given.
    pub fn endpoint_urls(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| if e.contains("://") { e.to_string() } else { format!("http://{e}") })
            .collect()
    }

    /// The endpoint of connection `index` (connections go to endpoints round-robin).
    pub fn endpoint_of_conn(&self, index: u64) -> String {
        let urls = self.endpoint_urls();
        urls[(index % urls.len() as u64) as usize].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, String> {
        let mut argv = vec!["bench"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        cli.bench.validate()?;
        Ok(cli.bench)
    }

    #[test]
    fn etcd_benchmark_put_shape_parses() {
        let a = parse(&[
            "put",
            "--key-size",
            "8",
            "--val-size",
            "256",
            "--clients",
            "100",
            "--conns",
            "10",
            "--total",
            "100000",
            "--key-space",
            "100000",
            "--endpoints",
            "127.0.0.1:2379,http://127.0.0.1:22379",
        ])
        .unwrap();
        assert_eq!(
            (a.clients, a.conns, a.total, a.key_space, a.key_size, a.val_size),
            (100, 10, 100000, 100000, 8, 256)
        );
        assert_eq!(a.endpoint_urls(), ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]);
        assert_eq!(a.endpoint_of_conn(0), "http://127.0.0.1:2379");
        assert_eq!(a.endpoint_of_conn(3), "http://127.0.0.1:22379");
        assert_eq!(a.workload.name(), "put");
    }

    #[test]
    fn flags_may_follow_the_workload_or_precede_it() {
        let a = parse(&["--clients", "4", "range", "k", "--consistency", "s", "--conns", "2"]).unwrap();
        assert_eq!((a.clients, a.conns), (4, 2));
        match a.workload {
            Workload::Range(r) => assert_eq!((r.key.as_str(), r.consistency), ("k", Consistency::S)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inconsistent_flags_are_refused_with_a_reason() {
        let refused = |args: &[&str], needle: &str| {
            let e = parse(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        };
        refused(&["put", "--clients", "0"], "--clients");
        refused(&["put", "--clients", "2", "--conns", "3"], "cannot exceed");
        refused(&["put", "--total", "0"], "--total");
        refused(&["put", "--key-space", "1000", "--key-size", "2"], "at least 3 bytes");
        refused(&["txn-put", "--txn-ops", "3", "--key-space", "2"], "--txn-ops");
        refused(&["watch", "--watchers", "2", "--streams", "3"], "--streams");
        refused(&["watch", "--val-size", "8"], "--val-size");
        refused(&["put", "--endpoints", ""], "--endpoints");
        refused(&["put", "--duration", "ten"], "not a duration");
        // A key space of exactly 10^n fits n-digit keys (0 .. 10^n - 1).
        parse(&["put", "--key-space", "100", "--key-size", "2"]).unwrap();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("").is_err());
    }
}
