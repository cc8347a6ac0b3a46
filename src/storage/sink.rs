//! The [`Sink`] trait: where a receiver puts the payload byte stream. A sink takes verified
//! blocks at payload offsets, in any order, each range once; then [`Sink::finish`] verifies the
//! whole payload, makes it durable and places it at its destination atomically, or
//! [`Sink::abort`] discards it. Nothing appears at the destination before `finish` succeeds.
//!
//! [`open_sink`] picks the implementation a manifest needs. Implemented:
//! [`FileSink`](super::FileSink) (a single-file push). A tree sink (payload ranges spread over
//! several files, staged in a temp directory and renamed into place together) and a device
//! sink (extents written in place, holes skipped) implement the same trait.

use std::path::Path;

use super::{FileSink, StorageError};
use crate::proto::manifest::Manifest;

/// A destination for a payload byte stream. Methods that end the sink take `Box<Self>` so a
/// receiver can hold whichever sink the manifest needs as a `Box<dyn Sink>`.
pub trait Sink: Send {
    /// Length of the payload the sink expects, in bytes.
    fn len(&self) -> u64;

    /// Whether the payload is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the result appears once [`finish`](Self::finish) succeeds (for reports).
    fn destination(&self) -> &Path;

    /// Store verified payload bytes at `offset`, a range not written before. A sink may leave
    /// an all-zero range unwritten (a hole) and say so by returning `Ok(false)`. Fails with
    /// [`StorageError::OutOfRange`] past [`len`](Self::len).
    fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError>;

    /// Verify the stored payload against `object_hash` (BLAKE3 of the whole stream), make it
    /// durable and place it atomically; returns the hash computed. On any error the
    /// destination is left as it was and everything staged is removed.
    fn finish(self: Box<Self>, object_hash: &[u8; 32]) -> Result<[u8; 32], StorageError>;

    /// Discard everything staged. The destination is never touched.
    fn abort(self: Box<Self>);
}

/// The sink for `manifest` under directory `dir`: a [`FileSink`] for a single-file push. Other
/// manifests (trees) are [`StorageError::Unsupported`] until their sink exists.
pub fn open_sink(dir: &Path, manifest: &Manifest) -> Result<Box<dyn Sink>, StorageError> {
    Ok(Box::new(FileSink::for_manifest(dir, manifest)?))
}
