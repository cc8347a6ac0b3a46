//! One in-memory harness for driving endpoints (quinn-proto's test `Pair`, generalised to one
//! sender and any number of receivers): the endpoints, a virtual clock, and a network model in
//! between. Every datagram a node sends reaches every other wanted member of the group after
//! [`Network::latency`] unless the seeded [`LossModel`] drops that copy; a receiver with a
//! service time handles its copies one at a time from a bounded queue, like a socket buffer.
//! Events are processed in time order (ties in the order they were scheduled), so a run is a
//! pure function of its inputs and the loss RNG, summed up by [`Harness::trace`].
//!
//! The endpoints' events are consumed by the shared pieces: [`serve_sender_events`](crate::sim::serve_sender_events)
//! for the sender, [`drive_receiver_events`](crate::sim::drive_receiver_events) for each receiver. Tests reach in through hooks: a *tap*
//! (`run_with`, `run_until_with`) sees every datagram as it is sent and may record,
//! rewrite or drop it (smoltcp's fault injector, as a closure); [`Harness::deliver`] hands a
//! datagram straight to one node and [`Harness::inject`] puts one on the network; the
//! endpoints themselves are reachable for inspection. Time moves only by events:
//! [`Harness::step`] processes exactly one, [`Harness::run_until`] everything due up to an
//! instant. Keyed mode: [`Harness::set_keyring`] gives a node a [`Keyring`] that seals what it
//! sends (before the tap, which sees the wire) and opens what it receives (on a Unix clock of
//! [`Harness::set_unix_base`] plus the virtual time).

mod draw;
mod events;
mod local;
mod visit;
mod window;

use super::consume::{Decoder, FecModel, MemSink};
use super::loss::{Links, LossModel};
use super::serve::{MemSource, SenderLog};
use crate::proto::auth::Keyring;
use crate::proto::receiver::Receiver;
use crate::proto::sender::Sender;
use crate::proto::time::{Duration, Instant};
use crate::proto::Dest;
use events::Event;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Unix time of the virtual origin unless [`Harness::set_unix_base`] says otherwise.
pub const DEFAULT_UNIX_BASE: u64 = 1_800_000_000;

/// A node of the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    /// The sender.
    Sender,
    /// Receiver by index (in the order added).
    Receiver(usize),
}

impl Node {
    fn index(self) -> usize {
        match self {
            Node::Sender => 0,
            Node::Receiver(r) => r + 1,
        }
    }

    fn from_index(i: usize) -> Node {
        if i == 0 {
            Node::Sender
        } else {
            Node::Receiver(i - 1)
        }
    }

    /// The node's address as the other endpoints see it.
    pub fn addr(self) -> SocketAddr {
        let i = self.index();
        SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], 7000))
    }
}

/// The network between the nodes.
#[derive(Debug, Clone)]
pub struct Network {
    /// One-way latency of every link.
    pub latency: Duration,
    /// Which datagram copies are lost.
    pub loss: LossModel,
    /// Time a receiver spends on each datagram (zero: infinitely fast).
    pub receiver_service: Duration,
    /// Longest a datagram may wait in a receiver's queue; beyond it the copy is dropped.
    pub receiver_queue: Duration,
}

impl Default for Network {
    /// A perfect network: no latency, no loss, infinitely fast receivers.
    fn default() -> Self {
        Network {
            latency: Duration::ZERO,
            loss: LossModel::Independent(0.0),
            receiver_service: Duration::ZERO,
            receiver_queue: Duration::from_millis(50),
        }
    }
}

/// A receiver's own link.
#[derive(Debug, Clone, Copy, Default)]
pub struct Link {
    /// Before this it receives nothing.
    pub joins_at: Instant,
    /// Independent loss on top of the network's (a straggler).
    pub extra_loss: f64,
}

/// A datagram as a node sends it, for a tap to see and change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// When it was sent.
    pub at: Instant,
    /// Who sent it.
    pub from: Node,
    /// Who it is for.
    pub dest: Dest,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Why a run returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The sender finished and every receiver has an outcome.
    Done,
    /// The next event is past the deadline.
    Deadline,
    /// The event limit was reached.
    EventLimit,
    /// Nothing is scheduled at all.
    Idle,
}

/// A tap, threaded through one run: sees each datagram as it is sent; `false` drops it.
type Tap<'a, 'f> = Option<&'a mut (dyn FnMut(&mut Datagram) -> bool + 'f)>;

/// Per node (0 the sender): the timer armed for it and its link state.
pub(super) struct Peer {
    timer: Option<Instant>,
    /// Datagrams it put on the network (their tie order).
    sent: u64,
    /// When the node is done with the datagrams already queued for it.
    busy_until: Instant,
    joins_at: Instant,
}

