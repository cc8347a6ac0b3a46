//! The receiver role: run the sans-IO [`Receiver`] on the shared
//! [driver loop](crate::net::driver), decode short blocks on worker threads (a block that lost
//! nothing is copied there too), write decoded blocks into a temp file beside the destination
//! on a writer thread (`writer.rs`, bounded queue; a block the hash list later refutes is
//! written again), place it once every block verified
//! (fsync and rename; no re-read unless `verify_readback`), and build the report. [`run`] is what
//! `mcast-recv` calls for each object, on a socket it opened with [`open_socket`]; tests can
//! call it in-process too.
//!
//! Faults end the receive at once (`faults` words them): the first storage error (or too
//! little free space for the object when the manifest arrives) aborts the sink, which removes
//! the staged data, and is reported to the sender; no session within the idle timeout, or a
//! locked sender silent for the session timeout, ends it as timed out; an Abort from the
//! sender ends it as failed. While no session is locked, a line on stderr says so now and then.

mod faults;
mod previous;
pub mod repairer;
mod writer;

pub use faults::{DEFAULT_IDLE_TIMEOUT, DEFAULT_SESSION_TIMEOUT};

use crate::net::batch::{recv_buffer_for_rate, socket_drops, udp_rcvbuf_errors, BatchSocket};
use crate::net::driver::{self, Context, Destinations, DriverConfig, Exit, Io, Role};
use crate::net::io::{fmt_bytes, thread_cpu_seconds, Clock, Progress, Workers, PROGRESS_EVERY};
use crate::net::source::{clean_output, open_output_resuming, TreeCounts};
use crate::net::DriverError;
use crate::net::{
    feedback_addr, open_multicast, resize_recv_buffer, resolve_interface, warn_recv_buffer_once,
    SocketOptions,
};
use crate::proto::auth::{KeyConfig, Keyring};
use crate::proto::manifest::Manifest;
use crate::proto::receiver::{
    default_host_name, DecodeJob, Decoded, Event, Outcome, Receiver, ReceiverConfig,
};
use crate::proto::time::{Duration, Instant};
use crate::storage::StorageError;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

pub use crate::net::recv_report::{RecvReport, RecvStatus};

/// Settings of a receiver: the core's [`ReceiverConfig`] plus what the driver needs.
#[derive(Debug, Clone)]
pub struct RecvConfig {
    /// Multicast group and data port.
    pub group: SocketAddr,
    /// Where objects go: the directory a single file is placed in, or a tree's root.
    pub output: PathBuf,
    /// A tree may replace an existing one at `output` (swapped atomically).
    pub replace: bool,
    /// How an image push is placed (`--to-device`: `output` is the device).
    pub image: crate::storage::image_sink::ImageTarget,
    /// The core's settings (node id, backoff seed, sessions to skip, NAK pacing, memory ...).
    pub receiver: ReceiverConfig,
    /// Share of incoming datagrams to discard on purpose (tests, lab).
    pub drop_rate: f64,
    /// Seed for `drop_rate`.
    pub drop_seed: u64,
    /// Give up after this long.
    pub timeout: Option<Duration>,
    /// Create this file once the loop runs (the socket has joined the group by then).
    pub ready_file: Option<PathBuf>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Before placing the file, read every block back and compare it with the verified hashes
    /// (for disks one does not trust); off by default: the blocks were verified in memory.
    pub verify_readback: bool,
    /// Threads decoding blocks.
    pub workers: usize,
    /// Receive buffer the socket was opened with (asked for, bytes); it is grown to
    /// [`recv_buffer_for_rate`] of the announced rate when that is more.
    pub recv_buffer: usize,
    /// The loop's own settings.
    pub driver: DriverConfig,
    /// Keyed mode: accept only sealed datagrams, seal feedback (`None`: open mode).
    pub key: Option<KeyConfig>,
    /// The interface joined on, as given (for the "waiting for a sender" line only).
    pub interface: String,
    /// When the manifest arrives, compare the free space where the object is staged with its
    /// size and fail at once if it is short (off: try anyway, e.g. for a sparse file).
    pub space_check: bool,
    /// Daemon mode: chooses each push's destination from its manifest instead of `output`
    /// (see [`crate::net::daemon`]); `None`: every push goes to `output`.
    pub chooser: Option<std::sync::Arc<dyn crate::net::daemon::OutputChooser>>,
    /// Once the hash list verified before the payload (a `--changed-only` or signed sender),
    /// take the blocks that match from the version already at `output` (see
    /// `recv/previous.rs`); off: fetch everything.
    pub reuse_previous: bool,
    /// `--repairer`: run a local repairer beside the receiver (see `recv/repairer.rs`).
    pub repairer: Option<repairer::RepairSettings>,
}

