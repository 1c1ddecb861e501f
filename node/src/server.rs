//! Running one member: the data directory, a glommio executor with the member,
//! its admin HTTP server and its client API server, signal handling and a
//! clean shutdown.
//!
//! [`run_member`] blocks its thread until the member stops: on
//! [`MemberControl::stop`] (SIGTERM/SIGINT in `lockstep serve`, Ctrl-C in
//! `lockstep dev`), or on a fatal error (a WAL failure). A leader hands its
//! leadership over before it stops.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockstep_api::audit::{AuditEvent, AuditMember, AuditSink, Outcome};
use lockstep_core::wal::WalIdentity;
use lockstep_core::{Membership, NodeId, Role};
use lockstep_runtime::tls::{TlsContext, TlsFiles};
use lockstep_runtime::{Member, MemberOptions, StartMode, TransportOptions};

use crate::admin::MemberAddresses;
use crate::audit::{AuditLog, SharedAuditLog};
use crate::config::MemberConfig;
use crate::data_dir::{DataDir, LockMode, STATE_DIR_NAME};

/// Everything `run_member` needs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The member's name (for humans).
    pub name: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The member (its `wal_dir` and `state_dir` are set from `data_dir`).
    pub member: MemberOptions,
    /// Where the etcd v3 API listens.
    pub client_listen: SocketAddr,
    /// Where the admin HTTP server listens.
    pub admin_listen: SocketAddr,
    /// Every known member's addresses, for `/cluster/members`.
    pub addresses: BTreeMap<NodeId, MemberAddresses>,
    /// How long a stopping leader tries to hand over leadership.
    pub shutdown_transfer_timeout: Duration,
    /// The client gRPC server's limits.
    pub grpc: lockstep_runtime::http::ServeOptions,
    /// The admin URL of a member of the cluster to join (an empty data
    /// directory only).
    pub join: Option<String>,
    /// This member's own addresses (told to the cluster when joining).
    pub own: MemberAddresses,
    /// Tokens and password hashing of the Auth API.
    pub auth: lockstep_api::AuthConfig,
    /// TLS files of the client, peer and admin ports (`None`: plain TCP).
    pub tls: PortTls<TlsFiles>,
    /// How often the TLS files are checked for changes.
    pub tls_reload_interval: Duration,
    /// Where the audit log goes (`None`: no audit log).
    pub audit_file: Option<PathBuf>,
    /// The encryption key file (`None`: no encryption at rest).
    pub encryption_key_file: Option<PathBuf>,
    /// Rate limits, per-client limits and the failed-login lock-out at start
    /// (changeable at runtime through `PUT /admin/limits`).
    pub limits: lockstep_api::LimitsConfig,
}

/// Something per port that can have TLS: files in the options, loaded
/// [`TlsContext`]s in a running member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortTls<T> {
    /// The etcd API port.
    pub client: Option<T>,
    /// The peer port.
    pub peer: Option<T>,
    /// The admin port.
    pub admin: Option<T>,
}

impl PortTls<TlsFiles> {
    /// Loads every port's files (ALPN `h2` and `http/1.1` on the HTTP ports).
    pub fn load(&self) -> Result<PortTls<TlsContext>, ServeError> {
        let load = |port: &'static str, files: &Option<TlsFiles>, alpn: &[&[u8]]| {
            files
                .clone()
                .map(|files| TlsContext::load(port, files, alpn))
                .transpose()
                .map_err(|e| ServeError(format!("tls.{port}: {e}")))
        };
        let http: &[&[u8]] = &[b"h2", b"http/1.1"];
        Ok(PortTls {
            client: load("client", &self.client, http)?,
            peer: load("peer", &self.peer, &[])?,
            admin: load("admin", &self.admin, http)?,
        })
    }
}

impl PortTls<TlsContext> {
    /// The loaded contexts, client, peer, admin.
    pub fn all(&self) -> Vec<TlsContext> {
        [&self.client, &self.peer, &self.admin].into_iter().flatten().cloned().collect()
    }
}

