//! A member's data directory on a real file system: layout, creation, the identity
//! file, the lock, listing and reading the WAL's files, and a simple blocking
//! executor for core's [`WalAction`]s.
//!
//! # Layout, version 1
//!
//! ```text
//! DATA_DIR/
//!   identity            cluster, member and group ids (text, checksummed; see crate::identity)
//!   lock                held (flock) by the running member, and by fsck; empty
//!   wal/                the WAL directory: every file core's WAL format governs
//!     {seq:016x}-{first_index:016x}.wal   WAL segments
//!     snapshot.snap                       the latest snapshot (optional)
//!     snapshot.snap.tmp                   a snapshot being written (a leftover is safe to delete)
//!   state/              the KV state in fjall (durable up to the checkpoint in wal/snapshot.snap)
//!   members.json        the members' addresses, kept current by the running member
//! ```
//!
//! The segments and the snapshot file share one directory because core's
//! [`WalAction`]s speak of "the directory" (a `Sync { directory: true }`, the
//! rename of a new snapshot file): one directory, one fsync.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use lockstep_core::wal::{
    SegmentHeader, SegmentId, WalAction, WalIdentity, SNAPSHOT_FILE_NAME, SNAPSHOT_TEMP_FILE_NAME,
};

use crate::identity::{
    decode_identity, encode_identity, IdentityProblem, IDENTITY_FILE_LEN_MAX, IDENTITY_FILE_NAME,
    IDENTITY_TEMP_FILE_NAME,
};

/// The data directory layout this build creates and reads.
pub const LAYOUT_VERSION: u32 = 1;
/// The WAL directory inside a data directory.
pub const WAL_DIR_NAME: &str = "wal";
/// The state machine's directory inside a data directory (reserved).
pub const STATE_DIR_NAME: &str = "state";
/// The lock file inside a data directory.
pub const LOCK_FILE_NAME: &str = "lock";

const READ_CHUNK_LEN: usize = 1 << 20;

/// Why a data directory could not be opened, created, locked, read or written.
/// `Display` says what is wrong and what to do.
#[derive(Debug)]
pub enum DataDirError {
    /// The path does not exist.
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The path exists but is not a directory.
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The data directory has no identity file.
    NoIdentity {
        /// The data directory.
        path: PathBuf,
        /// The identity the first readable segment header records, if any.
        found_in_wal: Option<WalIdentity>,
    },
    /// The identity file is damaged or of an unknown format.
    BadIdentity {
        /// The identity file.
        path: PathBuf,
        /// What is wrong.
        problem: IdentityProblem,
    },
    /// Creating a data directory that already belongs to another identity.
    IdentityMismatch {
        /// The data directory.
        path: PathBuf,
        /// The identity it has.
        existing: WalIdentity,
        /// The identity asked for.
        requested: WalIdentity,
    },
    /// The data directory has an identity but no WAL directory.
    NoWalDir {
        /// The missing WAL directory.
        path: PathBuf,
    },
    /// Another process holds the data directory's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An I/O operation failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("read", "fsync", ...).
        action: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

impl std::fmt::Display for DataDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataDirError::NotFound { path } => write!(
                f,
                "{}: no such directory. Check the path (it is the member's configured data directory, for \
                 example /var/lib/lockstep).",
                path.display()
            ),
            DataDirError::NotADirectory { path } => {
                write!(f, "{}: not a directory. Pass the member's data directory, not a file in it.", path.display())
            }
            DataDirError::NoIdentity { path, found_in_wal } => {
                write!(f, "{}: not a lockstep data directory: there is no {IDENTITY_FILE_NAME} file.", path.display())?;
                match found_in_wal {
                    Some(id) => write!(
                        f,
                        " Its WAL segments were written by cluster {} member {} group {}: if that is right, \
                         restore the {IDENTITY_FILE_NAME} file from a backup of this member; do not start the \
                         member without it.",
                        id.cluster_id, id.member_id, id.group_id
                    ),
                    None => write!(f, " Check the path."),
                }
            }
            DataDirError::BadIdentity { path, problem } => write!(
                f,
                "{}: unreadable identity file: {problem}. Restore it from a backup of this member, or, if the \
                 rest of the cluster is healthy, remove this member, wipe its data directory and add it back.",
                path.display()
            ),
            DataDirError::IdentityMismatch { path, existing, requested } => write!(
                f,
                "{}: belongs to cluster {} member {} group {}, not cluster {} member {} group {}. Never start a \
                 member on another member's data: check the configured data directory and ids.",
                path.display(),
                existing.cluster_id,
                existing.member_id,
                existing.group_id,
                requested.cluster_id,
                requested.member_id,
                requested.group_id
            ),
            DataDirError::NoWalDir { path } => write!(
                f,
                "{}: missing. The member's log is gone (or the directory is incomplete); do not start the member \
                 on this directory. If the rest of the cluster is healthy, remove this member, wipe its data \
                 directory and add it back; otherwise restore from a backup.",
                path.display()
            ),
            DataDirError::Locked { path } => write!(
                f,
                "{}: held by another process (a running lockstep member, or another fsck). Stop the member \
                 first; checking or repairing a live member's files gives wrong results.",
                path.display()
            ),
            DataDirError::Io { path, action, source } => {
                write!(f, "{}: {action} failed: {source}", path.display())?;
                match source.kind() {
                    std::io::ErrorKind::PermissionDenied => {
                        write!(f, ". Run as the user that owns the data directory.")
                    }
                    std::io::ErrorKind::ReadOnlyFilesystem => {
                        write!(f, ". The file system is read-only: remount it read-write to repair.")
                    }
                    _ => write!(f, ". Check the disk (dmesg, SMART) before trusting this directory."),
                }
            }
        }
    }
}