impl RecvConfig {
    /// A receiver of `group` placing objects in `output`, with the defaults of `mcast-recv`:
    /// a random node id and backoff seed, no injected loss, one worker, no timeout, the
    /// [`DEFAULT_IDLE_TIMEOUT`] and [`DEFAULT_SESSION_TIMEOUT`], the free-space check on.
    pub fn new(group: SocketAddr, output: impl Into<PathBuf>) -> Self {
        RecvConfig {
            group,
            output: output.into(),
            replace: false,
            image: Default::default(),
            receiver: ReceiverConfig {
                node: rand::rngs::OsRng.next_u32(),
                seed: rand::rngs::OsRng.next_u64(),
                idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
                session_timeout: Some(DEFAULT_SESSION_TIMEOUT),
                ..ReceiverConfig::default()
            },
            drop_rate: 0.0,
            drop_seed: 1,
            timeout: None,
            ready_file: None,
            progress: false,
            verify_readback: false,
            workers: 1,
            recv_buffer: SocketOptions::default().recv_buffer,
            driver: DriverConfig::default(),
            key: None,
            interface: String::new(),
            space_check: true,
            chooser: None,
            reuse_previous: true,
            repairer: None,
        }
    }
}

/// Open a receiver's socket: bound to the group's port, joined on `interface` (a name or an
/// address). `opts.recv_buffer` should be `RecvConfig::recv_buffer`.
pub fn open_socket(
    group: SocketAddr,
    interface: &str,
    opts: &SocketOptions,
) -> Result<BatchSocket, DriverError> {
    let iface = resolve_interface(interface)?;
    let (sock, info) = open_multicast(group, &iface, opts)?;
    tracing::info!(
        "joined {group} on {} ({}), receive buffer {}",
        iface.name,
        iface.addr,
        fmt_bytes(info.recv_buffer as u64 / 2)
    );
    BatchSocket::new(sock).map_err(DriverError::io("set up batched I/O"))
}

/// The receiver's handler of its endpoint's events.
struct RecvRole<'a> {
    cfg: &'a RecvConfig,
    receiver: repairer::RecvEndpoint,
    wall: std::time::Instant,
    drop_rng: ChaCha8Rng,
    dropped_on_purpose: u64,
    /// The next datagram handed over arrived marked ECN Congestion Experienced.
    ce_next: bool,
    first_datagram_seconds: Option<f64>,
    /// The staging sink, on its writer thread.
    sink: Option<writer::Writer>,
    placed: Placed,
    sized_for_rate: bool,
    /// When the socket's drop counter was last read for rate control.
    drops_read_at: Option<Instant>,
    recv_buffer: usize,
    recv_buffer_requested: usize,
    progress: Option<Progress>,
    last_progress: std::time::Instant,
    last_waiting_line: std::time::Instant,
    finished: Option<Outcome>,
    /// The search of the previous version (only what changed is fetched).
    previous: previous::State,
}

