//! The `lockstep` command line.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lockstep::cluster_cli::ClusterAction;
use lockstep::config::{lockstep_env, ConfigError, MemberConfig, Origin};
use lockstep::dev::DevOptions;
use lockstep::server::{run_member, MemberControl, ServerOptions};
use lockstep::{FsckOptions, ProgressEvent, VersionInfo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// mimalloc instead of glibc's malloc: under a long put load glibc's free
/// lists fragment (its `_int_malloc` grew from 4 to 15 % of a leader's time
/// over 750,000 puts), mimalloc's per-size pages do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code: fsck could not run (and the default for usage errors, as clap does).
const EXIT_CANNOT_RUN: u8 = 2;
/// A progress bar appears on a terminal only for directories at least this large...
const PROGRESS_BYTES_MIN: u64 = 64 << 20;
/// ...or with at least this many files.
const PROGRESS_FILES_MIN: u64 = 32;

#[derive(Parser, Debug)]
#[command(
    name = "lockstep",
    version,
    about = "lockstep: an etcd-compatible, Raft-replicated key-value store",
    long_about = "lockstep: an etcd-compatible, Raft-replicated key-value store.\n\n\
                  Start a local three-member cluster with `lockstep dev`, one member with \
                  `lockstep serve --config FILE`; manage members with `lockstep cluster`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a local three-member cluster on an embedded default config (Ctrl-C stops it).
    #[command(after_help = DEV_AFTER_HELP)]
    Dev(DevArgs),
    /// Run one member from a config file.
    #[command(after_help = SERVE_AFTER_HELP)]
    Serve(ServeArgs),
    /// Cluster status and membership, through the members' admin endpoints.
    Cluster(ClusterArgs),
    /// Back up a member's state to a file, or seed a new member's data directory from one.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Check a stopped member's data directory: every WAL segment and the snapshot file.
    #[command(long_about = FSCK_ABOUT, after_help = FSCK_AFTER_HELP)]
    Fsck(FsckArgs),
    /// Print the version, the git commit, and the on-disk format versions this build reads and writes.
    Version(VersionArgs),
    /// Check a member's config file, or print a default one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Generate TLS certificates: a cluster CA, member and client certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Encryption at rest: create a key file.
    #[command(subcommand)]
    Encryption(EncryptionCommand),
    /// Load-test etcd v3 endpoints (lockstep or etcd) like etcd's `benchmark` tool; compare and plot reports.
    Bench(lockstep_bench::BenchArgs),
}

