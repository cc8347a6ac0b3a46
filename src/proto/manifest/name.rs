//! Names from the network, checked in one place: [`RelPath`] is a relative, normalised path
//! (`a/b/c`) that can only be built through [`RelPath::new`]'s checks, so whatever holds one may
//! join it under a base directory without further thought. Every name a manifest carries and
//! every name storage places is a `RelPath`.

use serde::{Serialize, Serializer};
use std::fmt;
use std::path::Path;
use thiserror::Error;

/// Longest path component accepted (bytes), `NAME_MAX` on common Linux file systems.
pub const MAX_COMPONENT_LEN: usize = 255;

/// Longest whole path accepted (bytes): `PATH_MAX` (4096) less its terminating NUL.
pub const MAX_PATH_LEN: usize = 4095;

/// Longest prefix of a refused name quoted in an error (names from the network may be long).
const QUOTE_LEN: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unsafe path {quoted:?}: {reason}")]
pub struct NameError {
    /// The refused name, cut to at most 64 bytes (at a character boundary, then `...`).
    pub quoted: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl NameError {
    /// A refusal of `name` because of `reason`.
    pub(crate) fn new(name: &str, reason: &'static str) -> Self {
        NameError { quoted: quote(name), reason }
    }
}

/// `name` cut to at most 64 bytes (at a character boundary, then `...`), for error messages.
pub(crate) fn quote(name: &str) -> String {
    if name.len() <= QUOTE_LEN {
        return name.to_owned();
    }
    let mut cut = QUOTE_LEN;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &name[..cut])
}

/// A relative path from the network, checked: one or more components separated by `/`, none
/// empty, `.` or `..`, none longer than [`MAX_COMPONENT_LEN`] bytes, no NUL or `\` anywhere, at
/// most [`MAX_PATH_LEN`] bytes in all. It has no leading or trailing `/`, so it is normalised:
/// two `RelPath`s name the same place exactly when their strings are equal. Joined under any
/// directory it stays under that directory (as long as nothing on the way is a symlink, which
/// is the placing side's business).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

impl RelPath {
    /// Check `path` and wrap it.
    pub fn new(path: impl Into<String>) -> Result<Self, NameError> {
        let path = path.into();
        match path_problem(&path) {
            None => Ok(RelPath(path)),
            Some(reason) => Err(NameError::new(&path, reason)),
        }
    }

    /// The path as written (`/`-separated).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as a relative [`Path`], to join under a base directory.
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Number of components (at least 1).
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Whether the path is a single component (a plain file name).
    pub fn is_single_component(&self) -> bool {
        !self.0.contains('/')
    }

    /// Whether `self` is a proper ancestor directory of `other` (`a` of `a/b`, not of `ab`).
    pub fn is_ancestor_of(&self, other: &RelPath) -> bool {
        other.0.len() > self.0.len()
            && other.0.starts_with(&self.0)
            && other.0.as_bytes()[self.0.len()] == b'/'
    }

    /// The path's string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// What is wrong with `path` as a [`RelPath`], if anything.
fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("empty");
    }
    if path.len() > MAX_PATH_LEN {
        return Some("longer than 4095 bytes");
    }
    if path.contains('\0') {
        return Some("contains a NUL byte");
    }
    if path.contains('\\') {
        return Some("contains a backslash");
    }
    if path.starts_with('/') {
        return Some("absolute");
    }
    path.split('/').find_map(component_problem)
}

/// What is wrong with one `/`-free component, if anything.
fn component_problem(c: &str) -> Option<&'static str> {
    match c {
        "" => Some("empty component (doubled or trailing /)"),
        "." | ".." => Some("component refers to a directory (. or ..)"),
        _ if c.len() > MAX_COMPONENT_LEN => Some("component longer than 255 bytes"),
        _ => None,
    }
}

impl TryFrom<String> for RelPath {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        RelPath::new(s)
    }
}

impl TryFrom<&str> for RelPath {
    type Error = NameError;
    fn try_from(s: &str) -> Result<Self, NameError> {
        RelPath::new(s)
    }
}

impl std::str::FromStr for RelPath {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        RelPath::new(s)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<Path> for RelPath {
    fn as_ref(&self) -> &Path {
        self.as_path()
    }
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused() {
        let long_component = "x".repeat(256);
        let long_path = vec!["x"; 2048].join("/");
        assert_eq!(long_path.len(), 4095);
        let too_long_path = format!("{long_path}y");
        for bad in [
            "",
            ".",
            "..",
            "/",
            "/etc/passwd",
            "a/",
            "a//b",
            "./a",
            "a/./b",
            "a/../b",
            "../a",
            "a/..",
            "a\\b",
            "a\0b",
            long_component.as_str(),
            too_long_path.as_str(),
        ] {
            assert!(RelPath::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RelPath::new(long_path).is_ok());
    }

    #[test]
    fn accepted() {
        let c255 = "x".repeat(255);
        let nested = format!("{c255}/{c255}");
        for good in [
            "a",
            "release-1.2.tar.gz",
            "..hidden",
            ".profile",
            "...",
            "ü名前.txt",
            "a b",
            "a/b/c",
            "a.../...b",
        ] {
            let p = RelPath::new(good).unwrap();
            assert_eq!(p.as_str(), good);
        }
        assert!(RelPath::new(c255.as_str()).is_ok());
        assert_eq!(RelPath::new(nested.as_str()).unwrap().depth(), 2);
    }

    #[test]
    fn boundaries_count_bytes_not_characters() {
        // 127 two-byte characters are 254 bytes; one more byte is 255, two more 256.
        let e127 = "é".repeat(127);
        assert!(RelPath::new(format!("{e127}x")).is_ok());
        assert!(RelPath::new(format!("{e127}xy")).is_err());
        assert!(RelPath::new(format!("{e127}é")).is_err());
    }

    #[test]
    fn parts() {
        let p = RelPath::new("usr/lib/libx.so").unwrap();
        assert_eq!(p.components().collect::<Vec<_>>(), ["usr", "lib", "libx.so"]);
        assert_eq!(p.depth(), 3);
        assert_eq!(p.file_name(), "libx.so");
        assert!(!p.is_single_component());
        assert!(RelPath::new("f").unwrap().is_single_component());
        let a = RelPath::new("usr").unwrap();
        assert!(a.is_ancestor_of(&p));
        assert!(RelPath::new("usr/lib").unwrap().is_ancestor_of(&p));
        assert!(!p.is_ancestor_of(&p));
        assert!(!a.is_ancestor_of(&RelPath::new("usrx/y").unwrap()));
        assert!(!p.is_ancestor_of(&a));
    }

    #[test]
    fn error_quotes_a_bounded_prefix() {
        let e = RelPath::new("é".repeat(1000)).unwrap_err();
        assert!(e.quoted.len() <= QUOTE_LEN + 3, "{}", e.quoted.len());
        assert!(e.quoted.ends_with("..."));
        assert!(e.to_string().len() < 200);
        let e = RelPath::new("a/../b").unwrap_err();
        assert_eq!(e.quoted, "a/../b");
    }
}
