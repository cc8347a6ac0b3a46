//! [`TreeSink`], the [`Sink`] of a tree push: a staging directory `.<name>.mcast-tmp-<hex>`
//! beside the destination (the temp naming of `names.rs`) in which every directory, file and
//! symlink of the manifest is created up front (files sparse, at their final sizes), verified
//! blocks are written into the files they span (all-zero pieces stay holes), and `finish`
//! verifies the whole payload, applies modes (files, then directories deepest first), fsyncs
//! every file and directory and renames the staging directory onto the destination in one
//! step. Every entry's mtime is set after its contents are final: files' with their modes,
//! symlinks' own (`AT_SYMLINK_NOFOLLOW`), directories' last, deepest first. The tree's root
//! directory gets the default mode (0o777 less the umask) and the time of placing: the manifest
//! has no entry for it.
//!
//! Nothing is ever followed through a symlink while placing: the destination's parent is
//! opened with `O_NOFOLLOW` (a symlink as its last component is refused; the components above
//! it are the operator's and are resolved normally), and everything below it is reached by
//! descriptor-relative calls with `O_NOFOLLOW`/`O_EXCL` (`at.rs`, `stage.rs`, `walk.rs`), so
//! a symlink of the tree, or one planted in the staging directory by someone else, makes the
//! operation fail instead of writing elsewhere. The manifest's checks guarantee no entry lies
//! below a symlink. Trees deeper than [`MAX_TREE_DEPTH`] directories are refused.
//!
//! Placement (`dest.rs`, Linux `renameat2`):
//! - destination absent: `RENAME_NOREPLACE` (a destination appearing meanwhile is not
//!   overwritten; on a file system without `renameat2`, a check and a plain rename);
//! - destination an empty directory (e.g. a pre-created `--output`): `RENAME_EXCHANGE`, then
//!   the old directory is removed with `rmdir`; if it was filled meanwhile it is swapped back
//!   and the push fails with [`StorageError::DestinationExists`];
//! - destination anything else (a tree, a file, a symlink such as `current`): refused with
//!   [`StorageError::DestinationExists`] unless `replace` is set; then `RENAME_EXCHANGE` swaps
//!   it with the new tree atomically (a reader sees the old tree or the new one at the path,
//!   never a mix or nothing) and the old one, now at the staging name, is removed. A symlink
//!   destination is replaced itself, not followed. A file system without `RENAME_EXCHANGE` is
//!   [`StorageError::Unsupported`].
//!
//! While the sink lives, the staging directory is `flock`ed (cleanups keep it) and the
//! destination's lock `.<name>.mcast-resume` beside it names this process, so a second
//! receiver into the same destination fails with [`StorageError::Busy`]. A sink opened with
//! [`TreeSink::resumable`] journals its durable blocks in that sidecar and, when suspended,
//! keeps its staging directory for the next run (`resume.rs`).
//!
//! A sink dropped or aborted before `finish` succeeds removes its staging directory; on any
//! failure the destination is left as it was. A crash leaves the staging directory (or, after
//! a swap, the old tree) under the temp name: [`clean_stale_tree_temps`] removes those.

mod at;
mod dest;
mod resume;
mod stage;
mod walk;

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub(crate) use self::at::set_mtime;
use self::at::{cstring, fchmod, mkdir_at, open_file_at, remove_tree_at, set_mtime_at, symlink_at};
use self::dest::{Dest, Existing};
use self::stage::Stage;
use self::walk::walk_sorted;
use super::names::{is_temp_name, resume_file_name};
use super::resume::{Journal, Sidecar};
use super::tree_source::component_order;
use super::{check_range, Sink, StorageError};
use crate::proto::manifest::{
    check_entries, Entry, EntryKind, HashList, Manifest, ManifestError, Mtime, RelPath, MODE_MASK,
};

pub use self::dest::clean_stale_tree_temps;
pub use self::resume::TreeOpen;
pub use self::walk::MAX_TREE_DEPTH;

/// Receiver side of a tree push: a staging directory beside the destination, filled at
/// payload offsets, verified, fsynced and renamed into place.
///
/// If the sink is dropped before [`finish`](Self::finish) succeeds, the staging directory is
/// removed and the destination is left as it was.
#[derive(Debug)]
pub struct TreeSink {
    dest: Dest,
    staging_name: CString,
    stage: Stage,
    /// The entries in component order (directories before their subtrees).
    sorted: Vec<Entry>,
    /// The file entries in payload order.
    files: Vec<SinkFile>,
    size: u64,
    replace: bool,
    /// Set once the staging directory is no longer ours to remove.
    done: bool,
    /// The destination's lock (`.<name>.mcast-resume` beside it, naming our pid), held while
    /// the sink lives: a second receiver into the same destination is refused.
    lock: Option<Sidecar>,
    /// A resumable sink's journal of durable blocks (it holds the sidecar and its lock
    /// instead of `lock`; see `resume.rs`).
    journal: Option<Journal>,
}

