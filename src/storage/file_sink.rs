//! [`FileSink`], the [`Sink`] of a single-file push: a temp file beside the destination that
//! is written at offsets (all-zero blocks left as holes; its writeback is started every few
//! MiB, see `writeback`), fsynced and then atomically renamed over the destination. The blocks
//! were verified before `finish`, so it reads nothing back, unless asked to
//! (`--verify-readback`: every block against the verified hash list); the manifest's mode and
//! mtime are applied before the rename. An unfinished or failed sink never touches the
//! destination and removes its temp file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

mod writeback;

use self::writeback::{Writeback, WRITEBACK_EVERY};
use super::names::{is_temp_name, random_u64, resume_file_name, temp_file_name};
use super::resume::{try_lock, HeldBlocks, Journal, Sidecar};
use super::{check_range, to_hex, Sink, StorageError, IO_CHUNK};
use crate::proto::manifest::{EntryKind, HashList, Manifest, Mtime, RelPath, MODE_MASK};

/// How often `create` retries when a randomly named temp file already exists.
const CREATE_ATTEMPTS: usize = 8;

/// Receiver side: a temp file beside the destination, written at offsets,
/// verified, fsynced and renamed.
///
/// If the sink is dropped before [`finish`](Self::finish) succeeds, the temp
/// file is removed and the destination is left as it was.
#[derive(Debug)]
pub struct FileSink {
    file: File,
    dir: PathBuf,
    final_path: PathBuf,
    temp_path: PathBuf,
    size: u64,
    /// Permission bits to give the file before it is placed; `None` keeps the default.
    mode: Option<u32>,
    /// Modification time to give the file before it is placed; `None` keeps the time written.
    mtime: Option<Mtime>,
    /// Set once the temp file is no longer ours to remove (renamed, removed or kept for a
    /// resume).
    done: bool,
    /// The resume journal of a [`resumable`](Self::resumable) sink (and its sidecar's lock).
    journal: Option<Journal>,
    /// Starts the kernel's writeback while blocks arrive, so the final fsync is short.
    writeback: Writeback,
}

impl FileSink {
    /// The sink of a single-file push: `manifest` must be one file entry covering the whole
    /// payload (see [`Manifest::single_file_path`]) whose path is a single component; its mode,
    /// if any, is applied before the file is placed. Otherwise [`StorageError::Unsupported`].
    pub fn for_manifest(dir: &Path, manifest: &Manifest) -> Result<Self, StorageError> {
        let Some(path) = manifest.single_file_path() else {
            return Err(StorageError::Unsupported(format!(
                "a file sink places one file, not {}",
                manifest.summary()
            )));
        };
        let mut sink = FileSink::create(dir, path, manifest.object_size)?;
        sink.take_metadata(manifest);
        Ok(sink)
    }

    /// Creates a sink for file `name` of `size` bytes in directory `dir`.
    ///
    /// `dir` must exist; `name` must be a single component (a file sink does not create or
    /// traverse directories) and not look like a temp file name. The temp file `.{name}.mcast-tmp-{random hex}` is created in
    /// `dir` with `create_new` and extended (sparsely) to `size`.
    /// The temp file carries an exclusive `flock` for the sink's life, so the stale-temp
    /// cleanup of another receiver keeps it.
    pub fn create(dir: &Path, name: &RelPath, size: u64) -> Result<Self, StorageError> {
        check_name(name)?;
        let name = name.as_str();
        // An empty path means the current directory (needed for the fsync).
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        let final_path = dir.join(name);
        let mut attempt = 0;
        let (file, temp_path) = loop {
            let temp_path = dir.join(temp_file_name(name, random_u64()));
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&temp_path);
            match opened {
                Ok(file) => {
                    // A new file: only a process racing us right now could hold a lock on it.
                    if !try_lock(&file).map_err(|e| StorageError::io("lock", &temp_path, e))? {
                        return Err(StorageError::Busy { dest: dir.join(name), pid: 0 });
                    }
                    break (file, temp_path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    attempt += 1;
                    if attempt >= CREATE_ATTEMPTS {
                        return Err(StorageError::io("create temp file", temp_path, e));
                    }
                }
                Err(e) => return Err(StorageError::io("create temp file", temp_path, e)),
            }
        };
        // From here on, Drop removes the temp file on any error.
        let sink = FileSink {
            dir: dir.to_path_buf(),
            final_path,
            temp_path,
            size,
            mode: None,
            mtime: None,
            done: false,
            journal: None,
            writeback: Writeback::new(&file, WRITEBACK_EVERY),
            file,
        };
        sink.file
            .set_len(size)
            .map_err(|e| StorageError::io("set length of", &sink.temp_path, e))?;
        Ok(sink)
    }

