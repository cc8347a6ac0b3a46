//! The relay (`mcast-relay`): joins a push on one network as a receiver and re-sends it on
//! another as a sender of its own session, so a push crosses a router that does not forward
//! multicast, and losses behind the relay are repaired by the relay, not the origin.
//!
//! Two [driver loops](crate::net::driver) on two threads, one per network: [`upstream`] (a
//! receiver of the origin writing into the [`Spool`], plus the forwarder of downstream
//! reports) and [`downstream`] (the relay's sender, served from the spool). The driver runs one
//! endpoint over one socket, with precise waits that block its thread, so two sockets on two
//! pacing schedules get two loops; they share only the [`Spool`] (a mutex held for a few
//! assignments), and each looks at it at least every few milliseconds. [`forward`] words the
//! reports for the origin; [`report`] is `--json`. See `docs/relay.md`.

pub mod downstream;
pub mod forward;
pub mod report;
pub mod spool;
pub mod upstream;

pub use report::{DownstreamEntry, DownstreamReceiver, RelayReport, RelayStatus, UpstreamEntry};
pub use spool::Spool;

use crate::net::batch::{pace_slack, BatchSocket};
use crate::net::driver::{self, DriverConfig, Exit, Io};
use crate::net::io::{Clock, Workers};
use crate::net::signing::SignedEntry;
use crate::net::{feedback_addr, DriverError, SocketOptions};
use crate::proto::auth::{KeyConfig, Keyring};
use crate::proto::receiver::{DecodeJob, Decoded, Outcome, Receiver, ReceiverConfig};
use crate::proto::sender::{Sender, SenderConfig};
use crate::proto::sign::Signer;
use crate::proto::time::Duration;
use crate::proto::wire::{AbortReason, ReportStatus};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Blocks the relay keeps in memory by default (the rest are read back from the spool).
pub const DEFAULT_WINDOW: usize = 16;

/// Settings of a relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The origin's group and port.
    pub upstream: SocketAddr,
    /// Interface (name or address) joined upstream.
    pub upstream_interface: String,
    /// The relay's own group and port.
    pub downstream: SocketAddr,
    /// Interface (name or address) sent on downstream.
    pub downstream_interface: String,
    /// Directory holding the spool file.
    pub spool: PathBuf,
    /// Blocks kept in memory.
    pub window: usize,
    /// The upstream receiver's settings (node id, host name, trust, timeouts ...).
    pub receiver: ReceiverConfig,
    /// The downstream sender's settings (its own session, rate, parity, `--receivers` ...).
    pub sender: SenderConfig,
    /// Keyed mode upstream.
    pub upstream_key: Option<KeyConfig>,
    /// Keyed mode downstream.
    pub downstream_key: Option<KeyConfig>,
    /// Re-sign downstream with this key (needs a signed upstream: `receiver.trust`). The
    /// downstream session then starts once the origin's signed hash list verified, with the
    /// origin's version, so far receivers that trust the relay's key keep their rollback
    /// protection.
    pub downstream_signer: Option<Arc<Signer>>,
    /// Give up after this long.
    pub timeout: Option<Duration>,
    /// Worker threads per side.
    pub workers: usize,
    /// Socket options (TTL, receive buffer).
    pub socket: SocketOptions,
    /// Progress bar on stderr.
    pub progress: bool,
    /// Created once both sockets are open and joined.
    pub ready_file: Option<PathBuf>,
    /// The loops' own settings.
    pub driver: DriverConfig,
}

/// Sets the spool's downstream flag however the downstream thread ends.
struct DownDone(Arc<Spool>);

impl Drop for DownDone {
    fn drop(&mut self) {
        self.0.set_downstream_done();
    }
}

