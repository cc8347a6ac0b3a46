//! Receiver unit tests: what makes a session the same session (rate and GRTT are parameters a
//! receiver follows during a push; session id, sender, layout and manifest are its identity),
//! when a candidate is locked onto, and which squelches and acknowledgements count.

use super::*;
use crate::proto::sender::{self, Sender, SenderConfig};
use crate::sim::manifest_for;

pub(super) const SENDER: u32 = 1;
pub(super) const SESSION: u32 = 9;

pub(super) fn from() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 1], 7000))
}

pub(super) fn announce(rate_bps: u64) -> Announce {
    Announce {
        object_size: 10_000,
        symbol_size: 100,
        block_symbols: 10,
        manifest_len: 100,
        manifest_hash: [5; 32],
        hashes_len: 0,
        hashes_hash: [0; 32],
        rate_bps,
        grtt_us: 1000,
    }
}

pub(super) fn datagram(node: u32, packet: &Packet) -> Vec<u8> {
    let mut b = Vec::new();
    wire::emit(&Header { flags: 0, session: SESSION, node }, packet, &mut b);
    b
}

/// `a` with the manifest fields of a real single-file manifest of its payload, and that
/// manifest's bytes.
pub(super) fn with_manifest(a: Announce) -> (Announce, Vec<u8>) {
    let path = "f".parse().unwrap();
    let m = Manifest::single_file(path, a.object_size, a.symbol_size, a.block_symbols).unwrap();
    let bytes = m.encode();
    let a = Announce {
        manifest_len: bytes.len() as u32,
        manifest_hash: *blake3::hash(&bytes).as_bytes(),
        ..a
    };
    (a, bytes)
}

/// Every source symbol of manifest `bytes` (laid out as `a` says) from the sender at `at`.
pub(super) fn feed_manifest(
    r: &mut Receiver,
    t: Instant,
    at: SocketAddr,
    a: &Announce,
    bytes: &[u8],
) {
    let layout = a.manifest_layout();
    let ts = usize::from(a.symbol_size);
    let mut seq = 0;
    for b in 0..layout.block_count() {
        let off = layout.block_offset(b).unwrap() as usize;
        let mut block = bytes[off..off + layout.block_len(b).unwrap()].to_vec();
        block.resize(usize::from(layout.source_symbols(b).unwrap()) * ts, 0);
        for (esi, symbol) in block.chunks(ts).enumerate() {
            let d = Data { object: ObjectId::Manifest, block: b, esi: esi as u32, seq, symbol };
            seq += 1;
            r.handle_datagram(t, at, &datagram(SENDER, &Packet::Data(d)));
        }
    }
}

/// A receiver with `cfg` locked onto session [`SESSION`] of [`SENDER`] at [`from`]: `a` (with
/// a real manifest, see [`with_manifest`]) announced and its manifest delivered.
pub(super) fn locked(cfg: ReceiverConfig, a: Announce) -> (Receiver, Announce) {
    let (a, bytes) = with_manifest(a);
    let mut r = Receiver::new(cfg);
    let t = Instant::ZERO;
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(a)));
    assert_eq!(r.session_id(), None, "a candidate until its manifest verifies");
    feed_manifest(&mut r, t, from(), &a, &bytes);
    assert_eq!(r.session_id(), Some(SESSION));
    assert!(matches!(r.poll_event(), Some(Event::Manifest(_))));
    // Welcomed at once, so its Hello (sent at lock-on) neither waits nor repeats.
    let welcome = Packet::Hello(Hello::Welcome { nodes: vec![r.cfg.node] });
    r.handle_datagram(t, from(), &datagram(SENDER, &welcome));
    let mut buf = Vec::new();
    while r.poll_transmit(t, &mut buf).is_some() {}
    (r, a)
}

