//! [`EtcdService`]: etcd's v3 gRPC API as a `hyper` service over a [`Backend`].
//!
//! The service is written by hand instead of using tonic's generated server
//! traits, which require `Send` futures: here one service and its backend live
//! on one executor thread (`Rc`, not `Arc`), and handlers await the backend's
//! thread-local futures. tonic still does the gRPC work: `tonic::server::Grpc`
//! for unary calls, `tonic::Streaming` to decode request streams and
//! `tonic::codec::EncodeBody` to encode response streams, with prost messages.
//!
//! Routes:
//!
//! | path | backend call |
//! |---|---|
//! | `/etcdserverpb.KV/Range` | `read` (linearizable unless `serializable`) |
//! | `/etcdserverpb.KV/{Put,DeleteRange,Compact}` | `write` |
//! | `/etcdserverpb.KV/Txn` | `write` if it puts or deletes, else `read` (serializable if all its ranges are) |
//! | `/etcdserverpb.Lease/{LeaseGrant,LeaseRevoke}` | `write` |
//! | `/etcdserverpb.Lease/LeaseTimeToLive` | `leader_request` (the leader knows the TTL) |
//! | `/etcdserverpb.Lease/LeaseLeases` | linearizable `read` |
//! | `/etcdserverpb.Lease/LeaseKeepAlive` (bidi stream) | `leader_request` per message |
//! | `/etcdserverpb.Watch/Watch` (bidi stream) | `watch_*` |
//! | `/etcdserverpb.Maintenance/Alarm` | `read` (GET) or `write` |
//! | `/etcdserverpb.Maintenance/Status` | `status` |
//! | `/etcdserverpb.Cluster/MemberList` | `members` |
//! | `/etcdserverpb.Cluster/{MemberAdd,MemberRemove,MemberUpdate,MemberPromote}` | `member_add`, `member_remove`, `member_update`, `member_promote` |
//! | `/etcdserverpb.Maintenance/Snapshot` (server stream) | `snapshot`, sent in 32 KiB chunks |
//! | `/etcdserverpb.Maintenance/{Hash,HashKV,MoveLeader}` | `hash`, `hash_kv`, `move_leader` |
//! | `/etcdserverpb.Maintenance/Defragment` | none: answers OK (fjall compacts online) |
//! | `/etcdserverpb.Auth/*` | [`crate::auth`]: `write` of `KvCommand::Auth`, or a linearizable `read` and `auth()` |
//!
//! Every call is first checked against the member's rate limits (the global
//! bucket before anything else, the caller's own bucket once its token is
//! resolved) and then against the caller's permissions while auth is enabled
//! (see [`crate::auth`]); puts, lease grants and watch creates are checked
//! against the size and count limits too (see [`crate::limits`]).
//!
//! Any other path answers `UNIMPLEMENTED`. Errors are etcd's statuses
//! ([`crate::status`]).
//!
//! # Watch streams
//!
//! One stream carries many watchers. Create requests add a watcher to the
//! backend's hub and remember it for this stream; the stream then forwards
//! each of its watchers' buffered responses (`created` first, then events in
//! revision order, and the compacted cancel with `compact_revision`), taking
//! one response per watcher in turn. Cancel requests remove a watcher of this
//! stream (ids of other streams are ignored, as etcd does). A progress request
//! queues a progress notification for every synced watcher of the hub (each
//! one correct for its watcher; watchers on other streams get one too). A
//! watcher created with `fragment` has responses larger than
//! [`ServiceConfig::watch_fragment_bytes`] split as etcd splits them. When the
//! client half-closes, the stream goes on delivering, as etcd's does; when the
//! stream goes away, its watchers are canceled.

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::{FutureExt, Stream};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use lockstep_core::kv::{self, KvCommand, KvError, KvQuery, KvResponse, WatchId};
use prost::Message;
use tonic::codec::{Codec, EncodeBody, SingleMessageCompressionOverride, Streaming};
use tonic::server::Grpc;
use tonic::Status;
use tonic_prost::ProstCodec;

use crate::audit::AuditSink;
use crate::auth::{self, checked, checked_auth, Authenticator, Cx};
use crate::backend::{Backend, BackendError};
use crate::convert::ToPb;
use crate::limits::{ConnectionPermit, Limiter};
use crate::pb::etcdserverpb as pb;
use crate::status::{backend_error, kv_error};

/// The etcd version reported by `Maintenance/Status`: lockstep implements
/// etcd 3.5's API, and clients compare this string to decide what they may use.
pub const ETCD_VERSION: &str = "3.5.0";

/// The size of one `Maintenance/Snapshot` message (etcd's: 32 KiB).
pub const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Limits of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Largest request message decoded; larger ones fail with
    /// `OUT_OF_RANGE` before reaching the backend. etcd allows its request
    /// limit (1.5 MiB) plus 512 KiB of gRPC overhead.
    pub request_bytes_max: usize,
    /// Watch responses of watchers created with `fragment` are split into
    /// pieces below this size (etcd uses its request limit, 1.5 MiB).
    pub watch_fragment_bytes: usize,
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig { request_bytes_max: (1536 + 512) * 1024, watch_fragment_bytes: 1536 * 1024 }
    }
}

