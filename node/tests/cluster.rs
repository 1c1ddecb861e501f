//! The real binary: several `lockstep serve` processes on loopback, driven with
//! the unmodified `etcdctl` and the admin API.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{etcdctl, etcdctl_available, put_until_ok, stdout, Cluster, BIN};

const STARTUP: Duration = Duration::from_secs(20);

#[test]
fn three_members_serve_etcdctl_and_admin_endpoints() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start(3);
    let leader = cluster.wait_leader(STARTUP);
    for m in &cluster.members {
        m.wait_ready(STARTUP);
    }
    // A write through a follower is forwarded to the leader; a read from another member sees it.
    let follower = cluster.members.iter().find(|m| m.config.member_id != leader).unwrap();
    let out = etcdctl(&[follower.config.advertise_client()], &["put", "greeting", "hello"]);
    assert_eq!(stdout(&out), "OK\n", "stderr: {}", String::from_utf8_lossy(&out.stderr));
    for m in &cluster.members {
        let out = etcdctl(&[m.config.advertise_client()], &["get", "greeting"]);
        assert_eq!(stdout(&out), "greeting\nhello\n", "member {}", m.config.member_id);
    }
    // A refused call, counted with its code below.
    let out = etcdctl(&[cluster.members[0].config.advertise_client()], &["get", "greeting", "--rev=99999"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("required revision is a future revision"));
    // Health: the three checks.
    let (code, health) = cluster.members[0].get("/health").unwrap();
    assert_eq!(code, 200, "{health}");
    // Store and raft are healthy; the disk check depends on the test machine's
    // free space (degraded below 10 %), never unhealthy here.
    for check in ["store", "raft"] {
        assert_eq!(health["checks"][check]["status"], "healthy", "{check}: {health}");
    }
    assert_ne!(health["checks"]["disk"]["status"], "unhealthy", "{health}");
    assert_ne!(health["status"], "unhealthy", "{health}");
    assert_eq!(cluster.members[0].get_text("/livez").unwrap(), (200, "ok\n".to_string()));
    // Metrics: every name the dashboards and alerts use (docs/deploy/metrics.txt).
    let (code, metrics) = cluster.members[0].get_text("/metrics").unwrap();
    assert_eq!(code, 200);
    // Calls counted by method and status code, as etcd's go-grpc-prometheus does.
    for (code, count) in [("OK", 1), ("OutOfRange", 1)] {
        let line = format!(
            "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",\
             grpc_type=\"unary\"}} {count}"
        );
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in /metrics");
    }
    let names: BTreeSet<String> =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy/metrics.txt"))
            .unwrap()
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !metrics.lines().any(|l| l.starts_with(name.as_str()) && !l.starts_with('#')))
        .collect();
    assert!(missing.is_empty(), "metrics missing from /metrics: {missing:?}");
    assert!(metrics.contains("etcd_server_has_leader 1"), "{metrics}");
    // Membership as etcdctl shows it (Cluster/MemberList, linearizable by default).
    let out = etcdctl(&[follower.config.advertise_client()], &["member", "list"]);
    let expected: String = cluster
        .members
        .iter()
        .map(|m| {
            format!(
                "{:x}, started, member-{}, http://{}, {}, false\n",
                m.config.member_id,
                m.config.member_id,
                m.config.advertise_peer(),
                m.config.advertise_client()
            )
        })
        .collect();
    assert_eq!(stdout(&out), expected, "stderr: {}", String::from_utf8_lossy(&out.stderr));
    // Membership as the CLI shows it.
    let out = std::process::Command::new(BIN)
        .args(["cluster", "members", "--endpoints", &cluster.admins().join(",")])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.starts_with("ID  NAME"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
}

