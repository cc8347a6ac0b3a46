//! Per-block compression (`mcast-send --compress zstd[:level]|lz4`): the codecs, and the pure
//! functions that turn one payload block into the bytes its FEC block carries and back.
//!
//! Each payload block (the layout's `K * T` bytes, the last one shorter) is compressed alone,
//! so a receiver decompresses any block without the others. What the FEC block carries is a
//! *frame*:
//!
//! ```text
//! frame  compressed length c: u32 big-endian | c bytes of the codec's output | zero padding
//! ```
//!
//! padded to `K_b = ceil((4 + c) / T)` symbols. A block whose frame would not save a symbol
//! travels raw (its own bytes, `K_b = K`, [`BlockCodec::Raw`]). Every data datagram of a
//! compressed session says its block's codec and `K_b` (packet type 17, `wire::CData`).
//!
//! Hostile input: [`decode_frame`] never allocates more than the block's uncompressed length,
//! which comes from the layout (not from the frame), and returns an error for anything that
//! does not decompress to exactly that length. zstd's window is limited to what such a block
//! can need. This module is pure computation: it is called by the sender's block-preparing
//! workers and the receiver's decode workers, never on a network loop.

use thiserror::Error;

/// Bytes of the frame's length prefix.
pub const FRAME_HEADER_LEN: usize = 4;
/// Default zstd level (zstd's own default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Highest zstd level accepted (levels above 19 need far more memory on both ends).
pub const MAX_ZSTD_LEVEL: i32 = 19;

/// A compression codec the sender applies to every payload block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// zstd at a level (1..=[`MAX_ZSTD_LEVEL`]).
    Zstd {
        /// Compression level.
        level: i32,
    },
    /// LZ4 block format (fast, for links of 10 Gbit/s and more).
    Lz4,
}

/// How one block travels, as its datagrams say (one byte on the wire). A compressed session's
/// manifest names its codec ([`Manifest::compression`](crate::proto::manifest::Manifest)),
/// postcard-encoded as the same number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum BlockCodec {
    /// The block's own bytes: `K_b = K`.
    Raw = 0,
    /// A zstd frame.
    Zstd = 1,
    /// An LZ4 frame.
    Lz4 = 2,
}

/// Why a `--compress` value or a received frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompressError {
    /// Not `zstd`, `zstd:LEVEL` or `lz4`.
    #[error("unknown compression {0:?}: expected zstd, zstd:LEVEL (1..={MAX_ZSTD_LEVEL}) or lz4")]
    Unknown(String),
    /// The frame's length prefix is larger than the frame.
    #[error("compressed length {len} exceeds the {room} bytes of its block")]
    Length {
        /// Claimed compressed length.
        len: usize,
        /// Bytes the frame has after its prefix.
        room: usize,
    },
    /// The codec refused the bytes.
    #[error("{0} data does not decompress")]
    Corrupt(&'static str),
    /// The bytes decompressed to another length than the block's.
    #[error("decompressed to {got} bytes, the block has {want}")]
    Size {
        /// Bytes produced.
        got: usize,
        /// The block's uncompressed length.
        want: usize,
    },
}

impl BlockCodec {
    /// The codec of wire byte `b`, `None` for an unknown one.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(BlockCodec::Raw),
            1 => Some(BlockCodec::Zstd),
            2 => Some(BlockCodec::Lz4),
            _ => None,
        }
    }

    /// Its name in logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            BlockCodec::Raw => "raw",
            BlockCodec::Zstd => "zstd",
            BlockCodec::Lz4 => "lz4",
        }
    }
}

impl Codec {
    /// Parse a `--compress` value: `zstd`, `zstd:LEVEL` or `lz4`.
    pub fn parse(s: &str) -> Result<Self, CompressError> {
        let unknown = || CompressError::Unknown(s.to_string());
        match s.split_once(':') {
            None if s == "zstd" => Ok(Codec::Zstd { level: DEFAULT_ZSTD_LEVEL }),
            None if s == "lz4" => Ok(Codec::Lz4),
            Some(("zstd", level)) => {
                let level: i32 = level.parse().map_err(|_| unknown())?;
                if !(1..=MAX_ZSTD_LEVEL).contains(&level) {
                    return Err(unknown());
                }
                Ok(Codec::Zstd { level })
            }
            _ => Err(unknown()),
        }
    }

