//! Bounded fuzzing under proptest, for CI: the harnesses of `mcast::sim::fuzz` (the same ones
//! the cargo-fuzz targets in `fuzz/` run) over random bytes, over mutations of the seed
//! corpus (bit flips, byte writes, truncations, insertions, splices of two seeds) and, for the
//! state machines, over scripts of valid packets in small ranges (structure-aware), with a
//! fixed RNG seed so every run tries the same cases. Also: the committed corpus in
//! `fuzz/corpus/` holds every generated seed (`MCAST_FUZZ_WRITE_CORPUS=1` rewrites it), every
//! committed file replays cleanly, and the seeds reach deep enough (a replayed push
//! completes, a NAK storm drives the repair queue to its bound).

use mcast::proto::layout::Layout;
use mcast::proto::receiver::Outcome;
use mcast::proto::wire::{self, *};
use mcast::sim::fuzz::script::{Framing, Step};
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
fn every_target_has_a_cargo_fuzz_binary_running_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let harness = |t: &str| match t {
        "wire_parse" => "fuzz_wire",
        "receiver_datagrams" => "fuzz_receiver",
        "sender_datagrams" => "fuzz_sender",
        "manifest_decode" => "fuzz_manifest",
        "hash_list" => "fuzz_hash_list",
        other => panic!("no harness named for {other}"),
    };
    for target in TARGETS {
        assert!(manifest.contains(&format!("name = \"{target}\"")), "no [[bin]] {target}");
        let path = root.join("fuzz_targets").join(format!("{target}.rs"));
        let src = std::fs::read_to_string(&path).expect("the target's source");
        let call = format!("mcast::sim::fuzz::{}(data);", harness(target));
        assert!(src.contains(&call), "{} does not call {call}", path.display());
    }
    let bins = manifest.matches("[[bin]]").count();
    assert_eq!(bins, TARGETS.len(), "fuzz/Cargo.toml has targets the tests do not run");
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
    // Verified and placed. The replayed acknowledgement is receiver 0's, timed to its report;
    // this receiver loses other symbols and may report after it (an ack before a report is
    // not believed), then ends unacknowledged.
    assert!(matches!(full.outcome, Some(Outcome::Complete | Outcome::Unacknowledged)), "{full:?}");
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

/// A valid packet for a session of `t`-byte symbols, as the peer of the harness would send it:
/// block numbers, ESIs and counts in small ranges so that they meet the state machine's
/// blocks, other fields anywhere.
fn packet(t: u16) -> impl Strategy<Value = Vec<u8>> {
    let object = (0u8..3)
        .prop_map(|o| [ObjectId::Manifest, ObjectId::Payload, ObjectId::Hashes][o as usize]);
    let need = (object.clone(), 0u32..8, 1u16..80).prop_map(|(object, block, count)| Need {
        object,
        block,
        count,
    });
    let needs = (any::<u32>(), any::<u32>(), prop::collection::vec(need, 1..12));
    let nodes = prop::collection::vec(prop_oneof![Just(fuzz::FUZZ_RECEIVER_NODE), 0u32..8], 1..4);
    let packet = prop_oneof![
        6 => (object, 0u32..8, 0u32..48, 0u32..400, any::<u8>()).prop_map(move |(object, block, esi, seq, fill)| {
            emit_packet(&Packet::Data(Data { object, block, esi, seq, symbol: &vec![fill; usize::from(t)] }))
        }),
        2 => needs.clone().prop_map(|(seq, loss_ppm, needs)| emit_packet(&Packet::Nak(NeedList { seq, loss_ppm, needs }))),
        1 => needs.prop_map(|(seq, loss_ppm, needs)| emit_packet(&Packet::RepairAdvert(NeedList { seq, loss_ppm, needs }))),
        1 => (any::<u64>(), any::<u32>(), any::<u32>(), any::<u16>()).prop_map(|(send_time_us, grtt_us, group_size, echo_share)| {
            emit_packet(&Packet::Probe(Probe { send_time_us, grtt_us, group_size, echo_share }))
        }),
        1 => (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(probe_time_us, delay_us, loss_ppm)| {
            emit_packet(&Packet::Echo(Echo { probe_time_us, delay_us, loss_ppm }))
        }),
        1 => (0u32..400).prop_map(|seq| emit_packet(&Packet::Flush(Flush { seq }))),
        1 => (any::<bool>(), any::<u64>(), any::<[u8; 32]>(), any::<u32>()).prop_map(|(ok, bytes, object_hash, n)| {
            let status = if ok { ReportStatus::Complete } else { ReportStatus::Failed };
            emit_packet(&Packet::Report(Report { status, bytes, object_hash, naks_sent: n, naks_suppressed: n, elapsed_ms: n, reason: String::new() }))
        }),
        1 => nodes.clone().prop_map(|nodes| emit_packet(&Packet::ReportAck(ReportAck { nodes }))),
        1 => nodes.clone().prop_map(|nodes| emit_packet(&Packet::Hello(Hello::Welcome { nodes }))),
        1 => (1usize..=64).prop_map(|n| emit_packet(&Packet::Hello(Hello::Join { host: HostName::new(&"h".repeat(n)).expect("valid") }))),
        1 => any::<bool>().prop_map(|i| {
            let reason = if i { AbortReason::Interrupted } else { AbortReason::SourceError };
            emit_packet(&Packet::Abort(Abort::new(reason, "fuzz")))
        }),
        1 => (any::<bool>(), 0u32..8, nodes).prop_map(|(straggler, block, nodes)| {
            let reason = if straggler { SquelchReason::Straggler } else { SquelchReason::Unavailable };
            emit_packet(&Packet::Squelch(Squelch { reason, object: ObjectId::Payload, block, nodes }))
        }),
    ];
    packet
}