    /// A sink for the single-file push `manifest` (whose hash is `manifest_hash`) in `dir`
    /// that can be resumed: its sidecar (see [`resume`](super::resume)) is locked (another
    /// receiver into the same file: [`StorageError::Busy`]) and, if it describes a temp file of
    /// the same push, that temp file is written on and the blocks it holds are returned (the
    /// receiver need not fetch them). State of another push is discarded. Every block written
    /// should be given to [`Sink::record_block`]; [`Sink::suspend`] keeps the state for the next
    /// run, anything else that ends the sink removes it.
    pub fn resumable(
        dir: &Path,
        manifest: &Manifest,
        manifest_hash: &[u8; 32],
    ) -> Result<(Self, HeldBlocks), StorageError> {
        let Some(name) = manifest.single_file_path() else {
            return Err(StorageError::Unsupported(format!(
                "a file sink places one file, not {}",
                manifest.summary()
            )));
        };
        check_name(name)?;
        let blocks = manifest.layout()?.block_count();
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        let final_path = dir.join(name.as_str());
        let mut sidecar = Sidecar::lock(&dir.join(resume_file_name(name.as_str())), &final_path)?;
        let mut resumed = None;
        if let Some(state) = sidecar.read(blocks) {
            let temp_path = dir.join(&state.temp_name);
            if state.manifest_hash != *manifest_hash {
                tracing::info!(path = %final_path.display(), "discarding the staged data of another push");
            } else {
                match open_staged(&temp_path, manifest.object_size) {
                    Ok(file) => resumed = Some((file, temp_path.clone(), state.held_blocks())),
                    Err(e) => tracing::info!("not resuming: {e}"),
                }
            }
            if resumed.is_none() {
                remove_unlocked(&temp_path);
            }
        }
        let started = match resumed {
            Some((file, temp_path, held)) => sidecar.claim().map(|()| {
                let sink = FileSink {
                    writeback: Writeback::new(&file, WRITEBACK_EVERY),
                    file,
                    dir: dir.to_path_buf(),
                    final_path,
                    temp_path,
                    size: manifest.object_size,
                    mode: None,
                    mtime: None,
                    done: false,
                    journal: None,
                };
                (sink, held)
            }),
            None => FileSink::create(dir, name, manifest.object_size).and_then(|sink| {
                let temp_name = sink.temp_path.file_name().and_then(|n| n.to_str());
                let temp_name = temp_name.unwrap_or_default().to_string();
                sidecar.reset(manifest_hash, blocks, &temp_name).map(|()| (sink, Vec::new()))
            }),
        };
        let (mut sink, held) = match started {
            Ok(s) => s,
            Err(e) => {
                sidecar.remove();
                return Err(e);
            }
        };
        sink.take_metadata(manifest);
        if !held.is_empty() {
            tracing::info!(
                "resuming {}: {} of {blocks} blocks already held",
                sink.final_path.display(),
                held.len()
            );
        }
        sink.journal = Some(sidecar.journal(&sink.file)?);
        Ok((sink, held))
    }

    /// The mode and mtime of the manifest's (one) file entry, applied when the file is placed.
    fn take_metadata(&mut self, manifest: &Manifest) {
        if let Some(e) = manifest.entries.first() {
            if let EntryKind::File { mode, .. } = e.kind {
                self.mode = mode;
            }
            self.mtime = e.mtime;
        }
    }

