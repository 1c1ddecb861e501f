//! Hand-made histories with known verdicts and explanations.

use std::collections::HashMap;

use lockstep_jepsen::{
    check, CheckConfig, CheckResult, Counterexample, History, HistoryRecorder, KeyOutcome, OpRef, OpReport, OpType,
    Value, Verdict, F,
};

/// Writes a history event by event; time advances by 10 ns per event.
#[derive(Default)]
struct Script {
    recorder: HistoryRecorder,
    open: HashMap<u64, OpRef>,
    time_ns: u64,
}

fn int(value: i64) -> Value {
    Value::Int(value)
}

fn cas(expected: Option<i64>, new: i64) -> Value {
    Value::Cas { expected, new }
}

impl Script {
    fn tick(&mut self) -> u64 {
        self.time_ns += 10;
        self.time_ns
    }

    fn invoke_on(&mut self, process: u64, key: Option<&str>, f: F, value: Value) -> &mut Self {
        let time_ns = self.tick();
        let op = self.recorder.invoke(process, f, key, value, time_ns).expect("invoke");
        self.open.insert(process, op);
        self
    }

    fn invoke(&mut self, process: u64, f: F, value: Value) -> &mut Self {
        self.invoke_on(process, None, f, value)
    }

    fn complete(&mut self, process: u64, op_type: OpType, value: Value) -> &mut Self {
        let time_ns = self.tick();
        let op = self.open.remove(&process).expect("process has an open op");
        self.recorder.complete(op, op_type, value, time_ns).expect("complete");
        self
    }

    fn ok(&mut self, process: u64, value: Value) -> &mut Self {
        self.complete(process, OpType::Ok, value)
    }

    fn fail(&mut self, process: u64) -> &mut Self {
        self.complete(process, OpType::Fail, Value::Nil)
    }

    fn info(&mut self, process: u64) -> &mut Self {
        self.complete(process, OpType::Info, Value::Nil)
    }

    /// A whole operation that completes `ok` before anything else happens.
    fn op(&mut self, process: u64, f: F, argument: Value, result: Value) -> &mut Self {
        self.invoke(process, f, argument).ok(process, result)
    }

    fn run(&mut self) -> CheckResult {
        let history = std::mem::take(&mut self.recorder).finish();
        check(&history, &CheckConfig::default())
    }
}

fn invalid_key(result: &CheckResult) -> &Counterexample {
    assert_eq!(result.verdict, Verdict::Invalid, "{result}");
    assert!(!result.valid);
    let mut invalid = result.keys.iter().filter_map(|key| match &key.outcome {
        KeyOutcome::Invalid(counterexample) => Some(&**counterexample),
        _ => None,
    });
    let first = invalid.next().expect("an invalid key");
    assert!(invalid.next().is_none(), "exactly one invalid key");
    first
}

/// The (process, f, value) of each reported op, to compare compactly.
fn summary(ops: &[OpReport]) -> Vec<(u64, F, Value)> {
    ops.iter().map(|op| (op.process, op.f, op.value)).collect()
}

fn assert_valid(result: &CheckResult) {
    assert_eq!(result.verdict, Verdict::Valid, "{result}");
    assert!(result.valid);
    assert!(result.keys.iter().all(|key| key.outcome == KeyOutcome::Valid));
}

#[test]
fn sequential_history_is_valid() {
    let result = Script::default()
        .op(1, F::Read, Value::Nil, Value::Nil)
        .op(1, F::Write, int(1), int(1))
        .op(2, F::Read, Value::Nil, int(1))
        .op(2, F::Cas, cas(Some(1), 2), cas(Some(1), 2))
        .op(1, F::Read, Value::Nil, int(2))
        .run();
    assert_valid(&result);
    assert_eq!(result.keys.len(), 1);
    assert_eq!(result.keys[0].key, None);
    assert_eq!(result.keys[0].ops, 5);
}

#[test]
fn empty_history_is_valid() {
    let result = check(&History::default(), &CheckConfig::default());
    assert_valid(&result);
    assert!(result.keys.is_empty());
}

