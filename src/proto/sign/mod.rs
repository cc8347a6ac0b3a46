//! Signed mode's cryptography, sans-IO: the message a push's ed25519 signature covers
//! ([`SignedFields`], domain-separated), signing ([`Signer`]), verification against a set of
//! trusted keys ([`TrustedKey`], [`verify`]) and key ids ([`key_id`]). Keys come in as bytes;
//! loading them from files is the driver's (`net::signing`).
//!
//! What is signed is everything that makes a push this push: session id, sender node, the
//! object layout, the manifest's length and BLAKE3, the hash list's length and BLAKE3 (so
//! every block is bound through its hash), and a version that only grows (the sender's wall
//! clock in ms, or one given), which lets a receiver refuse a replayed older push. Rate and
//! GRTT are parameters, not signed: a receiver follows them but they change nothing it writes.

use crate::proto::wire::{Announce, Header, Signature};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use thiserror::Error;

/// Bytes of a key id (the first bytes of the BLAKE3 of the public key).
pub const KEY_ID_LEN: usize = 8;
/// Bytes of an ed25519 public or secret key.
pub const KEY_LEN: usize = 32;
/// Bytes of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Prefix of every signed message: a signature made for anything else never verifies here.
pub const DOMAIN: &[u8] = b"mcast signed push v1\0";
/// Length of the message [`SignedFields::message`] returns.
pub const MESSAGE_LEN: usize = DOMAIN.len() + 4 + 4 + 8 + 2 + 2 + 4 + 32 + 4 + 32 + 8;

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignError {
    /// Signed by a key that is not trusted (or by nobody we know: the id is all we have).
    #[error("signed by an untrusted key (id {})", hex_id(.0))]
    UntrustedKey([u8; KEY_ID_LEN]),
    /// The key id is trusted but the signature does not verify over this announcement.
    #[error("bad signature (forged, or not for this announcement)")]
    BadSignature,
    /// Not a valid ed25519 public key.
    #[error("not an ed25519 public key")]
    BadKey,
}

/// A key id as hex.
pub fn hex_id(id: &[u8; KEY_ID_LEN]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of a public key: the first [`KEY_ID_LEN`] bytes of its domain-separated BLAKE3.
pub fn key_id(public: &[u8; KEY_LEN]) -> [u8; KEY_ID_LEN] {
    let mut h = blake3::Hasher::new();
    h.update(b"mcast key id v1\0");
    h.update(public);
    let mut id = [0; KEY_ID_LEN];
    id.copy_from_slice(&h.finalize().as_bytes()[..KEY_ID_LEN]);
    id
}

/// The fields a push's signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedFields {
    /// Session id.
    pub session: u32,
    /// The sender's node id.
    pub sender_node: u32,
    /// Payload size.
    pub object_size: u64,
    /// Symbol size `T`.
    pub symbol_size: u16,
    /// Symbols per block `K`.
    pub block_symbols: u16,
    /// Manifest length.
    pub manifest_len: u32,
    /// Manifest BLAKE3.
    pub manifest_hash: [u8; 32],
    /// Hash list length.
    pub hashes_len: u32,
    /// Hash list BLAKE3.
    pub hashes_hash: [u8; 32],
    /// The push's version: newer pushes carry larger ones.
    pub version: u64,
}

impl SignedFields {
    /// The fields of the announcement `a` sent with `header`, at `version`.
    pub fn of(header: &Header, a: &Announce, version: u64) -> Self {
        SignedFields {
            session: header.session,
            sender_node: header.node,
            object_size: a.object_size,
            symbol_size: a.symbol_size,
            block_symbols: a.block_symbols,
            manifest_len: a.manifest_len,
            manifest_hash: a.manifest_hash,
            hashes_len: a.hashes_len,
            hashes_hash: a.hashes_hash,
            version,
        }
    }

    /// The signed message: [`DOMAIN`], then every field big-endian in declaration order.
    pub fn message(&self) -> [u8; MESSAGE_LEN] {
        let mut m = [0u8; MESSAGE_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            m[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(DOMAIN);
        put(&self.session.to_be_bytes());
        put(&self.sender_node.to_be_bytes());
        put(&self.object_size.to_be_bytes());
        put(&self.symbol_size.to_be_bytes());
        put(&self.block_symbols.to_be_bytes());
        put(&self.manifest_len.to_be_bytes());
        put(&self.manifest_hash);
        put(&self.hashes_len.to_be_bytes());
        put(&self.hashes_hash);
        put(&self.version.to_be_bytes());
        m
    }
}

/// A secret key that signs pushes.
pub struct Signer {
    key: SigningKey,
    id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", hex_id(&self.id)) // never the secret
    }
}

impl Signer {
    /// The signer of the ed25519 secret key (seed) `secret`.
    pub fn from_secret(secret: &[u8; KEY_LEN]) -> Self {
        let key = SigningKey::from_bytes(secret);
        let id = key_id(key.verifying_key().as_bytes());
        Signer { key, id }
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; KEY_LEN] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key's id.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.id
    }

    /// The Signature packet for `fields`.
    pub fn sign(&self, fields: &SignedFields) -> Signature {
        let signature = self.key.sign(&fields.message()).to_bytes();
        Signature { key_id: self.id, version: fields.version, signature }
    }
}

/// A public key a receiver trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    key: VerifyingKey,
    id: [u8; KEY_ID_LEN],
}

impl TrustedKey {
    /// The trusted key of the ed25519 public key `public` (refused if not a curve point).
    pub fn from_bytes(public: &[u8; KEY_LEN]) -> Result<Self, SignError> {
        let key = VerifyingKey::from_bytes(public).map_err(|_| SignError::BadKey)?;
        Ok(TrustedKey { key, id: key_id(public) })
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; KEY_LEN] {
        self.key.to_bytes()
    }

    /// Its id.
    pub fn id(&self) -> [u8; KEY_ID_LEN] {
        self.id
    }
}

/// Check `sig` over `fields` (its version is taken from `sig`) against `keys`: the trusted key
/// it names must exist and verify it (strict ed25519: no malleable or small-order forms).
pub fn verify<'k>(
    keys: &'k [TrustedKey],
    fields: &SignedFields,
    sig: &Signature,
) -> Result<&'k TrustedKey, SignError> {
    let key =
        keys.iter().find(|k| k.id == sig.key_id).ok_or(SignError::UntrustedKey(sig.key_id))?;
    let fields = SignedFields { version: sig.version, ..*fields };
    let signature = ed25519_dalek::Signature::from_bytes(&sig.signature);
    key.key.verify_strict(&fields.message(), &signature).map_err(|_| SignError::BadSignature)?;
    Ok(key)
}

#[cfg(test)]
mod tests;
