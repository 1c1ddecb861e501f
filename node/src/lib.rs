//! The `lockstep` binary's library: what the command-line tools and (later) the
//! server share.
//!
//! - [`config`]: a member's configuration (YAML file, `LOCKSTEP_*` environment
//!   variables, `--set` flags) and `lockstep config check`.
//! - [`data_dir`]: a member's data directory on disk (layout, identity file, lock,
//!   listing and reading the WAL's files, a blocking executor for core's
//!   [`lockstep_core::wal::WalAction`]s).
//! - [`identity`]: the checksummed identity file.
//! - [`fsck`]: `lockstep fsck` over core's pure [`lockstep_core::wal::fsck()`].
//! - [`version`]: `lockstep version`.
//!
//! The on-disk format is documented in `docs/storage.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod config;
pub mod data_dir;
pub mod fsck;
pub mod identity;
pub mod version;

pub use config::{ConfigError, MemberConfig};
pub use data_dir::{DataDir, DataDirError, Listing, LockMode};
pub use fsck::{fsck_data_dir, FsckOptions, FsckOutcome, FsckStatus, ProgressEvent};
pub use identity::{decode_identity, encode_identity, IdentityProblem};
pub use version::VersionInfo;
