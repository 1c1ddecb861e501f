//! Histories from Jepsen's console log, the `jepsen.util` lines its register
//! tests print for every operation, as in the etcd histories Porcupine and
//! the `linearizability-checker` project ship (`test_data/jepsen/etcd_*.log`):
//!
//! ```text
//! INFO  jepsen.util - 3  :invoke  :cas  [1 4]
//! INFO  jepsen.util - 3  :fail  :cas  [1 4]
//! INFO  jepsen.util - 4  :info  :write  :timed-out
//! INFO  jepsen.util - 0  :ok  :read  nil
//! ```
//!
//! (the fields are separated by tabs in the files). An op line is `jepsen.util - PROCESS TYPE F VALUE`, fields separated by
//! any whitespace (the files mix tabs and spaces), anything before
//! `jepsen.util - ` ignored (the level, or a timestamp in a full log).
//! `PROCESS` is a non-negative integer (lines of `:nemesis` and other named
//! processes are skipped), `TYPE` `:invoke`, `:ok`, `:fail` or `:info`, `F`
//! `:read`, `:write` or `:cas`, and `VALUE` `nil`, an integer, `[a b]` or a
//! keyword such as `:timed-out`. Lines without `jepsen.util - ` are skipped:
//! a full Jepsen log has many other lines.
//!
//! Jepsen's etcd test logs a timed-out write or cas as `:info ... :timed-out`
//! and a timed-out read as `:fail :read :timed-out`: the value of such a
//! completion is not the operation's, so every completion other than a
//! read's `:ok` takes the value of its invocation. The log has no
//! timestamps; event `i` (0-based) gets `time` = `i` milliseconds, for
//! reports only (the order of lines is the real-time order).

use crate::history::{History, HistoryRecorder};
use crate::op::{Op, OpType, Value, F};
use crate::parse_error::{ParseError, ParseErrorKind};

/// The marker before an op's fields on a Jepsen log line.
const MARKER: &str = "jepsen.util - ";

/// The `time` given to event `i` of a log, which has no timestamps.
const LOG_EVENT_SPACING_NS: u64 = 1_000_000;

impl History {
    /// Parses the `jepsen.util` op lines of a Jepsen console log; see the
    /// module documentation of `jepsen_log` for the format.
    ///
    /// # Errors
    /// An op line that does not fit the format or cannot follow the lines
    /// before it, with its 1-based line number.
    pub fn parse_jepsen_log(text: &str) -> Result<History, ParseError> {
        let mut recorder = HistoryRecorder::new();
        for (index, text) in text.lines().enumerate() {
            let line = index as u64 + 1;
            let Some(at) = text.find(MARKER) else { continue };
            let fields = &text[at + MARKER.len()..];
            let time_ns = recorder.ops().len() as u64 * LOG_EVENT_SPACING_NS;
            let Some(op) = parse_op(line, fields, time_ns)? else { continue };
            let op = match op.op_type {
                OpType::Invoke => op,
                OpType::Ok if op.f == F::Read => op,
                // The invocation's value: `:timed-out` is not a value, and a
                // failed cas logs its arguments again.
                _ => Op { value: invoked_value(&recorder, op.process).unwrap_or(op.value), ..op },
            };
            recorder.push(op).map_err(|error| ParseError { line, kind: ParseErrorKind::History(error) })?;
        }
        Ok(recorder.finish())
    }

    /// Whether `text` looks like a Jepsen console log: its first non-blank
    /// line holds an op line's marker.
    #[must_use]
    pub fn looks_like_jepsen_log(text: &str) -> bool {
        text.lines().find(|line| !line.trim().is_empty()).is_some_and(|line| line.contains(MARKER))
    }
}

/// The value of `process`'s outstanding invocation, if any.
fn invoked_value(recorder: &HistoryRecorder, process: u64) -> Option<Value> {
    recorder.outstanding_invoke(process).map(|op| op.value)
}

