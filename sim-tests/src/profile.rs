//! Fault profiles: which faults a run injects, how often, and how bad the network,
//! disks and clocks are. Pure data, so it builds without madsim.

use std::fmt;
use std::str::FromStr;

/// A named set of faults for `simulate --faults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultProfile {
    /// A healthy cluster: latency only.
    None,
    /// Partitions (symmetric, one-way, leader isolation), clogged links, loss,
    /// duplication, corruption and latency spikes.
    Network,
    /// Crashes and restarts (leader and others), pauses.
    Crash,
    /// Crashes with torn writes, slow and erratic fsyncs, failed fsyncs, full
    /// disks, one member's durable data corrupted (it must refuse to start).
    Disk,
    /// Clock offsets, drift up to ±5% and forward jumps, with some partitions.
    Clock,
    /// Everything above at moderate rates.
    All,
    /// Very frequent crashes that lose every unsynced write, with slow fsyncs:
    /// catches votes or acks sent before they are durable.
    CrashHeavy,
    /// Leader isolation and leader pauses under a read-heavy load: catches reads
    /// served by a deposed leader.
    PartitionReads,
    /// Crashes and partitions that strand entries of old terms on a minority:
    /// the Figure 8 situation.
    Churn,
    /// Membership changes (learners added and promoted, voters removed, the
    /// leader included, several voters replaced at once) among crashes,
    /// partitions and pauses, with three spare members that start empty.
    Membership,
    /// Frequent leadership transfers among partitions, clogs, pauses and crashes.
    Transfer,
    /// Lease reads (`Config::lease_reads`) with clock drift inside the bound the
    /// lease tolerates, under leader isolation, pauses, transfers and a read-heavy
    /// load.
    Leases,
    /// Lease reads with transfers to paused or clogged targets: a TimeoutNow
    /// that arrives after its transfer was abandoned still elects its target
    /// past the voters' leader stickiness; the old leader must not hold a lease
    /// again in that term (a core bug, fixed; see docs/simulation.md).
    LeaseTransferRace,
    /// Scripted episodes that steer the cluster into the Figure 8 situation of
    /// the Raft paper (see `figure8.rs`): an old-term entry on a majority while
    /// the leader's own term has nothing there, then a leader that overwrites it.
    Figure8,
}

impl FaultProfile {
    /// Every profile, in CLI order.
    pub const ALL: [FaultProfile; 14] = [
        FaultProfile::None,
        FaultProfile::Network,
        FaultProfile::Crash,
        FaultProfile::Disk,
        FaultProfile::Clock,
        FaultProfile::All,
        FaultProfile::CrashHeavy,
        FaultProfile::PartitionReads,
        FaultProfile::Churn,
        FaultProfile::Membership,
        FaultProfile::Transfer,
        FaultProfile::Leases,
        FaultProfile::LeaseTransferRace,
        FaultProfile::Figure8,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            FaultProfile::None => "none",
            FaultProfile::Network => "network",
            FaultProfile::Crash => "crash",
            FaultProfile::Disk => "disk",
            FaultProfile::Clock => "clock",
            FaultProfile::All => "all",
            FaultProfile::CrashHeavy => "crash-heavy",
            FaultProfile::PartitionReads => "partition-reads",
            FaultProfile::Churn => "churn",
            FaultProfile::Membership => "membership",
            FaultProfile::Transfer => "transfer",
            FaultProfile::Leases => "leases",
            FaultProfile::LeaseTransferRace => "lease-transfer-race",
            FaultProfile::Figure8 => "figure8",
        }
    }

    /// The profile a planted bug is best caught with.
    pub fn for_mutation(name: &str) -> FaultProfile {
        match name {
            "vote-before-persist" => FaultProfile::CrashHeavy,
            "read-without-quorum" => FaultProfile::PartitionReads,
            "vote-ignores-log" => FaultProfile::Churn,
            "commit-old-term" => FaultProfile::Figure8,
            _ => FaultProfile::All,
        }
    }
}

impl fmt::Display for FaultProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultProfile, String> {
        FaultProfile::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<_> = FaultProfile::ALL.iter().map(|p| p.name()).collect();
            format!("unknown fault profile {s:?}; one of {}", names.join(", "))
        })
    }
}

