//! Resume state of a receive: the sidecar `.{name}.mcast-resume` beside the temp file (in the
//! output directory) or beside a tree's staging directory says which push the staging data
//! belongs to (the manifest's hash), what the temp file or staging directory is called, and
//! which blocks are in it (each with the BLAKE3 of the bytes written), so that a receiver
//! killed mid-push and started again with the same output keeps them and asks only for the
//! rest (a tree's side: `tree_sink/resume.rs`).
//!
//! The sidecar is also the receive's lock: it is held with an exclusive `flock` for the life
//! of the receive (the temp file too), so a second receiver into the same destination fails
//! with [`StorageError::Busy`] instead of removing files that are in use, and the stale-temp
//! cleanup keeps locked files.
//!
//! Format (little endian): a header `MCRESUM1`, the owner's pid (4 bytes, informational, not
//! covered by the checksum), the manifest hash (32), the block count (4), the temp file name
//! (2-byte length, bytes) and a CRC-32 of the checked part; then an append-only log of
//! 40-byte records: block (4), BLAKE3 (32), CRC-32 of both (4). A record for a block written
//! again replaces the earlier one. Reading stops at the first record that is short or fails
//! its checksum (a write torn by a crash), so a torn tail loses at most those records.
//!
//! Durability: a block is recorded only after its data is durable. The [`Journal`] thread
//! collects the blocks the sink wrote, `fdatasync`s the temp file (or, for a tree, the files
//! the blocks span; [`Sidecar::journal_with`]) (every [`FLUSH_BLOCKS`]
//! blocks or [`FLUSH_INTERVAL`], whichever comes first) and only then appends their records.
//! The sidecar itself is not synced: a record lost in a crash only means that block is
//! fetched again. See `docs/resume.md`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bitvec::vec::BitVec;

use super::StorageError;

const MAGIC: &[u8; 8] = b"MCRESUM1";
/// Bytes of a record: block number, BLAKE3, CRC-32.
const RECORD: usize = 4 + 32 + 4;
/// Where the owner's pid is in the header.
const PID_AT: u64 = 8;
/// Longest header: magic, pid, hash, block count, name length, a 255-byte name, CRC.
const MAX_HEADER: usize = 8 + 4 + 32 + 4 + 2 + 255 + 4;

/// Blocks recorded per `fdatasync` of the temp file at most.
pub const FLUSH_BLOCKS: usize = 8;
/// Longest time a written block waits to be made durable and recorded.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Blocks a staging area holds: payload block number and the BLAKE3 of the bytes written.
pub type HeldBlocks = Vec<(u32, [u8; 32])>;

/// What a sidecar says: the temp file it belongs to and the blocks held in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeState {
    /// The manifest hash of the push the temp file belongs to.
    pub manifest_hash: [u8; 32],
    /// The temp file's name (in the same directory).
    pub temp_name: String,
    /// Blocks held, by number.
    pub held: BitVec,
    /// BLAKE3 of each held block's bytes (unset blocks: zeros).
    pub hashes: Vec<[u8; 32]>,
}

impl ResumeState {
    /// The held blocks with their hashes, in block order.
    pub fn held_blocks(&self) -> HeldBlocks {
        self.held.iter_ones().map(|b| (b as u32, self.hashes[b])).collect()
    }

    /// Parse a sidecar's bytes read from `r`: `None` if the header is not valid or its block
    /// count is not `block_count`. Records after the first bad one are ignored.
    pub fn read(r: &mut impl Read, block_count: u32) -> Option<ResumeState> {
        let (manifest_hash, count, temp_name) = read_header(r)?;
        if count != block_count {
            return None;
        }
        let mut state = ResumeState {
            manifest_hash,
            temp_name,
            held: BitVec::repeat(false, block_count as usize),
            hashes: vec![[0; 32]; block_count as usize],
        };
        let mut rec = [0u8; RECORD];
        while r.read_exact(&mut rec).is_ok() {
            if crc32fast::hash(&rec[..36]).to_le_bytes() != rec[36..] {
                break;
            }
            let b = u32::from_le_bytes(rec[..4].try_into().ok()?) as usize;
            if b >= block_count as usize {
                break;
            }
            state.held.set(b, true);
            state.hashes[b].copy_from_slice(&rec[4..36]);
        }
        Some(state)
    }
}

