//! Key files for keyed mode: 32 random bytes, written as 64 hex digits and a newline with mode
//! 0600 by `mcast-send --gen-key PATH` ([`generate`]); [`read`] takes hex or the 32 raw bytes
//! and refuses a file that its group or others may read. [`nonce_prefix`] draws a sealer's
//! nonce prefix.

use crate::proto::auth::{Key, KeyConfig, KEY_LEN, PREFIX_LEN};
use rand::RngCore;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a key file could not be written or read.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// `--gen-key` never overwrites.
    #[error("key file {0} already exists (not overwritten)")]
    Exists(PathBuf),
    /// Group or others may read it: the key is not secret any more.
    #[error(
        "key file {path} is readable by its group or others (mode {mode:03o}); \
         chmod 600 it (and consider the key compromised)"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Neither 64 hex digits nor 32 bytes.
    #[error("key file {0} holds neither 64 hex digits nor 32 raw bytes")]
    Format(PathBuf),
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io { path: path.to_path_buf(), source }
}

/// The keyed-mode settings of the command-line flags `--key-file`, `--encrypt` and
/// `--max-skew` (whole seconds, rounded up): `None` without a key file.
pub fn key_config(
    key_file: Option<&Path>,
    encrypt: bool,
    max_skew: std::time::Duration,
) -> Result<Option<KeyConfig>, KeyFileError> {
    let Some(path) = key_file else { return Ok(None) };
    let max_skew_secs = max_skew.as_secs() + u64::from(max_skew.subsec_nanos() > 0);
    Ok(Some(KeyConfig { key: read(path)?, encrypt, max_skew_secs }))
}

/// A fresh random nonce prefix from the OS (one per sealer, so nodes sharing a key never
/// repeat a nonce, across restarts too).
pub fn nonce_prefix() -> [u8; PREFIX_LEN] {
    let mut p = [0u8; PREFIX_LEN];
    rand::rngs::OsRng.fill_bytes(&mut p);
    p
}

/// Write a new random key to `path` (created with mode 0600; an existing file is refused).
pub fn generate(path: &Path) -> Result<Key, KeyFileError> {
    let mut bytes = [0u8; KEY_LEN];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = Key::from_bytes(bytes);
    write(path, &key)?;
    Ok(key)
}

/// Write `key` to a new file `path`, mode 0600, as hex.
pub fn write(path: &Path, key: &Key) -> Result<(), KeyFileError> {
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => KeyFileError::Exists(path.to_path_buf()),
                _ => KeyFileError::Io { path: path.to_path_buf(), source: e },
            },
        )?;
    let mut text: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(io(path))
}

/// Read the key in `path`: 64 hex digits (surrounding whitespace ignored) or 32 raw bytes.
/// Refuses a file with any group or other permission bit.
pub fn read(path: &Path) -> Result<Key, KeyFileError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed { path: path.to_path_buf(), mode });
    }
    // Never more than a key file's worth of bytes (a wrong path to a huge file is refused).
    let mut buf = Vec::new();
    let f = std::fs::File::open(path).map_err(io(path))?;
    std::io::Read::read_to_end(&mut std::io::Read::take(f, 256), &mut buf).map_err(io(path))?;
    parse(&buf).ok_or_else(|| KeyFileError::Format(path.to_path_buf()))
}

/// A key from a key file's contents.
fn parse(buf: &[u8]) -> Option<Key> {
    let text = buf.trim_ascii();
    if text.len() == 2 * KEY_LEN && text.iter().all(u8::is_ascii_hexdigit) {
        let mut bytes = [0u8; KEY_LEN];
        for (b, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            let hex = std::str::from_utf8(pair).ok()?;
            *b = u8::from_str_radix(hex, 16).ok()?;
        }
        return Some(Key::from_bytes(bytes));
    }
    <[u8; KEY_LEN]>::try_from(buf).ok().map(Key::from_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_private_random_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.key"), dir.path().join("b.key"));
        let ka = generate(&a).unwrap();
        let kb = generate(&b).unwrap();
        assert_ne!(ka, kb);
        let meta = std::fs::metadata(&a).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 65, "64 hex digits and a newline");
        assert_eq!(read(&a).unwrap(), ka);
        assert!(matches!(generate(&a), Err(KeyFileError::Exists(_))));
        assert_eq!(read(&a).unwrap(), ka, "not overwritten");
    }

    #[test]
    fn group_or_world_readable_files_are_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        generate(&p).unwrap();
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = read(&p);
            assert_eq!(r.is_ok(), ok, "mode {mode:o}");
            if !ok {
                let msg = r.unwrap_err().to_string();
                assert!(msg.contains("chmod 600") && msg.contains(&format!("{mode:03o}")), "{msg}");
            }
        }
    }

    #[test]
    fn raw_and_hex_contents_and_their_boundaries() {
        let raw = [0x5au8; KEY_LEN];
        assert_eq!(parse(&raw), Some(Key::from_bytes(raw)));
        assert_eq!(parse(&raw[..KEY_LEN - 1]), None);
        let hex = "5a".repeat(KEY_LEN);
        assert_eq!(parse(format!("  {hex}\n").as_bytes()), Some(Key::from_bytes(raw)));
        assert_eq!(parse(&hex.as_bytes()[..2 * KEY_LEN - 1]), None);
        assert_eq!(parse(format!("{hex}5a").as_bytes()), None);
        assert_eq!(parse(format!("{}zz", &hex[..2 * KEY_LEN - 2]).as_bytes()), None);
    }
}
