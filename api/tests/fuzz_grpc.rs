//! Fuzzing the gRPC request decoders of the client port, in process (see
//! `lockstep_api::fuzz`): random bytes, random frames, valid requests of
//! every method with random field values, then damaged (bytes flipped, cut
//! short, extended, a lying length prefix, the compression flag), random
//! headers. Properties:
//!
//! - nothing panics or hangs;
//! - every finished answer carries a grpc-status from the expected set, with
//!   a message when it is not OK, and a well-framed body (one message for a
//!   unary OK);
//! - nothing is lost: after any stream of such requests that changed nothing
//!   on purpose, the data put before is still there and the service still
//!   answers a valid request correctly.
//!
//! `PROPTEST_CASES=100000 cargo test -p lockstep-api --test fuzz_grpc` runs
//! longer; `fuzz/` has the coverage-guided targets over the same entry.

use lockstep_api::fuzz::{frame, messages, GrpcOutcome, Harness, GRPC_METHODS, REQUEST_BYTES_MAX};
use lockstep_api::pb::authpb;
use lockstep_api::pb::etcdserverpb as pb;
use proptest::prelude::*;
use prost::Message;

/// The cases of each property: `PROPTEST_CASES`, else `default`.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// The codes a request can be answered with. Never `UNKNOWN` (a handler
/// that failed without saying why) or `DATA_LOSS`.
const CODES_EXPECTED: &[i32] = &[
    0,  // OK
    3,  // INVALID_ARGUMENT
    5,  // NOT_FOUND
    6,  // ALREADY_EXISTS
    7,  // PERMISSION_DENIED
    8,  // RESOURCE_EXHAUSTED (a message over the limit)
    9,  // FAILED_PRECONDITION
    11, // OUT_OF_RANGE
    12, // UNIMPLEMENTED (an unknown method, an unsupported encoding)
    13, // INTERNAL (a message that is not protobuf, a broken frame)
    14, // UNAVAILABLE
    16, // UNAUTHENTICATED
];

const STREAMING: &[&str] = &["/etcdserverpb.Lease/LeaseKeepAlive", "/etcdserverpb.Watch/Watch"];

fn check(path: &str, outcome: &GrpcOutcome) -> Result<(), TestCaseError> {
    let framed = messages(&outcome.data);
    prop_assert!(framed.is_some(), "{path}: a badly framed answer {outcome:?}");
    if !outcome.ended {
        prop_assert!(STREAMING.contains(&path), "{path}: a unary answer that did not end: {outcome:?}");
        return Ok(());
    }
    let Some(code) = outcome.code else {
        return Err(TestCaseError::fail(format!("{path}: no grpc-status: {outcome:?}")));
    };
    prop_assert!(CODES_EXPECTED.contains(&code), "{path}: unexpected code {code}: {outcome:?}");
    if code != 0 {
        prop_assert!(!outcome.message.is_empty(), "{path}: code {code} without a message");
    } else if !STREAMING.contains(&path) && path != "/etcdserverpb.Maintenance/Snapshot" {
        prop_assert_eq!(framed.map(|m| m.len()), Some(1), "{}: OK without exactly one message", path);
    }
    Ok(())
}

// ---- inputs ----

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(vec![0]),
        Just(b"foo".to_vec()),
        Just(vec![0xff; 3]),
        proptest::collection::vec(any::<u8>(), 0..max),
    ]
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0), Just(-1), Just(1), Just(i64::MAX), Just(i64::MIN), -5i64..100, any::<i64>()]
}

fn enumeration() -> impl Strategy<Value = i32> {
    prop_oneof![0i32..6, any::<i32>()]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), Just("root".to_string()), "[a-z]{1,6}", any::<String>()]
}

fn range_request() -> impl Strategy<Value = pb::RangeRequest> {
    (bytes(8), bytes(8), int(), int(), enumeration(), enumeration(), any::<[bool; 3]>(), [int(), int(), int(), int()])
        .prop_map(|(key, range_end, limit, revision, sort_order, sort_target, flags, mins)| pb::RangeRequest {
            key,
            range_end,
            limit,
            revision,
            sort_order,
            sort_target,
            serializable: flags[0],
            keys_only: flags[1],
            count_only: flags[2],
            min_mod_revision: mins[0],
            max_mod_revision: mins[1],
            min_create_revision: mins[2],
            max_create_revision: mins[3],
        })
}

