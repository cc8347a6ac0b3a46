//! Windowed stepping, for runs with thousands of receivers ([`Harness::set_windowed`]).
//!
//! Every datagram takes [`Network::latency`](super::Network::latency) to reach anyone, so what
//! a node does inside a window of at most one latency cannot reach any other node inside that
//! window: nodes are independent there (the lookahead of conservative parallel discrete-event
//! simulation). A window is run in two phases:
//! 1. every arrival due in the window is fanned out in time order, exactly as in the event
//!    loop (the same loss draws, in the same order; the same trace), but each copy is put on
//!    its recipient's list instead of being handled at once; when every copy takes a fixed
//!    share of the loss stream, the receivers' copies are only given their place in it, and
//!    their threads draw them in phase 2 (module `draw`);
//! 2. each node (the sender first, then the receivers, side by side on several threads; module
//!    `visit`) handles its copies and its timers due in the window, in time order, on its own
//!    clock; what the receivers send and arm is applied afterwards, in node order.
//!
//! Each node sees exactly the inputs, at exactly the times, that the event loop would give it,
//! and since losses are drawn as arrivals fan out (phase 1, in the event loop's order) and ties
//! are broken by what each node sent (see `events::Event`), a windowed run equals the event
//! loop's, down to the trace; only the interleaving between nodes changes, which no node can
//! observe. A receiver then handles its datagrams of a window back to back while its state is
//! in cache, instead of one datagram for every receiver in turn.
//!
//! A window holds each datagram once (`Flight`; its bytes parsed once for every open-mode
//! recipient, as the event loop does) and one bit per node for who got a copy: a bit per node
//! per datagram in flight, not a list entry per copy (which, kept per node with its capacity,
//! grew with the square of the group: 512 MB at 3000 receivers).

use super::draw::Deferred;
use super::events::Item;
use super::{Harness, Stop};
use crate::proto::time::{Duration, Instant};
use crate::proto::wire;
use std::cmp::Reverse;
use std::sync::Arc;

/// A datagram arriving within the current window.
pub(super) struct Flight {
    pub(super) at: Instant,
    pub(super) from: usize,
    pub(super) data: Arc<[u8]>,
    pub(super) source_block: Option<u32>,
    /// Its copies to the receivers, drawn by their threads (module `draw`).
    pub(super) deferred: Option<Deferred>,
}

/// The current window: its datagrams and, per datagram, who got a copy.
pub(super) struct Window {
    /// Whether windowed stepping is on.
    pub(super) on: bool,
    /// Whether a window is being collected (phase 1): arrivals go to the lists.
    pub(super) collecting: bool,
    /// Whether the receivers' threads draw their copies (module `draw`) in this window.
    pub(super) defers: bool,
    /// Datagrams arriving in the window, in arrival order.
    flights: Vec<Flight>,
    /// `words` words per flight: a bit per node that got a copy.
    got: Vec<u64>,
    /// A bit per node with a copy or a timer in the window.
    touched: Vec<u64>,
    /// Words of a node bitmap in this window.
    words: usize,
    /// Copies held in the window.
    held: usize,
    /// Copies a window holds before it ends early ([`MAX_HELD`] unless a test says less).
    pub(super) cap: usize,
}

/// Copies a window holds before it ends early (a hundred datagrams to 10,000 receivers).
const MAX_HELD: usize = 1 << 20;

impl Default for Window {
    fn default() -> Self {
        Window {
            on: false,
            collecting: false,
            defers: false,
            flights: Vec::new(),
            got: Vec::new(),
            touched: Vec::new(),
            words: 0,
            held: 0,
            cap: MAX_HELD,
        }
    }
}

impl Window {
    /// Start collecting a window for `nodes` nodes; `defers`: the receivers' threads draw their
    /// copies.
    pub(super) fn begin(&mut self, nodes: usize, defers: bool) {
        self.collecting = true;
        self.defers = defers;
        self.held = 0;
        self.words = nodes.div_ceil(64);
        self.flights.clear();
        self.got.clear();
        self.touched.clear();
        self.touched.resize(self.words, 0);
    }

    /// `node` has something to do in the window (a copy or a timer).
    pub(super) fn mark(&mut self, node: usize) {
        self.touched[node / 64] |= 1 << (node % 64);
    }

    /// Phase 1: a datagram arrives; [`Window::put`] says who gets a copy.
    pub(super) fn begin_flight(
        &mut self,
        at: Instant,
        from: usize,
        data: &Arc<[u8]>,
        source_block: Option<u32>,
    ) {
        let data = Arc::clone(data);
        self.flights.push(Flight { at, from, data, source_block, deferred: None });
        self.got.resize(self.got.len() + self.words, 0);
    }

    /// Phase 1: node `to` gets a copy of the datagram that arrived last.
    pub(super) fn put(&mut self, to: usize) {
        let base = self.got.len() - self.words;
        self.got[base + to / 64] |= 1 << (to % 64);
        self.mark(to);
        self.held += 1;
    }

