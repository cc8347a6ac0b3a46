//! The destination of a tree and the staging directory beside it: splitting the destination
//! path, looking at what is there (never following it), creating the staging directory
//! `.<name>.mcast-tmp-<hex>` (the temp naming of `storage/names.rs`), moving it into place
//! with `renameat2` ([`place`]) and removing staging directories left by crashed runs
//! ([`clean_stale_tree_temps`]).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::at::{
    cstring, is_dir_mode, list_dir, lstat_at, mkdir_at, open_dir_at, open_dir_path, remove_tree_at,
    rename2_at, unlink_at,
};
use super::stage::Stage;
use crate::storage::names::{is_temp_name, random_u64, temp_file_name};
use crate::storage::StorageError;

/// How often a staging directory is retried when its random name already exists.
const CREATE_ATTEMPTS: usize = 8;

/// Hex digits of the random suffix `temp_file_name` appends.
const SUFFIX_HEX: usize = 16;

/// What is at the destination.
pub(crate) enum Existing {
    Nothing,
    EmptyDir,
    Something,
}

/// The destination of a tree: its parent, open, and its name there.
#[derive(Debug)]
pub(crate) struct Dest {
    /// The parent directory, opened without following a symlink.
    pub(crate) parent: OwnedFd,
    pub(crate) parent_path: PathBuf,
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) c_name: CString,
}

impl Dest {
    /// Opens the parent of `dest` (`.` for a bare name). The last component must be UTF-8
    /// (it names the staging directory too); a parent that is a symlink is refused.
    pub(crate) fn open(dest: &Path) -> Result<Self, StorageError> {
        let name = dest.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            StorageError::BadName(format!(
                "{}: a tree's destination must end in a UTF-8 name (not /, . or ..)",
                dest.display()
            ))
        })?;
        let parent_path = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
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
        let c_name = cstring(name.as_bytes()).map_err(|e| StorageError::io("open", dest, e))?;
        Ok(Dest { parent, parent_path, path: dest.to_path_buf(), name: name.to_owned(), c_name })
    }

    /// What is at the destination now (not followed).
    pub(crate) fn existing(&self) -> Result<Existing, StorageError> {
        let st = match lstat_at(self.parent.as_fd(), &self.c_name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Nothing),
            Err(e) => return Err(StorageError::io("stat", &self.path, e)),
        };
        if !is_dir_mode(st.st_mode) {
            return Ok(Existing::Something);
        }
        let d = open_dir_at(self.parent.as_fd(), &self.c_name)
            .map_err(|e| StorageError::io("open", &self.path, e))?;
        match list_dir(d.as_fd(), 1) {
            Ok(names) if names.is_empty() => Ok(Existing::EmptyDir),
            Ok(_) => Ok(Existing::Something),
            Err(e) => Err(StorageError::io("read dir", &self.path, e)),
        }
    }

    /// Creates the staging directory `.<name>.mcast-tmp-<hex>` beside the destination and
    /// opens it.
    pub(crate) fn make_staging(&self) -> Result<(CString, Stage), StorageError> {
        let mut attempt = 0;
        loop {
            let tname = temp_file_name(&self.name, random_u64());
            let path = self.parent_path.join(&tname);
            let c = cstring(tname.as_bytes()).map_err(|e| StorageError::io("create", &path, e))?;
            match mkdir_at(self.parent.as_fd(), &c, 0o777) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        && attempt + 1 < CREATE_ATTEMPTS =>
                {
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(StorageError::io("create staging directory", path, e)),
            }
            return match open_dir_at(self.parent.as_fd(), &c) {
                Ok(fd) => {
                    // Held for the sink's life: another receiver's cleanup keeps it.
                    lock_dir(&fd).map_err(|e| StorageError::io("lock", &path, e))?;
                    Ok((c, Stage::new(fd, path)))
                }
                Err(e) => {
                    // Replaced between mkdir and open: remove whatever is there, unfollowed.
                    let _ = remove_tree_at(self.parent.as_fd(), &c);
                    Err(StorageError::io("open staging directory", path, e))
                }
            };
        }
    }

    /// Moves staging directory `stg` onto the destination (see the `tree_sink` module docs).
    /// Sets `*released` once `stg` no longer names our staged tree (placed, or holding
    /// something that is not ours to remove).
    pub(crate) fn place(
        &self,
        stg: &CString,
        replace: bool,
        released: &mut bool,
    ) -> Result<(), StorageError> {
        let p = self.parent.as_fd();
        let dst = &self.c_name;
        let exists = || StorageError::DestinationExists(self.path.clone());
        match self.existing()? {
            Existing::Nothing => {
                return match rename_noreplace(p, stg, dst) {
                    Ok(()) => {
                        *released = true;
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists()),
                    Err(e) => Err(StorageError::io("rename staging directory to", &self.path, e)),
                };
            }
            Existing::Something if !replace => return Err(exists()),
            Existing::Something | Existing::EmptyDir => {}
        }
        if let Err(e) = rename2_at(p, stg, dst, libc::RENAME_EXCHANGE) {
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Err(StorageError::Unsupported(format!(
                    "the file system of {} cannot swap directories atomically \
                     (renameat2 RENAME_EXCHANGE); remove the destination first",
                    self.path.display()
                )));
            }
            return Err(StorageError::io("swap staging directory with", &self.path, e));
        }
        // The old destination is now at the staging name.
        if replace {
            *released = true;
            if let Err(e) = remove_tree_at(p, stg) {
                tracing::warn!(
                    old = %self.parent_path.join(self.name_of(stg)).display(), error = %e,
                    "tree replaced, but the old one could not be removed"
                );
            }
            return Ok(());
        }
        if unlink_at(p, stg, true).is_ok() {
            *released = true;
            return Ok(());
        }
        // The empty directory was filled since we looked: swap back and keep it.
        if let Err(e) = rename2_at(p, stg, dst, libc::RENAME_EXCHANGE) {
            *released = true;
            tracing::error!(
                dest = %self.path.display(), error = %e,
                "could not swap back a destination filled during placement; it is at {}",
                self.parent_path.join(self.name_of(stg)).display()
            );
        }
        Err(exists())
    }

    fn name_of<'a>(&self, c: &'a CString) -> &'a std::ffi::OsStr {
        std::ffi::OsStr::from_bytes(c.as_bytes())
    }
}