#[derive(Subcommand, Debug)]
enum EncryptionCommand {
    /// Write a new random 256-bit key (64 hex digits, mode 0600) to PATH for encryption.key_file; never overwrites.
    InitKey {
        /// Where to write the key.
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// Write a CA, member certificates (server and client use, for every port) and client certificates into a directory.
    #[command(after_help = CERTS_INIT_AFTER_HELP)]
    Init(CertsInitArgs),
}

const CERTS_INIT_AFTER_HELP: &str = "Files: ca.crt and ca.key (the cluster CA), member-N.crt and member-N.key for \
each member, NAME.crt and NAME.key for each --client. Keys are ECDSA P-256 with mode 0600. Member certificates name \
localhost, 127.0.0.1 and ::1 plus every --host, and serve a member's client, peer and admin ports. Keep ca.key \
offline once the certificates are made. docs/security.md has the setup and the rotation procedure.\n\n\
Examples:\n  \
lockstep certs init --dir /etc/lockstep/tls --host node1.example.com --host node2.example.com --host node3.example.com\n  \
etcdctl --endpoints https://127.0.0.1:2379 --cacert certs/ca.crt --cert certs/client.crt --key certs/client.key get foo";

#[derive(clap::Args, Debug)]
struct CertsInitArgs {
    /// The directory to write the certificates and keys into (created if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Member certificates to make (member-1 ... member-N).
    #[arg(long, default_value_t = 3)]
    members: u64,
    /// A host name or IP address the member certificates also name (repeatable, or comma-separated).
    #[arg(long = "host", value_name = "HOST", value_delimiter = ',')]
    hosts: Vec<String>,
    /// A client certificate to make, by common name (repeatable, or comma-separated).
    #[arg(long = "client", value_name = "NAME", value_delimiter = ',', default_value = "client")]
    clients: Vec<String>,
    /// Validity of the member and client certificates, in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Validity of the CA certificate, in days.
    #[arg(long, default_value_t = 3650)]
    ca_days: u32,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

/// etcdctl's TLS flags, for the commands that call the admin API.
#[derive(clap::Args, Debug, Clone, Default)]
struct TlsClientArgs {
    /// Verify HTTPS admin endpoints with this CA bundle (PEM).
    #[arg(long, global = true, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Present this client certificate (PEM) to admin endpoints that require one.
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
}

impl TlsClientArgs {
    /// Makes the process's admin calls use these files (nothing without --cacert).
    fn apply(&self) -> Result<(), String> {
        match (&self.cacert, &self.cert, &self.key) {
            (None, None, None) => Ok(()),
            (None, _, _) => Err("--cert and --key need --cacert, the CA bundle to verify the members with".into()),
            (Some(ca), cert, key) => {
                let pair = cert.as_deref().zip(key.as_deref());
                let config = lockstep_runtime::tls::client_config_from_files(ca, pair).map_err(|e| e.to_string())?;
                lockstep::admin_client::use_tls(config);
                Ok(())
            }
        }
    }
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a config file, with the LOCKSTEP_* environment and --set flags applied, without starting anything.
    #[command(long_about = CONFIG_CHECK_ABOUT, after_help = CONFIG_CHECK_AFTER_HELP)]
    Check(ConfigCheckArgs),
    /// Print a complete, commented config file for member 1 of a one-member cluster.
    Default,
}

const DEV_AFTER_HELP: &str = "The members listen on etcd's conventional local ports (client 2379, 22379, 32379; \
peer 2380, 22380, 32380) and admin ports 8080-8082, or on free ports when those are busy. Each member's data and \
config file live under the data directory; run `lockstep dev --data-dir DIR` again to restart the same cluster.\n\n\
Examples:\n  \
lockstep dev\n  \
lockstep dev --data-dir /tmp/lockstep-dev\n  \
ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:2379 put foo bar";

const SERVE_AFTER_HELP: &str = "Configuration: the YAML file, then LOCKSTEP_* environment variables, then --set \
flags (docs/config.md lists every key). With an empty data directory the member bootstraps the cluster from \
cluster.initial_members, or joins a running cluster with --join ADMIN_URL (as a learner, promoted to voter once \
caught up). With existing data it restarts from it.\n\n\
SIGTERM or Ctrl-C: a leader hands leadership over, the member flushes its WAL and exits 0.\n\n\
Examples:\n  \
lockstep serve --config /etc/lockstep/lockstep.yaml\n  \
lockstep serve --config member4.yaml --join http://10.0.0.1:8080";

#[derive(clap::Args, Debug)]
struct DevArgs {
    /// Where the members keep their data (default: a fresh directory under $TMPDIR, printed at start).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log level of the members (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, default_value = "warn")]
    log_level: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Human)]
    log_format: LogFormatArg,
    /// TLS on every port with generated certificates (under DIR/certs): mutual TLS between members, client
    /// certificates required on the client and admin ports. Prints the etcdctl flags to use.
    #[arg(long)]
    tls: bool,
    /// Encrypt every member's WAL and snapshots with this key file (see `lockstep encryption init-key`); a new data
    /// directory only.
    #[arg(long, value_name = "KEY_FILE")]
    encryption_key_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// The member's config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Override a config key: --set raft.election_timeout_ms=2000 (repeatable; wins over file and environment).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Join a running cluster through this member's admin URL (same as --set cluster.join=URL).
    #[arg(long, value_name = "ADMIN_URL")]
    join: Option<String>,
    /// Log format (overrides log.format).
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormatArg {
    /// Text for a person.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(clap::Args, Debug)]
struct ClusterArgs {
    #[command(subcommand)]
    action: ClusterCommand,
    /// Admin endpoints of members, comma-separated.
    #[arg(long, global = true, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    endpoints: Vec<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
    #[command(flatten)]
    tls: TlsClientArgs,
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Download a consistent snapshot of a member's state (checksummed) to FILE.
    Save {
        /// Where to write the snapshot (atomically).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The member's admin endpoint.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        endpoint: String,
        #[command(flatten)]
        tls: TlsClientArgs,
        /// Encrypt the file (AES-256-GCM) with the key in this file (see `lockstep encryption init-key`).
        #[arg(long, value_name = "KEY_FILE")]
        key_file: Option<PathBuf>,
    },
    /// Create a member's data directory for a NEW cluster from a snapshot file.
    #[command(after_help = RESTORE_AFTER_HELP)]
    Restore {
        /// The snapshot file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The member's config file (its member_id and cluster.initial_members define the new cluster).
        #[arg(long, value_name = "CONFIG")]
        config: PathBuf,
        /// The data directory to create (overrides the config's data_dir; must not exist or be empty).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The key an encrypted snapshot file was saved with (the new data directory uses the config's
        /// encryption.key_file, which may be another key).
        #[arg(long, value_name = "KEY_FILE")]
        key_file: Option<PathBuf>,
    },
}

const RESTORE_AFTER_HELP: &str = "Restore every member of the new cluster from the same snapshot file, each with \
its own config (the same cluster.initial_members and cluster.token), then start them with `lockstep serve`. The new \
cluster starts at the snapshot's revision; clients see the keys as they were when the snapshot was saved.\n\n\
Example (member 1 of 3):\n  \
lockstep snapshot save backup.snap --endpoint http://10.0.0.1:8080\n  \
lockstep snapshot restore backup.snap --config member1.yaml --data-dir /var/lib/lockstep-new";

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Each endpoint's view: role, leader, term, indexes, revision.
    Status,
    /// The members with their addresses.
    Members,
    /// The current leader.
    Leader,
    /// Add a member (as a learner unless --voter); then start it with `lockstep serve`.
    Add {
        /// The new member's id.
        id: u64,
        /// Its peer address, HOST:PORT.
        #[arg(long)]
        peer: String,
        /// Its client URL.
        #[arg(long, default_value = "")]
        client: String,
        /// Its admin URL.
        #[arg(long, default_value = "")]
        admin: String,
        /// Add it as a voter at once (default: a learner, to promote when caught up).
        #[arg(long)]
        voter: bool,
    },
    /// Remove a member; --force removes one that is dead.
    Remove {
        /// The member's id.
        id: u64,
        /// Remove it even though it cannot be reached.
        #[arg(long)]
        force: bool,
    },
    /// Promote a caught-up learner to voter.
    Promote {
        /// The learner's id.
        id: u64,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        /// The new leader's id.
        to: u64,
    },
}

const CONFIG_CHECK_ABOUT: &str = "Validate a member's config file without starting anything.\n\n\
Reads FILE, applies the LOCKSTEP_* environment variables and the --set flags on top of it (as the member would), \
and checks every key: unknown keys, values out of range, relations between keys, the initial member list. Every \
problem is printed on its own line, naming the file and line (or the variable, or the flag), the key, the value \
and what is accepted. The keys are listed in docs/config.md.";

const CONFIG_CHECK_AFTER_HELP: &str = "Exit status:\n  \
0  valid\n  \
1  problems found (printed on stderr, one per line)\n  \
2  the file could not be read\n\n\
Examples:\n  \
lockstep config check /etc/lockstep/member.yaml\n  \
lockstep config check member.yaml --set raft.election_timeout_ms=2000\n  \
lockstep config check member.yaml --output json | jq .problems";

#[derive(clap::Args, Debug)]
struct ConfigCheckArgs {
    /// The config file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Override a key, as `lockstep serve` would (repeatable; a dotted key, like raft.election_timeout_ms=2000).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Report format: `human` text, or one `json` document on stdout.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

const FSCK_ABOUT: &str = "Check a stopped member's data directory.\n\n\
Reads the identity file, every WAL segment (wal/*.wal) and the snapshot file (wal/snapshot.snap), checks every \
record's checksum and framing, and says what a member starting on this directory would recover, or why it \
would refuse to start. Each problem is reported with its file, byte offset and what to do.\n\n\
Without --repair nothing is written (not even a lock file). Stop the member first: fsck refuses to run while \
the member holds the directory's lock.";

const FSCK_AFTER_HELP: &str = "Exit status:\n  \
0  clean (or, with --repair, repaired and re-checked clean)\n  \
1  problems found (and not all repaired)\n  \
2  could not run: no such directory, not a lockstep data directory, bad identity file, locked, unreadable\n\n\
Repairs (--repair) are only those that can never lose acknowledged data: cutting an unfinished write off the \
end of the log (a torn tail), deleting a segment whose creation was cut short, and deleting damaged segments \
that the snapshot fully covers. They are carried out only if a member could start afterwards; every change is \
fsynced, then the directory is re-read and checked again.\n\n\
Examples:\n  \
lockstep fsck /var/lib/lockstep\n  \
lockstep fsck /var/lib/lockstep --repair\n  \
lockstep fsck /var/lib/lockstep --output json | jq .status";

#[derive(clap::Args, Debug)]
struct FsckArgs {
    /// The member's data directory (the one holding `identity` and `wal/`).
    #[arg(value_name = "DATA_DIR")]
    data_dir: PathBuf,
    /// Carry out the safe repairs fsck proposes (see below), fsync them, and re-check.
    #[arg(long)]
    repair: bool,
    /// Report format: `human` text, or one `json` document on stdout.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// The member's encryption.key_file, for a data directory with encryption at rest.
    #[arg(long, value_name = "KEY_FILE")]
    key_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct VersionArgs {
    /// Report format: `human` text, or one `json` document on stdout.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// Text for a person.
    Human,
    /// One JSON document, for scripts.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => run_dev(&args),
        Command::Serve(args) => run_serve(&args),
        Command::Cluster(args) => run_cluster(&args),
        Command::Snapshot(SnapshotCommand::Save { file, endpoint, tls, key_file }) => {
            run_snapshot_save(file, endpoint, &tls, key_file.as_deref())
        }
        Command::Snapshot(SnapshotCommand::Restore { file, config, data_dir, key_file }) => {
            run_snapshot_restore(file, config, data_dir, key_file.as_deref())
        }
        Command::Encryption(EncryptionCommand::InitKey { path }) => run_encryption_init_key(&path),
        Command::Fsck(args) => run_fsck(&args),
        Command::Version(args) => run_version(&args),
        Command::Config(ConfigCommand::Check(args)) => run_config_check(&args),
        Command::Config(ConfigCommand::Default) => run_config_default(),
        Command::Certs(CertsCommand::Init(args)) => run_certs_init(&args),
        Command::Bench(args) => lockstep_bench::run_cli(&args),
    }
}

fn run_encryption_init_key(path: &std::path::Path) -> ExitCode {
    match lockstep_runtime::crypt::init_key_file(path) {
        Ok(id) => {
            println!(
                "wrote a new encryption key to {} (key id {id:016x}); set encryption.key_file to it, keep it off the \
                 data disk and back it up: data written with it cannot be read without it",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lockstep encryption init-key: {e}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}

/// The cipher of a `--key-file`, or the exit code of a command that cannot use it.
fn load_key(command: &str, path: Option<&std::path::Path>) -> Result<Option<lockstep_core::wal::Cipher>, ExitCode> {
    let Some(path) = path else { return Ok(None) };
    lockstep_runtime::crypt::AesGcm::load_cipher(path).map(Some).map_err(|e| {
        eprintln!("lockstep {command}: {e}");
        ExitCode::from(EXIT_CANNOT_RUN)
    })
}

fn run_certs_init(args: &CertsInitArgs) -> ExitCode {
    let options = lockstep::certs::CertsOptions {
        dir: args.dir.clone(),
        members: args.members,
        hosts: args.hosts.clone(),
        clients: args.clients.clone(),
        days: args.days,
        ca_days: args.ca_days,
        force: args.force,
    };
    match lockstep::certs::init(&options) {
        Ok(report) => {
            print_stdout(&lockstep::certs::summary(&options, &report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lockstep certs init: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reloads every TLS port's certificates on SIGHUP.
fn reload_on_sighup() {
    match signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    lockstep_runtime::tls::request_reload();
                }
            });
        }
        Err(e) => eprintln!("lockstep: cannot handle SIGHUP (certificate reload): {e}"),
    }
}

/// A flag set by SIGINT and SIGTERM.
fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, flag.clone()) {
            eprintln!("lockstep: cannot handle signal {signal}: {e}");
        }
    }
    flag
}

fn run_dev(args: &DevArgs) -> ExitCode {
    init_logging(&args.log_level, args.log_format == LogFormatArg::Json);
    reload_on_sighup();
    let options = DevOptions {
        data_dir: args.data_dir.clone(),
        log_level: Some(args.log_level.clone()),
        tls: args.tls,
        encryption_key_file: args.encryption_key_file.clone(),
    };
    match lockstep::dev::run_dev(&options, stop_flag()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockstep dev: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_serve(args: &ServeArgs) -> ExitCode {
    let mut flags = args.set.clone();
    if let Some(join) = &args.join {
        flags.push(format!("cluster.join={join}"));
    }
    let config = match MemberConfig::load_with_set_flags(Some(&args.config), &lockstep_env(), &flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("lockstep serve: {error}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let json = match args.log_format {
        Some(format) => format == LogFormatArg::Json,
        None => config.log.format == lockstep::config::LogFormat::Json,
    };
    init_logging(&config.log.level, json);
    reload_on_sighup();
    let control = Arc::new(MemberControl::default());
    let flag = stop_flag();
    {
        let control = control.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            control.stop();
        });
    }
    match run_member(ServerOptions::from_config(&config), control) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("lockstep serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_cluster(args: &ClusterArgs) -> ExitCode {
    if let Err(e) = args.tls.apply() {
        eprintln!("lockstep cluster: {e}");
        return ExitCode::from(EXIT_CANNOT_RUN);
    }
    let action = match &args.action {
        ClusterCommand::Status => ClusterAction::Status,
        ClusterCommand::Members => ClusterAction::Members,
        ClusterCommand::Leader => ClusterAction::Leader,
        ClusterCommand::Add { id, peer, client, admin, voter } => ClusterAction::Add {
            id: *id,
            peer: peer.clone(),
            client: client.clone(),
            admin: admin.clone(),
            learner: !voter,
        },
        ClusterCommand::Remove { id, force } => ClusterAction::Remove { id: *id, force: *force },
        ClusterCommand::Promote { id } => ClusterAction::Promote { id: *id },
        ClusterCommand::TransferLeader { to } => ClusterAction::TransferLeader { to: *to },
    };
    match lockstep::cluster_cli::run(&action, &args.endpoints, args.output == Output::Json) {
        Ok(text) => {
            print_stdout(&text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lockstep cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn byte_bar(len: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar
}

fn run_snapshot_save(
    file: PathBuf,
    endpoint: String,
    tls: &TlsClientArgs,
    key_file: Option<&std::path::Path>,
) -> ExitCode {
    use std::io::Read;
    let key = match load_key("snapshot save", key_file) {
        Ok(key) => key,
        Err(code) => return code,
    };
    if let Err(e) = tls.apply() {
        eprintln!("lockstep snapshot save: {e}");
        return ExitCode::from(EXIT_CANNOT_RUN);
    }
    let url = format!("{}/snapshot", endpoint.trim_end_matches('/'));
    let url = if url.starts_with("http") { url } else { format!("http://{url}") };
    let client = lockstep::admin_client::process_client();
    let response = match client.agent().get(&url).timeout(Duration::from_secs(600)).call() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lockstep snapshot save: {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let len = response.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let bar = byte_bar(len, "downloading");
    let mut bytes = Vec::with_capacity(len as usize);
    if let Err(e) = bar.wrap_read(response.into_reader()).read_to_end(&mut bytes) {
        eprintln!("lockstep snapshot save: reading {url}: {e}");
        return ExitCode::FAILURE;
    }
    bar.finish_and_clear();
    let header = match lockstep::snapshot::decode_snapshot_file(&bytes) {
        Ok((header, _)) => header,
        Err(e) => {
            eprintln!("lockstep snapshot save: the member sent a bad snapshot: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bytes = match &key {
        Some(key) => lockstep::snapshot::seal(&bytes, key),
        None => bytes,
    };
    if let Err(e) = lockstep::snapshot::write_file(&file, &bytes) {
        eprintln!("lockstep snapshot save: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "saved {}{}: {} bytes, revision {}, applied index {}, member {} of cluster {:016x}, data crc32c {:08x}",
        file.display(),
        key.as_ref().map_or_else(String::new, |k| format!(" (encrypted, key id {:016x})", k.key_id())),
        bytes.len(),
        header.revision,
        header.applied_index,
        header.member_id,
        header.cluster_id,
        header.data_crc
    );
    ExitCode::SUCCESS
}

fn run_snapshot_restore(
    file: PathBuf,
    config: PathBuf,
    data_dir: Option<PathBuf>,
    key_file: Option<&std::path::Path>,
) -> ExitCode {
    use std::io::Read;
    let key = match load_key("snapshot restore", key_file) {
        Ok(key) => key,
        Err(code) => return code,
    };
    let mut flags = Vec::new();
    if let Some(dir) = &data_dir {
        flags.push(format!("data_dir={}", dir.display()));
    }
    let config = match MemberConfig::load_with_set_flags(Some(&config), &lockstep_env(), &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lockstep snapshot restore: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let opened = std::fs::File::open(&file).and_then(|f| f.metadata().map(|m| (f, m.len())));
    let (handle, len) = match opened {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lockstep snapshot restore: {}: {e}", file.display());
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let bar = byte_bar(len, "reading");
    let mut bytes = Vec::with_capacity(len as usize);
    if let Err(e) = bar.wrap_read(handle).read_to_end(&mut bytes) {
        eprintln!("lockstep snapshot restore: {}: {e}", file.display());
        return ExitCode::from(EXIT_CANNOT_RUN);
    }
    bar.finish_and_clear();
    match lockstep::snapshot::restore(&bytes, &config, key.as_ref()) {
        Ok(r) => {
            println!(
                "restored {} into {}: revision {}, {} bytes of state (crc32c {:08x} verified); new cluster {:016x} \
                 with voters {:?}; start it with `lockstep serve --config ...`",
                file.display(),
                config.data_dir.display(),
                r.header.revision,
                r.header.data_len,
                r.header.data_crc,
                r.cluster_id,
                r.voters
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lockstep snapshot restore: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Structured logs on stderr: human text or JSON lines, filtered by `level`
/// (a level or a `tracing` filter; `RUST_LOG` wins when set).
fn init_logging(level: &str, json: bool) {
    // Dependencies' chatter stays out unless asked for: fjall's storage engine
    // logs every flush at info, and glommio reports at error level that the
    // file system does not support polled I/O (expected: lockstep does not use it).
    let directives = if level.contains('=') {
        level.to_string()
    } else {
        format!("{level},lsm_tree=warn,fjall=warn,glommio::reactor=off")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&directives))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Exit code of `lockstep config check` when the config has problems.
const EXIT_CONFIG_INVALID: u8 = 1;

fn run_config_check(args: &ConfigCheckArgs) -> ExitCode {
    let loaded = MemberConfig::load_with_set_flags(Some(&args.file), &lockstep_env(), &args.set);
    let file = args.file.display().to_string();
    let exit_code = match &loaded {
        Ok(_) => 0,
        Err(ConfigError::Read { .. }) => EXIT_CANNOT_RUN,
        Err(ConfigError::Invalid(_)) => EXIT_CONFIG_INVALID,
    };
    match (args.output, &loaded) {
        (Output::Human, Ok(config)) => print_stdout(&format!("{file}: ok ({})\n", config_summary(config))),
        (Output::Human, Err(error @ ConfigError::Read { .. })) => eprintln!("lockstep config check: {error}"),
        (Output::Human, Err(error)) => eprintln!("{error}"),
        (Output::Json, _) => {
            let mut document = serde_json::json!({ "file": file, "exit_code": exit_code });
            match &loaded {
                Ok(config) => {
                    document["status"] = "ok".into();
                    document["member_id"] = config.member_id.into();
                    document["name"] = config.name.clone().into();
                    document["cluster_id"] = format!("{:016x}", config.cluster_id()).into();
                    document["initial_members"] = config.cluster.initial_members.len().into();
                    document["join"] = config.cluster.join.clone().into();
                }
                Err(error @ ConfigError::Read { .. }) => {
                    document["status"] = "error".into();
                    document["error"] = error.to_string().into();
                }
                Err(error) => {
                    document["status"] = "invalid".into();
                    let problems: Vec<serde_json::Value> = error
                        .problems()
                        .iter()
                        .map(|p| {
                            let (line, env) = match &p.origin {
                                Some(Origin::File { line, .. }) => (Some(*line), None),
                                Some(Origin::Env { var }) => (None, Some(var.clone())),
                                _ => (None, None),
                            };
                            serde_json::json!({
                                "text": p.to_string(),
                                "line": line,
                                "env": env,
                                "flag": matches!(p.origin, Some(Origin::Flag)),
                                "key": p.key,
                                "value": p.value,
                                "message": p.message,
                            })
                        })
                        .collect();
                    document["problems"] = problems.into();
                }
            }
            print_stdout(&to_json(&document));
        }
    }
    ExitCode::from(exit_code)
}

/// What `config check` says about a valid config: who the member is and how it
/// finds its cluster.
fn config_summary(config: &MemberConfig) -> String {
    match &config.cluster.join {
        Some(url) => format!("member {}, joining the cluster of {url}", config.member_id),
        None => {
            let n = config.cluster.initial_members.len();
            format!(
                "member {} of cluster {:016x}, {n} initial member{}",
                config.member_id,
                config.cluster_id(),
                if n == 1 { "" } else { "s" }
            )
        }
    }
}

fn run_config_default() -> ExitCode {
    print_stdout(&MemberConfig::single(1, PathBuf::from("/var/lib/lockstep")).to_yaml());
    ExitCode::SUCCESS
}

fn run_version(args: &VersionArgs) -> ExitCode {
    let info = VersionInfo::current();
    let text = match args.output {
        Output::Human => info.render_human(),
        Output::Json => to_json(&info),
    };
    print_stdout(&text);
    ExitCode::SUCCESS
}

fn run_fsck(args: &FsckArgs) -> ExitCode {
    let key = match load_key("fsck", args.key_file.as_deref()) {
        Ok(key) => key,
        Err(code) => return code,
    };
    let mut progress = TerminalProgress::new(std::io::stderr().is_terminal());
    let result = lockstep::fsck::fsck_data_dir_with_cipher(
        &args.data_dir,
        FsckOptions { repair: args.repair },
        key.as_ref(),
        &mut |e| progress.handle(e),
    );
    progress.finish();
    match result {
        Ok(outcome) => {
            let text = match args.output {
                Output::Human => outcome.render_human(),
                Output::Json => to_json(&outcome),
            };
            print_stdout(&text);
            ExitCode::from(outcome.exit_code)
        }
        Err(error) => {
            match args.output {
                Output::Human => eprintln!("lockstep fsck: {error}"),
                Output::Json => {
                    let document = serde_json::json!({
                        "data_dir": args.data_dir.display().to_string(),
                        "status": "error",
                        "error": error.to_string(),
                        "exit_code": EXIT_CANNOT_RUN,
                    });
                    print_stdout(&to_json(&document));
                }
            }
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_string_pretty(value) {
        Ok(mut text) => {
            text.push('\n');
            text
        }
        // The documents are plain structs of strings and numbers; this cannot happen.
        Err(e) => format!("{{\"status\": \"error\", \"error\": \"cannot encode JSON: {e}\"}}\n"),
    }
}

/// Prints to stdout; a closed stdout (`lockstep fsck DIR | head`) is not an error
/// worth a panic, and the exit code still says what fsck found.
fn print_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// An indicatif bar on stderr, only on a terminal and only for large directories.
struct TerminalProgress {
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl TerminalProgress {
    fn new(enabled: bool) -> TerminalProgress {
        TerminalProgress { enabled, bar: None }
    }

    fn handle(&mut self, event: ProgressEvent) {
        match event {
            ProgressEvent::Reading { files, bytes } => {
                if self.enabled && (bytes >= PROGRESS_BYTES_MIN || files >= PROGRESS_FILES_MIN) {
                    let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
                    let style = ProgressStyle::with_template(
                        "reading {msg} [{bar:30}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, eta {eta})",
                    )
                    .map(|s| s.progress_chars("=> "))
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
                    bar.set_style(style);
                    bar.set_message(format!("{files} files"));
                    self.bar = Some(bar);
                }
            }
            ProgressEvent::Read(n) => {
                if let Some(bar) = &self.bar {
                    bar.inc(n);
                }
            }
            ProgressEvent::Checking => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                        spinner.set_style(style);
                    }
                    spinner.set_message("checking every record");
                    spinner.enable_steady_tick(Duration::from_millis(120));
                    self.bar = Some(spinner);
                }
            }
            ProgressEvent::Done => self.finish(),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
