//! The sender's timers and control datagrams. Every deadline lives in one [`TimerTable`] of
//! [`Timer`]s; [`Sender::handle_timeout`] fires the due ones, and those that send something
//! (announce, probe, flush) only mark it [`Due`]. [`Sender::poll_transmit`] then sends due
//! control datagrams ahead of any data, in a fixed order: report acknowledgements, Hello
//! welcomes, squelches, announcements (signed: each followed by its signature), probes, repair
//! advertisements, flushes. What becomes due as the result of an
//! action rather than of time passing (the announcements and probe at start-up, the flush and
//! announcement at the end of a pass) is marked due at once and its timer armed for the next
//! one. A control datagram's contents (GRTT, probe time) are taken when it is sent.

use super::*;
use crate::proto::timer::TimerKind;

/// Announcements sent back to back at start-up, so that a receiver that loses one still locks
/// on before the manifest's first symbols.
const STARTUP_ANNOUNCEMENTS: u8 = 4;
/// Announcements sent back to back once the hash list is known.
const HASHES_ANNOUNCEMENTS: u8 = 3;
/// Flushes after the hash list is known that carry an announcement along.
pub(super) const FLUSH_ANNOUNCEMENTS: u8 = 3;
/// Abort datagrams [`Sender::abort`] sends (a receiver that loses them all waits for its
/// session timeout).
pub const ABORT_REPEATS: u8 = 3;
/// Time between two of them, so that one burst of loss does not take them all.
pub const ABORT_SPACING: Duration = Duration::from_millis(5);

/// The sender's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The NAK aggregation window closes: queue the repairs heard.
    Holdoff,
    /// The next periodic announcement.
    Announce,
    /// The next GRTT probe.
    Probe,
    /// The next flush (after the first pass is over).
    Flush,
    /// Without `expected_receivers`: the sender has been quiet for `linger` since the last NAK.
    Linger,
    /// The next Abort of a stopping sender.
    Abort,
    /// The reports and joins heard since the last acknowledgement have waited [`ack_delay`]
    /// long enough: acknowledge them (report acknowledgements and welcomes, each datagram
    /// listing up to [`MAX_ACK_NODES`] nodes).
    Ack,
}

impl TimerKind for Timer {
    const ALL: &'static [Self] = &[
        Timer::Holdoff,
        Timer::Announce,
        Timer::Probe,
        Timer::Flush,
        Timer::Linger,
        Timer::Abort,
        Timer::Ack,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

/// A stopping sender's Abort: sent [`ABORT_REPEATS`] times, [`ABORT_SPACING`] apart.
#[derive(Debug)]
pub(super) struct Aborting {
    abort: Abort,
    left: u8,
    due: bool,
}

/// Control datagrams whose time has come, waiting for [`Sender::poll_transmit`].
#[derive(Debug, Default)]
pub(super) struct Due {
    announces: u8,
    probe: bool,
    flush: bool,
    /// The acknowledgements waiting have waited long enough.
    acks: bool,
}

/// Longest a report or a join waits for its acknowledgement (a [`ReportAck`], a welcome):
/// half a GRTT, within 1–5 ms (a receiver repeats its report after four GRTTs and at least
/// 20 ms, its join after at least 50 ms, so it never repeats one for want of an answer that
/// was only held back). Reports or joins that arrive together (a whole group locking on, or
/// completing, within a few milliseconds) are answered together, up to [`MAX_ACK_NODES`] per
/// datagram, instead of one datagram each: at 10,000 receivers about 40 welcomes and 40
/// acknowledgements instead of 10,000 of each, every one multicast to every receiver and
/// charged to the pacer ahead of data and repairs (in the simulator, whose data symbols are
/// 16 bytes, 10,000 one-node welcomes alone delayed the pass by 60 ms, 11 %).
pub fn ack_delay(grtt: Duration) -> Duration {
    (grtt / 2).clamp(Duration::from_millis(1), Duration::from_millis(5))
}

impl Sender {
    /// Stop the session at `now`: nothing more is sent but an [`Abort`] for `reason` with
    /// `text` (cut to [`MAX_ABORT_TEXT`] bytes), [`ABORT_REPEATS`] times [`ABORT_SPACING`]
    /// apart, so that receivers give up at once instead of waiting for their session timeout;
    /// feedback is ignored meanwhile. After the last one [`Event::Finished`] is issued (unless
    /// it was already) and [`Sender::leave_at`] is now. A second call changes nothing.
    pub fn abort(&mut self, now: Instant, reason: AbortReason, text: &str) {
        self.last_now = self.last_now.max(now);
        if self.aborting.is_some() {
            return;
        }
        self.timers = TimerTable::new();
        self.due = Due::default();
        self.cursor = None;
        self.aborting =
            Some(Aborting { abort: Abort::new(reason, text), left: ABORT_REPEATS, due: true });
    }

