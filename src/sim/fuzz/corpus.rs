//! The seed corpus: valid datagrams of every packet type and valid scripts, taken from a real
//! push of a small object in the [`Harness`] (two receivers, 15 % loss, so NAKs, repairs,
//! echoes, reports and acknowledgements all occur), plus hand-made edge cases (largest lists,
//! empty and zero-length forms, the packet types a clean push does not produce). Deterministic:
//! the same bytes every time. `tests/fuzz.rs` writes them to `fuzz/corpus/<target>/` when asked
//! (`MCAST_FUZZ_WRITE_CORPUS=1`) and otherwise checks that every seed is committed there.

use super::layout_prefix;
use super::script::{self, Framing, Step};
use crate::proto::manifest::{Entry, EntryKind, Manifest, Mtime, RelPath};
use crate::proto::receiver::{Receiver, ReceiverConfig};
use crate::proto::sender::SenderConfig;
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{self, *};
use crate::proto::Dest;
use crate::sim::{Datagram, FecModel, Harness, Link, LossModel, MemSource, Network, Node, Object};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Session id of the corpus push (and of the sender harness).
pub const SESSION: u32 = 0x5eed_0001;
/// Node id of the corpus push's sender.
pub const SENDER_NODE: u32 = 1;
/// Symbol size of the corpus object.
pub const SYMBOL_SIZE: u16 = 64;
/// Symbols per block of the corpus object.
pub const BLOCK_SYMBOLS: u16 = 16;

/// One seed: the target it is for, a file name derived from its content, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// One of [`TARGETS`](super::TARGETS).
    pub target: &'static str,
    /// `seed-` and the first 8 bytes of its BLAKE3, in hex.
    pub name: String,
    /// Its content.
    pub bytes: Vec<u8>,
}

impl Seed {
    fn new(target: &'static str, bytes: Vec<u8>) -> Self {
        let hash = blake3::hash(&bytes);
        let hex: String = hash.as_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect();
        Seed { target, name: format!("seed-{hex}"), bytes }
    }
}

/// The object of the corpus push and of the sender harness: 6000 seeded random bytes in six
/// blocks of 16 symbols of 64 bytes (the last one short).
pub fn object() -> Object {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let bytes: Vec<u8> = (0..6000).map(|_| rng.gen()).collect();
    Object::new(bytes, SYMBOL_SIZE, BLOCK_SYMBOLS).expect("a valid layout")
}

/// The sender settings of the corpus push and of the sender harness: 2 Mbit/s (so a pass
/// takes tens of milliseconds), waiting for two receivers, proactive repair capped at a
/// quarter of a block (the six blocks are all end game, whose parity would otherwise leave
/// the push without the NAKs the seeds must carry).
pub fn sender_config() -> SenderConfig {
    SenderConfig {
        session: SESSION,
        node: SENDER_NODE,
        rate_bps: 2_000_000,
        burst_bytes: 4096,
        expected_receivers: Some(2),
        linger: Duration::from_millis(200),
        max_parity: 0.25,
        ..SenderConfig::default()
    }
}

/// Every datagram of the corpus push, as sent (before loss), in order.
pub fn push_trace() -> Vec<Datagram> {
    let object = Arc::new(object());
    let sender = object.sender(sender_config(), Instant::ZERO).expect("a valid manifest");
    let net = Network {
        latency: Duration::from_micros(300),
        loss: LossModel::Independent(0.15),
        ..Network::default()
    };
    let source = MemSource::new(Arc::clone(&object));
    let mut h = Harness::new(net, sender, source, FecModel::Real, ChaCha8Rng::seed_from_u64(5));
    for i in 0..2u32 {
        let cfg = ReceiverConfig {
            node: super::FUZZ_RECEIVER_NODE + i,
            seed: 21 + u64::from(i),
            ..ReceiverConfig::default()
        };
        h.add_receiver(Receiver::new(cfg), Link::default());
    }
    let mut trace = Vec::new();
    h.run_with(Instant::ZERO + Duration::from_secs(20), &mut |d| {
        trace.push(d.clone());
        true
    });
    trace
}

/// Every seed, for every target.
pub fn seeds() -> Vec<Seed> {
    let trace = push_trace();
    let mut out = Vec::new();
    out.extend(wire_seeds(&trace).into_iter().map(|b| Seed::new("wire_parse", b)));
    out.extend(receiver_seeds(&trace).into_iter().map(|b| Seed::new("receiver_datagrams", b)));
    out.extend(sender_seeds(&trace).into_iter().map(|b| Seed::new("sender_datagrams", b)));
    out.extend(manifest_seeds().into_iter().map(|b| Seed::new("manifest_decode", b)));
    out.extend(hash_list_seeds().into_iter().map(|b| Seed::new("hash_list", b)));
    out
}

