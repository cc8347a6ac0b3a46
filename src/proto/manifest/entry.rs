//! Manifest entries: what the payload byte stream is made of. An [`Entry`] names one thing at
//! the destination ([`RelPath`]) and says what it is ([`EntryKind`]): a file whose bytes are a
//! range of the payload, a directory, or a symlink) and when it was last modified ([`Mtime`]).
//! [`check_entries`] is the one place that decides whether a list of entries from the network
//! is acceptable.

use super::name::{quote, NameError, RelPath};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Most entries one manifest may carry.
pub const MAX_ENTRIES: usize = 1 << 20;

/// Permission bits an entry may ask for: `rwx` for user, group and others. Set-id and sticky
/// bits from the network are refused.
pub const MODE_MASK: u32 = 0o777;

/// Largest |seconds| an [`Mtime`] may have: 2^40 s, about 35,000 years either side of 1970
/// (what every file system and `struct timespec` can hold).
pub const MAX_MTIME_SECS: i64 = 1 << 40;

/// A modification time: seconds since the Unix epoch (negative before it) and nanoseconds.
/// Checked by [`check_entries`]: `nanos` below 10^9, `secs` within [`MAX_MTIME_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mtime {
    /// Whole seconds since 1970-01-01 00:00 UTC.
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

impl Mtime {
    /// Whether it is within the bounds above.
    pub fn is_valid(&self) -> bool {
        self.nanos < 1_000_000_000 && self.secs.unsigned_abs() <= MAX_MTIME_SECS as u64
    }
}

/// One named thing at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Where it goes, relative to the destination directory.
    pub path: RelPath,
    /// What it is.
    pub kind: EntryKind,
    /// When it was last modified at the source (set at the destination after writing);
    /// `None` leaves the receiver's time.
    pub mtime: Option<Mtime>,
}

/// What an entry is. New kinds are appended at the end (postcard encodes the variant index), so
/// manifests using only the existing kinds keep their encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file: payload bytes `offset..offset + len`.
    File {
        /// Start of the file's bytes in the payload.
        offset: u64,
        /// Length of the file.
        len: u64,
        /// Permission bits (within [`MODE_MASK`]); `None` leaves the receiver's default.
        mode: Option<u32>,
    },
    /// A directory (its contents are the entries below its path; parents of entries that are
    /// not listed are created with default permissions).
    Dir {
        /// Permission bits (within [`MODE_MASK`]); `None` leaves the receiver's default.
        mode: Option<u32>,
    },
    /// A symbolic link. The target is relative: zero or more leading `..` components, climbing
    /// no higher than the link's own directory's depth, then a [`RelPath`] (which may be left
    /// out if there is at least one `..`). No `..` after a name, so the link resolves inside the
    /// tree whatever the other symlinks in it are.
    Symlink {
        /// Where the link points.
        target: String,
    },
    /// A disk image: the whole payload is its data extents back to back, the rest of the
    /// image reads as zero ([`Image`](super::image::Image); the manifest's only entry).
    Image(super::image::Image),
}

impl Entry {
    /// A regular file of `len` payload bytes from `offset`, with the receiver's default mode.
    pub fn file(path: RelPath, offset: u64, len: u64) -> Self {
        Entry::new(path, EntryKind::File { offset, len, mode: None })
    }

    /// An entry of `kind` at `path`, without an mtime.
    pub fn new(path: RelPath, kind: EntryKind) -> Self {
        Entry { path, kind, mtime: None }
    }

    /// The same entry with modification time `mtime`.
    pub fn with_mtime(self, mtime: Mtime) -> Self {
        Entry { mtime: Some(mtime), ..self }
    }

    /// The payload range of a file entry, `None` for other kinds.
    pub fn payload_range(&self) -> Option<std::ops::Range<u64>> {
        match self.kind {
            EntryKind::File { offset, len, .. } => Some(offset..offset.saturating_add(len)),
            _ => None,
        }
    }
}

/// Why a list of entries was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// A path is unsafe.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Something else is wrong with one entry or with how they fit together.
    #[error("{what}: {path:?}")]
    Bad {
        /// What is wrong.
        what: &'static str,
        /// The entry's path (cut like [`NameError::quoted`]).
        path: String,
    },
    /// More than [`MAX_ENTRIES`] entries.
    #[error("{0} entries, more than the {MAX_ENTRIES} allowed")]
    TooMany(usize),
    /// An image entry is refused ([`Image::check`](super::image::Image::check)).
    #[error("image: {0}")]
    Image(#[from] super::image::ImageError),
    /// The files do not cover the payload from 0 to its end.
    #[error("files cover {covered} of {object_size} payload bytes")]
    Coverage {
        /// Where the last file ends.
        covered: u64,
        /// Payload size.
        object_size: u64,
    },
}

