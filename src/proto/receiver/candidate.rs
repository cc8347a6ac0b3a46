//! Before locking: the candidate sessions. In open mode anyone can announce a session, also by
//! unicast from off the link, so the first announcement heard is not believed on its face. Up
//! to [`MAX_CANDIDATES`] announced sessions are kept (the least recently heard is dropped for a
//! new one), each collecting its own manifest; the receiver locks onto the first whose
//! manifest decodes and matches its announced hash, and drops the rest. A candidate that never
//! delivers a manifest therefore never blocks a real session announced later. A candidate whose
//! manifest matched but was refused is dropped and remembered (a pinned receiver, `--session`
//! or `--sender`, fails instead: that is the push it was told to take).
//!
//! [`SenderFilter`] (`--sender`) takes announcements only from one address; `max_size`
//! refuses a payload larger than the receiver will take before anything is sized by it.

use super::session::{Ctx, Identity, Session};
use super::*;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use thiserror::Error;

/// Most candidate sessions kept while waiting for a manifest that verifies.
pub const MAX_CANDIDATES: usize = 4;
/// Most refused candidates remembered (their announcements are not followed again).
pub const MAX_REFUSED: usize = 8;

/// The one sender a receiver accepts (`--sender`): an IP address, optionally with a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderFilter {
    /// The sender's address.
    pub ip: IpAddr,
    /// Its source port, if pinned too.
    pub port: Option<u16>,
}

/// A `--sender` value that is neither an IP address nor an address with a port.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not an IP address or IP:PORT")]
pub struct SenderFilterError(String);

impl SenderFilter {
    /// Whether a datagram from `from` is from this sender (IPv4-mapped IPv6 counts as IPv4).
    pub fn matches(&self, from: SocketAddr) -> bool {
        canonical(from.ip()) == canonical(self.ip) && self.port.is_none_or(|p| p == from.port())
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for SenderFilter {
    type Err = SenderFilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(SenderFilter { ip: a.ip(), port: Some(a.port()) });
        }
        let bare = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(s);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Ok(SenderFilter { ip, port: None }),
            Err(_) => Err(SenderFilterError(s.to_string())),
        }
    }
}

impl fmt::Display for SenderFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}", SocketAddr::new(self.ip, p)),
            None => write!(f, "{}", self.ip),
        }
    }
}

impl Receiver {
    /// The candidates, and what they need from outside them: each gets an equal share of the
    /// payload slots.
    pub(super) fn candidates_ctx(&mut self) -> (&mut Vec<Session>, Ctx<'_>) {
        let slots = self.cfg.max_pending_blocks / self.candidates.len().max(1);
        let cx = Ctx { cfg: &self.cfg, rng: &mut self.rng, stats: &mut self.stats, slots };
        (&mut self.candidates, cx)
    }

    /// Whether this receiver was told which push to take (`--session` or `--sender`).
    fn pinned(&self) -> bool {
        self.cfg.session.is_some() || self.cfg.sender.is_some()
    }

    /// Whether an announcement from `from` may start a candidate, counting why not.
    fn admits(&mut self, from: SocketAddr, header: &Header, a: &Announce) -> bool {
        let session = header.session;
        if self.cfg.session.is_some_and(|s| s != session)
            || self.cfg.skip_sessions.contains(&session)
        {
            self.stats.dropped_foreign += 1;
            return false;
        }
        if self.cfg.sender.is_some_and(|f| !f.matches(from)) {
            self.stats.announces_refused += 1;
            return false;
        }
        // A streamed image's payload is its bound plus a trailer; the manifest check bounds the
        // rest exactly (`Manifest::check_max_size`).
        let slack = crate::proto::manifest::STREAM_TRAILER_LEN;
        if self.cfg.max_size.is_some_and(|max| a.object_size > max.saturating_add(slack)) {
            self.stats.announces_refused += 1;
            if !self.warned_size {
                self.warned_size = true;
                tracing::warn!(
                    "session {session:08x} from {from} announces {} bytes, more than --max-size \
                     {}: not taken",
                    a.object_size,
                    self.cfg.max_size.unwrap_or(0)
                );
            }
            return false;
        }
        let id = Identity::of(header, a);
        if self.refused.contains(&(from, id)) {
            self.stats.announces_refused += 1;
            return false;
        }
        true
    }

