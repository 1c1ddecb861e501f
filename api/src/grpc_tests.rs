//! The service in process: gRPC-framed request bodies in, responses decoded,
//! over a [`MemoryBackend`]; no network, no runtime (futures-lite's
//! `block_on`).

use futures_lite::future::block_on;
use http_body_util::{BodyExt, Full};
use lockstep_core::kv::KvConfig;

use super::*;
use crate::backend::HeaderInfo;
use crate::memory::MemoryBackend;

const INFO: HeaderInfo = HeaderInfo { cluster_id: 0x1234, member_id: 0xabcd, raft_term: 2 };

fn service() -> EtcdService {
    EtcdService::new(Rc::new(MemoryBackend::new(INFO, KvConfig::default())), ServiceConfig::default())
}

/// One length-prefixed gRPC message.
fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn request(path: &str, body: Vec<u8>) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// The messages of a finished response and its grpc-status (from the headers
/// of a trailers-only response, or from the trailers).
fn finish<M: Message + Default>(response: http::Response<ResponseBody>) -> (Vec<M>, i32, String) {
    let (parts, body) = response.into_parts();
    let collected = block_on(body.collect()).expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    let field = |name: &str| {
        trailers.get(name).or(parts.headers.get(name)).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    };
    let code = field("grpc-status").parse().expect("a grpc-status");
    let message = percent_decode(&field("grpc-message"));
    (decode_frames(&data), code, message)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn decode_frames<M: Message + Default>(mut data: &[u8]) -> Vec<M> {
    let mut out = Vec::new();
    while !data.is_empty() {
        assert_eq!(data[0], 0, "uncompressed");
        let len = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
        out.push(M::decode(&data[5..5 + len]).unwrap());
        data = &data[5 + len..];
    }
    out
}

fn call<Req: Message, Resp: Message + Default>(svc: &EtcdService, path: &str, req: Req) -> Result<Resp, (i32, String)> {
    let (mut messages, code, message) = finish::<Resp>(block_on(svc.handle(request(path, frame(&req)))));
    if code != 0 {
        return Err((code, message));
    }
    assert_eq!(messages.len(), 1);
    Ok(messages.remove(0))
}

fn put(svc: &EtcdService, key: &str, value: &str) -> pb::PutResponse {
    let req = pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() };
    call(svc, "/etcdserverpb.KV/Put", req).unwrap()
}

#[test]
fn put_then_range_with_headers() {
    let svc = service();
    let put_response = put(&svc, "foo", "bar");
    assert_eq!(
        put_response.header,
        Some(pb::ResponseHeader { cluster_id: 0x1234, member_id: 0xabcd, revision: 2, raft_term: 2 })
    );
    let range: pb::RangeResponse =
        call(&svc, "/etcdserverpb.KV/Range", pb::RangeRequest { key: "foo".into(), ..Default::default() }).unwrap();
    assert_eq!(range.count, 1);
    assert_eq!(range.kvs[0].value, b"bar");
    assert_eq!(range.kvs[0].create_revision, 2);
}

#[test]
fn errors_are_etcds_statuses() {
    let svc = service();
    let err = call::<_, pb::PutResponse>(&svc, "/etcdserverpb.KV/Put", pb::PutRequest::default()).unwrap_err();
    assert_eq!(err, (tonic::Code::InvalidArgument as i32, "etcdserver: key is not provided".into()));
    put(&svc, "a", "1");
    put(&svc, "a", "2");
    let _: pb::CompactionResponse =
        call(&svc, "/etcdserverpb.KV/Compact", pb::CompactionRequest { revision: 3, physical: false }).unwrap();
    let old = pb::RangeRequest { key: "a".into(), revision: 2, ..Default::default() };
    let err = call::<_, pb::RangeResponse>(&svc, "/etcdserverpb.KV/Range", old).unwrap_err();
    assert_eq!(err, (tonic::Code::OutOfRange as i32, "etcdserver: mvcc: required revision has been compacted".into()));
    let revoke = pb::LeaseRevokeRequest { id: 42 };
    let err = call::<_, pb::LeaseRevokeResponse>(&svc, "/etcdserverpb.Lease/LeaseRevoke", revoke).unwrap_err();
    assert_eq!(err, (tonic::Code::NotFound as i32, "etcdserver: requested lease not found".into()));
}

