//! Conversions between etcd's protobuf messages ([`crate::pb`]) and core's KV
//! types ([`lockstep_core::kv`]), field by field.
//!
//! Requests come in as protobuf and go to core: `TryFrom<pb::X> for kv::X`,
//! failing with etcd's `INVALID_ARGUMENT` status on enum values etcd does not
//! define (a sort option etcd rejects with "etcdserver: invalid sort option";
//! compare and alarm enums, which etcd would silently treat as false or
//! ignore, with a lockstep text). Responses go out with [`ToPb::to_pb`], which
//! fills the response header's identity fields from a [`HeaderInfo`]. The
//! opposite directions (core request to protobuf, protobuf response to core)
//! exist too, for clients, gateways and the round-trip tests; a protobuf
//! response loses its header's identity fields on the way to core, which has
//! only the revision.
//!
//! Nested txn responses get headers with the revision alone, as etcd sends
//! them.

use lockstep_core::kv;
use tonic::Status;

use crate::backend::HeaderInfo;
use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::{compare, range_request, request_op, response_op};
use crate::pb::mvccpb;

/// A core response turned into its protobuf message, with the identity fields
/// of its header from `info`.
pub trait ToPb {
    /// The protobuf message.
    type Pb;
    /// Converts, filling the header from `info` and the response's revision.
    fn to_pb(self, info: HeaderInfo) -> Self::Pb;
}

/// A header from core's revision and the member's identity.
pub fn header(info: HeaderInfo, header: kv::ResponseHeader) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: info.cluster_id,
        member_id: info.member_id,
        revision: header.revision,
        raft_term: info.raft_term,
    })
}

/// The revision of a protobuf header (0 when absent).
fn core_header(header: Option<pb::ResponseHeader>) -> kv::ResponseHeader {
    kv::ResponseHeader { revision: header.map_or(0, |h| h.revision) }
}

fn invalid(what: &str, value: i32) -> Status {
    Status::invalid_argument(format!("lockstep: unknown {what} {value}"))
}

// ---- key-values and events ----

impl From<mvccpb::KeyValue> for kv::KeyValue {
    fn from(p: mvccpb::KeyValue) -> kv::KeyValue {
        kv::KeyValue {
            key: p.key,
            create_revision: p.create_revision,
            mod_revision: p.mod_revision,
            version: p.version,
            value: p.value,
            lease: p.lease,
        }
    }
}

impl From<kv::KeyValue> for mvccpb::KeyValue {
    fn from(c: kv::KeyValue) -> mvccpb::KeyValue {
        mvccpb::KeyValue {
            key: c.key,
            create_revision: c.create_revision,
            mod_revision: c.mod_revision,
            version: c.version,
            value: c.value,
            lease: c.lease,
        }
    }
}

