//! lockstep-sim: drives [`lockstep_core::Node`]s on the madsim deterministic
//! simulator.
//!
//! Each member is a madsim node running one driver task, so that crashes, restarts
//! and pauses are madsim's `kill`, `restart` and `pause`. Everything else that is
//! not deterministic in a real deployment is simulated here and drawn from the
//! seeded madsim RNG:
//!
//! - [`net`]: the network (latency, reordering, loss, duplication, bit flips,
//!   symmetric and one-way partitions, clogged links);
//! - [`disk`]: a per-member data directory in core's real WAL format (written by
//!   `lockstep_core::wal::WalWriter`, read back by `lockstep_core::wal::recover`)
//!   that outlives the member, with fsync latency, group commit, loss of unsynced
//!   writes on crash, torn writes, media corruption, failed fsyncs and full disks,
//!   and an exact check of every recovery;
//! - [`clock`]: per-member local clocks with offset, drift and forward jumps;
//! - [`invariants`]: Raft's safety properties, checked after every step;
//! - [`machine`]: the state machines a member can run (register or MVCC KV);
//! - [`trace`]: the hash of every event stepped and command emitted, the
//!   fingerprint of a run, and a ring buffer of its latest records.
//!
//! The pure parts (net, disk, clock, invariants, machine, trace) build everywhere; the
//! madsim driver, `Cluster`, only with `RUSTFLAGS="--cfg madsim"`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
pub mod dice;
pub mod disk;
pub mod invariants;
pub mod machine;
pub mod net;
pub mod oneshot;
pub mod trace;

#[cfg(madsim)]
mod cluster;

#[cfg(madsim)]
pub use cluster::{ClientOutcome, Cluster, ClusterConfig, ClusterView, MemberStatus, SimStats};
