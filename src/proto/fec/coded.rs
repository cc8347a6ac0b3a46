//! The receiver's check of what a data datagram says about its block's FEC block in a
//! compressed session (`proto::compress`): [`block_coding`] decides the `K` a collector for it
//! is sized by, and [`BlockSymbols::for_coding`] makes that collector.

use super::{BlockSymbols, FecError};
use crate::proto::compress::BlockCodec;
use crate::proto::wire::ObjectId;

/// The source symbols and codec a symbol of `object`'s block belongs to, or `None` when it
/// does not fit the session (dropped, counted as invalid). `layout_k` is the block's `K` from
/// the layout (`None` past the end); `coded` what a `CData` said (codec, `K_b`), `None` for
/// a plain `Data`. In a compressed session payload symbols must be `CData` whose `K_b` is
/// below `K` (equal for a raw block); the manifest and the hash list stay plain. In an
/// uncompressed session every symbol is plain.
pub fn block_coding(
    compressed: bool,
    object: ObjectId,
    layout_k: Option<u16>,
    coded: Option<(BlockCodec, u16)>,
) -> Option<(u16, Option<BlockCodec>)> {
    let k = layout_k?;
    let payload = object == ObjectId::Payload;
    match coded {
        None if compressed && payload => None,
        None => Some((k, None)),
        Some(_) if !compressed || !payload => None,
        Some((BlockCodec::Raw, kb)) => (kb == k).then_some((k, Some(BlockCodec::Raw))),
        Some((codec, kb)) => (kb >= 1 && kb < k).then_some((kb, Some(codec))),
    }
}

impl BlockSymbols {
    /// A collector for `k` symbols of `t` bytes, coded as [`block_coding`] said.
    pub fn for_coding(t: u16, k: u16, codec: Option<BlockCodec>) -> Result<Self, FecError> {
        BlockSymbols::build(t, k, codec, false)
    }

    /// [`Self::for_coding`], or, with `count_only`, a collector that keeps only which symbols
    /// arrive, not their bytes: counts, targets and duplicates behave as before, but the block
    /// cannot be decoded ([`Self::decode`] gives the symbols back as not ready, and a
    /// systematic block has no bytes). For the simulator's ideal FEC model, which takes a
    /// block's bytes from the object it knows; it never allocates the block's bytes.
    pub fn for_coding_counting(
        t: u16,
        k: u16,
        codec: Option<BlockCodec>,
        count_only: bool,
    ) -> Result<Self, FecError> {
        BlockSymbols::build(t, k, codec, count_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BlockCodec::{Lz4, Raw, Zstd};
    use ObjectId::{Hashes, Manifest, Payload};

    #[test]
    fn what_fits_a_session() {
        // Uncompressed: plain symbols only.
        assert_eq!(block_coding(false, Payload, Some(10), None), Some((10, None)));
        assert_eq!(block_coding(false, Payload, Some(10), Some((Zstd, 3))), None);
        assert_eq!(block_coding(false, Payload, None, None), None);
        // Compressed: payload as CData, the rest plain.
        assert_eq!(block_coding(true, Payload, Some(10), None), None);
        assert_eq!(block_coding(true, Manifest, Some(10), None), Some((10, None)));
        assert_eq!(block_coding(true, Hashes, Some(4), None), Some((4, None)));
        assert_eq!(block_coding(true, Manifest, Some(10), Some((Zstd, 3))), None);
        // K_b: 1..K for a compressed block (K - 1 passes, K fails), exactly K for a raw one.
        assert_eq!(block_coding(true, Payload, Some(10), Some((Zstd, 1))), Some((1, Some(Zstd))));
        assert_eq!(block_coding(true, Payload, Some(10), Some((Lz4, 9))), Some((9, Some(Lz4))));
        assert_eq!(block_coding(true, Payload, Some(10), Some((Lz4, 10))), None);
        assert_eq!(block_coding(true, Payload, Some(10), Some((Zstd, 0))), None);
        assert_eq!(block_coding(true, Payload, Some(10), Some((Raw, 10))), Some((10, Some(Raw))));
        assert_eq!(block_coding(true, Payload, Some(10), Some((Raw, 9))), None);
        assert_eq!(block_coding(true, Payload, None, Some((Raw, 10))), None);
    }

    #[test]
    fn conflicts_restart_a_block_once_they_are_as_many_as_its_symbols() {
        let mut s = BlockSymbols::for_coding(16, 4, Some(Zstd)).unwrap();
        assert!(s.is_coded_as(4, Some(Zstd)) && !s.is_coded_as(3, Some(Zstd)));
        assert!(!s.is_coded_as(4, Some(Lz4)) && !s.is_coded_as(4, None));
        s.insert(0, &[1; 16]).unwrap();
        s.insert(1, &[2; 16]).unwrap();
        assert!(!s.conflict(), "1 conflict against 2 symbols");
        assert!(s.conflict(), "2 against 2");
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use crate::proto::compress::Codec;
    use crate::proto::fec::BlockEncoder;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any block, compressed to whatever `K_b` it takes, sent with a random share of its
        /// source symbols lost and as many repairs as the receiver still needs (plus a few),
        /// decodes and decompresses to the exact block at the receiver, which sized its
        /// collector from the datagram's `K_b` alone.
        #[test]
        fn compressed_blocks_decode_at_their_own_k(
            t in 16u16..400, k in 2u16..120, text_share in 0u32..=100, loss in 0u32..60,
            seed: u64, lz4: bool,
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let len = usize::from(t) * usize::from(k) - rng.gen_range(0..usize::from(t));
            let data: Vec<u8> = (0..len)
                .map(|i| if (i * 100 / len) < text_share as usize { b"abcab "[i % 6] } else { rng.gen() })
                .collect();
            let codec = if lz4 { Codec::Lz4 } else { Codec::Zstd { level: 1 } };
            let enc = BlockEncoder::compressed(t, k, data.clone(), codec).unwrap();
            let kb = enc.source_symbols();
            let travels = enc.codec().unwrap();
            // What the receiver accepts from the datagram.
            let (rk, rcodec) = block_coding(true, ObjectId::Payload, Some(k), Some((travels, kb)))
                .expect("a genuine coding fits");
            prop_assert_eq!(rk, kb);
            let mut rx = BlockSymbols::for_coding(t, rk, rcodec).unwrap();
            for esi in 0..u32::from(kb) {
                if rng.gen_range(0..100) >= loss {
                    rx.insert(esi, enc.source_symbol(esi).unwrap()).unwrap();
                }
            }
            let mut out = Vec::new();
            let mut esi = u32::from(kb);
            while !rx.ready() {
                enc.repair_symbol(esi, &mut out).unwrap();
                rx.insert(esi, &out).unwrap();
                esi += 1;
            }
            let mut result = rx.decode_payload(len);
            // RaptorQ's rare failure with exactly K_b symbols: two more and it decodes.
            while let Err(mut back) = result {
                for _ in 0..2 {
                    enc.repair_symbol(esi, &mut out).unwrap();
                    back.insert(esi, &out).unwrap();
                    esi += 1;
                }
                result = back.decode_payload(len);
            }
            prop_assert_eq!(result.unwrap(), Some(data));
        }
    }
}
