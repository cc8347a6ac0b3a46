//! Bounded fuzzing under proptest, for CI: the harnesses of `mcast::sim::fuzz` (the same ones
//! the cargo-fuzz targets in `fuzz/` run) over random bytes and over mutations of the seed
//! corpus (bit flips, byte writes, truncations, insertions, splices of two seeds), with a
//! fixed RNG seed so every run tries the same cases. Also: the committed corpus in
//! `fuzz/corpus/` holds every generated seed (`MCAST_FUZZ_WRITE_CORPUS=1` rewrites it), every
//! committed file replays cleanly, and the seeds reach deep enough (a replayed push
//! completes, a NAK storm drives the repair queue to its bound).

use mcast::proto::receiver::Outcome;
use mcast::sim::fuzz::{self, corpus, CountingAlloc, HeapScope, TARGETS};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError, TestRunner};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

/// The generated seeds (a push in the simulator: built once per test binary).
fn seeds() -> &'static [corpus::Seed] {
    static SEEDS: OnceLock<Vec<corpus::Seed>> = OnceLock::new();
    SEEDS.get_or_init(corpus::seeds)
}

fn seeds_of(target: &str) -> Vec<Vec<u8>> {
    seeds().iter().filter(|s| s.target == target).map(|s| s.bytes.clone()).collect()
}

/// Every file committed under `fuzz/corpus/<target>/`, sorted by name.
fn committed(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_generated_seed_is_committed_and_the_corpus_is_small() {
    let write = std::env::var_os("MCAST_FUZZ_WRITE_CORPUS").is_some_and(|v| v == "1");
    let mut total = 0;
    for seed in seeds() {
        let path = corpus_dir(seed.target).join(&seed.name);
        if write {
            std::fs::create_dir_all(corpus_dir(seed.target)).expect("corpus directory");
            std::fs::write(&path, &seed.bytes).expect("write seed");
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate: MCAST_FUZZ_WRITE_CORPUS=1 cargo test --test fuzz)",
                path.display()
            )
        });
        assert_eq!(on_disk, seed.bytes, "{} is stale", path.display());
    }
    for target in TARGETS {
        let files = committed(target);
        assert!(!files.is_empty(), "no seeds for {target}");
        total += files.iter().map(|(_, b)| b.len()).sum::<usize>();
    }
    assert!(total < 1 << 20, "the corpus is {total} bytes");
}

#[test]
fn every_committed_input_replays_cleanly() {
    for target in TARGETS {
        for (path, bytes) in committed(target) {
            let run = std::panic::catch_unwind(|| fuzz::run_target(target, &bytes));
            assert!(run.is_ok(), "{target}: {} fails", path.display());
        }
    }
}

#[test]
fn the_pushed_seeds_drive_the_receiver_to_each_end() {
    let scripts = seeds_of("receiver_datagrams");
    let full = fuzz::fuzz_receiver(&scripts[0]);
    assert_eq!(full.outcome, Some(Outcome::Complete), "{full:?}");
    assert_eq!(full.blocks, 6, "six payload blocks written");
    assert!(full.stats.blocks_decoded > 0, "lost source symbols were recovered: {full:?}");
    assert!(full.heap_peak.is_some(), "the counting allocator is installed");
    let failed = fuzz::fuzz_receiver(&scripts[1]);
    assert!(matches!(failed.outcome, Some(Outcome::Failed(_))), "{failed:?}");
    let cut = fuzz::fuzz_receiver(&scripts[2]);
    assert_eq!(cut.outcome, None, "a push cut short does not end");
}

#[test]
fn a_nak_storm_fills_the_repair_queue_exactly_to_its_bound() {
    let scripts = seeds_of("sender_datagrams");
    let cfg = corpus::sender_config();
    let bound = u32::from(corpus::BLOCK_SYMBOLS) + 16 + u32::from(cfg.repair_margin);
    let storm = fuzz::fuzz_sender(&scripts[2]);
    assert!(storm.adverts > 0, "{storm:?}");
    assert_eq!(storm.max_advertised, bound, "needs of 65535 are capped at K + 16 + margin");
    let replay = fuzz::fuzz_sender(&scripts[0]);
    assert!(replay.stats.naks_received > 0 && replay.stats.reports_received > 0, "{replay:?}");
    let sealed = fuzz::fuzz_sender(&scripts[1]);
    assert_eq!(sealed.stats.naks_received, replay.stats.naks_received, "sealing keeps them valid");
}

