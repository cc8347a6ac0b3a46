//! [`RateMeter`]: the receiver's half of automatic rate control. It counts the data datagrams
//! between two sender ticks (bytes, and losses from the sequence-number gaps), measures each
//! tick's one-way delay against the lowest seen (the clocks need not agree: only the growth
//! matters; the minimum creeps up by [`DRIFT_PPM`] of the elapsed time so clock drift does not
//! accumulate), and judges the interval:
//!
//! - **queue building**: the smoothed delay above the minimum exceeds `delay_target`;
//! - **loss event**: the interval's *path* loss exceeds this receiver's random-loss baseline by
//!   `loss_margin` (or by four standard deviations, if more) two windows in a row, while some
//!   queue shows (at least `loss_delay`) or the excess is heavy (`heavy_loss`). The baseline is
//!   the slow average of the loss of intervals without a queue, so loss the FEC absorbs anyway
//!   (random loss at any rate) never counts, while loss that comes with a rate above the
//!   path's does (a drop-tail queue fills before it drops; a policer's loss grows past
//!   `heavy_loss`). Loss with no delay at all is the host's, not the path's.
//!
//! Path loss is the loss from the sequence gaps minus what the receiver's own kernel dropped
//! at the socket (receive buffer full: the host did not keep up), which the driver feeds in
//! with [`RateMeter::on_socket_drops`]. The kernel counts a drop when the datagram arrives,
//! the gap shows only when the next one is read (after the backlog), so drops wait in a pool
//! (at most [`DROP_POOL_AGE`] old) until gaps claim them. That *overflow* loss is reported on
//! its own (the extended report's `overflow_ppm`) and never makes an interval congested: the
//! sender caps its growth on it instead.
//!
//! - **ECN**: data datagrams that arrived marked Congestion Experienced (the sender marks
//!   its data ECN-capable under automatic rate control; an AQM such as fq_codel marks instead
//!   of dropping), which the driver feeds in with [`RateMeter::on_ce_marks`]. Any mark in the
//!   interval makes it congested: the mark is the bottleneck's own word for a standing queue,
//!   given before the queue costs a drop, and random loss never marks. The share of the
//!   interval's data that was marked travels as `ce_ppm`.
//!
//! Any of these makes the interval congested. Whether to answer the tick: always when this receiver
//! is the tick's limiting receiver; otherwise, when congested, when its socket dropped more
//! than [`HOST_SPEAK`] of the interval's data, or when the sender has no
//! limiting receiver yet, with the tick's report share (so about a fixed number of receivers
//! answer per tick whatever the group size). Answers go to the sender only.

use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{RateReport, RateTick, RATE_CONGESTED, RATE_LOSS_EVENT};

/// How fast the delay minimum creeps up (parts per million of the elapsed time).
pub const DRIFT_PPM: f64 = 20.0;
/// The receive rate is measured over at least this long (and at least one tick), so a
/// receiver that reads a backlog at once does not report a burst as its rate.
const RATE_WINDOW: Duration = Duration::from_millis(20);
/// Most delay samples the filter looks at ([`MeterConfig::delay_filter`]).
pub const DELAY_FILTER_MAX: usize = 8;
/// Socket-overflow loss (a share of an interval's data) above which a receiver that is not
/// the limiting one answers a tick (with the tick's report share), as a congested one does.
const HOST_SPEAK: f64 = 0.01;
/// Socket drops not yet matched by sequence gaps are forgotten after this long.
pub const DROP_POOL_AGE: Duration = Duration::from_secs(1);
/// Entries of the drop pool (a newer count joins the last entry when it is full).
const DROP_POOL_KEPT: usize = 64;

/// [`RateMeter`] settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterConfig {
    /// Queueing delay above which the path counts as congested.
    pub delay_target: Duration,
    /// Loss above the baseline that counts as a loss event (a share).
    pub loss_margin: f64,
    /// Loss is judged over windows of at least this many data datagrams (several ticks at a
    /// low rate), so that the binomial noise of random loss stays well inside the margin.
    pub min_datagrams: u64,
    /// The queueing delay sample of a tick is the lowest of this many latest ticks' (at most
    /// [`DELAY_FILTER_MAX`]), so that a receiver's scheduling hiccups do not look like a
    /// queue. 1 (no filter) by default: in the simulator, 2 already lets slow start overshoot
    /// a 20 ms queue ten times as far and answers a halving link in 500 ms instead of 300.
    pub delay_filter: usize,
    /// A loss event needs at least this much smoothed queueing delay...
    pub loss_delay: Duration,
    /// ...unless the path loss above the baseline is at least this share.
    pub heavy_loss: f64,
}

impl Default for MeterConfig {
    fn default() -> Self {
        MeterConfig {
            delay_target: Duration::from_millis(4),
            loss_margin: 0.02,
            min_datagrams: 500,
            delay_filter: 1,
            loss_delay: Duration::from_millis(1),
            heavy_loss: 0.10,
        }
    }
}

