//! The sender role: build the manifest from a stat of the source (no read), then run the
//! sans-IO [`Sender`] on the shared [driver loop](crate::net::driver) with blocks read, hashed
//! and FEC-prepared on worker threads (the hashes make the hash list the sender announces after
//! the first pass), and build the push report. [`run`] is what `mcast-send` calls, on a socket it
//! opened with [`open_socket`]; tests can call it in-process too. A push that stops early
//! (interrupted, timed out, or failed) tells the receivers with a few Abort datagrams
//! ([`Sender::abort`]), sent within [`ABORT_GRACE`], so none of them waits for its session
//! timeout.

use crate::net::batch::{pace_slack, BatchSocket, MAX_GSO_BYTES};
use crate::net::driver::{self, Context, Destinations, DriverConfig, Exit, Io, Role};
use crate::net::io::{
    fmt_bytes, fmt_rate, thread_cpu_seconds, Clock, Progress, Workers, PROGRESS_EVERY,
};
use crate::net::source::{open_source, TreeCounts};
use crate::net::DriverError;
use crate::net::{feedback_addr, open_multicast, resolve_interface, SocketOptions};
use crate::proto::auth::{KeyConfig, Keyring};
use crate::proto::layout::Layout;
use crate::proto::manifest::Manifest;
use crate::proto::sender::{
    BlockRequest, Event, Expected, NodeOutcome, PreparedBlock, Sender, SenderConfig,
};
use crate::proto::sign::Signer;
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{AbortReason, ReportStatus};

use rand::RngCore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use crate::net::send_report::{
    CompressionEntry, DroppedEntry, FailedEntry, HostEntry, MissingEntry, ReceiverEntry,
    RosterLists, SendReport, SendStatus, UnexpectedEntry,
};

/// Encoded blocks the sender keeps by default. A block is its data (1 MiB by default) and,
/// once it needs repair, its encoder's intermediate symbols (~2 MiB more): 20 is the least
/// that interleaves windows of 8 blocks (the window, the previous one whose repairs NAKs ask
/// for, and the read-ahead of 4: `proto::wire::interleave::window_width`), so a burst of loss
/// costs each block a few symbols; with fewer the sender goes block by block. An evicted block
/// is read and encoded again on a worker if a late NAK asks for it.
pub const DEFAULT_CACHE_BLOCKS: usize = 20;

/// Longest a stopping sender waits for its Abort datagrams to go out.
pub const ABORT_GRACE: Duration = Duration::from_millis(200);

/// Settings of one push: the core's [`SenderConfig`] plus what the driver needs.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// File or directory to send.
    pub path: PathBuf,
    /// With a directory `path`: only these paths of it (relative to it); empty: all of it.
    pub extra_paths: Vec<PathBuf>,
    /// Multicast group and data port (the socket listens on port + 1).
    pub group: SocketAddr,
    /// The core's settings (rate, parity, carousel, stragglers, expected receivers, linger,
    /// block cache, token bucket ...).
    pub sender: SenderConfig,
    /// Symbol size `T`.
    pub symbol_size: u16,
    /// Target block size in bytes.
    pub block_bytes: u64,
    /// Give up after this long.
    pub timeout: Option<Duration>,
    /// Wait for exactly these receivers (host names or node ids) instead of
    /// `sender.expected_receivers` or the linger.
    pub expect: Option<Vec<Expected>>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Threads preparing blocks.
    pub workers: usize,
    /// The loop's own settings.
    pub driver: DriverConfig,
    /// Keyed mode: seal every datagram, accept only sealed feedback (`None`: open mode).
    pub key: Option<KeyConfig>,
    /// Signed mode: the key and the push's version (every block is hashed before the first
    /// datagram).
    pub signing: Option<SignSettings>,
    /// `--image`: `path` is a disk image or block device (`-`: standard input) sent as its
    /// data extents ([`ImageSource`](crate::storage::ImageSource)).
    pub image: Option<crate::storage::ImageOptions>,
    /// Compress every payload block with this codec before FEC (`--compress`).
    pub compress: Option<crate::proto::compress::Codec>,
}

/// Signed mode's settings of a push.
#[derive(Debug, Clone)]
pub struct SignSettings {
    /// The secret key.
    pub signer: Arc<Signer>,
    /// The push's version (receivers refuse one not newer than what they hold).
    pub version: u64,
    /// Threads hashing the source before the push.
    pub hash_threads: usize,
}

