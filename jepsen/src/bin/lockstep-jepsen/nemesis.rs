//! The nemesis as pure functions: a seeded schedule of faults, and the
//! partitions ("grudges") and iptables rules they turn into. Executing them is
//! `run.rs`'s job.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::rng::Rng;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NemesisKind {
    /// SIGKILL a member, restart it at the heal.
    Kill,
    /// SIGSTOP a member, SIGCONT it at the heal.
    Pause,
    /// Drop traffic between members with iptables, flush the rules at the heal.
    Partition,
    /// Drop traffic in one direction only, flush the rules at the heal.
    Asymmetric,
    /// Jump a member's clocks (wall and monotonic, through libfaketime),
    /// jump them back at the heal.
    Clock,
    /// Fill a member's data file system (a small tmpfs), free it at the heal.
    Disk,
    /// Remove a member from the cluster (`lockstep cluster remove`), wipe it;
    /// at the heal it joins again as a new member (`serve --join`).
    Member,
}

impl NemesisKind {
    /// Every kind, for `--nemesis all`.
    pub const ALL: [NemesisKind; 7] = [
        NemesisKind::Kill,
        NemesisKind::Pause,
        NemesisKind::Partition,
        NemesisKind::Asymmetric,
        NemesisKind::Clock,
        NemesisKind::Disk,
        NemesisKind::Member,
    ];

    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::Partition => "partition",
            NemesisKind::Asymmetric => "asymmetric",
            NemesisKind::Clock => "clock",
            NemesisKind::Disk => "disk",
            NemesisKind::Member => "member",
        }
    }

    /// The inverse of [`NemesisKind::as_str`].
    pub fn from_name(name: &str) -> Option<NemesisKind> {
        NemesisKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Which member a kill or pause hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Whoever leads when the fault starts (a random member if none does).
    Leader,
    /// This member id.
    Member(u64),
}

/// The shape of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionKind {
    /// These members (the smaller half) against the rest.
    Halves(Vec<u64>),
    /// The leader alone against the rest.
    IsolateLeader,
    /// Each member reaches only its two neighbours in this ring order: with
    /// five members every member sees a majority, but no two majorities agree.
    Ring(Vec<u64>),
    /// One direction only: the leader hears nobody, everyone hears it (its
    /// heartbeats arrive, the answers do not).
    LeaderDeaf,
    /// One direction only: nobody hears the leader, it hears everyone.
    LeaderMute,
    /// One direction only: these members hear nobody outside their side,
    /// the others still hear them.
    DeafSide(Vec<u64>),
}

/// One fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, then restart.
    Kill(Target),
    /// SIGSTOP, then SIGCONT.
    Pause(Target),
    /// Drop traffic between members.
    Partition(PartitionKind),
    /// Offset a member's clocks by this many seconds (both directions), then
    /// set them back to real time.
    Clock(Target, i64),
    /// Fill a member's data file system, then free it.
    Disk(Target),
    /// Remove a member and wipe it, then let it join again under a new id.
    Member(Target),
}

impl Fault {
    /// The kind of this fault.
    pub fn kind(&self) -> NemesisKind {
        match self {
            Fault::Kill(_) => NemesisKind::Kill,
            Fault::Pause(_) => NemesisKind::Pause,
            Fault::Clock(..) => NemesisKind::Clock,
            Fault::Disk(_) => NemesisKind::Disk,
            Fault::Member(_) => NemesisKind::Member,
            Fault::Partition(PartitionKind::LeaderDeaf | PartitionKind::LeaderMute | PartitionKind::DeafSide(_)) => {
                NemesisKind::Asymmetric
            }
            Fault::Partition(_) => NemesisKind::Partition,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Leader => f.write_str("the leader"),
            Target::Member(id) => write!(f, "member {id}"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(target) => write!(f, "kill {target}"),
            Fault::Pause(target) => write!(f, "pause {target}"),
            Fault::Clock(target, offset_s) => write!(f, "clock of {target} jumps {offset_s:+} s"),
            Fault::Disk(target) => write!(f, "fill the disk of {target}"),
            Fault::Member(target) => write!(f, "remove {target} from the cluster"),
            Fault::Partition(PartitionKind::Halves(side)) => write!(f, "partition {side:?} from the rest"),
            Fault::Partition(PartitionKind::IsolateLeader) => f.write_str("partition the leader from the rest"),
            Fault::Partition(PartitionKind::Ring(order)) => write!(f, "partition into a ring {order:?}"),
            Fault::Partition(PartitionKind::LeaderDeaf) => f.write_str("one-way: the leader hears nobody"),
            Fault::Partition(PartitionKind::LeaderMute) => f.write_str("one-way: nobody hears the leader"),
            Fault::Partition(PartitionKind::DeafSide(side)) => {
                write!(f, "one-way: {side:?} hear nobody else, the rest hear them")
            }
        }
    }
}

/// A fault and when it starts and heals, relative to the start of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// When the fault starts.
    pub start: Duration,
    /// When it is healed.
    pub heal: Duration,
    /// What it is.
    pub fault: Fault,
}