    /// Phase 1: the `receivers` copies of the datagram that arrived last to the receivers are
    /// drawn by their threads, from `at` on in the loss stream (module `draw`).
    pub(super) fn defer_last(&mut self, at: Deferred, receivers: usize) {
        if let Some(f) = self.flights.last_mut() {
            f.deferred = Some(at);
            // As many as could arrive: a bound for `cap`, which only ends windows early.
            self.held += receivers;
        }
    }

    /// Word `w` of the bitmap of nodes with a copy or a timer in the window (so far).
    pub(super) fn touched_word(&self, w: usize) -> u64 {
        self.touched.get(w).copied().unwrap_or(0)
    }

    /// Whether any datagram of the window has copies that the receivers' threads draw.
    pub(super) fn any_deferred(&self, flights: &[Flight]) -> bool {
        self.defers && flights.iter().any(|f| f.deferred.is_some())
    }

    /// Words of a node bitmap in this window.
    pub(super) fn words(&self) -> usize {
        self.words
    }

    /// Whether `node` got a copy of flight `i`.
    pub(super) fn has(&self, i: usize, node: usize) -> bool {
        self.got[i * self.words + node / 64] & (1 << (node % 64)) != 0
    }

    /// The flights (of the first `n`) of which `node` got a copy, in arrival order.
    pub(super) fn copies(&self, node: usize, n: usize) -> impl Iterator<Item = usize> + '_ {
        (0..n).filter(move |&i| self.has(i, node))
    }

    /// The first node at or after `from` with something to do in the window.
    pub(super) fn next_touched(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        let mut bits = *self.touched.get(w)? & (!0u64 << (from % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            bits = *self.touched.get(w)?;
        }
    }
}

impl Harness {
    /// Windowed stepping (see the module docs of `window`) for [`Harness::run`] and
    /// [`Harness::run_until`] without a tap; ignored when the latency is zero or receivers have
    /// a service time (their queues couple arrivals within a window). The event limit is then
    /// checked between windows.
    pub fn set_windowed(&mut self, on: bool) {
        self.window.on = on;
    }

    /// Whether the next stretch of a tapless run goes window by window.
    pub(super) fn windowed(&self) -> bool {
        self.window.on && !self.net.latency.is_zero() && self.net.receiver_service.is_zero()
    }

    /// [`Harness::run_loop`] window by window.
    pub(super) fn run_windows(&mut self, until: Instant, stop_when_done: bool) -> Stop {
        loop {
            if self.events >= self.event_limit {
                return Stop::EventLimit;
            }
            if stop_when_done && self.is_done() {
                return Stop::Done;
            }
            match self.run_window(until) {
                None => {}
                Some(stop) => return stop,
            }
        }
    }

    /// Run one window from the next event, up to `until` inclusive; `None` when it ran.
    pub(super) fn run_window(&mut self, until: Instant) -> Option<Stop> {
        let Some(start) = self.next_event_at() else { return Some(Stop::Idle) };
        if start > until {
            return Some(Stop::Deadline);
        }
        let mut end = (start + self.net.latency).min(until + Duration::from_micros(1));
        // Phase 1: fan out the arrivals; note the timers due. A window that holds too many
        // copies (everyone multicasting at once) ends early, between two instants.
        self.window.begin(self.peers.len(), self.links.fixed_draws());
        while let Some(Reverse(e)) = self.heap.peek() {
            if e.at >= end {
                break;
            }
            if self.window.held >= self.window.cap && e.at > self.now {
                end = self.now + Duration::from_micros(1);
                break;
            }
            let Some(Reverse(e)) = self.heap.pop() else { break };
            self.events += 1;
            self.now = self.now.max(e.at);
            match e.item {
                Item::Arrive(f) => self.arrive(f, None),
                Item::Timer { node } => {
                    if self.peers[node].timer == Some(e.at) {
                        self.window.mark(node);
                    }
                }
                Item::Dequeue { to, from, data, source_block } => {
                    self.window.begin_flight(e.at, from, &data, source_block);
                    self.window.put(to);
                }
            }
        }
        self.window.collecting = false;
        // Phase 2: each node on its own clock, the sender first, then the receivers side by
        // side. Each datagram is parsed once for all its open-mode recipients, as the event loop
        // does.
        let flights = std::mem::take(&mut self.window.flights);
        let parsed: Vec<_> = flights.iter().map(|f| wire::parse(&f.data).ok()).collect();
        let mut latest = self.now;
        if self.window.next_touched(0) == Some(0) {
            let copies: Vec<usize> = self.window.copies(0, flights.len()).collect();
            latest = latest.max(self.visit_sender(&flights, &copies, end));
        }
        let (outs, drawn) = self.visit_receivers(&flights, &parsed, end, &mut latest);
        if self.window.defers {
            for (i, f) in flights.iter().enumerate() {
                let mix = super::draw::mix(i, &self.window, &drawn);
                self.trace_flight(f.at, f.from, &f.data, mix);
            }
        }
        for out in outs {
            self.apply(out, None);
        }
        drop(parsed);
        self.window.flights = flights;
        self.window.flights.clear();
        self.now = latest;
        None
    }
}
