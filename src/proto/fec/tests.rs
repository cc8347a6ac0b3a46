//! Tests of the FEC layer: encoder and collector checks, and the fast decode path against
//! raptorq's own decoder on random and boundary loss patterns.

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn block(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen()).collect()
}

#[test]
fn length_boundaries() {
    // A block of K symbols must hold more than (K-1)*T bytes and at most K*T.
    assert!(BlockEncoder::new(16, 4, vec![0; 64]).is_ok());
    assert!(BlockEncoder::new(16, 4, vec![0; 65]).is_err());
    assert!(BlockEncoder::new(16, 4, vec![0; 49]).is_ok());
    assert!(BlockEncoder::new(16, 4, vec![0; 48]).is_err());
    assert!(BlockEncoder::new(0, 4, vec![]).is_err());
}

#[test]
fn systematic_copy_needs_no_decode() {
    let data = block(1000, 1);
    let enc = BlockEncoder::new(100, 10, data.clone()).unwrap();
    let mut syms = BlockSymbols::new(100, 10).unwrap();
    for esi in 0..10 {
        assert_eq!(syms.insert(esi, enc.source_symbol(esi).unwrap()), Ok(Inserted::New));
    }
    assert!(syms.is_systematic());
    assert_eq!(syms.decode().unwrap(), data);
}

#[test]
fn a_counting_collector_counts_as_a_full_one_and_holds_no_bytes() {
    let (t, k) = (32u16, 20u16);
    let enc = BlockEncoder::new(t, k, block(usize::from(t) * usize::from(k), 9)).unwrap();
    let mut full = BlockSymbols::new(t, k).unwrap();
    let mut counting = BlockSymbols::for_coding_counting(t, k, None, true).unwrap();
    // Source symbols with gaps, a duplicate, repairs up to K and one past it (surplus), and a
    // symbol of the wrong size: both collectors answer alike at every step.
    let mut seq: Vec<(u32, Vec<u8>)> = Vec::new();
    for esi in (0..u32::from(k)).filter(|e| e % 4 != 1) {
        seq.push((esi, enc.source_symbol(esi).unwrap().to_vec()));
    }
    seq.push((0, enc.source_symbol(0).unwrap().to_vec()));
    let repair = |esi: u32| {
        let mut out = Vec::new();
        enc.repair_symbol(esi, &mut out).unwrap();
        out
    };
    for esi in u32::from(k)..u32::from(k) + 7 {
        seq.push((esi, repair(esi)));
    }
    seq.push((u32::from(k), repair(u32::from(k))));
    seq.push((3, vec![0; usize::from(t) - 1]));
    for (esi, sym) in &seq {
        assert_eq!(counting.insert(*esi, sym), full.insert(*esi, sym), "esi {esi}");
        assert_eq!((counting.count(), counting.need()), (full.count(), full.need()));
        assert_eq!(counting.ready(), full.ready());
        assert_eq!(counting.is_systematic(), full.is_systematic());
    }
    assert!(full.ready() && !full.is_systematic());
    assert!(full.decode().is_ok());
    // Nothing to decode from: the symbols come back, not made-up bytes.
    let back = counting.decode().unwrap_err();
    assert_eq!(back.count(), u32::from(k));
}

#[test]
fn repairs_replace_any_lost_symbols() {
    let (t, k) = (64u16, 50u16);
    let data = block(usize::from(t) * usize::from(k) - 7, 2);
    let enc = BlockEncoder::new(t, k, data.clone()).unwrap();
    let mut syms = BlockSymbols::new(t, k).unwrap();
    // Lose every third source symbol, fill in with repair symbols.
    for esi in (0..u32::from(k)).filter(|e| e % 3 != 0) {
        syms.insert(esi, enc.source_symbol(esi).unwrap()).unwrap();
    }
    let mut out = Vec::new();
    let mut esi = u32::from(k);
    let mut result = None;
    while result.is_none() && esi < 200 {
        while !syms.ready() {
            enc.repair_symbol(esi, &mut out).unwrap();
            syms.insert(esi, &out).unwrap();
            esi += 1;
        }
        match syms.clone().decode() {
            Ok(d) => result = Some(d),
            Err(back) => syms = *back,
        }
    }
    let mut decoded = result.expect("decodes");
    decoded.truncate(data.len());
    assert_eq!(decoded, data);
}