/// The body of every response of [`EtcdService`]: a boxed, `!Send` HTTP body
/// (streams hold the backend's `Rc`).
pub struct ResponseBody(Pin<Box<dyn Body<Data = Bytes, Error = Status>>>);

impl ResponseBody {
    /// Boxes a body.
    pub fn new(body: impl Body<Data = Bytes, Error = Status> + 'static) -> ResponseBody {
        ResponseBody(Box::pin(body))
    }
}

impl Default for ResponseBody {
    /// An empty body.
    fn default() -> ResponseBody {
        ResponseBody::new(http_body_util::Empty::new().map_err(|never: Infallible| match never {}))
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.0.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// etcd's v3 gRPC API over a [`Backend`]. Cheap to clone (one per connection
/// is fine); see the module doc for routes and semantics.
#[derive(Clone)]
pub struct EtcdService {
    backend: Rc<dyn Backend>,
    config: ServiceConfig,
    auth: Rc<Authenticator>,
    audit: Option<Rc<dyn AuditSink>>,
    limits: Rc<Limiter>,
    /// The client's address, for a service serving one connection.
    peer: Option<SocketAddr>,
    /// That connection's slot in its source's count, freed when the last
    /// clone of the service goes away with the connection.
    _permit: Option<Rc<ConnectionPermit>>,
}

impl std::fmt::Debug for EtcdService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdService").field("config", &self.config).finish_non_exhaustive()
    }
}

impl EtcdService {
    /// A service answering from `backend`.
    pub fn new(backend: Rc<dyn Backend>, config: ServiceConfig) -> EtcdService {
        EtcdService {
            backend,
            config,
            auth: Rc::new(Authenticator::default()),
            audit: None,
            limits: Rc::new(Limiter::default()),
            peer: None,
            _permit: None,
        }
    }

    /// The same service under `limits` (one limiter per member: its buckets
    /// and counts are the member's).
    pub fn with_limits(mut self, limits: Rc<Limiter>) -> EtcdService {
        self.limits = limits;
        self
    }

    /// The member's limiter.
    pub fn limits(&self) -> &Rc<Limiter> {
        &self.limits
    }

    /// The service for one new connection from `peer`: it knows the client's
    /// address (for the failed-login lock-out per source) and holds a slot of
    /// the connections per source; `None` (counted) when that source has
    /// `max_connections_per_source` connections open already.
    pub fn for_connection(&self, peer: Option<SocketAddr>) -> Option<EtcdService> {
        let permit = match peer {
            Some(peer) => Some(Rc::new(self.limits.open_connection(peer.ip())?)),
            None => None,
        };
        Some(EtcdService { peer, _permit: permit, ..self.clone() })
    }

    /// The same service with `auth`'s tokens and settings (one authenticator
    /// per member: its simple tokens live there).
    pub fn with_auth(mut self, auth: Rc<Authenticator>) -> EtcdService {
        self.auth = auth;
        self
    }

    /// The same service reporting security-relevant requests (auth changes,
    /// logins, membership changes, refusals) to `audit` (see
    /// [`crate::audit`]). The client's address is read from the request's
    /// `std::net::SocketAddr` extension, which the server that accepted the
    /// connection inserts.
    pub fn with_audit(mut self, audit: Rc<dyn AuditSink>) -> EtcdService {
        self.audit = Some(audit);
        self
    }

    /// A request's context: its caller, and where its audit records go.
    /// The client's address comes from [`EtcdService::for_connection`] or,
    /// failing that, the request's `SocketAddr` extension.
    async fn context<B>(&self, request: &http::Request<B>) -> Rc<Cx> {
        let peer = self.peer.or_else(|| request.extensions().get::<SocketAddr>().copied());
        let cx = Cx::new(
            self.backend.clone(),
            self.auth.clone(),
            self.limits.clone(),
            peer.map(|p| p.ip()),
            request.headers(),
        )
        .await;
        if self.audit.is_none() {
            return Rc::new(cx);
        }
        let source = peer.map_or_else(|| "local".to_string(), |p| p.to_string());
        Rc::new(cx.with_audit(self.audit.clone(), &source, request.uri().path()))
    }

