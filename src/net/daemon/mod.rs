//! The receiver service (`mcast-recv --daemon --output-root ROOT`): stays joined and receives
//! push after push, each into a fresh version of `<ROOT>/<name>` ([`name`] says what a push is
//! called, [`versions`] where versions live and how the `<ROOT>/<name>` symlink flips), keeps
//! `--keep N` old versions, runs the locally configured `--on-complete` command after each
//! placed push ([`hook`]), and tells systemd how it is doing ([`notify`]). See
//! `docs/daemon.md`.
//!
//! Each push is one [`recv::run`] with a fresh `Receiver` (memory does not grow with the
//! number of pushes) and a [`VersionChooser`] that picks the version directory once the
//! manifest names the push. A session received once (placed, failed or refused) is skipped
//! from then on, so a carousel (`mcast-send --repeat`) is received once, and the sessions and
//! the object hash of each name's current version are kept in `state.json`, so a restarted
//! service skips them too and a push identical to the current version is not placed again.
//! A push that fails leaves the current version as it was.

mod chooser;
pub mod hook;
pub mod name;
pub mod notify;
pub mod versions;

pub use chooser::{Chosen, OutputChooser, VersionChooser};

use crate::net::batch::BatchSocket;
use crate::net::io::fmt_bytes;
use crate::net::recv::{self, RecvConfig, RecvReport, RecvStatus};
use crate::net::DriverError;
use hook::HookReport;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use versions::{NameState, Slot, Store};

/// Sessions skipped at most (the newest are kept): bounds the memory and the check per
/// announcement.
pub const MAX_SKIPPED_SESSIONS: usize = 4096;
/// Wait after a receive that ended without any session (so a fault cannot spin the loop).
const EMPTY_RECEIVE_PAUSE: Duration = Duration::from_secs(1);

/// `mcast-recv`'s service flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Run as a receiver service: stay joined and receive push after push, each into a new
    /// version of --output-root/<name> (a symlink flipped once the push verified; see
    /// docs/daemon.md). SIGTERM or SIGINT stops it cleanly (exit 0).
    #[arg(long, requires = "output_root", conflicts_with_all = ["output", "once", "timeout", "replace", "to_device"])]
    pub daemon: bool,
    /// With --daemon: the directory pushes go under (must exist). A single-file push is
    /// named by its file name, a tree push (mcast-send PARENT NAME) by its one top-level
    /// directory.
    #[arg(long, value_name = "DIR", requires = "daemon")]
    pub output_root: Option<PathBuf>,
    /// With --daemon: old versions kept per name besides the current one (in
    /// DIR/.mcast-versions/<name>/<n>).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub keep: usize,
    /// With --daemon: run `sh -c CMD` after each placed push, with MCAST_PATH
    /// (DIR/<name>), MCAST_NAME, MCAST_OBJECT_HASH, MCAST_VERSION, MCAST_VERSION_PATH,
    /// MCAST_PREVIOUS_PATH (if kept) and MCAST_SESSION set. Its failure is logged, not fatal.
    #[arg(long, value_name = "CMD", requires = "daemon")]
    pub on_complete: Option<String>,
    /// With --on-complete: kill the command (its whole process group) after this long.
    #[arg(long, value_name = "DURATION", default_value = "5min", value_parser = humantime::parse_duration)]
    pub on_complete_timeout: Duration,
}

/// Settings of the service loop.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The output root (absolute, so the paths handed to the command are).
    pub root: PathBuf,
    /// Old versions kept per name.
    pub keep: usize,
    /// `sh -c` this after each placed push.
    pub on_complete: Option<String>,
    /// Its time limit.
    pub on_complete_timeout: Duration,
    /// Print one JSON line per push on stdout.
    pub json: bool,
}

/// What became of a push at the service (`"daemon"` in its `--json` line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonInfo {
    /// The push's name, if it had one.
    pub name: Option<String>,
    /// `placed` (the link now points to it), `unchanged` (identical to the current version:
    /// not placed again, the command not run) or `not_placed`.
    pub result: PushResult,
    /// The version number it was received as.
    pub version: Option<u64>,
    /// `<root>/<name>`: the link to the current version.
    pub link: Option<PathBuf>,
    /// Where this version's file or tree is.
    pub version_path: Option<PathBuf>,
    /// The version the link pointed to before, if any.
    pub previous_version: Option<u64>,
    /// Old versions removed to keep `--keep`.
    pub removed_versions: Vec<u64>,
    /// The object hash (hex), once verified.
    pub object_hash: Option<String>,
    /// The `--on-complete` command's outcome, if it ran.
    pub on_complete: Option<HookReport>,
    /// Why the service did not place a verified push (the receive's own errors are in
    /// `error`).
    pub service_error: Option<String>,
}

