//! Checking a register history: split it by key, run the search on each key,
//! and explain what it found.
//!
//! Linearizability is compositional (Herlihy & Wing's locality, the "P" in
//! P-compositionality): a history is linearizable exactly when the
//! sub-history of every key is, so each key is searched on its own.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::history::History;
use crate::model::{Register, RegisterOp, WindowRegister, WindowState};
use crate::necessary::{self, Violation};
use crate::op::{OpType, Value, F};
use crate::report::{CheckResult, Counterexample, KeyOutcome, KeyResult, OpReport, Verdict};
use crate::wgl::{self, Event, Limits, Outcome, Search, Stuck};

/// The search budget, applied to each key separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckConfig {
    /// The most distinct (linearized set, register value) pairs to remember
    /// for one key. Each is kept as a 128-bit fingerprint and costs about 40
    /// bytes whatever the key's length. Values above `u32::MAX - 1` act as
    /// that.
    pub states_max: u64,
    /// The most model steps to take for one key; bounds the time spent.
    pub steps_max: u64,
    /// The most wall-clock time the whole check may take; `None` for no
    /// bound. Keys not decided in time are unknown.
    pub time_max: Option<Duration>,
    /// The steps a key's search gets before the cheap necessary conditions
    /// and short windows are tried; each later slice is twice as long. Small
    /// histories are decided within the first slice (2^20 by default); tests
    /// set 1 to exercise the other paths on every history.
    pub slice_steps: u64,
}

