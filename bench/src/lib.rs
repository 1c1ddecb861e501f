//! `lockstep bench`: a load generator for etcd v3 endpoints, shaped like etcd's
//! `benchmark` tool, so that lockstep and etcd are measured by the same client.
//!
//! - [`args`]: the command line (`--endpoints`, `--clients`, `--conns`, `--total`, ...).
//! - [`workload`]: put, range, txn-put, watch and lease-keepalive over the
//!   `etcd-client` crate (an etcd client written independently of lockstep).
//! - [`stats`]: per-request latency in HDR histograms, errors counted by kind.
//! - [`report`]: one run's summary, as text or JSON.
//! - [`table`]: the lockstep-versus-etcd table of `bench/compare.sh`.
//! - [`plot`]: SVG scaling charts.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

pub mod args;
pub mod plot;
pub mod report;
pub mod stats;
pub mod table;
pub mod workload;

use std::io::Write;
use std::process::ExitCode;

pub use args::BenchArgs;
use args::{OutputFormat, Workload};
use report::Report;

/// Exit code: bad flags, unreadable reports, or no connection.
const EXIT_CANNOT_RUN: u8 = 2;

/// Runs `lockstep bench` and returns its exit code: 0 when at least one request
/// succeeded (errors are in the report), 1 when none did, 2 when the run could
/// not start.
pub fn run_cli(args: &BenchArgs) -> ExitCode {
    if let Err(e) = args.validate() {
        eprintln!("lockstep bench: {e}");
        return ExitCode::from(EXIT_CANNOT_RUN);
    }
    match &args.workload {
        Workload::Table(t) => match read_reports(&t.files) {
            Ok(reports) => {
                print_stdout(&table::render(&reports, &t.candidate, &t.baseline));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Workload::Plot(p) => {
            let written = read_reports(&p.files)
                .and_then(|reports| plot::write_charts(&reports, p.x, &p.out, p.title.as_deref()));
            match written {
                Ok(paths) => {
                    for path in paths {
                        print_stdout(&format!("wrote {}\n", path.display()));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        _ => match workload::run(args) {
            Ok(report) => {
                print_stdout(&match args.output {
                    OutputFormat::Human => report.render_human(),
                    OutputFormat::Json => report.render_json(),
                });
                if report.summary.requests_ok > 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => fail(&e),
        },
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("lockstep bench: {message}");
    ExitCode::from(EXIT_CANNOT_RUN)
}

fn read_reports(files: &[std::path::PathBuf]) -> Result<Vec<Report>, String> {
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Report::from_json(&text).map_err(|e| format!("{}: not a bench report: {e}", path.display()))
        })
        .collect()
}

/// Prints to stdout; a closed stdout (`lockstep bench ... | head`) is not worth a panic.
fn print_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}