#[test]
fn the_heap_scope_measures_and_bounds_growth() {
    let scope = HeapScope::start();
    let block = vec![1u8; 100_000];
    let peak = scope.peak().expect("counting");
    assert!((100_000..110_000).contains(&peak), "peak {peak}");
    drop(block);
    assert_eq!(scope.peak(), Some(peak), "the peak stays after a free");
    scope.check(peak, "at the limit");
    let over = std::panic::catch_unwind(|| scope.check(peak - 1, "past the limit"));
    assert!(over.is_err(), "one byte past the limit fails");
}

/// One change to an input; positions are taken modulo the input's length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize),
    Write(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    /// Replace everything from `at` with the tail of another seed from `from`.
    Splice {
        at: usize,
        seed: usize,
        from: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => any::<usize>().prop_map(Mutation::FlipBit),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Write(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(at, seed, from)| Mutation::Splice { at, seed, from }),
    ]
}

fn mutate(seeds: &[Vec<u8>], base: usize, mutations: &[Mutation]) -> Vec<u8> {
    let mut data = seeds[base % seeds.len()].clone();
    for m in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match m {
            Mutation::FlipBit(i) if !data.is_empty() => {
                let i = at(*i, data.len() * 8);
                data[i / 8] ^= 1 << (i % 8);
            }
            Mutation::Write(i, b) if !data.is_empty() => {
                let i = at(*i, data.len());
                data[i] = *b;
            }
            Mutation::Truncate(i) => data.truncate(at(*i, data.len() + 1)),
            Mutation::Insert(i, b) => {
                let i = at(*i, data.len() + 1);
                data.splice(i..i, b.iter().copied());
            }
            Mutation::Splice { at: i, seed, from } => {
                let other = &seeds[seed % seeds.len()];
                data.truncate(at(*i, data.len() + 1));
                data.extend_from_slice(&other[at(*from, other.len() + 1)..]);
            }
            _ => {}
        }
    }
    data
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x6d63_6173_7466_757a),
        failure_persistence: None,
        max_shrink_iters: 1024,
        ..ProptestConfig::default()
    })
}

fn run_case(target: &str, data: &[u8]) -> Result<(), TestCaseError> {
    std::panic::catch_unwind(|| fuzz::run_target(target, data))
        .map_err(|_| TestCaseError::fail(format!("{target} panics on {data:02x?}")))
}

/// `cases` random inputs (up to `max_len` bytes) and `cases` mutated seeds through `target`.
fn fuzz_target(target: &str, cases: u32, max_len: usize) {
    let seeds = seeds_of(target);
    runner(cases)
        .run(&prop::collection::vec(any::<u8>(), 0..max_len), |data| run_case(target, &data))
        .unwrap_or_else(|e| panic!("{target}, random bytes: {e}"));
    let mutated = (any::<usize>(), prop::collection::vec(mutation(), 1..8));
    runner(cases)
        .run(&mutated, |(base, ms)| run_case(target, &mutate(&seeds, base, &ms)))
        .unwrap_or_else(|e| panic!("{target}, mutated seeds: {e}"));
}

#[test]
fn fuzz_wire_parse() {
    fuzz_target("wire_parse", 20_000, 1600);
}

#[test]
fn fuzz_manifest_decode() {
    fuzz_target("manifest_decode", 10_000, 512);
}

#[test]
fn fuzz_hash_list() {
    fuzz_target("hash_list", 10_000, 512);
}

#[test]
fn fuzz_receiver_datagrams() {
    fuzz_target("receiver_datagrams", 4000, 4096);
}

#[test]
fn fuzz_sender_datagrams() {
    fuzz_target("sender_datagrams", 3000, 4096);
}
