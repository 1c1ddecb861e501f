//! Sequential specifications the checker linearizes against.

use std::hash::Hash;

/// A sequential specification: a state and a partial step function.
///
/// `step` returns `None` when the operation, with the result the history
/// says it returned, is impossible in `state`.
pub(crate) trait Model {
    /// The object's state. Equal states must behave identically, since the
    /// checker prunes on `(linearized set, state)` pairs.
    type State: Clone + Eq + Hash;
    /// One operation together with its observed result.
    type Op;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `op`, or `None` if `op` cannot happen in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// Whether `op` can happen in every state and leaves the same state
    /// whatever the state before it, as a blind write does. Whatever an
    /// operation linearized just before it did is then invisible.
    fn overwrites(&self, op: &Self::Op) -> bool;
}

/// A register operation with its observed result. Only operations that took
/// effect (`ok`) or may have (`info`) reach the model; `fail` ones do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegisterOp {
    /// A read that returned this value (`None`: never written).
    Read(Option<i64>),
    /// A write of this value.
    Write(i64),
    /// A compare-and-set that succeeded.
    Cas {
        /// The value the register held.
        expected: Option<i64>,
        /// The value it holds afterwards.
        new: i64,
    },
}

/// A single register holding `None` (never written) or an integer.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Register;

impl Model for Register {
    type State = Option<i64>;
    type Op = RegisterOp;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(&self, state: &Option<i64>, op: &RegisterOp) -> Option<Option<i64>> {
        match *op {
            RegisterOp::Read(value) => (value == *state).then_some(*state),
            RegisterOp::Write(value) => Some(Some(value)),
            RegisterOp::Cas { expected, new } => (expected == *state).then_some(Some(new)),
        }
    }

    fn overwrites(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Write(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_steps() {
        let register = Register;
        assert_eq!(register.init(), None);
        assert_eq!(register.step(&None, &RegisterOp::Read(None)), Some(None));
        assert_eq!(register.step(&None, &RegisterOp::Read(Some(0))), None);
        assert_eq!(register.step(&Some(1), &RegisterOp::Read(Some(1))), Some(Some(1)));
        assert_eq!(register.step(&Some(1), &RegisterOp::Write(2)), Some(Some(2)));
        let cas = RegisterOp::Cas { expected: Some(1), new: 3 };
        assert_eq!(register.step(&Some(1), &cas), Some(Some(3)));
        assert_eq!(register.step(&Some(2), &cas), None);
        assert_eq!(register.step(&None, &cas), None);
        let cas_from_nil = RegisterOp::Cas { expected: None, new: 4 };
        assert_eq!(register.step(&None, &cas_from_nil), Some(Some(4)));
        assert!(register.overwrites(&RegisterOp::Write(1)));
        assert!(!register.overwrites(&cas));
        assert!(!register.overwrites(&RegisterOp::Read(None)));
    }
}