#[test]
fn rate_and_grtt_are_followed_identity_changes_are_refused() {
    let (mut r, base) = locked(ReceiverConfig::default(), announce(1_000_000));
    let announce = |rate_bps| Announce { rate_bps, ..base };
    let t = Instant::ZERO;
    assert_eq!((r.session_id(), r.announced_rate()), (Some(SESSION), Some(1_000_000)));
    // The same push at another rate and GRTT: followed.
    let faster = Announce { grtt_us: 5000, ..announce(4_000_000) };
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(faster)));
    assert_eq!(r.announced_rate(), Some(4_000_000));
    assert_eq!(r.session.as_ref().unwrap().grtt, Duration::from_micros(5000));
    assert_eq!(r.stats().dropped_invalid, 0);
    // Another manifest, or another object, under the same session id: refused and counted.
    let other_manifest = Announce { manifest_hash: [6; 32], ..announce(8_000_000) };
    let other_object = Announce { object_size: 20_000, ..announce(8_000_000) };
    for a in [other_manifest, other_object] {
        r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(a)));
    }
    assert_eq!(r.stats().dropped_invalid, 2);
    // Anyone else announcing under this session id is not the sender.
    r.handle_datagram(t, from(), &datagram(SENDER + 7, &Packet::Announce(announce(8_000_000))));
    assert_eq!(r.stats().dropped_foreign, 1);
    assert_eq!((r.session_id(), r.announced_rate()), (Some(SESSION), Some(4_000_000)));
    assert_eq!(r.session.as_ref().unwrap().grtt, Duration::from_micros(5000));
}

#[test]
fn the_hash_list_hash_is_learnt_once_and_never_changes() {
    let (mut r, unknown) = locked(ReceiverConfig::default(), announce(1_000_000));
    let announce = |rate_bps| Announce { rate_bps, ..unknown };
    let t = Instant::ZERO;
    // 10_000 bytes in blocks of 1000: 10 blocks, a list of 320 bytes.
    let known = Announce { hashes_len: 320, hashes_hash: [7; 32], ..announce(2_000_000) };
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(known)));
    assert_eq!(r.announced_rate(), Some(2_000_000), "unknown to known: followed");
    assert_eq!(r.stats().dropped_invalid, 0);
    // A new list hash, or the list withdrawn: a foreign announcement, refused and counted.
    let changed = Announce { hashes_hash: [8; 32], ..known };
    for a in [changed, unknown] {
        let a = Announce { rate_bps: 9_000_000, ..a };
        r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(a)));
    }
    assert_eq!(r.stats().dropped_invalid, 2);
    assert_eq!(r.announced_rate(), Some(2_000_000));
    assert_eq!(r.session.as_ref().unwrap().announce.hashes_hash(), Some([7; 32]));
    // The same list again: followed.
    let again = Announce { rate_bps: 3_000_000, ..known };
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(again)));
    assert_eq!(r.announced_rate(), Some(3_000_000));
}

/// What one run of [`push`] saw.
#[derive(Default)]
struct Push {
    outcome: Option<Outcome>,
    /// When the outcome came.
    finished_at: Option<Instant>,
    data: Vec<u8>,
    /// Every rate the receiver followed, in order.
    rates: Vec<u64>,
    /// The receiver's payload blocks done, and the block count, when the rate changed.
    progress_at_change: Option<(u32, u32)>,
    /// When the receiver sent a report.
    reports: Vec<Instant>,
}

