//! What the nemesis asks of the leader besides faults: membership changes and
//! leadership transfers. The choice is a pure function of the membership in
//! force, the members that exist and a die, so it builds and is tested without
//! madsim.

use std::collections::BTreeSet;

use lockstep_core::{Membership, NodeId};
use lockstep_sim::dice::Dice;

/// The nemesis never leaves fewer voters than this, so that with at most one
/// member lost for good (the corrupted disk) a majority of the final voters is
/// alive when the cluster heals.
pub const VOTERS_MIN: usize = 3;

/// Most voters one change replaces at once.
pub const REPLACED_MAX: u64 = 3;

/// The kind of membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// A member outside the membership becomes a learner.
    AddLearner,
    /// A member outside the membership becomes a voter directly.
    AddVoter,
    /// A learner becomes a voter.
    Promote,
    /// A learner leaves.
    RemoveLearner,
    /// A voter other than the leader leaves (or becomes a learner).
    RemoveVoter,
    /// The leader leaves the voters (or becomes a learner): it must hand over.
    RemoveLeader,
    /// Several voters are swapped for learners or outsiders in one change (one
    /// joint configuration).
    Replace,
}

/// A membership change to request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What kind of change.
    pub change: Change,
    /// The voters asked for, sorted.
    pub voters: Vec<NodeId>,
    /// The learners asked for, sorted, none of them a voter.
    pub learners: Vec<NodeId>,
    /// Voters of the current membership that are not voters of the new one.
    pub voters_removed: usize,
}

impl Plan {
    /// True if `reply` is the membership this plan asked for, in force.
    pub fn matches(&self, reply: &Membership) -> bool {
        !reply.is_joint() && reply.voters == self.voters && reply.learners == self.learners
    }
}

fn pick(dice: &mut impl Dice, from: &[NodeId]) -> NodeId {
    from[dice.below(from.len() as u64) as usize]
}

/// The membership being built: voters and learners.
struct Draft {
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
}

impl Draft {
    /// A voter leaves; one time in three it stays on as a learner (a demotion).
    fn leave(&mut self, dice: &mut impl Dice, id: NodeId) {
        self.voters.remove(&id);
        if dice.below(3) == 0 {
            self.learners.insert(id);
        }
    }

    fn vote(&mut self, id: NodeId) {
        self.learners.remove(&id);
        self.voters.insert(id);
    }
}

/// Chooses a membership change from `current` (as the leader `leader` holds it).
/// `members` are every member that exists; `usable(id)` is false for members that
/// will never run again, which are never added. Returns `None` while `current`
/// is joint (the leader would refuse) or when nothing applies.
pub fn plan_membership_change(
    dice: &mut impl Dice,
    current: &Membership,
    leader: NodeId,
    members: &[NodeId],
    usable: impl Fn(NodeId) -> bool,
) -> Option<Plan> {
    if current.is_joint() {
        return None;
    }
    let outside: Vec<NodeId> = members.iter().copied().filter(|&id| !current.contains(id) && usable(id)).collect();
    let learners: Vec<NodeId> = current.learners.iter().copied().filter(|&id| usable(id)).collect();
    let candidates: Vec<NodeId> =
        outside.iter().chain(&learners).copied().collect::<BTreeSet<_>>().into_iter().collect();
    let others: Vec<NodeId> = current.voters.iter().copied().filter(|&id| id != leader).collect();
    let removable = current.voters.len() > VOTERS_MIN;
    let mut choices = Vec::new();
    if !outside.is_empty() {
        choices.extend([Change::AddLearner, Change::AddVoter]);
    }
    if !learners.is_empty() {
        choices.push(Change::Promote);
    }
    if !current.learners.is_empty() {
        choices.push(Change::RemoveLearner);
    }
    if removable && !others.is_empty() {
        choices.push(Change::RemoveVoter);
    }
    if removable && current.voters.contains(&leader) {
        choices.push(Change::RemoveLeader);
    }
    if !candidates.is_empty() {
        choices.push(Change::Replace);
    }
    if choices.is_empty() {
        return None;
    }
    let change = choices[dice.below(choices.len() as u64) as usize];
    let mut draft = Draft {
        voters: current.voters.iter().copied().collect(),
        learners: current.learners.iter().copied().collect(),
    };
    match change {
        Change::AddLearner => {
            draft.learners.insert(pick(dice, &outside));
        }
        Change::AddVoter => draft.vote(pick(dice, &outside)),
        Change::Promote => draft.vote(pick(dice, &learners)),
        Change::RemoveLearner => {
            draft.learners.remove(&pick(dice, &current.learners));
        }
        Change::RemoveVoter => {
            let id = pick(dice, &others);
            draft.leave(dice, id);
        }
        Change::RemoveLeader => draft.leave(dice, leader),
        Change::Replace => {
            let most = REPLACED_MAX.min(candidates.len() as u64).min(current.voters.len() as u64);
            let count = dice.between(1, most);
            let mut outgoing = current.voters.clone();
            let mut incoming = candidates;
            for _ in 0..count {
                let id = outgoing.remove(dice.below(outgoing.len() as u64) as usize);
                draft.leave(dice, id);
            }
            for _ in 0..count {
                let id = incoming.remove(dice.below(incoming.len() as u64) as usize);
                draft.vote(id);
            }
        }
    }
    let Draft { voters, learners } = draft;
    let learners: Vec<NodeId> = learners.into_iter().filter(|id| !voters.contains(id)).collect();
    let voters_removed = current.voters.iter().filter(|id| !voters.contains(id)).count();
    Some(Plan { change, voters: voters.into_iter().collect(), learners, voters_removed })
}