#[test]
fn stale_read_is_invalid_and_explained() {
    let result = Script::default()
        .op(1, F::Write, int(1), int(1))
        .op(2, F::Write, int(2), int(2))
        .op(3, F::Read, Value::Nil, int(1))
        .run();
    let counterexample = invalid_key(&result);
    assert_eq!(counterexample.key, None);
    assert_eq!(summary(&counterexample.prefix), vec![(1, F::Write, int(1)), (2, F::Write, int(2))]);
    assert_eq!(counterexample.prefix_value, Some(2));
    assert_eq!(
        counterexample.blocked,
        OpReport {
            process: 3,
            f: F::Read,
            value: int(1),
            outcome: OpType::Ok,
            invoke_index: 4,
            invoke_time_ns: 50,
            complete_time_ns: Some(60),
        }
    );
    assert_eq!(summary(&counterexample.candidates), vec![(3, F::Read, int(1))]);
    assert_eq!(
        summary(&counterexample.window),
        vec![(1, F::Write, int(1)), (2, F::Write, int(2)), (3, F::Read, int(1))]
    );
    assert_eq!(
        result.to_string(),
        "History is NOT linearizable: 1 keys, 3 ops checked.\n\
         the default register is not linearizable.\n  \
         Longest linearizable prefix: 2 ops, after which the register holds 2.\n    \
         process 1 write 1 (event 0, invoked at 10 ns, ok at 20 ns)\n    \
         process 2 write 2 (event 2, invoked at 30 ns, ok at 40 ns)\n  \
         Could not linearize: process 3 read -> 1 (event 4, invoked at 50 ns, ok at 60 ns)\n  \
         It completed before it could take effect; no op pending then can be linearized next:\n    \
         process 3 read -> 1 (event 4, invoked at 50 ns, ok at 60 ns)\n  \
         Smallest failing window found (3 ops; no order of them works):\n    \
         process 1 write 1 (event 0, invoked at 10 ns, ok at 20 ns)\n    \
         process 2 write 2 (event 2, invoked at 30 ns, ok at 40 ns)\n    \
         process 3 read -> 1 (event 4, invoked at 50 ns, ok at 60 ns)\n"
    );
}

#[test]
fn lost_write_is_invalid() {
    let result = Script::default()
        .op(1, F::Write, int(1), int(1))
        .op(2, F::Write, int(2), int(2))
        .op(3, F::Read, Value::Nil, int(2))
        .op(1, F::Write, int(3), int(3))
        .op(3, F::Read, Value::Nil, int(2))
        .run();
    let counterexample = invalid_key(&result);
    assert_eq!(counterexample.prefix.len(), 4);
    assert_eq!(counterexample.prefix_value, Some(3));
    assert_eq!((counterexample.blocked.process, counterexample.blocked.value), (3, int(2)));
    assert_eq!(counterexample.blocked.invoke_index, 8);
}

#[test]
fn cas_from_a_wrong_value_is_invalid() {
    let result =
        Script::default().op(1, F::Write, int(1), int(1)).op(2, F::Cas, cas(Some(2), 3), cas(Some(2), 3)).run();
    let counterexample = invalid_key(&result);
    assert_eq!(summary(&counterexample.prefix), vec![(1, F::Write, int(1))]);
    assert_eq!(counterexample.prefix_value, Some(1));
    assert_eq!(summary(std::slice::from_ref(&counterexample.blocked)), vec![(2, F::Cas, cas(Some(2), 3))]);
}

#[test]
fn cas_from_nil_needs_a_never_written_register() {
    let valid = Script::default().op(1, F::Cas, cas(None, 1), cas(None, 1)).op(2, F::Read, Value::Nil, int(1)).run();
    assert_valid(&valid);
    let invalid = Script::default().op(1, F::Write, int(5), int(5)).op(2, F::Cas, cas(None, 1), cas(None, 1)).run();
    assert_eq!(invalid_key(&invalid).blocked.process, 2);
}

