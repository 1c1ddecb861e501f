//! The admin HTTP endpoints' answers, as pure functions of a member's status:
//! `/health`, `/livez`, `/readyz`, `/metrics` (rendered by the runtime) and
//! `/cluster/{status,members,leader}`. The server in [`crate::server`] routes
//! requests here; keeping the decisions pure makes every threshold testable.

use std::collections::BTreeMap;

use lockstep_core::{NodeId, Role};
use lockstep_runtime::tls::TlsStatus;
use lockstep_runtime::MemberStatus;
use serde_json::{json, Value};

/// A member's applied index may trail its commit index by this much and still
/// be ready (`/readyz`).
pub const READY_APPLY_LAG_MAX: u64 = 100;
/// Beyond this apply lag the store check is degraded.
pub const DEGRADED_APPLY_LAG: u64 = 5_000;
/// A certificate that expires within this many seconds makes the TLS check
/// degraded (7 days).
pub const TLS_EXPIRY_DEGRADED_S: i64 = 7 * 24 * 3600;
/// Below this share of free disk space the disk check is degraded...
pub const DISK_FREE_DEGRADED: f64 = 0.10;
/// ...and unhealthy below this share *and* below [`DISK_FREE_UNHEALTHY_BYTES`]:
/// 1.6 GiB free on a 250 GiB disk (0.6 %) is room for many WAL segments, so
/// needs attention (degraded) but still serves.
pub const DISK_FREE_UNHEALTHY: f64 = 0.02;
/// Free bytes below which, together with [`DISK_FREE_UNHEALTHY`], the disk check
/// is unhealthy (1 GiB: a few WAL segments and one compaction of the state).
pub const DISK_FREE_UNHEALTHY_BYTES: u64 = 1 << 30;

/// How a member or one of its parts is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Working.
    Healthy,
    /// Working, but something needs attention.
    Degraded,
    /// Not able to serve.
    Unhealthy,
}

impl Health {
    fn name(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// An HTTP answer: status code, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Answer {
    /// A pretty-printed JSON answer.
    pub fn json(status: u16, value: &Value) -> Answer {
        let mut body = serde_json::to_string_pretty(value).expect("JSON values serialize");
        body.push('\n');
        Answer { status, content_type: "application/json", body }
    }

    fn text(status: u16, body: &str) -> Answer {
        Answer { status, content_type: "text/plain; charset=utf-8", body: format!("{body}\n") }
    }
}

/// Where a member can be reached, for `/cluster/members`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAddresses {
    /// The member's name.
    pub name: String,
    /// Peer address (`host:port`).
    pub peer: String,
    /// Client URL.
    pub client: String,
    /// Admin URL.
    pub admin: String,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
    }
}

/// The three checks of `/health` and the overall status (the worst of them).
pub fn health(status: &MemberStatus, last_fsync_ms: Option<f64>) -> (Health, Value) {
    let lag = status.commit_index.saturating_sub(status.applied_index);
    let store = match (&status.failure, lag) {
        (Some(_), _) => Health::Unhealthy,
        (None, lag) if lag > DEGRADED_APPLY_LAG => Health::Degraded,
        _ => Health::Healthy,
    };
    let raft = if status.leader.is_some() { Health::Healthy } else { Health::Unhealthy };
    let disk = match status.disk {
        _ if status.failure.is_some() => Health::Unhealthy,
        Some(d) if d.total_bytes > 0 => {
            let free = d.free_bytes as f64 / d.total_bytes as f64;
            if free < DISK_FREE_UNHEALTHY && d.free_bytes < DISK_FREE_UNHEALTHY_BYTES {
                Health::Unhealthy
            } else if free < DISK_FREE_DEGRADED {
                Health::Degraded
            } else {
                Health::Healthy
            }
        }
        _ => Health::Degraded,
    };
    let overall = store.max(raft).max(disk);
    let store_detail = match &status.failure {
        Some(failure) => format!("stopped: {failure}"),
        None => format!("applied index {} of {} committed (lag {lag})", status.applied_index, status.commit_index),
    };
    let raft_detail = match status.leader {
        Some(leader) => format!("leader {leader}, term {}, this member is {}", status.term, role_name(status.role)),
        None => format!("no leader (term {}, this member is {})", status.term, role_name(status.role)),
    };
    let disk_detail = match status.disk {
        Some(d) => format!(
            "{} MiB free of {} MiB; last WAL fsync {}",
            d.free_bytes >> 20,
            d.total_bytes >> 20,
            last_fsync_ms.map_or("n/a".to_string(), |ms| format!("{ms:.2} ms"))
        ),
        None => "free space unknown".to_string(),
    };
    let body = json!({
        "status": overall.name(),
        "checks": {
            "store": {"status": store.name(), "detail": store_detail, "applied_index": status.applied_index,
                      "commit_index": status.commit_index, "apply_lag": lag, "revision": status.revision},
            "raft": {"status": raft.name(), "detail": raft_detail, "leader": status.leader, "term": status.term,
                     "role": role_name(status.role)},
            "disk": {"status": disk.name(), "detail": disk_detail,
                     "free_bytes": status.disk.map(|d| d.free_bytes), "total_bytes": status.disk.map(|d| d.total_bytes),
                     "last_fsync_ms": last_fsync_ms},
        },
    });
    (overall, body)
}

