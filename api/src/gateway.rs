//! etcd's JSON gateway (grpc-gateway's `/v3/...` endpoints) on the client
//! port: a request whose content type is not `application/grpc` is read as
//! JSON, turned into the RPC's prost message, answered by the same handler as
//! the gRPC call, and written back as grpc-gateway writes it: proto field
//! names (`range_end`; camelCase accepted on input), 64-bit integers as
//! strings, bytes as base64, zero values omitted.
//!
//! | path | RPC |
//! |---|---|
//! | `POST /v3/kv/range` | KV Range |
//! | `POST /v3/kv/put` | KV Put |
//! | `POST /v3/kv/deleterange` | KV DeleteRange |
//! | `POST /v3/kv/txn` | KV Txn |
//! | `POST /v3/kv/compaction` | KV Compact |
//! | `POST /v3/lease/grant` | Lease LeaseGrant |
//! | `POST /v3/lease/revoke` | Lease LeaseRevoke |
//! | `POST /v3/lease/timetolive` | Lease LeaseTimeToLive |
//! | `POST /v3/lease/leases` (also `/v3/kv/lease/leases`) | Lease LeaseLeases |
//! | `POST /v3/lease/keepalive` | Lease LeaseKeepAlive: one renewal, answered as one `{"result": ...}` |
//! | `POST /v3/maintenance/status` | Maintenance Status |
//! | `POST /v3/maintenance/alarm` | Maintenance Alarm |
//! | `POST /v3/maintenance/defragment` | Maintenance Defragment |
//! | `POST /v3/maintenance/hash` | Maintenance Hash |
//! | `POST /v3/maintenance/hashkv` | Maintenance HashKV |
//! | `POST /v3/maintenance/transfer-leadership` | Maintenance MoveLeader |
//! | `POST /v3/cluster/member/list` | Cluster MemberList |
//! | `POST /v3/cluster/member/{add,remove,update,promote}` | Cluster MemberAdd, MemberRemove, MemberUpdate, MemberPromote |
//! | `POST /v3/watch` | Watch: one `create_request` in the body, then one JSON line `{"result": ...}` per response |
//! | `POST /v3/auth/{enable,disable,status,authenticate}` | Auth AuthEnable, AuthDisable, AuthStatus, Authenticate |
//! | `POST /v3/auth/user/{add,get,list,delete,changepw,grant,revoke}` | Auth User* |
//! | `POST /v3/auth/role/{add,get,list,delete,grant,revoke}` | Auth Role* |
//!
//! With auth enabled, the token from `/v3/auth/authenticate` goes in the
//! `Authorization` header (grpc-gateway passes it on as metadata).
//!
//! Errors are grpc-gateway's: the HTTP status of the gRPC code and
//! `{"error", "code", "message"}`. `/v3/watch` reads one request (a create) from the body; the stream ends
//! when the client goes away.

use std::rc::Rc;

use base64::Engine as _;
use bytes::Bytes;
use futures_lite::StreamExt as _;
use http_body::Body;
use http_body_util::BodyExt as _;
use serde_json::{json, Map, Value};
use tonic::{Code, Status};

