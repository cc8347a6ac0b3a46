//! RaptorQ (RFC 6330) per block, behind checks. Each of our blocks is one raptorq source block
//! (SBN 0); block numbers and encoding symbol ids (ESIs) are ours. raptorq panics on symbols of
//! the wrong size and on block-number mismatches, so every length and id is validated here
//! before raptorq sees it.
//!
//! Sender side: [`BlockEncoder`] holds one block's source symbols and generates any repair ESI.
//! Receiver side: [`BlockSymbols`] collects the symbols of one block; [`BlockSymbols::decode`]
//! copies when every source symbol arrived (systematic fast path) and runs the RaptorQ decoder
//! otherwise. Both constructors are pure CPU work that a driver may run on a worker thread.

use crate::proto::wire::MAX_ESI;
use raptorq::SourceBlockEncoder;
use raptorq::{EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder};
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

/// One block ready to send: its source symbols and a RaptorQ encoder for repair symbols.
pub struct BlockEncoder {
    t: u16,
    k: u16,
    data: Vec<u8>,
    encoder: SourceBlockEncoder,
}

impl std::fmt::Debug for BlockEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockEncoder").field("t", &self.t).field("k", &self.k).finish()
    }
}

impl BlockEncoder {
    /// Prepare a block of `k` symbols of `t` bytes from its data (the last symbol is zero-padded).
    /// This is the CPU-heavy step (RaptorQ intermediate symbols).
    pub fn new(t: u16, k: u16, mut data: Vec<u8>) -> Result<Self, FecError> {
        if t == 0 || k == 0 {
            return Err(FecError::Empty);
        }
        let full = usize::from(t) * usize::from(k);
        let min = full - usize::from(t) + 1;
        if data.len() > full || data.len() < min {
            return Err(FecError::BlockLength { len: data.len(), k, t });
        }
        data.resize(full, 0);
        let encoder = SourceBlockEncoder::new(0, &oti(t, k), &data);
        Ok(BlockEncoder { t, k, data, encoder })
    }

    /// Source symbols in this block (`K`).
    pub fn source_symbols(&self) -> u16 {
        self.k
    }

    /// Source symbol `esi` (< K), `None` otherwise.
    pub fn source_symbol(&self, esi: u32) -> Option<&[u8]> {
        let t = usize::from(self.t);
        let start = usize::try_from(esi).ok()?.checked_mul(t)?;
        self.data.get(start..start + t)
    }

