//! The repairer packet (type 15): what a local repairer sends, and the ESI slots that keep
//! every repairer's symbols apart from the sender's and from each other's.
//!
//! ```text
//! repairer  role u8 = 1 (advert) | count u16 (1..=MAX_NEEDS) | count × (object u8, block u32, count u16)
//!           role u8 = 2 (symbol) | object u8 | esi u24 | block u32 | symbol (MIN..=MAX_SYMBOL_SIZE bytes)
//! ```
//!
//! An *advert* says "I will send this many repair symbols of these blocks": receivers take it
//! as a heard need (their NAK stays quiet for a bounded while), other repairers and the sender
//! as a need covered. A *symbol* is one repair symbol of a block; its ESI lies in the slot the
//! sender assigned to its repairer ([`slot_esis`]), so no two senders of a session ever send
//! the same symbol of a block. It carries no sequence number: the sender's sequence numbers
//! measure the sender's stream only.
//!
//! ESI space (24 bits): the sender's own repairs stay below [`SENDER_ESI_END`]; slot `s`
//! (1..=[`REPAIR_SLOTS`]) owns the [`SLOT_ESIS`] ids from `SENDER_ESI_END + (s - 1) *
//! SLOT_ESIS`.

use super::cursor::{Reader, Writer};
use super::packets::{emit_need_entries, parse_need_entries};
use super::{NeedList, ObjectId, WireError, MAX_ESI, MAX_NEEDS};
use crate::proto::layout::{MAX_SYMBOL_SIZE, MIN_SYMBOL_SIZE};
use std::ops::Range;

/// Repairer slots a sender assigns (the number of repairers one session can have).
pub const REPAIR_SLOTS: u8 = 8;
/// ESIs in one repairer slot (a million repair symbols of one block).
pub const SLOT_ESIS: u32 = 1 << 20;
/// First ESI that belongs to a repairer: the sender's repair symbols stay below it.
pub const SENDER_ESI_END: u32 = MAX_ESI + 1 - REPAIR_SLOTS as u32 * SLOT_ESIS;

const ROLE_ADVERT: u8 = 1;
const ROLE_SYMBOL: u8 = 2;

/// The ESIs of slot `slot` (1..=[`REPAIR_SLOTS`]); `None` for any other slot number.
pub fn slot_esis(slot: u8) -> Option<Range<u32>> {
    if slot == 0 || slot > REPAIR_SLOTS {
        return None;
    }
    let start = SENDER_ESI_END + u32::from(slot - 1) * SLOT_ESIS;
    Some(start..start + SLOT_ESIS)
}

/// One repair symbol sent by a repairer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairSymbol<'a> {
    /// Object the block belongs to.
    pub object: ObjectId,
    /// Block number.
    pub block: u32,
    /// Encoding symbol id (< 2^24), in the repairer's slot.
    pub esi: u32,
    /// Symbol bytes (length checked against the session's `T` by the receiver).
    pub symbol: &'a [u8],
}

/// A repairer packet's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairerPacket<'a> {
    /// Repairs about to be sent (a [`NeedList`] whose `seq` and `loss_ppm` are 0).
    Advert(NeedList),
    /// One repair symbol.
    Symbol(RepairSymbol<'a>),
}

/// Parse a repairer body (the caller checks that nothing follows).
pub(super) fn parse_repairer<'a>(r: &mut Reader<'a>) -> Result<RepairerPacket<'a>, WireError> {
    match r.u8()? {
        ROLE_ADVERT => {
            let n = usize::from(r.u16()?);
            if n == 0 || n > MAX_NEEDS {
                return Err(WireError::BadField("advert count"));
            }
            if r.remaining() < n * 7 {
                return Err(WireError::Truncated);
            }
            let needs = parse_need_entries(r, n, "advert need zero")?;
            Ok(RepairerPacket::Advert(NeedList { seq: 0, loss_ppm: 0, needs }))
        }
        ROLE_SYMBOL => {
            let object = ObjectId::parse(r.u8()?)?;
            let esi_bytes: [u8; 3] = r.array()?;
            let esi = u32::from_be_bytes([0, esi_bytes[0], esi_bytes[1], esi_bytes[2]]);
            if esi < SENDER_ESI_END {
                return Err(WireError::BadField("repairer esi"));
            }
            let block = r.u32()?;
            let symbol = r.rest();
            if symbol.len() < MIN_SYMBOL_SIZE as usize {
                return Err(WireError::Truncated);
            }
            if symbol.len() > MAX_SYMBOL_SIZE as usize {
                return Err(WireError::BadField("symbol length"));
            }
            Ok(RepairerPacket::Symbol(RepairSymbol { object, block, esi, symbol }))
        }
        _ => Err(WireError::BadField("repairer role")),
    }
}

