//! Synthetic single-register histories for tests and benchmarks: ones that
//! are linearizable by construction, and corruptions of them that are
//! certainly not.
//!
//! [`linearizable_history`] lets `clients` clients run random `read`,
//! `write` and `cas` operations back to back. Each operation is given an
//! interval and takes effect at a random instant inside it; the register is
//! applied in the order of those instants, which fixes what reads return and
//! which cas succeed. A fraction of operations end `info`: half of those
//! take effect (possibly after the client gave up on them), half never, and
//! the client carries on under a fresh process id, as Jepsen's do.
//!
//! [`corrupt`] then edits one spot of such a history (written values must be
//! unique, the default) so that no linearization can exist.
//!
//! Everything is deterministic in the seed.

use std::collections::HashMap;

use crate::history::{History, HistoryRecorder};
use crate::op::{Op, OpType, Value, F};

/// What [`linearizable_history`] generates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// Operations to invoke, in total over all clients.
    pub ops: u64,
    /// Clients running concurrently; each runs one operation at a time.
    pub clients: u32,
    /// The fraction of operations that end `info` (0.005 is 0.5 %).
    pub info_fraction: f64,
    /// Written values cycle through `1..=values_max`; `i64::MAX` (the
    /// default) makes every written value unique.
    pub values_max: i64,
    /// The key every event names; `None` leaves `key` out.
    pub key: Option<&'static str>,
    /// Seeds every random choice.
    pub seed: u64,
}

impl Default for GeneratorConfig {
    fn default() -> GeneratorConfig {
        GeneratorConfig { ops: 1_000, clients: 5, info_fraction: 0.005, values_max: i64::MAX, key: None, seed: 1 }
    }
}

/// A corruption that makes a linearizable history certainly not
/// linearizable. Each needs unique written values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// A read returns a value no operation ever wrote.
    NeverWrittenRead,
    /// A read returns the value of a write that a later, completed write
    /// certainly overwrote before the read began.
    StaleRead,
    /// The values of two writes that do not overlap are swapped, where a
    /// read between them observed the first: that read now returns a value
    /// only written after it completed.
    SwappedWrites,
}

impl Corruption {
    /// Every corruption.
    pub const ALL: [Corruption; 3] = [Corruption::NeverWrittenRead, Corruption::StaleRead, Corruption::SwappedWrites];

    /// The name the command line uses (`never-written-read`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Corruption::NeverWrittenRead => "never-written-read",
            Corruption::StaleRead => "stale-read",
            Corruption::SwappedWrites => "swapped-writes",
        }
    }

    /// The inverse of [`Corruption::as_str`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<Corruption> {
        Corruption::ALL.into_iter().find(|corruption| corruption.as_str() == name)
    }
}

/// SplitMix64: small, fast and deterministic.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "empty range");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

/// One generated operation before its results are known.
struct Planned {
    process: u64,
    f: F,
    /// Event times; unique over the whole history.
    invoke_ns: u64,
    complete_ns: u64,
    /// When it takes effect; `None` if never.
    effect_ns: Option<u64>,
    info: bool,
    argument: Value,
    /// What the client is told: `Ok` with a value, or `Fail`.
    result: (OpType, Value),
}

/// Generates a history of one register that is linearizable by
/// construction. See the module documentation.
#[must_use]
pub fn linearizable_history(config: &GeneratorConfig) -> History {
    assert!(config.clients > 0, "at least one client");
    assert!(config.values_max > 0, "values_max must be positive");
    let clients = u64::from(config.clients);
    let mut rng = SplitMix(config.seed);
    let mut planned: Vec<Planned> = Vec::with_capacity(config.ops as usize);
    // Each client's clock and current process id. Times are multiplied by
    // the client count and offset by the client, so no two events share a
    // time and the real-time order is unambiguous.
    let mut clock: Vec<u64> = (0..clients).map(|_| rng.below(50)).collect();
    let mut process: Vec<u64> = (0..clients).collect();
    let mut next_process = clients;
    for index in 0..config.ops {
        let client = (index % clients) as usize;
        let invoke = clock[client] + 1 + rng.below(20);
        let duration = 10 + rng.below(200);
        let complete = invoke + duration;
        clock[client] = complete;
        let f = match rng.below(10) {
            0..=3 => F::Read,
            4..=6 => F::Write,
            _ => F::Cas,
        };
        let info = rng.unit() < config.info_fraction;
        let effect = if !info {
            Some(invoke + rng.below(duration + 1))
        } else if rng.below(2) == 0 {
            // It may take effect long after the client stopped waiting.
            Some(invoke + rng.below(duration * 10 + 1))
        } else {
            None
        };
        let at = |time: u64| time * clients + client as u64;
        planned.push(Planned {
            process: process[client],
            f,
            invoke_ns: at(invoke),
            complete_ns: at(complete),
            effect_ns: effect.map(at),
            info,
            argument: Value::Nil,
            result: (OpType::Ok, Value::Nil),
        });
        if info {
            process[client] = next_process;
            next_process += 1;
        }
    }
    apply_in_effect_order(&mut planned, config.values_max, &mut rng);
    record(&planned, config.key)
}

