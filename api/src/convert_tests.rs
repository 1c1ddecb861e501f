//! Round trips: core → protobuf → core gives back every field, and the
//! response header carries the member's identity.

use super::*;

const INFO: HeaderInfo = HeaderInfo { cluster_id: 0x1234, member_id: 0xabcd, raft_term: 7 };

fn kv(key: &str, rev: i64) -> kv::KeyValue {
    kv::KeyValue {
        key: key.as_bytes().to_vec(),
        create_revision: rev - 1,
        mod_revision: rev,
        version: 3,
        value: b"value".to_vec(),
        lease: 99,
    }
}

fn head(revision: i64) -> kv::ResponseHeader {
    kv::ResponseHeader { revision }
}

/// Request round trip through the protobuf type `P`.
fn request<C, P>(c: C)
where
    C: Clone + PartialEq + std::fmt::Debug + TryFrom<P>,
    <C as TryFrom<P>>::Error: std::fmt::Debug,
    P: From<C>,
{
    let back = C::try_from(P::from(c.clone())).expect("converts back");
    assert_eq!(back, c);
}

/// Response round trip; also checks the header's identity fields.
fn response<C, P>(c: C, header_of: impl Fn(&P) -> Option<pb::ResponseHeader>)
where
    C: Clone + PartialEq + std::fmt::Debug + ToPb<Pb = P> + TryFrom<P>,
    <C as TryFrom<P>>::Error: std::fmt::Debug,
{
    let p = c.clone().to_pb(INFO);
    let h = header_of(&p).expect("a header");
    assert_eq!((h.cluster_id, h.member_id, h.raft_term), (INFO.cluster_id, INFO.member_id, INFO.raft_term));
    assert_eq!(C::try_from(p).expect("converts back"), c);
}

fn range_request() -> kv::RangeRequest {
    kv::RangeRequest {
        key: b"a".to_vec(),
        range_end: b"z".to_vec(),
        limit: 10,
        revision: 5,
        sort_order: kv::SortOrder::Descend,
        sort_target: kv::SortTarget::Mod,
        serializable: true,
        keys_only: true,
        count_only: true,
        min_mod_revision: 1,
        max_mod_revision: 2,
        min_create_revision: 3,
        max_create_revision: 4,
    }
}

fn put_request() -> kv::PutRequest {
    kv::PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        lease: 5,
        prev_kv: true,
        ignore_value: true,
        ignore_lease: true,
    }
}

fn delete_request() -> kv::DeleteRangeRequest {
    kv::DeleteRangeRequest { key: b"a".to_vec(), range_end: vec![0], prev_kv: true }
}

#[test]
fn key_values_and_events() {
    let c = kv("foo", 4);
    assert_eq!(kv::KeyValue::from(mvccpb::KeyValue::from(c.clone())), c);
    for kind in [kv::EventKind::Put, kv::EventKind::Delete] {
        for prev_kv in [None, Some(kv("foo", 3))] {
            let event = kv::Event { kind, kv: c.clone(), prev_kv };
            assert_eq!(kv::Event::try_from(mvccpb::Event::from(event.clone())).unwrap(), event);
        }
    }
    let bad = mvccpb::Event { r#type: 7, ..mvccpb::Event::default() };
    assert_eq!(kv::Event::try_from(bad).unwrap_err().code(), tonic::Code::InvalidArgument);
}

#[test]
fn range_round_trips() {
    request::<_, pb::RangeRequest>(range_request());
    for order in [kv::SortOrder::None, kv::SortOrder::Ascend, kv::SortOrder::Descend] {
        for target in [
            kv::SortTarget::Key,
            kv::SortTarget::Version,
            kv::SortTarget::Create,
            kv::SortTarget::Mod,
            kv::SortTarget::Value,
        ] {
            request::<_, pb::RangeRequest>(kv::RangeRequest {
                sort_order: order,
                sort_target: target,
                ..range_request()
            });
        }
    }
    let response_c = kv::RangeResponse { header: head(9), kvs: vec![kv("a", 2), kv("b", 3)], more: true, count: 5 };
    let p = response_c.clone().to_pb(INFO);
    assert_eq!(p.header.unwrap().revision, 9);
    response(response_c, |p: &pb::RangeResponse| p.header);
}

#[test]
fn unknown_sort_options_are_invalid_like_etcd() {
    for p in [
        pb::RangeRequest { key: b"a".to_vec(), sort_order: 3, ..Default::default() },
        pb::RangeRequest { key: b"a".to_vec(), sort_target: 5, ..Default::default() },
    ] {
        let status = kv::RangeRequest::try_from(p).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "etcdserver: invalid sort option");
    }
}

