//! The relay's buffer between its two sides: what the upstream receiver has decoded, in a
//! spool file under `--spool DIR` (the payload byte stream at its offsets) and, for the most
//! recent `window` blocks, in memory; which blocks are held (with the BLAKE3 they were decoded
//! with); the origin's hash list once it verified; and the downstream reports waiting to be
//! forwarded upstream. Both driver loops hold an `Arc<Spool>`; every method takes the lock
//! briefly and never waits, except [`Spool::wait_manifest`], which is bounded.

use crate::proto::manifest::Manifest;
use crate::proto::wire::{HostName, Report};
use crate::storage::StorageError;
use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A downstream receiver's report, to be forwarded to the origin as that host's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The downstream receiver's node id.
    pub node: u32,
    /// Its host name, if its join was heard.
    pub host: Option<HostName>,
    /// Its report.
    pub report: Report,
}

/// How the upstream side ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamEnd {
    /// Every block verified against the origin's hash list.
    Complete,
    /// It failed or stopped, with the reason.
    Failed(String),
}

#[derive(Default)]
struct State {
    manifest: Option<Manifest>,
    file: Option<Arc<File>>,
    path: Option<PathBuf>,
    /// Per block, the BLAKE3 of the bytes written (the latest write).
    held: Vec<Option<[u8; 32]>>,
    held_count: u32,
    /// Bumped at every write, so a waiting side notices cheaply.
    generation: u64,
    window: VecDeque<(u32, Arc<Vec<u8>>)>,
    verified: Option<Arc<Vec<[u8; 32]>>>,
    /// Signed upstream: the version the origin signed, known with its hash list.
    signed_version: Option<u64>,
    upstream_end: Option<UpstreamEnd>,
    forwards: Vec<Forwarded>,
    downstream_done: bool,
    /// Forwarded reports the origin acknowledged.
    acked: u64,
}

/// The shared buffer (see the module doc).
pub struct Spool {
    dir: PathBuf,
    window: usize,
    state: Mutex<State>,
    /// Notified when the manifest, the signed hash list or the upstream end arrives.
    manifest_known: Condvar,
}

