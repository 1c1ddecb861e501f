//! `lockstep dev`: a three-member cluster on this machine, for trying lockstep
//! out and for developing against it.
//!
//! Each member gets a directory and a config file under the data directory
//! (`member-N/` and `member-N.yaml`); a second `lockstep dev --data-dir DIR`
//! reuses the config files, so the members restart with their data. The members
//! run in this process, each on its own executor thread, exactly as
//! `lockstep serve` runs one.
//!
//! Each member writes an audit log next to its config file
//! (`member-N.audit.log`, docs/security.md).
//!
//! With `--tls` the members serve TLS on every port, with certificates that
//! `lockstep certs init` writes into `certs/` under the data directory: mutual
//! TLS between members and client certificates required on the client and
//! admin ports. The etcdctl flags to use are printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockstep_runtime::net::port_free;

use crate::config::{InitialMember, MemberConfig};
use crate::server::{run_member, MemberControl, ServerOptions};

/// Prints a line on stdout, ignoring a closed stdout (`lockstep dev | head`)
/// rather than panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The members of a dev cluster.
pub const DEV_MEMBERS: u64 = 3;
/// etcd's conventional local ports (its Procfile), then admin ports.
const CLIENT_PORTS: [u16; 3] = [2379, 22379, 32379];
const PEER_PORTS: [u16; 3] = [2380, 22380, 32380];
const ADMIN_PORTS: [u16; 3] = [8080, 8081, 8082];
/// How long `lockstep dev` waits for a leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// What `lockstep dev` was asked.
#[derive(Debug, Clone, Default)]
pub struct DevOptions {
    /// Where the members keep their data; a fresh directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// `log.level` of the members.
    pub log_level: Option<String>,
    /// TLS on every port (a new data directory only; an existing one keeps
    /// what its config files say).
    pub tls: bool,
    /// Encryption at rest with this key file (a new data directory only).
    pub encryption_key_file: Option<PathBuf>,
}

/// The directory of the dev cluster's certificates, under its data directory.
pub const CERTS_DIR_NAME: &str = "certs";
/// The client certificate's name in the certificates directory.
const DEV_CLIENT_NAME: &str = "client";

fn any_free_port() -> Result<u16, String> {
    lockstep_runtime::net::free_port().map_err(|e| format!("cannot find a free port: {e}"))
}

/// The ports of member `index` (0-based): the defaults, or free ones if any
/// default is busy.
fn ports(index: usize) -> Result<(u16, u16, u16), String> {
    let defaults = (CLIENT_PORTS[index], PEER_PORTS[index], ADMIN_PORTS[index]);
    if port_free(defaults.0) && port_free(defaults.1) && port_free(defaults.2) {
        return Ok(defaults);
    }
    Ok((any_free_port()?, any_free_port()?, any_free_port()?))
}

fn config_path(root: &Path, id: u64) -> PathBuf {
    root.join(format!("member-{id}.yaml"))
}

