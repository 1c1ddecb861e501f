//! The checker must decide 10k-operation histories (20 keys or one, 10
//! processes) well under a second in release builds, and 50k-operation
//! single-register histories of 50 clients with `info` ops too.

mod support;

use std::time::{Duration, Instant};

use lockstep_jepsen::{
    check, corrupt, linearizable_history, CheckConfig, CheckResult, Corruption, GeneratorConfig, History, OpType,
    Value, Verdict, F,
};

use support::{rebuild, simulate_seeded};

/// Every written value distinct.
const UNIQUE: i64 = i64::MAX;

/// The bound for release builds; debug builds get ten times as long.
const CHECK_TIME_MAX: Duration = Duration::from_secs(1);

fn time_max() -> Duration {
    if cfg!(debug_assertions) {
        CHECK_TIME_MAX * 10
    } else {
        CHECK_TIME_MAX
    }
}

/// Checks `history`, prints how long it took, and asserts the time bound.
fn timed_check(name: &str, history: &History) -> CheckResult {
    timed_check_within(name, history, time_max())
}

/// Like `timed_check`, with an explicit bound.
fn timed_check_within(name: &str, history: &History, bound: Duration) -> CheckResult {
    let start = Instant::now();
    let result = check(history, &CheckConfig::default());
    let elapsed = start.elapsed();
    let ops: u64 = result.keys.iter().map(|key| key.ops).sum();
    let states: u64 = result.keys.iter().map(|key| key.states).sum();
    eprintln!(
        "{name}: {} events, {ops} ops checked over {} keys, {states} states, {:?}: {elapsed:?}",
        history.len(),
        result.keys.len(),
        result.verdict
    );
    assert!(elapsed < bound, "{name} took {elapsed:?}");
    result
}

#[test]
fn ten_thousand_ops_over_twenty_keys() {
    let history = simulate_seeded(10, 20, 10_000, UNIQUE, 10, 42);
    let result = timed_check("20 keys", &history);
    assert_eq!(result.verdict, Verdict::Valid, "{result}");
    assert_eq!(result.keys.len(), 20);
    assert!(result.keys.iter().map(|key| key.ops).sum::<u64>() > 7_000);

    // The same history with its last read corrupted is invalid, as fast.
    let mut ops = history.ops().to_vec();
    let last_read = ops.iter().rposition(|op| op.f == F::Read && op.op_type == OpType::Ok).expect("a read");
    ops[last_read].value = Value::Int(-1);
    let result = timed_check("20 keys, one read corrupted", &rebuild(ops));
    assert_eq!(result.verdict, Verdict::Invalid);
    assert_eq!(result.failures().count(), 1);
}

#[test]
fn ten_thousand_ops_with_many_crashes() {
    let history = simulate_seeded(10, 20, 10_000, UNIQUE, 1, 43);
    let result = timed_check("20 keys, many crashes", &history);
    assert_eq!(result.verdict, Verdict::Valid, "{result}");
}

#[test]
fn ten_thousand_ops_on_one_key() {
    let history = simulate_seeded(10, 1, 10_000, UNIQUE, 10, 7);
    let result = timed_check("1 key", &history);
    assert_eq!(result.verdict, Verdict::Valid, "{result}");
}

#[test]
fn ten_thousand_ops_with_five_values_like_jepsen() {
    let history = simulate_seeded(10, 20, 10_000, 5, 10, 44);
    let result = timed_check("20 keys, values 1..=5", &history);
    assert_eq!(result.verdict, Verdict::Valid, "{result}");
}

/// A generated single-register history of `ops` operations by `clients`
/// clients, optionally corrupted at its middle.
fn generated(ops: u64, clients: u32, info_fraction: f64, corruption: Option<Corruption>) -> History {
    let config = GeneratorConfig { ops, clients, info_fraction, seed: 11, ..GeneratorConfig::default() };
    let history = linearizable_history(&config);
    match corruption {
        Some(corruption) => corrupt(&history, corruption, 0.5).expect("room for the corruption"),
        None => history,
    }
}

#[test]
fn ten_thousand_ops_ten_clients_generated() {
    let result = timed_check("10k x 10", &generated(10_000, 10, 0.0, None));
    assert_eq!(result.verdict, Verdict::Valid, "{result}");
    let result = timed_check("10k x 10, 0.5 % info", &generated(10_000, 10, 0.005, None));
    assert_eq!(result.verdict, Verdict::Valid, "{result}");
    for corruption in Corruption::ALL {
        let name = format!("10k x 10, 0.5 % info, {}", corruption.as_str());
        let result = timed_check(&name, &generated(10_000, 10, 0.005, Some(corruption)));
        assert_eq!(result.verdict, Verdict::Invalid, "{result}");
    }
}

/// The bar is 60 s and 4 GiB on the 2-core machine; release builds
/// take well under a second each (bounded here at 10 s, as the machine is
/// shared). Slow in debug builds, so run with
/// `cargo test --release -p lockstep-jepsen --test speed -- --include-ignored`.
#[test]
#[cfg_attr(debug_assertions, ignore = "seconds in debug builds; run in release with --include-ignored")]
fn fifty_thousand_ops_fifty_clients_with_info() {
    let bound = Duration::from_secs(10);
    let result = timed_check_within("50k x 50, 0.5 % info", &generated(50_000, 50, 0.005, None), bound);
    assert_eq!(result.verdict, Verdict::Valid, "{result}");
    for corruption in Corruption::ALL {
        let name = format!("50k x 50, 0.5 % info, {}", corruption.as_str());
        let result = timed_check_within(&name, &generated(50_000, 50, 0.005, Some(corruption)), bound);
        assert_eq!(result.verdict, Verdict::Invalid, "{result}");
    }
}

/// A bound that runs out gives `Unknown`, promptly, never a guess: one
/// register, 30 clients and only five values (so the prunings that need
/// values written once do not apply) takes about 10 s in release builds.
#[test]
fn time_bound_gives_unknown() {
    let config = GeneratorConfig { ops: 20_000, clients: 30, info_fraction: 0.005, values_max: 5, seed: 4, key: None };
    let history = linearizable_history(&config);
    let check_config = CheckConfig { time_max: Some(Duration::from_millis(300)), ..CheckConfig::default() };
    let start = Instant::now();
    let result = check(&history, &check_config);
    let elapsed = start.elapsed();
    assert_eq!(result.verdict, Verdict::Unknown, "{result}");
    assert!(elapsed < Duration::from_secs(3), "stopped {elapsed:?} after a 300 ms bound");
}
