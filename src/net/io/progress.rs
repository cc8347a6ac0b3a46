//! What people read: [`Progress`] (a bar on a terminal, a line every few seconds elsewhere,
//! always on stderr; the sender's counts its receivers complete against those expected), the
//! log writer that keeps log lines off the bar, and the units of every human-readable number
//! ([`fmt_bytes`] in KiB/MiB/GiB, [`fmt_rate`] in bit/s as `--rate` takes it).

use crate::proto::time::Duration;
use std::io;
use std::sync::Mutex;

/// How often a role refreshes its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// How often progress is logged as a line when stderr is not a terminal.
pub const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);

/// The bar on screen, if any: log lines are written above it (see [`LogWriter`]).
static ACTIVE_BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

fn set_active_bar(bar: Option<indicatif::ProgressBar>) {
    if let Ok(mut slot) = ACTIVE_BAR.lock() {
        *slot = bar;
    }
}

/// A stderr writer for `tracing` that prints each log line above the progress bar (the bar is
/// cleared, the line written, the bar redrawn), so that lines and bar never share a line.
/// Make one per event with [`LogWriter::default`]; the text goes out when it is dropped.
#[derive(Default)]
pub struct LogWriter(Vec<u8>);

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let text = std::mem::take(&mut self.0);
        let write = || {
            let _ = io::Write::write_all(&mut io::stderr().lock(), &text);
        };
        let bar = ACTIVE_BAR.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) if !bar.is_finished() => bar.suspend(write),
            _ => write(),
        }
    }
}

/// Bytes for people: B, KiB, MiB, GiB, TiB (binary, one decimal above B).
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A rate for people, in bit/s as `--rate` takes it: bit/s, kbit/s, Mbit/s, Gbit/s (SI).
pub fn fmt_rate(bits_per_second: f64) -> String {
    let v = if bits_per_second.is_finite() { bits_per_second.max(0.0) } else { 0.0 };
    if v < 1e3 {
        format!("{v:.0} bit/s")
    } else if v < 1e6 {
        format!("{:.1} kbit/s", v / 1e3)
    } else if v < 1e9 {
        format!("{:.1} Mbit/s", v / 1e6)
    } else {
        format!("{:.2} Gbit/s", v / 1e9)
    }
}

/// A duration for people: `42 s`, `3 min 05 s`, `2 h 07 min`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

/// Share done in percent (0..=100) and the estimated time left at the average rate so far.
pub fn percent_and_eta(done: u64, total: u64, elapsed: Duration) -> (u64, Option<Duration>) {
    if total == 0 {
        return (100, Some(Duration::ZERO));
    }
    let done = done.min(total);
    let percent = (u128::from(done) * 100 / u128::from(total)) as u64;
    let eta = (done > 0).then(|| {
        let left = (total - done) as f64 / done as f64 * elapsed.as_secs_f64();
        Duration::from_secs_f64(left.min(1e9))
    });
    (percent, eta)
}

/// The sender's receivers as its progress shows them: the bar's short form (`2/3 complete`,
/// `1 failed` added when one did) and the line's (`2 of 3 receivers complete, 1 failed`);
/// `expected` is `--expect`'s or `--receivers`' count, if any.
pub fn receivers_status(
    complete: usize,
    failed: usize,
    expected: Option<usize>,
) -> (String, String) {
    let failed_text = if failed > 0 { format!(", {failed} failed") } else { String::new() };
    match expected {
        Some(n) => (
            format!("{complete}/{n} complete{failed_text}"),
            format!("{complete} of {n} receivers complete{failed_text}"),
        ),
        None => (
            format!("{complete} complete{failed_text}"),
            format!(
                "{complete} receiver{} complete{failed_text}",
                if complete == 1 { "" } else { "s" }
            ),
        ),
    }
}

/// Progress of one transfer on stderr: a bar with percentage, bytes, rate and ETA on a
/// terminal; elsewhere (a log file, a pipe) one line every [`PROGRESS_LINE_EVERY`]. Never on
/// stdout. [`Progress::finish`] shows 100 % and ends the bar's line.
pub struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    started: std::time::Instant,
    last_line: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
    finished: bool,
    /// Shown on the bar after the rate (e.g. the sender's receivers complete / expected).
    status: String,
    /// Whether the line at 100 % was logged (off a terminal it comes at once).
    full_logged: bool,
}

impl Progress {
    /// Progress of `total` bytes, its clock starting now; a bar if stderr is a terminal.
    pub fn new(label: &'static str, total: u64) -> Self {
        use std::io::IsTerminal;
        let bar = io::stderr().is_terminal().then(|| progress_bar(total));
        set_active_bar(bar.clone());
        let now = std::time::Instant::now();
        Progress {
            label,
            total,
            done: 0,
            started: now,
            last_line: now,
            bar,
            finished: false,
            status: String::new(),
            full_logged: false,
        }
    }

    /// A short status the bar shows after the rate (the line off a terminal has the detail
    /// given to [`update`](Self::update) instead).
    pub fn set_status(&mut self, status: String) {
        self.status = status;
    }

    /// Whether [`update`](Self::update) with `done` would be the first at 100 % (which logs
    /// its line at once).
    pub fn reaches_total(&self, done: u64) -> bool {
        done >= self.total && !self.full_logged
    }

