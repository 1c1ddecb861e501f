//! The Auth service and its enforcement, in process over a [`MemoryBackend`]
//! (bcrypt at its lowest cost to keep the tests fast).

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::*;
use crate::auth::{AuthConfig, Authenticator, TokenConfig};
use crate::pb::authpb;

const ROOT_PW: &str = "rootpw";
const ALICE_PW: &str = "alicepw";

fn auth_service(token: TokenConfig, clock: Box<dyn Fn() -> Instant>) -> EtcdService {
    let config = AuthConfig { token, simple_token_ttl: Duration::from_secs(300), bcrypt_cost: 4 };
    service().with_auth(Rc::new(Authenticator::with_clock(config, clock)))
}

fn request_as(path: &str, body: Vec<u8>, token: &str) -> http::Request<Full<Bytes>> {
    let mut request = request(path, body);
    request.headers_mut().insert("token", token.parse().unwrap());
    request
}

fn call_as<Req: Message, Resp: Message + Default>(
    svc: &EtcdService,
    token: &str,
    path: &str,
    req: Req,
) -> Result<Resp, (i32, String)> {
    let (mut messages, code, message) = finish::<Resp>(block_on(svc.handle(request_as(path, frame(&req), token))));
    if code != 0 {
        return Err((code, message));
    }
    Ok(messages.remove(0))
}

fn denied() -> (i32, String) {
    (tonic::Code::PermissionDenied as i32, "etcdserver: permission denied".into())
}

fn put_req(key: &str) -> pb::PutRequest {
    pb::PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() }
}

fn authenticate(svc: &EtcdService, name: &str, password: &str) -> Result<String, (i32, String)> {
    let req = pb::AuthenticateRequest { name: name.into(), password: password.into() };
    call::<_, pb::AuthenticateResponse>(svc, "/etcdserverpb.Auth/Authenticate", req).map(|r| r.token)
}

/// etcdctl's sequence: root and alice, a role `app` with READWRITE on the
/// prefix `app/`, auth enabled. Returns root's and alice's tokens.
fn set_up(svc: &EtcdService) -> (String, String) {
    let ok = |path: &str, result: Result<pb::AuthEnableResponse, (i32, String)>| {
        result.unwrap_or_else(|e| panic!("{path}: {e:?}"));
    };
    let add = |name: &str, password: &str| pb::AuthUserAddRequest {
        name: name.into(),
        password: password.into(),
        ..Default::default()
    };
    ok("root", call(svc, "/etcdserverpb.Auth/UserAdd", add("root", ROOT_PW)));
    ok("alice", call(svc, "/etcdserverpb.Auth/UserAdd", add("alice", ALICE_PW)));
    ok("role", call(svc, "/etcdserverpb.Auth/RoleAdd", pb::AuthRoleAddRequest { name: "app".into() }));
    let perm = authpb::Permission {
        perm_type: authpb::permission::Type::Readwrite as i32,
        key: b"app/".to_vec(),
        range_end: b"app0".to_vec(),
    };
    let grant = pb::AuthRoleGrantPermissionRequest { name: "app".into(), perm: Some(perm) };
    ok("perm", call(svc, "/etcdserverpb.Auth/RoleGrantPermission", grant));
    let grant = |user: &str, role: &str| pb::AuthUserGrantRoleRequest { user: user.into(), role: role.into() };
    ok("alice app", call(svc, "/etcdserverpb.Auth/UserGrantRole", grant("alice", "app")));
    // Enabling without the root role is refused, as etcd does; etcdctl then
    // adds the role and grants it.
    let refused = call::<_, pb::AuthEnableResponse>(svc, "/etcdserverpb.Auth/AuthEnable", pb::AuthEnableRequest {});
    assert_eq!(
        refused.unwrap_err(),
        (tonic::Code::FailedPrecondition as i32, "etcdserver: root user does not have root role".into())
    );
    ok("root role", call(svc, "/etcdserverpb.Auth/RoleAdd", pb::AuthRoleAddRequest { name: "root".into() }));
    ok("root root", call(svc, "/etcdserverpb.Auth/UserGrantRole", grant("root", "root")));
    ok("enable", call(svc, "/etcdserverpb.Auth/AuthEnable", pb::AuthEnableRequest {}));
    let root = authenticate(svc, "root", ROOT_PW).expect("root authenticates");
    let alice = authenticate(svc, "alice", ALICE_PW).expect("alice authenticates");
    (root, alice)
}

