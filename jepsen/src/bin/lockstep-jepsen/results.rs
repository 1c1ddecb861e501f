//! What a run leaves behind besides the history: `summary.json`,
//! `summary.txt` and a self-contained `report.html` (one lane per process,
//! fault windows shaded).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use lockstep_jepsen::{CheckResult, KeyOutcome, Op, OpType, Value};
use serde_json::json;

use crate::history_log::NemesisEvent;

/// The facts of a run that the summary reports.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// The harness's run id (pid in hex).
    pub run_id: String,
    /// When it started, UTC.
    pub started_utc: String,
    /// The seed.
    pub seed: u64,
    /// Cluster size.
    pub members: u64,
    /// Workload name.
    pub workload: String,
    /// Nemeses, comma-separated.
    pub nemesis: String,
    /// Client time limit, seconds.
    pub time_limit_s: f64,
    /// Client threads.
    pub concurrency: u32,
    /// Wall time of the whole run, seconds.
    pub wall_s: f64,
    /// Whether the cluster had a leader and every member was ready after the final heal.
    pub recovered: bool,
    /// Problems worth a look: crashes, unclean exits, a failed recovery.
    pub warnings: Vec<String>,
}

/// The checker's part of the summary.
#[derive(Clone, Debug)]
pub struct CheckInfo {
    /// `linearizable`, `not linearizable` or `unknown`.
    pub verdict: String,
    /// Seconds the checker took.
    pub time_s: f64,
    /// The result, unless the check did not finish.
    pub result: Option<CheckResult>,
}

/// A fault window: from a fault's start to its heal.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Start, ns.
    pub start_ns: u64,
    /// End, ns (the end of the run if never healed).
    pub end_ns: u64,
    /// What it was.
    pub label: String,
}

/// Pairs nemesis events into fault windows (faults do not overlap).
pub fn windows(events: &[NemesisEvent], end_ns: u64) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut open: Option<&NemesisEvent> = None;
    for event in events {
        match event.f.as_str() {
            "kill" | "pause" | "partition" | "asymmetric" | "clock" | "disk" | "member-remove" => open = Some(event),
            "restart" | "resume" | "heal" | "member-join" => {
                if let Some(start) = open.take() {
                    let label = format!("{} {}", start.f, start.value);
                    windows.push(Window { start_ns: start.time_ns, end_ns: event.time_ns, label });
                }
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        windows.push(Window { start_ns: start.time_ns, end_ns, label: format!("{} {}", start.f, start.value) });
    }
    windows
}

/// Counts of completions per function and type (`read.ok`, `cas.fail`, ...).
pub fn op_counts(ops: &[Op]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for op in ops {
        let name = match op.op_type {
            OpType::Invoke => "invoke".to_owned(),
            other => format!("{}.{}", op.f, other),
        };
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// `summary.json`.
pub fn summary_json(info: &RunInfo, ops: &[Op], events: &[NemesisEvent], check: &CheckInfo) -> serde_json::Value {
    let counts = op_counts(ops);
    let total = |suffix: &str| -> u64 {
        counts.iter().filter(|(name, _)| name.ends_with(suffix)).map(|(_, count)| *count).sum()
    };
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for event in events {
        *faults.entry(event.f.clone()).or_insert(0) += 1;
    }
    let keys = check.result.as_ref().map(|result| {
        let checked: u64 = result.keys.iter().map(|key| key.ops).sum();
        json!({"keys": result.keys.len(), "ops_checked": checked,
               "states": result.keys.iter().map(|key| key.states).sum::<u64>()})
    });
    json!({
        "run_id": info.run_id,
        "started_utc": info.started_utc,
        "seed": info.seed,
        "members": info.members,
        "workload": info.workload,
        "nemesis": info.nemesis,
        "time_limit_s": info.time_limit_s,
        "concurrency": info.concurrency,
        "wall_s": (info.wall_s * 10.0).round() / 10.0,
        "ops": {
            "invoked": counts.get("invoke").copied().unwrap_or(0),
            "ok": total(".ok"),
            "fail": total(".fail"),
            "info": total(".info"),
            "by_f_and_type": counts,
        },
        "nemesis_events": faults,
        "faults": events.iter().map(|event| json!({"time_s": event.time_ns as f64 / 1e9, "f": event.f, "value": event.value})).collect::<Vec<_>>(),
        "recovered": info.recovered,
        "warnings": info.warnings,
        "checker": {
            "verdict": check.verdict,
            "time_s": check.time_s,
            "detail": keys,
        },
    })
}

/// `summary.txt`, also printed at the end of a run.
pub fn summary_text(summary: &serde_json::Value, check: &CheckInfo) -> String {
    let mut text = String::new();
    let ops = &summary["ops"];
    let _ = writeln!(
        text,
        "run {} (seed {}): {} members, workload {}, nemesis {}, {} s, {} clients, {:.1} s wall",
        summary["run_id"].as_str().unwrap_or("?"),
        summary["seed"],
        summary["members"],
        summary["workload"].as_str().unwrap_or("?"),
        summary["nemesis"].as_str().unwrap_or("?"),
        summary["time_limit_s"],
        summary["concurrency"],
        summary["wall_s"].as_f64().unwrap_or(0.0),
    );
    let _ =
        writeln!(text, "ops: {} invoked, {} ok, {} fail, {} info", ops["invoked"], ops["ok"], ops["fail"], ops["info"]);
    if let Some(counts) = ops["by_f_and_type"].as_object() {
        let parts: Vec<String> = counts
            .iter()
            .filter(|(name, _)| *name != "invoke")
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        let _ = writeln!(text, "     {}", parts.join(", "));
    }
    let faults: Vec<String> = summary["nemesis_events"]
        .as_object()
        .map(|map| map.iter().map(|(name, count)| format!("{name} {count}")).collect())
        .unwrap_or_default();
    let _ = writeln!(text, "nemesis events: {}", if faults.is_empty() { "none".to_owned() } else { faults.join(", ") });
    let _ = writeln!(text, "recovered after the final heal: {}", summary["recovered"]);
    for warning in summary["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(text, "warning: {}", warning.as_str().unwrap_or(""));
    }
    let _ = writeln!(text, "checker: {} in {:.3} s", check.verdict, check.time_s);
    if let Some(result) = &check.result {
        let _ = write!(text, "{result}");
    }
    text
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn value_text(value: Value) -> String {
    value.to_string()
}

/// One operation drawn on a timeline: its invocation, its completion if any,
/// and its index among the history's events.
struct Drawn<'a> {
    invoke_index: usize,
    invoke: &'a Op,
    completion: Option<&'a Op>,
}

/// Pairs invocations with completions, in invocation order.
fn pair(ops: &[Op]) -> Vec<Drawn<'_>> {
    let mut pending: HashMap<u64, usize> = HashMap::new();
    let mut drawn: Vec<Drawn<'_>> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        if op.op_type == OpType::Invoke {
            pending.insert(op.process, drawn.len());
            drawn.push(Drawn { invoke_index: index, invoke: op, completion: None });
        } else if let Some(slot) = pending.remove(&op.process) {
            drawn[slot].completion = Some(op);
        }
    }
    drawn
}

