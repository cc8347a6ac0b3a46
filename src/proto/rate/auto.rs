//! [`AutoRate`]: the automatic rate. Every control interval (twice the GRTT, within
//! `[interval_min, interval_max]`) the sender sends a tick and decides:
//!
//! - **Congestion** (some believed report since the last decision says congested): the worst
//!   such receiver (lowest receive rate) becomes the limiting receiver (CLR) unless the current
//!   one is still congested and not much better; unless a decrease is still being held, the
//!   rate drops to `min(rate × decrease, receive rate × drain)` (the higher of its last two reported receive rates; never below half the rate or
//!   the floor), slow start ends, and the next change waits two intervals and an RTT, so that
//!   the receivers measure the new rate before the next judgement.
//! - **No congestion**: grow, by `slow_start_gain` per interval until the first congestion, then
//!   additively (`additive_share` of the rate, at least `additive_min_bps`), never above
//!   `max_bps`, only while some receiver was heard recently (a silent group holds the rate),
//!   and only while the rate is within a headroom of the highest receive rate reported lately
//!   (a sender that cannot send as fast as it paces stops growing).
//!
//! - **Host-limited** (no congestion, but some receiver's extended report says its own socket
//!   dropped more than `host_hold` of the data: the host, not the path, cannot keep up): no
//!   growth (slow start ends; that receiver becomes the CLR, so it answers every tick and the
//!   report names it), and above `host_back` the rate goes down to that receiver's receive rate
//!   × (1 + `host_hold`), which is not a multiplicative decrease and not counted as one. Loss up
//!   to `host_hold` is what proactive FEC and repairs absorb anyway.
//!
//! - **Sender-limited** ([`RateController::on_sent`]): a sender that stayed backlogged over a
//!   window (at least 50 ms and 1.5 MB) yet sent less than the rate allowed by more than 15 %
//!   is its own limit (CPU, socket buffer): the rate comes down to 1.1 × the most it sent over
//!   any such window of the last second, by at most 10 % per window (half in slow start, which
//!   this ends). Not counted as a decrease.
//!
//! Straggler rule: a receiver that reports congestion while the rate is at the floor
//! (`min_bps`, or within [`FLOOR_BAND`] of it: the additive probes between two of its reports
//! are no break) for `exclude_after` without a break is excluded from rate decisions (its
//! reports are ignored and counted); the straggler policy then handles it like any lossy
//! receiver. A receiver the sender no longer serves (dropped as a straggler,
//! [`RateController::on_receiver_gone`]) is forgotten at once: if it was the limiting receiver,
//! the others speak again from the next tick on. A limiting receiver that falls silent for
//! [`CLR_GONE`] is let go even while nobody else speaks (they answer only an open tick).
//! With [`AutoConfig::straggler_fraction`], a receiver that limits the group without a floor is
//! also tried out (module `trial`): excluded if the others then take more than its rate by that
//! fraction's inverse.
//! Reports are believed only if they answer a tick actually sent (one of the last
//! [`TICKS_KEPT`]); one forged report can cost at most one decrease.

mod trial;

