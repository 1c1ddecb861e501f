//! lockstep-core: the pure, deterministic heart of lockstep.
//! (crate documentation is completed below)
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
pub mod node;
pub mod raft;
// rkyv derives undocumented resolver types; every item in the module is documented by hand.
#[allow(missing_docs)]
pub mod register;
pub mod rng;
pub mod state_machine;
pub mod types;

pub use config::Config;
pub use io::{ClientError, Command, Event, Recovered, Reply, Request, Response};
pub use node::Node;
pub use raft::message::{Entry, HardState, Membership, Message, MessageBody, Payload, SnapshotMeta};
pub use raft::{Raft, Role};
pub use state_machine::StateMachine;
pub use types::{GroupId, LogIndex, Millis, NodeId, RequestId, Term};
