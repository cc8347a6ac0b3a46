//! The Hello packet (type 13) and the two checked text fields the sender's roster keeps: a
//! receiver's host name and a failed receiver's reason (carried in its report).
//!
//! ```text
//! hello    role u8 = 1 (join)    | name_len u8 (1..=64) | host name
//!          role u8 = 2 (welcome) | count u16 (1..=256)  | count × node id u32
//!          role u8 = 3 (repairer join)
//!          role u8 = 4 (slots)   | count u8 (1..=REPAIR_SLOTS) | count × (node id u32, slot u8)
//! ```
//!
//! A local repairer (the header's node) asks for an ESI slot with a *repairer join* and repeats
//! it until the sender's *slots* Hello names it; the sender assigns each repairer one slot of
//! 1..=[`REPAIR_SLOTS`] (see [`super::slot_esis`]) and lists every assignment it made.
//!
//! A receiver sends a *join* (its node id is in the header) when it locks onto a session and
//! repeats it until the sender answers with a *welcome* naming it (or its tries run out). The
//! welcome is a Hello of its own rather than a [`ReportAck`](super::ReportAck): a receiver that
//! reports before its join was answered must never take the answer to its join for the
//! acknowledgement of its report.
//!
//! Host names are 1..=[`MAX_HOST_NAME`] bytes of `A-Z a-z 0-9 . - _` (a DNS name, or a container's
//! name); anything else is refused at parse, so nothing a forged datagram carries can reach a
//! terminal or a JSON consumer unchecked. A failure reason is 0..=[`MAX_REASON`] bytes of UTF-8
//! without control characters.

use super::cursor::{Reader, Writer};
use super::{WireError, MAX_ACK_NODES, REPAIR_SLOTS};
use std::fmt;

/// Longest host name a Hello carries (bytes).
pub const MAX_HOST_NAME: usize = 64;
/// Longest failure reason a report carries (bytes).
pub const MAX_REASON: usize = 200;

const ROLE_JOIN: u8 = 1;
const ROLE_WELCOME: u8 = 2;
const ROLE_REPAIRER_JOIN: u8 = 3;
const ROLE_SLOTS: u8 = 4;

/// A host name as the wire carries it: 1..=[`MAX_HOST_NAME`] bytes of `A-Z a-z 0-9 . - _`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

impl HostName {
    /// `name` if it is a valid host name, else why not.
    pub fn new(name: &str) -> Result<Self, WireError> {
        if name.is_empty() || name.len() > MAX_HOST_NAME {
            return Err(WireError::BadField("host name length"));
        }
        let ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !ok {
            return Err(WireError::BadField("host name character"));
        }
        Ok(HostName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Hello datagram's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A receiver (the header's node) joins the session and says who it is.
    Join {
        /// Its host name.
        host: HostName,
    },
    /// The sender heard the joins of these receivers: they may stop repeating theirs.
    Welcome {
        /// 1..=[`MAX_ACK_NODES`] node ids.
        nodes: Vec<u32>,
    },
    /// A local repairer (the header's node) asks the sender for an ESI slot.
    RepairerJoin,
    /// The sender's repairer slot assignments: 1..=[`REPAIR_SLOTS`] (node id, slot) pairs,
    /// slots in 1..=[`REPAIR_SLOTS`].
    Slots {
        /// Node and slot.
        slots: Vec<(u32, u8)>,
    },
}

/// Parse a Hello body (the caller checks that nothing follows).
pub(super) fn parse_hello(r: &mut Reader<'_>) -> Result<Hello, WireError> {
    match r.u8()? {
        ROLE_JOIN => {
            let len = usize::from(r.u8()?);
            let bytes = r.bytes(len)?;
            let name = std::str::from_utf8(bytes).map_err(|_| WireError::BadField("host name"))?;
            Ok(Hello::Join { host: HostName::new(name)? })
        }
        ROLE_WELCOME => {
            let n = usize::from(r.u16()?);
            if n == 0 || n > MAX_ACK_NODES {
                return Err(WireError::BadField("welcome count"));
            }
            if r.remaining() < n * 4 {
                return Err(WireError::Truncated);
            }
            let nodes = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Ok(Hello::Welcome { nodes })
        }
        ROLE_REPAIRER_JOIN => Ok(Hello::RepairerJoin),
        ROLE_SLOTS => {
            let n = r.u8()?;
            if n == 0 || n > REPAIR_SLOTS {
                return Err(WireError::BadField("slot count"));
            }
            let mut slots = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let node = r.u32()?;
                let slot = r.u8()?;
                if slot == 0 || slot > REPAIR_SLOTS {
                    return Err(WireError::BadField("slot"));
                }
                slots.push((node, slot));
            }
            Ok(Hello::Slots { slots })
        }
        _ => Err(WireError::BadField("hello role")),
    }
}

