//! Identifiers and plain values shared by every core actor.
//!
//! Wire and disk integers are explicitly sized (`u64`, `u32`), never `usize`.

/// Identifies one member of a Raft group. `0` is never a valid id.
pub type NodeId = u64;

/// Identifies one Raft group. Every message, log entry and snapshot carries it so
/// that many groups can later share one process (multi-Raft).
pub type GroupId = u64;

/// A Raft term.
pub type Term = u64;

/// The index of an entry in the replicated log. Index 0 is the empty prefix.
pub type LogIndex = u64;

/// Milliseconds on the driver's monotonic clock. Core never reads a clock: the
/// driver passes `now` into every input.
pub type Millis = u64;

/// Identifies one client request within one node incarnation; chosen by the driver.
pub type RequestId = u64;
