//! The one driver loop: runs any sans-IO endpoint over a [`BatchSocket`] on tokio.
//!
//! An [`Endpoint`] is the quinn-proto-shaped core of a role (`handle_datagram`,
//! `handle_timeout`, `poll_transmit`, `poll_timeout`); `proto::sender::Sender` and
//! `proto::receiver::Receiver` implement it here. A [`Role`] wraps an endpoint with what the
//! role does about it: its events (storage, worker jobs, logs), its worker results, its
//! progress bar and whether it is done. [`run`] is the loop every role shares:
//!
//! 1. drain the socket (`recvmmsg`/GRO, bounded per turn) into the role, each datagram opened
//!    by the [`Keyring`] first (keyed mode: authenticated, replays and stale ones dropped;
//!    open mode: keyed ones dropped). Each datagram's `now` is its *arrival*: the kernel's
//!    receive timestamp converted to the loop's clock by an [`ArrivalClock`] (offset sampled
//!    once per turn; see `net::arrival` for how it is placed: arrivals never run backwards and
//!    never pass the loop's clock, but may be a little earlier than the role's last timeout);
//!    the loop's clock where the kernel gave no stamp. So the core (rate control's one-way
//!    delays above all) does not read the loop's own scheduling as a queue on the path;
//! 2. hand finished worker results to the role;
//! 3. fire the endpoint's timers, let the role act on its events, send what the endpoint emits
//!    (GSO batches, to the group and/or the feedback port; each datagram sealed on its own in
//!    keyed mode, so a batch's datagrams stay equal in size), act on events again, and warn
//!    about dropped datagrams (at most every `WARN_EVERY`, once more at the end);
//! 4. stop when the role is done, on the timeout, or when `shutdown` is cancelled;
//! 5. wait for the next deadline (plus the role's pacing slack), a datagram, a worker result or
//!    the shutdown.
//!
//! Waits go through tokio (`AsyncFd` readiness, `tokio::time`, the workers' channel, the
//! shutdown token), except the last [`DriverConfig::precise_wait`] before a deadline: tokio's
//! timers tick in milliseconds, while at 1 Gbit/s one 64 KiB GSO batch lasts 0.5 ms. That
//! remainder is a `ppoll` on the loop's thread (it still wakes on a datagram), followed by a
//! `yield_now` so the runtime's other tasks (signal handlers) keep running.

use crate::net::arrival::ArrivalClock;
use crate::net::batch::{pace_slack, BatchSocket, TxBatch};
use crate::net::io::{precise_wait, Clock, Workers};
use crate::net::DriverError;
use crate::proto::auth::Keyring;
use crate::proto::receiver::Receiver;
use crate::proto::sender::Sender;
use crate::proto::time::{Duration, Instant};
use crate::proto::{Dest, Transmit};
use std::net::SocketAddr;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;

/// The sans-IO core of a role, as the driver sees it.
pub trait Endpoint {
    /// A datagram from the network (bad input is counted and dropped by the core).
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]);
    /// Fire whatever is due.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send, written into `buf`.
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit>;
    /// When `handle_timeout` or `poll_transmit` next has work.
    fn poll_timeout(&self) -> Option<Instant>;
    /// How long after its deadline a paced endpoint may be woken at its *current* rate
    /// ([`pace_slack`]); `None` if it does not pace. The loop wakes after the smaller of this
    /// and the role's [`Role::wake_slack`]: a role sets its slack once, from the rate it
    /// starts at, while an automatic rate moves (a slack of 1 ms, right for 10 Mbit/s, held
    /// the pacer's one-batch bucket to about half of 1 Gbit/s).
    fn pace_slack(&self) -> Option<Duration> {
        None
    }
}

impl Endpoint for Sender {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        Sender::handle_datagram(self, now, from, data)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Sender::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        Sender::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Sender::poll_timeout(self)
    }
    fn pace_slack(&self) -> Option<Duration> {
        Some(pace_slack(self.rate()))
    }
}

