//! Temp files: the naming scheme of receiver temp files and removal of stale ones left by
//! crashed runs. (Names from the network are checked by
//! [`RelPath`](crate::proto::manifest::RelPath), not here.)

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::StorageError;

/// Longest file name the temp file may have (the usual `NAME_MAX`).
const MAX_NAME_BYTES: usize = crate::proto::manifest::MAX_COMPONENT_LEN;

/// Marker between the destination name and the random suffix of a temp file.
const TEMP_MARKER: &str = ".mcast-tmp-";

/// Number of hex digits in a temp file's random suffix.
const TEMP_SUFFIX_HEX: usize = 16;

/// Ending of a resume sidecar's name, `.{name}.mcast-resume`.
pub(crate) const RESUME_SUFFIX: &str = ".mcast-resume";

/// The resume sidecar name `.{name}.mcast-resume` for destination `name` (shortened like
/// [`temp_file_name`] to fit [`MAX_NAME_BYTES`]).
pub(crate) fn resume_file_name(name: &str) -> String {
    let mut keep = name.len().min(MAX_NAME_BYTES - 1 - RESUME_SUFFIX.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(".{}{RESUME_SUFFIX}", &name[..keep])
}

/// Builds the temp file name `.{name}.mcast-tmp-{hex}` for destination `name`.
///
/// If the result would exceed [`MAX_NAME_BYTES`], the `name` part is
/// shortened (at a character boundary) so the temp file can be created.
pub(crate) fn temp_file_name(name: &str, random: u64) -> String {
    let overhead = 1 + TEMP_MARKER.len() + TEMP_SUFFIX_HEX;
    let mut keep = name.len().min(MAX_NAME_BYTES - overhead);
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(".{}{TEMP_MARKER}{random:016x}", &name[..keep])
}

/// Whether `file_name` looks like a temp file made by [`temp_file_name`]:
/// `.` + anything + `.mcast-tmp-` + a non-empty run of hex digits.
pub(crate) fn is_temp_name(file_name: &OsStr) -> bool {
    let bytes = file_name.as_bytes();
    let Some(rest) = bytes.strip_prefix(b".") else {
        return false;
    };
    let marker = TEMP_MARKER.as_bytes();
    let Some(pos) = rest.windows(marker.len()).rposition(|w| w == marker) else {
        return false;
    };
    let suffix = &rest[pos + marker.len()..];
    !suffix.is_empty() && suffix.iter().all(u8::is_ascii_hexdigit)
}

/// A random 64-bit value for temp file names (OS randomness, with a
/// time/pid-based fallback; uniqueness is enforced by `create_new` anyway).
pub(crate) fn random_u64() -> u64 {
    use rand::RngCore;
    let mut buf = [0u8; 8];
    if rand::rngs::OsRng.try_fill_bytes(&mut buf).is_ok() {
        return u64::from_le_bytes(buf);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Remove stale temp files (`.*.mcast-tmp-*`) left in `dir` by a crashed
/// earlier run; returns how many were removed.
///
/// Only regular files (not symlinks or directories) whose name is `.`,
/// anything, `.mcast-tmp-` and a hex suffix are removed, and of those not the ones a receiver
/// holds locked (in use: reported and kept) nor those a resume sidecar in `dir` claims (kept
/// for the next run of the same push, which resumes them; another push discards them).
pub fn clean_stale_temps(dir: &Path) -> Result<usize, StorageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("read dir", dir, e))?;
    let claimed = super::resume::claimed_temps(dir);
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("read dir", dir, e))?;
        let name = entry.file_name();
        if !is_temp_name(&name) {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| StorageError::io("stat", &path, e))?;
        if !file_type.is_file() {
            continue;
        }
        if claimed.iter().any(|c| OsStr::new(c) == name) {
            tracing::info!(path = %path.display(), "kept for a resume");
            continue;
        }
        if super::file_sink::remove_unlocked(&path) {
            tracing::info!(path = %path.display(), "removed stale temp file");
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_match_pattern() {
        let t = temp_file_name("file.bin", 0xdead_beef);
        assert_eq!(t, ".file.bin.mcast-tmp-00000000deadbeef");
        assert!(is_temp_name(OsStr::new(&t)));
    }

    #[test]
    fn temp_name_of_longest_name_fits() {
        for name in ["x".repeat(255), "é".repeat(127)] {
            let t = temp_file_name(&name, u64::MAX);
            assert!(t.len() <= MAX_NAME_BYTES, "{}", t.len());
            assert!(is_temp_name(OsStr::new(&t)));
        }
    }

    #[test]
    fn temp_name_detection() {
        for yes in [".a.mcast-tmp-0f", "..mcast-tmp-1", ".x.mcast-tmp-y.mcast-tmp-ab"] {
            assert!(is_temp_name(OsStr::new(yes)), "{yes:?}");
        }
        for no in [
            "a.mcast-tmp-00",
            ".mcast-tmp-00",
            ".a.mcast-tmp-",
            ".a.mcast-tmp-xyz",
            ".a.mcast-tmp-00.bak",
            ".a.mcast-tmp",
            "plain.txt",
            "",
        ] {
            assert!(!is_temp_name(OsStr::new(no)), "{no:?}");
        }
    }

    #[test]
    fn random_values_differ() {
        assert_ne!(random_u64(), random_u64());
    }
}
