//! The topology's event loop: nodes with one or two ports, segments that fan a datagram out to
//! the ports on them, a heap of deliveries and wake-ups in time order (ties in the order
//! scheduled), and the counters of [`TopologyResult`].

use super::relay::Relay;
use super::*;
use crate::proto::receiver::Event as RxEvent;
use crate::proto::receiver::Outcome;
use crate::proto::repairer::RepairerEvent;
use crate::proto::time::Instant;
use crate::proto::wire::{self, Packet, RepairerPacket};
use crate::proto::Dest;
use crate::sim::consume::Decoder;
use crate::sim::serve::SenderLog;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// Which side of a node a port is: where its receiver listens, or where its sender sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Rx,
    Tx,
}

#[derive(Debug, Clone)]
pub(super) struct Port {
    node: usize,
    side: Side,
    segment: usize,
    addr: SocketAddr,
    loss: f64,
    latency: Duration,
}

/// What a receiver wrote, checked against the object: the blocks themselves only where they
/// are read back (a repairer, the relay).
pub(super) struct Disk {
    object: Arc<Object>,
    keep: bool,
    pub(super) blocks: HashMap<u32, Vec<u8>>,
    right: Vec<bool>,
    pub(super) stored: Option<(Instant, bool)>,
    pub(super) outcome: Option<Outcome>,
}

impl Disk {
    pub(super) fn new(object: &Arc<Object>, keep: bool) -> Self {
        let n = object.layout().block_count() as usize;
        Disk {
            object: Arc::clone(object),
            keep,
            blocks: HashMap::new(),
            right: vec![false; n],
            stored: None,
            outcome: None,
        }
    }

    pub(super) fn write(&mut self, block: u32, data: &[u8]) {
        if let Some(r) = self.right.get_mut(block as usize) {
            *r = self.object.block(block) == Some(data);
        }
        if self.keep {
            self.blocks.insert(block, data.to_vec());
        }
    }

    /// The copy is complete and right, and `hashes` is the object's list.
    pub(super) fn verify(
        &self,
        hashes: &crate::proto::manifest::HashList,
    ) -> Result<[u8; 32], String> {
        let exact = self.right.iter().all(|r| *r);
        if exact && hashes.as_slice() == self.object.hash_list().as_slice() {
            Ok(self.object.hash())
        } else {
            Err("copy does not verify".into())
        }
    }

    pub(super) fn is_exact(&self) -> bool {
        self.right.iter().all(|r| *r)
    }
}

/// A receiver, with a repairer beside it or not.
pub(super) struct RxNode {
    pub(super) rx: Receiver,
    pub(super) sink: Disk,
    pub(super) repairer: Option<Repairer>,
}

pub(super) enum NodeKind {
    Origin { tx: Box<Sender>, source: MemSource, log: SenderLog },
    Rx(Box<RxNode>),
    Relay(Box<Relay>),
}

struct NodeSt {
    kind: NodeKind,
    /// Port of each side.
    rx_port: Option<usize>,
    tx_port: Option<usize>,
    wake: Option<Instant>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Deliver { port: usize, from: usize, data: Arc<Vec<u8>> },
    Wake { node: usize },
}

pub(super) struct Net {
    now: Instant,
    seq: u64,
    heap: BinaryHeap<Reverse<(Instant, u64, Ev)>>,
    rng: ChaCha8Rng,
    nodes: Vec<NodeSt>,
    ports: Vec<Port>,
    segments: Vec<Vec<usize>>,
    decoder: Decoder,
    buf: Vec<u8>,
    events: u64,
    limit: Instant,
    event_limit: u64,
    trace: blake3::Hasher,
    sent: HashSet<(u32, u8, u32, u32)>,
    res: TopologyResult,
    /// Receivers counted in the result (not the relay).
    counted: Vec<usize>,
    /// The object's layout.
    layout: crate::proto::layout::Layout,
    /// Nodes that are local repairers.
    repairer_nodes: Vec<usize>,
    /// Per (repairer node, block), the origin's source symbols of the block lost on the way.
    repairer_lost: HashMap<(usize, u32), u64>,
}

