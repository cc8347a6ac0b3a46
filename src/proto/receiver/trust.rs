//! Signed mode on the receiver (`--trust`): the gate in front of locking onto a session. An
//! announcement alone is only a candidate; the session is locked onto once a Signature from
//! the same session and sender verifies under a trusted key over that announcement, with a
//! version newer than the one already held for that key (unless downgrades are allowed).
//! Unsigned pushes, other keys, bad signatures and old versions are refused and counted
//! ([`Refusals`]); the receiver keeps waiting for a good session. Once locked, the session is
//! *signed*: its hash list is believed only as the signed announcement states it, and no
//! payload block is handed out before the list verified (they wait in memory, bounded by
//! `max_pending_blocks`), so every block written was checked against the signed hashes.
//!
//! The newest version per key lives in a state file the driver keeps; the core only gets it
//! as [`TrustConfig::held`] and says what it accepted ([`Accepted`]).

use super::session::{Identity, Session};
use super::Receiver;
use super::ReceiverConfig;
use crate::proto::manifest::HashList;
use crate::proto::sign::{hex_id, verify, SignError, SignedFields, TrustedKey, KEY_ID_LEN};
use crate::proto::time::Instant;
use crate::proto::wire::{Announce, Header, ObjectId, Packet, Signature};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// Announcements held while waiting for their signature (latest per session and sender).
const MAX_CANDIDATES: usize = 8;

/// What a trusting receiver trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustConfig {
    /// Keys whose signed pushes are accepted (at least one: an empty list accepts nothing).
    pub keys: Vec<TrustedKey>,
    /// Per key id, the newest version already held: a push at or below it is refused.
    pub held: BTreeMap<[u8; KEY_ID_LEN], u64>,
    /// Accept versions at or below the held one too.
    pub allow_downgrade: bool,
}

/// The signed push locked onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The key that signed it.
    pub key: [u8; 32],
    /// Its id.
    pub key_id: [u8; KEY_ID_LEN],
    /// The push's version.
    pub version: u64,
    /// The session.
    pub session: u32,
}

/// Pushes refused by a trusting receiver, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Announcements that no signature followed before the next one (an unsigned push).
    pub unsigned: u64,
    /// Signatures by a key that is not trusted.
    pub untrusted_key: u64,
    /// Signatures naming a trusted key that do not verify (forged or tampered).
    pub bad_signature: u64,
    /// Signatures without an announcement of their session to check them against.
    pub no_announce: u64,
    /// Good signatures over a version not newer than the one held.
    pub old_version: u64,
    /// Good signatures over an announcement that states no hash list.
    pub no_hash_list: u64,
    /// The last untrusted key id seen.
    pub last_untrusted: Option<[u8; KEY_ID_LEN]>,
    /// The last refused old version and the version held.
    pub last_old: Option<(u64, u64)>,
}

impl Refusals {
    /// Whether anything was refused.
    pub fn any(&self) -> bool {
        self.unsigned
            + self.untrusted_key
            + self.bad_signature
            + self.no_announce
            + self.old_version
            + self.no_hash_list
            > 0
    }

    /// One line saying what was refused and why, for logs and errors ("" if nothing).
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.unsigned > 0 {
            parts.push(format!("{} unsigned announcements", self.unsigned));
        }
        if self.untrusted_key > 0 {
            let id = self.last_untrusted.map(|id| hex_id(&id)).unwrap_or_default();
            parts.push(format!("{} signatures by an untrusted key (id {id})", self.untrusted_key));
        }
        if self.bad_signature > 0 {
            parts.push(format!("{} bad signatures", self.bad_signature));
        }
        if self.old_version > 0 {
            let (v, held) = self.last_old.unwrap_or_default();
            parts.push(format!(
                "{} signatures of version {v}, not newer than version {held} already held \
                 (--allow-downgrade accepts them)",
                self.old_version
            ));
        }
        if self.no_hash_list > 0 {
            parts.push(format!("{} signed announcements without a hash list", self.no_hash_list));
        }
        if self.no_announce > 0 {
            parts.push(format!("{} signatures without their announcement", self.no_announce));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("refused: {}", parts.join(", "))
        }
    }
}

