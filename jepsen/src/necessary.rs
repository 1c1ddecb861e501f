//! Cheap necessary conditions for a register history to be linearizable,
//! checked in `O(n log n)` before (or beside) the search. Each failure is a
//! proof of a violation on its own, with the two or three operations it
//! involves.
//!
//! They rely on values written only once (as the generator and most
//! harnesses write them); values written by several operations are left to
//! the search. For an operation `o` that returned and requires the register
//! to hold `v` (a read of `v`, a cas expecting `v`), where `v` has at most
//! one producer `w` (the one write or cas that writes it, or the initial
//! state for `nil` when nothing writes `nil`):
//!
//! - no producer at all: `o` observed a value never written;
//! - `o` returned before `w` was invoked: `o` observed a value before it
//!   was written;
//! - some operation `x` that returned and writes another value was invoked
//!   after `w` returned and returned before `o` was invoked: in every
//!   linearization `w < x < o`, so `o` cannot see `v` (a stale read).

use std::collections::HashMap;

use crate::model::RegisterOp;
use crate::wgl::Event;

/// A violation found without search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The operation that produced the value `observer` required, if any
    /// did (`None`: the initial `nil`, or never written).
    pub(crate) writer: Option<u32>,
    /// An operation that certainly overwrote it in between, if that is the
    /// reason.
    pub(crate) between: Option<u32>,
    /// The operation whose observation is impossible.
    pub(crate) observer: u32,
}

/// Finds the violation whose observer returns first, if any.
pub(crate) fn impossible_observation(ops: &[RegisterOp], events: &[Event]) -> Option<Violation> {
    const NEVER: usize = usize::MAX;
    let mut call_at = vec![NEVER; ops.len()];
    let mut return_at = vec![NEVER; ops.len()];
    for (index, event) in events.iter().enumerate() {
        match *event {
            Event::Call(id) => call_at[id as usize] = index,
            Event::Return(id) => return_at[id as usize] = index,
        }
    }
    let mut producers: HashMap<Option<i64>, (u32, Option<u32>)> = HashMap::new();
    for (id, op) in ops.iter().enumerate() {
        if let RegisterOp::Write(new) | RegisterOp::Cas { new, .. } = *op {
            let entry = producers.entry(Some(new)).or_insert((0, None));
            entry.0 += 1;
            entry.1 = Some(id as u32);
        }
    }
    // Writers that returned, by call position, with the earliest return
    // among those called at or after each position.
    let mut writers: Vec<(usize, usize, u32)> = ops
        .iter()
        .enumerate()
        .filter(|(id, op)| !matches!(op, RegisterOp::Read(_)) && return_at[*id] != NEVER)
        .map(|(id, _)| (call_at[id], return_at[id], id as u32))
        .collect();
    writers.sort_unstable();
    let mut earliest_return_from: Vec<(usize, u32)> = vec![(NEVER, u32::MAX); writers.len() + 1];
    for index in (0..writers.len()).rev() {
        let (_, returned, id) = writers[index];
        earliest_return_from[index] = earliest_return_from[index + 1].min((returned, id));
    }
    let mut found: Option<(usize, Violation)> = None;
    for (id, op) in ops.iter().enumerate() {
        let observer = id as u32;
        let returned = return_at[id];
        if returned == NEVER {
            continue;
        }
        let observed = match *op {
            RegisterOp::Read(value) => value,
            RegisterOp::Cas { expected, .. } => expected,
            RegisterOp::Write(_) => continue,
        };
        let (count, writer) = producers.get(&observed).copied().unwrap_or((0, None));
        let violation = match (observed, count, writer) {
            (Some(_), 0, _) => Some(Violation { writer: None, between: None, observer }),
            (_, 0, _) => stale(&writers, &earliest_return_from, None, call_at[id], observer),
            (_, 1, Some(writer)) if returned < call_at[writer as usize] => {
                Some(Violation { writer: Some(writer), between: None, observer })
            }
            (_, 1, Some(writer)) if return_at[writer as usize] != NEVER => stale(
                &writers,
                &earliest_return_from,
                Some((writer, return_at[writer as usize])),
                call_at[id],
                observer,
            ),
            _ => None,
        };
        if let Some(violation) = violation {
            if found.is_none_or(|(at, _)| returned < at) {
                found = Some((returned, violation));
            }
        }
    }
    found.map(|(_, violation)| violation)
}

/// A writer other than `writer` called after `writer` returned (after the
/// start, for the initial state) and returned before `observed_call`.
fn stale(
    writers: &[(usize, usize, u32)],
    earliest_return_from: &[(usize, u32)],
    writer: Option<(u32, usize)>,
    observed_call: usize,
    observer: u32,
) -> Option<Violation> {
    let from = match writer {
        Some((_, returned)) => writers.partition_point(|&(called, _, _)| called <= returned),
        None => 0,
    };
    let (returned, between) = earliest_return_from[from];
    (returned < observed_call && between != observer).then_some(Violation {
        writer: writer.map(|(id, _)| id),
        between: Some(between),
        observer,
    })
}