/// `/health`: 200 unless unhealthy (503).
pub fn health_answer(status: &MemberStatus, last_fsync_ms: Option<f64>) -> Answer {
    health_answer_with_tls(status, last_fsync_ms, &[], 0)
}

/// `/health` of a member with TLS on some ports: a fourth check, `tls`, is
/// degraded while a port's certificate files fail to reload (the port keeps
/// serving the previous certificate) or its certificate expires within
/// [`TLS_EXPIRY_DEGRADED_S`] of `now_unix_s`. Without TLS there is no such check.
pub fn health_answer_with_tls(
    status: &MemberStatus,
    last_fsync_ms: Option<f64>,
    tls: &[TlsStatus],
    now_unix_s: i64,
) -> Answer {
    let (mut overall, mut body) = health(status, last_fsync_ms);
    if let Some((check, value)) = tls_check(tls, now_unix_s) {
        overall = overall.max(check);
        body["status"] = overall.name().into();
        body["checks"]["tls"] = value;
    }
    Answer::json(if overall == Health::Unhealthy { 503 } else { 200 }, &body)
}

/// The `tls` check of `/health` (`None` when no port has TLS).
pub fn tls_check(tls: &[TlsStatus], now_unix_s: i64) -> Option<(Health, Value)> {
    if tls.is_empty() {
        return None;
    }
    let mut worst = Health::Healthy;
    let mut problems = Vec::new();
    let mut ports = serde_json::Map::new();
    for port in tls {
        let expires_in_s = port.not_after_unix_s.map(|t| t - now_unix_s);
        if let Some(error) = &port.error {
            worst = Health::Degraded;
            problems.push(format!(
                "{}: reloading {} failed: {}; still serving the previous certificate",
                port.listener,
                error.file.display(),
                error.why
            ));
        }
        match expires_in_s {
            Some(left) if left <= 0 => {
                worst = Health::Degraded;
                problems.push(format!("{}: the certificate {} has expired", port.listener, port.cert_file.display()));
            }
            Some(left) if left < TLS_EXPIRY_DEGRADED_S => {
                worst = Health::Degraded;
                problems.push(format!(
                    "{}: the certificate {} expires in {} h",
                    port.listener,
                    port.cert_file.display(),
                    left / 3600
                ));
            }
            _ => {}
        }
        ports.insert(
            port.listener.to_string(),
            json!({
                "cert_file": port.cert_file.display().to_string(),
                "expires_in_s": expires_in_s,
                "reloads": port.reloads,
                "reload_failures": port.reload_failures,
                "error": port.error.as_ref().map(|e| json!({"file": e.file.display().to_string(), "why": e.why})),
            }),
        );
    }
    let detail = if problems.is_empty() {
        let names: Vec<&str> = tls.iter().map(|p| p.listener).collect();
        format!("TLS on {}; certificates valid", names.join(", "))
    } else {
        problems.join("; ")
    };
    Some((worst, json!({"status": worst.name(), "detail": detail, "ports": ports})))
}

/// `/livez`: the event loop answered (this function runs on it) and the member
/// has not stopped on a fatal error.
pub fn livez(status: &MemberStatus) -> Answer {
    match &status.failure {
        None => Answer::text(200, "ok"),
        Some(failure) => Answer::text(503, &format!("member stopped: {failure}")),
    }
}

/// `/readyz`: 200 once the member knows a leader and has applied up to the
/// commit index it knows (within [`READY_APPLY_LAG_MAX`]).
pub fn readyz(status: &MemberStatus) -> Answer {
    let lag = status.commit_index.saturating_sub(status.applied_index);
    if let Some(failure) = &status.failure {
        return Answer::text(503, &format!("not ready: member stopped: {failure}"));
    }
    match status.leader {
        None => Answer::text(503, "not ready: no leader"),
        Some(_) if lag > READY_APPLY_LAG_MAX => {
            Answer::text(503, &format!("not ready: applied index trails the commit index by {lag} entries"))
        }
        Some(_) => Answer::text(200, "ok"),
    }
}

