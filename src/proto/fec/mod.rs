//! RaptorQ (RFC 6330) per block, behind checks. Each of our blocks is one raptorq source block
//! (SBN 0); block numbers and encoding symbol ids (ESIs) are ours. raptorq panics on symbols of
//! the wrong size and on block-number mismatches, so every length and id is validated here
//! before raptorq sees it.
//!
//! Sender side: [`BlockEncoder`] holds one block's source symbols and generates any repair ESI.
//! Its RaptorQ intermediate symbols (about 2 ms per 1 MiB block, and twice the block's memory)
//! are computed only for a block that needs repair: on the worker when the block is prepared
//! with repair expected ([`BlockEncoder::new`]), or on the first repair symbol asked of a
//! block prepared without ([`BlockEncoder::systematic`], a push without loss never pays it).
//! Receiver side: [`BlockSymbols`] collects the symbols of one block; [`BlockSymbols::decode`]
//! copies when every source symbol arrived (systematic path), solves for the few lost source
//! symbols when a handful are missing (module `fast`, cost in proportion to the loss), and runs the
//! RaptorQ decoder otherwise. Both constructors are pure CPU work that a driver may run on a
//! worker thread.
//!
//! Compressed sessions (`proto::compress`): a block travels as a FEC block of its own `K_b`
//! source symbols ([`BlockEncoder::compressed`], [`BlockSymbols::new_coded`]); the receiver
//! fixes `K_b` and the codec from the first datagram of a block, counts datagrams that
//! disagree ([`BlockSymbols::conflict`]: once they are as many as the symbols held, the block
//! starts over with theirs), and [`BlockSymbols::decode_payload`] decompresses what it decoded.

mod bits;
mod coded;
mod coeffs;
mod fast;
mod gf256;
#[cfg(test)]
mod tests;

use crate::proto::compress::{self, BlockCodec, Codec};
use crate::proto::wire::MAX_ESI;
use bits::SourceBits;
pub use coded::block_coding;
use coeffs::CoefficientCache;
use fast::Outcome;
use raptorq::SourceBlockEncoder;
use raptorq::{EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder};
use std::sync::OnceLock;
use thiserror::Error;

/// FEC input that does not fit the block it claims to belong to.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FecError {
    /// Block data longer than `K * T` or too short for `K` symbols.
    #[error("block of {len} bytes does not fit {k} symbols of {t} bytes")]
    BlockLength {
        /// Data length.
        len: usize,
        /// Source symbols.
        k: u16,
        /// Symbol size.
        t: u16,
    },
    /// A symbol whose length is not `T`.
    #[error("symbol of {got} bytes, expected {expected}")]
    SymbolSize {
        /// Expected (`T`).
        expected: u16,
        /// Received.
        got: usize,
    },
    /// ESI above 2^24 - 1, or a repair ESI below `K`.
    #[error("encoding symbol id {0} out of range")]
    Esi(u32),
    /// `K` or `T` is zero.
    #[error("empty block parameters")]
    Empty,
}

fn oti(t: u16, k: u16) -> ObjectTransmissionInformation {
    ObjectTransmissionInformation::new(u64::from(t) * u64::from(k), t, 1, 1, 1)
}

/// One block ready to send: its source symbols and a RaptorQ encoder for repair symbols (built
/// when first needed, unless built up front).
pub struct BlockEncoder {
    t: u16,
    k: u16,
    data: Vec<u8>,
    encoder: OnceLock<SourceBlockEncoder>,
    /// Compressed session: how this block travels (`None`: an uncompressed session's block).
    codec: Option<BlockCodec>,
    /// Bytes of what travels, unpadded (the frame, or the raw block).
    coded_len: usize,
}

impl std::fmt::Debug for BlockEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockEncoder")
            .field("t", &self.t)
            .field("k", &self.k)
            .field("repair_ready", &self.repair_ready())
            .finish()
    }
}

