//! The Have packet (type 14, receiver → sender, unicast like reports): which payload blocks a
//! receiver already holds before the payload is sent (built from the previous version at its
//! destination, or from a resumed staging file), so that a `--changed-only` sender can skip
//! the blocks every expected receiver holds.
//!
//! The held set is a bitmap cut in chunks of [`HAVE_CHUNK_BLOCKS`] blocks, one chunk a
//! datagram, so a report never needs more than one MTU per 8192 blocks (8 GiB of payload at
//! 1 MiB blocks) and the sender can tell when a node's report is whole:
//!
//! ```text
//! blocks u32 | base u32 | len u16 | bits [len]
//! ```
//!
//! `blocks` is the payload's block count as the receiver sees it (the sender drops a Have for
//! another layout), `base` the chunk's first block (a multiple of [`HAVE_CHUNK_BLOCKS`], below
//! `blocks`), `len` exactly the bytes the chunk needs (`min(HAVE_CHUNK_BYTES,
//! ceil((blocks - base) / 8))`), and bit `i` (most significant bit first) says block
//! `base + i` is held. Bits past `blocks` must be zero. Every field is checked, so a parsed
//! Have has exactly one encoding.

use super::cursor::{Reader, Writer};
use super::WireError;

/// Bitmap bytes of one full chunk.
pub const HAVE_CHUNK_BYTES: usize = 1024;
/// Blocks one Have covers at most.
pub const HAVE_CHUNK_BLOCKS: u32 = HAVE_CHUNK_BYTES as u32 * 8;

/// One chunk of a receiver's held-block bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Have {
    /// Payload block count of the layout the receiver holds blocks of.
    pub blocks: u32,
    /// First block of the chunk (a multiple of [`HAVE_CHUNK_BLOCKS`]).
    pub base: u32,
    /// The bitmap, most significant bit first: bit `i` is block `base + i`.
    pub bits: Vec<u8>,
}

impl Have {
    /// Bitmap bytes the chunk at `base` of a `blocks`-block payload has (0 if out of range).
    pub fn chunk_len(blocks: u32, base: u32) -> usize {
        if base >= blocks {
            return 0;
        }
        (((blocks - base) as usize).div_ceil(8)).min(HAVE_CHUNK_BYTES)
    }

    /// The chunks covering a `blocks`-block payload where `held(b)` says block `b` is held.
    pub fn chunks(blocks: u32, held: impl Fn(u32) -> bool) -> Vec<Have> {
        (0..blocks)
            .step_by(HAVE_CHUNK_BLOCKS as usize)
            .map(|base| {
                let mut bits = vec![0u8; Have::chunk_len(blocks, base)];
                let end = blocks.min(base.saturating_add(HAVE_CHUNK_BLOCKS));
                for b in base..end {
                    if held(b) {
                        let i = (b - base) as usize;
                        bits[i / 8] |= 0x80 >> (i % 8);
                    }
                }
                Have { blocks, base, bits }
            })
            .collect()
    }

    /// Whether this chunk says block `b` is held (false outside the chunk).
    pub fn holds(&self, b: u32) -> bool {
        let Some(i) = b.checked_sub(self.base).map(|i| i as usize) else { return false };
        b < self.blocks && self.bits.get(i / 8).is_some_and(|byte| byte & (0x80 >> (i % 8)) != 0)
    }

    /// The blocks this chunk covers.
    pub fn span(&self) -> std::ops::Range<u32> {
        self.base..self.blocks.min(self.base.saturating_add(HAVE_CHUNK_BLOCKS))
    }
}

/// Parse a Have body (the caller's `finish` checks nothing is left).
pub(super) fn parse_have(r: &mut Reader<'_>) -> Result<Have, WireError> {
    let blocks = r.u32()?;
    let base = r.u32()?;
    let len = usize::from(r.u16()?);
    if base >= blocks || base % HAVE_CHUNK_BLOCKS != 0 {
        return Err(WireError::BadField("have base"));
    }
    if len != Have::chunk_len(blocks, base) {
        return Err(WireError::BadField("have length"));
    }
    let bits = r.bytes(len)?;
    let used = (blocks - base).min(HAVE_CHUNK_BLOCKS) as usize;
    if used % 8 != 0 && bits[len - 1] & (0xff >> (used % 8)) != 0 {
        return Err(WireError::BadField("have padding"));
    }
    Ok(Have { blocks, base, bits: bits.to_vec() })
}