#[test]
fn hostile_symbols_are_refused() {
    let mut syms = BlockSymbols::new(32, 4).unwrap();
    assert!(syms.insert(0, &[0; 31]).is_err());
    assert!(syms.insert(0, &[0; 33]).is_err());
    assert!(syms.insert(MAX_ESI + 1, &[0; 32]).is_err());
    assert_eq!(syms.insert(MAX_ESI, &[0; 32]), Ok(Inserted::New));
    assert_eq!(syms.insert(MAX_ESI, &[0; 32]), Ok(Inserted::Duplicate));
    let enc = BlockEncoder::new(32, 4, vec![1; 128]).unwrap();
    let mut out = Vec::new();
    assert!(enc.repair_symbol(3, &mut out).is_err());
    assert!(enc.repair_symbol(MAX_ESI + 1, &mut out).is_err());
    assert!(enc.repair_symbol(MAX_ESI, &mut out).is_ok());
    assert_eq!(out.len(), 32);
}

#[test]
fn too_few_symbols_come_back() {
    let mut syms = BlockSymbols::new(32, 4).unwrap();
    syms.insert(5, &[0; 32]).unwrap();
    let back = syms.decode().unwrap_err();
    assert_eq!(back.need(), 3);
}

/// A block of `k` symbols of `t` bytes, `len` data bytes, its encoder and its zero-padded bytes.
fn coded(t: u16, k: u16, len: usize, seed: u64) -> (BlockEncoder, Vec<u8>) {
    let data = block(len, seed);
    let enc = BlockEncoder::new(t, k, data.clone()).unwrap();
    let mut padded = data;
    padded.resize(usize::from(t) * usize::from(k), 0);
    (enc, padded)
}

/// The symbols of `enc` less the source symbols in `lost`, plus repair symbols `repairs`.
fn received(enc: &BlockEncoder, t: u16, lost: &[u32], repairs: &[u32]) -> BlockSymbols {
    let k = enc.source_symbols();
    let mut syms = BlockSymbols::new(t, k).unwrap();
    let mut out = Vec::new();
    for &esi in repairs {
        enc.repair_symbol(esi, &mut out).unwrap();
        assert_eq!(syms.insert(esi, &out), Ok(Inserted::New));
    }
    for esi in (0..u32::from(k)).filter(|e| !lost.contains(e)) {
        syms.insert(esi, enc.source_symbol(esi).unwrap()).unwrap();
    }
    syms
}

/// Decode `syms` both ways (fast path with a fresh cache, and raptorq alone) and check that they
/// agree with each other and with `want`; returns the path the fast decode took.
fn check_against_raptorq(syms: BlockSymbols, want: &[u8]) -> Path {
    let cache = CoefficientCache::new(1);
    let full = syms.clone().decode_full();
    let (fast, path) = syms.decode_with(&cache);
    match (&fast, &full, path) {
        (Ok(a), Ok(b), _) => {
            assert_eq!(a, b, "fast and full decode disagree ({path:?})");
            assert_eq!(a.as_slice(), want);
        }
        // Both failed: the symbols did not determine the block.
        (Err(a), Err(b), Path::Singular | Path::Full) => assert_eq!(a.need(), b.need()),
        _ => panic!("fast {:?} / full {:?} via {path:?}", fast.is_ok(), full.is_ok()),
    }
    path
}

#[test]
fn real_size_blocks_recover_through_the_fast_path() {
    // K = 749, T = 1400: a 1 MiB block. e = 1, 8, 32 go the fast way, 60 (> K / 20) the full.
    let (t, k) = (1400u16, 749u16);
    let (enc, want) = coded(t, k, usize::from(t) * usize::from(k), 7);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for (e, expect) in [(1, Path::Fast), (8, Path::Fast), (32, Path::Fast), (60, Path::Full)] {
        let mut lost: Vec<u32> = Vec::new();
        while lost.len() < e {
            let esi = rng.gen_range(0..u32::from(k));
            if !lost.contains(&esi) {
                lost.push(esi);
            }
        }
        let repairs: Vec<u32> = (u32::from(k)..).take(e).collect();
        let syms = received(&enc, t, &lost, &repairs);
        assert_eq!(check_against_raptorq(syms, &want), expect, "e = {e}");
    }
}

#[test]
fn no_loss_is_a_copy() {
    let (t, k) = (32u16, 20u16);
    let (enc, want) = coded(t, k, 640, 9);
    let syms = received(&enc, t, &[], &[]);
    let (got, path) = syms.decode_with(&CoefficientCache::new(1));
    assert_eq!((got.unwrap(), path), (want, Path::Copy));
}

#[test]
fn more_repairs_than_losses_serve_too() {
    // Repairs arrive first, source symbols later: 3 lost, 5 repairs held (not just the first 3).
    let (t, k) = (16u16, 30u16);
    let (enc, want) = coded(t, k, 470, 10);
    let syms = received(&enc, t, &[0, 14, 29], &[30, 31, 32, 77, 1_000_000]);
    assert_eq!(syms.count(), 32);
    assert_eq!(check_against_raptorq(syms, &want), Path::Fast);
}