use super::{RateController, RateSummary};
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{RateReport, RateTick, RATE_LOSS_EVENT};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Receivers tracked at most (limiting-receiver times, floor timers, exclusions).
pub const MAX_RATE_NODES: usize = 256;
/// Tick send times kept to check reports against.
const TICKS_KEPT: usize = 64;
/// A limiting receiver is replaced by a congested one only if that one receives less than this
/// share of what the current one does.
const CLR_SWITCH: f64 = 0.9;
/// Reports wanted per tick from receivers other than the limiting one (when congested, or
/// while there is no limiting receiver), whatever the group size.
const REPORTS_PER_TICK: f64 = 8.0;
/// Longest silence (in intervals, and at least one second) after which the rate stops growing.
const SILENT_INTERVALS: u32 = 10;
/// Receive rates remembered for the growth cap (the most recent believed reports).
const RECV_KEPT: usize = 64;
/// Receive rates remembered per receiver for the drain target.
const RECV_PER_NODE: usize = 2;
/// How far back the growth cap looks at the receive rates reported.
const RECV_HORIZON: Duration = Duration::from_millis(500);
/// The rate grows only while it is below this many times the highest receive rate reported
/// lately: in slow start (whose reports lag the rate by a window)...
const SLOW_START_HEADROOM: f64 = 2.0;
/// ...and after it. A sender that cannot send as fast as it paces (CPU, a full socket
/// buffer) then stops growing instead of climbing to `max_bps` on reports of no congestion.
const GROWTH_HEADROOM: f64 = 1.25;
/// How long (in control intervals, and at least [`HOST_FRESH`]) the latest socket-overflow
/// report holds the rate: a host that drops at its socket also drops ticks, so it may not
/// answer for a while; its own next report replaces the figure.
const HOST_FRESH_INTERVALS: u32 = 10;
/// See [`HOST_FRESH_INTERVALS`].
const HOST_FRESH: Duration = Duration::from_millis(500);
/// The rate does not grow while the limiting receiver has been silent this long (and four
/// intervals)...
const CLR_QUIET: Duration = Duration::from_millis(100);
/// ...and after this long it is no longer the limiting receiver.
const CLR_GONE: Duration = Duration::from_secs(2);
/// The straggler rule's "at the floor": a rate up to this share above `min_bps` (one additive
/// step is 1 %; a congested straggler brings the rate back down at its next report).
const FLOOR_BAND: f64 = 0.1;
/// Points of the rate history kept for the settled mean (halved in resolution when full).
const HISTORY_KEPT: usize = 4096;
/// A sender that stays backlogged is judged by what it sent over at least this long...
const SENT_WINDOW: Duration = Duration::from_millis(50);
/// ...and at least this many bytes (about a thousand datagrams, so that the pacer's one-batch
/// bursts weigh under 5 %).
const SENT_WINDOW_BYTES: u64 = 1_500_000;
/// A backlogged sender that sent less than the rate allowed over the window by more than this
/// factor is limited by itself (CPU, socket buffer), not by the path...
const SENT_LIMITED: f64 = 1.15;
/// ...and the rate comes down to this factor of the most it sent over any window of the last
/// [`SENT_BEST_HORIZON`] (never below what it has shown it can send: a sender that sends a
/// share of whatever it is allowed, because the receivers' work takes its CPU, would otherwise
/// be walked down step by step)...
const SENT_HEADROOM: f64 = 1.1;
/// See [`SENT_HEADROOM`].
const SENT_BEST_HORIZON: Duration = Duration::from_secs(1);
/// ...by at most this share per window after slow start (a passing stall costs little), and
/// by at most half in slow start (which it ends).
const SENT_STEP: f64 = 0.9;

/// [`AutoRate`] settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoConfig {
    /// The floor, bits per second (`--min-rate`).
    pub min_bps: u64,
    /// The ceiling, bits per second (`--max-rate`).
    pub max_bps: u64,
    /// Where to start (clamped into `[min_bps, max_bps]`).
    pub start_bps: u64,
    /// Shortest control interval.
    pub interval_min: Duration,
    /// Longest control interval.
    pub interval_max: Duration,
    /// Slow start: growth factor per interval.
    pub slow_start_gain: f64,
    /// After slow start: growth per interval as a share of the rate...
    pub additive_share: f64,
    /// ...and at least this, bits per second.
    pub additive_min_bps: u64,
    /// Multiplicative decrease on congestion.
    pub decrease: f64,
    /// On congestion, at most this share of the limiting receiver's receive rate (drains the
    /// queue that built while the rate was above the bottleneck).
    pub drain: f64,
    /// Congested at the floor this long: excluded from rate decisions. Also the length of a
    /// trial under `straggler_fraction`, and how long a receiver must have limited the rate
    /// before one.
    pub exclude_after: Duration,
    /// The "fraction of the others" straggler rule (`--straggler-fraction`, module `trial`): a
    /// receiver that has limited the group for `exclude_after` is excluded if, its reports set
    /// aside for as long, the others take at least its rate divided by this (0.5: twice its
    /// rate). `None` (the default): only the floor rule.
    pub straggler_fraction: Option<f64>,
    /// A report congested by its queueing delay alone (no loss event, no CE) whose receive
    /// rate fell below this share of the same receiver's previous report is taken for a
    /// receiver that was not scheduled (it read its ticks late and its data in a burst), not
    /// for a queue: a bottleneck's queue delays every tick while the receiver goes on receiving
    /// at the bottleneck's rate. Its next report, if still congested, counts.
    pub hiccup_share: f64,
    /// Socket-overflow loss at a receiver (a share) above which the rate stops growing.
    pub host_hold: f64,
    /// Socket-overflow loss above which the rate goes down to what that receiver takes.
    pub host_back: f64,
}

