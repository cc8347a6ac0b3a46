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

/// What one pass of [`push`] saw.
struct Push {
    outcome: Option<Outcome>,
    data: Vec<u8>,
    rates: Vec<u64>,
    /// The receiver's payload blocks done, and the block count, when the rate changed.
    progress_at_change: Option<(u32, u32)>,
}

/// A lossless push from `s` to `r`, with the sender's rate changed to `new_rate` at `change_at`.
fn push(s: &mut Sender, r: &mut Receiver, obj: &[u8], change_at: Instant, new_rate: u64) -> Push {
    let mut out = Push {
        outcome: None,
        data: vec![0; obj.len()],
        rates: Vec::new(),
        progress_at_change: None,
    };
    let mut now = Instant::ZERO;
    let mut changed = false;
    let mut buf = Vec::new();
    let mut to_sender = Vec::new();
    for _ in 0..100_000 {
        if !changed && now >= change_at {
            changed = true;
            out.progress_at_change = r.progress();
            s.set_rate(now, new_rate);
        }
        s.handle_timeout(now);
        r.handle_timeout(now);
        loop {
            while let Some(ev) = s.poll_event() {
                if let sender::Event::NeedBlock(req) = ev {
                    let data = obj[req.offset as usize..][..req.len].to_vec();
                    s.handle_block(req.block, req.prepare(data).unwrap()).unwrap();
                }
            }
            let Some(_) = s.poll_transmit(now, &mut buf) else { break };
            r.handle_datagram(now, from(), &buf);
            out.rates.extend(r.announced_rate().filter(|rate| out.rates.last() != Some(rate)));
            while let Some(ev) = r.poll_event() {
                match ev {
                    Event::Decode(job) => r.handle_decoded(now, job.run()),
                    Event::Block { offset, data, .. } => {
                        out.data[offset as usize..][..data.len()].copy_from_slice(&data)
                    }
                    Event::Complete { .. } => {
                        r.handle_stored(now, Ok(*blake3::hash(&out.data).as_bytes()))
                    }
                    Event::Finished(o) => out.outcome = Some(o),
                    Event::Manifest(_) => {}
                }
            }
            while let Some(t) = r.poll_transmit(now, &mut buf) {
                if t.dest != Dest::Receivers {
                    to_sender.push(buf.clone());
                }
            }
            for d in to_sender.drain(..) {
                s.handle_datagram(now, SocketAddr::from(([198, 18, 0, 2], 7001)), &d);
            }
        }
        if out.outcome.is_some() {
            return out;
        }
        let next = [s.poll_timeout(), r.poll_timeout()].into_iter().flatten().min();
        now = next.unwrap_or(now).max(now + Duration::from_micros(1));
        if !changed {
            now = now.min(change_at);
        }
    }
    out
}

#[test]
fn a_rate_change_mid_push_is_followed_not_dropped() {
    let obj: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let cfg = SenderConfig {
        session: SESSION,
        node: SENDER,
        rate_bps: 8_000_000, // 1 MB/s: about 60 ms for the manifest, payload and parity
        burst_bytes: 2000,
        expected_receivers: Some(1),
        ..SenderConfig::default()
    };
    let mut s = Sender::new(cfg, &manifest_for(&obj, 100, 10), Instant::ZERO).unwrap();
    let mut r = Receiver::new(ReceiverConfig { node: 2, ..ReceiverConfig::default() });
    let change_at = Instant::ZERO + Duration::from_millis(20);
    let got = push(&mut s, &mut r, &obj, change_at, 16_000_000);
    let (done, blocks) = got.progress_at_change.expect("locked on before the change");
    assert!(done > 0 && done < blocks, "the change came mid-push: {done} of {blocks} blocks");
    assert_eq!(got.outcome, Some(Outcome::Complete));
    assert!(got.data == obj, "the copy differs");
    assert_eq!(got.rates, [8_000_000, 16_000_000], "the receiver followed the new rate");
    assert_eq!(r.stats().dropped_invalid, 0);
    assert_eq!(r.session_id(), Some(SESSION));
}
