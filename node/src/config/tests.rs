//! Unit tests of the member configuration: every error path with its exact message.
#![allow(clippy::unwrap_used)]

use super::*;

/// A valid file: one member listed, everything else default.
const MINIMAL: &str = "\
member_id: 1
data_dir: /var/lib/lockstep
cluster:
  initial_members:
    - {id: 1, peer: \"127.0.0.1:2380\", client: \"http://127.0.0.1:2379\", admin: \"http://127.0.0.1:8080\"}
";

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Loads `yaml` from a file named `config.yaml`; errors come back as their
/// `Display` text with the temporary directory taken out of the path.
fn load(yaml: &str, env: &[(&str, &str)], flags: &[(&str, &str)]) -> Result<MemberConfig, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    MemberConfig::load(Some(&path), &pairs(env), &pairs(flags))
        .map_err(|e| e.to_string().replace(&format!("{}/", dir.path().display()), ""))
}

fn load_ok(yaml: &str) -> MemberConfig {
    load(yaml, &[], &[]).unwrap()
}

fn load_err(yaml: &str) -> String {
    load(yaml, &[], &[]).unwrap_err()
}

/// MINIMAL plus `extra` lines (top-level keys or whole sections).
fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

#[test]
fn minimal_file_gets_the_defaults() {
    let c = load_ok(MINIMAL);
    assert_eq!(c.name, "member-1");
    assert_eq!(c.member_id, 1);
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/lockstep"));
    assert_eq!(c.cluster.token, "lockstep");
    assert_eq!(
        c.cluster.initial_members,
        vec![InitialMember {
            id: 1,
            peer: "127.0.0.1:2380".into(),
            client: "http://127.0.0.1:2379".into(),
            admin: "http://127.0.0.1:8080".into()
        }]
    );
    assert_eq!(c.cluster.join, None);
    assert_eq!(c.listen.client.to_string(), "127.0.0.1:2379");
    assert_eq!(c.listen.peer.to_string(), "127.0.0.1:2380");
    assert_eq!(c.listen.admin.to_string(), "127.0.0.1:8080");
    assert_eq!(c.advertise_client(), "http://127.0.0.1:2379");
    assert_eq!(c.advertise_peer(), "127.0.0.1:2380");
    assert_eq!(c.advertise_admin(), "http://127.0.0.1:8080");
    assert_eq!(
        c.raft,
        RaftSection {
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            pre_vote: true,
            check_quorum: true,
            lease_reads: false,
            snapshot_threshold_entries: 100_000,
            compaction_lag_entries: 1000,
            max_inflight_msgs: 64,
            max_append_bytes: 1 << 20,
            request_timeout_ms: 10_000,
            max_pending_requests: 10_000,
        }
    );
    assert_eq!(
        c.kv,
        KvSection { max_txn_ops: 128, max_request_bytes: 1_572_864, quota_backend_bytes: 8 << 30, lease_ttl_min_s: 2 }
    );
    assert_eq!(c.wal, WalSection { segment_size_bytes: 64 << 20, preallocate: true, block_size: 4096 });
    assert_eq!(
        c.transport,
        TransportSection {
            max_frame_bytes: 64 << 20,
            peer_queue_messages: 4096,
            reconnect_backoff_min_ms: 50,
            reconnect_backoff_max_ms: 2000,
            dial_timeout_ms: 1000
        }
    );
    assert_eq!(
        c.grpc,
        GrpcSection { max_concurrent_streams: 1000, keepalive_interval_ms: 7_200_000, keepalive_timeout_ms: 20_000 }
    );
    assert_eq!(c.log, LogSection { level: "info".into(), format: LogFormat::Human });
}

