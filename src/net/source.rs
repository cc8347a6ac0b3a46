//! What a push is made of at either end, as the command lines name it: [`open_source`] turns
//! `mcast-send PATH [PATH...]` into a [`Source`] (one regular file, or a directory tree,
//! optionally only chosen paths of it), [`open_output`] opens the [`Sink`] a manifest needs at
//! `mcast-recv --output DEST` (a tree's on a thread of its own, [`Staged`]), [`clean_output`]
//! removes what crashed runs left at DEST, and [`TreeCounts`] counts a tree's entries for the
//! reports.

mod staged;

pub use staged::{Staged, QUEUE_BLOCKS};

use crate::net::io::fmt_bytes;
use crate::proto::manifest::{Entry, EntryKind, Manifest};
use crate::storage::{
    clean_stale_temps, clean_stale_tree_temps, open_sink_with, FileSource, Sink, SinkOptions,
    Source, StorageError, TreeSource,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The source of `mcast-send PATH [PATH...]`: a regular `path` alone is a single-file push
/// ([`FileSource`]); a directory is a tree push ([`TreeSource`]) of the whole tree, or of the
/// `extra` paths (relative to it) only. Paths after a file are refused.
pub fn open_source(path: &Path, extra: &[PathBuf]) -> Result<Arc<dyn Source>, StorageError> {
    let meta = std::fs::metadata(path).map_err(|e| StorageError::io("stat", path, e))?;
    if meta.is_dir() {
        return Ok(Arc::new(TreeSource::open_paths(path, extra)?));
    }
    if !extra.is_empty() {
        return Err(StorageError::Unsupported(format!(
            "{} is a file: paths after the first one are relative to a directory \
             (`mcast-send DIR PATH...`)",
            path.display()
        )));
    }
    Ok(Arc::new(FileSource::open(path)?))
}

/// Whether `manifest` is a single-file push, which is placed *inside* the output directory
/// (everything else is a tree whose root is the output itself). Mirrors
/// [`open_sink_with`]'s choice.
pub fn is_single_file(manifest: &Manifest) -> bool {
    manifest.single_file_path().is_some_and(|p| p.is_single_component())
}

/// The sink for `manifest` at `mcast-recv --output dest`. A single-file push goes into the
/// existing directory `dest` (an absent `dest` is refused: nothing is created for it); a
/// tree's root is `dest` itself, which may be absent or an empty directory, or, with
/// `replace`, an existing tree swapped atomically (see [`TreeSink`](crate::storage::TreeSink)).
/// A tree's sink is created and written on its own thread ([`Staged`]): errors creating it
/// (such as an existing tree without `replace`) come from a later `write_block` or `finish`.
pub fn open_output(
    dest: &Path,
    manifest: &Manifest,
    replace: bool,
) -> Result<Box<dyn Sink>, StorageError> {
    if is_single_file(manifest) && !dest.is_dir() {
        return Err(StorageError::Unsupported(format!(
            "{} is not an existing directory: this push is a single file, which goes inside \
             the --output directory (create {} first)",
            dest.display(),
            dest.display()
        )));
    }
    if is_single_file(manifest) {
        return open_sink_with(dest, manifest, SinkOptions { replace });
    }
    Ok(Box::new(Staged::spawn(dest, manifest.clone(), replace)?))
}

/// Like [`open_output`], but resumes what an interrupted earlier run of the same push staged
/// (see [`FileSink::resumable`](crate::storage::FileSink::resumable) and
/// [`TreeSink::resumable`](crate::storage::TreeSink::resumable); a tree's checks run here, a
/// new staging tree is created on the writer thread): returns the sink and the blocks it
/// already holds.
pub fn open_output_resuming(
    dest: &Path,
    manifest: &Manifest,
    replace: bool,
) -> Result<(Box<dyn Sink>, crate::storage::resume::HeldBlocks), StorageError> {
    if is_single_file(manifest) && dest.is_dir() {
        let id = crate::storage::resume::push_id(manifest);
        let (sink, held) = crate::storage::FileSink::resumable(dest, manifest, &id)?;
        return Ok((Box::new(sink), held));
    }
    if !is_single_file(manifest) {
        let id = crate::storage::resume::push_id(manifest);
        let (open, held) = crate::storage::TreeSink::resumable(dest, manifest, &id, replace)?;
        let open = move || open.open().map(|s| Box::new(s) as Box<dyn Sink>);
        return Ok((Box::new(Staged::spawn_with(dest, manifest.object_size, open)?), held));
    }
    open_output(dest, manifest, replace).map(|s| (s, Vec::new()))
}

/// Removes what crashed runs left for `--output dest`: temp files of single-file pushes inside
/// `dest` (when it is a directory) and staging directories of tree pushes beside it (when it
/// has a name and a parent). Returns how many were removed. Call before receiving.
pub fn clean_output(dest: &Path) -> Result<usize, StorageError> {
    let mut removed = 0;
    if dest.is_dir() {
        removed += clean_stale_temps(dest)?;
    }
    let parent = match dest.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Ok(removed),
    };
    if dest.file_name().is_some() && parent.is_dir() {
        removed += clean_stale_tree_temps(dest)?;
    }
    Ok(removed)
}

