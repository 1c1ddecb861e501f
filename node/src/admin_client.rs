//! A small blocking client of the admin HTTP API, for the `lockstep cluster`
//! commands and for a member joining a cluster.
//!
//! The free functions ([`call`], [`call_leader`], [`call_any`]) use the
//! process's admin client: plain HTTP, or HTTPS with the certificates given to
//! [`use_tls`] (a member with admin TLS presents its admin certificate and
//! verifies the other members' against its admin CA bundle; the CLI uses
//! `--cacert`, `--cert` and `--key`). [`AdminClient`] is one such client of
//! its own (tests use several at once).

use std::sync::{Arc, RwLock};
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

/// An admin API client: a `ureq` agent, with TLS settings or without.
#[derive(Debug, Clone)]
pub struct AdminClient {
    agent: ureq::Agent,
}

impl AdminClient {
    /// Plain HTTP (and HTTPS with no trusted CA: it fails).
    pub fn plain() -> AdminClient {
        AdminClient { agent: ureq::AgentBuilder::new().build() }
    }

    /// HTTPS with this rustls client config (trusted CAs, client certificate).
    pub fn tls(config: Arc<rustls::ClientConfig>) -> AdminClient {
        AdminClient { agent: ureq::AgentBuilder::new().tls_config(config).build() }
    }

    /// HTTPS trusting `ca_file`, presenting `cert_file` and `key_file` when given
    /// (etcdctl's `--cacert`, `--cert`, `--key`).
    pub fn from_files(
        ca_file: &std::path::Path,
        cert_and_key: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<AdminClient, String> {
        let config =
            lockstep_runtime::tls::client_config_from_files(ca_file, cert_and_key).map_err(|e| e.to_string())?;
        Ok(AdminClient::tls(config))
    }

    /// The underlying agent (for downloads).
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// Calls `method` on `endpoint` + `path` with an optional JSON body.
    pub fn call(&self, method: &str, endpoint: &str, path: &str, body: Option<&Value>) -> Result<AdminReply, String> {
        let url = format!("{}{path}", normalize(endpoint));
        let request = self.agent.request(method, &url).timeout(ADMIN_CALL_TIMEOUT);
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
    pub fn call_leader(
        &self,
        method: &str,
        endpoints: &[String],
        path: &str,
        body: Option<&Value>,
    ) -> Result<AdminReply, String> {
        let mut errors = Vec::new();
        for endpoint in endpoints {
            let mut target = endpoint.clone();
            for _ in 0..3 {
                match self.call(method, &target, path, body) {
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
    pub fn call_any(&self, method: &str, endpoints: &[String], path: &str) -> Result<(String, AdminReply), String> {
        let mut errors = Vec::new();
        for endpoint in endpoints {
            match self.call(method, endpoint, path, None) {
                Ok(reply) => return Ok((endpoint.clone(), reply)),
                Err(e) => errors.push(e),
            }
        }
        Err(format!("no endpoint answered: {}", errors.join("; ")))
    }
}

/// The process's admin client (see the module doc).
static PROCESS_CLIENT: RwLock<Option<AdminClient>> = RwLock::new(None);

/// Makes the process's admin calls use TLS with `config`.
pub fn use_tls(config: Arc<rustls::ClientConfig>) {
    *PROCESS_CLIENT.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(AdminClient::tls(config));
}

/// The process's admin client.
pub fn process_client() -> AdminClient {
    PROCESS_CLIENT.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone().unwrap_or_else(AdminClient::plain)
}

fn normalize(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    }
}

/// Calls `method` on `endpoint` + `path` with an optional JSON body, with the
/// process's admin client.
pub fn call(method: &str, endpoint: &str, path: &str, body: Option<&Value>) -> Result<AdminReply, String> {
    process_client().call(method, endpoint, path, body)
}

/// [`AdminClient::call_leader`] with the process's admin client.
pub fn call_leader(method: &str, endpoints: &[String], path: &str, body: Option<&Value>) -> Result<AdminReply, String> {
    process_client().call_leader(method, endpoints, path, body)
}

/// [`AdminClient::call_any`] with the process's admin client.
pub fn call_any(method: &str, endpoints: &[String], path: &str) -> Result<(String, AdminReply), String> {
    process_client().call_any(method, endpoints, path)
}