/// One kind of fault the nemesis can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Split the members in two random groups.
    PartitionRandom,
    /// Cut the leader off from everyone.
    IsolateLeader,
    /// Block a few random links in one direction.
    OneWay,
    /// Hold the messages of a random link for a while.
    Clog,
    /// Remove every partition, block and clog.
    Heal,
    /// Crash a random member; restart it later.
    Crash,
    /// Crash the leader; restart it later.
    CrashLeader,
    /// Pause a random member; resume it later.
    Pause,
    /// Pause the leader; resume it later.
    PauseLeader,
    /// Jump a random member's clock forward.
    ClockJump,
    /// Change a random member's drift.
    Drift,
    /// Corrupt one durable record of a random member and crash it (once per run).
    CorruptAndCrash,
    /// Fill a random member's disk: its next write fails and stops it; it restarts
    /// shortly after, with space freed.
    DiskFull,
    /// Ask the leader for a membership change (add or remove a learner, add,
    /// promote or remove a voter, the leader included, or replace several voters
    /// at once); never below three voters.
    ChangeMembership,
    /// Ask the leader to hand leadership to another voter.
    TransferLeader,
    /// Run a scripted Figure 8 episode (see `figure8.rs`): crashes and
    /// partitions aimed so that a majority holds an entry of an old term while
    /// the leader's own term has none there, then a leader of a later term
    /// overwrites it.
    Figure8,
}

/// Everything a profile decides.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSpec {
    /// Faults with weights.
    pub faults: Vec<(Fault, u32)>,
    /// Time between faults, ms.
    pub interval_ms: (u64, u64),
    /// How long a crashed or paused member stays down, ms.
    pub down_ms: (u64, u64),
    /// Message loss, duplication and corruption, ppm.
    pub loss_ppm: u32,
    /// Duplication, ppm.
    pub duplicate_ppm: u32,
    /// Corruption, ppm.
    pub corrupt_ppm: u32,
    /// Latency spikes, ppm.
    pub spike_ppm: u32,
    /// Fsync latency range, µs.
    pub fsync_us: (u64, u64),
    /// Slow fsync outliers, ppm.
    pub fsync_slow_ppm: u32,
    /// Failed fsyncs (the member stops at once and restarts shortly after), ppm of fsyncs.
    pub fsync_error_ppm: u32,
    /// Torn writes at crash, ppm.
    pub torn_write_ppm: u32,
    /// Whether a random prefix of unsynced writes survives a crash.
    pub keep_unsynced_prefix: bool,
    /// Largest clock drift, ppm.
    pub drift_ppm_max: i64,
    /// Fraction of client operations that are reads, percent.
    pub read_percent: u64,
    /// One-way message latency range, µs.
    pub latency_us: (u64, u64),
    /// Crash points after granted votes, ppm (see `ClusterConfig`).
    pub crash_after_vote_ppm: u32,
    /// Crash points right after becoming leader, ppm.
    pub crash_after_elected_ppm: u32,
    /// Crash points right after a leader's commit index advances, ppm.
    pub crash_after_commit_ppm: u32,
    /// Longest delay from a crash point to the crash, µs.
    pub crash_point_delay_us: u64,
    /// Core's `append_bytes_max` (small values send one entry per message, which
    /// stretches catch-up over many round trips).
    pub append_bytes_max: Option<u64>,
    /// Core's `inflight_msgs_max`.
    pub inflight_msgs_max: Option<u32>,
    /// Core's `election_timeout_ms` (the heartbeat interval is set to a sixth of it).
    pub election_timeout_ms: Option<u64>,
    /// Members started empty with `Node::join` beside the initial voters, for
    /// membership changes to add (ids after the voters').
    pub spare_members: u64,
    /// Percentage of seeds that run with `Config::lease_reads` on. Such seeds
    /// jump only the leader's clock (a forward jump of a follower's clock would
    /// break the lease's assumption), so the drift bound below must hold.
    pub lease_reads_percent: u64,
    /// Core's `clock_drift_max_ms` for lease reads: the lease is safe while any
    /// two clocks drift apart by less than this over one election timeout, that
    /// is while `2 * drift_ppm_max * election_timeout_ms / 1e6` stays below it.
    pub clock_drift_max_ms: u64,
}

impl ProfileSpec {
    /// True if the nemesis of this profile injects `fault`.
    pub fn injects(&self, fault: Fault) -> bool {
        self.faults.iter().any(|(f, w)| *f == fault && *w > 0)
    }

    /// The election timeout the members run with, ms.
    pub fn election_timeout_ms(&self) -> u64 {
        self.election_timeout_ms.unwrap_or(ELECTION_TIMEOUT_MS_DEFAULT)
    }

    /// True if lease reads are safe under this profile's clocks: the largest
    /// drift between two members over one election timeout stays below
    /// `clock_drift_max_ms`.
    pub fn lease_drift_within_bound(&self) -> bool {
        let drift_ms_per_timeout = 2 * self.drift_ppm_max.unsigned_abs() * self.election_timeout_ms() / 1_000_000;
        drift_ms_per_timeout < self.clock_drift_max_ms && self.clock_drift_max_ms < self.election_timeout_ms()
    }
}

