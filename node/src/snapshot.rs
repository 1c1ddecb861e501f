//! Backups: `lockstep snapshot save` downloads a consistent copy of a member's
//! key-value state; `lockstep snapshot restore` seeds a new member's data
//! directory from one, to start a new cluster from it (disaster recovery).
//!
//! # Snapshot file, version 1
//!
//! ```text
//! 0        8       12           20          28             36          44          52         56          60
//! | magic  | vers. | cluster id | member id | applied index| revision  | data len  | data crc | header crc | data ...
//! "LKSNAP01" u32     u64          u64         u64            i64         u64         u32        u32
//! ```
//! All integers little-endian; the header CRC32C covers bytes 0..56, the data
//! CRC32C the data, which is the KV state machine's own snapshot (its format
//! is versioned by its own magic `LKKV`). The member takes the copy between two
//! steps of its event loop, so it is the state as of one applied index.

use std::path::Path;

use lockstep_core::kv::{KvStore, MemStorage};
use lockstep_core::raft::message::{HardState, SnapshotMeta};
use lockstep_core::wal::cipher::{is_sealed_snapshot, open_snapshot_file, seal_snapshot_file};
use lockstep_core::wal::{Cipher, WalIdentity, WalWriter};
use lockstep_core::{Command, Membership, StateMachine};

use crate::config::MemberConfig;
use crate::data_dir::DataDir;

/// Magic bytes of a snapshot file.
pub const SNAPSHOT_FILE_MAGIC: [u8; 8] = *b"LKSNAP01";
/// The snapshot file format this build writes and reads.
pub const SNAPSHOT_FILE_VERSION: u32 = 1;
/// Length of the snapshot file header.
pub const SNAPSHOT_HEADER_LEN: usize = 60;

/// What a snapshot file says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The cluster it was taken from.
    pub cluster_id: u64,
    /// The member that took it.
    pub member_id: u64,
    /// The Raft index of the last entry it reflects.
    pub applied_index: u64,
    /// The MVCC revision it holds.
    pub revision: i64,
    /// Bytes of state.
    pub data_len: u64,
    /// CRC32C of the state.
    pub data_crc: u32,
}

