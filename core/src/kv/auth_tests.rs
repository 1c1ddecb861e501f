use proptest::prelude::*;

use super::*;
use crate::kv::{KvCommand, KvConfig, KvError, KvResponse, KvStore, MemStorage, PutRequest};
use crate::state_machine::StateMachine;

fn apply(store: &mut AuthStore, command: AuthCommand) -> Result<String, AuthError> {
    let mut batch = WriteBatch::new(1);
    let mut events = Vec::new();
    store.apply(&command, 7, &mut batch, &mut events)
}

fn user_add(name: &str) -> AuthCommand {
    AuthCommand::UserAdd { name: name.into(), password_hash: b"$2b$04$hash".to_vec(), no_password: false }
}

fn grant(user: &str, role: &str) -> AuthCommand {
    AuthCommand::UserGrantRole { user: user.into(), role: role.into() }
}

fn perm(name: &str, perm_type: PermType, key: &[u8], range_end: &[u8]) -> AuthCommand {
    AuthCommand::RoleGrantPermission {
        name: name.into(),
        perm: Permission { perm_type, key: key.to_vec(), range_end: range_end.to_vec() },
    }
}

fn caller(user: &str, revision: u64) -> AuthInfo {
    AuthInfo { user: user.into(), revision }
}

/// root with the root role, auth enabled.
fn enabled_store() -> AuthStore {
    let mut store = AuthStore::new();
    apply(&mut store, user_add("root")).expect("add root");
    apply(&mut store, grant("root", ROOT_ROLE)).expect("grant root");
    apply(&mut store, AuthCommand::Enable).expect("enable");
    store
}

#[test]
fn texts_and_codes_are_etcds() {
    let cases = [
        (AuthError::RootUserNotExist, "etcdserver: root user does not exist", "FAILED_PRECONDITION"),
        (AuthError::RootRoleNotExist, "etcdserver: root user does not have root role", "FAILED_PRECONDITION"),
        (AuthError::UserAlreadyExist, "etcdserver: user name already exists", "FAILED_PRECONDITION"),
        (AuthError::UserEmpty, "etcdserver: user name is empty", "INVALID_ARGUMENT"),
        (AuthError::UserNotFound, "etcdserver: user name not found", "FAILED_PRECONDITION"),
        (AuthError::RoleAlreadyExist, "etcdserver: role name already exists", "FAILED_PRECONDITION"),
        (AuthError::RoleNotFound, "etcdserver: role name not found", "FAILED_PRECONDITION"),
        (AuthError::RoleEmpty, "etcdserver: role name is empty", "INVALID_ARGUMENT"),
        (AuthError::AuthFailed, "etcdserver: authentication failed, invalid user ID or password", "INVALID_ARGUMENT"),
        (AuthError::PermissionNotGiven, "etcdserver: permission not given", "INVALID_ARGUMENT"),
        (AuthError::PermissionDenied, "etcdserver: permission denied", "PERMISSION_DENIED"),
        (AuthError::RoleNotGranted, "etcdserver: role is not granted to the user", "FAILED_PRECONDITION"),
        (AuthError::PermissionNotGranted, "etcdserver: permission is not granted to the role", "FAILED_PRECONDITION"),
        (AuthError::AuthNotEnabled, "etcdserver: authentication is not enabled", "FAILED_PRECONDITION"),
        (AuthError::InvalidAuthToken, "etcdserver: invalid auth token", "UNAUTHENTICATED"),
        (AuthError::InvalidAuthMgmt, "etcdserver: invalid auth management", "INVALID_ARGUMENT"),
        (AuthError::AuthOldRevision, "etcdserver: revision of auth store is old", "INVALID_ARGUMENT"),
    ];
    for (error, text, code) in cases {
        assert_eq!(error.to_string(), text);
        assert_eq!(error.grpc_code(), code, "{error:?}");
        assert_eq!(KvError::Auth(error).to_string(), text);
        assert_eq!(KvError::Auth(error).grpc_code(), code);
    }
}