impl BlockEncoder {
    /// Prepare a block of `k` symbols of `t` bytes from its data (the last symbol is zero-padded),
    /// repair included: this is the CPU-heavy step (RaptorQ intermediate symbols).
    pub fn new(t: u16, k: u16, data: Vec<u8>) -> Result<Self, FecError> {
        let enc = Self::systematic(t, k, data)?;
        enc.prepare_repair();
        Ok(enc)
    }

    /// Like [`Self::new`], but leave the intermediate symbols until a repair symbol is first
    /// asked for (source symbols cost nothing to send).
    pub fn systematic(t: u16, k: u16, mut data: Vec<u8>) -> Result<Self, FecError> {
        if t == 0 || k == 0 {
            return Err(FecError::Empty);
        }
        let full = usize::from(t) * usize::from(k);
        let min = full - usize::from(t) + 1;
        if data.len() > full || data.len() < min {
            return Err(FecError::BlockLength { len: data.len(), k, t });
        }
        let coded_len = data.len();
        data.resize(full, 0);
        Ok(BlockEncoder { t, k, data, encoder: OnceLock::new(), codec: None, coded_len })
    }

    /// Compute the intermediate symbols now if they are not yet (a worker does this for a
    /// block that is expected to need repair, so that the send loop does not).
    pub fn prepare_repair(&self) {
        self.repair_encoder();
    }

    /// Whether the intermediate symbols exist (repair symbols are cheap now).
    pub fn repair_ready(&self) -> bool {
        self.encoder.get().is_some()
    }

    fn repair_encoder(&self) -> &SourceBlockEncoder {
        self.encoder.get_or_init(|| SourceBlockEncoder::new(0, &oti(self.t, self.k), &self.data))
    }

    /// A block of a compressed session: `data` (the block's bytes, `k` symbols of `t` in the
    /// layout) compressed with `codec` into a FEC block of `K_b <= k` symbols, or raw when that
    /// saves nothing (see `proto::compress`).
    /// The intermediate symbols are left for later as with [`Self::systematic`]: call
    /// [`Self::prepare_repair`] for them now.
    pub fn compressed(t: u16, k: u16, data: Vec<u8>, codec: Codec) -> Result<Self, FecError> {
        if t == 0 || k == 0 {
            return Err(FecError::Empty);
        }
        let full = usize::from(t) * usize::from(k);
        if data.len() > full || data.len() < full - usize::from(t) + 1 {
            return Err(FecError::BlockLength { len: data.len(), k, t });
        }
        let e = compress::encode_block(codec, data, t, k);
        let mut enc = BlockEncoder::systematic(t, e.symbols, e.bytes)?;
        enc.codec = Some(e.codec);
        Ok(enc)
    }

    /// Source symbols in this block (`K`, or `K_b` of a compressed session's block).
    pub fn source_symbols(&self) -> u16 {
        self.k
    }

    /// How the block travels in a compressed session; `None` in an uncompressed one.
    pub fn codec(&self) -> Option<BlockCodec> {
        self.codec
    }

    /// Bytes that travel as source symbols, before padding (the compressed frame, or the
    /// block's own length).
    pub fn coded_len(&self) -> usize {
        self.coded_len
    }

    /// Source symbol `esi` (< K), `None` otherwise.
    pub fn source_symbol(&self, esi: u32) -> Option<&[u8]> {
        let t = usize::from(self.t);
        let start = usize::try_from(esi).ok()?.checked_mul(t)?;
        self.data.get(start..start + t)
    }

    /// Write repair symbol `esi` (K ≤ esi ≤ 2^24 - 1) into `out` (cleared first). The first one
    /// asked of a block built with [`Self::systematic`] computes its intermediate symbols.
    pub fn repair_symbol(&self, esi: u32, out: &mut Vec<u8>) -> Result<(), FecError> {
        if esi < u32::from(self.k) || esi > MAX_ESI {
            return Err(FecError::Esi(esi));
        }
        let packet = self.repair_encoder().repair_packets(esi - u32::from(self.k), 1);
        out.clear();
        if let Some(p) = packet.first() {
            out.extend_from_slice(p.data());
        }
        Ok(())
    }
}

/// What [`BlockSymbols::insert`] did with a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// New symbol stored.
    New,
    /// Already had this ESI.
    Duplicate,
    /// The block already has enough symbols to attempt a decode; not stored.
    Surplus,
}

