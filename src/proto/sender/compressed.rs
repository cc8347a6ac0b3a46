//! The sender's side of a compressed session (`mcast-send --compress`, `proto::compress`):
//! the session flag, the codec its block requests carry, each block's `K_b` as first prepared
//! (what the cursor, proactive parity and NAK checks count with), and the byte counters.

use super::*;
use crate::proto::compress::{BlockCodec, Codec};
use crate::proto::wire::FLAG_COMPRESSED;

/// A compressed session's state.
#[derive(Debug)]
pub(super) struct Compression {
    codec: Codec,
    /// `K_b` of each payload block as first prepared; 0 until then.
    block_symbols: Vec<u16>,
}

impl Sender {
    /// Compress every payload block with `codec` (the session becomes a compressed one: its
    /// datagrams carry [`FLAG_COMPRESSED`] and its payload symbols travel as `CData`). Call it
    /// once, right after the constructor and before the first `poll_*`: it also rewrites the
    /// read-ahead requests the constructor queued. The manifest must name the same codec
    /// ([`Manifest::with_compression`]), so that what the announcement authenticates says
    /// how the blocks travel; else [`SenderError::Compression`].
    pub fn set_compression(&mut self, codec: Codec) -> Result<(), SenderError> {
        if self.manifest_codec != Some(codec.block_codec()) {
            return Err(SenderError::Compression(codec));
        }
        let blocks = self.layout().block_count() as usize;
        self.compression = Some(Compression { codec, block_symbols: vec![0; blocks] });
        self.header.flags |= FLAG_COMPRESSED;
        for ev in &mut self.events {
            if let Event::NeedBlock(req) = ev {
                req.codec = Some(codec);
            }
        }
        Ok(())
    }

    /// The codec of a compressed session.
    pub fn compression(&self) -> Option<Codec> {
        self.compression.as_ref().map(|c| c.codec)
    }

    /// Source symbols of `block` of `object` whose layout says `k`: its `K_b` once a payload
    /// block of a compressed session has been prepared, else `k`.
    pub(super) fn block_k(&self, object: ObjectId, block: u32, k: u16) -> u16 {
        match (&self.compression, object) {
            (Some(c), ObjectId::Payload) => match c.block_symbols.get(block as usize) {
                Some(&kb) if kb > 0 => kb,
                _ => k,
            },
            _ => k,
        }
    }

    /// Whether `enc` can be `block` of this session: `K` symbols uncompressed; in a
    /// compressed session a coded block of `K_b <= K` (exactly `K` when raw).
    pub(super) fn fits_layout(&self, block: u32, enc: &BlockEncoder) -> bool {
        let Some(k) = self.layout().source_symbols(block) else { return false };
        let kb = enc.source_symbols();
        match (self.compression.is_some(), enc.codec()) {
            (false, None) => kb == k,
            (true, Some(BlockCodec::Raw)) => kb == k,
            (true, Some(_)) => kb >= 1 && kb < k,
            _ => false,
        }
    }

    /// Whether `enc` is coded as `block` was when first prepared (compression is
    /// deterministic: another `K_b` means other bytes, like another hash).
    pub(super) fn same_coding(&self, block: u32, enc: &BlockEncoder) -> bool {
        match &self.compression {
            Some(c) => c.block_symbols.get(block as usize) == Some(&enc.source_symbols()),
            None => true,
        }
    }

    /// Record a block prepared for the first time: its `K_b` (repairs start right above it)
    /// and the byte counters.
    pub(super) fn first_prepared(&mut self, block: u32, enc: &BlockEncoder) {
        let len = self.layout().block_len(block).unwrap_or(0) as u64;
        self.stats.payload_bytes += len;
        self.stats.wire_payload_bytes += enc.coded_len() as u64;
        let Some(c) = &mut self.compression else { return };
        let kb = enc.source_symbols();
        if let Some(slot) = c.block_symbols.get_mut(block as usize) {
            *slot = kb;
        }
        let k = self.layouts[ObjectId::Payload].source_symbols(block).unwrap_or(0);
        if let Some(next) = self.next_repair_esi[ObjectId::Payload].get_mut(block as usize) {
            if *next == u32::from(k) {
                *next = u32::from(kb);
            }
        }
    }

    /// The datagram of symbol `data`, from `enc`: a `CData` for a compressed session's block.
    pub(super) fn data_packet<'a>(enc: &BlockEncoder, data: Data<'a>) -> Packet<'a> {
        match enc.codec() {
            Some(codec) => Packet::CData(CData { data, codec, kb: enc.source_symbols() }),
            None => Packet::Data(data),
        }
    }
}
