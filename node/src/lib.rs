//! The `lockstep` binary's library: the server and the command-line tools.
//!
//! - [`config`]: a member's configuration (YAML file, `LOCKSTEP_*` environment
//!   variables, `--set` flags) and `lockstep config check`.
//! - [`data_dir`]: a member's data directory on disk (layout, identity file, lock,
//!   listing and reading the WAL's files, a blocking executor for core's
//!   [`lockstep_core::wal::WalAction`]s).
//! - [`identity`]: the checksummed identity file.
//! - [`fsck`]: `lockstep fsck` over core's pure [`lockstep_core::wal::fsck()`].
//! - [`version`]: `lockstep version`.
//! - [`server`]: running one member (data directory, executor, admin and client
//!   servers, join, shutdown); [`http`] its HTTP endpoints, [`admin`] the pure
//!   answers of the admin endpoints, [`backend`] the etcd API over a member.
//! - [`audit`]: the audit log file (`audit.file`) and its writer thread.
//! - [`dev`]: `lockstep dev`, a local three-member cluster.
//! - [`snapshot`]: `lockstep snapshot save|restore` and the snapshot file format.
//! - [`cluster_cli`] and [`admin_client`]: `lockstep cluster ...`.
//!
//! The on-disk format is documented in `docs/storage.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod admin;
pub mod admin_client;
pub mod audit;
pub mod backend;
pub mod certs;
pub mod cluster_cli;
pub mod config;
pub mod data_dir;
pub mod dev;
pub mod fsck;
pub mod http;
pub mod identity;
pub mod server;
pub mod snapshot;
pub mod version;

pub use config::{ConfigError, MemberConfig};
pub use data_dir::{DataDir, DataDirError, Listing, LockMode};
pub use fsck::{fsck_data_dir, FsckOptions, FsckOutcome, FsckStatus, ProgressEvent};
pub use identity::{decode_identity, encode_identity, IdentityProblem};
pub use version::VersionInfo;