impl EntryError {
    fn bad(what: &'static str, path: &RelPath) -> Self {
        EntryError::Bad { what, path: quote(path.as_str()) }
    }
}

/// Accept `entries` for a payload of `object_size` bytes only if: at most [`MAX_ENTRIES`];
/// the file entries, in list order, tile `0..object_size` (each starts where the previous one
/// ended, the last ends at `object_size`; zero-length files anywhere in the sequence), so
/// their ranges are inside the payload, sorted and disjoint and every payload byte belongs to
/// exactly one file; modes within [`MODE_MASK`]; mtimes valid ([`Mtime::is_valid`]); symlink
/// targets as [`EntryKind::Symlink`] says; no path twice; and no path below an entry that is
/// not a directory.
///
/// Cost: O(n log n) path comparisons, never quadratic in the path length.
pub fn check_entries(entries: &[Entry], object_size: u64) -> Result<(), EntryError> {
    if entries.len() > MAX_ENTRIES {
        return Err(EntryError::TooMany(entries.len()));
    }
    let mut covered = 0u64;
    for e in entries {
        if e.mtime.is_some_and(|m| !m.is_valid()) {
            return Err(EntryError::bad("mtime out of range", &e.path));
        }
        match &e.kind {
            EntryKind::File { offset, len, mode } => {
                check_mode(*mode, &e.path)?;
                if *offset != covered {
                    return Err(EntryError::bad(
                        if *offset < covered {
                            "file overlaps the previous one"
                        } else {
                            "gap before file"
                        },
                        &e.path,
                    ));
                }
                covered = match offset.checked_add(*len) {
                    Some(end) if end <= object_size => end,
                    _ => return Err(EntryError::bad("file reaches past the payload", &e.path)),
                };
            }
            EntryKind::Dir { mode } => check_mode(*mode, &e.path)?,
            EntryKind::Symlink { target } => check_symlink(&e.path, target)?,
            EntryKind::Image(img) => {
                if entries.len() != 1 {
                    return Err(super::image::ImageError::NotAlone.into());
                }
                img.check(object_size)?;
                covered = object_size;
            }
        }
    }
    if covered != object_size {
        return Err(EntryError::Coverage { covered, object_size });
    }
    check_tree(entries)
}

fn check_mode(mode: Option<u32>, path: &RelPath) -> Result<(), EntryError> {
    match mode {
        Some(m) if m & !MODE_MASK != 0 => Err(EntryError::bad("mode bits beyond 0o777", path)),
        _ => Ok(()),
    }
}

/// A symlink target: `..` components first (no more than the link's directory is deep), then
/// a [`RelPath`], which may be missing only after at least one `..`.
fn check_symlink(link: &RelPath, target: &str) -> Result<(), EntryError> {
    let mut rest = target;
    let mut ups = 0usize;
    loop {
        if rest == ".." {
            (ups, rest) = (ups + 1, "");
            break;
        }
        match rest.strip_prefix("../") {
            Some("") => return Err(EntryError::bad("symlink target ends in /", link)),
            Some(r) => (ups, rest) = (ups + 1, r),
            None => break,
        }
    }
    if ups >= link.depth() {
        return Err(EntryError::bad("symlink target climbs out of the tree", link));
    }
    if rest.is_empty() && ups > 0 {
        return Ok(());
    }
    match RelPath::new(rest) {
        Ok(_) => Ok(()),
        Err(e) => Err(EntryError::Bad { what: e.reason, path: quote(link.as_str()) }),
    }
}

/// No duplicates, and every listed ancestor of an entry is a directory. Sorting component-wise
/// (`/` before every other byte; paths hold no NUL) puts each directory right before its
/// subtree, so a stack of the current entry's listed ancestors is all the state needed.
fn check_tree(entries: &[Entry]) -> Result<(), EntryError> {
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_unstable_by(|a, b| component_order(&a.path, &b.path));
    let mut ancestors: Vec<&Entry> = Vec::new();
    for e in order {
        if ancestors.last().is_some_and(|top| top.path == e.path) {
            return Err(EntryError::bad("path listed twice", &e.path));
        }
        while ancestors.last().is_some_and(|top| !top.path.is_ancestor_of(&e.path)) {
            ancestors.pop();
        }
        if let Some(parent) = ancestors.last() {
            if !matches!(parent.kind, EntryKind::Dir { .. }) {
                return Err(EntryError::bad("entry below a file or symlink", &e.path));
            }
        }
        ancestors.push(e);
    }
    Ok(())
}

