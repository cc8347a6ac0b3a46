//! The Rate packet (type 16) of automatic rate control, in two kinds:
//!
//! - a **tick** from the sender to the group, every control interval: its send time (receivers
//!   measure one-way delay against it), the rate in force, the current limiting receiver (which
//!   always answers) and the share of the other, congested receivers that should answer;
//! - a **report** from a receiver to the sender: the tick it answers (the sender reads the RTT
//!   from it), its queueing delay, loss and receive rate over the last interval, ECN CE marks,
//!   and whether it judges itself congested.
//!
//! ```text
//! tick    kind 0 u8 | send_time_us u64 | rate_bps u64 | clr_node u32 | report_share u16
//! report  kind 1 u8 | tick_time_us u64 | hold_us u32 | queue_delay_us u32 | loss_ppm u32
//!         | recv_rate_kbps u32 | ce_ppm u32 | flags u8
//!         [ | overflow_ppm u32 ]                                   (extended report)
//! ```
//!
//! Parsing checks the kind, the ppm fields (at most 10^6) and the flags (unknown bits refused).
//!
//! **Compatibility.** Builds before the extended report parse a report of exactly the base
//! length and refuse anything longer, so a receiver sends the extension only when the tick it
//! answers says its sender reads it: the sender sets [`FLAG_RATE_EXT`] in the header of every
//! tick ([`tick_header`]; older receivers ignore header flags they do not know, and the tick
//! body is unchanged), and the receiver answers a tick without it in the base layout. This
//! build parses both layouts (the base one gives `overflow_ppm: None`); anything else is
//! refused as before, so that every packet that parses emits back to the same bytes.

use crate::proto::wire::cursor::{Reader, Writer};
use crate::proto::wire::WireError;

/// Bytes of a tick body.
pub const RATE_TICK_LEN: usize = 1 + 8 + 8 + 4 + 2;
/// Bytes of a report body.
pub const RATE_REPORT_LEN: usize = 1 + 8 + 4 + 4 + 4 + 4 + 4 + 1;
/// Report flag: the receiver judges itself congested (queue building, loss growing, CE marks).
pub const RATE_CONGESTED: u8 = 0x01;
/// Report flag: the loss part of the judgement (loss above the receiver's random-loss baseline).
pub const RATE_LOSS_EVENT: u8 = 0x02;
const KNOWN_FLAGS: u8 = RATE_CONGESTED | RATE_LOSS_EVENT;
/// The header a sender emits `packet` with: `header`, plus [`FLAG_RATE_EXT`] on a tick.
pub fn tick_header(
    header: &crate::proto::wire::Header,
    packet: &crate::proto::wire::Packet<'_>,
) -> crate::proto::wire::Header {
    match packet {
        crate::proto::wire::Packet::Rate(RatePacket::Tick(_)) => {
            crate::proto::wire::Header { flags: header.flags | FLAG_RATE_EXT, ..*header }
        }
        _ => *header,
    }
}

/// Bytes the extended report adds (`overflow_ppm`).
pub const RATE_REPORT_EXT_LEN: usize = 4;
/// Header flag on a tick: its sender reads extended reports (see the module docs). Set by
/// the sender on every tick ([`tick_header`]); meaningless on other packets.
pub const FLAG_RATE_EXT: u16 = 0x0001;
const PPM_MAX: u32 = 1_000_000;

/// The sender's control tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateTick {
    /// Sender's clock when sent, microseconds.
    pub send_time_us: u64,
    /// The send rate in force, bits per second.
    pub rate_bps: u64,
    /// The current limiting receiver (0: none yet); it answers every tick.
    pub clr_node: u32,
    /// Share of the other receivers that should answer when congested, in 1/65535.
    pub report_share: u16,
}

/// A receiver's congestion report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateReport {
    /// The answered tick's `send_time_us`.
    pub tick_time_us: u64,
    /// How long the receiver held the tick before answering, microseconds.
    pub hold_us: u32,
    /// Smoothed one-way delay above the lowest seen (queueing), microseconds.
    pub queue_delay_us: u32,
    /// Data loss over the last interval, parts per million.
    pub loss_ppm: u32,
    /// Data received over the last interval, kbit/s.
    pub recv_rate_kbps: u32,
    /// Share of data datagrams with ECN CE over the last interval, parts per million.
    pub ce_ppm: u32,
    /// [`RATE_CONGESTED`], [`RATE_LOSS_EVENT`].
    pub flags: u8,
    /// Extended report only: the share of the latest loss window's data datagrams that the
    /// receiver's own kernel dropped (socket receive buffer full: the host did not keep up), parts per
    /// million, part of `loss_ppm`. `None`: a base-layout report (an older receiver, or one
    /// answering an older sender), which says nothing about where its loss happened.
    pub overflow_ppm: Option<u32>,
}

