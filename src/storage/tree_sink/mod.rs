//! [`TreeSink`], the [`Sink`] of a tree push: a staging directory `.<name>.mcast-tmp-<hex>`
//! beside the destination (the temp naming of `names.rs`) in which every directory, file and
//! symlink of the manifest is created up front (files sparse, at their final sizes), verified
//! blocks are written into the files they span, and `finish` verifies the whole payload,
//! applies modes, fsyncs every file and directory and renames the staging directory onto the
//! destination in one step.
//!
//! Nothing is ever followed through a symlink while placing: the destination's parent is
//! opened with `O_NOFOLLOW` (a symlink there is refused), and everything below it is reached by
//! descriptor-relative calls with `O_NOFOLLOW`/`O_EXCL` (see `stage.rs`), so a symlink of the
//! tree, or one planted in the staging directory by someone else, makes the operation fail
//! instead of writing elsewhere. The manifest's checks guarantee no entry lies below a symlink.
//!
//! Placement (Linux `renameat2`):
//! - destination absent: `RENAME_NOREPLACE` (a destination appearing meanwhile is not
//!   overwritten);
//! - destination an empty directory (e.g. a pre-created `--output`): `RENAME_EXCHANGE`, then
//!   the old directory is removed with `rmdir`; if it was filled meanwhile it is swapped back
//!   and the push fails with [`StorageError::DestinationExists`];
//! - destination anything else: refused with [`StorageError::DestinationExists`] unless
//!   `replace` is set; then `RENAME_EXCHANGE` swaps the trees atomically (readers see the old
//!   tree or the new one, never a mix) and the old one, now at the staging name, is removed.
//!
//! A sink dropped or aborted before `finish` succeeds removes its staging directory; on any
//! failure the destination is left as it was.

mod at;
mod stage;

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use self::at::{
    cstring, fchmod, is_dir_mode, list_dir, lstat_at, mkdir_at, open_dir_at, open_dir_path,
    open_file_at, remove_tree_at, rename2_at, symlink_at, unlink_at,
};
use self::stage::Stage;
use super::names::{is_temp_name, random_u64, temp_file_name};
use super::tree_source::component_order;
use super::{check_range, to_hex, Sink, StorageError, IO_CHUNK};
use crate::proto::manifest::{check_entries, Entry, EntryKind, Manifest, ManifestError, RelPath};

/// How often `create` retries when a randomly named staging directory already exists.
const CREATE_ATTEMPTS: usize = 8;

/// Receiver side of a tree push: a staging directory beside the destination, filled at
/// payload offsets, verified, fsynced and renamed into place.
#[derive(Debug)]
pub struct TreeSink {
    /// The destination's parent directory.
    parent: OwnedFd,
    dest: PathBuf,
    dest_name: CString,
    staging_name: CString,
    stage: Stage,
    /// The file entries in payload order.
    files: Vec<SinkFile>,
    /// Every directory in the tree (listed or implied by a path), deepest first, with the mode
    /// asked for.
    dirs: Vec<(RelPath, Option<u32>)>,
    size: u64,
    replace: bool,
    /// Set once the staging directory is no longer ours to remove.
    done: bool,
}

/// A file of the tree and its payload range.
#[derive(Debug)]
struct SinkFile {
    path: RelPath,
    offset: u64,
    len: u64,
    mode: Option<u32>,
}

/// What is at the destination.
enum Existing {
    Nothing,
    EmptyDir,
    Something,
}

