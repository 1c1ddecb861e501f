//! Leases: the replicated table ([`LeaseTable`]) and the leader's expiry
//! policy ([`LeaseTimer`]).
//!
//! The table is part of the state machine: grants, revokes and checkpoints go
//! through the log and every member holds the same leases with the same keys.
//! Time does not: members' clocks are not comparable, so no deadline is
//! replicated. Instead, as in etcd, only the leader tracks deadlines, in a
//! [`LeaseTimer`] fed with its own `now`:
//!
//! 1. On becoming leader the node calls [`LeaseTimer::promote`] with every lease's
//!    TTL ([`crate::kv::KvStore::lease_ttls`]: the last checkpointed remaining TTL,
//!    else the granted one), so a lease gets at least its TTL again after a
//!    leader change; on losing leadership, [`LeaseTimer::demote`].
//! 2. After applying entries it calls [`LeaseTimer::reconcile`], which starts the
//!    clock of newly granted leases and forgets revoked ones.
//! 3. A keep-alive is served by the leader alone, without the log:
//!    [`LeaseTimer::keep_alive`] pushes the deadline to `now + ttl`.
//! 4. On every tick, [`LeaseTimer::expired_leases`] (a pure function of the
//!    deadlines and `now`, bounded per call) names the leases to revoke; the node
//!    proposes a `LeaseRevoke` for each. A returned lease is not returned again
//!    before `retry_ms` passed, so a revoke that is lost with a leader change is
//!    proposed again; a revoke of a lease already gone fails harmlessly with
//!    `LeaseNotFound`.
//! 5. Optionally, it proposes `LeaseCheckpoint`s with [`LeaseTimer::remaining_ttl_s`]
//!    for long leases, so that a new leader does not restart them from full TTL.

use std::collections::{BTreeMap, BTreeSet};

use super::request::LeaseId;
use crate::types::Millis;

/// The largest TTL etcd accepts, in seconds.
pub const LEASE_TTL_MAX_S: i64 = 9_000_000_000;

/// One lease of the replicated table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    /// The granted TTL in seconds.
    pub ttl: i64,
    /// The last checkpointed remaining TTL in seconds (0: none).
    pub remaining_ttl: i64,
    /// The keys attached to it.
    pub keys: BTreeSet<Vec<u8>>,
}

/// The replicated leases and the keys attached to each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTable {
    leases: BTreeMap<LeaseId, Lease>,
}

impl LeaseTable {
    /// No leases.
    pub fn new() -> LeaseTable {
        LeaseTable::default()
    }

