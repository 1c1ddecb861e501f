//! lockstep-core: the pure, deterministic heart of lockstep.
//!
//! Everything here is a plain state machine: inputs come in with the current time
//! as a value, outputs go out as commands for a driver (the madsim simulator or the
//! production runtime) to execute. Nothing blocks, awaits, reads a clock, touches a
//! file or socket, spawns a thread or draws entropy; randomness comes from a
//! seeded generator owned by the actor. So the same code runs in production and
//! under a simulator that replays any run from its seed.
//!
//! ```text
//!            Event { Tick | Message | Request | Persisted }  + now
//!                               │
//!                               ▼
//!   ┌──────────────────────── Node ─────────────────────────┐
//!   │  Raft ── committed & durable entries ──► StateMachine   │
//!   │   │  ╰── read states ──► wait for apply ──► query       │
//!   └───┼──────────────────────────────────────────┼─────────┘
//!       ▼                                          ▼
//!   Send · SaveHardState · AppendLog · TruncateLog · SaveSnapshot
//!   CompactLog · Sync{id} · SetTimer{at}          Reply{id}
//! ```
//!
//! The contract (details on [`io::Command`]): writes may be carried out lazily but
//! in order; a `Sync { id }` makes every earlier write durable and is answered with
//! `Event::Persisted { up_to: id }`; messages may be sent as soon as they appear
//! (core holds back those that depend on unsynced state); a client request gets
//! exactly one `Reply`. Call [`Node::drain_commands`] after every
//! [`Node::step`].
//!
//! Modules: [`raft`] (consensus), [`node`] (composition), [`state_machine`] (the
//! trait) and [`register`] (a register/CAS machine), [`codec`] (the checksummed,
//! versioned binary format), [`config`], [`io`] (events and commands), [`rng`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Evaluates to true when the planted bug `$m` is active (only with the
/// `mutations` feature; a constant `false` otherwise).
#[cfg(feature = "mutations")]
macro_rules! mutated {
    ($config:expr, $m:ident) => {
        $config.mutated($crate::config::Mutation::$m)
    };
}
#[cfg(not(feature = "mutations"))]
macro_rules! mutated {
    ($config:expr, $m:ident) => {{
        let _ = &$config;
        false
    }};
}

pub mod codec;
pub mod config;
pub mod io;
// The etcd v3 MVCC key-value state machine (documented in the module itself; rkyv
// derives undocumented resolver types, every item in the module is documented by hand).
#[allow(missing_docs)]
pub mod kv;
pub mod node;
pub mod raft;
// rkyv derives undocumented resolver types; every item in the module is documented by hand.
#[allow(missing_docs)]
pub mod register;
pub mod rng;
pub mod state_machine;
pub mod types;
// The write-ahead log and snapshot file (documented in the module itself).
pub mod wal;

pub use config::Config;
pub use io::{ClientError, Command, Event, Recovered, Reply, Request, Response};
pub use node::Node;
pub use raft::message::{Entry, HardState, Membership, Message, MessageBody, Payload, SnapshotMeta};
pub use raft::{Raft, Role};
pub use state_machine::StateMachine;
pub use types::{GroupId, LogIndex, Millis, NodeId, RequestId, Term};
