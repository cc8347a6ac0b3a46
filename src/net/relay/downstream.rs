//! The relay's downstream side: a [`Sender`] of the relay's own session on the shared
//! [driver loop](crate::net::driver), served from the [`Spool`]. A block the sender asks for
//! that the upstream side does not hold yet waits (parked) and is handed over once it is
//! written: the sender's cursor simply waits for it, as for any block still being read. Blocks
//! are read (from the memory window, else from the spool file) and FEC-prepared on worker
//! threads.
//!
//! Verify before anyone commits: receivers place a copy only once the hash list verifies, and
//! the sender builds its hash list only once every block was handed to it. So the last block
//! not yet handed over is held back until the origin's hash list has verified upstream; then
//! every block handed over is checked against it. Should one differ (a forged symbol decoded
//! upstream before the list arrived), the downstream session is aborted: downstream receivers
//! fail and place nothing. Its hash list is then the origin's, hence so is the object hash
//! downstream receivers report, which the origin checks when they are forwarded.
//!
//! Two loops on two threads need a way to wake each other: while a block is parked, the
//! downstream endpoint's deadline is at most [`PARKED_POLL`] away, so a newly written block is
//! noticed within it (a lock and a counter read per turn).

use super::spool::{Forwarded, Spool, UpstreamEnd};
use crate::net::driver::{Context, Endpoint, Role};
use crate::net::DriverError;
use crate::proto::sender::{BlockRequest, Event, PreparedBlock, Sender};
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::AbortReason;
use crate::proto::Transmit;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

/// Longest a parked block waits before the downstream loop looks at the spool again.
pub const PARKED_POLL: Duration = Duration::from_millis(1);
/// How often the loop looks at the spool when nothing is parked (upstream end, hash list).
pub const IDLE_POLL: Duration = Duration::from_millis(20);

/// A worker's result: the block and its preparation.
pub type Prepared = (u32, Result<PreparedBlock, String>);

/// The downstream sender, with the relay's extra deadline.
pub struct DownEndpoint {
    /// The relay's own sender.
    pub tx: Sender,
    last_now: Instant,
    parked: bool,
}

impl Endpoint for DownEndpoint {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.last_now = self.last_now.max(now);
        self.tx.handle_datagram(now, from, data)
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.tx.handle_timeout(now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.tx.poll_transmit(now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        let poll = self.last_now + if self.parked { PARKED_POLL } else { IDLE_POLL };
        [self.tx.poll_timeout(), Some(poll)].into_iter().flatten().min()
    }
}

/// The downstream side's handler of its endpoint's events.
pub struct DownRole {
    ep: DownEndpoint,
    spool: Arc<Spool>,
    blocks: u32,
    parked: Vec<BlockRequest>,
    /// Blocks handed to the sender at least once.
    handed: BTreeSet<u32>,
    /// The spool's generation when the parked blocks were last looked at.
    seen_generation: u64,
    /// The handed blocks were checked against the origin's hash list.
    checked: bool,
    /// Why the downstream session was aborted, if it was.
    pub aborted: Option<String>,
    slack: Duration,
}

impl DownRole {
    /// The downstream side of `spool` around `tx` (a sender of the spool's manifest).
    pub fn new(tx: Sender, spool: Arc<Spool>, now: Instant) -> Self {
        let blocks = tx.layout().block_count();
        DownRole {
            ep: DownEndpoint { tx, last_now: now, parked: false },
            spool,
            blocks,
            parked: Vec::new(),
            handed: BTreeSet::new(),
            seen_generation: 0,
            checked: false,
            aborted: None,
            slack: Duration::ZERO,
        }
    }

    /// Wake this much after the pacer's deadline (see `net::send`), so each wake-up sends a
    /// batch.
    pub fn with_slack(self, slack: Duration) -> Self {
        DownRole { slack, ..self }
    }

    /// The sender (its roster, reports and stats, for the report).
    pub fn sender(&self) -> &Sender {
        &self.ep.tx
    }

    /// The sender, to stop it ([`Sender::abort`]).
    pub fn sender_mut(&mut self) -> &mut Sender {
        &mut self.ep.tx
    }

    /// Whether `req` can be handed over now: held upstream, and not the last block the sender
    /// lacks before the origin's hash list has verified.
    fn servable(&self, req: &BlockRequest) -> bool {
        if self.spool.held(req.block).is_none() {
            return false;
        }
        let completes =
            !self.handed.contains(&req.block) && self.handed.len() + 1 >= self.blocks as usize;
        !completes || self.checked
    }