    /// Path the file will have once [`finish`](Self::finish) succeeds.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Path of the temp file being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// Size of the file in bytes, as given to [`create`](Self::create).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes verified bytes at `offset`.
    ///
    /// Fails with [`StorageError::OutOfRange`] if `offset + data.len()`
    /// exceeds the size given to [`create`](Self::create).
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        check_range(offset, data.len() as u64, self.size)?;
        self.file
            .write_all_at(data, offset)
            .map_err(|e| StorageError::io("write", &self.temp_path, e))?;
        self.writeback.wrote(data.len() as u64);
        Ok(())
    }

    /// Writes verified bytes at `offset` into a range that has not been written before. The
    /// temp file starts sparse (all zeros), so an all-zero range is left as a hole instead of
    /// being written: a sparse disk image stays sparse and costs no disk bandwidth.
    ///
    /// Fails like [`write_at`](Self::write_at). Writing zeros over earlier non-zero data of the
    /// same range is not supported (use `write_at`).
    pub fn write_new_at(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError> {
        check_range(offset, data.len() as u64, self.size)?;
        if is_all_zero(data) {
            return Ok(false);
        }
        self.write_at(offset, data)?;
        Ok(true)
    }

    /// Verifies and publishes the file; returns its BLAKE3 hash.
    ///
    /// Fsyncs the temp file, re-reads it sequentially computing the BLAKE3
    /// hash of the whole content and compares it with `expected`. On a match
    /// the temp file is renamed over the destination (atomically replacing an
    /// existing file) and the directory is fsynced. On a mismatch the temp
    /// file is deleted, any existing destination is left untouched and
    /// [`StorageError::HashMismatch`] is returned.
    pub fn finish(mut self, expected: &[u8; 32]) -> Result<[u8; 32], StorageError> {
        self.sync_and_check_len()?;
        let hash = self.hash_content()?;
        if hash != *expected {
            tracing::warn!(
                path = %self.final_path.display(),
                "received file failed verification; discarding it"
            );
            // Drop removes the temp file.
            return Err(StorageError::HashMismatch {
                expected: to_hex(expected),
                actual: to_hex(&hash),
            });
        }
        self.place()?;
        Ok(hash)
    }

    /// Publishes a file whose blocks the receiver verified in memory against `hashes`:
    /// fsync, rename, fsync the directory, with no re-read. With `verify_readback`, every block
    /// is first read back and compared with its hash; a block that differs (a disk that did
    /// not keep what it was given) fails with [`StorageError::HashMismatch`] and the temp file
    /// is deleted. Returns the object hash, `hashes.root()`.
    pub fn finish_verified(
        mut self,
        hashes: &HashList,
        verify_readback: bool,
    ) -> Result<[u8; 32], StorageError> {
        if hashes.layout().object_size() != self.size {
            return Err(StorageError::SizeMismatch {
                path: self.temp_path.clone(),
                expected: hashes.layout().object_size(),
                actual: self.size,
            });
        }
        self.sync_and_check_len()?;
        if verify_readback {
            let bad = hashes.first_mismatch(|off, buf| {
                self.file
                    .read_exact_at(buf, off)
                    .map_err(|e| StorageError::io("read back", &self.temp_path, e))
            })?;
            if let Some(b) = bad {
                tracing::warn!(
                    path = %self.final_path.display(),
                    "block {b} reads back differently from what was verified; discarding the file"
                );
                return Err(StorageError::HashMismatch {
                    expected: format!("block {b} as verified"),
                    actual: "other bytes read back".into(),
                });
            }
        }
        self.place()?;
        Ok(hashes.root())
    }

    fn sync_and_check_len(&mut self) -> Result<(), StorageError> {
        let (kicks, failed) = self.writeback.stop();
        tracing::debug!("early writeback: {kicks} kicks, {failed} failed");
        self.file.sync_all().map_err(|e| StorageError::io("fsync", &self.temp_path, e))?;
        let actual_len =
            self.file.metadata().map_err(|e| StorageError::io("stat", &self.temp_path, e))?.len();
        if actual_len != self.size {
            return Err(StorageError::SizeMismatch {
                path: self.temp_path.clone(),
                expected: self.size,
                actual: actual_len,
            });
        }
        Ok(())
    }

    /// Apply the mode, rename over the destination and fsync the directory.
    fn place(mut self) -> Result<(), StorageError> {
        if let Some(j) = self.journal.take() {
            j.discard();
        }
        if let Some(mode) = self.mode {
            use std::os::unix::fs::PermissionsExt;
            self.file
                .set_permissions(std::fs::Permissions::from_mode(mode & MODE_MASK))
                .map_err(|e| StorageError::io("set permissions of", &self.temp_path, e))?;
        }
        if let Some(t) = self.mtime {
            use std::os::fd::AsFd;
            super::tree_sink::set_mtime(self.file.as_fd(), t)
                .and_then(|()| self.file.sync_all())
                .map_err(|e| StorageError::io("set mtime of", &self.temp_path, e))?;
        }
        std::fs::rename(&self.temp_path, &self.final_path)
            .map_err(|e| StorageError::io("rename temp file to", &self.final_path, e))?;
        self.done = true;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io("fsync directory", &self.dir, e))
    }

    /// BLAKE3 of the temp file's content, read sequentially.
    fn hash_content(&self) -> Result<[u8; 32], StorageError> {
        let chunk = IO_CHUNK.min(self.size.max(1));
        // `chunk` is at most 1 MiB, so it fits in usize.
        let mut buf = vec![0u8; chunk as usize];
        let mut hasher = blake3::Hasher::new();
        let mut offset = 0u64;
        while offset < self.size {
            let n = (self.size - offset).min(chunk) as usize;
            let piece = &mut buf[..n];
            self.file
                .read_exact_at(piece, offset)
                .map_err(|e| StorageError::io("read back", &self.temp_path, e))?;
            hasher.update(piece);
            offset += n as u64;
        }
        Ok(*hasher.finalize().as_bytes())
    }

    /// Removes the temp file. The destination is never touched.
    pub fn abort(mut self) {
        self.remove_temp();
    }

    /// Stops without placing and keeps the temp file and its resume state for the next run
    /// (an interrupted receive). A sink that is not [`resumable`](Self::resumable) has no
    /// state to resume from: its temp file is removed, as by [`abort`](Self::abort).
    pub fn suspend(mut self) {
        match self.journal.take() {
            Some(j) => {
                j.suspend();
                self.done = true;
            }
            None => self.remove_temp(),
        }
    }

    /// Removes the temp file (and the resume state) once; errors are logged, not returned.
    fn remove_temp(&mut self) {
        if let Some(j) = self.journal.take() {
            j.discard();
        }
        if self.done {
            return;
        }
        self.done = true;
        match std::fs::remove_file(&self.temp_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %self.temp_path.display(),
                error = %e,
                "could not remove temp file"
            ),
        }
    }
}