const FULL: &str = "\
# every key, none at its default
name: alpha
member_id: 7
data_dir: \"/data/lockstep 7\"
cluster:
  token: prod-east
  initial_members:
    - id: 7
      peer: node7.example.com:12380
      client: https://node7.example.com:12379
      admin: http://node7.example.com:18080/
    - {id: 8, peer: \"[fd00::8]:12380\", client: \"http://[fd00::8]:12379\", admin: \"http://[fd00::8]:18080\"}
  join:
listen:
  client: 0.0.0.0:12379
  peer: \"[::]:12380\"
  admin: 10.1.2.3:18080
advertise:
  client: https://node7.example.com:12379
  peer: node7.example.com:12380
  admin: ~
raft:
  heartbeat_interval_ms: 50
  election_timeout_ms: 500
  pre_vote: false
  check_quorum: false
  lease_reads: true
  snapshot_threshold_entries: 5
  compaction_lag_entries: 0
  max_inflight_msgs: 4096
  max_append_bytes: 512KiB
  request_timeout_ms: 2500
  max_pending_requests: 77
kv:
  max_txn_ops: 100000
  max_request_bytes: 2MiB
  quota_backend_bytes: 0
  lease_ttl_min_s: 5
wal:
  segment_size_bytes: 1GiB
  preallocate: false
  block_size: 512
transport:
  max_frame_bytes: 2.5 MiB
  peer_queue_messages: 1
  reconnect_backoff_min_ms: 10
  reconnect_backoff_max_ms: 10
  dial_timeout_ms: 60000
grpc:
  max_concurrent_streams: 4294967295
  keepalive_interval_ms: 1000
  keepalive_timeout_ms: 600000
log:
  level: warn,lockstep_core::raft=trace
  format: json
";

#[test]
fn every_key_is_read_from_the_file() {
    let c = load_ok(FULL);
    assert_eq!(c.name, "alpha");
    assert_eq!(c.member_id, 7);
    assert_eq!(c.data_dir, PathBuf::from("/data/lockstep 7"));
    assert_eq!(c.cluster.token, "prod-east");
    assert_eq!(c.cluster.initial_members.len(), 2);
    assert_eq!(c.cluster.initial_members[0].admin, "http://node7.example.com:18080/");
    assert_eq!(c.cluster.initial_members[1].peer, "[fd00::8]:12380");
    assert_eq!(c.cluster.join, None);
    assert_eq!(c.listen.client.to_string(), "0.0.0.0:12379");
    assert_eq!(c.listen.peer.to_string(), "[::]:12380");
    assert_eq!(c.advertise.client.as_deref(), Some("https://node7.example.com:12379"));
    assert_eq!(c.advertise_peer(), "node7.example.com:12380");
    assert_eq!(c.advertise.admin, None);
    assert_eq!(c.advertise_admin(), "http://10.1.2.3:18080");
    assert_eq!(
        c.raft,
        RaftSection {
            heartbeat_interval_ms: 50,
            election_timeout_ms: 500,
            pre_vote: false,
            check_quorum: false,
            lease_reads: true,
            snapshot_threshold_entries: 5,
            compaction_lag_entries: 0,
            max_inflight_msgs: 4096,
            max_append_bytes: 512 << 10,
            request_timeout_ms: 2500,
            max_pending_requests: 77,
        }
    );
    assert_eq!(
        c.kv,
        KvSection { max_txn_ops: 100_000, max_request_bytes: 2 << 20, quota_backend_bytes: 0, lease_ttl_min_s: 5 }
    );
    assert_eq!(c.wal, WalSection { segment_size_bytes: 1 << 30, preallocate: false, block_size: 512 });
    assert_eq!(
        c.transport,
        TransportSection {
            max_frame_bytes: (2 << 20) + (512 << 10),
            peer_queue_messages: 1,
            reconnect_backoff_min_ms: 10,
            reconnect_backoff_max_ms: 10,
            dial_timeout_ms: 60_000
        }
    );
    assert_eq!(
        c.grpc,
        GrpcSection {
            max_concurrent_streams: u64::from(u32::MAX),
            keepalive_interval_ms: 1000,
            keepalive_timeout_ms: 600_000
        }
    );
    assert_eq!(c.log, LogSection { level: "warn,lockstep_core::raft=trace".into(), format: LogFormat::Json });
}

#[test]
fn core_configs_carry_the_values() {
    let c = load_ok(FULL);
    let raft = c.raft_config();
    assert_eq!((raft.id, raft.group, raft.seed), (7, RAFT_GROUP, 7));
    assert_eq!((raft.heartbeat_interval_ms, raft.election_timeout_ms), (50, 500));
    assert_eq!((raft.pre_vote, raft.check_quorum, raft.lease_reads), (false, false, true));
    assert_eq!((raft.snapshot_threshold_entries, raft.compaction_lag_entries), (5, 0));
    assert_eq!((raft.inflight_msgs_max, raft.append_bytes_max), (4096, 512 << 10));
    assert_eq!((raft.request_timeout_ms, raft.pending_requests_max), (2500, 77));
    assert_eq!(raft.proposal_bytes_max, 2 << 20);
    raft.validate().unwrap();

    let kv = c.kv_config();
    assert_eq!((kv.txn_ops_max, kv.request_bytes_max, kv.lease_ttl_min_s), (100_000, 2 << 20, 5));
    assert_eq!(kv.quota_bytes, QUOTA_BACKEND_BYTES_DEFAULT, "0 stands for the default quota");
    assert_eq!(kv.txn_depth_max, lockstep_core::kv::KvConfig::default().txn_depth_max);

    let wal = c.wal_config();
    assert_eq!((wal.segment_size_max, wal.preallocate, wal.block_size), (1 << 30, false, 512));

    // The defaults map to core's own defaults, but for the snapshot
    // threshold: etcd's 100,000 for a member, core's 10,000 in the simulator.
    let d = load_ok(MINIMAL);
    let core =
        lockstep_core::Config { snapshot_threshold_entries: 100_000, ..lockstep_core::Config::new(1, RAFT_GROUP, 1) };
    let mapped = d.raft_config();
    assert_eq!(format!("{mapped:?}"), format!("{core:?}"));
    assert_eq!(d.kv_config(), lockstep_core::kv::KvConfig::default());
    assert_eq!(d.wal_config(), lockstep_core::wal::WalConfig::default());
}

#[test]
fn cluster_id_is_stable_and_depends_on_token_ids_and_peers() {
    let c = load_ok(MINIMAL);
    // A golden value: changing the derivation would split existing clusters.
    assert_eq!(format!("{:016x}", c.cluster_id()), "ae3535ac5b735d81");
    let mut other = c.clone();
    other.cluster.token = "other".into();
    assert_ne!(other.cluster_id(), c.cluster_id());
    let mut other = c.clone();
    other.cluster.initial_members[0].peer = "10.0.0.9:2380".into();
    assert_ne!(other.cluster_id(), c.cluster_id());
    let mut other = c.clone();
    other.cluster.initial_members[0].client = "http://elsewhere:1".into();
    other.listen.client = "127.0.0.1:1".parse().unwrap();
    assert_eq!(other.cluster_id(), c.cluster_id(), "client and admin URLs may change");

    // Every member of a cluster computes the same id, whatever the list order.
    let three = "cluster:\n  initial_members:\n    - {id: 2, peer: \"b:2380\", client: \"http://b:2379\", admin: \"http://b:8080\"}\n    - {id: 1, peer: \"a:2380\", client: \"http://a:2379\", admin: \"http://a:8080\"}\n";
    let a = load_ok(&format!("member_id: 1\ndata_dir: /d\nadvertise:\n  peer: a:2380\n{three}"));
    let b = load_ok(&format!("member_id: 2\ndata_dir: /d\nadvertise:\n  peer: b:2380\n{three}"));
    let mut reversed = b.clone();
    reversed.cluster.initial_members.reverse();
    assert_eq!(a.cluster_id(), b.cluster_id());
    assert_eq!(a.cluster_id(), reversed.cluster_id());
}

#[test]
fn layers_override_in_order_file_env_flags() {
    let yaml = with("raft:\n  heartbeat_interval_ms: 150\n  election_timeout_ms: 2000\n");
    let c = load(&yaml, &[], &[]).unwrap();
    assert_eq!(c.raft.heartbeat_interval_ms, 150);
    let env = [("LOCKSTEP_RAFT_HEARTBEAT_INTERVAL_MS", "200"), ("LOCKSTEP_NAME", "null"), ("PATH", "/bin")];
    let c = load(&yaml, &env, &[]).unwrap();
    assert_eq!(c.raft.heartbeat_interval_ms, 200);
    assert_eq!(c.name, "null", "environment values are not YAML");
    let c = load(&yaml, &env, &[("raft.heartbeat_interval_ms", "250")]).unwrap();
    assert_eq!(c.raft.heartbeat_interval_ms, 250);
    assert_eq!(c.raft.election_timeout_ms, 2000);

    // Later flags win over earlier ones.
    let c = load(MINIMAL, &[], &[("log.level", "debug"), ("log.level", "trace")]).unwrap();
    assert_eq!(c.log.level, "trace");

    // Non-key LOCKSTEP_ variables are left alone.
    let c = load(MINIMAL, &[("LOCKSTEP_CONFIG", "/etc/x.yaml"), ("LOCKSTEP_GIT_COMMIT", "abc")], &[]).unwrap();
    assert_eq!(c.member_id, 1);

    // An empty variable unsets an optional key.
    let yaml = with("advertise:\n  client: http://a.example:2379\n");
    assert_eq!(load(&yaml, &[], &[]).unwrap().advertise.client.as_deref(), Some("http://a.example:2379"));
    assert_eq!(load(&yaml, &[("LOCKSTEP_ADVERTISE_CLIENT", "")], &[]).unwrap().advertise.client, None);
}

#[test]
fn no_file_at_all_env_and_flags_only() {
    let env = pairs(&[
        ("LOCKSTEP_MEMBER_ID", "3"),
        ("LOCKSTEP_DATA_DIR", "/d3"),
        ("LOCKSTEP_ADVERTISE_PEER", "c:2380"),
        (
            "LOCKSTEP_CLUSTER_INITIAL_MEMBERS",
            "[{id: 3, peer: \"c:2380\", client: \"http://c:2379\", admin: \"http://c:8080\"}]",
        ),
    ]);
    let c = MemberConfig::load(None, &env, &pairs(&[("name", "gamma")])).unwrap();
    assert_eq!((c.member_id, c.name.as_str()), (3, "gamma"));
    assert_eq!(c.cluster.initial_members[0].peer, "c:2380");

    let err = MemberConfig::load(None, &[], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required key `member_id` (no config file; set it with LOCKSTEP_MEMBER_ID or --set member_id=...)\n\
         missing required key `data_dir` (no config file; set it with LOCKSTEP_DATA_DIR or --set data_dir=...)"
    );
}

#[test]
fn missing_required_keys_name_the_file() {
    assert_eq!(
        load_err("cluster:\n  token: x\n"),
        "config.yaml: missing required key `member_id` (set it in the file, with LOCKSTEP_MEMBER_ID, or with --set member_id=...)\n\
         config.yaml: missing required key `data_dir` (set it in the file, with LOCKSTEP_DATA_DIR, or with --set data_dir=...)"
    );
    // An empty file, or one of only comments, is an empty configuration.
    assert!(load_err("").starts_with("config.yaml: missing required key `member_id`"));
    assert!(load_err("# nothing\n").starts_with("config.yaml: missing required key `member_id`"));
}

#[test]
fn unknown_keys_name_file_line_and_a_suggestion() {
    assert_eq!(
        load_err(&with("raft:\n  pre_vote: true\n  heartbeat_ms: 100\n")),
        "config.yaml:8: unknown key `raft.heartbeat_ms` (did you mean `raft.heartbeat_interval_ms`?)"
    );
    assert_eq!(
        load_err(&with("election_timeout_ms: 100\n")),
        "config.yaml:6: unknown key `election_timeout_ms` (did you mean `raft.election_timeout_ms`?)"
    );
    assert_eq!(load_err(&with("storage:\n  engine: rocksdb\n")), "config.yaml:6: unknown key `storage`");
    assert_eq!(
        load_err(&with("raft.pre_vote: false\n")),
        "config.yaml:6: unknown key `raft.pre_vote`: in the file, keys are nested: `raft:`, then `pre_vote: ...` indented below it"
    );
    assert_eq!(
        load_err(&with("raft:\n  prevote: true\nkv:\n  max_txn_op: 5\n")),
        "config.yaml:7: unknown key `raft.prevote` (did you mean `raft.pre_vote`?)\n\
         config.yaml:9: unknown key `kv.max_txn_op` (did you mean `kv.max_txn_ops`?)"
    );
}

#[test]
fn bad_values_name_file_line_key_value_and_range() {
    assert_eq!(
        load_err(&with("raft:\n  heartbeat_interval_ms: 10\n  election_timeout_ms: 5\n")),
        "config.yaml:8: raft.election_timeout_ms = 5: must be between 20 and 60000, and at least 2 × raft.heartbeat_interval_ms"
    );
    assert_eq!(
        load_err(&with("raft:\n  heartbeat_interval_ms: fast\n")),
        "config.yaml:7: raft.heartbeat_interval_ms = fast: not an integer; must be between 10 and 10000"
    );
    assert_eq!(
        load_err(&with("raft:\n  heartbeat_interval_ms: -5\n")),
        "config.yaml:7: raft.heartbeat_interval_ms = -5: not an integer; must be between 10 and 10000"
    );
    assert_eq!(
        load_err(&with("raft:\n  pre_vote: yes\n")),
        "config.yaml:7: raft.pre_vote = yes: must be true or false"
    );
    assert_eq!(
        load_err(&with("raft:\n  pre_vote:\n")),
        "config.yaml:7: raft.pre_vote: no value; must be true or false"
    );
    assert_eq!(
        load_err(&with("raft:\n  pre_vote: [true]\n")),
        "config.yaml:7: raft.pre_vote: a list, but must be true or false"
    );
    assert_eq!(
        load_err("member_id: 0\ndata_dir: /d\n"),
        "config.yaml:1: member_id = 0: must be between 1 and 9223372036854775807"
    );
    assert_eq!(load_err("member_id: 1\ndata_dir: \"\"\n"), "config.yaml:2: data_dir = : must be a non-empty path");
    assert_eq!(load_err(&with("name: \"  \"\n")), "config.yaml:6: name =   : must be a non-empty string");
    assert_eq!(
        load_err(&with("listen:\n  client: localhost:2379\n")),
        "config.yaml:7: listen.client = localhost:2379: must be IP:PORT, like 127.0.0.1:2379 or [::]:2379"
    );
    assert_eq!(
        load_err(&with("advertise:\n  peer: http://a:2380\n")),
        "config.yaml:7: advertise.peer = http://a:2380: must be HOST:PORT, like 10.0.0.1:2380 or node1.example.com:2380"
    );
    assert_eq!(
        load_err(&with("cluster:\n  join: a:8080\n")),
        "config.yaml:6: duplicate key `cluster` (first at line 3)"
    );
    assert_eq!(
        load_err(&with("advertise:\n  client: ftp://a:21\n")),
        "config.yaml:7: advertise.client = ftp://a:21: must be a URL http://HOST:PORT or https://HOST:PORT"
    );
    assert_eq!(
        load_err(&with("log:\n  level: loud\n  format: xml\n")),
        "config.yaml:7: log.level = loud: must be off, error, warn, info, debug, trace, or a filter like info,lockstep_core::raft=debug\n\
         config.yaml:8: log.format = xml: must be human or json"
    );
    assert_eq!(
        load_err(&with("wal:\n  block_size: 3000\n")),
        "config.yaml:7: wal.block_size = 3000: must be a power of two between 512 and 65536"
    );
    assert_eq!(
        load_err(&with("kv:\n  max_request_bytes: 1.5GB\n")),
        "config.yaml:7: kv.max_request_bytes = 1.5GB: not a size; must be between 1KiB and 64MiB (bytes, or a number with a unit: KiB, MiB, GiB, TiB)"
    );
    assert_eq!(
        load_err(&with("kv:\n  max_request_bytes: 128MiB\n")),
        "config.yaml:7: kv.max_request_bytes = 128MiB: must be between 1KiB and 64MiB (bytes, or a number with a unit: KiB, MiB, GiB, TiB)"
    );
    assert_eq!(
        load_err(&with("kv:\n  max_request_bytes: 0.3KiB\n")),
        "config.yaml:7: kv.max_request_bytes = 0.3KiB: not a whole number of bytes; must be between 1KiB and 64MiB (bytes, or a number with a unit: KiB, MiB, GiB, TiB)"
    );
}

#[test]
fn relations_between_keys_blame_the_key_set_last() {
    assert_eq!(
        load_err(&with("raft:\n  election_timeout_ms: 150\n")),
        "config.yaml:7: raft.election_timeout_ms = 150: must be at least 2 × raft.heartbeat_interval_ms (2 × 100 = 200)"
    );
    assert_eq!(
        load(&with("raft:\n  election_timeout_ms: 1000\n"), &[("LOCKSTEP_RAFT_HEARTBEAT_INTERVAL_MS", "600")], &[])
            .unwrap_err(),
        "LOCKSTEP_RAFT_HEARTBEAT_INTERVAL_MS=600: must be at most raft.election_timeout_ms / 2 (1000 / 2 = 500)"
    );
    assert_eq!(
        load(MINIMAL, &[], &[("raft.heartbeat_interval_ms", "600")]).unwrap_err(),
        "--set raft.heartbeat_interval_ms=600: must be at most raft.election_timeout_ms / 2 (1000 / 2 = 500)"
    );
    // Unset, the minimum lease TTL follows the election timeout; set, it is checked.
    let c = load_ok(&with("raft:\n  heartbeat_interval_ms: 1000\n  election_timeout_ms: 10000\n"));
    assert_eq!(c.kv.lease_ttl_min_s, 15);
    assert_eq!(
        load(&with("kv:\n  lease_ttl_min_s: 2\n"), &[("LOCKSTEP_RAFT_ELECTION_TIMEOUT_MS", "10000")], &[]).unwrap_err(),
        "LOCKSTEP_RAFT_ELECTION_TIMEOUT_MS=10000: must be at most kv.lease_ttl_min_s / 1.5 = 1333 ms, so that a lease outlives an election"
    );
    assert_eq!(
        load_err(&with("raft:\n  heartbeat_interval_ms: 1000\n  election_timeout_ms: 10000\nkv:\n  lease_ttl_min_s: 14\n")),
        "config.yaml:10: kv.lease_ttl_min_s = 14: must be at least 1.5 × raft.election_timeout_ms = 15 s, so that a lease outlives an election"
    );
    assert_eq!(
        load_err(&with("transport:\n  reconnect_backoff_min_ms: 5000\n")),
        "config.yaml:7: transport.reconnect_backoff_min_ms = 5000: must be at most transport.reconnect_backoff_max_ms = 2000"
    );
    assert_eq!(
        load_err(&with("transport:\n  max_frame_bytes: 2MiB\n")),
        "config.yaml:7: transport.max_frame_bytes = 2MiB: must be at least raft.max_append_bytes + kv.max_request_bytes (1MiB + 1.5MiB = 2.5MiB)"
    );
    assert_eq!(
        load(&with("transport:\n  max_frame_bytes: 2MiB\n"), &[("LOCKSTEP_KV_MAX_REQUEST_BYTES", "4MiB")], &[]).unwrap_err(),
        "LOCKSTEP_KV_MAX_REQUEST_BYTES=4MiB: kv.max_request_bytes + raft.max_append_bytes must fit in transport.max_frame_bytes (1MiB + 4MiB > 2MiB)"
    );
    // Core's own check is the backstop: lease reads need an election timeout
    // above the clock drift they tolerate.
    assert_eq!(
        load_err(&with("raft:\n  lease_reads: true\n  heartbeat_interval_ms: 10\n  election_timeout_ms: 100\n")),
        "config.yaml: the raft settings do not fit together: clock_drift_max_ms must be below election_timeout_ms when lease_reads is on"
    );
}

#[test]
fn this_members_entry_must_match_its_advertised_peer_address() {
    let yaml = MINIMAL.replace("peer: \"127.0.0.1:2380\"", "peer: \"10.0.0.1:2380\"");
    assert_eq!(
        load_err(&yaml),
        "config.yaml:4: cluster.initial_members: lists this member (id 1) with peer 10.0.0.1:2380, but it advertises 127.0.0.1:2380 (advertise.peer, or listen.peer when that is unset): other members would dial the wrong address"
    );
    assert_eq!(
        load(MINIMAL, &[("LOCKSTEP_ADVERTISE_PEER", "10.0.0.1:2380")], &[]).unwrap_err(),
        "LOCKSTEP_ADVERTISE_PEER=10.0.0.1:2380: must be this member's peer address in cluster.initial_members (127.0.0.1:2380)"
    );
    let c = load(&yaml, &[("LOCKSTEP_ADVERTISE_PEER", "10.0.0.1:2380")], &[]).unwrap();
    assert_eq!(c.advertise_peer(), "10.0.0.1:2380");
}

#[test]
fn addresses_that_bind_everything_need_an_advertised_one() {
    assert_eq!(
        load_err(&with("listen:\n  peer: 0.0.0.0:2380\n")),
        "config.yaml:7: listen.peer = 0.0.0.0:2380: binds every address, so set advertise.peer to the one others reach (like advertise.peer: 10.0.0.1:2380)"
    );
    assert_eq!(
        load(MINIMAL, &[], &[("listen.client", "[::]:2379")]).unwrap_err(),
        "--set listen.client=[::]:2379: binds every address, so set advertise.client to the one others reach (like advertise.client: http://10.0.0.1:2379)"
    );
    let c = load(MINIMAL, &[], &[("listen.client", "[::]:2379"), ("advertise.client", "http://a:2379")]).unwrap();
    assert_eq!(c.advertise_client(), "http://a:2379");
}

#[test]
fn environment_errors_name_the_variable() {
    assert_eq!(
        load(MINIMAL, &[("LOCKSTEP_RAFT_HEARTBEAT_INTERVAL_MS", "abc")], &[]).unwrap_err(),
        "LOCKSTEP_RAFT_HEARTBEAT_INTERVAL_MS=abc: not an integer; must be between 10 and 10000"
    );
    assert_eq!(
        load(MINIMAL, &[("LOCKSTEP_RAFT_HEARTBEAT_MS", "100")], &[]).unwrap_err(),
        "LOCKSTEP_RAFT_HEARTBEAT_MS: unknown variable (did you mean LOCKSTEP_RAFT_HEARTBEAT_INTERVAL_MS?); every LOCKSTEP_* variable sets a config key, and docs/config.md lists them"
    );
    assert_eq!(
        load(MINIMAL, &[("LOCKSTEP_STORAGE", "x")], &[]).unwrap_err(),
        "LOCKSTEP_STORAGE: unknown variable; every LOCKSTEP_* variable sets a config key, and docs/config.md lists them"
    );
    assert_eq!(
        load(MINIMAL, &[("LOCKSTEP_MEMBER_ID", "")], &[]).unwrap_err(),
        "LOCKSTEP_MEMBER_ID=: not an integer; must be between 1 and 9223372036854775807"
    );
    // Several variables are reported in name order, whatever the process's order.
    assert_eq!(
        load(MINIMAL, &[("LOCKSTEP_WAL_PREALLOCATE", "no"), ("LOCKSTEP_KV_MAX_TXN_OPS", "0")], &[]).unwrap_err(),
        "LOCKSTEP_KV_MAX_TXN_OPS=0: must be between 1 and 100000\nLOCKSTEP_WAL_PREALLOCATE=no: must be true or false"
    );
}

#[test]
fn flag_errors_name_the_flag() {
    assert_eq!(
        load(MINIMAL, &[], &[("raft.election_timeout_ms", "1s")]).unwrap_err(),
        "--set raft.election_timeout_ms=1s: not an integer; must be between 20 and 60000, and at least 2 × raft.heartbeat_interval_ms"
    );
    assert_eq!(
        load(MINIMAL, &[], &[("raft.heartbeat", "1")]).unwrap_err(),
        "--set raft.heartbeat=1: unknown key `raft.heartbeat` (did you mean `raft.heartbeat_interval_ms`?)"
    );
    let err = parse_overrides(&["raft.pre_vote=false".into(), "raft.pre_vote".into(), "=1".into()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--set raft.pre_vote: expected KEY=VALUE, like --set raft.election_timeout_ms=2000\n\
         --set =1: expected KEY=VALUE, like --set raft.election_timeout_ms=2000"
    );
    assert_eq!(parse_overrides(&["log.level=a=b".into()]).unwrap(), vec![("log.level".to_string(), "a=b".to_string())]);
}

#[test]
fn yaml_structure_errors_have_lines() {
    assert_eq!(
        load_err("member_id: 1\ndata_dir: /d\nraft:\n  pre_vote: true\n bad_indent: 1\n"),
        "config.yaml:5: invalid YAML: while parsing a block mapping, did not find expected key"
    );
    assert_eq!(
        load_err("member_id: [1\n"),
        "config.yaml:2: invalid YAML: while parsing a flow sequence, expected ',' or ']'"
    );
    assert_eq!(
        load_err(&with("raft:\n  pre_vote: true\n  pre_vote: false\n")),
        "config.yaml:8: duplicate key `raft.pre_vote` (first at line 7)"
    );
    assert_eq!(load_err("- member_id: 1\n"), "config.yaml:1: the file must be a mapping of keys, like `member_id: 1`");
    assert_eq!(
        load_err(&with("raft: 5\n")),
        "config.yaml:6: `raft` must be a mapping of its keys (each on its own line, indented below `raft:`)"
    );
    assert_eq!(
        load_err("base: &b 1\nmember_id: *b\n"),
        "config.yaml:2: invalid config: YAML aliases (`*name`) are not supported"
    );
    assert_eq!(
        load_err("member_id: 1\n---\nmember_id: 2\n"),
        "config.yaml:3: invalid config: more than one YAML document (`---`) in the file"
    );
    assert_eq!(load_err("? [a]\n: 1\n"), "config.yaml:1: invalid config: a mapping key must be a plain name");
    assert_eq!(
        load_err("member_id: 1\ndata_dir: /d\nraft:\n\tpre_vote: true\n"),
        "config.yaml:4: invalid YAML: tabs disallowed within this context (block indentation)"
    );
    // A byte order mark and CRLF line ends are fine.
    let crlf = format!("\u{feff}{}", MINIMAL.replace('\n', "\r\n"));
    assert_eq!(load_ok(&crlf), load_ok(MINIMAL));
    // An empty section is allowed.
    assert_eq!(load_ok(&with("raft:\n")).raft.heartbeat_interval_ms, 100);
}

#[test]
fn initial_members_errors() {
    let head = "member_id: 1\ndata_dir: /d\ncluster:\n  initial_members:\n";
    let m1 = "    - {id: 1, peer: \"a:2380\", client: \"http://a:2379\", admin: \"http://a:8080\"}\n";
    assert_eq!(
        load_err(&format!("{head}{m1}    - id: 2\n      peer: b:2380\n      client: http://b:2379\n")),
        "config.yaml:6: cluster.initial_members[1]: missing `admin`; a member has id, peer, client and admin"
    );
    assert_eq!(
        load_err(&format!("{head}{m1}    - {{id: 2, peer: \"b\", client: \"http://b:2379\", admin: \"http://b:8080\", weight: 3}}\n")),
        "config.yaml:6: cluster.initial_members[1].peer = b: must be HOST:PORT, like 10.0.0.1:2380 or node1.example.com:2380\n\
         config.yaml:6: cluster.initial_members[1]: unknown key `weight`; a member has id, peer, client and admin"
    );
    assert_eq!(
        load_err(&format!(
            "{head}{m1}    - {{id: 1, peer: \"b:2380\", client: \"http://b:2379\", admin: \"http://b:8080\"}}\n"
        )),
        "config.yaml:6: cluster.initial_members[1].id = 1: member 1 is listed twice (also at [0])"
    );
    assert_eq!(
        load_err(&format!(
            "{head}{m1}    - {{id: 2, peer: \"a:2380\", client: \"http://b:2379\", admin: \"http://b:8080\"}}\n"
        )),
        "config.yaml:6: cluster.initial_members[1].peer = a:2380: also the peer address of member 1 (also at [0])"
    );
    assert_eq!(
        load_err(&format!("{head}    - {{id: 1, peer: \"a:2380\", client: \"http://a:2379\", adm: \"http://a:8080\"}}\n")),
        "config.yaml:5: cluster.initial_members[0]: unknown key `adm` (did you mean `admin`?); a member has id, peer, client and admin\n\
         config.yaml:5: cluster.initial_members[0]: missing `admin`; a member has id, peer, client and admin"
    );
    assert_eq!(
        load_err(&format!("{head}    - 1\n    - {{id: 0, peer: \"\", client: \"http://a:2379\", admin: \"http://a:8080\"}}\n")),
        "config.yaml:5: cluster.initial_members[0]: must be a mapping {id, peer, client, admin}\n\
         config.yaml:6: cluster.initial_members[1].id = 0: must be between 1 and 9223372036854775807\n\
         config.yaml:6: cluster.initial_members[1].peer: no value; must be HOST:PORT, like 10.0.0.1:2380 or node1.example.com:2380"
    );
    assert_eq!(
        load_err(&format!("{head}    - id: 1\n")),
        "config.yaml:5: cluster.initial_members[0]: missing `peer`, `client` and `admin`; a member has id, peer, client and admin"
    );
    assert_eq!(
        load_err("member_id: 1\ndata_dir: /d\ncluster:\n  initial_members: a:2380\n"),
        "config.yaml:4: cluster.initial_members = a:2380: must be a list of members, each {id, peer: HOST:PORT, client: URL, admin: URL}"
    );
    // Relations with member_id and cluster.join.
    assert_eq!(
        load_err("member_id: 1\ndata_dir: /d\n"),
        "config.yaml: cluster.initial_members: is empty: list the members that bootstrap the cluster, this one among them, or set cluster.join to join a running cluster"
    );
    assert_eq!(
        load_err(&format!("member_id: 2\ndata_dir: /d\ncluster:\n  initial_members:\n{m1}")),
        "config.yaml:4: cluster.initial_members: does not list this member (member_id = 2): add it, or set cluster.join to join a running cluster"
    );
    assert_eq!(
        load_err(&format!("{head}{m1}  join: http://b:8080\n")),
        "config.yaml:6: cluster.join = http://b:8080: a joining member must not be in cluster.initial_members, which lists member 1: remove cluster.join to bootstrap, or remove member 1 from the list to join"
    );
    let joiner = load_ok("member_id: 4\ndata_dir: /d\ncluster:\n  join: http://b:8080\n");
    assert_eq!(joiner.cluster.join.as_deref(), Some("http://b:8080"));
    assert!(joiner.cluster.initial_members.is_empty());
}

#[test]
fn initial_members_from_env_and_flags_are_yaml_flow_lists() {
    let list = "[{id: 1, peer: \"127.0.0.1:2380\", client: \"http://a:2379\", admin: \"http://a:8080\"}, {id: 2, peer: \"b:2380\", client: \"http://b:2379\", admin: \"http://b:8080\"}]";
    let c = load(MINIMAL, &[("LOCKSTEP_CLUSTER_INITIAL_MEMBERS", list)], &[]).unwrap();
    assert_eq!(c.cluster.initial_members.len(), 2);
    let c = load(MINIMAL, &[], &[("cluster.initial_members", list)]).unwrap();
    assert_eq!(c.cluster.initial_members[1].id, 2);
    assert_eq!(
        load(MINIMAL, &[("LOCKSTEP_CLUSTER_INITIAL_MEMBERS", "[{id: 1, peer: x}]")], &[]).unwrap_err(),
        "LOCKSTEP_CLUSTER_INITIAL_MEMBERS=[{id: 1, peer: x}]: cluster.initial_members[0].peer = x: must be HOST:PORT, like 10.0.0.1:2380 or node1.example.com:2380\n\
         LOCKSTEP_CLUSTER_INITIAL_MEMBERS=[{id: 1, peer: x}]: cluster.initial_members[0]: missing `client` and `admin`; a member has id, peer, client and admin"
    );
    assert_eq!(
        load(MINIMAL, &[], &[("cluster.initial_members", "[{id: 1")]).unwrap_err(),
        "--set cluster.initial_members=[{id: 1: invalid YAML: while parsing a flow mapping, did not find expected ',' or '}'; must be a list of members, each {id, peer: HOST:PORT, client: URL, admin: URL}"
    );
    assert_eq!(
        load(MINIMAL, &[("LOCKSTEP_CLUSTER_INITIAL_MEMBERS", "")], &[]).unwrap_err(),
        "LOCKSTEP_CLUSTER_INITIAL_MEMBERS: is empty: list the members that bootstrap the cluster, this one among them, or set cluster.join to join a running cluster"
    );
}

#[test]
fn sizes_with_units() {
    use keys::parse_size;
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    assert_eq!(parse_size("1MiB"), Ok(1 << 20));
    assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
    assert_eq!(parse_size("1.5MiB"), Ok(1_572_864));
    assert_eq!(parse_size("8GiB"), Ok(8 << 30));
    assert_eq!(parse_size("2TiB"), Ok(2 << 40));
    assert_eq!(parse_size("64KiB"), Ok(64 << 10));
    assert_eq!(parse_size("512B"), Ok(512));
    assert_eq!(parse_size("0.5KiB"), Ok(512));
    assert_eq!(parse_size("0.3KiB"), Err("not a whole number of bytes"));
    for bad in ["", "MiB", "1.MiB", ".5MiB", "1MB", "1 mib", "-1", "1e6", "1.2.3KiB", "99999999999999999999"] {
        assert!(parse_size(bad).is_err(), "{bad:?}");
    }
    assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    assert_eq!(parse_size("16777216TiB"), Err("too large"));
    assert_eq!(human_size(1_572_864), "1.5MiB");
    assert_eq!(human_size(64 << 20), "64MiB");
    assert_eq!(human_size(8 << 30), "8GiB");
    assert_eq!(human_size(4096), "4KiB");
    assert_eq!(human_size(1000), "1000");
    assert_eq!(human_size(0), "0");
}

#[test]
fn log_filters() {
    use keys::check_log_filter;
    for good in ["info", "WARN", "off", "lockstep_core=debug", "info,lockstep_core::raft=trace", "h2[conn]=debug"] {
        assert_eq!(check_log_filter(good), Ok(()), "{good}");
    }
    for bad in ["", "loud", "lockstep", "a=loud", "=debug", "info,,debug", "a b=info", "info,"] {
        assert_eq!(check_log_filter(bad), Err(()), "{bad}");
    }
}

#[test]
fn addresses() {
    use keys::{check_host_port, check_url};
    for good in ["a:1", "10.0.0.1:2380", "node-1.example.com:65535", "[::1]:2380", "[fd00::8]:1"] {
        assert_eq!(check_host_port(good), Ok(()), "{good}");
    }
    for bad in ["a", ":2380", "a:0", "a:65536", "a:b", "::1:2380", "[::1]", "-a:1", "a b:1", "http://a:1"] {
        assert_eq!(check_host_port(bad), Err(()), "{bad}");
    }
    for good in ["http://a:1", "https://a:1", "http://a:1/", "http://[::1]:8080"] {
        assert_eq!(check_url(good), Ok(()), "{good}");
    }
    for bad in ["a:1", "http://a", "http://a:1/v3", "tcp://a:1", "http://"] {
        assert_eq!(check_url(bad), Err(()), "{bad}");
    }
}

#[test]
fn to_yaml_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("member.yaml");
    let single = MemberConfig::single(1, PathBuf::from("/var/lib/lockstep"));
    for config in [single.clone(), load_ok(FULL), {
        let mut c = load_ok("member_id: 4\ndata_dir: /d\ncluster:\n  join: http://b:8080\n");
        c.name = "quote \" back\\slash # hash: colon\ttab".into();
        c.cluster.token = "null".into();
        c.log.level = "debug".into();
        c
    }] {
        let text = config.to_yaml();
        std::fs::write(&path, &text).unwrap();
        let back = MemberConfig::load(Some(&path), &[], &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, config, "{text}");
    }
    // The default file is complete: every key appears, set or commented out.
    let text = single.to_yaml();
    for spec in KEYS {
        let leaf = spec.path.rsplit('.').next().unwrap();
        assert!(text.contains(&format!("{leaf}:")), "{} missing from\n{text}", spec.path);
    }
    assert_eq!(single.name, "member-1");
    assert_eq!(single.cluster.initial_members[0].peer, "127.0.0.1:2380");
}

#[test]
fn registry_is_consistent() {
    let mut env_names = std::collections::BTreeSet::new();
    let mut paths = std::collections::BTreeSet::new();
    for spec in KEYS {
        assert!(paths.insert(spec.path), "{} twice", spec.path);
        assert!(env_names.insert(spec.env_var()), "{} shares its env var", spec.path);
        assert!(!ENV_NOT_KEYS.contains(&spec.env_var().as_str()));
        assert_eq!(find_env(&spec.env_var()).map(|k| k.path), Some(spec.path));
        assert!(!spec.meaning.is_empty() && spec.meaning.ends_with('.'), "{}", spec.path);
        // Reading and writing each key's field agrees with its kind.
        let mut c = MemberConfig::unset();
        let value = keys::read(&mut c, spec);
        keys::write(&mut c, spec, value);
        assert_eq!(c, MemberConfig::unset());
        // Each default lies in its own range.
        if let (DefaultValue::Value, Kind::Int { min, max } | Kind::Size { min, max } | Kind::PowerOfTwo { min, max }) =
            (spec.default, spec.kind)
        {
            let Value::U64(v) = keys::read(&mut MemberConfig::unset(), spec) else { panic!("{}", spec.path) };
            assert!((min..=max).contains(&v), "{} default {v} outside {min}..={max}", spec.path);
        }
    }
    assert_eq!(env_var_of("raft.heartbeat_interval_ms"), "LOCKSTEP_RAFT_HEARTBEAT_INTERVAL_MS");
    assert_eq!(find("raft.election_timeout_ms").unwrap().default_text(), "1000");
    assert!(find("raft").is_none());
    assert!(keys::is_section("raft") && !keys::is_section("ra") && !keys::is_section("member_id"));
}

/// `docs/config.md` holds exactly the table the registry generates. To update the
/// file after changing a key, run this test with `UPDATE_DOCS=1`.
#[test]
fn docs_key_table_matches_the_registry() {
    const BEGIN: &str = "<!-- keys:begin -->\n";
    const END: &str = "<!-- keys:end -->";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(BEGIN).expect("docs/config.md has a <!-- keys:begin --> line") + BEGIN.len();
    let end = text.find(END).expect("docs/config.md has a <!-- keys:end --> line");
    let table = docs_key_table();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{table}{}", &text[..start], &text[end..])).unwrap();
        return;
    }
    assert!(
        text[start..end] == table,
        "docs/config.md's key table is out of date; run `UPDATE_DOCS=1 cargo test -p lockstep docs_key_table` \
         (or paste the table below between the markers):\n{table}"
    );
}

