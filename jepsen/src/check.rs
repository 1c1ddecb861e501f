//! Checking a register history: split it by key, run the search on each key,
//! and explain what it found.
//!
//! Linearizability is compositional (Herlihy & Wing's locality, the "P" in
//! P-compositionality): a history is linearizable exactly when the
//! sub-history of every key is, so each key is searched on its own.

use std::collections::HashMap;

use crate::history::History;
use crate::model::{Register, RegisterOp};
use crate::op::{OpType, Value, F};
use crate::report::{CheckResult, Counterexample, KeyOutcome, KeyResult, OpReport, Verdict};
use crate::wgl::{self, Event, Limits, Outcome};

/// The search budget, applied to each key separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckConfig {
    /// The most distinct (linearized set, register value) pairs to remember
    /// for one key. Each costs about `ops / 8 + 40` bytes, with `ops` the
    /// key's operation count. Values above `u32::MAX - 1` act as that.
    pub states_max: u64,
    /// The most model steps to take for one key; bounds the time spent.
    pub steps_max: u64,
}

impl Default for CheckConfig {
    /// One million states and one hundred million steps per key: seconds at
    /// most, and well under a second for ordinary histories.
    fn default() -> CheckConfig {
        CheckConfig { states_max: 1_000_000, steps_max: 100_000_000 }
    }
}