/// A lossless push from `s` to `r` until `r` finishes (or 10 s of virtual time), with the
/// sender's rate changed to `rate.1` at `rate.0`. Without `feedback`, nothing the receiver
/// sends reaches the sender.
fn push(
    s: &mut Sender,
    r: &mut Receiver,
    obj: &[u8],
    mut rate: Option<(Instant, u64)>,
    feedback: bool,
) -> Push {
    let mut out = Push { data: vec![0; obj.len()], ..Push::default() };
    let mut now = Instant::ZERO;
    let mut buf = Vec::new();
    while now < Instant::ZERO + Duration::from_secs(10) {
        if let Some((at, bps)) = rate.filter(|(at, _)| *at <= now) {
            out.progress_at_change = r.progress();
            s.set_rate(at, bps);
            rate = None;
        }
        s.handle_timeout(now);
        r.handle_timeout(now);
        let mut progressed = true;
        while progressed {
            progressed = false;
            while let Some(ev) = s.poll_event() {
                if let sender::Event::NeedBlock(req) = ev {
                    let data = obj[req.offset as usize..][..req.len].to_vec();
                    s.handle_block(req.block, req.prepare(data).unwrap()).unwrap();
                }
            }
            while s.poll_transmit(now, &mut buf).is_some() {
                progressed = true;
                r.handle_datagram(now, from(), &buf);
                out.rates.extend(r.announced_rate().filter(|bps| out.rates.last() != Some(bps)));
            }
            while let Some(ev) = r.poll_event() {
                progressed = true;
                match ev {
                    Event::Decode(job) => r.handle_decoded(now, job.run()),
                    Event::Block { offset, data, .. } => {
                        out.data[offset as usize..][..data.len()].copy_from_slice(&data)
                    }
                    Event::Complete { .. } => {
                        r.handle_stored(now, Ok(*blake3::hash(&out.data).as_bytes()))
                    }
                    Event::Finished(o) => {
                        out.outcome = Some(o);
                        out.finished_at = Some(now);
                        return out;
                    }
                    Event::Manifest(_) => {}
                }
            }
            while let Some(t) = r.poll_transmit(now, &mut buf) {
                progressed = true;
                if let Ok((_, Packet::Report(_))) = wire::parse(&buf) {
                    out.reports.push(now);
                }
                if feedback && t.dest != Dest::Receivers {
                    s.handle_datagram(now, SocketAddr::from(([198, 18, 0, 2], 7001)), &buf);
                }
            }
        }
        let next = [s.poll_timeout(), r.poll_timeout(), rate.map(|(at, _)| at)];
        let next = next.into_iter().flatten().min().unwrap_or(now);
        now = next.max(now + Duration::from_micros(1));
    }
    out
}

fn pair(rate_bps: u64) -> (Sender, Receiver, Vec<u8>) {
    let obj: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let cfg = SenderConfig {
        session: SESSION,
        node: SENDER,
        rate_bps,
        burst_bytes: 2000,
        expected_receivers: Some(1),
        ..SenderConfig::default()
    };
    let s = Sender::new(cfg, &manifest_for(&obj, 100, 10), Instant::ZERO).unwrap();
    let r = Receiver::new(ReceiverConfig { node: 2, report_tries: 5, ..ReceiverConfig::default() });
    (s, r, obj)
}

#[test]
fn a_rate_change_mid_push_is_followed_not_dropped() {
    // 8 Mbit/s = 1 MB/s: about 60 ms for the manifest, the payload and its parity.
    let (mut s, mut r, obj) = pair(8_000_000);
    let change_at = Instant::ZERO + Duration::from_millis(20);
    let got = push(&mut s, &mut r, &obj, Some((change_at, 16_000_000)), true);
    let (done, blocks) = got.progress_at_change.expect("locked on before the change");
    assert!(done > 0 && done < blocks, "the change came mid-push: {done} of {blocks} blocks");
    assert_eq!(got.outcome, Some(Outcome::Complete));
    assert!(got.data == obj, "the copy differs");
    assert_eq!(got.rates, [8_000_000, 16_000_000], "the receiver followed the new rate");
    assert_eq!(got.reports.len(), 1, "acknowledged at once");
    assert_eq!(r.stats().dropped_invalid, 0);
    assert_eq!(r.session_id(), Some(SESSION));
}

#[test]
fn an_unacknowledged_report_is_repeated_then_given_up() {
    let (mut s, mut r, obj) = pair(8_000_000);
    let got = push(&mut s, &mut r, &obj, None, false);
    assert_eq!(got.outcome, Some(Outcome::Unacknowledged));
    assert!(got.data == obj, "placed all the same");
    // `report_tries` reports, four GRTTs (at least 20 ms) apart; the outcome when the last
    // interval has passed.
    assert_eq!(got.reports.len(), 5, "{:?}", got.reports);
    let gaps: Vec<Duration> = got.reports.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g >= Duration::from_millis(20)), "{gaps:?}");
    let last = *got.reports.last().unwrap();
    assert!(got.finished_at.unwrap() - last >= Duration::from_millis(20));
    assert_eq!(r.poll_timeout(), None, "no timer left once finished");
}

