//! The sender harness: a [`Sender`] of the corpus object ([`corpus::object`]) run until half
//! of its first pass is out, then driven by a [`Script`] the way the driver drives it: feedback
//! datagrams (NAKs, echoes, reports from any node) and clock steps, with its block requests
//! served from memory and everything it sends drained after every step. Decode and store steps
//! mean nothing to a sender and are skipped.
//!
//! Invariants checked (a panic is a finding):
//! - every datagram it sends parses and carries its session and node;
//! - every repair advertisement names a block of the announced objects and advertises at most
//!   that block's `K` plus 16 plus the repair margin (the most a NAK is allowed to queue: the
//!   advertisement says what is queued for the block);
//! - it counts every datagram handed to it at most once;
//! - no timer storm (as in the receiver harness);
//! - heap growth stays under 4 MiB plus 256 bytes per input byte (with
//!   [`CountingAlloc`](super::CountingAlloc) installed).

use super::corpus;
use super::script::{seal, Framing, Script, Step};
use super::HeapScope;
use crate::proto::sender::Sender;
use crate::proto::stats::SenderStats;
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{self, Announce, Need, Packet};
use crate::sim::serve::{serve_sender_events, MemSource, SenderLog};
use std::net::SocketAddr;
use std::sync::Arc;

const MAX_WAKES_PER_TICK: usize = 2048;
const MAX_ROUNDS_PER_INSTANT: usize = 64;
/// Wakes before the script starts (the first half-pass needs a few hundred).
const MAX_SETUP_WAKES: usize = 100_000;

/// What a run of [`fuzz_sender`] came to (for tests that replay seeds).
#[derive(Debug, Clone, Default)]
pub struct SenderRun {
    /// Datagrams the script handed to the sender.
    pub delivered: u64,
    /// Repair advertisements it sent after the script started.
    pub adverts: u64,
    /// Most symbols one advertisement announced for one block.
    pub max_advertised: u32,
    /// Its counters at the end.
    pub stats: SenderStats,
    /// Peak heap growth, bytes (`None` without the counting allocator).
    pub heap_peak: Option<u64>,
}

struct Run {
    tx: Sender,
    source: MemSource,
    log: SenderLog,
    announce: Option<Announce>,
    now: Instant,
    buf: Vec<u8>,
    margin: u16,
    out: SenderRun,
}

/// Run a mid-push sender on the script `data` and check its invariants (module doc).
pub fn fuzz_sender(data: &[u8]) -> SenderRun {
    let heap = HeapScope::start();
    let object = Arc::new(corpus::object());
    let cfg = corpus::sender_config();
    let margin = cfg.repair_margin;
    let tx = object.sender(cfg, Instant::ZERO).expect("the corpus object has a valid layout");
    let mut run = Run {
        tx,
        source: MemSource::new(object),
        log: SenderLog::default(),
        announce: None,
        now: Instant::ZERO,
        buf: Vec::with_capacity(2048),
        margin,
        out: SenderRun::default(),
    };
    run.settle();
    let half = run.tx.layout().symbol_count() / 2;
    for _ in 0..MAX_SETUP_WAKES {
        if run.tx.stats().data_packets >= half {
            break;
        }
        let Some(t) = run.tx.poll_timeout() else { break };
        run.fire(t.max(run.now));
    }
    assert!(run.tx.stats().data_packets >= half, "the sender never got half way");
    run.out.adverts = 0;
    run.out.max_advertised = 0;
    let before = run.tx.stats().clone();
    for step in Script::new(data) {
        run.step(step);
        run.settle();
    }
    let s = run.tx.stats();
    let counted = |s: &SenderStats| {
        s.naks_received
            + s.echoes_received
            + s.reports_received
            + s.dropped_malformed
            + s.dropped_foreign
    };
    let heard = counted(s) - counted(&before);
    assert!(
        heard <= run.out.delivered,
        "{heard} datagrams counted, {} delivered",
        run.out.delivered
    );
    run.out.stats = s.clone();
    heap.check((4 << 20) + 256 * data.len() as u64, "sender memory");
    run.out.heap_peak = heap.peak();
    run.out
}

