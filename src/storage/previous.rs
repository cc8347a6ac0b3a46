//! The previous version at a destination, as a source of blocks of a new push (only what
//! changed is fetched): [`PreviousPlan`] maps each payload block of the NEW manifest onto
//! (path, offset within the file, length) pieces, using the new manifest's entries, so that a
//! file that grew or shrank shifts no other file's blocks; [`PreviousPlan::match_block`] reads
//! those pieces from a [`PreviousRead`] and keeps the block only if its BLAKE3 is the one the
//! verified hash list gives. Nothing read here is trusted: a block is used only when it hashes
//! right.
//!
//! [`PreviousDir`] reads the files under a directory (a tree's root, or the directory a single
//! file goes into) without following any symlink inside it (each component opened with
//! `O_NOFOLLOW` relative to its parent), and only regular files; it keeps one file open (blocks
//! of a large file come one after the other).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::proto::layout::Layout;
use crate::proto::manifest::{EntryKind, Manifest, ManifestError, RelPath};

/// Reads byte ranges of the previous version's files.
pub trait PreviousRead {
    /// Fill `buf` with the bytes of `path` from `offset`; false if the file is not there, is
    /// not a regular file, or is shorter.
    fn read_at(&mut self, path: &RelPath, offset: u64, buf: &mut [u8]) -> bool;
}

/// One file's share of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Index of the file in [`PreviousPlan`]'s files.
    pub file: usize,
    /// Offset within the file.
    pub offset: u64,
    /// Bytes.
    pub len: usize,
}

/// Where each block of a new push lies in the files of its manifest.
#[derive(Debug, Clone)]
pub struct PreviousPlan {
    layout: Layout,
    /// File entries with bytes, in payload order: (payload offset, length, path).
    files: Vec<(u64, u64, RelPath)>,
}

impl PreviousPlan {
    /// The plan of `manifest` (checked: its files tile the payload in order).
    pub fn new(manifest: &Manifest) -> Result<Self, ManifestError> {
        let layout = manifest.layout()?;
        let files = manifest
            .entries
            .iter()
            .filter_map(|e| match e.kind {
                EntryKind::File { offset, len, .. } if len > 0 => {
                    Some((offset, len, e.path.clone()))
                }
                _ => None,
            })
            .collect();
        Ok(PreviousPlan { layout, files })
    }

    /// The payload layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The path of file `i` of the plan.
    pub fn path(&self, i: usize) -> &RelPath {
        &self.files[i].2
    }

    /// The pieces of block `b`, in order (empty outside the layout).
    pub fn pieces(&self, b: u32) -> Vec<Piece> {
        let (Some(start), Some(len)) = (self.layout.block_offset(b), self.layout.block_len(b))
        else {
            return Vec::new();
        };
        let end = start + len as u64;
        // The first file ending after `start`.
        let first = self.files.partition_point(|(off, l, _)| off + l <= start);
        let mut out = Vec::new();
        for (i, (off, l, _)) in self.files.iter().enumerate().skip(first) {
            if *off >= end {
                break;
            }
            let from = start.max(*off);
            let to = end.min(off + l);
            out.push(Piece { file: i, offset: from - off, len: (to - from) as usize });
        }
        out
    }

    /// Read block `b` from `prev` into `buf` (resized to the block) and return whether it
    /// hashes to `want`.
    pub fn match_block(
        &self,
        prev: &mut dyn PreviousRead,
        b: u32,
        want: &[u8; 32],
        buf: &mut Vec<u8>,
    ) -> bool {
        let Some(len) = self.layout.block_len(b) else { return false };
        buf.resize(len, 0);
        let mut at = 0;
        for p in self.pieces(b) {
            if !prev.read_at(self.path(p.file), p.offset, &mut buf[at..at + p.len]) {
                return false;
            }
            at += p.len;
        }
        at == len && blake3::hash(buf).as_bytes() == want
    }
}

/// The files under a directory, read without following symlinks.
#[derive(Debug)]
pub struct PreviousDir {
    root: PathBuf,
    /// The file open last.
    open: Option<(RelPath, Option<File>)>,
}

impl PreviousDir {
    /// The files under `root` (which may itself be a symlink, e.g. a `current` link: the
    /// destination is the receiver's own; nothing below it is followed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        PreviousDir { root: root.into(), open: None }
    }

    fn open(&self, path: &RelPath) -> io::Result<File> {
        let root = File::open(&self.root)?;
        if !root.metadata()?.is_dir() {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let mut dir: OwnedFd = root.into();
        let parts: Vec<&str> = path.components().collect();
        let (last, parents) = parts.split_last().ok_or(io::ErrorKind::NotFound)?;
        for part in parents {
            dir = open_at(&dir, part, libc::O_DIRECTORY)?;
        }
        let file = File::from(open_at(&dir, last, libc::O_NONBLOCK)?);
        if !file.metadata()?.is_file() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        Ok(file)
    }
}