fn put_request() -> impl Strategy<Value = pb::PutRequest> {
    (bytes(8), bytes(64), int(), any::<[bool; 3]>()).prop_map(|(key, value, lease, flags)| pb::PutRequest {
        key,
        value,
        lease,
        prev_kv: flags[0],
        ignore_value: flags[1],
        ignore_lease: flags[2],
    })
}

fn delete_request() -> impl Strategy<Value = pb::DeleteRangeRequest> {
    (bytes(8), bytes(8), any::<bool>()).prop_map(|(key, range_end, prev_kv)| pb::DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn compare() -> impl Strategy<Value = pb::Compare> {
    use pb::compare::TargetUnion;
    let target_union = prop_oneof![
        Just(None),
        int().prop_map(|v| Some(TargetUnion::Version(v))),
        int().prop_map(|v| Some(TargetUnion::CreateRevision(v))),
        int().prop_map(|v| Some(TargetUnion::ModRevision(v))),
        bytes(8).prop_map(|v| Some(TargetUnion::Value(v))),
        int().prop_map(|v| Some(TargetUnion::Lease(v))),
    ];
    (enumeration(), enumeration(), bytes(8), bytes(8), target_union).prop_map(
        |(result, target, key, range_end, target_union)| pb::Compare { result, target, key, range_end, target_union },
    )
}

fn txn_request() -> impl Strategy<Value = pb::TxnRequest> {
    use pb::request_op::Request;
    let leaf = prop_oneof![
        Just(pb::RequestOp { request: None }),
        range_request().prop_map(|r| pb::RequestOp { request: Some(Request::RequestRange(r)) }),
        put_request().prop_map(|r| pb::RequestOp { request: Some(Request::RequestPut(r)) }),
        delete_request().prop_map(|r| pb::RequestOp { request: Some(Request::RequestDeleteRange(r)) }),
    ];
    let ops = leaf.prop_recursive(3, 16, 4, |inner| {
        (
            proptest::collection::vec(compare(), 0..3),
            proptest::collection::vec(inner.clone(), 0..3),
            proptest::collection::vec(inner, 0..3),
        )
            .prop_map(|(compare, success, failure)| pb::RequestOp {
                request: Some(Request::RequestTxn(pb::TxnRequest { compare, success, failure })),
            })
    });
    (
        proptest::collection::vec(compare(), 0..4),
        proptest::collection::vec(ops.clone(), 0..4),
        proptest::collection::vec(ops, 0..4),
    )
        .prop_map(|(compare, success, failure)| pb::TxnRequest { compare, success, failure })
}

fn watch_request() -> impl Strategy<Value = pb::WatchRequest> {
    use pb::watch_request::RequestUnion;
    let create = (bytes(8), bytes(8), int(), any::<[bool; 3]>(), proptest::collection::vec(enumeration(), 0..3), int())
        .prop_map(|(key, range_end, start_revision, flags, filters, watch_id)| {
            RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key,
                range_end,
                start_revision,
                progress_notify: flags[0],
                filters,
                prev_kv: flags[1],
                watch_id,
                fragment: flags[2],
            })
        });
    prop_oneof![
        Just(None),
        create.prop_map(Some),
        int().prop_map(|watch_id| Some(RequestUnion::CancelRequest(pb::WatchCancelRequest { watch_id }))),
        Just(Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {}))),
    ]
    .prop_map(|request_union| pb::WatchRequest { request_union })
}

