//! [`TreeSource`]: a directory tree (or chosen paths in it) as a payload. The walk never
//! follows a symlink: regular files become [`EntryKind::File`] entries with their permission
//! bits, directories [`EntryKind::Dir`] entries (so empty ones and modes arrive too), symlinks
//! [`EntryKind::Symlink`] entries with their target as written (refused if the manifest's rules
//! say it climbs out of the tree); devices, sockets and FIFOs are refused, naming the path.
//! Entries are sorted by path (component-wise, so a directory comes right before its subtree)
//! and the files are laid out back to back in that order, so small files share blocks.
//!
//! Reads are positioned and may span any number of files. Each file is opened per read and
//! checked against what the walk saw (same inode, size and mtime), so a file that changed
//! since is a [`StorageError`], never silently different bytes. Every entry carries its mtime
//! (as `lstat` reads it: a symlink's own), so receivers can set it after writing.

use std::cmp::Ordering;
use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use super::names::is_temp_name;
use super::{check_range, mtime_of, Source, StorageError};
use crate::proto::manifest::{check_entries, Entry, EntryKind, Mtime, RelPath, MODE_MASK};

/// A directory tree opened for sending. `Send + Sync`; all methods take `&self`.
#[derive(Debug)]
pub struct TreeSource {
    root: PathBuf,
    entries: Vec<Entry>,
    /// The file entries with bytes, in payload order.
    files: Vec<SourceFile>,
    len: u64,
}

/// A file's place in the payload and what the walk saw of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SourceFile {
    offset: u64,
    len: u64,
    path: PathBuf,
    seen: Seen,
}

/// The identity of a file when it was walked: a different one at read time is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
}

impl Seen {
    fn of(m: &Metadata) -> Self {
        Seen { dev: m.dev(), ino: m.ino(), mtime: (m.mtime(), m.mtime_nsec()) }
    }
}

/// Byte order of paths with `/` sorting before every other byte: `a` < `a/b` < `a!`, so each
/// directory sorts right before its subtree. (The manifest's tree check sorts the same way;
/// this could move into `proto::manifest` as a public helper.)
pub(crate) fn component_order(a: &RelPath, b: &RelPath) -> Ordering {
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.as_str().as_bytes().iter().map(key).cmp(b.as_str().as_bytes().iter().map(key))
}

/// A walked entry before the payload is laid out.
struct Found {
    path: RelPath,
    kind: FoundKind,
    mtime: Option<Mtime>,
}

enum FoundKind {
    File { len: u64, mode: u32, abs: PathBuf, seen: Seen },
    Dir { mode: u32 },
    Symlink { target: String },
}

