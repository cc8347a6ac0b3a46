//! The Signature packet (type 11) of signed mode: which key signed the push (its id), the
//! push's version, and the ed25519 signature over the announcement's identity fields and that
//! version (the message is `proto::sign`'s). Sent by the sender right after each announcement.
//!
//! ```text
//! key_id [8] | version u64 | signature [64]      (exactly 80 bytes)
//! ```

use super::cursor::{Reader, Writer};
use super::WireError;

/// Bytes of a Signature body.
pub const SIGNATURE_BODY_LEN: usize = 8 + 8 + 64;

/// A push's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// Id of the public key that signed (first bytes of its BLAKE3, see `proto::sign::key_id`).
    pub key_id: [u8; 8],
    /// The push's version (newer pushes carry larger ones).
    pub version: u64,
    /// ed25519 signature.
    pub signature: [u8; 64],
}

/// Parse a Signature body (the exact length is checked by the caller's `finish`).
pub(super) fn parse_signature(r: &mut Reader<'_>) -> Result<Signature, WireError> {
    if r.remaining() < SIGNATURE_BODY_LEN {
        return Err(WireError::Truncated);
    }
    Ok(Signature { key_id: r.array()?, version: r.u64()?, signature: r.array()? })
}

/// Emit a Signature body.
pub(super) fn emit_signature(s: &Signature, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&s.key_id);
    buf.put_u64(s.version);
    buf.extend_from_slice(&s.signature);
}

#[cfg(test)]
mod tests {
    use super::super::{emit, parse, Header, Packet, WireError, HEADER_LEN, TRAILER_LEN};
    use super::*;

    fn sample() -> Signature {
        let mut signature = [0u8; 64];
        signature.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        Signature { key_id: *b"keyid-01", version: 0x0102_0304_0506_0708, signature }
    }

    fn reseal(mut d: Vec<u8>) -> Vec<u8> {
        let crc = crc32fast::hash(&d);
        d.extend_from_slice(&crc.to_be_bytes());
        d
    }

    #[test]
    fn round_trips_with_type_11_and_an_exact_length() {
        let hdr = Header { flags: 0, session: 9, node: 4 };
        let mut buf = Vec::new();
        emit(&hdr, &Packet::Signature(sample()), &mut buf);
        assert_eq!(buf[5], 11, "type code");
        assert_eq!(buf.len(), HEADER_LEN + SIGNATURE_BODY_LEN + TRAILER_LEN);
        assert_eq!(parse(&buf), Ok((hdr, Packet::Signature(sample()))));
    }

    #[test]
    fn one_byte_short_or_long_is_refused() {
        let hdr = Header { flags: 0, session: 9, node: 4 };
        let mut buf = Vec::new();
        emit(&hdr, &Packet::Signature(sample()), &mut buf);
        let body_end = buf.len() - TRAILER_LEN;
        let short = reseal(buf[..body_end - 1].to_vec());
        assert_eq!(parse(&short), Err(WireError::Truncated));
        let mut long = buf[..body_end].to_vec();
        long.push(0);
        assert_eq!(parse(&reseal(long)), Err(WireError::TrailingBytes(1)));
        for cut in HEADER_LEN..body_end {
            assert!(parse(&reseal(buf[..cut].to_vec())).is_err(), "cut at {cut}");
        }
    }
}
