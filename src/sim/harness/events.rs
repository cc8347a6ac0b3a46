//! The harness's event loop: the queue of timed events (arrivals, dequeues, timers), draining
//! a node after each input, the tap, the fan-out of a datagram to the group through the loss
//! model, and slow receivers' queues. Private to [`super::Harness`].

use super::draw;
use super::local::{Env, Local, Out};
use super::{Datagram, Harness, Node, Stop, Tap};
use crate::proto::time::Instant;
use crate::proto::wire::{self, Header, ObjectId, Packet};
use crate::proto::Dest;
use crate::sim::serve::serve_sender_events;
use std::cmp::Reverse;
use std::sync::Arc;

/// A datagram on its way: one event for all its copies.
pub(super) struct Flight {
    from: usize,
    dest: Dest,
    data: Arc<[u8]>,
    /// A payload source symbol: its block.
    source_block: Option<u32>,
}

/// An item on the queue. Ordered by time; at the same instant arrivals come first, by sending
/// node and then in the order that node sent them, then the rest in the order scheduled. The
/// tie order depends only on what each node did, never on the order in which nodes were run,
/// so windowed stepping (module `window`) orders everything as the event loop does.
pub(super) struct Event {
    pub(super) at: Instant,
    /// (0, sending node, its send count) for an arrival, (1, 0, global count) otherwise.
    rank: (u8, u64, u64),
    pub(super) item: Item,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.rank) == (other.at, other.rank)
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.rank).cmp(&(other.at, other.rank))
    }
}

pub(super) enum Item {
    /// A datagram reaches the group.
    Arrive(Flight),
    /// A copy leaves a slow receiver's queue.
    Dequeue { to: usize, from: usize, data: Arc<[u8]>, source_block: Option<u32> },
    /// A node's timer.
    Timer { node: usize },
}

impl Harness {
    /// The first call lets every node send what it has at the start (through the tap).
    pub(super) fn start(&mut self, mut tap: Tap<'_, '_>) {
        if !self.started {
            self.started = true;
            for i in 0..self.peers.len() {
                self.drain(i, tap.as_deref_mut());
            }
        }
    }

    pub(super) fn run_loop(
        &mut self,
        until: Instant,
        stop_when_done: bool,
        mut tap: Tap<'_, '_>,
    ) -> Stop {
        self.start(tap.as_deref_mut());
        if tap.is_none() && self.windowed() {
            return self.run_windows(until, stop_when_done);
        }
        loop {
            let Some(at) = self.next_event_at() else { return Stop::Idle };
            if at > until {
                return Stop::Deadline;
            }
            if self.events >= self.event_limit {
                return Stop::EventLimit;
            }
            if stop_when_done && self.is_done() {
                return Stop::Done;
            }
            self.step_inner(tap.as_deref_mut());
        }
    }

    pub(super) fn run_until_inner(&mut self, t: Instant, tap: Tap<'_, '_>) -> Stop {
        let stop = self.run_loop(t, false, tap);
        if stop != Stop::EventLimit {
            self.now = self.now.max(t);
        }
        stop
    }

    pub(super) fn step_inner(&mut self, mut tap: Tap<'_, '_>) -> Option<Instant> {
        self.start(tap.as_deref_mut());
        let Reverse(Event { at, item, .. }) = self.heap.pop()?;
        self.events += 1;
        self.now = self.now.max(at);
        match item {
            Item::Arrive(f) => self.arrive(f, tap.as_deref_mut()),
            Item::Dequeue { to, from, data, source_block } => {
                self.receive(to, from, &data, source_block, tap)
            }
            Item::Timer { node } => {
                if self.peers[node].timer == Some(at) {
                    self.fire(node, tap);
                } // else superseded by a later arming
            }
        }
        Some(at)
    }

    pub(super) fn push(&mut self, at: Instant, item: Item) {
        self.seq += 1;
        let rank = match &item {
            Item::Arrive(f) => {
                let sent = &mut self.peers[f.from].sent;
                *sent += 1;
                (0, f.from as u64, *sent)
            }
            Item::Dequeue { .. } | Item::Timer { .. } => (1, 0, self.seq),
        };
        self.heap.push(Reverse(Event { at, rank, item }));
    }

    /// Send everything node `i` has to send, act on its events, and re-arm its timer.
    pub(super) fn drain(&mut self, i: usize, mut tap: Tap<'_, '_>) {
        if i != 0 {
            let mut outs = std::mem::take(&mut self.outs);
            let now = self.now;
            let (mut local, env) = self.local(i);
            local.drain(env, now, &mut outs);
            return self.apply(outs, tap);
        }
        loop {
            let mut progressed = false;
            let mut buf = std::mem::take(&mut self.buf);
            while let Some(t) = self.sender.poll_transmit(self.now, &mut buf) {
                progressed = true;
                self.multicast(0, t.dest, &buf, tap.as_deref_mut());
            }
            self.buf = buf;
            progressed |=
                serve_sender_events(&mut self.sender, self.now, &self.source, &mut self.log);
            if !progressed {
                break;
            }
        }
        if let Some(t) = self.sender.poll_timeout() {
            let t = t.max(self.now);
            if self.peers[0].timer != Some(t) {
                self.peers[0].timer = Some(t);
                self.push(t, Item::Timer { node: 0 });
            }
        }
    }

