//! Property tests: histories of a simulated linearizable register are valid,
//! corrupting one read makes them invalid, and on small random histories the
//! checker agrees with a brute-force search over all orders.

mod support;

use std::collections::HashMap;

use lockstep_jepsen::{check, CheckConfig, History, HistoryRecorder, KeyOutcome, OpType, Value, Verdict, F};
use proptest::prelude::*;
use proptest::sample::Index;

use support::{brute_force_valid, rebuild, simulate_with_values_max, Choice};

/// A value no simulated client ever writes.
const NEVER_WRITTEN: i64 = 999_999_999;

fn choices() -> impl Strategy<Value = Vec<Choice>> {
    prop::collection::vec(any::<Choice>(), 0..300)
}

/// Unique values, or as few as Jepsen's register workloads use.
fn values_max() -> impl Strategy<Value = i64> {
    prop_oneof![Just(i64::MAX), 1_i64..6]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn simulated_linearizable_register_is_valid(
        processes in 1_usize..8,
        keys in 1_usize..4,
        values_max in values_max(),
        choices in choices(),
    ) {
        let history = simulate_with_values_max(processes, keys, values_max, &choices);
        let result = check(&history, &CheckConfig::default());
        prop_assert!(result.valid, "{}\n{}", result, history.to_jsonl());
        prop_assert_eq!(result.verdict, Verdict::Valid);
    }

    #[test]
    fn corrupting_one_read_makes_it_invalid(
        processes in 1_usize..8,
        keys in 1_usize..4,
        values_max in values_max(),
        choices in choices(),
        which in any::<Index>(),
    ) {
        let history = simulate_with_values_max(processes, keys, values_max, &choices);
        let mut ops = history.ops().to_vec();
        let reads: Vec<usize> = ops
            .iter()
            .enumerate()
            .filter(|(_, op)| op.f == F::Read && op.op_type == OpType::Ok)
            .map(|(index, _)| index)
            .collect();
        if reads.is_empty() {
            // Nothing to corrupt; rejecting instead would starve proptest.
            return Ok(());
        }
        let corrupted = *which.get(&reads);
        ops[corrupted].value = Value::Int(NEVER_WRITTEN);
        let corrupted_key = ops[corrupted].key.clone();
        let result = check(&rebuild(ops), &CheckConfig::default());
        prop_assert_eq!(result.verdict, Verdict::Invalid, "{}", result);
        prop_assert!(!result.valid);
        for key in &result.keys {
            let invalid = matches!(key.outcome, KeyOutcome::Invalid(_));
            prop_assert_eq!(invalid, key.key == corrupted_key, "{}", key);
        }
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories(steps in small_history_steps()) {
        let history = small_history(&steps);
        let expected = brute_force_valid(&history);
        let expected_verdict = if expected { Verdict::Valid } else { Verdict::Invalid };
        for slice_steps in [1 << 20, 1] {
            let result = check(&history, &CheckConfig { slice_steps, ..CheckConfig::default() });
            prop_assert_eq!(result.verdict, expected_verdict, "{}\n{}", result, history.to_jsonl());
        }
    }

    /// Random histories whose writes all write distinct values, where the
    /// prunings that rely on that (stranding, deadlines of observed `info`
    /// writes, the necessary conditions) all apply.
    #[test]
    fn agrees_with_brute_force_on_small_unique_value_histories(steps in small_history_steps()) {
        let history = small_unique_history(&steps);
        let expected = brute_force_valid(&history);
        let expected_verdict = if expected { Verdict::Valid } else { Verdict::Invalid };
        // Also with the necessary conditions and windows tried after one
        // step, so that they are tested on every history.
        for slice_steps in [1 << 20, 1] {
            let result = check(&history, &CheckConfig { slice_steps, ..CheckConfig::default() });
            prop_assert_eq!(result.verdict, expected_verdict, "{}\n{}", result, history.to_jsonl());
        }
    }
}

/// Like [`small_history`] on one key, but every write and cas writes a new
/// value (1, 2, 3, ...); reads return, and cas expect, nil or any of the
/// first few values.
fn small_unique_history(steps: &[SmallStep]) -> History {
    let mut recorder = HistoryRecorder::new();
    let mut open: HashMap<u64, lockstep_jepsen::OpRef> = HashMap::new();
    let mut invocations = 0;
    let mut written = 0;
    for (time_ns, &(process, kind, f, value, _)) in steps.iter().enumerate() {
        let time_ns = time_ns as u64;
        // -1 is nil; 0..3 name the first values written, 1..=4.
        let register = if value < 0 { None } else { Some(value + 1 + i64::from(kind % 2)) };
        if let Some(op) = open.remove(&process) {
            let op_type = match kind % 8 {
                0 => OpType::Fail,
                1 => OpType::Info,
                _ => OpType::Ok,
            };
            let result = register.map_or(Value::Nil, Value::Int);
            recorder.complete(op, op_type, result, time_ns).expect("open op completes");
        } else if invocations < 10 {
            let argument = match f {
                0 => Value::Nil,
                1 => {
                    written += 1;
                    Value::Int(written)
                }
                _ => {
                    written += 1;
                    Value::Cas { expected: register, new: written }
                }
            };
            let f = [F::Read, F::Write, F::Cas][usize::from(f)];
            let op = recorder.invoke(process, f, None, argument, time_ns).expect("idle");
            open.insert(process, op);
            invocations += 1;
        }
    }
    recorder.finish()
}

/// (process, kind, f, value, key) choices for [`small_history`].
type SmallStep = (u64, u8, u8, i64, bool);

fn small_history_steps() -> impl Strategy<Value = Vec<SmallStep>> {
    prop::collection::vec((0_u64..4, any::<u8>(), 0_u8..3, -1_i64..3, any::<bool>()), 0..32)
}

/// A random (often non-linearizable) history of at most ~10 operations over
/// values -1..3, where -1 stands for nil.
fn small_history(steps: &[SmallStep]) -> History {
    let mut recorder = HistoryRecorder::new();
    let mut open: HashMap<u64, lockstep_jepsen::OpRef> = HashMap::new();
    let mut invocations = 0;
    for (time_ns, &(process, kind, f, value, second_key)) in steps.iter().enumerate() {
        let time_ns = time_ns as u64;
        let register = if value < 0 { None } else { Some(value) };
        if let Some(op) = open.remove(&process) {
            let op_type = match kind % 8 {
                0 => OpType::Fail,
                1 => OpType::Info,
                _ => OpType::Ok,
            };
            let result = register.map_or(Value::Nil, Value::Int);
            recorder.complete(op, op_type, result, time_ns).expect("open op completes");
        } else if invocations < 10 {
            let (f, argument) = match f {
                0 => (F::Read, Value::Nil),
                1 => (F::Write, Value::Int(value.max(0))),
                _ => (F::Cas, Value::Cas { expected: register, new: i64::from(kind % 3) }),
            };
            let key = if second_key { "b" } else { "a" };
            let op = recorder.invoke(process, f, Some(key), argument, time_ns).expect("idle");
            open.insert(process, op);
            invocations += 1;
        }
    }
    recorder.finish()
}