/// Ops the checker named in a counterexample, by invocation index.
fn flagged_ops(check: &CheckInfo) -> HashMap<u64, &'static str> {
    let mut flagged = HashMap::new();
    if let Some(result) = &check.result {
        for key in &result.keys {
            if let KeyOutcome::Invalid(counterexample) = &key.outcome {
                for op in &counterexample.candidates {
                    flagged.insert(op.invoke_index, "candidate");
                }
                flagged.insert(counterexample.blocked.invoke_index, "blocked");
            }
        }
    }
    flagged
}

/// The time range around the first counterexample: its last prefix ops and
/// candidates, with a little margin.
fn violation_window(check: &CheckInfo) -> Option<(u64, u64)> {
    let result = check.result.as_ref()?;
    let counterexample = result.keys.iter().find_map(|key| match &key.outcome {
        KeyOutcome::Invalid(counterexample) => Some(counterexample),
        _ => None,
    })?;
    let recent = counterexample.prefix.iter().rev().take(5);
    let ops: Vec<_> = recent.chain(counterexample.candidates.iter()).chain([&counterexample.blocked]).collect();
    let from = ops.iter().map(|op| op.invoke_time_ns).min()?;
    let to = ops.iter().map(|op| op.complete_time_ns.unwrap_or(op.invoke_time_ns)).max()?;
    let margin = (to - from) / 10 + 1_000_000;
    Some((from.saturating_sub(margin), to + margin))
}