#[test]
fn put_and_delete_round_trip() {
    request::<_, pb::PutRequest>(put_request());
    response(kv::PutResponse { header: head(3), prev_kv: Some(kv("k", 2)) }, |p: &pb::PutResponse| p.header);
    response(kv::PutResponse { header: head(3), prev_kv: None }, |p: &pb::PutResponse| p.header);
    request::<_, pb::DeleteRangeRequest>(delete_request());
    response(
        kv::DeleteRangeResponse { header: head(4), deleted: 2, prev_kvs: vec![kv("a", 2), kv("b", 3)] },
        |p: &pb::DeleteRangeResponse| p.header,
    );
}

fn nested_txn() -> kv::TxnRequest {
    let compare = |result, target| kv::Compare { result, target, key: b"k".to_vec(), range_end: b"l".to_vec() };
    let inner = kv::TxnRequest {
        compare: vec![compare(kv::CompareResult::Less, kv::CompareTarget::Lease(4))],
        success: vec![kv::RequestOp::Range(range_request())],
        failure: vec![],
    };
    kv::TxnRequest {
        compare: vec![
            compare(kv::CompareResult::Equal, kv::CompareTarget::Version(1)),
            compare(kv::CompareResult::Greater, kv::CompareTarget::CreateRevision(2)),
            compare(kv::CompareResult::NotEqual, kv::CompareTarget::ModRevision(3)),
            compare(kv::CompareResult::Less, kv::CompareTarget::Value(b"v".to_vec())),
        ],
        success: vec![kv::RequestOp::Put(put_request()), kv::RequestOp::Txn(inner)],
        failure: vec![kv::RequestOp::DeleteRange(delete_request()), kv::RequestOp::Range(range_request())],
    }
}

#[test]
fn txn_round_trips_with_nesting() {
    request::<_, pb::TxnRequest>(nested_txn());
    let inner = kv::TxnResponse {
        header: head(0),
        succeeded: false,
        responses: vec![kv::ResponseOp::Range(kv::RangeResponse { header: head(6), ..Default::default() })],
    };
    let c = kv::TxnResponse {
        header: head(6),
        succeeded: true,
        responses: vec![
            kv::ResponseOp::Put(kv::PutResponse { header: head(6), prev_kv: None }),
            kv::ResponseOp::DeleteRange(kv::DeleteRangeResponse { header: head(6), deleted: 1, prev_kvs: vec![] }),
            kv::ResponseOp::Txn(inner),
        ],
    };
    let p = c.clone().to_pb(INFO);
    // Nested responses carry the revision alone, as etcd's do.
    let Some(response_op::Response::ResponsePut(put)) = &p.responses[0].response else { panic!("a put") };
    assert_eq!(put.header, Some(pb::ResponseHeader { revision: 6, ..Default::default() }));
    response(c, |p: &pb::TxnResponse| p.header);
}

