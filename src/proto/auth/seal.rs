//! Sealing a v1 datagram into its keyed form ([`Sealer`]) and the stateless half of opening:
//! checking the tag and restoring the v1 form ([`Unsealer`]). Replay and age checks are the
//! [`Opener`](super::Opener)'s.

use super::{AuthError, Key, NONCE_LEN, PREFIX_LEN, TAG_LEN};
use crate::proto::wire::{FLAG_ENCRYPTED, FLAG_KEYED, HEADER_LEN, MAGIC, TRAILER_LEN, VERSION};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

/// Offset of the flags field in the header.
const FLAGS_AT: usize = 6;

/// The fields of a keyed datagram's nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceFields {
    /// The sealer's random prefix.
    pub prefix: [u8; PREFIX_LEN],
    /// The sealer's clock when it sealed, Unix seconds.
    pub time: u32,
    /// The sealer's counter.
    pub counter: u64,
}

impl NonceFields {
    fn to_bytes(self) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[..PREFIX_LEN].copy_from_slice(&self.prefix);
        n[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&self.time.to_be_bytes());
        n[PREFIX_LEN + 4..].copy_from_slice(&self.counter.to_be_bytes());
        n
    }

    fn from_bytes(n: &[u8; NONCE_LEN]) -> Self {
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&n[..PREFIX_LEN]);
        let mut time = [0u8; 4];
        time.copy_from_slice(&n[PREFIX_LEN..PREFIX_LEN + 4]);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&n[PREFIX_LEN + 4..]);
        NonceFields { prefix, time: u32::from_be_bytes(time), counter: u64::from_be_bytes(counter) }
    }
}

/// Whether `d` starts like an mcast v1 datagram (magic and version).
pub(super) fn is_mcast(d: &[u8]) -> bool {
    d.len() >= HEADER_LEN && d[..4] == MAGIC && d[4] == VERSION
}

/// The header's flags.
pub(super) fn flags(d: &[u8]) -> u16 {
    u16::from_be_bytes([d[FLAGS_AT], d[FLAGS_AT + 1]])
}

fn set_flags(d: &mut [u8], flags: u16) {
    d[FLAGS_AT..FLAGS_AT + 2].copy_from_slice(&flags.to_be_bytes());
}

/// Seals the datagrams of one node: a random nonce prefix (given) and a counter.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    prefix: [u8; PREFIX_LEN],
    next: u64,
    encrypt: bool,
}

impl Sealer {
    /// A sealer with `key`, nonce prefix `prefix` (draw it at random for every sealer: two
    /// sealers with one key and one prefix would repeat nonces), encrypting bodies if `encrypt`.
    pub fn new(key: &Key, prefix: [u8; PREFIX_LEN], encrypt: bool) -> Self {
        Sealer { cipher: XChaCha20Poly1305::new(key.as_bytes().into()), prefix, next: 0, encrypt }
    }

    /// Datagrams sealed so far (the next counter).
    pub fn sealed(&self) -> u64 {
        self.next
    }

    /// Seal the v1 datagram `plain` (header, body, CRC; the CRC is dropped) at wall-clock time
    /// `unix_secs` into `out` (cleared first).
    pub fn seal(
        &mut self,
        plain: &[u8],
        unix_secs: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), AuthError> {
        out.clear();
        if !is_mcast(plain) || plain.len() < HEADER_LEN + TRAILER_LEN {
            return Err(AuthError::Malformed);
        }
        if flags(plain) & (FLAG_KEYED | FLAG_ENCRYPTED) != 0 {
            return Err(AuthError::Malformed);
        }
        let time = u32::try_from(unix_secs).map_err(|_| AuthError::Clock)?;
        if self.next == u64::MAX {
            return Err(AuthError::CounterExhausted);
        }
        let fields = NonceFields { prefix: self.prefix, time, counter: self.next };
        self.next += 1;
        let nonce = fields.to_bytes();
        let body = &plain[HEADER_LEN..plain.len() - TRAILER_LEN];
        out.reserve(HEADER_LEN + NONCE_LEN + body.len() + TAG_LEN);
        out.extend_from_slice(&plain[..HEADER_LEN]);
        let extra = if self.encrypt { FLAG_KEYED | FLAG_ENCRYPTED } else { FLAG_KEYED };
        set_flags(out, flags(plain) | extra);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(body);
        let xnonce = XNonce::from_slice(&nonce);
        let tag = if self.encrypt {
            let (aad, text) = out.split_at_mut(HEADER_LEN + NONCE_LEN);
            self.cipher.encrypt_in_place_detached(xnonce, aad, text)
        } else {
            self.cipher.encrypt_in_place_detached(xnonce, out, &mut [])
        }
        .map_err(|_| AuthError::Malformed)?;
        out.extend_from_slice(&tag);
        Ok(())
    }
}

/// Checks a keyed datagram's tag and restores its v1 form; no replay or age state.
pub struct Unsealer {
    cipher: XChaCha20Poly1305,
}

impl Unsealer {
    /// An unsealer for `key`.
    pub fn new(key: &Key) -> Self {
        Unsealer { cipher: XChaCha20Poly1305::new(key.as_bytes().into()) }
    }

    /// Check `datagram`'s layout and tag; on success `out` holds its v1 form (keyed flags
    /// cleared, body decrypted, CRC-32 appended) and its nonce fields are returned.
    pub fn unseal(&self, datagram: &[u8], out: &mut Vec<u8>) -> Result<NonceFields, AuthError> {
        out.clear();
        if !is_mcast(datagram) {
            return Err(AuthError::Malformed);
        }
        let fl = flags(datagram);
        if fl & FLAG_KEYED == 0 {
            return Err(AuthError::Unkeyed);
        }
        if datagram.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
            return Err(AuthError::Malformed);
        }
        let (covered, tag) = datagram.split_at(datagram.len() - TAG_LEN);
        let tag = Tag::from_slice(tag);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&covered[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
        let xnonce = XNonce::from_slice(&nonce);
        let body = &covered[HEADER_LEN + NONCE_LEN..];
        out.reserve(HEADER_LEN + body.len() + TRAILER_LEN);
        out.extend_from_slice(&covered[..HEADER_LEN]);
        out.extend_from_slice(body);
        let ok = if fl & FLAG_ENCRYPTED != 0 {
            let aad = &covered[..HEADER_LEN + NONCE_LEN];
            self.cipher.decrypt_in_place_detached(xnonce, aad, &mut out[HEADER_LEN..], tag)
        } else {
            self.cipher.decrypt_in_place_detached(xnonce, covered, &mut [], tag)
        };
        if ok.is_err() {
            out.clear();
            return Err(AuthError::BadTag);
        }
        set_flags(out, fl & !(FLAG_KEYED | FLAG_ENCRYPTED));
        let crc = crc32fast::hash(out);
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(NonceFields::from_bytes(&nonce))
    }
}