    /// The lease `id`.
    pub fn get(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// True if lease `id` exists.
    pub fn contains(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    /// Adds a lease without keys; it must not exist.
    pub fn insert(&mut self, id: LeaseId, ttl: i64, remaining_ttl: i64) {
        assert!(id != 0, "lease id 0 means no lease");
        let old = self.leases.insert(id, Lease { ttl, remaining_ttl, keys: BTreeSet::new() });
        assert!(old.is_none(), "lease {id} granted twice");
    }

    /// Removes a lease, returning it with its keys.
    pub fn remove(&mut self, id: LeaseId) -> Option<Lease> {
        self.leases.remove(&id)
    }

    /// Attaches `key` to lease `id`, which must exist.
    pub fn attach(&mut self, id: LeaseId, key: &[u8]) {
        let lease = self.leases.get_mut(&id).unwrap_or_else(|| panic!("attaching to missing lease {id}"));
        lease.keys.insert(key.to_vec());
    }

    /// Detaches `key` from lease `id`, which must hold it.
    pub fn detach(&mut self, id: LeaseId, key: &[u8]) {
        let removed = self.leases.get_mut(&id).is_some_and(|l| l.keys.remove(key));
        assert!(removed, "lease {id} does not hold key {key:?}");
    }

    /// Records a checkpoint; false if the lease does not exist.
    pub fn checkpoint(&mut self, id: LeaseId, remaining_ttl: i64) -> bool {
        match self.leases.get_mut(&id) {
            Some(lease) => {
                lease.remaining_ttl = remaining_ttl;
                true
            }
            None => false,
        }
    }

    /// Every lease, by id.
    pub fn iter(&self) -> impl Iterator<Item = (LeaseId, &Lease)> {
        self.leases.iter().map(|(&id, l)| (id, l))
    }

    /// The number of leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// True when there are no leases.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

/// The leader's lease deadlines: a pure expiry policy driven by `now`.
///
/// Inputs: [`LeaseTimer::promote`], [`LeaseTimer::demote`],
/// [`LeaseTimer::reconcile`], [`LeaseTimer::keep_alive`]. Output:
/// [`LeaseTimer::expired_leases`]. Getters: [`LeaseTimer::remaining_ttl_s`],
/// [`LeaseTimer::next_deadline`]. Holds nothing while not primary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTimer {
    primary: bool,
    /// Lease → (deadline, TTL in seconds).
    deadlines: BTreeMap<LeaseId, (Millis, i64)>,
    /// (deadline, lease), the same entries ordered by time.
    queue: BTreeSet<(Millis, LeaseId)>,
    retry_ms: Millis,
    /// How often the remaining TTLs are checkpointed through the log (0: never).
    checkpoint_interval_ms: Millis,
    /// When the next checkpoint is due (while primary).
    checkpoint_at: Option<Millis>,
}

fn ttl_ms(ttl_s: i64) -> Millis {
    (ttl_s.max(0) as u64).saturating_mul(1000)
}

impl LeaseTimer {
    /// A timer of a member that is not leader. An expired lease is named again
    /// after `retry_ms` if it still exists.
    pub fn new(retry_ms: Millis) -> LeaseTimer {
        LeaseTimer { retry_ms, ..LeaseTimer::default() }
    }

    /// Checkpoint every lease's remaining TTL every `interval_ms` while
    /// primary (0: never), so that a new leader does not hand out full TTLs
    /// again (etcd's `--experimental-enable-lease-checkpoint`).
    pub fn with_checkpoints(mut self, interval_ms: Millis) -> LeaseTimer {
        self.checkpoint_interval_ms = interval_ms;
        self
    }

    /// When checkpoints are due at `now`: every tracked lease's remaining TTL
    /// (in lease order, at most `max`; the rest at the next interval), and the
    /// next checkpoint is scheduled. Empty otherwise.
    #[must_use]
    pub fn checkpoints_due(&mut self, now: Millis, max: usize) -> Vec<(LeaseId, i64)> {
        match self.checkpoint_at {
            Some(at) if self.primary && at <= now => {
                self.checkpoint_at = Some(now.saturating_add(self.checkpoint_interval_ms));
                self.deadlines
                    .iter()
                    .take(max)
                    .map(|(&id, &(deadline, _))| (id, deadline.saturating_sub(now).div_ceil(1000) as i64))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// True between [`LeaseTimer::promote`] and [`LeaseTimer::demote`].
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    fn set(&mut self, id: LeaseId, deadline: Millis, ttl_s: i64) {
        if let Some((old, _)) = self.deadlines.insert(id, (deadline, ttl_s)) {
            self.queue.remove(&(old, id));
        }
        self.queue.insert((deadline, id));
    }

    /// This member became leader: every lease expires `ttl` seconds from `now`.
    pub fn promote(&mut self, now: Millis, leases: impl IntoIterator<Item = (LeaseId, i64)>) {
        self.deadlines.clear();
        self.queue.clear();
        self.primary = true;
        self.checkpoint_at = (self.checkpoint_interval_ms > 0).then(|| now.saturating_add(self.checkpoint_interval_ms));
        for (id, ttl_s) in leases {
            self.set(id, now.saturating_add(ttl_ms(ttl_s)), ttl_s);
        }
    }

    /// This member is no longer leader: forget every deadline.
    pub fn demote(&mut self) {
        self.primary = false;
        self.deadlines.clear();
        self.queue.clear();
        self.checkpoint_at = None;
    }

    /// Brings the tracked leases in line with the table: new leases start their
    /// full TTL at `now`, vanished ones are forgotten. No-op unless primary.
    pub fn reconcile(&mut self, now: Millis, leases: impl IntoIterator<Item = (LeaseId, i64)>) {
        if !self.primary {
            return;
        }
        let mut seen = BTreeSet::new();
        for (id, ttl_s) in leases {
            seen.insert(id);
            if !self.deadlines.contains_key(&id) {
                self.set(id, now.saturating_add(ttl_ms(ttl_s)), ttl_s);
            }
        }
        let gone: Vec<LeaseId> = self.deadlines.keys().filter(|id| !seen.contains(id)).copied().collect();
        for id in gone {
            if let Some((deadline, _)) = self.deadlines.remove(&id) {
                self.queue.remove(&(deadline, id));
            }
        }
    }

    /// Renews lease `id` until `now + ttl`; returns the TTL, or `None` when the
    /// lease is not tracked (not leader, or no such lease: etcd answers
    /// `LeaseNotFound`).
    pub fn keep_alive(&mut self, now: Millis, id: LeaseId) -> Option<i64> {
        let &(_, ttl_s) = self.deadlines.get(&id)?;
        self.set(id, now.saturating_add(ttl_ms(ttl_s)), ttl_s);
        Some(ttl_s)
    }

    /// Seconds until lease `id` expires (rounded up), if tracked.
    pub fn remaining_ttl_s(&self, now: Millis, id: LeaseId) -> Option<i64> {
        let &(deadline, _) = self.deadlines.get(&id)?;
        Some(deadline.saturating_sub(now).div_ceil(1000) as i64)
    }

    /// Leases whose deadline is at or before `now`, earliest first, at most
    /// `max`. Each is pushed back by `retry_ms`, so it is named again only if
    /// its revoke did not take effect by then.
    #[must_use]
    pub fn expired_leases(&mut self, now: Millis, max: usize) -> Vec<LeaseId> {
        let due: Vec<(Millis, LeaseId)> = self.queue.iter().take_while(|(d, _)| *d <= now).take(max).copied().collect();
        for &(_, id) in &due {
            let ttl_s = self.deadlines.get(&id).map_or(0, |&(_, t)| t);
            self.set(id, now.saturating_add(self.retry_ms), ttl_s);
        }
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// The earliest deadline (an expiry, or a checkpoint while leases
    /// exist), for the node's timer.
    pub fn next_deadline(&self) -> Option<Millis> {
        let expiry = self.queue.first().map(|&(d, _)| d);
        let checkpoint = self.checkpoint_at.filter(|_| !self.deadlines.is_empty());
        expiry.into_iter().chain(checkpoint).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_now_and_keep_alive() {
        let mut timer = LeaseTimer::new(500);
        assert!(timer.expired_leases(1_000_000, 10).is_empty());
        timer.promote(1000, [(1, 5), (2, 10)]);
        assert_eq!(timer.next_deadline(), Some(6000));
        assert_eq!(timer.remaining_ttl_s(1001, 1), Some(5));
        assert!(timer.expired_leases(5999, 10).is_empty());
        assert_eq!(timer.keep_alive(5000, 1), Some(5));
        assert!(timer.expired_leases(9_999, 10).is_empty());
        assert_eq!(timer.expired_leases(11_000, 10), vec![1, 2]);
        // Named again only after the retry interval.
        assert!(timer.expired_leases(11_400, 10).is_empty());
        assert_eq!(timer.expired_leases(11_500, 1), vec![1]);
        timer.reconcile(12_000, [(2, 10), (3, 1)]);
        assert_eq!(timer.keep_alive(12_000, 1), None);
        assert_eq!(timer.expired_leases(13_000, 10), vec![2, 3]);
        timer.demote();
        assert_eq!(timer.keep_alive(13_000, 2), None);
        assert!(timer.expired_leases(u64::MAX, 10).is_empty());
    }

    #[test]
    fn checkpoints_come_every_interval_while_primary() {
        let mut timer = LeaseTimer::new(500).with_checkpoints(10_000);
        assert!(timer.checkpoints_due(1_000_000, 10).is_empty());
        timer.promote(1000, [(1, 30), (2, 60)]);
        assert_eq!(timer.next_deadline(), Some(11_000));
        assert!(timer.checkpoints_due(10_999, 10).is_empty());
        assert_eq!(timer.checkpoints_due(11_000, 10), vec![(1, 20), (2, 50)]);
        assert!(timer.checkpoints_due(20_999, 10).is_empty());
        assert_eq!(timer.checkpoints_due(21_000, 1), vec![(1, 10)]);
        timer.demote();
        assert!(timer.checkpoints_due(u64::MAX, 10).is_empty());
        let mut never = LeaseTimer::new(500);
        never.promote(0, [(1, 30)]);
        assert!(never.checkpoints_due(u64::MAX - 1, 10).is_empty());
        assert_eq!(never.next_deadline(), Some(30_000));
    }

    #[test]
    fn table_tracks_keys() {
        let mut table = LeaseTable::new();
        table.insert(7, 10, 0);
        table.attach(7, b"a");
        table.attach(7, b"b");
        table.detach(7, b"a");
        assert!(table.checkpoint(7, 4));
        assert!(!table.checkpoint(8, 4));
        let lease = table.remove(7).expect("exists");
        assert_eq!(lease.keys.into_iter().collect::<Vec<_>>(), vec![b"b".to_vec()]);
        assert!(table.is_empty());
    }
}
