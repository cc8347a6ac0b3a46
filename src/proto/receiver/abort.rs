//! How a receive ends without its sender finishing it: the sender says it stopped (an
//! [`Abort`] from the locked sender's address, session and node), nobody announced a session
//! within the idle timeout ([`ReceiverConfig::idle_timeout`]), the locked sender went silent
//! for the session timeout ([`ReceiverConfig::session_timeout`]), or the driver's storage
//! failed ([`Receiver::handle_storage_error`]). The first three end without a report (nobody
//! would acknowledge it); a storage error is reported to the sender, which is still there. An
//! Abort is believed only when the sender then stays silent for [`ABORT_CONFIRM`]: anyone can
//! forge one from the sender's address, but not the silence of a push that goes on.
//!
//! [`Watch`] holds the state: when waiting began, where the locked sender's announcement came
//! from, when it was last heard, and the outcome of an idle receiver (which has no session to
//! queue it in).

use super::session::{Phase, Session};
use super::*;
use crate::proto::timer::TimerKind;

/// The receiver's watch over its sender (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// When the receiver started waiting (its first entry point call).
    waiting_since: Option<Instant>,
    /// The address of the announcement the session was locked onto.
    sender_addr: Option<SocketAddr>,
    /// When the locked sender was last heard.
    last_heard: Instant,
    /// The idle timeout's outcome, for [`Receiver::poll_event`].
    event: Option<Event>,
    /// Gave up waiting for a session: nothing more happens.
    ended: bool,
    /// An Abort from the locked sender, not yet believed: when it came and why. It ends the
    /// receive [`ABORT_CONFIRM`] later unless the sender is heard again meanwhile (a real
    /// sender that aborted is silent; a forged Abort is refuted by the push going on).
    abort: Option<(Instant, String)>,
}

/// How long after an Abort the locked sender must stay silent for the Abort to be believed:
/// three of the sender's announce and probe intervals (100 ms), so that a forged Abort sent
/// while a real sender is quiet (everything sent, waiting for reports) is refuted by its
/// next announcement even when that one comes late.
pub const ABORT_CONFIRM: Duration = Duration::from_millis(300);

impl Watch {
    /// Whether an event is waiting for [`Watch::take_event`].
    pub(super) fn has_event(&self) -> bool {
        self.event.is_some()
    }

    /// The event of a receiver that gave up without a session, once.
    pub(super) fn take_event(&mut self) -> Option<Event> {
        // Looked at first: `take` would move the whole (large) slot on every poll, and a
        // driver polls after every datagram.
        self.event.as_ref()?;
        self.event.take()
    }

    /// Whether the receiver gave up waiting for a session.
    pub(super) fn ended(&self) -> bool {
        self.ended
    }
}

impl Receiver {
    /// Start the idle clock on the first entry point call.
    pub(super) fn start_watch(&mut self, now: Instant) {
        self.watch.waiting_since.get_or_insert(now);
    }

    /// The session was just locked onto, from an announcement sent from `from`.
    pub(super) fn watch_locked(&mut self, now: Instant, from: SocketAddr) {
        self.watch.sender_addr = Some(from);
        self.watch.last_heard = now;
    }

    /// Whether `header` (from `from`) is the locked sender of the session.
    fn is_locked_sender(&self, from: SocketAddr, header: &Header) -> bool {
        self.session.as_ref().is_some_and(|s| {
            header.session == s.id()
                && header.node == s.identity.sender_node
                && self.watch.sender_addr == Some(from)
        })
    }

    /// A datagram arrived: the locked sender is alive if it is from it.
    pub(super) fn watch_heard(&mut self, now: Instant, from: SocketAddr, header: &Header) {
        if self.is_locked_sender(from, header) {
            self.watch.last_heard = self.watch.last_heard.max(now);
            if self.watch.abort.take().is_some() {
                tracing::warn!("ignoring an Abort: the sender is still sending (forged?)");
                self.stats.aborts_refuted += 1;
            }
        }
    }

    /// When the idle or the session timeout next falls due, if one is set.
    pub(super) fn watch_deadline(&self) -> Option<Instant> {
        if self.watch.ended {
            return None;
        }
        match &self.session {
            None => {
                let idle = self.cfg.idle_timeout?;
                // Not entered yet: due at once, which starts the clock.
                Some(self.watch.waiting_since.map_or(self.last_now, |t| t + idle))
            }
            Some(_) if self.watch.abort.is_some() => {
                self.watch.abort.as_ref().map(|(at, _)| *at + ABORT_CONFIRM)
            }
            Some(s) if matches!(s.phase, Phase::Receiving) => {
                Some(self.watch.last_heard + self.cfg.session_timeout?)
            }
            Some(_) => None,
        }
    }