/// The receiver's measurements (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    cfg: MeterConfig,
    min_owd: Option<f64>,
    queue_us: f64,
    /// The latest raw delay samples above the minimum, newest first.
    recent_delay: [f64; DELAY_FILTER_MAX],
    delay_samples: usize,
    /// The previous tick's arrival.
    prev: Option<Instant>,
    /// The receive-rate window: bytes since it opened, and when (a tick's arrival).
    bytes: u64,
    rate_since: Option<Instant>,
    recv_bps: f64,
    /// Whether the last judged loss window was above the baseline.
    excess: bool,
    /// The loss window: datagrams expected and missing since it was last judged.
    expected: u64,
    missing: u64,
    /// Socket drops the kernel counted, as last told (`None`: never told).
    drops_total: Option<u64>,
    /// Socket drops not yet matched by gaps: (when counted, how many), oldest first.
    pool: std::collections::VecDeque<(Instant, u64)>,
    /// Datagrams the socket dropped, in all (matched by gaps).
    overflow_total: u64,
    /// The last judged window's socket-overflow share, ppm (reported until the next one).
    last_overflow_ppm: u32,
    /// Data datagrams since the last tick, and how many of them arrived CE-marked.
    tick_datagrams: u64,
    tick_ce: u64,
    /// CE-marked datagrams, in all.
    ce_total: u64,
    baseline: Option<f64>,
    pending: Option<(RateReport, Instant)>,
    ticks: u64,
    reports: u64,
    congested: u64,
}

impl RateMeter {
    /// A meter with `cfg`.
    pub fn new(cfg: MeterConfig) -> Self {
        RateMeter { cfg, ..RateMeter::default() }
    }

    /// A data datagram of `bytes` arrived; it moved the sequence position by `gap` (1: nothing
    /// lost before it).
    pub fn on_data(&mut self, bytes: usize, gap: u32) {
        self.tick_datagrams += 1;
        self.bytes += bytes as u64;
        self.expected += u64::from(gap.max(1));
        self.missing += u64::from(gap.saturating_sub(1));
    }

    /// The kernel's count of datagrams it dropped on this receiver's socket (receive buffer
    /// full), read at `now`; a running total (its first value is the base).
    pub fn on_socket_drops(&mut self, now: Instant, total: u64) {
        let new = match self.drops_total.replace(total) {
            Some(before) => total.saturating_sub(before),
            None => 0,
        };
        if new == 0 {
            return;
        }
        let full = self.pool.len() >= DROP_POOL_KEPT;
        match self.pool.back_mut() {
            Some(last) if full => last.1 += new,
            _ => self.pool.push_back((now, new)),
        }
    }

    /// `n` more datagrams arrived with the IP header's ECN field at Congestion Experienced
    /// (the driver reads it with each datagram where the kernel gives it: `IP_RECVTOS`,
    /// `IPV6_RECVTCLASS`). Counted into the interval that the next tick ends.
    pub fn on_ce_marks(&mut self, n: u64) {
        self.tick_ce = self.tick_ce.saturating_add(n);
        self.ce_total = self.ce_total.saturating_add(n);
    }