use crate::auth::{self, checked, checked_auth, Cx};
use crate::grpc::ResponseBody;
use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Answers one JSON gateway request (bodies up to `body_bytes_max`; watch
/// responses fragmented at `fragment_bytes` when asked).
pub async fn handle<B>(
    cx: Rc<Cx>,
    request: http::Request<B>,
    body_bytes_max: usize,
    fragment_bytes: usize,
) -> http::Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    let path = request.uri().path().to_string();
    let body = match http_body_util::Limited::new(request.into_body(), body_bytes_max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return error_response(&Status::invalid_argument(format!("request body: {e}"))),
    };
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => value,
            Err(e) => return error_response(&Status::invalid_argument(format!("request body is not JSON: {e}"))),
        }
    };
    if let Err(status) = check_bytes_fields(&input) {
        return error_response(&status);
    }
    let input = Input(&input);
    if path == "/v3/watch" {
        return watch(cx, &input, fragment_bytes);
    }
    if path.starts_with("/v3/auth/") {
        return match auth_endpoint(cx, &path, &input).await {
            Ok(value) => json_response(200, &value),
            Err(status) => error_response(&status),
        };
    }
    let answer = match path.as_str() {
        "/v3/kv/range" => checked(cx.clone(), range_request(&input), crate::grpc::range).await.map(|r| range_json(&r)),
        "/v3/kv/put" => checked(cx.clone(), put_request(&input), crate::grpc::put).await.map(|r| put_json(&r)),
        "/v3/kv/deleterange" => {
            checked(cx.clone(), delete_request(&input), crate::grpc::delete_range).await.map(|r| delete_json(&r))
        }
        "/v3/kv/txn" => checked(cx.clone(), txn_request(&input), crate::grpc::txn).await.map(|r| txn_json(&r)),
        "/v3/kv/compaction" => {
            let request = pb::CompactionRequest { revision: input.int("revision"), physical: input.bool("physical") };
            checked(cx.clone(), request, crate::grpc::compact)
                .await
                .map(|r| object([("header", header_json(&r.header))]))
        }
        "/v3/lease/grant" => {
            let request = pb::LeaseGrantRequest { ttl: input.int("TTL"), id: input.int("ID") };
            checked(cx.clone(), request, crate::grpc::lease_grant).await.map(|r| {
                object([
                    ("header", header_json(&r.header)),
                    ("ID", int(r.id)),
                    ("TTL", int(r.ttl)),
                    ("error", text(&r.error)),
                ])
            })
        }
        "/v3/lease/revoke" | "/v3/kv/lease/revoke" => {
            let request = pb::LeaseRevokeRequest { id: input.int("ID") };
            checked(cx.clone(), request, crate::grpc::lease_revoke)
                .await
                .map(|r| object([("header", header_json(&r.header))]))
        }
        "/v3/lease/timetolive" | "/v3/kv/lease/timetolive" => {
            let request = pb::LeaseTimeToLiveRequest { id: input.int("ID"), keys: input.bool("keys") };
            checked(cx.clone(), request, crate::grpc::lease_time_to_live).await.map(|r| {
                object([
                    ("header", header_json(&r.header)),
                    ("ID", int(r.id)),
                    ("TTL", int(r.ttl)),
                    ("grantedTTL", int(r.granted_ttl)),
                    ("keys", list(r.keys.iter().map(|k| b64(k)))),
                ])
            })
        }
        "/v3/lease/leases" | "/v3/kv/lease/leases" => {
            checked(cx.clone(), pb::LeaseLeasesRequest {}, crate::grpc::lease_leases).await.map(|r| {
                object([
                    ("header", header_json(&r.header)),
                    ("leases", list(r.leases.iter().map(|l| object([("ID", int(l.id))])))),
                ])
            })
        }
        "/v3/lease/keepalive" => {
            let request = pb::LeaseKeepAliveRequest { id: input.int("ID") };
            checked(cx.clone(), request, |backend, r| async move { crate::grpc::keep_alive_one(&*backend, r).await })
                .await.map(|r| {
                json!({"result": object([("header", header_json(&r.header)), ("ID", int(r.id)), ("TTL", int(r.ttl))])})
            })
        }
        "/v3/maintenance/alarm" => {
            let request = pb::AlarmRequest {
                action: input.enumeration("action", &["GET", "ACTIVATE", "DEACTIVATE"]),
                member_id: input.uint("memberID"),
                alarm: input.enumeration("alarm", &["NONE", "NOSPACE", "CORRUPT"]),
            };
            checked(cx.clone(), request, crate::grpc::alarm).await.map(|r| {
                let alarm = |a: &pb::AlarmMember| {
                    let kind = ["NONE", "NOSPACE", "CORRUPT"].get(a.alarm as usize).copied().unwrap_or("NONE");
                    object([("memberID", uint(a.member_id)), ("alarm", text(kind))])
                };
                object([("header", header_json(&r.header)), ("alarms", list(r.alarms.iter().map(alarm)))])
            })
        }
        "/v3/maintenance/defragment" => checked(cx.clone(), pb::DefragmentRequest {}, crate::grpc::defragment)
            .await
            .map(|r| object([("header", header_json(&r.header))])),
        "/v3/maintenance/hash" => checked(cx.clone(), pb::HashRequest {}, crate::grpc::hash)
            .await
            .map(|r| object([("header", header_json(&r.header)), ("hash", uint(u64::from(r.hash)))])),
        "/v3/maintenance/hashkv" => {
            let request = pb::HashKvRequest { revision: input.int("revision") };
            checked(cx.clone(), request, crate::grpc::hash_kv).await.map(|r| {
                object([
                    ("header", header_json(&r.header)),
                    ("hash", uint(u64::from(r.hash))),
                    ("compact_revision", int(r.compact_revision)),
                ])
            })
        }
        "/v3/maintenance/transfer-leadership" => {
            let request = pb::MoveLeaderRequest { target_id: input.uint("targetID") };
            checked(cx.clone(), request, crate::grpc::move_leader)
                .await
                .map(|r| object([("header", header_json(&r.header))]))
        }
        "/v3/cluster/member/add" => {
            let request =
                pb::MemberAddRequest { peer_ur_ls: input.strings("peerURLs"), is_learner: input.bool("isLearner") };
            checked(cx.clone(), request, crate::grpc::member_add).await.map(|r| {
                object([
                    ("header", header_json(&r.header)),
                    ("member", r.member.as_ref().map_or(Value::Null, member_json)),
                    ("members", list(r.members.iter().map(member_json))),
                ])
            })
        }
        "/v3/cluster/member/remove" => {
            let request = pb::MemberRemoveRequest { id: input.uint("ID") };
            checked(cx.clone(), request, crate::grpc::member_remove).await.map(|r| members_json(&r.header, &r.members))
        }
        "/v3/cluster/member/update" => {
            let request = pb::MemberUpdateRequest { id: input.uint("ID"), peer_ur_ls: input.strings("peerURLs") };
            checked(cx.clone(), request, crate::grpc::member_update).await.map(|r| members_json(&r.header, &r.members))
        }
        "/v3/cluster/member/promote" => {
            let request = pb::MemberPromoteRequest { id: input.uint("ID") };
            checked(cx.clone(), request, crate::grpc::member_promote).await.map(|r| members_json(&r.header, &r.members))
        }
        "/v3/maintenance/status" => checked(cx.clone(), pb::StatusRequest {}, crate::grpc::status).await.map(|r| {
            object([
                ("header", header_json(&r.header)),
                ("version", text(&r.version)),
                ("dbSize", int(r.db_size)),
                ("leader", uint(r.leader)),
                ("raftIndex", uint(r.raft_index)),
                ("raftTerm", uint(r.raft_term)),
                ("raftAppliedIndex", uint(r.raft_applied_index)),
                ("errors", list(r.errors.iter().map(|e| text(e)))),
                ("dbSizeInUse", int(r.db_size_in_use)),
                ("isLearner", boolean(r.is_learner)),
            ])
        }),
        "/v3/cluster/member/list" => {
            let request = pb::MemberListRequest { linearizable: input.bool("linearizable") };
            checked(cx.clone(), request, crate::grpc::member_list).await.map(|r| {
                object([("header", header_json(&r.header)), ("members", list(r.members.iter().map(member_json)))])
            })
        }
        other => Err(Status::unimplemented(format!("lockstep: no JSON gateway endpoint {other}"))),
    };
    match answer {
        Ok(value) => json_response(200, &value),
        Err(status) => error_response(&status),
    }
}

