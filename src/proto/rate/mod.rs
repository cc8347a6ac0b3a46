//! Rate control, sans-IO: what rate the sender paces at, behind one small trait
//! ([`RateController`]) with two implementations, [`FixedRate`] (`--rate 100M`: the rate never
//! moves and nothing extra goes on the wire) and [`AutoRate`] (`--rate auto`: the rate follows
//! the limiting receiver's congestion reports). The receiver's half, which measures what the
//! controller needs and decides whether to speak, is [`RateMeter`].
//!
//! The automatic controller reacts to congestion, not to loss as such: a queue building on the
//! path (one-way delay above its minimum), loss above the receiver's own random-loss baseline
//! (loss that grows with the rate), and ECN CE marks where the driver reads them. Random loss
//! that the FEC repairs anyway leaves the rate alone. The design and its rules (start, growth,
//! back-off, the limiting receiver, feedback suppression, stragglers) are in
//! `docs/rate-control.md`.

mod auto;
mod meter;

pub use auto::{AutoConfig, AutoRate, MAX_RATE_NODES};
pub use meter::{MeterConfig, RateMeter};

use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{RateReport, RateTick};

/// A rate controller as the sender drives it: reports in, ticks and the rate out.
pub trait RateController: Send + std::fmt::Debug {
    /// The rate in force, bits per second.
    fn rate_bps(&self) -> u64;
    /// When [`on_timeout`](Self::on_timeout) next has work (`None`: never).
    fn poll_timeout(&self) -> Option<Instant>;
    /// Decide at `now` (the sender's `grtt` and group size estimate given); returns whether a
    /// [`RateTick`] is due, which the sender then builds with [`tick`](Self::tick) when it goes
    /// out.
    fn on_timeout(&mut self, now: Instant, grtt: Duration, group_size: u32) -> bool;
    /// The tick going out at `now` (its send time recorded, so reports answering it are known).
    fn tick(&mut self, now: Instant) -> RateTick;
    /// A receiver's report heard at `now` from `node` (already bound to its address).
    /// Returns whether it was believed.
    fn on_report(&mut self, now: Instant, node: u32, report: &RateReport) -> bool;
    /// What the controller did so far, as of `now`.
    fn summary(&self, now: Instant) -> RateSummary;
    /// The sender's rate was set from outside (`Sender::set_rate`) at `now`: go on from it.
    fn set_rate(&mut self, now: Instant, rate_bps: u64);
    /// Before each decision: the bytes the sender has put out so far (`sent_total`) and
    /// whether it has a symbol waiting for the pacer (`backlogged`). A sender that stays
    /// backlogged yet sends less than its rate is limited by itself (CPU, socket), not by the
    /// path: the automatic rate comes down towards what it sends. Ignored by default.
    fn on_sent(&mut self, _now: Instant, _sent_total: u64, _backlogged: bool) {}
    /// The sender no longer serves `node` (dropped as a straggler): its reports stop steering
    /// the rate from `now` on. Ignored by default.
    fn on_receiver_gone(&mut self, _now: Instant, _node: u32) {}
}

/// A controller's account, for the sender's report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RateSummary {
    /// `"fixed"` or `"auto"`.
    pub mode: &'static str,
    /// The rate in force at the end, bits per second.
    pub final_bps: u64,
    /// Lowest and highest rate used, bits per second.
    pub min_bps: u64,
    /// Highest rate used, bits per second.
    pub max_bps: u64,
    /// Time-weighted mean rate, bits per second.
    pub mean_bps: u64,
    /// Time-weighted mean rate over the middle half of the controller's life (from a quarter
    /// to three quarters of it: past the start, before the tail), bits per second.
    pub steady_bps: u64,
    /// Multiplicative decreases (congestion answered).
    pub decreases: u32,
    /// Reports believed.
    pub reports: u64,
    /// Reports not believed (unknown tick, excluded node).
    pub reports_ignored: u64,
    /// The receiver that limited the rate longest (node id), if any did.
    pub limited_by: Option<u32>,
    /// Microseconds each limiting receiver held that role (at most [`MAX_RATE_NODES`]).
    pub limiting: Vec<(u32, u64)>,
    /// Receivers dropped from rate decisions under the straggler rule.
    pub excluded: Vec<u32>,
    /// Straggler trials begun under `AutoConfig::straggler_fraction` (each either excluded its
    /// receiver or gave it back its say).
    pub trials: u32,
    /// Control intervals in which the rate was held (or brought down to what a host takes)
    /// because a receiver's own socket dropped data (host-limited, not congestion).
    pub host_holds: u32,
    /// Congested reports not acted on because the receiver's receive rate had collapsed
    /// against its previous report (a receiver that was not scheduled, not a queue).
    pub hiccups: u64,
    /// Decisions that brought the rate down towards what a backlogged sender actually sent
    /// (the sender, not the path, was the limit; not counted as decreases).
    pub sender_limited: u32,
}

/// The fixed rate: today's behaviour. It never changes the rate and never asks for a tick.
#[derive(Debug, Clone)]
pub struct FixedRate {
    rate_bps: u64,
}

impl FixedRate {
    /// Pace at `rate_bps` throughout.
    pub fn new(rate_bps: u64) -> Self {
        FixedRate { rate_bps }
    }
}

impl RateController for FixedRate {
    fn rate_bps(&self) -> u64 {
        self.rate_bps
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn on_timeout(&mut self, _now: Instant, _grtt: Duration, _group_size: u32) -> bool {
        false
    }
    fn tick(&mut self, now: Instant) -> RateTick {
        RateTick {
            send_time_us: now.as_micros(),
            rate_bps: self.rate_bps,
            clr_node: 0,
            report_share: 0,
        }
    }
    fn on_report(&mut self, _now: Instant, _node: u32, _report: &RateReport) -> bool {
        false
    }
    fn set_rate(&mut self, _now: Instant, rate_bps: u64) {
        self.rate_bps = rate_bps;
    }
    fn summary(&self, _now: Instant) -> RateSummary {
        RateSummary {
            mode: "fixed",
            final_bps: self.rate_bps,
            min_bps: self.rate_bps,
            max_bps: self.rate_bps,
            mean_bps: self.rate_bps,
            steady_bps: self.rate_bps,
            ..RateSummary::default()
        }
    }
}

/// Which controller a sender runs (part of `SenderConfig`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum RateControl {
    /// [`FixedRate`] at the configured `rate_bps`.
    #[default]
    Fixed,
    /// [`AutoRate`] with these settings (the configured `rate_bps` is ignored).
    Auto(AutoConfig),
}

impl RateControl {
    /// The controller, starting at `now`; `rate_bps` is the fixed rate.
    pub fn build(&self, rate_bps: u64, now: Instant) -> Box<dyn RateController> {
        match self {
            RateControl::Fixed => Box::new(FixedRate::new(rate_bps)),
            RateControl::Auto(cfg) => Box::new(AutoRate::new(cfg.clone(), now)),
        }
    }
}

#[cfg(test)]
mod tests;
