//! The [`Source`] trait: where a push's payload byte stream comes from. A source knows its
//! length and its manifest entries (which names the payload's ranges belong to) and serves
//! positioned reads of the stream, so blocks can be read on demand by many worker threads. From
//! that, the provided methods build the [`Manifest`] (no read: the block hashes are computed as
//! the blocks are sent) and, for tests and tools, hash the blocks in one pass.
//!
//! Implementations: [`FileSource`](super::FileSource) (one regular file, one entry). A tree
//! source maps payload ranges onto several files (small ones packed back to back); an image
//! source maps them onto the allocated extents of a device.

use super::{check_range, StorageError, IO_CHUNK};
use crate::proto::layout::Layout;
use crate::proto::manifest::{Entry, Manifest};

/// Hashes computed by one read pass over a source, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceHashes {
    /// BLAKE3 of each block, in order; the last block may be short and is
    /// hashed unpadded. Empty for an empty payload.
    pub block_hashes: Vec<[u8; 32]>,
    /// BLAKE3 of the whole payload.
    pub object_hash: [u8; 32],
}

/// A payload byte stream to send: length, entries and positioned reads. `Send + Sync` with
/// `&self` methods, so one source can be shared by worker threads through an `Arc`.
pub trait Source: Send + Sync {
    /// Length of the payload in bytes, fixed for the source's lifetime.
    fn len(&self) -> u64;

    /// The manifest entries: the file entries tile `0..len()` in order (see
    /// [`check_entries`](crate::proto::manifest::check_entries)).
    fn entries(&self) -> &[Entry];

    /// Fill `buf` with payload bytes from `offset`. Fails with [`StorageError::OutOfRange`] if
    /// the range reaches past [`len`](Self::len), and with [`StorageError::SizeMismatch`] if the
    /// underlying data shrank since the source was opened.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError>;

    /// Why the source can no longer be sent, if it failed for good (a streamed image that ran
    /// past its bound): the sender stops with this error. Default: never.
    fn failed(&self) -> Option<StorageError> {
        None
    }

    /// Whether the payload is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `len` payload bytes at `offset` into a new `Vec` (range checked before
    /// allocating).
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        check_range(offset, len as u64, self.len())?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(offset, &mut buf)?;
        Ok(buf)
    }

    /// One sequential pass: BLAKE3 of each `block_bytes`-sized block (the last one short,
    /// unpadded) and of the whole payload. Memory is one reusable buffer of at most
    /// `min(block_bytes, 1 MiB)` bytes. `block_bytes` must be non-zero.
    fn hash_blocks(&self, block_bytes: u64) -> Result<SourceHashes, StorageError> {
        if block_bytes == 0 {
            return Err(StorageError::InvalidArgument("block size must be > 0"));
        }
        let len = self.len();
        let n_blocks = len.div_ceil(block_bytes);
        let chunk = block_bytes.min(IO_CHUNK).min(len.max(1));
        // `chunk` is at most 1 MiB, so it fits in usize.
        let mut buf = vec![0u8; chunk as usize];
        let mut block_hashes = Vec::with_capacity(usize::try_from(n_blocks).unwrap_or(0));
        let mut whole = blake3::Hasher::new();
        let mut block = blake3::Hasher::new();
        let mut offset = 0u64;
        while offset < len {
            let block_end = offset.saturating_add(block_bytes).min(len);
            block.reset();
            while offset < block_end {
                let n = (block_end - offset).min(chunk) as usize;
                let piece = &mut buf[..n];
                self.read_exact_at(offset, piece)?;
                block.update(piece);
                whole.update(piece);
                offset += n as u64;
            }
            block_hashes.push(*block.finalize().as_bytes());
        }
        Ok(SourceHashes { block_hashes, object_hash: *whole.finalize().as_bytes() })
    }

    /// The checked manifest of [`entries`](Self::entries) over the payload in blocks of
    /// `block_symbols` symbols of `symbol_size` bytes. Reads nothing.
    fn manifest(&self, symbol_size: u16, block_symbols: u16) -> Result<Manifest, StorageError> {
        Layout::new(self.len(), symbol_size, block_symbols)?;
        Ok(Manifest::new(self.entries().to_vec(), self.len(), symbol_size, block_symbols)?)
    }
}
