//! TLS on the real binary: `lockstep certs init` output used by `etcdctl
//! --cacert --cert --key`, client certificates required, members with a
//! certificate from another CA refused (and counted), a CA rotated under load
//! without one failed request, a broken certificate file that keeps the old
//! one serving and shows in `/health`, and `lockstep dev --tls`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{etcdctl, etcdctl_available, signal_and_wait, stdout, Cluster, BIN};
use lockstep::admin_client::AdminClient;
use lockstep::config::{MemberConfig, TlsPortSection};
use serde_json::Value;

const STARTUP: Duration = Duration::from_secs(30);

/// `lockstep certs init --dir DIR --members N`, as an operator runs it.
fn certs_init(dir: &Path, members: u64) {
    let out = Command::new(BIN)
        .args(["certs", "init", "--members", &members.to_string(), "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "certs init: {}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    assert!(text.contains("--cacert") && text.contains("client_cert_auth: true"), "{text}");
}

/// A client's files: CA bundle, certificate, key.
#[derive(Clone)]
struct Creds {
    ca: PathBuf,
    cert: Option<(PathBuf, PathBuf)>,
}

impl Creds {
    fn client(dir: &Path) -> Creds {
        Creds { ca: dir.join("ca.crt"), cert: Some((dir.join("client.crt"), dir.join("client.key"))) }
    }

    fn ca_only(dir: &Path) -> Creds {
        Creds { ca: dir.join("ca.crt"), cert: None }
    }

    /// etcdctl's flags: `--cacert CA [--cert CERT --key KEY]`.
    fn flags(&self) -> Vec<String> {
        let mut flags = vec!["--cacert".to_string(), self.ca.display().to_string()];
        if let Some((cert, key)) = &self.cert {
            flags.extend(["--cert".into(), cert.display().to_string(), "--key".into(), key.display().to_string()]);
        }
        flags
    }

    fn admin(&self) -> AdminClient {
        let pair = self.cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        AdminClient::from_files(&self.ca, pair).unwrap()
    }
}

/// etcdctl with `creds` against `endpoints`.
fn etcdctl_tls(endpoints: &[String], creds: &Creds, args: &[&str]) -> std::process::Output {
    let flags = creds.flags();
    let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    etcdctl(endpoints, &all)
}

/// The same TLS files on every port of `config`; client certificates required
/// on the client and admin ports when `client_auth`.
fn set_tls(config: &mut MemberConfig, cert: &Path, key: &Path, ca: &Path, client_auth: bool) {
    let port = TlsPortSection {
        cert_file: Some(cert.to_path_buf()),
        key_file: Some(key.to_path_buf()),
        ca_file: Some(ca.to_path_buf()),
        client_cert_auth: client_auth,
    };
    config.tls.client = port.clone();
    config.tls.peer = TlsPortSection { client_cert_auth: false, ..port.clone() };
    config.tls.admin = port;
}

/// A cluster of `n` members with TLS on every port, member N using
/// `files(N)` = (certificate, key, CA bundle); not started.
fn tls_cluster(
    n: u64,
    client_auth: bool,
    reload_ms: u64,
    files: impl Fn(u64) -> (PathBuf, PathBuf, PathBuf),
) -> Cluster {
    let mut cluster = Cluster::new(n);
    let https = |url: &str| url.replacen("http://", "https://", 1);
    for m in &mut cluster.members {
        let (cert, key, ca) = files(m.config.member_id);
        set_tls(&mut m.config, &cert, &key, &ca, client_auth);
        m.config.tls.reload_interval_ms = reload_ms;
        for member in &mut m.config.cluster.initial_members {
            member.client = https(&member.client);
            member.admin = https(&member.admin);
        }
        std::fs::write(&m.config_path, m.config.to_yaml()).unwrap();
    }
    cluster
}

fn start_all(cluster: &mut Cluster) {
    for m in &mut cluster.members {
        m.start(&[]);
    }
}

/// Waits until a running member names a leader; returns it.
fn wait_leader(cluster: &Cluster, admin: &AdminClient) -> u64 {
    let deadline = Instant::now() + STARTUP;
    loop {
        for m in cluster.members.iter().filter(|m| m.child.is_some()) {
            if let Ok(reply) = admin.call("GET", &m.config.advertise_admin(), "/cluster/leader", None) {
                if let (200, Some(leader)) = (reply.status, reply.body["leader"].as_u64()) {
                    return leader;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader; logs:\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get_json(admin: &AdminClient, endpoint: &str, path: &str) -> Value {
    let reply = admin.call("GET", endpoint, path, None).unwrap();
    reply.body
}

fn metrics(admin: &AdminClient, endpoint: &str) -> String {
    let url = format!("{endpoint}/metrics");
    admin.agent().get(&url).timeout(Duration::from_secs(5)).call().unwrap().into_string().unwrap()
}

/// The value of the sample `name{labels}` in a Prometheus text page (0 when absent).
fn sample(page: &str, series: &str) -> f64 {
    page.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok())).unwrap_or(0.0)
}

#[test]
fn certs_init_output_serves_etcdctl_and_clients_without_a_certificate_are_refused() {
    if !etcdctl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    certs_init(&certs, 4);
    let mut cluster = tls_cluster(3, true, 5000, |id| {
        (certs.join(format!("member-{id}.crt")), certs.join(format!("member-{id}.key")), certs.join("ca.crt"))
    });
    start_all(&mut cluster);
    let creds = Creds::client(&certs);
    let admin = creds.admin();
    let leader = wait_leader(&cluster, &admin);
    let follower = cluster.members.iter().find(|m| m.config.member_id != leader).unwrap();
    let endpoint = vec![follower.config.advertise_client()];
    assert!(endpoint[0].starts_with("https://127.0.0.1:"), "{endpoint:?}");

    // The commands of docs/security.md.
    let out = etcdctl_tls(&endpoint, &creds, &["put", "greeting", "hello"]);
    assert_eq!(stdout(&out), "OK\n", "stderr: {}\n{}", String::from_utf8_lossy(&out.stderr), cluster.logs());
    for m in &cluster.members {
        let out = etcdctl_tls(&[m.config.advertise_client()], &creds, &["get", "greeting"]);
        assert_eq!(stdout(&out), "greeting\nhello\n", "member {}", m.config.member_id);
    }
    let out = etcdctl_tls(&endpoint, &creds, &["member", "list"]);
    let expected: String = cluster
        .members
        .iter()
        .map(|m| {
            let id = m.config.member_id;
            format!(
                "{id:x}, started, member-{id}, https://{}, {}, false\n",
                m.config.advertise_peer(),
                m.config.advertise_client()
            )
        })
        .collect();
    assert_eq!(stdout(&out), expected, "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let admins = cluster.admins().join(",");
    let flags = creds.flags();
    let out = Command::new(BIN).args(["cluster", "members", "--endpoints", &admins]).args(&flags).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).starts_with("ID  NAME"), "{}", stdout(&out));
    // Without --cacert the CLI cannot verify the members.
    let out = Command::new(BIN).args(["cluster", "members", "--endpoints", &admins]).output().unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));

    // No client certificate: refused on the client and admin ports, counted.
    let out = etcdctl_tls(&endpoint, &Creds::ca_only(&certs), &["get", "greeting"]);
    assert!(!out.status.success(), "a client without a certificate was served: {}", stdout(&out));
    assert!(Creds::ca_only(&certs).admin().call("GET", &follower.config.advertise_admin(), "/health", None).is_err());
    // A certificate from another CA: refused too.
    let other = dir.path().join("other");
    certs_init(&other, 1);
    let stranger = Creds { ca: certs.join("ca.crt"), cert: Creds::client(&other).cert };
    let out = etcdctl_tls(&endpoint, &stranger, &["get", "greeting"]);
    assert!(!out.status.success(), "a client of another CA was served: {}", stdout(&out));
    let page = metrics(&admin, &follower.config.advertise_admin());
    let no_cert = r#"lockstep_network_client_tls_handshake_failures_total{listener="client",reason="no_certificate"}"#;
    let unknown = r#"lockstep_network_client_tls_handshake_failures_total{listener="client",reason="unknown_ca"}"#;
    let admin_no_cert =
        r#"lockstep_network_client_tls_handshake_failures_total{listener="admin",reason="no_certificate"}"#;
    assert!(sample(&page, no_cert) >= 1.0, "{page}");
    assert!(sample(&page, unknown) >= 1.0, "{page}");
    assert!(sample(&page, admin_no_cert) >= 1.0, "{page}");
    let log = std::fs::read_to_string(&follower.log_path).unwrap();
    assert!(log.contains("refused a TLS connection") && log.contains("no_certificate"), "{log}");
    // Health: the tls check is there and healthy (certificates valid for a year).
    let health = get_json(&admin, &follower.config.advertise_admin(), "/health");
    assert_eq!(health["checks"]["tls"]["status"], "healthy", "{health}");
    let expires = health["checks"]["tls"]["ports"]["peer"]["expires_in_s"].as_i64().unwrap();
    assert!(expires > 364 * 86_400, "{health}");
    assert!(sample(&page, r#"lockstep_tls_certificate_expiry_seconds{listener="peer"}"#) > 364.0 * 86_400.0);

    // A fourth member joins over HTTPS (its admin certificate is its client
    // certificate) and is promoted once caught up.
    let mut joiner = cluster.joiner(4);
    let (cert, key) = (certs.join("member-4.crt"), certs.join("member-4.key"));
    set_tls(&mut joiner.config, &cert, &key, &certs.join("ca.crt"), true);
    joiner.config.cluster.join = Some(follower.config.advertise_admin());
    std::fs::write(&joiner.config_path, joiner.config.to_yaml()).unwrap();
    joiner.start(&[]);
    cluster.members.push(joiner);
    let deadline = Instant::now() + STARTUP;
    loop {
        let members = get_json(&admin, &cluster.members[0].config.advertise_admin(), "/cluster/members");
        let voters = members["members"].as_array().map_or(0, |m| m.iter().filter(|m| m["role"] == "voter").count());
        if voters == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "member 4 was not promoted: {members}\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = etcdctl_tls(&[cluster.members[3].config.advertise_client()], &creds, &["get", "greeting"]);
    assert_eq!(stdout(&out), "greeting\nhello\n", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_member_with_a_certificate_from_another_ca_cannot_send_raft_messages_or_join() {
    if !etcdctl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (good, evil) = (dir.path().join("good"), dir.path().join("evil"));
    certs_init(&good, 4);
    certs_init(&evil, 4);
    // Member 3 trusts the cluster CA but presents a certificate of another CA.
    let mut cluster = tls_cluster(3, true, 5000, |id| {
        let certs = if id == 3 { &evil } else { &good };
        (certs.join(format!("member-{id}.crt")), certs.join(format!("member-{id}.key")), good.join("ca.crt"))
    });
    start_all(&mut cluster);
    let creds = Creds::client(&good);
    let admin = creds.admin();
    let leader = wait_leader(&cluster, &admin);
    assert_ne!(leader, 3);
    let clients: Vec<String> = cluster.members[..2].iter().map(|m| m.config.advertise_client()).collect();
    let out = etcdctl_tls(&clients, &creds, &["put", "k", "v"]);
    assert_eq!(stdout(&out), "OK\n", "{}", String::from_utf8_lossy(&out.stderr));
    // Members 1 and 2 refuse member 3's connections: nothing it sends arrives,
    // and each refusal is counted by reason.
    let deadline = Instant::now() + Duration::from_secs(10);
    for m in &cluster.members[..2] {
        loop {
            let page = metrics(&admin, &m.config.advertise_admin());
            let refused = sample(&page, r#"lockstep_network_peer_tls_handshake_failures_total{reason="unknown_ca"}"#);
            if refused >= 1.0 {
                break;
            }
            assert!(Instant::now() < deadline, "member {} counted no refusal:\n{page}", m.config.member_id);
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = get_json(&admin, &m.config.advertise_admin(), "/cluster/status");
        assert_eq!(status["peers"]["3"]["received_bytes"], 0, "member {}: {status}", m.config.member_id);
        let log = std::fs::read_to_string(&m.log_path).unwrap();
        assert!(log.contains("refused a peer connection: TLS handshake failed"), "{log}");
    }
    let status = get_json(&admin, &cluster.members[(leader - 1) as usize].config.advertise_admin(), "/cluster/status");
    assert_eq!(status["replication"]["3"], 0, "member 3 never acknowledged an append: {status}");
    // A new member with such a certificate cannot join: the admin port refuses it.
    let mut joiner = cluster.joiner(4);
    set_tls(&mut joiner.config, &evil.join("member-4.crt"), &evil.join("member-4.key"), &good.join("ca.crt"), true);
    joiner.config.cluster.join = Some(cluster.members[0].config.advertise_admin());
    std::fs::write(&joiner.config_path, joiner.config.to_yaml()).unwrap();
    joiner.start(&[]);
    let mut child = joiner.child.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the joiner with a foreign certificate kept running");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(&joiner.log_path).unwrap();
    assert!(log.contains("cannot join through"), "{log}");
    let members = get_json(&admin, &cluster.members[0].config.advertise_admin(), "/cluster/members");
    assert_eq!(members["members"].as_array().unwrap().len(), 3, "{members}");
}

/// Copies `from` to `to` through a temporary file and a rename.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// Points the symlink `link` at `target`, atomically.
fn switch(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// Waits until every member reports at least `reloads` reloads on every port.
fn wait_reloads(cluster: &Cluster, current: &Path, reloads: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for m in &cluster.members {
        loop {
            let stage = std::fs::read_link(current).unwrap();
            let admin = Creds::client(&stage).admin();
            let health = admin.call("GET", &m.config.advertise_admin(), "/health", None).map(|r| r.body);
            let done = health.as_ref().is_ok_and(|h| {
                ["client", "peer", "admin"]
                    .iter()
                    .all(|p| h["checks"]["tls"]["ports"][p]["reloads"].as_u64() >= Some(reloads))
            });
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member {}: {reloads} reloads not reached: {health:?}",
                m.config.member_id
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn rotating_the_ca_under_load_fails_no_request() {
    if !etcdctl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    certs_init(&old, 3);
    certs_init(&new, 3);
    let bundle = dir.path().join("bundle.crt");
    let both = format!(
        "{}{}",
        std::fs::read_to_string(old.join("ca.crt")).unwrap(),
        std::fs::read_to_string(new.join("ca.crt")).unwrap()
    );
    std::fs::write(&bundle, both).unwrap();
    // The four stages of docs/security.md's rotation: each a consistent set of
    // files, switched atomically with a symlink (as a deployment tool would).
    let stages: Vec<(PathBuf, &Path, &Path)> = vec![
        (old.join("ca.crt"), &old, &old),
        (bundle.clone(), &old, &old),
        (bundle.clone(), &new, &new),
        (new.join("ca.crt"), &new, &new),
    ];
    for (i, (ca, members, client)) in stages.iter().enumerate() {
        let stage = dir.path().join(format!("stage-{i}"));
        std::fs::create_dir(&stage).unwrap();
        install(ca, &stage.join("ca.crt"));
        for id in 1..=3 {
            for ext in ["crt", "key"] {
                install(&members.join(format!("member-{id}.{ext}")), &stage.join(format!("member-{id}.{ext}")));
            }
        }
        install(&client.join("client.crt"), &stage.join("client.crt"));
        install(&client.join("client.key"), &stage.join("client.key"));
    }
    let current = dir.path().join("current");
    switch(&current, &dir.path().join("stage-0"));
    let mut cluster = tls_cluster(3, true, 200, |id| {
        (current.join(format!("member-{id}.crt")), current.join(format!("member-{id}.key")), current.join("ca.crt"))
    });
    start_all(&mut cluster);
    wait_leader(&cluster, &Creds::client(&dir.path().join("stage-0")).admin());
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.config.advertise_client()).collect();

    // Steady load: one etcdctl put after another, each loading the client's
    // files of the stage in force when it starts.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, current, endpoints) = (stop.clone(), current.clone(), endpoints.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) && ok < 5000 {
                let stage = std::fs::read_link(&current).unwrap();
                let endpoint = endpoints[(ok as usize) % endpoints.len()].clone();
                let value = format!("v{ok}");
                let out = etcdctl_tls(&[endpoint], &Creds::client(&stage), &["put", "rotating", &value]);
                if stdout(&out) == "OK\n" {
                    ok += 1;
                } else {
                    failed.push(format!("{}: {}", stage.display(), String::from_utf8_lossy(&out.stderr)));
                }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    for stage in 1..=3u64 {
        switch(&current, &dir.path().join(format!("stage-{stage}")));
        wait_reloads(&cluster, &current, stage);
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = load.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}\n{}",
        failed.len(),
        ok + failed.len() as u64,
        cluster.logs()
    );
    assert!(ok >= 10, "only {ok} requests ran");
    eprintln!("CA rotation: {ok} puts, none failed");
    // The new CA alone serves; the old client certificate no longer does.
    let out = etcdctl_tls(&endpoints, &Creds::client(&new), &["get", "rotating", "--print-value-only"]);
    assert_eq!(stdout(&out), format!("v{}\n", ok - 1), "{}", String::from_utf8_lossy(&out.stderr));
    let out = etcdctl_tls(&endpoints, &Creds::client(&old), &["get", "rotating"]);
    assert!(!out.status.success(), "the old CA's client was served after the rotation");
    // Members still talk to each other (connections made with the old and the new certificates).
    let out = etcdctl_tls(&endpoints, &Creds::client(&new), &["put", "after", "rotation"]);
    assert_eq!(stdout(&out), "OK\n");
}

#[test]
fn a_broken_certificate_keeps_the_old_one_serving_and_shows_in_health() {
    if !etcdctl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    certs_init(&certs, 1);
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    for name in ["member-1.crt", "member-1.key", "ca.crt"] {
        install(&certs.join(name), &live.join(name));
    }
    // TLS on the client port only, with reloads left to SIGHUP.
    let mut cluster = Cluster::new(1);
    let m = &mut cluster.members[0];
    m.config.tls.client = TlsPortSection {
        cert_file: Some(live.join("member-1.crt")),
        key_file: Some(live.join("member-1.key")),
        ca_file: None,
        client_cert_auth: false,
    };
    m.config.tls.reload_interval_ms = 3_600_000;
    std::fs::write(&m.config_path, m.config.to_yaml()).unwrap();
    m.start(&[]);
    let admin = AdminClient::plain();
    let endpoint = m.config.advertise_admin();
    let clients = vec![m.config.advertise_client()];
    let creds = Creds::ca_only(&certs);
    let deadline = Instant::now() + STARTUP;
    while etcdctl_tls(&clients, &creds, &["put", "k", "v1"]).stdout != b"OK\n" {
        assert!(Instant::now() < deadline, "no write; {}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = cluster.members[0].child.as_ref().unwrap().id().to_string();
    let hup = || assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    // A truncated certificate, then SIGHUP.
    std::fs::write(live.join("member-1.crt"), "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let health = get_json(&admin, &endpoint, "/health");
        // (The disk check may be degraded too on a test machine low on disk.)
        if health["checks"]["tls"]["status"] == "degraded" {
            break health;
        }
        assert!(Instant::now() < deadline, "the tls check never degraded: {health}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let tls = &health["checks"]["tls"];
    assert_eq!(health["status"], "degraded", "{health}");
    let file = live.join("member-1.crt").display().to_string();
    assert_eq!(tls["ports"]["client"]["error"]["file"], file.as_str(), "{health}");
    assert!(tls["detail"].as_str().unwrap().contains("still serving the previous certificate"), "{health}");
    let page = metrics(&admin, &endpoint);
    assert_eq!(sample(&page, r#"lockstep_tls_reload_failures_total{listener="client"}"#), 1.0, "{page}");
    let log = std::fs::read_to_string(&cluster.members[0].log_path).unwrap();
    assert!(log.contains("TLS reload failed, still serving the previous certificates"), "{log}");
    // Still serving, with the old certificate.
    let out = etcdctl_tls(&clients, &creds, &["put", "k", "v2"]);
    assert_eq!(stdout(&out), "OK\n", "{}", String::from_utf8_lossy(&out.stderr));
    // The good file back, SIGHUP: healthy again.
    install(&certs.join("member-1.crt"), &live.join("member-1.crt"));
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = get_json(&admin, &endpoint, "/health");
        if health["checks"]["tls"]["status"] == "healthy" {
            assert_eq!(health["checks"]["tls"]["ports"]["client"]["reloads"], 1, "{health}");
            break;
        }
        assert!(Instant::now() < deadline, "/health never recovered: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = etcdctl_tls(&clients, &creds, &["get", "k", "--print-value-only"]);
    assert_eq!(stdout(&out), "v2\n");
}

#[test]
fn dev_tls_prints_the_etcdctl_flags_that_work() {
    if !etcdctl_available() {
        return;
    }
    // An empty cluster holds this binary's one-cluster-at-a-time turn while
    // the dev cluster runs.
    let _turn = Cluster::new(0);
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["dev", "--tls", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.starts_with("leader: member ");
        lines.push(line);
        if done {
            break;
        }
    }
    let members: Vec<&String> = lines.iter().filter(|l| l.starts_with("member ")).collect();
    assert_eq!(members.len(), 3, "{lines:?}");
    for line in &members {
        assert!(line.contains("client https://127.0.0.1:") && line.contains("admin https://127.0.0.1:"), "{line}");
    }
    // The printed command carries the flags of the generated client certificate.
    let certs = dir.path().join("certs");
    let flags = format!(
        "--cacert {} --cert {} --key {} put foo bar",
        certs.join("ca.crt").display(),
        certs.join("client.crt").display(),
        certs.join("client.key").display()
    );
    assert!(lines.last().unwrap().contains(&flags), "{lines:?}");
    let creds = Creds::client(&certs);
    let client = members[0].split("  ").nth(1).unwrap().trim_start_matches("client ").to_string();
    let out = etcdctl_tls(std::slice::from_ref(&client), &creds, &["put", "foo", "bar"]);
    assert_eq!(stdout(&out), "OK\n", "{}", String::from_utf8_lossy(&out.stderr));
    let out = etcdctl_tls(&[client], &creds, &["get", "foo", "--print-value-only"]);
    assert_eq!(stdout(&out), "bar\n");
    assert_eq!(signal_and_wait(&mut child, "INT"), Some(0));
}