/// The example in `docs/config.md` is a valid file, and the `config check` line the
/// docs show for it has its real cluster id.
#[test]
fn docs_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let example = &text[text.find("## Example").unwrap()..];
    let start = example.find("```yaml\n").unwrap() + "```yaml\n".len();
    let yaml = &example[start..start + example[start..].find("```").unwrap()];
    let c = load(yaml, &[], &[]).unwrap();
    assert_eq!((c.member_id, c.cluster.initial_members.len(), c.name.as_str()), (1, 3, "meta-1"));
    let line = format!("member.yaml: ok (member 1 of cluster {:016x}, 3 initial members)", c.cluster_id());
    assert!(text.contains(&line), "docs/config.md should show `{line}`");
    // The other members of the example differ only in their own keys.
    let env = [("LOCKSTEP_MEMBER_ID", "2"), ("LOCKSTEP_ADVERTISE_PEER", "10.0.0.2:2380")];
    assert_eq!(load(yaml, &env, &[]).unwrap().cluster_id(), c.cluster_id());
}

#[test]
fn unreadable_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.yaml");
    let err = MemberConfig::load(Some(&path), &[], &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.problems().is_empty());
    assert_eq!(err.to_string(), format!("cannot read {}: No such file or directory (os error 2)", path.display()));
    // A directory is not a file either.
    let err = MemberConfig::load(Some(dir.path()), &[], &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

#[test]
fn problems_render_their_origin() {
    let problem = |origin, key: Option<&str>, value: Option<&str>| Problem {
        origin,
        file: Some(PathBuf::from("m.yaml")),
        key: key.map(str::to_string),
        value: value.map(str::to_string),
        message: "msg".into(),
    };
    let file = || Some(Origin::File { path: PathBuf::from("m.yaml"), line: 3 });
    let env = || Some(Origin::Env { var: "LOCKSTEP_K".into() });
    assert_eq!(problem(file(), Some("k"), Some("v")).to_string(), "m.yaml:3: k = v: msg");
    assert_eq!(problem(file(), Some("k"), None).to_string(), "m.yaml:3: msg");
    assert_eq!(problem(env(), Some("k"), Some("v")).to_string(), "LOCKSTEP_K=v: msg");
    assert_eq!(problem(env(), Some("k"), None).to_string(), "LOCKSTEP_K: msg");
    assert_eq!(problem(Some(Origin::Flag), Some("k"), Some("v")).to_string(), "--set k=v: msg");
    assert_eq!(problem(Some(Origin::Flag), Some("k"), None).to_string(), "--set k: msg");
    assert_eq!(problem(Some(Origin::Default), Some("k"), Some("v")).to_string(), "k = v (default): msg");
    assert_eq!(problem(None, Some("k"), None).to_string(), "m.yaml: msg");
    assert_eq!(Problem { file: None, ..problem(None, None, None) }.to_string(), "msg");
}

/// Every key can be set from the environment and from flags: FULL's values,
/// given as variables (or as flags) without any file, load to the same config.
#[test]
fn every_key_can_be_set_by_env_and_by_flag() {
    let full = load_ok(FULL);
    let texts: Vec<(&KeySpec, String)> = KEYS
        .iter()
        .map(|spec| {
            let text = match keys::read(&mut full.clone(), spec) {
                Value::OptStr(None) | Value::OptPath(None) => String::new(),
                Value::Members(members) => {
                    let items: Vec<String> = members
                        .iter()
                        .map(|m| {
                            format!(
                                "{{id: {}, peer: {:?}, client: {:?}, admin: {:?}}}",
                                m.id, m.peer, m.client, m.admin
                            )
                        })
                        .collect();
                    format!("[{}]", items.join(", "))
                }
                value => keys::render_plain(&value),
            };
            (spec, text)
        })
        .collect();
    let env: Vec<(String, String)> = texts.iter().map(|(spec, text)| (spec.env_var(), text.clone())).collect();
    assert_eq!(MemberConfig::load(None, &env, &[]).unwrap(), full);
    let flags: Vec<(String, String)> = texts.iter().map(|(spec, text)| (spec.path.to_string(), text.clone())).collect();
    assert_eq!(MemberConfig::load(None, &[], &flags).unwrap(), full);
}

#[test]
fn set_flag_texts_report_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, MINIMAL).unwrap();
    let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let c = MemberConfig::load_with_set_flags(Some(&path), &[], &flags(&["name=x", "log.level=debug"])).unwrap();
    assert_eq!((c.name.as_str(), c.log.level.as_str()), ("x", "debug"));
    let err = MemberConfig::load_with_set_flags(Some(&path), &[("LOCKSTEP_NAME".into(), "".into())], &flags(&["oops"]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "LOCKSTEP_NAME=: must be a non-empty string\n--set oops: expected KEY=VALUE, like --set raft.election_timeout_ms=2000"
    );
    let err = MemberConfig::load_with_set_flags(Some(&path), &[], &flags(&["oops"])).unwrap_err();
    assert_eq!(err.to_string(), "--set oops: expected KEY=VALUE, like --set raft.election_timeout_ms=2000");
    let missing = dir.path().join("missing.yaml");
    let err = MemberConfig::load_with_set_flags(Some(&missing), &[], &flags(&["oops"])).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
}