impl Default for AutoConfig {
    fn default() -> Self {
        AutoConfig {
            min_bps: 10_000_000,
            max_bps: 10_000_000_000,
            start_bps: 10_000_000,
            interval_min: Duration::from_millis(10),
            interval_max: Duration::from_millis(100),
            slow_start_gain: 1.25,
            additive_share: 0.01,
            additive_min_bps: 200_000,
            decrease: 0.85,
            drain: 0.9,
            exclude_after: Duration::from_secs(3),
            straggler_fraction: None,
            hiccup_share: 0.4,
            host_hold: 0.05,
            host_back: 0.07,
        }
    }
}

/// The worst congested report since the last decision.
#[derive(Debug, Clone, Copy)]
struct Worst {
    node: u32,
    recv_bps: u64,
    report: RateReport,
}

/// The receiver whose socket dropped the most since the last decision.
#[derive(Debug, Clone, Copy)]
struct HostLimited {
    node: u32,
    overflow: f64,
    recv_bps: u64,
    at: Instant,
}

/// The automatic rate controller (see the module docs).
#[derive(Debug)]
pub struct AutoRate {
    cfg: AutoConfig,
    rate: f64,
    slow_start: bool,
    next_tick: Instant,
    interval: Duration,
    hold_until: Instant,
    ticks: VecDeque<u64>,
    worst: Option<Worst>,
    host: Option<HostLimited>,
    /// Intervals the rate was held (or brought down) for a host's socket overflow.
    host_holds: u32,
    /// Congested reports taken for a receiver's scheduling hiccup (see `hiccup_share`).
    hiccups: u64,
    /// The current window of a backlogged sender: when it opened and the bytes sent by then.
    sent_window: Option<(Instant, u64)>,
    /// Windows in which the rate came down towards what the sender sent.
    sender_limited: u32,
    /// The send rates of the latest backlogged windows (at most [`RECV_KEPT`]).
    sent_rates: VecDeque<(Instant, f64)>,
    clr: Option<u32>,
    clr_since: Instant,
    /// When the limiting receiver was last heard (or became the limiting receiver).
    clr_heard: Instant,
    /// When the limiting receiver last reported congestion, and what it received then.
    clr_congested: Option<(Instant, u64)>,
    rtt: Option<Duration>,
    /// Share of the other receivers that should answer a tick (see [`RateTick`]).
    share: u16,
    /// The sender's group size estimate.
    group_size: u32,
    last_heard: Option<Instant>,
    /// Receive rates of the latest believed reports (for the growth cap).
    recent_recv: VecDeque<(Instant, u64)>,
    /// Each receiver's last [`RECV_PER_NODE`] reported receive rates, newest first (the drain
    /// target takes their highest: one window of a receiver that was not scheduled reads as
    /// a collapse of its receive rate).
    node_recv: BTreeMap<u32, [u64; RECV_PER_NODE]>,
    floor_since: BTreeMap<u32, Instant>,
    excluded: BTreeSet<u32>,
    /// The receiver on trial under `straggler_fraction`, if any.
    trial: Option<trial::Trial>,
    /// Trials begun.
    trials: u32,
    /// Receivers whose trial failed: not tried again before this.
    retry_at: BTreeMap<u32, Instant>,
    /// Receivers the sender no longer serves (at most [`MAX_RATE_NODES`]; see
    /// [`RateController::on_receiver_gone`]).
    gone: BTreeSet<u32>,
    limiting: BTreeMap<u32, u64>,
    start: Instant,
    last_change: Instant,
    area: f64,
    /// (time, area under the rate so far): the rate history, for the settled mean.
    history: Vec<(Instant, f64)>,
    min_seen: u64,
    max_seen: u64,
    decreases: u32,
    reports: u64,
    ignored: u64,
}