/// Emit a Hello body. A welcome is built with 1..=[`MAX_ACK_NODES`] nodes.
pub(super) fn emit_hello(h: &Hello, buf: &mut Vec<u8>) {
    match h {
        Hello::Join { host } => {
            buf.put_u8(ROLE_JOIN);
            buf.put_u8(host.0.len() as u8);
            buf.extend_from_slice(host.0.as_bytes());
        }
        Hello::Welcome { nodes } => {
            debug_assert!(!nodes.is_empty() && nodes.len() <= MAX_ACK_NODES);
            buf.put_u8(ROLE_WELCOME);
            buf.put_u16(nodes.len() as u16);
            for n in nodes {
                buf.put_u32(*n);
            }
        }
        Hello::RepairerJoin => buf.put_u8(ROLE_REPAIRER_JOIN),
        Hello::Slots { slots } => {
            debug_assert!(!slots.is_empty() && slots.len() <= usize::from(REPAIR_SLOTS));
            buf.put_u8(ROLE_SLOTS);
            buf.put_u8(slots.len() as u8);
            for (node, slot) in slots {
                buf.put_u32(*node);
                buf.put_u8(*slot);
            }
        }
    }
}

/// Parse a report's failure reason: length u8 (0..=[`MAX_REASON`]) and UTF-8 without control
/// characters.
pub(super) fn parse_reason(r: &mut Reader<'_>) -> Result<String, WireError> {
    let len = usize::from(r.u8()?);
    if len > MAX_REASON {
        return Err(WireError::BadField("reason length"));
    }
    let text = std::str::from_utf8(r.bytes(len)?).map_err(|_| WireError::BadField("reason"))?;
    if text.chars().any(char::is_control) {
        return Err(WireError::BadField("reason character"));
    }
    Ok(text.to_owned())
}

/// Emit a report's failure reason (cut to what [`reason_text`] keeps, so the body always
/// parses).
pub(super) fn emit_reason(reason: &str, buf: &mut Vec<u8>) {
    let text = reason_text(reason);
    buf.put_u8(text.len() as u8);
    buf.extend_from_slice(text.as_bytes());
}