#[test]
fn enable_needs_root_with_the_root_role() {
    let mut store = AuthStore::new();
    assert_eq!(apply(&mut store, AuthCommand::Enable), Err(AuthError::RootUserNotExist));
    apply(&mut store, user_add("root")).expect("add");
    assert_eq!(apply(&mut store, AuthCommand::Enable), Err(AuthError::RootRoleNotExist));
    // The root role need not be added before it is granted.
    assert_eq!(store.role(ROOT_ROLE), None);
    apply(&mut store, grant("root", ROOT_ROLE)).expect("grant");
    let revision = store.revision();
    apply(&mut store, AuthCommand::Enable).expect("enable");
    assert!(store.enabled());
    // Enabling does not bump the revision (etcd's AuthEnable); twice is a no-op.
    assert_eq!(store.revision(), revision);
    apply(&mut store, AuthCommand::Enable).expect("enable again");
    assert_eq!(store.revision(), revision);
    apply(&mut store, AuthCommand::Disable).expect("disable");
    assert!(!store.enabled());
    assert_eq!(store.revision(), revision + 1);
    apply(&mut store, AuthCommand::Disable).expect("disable again");
    assert_eq!(store.revision(), revision + 1);
}

#[test]
fn root_is_protected_while_enabled() {
    let mut store = enabled_store();
    apply(&mut store, AuthCommand::RoleAdd { name: ROOT_ROLE.into() }).expect("role add root");
    let before = store.clone();
    for command in [
        AuthCommand::UserDelete { name: "root".into() },
        AuthCommand::UserRevokeRole { name: "root".into(), role: ROOT_ROLE.into() },
        AuthCommand::RoleDelete { name: ROOT_ROLE.into() },
    ] {
        assert_eq!(apply(&mut store, command), Err(AuthError::InvalidAuthMgmt));
    }
    assert_eq!(store, before, "refused commands change nothing");
    apply(&mut store, AuthCommand::Disable).expect("disable");
    apply(&mut store, AuthCommand::UserRevokeRole { name: "root".into(), role: ROOT_ROLE.into() }).expect("revoke");
    apply(&mut store, AuthCommand::RoleDelete { name: ROOT_ROLE.into() }).expect("role delete");
    apply(&mut store, AuthCommand::UserDelete { name: "root".into() }).expect("user delete");
}