/// Run the relay until both sides are done, `cfg.timeout` passes or `shutdown` is cancelled.
/// Opens both sockets first (errors are returned before anything is joined on the other side).
/// Runs the upstream loop on the calling tokio task and the downstream loop on a thread of its
/// own.
pub async fn run(
    cfg: &RelayConfig,
    shutdown: &CancellationToken,
) -> Result<RelayReport, DriverError> {
    let wall = std::time::Instant::now();
    let mut up_sock =
        crate::net::recv::open_socket(cfg.upstream, &cfg.upstream_interface, &cfg.socket)?;
    let down_sock =
        crate::net::send::open_socket(cfg.downstream, &cfg.downstream_interface, &cfg.socket)?;
    if let Some(f) = &cfg.ready_file {
        std::fs::write(f, b"ready\n").map_err(DriverError::io("write ready file"))?;
    }
    let spool = Spool::new(&cfg.spool, cfg.window);
    let stop = shutdown.child_token();
    let down = {
        let (cfg, spool, stop) = (cfg.clone(), Arc::clone(&spool), stop.clone());
        std::thread::Builder::new()
            .name("mcast-relay-down".into())
            .spawn(move || {
                let _done = DownDone(Arc::clone(&spool));
                downstream_main(down_sock, &cfg, spool, &stop)
            })
            .map_err(DriverError::io("spawn the downstream thread"))?
    };
    let up = upstream_main(&mut up_sock, cfg, Arc::clone(&spool), &stop).await;
    if !matches!(up, Ok((Exit::Done, _))) {
        stop.cancel();
    }
    let down = down.join().unwrap_or(Err(DriverError::WorkerPanicked));
    spool.remove();
    let (exit, up) = up?;
    let downstream = down?;
    let upstream = up.entry;
    let status = match exit {
        Exit::Interrupted => RelayStatus::Interrupted,
        Exit::Timeout => RelayStatus::Timeout,
        Exit::Done => match &up.outcome {
            Some(Outcome::Complete | Outcome::Unacknowledged) if downstream.aborted.is_some() => {
                RelayStatus::Failed
            }
            Some(Outcome::Complete | Outcome::Unacknowledged) => {
                let all = downstream.complete == downstream.receivers.len();
                let enough =
                    cfg.sender.expected_receivers.is_none_or(|n| downstream.complete >= n as usize);
                if all && enough {
                    RelayStatus::Complete
                } else {
                    RelayStatus::Incomplete
                }
            }
            Some(Outcome::TimedOut(_)) => RelayStatus::Timeout,
            Some(Outcome::Failed(_)) | None => RelayStatus::Failed,
        },
    };
    Ok(RelayReport {
        status,
        upstream,
        downstream,
        forwarded: up.forwarded.0,
        forwarded_acknowledged: up.forwarded.1,
        seconds: wall.elapsed().as_secs_f64(),
    })
}

struct UpResult {
    entry: UpstreamEntry,
    outcome: Option<Outcome>,
    forwarded: (usize, usize),
}

async fn upstream_main(
    sock: &mut BatchSocket,
    cfg: &RelayConfig,
    spool: Arc<Spool>,
    stop: &CancellationToken,
) -> Result<(Exit, UpResult), DriverError> {
    let mut workers: Workers<DecodeJob, Decoded> =
        Workers::new(cfg.workers, "mcast-relay-decode", DecodeJob::run)
            .map_err(DriverError::io("spawn workers"))?;
    let mut role = upstream::UpRole::new(
        Receiver::new(cfg.receiver.clone().for_relay()),
        cfg.receiver.node,
        Arc::clone(&spool),
        cfg.progress,
    );
    let clock = Clock::new();
    let timeout = cfg.timeout.map(|t| clock.now() + t);
    let dest = driver::Destinations::new(cfg.upstream, feedback_addr(cfg.upstream)?);
    let mut auth = Keyring::new(cfg.upstream_key.as_ref(), crate::net::keyfile::nonce_prefix());
    let io = Io { socket: sock, dest, workers: &mut workers, auth: &mut auth };
    let exit = driver::run(io, &mut role, &clock, timeout, stop, &cfg.driver).await;
    if role.outcome.is_none() {
        let why = match &exit {
            Ok(Exit::Timeout) => "the relay's --timeout passed".to_string(),
            Ok(_) => "the relay was stopped".to_string(),
            Err(e) => e.to_string(),
        };
        spool.set_upstream_end(spool::UpstreamEnd::Failed(why));
    }
    let exit = exit?;
    let rx = role.receiver();
    let status = match (&exit, &role.outcome) {
        (Exit::Interrupted, None) => "interrupted",
        (Exit::Timeout, None) => "timeout",
        (_, Some(Outcome::Complete)) => "complete",
        (_, Some(Outcome::Unacknowledged)) => "unacknowledged",
        (_, Some(Outcome::TimedOut(_))) => "timeout",
        _ => "failed",
    };
    let error = match &role.outcome {
        Some(Outcome::Failed(e) | Outcome::TimedOut(e)) => Some(e.clone()),
        _ => role.error.clone().or_else(|| auth.diagnosis()),
    };
    let entry = UpstreamEntry {
        session: rx.session_id().map(|s| format!("{s:08x}")),
        status: status.into(),
        size: role.size,
        bytes: role.held_bytes,
        naks_sent: rx.stats().naks_sent,
        signed: rx.accepted().map(|a| SignedEntry::new(&a.key_id, a.version)),
        error,
    };
    Ok((exit, UpResult { entry, outcome: role.outcome.clone(), forwarded: role.forwarded() }))
}

