//! The manifest (object 0): what the payload byte stream is made of ([`Entry`]s mapping payload
//! ranges to named files, directories and symlinks, with modes and mtimes) and how it is laid
//! out in blocks. It holds
//! no hash of the payload, so it is known from a stat of the source and goes out first; the
//! block hashes travel in the hash list (object 2, [`HashList`]) after the payload. Serialized
//! with postcard; the receiver accepts it only when its BLAKE3 matches the announcement, its
//! fields agree with the announced layout and its entries pass [`check_entries`] (names through
//! [`RelPath`]).
//!
//! - [`name`]: [`RelPath`], the one check for names from the network.
//! - [`entry`]: [`Entry`], [`EntryKind`] and the checks of an entry list.
//! - [`image`]: [`Image`], a disk image's size and data extents, and their checks.
//! - [`hashes`]: [`HashList`], every block's BLAKE3 and the object hash derived from them.

pub mod entry;
pub mod hashes;
pub mod image;
pub mod name;

pub use entry::{
    check_entries, Entry, EntryError, EntryKind, Mtime, MAX_ENTRIES, MAX_MTIME_SECS, MODE_MASK,
};
pub use hashes::HashList;
pub use image::{
    read_trailer, Extent, ExtentMap, Image, ImageError, TrailerPart, MAX_EXTENTS,
    STREAM_TRAILER_LEN,
};
pub use name::{NameError, RelPath, MAX_COMPONENT_LEN, MAX_PATH_LEN};

use crate::proto::compress::BlockCodec;
use crate::proto::layout::Layout;
use crate::proto::wire::{hash_list_len, Announce, MAX_HASH_LIST_LEN};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    /// The bytes do not match the announced hash.
    #[error("manifest hash does not match the announcement")]
    Hash,
    /// The bytes do not deserialize.
    #[error("manifest does not parse: {0}")]
    Parse(String),
    /// Fields disagree with the announcement or with each other.
    #[error("manifest inconsistent: {0}")]
    Inconsistent(&'static str),
    /// A path is unsafe.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The entries do not fit the payload or each other.
    #[error("manifest entries: {0}")]
    Entries(EntryError),
    /// A disk image larger than the receiver takes (`--max-size`).
    #[error("an image of {size} bytes is larger than --max-size {max}")]
    TooLarge {
        /// The image's size.
        size: u64,
        /// The receiver's limit.
        max: u64,
    },
}

impl From<EntryError> for ManifestError {
    fn from(e: EntryError) -> Self {
        match e {
            EntryError::Name(n) => ManifestError::Name(n),
            other => ManifestError::Entries(other),
        }
    }
}

/// Description of one payload object.
///
/// The fields are public for reading; build one with [`Manifest::new`] or
/// [`Manifest::single_file`] (checked), or check a hand-built one with [`Manifest::check`].
/// [`Manifest::decode`] checks everything it returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// What the payload is made of; the file entries tile it in order.
    pub entries: Vec<Entry>,
    /// Payload size in bytes.
    pub object_size: u64,
    /// Symbol size `T`.
    pub symbol_size: u16,
    /// Symbols per full block `K`.
    pub block_symbols: u16,
    /// A compressed session's codec (`mcast-send --compress`; never [`BlockCodec::Raw`]),
    /// `None` uncompressed. Part of what the announcement's manifest hash (and so a
    /// signature, or keyed mode's tags) covers: receivers take no `CData` of another codec.
    pub compression: Option<BlockCodec>,
}

/// The wire form of [`Manifest`]: same fields in the same order, paths not yet checked.
#[derive(Deserialize)]
struct RawManifest {
    entries: Vec<RawEntry>,
    object_size: u64,
    symbol_size: u16,
    block_symbols: u16,
    compression: Option<BlockCodec>,
}

/// The wire form of [`Entry`].
#[derive(Deserialize)]
struct RawEntry {
    path: String,
    kind: EntryKind,
    mtime: Option<Mtime>,
}

impl Manifest {
    /// A manifest of `entries` over a payload laid out in blocks of `block_symbols` symbols of
    /// `symbol_size` bytes, checked like [`decode`](Self::decode) checks one from the network.
    pub fn new(
        entries: Vec<Entry>,
        object_size: u64,
        symbol_size: u16,
        block_symbols: u16,
    ) -> Result<Self, ManifestError> {
        let m = Manifest { entries, object_size, symbol_size, block_symbols, compression: None };
        m.check()?;
        Ok(m)
    }

    /// The same manifest for a session compressed with `codec` (`None`: uncompressed).
    pub fn with_compression(self, codec: Option<BlockCodec>) -> Result<Self, ManifestError> {
        let m = Manifest { compression: codec, ..self };
        m.check()?;
        Ok(m)
    }

