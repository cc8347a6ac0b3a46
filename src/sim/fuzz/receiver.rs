//! The receiver harness: one [`Receiver`] driven by a [`Script`] the way the driver drives it.
//! After every step it drains what the receiver has to say (events, then datagrams); decode
//! jobs wait in the harness until a step completes them (in any order), a completed object
//! waits until a step answers for storage, and the clock only moves when a step says so
//! (a tick walks through every deadline on the way, as a sleeping driver would wake for each).
//!
//! Invariants checked (a panic is a finding):
//! - every datagram it sends parses, comes from its node and carries its session;
//! - every block it hands out lies exactly where the announced layout puts that block, the
//!   manifest it hands out has the announced layout, a completion has the announced size;
//! - payload blocks in decoding never exceed `max_pending_blocks`;
//! - no timer storm: firing the timers due at an instant leaves none due at it after a few
//!   rounds;
//! - heap growth stays under a limit derived from the announced layouts and the input length
//!   (with [`CountingAlloc`](super::CountingAlloc) installed).

use super::script::{seal, Framing, Script, Step};
use super::HeapScope;
use crate::proto::layout::Layout;
use crate::proto::receiver::{DecodeJob, Event, Outcome, Receiver, ReceiverConfig};
use crate::proto::stats::ReceiverStats;
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{self, hash_list_len, Announce, ObjectId, Packet};
use std::net::SocketAddr;

/// The harness receiver's node id (seeds address it; a datagram from this node is its own).
pub const FUZZ_RECEIVER_NODE: u32 = 2;
/// Payload blocks the harness receiver holds at most.
const MAX_PENDING: usize = 8;
/// Announcements remembered for the memory bound and the lock check (more than the
/// receiver's candidates, so an evicted candidate's share is still counted while it is freed).
const MAX_ANNOUNCES: usize = 16;
/// Deadlines a single tick walks through before it jumps to its end.
const MAX_WAKES_PER_TICK: usize = 2048;
/// Rounds of timers due at one instant before it counts as a timer storm.
const MAX_ROUNDS_PER_INSTANT: usize = 64;

/// What a run of [`fuzz_receiver`] came to (for tests that replay seeds).
#[derive(Debug, Clone, Default)]
pub struct ReceiverRun {
    /// Datagrams the receiver sent.
    pub transmits: u64,
    /// Blocks it handed out to be written.
    pub blocks: u64,
    /// How it ended, if it did.
    pub outcome: Option<Outcome>,
    /// Its counters at the end.
    pub stats: ReceiverStats,
    /// Peak heap growth, bytes (`None` without the counting allocator).
    pub heap_peak: Option<u64>,
}

struct Run {
    rx: Receiver,
    now: Instant,
    /// The announcement the receiver locked onto and the sender's node.
    locked: Option<(Announce, u32)>,
    /// Announcements it was handed (session, node, body), the newest [`MAX_ANNOUNCES`]: it
    /// locks onto one of them once that candidate's manifest verifies, and each candidate may
    /// hold memory sized by its own.
    announces: Vec<(u32, u32, Announce)>,
    jobs: Vec<DecodeJob>,
    store_due: Option<[u8; 32]>,
    buf: Vec<u8>,
    out: ReceiverRun,
}

/// Run a receiver on the script `data` and check its invariants (see the module doc).
pub fn fuzz_receiver(data: &[u8]) -> ReceiverRun {
    let heap = HeapScope::start();
    let cfg = ReceiverConfig {
        node: FUZZ_RECEIVER_NODE,
        seed: 1,
        max_pending_blocks: MAX_PENDING,
        report_tries: 4,
        ..ReceiverConfig::default()
    };
    let mut run = Run {
        rx: Receiver::new(cfg),
        now: Instant::ZERO,
        locked: None,
        announces: Vec::new(),
        jobs: Vec::new(),
        store_due: None,
        buf: Vec::with_capacity(2048),
        out: ReceiverRun::default(),
    };
    for step in Script::new(data) {
        run.step(step);
        run.settle();
    }
    run.out.stats = run.rx.stats().clone();
    let limit: u64 = run.announces.iter().map(|(_, _, a)| heap_limit(Some(*a), 0)).sum();
    heap.check(limit + heap_limit(None, data.len()), "receiver memory");
    run.out.heap_peak = heap.peak();
    run.out
}

/// The most heap a receiver may hold for a session announced as `a`, fed `input_len` bytes:
/// per block held in memory (payload blocks up to the slots, twice over counting those
/// waiting for the manifest, plus one being assembled of the manifest and of the hash list)
/// its `K * T` source bytes and as many again of repairs, twice over; the manifest and the
/// hash list four times over (assembly buffer, parsed form, the event, the driver's copy);
/// 256 bytes per block of all three objects (done flags, outstanding sets, written hashes);
/// and 64 bytes per input byte (covers heard, queued NAKs), over a fixed 1 MiB.
fn heap_limit(a: Option<Announce>, input_len: usize) -> u64 {
    let mut limit = (1 << 20) + 64 * input_len as u64;
    if let Some(a) = a {
        let block = a.layout().block_bytes() + 4096;
        let objects = [ObjectId::Manifest, ObjectId::Payload, ObjectId::Hashes];
        let blocks: u64 =
            objects.iter().map(|o| u64::from(a.object_layout(*o).block_count())).sum();
        let objects_len = u64::from(a.manifest_len) + hash_list_len(&a.layout());
        limit += (2 * MAX_PENDING as u64 + 2) * 4 * block + 4 * (objects_len + 2 * block);
        limit += 256 * blocks;
    }
    limit
}

