//! What the receiver role says about faults: the reason text of a storage error (the errno
//! text, the path, how much was written), the free-space check of the staging location when
//! the manifest arrives, and the "waiting for a sender" line.

use crate::net::io::fmt_bytes;
use crate::net::source::is_single_file;
use crate::proto::manifest::Manifest;
use crate::proto::time::Duration;
use crate::storage::StorageError;
use std::path::{Path, PathBuf};

/// Receivers give up when no session is announced this long after they start (`mcast-recv
/// --idle-timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Receivers give up when the locked sender is silent this long while receiving
/// (`mcast-recv --session-timeout`): well above the 5 s GRTT cap and the sender's 100 ms
/// announcement interval.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a receiver waiting for a session says so.
pub const WAITING_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A storage error as the one line a report carries: for an operating-system error its text
/// first ("no space left on device: write /x/.f.bin.mcast-tmp-…"), then how much of the
/// object was written before it.
pub fn storage_reason(e: &StorageError, written: u64, size: Option<u64>) -> String {
    let what = match e {
        StorageError::Io { path, op, source } if source.raw_os_error().is_some() => {
            format!("{}: {op} {}", os_text(source), path.display())
        }
        other => other.to_string(),
    };
    match size {
        Some(size) => format!("{what}: {} of {} written", fmt_bytes(written), fmt_bytes(size)),
        None => what,
    }
}

/// "no space left on device", without Rust's " (os error 28)" and with a lower-case start.
fn os_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

/// Where the object of `manifest` is staged for `--output dest`: inside `dest` for a single
/// file, beside it (its parent) for a tree.
pub fn staging_dir(dest: &Path, manifest: &Manifest) -> PathBuf {
    if is_single_file(manifest) {
        return dest.to_path_buf();
    }
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Bytes an unprivileged process may still write on the file system holding `dir`.
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory of the
    // right type; statvfs fills it completely on success.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Whether `free` bytes in `dir` hold an object of `size` bytes; the reason when not.
pub fn space_reason(dir: &Path, free: u64, size: u64) -> Option<String> {
    (free < size).then(|| {
        format!(
            "no space for {} in {}: {} free (--no-space-check receives anyway, e.g. a sparse \
             file that needs less)",
            fmt_bytes(size),
            dir.display(),
            fmt_bytes(free)
        )
    })
}

/// `10 min`, `90 s`, `1.5 s`: a timeout as the messages say it.
pub fn fmt_timeout(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 && s < 10 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s >= 60 && s % 60 == 0 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// The line a receiver waiting for a session prints now and then.
pub fn waiting_line(group: &str, iface: &str, waited: Duration, idle: Option<Duration>) -> String {
    let via = if iface.is_empty() { String::new() } else { format!(" via {iface}") };
    let limit = match idle {
        Some(t) => format!("giving up after {}", fmt_timeout(t)),
        None => "waiting forever: --idle-timeout 0".to_string(),
    };
    format!("waiting for a sender on {group}{via} ({} s; {limit})", waited.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_os_error_reads_as_its_errno_text_then_the_path_then_the_amount() {
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e =
            StorageError::Io { path: "/x/.f.bin.mcast-tmp-1".into(), op: "write", source: enospc };
        assert_eq!(
            storage_reason(&e, 12 << 20, Some(256 << 20)),
            "no space left on device: write /x/.f.bin.mcast-tmp-1: 12.0 MiB of 256.0 MiB written"
        );
        let erofs = std::io::Error::from_raw_os_error(libc::EROFS);
        let e = StorageError::Io { path: "/ro".into(), op: "create temp file", source: erofs };
        assert_eq!(storage_reason(&e, 0, None), "read-only file system: create temp file /ro");
        let other = StorageError::DestinationExists("/t".into());
        assert_eq!(storage_reason(&other, 0, None), other.to_string());
    }

    #[test]
    fn space_is_refused_just_below_the_size() {
        assert_eq!(space_reason(Path::new("/o"), 100, 100), None);
        let why = space_reason(Path::new("/o"), 99, 100).unwrap();
        assert!(why.starts_with("no space for 100 B in /o: 99 B free"), "{why}");
        let dir = tempfile::tempdir().unwrap();
        assert!(free_space(dir.path()).unwrap() > 0);
        assert!(free_space(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn timeouts_and_the_waiting_line() {
        assert_eq!(fmt_timeout(Duration::from_secs(600)), "10 min");
        assert_eq!(fmt_timeout(Duration::from_secs(90)), "90 s");
        assert_eq!(fmt_timeout(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(
            waiting_line(
                "239.255.0.1:7000",
                "eth0",
                Duration::from_secs(12),
                Some(DEFAULT_IDLE_TIMEOUT)
            ),
            "waiting for a sender on 239.255.0.1:7000 via eth0 (12 s; giving up after 10 min)"
        );
        assert!(waiting_line("g", "", Duration::ZERO, None).ends_with("--idle-timeout 0)"));
    }
}