/// `renameat2(RENAME_NOREPLACE)`; on a file system without it (`EINVAL`), a check for an
/// existing destination followed by a plain `renameat` (not atomic against a destination
/// appearing in between).
fn rename_noreplace(p: BorrowedFd<'_>, from: &CString, to: &CString) -> io::Result<()> {
    match rename2_at(p, from, to, libc::RENAME_NOREPLACE) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => match lstat_at(p, to) {
            Ok(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => rename2_at(p, from, to, 0),
            Err(e) => Err(e),
        },
        other => other,
    }
}

/// Take an exclusive `flock` on the directory `fd` without waiting (`WouldBlock` if held).
pub(crate) fn lock_dir(fd: &std::os::fd::OwnedFd) -> io::Result<()> {
    let f = std::fs::File::from(fd.try_clone()?);
    match crate::storage::resume::try_lock(&f)? {
        true => Ok(()),
        false => Err(io::Error::from(io::ErrorKind::WouldBlock)),
    }
}

/// Removes staging directories (`.<name>.mcast-tmp-<16 hex>`, directories only) left beside
/// `dest` by crashed runs, and old trees a replacing run could not remove; returns how many.
/// A staging directory that a tree sink (of this process or another) holds locked is in use:
/// it is kept, with a warning; one that the destination's resume sidecar claims is kept for a
/// resume (the next push's manifest decides whether it is resumed or discarded).
pub fn clean_stale_tree_temps(dest: &Path) -> Result<usize, StorageError> {
    let d = Dest::open(dest)?;
    let prefix = temp_file_name(&d.name, 0);
    let prefix = &prefix.as_bytes()[..prefix.len() - SUFFIX_HEX];
    let rd = std::fs::read_dir(&d.parent_path)
        .map_err(|e| StorageError::io("read dir", &d.parent_path, e))?;
    // The staging directory a sidecar claims stays for a resume (the manifest decides).
    let claimed = crate::storage::resume::claimed_temps(&d.parent_path);
    let mut removed = 0;
    for ent in rd {
        let ent = ent.map_err(|e| StorageError::io("read dir", &d.parent_path, e))?;
        let fname = ent.file_name();
        let b = fname.as_bytes();
        if !is_temp_name(&fname) || !b.starts_with(prefix) || b.len() != prefix.len() + SUFFIX_HEX {
            continue;
        }
        if claimed.iter().any(|c| c.as_bytes() == b) {
            continue;
        }
        let c = cstring(b).map_err(|e| StorageError::io("remove", ent.path(), e))?;
        match lstat_at(d.parent.as_fd(), &c) {
            Ok(st) if is_dir_mode(st.st_mode) => {}
            _ => continue,
        }
        // A staging directory a receiver holds locked is in use: keep it.
        let Ok(fd) = open_dir_at(d.parent.as_fd(), &c) else { continue };
        if lock_dir(&fd).is_err() {
            tracing::warn!(path = %ent.path().display(), "kept: in use by another mcast-recv");
            continue;
        }
        remove_tree_at(d.parent.as_fd(), &c)
            .map_err(|e| StorageError::io("remove", ent.path(), e))?;
        tracing::info!(path = %ent.path().display(), "removed stale staging directory");
        removed += 1;
    }
    Ok(removed)
}
