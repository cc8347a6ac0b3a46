//! The packet types of wire format v1 as `Repr` structs: each knows how to parse its body from a
//! checked [`Reader`] and emit it. Field ranges are enforced here, so a parsed packet is always
//! usable without further bounds checks on the receiving side.

use super::cursor::{Reader, Writer};
use super::have::{emit_have, parse_have, Have};
use super::hello::{emit_hello, emit_reason, parse_hello, parse_reason, Hello};
use super::relayed::{emit_relayed, parse_relayed, Relayed};
use super::repairer::{emit_repairer, parse_repairer, RepairerPacket};
use super::signature::{emit_signature, parse_signature, Signature};
use super::{ObjectId, WireError};
use crate::proto::layout::{Layout, MAX_SYMBOL_SIZE, MIN_SYMBOL_SIZE};

#[path = "abort.rs"]
mod abort;
#[path = "cdata.rs"]
mod cdata;
pub use abort::{Abort, AbortReason, MAX_ABORT_TEXT};
pub use cdata::{CData, CDATA_FIELDS_LEN};

#[path = "rate.rs"]
mod rate;
pub use rate::{
    tick_header, RatePacket, RateReport, RateTick, FLAG_RATE_EXT, RATE_CONGESTED, RATE_LOSS_EVENT,
    RATE_REPORT_EXT_LEN, RATE_REPORT_LEN, RATE_TICK_LEN,
};

/// Largest manifest accepted (bytes).
pub const MAX_MANIFEST_LEN: u32 = 16 << 20;
/// Bytes of one block hash in the hash list (object 2).
pub const BLOCK_HASH_LEN: usize = 32;
/// Largest hash list accepted (bytes): 512 Ki blocks, 512 GiB of payload at 1 MiB blocks. An
/// announce whose layout has more blocks is refused, which also bounds everything a receiver
/// sizes by the block count.
pub const MAX_HASH_LIST_LEN: u32 = 16 << 20;
/// Most block needs one NAK or repair advertisement carries (fits a 1500-byte MTU).
pub const MAX_NEEDS: usize = 180;
/// Most node ids one report acknowledgement carries.
pub const MAX_ACK_NODES: usize = 256;
/// Largest encoding symbol id (24 bits).
pub const MAX_ESI: u32 = (1 << 24) - 1;
/// Bytes of data-packet fields before the symbol.
pub const DATA_FIELDS_LEN: usize = 12;
const NEED_LEN: usize = 7;

/// Whether data sequence number `a` comes after `b` (serial arithmetic: they wrap).
pub fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Packet type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    /// [`Announce`]
    Announce = 1,
    /// [`Data`]
    Data = 2,
    /// [`NeedList`] from a receiver
    Nak = 3,
    /// [`NeedList`] from the sender
    RepairAdvert = 4,
    /// [`Probe`]
    Probe = 5,
    /// [`Echo`]
    Echo = 6,
    /// [`Flush`]
    Flush = 7,
    /// [`Report`]
    Report = 8,
    /// [`ReportAck`]
    ReportAck = 9,
    /// [`Squelch`]
    Squelch = 10,
    /// [`Abort`]
    Abort = 12,
    /// [`Hello`]
    Hello = 13,
    /// [`Signature`] (signed mode)
    Signature = 11,
    /// [`CData`] (compressed sessions)
    CData = 17,
    /// [`Have`] (blocks a receiver holds already, `--changed-only`)
    Have = 14,
    /// [`RatePacket`] (automatic rate control)
    Rate = 16,
    /// [`RepairerPacket`] (local repairers)
    Repairer = 15,
    /// [`Relayed`] (a relay's forwarded nodes)
    Relayed = 18,
}

/// Periodic session announcement: what is being sent and how it is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce {
    /// Payload size in bytes.
    pub object_size: u64,
    /// Symbol size `T` for both objects.
    pub symbol_size: u16,
    /// Symbols per full block `K` for both objects.
    pub block_symbols: u16,
    /// Manifest length in bytes (object 0), at least 1.
    pub manifest_len: u32,
    /// BLAKE3 of the manifest bytes.
    pub manifest_hash: [u8; 32],
    /// Hash list length in bytes (object 2): 0 until the sender knows the list, then the block
    /// count times [`BLOCK_HASH_LEN`].
    pub hashes_len: u32,
    /// BLAKE3 of the hash list (the object hash receivers report): all zero until known.
    pub hashes_hash: [u8; 32],
    /// Configured send rate in bits per second.
    pub rate_bps: u64,
    /// Sender's group round-trip time estimate, microseconds.
    pub grtt_us: u32,
}

