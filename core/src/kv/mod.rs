//! The etcd v3 key-value state machine: MVCC, txns, compaction, leases and
//! watches, as pure code over a synchronous [`Storage`].
//!
//! # The revision model
//!
//! The store has one logical clock, the *revision* (etcd's main revision). The
//! empty store is at revision 1. Every write that changes at least one key — a
//! put, a delete that deletes something, a txn with such ops, a lease revoke
//! with attached keys — creates exactly one new revision, and each change within
//! it gets a *sub-revision* 0, 1, 2... in the order the ops ran. Writes that
//! change nothing (a delete of nothing, a failed txn, compaction, lease grants)
//! create none. Each key carries `create_revision` (the put that created it
//! since its last delete), `mod_revision` (its last change) and `version` (puts
//! since creation, reset by a delete). A read at revision `r` sees, for each key,
//! its latest change with main revision `<= r`; a delete leaves a *tombstone*.
//! Compaction at `c` discards history that no read at `c` or later can see:
//! changes before `c` except each key's last put before `c`; reads below `c`
//! then fail with `Compacted`.
//!
//! # Data layout
//!
//! ```text
//!   Storage (ordered bytes, atomic batches + applied index)     memory
//!   ┌──────────────────────────────────────────────────┐   ┌────────────────────┐
//!   │ "am/…" "au" user "ar" role → auth state (auth.rs) │   │ AuthStore          │
//!   │ 'l' lease id        → {ttl, remaining_ttl}        │   │ KeyIndex:          │
//!   │ "m/compact_revision" "m/current_revision"         │   │ key → [(rev, tomb)]│
//!   │ 'r' (main, sub)     → {key, value, create_rev,    │◄──│ LeaseTable:        │
//!   │                        version, lease, tombstone} │   │ lease → keys       │
//!   └──────────────────────────────────────────────────┘   └────────────────────┘
//! ```
//! Records are keyed by revision ([`layout`]), so history since a revision is
//! one scan (watch catch-up) and compaction deletes exact keys. The index and the
//! lease table are rebuilt from storage on open. Each applied log entry writes
//! one batch with its index (a storage may gather the batches of a run of
//! entries and write them as one at [`Storage::flush`], which the node calls
//! through [`crate::StateMachine::applied_run`]), so after a crash the storage
//! is exactly the state at some applied index, and replaying the log from the
//! entry after it (already-applied entries are skipped) brings it back.
//!
//! # Flow
//!
//! ```text
//!  log entry ─► KvStore::execute ─► check ─► WriteTxn (staged, reads see it)
//!                                          └► Mvcc::commit ─► WriteBatch ─► Storage
//!                                                         └► events ─► WatchHub
//!  query ─► KvStore::read ─► range / read-only txn (over &Mvcc)
//!  leader tick ─► LeaseTimer::expired_leases(now) ─► propose LeaseRevoke
//! ```
//!
//! Every member applies the same log to the same bytes: nothing here reads a
//! clock, iterates a hashed collection or draws randomness (lease ids chosen by
//! the store derive from the log index).
//!
//! Files: [`storage`] (the trait), [`mem_storage`], [`layout`], [`key_index`],
//! [`mvcc`], [`write_txn`], [`range`], [`txn`], [`lease`], [`auth`], [`watch`],
//! [`request`] (etcd's messages), [`wire`] (their encoding), [`errors`],
//! [`store`] (the state machine).

pub mod auth;
pub mod errors;
pub mod key_index;
pub mod layout;
pub mod lease;
pub mod mem_storage;
pub mod mvcc;
pub mod range;
pub mod request;
pub mod storage;
pub mod store;
pub mod txn;
pub mod watch;
pub mod wire;
pub mod write_txn;

pub use auth::{AuthCommand, AuthError, AuthEvent, AuthInfo, AuthStore, PermType, Permission};
pub use errors::KvError;
pub use key_index::{KeyRange, Rev};
pub use lease::{LeaseTable, LeaseTimer, LEASE_TTL_MAX_S};
pub use mem_storage::MemStorage;
pub use mvcc::Mvcc;
pub use request::*;
pub use storage::{Storage, WriteBatch, WriteOp};
pub use store::{checkpoint_index, decode_reply, recovered_from_checkpoint, KvConfig, KvStore, CHECKPOINT_MAGIC};
pub use watch::{WatchConfig, WatchCreateRequest, WatchHub, WatchId, WatchResponse};
