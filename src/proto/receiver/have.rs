//! Only what changed, on the receiver: once the manifest and the hash list verified (a
//! `--changed-only` or signed sender sends the list before the payload), the driver looks for
//! the blocks it still lacks in the version it already holds ([`Receiver::wanted_blocks`]),
//! writes those that hash as the list says into the staging area and hands them over with
//! [`Receiver::handle_previous`] (the path resumed blocks take: they count as written, are not
//! collected nor NAKed), then calls [`Receiver::handle_scanned`]: the receiver sends its Have
//! report (every payload block it holds, in chunks, unicast to the sender)
//! [`HAVE_REPEATS`] times, a few GRTTs apart, so one lost datagram costs no skipping.

use super::session::{Ctx, Phase, Session, Timer};
use super::*;

/// Times the Have report is sent.
pub const HAVE_REPEATS: u32 = 3;

/// While the driver searches the previous version, the receiver's deadline is at most this
/// far ahead, so the driver comes back to collect what its search threads found.
pub const SEARCH_POLL: Duration = Duration::from_millis(2);

impl Receiver {
    /// While receiving from a sender that sends its hash list before the payload
    /// (`--changed-only`, signed), once the manifest and the list verified: the payload blocks
    /// not held yet, each with the BLAKE3 the list gives it (what a block found elsewhere must
    /// hash to). `None` before that, for a streamed push (its list comes last: nothing to
    /// gain), or once reception is over.
    pub fn wanted_blocks(&self) -> Option<Vec<(u32, [u8; 32])>> {
        let s = self.session.as_ref().filter(|s| s.locked && s.manifest.is_some())?;
        if !s.hashes_first {
            return None;
        }
        let list = s.hash_list.as_ref()?;
        if !matches!(s.phase, Phase::Receiving) {
            return None;
        }
        let o = &s.objects[ObjectId::Payload];
        let wanted = (0..o.layout.block_count())
            .filter(|b| !o.is_done(*b))
            .filter_map(|b| list.get(b).map(|h| (b, *h)))
            .collect();
        Some(wanted)
    }

    /// Whether payload block `b` may still be taken from elsewhere: `Some(rewrite)` while it
    /// is not done (`rewrite`: bytes were written at its offset before and must be replaced),
    /// `None` once it is done or reception is over.
    pub fn takes_block(&self, b: u32) -> Option<bool> {
        let s = self.session.as_ref().filter(|s| matches!(s.phase, Phase::Receiving))?;
        let o = &s.objects[ObjectId::Payload];
        (b < o.layout.block_count() && !o.is_done(b)).then(|| s.written.contains_key(&b))
    }

    /// Blocks just written into the staging area from the previous version (each with the
    /// BLAKE3 of what was written): taken as held, like [`Receiver::handle_held`], and counted
    /// in `previous_blocks`. Returns how many were taken.
    pub fn handle_previous(&mut self, now: Instant, blocks: &[(u32, [u8; 32])]) -> usize {
        let taken = self.handle_held(now, blocks);
        self.stats.previous_blocks += taken as u64;
        taken
    }

    /// The driver's search of the previous version is still running: wake it within
    /// [`SEARCH_POLL`] (through [`poll_timeout`](Receiver::poll_timeout)).
    pub fn handle_searching(&mut self, now: Instant) {
        if let Some((s, _)) = self.enter(now) {
            if s.haves_left == 0 && matches!(s.phase, Phase::Receiving) {
                s.timers.set(Timer::Have, now + SEARCH_POLL);
            }
        }
    }

    /// The search of the previous version is over (or there was none): report what is held
    /// to the sender, [`HAVE_REPEATS`] times. Ignored before the hash list verified, once
    /// reception is over, or when already reported.
    pub fn handle_scanned(&mut self, now: Instant) {
        if let Some((s, mut cx)) = self.enter(now) {
            if s.hash_list.is_some() && matches!(s.phase, Phase::Receiving) && s.haves_left == 0 {
                s.haves_left = HAVE_REPEATS;
                s.have_due(&mut cx, now);
            }
        }
    }
}

impl Session {
    /// [`Timer::Have`] fired: queue the report's chunks and arm the next repetition (nothing
    /// before [`Receiver::handle_scanned`]: then it only woke the driver).
    pub(super) fn have_due(&mut self, cx: &mut Ctx, now: Instant) {
        if self.haves_left == 0 || !matches!(self.phase, Phase::Receiving) {
            return;
        }
        self.haves_left -= 1;
        let o = &self.objects[ObjectId::Payload];
        for have in Have::chunks(o.layout.block_count(), |b| o.is_done(b)) {
            cx.stats.haves_sent += 1;
            self.outbox.push_back(Packet::Have(have));
        }
        if self.haves_left > 0 {
            let interval = (self.grtt * 2).clamp(Duration::from_millis(20), Duration::from_secs(1));
            self.timers.set(Timer::Have, now + interval);
        }
    }
}
