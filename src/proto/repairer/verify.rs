//! What a repairer may serve: only blocks that hash as the session's verified hash list says.
//! A block handed over before the list arrived is kept (in the window) but not served (unless
//! [`RepairerConfig::serve_unverified`]: keyed mode, every datagram authenticated); when the
//! list comes ([`Repairer::handle_hashes`]) the window's copies are checked at once, and an
//! evicted one is checked when it is read back. A block that does not hash right is forgotten
//! (counted in `blocks_refuted`); the receiver rewrites it and hands the new copy over again.
//!
//! Also here: what the driver needs to know about the push's end (the sender last heard, an
//! Abort from it), so that a repairer stays while the push goes on after its own completion.

use super::*;
use crate::proto::manifest::HashList;

impl Repairer {
    /// The session's hash list, verified by the receiver (`Receiver::repair_hashes`). Only the
    /// first list of a session counts; one that does not fit the session's layout is ignored.
    pub fn handle_hashes(&mut self, now: Instant, list: &HashList) {
        self.last_now = self.last_now.max(now);
        let Some(view) = self.view else { return };
        if self.hashes.is_some() || list.len() != view.layout.block_count() as usize {
            return;
        }
        self.hashes = Some(list.clone());
        for block in std::mem::take(&mut self.unverified) {
            match self.window.get(&block) {
                Some((data, _)) if Some(blake3::hash(data).as_bytes()) != list.get(block) => {
                    self.window.remove(&block);
                    self.encoders.retain(|(b, _)| *b != block);
                    self.held.remove(&block);
                    self.stats.blocks_refuted += 1;
                }
                // In memory and right, or evicted: checked when it is read back.
                _ => {
                    self.held.insert(block);
                    self.wake_waiting(now, block);
                }
            }
        }
    }

    /// Whether a verified hash list is known (before it, nothing is served).
    pub fn has_hashes(&self) -> bool {
        self.hashes.is_some()
    }

    /// Whether the session's sender was heard at or after `since` (its announcements and
    /// probes come every 100 ms while it runs).
    pub fn sender_heard_since(&self, since: Instant) -> bool {
        self.sender_heard.is_some_and(|t| t >= since)
    }

    /// When the session's sender was last heard.
    pub fn sender_heard(&self) -> Option<Instant> {
        self.sender_heard
    }

    /// Whether [`Repairer::poll_event`] has something for the driver.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Whether the session's sender said Abort (the push is over).
    pub fn sender_aborted(&self) -> bool {
        self.sender_aborted
    }

    /// Take `data` of `block` as held if it may be served: checked against the hash list when
    /// it is known, else kept unverified. Returns whether it goes into the window.
    pub(super) fn admit(&mut self, block: u32, data: &[u8]) -> bool {
        match &self.hashes {
            Some(list) if Some(blake3::hash(data).as_bytes()) == list.get(block) => {
                self.held.insert(block);
                true
            }
            Some(_) => {
                self.stats.blocks_refuted += 1;
                self.window.remove(&block);
                self.encoders.retain(|(b, _)| *b != block);
                self.handle_block_failed(block);
                false
            }
            None => {
                self.unverified.insert(block);
                if self.cfg.serve_unverified {
                    self.held.insert(block);
                }
                true
            }
        }
    }
}
