//! etcd's authentication and RBAC on a real 3-member cluster, driven with the
//! unmodified `etcdctl` (3.4): users, roles, prefix permissions, enforcement
//! on put/get/txn/watch, etcd's errors, a member restart, and JWT tokens.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{etcdctl, etcdctl_available, stdout, Cluster};

const STARTUP: Duration = Duration::from_secs(20);
const DENIED: &str = "etcdserver: permission denied";

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// etcdctl's answer must be `expected` on stdout.
#[track_caller]
fn expect_ok(output: &Output, expected: &str) {
    assert!(output.status.success(), "etcdctl failed: {}{}", stdout(output), stderr(output));
    assert_eq!(stdout(output), expected, "stderr: {}", stderr(output));
}

/// etcdctl must fail with `text` in its error.
#[track_caller]
fn expect_error(output: &Output, text: &str) {
    assert!(!output.status.success(), "etcdctl succeeded: {}", stdout(output));
    assert!(stderr(output).contains(text), "want {text:?}, got: {}{}", stdout(output), stderr(output));
}

/// etcdctl with `input` on its standard input (for `txn`).
fn etcdctl_input(endpoints: &[String], args: &[&str], input: &str) -> Output {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoints.join(","))
        .arg("--command-timeout=5s")
        .arg("--dial-timeout=2s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// `etcdctl watch` that the server should cancel at once; killed after 10 s
/// if it is not.
fn etcdctl_watch(endpoints: &[String], args: &[&str]) -> Output {
    let mut command = Command::new("timeout");
    command.arg("10").arg("etcdctl").env("ETCDCTL_API", "3").arg("--endpoints").arg(endpoints.join(","));
    command.args(args).output().unwrap()
}

/// A 3-member cluster with cheap bcrypt and `auth_token`, started and ready.
fn cluster(auth_token: Option<String>) -> Cluster {
    let mut cluster = Cluster::new(3);
    for m in &mut cluster.members {
        m.config.bcrypt_cost = 4;
        if let Some(token) = &auth_token {
            m.config.auth_token = token.clone();
        }
        std::fs::write(&m.config_path, m.config.to_yaml()).unwrap();
        m.start(&[]);
    }
    cluster.wait_leader(STARTUP);
    for m in &cluster.members {
        m.wait_ready(STARTUP);
    }
    cluster
}

/// The etcdctl sequence of docs/security.md: root, a role `app` with
/// READWRITE on the prefix `app/`, a user `alice` holding it, auth on.
fn set_up(endpoints: &[String]) {
    expect_ok(&etcdctl(endpoints, &["user", "add", "root", "--new-user-password=rootpw"]), "User root created\n");
    expect_ok(&etcdctl(endpoints, &["role", "add", "app"]), "Role app created\n");
    expect_ok(
        &etcdctl(endpoints, &["role", "grant-permission", "app", "--prefix=true", "readwrite", "app/"]),
        "Role app updated\n",
    );
    expect_ok(&etcdctl(endpoints, &["user", "add", "alice", "--new-user-password=alicepw"]), "User alice created\n");
    expect_ok(&etcdctl(endpoints, &["user", "grant-role", "alice", "app"]), "Role app is granted to user alice\n");
    // etcdctl adds the root role and grants it to root when enabling.
    expect_ok(&etcdctl(endpoints, &["auth", "enable"]), "Authentication Enabled\n");
    // A member checks requests against the auth state it has applied; wait
    // until every member has applied the enable (milliseconds) so that the
    // checks below do not depend on which member etcdctl picks.
    for endpoint in endpoints {
        let deadline = Instant::now() + STARTUP;
        loop {
            let out = etcdctl(std::slice::from_ref(endpoint), &["get", "probe"]);
            if stderr(&out).contains("etcdserver: user name is empty") {
                break;
            }
            assert!(Instant::now() < deadline, "{endpoint} never applied auth enable: {}", stderr(&out));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What a limited user may and may not do; etcd's errors.
fn check_enforcement(endpoints: &[String]) {
    let root = ["--user", "root", "--password", "rootpw"];
    let alice = ["--user", "alice:alicepw"];
    let with = |user: &[&str], args: &[&str]| etcdctl(endpoints, &[user, args].concat());
    expect_ok(&with(&root, &["put", "foo", "bar"]), "OK\n");
    expect_ok(&with(&root, &["get", "foo"]), "foo\nbar\n");
    // No user: etcd's "user name is empty".
    expect_error(&etcdctl(endpoints, &["put", "foo", "x"]), "etcdserver: user name is empty");
    // Inside and outside alice's prefix.
    expect_ok(&with(&alice, &["put", "app/1", "one"]), "OK\n");
    expect_ok(&with(&alice, &["get", "app/1"]), "app/1\none\n");
    expect_ok(&with(&alice, &["get", "app/", "--prefix", "--keys-only"]), "app/1\n\n");
    expect_error(&with(&alice, &["put", "foo", "x"]), DENIED);
    expect_error(&with(&alice, &["get", "foo"]), DENIED);
    expect_error(&with(&alice, &["del", "foo"]), DENIED);
    // A txn is checked op by op: one put outside the prefix denies it all.
    let txn = etcdctl_input(endpoints, &[&alice[..], &["txn"]].concat(), "\nput app/2 two\nput foo x\n\n\n");
    expect_error(&txn, DENIED);
    let txn = etcdctl_input(endpoints, &[&alice[..], &["txn"]].concat(), "\nput app/2 two\nput app/3 three\n\n\n");
    expect_ok(&txn, "SUCCESS\n\nOK\n\nOK\n");
    expect_ok(&with(&root, &["get", "foo"]), "foo\nbar\n");
    // A watch on a key alice may not read is canceled by the server.
    let watch = etcdctl_watch(endpoints, &[&alice[..], &["watch", "foo"]].concat());
    let text = format!("{}{}", stdout(&watch), stderr(&watch));
    assert!(text.contains(DENIED), "watch: {text}");
    // Root-only operations.
    expect_error(&with(&alice, &["user", "list"]), DENIED);
    expect_ok(&with(&root, &["user", "list"]), "alice\nroot\n");
    expect_ok(
        &with(&root, &["role", "get", "app"]),
        "Role app\nKV Read:\n\t[app/, app0) (prefix app/)\nKV Write:\n\t[app/, app0) (prefix app/)\n",
    );
    // A wrong password.
    expect_error(
        &with(&["--user", "alice:wrong"], &["get", "app/1"]),
        "etcdserver: authentication failed, invalid user ID or password",
    );
}

fn disable(endpoints: &[String]) {
    expect_error(&etcdctl(endpoints, &["--user", "alice:alicepw", "auth", "disable"]), DENIED);
    expect_ok(&etcdctl(endpoints, &["--user", "root:rootpw", "auth", "disable"]), "Authentication Disabled\n");
    // Every member: one that has not applied the disable yet catches up
    // before it refuses.
    for endpoint in endpoints {
        expect_ok(&etcdctl(std::slice::from_ref(endpoint), &["put", "foo", "free"]), "OK\n");
    }
}

#[test]
fn etcdctl_users_roles_and_permissions_with_simple_tokens() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = cluster(None);
    // All three endpoints: a simple token issued through one member works on
    // every member (the token is learnt through the log).
    let endpoints = cluster.running_clients();
    set_up(&endpoints);
    check_enforcement(&endpoints);
    for m in &cluster.members {
        let one = [m.config.advertise_client()];
        expect_ok(&etcdctl(&one, &["--user", "alice:alicepw", "get", "app/1"]), "app/1\none\n");
    }
    // The auth state survives a restart of a member.
    let restarted = cluster.members[2].config.member_id;
    cluster.member(restarted).kill();
    cluster.member(restarted).start(&[]);
    cluster.member(restarted).wait_ready(STARTUP);
    let one = [cluster.member(restarted).config.advertise_client()];
    let deadline = Instant::now() + STARTUP;
    loop {
        let out = etcdctl(&one, &["--user", "alice:alicepw", "get", "app/1"]);
        if stdout(&out) == "app/1\none\n" {
            break;
        }
        assert!(Instant::now() < deadline, "restarted member: {}{}", stderr(&out), cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    expect_error(&etcdctl(&one, &["--user", "alice:alicepw", "put", "foo", "x"]), DENIED);
    expect_error(&etcdctl(&one, &["put", "foo", "x"]), "etcdserver: user name is empty");
    disable(&endpoints);
}

#[test]
fn etcdctl_with_jwt_tokens() {
    if !etcdctl_available() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("jwt.key");
    let public = keys.path().join("jwt.pub");
    let generated = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&private)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .status()
            .is_ok_and(|s| s.success());
    let token = if generated {
        format!("jwt,pub-key={},priv-key={},sign-method=RS256,ttl=10m", public.display(), private.display())
    } else {
        // No openssl: an HMAC secret.
        std::fs::write(&private, b"a shared secret for the test cluster").unwrap();
        format!("jwt,priv-key={},sign-method=HS256", private.display())
    };
    let cluster = cluster(Some(token));
    let endpoints = cluster.running_clients();
    set_up(&endpoints);
    check_enforcement(&endpoints);
    disable(&endpoints);
}
