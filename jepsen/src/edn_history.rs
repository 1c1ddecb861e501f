//! Jepsen `history.edn` files for register workloads.
//!
//! Supported subset:
//!
//! - The file is a sequence of op maps (one per line, as Jepsen writes it), or
//!   a single vector or list of op maps. A map may be tagged, as in
//!   `#jepsen.history.Op{...}`; the tag is ignored.
//! - `:process` is a non-negative integer. Ops whose process is anything else
//!   (Jepsen's `:nemesis`) are skipped.
//! - `:type` is `:invoke`, `:ok`, `:fail` or `:info`; `:f` is `:read`,
//!   `:write` or `:cas`.
//! - `:time` is a non-negative integer (nanoseconds); absent means 0.
//! - `:value` is `nil` or an integer for reads (a read's invocation may carry
//!   a value, as in some of Knossos's test histories; it is ignored, as
//!   Jepsen ignores it), an integer for writes and
//!   `[expected new]` for cas, where `expected` may be `nil`. Absent means
//!   `nil`.
//! - Independent keys (`jepsen.independent`) as `[key value]` tuples: a read
//!   `[k nil]` or `[k 3]`, a write `[k 3]`, a cas `[k [1 2]]`. A key is an
//!   integer (kept as its decimal string), a string or a keyword (kept without
//!   the colon). A plain and a keyed form are told apart per op: a read or
//!   write whose value is a vector is keyed, and a cas is keyed when the
//!   second element of its vector is itself a vector.
//! - Other map entries (`:index`, `:error`, ...) are read and ignored.
//! - The value of a completion other than a read's `:ok` is not used; when it
//!   does not have one of the shapes above it is taken as `nil`.

use crate::edn::{self, Edn, Node};
use crate::history::{History, HistoryRecorder};
use crate::op::{Op, OpType, Value, F};
use crate::parse_error::{quote, ParseError, ParseErrorKind};

impl History {
    /// Parses a Jepsen `history.edn` of a register workload; see the module
    /// documentation of `edn_history` for the supported subset.
    ///
    /// # Errors
    /// Malformed EDN, or an op map that does not fit the subset, with the line
    /// the offending form starts on.
    pub fn parse_edn(text: &str) -> Result<History, ParseError> {
        let forms = edn::read_all(text)
            .map_err(|error| ParseError { line: error.line, kind: ParseErrorKind::Edn(error.message) })?;
        let forms = match forms.as_slice() {
            [Node { value: Edn::Vector(items) | Edn::List(items), .. }] => items.as_slice(),
            _ => forms.as_slice(),
        };
        let mut recorder = HistoryRecorder::new();
        for form in forms {
            if let Some(op) = op_from_form(form)? {
                recorder
                    .push(op)
                    .map_err(|error| ParseError { line: form.line, kind: ParseErrorKind::History(error) })?;
            }
        }
        Ok(recorder.finish())
    }

    /// Writes the history as a Jepsen `history.edn`: one op map per line, in
    /// the key order Jepsen prints (`:type`, `:f`, `:value`, `:process`,
    /// `:time`, `:index`), a keyed op's value as an independent `[key value]`
    /// tuple (an integer key when the key is an integer's decimal form, a
    /// string otherwise). [`History::parse_edn`] reads it back to an equal
    /// history.
    #[must_use]
    pub fn to_edn(&self) -> String {
        let mut text = String::with_capacity(self.len() * 90);
        for (index, op) in self.ops().iter().enumerate() {
            let value = match op.value {
                Value::Nil => "nil".to_owned(),
                Value::Int(value) => value.to_string(),
                Value::Cas { expected, new } => format!("[{} {new}]", crate::op::RegisterDisplay(expected)),
            };
            let value = match &op.key {
                None => value,
                Some(key) if key.parse::<i64>().is_ok_and(|number| number.to_string() == *key) => {
                    format!("[{key} {value}]")
                }
                Some(key) => format!("[\"{}\" {value}]", key.replace('\\', "\\\\").replace('"', "\\\"")),
            };
            text.push_str(&format!(
                "{{:type :{}, :f :{}, :value {value}, :process {}, :time {}, :index {index}}}\n",
                op.op_type.as_str(),
                op.f.as_str(),
                op.process,
                op.time_ns,
            ));
        }
        text
    }
}

/// Short EDN rendering of a node for error messages.
fn describe(node: &Node) -> String {
    let text = match &node.value {
        Edn::Nil => "nil".to_owned(),
        Edn::Bool(value) => value.to_string(),
        Edn::Int(value) => value.to_string(),
        Edn::Opaque(text) | Edn::Symbol(text) => text.clone(),
        Edn::String(text) => format!("{text:?}"),
        Edn::Keyword(name) => format!(":{name}"),
        Edn::List(_) => "a list".to_owned(),
        Edn::Vector(items) => format!("a vector of {} elements", items.len()),
        Edn::Map(_) => "a map".to_owned(),
        Edn::Set(_) => "a set".to_owned(),
        Edn::Tagged(tag, _) => format!("#{tag} ..."),
    };
    quote(&text)
}

