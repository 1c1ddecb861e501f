//! A validated history, and the recorder that builds one event at a time.
//!
//! Every way into a [`History`] (the recorder, JSON Lines, EDN) goes through
//! [`HistoryRecorder::push`], so a `History` always satisfies: each process
//! has at most one outstanding operation, every completion follows an
//! invocation on its process with the same `f` (and key), and every value has
//! the shape its `f` and `type` call for.

use std::collections::HashMap;
use std::fmt;

use crate::op::{Op, OpType, Value, F};

/// The most events one history may hold. Indices are `u32` inside, and the
/// checker needs room for two sentinels beside the events.
pub const HISTORY_OPS_MAX: u64 = 1 << 31;

/// A sequence of events in real-time order, validated on the way in.
///
/// Build one with [`HistoryRecorder`], [`History::parse_jsonl`],
/// [`History::read_jsonl`] or [`History::parse_edn`]; check it with
/// [`check`](crate::check).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
    calls: Vec<Call>,
}

/// One operation: where its invocation and completion sit in `History::ops`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    /// Index of the `Invoke` event.
    pub(crate) invoke: u32,
    /// Index of the completion event, if one was recorded.
    pub(crate) complete: Option<u32>,
}

impl History {
    /// The events, in real-time order.
    #[must_use]
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The number of events.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the history has no events.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Operations (invocation and optional completion) in invocation order.
    pub(crate) fn calls(&self) -> &[Call] {
        &self.calls
    }
}

/// Why an event cannot extend a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryError {
    /// A process invoked an operation while its previous one was outstanding.
    ProcessBusy {
        /// The process.
        process: u64,
        /// Index (0-based, in events) of the outstanding invocation.
        outstanding_index: u64,
    },
    /// A completion arrived for a process with no outstanding operation.
    NotInvoked {
        /// The process.
        process: u64,
    },
    /// [`HistoryRecorder::complete`] was given `OpType::Invoke`.
    CompletionIsInvoke {
        /// The process.
        process: u64,
    },
    /// [`HistoryRecorder::complete`] was given an [`OpRef`] whose operation is
    /// already complete.
    StaleOpRef {
        /// The process.
        process: u64,
        /// Index of the invocation the reference names.
        invoke_index: u64,
    },
    /// A completion's `f` differs from its invocation's.
    FunctionMismatch {
        /// The process.
        process: u64,
        /// The invocation's function.
        invoked: F,
        /// The completion's function.
        completed: F,
    },
    /// A completion names a different key than its invocation.
    KeyMismatch {
        /// The process.
        process: u64,
        /// The invocation's key.
        invoked: Option<String>,
        /// The completion's key.
        completed: Option<String>,
    },
    /// A value has the wrong shape: a read's invocation carries `nil`, a
    /// read's `ok` carries `nil` or an integer, a write's invocation an
    /// integer and a cas's invocation `[expected, new]`. Other completions
    /// may carry anything; their value is not used.
    ValueShape {
        /// The function.
        f: F,
        /// The event type.
        op_type: OpType,
        /// The offending value.
        value: Value,
    },
    /// The history already holds [`HISTORY_OPS_MAX`] events.
    TooManyOps,
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::ProcessBusy { process, outstanding_index } => write!(
                f,
                "process {process} invoked an operation while its operation invoked at event \
                 {outstanding_index} is still outstanding"
            ),
            HistoryError::NotInvoked { process } => {
                write!(f, "completion for process {process}, which has no outstanding operation")
            }
            HistoryError::CompletionIsInvoke { process } => {
                write!(f, "process {process}: a completion must be ok, fail or info, not invoke")
            }
            HistoryError::StaleOpRef { process, invoke_index } => write!(
                f,
                "process {process}: the operation invoked at event {invoke_index} is already \
                 complete"
            ),
            HistoryError::FunctionMismatch { process, invoked, completed } => {
                write!(f, "process {process} invoked {invoked} but its completion says {completed}")
            }
            HistoryError::KeyMismatch { process, invoked, completed } => write!(
                f,
                "process {process} invoked on key {invoked:?} but its completion names key \
                 {completed:?}"
            ),
            HistoryError::ValueShape { f: function, op_type, value } => {
                let expected = match (function, op_type) {
                    (F::Read, OpType::Invoke) => "nil",
                    (F::Read, _) => "nil or an integer",
                    (F::Write, _) => "an integer",
                    (F::Cas, _) => "[expected, new]",
                };
                write!(f, "{op_type} {function} carries value {value}; expected {expected}")
            }
            HistoryError::TooManyOps => {
                write!(f, "a history holds at most {HISTORY_OPS_MAX} events")
            }
        }
    }
}

impl std::error::Error for HistoryError {}