impl SendConfig {
    /// A push of `path` to `group` with the defaults of `mcast-send`: a random session and
    /// node id, [`DEFAULT_CACHE_BLOCKS`] cached blocks, a token bucket one GSO batch deep (so
    /// no 1 ms window carries more than the rate plus one batch), 1400-byte symbols in ~1 MiB
    /// blocks, one worker, no timeout, no progress bar.
    pub fn new(path: impl Into<PathBuf>, group: SocketAddr) -> Self {
        SendConfig {
            path: path.into(),
            extra_paths: Vec::new(),
            group,
            sender: SenderConfig {
                session: rand::rngs::OsRng.next_u32(),
                node: rand::rngs::OsRng.next_u32(),
                cache_blocks: DEFAULT_CACHE_BLOCKS,
                burst_bytes: MAX_GSO_BYTES,
                ..SenderConfig::default()
            },
            symbol_size: 1400,
            block_bytes: 1 << 20,
            timeout: None,
            expect: None,
            progress: false,
            workers: 1,
            driver: DriverConfig::default(),
            key: None,
            signing: None,
            image: None,
            compress: None,
        }
    }
}

/// Open the sender's socket for `group` on `interface` (a name or an address): it listens on
/// the feedback port (group port + 1) only, so it never reads its own data back.
pub fn open_socket(
    group: SocketAddr,
    interface: &str,
    opts: &SocketOptions,
) -> Result<BatchSocket, DriverError> {
    let iface = resolve_interface(interface)?;
    let (sock, info) = open_multicast(feedback_addr(group)?, &iface, opts)?;
    let sock = BatchSocket::new(sock).map_err(DriverError::io("set up batched I/O"))?;
    tracing::debug!(
        "sending to {group} via {} ({}), rcvbuf {} B, {} GSO segments, GRO {}",
        iface.name,
        iface.addr,
        info.recv_buffer,
        sock.max_segments(),
        sock.gro_enabled()
    );
    Ok(sock)
}

type Prepared = (u32, Result<PreparedBlock, String>);

/// The sender's handler of its endpoint's events.
struct SendRole<'a> {
    cfg: &'a SendConfig,
    /// The source, asked why a block was unavailable (a stream past its bound ends the push).
    source: Arc<dyn crate::storage::Source>,
    sender: Sender,
    object_size: u64,
    slack: Duration,
    progress: Option<Progress>,
    last_progress: std::time::Instant,
    /// The push's timeline, for the report.
    timeline: Timeline,
}

/// When the push passed its milestones, seconds from its start (see [`SendReport`]).
struct Timeline {
    wall: std::time::Instant,
    first_datagram: Option<f64>,
    payload_pass: Option<f64>,
    finished: Option<f64>,
}

impl Timeline {
    /// Note the milestones `s` shows passed by now (`size`: the payload's bytes).
    fn observe(&mut self, s: &crate::proto::stats::SenderStats, symbol_size: u16, size: u64) {
        if self.first_datagram.is_some() && self.payload_pass.is_some() {
            return;
        }
        let at = self.wall.elapsed().as_secs_f64();
        if s.bytes_sent > 0 {
            self.first_datagram.get_or_insert(at);
        }
        if payload_sent(s.data_packets, symbol_size, size) >= size {
            self.payload_pass.get_or_insert(at);
        }
    }
}

impl SendRole<'_> {
    /// The progress bar's status and the progress line's detail: receivers complete (of those
    /// `--expect` or `--receivers` asks for), failed, reported; NAKs and repairs.
    fn progress_detail(&self) -> (String, String) {
        let s = self.sender.stats();
        let tally = self.sender.roster().tally();
        let expected = self.cfg.expect.as_ref().map(Vec::len);
        let expected = expected.or(self.cfg.sender.expected_receivers.map(|n| n as usize));
        let (status, line) =
            crate::net::io::receivers_status(tally.completed.len(), tally.failed.len(), expected);
        let detail = format!(
            "{line}; {} reported, {} NAKs, {} repairs",
            self.sender.receivers().len(),
            s.naks_received,
            s.repair_packets
        );
        (status, detail)
    }
}

