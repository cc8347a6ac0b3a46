//! [`walk_sorted`]: visits a tree's entries in component order with the directory holding
//! each one open, keeping a stack of open directory descriptors (one per level) instead of
//! resolving every path from the root. Each directory is reported once its subtree is done
//! (post-order), which is when its mode can be applied and it can be fsynced. The work is
//! linear in the total length of the paths, whatever their depth or shape.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::at::{cstring, mkdir_at, open_dir_at};
use super::stage::Stage;
use crate::proto::manifest::{Entry, EntryKind, Mtime};
use crate::storage::StorageError;

/// Deepest directory nesting a tree may have (each level holds a descriptor while walking).
pub const MAX_TREE_DEPTH: usize = 256;

/// One open directory on the way to the current entry.
struct Frame {
    /// Length of the directory's path (a prefix of the last entry's path).
    len: usize,
    fd: OwnedFd,
    /// The mode a listed directory asks for.
    mode: Option<u32>,
    /// The mtime a listed directory asks for.
    mtime: Option<Mtime>,
}

/// Visits `entries`, which must be sorted with
/// [`component_order`](crate::storage::tree_source) and pass the manifest's tree checks:
/// `on_entry(dir, name, entry)` for each, with `dir` the open directory holding it;
/// directories not listed are created (mode 0o777 less the umask) if `create`, else must
/// exist. `on_dir_done(dir, mode, mtime)` is called for every directory (listed or not, never
/// the stage root) after everything below it, with the mode and mtime a listed one asks for.
pub(crate) fn walk_sorted(
    stage: &Stage,
    entries: &[Entry],
    create: bool,
    mut on_entry: impl FnMut(BorrowedFd<'_>, &CStr, &Entry) -> io::Result<()>,
    mut on_dir_done: impl FnMut(BorrowedFd<'_>, Option<u32>, Option<Mtime>) -> io::Result<()>,
) -> Result<(), StorageError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut prev = "";
    let err = |op, path: &str, e| StorageError::io(op, stage.path_of(path), e);
    let mut done = |f: Frame, path: &str| {
        on_dir_done(f.fd.as_fd(), f.mode, f.mtime).map_err(|e| err("finish directory", path, e))
    };
    for e in entries {
        let p = e.path.as_str();
        let lcp = p.bytes().zip(prev.bytes()).take_while(|(a, b)| a == b).count();
        // Frames are prefixes of `prev`; the ones that are not directories above `p` are done.
        while let Some(top) = stack.last() {
            if top.len <= lcp && p.as_bytes().get(top.len) == Some(&b'/') {
                break;
            }
            let len = top.len;
            if let Some(f) = stack.pop() {
                done(f, &prev[..len])?;
            }
        }
        let mut start = stack.last().map_or(0, |f| f.len + 1);
        while let Some(slash) = p[start..].find('/') {
            let end = start + slash;
            let fd = open_or_create(stage, &stack, &p[start..end], create)
                .map_err(|e| err("open directory (symlinks are not followed)", &p[..end], e))?;
            push(&mut stack, Frame { len: end, fd, mode: None, mtime: None }, p)?;
            start = end + 1;
        }
        let name = cstring(&p.as_bytes()[start..]).map_err(|e2| err("create", p, e2))?;
        let dir = stack.last().map_or(stage.root(), |f| f.fd.as_fd());
        on_entry(dir, &name, e).map_err(|e2| err(op_of(e), p, e2))?;
        if let EntryKind::Dir { mode } = e.kind {
            let fd = open_dir_at(dir, &name).map_err(|e2| err("open directory", p, e2))?;
            push(&mut stack, Frame { len: p.len(), fd, mode, mtime: e.mtime }, p)?;
        }
        prev = p;
    }
    while let Some(f) = stack.pop() {
        let len = f.len;
        done(f, &prev[..len])?;
    }
    Ok(())
}

fn push(stack: &mut Vec<Frame>, f: Frame, path: &str) -> Result<(), StorageError> {
    if stack.len() >= MAX_TREE_DEPTH {
        return Err(StorageError::Unsupported(format!(
            "{:?}: trees deeper than {MAX_TREE_DEPTH} directories are not placed",
            crate::proto::manifest::name::quote(path)
        )));
    }
    stack.push(f);
    Ok(())
}

/// Opens directory `name` below the top of `stack` (or the stage root), creating it first if
/// it is missing and `create`.
fn open_or_create(stage: &Stage, stack: &[Frame], name: &str, create: bool) -> io::Result<OwnedFd> {
    let base = stack.last().map_or(stage.root(), |f| f.fd.as_fd());
    let c = cstring(name.as_bytes())?;
    match open_dir_at(base, &c) {
        Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
            mkdir_at(base, &c, 0o777)?;
            open_dir_at(base, &c)
        }
        other => other,
    }
}

fn op_of(e: &Entry) -> &'static str {
    match e.kind {
        EntryKind::File { .. } => "place file",
        EntryKind::Dir { .. } => "place directory",
        EntryKind::Symlink { .. } => "place symlink",
        EntryKind::Image(_) => "place image",
    }
}