impl std::error::Error for DataDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataDirError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> DataDirError + 'a {
    move |source| DataDirError::Io { path: path.to_path_buf(), action, source }
}

/// How to lock a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Exclusive: the running member, and fsck when it repairs. Creates the lock file.
    Exclusive,
    /// Shared, and only if the lock file exists: fsck when it only reads, so that
    /// it never writes to the directory (a member that never ran has no lock file,
    /// and nobody else can be running on it).
    SharedIfPresent,
}

/// A held lock on a data directory; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// The WAL's files in a data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// `(file name, length)` of every file in `wal/` whose name ends in `.wal`,
    /// sorted by name (which is segment order for well-formed names).
    pub segments: Vec<(String, u64)>,
    /// The snapshot file's length, if there is one.
    pub snapshot: Option<u64>,
    /// The length of a leftover `snapshot.snap.tmp`, if there is one.
    pub snapshot_temp: Option<u64>,
    /// Other entries in `wal/`, which no lockstep writes.
    pub unexpected: Vec<String>,
    /// Whether `state/` exists.
    pub state_dir: bool,
}

impl Listing {
    /// The bytes of every segment and the snapshot file.
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|(_, len)| len).sum::<u64>() + self.snapshot.unwrap_or(0)
    }
}

/// An opened member data directory (see the module doc for the layout).
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    identity: WalIdentity,
}

impl DataDir {
    /// Creates a data directory for `identity` (and its parents), or opens it if it
    /// already exists with the same identity. The identity file is written
    /// atomically (temporary file, fsync, rename, directory fsync).
    pub fn create(root: &Path, identity: WalIdentity) -> Result<DataDir, DataDirError> {
        std::fs::create_dir_all(root).map_err(io_error(root, "create directory"))?;
        let identity_path = root.join(IDENTITY_FILE_NAME);
        if identity_path.exists() {
            let dir = DataDir::open(root)?;
            if dir.identity != identity {
                return Err(DataDirError::IdentityMismatch {
                    path: root.to_path_buf(),
                    existing: dir.identity,
                    requested: identity,
                });
            }
            return Ok(dir);
        }
        let wal = root.join(WAL_DIR_NAME);
        std::fs::create_dir_all(&wal).map_err(io_error(&wal, "create directory"))?;
        sync_dir(&wal)?;
        // The identity goes last: a directory with an identity file is complete.
        write_atomically(root, IDENTITY_TEMP_FILE_NAME, IDENTITY_FILE_NAME, &encode_identity(&identity))?;
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(DataDir { root: root.to_path_buf(), identity })
    }