struct Placed {
    received_seconds: Option<f64>,
    /// The last payload block written, and the object placed (seconds from the start).
    last_block_seconds: Option<f64>,
    placed_seconds: Option<f64>,
    path: Option<PathBuf>,
    bytes: u64,
    size: Option<u64>,
    held: u64,
    /// Bytes of the blocks an interrupted earlier run had staged (resumed, not fetched).
    resumed: u64,
    error: Option<String>,
    tree: Option<TreeCounts>,
}

impl RecvRole<'_> {
    fn handle_event(&mut self, now: Instant, ev: Event, workers: &mut Workers<DecodeJob, Decoded>) {
        match ev {
            Event::Manifest(m) => {
                tracing::info!("receiving {}", m.summary());
                self.placed.tree = TreeCounts::of_manifest(&m);
                self.placed.size = Some(m.object_size);
                let output = match self.cfg.chooser.as_ref().map(|c| c.choose(&m)) {
                    None => self.cfg.output.clone(),
                    Some(Ok(output)) => output,
                    Some(Err(why)) => return self.storage_failed(now, why),
                };
                self.previous.manifest = Some(m.clone());
                self.previous.output = Some(output.clone());
                self.receiver.handle_manifest(&m, &output);
                let opened = if m.image().is_some() || self.cfg.image.device {
                    crate::storage::image_sink::open(&output, &m, &self.cfg.image)
                } else {
                    open_output_resuming(&output, &m, self.cfg.replace)
                };
                match opened {
                    Ok((s, held)) => {
                        // Bytes held from an interrupted run take no more space.
                        let resumed = crate::storage::resume::held_bytes(&m, &held);
                        if let Some(why) = self.space_shortage(&output, &m, resumed) {
                            // What an earlier run staged stays, for when there is room.
                            if resumed > 0 {
                                s.suspend()
                            } else {
                                s.abort()
                            }
                            return self.storage_failed(now, why);
                        }
                        let dest = s.destination().to_path_buf();
                        match writer::Writer::start(s) {
                            Ok(w) => self.sink = Some(w),
                            Err(e) => {
                                let e = StorageError::io("start the block writer for", &dest, e);
                                return self
                                    .storage_failed(now, faults::storage_reason(&e, 0, None));
                            }
                        }
                        self.placed.path = Some(dest);
                        // Blocks an interrupted run staged: not fetched again.
                        self.receiver.handle_held(now, &held);
                        self.placed.resumed = resumed;
                        self.placed.held += self.placed.resumed;
                    }
                    Err(e) => return self.storage_failed(now, faults::storage_reason(&e, 0, None)),
                }
                if self.cfg.progress {
                    self.progress = Some(Progress::new("receiving", m.object_size));
                }
            }
            // Copy or decode, and hash: never on this loop.
            Event::Decode(job) => workers.submit(job),
            Event::Block { block, offset, data, rewrite, hash } => {
                // Each block is written once (zero blocks stay holes), again only when the
                // hash list refuted what was written; on the writer thread, not this loop.
                if let Some(s) = self.sink.as_mut() {
                    if let Err(e) = s.write(writer::Write { block, offset, data, rewrite, hash }) {
                        self.write_failed(now, &e);
                    }
                }
            }
            Event::Complete { bytes, hashes } => {
                // Every block was queued for writing: wait for the writes and their outcomes.
                if let Some(Err(e)) = self.sink.as_mut().map(|s| s.flush()) {
                    self.write_failed(now, &e);
                }
                self.drain_written(now);
                let received = self.wall.elapsed().as_secs_f64();
                if let Some(p) = self.progress.as_mut() {
                    p.finish(&format!("{} NAKs", self.receiver.stats().naks_sent));
                }
                let first = self.first_datagram_seconds.unwrap_or(0.0);
                let readback = self.cfg.verify_readback;
                tracing::info!(
                    "all {} received and verified in {:.2} s (from the first datagram); placing{}",
                    fmt_bytes(bytes),
                    received - first,
                    if readback { " after reading back" } else { "" }
                );
                self.placed.received_seconds = Some(received);
                let result = match (self.sink.take(), self.placed.error.clone()) {
                    (Some(s), None) => s
                        .finish(hashes, readback)
                        .map_err(|e| faults::storage_reason(&e, bytes, None)),
                    (_, Some(e)) => Err(e),
                    (None, None) => Err("no destination file".to_string()),
                };
                if let (Ok(hash), Some(c)) = (&result, &self.cfg.chooser) {
                    c.placed(*hash);
                }
                if let Err(e) = &result {
                    self.placed.error = Some(e.clone());
                    self.placed.path = None;
                }
                self.receiver.handle_placed(self.placed.path.as_deref().filter(|_| result.is_ok()));
                self.placed.bytes = bytes;
                let placed_at = self.wall.elapsed().as_secs_f64();
                let took = placed_at - received;
                if result.is_ok() {
                    self.placed.placed_seconds = Some(placed_at);
                }
                match &result {
                    Ok(_) => tracing::info!(
                        "placed in {took:.2} s (fsync{}, rename)",
                        if readback { ", read back" } else { "" }
                    ),
                    Err(e) => tracing::error!("not placed: {e}"),
                }
                self.receiver.handle_stored(now, result);
            }
            Event::Finished(outcome) => {
                self.receiver.handle_finished(now);
                self.finished = Some(outcome)
            }
        }
    }
}

