//! How the KV state is laid out in a [`crate::kv::Storage`].
//!
//! ```text
//! key                                  value (rkyv)
//! 'l' ++ lease id (u64 BE, sign bit flipped)   StoredLease { ttl, remaining_ttl }
//! "m/compact_revision"                 i64 LE
//! "m/current_revision"                 i64 LE
//! 'r' ++ main (u64 BE) ++ sub (u64 BE) StoredKv { key, value, create_revision,
//!                                                 version, lease, tombstone }
//! ```
//! Records are keyed by revision, as in etcd's backend, so the history of the
//! whole store since a revision is one ordered scan (watch catch-up) and
//! compaction deletes exact keys. The mod revision of a record is its key.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use super::key_index::{PutMeta, Rev};
use super::request::{KeyValue, LeaseId, Revision};

/// Prefix of lease records.
pub const LEASE_PREFIX: u8 = b'l';
/// Prefix of key-value records.
pub const REV_PREFIX: u8 = b'r';
/// The compaction revision.
pub const META_COMPACT: &[u8] = b"m/compact_revision";
/// The current revision.
pub const META_CURRENT: &[u8] = b"m/current_revision";
/// The active alarms: repeated (member id `u64` LE, alarm type `u8`), sorted.
pub const META_ALARMS: &[u8] = b"m/alarms";

/// One change of a key, as stored.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StoredKv {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty for a tombstone).
    pub value: Vec<u8>,
    /// The create revision (0 for a tombstone).
    pub create_revision: Revision,
    /// The version (0 for a tombstone).
    pub version: i64,
    /// The lease (0 for a tombstone).
    pub lease: LeaseId,
    /// The change deleted the key.
    pub tombstone: bool,
}

impl StoredKv {
    /// What the index keeps of this change: its [`PutMeta`], `None` for a
    /// tombstone.
    pub fn put_meta(&self) -> Option<PutMeta> {
        (!self.tombstone).then_some(PutMeta {
            create_revision: self.create_revision,
            version: self.version,
            lease: self.lease,
        })
    }

    /// The key-value this record describes at `rev` (`None` for a tombstone).
    pub fn to_kv(&self, rev: Rev) -> Option<KeyValue> {
        (!self.tombstone).then(|| KeyValue {
            key: self.key.clone(),
            create_revision: self.create_revision,
            mod_revision: rev.main,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        })
    }
}

/// A lease, as stored (its keys are derived from the records).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredLease {
    /// The granted TTL in seconds.
    pub ttl: i64,
    /// The last checkpointed remaining TTL in seconds (0: none).
    pub remaining_ttl: i64,
}

/// The storage key of the record of `rev`.
pub fn rev_key(rev: Rev) -> Vec<u8> {
    assert!(rev.main >= 0 && rev.sub >= 0, "negative revision {rev:?}");
    let mut key = Vec::with_capacity(17);
    key.push(REV_PREFIX);
    key.extend_from_slice(&(rev.main as u64).to_be_bytes());
    key.extend_from_slice(&(rev.sub as u64).to_be_bytes());
    key
}

/// The revision a record key names, if it is one.
pub fn parse_rev_key(key: &[u8]) -> Option<Rev> {
    if key.len() != 17 || key[0] != REV_PREFIX {
        return None;
    }
    let main = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let sub = u64::from_be_bytes(key[9..17].try_into().ok()?);
    Some(Rev { main: i64::try_from(main).ok()?, sub: i64::try_from(sub).ok()? })
}

/// The storage key of a lease; flipping the sign bit keeps ids in numeric order.
pub fn lease_key(id: LeaseId) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(LEASE_PREFIX);
    key.extend_from_slice(&((id as u64) ^ (1 << 63)).to_be_bytes());
    key
}

/// The lease a lease key names, if it is one.
pub fn parse_lease_key(key: &[u8]) -> Option<LeaseId> {
    if key.len() != 9 || key[0] != LEASE_PREFIX {
        return None;
    }
    Some((u64::from_be_bytes(key[1..9].try_into().ok()?) ^ (1 << 63)) as i64)
}

/// Encodes an i64 meta value.
pub fn encode_i64(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Decodes an i64 meta value.
pub fn decode_i64(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(bytes.try_into().ok()?))
}

/// Serializes an rkyv value held in memory.
pub fn to_bytes<T>(value: &T) -> Vec<u8>
where
    T: for<'a> Serialize<
        rkyv::api::high::HighSerializer<AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rancor::Error>,
    >,
{
    rkyv::to_bytes::<rancor::Error>(value).expect("in-memory values always serialize").to_vec()
}

/// Copies bytes into an aligned buffer for rkyv.
pub fn aligned(bytes: &[u8]) -> AlignedVec {
    let mut out = AlignedVec::with_capacity(bytes.len());
    out.extend_from_slice(bytes);
    out
}

/// Decodes a stored key-value record.
pub fn decode_kv(bytes: &[u8]) -> Result<StoredKv, String> {
    rkyv::from_bytes::<StoredKv, rancor::Error>(&aligned(bytes)).map_err(|e| e.to_string())
}

/// Decodes a stored lease.
pub fn decode_lease(bytes: &[u8]) -> Result<StoredLease, String> {
    rkyv::from_bytes::<StoredLease, rancor::Error>(&aligned(bytes)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort() {
        let a = Rev { main: 2, sub: 9 };
        let b = Rev { main: 3, sub: 0 };
        assert_eq!(parse_rev_key(&rev_key(a)), Some(a));
        assert!(rev_key(a) < rev_key(b));
        assert_eq!(parse_lease_key(&lease_key(-5)), Some(-5));
        assert!(lease_key(-5) < lease_key(3));
        assert!(lease_key(3) < lease_key(i64::MAX));
        assert_eq!(parse_rev_key(b"m/x"), None);
    }
}