#[test]
fn unknown_methods_are_unimplemented_and_garbage_is_refused() {
    let svc = service();
    let (_, code, _) =
        finish::<pb::RangeResponse>(block_on(svc.handle(request("/etcdserverpb.Auth/Authenticate", vec![]))));
    assert_eq!(code, tonic::Code::Unimplemented as i32);
    // A frame whose payload is not a RangeRequest.
    let garbage = vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff];
    let (_, code, message) =
        finish::<pb::RangeResponse>(block_on(svc.handle(request("/etcdserverpb.KV/Range", garbage))));
    // grpc-go (etcd) answers INTERNAL too, in its own words.
    assert_eq!((code, message.as_str()), (13, "failed to decode Protobuf message: invalid varint"));
    // A frame announcing more bytes than the body has.
    let truncated = vec![0, 0, 0, 0, 100, 0x0a, 0x01];
    let (_, code, message) =
        finish::<pb::RangeResponse>(block_on(svc.handle(request("/etcdserverpb.KV/Range", truncated))));
    assert_eq!((code, message.as_str()), (13, "Unexpected EOF decoding stream."));
    // The compressed flag without a grpc-encoding.
    let compressed = vec![1, 0, 0, 0, 3, 0x0a, 0x01, b'k'];
    let (_, code, message) =
        finish::<pb::RangeResponse>(block_on(svc.handle(request("/etcdserverpb.KV/Range", compressed))));
    assert_eq!(
        (code, message.as_str()),
        (13, "protocol error: received message with compressed-flag but no grpc-encoding was specified")
    );
    // The service still answers.
    assert_eq!(put(&svc, "k", "v").header.unwrap().revision, 2);
}

