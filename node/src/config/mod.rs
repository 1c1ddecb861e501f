//! A member's configuration: a YAML file, overridden key by key by `LOCKSTEP_*`
//! environment variables, overridden in turn by `--set KEY=VALUE` flags.
//!
//! - [`MemberConfig`] is the plain result; [`MemberConfig::load`] builds it from
//!   the three layers and validates every value and the relations between them.
//! - [`KEYS`] is the registry of every key (path, type, default, accepted values,
//!   meaning). Parsing, environment variable names, [`MemberConfig::to_yaml`] and
//!   the key table in `docs/config.md` all come from it.
//! - [`ConfigError`] holds every [`Problem`] found, each naming where the value came
//!   from (file and line, variable, or flag), the key, and what is accepted.
//!
//! The operator's reference is `docs/config.md`.

mod error;
mod keys;
mod suggest;
mod yaml;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use error::{ConfigError, Origin, Problem};
pub use keys::{env_var_of, find, find_env, human_size, DefaultValue, KeySpec, Kind, ENV_NOT_KEYS, ENV_PREFIX, KEYS};

use keys::{Bad, Value};
use yaml::Node;

/// The Raft group of the member's key-value store (one group until multi-Raft).
pub const RAFT_GROUP: lockstep_core::GroupId = 1;

/// The quota [`KvSection::quota_backend_bytes`]` = 0` stands for, as in etcd: 8 GiB.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 8 << 30;

/// One member's configuration. Plain data: every field is public, and what a
/// field accepts is in [`KEYS`] and `docs/config.md`. Build it with
/// [`MemberConfig::load`], which validates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    /// A human-readable name (`name`; default `member-<member_id>`).
    pub name: String,
    /// This member's id (`member_id`, required, `1..=2^63-1`).
    pub member_id: u64,
    /// The data directory (`data_dir`, required).
    pub data_dir: PathBuf,
    /// How the member finds its cluster (`cluster.*`).
    pub cluster: ClusterSection,
    /// The addresses the member binds (`listen.*`).
    pub listen: ListenSection,
    /// The addresses the member tells others (`advertise.*`).
    pub advertise: AdvertiseSection,
    /// Raft (`raft.*`).
    pub raft: RaftSection,
    /// The key-value store (`kv.*`).
    pub kv: KvSection,
    /// The write-ahead log (`wal.*`).
    pub wal: WalSection,
    /// The peer transport (`transport.*`).
    pub transport: TransportSection,
    /// The client gRPC server (`grpc.*`).
    pub grpc: GrpcSection,
    /// TLS on the client, peer and admin ports (`tls.*`).
    pub tls: TlsSection,
    /// Rate limits, per-client limits and the failed-login lock-out
    /// (`limits.*`; per-user overrides are set at runtime through the admin
    /// API only).
    pub limits: lockstep_api::LimitsConfig,
    /// Logging (`log.*`).
    pub log: LogSection,
    /// The audit log (`audit.*`).
    pub audit: AuditSection,
    /// Encryption at rest (`encryption.*`).
    pub encryption: EncryptionSection,
    /// `auth_token`: which tokens `Authenticate` issues, as etcd's
    /// `--auth-token`: `simple`, or `jwt,pub-key=…,priv-key=…,sign-method=…[,ttl=…]`.
    pub auth_token: String,
    /// `auth_token_ttl`: seconds a simple token lives after its last use
    /// (etcd's `--auth-token-ttl`).
    pub auth_token_ttl: u64,
    /// `bcrypt_cost`: the bcrypt cost of new password hashes (etcd's
    /// `--bcrypt-cost`).
    pub bcrypt_cost: u64,
}

/// `tls.*`: TLS for each port, configured separately (docs/security.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSection {
    /// `tls.client.*`: the etcd API port.
    pub client: TlsPortSection,
    /// `tls.peer.*`: the peer port (mutual TLS; `client_cert_auth` is implied).
    pub peer: TlsPortSection,
    /// `tls.admin.*`: the admin port.
    pub admin: TlsPortSection,
    /// `tls.reload_interval_ms`.
    pub reload_interval_ms: u64,
}

/// `audit.*`: the audit log of security-relevant events (docs/security.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditSection {
    /// `audit.file`: append one JSON line per event here; off when unset.
    pub file: Option<PathBuf>,
}

/// `encryption.*`: encryption at rest of the WAL and snapshot files
/// (docs/security.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncryptionSection {
    /// `encryption.key_file`: the key (32 bytes, raw or hex); off when unset.
    pub key_file: Option<PathBuf>,
}

/// One port's TLS files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsPortSection {
    /// `cert_file`: the certificate chain presented; TLS is on when it is set.
    pub cert_file: Option<PathBuf>,
    /// `key_file`: its private key.
    pub key_file: Option<PathBuf>,
    /// `ca_file`: the CA bundle the other side's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// `client_cert_auth`: require client certificates (always on for the peer port).
    pub client_cert_auth: bool,
}

impl TlsPortSection {
    /// Whether TLS is on for this port.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

impl TlsSection {
    /// The runtime's files of a port (`None`: plain TCP). The peer port always
    /// requires client certificates.
    pub fn files(&self, port: &str) -> Option<lockstep_runtime::tls::TlsFiles> {
        let (section, client_cert_auth) = match port {
            "client" => (&self.client, self.client.client_cert_auth),
            "peer" => (&self.peer, true),
            _ => (&self.admin, self.admin.client_cert_auth),
        };
        Some(lockstep_runtime::tls::TlsFiles {
            cert_file: section.cert_file.clone()?,
            key_file: section.key_file.clone()?,
            ca_file: section.ca_file.clone(),
            client_cert_auth,
            members_only: port == "peer",
        })
    }
}

/// `cluster.*`: bootstrap a new cluster or join a running one.
///
/// These keys are read only when the data directory is empty. A member whose
/// data directory already holds state restarts from that state (its identity
/// file has the cluster id and member id) and ignores both `initial_members` and
/// `join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSection {
    /// `cluster.token`: mixed into [`MemberConfig::cluster_id`].
    pub token: String,
    /// `cluster.initial_members`: the members that bootstrap the cluster. Without
    /// `join` it must list this member; ids and peer addresses are unique.
    pub initial_members: Vec<InitialMember>,
    /// `cluster.join`: the admin URL of a member of a running cluster to join
    /// through. A joining member must not be in `initial_members`.
    pub join: Option<String>,
}

