//! Entry points for fuzzing the decoders of the client port: gRPC requests of
//! every etcd method (the 5-byte length-prefixed framing, the compression
//! flag, the size limit, then prost) and JSON gateway bodies.
//!
//! The property tests (`api/tests/fuzz_grpc.rs`, `api/tests/fuzz_gateway.rs`)
//! and the coverage-guided targets under `fuzz/` call the same functions, so
//! an input either finds is replayed by the other. Not part of the API.
//!
//! A [`Harness`] is one [`EtcdService`] over a [`MemoryBackend`], driven in
//! process without a runtime: the handler future and the response body are
//! polled with a no-op waker until they finish or wait. A memory backend never
//! waits for anything but new events (an open watch stream), so a request
//! whose answer is still pending after [`POLLS_MAX`] polls, or whose body has
//! more than [`FRAMES_MAX`] frames ready, counts as a hang.

use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::Body;
use http_body_util::Full;
use lockstep_core::kv::KvConfig;

use crate::auth::{AuthConfig, Authenticator};
use crate::backend::HeaderInfo;
use crate::grpc::{EtcdService, ResponseBody, ServiceConfig};
use crate::memory::MemoryBackend;

/// The path of every gRPC method the service routes.
pub const GRPC_METHODS: &[&str] = &[
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.KV/Compact",
    "/etcdserverpb.Lease/LeaseGrant",
    "/etcdserverpb.Lease/LeaseRevoke",
    "/etcdserverpb.Lease/LeaseTimeToLive",
    "/etcdserverpb.Lease/LeaseLeases",
    "/etcdserverpb.Lease/LeaseKeepAlive",
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Maintenance/Alarm",
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Maintenance/Hash",
    "/etcdserverpb.Maintenance/HashKV",
    "/etcdserverpb.Maintenance/Defragment",
    "/etcdserverpb.Maintenance/MoveLeader",
    "/etcdserverpb.Maintenance/Snapshot",
    "/etcdserverpb.Cluster/MemberList",
    "/etcdserverpb.Cluster/MemberAdd",
    "/etcdserverpb.Cluster/MemberRemove",
    "/etcdserverpb.Cluster/MemberUpdate",
    "/etcdserverpb.Cluster/MemberPromote",
    "/etcdserverpb.Auth/AuthEnable",
    "/etcdserverpb.Auth/AuthDisable",
    "/etcdserverpb.Auth/AuthStatus",
    "/etcdserverpb.Auth/Authenticate",
    "/etcdserverpb.Auth/UserAdd",
    "/etcdserverpb.Auth/UserGet",
    "/etcdserverpb.Auth/UserList",
    "/etcdserverpb.Auth/UserDelete",
    "/etcdserverpb.Auth/UserChangePassword",
    "/etcdserverpb.Auth/UserGrantRole",
    "/etcdserverpb.Auth/UserRevokeRole",
    "/etcdserverpb.Auth/RoleAdd",
    "/etcdserverpb.Auth/RoleGet",
    "/etcdserverpb.Auth/RoleList",
    "/etcdserverpb.Auth/RoleDelete",
    "/etcdserverpb.Auth/RoleGrantPermission",
    "/etcdserverpb.Auth/RoleRevokePermission",
];