    /// Answers one HTTP request: a gRPC call, or (any other content type) a
    /// JSON gateway call ([`crate::gateway`]).
    pub async fn handle<B>(&self, request: http::Request<B>) -> http::Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
    {
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        if let Err(status) = self.limits.admit_global() {
            return self.refuse(request, grpc, status).await;
        }
        let cx = self.context(&request).await;
        if let Some(user) = cx.user() {
            if let Err(status) = self.limits.admit_user(&user) {
                return self.refuse(request, grpc, status).await;
            }
        }
        if !grpc {
            return crate::gateway::handle(
                cx,
                request,
                self.config.request_bytes_max,
                self.config.watch_fragment_bytes,
            )
            .await;
        }
        match request.uri().path() {
            "/etcdserverpb.KV/Range" => self.unary(request, |r| checked(cx.clone(), r, range)).await,
            "/etcdserverpb.KV/Put" => self.unary(request, |r| checked(cx.clone(), r, put)).await,
            "/etcdserverpb.KV/DeleteRange" => self.unary(request, |r| checked(cx.clone(), r, delete_range)).await,
            "/etcdserverpb.KV/Txn" => self.unary(request, |r| checked(cx.clone(), r, txn)).await,
            "/etcdserverpb.KV/Compact" => self.unary(request, |r| checked(cx.clone(), r, compact)).await,
            "/etcdserverpb.Lease/LeaseGrant" => self.unary(request, |r| checked(cx.clone(), r, lease_grant)).await,
            "/etcdserverpb.Lease/LeaseRevoke" => self.unary(request, |r| checked(cx.clone(), r, lease_revoke)).await,
            "/etcdserverpb.Lease/LeaseTimeToLive" => {
                self.unary(request, |r| checked(cx.clone(), r, lease_time_to_live)).await
            }
            "/etcdserverpb.Lease/LeaseLeases" => self.unary(request, |r| checked(cx.clone(), r, lease_leases)).await,
            "/etcdserverpb.Lease/LeaseKeepAlive" => self.lease_keep_alive(request),
            "/etcdserverpb.Watch/Watch" => self.watch(request, cx),
            "/etcdserverpb.Maintenance/Alarm" => self.unary(request, |r| checked(cx.clone(), r, alarm)).await,
            "/etcdserverpb.Maintenance/Status" => self.unary(request, |r| checked(cx.clone(), r, status)).await,
            "/etcdserverpb.Cluster/MemberList" => self.unary(request, |r| checked(cx.clone(), r, member_list)).await,
            "/etcdserverpb.Cluster/MemberAdd" => self.unary(request, |r| checked(cx.clone(), r, member_add)).await,
            "/etcdserverpb.Cluster/MemberRemove" => {
                self.unary(request, |r| checked(cx.clone(), r, member_remove)).await
            }
            "/etcdserverpb.Cluster/MemberUpdate" => {
                self.unary(request, |r| checked(cx.clone(), r, member_update)).await
            }
            "/etcdserverpb.Cluster/MemberPromote" => {
                self.unary(request, |r| checked(cx.clone(), r, member_promote)).await
            }
            "/etcdserverpb.Maintenance/Hash" => self.unary(request, |r| checked(cx.clone(), r, hash)).await,
            "/etcdserverpb.Maintenance/HashKV" => self.unary(request, |r| checked(cx.clone(), r, hash_kv)).await,
            "/etcdserverpb.Maintenance/Defragment" => self.unary(request, |r| checked(cx.clone(), r, defragment)).await,
            "/etcdserverpb.Maintenance/MoveLeader" => {
                self.unary(request, |r| checked(cx.clone(), r, move_leader)).await
            }
            "/etcdserverpb.Maintenance/Snapshot" => self.snapshot(request, &cx).await,
            "/etcdserverpb.Auth/AuthEnable" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::auth_enable)).await
            }
            "/etcdserverpb.Auth/AuthDisable" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::auth_disable)).await
            }
            "/etcdserverpb.Auth/AuthStatus" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::auth_status_rpc)).await
            }
            "/etcdserverpb.Auth/Authenticate" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::authenticate)).await
            }
            "/etcdserverpb.Auth/UserAdd" => self.unary(request, |r| checked_auth(cx.clone(), r, auth::user_add)).await,
            "/etcdserverpb.Auth/UserGet" => self.unary(request, |r| checked_auth(cx.clone(), r, auth::user_get)).await,
            "/etcdserverpb.Auth/UserList" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::user_list)).await
            }
            "/etcdserverpb.Auth/UserDelete" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::user_delete)).await
            }
            "/etcdserverpb.Auth/UserChangePassword" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::user_change_password)).await
            }
            "/etcdserverpb.Auth/UserGrantRole" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::user_grant_role)).await
            }
            "/etcdserverpb.Auth/UserRevokeRole" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::user_revoke_role)).await
            }
            "/etcdserverpb.Auth/RoleAdd" => self.unary(request, |r| checked_auth(cx.clone(), r, auth::role_add)).await,
            "/etcdserverpb.Auth/RoleGet" => self.unary(request, |r| checked_auth(cx.clone(), r, auth::role_get)).await,
            "/etcdserverpb.Auth/RoleList" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::role_list)).await
            }
            "/etcdserverpb.Auth/RoleDelete" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::role_delete)).await
            }
            "/etcdserverpb.Auth/RoleGrantPermission" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::role_grant_permission)).await
            }
            "/etcdserverpb.Auth/RoleRevokePermission" => {
                self.unary(request, |r| checked_auth(cx.clone(), r, auth::role_revoke_permission)).await
            }
            path => Status::unimplemented(format!("lockstep: unknown method {path}")).into_http(),
        }
    }

    /// Answers a request refused by a rate limit with `status` (gRPC), or
    /// its HTTP status and JSON error (the gateway). The request body is read
    /// to its end first (up to the request size limit), as a served call's
    /// is: HTTP/2 (h2) counts streams answered with their request data
    /// unread and closes a connection that gathers too many
    /// (`ENHANCE_YOUR_CALM`), which would cut a client over its rate off
    /// altogether. Client streams (Watch, LeaseKeepAlive) do not end, so
    /// they are answered at once.
    async fn refuse<B>(&self, request: http::Request<B>, grpc: bool, status: Status) -> http::Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
    {
        let streaming =
            matches!(request.uri().path(), "/etcdserverpb.Watch/Watch" | "/etcdserverpb.Lease/LeaseKeepAlive");
        if !streaming {
            let _ = http_body_util::Limited::new(request.into_body(), self.config.request_bytes_max).collect().await;
        }
        if grpc {
            status.into_http()
        } else {
            crate::gateway::error_response(&status)
        }
    }

    /// Decodes one request message, runs `handler` on it and encodes its answer.
    async fn unary<B, Req, Resp, F, Fut>(
        &self,
        request: http::Request<B>,
        mut handler: F,
    ) -> http::Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
        Req: Message + Default + Send + 'static,
        Resp: Message + Send + 'static,
        F: FnMut(Req) -> Fut,
        Fut: Future<Output = Result<Resp, Status>>,
    {
        let mut grpc = Grpc::new(ProstCodec::<Resp, Req>::default())
            .max_decoding_message_size(self.config.request_bytes_max)
            .max_encoding_message_size(usize::MAX);
        let service = tower::service_fn(move |r: tonic::Request<Req>| {
            let answer = handler(r.into_inner());
            async move { answer.await.map(tonic::Response::new) }
        });
        let mut response = grpc.unary(service, request).await;
        grpc_go_size_error(response.headers_mut());
        response.map(ResponseBody::new)
    }

    /// A streaming response from a stream of messages.
    fn stream_response<Req, Resp>(
        &self,
        items: impl Stream<Item = Result<Resp, Status>> + 'static,
    ) -> http::Response<ResponseBody>
    where
        Req: Message + Default + Send + 'static,
        Resp: Message + Send + 'static,
    {
        let mut codec = ProstCodec::<Resp, Req>::default();
        let body =
            EncodeBody::new_server(codec.encoder(), items, None, SingleMessageCompressionOverride::default(), None);
        let mut response = http::Response::new(ResponseBody::new(body));
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
        response
    }

    /// The request messages of a streaming call.
    fn request_stream<B, Req, Resp>(&self, request: http::Request<B>) -> Streaming<Req>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
        Req: Message + Default + Send + 'static,
        Resp: Message + Send + 'static,
    {
        let mut codec = ProstCodec::<Resp, Req>::default();
        Streaming::new_request(codec.decoder(), request.into_body(), None, Some(self.config.request_bytes_max))
    }

    /// `Lease/LeaseKeepAlive`: one answer per request, until the client closes
    /// or a renewal fails with something other than "not found" (answered with
    /// TTL 0, as etcd does).
    fn lease_keep_alive<B>(&self, request: http::Request<B>) -> http::Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
    {
        let requests = self.request_stream::<B, pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse>(request);
        let state = Some((requests, self.backend.clone()));
        let answers = futures_lite::stream::unfold(state, |state| async move {
            let (mut requests, backend) = state?;
            let answer = match requests.message().await {
                Ok(None) => return None,
                Ok(Some(r)) => keep_alive_one(&*backend, r).await,
                Err(status) => Err(status),
            };
            let next = if answer.is_ok() { Some((requests, backend)) } else { None };
            Some((answer, next))
        });
        self.stream_response::<pb::LeaseKeepAliveRequest, _>(answers)
    }

    /// `Maintenance/Snapshot`: the backend's snapshot file, zero-padded to a
    /// multiple of 512 bytes and followed by its SHA-256 as etcd's stream is
    /// (etcdctl checks that the checksum is there), in chunks of
    /// [`SNAPSHOT_CHUNK_BYTES`], each with the bytes still to come
    /// (`remaining_bytes`). The file is lockstep's format (see `lockstep
    /// snapshot restore`), not bbolt.
    async fn snapshot<B>(&self, request: http::Request<B>, cx: &Cx) -> http::Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
    {
        let mut requests = self.request_stream::<B, pb::SnapshotRequest, pb::SnapshotResponse>(request);
        if let Err(status) = requests.message().await {
            return status.into_http();
        }
        if let Err(refused) = cx.check_admin() {
            if !cx.catch_up().await || cx.check_admin().is_err() {
                return refused.into_http();
            }
        }
        let backend = self.backend.clone();
        let file = match backend.snapshot().await {
            Ok(file) => crate::sha256::with_snapshot_checksum(file),
            Err(e) => return backend_error(&e).into_http(),
        };
        let revision = match current_revision(&*backend).await {
            Ok(revision) => revision,
            Err(status) => return status.into_http(),
        };
        let header = crate::convert::header(backend.header(), kv::ResponseHeader { revision });
        let total = file.len();
        let chunks: Vec<Result<pb::SnapshotResponse, Status>> = file
            .chunks(SNAPSHOT_CHUNK_BYTES)
            .scan(0usize, |sent, chunk| {
                *sent += chunk.len();
                Some(Ok(pb::SnapshotResponse { header, remaining_bytes: (total - *sent) as u64, blob: chunk.to_vec() }))
            })
            .collect();
        self.stream_response::<pb::SnapshotRequest, _>(futures_lite::stream::iter(chunks))
    }

    /// `Watch/Watch`: see the module doc.
    fn watch<B>(&self, request: http::Request<B>, cx: Rc<Cx>) -> http::Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
    {
        let requests = self.request_stream::<B, pb::WatchRequest, pb::WatchResponse>(request);
        let stream = WatchStream {
            backend: self.backend.clone(),
            cx,
            requests: Some(requests),
            watchers: BTreeSet::new(),
            fragmented: BTreeSet::new(),
            pending: VecDeque::new(),
            fragment_bytes: self.config.watch_fragment_bytes,
            done: false,
        };
        let answers = futures_lite::stream::unfold(stream, |mut stream| async move {
            let answer = stream.next().await?;
            Some((answer, stream))
        });
        self.stream_response::<pb::WatchRequest, _>(answers)
    }
}

