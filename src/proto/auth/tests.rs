//! Seal/open round trips, every byte tampered, replays, the age bound, nonce uniqueness and
//! the replay window's edges.

use super::*;
use crate::proto::wire::{
    self, Data, Header, ObjectId, Packet, FLAG_ENCRYPTED, FLAG_KEYED, HEADER_LEN,
};
use std::collections::HashSet;

const NOW: u64 = 1_800_000_000;

fn key(b: u8) -> Key {
    Key::from_bytes([b; KEY_LEN])
}

fn plain(esi: u32) -> Vec<u8> {
    let symbol = [esi as u8; 40];
    let d = Data { object: ObjectId::Payload, block: 3, esi, seq: esi, symbol: &symbol };
    let mut b = Vec::new();
    wire::emit(&Header { flags: 0, session: 9, node: 4 }, &Packet::Data(d), &mut b);
    b
}

fn sealed(s: &mut Sealer, esi: u32, at: u64) -> Vec<u8> {
    let mut out = Vec::new();
    s.seal(&plain(esi), at, &mut out).unwrap();
    out
}

#[test]
fn round_trip_restores_the_v1_datagram_in_both_modes() {
    for encrypt in [false, true] {
        let mut s = Sealer::new(&key(1), [7; PREFIX_LEN], encrypt);
        let mut o = Opener::new(&key(1), 10);
        let d = sealed(&mut s, 5, NOW);
        assert_eq!(d.len(), plain(5).len() + KEYED_OVERHEAD);
        assert!(wire::parse(&d).is_err(), "a keyed datagram is not a v1 datagram");
        let fl = u16::from_be_bytes([d[6], d[7]]);
        assert_eq!(fl & FLAG_KEYED, FLAG_KEYED);
        assert_eq!(fl & FLAG_ENCRYPTED != 0, encrypt);
        // Plain mode leaves the symbol readable on the wire, encrypted mode does not.
        let body_visible = d.windows(40).any(|w| w == [5u8; 40]);
        assert_eq!(body_visible, !encrypt);
        let mut out = Vec::new();
        let opened = o.open(&d, NOW, &mut out).unwrap().to_vec();
        assert_eq!(opened, plain(5));
        assert!(wire::parse(&opened).is_ok());
        assert_eq!(o.counters().accepted, 1);
        assert_eq!(o.counters().dropped(), 0);
    }
}

#[test]
fn tampering_with_any_byte_fails_the_tag() {
    for encrypt in [false, true] {
        let mut s = Sealer::new(&key(1), [7; PREFIX_LEN], encrypt);
        let d = sealed(&mut s, 5, NOW);
        let mut o = Opener::new(&key(1), 10);
        let mut out = Vec::new();
        for i in 0..d.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = d.clone();
                t[i] ^= bit;
                let e = o.open(&t, NOW, &mut out).unwrap_err();
                let expected = match i {
                    0..=4 => AuthError::Malformed,          // magic, version
                    6 if bit == 0x80 => AuthError::Unkeyed, // the keyed flag itself
                    _ => AuthError::BadTag,
                };
                assert_eq!(e, expected, "byte {i} bit {bit:#x}, encrypt {encrypt}");
            }
        }
        let c = o.counters();
        assert_eq!(c.accepted, 0);
        assert_eq!(c.dropped(), 2 * d.len() as u64);
        // The untouched one still opens: no failed attempt consumed its nonce.
        assert!(o.open(&d, NOW, &mut out).is_ok());
    }
}

#[test]
fn another_key_fails_and_plain_datagrams_are_refused() {
    let mut s = Sealer::new(&key(1), [7; PREFIX_LEN], false);
    let d = sealed(&mut s, 1, NOW);
    let mut o = Opener::new(&key(2), 10);
    let mut out = Vec::new();
    assert_eq!(o.open(&d, NOW, &mut out), Err(AuthError::BadTag));
    assert_eq!(o.open(&plain(1), NOW, &mut out), Err(AuthError::Unkeyed));
    assert_eq!(
        o.open(&d[..HEADER_LEN + NONCE_LEN + TAG_LEN - 1], NOW, &mut out).unwrap_err(),
        AuthError::Malformed
    );
    assert_eq!(o.open(b"garbage", NOW, &mut out), Err(AuthError::Malformed));
    let c = *o.counters();
    assert_eq!((c.bad_tag, c.unkeyed, c.malformed, c.accepted), (1, 1, 2, 0));
}