#[test]
fn management_rules_and_errors() {
    let mut store = AuthStore::new();
    let r0 = store.revision();
    assert_eq!(r0, FIRST_AUTH_REVISION);
    assert_eq!(apply(&mut store, user_add("")), Err(AuthError::UserEmpty));
    apply(&mut store, user_add("alice")).expect("add");
    assert_eq!(apply(&mut store, user_add("alice")), Err(AuthError::UserAlreadyExist));
    assert_eq!(apply(&mut store, AuthCommand::RoleAdd { name: String::new() }), Err(AuthError::RoleEmpty));
    apply(&mut store, AuthCommand::RoleAdd { name: "reader".into() }).expect("role add");
    assert_eq!(apply(&mut store, AuthCommand::RoleAdd { name: "reader".into() }), Err(AuthError::RoleAlreadyExist));
    assert_eq!(apply(&mut store, grant("bob", "reader")), Err(AuthError::UserNotFound));
    assert_eq!(apply(&mut store, grant("alice", "writer")), Err(AuthError::RoleNotFound));
    apply(&mut store, grant("alice", "reader")).expect("grant");
    let r = store.revision();
    apply(&mut store, grant("alice", "reader")).expect("grant twice is a no-op");
    assert_eq!(store.revision(), r);
    assert_eq!(
        apply(&mut store, AuthCommand::UserRevokeRole { name: "alice".into(), role: "other".into() }),
        Err(AuthError::RoleNotGranted)
    );
    assert_eq!(apply(&mut store, perm("nobody", PermType::Read, b"a", b"")), Err(AuthError::RoleNotFound));
    apply(&mut store, perm("reader", PermType::Read, b"b", b"c")).expect("perm");
    apply(&mut store, perm("reader", PermType::Read, b"a", b"")).expect("perm");
    apply(&mut store, perm("reader", PermType::ReadWrite, b"b", b"c")).expect("same range: type replaced");
    let perms = store.role_permissions("reader").expect("role");
    assert_eq!(perms.len(), 2);
    assert_eq!((perms[0].key.as_slice(), perms[1].perm_type), (&b"a"[..], PermType::ReadWrite));
    assert_eq!(
        apply(
            &mut store,
            AuthCommand::RoleRevokePermission { name: "reader".into(), key: b"b".to_vec(), range_end: vec![] }
        ),
        Err(AuthError::PermissionNotGranted)
    );
    apply(
        &mut store,
        AuthCommand::RoleRevokePermission { name: "reader".into(), key: b"b".to_vec(), range_end: b"c".to_vec() },
    )
    .expect("revoke perm");
    assert_eq!(store.role_permissions("reader").expect("role").len(), 1);
    assert_eq!(apply(&mut store, AuthCommand::UserDelete { name: "bob".into() }), Err(AuthError::UserNotFound));
    assert_eq!(apply(&mut store, AuthCommand::RoleDelete { name: "x".into() }), Err(AuthError::RoleNotFound));
    apply(&mut store, AuthCommand::RoleDelete { name: "reader".into() }).expect("role delete");
    assert!(store.user("alice").expect("alice").roles.is_empty(), "a deleted role is revoked from its users");
    assert_eq!(store.user_names(), vec!["alice".to_string()]);
    assert!(store.revision() > r0);
    assert_eq!(store.role_permissions(ROOT_ROLE), Err(AuthError::RoleNotFound));
    apply(&mut store, AuthCommand::RoleAdd { name: ROOT_ROLE.into() }).expect("root role");
    let root = store.role_permissions(ROOT_ROLE).expect("root");
    assert_eq!(root, vec![Permission { perm_type: PermType::ReadWrite, key: vec![], range_end: vec![0] }]);
}

#[test]
fn every_change_bumps_the_revision_once() {
    let mut store = AuthStore::new();
    let commands = [
        user_add("u"),
        AuthCommand::RoleAdd { name: "r".into() },
        grant("u", "r"),
        perm("r", PermType::Write, b"k", b""),
        AuthCommand::RoleRevokePermission { name: "r".into(), key: b"k".to_vec(), range_end: vec![] },
        AuthCommand::UserChangePassword { name: "u".into(), password_hash: b"h2".to_vec() },
        AuthCommand::UserRevokeRole { name: "u".into(), role: "r".into() },
        AuthCommand::RoleDelete { name: "r".into() },
        AuthCommand::UserDelete { name: "u".into() },
    ];
    for (i, command) in commands.into_iter().enumerate() {
        let before = store.revision();
        apply(&mut store, command.clone()).unwrap_or_else(|e| panic!("{command:?}: {e}"));
        assert_eq!(store.revision(), before + 1, "command {i}: {command:?}");
    }
}

