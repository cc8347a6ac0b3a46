//! Resume of a tree receive: the destination's sidecar `.<name>.mcast-resume` beside it (the
//! format of `storage/resume.rs`) names the push (its manifest hash), the staging directory
//! `.<name>.mcast-tmp-<hex>` and the blocks made durable in it. [`TreeSink::resumable`] reads
//! it under its lock: the same push with a staging directory that still holds every entry of
//! the manifest (files of their sizes, directories, symlinks with their targets; nothing
//! followed) is taken over as it is and its blocks are returned as held; anything else (another
//! push, a staging directory missing or changed) is removed and a new one is started
//! ([`TreeOpen::open`], the slow part, meant for the tree's writer thread).
//!
//! Durability: the journal syncs (`fdatasync`) every staged file a block spans before it
//! records the block, so a record means its bytes are on disk. Entries themselves are not
//! synced as they are created; one lost in a crash fails the check above and the push starts
//! over.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::at::{cstring, lstat_at, open_dir_at, open_file_at, read_link_at, remove_tree_at};
use super::dest::lock_dir;
use super::stage::Stage;
use super::walk::walk_sorted;
use super::{Plan, TreeSink};
use crate::proto::layout::Layout;
use crate::proto::manifest::{Entry, EntryKind, Manifest, RelPath};
use crate::storage::names::resume_file_name;
use crate::storage::resume::{HeldBlocks, Sidecar};
use crate::storage::StorageError;

/// A tree sink chosen by [`TreeSink::resumable`], still to be opened with [`TreeOpen::open`].
#[derive(Debug)]
pub struct TreeOpen(Inner);

#[derive(Debug)]
enum Inner {
    /// An interrupted run's staging directory, checked and taken over.
    Resumed(TreeSink),
    /// A new staging directory is needed: the plan, the locked sidecar, the push and layout.
    Fresh(Plan, Sidecar, [u8; 32], Layout),
}

impl TreeOpen {
    /// Whether an interrupted run's staging directory was taken over.
    pub fn is_resumed(&self) -> bool {
        matches!(self.0, Inner::Resumed(_))
    }

    /// The sink: a resumed one as it is; otherwise a new staging directory with every entry of
    /// the manifest is created now (a few hundred milliseconds for thousands of entries).
    pub fn open(self) -> Result<TreeSink, StorageError> {
        match self.0 {
            Inner::Resumed(sink) => Ok(sink),
            Inner::Fresh(plan, sidecar, id, layout) => plan.stage(sidecar, Some((&id, layout))),
        }
    }
}

impl TreeSink {
    /// A sink for the tree push `manifest` (manifest hash `manifest_hash`) at `dest` that can be
    /// resumed (see the module docs). The destination's sidecar is locked (another receiver into
    /// `dest`: [`StorageError::Busy`]); the checks of [`create`](Self::create) apply. Returns
    /// the blocks the staging directory already holds (empty unless resumed).
    pub fn resumable(
        dest: &std::path::Path,
        manifest: &Manifest,
        manifest_hash: &[u8; 32],
        replace: bool,
    ) -> Result<(TreeOpen, HeldBlocks), StorageError> {
        let plan = Plan::new(dest, manifest, replace)?;
        let layout = manifest.layout()?;
        let lock_path = plan.dest.parent_path.join(resume_file_name(&plan.dest.name));
        let sidecar = Sidecar::lock(&lock_path, &plan.dest.path)?;
        let state = sidecar.read(layout.block_count());
        let claimed = sidecar.claimed_name();
        if let Some(state) = state.filter(|s| s.manifest_hash == *manifest_hash) {
            match reopen(&plan, &state.temp_name) {
                Ok((name, stage)) => {
                    if let Err(e) = sidecar.claim() {
                        sidecar.remove();
                        return Err(e);
                    }
                    let held = state.held_blocks();
                    let mut sink = plan.into_sink(name, stage);
                    sink.journal = Some(sink.journal_on(sidecar, layout)?);
                    tracing::info!(
                        path = %sink.staging_path().display(),
                        "resuming: {} of {} blocks already staged", held.len(), layout.block_count()
                    );
                    return Ok((TreeOpen(Inner::Resumed(sink)), held));
                }
                Err(why) => tracing::info!(dest = %dest.display(), "not resuming: {why}"),
            }
        } else if claimed.is_some() {
            tracing::info!(dest = %dest.display(), "discarding the staged tree of another push");
        }
        if let Some(old) = claimed {
            remove_unlocked(&plan, &old);
        }
        Ok((TreeOpen(Inner::Fresh(plan, sidecar, *manifest_hash, layout)), Vec::new()))
    }

    /// Starts the journal of a new staging directory: the sidecar now names it, empty, for
    /// the push `id` (the sidecar is removed if that fails).
    pub(super) fn start_journal(
        &mut self,
        mut sidecar: Sidecar,
        id: &[u8; 32],
        layout: Layout,
    ) -> Result<(), StorageError> {
        let name = String::from_utf8_lossy(self.staging_name.as_bytes()).into_owned();
        if let Err(e) = sidecar.reset(id, layout.block_count(), &name) {
            sidecar.remove();
            return Err(e);
        }
        self.journal = Some(self.journal_on(sidecar, layout)?);
        Ok(())
    }

