//! The manifest (object 0): what the payload is called, how it is laid out, and the BLAKE3 hash
//! of every block and of the whole object. Serialized with postcard; the receiver accepts it only
//! when its BLAKE3 matches the announcement and its fields agree with the announced layout.

use crate::proto::layout::Layout;
use crate::proto::wire::Announce;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest file name accepted (bytes), as on common Linux file systems.
pub const MAX_NAME_LEN: usize = 255;

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    /// The bytes do not match the announced hash.
    #[error("manifest hash does not match the announcement")]
    Hash,
    /// The bytes do not deserialize.
    #[error("manifest does not parse: {0}")]
    Parse(String),
    /// Fields disagree with the announcement or with each other.
    #[error("manifest inconsistent: {0}")]
    Inconsistent(&'static str),
    /// The name is not a single plain path component.
    #[error("unsafe file name {0:?}")]
    Name(String),
}

/// Description of one payload object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// File name at the destination (one plain path component).
    pub name: String,
    /// Payload size in bytes.
    pub object_size: u64,
    /// Symbol size `T`.
    pub symbol_size: u16,
    /// Symbols per full block `K`.
    pub block_symbols: u16,
    /// BLAKE3 of each block's data (unpadded).
    pub block_hashes: Vec<[u8; 32]>,
    /// BLAKE3 of the whole payload.
    pub object_hash: [u8; 32],
}

impl Manifest {
    /// Serialized bytes (object 0's content).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("serializing to a Vec cannot fail")
    }

    /// Layout of the payload, checked against the block hash count.
    pub fn layout(&self) -> Result<Layout, ManifestError> {
        let layout = Layout::new(self.object_size, self.symbol_size, self.block_symbols)
            .map_err(|_| ManifestError::Inconsistent("layout"))?;
        if layout.block_count() as usize != self.block_hashes.len() {
            return Err(ManifestError::Inconsistent("block hash count"));
        }
        Ok(layout)
    }

    /// Verify `bytes` against `announce` and parse them.
    pub fn decode(bytes: &[u8], announce: &Announce) -> Result<Manifest, ManifestError> {
        if bytes.len() != announce.manifest_len as usize
            || *blake3::hash(bytes).as_bytes() != announce.manifest_hash
        {
            return Err(ManifestError::Hash);
        }
        let m: Manifest =
            postcard::from_bytes(bytes).map_err(|e| ManifestError::Parse(e.to_string()))?;
        if m.object_size != announce.object_size
            || m.symbol_size != announce.symbol_size
            || m.block_symbols != announce.block_symbols
        {
            return Err(ManifestError::Inconsistent("differs from announcement"));
        }
        m.layout()?;
        validate_name(&m.name)?;
        Ok(m)
    }
}

/// What is wrong with `name` as a file name from the network, if anything: it must be a single
/// plain path component (not empty, not `.` or `..`, no `/`, `\` or NUL, at most
/// [`MAX_NAME_LEN`] bytes).
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("refers to a directory")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.contains('\0') {
        Some("contains a NUL byte")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 255 bytes")
    } else {
        None
    }
}

/// Accept only a single plain path component (see [`name_problem`]).
pub fn validate_name(name: &str) -> Result<(), ManifestError> {
    match name_problem(name) {
        None => Ok(()),
        Some(_) => Err(ManifestError::Name(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Manifest, Announce) {
        let m = Manifest {
            name: "a.bin".into(),
            object_size: 3000,
            symbol_size: 100,
            block_symbols: 10,
            block_hashes: vec![[1; 32], [2; 32], [3; 32]],
            object_hash: [4; 32],
        };
        let bytes = m.encode();
        let a = Announce {
            object_size: 3000,
            symbol_size: 100,
            block_symbols: 10,
            manifest_len: bytes.len() as u32,
            manifest_hash: *blake3::hash(&bytes).as_bytes(),
            rate_bps: 1,
            grtt_us: 1,
        };
        (m, a)
    }

    #[test]
    fn round_trip_and_checks() {
        let (m, a) = sample();
        assert_eq!(Manifest::decode(&m.encode(), &a).unwrap(), m);
        let mut bytes = m.encode();
        bytes[0] ^= 1;
        assert_eq!(Manifest::decode(&bytes, &a), Err(ManifestError::Hash));
        // Consistent hash but a block missing.
        let mut short = m.clone();
        short.block_hashes.pop();
        let bytes = short.encode();
        let a2 = Announce {
            manifest_len: bytes.len() as u32,
            manifest_hash: *blake3::hash(&bytes).as_bytes(),
            ..a
        };
        assert!(matches!(Manifest::decode(&bytes, &a2), Err(ManifestError::Inconsistent(_))));
        // Unsafe name.
        let evil = Manifest { name: "../etc/passwd".into(), ..m };
        let bytes = evil.encode();
        let a3 = Announce {
            manifest_len: bytes.len() as u32,
            manifest_hash: *blake3::hash(&bytes).as_bytes(),
            ..a
        };
        assert!(matches!(Manifest::decode(&bytes, &a3), Err(ManifestError::Name(_))));
    }

    #[test]
    fn names() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", &"x".repeat(256)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["release-1.2.tar.gz", "..hidden", &"x".repeat(255)] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }
}