impl RecvRole<'_> {
    /// Take the outcomes of finished writes: count the bytes held, hand each block to the
    /// local repairer, or end the receive at the first failure.
    fn drain_written(&mut self, now: Instant) {
        while let Some(w) = self.sink.as_mut().and_then(|s| s.try_written()) {
            self.placed.last_block_seconds = Some(self.wall.elapsed().as_secs_f64());
            match w.result {
                Ok(()) => {
                    if !w.rewrite {
                        self.placed.held += w.data.len() as u64;
                    }
                    self.receiver.handle_block(now, w.block, w.data);
                }
                Err(e) => self.write_failed(now, &e),
            }
        }
    }

    /// The first storage error: abort the sink at once (its staged data goes) and give up,
    /// reporting `why` to the sender (the core logs it). Later ones change nothing.
    fn storage_failed(&mut self, now: Instant, why: String) {
        if self.placed.error.is_some() {
            return;
        }
        if let Some(s) = self.sink.take() {
            s.abort();
        }
        self.placed.path = None;
        self.placed.error = Some(why.clone());
        self.receiver.handle_storage_error(now, why);
    }

    fn write_failed(&mut self, now: Instant, e: &StorageError) {
        let why = faults::storage_reason(e, self.placed.held, self.placed.size);
        self.storage_failed(now, why);
    }

    /// Why the staging location for `output` cannot hold the object of `m`, if it cannot (unchecked when
    /// `space_check` is off, or when the file system cannot say).
    fn space_shortage(&self, output: &std::path::Path, m: &Manifest, held: u64) -> Option<String> {
        if !self.cfg.space_check || self.cfg.image.device {
            return None;
        }
        let dir = faults::staging_dir(output, m);
        match faults::free_space(&dir) {
            Ok(free) => faults::space_reason(&dir, free, m.object_size.saturating_sub(held)),
            Err(e) => {
                tracing::warn!("cannot tell the free space in {}: {e}", dir.display());
                None
            }
        }
    }

    /// While no session is locked, say so every [`faults::WAITING_EVERY`].
    fn note_waiting(&mut self) {
        if self.receiver.session_id().is_some()
            || self.last_waiting_line.elapsed() < faults::WAITING_EVERY
        {
            return;
        }
        self.last_waiting_line = std::time::Instant::now();
        tracing::info!("{}", self.waiting_line());
    }

    fn waiting_line(&self) -> String {
        faults::waiting_line(
            &self.cfg.group.to_string(),
            &self.cfg.interface,
            self.wall.elapsed(),
            self.cfg.receiver.idle_timeout,
        )
    }
}