/// The `/v3/auth/...` endpoints (grpc-gateway's paths for the Auth service).
async fn auth_endpoint(cx: Rc<Cx>, path: &str, input: &Input<'_>) -> Result<Value, Status> {
    let string = |name: &str| input.field(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let only_header = |h: &Option<pb::ResponseHeader>| object([("header", header_json(h))]);
    let names = |items: &[String]| list(items.iter().map(|n| text(n)));
    Ok(match path {
        "/v3/auth/enable" => only_header(&checked_auth(cx, pb::AuthEnableRequest {}, auth::auth_enable).await?.header),
        "/v3/auth/disable" => {
            only_header(&checked_auth(cx, pb::AuthDisableRequest {}, auth::auth_disable).await?.header)
        }
        "/v3/auth/status" => {
            let r = checked_auth(cx, pb::AuthStatusRequest {}, auth::auth_status_rpc).await?;
            object([
                ("header", header_json(&r.header)),
                ("enabled", boolean(r.enabled)),
                ("authRevision", uint(r.auth_revision)),
            ])
        }
        "/v3/auth/authenticate" => {
            let request = pb::AuthenticateRequest { name: string("name"), password: string("password") };
            let r = checked_auth(cx, request, auth::authenticate).await?;
            object([("header", header_json(&r.header)), ("token", text(&r.token))])
        }
        "/v3/auth/user/add" => {
            let no_password = input.field("options").is_some_and(|o| Input(o).bool("no_password"));
            let request = pb::AuthUserAddRequest {
                name: string("name"),
                password: string("password"),
                options: Some(crate::pb::authpb::UserAddOptions { no_password }),
                hashed_password: string("hashedPassword"),
            };
            only_header(&checked_auth(cx, request, auth::user_add).await?.header)
        }
        "/v3/auth/user/get" => {
            let r = checked_auth(cx, pb::AuthUserGetRequest { name: string("name") }, auth::user_get).await?;
            object([("header", header_json(&r.header)), ("roles", names(&r.roles))])
        }
        "/v3/auth/user/list" => {
            let r = checked_auth(cx, pb::AuthUserListRequest {}, auth::user_list).await?;
            object([("header", header_json(&r.header)), ("users", names(&r.users))])
        }
        "/v3/auth/user/delete" => {
            let request = pb::AuthUserDeleteRequest { name: string("name") };
            only_header(&checked_auth(cx, request, auth::user_delete).await?.header)
        }
        "/v3/auth/user/changepw" => {
            let request = pb::AuthUserChangePasswordRequest {
                name: string("name"),
                password: string("password"),
                hashed_password: string("hashedPassword"),
            };
            only_header(&checked_auth(cx, request, auth::user_change_password).await?.header)
        }
        "/v3/auth/user/grant" => {
            let request = pb::AuthUserGrantRoleRequest { user: string("user"), role: string("role") };
            only_header(&checked_auth(cx, request, auth::user_grant_role).await?.header)
        }
        "/v3/auth/user/revoke" => {
            let request = pb::AuthUserRevokeRoleRequest { name: string("name"), role: string("role") };
            only_header(&checked_auth(cx, request, auth::user_revoke_role).await?.header)
        }
        "/v3/auth/role/add" => {
            let request = pb::AuthRoleAddRequest { name: string("name") };
            only_header(&checked_auth(cx, request, auth::role_add).await?.header)
        }
        "/v3/auth/role/get" => {
            let r = checked_auth(cx, pb::AuthRoleGetRequest { role: string("role") }, auth::role_get).await?;
            let perm = |p: &crate::pb::authpb::Permission| {
                let kind = ["READ", "WRITE", "READWRITE"].get(p.perm_type as usize).copied().unwrap_or("READ");
                object([
                    // grpc-gateway omits the zero value (READ) too.
                    ("permType", if p.perm_type == 0 { Value::Null } else { text(kind) }),
                    ("key", b64(&p.key)),
                    ("range_end", b64(&p.range_end)),
                ])
            };
            object([("header", header_json(&r.header)), ("perm", list(r.perm.iter().map(perm)))])
        }
        "/v3/auth/role/list" => {
            let r = checked_auth(cx, pb::AuthRoleListRequest {}, auth::role_list).await?;
            object([("header", header_json(&r.header)), ("roles", names(&r.roles))])
        }
        "/v3/auth/role/delete" => {
            let request = pb::AuthRoleDeleteRequest { role: string("role") };
            only_header(&checked_auth(cx, request, auth::role_delete).await?.header)
        }
        "/v3/auth/role/grant" => {
            let perm = input.field("perm").map(|p| {
                let p = Input(p);
                crate::pb::authpb::Permission {
                    perm_type: p.enumeration("permType", &["READ", "WRITE", "READWRITE"]),
                    key: p.bytes("key"),
                    range_end: p.bytes("range_end"),
                }
            });
            let request = pb::AuthRoleGrantPermissionRequest { name: string("name"), perm };
            only_header(&checked_auth(cx, request, auth::role_grant_permission).await?.header)
        }
        "/v3/auth/role/revoke" => {
            let request = pb::AuthRoleRevokePermissionRequest {
                role: string("role"),
                key: input.bytes("key"),
                range_end: input.bytes("range_end"),
            };
            only_header(&checked_auth(cx, request, auth::role_revoke_permission).await?.header)
        }
        other => return Err(Status::unimplemented(format!("lockstep: no JSON gateway endpoint {other}"))),
    })
}

/// `/v3/watch`: a watcher from the body's `create_request`, its responses
/// streamed as JSON lines, as grpc-gateway streams them.
fn watch(cx: Rc<Cx>, input: &Input<'_>, fragment_bytes: usize) -> http::Response<ResponseBody> {
    use pb::watch_request::RequestUnion;
    let Some(create) = input.field("create_request") else {
        return error_response(&Status::invalid_argument("lockstep: /v3/watch needs a create_request"));
    };
    let c = Input(create);
    let filters = c.field("filters").and_then(Value::as_array).cloned().unwrap_or_default();
    let filters = filters
        .iter()
        .map(|f| match f {
            Value::String(s) if s == "NODELETE" => 1,
            Value::String(_) => 0,
            other => other.as_i64().unwrap_or(0) as i32,
        })
        .collect();
    let request = pb::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: c.bytes("key"),
            range_end: c.bytes("range_end"),
            start_revision: c.int("start_revision"),
            progress_notify: c.bool("progress_notify"),
            filters,
            prev_kv: c.bool("prev_kv"),
            watch_id: c.int("watch_id"),
            fragment: c.bool("fragment"),
        })),
    };
    let lines = crate::grpc::watch_one(cx, request, fragment_bytes).map(|answer| {
        let value = match answer {
            Ok(response) => json!({"result": watch_json(&response)}),
            Err(status) => json!({"error": {"code": status.code() as i32, "message": status.message()}}),
        };
        let mut line = value.to_string();
        line.push('\n');
        Ok::<_, Status>(http_body::Frame::data(Bytes::from(line)))
    });
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(ResponseBody::new(http_body_util::StreamBody::new(lines)))
        .expect("a valid response")
}