    /// Whether [`Sender::abort`] was called.
    pub fn is_aborting(&self) -> bool {
        self.aborting.is_some()
    }

    /// The next Abort, if one is due; the last one finishes the sender.
    fn next_abort(&mut self, now: Instant) -> Option<Packet<'static>> {
        let a = self.aborting.as_mut()?;
        if !a.due || a.left == 0 {
            return None;
        }
        a.due = false;
        a.left -= 1;
        let packet = Packet::Abort(a.abort.clone());
        if a.left > 0 {
            self.timers.set(Timer::Abort, now + ABORT_SPACING);
        } else {
            if !self.finished {
                self.events.push_back(Event::Finished);
            }
            self.finished = true;
            self.finished_at = now;
        }
        Some(packet)
    }

    /// Mark the start-up announcements and the first probe due, and arm their timers.
    pub(super) fn start_control(&mut self, now: Instant) {
        self.due.announces = STARTUP_ANNOUNCEMENTS;
        self.timers.set(Timer::Announce, now + self.cfg.announce_interval);
        self.queue_probe(now);
    }

    /// The hash list is known: announce it with a burst (a receiver that loses every one waits
    /// for the next periodic announcement to verify its blocks).
    pub(super) fn queue_hashes_announce(&mut self, now: Instant) {
        self.due.announces = self.due.announces.max(HASHES_ANNOUNCEMENTS);
        self.timers.set(Timer::Announce, now + self.cfg.announce_interval);
    }

    /// Mark an announcement due and arm the next one.
    pub(super) fn queue_announce(&mut self, now: Instant) {
        self.due.announces = self.due.announces.saturating_add(1);
        self.timers.set(Timer::Announce, now + self.cfg.announce_interval);
    }

    fn queue_probe(&mut self, now: Instant) {
        self.due.probe = true;
        self.timers.set(Timer::Probe, now + self.probe_interval());
    }

    /// Mark a flush due (the first [`FLUSH_ANNOUNCEMENTS`] after the hash list is known with an
    /// announcement) and arm the next one, two GRTTs later.
    pub(super) fn queue_flush(&mut self, now: Instant) {
        self.due.flush = true;
        // A receiver that lost every announcement of the hash list (a burst of loss) cannot
        // finish without one: the next few flushes, spread over GRTTs, bring one along.
        if self.hash_list_root.is_some() && self.flush_announces > 0 {
            self.flush_announces -= 1;
            self.due.announces = self.due.announces.max(1);
        }
        let interval =
            (self.grtt.get() * 2).clamp(Duration::from_millis(5), Duration::from_millis(500));
        self.timers.set(Timer::Flush, now + interval);
    }

    /// No NAK since `now`: restart the linger while it runs.
    pub(super) fn touch_quiet(&mut self, now: Instant) {
        self.quiet_since = now;
        if self.flushing && self.cfg.expected_receivers.is_none() && !self.finished {
            self.timers.set(Timer::Linger, now + self.cfg.linger);
        }
    }

    /// Fire every timer due at `now`, in [`Timer::ALL`]'s order.
    pub(super) fn fire_timers(&mut self, now: Instant) {
        for &timer in Timer::ALL {
            if !self.timers.take_expired(timer, now) {
                continue;
            }
            match timer {
                Timer::Holdoff => self.repairs.close_window(),
                Timer::Announce => self.queue_announce(now),
                Timer::Probe => self.queue_probe(now),
                Timer::Flush => self.queue_flush(now),
                // Only a wake-up: `check_finished` (on every timeout) decides.
                Timer::Linger => {}
                Timer::Abort => {
                    if let Some(a) = self.aborting.as_mut() {
                        a.due = true;
                    }
                }
                Timer::Ack => self.due.acks = true,
            }
        }
    }