impl<B> hyper::service::Service<http::Request<B>> for EtcdService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    type Response = http::Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, Infallible>>>>;

    fn call(&self, request: http::Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { Ok(service.handle(request).await) })
    }
}

// ---- unary handlers ----

/// The KV-level outcome of a backend call, errors as statuses.
fn outcome(result: Result<kv::KvResult, BackendError>) -> Result<KvResponse, Status> {
    match result {
        Err(e) => Err(backend_error(&e)),
        Ok(Err(e)) => Err(kv_error(&e)),
        Ok(Ok(response)) => Ok(response),
    }
}

/// A backend answered with the wrong kind of response: a bug in the backend.
fn unexpected(what: &str, response: &KvResponse) -> Status {
    let kind = format!("{response:?}");
    let kind = kind.split(['(', ' ']).next().unwrap_or("");
    Status::internal(format!("lockstep: backend answered {what} with {kind}"))
}

pub(crate) async fn range(backend: Rc<dyn Backend>, r: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
    let request: kv::RangeRequest = r.try_into()?;
    let linearizable = !request.serializable;
    match outcome(backend.read(KvQuery::Range(request), linearizable).await)? {
        KvResponse::Range(r) => Ok(r.to_pb(backend.header())),
        other => Err(unexpected("a range", &other)),
    }
}

