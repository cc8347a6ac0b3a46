//! The receiving side of keyed mode: [`Opener`] turns what the network delivers into v1
//! datagrams or counted refusals ([`AuthCounters`]).

use super::seal::{flags, is_mcast};
use super::{AuthError, Key, ReplayTable, Unsealer, DEFAULT_MAX_PREFIXES};
use crate::proto::wire::FLAG_KEYED;
use serde::Serialize;

/// What an opener let through and what it dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuthCounters {
    /// Datagrams accepted (authenticated in keyed mode; plain in open mode).
    pub accepted: u64,
    /// Too short for the keyed layout, or not mcast datagrams at all (keyed mode).
    pub malformed: u64,
    /// Plain datagrams refused by a keyed node (an unkeyed peer, or forged).
    pub unkeyed: u64,
    /// Keyed datagrams refused by a node without a key.
    pub keyed_in_open_mode: u64,
    /// Tag mismatches: another key, forged, or corrupted.
    pub bad_tag: u64,
    /// Authentic, but sealed more than the allowed skew away from our clock.
    pub stale: u64,
    /// Authentic, but a nonce seen before (or behind the replay window).
    pub replayed: u64,
}

impl AuthCounters {
    /// Datagrams dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.malformed
            + self.unkeyed
            + self.keyed_in_open_mode
            + self.bad_tag
            + self.stale
            + self.replayed
    }

    /// `self - earlier`, field by field (saturating).
    pub fn since(&self, earlier: &AuthCounters) -> AuthCounters {
        AuthCounters {
            accepted: self.accepted.saturating_sub(earlier.accepted),
            malformed: self.malformed.saturating_sub(earlier.malformed),
            unkeyed: self.unkeyed.saturating_sub(earlier.unkeyed),
            keyed_in_open_mode: self.keyed_in_open_mode.saturating_sub(earlier.keyed_in_open_mode),
            bad_tag: self.bad_tag.saturating_sub(earlier.bad_tag),
            stale: self.stale.saturating_sub(earlier.stale),
            replayed: self.replayed.saturating_sub(earlier.replayed),
        }
    }

    fn count(&mut self, e: AuthError) {
        match e {
            AuthError::Malformed | AuthError::CounterExhausted | AuthError::Clock => {
                self.malformed += 1
            }
            AuthError::Unkeyed => self.unkeyed += 1,
            AuthError::KeyedInOpenMode => self.keyed_in_open_mode += 1,
            AuthError::BadTag => self.bad_tag += 1,
            AuthError::Stale { .. } => self.stale += 1,
            AuthError::Replayed => self.replayed += 1,
        }
    }
}

struct Keyed {
    unsealer: Unsealer,
    replay: ReplayTable,
    max_skew_secs: u64,
}

/// Opens the datagrams a node receives: keyed ([`Opener::new`]) or open ([`Opener::open_mode`]).
pub struct Opener {
    keyed: Option<Keyed>,
    counters: AuthCounters,
}

impl Opener {
    /// A keyed opener: accepts only datagrams sealed with `key`, at most `max_skew_secs` from
    /// this opener's clock, each nonce once, tracking up to [`DEFAULT_MAX_PREFIXES`] sealers.
    pub fn new(key: &Key, max_skew_secs: u64) -> Self {
        Self::with_prefixes(key, max_skew_secs, DEFAULT_MAX_PREFIXES)
    }

    /// [`Opener::new`] tracking up to `max_prefixes` sealers.
    pub fn with_prefixes(key: &Key, max_skew_secs: u64, max_prefixes: usize) -> Self {
        Opener {
            keyed: Some(Keyed {
                unsealer: Unsealer::new(key),
                replay: ReplayTable::new(max_prefixes),
                max_skew_secs,
            }),
            counters: AuthCounters::default(),
        }
    }

    /// An opener without a key: plain datagrams pass unchanged, keyed ones are refused.
    pub fn open_mode() -> Self {
        Opener { keyed: None, counters: AuthCounters::default() }
    }

    /// Whether this opener has a key.
    pub fn is_keyed(&self) -> bool {
        self.keyed.is_some()
    }

    /// The counters so far.
    pub fn counters(&self) -> &AuthCounters {
        &self.counters
    }

    /// Open `datagram` at wall-clock time `unix_secs`: the v1 datagram to parse (in `out`, or
    /// `datagram` itself in open mode), or the counted reason it was dropped.
    pub fn open<'a>(
        &mut self,
        datagram: &'a [u8],
        unix_secs: u64,
        out: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], AuthError> {
        let r = self.open_inner(datagram, unix_secs, out);
        match r {
            Ok(()) => {
                self.counters.accepted += 1;
                Ok(if self.keyed.is_some() { &out[..] } else { datagram })
            }
            Err(e) => {
                self.counters.count(e);
                Err(e)
            }
        }
    }

    fn open_inner(
        &mut self,
        datagram: &[u8],
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), AuthError> {
        let Some(k) = self.keyed.as_mut() else {
            // Not ours at all: left to `wire::parse` to count.
            if is_mcast(datagram) && flags(datagram) & FLAG_KEYED != 0 {
                return Err(AuthError::KeyedInOpenMode);
            }
            return Ok(());
        };
        let n = k.unsealer.unseal(datagram, out)?;
        let age_secs = now.abs_diff(u64::from(n.time));
        if age_secs > k.max_skew_secs {
            return Err(AuthError::Stale { age_secs });
        }
        if !k.replay.accept(&n.prefix, n.counter) {
            return Err(AuthError::Replayed);
        }
        Ok(())
    }
}