/// The path of every JSON gateway endpoint.
pub const GATEWAY_PATHS: &[&str] = &[
    "/v3/kv/range",
    "/v3/kv/put",
    "/v3/kv/deleterange",
    "/v3/kv/txn",
    "/v3/kv/compaction",
    "/v3/lease/grant",
    "/v3/lease/revoke",
    "/v3/lease/timetolive",
    "/v3/lease/leases",
    "/v3/lease/keepalive",
    "/v3/maintenance/status",
    "/v3/maintenance/alarm",
    "/v3/maintenance/defragment",
    "/v3/maintenance/hash",
    "/v3/maintenance/hashkv",
    "/v3/maintenance/transfer-leadership",
    "/v3/cluster/member/list",
    "/v3/cluster/member/add",
    "/v3/cluster/member/remove",
    "/v3/cluster/member/update",
    "/v3/cluster/member/promote",
    "/v3/watch",
    "/v3/auth/enable",
    "/v3/auth/disable",
    "/v3/auth/status",
    "/v3/auth/authenticate",
    "/v3/auth/user/add",
    "/v3/auth/user/get",
    "/v3/auth/user/list",
    "/v3/auth/user/delete",
    "/v3/auth/user/changepw",
    "/v3/auth/user/grant",
    "/v3/auth/user/revoke",
    "/v3/auth/role/add",
    "/v3/auth/role/get",
    "/v3/auth/role/list",
    "/v3/auth/role/delete",
    "/v3/auth/role/grant",
    "/v3/auth/role/revoke",
];

/// Polls of a handler future before it counts as hung.
pub const POLLS_MAX: usize = 64;
/// Ready frames of one response body before it counts as endless.
pub const FRAMES_MAX: usize = 10_000;
/// The request size limit of the harness's service (small, so that the
/// limit's own path is reached by fuzzed inputs too).
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;

/// What a gRPC call answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcOutcome {
    /// `grpc-status` (from the trailers, or the headers of a trailers-only
    /// answer); `None` if the answer has none (a stream still open).
    pub code: Option<i32>,
    /// `grpc-message`, as sent (percent-encoded).
    pub message: String,
    /// The response body's data bytes (length-prefixed messages).
    pub data: Vec<u8>,
    /// Whether the body ended (false: a stream still open, waiting).
    pub ended: bool,
}

/// What a JSON gateway call answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOutcome {
    /// The HTTP status.
    pub status: u16,
    /// The `content-type` header.
    pub content_type: String,
    /// The body bytes ready so far.
    pub body: Vec<u8>,
    /// Whether the body ended (false: a watch stream still open).
    pub ended: bool,
}

/// A failure of the harness itself: a request that hung.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hang(pub String);

/// One service over a fresh in-memory backend.
pub struct Harness {
    service: EtcdService,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::new()
    }
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").finish_non_exhaustive()
    }
}

impl Harness {
    /// An empty store; bcrypt at its lowest cost (fuzzed `UserAdd`s would
    /// otherwise spend most of the time hashing).
    pub fn new() -> Harness {
        let info = HeaderInfo { cluster_id: 0x1234, member_id: 0xabcd, raft_term: 2 };
        let backend = Rc::new(MemoryBackend::new(info, KvConfig::default()));
        let config = ServiceConfig { request_bytes_max: REQUEST_BYTES_MAX, ..ServiceConfig::default() };
        let auth = Rc::new(Authenticator::new(AuthConfig { bcrypt_cost: 4, ..AuthConfig::default() }));
        Harness { service: EtcdService::new(backend, config).with_auth(auth) }
    }

    /// Sends `body` (raw bytes: the caller frames it, or not) to the gRPC
    /// method `path` with `headers` besides `content-type: application/grpc`.
    ///
    /// # Errors
    /// [`Hang`] if the answer does not come.
    pub fn grpc(&self, path: &str, headers: &[(String, String)], body: &[u8]) -> Result<GrpcOutcome, Hang> {
        let mut builder = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{}", safe_path(path)))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
            {
                builder = builder.header(name, value);
            }
        }
        let request = builder.body(Full::new(Bytes::copy_from_slice(body))).expect("a valid request");
        let response = poll_ready(self.service.handle(request)).ok_or_else(|| Hang(format!("{path}: no answer")))?;
        let (parts, body) = response.into_parts();
        let (data, trailers, ended) = drain(body).map_err(|e| Hang(format!("{path}: {e}")))?;
        let field = |name: &str| {
            trailers
                .as_ref()
                .and_then(|t| t.get(name))
                .or(parts.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(GrpcOutcome {
            code: field("grpc-status").map(|c| c.parse().unwrap_or(-1)),
            message: field("grpc-message").unwrap_or_default(),
            data,
            ended,
        })
    }

    /// Sends `body` to the JSON gateway at `path` with `headers`.
    ///
    /// # Errors
    /// [`Hang`] if the answer does not come.
    pub fn gateway(&self, path: &str, headers: &[(String, String)], body: &[u8]) -> Result<HttpOutcome, Hang> {
        let mut builder = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{}", safe_path(path)))
            .header("content-type", "application/json");
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
            {
                if name != http::header::CONTENT_TYPE {
                    builder = builder.header(name, value);
                }
            }
        }
        let request = builder.body(Full::new(Bytes::copy_from_slice(body))).expect("a valid request");
        let response = poll_ready(self.service.handle(request)).ok_or_else(|| Hang(format!("{path}: no answer")))?;
        let (parts, body) = response.into_parts();
        let (body, _, ended) = drain(body).map_err(|e| Hang(format!("{path}: {e}")))?;
        let content_type =
            parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        Ok(HttpOutcome { status: parts.status.as_u16(), content_type, body, ended })
    }
}

