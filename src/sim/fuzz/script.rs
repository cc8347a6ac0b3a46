//! The input format of the state-machine harnesses: a byte string read as a sequence of steps,
//! so that a fuzzer's mutations (flips, truncations, splices) stay meaningful and the seed
//! corpus can be written as readable steps ([`Step::encode`]). Any byte string is a valid
//! script: a length that runs past the end takes what is left.
//!
//! ```text
//! step  tag u8, then by tag % 8:
//!   0 raw datagram     len u16, bytes        handed over as they are
//!   1 sealed datagram  len u16, bytes        magic, version and CRC-32 made right
//!   2 peer datagram    len u16, bytes        sealed, and session and node set to the peer's
//!   3 tick             u16                   the clock moves on by that many 100 µs
//!   4 wake             -                     the clock moves to the next deadline
//!   5 decode one       u8                    a pending decode job (index mod count) is done
//!   6 decode all       -                     every pending decode job is done
//!   7 store            -                     storage answers: ok (tag < 128) or a failure
//! ```

use crate::proto::wire::{HEADER_LEN, MAGIC, TRAILER_LEN, VERSION};

/// One step of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A datagram, and how much of its framing the harness repairs.
    Datagram(Framing, Vec<u8>),
    /// Move the clock on by this many 100 µs.
    Tick(u16),
    /// Move the clock to the next deadline the state machine asks for.
    Wake,
    /// Complete the pending decode job at this index (modulo their number).
    DecodeOne(u8),
    /// Complete every pending decode job.
    DecodeAll,
    /// Answer a pending storage request: `true` placed, `false` failed.
    Store(bool),
}

/// How much of a datagram's framing the harness repairs before handing it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Nothing: the bytes as given.
    Raw,
    /// Magic, version and checksum made right.
    Sealed,
    /// Sealed, with the session id and node id of the peer the state machine talks to.
    Peer,
}

/// Reads [`Step`]s from a byte string.
#[derive(Debug, Clone)]
pub struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    /// A script over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Script { data }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        match b {
            [hi, lo] => u16::from_be_bytes([*hi, *lo]),
            [hi] => u16::from(*hi) << 8,
            _ => 0,
        }
    }
}

impl Iterator for Script<'_> {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        let tag = *self.data.first()?;
        self.data = &self.data[1..];
        Some(match tag % 8 {
            0..=2 => {
                let framing = [Framing::Raw, Framing::Sealed, Framing::Peer][usize::from(tag % 8)];
                let len = usize::from(self.u16());
                Step::Datagram(framing, self.take(len).to_vec())
            }
            3 => Step::Tick(self.u16()),
            4 => Step::Wake,
            5 => Step::DecodeOne(self.u8()),
            6 => Step::DecodeAll,
            _ => Step::Store(tag < 128),
        })
    }
}

impl Step {
    /// Append this step's encoding to `out` (the inverse of [`Script`] for datagrams up to
    /// 65535 bytes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Step::Datagram(framing, bytes) => {
                out.push(match framing {
                    Framing::Raw => 0,
                    Framing::Sealed => 1,
                    Framing::Peer => 2,
                });
                let len = u16::try_from(bytes.len()).expect("datagrams fit 64 KiB");
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(bytes);
            }
            Step::Tick(n) => {
                out.push(3);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Step::Wake => out.push(4),
            Step::DecodeOne(i) => out.extend_from_slice(&[5, *i]),
            Step::DecodeAll => out.push(6),
            Step::Store(ok) => out.push(if *ok { 7 } else { 135 }),
        }
    }
}

/// Encode a whole script.
pub fn encode(steps: &[Step]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in steps {
        s.encode(&mut out);
    }
    out
}

/// Make `datagram`'s magic, version and CRC-32 right (when it is long enough to hold a header
/// and a trailer), and with `peer` its session and node too.
pub fn seal(datagram: &mut [u8], peer: Option<(u32, u32)>) {
    if datagram.len() < HEADER_LEN + TRAILER_LEN {
        return;
    }
    datagram[..4].copy_from_slice(&MAGIC);
    datagram[4] = VERSION;
    if let Some((session, node)) = peer {
        datagram[8..12].copy_from_slice(&session.to_be_bytes());
        datagram[12..16].copy_from_slice(&node.to_be_bytes());
    }
    let body = datagram.len() - TRAILER_LEN;
    let crc = crc32fast::hash(&datagram[..body]);
    datagram[body..].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_and_short_input_is_cut() {
        let steps = vec![
            Step::Datagram(Framing::Raw, vec![1, 2, 3]),
            Step::Datagram(Framing::Sealed, vec![]),
            Step::Datagram(Framing::Peer, vec![9; 300]),
            Step::Tick(513),
            Step::Wake,
            Step::DecodeOne(7),
            Step::DecodeAll,
            Step::Store(true),
            Step::Store(false),
        ];
        let bytes = encode(&steps);
        assert_eq!(Script::new(&bytes).collect::<Vec<_>>(), steps);
        // A length past the end takes the rest; a missing length byte reads as zero.
        assert_eq!(
            Script::new(&[0, 0, 5, 1, 2]).collect::<Vec<_>>(),
            vec![Step::Datagram(Framing::Raw, vec![1, 2])]
        );
        assert_eq!(Script::new(&[3, 1]).collect::<Vec<_>>(), vec![Step::Tick(256)]);
        assert_eq!(Script::new(&[5]).collect::<Vec<_>>(), vec![Step::DecodeOne(0)]);
    }

    #[test]
    fn sealing_makes_a_datagram_parse() {
        use crate::proto::wire::{self, Flush, Header, Packet};
        let mut buf = Vec::new();
        let header = Header { flags: 0, session: 5, node: 1 };
        wire::emit(&header, &Packet::Flush(Flush { seq: 3 }), &mut buf);
        buf[0] = b'X';
        buf[4] = 9;
        buf[16] ^= 0xff;
        assert!(wire::parse(&buf).is_err());
        seal(&mut buf, None);
        let (h, p) = wire::parse(&buf).unwrap();
        assert_eq!((h, p), (header, Packet::Flush(Flush { seq: 3 ^ 0xff00_0000 })));
        seal(&mut buf, Some((77, 4)));
        assert_eq!(wire::parse(&buf).unwrap().0, Header { flags: 0, session: 77, node: 4 });
        let mut short = vec![0u8; HEADER_LEN + TRAILER_LEN - 1];
        seal(&mut short, None);
        assert_eq!(short, vec![0u8; HEADER_LEN + TRAILER_LEN - 1], "too short: left alone");
    }
}
