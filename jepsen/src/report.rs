//! What the checker found, per key and overall, written for humans by
//! `Display`.

use std::fmt;

use crate::op::{OpType, RegisterDisplay, Value, F};

/// How many ops of a long prefix `Display` shows (the last ones).
const PREFIX_SHOWN_MAX: usize = 10;

/// The overall verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Every key is linearizable.
    Valid,
    /// At least one key is not linearizable.
    Invalid,
    /// No key is known to be invalid, but at least one exhausted the search
    /// budget before it was decided.
    Unknown,
}

/// The result of [`check`](crate::check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// `true` exactly when `verdict` is [`Verdict::Valid`].
    pub valid: bool,
    /// Invalid if any key is, else unknown if any key is, else valid.
    pub verdict: Verdict,
    /// One result per key that has an operation to check, in the order keys
    /// are first invoked.
    pub keys: Vec<KeyResult>,
}

impl CheckResult {
    /// The results of the keys that are not valid.
    pub fn failures(&self) -> impl Iterator<Item = &KeyResult> {
        self.keys.iter().filter(|key| key.outcome != KeyOutcome::Valid)
    }
}

/// The result for one key (one register).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyResult {
    /// The key; `None` is the default register.
    pub key: Option<String>,
    /// Operations checked: all but `fail` ones, reads that never returned,
    /// and `info` writes and cas whose value nothing observed (they cannot
    /// change the verdict).
    pub ops: u64,
    /// Distinct (linearized set, register value) pairs the search reached.
    pub states: u64,
    /// Model steps the search took.
    pub steps: u64,
    /// What the search found.
    pub outcome: KeyOutcome,
}

/// What the search found for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Linearizable.
    Valid,
    /// Not linearizable, with an explanation.
    Invalid(Box<Counterexample>),
    /// The search budget ran out before a verdict.
    Unknown {
        /// The state budget it ran under.
        states_max: u64,
        /// The step budget it ran under.
        steps_max: u64,
    },
}

/// Why a key is not linearizable: the longest linearizable prefix the search
/// found, and the operation it could not extend that prefix with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// The key; `None` is the default register.
    pub key: Option<String>,
    /// The longest prefix of a linearization found, in linearization order.
    pub prefix: Vec<OpReport>,
    /// The register's value after `prefix`.
    pub prefix_value: Option<i64>,
    /// An operation that completed before it could be linearized after
    /// `prefix`.
    pub blocked: OpReport,
    /// The operations invoked before `blocked` completed and not in `prefix`
    /// (`blocked` among them), in invocation order: none of them can be
    /// linearized next without a dead end. At most 32 are listed.
    pub candidates: Vec<OpReport>,
    /// The smallest failing window found, in invocation order: these
    /// operations alone cannot be linearized, whatever value the register
    /// held before them (any value written earlier, or nil) and whether or
    /// not the operations straddling the window's edges took effect. Empty
    /// if the search for it ran out of budget.
    pub window: Vec<OpReport>,
}

/// One operation as a report shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpReport {
    /// The process that ran it.
    pub process: u64,
    /// The function.
    pub f: F,
    /// For a read the value it returned; otherwise the argument.
    pub value: Value,
    /// `Ok`, or `Info` for an operation whose outcome is unknown (including
    /// one that never completed).
    pub outcome: OpType,
    /// The index of its invocation among the history's events.
    pub invoke_index: u64,
    /// When it was invoked.
    pub invoke_time_ns: u64,
    /// When it completed; `None` if it never did.
    pub complete_time_ns: Option<u64>,
}

fn key_display(key: Option<&str>) -> String {
    match key {
        Some(key) => format!("key {key:?}"),
        None => "the default register".to_owned(),
    }
}

impl fmt::Display for OpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.f {
            F::Read => write!(f, "process {} read -> {}", self.process, self.value)?,
            function => write!(f, "process {} {function} {}", self.process, self.value)?,
        }
        write!(f, " (event {}, invoked at {} ns, ", self.invoke_index, self.invoke_time_ns)?;
        match (self.outcome, self.complete_time_ns) {
            (outcome, Some(time_ns)) => write!(f, "{outcome} at {time_ns} ns)"),
            (_, None) => f.write_str("never completed)"),
        }
    }
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} is not linearizable.", key_display(self.key.as_deref()))?;
        writeln!(
            f,
            "  Longest linearizable prefix: {} ops, after which the register holds {}.",
            self.prefix.len(),
            RegisterDisplay(self.prefix_value)
        )?;
        let hidden = self.prefix.len().saturating_sub(PREFIX_SHOWN_MAX);
        if hidden > 0 {
            writeln!(f, "    ... {hidden} earlier ops")?;
        }
        for op in &self.prefix[hidden..] {
            writeln!(f, "    {op}")?;
        }
        writeln!(f, "  Could not linearize: {}", self.blocked)?;
        writeln!(
            f,
            "  It completed before it could take effect; no op pending then can be linearized \
             next:"
        )?;
        for op in &self.candidates {
            writeln!(f, "    {op}")?;
        }
        if !self.window.is_empty() {
            writeln!(f, "  Smallest failing window found ({} ops; no order of them works):", self.window.len())?;
            for op in &self.window {
                writeln!(f, "    {op}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for KeyResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = key_display(self.key.as_deref());
        match &self.outcome {
            KeyOutcome::Valid => writeln!(f, "{key} is linearizable ({} ops, {} states).", self.ops, self.states),
            KeyOutcome::Invalid(counterexample) => write!(f, "{counterexample}"),
            KeyOutcome::Unknown { states_max, steps_max } => writeln!(
                f,
                "{key} is unknown: the search stopped after {} states and {} steps of its \
                 budget (states_max {states_max}, steps_max {steps_max}) over {} ops.",
                self.states, self.steps, self.ops
            ),
        }
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: u64 = self.keys.iter().map(|key| key.ops).sum();
        let verdict = match self.verdict {
            Verdict::Valid => "linearizable",
            Verdict::Invalid => "NOT linearizable",
            Verdict::Unknown => "UNKNOWN (search budget exhausted)",
        };
        writeln!(f, "History is {verdict}: {} keys, {ops} ops checked.", self.keys.len())?;
        for key in self.failures() {
            write!(f, "{key}")?;
        }
        Ok(())
    }
}