impl Endpoint for Receiver {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        Receiver::handle_datagram(self, now, from, data)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Receiver::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        Receiver::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Receiver::poll_timeout(self)
    }
}

/// What a role's event handler may use besides its own state.
pub struct Context<'a, J, R> {
    /// The socket (socket options only, e.g. growing the receive buffer).
    pub socket: &'a BatchSocket,
    /// The worker pool, to submit CPU-heavy jobs.
    pub workers: &'a mut Workers<J, R>,
}

/// A role: an endpoint plus what is done about its events.
pub trait Role {
    /// The core it drives.
    type Endpoint: Endpoint;
    /// A job for the worker pool.
    type Job: Send + 'static;
    /// A worker's result.
    type Done: Send + 'static;

    /// The core.
    fn endpoint(&mut self) -> &mut Self::Endpoint;
    /// The core, read-only (for its deadline).
    fn endpoint_ref(&self) -> &Self::Endpoint;
    /// A datagram from the network; by default straight to the endpoint (a role may filter,
    /// count or drop on purpose first).
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.endpoint().handle_datagram(now, from, data)
    }
    /// The datagram about to be handed over arrived marked ECN Congestion Experienced; by
    /// default ignored (only a receiver's rate control reads marks).
    fn handle_ce_mark(&mut self) {}
    /// A worker finished a job.
    fn handle_done(&mut self, now: Instant, done: Self::Done) -> Result<(), DriverError>;
    /// Act on the endpoint's pending events.
    fn handle_events(
        &mut self,
        now: Instant,
        cx: &mut Context<'_, Self::Job, Self::Done>,
    ) -> Result<(), DriverError>;
    /// Once per turn, after the events (progress bars).
    fn tick(&mut self, _now: Instant) {}
    /// Whether the role has finished.
    fn is_done(&self, now: Instant) -> bool;
    /// How long after the endpoint's deadline to wake (a paced sender wakes a little late so
    /// that each wake-up sends a batch); zero by default.
    fn wake_slack(&self) -> Duration {
        Duration::ZERO
    }
}

/// Settings of the loop itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverConfig {
    /// Waits up to this long are a blocking microsecond `ppoll` on the loop thread; longer
    /// ones go through tokio's millisecond timer (which wakes up to one tick late) and end
    /// with such a precise wait.
    pub precise_wait: Duration,
    /// Longest precise wait while a worker holds a job (its result does not wake a `ppoll`).
    pub worker_poll: Duration,
    /// Datagrams read per turn at most, so timers and transmissions get their turn.
    pub recv_per_turn: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            precise_wait: Duration::from_millis(2),
            worker_poll: Duration::from_micros(200),
            recv_per_turn: 1024,
        }
    }
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The role said it is done.
    Done,
    /// The timeout passed first.
    Timeout,
    /// The shutdown token was cancelled.
    Interrupted,
}

/// The addresses a [`Dest`] stands for: the group's port (receivers) and port + 1 (sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destinations {
    both: [SocketAddr; 2],
}

impl Destinations {
    /// Data port `group`, feedback port `feedback`.
    pub fn new(group: SocketAddr, feedback: SocketAddr) -> Self {
        Destinations { both: [group, feedback] }
    }

    /// Where a datagram for `dest` goes.
    pub fn of(&self, dest: Dest) -> &[SocketAddr] {
        match dest {
            Dest::Receivers => &self.both[..1],
            Dest::Sender => &self.both[1..],
            Dest::All => &self.both[..],
        }
    }
}

/// How the loop waits before its next turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// No wait: the next turn is due.
    None,
    /// A blocking microsecond wait this long (wakes early on a datagram).
    Precise(Duration),
    /// Await tokio events, with a timer this long if `Some`; then loop (a precise wait will
    /// cover the rest of the way to the deadline).
    Tokio(Option<Duration>),
}

