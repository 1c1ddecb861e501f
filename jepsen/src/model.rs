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

    /// Whether `op`, in `state` and in any state reachable from it where it
    /// can happen, leaves the state as it is, as a read. The search
    /// linearizes such an operation as soon as it can, without trying
    /// alternatives.
    fn read_only(&self, state: &Self::State, op: &Self::Op) -> bool;

    /// The states that exist before any operation: `init` and whatever it
    /// may stand for.
    fn initial_states(&self) -> Vec<Self::State> {
        vec![self.init()]
    }

    /// The one state `op` can happen in, if there is just one (a read of a
    /// value, a cas expecting one).
    fn observes(&self, op: &Self::Op) -> Option<Self::State>;

    /// The state `op` leaves whatever the state before, if it changes the
    /// state at all (a write, a cas).
    fn writes(&self, op: &Self::Op) -> Option<Self::State>;
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

    fn read_only(&self, _state: &Option<i64>, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Read(_))
    }

    fn observes(&self, op: &RegisterOp) -> Option<Option<i64>> {
        match *op {
            RegisterOp::Read(value) => Some(value),
            RegisterOp::Cas { expected, .. } => Some(expected),
            RegisterOp::Write(_) => None,
        }
    }

    fn writes(&self, op: &RegisterOp) -> Option<Option<i64>> {
        match *op {
            RegisterOp::Read(_) => None,
            RegisterOp::Write(value) | RegisterOp::Cas { new: value, .. } => Some(Some(value)),
        }
    }
}

/// The state of a [`WindowRegister`]: not yet known, or a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WindowState {
    /// Any of the window's possible initial values.
    Any,
    /// This value (`None`: never written).
    Is(Option<i64>),
}

/// A register observed through a window of a longer history: it starts out
/// holding any one of `initial` (the values written before the window, and
/// `nil`), not known which. A window that cannot be linearized from any of
/// them shows that the whole history cannot be.
#[derive(Clone, Debug, Default)]
pub(crate) struct WindowRegister {
    pub(crate) initial: std::collections::HashSet<Option<i64>>,
}

impl WindowRegister {
    fn read(&self, state: WindowState, value: Option<i64>) -> bool {
        match state {
            WindowState::Any => self.initial.contains(&value),
            WindowState::Is(current) => current == value,
        }
    }
}

impl Model for WindowRegister {
    type State = WindowState;
    type Op = RegisterOp;

    fn init(&self) -> WindowState {
        WindowState::Any
    }

    fn step(&self, state: &WindowState, op: &RegisterOp) -> Option<WindowState> {
        match *op {
            RegisterOp::Read(value) => self.read(*state, value).then_some(WindowState::Is(value)),
            RegisterOp::Write(value) => Some(WindowState::Is(Some(value))),
            RegisterOp::Cas { expected, new } => self.read(*state, expected).then_some(WindowState::Is(Some(new))),
        }
    }

    fn overwrites(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Write(_))
    }

    fn read_only(&self, state: &WindowState, op: &RegisterOp) -> bool {
        // A read narrows `Any` down to one value, so only once the value is
        // known is it a move that can be forced (`Any` never comes back).
        matches!(state, WindowState::Is(_)) && matches!(op, RegisterOp::Read(_))
    }

    fn initial_states(&self) -> Vec<WindowState> {
        // Each initial value counts as produced once, before the window.
        self.initial.iter().map(|&value| WindowState::Is(value)).collect()
    }

    fn observes(&self, op: &RegisterOp) -> Option<WindowState> {
        Register.observes(op).map(WindowState::Is)
    }

    fn writes(&self, op: &RegisterOp) -> Option<WindowState> {
        Register.writes(op).map(WindowState::Is)
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
        assert!(register.read_only(&None, &RegisterOp::Read(None)));
    }
}