/// Chooses the voter to hand leadership to: any voter of `current` but the
/// leader (running or not: a transfer to a crashed member must fail cleanly).
pub fn plan_transfer(dice: &mut impl Dice, current: &Membership, leader: NodeId) -> Option<NodeId> {
    let voters: Vec<NodeId> = current.voters.iter().copied().filter(|&id| id != leader).collect();
    (!voters.is_empty()).then(|| pick(dice, &voters))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lockstep_sim::dice::SplitMix;

    use super::*;

    /// Random walks of changes keep every membership valid, never drop below
    /// the voter minimum, never add an unusable member, and reach every kind.
    #[test]
    fn random_walks_stay_valid_and_cover_every_change() {
        let members: Vec<NodeId> = (1..=8).collect();
        let dead = 4;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for seed in 0..200 {
            let mut dice = SplitMix(seed);
            let mut current = Membership::with_voters(1..=5);
            for _ in 0..50 {
                let leader = pick(&mut dice, &current.voters);
                let Some(plan) = plan_membership_change(&mut dice, &current, leader, &members, |id| id != dead) else {
                    continue;
                };
                *seen.entry(format!("{:?}", plan.change)).or_default() += 1;
                let next =
                    Membership { voters: plan.voters.clone(), outgoing: Vec::new(), learners: plan.learners.clone() };
                assert!(next.validate().is_ok(), "{plan:?}");
                assert!(plan.voters.len() >= VOTERS_MIN, "{plan:?} from {current:?}");
                let added: Vec<NodeId> = next.members().into_iter().filter(|id| !current.contains(*id)).collect();
                assert!(!added.contains(&dead), "{plan:?} adds the dead member");
                assert!(!next.voters.contains(&dead) || current.voters.contains(&dead), "{plan:?}");
                if plan.change == Change::RemoveLeader {
                    assert!(!plan.voters.contains(&leader));
                }
                assert!(plan.matches(&next));
                current = next;
            }
        }
        assert_eq!(seen.len(), 7, "every kind of change is chosen: {seen:?}");
    }

    #[test]
    fn no_change_while_joint() {
        let joint = Membership { voters: vec![1, 2, 3], outgoing: vec![1, 2, 4], learners: Vec::new() };
        assert_eq!(plan_membership_change(&mut SplitMix(1), &joint, 1, &[1, 2, 3, 4], |_| true), None);
    }

    #[test]
    fn transfers_go_to_another_voter() {
        let current = Membership { voters: vec![1, 2, 3], outgoing: Vec::new(), learners: vec![4] };
        for seed in 0..50 {
            let to = plan_transfer(&mut SplitMix(seed), &current, 2).expect("two other voters");
            assert!(to == 1 || to == 3);
        }
        assert_eq!(plan_transfer(&mut SplitMix(0), &Membership::with_voters([2]), 2), None);
    }
}
