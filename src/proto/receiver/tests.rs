//! Receiver unit tests: what makes a session the same session. Rate and GRTT are parameters a
//! receiver follows during a push; session id, sender, layout and manifest are its identity.

use super::*;
use crate::proto::sender::{self, Sender, SenderConfig};
use crate::sim::manifest_for;

const SENDER: u32 = 1;
const SESSION: u32 = 9;

fn from() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 1], 7000))
}

fn announce(rate_bps: u64) -> Announce {
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

fn datagram(node: u32, packet: &Packet) -> Vec<u8> {
    let mut b = Vec::new();
    wire::emit(&Header { flags: 0, session: SESSION, node }, packet, &mut b);
    b
}

#[test]
fn rate_and_grtt_are_followed_identity_changes_are_refused() {
    let mut r = Receiver::new(ReceiverConfig::default());
    let t = Instant::ZERO;
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(announce(1_000_000))));
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
    let mut r = Receiver::new(ReceiverConfig::default());
    let t = Instant::ZERO;
    let unknown = announce(1_000_000);
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(unknown)));
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
    let mut r = Receiver::new(ReceiverConfig::default());
    let t = Instant::ZERO;
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(announce(1_000_000))));
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
    assert_eq!(r.stats().squelched, 0);
    // Once the sender has passed block 3 (a flush) and it is still missing, it is believed.
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Flush(Flush { seq: 5 })));
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Squelch(squelch(3))));
    assert_eq!(r.stats().squelched, 1);
}

#[test]
fn an_absurd_grtt_is_capped() {
    let mut r = Receiver::new(ReceiverConfig::default());
    let t = Instant::ZERO;
    let hours = Announce { grtt_us: u32::MAX, ..announce(1_000_000) };
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(hours)));
    assert_eq!(r.session.as_ref().unwrap().grtt, session::MAX_GRTT);
    let probe = Probe { send_time_us: 0, grtt_us: u32::MAX, group_size: 1, echo_share: 0 };
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Probe(probe)));
    assert_eq!(r.session.as_ref().unwrap().grtt, session::MAX_GRTT);
    // At the limit itself, believed as is.
    let five_s = Probe { grtt_us: 5_000_000, ..probe };
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Probe(five_s)));
    assert_eq!(r.session.as_ref().unwrap().grtt, Duration::from_secs(5));
}

#[test]
fn a_manifest_whose_hash_matches_but_whose_entries_are_refused_fails_the_session() {
    use crate::proto::manifest::{Entry, Manifest};
    // Entries that tile the payload, but one lies under a file: refused by the checks after the
    // hash matched. Fetching it again would bring the same bytes, so the receiver gives up.
    let e = |p: &str, off, len| Entry::file(p.parse().unwrap(), off, len);
    let m = Manifest {
        entries: vec![e("a", 0, 5_000), e("a/b", 5_000, 5_000)],
        object_size: 10_000,
        symbol_size: 100,
        block_symbols: 10,
    };
    let bytes = m.encode();
    let a = Announce {
        manifest_len: bytes.len() as u32,
        manifest_hash: *blake3::hash(&bytes).as_bytes(),
        ..announce(1_000_000)
    };
    let mut r = Receiver::new(ReceiverConfig::default());
    let t = Instant::ZERO;
    r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Announce(a)));
    let layout = a.manifest_layout();
    let mut seq = 0;
    for b in 0..layout.block_count() {
        let off = layout.block_offset(b).unwrap() as usize;
        let len = layout.block_len(b).unwrap();
        let mut block = bytes[off..off + len].to_vec();
        let k = layout.source_symbols(b).unwrap();
        block.resize(usize::from(k) * 100, 0);
        for (esi, symbol) in block.chunks(100).enumerate() {
            let d = Data { object: ObjectId::Manifest, block: b, esi: esi as u32, seq, symbol };
            seq += 1;
            r.handle_datagram(t, from(), &datagram(SENDER, &Packet::Data(d)));
        }
    }
    let mut failed = false;
    for _ in 0..100 {
        match r.poll_event() {
            Some(Event::Decode(job)) => r.handle_decoded(t, job.run()),
            Some(Event::Manifest(_)) => panic!("a refused manifest was handed out"),
            Some(_) => {}
            None => break,
        }
        failed |= r.stats().dropped_invalid > 0;
    }
    assert!(failed, "the refused manifest was counted");
    let s = r.session.as_ref().unwrap();
    assert!(
        s.failure.as_deref().is_some_and(|f| f.contains("manifest is refused")),
        "{:?}",
        s.failure
    );
}