impl Run {
    fn step(&mut self, step: Step) {
        match step {
            Step::Datagram(framing, mut bytes) => {
                match framing {
                    Framing::Raw => {}
                    Framing::Sealed => seal(&mut bytes, None),
                    Framing::Peer => {
                        let peer = self.locked.map(|(_, node)| node).zip(self.rx.session_id());
                        seal(&mut bytes, peer.map(|(node, session)| (session, node)));
                    }
                }
                let was_locked = self.rx.session_id().is_some();
                let from = SocketAddr::from(([198, 18, 0, 1], 7000));
                if let Ok((h, Packet::Announce(a))) = wire::parse(&bytes) {
                    let seen = (h.session, h.node, a);
                    if !self.announces.contains(&seen) {
                        if self.announces.len() == MAX_ANNOUNCES {
                            self.announces.remove(0);
                        }
                        self.announces.push(seen);
                    }
                }
                self.rx.handle_datagram(self.now, from, &bytes);
                if let (false, Some(id)) = (was_locked, self.rx.session_id()) {
                    // Locked onto a candidate: one announced (the newest of that session).
                    let a = self.announces.iter().rev().find(|(s, _, _)| *s == id);
                    match a {
                        Some(&(_, node, a)) => self.locked = Some((a, node)),
                        None => panic!("receiver locked onto session {id:08x}, never announced"),
                    }
                }
            }
            Step::Tick(n) => {
                let end = self.now + Duration::from_micros(100 * u64::from(n));
                for _ in 0..MAX_WAKES_PER_TICK {
                    match self.rx.poll_timeout() {
                        Some(t) if t <= end => self.fire(t.max(self.now)),
                        _ => break,
                    }
                }
                self.now = self.now.max(end);
                self.fire(self.now);
            }
            Step::Wake => {
                if let Some(t) = self.rx.poll_timeout() {
                    self.fire(t.max(self.now));
                }
            }
            Step::DecodeOne(i) => {
                if !self.jobs.is_empty() {
                    let job = self.jobs.remove(usize::from(i) % self.jobs.len());
                    self.rx.handle_decoded(self.now, job.run());
                }
            }
            Step::DecodeAll => {
                for job in std::mem::take(&mut self.jobs) {
                    self.rx.handle_decoded(self.now, job.run());
                    self.settle();
                }
            }
            Step::Store(ok) => {
                if let Some(root) = self.store_due.take() {
                    let result = if ok { Ok(root) } else { Err("fuzz: storage failed".into()) };
                    self.rx.handle_stored(self.now, result);
                }
            }
        }
    }

    /// Move the clock to `at` and fire what is due there, until nothing is.
    fn fire(&mut self, at: Instant) {
        self.now = at;
        for _ in 0..MAX_ROUNDS_PER_INSTANT {
            if self.rx.poll_timeout().is_none_or(|t| t > at) {
                return;
            }
            self.rx.handle_timeout(at);
            self.settle();
        }
        let due = self.rx.poll_timeout();
        assert!(due.is_none_or(|t| t > at), "timer storm: still due at {at:?} ({due:?})");
    }

    fn layout(&self, object: ObjectId) -> Layout {
        let (a, _) = self.locked.expect("events come only after locking onto a session");
        a.object_layout(object)
    }

    /// Drain events, then datagrams, checking each.
    fn settle(&mut self) {
        while let Some(ev) = self.rx.poll_event() {
            match ev {
                Event::Decode(job) => self.jobs.push(job),
                Event::Block { block, offset, data, .. } => {
                    let layout = self.layout(ObjectId::Payload);
                    assert_eq!(Some(offset), layout.block_offset(block), "block {block} offset");
                    assert_eq!(Some(data.len()), layout.block_len(block), "block {block} length");
                    self.out.blocks += 1;
                }
                Event::Manifest(m) => {
                    let layout = self.layout(ObjectId::Payload);
                    assert_eq!(m.layout().ok(), Some(layout), "manifest layout");
                }
                Event::Complete { bytes, hashes } => {
                    let layout = self.layout(ObjectId::Payload);
                    assert_eq!(bytes, layout.object_size(), "completed size");
                    assert_eq!(hashes.layout(), &layout, "completed hash list layout");
                    self.store_due = Some(hashes.root());
                }
                Event::Finished(o) => self.out.outcome = Some(o),
            }
        }
        let decoding = self.jobs.iter().filter(|j| j.object == ObjectId::Payload).count();
        assert!(decoding <= MAX_PENDING, "{decoding} payload blocks decoding, max {MAX_PENDING}");
        let mut sent = 0;
        while let Some(t) = self.rx.poll_transmit(self.now, &mut self.buf) {
            assert_eq!(t.size, self.buf.len(), "transmit size");
            let (h, p) = wire::parse(&self.buf).unwrap_or_else(|e| panic!("sent garbage: {e}"));
            assert_eq!(h.node, FUZZ_RECEIVER_NODE, "sent {p:?} as another node");
            match self.rx.session_id() {
                Some(id) => assert_eq!(h.session, id, "sent {p:?} in another session"),
                // A candidate (its manifest NAKs): a session that was announced.
                None => assert!(
                    self.announces.iter().any(|(s, _, _)| *s == h.session),
                    "sent {p:?} in a session never announced"
                ),
            }
            self.out.transmits += 1;
            sent += 1;
            assert!(sent <= 100_000, "poll_transmit never runs dry");
        }
    }
}