/// What the gate made of a datagram that arrived before any session.
#[derive(Debug)]
pub(super) enum Admit {
    /// A verified signed announcement: lock onto it.
    Lock(Header, Announce),
    /// Kept or refused (counted in [`Refusals`]).
    Held,
    /// Not an announcement or a signature: not for the gate.
    Foreign,
}

#[derive(Debug)]
struct Candidate {
    header: Header,
    /// Where the announcement came from: its signature counts only from there too.
    from: SocketAddr,
    announce: Announce,
    /// A signature arrived since this announcement.
    signed: bool,
}

/// The trust gate of a receiver that has not locked onto a session yet.
#[derive(Debug)]
pub(super) struct Gate {
    trust: TrustConfig,
    candidates: VecDeque<Candidate>,
    pub(super) refusals: Refusals,
    /// Signed pushes whose signature verified, newest last (at most [`MAX_CANDIDATES`]): the
    /// one of the session locked onto is what was accepted ([`Receiver::accepted`]).
    pub(super) accepted: VecDeque<Accepted>,
    /// Last reason logged, so that a repeating refusal is logged once.
    logged: Option<&'static str>,
}

impl Gate {
    pub(super) fn new(trust: TrustConfig) -> Self {
        Gate {
            trust,
            candidates: VecDeque::new(),
            refusals: Refusals::default(),
            accepted: VecDeque::new(),
            logged: None,
        }
    }

    fn log_once(&mut self, reason: &'static str, line: impl FnOnce() -> String) {
        if self.logged != Some(reason) {
            self.logged = Some(reason);
            tracing::warn!("{}", line());
        }
    }

    /// A datagram before any session (the session filters of `cfg` applied here too).
    pub(super) fn admit(
        &mut self,
        cfg: &ReceiverConfig,
        from: SocketAddr,
        header: &Header,
        packet: &Packet,
    ) -> Admit {
        let wanted = cfg.session.is_none_or(|s| s == header.session)
            && !cfg.skip_sessions.contains(&header.session);
        match packet {
            Packet::Announce(a) if wanted => {
                self.on_announce(from, header, *a);
                Admit::Held
            }
            Packet::Signature(sig) if wanted => match self.on_signature(from, header, sig) {
                Some(a) => Admit::Lock(*header, a),
                None => Admit::Held,
            },
            _ => Admit::Foreign,
        }
    }

    fn on_announce(&mut self, from: SocketAddr, header: &Header, announce: Announce) {
        let same = |c: &Candidate| {
            c.header.session == header.session && c.header.node == header.node && c.from == from
        };
        if let Some(i) = self.candidates.iter().position(same) {
            let old = self.candidates.remove(i).expect("found");
            if !old.signed {
                self.refusals.unsigned += 1;
                let session = header.session;
                self.log_once("unsigned", || {
                    format!("refusing session {session:#x}: its announcements are not signed")
                });
            }
        }
        if self.candidates.len() >= MAX_CANDIDATES {
            self.candidates.pop_front();
        }
        self.candidates.push_back(Candidate { header: *header, from, announce, signed: false });
    }