    /// Opens an existing data directory: checks that it is a directory, reads and
    /// verifies its identity file, checks that `wal/` exists.
    pub fn open(root: &Path) -> Result<DataDir, DataDirError> {
        let metadata = match std::fs::metadata(root) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataDirError::NotFound { path: root.to_path_buf() })
            }
            Err(e) => return Err(io_error(root, "stat")(e)),
        };
        if !metadata.is_dir() {
            return Err(DataDirError::NotADirectory { path: root.to_path_buf() });
        }
        let identity_path = root.join(IDENTITY_FILE_NAME);
        let bytes = match read_limited(&identity_path, IDENTITY_FILE_LEN_MAX) {
            Ok(bytes) => bytes,
            Err(DataDirError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let found_in_wal = identity_from_segments(&root.join(WAL_DIR_NAME));
                return Err(DataDirError::NoIdentity { path: root.to_path_buf(), found_in_wal });
            }
            Err(e) => return Err(e),
        };
        let identity =
            decode_identity(&bytes).map_err(|problem| DataDirError::BadIdentity { path: identity_path, problem })?;
        let wal = root.join(WAL_DIR_NAME);
        if !wal.is_dir() {
            return Err(DataDirError::NoWalDir { path: wal });
        }
        Ok(DataDir { root: root.to_path_buf(), identity })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The WAL directory, `DATA_DIR/wal`.
    pub fn wal_dir(&self) -> PathBuf {
        self.root.join(WAL_DIR_NAME)
    }

    /// The member's identity, from the identity file.
    pub fn identity(&self) -> WalIdentity {
        self.identity
    }

    /// Takes the data directory's lock without waiting. `Ok(None)` only for
    /// [`LockMode::SharedIfPresent`] when there is no lock file.
    pub fn lock(&self, mode: LockMode) -> Result<Option<DirLock>, DataDirError> {
        let path = self.root.join(LOCK_FILE_NAME);
        let file = match mode {
            LockMode::Exclusive => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_error(&path, "open lock file"))?,
            LockMode::SharedIfPresent => match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_error(&path, "open lock file")(e)),
            },
        };
        let locked = match mode {
            LockMode::Exclusive => file.try_lock(),
            LockMode::SharedIfPresent => file.try_lock_shared(),
        };
        match locked {
            Ok(()) => Ok(Some(DirLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::Locked { path }),
            Err(std::fs::TryLockError::Error(e)) => Err(io_error(&path, "lock")(e)),
        }
    }

    /// Lists the WAL's files.
    pub fn list(&self) -> Result<Listing, DataDirError> {
        let wal = self.wal_dir();
        let mut listing = Listing { state_dir: self.root.join(STATE_DIR_NAME).is_dir(), ..Listing::default() };
        for entry in std::fs::read_dir(&wal).map_err(io_error(&wal, "list directory"))? {
            let entry = entry.map_err(io_error(&wal, "list directory"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let metadata = entry.metadata().map_err(io_error(&path, "stat"))?;
            let len = metadata.len();
            if !metadata.is_file() {
                listing.unexpected.push(name);
            } else if name == SNAPSHOT_FILE_NAME {
                listing.snapshot = Some(len);
            } else if name == SNAPSHOT_TEMP_FILE_NAME {
                listing.snapshot_temp = Some(len);
            } else if name.ends_with(".wal") {
                listing.segments.push((name, len));
            } else {
                listing.unexpected.push(name);
            }
        }
        listing.segments.sort();
        listing.unexpected.sort();
        Ok(listing)
    }

    /// Reads a file of the WAL directory whole, calling `progress` with the number
    /// of bytes of each chunk read.
    pub fn read_wal_file(&self, name: &str, progress: &mut dyn FnMut(u64)) -> Result<Vec<u8>, DataDirError> {
        let path = self.wal_dir().join(name);
        let mut file = File::open(&path).map_err(io_error(&path, "open"))?;
        let mut bytes = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK_LEN];
        loop {
            let n = match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(&path, "read")(e)),
            };
            bytes.extend_from_slice(&chunk[..n]);
            progress(u64::try_from(n).unwrap_or(u64::MAX));
        }
        Ok(bytes)
    }

    /// Carries out one [`WalAction`] with blocking `std::fs` calls, completely,
    /// before returning. The reference executor for tools and tests; a production
    /// runtime does the same with its own I/O.
    pub fn apply(&self, action: &WalAction) -> Result<(), DataDirError> {
        let wal = self.wal_dir();
        match action {
            WalAction::CreateSegment { segment, bytes, preallocate_len } => {
                let path = wal.join(segment.file_name());
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_error(&path, "create segment"))?;
                file.write_all(bytes).map_err(io_error(&path, "write"))?;
                let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
                if *preallocate_len > len {
                    // Extends with zeroes, which recovery reads as the end of the records.
                    file.set_len(*preallocate_len).map_err(io_error(&path, "preallocate"))?;
                }
            }
            WalAction::Append { segment, offset, bytes } => {
                let path = wal.join(segment.file_name());
                let mut file = OpenOptions::new().write(true).open(&path).map_err(io_error(&path, "open"))?;
                file.seek(SeekFrom::Start(*offset)).map_err(io_error(&path, "seek"))?;
                file.write_all(bytes).map_err(io_error(&path, "write"))?;
            }
            WalAction::Sync { segments, directory, .. } => {
                for segment in segments {
                    sync_file(&wal.join(segment.file_name()))?;
                }
                if *directory {
                    sync_dir(&wal)?;
                }
            }
            WalAction::WriteSnapshot { bytes } => {
                write_atomically(&wal, SNAPSHOT_TEMP_FILE_NAME, SNAPSHOT_FILE_NAME, bytes)?;
            }
            WalAction::DeleteSegments { segments } => {
                for segment in segments {
                    let path = wal.join(segment.file_name());
                    std::fs::remove_file(&path).map_err(io_error(&path, "delete"))?;
                }
            }
            WalAction::TruncateSegment { segment, len } => {
                let path = wal.join(segment.file_name());
                let file = OpenOptions::new().write(true).open(&path).map_err(io_error(&path, "open"))?;
                file.set_len(*len).map_err(io_error(&path, "truncate"))?;
                file.sync_all().map_err(io_error(&path, "fsync"))?;
            }
        }
        Ok(())
    }

    /// Fsyncs the WAL directory (after creating, deleting or renaming files in it).
    pub fn sync_wal_dir(&self) -> Result<(), DataDirError> {
        sync_dir(&self.wal_dir())
    }
}

