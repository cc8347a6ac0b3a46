//! The receive loop: join the group, drive the sans-IO [`Receiver`], decode short blocks on
//! worker threads (a block that lost nothing is copied inline), write verified blocks into a
//! temp file beside the destination and place it only once the whole object verifies.
//! [`run_once`] is what `mcast-recv` calls for each object; tests can call it too.

use crate::net::batch::{
    recv_buffer_for_rate, socket_drops, udp_rcvbuf_errors, BatchSocket, BatchStats,
};
use crate::net::io::{progress_bar, thread_cpu_seconds, wait_until, Clock, Workers};
use crate::net::send::{BLOCK_POLL, IDLE_POLL};
use crate::net::socket::{
    feedback_addr, open_multicast, resize_recv_buffer, resolve_interface, SocketOptions,
};
use crate::net::DriverError;
use crate::proto::receiver::{DecodeJob, Decoded, Event, Outcome, Receiver, ReceiverConfig};
use crate::proto::stats::ReceiverStats;
use crate::proto::time::Duration;
use crate::proto::Dest;
use crate::storage::{clean_stale_temps, FileSink};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Settings of a receiver.
#[derive(Debug, Clone)]
pub struct RecvConfig {
    /// Multicast group and port.
    pub group: SocketAddrV4,
    /// Interface to join on (IPv4 address or name).
    pub interface: String,
    /// Directory the object is placed in.
    pub output: PathBuf,
    /// Share of incoming datagrams to discard on purpose (tests, lab).
    pub drop_rate: f64,
    /// Seed for `drop_rate`.
    pub drop_seed: u64,
    /// Give up after this long.
    pub timeout: Option<Duration>,
    /// Create this file once the group is joined.
    pub ready_file: Option<PathBuf>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Threads decoding short blocks.
    pub workers: usize,
    /// Sessions already received (not received again).
    pub skip_sessions: Vec<u32>,
    /// Multicast TTL of our feedback.
    pub ttl: u32,
}

/// How one reception ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecvStatus {
    /// Verified, placed, and the sender acknowledged the report.
    Complete,
    /// Verified and placed; the sender never acknowledged the report.
    Unacknowledged,
    /// Not placed: verification or storage failed.
    Failed,
    /// The timeout passed first; nothing placed.
    Timeout,
    /// Stopped by a signal; nothing placed.
    Interrupted,
}

/// The receiver report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct RecvReport {
    /// Outcome.
    pub status: RecvStatus,
    /// Where the object was placed.
    pub path: Option<PathBuf>,
    /// Payload bytes.
    pub bytes: u64,
    /// Wall time from start to the end of reception, seconds.
    pub seconds: f64,
    /// Seconds until every block was received and written (before the final verification).
    pub received_seconds: Option<f64>,
    /// Seconds until the first datagram arrived (so `received_seconds` minus this is the
    /// transfer time).
    pub first_datagram_seconds: Option<f64>,
    /// NAK datagrams sent.
    pub naks_sent: u64,
    /// NAK rounds suppressed.
    pub naks_suppressed: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Session received.
    pub session: Option<u32>,
    /// Datagrams discarded by `--drop-rate`.
    pub dropped_on_purpose: u64,
    /// Kernel receive buffer granted, bytes (as read back: twice the usable payload).
    pub recv_buffer: usize,
    /// Receive buffer asked for, sized from the announced rate.
    pub recv_buffer_requested: usize,
    /// Datagrams the kernel dropped on this socket because this host did not read them in time
    /// (receive buffer full), as opposed to loss in the network. `None` where unknown.
    pub kernel_drops: Option<u64>,
    /// Growth of the namespace-wide `Udp: RcvbufErrors` counter during the reception (all
    /// sockets of this network namespace together).
    pub udp_rcvbuf_errors: Option<u64>,
    /// Batched I/O counters (`recvmmsg` calls, GRO buffers).
    pub io: BatchStats,
    /// CPU seconds (user + system) of the receive loop's thread (the final verification
    /// included, the decoding workers excluded).
    pub loop_cpu_seconds: f64,
    /// All receiver counters.
    pub stats: ReceiverStats,
}

