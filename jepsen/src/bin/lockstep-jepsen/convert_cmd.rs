//! `lockstep-jepsen convert`: a history in any format `check` reads, written
//! as JSON Lines or Jepsen EDN.

use std::io::Write as _;

use crate::check_cmd;
use crate::cli::{ConvertArgs, Format};

/// Runs the subcommand; returns the exit code (0, or 2 for unreadable input
/// or an unwritable output).
pub fn run(args: &ConvertArgs) -> i32 {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: cannot read {}: {error}", args.file.display());
            return 2;
        }
    };
    let history = match check_cmd::parse(&args.file, &text) {
        Ok(history) => history,
        Err(error) => {
            eprintln!("error: {}: {error}", args.file.display());
            return 2;
        }
    };
    let converted = match args.to {
        Format::Jsonl => history.to_jsonl(),
        Format::Edn => history.to_edn(),
    };
    let written = match &args.output {
        Some(path) => std::fs::write(path, converted.as_bytes()),
        None => std::io::stdout().lock().write_all(converted.as_bytes()),
    };
    match written {
        Ok(()) => 0,
        Err(error) => {
            let target = args.output.as_ref().map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
            eprintln!("error: cannot write {target}: {error}");
            2
        }
    }
}
