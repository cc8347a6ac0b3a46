//! The relay's upstream side: a [`Receiver`] of the origin's push on the shared
//! [driver loop](crate::net::driver), writing what it decodes into the [`Spool`] instead of a
//! destination (the downstream side serves from there), plus the [`Forwarder`] that sends the
//! downstream reports to the origin from this socket. Blocks are decoded on worker threads, as
//! in `mcast-recv`. The side is done once the receiver finished, the downstream side is over
//! and every forwarded report was acknowledged or given up on.

use super::forward::Forwarder;
use super::spool::{Spool, UpstreamEnd};
use crate::net::driver::{Context, Endpoint, Role};
use crate::net::io::{Progress, Workers, PROGRESS_EVERY};
use crate::net::DriverError;
use crate::proto::receiver::{DecodeJob, Decoded, Event, Outcome, Receiver};
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{self, Packet};
use crate::proto::Transmit;
use std::net::SocketAddr;
use std::sync::Arc;

/// How often the upstream loop looks at the spool for reports to forward.
pub const SYNC_EVERY: Duration = Duration::from_millis(10);

/// The receiver and the forwarder, as one endpoint of the driver.
pub struct UpEndpoint {
    /// The origin's receiver.
    pub rx: Receiver,
    /// Downstream reports on their way to the origin.
    pub fwd: Forwarder,
    last_now: Instant,
}

impl Endpoint for UpEndpoint {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.last_now = self.last_now.max(now);
        let Ok((header, packet)) = wire::parse(data) else {
            return self.rx.handle_datagram(now, from, data); // counted as malformed there
        };
        let acked = match &packet {
            Packet::ReportAck(ack) => Some(ack.nodes.clone()),
            _ => None,
        };
        self.rx.handle_parsed(now, from, header, packet);
        if let Some(v) = self.rx.repair_view() {
            self.fwd.set_upstream(v.session, v.sender);
        }
        // Acknowledgements of forwarded reports: from the origin only.
        if let Some(nodes) = acked.filter(|_| self.fwd.origin() == Some(from)) {
            self.fwd.acked(&nodes);
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.rx.handle_timeout(now);
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.rx.poll_transmit(now, buf).or_else(|| self.fwd.poll_transmit(now, buf))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        let sync = self.last_now + SYNC_EVERY;
        [self.rx.poll_timeout(), self.fwd.poll_timeout(), Some(sync)].into_iter().flatten().min()
    }
}

/// The upstream side's handler of its endpoint's events.
pub struct UpRole {
    ep: UpEndpoint,
    spool: Arc<Spool>,
    /// How the receiver ended, once it did.
    pub outcome: Option<Outcome>,
    /// The first storage error (the spool could not be written).
    pub error: Option<String>,
    /// Payload size, once the manifest is known.
    pub size: Option<u64>,
    /// Payload bytes written into the spool.
    pub held_bytes: u64,
    progress: Option<Progress>,
    show_progress: bool,
    last_progress: std::time::Instant,
    acked: u64,
    /// The signed hash list was given to the spool.
    signed_noted: bool,
}

impl UpRole {
    /// The upstream side of `spool` around `rx`.
    pub fn new(rx: Receiver, node: u32, spool: Arc<Spool>, progress: bool) -> Self {
        UpRole {
            ep: UpEndpoint { rx, fwd: Forwarder::new(node), last_now: Instant::ZERO },
            spool,
            outcome: None,
            error: None,
            size: None,
            held_bytes: 0,
            progress: None,
            show_progress: progress,
            last_progress: std::time::Instant::now(),
            acked: 0,
            signed_noted: false,
        }
    }

    /// The receiver (its stats and session, for the report).
    pub fn receiver(&self) -> &Receiver {
        &self.ep.rx
    }

    /// Forwarded reports held, and of them acknowledged.
    pub fn forwarded(&self) -> (usize, usize) {
        self.ep.fwd.counts()
    }

    fn fail(&mut self, now: Instant, why: String) {
        if self.error.is_none() {
            tracing::error!("relay spool: {why}");
            self.error = Some(why.clone());
            self.ep.rx.handle_storage_error(now, why);
        }
    }

