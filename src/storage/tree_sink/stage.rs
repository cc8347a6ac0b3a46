//! [`Stage`]: the staging directory of a [`TreeSink`](super::TreeSink), reached only through
//! directory descriptors: a path inside it is resolved component by component with
//! `openat(O_DIRECTORY | O_NOFOLLOW)`, so a symlink anywhere on the way (planted by someone
//! else, or one of the tree's own) is an error, never followed. The last directory resolved is
//! kept open, so consecutive files of one directory cost one `openat` each. (Visiting the
//! whole tree in order is `walk.rs`'s job.)

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use super::at::{cstring, open_dir_at};
use crate::proto::manifest::RelPath;
use crate::storage::StorageError;

/// The staging directory: its descriptor, its path (for messages) and the last directory
/// resolved inside it.
#[derive(Debug)]
pub(crate) struct Stage {
    root: OwnedFd,
    path: PathBuf,
    /// `(path of a directory inside the stage, its descriptor)`.
    last: Option<(String, OwnedFd)>,
}

impl Stage {
    /// A stage rooted at the open directory `root`, found at `path`.
    pub(crate) fn new(root: OwnedFd, path: PathBuf) -> Self {
        Stage { root, path, last: None }
    }

    /// The staging directory's descriptor.
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Path of `rel` inside the stage, for messages.
    pub(crate) fn path_of(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Runs `f` on the directory holding `rel` (which must exist) and `rel`'s last component.
    /// Errors name `op` and the path concerned.
    pub(crate) fn at<T>(
        &mut self,
        rel: &RelPath,
        op: &'static str,
        f: impl FnOnce(BorrowedFd<'_>, &CString) -> io::Result<T>,
    ) -> Result<T, StorageError> {
        let name = cstring(rel.file_name().as_bytes())
            .map_err(|e| StorageError::io(op, self.path_of(rel.as_str()), e))?;
        let parent = rel.as_str().rfind('/').map(|cut| &rel.as_str()[..cut]);
        let dir = match parent {
            None => self.root.as_fd(),
            Some(p) => {
                if self.last.as_ref().is_none_or(|(k, _)| k != p) {
                    let fd = self.resolve(p)?;
                    self.last = Some((p.to_owned(), fd));
                }
                match &self.last {
                    Some((_, fd)) => fd.as_fd(),
                    None => unreachable!("set above"),
                }
            }
        };
        f(dir, &name).map_err(|e| StorageError::io(op, self.path.join(rel.as_str()), e))
    }

    /// Opens directory `dir` (a `/`-separated path inside the stage) one component at a
    /// time without following symlinks.
    fn resolve(&self, dir: &str) -> Result<OwnedFd, StorageError> {
        let mut cur: Option<OwnedFd> = None;
        let mut so_far = String::new();
        for comp in dir.split('/') {
            if !so_far.is_empty() {
                so_far.push('/');
            }
            so_far.push_str(comp);
            let err = |op, e| StorageError::io(op, self.path.join(&so_far), e);
            let c = cstring(comp.as_bytes()).map_err(|e| err("open directory", e))?;
            let base = cur.as_ref().map_or(self.root.as_fd(), |f| f.as_fd());
            let next = open_dir_at(base, &c)
                .map_err(|e| err("open directory (symlinks are not followed)", e))?;
            cur = Some(next);
        }
        cur.ok_or(StorageError::InvalidArgument("empty directory path"))
    }
}