impl Default for CheckConfig {
    /// Ten million states (about 400 MB of memo) and a billion steps per
    /// key: under a minute at worst on one core, and well under a second for
    /// ordinary histories; no time bound.
    fn default() -> CheckConfig {
        CheckConfig { states_max: 10_000_000, steps_max: 1_000_000_000, time_max: None, slice_steps: 1 << 20 }
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
    let deadline = config.time_max.and_then(|time_max| Instant::now().checked_add(time_max));
    let limits = Limits { states_max: config.states_max, steps_max: config.steps_max, deadline };
    let keys: Vec<KeyResult> =
        split_by_key(history).into_iter().map(|sub| check_key(&sub, limits, config.slice_steps.max(1))).collect();
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
    let deadlines = open_op_deadlines(&candidates, &unobserved);
    let mut sub = SubHistory { key, ops: Vec::new(), reports: Vec::new(), events: Vec::new() };
    // Sort keys: twice the event index, and one less for a return that
    // must come just before that event.
    let mut timeline: Vec<(u64, Event)> = Vec::with_capacity(candidates.len() * 2);
    for ((candidate, unobserved), deadline) in candidates.into_iter().zip(unobserved).zip(deadlines) {
        if unobserved {
            continue;
        }
        let id = sub.ops.len() as u32;
        sub.ops.push(candidate.op);
        sub.reports.push(candidate.report);
        timeline.push((u64::from(candidate.invoke_index) * 2, Event::Call(id)));
        if let Some(index) = candidate.return_index {
            timeline.push((u64::from(index) * 2, Event::Return(id)));
        } else if let Some(index) = deadline {
            timeline.push((u64::from(index) * 2 - 1, Event::Return(id)));
        }
    }
    timeline.sort_unstable_by_key(|&(index, _)| index);
    sub.events = timeline.into_iter().map(|(_, event)| event).collect();
    sub
}

/// For each operation without a return (`info`) that is the only one to
/// write its value, where an operation that did return observed that value
/// (read it, or a cas expected it): the earliest such return. The operation
/// certainly took effect before it, so it is given a return just before it,
/// which keeps it from being tried at every later point. Operations whose
/// observer returned before they were invoked are left alone (the search
/// finds that violation).
fn open_op_deadlines(candidates: &[Candidate], unobserved: &[bool]) -> Vec<Option<u32>> {
    let mut writers: HashMap<i64, u32> = HashMap::new();
    let mut first_observed: HashMap<i64, u32> = HashMap::new();
    for (candidate, &unobserved) in candidates.iter().zip(unobserved) {
        if unobserved {
            continue;
        }
        if let RegisterOp::Write(new) | RegisterOp::Cas { new, .. } = candidate.op {
            *writers.entry(new).or_insert(0) += 1;
        }
        let observed = match candidate.op {
            RegisterOp::Read(read) => read,
            RegisterOp::Cas { expected, .. } => expected,
            RegisterOp::Write(_) => None,
        };
        if let (Some(value), Some(index)) = (observed, candidate.return_index) {
            let first = first_observed.entry(value).or_insert(index);
            *first = (*first).min(index);
        }
    }
    candidates
        .iter()
        .zip(unobserved)
        .map(|(candidate, &unobserved)| {
            if unobserved || candidate.return_index.is_some() {
                return None;
            }
            let (RegisterOp::Write(new) | RegisterOp::Cas { new, .. }) = candidate.op else { return None };
            if writers.get(&new) != Some(&1) {
                return None;
            }
            first_observed.get(&new).copied().filter(|&index| index > candidate.invoke_index)
        })
        .collect()
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

/// The window sizes tried around the furthest dead end, in events.
const WINDOW_EVENTS: [usize; 7] = [8, 32, 128, 512, 2048, 8192, 32768];
/// The step budget of one window search.
const WINDOW_STEPS_MAX: u64 = 1 << 20;

fn check_key(sub: &SubHistory, limits: Limits, first_slice_steps: u64) -> KeyResult {
    let mut search = Search::new(&Register, &sub.ops, &sub.events, limits);
    let mut slice = first_slice_steps;
    let mut windows_tried: Option<usize> = None;
    let outcome = loop {
        if let Some(outcome) = search.run(slice) {
            break outcome;
        }
        if slice == first_slice_steps {
            if let Some(violation) = necessary::impossible_observation(&sub.ops, &sub.events) {
                let effort = search.effort();
                return KeyResult {
                    key: sub.key.clone(),
                    ops: sub.ops.len() as u64,
                    states: effort.states,
                    steps: effort.steps,
                    outcome: KeyOutcome::Invalid(Box::new(violation_counterexample(sub, violation))),
                };
            }
        }
        slice = slice.saturating_mul(2);
        // Still undecided: a history that is not linearizable gets stuck at
        // its first impossible return, so look for a short window there
        // that cannot be linearized from any start.
        let Some(end) = search.furthest_return() else { continue };
        if windows_tried == Some(end) {
            continue;
        }
        windows_tried = Some(end);
        if let Some(window) = failing_window(sub, end + 1, limits) {
            let effort = search.effort();
            let counterexample = window_counterexample(sub, window, limits);
            return KeyResult {
                key: sub.key.clone(),
                ops: sub.ops.len() as u64,
                states: effort.states,
                steps: effort.steps,
                outcome: KeyOutcome::Invalid(Box::new(counterexample)),
            };
        }
    };
    let (effort, outcome) = match outcome {
        Outcome::Linearizable(effort) => (effort, KeyOutcome::Valid),
        Outcome::Exhausted(effort) => {
            (effort, KeyOutcome::Unknown { states_max: limits.states_max, steps_max: limits.steps_max })
        }
        Outcome::NotLinearizable(effort, stuck) => {
            let stuck = plain_explanation(sub, limits).unwrap_or(stuck);
            let report = |id: &u32| sub.reports[*id as usize].clone();
            // The smallest failing window: a necessary condition's two or
            // three operations, else a minimized window at the furthest
            // dead end.
            let window = match necessary::impossible_observation(&sub.ops, &sub.events) {
                Some(violation) => violation_counterexample(sub, violation).window,
                None => search
                    .furthest_return()
                    .and_then(|end| failing_window(sub, end + 1, limits))
                    .map(|window| minimize(sub, window, limits))
                    .map(|window| window_ops(sub, window).into_iter().map(|id| report(&id)).collect())
                    .unwrap_or_default(),
            };
            let counterexample = Counterexample {
                key: sub.key.clone(),
                prefix: stuck.prefix.iter().map(report).collect(),
                prefix_value: stuck.state,
                blocked: report(&stuck.blocked),
                candidates: stuck.candidates.iter().map(report).collect(),
                window,
            };
            (effort, KeyOutcome::Invalid(Box::new(counterexample)))
        }
    };
    KeyResult { key: sub.key.clone(), ops: sub.ops.len() as u64, states: effort.states, steps: effort.steps, outcome }
}

/// The most operations, and steps, for which a violation is explained
/// again by the plain search.
const PLAIN_EXPLANATION_OPS_MAX: usize = 2_000;
const PLAIN_EXPLANATION_STEPS_MAX: u64 = 1 << 20;

/// For a small key found not linearizable: the deepest dead end of the
/// plain search, which names the operation a person would point at (the
/// stale read rather than the write it keeps from happening).
fn plain_explanation(sub: &SubHistory, limits: Limits) -> Option<Box<Stuck<Option<i64>>>> {
    if sub.ops.len() > PLAIN_EXPLANATION_OPS_MAX {
        return None;
    }
    let limits = Limits { steps_max: limits.steps_max.min(PLAIN_EXPLANATION_STEPS_MAX), ..limits };
    let mut search = Search::new(&Register, &sub.ops, &sub.events, limits).plain();
    match search.run(u64::MAX) {
        Some(Outcome::NotLinearizable(_, stuck)) => Some(stuck),
        _ => None,
    }
}

/// A window of a key's events: `start..end` in `SubHistory::events`.
type Window = (usize, usize);

/// The operations a window search sees, by id: those called inside it, and
/// those called before it that had not returned by its start. Reads among
/// the latter are left out (they constrain nothing once they may not
/// happen).
fn window_ops(sub: &SubHistory, (start, end): Window) -> Vec<u32> {
    let mut returned_before = vec![false; sub.ops.len()];
    let mut returned_inside = vec![false; sub.ops.len()];
    let mut called = Vec::new();
    for (index, event) in sub.events[..end].iter().enumerate() {
        match *event {
            Event::Call(id) => called.push((index, id)),
            Event::Return(id) if index < start => returned_before[id as usize] = true,
            Event::Return(id) => returned_inside[id as usize] = true,
        }
    }
    called
        .into_iter()
        .filter(|&(index, id)| {
            let read = matches!(sub.ops[id as usize], RegisterOp::Read(_));
            if index >= start {
                // A read that does not return inside the window may not
                // happen, so it constrains nothing.
                !read || returned_inside[id as usize]
            } else {
                !returned_before[id as usize] && !read
            }
        })
        .map(|(_, id)| id)
        .collect()
}

/// Searches one window; `Some(stuck)` if it certainly cannot be linearized.
///
/// Soundness: take a linearization of the whole key and the point after the
/// last operation that returned before the window. From there, up to the
/// first operation called after the window, it is a linearization of the
/// window: every operation returning inside the window is in it, operations
/// straddling either edge may or may not be (so they have no return here),
/// and the register starts with a value written before the window, or nil.
fn search_window(
    sub: &SubHistory,
    (start, end): Window,
    limits: Limits,
) -> Option<(Vec<u32>, Box<Stuck<WindowState>>)> {
    let ids = window_ops(sub, (start, end));
    let mut local = vec![u32::MAX; sub.ops.len()];
    let mut ops = Vec::with_capacity(ids.len());
    for (index, &id) in ids.iter().enumerate() {
        local[id as usize] = index as u32;
        ops.push(sub.ops[id as usize]);
    }
    let mut initial: HashSet<Option<i64>> = HashSet::from([None]);
    let mut events = Vec::with_capacity(ids.len() * 2);
    // Operations called before the window straddle its start: they may have
    // taken effect before it, so they keep no return (they may or may not
    // happen inside it).
    let mut straddles = vec![false; sub.ops.len()];
    for (index, event) in sub.events[..end].iter().enumerate() {
        match *event {
            Event::Call(id) => {
                if index < start {
                    straddles[id as usize] = true;
                    if let RegisterOp::Write(new) | RegisterOp::Cas { new, .. } = sub.ops[id as usize] {
                        initial.insert(Some(new));
                    }
                }
                if local[id as usize] != u32::MAX {
                    events.push(Event::Call(local[id as usize]));
                }
            }
            Event::Return(id) if !straddles[id as usize] && local[id as usize] != u32::MAX => {
                events.push(Event::Return(local[id as usize]));
            }
            Event::Return(_) => {}
        }
    }
    let model = WindowRegister { initial };
    let window_limits = Limits { steps_max: limits.steps_max.min(WINDOW_STEPS_MAX), ..limits };
    let outcome = wgl::check(&model, &ops, &events, window_limits);
    match outcome {
        Outcome::NotLinearizable(_, stuck) => Some((ids, stuck)),
        Outcome::Linearizable(_) | Outcome::Exhausted(_) => None,
    }
}

/// Tries windows of growing size that end at `end`; the first that cannot
/// be linearized.
fn failing_window(sub: &SubHistory, end: usize, limits: Limits) -> Option<Window> {
    let end = end.min(sub.events.len());
    for size in WINDOW_EVENTS {
        let window = (end.saturating_sub(size), end);
        if search_window(sub, window, limits).is_some() {
            return Some(window);
        }
        if window.0 == 0 {
            break;
        }
    }
    None
}

/// Shrinks a failing window: the latest start, then the earliest end, at
/// which it still fails (both are monotone: a window inside a linearizable
/// one is linearizable).
fn minimize(sub: &SubHistory, (start, end): Window, limits: Limits) -> Window {
    let fails = |window: Window| search_window(sub, window, limits).is_some();
    // The latest start in start..end that fails.
    let (mut low, mut high) = (start, end);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if fails((middle, end)) {
            low = middle;
        } else {
            high = middle;
        }
    }
    let start = low;
    // The earliest end in start+1..=end that fails.
    let (mut low, mut high) = (start, end);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if fails((start, middle)) {
            high = middle;
        } else {
            low = middle;
        }
    }
    (start, high)
}

