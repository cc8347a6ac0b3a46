//! One node's keyed-mode state as a driver uses it: its [`Sealer`] (if keyed), its
//! [`Opener`], and the throttled summary of what was dropped (one warning every
//! [`WARN_EVERY`] at most, never one per datagram).

use super::{AuthCounters, AuthError, Key, Opener, Sealer, DEFAULT_MAX_SKEW_SECS, PREFIX_LEN};
use crate::proto::time::{Duration, Instant};

/// Shortest interval between two drop warnings.
pub const WARN_EVERY: Duration = Duration::from_secs(5);

/// Keyed-mode settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    /// The key every node of the push shares.
    pub key: Key,
    /// Encrypt bodies too (authenticated either way).
    pub encrypt: bool,
    /// Refuse datagrams sealed more than this many seconds from our clock (hosts must be
    /// synchronised within it).
    pub max_skew_secs: u64,
}

impl KeyConfig {
    /// `key`, not encrypted, [`DEFAULT_MAX_SKEW_SECS`].
    pub fn new(key: Key) -> Self {
        KeyConfig { key, encrypt: false, max_skew_secs: DEFAULT_MAX_SKEW_SECS }
    }
}

/// A node's sealer, opener and drop summary.
pub struct Keyring {
    sealer: Option<Sealer>,
    opener: Opener,
    max_skew_secs: u64,
    warned: AuthCounters,
    last_warning: Option<Instant>,
}

impl Keyring {
    /// Keyed with `cfg` (`prefix`: random, drawn for this node), or open mode for `None`.
    pub fn new(cfg: Option<&KeyConfig>, prefix: [u8; PREFIX_LEN]) -> Self {
        let (sealer, opener, skew) = match cfg {
            Some(c) => (
                Some(Sealer::new(&c.key, prefix, c.encrypt)),
                Opener::new(&c.key, c.max_skew_secs),
                c.max_skew_secs,
            ),
            None => (None, Opener::open_mode(), 0),
        };
        Keyring {
            sealer,
            opener,
            max_skew_secs: skew,
            warned: AuthCounters::default(),
            last_warning: None,
        }
    }

    /// Whether this node has a key.
    pub fn is_keyed(&self) -> bool {
        self.sealer.is_some()
    }

    /// The datagram to send for the v1 datagram `plain`: sealed into `out` when keyed,
    /// `plain` itself otherwise.
    pub fn seal<'a>(
        &mut self,
        plain: &'a [u8],
        unix_secs: u64,
        out: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], AuthError> {
        match self.sealer.as_mut() {
            Some(s) => {
                s.seal(plain, unix_secs, out)?;
                Ok(&out[..])
            }
            None => Ok(plain),
        }
    }

    /// Datagrams sealed so far.
    pub fn sealed(&self) -> u64 {
        self.sealer.as_ref().map_or(0, Sealer::sealed)
    }

    /// The v1 datagram to hand to the endpoint, or `None` (counted) if it is dropped.
    pub fn open<'a>(
        &mut self,
        datagram: &'a [u8],
        unix_secs: u64,
        out: &'a mut Vec<u8>,
    ) -> Option<&'a [u8]> {
        self.opener.open(datagram, unix_secs, out).ok()
    }

    /// What was accepted and dropped so far.
    pub fn counters(&self) -> &AuthCounters {
        self.opener.counters()
    }

    /// A warning about what was dropped since the last one, at most one per [`WARN_EVERY`].
    pub fn poll_warning(&mut self, now: Instant) -> Option<String> {
        if self.last_warning.is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY) {
            return None;
        }
        let w = self.flush_warning()?;
        self.last_warning = Some(now);
        Some(w)
    }

    /// A warning about whatever was dropped and not yet warned about (at the end of a run).
    pub fn flush_warning(&mut self) -> Option<String> {
        let now = *self.opener.counters();
        let delta = now.since(&self.warned);
        if delta.dropped() == 0 {
            return None;
        }
        self.warned = now;
        Some(format!("dropped {}", self.describe(&delta)))
    }

    /// Why nothing got through, if nothing did but something was dropped: for the error a
    /// node ends with.
    pub fn diagnosis(&self) -> Option<String> {
        let c = self.opener.counters();
        (c.accepted == 0 && c.dropped() > 0)
            .then(|| format!("every datagram received was refused: {}", self.describe(c)))
    }

    /// `delta`'s drops, by reason, with the likely cause of each.
    fn describe(&self, d: &AuthCounters) -> String {
        let skew = self.max_skew_secs;
        let parts = [
            (d.bad_tag, "that failed authentication (wrong key?)".to_string()),
            (d.unkeyed, "without authentication (a peer without --key-file?)".to_string()),
            (d.keyed_in_open_mode, "sealed with a key, but no --key-file is given here".into()),
            (
                d.stale,
                format!("sealed more than {skew} s from our clock (clocks apart, or a replay)"),
            ),
            (d.replayed, "replayed".to_string()),
            (d.malformed, "too short or not mcast datagrams".to_string()),
        ];
        let text: Vec<String> = parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, why)| format!("{n} datagram{} {why}", if *n == 1 { "" } else { "s" }))
            .collect();
        text.join(", ")
    }
}
