//! Rate limits, the failed-login lock-out and per-client limits on a real
//! member (`lockstep serve`), driven with the Rust `etcd-client` and with
//! `etcdctl`: an over-limit user gets RESOURCE_EXHAUSTED while another keeps
//! its throughput, repeated bad passwords lock out and are counted in
//! `/metrics`, and limits changed through `PUT /admin/limits` apply at once.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use etcd_client::{Client, ConnectOptions, Permission};
use serde_json::{json, Value};

const STARTUP: Duration = Duration::from_secs(20);
const GREEDY_QPS: u64 = 20;

/// One member with cheap bcrypt, a per-user rate and a quick lock-out.
fn member() -> Cluster {
    let mut cluster = Cluster::new(1);
    for m in &mut cluster.members {
        m.config.bcrypt_cost = 4;
        m.config.limits.user_qps = GREEDY_QPS;
        m.config.limits.user_burst = GREEDY_QPS;
        m.config.limits.auth_failures_max = 3;
        m.config.limits.auth_lockout_ms = 3_000;
        m.config.limits.auth_lockout_max_ms = 8_000;
        std::fs::write(&m.config_path, m.config.to_yaml()).unwrap();
        m.start(&[]);
    }
    cluster.wait_leader(STARTUP);
    cluster.members[0].wait_ready(STARTUP);
    cluster
}