#[test]
fn txn_reads_and_writes() {
    let svc = service();
    put(&svc, "k", "v");
    let read_only = pb::TxnRequest {
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                key: "k".into(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    let response: pb::TxnResponse = call(&svc, "/etcdserverpb.KV/Txn", read_only).unwrap();
    assert!(response.succeeded);
    assert_eq!(response.header.unwrap().revision, 2);
    let compare = pb::Compare {
        target: pb::compare::CompareTarget::Value as i32,
        key: "k".into(),
        target_union: Some(pb::compare::TargetUnion::Value("nope".into())),
        ..Default::default()
    };
    let writing = pb::TxnRequest {
        compare: vec![compare],
        failure: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: "k".into(),
                value: "w".into(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    let response: pb::TxnResponse = call(&svc, "/etcdserverpb.KV/Txn", writing).unwrap();
    assert!(!response.succeeded);
    assert_eq!(response.header.unwrap().revision, 3);
}

#[test]
fn txns_of_serializable_ranges_are_serializable_reads() {
    let range = |serializable| kv::RequestOp::Range(kv::RangeRequest { serializable, ..kv::RangeRequest::default() });
    let txn = |ops: Vec<kv::RequestOp>| kv::TxnRequest { success: ops, ..kv::TxnRequest::default() };
    assert!(serializable(&txn(vec![range(true), range(true)])));
    assert!(!serializable(&txn(vec![range(true), range(false)])));
    assert!(!serializable(&txn(vec![range(true), kv::RequestOp::Txn(txn(vec![range(true)]))])));
    assert!(serializable(&txn(vec![])));
}

#[test]
fn leases_and_keep_alive_stream() {
    let svc = service();
    let grant: pb::LeaseGrantResponse =
        call(&svc, "/etcdserverpb.Lease/LeaseGrant", pb::LeaseGrantRequest { ttl: 60, id: 0 }).unwrap();
    assert_eq!(grant.ttl, 60);
    let body =
        [frame(&pb::LeaseKeepAliveRequest { id: grant.id }), frame(&pb::LeaseKeepAliveRequest { id: 5 })].concat();
    let response = block_on(svc.handle(request("/etcdserverpb.Lease/LeaseKeepAlive", body)));
    let (answers, code, _) = finish::<pb::LeaseKeepAliveResponse>(response);
    assert_eq!(code, 0);
    assert_eq!(answers.iter().map(|a| (a.id, a.ttl)).collect::<Vec<_>>(), vec![(grant.id, 60), (5, 0)]);
    let ttl: pb::LeaseTimeToLiveResponse =
        call(&svc, "/etcdserverpb.Lease/LeaseTimeToLive", pb::LeaseTimeToLiveRequest { id: grant.id, keys: true })
            .unwrap();
    assert_eq!((ttl.granted_ttl, ttl.ttl > 58), (60, true));
    let leases: pb::LeaseLeasesResponse =
        call(&svc, "/etcdserverpb.Lease/LeaseLeases", pb::LeaseLeasesRequest {}).unwrap();
    assert_eq!(leases.leases, vec![pb::LeaseStatus { id: grant.id }]);
    let _: pb::LeaseRevokeResponse =
        call(&svc, "/etcdserverpb.Lease/LeaseRevoke", pb::LeaseRevokeRequest { id: grant.id }).unwrap();
}

#[test]
fn maintenance_status_and_alarms() {
    let svc = service();
    put(&svc, "a", "b");
    let status: pb::StatusResponse = call(&svc, "/etcdserverpb.Maintenance/Status", pb::StatusRequest {}).unwrap();
    assert_eq!(status.version, ETCD_VERSION);
    assert_eq!(status.leader, 0xabcd);
    assert_eq!(status.header.unwrap().revision, 2);
    let get = pb::AlarmRequest::default();
    let alarms: pb::AlarmResponse = call(&svc, "/etcdserverpb.Maintenance/Alarm", get).unwrap();
    assert!(alarms.alarms.is_empty());
}

/// Reads the messages of a streaming response one by one (a data frame may
/// hold several).
struct Reader<M> {
    body: ResponseBody,
    ready: std::collections::VecDeque<M>,
}

impl<M: Message + Default> Reader<M> {
    fn new(body: ResponseBody) -> Reader<M> {
        Reader { body, ready: Default::default() }
    }

    fn next(&mut self) -> M {
        while self.ready.is_empty() {
            let frame = block_on(self.body.frame()).expect("a frame").expect("no error");
            self.ready.extend(decode_frames::<M>(&frame.into_data().expect("a data frame")));
        }
        self.ready.pop_front().unwrap()
    }
}

#[test]
fn watch_stream_delivers_created_events_and_cancel() {
    let svc = service();
    put(&svc, "foo", "0");
    let create = |key: &str, start_revision| pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.into(),
            start_revision,
            prev_kv: true,
            ..Default::default()
        })),
    };
    let body = [frame(&create("foo", 0)), frame(&create("bar", 2))].concat();
    let response = block_on(svc.handle(request("/etcdserverpb.Watch/Watch", body)));
    let mut body = Reader::<pb::WatchResponse>::new(response.into_body());
    let first = body.next();
    let second = body.next();
    assert!(first.created && second.created);
    assert_ne!(first.watch_id, second.watch_id);
    // The request stream has ended (half-close); events still come.
    put(&svc, "foo", "1");
    let event = body.next();
    assert_eq!(event.watch_id, first.watch_id);
    assert_eq!(event.events.len(), 1);
    assert_eq!(event.events[0].kv.as_ref().unwrap().value, b"1");
    assert_eq!(event.events[0].prev_kv.as_ref().unwrap().value, b"0");
    assert_eq!(event.header.unwrap().member_id, 0xabcd);
    // Dropping the stream cancels its watchers.
    drop(body);
    let backend = &svc.backend;
    assert!(backend.watch_take(first.watch_id).is_none());
    assert!(backend.watch_cancel(first.watch_id).is_none());
}

#[test]
fn watch_stream_cancel_progress_and_compaction() {
    use pb::watch_request::RequestUnion;
    let svc = service();
    put(&svc, "foo", "0");
    put(&svc, "foo", "1");
    let _: pb::CompactionResponse =
        call(&svc, "/etcdserverpb.KV/Compact", pb::CompactionRequest { revision: 3, physical: true }).unwrap();
    let create = |key: &str, start_revision| pb::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.into(),
            start_revision,
            ..Default::default()
        })),
    };
    let cancel = |watch_id| pb::WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(pb::WatchCancelRequest { watch_id })),
    };
    let progress = pb::WatchRequest { request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})) };
    let body = [
        frame(&create("foo", 0)),
        frame(&cancel(0)),
        frame(&cancel(77)), // not this stream's: ignored
        frame(&create("bar", 0)),
        frame(&progress),
        frame(&create("foo", 2)), // below the compaction
    ]
    .concat();
    let response = block_on(svc.handle(request("/etcdserverpb.Watch/Watch", body)));
    let mut stream = Reader::<pb::WatchResponse>::new(response.into_body());
    let summary = |r: &pb::WatchResponse| {
        (r.watch_id, r.created, r.canceled, r.compact_revision, r.header.unwrap().revision, r.events.len())
    };
    let responses: Vec<_> = (0..6).map(|_| summary(&stream.next())).collect();
    assert_eq!(
        responses,
        vec![
            (0, true, false, 0, 3, 0),  // created foo
            (0, false, true, 0, 3, 0),  // canceled foo
            (0, true, false, 0, 3, 0),  // created bar (core's hub reuses the freed id 0)
            (0, false, false, 0, 3, 0), // progress notification
            (1, true, false, 0, 3, 0),  // created foo at 2
            (1, false, true, 3, 3, 0),  // canceled: compacted, with the compact revision
        ]
    );
}