impl AutoRate {
    /// A controller starting at `now`.
    pub fn new(cfg: AutoConfig, now: Instant) -> Self {
        let min = cfg.min_bps.max(1);
        let max = cfg.max_bps.max(min);
        let cfg = AutoConfig { min_bps: min, max_bps: max, ..cfg };
        let rate = cfg.start_bps.clamp(min, max) as f64;
        AutoRate {
            interval: cfg.interval_min,
            cfg,
            rate,
            slow_start: true,
            next_tick: now,
            hold_until: now,
            ticks: VecDeque::with_capacity(TICKS_KEPT),
            worst: None,
            host: None,
            host_holds: 0,
            hiccups: 0,
            sent_window: None,
            sender_limited: 0,
            sent_rates: VecDeque::new(),
            clr: None,
            clr_since: now,
            clr_heard: now,
            clr_congested: None,
            rtt: None,
            share: u16::MAX,
            group_size: 1,
            last_heard: None,
            recent_recv: VecDeque::with_capacity(RECV_KEPT),
            node_recv: BTreeMap::new(),
            floor_since: BTreeMap::new(),
            excluded: BTreeSet::new(),
            trial: None,
            trials: 0,
            retry_at: BTreeMap::new(),
            gone: BTreeSet::new(),
            limiting: BTreeMap::new(),
            start: now,
            last_change: now,
            area: 0.0,
            history: vec![(now, 0.0)],
            min_seen: rate as u64,
            max_seen: rate as u64,
            decreases: 0,
            reports: 0,
            ignored: 0,
        }
    }

    /// The current limiting receiver.
    pub fn clr(&self) -> Option<u32> {
        self.clr
    }

    /// Whether slow start is over.
    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    fn set_rate(&mut self, now: Instant, rate: f64) {
        let rate = rate.clamp(self.cfg.min_bps as f64, self.cfg.max_bps as f64);
        self.area += self.rate * now.saturating_duration_since(self.last_change).as_secs_f64();
        self.last_change = now;
        self.rate = rate;
        self.min_seen = self.min_seen.min(rate as u64);
        self.max_seen = self.max_seen.max(rate as u64);
    }

    fn set_clr(&mut self, now: Instant, node: Option<u32>) {
        if self.clr == node {
            return;
        }
        self.close_clr(now);
        self.clr = node;
        self.clr_since = now;
        self.clr_heard = now;
        self.clr_congested = None;
    }

    /// Credit the current limiting receiver with its time up to `now`.
    fn close_clr(&mut self, now: Instant) {
        let Some(node) = self.clr else { return };
        let us = now.saturating_duration_since(self.clr_since).as_micros() as u64;
        if self.limiting.len() < MAX_RATE_NODES || self.limiting.contains_key(&node) {
            *self.limiting.entry(node).or_default() += us;
        }
        self.clr_since = now;
    }

    /// Area under the rate (bits) from the start to `now`.
    fn area_now(&self, now: Instant) -> f64 {
        self.area + self.rate * now.saturating_duration_since(self.last_change).as_secs_f64()
    }

    /// Record a point of the rate history (bounded: every other point goes when it is full).
    fn record(&mut self, now: Instant) {
        if self.history.len() >= HISTORY_KEPT {
            let kept: Vec<_> = self.history.iter().copied().step_by(2).collect();
            self.history = kept;
        }
        let area = self.area_now(now);
        self.history.push((now, area));
    }

    /// Area under the rate from the start to `t`, interpolated in the history (`t` ≤ now).
    fn area_at(&self, t: Instant, now: Instant) -> f64 {
        let mut prev = (self.start, 0.0);
        for &(ti, ai) in self.history.iter().chain(std::iter::once(&(now, self.area_now(now)))) {
            if ti >= t {
                let span = ti.saturating_duration_since(prev.0).as_secs_f64();
                if span <= 0.0 {
                    return ai;
                }
                let part = t.saturating_duration_since(prev.0).as_secs_f64() / span;
                return prev.1 + (ai - prev.1) * part;
            }
            prev = (ti, ai);
        }
        prev.1
    }

    fn at_floor(&self) -> bool {
        self.rate <= self.cfg.min_bps as f64 * (1.0 + FLOOR_BAND)
    }

    /// `node` no longer steers the rate: not the limiting receiver, not the worst one heard.
    fn let_go(&mut self, now: Instant, node: u32) {
        self.floor_since.remove(&node);
        if self.clr == Some(node) {
            self.set_clr(now, None);
        }
        if self.worst.is_some_and(|w| w.node == node) {
            self.worst = None;
        }
        if self.host.is_some_and(|h| h.node == node) {
            self.host = None;
        }
    }

    /// Whether excluding one more receiver still leaves it among a minority excluded: when
    /// most of the group is congested, the bottleneck is theirs too (a shared link), not one
    /// straggler's. Both straggler rules ask.
    fn one_more_is_a_minority(&self) -> bool {
        (self.excluded.len() + 1) * 2 < self.group_size as usize
    }

