//! The send loop: hash the source into a manifest, open the multicast socket, and drive the
//! sans-IO [`Sender`] with real time, real datagrams and blocks read and FEC-prepared on worker
//! threads. [`run`] is what `mcast-send` calls; tests can call it too.

use crate::net::batch::{pace_slack, BatchSocket, BatchStats, TxBatch};
use crate::net::io::{progress_bar, thread_cpu_seconds, wait_until, Clock, Workers};
use crate::net::socket::{feedback_addr, open_multicast, resolve_interface, SocketOptions};
use crate::net::DriverError;
use crate::proto::layout::Layout;
use crate::proto::manifest::Manifest;
use crate::proto::sender::{BlockRequest, Event, Sender, SenderConfig, StragglerPolicy};
use crate::proto::stats::SenderStats;
use crate::proto::time::Duration;
use crate::proto::wire::ReportStatus;
use crate::storage::{FileSource, Source};
use rand::RngCore;
use serde::Serialize;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Longest wait while a worker holds a block the loop needs.
pub(crate) const BLOCK_POLL: Duration = Duration::from_micros(200);
/// Longest wait otherwise (signals and timeouts are checked this often).
pub(crate) const IDLE_POLL: Duration = Duration::from_millis(50);

/// Settings of one push.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// File to send.
    pub path: PathBuf,
    /// Multicast group and port.
    pub group: SocketAddrV4,
    /// Outgoing interface (IPv4 address or name).
    pub interface: String,
    /// Send rate, bits per second.
    pub rate_bps: u64,
    /// Proactive repair share (0.05 = 5 %): fixed, or with `auto_parity` the share used
    /// until receivers report their loss.
    pub fec_overhead: f64,
    /// Let the proactive repair share follow the loss receivers report.
    pub auto_parity: bool,
    /// Carousel: passes after the first (`Some(0)`: until stopped).
    pub repeat: Option<u32>,
    /// When a receiver losing far more than the rest is dropped.
    pub straggler: StragglerPolicy,
    /// Wait for this many completion reports.
    pub expected_receivers: Option<u32>,
    /// Give up after this long.
    pub timeout: Option<Duration>,
    /// Symbol size `T`.
    pub symbol_size: u16,
    /// Target block size in bytes.
    pub block_bytes: u64,
    /// Multicast TTL.
    pub ttl: u32,
    /// Without `expected_receivers`: quiet time after the flush before finishing.
    pub linger: Duration,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Threads preparing blocks.
    pub workers: usize,
}

/// How a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendStatus {
    /// Finished; with expected receivers, all reported complete.
    Complete,
    /// Some expected receivers failed or did not report.
    Incomplete,
    /// The timeout passed first.
    Timeout,
    /// Stopped by a signal.
    Interrupted,
}

/// One receiver in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverEntry {
    /// Node id.
    pub id: u32,
    /// Address the report came from.
    pub addr: String,
    /// "complete" (verified hash matches) or "failed".
    pub status: &'static str,
    /// Bytes the receiver placed.
    pub bytes: u64,
    /// NAKs it sent.
    pub naks_sent: u32,
    /// NAK rounds it suppressed.
    pub naks_suppressed: u32,
    /// Seconds from its first datagram to completion, as it measured.
    pub seconds: f64,
    /// Seconds from the start of the push until its report arrived.
    pub reported_at: f64,
}

/// A receiver dropped as a straggler.
#[derive(Debug, Clone, Serialize)]
pub struct DroppedEntry {
    /// Node id.
    pub id: u32,
    /// Its last reported loss rate.
    pub loss: f64,
    /// Repair symbols its NAKs called for.
    pub repairs_charged: u64,
}

/// The push report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    /// Outcome.
    pub status: SendStatus,
    /// Source path.
    pub path: PathBuf,
    /// Payload bytes.
    pub bytes: u64,
    /// Wall time of the whole push (hashing included), seconds.
    pub seconds: f64,
    /// Time spent hashing the source, seconds.
    pub hash_seconds: f64,
    /// Payload bytes over wall time, Mbit/s.
    pub goodput_mbps: f64,
    /// Source symbols sent.
    pub data_packets: u64,
    /// Repair symbols sent (proactive and on request).
    pub repair_packets: u64,
    /// NAK datagrams received.
    pub naks_received: u64,
    /// Receivers expected, if given.
    pub expected_receivers: Option<u32>,
    /// Receivers that reported a verified copy.
    pub complete: usize,
    /// Every receiver that reported.
    pub receivers: Vec<ReceiverEntry>,
    /// Receivers dropped under the straggler policy.
    pub dropped: Vec<DroppedEntry>,
    /// Carousel passes started.
    pub passes: u32,
    /// Session id.
    pub session: u32,
    /// Final GRTT estimate, microseconds.
    pub grtt_us: u64,
    /// All sender counters.
    pub stats: SenderStats,
    /// Batched I/O counters (GSO batches, fallbacks, system calls).
    pub io: BatchStats,
    /// Most segments one GSO send could carry (1: no GSO).
    pub gso_segments: usize,
    /// CPU seconds (user + system) of the send loop's thread from the first datagram on
    /// (source hashing and the encoding workers excluded).
    pub loop_cpu_seconds: f64,
}

