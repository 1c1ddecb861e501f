//! Test support: a simulated linearizable register store that records its
//! history, and small helpers for hand-written histories.

#![allow(dead_code)]

use std::collections::HashMap;

use lockstep_jepsen::{History, HistoryRecorder, Op, OpRef, OpType, Value, F};

/// SplitMix64, a deterministic generator for test choices.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One scheduling decision of the simulated store: which action, and three
/// bytes that pick among its options.
pub type Choice = (u8, u8, u8, u8);

struct Pending {
    op: OpRef,
    f: F,
    key: usize,
    argument: Value,
    /// Set once the operation has taken effect: what the client will be
    /// told (`Ok` with a value, or `Fail` for a cas that did not match).
    result: Option<(OpType, Value)>,
}

/// An operation whose client was told `info` before it took effect; it may
/// still take effect later.
struct Floating {
    f: F,
    key: usize,
    argument: Value,
}

/// A store of `keys` registers served to `processes` clients. Each operation
/// takes effect atomically at one point between its invocation and its
/// completion (or never, for `fail` and some `info` ones), so every history
/// it records is linearizable.
pub struct SimulatedStore {
    registers: Vec<Option<i64>>,
    pending: Vec<Option<Pending>>,
    floating: Vec<Floating>,
    recorder: HistoryRecorder,
    next_value: i64,
    /// Values written are `1..=values_max`, cycling; `i64::MAX` makes every
    /// written value unique.
    values_max: i64,
    time_ns: u64,
    pub invocations: u64,
}

impl SimulatedStore {
    pub fn new(processes: usize, keys: usize) -> SimulatedStore {
        SimulatedStore {
            registers: vec![None; keys],
            pending: (0..processes).map(|_| None).collect(),
            floating: Vec::new(),
            recorder: HistoryRecorder::new(),
            next_value: 1,
            values_max: i64::MAX,
            time_ns: 0,
            invocations: 0,
        }
    }

    /// Like `new`, but clients write only the values `1..=values_max`, so
    /// that different writes of one value cannot be told apart, as in
    /// Jepsen's register workloads.
    pub fn with_values_max(processes: usize, keys: usize, values_max: i64) -> SimulatedStore {
        SimulatedStore { values_max, ..SimulatedStore::new(processes, keys) }
    }

    fn fresh_value(&mut self) -> i64 {
        self.next_value += 1;
        (self.next_value - 1) % self.values_max + 1
    }

    fn key_name(key: usize) -> String {
        format!("k{key}")
    }

    /// Applies an operation to the registers; returns the client's answer.
    fn apply(&mut self, f: F, key: usize, argument: Value) -> (OpType, Value) {
        let register = &mut self.registers[key];
        match (f, argument) {
            (F::Read, _) => (OpType::Ok, register.map_or(Value::Nil, Value::Int)),
            (F::Write, Value::Int(value)) => {
                *register = Some(value);
                (OpType::Ok, argument)
            }
            (F::Cas, Value::Cas { expected, new }) if *register == expected => {
                *register = Some(new);
                (OpType::Ok, argument)
            }
            (F::Cas, _) => (OpType::Fail, argument),
            (f, value) => panic!("simulator built {f} with {value}"),
        }
    }

    fn processes_where(&self, applied: bool) -> Vec<usize> {
        (0..self.pending.len())
            .filter(|&process| self.pending[process].as_ref().is_some_and(|p| p.result.is_some() == applied))
            .collect()
    }

    pub fn step(&mut self, (action, a, b, c): Choice) {
        self.time_ns += 1 + u64::from(c % 7);
        match action % 6 {
            0 | 1 => {
                let process = usize::from(a) % self.pending.len();
                if self.pending[process].is_some() {
                    return;
                }
                let key = usize::from(c) % self.registers.len();
                let (f, argument) = match b % 3 {
                    0 => (F::Read, Value::Nil),
                    1 => (F::Write, Value::Int(self.fresh_value())),
                    _ => {
                        // Half the cas ops expect the current value, so some
                        // succeed; the rest expect a recent or absent one.
                        let expected = if b & 8 == 0 {
                            self.registers[key]
                        } else if b & 16 == 0 {
                            None
                        } else {
                            Some((self.next_value - i64::from(c % 3)).rem_euclid(self.values_max) + 1)
                        };
                        (F::Cas, Value::Cas { expected, new: self.fresh_value() })
                    }
                };
                let key_name = SimulatedStore::key_name(key);
                let op = self
                    .recorder
                    .invoke(process as u64, f, Some(&key_name), argument, self.time_ns)
                    .expect("idle process may invoke");
                self.invocations += 1;
                self.pending[process] = Some(Pending { op, f, key, argument, result: None });
            }
            2 => {
                let candidates = self.processes_where(false);
                if let Some(&process) = candidates.get(usize::from(a) % candidates.len().max(1)) {
                    let (f, key, argument) = {
                        let p = self.pending[process].as_ref().expect("pending");
                        (p.f, p.key, p.argument)
                    };
                    let result = self.apply(f, key, argument);
                    self.pending[process].as_mut().expect("pending").result = Some(result);
                }
            }
            3 => {
                let candidates = self.processes_where(true);
                if let Some(&process) = candidates.get(usize::from(a) % candidates.len().max(1)) {
                    let crash = b % 10 == 0;
                    self.complete(process, crash);
                }
            }
            4 => {
                let candidates = self.processes_where(false);
                if let Some(&process) = candidates.get(usize::from(a) % candidates.len().max(1)) {
                    let p = self.pending[process].take().expect("pending");
                    let op_type = if b % 2 == 0 {
                        OpType::Fail
                    } else {
                        self.floating.push(Floating { f: p.f, key: p.key, argument: p.argument });
                        OpType::Info
                    };
                    self.recorder.complete(p.op, op_type, p.argument, self.time_ns).expect("outstanding op completes");
                }
            }
            _ => {
                if !self.floating.is_empty() {
                    let index = usize::from(a) % self.floating.len();
                    let floating = self.floating.swap_remove(index);
                    let _ = self.apply(floating.f, floating.key, floating.argument);
                }
            }
        }
    }

