//! Storage layer: everything that touches files on disk.
//!
//! It owns the [`Source`] trait (the sender's payload: length, manifest entries, positioned
//! reads, block hashing) and the [`Sink`] trait (the receiver's destination: verified blocks at
//! payload offsets, then verify, fsync and atomic placement, or abort), their file
//! implementations [`FileSource`] and [`FileSink`], their tree implementations [`TreeSource`]
//! and [`TreeSink`], [`open_sink`] (which sink a manifest needs) and cleanup of temp files
//! and staging directories left behind by crashed runs ([`clean_stale_temps`],
//! [`clean_stale_tree_temps`]). Names
//! from the network arrive already checked as
//! [`RelPath`](crate::proto::manifest::RelPath)s. All failures are reported as
//! [`StorageError`]; nothing in here panics on bad input.
//!
//! - `source.rs`, `sink.rs`: the traits. `file_source.rs`, `file_sink.rs`: a single file.
//! - `tree_source.rs`: a directory tree, files packed back to back. `tree_sink/`: staging a
//!   tree without following symlinks (`stage.rs`, `at.rs`) and placing it atomically.
//! - `image_source.rs`, `image_sink/`: disk images and block devices (data extents only;
//!   a sparse file, or a device written in place with its first region committed last).
//! - `names.rs`: temp file names and stale temp cleanup.
//! - `previous.rs`: the previous version at a destination as a source of blocks of a new
//!   push (only what changed is fetched).
//! - `resume.rs`: the resume sidecar of a receive, file or tree (its lock, and the journal of
//!   blocks made durable).

mod file_sink;
mod file_source;
pub mod image_sink;
pub mod image_source;
mod names;
pub mod previous;
pub mod resume;
mod sink;
mod source;
mod tree_sink;
mod tree_source;

use std::path::PathBuf;

use crate::proto::layout::LayoutError;
use crate::proto::manifest::{ManifestError, NameError};

pub use file_sink::FileSink;
pub use file_source::FileSource;
pub use image_source::{open_image, ImageOptions, ImageSource, StreamSource};
pub use names::clean_stale_temps;
pub use sink::{open_sink, open_sink_with, Sink, SinkOptions};
pub use source::{Source, SourceHashes};
pub use tree_sink::{clean_stale_tree_temps, TreeOpen, TreeSink, MAX_TREE_DEPTH};
pub use tree_source::TreeSource;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system I/O call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was applied to.
        path: PathBuf,
        /// Short description of the failed operation, e.g. `"open"`.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file name is not acceptable (not UTF-8, or refused by
    /// [`RelPath`](crate::proto::manifest::RelPath)'s checks).
    #[error("invalid file name: {0}")]
    BadName(String),
    /// The manifest asks for something this sink cannot place (e.g. a tree in a file sink).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The manifest a source describes is inconsistent.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The payload cannot be laid out in blocks of the size asked for.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The path given as a source is not a regular file.
    #[error("{} is not a regular file", .0.display())]
    NotRegularFile(PathBuf),
    /// The content hash of a received file does not match the expected one.
    #[error("hash mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// Expected BLAKE3 hash, lowercase hex.
        expected: String,
        /// Hash actually computed, lowercase hex.
        actual: String,
    },
    /// A file does not have the size it is supposed to have (for example it
    /// was truncated or extended by another process while in use).
    #[error("size mismatch for {}: expected {expected} bytes, found {actual}", path.display())]
    SizeMismatch {
        /// The file concerned.
        path: PathBuf,
        /// Size the file should have.
        expected: u64,
        /// Size actually found.
        actual: u64,
    },
    /// A read or write range reaches beyond the end of the file.
    #[error("range {offset}+{len} is out of bounds for a file of {size} bytes")]
    OutOfRange {
        /// Start of the requested range.
        offset: u64,
        /// Length of the requested range.
        len: u64,
        /// Size of the file.
        size: u64,
    },
    /// A source file changed between the walk that built the manifest and a read (replaced by
    /// another file, or modified): the manifest no longer describes it.
    #[error("{} was {what} while being sent", path.display())]
    Changed {
        /// The file concerned.
        path: PathBuf,
        /// What happened to it: `"replaced"` or `"modified"`.
        what: &'static str,
    },
    /// The destination of a tree already exists (and is not an empty directory) and replacing
    /// it was not asked for.
    #[error("{} already exists (replacing it was not asked for)", .0.display())]
    DestinationExists(PathBuf),
    /// Another receiver holds the lock of this destination's staging data.
    #[error("another mcast-recv is receiving into {} (pid {pid})", dest.display())]
    Busy {
        /// The destination.
        dest: PathBuf,
        /// The other receiver's process id, as its resume state names it (0 if unknown).
        pid: u32,
    },
    /// An argument is invalid (for example a block size of zero).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A streamed image (`mcast-send --image -`) went on past its announced bound.
    #[error("standard input holds more than --max-size {bound} bytes: the push fails and no receiver places anything")]
    StreamTooLong {
        /// The bound.
        bound: u64,
    },
}

impl StorageError {
    /// Builds a [`StorageError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io { path: path.into(), op, source }
    }
}

impl From<NameError> for StorageError {
    fn from(e: NameError) -> Self {
        StorageError::BadName(e.to_string())
    }
}

/// Checks that `[offset, offset + len)` lies inside a file of `size` bytes.
pub(crate) fn check_range(offset: u64, len: u64, size: u64) -> Result<(), StorageError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(StorageError::OutOfRange { offset, len, size }),
    }
}

/// The modification time in `m`, if a manifest can carry it ([`Mtime::is_valid`]).
///
/// [`Mtime::is_valid`]: crate::proto::manifest::Mtime::is_valid
pub(crate) fn mtime_of(m: &std::fs::Metadata) -> Option<crate::proto::manifest::Mtime> {
    use std::os::unix::fs::MetadataExt;
    let nanos = u32::try_from(m.mtime_nsec()).ok()?;
    Some(crate::proto::manifest::Mtime { secs: m.mtime(), nanos }).filter(|t| t.is_valid())
}

/// Lowercase hex encoding of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Size of the scratch buffer used for sequential whole-file passes.
pub(crate) const IO_CHUNK: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_checks() {
        assert!(check_range(0, 0, 0).is_ok());
        assert!(check_range(0, 10, 10).is_ok());
        assert!(check_range(10, 0, 10).is_ok());
        assert!(check_range(5, 6, 10).is_err());
        assert!(check_range(11, 0, 10).is_err());
        assert!(check_range(u64::MAX, 2, u64::MAX).is_err());
    }

    #[test]
    fn hex_encoding() {
        assert_eq!(to_hex(&[]), "");
        assert_eq!(to_hex(&[0x00, 0xab, 0x0f]), "00ab0f");
    }

    #[test]
    fn error_messages_mention_path() {
        let e =
            StorageError::io("open", "/x/y", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(e.to_string().contains("/x/y"));
        assert!(e.to_string().starts_with("open"));
    }
}
