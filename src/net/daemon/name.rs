//! The name a daemon gives a push (`<root>/<name>`), from its manifest alone: a single-file
//! push is named by its file name; a tree push by the one top-level directory all its entries
//! share (`mcast-send PARENT NAME`). Anything else, or a name that is not one plain visible
//! path component, is refused before anything is written.

use crate::proto::manifest::{EntryKind, Manifest};

/// Why a push has no name the daemon accepts (the text is reported to the sender).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameRefused {
    /// The manifest lists nothing.
    #[error("an empty push has no name to place it under")]
    Empty,
    /// A tree whose entries do not all lie under one top-level directory.
    #[error(
        "a push to a receiver service needs one top-level name: push a single file, or a tree \
         as `mcast-send PARENT NAME` (this one has {first:?} and {other:?} at the top)"
    )]
    SeveralTops {
        /// The first top-level component.
        first: String,
        /// Another one.
        other: String,
    },
    /// The top-level entry of a tree is not a directory (a lone symlink, say).
    #[error("the top-level entry {0:?} of this push is not a directory or a single file")]
    NotADirectory(String),
    /// The name itself is not acceptable.
    #[error("{name:?} is not accepted as a push name: {why}")]
    Unsafe {
        /// The name (escaped in the message).
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// The name of the push described by `m`, checked by [`check_name`].
pub fn push_name(m: &Manifest) -> Result<String, NameRefused> {
    if let Some(p) = m.single_file_path().filter(|p| p.is_single_component()) {
        return check_name(p.as_str()).map(str::to_owned);
    }
    let first = m.entries.first().ok_or(NameRefused::Empty)?;
    let top = first.path.components().next().unwrap_or_default();
    for e in &m.entries {
        let this = e.path.components().next().unwrap_or_default();
        if this != top {
            return Err(NameRefused::SeveralTops { first: top.into(), other: this.into() });
        }
    }
    let top_entry = m.entries.iter().find(|e| e.path.as_str() == top);
    if top_entry.is_some_and(|e| !matches!(e.kind, EntryKind::Dir { .. })) {
        return Err(NameRefused::NotADirectory(top.into()));
    }
    check_name(top).map(str::to_owned)
}

/// `name` if it is one path component the daemon may create under its root: not hidden (a
/// leading `.` is reserved for the daemon's own `.mcast-versions` and staging names), no
/// control characters, no `/` (what [`RelPath`](crate::proto::manifest::RelPath) already
/// refuses, `..`, NUL and over-long names, is refused here too).
pub fn check_name(name: &str) -> Result<&str, NameRefused> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.starts_with('.') {
        Some("it starts with '.' (reserved for the service's own files)")
    } else if name.contains(['/', '\\', '\0']) {
        Some("it is not a single path component")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else if name.len() > crate::proto::manifest::MAX_COMPONENT_LEN {
        Some("it is too long")
    } else {
        None
    };
    match why {
        None => Ok(name),
        Some(why) => Err(NameRefused::Unsafe { name: name.into(), why }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::manifest::{Entry, RelPath};

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn tree(entries: Vec<Entry>, size: u64) -> Manifest {
        Manifest::new(entries, size, 64, 16).unwrap()
    }

    fn dir(s: &str) -> Entry {
        Entry::new(p(s), EntryKind::Dir { mode: None })
    }

    #[test]
    fn a_single_file_is_named_by_its_file_name() {
        let m = Manifest::single_file(p("release.tar.gz"), 100, 64, 16).unwrap();
        assert_eq!(push_name(&m).unwrap(), "release.tar.gz");
        let hidden = Manifest::single_file(p(".profile"), 100, 64, 16).unwrap();
        assert!(matches!(push_name(&hidden), Err(NameRefused::Unsafe { .. })));
    }

    #[test]
    fn a_tree_is_named_by_its_one_top_level_directory() {
        let m = tree(
            vec![dir("app"), dir("app/bin"), Entry::file(p("app/bin/x"), 0, 10), dir("app/e")],
            10,
        );
        assert_eq!(push_name(&m).unwrap(), "app");
        // The top directory need not be listed itself.
        let m = tree(vec![Entry::file(p("app/a"), 0, 4), Entry::file(p("app/b"), 4, 6)], 10);
        assert_eq!(push_name(&m).unwrap(), "app");
        // An empty tree under one name.
        assert_eq!(push_name(&tree(vec![dir("app")], 0)).unwrap(), "app");
    }

    #[test]
    fn several_top_level_entries_are_refused() {
        let m = tree(vec![dir("bin"), Entry::file(p("bin/x"), 0, 10), dir("etc")], 10);
        let e = push_name(&m).unwrap_err();
        assert_eq!(e, NameRefused::SeveralTops { first: "bin".into(), other: "etc".into() });
        assert!(e.to_string().contains("mcast-send PARENT NAME"), "{e}");
        // Two top-level files are a tree, not a single file, and have no one name.
        let m = tree(vec![Entry::file(p("a"), 0, 4), Entry::file(p("b"), 4, 6)], 10);
        assert!(matches!(push_name(&m), Err(NameRefused::SeveralTops { .. })));
        assert_eq!(push_name(&tree(vec![], 0)), Err(NameRefused::Empty));
    }

    #[test]
    fn a_lone_top_level_symlink_is_refused() {
        let link = Entry::new(p("app"), EntryKind::Symlink { target: "other".into() });
        assert_eq!(push_name(&tree(vec![link], 0)), Err(NameRefused::NotADirectory("app".into())));
    }

    #[test]
    fn names_are_checked() {
        for ok in ["app", "release-1.2_x", "a", "a..b", "über"] {
            assert_eq!(check_name(ok), Ok(ok));
        }
        let longest = "n".repeat(crate::proto::manifest::MAX_COMPONENT_LEN);
        assert!(check_name(&longest).is_ok());
        assert!(check_name(&format!("{longest}n")).is_err());
        for bad in ["", ".", "..", ".mcast-versions", ".hidden", "a/b", "a\\b", "a\0b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