    /// Whether a control datagram is waiting to be sent.
    pub(super) fn control_due(&self) -> bool {
        if let Some(a) = &self.aborting {
            return a.due && a.left > 0;
        }
        self.acks_due()
            || self.welcomes_due()
            || self.squelch_due()
            || self.due.announces > 0
            || self.signature_due()
            || self.due.probe
            || self.due.flush
            || self.repairs.has_adverts()
            || self.rate_tick_due
    }

    /// A report was accepted from `node` at `now`: acknowledge it within [`ack_delay`].
    pub(super) fn queue_ack(&mut self, now: Instant, node: u32) {
        self.arm_ack_timer(now);
        self.acks.insert(node);
    }

    /// A report or join is waiting to be answered from `now`: answer within [`ack_delay`].
    pub(super) fn arm_ack_timer(&mut self, now: Instant) {
        if !self.timers.is_set(Timer::Ack) && !self.due.acks {
            self.timers.set(Timer::Ack, now + ack_delay(self.grtt.get()));
        }
    }

    /// Whether an acknowledgement goes out now: a full datagram's worth is waiting, the oldest
    /// has waited [`ack_delay`], or the sender has finished (nothing else is held up).
    fn acks_due(&self) -> bool {
        !self.acks.is_empty()
            && (self.due.acks || self.finished || self.acks.len() >= MAX_ACK_NODES)
    }

    /// Whether a welcome goes out now, on the same terms as [`Sender::acks_due`].
    fn welcomes_due(&self) -> bool {
        let waiting = self.roster.welcomes_waiting();
        waiting > 0 && (self.due.acks || self.finished || waiting >= MAX_ACK_NODES)
    }

    /// Acknowledgements or welcomes went out: once none waits, the next starts a new wait.
    fn answered(&mut self) {
        if self.acks.is_empty() && self.roster.welcomes_waiting() == 0 {
            self.due.acks = false;
            self.timers.stop(Timer::Ack);
        }
    }

    fn squelch_due(&self) -> bool {
        !self.squelch_nodes.is_empty() || self.unavailable.values().any(|due| *due)
    }

    /// Probes go out every two GRTTs, within the configured bounds; four times as often while
    /// no receiver has reported a loss rate yet, so that auto parity starts from measurements
    /// rather than the configured guess.
    fn probe_interval(&self) -> Duration {
        let interval =
            (self.grtt.get() * 2).clamp(self.cfg.probe_interval_min, self.cfg.probe_interval);
        if self.cfg.auto_parity && self.group.loss_sample().is_empty() {
            interval / 4
        } else {
            interval
        }
    }

    fn grtt_us(&self) -> u32 {
        self.grtt.get().as_micros().min(u128::from(u32::MAX)) as u32
    }