/// One member of `cluster.initial_members`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    /// The member's id.
    pub id: u64,
    /// `HOST:PORT` its peers dial (its `advertise.peer`).
    pub peer: String,
    /// Its client URL, `http://HOST:PORT` (its `advertise.client`).
    pub client: String,
    /// Its admin URL, `http://HOST:PORT` (its `advertise.admin`).
    pub admin: String,
}

/// `listen.*`: socket addresses to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSection {
    /// `listen.client`: etcd v3 gRPC and the JSON gateway.
    pub client: SocketAddr,
    /// `listen.peer`: Raft traffic from other members.
    pub peer: SocketAddr,
    /// `listen.admin`: HTTP health, metrics and membership endpoints.
    pub admin: SocketAddr,
}

/// `advertise.*`: the addresses others use to reach this member; `None` derives
/// them from `listen.*` (see [`MemberConfig::advertise_client`] and friends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertiseSection {
    /// `advertise.client`: a URL.
    pub client: Option<String>,
    /// `advertise.peer`: `HOST:PORT`.
    pub peer: Option<String>,
    /// `advertise.admin`: a URL.
    pub admin: Option<String>,
}

/// `raft.*`: see [`lockstep_core::Config`], which [`MemberConfig::raft_config`] fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftSection {
    /// `raft.heartbeat_interval_ms`.
    pub heartbeat_interval_ms: u64,
    /// `raft.election_timeout_ms`.
    pub election_timeout_ms: u64,
    /// `raft.pre_vote`.
    pub pre_vote: bool,
    /// `raft.check_quorum`.
    pub check_quorum: bool,
    /// `raft.lease_reads`.
    pub lease_reads: bool,
    /// `raft.snapshot_threshold_entries`.
    pub snapshot_threshold_entries: u64,
    /// `raft.compaction_lag_entries`.
    pub compaction_lag_entries: u64,
    /// `raft.max_inflight_msgs`.
    pub max_inflight_msgs: u64,
    /// `raft.max_append_bytes`.
    pub max_append_bytes: u64,
    /// `raft.request_timeout_ms`.
    pub request_timeout_ms: u64,
    /// `raft.max_pending_requests`.
    pub max_pending_requests: u64,
}

/// `kv.*`: see [`lockstep_core::kv::KvConfig`], which [`MemberConfig::kv_config`] fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvSection {
    /// `kv.max_txn_ops`.
    pub max_txn_ops: u64,
    /// `kv.max_request_bytes` (also the largest Raft proposal).
    pub max_request_bytes: u64,
    /// `kv.quota_backend_bytes`; 0 means [`QUOTA_BACKEND_BYTES_DEFAULT`].
    pub quota_backend_bytes: u64,
    /// `kv.lease_ttl_min_s`.
    pub lease_ttl_min_s: u64,
}

/// `wal.*`: see [`lockstep_core::wal::WalConfig`], which [`MemberConfig::wal_config`] fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSection {
    /// `wal.segment_size_bytes`.
    pub segment_size_bytes: u64,
    /// `wal.preallocate`.
    pub preallocate: bool,
    /// `wal.block_size`.
    pub block_size: u64,
}

/// `transport.*`: the peer transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSection {
    /// `transport.max_frame_bytes`.
    pub max_frame_bytes: u64,
    /// `transport.peer_queue_messages`.
    pub peer_queue_messages: u64,
    /// `transport.reconnect_backoff_min_ms`.
    pub reconnect_backoff_min_ms: u64,
    /// `transport.reconnect_backoff_max_ms`.
    pub reconnect_backoff_max_ms: u64,
    /// `transport.dial_timeout_ms`.
    pub dial_timeout_ms: u64,
}

/// `grpc.*`: the client gRPC server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcSection {
    /// `grpc.max_concurrent_streams`.
    pub max_concurrent_streams: u64,
    /// `grpc.keepalive_interval_ms`.
    pub keepalive_interval_ms: u64,
    /// `grpc.keepalive_timeout_ms`.
    pub keepalive_timeout_ms: u64,
}

/// `log.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSection {
    /// `log.level`: a level or a `tracing` `EnvFilter` directive list.
    pub level: String,
    /// `log.format`.
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text for a person.
    Human,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The name used in the config.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

/// Where each key's final value came from, and its text, for messages about
/// relations between keys.
#[derive(Default)]
struct Sources {
    set: std::collections::BTreeMap<&'static str, (Origin, Option<String>)>,
}

impl Sources {
    fn origin(&self, path: &str) -> Origin {
        self.set.get(path).map_or(Origin::Default, |(origin, _)| origin.clone())
    }
}

/// The configuration being built from its layers, with where each value came
/// from and every problem found so far.
struct Layers {
    config: MemberConfig,
    sources: Sources,
    problems: Vec<Problem>,
}

impl Layers {
    /// Applies the `LOCKSTEP_*` variables, in name order so that reports do not
    /// depend on the process's order.
    fn apply_env(&mut self, env: &[(String, String)]) {
        let mut env: Vec<&(String, String)> = env
            .iter()
            .filter(|(var, _)| var.starts_with(ENV_PREFIX) && !ENV_NOT_KEYS.contains(&var.as_str()))
            .collect();
        env.sort();
        for (var, value) in env {
            let origin = Origin::Env { var: var.clone() };
            match find_env(var) {
                Some(spec) => self.apply(spec, keys::parse_override(spec.kind, spec.relation, value), origin, value),
                None => {
                    let guess = var[ENV_PREFIX.len()..].to_ascii_lowercase();
                    let hint = suggest::suggest(&guess, KEYS.iter().map(|k| k.path))
                        .map(|p| format!(" (did you mean {}?)", env_var_of(p)))
                        .unwrap_or_default();
                    self.problems.push(Problem {
                        origin: Some(origin),
                        file: None,
                        key: None,
                        value: None,
                        message: format!(
                            "unknown variable{hint}; every LOCKSTEP_* variable sets a config key, and docs/config.md lists them"
                        ),
                    });
                }
            }
        }
    }