/// A sidecar's header from `r`: manifest hash, block count and temp file name, if valid.
fn read_header(r: &mut impl Read) -> Option<([u8; 32], u32, String)> {
    let mut head = [0u8; 8 + 4 + 32 + 4 + 2];
    r.read_exact(&mut head).ok()?;
    if &head[..8] != MAGIC {
        return None;
    }
    let name_len = usize::from(u16::from_le_bytes([head[48], head[49]]));
    if name_len == 0 || name_len > 255 {
        return None;
    }
    let mut name = vec![0u8; name_len + 4];
    r.read_exact(&mut name).ok()?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[12..]);
    crc.update(&name[..name_len]);
    if crc.finalize().to_le_bytes() != name[name_len..] {
        return None;
    }
    name.truncate(name_len);
    let temp_name = String::from_utf8(name).ok()?;
    if temp_name.contains('/') || !super::names::is_temp_name(temp_name.as_ref()) {
        return None;
    }
    let hash = head[12..44].try_into().ok()?;
    Some((hash, u32::from_le_bytes(head[44..48].try_into().ok()?), temp_name))
}

/// The bytes of a sidecar header for `manifest_hash`, `block_count` and `temp_name`.
fn header(manifest_hash: &[u8; 32], block_count: u32, temp_name: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(MAX_HEADER);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&std::process::id().to_le_bytes());
    h.extend_from_slice(manifest_hash);
    h.extend_from_slice(&block_count.to_le_bytes());
    h.extend_from_slice(&(temp_name.len() as u16).to_le_bytes());
    h.extend_from_slice(temp_name.as_bytes());
    let crc = crc32fast::hash(&h[12..]);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// One journal record.
fn record(block: u32, hash: &[u8; 32]) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..4].copy_from_slice(&block.to_le_bytes());
    r[4..36].copy_from_slice(hash);
    let crc = crc32fast::hash(&r[..36]);
    r[36..].copy_from_slice(&crc.to_le_bytes());
    r
}

/// Take an exclusive `flock` on `file` without waiting: `Ok(false)` if another open file
/// description holds one.
pub(crate) fn try_lock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The pid a sidecar names as its owner (0 if unreadable).
fn owner_pid(file: &File) -> u32 {
    let mut pid = [0u8; 4];
    match file.read_exact_at(&mut pid, PID_AT) {
        Ok(()) => u32::from_le_bytes(pid),
        Err(_) => 0,
    }
}

/// A locked sidecar: the receive into `dest` is ours while it lives.
#[derive(Debug)]
pub struct Sidecar {
    file: File,
    path: PathBuf,
}

