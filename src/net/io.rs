//! Small I/O helpers of the driver: the monotonic clock that feeds the core its `now`, the
//! microsecond-precision wait the pacer needs (tokio's timers tick in milliseconds), the worker
//! pool for CPU-heavy FEC work (results arrive on a tokio channel, so the loop can await them),
//! thread CPU time, and what people read: [`Progress`] (a bar on a terminal, a line every few
//! seconds elsewhere, always on stderr), the log writer that keeps log lines off the bar, and
//! the units of every human-readable number ([`fmt_bytes`] in KiB/MiB/GiB, [`fmt_rate`] in
//! bit/s as `--rate` takes it).

use crate::proto::time::{Duration, Instant};
use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// The driver's clock: microseconds since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Clock { origin: std::time::Instant::now() }
    }

    /// The core's `now`.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }
}

/// Wait up to `timeout` for `sock` to become readable, to the microsecond (`ppoll`); true if
/// it is. This blocks the calling thread: the driver uses it only for waits shorter than a
/// tokio timer tick.
pub fn precise_wait(sock: &UdpSocket, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: one valid pollfd and a valid timespec, both live for the call; no signal mask.
    let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    match rc {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// CPU time (user + system) the calling thread has used so far, in seconds; 0 where unknown.
pub fn thread_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one rusage into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    #[cfg(target_os = "linux")]
    let who = libc::RUSAGE_THREAD;
    #[cfg(not(target_os = "linux"))]
    let who = libc::RUSAGE_SELF;
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// A fixed pool of threads running one function over submitted jobs. Results come back on a
/// tokio channel: [`Workers::try_recv`] without waiting, [`Workers::recv`] awaiting one.
pub struct Workers<J, R> {
    jobs: Option<Sender<J>>,
    stop: Arc<AtomicBool>,
    results: UnboundedReceiver<R>,
    handles: Vec<JoinHandle<()>>,
    in_flight: usize,
    /// Jobs that panicked (their result never comes; the thread lives on).
    panicked: Arc<AtomicUsize>,
}

impl<J: Send + 'static, R: Send + 'static> Workers<J, R> {
    /// Start `n` (at least 1) threads named `name` running `f`.
    pub fn new(
        n: usize,
        name: &str,
        f: impl Fn(J) -> R + Send + Sync + 'static,
    ) -> io::Result<Self> {
        let (jobs, job_rx) = mpsc::channel::<J>();
        let (res_tx, results) = unbounded_channel::<R>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let f = Arc::new(f);
        let stop = Arc::new(AtomicBool::new(false));
        let panicked = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for i in 0..n.max(1) {
            let job_rx = Arc::clone(&job_rx);
            let res_tx = res_tx.clone();
            let f = Arc::clone(&f);
            let stop = Arc::clone(&stop);
            let panicked = Arc::clone(&panicked);
            let handle =
                std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // A panicking job must not leave its result owed forever (the driver would
                    // wait for it): count it, keep the thread, and let the driver fail the role.
                    match std::panic::catch_unwind(AssertUnwindSafe(|| f(job))) {
                        Ok(r) => {
                            if res_tx.send(r).is_err() {
                                return;
                            }
                        }
                        Err(_) => {
                            panicked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })?;
            handles.push(handle);
        }
        Ok(Workers { jobs: Some(jobs), stop, results, handles, in_flight: 0, panicked })
    }

    /// Queue a job.
    pub fn submit(&mut self, job: J) {
        if let Some(tx) = &self.jobs {
            if tx.send(job).is_ok() {
                self.in_flight += 1;
            }
        }
    }

    /// A finished result, if any.
    pub fn try_recv(&mut self) -> Option<R> {
        let r = self.results.try_recv().ok()?;
        self.in_flight -= 1;
        Some(r)
    }

    /// Wait for the next result; `None` once every worker has exited.
    pub async fn recv(&mut self) -> Option<R> {
        let r = self.results.recv().await?;
        self.in_flight -= 1;
        Some(r)
    }

    /// Jobs submitted and not yet collected.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Jobs that panicked on a worker (a bug: their results will never come).
    pub fn panicked(&self) -> usize {
        self.panicked.load(Ordering::Relaxed)
    }
}

impl<J, R> Drop for Workers<J, R> {
    fn drop(&mut self) {
        // Queued jobs are abandoned: each worker finishes at most the job it is running.
        self.stop.store(true, Ordering::Relaxed);
        self.jobs = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

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

    #[test]
    fn workers_run_every_job() {
        let mut w = Workers::new(2, "t", |x: u32| x * 2).unwrap();
        for i in 0..100 {
            w.submit(i);
        }
        let mut got = Vec::new();
        while got.len() < 100 {
            if let Some(r) = w.try_recv() {
                got.push(r);
            } else {
                std::thread::yield_now();
            }
        }
        got.sort();
        assert_eq!(got, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(w.in_flight(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_job_is_counted_and_the_worker_lives_on() {
        let mut w = Workers::new(1, "t", |x: u32| {
            assert!(x != 1, "job 1 panics on purpose");
            x
        })
        .unwrap();
        w.submit(1);
        w.submit(2);
        // The one worker thread survives job 1 and runs job 2.
        assert_eq!(w.recv().await, Some(2));
        assert_eq!(w.panicked(), 1);
    }

    #[test]
    fn dropping_abandons_queued_jobs() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut w = Workers::new(1, "t", move |x: u32| {
            let _ = tx.send(x);
            std::thread::sleep(Duration::from_millis(20));
            x
        })
        .unwrap();
        for i in 0..100 {
            w.submit(i);
        }
        let started = std::time::Instant::now();
        drop(w);
        assert!(started.elapsed() < Duration::from_secs(1), "did not run the whole queue");
        assert!(rx.try_iter().count() < 10);
    }

    #[test]
    fn results_can_be_awaited() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut w = Workers::new(2, "t", |x: u32| x + 1).unwrap();
        w.submit(41);
        assert_eq!(rt.block_on(w.recv()), Some(42));
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn precise_wait_wakes_on_data_and_times_out_otherwise() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = std::time::Instant::now();
        assert!(!precise_wait(&a, Duration::from_micros(300)).unwrap());
        assert!(t.elapsed() >= Duration::from_micros(300));
        b.send_to(b"x", a.local_addr().unwrap()).unwrap();
        assert!(precise_wait(&a, Duration::from_secs(5)).unwrap());
    }

    #[test]
    fn thread_cpu_time_is_counted() {
        let t = thread_cpu_seconds();
        assert!(t >= 0.0);
        assert!(thread_cpu_seconds() >= t);
    }

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
    fn clock_is_monotonic() {
        let c = Clock::new();
        let a = c.now();
        assert!(c.now() >= a);
    }
}