    fn on_signature(
        &mut self,
        from: SocketAddr,
        header: &Header,
        sig: &Signature,
    ) -> Option<Announce> {
        // The announcement it signs, from the same address (a copy replayed from elsewhere
        // would bind the session to the replayer).
        let Some(c) = self.candidates.iter_mut().find(|c| {
            c.header.session == header.session && c.header.node == header.node && c.from == from
        }) else {
            self.refusals.no_announce += 1;
            return None;
        };
        c.signed = true;
        let (h, a) = (c.header, c.announce);
        let fields = SignedFields::of(&h, &a, sig.version);
        let key = match verify(&self.trust.keys, &fields, sig) {
            Ok(key) => key.clone(),
            Err(SignError::UntrustedKey(id)) => {
                self.refusals.untrusted_key += 1;
                self.refusals.last_untrusted = Some(id);
                self.log_once("untrusted", || {
                    format!(
                        "refusing session {:#x}: signed by an untrusted key (id {})",
                        h.session,
                        hex_id(&id)
                    )
                });
                return None;
            }
            Err(_) => {
                self.refusals.bad_signature += 1;
                self.log_once("bad", || {
                    format!("refusing session {:#x}: bad signature", h.session)
                });
                return None;
            }
        };
        let payload_blocks = a.object_layout(ObjectId::Payload).block_count();
        if payload_blocks > 0 && a.hashes_hash().is_none() {
            self.refusals.no_hash_list += 1;
            return None;
        }
        let held = self.trust.held.get(&key.id()).copied();
        if let Some(held) = held.filter(|held| sig.version <= *held && !self.trust.allow_downgrade)
        {
            self.refusals.old_version += 1;
            self.refusals.last_old = Some((sig.version, held));
            let v = sig.version;
            self.log_once("old", || {
                format!(
                    "refusing session {:#x}: version {v} is not newer than version {held} \
                     already held (--allow-downgrade accepts it)",
                    h.session
                )
            });
            return None;
        }
        if self.accepted.len() == MAX_CANDIDATES {
            self.accepted.pop_front();
        }
        self.accepted.push_back(Accepted {
            key: key.public_key(),
            key_id: key.id(),
            version: sig.version,
            session: h.session,
        });
        Some(a)
    }
}

/// Whether object `a` goes out before object `b` in a pass: signed pushes send the hash list
/// before the payload, others after it.
pub(super) fn sent_before(signed: bool, a: ObjectId, b: ObjectId) -> bool {
    let rank = |o: ObjectId| match (signed, o) {
        (true, ObjectId::Hashes) => 1,
        (true, ObjectId::Payload) => 2,
        _ => o.index(),
    };
    rank(a) < rank(b)
}

impl Receiver {
    /// With `trust`: the signed push's hash list, once it verified against the signed
    /// announcement, with what was accepted (key and version). Every block handed out since
    /// was checked against it; a relay re-signing downstream builds its session from it.
    pub fn signed_hash_list(&self) -> Option<(&HashList, &Accepted)> {
        let s = self.session.as_ref().filter(|s| s.signed)?;
        Some((s.hash_list.as_ref()?, self.accepted()?))
    }

    /// Before locking, with `trust`: announcements and signatures go to the gate, and only an
    /// announcement whose signature verified becomes a candidate (marked signed: its payload
    /// blocks wait for the signed hash list). Later announcements of that candidate, and every
    /// other datagram (its manifest's symbols), go to the candidates as without `trust`; an
    /// announcement no signed candidate describes never reaches them.
    pub(super) fn on_unlocked_gated(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        packet: Packet,
    ) {
        let Some(gate) = self.gate.as_mut() else { return };
        match (gate.admit(&self.cfg, from, &header, &packet), &packet) {
            (Admit::Lock(h, a), _) => {
                let id = Identity::of(&h, &a);
                self.on_unlocked(now, from, h, Packet::Announce(a));
                let verified = |c: &&mut Session| c.from == from && c.identity == id;
                for c in self.candidates.iter_mut().filter(verified) {
                    c.signed = true;
                    c.hashes_first = true;
                }
            }
            (Admit::Held, Packet::Announce(a)) => {
                // Only a repeat of a verified announcement, from where it came, with the hash
                // list it signed, reaches its candidate; anything else would start an
                // unsigned one.
                let id = Identity::of(&header, a);
                let known = self.candidates.iter().any(|c| {
                    c.signed
                        && c.from == from
                        && c.identity == id
                        && c.announce.hashes_hash == a.hashes_hash
                });
                if known {
                    self.on_unlocked(now, from, header, packet);
                }
            }
            (Admit::Held, _) => {}
            (Admit::Foreign, Packet::Announce(_) | Packet::Signature(_)) => {
                self.stats.dropped_foreign += 1;
            }
            (Admit::Foreign, _) => self.on_unlocked(now, from, header, packet),
        }
    }
}

#[cfg(test)]
mod tests;