pub(crate) async fn put(backend: Rc<dyn Backend>, r: pb::PutRequest) -> Result<pb::PutResponse, Status> {
    match outcome(backend.write(KvCommand::Put(r.into())).await)? {
        KvResponse::Put(r) => Ok(r.to_pb(backend.header())),
        other => Err(unexpected("a put", &other)),
    }
}

pub(crate) async fn delete_range(
    backend: Rc<dyn Backend>,
    r: pb::DeleteRangeRequest,
) -> Result<pb::DeleteRangeResponse, Status> {
    match outcome(backend.write(KvCommand::DeleteRange(r.into())).await)? {
        KvResponse::DeleteRange(r) => Ok(r.to_pb(backend.header())),
        other => Err(unexpected("a delete", &other)),
    }
}

pub(crate) async fn txn(backend: Rc<dyn Backend>, r: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
    let request: kv::TxnRequest = r.try_into()?;
    let result = if request.writes() {
        backend.write(KvCommand::Txn(request)).await
    } else {
        let linearizable = !serializable(&request);
        backend.read(KvQuery::Txn(request), linearizable).await
    };
    match outcome(result)? {
        KvResponse::Txn(r) => Ok(r.to_pb(backend.header())),
        other => Err(unexpected("a txn", &other)),
    }
}

/// etcd's `isTxnSerializable`: every op of both branches is a serializable
/// range (a nested txn makes it linearizable).
fn serializable(txn: &kv::TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).all(|op| matches!(op, kv::RequestOp::Range(r) if r.serializable))
}

pub(crate) async fn compact(
    backend: Rc<dyn Backend>,
    r: pb::CompactionRequest,
) -> Result<pb::CompactionResponse, Status> {
    match outcome(backend.write(KvCommand::Compaction(r.into())).await)? {
        KvResponse::Compaction(r) => Ok(r.to_pb(backend.header())),
        other => Err(unexpected("a compaction", &other)),
    }
}

pub(crate) async fn lease_grant(
    backend: Rc<dyn Backend>,
    r: pb::LeaseGrantRequest,
) -> Result<pb::LeaseGrantResponse, Status> {
    match outcome(backend.write(KvCommand::LeaseGrant(r.into())).await)? {
        KvResponse::LeaseGrant(r) => Ok(r.to_pb(backend.header())),
        other => Err(unexpected("a lease grant", &other)),
    }
}

pub(crate) async fn lease_revoke(
    backend: Rc<dyn Backend>,
    r: pb::LeaseRevokeRequest,
) -> Result<pb::LeaseRevokeResponse, Status> {
    match outcome(backend.write(KvCommand::LeaseRevoke(r.into())).await)? {
        KvResponse::LeaseRevoke(r) => Ok(r.to_pb(backend.header())),
        other => Err(unexpected("a lease revoke", &other)),
    }
}

pub(crate) async fn lease_time_to_live(
    backend: Rc<dyn Backend>,
    r: pb::LeaseTimeToLiveRequest,
) -> Result<pb::LeaseTimeToLiveResponse, Status> {
    match outcome(backend.leader_request(KvQuery::LeaseTimeToLive(r.into())).await)? {
        KvResponse::LeaseTimeToLive(r) => Ok(r.to_pb(backend.header())),
        other => Err(unexpected("a lease TTL query", &other)),
    }
}

