//! Who got it: the sender's roster of the receivers heard in this session (node id → host name,
//! address, first and last heard, outcome), the `--expect` list, and the tally of who
//! completed, who failed (with the reason it reported) and who never answered.
//!
//! Trust rules (issue 11, "reports only from nodes heard in this session"):
//!
//! * a node enters the roster when the sender hears it: a Hello join (which also gives its host
//!   name and is welcomed), a NAK or an echo. The address it was first heard from is its
//!   address for the rest of the session; a datagram under the same node id from another
//!   address is counted (`address_conflicts`) and changes nothing;
//! * a report counts only from a node already in the roster, from its address. Any other
//!   report is counted as unsolicited (`unsolicited_reports`), never acknowledged, and changes
//!   nothing: a receiver whose join was lost repeats it, and its report counts once the join
//!   arrives;
//! * the roster holds at most [`MAX_ROSTER`] nodes, so a flood of forged node ids cannot grow
//!   it without bound; nodes past the limit are counted (`refused_full`) and not heard.
//!
//! A node's first report is its outcome: complete only if it reported a verified copy whose
//! object hash and size are the sender's, else failed with the reason it gave (or why the
//! sender refuses its copy).
//!
//! `--expect`: each entry is a host name or a node id ([`parse_node_id`]); it is *matched* by
//! every node whose host name equals it (ASCII case-insensitively) or whose id it names. An
//! entry is *answered* once at least one node matching it has reported and no node matching it
//! that the roster heard is still without a report; the sender finishes when every entry is
//! answered ([`Roster::expect_met`]).

use super::*;
use crate::proto::wire::{Hello, HostName};

/// Most nodes one session's roster holds.
pub const MAX_ROSTER: usize = 1 << 16;

/// What a node's first report said, as the sender judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutcome {
    /// A verified copy of this object.
    Complete,
    /// Failed, with its reason.
    Failed(String),
}

/// One node heard in this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    /// Node id.
    pub node: u32,
    /// Host name from its Hello, once heard.
    pub host: Option<HostName>,
    /// The address it was first heard from.
    pub addr: SocketAddr,
    /// When it was first heard.
    pub first_heard: Instant,
    /// When it was last heard (from its address).
    pub last_heard: Instant,
    /// Its first report's outcome, once it reported.
    pub outcome: Option<NodeOutcome>,
}

/// An `--expect` entry: a host name or a node id, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The entry as written.
    pub entry: String,
    /// The node id it names, if it reads as one.
    pub node: Option<u32>,
}

impl Expected {
    /// An entry as listed (surrounding white space removed).
    pub fn new(entry: &str) -> Self {
        let entry = entry.trim();
        Expected { entry: entry.to_owned(), node: parse_node_id(entry) }
    }

    /// Whether node `e` answers to this entry.
    pub fn matches(&self, e: &RosterEntry) -> bool {
        self.node == Some(e.node)
            || e.host.as_ref().is_some_and(|h| h.as_str().eq_ignore_ascii_case(&self.entry))
    }
}

/// A node id as written by people: decimal, or hexadecimal with `0x`. Ids are never 0.
pub fn parse_node_id(s: &str) -> Option<u32> {
    let id = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()?
        }
        Some(_) => return None,
        None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok()?,
        None => return None,
    };
    (id != 0).then_some(id)
}

/// The outcome of a push by node, against the `--expect` list if there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally<'a> {
    /// Reported a verified copy (and listed, with `--expect`).
    pub completed: Vec<&'a RosterEntry>,
    /// Reported a failure (and listed, with `--expect`), with its reason.
    pub failed: Vec<(&'a RosterEntry, &'a str)>,
    /// `--expect` entries no node answered: with the matching node heard but without a report,
    /// if there is one.
    pub missing: Vec<(&'a Expected, Option<&'a RosterEntry>)>,
    /// Reported, but matches no `--expect` entry.
    pub unexpected: Vec<&'a RosterEntry>,
}

