//! Forwarding downstream completion reports to the origin (sans-IO: time and datagrams come in
//! and go out as arguments). Each downstream receiver's report goes upstream as that host's own
//! join (its host name) and report, under its node id and the origin's session, sent from the
//! relay's address, so the origin's roster and `--expect` list every host once. A report is
//! repeated every [`FORWARD_INTERVAL`] until the origin's acknowledgement names its node, at
//! most [`FORWARD_TRIES`] times. As in the simulator's relay (`sim/topology/relay.rs`).

use super::spool::Forwarded;
use crate::proto::receiver::default_host_name;
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{self, Header, Hello, Packet, Relayed, MAX_ACK_NODES};
use crate::proto::{Dest, Transmit};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// Forwarded reports are repeated this often until acknowledged...
pub const FORWARD_INTERVAL: Duration = Duration::from_millis(100);
/// ...this many times at most.
pub const FORWARD_TRIES: u32 = 40;
/// Downstream reports held at most (a forged flood downstream cannot grow the relay without
/// bound; the sender's roster has the same cap).
pub const MAX_FORWARDS: usize = crate::proto::sender::MAX_ROSTER;

struct Pending {
    f: Forwarded,
    tries: u32,
    acked: bool,
    next: Instant,
}

/// The reports to forward and their state (see the module doc).
#[derive(Default)]
pub struct Forwarder {
    pending: BTreeMap<u32, Pending>,
    /// The origin's session and address, once the upstream receiver locked on.
    upstream: Option<(u32, SocketAddr)>,
    /// The relay's own node id upstream (the header of its Relayed datagrams).
    node: u32,
    /// Datagrams due now.
    queue: VecDeque<Vec<u8>>,
    /// Reports refused because [`MAX_FORWARDS`] were held.
    pub refused: u64,
}

impl Forwarder {
    /// A forwarder for the relay whose upstream node id is `node`.
    pub fn new(node: u32) -> Self {
        Forwarder { node, ..Forwarder::default() }
    }

    /// The origin's session and the address it sends from.
    pub fn set_upstream(&mut self, session: u32, origin: SocketAddr) {
        self.upstream.get_or_insert((session, origin));
    }

    /// The origin's address, once known.
    pub fn origin(&self) -> Option<SocketAddr> {
        self.upstream.map(|u| u.1)
    }

    /// A downstream report to forward (a node's first report only; later ones are ignored).
    pub fn push(&mut self, now: Instant, f: Forwarded) {
        if self.pending.len() >= MAX_FORWARDS && !self.pending.contains_key(&f.node) {
            self.refused += 1;
            return;
        }
        self.pending.entry(f.node).or_insert(Pending { f, tries: 0, acked: false, next: now });
    }

    /// The origin acknowledged reports of `nodes`: returns how many were pending.
    pub fn acked(&mut self, nodes: &[u32]) -> u64 {
        let mut n = 0;
        for node in nodes {
            if let Some(p) = self.pending.get_mut(node).filter(|p| !p.acked) {
                p.acked = true;
                n += 1;
            }
        }
        n
    }

    /// Whether every report was acknowledged or given up on.
    pub fn settled(&self) -> bool {
        self.pending.values().all(|p| p.acked || p.tries >= FORWARD_TRIES)
    }

    /// Reports held, and of them acknowledged.
    pub fn counts(&self) -> (usize, usize) {
        (self.pending.len(), self.pending.values().filter(|p| p.acked).count())
    }

