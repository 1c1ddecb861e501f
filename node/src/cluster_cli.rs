//! `lockstep cluster ...`: membership and status through the admin API, as
//! human tables or JSON.

use serde_json::{json, Value};

use crate::admin_client::{call, call_any, call_leader};

/// A cluster subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAction {
    /// Every endpoint's view.
    Status,
    /// The member list.
    Members,
    /// The leader.
    Leader,
    /// Add a member.
    Add {
        /// Its id.
        id: u64,
        /// Its peer address.
        peer: String,
        /// Its client URL.
        client: String,
        /// Its admin URL.
        admin: String,
        /// Add it as a learner (it is then promoted by `promote`).
        learner: bool,
    },
    /// Remove a member.
    Remove {
        /// Its id.
        id: u64,
        /// Remove it even if it is unreachable (a dead member).
        force: bool,
    },
    /// Promote a learner.
    Promote {
        /// Its id.
        id: u64,
    },
    /// Move leadership.
    TransferLeader {
        /// The new leader.
        to: u64,
    },
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect::<Vec<_>>().join("  ")
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out = out.trim_end().to_string();
    out.push('\n');
    for row in rows {
        out.push_str(line(row.clone()).trim_end());
        out.push('\n');
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs a cluster subcommand against `endpoints` (admin URLs); returns what to
/// print, or an error message.
pub fn run(action: &ClusterAction, endpoints: &[String], json_output: bool) -> Result<String, String> {
    match action {
        ClusterAction::Status => {
            let mut rows = Vec::new();
            let mut all = Vec::new();
            for endpoint in endpoints {
                match call("GET", endpoint, "/cluster/status", None) {
                    Ok(reply) => {
                        let b = &reply.body;
                        rows.push(vec![
                            endpoint.clone(),
                            text(&b["member_id"]),
                            text(&b["name"]),
                            text(&b["role"]),
                            text(&b["leader"]),
                            text(&b["term"]),
                            text(&b["commit_index"]),
                            text(&b["applied_index"]),
                            text(&b["revision"]),
                            text(&b["keys"]),
                        ]);
                        all.push(json!({"endpoint": endpoint, "status": reply.body}));
                    }
                    Err(e) => {
                        let mut row = vec![endpoint.clone(), "-".into(), "-".into(), format!("unreachable: {e}")];
                        row.resize(10, "-".into());
                        rows.push(row);
                        all.push(json!({"endpoint": endpoint, "error": e}));
                    }
                }
            }
            if json_output {
                return Ok(serde_json::to_string_pretty(&all).expect("JSON") + "\n");
            }
            Ok(table(
                &["ENDPOINT", "ID", "NAME", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "REVISION", "KEYS"],
                &rows,
            ))
        }
        ClusterAction::Members => {
            let (_, reply) = call_any("GET", endpoints, "/cluster/members")?;
            if json_output {
                return Ok(serde_json::to_string_pretty(&reply.body).expect("JSON") + "\n");
            }
            let rows: Vec<Vec<String>> = reply.body["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    vec![
                        text(&m["id"]),
                        text(&m["name"]),
                        text(&m["role"]),
                        if m["is_leader"] == true { "yes".into() } else { "no".into() },
                        text(&m["peer"]),
                        text(&m["client"]),
                        text(&m["admin"]),
                    ]
                })
                .collect();
            Ok(table(&["ID", "NAME", "ROLE", "LEADER", "PEER", "CLIENT", "ADMIN"], &rows))
        }
        ClusterAction::Leader => {
            let (_, reply) = call_any("GET", endpoints, "/cluster/leader")?;
            if reply.status != 200 {
                return Err(format!("no leader: {}", reply.error_text()));
            }
            if json_output {
                return Ok(serde_json::to_string_pretty(&reply.body).expect("JSON") + "\n");
            }
            Ok(format!(
                "leader: member {} ({}), term {}, client {}, admin {}\n",
                text(&reply.body["leader"]),
                text(&reply.body["name"]),
                text(&reply.body["term"]),
                text(&reply.body["client"]),
                text(&reply.body["admin"])
            ))
        }
        ClusterAction::Add { id, peer, client, admin, learner } => {
            let body = json!({"id": id, "peer": peer, "client": client, "admin": admin, "learner": learner});
            change(endpoints, "POST", "/cluster/members", Some(&body), json_output, &format!("member {id} added"))
        }
        ClusterAction::Remove { id, force } => {
            let path =
                if *force { format!("/cluster/members/{id}?force=true") } else { format!("/cluster/members/{id}") };
            change(endpoints, "DELETE", &path, None, json_output, &format!("member {id} removed"))
        }
        ClusterAction::Promote { id } => {
            let path = format!("/cluster/members/{id}/promote");
            change(endpoints, "POST", &path, None, json_output, &format!("member {id} promoted to voter"))
        }
        ClusterAction::TransferLeader { to } => {
            let body = json!({"to": to});
            change(endpoints, "POST", "/cluster/leader/transfer", Some(&body), json_output, "leadership transferred")
        }
    }
}

fn change(
    endpoints: &[String],
    method: &str,
    path: &str,
    body: Option<&Value>,
    json_output: bool,
    done: &str,
) -> Result<String, String> {
    let reply = call_leader(method, endpoints, path, body)?;
    if reply.status != 200 {
        return Err(reply.error_text());
    }
    if json_output {
        return Ok(serde_json::to_string_pretty(&reply.body).expect("JSON") + "\n");
    }
    let voters = text(&reply.body["voters"]);
    let learners = text(&reply.body["learners"]);
    Ok(match reply.body.get("leader") {
        Some(leader) => format!("{done}: leader is now member {}\n", text(leader)),
        None => format!("{done}; voters {voters}, learners {learners}\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let out = table(&["ID", "NAME"], &[vec!["1".into(), "member-1".into()], vec!["10".into(), "x".into()]]);
        assert_eq!(out, "ID  NAME\n1   member-1\n10  x\n");
    }
}
