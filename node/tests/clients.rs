//! Real etcd client libraries against a 3-member cluster of real `lockstep
//! serve` processes: the Rust `etcd-client` crate and PyPI's `etcd3` (Debian's
//! python3-etcd3). KV, txn, leases with keep-alive, and a watch that goes on
//! delivering every event exactly once while the leader is killed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Permission, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};

/// The leader's client URL and the followers' (all members ready).
fn leader_and_followers(cluster: &mut Cluster) -> (u64, String, Vec<String>) {
    let leader = cluster.wait_leader(Duration::from_secs(20));
    for m in &cluster.members {
        m.wait_ready(Duration::from_secs(20));
    }
    let leader_url = cluster.member(leader).config.advertise_client();
    let followers =
        cluster.members.iter().filter(|m| m.config.member_id != leader).map(|m| m.config.advertise_client()).collect();
    (leader, leader_url, followers)
}

async fn connect(url: &str) -> Client {
    Client::connect([url], None).await.expect("connects")
}

/// Retries a call while a leader election makes it fail.
async fn retry<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut call: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what}: {e:?}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what} kept failing: {e:?}"),
        }
    }
}

#[test]
fn rust_etcd_client_kv_txn_leases_and_a_watch_across_a_leader_kill() {
    let mut cluster = Cluster::start(3);
    let (leader, leader_url, followers) = leader_and_followers(&mut cluster);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // KV and txn, through the leader and a follower.
        let mut c = connect(&leader_url).await;
        let put = c.put("rs/a", "1", None).await.unwrap();
        let rev = put.header().unwrap().revision();
        let mut f = connect(&followers[0]).await;
        let got = f.get("rs/a", None).await.unwrap();
        assert_eq!(got.kvs()[0].value(), b"1");
        assert_eq!(got.kvs()[0].mod_revision(), rev);
        f.put("rs/b", "2", None).await.unwrap();
        let prefix = c.get("rs/", Some(GetOptions::new().with_prefix())).await.unwrap();
        assert_eq!(prefix.kvs().iter().map(|kv| kv.key()).collect::<Vec<_>>(), vec![&b"rs/a"[..], b"rs/b"]);
        let cas = |expected: &'static str, new: &'static str| {
            Txn::new()
                .when([Compare::value("rs/a", CompareOp::Equal, expected)])
                .and_then([TxnOp::put("rs/a", new, None)])
                .or_else([TxnOp::get("rs/a", None)])
        };
        let ok = f.txn(cas("1", "swapped")).await.unwrap();
        assert!(ok.succeeded());
        let stale = c.txn(cas("1", "wrong")).await.unwrap();
        assert!(!stale.succeeded());
        match &stale.op_responses()[0] {
            TxnOpResponse::Get(r) => assert_eq!(r.kvs()[0].value(), b"swapped"),
            other => panic!("the failure branch reads: {other:?}"),
        }
        assert_eq!(c.delete("rs/b", None).await.unwrap().deleted(), 1);
        assert_eq!(c.delete("rs/b", None).await.unwrap().deleted(), 0);

        // A lease kept alive past its TTL, then revoked.
        let lease = f.lease_grant(3, None).await.unwrap();
        f.put("rs/leased", "v", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap();
        let (mut keeper, mut answers) = f.lease_keep_alive(lease.id()).await.unwrap();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            keeper.keep_alive().await.unwrap();
            let answer = answers.message().await.unwrap().expect("a keep-alive answer");
            assert_eq!((answer.id(), answer.ttl()), (lease.id(), 3));
        }
        assert_eq!(c.get("rs/leased", None).await.unwrap().count(), 1, "a kept-alive lease keeps its key");
        let ttl = c.lease_time_to_live(lease.id(), None).await.unwrap();
        assert!((1..=3).contains(&ttl.ttl()), "remaining TTL {}", ttl.ttl());
        c.lease_revoke(lease.id()).await.unwrap();
        assert_eq!(c.get("rs/leased", None).await.unwrap().count(), 0, "revoking deletes the key");
        let err = c.lease_revoke(lease.id()).await.unwrap_err();
        assert!(err.to_string().contains("etcdserver: requested lease not found"), "{err}");

        // A watch on a follower from before the writes; the leader dies midway.
        let mut writer = connect(&followers[1]).await;
        let start = writer.put("rs/w/start", "0", None).await.unwrap().header().unwrap().revision() + 1;
        let mut watch_client = connect(&followers[0]).await;
        let mut stream = watch_client
            .watch("rs/w/", Some(WatchOptions::new().with_prefix().with_start_revision(start)))
            .await
            .unwrap();
        for i in 0..40 {
            if i == 20 {
                cluster.member(leader).kill();
            }
            let key = format!("rs/w/{i:02}");
            retry(&key, || {
                let mut w = writer.clone();
                let key = key.clone();
                async move { w.put(key, i.to_string(), None).await }
            })
            .await;
        }
        retry("rs/w/end", || {
            let mut w = writer.clone();
            async move { w.put("rs/w/end", "end", None).await }
        })
        .await;
        let mut seen = Vec::new();
        'outer: while let Some(response) =
            tokio::time::timeout(Duration::from_secs(20), stream.message()).await.expect("events keep coming").unwrap()
        {
            for e in response.events() {
                assert_eq!(e.event_type(), EventType::Put);
                let kv = e.kv().unwrap();
                seen.push((kv.mod_revision(), kv.key().to_vec(), kv.value().to_vec()));
                if kv.key() == b"rs/w/end" {
                    break 'outer;
                }
            }
        }
        // The history as stored, replayed by a fresh watch on the other follower.
        let mut replay =
            writer.watch("rs/w/", Some(WatchOptions::new().with_prefix().with_start_revision(start))).await.unwrap();
        let mut history = Vec::new();
        'replay: while let Some(response) = replay.message().await.unwrap() {
            for e in response.events() {
                let kv = e.kv().unwrap();
                history.push((kv.mod_revision(), kv.key().to_vec(), kv.value().to_vec()));
                if kv.key() == b"rs/w/end" {
                    break 'replay;
                }
            }
        }
        let revisions: Vec<i64> = seen.iter().map(|(r, _, _)| *r).collect();
        assert!(revisions.windows(2).all(|w| w[0] < w[1]), "no duplicate or reordered event: {revisions:?}");
        assert_eq!(seen, history, "the live watch saw exactly the stored history");
        for i in 0..40 {
            let key = format!("rs/w/{i:02}").into_bytes();
            assert!(seen.iter().any(|(_, k, _)| *k == key), "acknowledged write {i} was seen");
        }

        // Auth through the client's own API, on the two surviving members.
        writer.put("pub/a", "public", None).await.unwrap();
        writer.user_add("root", "rootpw", None).await.unwrap();
        writer.role_add("root").await.unwrap();
        writer.user_grant_role("root", "root").await.unwrap();
        writer.user_add("alice", "alicepw", None).await.unwrap();
        writer.role_add("reader").await.unwrap();
        writer.role_grant_permission("reader", Permission::read("pub/").with_prefix()).await.unwrap();
        writer.user_grant_role("alice", "reader").await.unwrap();
        writer.auth_enable().await.unwrap();
        let err = writer.get("pub/a", None).await.unwrap_err();
        assert!(err.to_string().contains("etcdserver: user name is empty"), "{err}");
        let as_user = |name: &'static str, password: &'static str| {
            let url = followers[0].clone();
            async move { Client::connect([url], Some(ConnectOptions::new().with_user(name, password))).await }
        };
        let mut alice = as_user("alice", "alicepw").await.expect("alice authenticates");
        assert_eq!(alice.get("pub/a", None).await.unwrap().kvs()[0].value(), b"public");
        let err = alice.put("pub/a", "mine", None).await.unwrap_err();
        assert!(err.to_string().contains("etcdserver: permission denied"), "{err}");
        let err = alice.get("rs/a", None).await.unwrap_err();
        assert!(err.to_string().contains("etcdserver: permission denied"), "{err}");
        let err = as_user("alice", "wrong").await.err().expect("a wrong password is refused");
        assert!(err.to_string().contains("etcdserver: authentication failed, invalid user ID or password"), "{err}");
        let mut root = as_user("root", "rootpw").await.expect("root authenticates");
        root.auth_disable().await.unwrap();
        assert_eq!(writer.get("rs/a", None).await.unwrap().kvs()[0].value(), b"swapped");
    });
}

/// Whether Debian's python3-etcd3 is importable. Under CI it must be.
fn python_etcd3_available() -> bool {
    let found = Command::new("/usr/bin/python3").args(["-c", "import etcd3"]).status().is_ok_and(|s| s.success());
    if !found && std::env::var("CI").is_ok() {
        panic!("python3-etcd3 is not installed (apt-get install python3-etcd3); CI must run this test");
    }
    if !found {
        eprintln!("SKIP: python3-etcd3 is not installed (apt-get install python3-etcd3)");
    }
    found
}

#[test]
fn python_etcd3_kv_txn_leases_and_a_watch_across_a_leader_kill() {
    if !python_etcd3_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    let (leader, leader_url, followers) = leader_and_followers(&mut cluster);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_etcd3.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(&leader_url)
        .args(&followers)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        println!("python: {line}");
        if line == "KILL LEADER" {
            cluster.member(leader).kill();
            writeln!(stdin, "killed").unwrap();
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "python etcd3 failed: {lines:?}\n{}", cluster.logs());
    assert_eq!(lines.last().map(String::as_str), Some("python etcd3: ok"));
    assert!(lines.iter().any(|l| l == "KILL LEADER"), "the leader was killed mid-watch");
}
