//! Whose log a segment is: written into every segment header, checked on recovery.

use crate::types::{GroupId, NodeId};

/// The cluster, member and Raft group a WAL belongs to. Recovery refuses segments
/// written for another identity, so a data directory copied to the wrong member or
/// cluster stops the node instead of corrupting the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalIdentity {
    /// The cluster's id, chosen when the cluster was created.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: NodeId,
    /// The Raft group whose log this is.
    pub group_id: GroupId,
}

/// One field of a [`WalIdentity`], for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityField {
    /// [`WalIdentity::cluster_id`].
    Cluster,
    /// [`WalIdentity::member_id`].
    Member,
    /// [`WalIdentity::group_id`].
    Group,
}

impl std::fmt::Display for IdentityField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdentityField::Cluster => "cluster id",
            IdentityField::Member => "member id",
            IdentityField::Group => "group id",
        })
    }
}
