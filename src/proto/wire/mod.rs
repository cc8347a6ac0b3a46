//! Datagram formats, version 1: a fixed 16-byte header, a typed body and a CRC-32 trailer.
//!
//! ```text
//! header  magic "MCST" | version u8 | type u8 | flags u16 | session u32 | node u32
//! body    depends on type (see `packets`)
//! trailer crc32 (IEEE, big-endian) of header and body
//! ```
//!
//! [`parse`] checks everything (length, magic, version, checksum, every field's range and the
//! exact body length) before returning a borrowed [`Packet`]; it never panics and never
//! allocates more than the datagram's own length. [`emit`] writes a packet into a reusable buffer.

mod cursor;
mod have;
mod hello;
pub mod interleave;
mod objects;
mod packets;
mod relayed;
mod repairer;
mod signature;

pub use have::{Have, HAVE_CHUNK_BLOCKS, HAVE_CHUNK_BYTES};
pub use hello::{reason_text, Hello, HostName, MAX_HOST_NAME, MAX_REASON};
pub use interleave::{window_start, INTERLEAVE};
pub use objects::{ObjectId, Objects};
pub use packets::*;
pub use relayed::Relayed;
pub use repairer::{
    slot_esis, RepairSymbol, RepairerPacket, REPAIR_SLOTS, SENDER_ESI_END, SLOT_ESIS,
};
pub use signature::{Signature, SIGNATURE_BODY_LEN};

use cursor::{Reader, Writer};
use thiserror::Error;

/// First four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"MCST";
/// Wire format version.
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// Trailer (CRC-32) length in bytes.
pub const TRAILER_LEN: usize = 4;
/// Header flag: a keyed datagram (nonce and tag, see `proto::auth`); never set in a v1
/// datagram that `parse` sees.
pub const FLAG_KEYED: u16 = 0x8000;
/// Header flag, with [`FLAG_KEYED`]: the body is encrypted.
pub const FLAG_ENCRYPTED: u16 = 0x4000;
/// Header flag on a sender's datagrams: the session is compressed (`proto::compress`), its
/// payload symbols travel as [`CData`] (type 17). Part of the session's identity.
pub const FLAG_COMPRESSED: u16 = 0x2000;
/// Bytes a data datagram adds around its symbol: header, data fields, trailer.
pub const DATA_OVERHEAD: usize = HEADER_LEN + DATA_FIELDS_LEN + TRAILER_LEN;

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WireError {
    /// Shorter than its format requires.
    #[error("truncated datagram")]
    Truncated,
    /// Not an mcast datagram.
    #[error("bad magic")]
    BadMagic,
    /// A version this build does not speak.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// CRC-32 mismatch: corrupted in transit or forged.
    #[error("checksum mismatch")]
    BadChecksum,
    /// Unknown packet type.
    #[error("unknown packet type {0}")]
    UnknownType(u8),
    /// A field outside its allowed range.
    #[error("field {0} out of range")]
    BadField(&'static str),
    /// Bytes left over after the body.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

/// Header fields other than magic, version and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Reserved flag bits (0 in version 1; ignored on receipt).
    pub flags: u16,
    /// Session id chosen by the sender for one transfer; receivers lock onto it.
    pub session: u32,
    /// Id of the node that sent this datagram.
    pub node: u32,
}

/// Parse one datagram. Checks, in order: length, magic, version, checksum, type, body.
pub fn parse(datagram: &[u8]) -> Result<(Header, Packet<'_>), WireError> {
    if datagram.len() < HEADER_LEN + TRAILER_LEN {
        return Err(WireError::Truncated);
    }
    if datagram[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if datagram[4] != VERSION {
        return Err(WireError::BadVersion(datagram[4]));
    }
    let (covered, trailer) = datagram.split_at(datagram.len() - TRAILER_LEN);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(trailer);
    if crc32fast::hash(covered) != u32::from_be_bytes(crc) {
        return Err(WireError::BadChecksum);
    }
    let mut r = Reader::new(&covered[5..]);
    let kind = r.u8()?;
    let header = Header { flags: r.u16()?, session: r.u32()?, node: r.u32()? };
    let packet = Packet::parse_body(kind, r)?;
    Ok((header, packet))
}

/// Write `packet` with `header` into `buf` (cleared first), including the checksum.
pub fn emit(header: &Header, packet: &Packet<'_>, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&MAGIC);
    buf.put_u8(VERSION);
    buf.put_u8(packet.kind() as u8);
    buf.put_u16(header.flags);
    buf.put_u32(header.session);
    buf.put_u32(header.node);
    packet.emit_body(buf);
    let crc = crc32fast::hash(buf);
    buf.put_u32(crc);
}

#[cfg(test)]
mod tests;