    fn serve(&mut self, req: BlockRequest, cx: &mut Context<'_, BlockRequest, Prepared>) {
        if self.aborted.is_some() {
            return;
        }
        if self.servable(&req) {
            self.handed.insert(req.block);
            cx.workers.submit(req);
        } else if !self.parked.iter().any(|p| p.block == req.block) {
            self.parked.push(req);
        }
    }

    fn abort(&mut self, now: Instant, why: String) {
        if self.aborted.is_none() {
            tracing::error!("downstream session stopped: {why}");
            self.ep.tx.abort(now, AbortReason::SourceError, &why);
            self.aborted = Some(why);
            self.parked.clear();
        }
    }

    /// The origin's hash list verified: check every block handed over against it.
    fn check_handed(&mut self, now: Instant) {
        if self.checked {
            return;
        }
        let Some(verified) = self.spool.verified() else { return };
        self.checked = true;
        for &b in &self.handed {
            // What was handed over is what the spool held when it was (a later rewrite
            // replaces it): a block the list refutes was rewritten, with another hash.
            if self.spool.held(b) != verified.get(b as usize).copied() {
                return self.abort(now, format!("block {b} was refuted by the origin's hash list"));
            }
        }
    }
}

/// Read and prepare `req` from `spool` (a worker's job).
pub fn prepare(spool: &Spool, req: BlockRequest) -> Prepared {
    let data = match spool.read_block(req.block, req.offset, req.len) {
        Some(Ok(d)) => d,
        Some(Err(e)) => return (req.block, Err(e.to_string())),
        None => return (req.block, Err("not held".into())),
    };
    (req.block, req.prepare(data).map_err(|e| e.to_string()))
}

impl Role for DownRole {
    type Endpoint = DownEndpoint;
    type Job = BlockRequest;
    type Done = Prepared;

    fn endpoint(&mut self) -> &mut DownEndpoint {
        &mut self.ep
    }

    fn endpoint_ref(&self) -> &DownEndpoint {
        &self.ep
    }

    fn handle_done(&mut self, _now: Instant, (block, p): Prepared) -> Result<(), DriverError> {
        if self.aborted.is_some() {
            return Ok(());
        }
        match p {
            Ok(p) => self.ep.tx.handle_block(block, p)?,
            Err(why) => {
                tracing::error!("block {block} cannot be served: {why}");
                self.ep.tx.handle_block_failed(block);
            }
        }
        Ok(())
    }

    fn handle_events(
        &mut self,
        now: Instant,
        cx: &mut Context<'_, BlockRequest, Prepared>,
    ) -> Result<(), DriverError> {
        self.check_handed(now);
        if let Some(UpstreamEnd::Failed(why)) = self.spool.upstream_end() {
            if !self.checked {
                self.abort(now, format!("the relay's upstream failed: {why}"));
            }
        }
        let generation = self.spool.generation();
        if !self.parked.is_empty() && (generation != self.seen_generation || self.checked) {
            self.seen_generation = generation;
            for req in std::mem::take(&mut self.parked) {
                self.serve(req, cx);
            }
        }
        while let Some(ev) = self.ep.tx.poll_event() {
            match ev {
                Event::NeedBlock(req) => self.serve(req, cx),
                Event::ReceiverReport(r) => {
                    let host = self.ep.tx.roster().get(r.node).and_then(|e| e.host.clone());
                    tracing::info!(
                        "downstream receiver {:08x} ({}) at {} reported {:?}",
                        r.node,
                        host.as_ref().map_or("no name", |h| h.as_str()),
                        r.addr,
                        r.report.status
                    );
                    self.spool.push_forward(Forwarded { node: r.node, host, report: r.report });
                }
                Event::ReceiverDropped { node, .. } => {
                    tracing::warn!("downstream receiver {node:08x} dropped as a straggler")
                }
                Event::BlockUnavailable { block } => {
                    tracing::error!("block {block} is unavailable downstream")
                }
                Event::Finished => tracing::info!("downstream done; answering late reports"),
            }
        }
        self.ep.parked = !self.parked.is_empty();
        Ok(())
    }

    fn is_done(&self, now: Instant) -> bool {
        self.ep.tx.leave_at().is_some_and(|t| now >= t)
    }

    fn wake_slack(&self) -> Duration {
        self.slack
    }
}
