//! Fuzzing the JSON gateway's body decoder, in process (see
//! `lockstep_api::fuzz`): random bytes, random JSON, JSON bodies of every
//! route with the right field names and random types and values (numbers
//! as strings, huge numbers, invalid and huge base64, missing fields, deep
//! nesting), then damaged as text. Properties:
//!
//! - nothing panics or hangs;
//! - every answer is a 200 with a JSON body (a JSON line per response on
//!   `/v3/watch`), or a 4xx (501 for an unknown path) with grpc-gateway's
//!   JSON error body `{"error", "code", "message"}` and a message;
//! - nothing is lost: after any stream of such requests that changed
//!   nothing on purpose, the data put before is still there and a valid
//!   put and range still work.

use base64::Engine as _;
use lockstep_api::fuzz::{Harness, HttpOutcome, GATEWAY_PATHS, REQUEST_BYTES_MAX};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// The HTTP statuses of grpc-gateway's error answers that a request can
/// earn; never a 500.
const ERRORS_EXPECTED: &[u16] = &[400, 401, 403, 404, 409, 429, 501, 503];

fn check(path: &str, outcome: &HttpOutcome) -> Result<(), TestCaseError> {
    prop_assert_eq!(&outcome.content_type, "application/json", "{}: {:?}", path, outcome);
    if path == "/v3/watch" && outcome.status == 200 {
        for line in outcome.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let value: Result<Value, _> = serde_json::from_slice(line);
            prop_assert!(value.is_ok(), "{path}: a watch line that is not JSON: {outcome:?}");
        }
        return Ok(());
    }
    prop_assert!(outcome.ended, "{path}: an answer that did not end: {outcome:?}");
    let body: Value = match serde_json::from_slice(&outcome.body) {
        Ok(body) => body,
        Err(e) => return Err(TestCaseError::fail(format!("{path}: a body that is not JSON ({e}): {outcome:?}"))),
    };
    if outcome.status == 200 {
        prop_assert!(body.is_object(), "{path}: 200 without a JSON object: {outcome:?}");
        return Ok(());
    }
    prop_assert!(ERRORS_EXPECTED.contains(&outcome.status), "{path}: unexpected status {}: {body}", outcome.status);
    let message = body["message"].as_str().unwrap_or("");
    prop_assert!(!message.is_empty(), "{path}: an error without a message: {body}");
    prop_assert_eq!(body["error"].as_str(), Some(message), "{}: {}", path, body);
    prop_assert!(body["code"].as_i64().is_some_and(|c| c > 0), "{path}: an error without a code: {body}");
    Ok(())
}

// ---- inputs ----

const FIELDS: &[&str] = &[
    "key",
    "range_end",
    "rangeEnd",
    "value",
    "limit",
    "revision",
    "sort_order",
    "sort_target",
    "serializable",
    "keys_only",
    "count_only",
    "min_mod_revision",
    "max_create_revision",
    "lease",
    "prev_kv",
    "ignore_value",
    "ignore_lease",
    "physical",
    "TTL",
    "ID",
    "keys",
    "action",
    "memberID",
    "alarm",
    "peerURLs",
    "isLearner",
    "targetID",
    "name",
    "password",
    "user",
    "role",
    "perm",
    "permType",
    "options",
    "no_password",
    "compare",
    "success",
    "failure",
    "request_put",
    "request_range",
    "request_delete_range",
    "request_txn",
    "result",
    "target",
    "version",
    "create_revision",
    "mod_revision",
    "create_request",
    "start_revision",
    "filters",
    "watch_id",
    "fragment",
    "progress_notify",
];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A JSON value that is likely to be read by some field: base64 of random
/// bytes, invalid base64, numbers in and out of range, numbers as strings,
/// enum names, booleans, nulls, and (nested) arrays and objects of these
/// with the gateway's field names.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(|b| Value::String(b64(&b))),
        "[ -~]{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| Value::String(n.to_string())),
        Just(Value::String("99999999999999999999999999".into())),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        prop_oneof![
            Just("DESCEND"),
            Just("MOD"),
            Just("NODELETE"),
            Just("ACTIVATE"),
            Just("NOSPACE"),
            Just("READWRITE")
        ]
        .prop_map(|s| Value::String(s.into())),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(((0..FIELDS.len()).prop_map(|i| FIELDS[i].to_string()), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A body for a route: an object of its likely fields, or any JSON.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(((0..FIELDS.len()).prop_map(|i| FIELDS[i].to_string()), value()), 0..8)
            .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>()).to_string().into_bytes()),
        1 => value().prop_map(|v| v.to_string().into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..256),
        1 => "[ -~]{0,64}".prop_map(String::into_bytes),
        // Numbers that do not fit any type, and exponents.
        1 => prop_oneof![Just("1e400"), Just("-1e400"), Just("123456789012345678901234567890"), Just("1.5e-400")]
            .prop_flat_map(|n| ((0..FIELDS.len()).prop_map(|i| FIELDS[i]), Just(n)))
            .prop_map(|(field, n)| format!("{{\"{field}\": {n}}}").into_bytes()),
    ]
}