/// More events than a watcher's buffer holds while nobody reads: the watcher
/// falls back to catch-up from history and still delivers every revision once,
/// in order.
#[test]
fn a_slow_watch_stream_gets_every_revision_in_order() {
    let svc = service();
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: "k".into(),
            range_end: "l".into(),
            ..Default::default()
        })),
    };
    let response = block_on(svc.handle(request("/etcdserverpb.Watch/Watch", frame(&create))));
    let mut stream = Reader::<pb::WatchResponse>::new(response.into_body());
    assert!(stream.next().created);
    let puts = 3000;
    for i in 0..puts {
        put(&svc, &format!("k{i}"), "v");
        if i % 7 == 0 {
            put(&svc, "other", "x");
        }
    }
    let mut keys = Vec::new();
    let mut last_revision = 0;
    while keys.len() < puts {
        let response = stream.next();
        let revision = response.header.unwrap().revision;
        assert!(revision > last_revision, "revisions in order");
        last_revision = revision;
        for event in response.events {
            let kv = event.kv.unwrap();
            assert_eq!(kv.mod_revision, revision);
            keys.push(String::from_utf8(kv.key).unwrap());
        }
    }
    assert_eq!(keys, (0..puts).map(|i| format!("k{i}")).collect::<Vec<_>>());
}

#[test]
fn watchers_asking_for_fragments_get_large_revisions_in_pieces() {
    let backend = Rc::new(MemoryBackend::new(INFO, KvConfig::default()));
    let svc = EtcdService::new(backend, ServiceConfig { watch_fragment_bytes: 1000, ..ServiceConfig::default() });
    let create = |fragment| pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: "k".into(),
            range_end: "l".into(),
            fragment,
            ..Default::default()
        })),
    };
    let body = [frame(&create(true)), frame(&create(false))].concat();
    let response = block_on(svc.handle(request("/etcdserverpb.Watch/Watch", body)));
    let mut stream = Reader::<pb::WatchResponse>::new(response.into_body());
    assert!(stream.next().created && stream.next().created);
    let put_op = |i: usize| pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: format!("k{i}").into(),
            value: vec![b'v'; 200],
            ..Default::default()
        })),
    };
    let txn = pb::TxnRequest { success: (0..10).map(put_op).collect(), ..Default::default() };
    let _: pb::TxnResponse = call(&svc, "/etcdserverpb.KV/Txn", txn).unwrap();
    let mut pieces = Vec::new();
    let mut whole = None;
    while whole.is_none() || pieces.last().is_none_or(|p: &pb::WatchResponse| p.fragment) {
        let response = stream.next();
        if response.watch_id == 0 {
            pieces.push(response);
        } else {
            whole = Some(response);
        }
    }
    assert!(pieces.len() > 1, "{} pieces", pieces.len());
    assert!(pieces.iter().all(|p| p.encoded_len() < 1000));
    let whole = whole.unwrap();
    assert!(!whole.fragment);
    assert_eq!(pieces.into_iter().flat_map(|p| p.events).collect::<Vec<_>>(), whole.events);
}

#[test]
fn fragments_split_like_etcd() {
    let event = |n: u8| crate::pb::mvccpb::Event {
        kv: Some(crate::pb::mvccpb::KeyValue { key: vec![n], value: vec![n; 100], ..Default::default() }),
        ..Default::default()
    };
    let response = pb::WatchResponse { watch_id: 3, events: (0..10).map(event).collect(), ..Default::default() };
    let pieces = fragments(response.clone(), 350);
    assert!(pieces.len() > 1);
    assert!(pieces.iter().all(|p| p.encoded_len() < 350 && !p.events.is_empty()));
    assert!(pieces[..pieces.len() - 1].iter().all(|p| p.fragment));
    assert!(!pieces.last().unwrap().fragment);
    let events: Vec<_> = pieces.into_iter().flat_map(|p| p.events).collect();
    assert_eq!(events, response.events);
    assert_eq!(fragments(response.clone(), 1 << 20), vec![response]);
}