impl TreeSink {
    /// Stages the tree of `manifest` for destination `dest` (the tree's root directory, e.g.
    /// `/srv/app/releases/v42`), whose parent must exist and must not be a symlink. Refuses
    /// an existing destination (other than an empty directory) unless `replace`. The manifest's
    /// entries are checked again (`check_entries`) and top-level names that look like temp
    /// files are refused; nothing is created when anything is refused.
    pub fn create(dest: &Path, manifest: &Manifest, replace: bool) -> Result<Self, StorageError> {
        check_entries(&manifest.entries, manifest.object_size).map_err(ManifestError::from)?;
        for e in &manifest.entries {
            if e.path.is_single_component() && is_temp_name(std::ffi::OsStr::new(e.path.as_str())) {
                return Err(StorageError::BadName(format!(
                    "{:?} is reserved for temp files (.*.mcast-tmp-<hex>)",
                    e.path.as_str()
                )));
            }
        }
        let (parent_path, name) = split_dest(dest)?;
        let parent = open_dir_path(&parent_path).map_err(|e| {
            let link = std::fs::symlink_metadata(&parent_path).is_ok_and(|m| m.is_symlink());
            if link {
                StorageError::Unsupported(format!(
                    "the destination's parent {} is a symlink; give its real path",
                    parent_path.display()
                ))
            } else {
                StorageError::io("open destination parent", &parent_path, e)
            }
        })?;
        let dest_name = cstring(name.as_bytes()).map_err(|e| StorageError::io("open", dest, e))?;
        if matches!(existing(&parent, &dest_name, dest)?, Existing::Something) && !replace {
            return Err(StorageError::DestinationExists(dest.to_path_buf()));
        }
        let (staging_name, stage) = make_staging(&parent, &parent_path, &name)?;
        let mut sink = TreeSink {
            parent,
            dest: dest.to_path_buf(),
            dest_name,
            staging_name,
            stage,
            files: Vec::new(),
            dirs: Vec::new(),
            size: manifest.object_size,
            replace,
            done: false,
        };
        // From here on, Drop removes the staging directory on any error.
        sink.populate(&manifest.entries)?;
        Ok(sink)
    }

