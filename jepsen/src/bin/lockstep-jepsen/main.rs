//! `lockstep-jepsen`: check histories for linearizability (`check`), convert
//! them between formats (`convert`), and run
//! lockstep clusters in network namespaces under real faults (`run`).

#![forbid(unsafe_code)]

mod bank;
mod check_cmd;
mod cli;
mod client;
mod cluster;
mod convert_cmd;
mod disk;
mod history_log;
mod lock;
mod nemesis;
mod netns;
mod results;
mod rng;
mod run;
mod watch;
mod workload;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser as _;

fn main() {
    let cli = cli::Cli::parse();
    let code = match &cli.command {
        cli::Command::Check(args) => check_cmd::run(args),
        cli::Command::Convert(args) => convert_cmd::run(args),
        cli::Command::Run(args) => {
            // Ctrl-C and SIGTERM set the flag; the run stops its clients, then cleans up.
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                if let Err(error) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
                    eprintln!("cannot handle signal {signal}: {error}");
                }
            }
            run::run(args, &stop)
        }
    };
    std::process::exit(code);
}