#[test]
fn failed_cas_is_ignored() {
    let result = Script::default()
        .op(1, F::Write, int(1), int(1))
        .invoke(2, F::Cas, cas(Some(7), 8))
        .fail(2)
        .op(3, F::Read, Value::Nil, int(1))
        .run();
    assert_valid(&result);
    assert_eq!(result.keys[0].ops, 2);
}

#[test]
fn read_of_a_value_never_written_is_invalid() {
    let result = Script::default()
        .op(1, F::Write, int(1), int(1))
        .invoke(2, F::Write, int(2))
        .invoke(3, F::Read, Value::Nil)
        .ok(3, int(42))
        .ok(2, int(2))
        .run();
    let counterexample = invalid_key(&result);
    assert_eq!((counterexample.blocked.process, counterexample.blocked.value), (3, int(42)));
    assert_eq!(counterexample.prefix_value, Some(2));
    assert_eq!(summary(&counterexample.prefix), vec![(1, F::Write, int(1)), (2, F::Write, int(2))]);
    assert_eq!(
        summary(&counterexample.candidates),
        vec![(3, F::Read, int(42))],
        "the write was linearized, so only the read is left"
    );
}

#[test]
fn read_of_nil_reads_the_initial_state() {
    let valid = Script::default().op(1, F::Read, Value::Nil, Value::Nil).run();
    assert_valid(&valid);
    let invalid = Script::default().op(1, F::Write, int(1), int(1)).op(1, F::Read, Value::Nil, Value::Nil).run();
    assert_eq!(invalid_key(&invalid).prefix_value, Some(1));
}

#[test]
fn concurrent_ops_can_be_ordered_either_way() {
    // A read concurrent with a write may see the old or the new value.
    for seen in [None, Some(1)] {
        let result = Script::default()
            .invoke(1, F::Write, int(1))
            .invoke(2, F::Read, Value::Nil)
            .ok(2, seen.map_or(Value::Nil, Value::Int))
            .ok(1, int(1))
            .run();
        assert_valid(&result);
    }
    // Two concurrent writes may land in either order.
    for last in [1, 2] {
        let result = Script::default()
            .invoke(1, F::Write, int(1))
            .invoke(2, F::Write, int(2))
            .ok(2, int(2))
            .ok(1, int(1))
            .op(3, F::Read, Value::Nil, int(last))
            .op(3, F::Read, Value::Nil, int(last))
            .run();
        assert_valid(&result);
    }
    // But not both orders at once: later reads cannot flip back.
    let flip = Script::default()
        .invoke(1, F::Write, int(1))
        .invoke(2, F::Write, int(2))
        .ok(2, int(2))
        .ok(1, int(1))
        .op(3, F::Read, Value::Nil, int(1))
        .op(3, F::Read, Value::Nil, int(2))
        .run();
    let counterexample = invalid_key(&flip);
    assert_eq!(counterexample.prefix_value, Some(1));
    assert_eq!(counterexample.blocked.invoke_index, 6);
}

#[test]
fn info_op_may_take_effect_later_or_never() {
    // Never took effect.
    let never = Script::default().invoke(1, F::Write, int(1)).info(1).op(2, F::Read, Value::Nil, Value::Nil).run();
    assert_valid(&never);
    // Took effect, long after its client gave up.
    let later = Script::default()
        .invoke(1, F::Write, int(1))
        .info(1)
        .op(2, F::Read, Value::Nil, Value::Nil)
        .op(2, F::Read, Value::Nil, int(1))
        .op(2, F::Read, Value::Nil, int(1))
        .run();
    assert_valid(&later);
    // An info cas that took effect.
    let info_cas = Script::default()
        .op(1, F::Write, int(1), int(1))
        .invoke(2, F::Cas, cas(Some(1), 2))
        .info(2)
        .op(3, F::Read, Value::Nil, int(2))
        .run();
    assert_valid(&info_cas);
}