impl Run {
    fn step(&mut self, step: Step) {
        match step {
            Step::Datagram(framing, mut bytes) => {
                let node =
                    bytes.get(12..16).map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap()));
                match framing {
                    Framing::Raw => {}
                    Framing::Sealed => seal(&mut bytes, None),
                    Framing::Peer => seal(&mut bytes, Some((corpus::SESSION, node))),
                }
                let from = SocketAddr::from(([198, 18, (node >> 8) as u8, node as u8], 7001));
                self.out.delivered += 1;
                self.tx.handle_datagram(self.now, from, &bytes);
            }
            Step::Tick(n) => {
                let end = self.now + Duration::from_micros(100 * u64::from(n));
                for _ in 0..MAX_WAKES_PER_TICK {
                    match self.tx.poll_timeout() {
                        Some(t) if t <= end => self.fire(t.max(self.now)),
                        _ => break,
                    }
                }
                self.now = self.now.max(end);
                self.fire(self.now);
            }
            Step::Wake => {
                if let Some(t) = self.tx.poll_timeout() {
                    self.fire(t.max(self.now));
                }
            }
            Step::DecodeOne(_) | Step::DecodeAll | Step::Store(_) => {}
        }
    }

    fn fire(&mut self, at: Instant) {
        self.now = at;
        for _ in 0..MAX_ROUNDS_PER_INSTANT {
            if self.tx.poll_timeout().is_none_or(|t| t > at) {
                return;
            }
            self.tx.handle_timeout(at);
            self.settle();
        }
        let due = self.tx.poll_timeout();
        assert!(due.is_none_or(|t| t > at), "timer storm: still due at {at:?} ({due:?})");
    }

    /// Serve events and drain datagrams until neither comes; returns whether anything did.
    fn settle(&mut self) -> bool {
        let mut any = false;
        for _ in 0..1000 {
            let served = serve_sender_events(&mut self.tx, self.now, &self.source, &mut self.log);
            let mut sent = false;
            for _ in 0..100_000 {
                let Some(t) = self.tx.poll_transmit(self.now, &mut self.buf) else { break };
                assert_eq!(t.size, self.buf.len(), "transmit size");
                self.check_sent();
                sent = true;
            }
            if !served && !sent {
                return any;
            }
            any = true;
        }
        panic!("the sender never settles");
    }

    fn check_sent(&mut self) {
        let (h, p) = wire::parse(&self.buf).unwrap_or_else(|e| panic!("sent garbage: {e}"));
        assert_eq!((h.session, h.node), (corpus::SESSION, corpus::SENDER_NODE), "sent {p:?}");
        match p {
            Packet::Announce(a) => self.announce = Some(a),
            Packet::RepairAdvert(list) => {
                let a = self.announce.expect("an announcement goes out before any repair");
                self.out.adverts += 1;
                for n in &list.needs {
                    let max = max_queued(&a, n, self.margin);
                    let Some(max) = max else { panic!("advertised {n:?}: no such block") };
                    let count = u32::from(n.count);
                    assert!(count <= max, "advertised {count} repairs of {n:?}, max {max}");
                    self.out.max_advertised = self.out.max_advertised.max(count);
                }
            }
            _ => {}
        }
    }
}

/// The most repairs a sender may queue for the block `need` names (`None`: no such block in
/// the objects `a` announces): the block's `K`, plus the 16 failed decodes a NAK may add, plus
/// the margin.
fn max_queued(a: &Announce, need: &Need, margin: u16) -> Option<u32> {
    let k = a.object_layout(need.object).source_symbols(need.block)?;
    Some(u32::from(k) + 16 + u32::from(margin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::ObjectId;

    #[test]
    fn the_queue_bound_is_per_block_and_object() {
        let a = Announce {
            object_size: 1000,
            symbol_size: 100,
            block_symbols: 4,
            manifest_len: 50,
            manifest_hash: [1; 32],
            hashes_len: 0,
            hashes_hash: [0; 32],
            rate_bps: 1,
            grtt_us: 1,
        };
        let need = |object, block| Need { object, block, count: 1 };
        // Payload: blocks of 4 symbols, the last (block 2) of 2.
        assert_eq!(max_queued(&a, &need(ObjectId::Payload, 0), 1), Some(4 + 16 + 1));
        assert_eq!(max_queued(&a, &need(ObjectId::Payload, 2), 3), Some(2 + 16 + 3));
        assert_eq!(max_queued(&a, &need(ObjectId::Payload, 3), 1), None, "past the last block");
        assert_eq!(max_queued(&a, &need(ObjectId::Manifest, 0), 0), Some(1 + 16));
        assert_eq!(max_queued(&a, &need(ObjectId::Manifest, 1), 0), None);
        // Three blocks: 96 bytes of hash list in one block of one symbol (T = 100).
        assert_eq!(max_queued(&a, &need(ObjectId::Hashes, 0), 0), Some(1 + 16));
    }
}