#[test]
fn one_symbol_blocks() {
    // K = 1: the one source symbol lost, one repair symbol, over many ESIs. Each must either be
    // recovered or be a repair symbol that carries nothing about the source (raptorq agrees).
    let (t, k) = (24u16, 1u16);
    let (enc, want) = coded(t, k, 20, 11);
    let mut recovered = 0;
    for esi in 1..60 {
        match check_against_raptorq(received(&enc, t, &[0], &[esi]), &want) {
            Path::Fast => recovered += 1,
            Path::Singular => {}
            other => panic!("esi {esi}: {other:?}"),
        }
    }
    assert!(recovered > 50, "{recovered} of 59");
}

#[test]
fn a_singular_system_asks_for_more_and_then_recovers() {
    // Find a lost source symbol j and a repair ESI whose coefficient on j is zero: that repair
    // says nothing about s_j, so with e = 1 the system is singular.
    let (t, k) = (16u16, 12u16);
    let cache = CoefficientCache::new(1);
    let esis: Vec<u32> = (12..2000).collect();
    let rows = cache.rows(k, &esis).unwrap();
    let (esi, j) = esis
        .iter()
        .zip(&rows)
        .find_map(|(&esi, row)| row.as_bytes().iter().position(|&c| c == 0).map(|j| (esi, j)))
        .expect("a zero coefficient among 2000 rows");
    let (enc, want) = coded(t, k, 190, 12);
    let syms = received(&enc, t, &[j as u32], &[esi]);
    assert_eq!(check_against_raptorq(syms.clone(), &want), Path::Singular);
    let (back, path) = syms.decode_with(&cache);
    assert_eq!(path, Path::Singular);
    let mut back = *back.unwrap_err();
    assert_eq!(back.need(), 2, "target raised by two, as after a failed raptorq decode");
    // Two more repair symbols (ESIs whose coefficient on s_j is not zero) and it decodes.
    let mut out = Vec::new();
    let more: Vec<u32> = esis
        .iter()
        .zip(&rows)
        .filter(|(_, row)| row.as_bytes()[j] != 0)
        .map(|(&e, _)| e)
        .filter(|&e| e != esi)
        .take(2)
        .collect();
    for e in more {
        enc.repair_symbol(e, &mut out).unwrap();
        back.insert(e, &out).unwrap();
    }
    let (got, path) = back.decode_with(&cache);
    assert_eq!((got.unwrap(), path), (want, Path::Fast));
}

