//! Why the WAL could not open, or stopped.

use std::fmt;
use std::path::PathBuf;

use lockstep_core::wal::WalError;

/// An I/O error while writing or syncing the WAL. It is fatal for the member:
/// the WAL refuses every later command and the member must stop. It is never
/// retried, because after a failed `fdatasync` the kernel may have dropped the
/// dirty pages and marked them clean, so a second `fdatasync` could succeed
/// without the data being on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFailure {
    /// What the WAL was doing (`"fdatasync"`, `"write"`, `"create"` ...).
    pub operation: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The operating system's error.
    pub error: String,
}

impl fmt::Display for WalFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WAL {} of {} failed: {}. This is fatal: the member stops and does not retry, because after a failed \
             write or fsync the disk's contents are unknown (the kernel may have dropped the unwritten pages). \
             Check the disk and the kernel log, then restart the member: recovery reads what reached the disk, \
             and nothing that depended on the failed writes was acknowledged.",
            self.operation,
            self.path.display(),
            self.error
        )
    }
}

impl std::error::Error for WalFailure {}

/// Why [`crate::Wal::open`] refused to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalOpenError {
    /// The data directory could not be read or prepared.
    Io(WalFailure),
    /// The WAL or snapshot file is damaged, foreign or incomplete in a way a
    /// crash cannot explain; the error names the file and offset and says what
    /// to do.
    Recovery {
        /// The data directory.
        dir: PathBuf,
        /// What recovery found.
        error: WalError,
    },
}

impl fmt::Display for WalOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalOpenError::Io(failure) => write!(f, "cannot open the WAL: {failure}"),
            WalOpenError::Recovery { dir, error } => {
                write!(f, "refusing to start: the WAL in {} cannot be recovered: {error}", dir.display())
            }
        }
    }
}

impl std::error::Error for WalOpenError {}

impl From<WalFailure> for WalOpenError {
    fn from(failure: WalFailure) -> Self {
        WalOpenError::Io(failure)
    }
}