impl Sidecar {
    /// Open (or create) and lock the sidecar at `path` for the receive into `dest` (for the
    /// message). Another receiver holding it: [`StorageError::Busy`] with its pid.
    pub fn lock(path: &Path, dest: &Path) -> Result<Sidecar, StorageError> {
        // The path may be unlinked by its owner between our open and our lock: then the lock
        // is on a dead inode, so open again (bounded: each retry means an owner came and went).
        for _ in 0..8 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| StorageError::io("open resume state", path, e))?;
            if !try_lock(&file).map_err(|e| StorageError::io("lock", path, e))? {
                return Err(StorageError::Busy { dest: dest.to_path_buf(), pid: owner_pid(&file) });
            }
            let ours = file.metadata().map_err(|e| StorageError::io("stat", path, e))?;
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {
                    return Ok(Sidecar { file, path: path.to_path_buf() })
                }
                _ => continue,
            }
        }
        Err(StorageError::io("lock", path, std::io::Error::other("keeps being replaced")))
    }

    /// What the sidecar says, for a push of `block_count` blocks (`None`: empty, torn or
    /// another layout).
    pub fn read(&self, block_count: u32) -> Option<ResumeState> {
        ResumeState::read(&mut self.reader()?, block_count)
    }

    /// The temp file (or staging directory) name the header names, whatever the push and its
    /// layout (`None`: empty or torn).
    pub fn claimed_name(&self) -> Option<String> {
        let mut r = self.reader()?.take(MAX_HEADER as u64);
        read_header(&mut r).map(|(_, _, name)| name)
    }

    /// A reader from the start of the sidecar.
    fn reader(&self) -> Option<std::io::BufReader<&File>> {
        use std::io::Seek;
        (&self.file).seek(std::io::SeekFrom::Start(0)).ok()?;
        Some(std::io::BufReader::new(&self.file))
    }

    /// Start over: the sidecar now describes an empty `temp_name` for `manifest_hash`.
    pub fn reset(
        &mut self,
        manifest_hash: &[u8; 32],
        block_count: u32,
        temp_name: &str,
    ) -> Result<(), StorageError> {
        let h = header(manifest_hash, block_count, temp_name);
        let io = |e| StorageError::io("write resume state", &self.path, e);
        self.file.set_len(0).map_err(io)?;
        self.file.write_all_at(&h, 0).map_err(io)
    }

    /// Name this process as the owner (the pid a second receiver's message quotes).
    pub fn claim(&self) -> Result<(), StorageError> {
        self.file
            .write_all_at(&std::process::id().to_le_bytes(), PID_AT)
            .map_err(|e| StorageError::io("write resume state", &self.path, e))
    }

    /// Path of the sidecar.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the sidecar (while still holding its lock, so no one takes a dead one).
    pub fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove resume state");
            }
        }
    }

    /// Start the journal that records blocks written into `data` (see the module docs).
    pub fn journal(self, data: &File) -> Result<Journal, StorageError> {
        let data =
            data.try_clone().map_err(|e| StorageError::io("duplicate handle of", &self.path, e))?;
        self.journal_with(move |_| data.sync_data())
    }

    /// Start a journal whose blocks are made durable by `sync` (given the blocks about to be
    /// recorded; a tree's syncs the files they span) before their records are appended.
    pub fn journal_with(
        self,
        mut sync: impl FnMut(&[(u32, [u8; 32])]) -> std::io::Result<()> + Send + 'static,
    ) -> Result<Journal, StorageError> {
        let mut log = self.file.try_clone().map_err(|e| StorageError::io("dup", &self.path, e))?;
        let path = self.path.clone();
        let (tx, rx) = channel::<(u32, [u8; 32])>();
        let thread = std::thread::Builder::new()
            .name("mcast-resume".into())
            .spawn(move || {
                use std::io::Seek;
                if let Err(e) = log.seek(std::io::SeekFrom::End(0)) {
                    tracing::warn!(path = %path.display(), error = %e, "resume journal disabled");
                    return;
                }
                // Data first: a record on disk means the block's bytes are durable.
                let flushed = flush_batches(&rx, |pending| {
                    sync(pending)?;
                    let bytes: Vec<u8> = pending.iter().flat_map(|(b, h)| record(*b, h)).collect();
                    log.write_all(&bytes)?;
                    Ok(true)
                });
                if let Err(e) = flushed {
                    tracing::warn!(path = %path.display(), error = %e, "resume journal stopped");
                }
            })
            .map_err(|e| StorageError::io("start the resume journal for", &self.path, e))?;
        Ok(Journal { tx: Some(tx), thread: Some(thread), sidecar: Some(self) })
    }
}