/// A file of the tree and its payload range.
#[derive(Debug)]
struct SinkFile {
    path: RelPath,
    offset: u64,
    len: u64,
    mode: Option<u32>,
    mtime: Option<Mtime>,
}

/// A checked tree manifest for a destination, before anything is staged.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) dest: Dest,
    /// The entries in component order.
    pub(crate) sorted: Vec<Entry>,
    /// The file entries in payload order.
    files: Vec<SinkFile>,
    pub(crate) size: u64,
    replace: bool,
}

impl Plan {
    /// Checks `manifest` for `dest` (see [`TreeSink::create`]) and opens the destination's
    /// parent; nothing is created.
    pub(crate) fn new(
        dest: &Path,
        manifest: &Manifest,
        replace: bool,
    ) -> Result<Self, StorageError> {
        check_entries(&manifest.entries, manifest.object_size).map_err(ManifestError::from)?;
        for e in &manifest.entries {
            if e.path.is_single_component() && is_temp_name(std::ffi::OsStr::new(e.path.as_str())) {
                return Err(StorageError::BadName(format!(
                    "{:?} is reserved for temp files (.*.mcast-tmp-<hex>)",
                    e.path.as_str()
                )));
            }
        }
        let dest = Dest::open(dest)?;
        if matches!(dest.existing()?, Existing::Something) && !replace {
            return Err(StorageError::DestinationExists(dest.path.clone()));
        }
        let files = manifest
            .entries
            .iter()
            .filter_map(|e| match e.kind {
                EntryKind::File { offset, len, mode } => {
                    Some(SinkFile { path: e.path.clone(), offset, len, mode, mtime: e.mtime })
                }
                _ => None,
            })
            .collect();
        let mut sorted = manifest.entries.clone();
        sorted.sort_by(|a, b| component_order(&a.path, &b.path));
        Ok(Plan { dest, sorted, files, size: manifest.object_size, replace })
    }

    /// Creates a new staging directory holding every entry, for a sink holding `lock` (the
    /// destination's sidecar, claimed) or, for a resumable push of manifest hash `resume`,
    /// journaling into it (see `resume.rs`).
    fn stage(
        self,
        lock: Sidecar,
        resume: Option<(&[u8; 32], crate::proto::layout::Layout)>,
    ) -> Result<TreeSink, StorageError> {
        let (staging_name, stage) = match self.dest.make_staging() {
            Ok(s) => s,
            Err(e) => {
                lock.remove();
                return Err(e);
            }
        };
        let mut sink = self.into_sink(staging_name, stage);
        // From here on, Drop removes the staging directory on any error (and the sidecar).
        match resume {
            None => sink.lock = Some(lock),
            Some((id, layout)) => sink.start_journal(lock, id, layout)?,
        }
        walk_sorted(&sink.stage, &sink.sorted, true, create_entry, |_, _, _| Ok(()))?;
        Ok(sink)
    }

    /// The sink of this plan on the staging directory `staging_name` (open as `stage`).
    pub(crate) fn into_sink(self, staging_name: CString, stage: Stage) -> TreeSink {
        TreeSink {
            dest: self.dest,
            staging_name,
            stage,
            sorted: self.sorted,
            files: self.files,
            size: self.size,
            replace: self.replace,
            done: false,
            lock: None,
            journal: None,
        }
    }
}

impl TreeSink {
    /// Stages the tree of `manifest` for destination `dest` (the tree's root directory, e.g.
    /// `/srv/app/releases/v42`), whose parent must exist and must not be a symlink. Refuses
    /// an existing destination (other than an empty directory) unless `replace`. The
    /// manifest's entries are checked again (`check_entries`), top-level names that look like
    /// temp files and trees deeper than [`MAX_TREE_DEPTH`] are refused; nothing is left
    /// behind when anything is refused.
    pub fn create(dest: &Path, manifest: &Manifest, replace: bool) -> Result<Self, StorageError> {
        let plan = Plan::new(dest, manifest, replace)?;
        let lock_path = plan.dest.parent_path.join(resume_file_name(&plan.dest.name));
        let lock = Sidecar::lock(&lock_path, &plan.dest.path)?;
        if let Err(e) = lock.claim() {
            lock.remove();
            return Err(e);
        }
        plan.stage(lock, None)
    }

