//! What the sender hears: NAKs (aggregated into repairs, charged to their receivers under the
//! straggler policy, and learnt from by auto parity), echoes (GRTT and loss rates) and
//! completion reports (acknowledged, and counted towards `expected_receivers`).

use super::*;

impl Sender {
    pub(super) fn on_nak(&mut self, now: Instant, node: u32, list: NeedList) {
        self.stats.naks_received += 1;
        self.touch_quiet(now);
        self.group.report_loss(node, list.loss_ppm);
        if self.group.is_dropped(node) {
            self.stats.needs_ignored += list.needs.len() as u64;
            self.squelch_nodes.insert(node);
            return;
        }
        let holdoff_end = now + self.grtt.get() * self.cfg.holdoff_grtts;
        let mut charged = 0u32;
        for need in list.needs {
            let Some(k) = self.layout_of(need.object).source_symbols(need.block) else {
                self.stats.needs_ignored += 1;
                continue;
            };
            if need.object == ObjectId::Payload {
                self.bias.on_nak(need.block);
                if let Some(due) = self.unavailable.get_mut(&need.block) {
                    *due = true;
                    self.stats.needs_ignored += 1;
                    continue;
                }
            }
            // Nobody can need more than a whole block plus a few failed decodes.
            let need = Need { count: need.count.min(k.saturating_add(16)), ..need };
            let added = self.repairs.on_need(need, list.seq, self.cfg.repair_margin);
            if added == 0 {
                self.stats.needs_ignored += 1;
            }
            if self.repairs.is_collecting() && !self.timers.is_set(Timer::Holdoff) {
                self.timers.set(Timer::Holdoff, holdoff_end);
            }
            charged = charged.saturating_add(added);
        }
        let object_symbols = self.layout().symbol_count();
        if self.group.charge(node, charged, object_symbols, &self.cfg.straggler) {
            let m = self.group.get(node).cloned().unwrap_or_default();
            tracing::warn!(
                node,
                loss_ppm = m.loss_ppm.unwrap_or(0),
                charged = m.charged,
                "dropping a straggler: it lost far more than the group and used up its repair budget"
            );
            self.squelch_nodes.insert(node);
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
    pub(super) fn on_echo(&mut self, now: Instant, node: u32, e: &Echo) {
        self.stats.echoes_received += 1;
        let sent = Instant::from_micros(e.probe_time_us);
        self.grtt.on_echo(now, sent, Duration::from_micros(u64::from(e.delay_us)));
        self.group.report_loss(node, e.loss_ppm);
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
        self.acks.insert(node);
        if let std::collections::btree_map::Entry::Vacant(e) = self.receivers.entry(node) {
            let info = ReceiverInfo { node, addr: from, report, at: now };
            e.insert(info.clone());
            self.events.push_back(Event::ReceiverReport(info));
        }
        self.check_finished(now);
    }
}