/// `path` if a URI can carry it, else `/` followed by its bytes
/// percent-encoded (random paths must still make a request).
fn safe_path(path: &str) -> String {
    if path.starts_with('/') && http::uri::PathAndQuery::try_from(path).is_ok() {
        return path.to_string();
    }
    let mut out = String::from("/");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Polls `future` with a no-op waker until it is ready, at most
/// [`POLLS_MAX`] times; `None` if it is still pending.
pub fn poll_ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..POLLS_MAX {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
    }
    None
}

/// The data bytes, trailers and whether the body ended, reading frames
/// until the body ends or waits. A frame error ends the body (hyper would
/// reset the stream).
fn drain(body: ResponseBody) -> Result<(Vec<u8>, Option<http::HeaderMap>, bool), String> {
    let mut body = pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    let mut data = Vec::new();
    let mut trailers = None;
    for _ in 0..FRAMES_MAX {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            },
            Poll::Ready(Some(Err(status))) => {
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", http::HeaderValue::from(status.code() as i32));
                t.insert(
                    "grpc-message",
                    http::HeaderValue::from_str(status.message()).unwrap_or(http::HeaderValue::from_static("?")),
                );
                return Ok((data, Some(t), true));
            }
            Poll::Ready(None) => return Ok((data, trailers, true)),
            Poll::Pending => return Ok((data, trailers, false)),
        }
    }
    Err(format!("more than {FRAMES_MAX} frames ready"))
}

/// Frames `message` as one gRPC message: the compression flag, the length
/// (big-endian `u32`) and the bytes.
pub fn frame(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(u8::from(compressed));
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The length-prefixed messages of a response body; `None` if the framing
/// is broken (a message cut short, or compressed).
pub fn messages(mut data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 5 || data[0] != 0 {
            return None;
        }
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        let message = data.get(5..5 + len)?;
        out.push(message.to_vec());
        data = &data[5 + len..];
    }
    Some(out)
}

/// The single entry of the coverage-guided gRPC target: the first byte picks
/// the method, the rest is the request body as sent (framing included).
/// Panics on a hang, so that the fuzzer reports it.
pub fn grpc_target(harness: &Harness, input: &[u8]) -> Option<GrpcOutcome> {
    let (&pick, body) = input.split_first()?;
    let path = GRPC_METHODS[usize::from(pick) % GRPC_METHODS.len()];
    Some(harness.grpc(path, &[], body).expect("no hang"))
}

/// The single entry of the coverage-guided gateway target: the first byte
/// picks the path, the rest is the JSON body.
pub fn gateway_target(harness: &Harness, input: &[u8]) -> Option<HttpOutcome> {
    let (&pick, body) = input.split_first()?;
    let path = GATEWAY_PATHS[usize::from(pick) % GATEWAY_PATHS.len()];
    Some(harness.gateway(path, &[], body).expect("no hang"))
}
