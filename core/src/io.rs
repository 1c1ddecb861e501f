//! The contract between core and a driver: the events a driver feeds in and the
//! commands it must carry out.

use crate::raft::message::{Entry, HardState, Membership, Message, SnapshotMeta};
use crate::types::{LogIndex, Millis, NodeId, RequestId};

/// An input to a [`crate::node::Node`]. Every input comes with `now`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// Time has passed; delivered at (or after) the last [`Command::SetTimer`].
    Tick,
    /// A message from another member, already decoded and checksum-verified.
    Message(Message),
    /// A client request; answered by exactly one [`Command::Reply`] with the same id.
    Request {
        /// Chosen by the driver, unique among this node's pending requests.
        id: RequestId,
        /// What the client asks.
        request: Request,
    },
    /// Every write issued before [`Command::Sync`] `{ id: up_to }` is durable.
    Persisted {
        /// The id of the completed sync.
        up_to: u64,
    },
}

/// What a client may ask of a member.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// A state-machine command; answered after it is committed and applied.
    Write(Vec<u8>),
    /// A linearizable state-machine query (ReadIndex, or a lease when enabled).
    Read(Vec<u8>),
    /// A request only the leader serves, from its own unreplicated state (a
    /// lease keep-alive), after confirming its leadership like a read.
    LeaderRequest(Vec<u8>),
    /// Change the membership to these voters and learners (joint consensus);
    /// answered once the new membership is committed.
    ChangeMembership {
        /// The voters of the new membership.
        voters: Vec<NodeId>,
        /// The learners of the new membership.
        learners: Vec<NodeId>,
    },
    /// Hand leadership to `to`; answered once this member is no longer leader.
    TransferLeader {
        /// The member to become leader.
        to: NodeId,
    },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Response {
    /// The state machine's result of a write, with the index it was applied at.
    Written {
        /// The log index of the write.
        index: LogIndex,
        /// The state machine's result.
        result: Vec<u8>,
    },
    /// The state machine's answer to a read.
    Read(Vec<u8>),
    /// The membership now in force.
    Membership(Membership),
    /// Leadership moved to the given member (or at least away from this one).
    Transferred {
        /// The new leader, if known.
        leader: Option<NodeId>,
    },
}

/// Why a request was not served. Each variant says whether it may have taken effect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientError {
    /// This member is not the leader; it did not act. Retry at `leader` if known.
    NotLeader {
        /// The leader this member knows of.
        leader: Option<NodeId>,
    },
    /// The request certainly did not and never will take effect (for example, its
    /// entry was replaced by another leader's).
    Dropped,
    /// The request took too long; it may or may not take effect.
    Timeout,
    /// Too many requests are pending, or a membership change or leadership
    /// transfer is in progress; it did not act.
    Busy,
    /// The request exceeds a size limit; it did not act.
    TooLarge,
    /// The request is malformed; it did not act.
    Invalid(String),
}

/// The answer to a request.
pub type Reply = Result<Response, ClientError>;

/// An action core asks its driver to carry out.
///
/// Writes (`SaveHardState`, `AppendLog`, `TruncateLog`, `SaveSnapshot`) must be
/// carried out in the order given; they need not be durable until a `Sync` that
/// follows them completes, which the driver reports with [`Event::Persisted`]. A
/// driver may cover several syncs with one fsync (group commit) and report the
/// highest id. Messages can be sent as soon as they are emitted: core holds back
/// the ones that depend on unsynced state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// Send a message to a peer; it may be lost.
    Send(Message),
    /// Store the term and vote, replacing the previous ones.
    SaveHardState(HardState),
    /// Remove every log entry with index `>= entries[0].index`, then append `entries`.
    AppendLog(Vec<Entry>),
    /// Remove every log entry with index `>= from`.
    TruncateLog {
        /// The first index to remove.
        from: LogIndex,
    },
    /// Store a snapshot atomically, replacing the previous one. Afterwards entries
    /// with index `<= meta.index` are no longer needed.
    SaveSnapshot {
        /// Describes the snapshot.
        meta: SnapshotMeta,
        /// The state machine's serialized state, `meta.size` bytes, CRC32C `meta.checksum`.
        data: Vec<u8>,
    },
    /// Entries with index `<= up_to` may be deleted (a snapshot covers them).
    CompactLog {
        /// The last index that may be deleted.
        up_to: LogIndex,
    },
    /// Make every preceding write durable, then deliver `Event::Persisted { up_to: id }`.
    Sync {
        /// Increases by one with every sync.
        id: u64,
    },
    /// Answer a client request.
    Reply {
        /// The request's id.
        id: RequestId,
        /// The answer.
        reply: Reply,
    },
    /// Deliver `Event::Tick` at `at` (replacing any earlier timer).
    SetTimer {
        /// When to tick.
        at: Millis,
    },
}

/// What a driver read back from disk when a member restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last durable term and vote.
    pub hard_state: HardState,
    /// The last durable snapshot, if any.
    pub snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// The durable log entries, in order.
    pub entries: Vec<Entry>,
}