/// Emit a Have body.
pub(super) fn emit_have(h: &Have, buf: &mut Vec<u8>) {
    buf.put_u32(h.blocks);
    buf.put_u32(h.base);
    buf.put_u16(h.bits.len() as u16);
    buf.extend_from_slice(&h.bits);
}

#[cfg(test)]
mod tests {
    use super::super::{emit, parse, Header, Packet, WireError, HEADER_LEN, TRAILER_LEN};
    use super::*;

    fn reseal(mut d: Vec<u8>) -> Vec<u8> {
        let crc = crc32fast::hash(&d);
        d.extend_from_slice(&crc.to_be_bytes());
        d
    }

    fn body(blocks: u32, base: u32, bits: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        emit(
            &Header { flags: 0, session: 9, node: 4 },
            &Packet::Flush(super::super::Flush { seq: 0 }),
            &mut d,
        );
        d.truncate(HEADER_LEN);
        d[5] = 14;
        d.put_u32(blocks);
        d.put_u32(base);
        d.put_u16(bits.len() as u16);
        d.extend_from_slice(bits);
        reseal(d)
    }

    #[test]
    fn round_trips_with_type_14_and_chunks_cover_every_block_once() {
        let held = |b: u32| b % 3 == 0 || b == 8192 + 17;
        let chunks = Have::chunks(8192 + 20, held);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].bits.len(), HAVE_CHUNK_BYTES);
        assert_eq!((chunks[1].base, chunks[1].bits.len()), (8192, 3));
        let hdr = Header { flags: 0, session: 9, node: 4 };
        for c in &chunks {
            let mut buf = Vec::new();
            emit(&hdr, &Packet::Have(c.clone()), &mut buf);
            assert_eq!(buf[5], 14, "type code");
            assert_eq!(buf.len(), HEADER_LEN + 10 + c.bits.len() + TRAILER_LEN);
            assert_eq!(parse(&buf), Ok((hdr, Packet::Have(c.clone()))));
        }
        for b in 0..8192 + 20 {
            let c = &chunks[(b / HAVE_CHUNK_BLOCKS) as usize];
            assert_eq!(c.holds(b), held(b), "block {b}");
        }
        assert!(!chunks[1].holds(8192 + 20) && !chunks[1].holds(3), "outside its span");
        assert_eq!(chunks[1].span(), 8192..8212);
        assert!(Have::chunks(0, |_| true).is_empty());
    }

    #[test]
    fn lengths_bases_and_padding_are_checked_at_their_limits() {
        // 12 blocks: two bytes, the last four bits padding.
        assert!(parse(&body(12, 0, &[0xff, 0xf0])).is_ok());
        assert_eq!(parse(&body(12, 0, &[0xff, 0xf8])), Err(WireError::BadField("have padding")));
        assert_eq!(parse(&body(12, 0, &[0xff])), Err(WireError::BadField("have length")));
        assert_eq!(parse(&body(12, 0, &[0xff, 0, 0])), Err(WireError::BadField("have length")));
        // 16 blocks: no padding bits at all.
        assert!(parse(&body(16, 0, &[0xff, 0xff])).is_ok());
        // Bases: a multiple of the chunk, below the block count.
        assert!(parse(&body(8193, 8192, &[0x80])).is_ok());
        assert_eq!(parse(&body(8192, 8192, &[])), Err(WireError::BadField("have base")));
        assert_eq!(parse(&body(9000, 8, &[0; 1024])), Err(WireError::BadField("have base")));
        assert_eq!(parse(&body(0, 0, &[])), Err(WireError::BadField("have base")));
        // A full chunk is 1024 bytes, never more.
        assert!(parse(&body(u32::MAX, 0, &[0; HAVE_CHUNK_BYTES])).is_ok());
        let long = body(u32::MAX, 0, &[0; HAVE_CHUNK_BYTES + 1]);
        assert_eq!(parse(&long), Err(WireError::BadField("have length")));
        // Cut short anywhere: refused.
        let full = body(12, 0, &[0xff, 0xf0]);
        let end = full.len() - TRAILER_LEN;
        for cut in HEADER_LEN..end {
            assert!(parse(&reseal(full[..cut].to_vec())).is_err(), "cut at {cut}");
        }
        let mut trailing = full[..end].to_vec();
        trailing.push(0);
        assert_eq!(parse(&reseal(trailing)), Err(WireError::TrailingBytes(1)));
    }
}
