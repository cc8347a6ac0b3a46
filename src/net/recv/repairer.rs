//! `mcast-recv --repairer`: a local [`Repairer`] beside the receive role's [`Receiver`].
//!
//! [`RecvEndpoint`] is the endpoint the driver runs for a receiver: the receiver itself (it
//! derefs to it) and, with `--repairer`, a repairer fed the same datagrams, the session view
//! and the hash list after every turn, and each block the receiver wrote. Its datagrams go out
//! on the receiver's socket (joined on `--interface`, `IP_MULTICAST_IF` set to it: never the
//! default route), paced by the repairer's own token bucket (`--repair-rate`).
//!
//! Blocks evicted from the repairer's window (`--repair-window`) are read back from what this
//! receiver wrote ([`ReadBack`]): while receiving, from the staging file or staging tree the
//! resume sidecars beside the destination name; once placed, from the destination. Every block
//! read back is hashed against the verified hash list by the repairer before it serves it, so
//! a stale or half-written staging copy costs a repair from the sender, never a bad symbol.
//!
//! A repairer does not stop at its own completion while the push goes on: it stays while the
//! session's sender is heard (its announcements come every 100 ms), until it says Abort, has
//! been silent for [`SENDER_GONE`], or `--linger` has passed since the object was placed.

use crate::net::driver::Endpoint;
use crate::proto::manifest::Manifest;
use crate::proto::receiver::Receiver;
use crate::proto::repairer::{Repairer, RepairerConfig, RepairerEvent, RepairerStats};
use crate::proto::time::{Duration, Instant};
use crate::proto::Transmit;
use crate::storage::previous::{PreviousDir, PreviousPlan, PreviousRead};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A lingering repairer stops once the session's sender has not been heard this long.
pub const SENDER_GONE: Duration = Duration::from_secs(1);
/// Staging candidates (temp names claimed by resume sidecars) tried per block read back.
pub const READ_BACK_CANDIDATES: usize = 4;
/// Blocks read back per driver turn at most (each is a `pread` of one block on the loop).
pub const READS_PER_TURN: usize = 4;

/// `--repairer` and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RepairSettings {
    /// Repair symbol rate cap, bits per second (`--repair-rate`).
    pub rate_bps: u64,
    /// Blocks kept in memory (`--repair-window`); older ones are read back from disk.
    pub window_blocks: usize,
    /// Longest stay after the object was placed (`--linger`); `None`: while the sender runs.
    pub linger: Option<Duration>,
}

impl Default for RepairSettings {
    fn default() -> Self {
        let core = RepairerConfig::default();
        RepairSettings { rate_bps: core.rate_bps, window_blocks: core.window_blocks, linger: None }
    }
}

/// The repairer's part of `mcast-recv --json` (flattened into the report; absent without
/// `--repairer`).
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    /// The ESI slot the sender assigned (`null`: none, so it never sent a symbol).
    pub slot: Option<u8>,
    /// Repair symbols this repairer sent.
    pub repair_datagrams: u64,
    /// Repair advertisements it sent.
    pub adverts: u64,
    /// Answers it held back because someone else covered the need.
    pub suppressed: u64,
    /// Blocks read back from the staging area or the destination.
    pub blocks_read_back: u64,
    /// Blocks that could not be read back (or did not hash right: counted by the core).
    pub read_back_failed: u64,
    /// Seconds it stayed after its own object was placed.
    pub linger_seconds: f64,
    /// All the repairer's counters.
    pub repairer_stats: RepairerStats,
}

/// The receiver, and a repairer beside it with `--repairer`.
pub struct RecvEndpoint {
    receiver: Receiver,
    repair: Option<Glue>,
}

struct Glue {
    rep: Repairer,
    linger: Option<Duration>,
    read_back: Option<ReadBack>,
    finished_at: Option<Instant>,
    last_now: Instant,
    blocks_read_back: u64,
    read_back_failed: u64,
}

impl std::ops::Deref for RecvEndpoint {
    type Target = Receiver;
    fn deref(&self) -> &Receiver {
        &self.receiver
    }
}

impl std::ops::DerefMut for RecvEndpoint {
    fn deref_mut(&mut self) -> &mut Receiver {
        &mut self.receiver
    }
}