/// Checks that `history` is linearizable as a set of independent registers,
/// one per key, each starting out `nil`.
///
/// `fail` operations are left out. `info` operations, and operations that
/// never completed, may take effect at any point after their invocation, or
/// never. A read that returned `nil` read a register never written. The
/// real-time order is the order of the history's events.
#[must_use]
pub fn check(history: &History, config: &CheckConfig) -> CheckResult {
    let limits = Limits { states_max: config.states_max, steps_max: config.steps_max };
    let keys: Vec<KeyResult> = split_by_key(history).into_iter().map(|sub| check_key(&sub, limits)).collect();
    let verdict = if keys.iter().any(|key| matches!(key.outcome, KeyOutcome::Invalid(_))) {
        Verdict::Invalid
    } else if keys.iter().any(|key| matches!(key.outcome, KeyOutcome::Unknown { .. })) {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    CheckResult { valid: verdict == Verdict::Valid, verdict, keys }
}

/// The operations of one key, ready for the search.
struct SubHistory {
    key: Option<String>,
    ops: Vec<RegisterOp>,
    /// Per operation, how a report shows it.
    reports: Vec<OpReport>,
    events: Vec<Event>,
}

/// One operation on its way into a [`SubHistory`].
struct Candidate {
    op: RegisterOp,
    report: OpReport,
    invoke_index: u32,
    /// The index of its `ok` event; `None` if it may never take effect.
    return_index: Option<u32>,
}

fn split_by_key(history: &History) -> Vec<SubHistory> {
    let events = history.ops();
    let mut keys: Vec<(Option<String>, Vec<Candidate>)> = Vec::new();
    let mut key_index: HashMap<Option<&str>, usize> = HashMap::new();
    for call in history.calls() {
        let invoke = &events[call.invoke as usize];
        let completion = call.complete.map(|index| &events[index as usize]);
        let outcome = completion.map_or(OpType::Info, |completion| completion.op_type);
        let op = match (invoke.f, invoke.value, outcome) {
            // A failed operation certainly did not happen.
            (_, _, OpType::Fail) => continue,
            // A read that never returned constrains nothing.
            (F::Read, _, OpType::Info) => continue,
            (F::Read, _, _) => match completion.and_then(|completion| completion.value.as_register()) {
                Some(read) => RegisterOp::Read(read),
                None => unreachable!("History admits only nil or integer values in read ok"),
            },
            (F::Write, Value::Int(value), _) => RegisterOp::Write(value),
            (F::Cas, Value::Cas { expected, new }, _) => RegisterOp::Cas { expected, new },
            (f, value, _) => unreachable!("History admits no {f} invocation with value {value}"),
        };
        let value = match op {
            RegisterOp::Read(read) => read.map_or(Value::Nil, Value::Int),
            _ => invoke.value,
        };
        let report = OpReport {
            process: invoke.process,
            f: invoke.f,
            value,
            outcome,
            invoke_index: u64::from(call.invoke),
            invoke_time_ns: invoke.time_ns,
            complete_time_ns: completion.map(|completion| completion.time_ns),
        };
        let return_index = if outcome == OpType::Ok { call.complete } else { None };
        let index = *key_index.entry(invoke.key.as_deref()).or_insert_with(|| {
            keys.push((invoke.key.clone(), Vec::new()));
            keys.len() - 1
        });
        keys[index].1.push(Candidate { op, report, invoke_index: call.invoke, return_index });
    }
    keys.into_iter().map(|(key, candidates)| sub_history(key, candidates)).collect()
}

/// Numbers the operations of one key and orders their calls and returns.
fn sub_history(key: Option<String>, candidates: Vec<Candidate>) -> SubHistory {
    let unobserved = unobserved_open_ops(&candidates);
    let mut sub = SubHistory { key, ops: Vec::new(), reports: Vec::new(), events: Vec::new() };
    let mut timeline: Vec<(u32, Event)> = Vec::with_capacity(candidates.len() * 2);
    for (candidate, unobserved) in candidates.into_iter().zip(unobserved) {
        if unobserved {
            continue;
        }
        let id = sub.ops.len() as u32;
        sub.ops.push(candidate.op);
        sub.reports.push(candidate.report);
        timeline.push((candidate.invoke_index, Event::Call(id)));
        if let Some(index) = candidate.return_index {
            timeline.push((index, Event::Return(id)));
        }
    }
    timeline.sort_unstable_by_key(|&(index, _)| index);
    sub.events = timeline.into_iter().map(|(_, event)| event).collect();
    sub
}

/// Marks the operations without a return (`info`) whose new value no read
/// returned and no cas expected, counting only operations not marked.
///
/// Leaving them out changes no verdict. In a linearization that places such
/// an operation, the next operation cannot be a read or a cas (both would
/// observe the value), so it is a write or there is none; without the
/// operation, that write leaves the same state. The marking repeats, since a
/// marked cas no longer observes its expected value.
fn unobserved_open_ops(candidates: &[Candidate]) -> Vec<bool> {
    let mut observers: HashMap<i64, u64> = HashMap::new();
    let mut open_by_value: HashMap<i64, Vec<usize>> = HashMap::new();
    for (index, candidate) in candidates.iter().enumerate() {
        let observed = match candidate.op {
            RegisterOp::Read(read) => read,
            RegisterOp::Cas { expected, .. } => expected,
            RegisterOp::Write(_) => None,
        };
        if let Some(value) = observed {
            *observers.entry(value).or_insert(0) += 1;
        }
        if candidate.return_index.is_none() {
            if let RegisterOp::Write(new) | RegisterOp::Cas { new, .. } = candidate.op {
                open_by_value.entry(new).or_default().push(index);
            }
        }
    }
    let mut unobserved = vec![false; candidates.len()];
    let mut work: Vec<i64> = open_by_value.keys().copied().filter(|value| !observers.contains_key(value)).collect();
    while let Some(value) = work.pop() {
        for index in open_by_value.remove(&value).unwrap_or_default() {
            unobserved[index] = true;
            let RegisterOp::Cas { expected: Some(expected), .. } = candidates[index].op else {
                continue;
            };
            let Some(count) = observers.get_mut(&expected) else { continue };
            *count -= 1;
            if *count == 0 {
                observers.remove(&expected);
                if open_by_value.contains_key(&expected) {
                    work.push(expected);
                }
            }
        }
    }
    unobserved
}

fn check_key(sub: &SubHistory, limits: Limits) -> KeyResult {
    let outcome = wgl::check(&Register, &sub.ops, &sub.events, limits);
    let (effort, outcome) = match outcome {
        Outcome::Linearizable(effort) => (effort, KeyOutcome::Valid),
        Outcome::Exhausted(effort) => {
            (effort, KeyOutcome::Unknown { states_max: limits.states_max, steps_max: limits.steps_max })
        }
        Outcome::NotLinearizable(effort, stuck) => {
            let report = |id: &u32| sub.reports[*id as usize].clone();
            let counterexample = Counterexample {
                key: sub.key.clone(),
                prefix: stuck.prefix.iter().map(report).collect(),
                prefix_value: stuck.state,
                blocked: report(&stuck.blocked),
                candidates: stuck.candidates.iter().map(report).collect(),
            };
            (effort, KeyOutcome::Invalid(Box::new(counterexample)))
        }
    };
    KeyResult { key: sub.key.clone(), ops: sub.ops.len() as u64, states: effort.states, steps: effort.steps, outcome }
}
