//! The member's HTTP servers: the admin API (health, metrics, cluster
//! membership) and the etcd v3 client API, both served by hyper on the member's
//! glommio executor.
//!
//! Admin endpoints (JSON unless noted):
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/health` | store, raft and disk checks; 200, or 503 when unhealthy |
//! | GET | `/livez` | text; 200 while the event loop turns and the member runs |
//! | GET | `/readyz` | text; 200 once a leader exists and this member applied what it knows committed |
//! | GET | `/metrics` | Prometheus text format, etcd's metric names |
//! | GET | `/snapshot` | the member's state as a snapshot file (`lockstep snapshot save`) |
//! | GET | `/cluster/status` | this member's view |
//! | GET | `/cluster/members` | members with their addresses |
//! | GET | `/cluster/leader` | the leader (503 when none) |
//! | POST | `/cluster/members` | add a member: `{"id", "peer", "client", "admin", "learner"}` (leader only) |
//! | POST | `/cluster/members/{id}/promote` | promote a caught-up learner (leader only) |
//! | DELETE | `/cluster/members/{id}` | remove a member; `?force=true` for a dead one, `?quorum=true`: remove it if the reachable rest is a quorum (leader only) |
//! | PUT | `/cluster/members/{id}` | `{"peer"}`: change the peer address this member knows (this member only) |
//! | POST | `/cluster/leader/transfer` | `{"to": id}`: hand leadership over (leader only) |
//! | GET | `/admin/limits` | the rate limits, per-client limits and lock-out settings in force on this member |
//! | PUT | `/admin/limits` | a JSON object of limits to change on this member at once (other fields kept); the limits in force |
//!
//! Requests that only the leader serves get `421 Misdirected Request` with the
//! leader's admin URL in `leader_admin` on other members; the CLI follows it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response};
use lockstep_api::audit::{AuditEvent, AuditSink, Outcome};
use lockstep_core::{
    ClientError, Membership, NodeId, Request as NodeRequest, Response as NodeResponse, Role, StateMachine,
};
use lockstep_runtime::tls::{TlsContext, TlsStatus};
use lockstep_runtime::Member;
use serde_json::{json, Value};

use crate::admin::{self, Answer, MemberAddresses};
use crate::server::ServerOptions;

/// The largest admin request body.
const ADMIN_BODY_BYTES_MAX: usize = 64 << 10;
/// A learner is promoted only once its log reaches this share of the leader's
/// commit index (etcd's rule: 90 %).
const PROMOTE_MATCH_SHARE: f64 = 0.9;

/// What the admin handlers share.
pub struct AdminState {
    member: Member,
    name: String,
    quota_bytes: u64,
    /// Known members' addresses (initial members, added members).
    addresses: RefCell<BTreeMap<NodeId, MemberAddresses>>,
    /// The ports' TLS (for `/health` and `/metrics`).
    tls: Vec<TlsContext>,
    /// Where membership changes through this API are recorded.
    audit: Option<Rc<dyn AuditSink>>,
    /// The client port's limits (`/admin/limits`, `/metrics`).
    limits: Rc<lockstep_api::Limiter>,
    limit_metrics: LimitMetrics,
}

/// The limiter's counts as Prometheus counters in the member's registry,
/// brought up to date when `/metrics` is rendered.
struct LimitMetrics {
    rejected: prometheus::IntCounterVec,
    auth_failures: prometheus::IntCounterVec,
    auth_lockouts: prometheus::IntCounterVec,
}

impl LimitMetrics {
    fn new(registry: &prometheus::Registry) -> LimitMetrics {
        let vec = |name: &str, help: &str, label: &str| {
            let c = prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), &[label]).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let metrics = LimitMetrics {
            rejected: vec(
                "lockstep_limit_rejected_total",
                "Requests, connections and watches refused by a limit (global, user, key_bytes, value_bytes,                  watches_per_stream, connections_per_source, leases).",
                "limit",
            ),
            auth_failures: vec(
                "lockstep_auth_failures_total",
                "Failed Authenticate calls, by reason (bad_password, unknown_user, locked_out).",
                "reason",
            ),
            auth_lockouts: vec(
                "lockstep_auth_lockouts_total",
                "Lock-outs after repeated failed Authenticate calls, by scope (user, source).",
                "scope",
            ),
        };
        // Every label from the start, so that dashboards and alerts see zeros.
        for limit in
            ["global", "user", "key_bytes", "value_bytes", "watches_per_stream", "connections_per_source", "leases"]
        {
            metrics.rejected.with_label_values(&[limit]);
        }
        for reason in ["bad_password", "unknown_user", "locked_out"] {
            metrics.auth_failures.with_label_values(&[reason]);
        }
        for scope in ["user", "source"] {
            metrics.auth_lockouts.with_label_values(&[scope]);
        }
        metrics
    }

    fn observe(&self, stats: &lockstep_api::limits::LimitStats) {
        let sync = |vec: &prometheus::IntCounterVec, totals: &BTreeMap<&'static str, u64>| {
            for (label, total) in totals {
                let counter = vec.with_label_values(&[label]);
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        };
        sync(&self.rejected, &stats.rejected);
        sync(&self.auth_failures, &stats.auth_failures);
        sync(&self.auth_lockouts, &stats.auth_lockouts);
    }
}

impl AdminState {
    /// The admin state of `member`, whose ports' TLS is `tls`.
    pub fn new(member: Member, options: &ServerOptions, tls: Vec<TlsContext>) -> AdminState {
        let limit_metrics = LimitMetrics::new(member.metrics().registry());
        AdminState {
            member,
            name: options.name.clone(),
            quota_bytes: options.member.kv.quota_bytes,
            addresses: RefCell::new(options.addresses.clone()),
            tls,
            limits: Rc::new(lockstep_api::Limiter::new(options.limits.clone())),
            limit_metrics,
            audit: None,
        }
    }

    /// The client port's limiter (one per member).
    pub fn limits(&self) -> Rc<lockstep_api::Limiter> {
        self.limits.clone()
    }

    /// The same state, recording membership changes in `audit`.
    pub fn with_audit(mut self, audit: Option<Rc<dyn AuditSink>>) -> AdminState {
        self.audit = audit;
        self
    }

    /// The audit log, if any (other admin routes that change the member's
    /// security settings record their changes there too).
    pub fn audit(&self) -> Option<&Rc<dyn AuditSink>> {
        self.audit.as_ref()
    }

    /// Whether members talk over (mutual) TLS.
    pub fn peer_tls(&self) -> bool {
        self.tls.iter().any(|t| t.listener() == "peer")
    }

    /// Every TLS port's status.
    pub fn tls_status(&self) -> Vec<TlsStatus> {
        self.tls.iter().map(TlsContext::status).collect()
    }

    /// Every known member's addresses, with peer addresses learned by the
    /// transport filled in.
    pub fn addresses(&self) -> BTreeMap<NodeId, MemberAddresses> {
        let mut addresses = self.addresses.borrow().clone();
        for (id, peer) in self.member.peer_addresses() {
            addresses.entry(id).or_insert_with(|| MemberAddresses {
                name: format!("member-{id}"),
                peer,
                client: String::new(),
                admin: String::new(),
            });
        }
        addresses
    }

    /// Forgets a member that left.
    pub fn forget(&self, id: NodeId) {
        self.addresses.borrow_mut().remove(&id);
    }

    /// Records addresses of members (learned when joining).
    pub fn learn(&self, addresses: BTreeMap<NodeId, MemberAddresses>) {
        let me = self.member.id();
        for (id, a) in addresses {
            if id != me {
                self.member.set_peer(id, a.peer.clone());
            }
            self.addresses.borrow_mut().insert(id, a);
        }
    }
}

fn answer_to_response(answer: Answer) -> Response<Full<Bytes>> {
    Response::builder()
        .status(answer.status)
        .header("content-type", answer.content_type)
        .body(Full::new(Bytes::from(answer.body)))
        .expect("a valid response")
}

fn error(status: u16, message: impl Into<String>) -> Answer {
    Answer::json(status, &json!({ "error": message.into() }))
}

/// Answers one admin request.
pub async fn handle_admin(
    state: Rc<AdminState>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let source = request.extensions().get::<SocketAddr>().map_or_else(|| "local".to_string(), ToString::to_string);
    let body = match Limited::new(request.into_body(), ADMIN_BODY_BYTES_MAX).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(answer_to_response(error(413, format!("request body: {e}")))),
    };
    Ok(match route(&state, &method, &path, &query, &body).await {
        Routed::Answer(answer) => {
            if let Some(audit) = &state.audit {
                if let Some(event) = admin_audit_event(&method, &path, &query, &body, &answer, source) {
                    audit.record(event);
                }
            }
            answer_to_response(answer)
        }
        Routed::Bytes(bytes) => Response::builder()
            .status(200)
            .header("content-type", "application/octet-stream")
            .body(Full::new(Bytes::from(bytes)))
            .expect("a valid response"),
    })
}

/// The audit record of an admin request that changes the membership (or
/// moves leadership); `None` for other requests and for requests this member
/// sent on to the leader (421: the leader records them).
fn admin_audit_event(
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    answer: &Answer,
    source: String,
) -> Option<AuditEvent> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let hex = |id: &str| id.parse::<u64>().map_or_else(|_| id.to_string(), |id| format!("{id:x}"));
    let (event, mut detail) = match (method, segments.as_slice()) {
        (&Method::POST, ["cluster", "members"]) => (
            "member_add",
            json!({
                "id": request["id"].as_u64().map(|id| format!("{id:x}")),
                "peer_urls": [request["peer"]],
                "learner": request["learner"].as_bool().unwrap_or(true),
            }),
        ),
        (&Method::POST, ["cluster", "members", id, "promote"]) => ("member_promote", json!({ "id": hex(id) })),
        (&Method::DELETE, ["cluster", "members", id]) => ("member_remove", json!({ "id": hex(id), "options": query })),
        (&Method::PUT, ["cluster", "members", id]) => {
            ("member_update", json!({ "id": hex(id), "peer_urls": [request["peer"]] }))
        }
        (&Method::POST, ["cluster", "leader", "transfer"]) => {
            ("leader_transfer", json!({ "to": request["to"].as_u64().map(|id| format!("{id:x}")) }))
        }
        _ => return None,
    };
    if answer.status == 421 {
        return None;
    }
    let outcome = if (200..300).contains(&answer.status) { Outcome::Ok } else { Outcome::Error };
    if let Some(object) = detail.as_object_mut() {
        object.insert("method".into(), json!(format!("{method} {path}")));
        if outcome != Outcome::Ok {
            let reply: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
            object.insert("reason".into(), reply["error"].clone());
        }
    }
    Some(AuditEvent { event, user: "anonymous".into(), source, outcome, detail })
}

/// Answers an admin request on this member without HTTP (the etcd API's
/// cluster calls reuse the admin rules): the status and the JSON body.
pub async fn admin_local(state: &AdminState, method: &Method, path: &str, query: &str, body: &[u8]) -> (u16, Value) {
    match route(state, method, path, query, body).await {
        Routed::Answer(answer) => (answer.status, serde_json::from_str(&answer.body).unwrap_or(Value::Null)),
        Routed::Bytes(_) => (200, Value::Null),
    }
}

/// `GET /snapshot`: the member's state as one snapshot file, taken between two
/// steps of the event loop (one applied index).
fn snapshot_answer(state: &AdminState) -> Routed {
    Routed::Bytes(snapshot_file(&state.member))
}

/// The member's state as one snapshot file (`lockstep snapshot restore`
/// reads it), taken between two steps of the event loop (one applied index).
pub fn snapshot_file(member: &Member) -> Vec<u8> {
    let status = member.status();
    let (data, applied_index, revision) =
        member.with_store(|s| (StateMachine::snapshot(&*s), s.applied_index(), s.current_revision()));
    let header = crate::snapshot::SnapshotHeader {
        cluster_id: status.cluster_id,
        member_id: status.id,
        applied_index,
        revision,
        data_len: data.len() as u64,
        data_crc: crc32c::crc32c(&data),
    };
    crate::snapshot::encode_snapshot_file(&header, &data)
}

/// A routed answer: JSON/text, or raw bytes.
enum Routed {
    Answer(Answer),
    Bytes(Vec<u8>),
}

impl From<Answer> for Routed {
    fn from(answer: Answer) -> Routed {
        Routed::Answer(answer)
    }
}

async fn route(state: &AdminState, method: &Method, path: &str, query: &str, body: &[u8]) -> Routed {
    let status = state.member.status();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let answer = match (method, segments.as_slice()) {
        (&Method::GET, ["health"]) => {
            let fsync_ms = last_fsync_ms(&state.member);
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            admin::health_answer_with_tls(&status, fsync_ms, &state.tls_status(), now as i64)
        }
        (&Method::GET, ["livez"]) => admin::livez(&status),
        (&Method::GET, ["readyz"]) => admin::readyz(&status),
        (&Method::GET, ["metrics"]) => {
            let metrics = state.member.metrics();
            metrics.observe_tls(&state.tls_status());
            state.limit_metrics.observe(&state.limits.stats());
            Answer {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics.render(&status, state.quota_bytes),
            }
        }
        (&Method::GET, ["snapshot"]) => return snapshot_answer(state),
        (&Method::GET, ["cluster", "status"]) => admin::cluster_status(&status, &state.name),
        (&Method::GET, ["cluster", "members"]) => admin::cluster_members(&status, &state.addresses()),
        (&Method::GET, ["cluster", "leader"]) => admin::cluster_leader(&status, &state.addresses()),
        (&Method::POST, ["cluster", "members"]) => add_member(state, body).await,
        (&Method::POST, ["cluster", "members", id, "promote"]) => match id.parse() {
            Ok(id) => promote(state, id).await,
            Err(_) => error(400, format!("bad member id {id:?}")),
        },
        (&Method::DELETE, ["cluster", "members", id]) => match id.parse() {
            Ok(id) => {
                let flag = |name: &str| query.split('&').any(|kv| kv == name || kv == format!("{name}=true"));
                let force = if flag("force") {
                    Force::Always
                } else if flag("quorum") {
                    Force::IfQuorum
                } else {
                    Force::Never
                };
                remove(state, id, force).await
            }
            Err(_) => error(400, format!("bad member id {id:?}")),
        },
        (&Method::PUT, ["cluster", "members", id]) => match id.parse() {
            Ok(id) => update_peer(state, id, body),
            Err(_) => error(400, format!("bad member id {id:?}")),
        },
        (&Method::POST, ["cluster", "leader", "transfer"]) => transfer(state, body).await,
        (&Method::GET, ["admin", "limits"]) => limits_answer(state),
        (&Method::PUT, ["admin", "limits"]) => change_limits(state, body),
        (_, ["health" | "livez" | "readyz" | "metrics"]) | (_, ["cluster", ..]) | (_, ["admin", "limits"]) => {
            error(405, format!("{method} is not allowed on {path}"))
        }
        _ => error(404, format!("no such endpoint: {path} (see GET /cluster/status, /health, /metrics)")),
    };
    answer.into()
}

/// `GET /admin/limits`: the limits in force on this member.
fn limits_answer(state: &AdminState) -> Answer {
    match serde_json::to_value(state.limits.config()) {
        Ok(value) => Answer::json(200, &value),
        Err(e) => error(500, format!("cannot render the limits: {e}")),
    }
}

/// `PUT /admin/limits`: changes the limits named in the body (a JSON object
/// with fields of `GET /admin/limits`) on this member, at once and until it
/// restarts; the others are kept. Answers the limits now in force.
fn change_limits(state: &AdminState, body: &[u8]) -> Answer {
    let changes: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(400, format!("body is not JSON: {e}")),
    };
    match state.limits.config().merged(&changes) {
        Ok(limits) => {
            tracing::info!(changes = %changes, "limits changed through the admin API");
            state.limits.set_config(limits);
            limits_answer(state)
        }
        Err(why) => error(400, why),
    }
}

fn last_fsync_ms(member: &Member) -> Option<f64> {
    member.last_fsync().map(|d| d.as_secs_f64() * 1000.0)
}

/// Refuses unless this member leads: 421 with the leader's admin URL.
fn require_leader(state: &AdminState) -> Result<(), Answer> {
    let status = state.member.status();
    if status.role == Role::Leader {
        return Ok(());
    }
    let leader_admin = status.leader.and_then(|l| state.addresses().get(&l).map(|a| a.admin.clone()));
    Err(Answer::json(
        421,
        &json!({"error": "this member is not the leader", "leader": status.leader, "leader_admin": leader_admin}),
    ))
}

async fn change_membership(state: &AdminState, target: Membership) -> Answer {
    match state
        .member
        .request_local(NodeRequest::ChangeMembership { voters: target.voters, learners: target.learners })
        .await
    {
        Ok(NodeResponse::Membership(m)) => {
            Answer::json(200, &json!({"voters": m.voters, "learners": m.learners, "members": members_json(state)}))
        }
        Ok(other) => error(500, format!("unexpected response {other:?}")),
        Err(ClientError::Busy) => error(409, "another membership change is in progress; retry when it finished"),
        Err(ClientError::Invalid(why)) => error(400, why),
        Err(e) => {
            error(503, format!("the membership change did not complete: {e:?}; check `lockstep cluster members`"))
        }
    }
}

fn members_json(state: &AdminState) -> Value {
    let members: Vec<Value> = state
        .addresses()
        .iter()
        .map(|(id, a)| json!({"id": id, "name": a.name, "peer": a.peer, "client": a.client, "admin": a.admin}))
        .collect();
    Value::Array(members)
}

async fn add_member(state: &AdminState, body: &[u8]) -> Answer {
    if let Err(answer) = require_leader(state) {
        return answer;
    }
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(400, format!("body is not JSON: {e}")),
    };
    let Some(id) = request["id"].as_u64().filter(|id| *id > 0) else {
        return error(400, "`id` must be a positive integer");
    };
    let Some(peer) = request["peer"].as_str().filter(|p| !p.is_empty()) else {
        return error(400, "`peer` (host:port) is required");
    };
    let learner = request["learner"].as_bool().unwrap_or(true);
    let status = state.member.status();
    let mut target = status.membership.clone();
    if target.voters.contains(&id) || target.learners.contains(&id) {
        // Idempotent for a joining member that retries, or that was registered
        // beforehand (etcd's `MemberAdd`): what it tells about itself is kept.
        let known = state.addresses().get(&id).cloned().filter(|a| a.peer == peer);
        if let Some(mut known) = known {
            for (field, key) in [(&mut known.name, "name"), (&mut known.client, "client"), (&mut known.admin, "admin")]
            {
                if let Some(text) = request[key].as_str().filter(|t| !t.is_empty()) {
                    *field = text.to_string();
                }
            }
            state.learn(BTreeMap::from([(id, known)]));
            return Answer::json(
                200,
                &json!({"voters": target.voters, "learners": target.learners, "members": members_json(state),
                        "cluster_id": format!("{:016x}", status.cluster_id)}),
            );
        }
        return error(409, format!("member {id} is already in the cluster with another peer address"));
    }
    if learner {
        target.learners.push(id);
    } else {
        target.voters.push(id);
    }
    let addresses = MemberAddresses {
        // An empty name marks a member registered but not started (etcd
        // shows it as "unstarted").
        name: request["name"].as_str().map_or_else(|| format!("member-{id}"), str::to_string),
        peer: peer.to_string(),
        client: request["client"].as_str().unwrap_or("").to_string(),
        admin: request["admin"].as_str().unwrap_or("").to_string(),
    };
    state.learn(BTreeMap::from([(id, addresses)]));
    tracing::info!(member = id, peer, learner, "adding a member");
    change_membership(state, target).await
}

async fn promote(state: &AdminState, id: NodeId) -> Answer {
    if let Err(answer) = require_leader(state) {
        return answer;
    }
    let status = state.member.status();
    if status.membership.voters.contains(&id) {
        return Answer::json(200, &json!({"voters": status.membership.voters, "learners": status.membership.learners}));
    }
    if !status.membership.learners.contains(&id) {
        return error(404, format!("member {id} is not a learner of this cluster"));
    }
    let matched = status.progress.get(&id).copied().unwrap_or(0);
    if (matched as f64) < status.commit_index as f64 * PROMOTE_MATCH_SHARE {
        return error(
            412,
            format!(
                "learner {id} is not caught up yet (its log reaches index {matched}, the leader's commit index is {}); \
                 retry later",
                status.commit_index
            ),
        );
    }
    let mut target = status.membership.clone();
    target.learners.retain(|l| *l != id);
    target.voters.push(id);
    tracing::info!(member = id, "promoting a learner");
    change_membership(state, target).await
}

/// When `DELETE /cluster/members/{id}` removes a member it cannot reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Force {
    /// Refuse (409): the operator must confirm with `force`.
    Never,
    /// Remove it when the remaining reachable voters are a quorum of the new
    /// voters, else refuse with 412 (etcd's rule for `MemberRemove`).
    IfQuorum,
    /// Remove it (`?force=true`).
    Always,
}

/// `PUT /cluster/members/{id}` `{"peer": "host:port"}`: changes the peer
/// address this member knows for `id` (not replicated: the etcd API's
/// `MemberUpdate` calls it on every member it can reach).
fn update_peer(state: &AdminState, id: NodeId, body: &[u8]) -> Answer {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(peer) = request["peer"].as_str().filter(|p| !p.is_empty()) else {
        return error(400, "`peer` (host:port) is required");
    };
    let status = state.member.status();
    if !status.membership.voters.contains(&id) && !status.membership.learners.contains(&id) {
        return error(404, format!("member {id} is not in the cluster"));
    }
    let mut addresses = state.addresses().get(&id).cloned().unwrap_or_else(|| MemberAddresses {
        name: String::new(),
        peer: String::new(),
        client: String::new(),
        admin: String::new(),
    });
    addresses.peer = peer.to_string();
    tracing::info!(member = id, peer, "updating a member's peer address");
    state.learn(BTreeMap::from([(id, addresses)]));
    Answer::json(200, &json!({"members": members_json(state)}))
}

async fn remove(state: &AdminState, id: NodeId, force: Force) -> Answer {
    if let Err(answer) = require_leader(state) {
        return answer;
    }
    let status = state.member.status();
    if !status.membership.voters.contains(&id) && !status.membership.learners.contains(&id) {
        return error(404, format!("member {id} is not in the cluster"));
    }
    let reachable = |id: &NodeId| *id == status.id || status.peers.get(id).is_some_and(|p| p.connected);
    if force == Force::IfQuorum {
        let remaining: Vec<NodeId> = status.membership.voters.iter().copied().filter(|v| *v != id).collect();
        let started = remaining.iter().filter(|v| reachable(v)).count();
        if !remaining.is_empty() && started <= remaining.len() / 2 {
            return error(412, "re-configuration failed due to not enough started members");
        }
    }
    if force == Force::Never && !reachable(&id) {
        return error(
            409,
            format!("member {id} is not reachable; if it is dead and will not come back, remove it with --force"),
        );
    }
    let mut target = status.membership.clone();
    target.voters.retain(|v| *v != id);
    target.learners.retain(|l| *l != id);
    if target.voters.is_empty() {
        return error(400, "cannot remove the last voter");
    }
    tracing::info!(member = id, force = ?force, "removing a member");
    let answer = change_membership(state, target).await;
    if answer.status == 200 {
        state.addresses.borrow_mut().remove(&id);
    }
    answer
}

async fn transfer(state: &AdminState, body: &[u8]) -> Answer {
    if let Err(answer) = require_leader(state) {
        return answer;
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(to) = request["to"].as_u64() else {
        return error(400, "`to` (a member id) is required");
    };
    match state.member.request_local(NodeRequest::TransferLeader { to }).await {
        Ok(NodeResponse::Transferred { leader }) => Answer::json(200, &json!({"leader": leader})),
        Ok(other) => error(500, format!("unexpected response {other:?}")),
        Err(ClientError::Invalid(why)) => error(400, why),
        Err(e) => error(503, format!("the transfer did not complete: {e:?}")),
    }
}

/// Starts the admin HTTP server (HTTPS with `tls`); returns the bound address.
pub fn start_admin(state: Rc<AdminState>, listen: SocketAddr, tls: Option<TlsContext>) -> Result<SocketAddr, String> {
    let listener = lockstep_runtime::net::listen(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let make_service = move || {
        let state = state.clone();
        hyper::service::service_fn(move |request| handle_admin(state.clone(), request))
    };
    glommio::spawn_local(lockstep_runtime::http::serve_with_tls(
        listener,
        make_service,
        lockstep_runtime::http::ServeOptions::default(),
        tls,
    ))
    .detach();
    Ok(bound)
}

/// gRPC code names as go-grpc-prometheus labels them.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The etcd service, counting every call in `grpc_server_handled_total`.
/// Unary calls are counted with their status; streams (Watch,
/// LeaseKeepAlive) when they open. A status sent in trailers after a
/// successful start counts as `OK`.
#[derive(Clone)]
struct CountedService {
    inner: lockstep_api::EtcdService,
    counters: Rc<HandledCounters>,
}

/// `grpc_server_handled_total`'s counters by path and status code, looked up
/// once: a label lookup per call (three strings and the vector's hash map)
/// cost 2% of a leader's CPU under puts.
struct HandledCounters {
    handled: prometheus::IntCounterVec,
    by_path: RefCell<std::collections::HashMap<String, Vec<Option<prometheus::IntCounter>>>>,
}

impl HandledCounters {
    fn count(&self, path: &str, code: usize) {
        let code = code.min(GRPC_CODES.len());
        let mut by_path = self.by_path.borrow_mut();
        if !by_path.contains_key(path) {
            by_path.insert(path.to_string(), vec![None; GRPC_CODES.len() + 1]);
        }
        let slot = &mut by_path.get_mut(path).expect("inserted above")[code];
        let counter = slot.get_or_insert_with(|| {
            let (service, method) = path.split_once('/').unwrap_or((path, ""));
            let grpc_type = if matches!(method, "Watch" | "LeaseKeepAlive") { "bidi_stream" } else { "unary" };
            let name = GRPC_CODES.get(code).copied().unwrap_or("Unknown");
            self.handled.with_label_values(&[grpc_type, service, method, name])
        });
        counter.inc();
    }
}

impl hyper::service::Service<Request<hyper::body::Incoming>> for CountedService {
    type Response = Response<lockstep_api::ResponseBody>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>>>>;

    fn call(&self, request: Request<hyper::body::Incoming>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/').to_string();
        let inner = self.inner.clone();
        let counters = self.counters.clone();
        Box::pin(async move {
            let response = inner.handle(request).await;
            // No header: OK. An unparsable code counts as Unknown.
            let code = match response.headers().get("grpc-status") {
                None => 0,
                Some(v) => v.to_str().ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(GRPC_CODES.len()),
            };
            counters.count(&path, code);
            Ok(response)
        })
    }
}

/// Starts the etcd v3 gRPC server on the client port (over TLS with `tls`,
/// ALPN `h2` and `http/1.1`), recording security-relevant requests in the
/// admin state's audit log; returns the bound address.
pub fn start_client(
    member: Member,
    admin: Rc<AdminState>,
    listen: SocketAddr,
    service_config: lockstep_api::ServiceConfig,
    auth: Rc<lockstep_api::Authenticator>,
    serve_options: lockstep_runtime::http::ServeOptions,
    tls: Option<TlsContext>,
) -> Result<SocketAddr, String> {
    let listener = lockstep_runtime::net::listen(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let handled = member.metrics().grpc_handled.clone();
    let audit = admin.audit().cloned();
    // The member's limiter lives in the admin state, which reads and changes it.
    let limits = admin.limits();
    let backend: Rc<dyn lockstep_api::Backend> = Rc::new(crate::backend::MemberBackend::new(member, admin));
    let mut inner = lockstep_api::EtcdService::new(backend, service_config).with_auth(auth).with_limits(limits);
    if let Some(audit) = audit {
        inner = inner.with_audit(audit);
    }
    let counters = Rc::new(HandledCounters { handled, by_path: RefCell::new(std::collections::HashMap::new()) });
    let make_service = move |peer: Option<SocketAddr>| match inner.for_connection(peer) {
        Some(inner) => Some(CountedService { inner, counters: counters.clone() }),
        None => {
            tracing::debug!(?peer, "refused a client connection: limits.max_connections_per_source reached");
            None
        }
    };
    glommio::spawn_local(lockstep_runtime::http::serve_gated(listener, make_service, serve_options, tls)).detach();
    Ok(bound)
}