/// The downstream thread: wait for the manifest, then run the relay's sender on a runtime of
/// its own until it is done or `stop` is cancelled.
fn downstream_main(
    mut sock: BatchSocket,
    cfg: &RelayConfig,
    spool: Arc<Spool>,
    stop: &CancellationToken,
) -> Result<DownstreamEntry, DriverError> {
    let manifest = loop {
        if stop.is_cancelled() || spool.upstream_end().is_some() {
            // Without a manifest there is nothing to send (an end after it is the role's).
            match spool.wait_manifest(std::time::Duration::ZERO) {
                Some(m) => break m,
                None => return Ok(DownstreamEntry::default()),
            }
        }
        if let Some(m) = spool.wait_manifest(std::time::Duration::from_millis(50)) {
            break m;
        }
    };
    let rt = crate::cli::runtime().map_err(DriverError::io("start the downstream runtime"))?;
    let clock = Clock::new();
    let mut signed = None;
    let tx = match &cfg.downstream_signer {
        None => Sender::new(cfg.sender.clone(), &manifest, clock.now())?,
        Some(signer) => {
            // Signed upstream sends its hash list right after the manifest; without it nothing
            // can be signed, and the upstream side's end (or a stop) ends the wait.
            let Some((hashes, version)) = wait_signed(&spool, stop) else {
                return Ok(DownstreamEntry::default());
            };
            signed = Some(SignedEntry::new(&signer.key_id(), version));
            let hashes = hashes.as_ref().clone();
            Sender::new_signed(cfg.sender.clone(), &manifest, hashes, signer, version, clock.now())?
        }
    };
    tracing::info!(
        "relaying downstream to {} as session {:08x}",
        cfg.downstream,
        cfg.sender.session
    );
    let mut role = downstream::DownRole::new(tx, Arc::clone(&spool), clock.now())
        .with_slack(pace_slack(cfg.sender.rate_bps));
    let src = Arc::clone(&spool);
    let mut workers =
        Workers::new(cfg.workers, "mcast-relay-prep", move |req| downstream::prepare(&src, req))
            .map_err(DriverError::io("spawn workers"))?;
    let dest = driver::Destinations::new(cfg.downstream, feedback_addr(cfg.downstream)?);
    let mut auth = Keyring::new(cfg.downstream_key.as_ref(), crate::net::keyfile::nonce_prefix());
    // ECN-capable downstream only when its rate answers marks (as `mcast-send`).
    sock.set_ecn_capable(matches!(
        cfg.sender.rate_control,
        crate::proto::rate::RateControl::Auto(_)
    ));
    let exit = rt.block_on(driver::run(
        Io { socket: &mut sock, dest, workers: &mut workers, auth: &mut auth },
        &mut role,
        &clock,
        None,
        stop,
        &cfg.driver,
    ));
    if !matches!(exit, Ok(Exit::Done)) {
        let text = match &exit {
            Err(e) => e.to_string(),
            Ok(_) => "the relay stopped".to_string(),
        };
        role.sender_mut().abort(clock.now(), AbortReason::Interrupted, &text);
        let io = Io { socket: &mut sock, dest, workers: &mut workers, auth: &mut auth };
        let never = CancellationToken::new();
        let grace = Some(clock.now() + crate::net::send::ABORT_GRACE);
        if let Err(e) = rt.block_on(driver::run(io, &mut role, &clock, grace, &never, &cfg.driver))
        {
            tracing::warn!("could not tell the downstream receivers: {e}");
        }
    }
    exit?;
    let tx = role.sender();
    let receivers: Vec<DownstreamReceiver> = tx
        .receivers()
        .values()
        .map(|r| {
            let ok = r.report.status == ReportStatus::Complete
                && Some(r.report.object_hash) == tx.object_hash()
                && r.report.bytes == manifest.object_size;
            DownstreamReceiver {
                id: r.node,
                host: tx
                    .roster()
                    .get(r.node)
                    .and_then(|e| e.host.as_ref())
                    .map(ToString::to_string),
                addr: r.addr.to_string(),
                status: if ok { "complete" } else { "failed" },
            }
        })
        .collect();
    let s = tx.stats();
    Ok(DownstreamEntry {
        started: true,
        session: Some(format!("{:08x}", cfg.sender.session)),
        complete: receivers.iter().filter(|r| r.status == "complete").count(),
        receivers,
        data_packets: s.data_packets,
        repair_packets: s.repair_packets,
        naks_received: s.naks_received,
        signed,
        aborted: role.aborted.clone(),
    })
}

/// Waits until the origin's signed hash list verified upstream ([`Spool::signed`]); `None`
/// when the upstream side ended or `stop` was cancelled first.
fn wait_signed(spool: &Spool, stop: &CancellationToken) -> Option<(Arc<Vec<[u8; 32]>>, u64)> {
    loop {
        let over = stop.is_cancelled() || spool.upstream_end().is_some();
        let limit = if over { 0 } else { 50 };
        if let Some(s) = spool.wait_signed(std::time::Duration::from_millis(limit)) {
            return Some(s);
        }
        if over {
            return None;
        }
    }
}
