//! What the two command-line programs share: argument value parsers, logging set-up, signal
//! handling, exit codes, the checks of a command line that run before any socket opens, and
//! how an error is printed (one line, each cause once, no backtrace). The binaries themselves
//! only parse arguments and print reports.

use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// Exit status: an error while running (a socket, a disk, the protocol).
pub const EXIT_ERROR: i32 = 1;
/// Exit status: bad arguments (also a missing file or directory, an unknown interface); nothing
/// was sent or joined.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: the transfer did not fully succeed (a receiver failed, expected receivers
/// missing, nobody reported, or timeout).
pub const EXIT_INCOMPLETE: i32 = 3;
/// Exit status: interrupted by SIGINT or SIGTERM.
pub const EXIT_INTERRUPTED: i32 = 130;

/// A mistake on the command line found before anything was sent: exit status [`EXIT_USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The error as one line: each cause once (a cause whose text is already in the line is
/// skipped), joined by ": ". Never a backtrace.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Print `e` as `error: <one line>` on stderr and return the exit status it calls for:
/// [`EXIT_USAGE`] for a [`UsageError`] anywhere in the chain, else [`EXIT_ERROR`].
pub fn report_error(program: &str, e: &anyhow::Error) -> i32 {
    eprintln!("{program}: error: {}", error_line(e));
    if e.chain().any(|c| c.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_ERROR
    }
}

/// Check what `mcast-send PATH [PATH...]` names before any socket opens: `path` must be a
/// regular file (a single-file push, with no `extra` paths) or a directory (a tree push); each
/// `extra` path is relative to that directory, without `..`, and must exist in it.
pub fn check_source(path: &Path, extra: &[PathBuf]) -> Result<(), UsageError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => UsageError(format!("{shown}: no such file or directory")),
        std::io::ErrorKind::PermissionDenied => {
            UsageError(format!("{shown}: permission denied (cannot read it)"))
        }
        _ => UsageError(format!("{shown}: {e}")),
    })?;
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map_err(|e| UsageError(format!("{shown}: cannot list the directory: {e}")))?;
        return extra.iter().try_for_each(|p| check_tree_path(path, p));
    }
    if !meta.is_file() {
        return Err(UsageError(format!(
            "{shown} is not a regular file or a directory (a device, pipe or socket): copy it \
             into a file first"
        )));
    }
    if let Some(p) = extra.first() {
        return Err(UsageError(format!(
            "{shown} is a file, so {} cannot be sent with it: several paths are sent as a \
             tree, `mcast-send DIR PATH...`, with each PATH relative to DIR",
            p.display()
        )));
    }
    std::fs::File::open(path).map_err(|e| UsageError(format!("{shown}: cannot open it: {e}")))?;
    Ok(())
}

/// One `PATH` of `mcast-send DIR PATH...`: relative to `root`, no `..`, present (not followed).
fn check_tree_path(root: &Path, rel: &Path) -> Result<(), UsageError> {
    use std::path::Component;
    let shown = rel.display();
    if rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(UsageError(format!(
            "{shown}: paths after the directory are relative to it, without `..` (e.g. \
             `mcast-send {} bin/app`)",
            root.display()
        )));
    }
    match std::fs::symlink_metadata(root.join(rel)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(UsageError(format!("{shown}: no such path in {}", root.display())))
        }
        Err(e) => Err(UsageError(format!("{shown} in {}: {e}", root.display()))),
    }
}

/// Check `--output DEST` before joining. What arrives is known only from the manifest, so
/// DEST may be an existing directory (a single file goes into it; a tree replaces it if it is
/// empty, or with `--replace`) or absent with an existing parent directory (a tree is created
/// there; a single-file push fails then, creating nothing). Where the object will be staged
/// must be writable: a probe file is created there and removed at once (in DEST when it is a
/// directory; else in its parent). A DEST whose parent is not writable only warns: a single
/// file still goes inside DEST, a tree (staged beside it) would fail.
pub fn check_output(path: &Path) -> Result<(), UsageError> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            probe_writable(path).map_err(|e| {
                UsageError(format!("--output {shown}: cannot write in it: {e} (nothing joined)"))
            })?;
            if let Err(e) = probe_writable(parent_of(path)) {
                tracing::warn!(
                    "--output {shown}: cannot write beside it ({e}): a tree push, staged \
                     there, would fail"
                );
            }
            Ok(())
        }
        Ok(_) => Err(UsageError(format!("--output {shown} is not a directory"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = parent_of(path);
            if parent.is_dir() {
                probe_writable(parent).map_err(|e| {
                    UsageError(format!(
                        "--output {shown}: cannot write in its parent {}, where it would be \
                         staged: {e} (nothing joined)",
                        parent.display()
                    ))
                })
            } else {
                Err(UsageError(format!(
                    "--output {shown}: no such directory, and its parent {} is not a directory \
                     either (create it first)",
                    parent.display()
                )))
            }
        }
        Err(e) => Err(UsageError(format!("--output {shown}: {e}"))),
    }
}

