//! The relayed packet (type 18): a relay tells the sender upstream which nodes it forwards
//! reports for, so the sender's report can say which relay each far host came through.
//!
//! ```text
//! relayed   count u16 (1..=MAX_ACK_NODES) | count × node u32
//! ```
//!
//! The header's node is the relay's own. The sender believes it only from a node it heard, at
//! that node's address, and only for listed nodes heard at that same address (a forged one can
//! at most relabel reports the forger itself sent).

use super::cursor::{Reader, Writer};
use super::{WireError, MAX_ACK_NODES};

/// The nodes a relay forwards reports for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// 1..=[`MAX_ACK_NODES`] node ids.
    pub nodes: Vec<u32>,
}

pub(super) fn parse_relayed(r: &mut Reader<'_>) -> Result<Relayed, WireError> {
    let n = usize::from(r.u16()?);
    if n == 0 || n > MAX_ACK_NODES {
        return Err(WireError::BadField("relayed node count"));
    }
    if r.remaining() != n * 4 {
        return Err(WireError::Truncated);
    }
    let nodes = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
    Ok(Relayed { nodes })
}

pub(super) fn emit_relayed(p: &Relayed, buf: &mut Vec<u8>) {
    debug_assert!(!p.nodes.is_empty() && p.nodes.len() <= MAX_ACK_NODES);
    buf.put_u16(p.nodes.len() as u16);
    for n in &p.nodes {
        buf.put_u32(*n);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{emit, parse, Header, Packet};
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let h = Header { flags: 0, session: 7, node: 9 };
        let mut buf = Vec::new();
        for n in [1usize, MAX_ACK_NODES] {
            let p = Packet::Relayed(Relayed { nodes: (0..n as u32).collect() });
            emit(&h, &p, &mut buf);
            assert_eq!(parse(&buf).unwrap(), (h, p));
        }
        // One node past the limit, and none, are refused (the count is checked before any
        // allocation); a count that disagrees with the body too.
        for n in [0usize, MAX_ACK_NODES + 1] {
            let mut body = Vec::new();
            body.put_u16(n as u16);
            body.extend(std::iter::repeat_n(0u8, n * 4));
            assert!(parse_relayed(&mut Reader::new(&body)).is_err(), "{n} nodes");
        }
        let mut body = Vec::new();
        body.put_u16(2);
        body.put_u32(5);
        assert!(parse_relayed(&mut Reader::new(&body)).is_err(), "truncated");
    }
}
