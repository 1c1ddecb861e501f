//! A self-contained HTML timeline of a history, in the manner of
//! Porcupine's visualisation: one lane per process, each operation a bar
//! from its invocation to its completion, operations that never completed
//! (`info`) open-ended, and the operations of each counterexample window
//! highlighted.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use crate::history::History;
use crate::op::{OpType, Value, F};
use crate::report::{CheckResult, KeyOutcome, Verdict};

/// The most operations drawn; a longer history is cut to the operations
/// around the first counterexample (or its start).
pub const HTML_OPS_MAX: usize = 4_000;
/// Horizontal pixels per event.
const EVENT_PX: usize = 10;
/// Vertical pixels per lane.
const LANE_PX: usize = 26;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders `history` and what [`check`](crate::check) found in it as one
/// HTML page with inline CSS and no scripts or external resources.
///
/// The horizontal axis is the order of events (so that the real-time order
/// the checker used is exactly what is drawn); times are in each bar's
/// tooltip. Highlighted in red: for every invalid key, the smallest failing
/// window found (or, where none was found, the operation that could not be
/// linearized and the candidates pending with it).
#[must_use]
pub fn render_html(history: &History, result: &CheckResult) -> String {
    let events = history.ops();
    // (key, invocation index) of every highlighted operation.
    let mut highlighted: HashSet<(Option<String>, u64)> = HashSet::new();
    for key in &result.keys {
        if let KeyOutcome::Invalid(counterexample) = &key.outcome {
            let ops = if counterexample.window.is_empty() {
                std::iter::once(&counterexample.blocked).chain(&counterexample.candidates).collect::<Vec<_>>()
            } else {
                counterexample.window.iter().collect()
            };
            for op in ops {
                highlighted.insert((key.key.clone(), op.invoke_index));
            }
        }
    }
    let calls = history.calls();
    // Which operations to draw: all, or a window around the first
    // highlighted one.
    let first_highlighted = calls
        .iter()
        .position(|call| {
            let invoke = &events[call.invoke as usize];
            highlighted.contains(&(invoke.key.clone(), u64::from(call.invoke)))
        })
        .unwrap_or(0);
    let (from, to) = if calls.len() <= HTML_OPS_MAX {
        (0, calls.len())
    } else {
        let from = first_highlighted.saturating_sub(HTML_OPS_MAX / 2);
        (from, (from + HTML_OPS_MAX).min(calls.len()))
    };
    let shown = &calls[from..to];
    let first_event = shown.first().map_or(0, |call| call.invoke as usize);
    let last_event = shown.iter().map(|call| call.complete.unwrap_or(call.invoke) as usize).max().unwrap_or(0);
    let mut lanes: BTreeMap<u64, usize> = BTreeMap::new();
    for call in shown {
        lanes.insert(events[call.invoke as usize].process, 0);
    }
    for (lane, slot) in lanes.values_mut().enumerate() {
        *slot = lane;
    }
    let width_px = (last_event + 2 - first_event) * EVENT_PX + 120;
    let height_px = lanes.len() * LANE_PX + 10;

    let verdict = match result.verdict {
        Verdict::Valid => "linearizable",
        Verdict::Invalid => "not linearizable",
        Verdict::Unknown => "unknown",
    };
    let mut html = String::with_capacity(shown.len() * 200 + 4_000);
    html.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>lockstep-jepsen: ");
    html.push_str(verdict);
    html.push_str(
        "</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;margin:16px;color:#222}\n\
         pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:320px}\n\
         .scroll{overflow-x:auto;border:1px solid #ccc}\n\
         .tl{position:relative}\n\
         .lane{position:absolute;left:0;font-size:11px;color:#666;width:110px;text-align:right}\n\
         .rule{position:absolute;left:115px;height:1px;background:#eee}\n\
         .op{position:absolute;height:18px;font-size:10px;line-height:18px;overflow:hidden;white-space:nowrap;\
         border-radius:3px;padding:0 2px;box-sizing:border-box;background:#cfe3ff;border:1px solid #6a9bd8}\n\
         .op.fail{background:#eee;border-color:#bbb;color:#999}\n\
         .op.info{background:linear-gradient(90deg,#ffe9b3,#fff);border-color:#d8b04a;border-right:none}\n\
         .op.bad{background:#ffc9c9;border:2px solid #d22}\n\
         .op.bad.info{background:linear-gradient(90deg,#ffc9c9,#fff)}\n\
         .legend span{display:inline-block;margin-right:12px}\n\
         </style></head><body>\n",
    );
    let _ = writeln!(html, "<h1>History is {verdict}</h1>");
    let _ = writeln!(
        html,
        "<p class=\"legend\"><span class=\"op\" style=\"position:static\">ok</span> \
         <span class=\"op info\" style=\"position:static\">info / never completed</span> \
         <span class=\"op fail\" style=\"position:static\">fail</span> \
         <span class=\"op bad\" style=\"position:static\">in a failing window</span></p>"
    );
    if to - from < calls.len() {
        let _ = writeln!(
            html,
            "<p>Showing operations {} to {} of {} (around the first highlighted one).</p>",
            from + 1,
            to,
            calls.len()
        );
    }
    let _ = writeln!(html, "<pre>{}</pre>", escape(&result.to_string()));
    let _ =
        writeln!(html, "<div class=\"scroll\"><div class=\"tl\" style=\"width:{width_px}px;height:{height_px}px\">");
    for (process, lane) in &lanes {
        let top = lane * LANE_PX + 4;
        let _ = writeln!(html, "<div class=\"lane\" style=\"top:{top}px\">process {process}</div>");
        let _ = writeln!(html, "<div class=\"rule\" style=\"top:{}px;width:{}px\"></div>", top + 9, width_px - 120);
    }
    for call in shown {
        let invoke = &events[call.invoke as usize];
        let completion = call.complete.map(|index| &events[index as usize]);
        let outcome = completion.map_or(OpType::Info, |completion| completion.op_type);
        let end_event = match (outcome, call.complete) {
            (OpType::Ok | OpType::Fail, Some(index)) => index as usize,
            // Open-ended: drawn to the end of what is shown.
            _ => last_event + 1,
        };
        let left = 120 + (call.invoke as usize - first_event) * EVENT_PX;
        let width = ((end_event.max(call.invoke as usize + 1) - call.invoke as usize) * EVENT_PX).max(EVENT_PX);
        let top = lanes[&invoke.process] * LANE_PX + 4;
        let bad = highlighted.contains(&(invoke.key.clone(), u64::from(call.invoke)));
        let class = match (outcome, bad) {
            (OpType::Fail, _) => "op fail",
            (OpType::Ok, true) => "op bad",
            (OpType::Ok, false) => "op",
            (_, true) => "op bad info",
            (_, false) => "op info",
        };
        let label = match (invoke.f, completion.map(|completion| completion.value)) {
            (F::Read, Some(value)) if outcome == OpType::Ok => format!("r {value}"),
            (F::Read, _) => "r ?".to_owned(),
            (F::Write, _) => format!("w {}", invoke.value),
            (F::Cas, _) => match invoke.value {
                Value::Cas { expected, new } => {
                    format!("cas {}→{new}", expected.map_or("nil".to_owned(), |value| value.to_string()))
                }
                other => format!("cas {other}"),
            },
        };
        let key = invoke.key.as_deref().map(|key| format!(" key {key}")).unwrap_or_default();
        let completed = completion.map_or("never completed".to_owned(), |completion| {
            format!("{} at {} ns (event {})", completion.op_type, completion.time_ns, call.complete.unwrap_or(0))
        });
        let title = format!(
            "process {}{key}: {label}; invoked at {} ns (event {}); {completed}",
            invoke.process, invoke.time_ns, call.invoke
        );
        let _ = writeln!(
            html,
            "<div class=\"{class}\" style=\"left:{left}px;top:{top}px;width:{width}px\" title=\"{}\">{}</div>",
            escape(&title),
            escape(&label)
        );
    }
    html.push_str("</div></div>\n</body></html>\n");
    html
}