fn watch_json(r: &pb::WatchResponse) -> Value {
    let event = |e: &mvccpb::Event| {
        object([
            ("type", if e.r#type == 1 { text("DELETE") } else { Value::Null }),
            ("kv", e.kv.as_ref().map_or(Value::Null, kv_json)),
            ("prev_kv", e.prev_kv.as_ref().map_or(Value::Null, kv_json)),
        ])
    };
    object([
        ("header", header_json(&r.header)),
        ("watch_id", int(r.watch_id)),
        ("created", boolean(r.created)),
        ("canceled", boolean(r.canceled)),
        ("compact_revision", int(r.compact_revision)),
        ("cancel_reason", text(&r.cancel_reason)),
        ("fragment", boolean(r.fragment)),
        ("events", list(r.events.iter().map(event))),
    ])
}

/// A request's JSON object; fields are found by their proto name or its
/// lowerCamelCase form.
struct Input<'a>(&'a Value);

impl Input<'_> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.0.get(name).or_else(|| self.0.get(camel(name)))
    }

    /// A bytes field (base64; [`check_bytes_fields`] refused the body
    /// already if it is not).
    fn bytes(&self, name: &str) -> Vec<u8> {
        let text = self.field(name).and_then(Value::as_str).unwrap_or("");
        base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default()
    }

    fn int(&self, name: &str) -> i64 {
        match self.field(name) {
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            Some(v) => v.as_i64().unwrap_or(0),
            None => 0,
        }
    }

    /// A uint64 field (member ids can exceed `i64::MAX`).
    fn uint(&self, name: &str) -> u64 {
        match self.field(name) {
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            Some(v) => v.as_u64().unwrap_or(0),
            None => 0,
        }
    }

    fn bool(&self, name: &str) -> bool {
        match self.field(name) {
            Some(Value::String(s)) => s == "true",
            Some(v) => v.as_bool().unwrap_or(false),
            None => false,
        }
    }

    /// A list of strings (`peerURLs`).
    fn strings(&self, name: &str) -> Vec<String> {
        let items = self.field(name).and_then(Value::as_array).cloned().unwrap_or_default();
        items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
    }

    /// An enum field, by name (`"DESCEND"`) or number.
    fn enumeration(&self, name: &str, names: &[&str]) -> i32 {
        match self.field(name) {
            Some(Value::String(s)) => names.iter().position(|n| n == s).map_or(0, |i| i as i32),
            Some(v) => v.as_i64().unwrap_or(0) as i32,
            None => 0,
        }
    }
}