/// The members' configs: read back from `root`, or made (and written) afresh
/// (with TLS on every port when `tls`, generating the certificates).
pub fn dev_configs(
    root: &Path,
    log_level: Option<&str>,
    tls: bool,
    encryption_key_file: Option<&Path>,
) -> Result<Vec<MemberConfig>, String> {
    let mut configs = Vec::new();
    if config_path(root, 1).exists() {
        for id in 1..=DEV_MEMBERS {
            let path = config_path(root, id);
            let mut config = MemberConfig::load(Some(&path), &[], &[]).map_err(|e| e.to_string())?;
            if let Some(level) = log_level {
                config.log.level = level.to_string();
            }
            configs.push(config);
        }
        return Ok(configs);
    }
    let certs = root.join(CERTS_DIR_NAME);
    if tls {
        let mut options = crate::certs::CertsOptions::new(certs.clone());
        options.members = DEV_MEMBERS;
        options.clients = vec![DEV_CLIENT_NAME.into()];
        crate::certs::init(&options)?;
    }
    let scheme = if tls { "https" } else { "http" };
    let mut members = Vec::new();
    let mut listens = Vec::new();
    for index in 0..DEV_MEMBERS as usize {
        let (client, peer, admin) = ports(index)?;
        let addr = |port: u16| -> SocketAddr { SocketAddr::from(([127, 0, 0, 1], port)) };
        listens.push((addr(client), addr(peer), addr(admin)));
        members.push(InitialMember {
            id: index as u64 + 1,
            peer: addr(peer).to_string(),
            client: format!("{scheme}://{}", addr(client)),
            admin: format!("{scheme}://{}", addr(admin)),
        });
    }
    for (index, (client, peer, admin)) in listens.into_iter().enumerate() {
        let id = index as u64 + 1;
        let mut config = MemberConfig::single(id, root.join(format!("member-{id}")));
        config.listen.client = client;
        config.listen.peer = peer;
        config.listen.admin = admin;
        config.cluster.token = "lockstep-dev".into();
        config.cluster.initial_members = members.clone();
        if tls {
            let (cert, key) = crate::certs::member_files(&certs, id);
            let port = crate::config::TlsPortSection {
                cert_file: Some(cert),
                key_file: Some(key),
                ca_file: Some(certs.join("ca.crt")),
                client_cert_auth: true,
            };
            config.tls.client = port.clone();
            config.tls.peer = crate::config::TlsPortSection { client_cert_auth: false, ..port.clone() };
            config.tls.admin = port;
        }
        if let Some(level) = log_level {
            config.log.level = level.to_string();
        }
        // A dev cluster is where people try auth out: it keeps an audit log.
        config.audit.file = Some(root.join(format!("member-{id}.audit.log")));
        config.encryption.key_file = encryption_key_file.map(Path::to_path_buf);
        let path = config_path(root, id);
        std::fs::write(&path, config.to_yaml()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        configs.push(config);
    }
    Ok(configs)
}

/// The TLS flags of etcdctl (and of `lockstep cluster`) for a dev cluster
/// with client TLS: `--cacert CA --cert CERT --key KEY`; empty without TLS.
pub fn client_tls_flags(config: &MemberConfig) -> String {
    let Some(ca) = &config.tls.client.ca_file else { return String::new() };
    let dir = ca.parent().unwrap_or(Path::new("."));
    let (cert, key) = crate::certs::client_files(dir, DEV_CLIENT_NAME);
    format!("--cacert {} --cert {} --key {}", ca.display(), cert.display(), key.display())
}

/// The line `lockstep dev` prints for a member.
pub fn member_line(config: &MemberConfig) -> String {
    format!(
        "member {}  client {}  admin {}  peer {}",
        config.member_id,
        config.advertise_client(),
        config.advertise_admin(),
        config.advertise_peer()
    )
}

/// Runs the dev cluster until `stop` is set (Ctrl-C). Prints the data
/// directory, then one line per member once a leader exists.
pub fn run_dev(options: &DevOptions, stop: Arc<AtomicBool>) -> Result<(), String> {
    let started = Instant::now();
    let root = match &options.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            dir.clone()
        }
        None => tempfile::Builder::new()
            .prefix("lockstep-dev-")
            .tempdir()
            .map_err(|e| format!("cannot create a data directory: {e}"))?
            .keep(),
    };
    say!("data directory: {}", root.display());
    let configs =
        dev_configs(&root, options.log_level.as_deref(), options.tls, options.encryption_key_file.as_deref())?;
    let mut controls = Vec::new();
    let mut threads = Vec::new();
    for config in &configs {
        let control = Arc::new(MemberControl::default());
        controls.push(control.clone());
        let server_options = ServerOptions::from_config(config);
        let id = config.member_id;
        threads.push(
            std::thread::Builder::new()
                .name(format!("member-{id}"))
                .spawn(move || run_member(server_options, control).map_err(|e| format!("member {id}: {e}")))
                .map_err(|e| format!("cannot start member {id}: {e}"))?,
        );
    }
    let stop_all = |controls: &[Arc<MemberControl>]| {
        for c in controls {
            c.stop_all();
        }
    };
    // Wait for a leader (or a member that could not start).
    let mut leader = None;
    while leader.is_none() {
        if let Some(finished) = threads.iter().position(|t| t.is_finished()) {
            stop_all(&controls);
            let failed = threads.remove(finished).join().unwrap_or_else(|_| Err("member thread panicked".into()));
            for t in threads {
                let _ = t.join();
            }
            return Err(failed.err().unwrap_or_else(|| "a member stopped early".into()));
        }
        if started.elapsed() > LEADER_WAIT || stop.load(Ordering::SeqCst) {
            stop_all(&controls);
            for t in threads {
                let _ = t.join();
            }
            return Err(format!("no leader after {} s; see the members' log lines above", LEADER_WAIT.as_secs()));
        }
        leader = controls.iter().find_map(|c| c.published().leader);
        std::thread::sleep(Duration::from_millis(20));
    }
    for config in &configs {
        say!("{}", member_line(config));
    }
    let flags = configs.first().map(client_tls_flags).unwrap_or_default();
    let flags = if flags.is_empty() { String::new() } else { format!(" {flags}") };
    say!(
        "leader: member {} (cluster ready in {} ms); etcdctl --endpoints {}{flags} put foo bar; Ctrl-C stops",
        leader.unwrap_or(0),
        started.elapsed().as_millis(),
        configs.iter().map(|c| c.advertise_client()).collect::<Vec<_>>().join(",")
    );
    while !stop.load(Ordering::SeqCst) && !threads.iter().any(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    say!("stopping the dev cluster");
    stop_all(&controls);
    let mut errors = Vec::new();
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        say!("stopped; the data stays in {}", root.display());
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}