struct Placed {
    received_seconds: Option<f64>,
    path: Option<PathBuf>,
    bytes: u64,
    error: Option<String>,
}

/// Receive one object. Returns when it is placed (or failed), on timeout, or when `shutdown`
/// is set. An unfinished object leaves no file behind and any previous file untouched.
pub fn run_once(cfg: &RecvConfig, shutdown: &AtomicBool) -> Result<RecvReport, DriverError> {
    let wall = std::time::Instant::now();
    let stale = clean_stale_temps(&cfg.output)?;
    if stale > 0 {
        tracing::info!("removed {stale} stale temp file(s) in {}", cfg.output.display());
    }
    let iface = resolve_interface(&cfg.interface)?;
    let opts = SocketOptions { ttl: cfg.ttl, ..SocketOptions::default() };
    let (sock, info) = open_multicast(cfg.group, &iface, &opts)?;
    let rcvbuf_errors_before = udp_rcvbuf_errors();
    let drops_before = socket_drops(&sock);
    let mut recv_buffer = info.recv_buffer;
    let mut recv_buffer_requested = opts.recv_buffer;
    let mut sized_for_rate = false;
    let mut first_datagram_seconds = None;
    let mut sock = BatchSocket::new(sock).map_err(DriverError::io("set up batched I/O"))?;
    if let Some(f) = &cfg.ready_file {
        std::fs::write(f, b"ready\n").map_err(DriverError::io("write ready file"))?;
    }
    tracing::info!(
        "joined {} on {} ({}), rcvbuf {} B",
        cfg.group,
        iface.name,
        iface.addr,
        info.recv_buffer
    );
    let mut receiver = Receiver::new(ReceiverConfig {
        node: rand::rngs::OsRng.next_u32(),
        seed: rand::rngs::OsRng.next_u64(),
        skip_sessions: cfg.skip_sessions.clone(),
        ..ReceiverConfig::default()
    });
    let mut workers: Workers<DecodeJob, Decoded> =
        Workers::new(cfg.workers, "mcast-decode", DecodeJob::run)
            .map_err(DriverError::io("spawn workers"))?;
    let mut drop_rng = ChaCha8Rng::seed_from_u64(cfg.drop_seed);
    let mut dropped_on_purpose = 0u64;
    let clock = Clock::new();
    let group = SocketAddr::V4(cfg.group);
    let feedback = SocketAddr::V4(feedback_addr(cfg.group)?);
    let mut tbuf = Vec::with_capacity(2048);
    let mut sink: Option<FileSink> = None;
    let mut placed = Placed { received_seconds: None, path: None, bytes: 0, error: None };
    let mut progress = None;
    let mut last_progress = std::time::Instant::now();
    let status = loop {
        if shutdown.load(Ordering::Relaxed) {
            break RecvStatus::Interrupted;
        }
        if cfg.timeout.is_some_and(|t| wall.elapsed() >= t) {
            break RecvStatus::Timeout;
        }
        let first = &mut first_datagram_seconds;
        sock.recv(1024, |from, d| {
            if first.is_none() {
                *first = Some(wall.elapsed().as_secs_f64());
            }
            if cfg.drop_rate > 0.0 && drop_rng.gen::<f64>() < cfg.drop_rate {
                dropped_on_purpose += 1;
            } else {
                receiver.handle_datagram(clock.now(), from, d);
            }
        })
        .map_err(DriverError::io("recv"))?;
        while let Some(done) = workers.try_recv() {
            receiver.handle_decoded(clock.now(), done);
        }
        receiver.handle_timeout(clock.now());
        let mut finished = None;
        while let Some(ev) = receiver.poll_event() {
            match ev {
                Event::Manifest(m) => {
                    tracing::info!("receiving {:?}: {} bytes", m.summary(), m.object_size);
                    match FileSink::for_manifest(&cfg.output, &m) {
                        Ok(s) => {
                            placed.path = Some(s.final_path().to_path_buf());
                            sink = Some(s);
                        }
                        Err(e) => placed.error = Some(e.to_string()),
                    }
                    if cfg.progress {
                        progress = Some(progress_bar(m.object_size));
                    }
                }
                // Copy or decode, and hash: never on this loop.
                Event::Decode(job) => workers.submit(job),
                Event::Block { offset, data, .. } => {
                    if let Some(s) = sink.as_mut() {
                        // Each verified block is written once; zero blocks stay holes.
                        if let Err(e) = s.write_new_at(offset, &data) {
                            placed.error.get_or_insert(e.to_string());
                        }
                    }
                }
                Event::Complete { bytes, object_hash } => {
                    let received = wall.elapsed().as_secs_f64();
                    tracing::info!("all {bytes} bytes received after {received:.2} s; verifying");
                    placed.received_seconds = Some(received);
                    let result = match (sink.take(), placed.error.clone()) {
                        (Some(s), None) => s.finish(&object_hash).map_err(|e| e.to_string()),
                        (_, Some(e)) => Err(e),
                        (None, None) => Err("no destination file".to_string()),
                    };
                    if let Err(e) = &result {
                        placed.error = Some(e.clone());
                        placed.path = None;
                    }
                    placed.bytes = bytes;
                    let took = wall.elapsed().as_secs_f64() - received;
                    match &result {
                        Ok(_) => tracing::info!(
                            "verified and placed in {took:.2} s (fsync, re-read, BLAKE3, rename)"
                        ),
                        Err(e) => tracing::error!("not placed: {e}"),
                    }
                    receiver.handle_stored(clock.now(), result);
                }
                Event::Finished(outcome) => finished = Some(outcome),
            }
        }
        if !sized_for_rate {
            if let Some(rate) = receiver.announced_rate() {
                // Enough buffer for 100 ms of the announced rate, so a busy moment on this
                // host does not become loss.
                sized_for_rate = true;
                let want = recv_buffer_for_rate(rate);
                if want > recv_buffer_requested {
                    recv_buffer_requested = want;
                    recv_buffer = resize_recv_buffer(sock.socket(), want)?.0;
                }
            }
        }
        let now = clock.now();
        while let Some(t) = receiver.poll_transmit(now, &mut tbuf) {
            let to: &[SocketAddr] = match t.dest {
                Dest::All => &[group, feedback],
                Dest::Sender => &[feedback],
                Dest::Receivers => &[group],
            };
            for addr in to {
                sock.send(*addr, &tbuf, tbuf.len()).map_err(DriverError::io("send"))?;
            }
        }
        if let (Some(pb), Some((done, total))) = (&progress, receiver.progress()) {
            if last_progress.elapsed() >= Duration::from_millis(100) {
                last_progress = std::time::Instant::now();
                let len = pb.length().unwrap_or(0);
                pb.set_position(len * u64::from(done) / u64::from(total.max(1)));
                pb.set_message(format!("{} NAKs", receiver.stats().naks_sent));
            }
        }
        if let Some(outcome) = finished {
            break match outcome {
                Outcome::Complete => RecvStatus::Complete,
                Outcome::Unacknowledged => RecvStatus::Unacknowledged,
                Outcome::Failed(e) => {
                    placed.error.get_or_insert(e);
                    RecvStatus::Failed
                }
            };
        }
        let max_wait = if workers.in_flight() > 0 { BLOCK_POLL } else { IDLE_POLL };
        wait_until(sock.socket(), &clock, receiver.poll_timeout(), max_wait)
            .map_err(DriverError::io("poll"))?;
    };
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    // An unfinished sink is dropped here: its temp file goes, the destination is untouched.
    drop(sink);
    let stats = receiver.stats().clone();
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
    Ok(RecvReport {
        status,
        path: if placed_ok { placed.path } else { None },
        bytes: placed.bytes,
        seconds: wall.elapsed().as_secs_f64(),
        received_seconds: placed.received_seconds,
        first_datagram_seconds,
        naks_sent: stats.naks_sent,
        naks_suppressed: stats.naks_suppressed,
        error: placed.error,
        session: receiver.session_id(),
        dropped_on_purpose,
        recv_buffer,
        recv_buffer_requested,
        kernel_drops,
        udp_rcvbuf_errors,
        io: sock.stats(),
        loop_cpu_seconds: thread_cpu_seconds(),
        stats,
    })
}