#[test]
fn auth_disabled_by_default_and_enable_needs_root() {
    let svc = auth_service(TokenConfig::Simple, Box::new(Instant::now));
    let status: pb::AuthStatusResponse = call(&svc, "/etcdserverpb.Auth/AuthStatus", pb::AuthStatusRequest {}).unwrap();
    assert!(!status.enabled);
    assert_eq!(status.auth_revision, 1);
    let refused = call::<_, pb::AuthEnableResponse>(&svc, "/etcdserverpb.Auth/AuthEnable", pb::AuthEnableRequest {});
    assert_eq!(
        refused.unwrap_err(),
        (tonic::Code::FailedPrecondition as i32, "etcdserver: root user does not exist".into())
    );
    assert_eq!(
        authenticate(&svc, "root", "x").unwrap_err(),
        (tonic::Code::FailedPrecondition as i32, "etcdserver: authentication is not enabled".into())
    );
    // Without auth, a token is ignored and everything is allowed.
    call_as::<_, pb::PutResponse>(&svc, "garbage", "/etcdserverpb.KV/Put", put_req("x")).unwrap();
}

#[test]
fn simple_tokens_enforce_roles_on_every_rpc() {
    let svc = auth_service(TokenConfig::Simple, Box::new(Instant::now));
    let (root, alice) = set_up(&svc);
    assert_eq!(root.split('.').next().map(str::len), Some(16), "etcd's simple token shape: {root}");
    // Passwords and users.
    assert_eq!(
        authenticate(&svc, "alice", "wrong").unwrap_err(),
        (tonic::Code::InvalidArgument as i32, "etcdserver: authentication failed, invalid user ID or password".into())
    );
    assert_eq!(authenticate(&svc, "mallory", "x").unwrap_err().1, auth_failed_text());
    // No token, a bad token.
    assert_eq!(
        call::<_, pb::PutResponse>(&svc, "/etcdserverpb.KV/Put", put_req("app/1")).unwrap_err(),
        (tonic::Code::InvalidArgument as i32, "etcdserver: user name is empty".into())
    );
    assert_eq!(
        call_as::<_, pb::PutResponse>(&svc, "nope.1", "/etcdserverpb.KV/Put", put_req("app/1")).unwrap_err(),
        (tonic::Code::Unauthenticated as i32, "etcdserver: invalid auth token".into())
    );
    // Alice inside and outside her prefix.
    call_as::<_, pb::PutResponse>(&svc, &alice, "/etcdserverpb.KV/Put", put_req("app/1")).unwrap();
    assert_eq!(
        call_as::<_, pb::PutResponse>(&svc, &alice, "/etcdserverpb.KV/Put", put_req("other")).unwrap_err(),
        denied()
    );
    let range =
        |key: &str, end: &str| pb::RangeRequest { key: key.into(), range_end: end.into(), ..Default::default() };
    let got: pb::RangeResponse = call_as(&svc, &alice, "/etcdserverpb.KV/Range", range("app/", "app0")).unwrap();
    assert_eq!(got.count, 1);
    assert_eq!(
        call_as::<_, pb::RangeResponse>(&svc, &alice, "/etcdserverpb.KV/Range", range("app/", "b")).unwrap_err(),
        denied()
    );
    let delete = pb::DeleteRangeRequest { key: "a".into(), range_end: "z".into(), ..Default::default() };
    assert_eq!(
        call_as::<_, pb::DeleteRangeResponse>(&svc, &alice, "/etcdserverpb.KV/DeleteRange", delete).unwrap_err(),
        denied()
    );
    // Txn: every compare and every op, at every depth.
    let op_put = |key: &str| pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put_req(key))) };
    let txn = |success: Vec<pb::RequestOp>| pb::TxnRequest { success, ..Default::default() };
    call_as::<_, pb::TxnResponse>(&svc, &alice, "/etcdserverpb.KV/Txn", txn(vec![op_put("app/2"), op_put("app/3")]))
        .unwrap();
    let outside = txn(vec![op_put("app/4"), op_put("etc/passwd")]);
    assert_eq!(call_as::<_, pb::TxnResponse>(&svc, &alice, "/etcdserverpb.KV/Txn", outside).unwrap_err(), denied());
    let nested = txn(vec![pb::RequestOp {
        request: Some(pb::request_op::Request::RequestTxn(pb::TxnRequest {
            failure: vec![op_put("zzz")],
            ..Default::default()
        })),
    }]);
    assert_eq!(call_as::<_, pb::TxnResponse>(&svc, &alice, "/etcdserverpb.KV/Txn", nested).unwrap_err(), denied());
    let compare = pb::TxnRequest {
        compare: vec![pb::Compare { key: "secret".into(), ..Default::default() }],
        ..Default::default()
    };
    assert_eq!(call_as::<_, pb::TxnResponse>(&svc, &alice, "/etcdserverpb.KV/Txn", compare).unwrap_err(), denied());
    // Nothing outside the prefix was written.
    let all: pb::RangeResponse = call_as(&svc, &root, "/etcdserverpb.KV/Range", range("\0", "\0")).unwrap();
    let keys: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, vec![&b"app/1"[..], b"app/2", b"app/3"]);
    // Root-only calls.
    let compact = pb::CompactionRequest { revision: 2, physical: false };
    assert_eq!(
        call_as::<_, pb::CompactionResponse>(&svc, &alice, "/etcdserverpb.KV/Compact", compact).unwrap_err(),
        denied()
    );
    call_as::<_, pb::CompactionResponse>(&svc, &root, "/etcdserverpb.KV/Compact", compact).unwrap();
    let list = pb::AuthUserListRequest {};
    assert_eq!(
        call_as::<_, pb::AuthUserListResponse>(&svc, &alice, "/etcdserverpb.Auth/UserList", list).unwrap_err(),
        denied()
    );
    let users: pb::AuthUserListResponse = call_as(&svc, &root, "/etcdserverpb.Auth/UserList", list).unwrap();
    assert_eq!(users.users, vec!["alice".to_string(), "root".to_string()]);
    let role: pb::AuthRoleGetResponse =
        call_as(&svc, &root, "/etcdserverpb.Auth/RoleGet", pb::AuthRoleGetRequest { role: "root".into() }).unwrap();
    assert_eq!(role.perm, vec![authpb::Permission { perm_type: 2, key: vec![], range_end: vec![0] }]);
    let user: pb::AuthUserGetResponse =
        call_as(&svc, &root, "/etcdserverpb.Auth/UserGet", pb::AuthUserGetRequest { name: "alice".into() }).unwrap();
    assert_eq!(user.roles, vec!["app".to_string()]);
    // Root stays root while auth is on.
    let delete_root = pb::AuthUserDeleteRequest { name: "root".into() };
    assert_eq!(
        call_as::<_, pb::AuthUserDeleteResponse>(&svc, &root, "/etcdserverpb.Auth/UserDelete", delete_root)
            .unwrap_err(),
        (tonic::Code::InvalidArgument as i32, "etcdserver: invalid auth management".into())
    );
    // Watch: a create on a forbidden key is canceled in band.
    let create = |key: &str| pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.into(),
            ..Default::default()
        })),
    };
    let body = [frame(&create("secret")), frame(&create("app/1"))].concat();
    let response = block_on(svc.handle(request_as("/etcdserverpb.Watch/Watch", body, &alice)));
    let mut stream = Reader::<pb::WatchResponse>::new(response.into_body());
    let refused = stream.next();
    assert!(refused.created && refused.canceled);
    assert_eq!(
        (refused.watch_id, refused.cancel_reason.as_str()),
        (-1, "rpc error: code = PermissionDenied desc = etcdserver: permission denied")
    );
    let accepted = stream.next();
    assert!(accepted.created && !accepted.canceled);
    drop(stream);
    // Disabling is root's; then anybody may do anything again.
    let disable = pb::AuthDisableRequest {};
    assert_eq!(
        call_as::<_, pb::AuthDisableResponse>(&svc, &alice, "/etcdserverpb.Auth/AuthDisable", disable).unwrap_err(),
        denied()
    );
    call_as::<_, pb::AuthDisableResponse>(&svc, &root, "/etcdserverpb.Auth/AuthDisable", disable).unwrap();
    call::<_, pb::PutResponse>(&svc, "/etcdserverpb.KV/Put", put_req("other")).unwrap();
}

