//! What the sender hears: NAKs (aggregated into repairs, taken from the repair budgets,
//! charged to their receivers under the straggler policy, and learnt from by auto parity),
//! echoes (GRTT and loss rates) and completion reports (acknowledged, and counted towards
//! `expected_receivers`).
//!
//! Open mode: anyone on the link can send feedback, so nothing in a NAK or echo is believed
//! beyond what the session can produce. A NAK or echo claiming a node id from another address
//! than the one it was first heard from is ignored (`feedback_wrong_addr`); a NAK quoting a
//! sequence number the sender has not reached is dropped (`naks_seq_ahead`); a need for a block
//! outside the object (`needs_out_of_range`) or not sent yet (`needs_unsent`) is skipped, and a
//! need's count is clamped to the block's K + [`NEED_SLACK`] (`needs_clamped`), less whatever
//! repairs of it are still on their way to that receiver; what the budgets refuse is counted
//! in `repairs_over_budget`. Echoes count only for probes sent (`echoes_ignored`). Reports are
//! taken from anyone: gating them is not this module's business.

use super::*;
use group::Binding;

/// A need's count is clamped to the block's source symbols plus this (failed decodes).
pub(super) const NEED_SLACK: u16 = 16;

/// Expected repair losses (of the repairs a NAK asks for) below which the margin is left out.
pub(super) const MARGIN_MIN_EXPECTED_LOSS: f64 = 0.01;

/// The repair margin for a need of `need` symbols from a receiver losing `loss_ppm`: the
/// configured `margin` when the receiver can be expected to lose one of the `need + margin`
/// repairs with a chance of at least [`MARGIN_MIN_EXPECTED_LOSS`] (every need from 0.5 % loss
/// up), none below it (a need under 9 symbols at 0.1 %: the margin's symbol would cost more
/// than the rare extra round it saves). A loss of 0 is unknown (a receiver that NAKs lost
/// something): the full margin. The loss rate is the NAKer's word: a forged one moves the
/// repair by at most the configured margin.
pub(super) fn repair_margin(margin: u16, need: u16, loss_ppm: u32) -> u16 {
    let expected = (f64::from(need) + f64::from(margin)) * f64::from(loss_ppm) / 1e6;
    if loss_ppm == 0 || expected >= MARGIN_MIN_EXPECTED_LOSS {
        margin
    } else {
        0
    }
}

/// Receivers still to finish at or below which a NAK is answered without a holdoff.
pub const IMMEDIATE_REPAIR_BELOW: u32 = 8;

impl Sender {
    /// The NAK aggregation window: `holdoff_grtts` GRTTs, or none once the sender knows that
    /// at most [`IMMEDIATE_REPAIR_BELOW`] expected receivers are still to finish (the end
    /// game: so few NAKs are left to merge that waiting for them only delays the last
    /// receivers; a NAK arriving later is still charged only what is not already in flight to
    /// it, see `repair`).
    pub(super) fn holdoff(&self) -> Duration {
        let few_left = self.cfg.expected_receivers.is_some_and(|n| {
            u64::from(n).saturating_sub(self.accounted()) <= u64::from(IMMEDIATE_REPAIR_BELOW)
        });
        if few_left {
            Duration::ZERO
        } else {
            self.grtt.get() * self.cfg.holdoff_grtts
        }
    }

    /// A NAK from `node` at `from`. Checked before anything is believed: the node's address,
    /// the quoted sequence number (not ahead of what was sent), each need's block (in the
    /// layout and already sent) and count (clamped); then its repairs are taken from the
    /// budgets ([`RepairBudget`]) and charged to the node (straggler policy).
    pub(super) fn on_nak(&mut self, now: Instant, node: u32, from: SocketAddr, list: NeedList) {
        self.stats.naks_received += 1;
        let tracked = match self.group.bind(node, from) {
            Binding::Tracked => true,
            Binding::Untracked => {
                self.stats.feedback_untracked += 1;
                false
            }
            Binding::Mismatch => {
                self.stats.feedback_wrong_addr += 1;
                return;
            }
        };
        // A receiver quotes the highest sequence number it has seen (0 before any): one
        // ahead of what was sent is made up, and would make every repair look lost.
        let last_sent = self.seq.wrapping_sub(1);
        if list.seq != 0 && (self.seq == 0 || seq_after(list.seq, last_sent)) {
            self.stats.naks_seq_ahead += 1;
            return;
        }
        self.touch_quiet(now);
        self.group.report_loss(node, list.loss_ppm);
        if self.group.is_dropped(node) {
            self.stats.needs_ignored += list.needs.len() as u64;
            self.squelch_nodes.insert(node);
            return;
        }
        let holdoff_end = now + self.holdoff();
        let mut allowance = self.budget.allowance(now, node, tracked);
        let mut charged = 0u32;
        for need in list.needs {
            let Some(k) = self.layout_of(need.object).source_symbols(need.block) else {
                self.stats.needs_ignored += 1;
                self.stats.needs_out_of_range += 1;
                continue;
            };
            let k = self.block_k(need.object, need.block, k);
            if need.block >= self.started[need.object] {
                // Not sent yet: nobody can lack it.
                self.stats.needs_ignored += 1;
                self.stats.needs_unsent += 1;
                continue;
            }
            if need.object == ObjectId::Payload {
                self.bias.on_nak(need.block);
                if let Some(due) = self.unavailable.get_mut(&need.block) {
                    *due = true;
                    self.stats.needs_ignored += 1;
                    continue;
                }
            }
            // Nobody can need more than a whole block plus a few failed decodes.
            let most = k.saturating_add(NEED_SLACK);
            if need.count > most {
                self.stats.needs_clamped += 1;
            }
            let need = Need { count: need.count.min(most), ..need };
            // What a local repairer advertised for this block is not asked again.
            let need =
                Need { count: self.repairers.uncovered(now, self.grtt.get(), node, need), ..need };
            if need.count == 0 {
                self.stats.needs_ignored += 1;
                continue;
            }
            let margin = repair_margin(self.cfg.repair_margin, need.count, list.loss_ppm);
            let (added, refused) = self.repairs.on_need(need, list.seq, margin, allowance);
            allowance -= added;
            self.stats.repairs_over_budget += u64::from(refused);
            if added == 0 {
                self.stats.needs_ignored += 1;
            }
            if self.repairs.is_collecting() && !self.timers.is_set(Timer::Holdoff) {
                self.timers.set(Timer::Holdoff, holdoff_end);
            }
            charged = charged.saturating_add(added);
        }
        self.budget.spend(now, node, tracked, charged);
        let object_symbols = self.layout().symbol_count();
        let grtt = self.grtt.get();
        if self.group.charge(now, grtt, node, charged, object_symbols, &self.cfg.straggler) {
            let m = self.group.get(node).cloned().unwrap_or_default();
            tracing::warn!(
                node,
                loss_ppm = m.loss_ppm.unwrap_or(0),
                charged = m.charged,
                "dropping a straggler: it lost far more than the group and used up its repair budget"
            );
            self.squelch_nodes.insert(node);
            self.rate_ctl.on_receiver_gone(now, node);
            self.events.push_back(Event::ReceiverDropped {
                node,
                loss_ppm: m.loss_ppm.unwrap_or(0),
                charged: m.charged,
            });
            self.check_finished(now);
        }
    }