    fn handle_event(&mut self, now: Instant, ev: Event, workers: &mut Workers<DecodeJob, Decoded>) {
        match ev {
            Event::Manifest(m) => {
                tracing::info!("relaying {}", m.summary());
                self.size = Some(m.object_size);
                let session = self.ep.rx.session_id().unwrap_or(0);
                if let Err(e) = self.spool.start(session, &m) {
                    return self.fail(now, e.to_string());
                }
                if self.show_progress {
                    self.progress = Some(Progress::new("relaying", m.object_size));
                }
            }
            Event::Decode(job) => workers.submit(job),
            Event::Block { block, offset, data, rewrite, hash } => {
                let len = data.len() as u64;
                match self.spool.write_block(block, offset, data, hash) {
                    Ok(()) if !rewrite => self.held_bytes += len,
                    Ok(()) => tracing::warn!("block {block} refuted by the hash list: rewritten"),
                    Err(e) => self.fail(now, e.to_string()),
                }
            }
            Event::Complete { bytes, hashes } => {
                tracing::info!("all {bytes} B verified against the origin's hash list");
                let root = hashes.root();
                self.spool.set_verified(hashes.as_slice().to_vec());
                let result = match &self.error {
                    None => Ok(root),
                    Some(e) => Err(e.clone()),
                };
                self.ep.rx.handle_stored(now, result);
                if let Some(p) = self.progress.as_mut() {
                    p.update(bytes, "verified");
                }
            }
            Event::Finished(outcome) => {
                let end = match &outcome {
                    Outcome::Complete | Outcome::Unacknowledged => UpstreamEnd::Complete,
                    Outcome::Failed(e) | Outcome::TimedOut(e) => UpstreamEnd::Failed(e.clone()),
                };
                self.spool.set_upstream_end(end);
                self.outcome = Some(outcome);
            }
        }
    }
}

impl Role for UpRole {
    type Endpoint = UpEndpoint;
    type Job = DecodeJob;
    type Done = Decoded;

    fn endpoint(&mut self) -> &mut UpEndpoint {
        &mut self.ep
    }

    fn endpoint_ref(&self) -> &UpEndpoint {
        &self.ep
    }

    fn handle_ce_mark(&mut self) {
        self.ep.rx.note_ce_mark();
    }

    fn handle_done(&mut self, now: Instant, done: Decoded) -> Result<(), DriverError> {
        self.ep.rx.handle_decoded(now, done);
        Ok(())
    }

    fn handle_events(
        &mut self,
        now: Instant,
        cx: &mut Context<'_, DecodeJob, Decoded>,
    ) -> Result<(), DriverError> {
        while let Some(ev) = self.ep.rx.poll_event() {
            self.handle_event(now, ev, cx.workers);
        }
        if !self.signed_noted {
            if let Some((list, accepted)) = self.ep.rx.signed_hash_list() {
                // Before the payload: the downstream side may start (and sign) at once.
                self.spool.set_signed(list.as_slice().to_vec(), accepted.version);
                self.signed_noted = true;
            }
        }
        for f in self.spool.take_forwards() {
            self.ep.fwd.push(now, f);
        }
        let (_, acked) = self.ep.fwd.counts();
        if acked as u64 > self.acked {
            self.spool.add_acked(acked as u64 - self.acked);
            self.acked = acked as u64;
        }
        Ok(())
    }

    fn tick(&mut self, _now: Instant) {
        if self.last_progress.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last_progress = std::time::Instant::now();
        let (fwd, acked) = self.ep.fwd.counts();
        let naks = self.ep.rx.stats().naks_sent;
        if let Some(p) = self.progress.as_mut() {
            p.update(
                self.held_bytes,
                &format!("{naks} NAKs upstream; {fwd} downstream reports, {acked} forwarded"),
            );
        }
    }

    fn is_done(&self, _now: Instant) -> bool {
        // Without a manifest the downstream side never starts: the receiver's end is enough.
        let downstream_over = self.spool.downstream_done() || self.size.is_none();
        self.outcome.is_some() && downstream_over && self.ep.fwd.settled()
    }
}