impl TreeSource {
    /// The whole tree under directory `root` (`root` itself may be reached through a symlink;
    /// nothing below it is followed).
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        TreeSource::open_paths(root, &[] as &[&Path])
    }

    /// The given `paths` of the tree under `root` (as `mcast-send DIR PATH...` names them):
    /// each relative to `root`, without `..`; a directory brings its whole subtree, and the
    /// directories leading to a path are listed too (with their modes). No paths means the
    /// whole tree. Overlapping paths are listed once. A path under a symlink is refused.
    pub fn open_paths<P: AsRef<Path>>(root: &Path, paths: &[P]) -> Result<Self, StorageError> {
        let meta = std::fs::metadata(root).map_err(|e| StorageError::io("stat", root, e))?;
        if !meta.is_dir() {
            return Err(StorageError::Unsupported(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        let mut found = Vec::new();
        if paths.is_empty() {
            walk(root, None, &mut found)?;
        }
        for p in paths {
            let Some(rel) = relative(p.as_ref())? else {
                walk(root, None, &mut found)?;
                continue;
            };
            add_path(root, &rel, &mut found)?;
        }
        found.sort_by(|a, b| component_order(&a.path, &b.path));
        found.dedup_by(|a, b| a.path == b.path);
        TreeSource::lay_out(root, found)
    }

    /// Assigns payload offsets to the files in `found`'s order and builds the entries.
    fn lay_out(root: &Path, found: Vec<Found>) -> Result<Self, StorageError> {
        let mut entries = Vec::with_capacity(found.len());
        let mut files = Vec::new();
        let mut offset = 0u64;
        for f in found {
            let kind = match f.kind {
                FoundKind::File { len, mode, abs, seen } => {
                    let start = offset;
                    offset = offset
                        .checked_add(len)
                        .ok_or(StorageError::InvalidArgument("tree larger than 2^64 bytes"))?;
                    if len > 0 {
                        files.push(SourceFile { offset: start, len, path: abs, seen });
                    }
                    EntryKind::File { offset: start, len, mode: Some(mode & MODE_MASK) }
                }
                FoundKind::Dir { mode } => EntryKind::Dir { mode: Some(mode & MODE_MASK) },
                FoundKind::Symlink { target } => EntryKind::Symlink { target },
            };
            entries.push(Entry { path: f.path, kind, mtime: f.mtime });
        }
        check_entries(&entries, offset).map_err(crate::proto::manifest::ManifestError::from)?;
        Ok(TreeSource { root: root.to_path_buf(), entries, files, len: offset })
    }

    /// The directory the tree was read from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Number of regular files (of any size) in the tree.
    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e.kind, EntryKind::File { .. })).count()
    }

    /// Opens file `f` and checks it is still the one the walk saw.
    fn open_checked(&self, f: &SourceFile) -> Result<File, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&f.path)
            .map_err(|e| StorageError::io("open", &f.path, e))?;
        self.check_unchanged(f, &file)?;
        Ok(file)
    }

    /// [`StorageError::SizeMismatch`] or [`StorageError::Changed`] if `file` is not what the
    /// walk saw for `f`.
    fn check_unchanged(&self, f: &SourceFile, file: &File) -> Result<(), StorageError> {
        let m = file.metadata().map_err(|e| StorageError::io("stat", &f.path, e))?;
        let now = Seen::of(&m);
        if !m.is_file() || (now.dev, now.ino) != (f.seen.dev, f.seen.ino) {
            return Err(StorageError::Changed { path: f.path.clone(), what: "replaced" });
        }
        if m.len() != f.len {
            return Err(StorageError::SizeMismatch {
                path: f.path.clone(),
                expected: f.len,
                actual: m.len(),
            });
        }
        if now.mtime != f.seen.mtime {
            return Err(StorageError::Changed { path: f.path.clone(), what: "modified" });
        }
        Ok(())
    }
}

/// `p` as a checked relative path, `None` if it names the root itself (`.`, empty).
fn relative(p: &Path) -> Result<Option<RelPath>, StorageError> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(s) => parts.push(utf8(s, p)?),
            _ => {
                return Err(StorageError::BadName(format!(
                    "{}: paths must be relative to the tree and stay inside it",
                    p.display()
                )))
            }
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(RelPath::new(parts.join("/"))?))
}

fn utf8<'a>(s: &'a std::ffi::OsStr, whole: &Path) -> Result<&'a str, StorageError> {
    s.to_str()
        .ok_or_else(|| StorageError::BadName(format!("{} is not valid UTF-8", whole.display())))
}

/// Adds the directories leading to `rel` (each must be a real directory), then `rel` itself
/// and, for a directory, its subtree.
fn add_path(root: &Path, rel: &RelPath, found: &mut Vec<Found>) -> Result<(), StorageError> {
    let mut prefix = String::new();
    let depth = rel.depth();
    for (i, c) in rel.components().enumerate() {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(c);
        let here = RelPath::new(prefix.as_str())?;
        let abs = root.join(here.as_path());
        let m = std::fs::symlink_metadata(&abs).map_err(|e| StorageError::io("stat", &abs, e))?;
        if i + 1 < depth {
            if !m.file_type().is_dir() {
                return Err(StorageError::Unsupported(format!(
                    "{}: {} is not a directory (symlinks are not followed)",
                    rel,
                    abs.display()
                )));
            }
            found.push(Found {
                path: here,
                kind: FoundKind::Dir { mode: m.mode() },
                mtime: mtime_of(&m),
            });
        } else {
            add_one(here, abs, &m, found)?;
        }
    }
    Ok(())
}