/// Byte order with `/` sorting first: `a` < `a/b` < `a!`.
fn component_order(a: &RelPath, b: &RelPath) -> Ordering {
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.as_str().as_bytes().iter().map(key).cmp(b.as_str().as_bytes().iter().map(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn file(path: &str, offset: u64, len: u64) -> Entry {
        Entry::file(p(path), offset, len)
    }

    fn dir(path: &str) -> Entry {
        Entry::new(p(path), EntryKind::Dir { mode: None })
    }

    fn link(path: &str, target: &str) -> Entry {
        Entry::new(p(path), EntryKind::Symlink { target: target.into() })
    }

    fn what(r: Result<(), EntryError>) -> &'static str {
        match r {
            Err(EntryError::Bad { what, .. }) => what,
            other => panic!("expected Bad, got {other:?}"),
        }
    }

    #[test]
    fn a_tree_is_accepted() {
        let tree = [
            dir("etc"),
            file("etc/hosts", 0, 10),
            file("empty", 10, 0),
            dir("usr/lib"),
            file("usr/lib/libx.so.1", 10, 5),
            link("usr/lib/libx.so", "libx.so.1"),
            link("usr/lib/hosts", "../../etc/hosts"),
            link("usr/up", ".."),
            file("a!", 15, 1),
            file("a/b", 16, 4),
        ];
        assert_eq!(check_entries(&tree, 20), Ok(()));
        assert_eq!(check_entries(&[], 0), Ok(()));
        assert_eq!(check_entries(&[file("f", 0, 0)], 0), Ok(()));
    }

    #[test]
    fn ranges_must_tile_the_payload() {
        assert_eq!(
            what(check_entries(&[file("a", 0, 5), file("b", 4, 6)], 10)),
            "file overlaps the previous one"
        );
        assert_eq!(what(check_entries(&[file("a", 0, 5), file("b", 6, 4)], 10)), "gap before file");
        assert_eq!(what(check_entries(&[file("b", 5, 5), file("a", 0, 5)], 10)), "gap before file");
        assert_eq!(what(check_entries(&[file("a", 0, 11)], 10)), "file reaches past the payload");
        assert_eq!(
            what(check_entries(&[file("a", 0, 1), file("b", 1, u64::MAX)], u64::MAX)),
            "file reaches past the payload"
        );
        assert_eq!(
            check_entries(&[file("a", 0, 9)], 10),
            Err(EntryError::Coverage { covered: 9, object_size: 10 })
        );
        assert_eq!(
            check_entries(&[dir("d")], 1),
            Err(EntryError::Coverage { covered: 0, object_size: 1 })
        );
    }

    #[test]
    fn duplicates_and_non_directory_parents_are_refused() {
        assert_eq!(
            what(check_entries(&[file("a", 0, 1), file("a", 1, 1)], 2)),
            "path listed twice"
        );
        assert_eq!(what(check_entries(&[dir("a"), file("a", 0, 1)], 1)), "path listed twice");
        assert_eq!(what(check_entries(&[dir("a"), dir("a")], 0)), "path listed twice");
        assert_eq!(
            what(check_entries(&[file("a/b/c", 0, 1), file("a", 1, 1)], 2)),
            "entry below a file or symlink"
        );
        assert_eq!(
            what(check_entries(&[link("l", "x"), file("l/f", 0, 1)], 1)),
            "entry below a file or symlink"
        );
        // The ancestor check survives siblings sorting between parent and child.
        let e = [file("a", 0, 1), dir("a!"), dir("a.b"), file("a/z", 1, 1)];
        assert_eq!(what(check_entries(&e, 2)), "entry below a file or symlink");
        // A deeper listed directory does not hide a file further up.
        let e = [file("a", 0, 1), dir("a/b"), file("a/b/c", 1, 1)];
        assert_eq!(what(check_entries(&e, 2)), "entry below a file or symlink");
    }

    #[test]
    fn payload_ranges() {
        assert_eq!(file("f", 10, 5).payload_range(), Some(10..15));
        assert_eq!(file("f", u64::MAX, 5).payload_range(), Some(u64::MAX..u64::MAX));
        assert_eq!(dir("d").payload_range(), None);
        assert_eq!(link("l", "x").payload_range(), None);
    }

    #[test]
    fn modes_are_bounded() {
        let f = |mode| Entry::new(p("f"), EntryKind::File { offset: 0, len: 0, mode });
        assert_eq!(check_entries(&[f(Some(0o755))], 0), Ok(()));
        assert_eq!(what(check_entries(&[f(Some(0o4755))], 0)), "mode bits beyond 0o777");
        let d = Entry::new(p("d"), EntryKind::Dir { mode: Some(0o1777) });
        assert_eq!(what(check_entries(&[d], 0)), "mode bits beyond 0o777");
    }

    #[test]
    fn mtimes_are_bounded() {
        let at = |secs, nanos| Mtime { secs, nanos };
        for ok in [at(0, 0), at(MAX_MTIME_SECS, 999_999_999), at(-MAX_MTIME_SECS, 0)] {
            for e in [file("f", 0, 0), dir("f"), link("f", "x")] {
                assert_eq!(check_entries(&[e.with_mtime(ok)], 0), Ok(()), "{ok:?}");
            }
        }
        for bad in [at(0, 1_000_000_000), at(MAX_MTIME_SECS + 1, 0), at(i64::MIN, 0)] {
            for e in [file("f", 0, 0), dir("f"), link("f", "x")] {
                assert_eq!(what(check_entries(&[e.with_mtime(bad)], 0)), "mtime out of range");
            }
        }
    }

    #[test]
    fn symlink_targets_stay_inside() {
        for (l, t) in
            [("l", "x"), ("l", "x/y"), ("d/l", ".."), ("d/l", "../x"), ("a/b/l", "../../x/y")]
        {
            assert_eq!(check_entries(&[link(l, t)], 0), Ok(()), "{l} -> {t}");
        }
        for (l, t) in [
            ("l", ".."),
            ("l", "../x"),
            ("d/l", "../.."),
            ("d/l", "../../x"),
            ("d/l", "x/../.."),
            ("d/l", "x/.."),
            ("l", "/etc/passwd"),
            ("l", ""),
            ("l", "x/"),
            ("l", "./x"),
            ("d/l", "..//x"),
            ("d/l", "../"),
            ("a/b/l", "../../"),
            ("l", "a\0b"),
        ] {
            assert!(check_entries(&[link(l, t)], 0).is_err(), "{l} -> {t} accepted");
        }
    }

    #[test]
    fn too_many_entries() {
        let many: Vec<Entry> = (0..=MAX_ENTRIES).map(|i| dir(&format!("d{i}"))).collect();
        assert_eq!(check_entries(&many, 0), Err(EntryError::TooMany(MAX_ENTRIES + 1)));
        assert_eq!(check_entries(&many[..MAX_ENTRIES], 0), Ok(()));
    }

    /// The O(n²) definition of [`check_tree`]: no path twice, no listed non-directory above
    /// another entry.
    fn tree_ok_naive(entries: &[Entry]) -> bool {
        let conflict = |a: &Entry, b: &Entry| {
            a.path == b.path
                || (a.path.is_ancestor_of(&b.path) && !matches!(a.kind, EntryKind::Dir { .. }))
        };
        let n = entries.len();
        !(0..n).any(|i| (0..n).any(|j| i != j && conflict(&entries[i], &entries[j])))
    }

    proptest! {
        /// Random small trees over names that sort around `/` (`a` < `a/..` < `a!`): the
        /// sort-and-stack check agrees with the pairwise definition.
        #[test]
        fn tree_check_matches_pairwise_definition(
            shape in prop::collection::vec(
                (prop::collection::vec(prop::sample::select(vec!["a", "a!", "b", "a.b"]), 1..4),
                 any::<bool>()),
                0..12)
        ) {
            let entries: Vec<Entry> = shape
                .iter()
                .map(|(parts, is_dir)| {
                    let path = p(&parts.join("/"));
                    if *is_dir {
                        Entry::new(path, EntryKind::Dir { mode: None })
                    } else {
                        Entry::file(path, 0, 0)
                    }
                })
                .collect();
            prop_assert_eq!(check_entries(&entries, 0).is_ok(), tree_ok_naive(&entries));
        }

        /// Files laid end to end are accepted; moving any one start, or claiming another
        /// payload size, is refused.
        #[test]
        fn tilings_accepted_and_shifts_refused(
            lens in prop::collection::vec(0u64..1000, 1..20),
            which in any::<prop::sample::Index>(),
            delta in 1u64..10,
        ) {
            let mut end = 0;
            let entries: Vec<Entry> = lens
                .iter()
                .enumerate()
                .map(|(i, &len)| {
                    let e = file(&format!("f{i}"), end, len);
                    end += len;
                    e
                })
                .collect();
            prop_assert_eq!(check_entries(&entries, end), Ok(()));
            prop_assert!(check_entries(&entries, end + delta).is_err());
            let i = which.index(entries.len());
            for shift in [delta as i64, -(delta as i64)] {
                let mut moved = entries.clone();
                let EntryKind::File { offset, .. } = &mut moved[i].kind else { unreachable!() };
                let Some(o) = offset.checked_add_signed(shift) else { continue };
                *offset = o;
                prop_assert!(check_entries(&moved, end).is_err(), "shift {} of {}", shift, i);
            }
        }
    }
}