/// The faults of a run: after a quiet `interval`, a fault lasting `interval`,
/// then `interval` of quiet, and so on while a whole fault fits in
/// `time_limit`. Kinds are drawn from `kinds`, targets from `1..=members`.
/// The same arguments give the same schedule.
pub fn schedule(
    seed: u64,
    kinds: &BTreeSet<NemesisKind>,
    members: u64,
    time_limit: Duration,
    interval: Duration,
) -> Vec<Step> {
    let kinds: Vec<NemesisKind> = kinds.iter().copied().collect();
    let mut steps = Vec::new();
    if kinds.is_empty() || members == 0 || interval.is_zero() {
        return steps;
    }
    let mut rng = Rng::new(seed ^ 0x6E65_6D65_7369_7321);
    let mut start = interval;
    while start + interval <= time_limit {
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let fault = match kind {
            NemesisKind::Kill => Fault::Kill(target(&mut rng, members)),
            NemesisKind::Pause => Fault::Pause(target(&mut rng, members)),
            NemesisKind::Partition => Fault::Partition(partition(&mut rng, members)),
            NemesisKind::Asymmetric => Fault::Partition(asymmetric(&mut rng, members)),
            NemesisKind::Clock => {
                let target = target(&mut rng, members);
                Fault::Clock(target, CLOCK_JUMPS_S[rng.below(CLOCK_JUMPS_S.len() as u64) as usize])
            }
            NemesisKind::Disk => Fault::Disk(target(&mut rng, members)),
            NemesisKind::Member => Fault::Member(target(&mut rng, members)),
        };
        steps.push(Step { start, heal: start + interval, fault });
        start += interval * 2;
    }
    steps
}

fn target(rng: &mut Rng, members: u64) -> Target {
    if rng.below(2) == 0 {
        Target::Leader
    } else {
        Target::Member(1 + rng.below(members))
    }
}

fn partition(rng: &mut Rng, members: u64) -> PartitionKind {
    let mut ids: Vec<u64> = (1..=members).collect();
    rng.shuffle(&mut ids);
    match rng.below(3) {
        0 => {
            let mut side: Vec<u64> = ids[..(members / 2).max(1) as usize].to_vec();
            side.sort_unstable();
            PartitionKind::Halves(side)
        }
        1 => PartitionKind::IsolateLeader,
        _ => PartitionKind::Ring(ids),
    }
}

/// The clock jumps the clock nemesis draws from, seconds: small and large,
/// forward and back (each jumps the other way at the heal).
pub const CLOCK_JUMPS_S: [i64; 6] = [-60, -10, -2, 2, 10, 60];

/// The libfaketime setting of a clock offset: `+10`, `-60`, `+0`.
pub fn faketime_offset(offset_s: i64) -> String {
    format!("{offset_s:+}\n")
}

fn asymmetric(rng: &mut Rng, members: u64) -> PartitionKind {
    match rng.below(3) {
        0 => PartitionKind::LeaderDeaf,
        1 => PartitionKind::LeaderMute,
        _ => {
            let mut ids: Vec<u64> = (1..=members).collect();
            rng.shuffle(&mut ids);
            let mut side: Vec<u64> = ids[..(members / 2).max(1) as usize].to_vec();
            side.sort_unstable();
            PartitionKind::DeafSide(side)
        }
    }
}