/// Choose the wait until `deadline` (already including the slack and the timeout).
fn plan_wait(
    now: Instant,
    deadline: Option<Instant>,
    busy_workers: bool,
    cfg: &DriverConfig,
) -> Wait {
    let Some(deadline) = deadline else { return Wait::Tokio(None) };
    let wait = deadline.saturating_duration_since(now);
    if wait.is_zero() {
        Wait::None
    } else if wait <= cfg.precise_wait {
        Wait::Precise(if busy_workers { wait.min(cfg.worker_poll) } else { wait })
    } else {
        Wait::Tokio(Some(wait - cfg.precise_wait))
    }
}

/// What a role runs over: its socket, where its datagrams go, its worker pool.
pub struct Io<'a, J, R> {
    /// The batch socket (readiness is awaited on a duplicate of its descriptor).
    pub socket: &'a mut BatchSocket,
    /// Where each [`Dest`] goes.
    pub dest: Destinations,
    /// The pool running the role's jobs.
    pub workers: &'a mut Workers<J, R>,
    /// Seals what is sent and opens what is received (open mode: passes plain datagrams).
    pub auth: &'a mut Keyring,
}

/// The wall clock in Unix seconds, for sealing and for the age check (0 before 1970).
pub fn unix_secs() -> u64 {
    unix_now().as_secs()
}

/// The wall clock since the Unix epoch (zero before 1970).
fn unix_now() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// Drive `role` over `io` until it is done, `timeout` (on `clock`) passes, or `shutdown` is
/// cancelled. Datagrams dropped by `io.auth` since its last warning are warned about once more
/// on the way out.
///
/// Must run inside a tokio runtime with I/O and time enabled.
pub async fn run<R: Role>(
    io: Io<'_, R::Job, R::Done>,
    role: &mut R,
    clock: &Clock,
    timeout: Option<Instant>,
    shutdown: &CancellationToken,
    cfg: &DriverConfig,
) -> Result<Exit, DriverError> {
    let Io { socket, dest, workers, auth } = io;
    let exit = run_loop(
        Io { socket: &mut *socket, dest, workers, auth: &mut *auth },
        role,
        clock,
        timeout,
        shutdown,
        cfg,
    )
    .await;
    if let Some(w) = auth.flush_warning() {
        tracing::warn!("{w}");
    }
    let st = socket.stats();
    tracing::debug!(
        "receive stamps: {} of {} datagrams stamped by the kernel; {} earlier than a time \
         already given ({} us in all), {} raised, {} lowered to the loop's clock",
        st.datagrams_stamped,
        st.datagrams_received,
        st.arrivals_early,
        st.arrivals_early_us,
        st.arrivals_raised,
        st.arrivals_lowered
    );
    exit
}