/// How often the receiver reads its socket's drop counter for rate control.
const DROPS_EVERY: Duration = Duration::from_millis(5);

impl Role for RecvRole<'_> {
    type Endpoint = repairer::RecvEndpoint;
    type Job = DecodeJob;
    type Done = Decoded;

    fn endpoint(&mut self) -> &mut repairer::RecvEndpoint {
        &mut self.receiver
    }

    fn endpoint_ref(&self) -> &repairer::RecvEndpoint {
        &self.receiver
    }

    fn handle_ce_mark(&mut self) {
        self.ce_next = true;
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.first_datagram_seconds.is_none() {
            self.first_datagram_seconds = Some(self.wall.elapsed().as_secs_f64());
        }
        // A datagram's CE mark goes with it (and goes away with it when dropped on purpose).
        let ce = std::mem::take(&mut self.ce_next);
        if self.cfg.drop_rate > 0.0 && self.drop_rng.gen::<f64>() < self.cfg.drop_rate {
            self.dropped_on_purpose += 1;
        } else {
            if ce {
                self.receiver.note_ce_mark();
            }
            self.receiver.handle_datagram(now, from, data);
        }
    }

    fn handle_done(&mut self, now: Instant, done: Decoded) -> Result<(), DriverError> {
        self.receiver.handle_decoded(now, done);
        Ok(())
    }

    fn handle_events(
        &mut self,
        now: Instant,
        cx: &mut Context<'_, DecodeJob, Decoded>,
    ) -> Result<(), DriverError> {
        self.drain_written(now);
        while let Some(ev) = self.receiver.poll_event() {
            self.handle_event(now, ev, cx.workers);
        }
        self.receiver.after_events(now);
        self.search_previous(now);
        if !self.sized_for_rate {
            if let Some(rate) = self.receiver.announced_rate() {
                // Enough buffer for 100 ms of the announced rate, so a busy moment on this
                // host does not become loss.
                self.sized_for_rate = true;
                let want = recv_buffer_for_rate(rate);
                if want > self.recv_buffer_requested {
                    self.recv_buffer_requested = want;
                    self.recv_buffer = resize_recv_buffer(cx.socket.socket(), want)?.0;
                }
                warn_recv_buffer_once(self.recv_buffer, rate);
            }
        }
        // The socket's drops (every 5 ms): rate control tells this host's loss from the path's.
        if self.drops_read_at.is_none_or(|t| now.saturating_duration_since(t) >= DROPS_EVERY) {
            self.drops_read_at = Some(now);
            if let Some(d) = socket_drops(cx.socket.socket()) {
                self.receiver.note_socket_drops(now, d);
            }
        }
        Ok(())
    }

    fn tick(&mut self, _now: Instant) {
        self.note_waiting();
        let naks = self.receiver.stats().naks_sent;
        let Some(p) = self.progress.as_mut() else { return };
        if self.last_progress.elapsed() >= PROGRESS_EVERY {
            self.last_progress = std::time::Instant::now();
            p.update(self.placed.held, &format!("{naks} NAKs"));
        }
    }

    fn is_done(&self, now: Instant) -> bool {
        let placed = matches!(self.finished, Some(Outcome::Complete | Outcome::Unacknowledged));
        self.finished.is_some() && !self.receiver.lingers(now, placed)
    }
}