/// The journal threads' loop: collect what arrives on `rx` and hand it to `flush` in batches
/// of up to [`FLUSH_BLOCKS`], or whatever came within [`FLUSH_INTERVAL`] of a batch's first
/// record, and the rest when the channel closes. `flush` returns whether to go on (`false`:
/// stop quietly, e.g. a full journal); an error stops the loop and is returned.
pub(crate) fn flush_batches<T>(
    rx: &std::sync::mpsc::Receiver<T>,
    mut flush: impl FnMut(&[T]) -> std::io::Result<bool>,
) -> std::io::Result<()> {
    let mut pending: Vec<T> = Vec::new();
    let mut first_at = Instant::now();
    loop {
        let got = if pending.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(FLUSH_INTERVAL.saturating_sub(first_at.elapsed()))
        };
        let closed = matches!(got, Err(RecvTimeoutError::Disconnected));
        if let Ok(b) = got {
            if pending.is_empty() {
                first_at = Instant::now();
            }
            pending.push(b);
        }
        let due = pending.len() >= FLUSH_BLOCKS || first_at.elapsed() >= FLUSH_INTERVAL;
        if !pending.is_empty() && (due || closed) {
            if !flush(&pending)? {
                return Ok(());
            }
            pending.clear();
        }
        if closed {
            return Ok(());
        }
    }
}

/// Records written blocks on a thread of its own (data synced first); holds the sidecar and
/// its lock.
#[derive(Debug)]
pub struct Journal {
    tx: Option<Sender<(u32, [u8; 32])>>,
    thread: Option<JoinHandle<()>>,
    sidecar: Option<Sidecar>,
}

impl Journal {
    /// `block` was written with bytes hashing to `hash` (recorded once durable).
    pub fn record(&self, block: u32, hash: [u8; 32]) {
        if let Some(tx) = &self.tx {
            // A stopped journal only means less to resume from.
            let _ = tx.send((block, hash));
        }
    }

    /// Stop the thread after it recorded everything given so far; returns the sidecar.
    fn stop(&mut self) -> Option<Sidecar> {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.sidecar.take()
    }

    /// Record everything given, and keep the sidecar for a resume (the lock goes).
    pub fn suspend(mut self) {
        self.stop();
    }

    /// Stop and remove the sidecar (the push finished or failed).
    pub fn discard(mut self) {
        if let Some(s) = self.stop() {
            s.remove();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What identifies a push for resuming: the BLAKE3 of its manifest's encoding (files, sizes,
/// modes, mtimes and layout; a changed source changes it).
pub fn push_id(manifest: &crate::proto::manifest::Manifest) -> [u8; 32] {
    *blake3::hash(&manifest.encode()).as_bytes()
}

/// Payload bytes in `held` blocks of `manifest`'s layout (unknown blocks count 0).
pub fn held_bytes(manifest: &crate::proto::manifest::Manifest, held: &[(u32, [u8; 32])]) -> u64 {
    let Ok(layout) = manifest.layout() else { return 0 };
    held.iter().map(|(b, _)| layout.block_len(*b).unwrap_or(0) as u64).sum()
}

/// Whether `file_name` is a sidecar name made by [`names::resume_file_name`](super::names).
pub(crate) fn is_resume_name(file_name: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let b = file_name.as_bytes();
    b.len() > 1 + super::names::RESUME_SUFFIX.len()
        && b.starts_with(b".")
        && b.ends_with(super::names::RESUME_SUFFIX.as_bytes())
}

/// The temp file names the sidecars in `dir` claim (kept by the stale-temp cleanup for a
/// resume). Unreadable or torn sidecars claim nothing.
pub(crate) fn claimed_temps(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names = Vec::new();
    for e in entries.flatten() {
        if !is_resume_name(&e.file_name()) || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(f) = File::open(e.path()) else { continue };
        let mut r = std::io::BufReader::new(f).take(MAX_HEADER as u64);
        if let Some((_, _, name)) = read_header(&mut r) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests;