/// `why` as a report can carry it: control characters (newlines included) become spaces, and
/// it is cut at a character boundary to at most [`MAX_REASON`] bytes.
pub fn reason_text(why: &str) -> String {
    let mut out = String::with_capacity(why.len().min(MAX_REASON));
    for c in why.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_REASON {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{emit, parse, Header, Packet, Report, ReportStatus};
    use super::*;

    fn header() -> Header {
        Header { flags: 0, session: 7, node: 0x0a0b_0c0d }
    }

    fn roundtrip(p: &Packet<'_>) -> Packet<'static> {
        let mut buf = Vec::new();
        emit(&header(), p, &mut buf);
        let (h, back) = parse(&buf).expect("parses");
        assert_eq!(h, header());
        match back {
            Packet::Hello(h) => Packet::Hello(h),
            Packet::Report(r) => Packet::Report(r),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A Hello datagram with `body` as written, checksum and all.
    fn raw(body: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        buf.extend_from_slice(b"MCST");
        buf.extend_from_slice(&[1, 13, 0, 0]);
        buf.extend_from_slice(&7u32.to_be_bytes());
        buf.extend_from_slice(&9u32.to_be_bytes());
        buf.extend_from_slice(body);
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        buf
    }

    fn join(name: &[u8]) -> Vec<u8> {
        let mut body = vec![ROLE_JOIN, name.len() as u8];
        body.extend_from_slice(name);
        raw(&body)
    }

    #[test]
    fn join_and_welcome_round_trip() {
        for name in ["a", "web-01.example.org", "container_7", &"x".repeat(64)] {
            let p = Packet::Hello(Hello::Join { host: HostName::new(name).unwrap() });
            assert_eq!(roundtrip(&p), p, "{name}");
        }
        for n in [1usize, MAX_ACK_NODES] {
            let p = Packet::Hello(Hello::Welcome { nodes: (0..n as u32).collect() });
            assert_eq!(roundtrip(&p), p, "{n} nodes");
        }
    }

    #[test]
    fn host_names_are_checked_at_the_limits() {
        assert!(parse(&join(&[b'h'; 64])).is_ok(), "64 bytes pass");
        assert_eq!(parse(&join(&[b'h'; 65])).unwrap_err(), WireError::BadField("host name length"));
        assert_eq!(parse(&join(b"")).unwrap_err(), WireError::BadField("host name length"));
        for bad in [&b"a b"[..], b"a\nb", b"\x1b[31m", b"a/b", b"h\xc3\xa9", b"\xff", b"a\0"] {
            assert!(parse(&join(bad)).is_err(), "{bad:?} refused");
            assert!(std::str::from_utf8(bad).map_or(true, |s| HostName::new(s).is_err()));
        }
        // A length that claims more than the datagram holds is truncated, not read past.
        assert_eq!(parse(&raw(&[ROLE_JOIN, 10, b'a'])).unwrap_err(), WireError::Truncated);
        let past = raw(&[ROLE_JOIN, 2, b'a', b'b', b'c']);
        assert_eq!(parse(&past).unwrap_err(), WireError::TrailingBytes(1), "a byte past the name");
    }

    #[test]
    fn welcome_counts_and_roles_are_checked() {
        let welcome = |n: u16, ids: usize| {
            let mut body = vec![ROLE_WELCOME];
            body.extend_from_slice(&n.to_be_bytes());
            body.extend(vec![0u8; ids * 4]);
            raw(&body)
        };
        assert!(parse(&welcome(256, 256)).is_ok());
        assert_eq!(parse(&welcome(257, 257)).unwrap_err(), WireError::BadField("welcome count"));
        assert_eq!(parse(&welcome(0, 0)).unwrap_err(), WireError::BadField("welcome count"));
        assert_eq!(parse(&welcome(3, 2)).unwrap_err(), WireError::Truncated);
        assert_eq!(parse(&welcome(2, 3)).unwrap_err(), WireError::TrailingBytes(4));
        assert_eq!(parse(&raw(&[5, 1, b'a'])).unwrap_err(), WireError::BadField("hello role"));
        assert_eq!(parse(&raw(&[])).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn repairer_joins_and_slots_round_trip_and_are_checked() {
        let p = Packet::Hello(Hello::RepairerJoin);
        assert_eq!(roundtrip(&p), p);
        for n in [1u8, REPAIR_SLOTS] {
            let p = Packet::Hello(Hello::Slots {
                slots: (1..=n).map(|s| (u32::from(s) * 7, s)).collect(),
            });
            assert_eq!(roundtrip(&p), p, "{n} slots");
        }
        let slots = |n: u8, pairs: &[(u32, u8)]| {
            let mut body = vec![ROLE_SLOTS, n];
            for (node, slot) in pairs {
                body.extend_from_slice(&node.to_be_bytes());
                body.push(*slot);
            }
            parse(&raw(&body)).map(|_| ())
        };
        let full: Vec<(u32, u8)> = (1..=REPAIR_SLOTS).map(|s| (1, s)).collect();
        assert_eq!(slots(REPAIR_SLOTS, &full), Ok(()));
        let over: Vec<(u32, u8)> = (0..=REPAIR_SLOTS).map(|_| (1, 1)).collect();
        assert_eq!(slots(REPAIR_SLOTS + 1, &over), Err(WireError::BadField("slot count")));
        assert_eq!(slots(0, &[]), Err(WireError::BadField("slot count")));
        assert_eq!(slots(1, &[(1, 0)]), Err(WireError::BadField("slot")));
        assert_eq!(slots(1, &[(1, REPAIR_SLOTS)]), Ok(()));
        assert_eq!(slots(1, &[(1, REPAIR_SLOTS + 1)]), Err(WireError::BadField("slot")));
        assert_eq!(slots(2, &[(1, 1)]), Err(WireError::Truncated));
        assert_eq!(parse(&raw(&[ROLE_REPAIRER_JOIN, 0])).unwrap_err(), WireError::TrailingBytes(1));
    }

    fn report(reason: &str) -> Report {
        Report {
            status: ReportStatus::Failed,
            bytes: 5,
            object_hash: [3; 32],
            naks_sent: 1,
            naks_suppressed: 2,
            elapsed_ms: 3,
            reason: reason.into(),
        }
    }

    #[test]
    fn report_reasons_round_trip_up_to_the_limit() {
        for reason in ["", "storing failed: disk full", &"é".repeat(100)] {
            let p = Packet::Report(report(reason));
            assert_eq!(roundtrip(&p), p, "{reason}");
        }
        // Emitting cuts what cannot be carried instead of producing a body that fails to parse.
        let p = Packet::Report(report(&"y".repeat(201)));
        assert_eq!(roundtrip(&p), Packet::Report(report(&"y".repeat(200))));
    }

    #[test]
    fn report_reasons_are_checked() {
        let with_reason = |len: u8, text: &[u8]| {
            let mut buf = Vec::new();
            emit(&header(), &Packet::Report(report("")), &mut buf);
            buf.truncate(buf.len() - 5); // the checksum and the empty reason's length
            buf.push(len);
            buf.extend_from_slice(text);
            let crc = crc32fast::hash(&buf);
            buf.extend_from_slice(&crc.to_be_bytes());
            parse(&buf).map(|_| ())
        };
        assert_eq!(with_reason(200, &[b'r'; 200]), Ok(()));
        assert_eq!(with_reason(201, &[b'r'; 201]), Err(WireError::BadField("reason length")));
        assert_eq!(with_reason(2, b"\xc3("), Err(WireError::BadField("reason")));
        assert_eq!(with_reason(3, b"a\nb"), Err(WireError::BadField("reason character")));
        assert_eq!(with_reason(3, b"\x1b[m"), Err(WireError::BadField("reason character")));
        assert_eq!(with_reason(4, b"abc"), Err(WireError::Truncated));
        assert_eq!(with_reason(2, b"abc"), Err(WireError::TrailingBytes(1)));
    }

    #[test]
    fn reason_text_cuts_at_a_character_boundary_and_blanks_controls() {
        assert_eq!(reason_text("a\nb\tc"), "a b c");
        let cut = reason_text(&"é".repeat(101)); // 202 bytes
        assert_eq!(cut.len(), 200);
        let odd = reason_text(&format!("x{}", "é".repeat(100))); // 201 bytes
        assert_eq!(odd.len(), 199, "the last 2-byte character does not fit");
    }
}
