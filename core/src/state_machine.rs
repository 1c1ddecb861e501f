//! The state machine that committed entries are applied to.

use crate::raft::message::Payload;
use crate::types::{LogIndex, Millis};

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreError(pub String);

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot restore snapshot: {}", self.0)
    }
}

/// A deterministic state machine driven by the replicated log.
///
/// Every member applies the same entries in the same order and must reach the same
/// state; nothing here may depend on time, randomness or iteration order of hashed
/// collections.
pub trait StateMachine {
    /// Applies the entry at `index` and returns the result for the client.
    /// Sees every committed entry, including `Noop` and `Membership` (which most
    /// state machines ignore), exactly once and in order; except that after a
    /// restart from a [`StateMachine::checkpoint`] the entries between the
    /// checkpoint and the state's stored applied index come again, and must be
    /// recognised and skipped.
    fn apply(&mut self, index: LogIndex, payload: &Payload) -> Vec<u8>;

    /// The end of a run of [`StateMachine::apply`] calls (the entries one step
    /// committed): storage that gathers the run's writes in memory writes them
    /// out together now. The default does nothing.
    fn applied_run(&mut self) {}

    /// Answers a read-only query against the current state.
    fn query(&self, query: &[u8]) -> Vec<u8>;

    /// Serializes the whole state.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with a snapshot's.
    fn restore(&mut self, data: &[u8]) -> Result<(), RestoreError>;

    /// Makes the state as of the applied `index` durable by the state
    /// machine's own storage and returns a small marker that stands for it in
    /// the local snapshot; [`StateMachine::restore`] of the marker then keeps
    /// the stored state (checking it reaches `index`). `None` (the default):
    /// the state is not durable by itself, and the local snapshot holds
    /// [`StateMachine::snapshot`]'s full state. Followers are always sent the
    /// full state.
    fn checkpoint(&mut self, index: LogIndex) -> Option<Vec<u8>> {
        let _ = index;
        None
    }

    /// Checks a command before it is proposed, so malformed commands are refused
    /// instead of being committed to the log.
    fn validate(&self, command: &[u8]) -> Result<(), String>;

    /// This member became leader (`true`, once an entry of its term is committed
    /// and applied, so the state is current) or stopped being leader (`false`).
    /// Time-driven duties, such as lease expiry, belong to the leader alone.
    fn on_leadership(&mut self, now: Millis, leader: bool) {
        let _ = (now, leader);
    }

    /// On the leader, after every step: commands to propose because time passed
    /// (for example revoking expired leases), at most `max`. They go through the
    /// log like client writes, so every member applies the same outcome.
    fn leader_proposals(&mut self, now: Millis, max: usize) -> Vec<Vec<u8>> {
        let _ = (now, max);
        Vec::new()
    }

    /// The next time [`StateMachine::leader_proposals`] may have work, if any.
    fn next_deadline(&self) -> Option<Millis> {
        None
    }

    /// Answers a request only the leader may serve, from state that is not
    /// replicated (a lease keep-alive renews the leader's lease timer). The node
    /// calls it on the leader once a quorum confirmed its leadership after the
    /// request arrived (as for a linearizable read) and the state machine leads.
    /// State machines without such requests answer like [`StateMachine::query`].
    fn leader_request(&mut self, now: Millis, request: &[u8]) -> Vec<u8> {
        let _ = now;
        self.query(request)
    }
}
