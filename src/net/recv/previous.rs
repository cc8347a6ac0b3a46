//! The receiver's search of the previous version (only what changed is fetched): once the
//! hash list verified before the payload (a `--changed-only` or signed sender), worker threads
//! read each block the receiver still lacks from the version at the destination
//! ([`PreviousDir`], through the NEW manifest's [`PreviousPlan`]) and hash it; the blocks
//! that match come back to the receive loop, which writes them into the staging sink and hands
//! them to the core ([`Receiver::handle_previous`](crate::proto::receiver::Receiver)); when the
//! search is over the core reports its holdings to the sender (`handle_scanned`).
//!
//! Bounded: each thread has one block buffer, at most twice as many found blocks as threads
//! wait in the channel, and the threads stop when the search is dropped (the receive ended).
//! The receive loop collects what was found once per turn without blocking; while the search
//! runs the core wakes the loop every [`SEARCH_POLL`](crate::proto::receiver::SEARCH_POLL)
//! (`Receiver::handle_searching`), as these threads have no wake-up of their own.

use super::writer::Write;
use super::RecvRole;
use crate::net::io::fmt_bytes;
use crate::proto::manifest::Manifest;
use crate::proto::time::Instant;
use crate::storage::previous::{PreviousDir, PreviousPlan};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A block of the previous version that hashes as the new hash list says.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) block: u32,
    pub(crate) offset: u64,
    pub(crate) data: Vec<u8>,
    pub(crate) hash: [u8; 32],
}

/// What [`Search::poll`] has.
#[derive(Debug)]
pub(crate) enum Polled {
    Found(Found),
    /// Nothing yet.
    Pending,
    /// Every block was looked at.
    Done,
}

/// A search of the previous version, running on its threads.
pub(crate) struct Search {
    rx: Receiver<Found>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    /// Blocks looked for.
    pub(crate) wanted: usize,
    /// Blocks found so far (and their bytes).
    pub(crate) found: usize,
    pub(crate) found_bytes: u64,
    pub(crate) started: std::time::Instant,
}

impl Search {
    /// Look for `wanted` (block, expected BLAKE3) of `manifest`'s layout in the files under
    /// `root`, on `threads` threads. `None` if the manifest has no plan (it always has one
    /// once verified) or no thread could start.
    pub(crate) fn start(
        root: PathBuf,
        manifest: &Manifest,
        wanted: Vec<(u32, [u8; 32])>,
        threads: usize,
    ) -> Option<Search> {
        let plan = Arc::new(PreviousPlan::new(manifest).ok()?);
        let threads = threads.clamp(1, 16).min(wanted.len().max(1));
        let (tx, rx) = sync_channel(2 * threads);
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicUsize::new(0));
        let count = wanted.len();
        let wanted = Arc::new(wanted);
        let mut handles = Vec::new();
        for i in 0..threads {
            let (tx, stop, next) = (tx.clone(), Arc::clone(&stop), Arc::clone(&next));
            let (plan, wanted, root) = (Arc::clone(&plan), Arc::clone(&wanted), root.clone());
            let spawned =
                std::thread::Builder::new().name(format!("mcast-prev-{i}")).spawn(move || {
                    let mut prev = PreviousDir::new(root);
                    let mut buf = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let Some(&(block, hash)) = wanted.get(next.fetch_add(1, Ordering::Relaxed))
                        else {
                            return;
                        };
                        if plan.match_block(&mut prev, block, &hash, &mut buf) {
                            let offset = plan.layout().block_offset(block).unwrap_or(0);
                            let data = std::mem::take(&mut buf);
                            if tx.send(Found { block, offset, data, hash }).is_err() {
                                return;
                            }
                        }
                    }
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => tracing::warn!("cannot start a thread reading the previous version: {e}"),
            }
        }
        if handles.is_empty() {
            return None;
        }
        Some(Search {
            rx,
            stop,
            handles,
            wanted: count,
            found: 0,
            found_bytes: 0,
            started: std::time::Instant::now(),
        })
    }

    /// The next block found, without waiting.
    pub(crate) fn poll(&mut self) -> Polled {
        match self.rx.try_recv() {
            Ok(f) => {
                self.found += 1;
                self.found_bytes += f.data.len() as u64;
                Polled::Found(f)
            }
            Err(TryRecvError::Empty) => Polled::Pending,
            Err(TryRecvError::Disconnected) => Polled::Done,
        }
    }
}