fn emit(node: u32, packet: &Packet<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    wire::emit(&Header { flags: 0, session: SESSION, node }, packet, &mut buf);
    buf
}

/// The first datagram of each packet type the push produced (two of data: a source symbol and
/// a repair), then hand-made edge cases of every type.
fn wire_seeds(trace: &[Datagram]) -> Vec<Vec<u8>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for d in trace {
        let Ok((_, p)) = wire::parse(&d.data) else { continue };
        let key = match &p {
            Packet::Data(data) => (p.kind() as u8, data.esi >= u32::from(BLOCK_SYMBOLS)),
            _ => (p.kind() as u8, false),
        };
        if seen.insert(key) {
            out.push(d.data.clone());
        }
    }
    let need = |i: u32| Need { object: ObjectId::Payload, block: i, count: u16::MAX };
    let a = Announce {
        object_size: u64::from(u32::MAX),
        symbol_size: 8900,
        block_symbols: 8192,
        manifest_len: MAX_MANIFEST_LEN,
        manifest_hash: [0xab; 32],
        hashes_len: 0,
        hashes_hash: [0; 32],
        rate_bps: u64::MAX,
        grtt_us: u32::MAX,
    };
    let edge = [
        Packet::Announce(a),
        Packet::Data(Data {
            object: ObjectId::Hashes,
            block: 0,
            esi: MAX_ESI,
            seq: 0,
            symbol: &[0; 16],
        }),
        Packet::Nak(NeedList {
            seq: u32::MAX,
            loss_ppm: 1,
            needs: (0..MAX_NEEDS as u32).map(need).collect(),
        }),
        Packet::RepairAdvert(NeedList { seq: 0, loss_ppm: 0, needs: vec![need(u32::MAX)] }),
        Packet::ReportAck(ReportAck { nodes: (0..MAX_ACK_NODES as u32).collect() }),
        Packet::Squelch(Squelch {
            reason: SquelchReason::Straggler,
            object: ObjectId::Payload,
            block: 0,
            nodes: vec![2],
        }),
        Packet::Squelch(Squelch {
            reason: SquelchReason::Unavailable,
            object: ObjectId::Payload,
            block: 3,
            nodes: vec![],
        }),
        Packet::Report(Report {
            status: ReportStatus::Failed,
            bytes: 0,
            object_hash: [0; 32],
            naks_sent: 0,
            naks_suppressed: 0,
            elapsed_ms: 0,
            reason: "x".repeat(MAX_REASON),
        }),
        Packet::Abort(Abort::new(AbortReason::SourceError, &"y".repeat(MAX_ABORT_TEXT))),
        Packet::Hello(Hello::Join {
            host: HostName::new(&"h".repeat(MAX_HOST_NAME)).expect("valid"),
        }),
        Packet::Hello(Hello::Welcome { nodes: (0..MAX_ACK_NODES as u32).collect() }),
    ];
    out.extend(edge.iter().map(|p| emit(2, p)));
    // Framing failures: too short, and a flush with a bad checksum.
    out.push(b"MCST\x01".to_vec());
    let mut bad = emit(SENDER_NODE, &Packet::Flush(Flush { seq: 9 }));
    *bad.last_mut().expect("not empty") ^= 1;
    out.push(bad);
    out
}

/// The time between two trace datagrams as ticks of 100 µs (at most 65535).
fn ticks(from: Instant, to: Instant) -> u16 {
    let us = to.saturating_duration_since(from).as_micros();
    u16::try_from(us / 100).unwrap_or(u16::MAX)
}