/// Parses the fields after the marker; `None` for a non-client process.
fn parse_op(line: u64, fields: &str, time_ns: u64) -> Result<Option<Op>, ParseError> {
    let mut parts = fields.split_whitespace();
    let process = parts.next().unwrap_or("");
    let Ok(process) = process.parse::<u64>() else {
        if process.starts_with(':') {
            // `:nemesis` and other named processes are not register clients.
            return Ok(None);
        }
        return Err(ParseError::bad_field(line, "process", "a non-negative integer or a keyword", process));
    };
    let op_type = parts.next().unwrap_or("");
    let op_type = op_type
        .strip_prefix(':')
        .and_then(OpType::from_name)
        .ok_or_else(|| ParseError::bad_field(line, "type", ":invoke, :ok, :fail or :info", op_type))?;
    let f = parts.next().unwrap_or("");
    let f = f
        .strip_prefix(':')
        .and_then(F::from_name)
        .ok_or_else(|| ParseError::bad_field(line, "f", ":read, :write or :cas", f))?;
    let rest: Vec<&str> = parts.collect();
    let value_text = rest.join(" ");
    let value = parse_value(&value_text);
    let value = match (op_type, f, value) {
        (OpType::Invoke, F::Read, Some(Value::Nil))
        | (OpType::Invoke, F::Write, Some(Value::Int(_)))
        | (OpType::Invoke, F::Cas, Some(Value::Cas { .. }))
        | (OpType::Ok, F::Read, Some(Value::Nil | Value::Int(_))) => value.unwrap_or(Value::Nil),
        (OpType::Invoke, _, _) | (OpType::Ok, F::Read, _) => {
            let expected = match (op_type, f) {
                (OpType::Invoke, F::Read) => "nil",
                (OpType::Invoke, F::Write) | (_, F::Read) => "an integer (or nil for a read)",
                _ => "[expected new]",
            };
            return Err(ParseError::bad_field(line, "value", expected, &value_text));
        }
        // Other completions take their invocation's value (see the module doc).
        _ => Value::Nil,
    };
    Ok(Some(Op { process, op_type, f, key: None, value, time_ns }))
}

/// `nil`, an integer, or `[a b]` with `a` nil or an integer; `None` otherwise.
fn parse_value(text: &str) -> Option<Value> {
    let text = text.trim();
    if text == "nil" {
        return Some(Value::Nil);
    }
    if let Ok(value) = text.parse::<i64>() {
        return Some(Value::Int(value));
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    let mut items = inner.split(|c: char| c.is_whitespace() || c == ',').filter(|item| !item.is_empty());
    let expected = match items.next()? {
        "nil" => None,
        other => Some(other.parse::<i64>().ok()?),
    };
    let new = items.next()?.parse::<i64>().ok()?;
    if items.next().is_some() {
        return None;
    }
    Some(Value::Cas { expected, new })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\
                       INFO  jepsen.util - 1\t:invoke\t:cas\t[1 4]\n\
                       INFO  jepsen.util - 2 :invoke :write 3\n\
                       some other log line\n\
                       INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n\
                       INFO  jepsen.util - 0\t:ok\t:read\tnil\n\
                       INFO  jepsen.util - 1\t:fail\t:cas\t[1 4]\n\
                       INFO  jepsen.util - 2\t:info\t:write\t:timed-out\n\
                       INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\
                       INFO  jepsen.util - 0\t:fail\t:read\t:timed-out\n";

    #[test]
    fn reads_op_lines_and_skips_the_rest() {
        let history = History::parse_jepsen_log(LOG).expect("valid");
        let ops: Vec<(u64, OpType, F, Value, u64)> =
            history.ops().iter().map(|op| (op.process, op.op_type, op.f, op.value, op.time_ns)).collect();
        let cas = Value::Cas { expected: Some(1), new: 4 };
        assert_eq!(
            ops,
            vec![
                (0, OpType::Invoke, F::Read, Value::Nil, 0),
                (1, OpType::Invoke, F::Cas, cas, 1_000_000),
                (2, OpType::Invoke, F::Write, Value::Int(3), 2_000_000),
                (0, OpType::Ok, F::Read, Value::Nil, 3_000_000),
                (1, OpType::Fail, F::Cas, cas, 4_000_000),
                (2, OpType::Info, F::Write, Value::Int(3), 5_000_000),
                (0, OpType::Invoke, F::Read, Value::Nil, 6_000_000),
                (0, OpType::Fail, F::Read, Value::Nil, 7_000_000),
            ]
        );
        assert!(History::looks_like_jepsen_log(LOG));
        assert!(!History::looks_like_jepsen_log("{\"process\":0}"));
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, u64, &str)] = &[
            ("INFO  jepsen.util - x :invoke :read nil", 1, "line 1: field `process`"),
            ("\nINFO  jepsen.util - 1 :start :read nil", 2, "line 2: field `type`"),
            ("INFO  jepsen.util - 1 :invoke :txn nil", 1, "line 1: field `f`"),
            ("INFO  jepsen.util - 1 :invoke :write nil", 1, "line 1: field `value`"),
            ("INFO  jepsen.util - 1 :invoke :cas [1]", 1, "line 1: field `value`"),
            ("INFO  jepsen.util - 1 :invoke :read nil\nINFO  jepsen.util - 1 :ok :read :x", 2, "line 2: field `value`"),
            ("INFO  jepsen.util - 1 :ok :read 3", 1, "line 1: "),
        ];
        for (text, line, message) in cases {
            let error = History::parse_jepsen_log(text).unwrap_err();
            assert_eq!(error.line, *line, "{text}");
            assert!(error.to_string().starts_with(message), "{error} for {text}");
        }
    }
}