    /// Creates every entry in the staging directory, parents first.
    fn populate(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let mut dirs: std::collections::BTreeMap<RelPath, Option<u32>> = Default::default();
        for e in entries {
            match &e.kind {
                EntryKind::File { offset, len, mode } => self.files.push(SinkFile {
                    path: e.path.clone(),
                    offset: *offset,
                    len: *len,
                    mode: *mode,
                }),
                EntryKind::Dir { mode } => {
                    dirs.insert(e.path.clone(), *mode);
                }
                EntryKind::Symlink { .. } => {}
            }
            let s = e.path.as_str();
            for (cut, _) in s.match_indices('/') {
                let parent = RelPath::new(&s[..cut])?;
                dirs.entry(parent).or_insert(None);
            }
        }
        let mut order: Vec<&Entry> = entries.iter().collect();
        order.sort_by(|a, b| component_order(&a.path, &b.path));
        for e in order {
            match &e.kind {
                EntryKind::File { len, .. } => {
                    let len = *len;
                    self.stage.at(&e.path, true, "create file", |d, n| {
                        at::create_file_at(d, n)?.set_len(len)
                    })?
                }
                EntryKind::Dir { .. } => {
                    self.stage
                        .at(&e.path, true, "create directory", |d, n| mkdir_at(d, n, 0o777))?
                }
                EntryKind::Symlink { target } => {
                    let t = cstring(target.as_bytes())
                        .map_err(|e2| StorageError::io("create symlink", e.path.as_str(), e2))?;
                    self.stage.at(&e.path, true, "create symlink", |d, n| symlink_at(&t, d, n))?
                }
            }
        }
        let mut dirs: Vec<(RelPath, Option<u32>)> = dirs.into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.depth()));
        self.dirs = dirs;
        Ok(())
    }

    /// Where the tree appears once [`finish`](Self::finish) succeeds.
    pub fn final_path(&self) -> &Path {
        &self.dest
    }

    /// The staging directory being filled.
    pub fn staging_path(&self) -> PathBuf {
        self.stage.path_of("")
    }

    /// Writes verified payload bytes at `offset` into the files they span; all-zero pieces
    /// are left as holes (the files start sparse). Returns whether anything was written.
    pub fn write_new_at(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError> {
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
            if !is_all_zero(piece) {
                let len = f.len;
                self.stage.at(&f.path.clone(), false, "write", |d, name| {
                    let file = open_staged_file(d, name, true, len)?;
                    file.write_all_at(piece, in_file)
                })?;
                wrote = true;
            }
            rest = tail;
            pos += n as u64;
        }
        Ok(wrote)
    }

    /// Verifies the staged tree against `expected` (BLAKE3 of the payload: the files' bytes in
    /// payload order), applies modes, fsyncs every file and directory and places the tree (see
    /// the module docs). On any error the destination is as it was and the staging directory
    /// is removed.
    pub fn finish(mut self, expected: &[u8; 32]) -> Result<[u8; 32], StorageError> {
        let hash = self.verify_and_sync()?;
        if hash != *expected {
            tracing::warn!(dest = %self.dest.display(), "received tree failed verification");
            return Err(StorageError::HashMismatch {
                expected: to_hex(expected),
                actual: to_hex(&hash),
            });
        }
        self.sync_dirs()?;
        self.place()?;
        File::from(self.parent.try_clone().map_err(|e| self.parent_err("fsync directory", e))?)
            .sync_all()
            .map_err(|e| self.parent_err("fsync directory", e))?;
        Ok(hash)
    }

    /// Hashes every file in payload order, fsyncs it and applies its mode.
    fn verify_and_sync(&mut self) -> Result<[u8; 32], StorageError> {
        let longest = self.files.iter().map(|f| f.len).max().unwrap_or(0);
        let mut buf = vec![0u8; IO_CHUNK.min(longest.max(1)) as usize];
        let mut hasher = blake3::Hasher::new();
        for i in 0..self.files.len() {
            let (path, len, mode) = {
                let f = &self.files[i];
                (f.path.clone(), f.len, f.mode)
            };
            self.stage.at(&path, false, "read back", |d, n| {
                let file = open_staged_file(d, n, false, len)?;
                file.sync_all()?;
                let mut off = 0u64;
                while off < len {
                    let k = (len - off).min(buf.len() as u64) as usize;
                    file.read_exact_at(&mut buf[..k], off)?;
                    hasher.update(&buf[..k]);
                    off += k as u64;
                }
                if let Some(m) = mode {
                    fchmod(file.as_fd(), m & crate::proto::manifest::MODE_MASK)?;
                }
                Ok(())
            })?;
        }
        Ok(*hasher.finalize().as_bytes())
    }

    /// Fsyncs every directory, deepest first, applying the modes asked for; then the staging
    /// directory itself.
    fn sync_dirs(&mut self) -> Result<(), StorageError> {
        self.stage.forget();
        for i in 0..self.dirs.len() {
            let (path, mode) = self.dirs[i].clone();
            self.stage.at(&path, false, "fsync directory", |d, n| {
                let dir = File::from(open_dir_at(d, n)?);
                dir.sync_all()?;
                if let Some(m) = mode {
                    fchmod(dir.as_fd(), m & crate::proto::manifest::MODE_MASK)?;
                }
                Ok(())
            })?;
        }
        self.stage.forget();
        let root = self.stage.root().try_clone_to_owned();
        root.and_then(|r| File::from(r).sync_all())
            .map_err(|e| StorageError::io("fsync directory", self.staging_path(), e))
    }

    /// Moves the staging directory onto the destination (see the module docs).
    fn place(&mut self) -> Result<(), StorageError> {
        let p = self.parent.as_fd();
        let (stg, dst) = (&self.staging_name, &self.dest_name);
        match existing(&self.parent, dst, &self.dest)? {
            Existing::Nothing => match rename2_at(p, stg, dst, libc::RENAME_NOREPLACE) {
                Ok(()) => {
                    self.done = true;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(StorageError::DestinationExists(self.dest.clone()))
                }
                Err(e) => return Err(self.parent_err("rename staging directory to", e)),
            },
            Existing::Something if !self.replace => {
                return Err(StorageError::DestinationExists(self.dest.clone()))
            }
            Existing::Something | Existing::EmptyDir => {}
        }
        rename2_at(p, stg, dst, libc::RENAME_EXCHANGE)
            .map_err(|e| self.parent_err("swap staging directory with", e))?;
        // The old destination is now at the staging name.
        if !self.replace {
            if let Err(e) = unlink_at(p, stg, true) {
                // Filled since we looked: put it back and keep it.
                let back = rename2_at(p, stg, dst, libc::RENAME_EXCHANGE);
                if let Err(b) = back {
                    tracing::error!(
                        dest = %self.dest.display(), error = %b,
                        "could not swap back a destination filled during placement; it is at {}",
                        self.staging_path().display()
                    );
                    self.done = true;
                }
                tracing::warn!(error = %e, "destination was filled during placement");
                return Err(StorageError::DestinationExists(self.dest.clone()));
            }
            self.done = true;
            return Ok(());
        }
        self.done = true;
        if let Err(e) = remove_tree_at(p, stg) {
            tracing::warn!(
                old = %self.staging_path().display(), error = %e,
                "replaced tree placed, but the old one could not be removed"
            );
        }
        Ok(())
    }

    fn parent_err(&self, op: &'static str, e: io::Error) -> StorageError {
        StorageError::io(op, &self.dest, e)
    }

    /// Removes the staging directory. The destination is never touched.
    pub fn abort(mut self) {
        self.remove_staging();
    }

    fn remove_staging(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if let Err(e) = remove_tree_at(self.parent.as_fd(), &self.staging_name) {
            tracing::warn!(
                path = %self.staging_path().display(), error = %e,
                "could not remove staging directory"
            );
        }
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

/// Splits `dest` into its parent (`.` for a bare name) and its last component, which must be
/// UTF-8 (it names the staging directory too).
fn split_dest(dest: &Path) -> Result<(PathBuf, String), StorageError> {
    let name = dest.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        StorageError::BadName(format!("{}: no UTF-8 last component", dest.display()))
    })?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.to_owned()))
}