fn auth_failed_text() -> String {
    "etcdserver: authentication failed, invalid user ID or password".into()
}

#[test]
fn simple_tokens_expire_unless_used_and_die_with_a_password_change() {
    let start = Instant::now();
    let offset = Rc::new(Cell::new(Duration::ZERO));
    let clock = offset.clone();
    let svc = auth_service(TokenConfig::Simple, Box::new(move || start + clock.get()));
    let (root, alice) = set_up(&svc);
    let other = authenticate(&svc, "alice", ALICE_PW).unwrap();
    offset.set(Duration::from_secs(200));
    call_as::<_, pb::PutResponse>(&svc, &alice, "/etcdserverpb.KV/Put", put_req("app/1")).unwrap();
    offset.set(Duration::from_secs(450));
    // Used at 200 s: valid until 500 s; the other one ran out at 300 s.
    call_as::<_, pb::PutResponse>(&svc, &alice, "/etcdserverpb.KV/Put", put_req("app/1")).unwrap();
    let expired = call_as::<_, pb::PutResponse>(&svc, &other, "/etcdserverpb.KV/Put", put_req("app/1"));
    assert_eq!(expired.unwrap_err(), (tonic::Code::Unauthenticated as i32, "etcdserver: invalid auth token".into()));
    let root = authenticate(&svc, "root", ROOT_PW).unwrap_or(root);
    let change =
        pb::AuthUserChangePasswordRequest { name: "alice".into(), password: "new".into(), ..Default::default() };
    call_as::<_, pb::AuthUserChangePasswordResponse>(&svc, &root, "/etcdserverpb.Auth/UserChangePassword", change)
        .unwrap();
    let voided = call_as::<_, pb::PutResponse>(&svc, &alice, "/etcdserverpb.KV/Put", put_req("app/1"));
    assert_eq!(voided.unwrap_err().0, tonic::Code::Unauthenticated as i32);
    assert_eq!(authenticate(&svc, "alice", ALICE_PW).unwrap_err().1, auth_failed_text());
    let fresh = authenticate(&svc, "alice", "new").unwrap();
    call_as::<_, pb::PutResponse>(&svc, &fresh, "/etcdserverpb.KV/Put", put_req("app/1")).unwrap();
}