    /// Applies the `--set` flags, in order.
    fn apply_flags(&mut self, overrides: &[(String, String)]) {
        for (key, value) in overrides {
            match find(key) {
                Some(spec) => {
                    self.apply(spec, keys::parse_override(spec.kind, spec.relation, value), Origin::Flag, value);
                }
                None => self.problems.push(Problem {
                    origin: Some(Origin::Flag),
                    file: None,
                    key: Some(key.clone()),
                    value: Some(value.clone()),
                    message: unknown_key_message(key),
                }),
            }
        }
    }

    /// Reports the keys without a default that no layer set (and that are not
    /// already reported as wrong).
    fn check_required(&mut self, file: Option<&Path>) {
        for required in ["member_id", "data_dir"] {
            let reported = self.problems.iter().any(|p| p.key.as_deref() == Some(required));
            if self.sources.set.contains_key(required) || reported {
                continue;
            }
            let env = env_var_of(required);
            let message = match file {
                Some(_) => format!(
                    "missing required key `{required}` (set it in the file, with {env}, or with --set {required}=...)"
                ),
                None => format!(
                    "missing required key `{required}` (no config file; set it with {env} or --set {required}=...)"
                ),
            };
            self.problems.push(Problem {
                origin: None,
                file: file.map(Path::to_path_buf),
                key: Some(required.into()),
                value: None,
                message,
            });
        }
    }

    /// Stores one parsed value, or turns its problems into [`Problem`]s that name
    /// where it came from.
    fn apply(&mut self, spec: &'static KeySpec, parsed: Result<Value, Vec<Bad>>, origin: Origin, raw: &str) {
        match parsed {
            Ok(value) => {
                keys::write(&mut self.config, spec, value);
                self.sources.set.insert(spec.path, (origin, Some(raw.to_string())));
            }
            Err(bads) => {
                for bad in bads {
                    self.problems.push(problem_of(spec, &origin, raw, bad));
                }
            }
        }
    }
}

impl MemberConfig {
    /// The built-in defaults, with the required keys unset (`member_id` 0, empty
    /// `data_dir` and `name`).
    fn unset() -> MemberConfig {
        let core = lockstep_core::Config::new(1, RAFT_GROUP, 1);
        let kv = lockstep_core::kv::KvConfig::default();
        let wal = lockstep_core::wal::WalConfig::default();
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        MemberConfig {
            name: String::new(),
            member_id: 0,
            data_dir: PathBuf::new(),
            cluster: ClusterSection { token: "lockstep".into(), initial_members: Vec::new(), join: None },
            listen: ListenSection { client: addr(2379), peer: addr(2380), admin: addr(8080) },
            advertise: AdvertiseSection { client: None, peer: None, admin: None },
            raft: RaftSection {
                heartbeat_interval_ms: core.heartbeat_interval_ms,
                election_timeout_ms: core.election_timeout_ms,
                pre_vote: core.pre_vote,
                check_quorum: core.check_quorum,
                lease_reads: core.lease_reads,
                // etcd's --snapshot-count. A snapshot copies the whole state on
                // the member's executor (docs/benchmarks.md, profile), so it is
                // taken rarely; the log between snapshots is kept in memory.
                snapshot_threshold_entries: 100_000,
                compaction_lag_entries: core.compaction_lag_entries,
                max_inflight_msgs: u64::from(core.inflight_msgs_max),
                max_append_bytes: core.append_bytes_max,
                request_timeout_ms: core.request_timeout_ms,
                max_pending_requests: u64::from(core.pending_requests_max),
            },
            kv: KvSection {
                max_txn_ops: u64::from(kv.txn_ops_max),
                max_request_bytes: kv.request_bytes_max,
                quota_backend_bytes: kv.quota_bytes,
                lease_ttl_min_s: u64::try_from(kv.lease_ttl_min_s).unwrap_or(2),
            },
            wal: WalSection {
                segment_size_bytes: wal.segment_size_max,
                preallocate: wal.preallocate,
                block_size: u64::from(wal.block_size),
            },
            transport: TransportSection {
                max_frame_bytes: 64 << 20,
                peer_queue_messages: 4096,
                reconnect_backoff_min_ms: 50,
                reconnect_backoff_max_ms: 2000,
                dial_timeout_ms: 1000,
            },
            grpc: GrpcSection {
                max_concurrent_streams: 1000,
                keepalive_interval_ms: 2 * 60 * 60 * 1000,
                keepalive_timeout_ms: 20_000,
            },
            tls: TlsSection { reload_interval_ms: 5000, ..TlsSection::default() },
            limits: lockstep_api::LimitsConfig::default(),
            log: LogSection { level: "info".into(), format: LogFormat::Human },
            audit: AuditSection::default(),
            encryption: EncryptionSection::default(),
            auth_token: "simple".into(),
            auth_token_ttl: lockstep_api::auth::SIMPLE_TOKEN_TTL_DEFAULT.as_secs(),
            bcrypt_cost: u64::from(lockstep_api::auth::BCRYPT_COST_DEFAULT),
        }
    }

    /// The defaults for a one-member cluster: member `member_id` bootstrapping
    /// alone on the default local addresses. What `lockstep config default` prints.
    pub fn single(member_id: u64, data_dir: PathBuf) -> MemberConfig {
        let mut config = MemberConfig::unset();
        config.name = format!("member-{member_id}");
        config.member_id = member_id;
        config.data_dir = data_dir;
        config.cluster.initial_members = vec![InitialMember {
            id: member_id,
            peer: config.advertise_peer(),
            client: config.advertise_client(),
            admin: config.advertise_admin(),
        }];
        config
    }