    /// The straggler rule's bookkeeping for a believed report.
    fn floor_rule(&mut self, now: Instant, node: u32, congested: bool) {
        if !(congested && self.at_floor()) {
            self.floor_since.remove(&node);
            return;
        }
        if self.floor_since.len() >= MAX_RATE_NODES && !self.floor_since.contains_key(&node) {
            return;
        }
        let since = *self.floor_since.entry(node).or_insert(now);
        let minority = self.one_more_is_a_minority();
        if now.saturating_duration_since(since) >= self.cfg.exclude_after
            && minority
            && self.excluded.len() < MAX_RATE_NODES
        {
            tracing::info!(
                "receiver {node:08x} congested at the floor for {:?}: excluded from rate decisions",
                self.cfg.exclude_after
            );
            self.excluded.insert(node);
            self.let_go(now, node);
        }
    }

    fn decide(&mut self, now: Instant) {
        self.trial_rule(now);
        let rtt = self.rtt.unwrap_or(Duration::ZERO);
        // The latest overflow heard holds for a few intervals (the receiver measures it over
        // loss windows that span several ticks, and a tick it dropped gets no answer).
        let fresh = (self.interval * HOST_FRESH_INTERVALS).max(HOST_FRESH);
        let host = self.host.filter(|h| now.saturating_duration_since(h.at) <= fresh);
        self.host = host;
        if let Some(w) = self.worst.take() {
            let keep = match (self.clr, self.clr_congested) {
                (Some(c), Some((at, recv))) if c != w.node => {
                    now.saturating_duration_since(at) <= self.interval * 4
                        && w.recv_bps as f64 >= recv as f64 * CLR_SWITCH
                }
                _ => false,
            };
            if !keep {
                self.set_clr(now, Some(w.node));
            }
            if self.clr == Some(w.node) {
                self.clr_congested = Some((now, w.recv_bps));
            }
            if now >= self.hold_until {
                let mut target = self.rate * self.cfg.decrease;
                let recv = self
                    .node_recv
                    .get(&w.node)
                    .map_or(w.recv_bps, |r| r.iter().copied().max().unwrap_or(0).max(w.recv_bps));
                if recv > 0 {
                    target = target.min(recv as f64 * self.cfg.drain);
                }
                let target = target.max(self.rate * 0.5);
                tracing::debug!(
                    "rate: congestion at {:08x} (queue {} us, loss {} ppm, CE {} ppm, flags {:#x}, \
                     receiving {} kbit/s): {} -> {} kbit/s",
                    w.node,
                    w.report.queue_delay_us,
                    w.report.loss_ppm,
                    w.report.ce_ppm,
                    w.report.flags,
                    w.report.recv_rate_kbps,
                    self.rate as u64 / 1000,
                    target as u64 / 1000
                );
                self.set_rate(now, target);
                self.slow_start = false;
                self.decreases += 1;
                self.hold_until = now + self.interval * 2 + rtt;
            }
            return;
        }
        if let Some(h) = host.filter(|h| h.overflow > self.cfg.host_hold) {
            // The host, not the path: hold (and name it), come down only to what it takes.
            self.set_clr(now, Some(h.node));
            self.slow_start = false;
            self.host_holds += 1;
            let target = h.recv_bps as f64 * (1.0 + self.cfg.host_hold);
            if h.overflow > self.cfg.host_back && now >= self.hold_until && target < self.rate {
                tracing::debug!(
                    "rate: {:08x} drops {:.1} % at its socket, receiving {} kbit/s: {} -> {} kbit/s",
                    h.node,
                    h.overflow * 100.0,
                    h.recv_bps / 1000,
                    self.rate as u64 / 1000,
                    target as u64 / 1000
                );
                self.set_rate(now, target.max(self.rate * 0.5));
                self.hold_until = now + self.interval * 2 + rtt;
            }
            return;
        }
        // The limiting receiver answers every tick: while it is silent its state is unknown
        // (a host dropping at its socket drops ticks too), so hold; long silent, it is no
        // longer the limit (every receiver may then answer again). Checked before the
        // silence below: while a limiting receiver is named, nobody else answers.
        let clr_silent = now.saturating_duration_since(self.clr_heard);
        if self.clr.is_some() && clr_silent > CLR_GONE {
            self.set_clr(now, None);
        }
        let silent = Duration::from_secs(1).max(self.interval * SILENT_INTERVALS);
        let heard = self.last_heard.is_some_and(|t| now.saturating_duration_since(t) <= silent);
        if now < self.hold_until || !heard {
            return;
        }
        if self.clr.is_some() && clr_silent > (self.interval * 4).max(CLR_QUIET) {
            return;
        }
        let headroom = if self.slow_start { SLOW_START_HEADROOM } else { GROWTH_HEADROOM };
        let received = self
            .recent_recv
            .iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) <= RECV_HORIZON)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0);
        if self.rate > received as f64 * headroom {
            return; // the receivers do not see the rate we pace at: do not pace faster
        }
        let next = if self.slow_start {
            self.rate * self.cfg.slow_start_gain
        } else {
            self.rate + (self.rate * self.cfg.additive_share).max(self.cfg.additive_min_bps as f64)
        };
        self.set_rate(now, next);
    }
}