#[test]
fn jwt_tokens_carry_the_auth_revision() {
    let secret = |_: &str| Ok(b"a test secret of some length".to_vec());
    let token = TokenConfig::parse("jwt,sign-method=HS256,priv-key=secret,ttl=5m", secret).unwrap();
    let svc = auth_service(token, Box::new(Instant::now));
    let (root, alice) = set_up(&svc);
    assert_eq!(alice.split('.').count(), 3, "a JWT: {alice}");
    call_as::<_, pb::PutResponse>(&svc, &alice, "/etcdserverpb.KV/Put", put_req("app/1")).unwrap();
    assert_eq!(
        call_as::<_, pb::PutResponse>(&svc, &alice, "/etcdserverpb.KV/Put", put_req("x")).unwrap_err(),
        denied()
    );
    // Any auth change makes older tokens stale (clients authenticate again).
    call_as::<_, pb::AuthRoleAddResponse>(
        &svc,
        &root,
        "/etcdserverpb.Auth/RoleAdd",
        pb::AuthRoleAddRequest { name: "r2".into() },
    )
    .unwrap();
    assert_eq!(
        call_as::<_, pb::PutResponse>(&svc, &alice, "/etcdserverpb.KV/Put", put_req("app/1")).unwrap_err(),
        (tonic::Code::InvalidArgument as i32, "etcdserver: revision of auth store is old".into())
    );
    let alice = authenticate(&svc, "alice", ALICE_PW).unwrap();
    call_as::<_, pb::PutResponse>(&svc, &alice, "/etcdserverpb.KV/Put", put_req("app/1")).unwrap();
    let forged = format!("{}x", &alice[..alice.len() - 1]);
    assert_eq!(
        call_as::<_, pb::PutResponse>(&svc, &forged, "/etcdserverpb.KV/Put", put_req("app/1")).unwrap_err().0,
        tonic::Code::Unauthenticated as i32
    );
}

#[test]
fn json_gateway_serves_auth_with_the_authorization_header() {
    let svc = auth_service(TokenConfig::Simple, Box::new(Instant::now));
    set_up(&svc);
    let (code, body) = json_call(&svc, "/v3/auth/authenticate", r#"{"name": "alice", "password": "wrong"}"#);
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["message"], "etcdserver: authentication failed, invalid user ID or password");
    let (code, body) = json_call(&svc, "/v3/auth/authenticate", r#"{"name": "alice", "password": "alicepw"}"#);
    assert_eq!(code, 200, "{body}");
    let token = body["token"].as_str().expect("a token").to_string();
    let with_token = |path: &str, body: &str| {
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{path}"))
            .header("content-type", "application/json")
            .header("authorization", token.as_str())
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = block_on(svc.handle(request));
        let status = response.status().as_u16();
        let bytes = block_on(response.into_body().collect()).expect("body").to_bytes();
        (status, serde_json::from_slice::<serde_json::Value>(&bytes).expect("JSON"))
    };
    // "app/1" and "other" in base64.
    let (code, body) = with_token("/v3/kv/put", r#"{"key": "YXBwLzE=", "value": "dg=="}"#);
    assert_eq!(code, 200, "{body}");
    let (code, body) = with_token("/v3/kv/put", r#"{"key": "b3RoZXI=", "value": "dg=="}"#);
    assert_eq!((code, body["message"].as_str()), (403, Some("etcdserver: permission denied")));
    let (code, _) = json_call(&svc, "/v3/kv/put", r#"{"key": "YXBwLzE=", "value": "dg=="}"#);
    assert_eq!(code, 400, "no token: user name is empty");
    let (code, body) = with_token("/v3/auth/status", "{}");
    assert_eq!((code, &body["enabled"]), (200, &serde_json::json!(true)));
    let (code, body) = with_token("/v3/auth/role/get", r#"{"role": "app"}"#);
    assert_eq!(code, 403, "{body}");
}

#[path = "grpc_limits_tests.rs"]
mod limits;