/// The names (both spellings) of the request fields that are `bytes` in
/// etcd's protos: keys, range ends and values, at any depth (txn compares
/// and ops, permissions, watch creates).
const BYTES_FIELDS: [&str; 4] = ["key", "range_end", "rangeEnd", "value"];

/// Refuses a bytes field whose text is not base64, as grpc-gateway does
/// (Go's `encoding/json`: "illegal base64 data at input byte N"). Found
/// while writing the gateway's fuzz tests: such a text used to be taken as
/// the bytes themselves, so that
/// `{"key": "foo"}` wrote the key `foo` where etcd refuses the request. The
/// depth is bounded by the JSON parser's (128).
fn check_bytes_fields(value: &Value) -> Result<(), Status> {
    use base64::DecodeError;
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                if let (true, Value::String(text)) = (BYTES_FIELDS.contains(&name.as_str()), field) {
                    if let Err(e) = base64::engine::general_purpose::STANDARD.decode(text) {
                        let at = match e {
                            DecodeError::InvalidByte(at, _) | DecodeError::InvalidLastSymbol(at, _) => at,
                            DecodeError::InvalidLength(_) | DecodeError::InvalidPadding => text.len(),
                        };
                        return Err(Status::invalid_argument(format!(
                            "illegal base64 data at input byte {at} (field `{name}`)"
                        )));
                    }
                }
                check_bytes_fields(field)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_bytes_fields),
        _ => Ok(()),
    }
}

fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn range_request(input: &Input<'_>) -> pb::RangeRequest {
    pb::RangeRequest {
        key: input.bytes("key"),
        range_end: input.bytes("range_end"),
        limit: input.int("limit"),
        revision: input.int("revision"),
        sort_order: input.enumeration("sort_order", &["NONE", "ASCEND", "DESCEND"]),
        sort_target: input.enumeration("sort_target", &["KEY", "VERSION", "CREATE", "MOD", "VALUE"]),
        serializable: input.bool("serializable"),
        keys_only: input.bool("keys_only"),
        count_only: input.bool("count_only"),
        min_mod_revision: input.int("min_mod_revision"),
        max_mod_revision: input.int("max_mod_revision"),
        min_create_revision: input.int("min_create_revision"),
        max_create_revision: input.int("max_create_revision"),
    }
}

fn put_request(input: &Input<'_>) -> pb::PutRequest {
    pb::PutRequest {
        key: input.bytes("key"),
        value: input.bytes("value"),
        lease: input.int("lease"),
        prev_kv: input.bool("prev_kv"),
        ignore_value: input.bool("ignore_value"),
        ignore_lease: input.bool("ignore_lease"),
    }
}

fn delete_request(input: &Input<'_>) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: input.bytes("key"),
        range_end: input.bytes("range_end"),
        prev_kv: input.bool("prev_kv"),
    }
}

fn txn_request(input: &Input<'_>) -> pb::TxnRequest {
    use pb::compare::TargetUnion;
    use pb::request_op::Request;
    let items = |name: &str| input.field(name).and_then(Value::as_array).cloned().unwrap_or_default();
    let compare = items("compare")
        .iter()
        .map(|c| {
            let c = Input(c);
            let target_union = if c.field("version").is_some() {
                Some(TargetUnion::Version(c.int("version")))
            } else if c.field("create_revision").is_some() {
                Some(TargetUnion::CreateRevision(c.int("create_revision")))
            } else if c.field("mod_revision").is_some() {
                Some(TargetUnion::ModRevision(c.int("mod_revision")))
            } else if c.field("value").is_some() {
                Some(TargetUnion::Value(c.bytes("value")))
            } else if c.field("lease").is_some() {
                Some(TargetUnion::Lease(c.int("lease")))
            } else {
                None
            };
            pb::Compare {
                result: c.enumeration("result", &["EQUAL", "GREATER", "LESS", "NOT_EQUAL"]),
                target: c.enumeration("target", &["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]),
                key: c.bytes("key"),
                range_end: c.bytes("range_end"),
                target_union,
            }
        })
        .collect();
    let ops = |name: &str| -> Vec<pb::RequestOp> {
        items(name)
            .iter()
            .map(|op| {
                let op = Input(op);
                let request = if let Some(r) = op.field("request_range") {
                    Some(Request::RequestRange(range_request(&Input(r))))
                } else if let Some(r) = op.field("request_put") {
                    Some(Request::RequestPut(put_request(&Input(r))))
                } else if let Some(r) = op.field("request_delete_range") {
                    Some(Request::RequestDeleteRange(delete_request(&Input(r))))
                } else {
                    op.field("request_txn").map(|r| Request::RequestTxn(txn_request(&Input(r))))
                };
                pb::RequestOp { request }
            })
            .collect()
    };
    pb::TxnRequest { compare, success: ops("success"), failure: ops("failure") }
}

fn txn_json(r: &pb::TxnResponse) -> Value {
    use pb::response_op::Response;
    let responses = r.responses.iter().map(|op| match &op.response {
        Some(Response::ResponseRange(r)) => json!({"response_range": range_json(r)}),
        Some(Response::ResponsePut(r)) => json!({"response_put": put_json(r)}),
        Some(Response::ResponseDeleteRange(r)) => json!({"response_delete_range": delete_json(r)}),
        Some(Response::ResponseTxn(r)) => json!({"response_txn": txn_json(r)}),
        None => json!({}),
    });
    object([("header", header_json(&r.header)), ("succeeded", boolean(r.succeeded)), ("responses", list(responses))])
}

fn put_json(r: &pb::PutResponse) -> Value {
    object([("header", header_json(&r.header)), ("prev_kv", r.prev_kv.as_ref().map_or(Value::Null, kv_json))])
}

fn delete_json(r: &pb::DeleteRangeResponse) -> Value {
    object([
        ("header", header_json(&r.header)),
        ("deleted", int(r.deleted)),
        ("prev_kvs", list(r.prev_kvs.iter().map(kv_json))),
    ])
}

fn range_json(r: &pb::RangeResponse) -> Value {
    object([
        ("header", header_json(&r.header)),
        ("kvs", list(r.kvs.iter().map(kv_json))),
        ("more", boolean(r.more)),
        ("count", int(r.count)),
    ])
}

/// An object without its zero-valued fields (`Null`), as grpc-gateway omits them.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (name, value) in fields {
        if !value.is_null() {
            map.insert(name.to_string(), value);
        }
    }
    Value::Object(map)
}

