//! How a session ends: storing the object, giving up when squelched, repeating the completion
//! report until the sender acknowledges it (or the tries run out), and the final outcome.

use super::session::{Ctx, Phase, Session, Timer};
use super::*;

impl Session {
    /// The driver verified and placed the object (`Ok` with its hash) or failed to.
    pub(super) fn on_stored(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        result: Result<[u8; 32], String>,
    ) {
        if !matches!(self.phase, Phase::Storing) {
            return;
        }
        let (status, object_hash) = match &result {
            Ok(h) => (ReportStatus::Complete, *h),
            Err(e) => {
                tracing::error!("storing failed: {e}");
                self.failure = Some(format!("storing failed: {e}"));
                (ReportStatus::Failed, [0; 32])
            }
        };
        self.start_reporting(cx, now, status, object_hash);
    }

    /// The sender declined to repair: give up if it concerns us. A straggler squelch only
    /// after this receiver NAKed in this session (else it cannot be one); an unavailable one
    /// only for a block the sender has passed and this receiver still lacks (a squelch naming
    /// a block past the end, or one not yet sent, says nothing about this push). The caller
    /// has checked that it came from the sender's address. Even then one squelch is not
    /// believed: the receiver goes on (its NAK timer still runs), and gives up only when the
    /// same squelch comes again after its next NAK, as the sender squelches every NAK it
    /// declines. A single datagram forged from the sender's address cannot end a receive.
    pub(super) fn on_squelch(&mut self, cx: &mut Ctx, now: Instant, q: &Squelch) {
        if !matches!(self.phase, Phase::Receiving) || !self.locked {
            cx.stats.squelches_ignored += 1;
            return;
        }
        let why = match q.reason {
            SquelchReason::Straggler
                if q.nodes.contains(&cx.cfg.node) && self.last_nak.is_some() =>
            {
                format!(
                    "the sender dropped this receiver as a straggler: it lost {:.1} % of the \
                     data, far more than the rest of the group, and used up its repair budget",
                    f64::from(cx.stats.loss_ppm()) / 1e4
                )
            }
            SquelchReason::Unavailable if self.objects[q.object].is_outstanding(q.block) => {
                format!("the sender no longer holds block {} that this receiver lacks", q.block)
            }
            _ => {
                cx.stats.squelches_ignored += 1;
                return;
            }
        };
        let key = (q.reason, q.block);
        let confirmed = self
            .squelch_seen
            .is_some_and(|(r, b, naks)| (r, b) == key && cx.stats.naks_sent > naks);
        if !confirmed {
            cx.stats.squelches_unconfirmed += 1;
            self.squelch_seen = Some((key.0, key.1, cx.stats.naks_sent));
            return;
        }
        cx.stats.squelched += 1;
        self.fail(cx, now, why);
    }

    /// Give up on this session for `why`: stop asking, and report the failure to the sender.
    pub(super) fn fail(&mut self, cx: &mut Ctx, now: Instant, why: String) {
        tracing::error!("{why}");
        self.failure = Some(why);
        self.timers.stop(Timer::Nak);
        self.start_reporting(cx, now, ReportStatus::Failed, [0; 32]);
    }

    /// Start repeating a report of `status` until the sender acknowledges it.
    fn start_reporting(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        status: ReportStatus,
        object_hash: [u8; 32],
    ) {
        let elapsed = now.saturating_duration_since(self.started).as_millis();
        let report = Report {
            status,
            bytes: self.identity.object_size,
            object_hash,
            naks_sent: cx.stats.naks_sent as u32,
            naks_suppressed: cx.stats.naks_suppressed as u32,
            elapsed_ms: elapsed.min(u128::from(u32::MAX)) as u32,
            reason: self.failure.as_deref().map(reason_text).unwrap_or_default(),
        };
        self.phase = Phase::Reporting { report, tries_left: cx.cfg.report_tries };
        self.timers.set(Timer::Report, now);
    }

    fn finish(&mut self, outcome: Outcome) {
        self.phase = Phase::Done;
        self.timers.stop(Timer::Report);
        self.timers.stop(Timer::Hello);
        self.events.push_back(Event::Finished(outcome));
    }

    /// The sender acknowledged reports: done, if ours is among them and this receiver has
    /// sent one (the caller has checked that it came from the sender's address).
    pub(super) fn on_report_ack(&mut self, cx: &mut Ctx, ack: &ReportAck) {
        if !ack.nodes.contains(&cx.cfg.node) {
            return;
        }
        if self.reports_sent == 0 {
            cx.stats.acks_ignored += 1;
            return;
        }
        if let Phase::Reporting { report, .. } = &self.phase {
            let outcome = match report.status {
                ReportStatus::Complete => Outcome::Complete,
                ReportStatus::Failed => Outcome::Failed(
                    self.failure.clone().unwrap_or_else(|| "reported failure".into()),
                ),
            };
            self.finish(outcome);
        }
    }

    pub(super) fn report_due(&mut self, now: Instant) {
        let Phase::Reporting { report, tries_left } = &mut self.phase else { return };
        if *tries_left == 0 {
            let outcome = match report.status {
                ReportStatus::Complete => Outcome::Unacknowledged,
                ReportStatus::Failed => Outcome::Failed(
                    self.failure.clone().unwrap_or_else(|| "report not acknowledged".into()),
                ),
            };
            self.finish(outcome);
        } else {
            *tries_left -= 1;
            self.reports_sent += 1;
            let packet = Packet::Report(report.clone());
            let interval = (self.grtt * 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
            self.timers.set(Timer::Report, now + interval);
            self.outbox.push_back(packet);
        }
    }
}
