//! The object under test, as the sender holds it: its bytes, its manifest, its hash list, the
//! layouts of all three and every hash a receiver will be checked against. One [`Object`] is
//! shared (behind an `Arc`: the receivers of a window may run on several threads) by the
//! harness's block source, every receiver's sink and the ideal decoder. All knowledge of
//! [`Manifest`]'s fields lives in [`manifest_for`].

use crate::proto::layout::Layout;
use crate::proto::manifest::{HashList, Manifest, ManifestError, RelPath};
use crate::proto::sender::{Sender, SenderConfig, SenderError};
use crate::proto::time::Instant;

/// The manifest for `object` in blocks of `block_symbols` symbols of `symbol_size` bytes.
/// Panics on an impossible layout (see [`try_manifest_for`]).
pub fn manifest_for(object: &[u8], symbol_size: u16, block_symbols: u16) -> Manifest {
    try_manifest_for(object, symbol_size, block_symbols).expect("valid sim layout")
}

/// The manifest for `object`, or why its layout is impossible.
pub fn try_manifest_for(
    object: &[u8],
    symbol_size: u16,
    block_symbols: u16,
) -> Result<Manifest, ManifestError> {
    let name = RelPath::new("sim.bin").expect("a plain name");
    Manifest::single_file(name, object.len() as u64, symbol_size, block_symbols)
}

/// A payload and everything derived from it that a harness needs to serve and to check it.
#[derive(Debug, Clone)]
pub struct Object {
    bytes: Vec<u8>,
    hash_list: HashList,
    hash_list_bytes: Vec<u8>,
    hash_list_layout: Layout,
    layout: Layout,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    manifest_layout: Layout,
}

impl Object {
    /// `bytes` cut into blocks of `block_symbols` symbols of `symbol_size` bytes.
    pub fn new(
        bytes: Vec<u8>,
        symbol_size: u16,
        block_symbols: u16,
    ) -> Result<Self, ManifestError> {
        let manifest = try_manifest_for(&bytes, symbol_size, block_symbols)?;
        let layout = manifest.layout()?;
        let manifest_bytes = manifest.encode();
        // The sender lays its manifest out with the payload's T and K.
        let manifest_layout = Layout::new(manifest_bytes.len() as u64, symbol_size, block_symbols)
            .map_err(|_| ManifestError::Inconsistent("manifest layout"))?;
        let hash_list = HashList::of_bytes(&bytes, layout);
        let hash_list_bytes = hash_list.encode();
        let hash_list_layout =
            Layout::new(hash_list_bytes.len() as u64, symbol_size, block_symbols)
                .map_err(|_| ManifestError::Inconsistent("hash list layout"))?;
        Ok(Object {
            bytes,
            hash_list,
            hash_list_bytes,
            hash_list_layout,
            layout,
            manifest,
            manifest_bytes,
            manifest_layout,
        })
    }

    /// The same object as a compressed session's (`codec`; `None` uncompressed): its manifest
    /// names the codec, so a sender of it takes [`Sender::set_compression`] with that codec.
    pub fn with_compression(
        mut self,
        codec: Option<crate::proto::compress::BlockCodec>,
    ) -> Result<Self, ManifestError> {
        self.manifest = self.manifest.with_compression(codec)?;
        self.manifest_bytes = self.manifest.encode();
        let (t, k) = (self.layout.symbol_size(), self.layout.block_symbols());
        self.manifest_layout = Layout::new(self.manifest_bytes.len() as u64, t, k)
            .map_err(|_| ManifestError::Inconsistent("manifest layout"))?;
        Ok(self)
    }

    /// A sender for this object.
    pub fn sender(&self, cfg: SenderConfig, now: Instant) -> Result<Sender, SenderError> {
        Sender::new(cfg, &self.manifest, now)
    }

    /// The payload bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The object hash a receiver reports: BLAKE3 of the hash list.
    pub fn hash(&self) -> [u8; 32] {
        self.hash_list.root()
    }

    /// Every block's BLAKE3.
    pub fn hash_list(&self) -> &HashList {
        &self.hash_list
    }

    /// The hash list's serialized bytes (object 2's content) and their layout.
    pub fn hash_list_bytes(&self) -> (&[u8], &Layout) {
        (&self.hash_list_bytes, &self.hash_list_layout)
    }

    /// Payload layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The manifest describing the payload.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest's serialized bytes (object 0's content) and their layout.
    pub fn manifest_bytes(&self) -> (&[u8], &Layout) {
        (&self.manifest_bytes, &self.manifest_layout)
    }

    /// Payload block `b`'s bytes, if it exists.
    pub fn block(&self, b: u32) -> Option<&[u8]> {
        block_of(&self.bytes, &self.layout, b)
    }

    /// BLAKE3 of payload block `b`, if it exists.
    pub fn block_hash(&self, b: u32) -> Option<[u8; 32]> {
        self.hash_list.get(b).copied()
    }
}

/// Block `b` of `bytes` under `layout`, if it exists and the bytes cover it.
pub(crate) fn block_of<'a>(bytes: &'a [u8], layout: &Layout, b: u32) -> Option<&'a [u8]> {
    let off = usize::try_from(layout.block_offset(b)?).ok()?;
    bytes.get(off..off.checked_add(layout.block_len(b)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_hashes_agree_with_the_manifest() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let o = Object::new(bytes.clone(), 16, 10).unwrap();
        assert_eq!(o.layout().block_count(), 7); // 160-byte blocks, the last one 40 bytes
        assert_eq!(o.block(6), Some(&bytes[960..]));
        assert_eq!(o.block(7), None);
        for (b, chunk) in bytes.chunks(160).enumerate() {
            assert_eq!(o.block_hash(b as u32), Some(*blake3::hash(chunk).as_bytes()));
        }
        assert_eq!(o.block_hash(7), None);
        let (list, list_layout) = o.hash_list_bytes();
        assert_eq!(list.len(), 7 * 32);
        assert_eq!(list_layout.object_size(), 7 * 32);
        assert_eq!(&list[6 * 32..], blake3::hash(&bytes[960..]).as_bytes());
        assert_eq!(o.hash(), *blake3::hash(list).as_bytes(), "the object hash is the list's");
        let (m, layout) = o.manifest_bytes();
        assert_eq!(m, &o.manifest().encode()[..]);
        assert_eq!(layout.object_size(), m.len() as u64);
        assert!(Object::new(bytes, 1, 10).is_err(), "symbol size below the minimum");
    }
}