/// Room for protobuf framing around the largest request a client may send:
/// etcd's `grpcOverheadBytes`. A message up to `max_request_bytes` plus this
/// is decoded and, when over `max_request_bytes`, refused with etcd's
/// "etcdserver: request is too large"; a larger one is refused by the gRPC
/// layer ("grpc: received message larger than max").
const GRPC_OVERHEAD_BYTES: usize = 512 << 10;

impl ServerOptions {
    /// The options of the member `config` describes.
    pub fn from_config(config: &MemberConfig) -> ServerOptions {
        let peers: BTreeMap<NodeId, String> =
            config.cluster.initial_members.iter().map(|m| (m.id, m.peer.clone())).collect();
        let addresses = config
            .cluster
            .initial_members
            .iter()
            .map(|m| {
                let name = if m.id == config.member_id { config.name.clone() } else { format!("member-{}", m.id) };
                (m.id, MemberAddresses { name, peer: m.peer.clone(), client: m.client.clone(), admin: m.admin.clone() })
            })
            .collect();
        let start = if config.cluster.join.is_some() {
            StartMode::Join
        } else {
            let mut voters: Vec<NodeId> = config.cluster.initial_members.iter().map(|m| m.id).collect();
            voters.sort_unstable();
            StartMode::Bootstrap(Membership { voters, outgoing: Vec::new(), learners: Vec::new() })
        };
        let t = &config.transport;
        ServerOptions {
            name: config.name.clone(),
            data_dir: config.data_dir.clone(),
            member: MemberOptions {
                raft: config.raft_config(),
                cluster_id: config.cluster_id(),
                kv: config.kv_config(),
                wal: config.wal_config(),
                wal_dir: PathBuf::new(),
                state_dir: PathBuf::new(),
                peer_listen: config.listen.peer,
                peer_advertise: config.advertise_peer(),
                peers,
                start,
                transport: TransportOptions {
                    max_frame_bytes: u32::try_from(t.max_frame_bytes).unwrap_or(u32::MAX),
                    peer_queue_messages: usize::try_from(t.peer_queue_messages).unwrap_or(usize::MAX),
                    reconnect_backoff_min_ms: t.reconnect_backoff_min_ms,
                    reconnect_backoff_max_ms: t.reconnect_backoff_max_ms,
                    dial_timeout_ms: t.dial_timeout_ms,
                },
                peer_tls: None,
                encryption: None,
            },
            client_listen: config.listen.client,
            admin_listen: config.listen.admin,
            addresses,
            shutdown_transfer_timeout: Duration::from_millis(config.raft.election_timeout_ms * 3),
            grpc: lockstep_runtime::http::ServeOptions {
                http2_streams_max: u32::try_from(config.grpc.max_concurrent_streams).unwrap_or(u32::MAX),
                http2_keep_alive_interval: Some(Duration::from_millis(config.grpc.keepalive_interval_ms)),
                http2_keep_alive_timeout: Duration::from_millis(config.grpc.keepalive_timeout_ms),
                ..lockstep_runtime::http::ServeOptions::default()
            },
            join: config.cluster.join.clone(),
            // Validated with the config (`check_relations`); a key file gone
            // since then falls back to simple tokens with an error logged.
            auth: config.auth_config().unwrap_or_else(|why| {
                tracing::error!("auth_token: {why}; using simple tokens");
                lockstep_api::AuthConfig::default()
            }),
            own: MemberAddresses {
                name: config.name.clone(),
                peer: config.advertise_peer(),
                client: config.advertise_client(),
                admin: config.advertise_admin(),
            },
            tls: PortTls {
                client: config.tls.files("client"),
                peer: config.tls.files("peer"),
                admin: config.tls.files("admin"),
            },
            tls_reload_interval: Duration::from_millis(config.tls.reload_interval_ms),
            audit_file: config.audit.file.clone(),
            encryption_key_file: config.encryption.key_file.clone(),
            limits: config.limits.clone(),
        }
    }
}

/// What a running member publishes to other threads (for `lockstep dev`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// The leader this member knows.
    pub leader: Option<NodeId>,
    /// Whether this member leads.
    pub is_leader: bool,
    /// The admin address actually bound.
    pub admin: Option<SocketAddr>,
    /// The client address actually bound.
    pub client: Option<SocketAddr>,
}

