//! Signed mode's files and the work before a signed push: loading and generating ed25519 keys
//! (`mcast-send --sign-key`, `--gen-sign-key`, `--print-public-key`; `mcast-recv --trust`),
//! hashing every block of the source on all cores before the first datagram, and the
//! receiver's version state file (the newest version accepted per trusted key, beside the
//! output, replaced atomically).
//!
//! Key text: a secret key file holds the 32-byte ed25519 seed as 64 hex digits (a line);
//! public keys are 64 hex digits or standard base64 (44 characters), given inline or in a file.

use crate::proto::layout::Layout;
use crate::proto::sign::{hex_id, Signer, TrustedKey, KEY_ID_LEN, KEY_LEN};
use crate::storage::{Source, StorageError};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use thiserror::Error;

/// Key and state file failures.
#[derive(Debug, Error)]
pub enum KeyError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not a key in any accepted form.
    #[error("{0}: not an ed25519 key (expected 64 hex digits or 44 base64 characters)")]
    Format(String),
    /// Decoded to 32 bytes, but not a valid public key.
    #[error("{0}: not a valid ed25519 public key")]
    BadPublicKey(String),
    /// A state file line that makes no sense.
    #[error("{path}: line {line}: expected `<key id hex> <version>`")]
    State {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_path_buf(), source }
}

/// Signed mode in a report (`"signed"` in `--json`): which key signed, at which version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignedEntry {
    /// The key id, hex.
    pub key_id: String,
    /// The push's version.
    pub version: u64,
}

impl SignedEntry {
    /// The entry for `key_id` and `version`.
    pub fn new(key_id: &[u8; KEY_ID_LEN], version: u64) -> Self {
        SignedEntry { key_id: hex_id(key_id), version }
    }
}

/// Decode 32 key bytes from hex (64 digits) or base64 (standard alphabet, padded).
pub fn decode_key(text: &str) -> Option<[u8; KEY_LEN]> {
    let t = text.trim();
    let bytes = if t.len() == 2 * KEY_LEN && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..KEY_LEN).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok()).collect()
    } else {
        base64::engine::general_purpose::STANDARD.decode(t).ok()
    }?;
    bytes.try_into().ok()
}

/// A key as 64 hex digits.
pub fn hex_key(key: &[u8; KEY_LEN]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write a new random secret key to `path` (created, never overwritten, mode 0600); returns
/// its signer.
pub fn generate_key(path: &Path) -> Result<Signer, KeyError> {
    let mut seed = [0u8; KEY_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    writeln!(f, "{}", hex_key(&seed)).and_then(|()| f.sync_all()).map_err(io_err(path))?;
    Ok(Signer::from_secret(&seed))
}

/// Load the secret key in `path`. Warns when others may read the file.
pub fn load_signer(path: &Path) -> Result<Signer, KeyError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!("{}: the secret key is readable by others (chmod 600)", path.display());
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let seed = decode_key(&text).ok_or_else(|| KeyError::Format(path.display().to_string()))?;
    Ok(Signer::from_secret(&seed))
}

/// A trusted public key from `arg`: a file holding the key, or the key itself (hex or base64).
pub fn parse_trusted(arg: &str) -> Result<TrustedKey, KeyError> {
    let path = Path::new(arg);
    let (text, what) = if path.is_file() {
        (std::fs::read_to_string(path).map_err(io_err(path))?, path.display().to_string())
    } else {
        (arg.to_string(), format!("--trust {arg}"))
    };
    let key = decode_key(&text).ok_or_else(|| KeyError::Format(what.clone()))?;
    TrustedKey::from_bytes(&key).map_err(|_| KeyError::BadPublicKey(what))
}

/// Where the receiver keeps the versions it accepted for `output`: `.<name>.mcast-versions`
/// beside it.
pub fn state_path(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_else(|| "output".into());
    let parent = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parent.join(format!(".{name}.mcast-versions"))
}

/// The versions held for `output`, per key id (empty when no state file exists yet).
pub fn load_held(output: &Path) -> Result<BTreeMap<[u8; KEY_ID_LEN], u64>, KeyError> {
    let path = state_path(output);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(KeyError::Io { path, source: e }),
    };
    let mut held = BTreeMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = || KeyError::State { path: path.clone(), line: i + 1 };
        let (id, version) = line.trim().split_once(' ').ok_or_else(bad)?;
        let id: Vec<u8> = (0..id.len() / 2)
            .map(|j| id.get(2 * j..2 * j + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let id: [u8; KEY_ID_LEN] = id.try_into().map_err(|_| bad())?;
        held.insert(id, version.trim().parse().map_err(|_| bad())?);
    }
    Ok(held)
}

/// Record that `version` of `key_id` is now held for `output` (kept if an older one is
/// recorded): the state file is written to a temporary name, synced and renamed over.
pub fn record_held(output: &Path, key_id: [u8; KEY_ID_LEN], version: u64) -> Result<(), KeyError> {
    let mut held = load_held(output)?;
    let v = held.entry(key_id).or_insert(version);
    *v = (*v).max(version);
    let path = state_path(output);
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let text: String = held.iter().map(|(id, v)| format!("{} {v}\n", hex_id(id))).collect();
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        KeyError::Io { path: path.clone(), source: e }
    })
}

