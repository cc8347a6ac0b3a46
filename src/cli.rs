//! What the two command-line programs share: argument value parsers, logging set-up, signal
//! handling and exit codes. The binaries themselves only parse arguments and print reports.

use tokio_util::sync::CancellationToken;

/// Exit status: the transfer did not fully succeed (receivers missing, or timeout).
pub const EXIT_INCOMPLETE: i32 = 3;
/// Exit status: interrupted by SIGINT or SIGTERM.
pub const EXIT_INTERRUPTED: i32 = 130;

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

/// Parse a byte size: a plain number, or with a KiB/MiB/GiB (or K/M/G, binary) suffix.
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
        _ => return Err(format!("{s:?}: unknown unit (use KiB, MiB or GiB)")),
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
        .with_writer(std::io::stderr)
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

/// Whether stderr is a terminal (progress bars only then).
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
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
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