fn emit_packet(p: &Packet<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    wire::emit(&Header { flags: 0, session: 7, node: 1 }, p, &mut buf);
    buf
}

/// A script of valid packets (as the peer), clock steps, decodes and storage verdicts.
fn steps(t: u16) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        8 => packet(t).prop_map(|b| Step::Datagram(Framing::Peer, b)),
        2 => (0u16..3000).prop_map(Step::Tick),
        1 => Just(Step::Wake),
        1 => any::<u8>().prop_map(Step::DecodeOne),
        2 => Just(Step::DecodeAll),
        1 => any::<bool>().prop_map(Step::Store),
    ];
    prop::collection::vec(step, 1..200)
}

/// The start of a session a receiver can follow: its announcement and every source symbol
/// of its manifest (a real one, for a single file of the announced layout), decoded.
fn session_start(size: u64, t: u16, k: u16, hashes_known: bool) -> Vec<Step> {
    let path = mcast::proto::manifest::RelPath::new("f").expect("a plain name");
    let manifest = mcast::proto::manifest::Manifest::single_file(path, size, t, k)
        .expect("a valid layout")
        .encode();
    let layout = Layout::new(size, t, k).expect("a valid layout");
    let (hashes_len, hashes_hash) =
        if hashes_known { (layout.block_count() * 32, [5; 32]) } else { (0, [0; 32]) };
    let announce = Announce {
        object_size: size,
        symbol_size: t,
        block_symbols: k,
        manifest_len: manifest.len() as u32,
        manifest_hash: *blake3::hash(&manifest).as_bytes(),
        hashes_len,
        hashes_hash,
        rate_bps: 1_000_000,
        grtt_us: 1000,
    };
    let mut steps = vec![Step::Datagram(Framing::Sealed, emit_packet(&Packet::Announce(announce)))];
    let mut padded = manifest.clone();
    padded.resize(manifest.len().next_multiple_of(usize::from(t)), 0);
    let block_bytes = usize::from(t) * usize::from(k);
    for (i, symbol) in padded.chunks(usize::from(t)).enumerate() {
        let (block, esi) = ((i * usize::from(t) / block_bytes) as u32, (i % usize::from(k)) as u32);
        let data = Data { object: ObjectId::Manifest, block, esi, seq: i as u32, symbol };
        steps.push(Step::Datagram(Framing::Peer, emit_packet(&Packet::Data(data))));
    }
    steps.push(Step::DecodeAll);
    steps
}

/// A receiver that locked onto a small random session and holds its manifest, then fed a
/// structured script: the random inputs that reach past the session lock and the manifest.
#[test]
fn fuzz_receiver_structured() {
    let layout = (0u64..6000, 16u16..96, 1u16..24, any::<bool>());
    let case = layout.prop_flat_map(|(size, t, k, hashes_known)| {
        (Just(session_start(size, t, k, hashes_known)), steps(t))
    });
    let wrote = std::cell::Cell::new(0u32);
    runner(1500)
        .run(&case, |(start, steps)| {
            let script = [start, steps].concat();
            let run =
                std::panic::catch_unwind(|| fuzz::fuzz_receiver(&fuzz::script::encode(&script)))
                    .map_err(|_| TestCaseError::fail(format!("receiver panics on {script:?}")))?;
            wrote.set(wrote.get() + u32::from(run.blocks > 0));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("receiver, structured: {e}"));
    // The strategy must keep reaching the block path (about one case in eight does).
    assert!(wrote.get() >= 1500 / 10, "only {} of 1500 cases wrote a block", wrote.get());
}

/// The mid-push sender fed a structured script of feedback from several nodes.
#[test]
fn fuzz_sender_structured() {
    runner(1500)
        .run(&steps(corpus::SYMBOL_SIZE), |steps| {
            run_case("sender_datagrams", &fuzz::script::encode(&steps))
        })
        .unwrap_or_else(|e| panic!("sender, structured: {e}"));
}