impl Sink for FileSink {
    fn len(&self) -> u64 {
        self.size
    }

    fn destination(&self) -> &Path {
        &self.final_path
    }

    fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError> {
        self.write_new_at(offset, data)
    }

    fn rewrite_block(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.write_at(offset, data)
    }

    fn finish(
        self: Box<Self>,
        hashes: &HashList,
        verify_readback: bool,
    ) -> Result<[u8; 32], StorageError> {
        FileSink::finish_verified(*self, hashes, verify_readback)
    }

    fn abort(self: Box<Self>) {
        FileSink::abort(*self)
    }

    fn record_block(&mut self, block: u32, hash: [u8; 32]) {
        if let Some(j) = &self.journal {
            j.record(block, hash);
        }
    }

    fn suspend(self: Box<Self>) {
        FileSink::suspend(*self)
    }
}

/// A destination name a file sink accepts: one component, not shaped like a temp file.
fn check_name(name: &RelPath) -> Result<(), StorageError> {
    if !name.is_single_component() {
        return Err(StorageError::Unsupported(format!(
            "a file sink places a plain file name, not the path {name:?}"
        )));
    }
    if is_temp_name(std::ffi::OsStr::new(name.as_str())) {
        // The next run's `clean_stale_temps` would delete it.
        return Err(StorageError::BadName(format!(
            "{name:?} is reserved for temp files (.*.mcast-tmp-<hex>)"
        )));
    }
    Ok(())
}