/// A handle to an invoked operation, to complete it with
/// [`HistoryRecorder::complete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpRef {
    process: u64,
    invoke_index: u32,
}

impl OpRef {
    /// The process that invoked the operation.
    #[must_use]
    pub fn process(self) -> u64 {
        self.process
    }

    /// The index of the invocation in the history's events.
    #[must_use]
    pub fn invoke_index(self) -> u64 {
        u64::from(self.invoke_index)
    }
}

/// Builds a [`History`] in memory, one event at a time, rejecting events that
/// would make it malformed. A rejected event leaves the recorder unchanged.
///
/// ```
/// use lockstep_jepsen::{HistoryRecorder, OpType, Value, F};
///
/// let mut recorder = HistoryRecorder::new();
/// let write = recorder.invoke(1, F::Write, Some("x"), Value::Int(3), 10)?;
/// let read = recorder.invoke(2, F::Read, Some("x"), Value::Nil, 11)?;
/// recorder.complete(write, OpType::Ok, Value::Int(3), 20)?;
/// recorder.complete(read, OpType::Ok, Value::Int(3), 21)?;
/// let history = recorder.finish();
/// assert!(lockstep_jepsen::check(&history, &Default::default()).valid);
/// # Ok::<(), lockstep_jepsen::HistoryError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct HistoryRecorder {
    history: History,
    /// Per process: the index into `history.calls` of its outstanding call.
    outstanding: HashMap<u64, u32>,
}

impl HistoryRecorder {
    /// An empty recorder.
    #[must_use]
    pub fn new() -> HistoryRecorder {
        HistoryRecorder::default()
    }

    /// Records that `process` invoked `f` on `key` with argument `value`
    /// (`Nil` for a read, `Int` for a write, `Cas` for a cas).
    ///
    /// # Errors
    /// [`HistoryError::ProcessBusy`] if the process has an outstanding
    /// operation, [`HistoryError::ValueShape`] if `value` does not fit `f`.
    pub fn invoke(
        &mut self,
        process: u64,
        f: F,
        key: Option<&str>,
        value: Value,
        time_ns: u64,
    ) -> Result<OpRef, HistoryError> {
        let invoke_index = self.history.ops.len();
        self.push(Op { process, op_type: OpType::Invoke, f, key: key.map(str::to_owned), value, time_ns })?;
        let invoke_index = u32::try_from(invoke_index).map_err(|_| HistoryError::TooManyOps)?;
        Ok(OpRef { process, invoke_index })
    }

    /// Records the completion of `op`: `Ok` with the read value (reads) or the
    /// argument again (writes, cas), `Fail`, or `Info`. For `Fail` and `Info`
    /// the value is kept but not used.
    ///
    /// # Errors
    /// [`HistoryError::CompletionIsInvoke`], [`HistoryError::StaleOpRef`] if
    /// `op` is already complete, [`HistoryError::ValueShape`] for a read's
    /// `Ok` whose value is not `Nil` or `Int`.
    pub fn complete(&mut self, op: OpRef, op_type: OpType, value: Value, time_ns: u64) -> Result<(), HistoryError> {
        let process = op.process;
        if op_type == OpType::Invoke {
            return Err(HistoryError::CompletionIsInvoke { process });
        }
        let stale = HistoryError::StaleOpRef { process, invoke_index: op.invoke_index() };
        let call_index = *self.outstanding.get(&process).ok_or(stale.clone())?;
        let call = self.history.calls[call_index as usize];
        if call.invoke != op.invoke_index {
            return Err(stale);
        }
        let invoke = &self.history.ops[call.invoke as usize];
        let completion = Op { process, op_type, f: invoke.f, key: invoke.key.clone(), value, time_ns };
        self.push(completion)
    }

