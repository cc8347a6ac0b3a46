//! The locally configured command a receiver service runs after each placed push
//! (`--on-complete CMD`): `sh -c CMD` with the push described in environment variables, its
//! standard input empty and its standard output sent to the service's stderr (so `--json`
//! lines stay clean), in a process group of its own that is killed whole when it outlives its
//! timeout. Its failure is reported, never fatal. The command comes from the service's own
//! command line; nothing a sender says is ever run.

use serde::Serialize;
use std::process::Stdio;
use std::time::Duration;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookStatus {
    /// Exit status 0.
    Ok,
    /// A non-zero exit status, or killed by a signal.
    Failed,
    /// Still running after the timeout: its process group was killed.
    Timeout,
    /// It could not be started.
    Error,
}

/// What the command did (`"on_complete"` in the service's `--json` line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookReport {
    /// How it ended.
    pub status: HookStatus,
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// How long it ran.
    pub seconds: f64,
    /// Why it could not start, or the signal that ended it.
    pub error: Option<String>,
}

/// Run `sh -c cmd` with `env` added to the environment (and `NOTIFY_SOCKET` and the watchdog
/// variables removed: they are the service's), waiting at most `timeout`.
pub async fn run(cmd: &str, env: &[(&str, String)], timeout: Duration) -> HookReport {
    let started = std::time::Instant::now();
    let report = |status, code, error| HookReport {
        status,
        code,
        seconds: started.elapsed().as_secs_f64(),
        error,
    };
    let stdout = match stderr_for_child() {
        Ok(s) => s,
        Err(e) => return report(HookStatus::Error, None, Some(format!("dup stderr: {e}"))),
    };
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(stdout)
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return report(HookStatus::Error, None, Some(format!("starting sh: {e}"))),
    };
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => report(HookStatus::Ok, Some(0), None),
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            let signal = status.signal().map(|s| format!("killed by signal {s}"));
            report(HookStatus::Failed, status.code(), signal)
        }
        Ok(Err(e)) => report(HookStatus::Error, None, Some(format!("waiting: {e}"))),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The whole group: sh and whatever it started.
                // SAFETY: kill(2) with a negative pid signals a process group; no memory involved.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = child.wait().await;
            report(HookStatus::Timeout, None, Some(format!("still running after {timeout:?}")))
        }
    }
}

/// A copy of this process's stderr for the child's stdout.
fn stderr_for_child() -> std::io::Result<Stdio> {
    use std::os::fd::AsFd;
    Ok(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn the_command_sees_its_environment_and_its_exit_code_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("marker");
        let env = [("MCAST_NAME", "app".to_string()), ("OUT", out.display().to_string())];
        let r = block_on(run(
            r#"printf '%s %s' "$MCAST_NAME" "${NOTIFY_SOCKET-unset}" > "$OUT""#,
            &env,
            Duration::from_secs(20),
        ));
        assert_eq!((r.status, r.code), (HookStatus::Ok, Some(0)), "{r:?}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "app unset");
        let r = block_on(run("exit 3", &[], Duration::from_secs(20)));
        assert_eq!((r.status, r.code), (HookStatus::Failed, Some(3)));
        let r = block_on(run("kill -TERM $$", &[], Duration::from_secs(20)));
        assert_eq!((r.status, r.code), (HookStatus::Failed, None));
        assert!(r.error.unwrap().contains("signal 15"));
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let env = [("PIDFILE", pidfile.display().to_string())];
        // The child sleeps in the background; sh waits for it.
        let r =
            block_on(run(r#"sleep 60 & echo $! > "$PIDFILE"; wait"#, &env, Duration::from_secs(1)));
        assert_eq!(r.status, HookStatus::Timeout, "{r:?}");
        assert!(r.seconds < 10.0, "{r:?}");
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The background sleep was in the group: gone (or a zombie awaiting its reaper). A
        // SIGKILL takes effect when the process next runs, which on a loaded machine can be a
        // while after `run` returned: wait for that, bounded (a sleep that survived the kill
        // would still be running 60 s later, far past this bound).
        let dead = |pid: i32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").split_whitespace().next();
            matches!(state, None | Some("Z") | Some("X"))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !dead(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(dead(pid), "sleep {pid} still runs 10 s after the hook's timeout");
        // Within its time the same kind of command finishes normally.
        let r = block_on(run("sleep 0.1", &[], Duration::from_secs(20)));
        assert_eq!(r.status, HookStatus::Ok);
    }
}