impl RateController for AutoRate {
    fn rate_bps(&self) -> u64 {
        self.rate as u64
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    fn on_timeout(&mut self, now: Instant, grtt: Duration, group_size: u32) -> bool {
        if now < self.next_tick {
            return false;
        }
        self.group_size = group_size.max(1);
        let share = (REPORTS_PER_TICK / f64::from(group_size.max(1))).min(1.0);
        self.share = (share * f64::from(u16::MAX)).round() as u16;
        self.interval = (grtt * 2).clamp(self.cfg.interval_min, self.cfg.interval_max);
        self.decide(now);
        self.record(now);
        self.next_tick = now + self.interval;
        true
    }

    fn tick(&mut self, now: Instant) -> RateTick {
        if self.ticks.len() == TICKS_KEPT {
            self.ticks.pop_front();
        }
        self.ticks.push_back(now.as_micros());
        RateTick {
            send_time_us: now.as_micros(),
            rate_bps: self.rate as u64,
            clr_node: self.clr.unwrap_or(0),
            report_share: self.share,
        }
    }

    fn on_report(&mut self, now: Instant, node: u32, r: &RateReport) -> bool {
        if self.excluded.contains(&node)
            || self.on_trial(node)
            || self.gone.contains(&node)
            || !self.ticks.contains(&r.tick_time_us)
        {
            self.ignored += 1;
            return false;
        }
        self.reports += 1;
        self.last_heard = Some(now);
        if self.clr == Some(node) {
            self.clr_heard = now;
        }
        let sent = Instant::from_micros(r.tick_time_us);
        let rtt = now
            .saturating_duration_since(sent)
            .saturating_sub(Duration::from_micros(u64::from(r.hold_us)));
        self.rtt = Some(match self.rtt {
            Some(old) => (old * 7 + rtt) / 8,
            None => rtt,
        });
        let delay_only = r.flags & RATE_LOSS_EVENT == 0 && r.ce_ppm == 0;
        let recv_now = u64::from(r.recv_rate_kbps) * 1000;
        let before = self.node_recv.get(&node).map_or(0, |h| h[0]);
        let hiccup = delay_only && (recv_now as f64) < before as f64 * self.cfg.hiccup_share;
        if r.congested() && hiccup {
            self.hiccups += 1;
        }
        let congested = r.congested() && !hiccup;
        if self.recent_recv.len() == RECV_KEPT {
            self.recent_recv.pop_front();
        }
        self.recent_recv.push_back((now, u64::from(r.recv_rate_kbps) * 1000));
        if self.node_recv.len() < MAX_RATE_NODES || self.node_recv.contains_key(&node) {
            let h = self.node_recv.entry(node).or_default();
            h.rotate_right(1);
            h[0] = u64::from(r.recv_rate_kbps) * 1000;
        }
        self.floor_rule(now, node, congested);
        if self.excluded.contains(&node) {
            return true;
        }
        let recv_bps = u64::from(r.recv_rate_kbps) * 1000;
        let overflow = f64::from(r.overflow_ppm.unwrap_or(0)) / 1e6;
        tracing::trace!(
            "rate report {node:08x} at {now:?}: recv {} kbit/s, loss {} ppm, overflow {:?} ppm, queue {} us, \
             flags {:#x}",
            r.recv_rate_kbps,
            r.loss_ppm,
            r.overflow_ppm,
            r.queue_delay_us,
            r.flags
        );
        // The worst host heard lately; its own newer report replaces it (even a lower one).
        if self.host.is_none_or(|h| h.node == node || overflow > h.overflow) && overflow > 0.0
            || self.host.is_some_and(|h| h.node == node)
        {
            self.host = Some(HostLimited { node, overflow, recv_bps, at: now });
        }
        if !congested {
            return true;
        }
        if self.clr == Some(node) {
            self.clr_congested = Some((now, recv_bps));
        }
        if self.worst.is_none_or(|w| recv_bps < w.recv_bps) {
            self.worst = Some(Worst { node, recv_bps, report: *r });
        }
        true
    }

    fn set_rate(&mut self, now: Instant, rate_bps: u64) {
        if rate_bps != self.rate as u64 {
            AutoRate::set_rate(self, now, rate_bps as f64);
        }
    }

    fn on_receiver_gone(&mut self, now: Instant, node: u32) {
        if self.gone.len() < MAX_RATE_NODES {
            self.gone.insert(node);
        }
        if self.on_trial(node) {
            self.trial = None;
        }
        self.let_go(now, node);
    }

    fn on_sent(&mut self, now: Instant, sent_total: u64, backlogged: bool) {
        if !backlogged {
            self.sent_window = None;
            return;
        }
        let Some((since, base)) = self.sent_window else {
            self.sent_window = Some((now, sent_total));
            return;
        };
        let span = now.saturating_duration_since(since);
        let bytes = sent_total.saturating_sub(base);
        if span < SENT_WINDOW || bytes < SENT_WINDOW_BYTES {
            return;
        }
        self.sent_window = Some((now, sent_total));
        // What the rate allowed over the same window (the rate history's area), against what
        // went out.
        let allowed = self.area_now(now) - self.area_at(since, now);
        let sent_bits = bytes as f64 * 8.0;
        let sent_bps = sent_bits / span.as_secs_f64();
        if self.sent_rates.len() == RECV_KEPT {
            self.sent_rates.pop_front();
        }
        self.sent_rates.push_back((now, sent_bps));
        if allowed <= sent_bits * SENT_LIMITED {
            return;
        }
        let best = self
            .sent_rates
            .iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) <= SENT_BEST_HORIZON)
            .map(|(_, r)| *r)
            .fold(sent_bps, f64::max);
        let step = if self.slow_start { 0.5 } else { SENT_STEP };
        let target = (best * SENT_HEADROOM).max(self.rate * step);
        if target >= self.rate {
            return;
        }
        tracing::debug!(
            "rate: the sender sent {} kbit/s while backlogged (allowed {}, best lately {}): \
             {} -> {} kbit/s",
            sent_bps as u64 / 1000,
            (allowed / span.as_secs_f64()) as u64 / 1000,
            best as u64 / 1000,
            self.rate as u64 / 1000,
            target as u64 / 1000
        );
        self.slow_start = false;
        self.sender_limited += 1;
        AutoRate::set_rate(self, now, target);
    }

    fn summary(&self, now: Instant) -> RateSummary {
        let mut limiting = self.limiting.clone();
        if let Some(node) = self.clr {
            let us = now.saturating_duration_since(self.clr_since).as_micros() as u64;
            *limiting.entry(node).or_default() += us;
        }
        let area = self.area_now(now);
        let span = now.saturating_duration_since(self.start);
        let mean = if span > Duration::ZERO { area / span.as_secs_f64() } else { self.rate };
        let (from, to) = (self.start + span / 4, self.start + span * 3 / 4);
        let steady = if to > from {
            (self.area_at(to, now) - self.area_at(from, now)) / (to - from).as_secs_f64()
        } else {
            mean
        };
        let limited_by = limiting.iter().max_by_key(|(n, us)| (**us, std::cmp::Reverse(**n)));
        RateSummary {
            mode: "auto",
            final_bps: self.rate as u64,
            min_bps: self.min_seen,
            max_bps: self.max_seen,
            mean_bps: mean as u64,
            steady_bps: steady as u64,
            decreases: self.decreases,
            reports: self.reports,
            reports_ignored: self.ignored,
            limited_by: limited_by.map(|(n, _)| *n),
            limiting: limiting.into_iter().collect(),
            excluded: self.excluded.iter().copied().collect(),
            trials: self.trials,
            host_holds: self.host_holds,
            hiccups: self.hiccups,
            sender_limited: self.sender_limited,
        }
    }
}
