//! lockstep's production storage drivers: they carry out the pure decisions of
//! `lockstep-core` on real disks.
//!
//! - [`Wal`]: the member's write-ahead log on glommio DMA files (`O_DIRECT`). It
//!   feeds every [`lockstep_core::Command`] to core's
//!   [`lockstep_core::wal::WalWriter`] and carries out the
//!   [`lockstep_core::wal::WalAction`]s it returns, with group commit: appends
//!   collect in memory and one `fdatasync` covers every `Sync` that arrived while
//!   the previous one ran; completions are reported as the highest sync id
//!   ([`Wal::wait_persisted`]). [`Wal::open`] recovers the directory with
//!   [`lockstep_core::wal::recover()`] first and refuses damaged data.
//! - [`crypt`]: encryption at rest (the key file, AES-256-GCM as core's
//!   `WalCipher`); with it the state stays in memory ([`StateStorage::Memory`]).
//! - [`FjallStorage`]: core's [`lockstep_core::kv::Storage`] on fjall, for the
//!   KV state machine's data.
//! - [`http`]: hyper on glommio: [`http::serve`] serves gRPC (h2c) and
//!   HTTP/1.1 connections with `!Send` services (the etcd API, the admin
//!   endpoints).
//! - [`tls`]: rustls on the client, peer and admin ports, with certificates
//!   reloaded on change or SIGHUP without dropping connections.
//!
//! Every glommio type stays inside this crate, so that the runtime can be
//! replaced (monoio, compio) without touching core or the node: the public API
//! takes and returns core's types, paths and this crate's error types. [`Wal`]
//! must be used from inside a glommio executor (`glommio::LocalExecutorBuilder`);
//! it is `!Send` and lives on the thread that opened it.
//!
//! ```text
//!  Node::drain_commands ─► Wal::submit ─► WalWriter::handle ─► queue of WalActions
//!                                                                   │ (driver task)
//!                        Event::Persisted ◄─ Wal::wait_persisted ◄──┴─ DMA writes + one fdatasync
//! ```
//!
//! Operating errors are values ([`WalOpenError`], [`WalFailure`],
//! [`StorageOpenError`]). An I/O error while writing or syncing the WAL is fatal
//! for the member: the WAL stops, every waiter gets the [`WalFailure`], and the
//! member must stop (it is never retried: after a failed fsync the kernel may
//! have dropped the dirty pages, so a retry could report data durable that is
//! not). [`FjallStorage`] implements a trait without an error path, so its I/O
//! errors panic with a message saying so.

#![deny(missing_docs)]

pub mod crypt;
mod fjall_storage;
pub mod http;
pub mod local;
pub mod member;
pub mod metrics;
pub mod net;
pub mod tls;
pub mod transport;
mod wal;
pub mod wire;

pub use fjall_storage::{FjallStorage, MemoryState, StateStorage, StorageOpenError};
pub use member::{Member, MemberOptions, MemberStatus, RaftView, StartError, StartMode};
pub use metrics::Metrics;
pub use transport::{Transport, TransportOptions};
pub use wal::{Wal, WalFailure, WalOpenError, WalStats};