fn get<'a>(entries: &'a [(Node, Node)], name: &str) -> Option<&'a Node> {
    entries.iter().find_map(|(key, value)| match &key.value {
        Edn::Keyword(keyword) if keyword == name => Some(value),
        _ => None,
    })
}

/// Converts one op map; `None` for ops of non-client processes.
fn op_from_form(form: &Node) -> Result<Option<Op>, ParseError> {
    let line = form.line;
    let mut map = form;
    while let Edn::Tagged(_, inner) = &map.value {
        map = inner;
    }
    let Edn::Map(entries) = &map.value else {
        return Err(ParseError::bad_field(line, "op", "a map", &describe(form)));
    };
    let missing = |field| ParseError { line, kind: ParseErrorKind::MissingField(field) };
    let process = get(entries, "process").ok_or_else(|| missing("process"))?;
    let process = match process.value {
        Edn::Int(process) => u64::try_from(process)
            .map_err(|_| ParseError::bad_field(line, "process", "a non-negative integer", &process.to_string()))?,
        // Jepsen's nemesis and other non-client processes are not register
        // clients; their ops are not part of the register's history.
        _ => return Ok(None),
    };
    let op_type = get(entries, "type").ok_or_else(|| missing("type"))?;
    let op_type = keyword(op_type).and_then(OpType::from_name).ok_or_else(|| {
        let expected = ":invoke, :ok, :fail or :info";
        ParseError::bad_field(line, "type", expected, &describe(op_type))
    })?;
    let f = get(entries, "f").ok_or_else(|| missing("f"))?;
    let f = keyword(f)
        .and_then(F::from_name)
        .ok_or_else(|| ParseError::bad_field(line, "f", ":read, :write or :cas", &describe(f)))?;
    let time_ns = match get(entries, "time") {
        None => 0,
        Some(Node { value: Edn::Int(time), .. }) if *time >= 0 => time.unsigned_abs(),
        Some(other) => {
            let expected = "non-negative integer nanoseconds";
            return Err(ParseError::bad_field(line, "time", expected, &describe(other)));
        }
    };
    let value_node = get(entries, "value");
    let converted = match value_node {
        None => Some((None, Value::Nil)),
        Some(node) => keyed_value(f, node),
    };
    let value_used = op_type == OpType::Invoke || (op_type == OpType::Ok && f == F::Read);
    let (key, value) = match (converted, value_node) {
        (Some(converted), _) => converted,
        (None, _) if !value_used => (None, Value::Nil),
        (None, Some(node)) => {
            let expected = match f {
                F::Read => "nil, an integer, or [key nil-or-integer]",
                F::Write => "an integer or [key integer]",
                F::Cas => "[expected new] or [key [expected new]]",
            };
            return Err(ParseError::bad_field(line, "value", expected, &describe(node)));
        }
        (None, None) => (None, Value::Nil),
    };
    // Jepsen ignores the value of a read's invocation (the completion says
    // what was read), and some histories carry one there, so it is dropped.
    let value = if op_type == OpType::Invoke && f == F::Read { Value::Nil } else { value };
    Ok(Some(Op { process, op_type, f, key, value, time_ns }))
}

fn keyword(node: &Node) -> Option<&str> {
    match &node.value {
        Edn::Keyword(name) => Some(name),
        _ => None,
    }
}

fn register(node: &Node) -> Option<Option<i64>> {
    match node.value {
        Edn::Nil => Some(None),
        Edn::Int(value) => Some(Some(value)),
        _ => None,
    }
}

fn pair(node: &Node) -> Option<(&Node, &Node)> {
    match &node.value {
        Edn::Vector(items) | Edn::List(items) => match items.as_slice() {
            [first, second] => Some((first, second)),
            _ => None,
        },
        _ => None,
    }
}

fn cas(node: &Node) -> Option<Value> {
    let (expected, new) = pair(node)?;
    let expected = register(expected)?;
    let Edn::Int(new) = new.value else { return None };
    Some(Value::Cas { expected, new })
}

fn key(node: &Node) -> Option<String> {
    match &node.value {
        Edn::Int(key) => Some(key.to_string()),
        Edn::String(key) | Edn::Keyword(key) => Some(key.clone()),
        _ => None,
    }
}