    /// The most urgent control datagram due, if any.
    pub(super) fn next_control(&mut self, now: Instant) -> Option<Packet<'static>> {
        if self.aborting.is_some() {
            return self.next_abort(now);
        }
        // Welcomes before acknowledgements: a receiver whose join and completion report wait
        // together (a push shorter than the ack delay) hears it was welcomed before the ack
        // that lets it exit.
        if self.welcomes_due() {
            if let Some(welcome) = self.roster.take_welcome() {
                self.answered();
                return Some(welcome);
            }
        }
        if self.acks_due() {
            let n = self.acks.len().min(MAX_ACK_NODES);
            let nodes: Vec<u32> = self.acks.iter().copied().take(n).collect();
            for node in &nodes {
                self.acks.remove(node);
            }
            self.answered();
            return Some(Packet::ReportAck(ReportAck { nodes }));
        }
        if !self.squelch_nodes.is_empty() {
            let n = self.squelch_nodes.len().min(MAX_ACK_NODES);
            let nodes: Vec<u32> = self.squelch_nodes.iter().copied().take(n).collect();
            for node in &nodes {
                self.squelch_nodes.remove(node);
            }
            self.stats.squelches_sent += 1;
            return Some(Packet::Squelch(Squelch {
                reason: SquelchReason::Straggler,
                object: ObjectId::Payload,
                block: 0,
                nodes,
            }));
        }
        if let Some((&block, due)) = self.unavailable.iter_mut().find(|(_, due)| **due) {
            *due = false;
            self.stats.squelches_sent += 1;
            return Some(Packet::Squelch(Squelch {
                reason: SquelchReason::Unavailable,
                object: ObjectId::Payload,
                block,
                nodes: Vec::new(),
            }));
        }
        if let Some(signature) = self.next_signature() {
            return Some(signature); // right after its announcement
        }
        if self.due.announces > 0 {
            self.due.announces -= 1;
            self.announce_sent();
            return Some(Packet::Announce(Announce { grtt_us: self.grtt_us(), ..self.announce }));
        }
        if self.rate_tick_due {
            self.rate_tick_due = false;
            return Some(Packet::Rate(RatePacket::Tick(self.rate_ctl.tick(now))));
        }
        if self.due.probe {
            self.due.probe = false;
            self.grtt.on_probe(now);
            // The end game: the receivers that reported are done, so the backoff and the echo
            // share scale with those still to finish, not with the whole group.
            let done = u32::try_from(self.receivers.len()).unwrap_or(u32::MAX);
            let group_size = self.group.size().saturating_sub(done).max(1);
            let share = f64::from(self.cfg.echoes_per_probe) / f64::from(group_size);
            let echo_share = (share.clamp(0.0, 1.0) * f64::from(u16::MAX)).round() as u16;
            return Some(Packet::Probe(Probe {
                send_time_us: now.as_micros(),
                grtt_us: self.grtt_us(),
                group_size,
                echo_share,
            }));
        }
        let adverts = self.repairs.take_adverts(MAX_NEEDS);
        if !adverts.is_empty() {
            let list = NeedList { seq: self.seq, loss_ppm: 0, needs: adverts };
            return Some(Packet::RepairAdvert(list));
        }
        if self.due.flush {
            self.due.flush = false;
            return Some(Packet::Flush(Flush { seq: self.seq }));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::manifest_for;

    fn kind(datagram: &[u8]) -> &'static str {
        match wire::parse(datagram).expect("the sender emits valid datagrams").1 {
            Packet::Announce(_) => "announce",
            Packet::Probe(_) => "probe",
            Packet::Flush(_) => "flush",
            Packet::Data(_) => "data",
            _ => "other",
        }
    }