/// Controls a running member from another thread.
#[derive(Debug, Default)]
pub struct MemberControl {
    stop: AtomicBool,
    /// Set when every member stops together: handing leadership over is futile.
    no_transfer: AtomicBool,
    published: Mutex<Published>,
}

impl MemberControl {
    /// Asks the member to stop (it transfers leadership first if it leads).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Asks the member to stop without handing leadership over (the whole
    /// cluster is stopping).
    pub fn stop_all(&self) {
        self.no_transfer.store(true, Ordering::SeqCst);
        self.stop();
    }

    /// Whether a stop was requested.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// What the member published last.
    pub fn published(&self) -> Published {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn publish(&self, published: Published) {
        if let Ok(mut p) = self.published.lock() {
            *p = published;
        }
    }
}

/// Why a member could not run.
#[derive(Debug)]
pub struct ServeError(pub String);

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServeError {}

/// Runs one member until it is stopped. Returns an error when it could not
/// start or stopped on a fatal error.
pub fn run_member(mut options: ServerOptions, control: Arc<MemberControl>) -> Result<(), ServeError> {
    let tls = options.tls.load()?;
    options.member.peer_tls = tls.peer.clone();
    if let Some(path) = &options.encryption_key_file {
        let cipher = lockstep_runtime::crypt::AesGcm::load_cipher(path).map_err(|e| ServeError(e.to_string()))?;
        tracing::info!(key_id = format_args!("{:016x}", cipher.key_id()), "encryption at rest is on");
        options.member.encryption = Some(cipher);
    }
    if let Some(config) = tls.admin.as_ref().and_then(TlsContext::client_config) {
        // Joining, and forwarding membership changes to the leader, call other
        // members' admin ports with this member's admin certificate.
        crate::admin_client::use_tls(config);
    }
    let identity = WalIdentity {
        cluster_id: options.member.cluster_id,
        member_id: options.member.raft.id,
        group_id: options.member.raft.group,
    };
    let blank = !options.data_dir.join(crate::identity::IDENTITY_FILE_NAME).exists();
    let dir = if blank {
        let identity = match options.join.clone() {
            Some(join) => {
                discover(&mut options, &join)?;
                WalIdentity { cluster_id: options.member.cluster_id, ..identity }
            }
            None => identity,
        };
        DataDir::create(&options.data_dir, identity).map_err(|e| ServeError(e.to_string()))?
    } else {
        // A member with state restarts from it: its data directory says which
        // cluster it belongs to (a joined member's cluster id was learned, not
        // derived from its config), and it never joins again.
        let dir = DataDir::open(&options.data_dir).map_err(|e| ServeError(e.to_string()))?;
        let found = dir.identity();
        if found.member_id != identity.member_id || found.group_id != identity.group_id {
            return Err(ServeError(format!(
                "{} holds member {} (group {}), but the config says member_id {}: point data_dir at this member's \
                 own directory",
                options.data_dir.display(),
                found.member_id,
                found.group_id,
                identity.member_id
            )));
        }
        if options.join.is_none() && found.cluster_id != identity.cluster_id {
            tracing::warn!(
                data_dir = %options.data_dir.display(),
                "the data directory belongs to cluster {:016x}; cluster.token / cluster.initial_members now derive \
                 {:016x}; they only matter for a new member, so the data directory's cluster id is used",
                found.cluster_id,
                identity.cluster_id
            );
        }
        options.member.cluster_id = found.cluster_id;
        options.join = None;
        dir
    };
    let _lock = dir.lock(LockMode::Exclusive).map_err(|e| ServeError(e.to_string()))?;
    // Members added or removed since the config was written.
    for (id, addresses) in load_address_book(dir.root()) {
        if id != options.member.raft.id {
            options.member.peers.insert(id, addresses.peer.clone());
        }
        options.addresses.insert(id, addresses);
    }
    options.member.wal_dir = dir.wal_dir();
    options.member.state_dir = dir.root().join(STATE_DIR_NAME);
    let audit = match &options.audit_file {
        Some(path) => {
            let member = AuditMember { id: options.member.raft.id, name: options.name.clone() };
            Some(Arc::new(AuditLog::open(path, member).map_err(|e| ServeError(e.to_string()))?))
        }
        None => None,
    };
    let name = format!("lockstep-{}", options.member.raft.id);
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name(&name)
        .spawn(move || {
            let span = tracing::info_span!("member", id = options.member.raft.id);
            tracing::Instrument::instrument(
                async move {
                    let result = serve(options, tls, control, audit.clone()).await;
                    // Every event answered before the stop is on disk.
                    if let Some(audit) = audit {
                        audit.close();
                    }
                    result
                },
                span,
            )
        })
        .map_err(|e| ServeError(format!("cannot start the executor: {e}")))?;
    handle.join().map_err(|e| ServeError(format!("executor failed: {e}")))?
}

async fn serve(
    options: ServerOptions,
    tls: PortTls<TlsContext>,
    control: Arc<MemberControl>,
    audit: Option<Arc<AuditLog>>,
) -> Result<(), ServeError> {
    let member = Member::start(options.member.clone()).await.map_err(|e| ServeError(e.to_string()))?;
    for context in tls.all() {
        glommio::spawn_local(context.watch(options.tls_reload_interval)).detach();
    }
    let audit: Option<Rc<dyn AuditSink>> = audit.map(|audit| {
        audit.register(member.metrics().registry());
        Rc::new(SharedAuditLog(audit)) as Rc<dyn AuditSink>
    });
    if let Some(audit) = &audit {
        glommio::spawn_local(audit_tls_reloads(tls.all(), audit.clone(), options.tls_reload_interval)).detach();
    }
    let admin_state =
        Rc::new(crate::http::AdminState::new(member.clone(), &options, tls.all()).with_audit(audit.clone()));
    let admin =
        crate::http::start_admin(admin_state.clone(), options.admin_listen, tls.admin.clone()).map_err(ServeError)?;
    let service_config = lockstep_api::ServiceConfig {
        request_bytes_max: options.member.kv.request_bytes_max as usize + GRPC_OVERHEAD_BYTES,
        ..lockstep_api::ServiceConfig::default()
    };
    let client = crate::http::start_client(
        member.clone(),
        admin_state.clone(),
        options.client_listen,
        service_config,
        std::rc::Rc::new(lockstep_api::Authenticator::new(options.auth.clone())),
        options.grpc,
        tls.client.clone(),
    )
    .map_err(ServeError)?;
    if let Some(join) = &options.join {
        join_cluster(&member, &admin_state, join, &options).await?;
    }
    tracing::info!(member = member.id(), name = %options.name, %admin, %client, "serving");
    glommio::spawn_local(progress_notifications(member.clone())).detach();
    glommio::spawn_local(keep_address_book(member.clone(), admin_state.clone(), options.data_dir.clone())).detach();
    let failed = Rc::new(std::cell::RefCell::new(None));
    {
        let member = member.clone();
        let failed = failed.clone();
        glommio::spawn_local(async move {
            let why = member.failed().await;
            *failed.borrow_mut() = Some(why);
        })
        .detach();
    }
    loop {
        let view = member.raft_view();
        control.publish(Published {
            leader: view.leader,
            is_leader: view.role == Role::Leader,
            admin: Some(admin),
            client: Some(client),
        });
        if let Some(why) = failed.borrow().clone() {
            return Err(ServeError(format!("member {} stopped: {why}", view.id)));
        }
        if control.stopping() {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    let transfer_timeout =
        if control.no_transfer.load(Ordering::SeqCst) { Duration::ZERO } else { options.shutdown_transfer_timeout };
    member.shutdown(transfer_timeout).await;
    Ok(())
}

/// Records every certificate reload of `ports` (and every failed one) in the
/// audit log: the TLS contexts count them, this task notices new counts.
async fn audit_tls_reloads(ports: Vec<TlsContext>, audit: Rc<dyn AuditSink>, interval: Duration) {
    let mut seen: Vec<(u64, u64)> = ports.iter().map(|p| (p.status().reloads, p.status().reload_failures)).collect();
    loop {
        glommio::timer::sleep(interval.min(Duration::from_secs(1))).await;
        for (port, seen) in ports.iter().zip(seen.iter_mut()) {
            let status = port.status();
            let record = |outcome, detail| {
                audit.record(AuditEvent {
                    event: "tls_reload",
                    user: "anonymous".into(),
                    source: "local".into(),
                    outcome,
                    detail,
                });
            };
            if status.reloads > seen.0 {
                let detail = serde_json::json!({ "listener": status.listener, "cert_file": status.cert_file });
                record(Outcome::Ok, detail);
            }
            if status.reload_failures > seen.1 {
                let error = status.error.as_ref().map_or_else(String::new, ToString::to_string);
                let detail =
                    serde_json::json!({ "listener": status.listener, "cert_file": status.cert_file, "reason": error });
                record(Outcome::Error, detail);
            }
            *seen = (status.reloads, status.reload_failures);
        }
    }
}

/// Before a joining member's first start: learns the cluster's id and members
/// from the member at `join`.
fn discover(options: &mut ServerOptions, join: &str) -> Result<(), ServeError> {
    let reply = crate::admin_client::call("GET", join, "/cluster/members", None)
        .map_err(|e| ServeError(format!("cannot join through {join}: {e}")))?;
    if reply.status != 200 {
        return Err(ServeError(format!("cannot join through {join}: {}", reply.error_text())));
    }
    let cluster_id = reply.body["cluster_id"]
        .as_str()
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| ServeError(format!("{join} did not say its cluster id")))?;
    options.member.cluster_id = cluster_id;
    for (id, addresses) in members_from_json(&reply.body) {
        if id == options.member.raft.id {
            continue;
        }
        options.member.peers.insert(id, addresses.peer.clone());
        options.addresses.insert(id, addresses);
    }
    tracing::info!(cluster = format_args!("{cluster_id:016x}"), members = options.addresses.len(), "joining a cluster");
    Ok(())
}

/// Asks the cluster to add this member as a learner, then keeps asking the
/// leader to promote it until it is a voter (the leader agrees once this
/// member's log caught up). Runs in the background; progress is in the log
/// and in `/cluster/status`.
async fn join_cluster(
    member: &Member,
    admin: &Rc<crate::http::AdminState>,
    join: &str,
    options: &ServerOptions,
) -> Result<(), ServeError> {
    let id = member.id();
    let own = options.own.clone();
    let mut endpoints: Vec<String> = vec![join.to_string()];
    endpoints.extend(options.addresses.values().map(|a| a.admin.clone()).filter(|a| !a.is_empty()));
    let body = serde_json::json!({
        "id": id, "name": own.name, "peer": own.peer, "client": own.client, "admin": own.admin, "learner": true,
    });
    let call_endpoints = endpoints.clone();
    let reply = glommio::executor()
        .spawn_blocking(move || {
            crate::admin_client::call_leader("POST", &call_endpoints, "/cluster/members", Some(&body))
        })
        .await
        .map_err(|e| ServeError(format!("cannot join: {e}")))?;
    if reply.status != 200 {
        return Err(ServeError(format!("the cluster refused to add member {id}: {}", reply.error_text())));
    }
    tracing::info!(member = id, "added to the cluster as a learner; catching up");
    admin.learn(members_from_json(&reply.body));
    let member = member.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_millis(500)).await;
            let status = member.status();
            if status.failure.is_some() || status.membership.voters.contains(&id) {
                if status.membership.voters.contains(&id) {
                    tracing::info!(member = id, "promoted to voter");
                }
                return;
            }
            if !status.membership.learners.contains(&id) || status.applied_index == 0 {
                continue;
            }
            let path = format!("/cluster/members/{id}/promote");
            let endpoints = endpoints.clone();
            let reply = glommio::executor()
                .spawn_blocking(move || crate::admin_client::call_leader("POST", &endpoints, &path, None))
                .await;
            match reply {
                Ok(r) if r.status == 200 => tracing::info!(member = id, "promotion committed"),
                Ok(r) => tracing::info!(member = id, "not promoted yet: {}", r.error_text()),
                Err(e) => tracing::warn!(member = id, "promotion request failed: {e}"),
            }
        }
    })
    .detach();
    Ok(())
}