    /// What its blocks' datagrams say.
    pub fn block_codec(self) -> BlockCodec {
        match self {
            Codec::Zstd { .. } => BlockCodec::Zstd,
            Codec::Lz4 => BlockCodec::Lz4,
        }
    }
}

impl std::fmt::Display for Codec {
    /// `zstd:3` or `lz4`, as `--compress` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Codec::Zstd { level } => write!(f, "zstd:{level}"),
            Codec::Lz4 => f.write_str("lz4"),
        }
    }
}

/// The bytes one block travels as: a frame (compressed) or the block itself (raw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// How it travels.
    pub codec: BlockCodec,
    /// The FEC block's bytes (unpadded): the frame, or the raw block.
    pub bytes: Vec<u8>,
    /// Source symbols of its FEC block (`K_b`).
    pub symbols: u16,
}

/// Compress one block of `data` (at most `k * t` bytes, `k` its layout's source symbols)
/// with `codec`: the frame and its `K_b`, or the raw bytes when the frame would not save a
/// symbol (or the codec fails, which zstd only does on allocation failure).
pub fn encode_block(codec: Codec, data: Vec<u8>, t: u16, k: u16) -> Encoded {
    let raw = |data| Encoded { codec: BlockCodec::Raw, bytes: data, symbols: k };
    let compressed = match codec {
        Codec::Zstd { level } => match zstd::bulk::compress(&data, level) {
            Ok(c) => c,
            Err(_) => return raw(data),
        },
        Codec::Lz4 => lz4_flex::block::compress(&data),
    };
    let Ok(len) = u32::try_from(compressed.len()) else { return raw(data) };
    let frame_len = FRAME_HEADER_LEN + compressed.len();
    let symbols = frame_len.div_ceil(usize::from(t.max(1)));
    if symbols >= usize::from(k) {
        return raw(data);
    }
    let mut bytes = Vec::with_capacity(frame_len);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&compressed);
    Encoded { codec: codec.block_codec(), bytes, symbols: symbols.max(1) as u16 }
}