impl Announce {
    /// Layout of the payload (always valid for a parsed announce).
    pub fn layout(&self) -> Layout {
        Layout::new(self.object_size, self.symbol_size, self.block_symbols)
            .expect("validated at parse")
    }

    /// Layout of the manifest object.
    pub fn manifest_layout(&self) -> Layout {
        Layout::new(u64::from(self.manifest_len), self.symbol_size, self.block_symbols)
            .expect("validated at parse")
    }

    /// Layout of the hash list (object 2): its length follows from the payload's block count,
    /// so it is known before the list itself.
    pub fn hashes_layout(&self) -> Layout {
        Layout::new(hash_list_len(&self.layout()), self.symbol_size, self.block_symbols)
            .expect("validated at parse")
    }

    /// Layout of `object`.
    pub fn object_layout(&self, object: ObjectId) -> Layout {
        match object {
            ObjectId::Manifest => self.manifest_layout(),
            ObjectId::Payload => self.layout(),
            ObjectId::Hashes => self.hashes_layout(),
        }
    }

    /// The hash list's BLAKE3, once the sender announces it.
    pub fn hashes_hash(&self) -> Option<[u8; 32]> {
        (self.hashes_hash != [0; 32]).then_some(self.hashes_hash)
    }
}

/// Bytes of the hash list of a payload laid out as `layout`.
pub fn hash_list_len(layout: &Layout) -> u64 {
    u64::from(layout.block_count()) * BLOCK_HASH_LEN as u64
}

/// One encoding symbol of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a> {
    /// Object the block belongs to.
    pub object: ObjectId,
    /// Block number within the object.
    pub block: u32,
    /// Encoding symbol id (< 2^24): below the block's K a source symbol, else repair.
    pub esi: u32,
    /// The sender's sequence number of this datagram (one per data datagram, wrapping). A
    /// receiver's NAK quotes the highest it has seen, which tells the sender exactly which
    /// repairs are still on their way to it.
    pub seq: u32,
    /// Symbol bytes (length checked against the session's `T` by the receiver).
    pub symbol: &'a [u8],
}

/// A block and a symbol count: "needs this many more" in a NAK, "will send this many" in a
/// repair advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// Object.
    pub object: ObjectId,
    /// Block number.
    pub block: u32,
    /// Symbols.
    pub count: u16,
}

/// A list of 1..=[`MAX_NEEDS`] needs (NAK or repair advertisement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedList {
    /// NAK: the highest data sequence number the receiver has seen. Advertisement: the sender's
    /// next sequence number.
    pub seq: u32,
    /// NAK: the receiver's measured loss rate in parts per million (the sender's straggler
    /// policy reads it). Advertisement: 0.
    pub loss_ppm: u32,
    /// The needs, in the order sent.
    pub needs: Vec<Need>,
}

/// GRTT probe from the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Sender's clock when sent, microseconds.
    pub send_time_us: u64,
    /// Sender's current GRTT estimate, microseconds.
    pub grtt_us: u32,
    /// Sender's estimate of the group size (receivers scale their NAK backoff with it).
    pub group_size: u32,
    /// Share of receivers that should echo this probe, in 1/65535 (rate-limits echoes so that
    /// the sender hears a bounded number per probe whatever the group size).
    pub echo_share: u16,
}

/// A receiver's answer to a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// The probe's `send_time_us`, echoed.
    pub probe_time_us: u64,
    /// How long the receiver held the probe before echoing, microseconds.
    pub delay_us: u32,
    /// Receiver's measured loss rate, parts per million.
    pub loss_ppm: u32,
}

/// End of the sender's pass over the data: receivers may now NAK everything they lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flush {
    /// The sequence number the sender's next data datagram will carry.
    pub seq: u32,
}

/// Outcome a receiver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReportStatus {
    /// Verified and placed at the destination.
    Complete = 0,
    /// Gave up (verification, storage or protocol failure).
    Failed = 1,
}

/// A receiver's completion report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Outcome.
    pub status: ReportStatus,
    /// Bytes placed.
    pub bytes: u64,
    /// BLAKE3 of the object as verified on the receiver's disk.
    pub object_hash: [u8; 32],
    /// NAK datagrams sent.
    pub naks_sent: u32,
    /// NAKs suppressed by what the receiver heard.
    pub naks_suppressed: u32,
    /// Milliseconds from first datagram to completion.
    pub elapsed_ms: u32,
    /// Why it failed (0..=[`MAX_REASON`](super::MAX_REASON) bytes of UTF-8, no control
    /// characters; empty when complete). Emitting cuts a longer text to what fits.
    pub reason: String,
}