/// The file in the data directory that remembers every member's addresses.
pub const ADDRESS_BOOK_FILE_NAME: &str = "members.json";
const ADDRESS_BOOK_TEMP_FILE_NAME: &str = "members.json.tmp";

/// The address book of a data directory (empty if there is none or it cannot
/// be read: the config's initial members and the peers' handshakes fill in).
pub fn load_address_book(root: &std::path::Path) -> BTreeMap<NodeId, MemberAddresses> {
    let path = root.join(ADDRESS_BOOK_FILE_NAME);
    let Ok(text) = std::fs::read_to_string(&path) else { return BTreeMap::new() };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        tracing::warn!(path = %path.display(), "ignoring an unreadable address book");
        return BTreeMap::new();
    };
    members_from_json(&value)
}

/// The `members` array of an admin answer or of the address book, by id.
fn members_from_json(value: &serde_json::Value) -> BTreeMap<NodeId, MemberAddresses> {
    let mut members = BTreeMap::new();
    for m in value["members"].as_array().into_iter().flatten() {
        let (Some(id), Some(peer)) = (m["id"].as_u64(), m["peer"].as_str()) else { continue };
        let text = |key: &str| m[key].as_str().unwrap_or("").to_string();
        let addresses = MemberAddresses {
            name: text("name"),
            peer: peer.to_string(),
            client: text("client"),
            admin: text("admin"),
        };
        members.insert(id, addresses);
    }
    members
}