    /// Where the tree appears once [`finish`](Self::finish) succeeds.
    pub fn final_path(&self) -> &Path {
        &self.dest.path
    }

    /// The staging directory being filled.
    pub fn staging_path(&self) -> PathBuf {
        self.stage.path_of("")
    }

    /// Writes verified payload bytes at `offset` into the files they span; all-zero pieces
    /// are left as holes (the files start sparse). Returns whether anything was written.
    pub fn write_new_at(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError> {
        self.write_at(offset, data, true)
    }

    /// Writes payload bytes at `offset` over bytes written there before (they failed
    /// verification): zeros are written too, so nothing of the refuted block remains.
    pub fn rewrite_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.write_at(offset, data, false).map(drop)
    }

    /// Reads staged payload bytes at `offset` (across the files they span) into `buf`.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        check_range(offset, buf.len() as u64, self.size)?;
        let mut idx = self.files.partition_point(|f| f.offset + f.len <= offset);
        let (mut pos, mut rest) = (offset, &mut buf[..]);
        while !rest.is_empty() {
            let Some(f) = self.files.get(idx) else {
                return Err(StorageError::InvalidArgument("payload map has a gap"));
            };
            idx += 1;
            if f.len == 0 {
                continue;
            }
            let in_file = pos - f.offset;
            let n = usize::try_from(f.len - in_file).unwrap_or(usize::MAX).min(rest.len());
            let (piece, tail) = std::mem::take(&mut rest).split_at_mut(n);
            let len = f.len;
            self.stage.at(&f.path, "read back", |d, name| {
                open_staged_file(d, name, false, len)?.read_exact_at(piece, in_file)
            })?;
            rest = tail;
            pos += n as u64;
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8], holes: bool) -> Result<bool, StorageError> {
        check_range(offset, data.len() as u64, self.size)?;
        let mut idx = self.files.partition_point(|f| f.offset + f.len <= offset);
        let (mut pos, mut rest, mut wrote) = (offset, data, false);
        while !rest.is_empty() {
            let Some(f) = self.files.get(idx) else {
                return Err(StorageError::InvalidArgument("payload map has a gap"));
            };
            idx += 1;
            if f.len == 0 {
                continue;
            }
            let in_file = pos - f.offset;
            let n = usize::try_from(f.len - in_file).unwrap_or(usize::MAX).min(rest.len());
            let (piece, tail) = rest.split_at(n);
            if !(holes && is_all_zero(piece)) {
                let len = f.len;
                self.stage.at(&f.path, "write", |d, name| {
                    open_staged_file(d, name, true, len)?.write_all_at(piece, in_file)
                })?;
                wrote = true;
            }
            rest = tail;
            pos += n as u64;
        }
        Ok(wrote)
    }

    /// Makes the staged tree durable and places it (see the module docs): every block was
    /// verified against `hashes` before it was written, so nothing is read again unless
    /// `verify_readback` asks for it (then every block is read back and compared, and a
    /// difference is [`StorageError::HashMismatch`]). Applies modes, fsyncs every file and
    /// directory; returns the object hash (`hashes.root()`). On any error the destination is as
    /// it was and the staging directory is removed.
    pub fn finish(
        mut self,
        hashes: &HashList,
        verify_readback: bool,
    ) -> Result<[u8; 32], StorageError> {
        if hashes.layout().object_size() != self.size {
            return Err(StorageError::SizeMismatch {
                path: self.staging_path(),
                expected: hashes.layout().object_size(),
                actual: self.size,
            });
        }
        self.sync_files()?;
        if verify_readback {
            if let Some(b) = hashes.first_mismatch(|off, buf| self.read_at(off, buf))? {
                tracing::warn!(
                    dest = %self.dest.path.display(),
                    "block {b} reads back differently from what was verified; discarding the tree"
                );
                return Err(StorageError::HashMismatch {
                    expected: format!("block {b} as verified"),
                    actual: "other bytes read back".into(),
                });
            }
        }
        // Symlinks' own mtimes; directories' modes and mtimes once their contents are in
        // place (nothing changes them after), then fsync, deepest first.
        walk_sorted(
            &self.stage,
            &self.sorted,
            false,
            |dir, name, e| match (&e.kind, e.mtime) {
                (EntryKind::Symlink { .. }, Some(t)) => set_mtime_at(dir, name, t),
                _ => Ok(()),
            },
            |dir, mode, mtime| {
                if let Some(m) = mode {
                    fchmod(dir, m & MODE_MASK)?;
                }
                if let Some(t) = mtime {
                    set_mtime(dir, t)?;
                }
                File::from(dir.try_clone_to_owned()?).sync_all()
            },
        )?;
        let root = self.stage.root().try_clone_to_owned();
        root.and_then(|r| File::from(r).sync_all())
            .map_err(|e| StorageError::io("fsync directory", self.staging_path(), e))?;
        self.dest.place(&self.staging_name, self.replace, &mut self.done)?;
        if let Some(l) = self.lock.take() {
            l.remove();
        }
        if let Some(j) = self.journal.take() {
            j.discard();
        }
        let parent = self.dest.parent.try_clone();
        parent
            .and_then(|p| File::from(p).sync_all())
            .map_err(|e| StorageError::io("fsync directory", &self.dest.parent_path, e))?;
        Ok(hashes.root())
    }

    /// Fsyncs every staged file and applies its mode and mtime.
    fn sync_files(&mut self) -> Result<(), StorageError> {
        for f in &self.files {
            let (len, mode, mtime) = (f.len, f.mode, f.mtime);
            self.stage.at(&f.path, "fsync", |d, n| {
                let file = open_staged_file(d, n, false, len)?;
                if let Some(m) = mode {
                    fchmod(file.as_fd(), m & MODE_MASK)?;
                }
                if let Some(t) = mtime {
                    set_mtime(file.as_fd(), t)?;
                }
                file.sync_all()
            })?;
        }
        Ok(())
    }

    /// Removes the staging directory. The destination is never touched.
    pub fn abort(mut self) {
        self.remove_staging();
    }

    fn remove_staging(&mut self) {
        if let Some(l) = self.lock.take() {
            l.remove();
        }
        if let Some(j) = self.journal.take() {
            j.discard();
        }
        if self.done {
            return;
        }
        self.done = true;
        if let Err(e) = remove_tree_at(self.dest.parent.as_fd(), &self.staging_name) {
            tracing::warn!(
                path = %self.staging_path().display(), error = %e,
                "could not remove staging directory"
            );
        }
    }
}

