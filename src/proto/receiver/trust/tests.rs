//! The trust gate on hand-made datagrams: a good signature locks, an unsigned push, another
//! key's, a tampered announcement and a replayed version do not; the version boundary pair.

use super::*;
use crate::proto::receiver::Receiver;
use crate::proto::sign::Signer;
use crate::proto::wire;
use std::net::SocketAddr;

const SESSION: u32 = 0x5151;
const SENDER: u32 = 1;

fn header() -> Header {
    Header { flags: 0, session: SESSION, node: SENDER }
}

fn announce() -> Announce {
    Announce {
        object_size: 10_000,
        symbol_size: 100,
        block_symbols: 10,
        manifest_len: 50,
        manifest_hash: [1; 32],
        hashes_len: 10 * 32,
        hashes_hash: [2; 32],
        rate_bps: 1_000_000,
        grtt_us: 1000,
    }
}

fn dgram(h: &Header, p: &Packet<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    wire::emit(h, p, &mut buf);
    buf
}

fn signature(signer: &Signer, a: &Announce, version: u64) -> Packet<'static> {
    Packet::Signature(signer.sign(&SignedFields::of(&header(), a, version)))
}

fn trusting(signer: &Signer, held: Option<u64>, allow_downgrade: bool) -> Receiver {
    let key = TrustedKey::from_bytes(&signer.public_key()).unwrap();
    let held = held.map(|v| (key.id(), v)).into_iter().collect();
    let trust = TrustConfig { keys: vec![key], held, allow_downgrade };
    Receiver::new(ReceiverConfig { trust: Some(trust), ..ReceiverConfig::default() })
}