    /// Loads a member's configuration: the file at `path` (if any), then the
    /// `LOCKSTEP_*` variables of `env`, then the `--set` `overrides` (dotted key,
    /// value text), each layer overriding the one before key by key; then checks
    /// every value and the relations between keys.
    ///
    /// `env` may hold the whole process environment: variables without the
    /// `LOCKSTEP_` prefix, and those in [`ENV_NOT_KEYS`], are ignored; any other
    /// `LOCKSTEP_*` variable must name a key. Environment and flag values are
    /// taken as written (not as YAML), except `cluster.initial_members`, which is
    /// a YAML flow list (`[{id: 1, peer: "a:2380", client: "http://a:2379", admin: "http://a:8080"}]`);
    /// an empty value unsets an optional key.
    ///
    /// # Errors
    /// [`ConfigError::Read`] if the file cannot be read, else
    /// [`ConfigError::Invalid`] with every problem found.
    pub fn load(
        path: Option<&Path>,
        env: &[(String, String)],
        overrides: &[(String, String)],
    ) -> Result<MemberConfig, ConfigError> {
        let text = match path {
            Some(path) => Some(
                std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?,
            ),
            None => None,
        };
        MemberConfig::load_text(path.zip(text.as_deref()), env, overrides)
    }

    /// [`MemberConfig::load`] with the file's text already read: `file` is
    /// its name (for messages) and its text. The config fuzz tests and
    /// targets enter here.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with every problem found.
    pub fn load_text(
        file: Option<(&Path, &str)>,
        env: &[(String, String)],
        overrides: &[(String, String)],
    ) -> Result<MemberConfig, ConfigError> {
        let path = file.map(|(path, _)| path);
        let mut layers = Layers { config: MemberConfig::unset(), sources: Sources::default(), problems: Vec::new() };
        if let Some((path, text)) = file {
            if !load_file(path, text, &mut layers) {
                // A file that is not YAML, or not a mapping, says nothing reliable about keys.
                return Err(ConfigError::Invalid(layers.problems));
            }
        }
        layers.apply_env(env);
        layers.apply_flags(overrides);
        layers.check_required(path);
        let Layers { mut config, sources, mut problems } = layers;

        // Relations are checked only between values that are each valid, so that
        // one wrong value does not also show up as a broken relation.
        if problems.is_empty() {
            if config.name.is_empty() {
                config.name = format!("member-{}", config.member_id);
            }
            if !sources.set.contains_key("kv.lease_ttl_min_s") {
                config.kv.lease_ttl_min_s = lease_ttl_min_s_for(config.raft.election_timeout_ms);
            }
            check_relations(&config, &sources, path, &mut problems);
        }
        if problems.is_empty() {
            if let Err(message) = config.raft_config().validate() {
                problems.push(Problem {
                    origin: None,
                    file: path.map(Path::to_path_buf),
                    key: None,
                    value: None,
                    message: format!("the raft settings do not fit together: {message}"),
                });
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// [`MemberConfig::load`] with the overrides still as `--set` flag texts
    /// (`KEY=VALUE`), as a command line has them: a flag without `=` is one more
    /// problem in the report instead of hiding the others.
    ///
    /// # Errors
    /// As [`MemberConfig::load`].
    pub fn load_with_set_flags(
        path: Option<&Path>,
        env: &[(String, String)],
        set_flags: &[String],
    ) -> Result<MemberConfig, ConfigError> {
        let mut overrides = Vec::new();
        let mut flag_problems = Vec::new();
        for flag in set_flags {
            match parse_overrides(std::slice::from_ref(flag)) {
                Ok(pairs) => overrides.extend(pairs),
                Err(error) => flag_problems.extend(error.problems().iter().cloned()),
            }
        }
        match (MemberConfig::load(path, env, &overrides), flag_problems.is_empty()) {
            (result, true) | (result @ Err(ConfigError::Read { .. }), false) => result,
            (Ok(_), false) => Err(ConfigError::Invalid(flag_problems)),
            (Err(ConfigError::Invalid(mut problems)), false) => {
                problems.extend(flag_problems);
                Err(ConfigError::Invalid(problems))
            }
        }
    }

    /// A complete config file for this configuration, with every key and a
    /// comment with its meaning; [`MemberConfig::load`] reads it back to an equal
    /// config. Optional keys that are not set, and keys whose value is the one
    /// derived from other keys (`name`, `kv.lease_ttl_min_s`), are written as
    /// comments, so that the derivation still follows edits of the other keys.
    pub fn to_yaml(&self) -> String {
        let mut copy = self.clone();
        let mut out = String::from(
            "# lockstep member configuration: every key, its default and what it accepts\n\
             # are in docs/config.md. Each key can be overridden by an environment variable\n\
             # (LOCKSTEP_ + the key in upper case, dots as _) and by --set KEY=VALUE.\n",
        );
        let mut section: Vec<&str> = Vec::new();
        for spec in KEYS {
            let mut parts: Vec<&str> = spec.path.split('.').collect();
            let leaf = parts.pop().unwrap_or(spec.path);
            let common = section.iter().zip(&parts).take_while(|(a, b)| a == b).count();
            if parts.is_empty() || common < parts.len() {
                out.push('\n');
            }
            for (depth, part) in parts.iter().enumerate().skip(common) {
                out.push_str(&format!("{}{part}:\n", "  ".repeat(depth)));
            }
            section = parts.clone();
            let indent = "  ".repeat(parts.len());
            let indent = indent.as_str();
            for line in wrap(spec.meaning, 80 - indent.len()) {
                out.push_str(&format!("{indent}# {line}\n"));
            }
            let derived = match spec.path {
                "name" => self.name == format!("member-{}", self.member_id),
                "kv.lease_ttl_min_s" => self.kv.lease_ttl_min_s == lease_ttl_min_s_for(self.raft.election_timeout_ms),
                _ => false,
            };
            match keys::read(&mut copy, spec) {
                value if derived => {
                    let value = keys::render_plain(&value);
                    out.push_str(&format!("{indent}# {leaf}: {value} (the default, derived from other keys)\n"));
                }
                Value::OptStr(None) => out.push_str(&format!("{indent}# {leaf}: (not set)\n")),
                Value::Members(members) if members.is_empty() => out.push_str(&format!("{indent}{leaf}: []\n")),
                Value::Members(members) => {
                    out.push_str(&format!("{indent}{leaf}:\n"));
                    for m in members {
                        out.push_str(&format!("{indent}  - id: {}\n", m.id));
                        out.push_str(&format!("{indent}    peer: {}\n", quote(&m.peer)));
                        out.push_str(&format!("{indent}    client: {}\n", quote(&m.client)));
                        out.push_str(&format!("{indent}    admin: {}\n", quote(&m.admin)));
                    }
                }
                Value::U64(v) if matches!(spec.kind, Kind::Size { .. }) => {
                    out.push_str(&format!("{indent}{leaf}: {}\n", human_size(v)));
                }
                Value::U64(v) => out.push_str(&format!("{indent}{leaf}: {v}\n")),
                Value::Bool(v) => out.push_str(&format!("{indent}{leaf}: {v}\n")),
                Value::Str(v) | Value::OptStr(Some(v)) => out.push_str(&format!("{indent}{leaf}: {}\n", quote(&v))),
                Value::Path(v) | Value::OptPath(Some(v)) => {
                    out.push_str(&format!("{indent}{leaf}: {}\n", quote(&v.to_string_lossy())));
                }
                Value::OptPath(None) => out.push_str(&format!("{indent}# {leaf}: (not set)\n")),
                Value::Addr(v) => out.push_str(&format!("{indent}{leaf}: {}\n", quote(&v.to_string()))),
                Value::LogFormat(v) => out.push_str(&format!("{indent}{leaf}: {}\n", v.name())),
            }
        }
        out
    }

    /// The cluster id a bootstrapping member writes into its data directory: a
    /// stable 64-bit FNV-1a hash of `cluster.token` and of the ids and peer
    /// addresses of `cluster.initial_members` (in id order), never 0. Every
    /// member bootstrapped from the same token and list gets the same id.
    ///
    /// For a member that joins (`cluster.join`), the real cluster id is the one of
    /// the cluster it joins, learned when it joins; this value is then unused.
    pub fn cluster_id(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0100_0000_01b3;
        let mut hash = OFFSET;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(PRIME);
            }
        };
        feed(b"lockstep-cluster-v1\0");
        feed(self.cluster.token.as_bytes());
        feed(b"\0");
        let mut members: Vec<&InitialMember> = self.cluster.initial_members.iter().collect();
        members.sort_by_key(|m| m.id);
        for m in members {
            feed(&m.id.to_le_bytes());
            feed(m.peer.as_bytes());
            feed(b"\0");
        }
        hash.max(1)
    }

    /// The client URL others use: `advertise.client`, else
    /// `http://<listen.client>` (`https://` with client TLS).
    pub fn advertise_client(&self) -> String {
        let scheme = if self.tls.client.enabled() { "https" } else { "http" };
        self.advertise.client.clone().unwrap_or_else(|| format!("{scheme}://{}", self.listen.client))
    }

    /// The peer address others dial: `advertise.peer`, else `listen.peer`.
    pub fn advertise_peer(&self) -> String {
        self.advertise.peer.clone().unwrap_or_else(|| self.listen.peer.to_string())
    }

    /// The admin URL others use: `advertise.admin`, else
    /// `http://<listen.admin>` (`https://` with admin TLS).
    pub fn advertise_admin(&self) -> String {
        let scheme = if self.tls.admin.enabled() { "https" } else { "http" };
        self.advertise.admin.clone().unwrap_or_else(|| format!("{scheme}://{}", self.listen.admin))
    }

    /// The core Raft configuration: group [`RAFT_GROUP`], the RNG seeded with the
    /// member id, and the `raft.*` values; `kv.max_request_bytes` bounds proposals.
    /// Core's other fields keep their defaults.
    pub fn raft_config(&self) -> lockstep_core::Config {
        let mut c = lockstep_core::Config::new(self.member_id, RAFT_GROUP, self.member_id);
        let r = &self.raft;
        c.heartbeat_interval_ms = r.heartbeat_interval_ms;
        c.election_timeout_ms = r.election_timeout_ms;
        c.pre_vote = r.pre_vote;
        c.check_quorum = r.check_quorum;
        c.lease_reads = r.lease_reads;
        c.snapshot_threshold_entries = r.snapshot_threshold_entries;
        c.compaction_lag_entries = r.compaction_lag_entries;
        // The registry bounds these to u32 (4096 and 1_000_000).
        c.inflight_msgs_max = u32::try_from(r.max_inflight_msgs).unwrap_or(u32::MAX);
        c.pending_requests_max = u32::try_from(r.max_pending_requests).unwrap_or(u32::MAX);
        c.append_bytes_max = r.max_append_bytes;
        c.request_timeout_ms = r.request_timeout_ms;
        c.proposal_bytes_max = self.kv.max_request_bytes;
        c
    }

    /// The API's auth settings (`auth_token`, `auth_token_ttl`,
    /// `bcrypt_cost`); JWT key files are read now.
    pub fn auth_config(&self) -> Result<lockstep_api::AuthConfig, String> {
        let read = |path: &str| std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"));
        Ok(lockstep_api::AuthConfig {
            token: lockstep_api::TokenConfig::parse(&self.auth_token, read)?,
            simple_token_ttl: std::time::Duration::from_secs(self.auth_token_ttl),
            bcrypt_cost: u32::try_from(self.bcrypt_cost).unwrap_or(u32::MAX),
        })
    }

    /// The core key-value store configuration (`kv.*`; the watch limits and the
    /// lease revoke retry keep core's defaults).
    pub fn kv_config(&self) -> lockstep_core::kv::KvConfig {
        lockstep_core::kv::KvConfig {
            txn_ops_max: u32::try_from(self.kv.max_txn_ops).unwrap_or(u32::MAX),
            request_bytes_max: self.kv.max_request_bytes,
            lease_ttl_min_s: i64::try_from(self.kv.lease_ttl_min_s).unwrap_or(i64::MAX),
            quota_bytes: match self.kv.quota_backend_bytes {
                0 => QUOTA_BACKEND_BYTES_DEFAULT,
                bytes => bytes,
            },
            ..lockstep_core::kv::KvConfig::default()
        }
    }

    /// The core WAL writer configuration (`wal.*`).
    pub fn wal_config(&self) -> lockstep_core::wal::WalConfig {
        lockstep_core::wal::WalConfig {
            segment_size_max: self.wal.segment_size_bytes,
            preallocate: self.wal.preallocate,
            block_size: u32::try_from(self.wal.block_size).unwrap_or(u32::MAX),
        }
    }
}

/// Parses the `--set KEY=VALUE` flags into pairs for [`MemberConfig::load`].
///
/// # Errors
/// A flag without `=`, or with an empty key, as a [`ConfigError::Invalid`].
pub fn parse_overrides(flags: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    let mut problems = Vec::new();
    for flag in flags {
        match flag.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => pairs.push((key.trim().to_string(), value.to_string())),
            _ => problems.push(Problem {
                origin: Some(Origin::Flag),
                file: None,
                key: Some(flag.clone()),
                value: None,
                message: "expected KEY=VALUE, like --set raft.election_timeout_ms=2000".into(),
            }),
        }
    }
    if problems.is_empty() {
        Ok(pairs)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// The `LOCKSTEP_*` variables of this process (names and values that are not
/// UTF-8 are taken lossily, and then fail as unknown or invalid).
pub fn lockstep_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect()
}

/// The shortest lease TTL that outlives an election: 1.5 election timeouts, in
/// whole seconds rounded up (etcd's rule); 2 s with the default 1 s timeout.
pub fn lease_ttl_min_s_for(election_timeout_ms: u64) -> u64 {
    (election_timeout_ms * 3).div_ceil(2000).max(1)
}

fn unknown_key_message(key: &str) -> String {
    let hint = suggest::suggest(key, KEYS.iter().map(|k| k.path))
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    format!("unknown key `{key}`{hint}")
}

/// Parses the file and applies each key found in it; false if it is not YAML
/// or not a mapping, when nothing else about it is worth reporting.
fn load_file(path: &Path, text: &str, layers: &mut Layers) -> bool {
    let at = |line: usize, message: String| Problem {
        origin: Some(Origin::File { path: path.to_path_buf(), line }),
        file: Some(path.to_path_buf()),
        key: None,
        value: None,
        message,
    };
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => return true,
        Err(e) => {
            layers.problems.push(at(e.line, e.message));
            return false;
        }
    };
    if root.is_null() {
        return true;
    }
    if !matches!(root, Node::Map { .. }) {
        layers.problems.push(at(root.line(), "the file must be a mapping of keys, like `member_id: 1`".into()));
        return false;
    }
    let mut leaves = Vec::new();
    collect_leaves(&root, "", &mut leaves, &mut |line, key, message| {
        layers.problems.push(Problem { key, ..at(line, message) });
    });
    for (spec, key_line, node) in leaves {
        let origin = Origin::File { path: path.to_path_buf(), line: key_line };
        let raw = match node {
            Node::Scalar { text, .. } if !node.is_null() => text.clone(),
            _ => String::new(),
        };
        // A key written without a value is reported on its own line, not the next.
        let empty = Node::Scalar { text: String::new(), plain: true, line: key_line };
        let node = if node.is_null() { &empty } else { node };
        layers.apply(spec, keys::parse(spec.kind, spec.relation, node), origin, &raw);
    }
    true
}