#[derive(Debug, Clone)]
enum Damage {
    Flip { at: usize, bits: u8 },
    Truncate { at: usize },
    Insert { at: usize, text: String },
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Damage::Flip { at, bits }),
        any::<usize>().prop_map(|at| Damage::Truncate { at }),
        (
            any::<usize>(),
            prop_oneof![Just("{"), Just("}"), Just("["), Just("\""), Just(","), Just("\\u00"), Just("null")]
        )
            .prop_map(|(at, text)| Damage::Insert { at, text: text.into() }),
    ];
    prop_oneof![2 => Just(Vec::new()), 1 => proptest::collection::vec(one, 1..3)]
}

fn apply(mut body: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        match d {
            Damage::Flip { at, bits } if !body.is_empty() => {
                let i = at % body.len();
                body[i] ^= bits;
            }
            Damage::Flip { .. } => {}
            Damage::Truncate { at } => body.truncate(at % (body.len() + 1)),
            Damage::Insert { at, text } => {
                let i = at % (body.len() + 1);
                body.splice(i..i, text.bytes());
            }
        }
    }
    body
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => (0..GATEWAY_PATHS.len()).prop_map(|i| GATEWAY_PATHS[i].to_string()),
        1 => "/v3/[a-z/]{0,20}",
        1 => any::<String>(),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let header = prop_oneof![
        "[ -~]{0,40}".prop_map(|t| ("authorization".to_string(), t)),
        "[ -~]{0,40}".prop_map(|t| ("token".to_string(), t)),
    ];
    proptest::collection::vec(header, 0..2)
}

type Request = (String, Vec<(String, String)>, Vec<u8>);

fn request() -> impl Strategy<Value = Request> {
    (path(), prop::option::weighted(0.1, headers()), body(), damage())
        .prop_map(|(path, headers, body, damages)| (path, headers.unwrap_or_default(), apply(body, &damages)))
}

fn send(harness: &Harness, (path, headers, body): &Request) -> Result<HttpOutcome, TestCaseError> {
    let outcome = harness.gateway(path, headers, body).map_err(|hang| TestCaseError::fail(format!("{hang:?}")))?;
    check(path, &outcome)?;
    Ok(outcome)
}

/// Calls whose success may change what the sentinel check looks at (no
/// generated put can hit the sentinel's key: it is longer than any).
const DISRUPTIVE: &[&str] = &["/v3/kv/deleterange", "/v3/kv/txn", "/v3/maintenance/alarm", "/v3/auth/enable"];

fn call(harness: &Harness, path: &str, body: Value) -> Result<Value, TestCaseError> {
    let outcome = send(harness, &(path.to_string(), Vec::new(), body.to_string().into_bytes()))?;
    prop_assert_eq!(outcome.status, 200, "{}: {:?}", path, outcome);
    Ok(serde_json::from_slice(&outcome.body).expect("JSON"))
}