/// Open an earlier run's temp file to write on: a regular file (not followed if a symlink) of
/// `size` bytes that no one else holds locked.
fn open_staged(path: &Path, size: u64) -> Result<File, StorageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| StorageError::io("open staged", path, e))?;
    let meta = file.metadata().map_err(|e| StorageError::io("stat", path, e))?;
    if !meta.is_file() || meta.len() != size {
        return Err(StorageError::SizeMismatch {
            path: path.to_path_buf(),
            expected: size,
            actual: meta.len(),
        });
    }
    if !try_lock(&file).map_err(|e| StorageError::io("lock", path, e))? {
        return Err(StorageError::Busy { dest: path.to_path_buf(), pid: 0 });
    }
    Ok(file)
}

/// Remove the temp file at `path` unless another receiver holds it locked (or it is not a
/// regular file). Returns whether it is gone.
pub(crate) fn remove_unlocked(path: &Path) -> bool {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => return e.kind() == std::io::ErrorKind::NotFound,
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    match try_lock(&file) {
        Ok(true) => match std::fs::remove_file(path) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        },
        Ok(false) => {
            tracing::warn!(path = %path.display(), "kept: in use by another mcast-recv");
            false
        }
        Err(_) => false,
    }
}

impl Drop for FileSink {
    /// Removes the temp file unless [`FileSink::finish`] published it.
    fn drop(&mut self) {
        self.remove_temp();
    }
}