    /// Node `node`'s armed timer fires now; it is drained.
    pub(super) fn fire(&mut self, node: usize, tap: Tap<'_, '_>) {
        if node != 0 {
            let mut outs = std::mem::take(&mut self.outs);
            let now = self.now;
            let (mut local, env) = self.local(node);
            local.timeout(env, now, &mut outs);
            return self.apply(outs, tap);
        }
        self.peers[0].timer = None;
        self.sender.handle_timeout(self.now);
        self.drain(0, tap);
    }

    /// Receiver node `node`'s own share of the harness, and what every receiver reads.
    pub(super) fn local(&mut self, node: usize) -> (Local<'_>, Env<'_>) {
        let local = Local {
            node,
            rx: &mut self.rxs[node - 1],
            peer: &mut self.peers[node],
            auth: &mut self.auth[node],
        };
        (local, Env { decoder: &self.decoder, unix_base: self.unix_base })
    }

    /// Act on what receivers' drains left, in order: datagrams onto the wire (through the
    /// tap), timers onto the queue. `outs` comes back empty into the harness's spare list.
    pub(super) fn apply(&mut self, mut outs: Vec<(usize, Out)>, mut tap: Tap<'_, '_>) {
        for (node, out) in outs.drain(..) {
            match out {
                Out::Send { at, dest, data } => {
                    self.now = at;
                    self.multicast(node, dest, &data, tap.as_deref_mut());
                }
                Out::Timer(t) => self.push(t, Item::Timer { node }),
            }
        }
        self.outs = outs;
    }

    /// Node `from` sends a datagram (sealed first if the node is keyed): after the tap, it is
    /// in flight to the group for one latency.
    pub(super) fn multicast(&mut self, from: usize, dest: Dest, data: &[u8], tap: Tap<'_, '_>) {
        if self.auth[from].is_none() {
            return self.put_on_wire(from, dest, data, None, tap);
        }
        // A keyed node's datagram is classified before it is sealed; the tap sees the wire.
        let kind = self.classify(from, data);
        let unix = self.unix_secs();
        let mut sealed = Vec::new();
        let ok = self.auth[from].as_mut().is_some_and(|r| r.seal(data, unix, &mut sealed).is_ok());
        if ok {
            self.put_on_wire(from, dest, &sealed, Some(kind), tap);
        }
    }

    /// `data` as it goes on the wire from `from`; `kind`: its classification if known already
    /// (a sealed datagram's, from before sealing), else it is classified after the tap.
    pub(super) fn put_on_wire(
        &mut self,
        from: usize,
        dest: Dest,
        data: &[u8],
        kind: Option<Option<Result<u32, ()>>>,
        tap: Tap<'_, '_>,
    ) {
        let (dest, data): (Dest, Arc<[u8]>) = match tap {
            None => (dest, Arc::from(data)),
            Some(tap) => {
                let from = Node::from_index(from);
                let mut d = Datagram { at: self.now, from, dest, data: data.to_vec() };
                if !tap(&mut d) {
                    return;
                }
                (d.dest, Arc::from(d.data))
            }
        };
        let kind = kind.unwrap_or_else(|| self.classify(from, &data));
        let mut source_block = None;
        match kind {
            Some(Ok(block)) => source_block = Some(block),
            Some(Err(())) => self.payload_repairs += 1,
            None => {}
        }
        let at = self.now + self.net.latency;
        self.push(at, Item::Arrive(Flight { from, dest, data, source_block }));
    }

    /// A payload datagram of the sender: its block if a source symbol, `Err` if a repair.
    fn classify(&self, from: usize, data: &[u8]) -> Option<Result<u32, ()>> {
        if from != 0 {
            return None;
        }
        let Ok((_, Packet::Data(d))) = wire::parse(data) else { return None };
        if d.object != ObjectId::Payload {
            return None;
        }
        let k = self.source.object().layout().source_symbols(d.block).unwrap_or(0);
        Some(if d.esi < u32::from(k) { Ok(d.block) } else { Err(()) })
    }