    /// Write repair symbol `esi` (K ≤ esi ≤ 2^24 - 1) into `out` (cleared first).
    pub fn repair_symbol(&self, esi: u32, out: &mut Vec<u8>) -> Result<(), FecError> {
        if esi < u32::from(self.k) || esi > MAX_ESI {
            return Err(FecError::Esi(esi));
        }
        let packet = self.encoder.repair_packets(esi - u32::from(self.k), 1);
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
    have_source: Vec<bool>,
    source_count: u32,
    repairs: Vec<(u32, Vec<u8>)>,
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
        if t == 0 || k == 0 {
            return Err(FecError::Empty);
        }
        Ok(BlockSymbols {
            t,
            k,
            target: u32::from(k),
            source: vec![0; usize::from(t) * usize::from(k)],
            have_source: vec![false; usize::from(k)],
            source_count: 0,
            repairs: Vec::new(),
        })
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
            if self.have_source[i] {
                return Ok(Inserted::Duplicate);
            }
            // A source symbol is always worth keeping: it can turn a decode into a copy.
            let t = usize::from(self.t);
            self.source[i * t..(i + 1) * t].copy_from_slice(symbol);
            self.have_source[i] = true;
            self.source_count += 1;
            return Ok(Inserted::New);
        }
        if self.repairs.iter().any(|(e, _)| *e == esi) {
            return Ok(Inserted::Duplicate);
        }
        if self.ready() {
            return Ok(Inserted::Surplus);
        }
        self.repairs.push((esi, symbol.to_vec()));
        Ok(Inserted::New)
    }

    /// Whether every source symbol arrived (the decode is a copy).
    pub fn is_systematic(&self) -> bool {
        self.source_count == u32::from(self.k)
    }

    /// Recover the block's `K * T` bytes. On failure (too few symbols, or the rare RaptorQ
    /// decode failure with exactly `K`), the symbols come back with a raised target.
    pub fn decode(mut self) -> Result<Vec<u8>, Box<BlockSymbols>> {
        if self.is_systematic() {
            return Ok(self.source);
        }
        if !self.ready() {
            return Err(Box::new(self));
        }
        let t = usize::from(self.t);
        let mut decoder =
            SourceBlockDecoder::new(0, &oti(self.t, self.k), self.source.len() as u64);
        let sources = self.have_source.iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn block(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.gen()).collect()
    }

    #[test]
    fn length_boundaries() {
        // A block of K symbols must hold more than (K-1)*T bytes and at most K*T.
        assert!(BlockEncoder::new(16, 4, vec![0; 64]).is_ok());
        assert!(BlockEncoder::new(16, 4, vec![0; 65]).is_err());
        assert!(BlockEncoder::new(16, 4, vec![0; 49]).is_ok());
        assert!(BlockEncoder::new(16, 4, vec![0; 48]).is_err());
        assert!(BlockEncoder::new(0, 4, vec![]).is_err());
    }

    #[test]
    fn systematic_copy_needs_no_decode() {
        let data = block(1000, 1);
        let enc = BlockEncoder::new(100, 10, data.clone()).unwrap();
        let mut syms = BlockSymbols::new(100, 10).unwrap();
        for esi in 0..10 {
            assert_eq!(syms.insert(esi, enc.source_symbol(esi).unwrap()), Ok(Inserted::New));
        }
        assert!(syms.is_systematic());
        assert_eq!(syms.decode().unwrap(), data);
    }

    #[test]
    fn repairs_replace_any_lost_symbols() {
        let (t, k) = (64u16, 50u16);
        let data = block(usize::from(t) * usize::from(k) - 7, 2);
        let enc = BlockEncoder::new(t, k, data.clone()).unwrap();
        let mut syms = BlockSymbols::new(t, k).unwrap();
        // Lose every third source symbol, fill in with repair symbols.
        for esi in (0..u32::from(k)).filter(|e| e % 3 != 0) {
            syms.insert(esi, enc.source_symbol(esi).unwrap()).unwrap();
        }
        let mut out = Vec::new();
        let mut esi = u32::from(k);
        let mut result = None;
        while result.is_none() && esi < 200 {
            while !syms.ready() {
                enc.repair_symbol(esi, &mut out).unwrap();
                syms.insert(esi, &out).unwrap();
                esi += 1;
            }
            match syms.clone().decode() {
                Ok(d) => result = Some(d),
                Err(back) => syms = *back,
            }
        }
        let mut decoded = result.expect("decodes");
        decoded.truncate(data.len());
        assert_eq!(decoded, data);
    }

    #[test]
    fn hostile_symbols_are_refused() {
        let mut syms = BlockSymbols::new(32, 4).unwrap();
        assert!(syms.insert(0, &[0; 31]).is_err());
        assert!(syms.insert(0, &[0; 33]).is_err());
        assert!(syms.insert(MAX_ESI + 1, &[0; 32]).is_err());
        assert_eq!(syms.insert(MAX_ESI, &[0; 32]), Ok(Inserted::New));
        assert_eq!(syms.insert(MAX_ESI, &[0; 32]), Ok(Inserted::Duplicate));
        let enc = BlockEncoder::new(32, 4, vec![1; 128]).unwrap();
        let mut out = Vec::new();
        assert!(enc.repair_symbol(3, &mut out).is_err());
        assert!(enc.repair_symbol(MAX_ESI + 1, &mut out).is_err());
        assert!(enc.repair_symbol(MAX_ESI, &mut out).is_ok());
        assert_eq!(out.len(), 32);
    }

    #[test]
    fn too_few_symbols_come_back() {
        let mut syms = BlockSymbols::new(32, 4).unwrap();
        syms.insert(5, &[0; 32]).unwrap();
        let back = syms.decode().unwrap_err();
        assert_eq!(back.need(), 3);
    }
}
