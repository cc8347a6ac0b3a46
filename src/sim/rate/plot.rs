//! Rate-over-time plots of a [`RateRun`] as hand-written SVG: the sender's rate, what each
//! receiver got, the competing TCP flow and the bottleneck capacity, against time.

use super::RateRun;
use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 360.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 30.0;
const RIGHT: f64 = 150.0;
const COLOURS: [&str; 6] = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// One SVG document plotting `run` under `title`.
pub fn svg(title: &str, run: &RateRun) -> String {
    let t_max = run.samples.last().map_or(1.0, |s| s.t).max(0.1);
    let y_max = run
        .samples
        .iter()
        .flat_map(|s| {
            let cap = if s.capacity_bps == u64::MAX { 0 } else { s.capacity_bps };
            [s.rate_bps, s.tcp_bps, cap].into_iter().chain(s.recv_bps.iter().copied())
        })
        .max()
        .unwrap_or(1)
        .max(1) as f64
        / 1e6
        * 1.1;
    let x = |t: f64| LEFT + t / t_max * (W - LEFT - RIGHT);
    let y = |mbps: f64| H - BOTTOM - mbps / y_max * (H - BOTTOM - TOP);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n<text x=\"{LEFT}\" y=\"18\" font-size=\"14\">{}</text>\n",
        escape(title)
    );
    // Axes and ticks.
    let _ = writeln!(
        out,
        "<path d=\"M{LEFT},{TOP} V{} H{}\" stroke=\"black\" fill=\"none\"/>",
        H - BOTTOM,
        W - RIGHT
    );
    for i in 0..=5 {
        let v = y_max / 5.0 * f64::from(i);
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            LEFT - 6.0,
            y(v) + 4.0
        );
        let t = t_max / 5.0 * f64::from(i);
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{t:.1}</text>",
            x(t),
            H - BOTTOM + 16.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">time (s)</text>\n<text x=\"14\" \
         y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">Mbit/s</text>",
        x(t_max / 2.0),
        H - 6.0,
        H / 2.0,
        H / 2.0
    );
    let mut series: Vec<(String, &str, Vec<f64>)> = Vec::new();
    let cap: Vec<f64> = run
        .samples
        .iter()
        .map(|s| if s.capacity_bps == u64::MAX { f64::NAN } else { s.capacity_bps as f64 / 1e6 })
        .collect();
    series.push(("bottleneck".into(), "#999999", cap));
    series.push((
        "sender rate".into(),
        "#d62728",
        run.samples.iter().map(|s| s.rate_bps as f64 / 1e6).collect(),
    ));
    let n = run.samples.first().map_or(0, |s| s.recv_bps.len());
    for r in 0..n {
        let v = run.samples.iter().map(|s| s.recv_bps[r] as f64 / 1e6).collect();
        series.push((format!("receiver {r}"), COLOURS[r % COLOURS.len()], v));
    }
    if run.samples.iter().any(|s| s.tcp_bps > 0) {
        series.push((
            "TCP flow".into(),
            "#ff7f0e",
            run.samples.iter().map(|s| s.tcp_bps as f64 / 1e6).collect(),
        ));
    }
    for (k, (name, colour, values)) in series.iter().enumerate() {
        let mut d = String::new();
        for (s, v) in run.samples.iter().zip(values) {
            if v.is_finite() {
                let cmd = if d.is_empty() { 'M' } else { 'L' };
                let _ = write!(d, "{cmd}{:.1},{:.1} ", x(s.t), y(*v));
            }
        }
        let dash = if k == 0 { " stroke-dasharray=\"6 4\"" } else { "" };
        let _ = writeln!(
            out,
            "<path d=\"{d}\" stroke=\"{colour}\" stroke-width=\"1.5\" fill=\"none\"{dash}/>"
        );
        let ly = TOP + 16.0 * k as f64;
        let _ = writeln!(
            out,
            "<path d=\"M{},{ly} h20\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/><text x=\"{}\" \
             y=\"{}\">{}</text>",
            W - RIGHT + 10.0,
            W - RIGHT + 36.0,
            ly + 4.0,
            escape(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
