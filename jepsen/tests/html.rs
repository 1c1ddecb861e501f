//! The HTML timeline: self-contained, one lane per process, the failing
//! window highlighted, `info` operations open-ended.

use lockstep_jepsen::{check, render_html, CheckConfig, HistoryRecorder, OpType, Value, Verdict, F};

#[test]
fn timeline_highlights_the_failing_window() {
    let mut recorder = HistoryRecorder::new();
    let write = recorder.invoke(1, F::Write, None, Value::Int(1), 10).expect("invoke");
    recorder.complete(write, OpType::Ok, Value::Int(1), 20).expect("complete");
    let lost = recorder.invoke(4, F::Write, None, Value::Int(9), 25).expect("invoke");
    recorder.complete(lost, OpType::Info, Value::Int(9), 26).expect("complete");
    let overwrite = recorder.invoke(2, F::Write, None, Value::Int(2), 30).expect("invoke");
    recorder.complete(overwrite, OpType::Ok, Value::Int(2), 40).expect("complete");
    let stale = recorder.invoke(3, F::Read, None, Value::Nil, 50).expect("invoke");
    recorder.complete(stale, OpType::Ok, Value::Int(1), 60).expect("complete");
    let history = recorder.finish();
    let result = check(&history, &CheckConfig::default());
    assert_eq!(result.verdict, Verdict::Invalid);

    let html = render_html(&history, &result);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script") && !html.contains("http"), "self-contained");
    for process in 1..=4 {
        assert!(html.contains(&format!(">process {process}</div>")), "a lane for process {process}");
    }
    // The stale read, and the writes that make it stale, are highlighted;
    // the info write is drawn open-ended and not highlighted.
    // Bars are placed with `left:`; the legend's samples are not.
    assert_eq!(html.matches("class=\"op bad\" style=\"left:").count(), 3, "{html}");
    assert_eq!(html.matches("class=\"op info\" style=\"left:").count(), 1, "{html}");
    assert!(html.contains("r 1") && html.contains("w 2"));
    assert!(html.contains("never completed") || html.contains("info at 26 ns"));
}

#[test]
fn valid_history_renders_without_highlights() {
    let mut recorder = HistoryRecorder::new();
    let write = recorder.invoke(1, F::Write, Some("k"), Value::Int(1), 10).expect("invoke");
    recorder.complete(write, OpType::Ok, Value::Int(1), 20).expect("complete");
    let history = recorder.finish();
    let result = check(&history, &CheckConfig::default());
    let html = render_html(&history, &result);
    assert!(html.contains("History is linearizable"));
    assert!(!html.contains("class=\"op bad\" style=\"left:"));
    assert!(!html.contains("class=\"op bad info\" style=\"left:"));
}
