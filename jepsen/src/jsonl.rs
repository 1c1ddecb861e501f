//! Histories as JSON Lines: one event per line,
//! `{"process": 3, "type": "ok", "f": "read", "key": "r", "value": 5, "time": 1200}`.
//!
//! Fields: `process` (non-negative integer), `type` (`invoke`, `ok`, `fail`,
//! `info`), `f` (`read`, `write`, `cas`), `key` (optional; a string, or an
//! integer taken as its decimal string; `null` means absent), `value` (`null`,
//! an integer, or `[expected, new]` with `expected` an integer or `null`;
//! absent means `null`) and `time` (non-negative integer nanoseconds). Other
//! fields are ignored. Blank lines are skipped.

use std::fmt::Write as _;
use std::io::{BufRead, Read as _};

use serde_json::{Map, Value as Json};

use crate::history::{History, HistoryRecorder};
use crate::op::{Op, OpType, Value, F};
use crate::parse_error::{ParseError, ParseErrorKind};

/// The longest JSON Lines line accepted, in bytes (newline excluded).
pub const JSONL_LINE_BYTES_MAX: u64 = 1 << 20;

impl History {
    /// Parses a JSON Lines history.
    ///
    /// # Errors
    /// The first malformed line, with its 1-based number and what is wrong.
    pub fn parse_jsonl(text: &str) -> Result<History, ParseError> {
        History::read_jsonl(text.as_bytes())
    }

    /// Reads a JSON Lines history from `reader` until end of input.
    ///
    /// # Errors
    /// The first malformed line, an over-long line, a read error or invalid
    /// UTF-8, with the 1-based line number.
    pub fn read_jsonl<R: BufRead>(mut reader: R) -> Result<History, ParseError> {
        let mut recorder = HistoryRecorder::new();
        let mut buffer = Vec::new();
        let mut line = 0_u64;
        loop {
            buffer.clear();
            line += 1;
            let read = reader
                .by_ref()
                .take(JSONL_LINE_BYTES_MAX + 1)
                .read_until(b'\n', &mut buffer)
                .map_err(|error| ParseError { line, kind: ParseErrorKind::Io(error.to_string()) })?;
            if read == 0 {
                break;
            }
            let content = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            if content.len() as u64 > JSONL_LINE_BYTES_MAX {
                let kind = ParseErrorKind::LineTooLong { line_bytes_max: JSONL_LINE_BYTES_MAX };
                return Err(ParseError { line, kind });
            }
            let text = std::str::from_utf8(content)
                .map_err(|error| ParseError { line, kind: ParseErrorKind::Io(format!("not UTF-8: {error}")) })?;
            if text.trim().is_empty() {
                continue;
            }
            let op = parse_line(line, text)?;
            recorder.push(op).map_err(|error| ParseError { line, kind: ParseErrorKind::History(error) })?;
        }
        Ok(recorder.finish())
    }

    /// Writes the history as JSON Lines, one event per line, each line ending
    /// in `\n`. [`History::parse_jsonl`] reads it back to an equal history.
    #[must_use]
    pub fn to_jsonl(&self) -> String {
        let mut text = String::with_capacity(self.len() * 80);
        for op in self.ops() {
            write_line(&mut text, op);
        }
        text
    }
}