fn int(n: i64) -> Value {
    if n == 0 {
        Value::Null
    } else {
        Value::String(n.to_string())
    }
}

fn uint(n: u64) -> Value {
    if n == 0 {
        Value::Null
    } else {
        Value::String(n.to_string())
    }
}

fn boolean(b: bool) -> Value {
    if b {
        Value::Bool(true)
    } else {
        Value::Null
    }
}

fn text(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

fn b64(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

fn list(items: impl Iterator<Item = Value>) -> Value {
    let items: Vec<Value> = items.collect();
    if items.is_empty() {
        Value::Null
    } else {
        Value::Array(items)
    }
}

fn header_json(header: &Option<pb::ResponseHeader>) -> Value {
    let Some(h) = header else { return Value::Null };
    object([
        ("cluster_id", uint(h.cluster_id)),
        ("member_id", uint(h.member_id)),
        ("revision", int(h.revision)),
        ("raft_term", uint(h.raft_term)),
    ])
}

fn kv_json(kv: &mvccpb::KeyValue) -> Value {
    object([
        ("key", b64(&kv.key)),
        ("create_revision", int(kv.create_revision)),
        ("mod_revision", int(kv.mod_revision)),
        ("version", int(kv.version)),
        ("value", b64(&kv.value)),
        ("lease", int(kv.lease)),
    ])
}

fn member_json(m: &pb::Member) -> Value {
    object([
        ("ID", uint(m.id)),
        ("name", text(&m.name)),
        ("peerURLs", list(m.peer_ur_ls.iter().map(|u| text(u)))),
        ("clientURLs", list(m.client_ur_ls.iter().map(|u| text(u)))),
        ("isLearner", boolean(m.is_learner)),
    ])
}

fn members_json(header: &Option<pb::ResponseHeader>, members: &[pb::Member]) -> Value {
    object([("header", header_json(header)), ("members", list(members.iter().map(member_json)))])
}

fn json_response(status: u16, value: &Value) -> http::Response<ResponseBody> {
    let body = http_body_util::Full::new(Bytes::from(value.to_string()))
        .map_err(|never: std::convert::Infallible| match never {});
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(ResponseBody::new(body))
        .expect("a valid response")
}

/// grpc-gateway's error answer: the HTTP status of the gRPC code.
pub(crate) fn error_response(status: &Status) -> http::Response<ResponseBody> {
    let http_status = match status.code() {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::Unauthenticated => 401,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    };
    let message = status.message();
    json_response(http_status, &json!({"error": message, "code": status.code() as i32, "message": message}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_found_in_both_spellings() {
        assert_eq!(camel("range_end"), "rangeEnd");
        let value = json!({"rangeEnd": "Zm9v", "limit": "3", "keys_only": true});
        let input = Input(&value);
        assert_eq!(input.bytes("range_end"), b"foo");
        assert_eq!(input.int("limit"), 3);
        assert!(input.bool("keys_only"));
    }
}
