//! Fuzzing the HTTP decoders of a running member (`lockstep serve`, one
//! member): raw requests over TCP to the admin port (random bytes, and
//! requests with random methods, paths, percent-encoding, query strings,
//! headers, lying lengths, chunked bodies and JSON bodies for every admin
//! endpoint) and to the client port (the JSON gateway over HTTP/1.1, an
//! HTTP/2 preface followed by garbage). Properties: the member never dies;
//! every answer that comes is an HTTP response whose status is one the
//! endpoint gives (never a 5xx but 503 while not ready); and nothing is lost:
//! after the stream of requests, the key put before is still there and
//! `/health` answers 200.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::Cluster;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Sends `bytes` and reads what comes back until the server closes or is
/// quiet for a while (an incomplete request is left waiting).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("the member accepts connections");
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.len() > 1 << 20 {
            break;
        }
    }
    out
}

fn gateway(addr: SocketAddr, path: &str, body: &str) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    String::from_utf8_lossy(&exchange(addr, request.as_bytes())).into_owned()
}

/// The status of an HTTP/1.1 answer, if `answer` starts with one.
fn status(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn check_alive(cluster: &mut Cluster) -> Result<(), TestCaseError> {
    let exited = cluster.members[0].child.as_mut().and_then(|c| c.try_wait().ok().flatten());
    prop_assert!(exited.is_none(), "the member exited: {exited:?}");
    Ok(())
}

// ---- inputs ----

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE")].prop_map(str::to_string),
        1 => prop_oneof![Just("HEAD"), Just("OPTIONS"), Just("PATCH"), Just("CONNECT"), Just("TRACE")].prop_map(str::to_string),
        1 => "[A-Za-z]{1,10}",
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("health".to_string()),
        Just("livez".to_string()),
        Just("readyz".to_string()),
        Just("metrics".to_string()),
        Just("cluster".to_string()),
        Just("members".to_string()),
        Just("leader".to_string()),
        Just("status".to_string()),
        Just("transfer".to_string()),
        Just("promote".to_string()),
        Just("snapshot".to_string()),
        // Member ids: never one a generated add could have used (2..=1000
        // are left out), so that no generated promote makes a voter out of
        // a learner that does not exist.
        prop_oneof![
            Just("0"),
            Just("1"),
            Just("18446744073709551615"),
            Just("18446744073709551616"),
            Just("-1"),
            Just("1e3")
        ]
        .prop_map(str::to_string),
        Just("%2e%2e".to_string()),
        Just("..".to_string()),
        Just("".to_string()),
        "[a-z0-9%]{1,8}",
        "%[0-9A-F]{2}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (proptest::collection::vec(segment(), 0..5), prop::option::of("[a-z=&%0-9]{0,16}"), any::<bool>()).prop_map(
        |(segments, query, slash)| {
            let mut path = format!("/{}", segments.join("/"));
            if slash {
                path.push('/');
            }
            if let Some(query) = query {
                path.push('?');
                path.push_str(&query);
            }
            path
        },
    )
}

fn json_body() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just("18446744073709551616".to_string()),
        (1001u64..u64::MAX).prop_map(|n| n.to_string()),
        "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("[]".to_string()),
        Just("{}".to_string()),
    ];
    let field = prop_oneof![
        Just("id"),
        Just("peer"),
        Just("name"),
        Just("client"),
        Just("admin"),
        Just("learner"),
        Just("target"),
        Just("x")
    ];
    proptest::collection::vec((field, value), 0..5).prop_map(|fields| {
        // `learner` is never false: a voter that will never start would
        // take the one-member cluster's quorum away, on purpose.
        let items: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| if k == "learner" { "\"learner\": true".to_string() } else { format!("{k:?}: {v}") })
            .collect();
        format!("{{{}}}", items.join(", "))
    })
}

#[derive(Debug, Clone)]
enum Framing {
    Length,
    LyingLength(u64),
    Chunked,
    BadChunk(String),
    None,
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        4 => Just(Framing::Length),
        1 => prop_oneof![Just(0u64), Just(u64::MAX), 0u64..64].prop_map(Framing::LyingLength),
        1 => Just(Framing::Chunked),
        1 => prop_oneof![Just("zz"), Just("-1"), Just("ffffffffffffffffff"), Just("3;x=y")].prop_map(|s| Framing::BadChunk(s.to_string())),
        1 => Just(Framing::None),
    ]
}

fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Expect: 100-continue".to_string()),
        Just("Content-Type: application/grpc".to_string()),
        Just("Transfer-Encoding: gzip".to_string()),
        Just("Host:".to_string()),
        "[A-Za-z-]{1,12}: [ -~]{0,30}",
        "[ -~]{0,30}",
        "X-Long: [a-z]{1000,3000}",
    ]
}

