//! Messages between members and the entries of the replicated log.
//!
//! These are the types that cross the wire and land on disk. Their binary form is
//! rkyv, framed with a version and a CRC32C by [`crate::codec`]; changing a field
//! here changes the format and must bump [`crate::codec::FORMAT_VERSION`].

use rkyv::{Archive, Deserialize, Serialize};

use crate::types::{GroupId, LogIndex, NodeId, Term};

/// One message from one member of a group to another.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]

pub struct Message {
    /// The Raft group this message belongs to.
    pub group: GroupId,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of Raft messages.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]

pub enum MessageBody {
    /// Asks whether the receiver would vote for the sender, without changing terms.
    PreVote {
        /// Index of the candidate's last log entry.
        last_index: LogIndex,
        /// Term of the candidate's last log entry.
        last_term: Term,
    },
    /// Answers a [`MessageBody::PreVote`].
    PreVoteResponse {
        /// Whether the receiver would vote for the candidate.
        granted: bool,
    },
    /// Asks for the receiver's vote in the message's term.
    Vote {
        /// Index of the candidate's last log entry.
        last_index: LogIndex,
        /// Term of the candidate's last log entry.
        last_term: Term,
        /// Set when the election follows a leadership transfer: voters then ignore
        /// their leader lease.
        transfer: bool,
    },
    /// Answers a [`MessageBody::Vote`]; sent only once the vote is durable.
    VoteResponse {
        /// Whether the receiver voted for the candidate.
        granted: bool,
    },
    /// Replicates entries following `prev_index`.
    Append {
        /// The index of the entry just before `entries`.
        prev_index: LogIndex,
        /// The term of the entry at `prev_index`.
        prev_term: Term,
        /// The entries to append, possibly none.
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: LogIndex,
    },
    /// Answers a [`MessageBody::Append`]; sent only once the entries are durable.
    AppendResponse {
        /// Whether the follower's log now matches the leader's up to `index`.
        success: bool,
        /// On success: the highest index known to match. On rejection: the
        /// `prev_index` that did not match.
        index: LogIndex,
        /// On rejection: the follower's last index whose term is at most the
        /// rejected `prev_term`, a hint that lets the leader skip a whole term.
        hint_index: LogIndex,
        /// On rejection: the term at `hint_index`.
        hint_term: Term,
    },
    /// Asserts leadership, carries the commit index and a round number that
    /// confirms reads (ReadIndex) and leases.
    Heartbeat {
        /// `min(leader commit, follower match)`: always safe to commit.
        commit: LogIndex,
        /// The leader's broadcast round.
        round: u64,
    },
    /// Answers a [`MessageBody::Heartbeat`].
    HeartbeatResponse {
        /// The round being acknowledged.
        round: u64,
        /// The follower's last log index, so the leader can resume replication.
        last_index: LogIndex,
    },
    /// One chunk of a snapshot.
    InstallSnapshot {
        /// Describes the whole snapshot.
        meta: SnapshotMeta,
        /// Byte offset of `data` within the snapshot.
        offset: u64,
        /// The chunk.
        data: Vec<u8>,
        /// Set on the last chunk.
        done: bool,
    },
    /// Answers a snapshot chunk.
    InstallSnapshotResponse {
        /// The index of the snapshot being installed.
        snapshot_index: LogIndex,
        /// The next byte offset the receiver expects.
        next_offset: u64,
        /// Set when the whole snapshot is durable at the receiver.
        done: bool,
    },
    /// A follower asks the leader for a read index on behalf of a client.
    ReadIndex {
        /// The follower's context, echoed back.
        ctx: u64,
    },
    /// The leader's answer to [`MessageBody::ReadIndex`].
    ReadIndexResponse {
        /// The context from the request.
        ctx: u64,
        /// The index the read must wait for; `None` when the sender cannot serve it.
        index: Option<LogIndex>,
    },
    /// Tells the receiver to campaign at once (leadership transfer).
    TimeoutNow,
}

impl MessageBody {
    /// A short name for logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteResponse { .. } => "PreVoteResponse",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteResponse { .. } => "VoteResponse",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResponse { .. } => "AppendResponse",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::InstallSnapshotResponse { .. } => "InstallSnapshotResponse",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
        }
    }
}

/// One entry of the replicated log.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]

pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// What the entry does when applied.
    pub payload: Payload,
}

/// The content of a log entry.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]

pub enum Payload {
    /// Appended by every new leader so that it can commit entries of its term.
    Noop,
    /// An opaque state-machine command.
    Command(Vec<u8>),
    /// A new membership; it takes effect as soon as it is appended to a log.
    Membership(Membership),
}

/// The members of a group. Lists are sorted and free of duplicates
/// ([`Membership::validate`]).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, Default)]

pub struct Membership {
    /// Voters of the (incoming) configuration.
    pub voters: Vec<NodeId>,
    /// Voters of the outgoing configuration while in joint consensus; empty
    /// otherwise. A decision needs a majority of `voters` and, when joint, of
    /// `outgoing` as well.
    pub outgoing: Vec<NodeId>,
    /// Members that receive the log but do not vote.
    pub learners: Vec<NodeId>,
}

/// Describes a snapshot: the state machine after applying every entry up to
/// `index`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, Default)]

pub struct SnapshotMeta {
    /// The group the snapshot belongs to.
    pub group: GroupId,
    /// The last log index the snapshot includes.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The membership as of `index`.
    pub membership: Membership,
    /// Length of the snapshot data in bytes.
    pub size: u64,
    /// CRC32C of the snapshot data.
    pub checksum: u32,
}

/// The state a member must persist before acting on it: its term and its vote.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]

pub struct HardState {
    /// The current term.
    pub term: Term,
    /// The candidate voted for in `term`, if any.
    pub vote: Option<NodeId>,
}
