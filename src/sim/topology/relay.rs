//! The simulator's relay: a [`Receiver`] on the origin's segment and, once the manifest has
//! arrived, a [`Sender`] of its own session on the downstream segment. The sender is served from
//! what the receiver wrote (a block not received yet waits), so it streams what it holds and
//! answers downstream NAKs from its buffer, while the receiver NAKs upstream only for what it
//! lacks. Downstream completion reports are forwarded to the origin as the downstream
//! receiver's own join and report, sent from the relay's address (so the origin lists each
//! host once, with the relay as its address), repeated until the origin acknowledges them.

use super::net::{Disk, Side};
use super::*;
use crate::proto::receiver::{default_host_name, Event as RxEvent};
use crate::proto::sender::{BlockRequest, Event as TxEvent};
use crate::proto::time::Instant;
use crate::proto::wire::{self, Header, Hello, Packet, Report};
use crate::proto::Dest;
use crate::sim::consume::Decoder;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Forwarded reports are repeated this often until acknowledged...
const FORWARD_INTERVAL: Duration = Duration::from_millis(100);
/// ...this many times at most.
const FORWARD_TRIES: u32 = 40;

struct Forward {
    host: Option<crate::proto::wire::HostName>,
    report: Report,
    tries: u32,
    acked: bool,
    next: Instant,
}

pub(super) struct Relay {
    rx: Receiver,
    sink: Disk,
    dcfg: SenderConfig,
    tx: Option<Sender>,
    parked: Vec<BlockRequest>,
    forwards: BTreeMap<u32, Forward>,
    next_forward: Option<Instant>,
    /// The origin's session and address, once the receiver locked onto it (kept after the
    /// receiver's own session ended: forwarding goes on).
    upstream: Option<(u32, SocketAddr)>,
}

impl Relay {
    pub(super) fn new(rx: Receiver, sink: Disk, dcfg: SenderConfig) -> Self {
        Relay {
            rx,
            sink,
            dcfg,
            tx: None,
            parked: Vec::new(),
            forwards: BTreeMap::new(),
            next_forward: None,
            upstream: None,
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.sink.outcome.is_some()
            && self.tx.as_ref().is_some_and(Sender::is_finished)
            && self.forwards.values().all(|f| f.acked || f.tries >= FORWARD_TRIES)
    }

    pub(super) fn handle_upstream(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.rx.handle_datagram(now, from, data);
        if let Some(v) = self.rx.repair_view() {
            self.upstream.get_or_insert((v.session, v.sender));
        }
        if self.upstream.map(|u| u.1) != Some(from) {
            return;
        }
        if let Ok((_, Packet::ReportAck(ack))) = wire::parse(data) {
            for n in ack.nodes {
                if let Some(f) = self.forwards.get_mut(&n) {
                    f.acked = true;
                }
            }
        }
    }

    pub(super) fn handle_downstream(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if let Some(tx) = &mut self.tx {
            tx.handle_datagram(now, from, data);
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        self.rx.handle_timeout(now);
        if let Some(tx) = &mut self.tx {
            tx.handle_timeout(now);
        }
    }

    fn serve(&mut self, req: BlockRequest) {
        let Some(tx) = &mut self.tx else { return };
        match self.sink.blocks.get(&req.block) {
            Some(data) => match req.prepare(data.clone()) {
                Ok(p) => {
                    let _ = tx.handle_block(req.block, p);
                }
                Err(_) => tx.handle_block_failed(req.block),
            },
            None => self.parked.push(req),
        }
    }

    /// Events, datagrams (into `out`, by side) and the next wake-up.
    pub(super) fn service(
        &mut self,
        now: Instant,
        decoder: &Decoder,
        buf: &mut Vec<u8>,
        out: &mut Vec<(Side, Dest, Vec<u8>)>,
    ) -> Option<Instant> {
        loop {
            while let Some(ev) = self.rx.poll_event() {
                match ev {
                    RxEvent::Manifest(m) => {
                        self.tx = Sender::new(self.dcfg.clone(), &m, now).ok();
                    }
                    RxEvent::Decode(job) => self.rx.handle_decoded(now, decoder.decode(job)),
                    RxEvent::Block { block, data, .. } => {
                        self.sink.write(block, &data);
                        let (ready, parked): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
                            .into_iter()
                            .partition(|r| r.block == block);
                        self.parked = parked;
                        for r in ready {
                            self.serve(r);
                        }
                    }
                    RxEvent::Complete { hashes, .. } => {
                        self.sink.stored = Some((now, self.sink.is_exact()));
                        self.rx.handle_stored(now, self.sink.verify(&hashes));
                    }
                    RxEvent::Finished(o) => self.sink.outcome = Some(o),
                }
            }
            let mut reqs = Vec::new();
            if let Some(tx) = &mut self.tx {
                while let Some(ev) = tx.poll_event() {
                    match ev {
                        TxEvent::NeedBlock(req) => reqs.push(req),
                        TxEvent::ReceiverReport(info) => {
                            let host = tx.roster().get(info.node).and_then(|e| e.host.clone());
                            let f = Forward {
                                host,
                                report: info.report,
                                tries: 0,
                                acked: false,
                                next: now,
                            };
                            self.forwards.entry(info.node).or_insert(f);
                            self.next_forward = Some(now);
                        }
                        _ => {}
                    }
                }
            }
            let any = !reqs.is_empty();
            for r in reqs {
                self.serve(r);
            }
            if let Some(t) = self.rx.poll_transmit(now, buf) {
                out.push((Side::Rx, t.dest, buf.clone()));
                continue;
            }
            if let Some(t) = self.tx.as_mut().and_then(|tx| tx.poll_transmit(now, buf)) {
                out.push((Side::Tx, t.dest, buf.clone()));
                continue;
            }
            if !any {
                break;
            }
        }
        self.forward_due(now, buf, out);
        let tx = self.tx.as_ref().and_then(Sender::poll_timeout);
        [self.rx.poll_timeout(), tx, self.next_forward].into_iter().flatten().min()
    }

    /// Send the downstream reports not yet acknowledged upstream (a join naming the host, then
    /// the report), if their time has come.
    fn forward_due(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
        out: &mut Vec<(Side, Dest, Vec<u8>)>,
    ) {
        if self.next_forward.is_none_or(|t| t > now) {
            return;
        }
        self.next_forward = None;
        let Some((session, _)) = self.upstream else { return };
        let roster = self.tx.as_ref().map(Sender::roster);
        let live = |f: &&mut Forward| !f.acked && f.tries < FORWARD_TRIES && f.next <= now;
        for (node, f) in self.forwards.iter_mut().filter(|(_, f)| live(f)) {
            f.next = now + FORWARD_INTERVAL;
            if f.host.is_none() {
                f.host = roster.and_then(|r| r.get(*node)).and_then(|e| e.host.clone());
            }
            // The origin counts a report only from a node it heard: its join goes first. A
            // host whose join the relay missed is named as a receiver without a name is.
            let host = f.host.clone().unwrap_or_else(|| default_host_name(*node));
            let header = Header { flags: 0, session, node: *node };
            wire::emit(&header, &Packet::Hello(Hello::Join { host }), buf);
            out.push((Side::Rx, Dest::Sender, buf.clone()));
            wire::emit(&header, &Packet::Report(f.report.clone()), buf);
            out.push((Side::Rx, Dest::Sender, buf.clone()));
            f.tries += 1;
        }
        self.next_forward = self
            .forwards
            .values()
            .filter(|f| !f.acked && f.tries < FORWARD_TRIES)
            .map(|f| f.next)
            .min();
    }
}