/// Runs the register through the operations in the order they take effect,
/// choosing arguments and recording results.
fn apply_in_effect_order(planned: &mut [Planned], values_max: i64, rng: &mut SplitMix) {
    let mut order: Vec<usize> = (0..planned.len()).collect();
    // Operations that never take effect are placed at their invocation; they
    // get arguments but do not touch the register.
    order.sort_by_key(|&index| planned[index].effect_ns.unwrap_or(planned[index].invoke_ns));
    let mut register: Option<i64> = None;
    let mut previous: Option<i64> = None;
    let mut written = 0_i64;
    let mut fresh = || {
        written += 1;
        (written - 1) % values_max + 1
    };
    for index in order {
        let op = &mut planned[index];
        let happens = op.effect_ns.is_some();
        match op.f {
            F::Read => {
                op.argument = Value::Nil;
                op.result = (OpType::Ok, register.map_or(Value::Nil, Value::Int));
            }
            F::Write => {
                let value = fresh();
                op.argument = Value::Int(value);
                op.result = (OpType::Ok, op.argument);
                if happens {
                    previous = register;
                    register = Some(value);
                }
            }
            F::Cas => {
                // Most cas expect the current value, so many succeed; the
                // rest expect the one before it and fail.
                let expected = if rng.below(3) > 0 { register } else { previous };
                op.argument = Value::Cas { expected, new: fresh() };
                let matches = expected == register;
                op.result = (if matches { OpType::Ok } else { OpType::Fail }, op.argument);
                if happens && matches {
                    previous = register;
                    register = Some(fresh_new(op.argument));
                }
            }
        }
    }
}

fn fresh_new(argument: Value) -> i64 {
    match argument {
        Value::Cas { new, .. } => new,
        _ => unreachable!("only cas arguments carry a new value"),
    }
}

/// Writes the planned operations as events in time order.
fn record(planned: &[Planned], key: Option<&'static str>) -> History {
    let mut events: Vec<(u64, Op)> = Vec::with_capacity(planned.len() * 2);
    for op in planned {
        let key = key.map(str::to_owned);
        events.push((
            op.invoke_ns,
            Op {
                process: op.process,
                op_type: OpType::Invoke,
                f: op.f,
                key: key.clone(),
                value: op.argument,
                time_ns: op.invoke_ns,
            },
        ));
        let (op_type, value) = if op.info { (OpType::Info, op.argument) } else { op.result };
        events
            .push((op.complete_ns, Op { process: op.process, op_type, f: op.f, key, value, time_ns: op.complete_ns }));
    }
    events.sort_by_key(|(time, _)| *time);
    let mut recorder = HistoryRecorder::new();
    for (_, op) in events {
        recorder.push(op).expect("generated events form a well-formed history");
    }
    recorder.finish()
}

/// One completed operation of a history, as [`corrupt`] sees it.
#[derive(Clone, Copy, Debug)]
struct Done {
    invoke: usize,
    complete: usize,
    f: F,
    /// A read's result or a write's argument.
    value: Option<i64>,
}

/// Applies `corruption` to a history of unique written values, near the
/// fraction `at` (0.0 the start, 1.0 the end) of its events. Returns `None`
/// if the history offers no place for it.
///
/// The result is certainly not linearizable, whatever the rest of the
/// history holds, as long as no two operations write the same value.
#[must_use]
pub fn corrupt(history: &History, corruption: Corruption, at: f64) -> Option<History> {
    let events = history.ops();
    let mut done: Vec<Done> = Vec::new();
    for call in history.calls() {
        let Some(complete) = call.complete else { continue };
        let completion = &events[complete as usize];
        if completion.op_type != OpType::Ok {
            continue;
        }
        let invoke = &events[call.invoke as usize];
        let value = match invoke.f {
            F::Read => completion.value.as_register().flatten(),
            F::Write => invoke.value.as_register().flatten(),
            F::Cas => None,
        };
        done.push(Done { invoke: call.invoke as usize, complete: complete as usize, f: invoke.f, value });
    }
    let start = (at.clamp(0.0, 1.0) * events.len() as f64) as usize;
    let reads = done.iter().filter(|op| op.f == F::Read && op.invoke >= start);
    let writes: Vec<&Done> = done.iter().filter(|op| op.f == F::Write).collect();
    let mut ops = events.to_vec();
    match corruption {
        Corruption::NeverWrittenRead => {
            let read = reads.clone().next()?;
            let never_written = done.iter().filter_map(|op| op.value).min().unwrap_or(0).min(0) - 1;
            ops[read.complete].value = Value::Int(never_written);
        }
        Corruption::StaleRead => {
            // The read, the last write completed before it began (`newer`)
            // and the last write completed before `newer` began (`older`).
            let last_before =
                |time: usize| writes.iter().filter(|write| write.complete < time).max_by_key(|w| w.complete);
            let (read, older) = reads.clone().find_map(|read| {
                let newer = last_before(read.invoke)?;
                let older = last_before(newer.invoke)?;
                Some((read, older))
            })?;
            ops[read.complete].value = Value::Int(older.value?);
        }
        Corruption::SwappedWrites => {
            let by_value: HashMap<i64, &Done> =
                writes.iter().filter_map(|write| Some((write.value?, *write))).collect();
            let (first, second) = reads.clone().find_map(|read| {
                let first = by_value.get(&read.value?)?;
                let second = writes.iter().find(|write| write.invoke > read.complete)?;
                Some((*first, *second))
            })?;
            let (a, b) = (ops[first.invoke].value, ops[second.invoke].value);
            for (index, value) in [(first.invoke, b), (first.complete, b), (second.invoke, a), (second.complete, a)] {
                ops[index].value = value;
            }
        }
    }
    let mut recorder = HistoryRecorder::new();
    for op in ops {
        recorder.push(op).expect("a corruption keeps the history well formed");
    }
    Some(recorder.finish())
}