#[test]
fn workers_share_one_cache() {
    // Four threads decode blocks of the same K through one cache, each losing other symbols.
    let (t, k) = (40u16, 64u16);
    let cache = CoefficientCache::new(1);
    std::thread::scope(|s| {
        for w in 0..4u32 {
            let cache = &cache;
            s.spawn(move || {
                for b in 0..5u32 {
                    let (enc, want) = coded(t, k, 2540, u64::from(w * 10 + b));
                    let lost = [w, 10 + b, 63 - w];
                    let syms = received(&enc, t, &lost, &[64, 65, 66, 67]);
                    let (got, path) = syms.decode_with(cache);
                    assert_eq!((got.unwrap(), path), (want, Path::Fast), "worker {w} block {b}");
                }
            });
        }
    });
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// A random block shape, loss pattern and set of repair ESIs.
    fn case() -> impl Strategy<Value = (u16, u16, usize, u64, Vec<u32>, Vec<u32>)> {
        (1u16..300, 1u16..100).prop_flat_map(|(k, t)| {
            let full = usize::from(k) * usize::from(t);
            let e_max = usize::from(k).min(24);
            (
                Just(k),
                Just(t),
                (full - usize::from(t) + 1)..=full,
                any::<u64>(),
                proptest::sample::subsequence((0..u32::from(k)).collect::<Vec<_>>(), 0..=e_max),
                // Extra repairs beyond e (0..3), and whether ESIs are consecutive or scattered.
                (0usize..3, any::<bool>(), proptest::collection::vec(0u32..5000, 28)),
            )
                .prop_map(move |(k, t, len, seed, lost, (extra, scattered, jumps))| {
                    let mut esis = Vec::new();
                    let mut next = u32::from(k);
                    // No more repairs than K: the collector takes no repair once it holds K.
                    let repairs = (lost.len() + extra).min(usize::from(k));
                    for jump in jumps.iter().take(repairs) {
                        next += if scattered { 1 + jump } else { 1 };
                        esis.push(next - 1);
                    }
                    (k, t, len, seed, lost, esis)
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn fast_decode_agrees_with_raptorq((k, t, len, seed, lost, esis) in case()) {
            let (enc, want) = coded(t, k, len, seed);
            let syms = received(&enc, t, &lost, &esis);
            let path = check_against_raptorq(syms, &want);
            let e = lost.len();
            let expect: &[Path] = if e == 0 {
                &[Path::Copy]
            } else if e > fast::max_lost(k) {
                &[Path::Full]
            } else {
                &[Path::Fast, Path::Singular]
            };
            prop_assert!(expect.contains(&path), "e = {} k = {}: {:?}", e, k, path);
        }
    }
}

#[test]
fn last_short_block_takes_the_fast_path_from_its_second_decode() {
    // An object's last block: K = 37 symbols, the last one 1 byte long, zero-padded. Its first
    // decode goes to raptorq (no probe yet for a K seen once), the next one the fast way.
    let (t, k) = (100u16, 37u16);
    let len = usize::from(t) * usize::from(k - 1) + 1;
    let cache = CoefficientCache::new(2);
    for (seed, expect) in [(13, Path::Full), (14, Path::Fast)] {
        let (enc, want) = coded(t, k, len, seed);
        let syms = received(&enc, t, &[5, 36], &[37, 38]);
        let (got, path) = syms.decode_with(&cache);
        let got = got.unwrap();
        assert_eq!((&got, path), (&want, expect));
        assert!(got[len..].iter().all(|&b| b == 0), "padding stays zero");
    }
}

#[test]
fn a_systematic_encoder_builds_its_repair_encoder_on_the_first_repair_symbol() {
    let (t, k) = (64u16, 40u16);
    let data = block(usize::from(t) * usize::from(k) - 5, 11);
    let eager = BlockEncoder::new(t, k, data.clone()).unwrap();
    let lazy = BlockEncoder::systematic(t, k, data).unwrap();
    assert!(eager.repair_ready());
    assert!(!lazy.repair_ready(), "nothing computed for source symbols");
    for esi in 0..u32::from(k) {
        assert_eq!(lazy.source_symbol(esi), eager.source_symbol(esi));
    }
    assert!(!lazy.repair_ready(), "source symbols do not build it");
    // An out-of-range repair ESI is refused before anything is computed.
    let mut out = Vec::new();
    assert_eq!(lazy.repair_symbol(u32::from(k) - 1, &mut out), Err(FecError::Esi(39)));
    assert!(!lazy.repair_ready());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for esi in [u32::from(k), u32::from(k) + 1, 1000, MAX_ESI] {
        eager.repair_symbol(esi, &mut a).unwrap();
        lazy.repair_symbol(esi, &mut b).unwrap();
        assert_eq!(a, b, "repair symbol {esi}");
        assert_eq!(b.len(), usize::from(t));
    }
    assert!(lazy.repair_ready());
    let prepared = BlockEncoder::systematic(16, 4, vec![3; 60]).unwrap();
    prepared.prepare_repair();
    assert!(prepared.repair_ready());
}

#[test]
fn a_block_prepared_without_repair_serves_the_same_symbols() {
    use crate::proto::sender::BlockRequest;
    let (t, k) = (100u16, 12u16);
    let data = block(1150, 12);
    let req = BlockRequest {
        block: 0,
        offset: 0,
        len: data.len(),
        symbols: k,
        symbol_size: t,
        codec: None,
    };
    let eager = req.prepare(data.clone()).unwrap();
    let lazy = req.prepare_with(data.clone(), false).unwrap();
    assert_eq!(eager.hash, lazy.hash);
    assert!(eager.encoder.repair_ready());
    assert!(!lazy.encoder.repair_ready());
    assert!(req.prepare_with(data.clone(), true).unwrap().encoder.repair_ready());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    eager.encoder.repair_symbol(20, &mut a).unwrap();
    lazy.encoder.repair_symbol(20, &mut b).unwrap();
    assert_eq!(a, b);
    // A wrong length is refused either way.
    assert!(req.prepare_with(data[..1149].to_vec(), false).is_err());
}

#[test]
fn the_sender_expects_repair_only_with_proactive_parity() {
    use crate::proto::sender::SenderConfig;
    use crate::proto::time::Instant;
    let object = crate::sim::Object::new(block(5000, 13), 100, 10).unwrap();
    let expects = |fec_overhead: f64, auto_parity: bool, max_parity: f64| {
        let cfg = SenderConfig { fec_overhead, auto_parity, max_parity, ..SenderConfig::default() };
        object.sender(cfg, Instant::ZERO).unwrap().expects_repair()
    };
    assert!(expects(0.05, true, 0.5), "the fixed share until receivers report");
    assert!(expects(0.05, false, 0.5));
    assert!(!expects(0.0, true, 0.5), "no parity: blocks are prepared without repair");
    assert!(!expects(0.0, false, 0.5));
    assert!(!expects(0.05, true, 0.0), "auto parity capped at zero sends none");
}