impl Role for SendRole<'_> {
    type Endpoint = Sender;
    /// A block to read and prepare, and whether to build its repair encoder now.
    type Job = (BlockRequest, bool);
    type Done = Prepared;

    fn endpoint(&mut self) -> &mut Sender {
        &mut self.sender
    }

    fn endpoint_ref(&self) -> &Sender {
        &self.sender
    }

    fn handle_done(
        &mut self,
        _now: Instant,
        (block, prepared): Prepared,
    ) -> Result<(), DriverError> {
        match prepared {
            Ok(prepared) => self.sender.handle_block(block, prepared)?,
            Err(reason) => {
                tracing::error!("block {block} cannot be read: {reason}");
                self.sender.handle_block_failed(block);
            }
        }
        Ok(())
    }

    fn handle_events(
        &mut self,
        _now: Instant,
        cx: &mut Context<'_, (BlockRequest, bool), Prepared>,
    ) -> Result<(), DriverError> {
        while let Some(ev) = self.sender.poll_event() {
            match ev {
                Event::NeedBlock(req) => cx.workers.submit((req, self.sender.expects_repair())),
                Event::ReceiverReport(r) => {
                    let ok = r.report.status == ReportStatus::Complete
                        && Some(r.report.object_hash) == self.sender.object_hash();
                    let host = self.sender.roster().get(r.node).and_then(|e| e.host.clone());
                    tracing::info!(
                        "receiver {:08x} ({}) at {} reported {} after {} ms ({} NAKs){}",
                        r.node,
                        host.as_ref().map_or("no name", |h| h.as_str()),
                        r.addr,
                        if ok { "complete" } else { "FAILED" },
                        r.report.elapsed_ms,
                        r.report.naks_sent,
                        if r.report.reason.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", r.report.reason)
                        }
                    );
                }
                Event::ReceiverDropped { node, loss_ppm, charged } => tracing::warn!(
                    "receiver {node:08x} dropped as a straggler: loss {:.1} %, {charged} repair \
                     symbols asked for",
                    f64::from(loss_ppm) / 1e4
                ),
                Event::BlockUnavailable { block } => {
                    if let Some(e) = self.source.failed() {
                        return Err(e.into());
                    }
                    tracing::error!("block {block} is unavailable: receivers lacking it will fail")
                }
                Event::Finished => {
                    self.timeline
                        .finished
                        .get_or_insert(self.timeline.wall.elapsed().as_secs_f64());
                    tracing::info!("done; answering late reports briefly")
                }
            }
        }
        Ok(())
    }

    fn tick(&mut self, _now: Instant) {
        let s = self.sender.stats();
        self.timeline.observe(s, self.cfg.symbol_size, self.object_size);
        let sent = payload_sent(s.data_packets, self.cfg.symbol_size, self.object_size);
        let Some(p) = self.progress.as_ref() else { return };
        // 100 % as soon as everything went out once, before any later log line; then on, so
        // the receivers completing show.
        if self.last_progress.elapsed() < PROGRESS_EVERY && !p.reaches_total(sent) {
            return;
        }
        self.last_progress = std::time::Instant::now();
        let (status, detail) = self.progress_detail();
        if let Some(p) = self.progress.as_mut() {
            p.set_status(status);
            p.update(sent, &detail);
        }
    }

    fn is_done(&self, now: Instant) -> bool {
        self.sender.leave_at().is_some_and(|t| now >= t)
    }

    fn wake_slack(&self) -> Duration {
        self.slack
    }
}