fn http_request() -> impl Strategy<Value = Vec<u8>> {
    (
        method(),
        path(),
        prop::option::weighted(0.3, proptest::collection::vec(header(), 0..3)),
        framing(),
        prop_oneof![json_body(), "[ -~]{0,40}"],
        prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0"), Just("HTTP/9.9"), Just("")],
    )
        .prop_map(|(method, path, headers, framing, body, version)| {
            let mut out = format!("{method} {path} {version}\r\nHost: localhost\r\nConnection: close\r\n");
            for h in headers.unwrap_or_default() {
                out.push_str(&h);
                out.push_str("\r\n");
            }
            match framing {
                Framing::Length => out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len())),
                Framing::LyingLength(n) => out.push_str(&format!("Content-Length: {n}\r\n\r\n{body}")),
                Framing::Chunked => {
                    out.push_str(&format!("Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len()))
                }
                Framing::BadChunk(size) => {
                    out.push_str(&format!("Transfer-Encoding: chunked\r\n\r\n{size}\r\n{body}\r\n"))
                }
                Framing::None => out.push_str(&format!("\r\n{body}")),
            }
            out.into_bytes()
        })
}

fn damaged(request: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (request, proptest::collection::vec((any::<usize>(), 1u8..=255), 0..2), prop::option::weighted(0.2, any::<usize>()))
        .prop_map(|(mut bytes, flips, cut)| {
            for (at, bits) in flips {
                let i = at % bytes.len().max(1);
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= bits;
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            bytes
        })
}

/// Statuses the admin port gives: answers, and refusals of bad requests.
const ADMIN_STATUSES: &[u16] =
    &[100, 200, 201, 202, 204, 400, 404, 405, 409, 411, 413, 414, 417, 421, 426, 431, 501, 503, 505];
/// The client port: the gateway's answers and errors (see `fuzz_gateway.rs`) and hyper's.
const CLIENT_STATUSES: &[u16] = &[100, 200, 400, 401, 403, 404, 405, 409, 411, 413, 414, 417, 429, 431, 501, 503, 505];

/// One member for every property (the point: garbage sent by one case
/// must not hurt the next), then the check that nothing is lost.
#[test]
fn http_requests_are_answered_or_refused_and_nothing_is_lost() {
    let cluster = RefCell::new(Cluster::start(1));
    let (admin, client) = {
        let cluster = cluster.borrow();
        cluster.members[0].wait_ready(Duration::from_secs(30));
        (cluster.members[0].config.listen.admin, cluster.members[0].config.listen.client)
    };
    let put = gateway(client, "/v3/kv/put", r#"{"key":"c2VudGluZWw=","value":"a2VwdA=="}"#);
    assert!(put.starts_with("HTTP/1.1 200"), "{put}");

    let admin_requests = prop_oneof![4 => damaged(http_request()), 1 => proptest::collection::vec(any::<u8>(), 0..200)];
    let mut runner = TestRunner::new(config(160));
    let result = runner.run(&admin_requests, |request| {
        let answer = exchange(admin, &request);
        if let Some(code) = status(&answer) {
            prop_assert!(ADMIN_STATUSES.contains(&code), "status {code}: {}", String::from_utf8_lossy(&answer));
        }
        check_alive(&mut cluster.borrow_mut())
    });
    if let Err(e) = result {
        panic!("admin port: {e}\n{}", cluster.borrow().logs());
    }

    let client_requests = prop_oneof![
        3 => damaged(http_request().prop_map(|r| {
            // The same requests, at the gateway's paths.
            String::from_utf8_lossy(&r).replacen(' ', " /v3/kv", 1).into_bytes()
        })),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
        1 => proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|garbage| [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".as_slice(), &garbage].concat()),
    ];
    let mut runner = TestRunner::new(config(96));
    let result = runner.run(&client_requests, |request| {
        let answer = exchange(client, &request);
        if let Some(code) = status(&answer) {
            prop_assert!(CLIENT_STATUSES.contains(&code), "status {code}: {}", String::from_utf8_lossy(&answer));
        }
        check_alive(&mut cluster.borrow_mut())
    });
    if let Err(e) = result {
        panic!("client port: {e}\n{}", cluster.borrow().logs());
    }

    // Nothing is lost: the key put first is there, the member is healthy.
    let range = gateway(client, "/v3/kv/range", r#"{"key":"c2VudGluZWw="}"#);
    assert!(range.contains(r#""value":"a2VwdA==""#), "{range}");
    let health = exchange(admin, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status(&health), Some(200), "{}", String::from_utf8_lossy(&health));
}