/// `name` in directory `dir`, read-only, never through a symlink.
fn open_at(dir: &OwnedFd, name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(Path::new(name).as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = flags | libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `c` is a valid C string and `dir` a live descriptor for the call.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `openat` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl PreviousRead for PreviousDir {
    fn read_at(&mut self, path: &RelPath, offset: u64, buf: &mut [u8]) -> bool {
        if self.open.as_ref().is_none_or(|(p, _)| p != path) {
            let file = self.open(path).ok();
            self.open = Some((path.clone(), file));
        }
        match self.open.as_ref().and_then(|(_, f)| f.as_ref()) {
            Some(f) => f.read_exact_at(buf, offset).is_ok(),
            None => false,
        }
    }
}

/// In-memory previous versions (tests and the simulator): path → bytes.
impl PreviousRead for std::collections::HashMap<RelPath, Vec<u8>> {
    fn read_at(&mut self, path: &RelPath, offset: u64, buf: &mut [u8]) -> bool {
        let Some(bytes) = self.get(path) else { return false };
        let Some(src) = usize::try_from(offset).ok().and_then(|o| bytes.get(o..o + buf.len()))
        else {
            return false;
        };
        buf.copy_from_slice(src);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::manifest::Entry;
    use std::collections::HashMap;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    /// Files a (250 B), b (0 B), c (400 B), d (150 B) in blocks of 300 bytes (T 100, K 3).
    fn plan() -> PreviousPlan {
        let entries = vec![
            Entry::file(p("a"), 0, 250),
            Entry::file(p("b"), 250, 0),
            Entry::new(p("dir"), EntryKind::Dir { mode: None }),
            Entry::file(p("dir/c"), 250, 400),
            Entry::file(p("d"), 650, 150),
        ];
        PreviousPlan::new(&Manifest::new(entries, 800, 100, 3).unwrap()).unwrap()
    }

    #[test]
    fn blocks_map_onto_the_new_manifests_files_by_offset_within_each() {
        let plan = plan();
        let piece = |file, offset, len| Piece { file, offset, len };
        assert_eq!(plan.pieces(0), vec![piece(0, 0, 250), piece(1, 0, 50)]);
        assert_eq!(plan.path(1).as_str(), "dir/c");
        assert_eq!(plan.pieces(1), vec![piece(1, 50, 300)]);
        assert_eq!(plan.pieces(2), vec![piece(1, 350, 50), piece(2, 0, 150)]);
        assert!(plan.pieces(3).is_empty(), "outside the layout");
    }

    #[test]
    fn a_block_matches_only_when_every_piece_is_there_and_hashes_right() {
        let plan = plan();
        let a: Vec<u8> = (0..250).map(|i| i as u8).collect();
        let c: Vec<u8> = (0..400).map(|i| (i * 7) as u8).collect();
        let d: Vec<u8> = (0..150).map(|i| (i * 3 + 1) as u8).collect();
        let mut new = a.clone();
        new.extend(&c);
        new.extend(&d);
        let hash = |b: usize| *blake3::hash(&new[b * 300..(b * 300 + 300).min(800)]).as_bytes();
        let mut prev: HashMap<RelPath, Vec<u8>> =
            [(p("a"), a.clone()), (p("dir/c"), c.clone()), (p("d"), d[..149].to_vec())].into();
        let mut buf = Vec::new();
        assert!(plan.match_block(&mut prev, 0, &hash(0), &mut buf));
        assert_eq!(buf, new[..300]);
        assert!(plan.match_block(&mut prev, 1, &hash(1), &mut buf));
        assert!(!plan.match_block(&mut prev, 2, &hash(2), &mut buf), "d is one byte short");
        assert!(!plan.match_block(&mut prev, 1, &hash(0), &mut buf), "another hash");
        prev.insert(p("d"), d.clone());
        assert!(plan.match_block(&mut prev, 2, &hash(2), &mut buf));
        assert_eq!(buf.len(), 200, "the last block is short");
        prev.get_mut(&p("dir/c")).unwrap()[70] ^= 1;
        assert!(!plan.match_block(&mut prev, 1, &hash(1), &mut buf), "one byte changed");
        assert!(!plan.match_block(&mut prev, 3, &hash(0), &mut buf), "no such block");
    }

    #[test]
    fn the_directory_reader_reads_regular_files_and_follows_no_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), b"0123456789").unwrap();
        let outside = dir.path().join("secret");
        std::fs::write(&outside, b"0123456789").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), root.join("sublink")).unwrap();
        let mut prev = PreviousDir::new(&root);
        let mut buf = [0u8; 4];
        assert!(prev.read_at(&p("sub/f"), 6, &mut buf));
        assert_eq!(&buf, b"6789");
        assert!(!prev.read_at(&p("sub/f"), 7, &mut buf), "past the end");
        assert!(!prev.read_at(&p("link"), 0, &mut buf), "a symlink to a file");
        assert!(!prev.read_at(&p("sublink/f"), 0, &mut buf), "through a symlinked directory");
        assert!(!prev.read_at(&p("sub"), 0, &mut buf), "a directory");
        assert!(!prev.read_at(&p("missing"), 0, &mut buf));
        // The root itself may be a symlink (a `current` link).
        let current = dir.path().join("current");
        std::os::unix::fs::symlink(&root, &current).unwrap();
        assert!(PreviousDir::new(&current).read_at(&p("sub/f"), 0, &mut buf));
        assert_eq!(&buf, b"0123");
    }
}