    /// Give up if the idle or the session timeout passed at `now`.
    pub(super) fn check_watch(&mut self, now: Instant) {
        self.start_watch(now);
        if self.watch_deadline().is_none_or(|t| now < t) {
            return;
        }
        match self.session.as_mut() {
            None => {
                let waited = now.saturating_duration_since(self.watch.waiting_since.unwrap_or(now));
                let why = format!("no sender announced a session in {}", fmt_secs(waited));
                tracing::error!("{why}");
                self.watch.ended = true;
                self.watch.event = Some(Event::Finished(Outcome::TimedOut(why)));
            }
            Some(_) if self.watch.abort.is_some() => {
                let (_, why) = self.watch.abort.take().expect("checked");
                self.believe_abort(why);
            }
            Some(s) => {
                let silent = now.saturating_duration_since(self.watch.last_heard);
                let why = format!(
                    "the sender went silent: nothing heard from it for {}",
                    fmt_secs(silent)
                );
                s.end_now(Outcome::TimedOut(why));
            }
        }
    }

    /// An [`Abort`] sent with `header` from `from`: only the locked sender's counts, and only
    /// once the sender stayed silent for [`ABORT_CONFIRM`] after it (see [`Watch`]).
    pub(super) fn on_abort(&mut self, now: Instant, from: SocketAddr, header: &Header, a: &Abort) {
        if !self.is_locked_sender(from, header) {
            self.stats.dropped_foreign += 1;
            return;
        }
        if self.session.is_none() || self.watch.abort.is_some() {
            return; // the first one's confirmation is running
        }
        let why = format!("the sender stopped: {}", abort_text(a));
        self.watch.abort = Some((now, why));
    }

    /// An Abort the sender's silence confirmed: end the session.
    fn believe_abort(&mut self, why: String) {
        let Some(s) = self.session.as_mut() else { return };
        match &s.phase {
            Phase::Receiving => s.end_now(Outcome::Failed(why)),
            // Everything is in and being placed: the placing goes on, and its report will go
            // unacknowledged.
            Phase::Storing | Phase::Done => {}
            // Nobody will acknowledge the report.
            Phase::Reporting { report, .. } => {
                let outcome = match report.status {
                    ReportStatus::Complete => Outcome::Unacknowledged,
                    ReportStatus::Failed => {
                        Outcome::Failed(s.failure.clone().unwrap_or_else(|| why.clone()))
                    }
                };
                tracing::warn!("{why}");
                s.end_now(outcome);
            }
        }
    }

    /// The driver could not store what it was given (a write, fsync or rename failed, or the
    /// destination cannot hold the object): give up at once and report the failure, with
    /// `reason` (short: it goes into the report), to the sender. Does nothing unless a session
    /// is receiving (a failure while placing is [`Receiver::handle_stored`]'s).
    pub fn handle_storage_error(&mut self, now: Instant, reason: String) {
        if let Some((s, mut cx)) = self.enter(now) {
            if matches!(s.phase, Phase::Receiving) {
                s.fail(&mut cx, now, reason);
            }
        }
    }
}

impl Session {
    /// End the session at once with `outcome` (no report: nobody would acknowledge it).
    fn end_now(&mut self, outcome: Outcome) {
        if let Outcome::Failed(why) | Outcome::TimedOut(why) = &outcome {
            tracing::error!("{why}");
            self.failure = Some(why.clone());
        }
        self.phase = Phase::Done;
        for &t in Timer::ALL {
            self.timers.stop(t);
        }
        // Nothing more goes out (a Hello or NAK still queued included).
        self.outbox.clear();
        self.echo = None;
        self.events.push_back(Event::Finished(outcome));
    }
}

/// What an Abort says, for messages: its reason, and its text when that adds something; control
/// characters from the network are replaced, so they never reach a terminal.
fn abort_text(a: &Abort) -> String {
    let reason = a.reason.describe();
    let text: String =
        a.text.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if text.is_empty() || text == reason {
        reason.to_string()
    } else {
        format!("{reason}: {text}")
    }
}

