//! A member's Prometheus metrics, with etcd's names where etcd has one, so that
//! existing etcd dashboards and alerts work unchanged.
//!
//! Counters and histograms are updated as things happen (fsyncs, applies,
//! failed proposals, leader changes); gauges and the per-peer byte counters are
//! brought up to date from a [`MemberStatus`] when the registry is rendered
//! ([`Metrics::render`]). Each member has its own registry (several members
//! may share a process in tests).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use lockstep_core::{NodeId, Role};
use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::member::MemberStatus;
use crate::tls::TlsStatus;

/// The metrics of one member. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `etcd_server_leader_changes_seen_total`.
    pub leader_changes: IntCounter,
    /// `etcd_server_proposals_failed_total`: requests answered with an error.
    pub proposals_failed: IntCounter,
    /// `lockstep_proposals_applied_entries_total`: entries applied.
    pub proposals_applied: IntCounter,
    fsync: Histogram,
    backend_commit: Histogram,
    peer_rtt: HistogramVec,
    has_leader: IntGauge,
    is_leader: IntGauge,
    committed: IntGauge,
    applied: IntGauge,
    pending: IntGauge,
    db_size: IntGauge,
    keys: IntGauge,
    quota: IntGauge,
    term: IntGauge,
    revision: IntGauge,
    compact_revision: IntGauge,
    disk_free: IntGauge,
    disk_total: IntGauge,
    sent: IntCounterVec,
    received: IntCounterVec,
    dropped: IntCounterVec,
    wal_fsyncs: IntCounter,
    wal_group_commits: IntCounter,
    wal_bytes: IntCounter,
    /// `grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}`.
    pub grpc_handled: IntCounterVec,
    peer_tls_failures: IntCounterVec,
    client_tls_failures: IntCounterVec,
    tls_reloads: IntCounterVec,
    tls_reload_failures: IntCounterVec,
    tls_expiry: IntGaugeVec,
    /// Last rendered values of the counters fed from totals, to add deltas.
    last: Rc<RefCell<BTreeMap<String, u64>>>,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec_of(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    // etcd's buckets for disk latencies: 1 ms to 8 s.
    let opts = HistogramOpts::new(name, help).buckets(exponential_buckets(0.001, 2.0, 14).expect("valid buckets"));
    let h = Histogram::with_opts(opts).expect("valid metric");
    registry.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    /// The metrics of member `id`, in a registry of their own.
    pub fn new(id: NodeId) -> Metrics {
        let r = Registry::new();
        let peer_rtt = HistogramVec::new(
            HistogramOpts::new(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-trip time of peer connection handshakes.",
            )
            .buckets(exponential_buckets(0.0001, 2.0, 16).expect("valid buckets")),
            &["To"],
        )
        .expect("valid metric");
        r.register(Box::new(peer_rtt.clone())).expect("unique metric");
        let up = Gauge::new("lockstep_up", "1 while the member runs.").expect("valid metric");
        r.register(Box::new(up.clone())).expect("unique metric");
        up.set(1.0);
        let server_id =
            GaugeVec::new(Opts::new("etcd_server_id", "Server or member ID in hexadecimal format."), &["server_id"])
                .expect("valid metric");
        r.register(Box::new(server_id.clone())).expect("unique metric");
        server_id.with_label_values(&[&format!("{id:x}")]).set(1.0);
        let member_id = Gauge::new("lockstep_member_id", "This member's id.").expect("valid metric");
        r.register(Box::new(member_id.clone())).expect("unique metric");
        member_id.set(id as f64);
        let grpc_handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )
        .expect("valid metric");
        r.register(Box::new(grpc_handled.clone())).expect("unique metric");
        Metrics {
            leader_changes: counter(&r, "etcd_server_leader_changes_seen_total", "The number of leader changes seen."),
            proposals_failed: counter(
                &r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            proposals_applied: counter(
                &r,
                "lockstep_applied_entries_total",
                "Log entries applied to the state machine.",
            ),
            fsync: histogram(
                &r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            ),
            backend_commit: histogram(
                &r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend (applying entries to the state store).",
            ),
            peer_rtt,
            has_leader: gauge(
                &r,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                &r,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            committed: gauge(
                &r,
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            applied: gauge(
                &r,
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            pending: gauge(&r, "etcd_server_proposals_pending", "The current number of pending proposals to commit."),
            db_size: gauge(
                &r,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            keys: gauge(&r, "etcd_debugging_mvcc_keys_total", "Total number of keys."),
            quota: gauge(&r, "etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes."),
            term: gauge(&r, "lockstep_raft_term", "The current Raft term."),
            revision: gauge(&r, "lockstep_mvcc_revision", "The current MVCC revision."),
            compact_revision: gauge(&r, "lockstep_mvcc_compact_revision", "The last compacted MVCC revision."),
            disk_free: gauge(&r, "lockstep_disk_free_bytes", "Free bytes on the data directory's file system."),
            disk_total: gauge(&r, "lockstep_disk_total_bytes", "Total bytes of the data directory's file system."),
            sent: counter_vec(
                &r,
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                "To",
            ),
            received: counter_vec(
                &r,
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                "From",
            ),
            dropped: counter_vec(
                &r,
                "lockstep_network_peer_dropped_frames_total",
                "Frames dropped because a peer's send queue was full.",
                "To",
            ),
            wal_fsyncs: counter(&r, "lockstep_wal_fsyncs_total", "fdatasync calls on WAL segments."),
            wal_group_commits: counter(
                &r,
                "lockstep_wal_group_commits_total",
                "WAL group commits (rounds of writes ending in an fsync).",
            ),
            wal_bytes: counter(&r, "lockstep_wal_written_bytes_total", "Bytes written to the WAL."),
            grpc_handled,
            peer_tls_failures: counter_vec(
                &r,
                "lockstep_network_peer_tls_handshake_failures_total",
                "Peer connections refused in the TLS handshake (no certificate, a certificate not signed by the cluster CA, not TLS), by reason.",
                "reason",
            ),
            client_tls_failures: counter_vec_of(
                &r,
                "lockstep_network_client_tls_handshake_failures_total",
                "Client and admin connections refused in the TLS handshake, by port (client, admin) and reason.",
                &["listener", "reason"],
            ),
            tls_reloads: counter_vec(
                &r,
                "lockstep_tls_reloads_total",
                "Certificate reloads that put new TLS material in use, by port.",
                "listener",
            ),
            tls_reload_failures: counter_vec(
                &r,
                "lockstep_tls_reload_failures_total",
                "Certificate reloads that failed (the previous material stays in use), by port.",
                "listener",
            ),
            tls_expiry: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "lockstep_tls_certificate_expiry_seconds",
                        "Seconds until the certificate a port presents expires (negative once expired), by port.",
                    ),
                    &["listener"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            registry: r,
            last: Rc::new(RefCell::new(BTreeMap::new())),
        }
    }

    /// The registry, for other layers' metrics (the gRPC API's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one WAL fsync round's latency (submit to durable).
    pub fn observe_fsync(&self, took: Duration) {
        self.fsync.observe(took.as_secs_f64());
    }

    /// Records how long applying a batch of entries took.
    pub fn observe_backend_commit(&self, took: Duration) {
        self.backend_commit.observe(took.as_secs_f64());
    }

    fn add_total(&self, key: String, total: u64, counter: &IntCounter) {
        let mut last = self.last.borrow_mut();
        let previous = last.insert(key, total).unwrap_or(0);
        counter.inc_by(total.saturating_sub(previous));
    }

    /// Brings the TLS counters and the certificate expiry gauges up to date
    /// from the ports' statuses (call before [`Metrics::render`]).
    pub fn observe_tls(&self, statuses: &[TlsStatus]) {
        for status in statuses {
            let port = status.listener;
            self.add_total(format!("tls/reloads/{port}"), status.reloads, &self.tls_reloads.with_label_values(&[port]));
            self.add_total(
                format!("tls/reload_failures/{port}"),
                status.reload_failures,
                &self.tls_reload_failures.with_label_values(&[port]),
            );
            if let Some(not_after) = status.not_after_unix_s {
                self.tls_expiry.with_label_values(&[port]).set(crate::tls::seconds_until(not_after));
            }
            for (reason, count) in &status.handshake_failures {
                let counter = if port == "peer" {
                    self.peer_tls_failures.with_label_values(&[reason])
                } else {
                    self.client_tls_failures.with_label_values(&[port, reason])
                };
                self.add_total(format!("tls/handshake/{port}/{reason}"), *count, &counter);
            }
        }
    }

    /// Brings the gauges up to date from `status` and `quota_bytes`, and renders
    /// the registry in Prometheus' text format.
    pub fn render(&self, status: &MemberStatus, quota_bytes: u64) -> String {
        self.has_leader.set(i64::from(status.leader.is_some()));
        self.is_leader.set(i64::from(status.role == Role::Leader));
        self.committed.set(status.commit_index as i64);
        self.applied.set(status.applied_index as i64);
        self.pending.set(status.pending_requests as i64);
        self.db_size.set(status.db_size_bytes as i64);
        self.keys.set(status.keys as i64);
        self.quota.set(quota_bytes as i64);
        self.term.set(status.term as i64);
        self.revision.set(status.revision);
        self.compact_revision.set(status.compact_revision);
        if let Some(disk) = status.disk {
            self.disk_free.set(disk.free_bytes as i64);
            self.disk_total.set(disk.total_bytes as i64);
        }
        for (peer, stats) in &status.peers {
            let label = format!("{peer:x}");
            self.add_total(format!("sent/{peer}"), stats.sent_bytes, &self.sent.with_label_values(&[&label]));
            self.add_total(format!("recv/{peer}"), stats.received_bytes, &self.received.with_label_values(&[&label]));
            self.add_total(format!("drop/{peer}"), stats.dropped_frames, &self.dropped.with_label_values(&[&label]));
            let connects_key = format!("connects/{peer}");
            let seen = self.last.borrow().get(&connects_key).copied().unwrap_or(0);
            if stats.connects > seen {
                self.last.borrow_mut().insert(connects_key, stats.connects);
                self.peer_rtt.with_label_values(&[&label]).observe(stats.handshake_rtt_us as f64 / 1e6);
            }
        }
        self.add_total("wal/fsyncs".into(), status.wal.segment_fsyncs, &self.wal_fsyncs);
        self.add_total("wal/groups".into(), status.wal.group_commits, &self.wal_group_commits);
        self.add_total("wal/bytes".into(), status.wal.bytes_written, &self.wal_bytes);
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