    /// Everything the sender sends at `now`, serving the blocks it asks for; its events.
    fn drain(s: &mut Sender, obj: &[u8], now: Instant) -> (Vec<&'static str>, Vec<Event>) {
        let (mut sent, mut events, mut buf) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            while let Some(ev) = s.poll_event() {
                if let Event::NeedBlock(req) = &ev {
                    let data = obj[req.offset as usize..][..req.len].to_vec();
                    s.handle_block(req.block, req.prepare(data).unwrap()).unwrap();
                }
                events.push(ev);
            }
            if s.poll_transmit(now, &mut buf).is_none() {
                return (sent, events);
            }
            sent.push(kind(&buf));
        }
    }

    #[test]
    fn control_datagrams_go_out_when_their_timers_fire() {
        let obj: Vec<u8> = (0..1000u32).map(|i| i as u8).collect(); // one block of 10 symbols
        let cfg = SenderConfig::default();
        let (interval, linger) = (cfg.announce_interval, cfg.linger);
        let t0 = Instant::ZERO;
        let mut s = Sender::new(cfg, &manifest_for(&obj, 100, 10), t0).unwrap();
        let (sent, _) = drain(&mut s, &obj, t0);
        // Start-up announcements and probe first, then the manifest and the payload; at the end
        // of the payload the hash list is known: a burst of announcements, then its symbols.
        assert_eq!(sent[..5], ["announce", "announce", "announce", "announce", "probe"]);
        let burst = 5 + sent[5..].iter().position(|k| *k == "announce").unwrap();
        assert_eq!(sent[burst..burst + 3], ["announce"; 3], "{sent:?}");
        assert!(sent[5..burst].iter().all(|k| *k == "data"), "{sent:?}");
        // Finding the end of the pass (the list's last symbol) made the flush due at once, with
        // an announcement.
        assert_eq!(sent[sent.len() - 2..], ["announce", "flush"], "{sent:?}");
        let list = &sent[burst + 3..sent.len() - 2];
        assert!(!list.is_empty() && list.iter().all(|k| *k == "data"), "{sent:?}");
        assert!(s.object_hash().is_some());

        let mut now = t0;
        let mut announced = Vec::new();
        let mut finished = None;
        while finished.is_none() && now < t0 + linger * 2 {
            let next = s.poll_timeout().expect("timers stay armed");
            assert!(next > now, "nothing due before its deadline");
            now = next;
            let mut buf = Vec::new();
            assert!(s.poll_transmit(now, &mut buf).is_none(), "control waits for its timer");
            s.handle_timeout(now);
            let (sent, events) = drain(&mut s, &obj, now);
            assert!(!sent.contains(&"data"));
            if sent.contains(&"announce") {
                announced.push((now, sent.contains(&"flush")));
            }
            if events.contains(&Event::Finished) {
                finished = Some(now);
            }
        }
        // The next flushes carry the hash list's announcement along (the first one did, above),
        // then the periodic announcements follow their timer.
        let extra = usize::from(FLUSH_ANNOUNCEMENTS - 1);
        assert!(announced[..extra].iter().all(|(at, flush)| *flush && *at < t0 + interval));
        let periodic: Vec<_> = announced[extra..].iter().map(|(at, _)| *at).take(3).collect();
        assert_eq!(periodic, [t0 + interval, t0 + interval * 2, t0 + interval * 3]);
        assert_eq!(finished, Some(t0 + linger), "quiet for `linger` after the pass");
    }

    #[test]
    fn a_new_rate_is_announced_at_once() {
        let obj = vec![7u8; 1000];
        let mut s =
            Sender::new(SenderConfig::default(), &manifest_for(&obj, 100, 10), Instant::ZERO)
                .unwrap();
        drain(&mut s, &obj, Instant::ZERO);
        let now = Instant::from_micros(1234);
        s.set_rate(now, 5_000_000);
        assert_eq!((s.rate(), s.poll_timeout()), (5_000_000, Some(now)));
        let mut buf = Vec::new();
        s.poll_transmit(now, &mut buf).unwrap();
        match wire::parse(&buf).unwrap().1 {
            Packet::Announce(a) => assert_eq!(a.rate_bps, 5_000_000),
            p => panic!("expected an announcement, got {p:?}"),
        }
    }

    #[test]
    fn the_linger_ends_when_the_last_repair_has_gone_out() {
        // 80 kbit/s: each 100-byte symbol takes about 13 ms, so the 11 repairs answering the
        // NAK below take far longer than the 20 ms linger.
        let obj = vec![3u8; 1000];
        let linger = Duration::from_millis(20);
        let cfg = SenderConfig {
            rate_bps: 80_000,
            burst_bytes: 200,
            linger,
            auto_parity: false,
            fec_overhead: 0.0,
            ..SenderConfig::default()
        };
        let mut s = Sender::new(cfg, &manifest_for(&obj, 100, 10), Instant::ZERO).unwrap();
        let needs = vec![Need { object: ObjectId::Payload, block: 0, count: 10 }];
        let mut nak = Vec::new();
        let nak_header = Header { flags: 0, session: 1, node: 9 };
        wire::emit(&nak_header, &Packet::Nak(NeedList { seq: 0, loss_ppm: 0, needs }), &mut nak);
        let (mut now, mut nak_at, mut last_data, mut finished) = (Instant::ZERO, None, None, None);
        for _ in 0..10_000 {
            s.handle_timeout(now);
            let (sent, events) = drain(&mut s, &obj, now);
            if sent.contains(&"data") {
                last_data = Some(now);
            }
            if events.contains(&Event::Finished) {
                finished = Some(now);
                break;
            }
            if sent.contains(&"flush") && nak_at.is_none() {
                nak_at = Some(now);
                s.handle_datagram(now, SocketAddr::from(([198, 18, 0, 2], 7001)), &nak);
            }
            now = s.poll_timeout().unwrap().max(now + Duration::from_micros(1));
        }
        let (nak_at, finished) = (nak_at.expect("the pass ended"), finished.expect("finished"));
        assert!(finished - nak_at > linger * 5, "the repairs outlasted the linger");
        assert_eq!(Some(finished), last_data, "finished with the last repair, not a timer later");
        assert_eq!(s.stats().repair_packets, 11);
    }
}
