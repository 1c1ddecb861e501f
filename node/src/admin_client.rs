//! A small blocking client of the admin HTTP API, for the `lockstep cluster`
//! commands and for a member joining a cluster.

use std::time::Duration;

use serde_json::Value;

/// How long one admin call may take.
pub const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// An admin API answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminReply {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body (`Null` if the body was not JSON).
    pub body: Value,
}

impl AdminReply {
    /// The `error` field of a failed call, or the status.
    pub fn error_text(&self) -> String {
        self.body["error"].as_str().map_or_else(|| format!("HTTP {}", self.status), str::to_string)
    }
}

fn normalize(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    }
}

/// Calls `method` on `endpoint` + `path` with an optional JSON body.
pub fn call(method: &str, endpoint: &str, path: &str, body: Option<&Value>) -> Result<AdminReply, String> {
    let url = format!("{}{path}", normalize(endpoint));
    let request = ureq::request(method, &url).timeout(ADMIN_CALL_TIMEOUT);
    let result = match body {
        Some(body) => request.send_json(body.clone()),
        None => request.call(),
    };
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(e)) => return Err(format!("{url}: {e}")),
    };
    let status = response.status();
    let text = response.into_string().map_err(|e| format!("{url}: reading the answer: {e}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(AdminReply { status, body })
}

/// Calls the first reachable endpoint; an answer `421` (not the leader) is
/// followed to the leader's admin URL it names, up to three times.
pub fn call_leader(method: &str, endpoints: &[String], path: &str, body: Option<&Value>) -> Result<AdminReply, String> {
    let mut errors = Vec::new();
    for endpoint in endpoints {
        let mut target = endpoint.clone();
        for _ in 0..3 {
            match call(method, &target, path, body) {
                Ok(reply) if reply.status == 421 => match reply.body["leader_admin"].as_str() {
                    Some(leader) if !leader.is_empty() => target = leader.to_string(),
                    _ => {
                        errors.push(format!("{target}: no leader known yet"));
                        break;
                    }
                },
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
        }
    }
    Err(format!("no endpoint answered: {}", errors.join("; ")))
}

/// Calls the first reachable endpoint (any member).
pub fn call_any(method: &str, endpoints: &[String], path: &str) -> Result<(String, AdminReply), String> {
    let mut errors = Vec::new();
    for endpoint in endpoints {
        match call(method, endpoint, path, None) {
            Ok(reply) => return Ok((endpoint.clone(), reply)),
            Err(e) => errors.push(e),
        }
    }
    Err(format!("no endpoint answered: {}", errors.join("; ")))
}