impl Spool {
    /// A spool in `dir` (an existing directory) keeping `window` blocks in memory (at least 1).
    pub fn new(dir: &Path, window: usize) -> Arc<Self> {
        Arc::new(Spool {
            dir: dir.to_path_buf(),
            window: window.max(1),
            state: Mutex::new(State::default()),
            manifest_known: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking side poisons the lock; the state itself stays consistent (every update
        // is a few assignments), so the other side goes on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The manifest arrived upstream for session `session`: create the spool file
    /// (`DIR/.mcast-relay-<session>.spool`, the payload's size, sparse) and publish it.
    pub fn start(&self, session: u32, manifest: &Manifest) -> Result<(), StorageError> {
        let path = self.dir.join(format!(".mcast-relay-{session:08x}.spool"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StorageError::io("create", &path, e))?;
        file.set_len(manifest.object_size).map_err(|e| StorageError::io("size", &path, e))?;
        let blocks = manifest.layout().map(|l| l.block_count()).unwrap_or(0);
        let mut s = self.lock();
        s.held = vec![None; blocks as usize];
        s.file = Some(Arc::new(file));
        s.path = Some(path);
        s.manifest = Some(manifest.clone());
        drop(s);
        self.manifest_known.notify_all();
        Ok(())
    }

    /// Wait up to `limit` for the manifest (or for the upstream side to end without one).
    pub fn wait_manifest(&self, limit: Duration) -> Option<Manifest> {
        let s = self.lock();
        let (s, _) = self
            .manifest_known
            .wait_timeout_while(s, limit, |s| s.manifest.is_none() && s.upstream_end.is_none())
            .unwrap_or_else(|p| p.into_inner());
        s.manifest.clone()
    }

    /// Write a decoded block at `offset` and mark it held with `hash`; it replaces any earlier
    /// bytes of the block (a rewrite after the hash list refuted them).
    pub fn write_block(
        &self,
        block: u32,
        offset: u64,
        data: Vec<u8>,
        hash: [u8; 32],
    ) -> Result<(), StorageError> {
        let (file, path) = {
            let s = self.lock();
            match (&s.file, &s.path) {
                (Some(f), Some(p)) => (Arc::clone(f), p.clone()),
                _ => return Err(StorageError::Unsupported("no spool file yet".into())),
            }
        };
        file.write_all_at(&data, offset).map_err(|e| StorageError::io("write", &path, e))?;
        let mut s = self.lock();
        let Some(slot) = s.held.get_mut(block as usize) else {
            return Err(StorageError::InvalidArgument("block outside the layout"));
        };
        let new = slot.is_none();
        *slot = Some(hash);
        s.held_count += u32::from(new);
        s.generation += 1;
        s.window.retain(|(b, _)| *b != block);
        s.window.push_back((block, Arc::new(data)));
        while s.window.len() > self.window {
            s.window.pop_front();
        }
        Ok(())
    }

    /// The hash `block` was decoded with, if it is held.
    pub fn held(&self, block: u32) -> Option<[u8; 32]> {
        self.lock().held.get(block as usize).copied().flatten()
    }

    /// Blocks held, of how many.
    pub fn held_count(&self) -> (u32, u32) {
        let s = self.lock();
        (s.held_count, s.held.len() as u32)
    }

    /// A counter that changes whenever a block is written.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// `len` bytes of `block` at `offset`: from memory if it is in the window, else read back
    /// from the spool file. `None` if it is not held.
    pub fn read_block(
        &self,
        block: u32,
        offset: u64,
        len: usize,
    ) -> Option<Result<Vec<u8>, StorageError>> {
        let (file, path) = {
            let s = self.lock();
            s.held.get(block as usize).copied().flatten()?;
            if let Some((_, d)) = s.window.iter().find(|(b, _)| *b == block) {
                return Some(Ok(d.as_ref().clone()));
            }
            (Arc::clone(s.file.as_ref()?), s.path.clone()?)
        };
        let mut buf = vec![0u8; len];
        Some(
            file.read_exact_at(&mut buf, offset)
                .map(|_| buf)
                .map_err(|e| StorageError::io("read back", &path, e)),
        )
    }

    /// The origin's hash list verified: every held block is checked against it from now on.
    pub fn set_verified(&self, hashes: Vec<[u8; 32]>) {
        self.lock().verified = Some(Arc::new(hashes));
    }

    /// The origin's verified hash list, once known.
    pub fn verified(&self) -> Option<Arc<Vec<[u8; 32]>>> {
        self.lock().verified.clone()
    }

    /// Signed upstream: the origin's hash list verified against its signed announcement
    /// before the payload (so every block written is already checked), at `version`. Sets the
    /// verified list too.
    pub fn set_signed(&self, hashes: Vec<[u8; 32]>, version: u64) {
        let mut st = self.lock();
        st.verified = Some(Arc::new(hashes));
        st.signed_version = Some(version);
        drop(st);
        self.manifest_known.notify_all();
    }

    /// Wait up to `limit` for the origin's signed hash list and version (see
    /// [`Spool::set_signed`]), or for the upstream side to end without them.
    pub fn wait_signed(&self, limit: Duration) -> Option<(Arc<Vec<[u8; 32]>>, u64)> {
        let s = self.lock();
        let (s, _) = self
            .manifest_known
            .wait_timeout_while(s, limit, |s| {
                s.signed_version.is_none() && s.upstream_end.is_none()
            })
            .unwrap_or_else(|p| p.into_inner());
        Some((s.verified.clone()?, s.signed_version?))
    }

    /// The upstream side ended.
    pub fn set_upstream_end(&self, end: UpstreamEnd) {
        self.lock().upstream_end.get_or_insert(end);
        self.manifest_known.notify_all();
    }

    /// How the upstream side ended, if it did.
    pub fn upstream_end(&self) -> Option<UpstreamEnd> {
        self.lock().upstream_end.clone()
    }

    /// Queue a downstream report for the origin.
    pub fn push_forward(&self, f: Forwarded) {
        self.lock().forwards.push(f);
    }

    /// The downstream reports queued since the last call.
    pub fn take_forwards(&self) -> Vec<Forwarded> {
        std::mem::take(&mut self.lock().forwards)
    }

    /// The downstream side is over (finished, stopped or never started).
    pub fn set_downstream_done(&self) {
        self.lock().downstream_done = true;
    }

    /// Whether the downstream side is over.
    pub fn downstream_done(&self) -> bool {
        self.lock().downstream_done
    }

    /// `n` more forwarded reports were acknowledged by the origin.
    pub fn add_acked(&self, n: u64) {
        self.lock().acked += n;
    }

    /// Forwarded reports the origin acknowledged.
    pub fn acked(&self) -> u64 {
        self.lock().acked
    }

    /// Remove the spool file (at the end of the relay).
    pub fn remove(&self) {
        let mut s = self.lock();
        s.file = None;
        s.window.clear();
        if let Some(p) = s.path.take() {
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::warn!("could not remove the spool file {}: {e}", p.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::manifest::Manifest;

    fn manifest(size: u64) -> Manifest {
        let path = crate::proto::manifest::RelPath::new("f.bin").unwrap();
        Manifest::single_file(path, size, 16, 4).unwrap()
    }

    #[test]
    fn blocks_beyond_the_window_are_read_back_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path(), 2);
        assert!(spool.read_block(0, 0, 64).is_none(), "nothing before the manifest");
        spool.start(7, &manifest(64 * 3)).unwrap();
        assert_eq!(spool.held_count(), (0, 3));
        for b in 0..3u32 {
            let data = vec![b as u8 + 1; 64];
            spool.write_block(b, u64::from(b) * 64, data, [b as u8; 32]).unwrap();
        }
        assert_eq!(spool.held_count(), (3, 3));
        assert_eq!(spool.held(1), Some([1; 32]));
        // Block 0 left the window of 2: read back from the spool file.
        assert_eq!(spool.read_block(0, 0, 64).unwrap().unwrap(), vec![1u8; 64]);
        assert_eq!(spool.read_block(2, 128, 64).unwrap().unwrap(), vec![3u8; 64]);
        // A rewrite replaces the bytes and the hash, and counts once.
        spool.write_block(0, 0, vec![9; 64], [9; 32]).unwrap();
        assert_eq!(spool.held_count(), (3, 3));
        assert_eq!(spool.read_block(0, 0, 64).unwrap().unwrap(), vec![9u8; 64]);
        assert!(spool.write_block(3, 192, vec![0; 1], [0; 32]).is_err(), "outside the layout");
        let path = dir.path().join(".mcast-relay-00000007.spool");
        assert!(path.exists());
        spool.remove();
        assert!(!path.exists());
    }

    #[test]
    fn waiting_for_the_manifest_ends_when_upstream_ends() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path(), 2);
        assert!(spool.wait_manifest(Duration::from_millis(1)).is_none());
        spool.set_upstream_end(UpstreamEnd::Failed("x".into()));
        // Returns at once now (would otherwise wait the whole minute).
        let t = std::time::Instant::now();
        assert!(spool.wait_manifest(Duration::from_secs(60)).is_none());
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