/// Reads a value, plain or as an independent `[key value]` tuple.
fn keyed_value(f: F, node: &Node) -> Option<(Option<String>, Value)> {
    let plain = match f {
        F::Read | F::Write => register(node).map(|value| match value {
            None => Value::Nil,
            Some(value) => Value::Int(value),
        }),
        F::Cas => match pair(node) {
            Some((_, second)) if matches!(second.value, Edn::Vector(_) | Edn::List(_)) => None,
            _ => cas(node),
        },
    };
    if let Some(plain) = plain {
        return Some((None, plain));
    }
    let (key_node, inner) = pair(node)?;
    let key = key(key_node)?;
    let value = match f {
        F::Read | F::Write => match register(inner)? {
            None => Value::Nil,
            Some(value) => Value::Int(value),
        },
        F::Cas => cas(inner)?,
    };
    Some((Some(key), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryError;

    #[test]
    fn reads_a_plain_register_history() {
        let text = r#"
{:type :invoke, :f :read, :value nil, :process 0, :time 123, :index 0}
{:type :invoke, :f :cas, :value [1 2], :process 1, :time 124, :index 1}
{:type :info, :f :start, :process :nemesis, :time 125, :value nil}
{:type :ok, :f :read, :value 1, :process 0, :time 130, :index 2}
{:type :fail, :f :cas, :value [1 2], :process 1, :time 131, :error :mismatch}
#jepsen.history.Op{:type :invoke, :f :write, :value 4, :process 2}
{:type :info, :f :write, :value :timeout, :process 2, :time 140}
"#;
        let history = History::parse_edn(text).expect("valid");
        let ops = history.ops();
        assert_eq!(ops.len(), 6);
        assert_eq!(
            ops[1],
            Op {
                process: 1,
                op_type: OpType::Invoke,
                f: F::Cas,
                key: None,
                value: Value::Cas { expected: Some(1), new: 2 },
                time_ns: 124,
            }
        );
        assert_eq!(ops[2].value, Value::Int(1));
        assert_eq!(ops[4].time_ns, 0);
        assert_eq!(ops[4].value, Value::Int(4));
        assert_eq!(ops[5].value, Value::Nil);
    }

    #[test]
    fn reads_independent_keys_and_a_vector_of_ops() {
        let text = r#"[{:process 0, :type :invoke, :f :read, :value [5 nil]}
 {:process 1, :type :invoke, :f :cas, :value ["k" [nil 3]]}
 {:process 2, :type :invoke, :f :write, :value [:x 9]}
 {:process 0, :type :ok, :f :read, :value [5 7]}
 {:process 1, :type :ok, :f :cas, :value ["k" [nil 3]]}]"#;
        let history = History::parse_edn(text).expect("valid");
        let summary: Vec<(Option<&str>, Value)> =
            history.ops().iter().map(|op| (op.key.as_deref(), op.value)).collect();
        assert_eq!(
            summary,
            vec![
                (Some("5"), Value::Nil),
                (Some("k"), Value::Cas { expected: None, new: 3 }),
                (Some("x"), Value::Int(9)),
                (Some("5"), Value::Int(7)),
                (Some("k"), Value::Cas { expected: None, new: 3 }),
            ]
        );
    }

    #[test]
    fn errors_name_the_line_of_the_form() {
        let cases: &[(&str, u64, &str)] = &[
            ("{:type :invoke :f :read}", 1, "line 1: missing field `process`"),
            ("\n{:process 1 :type :start :f :read}", 2, "line 2: field `type`: expected"),
            ("{:process 1 :type :invoke :f :txn}", 1, "line 1: field `f`: expected :read"),
            ("{:process -1 :type :invoke :f :read}", 1, "line 1: field `process`"),
            ("{:process 1 :type :invoke :f :write :value 1.5}", 1, "line 1: field `value`"),
            ("{:process 1 :type :invoke :f :cas :value [1]}", 1, "line 1: field `value`"),
            ("{:process 1 :type :invoke :f :read :time -5}", 1, "line 1: field `time`"),
            ("[1 2]", 1, "line 1: field `op`: expected a map, found 1"),
            ("{:process 1 :type :invoke :f :read", 1, "line 1: invalid EDN: unclosed"),
        ];
        for (text, line, message) in cases {
            let error = History::parse_edn(text).unwrap_err();
            assert_eq!(error.line, *line, "{text}");
            assert!(error.to_string().starts_with(message), "{error} for {text}");
        }
        let busy = "{:process 1 :type :invoke :f :read}\n{:process 1 :type :invoke :f :read}";
        let error = History::parse_edn(busy).unwrap_err();
        let expected = HistoryError::ProcessBusy { process: 1, outstanding_index: 0 };
        assert_eq!(error, ParseError { line: 2, kind: ParseErrorKind::History(expected) });
    }
}