/// See [`DaemonInfo::result`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushResult {
    /// The link points to this push now.
    Placed,
    /// Identical to the current version.
    Unchanged,
    /// Failed, refused, interrupted or timed out: the current version is as it was.
    NotPlaced,
}

/// One `--json` line: the receive's report and what the service did with it.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonLine {
    /// The receive (`mcast-recv --json`'s fields).
    #[serde(flatten)]
    pub report: RecvReport,
    /// The service's part.
    pub daemon: DaemonInfo,
}

/// Serve pushes on `sock` until `shutdown`: `cfg` is the receiver's settings (its `output`
/// the root, unused but for cleaning), `d` the service's. A push in flight when `shutdown`
/// comes is not placed (a single file's staging stays for the next push of that name to
/// resume). Errors are those of the socket and the loop, not of a push.
pub async fn serve(
    sock: &mut BatchSocket,
    mut cfg: RecvConfig,
    d: &DaemonConfig,
    shutdown: &CancellationToken,
) -> Result<(), DriverError> {
    let store = Store::new(&d.root);
    let notifier = notify::Notifier::from_env();
    let watchdog = notify::watchdog_interval().map(|every| {
        tokio::spawn(async move {
            let n = notify::Notifier::from_env();
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                n.notify("WATCHDOG=1");
            }
        })
    });
    cfg.receiver.idle_timeout = None;
    let remembered = store.remembered_sessions();
    tracing::info!(
        "receiver service under {}: {} remembered session(s) will be skipped",
        d.root.display(),
        remembered.len()
    );
    for s in remembered {
        skip(&mut cfg.receiver.skip_sessions, s);
    }
    let waiting = format!("waiting for a push on {}", cfg.group);
    notifier.notify(&format!("READY=1\nSTATUS={waiting}"));
    loop {
        let chooser = Arc::new(VersionChooser::new(store.clone()));
        cfg.chooser = Some(chooser.clone());
        let report = recv::run(sock, &cfg, shutdown).await?;
        cfg.ready_file = None;
        let Some(session) = report.session else {
            if shutdown.is_cancelled() {
                break;
            }
            tracing::warn!("a receive ended without a push ({:?}); waiting again", report.error);
            tokio::select! {
                _ = tokio::time::sleep(EMPTY_RECEIVE_PAUSE) => continue,
                _ = shutdown.cancelled() => break,
            }
        };
        skip(&mut cfg.receiver.skip_sessions, session);
        let interrupted = report.status == RecvStatus::Interrupted;
        let line = finish(&store, d, report, chooser.take()).await;
        let text = summary(&line);
        eprintln!("{text}");
        notifier.status(&format!("{text}; {waiting}"));
        if d.json {
            match serde_json::to_string(&line) {
                Ok(j) => println!("{j}"),
                Err(e) => tracing::error!("encoding the JSON line: {e}"),
            }
        }
        if interrupted || shutdown.is_cancelled() {
            break;
        }
    }
    notifier.notify("STOPPING=1");
    if let Some(w) = watchdog {
        w.abort();
    }
    Ok(())
}

/// Add `session` to the skipped ones, keeping the newest [`MAX_SKIPPED_SESSIONS`].
fn skip(sessions: &mut Vec<u32>, session: u32) {
    sessions.retain(|s| *s != session);
    sessions.push(session);
    let extra = sessions.len().saturating_sub(MAX_SKIPPED_SESSIONS);
    sessions.drain(..extra);
}

/// Place (or not) what one receive produced, prune, remember, run the command.
async fn finish(store: &Store, d: &DaemonConfig, report: RecvReport, chosen: Chosen) -> DaemonLine {
    let mut info = DaemonInfo {
        name: chosen.name.and_then(Result::ok),
        result: PushResult::NotPlaced,
        version: chosen.slot.as_ref().map(|s| s.version),
        link: None,
        version_path: None,
        previous_version: None,
        removed_versions: Vec::new(),
        object_hash: chosen.object_hash.map(|h| blake3::Hash::from(h).to_hex().to_string()),
        on_complete: None,
        service_error: None,
    };
    let verified = matches!(report.status, RecvStatus::Complete | RecvStatus::Unacknowledged);
    match (verified, chosen.slot, info.object_hash.clone(), report.session) {
        (true, Some(slot), Some(hash), Some(session)) => {
            if let Err(e) = place(store, d, &slot, hash, session, &mut info).await {
                tracing::error!("push {} not placed: {e}", slot.name);
                info.service_error = Some(e.to_string());
            }
        }
        (true, ..) => info.service_error = Some("verified, but no version was chosen".into()),
        (false, ..) => {}
    }
    DaemonLine { report, daemon: info }
}

