//! The errors the KV state machine answers with, carrying etcd's exact texts.

use rkyv::{Archive, Deserialize, Serialize};

use super::auth::AuthError;

/// Why a KV request failed. [`std::fmt::Display`] gives the text an etcd v3
/// server sends in its gRPC status, so a gateway can pass it through unchanged
/// and `etcdctl` prints what it prints against etcd.
///
/// Every variant except [`KvError::Malformed`] and [`KvError::TxnTooDeep`] is an
/// etcd error; those two guard lockstep's own encoding and limits.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// A key (of a request or a compare) is empty.
    EmptyKey,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    KeyNotFound,
    /// `ignore_value` together with a value.
    ValueProvided,
    /// `ignore_lease` together with a lease.
    LeaseProvided,
    /// A txn level has more compares, or ops in a branch, than `txn_ops_max`.
    TooManyOps,
    /// A txn writes one key twice (put/put, or put and delete).
    DuplicateKey,
    /// The encoded request exceeds `request_bytes_max`.
    RequestTooLarge,
    /// The revision asked for was removed by compaction.
    Compacted,
    /// The revision asked for is above the current revision.
    FutureRevision,
    /// The lease does not exist (never granted, revoked or expired).
    LeaseNotFound,
    /// A lease with the requested id exists already.
    LeaseExists,
    /// The requested TTL exceeds etcd's maximum of 9,000,000,000 seconds.
    LeaseTtlTooLarge,
    /// Txns are nested deeper than `txn_depth_max` (lockstep's limit; etcd has none
    /// besides the request size).
    TxnTooDeep {
        /// The configured limit.
        depth_max: u32,
    },
    /// The bytes are not a valid encoding of a request.
    Malformed(String),
    /// The store is at its quota, or the NOSPACE alarm is active: only deletes,
    /// compactions and reads are served.
    NoSpace,
    /// The log entry was applied before (the storage is ahead of the log replay);
    /// it was skipped and nobody waits for its result.
    AlreadyApplied,
    /// An auth command or permission check failed (etcd's auth errors).
    Auth(AuthError),
}

impl From<AuthError> for KvError {
    fn from(e: AuthError) -> KvError {
        KvError::Auth(e)
    }
}

impl KvError {
    /// The gRPC status code etcd pairs with the error, by its canonical name.
    pub fn grpc_code(&self) -> &'static str {
        match self {
            KvError::Compacted | KvError::FutureRevision | KvError::LeaseTtlTooLarge => "OUT_OF_RANGE",
            KvError::LeaseNotFound => "NOT_FOUND",
            KvError::NoSpace => "RESOURCE_EXHAUSTED",
            KvError::LeaseExists | KvError::AlreadyApplied => "FAILED_PRECONDITION",
            KvError::Auth(e) => e.grpc_code(),
            _ => "INVALID_ARGUMENT",
        }
    }
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvError::EmptyKey => f.write_str("etcdserver: key is not provided"),
            KvError::KeyNotFound => f.write_str("etcdserver: key not found"),
            KvError::NoSpace => f.write_str("etcdserver: mvcc: database space exceeded"),
            KvError::ValueProvided => f.write_str("etcdserver: value is provided"),
            KvError::LeaseProvided => f.write_str("etcdserver: lease is provided"),
            KvError::TooManyOps => f.write_str("etcdserver: too many operations in txn request"),
            KvError::DuplicateKey => f.write_str("etcdserver: duplicate key given in txn request"),
            KvError::RequestTooLarge => f.write_str("etcdserver: request is too large"),
            KvError::Compacted => f.write_str("etcdserver: mvcc: required revision has been compacted"),
            KvError::FutureRevision => f.write_str("etcdserver: mvcc: required revision is a future revision"),
            KvError::LeaseNotFound => f.write_str("etcdserver: requested lease not found"),
            KvError::LeaseExists => f.write_str("etcdserver: lease already exists"),
            KvError::LeaseTtlTooLarge => f.write_str("etcdserver: too large lease TTL"),
            KvError::TxnTooDeep { depth_max } => write!(f, "lockstep: txn nested deeper than {depth_max} levels"),
            KvError::Malformed(why) => write!(f, "lockstep: malformed request: {why}"),
            KvError::AlreadyApplied => f.write_str("lockstep: log entry already applied"),
            KvError::Auth(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for KvError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_etcds() {
        assert_eq!(KvError::EmptyKey.to_string(), "etcdserver: key is not provided");
        assert_eq!(KvError::TooManyOps.to_string(), "etcdserver: too many operations in txn request");
        assert_eq!(KvError::DuplicateKey.to_string(), "etcdserver: duplicate key given in txn request");
        assert_eq!(KvError::Compacted.to_string(), "etcdserver: mvcc: required revision has been compacted");
        assert_eq!(KvError::FutureRevision.to_string(), "etcdserver: mvcc: required revision is a future revision");
        assert_eq!(KvError::RequestTooLarge.to_string(), "etcdserver: request is too large");
        assert_eq!(KvError::Compacted.grpc_code(), "OUT_OF_RANGE");
    }
}