impl Net {
    pub(super) fn build(cfg: &TopologyConfig) -> Net {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let bytes: Vec<u8> = (0..cfg.object_size).map(|_| rng.gen()).collect();
        let object =
            Arc::new(Object::new(bytes, cfg.symbol_size, cfg.block_symbols).expect("valid layout"));
        let down = cfg.downstream.clone();
        let via_relay = down.as_ref().is_some_and(|d| d.relay);
        let down_n = down.as_ref().map_or(0, |d| d.receivers);
        let mut scfg = cfg.sender.clone();
        scfg.node = 1;
        scfg.session = 0x5eed_0001;
        // The origin waits for everyone: its own segment, the relay, and what the relay reports.
        let relays = if via_relay { cfg.relays.max(1) } else { 0 };
        scfg.expected_receivers = Some((cfg.receivers + down_n + relays) as u32);
        let origin = object.sender(scfg, Instant::ZERO).expect("valid manifest");
        let mut net = Net {
            now: Instant::ZERO,
            seq: 0,
            heap: BinaryHeap::new(),
            rng,
            nodes: Vec::new(),
            ports: Vec::new(),
            segments: vec![Vec::new(), Vec::new()],
            decoder: Decoder::new(cfg.fec, Arc::clone(&object)),
            buf: Vec::with_capacity(2048),
            events: 0,
            limit: Instant::ZERO + cfg.time_limit,
            event_limit: cfg.event_limit,
            trace: blake3::Hasher::new(),
            sent: HashSet::new(),
            res: TopologyResult::default(),
            counted: Vec::new(),
            layout: *object.layout(),
            repairer_nodes: Vec::new(),
            repairer_lost: HashMap::new(),
        };
        let lat = cfg.port_latency;
        let kind = NodeKind::Origin {
            tx: Box::new(origin),
            source: MemSource::new(Arc::clone(&object)),
            log: SenderLog::default(),
        };
        let o = net.add_node(kind);
        net.add_port(o, Side::Tx, 0, 0.0, lat);
        let rx_cfg = |node: u32| ReceiverConfig {
            node,
            seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(node)),
            ..cfg.receiver.clone()
        };
        let rx_node = |node: u32, repairer: Option<Repairer>| {
            // A repairer's own receiver NAKs first (see `proto::repairer::receiver_config`).
            let rc = match repairer {
                Some(_) => crate::proto::repairer::receiver_config(rx_cfg(node)),
                None => rx_cfg(node),
            };
            NodeKind::Rx(Box::new(RxNode {
                rx: Receiver::new(rc),
                sink: Disk::new(&object, repairer.is_some()),
                repairer,
            }))
        };
        for i in 0..cfg.receivers {
            let node = 100 + i as u32;
            let rep = (i < cfg.repairers).then(|| {
                let rc = RepairerConfig {
                    node,
                    seed: cfg.seed ^ u64::from(node),
                    ..cfg.repairer.clone()
                };
                Repairer::new(rc, Instant::ZERO)
            });
            let is_rep = rep.is_some();
            let loss = if is_rep { cfg.repairer_loss.unwrap_or(cfg.loss) } else { cfg.loss };
            let n = net.add_node(rx_node(node, rep));
            if is_rep {
                net.repairer_nodes.push(n);
            }
            net.add_port(n, Side::Rx, 0, loss, lat);
            net.counted.push(n);
        }
        if let Some(d) = down {
            let relays = if d.relay { cfg.relays.max(1) } else { 0 };
            for hop in 0..relays {
                // Relay `hop` (node 2 + 2 hop, its sender 3 + 2 hop) from segment `hop` to
                // `hop + 1`, the next relay being one of its receivers.
                let mut dcfg = cfg.sender.clone();
                dcfg.node = 3 + 2 * hop as u32;
                dcfg.session = 0x5eed_0002 + hop as u32;
                let next = usize::from(hop + 1 < relays);
                dcfg.expected_receivers = Some((d.receivers + next) as u32);
                let rx = rx_cfg(2 + 2 * hop as u32);
                let relay = Relay::new(rx, Disk::new(&object, true), dcfg);
                let r = net.add_node(NodeKind::Relay(Box::new(relay)));
                if net.segments.len() < hop + 2 {
                    net.segments.push(Vec::new());
                }
                net.add_port(r, Side::Rx, hop, if hop == 0 { cfg.loss } else { 0.0 }, lat);
                net.add_port(r, Side::Tx, hop + 1, 0.0, lat);
            }
            for i in 0..d.receivers {
                let n = net.add_node(rx_node(10_000 + i as u32, None));
                // Without a relay: on the origin's segment, one hop further and lossy.
                let (segment, latency) = if d.relay { (relays, lat) } else { (0, lat * 3) };
                net.add_port(n, Side::Rx, segment, d.loss, latency);
                net.counted.push(n);
            }
        }
        net.res.receivers = net.counted.len();
        net
    }

    fn add_node(&mut self, kind: NodeKind) -> usize {
        self.nodes.push(NodeSt { kind, rx_port: None, tx_port: None, wake: None });
        self.nodes.len() - 1
    }

    fn add_port(&mut self, node: usize, side: Side, segment: usize, loss: f64, latency: Duration) {
        let i = self.ports.len();
        let addr = SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], 7000));
        self.ports.push(Port { node, side, segment, addr, loss, latency });
        self.segments[segment].push(i);
        match side {
            Side::Rx => self.nodes[node].rx_port = Some(i),
            Side::Tx => self.nodes[node].tx_port = Some(i),
        }
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, ev)));
    }

    pub(super) fn run(mut self) -> TopologyResult {
        for n in 0..self.nodes.len() {
            self.service(n);
        }
        while let Some(Reverse((at, _, ev))) = self.heap.pop() {
            if at > self.limit || self.events >= self.event_limit || self.done() {
                break;
            }
            self.now = at;
            self.events += 1;
            match ev {
                Ev::Deliver { port, from, data } => {
                    let n = self.ports[port].node;
                    let from_addr = self.ports[from].addr;
                    self.trace.update(&at.as_micros().to_le_bytes());
                    self.trace.update(&(port as u32, from as u32, data.len() as u32).encode());
                    let now = self.now;
                    match (&mut self.nodes[n].kind, self.ports[port].side) {
                        (NodeKind::Origin { tx, .. }, _) => {
                            tx.handle_datagram(now, from_addr, &data)
                        }
                        (NodeKind::Rx(r), _) => {
                            r.rx.handle_datagram(now, from_addr, &data);
                            if let Some(rep) = &mut r.repairer {
                                rep.handle_datagram(now, from_addr, &data);
                            }
                        }
                        (NodeKind::Relay(r), Side::Rx) => r.handle_upstream(now, from_addr, &data),
                        (NodeKind::Relay(r), Side::Tx) => {
                            r.handle_downstream(now, from_addr, &data)
                        }
                    }
                    self.service(n);
                }
                Ev::Wake { node } => {
                    if self.nodes[node].wake != Some(at) {
                        continue; // superseded
                    }
                    self.nodes[node].wake = None;
                    let now = self.now;
                    match &mut self.nodes[node].kind {
                        NodeKind::Origin { tx, .. } => tx.handle_timeout(now),
                        NodeKind::Rx(r) => {
                            r.rx.handle_timeout(now);
                            if let Some(rep) = &mut r.repairer {
                                rep.handle_timeout(now);
                            }
                        }
                        NodeKind::Relay(r) => r.handle_timeout(now),
                    }
                    self.service(node);
                }
            }
        }
        self.finish()
    }

    fn done(&self) -> bool {
        let origin_done = matches!(&self.nodes[0].kind, NodeKind::Origin { log, .. } if log.finished_at.is_some());
        origin_done
            && self.nodes.iter().all(|n| match &n.kind {
                NodeKind::Rx(r) => r.sink.outcome.is_some(),
                NodeKind::Relay(r) => r.is_done(),
                NodeKind::Origin { .. } => true,
            })
    }

    /// Act on what node `n` has to do now: its events, its datagrams, its next wake-up.
    fn service(&mut self, n: usize) {
        let now = self.now;
        let mut out: Vec<(Side, Dest, Vec<u8>)> = Vec::new();
        let decoder = self.decoder.clone();
        let buf = &mut self.buf;
        let next = match &mut self.nodes[n].kind {
            NodeKind::Origin { tx, source, log } => {
                loop {
                    serve_sender_events(tx, now, source, log);
                    let Some(t) = tx.poll_transmit(now, buf) else { break };
                    out.push((Side::Tx, t.dest, buf.clone()));
                }
                tx.poll_timeout()
            }
            NodeKind::Rx(r) => {
                loop {
                    drive_rx(r, now, &decoder);
                    if let Some(t) = r.rx.poll_transmit(now, buf) {
                        out.push((Side::Rx, t.dest, buf.clone()));
                        continue;
                    }
                    let Some(rep) = &mut r.repairer else { break };
                    match rep.poll_transmit(now, buf) {
                        Some(t) => out.push((Side::Rx, t.dest, buf.clone())),
                        None => break,
                    }
                }
                let rep = r.repairer.as_ref().and_then(Repairer::poll_timeout);
                [r.rx.poll_timeout(), rep].into_iter().flatten().min()
            }
            NodeKind::Relay(r) => r.service(now, &decoder, buf, &mut out),
        };
        for (side, dest, data) in out {
            self.send(n, side, dest, data);
        }
        if let Some(t) = next {
            let t = t.max(now);
            if self.nodes[n].wake.is_none_or(|w| t < w || w < now) {
                self.nodes[n].wake = Some(t);
                self.push(t, Ev::Wake { node: n });
            }
        }
    }

    /// Put a datagram of node `n`'s `side` on its segment.
    fn send(&mut self, n: usize, side: Side, dest: Dest, data: Vec<u8>) {
        let Some(from) = (match side {
            Side::Rx => self.nodes[n].rx_port,
            Side::Tx => self.nodes[n].tx_port,
        }) else {
            return;
        };
        self.count(n, &data);
        // The origin's source symbols (block, whether the repairers' floor counts them).
        let source = match (n, wire::parse(&data)) {
            (0, Ok((_, Packet::Data(d)))) if d.object == wire::ObjectId::Payload => self
                .layout
                .source_symbols(d.block)
                .filter(|k| d.esi < u32::from(*k))
                .map(|_| d.block),
            _ => None,
        };
        let src = self.ports[from].clone();
        if src.loss > 0.0 && self.rng.gen::<f64>() < src.loss {
            return; // lost on the sender's own link: for everyone
        }
        let data = Arc::new(data);
        for i in 0..self.segments[src.segment].len() {
            let p = self.segments[src.segment][i];
            let dst = &self.ports[p];
            let wanted = p != from
                && match dest {
                    Dest::Receivers => dst.side == Side::Rx,
                    Dest::Sender => dst.side == Side::Tx,
                    Dest::All => true,
                };
            if !wanted {
                continue;
            }
            let (loss, at) = (dst.loss, self.now + src.latency + dst.latency);
            if loss > 0.0 && self.rng.gen::<f64>() < loss {
                let node = dst.node;
                if let Some(block) = source.filter(|_| self.repairer_nodes.contains(&node)) {
                    *self.repairer_lost.entry((node, block)).or_insert(0) += 1;
                }
                continue;
            }
            self.push(at, Ev::Deliver { port: p, from, data: Arc::clone(&data) });
        }
    }

    /// Count what node `n` sends: repairs, repairer symbols, duplicates.
    fn count(&mut self, n: usize, data: &[u8]) {
        let Ok((h, p)) = wire::parse(data) else { return };
        let is_origin = n == 0;
        let is_relay =
            matches!(&self.nodes[n].kind, NodeKind::Relay(r) if r.session() == h.session);
        if is_origin {
            self.res.sender_datagrams += 1;
        }
        if is_relay {
            self.res.relay_datagrams += 1;
        }
        let symbol = match p {
            Packet::Data(d) => Some((d.object, d.block, d.esi)),
            Packet::Repairer(RepairerPacket::Symbol(s)) => {
                self.res.repairer_datagrams += 1;
                Some((s.object, s.block, s.esi))
            }
            Packet::Repairer(RepairerPacket::Advert(_)) => {
                self.res.repairer_adverts += 1;
                None
            }
            _ => None,
        };
        if let Some((object, block, esi)) = symbol {
            if !self.sent.insert((h.session, object as u8, block, esi)) {
                self.res.duplicate_esis += 1;
            }
        }
    }

    fn finish(mut self) -> TopologyResult {
        let mut last = Duration::ZERO;
        for &n in &self.counted {
            if let NodeKind::Rx(r) = &self.nodes[n].kind {
                if let Some((at, true)) = r.sink.stored {
                    self.res.complete += 1;
                    last = last.max(at - Instant::ZERO);
                }
            }
        }
        if let NodeKind::Origin { tx, .. } = &self.nodes[0].kind {
            let st = tx.stats();
            self.res.sender_repair_datagrams = st.repair_packets;
            self.res.sender_proactive_datagrams = st.proactive_repair_packets;
            self.res.sender_naks = st.naks_received;
            let rs = tx.repairer_stats();
            self.res.needs_covered = rs.needs_covered;
            self.res.blocks_deferred = rs.blocks_deferred;
            self.res.needs_deferred = rs.needs_deferred;
            self.res.origin_reports = tx
                .receivers()
                .values()
                .filter(|r| r.report.status == crate::proto::wire::ReportStatus::Complete)
                .count();
            for r in tx.receivers().values() {
                if let Some(v) = tx.roster().via(r.node) {
                    self.res.via.insert(r.node, v.node);
                }
            }
        }
        if !self.repairer_nodes.is_empty() {
            self.res.repair_floor = (0..self.layout.block_count())
                .map(|b| {
                    let lost = |r: &usize| self.repairer_lost.get(&(*r, b)).copied().unwrap_or(0);
                    self.repairer_nodes.iter().map(lost).min().unwrap_or(0)
                })
                .sum();
        }
        self.res.seconds = last.as_secs_f64();
        self.res.events = self.events;
        self.res.trace = *self.trace.finalize().as_bytes();
        self.res
    }
}