/// Blocks one hashing thread did, with their hashes.
type Hashed = Vec<(u32, [u8; 32])>;

/// BLAKE3 of every block of `source` laid out as `layout`, on `threads` threads (each reads
/// and hashes whole blocks, so the work spreads over every core).
pub fn hash_blocks(
    source: &dyn Source,
    layout: &Layout,
    threads: usize,
) -> Result<Vec<[u8; 32]>, StorageError> {
    let blocks = layout.block_count();
    let next = AtomicU32::new(0);
    let mut hashes = vec![[0u8; 32]; blocks as usize];
    let results: Vec<Result<Hashed, StorageError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.clamp(1, 64))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= blocks {
                            return Ok(out);
                        }
                        let off = layout.block_offset(b).unwrap_or(0);
                        let data = source.read_at(off, layout.block_len(b).unwrap_or(0))?;
                        out.push((b, *blake3::hash(&data).as_bytes()));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("hashing thread panicked")).collect()
    });
    for r in results {
        for (b, h) in r? {
            hashes[b as usize] = h;
        }
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_hex_and_base64_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let signer = generate_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(generate_key(&path).is_err(), "never overwrites a key");
        assert_eq!(load_signer(&path).unwrap().public_key(), signer.public_key());
        let pk = signer.public_key();
        let b64 = base64::engine::general_purpose::STANDARD.encode(pk);
        for text in [hex_key(&pk), b64] {
            assert_eq!(parse_trusted(&text).unwrap().public_key(), pk);
        }
        let pub_file = dir.path().join("key.pub");
        std::fs::write(&pub_file, format!("{}\n", hex_key(&pk))).unwrap();
        assert_eq!(parse_trusted(pub_file.to_str().unwrap()).unwrap().id(), signer.key_id());
        assert!(matches!(parse_trusted("abc"), Err(KeyError::Format(_))));
        assert!(decode_key(&"0".repeat(63)).is_none() && decode_key(&"0".repeat(64)).is_some());
    }

    #[test]
    fn the_state_file_keeps_the_newest_version_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("releases");
        assert!(load_held(&out).unwrap().is_empty());
        record_held(&out, [1; 8], 10).unwrap();
        record_held(&out, [2; 8], 5).unwrap();
        record_held(&out, [1; 8], 7).unwrap(); // older: kept at 10
        let held = load_held(&out).unwrap();
        assert_eq!(held.get(&[1; 8]), Some(&10));
        assert_eq!(held.get(&[2; 8]), Some(&5));
        assert_eq!(state_path(&out), dir.path().join(".releases.mcast-versions"));
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary left: {names:?}");
        std::fs::write(state_path(&out), "zz 1\n").unwrap();
        assert!(matches!(load_held(&out), Err(KeyError::State { line: 1, .. })));
    }
}
