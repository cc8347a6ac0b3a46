//! Windowed stepping, for runs with thousands of receivers ([`Harness::set_windowed`]).
//!
//! Every datagram takes [`Network::latency`](super::Network::latency) to reach anyone, so what
//! a node does inside a window of at most one latency cannot reach any other node inside that
//! window: nodes are independent there (the lookahead of conservative parallel discrete-event
//! simulation). A window is run in two phases:
//! 1. every arrival due in the window is fanned out in time order, exactly as in the event
//!    loop (the same loss draws, in the same order; the same trace), but each copy is put on
//!    its recipient's list instead of being handled at once;
//! 2. each node in turn (sender first, then receivers by index) handles its copies and its
//!    timers due in the window, in time order, on its own clock.
//!
//! Each node sees exactly the inputs, at exactly the times, that the event loop would give it,
//! and since losses are drawn as arrivals fan out (phase 1, in the event loop's order) and ties
//! are broken by what each node sent (see `events::Event`), a windowed run equals the event
//! loop's, down to the trace; only the interleaving between nodes changes, which no node can
//! observe. A receiver then handles its datagrams of a window back to back while its state is
//! in cache, instead of one datagram for every receiver in turn.

use super::events::Item;
use super::{Harness, Stop};
use crate::proto::time::{Duration, Instant};
use std::cmp::Reverse;
use std::rc::Rc;

/// A copy of a datagram waiting for its recipient within the current window.
pub(super) struct Copy {
    at: Instant,
    from: usize,
    data: Rc<[u8]>,
    source_block: Option<u32>,
}

/// Per-node lists of the current window.
pub(super) struct Window {
    /// Whether windowed stepping is on.
    pub(super) on: bool,
    /// Whether a window is being collected (phase 1): arrivals go to the lists.
    pub(super) collecting: bool,
    /// Per node: copies due in the window, in arrival order.
    copies: Vec<Vec<Copy>>,
    /// Per node: whether it is in `touched`.
    marked: Vec<bool>,
    /// Nodes with copies or a timer in the window.
    touched: Vec<usize>,
    /// Copies held in the window.
    held: usize,
    /// Copies a window holds before it ends early ([`MAX_HELD`] unless a test says less).
    pub(super) cap: usize,
}

/// Copies a window holds before it ends early (about 40 MiB).
const MAX_HELD: usize = 1 << 20;

impl Default for Window {
    fn default() -> Self {
        Window {
            on: false,
            collecting: false,
            copies: Vec::new(),
            marked: Vec::new(),
            touched: Vec::new(),
            held: 0,
            cap: MAX_HELD,
        }
    }
}

impl Window {
    fn mark(&mut self, node: usize) {
        if self.marked.len() <= node {
            self.marked.resize(node + 1, false);
            self.copies.resize_with(node + 1, Vec::new);
        }
        if !self.marked[node] {
            self.marked[node] = true;
            self.touched.push(node);
        }
    }

    /// Phase 1: a copy for `to`.
    pub(super) fn put(
        &mut self,
        at: Instant,
        to: usize,
        from: usize,
        data: &Rc<[u8]>,
        source_block: Option<u32>,
    ) {
        self.mark(to);
        self.held += 1;
        self.copies[to].push(Copy { at, from, data: Rc::clone(data), source_block });
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
        self.window.collecting = true;
        self.window.held = 0;
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
                    self.window.put(e.at, to, from, &data, source_block)
                }
            }
        }
        self.window.collecting = false;
        // Phase 2: each node on its own clock.
        let mut touched = std::mem::take(&mut self.window.touched);
        touched.sort_unstable();
        let mut latest = self.now;
        for &node in &touched {
            self.window.marked[node] = false;
            // Taken for the loop and put back empty, keeping its capacity.
            let mut copies = std::mem::take(&mut self.window.copies[node]);
            let mut i = 0;
            loop {
                let timer = self.peers[node].timer.filter(|t| *t < end);
                let copy_first = match (copies.get(i), timer) {
                    (Some(c), Some(t)) => c.at <= t,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                if copy_first {
                    let c = &copies[i];
                    i += 1;
                    self.now = c.at;
                    self.receive(node, c.from, &c.data, c.source_block, None);
                } else {
                    self.now = timer.expect("due");
                    self.peers[node].timer = None;
                    if node == 0 {
                        self.sender.handle_timeout(self.now);
                    } else {
                        self.rxs[node - 1].ep.handle_timeout(self.now);
                    }
                    self.drain(node, None);
                }
                latest = latest.max(self.now);
            }
            copies.clear();
            self.window.copies[node] = copies;
        }
        touched.clear();
        self.window.touched = touched;
        self.now = latest;
        None
    }
}