fn sentinel_values(harness: &Harness, key: &[u8]) -> Result<Vec<String>, TestCaseError> {
    let range = call(harness, "/v3/kv/range", json!({"key": b64(key)}))?;
    let kvs = range["kvs"].as_array().cloned().unwrap_or_default();
    Ok(kvs.iter().map(|kv| kv["value"].as_str().unwrap_or("").to_string()).collect())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn no_body_panics_hangs_or_is_answered_without_a_json_error(request in request()) {
        let harness = Harness::new();
        send(&harness, &request)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn nothing_is_lost_after_a_stream_of_bad_bodies(requests in proptest::collection::vec(request(), 1..24)) {
        let harness = Harness::new();
        // A key longer than any the generator makes, so that only a range
        // delete can reach it.
        let sentinel = b"\xfe\xfd sentinel key beyond twelve bytes";
        call(&harness, "/v3/kv/put", json!({"key": b64(sentinel), "value": b64(b"kept")}))?;
        let mut disrupted = false;
        for request in &requests {
            let outcome = send(&harness, request)?;
            disrupted |= outcome.status == 200 && DISRUPTIVE.contains(&request.0.as_str());
        }
        if !disrupted {
            prop_assert_eq!(sentinel_values(&harness, sentinel)?, vec![b64(b"kept")]);
            call(&harness, "/v3/kv/put", json!({"key": b64(b"\xfe\xfdafter"), "value": b64(b"fresh")}))?;
            prop_assert_eq!(sentinel_values(&harness, b"\xfe\xfdafter")?, vec![b64(b"fresh")]);
        }
        call(&harness, "/v3/maintenance/status", json!({}))?;
    }
}

/// Nesting far past serde_json's recursion limit (128) is refused with a
/// 400, without exhausting the stack.
#[test]
fn deeply_nested_bodies_are_refused_without_exhausting_the_stack() {
    let harness = Harness::new();
    for (open, close) in [("[", "]"), ("{\"a\":", "}"), ("{\"request_txn\":{\"success\":[", "]}}")] {
        let depth = 50_000;
        let body = format!("{}{}", open.repeat(depth), close.repeat(depth));
        for path in ["/v3/kv/range", "/v3/kv/txn", "/v3/watch"] {
            let outcome = harness.gateway(path, &[], body.as_bytes()).expect("an answer");
            assert_eq!(outcome.status, 400, "{path}: {outcome:?}");
        }
    }
    // A nested txn within the limit is answered.
    let mut txn = json!({"success": [{"request_put": {"key": b64(b"k"), "value": b64(b"v")}}]});
    for _ in 0..20 {
        txn = json!({"success": [{"request_txn": txn}]});
    }
    let outcome = harness.gateway("/v3/kv/txn", &[], txn.to_string().as_bytes()).expect("an answer");
    assert!(outcome.status == 200 || outcome.status == 400, "{outcome:?}");
}

/// A body over the request limit is refused before it is parsed; base64 of
/// the largest size allowed is decoded and answered.
#[test]
fn huge_bodies_and_base64_values_are_bounded() {
    let harness = Harness::new();
    let huge = format!("{{\"key\":\"{}\"}}", "A".repeat(REQUEST_BYTES_MAX + 1));
    let outcome = harness.gateway("/v3/kv/put", &[], huge.as_bytes()).expect("an answer");
    assert_eq!(outcome.status, 400, "{outcome:?}");
    let big = b64(&vec![7u8; REQUEST_BYTES_MAX / 2]);
    let body = json!({"key": b64(b"big"), "value": big}).to_string();
    let outcome = harness.gateway("/v3/kv/put", &[], body.as_bytes()).expect("an answer");
    assert_eq!(outcome.status, 200, "{outcome:?}");
}

/// Regression (found while writing these tests): a bytes field that is not base64 was
/// taken as the bytes of its text (`{"key": "foo"}` wrote the key `foo`).
/// grpc-gateway refuses it, at any depth; so does lockstep now.
#[test]
fn a_bytes_field_that_is_not_base64_is_refused_as_grpc_gateway_does() {
    let harness = Harness::new();
    for (path, body) in [
        ("/v3/kv/put", r#"{"key": "foo", "value": "YmFy"}"#),
        ("/v3/kv/put", r#"{"key": "Zm9v", "value": "bar!"}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v", "range_end": "Zm9"}"#),
        ("/v3/kv/txn", r#"{"success": [{"request_put": {"key": "a b", "value": "dg=="}}]}"#),
        ("/v3/kv/txn", r#"{"compare": [{"key": "Zm9v", "target": "VALUE", "value": "%%"}]}"#),
        ("/v3/watch", r#"{"create_request": {"key": "not base64"}}"#),
        ("/v3/auth/role/grant", r#"{"name": "r", "perm": {"key": "?", "permType": "READ"}}"#),
    ] {
        let outcome = harness.gateway(path, &[], body.as_bytes()).expect("an answer");
        assert_eq!(outcome.status, 400, "{path} {body}: {outcome:?}");
        let error: Value = serde_json::from_slice(&outcome.body).expect("JSON");
        assert_eq!(error["code"], 3, "{error}");
        let message = error["message"].as_str().unwrap_or("");
        assert!(message.starts_with("illegal base64 data at input byte "), "{message}");
    }
    // Nothing was written; valid base64 still is.
    let everything =
        harness.gateway("/v3/kv/range", &[], br#"{"key": "AA==", "range_end": "AA=="}"#).expect("an answer");
    assert_eq!(everything.status, 200);
    let body: Value = serde_json::from_slice(&everything.body).expect("JSON");
    assert_eq!(body.get("count"), None, "no key at all: {body}");
    let put = harness.gateway("/v3/kv/put", &[], br#"{"key": "Zm9v", "value": "YmFy"}"#).expect("an answer");
    assert_eq!(put.status, 200, "{put:?}");
}

/// The inputs reach the handlers: of a few hundred generated bodies, some
/// are served (200) and some refused (400), so the properties test something.
#[test]
fn generated_bodies_reach_the_handlers() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = request();
    let harness = Harness::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..600 {
        let (path, headers, body) = strategy.new_tree(&mut runner).expect("a request").current();
        let outcome = harness.gateway(&path, &headers, &body).expect("no hang");
        *statuses.entry(outcome.status).or_default() += 1;
    }
    eprintln!("statuses: {statuses:?}");
    for status in [200, 400] {
        assert!(statuses.get(&status).copied().unwrap_or(0) >= 30, "too few answers {status}: {statuses:?}");
    }
}
