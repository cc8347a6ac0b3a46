//! The [`Sink`] trait: where a receiver puts the payload byte stream. A sink takes decoded
//! blocks at payload offsets, in any order, into a staging area (a block that fails
//! verification later is written again, [`Sink::rewrite_block`]); then [`Sink::finish`] makes
//! the verified payload durable and places it at its destination atomically, without reading it
//! again unless asked to, or [`Sink::abort`] discards it. Nothing appears at the destination
//! before `finish` succeeds.
//!
//! [`open_sink`] picks the implementation a manifest needs. Implemented:
//! [`FileSink`](super::FileSink) (a single-file push) and [`TreeSink`](super::TreeSink)
//! (payload ranges spread over the files of a tree, staged in a directory beside the
//! destination and renamed into place together). A device sink (extents written in place,
//! holes skipped) implements the same trait.

use std::path::Path;

use super::{FileSink, StorageError, TreeSink};
use crate::proto::manifest::{HashList, Manifest};

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

    /// Store decoded payload bytes at `offset`, a range not written before. A sink may leave
    /// an all-zero range unwritten (a hole) and say so by returning `Ok(false)`. Fails with
    /// [`StorageError::OutOfRange`] past [`len`](Self::len).
    fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<bool, StorageError>;

    /// Store `data` at `offset` over bytes written there before (they failed verification):
    /// the new bytes replace the old, zeros included. A sink that leaves zero ranges as holes
    /// in [`write_block`](Self::write_block) must override this.
    fn rewrite_block(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.write_block(offset, data).map(|_| ())
    }

    /// Make the payload, every block of which the receiver has verified in memory against
    /// `hashes`, durable and place it atomically; returns the object hash (`hashes.root()`).
    /// With `verify_readback`, first read every block back and compare it with its hash
    /// ([`StorageError::HashMismatch`] if one differs). On any error the destination is left
    /// as it was and everything staged is removed.
    fn finish(
        self: Box<Self>,
        hashes: &HashList,
        verify_readback: bool,
    ) -> Result<[u8; 32], StorageError>;

    /// Discard everything staged. The destination is never touched.
    fn abort(self: Box<Self>);

    /// A write that failed after [`write_block`](Self::write_block) returned, if one did: a
    /// sink that writes on a thread of its own learns of it late, and the receiver's writer
    /// asks after every write and while it waits, so the receive fails at once rather than at
    /// the next block (which, with windows of blocks completing together, can be seconds
    /// away). Default: never (writes fail in `write_block`).
    fn deferred_failure(&self) -> Option<StorageError> {
        None
    }

    /// Payload block `block` was just written (by [`write_block`](Self::write_block) or
    /// [`rewrite_block`](Self::rewrite_block)) with bytes whose BLAKE3 is `hash`: a resumable
    /// sink records it, once its bytes are durable, so a later run can keep it. Default:
    /// nothing.
    fn record_block(&mut self, _block: u32, _hash: [u8; 32]) {}

    /// Stop without placing (the receive was interrupted): a resumable sink keeps what it
    /// staged for the next run (see [`FileSink::resumable`]); others discard it like
    /// [`abort`](Self::abort), the default.
    fn suspend(self: Box<Self>) {
        self.abort()
    }
}

/// How a receiver wants a push placed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkOptions {
    /// A tree push may replace an existing destination (swapped atomically, see
    /// [`TreeSink`]). Without it only an absent destination or an empty directory is used.
    pub replace: bool,
}

/// The sink for `manifest` at `dir`, with default [`SinkOptions`] (see [`open_sink_with`]).
pub fn open_sink(dir: &Path, manifest: &Manifest) -> Result<Box<dyn Sink>, StorageError> {
    open_sink_with(dir, manifest, SinkOptions::default())
}

/// The sink for `manifest` at `dir`: a single file whose name is one component is placed
/// as `dir/<name>` by a [`FileSink`] (a single-file push); anything else (several entries,
/// a directory, a symlink, a nested path) is a tree placed by a [`TreeSink`] with `dir`
/// itself as the tree's root (`--output /srv/app/releases/v42`).
pub fn open_sink_with(
    dir: &Path,
    manifest: &Manifest,
    opts: SinkOptions,
) -> Result<Box<dyn Sink>, StorageError> {
    match manifest.single_file_path() {
        Some(p) if p.is_single_component() => Ok(Box::new(FileSink::for_manifest(dir, manifest)?)),
        _ => Ok(Box::new(TreeSink::create(dir, manifest, opts.replace)?)),
    }
}
