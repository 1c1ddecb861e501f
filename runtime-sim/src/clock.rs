//! Each member's local monotonic clock: an offset plus simulated time scaled by a
//! drift factor, with optional forward jumps. Core only ever sees this clock.

use lockstep_core::Millis;

/// Parts per million: a drift of 10_000 ppm runs 1% fast.
pub type Ppm = i64;

/// The most a clock may drift: it must keep moving forward.
pub const DRIFT_PPM_LIMIT: Ppm = 500_000;

/// A member's local clock, a pure function of simulated elapsed time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// How much faster (positive) or slower than simulated time the clock runs.
    drift_ppm: Ppm,
    /// Local microseconds at `anchor_sim_us` (drift changes and jumps re-anchor the
    /// clock, so that it never goes back).
    anchor_local_us: u64,
    /// Simulated microseconds where the current drift started.
    anchor_sim_us: u64,
}

impl Clock {
    /// A clock reading `offset_ms` at simulated time zero and drifting by `drift_ppm`.
    pub fn new(offset_ms: Millis, drift_ppm: Ppm) -> Clock {
        assert!(drift_ppm.abs() <= DRIFT_PPM_LIMIT, "drift {drift_ppm} ppm out of range");
        Clock { drift_ppm, anchor_local_us: offset_ms * 1000, anchor_sim_us: 0 }
    }

    /// The current drift.
    pub fn drift_ppm(&self) -> Ppm {
        self.drift_ppm
    }

    fn local_us(&self, sim_us: u64) -> u64 {
        let since = sim_us.saturating_sub(self.anchor_sim_us) as i128;
        let scaled = since * (1_000_000 + self.drift_ppm as i128) / 1_000_000;
        self.anchor_local_us + scaled as u64
    }

    /// The local time, in ms, at simulated time `sim_us`.
    pub fn now_ms(&self, sim_us: u64) -> Millis {
        self.local_us(sim_us) / 1000
    }

    /// The earliest simulated time (µs) at which the local clock reads at least `at`.
    pub fn sim_us_at(&self, at: Millis) -> u64 {
        let target_us = at.saturating_mul(1000);
        if target_us <= self.anchor_local_us {
            return self.anchor_sim_us;
        }
        let need = (target_us - self.anchor_local_us) as i128;
        let rate = 1_000_000 + self.drift_ppm as i128;
        let mut sim_us = self.anchor_sim_us + ((need * 1_000_000 + rate - 1) / rate) as u64;
        // Integer rounding: step forward until the local clock has really reached `at`.
        while self.now_ms(sim_us) < at {
            sim_us += 1;
        }
        sim_us
    }

    /// Changes the drift from simulated time `sim_us` on, without a jump.
    pub fn set_drift(&mut self, sim_us: u64, drift_ppm: Ppm) {
        assert!(drift_ppm.abs() <= DRIFT_PPM_LIMIT, "drift {drift_ppm} ppm out of range");
        self.anchor_local_us = self.local_us(sim_us);
        self.anchor_sim_us = sim_us;
        self.drift_ppm = drift_ppm;
    }

    /// Moves the clock forward by `jump_ms` at simulated time `sim_us` (a monotonic
    /// clock never moves back).
    pub fn jump(&mut self, sim_us: u64, jump_ms: Millis) {
        self.anchor_local_us = self.local_us(sim_us) + jump_ms * 1000;
        self.anchor_sim_us = sim_us;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_scales_elapsed_time() {
        let clock = Clock::new(5_000, 10_000);
        assert_eq!(clock.now_ms(0), 5_000);
        assert_eq!(clock.now_ms(1_000_000), 6_010);
        let slow = Clock::new(0, -10_000);
        assert_eq!(slow.now_ms(1_000_000), 990);
    }

    #[test]
    fn sim_us_at_inverts_now_ms() {
        for drift in [-20_000, -1, 0, 7, 13_333, 20_000] {
            let mut clock = Clock::new(1_234, drift);
            clock.jump(777_777, 3_000);
            for at in [0, 1_234, 5_000, 6_001, 123_456] {
                let sim = clock.sim_us_at(at);
                assert!(clock.now_ms(sim) >= at);
                if sim > 777_777 {
                    assert!(clock.now_ms(sim - 1) < at, "drift {drift} at {at}");
                }
            }
        }
    }

    #[test]
    fn jumps_and_drift_changes_never_go_back() {
        let mut clock = Clock::new(0, 0);
        let before = clock.now_ms(2_000_000);
        clock.set_drift(2_000_000, -30_000);
        assert_eq!(clock.now_ms(2_000_000), before);
        clock.jump(3_000_000, 500);
        assert!(clock.now_ms(3_000_000) >= before + 500);
    }
}
