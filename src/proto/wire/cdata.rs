//! Packet type 17, [`CData`]: a payload symbol of a compressed session (`proto::compress`).
//! It is a [`Data`] symbol that also says how its block travels, so a receiver can size the
//! block's FEC state from any one datagram of it:
//!
//! ```text
//! object u8 (payload only) | esi u24 | block u32 | seq u32 | codec u8 | K_b u16 | symbol
//! ```
//!
//! `codec` is a [`BlockCodec`] (0 raw, 1 zstd, 2 lz4) and `K_b` (≥ 1) the block's source
//! symbols. Whether `K_b` fits the block (at most the layout's `K`, equal to it for a raw
//! block) is the receiver's check, as it needs the layout. A session whose announcements carry
//! [`FLAG_COMPRESSED`](crate::proto::wire::FLAG_COMPRESSED) sends its payload symbols as this type only.

use crate::proto::compress::BlockCodec;
use crate::proto::layout::{MAX_SYMBOL_SIZE, MIN_SYMBOL_SIZE};
use crate::proto::wire::cursor::{Reader, Writer};
use crate::proto::wire::{Data, ObjectId, WireError};

/// Bytes of a [`CData`]'s fields before the symbol.
pub const CDATA_FIELDS_LEN: usize = crate::proto::wire::DATA_FIELDS_LEN + 3;

/// A payload symbol of a compressed session, with its block's codec and `K_b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CData<'a> {
    /// The symbol (its `object` is always [`ObjectId::Payload`]).
    pub data: Data<'a>,
    /// How the block travels.
    pub codec: BlockCodec,
    /// Source symbols of the block's FEC block (≥ 1).
    pub kb: u16,
}

pub(super) fn parse_cdata<'a>(r: &mut Reader<'a>) -> Result<CData<'a>, WireError> {
    let object = ObjectId::parse(r.u8()?)?;
    if object != ObjectId::Payload {
        return Err(WireError::BadField("compressed data object"));
    }
    let esi_bytes: [u8; 3] = r.array()?;
    let esi = u32::from_be_bytes([0, esi_bytes[0], esi_bytes[1], esi_bytes[2]]);
    let block = r.u32()?;
    let seq = r.u32()?;
    let codec = BlockCodec::from_byte(r.u8()?).ok_or(WireError::BadField("codec"))?;
    let kb = r.u16()?;
    if kb == 0 {
        return Err(WireError::BadField("compressed block symbols"));
    }
    let symbol = r.rest();
    if symbol.len() < MIN_SYMBOL_SIZE as usize {
        return Err(WireError::Truncated);
    }
    if symbol.len() > MAX_SYMBOL_SIZE as usize {
        return Err(WireError::BadField("symbol length"));
    }
    Ok(CData { data: Data { object, block, esi, seq, symbol }, codec, kb })
}

pub(super) fn emit_cdata(c: &CData<'_>, buf: &mut Vec<u8>) {
    let d = &c.data;
    buf.put_u8(d.object as u8);
    buf.extend_from_slice(&d.esi.to_be_bytes()[1..]);
    buf.put_u32(d.block);
    buf.put_u32(d.seq);
    buf.put_u8(c.codec as u8);
    buf.put_u16(c.kb);
    buf.extend_from_slice(d.symbol);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::{emit, parse, Header, Packet, DATA_OVERHEAD};

    fn datagram(c: &CData<'_>) -> Vec<u8> {
        let mut b = Vec::new();
        emit(&Header { flags: 0, session: 1, node: 2 }, &Packet::CData(*c), &mut b);
        b
    }

    #[test]
    fn round_trips_and_checks_its_fields() {
        let symbol = vec![7u8; 1400];
        let data =
            Data { object: ObjectId::Payload, block: 9, esi: 0xab_cdef, seq: 5, symbol: &symbol };
        let c = CData { data, codec: BlockCodec::Zstd, kb: 33 };
        let b = datagram(&c);
        assert_eq!(b.len(), DATA_OVERHEAD + 3 + 1400);
        assert_eq!(parse(&b).unwrap().1, Packet::CData(c));
        for codec in [BlockCodec::Raw, BlockCodec::Lz4] {
            let c = CData { codec, ..c };
            assert_eq!(parse(&datagram(&c)).unwrap().1, Packet::CData(c));
        }
        let manifest = CData { data: Data { object: ObjectId::Manifest, ..data }, ..c };
        assert_eq!(parse(&datagram(&manifest)), Err(WireError::BadField("compressed data object")));
        let zero = CData { kb: 0, ..c };
        assert_eq!(parse(&datagram(&zero)), Err(WireError::BadField("compressed block symbols")));
        assert!(parse(&datagram(&CData { kb: 1, ..c })).is_ok());
        // An unknown codec byte: patched in, checksum recomputed.
        let mut b = datagram(&c);
        let at = crate::proto::wire::HEADER_LEN + crate::proto::wire::DATA_FIELDS_LEN;
        b[at] = 3;
        let n = b.len() - 4;
        let crc = crc32fast::hash(&b[..n]);
        b[n..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(parse(&b), Err(WireError::BadField("codec")));
        b[at] = 2;
        let crc = crc32fast::hash(&b[..n]);
        b[n..].copy_from_slice(&crc.to_be_bytes());
        assert!(parse(&b).is_ok());
        // Symbol length at both limits.
        let small = vec![0u8; MIN_SYMBOL_SIZE as usize];
        let ok = CData { data: Data { symbol: &small, ..data }, ..c };
        assert!(parse(&datagram(&ok)).is_ok());
        let short = CData { data: Data { symbol: &small[1..], ..data }, ..c };
        assert_eq!(parse(&datagram(&short)), Err(WireError::Truncated));
        let big = vec![0u8; MAX_SYMBOL_SIZE as usize + 1];
        let long = CData { data: Data { symbol: &big, ..data }, ..c };
        assert_eq!(parse(&datagram(&long)), Err(WireError::BadField("symbol length")));
        let max = CData { data: Data { symbol: &big[1..], ..data }, ..c };
        assert!(parse(&datagram(&max)).is_ok());
    }
}