    /// Bytes done so far, with a short detail (NAKs, receivers ...).
    pub fn update(&mut self, done: u64, detail: &str) {
        if self.finished {
            return;
        }
        self.done = done.min(self.total);
        let elapsed = self.started.elapsed();
        let rate = fmt_rate(self.done as f64 * 8.0 / elapsed.as_secs_f64().max(1e-3));
        if let Some(bar) = &self.bar {
            // The rate only: percentage, bar, bytes, rate and ETA fit an 80-column terminal.
            bar.set_position(self.done);
            if self.status.is_empty() {
                bar.set_message(rate);
            } else {
                bar.set_message(format!("{rate}, {}", self.status));
            }
        } else if self.last_line.elapsed() >= PROGRESS_LINE_EVERY || self.reaches_total(self.done) {
            self.full_logged |= self.done >= self.total;
            self.last_line = std::time::Instant::now();
            tracing::info!("{}", self.line(detail));
        }
    }

    /// The progress line logged off a terminal.
    fn line(&self, detail: &str) -> String {
        let elapsed = self.started.elapsed();
        let (percent, eta) = percent_and_eta(self.done, self.total, elapsed);
        format!(
            "{}: {percent} % ({} of {}), {}, ETA {}; {detail}",
            self.label,
            fmt_bytes(self.done),
            fmt_bytes(self.total),
            fmt_rate(self.done as f64 * 8.0 / elapsed.as_secs_f64().max(1e-3)),
            eta.map_or("unknown".to_string(), fmt_duration),
        )
    }

    /// Show 100 % and end the bar's line (log lines after it start on a line of their own).
    pub fn finish(&mut self, detail: &str) {
        if self.finished {
            return;
        }
        if self.bar.is_none() {
            // Off a terminal the last line always comes, whenever the previous one was.
            self.last_line = self.started;
        }
        self.update(self.total, detail);
        self.finished = true;
        if let Some(bar) = self.bar.take() {
            bar.finish();
            set_active_bar(None);
            // indicatif leaves the cursor at the end of the bar: end its line.
            eprintln!();
        }
    }

    /// Take the bar off the screen without claiming completion (stopped, failed): the summary
    /// that follows says how far it got.
    pub fn abandon(&mut self) {
        self.finished = true;
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            set_active_bar(None);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// A byte progress bar on stderr: percentage, bar, bytes, then the message and ETA.
fn progress_bar(len: u64) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{percent:>3}% [{bar:20}] {bytes}/{total_bytes} {msg}, ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    pb.set_style(style.progress_chars("=> "));
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_units() {
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(1023), "1023 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(16 << 20), "16.0 MiB");
        assert_eq!(fmt_bytes(256 << 30), "256.0 GiB");
        assert_eq!(fmt_rate(999.0), "999 bit/s");
        assert_eq!(fmt_rate(20e6), "20.0 Mbit/s");
        assert_eq!(fmt_rate(1.5e9), "1.50 Gbit/s");
        assert_eq!(fmt_rate(f64::NAN), "0 bit/s");
        assert_eq!(fmt_duration(Duration::from_secs(59)), "59 s");
        assert_eq!(fmt_duration(Duration::from_secs(185)), "3 min 05 s");
        assert_eq!(fmt_duration(Duration::from_secs(7620)), "2 h 07 min");
    }

    #[test]
    fn percent_and_eta_follow_the_average_rate() {
        let ten = Duration::from_secs(10);
        assert_eq!(percent_and_eta(0, 100, ten), (0, None));
        assert_eq!(percent_and_eta(25, 100, ten), (25, Some(Duration::from_secs(30))));
        assert_eq!(percent_and_eta(100, 100, ten), (100, Some(Duration::ZERO)));
        assert_eq!(percent_and_eta(200, 100, ten).0, 100);
        assert_eq!(percent_and_eta(0, 0, ten), (100, Some(Duration::ZERO)));
        assert_eq!(percent_and_eta(1, 3, ten).0, 33);
    }

    #[test]
    fn progress_line_says_percent_amounts_and_eta() {
        let mut p = Progress::new("sending", 4 << 20);
        p.done = 1 << 20;
        p.started = std::time::Instant::now() - Duration::from_secs(2);
        let line = p.line("3 NAKs");
        assert!(line.starts_with("sending: 25 % (1.0 MiB of 4.0 MiB), "), "{line}");
        assert!(line.contains("Mbit/s, ETA 6 s; 3 NAKs"), "{line}");
        p.finish("done");
        assert_eq!(p.done, 4 << 20);
        p.update(1, "after the end");
        assert_eq!(p.done, 4 << 20, "a finished progress stays at 100 %");
    }

    #[test]
    fn receivers_status_counts_against_what_is_expected() {
        let (bar, line) = receivers_status(2, 0, Some(3));
        assert_eq!((bar.as_str(), line.as_str()), ("2/3 complete", "2 of 3 receivers complete"));
        let (bar, line) = receivers_status(1, 1, Some(3));
        assert_eq!(bar, "1/3 complete, 1 failed");
        assert_eq!(line, "1 of 3 receivers complete, 1 failed");
        assert_eq!(receivers_status(1, 0, None).1, "1 receiver complete");
        assert_eq!(
            receivers_status(0, 0, None),
            ("0 complete".into(), "0 receivers complete".into())
        );
    }

    #[test]
    fn the_line_at_100_percent_comes_at_once_and_once() {
        let mut p = Progress::new("sending", 100);
        p.bar = None; // as off a terminal
        p.update(50, "");
        assert!(!p.full_logged && p.reaches_total(100) && !p.reaches_total(99));
        p.update(100, "");
        assert!(p.full_logged, "logged at once, not after the interval");
        assert!(!p.reaches_total(100));
    }
}
