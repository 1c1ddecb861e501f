//! `lockstep-jepsen check`: a thin front end to `lockstep_jepsen::check`.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lockstep_jepsen::{check, CheckConfig, CheckResult, History, ParseError, Verdict};

use crate::cli::{CheckArgs, Model};

/// The exit code of a verdict: 0 linearizable, 1 not, 2 unknown.
pub fn exit_code(verdict: Verdict) -> i32 {
    match verdict {
        Verdict::Valid => 0,
        Verdict::Invalid => 1,
        Verdict::Unknown => 2,
    }
}

/// The last line of a verdict.
pub fn verdict_line(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Valid => "linearizable",
        Verdict::Invalid => "not linearizable",
        Verdict::Unknown => "unknown",
    }
}

/// Whether a file holds a Jepsen EDN history rather than JSON Lines.
pub fn is_edn(path: &Path, text: &str) -> bool {
    if path.extension().is_some_and(|extension| extension == "edn") {
        return true;
    }
    let start = text.trim_start();
    start.starts_with('[') || start.starts_with("{:") || start.starts_with('#') || start.starts_with('(')
}

/// Blanks JSON Lines lines of the nemesis (`"process":"nemesis"`), keeping
/// line numbers, since the library reads only client operations.
pub fn without_nemesis_lines(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            if compact.contains(r#""process":"nemesis""#) {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a file holds a Jepsen console log (the `jepsen.util` op lines).
pub fn is_jepsen_log(path: &Path, text: &str) -> bool {
    path.extension().is_some_and(|extension| extension == "log") || History::looks_like_jepsen_log(text)
}

/// Parses a history file's text: a Jepsen console log (`.log`, or a first
/// line with `jepsen.util - `), Jepsen EDN, or JSON Lines.
pub fn parse(path: &Path, text: &str) -> Result<History, ParseError> {
    if is_jepsen_log(path, text) {
        History::parse_jepsen_log(text)
    } else if is_edn(path, text) {
        History::parse_edn(text)
    } else {
        History::parse_jsonl(&without_nemesis_lines(text))
    }
}

/// Runs the check on another thread; `None` when `timeout` runs out first.
pub fn check_with_timeout(history: History, timeout: Option<Duration>) -> Option<(CheckResult, Duration)> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let started = Instant::now();
        let result = check(&history, &CheckConfig::default());
        let _ = sender.send((result, started.elapsed()));
    });
    match timeout {
        Some(timeout) => receiver.recv_timeout(timeout).ok(),
        None => receiver.recv().ok(),
    }
}

/// Runs the subcommand; returns the exit code.
pub fn run(args: &CheckArgs) -> i32 {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(error) => {
            println!("error: cannot read {}: {error}", args.file.display());
            println!("unknown");
            return 2;
        }
    };
    if args.model == Model::Bank {
        return check_bank(&args.file, &text);
    }
    let history = match parse(&args.file, &text) {
        Ok(history) => history,
        Err(error) => {
            println!("error: {}: {error}", args.file.display());
            println!("unknown");
            return 2;
        }
    };
    let model = match args.model {
        Model::CasRegister => "cas-register",
        Model::Register => "register",
        Model::Kv => "kv (independent registers)",
        Model::Bank => "bank",
    };
    println!("{}: {} events, model {model}", args.file.display(), history.len());
    let timeout = args.timeout.map(|seconds| Duration::from_secs_f64(seconds.max(0.0)));
    match check_with_timeout(history, timeout) {
        Some((result, elapsed)) => {
            print!("{result}");
            println!("checked in {:.3} s", elapsed.as_secs_f64());
            println!("{}", verdict_line(result.verdict));
            exit_code(result.verdict)
        }
        None => {
            println!("the check did not finish within {} s", args.timeout.unwrap_or_default());
            println!("unknown");
            2
        }
    }
}

/// `check --model bank`: the bank checker on a `bank.jsonl`.
fn check_bank(path: &Path, text: &str) -> i32 {
    match crate::bank::parse(text) {
        Ok(events) => {
            println!("{}: {} events, model bank", path.display(), events.len());
            let report = crate::bank::check(&events);
            print!("{}", report.text());
            println!("{}", if report.valid() { "valid" } else { "invalid" });
            i32::from(!report.valid())
        }
        Err(error) => {
            println!("error: {}: {error}", path.display());
            println!("unknown");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_detection() {
        assert!(is_edn(Path::new("history.edn"), "{\"process\":0}"));
        assert!(is_edn(Path::new("h"), "{:type :invoke, :f :read}"));
        assert!(is_edn(Path::new("h"), "  [{:type :invoke}]"));
        assert!(!is_edn(Path::new("h.jsonl"), "{\"process\":0}"));
        assert!(is_jepsen_log(Path::new("etcd_000.log"), ""));
        assert!(is_jepsen_log(Path::new("h"), "\nINFO  jepsen.util - 0\t:invoke\t:read\tnil\n"));
        assert!(!is_jepsen_log(Path::new("h.edn"), "{:type :invoke}"));
    }

    #[test]
    fn nemesis_lines_are_skipped_and_line_numbers_kept() {
        let text = "{\"process\":0,\"type\":\"invoke\",\"f\":\"write\",\"value\":1,\"time\":1}\n\
                    {\"process\": \"nemesis\", \"type\":\"info\",\"f\":\"kill\",\"value\":\"member 1\",\"time\":2}\n\
                    {\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"value\":1,\"time\":3}\n\
                    {\"process\":0,\"type\":\"bogus\"}\n";
        let error = parse(Path::new("h.jsonl"), text).unwrap_err();
        assert_eq!(error.line, 4);
        let good: String = text.lines().take(3).map(|line| format!("{line}\n")).collect();
        assert_eq!(parse(Path::new("h.jsonl"), &good).unwrap().len(), 2);
    }

    #[test]
    fn verdict_lines_and_codes() {
        assert_eq!((verdict_line(Verdict::Valid), exit_code(Verdict::Valid)), ("linearizable", 0));
        assert_eq!((verdict_line(Verdict::Invalid), exit_code(Verdict::Invalid)), ("not linearizable", 1));
        assert_eq!((verdict_line(Verdict::Unknown), exit_code(Verdict::Unknown)), ("unknown", 2));
    }
}