fn feed(rx: &mut Receiver, packets: &[(Header, Packet<'_>)]) {
    let from = SocketAddr::from(([198, 18, 0, 1], 7000));
    for (h, p) in packets {
        rx.handle_datagram(Instant::ZERO, from, &dgram(h, p));
    }
}

#[test]
fn a_verified_signature_locks_and_says_what_it_accepted() {
    let s = Signer::from_secret(&[7; 32]);
    let mut rx = trusting(&s, None, false);
    feed(&mut rx, &[(header(), Packet::Announce(announce()))]);
    assert_eq!(rx.candidates(), 0, "an announcement alone is not even a candidate");
    feed(&mut rx, &[(header(), signature(&s, &announce(), 9))]);
    // A signed candidate: it locks once its manifest verifies (tests/signed.rs).
    assert_eq!(rx.candidates(), 1);
    // Accepted by the gate; `Receiver::accepted` reports it once the candidate locks.
    assert!(rx.accepted().is_none());
    let accepted = rx.gate.as_ref().unwrap().accepted.back().unwrap();
    assert_eq!((accepted.key, accepted.version), (s.public_key(), 9));
    assert!(!rx.refusals().unwrap().any());
}

#[test]
fn unsigned_pushes_are_refused_and_counted() {
    let s = Signer::from_secret(&[7; 32]);
    let mut rx = trusting(&s, None, false);
    let announces: Vec<_> = (0..5).map(|_| (header(), Packet::Announce(announce()))).collect();
    feed(&mut rx, &announces);
    assert_eq!((rx.session_id(), rx.candidates()), (None, 0));
    // Each announcement that the next one found unsigned.
    assert_eq!(rx.refusals().unwrap().unsigned, 4);
    assert!(rx.refusals().unwrap().summary().contains("4 unsigned announcements"));
    // Data before any lock is not ours.
    assert_eq!(rx.stats().dropped_foreign, 0);
    let data = Packet::Flush(wire::Flush { seq: 1 });
    feed(&mut rx, &[(header(), data)]);
    assert_eq!(rx.stats().dropped_foreign, 1);
}

#[test]
fn another_key_and_tampered_announcements_are_refused_and_a_good_one_still_locks() {
    let (ours, theirs) = (Signer::from_secret(&[7; 32]), Signer::from_secret(&[8; 32]));
    let mut rx = trusting(&ours, None, false);
    let a = announce();
    feed(&mut rx, &[(header(), Packet::Announce(a)), (header(), signature(&theirs, &a, 5))]);
    assert_eq!(rx.candidates(), 0);
    let r = rx.refusals().unwrap();
    assert_eq!((r.untrusted_key, r.last_untrusted), (1, Some(theirs.key_id())));
    assert!(r.summary().contains("untrusted key"), "{}", r.summary());
    // A forged announcement (another hash list) with our key's genuine signature of the real
    // one: the signature does not cover it.
    let forged = Announce { hashes_hash: [3; 32], ..a };
    feed(&mut rx, &[(header(), Packet::Announce(forged)), (header(), signature(&ours, &a, 5))]);
    assert_eq!((rx.candidates(), rx.refusals().unwrap().bad_signature), (0, 1));
    // A signature of another session's sender is checked against that sender's announcement:
    // none here.
    let other = Header { node: 99, ..header() };
    feed(&mut rx, &[(other, signature(&ours, &a, 5))]);
    assert_eq!(rx.refusals().unwrap().no_announce, 1);
    // The real push still locks: the receiver never gave up.
    feed(&mut rx, &[(header(), Packet::Announce(a)), (header(), signature(&ours, &a, 5))]);
    assert_eq!(rx.candidates(), 1);
}

#[test]
fn a_version_equal_to_the_held_one_is_refused_one_more_is_accepted() {
    let s = Signer::from_secret(&[7; 32]);
    let a = announce();
    let push = |rx: &mut Receiver, v: u64| {
        feed(rx, &[(header(), Packet::Announce(a)), (header(), signature(&s, &a, v))]);
        // Admitted by the gate: a signed candidate of the session.
        (rx.candidates() > 0).then_some(SESSION)
    };
    let mut rx = trusting(&s, Some(100), false);
    assert_eq!(push(&mut rx, 99), None, "older");
    assert_eq!(push(&mut rx, 100), None, "equal");
    let r = rx.refusals().unwrap();
    assert_eq!((r.old_version, r.last_old), (2, Some((100, 100))));
    assert!(r.summary().contains("not newer than version 100"), "{}", r.summary());
    assert_eq!(push(&mut rx, 101), Some(SESSION), "one newer");
    assert_eq!(rx.gate.as_ref().unwrap().accepted.back().unwrap().version, 101);
    // Allowed downgrade: the equal one locks.
    let mut rx = trusting(&s, Some(100), true);
    assert_eq!(push(&mut rx, 100), Some(SESSION));
}

#[test]
fn a_signed_announcement_without_a_hash_list_is_refused() {
    let s = Signer::from_secret(&[7; 32]);
    let mut rx = trusting(&s, None, false);
    let a = Announce { hashes_len: 0, hashes_hash: [0; 32], ..announce() };
    feed(&mut rx, &[(header(), Packet::Announce(a)), (header(), signature(&s, &a, 1))]);
    assert_eq!((rx.session_id(), rx.refusals().unwrap().no_hash_list), (None, 1));
}

#[test]
fn signed_pushes_send_the_hash_list_before_the_payload() {
    use ObjectId::*;
    assert!(sent_before(false, Manifest, Payload) && sent_before(false, Payload, Hashes));
    assert!(sent_before(true, Manifest, Hashes) && sent_before(true, Hashes, Payload));
    assert!(!sent_before(true, Payload, Hashes) && !sent_before(true, Payload, Payload));
}

#[test]
fn only_a_repeat_of_the_verified_announcement_from_its_address_reaches_its_candidate() {
    let s = Signer::from_secret(&[7; 32]);
    let mut rx = trusting(&s, None, false);
    let a = announce();
    feed(&mut rx, &[(header(), Packet::Announce(a)), (header(), signature(&s, &a, 9))]);
    assert_eq!(rx.candidates(), 1);
    // Another hash list under the same session, from the sender's address or from elsewhere:
    // never a candidate (it would decide which hash list is believed).
    let forged = Announce { hashes_hash: [3; 32], ..a };
    feed(&mut rx, &[(header(), Packet::Announce(forged))]);
    let elsewhere = SocketAddr::from(([198, 18, 0, 66], 7000));
    for p in [Packet::Announce(forged), Packet::Announce(a)] {
        rx.handle_datagram(Instant::ZERO, elsewhere, &dgram(&header(), &p));
    }
    assert_eq!(rx.candidates(), 1, "no unsigned candidate was made");
    // A genuine signature replayed from elsewhere verifies nothing there without its own
    // announcement from that address.
    let gate_refusals = rx.refusals().unwrap().no_announce;
    let sig = signature(&s, &a, 9);
    let mut fresh = trusting(&s, None, false);
    feed(&mut fresh, &[(header(), Packet::Announce(a))]);
    fresh.handle_datagram(Instant::ZERO, elsewhere, &dgram(&header(), &sig));
    assert_eq!(fresh.candidates(), 0);
    assert_eq!(fresh.refusals().unwrap().no_announce, gate_refusals + 1);
}