/// A directory with a certificate, a key and a CA bundle file (the contents do
/// not matter to validation, which checks that the files are there).
fn tls_files() -> (tempfile::TempDir, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, "pem").unwrap();
        p.display().to_string()
    };
    let (cert, key, ca) = (path("m.crt"), path("m.key"), path("ca.crt"));
    (dir, cert, key, ca)
}

#[test]
fn tls_sections_are_read_and_turn_https_on() {
    let (_dir, cert, key, ca) = tls_files();
    let yaml = with(&format!(
        "tls:\n  client:\n    cert_file: {cert}\n    key_file: {key}\n    ca_file: {ca}\n    client_cert_auth: true\n  \
         peer:\n    cert_file: {cert}\n    key_file: {key}\n    ca_file: {ca}\n  reload_interval_ms: 250\n"
    ));
    let c = load_ok(&yaml);
    assert_eq!(c.tls.client.cert_file.as_deref(), Some(Path::new(&cert)));
    assert!(c.tls.client.client_cert_auth);
    assert_eq!(c.tls.reload_interval_ms, 250);
    assert_eq!(c.advertise_client(), "https://127.0.0.1:2379");
    assert_eq!(c.advertise_admin(), "http://127.0.0.1:8080");
    let peer = c.tls.files("peer").unwrap();
    assert!(peer.client_cert_auth, "members always verify each other");
    assert_eq!(c.tls.files("admin"), None);
    // The environment and flags set the same keys.
    let env = [("LOCKSTEP_TLS_ADMIN_CERT_FILE", cert.as_str()), ("LOCKSTEP_TLS_ADMIN_KEY_FILE", key.as_str())];
    let c = load(&with(""), &env, &[("tls.admin.ca_file", ca.as_str())]).unwrap();
    assert_eq!(c.tls.admin.ca_file.as_deref(), Some(Path::new(&ca)));
    assert_eq!(c.advertise_admin(), "https://127.0.0.1:8080");
    // to_yaml writes the nested sections back.
    assert_eq!(load_ok(&c.to_yaml()), c);
}