#[test]
fn open_mode_passes_plain_and_counts_keyed() {
    let mut s = Sealer::new(&key(1), [7; PREFIX_LEN], false);
    let mut o = Opener::open_mode();
    assert!(!o.is_keyed());
    let mut out = Vec::new();
    let p = plain(2);
    assert_eq!(o.open(&p, NOW, &mut out).unwrap(), &p[..]);
    // Garbage is not auth's business in open mode: `wire::parse` counts it.
    assert_eq!(o.open(b"xy", NOW, &mut out).unwrap(), b"xy");
    let d = sealed(&mut s, 2, NOW);
    assert_eq!(o.open(&d, NOW, &mut out), Err(AuthError::KeyedInOpenMode));
    assert_eq!(o.counters().keyed_in_open_mode, 1);
    assert_eq!(o.counters().accepted, 2);
}

#[test]
fn a_replay_is_dropped_once_accepted() {
    let mut s = Sealer::new(&key(1), [7; PREFIX_LEN], false);
    let mut o = Opener::new(&key(1), 10);
    let mut out = Vec::new();
    let a = sealed(&mut s, 1, NOW);
    let b = sealed(&mut s, 2, NOW);
    assert!(o.open(&b, NOW, &mut out).is_ok());
    assert!(o.open(&a, NOW, &mut out).is_ok(), "reordered, within the window");
    assert_eq!(o.open(&a, NOW, &mut out), Err(AuthError::Replayed));
    assert_eq!(o.open(&b, NOW, &mut out), Err(AuthError::Replayed));
    assert_eq!(o.counters().replayed, 2);
}

#[test]
fn age_bound_boundary_pair_both_ways() {
    let skew = 10;
    let mut s = Sealer::new(&key(1), [7; PREFIX_LEN], false);
    let mut o = Opener::new(&key(1), skew);
    let mut out = Vec::new();
    let at_limit_past = sealed(&mut s, 1, NOW - skew);
    let past = sealed(&mut s, 2, NOW - skew - 1);
    let at_limit_future = sealed(&mut s, 3, NOW + skew);
    let future = sealed(&mut s, 4, NOW + skew + 1);
    assert!(o.open(&at_limit_past, NOW, &mut out).is_ok());
    assert_eq!(o.open(&past, NOW, &mut out), Err(AuthError::Stale { age_secs: skew + 1 }));
    assert!(o.open(&at_limit_future, NOW, &mut out).is_ok());
    assert_eq!(o.open(&future, NOW, &mut out), Err(AuthError::Stale { age_secs: skew + 1 }));
    assert_eq!(o.counters().stale, 2);
    // A stale datagram does not consume its nonce: on a clock that agrees it still opens.
    assert!(Opener::new(&key(1), skew).open(&past, NOW - skew - 1, &mut out).is_ok());
}

#[test]
fn the_sealer_refuses_what_it_cannot_seal() {
    let mut s = Sealer::new(&key(1), [7; PREFIX_LEN], false);
    let mut out = Vec::new();
    assert_eq!(s.seal(&plain(1), u64::from(u32::MAX) + 1, &mut out), Err(AuthError::Clock));
    assert_eq!(s.seal(b"short", NOW, &mut out), Err(AuthError::Malformed));
    let d = sealed(&mut s, 1, NOW);
    assert_eq!(s.seal(&d, NOW, &mut out), Err(AuthError::Malformed), "sealed twice");
    assert_eq!(s.sealed(), 1, "refusals use no nonce");
}

#[test]
fn nonces_are_unique_across_two_sealers_and_each_opener_keeps_them_apart() {
    // Two sealers with one key (two nodes): different prefixes, so equal counters differ.
    let mut a = Sealer::new(&key(1), [1; PREFIX_LEN], false);
    let mut b = Sealer::new(&key(1), [2; PREFIX_LEN], false);
    let mut nonces = HashSet::new();
    let mut o = Opener::new(&key(1), 10);
    let mut out = Vec::new();
    for i in 0..500 {
        for s in [&mut a, &mut b] {
            let d = sealed(s, i, NOW);
            assert!(nonces.insert(d[HEADER_LEN..HEADER_LEN + NONCE_LEN].to_vec()));
            assert!(o.open(&d, NOW, &mut out).is_ok(), "counter {i} of each sealer");
        }
    }
    assert_eq!(nonces.len(), 1000);
    assert_eq!(o.counters().accepted, 1000);
}

#[test]
fn window_edges() {
    let mut w = ReplayWindow::new();
    assert!(w.accept(0));
    assert!(!w.accept(0));
    let top = 5000;
    assert!(w.accept(top));
    // The oldest counter still inside the window, and the first one behind it.
    assert!(w.check(top - WINDOW_BITS + 1));
    assert!(!w.check(top - WINDOW_BITS));
    assert!(w.accept(top - WINDOW_BITS + 1));
    assert!(!w.accept(top - WINDOW_BITS + 1));
    // Moving by one slides the lowest slot out; its bit is cleared for the new counter.
    assert!(w.accept(top + 1));
    assert!(!w.check(top - WINDOW_BITS + 1), "now behind the window");
    assert!(!w.check(top));
    assert!(w.check(top - 1));
    // A jump by the window's width or more forgets everything below.
    assert!(w.accept(top + 1 + WINDOW_BITS));
    assert!(!w.check(top + 1));
    assert!(w.check(top + 2));
    // Slots reused after a slide accept their new counter once.
    let mut w = ReplayWindow::new();
    for c in 0..3 * WINDOW_BITS {
        assert!(w.accept(c), "counter {c}");
        assert!(!w.accept(c));
    }
}

