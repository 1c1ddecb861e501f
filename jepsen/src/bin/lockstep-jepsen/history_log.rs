//! The history of a run, written as it happens: client operations to
//! `history.jsonl` (the format `lockstep_jepsen::History::read_jsonl` reads)
//! and nemesis events to `nemesis.jsonl`, one line each, flushed per line.
//!
//! Nemesis events live in their own file because the library's JSON Lines
//! reader takes only integer processes and `read`/`write`/`cas`; their lines
//! look like `{"process":"nemesis","type":"info","f":"kill","value":"member 3
//! (leader)","time":5000000000}`. `lockstep-jepsen check` skips such lines, so
//! the two files may also be concatenated.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use lockstep_jepsen::{Op, OpType, Value, F};

/// One nemesis event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NemesisEvent {
    /// `kill`, `restart`, `pause`, `resume`, `partition`, `heal`.
    pub f: String,
    /// What exactly, for people.
    pub value: String,
    /// Nanoseconds since the run started.
    pub time_ns: u64,
}

struct Files {
    history: BufWriter<File>,
    nemesis: BufWriter<File>,
    ops: Vec<Op>,
    nemesis_events: Vec<NemesisEvent>,
}

/// The run's history, shared by every client thread and the nemesis.
pub struct HistoryLog {
    start: Instant,
    files: Mutex<Files>,
}

impl HistoryLog {
    /// Creates `history.jsonl` and `nemesis.jsonl` in `dir`; times count from `start`.
    pub fn create(dir: &Path, start: Instant) -> std::io::Result<HistoryLog> {
        let history = BufWriter::new(File::create(dir.join("history.jsonl"))?);
        let nemesis = BufWriter::new(File::create(dir.join("nemesis.jsonl"))?);
        let files = Files { history, nemesis, ops: Vec::new(), nemesis_events: Vec::new() };
        Ok(HistoryLog { start, files: Mutex::new(files) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        // A client thread that panicked while holding the lock left whole lines only.
        self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a client event; its time is taken under the lock, so that
    /// times grow with the file order.
    pub fn record(&self, process: u64, op_type: OpType, f: F, key: Option<&str>, value: Value) {
        let mut files = self.lock();
        let time_ns = self.start.elapsed().as_nanos() as u64;
        let op = Op { process, op_type, f, key: key.map(str::to_owned), value, time_ns };
        let line = op_line(&op);
        // A full disk must not stop the run half-way; the checker reads the file later and will complain.
        let _ = files.history.write_all(line.as_bytes());
        let _ = files.history.flush();
        files.ops.push(op);
    }

    /// Records a nemesis event.
    pub fn nemesis(&self, f: &str, value: &str) {
        let mut files = self.lock();
        let time_ns = self.start.elapsed().as_nanos() as u64;
        let event = NemesisEvent { f: f.to_owned(), value: value.to_owned(), time_ns };
        let _ = files.nemesis.write_all(nemesis_line(&event).as_bytes());
        let _ = files.nemesis.flush();
        files.nemesis_events.push(event);
    }

    /// Copies of every event recorded so far.
    pub fn snapshot(&self) -> (Vec<Op>, Vec<NemesisEvent>) {
        let files = self.lock();
        (files.ops.clone(), files.nemesis_events.clone())
    }
}

/// One client event as a JSON Lines line, ending in `\n`.
pub fn op_line(op: &Op) -> String {
    let mut line = format!(r#"{{"process":{},"type":"{}","f":"{}","#, op.process, op.op_type.as_str(), op.f.as_str());
    if let Some(key) = &op.key {
        let _ = write!(line, r#""key":{},"#, serde_json::Value::String(key.clone()));
    }
    let value = match op.value {
        Value::Nil => "null".to_owned(),
        Value::Int(value) => value.to_string(),
        Value::Cas { expected: None, new } => format!("[null,{new}]"),
        Value::Cas { expected: Some(expected), new } => format!("[{expected},{new}]"),
    };
    let _ = writeln!(line, r#""value":{value},"time":{}}}"#, op.time_ns);
    line
}

/// One nemesis event as a JSON Lines line, ending in `\n`.
pub fn nemesis_line(event: &NemesisEvent) -> String {
    let f = serde_json::Value::String(event.f.clone());
    let value = serde_json::Value::String(event.value.clone());
    format!("{{\"process\":\"nemesis\",\"type\":\"info\",\"f\":{f},\"value\":{value},\"time\":{}}}\n", event.time_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_jepsen::History;

    #[test]
    fn lines_read_back_through_the_library() {
        let ops = [
            Op { process: 0, op_type: OpType::Invoke, f: F::Write, key: None, value: Value::Int(3), time_ns: 1 },
            Op {
                process: 1,
                op_type: OpType::Invoke,
                f: F::Cas,
                key: None,
                value: Value::Cas { expected: Some(3), new: 4 },
                time_ns: 2,
            },
            Op { process: 0, op_type: OpType::Ok, f: F::Write, key: None, value: Value::Int(3), time_ns: 3 },
            Op {
                process: 1,
                op_type: OpType::Info,
                f: F::Cas,
                key: None,
                value: Value::Cas { expected: Some(3), new: 4 },
                time_ns: 4,
            },
            Op {
                process: 2,
                op_type: OpType::Invoke,
                f: F::Read,
                key: Some("k\"1".into()),
                value: Value::Nil,
                time_ns: 5,
            },
            Op { process: 2, op_type: OpType::Ok, f: F::Read, key: Some("k\"1".into()), value: Value::Nil, time_ns: 6 },
        ];
        let text: String = ops.iter().map(op_line).collect();
        let history = History::parse_jsonl(&text).unwrap();
        assert_eq!(history.ops(), &ops);
    }

    #[test]
    fn log_writes_both_files_as_it_goes() {
        let dir = std::env::temp_dir().join(format!("lsj-history-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = HistoryLog::create(&dir, Instant::now()).unwrap();
        log.record(0, OpType::Invoke, F::Write, None, Value::Int(1));
        log.nemesis("kill", "member 2");
        // Flushed per line: visible before the log is dropped.
        let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
        assert!(history.starts_with(r#"{"process":0,"type":"invoke","f":"write","value":1,"time":"#), "{history}");
        let nemesis = std::fs::read_to_string(dir.join("nemesis.jsonl")).unwrap();
        assert!(nemesis.starts_with(r#"{"process":"nemesis","type":"info","f":"kill","value":"member 2","time":"#));
        let json: serde_json::Value = serde_json::from_str(nemesis.trim()).unwrap();
        assert_eq!(json["process"], "nemesis");
        assert_eq!(json["type"], "info");
        assert_eq!(json["f"], "kill");
        let (ops, events) = log.snapshot();
        assert_eq!((ops.len(), events.len()), (1, 1));
        assert!(events[0].time_ns >= ops[0].time_ns);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