fn write_line(text: &mut String, op: &Op) {
    // Writing into a String cannot fail, so the fmt::Results are ignored.
    let _ = write!(text, r#"{{"process":{},"type":"{}","f":"{}","#, op.process, op.op_type.as_str(), op.f.as_str());
    if let Some(key) = &op.key {
        // serde_json's Display of a string value is its escaped JSON form.
        let _ = write!(text, r#""key":{},"#, Json::String(key.clone()));
    }
    text.push_str(r#""value":"#);
    match op.value {
        Value::Nil => text.push_str("null"),
        Value::Int(value) => {
            let _ = write!(text, "{value}");
        }
        Value::Cas { expected: None, new } => {
            let _ = write!(text, "[null,{new}]");
        }
        Value::Cas { expected: Some(expected), new } => {
            let _ = write!(text, "[{expected},{new}]");
        }
    }
    let _ = writeln!(text, r#","time":{}}}"#, op.time_ns);
}

fn parse_line(line: u64, text: &str) -> Result<Op, ParseError> {
    let json: Json = serde_json::from_str(text)
        .map_err(|error| ParseError { line, kind: ParseErrorKind::Json(error.to_string()) })?;
    let Json::Object(object) = json else {
        let kind = ParseErrorKind::Json("expected a JSON object".to_owned());
        return Err(ParseError { line, kind });
    };
    let process = required(line, &object, "process")?;
    let process = process
        .as_u64()
        .ok_or_else(|| ParseError::bad_field(line, "process", "a non-negative integer", &process.to_string()))?;
    let op_type = required(line, &object, "type")?;
    let op_type = op_type.as_str().and_then(OpType::from_name).ok_or_else(|| {
        ParseError::bad_field(line, "type", "\"invoke\", \"ok\", \"fail\" or \"info\"", &op_type.to_string())
    })?;
    let f = required(line, &object, "f")?;
    let f = f
        .as_str()
        .and_then(F::from_name)
        .ok_or_else(|| ParseError::bad_field(line, "f", "\"read\", \"write\" or \"cas\"", &f.to_string()))?;
    let key = match object.get("key") {
        None | Some(Json::Null) => None,
        Some(Json::String(key)) => Some(key.clone()),
        Some(Json::Number(number)) if number.is_i64() || number.is_u64() => Some(number.to_string()),
        Some(other) => {
            let expected = "a string or an integer";
            return Err(ParseError::bad_field(line, "key", expected, &other.to_string()));
        }
    };
    let value = match object.get("value") {
        None => Value::Nil,
        Some(json) => parse_value(json).ok_or_else(|| {
            let expected = "null, an integer or [expected, new]";
            ParseError::bad_field(line, "value", expected, &json.to_string())
        })?,
    };
    let time = required(line, &object, "time")?;
    let time_ns = time
        .as_u64()
        .ok_or_else(|| ParseError::bad_field(line, "time", "non-negative integer nanoseconds", &time.to_string()))?;
    Ok(Op { process, op_type, f, key, value, time_ns })
}

fn required<'a>(line: u64, object: &'a Map<String, Json>, field: &'static str) -> Result<&'a Json, ParseError> {
    object.get(field).ok_or(ParseError { line, kind: ParseErrorKind::MissingField(field) })
}

fn parse_value(json: &Json) -> Option<Value> {
    match json {
        Json::Null => Some(Value::Nil),
        Json::Number(number) => number.as_i64().map(Value::Int),
        Json::Array(pair) => match pair.as_slice() {
            [expected, new] => {
                let expected = match expected {
                    Json::Null => None,
                    other => Some(other.as_i64()?),
                };
                Some(Value::Cas { expected, new: new.as_i64()? })
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryError;

    #[test]
    fn parses_every_field_and_round_trips() {
        let text = concat!(
            r#"{"process": 3, "type": "invoke", "f": "read", "key": "r", "value": null, "time": 1}"#,
            "\n",
            r#"{"process": 3, "type": "ok", "f": "read", "key": "r", "value": 5, "time": 2}"#,
            "\n\n",
            r#"{"process": 4, "type": "invoke", "f": "cas", "value": [null, 2], "time": 3, "x": 1}"#,
            "\r\n",
            r#"{"process": 4, "type": "fail", "f": "cas", "value": [null, 2], "time": 4}"#,
            "\n",
            r#"{"process": 5, "type": "invoke", "f": "write", "key": 12, "value": -7, "time": 5}"#,
        );
        let history = History::parse_jsonl(text).expect("valid history");
        let ops = history.ops();
        assert_eq!(ops.len(), 5);
        assert_eq!(
            ops[1],
            Op {
                process: 3,
                op_type: OpType::Ok,
                f: F::Read,
                key: Some("r".to_owned()),
                value: Value::Int(5),
                time_ns: 2,
            }
        );
        assert_eq!(ops[2].value, Value::Cas { expected: None, new: 2 });
        assert_eq!(ops[2].key, None);
        assert_eq!(ops[4].key.as_deref(), Some("12"));
        let written = history.to_jsonl();
        assert_eq!(
            written.lines().next(),
            Some(r#"{"process":3,"type":"invoke","f":"read","key":"r","value":null,"time":1}"#)
        );
        assert_eq!(History::parse_jsonl(&written), Ok(history));
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases: &[(&str, u64, &str)] = &[
            ("\n{", 2, "line 2: invalid JSON"),
            ("[1]", 1, "line 1: invalid JSON: expected a JSON object"),
            (r#"{"type":"ok","f":"read","time":1}"#, 1, "line 1: missing field `process`"),
            (
                r#"{"process":-1,"type":"ok","f":"read","time":1}"#,
                1,
                "line 1: field `process`: expected a non-negative integer, found -1",
            ),
            (r#"{"process":1,"type":"done","f":"read","time":1}"#, 1, "line 1: field `type`"),
            (r#"{"process":1,"type":"invoke","f":"write","value":[1,2,3],"time":1}"#, 1, "line 1: field `value`"),
            (r#"{"process":1,"type":"invoke","f":"write","value":1.5,"time":1}"#, 1, "line 1: field `value`"),
        ];
        for (text, line, message) in cases {
            let error = History::parse_jsonl(text).unwrap_err();
            assert_eq!(error.line, *line, "{text}");
            assert!(error.to_string().starts_with(message), "{error} for {text}");
        }
        let busy = concat!(
            r#"{"process":1,"type":"invoke","f":"read","time":1}"#,
            "\n",
            r#"{"process":1,"type":"invoke","f":"read","time":2}"#,
        );
        let error = History::parse_jsonl(busy).unwrap_err();
        assert_eq!(
            error,
            ParseError {
                line: 2,
                kind: ParseErrorKind::History(HistoryError::ProcessBusy { process: 1, outstanding_index: 0 }),
            }
        );
    }

    #[test]
    fn over_long_line_is_rejected() {
        let text = " ".repeat(JSONL_LINE_BYTES_MAX as usize + 1);
        let error = History::parse_jsonl(&text).unwrap_err();
        assert_eq!(error.kind, ParseErrorKind::LineTooLong { line_bytes_max: JSONL_LINE_BYTES_MAX });
    }
}