    fn complete(&mut self, process: usize, crash: bool) {
        let p = self.pending[process].take().expect("pending");
        let (op_type, value) = p.result.expect("applied");
        let op_type = if crash { OpType::Info } else { op_type };
        self.recorder.complete(p.op, op_type, value, self.time_ns).expect("outstanding op");
    }

    /// Completes every operation that took effect; operations that did not
    /// stay outstanding (and so count as `info`).
    pub fn finish(mut self) -> History {
        for process in self.processes_where(true) {
            self.time_ns += 1;
            self.complete(process, false);
        }
        self.recorder.finish()
    }
}

/// Records a history from `choices`, every written value unique.
pub fn simulate(processes: usize, keys: usize, choices: &[Choice]) -> History {
    simulate_with_values_max(processes, keys, i64::MAX, choices)
}

/// Records a history from `choices`, writing only values `1..=values_max`.
pub fn simulate_with_values_max(processes: usize, keys: usize, values_max: i64, choices: &[Choice]) -> History {
    let mut store = SimulatedStore::with_values_max(processes, keys, values_max);
    for &choice in choices {
        store.step(choice);
    }
    store.finish()
}

/// Records a history with at least `invocations` operations, its choices
/// drawn from `seed`. Only one in `crash_one_in` of the choices that would
/// fail or crash an operation before it took effect does so; the others let
/// an operation take effect instead.
pub fn simulate_seeded(
    processes: usize,
    keys: usize,
    invocations: u64,
    values_max: i64,
    crash_one_in: u8,
    seed: u64,
) -> History {
    let mut rng = SplitMix(seed);
    let mut store = SimulatedStore::with_values_max(processes, keys, values_max);
    while store.invocations < invocations {
        let mut bytes = rng.next_u64().to_le_bytes();
        if bytes[0] % 6 == 4 && bytes[4] % crash_one_in.max(1) > 0 {
            bytes[0] = 2;
        }
        store.step((bytes[0], bytes[1], bytes[2], bytes[3]));
    }
    store.finish()
}

/// Rebuilds a history from (possibly edited) events.
pub fn rebuild(ops: Vec<Op>) -> History {
    let mut recorder = HistoryRecorder::new();
    for op in ops {
        recorder.push(op).expect("edited history stays well formed");
    }
    recorder.finish()
}

/// One operation as the brute-force search sees it.
struct Candidate {
    f: F,
    argument: Value,
    read: Option<i64>,
    invoked_at: usize,
    /// Index of the `ok` event; `None` for ops that may never take effect.
    returned_at: Option<usize>,
}

/// Tries every order consistent with real time, separately per key.
pub fn brute_force_valid(history: &History) -> bool {
    let events = history.ops();
    let mut by_key: HashMap<Option<String>, Vec<Candidate>> = HashMap::new();
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut completion: HashMap<usize, usize> = HashMap::new();
    for (index, op) in events.iter().enumerate() {
        if op.op_type == OpType::Invoke {
            open.insert(op.process, index);
        } else if let Some(invoke) = open.remove(&op.process) {
            completion.insert(invoke, index);
        }
    }
    for (index, op) in events.iter().enumerate() {
        if op.op_type != OpType::Invoke {
            continue;
        }
        let done: Option<&Op> = completion.get(&index).map(|&at| &events[at]);
        let outcome = done.map_or(OpType::Info, |done| done.op_type);
        if outcome == OpType::Fail || (op.f == F::Read && outcome != OpType::Ok) {
            continue;
        }
        let read = match done.map(|done| done.value) {
            Some(Value::Int(value)) if op.f == F::Read => Some(value),
            _ => None,
        };
        let returned_at = if outcome == OpType::Ok { completion.get(&index).copied() } else { None };
        by_key.entry(op.key.clone()).or_default().push(Candidate {
            f: op.f,
            argument: op.value,
            read,
            invoked_at: index,
            returned_at,
        });
    }
    by_key.values().all(|ops| search(ops, &mut vec![false; ops.len()], None))
}

fn search(ops: &[Candidate], done: &mut Vec<bool>, state: Option<i64>) -> bool {
    let required_left = ops.iter().zip(done.iter()).any(|(op, &d)| !d && op.returned_at.is_some());
    if !required_left {
        return true;
    }
    for next in 0..ops.len() {
        if done[next] {
            continue;
        }
        // `next` may go first only if no other pending op returned before it
        // was invoked.
        let blocked = ops.iter().enumerate().any(|(other, op)| {
            other != next && !done[other] && op.returned_at.is_some_and(|at| at < ops[next].invoked_at)
        });
        if blocked {
            continue;
        }
        let after = match (ops[next].f, ops[next].argument) {
            (F::Read, _) if ops[next].read == state => Some(state),
            (F::Write, Value::Int(value)) => Some(Some(value)),
            (F::Cas, Value::Cas { expected, new }) if expected == state => Some(Some(new)),
            _ => None,
        };
        if let Some(after) = after {
            done[next] = true;
            let found = search(ops, done, after);
            done[next] = false;
            if found {
                return true;
            }
        }
    }
    false
}