/// Walks the document: known keys go to `leaves`, the rest to `bad`.
fn collect_leaves<'n>(
    node: &'n Node,
    prefix: &str,
    leaves: &mut Vec<(&'static KeySpec, usize, &'n Node)>,
    bad: &mut dyn FnMut(usize, Option<String>, String),
) {
    let Node::Map { entries, .. } = node else {
        // The root is checked by the caller.
        let what =
            format!("`{prefix}` must be a mapping of its keys (each on its own line, indented below `{prefix}:`)");
        return bad(node.line(), Some(prefix.to_string()), what);
    };
    for entry in entries {
        let path = if prefix.is_empty() { entry.key.clone() } else { format!("{prefix}.{}", entry.key) };
        if entry.key.contains('.') {
            // `raft.pre_vote: true`: dotted keys are for the environment and flags;
            // accepting both forms would let one silently override the other.
            let message = match path.split_once('.') {
                Some((head, rest)) if find(&path).is_some() || keys::is_section(&path) => format!(
                    "unknown key `{path}`: in the file, keys are nested: `{head}:`, then `{rest}: ...` indented below it"
                ),
                _ => unknown_key_message(&path),
            };
            bad(entry.key_line, Some(path), message);
        } else if let Some(spec) = find(&path) {
            leaves.push((spec, entry.key_line, &entry.value));
        } else if keys::is_section(&path) {
            if !entry.value.is_null() {
                collect_leaves(&entry.value, &path, leaves, bad);
            }
        } else {
            let message = unknown_key_message(&path);
            bad(entry.key_line, Some(path), message);
        }
    }
}

