//! Quorum arithmetic over a (possibly joint) membership.

use std::collections::BTreeSet;

use super::message::Membership;
use crate::types::{LogIndex, NodeId};

/// Why a membership is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipError {
    /// A list is not strictly increasing, or contains the reserved id 0.
    Unsorted,
    /// A member is both a learner and an incoming voter.
    LearnerIsVoter(NodeId),
    /// The incoming configuration has no voter.
    NoVoters,
}

impl std::fmt::Display for MembershipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MembershipError::Unsorted => write!(f, "member lists must be sorted, unique and non-zero"),
            MembershipError::LearnerIsVoter(id) => write!(f, "member {id} is both a learner and a voter"),
            MembershipError::NoVoters => write!(f, "a membership needs at least one voter"),
        }
    }
}

fn strictly_increasing(ids: &[NodeId]) -> bool {
    ids.iter().all(|&id| id != 0) && ids.windows(2).all(|w| w[0] < w[1])
}

/// The outcome of counting votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    /// A quorum granted.
    Won,
    /// A quorum can no longer grant.
    Lost,
    /// Not decided yet.
    Pending,
}

impl Membership {
    /// A simple (non-joint) membership of `voters` with no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        let voters: BTreeSet<NodeId> = voters.into_iter().collect();
        Membership { voters: voters.into_iter().collect(), outgoing: Vec::new(), learners: Vec::new() }
    }

    /// Checks the structural rules; memberships decoded from the wire must pass it
    /// before they are used.
    pub fn validate(&self) -> Result<(), MembershipError> {
        if !strictly_increasing(&self.voters)
            || !strictly_increasing(&self.outgoing)
            || !strictly_increasing(&self.learners)
        {
            return Err(MembershipError::Unsorted);
        }
        if self.voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        if let Some(&id) = self.learners.iter().find(|id| self.voters.binary_search(id).is_ok()) {
            return Err(MembershipError::LearnerIsVoter(id));
        }
        Ok(())
    }

    /// True while in joint consensus.
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// True if `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok() || self.outgoing.binary_search(&id).is_ok()
    }

    /// True if `id` is a learner and not a voter of either half.
    pub fn is_learner(&self, id: NodeId) -> bool {
        !self.is_voter(id) && self.learners.binary_search(&id).is_ok()
    }

    /// True if `id` is a member in any role.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.binary_search(&id).is_ok()
    }

    /// Every member in any role, sorted.
    pub fn members(&self) -> Vec<NodeId> {
        let all: BTreeSet<NodeId> = self.voters.iter().chain(&self.outgoing).chain(&self.learners).copied().collect();
        all.into_iter().collect()
    }

    /// Counts votes: `vote(id)` is `Some(granted)` for members that answered.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let incoming = majority_vote(&self.voters, &vote);
        if !self.is_joint() {
            return incoming;
        }
        let outgoing = majority_vote(&self.outgoing, &vote);
        match (incoming, outgoing) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// True if the members for which `acked(id)` holds form a quorum.
    pub fn has_quorum(&self, acked: impl Fn(NodeId) -> bool) -> bool {
        self.vote_result(|id| Some(acked(id))) == VoteResult::Won
    }

    /// The highest index that a quorum has reached, given each voter's index.
    pub fn committed_index(&self, matched: impl Fn(NodeId) -> LogIndex) -> LogIndex {
        let incoming = majority_index(&self.voters, &matched);
        if !self.is_joint() {
            return incoming;
        }
        incoming.min(majority_index(&self.outgoing, &matched))
    }
}

fn majority_vote(voters: &[NodeId], vote: &impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    if voters.is_empty() {
        // An empty half never blocks a decision (only reachable for `outgoing`).
        return VoteResult::Won;
    }
    let quorum = voters.len() / 2 + 1;
    let granted = voters.iter().filter(|&&id| vote(id) == Some(true)).count();
    let missing = voters.iter().filter(|&&id| vote(id).is_none()).count();
    if granted >= quorum {
        VoteResult::Won
    } else if granted + missing >= quorum {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

fn majority_index(voters: &[NodeId], matched: &impl Fn(NodeId) -> LogIndex) -> LogIndex {
    if voters.is_empty() {
        return LogIndex::MAX;
    }
    let mut indexes: Vec<LogIndex> = voters.iter().map(|&id| matched(id)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[voters.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joint(voters: &[NodeId], outgoing: &[NodeId]) -> Membership {
        Membership { voters: voters.to_vec(), outgoing: outgoing.to_vec(), learners: vec![] }
    }

    #[test]
    fn majority_commit_index() {
        let m = Membership::with_voters([1, 2, 3]);
        let matched = |id| [0, 5, 7, 3][id as usize];
        assert_eq!(m.committed_index(matched), 5);
        let m = Membership::with_voters([1, 2, 3, 4]);
        let matched = |id| [0, 5, 7, 3, 9][id as usize];
        assert_eq!(m.committed_index(matched), 5);
    }

    #[test]
    fn joint_commit_needs_both_halves() {
        let m = joint(&[4, 5, 6], &[1, 2, 3]);
        let matched = |id| [0, 9, 9, 9, 1, 1, 9][id as usize];
        assert_eq!(m.committed_index(matched), 1);
        let matched = |id| [0, 9, 9, 1, 8, 8, 1][id as usize];
        assert_eq!(m.committed_index(matched), 8);
    }

    #[test]
    fn votes_in_joint_consensus() {
        let m = joint(&[3, 4, 5], &[1, 2, 3]);
        let won = |id| Some([0, 1, 1, 1, 1, 0][id as usize] == 1);
        assert_eq!(m.vote_result(won), VoteResult::Won);
        let lost = |id| Some([0, 1, 1, 0, 0, 0][id as usize] == 1);
        assert_eq!(m.vote_result(lost), VoteResult::Lost);
        let pending = |id: NodeId| if id <= 2 { Some(true) } else { None };
        assert_eq!(m.vote_result(pending), VoteResult::Pending);
    }

    #[test]
    fn validate_rejects_bad_lists() {
        assert_eq!(Membership::with_voters([1, 2]).validate(), Ok(()));
        let bad = Membership { voters: vec![2, 1], outgoing: vec![], learners: vec![] };
        assert_eq!(bad.validate(), Err(MembershipError::Unsorted));
        let bad = Membership { voters: vec![1], outgoing: vec![], learners: vec![1] };
        assert_eq!(bad.validate(), Err(MembershipError::LearnerIsVoter(1)));
        let bad = Membership::default();
        assert_eq!(bad.validate(), Err(MembershipError::NoVoters));
        let bad = Membership { voters: vec![0, 1], outgoing: vec![], learners: vec![] };
        assert_eq!(bad.validate(), Err(MembershipError::Unsorted));
    }
}