#[test]
fn a_squelch_for_a_block_not_sent_or_past_the_end_is_ignored_one_passed_is_believed() {
    let (mut r, _) = locked(ReceiverConfig::default(), announce(1_000_000));
    let t = Instant::ZERO;
    let squelch = |block| Squelch {
        reason: SquelchReason::Unavailable,
        object: ObjectId::Payload,
        block,
        nodes: Vec::new(),
    };
    // Nothing has been sent yet: no block is outstanding, and u32::MAX is past the end.
    for block in [u32::MAX, 10, 3] {
        r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Squelch(squelch(block))));
    }
    assert_eq!((r.stats().squelched, r.stats().squelches_ignored), (0, 3));
    // Once the sender has passed block 3 (a flush) and it is still missing, it is believed,
    // but only from the sender's address.
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Flush(Flush { seq: 5 })));
    r.handle_datagram(t, other(), &datagram(SENDER, &Packet::Squelch(squelch(3))));
    assert_eq!((r.stats().squelched, r.stats().dropped_not_sender), (0, 1));
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Squelch(squelch(3))));
    // Believable, but one squelch is not believed: the same one again before this receiver
    // NAKed again is not either (a forger can send two); after its next NAK it is.
    assert_eq!((r.stats().squelched, r.stats().squelches_unconfirmed), (0, 1));
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Squelch(squelch(3))));
    assert_eq!((r.stats().squelched, r.stats().squelches_unconfirmed), (0, 2));
    let at = nak_now(&mut r);
    r.handle_datagram(at, from(), &datagram(SENDER, &Packet::Squelch(squelch(3))));
    assert_eq!(r.stats().squelched, 1);
}

fn other() -> SocketAddr {
    SocketAddr::from(([198, 18, 9, 9], 7000))
}

/// Run `r`'s timers until it sends its next NAK; when that was.
fn nak_now(r: &mut Receiver) -> Instant {
    let before = r.stats().naks_sent;
    let mut buf = Vec::new();
    for _ in 0..1000 {
        let at = r.poll_timeout().expect("a NAK is due");
        r.handle_timeout(at);
        while r.poll_transmit(at, &mut buf).is_some() {}
        if r.stats().naks_sent > before {
            return at;
        }
    }
    panic!("no NAK");
}

#[test]
fn a_straggler_squelch_counts_only_after_this_receiver_naked() {
    let cfg = ReceiverConfig { node: 2, ..ReceiverConfig::default() };
    let (mut r, _) = locked(cfg, announce(1_000_000));
    let t = Instant::ZERO;
    let straggler = Squelch {
        reason: SquelchReason::Straggler,
        object: ObjectId::Payload,
        block: 0,
        nodes: vec![2],
    };
    let q = datagram(SENDER, &Packet::Squelch(straggler.clone()));
    r.handle_datagram(t, from(), &q);
    assert_eq!((r.stats().squelched, r.stats().squelches_ignored), (0, 1), "never NAKed");
    // The sender passes everything; the receiver NAKs once its backoff expires.
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Flush(Flush { seq: 5 })));
    let at = r.poll_timeout().expect("the NAK backoff is armed");
    r.handle_timeout(at);
    assert_eq!(r.stats().naks_sent, 1);
    // Another node's squelch still does not concern it; its own does.
    let others = Squelch { nodes: vec![3], ..straggler };
    r.handle_datagram(at, from(), &datagram(SENDER, &Packet::Squelch(others)));
    assert_eq!(r.stats().squelched, 0);
    r.handle_datagram(at, from(), &q);
    assert_eq!((r.stats().squelched, r.stats().squelches_unconfirmed), (0, 1), "once: not yet");
    let at = nak_now(&mut r);
    r.handle_datagram(at, from(), &q);
    assert_eq!(r.stats().squelched, 1, "again after its next NAK");
    assert!(r.session.as_ref().unwrap().failure.as_deref().unwrap().contains("straggler"));
}

