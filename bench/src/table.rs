//! The comparison table of `bench/compare.sh`: one line per row name, the
//! candidate's and the baseline's throughput and p99, and their throughput ratio.
//!
//! ```text
//! put  lockstep 52000 qps p99 4.1 ms | etcd 21000 qps p99 9.8 ms | 2.48x
//! ```
//!
//! A system that ran a row several times is represented by the mean of its
//! runs' throughputs and the mean of their p99s; every run is listed below the
//! table, so that the spread is visible.

use crate::report::Report;

/// The mean throughput and p99 of one system's runs of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Side {
    runs: usize,
    throughput_per_s: f64,
    p99_ms: f64,
    errors: u64,
}

fn side(runs: &[&Report]) -> Option<Side> {
    if runs.is_empty() {
        return None;
    }
    let n = runs.len() as f64;
    Some(Side {
        runs: runs.len(),
        throughput_per_s: runs.iter().map(|r| r.summary.throughput_per_s).sum::<f64>() / n,
        p99_ms: runs.iter().map(|r| r.summary.latency_ms.p99).sum::<f64>() / n,
        errors: runs.iter().map(|r| r.summary.errors).sum(),
    })
}

/// Milliseconds with one decimal, or two below 1 ms (so that 0.35 ms does not read 0.3).
pub fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.1}")
    }
}

fn format_side(label: &str, side: Option<Side>) -> String {
    match side {
        Some(s) => format!("{label} {:.0} qps p99 {} ms", s.throughput_per_s, format_ms(s.p99_ms)),
        None => format!("{label} no runs"),
    }
}

/// The table of `reports`: rows in order of first appearance of their name.
pub fn render(reports: &[Report], candidate: &str, baseline: &str) -> String {
    let mut names: Vec<&str> = Vec::new();
    for r in reports {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut out = String::new();
    for name in &names {
        let runs_of =
            |label: &str| -> Vec<&Report> { reports.iter().filter(|r| r.name == *name && r.label == label).collect() };
        let (c, b) = (side(&runs_of(candidate)), side(&runs_of(baseline)));
        let ratio = match (c, b) {
            (Some(c), Some(b)) if b.throughput_per_s > 0.0 => {
                format!("{:.2}x", c.throughput_per_s / b.throughput_per_s)
            }
            _ => "n/a".to_string(),
        };
        out.push_str(&format!(
            "{name:<width$}  {} | {} | {ratio}",
            format_side(candidate, c),
            format_side(baseline, b)
        ));
        let errors = (c.map_or(0, |s| s.errors), b.map_or(0, |s| s.errors));
        if errors != (0, 0) {
            out.push_str(&format!(" (errors: {candidate} {}, {baseline} {})", errors.0, errors.1));
        }
        out.push('\n');
    }
    out.push_str("\nruns (each system's line above is the mean of these):\n");
    for name in &names {
        for label in [candidate, baseline] {
            let runs: Vec<String> = reports
                .iter()
                .filter(|r| r.name == *name && r.label == label)
                .map(|r| {
                    format!("{:.0} qps p99 {} ms", r.summary.throughput_per_s, format_ms(r.summary.latency_ms.p99))
                })
                .collect();
            let n = runs_phrase(&runs);
            out.push_str(&format!("  {name:<width$}  {label:<8} {n}: {}\n", runs.join("; ")));
        }
    }
    out
}

fn runs_phrase(runs: &[String]) -> String {
    match runs.len() {
        1 => "1 run".to_string(),
        n => format!("{n} runs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::report;

    /// The line shape compare.sh's smoke test checks (scripts/test-all).
    fn line_matches(line: &str, name: &str) -> bool {
        let rest = match line.strip_prefix(name) {
            Some(r) => r.trim_start(),
            None => return false,
        };
        let parts: Vec<&str> = rest.split(" | ").collect();
        let side_ok = |s: &str, label: &str| {
            let w: Vec<&str> = s.split(' ').collect();
            w.len() == 6
                && w[0] == label
                && w[1].parse::<u64>().is_ok()
                && w[2] == "qps"
                && w[3] == "p99"
                && w[4].parse::<f64>().is_ok()
                && w[5] == "ms"
        };
        parts.len() == 3
            && side_ok(parts[0], "lockstep")
            && side_ok(parts[1], "etcd")
            && parts[2]
                .strip_suffix('x')
                .is_some_and(|r| r.parse::<f64>().is_ok() && r.split('.').nth(1).map(str::len) == Some(2))
    }

    #[test]
    fn the_put_line_has_the_documented_shape() {
        let reports = vec![
            report("put", "lockstep", 100, 52000.0, 4.1),
            report("put", "etcd", 100, 21000.0, 9.8),
            report("put", "lockstep", 100, 52000.0, 4.1),
            report("put", "etcd", 100, 21000.0, 9.8),
        ];
        let table = render(&reports, "lockstep", "etcd");
        let first = table.lines().next().unwrap();
        assert_eq!(first, "put  lockstep 52000 qps p99 4.1 ms | etcd 21000 qps p99 9.8 ms | 2.48x");
        assert!(line_matches(first, "put"));
        assert!(table.contains("  put  lockstep 2 runs: 52000 qps p99 4.1 ms; 52000 qps p99 4.1 ms\n"), "{table}");
    }

    #[test]
    fn runs_are_averaged_and_rows_keep_their_order() {
        let reports = vec![
            report("range-serializable", "lockstep", 100, 30000.0, 2.0),
            report("put", "lockstep", 100, 1000.0, 1.0),
            report("put", "etcd", 100, 1000.0, 0.5),
            report("range-serializable", "etcd", 100, 10000.0, 3.0),
            report("range-serializable", "lockstep", 100, 10000.0, 4.0),
            report("range-serializable", "etcd", 100, 10000.0, 5.0),
        ];
        let table = render(&reports, "lockstep", "etcd");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "range-serializable  lockstep 20000 qps p99 3.0 ms | etcd 10000 qps p99 4.0 ms | 2.00x");
        assert_eq!(lines[1], "put                 lockstep 1000 qps p99 1.0 ms | etcd 1000 qps p99 0.50 ms | 1.00x");
        assert!(line_matches(lines[0], "range-serializable"));
        assert!(line_matches(lines[1], "put"));
    }

    #[test]
    fn errors_and_missing_sides_are_shown_not_hidden() {
        let mut failed = report("txn-put", "lockstep", 100, 900.0, 1.0);
        failed.summary.errors = 7;
        let reports = vec![failed, report("watch", "lockstep", 100, 10.0, 1.0)];
        let table = render(&reports, "lockstep", "etcd");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "txn-put  lockstep 900 qps p99 1.0 ms | etcd no runs | n/a (errors: lockstep 7, etcd 0)");
        assert!(!line_matches(lines[0], "txn-put"));
        assert_eq!(lines[1], "watch    lockstep 10 qps p99 1.0 ms | etcd no runs | n/a");
    }

    #[test]
    fn zero_baseline_throughput_has_no_ratio() {
        let reports = vec![report("put", "lockstep", 1, 10.0, 1.0), report("put", "etcd", 1, 0.0, 0.0)];
        let table = render(&reports, "lockstep", "etcd");
        assert!(table.lines().next().unwrap().ends_with("| n/a"), "{table}");
    }
}