/// Push `cfg.path` to `cfg.group` over `sock` (from [`open_socket`]). Returns when finished,
/// timed out, or when `shutdown` is cancelled (status `interrupted`). Runs on the calling
/// tokio task; nothing is read before the first datagram but the source's length.
pub async fn run(
    sock: &mut BatchSocket,
    cfg: &SendConfig,
    shutdown: &CancellationToken,
) -> Result<SendReport, DriverError> {
    let wall = std::time::Instant::now();
    let started_unix = crate::net::recv_report::unix_seconds();
    let source: Arc<dyn crate::storage::Source> = match &cfg.image {
        Some(o) => crate::storage::open_image(&cfg.path, o)?,
        None => open_source(&cfg.path, &cfg.extra_paths)?,
    };
    let k = Layout::block_symbols_for(cfg.symbol_size, cfg.block_bytes);
    let layout = Layout::new(source.len(), cfg.symbol_size, k)?;
    let manifest = source
        .manifest(cfg.symbol_size, k)?
        .with_compression(cfg.compress.map(|c| c.block_codec()))
        .map_err(crate::storage::StorageError::from)?;
    tracing::info!(
        "sending {} ({}, {} blocks of {} symbols x {} B) to {}, session {:08x}, rate {}",
        cfg.path.display(),
        fmt_bytes(layout.object_size()),
        layout.block_count(),
        k,
        cfg.symbol_size,
        cfg.group,
        cfg.sender.session,
        fmt_rate(cfg.sender.rate_bps as f64)
    );
    let clock = Clock::new();
    let mut hash_seconds = 0.0;
    let mut sender = match &cfg.signing {
        None if cfg.sender.changed_only.is_some() => {
            // Only what changed: receivers need every block's hash before the payload.
            let t = std::time::Instant::now();
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let hashes = crate::net::signing::hash_blocks(&*source, &layout, threads)?;
            hash_seconds = t.elapsed().as_secs_f64();
            tracing::info!(
                "hashed {} blocks in {hash_seconds:.2} s on {threads} threads (--changed-only)",
                hashes.len()
            );
            Sender::new_prehashed(cfg.sender.clone(), &manifest, hashes, clock.now())?
        }
        None => Sender::new(cfg.sender.clone(), &manifest, clock.now())?,
        Some(sign) => {
            let t = std::time::Instant::now();
            let hashes = crate::net::signing::hash_blocks(&*source, &layout, sign.hash_threads)?;
            hash_seconds = t.elapsed().as_secs_f64();
            tracing::info!(
                "hashed {} blocks in {hash_seconds:.2} s on {} threads; signing version {} \
                 with key {}",
                hashes.len(),
                sign.hash_threads,
                sign.version,
                crate::proto::sign::hex_id(&sign.signer.key_id())
            );
            let cfg = cfg.sender.clone();
            Sender::new_signed(cfg, &manifest, hashes, &sign.signer, sign.version, clock.now())?
        }
    };
    if let Some(codec) = cfg.compress {
        sender.set_compression(codec)?;
    }
    if let Some(list) = &cfg.expect {
        sender.expect(list.clone());
    }
    let src = Arc::clone(&source);
    // Read, hash and encode: the block's hash goes into the hash list as the pass goes.
    let mut workers =
        Workers::new(cfg.workers, "mcast-prep", move |(req, repair): (BlockRequest, bool)| {
            let prepared = src
                .read_at(req.offset, req.len)
                .map_err(|e| e.to_string())
                .and_then(|data| req.prepare_with(data, repair).map_err(|e| e.to_string()));
            (req.block, prepared)
        })
        .map_err(DriverError::io("spawn workers"))?;
    let mut role = SendRole {
        cfg,
        source: Arc::clone(&source),
        sender,
        object_size: layout.object_size(),
        // Wake this much after the pacer's deadline, so that each wake-up sends a batch.
        slack: pace_slack(cfg.sender.rate_bps),
        progress: cfg.progress.then(|| Progress::new("sending", layout.object_size())),
        last_progress: std::time::Instant::now(),
        timeline: Timeline { wall, first_datagram: None, payload_pass: None, finished: None },
    };
    let timeout = cfg.timeout.map(|t| clock.now() + t.saturating_sub(wall.elapsed()));
    let dest = Destinations::new(cfg.group, feedback_addr(cfg.group)?);
    let cpu_at_start = thread_cpu_seconds();
    let mut auth = Keyring::new(cfg.key.as_ref(), crate::net::keyfile::nonce_prefix());
    // ECN-capable (ECT(0)) only when the rate answers congestion marks, as RFC 3168 asks of
    // whoever sets it: an AQM on the path then marks instead of dropping (`--rate auto`).
    sock.set_ecn_capable(matches!(
        cfg.sender.rate_control,
        crate::proto::rate::RateControl::Auto(_)
    ));
    let exit = driver::run(
        Io { socket: sock, dest, workers: &mut workers, auth: &mut auth },
        &mut role,
        &clock,
        timeout,
        shutdown,
        &cfg.driver,
    )
    .await;
    if let Some(mut p) = role.progress.take().filter(|_| matches!(exit, Ok(Exit::Done))) {
        let (status, detail) = role.progress_detail();
        p.set_status(status);
        p.finish(&detail);
    }
    let stop = match &exit {
        Ok(Exit::Done) => None,
        Ok(Exit::Interrupted) => Some((AbortReason::Interrupted, String::new())),
        Ok(Exit::Timeout) => Some((AbortReason::Timeout, "the sender's --timeout passed".into())),
        Err(e) => Some((AbortReason::SourceError, e.to_string())),
    };
    if let Some((reason, text)) = stop {
        tracing::info!("stopping ({}): telling the receivers", reason.describe());
        role.sender.abort(clock.now(), reason, &text);
        let io = Io { socket: &mut *sock, dest, workers: &mut workers, auth: &mut auth };
        let never = CancellationToken::new();
        let grace = Some(clock.now() + ABORT_GRACE);
        // Best effort: the push already ended, and its own error (if any) is the one to report.
        if let Err(e) = driver::run(io, &mut role, &clock, grace, &never, &cfg.driver).await {
            tracing::warn!("could not tell the receivers: {e}");
        }
    }
    let exit = exit?;
    let loop_cpu_seconds = (thread_cpu_seconds() - cpu_at_start).max(0.0);
    let mut report = report(&role.sender, cfg, &manifest, exit);
    report.seconds = wall.elapsed().as_secs_f64();
    // Unsigned, nothing is hashed ahead of sending (blocks are hashed on the prepare workers);
    // signed, every block is, before the first datagram.
    report.hash_seconds = hash_seconds;
    report.started_unix = started_unix;
    report.first_datagram_seconds = role.timeline.first_datagram;
    report.payload_pass_seconds = role.timeline.payload_pass;
    report.finished_seconds = role.timeline.finished;
    report.goodput_mbps = report.payload_bytes_sent as f64 * 8.0 / report.seconds / 1e6;
    report.io = sock.stats();
    report.gso_segments = sock.max_segments();
    report.loop_cpu_seconds = loop_cpu_seconds;
    report.auth = *auth.counters();
    if report.receivers.is_empty() {
        report.auth_error = auth.diagnosis();
    }
    Ok(report)
}

