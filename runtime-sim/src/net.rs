//! The simulated network's policy: for each message sent, whether, when and in
//! what shape copies of it arrive. A pure function of the link state and the dice.
//!
//! Faults: random latency per message (so reordering), rare latency spikes, loss,
//! duplication, corruption (one flipped bit, which the receiver's checksum must
//! catch), directed link blocks (symmetric and asymmetric partitions) and clogged
//! links (messages held until the clog clears, then delivered).

use std::collections::{BTreeMap, BTreeSet};

use lockstep_core::NodeId;

use crate::dice::Dice;

/// Rates and timings of the simulated network. Rates are parts per million.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Fastest one-way latency, µs.
    pub latency_us_min: u64,
    /// Slowest ordinary one-way latency, µs.
    pub latency_us_max: u64,
    /// Probability of a latency spike.
    pub spike_ppm: u32,
    /// Slowest spike, µs.
    pub spike_us_max: u64,
    /// Probability that a message is lost.
    pub loss_ppm: u32,
    /// Probability that a message is delivered twice.
    pub duplicate_ppm: u32,
    /// Probability that a copy arrives with one bit flipped.
    pub corrupt_ppm: u32,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_us_min: 200,
            latency_us_max: 2_000,
            spike_ppm: 0,
            spike_us_max: 100_000,
            loss_ppm: 0,
            duplicate_ppm: 0,
            corrupt_ppm: 0,
        }
    }
}

/// Counters of what the network did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Copies scheduled for delivery.
    pub delivered: u64,
    /// Dropped by loss.
    pub lost: u64,
    /// Dropped by a blocked link.
    pub blocked: u64,
    /// Extra copies.
    pub duplicated: u64,
    /// Copies with a flipped bit.
    pub corrupted: u64,
    /// Messages held by a clogged link.
    pub clogged: u64,
}

/// The links between members and what is wrong with them.
#[derive(Debug, Clone, Default)]
pub struct Network {
    config: NetConfig,
    /// Directed links that drop everything: `(from, to)`.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Directed links that hold everything until the given simulated µs.
    clogged: BTreeMap<(NodeId, NodeId), u64>,
    stats: NetStats,
}

impl Network {
    /// A healthy network with the given rates.
    pub fn new(config: NetConfig) -> Network {
        Network { config, ..Network::default() }
    }

    /// The current rates.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Replaces the rates.
    pub fn set_config(&mut self, config: NetConfig) {
        self.config = config;
    }

    /// What the network did so far.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Drops everything from `from` to `to` (one direction).
    pub fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// Splits the members into groups that cannot reach each other (both directions).
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for from in a {
                        for to in b {
                            self.blocked.insert((*from, *to));
                        }
                    }
                }
            }
        }
    }

    /// Holds everything from `from` to `to` until simulated time `until_us`.
    pub fn clog(&mut self, from: NodeId, to: NodeId, until_us: u64) {
        self.clogged.insert((from, to), until_us);
    }

    /// True if `from` cannot currently reach `to`.
    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// Removes every block and clog.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.clogged.clear();
    }

    /// Blocked directed links, for reports.
    pub fn blocked_links(&self) -> Vec<(NodeId, NodeId)> {
        self.blocked.iter().copied().collect()
    }

    /// Decides the fate of one message sent at `now_us`: the copies that arrive,
    /// each with its arrival time. May flip bits in copies.
    pub fn route(
        &mut self,
        from: NodeId,
        to: NodeId,
        mut bytes: Vec<u8>,
        now_us: u64,
        dice: &mut impl Dice,
    ) -> Vec<(u64, Vec<u8>)> {
        self.stats.sent += 1;
        if self.blocked.contains(&(from, to)) {
            self.stats.blocked += 1;
            return Vec::new();
        }
        if dice.chance_ppm(self.config.loss_ppm) {
            self.stats.lost += 1;
            return Vec::new();
        }
        let copies = if dice.chance_ppm(self.config.duplicate_ppm) { 2 } else { 1 };
        self.stats.duplicated += copies - 1;
        let mut start_us = now_us;
        if let Some(&until_us) = self.clogged.get(&(from, to)) {
            if until_us > now_us {
                self.stats.clogged += 1;
                start_us = until_us;
            } else {
                self.clogged.remove(&(from, to));
            }
        }
        let mut out = Vec::with_capacity(copies as usize);
        for copy in 0..copies {
            let latency_us = if dice.chance_ppm(self.config.spike_ppm) {
                dice.between(self.config.latency_us_max, self.config.spike_us_max.max(self.config.latency_us_max))
            } else {
                dice.between(self.config.latency_us_min, self.config.latency_us_max.max(self.config.latency_us_min))
            };
            let mut payload = if copy + 1 == copies { std::mem::take(&mut bytes) } else { bytes.clone() };
            if !payload.is_empty() && dice.chance_ppm(self.config.corrupt_ppm) {
                let bit = dice.below(payload.len() as u64 * 8);
                payload[(bit / 8) as usize] ^= 1 << (bit % 8);
                self.stats.corrupted += 1;
            }
            out.push((start_us + latency_us, payload));
        }
        self.stats.delivered += copies;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dice::SplitMix;

    #[test]
    fn blocks_are_directed() {
        let mut net = Network::new(NetConfig::default());
        let mut dice = SplitMix(1);
        net.block(1, 2);
        assert!(net.route(1, 2, vec![1], 0, &mut dice).is_empty());
        assert_eq!(net.route(2, 1, vec![1], 0, &mut dice).len(), 1);
        net.heal();
        assert_eq!(net.route(1, 2, vec![1], 0, &mut dice).len(), 1);
    }

    #[test]
    fn partitions_cut_both_ways_between_groups_only() {
        let mut net = Network::new(NetConfig::default());
        net.partition(&[vec![1, 2], vec![3]]);
        assert!(net.is_blocked(1, 3) && net.is_blocked(3, 2));
        assert!(!net.is_blocked(1, 2));
    }

    #[test]
    fn clogged_links_hold_messages() {
        let mut net = Network::new(NetConfig::default());
        let mut dice = SplitMix(2);
        net.clog(1, 2, 50_000);
        let copies = net.route(1, 2, vec![1], 10, &mut dice);
        assert!(copies[0].0 >= 50_000);
    }

    #[test]
    fn corruption_flips_exactly_one_bit() {
        let config = NetConfig { corrupt_ppm: 1_000_000, ..NetConfig::default() };
        let mut net = Network::new(config);
        let mut dice = SplitMix(3);
        let copies = net.route(1, 2, vec![0; 16], 0, &mut dice);
        let ones: u32 = copies[0].1.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 1);
    }
}
