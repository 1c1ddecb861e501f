//! A cluster of real `lockstep serve` processes on loopback, for integration
//! tests: configs with free ports, start/kill/restart, admin and etcdctl calls.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lockstep::config::{InitialMember, MemberConfig};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_lockstep");

pub fn free_port() -> u16 {
    lockstep_runtime::net::free_port().unwrap()
}

/// Whether `etcdctl` is installed. Under CI it must be: the tests fail rather
/// than skip.
pub fn etcdctl_available() -> bool {
    let found = Command::new("etcdctl").arg("version").env("ETCDCTL_API", "3").output().is_ok();
    if !found && std::env::var("CI").is_ok() {
        panic!("etcdctl is not installed (apt-get install etcd-client); CI must run these tests");
    }
    if !found {
        eprintln!("SKIP: etcdctl is not installed (apt-get install etcd-client)");
    }
    found
}

pub struct Proc {
    pub config: MemberConfig,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Proc>,
    /// Held while the cluster lives: one cluster per test binary at a time.
    /// Several 3-member clusters at once on a 2-core CI machine starve each
    /// other's heartbeats into elections and timeouts that test nothing.
    _turn: std::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn member_config(root: &Path, id: u64, initial: &[InitialMember], ports: (u16, u16, u16)) -> MemberConfig {
    let mut config = MemberConfig::single(id, root.join(format!("member-{id}")));
    config.listen.client = format!("127.0.0.1:{}", ports.0).parse().unwrap();
    config.listen.peer = format!("127.0.0.1:{}", ports.1).parse().unwrap();
    config.listen.admin = format!("127.0.0.1:{}", ports.2).parse().unwrap();
    config.cluster.token = "integration".into();
    config.cluster.initial_members = initial.to_vec();
    config.raft.election_timeout_ms = 500;
    config.raft.heartbeat_interval_ms = 50;
    config.log.level = "info".into();
    config
}

impl Cluster {
    /// Writes the configs of `n` members (not started).
    pub fn new(n: u64) -> Cluster {
        // A test that panicked poisoned the lock; the next one may still run.
        let turn = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16, u16)> = (0..n).map(|_| (free_port(), free_port(), free_port())).collect();
        let initial: Vec<InitialMember> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| InitialMember {
                id: i as u64 + 1,
                peer: format!("127.0.0.1:{}", p.1),
                client: format!("http://127.0.0.1:{}", p.0),
                admin: format!("http://127.0.0.1:{}", p.2),
            })
            .collect();
        let mut members = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let id = i as u64 + 1;
            let config = member_config(dir.path(), id, &initial, *p);
            members.push(Proc::new(dir.path(), config));
        }
        Cluster { dir, members, _turn: turn }
    }

    /// Starts every member.
    pub fn start(n: u64) -> Cluster {
        let mut cluster = Cluster::new(n);
        for m in &mut cluster.members {
            m.start(&[]);
        }
        cluster
    }

    /// A config for a new member `id` that joins through member 1.
    pub fn joiner(&self, id: u64) -> Proc {
        let ports = (free_port(), free_port(), free_port());
        let mut config = member_config(self.dir.path(), id, &[], ports);
        config.cluster.initial_members = Vec::new();
        config.cluster.join = Some(self.members[0].config.advertise_admin());
        Proc::new(self.dir.path(), config)
    }

    pub fn admins(&self) -> Vec<String> {
        self.members.iter().map(|m| m.config.advertise_admin()).collect()
    }

    /// Waits until some running member reports a leader; returns its id.
    pub fn wait_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            for m in self.members.iter().filter(|m| m.child.is_some()) {
                if let Ok((200, body)) = m.get("/cluster/leader") {
                    let leader = body["leader"].as_u64().unwrap();
                    // Only a leader that is running counts.
                    if self.members.iter().any(|p| p.config.member_id == leader && p.child.is_some()) {
                        return leader;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within {timeout:?}; logs:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn member(&mut self, id: u64) -> &mut Proc {
        self.members.iter_mut().find(|m| m.config.member_id == id).unwrap()
    }

    pub fn running_clients(&self) -> Vec<String> {
        self.members.iter().filter(|m| m.child.is_some()).map(|m| m.config.advertise_client()).collect()
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            out.push_str(&format!("--- member {} ---\n", m.config.member_id));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}

impl Proc {
    pub fn new(root: &Path, config: MemberConfig) -> Proc {
        let id = config.member_id;
        let config_path = root.join(format!("member-{id}.yaml"));
        std::fs::write(&config_path, config.to_yaml()).unwrap();
        Proc { config, config_path, log_path: root.join(format!("member-{id}.log")), child: None }
    }

    pub fn start(&mut self, extra: &[&str]) {
        assert!(self.child.is_none(), "member {} already runs", self.config.member_id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        signal_and_wait(&mut child, "TERM")
    }

    pub fn get(&self, path: &str) -> Result<(u16, Value), String> {
        let reply = lockstep::admin_client::call("GET", &self.config.advertise_admin(), path, None)?;
        Ok((reply.status, reply.body))
    }

    pub fn get_text(&self, path: &str) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.config.advertise_admin());
        match ureq::get(&url).timeout(Duration::from_secs(5)).call() {
            Ok(r) => Ok((r.status(), r.into_string().unwrap_or_default())),
            Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok((200, _)) = self.get_text("/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("member {} not ready within {timeout:?}", self.config.member_id);
    }
}

/// Runs etcdctl (API v3) against `endpoints`.
pub fn etcdctl(endpoints: &[String], args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoints.join(","))
        .arg("--command-timeout=5s")
        .arg("--dial-timeout=2s")
        .args(args)
        .output()
        .unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Puts `key=value` through `endpoint` until it succeeds or `timeout` passes;
/// returns how long it took.
pub fn put_until_ok(endpoint: &str, key: &str, value: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let out = etcdctl(&[endpoint.to_string()], &["put", key, value]);
        if out.status.success() && stdout(&out).trim() == "OK" {
            return started.elapsed();
        }
        assert!(started.elapsed() < timeout, "put {key} never succeeded: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (a name such as `TERM` or `INT`) and waits up to 20 s for
/// the process to exit; returns its exit code (`None`: killed after the wait).
pub fn signal_and_wait(child: &mut Child, signal: &str) -> Option<i32> {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