#[test]
fn snapshot_streams_chunks_with_remaining_bytes() {
    let svc = service();
    for i in 0..200 {
        put(&svc, &format!("key-{i:03}"), &"v".repeat(1000));
    }
    let (chunks, code, message) = finish::<pb::SnapshotResponse>(block_on(
        svc.handle(request("/etcdserverpb.Maintenance/Snapshot", frame(&pb::SnapshotRequest {}))),
    ));
    assert_eq!(code, 0, "{message}");
    assert!(chunks.len() > 1);
    let total: usize = chunks.iter().map(|c| c.blob.len()).sum();
    let mut remaining = total;
    for chunk in &chunks {
        assert!(chunk.blob.len() <= SNAPSHOT_CHUNK_BYTES);
        remaining -= chunk.blob.len();
        assert_eq!(chunk.remaining_bytes, remaining as u64);
    }
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.blob.clone()).collect();
    let expected = block_on(svc.backend.snapshot()).unwrap();
    let body = crate::sha256::strip_snapshot_checksum(&whole).expect("a valid checksum");
    assert_eq!(&body[..expected.len()], &expected[..]);
    assert!(body[expected.len()..].iter().all(|b| *b == 0));
}

#[test]
fn defragment_answers_ok_and_unserved_cluster_calls_are_unimplemented() {
    let svc = service();
    let _: pb::DefragmentResponse =
        call(&svc, "/etcdserverpb.Maintenance/Defragment", pb::DefragmentRequest {}).unwrap();
    let add = pb::MemberAddRequest { peer_ur_ls: vec!["http://127.0.0.1:1".into()], is_learner: true };
    let refused = call::<_, pb::MemberAddResponse>(&svc, "/etcdserverpb.Cluster/MemberAdd", add).unwrap_err();
    assert_eq!(refused.0, tonic::Code::Unimplemented as i32);
    let hash =
        call::<_, pb::HashKvResponse>(&svc, "/etcdserverpb.Maintenance/HashKV", pb::HashKvRequest { revision: 0 });
    assert_eq!(hash.unwrap_err().0, tonic::Code::Unimplemented as i32);
}

fn json_call(svc: &EtcdService, path: &str, body: &str) -> (u16, serde_json::Value) {
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = block_on(svc.handle(request));
    let status = response.status().as_u16();
    let bytes = block_on(response.into_body().collect()).expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("a JSON answer"))
}