#[test]
fn an_acknowledgement_counts_only_after_a_report_was_sent() {
    let (mut r, _) = locked(ReceiverConfig::default(), announce(1_000_000));
    let t = Instant::ZERO;
    let ack = datagram(SENDER, &Packet::ReportAck(ReportAck { nodes: vec![2] }));
    r.handle_datagram(t, from(), &ack);
    assert_eq!(r.stats().acks_ignored, 1, "while receiving");
    // The session fails (a squelch it believes) and starts reporting; an ack before the first
    // report went out is not one.
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Flush(Flush { seq: 1 })));
    let q = Squelch {
        reason: SquelchReason::Unavailable,
        object: ObjectId::Payload,
        block: 0,
        nodes: vec![],
    };
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Squelch(q.clone())));
    let t = nak_now(&mut r);
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Squelch(q)));
    r.handle_datagram(t, from(), &ack);
    assert_eq!(r.stats().acks_ignored, 2, "reporting, but nothing sent yet");
    let mut buf = Vec::new();
    r.handle_timeout(t);
    assert!(r.poll_transmit(t, &mut buf).is_some(), "the first report");
    r.handle_datagram(t, other(), &ack);
    assert_eq!(r.stats().dropped_not_sender, 1, "an ack from elsewhere");
    assert!(r.poll_event().is_none());
    r.handle_datagram(t, from(), &ack);
    assert!(matches!(r.poll_event(), Some(Event::Finished(Outcome::Failed(_)))));
}

#[test]
fn an_absurd_grtt_is_capped() {
    let hours = Announce { grtt_us: u32::MAX, ..announce(1_000_000) };
    let (mut r, _) = locked(ReceiverConfig::default(), hours);
    let t = Instant::ZERO;
    assert_eq!(r.session.as_ref().unwrap().grtt, session::MAX_GRTT);
    let probe = Probe { send_time_us: 0, grtt_us: u32::MAX, group_size: 1, echo_share: 0 };
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Probe(probe)));
    assert_eq!(r.session.as_ref().unwrap().grtt, session::MAX_GRTT);
    // At the limit itself, believed as is; from another address not at all.
    let five_s = Probe { grtt_us: 5_000_000, ..probe };
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Probe(five_s)));
    assert_eq!(r.session.as_ref().unwrap().grtt, Duration::from_secs(5));
    let short = Probe { grtt_us: 1000, ..probe };
    r.handle_datagram(t, other(), &datagram(SENDER, &Packet::Probe(short)));
    assert_eq!(r.session.as_ref().unwrap().grtt, Duration::from_secs(5));
}

/// A manifest whose hash matches but whose entries are refused (they tile the payload, but
/// one lies under a file), with its announcement.
fn refused_manifest() -> (Announce, Vec<u8>) {
    use crate::proto::manifest::Entry;
    let e = |p: &str, off, len| Entry::file(p.parse().unwrap(), off, len);
    let m = Manifest {
        entries: vec![e("a", 0, 5_000), e("a/b", 5_000, 5_000)],
        object_size: 10_000,
        symbol_size: 100,
        block_symbols: 10,
        compression: None,
    };
    let bytes = m.encode();
    let a = Announce {
        manifest_len: bytes.len() as u32,
        manifest_hash: *blake3::hash(&bytes).as_bytes(),
        ..announce(1_000_000)
    };
    (a, bytes)
}

#[test]
fn a_refused_manifest_drops_its_candidate_and_is_not_taken_again() {
    // Fetching it again would bring the same bytes; and anyone can announce such a manifest,
    // so an unpinned receiver drops the candidate (and remembers it) rather than give up.
    let (a, bytes) = refused_manifest();
    let mut r = Receiver::new(ReceiverConfig::default());
    let t = Instant::ZERO;
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(a)));
    assert_eq!(r.candidates(), 1);
    feed_manifest(&mut r, t, from(), &a, &bytes);
    assert!(r.poll_event().is_none(), "a refused manifest is not handed out");
    assert_eq!((r.candidates(), r.session_id()), (0, None));
    assert_eq!((r.stats().candidates_refused, r.stats().dropped_invalid), (1, 1));
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(a)));
    assert_eq!((r.candidates(), r.stats().announces_refused), (0, 1), "not taken again");
    // A good push announced after it is taken.
    let (good, good_bytes) = with_manifest(announce(1_000_000));
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(good)));
    feed_manifest(&mut r, t, from(), &good, &good_bytes);
    assert_eq!(r.session_id(), Some(SESSION));
}

