//! Rate limits, per-client limits and the failed-login lock-out through the
//! service (gRPC and the JSON gateway), with a clock moved by hand.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::limits::{Limiter, LimitsConfig};

/// A clock that moves only when told, and a limiter reading it.
fn limiter(config: LimitsConfig) -> (Rc<Limiter>, Rc<Cell<Instant>>) {
    let now = Rc::new(Cell::new(Instant::now()));
    let clock = now.clone();
    (Rc::new(Limiter::with_clock(config, Box::new(move || clock.get()))), now)
}

fn advance(clock: &Cell<Instant>, ms: u64) {
    clock.set(clock.get() + Duration::from_millis(ms));
}

fn exhausted(message: &str) -> (i32, String) {
    (tonic::Code::ResourceExhausted as i32, message.to_string())
}

fn put_value(svc: &EtcdService, key: &str, value: &str) -> Result<pb::PutResponse, (i32, String)> {
    let req = pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() };
    call(svc, "/etcdserverpb.KV/Put", req)
}

#[test]
fn over_the_global_limit_is_resource_exhausted_naming_the_limit() {
    let (limits, clock) = limiter(LimitsConfig { global_qps: 2, global_burst: 2, ..LimitsConfig::default() });
    let svc = service().with_limits(limits.clone());
    assert!(put_value(&svc, "a", "1").is_ok());
    assert!(put_value(&svc, "a", "2").is_ok());
    assert_eq!(
        put_value(&svc, "a", "3").unwrap_err(),
        exhausted("lockstep: rate limit exceeded: global 2 req/s (burst 2)")
    );
    let range = pb::RangeRequest { key: b"a".to_vec(), ..Default::default() };
    let refused = call::<_, pb::RangeResponse>(&svc, "/etcdserverpb.KV/Range", range.clone()).unwrap_err();
    assert_eq!(refused.0, tonic::Code::ResourceExhausted as i32, "reads count too");
    // The JSON gateway: HTTP 429 and grpc-gateway's error body.
    let (status, body) = json_call(&svc, "/v3/kv/range", r#"{"key": "YQ=="}"#);
    assert_eq!(status, 429);
    let message = "lockstep: rate limit exceeded: global 2 req/s (burst 2)";
    assert_eq!(body, serde_json::json!({"error": message, "code": 8, "message": message}));
    advance(&clock, 500);
    let range: pb::RangeResponse = call(&svc, "/etcdserverpb.KV/Range", range).expect("a token after 500 ms");
    assert_eq!(range.kvs[0].value, b"2", "the refused put was not applied");
    assert_eq!(limits.stats().rejected, BTreeMap::from([("global", 3)]));
}

#[test]
fn one_users_limit_leaves_another_user_alone() {
    let svc = auth_service(TokenConfig::Simple, Box::new(Instant::now));
    let (root, alice) = set_up(&svc);
    let (limits, clock) = limiter(LimitsConfig { user_qps: 2, user_burst: 2, ..LimitsConfig::default() });
    let svc = svc.with_limits(limits.clone());
    let put_as = |token: &str| call_as::<_, pb::PutResponse>(&svc, token, "/etcdserverpb.KV/Put", put_req("app/x"));
    assert!(put_as(&alice).is_ok());
    assert!(put_as(&alice).is_ok());
    for _ in 0..5 {
        assert_eq!(
            put_as(&alice).unwrap_err(),
            exhausted("lockstep: rate limit exceeded: user \"alice\" 2 req/s (burst 2)")
        );
    }
    // root has a bucket of its own, untouched by alice's refusals.
    assert!(put_as(&root).is_ok());
    assert!(put_as(&root).is_ok());
    assert!(put_as(&root).is_err());
    advance(&clock, 500);
    assert!(put_as(&alice).is_ok(), "2 req/s: a token every 500 ms");
    assert!(put_as(&alice).is_err());
    assert_eq!(limits.stats().rejected, BTreeMap::from([("user", 7)]));
    // A per-user override, applied at runtime.
    let changed = limits.config().merged(&serde_json::json!({"users": {"alice": {"qps": 0}}})).unwrap();
    limits.set_config(changed);
    for _ in 0..10 {
        assert!(put_as(&alice).is_ok(), "alice is unlimited now");
    }
}

#[test]
fn repeated_bad_passwords_lock_out_before_any_password_check() {
    let svc = auth_service(TokenConfig::Simple, Box::new(Instant::now));
    set_up(&svc);
    let config = LimitsConfig {
        auth_failures_max: 2,
        auth_lockout_ms: 1_000,
        auth_lockout_max_ms: 4_000,
        ..LimitsConfig::default()
    };
    let (limits, clock) = limiter(config);
    let svc = svc.with_limits(limits.clone());
    let from_a = svc.for_connection(Some("192.0.2.1:4000".parse().unwrap())).expect("a connection");
    let from_b = svc.for_connection(Some("192.0.2.2:4000".parse().unwrap())).expect("a connection");
    let bad = (tonic::Code::InvalidArgument as i32, auth_failed_text());
    assert_eq!(authenticate(&from_a, "alice", "wrong").unwrap_err(), bad);
    assert_eq!(authenticate(&from_a, "alice", "wrong").unwrap_err(), bad);
    let locked = exhausted("etcdserver: authentication failed, too many attempts; retry in 1s");
    assert_eq!(authenticate(&from_b, "alice", ALICE_PW).unwrap_err(), locked, "alice is locked out, from anywhere");
    assert_eq!(authenticate(&from_a, "root", ROOT_PW).unwrap_err(), locked, "so is the source, for any user");
    assert!(authenticate(&from_b, "root", ROOT_PW).is_ok(), "another user from another source is not");
    advance(&clock, 1_000);
    assert!(authenticate(&from_b, "alice", ALICE_PW).is_ok(), "the lock-out is over");
    let stats = limits.stats();
    assert_eq!(stats.auth_failures, BTreeMap::from([("bad_password", 2), ("locked_out", 2)]));
    assert_eq!(stats.auth_lockouts, BTreeMap::from([("source", 1), ("user", 1)]));
}

#[test]
fn a_locked_out_attempt_runs_no_bcrypt() {
    /// A backend counting the jobs it runs off the executor (bcrypt).
    struct Counting {
        inner: MemoryBackend,
        offloaded: Cell<u32>,
    }
    #[async_trait::async_trait(?Send)]
    impl Backend for Counting {
        fn header(&self) -> HeaderInfo {
            self.inner.header()
        }
        async fn write(&self, command: KvCommand) -> Result<kv::KvResult, BackendError> {
            self.inner.write(command).await
        }
        async fn read(&self, query: KvQuery, linearizable: bool) -> Result<kv::KvResult, BackendError> {
            self.inner.read(query, linearizable).await
        }
        async fn leader_request(&self, query: KvQuery) -> Result<kv::KvResult, BackendError> {
            self.inner.leader_request(query).await
        }
        fn watch_create(&self, request: kv::WatchCreateRequest) -> Result<WatchId, kv::WatchResponse> {
            self.inner.watch_create(request)
        }
        fn watch_cancel(&self, id: WatchId) -> Option<kv::WatchResponse> {
            self.inner.watch_cancel(id)
        }
        fn watch_progress(&self, all: bool) {
            self.inner.watch_progress(all);
        }
        fn watch_take(&self, id: WatchId) -> Option<kv::WatchResponse> {
            self.inner.watch_take(id)
        }
        async fn watch_changed(&self) {
            self.inner.watch_changed().await;
        }
        fn auth(&self) -> std::sync::Arc<kv::AuthStore> {
            self.inner.auth()
        }
        fn take_auth_events(&self) -> Vec<kv::AuthEvent> {
            self.inner.take_auth_events()
        }
        async fn offload(&self, job: Box<dyn FnOnce() + Send>) {
            self.offloaded.set(self.offloaded.get() + 1);
            job();
        }
    }
    let backend = Rc::new(Counting { inner: MemoryBackend::new(INFO, KvConfig::default()), offloaded: Cell::new(0) });
    let auth = AuthConfig { token: TokenConfig::Simple, simple_token_ttl: Duration::from_secs(300), bcrypt_cost: 4 };
    let (limits, _clock) = limiter(LimitsConfig { auth_failures_max: 1, ..LimitsConfig::default() });
    let svc = EtcdService::new(backend.clone(), ServiceConfig::default())
        .with_auth(Rc::new(Authenticator::new(auth)))
        .with_limits(limits);
    set_up(&svc);
    let checked = backend.offloaded.get();
    assert!(authenticate(&svc, "alice", "wrong").is_err());
    assert_eq!(backend.offloaded.get(), checked + 1, "one bcrypt check");
    for _ in 0..3 {
        assert_eq!(authenticate(&svc, "alice", ALICE_PW).unwrap_err().0, tonic::Code::ResourceExhausted as i32);
    }
    assert_eq!(backend.offloaded.get(), checked + 1, "no bcrypt for a locked-out attempt");
}

#[test]
fn size_and_lease_limits() {
    let config = LimitsConfig { max_key_bytes: 4, max_value_bytes: 8, max_leases: 1, ..LimitsConfig::default() };
    let (limits, _clock) = limiter(config);
    let svc = service().with_limits(limits.clone());
    assert!(put_value(&svc, "abcd", "12345678").is_ok());
    assert_eq!(
        put_value(&svc, "abcde", "1").unwrap_err(),
        exhausted("lockstep: limit exceeded: key of 5 bytes, limits.max_key_bytes is 4")
    );
    let big = pb::PutRequest { key: b"k".to_vec(), value: b"123456789".to_vec(), ..Default::default() };
    let nested = pb::TxnRequest {
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestTxn(pb::TxnRequest {
                success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(big)) }],
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    assert_eq!(
        call::<_, pb::TxnResponse>(&svc, "/etcdserverpb.KV/Txn", nested).unwrap_err(),
        exhausted("lockstep: limit exceeded: value of 9 bytes, limits.max_value_bytes is 8"),
        "a put nested in a transaction is checked too"
    );
    let grant = pb::LeaseGrantRequest { ttl: 60, id: 0 };
    assert!(call::<_, pb::LeaseGrantResponse>(&svc, "/etcdserverpb.Lease/LeaseGrant", grant).is_ok());
    assert_eq!(
        call::<_, pb::LeaseGrantResponse>(&svc, "/etcdserverpb.Lease/LeaseGrant", grant).unwrap_err(),
        exhausted("lockstep: limit exceeded: 1 leases (limits.max_leases)")
    );
    assert_eq!(limits.stats().rejected, BTreeMap::from([("key_bytes", 1), ("leases", 1), ("value_bytes", 1)]));
}

#[test]
fn watches_beyond_the_limit_of_a_stream_are_refused_in_band() {
    let (limits, _clock) = limiter(LimitsConfig { max_watches_per_stream: 1, ..LimitsConfig::default() });
    let svc = service().with_limits(limits.clone());
    let create = |key: &str| pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.into(),
            ..Default::default()
        })),
    };
    let body = [frame(&create("a")), frame(&create("b"))].concat();
    let response = block_on(svc.handle(request("/etcdserverpb.Watch/Watch", body)));
    let mut stream = Reader::<pb::WatchResponse>::new(response.into_body());
    let first = stream.next();
    assert!(first.created && !first.canceled);
    let second = stream.next();
    assert!(second.created && second.canceled);
    assert_eq!(second.watch_id, -1);
    assert_eq!(
        second.cancel_reason,
        "rpc error: code = ResourceExhausted desc = lockstep: limit exceeded: 1 watches per stream \
         (limits.max_watches_per_stream)"
    );
    assert_eq!(limits.stats().rejected, BTreeMap::from([("watches_per_stream", 1)]));
}

#[test]
fn connections_per_source() {
    let (limits, _clock) = limiter(LimitsConfig { max_connections_per_source: 1, ..LimitsConfig::default() });
    let svc = service().with_limits(limits.clone());
    let peer = Some("198.51.100.1:1234".parse().unwrap());
    let first = svc.for_connection(peer).expect("the first connection");
    let clone = first.clone();
    assert!(svc.for_connection(peer).is_none(), "a second from the same address");
    assert!(svc.for_connection(Some("198.51.100.2:1234".parse().unwrap())).is_some());
    drop(first);
    assert!(svc.for_connection(peer).is_none(), "a clone still serves the connection");
    drop(clone);
    assert!(svc.for_connection(peer).is_some(), "the connection ended");
    assert_eq!(limits.stats().rejected, BTreeMap::from([("connections_per_source", 2)]));
}