    /// A datagram while no session is locked onto: an announcement may start a candidate;
    /// everything of a candidate's session goes to it (an announcement only to the candidate
    /// it describes). Then lock onto a candidate whose manifest verified, or drop refused ones.
    pub(super) fn on_unlocked(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        packet: Packet,
    ) {
        let announced = match &packet {
            Packet::Announce(a) => Some(Identity::of(&header, a)),
            _ => None,
        };
        if let (Packet::Announce(a), Some(id)) = (&packet, announced) {
            let known = self.candidates.iter().any(|c| c.from == from && c.identity == id);
            if !known {
                if !self.admits(from, &header, a) {
                    return;
                }
                if self.candidates.len() == MAX_CANDIDATES {
                    let oldest = (0..self.candidates.len())
                        .min_by_key(|&i| self.candidates[i].last_heard)
                        .expect("full");
                    let c = self.candidates.remove(oldest);
                    tracing::debug!("candidate session {:08x} from {} dropped", c.id(), c.from);
                    self.stats.candidates_evicted += 1;
                }
                self.candidates.push(Session::new(now, from, &header, *a, self.cfg.node));
            }
        }
        let (candidates, mut cx) = self.candidates_ctx();
        let mut routed = false;
        for c in candidates {
            let ours = match announced {
                Some(id) => c.from == from && c.identity == id,
                None => c.id() == header.session,
            };
            if ours {
                routed = true;
                c.on_packet(&mut cx, now, from, header, packet.clone());
            }
        }
        if !routed {
            self.stats.dropped_foreign += 1;
        }
        self.settle(now);
    }

    /// Lock onto a candidate whose manifest verified; drop (or, pinned, fail on) one whose
    /// manifest was refused.
    pub(super) fn settle(&mut self, now: Instant) {
        // With `trust`, only a signed candidate is ever locked onto (defence in depth: the gate
        // lets no other be made).
        let gated = self.gate.is_some();
        if let Some(i) = self.candidates.iter().position(|c| c.locked && (!gated || c.signed)) {
            let mut s = self.candidates.swap_remove(i);
            tracing::info!("locked onto session {:08x} from {}", s.id(), s.from);
            self.stats.candidates_evicted += self.candidates.len() as u64;
            self.candidates.clear();
            s.start_hello(now);
            let from = s.from;
            self.session = Some(s);
            self.watch_locked(now, from);
            return;
        }
        while let Some(i) = self.candidates.iter().position(|c| c.refused.is_some()) {
            let mut c = self.candidates.swap_remove(i);
            let why = c.refused.take().unwrap_or_default();
            self.stats.candidates_refused += 1;
            if self.pinned() {
                let slots = self.cfg.max_pending_blocks;
                let mut cx =
                    Ctx { cfg: &self.cfg, rng: &mut self.rng, stats: &mut self.stats, slots };
                c.locked = true;
                c.fail(&mut cx, now, why);
                self.candidates.clear();
                self.session = Some(c);
                return;
            }
            tracing::warn!("session {:08x} from {} not taken: {why}", c.id(), c.from);
            if self.refused.len() == MAX_REFUSED {
                self.refused.pop_front();
            }
            self.refused.push_back((c.from, c.identity));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_filter_parses_ip_or_ip_and_port() {
        let ip: SenderFilter = "198.18.0.1".parse().unwrap();
        assert!(ip.matches("198.18.0.1:7001".parse().unwrap()));
        assert!(ip.matches("[::ffff:198.18.0.1]:9".parse().unwrap()), "mapped IPv4");
        assert!(!ip.matches("198.18.0.2:7001".parse().unwrap()));
        let port: SenderFilter = "198.18.0.1:7001".parse().unwrap();
        assert!(port.matches("198.18.0.1:7001".parse().unwrap()));
        assert!(!port.matches("198.18.0.1:7002".parse().unwrap()));
        let v6: SenderFilter = "[fd00::1]".parse().unwrap();
        assert_eq!(v6.port, None);
        assert!(v6.matches("[fd00::1]:5".parse().unwrap()));
        assert_eq!("[fd00::1]:5".parse::<SenderFilter>().unwrap().port, Some(5));
        assert!("sender.example".parse::<SenderFilter>().is_err());
        assert!("198.18.0.1:70000".parse::<SenderFilter>().is_err());
        assert_eq!(port.to_string(), "198.18.0.1:7001");
        assert_eq!(ip.to_string(), "198.18.0.1");
    }
}