#[test]
fn info_op_cannot_take_effect_before_it_was_invoked_or_twice() {
    let before = Script::default().op(2, F::Read, Value::Nil, int(1)).invoke(1, F::Write, int(1)).info(1).run();
    let counterexample = invalid_key(&before);
    assert!(counterexample.prefix.is_empty());
    assert_eq!(counterexample.blocked.process, 2);
    let twice = Script::default()
        .invoke(1, F::Write, int(1))
        .info(1)
        .op(2, F::Write, int(2), int(2))
        .op(3, F::Read, Value::Nil, int(1))
        .op(3, F::Read, Value::Nil, int(2))
        .run();
    let counterexample = invalid_key(&twice);
    assert_eq!(counterexample.prefix_value, Some(1));
    assert_eq!((counterexample.blocked.process, counterexample.blocked.value), (3, int(2)));
    // The info write shows in the prefix as never completed.
    let info_write = counterexample.prefix.iter().find(|op| op.process == 1).expect("the info write was linearized");
    assert_eq!((info_write.outcome, info_write.complete_time_ns), (OpType::Info, Some(20)));
}

#[test]
fn never_completed_op_counts_as_info() {
    let result = Script::default()
        .invoke(1, F::Write, int(1))
        .op(2, F::Read, Value::Nil, Value::Nil)
        .op(2, F::Read, Value::Nil, int(1))
        .run();
    assert_valid(&result);
    let result = Script::default().invoke(1, F::Cas, cas(Some(4), 1)).op(2, F::Read, Value::Nil, int(1)).run();
    let counterexample = invalid_key(&result);
    assert_eq!(counterexample.candidates.len(), 2);
    assert_eq!(counterexample.candidates[0].complete_time_ns, None);
    assert!(counterexample.to_string().contains("process 1 cas [4, 1] (event 0, invoked at 10 ns, never completed)"));
}

#[test]
fn keys_are_checked_independently() {
    let result = Script::default()
        .invoke_on(1, Some("a"), F::Write, int(1))
        .ok(1, int(1))
        .invoke_on(2, Some("b"), F::Read, Value::Nil)
        .ok(2, Value::Nil)
        .invoke_on(2, Some("b"), F::Write, int(1))
        .ok(2, int(1))
        .invoke_on(3, Some("a"), F::Read, Value::Nil)
        .ok(3, int(1))
        .invoke_on(3, Some("b"), F::Read, Value::Nil)
        .ok(3, Value::Nil)
        .run();
    let keys: Vec<(Option<&str>, u64, bool)> =
        result.keys.iter().map(|key| (key.key.as_deref(), key.ops, key.outcome == KeyOutcome::Valid)).collect();
    assert_eq!(keys, vec![(Some("a"), 2, true), (Some("b"), 3, false)]);
    let counterexample = invalid_key(&result);
    assert_eq!(counterexample.key.as_deref(), Some("b"));
    assert_eq!(result.failures().count(), 1);
    assert!(result
        .to_string()
        .starts_with("History is NOT linearizable: 2 keys, 5 ops checked.\nkey \"b\" is not linearizable."));
}

#[test]
fn exhausted_budget_is_unknown_not_valid() {
    let mut script = Script::default();
    // Eight concurrent writes, then a read that forces them all to be tried.
    for process in 0..8 {
        script.invoke(process, F::Write, int(process as i64));
    }
    for process in 0..8 {
        script.ok(process, int(process as i64));
    }
    script.op(9, F::Read, Value::Nil, int(99));
    let history = std::mem::take(&mut script.recorder).finish();
    let tight = CheckConfig { states_max: 10, steps_max: 1_000_000, ..CheckConfig::default() };
    let result = check(&history, &tight);
    assert_eq!(result.verdict, Verdict::Unknown);
    assert!(!result.valid);
    assert_eq!(result.keys[0].outcome, KeyOutcome::Unknown { states_max: 10, steps_max: 1_000_000 });
    assert_eq!(result.keys[0].states, 10);
    assert!(result.to_string().starts_with("History is UNKNOWN (search budget exhausted)"));
    assert!(result.to_string().contains("the search stopped after 10 states"));
    // With the default budget the same history is decided: invalid.
    let full = check(&history, &CheckConfig::default());
    assert_eq!(full.verdict, Verdict::Invalid);
    assert_eq!(invalid_key(&full).prefix.len(), 8);
}