async fn place(
    store: &Store,
    d: &DaemonConfig,
    slot: &Slot,
    hash: String,
    session: u32,
    info: &mut DaemonInfo,
) -> Result<(), versions::VersionError> {
    let name = &slot.name;
    let previous = store.current(name)?;
    info.previous_version = previous;
    info.link = Some(store.link(name));
    let state = store.load_state(name).unwrap_or_default();
    if previous.is_some_and(|p| p == state.version) && state.object_hash == hash {
        store.discard(slot)?;
        info.result = PushResult::Unchanged;
        info.version_path = previous.map(|p| store.object_path(name, p));
        return store.save_state(name, &state.with_session(session));
    }
    store.commit(slot)?;
    info.result = PushResult::Placed;
    info.version_path = Some(slot.object());
    info.removed_versions = store.prune(name, slot.version, d.keep);
    let state = NameState { version: slot.version, object_hash: hash.clone(), ..state };
    if let Err(e) = store.save_state(name, &state.with_session(session)) {
        // The push is placed; only a restarted service's memory of it is lost.
        tracing::warn!("{e}");
    }
    let Some(cmd) = &d.on_complete else { return Ok(()) };
    let mut env = vec![
        ("MCAST_PATH", store.link(name).display().to_string()),
        ("MCAST_NAME", name.clone()),
        ("MCAST_OBJECT_HASH", hash),
        ("MCAST_VERSION", slot.version.to_string()),
        ("MCAST_VERSION_PATH", slot.object().display().to_string()),
        ("MCAST_SESSION", format!("{session:#010x}")),
    ];
    if let Some(p) = previous.filter(|p| !info.removed_versions.contains(p)) {
        env.push(("MCAST_PREVIOUS_PATH", store.object_path(name, p).display().to_string()));
    }
    let r = hook::run(cmd, &env, d.on_complete_timeout).await;
    match r.status {
        hook::HookStatus::Ok => {
            tracing::info!("--on-complete for {name} done in {:.2} s", r.seconds)
        }
        _ => tracing::warn!(
            "--on-complete for {name}: {:?} (code {:?}{}); the push stays placed",
            r.status,
            r.code,
            r.error.as_deref().map(|e| format!(", {e}")).unwrap_or_default()
        ),
    }
    info.on_complete = Some(r);
    Ok(())
}

/// The line on stderr (and in `STATUS=`) after each push.
pub fn summary(line: &DaemonLine) -> String {
    let i = &line.daemon;
    let name = i.name.as_deref().unwrap_or("<unnamed>");
    let version = i.version.map_or(String::new(), |v| format!(" version {v}"));
    match i.result {
        PushResult::Placed => {
            let hook = match &i.on_complete {
                Some(h) => format!("; --on-complete {:?}", h.status).to_lowercase(),
                None => String::new(),
            };
            format!(
                "placed {name}{version} ({}) at {}{hook}",
                fmt_bytes(line.report.bytes),
                i.link.as_ref().map_or(String::new(), |l| l.display().to_string())
            )
        }
        PushResult::Unchanged => format!(
            "unchanged: {name} is already version {} (same object hash); not placed again",
            i.previous_version.unwrap_or(0)
        ),
        PushResult::NotPlaced => {
            let why = i.service_error.as_deref().or(line.report.error.as_deref());
            format!(
                "{}: push of {name}{version} not placed ({}); the current version is unchanged",
                format!("{:?}", line.report.status).to_lowercase(),
                why.unwrap_or("no reason given")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_sessions_are_bounded_newest_kept() {
        let mut v = Vec::new();
        for s in 0..MAX_SKIPPED_SESSIONS as u32 {
            skip(&mut v, s);
        }
        assert_eq!((v.len(), v[0]), (MAX_SKIPPED_SESSIONS, 0), "at the limit nothing goes");
        skip(&mut v, 0);
        assert_eq!((v.len(), *v.last().unwrap(), v[0]), (MAX_SKIPPED_SESSIONS, 0, 1), "moved");
        skip(&mut v, u32::MAX);
        assert_eq!((v.len(), v[0]), (MAX_SKIPPED_SESSIONS, 2), "one past: the oldest goes");
    }
}