fn problem_of(spec: &KeySpec, origin: &Origin, raw: &str, bad: Bad) -> Problem {
    let key = format!("{}{}", spec.path, bad.path);
    match origin {
        Origin::File { path, .. } => {
            let message = match bad.value {
                Some(_) => bad.message,
                None => format!("{key}: {}", bad.message),
            };
            Problem {
                origin: Some(Origin::File { path: path.clone(), line: bad.line }),
                file: Some(path.clone()),
                key: Some(key),
                value: bad.value,
                message,
            }
        }
        Origin::Env { .. } | Origin::Flag | Origin::Default => {
            // The variable or flag is quoted whole; a problem inside a member
            // list also says which part.
            let message = match (bad.path.is_empty(), bad.value) {
                (true, _) => bad.message,
                (false, Some(value)) => format!("{key} = {value}: {}", bad.message),
                (false, None) => format!("{key}: {}", bad.message),
            };
            Problem {
                origin: Some(origin.clone()),
                file: None,
                key: Some(spec.path.to_string()),
                value: Some(raw.to_string()),
                message,
            }
        }
    }
}

/// Checks what no single value shows: relations between keys, the member list
/// against `member_id` and `cluster.join`, and addresses others must reach.
fn check_relations(config: &MemberConfig, sources: &Sources, file: Option<&Path>, problems: &mut Vec<Problem>) {
    let mut blame = |key: &'static str, message: String| {
        let (origin, raw) = match sources.set.get(key) {
            Some((origin, raw)) => (origin.clone(), raw.clone()),
            None => {
                let spec = find(key);
                let default = spec.map(KeySpec::default_text);
                (Origin::Default, default)
            }
        };
        // An optional key's unset default ("not set") is no value to quote.
        let unset = origin == Origin::Default && raw.as_deref() == Some("not set");
        let raw = raw.filter(|r| !r.is_empty() && key != "cluster.initial_members" && !unset);
        let message = match (&origin, &raw) {
            (Origin::File { .. } | Origin::Default, None) => format!("{key}: {message}"),
            _ => message,
        };
        problems.push(Problem {
            origin: Some(origin),
            file: file.map(Path::to_path_buf),
            key: Some(key.to_string()),
            value: raw,
            message,
        });
    };
    // Of two related keys, blame the one set in the later layer (the one the
    // operator most likely just changed); on a tie, the first.
    let later = |a: &'static str, b: &'static str| -> &'static str {
        let rank = |o: Origin| match o {
            Origin::Default => 0,
            Origin::File { .. } => 1,
            Origin::Env { .. } => 2,
            Origin::Flag => 3,
        };
        if rank(sources.origin(b)) > rank(sources.origin(a)) {
            b
        } else {
            a
        }
    };

    if let Err(why) = config.auth_config() {
        blame("auth_token", why);
    }

    let r = &config.raft;
    if r.election_timeout_ms < 2 * r.heartbeat_interval_ms {
        let (e, h) = (r.election_timeout_ms, r.heartbeat_interval_ms);
        match later("raft.election_timeout_ms", "raft.heartbeat_interval_ms") {
            "raft.election_timeout_ms" => blame(
                "raft.election_timeout_ms",
                format!("must be at least 2 × raft.heartbeat_interval_ms (2 × {h} = {})", 2 * h),
            ),
            _ => blame(
                "raft.heartbeat_interval_ms",
                format!("must be at most raft.election_timeout_ms / 2 ({e} / 2 = {})", e / 2),
            ),
        }
    }
    let ttl_min_s = lease_ttl_min_s_for(r.election_timeout_ms);
    if config.kv.lease_ttl_min_s < ttl_min_s {
        match later("kv.lease_ttl_min_s", "raft.election_timeout_ms") {
            "kv.lease_ttl_min_s" => blame(
                "kv.lease_ttl_min_s",
                format!(
                    "must be at least 1.5 × raft.election_timeout_ms = {ttl_min_s} s, so that a lease outlives an election"
                ),
            ),
            _ => blame(
                "raft.election_timeout_ms",
                format!(
                    "must be at most kv.lease_ttl_min_s / 1.5 = {} ms, so that a lease outlives an election",
                    config.kv.lease_ttl_min_s * 2000 / 3
                ),
            ),
        }
    }
    let l = &config.limits;
    if l.auth_lockout_max_ms < l.auth_lockout_ms {
        match later("limits.auth_lockout_max_ms", "limits.auth_lockout_ms") {
            "limits.auth_lockout_max_ms" => blame(
                "limits.auth_lockout_max_ms",
                format!("must be at least limits.auth_lockout_ms = {}", l.auth_lockout_ms),
            ),
            _ => blame(
                "limits.auth_lockout_ms",
                format!("must be at most limits.auth_lockout_max_ms = {}", l.auth_lockout_max_ms),
            ),
        }
    }
    let t = &config.transport;
    if t.reconnect_backoff_max_ms < t.reconnect_backoff_min_ms {
        match later("transport.reconnect_backoff_max_ms", "transport.reconnect_backoff_min_ms") {
            "transport.reconnect_backoff_max_ms" => blame(
                "transport.reconnect_backoff_max_ms",
                format!("must be at least transport.reconnect_backoff_min_ms = {}", t.reconnect_backoff_min_ms),
            ),
            _ => blame(
                "transport.reconnect_backoff_min_ms",
                format!("must be at most transport.reconnect_backoff_max_ms = {}", t.reconnect_backoff_max_ms),
            ),
        }
    }
    let frame_min = config.raft.max_append_bytes + config.kv.max_request_bytes;
    if t.max_frame_bytes < frame_min {
        let (append, request) = (human_size(config.raft.max_append_bytes), human_size(config.kv.max_request_bytes));
        let key = later(later("transport.max_frame_bytes", "raft.max_append_bytes"), "kv.max_request_bytes");
        let message = match key {
            "transport.max_frame_bytes" => format!(
                "must be at least raft.max_append_bytes + kv.max_request_bytes ({append} + {request} = {})",
                human_size(frame_min)
            ),
            other => format!(
                "{other} + {} must fit in transport.max_frame_bytes ({append} + {request} > {})",
                if other == "kv.max_request_bytes" { "raft.max_append_bytes" } else { "kv.max_request_bytes" },
                human_size(t.max_frame_bytes)
            ),
        };
        blame(key, message);
    }

    check_tls(config, &mut blame);

    let id = config.member_id;
    let listed = config.cluster.initial_members.iter().any(|m| m.id == id);
    match &config.cluster.join {
        None if config.cluster.initial_members.is_empty() => blame(
            "cluster.initial_members",
            "is empty: list the members that bootstrap the cluster, this one among them, or set cluster.join to join a running cluster".into(),
        ),
        None if !listed => blame(
            "cluster.initial_members",
            format!(
                "does not list this member (member_id = {id}): add it, or set cluster.join to join a running cluster"
            ),
        ),
        Some(_) if listed => blame(
            "cluster.join",
            format!(
                "a joining member must not be in cluster.initial_members, which lists member {id}: remove cluster.join to bootstrap, or remove member {id} from the list to join"
            ),
        ),
        _ => {}
    }

    // Other members dial the address in the list; it must be where this member is.
    let own = config.cluster.initial_members.iter().find(|m| m.id == id);
    let peer_derivable = config.advertise.peer.is_some() || !config.listen.peer.ip().is_unspecified();
    if let (Some(own), None, true) = (own, &config.cluster.join, peer_derivable) {
        let advertised = config.advertise_peer();
        if own.peer != advertised {
            match later("cluster.initial_members", "advertise.peer") {
                "advertise.peer" => blame(
                    "advertise.peer",
                    format!("must be this member's peer address in cluster.initial_members ({})", own.peer),
                ),
                _ => blame(
                    "cluster.initial_members",
                    format!(
                        "lists this member (id {id}) with peer {}, but it advertises {advertised} (advertise.peer, or listen.peer when that is unset): other members would dial the wrong address",
                        own.peer
                    ),
                ),
            }
        }
    }

    let addresses = [
        (
            "listen.client",
            "advertise.client",
            config.listen.client,
            config.advertise.client.is_some(),
            "http://10.0.0.1:2379",
        ),
        ("listen.peer", "advertise.peer", config.listen.peer, config.advertise.peer.is_some(), "10.0.0.1:2380"),
        (
            "listen.admin",
            "advertise.admin",
            config.listen.admin,
            config.advertise.admin.is_some(),
            "http://10.0.0.1:8080",
        ),
    ];
    for (listen, advertise, addr, advertised, example) in addresses {
        if addr.ip().is_unspecified() && !advertised {
            blame(
                listen,
                format!(
                    "binds every address, so set {advertise} to the one others reach (like {advertise}: {example})"
                ),
            );
        }
    }
}