/// Creates one entry in the staging directory: a sparse file of its final size, a directory
/// or a symlink (never following anything, never reusing what is there).
fn create_entry(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::CStr,
    e: &Entry,
) -> io::Result<()> {
    match &e.kind {
        EntryKind::File { len, .. } => at::create_file_at(dir, name)?.set_len(*len),
        EntryKind::Dir { .. } => mkdir_at(dir, name, 0o777),
        EntryKind::Symlink { target } => symlink_at(&cstring(target.as_bytes())?, dir, name),
        // Images have their own sink (storage::image_sink); never part of a tree.
        EntryKind::Image(_) => Err(io::Error::other("a disk image is not placed in a tree")),
    }
}

/// Opens a staged file and checks it is still the regular file of `len` bytes created.
fn open_staged_file(
    d: std::os::fd::BorrowedFd<'_>,
    name: &CString,
    write: bool,
    len: u64,
) -> io::Result<File> {
    let file = open_file_at(d, name, write)?;
    let m = file.metadata()?;
    if !m.is_file() || m.len() != len {
        return Err(io::Error::other("staged file was replaced or resized"));
    }
    Ok(file)
}

impl Sink for TreeSink {
    fn len(&self) -> u64 {
        self.size
    }

    fn destination(&self) -> &Path {
        &self.dest.path
    }

    fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError> {
        self.write_new_at(offset, data)
    }

    fn rewrite_block(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.rewrite_at(offset, data)
    }

    fn finish(
        self: Box<Self>,
        hashes: &HashList,
        verify_readback: bool,
    ) -> Result<[u8; 32], StorageError> {
        TreeSink::finish(*self, hashes, verify_readback)
    }

    fn abort(self: Box<Self>) {
        TreeSink::abort(*self)
    }

    fn record_block(&mut self, block: u32, hash: [u8; 32]) {
        if let Some(j) = &self.journal {
            j.record(block, hash);
        }
    }

    fn suspend(self: Box<Self>) {
        TreeSink::suspend(*self)
    }
}

impl Drop for TreeSink {
    /// Removes the staging directory unless [`TreeSink::finish`] placed it.
    fn drop(&mut self) {
        self.remove_staging();
    }
}

/// Whether every byte is zero (512 bytes at a time, OR-folded, which the compiler vectorizes).
fn is_all_zero(data: &[u8]) -> bool {
    let mut chunks = data.chunks_exact(512);
    let whole = chunks.by_ref().all(|c| c.iter().fold(0u8, |acc, b| acc | b) == 0);
    whole && chunks.remainder().iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests;
