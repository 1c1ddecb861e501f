//! One run's report: what was run (the parameters) and what came out (the
//! [`Summary`]), as text for a person or as one JSON document.

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// A run: its parameters and its outcome. `lockstep bench table` and `plot`
/// read these back from JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The workload: put, range, txn-put, watch, lease-keepalive.
    pub workload: String,
    /// --name (a table row), possibly empty.
    #[serde(default)]
    pub name: String,
    /// --label (the system), possibly empty.
    #[serde(default)]
    pub label: String,
    /// The endpoints the connections went to.
    pub endpoints: Vec<String>,
    /// Concurrent clients.
    pub clients: u64,
    /// gRPC connections.
    pub conns: u64,
    /// Requests asked for (--total).
    pub total: u64,
    /// --duration, in seconds, if given.
    pub duration_limit_s: Option<f64>,
    /// Key size in bytes.
    pub key_size: u64,
    /// Value size in bytes.
    pub val_size: u64,
    /// Distinct keys.
    pub key_space: u64,
    /// Workload-specific parameters (consistency, txn_ops, watchers, ...).
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// What the requests are counted in: `requests`, or `events` for watch.
    pub unit: String,
    /// The outcome.
    pub summary: Summary,
}

impl Report {
    /// The report as text: one summary like etcd's benchmark prints.
    pub fn render_human(&self) -> String {
        let s = &self.summary;
        let l = &s.latency_ms;
        let mut out = String::new();
        let mut params = String::new();
        for (key, value) in &self.params {
            params.push_str(&format!(", {key} {value}"));
        }
        out.push_str(&format!(
            "{}{}: {} clients, {} connections, {} endpoint{}, key {} B, value {} B, key space {}{params}\n",
            self.workload,
            if self.label.is_empty() { String::new() } else { format!(" ({})", self.label) },
            self.clients,
            self.conns,
            self.endpoints.len(),
            if self.endpoints.len() == 1 { "" } else { "s" },
            self.key_size,
            self.val_size,
            self.key_space,
        ));
        out.push_str(&format!(
            "  {} {} ok, {} errors in {:.2} s: {:.1} {}/s\n",
            s.requests_ok, self.unit, s.errors, s.duration_s, s.throughput_per_s, self.unit
        ));
        out.push_str(&format!(
            "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (min {:.3}, mean {:.3})\n",
            l.p50, l.p90, l.p99, l.p999, l.max, l.min, l.mean
        ));
        for (kind, count) in &s.error_kinds {
            out.push_str(&format!("  error x{count}: {kind}\n"));
        }
        out
    }

    /// The report as one pretty-printed JSON document, with a final newline.
    pub fn render_json(&self) -> String {
        match serde_json::to_string_pretty(self) {
            Ok(mut text) => {
                text.push('\n');
                text
            }
            // Plain numbers, strings and maps: this cannot fail.
            Err(e) => format!("{{\"error\": \"cannot encode the report: {e}\"}}\n"),
        }
    }

    /// Reads a report written by [`Report::render_json`].
    pub fn from_json(text: &str) -> Result<Report, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stats::Latency;
    use std::collections::BTreeMap;

    /// A report with the given identity and outcome, for the table and plot tests.
    pub(crate) fn report(name: &str, label: &str, clients: u64, qps: f64, p99: f64) -> Report {
        Report {
            workload: "put".into(),
            name: name.into(),
            label: label.into(),
            endpoints: vec!["http://127.0.0.1:2379".into()],
            clients,
            conns: 1,
            total: 1000,
            duration_limit_s: None,
            key_size: 8,
            val_size: 256,
            key_space: 1,
            params: serde_json::Map::new(),
            unit: "requests".into(),
            summary: Summary {
                requests_ok: 1000,
                errors: 0,
                error_kinds: BTreeMap::new(),
                duration_s: 1000.0 / qps,
                throughput_per_s: qps,
                latency_ms: Latency { p99, ..Latency::default() },
            },
        }
    }

    #[test]
    fn json_round_trips() {
        let mut r = report("put", "lockstep", 100, 52000.0, 4.1);
        r.params.insert("consistency".into(), "s".into());
        r.summary.errors = 2;
        r.summary.error_kinds.insert("Unavailable: no leader".into(), 2);
        let back = Report::from_json(&r.render_json()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn human_text_names_every_number() {
        let mut r = report("put", "etcd", 100, 2000.0, 9.8);
        r.summary.errors = 1;
        r.summary.error_kinds.insert("DeadlineExceeded: timeout".into(), 1);
        let text = r.render_human();
        assert!(text.starts_with("put (etcd): 100 clients, 1 connections, 1 endpoint,"), "{text}");
        assert!(text.contains("1000 requests ok, 1 errors in 0.50 s: 2000.0 requests/s"), "{text}");
        assert!(text.contains("p99 9.800"), "{text}");
        assert!(text.contains("error x1: DeadlineExceeded: timeout"), "{text}");
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(Report::from_json("{").is_err());
        assert!(Report::from_json("{\"workload\": \"put\"}").is_err());
    }
}