/// Whether every byte is zero (512 bytes at a time, OR-folded, which the compiler vectorizes).
fn is_all_zero(data: &[u8]) -> bool {
    let mut chunks = data.chunks_exact(512);
    let whole = chunks.by_ref().all(|c| c.iter().fold(0u8, |acc, b| acc | b) == 0);
    whole && chunks.remainder().iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn zero_ranges_stay_holes() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::create(dir.path(), &n("z.bin"), 3 << 20).unwrap();
        let mut data = vec![0u8; 1 << 20];
        assert!(!sink.write_new_at(0, &data).unwrap());
        data[12_345] = 7;
        assert!(sink.write_new_at(1 << 20, &data).unwrap());
        assert!(!sink.write_new_at(2 << 20, &[0; 3]).unwrap());
        assert!(matches!(
            sink.write_new_at(3 << 20, &[0; 1]),
            Err(StorageError::OutOfRange { .. })
        ));
        let mut expected = vec![0u8; 3 << 20];
        expected[(1 << 20) + 12_345] = 7;
        let hash = sink.finish(blake3::hash(&expected).as_bytes()).unwrap();
        assert_eq!(&hash, blake3::hash(&expected).as_bytes());
        assert_eq!(std::fs::read(dir.path().join("z.bin")).unwrap(), expected);
        for (i, len) in [(0usize, 0usize), (3, 17), (0, 4096)] {
            let mut v = vec![0u8; len + i];
            assert!(is_all_zero(&v[i..]));
            if len > 0 {
                v[i + len - 1] = 1;
                assert!(!is_all_zero(&v[i..]));
            }
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn create_makes_sparse_temp_with_pattern_name() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::create(dir.path(), &n("out.bin"), 1 << 30).unwrap();
        assert_eq!(sink.final_path(), dir.path().join("out.bin"));
        assert_eq!(sink.temp_path().parent(), Some(dir.path()));
        let tname = sink.temp_path().file_name().unwrap();
        assert!(tname.to_str().unwrap().starts_with(".out.bin.mcast-tmp-"));
        assert!(is_temp_name(tname));
        assert_eq!(std::fs::metadata(sink.temp_path()).unwrap().len(), 1 << 30);
        assert_eq!(sink.size(), 1 << 30);
        assert!(!sink.final_path().exists());
    }

    #[test]
    fn write_out_of_order_and_finish() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let mut sink = FileSink::create(dir.path(), &n("f"), data.len() as u64).unwrap();
        let temp = sink.temp_path().to_path_buf();
        for start in (0..data.len()).step_by(1000).rev() {
            let end = (start + 1000).min(data.len());
            sink.write_at(start as u64, &data[start..end]).unwrap();
        }
        let expected = *blake3::hash(&data).as_bytes();
        assert_eq!(sink.finish(&expected).unwrap(), expected);
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), data);
        assert!(!temp.exists());
        assert_eq!(entries(dir.path()), vec!["f"]);
    }

    #[test]
    fn empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::create(dir.path(), &n("empty"), 0).unwrap();
        let expected = *blake3::hash(b"").as_bytes();
        assert_eq!(sink.finish(&expected).unwrap(), expected);
        assert_eq!(std::fs::read(dir.path().join("empty")).unwrap(), b"");
    }

    #[test]
    fn mismatch_keeps_old_destination() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"old").unwrap();
        let mut sink = FileSink::create(dir.path(), &n("f"), 3).unwrap();
        sink.write_at(0, b"new").unwrap();
        let err = sink.finish(&[0u8; 32]).unwrap_err();
        match err {
            StorageError::HashMismatch { expected, actual } => {
                assert_eq!(expected, "0".repeat(64));
                assert_eq!(actual, blake3::hash(b"new").to_hex().as_str());
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"old");
        assert_eq!(entries(dir.path()), vec!["f"]);
    }

    #[test]
    fn drop_and_abort_remove_temp() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"old").unwrap();
        let mut sink = FileSink::create(dir.path(), &n("f"), 3).unwrap();
        sink.write_at(0, b"new").unwrap();
        drop(sink);
        assert_eq!(entries(dir.path()), vec!["f"]);
        let sink = FileSink::create(dir.path(), &n("f"), 3).unwrap();
        sink.abort();
        assert_eq!(entries(dir.path()), vec!["f"]);
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"old");
    }

    #[test]
    fn write_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::create(dir.path(), &n("f"), 10).unwrap();
        sink.write_at(0, &[1; 10]).unwrap();
        sink.write_at(10, &[]).unwrap();
        for (off, len) in [(0u64, 11usize), (10, 1), (9, 2), (u64::MAX, 1)] {
            assert!(
                matches!(sink.write_at(off, &vec![0; len]), Err(StorageError::OutOfRange { .. })),
                "{off} {len}"
            );
        }
        // Nothing was written past the end.
        assert_eq!(std::fs::metadata(sink.temp_path()).unwrap().len(), 10);
    }

    #[test]
    fn externally_resized_temp_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::create(dir.path(), &n("f"), 10).unwrap();
        OpenOptions::new().write(true).open(sink.temp_path()).unwrap().set_len(4).unwrap();
        assert!(matches!(
            sink.finish(&[0; 32]),
            Err(StorageError::SizeMismatch { expected: 10, actual: 4, .. })
        ));
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn bad_names_and_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        // Checked names with a directory part are not a file sink's to place.
        let nested = n("a/b");
        assert!(matches!(
            FileSink::create(dir.path(), &nested, 1),
            Err(StorageError::Unsupported(_))
        ));
        assert!(entries(dir.path()).is_empty());
        let missing = dir.path().join("nope");
        assert!(matches!(FileSink::create(&missing, &n("f"), 1), Err(StorageError::Io { .. })));
    }

    #[test]
    fn longest_name_works() {
        let dir = tempfile::tempdir().unwrap();
        let name = "n".repeat(255);
        let mut sink = FileSink::create(dir.path(), &n(&name), 2).unwrap();
        sink.write_at(0, b"hi").unwrap();
        sink.finish(blake3::hash(b"hi").as_bytes()).unwrap();
        assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), b"hi");
    }

    #[test]
    fn rename_onto_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d").join("inner"), b"x").unwrap();
        let sink = FileSink::create(dir.path(), &n("d"), 0).unwrap();
        let err = sink.finish(blake3::hash(b"").as_bytes()).unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
        assert_eq!(entries(dir.path()), vec!["d"]);
    }
}