impl RateReport {
    /// Whether the receiver judges itself congested.
    pub fn congested(&self) -> bool {
        self.flags & RATE_CONGESTED != 0
    }
}

/// A Rate packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatePacket {
    /// Sender to group.
    Tick(RateTick),
    /// Receiver to sender.
    Report(RateReport),
}

fn ppm(v: u32) -> Result<u32, WireError> {
    if v > PPM_MAX {
        return Err(WireError::BadField("rate ppm"));
    }
    Ok(v)
}

/// Parse a Rate body (the caller checks that nothing follows).
pub(super) fn parse_rate(r: &mut Reader<'_>) -> Result<RatePacket, WireError> {
    match r.u8()? {
        0 => Ok(RatePacket::Tick(RateTick {
            send_time_us: r.u64()?,
            rate_bps: r.u64()?,
            clr_node: r.u32()?,
            report_share: r.u16()?,
        })),
        1 => {
            let mut report = RateReport {
                tick_time_us: r.u64()?,
                hold_us: r.u32()?,
                queue_delay_us: r.u32()?,
                loss_ppm: ppm(r.u32()?)?,
                recv_rate_kbps: r.u32()?,
                ce_ppm: ppm(r.u32()?)?,
                flags: r.u8()?,
                overflow_ppm: None,
            };
            if r.remaining() >= RATE_REPORT_EXT_LEN {
                report.overflow_ppm = Some(ppm(r.u32()?)?);
            }

            if report.flags & !KNOWN_FLAGS != 0 {
                return Err(WireError::BadField("rate flags"));
            }
            Ok(RatePacket::Report(report))
        }
        _ => Err(WireError::BadField("rate kind")),
    }
}