#[test]
fn authenticate_issues_tokens_and_events() {
    let mut store = AuthStore::new();
    let mut batch = WriteBatch::new(1);
    let mut events = Vec::new();
    let auth = |name: &str, revision| AuthCommand::Authenticate {
        name: name.into(),
        token_prefix: "abc".into(),
        checked_revision: revision,
    };
    assert_eq!(store.apply(&auth("root", 1), 5, &mut batch, &mut events), Err(AuthError::AuthNotEnabled));
    store = enabled_store();
    let revision = store.revision();
    assert_eq!(store.apply(&auth("nobody", revision), 5, &mut batch, &mut events), Err(AuthError::AuthFailed));
    assert_eq!(store.apply(&auth("root", revision - 1), 5, &mut batch, &mut events), Err(AuthError::AuthOldRevision));
    batch = WriteBatch::new(9);
    assert_eq!(store.apply(&auth("root", revision), 9, &mut batch, &mut events), Ok("abc.9".to_string()));
    assert!(batch.ops.is_empty(), "authenticating changes no state");
    assert_eq!(events, vec![AuthEvent::TokenIssued { token: "abc.9".into(), user: "root".into() }]);
    events.clear();
    let nopass = AuthCommand::UserAdd { name: "svc".into(), password_hash: b"ignored".to_vec(), no_password: true };
    store.apply(&nopass, 10, &mut batch, &mut events).expect("add");
    assert!(store.user("svc").expect("svc").password_hash.is_empty());
    assert_eq!(store.apply(&auth("svc", store.revision()), 11, &mut batch, &mut events), Err(AuthError::AuthFailed));
    store
        .apply(
            &AuthCommand::UserChangePassword { name: "root".into(), password_hash: b"h".to_vec() },
            12,
            &mut batch,
            &mut events,
        )
        .expect("pw");
    store.apply(&AuthCommand::Disable, 13, &mut batch, &mut events).expect("disable");
    assert_eq!(events, vec![AuthEvent::UserInvalidated { user: "root".into() }, AuthEvent::Reset]);
}

#[test]
fn permission_checks_follow_etcd() {
    let mut store = AuthStore::new();
    for command in [
        user_add("root"),
        grant("root", ROOT_ROLE),
        user_add("alice"),
        AuthCommand::RoleAdd { name: "app".into() },
        AuthCommand::RoleAdd { name: "logs".into() },
        perm("app", PermType::ReadWrite, b"app/", b"app0"),
        perm("logs", PermType::Read, b"log/", b"log0"),
        perm("logs", PermType::Write, b"log/x", b""),
        grant("alice", "app"),
        grant("alice", "logs"),
    ] {
        apply(&mut store, command).expect("setup");
    }
    let alice = caller("alice", store.revision());
    // Disabled: everything is allowed, even without a user.
    assert_eq!(store.check_op(None, b"secret", b"", PermType::Write), Ok(()));
    assert_eq!(store.check_admin(None), Ok(()));
    apply(&mut store, AuthCommand::Enable).expect("enable");
    let check = |key: &[u8], end: &[u8], t| store.check_op(Some(&alice), key, end, t);
    assert_eq!(check(b"app/1", b"", PermType::Write), Ok(()));
    assert_eq!(check(b"app/", b"app0", PermType::Read), Ok(()));
    assert_eq!(check(b"app/a", b"app/b", PermType::Read), Ok(()));
    assert_eq!(check(b"app/", b"app1", PermType::Read), Err(AuthError::PermissionDenied));
    assert_eq!(check(b"app", b"", PermType::Read), Err(AuthError::PermissionDenied));
    assert_eq!(check(b"log/1", b"", PermType::Read), Ok(()));
    assert_eq!(check(b"log/1", b"", PermType::Write), Err(AuthError::PermissionDenied));
    assert_eq!(check(b"log/x", b"", PermType::Write), Ok(()));
    assert_eq!(check(b"log/x", b"log/y", PermType::Write), Err(AuthError::PermissionDenied));
    // A range over both grants is covered by their union only where they touch.
    assert_eq!(check(b"app/", b"log0", PermType::Read), Err(AuthError::PermissionDenied));
    assert_eq!(check(b"a", &[0], PermType::Read), Err(AuthError::PermissionDenied));
    // Users: none, unknown, stale revision, root.
    assert_eq!(store.check_op(None, b"app/1", b"", PermType::Read), Err(AuthError::UserEmpty));
    assert_eq!(store.check_op(Some(&caller("", 9)), b"app/1", b"", PermType::Read), Err(AuthError::UserEmpty));
    assert_eq!(
        store.check_op(Some(&caller("eve", store.revision())), b"app/1", b"", PermType::Read),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        store.check_op(Some(&caller("alice", store.revision() - 1)), b"app/1", b"", PermType::Read),
        Err(AuthError::AuthOldRevision)
    );
    let root = caller("root", store.revision());
    assert_eq!(store.check_op(Some(&root), b"anything", &[0], PermType::Write), Ok(()));
    assert_eq!(store.check_admin(Some(&root)), Ok(()));
    assert_eq!(store.check_admin(Some(&alice)), Err(AuthError::PermissionDenied));
    assert_eq!(store.check_admin(Some(&caller("eve", 99))), Err(AuthError::UserNotFound));
    assert_eq!(store.check_admin(None), Err(AuthError::UserEmpty));
}