impl From<kv::Event> for mvccpb::Event {
    fn from(c: kv::Event) -> mvccpb::Event {
        let kind = match c.kind {
            kv::EventKind::Put => mvccpb::event::EventType::Put,
            kv::EventKind::Delete => mvccpb::event::EventType::Delete,
        };
        mvccpb::Event { r#type: kind as i32, kv: Some(c.kv.into()), prev_kv: c.prev_kv.map(Into::into) }
    }
}

impl TryFrom<mvccpb::Event> for kv::Event {
    type Error = Status;
    fn try_from(p: mvccpb::Event) -> Result<kv::Event, Status> {
        let kind = match mvccpb::event::EventType::try_from(p.r#type) {
            Ok(mvccpb::event::EventType::Put) => kv::EventKind::Put,
            Ok(mvccpb::event::EventType::Delete) => kv::EventKind::Delete,
            Err(_) => return Err(invalid("event type", p.r#type)),
        };
        Ok(kv::Event { kind, kv: p.kv.unwrap_or_default().into(), prev_kv: p.prev_kv.map(Into::into) })
    }
}

// ---- range ----

impl TryFrom<pb::RangeRequest> for kv::RangeRequest {
    type Error = Status;
    fn try_from(p: pb::RangeRequest) -> Result<kv::RangeRequest, Status> {
        let sort_order = match range_request::SortOrder::try_from(p.sort_order) {
            Ok(range_request::SortOrder::None) => kv::SortOrder::None,
            Ok(range_request::SortOrder::Ascend) => kv::SortOrder::Ascend,
            Ok(range_request::SortOrder::Descend) => kv::SortOrder::Descend,
            Err(_) => return Err(Status::invalid_argument(crate::status::INVALID_SORT_OPTION)),
        };
        let sort_target = match range_request::SortTarget::try_from(p.sort_target) {
            Ok(range_request::SortTarget::Key) => kv::SortTarget::Key,
            Ok(range_request::SortTarget::Version) => kv::SortTarget::Version,
            Ok(range_request::SortTarget::Create) => kv::SortTarget::Create,
            Ok(range_request::SortTarget::Mod) => kv::SortTarget::Mod,
            Ok(range_request::SortTarget::Value) => kv::SortTarget::Value,
            Err(_) => return Err(Status::invalid_argument(crate::status::INVALID_SORT_OPTION)),
        };
        Ok(kv::RangeRequest {
            key: p.key,
            range_end: p.range_end,
            limit: p.limit,
            revision: p.revision,
            sort_order,
            sort_target,
            serializable: p.serializable,
            keys_only: p.keys_only,
            count_only: p.count_only,
            min_mod_revision: p.min_mod_revision,
            max_mod_revision: p.max_mod_revision,
            min_create_revision: p.min_create_revision,
            max_create_revision: p.max_create_revision,
        })
    }
}

impl From<kv::RangeRequest> for pb::RangeRequest {
    fn from(c: kv::RangeRequest) -> pb::RangeRequest {
        let sort_order = match c.sort_order {
            kv::SortOrder::None => range_request::SortOrder::None,
            kv::SortOrder::Ascend => range_request::SortOrder::Ascend,
            kv::SortOrder::Descend => range_request::SortOrder::Descend,
        };
        let sort_target = match c.sort_target {
            kv::SortTarget::Key => range_request::SortTarget::Key,
            kv::SortTarget::Version => range_request::SortTarget::Version,
            kv::SortTarget::Create => range_request::SortTarget::Create,
            kv::SortTarget::Mod => range_request::SortTarget::Mod,
            kv::SortTarget::Value => range_request::SortTarget::Value,
        };
        pb::RangeRequest {
            key: c.key,
            range_end: c.range_end,
            limit: c.limit,
            revision: c.revision,
            sort_order: sort_order as i32,
            sort_target: sort_target as i32,
            serializable: c.serializable,
            keys_only: c.keys_only,
            count_only: c.count_only,
            min_mod_revision: c.min_mod_revision,
            max_mod_revision: c.max_mod_revision,
            min_create_revision: c.min_create_revision,
            max_create_revision: c.max_create_revision,
        }
    }
}

impl ToPb for kv::RangeResponse {
    type Pb = pb::RangeResponse;
    fn to_pb(self, info: HeaderInfo) -> pb::RangeResponse {
        pb::RangeResponse {
            header: header(info, self.header),
            kvs: self.kvs.into_iter().map(Into::into).collect(),
            more: self.more,
            count: self.count,
        }
    }
}

impl From<pb::RangeResponse> for kv::RangeResponse {
    fn from(p: pb::RangeResponse) -> kv::RangeResponse {
        kv::RangeResponse {
            header: core_header(p.header),
            kvs: p.kvs.into_iter().map(Into::into).collect(),
            more: p.more,
            count: p.count,
        }
    }
}

// ---- put ----

impl From<pb::PutRequest> for kv::PutRequest {
    fn from(p: pb::PutRequest) -> kv::PutRequest {
        kv::PutRequest {
            key: p.key,
            value: p.value,
            lease: p.lease,
            prev_kv: p.prev_kv,
            ignore_value: p.ignore_value,
            ignore_lease: p.ignore_lease,
        }
    }
}

impl From<kv::PutRequest> for pb::PutRequest {
    fn from(c: kv::PutRequest) -> pb::PutRequest {
        pb::PutRequest {
            key: c.key,
            value: c.value,
            lease: c.lease,
            prev_kv: c.prev_kv,
            ignore_value: c.ignore_value,
            ignore_lease: c.ignore_lease,
        }
    }
}

impl ToPb for kv::PutResponse {
    type Pb = pb::PutResponse;
    fn to_pb(self, info: HeaderInfo) -> pb::PutResponse {
        pb::PutResponse { header: header(info, self.header), prev_kv: self.prev_kv.map(Into::into) }
    }
}

impl From<pb::PutResponse> for kv::PutResponse {
    fn from(p: pb::PutResponse) -> kv::PutResponse {
        kv::PutResponse { header: core_header(p.header), prev_kv: p.prev_kv.map(Into::into) }
    }
}

// ---- delete ----

impl From<pb::DeleteRangeRequest> for kv::DeleteRangeRequest {
    fn from(p: pb::DeleteRangeRequest) -> kv::DeleteRangeRequest {
        kv::DeleteRangeRequest { key: p.key, range_end: p.range_end, prev_kv: p.prev_kv }
    }
}

impl From<kv::DeleteRangeRequest> for pb::DeleteRangeRequest {
    fn from(c: kv::DeleteRangeRequest) -> pb::DeleteRangeRequest {
        pb::DeleteRangeRequest { key: c.key, range_end: c.range_end, prev_kv: c.prev_kv }
    }
}

impl ToPb for kv::DeleteRangeResponse {
    type Pb = pb::DeleteRangeResponse;
    fn to_pb(self, info: HeaderInfo) -> pb::DeleteRangeResponse {
        pb::DeleteRangeResponse {
            header: header(info, self.header),
            deleted: self.deleted,
            prev_kvs: self.prev_kvs.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::DeleteRangeResponse> for kv::DeleteRangeResponse {
    fn from(p: pb::DeleteRangeResponse) -> kv::DeleteRangeResponse {
        kv::DeleteRangeResponse {
            header: core_header(p.header),
            deleted: p.deleted,
            prev_kvs: p.prev_kvs.into_iter().map(Into::into).collect(),
        }
    }
}

// ---- txn ----

impl TryFrom<pb::Compare> for kv::Compare {
    type Error = Status;
    fn try_from(p: pb::Compare) -> Result<kv::Compare, Status> {
        let result = match compare::CompareResult::try_from(p.result) {
            Ok(compare::CompareResult::Equal) => kv::CompareResult::Equal,
            Ok(compare::CompareResult::Greater) => kv::CompareResult::Greater,
            Ok(compare::CompareResult::Less) => kv::CompareResult::Less,
            Ok(compare::CompareResult::NotEqual) => kv::CompareResult::NotEqual,
            Err(_) => return Err(invalid("compare result", p.result)),
        };
        // The target picks the field; the union gives the value, and a union of
        // another kind reads as that field's zero value, as etcd's getters do.
        use compare::TargetUnion as U;
        let union = p.target_union;
        let target = match compare::CompareTarget::try_from(p.target) {
            Ok(compare::CompareTarget::Version) => {
                kv::CompareTarget::Version(if let Some(U::Version(v)) = union { v } else { 0 })
            }
            Ok(compare::CompareTarget::Create) => {
                kv::CompareTarget::CreateRevision(if let Some(U::CreateRevision(v)) = union { v } else { 0 })
            }
            Ok(compare::CompareTarget::Mod) => {
                kv::CompareTarget::ModRevision(if let Some(U::ModRevision(v)) = union { v } else { 0 })
            }
            Ok(compare::CompareTarget::Value) => {
                kv::CompareTarget::Value(if let Some(U::Value(v)) = union { v } else { Vec::new() })
            }
            Ok(compare::CompareTarget::Lease) => {
                kv::CompareTarget::Lease(if let Some(U::Lease(v)) = union { v } else { 0 })
            }
            Err(_) => return Err(invalid("compare target", p.target)),
        };
        Ok(kv::Compare { result, target, key: p.key, range_end: p.range_end })
    }
}

impl From<kv::Compare> for pb::Compare {
    fn from(c: kv::Compare) -> pb::Compare {
        use compare::TargetUnion as U;
        let result = match c.result {
            kv::CompareResult::Equal => compare::CompareResult::Equal,
            kv::CompareResult::Greater => compare::CompareResult::Greater,
            kv::CompareResult::Less => compare::CompareResult::Less,
            kv::CompareResult::NotEqual => compare::CompareResult::NotEqual,
        };
        let (target, union) = match c.target {
            kv::CompareTarget::Version(v) => (compare::CompareTarget::Version, U::Version(v)),
            kv::CompareTarget::CreateRevision(v) => (compare::CompareTarget::Create, U::CreateRevision(v)),
            kv::CompareTarget::ModRevision(v) => (compare::CompareTarget::Mod, U::ModRevision(v)),
            kv::CompareTarget::Value(v) => (compare::CompareTarget::Value, U::Value(v)),
            kv::CompareTarget::Lease(v) => (compare::CompareTarget::Lease, U::Lease(v)),
        };
        pb::Compare {
            result: result as i32,
            target: target as i32,
            key: c.key,
            range_end: c.range_end,
            target_union: Some(union),
        }
    }
}

impl TryFrom<pb::RequestOp> for kv::RequestOp {
    type Error = Status;
    fn try_from(p: pb::RequestOp) -> Result<kv::RequestOp, Status> {
        Ok(match p.request {
            Some(request_op::Request::RequestRange(r)) => kv::RequestOp::Range(r.try_into()?),
            Some(request_op::Request::RequestPut(r)) => kv::RequestOp::Put(r.into()),
            Some(request_op::Request::RequestDeleteRange(r)) => kv::RequestOp::DeleteRange(r.into()),
            Some(request_op::Request::RequestTxn(r)) => kv::RequestOp::Txn(r.try_into()?),
            // etcd's checkRequestOp answers an empty op so.
            None => return Err(crate::status::kv_error(&kv::KvError::KeyNotFound)),
        })
    }
}

impl From<kv::RequestOp> for pb::RequestOp {
    fn from(c: kv::RequestOp) -> pb::RequestOp {
        let request = match c {
            kv::RequestOp::Range(r) => request_op::Request::RequestRange(r.into()),
            kv::RequestOp::Put(r) => request_op::Request::RequestPut(r.into()),
            kv::RequestOp::DeleteRange(r) => request_op::Request::RequestDeleteRange(r.into()),
            kv::RequestOp::Txn(r) => request_op::Request::RequestTxn(r.into()),
        };
        pb::RequestOp { request: Some(request) }
    }
}

impl TryFrom<pb::TxnRequest> for kv::TxnRequest {
    type Error = Status;
    fn try_from(p: pb::TxnRequest) -> Result<kv::TxnRequest, Status> {
        Ok(kv::TxnRequest {
            compare: p.compare.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
            success: p.success.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
            failure: p.failure.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
        })
    }
}

impl From<kv::TxnRequest> for pb::TxnRequest {
    fn from(c: kv::TxnRequest) -> pb::TxnRequest {
        pb::TxnRequest {
            compare: c.compare.into_iter().map(Into::into).collect(),
            success: c.success.into_iter().map(Into::into).collect(),
            failure: c.failure.into_iter().map(Into::into).collect(),
        }
    }
}

/// Nested responses carry only their revision, as etcd's do.
fn nested_op(c: kv::ResponseOp) -> pb::ResponseOp {
    let info = HeaderInfo::default();
    let response = match c {
        kv::ResponseOp::Range(r) => response_op::Response::ResponseRange(r.to_pb(info)),
        kv::ResponseOp::Put(r) => response_op::Response::ResponsePut(r.to_pb(info)),
        kv::ResponseOp::DeleteRange(r) => response_op::Response::ResponseDeleteRange(r.to_pb(info)),
        kv::ResponseOp::Txn(r) => response_op::Response::ResponseTxn(r.to_pb(info)),
    };
    pb::ResponseOp { response: Some(response) }
}

impl ToPb for kv::TxnResponse {
    type Pb = pb::TxnResponse;
    fn to_pb(self, info: HeaderInfo) -> pb::TxnResponse {
        pb::TxnResponse {
            header: header(info, self.header),
            succeeded: self.succeeded,
            responses: self.responses.into_iter().map(nested_op).collect(),
        }
    }
}

impl TryFrom<pb::ResponseOp> for kv::ResponseOp {
    type Error = Status;
    fn try_from(p: pb::ResponseOp) -> Result<kv::ResponseOp, Status> {
        Ok(match p.response {
            Some(response_op::Response::ResponseRange(r)) => kv::ResponseOp::Range(r.into()),
            Some(response_op::Response::ResponsePut(r)) => kv::ResponseOp::Put(r.into()),
            Some(response_op::Response::ResponseDeleteRange(r)) => kv::ResponseOp::DeleteRange(r.into()),
            Some(response_op::Response::ResponseTxn(r)) => kv::ResponseOp::Txn(r.try_into()?),
            None => return Err(Status::invalid_argument("lockstep: empty response op")),
        })
    }
}

impl TryFrom<pb::TxnResponse> for kv::TxnResponse {
    type Error = Status;
    fn try_from(p: pb::TxnResponse) -> Result<kv::TxnResponse, Status> {
        Ok(kv::TxnResponse {
            header: core_header(p.header),
            succeeded: p.succeeded,
            responses: p.responses.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
        })
    }
}

// ---- compaction ----

impl From<pb::CompactionRequest> for kv::CompactionRequest {
    fn from(p: pb::CompactionRequest) -> kv::CompactionRequest {
        kv::CompactionRequest { revision: p.revision, physical: p.physical }
    }
}

impl From<kv::CompactionRequest> for pb::CompactionRequest {
    fn from(c: kv::CompactionRequest) -> pb::CompactionRequest {
        pb::CompactionRequest { revision: c.revision, physical: c.physical }
    }
}

impl ToPb for kv::CompactionResponse {
    type Pb = pb::CompactionResponse;
    fn to_pb(self, info: HeaderInfo) -> pb::CompactionResponse {
        pb::CompactionResponse { header: header(info, self.header) }
    }
}

impl From<pb::CompactionResponse> for kv::CompactionResponse {
    fn from(p: pb::CompactionResponse) -> kv::CompactionResponse {
        kv::CompactionResponse { header: core_header(p.header) }
    }
}

// ---- leases ----

impl From<pb::LeaseGrantRequest> for kv::LeaseGrantRequest {
    fn from(p: pb::LeaseGrantRequest) -> kv::LeaseGrantRequest {
        kv::LeaseGrantRequest { ttl: p.ttl, id: p.id }
    }
}

impl From<kv::LeaseGrantRequest> for pb::LeaseGrantRequest {
    fn from(c: kv::LeaseGrantRequest) -> pb::LeaseGrantRequest {
        pb::LeaseGrantRequest { ttl: c.ttl, id: c.id }
    }
}

impl ToPb for kv::LeaseGrantResponse {
    type Pb = pb::LeaseGrantResponse;
    fn to_pb(self, info: HeaderInfo) -> pb::LeaseGrantResponse {
        pb::LeaseGrantResponse { header: header(info, self.header), id: self.id, ttl: self.ttl, error: self.error }
    }
}

impl From<pb::LeaseGrantResponse> for kv::LeaseGrantResponse {
    fn from(p: pb::LeaseGrantResponse) -> kv::LeaseGrantResponse {
        kv::LeaseGrantResponse { header: core_header(p.header), id: p.id, ttl: p.ttl, error: p.error }
    }
}

impl From<pb::LeaseRevokeRequest> for kv::LeaseRevokeRequest {
    fn from(p: pb::LeaseRevokeRequest) -> kv::LeaseRevokeRequest {
        kv::LeaseRevokeRequest { id: p.id }
    }
}

impl From<kv::LeaseRevokeRequest> for pb::LeaseRevokeRequest {
    fn from(c: kv::LeaseRevokeRequest) -> pb::LeaseRevokeRequest {
        pb::LeaseRevokeRequest { id: c.id }
    }
}

impl ToPb for kv::LeaseRevokeResponse {
    type Pb = pb::LeaseRevokeResponse;
    fn to_pb(self, info: HeaderInfo) -> pb::LeaseRevokeResponse {
        pb::LeaseRevokeResponse { header: header(info, self.header) }
    }
}

impl From<pb::LeaseRevokeResponse> for kv::LeaseRevokeResponse {
    fn from(p: pb::LeaseRevokeResponse) -> kv::LeaseRevokeResponse {
        kv::LeaseRevokeResponse { header: core_header(p.header) }
    }
}

impl From<pb::LeaseTimeToLiveRequest> for kv::LeaseTimeToLiveRequest {
    fn from(p: pb::LeaseTimeToLiveRequest) -> kv::LeaseTimeToLiveRequest {
        kv::LeaseTimeToLiveRequest { id: p.id, keys: p.keys }
    }
}

impl From<kv::LeaseTimeToLiveRequest> for pb::LeaseTimeToLiveRequest {
    fn from(c: kv::LeaseTimeToLiveRequest) -> pb::LeaseTimeToLiveRequest {
        pb::LeaseTimeToLiveRequest { id: c.id, keys: c.keys }
    }
}

impl ToPb for kv::LeaseTimeToLiveResponse {
    type Pb = pb::LeaseTimeToLiveResponse;
    fn to_pb(self, info: HeaderInfo) -> pb::LeaseTimeToLiveResponse {
        pb::LeaseTimeToLiveResponse {
            header: header(info, self.header),
            id: self.id,
            ttl: self.ttl,
            granted_ttl: self.granted_ttl,
            keys: self.keys,
        }
    }
}

impl From<pb::LeaseTimeToLiveResponse> for kv::LeaseTimeToLiveResponse {
    fn from(p: pb::LeaseTimeToLiveResponse) -> kv::LeaseTimeToLiveResponse {
        kv::LeaseTimeToLiveResponse {
            header: core_header(p.header),
            id: p.id,
            ttl: p.ttl,
            granted_ttl: p.granted_ttl,
            keys: p.keys,
        }
    }
}

impl ToPb for kv::LeaseLeasesResponse {
    type Pb = pb::LeaseLeasesResponse;
    fn to_pb(self, info: HeaderInfo) -> pb::LeaseLeasesResponse {
        pb::LeaseLeasesResponse {
            header: header(info, self.header),
            leases: self.leases.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }
    }
}

impl From<pb::LeaseLeasesResponse> for kv::LeaseLeasesResponse {
    fn from(p: pb::LeaseLeasesResponse) -> kv::LeaseLeasesResponse {
        kv::LeaseLeasesResponse { header: core_header(p.header), leases: p.leases.into_iter().map(|l| l.id).collect() }
    }
}

impl From<pb::LeaseKeepAliveRequest> for kv::LeaseKeepAliveRequest {
    fn from(p: pb::LeaseKeepAliveRequest) -> kv::LeaseKeepAliveRequest {
        kv::LeaseKeepAliveRequest { id: p.id }
    }
}

impl From<kv::LeaseKeepAliveRequest> for pb::LeaseKeepAliveRequest {
    fn from(c: kv::LeaseKeepAliveRequest) -> pb::LeaseKeepAliveRequest {
        pb::LeaseKeepAliveRequest { id: c.id }
    }
}

impl ToPb for kv::LeaseKeepAliveResponse {
    type Pb = pb::LeaseKeepAliveResponse;
    fn to_pb(self, info: HeaderInfo) -> pb::LeaseKeepAliveResponse {
        pb::LeaseKeepAliveResponse { header: header(info, self.header), id: self.id, ttl: self.ttl }
    }
}

impl From<pb::LeaseKeepAliveResponse> for kv::LeaseKeepAliveResponse {
    fn from(p: pb::LeaseKeepAliveResponse) -> kv::LeaseKeepAliveResponse {
        kv::LeaseKeepAliveResponse { header: core_header(p.header), id: p.id, ttl: p.ttl }
    }
}

// ---- alarms ----

fn alarm_type(value: i32) -> Result<kv::AlarmType, Status> {
    match pb::AlarmType::try_from(value) {
        Ok(pb::AlarmType::None) => Ok(kv::AlarmType::None),
        Ok(pb::AlarmType::Nospace) => Ok(kv::AlarmType::NoSpace),
        Ok(pb::AlarmType::Corrupt) => Ok(kv::AlarmType::Corrupt),
        Err(_) => Err(invalid("alarm type", value)),
    }
}

fn pb_alarm_type(alarm: kv::AlarmType) -> i32 {
    let alarm = match alarm {
        kv::AlarmType::None => pb::AlarmType::None,
        kv::AlarmType::NoSpace => pb::AlarmType::Nospace,
        kv::AlarmType::Corrupt => pb::AlarmType::Corrupt,
    };
    alarm as i32
}

impl TryFrom<pb::AlarmRequest> for kv::AlarmRequest {
    type Error = Status;
    fn try_from(p: pb::AlarmRequest) -> Result<kv::AlarmRequest, Status> {
        use pb::alarm_request::AlarmAction as A;
        let action = match A::try_from(p.action) {
            Ok(A::Get) => kv::AlarmAction::Get,
            Ok(A::Activate) => kv::AlarmAction::Activate,
            Ok(A::Deactivate) => kv::AlarmAction::Deactivate,
            Err(_) => return Err(invalid("alarm action", p.action)),
        };
        Ok(kv::AlarmRequest { action, member_id: p.member_id, alarm: alarm_type(p.alarm)? })
    }
}

impl From<kv::AlarmRequest> for pb::AlarmRequest {
    fn from(c: kv::AlarmRequest) -> pb::AlarmRequest {
        use pb::alarm_request::AlarmAction as A;
        let action = match c.action {
            kv::AlarmAction::Get => A::Get,
            kv::AlarmAction::Activate => A::Activate,
            kv::AlarmAction::Deactivate => A::Deactivate,
        };
        pb::AlarmRequest { action: action as i32, member_id: c.member_id, alarm: pb_alarm_type(c.alarm) }
    }
}

impl ToPb for kv::AlarmResponse {
    type Pb = pb::AlarmResponse;
    fn to_pb(self, info: HeaderInfo) -> pb::AlarmResponse {
        pb::AlarmResponse {
            header: header(info, self.header),
            alarms: self
                .alarms
                .into_iter()
                .map(|a| pb::AlarmMember { member_id: a.member_id, alarm: pb_alarm_type(a.alarm) })
                .collect(),
        }
    }
}

impl TryFrom<pb::AlarmResponse> for kv::AlarmResponse {
    type Error = Status;
    fn try_from(p: pb::AlarmResponse) -> Result<kv::AlarmResponse, Status> {
        Ok(kv::AlarmResponse {
            header: core_header(p.header),
            alarms: p
                .alarms
                .into_iter()
                .map(|a| Ok(kv::AlarmMember { member_id: a.member_id, alarm: alarm_type(a.alarm)? }))
                .collect::<Result<_, Status>>()?,
        })
    }
}

// ---- watches ----

impl From<pb::WatchCreateRequest> for kv::WatchCreateRequest {
    /// etcd ignores filter values it does not know, and so does this.
    fn from(p: pb::WatchCreateRequest) -> kv::WatchCreateRequest {
        use pb::watch_create_request::FilterType as F;
        let has = |filter: F| p.filters.contains(&(filter as i32));
        kv::WatchCreateRequest {
            no_put: has(F::Noput),
            no_delete: has(F::Nodelete),
            key: p.key,
            range_end: p.range_end,
            start_revision: p.start_revision,
            progress_notify: p.progress_notify,
            prev_kv: p.prev_kv,
            watch_id: p.watch_id,
        }
    }
}

impl From<kv::WatchCreateRequest> for pb::WatchCreateRequest {
    /// `fragment` is a property of the stream, not of core's watcher: false.
    fn from(c: kv::WatchCreateRequest) -> pb::WatchCreateRequest {
        use pb::watch_create_request::FilterType as F;
        let mut filters = Vec::new();
        if c.no_put {
            filters.push(F::Noput as i32);
        }
        if c.no_delete {
            filters.push(F::Nodelete as i32);
        }
        pb::WatchCreateRequest {
            key: c.key,
            range_end: c.range_end,
            start_revision: c.start_revision,
            progress_notify: c.progress_notify,
            filters,
            prev_kv: c.prev_kv,
            watch_id: c.watch_id,
            fragment: false,
        }
    }
}

impl ToPb for kv::WatchResponse {
    type Pb = pb::WatchResponse;
    /// `fragment` is false; the stream sets it when it splits a response.
    fn to_pb(self, info: HeaderInfo) -> pb::WatchResponse {
        pb::WatchResponse {
            header: header(info, self.header),
            watch_id: self.watch_id,
            created: self.created,
            canceled: self.canceled,
            compact_revision: self.compact_revision,
            cancel_reason: self.cancel_reason,
            fragment: false,
            events: self.events.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::WatchResponse> for kv::WatchResponse {
    type Error = Status;
    fn try_from(p: pb::WatchResponse) -> Result<kv::WatchResponse, Status> {
        Ok(kv::WatchResponse {
            header: core_header(p.header),
            watch_id: p.watch_id,
            created: p.created,
            canceled: p.canceled,
            compact_revision: p.compact_revision,
            cancel_reason: p.cancel_reason,
            events: p.events.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
