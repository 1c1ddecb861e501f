//! The simulator's source of randomness, as a small trait so that the fault
//! policies stay pure functions that unit tests can drive without madsim.

/// A seeded random source. Under madsim it is the runtime's global RNG.
pub trait Dice {
    /// A uniform number in `[0, n)`; `n` must be positive.
    fn below(&mut self, n: u64) -> u64;

    /// True with probability `ppm` parts per million.
    fn chance_ppm(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.below(1_000_000) < u64::from(ppm)
    }

    /// A uniform number in `[low, high]`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "empty range {low}..={high}");
        low + self.below(high - low + 1)
    }
}

/// A tiny deterministic generator (SplitMix64) for unit tests and offline use.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl Dice for SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

#[cfg(madsim)]
mod madsim_dice {
    use madsim::rand::{GlobalRng, Rng};

    impl super::Dice for GlobalRng {
        fn below(&mut self, n: u64) -> u64 {
            assert!(n > 0, "below(0)");
            self.gen_range(0..n)
        }
    }
}