/// The symbols received so far for one block.
#[derive(Clone)]
pub struct BlockSymbols {
    t: u16,
    k: u16,
    /// Symbols needed before a decode is attempted: `K`, raised after a failed decode.
    target: u32,
    /// Source symbols at their offsets (K * T bytes).
    source: Vec<u8>,
    /// A bit per source symbol held (inline for the usual block sizes, see module `bits`).
    have_source: SourceBits,
    source_count: u32,
    repairs: Vec<(u32, Vec<u8>)>,
    /// Compressed session: the codec the block's first datagram named.
    codec: Option<BlockCodec>,
    /// Datagrams that named another `K_b` or codec.
    conflicts: u32,
    /// Only which symbols arrived is kept, not their bytes ([`Self::for_coding_counting`]).
    count_only: bool,
}

impl std::fmt::Debug for BlockSymbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockSymbols")
            .field("k", &self.k)
            .field("count", &self.count())
            .field("target", &self.target)
            .finish()
    }
}

impl BlockSymbols {
    /// An empty collector for a block of `k` symbols of `t` bytes.
    pub fn new(t: u16, k: u16) -> Result<Self, FecError> {
        Self::build(t, k, None, false)
    }

    /// An empty collector, with its codec, keeping bytes or only counts
    /// ([`Self::for_coding_counting`]): a counting collector never allocates the block's bytes.
    pub(crate) fn build(
        t: u16,
        k: u16,
        codec: Option<BlockCodec>,
        count_only: bool,
    ) -> Result<Self, FecError> {
        if t == 0 || k == 0 {
            return Err(FecError::Empty);
        }
        let source = if count_only { Vec::new() } else { vec![0; usize::from(t) * usize::from(k)] };
        Ok(BlockSymbols {
            t,
            k,
            target: u32::from(k),
            source,
            have_source: SourceBits::new(k),
            source_count: 0,
            repairs: Vec::new(),
            codec,
            conflicts: 0,
            count_only,
        })
    }

    /// An empty collector for a block of a compressed session: `k` is its `K_b`, `codec` how
    /// it travels (both as its first datagram said).
    pub fn new_coded(t: u16, k: u16, codec: BlockCodec) -> Result<Self, FecError> {
        Self::build(t, k, Some(codec), false)
    }

    /// Whether a datagram naming `k` source symbols and `codec` belongs to this collector.
    pub fn is_coded_as(&self, k: u16, codec: Option<BlockCodec>) -> bool {
        self.k == k && self.codec == codec
    }

    /// Count a datagram that named another `K_b` or codec. Returns `true` when such datagrams
    /// are now at least as many as the symbols held: then the caller starts the block over
    /// with theirs (so one forged first datagram costs at most the symbols of one genuine one).
    pub fn conflict(&mut self) -> bool {
        self.conflicts = self.conflicts.saturating_add(1);
        self.conflicts >= self.count()
    }

    /// Distinct symbols held.
    pub fn count(&self) -> u32 {
        self.source_count + self.repairs.len() as u32
    }

    /// Symbols still needed before a decode can be attempted.
    pub fn need(&self) -> u32 {
        self.target.saturating_sub(self.count())
    }

    /// Whether a decode can be attempted now.
    pub fn ready(&self) -> bool {
        self.need() == 0
    }

    /// Store one symbol after checking its size and id.
    pub fn insert(&mut self, esi: u32, symbol: &[u8]) -> Result<Inserted, FecError> {
        if symbol.len() != usize::from(self.t) {
            return Err(FecError::SymbolSize { expected: self.t, got: symbol.len() });
        }
        if esi > MAX_ESI {
            return Err(FecError::Esi(esi));
        }
        if esi < u32::from(self.k) {
            let i = esi as usize;
            if !self.have_source.set(i) {
                return Ok(Inserted::Duplicate);
            }
            // A source symbol is always worth keeping: it can turn a decode into a copy.
            if !self.count_only {
                let t = usize::from(self.t);
                self.source[i * t..(i + 1) * t].copy_from_slice(symbol);
            }
            self.source_count += 1;
            return Ok(Inserted::New);
        }
        if self.repairs.iter().any(|(e, _)| *e == esi) {
            return Ok(Inserted::Duplicate);
        }
        if self.ready() {
            return Ok(Inserted::Surplus);
        }
        let bytes = if self.count_only { Vec::new() } else { symbol.to_vec() };
        self.repairs.push((esi, bytes));
        Ok(Inserted::New)
    }