impl RecvEndpoint {
    /// `receiver`, with a repairer of `settings` beside it (its node id and a backoff seed).
    /// In keyed mode (`keyed`: every datagram authenticated) blocks are served before the
    /// hash list arrives; in open mode only once it verified them.
    pub fn new(
        receiver: Receiver,
        settings: Option<&RepairSettings>,
        node: u32,
        seed: u64,
        keyed: bool,
        now: Instant,
    ) -> Self {
        let repair = settings.map(|s| {
            let cfg = RepairerConfig {
                node,
                seed,
                serve_unverified: keyed,
                window_blocks: s.window_blocks.max(1),
                rate_bps: s.rate_bps.max(1),
                ..RepairerConfig::default()
            };
            Glue {
                rep: Repairer::new(cfg, now),
                linger: s.linger,
                read_back: None,
                finished_at: None,
                last_now: now,
                blocks_read_back: 0,
                read_back_failed: 0,
            }
        });
        RecvEndpoint { receiver, repair }
    }

    /// Whether a repairer runs beside the receiver.
    pub fn is_repairer(&self) -> bool {
        self.repair.is_some()
    }

    /// A datagram heard on the group: to the receiver and to the repairer.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Some(g) = &mut self.repair else {
            return self.receiver.handle_datagram(now, from, data);
        };
        // Parsed once for both (a datagram that does not parse is counted by each).
        match crate::proto::wire::parse(data) {
            Ok((header, packet)) => {
                self.receiver.handle_parsed(now, from, header, packet.clone());
                g.rep.handle_parsed(now, from, header, packet);
            }
            Err(_) => {
                self.receiver.handle_datagram(now, from, data);
                g.rep.handle_datagram(now, from, data);
            }
        }
    }

    /// The manifest arrived and the object is staged for `output` (the directory a single
    /// file goes into, or a tree's root): where evicted blocks are read back from.
    pub fn handle_manifest(&mut self, manifest: &Manifest, output: &Path) {
        if let Some(g) = &mut self.repair {
            g.read_back = ReadBack::new(manifest, output);
        }
    }

    /// The receiver wrote payload block `block` (decoded; the repairer checks it against the
    /// hash list before serving it).
    pub fn handle_block(&mut self, now: Instant, block: u32, data: Vec<u8>) {
        if let Some(g) = &mut self.repair {
            g.rep.handle_block(now, block, data);
        }
    }

    /// The object was placed at `path` (`None`: it was not): blocks are read back from there.
    pub fn handle_placed(&mut self, path: Option<&Path>) {
        let Some(g) = &mut self.repair else { return };
        if let (Some(rb), Some(p)) = (&mut g.read_back, path) {
            rb.placed = Some(p.to_path_buf());
        }
    }

    /// The receiver finished at `now` (placed or not).
    pub fn handle_finished(&mut self, now: Instant) {
        if let Some(g) = &mut self.repair {
            g.finished_at.get_or_insert(now);
        }
    }

    /// After the receiver's events of a turn: tell the repairer the session and its hash list,
    /// and serve its read-back requests.
    pub fn after_events(&mut self, now: Instant) {
        let Some(g) = &mut self.repair else { return };
        g.last_now = g.last_now.max(now);
        if let Some(view) = self.receiver.repair_view() {
            g.rep.set_view(now, view);
        }
        if let Some(list) = self.receiver.repair_hashes().filter(|_| !g.rep.has_hashes()) {
            g.rep.handle_hashes(now, list);
        }
        for _ in 0..READS_PER_TURN {
            let Some(RepairerEvent::NeedBlock { block, .. }) = g.rep.poll_event() else {
                break;
            };
            let mut buf = Vec::new();
            let want = self.receiver.repair_hashes().and_then(|l| l.get(block)).copied();
            let read = g.read_back.as_mut().zip(want).map(|(rb, w)| rb.read(block, &w, &mut buf));
            match read {
                Some(true) => {
                    g.blocks_read_back += 1;
                    g.rep.handle_block(now, block, buf);
                }
                _ => {
                    g.read_back_failed += 1;
                    g.rep.handle_block_failed(block);
                }
            }
        }
    }

    /// With the receiver finished and its object placed: whether the repairer stays (the
    /// push goes on, and `--linger` has not passed).
    pub fn lingers(&self, now: Instant, placed: bool) -> bool {
        let Some(g) = &self.repair else { return false };
        let Some(done) = g.finished_at else { return false };
        if !placed || g.rep.sender_aborted() || g.rep.slot().is_none() {
            return false;
        }
        if g.linger.is_some_and(|l| now >= done + l) {
            return false;
        }
        g.rep.sender_heard().is_some_and(|t| now < t + SENDER_GONE)
    }

    /// The repairer's report, if one runs.
    pub fn report(&self) -> Option<RepairReport> {
        let g = self.repair.as_ref()?;
        let s = g.rep.stats().clone();
        let linger =
            g.finished_at.map_or(Duration::ZERO, |f| g.last_now.saturating_duration_since(f));
        Some(RepairReport {
            slot: g.rep.slot(),
            repair_datagrams: s.symbols_sent,
            adverts: s.adverts_sent,
            suppressed: s.suppressed,
            blocks_read_back: g.blocks_read_back,
            read_back_failed: g.read_back_failed,
            linger_seconds: linger.as_secs_f64(),
            repairer_stats: s,
        })
    }
}

