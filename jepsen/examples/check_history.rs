//! Checks a JSON Lines history file and prints the verdict, the time taken
//! and the search effort; a stand-in for `lockstep-jepsen check` in
//! benchmarks. Exit code 0 linearizable, 1 not, 2 unknown or bad input.
//!
//! `cargo run --release -p lockstep-jepsen --example check_history -- FILE [TIMEOUT_S [HTML_OUT]]`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use lockstep_jepsen::{check, CheckConfig, History, Verdict};

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: check_history FILE [TIMEOUT_S [HTML_OUT]]");
        return ExitCode::from(2);
    };
    let timeout_s: u64 = std::env::args().nth(2).and_then(|arg| arg.parse().ok()).unwrap_or(60);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("{path}: {error}");
            return ExitCode::from(2);
        }
    };
    let history = match History::read_jsonl(std::io::BufReader::new(file)) {
        Ok(history) => history,
        Err(error) => {
            eprintln!("{path}: {error}");
            return ExitCode::from(2);
        }
    };
    let config = CheckConfig { time_max: Some(Duration::from_secs(timeout_s)), ..CheckConfig::default() };
    let start = Instant::now();
    let result = check(&history, &config);
    let elapsed = start.elapsed();
    let states: u64 = result.keys.iter().map(|key| key.states).sum();
    let steps: u64 = result.keys.iter().map(|key| key.steps).sum();
    eprint!("{result}");
    if let Some(html_path) = std::env::args().nth(3) {
        if let Err(error) = std::fs::write(&html_path, lockstep_jepsen::render_html(&history, &result)) {
            eprintln!("{html_path}: {error}");
        }
    }
    eprintln!("checked {} events in {:.3} s ({states} states, {steps} steps)", history.len(), elapsed.as_secs_f64());
    match result.verdict {
        Verdict::Valid => {
            println!("linearizable");
            ExitCode::SUCCESS
        }
        Verdict::Invalid => {
            println!("not linearizable");
            ExitCode::from(1)
        }
        Verdict::Unknown => {
            println!("unknown");
            ExitCode::from(2)
        }
    }
}