/// What a tree push holds, for the reports (`"tree"` in `--json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TreeCounts {
    /// Regular files (empty ones included).
    pub files: u64,
    /// Directories (not counting the tree's root).
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Payload bytes: the files' contents together.
    pub bytes: u64,
}

impl TreeCounts {
    /// Counts `entries` of a payload of `bytes`.
    pub fn of(entries: &[Entry], bytes: u64) -> Self {
        let mut c = TreeCounts { bytes, ..TreeCounts::default() };
        for e in entries {
            match e.kind {
                EntryKind::File { .. } => c.files += 1,
                EntryKind::Dir { .. } => c.dirs += 1,
                EntryKind::Symlink { .. } => c.symlinks += 1,
                EntryKind::Image(_) => {}
            }
        }
        c
    }

    /// The counts of a tree push; `None` for a single-file push.
    pub fn of_manifest(manifest: &Manifest) -> Option<Self> {
        (!is_single_file(manifest) && manifest.image().is_none())
            .then(|| TreeCounts::of(&manifest.entries, manifest.object_size))
    }
}

impl std::fmt::Display for TreeCounts {
    /// `3 files, 1 dir, 0 symlinks, 1.5 MiB`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |v: u64, one: &str, many: &str| format!("{v} {}", if v == 1 { one } else { many });
        write!(
            f,
            "{}, {}, {}, {}",
            n(self.files, "file", "files"),
            n(self.dirs, "dir", "dirs"),
            n(self.symlinks, "symlink", "symlinks"),
            fmt_bytes(self.bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::manifest::HashList;
    use std::os::unix::fs::symlink;

    fn manifest_of(source: &dyn Source) -> Manifest {
        source.manifest(64, 4).unwrap()
    }

    #[test]
    fn a_file_is_a_single_file_push_and_a_directory_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("sub/empty")).unwrap();
        std::fs::write(root.join("a.txt"), b"hello").unwrap();
        std::fs::write(root.join("sub/b.bin"), vec![7u8; 300]).unwrap();
        symlink("../a.txt", root.join("sub/link")).unwrap();

        let file = open_source(&root.join("a.txt"), &[]).unwrap();
        let m = manifest_of(file.as_ref());
        assert!(is_single_file(&m));
        assert_eq!(TreeCounts::of_manifest(&m), None);

        let tree = open_source(&root, &[]).unwrap();
        let m = manifest_of(tree.as_ref());
        assert!(!is_single_file(&m));
        let c = TreeCounts::of_manifest(&m).unwrap();
        assert_eq!(c, TreeCounts { files: 2, dirs: 2, symlinks: 1, bytes: 305 });
        assert_eq!(c.to_string(), "2 files, 2 dirs, 1 symlink, 305 B");

        let some = open_source(&root, &[PathBuf::from("sub/b.bin")]).unwrap();
        let c = TreeCounts::of(some.entries(), some.len());
        assert_eq!(c, TreeCounts { files: 1, dirs: 1, symlinks: 0, bytes: 300 });

        let e = open_source(&root.join("a.txt"), &[PathBuf::from("x")]).err().unwrap();
        assert!(e.to_string().contains("is a file"), "{e}");
        assert!(open_source(&root.join("missing"), &[]).is_err());
    }

    #[test]
    fn a_single_file_needs_an_existing_output_directory() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f.bin");
        std::fs::write(&src, b"abc").unwrap();
        let m = manifest_of(open_source(&src, &[]).unwrap().as_ref());
        let absent = dir.path().join("absent");
        let e = open_output(&absent, &m, false).err().unwrap();
        assert!(e.to_string().contains("single file"), "{e}");
        assert!(!absent.exists(), "nothing is created for a refused output");
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        assert_eq!(open_output(&out, &m, false).unwrap().destination(), out.join("f.bin"));
    }

    #[test]
    fn a_tree_is_rooted_at_the_output_and_replaces_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a"), b"x").unwrap();
        std::fs::write(root.join("b"), b"y").unwrap();
        let m = manifest_of(open_source(&root, &[]).unwrap().as_ref());
        let dest = dir.path().join("dest");
        let sink = open_output(&dest, &m, false).unwrap();
        assert_eq!(sink.destination(), dest);
        drop(sink);
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("old"), b"old").unwrap();
        let refused = open_output(&dest, &m, false).unwrap();
        let hashes = HashList::of_bytes(b"xy", m.layout().unwrap());
        let e = refused.finish(&hashes, false).unwrap_err();
        assert!(matches!(e, StorageError::DestinationExists(_)), "{e}");
        drop(open_output(&dest, &m, true).unwrap());
        assert_eq!(std::fs::read(dest.join("old")).unwrap(), b"old", "unfinished: untouched");
    }

    #[test]
    fn cleaning_reaches_inside_and_beside_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(".f.bin.mcast-tmp-0123456789abcdef"), b"x").unwrap();
        std::fs::create_dir(dir.path().join(".out.mcast-tmp-0123456789abcdef")).unwrap();
        std::fs::write(out.join("keep"), b"k").unwrap();
        assert_eq!(clean_output(&out).unwrap(), 2);
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // An absent output with an existing parent is fine (nothing to clean yet).
        assert_eq!(clean_output(&dir.path().join("absent")).unwrap(), 0);
    }
}