    /// Receivers accounted for: reported, or dropped without a report.
    pub(super) fn accounted(&self) -> u64 {
        let dropped = self.group.dropped().filter(|(n, _)| !self.receivers.contains_key(n)).count();
        (self.receivers.len() + dropped) as u64
    }

    /// An echo of a probe: a GRTT sample and the receiver's loss rate.
    /// Counted only from the node's bound address and for a probe actually sent (see
    /// [`Grtt`]); its loss rate is believed only then.
    pub(super) fn on_echo(&mut self, now: Instant, node: u32, from: SocketAddr, e: &Echo) {
        self.stats.echoes_received += 1;
        match self.group.bind(node, from) {
            Binding::Tracked => {}
            Binding::Untracked => self.stats.feedback_untracked += 1,
            Binding::Mismatch => {
                self.stats.feedback_wrong_addr += 1;
                return;
            }
        }
        let delay = Duration::from_micros(u64::from(e.delay_us));
        if self.grtt.on_echo(now, e.probe_time_us, delay).is_none() {
            self.stats.echoes_ignored += 1;
            return;
        }
        self.group.report_loss(node, e.loss_ppm);
    }

    /// A rate report: believed from a node bound to this address only, then handed to the
    /// rate controller.
    pub(super) fn on_rate_report(
        &mut self,
        now: Instant,
        node: u32,
        from: SocketAddr,
        r: &RateReport,
    ) {
        self.roster.heard(node, from, now);
        if self.group.bind(node, from) == Binding::Mismatch {
            self.stats.feedback_wrong_addr += 1;
            return;
        }
        self.rate_ctl.on_report(now, node, r);
    }

    /// A completion report: acknowledged every time (the receiver repeats it until it hears
    /// the acknowledgement), handed to the driver the first time.
    pub(super) fn on_report(&mut self, now: Instant, node: u32, from: SocketAddr, report: Report) {
        self.stats.reports_received += 1;
        if !self.roster_report(now, node, from, &report) {
            return; // not heard in this session, or not from its address: not acknowledged
        }
        self.group.heard(node);
        self.last_report_at = now;
        self.queue_ack(now, node);
        if let std::collections::btree_map::Entry::Vacant(e) = self.receivers.entry(node) {
            let info = ReceiverInfo { node, addr: from, report, at: now };
            e.insert(info.clone());
            self.events.push_back(Event::ReceiverReport(info));
        }
        self.check_finished(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_left_out_only_when_losing_a_repair_is_unlikely() {
        // 0.5 %: every need keeps its margin, down to a single symbol (2 x 0.5 % = 1 %).
        assert_eq!(repair_margin(1, 1, 5_000), 1);
        assert_eq!(repair_margin(1, 1, 10_000), 1);
        // Just below the bound: 2 x 0.49 % < 1 %.
        assert_eq!(repair_margin(1, 1, 4_900), 0);
        // 0.1 %: 9 + 1 symbols reach 1 %, 8 + 1 do not.
        assert_eq!(repair_margin(1, 9, 1_000), 1);
        assert_eq!(repair_margin(1, 8, 1_000), 0);
        // Unknown loss: the configured margin; no margin configured: none.
        assert_eq!(repair_margin(3, 1, 0), 3);
        assert_eq!(repair_margin(0, 100, 500_000), 0);
    }
}