#[test]
fn open_ended_grants_cover_everything_after_their_key() {
    let mut store = enabled_store();
    for command in [
        user_add("u"),
        AuthCommand::RoleAdd { name: "r".into() },
        perm("r", PermType::Read, b"m", &[0]),
        perm("r", PermType::Read, b"a", b"m"),
        grant("u", "r"),
    ] {
        apply(&mut store, command).expect("setup");
    }
    let u = caller("u", store.revision());
    assert_eq!(store.check_op(Some(&u), b"zzz", b"", PermType::Read), Ok(()));
    assert_eq!(store.check_op(Some(&u), b"a", &[0], PermType::Read), Ok(()), "[a,m) and [m,inf) touch");
    assert_eq!(store.check_op(Some(&u), b"0", &[0], PermType::Read), Err(AuthError::PermissionDenied));
    assert_eq!(store.check_op(Some(&u), b"zzz", b"", PermType::Write), Err(AuthError::PermissionDenied));
}

/// The oracle: `[begin, end)` (`end == None`: unbounded) is covered by the
/// grants iff each point where coverage could start to fail is in a grant:
/// `begin` itself and every grant's end inside the range.
fn covered_by_points(grants: &[(Vec<u8>, Option<Vec<u8>>)], begin: &[u8], end: Option<&[u8]>) -> bool {
    let inside = |p: &[u8]| grants.iter().any(|(b, e)| b.as_slice() <= p && e.as_deref().is_none_or(|e| p < e));
    let mut points = vec![begin.to_vec()];
    points.extend(
        grants
            .iter()
            .filter_map(|(_, e)| e.clone())
            .filter(|e| e.as_slice() > begin && end.is_none_or(|end| e.as_slice() < end)),
    );
    points.iter().all(|p| inside(p))
}

fn small_key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c')], 1..3)
}

/// A range end: `None` for a single key, `Some([0])` for open-ended, else a key.
fn small_end() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![Just(None), Just(Some(vec![0])), small_key().prop_map(Some)]
}

proptest! {
    /// Permission checks agree with the point oracle for random grants and
    /// requests over a small key alphabet.
    #[test]
    fn range_checks_match_an_oracle(
        grants in proptest::collection::vec((small_key(), small_end()), 0..5),
        request in (small_key(), small_end()),
    ) {
        let mut store = enabled_store();
        apply(&mut store, user_add("u")).expect("u");
        apply(&mut store, AuthCommand::RoleAdd { name: "r".into() }).expect("r");
        apply(&mut store, grant("u", "r")).expect("grant");
        let mut intervals = Vec::new();
        for (key, end) in &grants {
            let range_end = end.clone().unwrap_or_default();
            apply(&mut store, perm("r", PermType::Read, key, &range_end)).expect("perm");
            let interval_end = match end {
                None => Some([key.as_slice(), &[0]].concat()),
                Some(e) if e == &[0] => None,
                Some(e) => Some(e.clone()),
            };
            intervals.push((key.clone(), interval_end));
        }
        let (key, end) = request;
        let range_end = end.clone().unwrap_or_default();
        let expected = match &end {
            None => intervals.iter().any(|(b, e)| b <= &key && e.as_ref().is_none_or(|e| &key < e)),
            Some(e) if e == &[0] => covered_by_points(&intervals, &key, None),
            Some(e) if e <= &key => intervals.iter().any(|(b, ie)| b <= &key && ie.as_ref().is_none_or(|ie| &key < ie)),
            Some(e) => covered_by_points(&intervals, &key, Some(e)),
        };
        let u = caller("u", store.revision());
        let got = store.check_op(Some(&u), &key, &range_end, PermType::Read).is_ok();
        prop_assert_eq!(got, expected, "grants {:?} request {:?} {:?}", grants, key, end);
        prop_assert!(store.check_op(Some(&u), &key, &range_end, PermType::Write).is_err(), "read grants never allow writes");
    }
}