/// Writes `bytes` to `dir/temp`, fsyncs it, renames it to `dir/name` and fsyncs
/// `dir`: afterwards `dir/name` is the old file or the new one, whole.
pub fn write_atomically(dir: &Path, temp: &str, name: &str, bytes: &[u8]) -> Result<(), DataDirError> {
    let temp_path = dir.join(temp);
    let mut file = File::create(&temp_path).map_err(io_error(&temp_path, "create"))?;
    file.write_all(bytes).map_err(io_error(&temp_path, "write"))?;
    file.sync_all().map_err(io_error(&temp_path, "fsync"))?;
    drop(file);
    let path = dir.join(name);
    std::fs::rename(&temp_path, &path).map_err(io_error(&path, "rename into place"))?;
    sync_dir(dir)
}

/// Fsyncs a file's data and metadata.
pub fn sync_file(path: &Path) -> Result<(), DataDirError> {
    let file = OpenOptions::new().write(true).open(path).map_err(io_error(path, "open"))?;
    file.sync_all().map_err(io_error(path, "fsync"))
}

/// Fsyncs a directory, so that file creations, deletions and renames in it are durable.
pub fn sync_dir(path: &Path) -> Result<(), DataDirError> {
    let dir = File::open(path).map_err(io_error(path, "open directory"))?;
    dir.sync_all().map_err(io_error(path, "fsync directory"))
}