#[test]
fn a_refused_manifest_fails_a_pinned_receiver() {
    let (a, bytes) = refused_manifest();
    let cfg = ReceiverConfig { session: Some(SESSION), ..ReceiverConfig::default() };
    let mut r = Receiver::new(cfg);
    let t = Instant::ZERO;
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(a)));
    feed_manifest(&mut r, t, from(), &a, &bytes);
    assert_eq!(r.stats().dropped_invalid, 1, "the refused manifest was counted");
    let s = r.session.as_ref().expect("locked onto, to fail");
    assert!(
        s.failure.as_deref().is_some_and(|f| f.contains("manifest is refused")),
        "{:?}",
        s.failure
    );
}

#[test]
fn a_falling_grtt_pulls_in_the_nak_backoff_armed_under_a_huge_one() {
    let (mut r, _) = locked(ReceiverConfig::default(), announce(1_000_000));
    let t = Instant::ZERO;
    let probe = |grtt_us| Probe { send_time_us: 0, grtt_us, group_size: 1, echo_share: 0 };
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Probe(probe(5_000_000))));
    // Everything passed: the backoff is armed under 5 s (up to 4 GRTTs; this seed: seconds).
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Flush(Flush { seq: 5 })));
    let armed = r.poll_timeout().unwrap();
    assert!(armed > t + Duration::from_secs(1), "{armed:?}");
    // The next probe says 1 ms: the backoff is drawn again, within 4 ms.
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Probe(probe(1000))));
    let pulled = r.poll_timeout().unwrap();
    assert!(pulled <= t + Duration::from_millis(4), "{pulled:?}");
    // A GRTT that rises again moves nothing.
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Probe(probe(2000))));
    assert_eq!(r.poll_timeout(), Some(pulled));
}

#[test]
fn a_ce_mark_counts_only_from_the_sender_and_goes_with_its_datagram() {
    let cfg = ReceiverConfig { node: 2, ..ReceiverConfig::default() };
    let (mut r, _) = locked(cfg, announce(1_000_000));
    let t = Instant::ZERO;
    let marks = |r: &Receiver| r.session.as_ref().expect("locked").rate_meter.ce_marks();
    let symbol = [0u8; 100];
    let data = |seq: u32| {
        let d = Data {
            object: ObjectId::Payload,
            block: 0,
            esi: seq,
            seq: 1000 + seq,
            symbol: &symbol,
        };
        datagram(SENDER, &Packet::Data(d))
    };
    // The sender's data, marked: one mark.
    r.note_ce_mark();
    r.handle_datagram(t, from(), &data(0));
    assert_eq!(marks(&r), 1);
    // Unmarked: none; the mark does not outlive its datagram.
    r.handle_datagram(t, from(), &data(1));
    assert_eq!(marks(&r), 1);
    // Marked, but from another address (a forger naming the sender's node): nothing.
    r.note_ce_mark();
    r.handle_datagram(t, other(), &data(2));
    assert_eq!(marks(&r), 1);
    // Marked, from the sender: a probe counts as its data does (it took the same path).
    r.note_ce_mark();
    let probe = Probe { send_time_us: 1, grtt_us: 1000, group_size: 1, echo_share: 0 };
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Probe(probe)));
    assert_eq!(marks(&r), 2);
    // Marked, but not a datagram at all: nothing, and the next one is unmarked.
    r.note_ce_mark();
    r.handle_datagram(t, from(), b"not a datagram");
    r.handle_datagram(t, from(), &data(3));
    assert_eq!(marks(&r), 2);
    // Marked, from the sender's address, but another session's: nothing.
    r.note_ce_mark();
    let d = Data { object: ObjectId::Payload, block: 0, esi: 4, seq: 1004, symbol: &symbol };
    let mut foreign = Vec::new();
    wire::emit(
        &Header { flags: 0, session: SESSION + 1, node: SENDER },
        &Packet::Data(d),
        &mut foreign,
    );
    r.handle_datagram(t, from(), &foreign);
    assert_eq!(marks(&r), 2);
    r.note_ce_mark();
    r.handle_datagram(t, from(), &data(5));
    assert_eq!(marks(&r), 3);
}