/// What is at `name` in `parent` (not followed).
fn existing(parent: &OwnedFd, name: &CString, dest: &Path) -> Result<Existing, StorageError> {
    let st = match lstat_at(parent.as_fd(), name) {
        Ok(st) => st,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(StorageError::io("stat", dest, e)),
    };
    if !is_dir_mode(st.st_mode) {
        return Ok(Existing::Something);
    }
    let d = open_dir_at(parent.as_fd(), name).map_err(|e| StorageError::io("open", dest, e))?;
    match list_dir(d.as_fd(), 1).map(|names| names.is_empty()) {
        Ok(true) => Ok(Existing::EmptyDir),
        Ok(false) => Ok(Existing::Something),
        Err(e) => Err(StorageError::io("read dir", dest, e)),
    }
}

/// Creates the staging directory `.<name>.mcast-tmp-<hex>` in `parent` and opens it.
fn make_staging(
    parent: &OwnedFd,
    parent_path: &Path,
    name: &str,
) -> Result<(CString, Stage), StorageError> {
    let mut attempt = 0;
    loop {
        let tname = temp_file_name(name, random_u64());
        let path = parent_path.join(&tname);
        let c = cstring(tname.as_bytes()).map_err(|e| StorageError::io("create", &path, e))?;
        match mkdir_at(parent.as_fd(), &c, 0o777) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < CREATE_ATTEMPTS => {
                attempt += 1;
                continue;
            }
            Err(e) => return Err(StorageError::io("create staging directory", path, e)),
        }
        return match open_dir_at(parent.as_fd(), &c) {
            Ok(fd) => Ok((c, Stage::new(fd, path))),
            Err(e) => {
                // Replaced between mkdir and open; remove whatever is there, not following it.
                let _ = remove_tree_at(parent.as_fd(), &c);
                Err(StorageError::io("open staging directory", path, e))
            }
        };
    }
}

/// Removes staging directories (`.<name>.mcast-tmp-<hex>`, directories only) left beside
/// `dest` by crashed runs, and old trees a replacing run could not remove; returns how many.
/// Like [`clean_stale_temps`](super::clean_stale_temps) it would also remove the staging
/// directory of a tree sink for the same destination still in progress: call it before
/// starting one.
pub fn clean_stale_tree_temps(dest: &Path) -> Result<usize, StorageError> {
    let (parent_path, name) = split_dest(dest)?;
    let prefix = temp_file_name(&name, 0);
    let prefix = &prefix[..prefix.len() - 16];
    let parent =
        open_dir_path(&parent_path).map_err(|e| StorageError::io("open", &parent_path, e))?;
    let rd = std::fs::read_dir(&parent_path)
        .map_err(|e| StorageError::io("read dir", &parent_path, e))?;
    let mut removed = 0;
    for ent in rd {
        let ent = ent.map_err(|e| StorageError::io("read dir", &parent_path, e))?;
        let fname = ent.file_name();
        let b = fname.as_bytes();
        if !is_temp_name(&fname) || !b.starts_with(prefix.as_bytes()) {
            continue;
        }
        if b[prefix.len()..].len() != 16 {
            continue;
        }
        let c = cstring(b).map_err(|e| StorageError::io("remove", ent.path(), e))?;
        match lstat_at(parent.as_fd(), &c) {
            Ok(st) if is_dir_mode(st.st_mode) => {}
            _ => continue,
        }
        remove_tree_at(parent.as_fd(), &c)
            .map_err(|e| StorageError::io("remove", ent.path(), e))?;
        tracing::info!(path = %ent.path().display(), "removed stale staging directory");
        removed += 1;
    }
    Ok(removed)
}

impl Sink for TreeSink {
    fn len(&self) -> u64 {
        self.size
    }

    fn destination(&self) -> &Path {
        &self.dest
    }

    fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError> {
        self.write_new_at(offset, data)
    }

    fn finish(self: Box<Self>, object_hash: &[u8; 32]) -> Result<[u8; 32], StorageError> {
        TreeSink::finish(*self, object_hash)
    }

    fn abort(self: Box<Self>) {
        TreeSink::abort(*self)
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