pub(crate) async fn lease_leases(
    backend: Rc<dyn Backend>,
    _: pb::LeaseLeasesRequest,
) -> Result<pb::LeaseLeasesResponse, Status> {
    match outcome(backend.read(KvQuery::LeaseLeases, true).await)? {
        KvResponse::LeaseLeases(r) => Ok(r.to_pb(backend.header())),
        other => Err(unexpected("a lease listing", &other)),
    }
}

pub(crate) async fn keep_alive_one(
    backend: &dyn Backend,
    r: pb::LeaseKeepAliveRequest,
) -> Result<pb::LeaseKeepAliveResponse, Status> {
    let id = r.id;
    match backend.leader_request(KvQuery::LeaseKeepAlive(r.into())).await {
        Ok(Err(KvError::LeaseNotFound)) => {
            let revision = current_revision(backend).await?;
            let response = kv::LeaseKeepAliveResponse { header: kv::ResponseHeader { revision }, id, ttl: 0 };
            Ok(response.to_pb(backend.header()))
        }
        result => match outcome(result)? {
            KvResponse::LeaseKeepAlive(r) => Ok(r.to_pb(backend.header())),
            other => Err(unexpected("a keep-alive", &other)),
        },
    }
}

pub(crate) async fn alarm(backend: Rc<dyn Backend>, r: pb::AlarmRequest) -> Result<pb::AlarmResponse, Status> {
    let request: kv::AlarmRequest = r.try_into()?;
    let result = match request.action {
        kv::AlarmAction::Get => backend.read(KvQuery::Alarms, true).await,
        kv::AlarmAction::Activate | kv::AlarmAction::Deactivate => backend.write(KvCommand::Alarm(request)).await,
    };
    match outcome(result)? {
        KvResponse::Alarm(r) => Ok(r.to_pb(backend.header())),
        other => Err(unexpected("an alarm request", &other)),
    }
}

pub(crate) async fn status(backend: Rc<dyn Backend>, _: pb::StatusRequest) -> Result<pb::StatusResponse, Status> {
    let revision = current_revision(&*backend).await?;
    let s = backend.status().await.map_err(|e| backend_error(&e))?;
    Ok(pb::StatusResponse {
        header: crate::convert::header(backend.header(), kv::ResponseHeader { revision }),
        version: s.version,
        db_size: s.db_size_bytes,
        leader: s.leader,
        raft_index: s.raft_index,
        raft_term: s.raft_term,
        raft_applied_index: s.raft_applied_index,
        errors: s.errors,
        db_size_in_use: s.db_size_in_use_bytes,
        is_learner: s.is_learner,
    })
}

pub(crate) async fn member_list(
    backend: Rc<dyn Backend>,
    r: pb::MemberListRequest,
) -> Result<pb::MemberListResponse, Status> {
    let members = backend.members(r.linearizable).await.map_err(|e| backend_error(&e))?;
    Ok(pb::MemberListResponse {
        header: cluster_header(&*backend),
        members: members
            .into_iter()
            .map(|m| pb::Member {
                id: m.id,
                name: m.name,
                peer_ur_ls: m.peer_urls,
                client_ur_ls: m.client_urls,
                is_learner: m.is_learner,
            })
            .collect(),
    })
}

fn members_pb(members: Vec<crate::backend::MemberInfo>) -> Vec<pb::Member> {
    members.into_iter().map(member_pb).collect()
}

fn member_pb(m: crate::backend::MemberInfo) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

async fn response_header(backend: &dyn Backend) -> Result<Option<pb::ResponseHeader>, Status> {
    let revision = current_revision(backend).await?;
    Ok(crate::convert::header(backend.header(), kv::ResponseHeader { revision }))
}

/// Rewords tonic's refusal of an oversize request message as grpc-go (and
/// so etcd) words it: `RESOURCE_EXHAUSTED`, "grpc: received message larger
/// than max (N vs. M)", so that clients react as they do against etcd.
fn grpc_go_size_error(headers: &mut http::HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else { return };
    if status.code() != tonic::Code::OutOfRange || !status.message().contains("decoded message length too large") {
        return;
    }
    let numbers: Vec<&str> =
        status.message().split(|c: char| !c.is_ascii_digit()).filter(|part| !part.is_empty()).collect();
    let [found, limit] = numbers[..] else { return };
    let reworded = Status::resource_exhausted(format!("grpc: received message larger than max ({found} vs. {limit})"));
    let _ = reworded.add_header(headers);
}

/// The header of `Cluster` responses: etcd's cluster server fills cluster
/// id, member id and term, but no revision.
fn cluster_header(backend: &dyn Backend) -> Option<pb::ResponseHeader> {
    crate::convert::header(backend.header(), kv::ResponseHeader { revision: 0 })
}