    /// When a report is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.upstream?;
        let live = self.pending.values().filter(|p| !p.acked && p.tries < FORWARD_TRIES);
        live.map(|p| p.next).min()
    }

    /// The next datagram (to the origin's feedback port) written into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if self.queue.is_empty() {
            self.fill(now);
        }
        let d = self.queue.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&d);
        Some(Transmit { size: d.len(), dest: Dest::Sender })
    }

    fn fill(&mut self, now: Instant) {
        let Some((session, _)) = self.upstream else { return };
        let mut buf = Vec::new();
        let mut relayed = Vec::new();
        let due = |p: &Pending| !p.acked && p.tries < FORWARD_TRIES && p.next <= now;
        for (node, p) in self.pending.iter_mut().filter(|(_, p)| due(p)) {
            p.next = now + FORWARD_INTERVAL;
            p.tries += 1;
            // The origin counts a report only from a node it heard: its join goes first. A
            // host whose join the relay missed is named as a receiver without a name is.
            let host = p.f.host.clone().unwrap_or_else(|| default_host_name(*node));
            let header = Header { flags: 0, session, node: *node };
            wire::emit(&header, &Packet::Hello(Hello::Join { host }), &mut buf);
            self.queue.push_back(buf.clone());
            wire::emit(&header, &Packet::Report(p.f.report.clone()), &mut buf);
            self.queue.push_back(buf.clone());
            relayed.push(*node);
        }
        // Which relay these came through (type 18), from the relay's own node.
        let header = Header { flags: 0, session, node: self.node };
        for nodes in relayed.chunks(MAX_ACK_NODES) {
            let p = Packet::Relayed(Relayed { nodes: nodes.to_vec() });
            wire::emit(&header, &p, &mut buf);
            self.queue.push_back(buf.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::{Report, ReportStatus};

    fn report(node: u32) -> Forwarded {
        Forwarded {
            node,
            host: None,
            report: Report {
                status: ReportStatus::Complete,
                bytes: 10,
                object_hash: [1; 32],
                naks_sent: 0,
                naks_suppressed: 0,
                elapsed_ms: 5,
                reason: String::new(),
            },
        }
    }

    #[test]
    fn reports_go_as_join_then_report_until_acknowledged_or_out_of_tries() {
        let mut f = Forwarder::new(3);
        let t0 = Instant::from_micros(1_000_000);
        f.push(t0, report(5));
        let mut buf = Vec::new();
        assert!(f.poll_transmit(t0, &mut buf).is_none(), "nothing before the origin is known");
        f.set_upstream(77, "198.18.0.1:7001".parse().unwrap());
        let t = f.poll_transmit(t0, &mut buf).unwrap();
        assert_eq!(t.dest, Dest::Sender);
        let (h, p) = wire::parse(&buf[..t.size]).unwrap();
        assert_eq!((h.session, h.node), (77, 5));
        assert!(
            matches!(p, Packet::Hello(Hello::Join { ref host }) if host.as_str() == "node-00000005")
        );
        let t = f.poll_transmit(t0, &mut buf).unwrap();
        assert!(matches!(wire::parse(&buf[..t.size]).unwrap().1, Packet::Report(_)));
        let t = f.poll_transmit(t0, &mut buf).unwrap();
        let (h, p) = wire::parse(&buf[..t.size]).unwrap();
        assert_eq!(h.node, 3, "from the relay's own node");
        assert_eq!(p, Packet::Relayed(Relayed { nodes: vec![5] }));
        assert!(f.poll_transmit(t0, &mut buf).is_none(), "next one after the interval");
        assert_eq!(f.poll_timeout(), Some(t0 + FORWARD_INTERVAL));
        // Unacknowledged: exactly FORWARD_TRIES rounds, then settled.
        let mut now = t0;
        let mut rounds = 1;
        while let Some(next) = f.poll_timeout() {
            now = next;
            while f.poll_transmit(now, &mut buf).is_some() {}
            rounds += 1;
        }
        assert_eq!(rounds, FORWARD_TRIES);
        assert!(f.settled());
        // Acknowledged at once: one round only.
        f.push(now, report(6));
        assert!(!f.settled());
        assert_eq!(f.acked(&[6, 9]), 1);
        assert_eq!(f.acked(&[6]), 0, "counted once");
        assert!(f.settled());
        assert_eq!(f.counts(), (2, 1));
    }
}