/// A valid request of a method (its path and its encoded message), with
/// random field values.
fn valid_request() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    let encode = |path: &'static str| move |m: Vec<u8>| (path, m);
    prop_oneof![
        range_request().prop_map(|r| ("/etcdserverpb.KV/Range", r.encode_to_vec())),
        put_request().prop_map(|r| ("/etcdserverpb.KV/Put", r.encode_to_vec())),
        delete_request().prop_map(|r| ("/etcdserverpb.KV/DeleteRange", r.encode_to_vec())),
        txn_request().prop_map(|r| ("/etcdserverpb.KV/Txn", r.encode_to_vec())),
        (int(), any::<bool>())
            .prop_map(|(revision, physical)| pb::CompactionRequest { revision, physical }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.KV/Compact")),
        (int(), int())
            .prop_map(|(ttl, id)| pb::LeaseGrantRequest { ttl, id }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.Lease/LeaseGrant")),
        int()
            .prop_map(|id| pb::LeaseRevokeRequest { id }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.Lease/LeaseRevoke")),
        (int(), any::<bool>())
            .prop_map(|(id, keys)| pb::LeaseTimeToLiveRequest { id, keys }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.Lease/LeaseTimeToLive")),
        proptest::collection::vec(int(), 1..4)
            .prop_map(|ids| {
                ids.into_iter().flat_map(|id| frame(false, &pb::LeaseKeepAliveRequest { id }.encode_to_vec())).collect()
            })
            .prop_map(|framed: Vec<u8>| ("/etcdserverpb.Lease/LeaseKeepAlive#framed", framed)),
        proptest::collection::vec(watch_request(), 1..4)
            .prop_map(|requests| requests.iter().flat_map(|r| frame(false, &r.encode_to_vec())).collect())
            .prop_map(|framed: Vec<u8>| ("/etcdserverpb.Watch/Watch#framed", framed)),
        (enumeration(), any::<u64>(), enumeration())
            .prop_map(|(action, member_id, alarm)| pb::AlarmRequest { action, member_id, alarm }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.Maintenance/Alarm")),
        int()
            .prop_map(|revision| pb::HashKvRequest { revision }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.Maintenance/HashKV")),
        any::<u64>()
            .prop_map(|target_id| pb::MoveLeaderRequest { target_id }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.Maintenance/MoveLeader")),
        (proptest::collection::vec(text(), 0..3), any::<bool>())
            .prop_map(|(peer_ur_ls, is_learner)| pb::MemberAddRequest { peer_ur_ls, is_learner }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.Cluster/MemberAdd")),
        any::<u64>()
            .prop_map(|id| pb::MemberRemoveRequest { id }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.Cluster/MemberRemove")),
        (text(), text())
            .prop_map(|(name, password)| pb::AuthenticateRequest { name, password }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.Auth/Authenticate")),
        (text(), text(), any::<Option<bool>>(), text())
            .prop_map(|(name, password, no_password, hashed_password)| pb::AuthUserAddRequest {
                name,
                password,
                options: no_password.map(|no_password| authpb::UserAddOptions { no_password }),
                hashed_password,
            }
            .encode_to_vec())
            .prop_map(encode("/etcdserverpb.Auth/UserAdd")),
        (text(), text())
            .prop_map(|(user, role)| pb::AuthUserGrantRoleRequest { user, role }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.Auth/UserGrantRole")),
        text()
            .prop_map(|name| pb::AuthRoleAddRequest { name }.encode_to_vec())
            .prop_map(encode("/etcdserverpb.Auth/RoleAdd")),
        (text(), any::<Option<(i32, Vec<u8>, Vec<u8>)>>())
            .prop_map(|(name, perm)| pb::AuthRoleGrantPermissionRequest {
                name,
                perm: perm.map(|(perm_type, key, range_end)| authpb::Permission { perm_type, key, range_end }),
            }
            .encode_to_vec())
            .prop_map(encode("/etcdserverpb.Auth/RoleGrantPermission")),
        (text(), bytes(8), bytes(8))
            .prop_map(
                |(role, key, range_end)| pb::AuthRoleRevokePermissionRequest { role, key, range_end }.encode_to_vec()
            )
            .prop_map(encode("/etcdserverpb.Auth/RoleRevokePermission")),
    ]
}

/// Random protobuf-shaped bytes: fields with random numbers and wire types,
/// length-delimited ones holding random bytes or (nested) such messages.
fn protobuf_shape() -> impl Strategy<Value = Vec<u8>> {
    let field = (1u32..20, prop_oneof![Just(0u8), Just(1), Just(2), Just(5), 0u8..8], any::<u64>(), bytes(16));
    let leaf = proptest::collection::vec(field, 0..6).prop_map(|fields| {
        let mut out = Vec::new();
        for (number, wire, value, payload) in fields {
            push_varint(&mut out, (u64::from(number) << 3) | u64::from(wire));
            match wire {
                0 => push_varint(&mut out, value),
                1 => out.extend_from_slice(&value.to_le_bytes()),
                5 => out.extend_from_slice(&(value as u32).to_le_bytes()),
                _ => {
                    push_varint(&mut out, payload.len() as u64);
                    out.extend_from_slice(&payload);
                }
            }
        }
        out
    });
    leaf.prop_recursive(4, 64, 4, |inner| {
        proptest::collection::vec((1u32..20, inner), 0..4).prop_map(|fields| {
            let mut out = Vec::new();
            for (number, nested) in fields {
                push_varint(&mut out, (u64::from(number) << 3) | 2);
                push_varint(&mut out, nested.len() as u64);
                out.extend_from_slice(&nested);
            }
            out
        })
    })
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A damage done to a framed request body.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Flip {
        at: usize,
        bits: u8,
    },
    Truncate {
        at: usize,
    },
    Extend(Vec<u8>),
    /// The length prefix of the first frame replaced.
    Length(u32),
    /// The compression flag of the first frame set.
    Compressed(u8),
    /// The same bytes again (two messages on a unary call).
    Twice,
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        Just(Damage::None),
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Damage::Flip { at, bits }),
        any::<usize>().prop_map(|at| Damage::Truncate { at }),
        bytes(16).prop_map(Damage::Extend),
        prop_oneof![Just(0u32), Just(u32::MAX), Just(REQUEST_BYTES_MAX as u32 + 1), any::<u32>(), 0u32..64]
            .prop_map(Damage::Length),
        (1u8..=255).prop_map(Damage::Compressed),
        Just(Damage::Twice),
    ];
    prop_oneof![1 => Just(Vec::new()), 1 => proptest::collection::vec(one, 1..4)]
}

fn apply(mut body: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        match d {
            Damage::None => {}
            Damage::Flip { at, bits } if !body.is_empty() => {
                let i = at % body.len();
                body[i] ^= bits;
            }
            Damage::Flip { .. } => {}
            Damage::Truncate { at } => body.truncate(at % (body.len() + 1)),
            Damage::Extend(more) => body.extend_from_slice(more),
            Damage::Length(len) if body.len() >= 5 => body[1..5].copy_from_slice(&len.to_be_bytes()),
            Damage::Compressed(flag) if !body.is_empty() => body[0] = *flag,
            Damage::Length(_) | Damage::Compressed(_) => {}
            Damage::Twice => body = [body.clone(), body].concat(),
        }
    }
    body
}

/// A request: the method, its headers and its body as sent.
type Request = (&'static str, Vec<(String, String)>, Vec<u8>);

fn method() -> impl Strategy<Value = &'static str> {
    (0..GRPC_METHODS.len()).prop_map(|i| GRPC_METHODS[i])
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let header = prop_oneof![
        prop_oneof![Just("gzip"), Just("identity"), Just("deflate"), Just("zstd"), Just("x")]
            .prop_map(|e| ("grpc-encoding".to_string(), e.to_string())),
        "[0-9a-zA-Z]{0,12}".prop_map(|t| ("grpc-timeout".to_string(), t)),
        "[ -~]{0,40}".prop_map(|t| ("token".to_string(), t)),
        "[ -~]{0,40}".prop_map(|t| ("authorization".to_string(), t)),
        prop_oneof![Just("application/grpc+proto"), Just("application/grpc+json"), Just("application/grpc-web")]
            .prop_map(|t| ("content-type".to_string(), t.to_string())),
    ];
    proptest::collection::vec(header, 0..3)
}

/// Any kind of request: random bytes, random frames, protobuf-shaped
/// messages, valid requests, each possibly damaged, to its own method or
/// (sometimes) another, with random headers now and then.
fn request() -> impl Strategy<Value = Request> {
    let body = prop_oneof![
        1 => (method(), proptest::collection::vec(any::<u8>(), 0..256)),
        1 => (method(), proptest::collection::vec(any::<u8>(), 0..128).prop_map(|m| frame(false, &m))),
        2 => (method(), protobuf_shape().prop_map(|m| frame(false, &m))),
        4 => valid_request().prop_map(|(path, message)| match path.strip_suffix("#framed") {
            Some(path) => (GRPC_METHODS.iter().copied().find(|m| *m == path).expect("a method"), message),
            None => (path, frame(false, &message)),
        }),
    ];
    (body, damage(), prop::option::weighted(0.1, method()), prop::option::weighted(0.2, headers())).prop_map(
        |((path, body), damages, other, headers)| {
            (other.unwrap_or(path), headers.unwrap_or_default(), apply(body, &damages))
        },
    )
}

fn send(harness: &Harness, (path, headers, body): &Request) -> Result<GrpcOutcome, TestCaseError> {
    let outcome = harness.grpc(path, headers, body).map_err(|hang| TestCaseError::fail(format!("{hang:?}")))?;
    check(path, &outcome)?;
    Ok(outcome)
}

/// Calls whose success may change what the sentinel check looks at.
const DISRUPTIVE: &[&str] = &[
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.Maintenance/Alarm",
    "/etcdserverpb.Auth/AuthEnable",
];

const SENTINEL: &[u8] = b"\xfe\xfdsentinel";

fn put_ok(harness: &Harness, key: &[u8], value: &[u8]) -> Result<(), TestCaseError> {
    let put = pb::PutRequest { key: key.to_vec(), value: value.to_vec(), ..Default::default() };
    let outcome = send(harness, &("/etcdserverpb.KV/Put", Vec::new(), frame(false, &put.encode_to_vec())))?;
    prop_assert_eq!(outcome.code, Some(0), "put: {:?}", outcome);
    Ok(())
}

fn get(harness: &Harness, key: &[u8]) -> Result<Vec<Vec<u8>>, TestCaseError> {
    let range = pb::RangeRequest { key: key.to_vec(), ..Default::default() };
    let outcome = send(harness, &("/etcdserverpb.KV/Range", Vec::new(), frame(false, &range.encode_to_vec())))?;
    prop_assert_eq!(outcome.code, Some(0), "range: {:?}", outcome);
    let message = messages(&outcome.data).expect("framed").remove(0);
    let response = pb::RangeResponse::decode(message.as_slice()).expect("a RangeResponse");
    Ok(response.kvs.into_iter().map(|kv| kv.value).collect())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn no_request_panics_hangs_or_is_answered_without_a_clear_status(request in request()) {
        let harness = Harness::new();
        send(&harness, &request)?;
    }

    #[test]
    fn random_bytes_to_any_method_are_refused_cleanly(
        path in method(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let harness = Harness::new();
        send(&harness, &(path, Vec::new(), body))?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// After any stream of requests, the data put before is still there
    /// (unless one of them was a write that the service accepted, which
    /// may have changed it on purpose), and a valid put and get still work.
    #[test]
    fn nothing_is_lost_after_a_stream_of_bad_requests(requests in proptest::collection::vec(request(), 1..24)) {
        let harness = Harness::new();
        put_ok(&harness, SENTINEL, b"kept")?;
        let mut disrupted = false;
        for request in &requests {
            let outcome = send(&harness, request)?;
            disrupted |= outcome.code == Some(0) && DISRUPTIVE.contains(&request.0);
        }
        if !disrupted {
            prop_assert_eq!(get(&harness, SENTINEL)?, vec![b"kept".to_vec()]);
            put_ok(&harness, b"\xfe\xfdafter", b"fresh")?;
            prop_assert_eq!(get(&harness, b"\xfe\xfdafter")?, vec![b"fresh".to_vec()]);
        }
        let status = send(&harness, &("/etcdserverpb.Maintenance/Status", Vec::new(), frame(false, &[])))?;
        prop_assert_eq!(status.code, Some(0), "status after the stream: {:?}", status);
    }
}

/// The inputs reach the handlers: of a few hundred generated requests,
/// some are served (OK) and some refused by each layer (framing, protobuf,
/// the handler's own checks), so the properties above test something.
#[test]
fn generated_requests_reach_every_layer() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = request();
    let harness = Harness::new();
    let mut codes = std::collections::BTreeMap::<i32, usize>::new();
    for _ in 0..600 {
        let request = strategy.new_tree(&mut runner).expect("a request").current();
        let outcome = harness.grpc(request.0, &request.1, &request.2).expect("no hang");
        *codes.entry(outcome.code.unwrap_or(-1)).or_default() += 1;
    }
    eprintln!("codes: {codes:?}");
    for code in [0, 3, 8, 12, 13] {
        assert!(codes.get(&code).copied().unwrap_or(0) >= 10, "too few answers with code {code}: {codes:?}");
    }
}