fn read_limited(path: &Path, len_max: u64) -> Result<Vec<u8>, DataDirError> {
    let file = File::open(path).map_err(io_error(path, "open"))?;
    let mut bytes = Vec::new();
    // One byte more than allowed, so that the decoder sees (and names) a file that is too long.
    file.take(len_max.saturating_add(1)).read_to_end(&mut bytes).map_err(io_error(path, "read"))?;
    Ok(bytes)
}

/// The identity recorded in the first segment (by name) whose header is readable.
fn identity_from_segments(wal: &Path) -> Option<WalIdentity> {
    let mut names: Vec<String> = std::fs::read_dir(wal)
        .ok()?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| SegmentId::parse(name).is_some())
        .collect();
    names.sort();
    names.iter().find_map(|name| {
        let mut header = Vec::new();
        let file = File::open(wal.join(name)).ok()?;
        let len = u64::try_from(lockstep_core::wal::SEGMENT_HEADER_LEN).ok()?;
        file.take(len).read_to_end(&mut header).ok()?;
        SegmentHeader::decode(&header).ok().map(|h| h.identity)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: WalIdentity = WalIdentity { cluster_id: 11, member_id: 2, group_id: 1 };

    #[test]
    fn create_then_open_and_refuse_another_identity() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("member");
        let dir = DataDir::create(&root, ID).expect("create");
        assert_eq!(dir.identity(), ID);
        assert!(root.join(WAL_DIR_NAME).is_dir());
        assert!(!root.join(IDENTITY_TEMP_FILE_NAME).exists());
        assert_eq!(DataDir::open(&root).expect("open").identity(), ID);
        assert_eq!(DataDir::create(&root, ID).expect("create again").identity(), ID);
        let other = WalIdentity { member_id: 3, ..ID };
        assert!(matches!(DataDir::create(&root, other), Err(DataDirError::IdentityMismatch { .. })));
        assert_eq!(dir.list().expect("list"), Listing::default());
    }

    #[test]
    fn open_names_what_is_missing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("nope");
        assert!(matches!(DataDir::open(&missing), Err(DataDirError::NotFound { .. })));
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert!(matches!(DataDir::open(&file), Err(DataDirError::NotADirectory { .. })));
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        assert!(matches!(DataDir::open(&empty), Err(DataDirError::NoIdentity { found_in_wal: None, .. })));
        let root = tmp.path().join("member");
        let dir = DataDir::create(&root, ID).expect("create");
        let segment = SegmentId { seq: 1, first_index: 1 };
        let header = SegmentHeader { identity: ID, id: segment, block_size: 4096 }.encode().to_vec();
        dir.apply(&WalAction::CreateSegment { segment, bytes: header, preallocate_len: 0 }).expect("create segment");
        std::fs::remove_file(root.join(IDENTITY_FILE_NAME)).expect("rm");
        match DataDir::open(&root) {
            Err(e @ DataDirError::NoIdentity { found_in_wal: Some(found), .. }) => {
                assert_eq!(found, ID);
                assert!(e.to_string().contains("cluster 11 member 2 group 1"), "{e}");
            }
            other => panic!("expected NoIdentity with a hint, got {other:?}"),
        }
    }

    #[test]
    fn an_exclusive_lock_excludes_everyone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::create(tmp.path(), ID).expect("create");
        assert!(dir.lock(LockMode::SharedIfPresent).expect("no lock file yet").is_none());
        let held = dir.lock(LockMode::Exclusive).expect("lock");
        assert!(matches!(dir.lock(LockMode::Exclusive), Err(DataDirError::Locked { .. })));
        assert!(matches!(dir.lock(LockMode::SharedIfPresent), Err(DataDirError::Locked { .. })));
        drop(held);
        let shared = dir.lock(LockMode::SharedIfPresent).expect("shared");
        assert!(shared.is_some());
        assert!(dir.lock(LockMode::SharedIfPresent).expect("two readers").is_some());
        assert!(matches!(dir.lock(LockMode::Exclusive), Err(DataDirError::Locked { .. })));
    }
}