/// Emit a repairer body. An advert is built with 1..=[`MAX_NEEDS`] needs.
pub(super) fn emit_repairer(p: &RepairerPacket<'_>, buf: &mut Vec<u8>) {
    match p {
        RepairerPacket::Advert(list) => {
            debug_assert!(!list.needs.is_empty() && list.needs.len() <= MAX_NEEDS);
            buf.put_u8(ROLE_ADVERT);
            buf.put_u16(list.needs.len() as u16);
            emit_need_entries(&list.needs, buf);
        }
        RepairerPacket::Symbol(s) => {
            buf.put_u8(ROLE_SYMBOL);
            buf.put_u8(s.object as u8);
            buf.extend_from_slice(&s.esi.to_be_bytes()[1..]);
            buf.put_u32(s.block);
            buf.extend_from_slice(s.symbol);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{emit, parse, Header, Need, Packet};
    use super::*;

    fn header() -> Header {
        Header { flags: 0, session: 7, node: 9 }
    }

    fn raw(body: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        buf.extend_from_slice(b"MCST");
        buf.extend_from_slice(&[1, 15, 0, 0]);
        buf.extend_from_slice(&7u32.to_be_bytes());
        buf.extend_from_slice(&9u32.to_be_bytes());
        buf.extend_from_slice(body);
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        buf
    }

    fn advert(n: usize) -> RepairerPacket<'static> {
        let needs =
            (0..n as u32).map(|b| Need { object: ObjectId::Payload, block: b, count: 3 }).collect();
        RepairerPacket::Advert(NeedList { seq: 0, loss_ppm: 0, needs })
    }

    #[test]
    fn slots_partition_the_top_of_the_esi_space() {
        assert_eq!(slot_esis(0), None);
        assert_eq!(slot_esis(REPAIR_SLOTS + 1), None);
        assert_eq!(slot_esis(1).unwrap().start, SENDER_ESI_END);
        assert_eq!(slot_esis(REPAIR_SLOTS).unwrap().end, MAX_ESI + 1, "the last slot ends at 2^24");
        for s in 1..REPAIR_SLOTS {
            assert_eq!(slot_esis(s).unwrap().end, slot_esis(s + 1).unwrap().start);
        }
    }

    #[test]
    fn adverts_and_symbols_round_trip() {
        let symbol = [5u8; 64];
        let esis = [SENDER_ESI_END, MAX_ESI];
        for p in [advert(1), advert(MAX_NEEDS)].into_iter().chain(esis.map(|esi| {
            RepairerPacket::Symbol(RepairSymbol {
                object: ObjectId::Payload,
                block: 0xdead_beef,
                esi,
                symbol: &symbol,
            })
        })) {
            let mut buf = Vec::new();
            emit(&header(), &Packet::Repairer(p.clone()), &mut buf);
            let (h, back) = parse(&buf).expect("parses");
            assert_eq!((h, back), (header(), Packet::Repairer(p)));
        }
    }

    #[test]
    fn bodies_are_checked_at_the_limits() {
        let adv = |n: u16, needs: usize, count: u16| {
            let mut body = vec![ROLE_ADVERT];
            body.extend_from_slice(&n.to_be_bytes());
            for b in 0..needs as u32 {
                body.push(1);
                body.extend_from_slice(&b.to_be_bytes());
                body.extend_from_slice(&count.to_be_bytes());
            }
            parse(&raw(&body)).map(|_| ())
        };
        assert_eq!(adv(180, 180, 1), Ok(()));
        assert_eq!(adv(181, 181, 1), Err(WireError::BadField("advert count")));
        assert_eq!(adv(0, 0, 1), Err(WireError::BadField("advert count")));
        assert_eq!(adv(2, 1, 1), Err(WireError::Truncated));
        assert_eq!(adv(1, 2, 1), Err(WireError::TrailingBytes(7)));
        assert_eq!(adv(1, 1, 0), Err(WireError::BadField("advert need zero")));
        let sym = |esi: u32, len: usize| {
            let mut body = vec![ROLE_SYMBOL, 1];
            body.extend_from_slice(&esi.to_be_bytes()[1..]);
            body.extend_from_slice(&3u32.to_be_bytes());
            body.extend(vec![0u8; len]);
            parse(&raw(&body)).map(|_| ())
        };
        let (min, max) = (MIN_SYMBOL_SIZE as usize, MAX_SYMBOL_SIZE as usize);
        assert_eq!(sym(SENDER_ESI_END, min), Ok(()));
        assert_eq!(sym(SENDER_ESI_END - 1, min), Err(WireError::BadField("repairer esi")));
        assert_eq!(sym(MAX_ESI, max), Ok(()));
        assert_eq!(sym(MAX_ESI, max + 1), Err(WireError::BadField("symbol length")));
        assert_eq!(sym(MAX_ESI, min - 1), Err(WireError::Truncated));
        assert_eq!(parse(&raw(&[3])).unwrap_err(), WireError::BadField("repairer role"));
        assert_eq!(parse(&raw(&[ROLE_SYMBOL, 9])).unwrap_err(), WireError::BadField("object"));
    }
}