/// `/cluster/status`: this member's view.
pub fn cluster_status(status: &MemberStatus, name: &str) -> Answer {
    let peers: BTreeMap<String, Value> = status
        .peers
        .iter()
        .map(|(id, p)| {
            (
                id.to_string(),
                json!({"connected": p.connected, "sent_bytes": p.sent_bytes, "received_bytes": p.received_bytes,
                       "dropped_frames": p.dropped_frames}),
            )
        })
        .collect();
    let progress: BTreeMap<String, u64> = status.progress.iter().map(|(id, m)| (id.to_string(), *m)).collect();
    Answer::json(
        200,
        &json!({
            "member_id": status.id,
            "name": name,
            "cluster_id": format!("{:016x}", status.cluster_id),
            "role": role_name(status.role),
            "leader": status.leader,
            "term": status.term,
            "commit_index": status.commit_index,
            "applied_index": status.applied_index,
            "persisted_index": status.persisted_index,
            "last_index": status.last_index,
            "revision": status.revision,
            "compact_revision": status.compact_revision,
            "keys": status.keys,
            "db_size_bytes": status.db_size_bytes,
            "pending_requests": status.pending_requests,
            "leader_changes": status.leader_changes,
            "voters": status.membership.voters,
            "learners": status.membership.learners,
            "joint": !status.membership.outgoing.is_empty(),
            "replication": progress,
            "peers": peers,
            "uptime_ms": status.uptime_ms,
        }),
    )
}

/// `/cluster/members`: the membership with each member's addresses (as this
/// member knows them).
pub fn cluster_members(status: &MemberStatus, addresses: &BTreeMap<NodeId, MemberAddresses>) -> Answer {
    let entry = |id: &NodeId, kind: &str| {
        let a = addresses.get(id);
        json!({
            "id": id,
            "name": a.map(|a| a.name.clone()),
            "role": kind,
            "peer": a.map(|a| a.peer.clone()),
            "client": a.map(|a| a.client.clone()),
            "admin": a.map(|a| a.admin.clone()),
            "is_leader": status.leader == Some(*id),
            "match_index": status.progress.get(id),
        })
    };
    let mut members: Vec<Value> = status.membership.voters.iter().map(|id| entry(id, "voter")).collect();
    members.extend(status.membership.learners.iter().map(|id| entry(id, "learner")));
    Answer::json(200, &json!({"cluster_id": format!("{:016x}", status.cluster_id), "members": members}))
}