/// The TLS keys of each port: pairs that go together, the files they name.
fn check_tls(config: &MemberConfig, blame: &mut dyn FnMut(&'static str, String)) {
    let ports: [(&TlsPortSection, [&'static str; 4]); 3] = [
        (
            &config.tls.client,
            ["tls.client.cert_file", "tls.client.key_file", "tls.client.ca_file", "tls.client.client_cert_auth"],
        ),
        (&config.tls.peer, ["tls.peer.cert_file", "tls.peer.key_file", "tls.peer.ca_file", ""]),
        (
            &config.tls.admin,
            ["tls.admin.cert_file", "tls.admin.key_file", "tls.admin.ca_file", "tls.admin.client_cert_auth"],
        ),
    ];
    for (port, [cert, key, ca, client_auth]) in ports {
        match (&port.cert_file, &port.key_file) {
            (Some(_), None) => blame(
                key,
                format!("must be set, since {cert} is: set it to the certificate's private key (PEM), or unset {cert} to serve without TLS"),
            ),
            (None, Some(_)) => blame(
                cert,
                format!("must be set, since {key} is: set it to the certificate (PEM) of that key, or unset {key} to serve without TLS"),
            ),
            _ => {}
        }
        let needs_ca = if client_auth.is_empty() {
            port.enabled().then(|| format!("is required with {cert}: members verify each other's certificates against this CA bundle (mutual TLS)"))
        } else if port.client_cert_auth {
            Some(format!("is required with {client_auth}: it is the CA bundle client certificates must chain to"))
        } else if cert.starts_with("tls.admin") && port.enabled() {
            Some(format!("is required with {cert}: members verify each other's admin certificates against it"))
        } else {
            None
        };
        if let (None, Some(message)) = (&port.ca_file, needs_ca) {
            blame(ca, message);
        }
        if port.client_cert_auth && !port.enabled() {
            blame(client_auth, format!("needs TLS on the port: set {cert} and {key}"));
        }
        for (path, key_name) in [(&port.cert_file, cert), (&port.key_file, key), (&port.ca_file, ca)] {
            let Some(path) = path else { continue };
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() => {}
                Ok(_) => blame(key_name, format!("{} is not a file", path.display())),
                Err(e) => blame(
                    key_name,
                    format!("cannot read {}: {e} (`lockstep certs init --dir DIR` writes a CA, member and client certificates)", path.display()),
                ),
            }
        }
    }
}

/// A string as a double-quoted YAML scalar.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Splits a sentence into lines of at most `width` characters (at spaces).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The key table of `docs/config.md`, generated from [`KEYS`]: a unit test
/// checks that the file holds exactly this between its `<!-- keys:begin -->` and
/// `<!-- keys:end -->` markers.
pub fn docs_key_table() -> String {
    let mut out = String::from("| Key | Environment variable | Default | Accepted values | Meaning |\n");
    out.push_str("|---|---|---|---|---|\n");
    let cell = |s: &str| s.replace('|', "\\|");
    for spec in KEYS {
        let default = match (spec.default, spec.kind) {
            (DefaultValue::Value, Kind::Size { .. }) => {
                let mut unset = MemberConfig::unset();
                match keys::read(&mut unset, spec) {
                    Value::U64(v) => format!("`{}`", human_size(v)),
                    other => format!("`{}`", keys::render_plain(&other)),
                }
            }
            (DefaultValue::Value, _) => match keys::read(&mut MemberConfig::unset(), spec) {
                Value::OptStr(None) | Value::OptPath(None) => "not set".into(),
                _ => format!("`{}`", spec.default_text()),
            },
            (DefaultValue::Derived(rule), _) => rule.into(),
            (DefaultValue::Required, _) => "required".into(),
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            spec.path,
            spec.env_var(),
            cell(&default),
            cell(&spec.accepted()),
            cell(spec.meaning)
        ));
    }
    out
}