/// For each member, the members whose traffic it drops. The grudges of
/// `Halves`, `IsolateLeader` and `Ring` are symmetric; those of `LeaderDeaf`,
/// `LeaderMute` and `DeafSide` one-way. `leader` picks the member of
/// `IsolateLeader`, `LeaderDeaf` and `LeaderMute` (the first member when
/// there is no leader).
pub fn grudge(kind: &PartitionKind, members: &[u64], leader: Option<u64>) -> BTreeMap<u64, BTreeSet<u64>> {
    let split = |side: &BTreeSet<u64>| -> BTreeMap<u64, BTreeSet<u64>> {
        let rest: BTreeSet<u64> = members.iter().copied().filter(|id| !side.contains(id)).collect();
        members.iter().map(|id| (*id, if side.contains(id) { rest.clone() } else { side.clone() })).collect()
    };
    let leader = leader.filter(|id| members.contains(id)).or_else(|| members.first().copied());
    let others = |id: u64| -> BTreeSet<u64> { members.iter().copied().filter(|other| *other != id).collect() };
    match kind {
        PartitionKind::Halves(side) => split(&side.iter().copied().collect()),
        PartitionKind::LeaderDeaf => leader.map(|id| (id, others(id))).into_iter().collect(),
        PartitionKind::LeaderMute => {
            members.iter().filter(|id| Some(**id) != leader).map(|id| (*id, leader.into_iter().collect())).collect()
        }
        PartitionKind::DeafSide(side) => {
            let side: BTreeSet<u64> = side.iter().copied().collect();
            let rest: BTreeSet<u64> = members.iter().copied().filter(|id| !side.contains(id)).collect();
            side.iter().map(|id| (*id, rest.clone())).collect()
        }
        PartitionKind::IsolateLeader => split(&leader.into_iter().collect()),
        PartitionKind::Ring(order) => {
            let n = order.len();
            let mut grudges = BTreeMap::new();
            for (index, id) in order.iter().enumerate() {
                let neighbours = [order[(index + 1) % n], order[(index + n - 1) % n]];
                let dropped =
                    order.iter().copied().filter(|other| other != id && !neighbours.contains(other)).collect();
                grudges.insert(*id, dropped);
            }
            grudges
        }
    }
}

/// The iptables arguments that put `grudge` in place, per member: one
/// `INPUT` DROP rule per peer whose traffic it drops. Run inside the member's
/// network namespace. Clients (from the bridge address) are never dropped.
pub fn iptables_rules(
    grudge: &BTreeMap<u64, BTreeSet<u64>>,
    member_ip: impl Fn(u64) -> String,
) -> Vec<(u64, Vec<String>)> {
    let mut rules = Vec::new();
    for (member, dropped) in grudge {
        for peer in dropped {
            let args = ["-w", "-A", "INPUT", "-s", &member_ip(*peer), "-j", "DROP"];
            rules.push((*member, args.iter().map(|arg| (*arg).to_owned()).collect()));
        }
    }
    rules
}

