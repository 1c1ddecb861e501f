//! Register operations through the unmodified `etcdctl` (API v3), one process
//! per operation: a read is `get`, a write `put`, a cas a `txn` that compares
//! the value. The outcome is classified the Jepsen way: `fail` only when the
//! operation certainly did not happen, `info` when it may have.

use std::io::Write as _;
use std::process::{Command, Stdio};

use lockstep_jepsen::F;

/// Seconds etcdctl waits for a connection.
const DIAL_TIMEOUT_S: u32 = 1;
/// Seconds etcdctl waits for an answer.
const COMMAND_TIMEOUT_S: u32 = 3;
/// Seconds after which the etcdctl process is killed regardless.
pub const KILL_AFTER_S: u32 = 8;

/// etcdctl's flags before the command: the endpoint and the timeouts.
pub fn global_flags(endpoint: &str) -> [String; 3] {
    [
        format!("--endpoints={endpoint}"),
        format!("--dial-timeout={DIAL_TIMEOUT_S}s"),
        format!("--command-timeout={COMMAND_TIMEOUT_S}s"),
    ]
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect; a read carries the value read (`None`: no such key).
    Ok(Option<i64>),
    /// It certainly did not take effect.
    Fail(String),
    /// It may or may not have taken effect.
    Info(String),
}

/// An operation on one etcd key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `get KEY`.
    Read,
    /// `put KEY VALUE`.
    Write(i64),
    /// `txn`: if value(KEY) = expected then put KEY new.
    Cas(i64, i64),
}

impl Request {
    /// The history function of the request.
    pub fn f(self) -> F {
        match self {
            Request::Read => F::Read,
            Request::Write(_) => F::Write,
            Request::Cas(..) => F::Cas,
        }
    }
}

/// How reads are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Reads {
    /// etcd's default: the member confirms it leads (ReadIndex) before answering.
    Linearizable,
    /// `--consistency=s`: any member answers from its own state, possibly
    /// stale. Not linearizable by design: a self-test that the harness and
    /// checker catch stale reads.
    Serializable,
}

/// The etcdctl arguments (after the global flags) and stdin of a request.
pub fn etcdctl_args(key: &str, request: Request, reads: Reads) -> (Vec<String>, Option<String>) {
    match request {
        Request::Read if reads == Reads::Serializable => {
            let args = ["get", key, "--print-value-only", "--consistency=s"];
            (args.iter().map(|arg| (*arg).to_owned()).collect(), None)
        }
        Request::Read => (vec!["get".into(), key.into(), "--print-value-only".into()], None),
        Request::Write(value) => (vec!["put".into(), key.into(), value.to_string()], None),
        Request::Cas(expected, new) => {
            // Compares, a blank line, the success branch, a blank line, the (empty) failure branch.
            let stdin = format!("value(\"{key}\") = \"{expected}\"\n\nput {key} {new}\n\n\n");
            (vec!["txn".into()], Some(stdin))
        }
    }
}

/// Runs etcdctl with `args` (and `stdin`) against `endpoint`, killed after
/// [`KILL_AFTER_S`]; returns (success, stdout, stderr), or an error when it
/// could not start or be waited for. The bank and lock workloads use it.
pub fn etcdctl<S: AsRef<std::ffi::OsStr>>(
    endpoint: &str,
    args: &[S],
    stdin: Option<&str>,
) -> Result<(bool, String, String), String> {
    let mut child = Command::new("timeout")
        .args(["-s", "KILL", &KILL_AFTER_S.to_string(), "etcdctl"])
        .args(global_flags(endpoint))
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start etcdctl: {error}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    let output = child.wait_with_output().map_err(|error| format!("waiting for etcdctl: {error}"))?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// Runs `request` on `key` against the client URL `endpoint`.
pub fn execute(endpoint: &str, key: &str, request: Request, reads: Reads) -> Outcome {
    let (args, stdin) = etcdctl_args(key, request, reads);
    let child = Command::new("timeout")
        .args(["-s", "KILL", &KILL_AFTER_S.to_string(), "etcdctl"])
        .args(global_flags(endpoint))
        .args(&args)
        .env("ETCDCTL_API", "3")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        // Nothing was sent.
        Err(error) => return Outcome::Fail(format!("cannot start etcdctl: {error}")),
    };
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    match child.wait_with_output() {
        Ok(output) => classify(
            request,
            output.status.success(),
            &String::from_utf8_lossy(&output.stdout),
            &String::from_utf8_lossy(&output.stderr),
        ),
        Err(error) => Outcome::Info(format!("waiting for etcdctl: {error}")),
    }
}