/// The directory `path` is in (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Create a probe file in `dir` and remove it at once: whether the receiver can stage there.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    use rand::RngCore;
    let name = format!(".mcast-probe-{}-{:08x}", std::process::id(), rand::rngs::OsRng.next_u32());
    let probe = dir.join(name);
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
    std::fs::remove_file(&probe)
}

/// A wait limit on the command line: a duration (`30s`, `10min`), or `0` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitLimit(pub Option<std::time::Duration>);

/// Parse a [`WaitLimit`]: `0` (or any zero duration) waits forever.
pub fn parse_wait_limit(s: &str) -> Result<WaitLimit, String> {
    if s.trim() == "0" {
        return Ok(WaitLimit(None));
    }
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e}"))?;
    Ok(WaitLimit((!d.is_zero()).then_some(d)))
}

/// Resolve `--interface` before any socket opens; an unknown one is a [`UsageError`].
pub fn check_interface(spec: &str) -> Result<crate::net::Interface, UsageError> {
    crate::net::resolve_interface(spec).map_err(|e| UsageError(e.to_string()))
}

/// Parse a share given as a percentage ("5%") or a fraction ("0.05"), within 0..=`max`.
pub fn parse_share(s: &str, max: f64) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a share (try 5% or 0.05)"))?;
    if !v.is_finite() || !(0.0..=max).contains(&v) {
        return Err(format!("{s:?} must be between 0 and {}%", max * 100.0));
    }
    Ok(v)
}

/// Parse a byte size: a plain number, or with a KiB/MiB/GiB/TiB (or K/M/G/T, binary) suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit (use KiB, MiB, GiB or TiB)")),
    };
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(|| format!("{s:?} is out of range"))
}

/// Log to stderr at `info` (or `RUST_LOG`), `debug` with one `-v`, `trace` with two.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::net::io::LogWriter::default)
        .with_ansi(stderr_is_terminal())
        .try_init();
}

/// A token cancelled by the first SIGINT or SIGTERM (a task on the current tokio runtime
/// waits for them; call from inside the runtime).
pub fn shutdown_on_signals() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        }
        cancel.cancel();
    });
    Ok(token)
}