    /// Appends one event, the way the parsers do.
    ///
    /// # Errors
    /// Any [`HistoryError`] the event would cause; the recorder is unchanged.
    pub fn push(&mut self, op: Op) -> Result<(), HistoryError> {
        if self.history.ops.len() as u64 >= HISTORY_OPS_MAX {
            return Err(HistoryError::TooManyOps);
        }
        let index = self.history.ops.len() as u32;
        if op.op_type == OpType::Invoke {
            if let Some(&call_index) = self.outstanding.get(&op.process) {
                let outstanding = self.history.calls[call_index as usize].invoke;
                return Err(HistoryError::ProcessBusy {
                    process: op.process,
                    outstanding_index: u64::from(outstanding),
                });
            }
            let shape_ok = matches!(
                (op.f, op.value),
                (F::Read, Value::Nil) | (F::Write, Value::Int(_)) | (F::Cas, Value::Cas { .. })
            );
            if !shape_ok {
                return Err(HistoryError::ValueShape { f: op.f, op_type: op.op_type, value: op.value });
            }
            let call_index = self.history.calls.len() as u32;
            self.history.calls.push(Call { invoke: index, complete: None });
            self.outstanding.insert(op.process, call_index);
        } else {
            let Some(&call_index) = self.outstanding.get(&op.process) else {
                return Err(HistoryError::NotInvoked { process: op.process });
            };
            let call = self.history.calls[call_index as usize];
            let invoke = &self.history.ops[call.invoke as usize];
            if invoke.f != op.f {
                return Err(HistoryError::FunctionMismatch { process: op.process, invoked: invoke.f, completed: op.f });
            }
            if op.key.is_some() && op.key != invoke.key {
                return Err(HistoryError::KeyMismatch {
                    process: op.process,
                    invoked: invoke.key.clone(),
                    completed: op.key,
                });
            }
            let read_ok_shape = matches!(op.value, Value::Nil | Value::Int(_));
            if op.f == F::Read && op.op_type == OpType::Ok && !read_ok_shape {
                return Err(HistoryError::ValueShape { f: op.f, op_type: op.op_type, value: op.value });
            }
            self.history.calls[call_index as usize].complete = Some(index);
            self.outstanding.remove(&op.process);
        }
        self.history.ops.push(op);
        Ok(())
    }

    /// The invocation `process` has outstanding, if any.
    pub(crate) fn outstanding_invoke(&self, process: u64) -> Option<&Op> {
        let call_index = *self.outstanding.get(&process)?;
        let call = self.history.calls[call_index as usize];
        Some(&self.history.ops[call.invoke as usize])
    }

    /// The events recorded so far.
    #[must_use]
    pub fn ops(&self) -> &[Op] {
        &self.history.ops
    }

    /// Ends recording. Operations still outstanding count as `Info`: they may
    /// or may not have taken effect.
    #[must_use]
    pub fn finish(self) -> History {
        self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_process_is_rejected_and_recorder_unchanged() {
        let mut recorder = HistoryRecorder::new();
        let first = recorder.invoke(7, F::Write, None, Value::Int(1), 1).expect("first invoke");
        let error = recorder.invoke(7, F::Read, None, Value::Nil, 2).unwrap_err();
        assert_eq!(error, HistoryError::ProcessBusy { process: 7, outstanding_index: 0 });
        assert_eq!(recorder.ops().len(), 1);
        recorder.complete(first, OpType::Ok, Value::Int(1), 3).expect("complete");
        let error = recorder.complete(first, OpType::Ok, Value::Int(1), 4).unwrap_err();
        assert_eq!(error, HistoryError::StaleOpRef { process: 7, invoke_index: 0 });
        recorder.invoke(7, F::Read, None, Value::Nil, 5).expect("idle again");
    }

    #[test]
    fn shapes_and_mismatches_are_rejected() {
        let mut recorder = HistoryRecorder::new();
        let error = recorder.invoke(1, F::Write, None, Value::Nil, 1).unwrap_err();
        assert!(matches!(error, HistoryError::ValueShape { f: F::Write, .. }));
        let read = recorder.invoke(1, F::Read, Some("k"), Value::Nil, 1).expect("read");
        let error = recorder.complete(read, OpType::Invoke, Value::Nil, 2).unwrap_err();
        assert_eq!(error, HistoryError::CompletionIsInvoke { process: 1 });
        let cas = Value::Cas { expected: None, new: 1 };
        let error = recorder.complete(read, OpType::Ok, cas, 2).unwrap_err();
        assert!(matches!(error, HistoryError::ValueShape { f: F::Read, op_type: OpType::Ok, .. }));
        let wrong_f = Op { process: 1, op_type: OpType::Ok, f: F::Write, key: None, value: Value::Int(1), time_ns: 3 };
        let error = recorder.push(wrong_f).unwrap_err();
        assert!(matches!(error, HistoryError::FunctionMismatch { .. }));
        let wrong_key = Op {
            process: 1,
            op_type: OpType::Ok,
            f: F::Read,
            key: Some("j".to_owned()),
            value: Value::Nil,
            time_ns: 3,
        };
        let error = recorder.push(wrong_key).unwrap_err();
        assert!(matches!(error, HistoryError::KeyMismatch { .. }));
        let orphan = Op { process: 9, op_type: OpType::Info, f: F::Read, key: None, value: Value::Nil, time_ns: 3 };
        assert_eq!(recorder.push(orphan).unwrap_err(), HistoryError::NotInvoked { process: 9 });
        recorder.complete(read, OpType::Ok, Value::Nil, 4).expect("valid completion");
        let history = recorder.finish();
        assert_eq!(history.len(), 2);
        assert_eq!(history.calls(), &[Call { invoke: 0, complete: Some(1) }]);
    }
}