/// The value of one sample of `/metrics`, e.g.
/// `lockstep_auth_failures_total{reason="bad_password"}`.
fn metric(cluster: &Cluster, sample: &str) -> u64 {
    let (status, text) = cluster.members[0].get_text("/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    let line = text.lines().find(|l| l.split_once(' ').is_some_and(|(name, _)| name == sample));
    let line = line.unwrap_or_else(|| panic!("no sample {sample} in /metrics:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn put_limits(cluster: &Cluster, changes: Value) -> Value {
    let admin = cluster.members[0].config.advertise_admin();
    let reply = lockstep::admin_client::call("PUT", &admin, "/admin/limits", Some(&changes)).expect("admin answers");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// Runs four futures concurrently; their outputs.
async fn join4<T>(
    a: impl std::future::Future<Output = T>,
    b: impl std::future::Future<Output = T>,
    c: impl std::future::Future<Output = T>,
    d: impl std::future::Future<Output = T>,
) -> [T; 4] {
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    [a, b, c, d]
}

/// The gRPC code and message of a failed call.
fn grpc_error(e: &etcd_client::Error) -> (String, String) {
    match e {
        etcd_client::Error::GRpcStatus(status) => (format!("{:?}", status.code()), status.message().to_string()),
        other => panic!("not a gRPC status: {other:?}"),
    }
}

async fn as_user(url: &str, name: &str, password: &str) -> Result<Client, etcd_client::Error> {
    Client::connect([url], Some(ConnectOptions::new().with_user(name, password))).await
}

#[test]
fn over_limit_user_is_refused_while_another_keeps_its_throughput_and_bad_passwords_lock_out() {
    let cluster = member();
    let url = cluster.members[0].config.advertise_client();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut admin = Client::connect([url.as_str()], None).await.unwrap();
        admin.user_add("root", "rootpw", None).await.unwrap();
        admin.role_add("root").await.unwrap();
        admin.user_grant_role("root", "root").await.unwrap();
        admin.role_add("app").await.unwrap();
        admin.role_grant_permission("app", Permission::read_write("app/").with_prefix()).await.unwrap();
        for user in ["greedy", "polite", "alice"] {
            admin.user_add(user, format!("{user}pw"), None).await.unwrap();
            admin.user_grant_role(user, "app").await.unwrap();
        }
        admin.auth_enable().await.unwrap();
        drop(admin);

        // greedy sends as fast as it can for 2 s, 4 requests at a time
        // (cheap serializable reads, so that even a slow machine goes over
        // 20 req/s); polite sends 10 puts a second meanwhile.
        let mut greedy = as_user(&url, "greedy", "greedypw").await.expect("greedy authenticates");
        let mut polite = as_user(&url, "polite", "politepw").await.expect("polite authenticates");
        let run = Duration::from_secs(2);
        let start = Instant::now();
        let hammer = |mut client: Client| async move {
            let (mut accepted, mut refused) = (0u64, 0u64);
            let serializable = Some(etcd_client::GetOptions::new().with_serializable());
            while start.elapsed() < run {
                match client.get("app/greedy", serializable.clone()).await {
                    Ok(_) => accepted += 1,
                    Err(e) => {
                        let expected = format!(
                            "lockstep: rate limit exceeded: user \"greedy\" {GREEDY_QPS} req/s (burst {GREEDY_QPS})"
                        );
                        assert_eq!(grpc_error(&e), ("ResourceExhausted".to_string(), expected));
                        refused += 1;
                    }
                }
            }
            (accepted, refused)
        };
        let greedy_run = async {
            let counts =
                join4(hammer(greedy.clone()), hammer(greedy.clone()), hammer(greedy.clone()), hammer(greedy.clone()))
                    .await;
            let accepted = counts.iter().map(|c| c.0).sum::<u64>();
            let refused = counts.iter().map(|c| c.1).sum::<u64>();
            (accepted, refused, start.elapsed())
        };
        let polite_run = async {
            let mut errors = Vec::new();
            for i in 0..20 {
                if let Err(e) = polite.put(format!("app/polite/{i}"), "x", None).await {
                    errors.push(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            errors
        };
        let ((accepted, refused, took), polite_errors) = tokio::join!(greedy_run, polite_run);
        eprintln!("greedy: {accepted} accepted, {refused} refused in {took:?}");
        assert_eq!(polite_errors, Vec::<String>::new(), "polite keeps its throughput");
        assert!(refused > 0, "greedy went over its limit");
        let allowed = GREEDY_QPS + (GREEDY_QPS as f64 * took.as_secs_f64()).ceil() as u64;
        assert!(accepted <= allowed, "greedy got {accepted} requests through, at most {allowed} allowed");
        assert!(accepted >= GREEDY_QPS, "greedy got at least its burst through: {accepted}");
        assert_eq!(metric(&cluster, "lockstep_limit_rejected_total{limit=\"user\"}"), refused);
        assert_eq!(metric(&cluster, "lockstep_limit_rejected_total{limit=\"global\"}"), 0);
        let kvs = polite.get("app/polite/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
        assert_eq!(kvs.kvs().len(), 20, "every polite put was applied");

        // A limit changed at runtime applies at once: greedy is unlimited.
        let limits = put_limits(&cluster, json!({"users": {"greedy": {"qps": 0}}}));
        assert_eq!(limits["user_qps"], GREEDY_QPS);
        assert_eq!(limits["users"]["greedy"]["qps"], 0);
        for _ in 0..100 {
            greedy.put("app/greedy", "y", None).await.expect("greedy is no longer limited");
        }
        assert_eq!(metric(&cluster, "lockstep_limit_rejected_total{limit=\"user\"}"), refused);
        // And back: a global limit of 1 req/s with a burst of 1.
        put_limits(&cluster, json!({"global_qps": 1, "global_burst": 1}));
        let mut refused_globally = 0;
        for _ in 0..3 {
            if let Err(e) = polite.get("app/x", None).await {
                assert_eq!(
                    grpc_error(&e),
                    (
                        "ResourceExhausted".to_string(),
                        "lockstep: rate limit exceeded: global 1 req/s (burst 1)".to_string()
                    )
                );
                refused_globally += 1;
            }
        }
        assert!(refused_globally >= 2, "at most one of 3 quick requests passes");
        assert_eq!(metric(&cluster, "lockstep_limit_rejected_total{limit=\"global\"}"), refused_globally);
        put_limits(&cluster, json!({"global_qps": 0}));
        drop((greedy, polite));

        // Three bad passwords lock alice (and this source) out, without a
        // password check, for 3 s; the lock-out is counted.
        for _ in 0..3 {
            let e = as_user(&url, "alice", "wrong").await.err().expect("a wrong password is refused");
            assert_eq!(
                grpc_error(&e),
                (
                    "InvalidArgument".to_string(),
                    "etcdserver: authentication failed, invalid user ID or password".to_string()
                )
            );
        }
        let e = as_user(&url, "alice", "alicepw").await.err().expect("alice is locked out");
        assert_eq!(
            grpc_error(&e),
            (
                "ResourceExhausted".to_string(),
                "etcdserver: authentication failed, too many attempts; retry in 3s".to_string()
            )
        );
    });
    // etcdctl prints the reason.
    let out = etcdctl(std::slice::from_ref(&url), &["--user", "alice:alicepw", "get", "app/x"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("etcdserver: authentication failed, too many attempts; retry in"), "{stderr}");
    assert_eq!(metric(&cluster, "lockstep_auth_failures_total{reason=\"bad_password\"}"), 3);
    assert_eq!(metric(&cluster, "lockstep_auth_failures_total{reason=\"unknown_user\"}"), 0);
    let locked_out = metric(&cluster, "lockstep_auth_failures_total{reason=\"locked_out\"}");
    assert!(locked_out >= 2, "the client's attempt and etcdctl's at least: {locked_out}");
    assert_eq!(metric(&cluster, "lockstep_auth_lockouts_total{scope=\"user\"}"), 1);
    assert_eq!(metric(&cluster, "lockstep_auth_lockouts_total{scope=\"source\"}"), 1);
    // After the lock-out, the right password works again.
    std::thread::sleep(Duration::from_millis(3_100));
    let out = etcdctl(std::slice::from_ref(&url), &["--user", "alice:alicepw", "put", "app/x", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Connections per source: with a limit of 2, connections beyond are
    // closed as soon as they are accepted, and counted.
    put_limits(&cluster, json!({"max_connections_per_source": 2}));
    let address = url.trim_start_matches("http://");
    let connections: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(address).unwrap()).collect();
    let mut closed = 0;
    for mut c in &connections {
        c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut byte = [0u8; 1];
        // An accepted connection waits for the client's preface (the read
        // times out); a refused one reads as closed or reset.
        let waiting = matches!(c.read(&mut byte), Err(ref e)
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
        if !waiting {
            closed += 1;
        }
    }
    assert!(closed >= 3, "at most 2 of 5 connections are served: {closed} closed");
    assert_eq!(metric(&cluster, "lockstep_limit_rejected_total{limit=\"connections_per_source\"}"), closed);
    drop(connections);
    put_limits(&cluster, json!({"max_connections_per_source": 1000}));
    let out = etcdctl(std::slice::from_ref(&url), &["--user", "alice:alicepw", "get", "app/x", "--print-value-only"]);
    assert_eq!(stdout(&out), "1\n", "{}", String::from_utf8_lossy(&out.stderr));
}
