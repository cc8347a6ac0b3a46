//! The rate simulator's network pieces: a [`Bottleneck`] (a link of some capacity, which may
//! change at set times, behind a drop-tail FIFO of a bounded number of bytes, so that delay
//! builds before anything is dropped; optionally an ECN-marking AQM, which marks what waits
//! longer than a threshold Congestion Experienced) and a [`TcpFlow`] (a TCP-Reno-like AIMD flow: slow
//! start, one window halving per round trip on loss, one packet per round trip of growth).

use crate::proto::time::{Duration, Instant};

/// A drop-tail link.
#[derive(Debug, Clone)]
pub struct Bottleneck {
    /// `(from, bits per second)`, sorted by time; the first entry applies from the start.
    pub capacity: Vec<(Duration, u64)>,
    /// Queue limit in bytes: a packet that finds more than this still to send is dropped.
    pub queue_bytes: usize,
    busy_until: Instant,
    /// Packets dropped at the queue.
    pub drops: u64,
    /// Highest queueing delay seen.
    pub max_delay: Duration,
    /// ECN marking: a packet that waits longer than this is marked Congestion Experienced
    /// (a step-marking AQM, as DCTCP's switches or fq_codel's target do); `None`: drop-tail
    /// only.
    pub mark_above: Option<Duration>,
    /// Packets marked.
    pub marks: u64,
    /// When the first [`MAX_DROP_TIMES`] drops happened.
    pub drop_times: Vec<Instant>,
}

/// Drops whose times a [`Bottleneck`] keeps.
pub const MAX_DROP_TIMES: usize = 4096;

impl Bottleneck {
    /// A link of `bps` with a queue of `queue_bytes`.
    pub fn new(bps: u64, queue_bytes: usize) -> Self {
        Bottleneck::scheduled(vec![(Duration::ZERO, bps)], queue_bytes)
    }

    /// A link whose capacity follows `capacity` (see the field).
    pub fn scheduled(capacity: Vec<(Duration, u64)>, queue_bytes: usize) -> Self {
        Bottleneck {
            capacity,
            queue_bytes,
            busy_until: Instant::ZERO,
            drops: 0,
            max_delay: Duration::ZERO,
            mark_above: None,
            marks: 0,
            drop_times: Vec::new(),
        }
    }

    /// The same link, marking what waits longer than `above` (see [`Bottleneck::mark_above`]).
    pub fn marking(mut self, above: Duration) -> Self {
        self.mark_above = Some(above);
        self
    }

    /// How long a packet arriving at `now` would wait.
    pub fn delay_at(&self, now: Instant) -> Duration {
        self.busy_until.saturating_duration_since(now)
    }

    /// The capacity at `now`, bits per second.
    pub fn capacity_at(&self, now: Instant) -> u64 {
        let t = now.saturating_duration_since(Instant::ZERO);
        self.capacity.iter().take_while(|(from, _)| *from <= t).last().map_or(1, |(_, c)| *c).max(1)
    }

    /// A packet of `bytes` arrives at `now` (calls come in time order): when its last bit
    /// leaves, or `None` if the queue is full and it is dropped.
    pub fn enqueue(&mut self, now: Instant, bytes: usize) -> Option<Instant> {
        self.enqueue_ect(now, bytes, false).map(|(left, _)| left)
    }

    /// [`Bottleneck::enqueue`] for a packet that is ECN-capable when `ect`: also whether it
    /// was marked Congestion Experienced (only an ECN-capable packet is).
    pub fn enqueue_ect(
        &mut self,
        now: Instant,
        bytes: usize,
        ect: bool,
    ) -> Option<(Instant, bool)> {
        let bps = self.capacity_at(now) as f64;
        let wait = self.busy_until.saturating_duration_since(now);
        let backlog = wait.as_secs_f64() * bps / 8.0;
        if backlog > self.queue_bytes as f64 {
            self.drops += 1;
            if self.drop_times.len() < MAX_DROP_TIMES {
                self.drop_times.push(now);
            }
            return None;
        }
        self.max_delay = self.max_delay.max(wait);
        let marked = ect && self.mark_above.is_some_and(|above| wait > above);
        self.marks += u64::from(marked);
        let start = self.busy_until.max(now);
        let service = Duration::from_secs_f64(bytes as f64 * 8.0 / bps);
        self.busy_until = start + service;
        Some((self.busy_until, marked))
    }
}

/// Bytes of one TCP segment on the wire.
pub const TCP_SEGMENT: usize = 1500;

/// A TCP-Reno-like flow across one bottleneck (see the module docs). The simulator sends its
/// segments ([`TcpFlow::may_send`], [`TcpFlow::on_sent`]) and tells it what became of each.
#[derive(Debug, Clone)]
pub struct TcpFlow {
    cwnd: f64,
    ssthresh: f64,
    inflight: u32,
    /// Base round-trip time (without queueing).
    pub base_rtt: Duration,
    last_cut: Option<Instant>,
    /// Bytes delivered to the far end.
    pub delivered: u64,
    /// Window halvings.
    pub cuts: u32,
}