impl Endpoint for RecvEndpoint {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        RecvEndpoint::handle_datagram(self, now, from, data)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.receiver.handle_timeout(now);
        if let Some(g) = &mut self.repair {
            g.last_now = g.last_now.max(now);
            g.rep.handle_timeout(now);
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if let Some(t) = self.receiver.poll_transmit(now, buf) {
            return Some(t);
        }
        self.repair.as_mut()?.rep.poll_transmit(now, buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let own = self.receiver.poll_timeout();
        let Some(g) = &self.repair else { return own };
        // While lingering, wake when the sender would count as gone.
        let gone = g.finished_at.and(g.rep.sender_heard()).map(|t| t + SENDER_GONE);
        let linger = g.finished_at.zip(g.linger).map(|(f, l)| f + l);
        let reads = g.rep.has_events().then_some(g.last_now);
        [own, g.rep.poll_timeout(), gone, linger, reads].into_iter().flatten().min()
    }
}

/// Reads verified blocks back from what the receiver wrote: the staging file or tree while
/// receiving (the temp names the resume sidecars beside the destination claim; there is no
/// other handle on them from here), the destination once placed. What it reads is not
/// trusted: the repairer hashes it against the hash list.
pub struct ReadBack {
    plan: PreviousPlan,
    /// The directory a single file goes into, or a tree's root.
    output: PathBuf,
    single: bool,
    placed: Option<PathBuf>,
}

/// One staging file, whatever path the plan asks for (a single-file push has one entry).
struct OneFile(std::fs::File);

impl PreviousRead for OneFile {
    fn read_at(
        &mut self,
        _path: &crate::proto::manifest::RelPath,
        offset: u64,
        buf: &mut [u8],
    ) -> bool {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset).is_ok()
    }
}

impl ReadBack {
    /// For `manifest` staged for `output`; `None` for pushes it cannot read (an image).
    pub fn new(manifest: &Manifest, output: &Path) -> Option<ReadBack> {
        if manifest.image().is_some() {
            return None;
        }
        let plan = PreviousPlan::new(manifest).ok()?;
        let single = manifest.single_file_path().is_some_and(|p| p.is_single_component());
        Some(ReadBack { plan, output: output.to_path_buf(), single, placed: None })
    }

    /// Read block `block` into `buf` and check it hashes to `want`; false when no copy that
    /// does could be read.
    pub fn read(&mut self, block: u32, want: &[u8; 32], buf: &mut Vec<u8>) -> bool {
        if let Some(p) = &self.placed {
            let root = if self.single { p.parent().unwrap_or(Path::new(".")) } else { p };
            return self.plan.match_block(&mut PreviousDir::new(root), block, want, buf);
        }
        // Staging: single files in the output directory, trees beside their root.
        let dir = if self.single {
            self.output.clone()
        } else {
            match self.output.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            }
        };
        let claimed = crate::storage::resume::claimed_temps(&dir);
        claimed.into_iter().take(READ_BACK_CANDIDATES).any(|name| {
            let path = dir.join(&name);
            if self.single {
                std::fs::File::open(&path)
                    .is_ok_and(|f| self.plan.match_block(&mut OneFile(f), block, want, buf))
            } else {
                self.plan.match_block(&mut PreviousDir::new(path), block, want, buf)
            }
        })
    }
}