/// Recover a block of `want` bytes (its uncompressed length, from the layout) from the
/// decoded FEC block `fec` (`K_b * T` bytes, padding included) that travelled as `codec`.
/// Never allocates more than `want` bytes for the output.
pub fn decode_frame(
    codec: BlockCodec,
    mut fec: Vec<u8>,
    want: usize,
) -> Result<Vec<u8>, CompressError> {
    if codec == BlockCodec::Raw {
        if fec.len() < want {
            return Err(CompressError::Size { got: fec.len(), want });
        }
        fec.truncate(want);
        return Ok(fec);
    }
    let room = fec.len().saturating_sub(FRAME_HEADER_LEN);
    let Some(prefix) = fec.first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(CompressError::Length { len: 0, room });
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    if len > room {
        return Err(CompressError::Length { len, room });
    }
    let src = &fec[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
    let mut out = vec![0u8; want];
    let got = match codec {
        BlockCodec::Zstd => zstd_into(src, &mut out)?,
        BlockCodec::Lz4 => lz4_flex::block::decompress_into(src, &mut out)
            .map_err(|_| CompressError::Corrupt("lz4"))?,
        BlockCodec::Raw => unreachable!("handled above"),
    };
    if got != want {
        return Err(CompressError::Size { got, want });
    }
    Ok(out)
}

/// zstd-decompress `src` into `out` (no larger output is possible), the window limited to
/// what a block of `out.len()` bytes can need.
fn zstd_into(src: &[u8], out: &mut [u8]) -> Result<usize, CompressError> {
    let corrupt = |_| CompressError::Corrupt("zstd");
    let mut d = zstd::bulk::Decompressor::new().map_err(corrupt)?;
    let window_log = (usize::BITS - out.len().max(1).leading_zeros()).clamp(10, 31);
    d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(window_log)).map_err(corrupt)?;
    d.decompress_to_buffer(src, out).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(n: usize) -> Vec<u8> {
        b"the quick brown fox jumps over the lazy dog; ".iter().copied().cycle().take(n).collect()
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn round_trip(codec: Codec, data: &[u8], t: u16, k: u16) -> Encoded {
        let e = encode_block(codec, data.to_vec(), t, k);
        let mut fec = e.bytes.clone();
        fec.resize(usize::from(e.symbols) * usize::from(t), 0);
        assert_eq!(decode_frame(e.codec, fec, data.len()).unwrap(), data);
        e
    }

    #[test]
    fn parses_what_the_flag_takes() {
        assert_eq!(Codec::parse("zstd"), Ok(Codec::Zstd { level: 3 }));
        assert_eq!(Codec::parse("zstd:1"), Ok(Codec::Zstd { level: 1 }));
        assert_eq!(Codec::parse("zstd:19"), Ok(Codec::Zstd { level: 19 }));
        assert!(Codec::parse("zstd:20").is_err());
        assert!(Codec::parse("zstd:0").is_err());
        assert!(Codec::parse("zstd:").is_err());
        assert_eq!(Codec::parse("lz4"), Ok(Codec::Lz4));
        assert!(Codec::parse("lz4:1").is_err());
        assert!(Codec::parse("gzip").is_err());
        assert_eq!(Codec::Zstd { level: 7 }.to_string(), "zstd:7");
        for b in 0..=255u8 {
            assert_eq!(BlockCodec::from_byte(b).map(|c| c as u8), (b <= 2).then_some(b));
        }
    }

    #[test]
    fn text_shrinks_and_noise_travels_raw() {
        for codec in [Codec::Zstd { level: 3 }, Codec::Lz4] {
            let e = round_trip(codec, &text(748 * 1400), 1400, 748);
            assert_eq!(e.codec, codec.block_codec());
            assert!(e.symbols < 20, "{codec}: {} symbols", e.symbols);
            let e = round_trip(codec, &noise(748 * 1400, 5), 1400, 748);
            assert_eq!((e.codec, e.symbols), (BlockCodec::Raw, 748), "{codec}");
        }
    }

    #[test]
    fn a_frame_must_save_a_symbol() {
        // 64 bytes of text compress, but into one 64-byte symbol at best: raw when K = 1, a
        // frame when K = 2 saves a symbol.
        let data = text(128);
        assert_eq!(encode_block(Codec::Lz4, data[..64].to_vec(), 64, 1).codec, BlockCodec::Raw);
        let e = round_trip(Codec::Lz4, &data, 64, 2);
        assert_eq!((e.codec, e.symbols), (BlockCodec::Lz4, 1));
    }

    #[test]
    fn hostile_frames_are_refused_without_large_output() {
        let data = text(10_000);
        for codec in [Codec::Zstd { level: 3 }, Codec::Lz4] {
            let e = encode_block(codec, data.clone(), 100, 100);
            let mut fec = e.bytes.clone();
            fec.resize(usize::from(e.symbols) * 100, 0);
            // The length at the limit of the frame passes the length check, one past it fails.
            let room = fec.len() - FRAME_HEADER_LEN;
            let mut over = fec.clone();
            over[..4].copy_from_slice(&(room as u32 + 1).to_be_bytes());
            assert_eq!(
                decode_frame(e.codec, over, data.len()),
                Err(CompressError::Length { len: room + 1, room })
            );
            // Shorter or longer than the block: refused, and never more than `want` written.
            assert!(decode_frame(e.codec, fec.clone(), data.len() - 1).is_err(), "{codec}");
            assert!(matches!(
                decode_frame(e.codec, fec.clone(), data.len() + 1),
                Err(CompressError::Size { .. }) | Err(CompressError::Corrupt(_))
            ));
            // Damaged bytes: an error or other bytes, never a panic.
            let mut bad = fec.clone();
            bad[6] ^= 0x55;
            if let Ok(out) = decode_frame(e.codec, bad, data.len()) {
                assert_ne!(out, data);
            }
            assert!(decode_frame(e.codec, vec![0; 3], 10).is_err());
        }
        // Raw: at least the block's length, cut to it.
        assert_eq!(decode_frame(BlockCodec::Raw, vec![1, 2, 3], 2), Ok(vec![1, 2]));
        assert!(decode_frame(BlockCodec::Raw, vec![1, 2, 3], 4).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn compress_then_decompress(
            text_len in 0usize..6000, noise_len in 0usize..3000, t in 16u16..600,
            seed: u64, lz4: bool,
        ) {
            let mut data = text(text_len);
            data.extend(noise(noise_len, seed));
            prop_assume!(!data.is_empty());
            let k = data.len().div_ceil(usize::from(t)) as u16;
            let codec = if lz4 { Codec::Lz4 } else { Codec::Zstd { level: 1 } };
            let e = round_trip(codec, &data, t, k);
            prop_assert!(e.symbols >= 1 && e.symbols <= k);
            prop_assert_eq!(e.codec == BlockCodec::Raw, e.symbols == k);
        }
    }
}