/// Encodes a snapshot file: header, then `data`.
pub fn encode_snapshot_file(header: &SnapshotHeader, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + data.len());
    out.extend_from_slice(&SNAPSHOT_FILE_MAGIC);
    out.extend_from_slice(&SNAPSHOT_FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&header.cluster_id.to_le_bytes());
    out.extend_from_slice(&header.member_id.to_le_bytes());
    out.extend_from_slice(&header.applied_index.to_le_bytes());
    out.extend_from_slice(&header.revision.to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// Checks a whole snapshot file (both checksums, the lengths, and that the
/// state machine can read the data) and returns its header and data.
pub fn decode_snapshot_file(bytes: &[u8]) -> Result<(SnapshotHeader, &[u8]), String> {
    if bytes.len() < SNAPSHOT_HEADER_LEN {
        return Err(format!("only {} bytes: not a lockstep snapshot file", bytes.len()));
    }
    if bytes[..8] != SNAPSHOT_FILE_MAGIC {
        return Err("not a lockstep snapshot file (wrong magic)".into());
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let version = u32_at(8);
    if version != SNAPSHOT_FILE_VERSION {
        return Err(format!("snapshot file format {version}; this build reads format {SNAPSHOT_FILE_VERSION}"));
    }
    if crc32c::crc32c(&bytes[..56]) != u32_at(56) {
        return Err("the header checksum does not match: the file is damaged".into());
    }
    let header = SnapshotHeader {
        cluster_id: u64_at(12),
        member_id: u64_at(20),
        applied_index: u64_at(28),
        revision: u64_at(36) as i64,
        data_len: u64_at(44),
        data_crc: u32_at(52),
    };
    let mut data = &bytes[SNAPSHOT_HEADER_LEN..];
    if data.len() as u64 > header.data_len {
        // Saved by `etcdctl snapshot save`: zero padding and a SHA-256 follow.
        let body = lockstep_api::sha256::strip_snapshot_checksum(bytes)
            .ok_or("the file is longer than its header says and has no valid SHA-256 trailer: it is damaged")?;
        let data_len = usize::try_from(header.data_len).map_err(|e| e.to_string())?;
        data = &body[SNAPSHOT_HEADER_LEN..];
        if data.len() < data_len || data[data_len..].iter().any(|b| *b != 0) {
            return Err("the padding before the SHA-256 trailer is not zeros: the file is damaged".into());
        }
        data = &data[..data_len];
    }
    if data.len() as u64 != header.data_len {
        return Err(format!(
            "the file holds {} bytes of state, its header says {}: it is truncated or damaged",
            data.len(),
            header.data_len
        ));
    }
    if crc32c::crc32c(data) != header.data_crc {
        return Err("the data checksum does not match: the file is damaged".into());
    }
    let mut probe = KvStore::open(Default::default(), MemStorage::new()).map_err(|e| e.to_string())?;
    probe.restore(data).map_err(|e| format!("the state cannot be read: {e}"))?;
    Ok((header, data))
}

/// What `restore` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The snapshot's header.
    pub header: SnapshotHeader,
    /// The new cluster's id.
    pub cluster_id: u64,
    /// The voters of the new cluster.
    pub voters: Vec<u64>,
}

/// Creates `config.data_dir` for member `config.member_id` of a new cluster
/// made of `config.cluster.initial_members`, holding the snapshot in `bytes`.
/// Every member of the new cluster is restored from the same file with its own
/// config; they then start with `lockstep serve` as usual. Refuses a data
/// directory that exists and is not empty.
///
/// A backup sealed with `lockstep snapshot save --key-file` is opened with
/// `backup_key`; the new data directory is sealed with the config's
/// `encryption.key_file` if it has one (the two keys may differ: restoring is
/// how data moves to a new key).
pub fn restore(bytes: &[u8], config: &MemberConfig, backup_key: Option<&Cipher>) -> Result<Restored, String> {
    let opened = if is_sealed_snapshot(bytes) {
        Some(open_snapshot_file(backup_key, bytes).map_err(|e| format!("the snapshot file is {e}"))?)
    } else {
        None
    };
    let (header, data) = decode_snapshot_file(opened.as_deref().unwrap_or(bytes))?;
    let cipher = match &config.encryption.key_file {
        Some(path) => Some(lockstep_runtime::crypt::AesGcm::load_cipher(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let root = &config.data_dir;
    if root.exists() && std::fs::read_dir(root).map_err(|e| e.to_string())?.next().is_some() {
        return Err(format!(
            "{} exists and is not empty; restore only into a new data directory (move the old one away first)",
            root.display()
        ));
    }
    if config.cluster.initial_members.is_empty() {
        return Err("the config has no cluster.initial_members: restore starts a new cluster from them".into());
    }
    let mut voters: Vec<u64> = config.cluster.initial_members.iter().map(|m| m.id).collect();
    voters.sort_unstable();
    let identity = WalIdentity { cluster_id: config.cluster_id(), member_id: config.member_id, group_id: 1 };
    let dir = DataDir::create(root, identity).map_err(|e| e.to_string())?;
    let mut writer = WalWriter::new_with_cipher(identity, config.wal_config(), cipher);
    // Every member restored from the same file and member list gets the same
    // snapshot metadata, so they agree on the log's starting point.
    let meta = SnapshotMeta {
        group: 1,
        index: header.applied_index.max(1),
        term: 1,
        membership: Membership { voters: voters.clone(), outgoing: Vec::new(), learners: Vec::new() },
        size: data.len() as u64,
        checksum: crc32c::crc32c(data),
    };
    let commands = [
        Command::SaveSnapshot { meta, data: data.to_vec() },
        Command::SaveHardState(HardState { term: 1, vote: None }),
        Command::Sync { id: 1 },
    ];
    for command in &commands {
        for action in writer.handle(command) {
            dir.apply(&action).map_err(|e| e.to_string())?;
        }
    }
    Ok(Restored { header, cluster_id: identity.cluster_id, voters })
}

/// `bytes` (a snapshot file) sealed with `key` (`lockstep snapshot save
/// --key-file`): AES-256-GCM, see `docs/security.md`.
pub fn seal(bytes: &[u8], key: &Cipher) -> Vec<u8> {
    seal_snapshot_file(key, bytes)
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| format!("bad file name {}", path.display()))?;
    crate::data_dir::write_atomically(dir, &format!(".{name}.tmp"), name, bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use lockstep_core::kv::{KvCommand, KvConfig, PutRequest};

    fn state() -> Vec<u8> {
        let mut store = KvStore::open(KvConfig::default(), MemStorage::new()).unwrap();
        let put = KvCommand::Put(PutRequest { key: b"a".to_vec(), value: b"1".to_vec(), ..PutRequest::default() });
        store.execute(5, &put).unwrap();
        store.snapshot()
    }

    fn header(data: &[u8]) -> SnapshotHeader {
        SnapshotHeader {
            cluster_id: 7,
            member_id: 1,
            applied_index: 5,
            revision: 2,
            data_len: data.len() as u64,
            data_crc: crc32c::crc32c(data),
        }
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let data = state();
        let file = encode_snapshot_file(&header(&data), &data);
        let (h, d) = decode_snapshot_file(&file).unwrap();
        assert_eq!(h, header(&data));
        assert_eq!(d, &data[..]);
        let mut bad = file.clone();
        bad[SNAPSHOT_HEADER_LEN + 3] ^= 1;
        assert_eq!(decode_snapshot_file(&bad).unwrap_err(), "the data checksum does not match: the file is damaged");
        let mut bad = file.clone();
        bad[30] ^= 1;
        assert_eq!(decode_snapshot_file(&bad).unwrap_err(), "the header checksum does not match: the file is damaged");
        assert!(decode_snapshot_file(&file[..file.len() - 1]).unwrap_err().contains("truncated or damaged"));
        assert_eq!(decode_snapshot_file(b"hello").unwrap_err(), "only 5 bytes: not a lockstep snapshot file");
    }

    #[test]
    fn restore_refuses_a_used_directory_and_writes_a_recoverable_one() {
        let data = state();
        let file = encode_snapshot_file(&header(&data), &data);
        let dir = tempfile::tempdir().unwrap();
        let config = MemberConfig::single(1, dir.path().join("m1"));
        let restored = restore(&file, &config, None).unwrap();
        assert_eq!(restored.voters, vec![1]);
        let err = restore(&file, &config, None).unwrap_err();
        assert!(err.ends_with(
            "exists and is not empty; restore only into a new data directory (move the old one away first)"
        ));
        // The WAL recovers to the snapshot.
        let dir = DataDir::open(&config.data_dir).unwrap();
        let listing = dir.list().unwrap();
        let segments: Vec<(String, Vec<u8>)> = listing
            .segments
            .iter()
            .map(|(name, _)| (name.clone(), dir.read_wal_file(name, &mut |_| {}).unwrap()))
            .collect();
        let snapshot = dir.read_wal_file(lockstep_core::wal::SNAPSHOT_FILE_NAME, &mut |_| {}).unwrap();
        let report = lockstep_core::wal::recover(&dir.identity(), &segments, Some(&snapshot)).unwrap();
        let (meta, recovered) = report.recovered.snapshot.unwrap();
        assert_eq!((meta.index, meta.term), (5, 1));
        assert_eq!(recovered, data);
        assert_eq!(report.recovered.hard_state, HardState { term: 1, vote: None });
    }
}
