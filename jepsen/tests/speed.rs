//! The checker must decide a 10k-operation history over 20 keys and 10
//! processes well under a second in release builds.

mod support;

use std::time::{Duration, Instant};

use lockstep_jepsen::{check, CheckConfig, CheckResult, History, OpType, Value, Verdict, F};

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
    assert!(elapsed < time_max(), "{name} took {elapsed:?}");
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
