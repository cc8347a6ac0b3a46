//! The hash list (object 2): the BLAKE3 of every payload block, in block order, 32 bytes each
//! with nothing around them. The sender builds it as its first pass hashes the blocks it
//! prepares; the announce carries its length and BLAKE3 once known. That BLAKE3 is the object
//! hash of a push (a Merkle-style root over the blocks): receivers derive it from what they
//! verified and report it, the sender checks it, and nobody re-reads the payload to get it.

use super::ManifestError;
use crate::proto::layout::Layout;
use crate::proto::wire::{hash_list_len, Announce, BLOCK_HASH_LEN};

/// Every block's BLAKE3, for one payload layout (which it keeps, to say where each block is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashList {
    layout: Layout,
    hashes: Vec<[u8; 32]>,
}

impl HashList {
    /// The list of `hashes` of the blocks of `layout`, block 0 first: `None` unless there is
    /// exactly one per block.
    pub fn new(layout: Layout, hashes: Vec<[u8; 32]>) -> Option<Self> {
        (hashes.len() as u64 == u64::from(layout.block_count()))
            .then_some(HashList { layout, hashes })
    }

    /// The list of a payload held in memory, cut as `layout` cuts it.
    pub fn of_bytes(bytes: &[u8], layout: Layout) -> Self {
        let hashes = (0..layout.block_count())
            .map(|b| {
                let off = layout.block_offset(b).unwrap_or(0) as usize;
                let len = layout.block_len(b).unwrap_or(0);
                *blake3::hash(bytes.get(off..off + len).unwrap_or(&[])).as_bytes()
            })
            .collect();
        HashList { layout, hashes }
    }

    /// The payload layout the list covers.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Read every block back with `read(offset, buf)` and compare it with its hash: the first
    /// block that differs, if any (the `--verify-readback` check of a sink). One buffer of one
    /// block is reused.
    pub fn first_mismatch<E>(
        &self,
        mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<Option<u32>, E> {
        let mut buf = Vec::new();
        for (b, want) in (0..self.layout.block_count()).zip(&self.hashes) {
            let (Some(off), Some(len)) = (self.layout.block_offset(b), self.layout.block_len(b))
            else {
                return Ok(Some(b));
            };
            buf.resize(len, 0);
            read(off, &mut buf)?;
            if blake3::hash(&buf).as_bytes() != want {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// Block `b`'s hash.
    pub fn get(&self, b: u32) -> Option<&[u8; 32]> {
        self.hashes.get(b as usize)
    }

    /// Every hash, block 0 first.
    pub fn as_slice(&self) -> &[[u8; 32]] {
        &self.hashes
    }

    /// Blocks covered.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether it covers no block (an empty payload).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Serialized bytes (object 2's content).
    pub fn encode(&self) -> Vec<u8> {
        self.hashes.concat()
    }

    /// BLAKE3 of the serialized list: the object hash of the push.
    pub fn root(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for b in &self.hashes {
            h.update(b);
        }
        *h.finalize().as_bytes()
    }

    /// Verify `bytes` against `announce` (which must carry the list's hash by now) and split
    /// them into hashes: exactly one per block of the announced layout.
    pub fn decode(bytes: &[u8], announce: &Announce) -> Result<HashList, ManifestError> {
        let Some(want) = announce.hashes_hash() else {
            return Err(ManifestError::Inconsistent("hash list not announced yet"));
        };
        let expected_len = hash_list_len(&announce.layout());
        if bytes.len() as u64 != expected_len || u64::from(announce.hashes_len) != expected_len {
            return Err(ManifestError::Inconsistent("hash list length"));
        }
        if *blake3::hash(bytes).as_bytes() != want {
            return Err(ManifestError::Hash);
        }
        let hashes = bytes
            .chunks_exact(BLOCK_HASH_LEN)
            .map(|c| c.try_into().expect("chunks of 32"))
            .collect();
        Ok(HashList { layout: announce.layout(), hashes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce(object_size: u64, list: &[u8]) -> Announce {
        Announce {
            object_size,
            symbol_size: 100,
            block_symbols: 10,
            manifest_len: 1,
            manifest_hash: [1; 32],
            hashes_len: list.len() as u32,
            hashes_hash: *blake3::hash(list).as_bytes(),
            rate_bps: 1,
            grtt_us: 1,
        }
    }

    #[test]
    fn round_trip_and_root() {
        let payload: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let layout = Layout::new(2500, 100, 10).unwrap();
        let list = HashList::of_bytes(&payload, layout);
        assert_eq!(list.len(), 3);
        assert_eq!(list.get(2), Some(blake3::hash(&payload[2000..]).as_bytes()));
        let bytes = list.encode();
        assert_eq!(bytes.len(), 96);
        assert_eq!(list.root(), *blake3::hash(&bytes).as_bytes());
        assert_eq!(HashList::decode(&bytes, &announce(2500, &bytes)), Ok(list));
        let empty_layout = Layout::new(0, 100, 10).unwrap();
        let empty = HashList::new(empty_layout, Vec::new()).unwrap();
        assert!(empty.is_empty());
        assert_eq!(HashList::decode(&[], &announce(0, &[])), Ok(empty));
        assert_eq!(HashList::new(layout, vec![[0; 32]; 2]), None, "one hash per block");
    }

    #[test]
    fn readback_finds_the_first_block_that_differs() {
        let layout = Layout::new(2500, 100, 10).unwrap();
        let mut payload: Vec<u8> = (0..2500u32).map(|i| (i % 7) as u8).collect();
        let list = HashList::of_bytes(&payload, layout);
        let read = |p: &[u8], off: u64, buf: &mut [u8]| -> Result<(), ()> {
            buf.copy_from_slice(&p[off as usize..off as usize + buf.len()]);
            Ok(())
        };
        assert_eq!(list.first_mismatch(|o, b| read(&payload, o, b)), Ok(None));
        payload[2499] ^= 1;
        payload[1500] ^= 1;
        assert_eq!(list.first_mismatch(|o, b| read(&payload, o, b)), Ok(Some(1)));
        assert_eq!(list.first_mismatch(|_, _| Err::<(), _>("io")), Err("io"));
    }

    #[test]
    fn wrong_hash_length_or_unannounced_lists_are_refused() {
        let layout = Layout::new(2500, 100, 10).unwrap();
        let bytes = HashList::of_bytes(&[7; 2500], layout).encode();
        let a = announce(2500, &bytes);
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert_eq!(HashList::decode(&flipped, &a), Err(ManifestError::Hash));
        // A list of the right hash but for another block count.
        let short = &bytes[..64];
        let err = Err(ManifestError::Inconsistent("hash list length"));
        assert_eq!(HashList::decode(short, &announce(2500, short)), err);
        let long = [bytes.as_slice(), &[0; 32]].concat();
        assert_eq!(HashList::decode(&long, &announce(2500, &long)), err);
        let unknown = Announce { hashes_len: 0, hashes_hash: [0; 32], ..a };
        assert_eq!(
            HashList::decode(&bytes, &unknown),
            Err(ManifestError::Inconsistent("hash list not announced yet"))
        );
    }
}