/// The sender's acknowledgement of reports: the listed nodes may stop repeating theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportAck {
    /// 1..=[`MAX_ACK_NODES`] node ids.
    pub nodes: Vec<u32>,
}

/// Why the sender squelches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SquelchReason {
    /// The listed receivers lost far more than the rest of the group and used up their repair
    /// budget: the sender no longer answers their NAKs.
    Straggler = 1,
    /// The sender no longer holds this block (it could not read it again): nobody will get it.
    Unavailable = 2,
}

/// The sender declines to repair: a receiver it names, or that lacks the named block, cannot
/// complete and should stop asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Squelch {
    /// Why.
    pub reason: SquelchReason,
    /// [`SquelchReason::Unavailable`]: the object of the block that is gone.
    pub object: ObjectId,
    /// [`SquelchReason::Unavailable`]: the block that is gone.
    pub block: u32,
    /// [`SquelchReason::Straggler`]: the dropped receivers (1..=[`MAX_ACK_NODES`]).
    /// [`SquelchReason::Unavailable`]: the receivers that asked (0..=[`MAX_ACK_NODES`]).
    pub nodes: Vec<u32>,
}

/// A parsed datagram body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Session announcement.
    Announce(Announce),
    /// Data symbol.
    Data(Data<'a>),
    /// Negative acknowledgement from a receiver.
    Nak(NeedList),
    /// Sender's announcement of repairs about to be sent.
    RepairAdvert(NeedList),
    /// GRTT probe.
    Probe(Probe),
    /// GRTT echo.
    Echo(Echo),
    /// End-of-pass flush.
    Flush(Flush),
    /// Completion report.
    Report(Report),
    /// Report acknowledgement.
    ReportAck(ReportAck),
    /// The sender declines to repair.
    Squelch(Squelch),
    /// The sender stops the session.
    Abort(Abort),
    /// A receiver joins, or the sender welcomes joined receivers.
    Hello(Hello),
    /// Signed mode: the push's signature.
    Signature(Signature),
    /// A compressed session's payload symbol.
    CData(CData<'a>),
    /// Blocks a receiver holds before the payload (`--changed-only`).
    Have(Have),
    /// Automatic rate control: the sender's tick or a receiver's report.
    Rate(RatePacket),
    /// A local repairer's advertisement or repair symbol.
    Repairer(RepairerPacket<'a>),
    /// The nodes a relay forwards reports for.
    Relayed(Relayed),
}

impl Packet<'_> {
    /// The type code of this packet.
    pub fn kind(&self) -> PacketType {
        match self {
            Packet::Announce(_) => PacketType::Announce,
            Packet::Data(_) => PacketType::Data,
            Packet::Nak(_) => PacketType::Nak,
            Packet::RepairAdvert(_) => PacketType::RepairAdvert,
            Packet::Probe(_) => PacketType::Probe,
            Packet::Echo(_) => PacketType::Echo,
            Packet::Flush(_) => PacketType::Flush,
            Packet::Report(_) => PacketType::Report,
            Packet::ReportAck(_) => PacketType::ReportAck,
            Packet::Squelch(_) => PacketType::Squelch,
            Packet::Abort(_) => PacketType::Abort,
            Packet::Hello(_) => PacketType::Hello,
            Packet::Signature(_) => PacketType::Signature,
            Packet::CData(_) => PacketType::CData,
            Packet::Have(_) => PacketType::Have,
            Packet::Rate(_) => PacketType::Rate,
            Packet::Repairer(_) => PacketType::Repairer,
            Packet::Relayed(_) => PacketType::Relayed,
        }
    }

    pub(super) fn parse_body(kind: u8, mut r: Reader<'_>) -> Result<Packet<'_>, WireError> {
        let packet = match kind {
            1 => Packet::Announce(parse_announce(&mut r)?),
            2 => {
                let object = ObjectId::parse(r.u8()?)?;
                let esi_bytes: [u8; 3] = r.array()?;
                let esi = u32::from_be_bytes([0, esi_bytes[0], esi_bytes[1], esi_bytes[2]]);
                let block = r.u32()?;
                let seq = r.u32()?;
                let symbol = r.rest();
                let len_ok =
                    (MIN_SYMBOL_SIZE as usize..=MAX_SYMBOL_SIZE as usize).contains(&symbol.len());
                if !len_ok {
                    return Err(if symbol.len() < MIN_SYMBOL_SIZE as usize {
                        WireError::Truncated
                    } else {
                        WireError::BadField("symbol length")
                    });
                }
                Packet::Data(Data { object, block, esi, seq, symbol })
            }
            3 => Packet::Nak(parse_needs(&mut r)?),
            4 => Packet::RepairAdvert(parse_needs(&mut r)?),
            5 => Packet::Probe(Probe {
                send_time_us: r.u64()?,
                grtt_us: r.u32()?,
                group_size: r.u32()?,
                echo_share: r.u16()?,
            }),
            6 => Packet::Echo(Echo {
                probe_time_us: r.u64()?,
                delay_us: r.u32()?,
                loss_ppm: r.u32()?,
            }),
            7 => Packet::Flush(Flush { seq: r.u32()? }),
            8 => Packet::Report(parse_report(&mut r)?),
            9 => {
                let n = usize::from(r.u16()?);
                if n == 0 || n > MAX_ACK_NODES {
                    return Err(WireError::BadField("ack count"));
                }
                check_exact(&r, n * 4)?;
                let nodes = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
                Packet::ReportAck(ReportAck { nodes })
            }
            10 => {
                let reason = match r.u8()? {
                    1 => SquelchReason::Straggler,
                    2 => SquelchReason::Unavailable,
                    _ => return Err(WireError::BadField("squelch reason")),
                };
                let object = ObjectId::parse(r.u8()?)?;
                let block = r.u32()?;
                let n = usize::from(r.u16()?);
                let min = usize::from(reason == SquelchReason::Straggler);
                if n < min || n > MAX_ACK_NODES {
                    return Err(WireError::BadField("squelch node count"));
                }
                check_exact(&r, n * 4)?;
                let nodes = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
                Packet::Squelch(Squelch { reason, object, block, nodes })
            }
            12 => Packet::Abort(abort::parse_abort(&mut r)?),
            13 => Packet::Hello(parse_hello(&mut r)?),
            11 => Packet::Signature(parse_signature(&mut r)?),
            17 => Packet::CData(cdata::parse_cdata(&mut r)?),
            14 => Packet::Have(parse_have(&mut r)?),
            16 => Packet::Rate(rate::parse_rate(&mut r)?),
            15 => Packet::Repairer(parse_repairer(&mut r)?),
            18 => Packet::Relayed(parse_relayed(&mut r)?),
            other => return Err(WireError::UnknownType(other)),
        };
        r.finish()?;
        Ok(packet)
    }

    pub(super) fn emit_body(&self, buf: &mut Vec<u8>) {
        match self {
            Packet::Announce(a) => {
                buf.put_u64(a.object_size);
                buf.put_u16(a.symbol_size);
                buf.put_u16(a.block_symbols);
                buf.put_u32(a.manifest_len);
                buf.extend_from_slice(&a.manifest_hash);
                buf.put_u32(a.hashes_len);
                buf.extend_from_slice(&a.hashes_hash);
                buf.put_u64(a.rate_bps);
                buf.put_u32(a.grtt_us);
            }
            Packet::Data(d) => {
                buf.put_u8(d.object as u8);
                buf.extend_from_slice(&d.esi.to_be_bytes()[1..]);
                buf.put_u32(d.block);
                buf.put_u32(d.seq);
                buf.extend_from_slice(d.symbol);
            }
            Packet::Nak(l) | Packet::RepairAdvert(l) => {
                buf.put_u32(l.seq);
                buf.put_u32(l.loss_ppm);
                buf.put_u16(l.needs.len() as u16);
                emit_need_entries(&l.needs, buf);
            }
            Packet::Probe(p) => {
                buf.put_u64(p.send_time_us);
                buf.put_u32(p.grtt_us);
                buf.put_u32(p.group_size);
                buf.put_u16(p.echo_share);
            }
            Packet::Echo(e) => {
                buf.put_u64(e.probe_time_us);
                buf.put_u32(e.delay_us);
                buf.put_u32(e.loss_ppm);
            }
            Packet::Flush(f) => buf.put_u32(f.seq),
            Packet::Report(r) => {
                buf.put_u8(r.status as u8);
                buf.put_u64(r.bytes);
                buf.extend_from_slice(&r.object_hash);
                buf.put_u32(r.naks_sent);
                buf.put_u32(r.naks_suppressed);
                buf.put_u32(r.elapsed_ms);
                emit_reason(&r.reason, buf);
            }
            Packet::ReportAck(a) => {
                buf.put_u16(a.nodes.len() as u16);
                for n in &a.nodes {
                    buf.put_u32(*n);
                }
            }
            Packet::Squelch(q) => {
                buf.put_u8(q.reason as u8);
                buf.put_u8(q.object as u8);
                buf.put_u32(q.block);
                buf.put_u16(q.nodes.len() as u16);
                for n in &q.nodes {
                    buf.put_u32(*n);
                }
            }
            Packet::Abort(a) => abort::emit_abort(a, buf),
            Packet::Hello(h) => emit_hello(h, buf),
            Packet::Signature(s) => emit_signature(s, buf),
            Packet::CData(c) => cdata::emit_cdata(c, buf),
            Packet::Have(h) => emit_have(h, buf),
            Packet::Rate(p) => rate::emit_rate(p, buf),
            Packet::Repairer(p) => emit_repairer(p, buf),
            Packet::Relayed(p) => emit_relayed(p, buf),
        }
    }
}

fn check_exact(r: &Reader<'_>, want: usize) -> Result<(), WireError> {
    match r.remaining().cmp(&want) {
        std::cmp::Ordering::Less => Err(WireError::Truncated),
        std::cmp::Ordering::Greater => Err(WireError::TrailingBytes(r.remaining() - want)),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

fn parse_announce(r: &mut Reader<'_>) -> Result<Announce, WireError> {
    let a = Announce {
        object_size: r.u64()?,
        symbol_size: r.u16()?,
        block_symbols: r.u16()?,
        manifest_len: r.u32()?,
        manifest_hash: r.array()?,
        hashes_len: r.u32()?,
        hashes_hash: r.array()?,
        rate_bps: r.u64()?,
        grtt_us: r.u32()?,
    };
    if a.manifest_len == 0 || a.manifest_len > MAX_MANIFEST_LEN {
        return Err(WireError::BadField("manifest length"));
    }
    let layout = Layout::new(a.object_size, a.symbol_size, a.block_symbols)
        .map_err(|_| WireError::BadField("layout"))?;
    let list_len = hash_list_len(&layout);
    if list_len > u64::from(MAX_HASH_LIST_LEN) {
        return Err(WireError::BadField("too many blocks"));
    }
    // Unknown: no length and no hash. Known: exactly one hash per block.
    let known = a.hashes_hash != [0; 32];
    let len_ok = if known { u64::from(a.hashes_len) == list_len } else { a.hashes_len == 0 };
    if !len_ok {
        return Err(WireError::BadField("hash list length"));
    }
    Ok(a)
}

fn parse_needs(r: &mut Reader<'_>) -> Result<NeedList, WireError> {
    let seq = r.u32()?;
    let loss_ppm = r.u32()?;
    let n = usize::from(r.u16()?);
    if n == 0 || n > MAX_NEEDS {
        return Err(WireError::BadField("need count"));
    }
    check_exact(r, n * NEED_LEN)?;
    let needs = parse_need_entries(r, n, "need count zero")?;
    Ok(NeedList { seq, loss_ppm, needs })
}

/// `n` needs of [`NEED_LEN`] bytes each (object, block, count; the caller has checked `n`
/// and the length); a zero count is refused as `BadField(zero)`. Shared by NAKs, repair
/// advertisements and repairer adverts.
pub(super) fn parse_need_entries(
    r: &mut Reader<'_>,
    n: usize,
    zero: &'static str,
) -> Result<Vec<Need>, WireError> {
    let mut needs = Vec::with_capacity(n);
    for _ in 0..n {
        let object = ObjectId::parse(r.u8()?)?;
        let block = r.u32()?;
        let count = r.u16()?;
        if count == 0 {
            return Err(WireError::BadField(zero));
        }
        needs.push(Need { object, block, count });
    }
    Ok(needs)
}

/// The wire form of `needs`, as [`parse_need_entries`] reads it.
pub(super) fn emit_need_entries(needs: &[Need], buf: &mut Vec<u8>) {
    for n in needs {
        buf.put_u8(n.object as u8);
        buf.put_u32(n.block);
        buf.put_u16(n.count);
    }
}

fn parse_report(r: &mut Reader<'_>) -> Result<Report, WireError> {
    let status = match r.u8()? {
        0 => ReportStatus::Complete,
        1 => ReportStatus::Failed,
        _ => return Err(WireError::BadField("report status")),
    };
    Ok(Report {
        status,
        bytes: r.u64()?,
        object_hash: r.array()?,
        naks_sent: r.u32()?,
        naks_suppressed: r.u32()?,
        elapsed_ms: r.u32()?,
        reason: parse_reason(r)?,
    })
}