/// Keeps the transport's peers in step with the membership (a removed member
/// is no longer dialled) and the address book on disk in step with both, so a
/// restarted member still reaches members added after its config was written.
async fn keep_address_book(member: Member, admin: Rc<crate::http::AdminState>, root: PathBuf) {
    let mut written: Option<BTreeMap<NodeId, MemberAddresses>> = None;
    let mut previous: Option<Membership> = None;
    loop {
        let status = member.status();
        if status.failure.is_some() {
            return;
        }
        let m = &status.membership;
        let in_cluster = |id: &NodeId| m.voters.contains(id) || m.outgoing.contains(id) || m.learners.contains(id);
        if let Some(prev) = &previous {
            for id in prev.voters.iter().chain(&prev.outgoing).chain(&prev.learners) {
                if !in_cluster(id) && *id != status.id {
                    tracing::info!(member = *id, "member left the cluster; no longer dialling it");
                    member.remove_peer(*id);
                    admin.forget(*id);
                }
            }
        }
        previous = Some(m.clone());
        let book: BTreeMap<NodeId, MemberAddresses> =
            admin.addresses().into_iter().filter(|(id, _)| in_cluster(id) || *id == status.id).collect();
        if !m.voters.is_empty() && written.as_ref() != Some(&book) {
            let members: Vec<serde_json::Value> = book
                .iter()
                .map(|(id, a)| {
                    serde_json::json!({"id": id, "name": a.name, "peer": a.peer, "client": a.client, "admin": a.admin})
                })
                .collect();
            let bytes = serde_json::to_vec_pretty(&serde_json::json!({ "members": members })).expect("JSON");
            match crate::data_dir::write_atomically(&root, ADDRESS_BOOK_TEMP_FILE_NAME, ADDRESS_BOOK_FILE_NAME, &bytes)
            {
                Ok(()) => written = Some(book),
                Err(e) => tracing::warn!("cannot write the address book: {e}"),
            }
        }
        glommio::timer::sleep(Duration::from_millis(500)).await;
    }
}

/// How often watchers created with `progress_notify` get a progress
/// notification (etcd: every 10 minutes).
const WATCH_PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

/// Sends the periodic progress notifications of `progress_notify` watchers.
async fn progress_notifications(member: Member) {
    loop {
        glommio::timer::sleep(WATCH_PROGRESS_INTERVAL).await;
        if member.status().failure.is_some() {
            return;
        }
        member.with_store(|store| store.watch_progress(false));
        member.poke_watchers();
    }
}