/// Push `cfg.path` to the group. Returns when finished, timed out, or `shutdown` is set.
pub fn run(cfg: &SendConfig, shutdown: &AtomicBool) -> Result<SendReport, DriverError> {
    let wall = std::time::Instant::now();
    let source = Arc::new(FileSource::open(&cfg.path)?);
    let k = Layout::block_symbols_for(cfg.symbol_size, cfg.block_bytes);
    let layout = Layout::new(source.len(), cfg.symbol_size, k)?;
    let hashes = source.hash_blocks(layout.block_bytes())?;
    let hash_seconds = wall.elapsed().as_secs_f64();
    let (bh, oh) = (hashes.block_hashes, hashes.object_hash);
    let manifest =
        Manifest::single_file(source.name().clone(), source.len(), cfg.symbol_size, k, bh, oh)
            .map_err(crate::storage::StorageError::from)?;
    let iface = resolve_interface(&cfg.interface)?;
    let opts = SocketOptions { ttl: cfg.ttl, ..SocketOptions::default() };
    // The sender listens on the feedback port only, so it never reads its own data back.
    let feedback = feedback_addr(cfg.group)?;
    let (sock, info) = open_multicast(feedback, &iface, &opts)?;
    let mut sock = BatchSocket::new(sock).map_err(DriverError::io("set up batched I/O"))?;
    let gso_segments = sock.max_segments();
    tracing::info!(gso_segments, gro = sock.gro_enabled(), "batched I/O");
    let session = rand::rngs::OsRng.next_u32();
    let node = rand::rngs::OsRng.next_u32();
    tracing::info!(
        "sending {} ({} bytes, {} blocks of {} symbols x {} B) to {} via {} ({}), session {:08x}, rate {} bit/s, rcvbuf {} B",
        cfg.path.display(), layout.object_size(), layout.block_count(), k, cfg.symbol_size,
        cfg.group, iface.name, iface.addr, session, cfg.rate_bps, info.recv_buffer
    );
    let clock = Clock::new();
    let scfg = SenderConfig {
        session,
        node,
        rate_bps: cfg.rate_bps,
        fec_overhead: cfg.fec_overhead,
        auto_parity: cfg.auto_parity,
        repeat: cfg.repeat,
        straggler: cfg.straggler,
        expected_receivers: cfg.expected_receivers,
        linger: cfg.linger,
        // Encoders are ~2 MiB each (data plus intermediate symbols): 12 bound the sender's
        // memory while covering the read-ahead and the repairs of recent blocks; an evicted
        // block is read and encoded again on a worker if a late NAK asks for it.
        cache_blocks: 12,
        // The token bucket holds one GSO batch at most, so no 1 ms window carries more than
        // the rate plus one batch.
        burst_bytes: crate::net::batch::MAX_GSO_BYTES,
        ..SenderConfig::default()
    };
    let mut sender = Sender::new(scfg, &manifest, clock.now())?;
    let src = Arc::clone(&source);
    let mut workers = Workers::new(cfg.workers, "mcast-prep", move |req: BlockRequest| {
        let prepared = src
            .read_at(req.offset, req.len)
            .map_err(|e| e.to_string())
            .and_then(|data| req.prepare(data).map_err(|e| e.to_string()));
        (req.block, prepared)
    })
    .map_err(DriverError::io("spawn workers"))?;
    let progress = cfg.progress.then(|| progress_bar(layout.object_size()));
    let group = SocketAddr::V4(cfg.group);
    let mut tbuf = Vec::with_capacity(usize::from(cfg.symbol_size) + 64);
    let mut batch = TxBatch::new();
    // Wake this much after the pacer's deadline, so that each wake-up sends a batch.
    let slack = pace_slack(cfg.rate_bps);
    let mut status = SendStatus::Complete;
    let mut last_progress = std::time::Instant::now();
    let cpu_at_start = thread_cpu_seconds();
    loop {
        if shutdown.load(Ordering::Relaxed) {
            status = SendStatus::Interrupted;
            break;
        }
        if cfg.timeout.is_some_and(|t| wall.elapsed() >= t) {
            status = SendStatus::Timeout;
            break;
        }
        sock.recv(1024, |from, d| sender.handle_datagram(clock.now(), from, d))
            .map_err(DriverError::io("recv"))?;
        while let Some((block, prepared)) = workers.try_recv() {
            match prepared {
                Ok(enc) => sender.handle_block(block, enc)?,
                Err(reason) => {
                    tracing::error!("block {block} cannot be read: {reason}");
                    sender.handle_block_failed(block);
                }
            }
        }
        let now = clock.now();
        sender.handle_timeout(now);
        while sender.poll_transmit(now, &mut tbuf).is_some() {
            batch.push(&mut sock, group, &tbuf).map_err(DriverError::io("send"))?;
        }
        batch.flush(&mut sock).map_err(DriverError::io("send"))?;
        while let Some(ev) = sender.poll_event() {
            match ev {
                Event::NeedBlock(req) => workers.submit(req),
                Event::ReceiverReport(r) => {
                    let ok = r.report.status == ReportStatus::Complete
                        && r.report.object_hash == manifest.object_hash;
                    tracing::info!(
                        "receiver {:08x} at {} reported {} after {} ms ({} NAKs)",
                        r.node,
                        r.addr,
                        if ok { "complete" } else { "FAILED" },
                        r.report.elapsed_ms,
                        r.report.naks_sent
                    );
                }
                Event::ReceiverDropped { node, loss_ppm, charged } => tracing::warn!(
                    "receiver {node:08x} dropped as a straggler: loss {:.1} %, {charged} repair \
                     symbols asked for",
                    f64::from(loss_ppm) / 1e4
                ),
                Event::BlockUnavailable { block } => {
                    tracing::error!("block {block} is unavailable: receivers lacking it will fail")
                }
                Event::Finished => tracing::info!("done; answering late reports briefly"),
            }
        }
        if let Some(pb) = &progress {
            if last_progress.elapsed() >= Duration::from_millis(100) {
                last_progress = std::time::Instant::now();
                let s = sender.stats();
                pb.set_position(
                    (s.data_packets * u64::from(cfg.symbol_size)).min(layout.object_size()),
                );
                pb.set_message(format!(
                    "{} reported, {} NAKs, {} repairs",
                    sender.receivers().len(),
                    s.naks_received,
                    s.repair_packets
                ));
            }
        }
        if sender.leave_at().is_some_and(|t| clock.now() >= t) {
            break;
        }
        let max_wait = if workers.in_flight() > 0 { BLOCK_POLL } else { IDLE_POLL };
        wait_until(sock.socket(), &clock, sender.poll_timeout().map(|t| t + slack), max_wait)
            .map_err(DriverError::io("poll"))?;
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    let receivers: Vec<ReceiverEntry> = sender
        .receivers()
        .values()
        .map(|r| {
            let ok = r.report.status == ReportStatus::Complete
                && r.report.object_hash == manifest.object_hash
                && r.report.bytes == manifest.object_size;
            ReceiverEntry {
                id: r.node,
                addr: r.addr.to_string(),
                status: if ok { "complete" } else { "failed" },
                bytes: r.report.bytes,
                naks_sent: r.report.naks_sent,
                naks_suppressed: r.report.naks_suppressed,
                seconds: f64::from(r.report.elapsed_ms) / 1000.0,
                reported_at: r.at.as_micros() as f64 / 1e6,
            }
        })
        .collect();
    let complete = receivers.iter().filter(|r| r.status == "complete").count();
    let mut dropped: Vec<DroppedEntry> = sender
        .group()
        .dropped()
        .map(|(id, m)| DroppedEntry {
            id,
            loss: f64::from(m.loss_ppm.unwrap_or(0)) / 1e6,
            repairs_charged: m.charged,
        })
        .collect();
    dropped.sort_by_key(|d| d.id);
    if status == SendStatus::Complete
        && cfg.expected_receivers.is_some_and(|n| complete < n as usize)
    {
        status = SendStatus::Incomplete;
    }
    let seconds = wall.elapsed().as_secs_f64();
    let stats = sender.stats().clone();
    Ok(SendReport {
        status,
        path: cfg.path.clone(),
        bytes: layout.object_size(),
        seconds,
        hash_seconds,
        goodput_mbps: layout.object_size() as f64 * 8.0 / seconds / 1e6,
        data_packets: stats.data_packets,
        repair_packets: stats.repair_packets,
        naks_received: stats.naks_received,
        expected_receivers: cfg.expected_receivers,
        complete,
        receivers,
        dropped,
        passes: sender.pass(),
        session,
        grtt_us: sender.grtt().as_micros() as u64,
        stats,
        io: sock.stats(),
        gso_segments,
        loop_cpu_seconds: thread_cpu_seconds() - cpu_at_start,
    })
}