/// Explains a violation of a necessary condition.
fn violation_counterexample(sub: &SubHistory, violation: Violation) -> Counterexample {
    let report = |id: u32| sub.reports[id as usize].clone();
    let prefix: Vec<OpReport> = violation.writer.into_iter().chain(violation.between).map(report).collect();
    let prefix_value = match violation.between.or(violation.writer).map(|id| sub.ops[id as usize]) {
        Some(RegisterOp::Write(value) | RegisterOp::Cas { new: value, .. }) => Some(value),
        _ => None,
    };
    let mut window = prefix.clone();
    window.push(report(violation.observer));
    window.sort_by_key(|op| op.invoke_index);
    Counterexample {
        key: sub.key.clone(),
        prefix,
        prefix_value,
        blocked: report(violation.observer),
        candidates: vec![report(violation.observer)],
        window,
    }
}

/// Explains a failing window found before the whole-key search decided.
fn window_counterexample(sub: &SubHistory, window: Window, limits: Limits) -> Counterexample {
    let window = minimize(sub, window, limits);
    let (ids, stuck) = search_window(sub, window, limits).expect("a minimized window still fails");
    let report = |local: &u32| sub.reports[ids[*local as usize] as usize].clone();
    Counterexample {
        key: sub.key.clone(),
        prefix: stuck.prefix.iter().map(report).collect(),
        prefix_value: match stuck.state {
            WindowState::Is(value) => value,
            WindowState::Any => None,
        },
        blocked: report(&stuck.blocked),
        candidates: stuck.candidates.iter().map(report).collect(),
        window: ids.iter().map(|&id| sub.reports[id as usize].clone()).collect(),
    }
}