/// The iptables arguments that heal every partition of a member.
pub fn iptables_heal() -> Vec<String> {
    ["-w", "-F", "INPUT"].iter().map(|arg| (*arg).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> BTreeSet<NemesisKind> {
        NemesisKind::ALL.into_iter().collect()
    }

    #[test]
    fn schedule_is_reproducible_and_alternates() {
        let a = schedule(7, &all(), 5, Duration::from_secs(60), Duration::from_secs(5));
        let b = schedule(7, &all(), 5, Duration::from_secs(60), Duration::from_secs(5));
        let c = schedule(8, &all(), 5, Duration::from_secs(60), Duration::from_secs(5));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Faults at 5, 15, ..., 55 s, each healed 5 s later, none past the limit.
        assert_eq!(a.len(), 6);
        for (index, step) in a.iter().enumerate() {
            assert_eq!(step.start, Duration::from_secs(5 + 10 * index as u64));
            assert_eq!(step.heal, step.start + Duration::from_secs(5));
            assert!(step.heal <= Duration::from_secs(60));
        }
    }

    #[test]
    fn schedule_uses_only_chosen_kinds_and_valid_members() {
        let kinds: BTreeSet<NemesisKind> = [NemesisKind::Kill].into_iter().collect();
        let steps = schedule(3, &kinds, 3, Duration::from_secs(600), Duration::from_secs(5));
        assert_eq!(steps.len(), 60);
        for step in &steps {
            match step.fault {
                Fault::Kill(Target::Leader) => {}
                Fault::Kill(Target::Member(id)) => assert!((1..=3).contains(&id)),
                ref other => panic!("unexpected {other:?}"),
            }
        }
        let every = schedule(3, &all(), 5, Duration::from_secs(600), Duration::from_secs(5));
        for kind in NemesisKind::ALL {
            assert!(every.iter().any(|step| step.fault.kind() == kind), "{kind:?} never drawn");
        }
        assert!(schedule(3, &BTreeSet::new(), 5, Duration::from_secs(60), Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn halves_and_isolated_leader() {
        let members = [1, 2, 3, 4, 5];
        let g = grudge(&PartitionKind::Halves(vec![2, 4]), &members, None);
        assert_eq!(g[&2], [1, 3, 5].into_iter().collect());
        assert_eq!(g[&1], [2, 4].into_iter().collect());
        let g = grudge(&PartitionKind::IsolateLeader, &members, Some(3));
        assert_eq!(g[&3], [1, 2, 4, 5].into_iter().collect());
        assert_eq!(g[&5], [3].into_iter().collect());
        let g = grudge(&PartitionKind::IsolateLeader, &members, None);
        assert_eq!(g[&1].len(), 4);
    }

    #[test]
    fn ring_gives_everyone_a_majority_and_is_symmetric() {
        let order = vec![3, 1, 5, 2, 4];
        let g = grudge(&PartitionKind::Ring(order), &[1, 2, 3, 4, 5], None);
        for (member, dropped) in &g {
            assert_eq!(dropped.len(), 2, "member {member} sees itself and two neighbours");
            for other in dropped {
                assert!(g[other].contains(member), "grudge {member}->{other} is not symmetric");
            }
        }
        // 3's neighbours are 4 and 1.
        assert_eq!(g[&3], [2, 5].into_iter().collect());
    }

    #[test]
    fn one_way_partitions_cut_one_direction() {
        let members = [1, 2, 3, 4, 5];
        let g = grudge(&PartitionKind::LeaderDeaf, &members, Some(2));
        assert_eq!(g, [(2, [1, 3, 4, 5].into_iter().collect())].into_iter().collect());
        let g = grudge(&PartitionKind::LeaderMute, &members, Some(2));
        assert_eq!(g.len(), 4);
        assert!(g.values().all(|dropped| *dropped == [2].into_iter().collect()));
        assert!(!g.contains_key(&2), "the leader still hears everyone");
        let g = grudge(&PartitionKind::DeafSide(vec![1, 4]), &members, None);
        assert_eq!(g.keys().copied().collect::<Vec<_>>(), [1, 4]);
        assert_eq!(g[&4], [2, 3, 5].into_iter().collect());
        for (member, dropped) in &g {
            for other in dropped {
                assert!(!g.get(other).is_some_and(|theirs| theirs.contains(member)), "{member}<->{other} is two-way");
            }
        }
        let kinds: BTreeSet<NemesisKind> = [NemesisKind::Asymmetric].into_iter().collect();
        let steps = schedule(9, &kinds, 5, Duration::from_secs(600), Duration::from_secs(5));
        assert!(steps.iter().all(|step| step.fault.kind() == NemesisKind::Asymmetric));
        for shape in ["hears nobody", "nobody hears", "hear nobody else"] {
            assert!(steps.iter().any(|step| step.fault.to_string().contains(shape)), "{shape} never drawn");
        }
    }

    #[test]
    fn clock_faults_jump_both_ways() {
        let kinds: BTreeSet<NemesisKind> = [NemesisKind::Clock].into_iter().collect();
        let steps = schedule(5, &kinds, 5, Duration::from_secs(600), Duration::from_secs(5));
        let jumps: BTreeSet<i64> = steps
            .iter()
            .map(|step| match step.fault {
                Fault::Clock(_, offset_s) => offset_s,
                ref other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(jumps, CLOCK_JUMPS_S.into_iter().collect());
        assert_eq!(faketime_offset(10), "+10\n");
        assert_eq!(faketime_offset(-60), "-60\n");
        assert_eq!(faketime_offset(0), "+0\n");
        assert_eq!(Fault::Clock(Target::Member(2), -10).to_string(), "clock of member 2 jumps -10 s");
    }

    #[test]
    fn iptables_rules_drop_input_from_each_grudged_peer() {
        let g = grudge(&PartitionKind::Halves(vec![1]), &[1, 2, 3], None);
        let rules = iptables_rules(&g, |id| format!("10.77.5.{id}"));
        let text: Vec<String> = rules.iter().map(|(member, args)| format!("{member}: {}", args.join(" "))).collect();
        assert_eq!(
            text,
            [
                "1: -w -A INPUT -s 10.77.5.2 -j DROP",
                "1: -w -A INPUT -s 10.77.5.3 -j DROP",
                "2: -w -A INPUT -s 10.77.5.1 -j DROP",
                "3: -w -A INPUT -s 10.77.5.1 -j DROP",
            ]
        );
        assert_eq!(iptables_heal().join(" "), "-w -F INPUT");
    }
}