/// The bytes of a trace entry.
trait Encode {
    fn encode(&self) -> [u8; 12];
}

impl Encode for (u32, u32, u32) {
    fn encode(&self) -> [u8; 12] {
        let mut b = [0; 12];
        b[..4].copy_from_slice(&self.0.to_le_bytes());
        b[4..8].copy_from_slice(&self.1.to_le_bytes());
        b[8..].copy_from_slice(&self.2.to_le_bytes());
        b
    }
}

/// Drain a receiver's events (as [`drive_receiver_events`](crate::sim::drive_receiver_events)
/// does), handing each written block to its repairer and its disk, and the repairer's
/// requests back from the disk.
pub(super) fn drive_rx(r: &mut RxNode, now: Instant, decoder: &Decoder) {
    while let Some(ev) = r.rx.poll_event() {
        match ev {
            RxEvent::Manifest(_) => {}
            RxEvent::Decode(job) => r.rx.handle_decoded(now, decoder.decode(job)),
            RxEvent::Block { block, data, .. } => {
                r.sink.write(block, &data);
                if let Some(rep) = &mut r.repairer {
                    rep.handle_block(now, block, data);
                }
            }
            RxEvent::Complete { hashes, .. } => {
                r.sink.stored = Some((now, r.sink.is_exact()));
                r.rx.handle_stored(now, r.sink.verify(&hashes));
            }
            RxEvent::Finished(outcome) => r.sink.outcome = Some(outcome),
        }
    }
    let Some(rep) = &mut r.repairer else { return };
    if let Some(view) = r.rx.repair_view() {
        rep.set_view(now, view);
    }
    if let Some(list) = r.rx.repair_hashes().filter(|_| !rep.has_hashes()) {
        rep.handle_hashes(now, list);
    }
    while let Some(RepairerEvent::NeedBlock { block, .. }) = rep.poll_event() {
        match r.sink.blocks.get(&block) {
            Some(d) => rep.handle_block(now, block, d.clone()),
            None => rep.handle_block_failed(block),
        }
    }
}
