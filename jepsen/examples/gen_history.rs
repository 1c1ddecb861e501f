//! Writes a generated single-register history as JSON Lines to stdout.
//!
//! `cargo run --release -p lockstep-jepsen --example gen_history -- OPS CLIENTS INFO_FRACTION SEED [CORRUPTION [AT]]`
//!
//! CORRUPTION is `never-written-read`, `stale-read` or `swapped-writes`; AT
//! is where, as a fraction of the history (0.5 by default). The environment
//! variable `VALUES_MAX` makes written values cycle through `1..=VALUES_MAX`
//! (as in Jepsen's register workloads) instead of being unique; corruptions
//! are then not certain violations.

use std::io::Write as _;
use std::process::ExitCode;

use lockstep_jepsen::{corrupt, linearizable_history, Corruption, GeneratorConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gen_history OPS CLIENTS INFO_FRACTION SEED [CORRUPTION [AT]]";
    if args.len() < 4 {
        eprintln!("{usage}");
        return ExitCode::from(2);
    }
    let (Ok(ops), Ok(clients), Ok(info_fraction), Ok(seed)) =
        (args[0].parse(), args[1].parse(), args[2].parse(), args[3].parse())
    else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let values_max = std::env::var("VALUES_MAX").ok().and_then(|value| value.parse().ok()).unwrap_or(i64::MAX);
    let config = GeneratorConfig { ops, clients, info_fraction, seed, values_max, ..GeneratorConfig::default() };
    let mut history = linearizable_history(&config);
    if let Some(name) = args.get(4) {
        let Some(corruption) = Corruption::from_name(name) else {
            eprintln!("unknown corruption {name:?}; {usage}");
            return ExitCode::from(2);
        };
        let at = args.get(5).and_then(|at| at.parse().ok()).unwrap_or(0.5);
        let Some(corrupted) = corrupt(&history, corruption, at) else {
            eprintln!("no place for {name} in this history");
            return ExitCode::from(2);
        };
        history = corrupted;
    }
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(history.to_jsonl().as_bytes()).is_err() {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