impl TcpFlow {
    /// A flow whose round trip is `base_rtt` without queueing.
    pub fn new(base_rtt: Duration) -> Self {
        TcpFlow {
            cwnd: 10.0,
            ssthresh: f64::INFINITY,
            inflight: 0,
            base_rtt,
            last_cut: None,
            delivered: 0,
            cuts: 0,
        }
    }

    /// Whether the window allows another segment.
    pub fn may_send(&self) -> bool {
        f64::from(self.inflight) < self.cwnd.floor()
    }

    /// A segment went out.
    pub fn on_sent(&mut self) {
        self.inflight += 1;
    }

    /// A segment arrived at the far end; its acknowledgement comes back now.
    pub fn on_ack(&mut self) {
        self.inflight = self.inflight.saturating_sub(1);
        self.delivered += TCP_SEGMENT as u64;
        if self.cwnd < self.ssthresh {
            self.cwnd += 1.0;
        } else {
            self.cwnd += 1.0 / self.cwnd;
        }
    }

    /// A segment's loss is detected at `now`: at most one halving per round trip.
    pub fn on_loss(&mut self, now: Instant, rtt: Duration) {
        self.inflight = self.inflight.saturating_sub(1);
        if self.last_cut.is_some_and(|t| now.saturating_duration_since(t) < rtt) {
            return;
        }
        self.last_cut = Some(now);
        self.cwnd = (self.cwnd / 2.0).max(2.0);
        self.ssthresh = self.cwnd;
        self.cuts += 1;
    }

    /// The congestion window, segments.
    pub fn cwnd(&self) -> f64 {
        self.cwnd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_delays_then_drops_at_its_limit() {
        // 8 Mbit/s = 1 byte/us; 1000-byte packets; room for 2000 bytes waiting.
        let mut b = Bottleneck::new(8_000_000, 2000);
        let t0 = Instant::ZERO;
        assert_eq!(b.enqueue(t0, 1000), Some(Instant::from_micros(1000)));
        assert_eq!(b.enqueue(t0, 1000), Some(Instant::from_micros(2000)));
        assert_eq!(b.enqueue(t0, 1000), Some(Instant::from_micros(3000)));
        // 3000 bytes backlog: one more than the queue holds.
        assert_eq!(b.enqueue(t0, 1000), None);
        assert_eq!(b.drops, 1);
        // Once 1000 bytes have left, it fits again.
        assert_eq!(b.enqueue(Instant::from_micros(1000), 1000), Some(Instant::from_micros(4000)));
        assert_eq!(b.max_delay, Duration::from_micros(2000));
    }

    #[test]
    fn a_marking_queue_marks_only_capable_packets_that_wait_past_its_threshold() {
        // 1 byte/us; mark what waits more than 1000 us.
        let mut b = Bottleneck::new(8_000_000, 10_000).marking(Duration::from_micros(1000));
        let t0 = Instant::ZERO;
        assert_eq!(b.enqueue_ect(t0, 1000, true), Some((Instant::from_micros(1000), false)));
        // Waits exactly 1000 us: at the threshold, not past it.
        assert_eq!(b.enqueue_ect(t0, 1000, true), Some((Instant::from_micros(2000), false)));
        // Waits 2000 us: marked, if it is ECN-capable.
        assert_eq!(b.enqueue_ect(t0, 1000, true), Some((Instant::from_micros(3000), true)));
        assert_eq!(b.enqueue_ect(t0, 1000, false), Some((Instant::from_micros(4000), false)));
        assert_eq!((b.marks, b.drops), (1, 0));
    }

    #[test]
    fn capacity_changes_at_its_time() {
        let b = Bottleneck::scheduled(vec![(Duration::ZERO, 100), (Duration::from_secs(2), 50)], 0);
        assert_eq!(b.capacity_at(Instant::from_micros(1_999_999)), 100);
        assert_eq!(b.capacity_at(Instant::from_micros(2_000_000)), 50);
    }

    #[test]
    fn tcp_halves_once_per_round_trip() {
        let rtt = Duration::from_millis(10);
        let mut t = TcpFlow::new(rtt);
        for _ in 0..10 {
            t.on_sent();
        }
        assert!(!t.may_send());
        t.on_loss(Instant::from_micros(1000), rtt);
        t.on_loss(Instant::from_micros(5000), rtt);
        assert_eq!((t.cwnd(), t.cuts), (5.0, 1));
        t.on_loss(Instant::from_micros(11_000), rtt);
        assert_eq!((t.cwnd(), t.cuts), (2.5, 2));
    }
}