fn kv_store() -> KvStore<MemStorage> {
    KvStore::open(KvConfig::default(), MemStorage::new()).expect("open")
}

fn execute(store: &mut KvStore<MemStorage>, index: u64, command: AuthCommand) -> Result<KvResponse, KvError> {
    store.execute(index, &KvCommand::Auth(command))
}

#[test]
fn the_kv_store_persists_snapshots_and_hashes_auth_state() {
    let mut store = kv_store();
    let mut index = 0;
    let mut next = || {
        index += 1;
        index
    };
    for command in [
        user_add("root"),
        grant("root", ROOT_ROLE),
        AuthCommand::RoleAdd { name: "app".into() },
        perm("app", PermType::ReadWrite, b"app/", b"app0"),
        user_add("alice"),
        grant("alice", "app"),
        AuthCommand::Enable,
    ] {
        execute(&mut store, next(), command).expect("apply");
    }
    store.execute(next(), &KvCommand::Put(PutRequest { key: b"k".to_vec(), ..PutRequest::default() })).expect("put");
    // A refused command answers with the error.
    let refused = execute(&mut store, next(), AuthCommand::RoleAdd { name: "app".into() });
    assert_eq!(refused, Err(KvError::Auth(AuthError::RoleAlreadyExist)));
    let auth = store.auth();
    assert!(auth.enabled());
    let reopened = KvStore::open(KvConfig::default(), store.into_storage()).expect("reopen");
    assert_eq!(*reopened.auth(), *auth, "auth state survives a restart");
    // Snapshots carry it to a fresh store.
    let mut fresh = kv_store();
    fresh.restore(&reopened.snapshot()).expect("restore");
    assert_eq!(*fresh.auth(), *auth);
    assert_eq!(fresh.take_auth_events(), vec![AuthEvent::Reset]);
    // And the dump that replicas compare differs when auth state differs.
    let before = fresh.mvcc().dump();
    let i = fresh.applied_index() + 1;
    execute(&mut fresh, i, AuthCommand::RoleAdd { name: "other".into() }).expect("role add");
    assert_ne!(fresh.mvcc().dump(), before);
}

#[test]
fn authenticate_through_the_kv_store_reports_tokens() {
    let mut store = kv_store();
    for (i, command) in [user_add("root"), grant("root", ROOT_ROLE), AuthCommand::Enable].into_iter().enumerate() {
        execute(&mut store, i as u64 + 1, command).expect("setup");
    }
    let revision = store.auth().revision();
    let command =
        AuthCommand::Authenticate { name: "root".into(), token_prefix: "p".into(), checked_revision: revision };
    let Ok(KvResponse::Auth(response)) = execute(&mut store, 4, command) else { panic!("authenticate failed") };
    assert_eq!(response.token, "p.4");
    assert_eq!(response.auth_revision, revision);
    assert_eq!(store.take_auth_events(), vec![AuthEvent::TokenIssued { token: "p.4".into(), user: "root".into() }]);
    assert!(store.take_auth_events().is_empty());
}

fn as_user(user: &str, auth_revision: u64, command: KvCommand) -> KvCommand {
    KvCommand::AsUser(crate::kv::UserCommand { user: user.into(), auth_revision, command: Box::new(command) })
}

