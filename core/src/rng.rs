//! The only source of randomness in core: a seeded, value-stable generator.
//!
//! ChaCha8 is specified bit for bit, so the same seed yields the same election
//! timeouts on every platform and every future build.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A deterministic random number generator owned by one actor.
#[derive(Debug, Clone)]
pub struct SeededRng {
    inner: ChaCha8Rng,
}

impl SeededRng {
    /// Creates a generator from a seed; the same seed always yields the same stream.
    pub fn new(seed: u64) -> Self {
        SeededRng { inner: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// Returns a value uniformly drawn from `low..high`; `high` must exceed `low`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high, "empty range {low}..{high}");
        self.inner.random_range(low..high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = SeededRng::new(7);
        let mut b = SeededRng::new(7);
        let xs: Vec<u64> = (0..16).map(|_| a.range(0, 1_000_000)).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.range(0, 1_000_000)).collect();
        assert_eq!(xs, ys);
        let mut c = SeededRng::new(8);
        let zs: Vec<u64> = (0..16).map(|_| c.range(0, 1_000_000)).collect();
        assert_ne!(xs, zs);
    }
}
