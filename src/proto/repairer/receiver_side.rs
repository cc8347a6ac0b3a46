//! The receiver's side of local repairers (a child module of `proto::receiver`, kept with the
//! repairer's code): a repairer's symbols are taken like the sender's, checked by the same
//! hashes, but only by a locked session and without touching the sender's sequence numbers or
//! block position; a repairer's advertisement is a heard need (the NAK backoff stays quiet for
//! the bounded while a heard NAK would keep it quiet). [`Receiver::repair_view`] tells a
//! [`Repairer`](crate::proto::repairer::Repairer) beside it which session to serve, and
//! [`Receiver::repair_hashes`] what its blocks must hash to.

use super::session::Session;
use super::*;
use crate::proto::repairer::RepairView;

impl Receiver {
    /// The locked session as a repairer beside this receiver serves it.
    /// `None` for a compressed session: its symbols are of the compressed block, which a
    /// repairer (holding the decompressed bytes) cannot make.
    pub fn repair_view(&self) -> Option<RepairView> {
        let s = self.session.as_ref().filter(|s| !s.identity.compressed)?;
        Some(RepairView {
            session: s.id(),
            sender_node: s.identity.sender_node,
            sender: s.from,
            layout: s.announce.layout(),
            grtt: s.grtt,
        })
    }

    /// The locked session's hash list, once it verified against the announcement: what a
    /// repairer beside this receiver checks every block against before serving it.
    pub fn repair_hashes(&self) -> Option<&crate::proto::manifest::HashList> {
        self.session.as_ref().filter(|s| s.locked)?.hash_list.as_ref()
    }
}

impl Session {
    /// A repairer datagram of this session.
    pub(super) fn on_repairer(&mut self, cx: &mut Ctx, now: Instant, p: RepairerPacket<'_>) {
        match p {
            RepairerPacket::Advert(list) => self.on_cover(cx, now, &list),
            RepairerPacket::Symbol(s) if self.locked => {
                let d =
                    Data { object: s.object, block: s.block, esi: s.esi, seq: 0, symbol: s.symbol };
                self.on_data(cx, now, d, None, false);
            }
            RepairerPacket::Symbol(_) => cx.stats.dropped_unlocked += 1,
        }
    }
}
