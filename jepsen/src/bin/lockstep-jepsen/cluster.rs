//! The members of a run: `lockstep serve` processes, each inside its own
//! network namespace (`ip netns exec NS lockstep serve --config F`), and the
//! admin HTTP calls that find the leader and readiness.

use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::netns::Names;

/// Client, peer and admin ports (every member has its own address).
pub const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
const ADMIN_PORT: u16 = 8080;

/// One member.
pub struct Member {
    /// Its id, 1..=n.
    pub id: u64,
    /// Its network namespace.
    pub netns: String,
    /// Its address on the bridge.
    pub ip: String,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    /// Stopped with SIGSTOP and not yet resumed.
    pub paused: bool,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its Raft member id: `id` until the member nemesis has it join again
    /// under a new one.
    pub raft_id: u64,
    /// Removed from the cluster by the member nemesis and not yet joined again.
    pub removed: bool,
    /// YAML appended to the config (kept for the config of a join).
    extra_yaml: String,
    /// libfaketime and the file holding this member's clock offset, when
    /// the clock nemesis runs: the member starts with them preloaded.
    pub faketime: Option<(PathBuf, PathBuf)>,
}

/// The config file of member `id` of an `n`-member cluster.
pub fn member_config(names: &Names, id: u64, members: u64, data_dir: &Path) -> String {
    let ip = names.member_ip(id);
    let mut yaml = format!(
        "member_id: {id}\ndata_dir: {}\nlisten:\n  client: {ip}:{CLIENT_PORT}\n  peer: {ip}:{PEER_PORT}\n  admin: \
         {ip}:{ADMIN_PORT}\ncluster:\n  token: jepsen-{}\n  initial_members:\n",
        data_dir.display(),
        names.run_id
    );
    for other in 1..=members {
        let ip = names.member_ip(other);
        yaml.push_str(&format!(
            "    - {{id: {other}, peer: \"{ip}:{PEER_PORT}\", client: \"http://{ip}:{CLIENT_PORT}\", admin: \
             \"http://{ip}:{ADMIN_PORT}\"}}\n"
        ));
    }
    yaml.push_str(RAFT_AND_LOG_YAML);
    yaml
}

/// The `raft` and `log` sections of every member's config. Snapshots every
/// 500 entries (the default is 100,000), so that a run of a minute takes
/// checkpoints, restarts killed members from them and sends followers full
/// snapshots, under the same faults as everything else.
const RAFT_AND_LOG_YAML: &str = "raft:\n  election_timeout_ms: 1000\n  heartbeat_interval_ms: 100\n  request_timeout_ms: \
                                 3000\n  snapshot_threshold_entries: 500\n  compaction_lag_entries: 100\nlog:\n  level: \
                                 info\n";

impl Member {
    /// Writes the member's config under `work_dir`; its log goes to `log_path`.
    pub fn new(names: &Names, id: u64, members: u64, work_dir: &Path, log_path: PathBuf) -> std::io::Result<Member> {
        let config_path = work_dir.join(format!("member-{id}.yaml"));
        let data_dir = work_dir.join(format!("member-{id}"));
        std::fs::write(&config_path, member_config(names, id, members, &data_dir))?;
        Ok(Member {
            id,
            netns: names.netns(id),
            ip: names.member_ip(id),
            config_path,
            log_path,
            child: None,
            paused: false,
            faketime: None,
            data_dir,
            raft_id: id,
            removed: false,
            extra_yaml: String::new(),
        })
    }

    /// The last `lines` lines of the member's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The client URL.
    pub fn client_url(&self) -> String {
        format!("http://{}:{CLIENT_PORT}", self.ip)
    }