#[test]
fn malformed_txn_parts_are_invalid() {
    let empty_op = pb::TxnRequest { success: vec![pb::RequestOp { request: None }], ..Default::default() };
    let status = kv::TxnRequest::try_from(empty_op).unwrap_err();
    assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, "etcdserver: key not found"));
    for (result, target) in [(9, 0), (0, 9)] {
        let compare = pb::Compare { result, target, key: b"k".to_vec(), ..Default::default() };
        let txn = pb::TxnRequest { compare: vec![compare], ..Default::default() };
        assert_eq!(kv::TxnRequest::try_from(txn).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
    // A union of another kind reads as the target's zero value, as in etcd.
    let compare = pb::Compare {
        target: compare::CompareTarget::Version as i32,
        key: b"k".to_vec(),
        target_union: Some(compare::TargetUnion::Value(b"x".to_vec())),
        ..Default::default()
    };
    assert_eq!(kv::Compare::try_from(compare).unwrap().target, kv::CompareTarget::Version(0));
}

#[test]
fn compaction_and_leases_round_trip() {
    request::<_, pb::CompactionRequest>(kv::CompactionRequest { revision: 5, physical: true });
    response(kv::CompactionResponse { header: head(8) }, |p: &pb::CompactionResponse| p.header);
    request::<_, pb::LeaseGrantRequest>(kv::LeaseGrantRequest { ttl: 60, id: 7 });
    response(
        kv::LeaseGrantResponse { header: head(2), id: 7, ttl: 60, error: "e".into() },
        |p: &pb::LeaseGrantResponse| p.header,
    );
    request::<_, pb::LeaseRevokeRequest>(kv::LeaseRevokeRequest { id: 7 });
    response(kv::LeaseRevokeResponse { header: head(3) }, |p: &pb::LeaseRevokeResponse| p.header);
    request::<_, pb::LeaseTimeToLiveRequest>(kv::LeaseTimeToLiveRequest { id: 7, keys: true });
    response(
        kv::LeaseTimeToLiveResponse {
            header: head(3),
            id: 7,
            ttl: 50,
            granted_ttl: 60,
            keys: vec![b"a".to_vec(), b"b".to_vec()],
        },
        |p: &pb::LeaseTimeToLiveResponse| p.header,
    );
    response(kv::LeaseLeasesResponse { header: head(3), leases: vec![1, 7] }, |p: &pb::LeaseLeasesResponse| p.header);
    request::<_, pb::LeaseKeepAliveRequest>(kv::LeaseKeepAliveRequest { id: 7 });
    response(kv::LeaseKeepAliveResponse { header: head(3), id: 7, ttl: 60 }, |p: &pb::LeaseKeepAliveResponse| p.header);
}

#[test]
fn alarms_round_trip() {
    for action in [kv::AlarmAction::Get, kv::AlarmAction::Activate, kv::AlarmAction::Deactivate] {
        for alarm in [kv::AlarmType::None, kv::AlarmType::NoSpace, kv::AlarmType::Corrupt] {
            request::<_, pb::AlarmRequest>(kv::AlarmRequest { action, member_id: 3, alarm });
        }
    }
    let alarms = vec![
        kv::AlarmMember { member_id: 0, alarm: kv::AlarmType::NoSpace },
        kv::AlarmMember { member_id: 2, alarm: kv::AlarmType::Corrupt },
    ];
    response(kv::AlarmResponse { header: head(4), alarms }, |p: &pb::AlarmResponse| p.header);
    for bad in
        [pb::AlarmRequest { action: 5, ..Default::default() }, pb::AlarmRequest { alarm: 5, ..Default::default() }]
    {
        assert_eq!(kv::AlarmRequest::try_from(bad).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}

#[test]
fn watches_round_trip() {
    for (no_put, no_delete) in [(false, false), (true, false), (false, true), (true, true)] {
        request::<_, pb::WatchCreateRequest>(kv::WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            start_revision: 4,
            progress_notify: true,
            no_put,
            no_delete,
            prev_kv: true,
            watch_id: 9,
        });
    }
    // Unknown filters are ignored, as etcd ignores them.
    let p = pb::WatchCreateRequest { key: b"a".to_vec(), filters: vec![1, 42], ..Default::default() };
    let c = kv::WatchCreateRequest::from(p);
    assert!(c.no_delete && !c.no_put);
    let event = kv::Event { kind: kv::EventKind::Delete, kv: kv("a", 5), prev_kv: Some(kv("a", 4)) };
    response(
        kv::WatchResponse {
            header: head(5),
            watch_id: 9,
            created: true,
            canceled: true,
            compact_revision: 3,
            cancel_reason: "why".into(),
            events: vec![event],
        },
        |p: &pb::WatchResponse| p.header,
    );
}
