//! The Abort packet (type 12): the sender stops the session before it is done (interrupted,
//! its source failed, its `--timeout` passed) and tells the receivers at once, so that none of
//! them waits for its session timeout.
//!
//! ```text
//! body  reason u8 | text length u8 | text (UTF-8, at most MAX_ABORT_TEXT bytes)
//! ```
//!
//! Parsing checks the reason code, the length against [`MAX_ABORT_TEXT`] and the bytes left,
//! and the text's UTF-8; the text is allocated only after those checks.

use crate::proto::wire::cursor::{Reader, Writer};
use crate::proto::wire::WireError;

/// Most bytes of text an Abort carries (it must fit one datagram with room to spare).
pub const MAX_ABORT_TEXT: usize = 200;

/// Why the sender stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AbortReason {
    /// Stopped by SIGINT or SIGTERM.
    Interrupted = 1,
    /// The source could not be read (or the sender failed otherwise).
    SourceError = 2,
    /// The sender's `--timeout` passed.
    Timeout = 3,
}

impl AbortReason {
    /// A few words for messages: "interrupted", "source error", "timed out".
    pub fn describe(self) -> &'static str {
        match self {
            AbortReason::Interrupted => "interrupted",
            AbortReason::SourceError => "source error",
            AbortReason::Timeout => "timed out",
        }
    }

    fn parse(code: u8) -> Result<Self, WireError> {
        Ok(match code {
            1 => AbortReason::Interrupted,
            2 => AbortReason::SourceError,
            3 => AbortReason::Timeout,
            _ => return Err(WireError::BadField("abort reason")),
        })
    }
}

/// The sender stops the session: receivers of it give up at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    /// Why.
    pub reason: AbortReason,
    /// A short explanation (at most [`MAX_ABORT_TEXT`] bytes; may be empty).
    pub text: String,
}

impl Abort {
    /// An Abort for `reason` with `text` cut to [`MAX_ABORT_TEXT`] bytes (at a character
    /// boundary).
    pub fn new(reason: AbortReason, text: &str) -> Self {
        Abort { reason, text: truncated(text).to_string() }
    }
}

/// `text` cut to at most [`MAX_ABORT_TEXT`] bytes, at a character boundary.
fn truncated(text: &str) -> &str {
    let mut end = text.len().min(MAX_ABORT_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Parse an Abort body (the caller checks that nothing follows).
pub(super) fn parse_abort(r: &mut Reader<'_>) -> Result<Abort, WireError> {
    let reason = AbortReason::parse(r.u8()?)?;
    let len = usize::from(r.u8()?);
    if len > MAX_ABORT_TEXT {
        return Err(WireError::BadField("abort text length"));
    }
    let bytes = r.bytes(len)?;
    let text = std::str::from_utf8(bytes).map_err(|_| WireError::BadField("abort text"))?;
    Ok(Abort { reason, text: text.to_string() })
}

/// Emit an Abort body (a text longer than [`MAX_ABORT_TEXT`] is cut).
pub(super) fn emit_abort(a: &Abort, buf: &mut Vec<u8>) {
    let text = truncated(&a.text);
    buf.put_u8(a.reason as u8);
    buf.put_u8(text.len() as u8);
    buf.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::{emit, parse, Header, Packet, PacketType, HEADER_LEN, TRAILER_LEN};

    const HDR: Header = Header { flags: 0, session: 7, node: 3 };

    fn encode(a: &Abort) -> Vec<u8> {
        let mut buf = Vec::new();
        emit(&HDR, &Packet::Abort(a.clone()), &mut buf);
        buf
    }

    /// A datagram with this body, correctly sealed, so only the body check can refuse it.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut buf = encode(&Abort::new(AbortReason::Interrupted, ""));
        buf.truncate(HEADER_LEN);
        buf.extend_from_slice(body);
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        buf
    }

    #[test]
    fn round_trips_with_type_twelve() {
        for a in [
            Abort::new(AbortReason::Interrupted, "interrupted"),
            Abort::new(AbortReason::SourceError, "read /src/f.bin: input/output error"),
            Abort::new(AbortReason::Timeout, ""),
            Abort::new(AbortReason::Timeout, &"é".repeat(MAX_ABORT_TEXT / 2)),
        ] {
            let buf = encode(&a);
            assert_eq!(buf[5], 12, "type code");
            assert_eq!(Packet::Abort(a.clone()).kind(), PacketType::Abort);
            assert_eq!(parse(&buf).unwrap(), (HDR, Packet::Abort(a)));
        }
    }

    #[test]
    fn text_is_cut_at_the_limit_on_a_character_boundary() {
        let at_limit = "x".repeat(MAX_ABORT_TEXT);
        assert_eq!(Abort::new(AbortReason::Interrupted, &at_limit).text, at_limit);
        let past = "x".repeat(MAX_ABORT_TEXT + 1);
        assert_eq!(Abort::new(AbortReason::Interrupted, &past).text, at_limit);
        // 'é' is two bytes: 199 x and one 'é' would end at 201, so the 'é' goes.
        let split = format!("{}é", "x".repeat(MAX_ABORT_TEXT - 1));
        let cut = Abort::new(AbortReason::Interrupted, &split).text;
        assert_eq!(cut, "x".repeat(MAX_ABORT_TEXT - 1));
        // A text set past the limit by hand is cut when emitted, never a wrong length byte.
        let long = Abort { reason: AbortReason::Timeout, text: "y".repeat(400) };
        match parse(&encode(&long)).unwrap().1 {
            Packet::Abort(a) => assert_eq!(a.text.len(), MAX_ABORT_TEXT),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn bad_bodies_are_refused() {
        let ok = sealed(&[1, 2, b'h', b'i']);
        assert!(parse(&ok).is_ok());
        for reason in [0u8, 4, 255] {
            let e = parse(&sealed(&[reason, 0])).unwrap_err();
            assert_eq!(e, WireError::BadField("abort reason"), "reason {reason}");
        }
        // Length at the limit passes, one past it is refused before anything is read.
        let mut at = vec![1, MAX_ABORT_TEXT as u8];
        at.extend(std::iter::repeat_n(b'a', MAX_ABORT_TEXT));
        assert!(parse(&sealed(&at)).is_ok());
        let mut past = vec![1, MAX_ABORT_TEXT as u8 + 1];
        past.extend(std::iter::repeat_n(b'a', MAX_ABORT_TEXT + 1));
        assert_eq!(parse(&sealed(&past)).unwrap_err(), WireError::BadField("abort text length"));
        // A length beyond the bytes there, bytes beyond the length, and bad UTF-8.
        assert_eq!(parse(&sealed(&[1, 5, b'a'])).unwrap_err(), WireError::Truncated);
        assert_eq!(parse(&sealed(&[1, 1, b'a', b'b'])).unwrap_err(), WireError::TrailingBytes(1));
        assert_eq!(parse(&sealed(&[1, 1, 0xff])).unwrap_err(), WireError::BadField("abort text"));
        assert_eq!(parse(&sealed(&[1])).unwrap_err(), WireError::Truncated);
        assert_eq!(parse(&sealed(&[])).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn every_truncation_is_refused() {
        let buf = encode(&Abort::new(AbortReason::SourceError, "disk gone"));
        for cut in HEADER_LEN..buf.len() - TRAILER_LEN {
            assert!(parse(&sealed(&buf[HEADER_LEN..cut])).is_err(), "cut at {cut}");
            assert!(parse(&buf[..cut]).is_err(), "unsealed cut at {cut}");
        }
    }
}