async fn run_loop<R: Role>(
    io: Io<'_, R::Job, R::Done>,
    role: &mut R,
    clock: &Clock,
    timeout: Option<Instant>,
    shutdown: &CancellationToken,
    cfg: &DriverConfig,
) -> Result<Exit, DriverError> {
    let Io { socket: sock, dest, workers, auth } = io;
    // Readiness is watched on a duplicate of the socket's descriptor, owned by `ready`.
    let dup = sock.socket().try_clone().map_err(DriverError::io("duplicate the socket"))?;
    // SAFETY: `ready` owns `dup`, so its descriptor stays open and the same for the whole
    // life of the `AsyncFd`.
    let ready =
        unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) }.map_err(|e| {
            DriverError::Io { op: "register the socket with tokio", source: e.into_parts().1 }
        })?;
    let mut tbuf = Vec::with_capacity(9000);
    // The sealed form of `tbuf`, and the opened form of a received datagram.
    let (mut sbuf, mut obuf) = (Vec::with_capacity(9000), Vec::with_capacity(9000));
    let mut batch = TxBatch::new();
    let mut arrivals = ArrivalClock::new();
    loop {
        if shutdown.is_cancelled() {
            return Ok(Exit::Interrupted);
        }
        if timeout.is_some_and(|t| clock.now() >= t) {
            return Ok(Exit::Timeout);
        }
        let wall = unix_now();
        arrivals.sample(clock.now(), wall);
        let unix = wall.as_secs();
        let got = sock
            .recv(cfg.recv_per_turn, |r| {
                if let Some(d) = auth.open(r.data, unix, &mut obuf) {
                    if r.ce {
                        role.handle_ce_mark();
                    }
                    role.handle_datagram(arrivals.arrival(r.stamp, clock.now()), r.from, d)
                }
            })
            .map_err(DriverError::io("recv"))?;
        sock.count_arrivals(arrivals.take_counts());
        // Stopped at the cap: more may be queued, and the readiness edge that announced them
        // was consumed, so look again at once rather than waiting for the next datagram.
        let more_queued = got >= cfg.recv_per_turn;
        while let Some(done) = workers.try_recv() {
            role.handle_done(arrivals.given(clock.now()), done)?;
        }
        if workers.panicked() > 0 {
            return Err(DriverError::WorkerPanicked);
        }
        let now = arrivals.given(clock.now());
        role.endpoint().handle_timeout(now);
        role.handle_events(now, &mut Context { socket: sock, workers })?;
        let unix = unix_secs();
        while let Some(t) = role.endpoint().poll_transmit(now, &mut tbuf) {
            for to in dest.of(t.dest) {
                // One nonce per datagram on the wire, even for the copies of one transmit.
                let d = auth.seal(&tbuf[..t.size.min(tbuf.len())], unix, &mut sbuf)?;
                batch.push(sock, *to, d).map_err(DriverError::io("send"))?;
            }
        }
        batch.flush(sock).map_err(DriverError::io("send"))?;
        role.handle_events(now, &mut Context { socket: sock, workers })?;
        role.tick(now);
        if let Some(w) = auth.poll_warning(now) {
            tracing::warn!("{w}");
        }
        if role.is_done(arrivals.given(clock.now())) {
            return Ok(Exit::Done);
        }
        let slack = role
            .endpoint_ref()
            .pace_slack()
            .map_or(role.wake_slack(), |s| s.min(role.wake_slack()));
        let deadline = role.endpoint_ref().poll_timeout().map(|t| t + slack);
        let deadline = match (deadline, timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let wait = if more_queued {
            Wait::None
        } else {
            plan_wait(clock.now(), deadline, workers.in_flight() > 0, cfg)
        };
        match wait {
            Wait::None => tokio::task::yield_now().await,
            Wait::Precise(d) => {
                precise_wait(sock.socket(), d).map_err(DriverError::io("poll"))?;
                tokio::task::yield_now().await;
            }
            Wait::Tokio(timer) => {
                let sleep = tokio::time::sleep(timer.unwrap_or(Duration::ZERO));
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {}
                    r = ready.readable() => {
                        // Clear first, then drain at the top of the loop: a datagram that
                        // arrives after the drain sets readiness again.
                        r.map_err(DriverError::io("poll"))?.clear_ready();
                    }
                    Some(done) = workers.recv() => {
                        role.handle_done(arrivals.given(clock.now()), done)?
                    }
                    _ = sleep, if timer.is_some() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    #[test]
    fn waits_are_precise_near_the_deadline_and_tokio_far_from_it() {
        let cfg = DriverConfig::default();
        assert_eq!(plan_wait(at(100), None, false, &cfg), Wait::Tokio(None));
        assert_eq!(plan_wait(at(100), Some(at(100)), false, &cfg), Wait::None);
        assert_eq!(plan_wait(at(100), Some(at(50)), false, &cfg), Wait::None);
        assert_eq!(
            plan_wait(at(100), Some(at(362)), false, &cfg),
            Wait::Precise(Duration::from_micros(262))
        );
        assert_eq!(
            plan_wait(at(0), Some(at(2000)), false, &cfg),
            Wait::Precise(Duration::from_millis(2))
        );
        // A busy worker's result does not wake a ppoll: look again soon.
        assert_eq!(
            plan_wait(at(0), Some(at(1500)), true, &cfg),
            Wait::Precise(Duration::from_micros(200))
        );
        // Far away: tokio's timer brings the loop to within the precise window.
        assert_eq!(
            plan_wait(at(0), Some(at(50_000)), false, &cfg),
            Wait::Tokio(Some(Duration::from_millis(48)))
        );
    }

    /// The loop's pacing with its real wait plan: tokio timer waits wake up to a tick (1 ms)
    /// late, precise waits up to the pacing slack late (a busy host). Every 1 ms window stays within the rate
    /// plus one batch, and no rate is lost, from 5 Mbit/s (one datagram takes 2.3 ms, so waits
    /// go through tokio) to 5 Gbit/s. From about 12 Mbit/s up, the pacer's next deadline
    /// (one datagram plus the slack) is always within the precise window.
    #[test]
    fn planned_waits_keep_pacing_within_a_batch_per_ms() {
        use crate::net::batch::{pace_slack, MAX_GSO_BYTES};
        use crate::proto::sender::Pacer;
        use rand::{Rng, SeedableRng};
        let cfg = DriverConfig::default();
        let dgram = 1432usize;
        for rate in [5_000_000u64, 50_000_000, 200_000_000, 1_000_000_000, 5_000_000_000] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(rate);
            let mut pacer = Pacer::new(rate, MAX_GSO_BYTES, Instant::ZERO);
            let slack = pace_slack(rate);
            let mut now = Instant::ZERO;
            let mut sends: Vec<(u64, usize)> = Vec::new();
            let (mut precise, mut timers) = (0, 0);
            let end = Instant::from_micros(400_000);
            while now < end {
                let mut batch = 0;
                while pacer.ready(now) && batch < MAX_GSO_BYTES / dgram {
                    pacer.charge(now, dgram);
                    batch += 1;
                }
                if batch > 0 {
                    sends.push((now.as_micros(), batch * dgram));
                }
                let deadline = pacer.next_ready().max(now) + slack;
                now = match plan_wait(now, Some(deadline), false, &cfg) {
                    Wait::None => now + Duration::from_micros(1),
                    Wait::Precise(d) => {
                        precise += 1;
                        // A busy host wakes late, up to the slack itself.
                        let late = rng.gen_range(0..=(slack.as_micros() as u64).max(30));
                        now + d + Duration::from_micros(late)
                    }
                    Wait::Tokio(d) => {
                        timers += 1;
                        let tick_late = Duration::from_micros(rng.gen_range(0..=1000));
                        now + d.expect("a deadline") + tick_late
                    }
                };
            }
            assert!(precise > 0, "rate {rate}: the last stretch is always precise");
            assert_eq!(timers > 0, rate < 12_000_000, "rate {rate}: {timers} tokio waits");
            let allowed = (rate / 8 / 1000) as usize + MAX_GSO_BYTES + dgram;
            for (i, (t0, _)) in sends.iter().enumerate() {
                let in_window: usize =
                    sends[i..].iter().take_while(|(t, _)| *t < t0 + 1000).map(|(_, b)| b).sum();
                assert!(in_window <= allowed, "rate {rate}: {in_window} B in 1 ms > {allowed}");
            }
            let total: usize = sends.iter().map(|(_, b)| b).sum();
            let expected = rate as f64 / 8.0 * 0.4;
            assert!(total as f64 >= expected * 0.97, "rate {rate}: {total} B < {expected}");
        }
    }

    #[test]
    fn destinations() {
        let g: SocketAddr = "239.255.0.1:7000".parse().unwrap();
        let f: SocketAddr = "239.255.0.1:7001".parse().unwrap();
        let d = Destinations::new(g, f);
        assert_eq!(d.of(Dest::Receivers), [g]);
        assert_eq!(d.of(Dest::Sender), [f]);
        assert_eq!(d.of(Dest::All), [g, f]);
    }
}
