//! The simulator's relay: a [`Receiver`] on the origin's segment and, once the manifest has
//! arrived, a [`Sender`] of its own session on the downstream segment. The sender is served from
//! what the receiver wrote (a block not received yet waits), so it streams what it holds and
//! answers downstream NAKs from its buffer, while the receiver NAKs upstream only for what it
//! lacks. Downstream completion reports are forwarded to the origin as the downstream
//! receiver's own join and report, sent from the relay's address (so the origin lists each
//! host once, with the relay as its address), repeated until the origin acknowledges them,
//! with a `Relayed` datagram naming the relay: the forwarding is `mcast-relay`'s own
//! [`Forwarder`] (sans-IO), and the upstream receiver's settings are its own too
//! ([`ReceiverConfig::for_relay`]). Relays chain: a relay's upstream can be another's
//! downstream segment.

use super::net::{Disk, Side};
use super::*;
use crate::net::relay::forward::Forwarder;
use crate::net::relay::spool::Forwarded;
use crate::proto::receiver::Event as RxEvent;
use crate::proto::sender::{BlockRequest, Event as TxEvent};
use crate::proto::time::Instant;
use crate::proto::wire::{self, Packet};
use crate::proto::Dest;
use crate::sim::consume::Decoder;
use std::net::SocketAddr;

pub(super) struct Relay {
    rx: Receiver,
    sink: Disk,
    dcfg: SenderConfig,
    tx: Option<Sender>,
    parked: Vec<BlockRequest>,
    fwd: Forwarder,
}

impl Relay {
    /// A relay whose upstream receiver has `rx` settings (made [`ReceiverConfig::for_relay`]
    /// here) and whose downstream sender has `dcfg`.
    pub(super) fn new(rx: ReceiverConfig, sink: Disk, dcfg: SenderConfig) -> Self {
        let fwd = Forwarder::new(rx.node);
        let rx = Receiver::new(rx.for_relay());
        Relay { rx, sink, dcfg, tx: None, parked: Vec::new(), fwd }
    }

    /// The downstream session.
    pub(super) fn session(&self) -> u32 {
        self.dcfg.session
    }

    pub(super) fn is_done(&self) -> bool {
        self.sink.outcome.is_some()
            && self.tx.as_ref().is_some_and(Sender::is_finished)
            && self.fwd.settled()
    }

    pub(super) fn handle_upstream(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.rx.handle_datagram(now, from, data);
        if let Some(v) = self.rx.repair_view() {
            self.fwd.set_upstream(v.session, v.sender);
        }
        if self.fwd.origin() != Some(from) {
            return;
        }
        if let Ok((_, Packet::ReportAck(ack))) = wire::parse(data) {
            self.fwd.acked(&ack.nodes);
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
                            let f = Forwarded { node: info.node, host, report: info.report };
                            self.fwd.push(now, f);
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
            if let Some(t) = self.fwd.poll_transmit(now, buf) {
                out.push((Side::Rx, t.dest, buf.clone()));
                continue;
            }
            if !any {
                break;
            }
        }
        let tx = self.tx.as_ref().and_then(Sender::poll_timeout);
        [self.rx.poll_timeout(), tx, self.fwd.poll_timeout()].into_iter().flatten().min()
    }
}