#[test]
fn killing_the_leader_elects_another_and_writes_continue() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_leader(STARTUP);
    put_until_ok(&cluster.running_clients()[0], "before", "1", STARTUP);
    cluster.member(leader).kill();
    let killed_at = Instant::now();
    let endpoints = cluster.running_clients();
    let took = put_until_ok(&endpoints[0], "after", "2", Duration::from_secs(15));
    let new_leader = cluster.wait_leader(STARTUP);
    assert_ne!(new_leader, leader);
    eprintln!(
        "failover: leader killed -> first successful write in {} ms",
        killed_at.elapsed().as_millis().max(took.as_millis())
    );
    // The killed member restarts and catches up.
    cluster.member(leader).start(&[]);
    let restarted = cluster.member(leader).config.advertise_client();
    let deadline = Instant::now() + STARTUP;
    loop {
        let out = etcdctl(std::slice::from_ref(&restarted), &["get", "after", "--consistency=s"]);
        if stdout(&out) == "after\n2\n" {
            break;
        }
        assert!(Instant::now() < deadline, "restarted member never caught up: {}", cluster.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_of_every_member_in_turn() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    cluster.wait_leader(STARTUP);
    let mut acked = Vec::new();
    for round in 0..3u64 {
        let victim = round + 1;
        for i in 0..10 {
            let key = format!("k{round}-{i}");
            let endpoints = cluster.running_clients();
            let out = etcdctl(&endpoints, &["put", &key, "v"]);
            if stdout(&out) == "OK\n" {
                acked.push(key);
            }
        }
        cluster.member(victim).kill();
        cluster.member(victim).start(&[]);
        cluster.wait_leader(STARTUP);
    }
    assert!(acked.len() >= 25, "too few writes acknowledged: {}", acked.len());
    let endpoints = cluster.running_clients();
    let deadline = Instant::now() + STARTUP;
    loop {
        let out = etcdctl(&endpoints, &["get", "k", "--prefix", "--keys-only"]);
        let present: BTreeSet<String> = stdout(&out).lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
        let lost: Vec<&String> = acked.iter().filter(|k| !present.contains(*k)).collect();
        if lost.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "acknowledged writes lost: {lost:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_fourth_member_joins_and_is_promoted_and_a_dead_one_is_removed_with_force() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    cluster.wait_leader(STARTUP);
    put_until_ok(&cluster.running_clients()[0], "seed", "1", STARTUP);
    let mut joiner = cluster.joiner(4);
    joiner.start(&[]);
    cluster.members.push(joiner);
    let admins = cluster.admins();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, members) = cluster.members[0].get("/cluster/members").unwrap();
        let voter = members["members"].as_array().unwrap().iter().any(|m| m["id"] == 4 && m["role"] == "voter");
        if voter {
            break;
        }
        assert!(Instant::now() < deadline, "member 4 was not promoted: {members}\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The new member serves the data.
    let out = etcdctl(&[cluster.member(4).config.advertise_client()], &["get", "seed"]);
    assert_eq!(stdout(&out), "seed\n1\n");
    // A full restart: the members' address books keep member 4 reachable
    // although no config names it.
    for id in 1..=4 {
        cluster.member(id).kill();
    }
    for id in 1..=4 {
        cluster.member(id).start(&[]);
    }
    cluster.wait_leader(STARTUP);
    put_until_ok(&cluster.member(1).config.advertise_client(), "after-restart", "1", STARTUP);
    let member4 = cluster.member(4).config.advertise_client();
    let deadline = Instant::now() + STARTUP;
    while stdout(&etcdctl(std::slice::from_ref(&member4), &["get", "after-restart", "--consistency=s"]))
        != "after-restart\n1\n"
    {
        assert!(Instant::now() < deadline, "member 4 lost touch after a restart: {}", cluster.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Member 3 dies: a plain remove refuses, --force removes it.
    cluster.member(3).kill();
    std::thread::sleep(Duration::from_millis(700));
    let remove = |force: bool| {
        let mut args = vec!["cluster", "remove", "3", "--endpoints"];
        let joined = admins.join(",");
        args.push(&joined);
        if force {
            args.push("--force");
        }
        std::process::Command::new(BIN).args(&args).output().unwrap()
    };
    let out = remove(false);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "lockstep cluster: member 3 is not reachable; if it is dead and will not come back, remove it with --force\n"
    );
    let out = remove(true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, members) = cluster.members[0].get("/cluster/members").unwrap();
    let ids: Vec<u64> = members["members"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![1, 2, 4]);
}

#[test]
fn sigterm_stops_a_member_cleanly() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_leader(STARTUP);
    assert_eq!(cluster.member(leader).terminate(), Some(0));
    let new_leader = cluster.wait_leader(STARTUP);
    assert_ne!(new_leader, leader);
}

/// etcd's Cluster and Maintenance calls through etcdctl, sent to a follower
/// (membership changes are forwarded to the leader's admin endpoints).
#[test]
fn etcdctl_changes_membership_and_runs_maintenance() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_leader(STARTUP);
    put_until_ok(&cluster.running_clients()[0], "seed", "1", STARTUP);
    let follower =
        vec![cluster.members.iter().find(|m| m.config.member_id != leader).unwrap().config.advertise_client()];
    let all = cluster.running_clients();
    let fail_text = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();

    // A learner that never starts: added, cannot be promoted, removed.
    let out = etcdctl(&follower, &["member", "add", "ghost", "--learner", "--peer-urls=http://127.0.0.1:9"]);
    assert!(out.status.success(), "{}", fail_text(&out));
    let text = stdout(&out);
    assert!(text.starts_with("Member "), "{text}");
    let ghost = text.split_whitespace().nth(1).unwrap().to_string();
    let out = etcdctl(&follower, &["member", "promote", &ghost]);
    assert!(
        fail_text(&out).contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{}",
        fail_text(&out)
    );
    let out = etcdctl(&follower, &["member", "promote", "1"]);
    assert!(fail_text(&out).contains("etcdserver: can only promote a learner member"), "{}", fail_text(&out));
    let out = etcdctl(&follower, &["member", "promote", "abcdef"]);
    assert!(fail_text(&out).contains("etcdserver: member not found"), "{}", fail_text(&out));
    let out = etcdctl(&follower, &["member", "add", "dup", "--peer-urls=http://127.0.0.1:9"]);
    assert!(fail_text(&out).contains("etcdserver: Peer URLs already exists"), "{}", fail_text(&out));
    let out = etcdctl(&follower, &["member", "update", &ghost, "--peer-urls=http://127.0.0.1:10"]);
    assert!(stdout(&out).contains("updated in cluster"), "{}{}", stdout(&out), fail_text(&out));
    let out = etcdctl(&follower, &["member", "list"]);
    assert!(
        stdout(&out).contains(&format!("{ghost}, unstarted, , http://127.0.0.1:10, , true")),
        "{}{}",
        stdout(&out),
        fail_text(&out)
    );
    let out = etcdctl(&follower, &["member", "remove", &ghost]);
    // etcdctl prints ids with `%16x`: an id below 2^60 is padded with spaces.
    let words = stdout(&out).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains(&format!("Member {ghost} removed from cluster")),
        "{:?} {}{}",
        out.status,
        stdout(&out),
        fail_text(&out)
    );
    let out = etcdctl(&follower, &["member", "remove", &ghost]);
    assert!(fail_text(&out).contains("etcdserver: member not found"), "{}", fail_text(&out));

    // A member registered with etcdctl, then started with `--join` under that id.
    let template = cluster.joiner(99);
    let peer = template.config.advertise_peer();
    let out = etcdctl(&follower, &["member", "add", "m4", "--learner", &format!("--peer-urls=http://{peer}")]);
    assert!(out.status.success(), "{}", fail_text(&out));
    let id_hex = stdout(&out).split_whitespace().nth(1).unwrap().to_string();
    let id = u64::from_str_radix(&id_hex, 16).unwrap();
    let mut config = template.config.clone();
    config.member_id = id;
    let mut joiner = common::Proc::new(cluster.dir.path(), config);
    joiner.start(&[]);
    cluster.members.push(joiner);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = etcdctl(&follower, &["member", "list"]);
        let line = stdout(&out).lines().find(|l| l.starts_with(&id_hex)).map(str::to_string).unwrap_or_default();
        if line.contains(", started, ") && line.ends_with(", false") {
            break;
        }
        assert!(Instant::now() < deadline, "member {id_hex} never started as a voter: {line}\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = etcdctl(&[cluster.member(id).config.advertise_client()], &["get", "seed", "--consistency=s"]);
    assert_eq!(stdout(&out), "seed\n1\n");

    // Maintenance: HashKV agrees on every member, defrag answers, snapshot
    // save writes a file `lockstep snapshot restore` reads.
    let endpoints = cluster.running_clients();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = etcdctl(&endpoints, &["endpoint", "hashkv"]);
        let hashes: BTreeSet<String> =
            stdout(&out).lines().filter_map(|l| l.rsplit_once(", ").map(|(_, h)| h.to_string())).collect();
        if out.status.success() && hashes.len() == 1 && stdout(&out).lines().count() == endpoints.len() {
            break;
        }
        assert!(Instant::now() < deadline, "members disagree: {}{}", stdout(&out), fail_text(&out));
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = etcdctl(&follower, &["defrag"]);
    assert!(stdout(&out).starts_with("Finished defragmenting etcd member"), "{}", fail_text(&out));
    let path = cluster.dir.path().join("etcdctl.snap");
    let out = etcdctl(&follower, &["snapshot", "save", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", fail_text(&out));
    let bytes = std::fs::read(&path).unwrap();
    let (header, _) = lockstep::snapshot::decode_snapshot_file(&bytes).unwrap();
    assert!(header.revision >= 2);

    // The JSON gateway on a follower's client port, with curl.
    let curl = |path: &str, body: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-X", "POST", "-d", body])
            .arg(format!("{}{path}", follower[0]))
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let put = curl("/v3/kv/put", r#"{"key": "Z3c=", "value": "MQ=="}"#);
    assert!(put.contains(r#""revision":"#), "{put}");
    let range = curl("/v3/kv/range", r#"{"key": "Z3c="}"#);
    assert!(range.contains(r#""value":"MQ==""#), "{range}");
    let members = curl("/v3/cluster/member/list", "{}");
    assert!(members.contains(&format!(r#""ID":"{id}""#)), "{members}");

    // MoveLeader: etcdctl finds the leader among the endpoints.
    let leader = cluster.wait_leader(STARTUP);
    let target = cluster.members.iter().map(|m| m.config.member_id).find(|m| *m != leader && *m != id).unwrap();
    let out = etcdctl(&all, &["move-leader", &format!("{target:x}")]);
    assert!(stdout(&out).contains("Leadership transferred"), "{}{}", stdout(&out), fail_text(&out));
    assert_eq!(cluster.wait_leader(STARTUP), target);
    // Through a follower alone etcdctl finds no leader to ask.
    let old_leader = cluster.member(leader).config.advertise_client();
    let out = etcdctl(&[old_leader], &["move-leader", &format!("{leader:x}")]);
    assert!(!out.status.success());
}