/// The runtime the binaries run on: one thread (the driver loop's), I/O and timers on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Whether stderr is a terminal (colours only then).
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// `mcast-send --image -` (`stream`) needs `--max-size`, which is for a stream only; a stream
/// refuses the options of `hashes_first` that are set (`--sign-key`, `--changed-only`: they
/// hash every block before the first datagram, which would wait for the whole pipe) and
/// `--no-sparse`.
pub fn check_stream(
    stream: bool,
    max_size: Option<u64>,
    hashes_first: &[(&str, bool)],
    no_sparse: bool,
) -> Result<(), UsageError> {
    let refuse = |m: String| Err(UsageError(m));
    match (stream, max_size) {
        (true, None) => refuse(
            "--image - needs --max-size BYTES (the most the stream may hold, announced as the \
             image's size)"
                .into(),
        ),
        (false, Some(_)) => {
            refuse("--max-size is for --image - (a file's or device's size is known)".into())
        }
        (true, Some(_)) => {
            if let Some((flag, _)) = hashes_first.iter().find(|(_, set)| *set) {
                return refuse(format!(
                    "{flag} cannot work on a stream (--image -): it hashes every block before \
                     the first datagram, which would wait for the whole pipe; send a file or a \
                     device (keyed mode, --key-file, works with a stream)"
                ));
            }
            if no_sparse {
                return refuse(
                    "--no-sparse is for files and devices: a stream's zero blocks always cost \
                     one symbol"
                        .into(),
                );
            }
            Ok(())
        }
        (false, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares() {
        assert_eq!(parse_share("5%", 1.0), Ok(0.05));
        assert_eq!(parse_share("0.25", 1.0), Ok(0.25));
        assert_eq!(parse_share("100%", 1.0), Ok(1.0));
        assert!(parse_share("100.1%", 1.0).is_err());
        assert!(parse_share("-1%", 1.0).is_err());
        assert!(parse_share("abc", 1.0).is_err());
        assert!(parse_share("NaN", 1.0).is_err());
    }

    #[test]
    fn error_line_names_each_cause_once() {
        let os = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = os.to_string();
        #[derive(Debug, thiserror::Error)]
        #[error("open f.bin: {source}")]
        struct Open {
            #[source]
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Open { source: os }).context("sending f.bin");
        assert_eq!(error_line(&e), format!("sending f.bin: open f.bin: {text}"));
        assert_eq!(report_error("t", &e), EXIT_ERROR);
        let u = anyhow::Error::new(UsageError("bad".into())).context("checking");
        assert_eq!(error_line(&u), "checking: bad");
        assert_eq!(report_error("t", &u), EXIT_USAGE);
    }

    #[test]
    fn sources_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.bin");
        std::fs::write(&file, b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert!(check_source(&file, &[]).is_ok());
        let missing = check_source(&dir.path().join("nope"), &[]).unwrap_err().0;
        assert!(missing.ends_with("nope: no such file or directory"), "{missing}");
        assert!(check_source(dir.path(), &[]).is_ok());
        let paths = [PathBuf::from("f.bin"), PathBuf::from("./sub")];
        assert!(check_source(dir.path(), &paths).is_ok());
        let absent = check_source(dir.path(), &[PathBuf::from("sub/x")]).unwrap_err().0;
        assert!(absent.contains("sub/x: no such path in"), "{absent}");
        for bad in ["../f.bin", "/etc", "sub/../f.bin"] {
            let e = check_source(dir.path(), &[PathBuf::from(bad)]).unwrap_err().0;
            assert!(e.contains("relative to it, without `..`"), "{bad}: {e}");
        }
        let after_file = check_source(&file, &[PathBuf::from("g")]).unwrap_err().0;
        assert!(
            after_file.contains("is a file") && after_file.contains("DIR PATH"),
            "{after_file}"
        );
        let dev = check_source(Path::new("/dev/null"), &[]).unwrap_err().0;
        assert!(dev.contains("not a regular file"), "{dev}");
    }

    #[test]
    fn outputs_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.bin");
        std::fs::write(&file, b"x").unwrap();
        assert!(check_output(dir.path()).is_ok());
        assert!(check_output(&dir.path().join("new-tree")).is_ok());
        assert!(check_output(&file).unwrap_err().0.contains("is not a directory"));
        let deep = check_output(&dir.path().join("a/b")).unwrap_err().0;
        assert!(deep.contains("its parent") && deep.contains("create it first"), "{deep}");
        let under_file = check_output(&file.join("x")).unwrap_err().0;
        assert!(under_file.starts_with("--output"), "{under_file}");
    }

    #[test]
    fn an_output_that_cannot_be_written_is_refused_and_no_probe_stays() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
        // Root ignores permission bits: then the probe succeeds and there is nothing to test.
        let root = probe_writable(&locked).is_ok();
        let in_it = check_output(&locked);
        let beside = check_output(&locked.join("tree"));
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
        if !root {
            let e = in_it.unwrap_err().0;
            assert!(e.contains("cannot write in it") && e.contains("denied"), "{e}");
            let e = beside.unwrap_err().0;
            assert!(e.contains("cannot write in its parent"), "{e}");
        }
        assert!(check_output(dir.path()).is_ok());
        assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0, "no probe left");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no probe left");
    }

    #[test]
    fn wait_limits() {
        let secs = |n| WaitLimit(Some(std::time::Duration::from_secs(n)));
        assert_eq!(parse_wait_limit("10min"), Ok(secs(600)));
        assert_eq!(parse_wait_limit("30s"), Ok(secs(30)));
        assert_eq!(parse_wait_limit("0"), Ok(WaitLimit(None)));
        assert_eq!(parse_wait_limit("0s"), Ok(WaitLimit(None)));
        assert!(parse_wait_limit("soon").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}

/// Keyed mode's flags, the same on both commands (flattened into their arguments).
#[derive(clap::Args, Debug, Clone)]
pub struct KeyedArgs {
    /// Keyed mode: authenticate every datagram sent and accept only authenticated ones, with
    /// the key in this file (from `mcast-send --gen-key`; mode 0600). Sender and every
    /// receiver need the same key.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// With --key-file: encrypt datagram bodies too (file contents and names, NAKs, reports).
    #[arg(long, requires = "key_file")]
    pub encrypt: bool,
    /// With --key-file: refuse datagrams sealed more than this far from our clock, so that a
    /// recorded push cannot be replayed later (hosts' clocks must agree within it).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub max_skew: std::time::Duration,
}

impl KeyedArgs {
    /// The key configuration these flags ask for (`None`: open mode); a bad key file is a
    /// usage error.
    pub fn key_config(&self) -> Result<Option<crate::proto::auth::KeyConfig>, UsageError> {
        crate::net::keyfile::key_config(self.key_file.as_deref(), self.encrypt, self.max_skew)
            .map_err(|e| UsageError(e.to_string()))
    }
}