#[test]
fn commands_are_checked_at_apply_with_their_sender() {
    use crate::kv::{DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, RequestOp, TxnRequest};
    let mut store = kv_store();
    let mut index = 0;
    let mut run = |store: &mut KvStore<MemStorage>, command: KvCommand| {
        index += 1;
        store.execute(index, &command)
    };
    let put = |key: &str, lease| KvCommand::Put(PutRequest { key: key.into(), lease, ..PutRequest::default() });
    // Disabled: anything goes, with or without a user.
    run(&mut store, as_user("", 0, put("free", 0))).expect("auth disabled");
    for command in [
        user_add("root"),
        grant("root", ROOT_ROLE),
        user_add("alice"),
        AuthCommand::RoleAdd { name: "app".into() },
        perm("app", PermType::ReadWrite, b"app/", b"app0"),
        grant("alice", "app"),
        AuthCommand::Enable,
    ] {
        run(&mut store, KvCommand::Auth(command)).expect("setup");
    }
    let revision = store.auth().revision();
    let denied = Err(KvError::Auth(AuthError::PermissionDenied));
    assert_eq!(run(&mut store, as_user("", 0, put("app/1", 0))), Err(KvError::Auth(AuthError::UserEmpty)));
    assert_eq!(run(&mut store, as_user("alice", revision, put("x", 0))), denied);
    assert!(run(&mut store, as_user("alice", revision, put("app/1", 0))).is_ok());
    let txn = TxnRequest {
        success: vec![RequestOp::Txn(TxnRequest {
            failure: vec![RequestOp::DeleteRange(DeleteRangeRequest { key: b"x".to_vec(), ..Default::default() })],
            ..Default::default()
        })],
        ..Default::default()
    };
    assert_eq!(run(&mut store, as_user("alice", revision, KvCommand::Txn(txn))), denied);
    assert_eq!(
        run(
            &mut store,
            as_user(
                "alice",
                revision,
                KvCommand::Compaction(crate::kv::CompactionRequest { revision: 2, physical: false })
            )
        ),
        denied
    );
    // A lease holding a key alice may not write cannot be revoked, nor reused, by her.
    let Ok(KvResponse::LeaseGrant(lease)) =
        run(&mut store, as_user("alice", revision, KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 0 })))
    else {
        panic!("grant")
    };
    run(&mut store, as_user("root", revision, put("secret", lease.id))).expect("root puts");
    assert_eq!(run(&mut store, as_user("alice", revision, put("app/2", lease.id))), denied);
    assert_eq!(
        run(&mut store, as_user("alice", revision, KvCommand::LeaseRevoke(LeaseRevokeRequest { id: lease.id }))),
        denied
    );
    // An auth change committed before a request makes its revision stale.
    run(&mut store, as_user("root", revision, KvCommand::Auth(AuthCommand::RoleAdd { name: "r2".into() })))
        .expect("role add");
    assert_eq!(
        run(&mut store, as_user("alice", revision, put("app/1", 0))),
        Err(KvError::Auth(AuthError::AuthOldRevision))
    );
    assert!(run(&mut store, as_user("alice", revision + 1, put("app/1", 0))).is_ok());
    // Management needs root; revoking alice's role takes effect for her next request.
    assert_eq!(
        run(
            &mut store,
            as_user("alice", revision + 1, KvCommand::Auth(AuthCommand::UserDelete { name: "root".into() }))
        ),
        denied
    );
    run(
        &mut store,
        as_user(
            "root",
            revision + 1,
            KvCommand::Auth(AuthCommand::UserRevokeRole { name: "alice".into(), role: "app".into() }),
        ),
    )
    .expect("revoke");
    assert_eq!(run(&mut store, as_user("alice", revision + 2, put("app/1", 0))), denied);
    // Nested envelopes are refused.
    assert!(matches!(
        run(&mut store, as_user("root", revision + 2, as_user("root", revision + 2, put("a", 0)))),
        Err(KvError::Malformed(_))
    ));
}
