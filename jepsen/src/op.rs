//! One history event: who did what to which key, with which value, when.

use std::fmt;

/// The kind of a history event: an invocation or one of three completions.
///
/// An operation is one `Invoke` followed, on the same process, by at most one
/// completion. A missing completion means the same as `Info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpType {
    /// The process started the operation.
    Invoke,
    /// The operation certainly took effect, exactly once.
    Ok,
    /// The operation certainly did not take effect.
    Fail,
    /// The outcome is unknown: the operation may take effect at any time after
    /// its invocation, or never.
    Info,
}

impl OpType {
    /// The name used in both JSON Lines (`"ok"`) and EDN (`:ok`) histories.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }

    /// The inverse of [`OpType::as_str`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<OpType> {
        match name {
            "invoke" => Some(OpType::Invoke),
            "ok" => Some(OpType::Ok),
            "fail" => Some(OpType::Fail),
            "info" => Some(OpType::Info),
            _ => None,
        }
    }
}

impl fmt::Display for OpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The register function an operation applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum F {
    /// Returns the register's value (`nil` if never written).
    Read,
    /// Sets the register to an integer.
    Write,
    /// Sets the register to `new` if it holds `expected`; fails otherwise.
    Cas,
}

impl F {
    /// The name used in both JSON Lines (`"cas"`) and EDN (`:cas`) histories.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            F::Read => "read",
            F::Write => "write",
            F::Cas => "cas",
        }
    }

    /// The inverse of [`F::as_str`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<F> {
        match name {
            "read" => Some(F::Read),
            "write" => Some(F::Write),
            "cas" => Some(F::Cas),
            _ => None,
        }
    }
}

impl fmt::Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `value` field of an event.
///
/// Which shapes are legal depends on `f` and `type`; see
/// [`HistoryError::ValueShape`](crate::HistoryError::ValueShape).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// JSON `null` / EDN `nil`: a read's invocation, or a read of a register
    /// that was never written.
    Nil,
    /// An integer: a write's argument or a read's result.
    Int(i64),
    /// `[expected, new]`: a compare-and-set's arguments. `expected` may be
    /// `nil`, meaning "the register was never written".
    Cas {
        /// The value the register must hold for the cas to take effect.
        expected: Option<i64>,
        /// The value the register holds afterwards.
        new: i64,
    },
}

impl Value {
    /// Reads this value as a register value: `Nil` is `None`, `Int(v)` is
    /// `Some(v)`, and a cas pair is not a register value.
    #[must_use]
    pub fn as_register(self) -> Option<Option<i64>> {
        match self {
            Value::Nil => Some(None),
            Value::Int(value) => Some(Some(value)),
            Value::Cas { .. } => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Int(value) => write!(f, "{value}"),
            Value::Cas { expected, new } => {
                write!(f, "[{}, {new}]", RegisterDisplay(*expected))
            }
        }
    }
}

/// Formats a register value as `nil` or the integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterDisplay(pub Option<i64>);

impl fmt::Display for RegisterDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("nil"),
            Some(value) => write!(f, "{value}"),
        }
    }
}

/// One event of a history, as it appears on one JSON Lines line.
///
/// The real-time order of events is their order in the [`History`](crate::History);
/// `time_ns` is carried for reports only and is not required to be monotonic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    /// The logical client that issued the operation. A process runs at most
    /// one operation at a time.
    pub process: u64,
    /// Invocation or which completion.
    pub op_type: OpType,
    /// The register function.
    pub f: F,
    /// The register the operation targets; `None` is the single default
    /// register. Each key is checked on its own.
    pub key: Option<String>,
    /// The argument (invocations) or the result (a read's `ok`).
    pub value: Value,
    /// When the event was recorded, in nanoseconds on any fixed clock.
    pub time_ns: u64,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} {} {}", self.process, self.op_type, self.f)?;
        if let Some(key) = &self.key {
            write!(f, " key {key:?}")?;
        }
        write!(f, " {} at {} ns", self.value, self.time_ns)
    }
}