#[test]
fn a_certificate_without_its_key_is_a_clear_error() {
    let (_dir, cert, _key, _ca) = tls_files();
    let err = load(&with(""), &[], &[("tls.client.cert_file", &cert)]).unwrap_err();
    assert_eq!(
        err,
        "config.yaml: tls.client.key_file: must be set, since tls.client.cert_file is: set it to the certificate's \
         private key (PEM), or unset tls.client.cert_file to serve without TLS"
    );
}

#[test]
fn a_missing_key_file_names_the_key_and_what_to_do() {
    let (dir, cert, _key, ca) = tls_files();
    let missing = dir.path().join("gone.key").display().to_string();
    let yaml = with(&format!("tls:\n  peer:\n    cert_file: {cert}\n    key_file: {missing}\n    ca_file: {ca}\n"));
    let err = load(&yaml, &[], &[]).unwrap_err();
    assert_eq!(
        err,
        format!(
            "config.yaml:9: tls.peer.key_file = {missing}: cannot read {missing}: No such file or directory (os \
             error 2) (`lockstep certs init --dir DIR` writes a CA, member and client certificates)"
        )
    );
}

#[test]
fn tls_keys_that_need_others_say_which() {
    let (_dir, cert, key, ca) = tls_files();
    // Peer TLS is mutual: the CA bundle is required.
    let err = load(&with(""), &[], &[("tls.peer.cert_file", &cert), ("tls.peer.key_file", &key)]).unwrap_err();
    assert_eq!(
        err,
        "config.yaml: tls.peer.ca_file: is required with tls.peer.cert_file: members verify each other's \
         certificates against this CA bundle (mutual TLS)"
    );
    // Client certificate auth needs the bundle, and TLS.
    let err = load(&with(""), &[], &[("tls.client.client_cert_auth", "true")]).unwrap_err();
    assert_eq!(
        err,
        "config.yaml: tls.client.ca_file: is required with tls.client.client_cert_auth: it is the CA bundle client \
         certificates must chain to\n--set tls.client.client_cert_auth=true: needs TLS on the port: set \
         tls.client.cert_file and tls.client.key_file"
    );
    // A key without a certificate.
    let err = load(&with(""), &[("LOCKSTEP_TLS_ADMIN_KEY_FILE", &key)], &[("tls.admin.ca_file", &ca)]).unwrap_err();
    assert_eq!(
        err,
        "config.yaml: tls.admin.cert_file: must be set, since tls.admin.key_file is: set it to the certificate (PEM) \
         of that key, or unset tls.admin.key_file to serve without TLS"
    );
}