/// Receive one object over `sock` (from [`open_socket`]). Returns when it is placed (or
/// failed), on timeout, or when `shutdown` is cancelled. An unfinished object leaves no file
/// behind and any previous file untouched. The socket may be used again for the next object
/// (add the session to `cfg.receiver.skip_sessions`).
pub async fn run(
    sock: &mut BatchSocket,
    cfg: &RecvConfig,
    shutdown: &CancellationToken,
) -> Result<RecvReport, DriverError> {
    let wall = std::time::Instant::now();
    let started_unix = crate::net::recv_report::unix_seconds();
    let cpu_at_start = thread_cpu_seconds();
    let stale = clean_output(&cfg.output)?;
    if stale > 0 {
        tracing::info!("removed {stale} stale temp(s) in or beside {}", cfg.output.display());
    }
    let rcvbuf_errors_before = udp_rcvbuf_errors();
    let drops_before = socket_drops(sock.socket());
    let recv_buffer = socket2::SockRef::from(sock.socket())
        .recv_buffer_size()
        .map_err(DriverError::io("get SO_RCVBUF"))?;
    if let Some(f) = &cfg.ready_file {
        std::fs::write(f, b"ready\n").map_err(DriverError::io("write ready file"))?;
    }
    let mut workers: Workers<DecodeJob, Decoded> =
        Workers::new(cfg.workers, "mcast-decode", DecodeJob::run)
            .map_err(DriverError::io("spawn workers"))?;
    let mut receiver_cfg = cfg.receiver.clone();
    if let Some(trust) = receiver_cfg.trust.as_mut() {
        // Signed mode: the versions already held for this output (refused unless newer).
        trust.held = crate::net::signing::load_held(&cfg.output)?;
    }
    let mut role = RecvRole {
        cfg,
        receiver: repairer::RecvEndpoint::new(
            Receiver::new(receiver_cfg),
            cfg.repairer.as_ref(),
            cfg.receiver.node,
            cfg.receiver.seed,
            cfg.key.is_some(),
            Instant::ZERO,
        ),
        wall,
        drop_rng: ChaCha8Rng::seed_from_u64(cfg.drop_seed),
        dropped_on_purpose: 0,
        ce_next: false,
        first_datagram_seconds: None,
        sink: None,
        placed: Placed {
            received_seconds: None,
            last_block_seconds: None,
            placed_seconds: None,
            path: None,
            bytes: 0,
            size: None,
            held: 0,
            resumed: 0,
            error: None,
            tree: None,
        },
        sized_for_rate: false,
        drops_read_at: None,
        recv_buffer,
        recv_buffer_requested: cfg.recv_buffer,
        progress: None,
        last_progress: std::time::Instant::now(),
        last_waiting_line: std::time::Instant::now(),
        finished: None,
        previous: previous::State::default(),
    };
    tracing::info!("{}", role.waiting_line());
    let clock = Clock::new();
    let timeout = cfg.timeout.map(|t| clock.now() + t);
    let dest = Destinations::new(cfg.group, feedback_addr(cfg.group)?);
    let mut auth = Keyring::new(cfg.key.as_ref(), crate::net::keyfile::nonce_prefix());
    let exit = driver::run(
        Io { socket: sock, dest, workers: &mut workers, auth: &mut auth },
        &mut role,
        &clock,
        timeout,
        shutdown,
        &cfg.driver,
    )
    .await?;
    drop(workers);
    drop(role.progress.take());
    // An unfinished sink is dropped here: its temp file goes, the destination is untouched;
    // unless interrupted: then what it staged stays for a resume.
    match role.sink.take() {
        Some(s) if exit == Exit::Interrupted => s.suspend(),
        s => drop(s),
    }
    let status = match (exit, role.finished.take()) {
        // A repairer that placed its copy and stayed for the push ends as it finished.
        (_, Some(Outcome::Complete)) if role.receiver.is_repairer() => RecvStatus::Complete,
        (_, Some(Outcome::Unacknowledged)) if role.receiver.is_repairer() => {
            RecvStatus::Unacknowledged
        }
        (Exit::Timeout, _) => RecvStatus::Timeout,
        (Exit::Interrupted, _) => RecvStatus::Interrupted,
        (Exit::Done, Some(Outcome::Complete)) => RecvStatus::Complete,
        (Exit::Done, Some(Outcome::Unacknowledged)) => RecvStatus::Unacknowledged,
        (Exit::Done, Some(Outcome::Failed(e))) => {
            role.placed.error.get_or_insert(e);
            RecvStatus::Failed
        }
        (Exit::Done, Some(Outcome::TimedOut(e))) => {
            role.placed.error.get_or_insert(e);
            RecvStatus::Timeout
        }
        (Exit::Done, None) => RecvStatus::Failed,
    };
    if !matches!(status, RecvStatus::Complete | RecvStatus::Unacknowledged) {
        // Nothing authentic ever arrived: say why rather than "nothing received".
        if let Some(why) = auth.diagnosis() {
            role.placed.error.get_or_insert(why);
        }
    }
    let stats = role.receiver.stats().clone();
    let kernel_drops =
        socket_drops(sock.socket()).map(|d| d.saturating_sub(drops_before.unwrap_or(0)));
    let udp_rcvbuf_errors =
        udp_rcvbuf_errors().zip(rcvbuf_errors_before).map(|(a, b)| a.saturating_sub(b));
    if let Some(d) = kernel_drops.filter(|d| *d > 0) {
        tracing::warn!(
            "the kernel dropped {d} datagrams on this socket (receive buffer full): this host \
             did not keep up, which is not network loss"
        );
    }
    let placed_ok = matches!(status, RecvStatus::Complete | RecvStatus::Unacknowledged);
    if let Some(a) = role.receiver.accepted().filter(|_| placed_ok) {
        crate::net::signing::record_held(&cfg.output, a.key_id, a.version)?;
    }
    if let Some(r) =
        role.receiver.refusals().filter(|r| r.any() && role.receiver.session_id().is_none())
    {
        // Signed mode and nothing trusted came: say why.
        let why = r.summary();
        tracing::warn!("no trusted push: {why}");
        role.placed.error.get_or_insert(format!("no trusted push: {why}"));
    }
    // One reading of the clock, so that first datagram + transfer never exceeds the total.
    let seconds = wall.elapsed().as_secs_f64();
    Ok(RecvReport {
        status,
        path: if placed_ok { role.placed.path } else { None },
        tree: role.placed.tree,
        bytes: if placed_ok { role.placed.bytes } else { role.placed.held },
        resumed_bytes: role.placed.resumed,
        size: role.placed.size,
        seconds,
        transfer_seconds: role
            .first_datagram_seconds
            .map(|first| role.placed.received_seconds.unwrap_or(seconds) - first),
        received_seconds: role.placed.received_seconds,
        first_datagram_seconds: role.first_datagram_seconds,
        last_block_seconds: role.placed.last_block_seconds,
        placed_seconds: role.placed.placed_seconds,
        started_unix,
        naks_sent: stats.naks_sent,
        naks_suppressed: stats.naks_suppressed,
        error: role.placed.error,
        session: role.receiver.session_id(),
        node: cfg.receiver.node,
        host: cfg
            .receiver
            .host
            .clone()
            .unwrap_or_else(|| default_host_name(cfg.receiver.node))
            .to_string(),
        welcomed: role.receiver.hello_state().map(|(welcomed, _)| welcomed),
        dropped_on_purpose: role.dropped_on_purpose,
        recv_buffer: role.recv_buffer,
        recv_buffer_requested: role.recv_buffer_requested,
        kernel_drops,
        udp_rcvbuf_errors,
        io: sock.stats(),
        loop_cpu_seconds: (thread_cpu_seconds() - cpu_at_start).max(0.0),
        auth: *auth.counters(),
        stats,
        signed: role
            .receiver
            .accepted()
            .map(|a| crate::net::signing::SignedEntry::new(&a.key_id, a.version)),
        refused: role.receiver.refusals().map(|r| r.summary()),
        repairer: role.receiver.report(),
    })
}