    /// The journal recording blocks of this sink into `sidecar`, syncing the files they span.
    fn journal_on(
        &self,
        sidecar: Sidecar,
        layout: Layout,
    ) -> Result<crate::storage::resume::Journal, StorageError> {
        let root = self.stage.root().try_clone_to_owned();
        let root = match root {
            Ok(r) => r,
            Err(e) => {
                sidecar.remove();
                return Err(StorageError::io("duplicate handle of", self.staging_path(), e));
            }
        };
        let mut syncer = Syncer {
            stage: Stage::new(root, self.staging_path()),
            files: self.files.iter().map(|f| (f.offset, f.len, f.path.clone())).collect(),
            layout,
        };
        sidecar.journal_with(move |blocks| syncer.sync(blocks))
    }

    /// Stops without placing: a resumable sink records what it was given, keeps its staging
    /// directory and sidecar for the next run and releases their locks; any other one removes
    /// its staging directory like [`abort`](Self::abort).
    pub fn suspend(mut self) {
        match self.journal.take() {
            Some(j) => {
                j.suspend();
                self.done = true;
                tracing::info!(
                    path = %self.staging_path().display(),
                    "kept the staged tree for a resume"
                );
            }
            None => self.remove_staging(),
        }
    }
}

/// Makes blocks durable: `fdatasync`s every staged file the blocks span.
struct Syncer {
    stage: Stage,
    /// `(payload offset, length, path)` of every file, in payload order.
    files: Vec<(u64, u64, RelPath)>,
    layout: Layout,
}

impl Syncer {
    fn sync(&mut self, blocks: &[(u32, [u8; 32])]) -> io::Result<()> {
        let mut touched = BTreeSet::new();
        for &(b, _) in blocks {
            let (Some(off), Some(len)) = (self.layout.block_offset(b), self.layout.block_len(b))
            else {
                continue;
            };
            let end = off + len as u64;
            let mut i = self.files.partition_point(|f| f.0 + f.1 <= off);
            while let Some(f) = self.files.get(i).filter(|f| f.0 < end) {
                if f.1 > 0 {
                    touched.insert(i);
                }
                i += 1;
            }
        }
        for i in touched {
            self.stage
                .at(&self.files[i].2, "fsync", |d, n| open_file_at(d, n, false)?.sync_data())
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

/// Opens and locks the staging directory `name` beside the destination and checks that it
/// holds every entry of the plan (see the module docs).
fn reopen(plan: &Plan, name: &str) -> Result<(CString, Stage), String> {
    let c = cstring(name.as_bytes()).map_err(|e| e.to_string())?;
    let path = plan.dest.parent_path.join(name);
    let fd = open_dir_at(plan.dest.parent.as_fd(), &c)
        .map_err(|e| format!("staging directory {}: {e}", path.display()))?;
    lock_dir(&fd).map_err(|e| format!("lock {}: {e}", path.display()))?;
    let stage = Stage::new(fd, path);
    walk_sorted(&stage, &plan.sorted, false, check_entry, |_, _, _| Ok(()))
        .map_err(|e| format!("the staged tree changed: {e}"))?;
    Ok((c, stage))
}

/// Whether entry `e` is in the staging directory as it was created (nothing followed).
fn check_entry(dir: BorrowedFd<'_>, name: &std::ffi::CStr, e: &Entry) -> io::Result<()> {
    let st = lstat_at(dir, name)?;
    let fmt = st.st_mode & libc::S_IFMT;
    let ok = match &e.kind {
        EntryKind::File { len, .. } => fmt == libc::S_IFREG && st.st_size as u64 == *len,
        EntryKind::Dir { .. } => fmt == libc::S_IFDIR,
        EntryKind::Symlink { target } => {
            fmt == libc::S_IFLNK && read_link_at(dir, name)? == target.as_bytes()
        }
        // Never staged in a tree (refused when the tree is created).
        EntryKind::Image(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::other("not as staged"))
    }
}

/// Removes the staging directory `name` beside the plan's destination, unless another process
/// holds it locked or it is not a staging directory of this destination.
fn remove_unlocked(plan: &Plan, name: &str) {
    let prefix = crate::storage::names::temp_file_name(&plan.dest.name, 0);
    let ours = prefix.len() == name.len() && name.starts_with(&prefix[..prefix.len() - 16]);
    let Ok(c) = cstring(name.as_bytes()) else { return };
    let parent = plan.dest.parent.as_fd();
    let is_dir = lstat_at(parent, &c).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
    if !ours || !is_dir {
        return;
    }
    let Ok(fd) = open_dir_at(parent, &c) else { return };
    if lock_dir(&fd).is_err() {
        return;
    }
    if let Err(e) = remove_tree_at(parent, &c) {
        tracing::warn!(path = %plan.dest.parent_path.join(name).display(), error = %e, "could not remove the stale staging directory");
    }
}

#[cfg(test)]
mod tests;
