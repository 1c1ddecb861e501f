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

use crate::backend::Backend;
use crate::grpc::ResponseBody;
use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Answers one JSON gateway request (bodies up to `body_bytes_max`; watch
/// responses fragmented at `fragment_bytes` when asked).
pub async fn handle<B>(
    backend: Rc<dyn Backend>,
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
    let input = Input(&input);
    if path == "/v3/watch" {
        return watch(backend, &input, fragment_bytes);
    }
    let answer = match path.as_str() {
        "/v3/kv/range" => crate::grpc::range(backend, range_request(&input)).await.map(|r| range_json(&r)),
        "/v3/kv/put" => crate::grpc::put(backend, put_request(&input)).await.map(|r| put_json(&r)),
        "/v3/kv/deleterange" => {
            crate::grpc::delete_range(backend, delete_request(&input)).await.map(|r| delete_json(&r))
        }
        "/v3/kv/txn" => crate::grpc::txn(backend, txn_request(&input)).await.map(|r| txn_json(&r)),
        "/v3/kv/compaction" => {
            let request = pb::CompactionRequest { revision: input.int("revision"), physical: input.bool("physical") };
            crate::grpc::compact(backend, request).await.map(|r| object([("header", header_json(&r.header))]))
        }
        "/v3/lease/grant" => {
            let request = pb::LeaseGrantRequest { ttl: input.int("TTL"), id: input.int("ID") };
            crate::grpc::lease_grant(backend, request).await.map(|r| {
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
            crate::grpc::lease_revoke(backend, request).await.map(|r| object([("header", header_json(&r.header))]))
        }
        "/v3/lease/timetolive" | "/v3/kv/lease/timetolive" => {
            let request = pb::LeaseTimeToLiveRequest { id: input.int("ID"), keys: input.bool("keys") };
            crate::grpc::lease_time_to_live(backend, request).await.map(|r| {
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
            crate::grpc::lease_leases(backend, pb::LeaseLeasesRequest {}).await.map(|r| {
                object([
                    ("header", header_json(&r.header)),
                    ("leases", list(r.leases.iter().map(|l| object([("ID", int(l.id))])))),
                ])
            })
        }
        "/v3/lease/keepalive" => {
            let request = pb::LeaseKeepAliveRequest { id: input.int("ID") };
            crate::grpc::keep_alive_one(&*backend, request).await.map(|r| {
                json!({"result": object([("header", header_json(&r.header)), ("ID", int(r.id)), ("TTL", int(r.ttl))])})
            })
        }
        "/v3/maintenance/alarm" => {
            let request = pb::AlarmRequest {
                action: input.enumeration("action", &["GET", "ACTIVATE", "DEACTIVATE"]),
                member_id: input.uint("memberID"),
                alarm: input.enumeration("alarm", &["NONE", "NOSPACE", "CORRUPT"]),
            };
            crate::grpc::alarm(backend, request).await.map(|r| {
                let alarm = |a: &pb::AlarmMember| {
                    let kind = ["NONE", "NOSPACE", "CORRUPT"].get(a.alarm as usize).copied().unwrap_or("NONE");
                    object([("memberID", uint(a.member_id)), ("alarm", text(kind))])
                };
                object([("header", header_json(&r.header)), ("alarms", list(r.alarms.iter().map(alarm)))])
            })
        }
        "/v3/maintenance/defragment" => crate::grpc::defragment(backend, pb::DefragmentRequest {})
            .await
            .map(|r| object([("header", header_json(&r.header))])),
        "/v3/maintenance/hash" => crate::grpc::hash(backend, pb::HashRequest {})
            .await
            .map(|r| object([("header", header_json(&r.header)), ("hash", uint(u64::from(r.hash)))])),
        "/v3/maintenance/hashkv" => {
            let request = pb::HashKvRequest { revision: input.int("revision") };
            crate::grpc::hash_kv(backend, request).await.map(|r| {
                object([
                    ("header", header_json(&r.header)),
                    ("hash", uint(u64::from(r.hash))),
                    ("compact_revision", int(r.compact_revision)),
                ])
            })
        }
        "/v3/maintenance/transfer-leadership" => {
            let request = pb::MoveLeaderRequest { target_id: input.uint("targetID") };
            crate::grpc::move_leader(backend, request).await.map(|r| object([("header", header_json(&r.header))]))
        }
        "/v3/cluster/member/add" => {
            let request =
                pb::MemberAddRequest { peer_ur_ls: input.strings("peerURLs"), is_learner: input.bool("isLearner") };
            crate::grpc::member_add(backend, request).await.map(|r| {
                object([
                    ("header", header_json(&r.header)),
                    ("member", r.member.as_ref().map_or(Value::Null, member_json)),
                    ("members", list(r.members.iter().map(member_json))),
                ])
            })
        }
        "/v3/cluster/member/remove" => {
            let request = pb::MemberRemoveRequest { id: input.uint("ID") };
            crate::grpc::member_remove(backend, request).await.map(|r| members_json(&r.header, &r.members))
        }
        "/v3/cluster/member/update" => {
            let request = pb::MemberUpdateRequest { id: input.uint("ID"), peer_ur_ls: input.strings("peerURLs") };
            crate::grpc::member_update(backend, request).await.map(|r| members_json(&r.header, &r.members))
        }
        "/v3/cluster/member/promote" => {
            let request = pb::MemberPromoteRequest { id: input.uint("ID") };
            crate::grpc::member_promote(backend, request).await.map(|r| members_json(&r.header, &r.members))
        }
        "/v3/maintenance/status" => crate::grpc::status(backend, pb::StatusRequest {}).await.map(|r| {
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
            crate::grpc::member_list(backend, request).await.map(|r| {
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

/// `/v3/watch`: a watcher from the body's `create_request`, its responses
/// streamed as JSON lines, as grpc-gateway streams them.
fn watch(backend: Rc<dyn Backend>, input: &Input<'_>, fragment_bytes: usize) -> http::Response<ResponseBody> {
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
    let lines = crate::grpc::watch_one(backend, request, fragment_bytes).map(|answer| {
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

    fn bytes(&self, name: &str) -> Vec<u8> {
        let text = self.field(name).and_then(Value::as_str).unwrap_or("");
        base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_else(|_| text.as_bytes().to_vec())
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
fn error_response(status: &Status) -> http::Response<ResponseBody> {
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