pub(super) struct Rx {
    ep: Receiver,
    sink: MemSink,
    /// Per payload block: source symbols received.
    got: Vec<u16>,
    queue_drops: u64,
}

/// One sender, its receivers and the network between them, on a virtual clock.
pub struct Harness {
    now: Instant,
    seq: u64,
    /// Scheduled events, earliest first (ties in the order scheduled).
    heap: BinaryHeap<Reverse<Event>>,
    rng: ChaCha8Rng,
    links: Links,
    net: Network,
    sender: Sender,
    source: MemSource,
    log: SenderLog,
    decoder: Decoder,
    rxs: Vec<Rx>,
    peers: Vec<Peer>,
    payload_repairs: u64,
    trace: blake3::Hasher,
    buf: Vec<u8>,
    events: u64,
    event_limit: u64,
    started: bool,
    /// Per node (0 the sender): its keyed-mode state, `None` in open mode.
    auth: Vec<Option<Keyring>>,
    unix_base: u64,
    /// Windowed stepping's state.
    window: window::Window,
    /// Threads a window's receivers run on.
    threads: usize,
    /// Touched receivers a window gives each thread at least.
    per_thread: usize,
    /// A spare list for receivers' outputs.
    outs: Vec<(usize, local::Out)>,
}

impl Harness {
    /// A harness for `sender`, serving its blocks from `source`, decoding with `fec`, drawing
    /// losses from `rng`. The clock starts at [`Instant::ZERO`]; add receivers before running.
    pub fn new(
        net: Network,
        sender: Sender,
        source: MemSource,
        fec: FecModel,
        rng: ChaCha8Rng,
    ) -> Self {
        let decoder = Decoder::new(fec, Arc::clone(source.object()));
        Harness {
            now: Instant::ZERO,
            seq: 0,
            heap: BinaryHeap::new(),
            rng,
            links: Links::new(net.loss.clone(), Vec::new()),
            net,
            sender,
            source,
            log: SenderLog::default(),
            decoder,
            rxs: Vec::new(),
            peers: vec![Peer {
                timer: None,
                sent: 0,
                busy_until: Instant::ZERO,
                joins_at: Instant::ZERO,
            }],
            payload_repairs: 0,
            trace: blake3::Hasher::new(),
            buf: Vec::with_capacity(2048),
            events: 0,
            event_limit: u64::MAX,
            started: false,
            auth: vec![None],
            unix_base: DEFAULT_UNIX_BASE,
            window: window::Window::default(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            per_thread: visit::MIN_PER_THREAD,
            outs: Vec::new(),
        }
    }

    /// Add a receiver on `link`; returns its index.
    pub fn add_receiver(&mut self, rx: Receiver, link: Link) -> usize {
        let blocks = self.source.object().layout().block_count() as usize;
        self.rxs.push(Rx {
            ep: rx,
            sink: MemSink::new(Arc::clone(self.source.object())),
            got: vec![0; blocks],
            queue_drops: 0,
        });
        self.links.add_receiver(link.extra_loss);
        self.peers.push(Peer {
            timer: None,
            sent: 0,
            busy_until: self.now,
            joins_at: link.joins_at,
        });
        self.auth.push(None);
        let r = self.rxs.len() - 1;
        if self.started {
            self.drain(r + 1, None);
        }
        r
    }

    /// Keyed mode for `node`: seal what it sends, open what it receives, with `ring`.
    pub fn set_keyring(&mut self, node: Node, ring: Keyring) {
        self.auth[node.index()] = Some(ring);
    }

    /// `node`'s keyed-mode state (its counters), if it has one.
    pub fn keyring(&self, node: Node) -> Option<&Keyring> {
        self.auth.get(node.index()).and_then(Option::as_ref)
    }

    /// The Unix time, in seconds, of the virtual clock's origin (for sealing and age checks).
    pub fn set_unix_base(&mut self, secs: u64) {
        self.unix_base = secs;
    }

    /// The Unix time of the virtual clock, in seconds.
    pub fn unix_secs(&self) -> u64 {
        unix_secs(self.unix_base, self.now)
    }

    /// Stop any run after this many processed events in all.
    pub fn set_event_limit(&mut self, limit: u64) {
        self.event_limit = limit;
    }

    /// Run until the sender finished and every receiver has an outcome, or nothing is due up
    /// to `until`, or the event limit. The clock stays at the last event processed.
    pub fn run(&mut self, until: Instant) -> Stop {
        self.run_loop(until, true, None)
    }

    /// [`Harness::run`] with a tap on every datagram sent.
    pub fn run_with(&mut self, until: Instant, tap: &mut dyn FnMut(&mut Datagram) -> bool) -> Stop {
        self.run_loop(until, true, Some(tap))
    }

    /// Process every event due at or before `t` (up to the event limit), then move the clock
    /// to `t`.
    pub fn run_until(&mut self, t: Instant) -> Stop {
        self.run_until_inner(t, None)
    }

    /// [`Harness::run_until`] with a tap on every datagram sent.
    pub fn run_until_with(
        &mut self,
        t: Instant,
        tap: &mut dyn FnMut(&mut Datagram) -> bool,
    ) -> Stop {
        self.run_until_inner(t, Some(tap))
    }

    /// Process exactly one event; returns its time, or `None` when nothing is scheduled.
    pub fn step(&mut self) -> Option<Instant> {
        self.step_inner(None)
    }

    /// When the next event is due (`None` also before the first run, step or
    /// [`Harness::deliver`]: the nodes start sending on first use, through that call's tap).
    pub fn next_event_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Hand `data` to node `to` now, as if it came from `from`, and act on what follows
    /// (datagrams this provokes are not tapped).
    pub fn deliver(&mut self, to: Node, from: SocketAddr, data: &[u8]) {
        self.start(None);
        let i = to.index();
        let unix = self.unix_secs();
        let mut opened = Vec::new();
        let data = match self.auth[i].as_mut() {
            Some(ring) => match ring.open(data, unix, &mut opened) {
                Some(d) => d,
                None => return,
            },
            None => data,
        };
        match to {
            Node::Sender => self.sender.handle_datagram(self.now, from, data),
            Node::Receiver(r) => self.rxs[r].ep.handle_datagram(self.now, from, data),
        }
        self.drain(i, None);
    }

    /// Put `data` on the network now as if `from` sent it to `dest`: it meets the same
    /// latency, loss and queues as the node's own datagrams (as it is: never sealed).
    pub fn inject(&mut self, from: Node, dest: Dest, data: &[u8]) {
        self.start(None);
        self.put_on_wire(from.index(), dest, data, None, None);
    }

    /// The virtual clock.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The sender.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// What the sender's events said.
    pub fn sender_log(&self) -> &SenderLog {
        &self.log
    }

    /// Number of receivers.
    pub fn receiver_count(&self) -> usize {
        self.rxs.len()
    }

    /// Receiver `r`.
    pub fn receiver(&self, r: usize) -> &Receiver {
        &self.rxs[r].ep
    }

    /// Receiver `r`'s sink: what it wrote and how it ended.
    pub fn sink(&self, r: usize) -> &MemSink {
        &self.rxs[r].sink
    }

    /// Copies dropped because receiver `r`'s queue was full.
    pub fn queue_drops(&self, r: usize) -> u64 {
        self.rxs[r].queue_drops
    }

    /// Whether the sender finished and every receiver has an outcome.
    pub fn is_done(&self) -> bool {
        self.log.finished_at.is_some() && self.rxs.iter().all(|r| r.sink.outcome().is_some())
    }

    /// Digest of every arrival so far (time, sender, length, checksum, who got a copy).
    pub fn trace(&self) -> [u8; 32] {
        *self.trace.finalize().as_bytes()
    }

    /// Payload repair symbols sent so far (proactive and on request).
    pub fn payload_repairs(&self) -> u64 {
        self.payload_repairs
    }

    /// Payload blocks of which some receiver present from the start lacked a source symbol,
    /// and the sum over blocks of the most source symbols any such receiver lacked.
    pub fn lacked(&self) -> (u64, u64) {
        let layout = self.source.object().layout();
        let (mut lossy, mut sum) = (0u64, 0u64);
        for b in 0..layout.block_count() {
            let k = layout.source_symbols(b).unwrap_or(0);
            let worst = (0..self.rxs.len())
                .filter(|r| self.peers[r + 1].joins_at == Instant::ZERO)
                .map(|r| k.saturating_sub(self.rxs[r].got[b as usize]))
                .max()
                .unwrap_or(0);
            lossy += u64::from(worst > 0);
            sum += u64::from(worst);
        }
        (lossy, sum)
    }
}

#[cfg(test)]
mod tests;

/// The Unix time, in seconds, of virtual instant `now` on a clock whose origin is `base`.
pub(super) fn unix_secs(base: u64, now: Instant) -> u64 {
    base + now.as_micros() / 1_000_000
}

/// A copy of a datagram parsed once for all its recipients: a data symbol (nearly every copy)
/// is copied field by field, without the derived `clone`'s walk over every kind of packet.
#[inline]
pub(super) fn copy_packet<'a>(
    p: &crate::proto::wire::Packet<'a>,
) -> crate::proto::wire::Packet<'a> {
    match p {
        crate::proto::wire::Packet::Data(d) => crate::proto::wire::Packet::Data(*d),
        other => other.clone(),
    }
}