/// `12 s`, or `1.5 s` below ten seconds.
fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENDER: u32 = 1;
    const SESSION: u32 = 9;

    fn sender_addr() -> SocketAddr {
        SocketAddr::from(([198, 18, 0, 1], 7001))
    }

    fn at(secs: f64) -> Instant {
        Instant::from_micros((secs * 1e6) as u64)
    }

    fn datagram(session: u32, node: u32, packet: &Packet) -> Vec<u8> {
        let mut b = Vec::new();
        wire::emit(&Header { flags: 0, session, node }, packet, &mut b);
        b
    }

    fn announce() -> Packet<'static> {
        Packet::Announce(crate::proto::receiver::tests::announce(1_000_000))
    }

    fn interrupted() -> Packet<'static> {
        Packet::Abort(Abort::new(AbortReason::Interrupted, "interrupted"))
    }

    /// A receiver locked at `t` onto SESSION from SENDER at [`sender_addr`]: announced, and
    /// its manifest delivered (a candidate is locked onto only then).
    fn locked(cfg: ReceiverConfig, t: Instant) -> Receiver {
        let mut r = Receiver::new(cfg);
        lock(&mut r, t);
        r
    }

    fn lock(r: &mut Receiver, t: Instant) {
        use crate::proto::receiver::tests::{feed_manifest, with_manifest};
        let Packet::Announce(a) = announce() else { unreachable!() };
        let (a, bytes) = with_manifest(a);
        r.handle_datagram(t, sender_addr(), &datagram(SESSION, SENDER, &Packet::Announce(a)));
        feed_manifest(r, t, sender_addr(), &a, &bytes);
        assert_eq!(r.session_id(), Some(SESSION));
    }

    fn finished(r: &mut Receiver) -> Option<Outcome> {
        std::iter::from_fn(|| r.poll_event()).find_map(|ev| match ev {
            Event::Finished(o) => Some(o),
            _ => None,
        })
    }

    #[test]
    fn an_abort_counts_only_from_the_locked_sender() {
        let mut r = locked(ReceiverConfig::default(), at(1.0));
        let other_addr = SocketAddr::from(([198, 18, 0, 66], 7001));
        let forged = [
            (other_addr, datagram(SESSION, SENDER, &interrupted())),
            (sender_addr(), datagram(SESSION, SENDER + 5, &interrupted())),
            (sender_addr(), datagram(SESSION + 1, SENDER, &interrupted())),
        ];
        for (from, d) in &forged {
            r.handle_datagram(at(2.0), *from, d);
        }
        assert_eq!(finished(&mut r), None, "only the locked sender can stop the session");
        assert_eq!(r.stats().dropped_foreign, 3);
        r.handle_datagram(at(2.0), sender_addr(), &datagram(SESSION, SENDER, &interrupted()));
        // Believed only once the sender stayed silent for ABORT_CONFIRM: just before, not yet.
        assert!(r.poll_timeout().is_some_and(|t| t <= at(2.0) + ABORT_CONFIRM));
        r.handle_timeout(at(2.0) + (ABORT_CONFIRM - Duration::from_micros(1)));
        assert_eq!(finished(&mut r), None);
        r.handle_timeout(at(2.0) + ABORT_CONFIRM);
        assert_eq!(
            finished(&mut r),
            Some(Outcome::Failed("the sender stopped: interrupted".into()))
        );
        assert_eq!(r.poll_timeout(), None, "nothing more to do: no report to repeat");
        let mut buf = Vec::new();
        assert!(r.poll_transmit(at(2.0), &mut buf).is_none());
    }

    #[test]
    fn an_abort_forged_from_the_senders_address_is_refuted_by_the_push_going_on() {
        let mut r = locked(ReceiverConfig::default(), at(1.0));
        r.handle_datagram(at(2.0), sender_addr(), &datagram(SESSION, SENDER, &interrupted()));
        // The real sender goes on within the confirmation time: the Abort was not its own.
        let flush = Packet::Flush(Flush { seq: 1 });
        let during = at(2.0) + (ABORT_CONFIRM - Duration::from_micros(1));
        r.handle_datagram(during, sender_addr(), &datagram(SESSION, SENDER, &flush));
        r.handle_timeout(at(3.0));
        assert_eq!(finished(&mut r), None);
        assert_eq!(r.stats().aborts_refuted, 1);
    }

    #[test]
    fn an_abort_before_any_session_is_foreign_and_its_text_is_made_safe() {
        let mut r = Receiver::new(ReceiverConfig::default());
        r.handle_datagram(at(0.0), sender_addr(), &datagram(SESSION, SENDER, &interrupted()));
        assert_eq!((r.session_id(), r.stats().dropped_foreign), (None, 1));
        let mut r = locked(ReceiverConfig::default(), at(0.0));
        let a = Abort::new(AbortReason::SourceError, "read f.bin:\x1b[2J gone");
        r.handle_datagram(at(0.1), sender_addr(), &datagram(SESSION, SENDER, &Packet::Abort(a)));
        r.handle_timeout(at(0.1) + ABORT_CONFIRM);
        let why = "the sender stopped: source error: read f.bin:\u{fffd}[2J gone";
        assert_eq!(finished(&mut r), Some(Outcome::Failed(why.into())));
    }

    #[test]
    fn the_idle_timeout_runs_from_the_first_call_until_a_session_is_announced() {
        let cfg =
            ReceiverConfig { idle_timeout: Some(Duration::from_secs(1)), ..Default::default() };
        let mut r = Receiver::new(cfg.clone());
        // Not entered yet: due at once, which starts the clock.
        assert_eq!(r.poll_timeout(), Some(Instant::ZERO));
        r.handle_timeout(at(5.0));
        assert_eq!(r.poll_timeout(), Some(at(6.0)));
        r.handle_timeout(Instant::from_micros(5_999_999));
        assert_eq!(finished(&mut r), None, "just before the limit: still waiting");
        r.handle_timeout(at(6.0));
        match finished(&mut r) {
            Some(Outcome::TimedOut(why)) => {
                assert_eq!(why, "no sender announced a session in 1.0 s")
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(r.poll_timeout(), None);
        // Given up: a late announcement locks nothing.
        r.handle_datagram(at(6.5), sender_addr(), &datagram(SESSION, SENDER, &announce()));
        assert_eq!(r.session_id(), None);
        // Locked in time (announced and its manifest verified): the idle timeout no longer
        // applies. An announcement alone (a candidate) does not stop it.
        let mut r = Receiver::new(cfg.clone());
        r.handle_timeout(at(5.0));
        lock(&mut r, at(5.9));
        r.handle_timeout(at(60.0));
        assert_eq!(finished(&mut r), None);
        let mut r = Receiver::new(cfg);
        r.handle_timeout(at(5.0));
        r.handle_datagram(at(5.9), sender_addr(), &datagram(SESSION, SENDER, &announce()));
        r.handle_timeout(at(6.0));
        assert!(matches!(finished(&mut r), Some(Outcome::TimedOut(_))), "a candidate only");
        r.handle_timeout(at(60.0));
        assert_eq!(finished(&mut r), None);
    }

    #[test]
    fn a_sender_silent_for_the_session_timeout_ends_the_receive() {
        let cfg =
            ReceiverConfig { session_timeout: Some(Duration::from_secs(30)), ..Default::default() };
        let mut r = locked(cfg, at(10.0));
        assert!(r.poll_timeout().is_some_and(|t| t <= at(40.0)));
        // Heard at 20 s: the deadline moves to 50 s. A forged address does not keep it alive.
        r.handle_datagram(at(20.0), sender_addr(), &datagram(SESSION, SENDER, &announce()));
        let forged = SocketAddr::from(([198, 18, 0, 66], 7001));
        r.handle_datagram(at(45.0), forged, &datagram(SESSION, SENDER, &announce()));
        r.handle_timeout(Instant::from_micros(49_999_999));
        assert_eq!(finished(&mut r), None, "just before the limit: still receiving");
        assert_eq!(r.watch_deadline(), Some(at(50.0)));
        r.handle_timeout(at(50.0));
        match finished(&mut r) {
            Some(Outcome::TimedOut(why)) => {
                assert_eq!(why, "the sender went silent: nothing heard from it for 30 s")
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn a_storage_error_is_reported_to_the_sender_and_an_abort_then_ends_it() {
        let mut r = locked(ReceiverConfig::default(), at(0.0));
        let why = "no space left on device: write /x/.f.mcast-tmp-1: 3 MiB of 16 MiB written";
        r.handle_storage_error(at(1.0), why.to_string());
        r.handle_timeout(at(1.0));
        let mut buf = Vec::new();
        r.poll_transmit(at(1.0), &mut buf).expect("a report");
        match wire::parse(&buf).unwrap().1 {
            Packet::Report(rep) => assert_eq!(rep.status, ReportStatus::Failed),
            p => panic!("{p:?}"),
        }
        assert_eq!(finished(&mut r), None, "waits for the sender's acknowledgement");
        // A second error changes nothing; the sender stopping ends it with the first reason.
        r.handle_storage_error(at(1.1), "later".into());
        r.handle_datagram(at(1.2), sender_addr(), &datagram(SESSION, SENDER, &interrupted()));
        r.handle_timeout(at(1.2) + ABORT_CONFIRM);
        assert_eq!(finished(&mut r), Some(Outcome::Failed(why.into())));
        // Without a session there is nobody to tell.
        let mut idle = Receiver::new(ReceiverConfig::default());
        idle.handle_storage_error(at(0.0), why.into());
        assert!(idle.poll_event().is_none() && idle.poll_timeout().is_none());
    }
}