    /// Decode like [`Self::decode`] and recover the block's `len` bytes: cut to `len`, or, in a
    /// compressed session, decompressed (`Ok(None)` when the result does not decompress to
    /// exactly `len` bytes: a forged `K_b` or codec, or damaged symbols).
    pub fn decode_payload(self, len: usize) -> Result<Option<Vec<u8>>, Box<BlockSymbols>> {
        let codec = self.codec;
        let mut data = self.decode()?;
        match codec {
            None => {
                data.truncate(len);
                Ok(Some(data))
            }
            Some(c) => Ok(compress::decode_frame(c, data, len).ok()),
        }
    }

    /// Whether every source symbol arrived (the decode is a copy).
    pub fn is_systematic(&self) -> bool {
        self.source_count == u32::from(self.k)
    }

    /// Recover the block's `K * T` bytes: a copy when no source symbol is missing, the fast
    /// solve when up to about K / 20 are (once a block of this `K` has needed a decode before,
    /// see module `coeffs`), raptorq's decoder otherwise. On failure (too few symbols, or symbols that
    /// do not determine the block, rare with exactly `K`), the symbols come back with a raised
    /// target.
    pub fn decode(self) -> Result<Vec<u8>, Box<BlockSymbols>> {
        self.decode_with(CoefficientCache::global()).0
    }

    /// [`Self::decode`] with a given coefficient cache, also saying which path it took.
    fn decode_with(
        mut self,
        cache: &CoefficientCache,
    ) -> (Result<Vec<u8>, Box<BlockSymbols>>, Path) {
        if self.count_only {
            return (Err(Box::new(self)), Path::NotReady);
        }
        if self.is_systematic() {
            return (Ok(self.source), Path::Copy);
        }
        if !self.ready() {
            return (Err(Box::new(self)), Path::NotReady);
        }
        let t = usize::from(self.t);
        match fast::recover(
            cache,
            t,
            &mut self.source,
            self.have_source.as_bitslice(),
            &self.repairs,
        ) {
            Outcome::Recovered => return (Ok(self.source), Path::Fast),
            Outcome::Singular => {
                // Not determined by what arrived: no decoder could do better (see `fast`).
                self.target += 2;
                return (Err(Box::new(self)), Path::Singular);
            }
            Outcome::Declined => {}
        }
        (self.decode_full(), Path::Full)
    }

    /// The RaptorQ decoder over every symbol held.
    fn decode_full(mut self) -> Result<Vec<u8>, Box<BlockSymbols>> {
        let t = usize::from(self.t);
        let mut decoder =
            SourceBlockDecoder::new(0, &oti(self.t, self.k), self.source.len() as u64);
        let sources = self.have_source.as_bitslice().iter_ones().map(|i| {
            EncodingPacket::new(
                PayloadId::new(0, i as u32),
                self.source[i * t..(i + 1) * t].to_vec(),
            )
        });
        let repairs = self
            .repairs
            .iter()
            .map(|(esi, s)| EncodingPacket::new(PayloadId::new(0, *esi), s.clone()));
        let packets: Vec<EncodingPacket> = sources.chain(repairs).collect();
        match decoder.decode(packets) {
            Some(data) => Ok(data),
            None => {
                self.target += 2;
                Err(Box::new(self))
            }
        }
    }
}

/// Which way [`BlockSymbols::decode_with`] went (for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Every source symbol present.
    Copy,
    /// Too few symbols to try.
    NotReady,
    /// Lost symbols solved from the cached coefficients.
    Fast,
    /// The symbols held do not determine the block.
    Singular,
    /// raptorq's decoder.
    Full,
}
