//! The `lockstep` command line.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lockstep::config::{lockstep_env, ConfigError, MemberConfig, Origin};
use lockstep::{fsck_data_dir, FsckOptions, ProgressEvent, VersionInfo};

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
                  The server subcommands are not here yet; this build has the offline tools \
                  (fsck, config check)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a stopped member's data directory: every WAL segment and the snapshot file.
    #[command(long_about = FSCK_ABOUT, after_help = FSCK_AFTER_HELP)]
    Fsck(FsckArgs),
    /// Print the version, the git commit, and the on-disk format versions this build reads and writes.
    Version(VersionArgs),
    /// Check a member's config file, or print a default one.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a config file, with the LOCKSTEP_* environment and --set flags applied, without starting anything.
    #[command(long_about = CONFIG_CHECK_ABOUT, after_help = CONFIG_CHECK_AFTER_HELP)]
    Check(ConfigCheckArgs),
    /// Print a complete, commented config file for member 1 of a one-member cluster.
    Default,
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
        Command::Fsck(args) => run_fsck(&args),
        Command::Version(args) => run_version(&args),
        Command::Config(ConfigCommand::Check(args)) => run_config_check(&args),
        Command::Config(ConfigCommand::Default) => run_config_default(),
    }
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
    let mut progress = TerminalProgress::new(std::io::stderr().is_terminal());
    let result = fsck_data_dir(&args.data_dir, FsckOptions { repair: args.repair }, &mut |e| progress.handle(e));
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
