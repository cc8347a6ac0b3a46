//! The counters of a repairer and of the sender's side of repairers.

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepairerStats {
    /// NAKs heard from other receivers.
    pub naks_heard: u64,
    /// Needs heard for blocks it holds.
    pub needs_held: u64,
    /// Needs heard for blocks it does not hold.
    pub needs_unheld: u64,
    /// Backoffs that ended in an answer (an advertisement and its symbols).
    pub answers: u64,
    /// Backoffs cancelled by what was heard meanwhile.
    pub suppressed: u64,
    /// Advertisements sent.
    pub adverts_sent: u64,
    /// Repair symbols sent.
    pub symbols_sent: u64,
    /// Evicted blocks asked back from the driver.
    pub blocks_fetched: u64,
    /// Answers dropped for want of a slot.
    pub no_slot: u64,
    /// Symbols not sent because the slot's ESIs of a block are used up.
    pub esis_exhausted: u64,
    /// Datagrams that did not parse.
    pub dropped_malformed: u64,
    /// Datagrams of another session, or control not from the sender's address.
    pub dropped_foreign: u64,
    /// Needs heard for blocks held but not verified yet (no hash list): not answered.
    pub needs_unverified: u64,
    /// Blocks handed over (or read back) that did not hash as the hash list says.
    pub blocks_refuted: u64,
    /// Needs heard before the block was held, answered once it was.
    pub needs_woken: u64,
}

/// The sender's counters about repairers ([`Sender::repairer_stats`](crate::proto::sender::Sender::repairer_stats)).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SenderRepairerStats {
    /// Repairer joins refused (an address that does not match the node's).
    pub joins_refused: u64,
    /// Repairer joins refused because every slot is taken.
    pub slots_full: u64,
    /// Repairer joins refused because a slot is held from the same IP address.
    pub joins_same_address: u64,
    /// Slots taken back from silent holders for a new join.
    pub slots_reclaimed: u64,
    /// Advertisements believed.
    pub adverts_heard: u64,
    /// Advertisements from a node without a slot, or not from its address.
    pub adverts_ignored: u64,
    /// Advertised needs outside the object or not sent yet.
    pub needs_ignored: u64,
    /// NAK needs cut by a repairer's cover.
    pub needs_covered: u64,
    /// Advertised needs beyond a block's cover limit (the sender repairs anyway).
    pub covers_over_limit: u64,
    /// Repairs the sender had queued or was collecting and left to a repairer.
    pub repairs_saved: u64,
    /// Repairer symbols heard.
    pub symbols_heard: u64,
    /// Blocks whose NAKs from non-repairers were deferred to the repairers (once each).
    pub blocks_deferred: u64,
    /// NAK needs deferred to the repairers.
    pub needs_deferred: u64,
    /// Deferrals that ended without a repairer's advertisement for their block.
    pub deferrals_futile: u64,
}