    /// Match up to `missing` gaps with pooled socket drops (oldest first, stale ones
    /// forgotten): how many of them the socket dropped.
    fn claim_drops(&mut self, now: Instant, missing: u64) -> u64 {
        while self
            .pool
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > DROP_POOL_AGE)
        {
            self.pool.pop_front();
        }
        let mut claimed = 0;
        while claimed < missing {
            let Some(front) = self.pool.front_mut() else { break };
            let take = front.1.min(missing - claimed);
            front.1 -= take;
            claimed += take;
            if front.1 == 0 {
                self.pool.pop_front();
            }
        }
        self.overflow_total += claimed;
        claimed
    }

    /// A tick from the sender arrived at `now`; this receiver is `me`, `draw` a uniform random
    /// number, `ext` whether the tick's sender reads extended reports
    /// ([`FLAG_RATE_EXT`](crate::proto::wire::FLAG_RATE_EXT)). Returns whether an answer is now
    /// queued.
    pub fn on_tick(
        &mut self,
        now: Instant,
        tick: &RateTick,
        me: u32,
        draw: u16,
        ext: bool,
    ) -> bool {
        self.ticks += 1;
        let owd = now.as_micros() as f64 - tick.send_time_us as f64;
        let creep = self
            .prev
            .map_or(0.0, |p| now.saturating_duration_since(p).as_micros() as f64 * DRIFT_PPM / 1e6);
        let min = self.min_owd.map_or(owd, |m| (m + creep).min(owd));
        self.min_owd = Some(min);
        // The lowest of the last few samples: a queue on the path delays every tick, a
        // receiver that was not scheduled (or read a backlog) delays one or two.
        let k = self.cfg.delay_filter.clamp(1, DELAY_FILTER_MAX);
        self.recent_delay.rotate_right(1);
        self.recent_delay[0] = owd - min;
        self.delay_samples = (self.delay_samples + 1).min(k);
        let sample =
            self.recent_delay[..self.delay_samples].iter().copied().fold(f64::MAX, f64::min);
        self.queue_us = if self.ticks == 1 { sample } else { 0.5 * self.queue_us + 0.5 * sample };
        // The interval's marks: a share of its data datagrams (a mark on a datagram that was
        // not data, or counted before its datagram, never makes the share exceed one).
        let ce = std::mem::take(&mut self.tick_ce);
        let of = std::mem::take(&mut self.tick_datagrams).max(ce).max(1);
        let ce_ppm = (ce as f64 * 1e6 / of as f64).round().min(1e6) as u32;
        if self.prev.replace(now).is_none() {
            self.bytes = 0;
            self.rate_since = Some(now);
            self.expected = 0;
            self.missing = 0;
            return false;
        }
        let since = self.rate_since.unwrap_or(now);
        let span = now.saturating_duration_since(since);
        if span >= RATE_WINDOW || self.recv_bps == 0.0 {
            let dt = span.as_micros().max(1) as f64;
            self.recv_bps = self.bytes as f64 * 8.0 * 1e6 / dt;
            if span >= RATE_WINDOW {
                self.bytes = 0;
                self.rate_since = Some(now);
            }
        }
        let recv_bps = self.recv_bps;
        let judged = self.expected >= self.cfg.min_datagrams;
        let overflow = if judged { self.claim_drops(now, self.missing) } else { 0 };
        let expected = self.expected;
        let share = move |n: u64| if expected > 0 { n as f64 / expected as f64 } else { 0.0 };
        let loss = share(self.missing);
        let path_loss = share(self.missing - overflow);
        let queue = self.queue_us > self.cfg.delay_target.as_micros() as f64;
        let base = self.baseline.unwrap_or(0.0);
        let excess = judged && {
            let sigma = (base.max(0.01) / self.expected as f64).sqrt();
            path_loss > base + self.cfg.loss_margin.max(4.0 * sigma)
        };
        // One window of excess loss may be a burst (a host that stalled, a full device
        // backlog); loss that comes with too high a rate goes on until the rate drops. And a
        // bottleneck's queue fills before it drops: loss with no delay at all is the host's
        // (a softirq backlog), unless it is heavy.
        let some_queue = self.queue_us >= self.cfg.loss_delay.as_micros() as f64;
        let heavy = path_loss > base + self.cfg.heavy_loss;
        let loss_event = excess && self.excess && (some_queue || heavy);
        if judged {
            self.excess = excess;
        }
        if judged && !queue && !excess {
            self.baseline = Some(match self.baseline {
                Some(b) => 0.9 * b + 0.1 * path_loss,
                None => path_loss,
            });
        }
        let congested = queue || loss_event || ce > 0;
        self.congested += u64::from(congested);
        let flags = if congested { RATE_CONGESTED } else { 0 }
            | if loss_event { RATE_LOSS_EVENT } else { 0 };
        if judged {
            self.last_overflow_ppm = (share(overflow) * 1e6).round().min(1e6) as u32;
        }
        let report = RateReport {
            tick_time_us: tick.send_time_us,
            hold_us: 0,
            queue_delay_us: self.queue_us.clamp(0.0, f64::from(u32::MAX)) as u32,
            loss_ppm: if judged { (loss * 1e6).round().min(1e6) as u32 } else { 0 },
            recv_rate_kbps: (recv_bps / 1000.0).round().min(f64::from(u32::MAX)) as u32,
            ce_ppm,
            flags,
            overflow_ppm: ext.then_some(self.last_overflow_ppm),
        };
        if judged {
            self.expected = 0;
            self.missing = 0;
        }
        let drawn = tick.report_share == u16::MAX || draw < tick.report_share;
        // A host dropping at its socket speaks up too (its sender caps the growth on it).
        let host_limited = ext && f64::from(self.last_overflow_ppm) / 1e6 > HOST_SPEAK;
        let speak = congested || host_limited || tick.clr_node == 0;
        let answer = (me != 0 && tick.clr_node == me) || (speak && drawn);
        if answer {
            self.pending = Some((report, now));
        }
        answer
    }

    /// Whether an answer waits for [`take_report`](Self::take_report).
    pub fn has_report(&self) -> bool {
        self.pending.is_some()
    }

    /// The queued answer, its hold time measured up to `now`.
    pub fn take_report(&mut self, now: Instant) -> Option<RateReport> {
        let (mut r, at) = self.pending.take()?;
        r.hold_us = now.saturating_duration_since(at).as_micros().min(u128::from(u32::MAX)) as u32;
        self.reports += 1;
        Some(r)
    }

    /// Smoothed queueing delay, microseconds.
    pub fn queue_delay_us(&self) -> f64 {
        self.queue_us
    }

    /// The random-loss baseline (a share), once measured.
    pub fn baseline_loss(&self) -> Option<f64> {
        self.baseline
    }

    /// Datagrams that arrived CE-marked, in all.
    pub fn ce_marks(&self) -> u64 {
        self.ce_total
    }

    /// Datagrams the socket dropped (receive buffer full) that gaps accounted for, in all.
    pub fn overflow_drops(&self) -> u64 {
        self.overflow_total
    }

    /// Ticks heard, reports sent, intervals judged congested.
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.ticks, self.reports, self.congested)
    }
}
