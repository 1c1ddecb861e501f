//! Scaling charts: throughput and p99 against clients or value size, one line
//! per system, drawn as SVG by plotters (text as SVG `<text>` elements, so no
//! font files are needed).

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::args::PlotAxis;
use crate::report::Report;

/// One line of a chart: a label and its points, sorted by x.
pub type Series = (String, Vec<(f64, f64)>);

/// What a chart shows on its y axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Successful requests (or events) per second.
    Throughput,
    /// The 99th percentile latency in milliseconds.
    P99,
}

impl Metric {
    fn value(self, r: &Report) -> f64 {
        match self {
            Metric::Throughput => r.summary.throughput_per_s,
            Metric::P99 => r.summary.latency_ms.p99,
        }
    }

    fn axis_label(self) -> &'static str {
        match self {
            Metric::Throughput => "throughput (requests/s)",
            Metric::P99 => "p99 latency (ms)",
        }
    }
}

impl PlotAxis {
    fn value(self, r: &Report) -> f64 {
        match self {
            PlotAxis::Clients => r.clients as f64,
            PlotAxis::ValSize => r.val_size as f64,
        }
    }

    fn axis_label(self) -> &'static str {
        match self {
            PlotAxis::Clients => "clients (log scale)",
            PlotAxis::ValSize => "value size, bytes (log scale)",
        }
    }
}

/// The series of `reports`: one per label, each point the mean of the runs at
/// that x.
pub fn series(reports: &[Report], axis: PlotAxis, metric: Metric) -> Vec<Series> {
    let mut by_label: BTreeMap<&str, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for r in reports {
        let x = axis.value(r);
        by_label.entry(&r.label).or_default().entry(x as u64).or_default().push(metric.value(r));
    }
    by_label
        .into_iter()
        .map(|(label, points)| {
            let points =
                points.into_iter().map(|(x, ys)| (x as f64, ys.iter().sum::<f64>() / ys.len() as f64)).collect();
            (label.to_string(), points)
        })
        .collect()
}

/// A line chart as an SVG document. The x axis is logarithmic (the sweeps go
/// 1, 10, 100, 1000 clients and 256 B to 64 KiB).
pub fn line_chart_svg(title: &str, x_label: &str, y_label: &str, lines: &[Series]) -> Result<String, String> {
    let xs = lines.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x));
    let x_min = xs.clone().fold(f64::INFINITY, f64::min);
    let x_max = xs.fold(f64::NEG_INFINITY, f64::max);
    let y_max = lines.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)).fold(0.0, f64::max);
    if !(x_min.is_finite() && x_max.is_finite()) || x_min <= 0.0 {
        return Err("no points to plot (x values must be positive)".into());
    }
    let (x_min, x_max) = if x_min == x_max { (x_min / 2.0, x_max * 2.0) } else { (x_min / 1.2, x_max * 1.2) };
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x| format_number(*x))
            .y_label_formatter(&|y| format_number(*y))
            .draw()
            .map_err(|e| err(&e))?;
        for (index, (label, points)) in lines.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// 1500 -> "1.5k", 65536 -> "66k", 1 -> "1", 0.25 -> "0.25": short axis labels.
pub fn format_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Writes PREFIX-throughput.svg and PREFIX-p99.svg; returns the paths written.
pub fn write_charts(
    reports: &[Report],
    axis: PlotAxis,
    prefix: &std::path::Path,
    title: Option<&str>,
) -> Result<Vec<std::path::PathBuf>, String> {
    let workload = reports.first().map(|r| r.workload.as_str()).unwrap_or("");
    let varying = match axis {
        PlotAxis::Clients => "clients",
        PlotAxis::ValSize => "value size",
    };
    let mut written = Vec::new();
    for (metric, suffix) in [(Metric::Throughput, "throughput"), (Metric::P99, "p99")] {
        let title = match title {
            Some(t) => format!("{t}: {suffix}"),
            None => format!("{workload}: {suffix} vs {varying}"),
        };
        let svg = line_chart_svg(&title, axis.axis_label(), metric.axis_label(), &series(reports, axis, metric))?;
        let mut path = prefix.as_os_str().to_owned();
        path.push(format!("-{suffix}.svg"));
        let path = std::path::PathBuf::from(path);
        std::fs::write(&path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::report;

    #[test]
    fn series_group_by_label_and_average_runs() {
        let reports = vec![
            report("s", "lockstep", 10, 100.0, 1.0),
            report("s", "lockstep", 1, 10.0, 1.0),
            report("s", "lockstep", 10, 300.0, 3.0),
            report("s", "etcd", 1, 5.0, 2.0),
        ];
        let s = series(&reports, PlotAxis::Clients, Metric::Throughput);
        assert_eq!(
            s,
            vec![("etcd".to_string(), vec![(1.0, 5.0)]), ("lockstep".to_string(), vec![(1.0, 10.0), (10.0, 200.0)])]
        );
        let p = series(&reports, PlotAxis::Clients, Metric::P99);
        assert_eq!(p[1].1, vec![(1.0, 1.0), (10.0, 2.0)]);
    }

    #[test]
    fn chart_is_an_svg_with_labels_and_lines() {
        let lines = vec![
            ("lockstep".to_string(), vec![(1.0, 100.0), (10.0, 900.0), (100.0, 5000.0), (1000.0, 6000.0)]),
            ("etcd".to_string(), vec![(1.0, 80.0), (10.0, 700.0), (100.0, 4000.0), (1000.0, 4500.0)]),
        ];
        let svg = line_chart_svg("put: throughput vs clients", "clients", "requests/s", &lines).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in ["put: throughput vs clients", "lockstep", "etcd", "clients", "requests/s"] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.matches("<polyline").count() >= 2, "one polyline per series");
    }

    #[test]
    fn a_single_point_still_draws_and_nothing_is_an_error() {
        let one = vec![("x".to_string(), vec![(256.0, 3.0)])];
        assert!(line_chart_svg("t", "x", "y", &one).is_ok());
        assert!(line_chart_svg("t", "x", "y", &[]).is_err());
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(format_number(1500.0), "1.5k");
        assert_eq!(format_number(65536.0), "66k");
        assert_eq!(format_number(2_500_000.0), "2.5M");
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(256.0), "256");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(1.0), "1");
        assert_eq!(format_number(2.5), "2.50");
    }

    #[test]
    fn charts_are_written_next_to_the_prefix() {
        let dir = std::env::temp_dir().join(format!("lockstep-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let reports = vec![report("s", "lockstep", 256, 10.0, 1.0), report("s", "lockstep", 4096, 8.0, 2.0)];
        let mut reports = reports;
        reports[1].val_size = 4096;
        let written = write_charts(&reports, PlotAxis::ValSize, &dir.join("value"), None).unwrap();
        assert_eq!(written, vec![dir.join("value-throughput.svg"), dir.join("value-p99.svg")]);
        for path in &written {
            assert!(std::fs::read_to_string(path).unwrap().contains("vs value size"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