pub(crate) async fn member_add(
    backend: Rc<dyn Backend>,
    r: pb::MemberAddRequest,
) -> Result<pb::MemberAddResponse, Status> {
    let (member, members) = backend.member_add(r.peer_ur_ls, r.is_learner).await.map_err(|e| backend_error(&e))?;
    Ok(pb::MemberAddResponse {
        header: cluster_header(&*backend),
        member: Some(member_pb(member)),
        members: members_pb(members),
    })
}

pub(crate) async fn member_remove(
    backend: Rc<dyn Backend>,
    r: pb::MemberRemoveRequest,
) -> Result<pb::MemberRemoveResponse, Status> {
    let members = backend.member_remove(r.id).await.map_err(|e| backend_error(&e))?;
    Ok(pb::MemberRemoveResponse { header: cluster_header(&*backend), members: members_pb(members) })
}

pub(crate) async fn member_update(
    backend: Rc<dyn Backend>,
    r: pb::MemberUpdateRequest,
) -> Result<pb::MemberUpdateResponse, Status> {
    let members = backend.member_update(r.id, r.peer_ur_ls).await.map_err(|e| backend_error(&e))?;
    Ok(pb::MemberUpdateResponse { header: cluster_header(&*backend), members: members_pb(members) })
}

pub(crate) async fn member_promote(
    backend: Rc<dyn Backend>,
    r: pb::MemberPromoteRequest,
) -> Result<pb::MemberPromoteResponse, Status> {
    let members = backend.member_promote(r.id).await.map_err(|e| backend_error(&e))?;
    Ok(pb::MemberPromoteResponse { header: cluster_header(&*backend), members: members_pb(members) })
}

pub(crate) async fn hash(backend: Rc<dyn Backend>, _: pb::HashRequest) -> Result<pb::HashResponse, Status> {
    let hash = backend.hash().await.map_err(|e| backend_error(&e))?;
    Ok(pb::HashResponse { header: response_header(&*backend).await?, hash })
}

pub(crate) async fn hash_kv(backend: Rc<dyn Backend>, r: pb::HashKvRequest) -> Result<pb::HashKvResponse, Status> {
    let h = backend.hash_kv(r.revision).await.map_err(|e| backend_error(&e))?;
    Ok(pb::HashKvResponse {
        header: response_header(&*backend).await?,
        hash: h.hash,
        // etcd reports -1 until the first compaction.
        compact_revision: if h.compact_revision > 0 { h.compact_revision } else { -1 },
    })
}

/// `Maintenance/Defragment` answers OK at once: fjall compacts its LSM tree
/// online, so there is nothing to defragment and the member never blocks.
/// Like etcd's, the response carries no header.
pub(crate) async fn defragment(_: Rc<dyn Backend>, _: pb::DefragmentRequest) -> Result<pb::DefragmentResponse, Status> {
    Ok(pb::DefragmentResponse { header: None })
}

pub(crate) async fn move_leader(
    backend: Rc<dyn Backend>,
    r: pb::MoveLeaderRequest,
) -> Result<pb::MoveLeaderResponse, Status> {
    backend.move_leader(r.target_id).await.map_err(|e| backend_error(&e))?;
    // etcd's MoveLeader response carries no header.
    Ok(pb::MoveLeaderResponse { header: None })
}

/// The member's current revision, from a local count-only read.
async fn current_revision(backend: &dyn Backend) -> Result<kv::Revision, Status> {
    let probe = kv::RangeRequest { key: vec![0], count_only: true, ..kv::RangeRequest::default() };
    match outcome(backend.read(KvQuery::Range(probe), false).await)? {
        KvResponse::Range(r) => Ok(r.header.revision),
        other => Err(unexpected("a range", &other)),
    }
}

// ---- watch ----

/// A watch stream without client messages after `request` (the JSON
/// gateway's `/v3/watch`): its responses until the watcher ends.
pub(crate) fn watch_one(
    cx: Rc<Cx>,
    request: pb::WatchRequest,
    fragment_bytes: usize,
) -> impl Stream<Item = Result<pb::WatchResponse, Status>> {
    let stream = WatchStream {
        backend: cx.backend.clone(),
        cx,
        requests: None,
        watchers: BTreeSet::new(),
        fragmented: BTreeSet::new(),
        pending: VecDeque::new(),
        fragment_bytes,
        done: false,
    };
    futures_lite::stream::unfold((stream, Some(request)), |(mut stream, first)| async move {
        if let Some(request) = first {
            stream.handle(request).await;
        }
        let answer = stream.next().await?;
        Some((answer, (stream, None)))
    })
}

/// The state of one `Watch/Watch` call (see the module doc).
struct WatchStream {
    backend: Rc<dyn Backend>,
    /// The stream's caller: every create is checked for read permission.
    cx: Rc<Cx>,
    /// `None` once the client half-closed.
    requests: Option<Streaming<pb::WatchRequest>>,
    /// The watchers created on this stream and not yet canceled.
    watchers: BTreeSet<WatchId>,
    /// Those created with `fragment`.
    fragmented: BTreeSet<WatchId>,
    /// Responses ready to send.
    pending: VecDeque<pb::WatchResponse>,
    fragment_bytes: usize,
    /// An error was sent; the stream ends.
    done: bool,
}

/// What woke a waiting watch stream.
enum Wake {
    Request(Result<Option<pb::WatchRequest>, Status>),
    Changed,
}