#[test]
fn the_prefix_table_is_bounded_and_evicts_the_least_recently_used() {
    let mut t = ReplayTable::new(2);
    assert!(t.accept(&[1; PREFIX_LEN], 0));
    assert!(t.accept(&[2; PREFIX_LEN], 0));
    assert!(t.accept(&[1; PREFIX_LEN], 1)); // 1 is now the most recent
    assert!(t.accept(&[3; PREFIX_LEN], 0)); // evicts 2
    assert_eq!((t.len(), t.evicted()), (2, 1));
    assert!(!t.accept(&[1; PREFIX_LEN], 1), "1 is still tracked");
    assert!(!t.accept(&[3; PREFIX_LEN], 0), "3 is tracked");
    assert!(t.accept(&[2; PREFIX_LEN], 0), "2 was forgotten");
}

#[test]
fn the_overhead_keeps_a_1400_byte_symbol_within_a_1500_byte_mtu() {
    assert_eq!(KEYED_OVERHEAD, 36);
    const { assert!(1400 + wire::DATA_OVERHEAD + KEYED_OVERHEAD + 28 <= 1500) };
    let mut s = Sealer::new(&key(1), [7; PREFIX_LEN], true);
    let p = plain(1);
    let mut out = Vec::new();
    s.seal(&p, NOW, &mut out).unwrap();
    assert_eq!(out.len() - p.len(), KEYED_OVERHEAD);
}

#[test]
fn key_debug_hides_the_key() {
    assert_eq!(format!("{:?}", key(0xab)), "Key(..)");
}

#[test]
fn keyring_warns_at_most_every_few_seconds_and_says_why() {
    use crate::proto::time::{Duration, Instant};
    let mut peer = Sealer::new(&key(2), [9; PREFIX_LEN], false);
    let mut ring = Keyring::new(Some(&KeyConfig::new(key(1))), [1; PREFIX_LEN]);
    let mut out = Vec::new();
    let t0 = Instant::ZERO + Duration::from_secs(100);
    assert_eq!(ring.poll_warning(t0), None, "nothing dropped yet");
    for i in 0..3 {
        assert!(ring.open(&sealed(&mut peer, i, NOW), NOW, &mut out).is_none());
    }
    let w = ring.poll_warning(t0).unwrap();
    assert_eq!(w, "dropped 3 datagrams that failed authentication (wrong key?)");
    assert!(ring.open(&plain(1), NOW, &mut out).is_none());
    // Just short of the interval: quiet; at it: the drops since the last warning only.
    assert_eq!(ring.poll_warning(t0 + (WARN_EVERY - Duration::from_micros(1))), None);
    let w = ring.poll_warning(t0 + WARN_EVERY).unwrap();
    assert_eq!(w, "dropped 1 datagram without authentication (a peer without --key-file?)");
    assert_eq!(ring.poll_warning(t0 + 3 * WARN_EVERY), None, "nothing new");
    assert!(ring.open(&plain(2), NOW, &mut out).is_none());
    assert!(ring.flush_warning().is_some(), "the end of a run flushes at once");
    let why = ring.diagnosis().unwrap();
    assert!(why.contains("every datagram received was refused"), "{why}");
    assert!(why.contains("3 datagrams that failed authentication (wrong key?)"), "{why}");
    // One authentic datagram, and the node is no longer said to hear only refusals.
    let mut own = Sealer::new(&key(1), [3; PREFIX_LEN], false);
    assert!(ring.open(&sealed(&mut own, 1, NOW), NOW, &mut out).is_some());
    assert_eq!(ring.diagnosis(), None);
}

#[test]
fn keyring_in_open_mode_passes_plain_and_seals_nothing() {
    let mut ring = Keyring::new(None, [1; PREFIX_LEN]);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let p = plain(1);
    assert_eq!(ring.seal(&p, NOW, &mut a).unwrap(), &p[..]);
    assert_eq!(ring.open(&p, NOW, &mut b).unwrap(), &p[..]);
    assert_eq!(ring.sealed(), 0);
    let mut keyed = Sealer::new(&key(1), [2; PREFIX_LEN], false);
    assert!(ring.open(&sealed(&mut keyed, 1, NOW), NOW, &mut b).is_none());
    assert!(ring.diagnosis().is_none(), "a plain datagram got through");
    assert!(ring.flush_warning().unwrap().contains("no --key-file is given here"));
}