/// The report of a push that ended with `exit` (timing and I/O fields left at zero).
fn report(sender: &Sender, cfg: &SendConfig, manifest: &Manifest, exit: Exit) -> SendReport {
    let receivers: Vec<ReceiverEntry> = sender
        .receivers()
        .values()
        .map(|r| {
            let ok = r.report.status == ReportStatus::Complete
                && Some(r.report.object_hash) == sender.object_hash()
                && r.report.bytes == manifest.object_size;
            let roster = sender.roster().get(r.node);
            ReceiverEntry {
                id: r.node,
                host: roster.and_then(|e| e.host.as_ref()).map(ToString::to_string),
                addr: r.addr.to_string(),
                reason: match roster.and_then(|e| e.outcome.as_ref()) {
                    Some(NodeOutcome::Failed(why)) => Some(why.clone()),
                    _ => None,
                },
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
    let expected = cfg.sender.expected_receivers;
    let roster = RosterLists::of(sender.roster());
    let status = match exit {
        Exit::Done if roster.all_expected_complete() == Some(false) => SendStatus::Incomplete,
        Exit::Done if expected.is_some_and(|n| complete < n as usize) => SendStatus::Incomplete,
        Exit::Done if complete < receivers.len() => SendStatus::Incomplete,
        Exit::Done if expected.is_none() && roster.expected.is_none() && receivers.is_empty() => {
            SendStatus::Unconfirmed
        }
        Exit::Done => SendStatus::Complete,
        Exit::Timeout => SendStatus::Timeout,
        Exit::Interrupted => SendStatus::Interrupted,
    };
    let stats = sender.stats().clone();
    SendReport {
        status,
        path: cfg.path.clone(),
        tree: TreeCounts::of_manifest(manifest),
        bytes: manifest.object_size,
        skipped_blocks: stats.skipped_blocks,
        skipped_bytes: stats.skipped_bytes,
        payload_bytes_sent: match status {
            SendStatus::Complete => manifest.object_size.saturating_sub(stats.skipped_bytes),
            _ => payload_sent(stats.data_packets, cfg.symbol_size, manifest.object_size),
        },
        seconds: 0.0,
        hash_seconds: 0.0,
        started_unix: 0.0,
        first_datagram_seconds: None,
        payload_pass_seconds: None,
        finished_seconds: None,
        goodput_mbps: 0.0,
        data_packets: stats.data_packets,
        repair_packets: stats.repair_packets,
        naks_received: stats.naks_received,
        expected_receivers: expected,
        complete,
        receivers,
        roster,
        dropped,
        passes: sender.pass(),
        session: cfg.sender.session,
        grtt_us: sender.grtt().as_micros() as u64,
        rate_limited_by: sender.rate_summary().limited_by,
        rate: crate::net::send_report::RateEntry::of(&sender.rate_summary()),
        repairers: sender.repairer_stats().clone(),
        stats,
        io: Default::default(),
        gso_segments: 0,
        loop_cpu_seconds: 0.0,
        auth: Default::default(),
        auth_error: None,
        signed: cfg
            .signing
            .as_ref()
            .map(|s| crate::net::signing::SignedEntry::new(&s.signer.key_id(), s.version)),
        compression: sender.compression().map(|c| CompressionEntry::new(c, sender.stats())),
    }
}

/// Payload bytes covered by `data_packets` source symbols of `symbol_size`, at most `size` (the
/// few manifest symbols are counted too: an upper bound by a symbol or two).
fn payload_sent(data_packets: u64, symbol_size: u16, size: u64) -> u64 {
    data_packets.saturating_mul(u64::from(symbol_size)).min(size)
}