    /// The manifest of a single-file push: one file entry `path` covering the whole payload of
    /// `object_size` bytes, with the receiver's default mode.
    pub fn single_file(
        path: RelPath,
        object_size: u64,
        symbol_size: u16,
        block_symbols: u16,
    ) -> Result<Self, ManifestError> {
        let entries = vec![Entry::file(path, 0, object_size)];
        Manifest::new(entries, object_size, symbol_size, block_symbols)
    }

    /// The path of a single-file push: `Some` when the manifest is exactly one file entry
    /// covering the whole payload.
    pub fn single_file_path(&self) -> Option<&RelPath> {
        match self.entries.as_slice() {
            [Entry { path, kind: EntryKind::File { offset: 0, len, .. }, .. }]
                if *len == self.object_size =>
            {
                Some(path)
            }
            _ => None,
        }
    }

    /// A short description for logs: the path of a single-file push, else the entry count.
    pub fn summary(&self) -> String {
        match self.single_file_path() {
            Some(p) => p.to_string(),
            None => format!("{} entries", self.entries.len()),
        }
    }

    /// Serialized bytes (object 0's content).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("serializing to a Vec cannot fail")
    }

    /// Layout of the payload, checked to have no more blocks than a hash list can cover
    /// ([`MAX_HASH_LIST_LEN`]).
    pub fn layout(&self) -> Result<Layout, ManifestError> {
        let layout = Layout::new(self.object_size, self.symbol_size, self.block_symbols)
            .map_err(|_| ManifestError::Inconsistent("layout"))?;
        if hash_list_len(&layout) > u64::from(MAX_HASH_LIST_LEN) {
            return Err(ManifestError::Inconsistent("too many blocks"));
        }
        Ok(layout)
    }

    /// Check that the layout and the entries are consistent (see [`check_entries`]).
    pub fn check(&self) -> Result<(), ManifestError> {
        self.layout()?;
        check_entries(&self.entries, self.object_size)?;
        if self.compression == Some(BlockCodec::Raw) {
            return Err(ManifestError::Inconsistent("raw is not a session codec"));
        }
        Ok(())
    }

    /// Verify `bytes` against `announce` and parse and check them.
    pub fn decode(bytes: &[u8], announce: &Announce) -> Result<Manifest, ManifestError> {
        if bytes.len() != announce.manifest_len as usize
            || *blake3::hash(bytes).as_bytes() != announce.manifest_hash
        {
            return Err(ManifestError::Hash);
        }
        // The entry count leads the bytes: refuse an absurd one before decoding allocates by
        // it (every entry takes at least a byte, and there are at most MAX_ENTRIES); see
        // `declared_entry_counts` in the tests.
        let (declared, rest) = postcard::take_from_bytes::<u64>(bytes)
            .map_err(|e| ManifestError::Parse(e.to_string()))?;
        if declared > (MAX_ENTRIES as u64).min(rest.len() as u64) {
            let why = format!("{declared} entries declared in {} bytes", rest.len());
            return Err(ManifestError::Parse(why));
        }
        let raw: RawManifest =
            postcard::from_bytes(bytes).map_err(|e| ManifestError::Parse(e.to_string()))?;
        if raw.object_size != announce.object_size
            || raw.symbol_size != announce.symbol_size
            || raw.block_symbols != announce.block_symbols
        {
            return Err(ManifestError::Inconsistent("differs from announcement"));
        }
        if raw.entries.len() > MAX_ENTRIES {
            return Err(EntryError::TooMany(raw.entries.len()).into());
        }
        let entries = raw
            .entries
            .into_iter()
            .map(|e| Ok(Entry { path: RelPath::new(e.path)?, kind: e.kind, mtime: e.mtime }))
            .collect::<Result<Vec<_>, NameError>>()?;
        Manifest::new(entries, raw.object_size, raw.symbol_size, raw.block_symbols)?
            .with_compression(raw.compression)
    }

    /// Check the manifest against its session's [`FLAG_COMPRESSED`](crate::proto::wire)
    /// (`flagged`): a compressed session's manifest names its codec, an uncompressed one's
    /// none.
    pub fn check_flag(self, flagged: bool) -> Result<Self, ManifestError> {
        match (self.compression.is_some(), flagged) {
            (true, false) => Err(ManifestError::Inconsistent("a codec in an uncompressed session")),
            (false, true) => Err(ManifestError::Inconsistent("no codec in a compressed session")),
            _ => Ok(self),
        }
    }
}

#[cfg(test)]
mod tests;