/// What receiver 0 heard of the push (everything but its own datagrams, less one source symbol
/// in seventeen, at most one a block), as a script that
/// decodes and stores as soon as it can: replayed, it completes the object. Then the same
/// with a storage failure, and its first quarter (a push cut short).
fn receiver_seeds(trace: &[Datagram]) -> Vec<Vec<u8>> {
    // Every seventeenth source symbol is lost, so that blocks need repair symbols to decode
    // (each gets at least one, however few the real receivers asked for).
    let mut sources = 0;
    let heard: Vec<&Datagram> = trace
        .iter()
        .filter(|d| d.from != Node::Receiver(0) && d.dest != Dest::Sender)
        .filter(|d| match wire::parse(&d.data) {
            Ok((_, Packet::Data(data))) if data.esi < u32::from(BLOCK_SYMBOLS) => {
                sources += 1;
                sources % 17 != 0
            }
            _ => true,
        })
        .collect();
    let script = |store_ok: bool| {
        let mut steps = Vec::new();
        let mut at = Instant::ZERO;
        for d in &heard {
            steps.push(Step::Tick(ticks(at, d.at)));
            at = d.at;
            steps.push(Step::Datagram(Framing::Raw, d.data.clone()));
            steps.push(Step::DecodeAll);
            steps.push(Step::Store(store_ok));
        }
        steps.extend([Step::Tick(10_000), Step::Wake, Step::Tick(10_000)]);
        steps
    };
    let full = script(true);
    let quarter = script::encode(&full[..full.len() / 4]);
    vec![script::encode(&full), script::encode(&script(false)), quarter]
}

/// The feedback the sender heard in the push (NAKs, echoes, reports), as a script with the
/// push's timing, then the same with every datagram re-sealed as a peer's (the harness fixes
/// session and checksum) and a NAK storm of the largest needs.
fn sender_seeds(trace: &[Datagram]) -> Vec<Vec<u8>> {
    let mut steps = Vec::new();
    let mut at = None;
    for d in trace.iter().filter(|d| d.from != Node::Sender) {
        steps.push(Step::Tick(at.map_or(0, |a| ticks(a, d.at))));
        at = Some(d.at);
        steps.push(Step::Datagram(Framing::Raw, d.data.clone()));
    }
    let sealed: Vec<Step> = steps
        .iter()
        .map(|s| match s {
            Step::Datagram(_, b) => Step::Datagram(Framing::Peer, b.clone()),
            other => other.clone(),
        })
        .collect();
    let mut storm = Vec::new();
    for round in 0..8u32 {
        let needs = (0..8)
            .map(|b| Need { object: ObjectId::Payload, block: b, count: u16::MAX })
            .chain([Need { object: ObjectId::Manifest, block: 0, count: 1 }])
            .collect();
        let nak = Packet::Nak(NeedList { seq: round, loss_ppm: 500_000, needs });
        storm.push(Step::Datagram(Framing::Raw, emit(10 + round, &nak)));
        storm.push(Step::Tick(20));
    }
    storm.push(Step::Wake);
    vec![script::encode(&steps), script::encode(&sealed), script::encode(&storm)]
}

/// The corpus object's manifest, a tree manifest with every entry kind, and a manifest whose
/// layout disagrees with its prefix.
fn manifest_seeds() -> Vec<Vec<u8>> {
    let o = object();
    let l = o.layout();
    let prefix = layout_prefix(l.object_size(), l.symbol_size(), l.block_symbols());
    let single = [prefix.clone(), o.manifest_bytes().0.to_vec()].concat();
    let path = |p: &str| RelPath::new(p).expect("a valid path");
    let mtime = Mtime { secs: 1_700_000_000, nanos: 999_999_999 };
    let entries = vec![
        Entry::new(path("bin"), EntryKind::Dir { mode: Some(0o755) }).with_mtime(mtime),
        Entry::new(path("bin/app"), EntryKind::File { offset: 0, len: 100, mode: Some(0o755) })
            .with_mtime(mtime),
        Entry::new(path("etc/app.conf"), EntryKind::File { offset: 100, len: 50, mode: None }),
        Entry::new(path("current"), EntryKind::Symlink { target: "bin/app".into() })
            .with_mtime(Mtime { secs: -1, nanos: 0 }),
        Entry::new(path("empty"), EntryKind::Dir { mode: None }),
    ];
    let tree = Manifest::new(entries, 150, 64, 16).expect("a valid tree manifest");
    let tree = [layout_prefix(150, 64, 16), tree.encode()].concat();
    let mismatched =
        [layout_prefix(l.object_size() + 1, 64, 16), o.manifest_bytes().0.to_vec()].concat();
    vec![single, tree, mismatched]
}

/// The corpus object's hash list, the empty list of an empty object, and a list one hash
/// short.
fn hash_list_seeds() -> Vec<Vec<u8>> {
    let o = object();
    let l = o.layout();
    let prefix = layout_prefix(l.object_size(), l.symbol_size(), l.block_symbols());
    let list = o.hash_list_bytes().0.to_vec();
    let short = [prefix.clone(), list[..list.len() - 32].to_vec()].concat();
    vec![[prefix, list].concat(), layout_prefix(0, 64, 16), short]
}