/// The receivers heard in one session (see the module doc for the rules).
#[derive(Debug, Clone, Default)]
pub struct Roster {
    nodes: BTreeMap<u32, RosterEntry>,
    expected: Option<Vec<Expected>>,
    /// Joins heard and not yet welcomed.
    welcome: BTreeSet<u32>,
    unsolicited: u64,
    conflicts: u64,
    refused_full: u64,
    /// Relays' claims (type 18): node → the relay forwarding its reports.
    via: BTreeMap<u32, u32>,
}

impl Roster {
    /// Node `node` was heard from `from` at `now` (a NAK, an echo, a join). Returns whether it
    /// is in the roster at that address.
    pub fn heard(&mut self, node: u32, from: SocketAddr, now: Instant) -> bool {
        let full = self.nodes.len() >= MAX_ROSTER;
        match self.nodes.entry(node) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let e = e.get_mut();
                if e.addr != from {
                    self.conflicts += 1;
                    return false;
                }
                e.last_heard = e.last_heard.max(now);
                true
            }
            std::collections::btree_map::Entry::Vacant(_) if full => {
                self.refused_full += 1;
                false
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(RosterEntry {
                    node,
                    host: None,
                    addr: from,
                    first_heard: now,
                    last_heard: now,
                    outcome: None,
                });
                true
            }
        }
    }

    /// A join from `node`: heard, named (its first name stays), and welcomed.
    pub fn on_join(&mut self, node: u32, from: SocketAddr, now: Instant, host: HostName) {
        if !self.heard(node, from, now) {
            return;
        }
        let e = self.nodes.get_mut(&node).expect("just heard");
        e.host.get_or_insert(host);
        self.welcome.insert(node);
    }

    /// A report from `node`: whether it counts (a node heard before, from its address). The
    /// first one that counts sets the node's outcome, against the sender's object hash and
    /// size.
    pub fn on_report(
        &mut self,
        node: u32,
        from: SocketAddr,
        now: Instant,
        report: &Report,
        object: (Option<[u8; 32]>, u64),
    ) -> bool {
        let Some(e) = self.nodes.get_mut(&node).filter(|e| e.addr == from) else {
            self.unsolicited += 1;
            return false;
        };
        e.last_heard = e.last_heard.max(now);
        if e.outcome.is_none() {
            let (hash, size) = object;
            e.outcome = Some(match report.status {
                ReportStatus::Complete
                    if Some(report.object_hash) == hash && report.bytes == size =>
                {
                    NodeOutcome::Complete
                }
                ReportStatus::Complete => NodeOutcome::Failed(
                    "reported a copy whose hash or size is not the sender's".into(),
                ),
                ReportStatus::Failed if report.reason.is_empty() => {
                    NodeOutcome::Failed("failed (no reason given)".into())
                }
                ReportStatus::Failed => NodeOutcome::Failed(report.reason.clone()),
            });
        }
        true
    }

    /// Wait for exactly these hosts (see the module doc).
    pub fn expect(&mut self, entries: Vec<Expected>) {
        self.expected = Some(entries);
    }

    /// The `--expect` list, if any.
    pub fn expected(&self) -> Option<&[Expected]> {
        self.expected.as_deref()
    }

    /// With an `--expect` list: whether every entry is answered. `None` without one.
    pub fn expect_met(&self) -> Option<bool> {
        let list = self.expected.as_ref()?;
        Some(list.iter().all(|x| self.answered(x)))
    }

    fn answered(&self, x: &Expected) -> bool {
        let mut matching = self.nodes.values().filter(|e| x.matches(e)).peekable();
        matching.peek().is_some() && matching.all(|e| e.outcome.is_some())
    }

    /// Node `node`, if heard.
    pub fn get(&self, node: u32) -> Option<&RosterEntry> {
        self.nodes.get(&node)
    }

    /// Every node heard, by id.
    pub fn nodes(&self) -> impl Iterator<Item = &RosterEntry> {
        self.nodes.values()
    }

    /// Who completed, failed, never answered, or answered unasked.
    pub fn tally(&self) -> Tally<'_> {
        let mut t = Tally::default();
        let listed =
            |e: &RosterEntry| self.expected.as_ref().is_none_or(|l| l.iter().any(|x| x.matches(e)));
        for e in self.nodes.values() {
            match &e.outcome {
                None => {}
                Some(_) if !listed(e) => t.unexpected.push(e),
                Some(NodeOutcome::Complete) => t.completed.push(e),
                Some(NodeOutcome::Failed(why)) => t.failed.push((e, why)),
            }
        }
        for x in self.expected.iter().flatten() {
            if !self.answered(x) {
                let heard = self.nodes.values().find(|e| x.matches(e) && e.outcome.is_none());
                t.missing.push((x, heard));
            }
        }
        t
    }

    /// Reports refused: from a node not heard before, or not from its address.
    pub fn unsolicited_reports(&self) -> u64 {
        self.unsolicited
    }

    /// Datagrams under a known node id from another address than the node's.
    pub fn address_conflicts(&self) -> u64 {
        self.conflicts
    }

    /// Relay `relay` (heard at `from`) forwards reports for `nodes` (type 18). Ignored unless
    /// the relay is in the roster at `from`; at most [`MAX_ROSTER`] claims are held.
    pub fn on_relayed(&mut self, relay: u32, from: SocketAddr, nodes: &[u32]) {
        if self.nodes.get(&relay).is_none_or(|e| e.addr != from) {
            self.unsolicited += 1;
            return;
        }
        for n in nodes.iter().filter(|n| **n != relay) {
            if self.via.len() < MAX_ROSTER || self.via.contains_key(n) {
                self.via.insert(*n, relay);
            }
        }
    }

    /// The relay node `node`'s reports came through: claimed by a relay heard at the same
    /// address as `node`, else `None`.
    pub fn via(&self, node: u32) -> Option<&RosterEntry> {
        let relay = self.nodes.get(self.via.get(&node)?)?;
        (self.nodes.get(&node)?.addr == relay.addr).then_some(relay)
    }

    /// Nodes not taken because the roster was full.
    pub fn refused_full(&self) -> u64 {
        self.refused_full
    }

    /// Joined nodes waiting for a welcome.
    pub(super) fn welcomes_waiting(&self) -> usize {
        self.welcome.len()
    }

    /// The next welcome: up to [`MAX_ACK_NODES`] joined nodes.
    pub(super) fn take_welcome(&mut self) -> Option<Packet<'static>> {
        let nodes: Vec<u32> = self.welcome.iter().copied().take(MAX_ACK_NODES).collect();
        if nodes.is_empty() {
            return None;
        }
        for n in &nodes {
            self.welcome.remove(n);
        }
        Some(Packet::Hello(Hello::Welcome { nodes }))
    }
}