/// Classifies an etcdctl result.
///
/// - A read that failed is `fail`: a read changes nothing, so it may as well
///   not have happened.
/// - A cas whose txn answered `FAILURE` (the compare did not hold) is `fail`.
/// - Any other error of a write or cas is `info`: etcdctl cannot tell a dial
///   timeout from a request timeout (both say "context deadline exceeded"),
///   so the request may have reached the leader.
pub fn classify(request: Request, success: bool, stdout: &str, stderr: &str) -> Outcome {
    let error = || {
        let text = stderr.trim();
        let line = text.lines().last().unwrap_or("").trim();
        if line.is_empty() {
            "etcdctl failed with no message".to_owned()
        } else {
            line.chars().take(200).collect()
        }
    };
    match request {
        Request::Read if !success => Outcome::Fail(error()),
        Request::Read => {
            let text = stdout.trim();
            if text.is_empty() {
                Outcome::Ok(None)
            } else {
                match text.parse::<i64>() {
                    Ok(value) => Outcome::Ok(Some(value)),
                    Err(_) => Outcome::Fail(format!("read a non-integer value {text:?}")),
                }
            }
        }
        Request::Write(_) if success && stdout.trim() == "OK" => Outcome::Ok(None),
        Request::Cas(..) if success && stdout.trim_start().starts_with("SUCCESS") => Outcome::Ok(None),
        Request::Cas(..) if success && stdout.trim_start().starts_with("FAILURE") => {
            Outcome::Fail("compare failed".to_owned())
        }
        _ if success => Outcome::Info(format!("unexpected etcdctl output {:?}", stdout.trim())),
        _ => Outcome::Info(error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_etcdctl_commands() {
        assert_eq!(
            etcdctl_args("lsj/r", Request::Read, Reads::Linearizable).0.join(" "),
            "get lsj/r --print-value-only"
        );
        assert_eq!(etcdctl_args("lsj/r", Request::Write(7), Reads::Linearizable).0.join(" "), "put lsj/r 7");
        let (args, stdin) = etcdctl_args("lsj/r", Request::Cas(3, 4), Reads::Serializable);
        assert_eq!(args, ["txn"]);
        assert_eq!(stdin.unwrap(), "value(\"lsj/r\") = \"3\"\n\nput lsj/r 4\n\n\n");
        let (args, _) = etcdctl_args("lsj/r", Request::Read, Reads::Serializable);
        assert_eq!(args.join(" "), "get lsj/r --print-value-only --consistency=s");
    }

    #[test]
    fn outcomes() {
        assert_eq!(classify(Request::Read, true, "17\n", ""), Outcome::Ok(Some(17)));
        assert_eq!(classify(Request::Read, true, "", ""), Outcome::Ok(None));
        assert!(matches!(classify(Request::Read, false, "", "Error: context deadline exceeded"), Outcome::Fail(_)));
        assert!(matches!(classify(Request::Read, true, "x", ""), Outcome::Fail(_)));
        assert_eq!(classify(Request::Write(1), true, "OK\n", ""), Outcome::Ok(None));
        assert_eq!(
            classify(Request::Write(1), false, "", "{\"level\":\"warn\"}\nError: context deadline exceeded\n"),
            Outcome::Info("Error: context deadline exceeded".to_owned())
        );
        assert_eq!(classify(Request::Cas(1, 2), true, "SUCCESS\n\nOK\n", ""), Outcome::Ok(None));
        assert!(matches!(classify(Request::Cas(1, 2), true, "FAILURE\n\n", ""), Outcome::Fail(_)));
        assert!(matches!(
            classify(Request::Cas(1, 2), false, "", "Error: etcdserver: request timed out"),
            Outcome::Info(_)
        ));
        assert!(matches!(classify(Request::Write(1), true, "huh", ""), Outcome::Info(_)));
    }
}