/// Core's default election timeout (`Config::new`), ms.
pub const ELECTION_TIMEOUT_MS_DEFAULT: u64 = 1_000;

impl FaultProfile {
    /// What the profile does.
    pub fn spec(self) -> ProfileSpec {
        use Fault::*;
        let base = ProfileSpec {
            faults: Vec::new(),
            interval_ms: (500, 3_000),
            down_ms: (100, 3_000),
            loss_ppm: 0,
            duplicate_ppm: 0,
            corrupt_ppm: 0,
            spike_ppm: 0,
            fsync_us: (200, 3_000),
            fsync_slow_ppm: 0,
            fsync_error_ppm: 0,
            torn_write_ppm: 0,
            keep_unsynced_prefix: true,
            drift_ppm_max: 1_000,
            read_percent: 40,
            latency_us: (200, 3_000),
            crash_after_vote_ppm: 0,
            crash_after_elected_ppm: 0,
            crash_after_commit_ppm: 0,
            crash_point_delay_us: 20_000,
            append_bytes_max: None,
            inflight_msgs_max: None,
            election_timeout_ms: None,
            spare_members: 0,
            lease_reads_percent: 0,
            clock_drift_max_ms: 100,
        };
        match self {
            FaultProfile::None => base,
            FaultProfile::Network => ProfileSpec {
                faults: vec![(PartitionRandom, 3), (IsolateLeader, 2), (OneWay, 2), (Clog, 2), (Heal, 4)],
                loss_ppm: 20_000,
                duplicate_ppm: 20_000,
                corrupt_ppm: 10_000,
                spike_ppm: 10_000,
                ..base
            },
            FaultProfile::Crash => ProfileSpec {
                faults: vec![(Crash, 3), (CrashLeader, 2), (Pause, 2), (PauseLeader, 1)],
                interval_ms: (300, 2_000),
                ..base
            },
            FaultProfile::Disk => ProfileSpec {
                faults: vec![(Crash, 3), (CrashLeader, 2), (CorruptAndCrash, 1), (DiskFull, 1)],
                interval_ms: (300, 2_000),
                fsync_us: (1_000, 20_000),
                fsync_slow_ppm: 20_000,
                fsync_error_ppm: 300,
                torn_write_ppm: 500_000,
                ..base
            },
            FaultProfile::Clock => ProfileSpec {
                faults: vec![(ClockJump, 3), (Drift, 2), (PartitionRandom, 1), (Heal, 1), (CrashLeader, 1)],
                drift_ppm_max: 50_000,
                ..base
            },
            FaultProfile::All => ProfileSpec {
                faults: vec![
                    (PartitionRandom, 2),
                    (IsolateLeader, 2),
                    (OneWay, 1),
                    (Clog, 1),
                    (Heal, 4),
                    (Crash, 2),
                    (CrashLeader, 2),
                    (Pause, 1),
                    (PauseLeader, 1),
                    (ClockJump, 1),
                    (Drift, 1),
                    (CorruptAndCrash, 1),
                    (DiskFull, 1),
                    (ChangeMembership, 3),
                    (TransferLeader, 1),
                ],
                interval_ms: (200, 2_000),
                loss_ppm: 10_000,
                duplicate_ppm: 10_000,
                corrupt_ppm: 5_000,
                spike_ppm: 5_000,
                fsync_us: (500, 10_000),
                fsync_slow_ppm: 10_000,
                fsync_error_ppm: 100,
                torn_write_ppm: 300_000,
                drift_ppm_max: 10_000,
                spare_members: 2,
                lease_reads_percent: 50,
                ..base
            },
            FaultProfile::CrashHeavy => ProfileSpec {
                faults: vec![(Crash, 4), (CrashLeader, 3), (PartitionRandom, 1), (Heal, 2)],
                interval_ms: (50, 400),
                down_ms: (20, 400),
                fsync_us: (2_000, 20_000),
                keep_unsynced_prefix: false,
                latency_us: (1_000, 30_000),
                spike_ppm: 50_000,
                duplicate_ppm: 30_000,
                crash_after_vote_ppm: 300_000,
                ..base
            },
            FaultProfile::PartitionReads => ProfileSpec {
                faults: vec![(IsolateLeader, 3), (PauseLeader, 3), (Heal, 3)],
                interval_ms: (500, 3_000),
                down_ms: (1_500, 5_000),
                read_percent: 70,
                ..base
            },
            FaultProfile::Churn => ProfileSpec {
                faults: vec![
                    (PartitionRandom, 3),
                    (IsolateLeader, 3),
                    (Heal, 3),
                    (CrashLeader, 3),
                    (Crash, 2),
                    (Pause, 1),
                ],
                interval_ms: (100, 1_200),
                down_ms: (100, 2_500),
                loss_ppm: 20_000,
                latency_us: (1_000, 20_000),
                append_bytes_max: Some(1),
                inflight_msgs_max: Some(2),
                crash_after_elected_ppm: 300_000,
                crash_point_delay_us: 30_000,
                ..base
            },
            FaultProfile::Membership => ProfileSpec {
                faults: vec![
                    (ChangeMembership, 6),
                    (TransferLeader, 1),
                    (PartitionRandom, 1),
                    (IsolateLeader, 1),
                    (Heal, 3),
                    (Crash, 2),
                    (CrashLeader, 2),
                    (Pause, 1),
                ],
                interval_ms: (200, 1_500),
                down_ms: (100, 2_000),
                loss_ppm: 5_000,
                duplicate_ppm: 5_000,
                spare_members: 3,
                crash_after_elected_ppm: 50_000,
                ..base
            },
            FaultProfile::Transfer => ProfileSpec {
                faults: vec![
                    (TransferLeader, 6),
                    (PartitionRandom, 1),
                    (IsolateLeader, 1),
                    (Clog, 2),
                    (Heal, 3),
                    (Crash, 1),
                    (CrashLeader, 1),
                    (Pause, 1),
                    (PauseLeader, 1),
                ],
                interval_ms: (200, 1_500),
                down_ms: (100, 2_000),
                duplicate_ppm: 20_000,
                spike_ppm: 10_000,
                ..base
            },
            FaultProfile::Leases => ProfileSpec {
                faults: vec![
                    (IsolateLeader, 3),
                    (PauseLeader, 3),
                    (PartitionRandom, 1),
                    (OneWay, 1),
                    (Clog, 1),
                    (Heal, 4),
                    (TransferLeader, 2),
                    (CrashLeader, 1),
                    (Crash, 1),
                    (Drift, 2),
                    (ClockJump, 1),
                ],
                interval_ms: (300, 2_500),
                down_ms: (300, 3_000),
                duplicate_ppm: 10_000,
                spike_ppm: 10_000,
                drift_ppm_max: 20_000,
                read_percent: 70,
                lease_reads_percent: 100,
                clock_drift_max_ms: 100,
                ..base
            },
            FaultProfile::LeaseTransferRace => ProfileSpec {
                faults: vec![
                    (IsolateLeader, 3),
                    (PauseLeader, 3),
                    (PartitionRandom, 1),
                    (OneWay, 1),
                    (Clog, 1),
                    (Heal, 4),
                    (TransferLeader, 4),
                    // Pauses of random members and more clogs: a transfer target
                    // that is paused or cut off gets its TimeoutNow late.
                    (Pause, 4),
                    (Clog, 2),
                    (Drift, 1),
                ],
                interval_ms: (150, 1_000),
                ..FaultProfile::Leases.spec()
            },
            FaultProfile::Figure8 => ProfileSpec {
                // Episodes, with a few ordinary faults between them.
                faults: vec![(Figure8, 6), (IsolateLeader, 1), (CrashLeader, 1), (Heal, 1)],
                interval_ms: (100, 1_000),
                down_ms: (100, 1_000),
                latency_us: (1_000, 10_000),
                // One entry per append message and at most two in flight (as in
                // `churn`), so that an old entry is acknowledged before the
                // leader's own.
                append_bytes_max: Some(1),
                inflight_msgs_max: Some(2),
                // Shorter elections: an episode has three.
                election_timeout_ms: Some(500),
                ..base
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for profile in FaultProfile::ALL {
            assert_eq!(profile.name().parse::<FaultProfile>(), Ok(profile));
        }
        assert!("bogus".parse::<FaultProfile>().is_err());
    }

    #[test]
    fn lease_profiles_keep_drift_within_the_bound() {
        for profile in FaultProfile::ALL {
            let spec = profile.spec();
            if spec.lease_reads_percent > 0 {
                assert!(spec.lease_drift_within_bound(), "profile {profile}: drift exceeds the lease's bound");
            }
        }
        let beyond = ProfileSpec { drift_ppm_max: 50_000, ..FaultProfile::Leases.spec() };
        assert!(!beyond.lease_drift_within_bound());
    }

    #[test]
    fn membership_changes_have_members_to_add() {
        for profile in FaultProfile::ALL {
            let spec = profile.spec();
            if spec.injects(Fault::ChangeMembership) {
                assert!(spec.spare_members > 0, "profile {profile} changes membership without spare members");
            }
        }
    }
}