/// Adds the entry at `abs` (metadata `m`, not followed) and, for a directory, its subtree.
fn add_one(
    path: RelPath,
    abs: PathBuf,
    m: &Metadata,
    found: &mut Vec<Found>,
) -> Result<(), StorageError> {
    let t = m.file_type();
    if t.is_dir() {
        found.push(Found {
            path: path.clone(),
            kind: FoundKind::Dir { mode: m.mode() },
            mtime: mtime_of(m),
        });
        return walk(&abs, Some(&path), found);
    }
    if path.is_single_component() && is_temp_name(std::ffi::OsStr::new(path.as_str())) {
        return Err(StorageError::BadName(format!(
            "{}: top-level names like .*.mcast-tmp-<hex> are reserved for temp files",
            abs.display()
        )));
    }
    let kind = if t.is_file() {
        FoundKind::File { len: m.len(), mode: m.mode(), seen: Seen::of(m), abs }
    } else if t.is_symlink() {
        let target =
            std::fs::read_link(&abs).map_err(|e| StorageError::io("read link", &abs, e))?;
        let target = utf8(target.as_os_str(), &abs)?.to_owned();
        let entry = Entry::new(path.clone(), EntryKind::Symlink { target });
        check_entries(std::slice::from_ref(&entry), 0)
            .map_err(|e| StorageError::Unsupported(format!("symlink {}: {e}", abs.display())))?;
        let EntryKind::Symlink { target } = entry.kind else { unreachable!("built above") };
        FoundKind::Symlink { target }
    } else {
        let what = if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_block_device() || t.is_char_device() {
            "a device"
        } else {
            "not a file, directory or symlink"
        };
        return Err(StorageError::Unsupported(format!(
            "{} is {what}; a tree holds only files, directories and symlinks",
            abs.display()
        )));
    };
    found.push(Found { path, kind, mtime: mtime_of(m) });
    Ok(())
}

/// Adds everything below directory `dir` (whose path in the tree is `prefix`, `None` for the
/// root), not following symlinks.
fn walk(dir: &Path, prefix: Option<&RelPath>, found: &mut Vec<Found>) -> Result<(), StorageError> {
    let mut stack = vec![(dir.to_path_buf(), prefix.cloned())];
    while let Some((dir, prefix)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| StorageError::io("read dir", &dir, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| StorageError::io("read dir", &dir, e))?;
            let abs = ent.path();
            let name = utf8(&ent.file_name(), &abs)?.to_owned();
            let path = match &prefix {
                Some(p) => RelPath::new(format!("{p}/{name}")),
                None => RelPath::new(name),
            }
            .map_err(|e| StorageError::BadName(format!("{}: {e}", abs.display())))?;
            let m =
                std::fs::symlink_metadata(&abs).map_err(|e| StorageError::io("stat", &abs, e))?;
            if m.file_type().is_dir() {
                found.push(Found {
                    path: path.clone(),
                    kind: FoundKind::Dir { mode: m.mode() },
                    mtime: mtime_of(&m),
                });
                stack.push((abs, Some(path)));
            } else {
                add_one(path, abs, &m, found)?;
            }
        }
    }
    Ok(())
}

impl Source for TreeSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Reads across as many files as the range covers. A file that changed since the walk
    /// fails with [`StorageError::SizeMismatch`] or [`StorageError::Changed`].
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        check_range(offset, buf.len() as u64, self.len)?;
        let mut idx = self.files.partition_point(|f| f.offset + f.len <= offset);
        let mut pos = offset;
        let mut out = buf;
        while !out.is_empty() {
            // The files tile 0..len without gaps once empty ones are left out, and the range
            // is inside 0..len, so there is always a file here.
            let Some(f) = self.files.get(idx) else {
                return Err(StorageError::InvalidArgument("payload map has a gap"));
            };
            let in_file = pos - f.offset;
            let n = usize::try_from(f.len - in_file).unwrap_or(usize::MAX).min(out.len());
            let (piece, rest) = out.split_at_mut(n);
            let file = self.open_checked(f)?;
            file.read_exact_at(piece, in_file).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    StorageError::SizeMismatch {
                        path: f.path.clone(),
                        expected: f.len,
                        actual: file.metadata().map(|m| m.len()).unwrap_or(0),
                    }
                } else {
                    StorageError::io("read", &f.path, e)
                }
            })?;
            // Changed while we read: what we read may be a mix.
            self.check_unchanged(f, &file)?;
            out = rest;
            pos += n as u64;
            idx += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
