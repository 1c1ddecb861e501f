//! The audit log on a real member driven with the unmodified `etcdctl`: user
//! add, auth enable, a failed login, a refused anonymous read and a member
//! add end up in `audit.file` as the exact sequence of records, each with
//! its time, user, source, member, outcome and detail; the lines are on disk
//! after a clean shutdown, and the metrics count them.

mod common;

use std::time::Duration;

use common::{etcdctl, etcdctl_available, free_port, stdout, Cluster};
use serde_json::{json, Value};

const STARTUP: Duration = Duration::from_secs(20);

/// `(event, user, outcome, detail)` of every record, in order.
fn summary(records: &[Value]) -> Vec<(String, String, String, Value)> {
    records
        .iter()
        .map(|r| {
            let mut detail = r["detail"].clone();
            // A refusal's reason and method are checked separately.
            if let Some(d) = detail.as_object_mut() {
                d.remove("reason");
                d.remove("method");
            }
            (
                r["event"].as_str().unwrap().to_string(),
                r["user"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
                detail,
            )
        })
        .collect()
}

fn row(event: &str, user: &str, outcome: &str, detail: Value) -> (String, String, String, Value) {
    (event.to_string(), user.to_string(), outcome.to_string(), detail)
}

#[test]
fn etcdctl_session_is_audited_in_order() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::new(1);
    let audit_path = cluster.dir.path().join("audit.log");
    {
        let m = &mut cluster.members[0];
        m.config.bcrypt_cost = 4;
        m.config.audit.file = Some(audit_path.clone());
        std::fs::write(&m.config_path, m.config.to_yaml()).unwrap();
        m.start(&[]);
    }
    cluster.wait_leader(STARTUP);
    cluster.members[0].wait_ready(STARTUP);
    let endpoints = cluster.running_clients();
    let ok = |args: &[&str]| {
        let out = etcdctl(&endpoints, args);
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        stdout(&out)
    };
    let fails = |args: &[&str], text: &str| {
        let out = etcdctl(&endpoints, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success() && stderr.contains(text), "etcdctl {args:?}: want {text:?}, got {stderr}");
    };
    ok(&["user", "add", "root", "--new-user-password=rootpw"]);
    ok(&["auth", "enable"]);
    fails(&["--user", "root:wrong-pw", "get", "k"], "authentication failed");
    fails(&["get", "k"], "user name is empty");
    let peer = format!("http://127.0.0.1:{}", free_port());
    ok(&["--user", "root:rootpw", "member", "add", "m2", "--learner", &format!("--peer-urls={peer}")]);

    let (status, metrics) = cluster.members[0].get_text("/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("lockstep_audit_events_total{event=\"user_add\"} 1"), "{metrics}");
    assert!(metrics.contains("lockstep_audit_write_failures_total 0"), "{metrics}");

    // A clean stop: every line is on disk.
    assert_eq!(cluster.members[0].terminate(), Some(0));
    let text = std::fs::read_to_string(&audit_path).unwrap();
    let records: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(
        summary(&records),
        vec![
            row("user_add", "anonymous", "ok", json!({ "name": "root", "no_password": false })),
            // etcdctl's `auth enable` tries first, then adds the root role,
            // grants it to root and enables again.
            row("auth_enable", "anonymous", "error", json!({})),
            row("role_add", "anonymous", "ok", json!({ "role": "root" })),
            row("user_grant_role", "anonymous", "ok", json!({ "name": "root", "role": "root" })),
            row("auth_enable", "anonymous", "ok", json!({})),
            row("authenticate", "root", "denied", json!({ "name": "root" })),
            row("permission_denied", "anonymous", "denied", json!({})),
            row("authenticate", "root", "ok", json!({ "name": "root" })),
            row("member_add", "root", "ok", json!({ "peer_urls": [peer], "learner": true })),
        ],
        "{text}"
    );
    for r in &records {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 7, "{r}");
        let ts = r["ts"].as_str().unwrap();
        assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        let source = r["source"].as_str().unwrap();
        assert!(source.starts_with("127.0.0.1:"), "{source}");
        assert_eq!(r["member"], json!({ "id": "1", "name": "member-1" }));
        assert!(!r.to_string().contains("rootpw") && !r.to_string().contains("wrong-pw"), "{r}");
    }
    assert_eq!(records[1]["detail"]["reason"], "etcdserver: root user does not have root role");
    let refused = &records[6]["detail"];
    assert_eq!(refused["method"], "/etcdserverpb.KV/Range");
    assert_eq!(refused["reason"], "etcdserver: user name is empty");
    assert_eq!(records[5]["detail"]["reason"], "etcdserver: authentication failed, invalid user ID or password");
}