/// An SVG timeline of the ops overlapping `from_ns..to_ns`: one lane per
/// process, fault windows shaded, counterexample ops outlined in red.
fn timeline(
    ops: &[Op],
    events: &[NemesisEvent],
    flagged: &HashMap<u64, &'static str>,
    from_ns: u64,
    to_ns: u64,
) -> String {
    const WIDTH: f64 = 1400.0;
    const LANE: f64 = 14.0;
    const LEFT: f64 = 60.0;
    let span = to_ns.saturating_sub(from_ns).max(1);
    let x = |ns: u64| LEFT + (ns.clamp(from_ns, to_ns) - from_ns) as f64 / span as f64 * WIDTH;
    let shown: Vec<Drawn<'_>> = pair(ops)
        .into_iter()
        .filter(|drawn| {
            let end = drawn.completion.map_or(u64::MAX, |op| op.time_ns);
            drawn.invoke.time_ns <= to_ns && end >= from_ns
        })
        .collect();
    let mut processes: Vec<u64> = shown.iter().map(|drawn| drawn.invoke.process).collect();
    processes.sort_unstable();
    processes.dedup();
    let lane: HashMap<u64, usize> = processes.iter().enumerate().map(|(index, process)| (*process, index)).collect();
    let height = processes.len() as f64 * LANE + 40.0;
    let mut svg = String::new();
    let _ =
        writeln!(svg, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}">"#, WIDTH + LEFT + 20.0);
    for window in windows(events, to_ns).iter().filter(|window| window.start_ns <= to_ns && window.end_ns >= from_ns) {
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="0" width="{:.1}" height="{height}" fill="#f8d0d0"><title>{}</title></rect>"##,
            x(window.start_ns),
            (x(window.end_ns) - x(window.start_ns)).max(1.0),
            escape(&window.label)
        );
    }
    // About ten labelled ticks, on a round step.
    let step_ns = [1_000_000u64, 10_000_000, 100_000_000, 1_000_000_000, 10_000_000_000, 60_000_000_000]
        .into_iter()
        .find(|step| span / step <= 20)
        .unwrap_or(600_000_000_000);
    let mut tick = from_ns.div_ceil(step_ns) * step_ns;
    while tick <= to_ns {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{}" font-size="9" fill="#666">{}s</text>"##,
            x(tick),
            height - 5.0,
            tick as f64 / 1e9
        );
        tick += step_ns;
    }
    for (index, process) in processes.iter().enumerate() {
        let _ = writeln!(svg, r#"<text x="2" y="{:.1}" font-size="9">p{process}</text>"#, index as f64 * LANE + 10.0);
    }
    for drawn in &shown {
        let (invoke, invoke_index) = (drawn.invoke, drawn.invoke_index);
        let (color, end, outcome) = match drawn.completion {
            Some(op) if op.op_type == OpType::Ok => ("#4caf50", op.time_ns, "ok"),
            Some(op) if op.op_type == OpType::Fail => ("#b0b0b0", op.time_ns, "fail"),
            Some(op) => ("#ff9800", op.time_ns, "info"),
            None => ("#ff9800", to_ns, "never completed"),
        };
        let value = drawn.completion.filter(|op| op.op_type == OpType::Ok).map_or(invoke.value, |op| op.value);
        let key = invoke.key.as_deref().map(|key| format!(" key {key}")).unwrap_or_default();
        let stroke = match flagged.get(&(invoke_index as u64)) {
            Some(&"blocked") => r#" stroke="red" stroke-width="3""#,
            Some(_) => r#" stroke="red" stroke-width="1""#,
            None => "",
        };
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{}" fill="{color}"{stroke}><title>p{} {}{key} {} -&gt; {outcome} ({:.3}s..{:.3}s, event {invoke_index})</title></rect>"##,
            x(invoke.time_ns),
            lane[&invoke.process] as f64 * LANE + 2.0,
            (x(end) - x(invoke.time_ns)).max(1.0),
            LANE - 4.0,
            invoke.process,
            invoke.f,
            escape(&value_text(value)),
            invoke.time_ns as f64 / 1e9,
            end as f64 / 1e9,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// `report.html`: the summary, for a violation a close-up of it, then the
/// whole run's timeline with one lane per process, then the nemesis events.
pub fn html(summary_text: &str, ops: &[Op], events: &[NemesisEvent], check: &CheckInfo) -> String {
    let end_ns =
        ops.iter().map(|op| op.time_ns).chain(events.iter().map(|event| event.time_ns)).max().unwrap_or(1).max(1);
    let flagged = flagged_ops(check);
    let close_up = match violation_window(check) {
        Some((from, to)) => format!(
            "<h2>Around the violation ({:.3} s to {:.3} s)</h2>\n<div style=\"overflow-x:auto\">{}</div>\n",
            from as f64 / 1e9,
            to as f64 / 1e9,
            timeline(ops, events, &flagged, from, to)
        ),
        None => String::new(),
    };
    let svg = timeline(ops, events, &flagged, 0, end_ns);
    let mut faults = String::new();
    for event in events {
        let _ = writeln!(faults, "{:>9.3}s  {:<9} {}", event.time_ns as f64 / 1e9, event.f, escape(&event.value));
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>lockstep-jepsen: {verdict}</title>\n\
         <style>body{{font-family:sans-serif;margin:1em}} pre{{background:#f4f4f4;padding:.5em}} \
         .legend span{{display:inline-block;padding:0 .5em;margin-right:.5em}}</style></head><body>\n\
         <h1>lockstep-jepsen: {verdict}</h1>\n<pre>{summary}</pre>\n\
         <p class=\"legend\"><span style=\"background:#4caf50\">ok</span><span style=\"background:#b0b0b0\">fail</span>\
         <span style=\"background:#ff9800\">info / never completed</span><span style=\"background:#f8d0d0\">fault active</span>\
         <span style=\"border:2px solid red\">op in a counterexample</span> One lane per process; hover for details.</p>\n\
         {close_up}<h2>Timeline</h2>\n<div style=\"overflow-x:auto\">{svg}</div>\n<h2>Nemesis</h2>\n<pre>{faults}</pre>\n</body></html>\n",
        verdict = escape(&check.verdict),
        summary = escape(summary_text),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_jepsen::F;

    fn event(f: &str, time_ns: u64) -> NemesisEvent {
        NemesisEvent { f: f.to_owned(), value: "member 1".to_owned(), time_ns }
    }

    #[test]
    fn fault_windows_pair_start_and_heal() {
        let events =
            [event("kill", 10), event("restart", 20), event("partition", 30), event("heal", 40), event("pause", 50)];
        let windows = windows(&events, 99);
        assert_eq!(windows.len(), 3);
        assert_eq!((windows[0].start_ns, windows[0].end_ns), (10, 20));
        assert_eq!(windows[1].label, "partition member 1");
        assert_eq!((windows[2].start_ns, windows[2].end_ns), (50, 99));
    }

    #[test]
    fn summary_and_report() {
        let op = |process, op_type, f, value, time_ns| Op { process, op_type, f, key: None, value, time_ns };
        let ops = vec![
            op(0, OpType::Invoke, F::Write, Value::Int(1), 1),
            op(1, OpType::Invoke, F::Read, Value::Nil, 2),
            op(0, OpType::Ok, F::Write, Value::Int(1), 3),
            op(1, OpType::Info, F::Read, Value::Nil, 4),
            op(11, OpType::Invoke, F::Cas, Value::Cas { expected: Some(1), new: 2 }, 5),
        ];
        let events = [event("kill", 2), event("restart", 4)];
        let info = RunInfo {
            run_id: "abc".into(),
            started_utc: "20260101T000000Z".into(),
            seed: 1,
            members: 3,
            workload: "register".into(),
            nemesis: "kill".into(),
            time_limit_s: 1.0,
            concurrency: 2,
            wall_s: 2.0,
            recovered: true,
            warnings: vec![],
        };
        let check = CheckInfo { verdict: "linearizable".into(), time_s: 0.001, result: None };
        let summary = summary_json(&info, &ops, &events, &check);
        assert_eq!(summary["ops"]["invoked"], 3);
        assert_eq!(summary["ops"]["ok"], 1);
        assert_eq!(summary["ops"]["info"], 1);
        assert_eq!(summary["nemesis_events"]["kill"], 1);
        let text = summary_text(&summary, &check);
        assert!(text.contains("ops: 3 invoked, 1 ok, 0 fail, 1 info"), "{text}");
        assert!(text.contains("checker: linearizable"), "{text}");
        let page = html(&text, &ops, &events, &check);
        assert!(page.contains("<svg"));
        assert_eq!(page.matches("<rect").count(), 3 + 1, "three ops and one fault window");
        assert!(page.contains("never completed"));
    }

    #[test]
    fn a_violation_gets_a_close_up_with_the_blocked_op_outlined() {
        let text = "{\"process\":0,\"type\":\"invoke\",\"f\":\"write\",\"value\":1,\"time\":1000000000}\n\
                    {\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"value\":1,\"time\":2000000000}\n\
                    {\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"value\":null,\"time\":3000000000}\n\
                    {\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"value\":2,\"time\":4000000000}\n";
        let history = lockstep_jepsen::History::parse_jsonl(text).unwrap();
        let result = lockstep_jepsen::check(&history, &lockstep_jepsen::CheckConfig::default());
        let check = CheckInfo { verdict: "not linearizable".into(), time_s: 0.0, result: Some(result) };
        let page = html("summary", history.ops(), &[], &check);
        assert!(page.contains("<h2>Around the violation"), "{page}");
        // Outlined in the close-up and in the whole timeline.
        assert_eq!(page.matches(r#"stroke="red" stroke-width="3""#).count(), 2, "{page}");
        assert!(page.contains("p1 read 2 -&gt; ok"), "{page}");
    }
}
