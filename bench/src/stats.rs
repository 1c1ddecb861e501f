//! Latency and error accounting: one [`Recorder`] per worker, merged at the end
//! into a [`Summary`].
//!
//! Latencies go into an HDR histogram in microseconds (three significant
//! digits, 1 µs to 60 s; slower requests are recorded as 60 s, never dropped).
//! Every failed request is counted under a short description of its error.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The slowest latency the histogram tells apart from slower ones, in microseconds.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Error descriptions are cut to this many characters, so that messages that
/// carry a request-specific detail still group together.
pub const ERROR_KIND_CHARS_MAX: usize = 120;

/// What one worker saw: the latency of every successful request and the count
/// of every failed one, by kind.
#[derive(Debug, Clone)]
pub struct Recorder {
    histogram: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        // The bounds are constants that hdrhistogram accepts (low >= 1,
        // high >= 2 * low, sigfig <= 5); this cannot fail.
        let histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds");
        Recorder { histogram, errors: BTreeMap::new() }
    }

    /// Records one successful request that took `latency`.
    pub fn record_ok(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_US_MAX);
        self.histogram.saturating_record(us);
    }

    /// Records one failed request, under `kind` (cut to [`ERROR_KIND_CHARS_MAX`] characters).
    pub fn record_error(&mut self, kind: &str) {
        self.record_errors(kind, 1);
    }

    /// Records `count` failed requests of one kind.
    pub fn record_errors(&mut self, kind: &str, count: u64) {
        if count == 0 {
            return;
        }
        let kind: String = kind.chars().take(ERROR_KIND_CHARS_MAX).collect();
        *self.errors.entry(kind).or_insert(0) += count;
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Recorder) {
        // Both histograms have the same bounds, so adding cannot fail.
        self.histogram.add(&other.histogram).expect("histograms with equal bounds");
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_insert(0) += count;
        }
    }

    /// The number of successful requests.
    pub fn ok_count(&self) -> u64 {
        self.histogram.len()
    }

    /// The number of failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The summary of a run that took `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Summary {
        let ok = self.ok_count();
        let seconds = elapsed.as_secs_f64();
        let ms = |us: u64| us as f64 / 1000.0;
        let latency_ms = if ok == 0 {
            Latency::default()
        } else {
            Latency {
                min: ms(self.histogram.min()),
                mean: self.histogram.mean() / 1000.0,
                p50: ms(self.histogram.value_at_quantile(0.50)),
                p90: ms(self.histogram.value_at_quantile(0.90)),
                p99: ms(self.histogram.value_at_quantile(0.99)),
                p999: ms(self.histogram.value_at_quantile(0.999)),
                max: ms(self.histogram.max()),
            }
        };
        Summary {
            requests_ok: ok,
            errors: self.error_count(),
            error_kinds: self.errors.clone(),
            duration_s: seconds,
            throughput_per_s: if seconds > 0.0 { ok as f64 / seconds } else { 0.0 },
            latency_ms,
        }
    }
}

/// Latency percentiles of the successful requests, in milliseconds (all zero
/// when none succeeded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Latency {
    /// The fastest request.
    pub min: f64,
    /// The mean.
    pub mean: f64,
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The 99.9th percentile.
    pub p999: f64,
    /// The slowest request.
    pub max: f64,
}

/// The outcome of a run: counts, throughput and latency.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Requests that succeeded.
    pub requests_ok: u64,
    /// Requests that failed (all of them: nothing is dropped).
    pub errors: u64,
    /// The failures by kind (gRPC code and message, or the client's error).
    pub error_kinds: BTreeMap<String, u64>,
    /// Wall-clock time from the first request to the last answer, in seconds.
    pub duration_s: f64,
    /// Successful requests per second over `duration_s`.
    pub throughput_per_s: f64,
    /// Latency of the successful requests.
    pub latency_ms: Latency,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Recorder::new();
        // 1 ms .. 1000 ms, one each.
        for n in 1..=1000 {
            r.record_ok(ms(n));
        }
        let s = r.summary(Duration::from_secs(2));
        assert_eq!(s.requests_ok, 1000);
        assert_eq!(s.errors, 0);
        assert!((s.throughput_per_s - 500.0).abs() < 1e-9);
        // Three significant digits: within 0.1 % of the exact value.
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(near(s.latency_ms.min, 1.0), "{s:?}");
        assert!(near(s.latency_ms.p50, 500.0), "{s:?}");
        assert!(near(s.latency_ms.p90, 900.0), "{s:?}");
        assert!(near(s.latency_ms.p99, 990.0), "{s:?}");
        assert!(near(s.latency_ms.p999, 999.0), "{s:?}");
        assert!(near(s.latency_ms.max, 1000.0), "{s:?}");
        assert!(near(s.latency_ms.mean, 500.5), "{s:?}");
    }

    #[test]
    fn extremes_are_clamped_not_dropped() {
        let mut r = Recorder::new();
        r.record_ok(Duration::ZERO);
        r.record_ok(Duration::from_secs(3600));
        assert_eq!(r.ok_count(), 2);
        let s = r.summary(Duration::from_secs(1));
        assert!(s.latency_ms.min <= 0.002);
        assert!(s.latency_ms.max >= 59_000.0);
    }

    #[test]
    fn errors_are_counted_by_kind_and_merged() {
        let mut a = Recorder::new();
        a.record_error("Unavailable: leader lost");
        a.record_error("Unavailable: leader lost");
        a.record_ok(ms(3));
        let mut b = Recorder::new();
        b.record_error("DeadlineExceeded: timeout");
        b.record_errors("Unavailable: leader lost", 3);
        b.record_errors("never", 0);
        b.record_ok(ms(5));
        a.merge(&b);
        assert_eq!(a.ok_count(), 2);
        assert_eq!(a.error_count(), 6);
        let s = a.summary(Duration::from_secs(1));
        assert_eq!(s.error_kinds.get("Unavailable: leader lost"), Some(&5));
        assert_eq!(s.error_kinds.get("DeadlineExceeded: timeout"), Some(&1));
        assert!(!s.error_kinds.contains_key("never"));
    }

    #[test]
    fn long_error_kinds_are_cut() {
        let mut r = Recorder::new();
        r.record_error(&"x".repeat(1000));
        let s = r.summary(Duration::from_secs(1));
        assert_eq!(s.error_kinds.keys().next().map(|k| k.len()), Some(ERROR_KIND_CHARS_MAX));
    }

    #[test]
    fn empty_run_has_zero_latency_and_throughput() {
        let r = Recorder::new();
        let s = r.summary(Duration::ZERO);
        assert_eq!(s.requests_ok, 0);
        assert_eq!(s.throughput_per_s, 0.0);
        assert_eq!(s.latency_ms, Latency::default());
    }
}
