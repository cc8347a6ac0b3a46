//! Keyed mode: every datagram authenticated (and optionally encrypted) with a key all nodes
//! share, replays and stale datagrams refused. Sans-IO: the key, the nonce prefix and the wall
//! clock come in as arguments.
//!
//! ```text
//! header  the v1 header, flags | FLAG_KEYED (| FLAG_ENCRYPTED)       16 bytes
//! nonce   prefix (12 random bytes per sealer) | time u32 | counter u64 24 bytes
//! body    the v1 body: plain, or XChaCha20 ciphertext                  n bytes
//! tag     Poly1305 tag, in place of the CRC-32 trailer                 16 bytes
//! ```
//!
//! The AEAD is XChaCha20-Poly1305 with the 24-byte nonce above. Authenticated only: the
//! associated data is everything before the tag (header, nonce, body), the plaintext empty.
//! Encrypted: the associated data is header and nonce, the plaintext the body. A keyed datagram
//! is [`KEYED_OVERHEAD`] bytes longer than its v1 form, so a 1400-byte symbol still fits a
//! 1500-byte MTU.
//!
//! Nonces never repeat for a key: each [`Sealer`] draws its 96-bit prefix at random (passed in)
//! and counts up a 64-bit counter; `time` (the sealer's wall clock, Unix seconds) rides in the
//! nonce so it is authenticated at no extra cost. An [`Opener`] checks, in order: the layout,
//! the tag, the age (`time` within `max_skew` of its own clock, either way), then a sliding
//! replay window per prefix ([`ReplayTable`]). It returns the datagram in its plain v1 form
//! (flags cleared, CRC recomputed) so `wire::parse` and the state machines never see a
//! difference, or a counted [`AuthError`]. An opener without a key ([`Opener::open_mode`])
//! passes plain datagrams through and counts keyed ones.
//!
//! `seal` holds the sealer and the stateless tag check, `replay` the windows, `open` the
//! opener and its [`AuthCounters`], `keyring` a node's sealer, opener and throttled drop
//! warnings ([`Keyring`]), as the driver loop and the harness use them.

mod keyring;
mod open;
mod replay;
mod seal;

pub use keyring::{KeyConfig, Keyring, WARN_EVERY};
pub use open::{AuthCounters, Opener};
pub use replay::{ReplayTable, ReplayWindow, DEFAULT_MAX_PREFIXES, WINDOW_BITS};
pub use seal::{NonceFields, Sealer, Unsealer};

use crate::proto::wire::TRAILER_LEN;
use thiserror::Error;

/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;
/// Random per-sealer part of the nonce.
pub const PREFIX_LEN: usize = 12;
/// Whole nonce: prefix, time (u32), counter (u64).
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a keyed datagram adds to its v1 form (nonce and tag, less the CRC they replace).
pub const KEYED_OVERHEAD: usize = NONCE_LEN + TAG_LEN - TRAILER_LEN;
/// Default bound on the difference between a datagram's time and the opener's clock.
pub const DEFAULT_MAX_SKEW_SECS: u64 = 10;

/// A shared 256-bit key. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Key(bytes)
    }

    /// The key's bytes (to write a key file).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Why a datagram was not sealed or not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    /// Too short for its layout, or not an mcast v1 datagram.
    #[error("malformed datagram")]
    Malformed,
    /// A plain (unauthenticated) datagram reached a keyed node.
    #[error("unauthenticated datagram in keyed mode")]
    Unkeyed,
    /// A keyed datagram reached a node without a key.
    #[error("keyed datagram, but no key is configured")]
    KeyedInOpenMode,
    /// The tag does not match: another key, forged or corrupted.
    #[error("authentication failed (wrong key, forged or corrupted)")]
    BadTag,
    /// The sealer's time is more than the allowed skew away from ours.
    #[error("datagram time {age_secs} s away from our clock")]
    Stale {
        /// Seconds between its time and ours (either direction).
        age_secs: u64,
    },
    /// Its nonce was seen before, or is older than the replay window.
    #[error("replayed datagram")]
    Replayed,
    /// The sealer's 64-bit counter ran out (never in practice).
    #[error("nonce counter exhausted")]
    CounterExhausted,
    /// The clock given is past what the 32-bit time field holds (year 2106).
    #[error("clock outside the time field's range")]
    Clock,
}

#[cfg(test)]
mod tests;