    /// Whether a process was started and not killed.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The pid of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Rewrites the config for joining a running cluster through `join_url`
    /// as Raft member `raft_id`, and empties the data directory (keeping it,
    /// should it be a mount point).
    pub fn prepare_join(&mut self, names: &Names, raft_id: u64, join_url: &str) -> Result<(), String> {
        let ip = names.member_ip(self.id);
        let yaml = format!(
            "member_id: {raft_id}\ndata_dir: {}\nlisten:\n  client: {ip}:{CLIENT_PORT}\n  peer: {ip}:{PEER_PORT}\n  \
             admin: {ip}:{ADMIN_PORT}\ncluster:\n  token: jepsen-{}\n  join: {join_url}\n{RAFT_AND_LOG_YAML}{}",
            self.data_dir.display(),
            names.run_id,
            self.extra_yaml
        );
        std::fs::write(&self.config_path, yaml).map_err(|error| format!("cannot write the config: {error}"))?;
        let entries = std::fs::read_dir(&self.data_dir).map_err(|error| format!("cannot list the data: {error}"))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.map_err(|error| format!("cannot wipe {}: {error}", path.display()))?;
        }
        self.raft_id = raft_id;
        Ok(())
    }

    /// Appends YAML to the member's config file (before it starts).
    pub fn append_config(&mut self, yaml: &str) -> std::io::Result<()> {
        let mut file = OpenOptions::new().append(true).open(&self.config_path)?;
        std::io::Write::write_all(&mut file, yaml.as_bytes())?;
        self.extra_yaml.push_str(yaml);
        Ok(())
    }

    /// Its admin URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}:{ADMIN_PORT}", self.ip)
    }

    /// Starts `lockstep serve` in the namespace, appending to the log.
    pub fn start(&mut self, lockstep: &Path) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|error| format!("cannot open {}: {error}", self.log_path.display()))?;
        let stdout = log.try_clone().map_err(|error| error.to_string())?;
        // `ip netns exec` execs the program, so the child's pid is lockstep's own.
        let mut command = Command::new("ip");
        // lockstep takes every LOCKSTEP_* variable as a config key (and refuses unknown ones): the config file alone decides.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LOCKSTEP_") {
                command.env_remove(name);
            }
        }
        if let Some((library, offset_file)) = &self.faketime {
            // libfaketime re-reads the offset file at most once a second, for
            // every clock (CLOCK_MONOTONIC included), in every thread.
            command
                .env("LD_PRELOAD", library)
                .env("FAKETIME_TIMESTAMP_FILE", offset_file)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_RESET", "1");
        }
        let child = command
            .args(["netns", "exec", &self.netns])
            .arg(lockstep)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            // Its own process group: a Ctrl-C at the terminal reaches the harness, which cleans up.
            .process_group(0)
            .spawn()
            .map_err(|error| format!("cannot start member {}: {error}", self.id))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// SIGKILL (after SIGCONT, should it be paused), and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                signal(child.id(), "CONT");
                self.paused = false;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, "STOP");
            self.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, "CONT");
        }
        self.paused = false;
    }

    /// SIGTERM and wait up to `timeout`, then SIGKILL. Returns the exit code
    /// when the member exited by itself.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let pid = self.pid()?;
        if self.paused {
            self.resume();
        }
        signal(pid, "TERM");
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take()?;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.code(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    /// Whether the process exited on its own (crashed); reaps it.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }

    /// `GET path` on the admin port: status and body.
    pub fn admin_get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(&format!("{}:{ADMIN_PORT}", self.ip), path, Duration::from_millis(1000))
    }

    /// The leader this member reports, if any.
    pub fn leader(&self) -> Option<u64> {
        let (status, body) = self.admin_get("/cluster/leader").ok()?;
        if status != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["leader"].as_u64()
    }

    /// Whether `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        matches!(self.admin_get("/readyz"), Ok((200, _)))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).stderr(Stdio::null()).status();
}

/// A minimal HTTP/1.1 GET with `Connection: close`.
pub fn http_get(address: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let address: SocketAddr = address.parse().map_err(|error| format!("{address}: {error}"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(|error| error.to_string())?;
    stream.set_read_timeout(Some(timeout)).map_err(|error| error.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|error| error.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|error| error.to_string())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|error| error.to_string())?;
    parse_response(&String::from_utf8_lossy(&response))
}

/// Status and body of an HTTP/1.1 response (chunked bodies are not decoded;
/// the admin endpoints send a length).
pub fn parse_response(text: &str) -> Result<(u16, String), String> {
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP response: {:?}", text.chars().take(40).collect::<String>()))?;
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// The leader most running, unpaused members agree on, if any.
pub fn find_leader(members: &[Member]) -> Option<u64> {
    let mut votes: std::collections::BTreeMap<u64, u32> = std::collections::BTreeMap::new();
    for member in members.iter().filter(|member| member.running() && !member.paused) {
        if let Some(leader) = member.leader() {
            *votes.entry(leader).or_default() += 1;
        }
    }
    // Members report Raft ids; the harness names members by slot.
    let leader = votes.into_iter().max_by_key(|(_, count)| *count).map(|(leader, _)| leader)?;
    members.iter().find(|member| member.raft_id == leader).map(|member| member.id)
}

/// Waits until every member is ready and one running member is a leader
/// that all running members agree on.
pub fn wait_healthy(members: &[Member], timeout: Duration, stop: &AtomicBool) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err("interrupted".to_owned());
        }
        let leaders: Vec<Option<u64>> = members.iter().map(Member::leader).collect();
        let agreed = leaders[0].filter(|leader| leaders.iter().all(|other| *other == Some(*leader)));
        if let Some(leader) = agreed {
            if members.iter().all(Member::ready) {
                return Ok(leader);
            }
        }
        if Instant::now() >= deadline {
            let ready: Vec<bool> = members.iter().map(Member::ready).collect();
            return Err(format!(
                "the cluster did not recover within {timeout:?}: leaders reported {leaders:?}, ready {ready:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_every_member_on_its_own_address() {
        let names = Names::new(0xabc, 7);
        let yaml = member_config(&names, 2, 3, Path::new("/tmp/x/member-2"));
        assert!(yaml.starts_with("member_id: 2\ndata_dir: /tmp/x/member-2\n"), "{yaml}");
        assert!(yaml.contains("  client: 10.77.7.2:2379\n"));
        assert!(yaml.contains("  token: jepsen-abc\n"));
        assert!(yaml.contains(
            "    - {id: 3, peer: \"10.77.7.3:2380\", client: \"http://10.77.7.3:2379\", admin: \"http://10.77.7.3:8080\"}\n"
        ));
        assert_eq!(yaml.matches("- {id:").count(), 3);
    }

    #[test]
    fn responses() {
        let response = "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{\"leader\":3}";
        assert_eq!(parse_response(response), Ok((200, "{\"leader\":3}".to_owned())));
        assert_eq!(parse_response("HTTP/1.1 503 Service Unavailable\r\n\r\n"), Ok((503, String::new())));
        assert!(parse_response("garbage").is_err());
    }
}