impl WatchStream {
    /// The next response to send; `None` ends the call.
    async fn next(&mut self) -> Option<Result<pb::WatchResponse, Status>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(response) = self.pending.pop_front() {
                return Some(Ok(response));
            }
            self.collect();
            if !self.pending.is_empty() {
                continue;
            }
            let wake = match &mut self.requests {
                Some(requests) => {
                    let request = async { Wake::Request(requests.message().await) };
                    let changed = async {
                        self.backend.watch_changed().await;
                        Wake::Changed
                    };
                    request.or(changed).await
                }
                None => {
                    self.backend.watch_changed().await;
                    Wake::Changed
                }
            };
            match wake {
                Wake::Changed => {}
                Wake::Request(Ok(Some(request))) => self.handle(request).await,
                Wake::Request(Ok(None)) => self.requests = None,
                Wake::Request(Err(status)) => {
                    self.done = true;
                    return Some(Err(status));
                }
            }
        }
    }

    /// Takes one buffered response from each watcher of this stream.
    fn collect(&mut self) {
        let info = self.backend.header();
        let watchers: Vec<WatchId> = self.watchers.iter().copied().collect();
        for id in watchers {
            let Some(response) = self.backend.watch_take(id) else { continue };
            if response.canceled {
                self.watchers.remove(&id);
                self.fragmented.remove(&id);
            }
            let response = response.to_pb(info);
            if self.fragmented.contains(&id) {
                self.pending.extend(fragments(response, self.fragment_bytes));
            } else {
                self.pending.push_back(response);
            }
        }
    }

    /// Refuses a create in band, as etcd does: created and canceled, watch id
    /// -1, and as the reason the text of its gRPC error (e.g.
    /// `ErrGRPCPermissionDenied.Error()`), with `code` as grpc-go names it.
    async fn refuse_create(&mut self, code: &str, message: &str) {
        let revision = current_revision(&*self.backend).await.unwrap_or_default();
        self.pending.push_back(pb::WatchResponse {
            header: crate::convert::header(self.backend.header(), kv::ResponseHeader { revision }),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: format!("rpc error: code = {code} desc = {message}"),
            ..pb::WatchResponse::default()
        });
    }

    async fn handle(&mut self, request: pb::WatchRequest) {
        use pb::watch_request::RequestUnion;
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => {
                let key: &[u8] = if create.key.is_empty() { &[0] } else { &create.key };
                let check = || self.cx.check_op(key, &create.range_end, lockstep_core::kv::PermType::Read);
                let refused = match check() {
                    Err(denied) if self.cx.catch_up().await => check().err().map(|_| denied),
                    outcome => outcome.err(),
                };
                if let Some(denied) = refused {
                    self.refuse_create("PermissionDenied", denied.message()).await;
                    return;
                }
                if let Err(refused) = self.cx.limits.check_watches(self.watchers.len()) {
                    self.refuse_create("ResourceExhausted", refused.message()).await;
                    return;
                }
                let fragment = create.fragment;
                let mut create: kv::WatchCreateRequest = create.into();
                if create.key.is_empty() {
                    // etcd: "\x00 is the smallest key".
                    create.key = vec![0];
                }
                match self.backend.watch_create(create) {
                    Ok(id) => {
                        self.watchers.insert(id);
                        if fragment {
                            self.fragmented.insert(id);
                        }
                    }
                    Err(refused) => self.pending.push_back(refused.to_pb(self.backend.header())),
                }
            }
            // Only this stream's watchers; other ids are ignored, as etcd does.
            Some(RequestUnion::CancelRequest(cancel)) if self.watchers.remove(&cancel.watch_id) => {
                self.fragmented.remove(&cancel.watch_id);
                if let Some(response) = self.backend.watch_cancel(cancel.watch_id) {
                    self.pending.push_back(response.to_pb(self.backend.header()));
                }
            }
            Some(RequestUnion::CancelRequest(_)) => {}
            Some(RequestUnion::ProgressRequest(_)) => self.backend.watch_progress(true),
            None => {}
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        for &id in &self.watchers {
            let _ = self.backend.watch_cancel(id);
        }
    }
}

/// Splits a large watch response into fragments as etcd's `sendFragments`
/// does: each piece holds as many events as fit below `bytes_max` (at least
/// one), every piece but the last has `fragment` set.
fn fragments(response: pb::WatchResponse, bytes_max: usize) -> Vec<pb::WatchResponse> {
    if response.encoded_len() < bytes_max || response.events.len() < 2 {
        return vec![response];
    }
    let mut events = response.events.clone().into_iter().peekable();
    let template = pb::WatchResponse { events: Vec::new(), fragment: true, ..response };
    let mut pieces = Vec::new();
    while events.peek().is_some() {
        let mut piece = template.clone();
        while let Some(event) =
            events.next_if(|event| piece.events.is_empty() || piece.encoded_len() + event.encoded_len() + 8 < bytes_max)
        {
            piece.events.push(event);
        }
        pieces.push(piece);
    }
    if let Some(last) = pieces.last_mut() {
        last.fragment = false;
    }
    pieces
}

#[cfg(test)]
#[path = "grpc_tests.rs"]
mod tests;