    /// A datagram reaches the group: each copy is lost or delivered.
    pub(super) fn arrive(&mut self, f: Flight, mut tap: Tap<'_, '_>) {
        // Drawn on arrival like every other loss, so that the draws come in arrival order.
        let upstream_lost = f.from == 0 && self.links.upstream(&mut self.rng);
        if self.window.collecting && self.window.defers {
            return self.defer(f, upstream_lost);
        }
        // Parsed once for every open-mode receiver handed it at once (a receiver parses
        // nothing else before it acts: the same effects as parsing each copy).
        let parsed = wire::parse(&f.data).ok();
        if self.window.collecting {
            self.window.begin_flight(self.now, f.from, &f.data, f.source_block);
        }
        let mut mix = draw::MIX_START;
        for to in 0..self.peers.len() {
            let wanted = match f.dest {
                Dest::Receivers => to != 0,
                Dest::Sender => to == 0,
                Dest::All => true,
            };
            if to == f.from || !wanted {
                continue;
            }
            let lost = if f.from == 0 {
                upstream_lost || self.links.downstream(to - 1, &mut self.rng)
            } else {
                self.links.feedback(&mut self.rng)
            };
            if lost || self.now < self.peers[to].joins_at {
                continue;
            }
            mix = draw::fold(mix, to);
            if self.window.collecting {
                self.window.put(to);
            } else if to != 0 && !self.net.receiver_service.is_zero() {
                self.enqueue(to, f.from, Arc::clone(&f.data), f.source_block);
            } else if let (Some((header, packet)), true) = (&parsed, self.opens_nothing(to)) {
                let packet = super::copy_packet(packet);
                let tap = tap.as_deref_mut();
                self.receive_parsed(to, f.from, *header, packet, f.source_block, tap);
            } else {
                self.receive(to, f.from, &f.data, f.source_block, tap.as_deref_mut());
            }
        }
        self.trace_flight(self.now, f.from, &f.data, mix);
    }

    /// [`Harness::arrive`] in a window whose receivers' threads draw their copies (module
    /// `draw`): the sender's copy is drawn now, in the stream's order, and the receivers' copies
    /// get their place in the stream, which moves past them. The trace entry is made once they
    /// are drawn.
    fn defer(&mut self, f: Flight, upstream_lost: bool) {
        self.window.begin_flight(self.now, f.from, &f.data, f.source_block);
        let to_sender = matches!(f.dest, Dest::Sender | Dest::All);
        // Drawn whether or not it joined yet, as the fan-out does.
        let kept = f.from != 0 && to_sender && !self.links.feedback(&mut self.rng);
        if kept && self.now >= self.peers[0].joins_at {
            self.window.put(0);
        }
        let receivers = self.peers.len() - 1 - usize::from(f.from != 0);
        if receivers > 0 && !matches!(f.dest, Dest::Sender) && !upstream_lost {
            let word = self.rng.get_word_pos();
            let per_copy = self.links.words_per_copy(f.from == 0);
            if per_copy > 0 {
                self.rng.set_word_pos(word + per_copy * receivers as u128);
            }
            self.window.defer_last(draw::Deferred { word, per_copy }, receivers);
        }
    }

    /// The trace's entry for a datagram that arrived at `at` from node `from`, its recipients
    /// folded into `mix`.
    pub(super) fn trace_flight(&mut self, at: Instant, from: usize, data: &[u8], mix: u64) {
        let crc = &data[data.len().saturating_sub(4)..];
        self.trace.update(&at.as_micros().to_le_bytes());
        self.trace.update(&(from as u32).to_le_bytes());
        self.trace.update(&(data.len() as u32).to_le_bytes());
        self.trace.update(crc);
        self.trace.update(&mix.to_le_bytes());
    }

    pub(super) fn receive(
        &mut self,
        to: usize,
        from: usize,
        data: &[u8],
        source_block: Option<u32>,
        tap: Tap<'_, '_>,
    ) {
        if to != 0 {
            let mut outs = std::mem::take(&mut self.outs);
            let now = self.now;
            let (mut local, env) = self.local(to);
            local.receive(env, now, from, data, source_block, &mut outs);
            return self.apply(outs, tap);
        }
        let from = Node::from_index(from).addr();
        let unix = self.unix_secs();
        let mut opened = Vec::new();
        let data = match self.auth[0].as_mut() {
            Some(ring) => match ring.open(data, unix, &mut opened) {
                Some(d) => d,
                None => return self.drain(0, tap),
            },
            None => data,
        };
        self.sender.handle_datagram(self.now, from, data);
        self.drain(0, tap);
    }

    /// Whether `to` is a receiver in open mode (it takes datagrams as they are).
    pub(super) fn opens_nothing(&self, to: usize) -> bool {
        to != 0 && self.auth[to].is_none()
    }

    /// Receiver `to` (in open mode) takes a copy that parsed to `header` and `packet`, and
    /// is drained.
    pub(super) fn receive_parsed(
        &mut self,
        to: usize,
        from: usize,
        header: Header,
        packet: Packet<'_>,
        source_block: Option<u32>,
        tap: Tap<'_, '_>,
    ) {
        let mut outs = std::mem::take(&mut self.outs);
        let now = self.now;
        let (mut local, env) = self.local(to);
        local.receive_parsed(env, now, from, header, packet, source_block, &mut outs);
        self.apply(outs, tap);
    }

    /// A copy reaches a slow receiver: it waits its turn, or is dropped when the queue is full.
    pub(super) fn enqueue(
        &mut self,
        to: usize,
        from: usize,
        data: Arc<[u8]>,
        source_block: Option<u32>,
    ) {
        let peer = &mut self.peers[to];
        let start = peer.busy_until.max(self.now);
        if start - self.now > self.net.receiver_queue {
            self.rxs[to - 1].queue_drops += 1;
            return;
        }
        peer.busy_until = start + self.net.receiver_service;
        let at = peer.busy_until;
        self.push(at, Item::Dequeue { to, from, data, source_block });
    }
}
