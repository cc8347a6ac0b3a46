//! systemd's readiness protocol (`sd_notify(3)`), the few lines of it a service needs: one
//! datagram per state change to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name written `@name`), and the watchdog interval from `$WATCHDOG_USEC`. Without
//! `$NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where state changes go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for (none if unset or unusable: logged).
    pub fn from_env() -> Self {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        match Self::open(name.as_encoded_bytes()) {
            Ok(target) => Notifier { target: Some(target) },
            Err(e) => {
                tracing::warn!(
                    "NOTIFY_SOCKET={}: {e}; not notifying systemd",
                    name.to_string_lossy()
                );
                Notifier { target: None }
            }
        }
    }

    fn open(name: &[u8]) -> std::io::Result<(UnixDatagram, SocketAddr)> {
        let addr = match name {
            [b'@', abstract_name @ ..] => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name)?
            }
            [b'/', ..] => {
                use std::os::unix::ffi::OsStrExt;
                SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name))?
            }
            _ => return Err(std::io::Error::other("neither an absolute path nor @abstract name")),
        };
        Ok((UnixDatagram::unbound()?, addr))
    }

    /// Whether systemd listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Send `state` (`READY=1`, `STATUS=...`, `STOPPING=1`, `WATCHDOG=1`, newline-separated
    /// assignments). A failure is logged at debug level: readiness is advice to systemd.
    pub fn notify(&self, state: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
                tracing::debug!("sd_notify {state:?}: {e}");
            }
        }
    }

    /// `STATUS=<text>` with `text` on one line.
    pub fn status(&self, text: &str) {
        self.notify(&format!("STATUS={}", text.replace('\n', " ")));
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, if it is set (and
/// `$WATCHDOG_PID`, if set, is this process).
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_of(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_of(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.parse::<u32>().ok() != Some(me)) {
        return None;
    }
    let usec = usec?.parse::<u64>().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n =
            Notifier { target: Some(Notifier::open(path.as_os_str().as_encoded_bytes()).unwrap()) };
        n.notify("READY=1");
        n.status("two\nlines");
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=two lines");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("mcast-test-{}", std::process::id());
        let abs = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap());
        // Abstract names need a network namespace of one's own only for isolation; binding
        // works wherever Unix sockets do.
        let abs = abs.unwrap();
        let n = Notifier { target: Some(Notifier::open(format!("@{name}").as_bytes()).unwrap()) };
        n.notify("STOPPING=1");
        let len = abs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
        assert!(Notifier::open(b"relative/path").is_err());
        assert!(!Notifier { target: None }.enabled());
    }

    #[test]
    fn the_watchdog_interval_is_half_the_timeout_for_this_process_only() {
        let half = Some(Duration::from_millis(500));
        assert_eq!(watchdog_interval_of(Some("1000000"), None, 7), half);
        assert_eq!(watchdog_interval_of(Some("1000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval_of(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_of(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_of(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval_of(None, None, 7), None);
    }
}