/// `/cluster/leader`: the leader this member knows (503 when none).
pub fn cluster_leader(status: &MemberStatus, addresses: &BTreeMap<NodeId, MemberAddresses>) -> Answer {
    match status.leader {
        Some(leader) => {
            let a = addresses.get(&leader);
            Answer::json(
                200,
                &json!({"leader": leader, "term": status.term, "name": a.map(|a| a.name.clone()),
                        "client": a.map(|a| a.client.clone()), "admin": a.map(|a| a.admin.clone())}),
            )
        }
        None => Answer::json(503, &json!({"leader": null, "term": status.term, "error": "no leader"})),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use lockstep_core::Membership;
    use lockstep_runtime::member::DiskSpace;

    fn status() -> MemberStatus {
        MemberStatus {
            id: 1,
            cluster_id: 0xabc,
            term: 3,
            role: Role::Follower,
            leader: Some(2),
            commit_index: 100,
            applied_index: 100,
            persisted_index: 100,
            last_index: 100,
            membership: Membership { voters: vec![1, 2, 3], outgoing: vec![], learners: vec![] },
            progress: BTreeMap::new(),
            pending_requests: 0,
            revision: 5,
            compact_revision: 0,
            keys: 4,
            db_size_bytes: 1000,
            leader_changes: 1,
            wal: Default::default(),
            peers: BTreeMap::new(),
            failure: None,
            uptime_ms: 10,
            disk: Some(DiskSpace { free_bytes: 50 << 30, total_bytes: 100 << 30 }),
        }
    }

    #[test]
    fn healthy_member() {
        let (h, body) = health(&status(), Some(1.5));
        assert_eq!(h, Health::Healthy);
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["checks"]["raft"]["detail"], "leader 2, term 3, this member is follower");
        assert_eq!(body["checks"]["store"]["apply_lag"], 0);
        assert_eq!(body["checks"]["disk"]["detail"], "51200 MiB free of 102400 MiB; last WAL fsync 1.50 ms");
        assert_eq!(health_answer(&status(), None).status, 200);
        assert_eq!(readyz(&status()).status, 200);
        assert_eq!(livez(&status()).status, 200);
    }

    #[test]
    fn no_leader_is_unhealthy_and_not_ready() {
        let s = MemberStatus { leader: None, ..status() };
        assert_eq!(health(&s, None).0, Health::Unhealthy);
        assert_eq!(health_answer(&s, None).status, 503);
        assert_eq!(readyz(&s), Answer::text(503, "not ready: no leader"));
        assert_eq!(cluster_leader(&s, &BTreeMap::new()).status, 503);
    }

    #[test]
    fn apply_lag_and_disk_space_degrade() {
        let lagging = MemberStatus { applied_index: 100, commit_index: 100 + READY_APPLY_LAG_MAX + 1, ..status() };
        assert_eq!(readyz(&lagging).body, "not ready: applied index trails the commit index by 101 entries\n");
        assert_eq!(health(&lagging, None).0, Health::Healthy);
        let far = MemberStatus { commit_index: 100 + DEGRADED_APPLY_LAG + 1, ..status() };
        assert_eq!(health(&far, None).0, Health::Degraded);
        let full = MemberStatus { disk: Some(DiskSpace { free_bytes: 5, total_bytes: 100 }), ..status() };
        assert_eq!(health(&full, None).0, Health::Degraded);
        let fuller = MemberStatus { disk: Some(DiskSpace { free_bytes: 1, total_bytes: 100 }), ..status() };
        assert_eq!(health(&fuller, None).0, Health::Unhealthy);
        // A big disk: 1.6 GiB free of 250 GiB (0.6 %) still serves, degraded.
        let big = MemberStatus { disk: Some(DiskSpace { free_bytes: 1638 << 20, total_bytes: 250 << 30 }), ..status() };
        assert_eq!(health(&big, None).0, Health::Degraded);
        assert_eq!(health_answer(&big, None).status, 200);
        let big_full =
            MemberStatus { disk: Some(DiskSpace { free_bytes: 900 << 20, total_bytes: 250 << 30 }), ..status() };
        assert_eq!(health(&big_full, None).0, Health::Unhealthy);
    }

    #[test]
    fn stopped_member_fails_every_probe() {
        let s = MemberStatus { failure: Some("fsync failed".into()), ..status() };
        assert_eq!(livez(&s), Answer::text(503, "member stopped: fsync failed"));
        assert_eq!(readyz(&s).status, 503);
        let (h, body) = health(&s, None);
        assert_eq!(h, Health::Unhealthy);
        assert_eq!(body["checks"]["store"]["detail"], "stopped: fsync failed");
    }

    #[test]
    fn members_list_addresses_and_leader() {
        let mut addresses = BTreeMap::new();
        addresses.insert(
            2,
            MemberAddresses {
                name: "member-2".into(),
                peer: "127.0.0.1:22380".into(),
                client: "http://127.0.0.1:22379".into(),
                admin: "http://127.0.0.1:8081".into(),
            },
        );
        let answer = cluster_members(&status(), &addresses);
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["members"].as_array().unwrap().len(), 3);
        assert_eq!(body["members"][1]["is_leader"], true);
        assert_eq!(body["members"][1]["client"], "http://127.0.0.1:22379");
        let leader: Value = serde_json::from_str(&cluster_leader(&status(), &addresses).body).unwrap();
        assert_eq!(leader["leader"], 2);
        assert_eq!(leader["admin"], "http://127.0.0.1:8081");
    }

    #[test]
    fn the_tls_check_names_a_failed_reload_and_a_certificate_about_to_expire() {
        use lockstep_runtime::tls::{TlsError, TlsStatus};
        use std::path::PathBuf;
        let now = 1_800_000_000;
        let port = |listener, not_after: i64, error: Option<TlsError>| TlsStatus {
            listener,
            cert_file: PathBuf::from(format!("/tls/{listener}.crt")),
            not_after_unix_s: Some(not_after),
            error,
            reloads: 2,
            reload_failures: u64::from(listener == "client"),
            handshake_failures: BTreeMap::new(),
        };
        assert_eq!(tls_check(&[], now), None);
        let year = 365 * 86_400;
        let (health, body) =
            tls_check(&[port("client", now + year, None), port("peer", now + year, None)], now).unwrap();
        assert_eq!(health, Health::Healthy);
        assert_eq!(body["detail"], "TLS on client, peer; certificates valid");
        let broken = TlsError { file: PathBuf::from("/tls/client.crt"), why: "not valid PEM: x".into() };
        let (health, body) =
            tls_check(&[port("client", now + year, Some(broken)), port("admin", now + 3600 * 5, None)], now).unwrap();
        assert_eq!(health, Health::Degraded);
        assert_eq!(
            body["detail"],
            "client: reloading /tls/client.crt failed: not valid PEM: x; still serving the previous certificate; \
             admin: the certificate /tls/admin.crt expires in 5 h"
        );
        assert_eq!(body["ports"]["client"]["error"]["file"], "/tls/client.crt");
        assert_eq!(body["ports"]["admin"]["expires_in_s"], 3600 * 5);
        // The overall status follows: degraded, still HTTP 200.
        let answer = health_answer_with_tls(&status(), None, &[port("peer", now - 1, None)], now);
        assert_eq!(answer.status, 200);
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["checks"]["tls"]["detail"], "peer: the certificate /tls/peer.crt has expired");
    }
}