/// Emit a Rate body.
pub(super) fn emit_rate(p: &RatePacket, buf: &mut Vec<u8>) {
    match p {
        RatePacket::Tick(t) => {
            buf.put_u8(0);
            buf.put_u64(t.send_time_us);
            buf.put_u64(t.rate_bps);
            buf.put_u32(t.clr_node);
            buf.put_u16(t.report_share);
        }
        RatePacket::Report(r) => {
            buf.put_u8(1);
            buf.put_u64(r.tick_time_us);
            buf.put_u32(r.hold_us);
            buf.put_u32(r.queue_delay_us);
            buf.put_u32(r.loss_ppm.min(PPM_MAX));
            buf.put_u32(r.recv_rate_kbps);
            buf.put_u32(r.ce_ppm.min(PPM_MAX));
            buf.put_u8(r.flags & KNOWN_FLAGS);
            if let Some(o) = r.overflow_ppm {
                buf.put_u32(o.min(PPM_MAX));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::wire::{self, Header, Packet, WireError};

    use super::*;

    fn round_trip(p: RatePacket) -> Vec<u8> {
        let header = Header { flags: 0, session: 7, node: 9 };
        let mut buf = Vec::new();
        wire::emit(&header, &Packet::Rate(p), &mut buf);
        let (h, parsed) = wire::parse(&buf).expect("parses");
        assert_eq!(h, header);
        assert_eq!(parsed, Packet::Rate(p));
        buf
    }

    fn report(flags: u8, loss_ppm: u32) -> RatePacket {
        RatePacket::Report(RateReport {
            tick_time_us: 123_456_789,
            hold_us: 17,
            queue_delay_us: 2500,
            loss_ppm,
            recv_rate_kbps: 950_000,
            ce_ppm: 0,
            flags,
            overflow_ppm: None,
        })
    }

    fn extended(overflow_ppm: u32) -> RatePacket {
        match report(RATE_CONGESTED, 50_000) {
            RatePacket::Report(r) => {
                RatePacket::Report(RateReport { overflow_ppm: Some(overflow_ppm), ..r })
            }
            t => t,
        }
    }

    /// What a build before the extended report accepts: exactly the base body.
    fn old_parser_accepts(datagram: &[u8]) -> bool {
        datagram.len() == 16 + RATE_REPORT_LEN + 4 && wire::parse(datagram).is_ok()
    }

    #[test]
    fn the_base_layout_still_parses_and_the_extended_one_parses_in_both_directions() {
        // An older receiver's report (base layout) parses here, without overflow.
        let base = round_trip(report(RATE_CONGESTED, 20_000));
        assert_eq!(base.len(), 16 + RATE_REPORT_LEN + 4);
        assert!(old_parser_accepts(&base));
        // The extended one parses here with its field...
        let ext = round_trip(extended(30_000));
        assert_eq!(ext.len(), 16 + RATE_REPORT_LEN + RATE_REPORT_EXT_LEN + 4);
        // ...and an older sender would refuse it: which is why it only answers ticks that
        // carry FLAG_RATE_EXT (checked in the meter's tests), and why every tick this build
        // sends carries the flag in the header while its body keeps the old, exact length.
        assert!(!old_parser_accepts(&ext));
        let header = Header { flags: 0, session: 7, node: 9 };
        let tick = RatePacket::Tick(RateTick {
            send_time_us: 1,
            rate_bps: 2,
            clr_node: 3,
            report_share: 4,
        });
        let mut buf = Vec::new();
        let tick = Packet::Rate(tick);
        wire::emit(&tick_header(&header, &tick), &tick, &mut buf);
        assert_eq!(buf.len(), 16 + RATE_TICK_LEN + 4);
        let (h, _) = wire::parse(&buf).expect("tick parses");
        assert_eq!(h.flags & FLAG_RATE_EXT, FLAG_RATE_EXT);
        // Other packets do not get the flag.
        assert_eq!(tick_header(&header, &Packet::Rate(extended(1))), header);
    }

    #[test]
    fn only_the_two_layouts_parse() {
        let header = Header { flags: 0, session: 7, node: 9 };
        let with_tail = |p: RatePacket, tail: &[u8]| {
            let mut buf = Vec::new();
            wire::emit(&header, &Packet::Rate(p), &mut buf);
            buf.truncate(buf.len() - 4);
            buf.extend_from_slice(tail);
            let crc = crc32fast::hash(&buf);
            buf.extend_from_slice(&crc.to_be_bytes());
            wire::parse(&buf).map(|_| ())
        };
        // A base report with 3 bytes more (not a whole field), an extended one with 1 more.
        assert_eq!(with_tail(report(0, 0), &[1, 2, 3]), Err(WireError::TrailingBytes(3)));
        assert_eq!(with_tail(extended(7), &[1]), Err(WireError::TrailingBytes(1)));
        assert!(with_tail(extended(7), &[]).is_ok());
    }

    /// Rewrite one body byte of an emitted packet (CRC recomputed) and parse it again.
    fn mutated(p: RatePacket, at: usize, f: impl FnOnce(&mut [u8])) -> Result<(), WireError> {
        let header = Header { flags: 0, session: 7, node: 9 };
        let mut buf = Vec::new();
        wire::emit(&header, &Packet::Rate(p), &mut buf);
        let body_end = buf.len() - 4;
        f(&mut buf[16 + at..body_end]);
        buf.truncate(body_end);
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        wire::parse(&buf).map(|_| ())
    }

    #[test]
    fn bad_fields_are_refused() {
        // ppm at the limit parses, one past it does not.
        assert!(mutated(report(0, 1_000_000), 0, |_| {}).is_ok());
        let over = mutated(report(0, 1_000_000), 17, |b| {
            b[..4].copy_from_slice(&1_000_001u32.to_be_bytes())
        });
        assert_eq!(over, Err(WireError::BadField("rate ppm")));
        // Unknown flag bit, unknown kind.
        let flags = mutated(report(0, 0), RATE_REPORT_LEN - 1, |b| b[0] = 0x04);
        assert_eq!(flags, Err(WireError::BadField("rate flags")));
        let kind = mutated(report(0, 0), 0, |b| b[0] = 2);
        assert_eq!(kind, Err(WireError::BadField("rate kind")));
        // The extension's ppm: at the limit parses, one past it does not.
        assert!(mutated(extended(1_000_000), 0, |_| {}).is_ok());
        let over = mutated(extended(0), RATE_REPORT_LEN, |b| {
            b[..4].copy_from_slice(&1_000_001u32.to_be_bytes())
        });
        assert_eq!(over, Err(WireError::BadField("rate ppm")));
    }
}