impl Sender {
    /// The receivers heard in this session and their outcomes.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// Finish once every one of these hosts has reported (instead of after `linger`, or
    /// `expected_receivers`).
    pub fn expect(&mut self, entries: Vec<Expected>) {
        self.roster.expect(entries);
    }

    /// A Hello from a receiver (a welcome from anyone else is not for the sender).
    pub(super) fn on_hello(&mut self, now: Instant, node: u32, from: SocketAddr, hello: Hello) {
        match hello {
            Hello::Join { host } => {
                self.roster.on_join(node, from, now, host);
                if self.roster.welcomes_waiting() > 0 {
                    self.arm_ack_timer(now);
                }
            }
            Hello::Welcome { .. } | Hello::Slots { .. } => self.stats.dropped_foreign += 1,
            Hello::RepairerJoin => self.on_repairer_join(now, node, from),
        }
    }

    /// Whether a report from `node` at `from` counts (see [`Roster::on_report`]).
    pub(super) fn roster_report(
        &mut self,
        now: Instant,
        node: u32,
        from: SocketAddr,
        report: &Report,
    ) -> bool {
        let object = (self.hash_list_root, self.layout().object_size());
        let counts = self.roster.on_report(node, from, now, report, object);
        if !counts {
            tracing::debug!(node, %from, "report from a node not heard from that address: ignored");
        }
        counts
    }
}

#[cfg(test)]
mod tests;