#[test]
fn json_gateway_puts_and_ranges_as_grpc_gateway_does() {
    let svc = service();
    let (code, put) = json_call(&svc, "/v3/kv/put", r#"{"key": "Zm9v", "value": "YmFy"}"#);
    assert_eq!(code, 200, "{put}");
    assert_eq!(put["header"]["revision"], "2");
    assert_eq!(put["header"]["cluster_id"], "4660");
    let (code, range) = json_call(&svc, "/v3/kv/range", r#"{"key": "Zm9v", "rangeEnd": "Zm9w"}"#);
    assert_eq!(code, 200, "{range}");
    assert_eq!(range["count"], "1");
    assert_eq!(range["kvs"][0]["key"], "Zm9v");
    assert_eq!(range["kvs"][0]["value"], "YmFy");
    assert_eq!(range["kvs"][0]["create_revision"], "2");
    let txn = r#"{"compare": [{"key": "Zm9v", "result": "EQUAL", "target": "VALUE", "value": "YmFy"}],
                  "success": [{"request_range": {"key": "Zm9v"}}, {"requestPut": {"key": "YQ==", "value": "Yg=="}}]}"#;
    let (code, txn) = json_call(&svc, "/v3/kv/txn", txn);
    assert_eq!(code, 200, "{txn}");
    assert_eq!(txn["succeeded"], true);
    assert_eq!(txn["responses"][0]["response_range"]["count"], "1");
    assert_eq!(txn["responses"][1]["response_put"]["header"]["revision"], "3");
    let (code, lease) = json_call(&svc, "/v3/lease/grant", r#"{"TTL": 30}"#);
    assert_eq!(code, 200, "{lease}");
    assert_eq!(lease["TTL"], "30");
    let (code, error) = json_call(&svc, "/v3/kv/put", r#"{"value": "YmFy"}"#);
    assert_eq!(code, 400);
    assert_eq!(error["message"], "etcdserver: key is not provided");
    assert_eq!(error["code"], 3);
    let (code, _) = json_call(&svc, "/v3/nope", "{}");
    assert_eq!(code, 501);
}

#[test]
fn oversize_requests_get_etcds_errors_and_the_service_keeps_serving() {
    // As a member configures it: etcd's 1.5 MiB request limit in the store,
    // plus etcd's 512 KiB of gRPC overhead in the decoder.
    let limit = 1536 * 1024;
    let svc = EtcdService::new(
        Rc::new(MemoryBackend::new(INFO, KvConfig { request_bytes_max: limit as u64, ..KvConfig::default() })),
        ServiceConfig { request_bytes_max: limit + 512 * 1024, ..ServiceConfig::default() },
    );
    let big = |bytes: usize| pb::PutRequest { key: b"k".to_vec(), value: vec![b'x'; bytes], ..Default::default() };
    // Decodable but over the store's limit: etcd's own error.
    let err = call::<_, pb::PutResponse>(&svc, "/etcdserverpb.KV/Put", big(limit + 1000)).unwrap_err();
    assert_eq!(err, (tonic::Code::InvalidArgument as i32, "etcdserver: request is too large".into()));
    // Over the decoder's limit: grpc-go's words and code, as etcd's clients see them.
    let message = big(3 << 20);
    let size = message.encoded_len();
    let err = call::<_, pb::PutResponse>(&svc, "/etcdserverpb.KV/Put", message).unwrap_err();
    assert_eq!(
        err,
        (
            tonic::Code::ResourceExhausted as i32,
            format!("grpc: received message larger than max ({size} vs. {})", limit + 512 * 1024)
        )
    );
    assert_eq!(put(&svc, "k", "small").header.unwrap().revision, 2);
}

#[test]
fn json_gateway_serves_leases_alarms_hashes_and_maintenance() {
    let svc = service();
    let (code, grant) = json_call(&svc, "/v3/lease/grant", r#"{"TTL": 60}"#);
    assert_eq!(code, 200, "{grant}");
    let id = grant["ID"].as_str().unwrap().to_string();
    let (code, leases) = json_call(&svc, "/v3/lease/leases", "{}");
    assert_eq!((code, leases["leases"][0]["ID"].as_str()), (200, Some(id.as_str())), "{leases}");
    let (code, alias) = json_call(&svc, "/v3/kv/lease/leases", "{}");
    assert_eq!((code, &alias["leases"]), (200, &leases["leases"]));
    let (code, renewed) = json_call(&svc, "/v3/lease/keepalive", &format!(r#"{{"ID": "{id}"}}"#));
    assert_eq!(code, 200, "{renewed}");
    assert_eq!((renewed["result"]["ID"].as_str(), renewed["result"]["TTL"].as_str()), (Some(id.as_str()), Some("60")));
    // An unknown lease renews to TTL 0 (omitted), as etcd answers.
    let (code, unknown) = json_call(&svc, "/v3/lease/keepalive", r#"{"ID": "12345"}"#);
    assert_eq!((code, unknown["result"]["TTL"].is_null()), (200, true), "{unknown}");
    let (code, alarms) = json_call(&svc, "/v3/maintenance/alarm", r#"{"action": "GET"}"#);
    assert_eq!((code, alarms["alarms"].is_null()), (200, true), "{alarms}");
    let (code, defrag) = json_call(&svc, "/v3/maintenance/defragment", "{}");
    assert_eq!((code, defrag), (200, serde_json::json!({})));
    // The in-memory backend serves no hashes and no membership changes: 501,
    // as for any call a backend does not implement (scripts/etcd-diff checks
    // them on a real cluster).
    let (code, hash_kv) = json_call(&svc, "/v3/maintenance/hashkv", "{}");
    assert_eq!(code, 501, "{hash_kv}");
    let (code, add) = json_call(&svc, "/v3/cluster/member/add", r#"{"peerURLs": ["http://127.0.0.1:1"]}"#);
    assert_eq!(code, 501, "{add}");
}