impl Drop for Search {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock threads waiting to send, then let them finish their block.
        while self.rx.try_recv().is_ok() {}
        for h in self.handles.drain(..) {
            while !h.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = h.join();
        }
    }
}

/// The receive role's side of the search: the manifest it plans with, the search while it
/// runs, and whether it is over.
#[derive(Default)]
pub(super) struct State {
    pub(super) manifest: Option<Manifest>,
    /// The output the push is received into (`--output`, or the service's chosen version).
    pub(super) output: Option<std::path::PathBuf>,
    search: Option<Search>,
    done: bool,
}

impl RecvRole<'_> {
    /// Start the search once the hash list verified before the payload, collect what it
    /// found (written into the sink, handed to the core), and report the holdings when it is
    /// over. Called every turn of the loop.
    pub(super) fn search_previous(&mut self, now: Instant) {
        if self.previous.done {
            return;
        }
        if self.sink.is_none() || self.placed.error.is_some() {
            if self.placed.error.is_some() {
                self.previous = State { done: true, ..State::default() };
            }
            return;
        }
        if self.previous.search.is_none() {
            let Some(wanted) = self.receiver.wanted_blocks() else { return };
            // The version being replaced: the service's current version, else the output.
            let previous = self.cfg.chooser.as_ref().and_then(|c| c.previous());
            let root = previous
                .or_else(|| self.previous.output.clone())
                .unwrap_or_else(|| self.cfg.output.clone());
            let search = match self.previous.manifest.as_ref() {
                Some(m) if self.cfg.reuse_previous && !wanted.is_empty() && root.is_dir() => {
                    tracing::info!(
                        "looking for {} blocks in the version at {}",
                        wanted.len(),
                        root.display()
                    );
                    Search::start(root, m, wanted, self.cfg.workers.max(2))
                }
                _ => None,
            };
            match search {
                Some(s) => self.previous.search = Some(s),
                None => return self.search_over(now),
            }
        }
        loop {
            let Some(search) = self.previous.search.as_mut() else { return };
            match search.poll() {
                Polled::Found(f) => self.take_previous(now, f),
                Polled::Pending => return self.receiver.handle_searching(now),
                Polled::Done => return self.search_over(now),
            }
        }
    }

    /// Write a found block into the sink (unless it arrived meanwhile) and hand it over.
    fn take_previous(&mut self, now: Instant, f: Found) {
        let Some(rewrite) = self.receiver.takes_block(f.block) else { return };
        // Outcomes of earlier writes first, so that a failure among them is the one reported.
        self.drain_written(now);
        let Some(sink) = self.sink.as_mut() else { return };
        let len = f.data.len() as u64;
        let w = Write { block: f.block, offset: f.offset, data: f.data, rewrite, hash: f.hash };
        let written = sink.write_now(w);
        self.drain_written(now);
        match written {
            Ok(()) => {
                self.receiver.handle_previous(now, &[(f.block, f.hash)]);
                if !rewrite {
                    self.placed.held += len;
                }
            }
            Err(e) => self.write_failed(now, &e),
        }
    }

    fn search_over(&mut self, now: Instant) {
        if let Some(s) = self.previous.search.take() {
            tracing::info!(
                "{} of {} blocks ({}) taken from the previous version in {:.2} s",
                s.found,
                s.wanted,
                fmt_bytes(s.found_bytes),
                s.started.elapsed().as_secs_f64()
            );
        }
        self.previous.done = true;
        self.receiver.handle_scanned(now);
    }
}
