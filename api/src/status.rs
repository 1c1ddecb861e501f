//! Errors as etcd sends them: the gRPC status code and message an etcd v3.5
//! server uses (`api/v3rpc/rpctypes/error.go`), so that clients react the same
//! way (etcdctl prints the text; clientv3 retries `UNAVAILABLE`).

use lockstep_core::kv::KvError;
use lockstep_core::ClientError;
use tonic::{Code, Status};

use crate::backend::{BackendError, EtcdError};

/// etcd's `ErrGRPCNoLeader`.
pub const NO_LEADER: &str = "etcdserver: no leader";
/// etcd's `ErrGRPCNotLeader` text.
pub const NOT_LEADER: &str = "etcdserver: not leader";
/// etcd's `ErrGRPCTimeout`.
pub const TIMEOUT: &str = "etcdserver: request timed out";
/// etcd's `ErrGRPCTimeoutDueToLeaderFail`.
pub const TIMEOUT_LEADER_FAIL: &str = "etcdserver: request timed out, possibly due to previous leader failure";
/// etcd's `ErrGRPCRequestTooLarge`.
pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
/// etcd's `ErrGRPCRequestTooManyRequests`.
pub const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";
/// etcd's `ErrGRPCInvalidSortOption`.
pub const INVALID_SORT_OPTION: &str = "etcdserver: invalid sort option";

/// The gRPC code for one of core's canonical code names
/// ([`KvError::grpc_code`]).
fn code_by_name(name: &str) -> Code {
    match name {
        "OUT_OF_RANGE" => Code::OutOfRange,
        "NOT_FOUND" => Code::NotFound,
        "RESOURCE_EXHAUSTED" => Code::ResourceExhausted,
        "FAILED_PRECONDITION" => Code::FailedPrecondition,
        "INVALID_ARGUMENT" => Code::InvalidArgument,
        "UNAVAILABLE" => Code::Unavailable,
        "PERMISSION_DENIED" => Code::PermissionDenied,
        "UNAUTHENTICATED" => Code::Unauthenticated,
        other => panic!("core named an unknown gRPC code {other:?}"),
    }
}

/// A KV error as etcd's status: same code, same text.
pub fn kv_error(e: &KvError) -> Status {
    Status::new(code_by_name(e.grpc_code()), e.to_string())
}

/// A Raft-level refusal as etcd's status.
///
/// `NotLeader` is sent as `UNAVAILABLE` (etcd's `ErrGRPCNotLeader` is
/// `FAILED_PRECONDITION`, but etcd members forward to the leader, so its clients
/// never see it for KV requests; `UNAVAILABLE` makes clientv3 retry, possibly at
/// another endpoint). Without a known leader it is etcd's "no leader".
/// `Invalid` carries a text from the state machine's validation, which is a
/// [`KvError`] text when it came from core's KV store; that error's code is used
/// then.
pub fn client_error(e: &ClientError) -> Status {
    match e {
        ClientError::NotLeader { leader: None } => Status::unavailable(NO_LEADER),
        ClientError::NotLeader { leader: Some(_) } => Status::unavailable(NOT_LEADER),
        ClientError::Dropped => Status::unavailable(TIMEOUT_LEADER_FAIL),
        ClientError::Timeout => Status::unavailable(TIMEOUT),
        ClientError::Busy => Status::resource_exhausted(TOO_MANY_REQUESTS),
        ClientError::TooLarge => Status::invalid_argument(REQUEST_TOO_LARGE),
        ClientError::Invalid(why) => {
            let code =
                if *why == KvError::NoSpace.to_string() { Code::ResourceExhausted } else { Code::InvalidArgument };
            Status::new(code, why.clone())
        }
    }
}

/// A backend failure as a status.
pub fn backend_error(e: &BackendError) -> Status {
    match e {
        BackendError::Client(e) => client_error(e),
        BackendError::Unavailable(why) => Status::unavailable(why.clone()),
        BackendError::Etcd(e) => etcd_error(*e),
        BackendError::Unimplemented(what) => Status::unimplemented(format!("lockstep: {what} is not served")),
    }
}

/// One of etcd's cluster and maintenance refusals, with etcd's code and text.
pub fn etcd_error(e: EtcdError) -> Status {
    let (code, text) = match e {
        EtcdError::MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
        EtcdError::MemberExists => (Code::FailedPrecondition, "etcdserver: member ID already exist"),
        EtcdError::PeerUrlExists => (Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
        EtcdError::MemberBadUrls => (Code::InvalidArgument, "etcdserver: given member URLs are invalid"),
        EtcdError::MemberNotLearner => (Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
        EtcdError::LearnerNotReady => {
            (Code::FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
        }
        EtcdError::NotEnoughStartedMembers => {
            (Code::FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
        }
        EtcdError::NotLeader => (Code::FailedPrecondition, NOT_LEADER),
        EtcdError::BadLeaderTransferee => (Code::FailedPrecondition, "etcdserver: bad leader transferee"),
        EtcdError::FutureRevision => (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
        EtcdError::Compacted => (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
    };
    Status::new(code, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(s: Status) -> (Code, String) {
        (s.code(), s.message().to_string())
    }

    #[test]
    fn kv_errors_carry_etcds_codes_and_texts() {
        let cases = [
            (KvError::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (KvError::KeyNotFound, Code::InvalidArgument, "etcdserver: key not found"),
            (KvError::ValueProvided, Code::InvalidArgument, "etcdserver: value is provided"),
            (KvError::LeaseProvided, Code::InvalidArgument, "etcdserver: lease is provided"),
            (KvError::TooManyOps, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (KvError::DuplicateKey, Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            (KvError::RequestTooLarge, Code::InvalidArgument, "etcdserver: request is too large"),
            (KvError::Compacted, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (KvError::FutureRevision, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (KvError::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (KvError::LeaseExists, Code::FailedPrecondition, "etcdserver: lease already exists"),
            (KvError::LeaseTtlTooLarge, Code::OutOfRange, "etcdserver: too large lease TTL"),
            (KvError::NoSpace, Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
        ];
        for (error, code, text) in cases {
            assert_eq!(pair(kv_error(&error)), (code, text.to_string()), "{error:?}");
        }
        let (code, _) = pair(kv_error(&KvError::Malformed("x".into())));
        assert_eq!(code, Code::InvalidArgument);
    }

    #[test]
    fn client_errors_carry_etcds_codes_and_texts() {
        let cases = [
            (ClientError::NotLeader { leader: None }, Code::Unavailable, NO_LEADER),
            (ClientError::NotLeader { leader: Some(2) }, Code::Unavailable, NOT_LEADER),
            (ClientError::Dropped, Code::Unavailable, TIMEOUT_LEADER_FAIL),
            (ClientError::Timeout, Code::Unavailable, TIMEOUT),
            (ClientError::Busy, Code::ResourceExhausted, TOO_MANY_REQUESTS),
            (ClientError::TooLarge, Code::InvalidArgument, REQUEST_TOO_LARGE),
        ];
        for (error, code, text) in cases {
            assert_eq!(pair(client_error(&error)), (code, text.to_string()), "{error:?}");
        }
        let empty = ClientError::Invalid(KvError::EmptyKey.to_string());
        assert_eq!(pair(client_error(&empty)), (Code::InvalidArgument, "etcdserver: key is not provided".into()));
        let full = ClientError::Invalid(KvError::NoSpace.to_string());
        assert_eq!(pair(client_error(&full)).0, Code::ResourceExhausted);
        let down = BackendError::Unavailable("stopping".into());
        assert_eq!(pair(backend_error(&down)), (Code::Unavailable, "stopping".into()));
    }
}
