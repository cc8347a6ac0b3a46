//! Small I/O helpers of the driver: the monotonic clock that feeds the core its `now`, the
//! microsecond-precision wait the pacer needs (tokio's timers tick in milliseconds), the worker
//! pool for CPU-heavy FEC work (results arrive on a tokio channel, so the loop can await them),
//! thread CPU time; and (in `io/progress.rs`, re-exported) what people read: [`Progress`] (a bar on a terminal, a line every few
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

mod progress;

pub use self::progress::*;

#[cfg(test)]
mod tests {
    use super::*;

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
    fn clock_is_monotonic() {
        let c = Clock::new();
        let a = c.now();
        assert!(c.now() >= a);
    }
}
