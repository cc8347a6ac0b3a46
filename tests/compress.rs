//! Compressed pushes (`--compress`): in the harness, lossy links with every receiver verifying,
//! a forged `K_b` or codec datagram injected ahead of a block's first genuine one, incompressible
//! blocks travelling raw; with the real binaries in a private network namespace, a compressible
//! 16 MiB file and a tree, with bytes on the wire well below the size and identical outputs.

mod common;

use mcast::proto::compress::{BlockCodec, Codec};
use mcast::proto::manifest::Manifest;
use mcast::proto::receiver::{Event, Outcome, Receiver, ReceiverConfig};
use mcast::proto::sender::SenderConfig;
use mcast::proto::stats::{ReceiverStats, SenderStats};
use mcast::proto::time::{Duration, Instant};
use mcast::proto::wire::{self, Announce, CData, Data, Header, ObjectId, Packet, FLAG_COMPRESSED};
use mcast::sim::{Datagram, FecModel, Harness, Link, LossModel, MemSource, Network, Node, Object};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

const T: u16 = 256;
const K: u16 = 64;

const WORDS: [&str; 32] = [
    "block",
    "symbol",
    "repair",
    "sender",
    "receiver",
    "multicast",
    "group",
    "rate",
    "loss",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "verified",
    "hash",
    "list",
    "manifest",
    "tree",
    "file",
    "push",
    "decode",
    "encode",
    "window",
    "timer",
    "budget",
    "straggler",
    "report",
    "session",
    "layout",
];

/// `blocks` blocks of `K * T` bytes: even blocks text (compressible), odd ones random.
fn half_text(blocks: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let block = usize::from(K) * usize::from(T);
    let mut out = Vec::with_capacity(blocks * block);
    for b in 0..blocks {
        if b % 2 == 0 {
            // Words drawn from a small vocabulary: compresses about 4 to 6 times.
            let start = out.len();
            while out.len() < start + block {
                out.extend_from_slice(WORDS[rng.gen_range(0..WORDS.len())].as_bytes());
                out.push(if rng.gen_ratio(1, 12) { b'\n' } else { b' ' });
            }
            out.truncate(start + block);
        } else {
            out.extend((0..block).map(|_| rng.gen::<u8>()));
        }
    }
    out
}

struct Run {
    h: Harness,
    object: Arc<Object>,
}

impl Run {
    fn new(bytes: Vec<u8>, codec: Option<Codec>, loss: f64, receivers: usize, seed: u64) -> Self {
        let object = Object::new(bytes, T, K).unwrap();
        let object = Arc::new(object.with_compression(codec.map(Codec::block_codec)).unwrap());
        let cfg = SenderConfig {
            rate_bps: 100_000_000,
            linger: Duration::from_millis(200),
            // Paced from the start (no 64 KiB burst): forgeries can be timed per datagram.
            burst_bytes: 4096,
            expected_receivers: Some(receivers as u32),
            node: 1,
            ..SenderConfig::default()
        };
        let mut sender = object.sender(cfg, Instant::ZERO).unwrap();
        if let Some(c) = codec {
            sender.set_compression(c).unwrap();
        }
        let net = Network {
            latency: Duration::from_micros(200),
            loss: LossModel::Independent(loss),
            ..Network::default()
        };
        let source = MemSource::new(Arc::clone(&object));
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let mut h = Harness::new(net, sender, source, FecModel::Real, rng);
        for i in 0..receivers {
            let rx = Receiver::new(ReceiverConfig {
                node: 2 + i as u32,
                seed: seed * 1000 + i as u64,
                ..ReceiverConfig::default()
            });
            h.add_receiver(rx, Link::default());
        }
        Run { h, object }
    }

    fn run_with(&mut self, tap: &mut dyn FnMut(&mut Datagram) -> bool) {
        self.h.run_with(Instant::ZERO + Duration::from_secs(60), tap);
    }

    fn sender(&self) -> &SenderStats {
        self.h.sender().stats()
    }

    fn rx(&self, r: usize) -> &ReceiverStats {
        self.h.receiver(r).stats()
    }

    /// Every receiver verified and holds exactly the object; the sender has every report.
    fn check_all(&self, what: &str) {
        for r in 0..self.h.receiver_count() {
            assert_eq!(self.h.sink(r).outcome(), Some(&Outcome::Complete), "{what}: receiver {r}");
            assert_eq!(self.h.sink(r).stored().map(|(_, exact)| exact), Some(true), "{what}: {r}");
        }
        assert_eq!(self.h.sender().receivers().len(), self.h.receiver_count(), "{what}");
    }
}

/// The compressed payload datagrams of a sender's datagram, parsed.
fn cdata(d: &Datagram) -> Option<(Header, CData<'_>)> {
    match wire::parse(&d.data) {
        Ok((h, Packet::CData(c))) if d.from == Node::Sender => Some((h, c)),
        _ => None,
    }
}

#[test]
fn lossy_compressed_pushes_verify_everywhere_and_send_less() {
    let bytes = half_text(12, 1);
    let plain = {
        let mut r = Run::new(bytes.clone(), None, 0.05, 4, 7);
        r.run_with(&mut |_| true);
        r.check_all("uncompressed");
        r.sender().clone()
    };
    assert_eq!(plain.wire_payload_bytes, plain.payload_bytes);
    for codec in [Codec::Zstd { level: 3 }, Codec::Lz4] {
        let mut r = Run::new(bytes.clone(), Some(codec), 0.05, 4, 7);
        let mut kinds = [0u64; 3];
        let mut flagged = true;
        r.run_with(&mut |d| {
            if d.from == Node::Sender {
                let (h, p) = wire::parse(&d.data).unwrap();
                flagged &= h.flags & FLAG_COMPRESSED != 0;
                if let Packet::Data(x) = p {
                    assert_ne!(x.object, wire::ObjectId::Payload, "payload goes as CData");
                }
            }
            if let Some((_, c)) = cdata(d) {
                kinds[c.codec as usize] += 1;
            }
            true
        });
        r.check_all(&codec.to_string());
        assert!(flagged, "{codec}: every sender datagram says the session is compressed");
        let s = r.sender();
        assert_eq!(s.payload_bytes, bytes.len() as u64);
        // Half the blocks are text: they shrink to less than half; the random half travels
        // raw, byte for byte.
        let half = s.payload_bytes / 2;
        assert!(s.wire_payload_bytes > half, "{codec}: random half raw");
        assert!(s.wire_payload_bytes - half < half / 2, "{codec}: {s:?}");
        assert!(kinds[BlockCodec::Raw as usize] > 0 && kinds[codec.block_codec() as usize] > 0);
        assert!(
            s.data_packets < plain.data_packets * 8 / 10,
            "{codec}: {} vs {}",
            s.data_packets,
            plain.data_packets
        );
        assert!(
            s.bytes_sent < plain.bytes_sent * 8 / 10,
            "{codec}: wire {} vs {}",
            s.bytes_sent,
            plain.bytes_sent
        );
        for i in 0..4 {
            assert_eq!(r.rx(i).hash_failures, 0, "{codec}");
            assert_eq!(r.rx(i).decompress_failures, 0, "{codec}");
        }
    }
}

#[test]
fn incompressible_blocks_travel_raw() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let bytes: Vec<u8> =
        (0..usize::from(K) * usize::from(T) * 3 + 1000).map(|_| rng.gen()).collect();
    let mut r = Run::new(bytes.clone(), Some(Codec::Zstd { level: 3 }), 0.02, 2, 3);
    let mut seen = Vec::new();
    r.run_with(&mut |d| {
        if let Some((_, c)) = cdata(d) {
            seen.push((c.codec, c.data.block, c.kb));
        }
        true
    });
    r.check_all("random");
    assert!(!seen.is_empty());
    for (codec, block, kb) in seen {
        assert_eq!(codec, BlockCodec::Raw, "block {block}");
        assert_eq!(Some(kb), r.object.layout().source_symbols(block), "block {block}: K_b = K");
    }
    let s = r.sender();
    assert_eq!(s.wire_payload_bytes, s.payload_bytes);
}

/// Copies `c` with another codec and K_b, same block, ESI, sequence number and symbol.
fn forged(h: &Header, c: &CData<'_>, codec: BlockCodec, kb: u16) -> Vec<u8> {
    let mut b = Vec::new();
    wire::emit(h, &Packet::CData(CData { codec, kb, ..*c }), &mut b);
    b
}

#[test]
fn a_forged_block_coding_ahead_of_the_genuine_one_costs_a_request_not_a_wrong_write() {
    // Each forgery reaches the receivers just ahead of a block's first genuine datagram (it
    // is delivered while that one is still in flight): a K_b of 1 (the block "decodes" from
    // the forged symbol, does not decompress and is fetched again), a K_b of K - 1 (the block
    // would wait for symbols that never come; the genuine ones outnumber it), another codec,
    // and a raw claim for a compressed block.
    let forgeries: [(u32, Option<BlockCodec>, u16); 4] = [
        (8, None, 1),
        (10, None, K - 1),
        (12, Some(BlockCodec::Lz4), 0),
        (14, Some(BlockCodec::Raw), K),
    ];
    // Past the first datagrams (announcements, manifest, the first window of interleaved
    // blocks, see `wire::interleave`), so that the receivers are locked onto the session when
    // the forgeries come.
    let mut r = Run::new(half_text(24, 2), Some(Codec::Zstd { level: 3 }), 0.0, 2, 5);
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::ZERO + Duration::from_secs(60);
    // Steps of 50 us, a quarter of the latency: a datagram sent in a step is still in flight
    // at its end.
    let mut now = Instant::ZERO;
    while now <= deadline && !r.h.is_done() {
        now += Duration::from_micros(50);
        let mut forgeries_now = Vec::new();
        r.h.run_until_with(now, &mut |d| {
            if let Some((h, c)) = cdata(d) {
                let f = forgeries.iter().find(|f| f.0 == c.data.block);
                if let Some(&(b, codec, kb)) = f.filter(|f| seen.insert(f.0)) {
                    assert_eq!(c.codec, BlockCodec::Zstd, "block {b} is text");
                    assert!(c.kb > 1 && c.kb < K - 1, "block {b}: K_b {}", c.kb);
                    let kb = if kb == 0 { c.kb } else { kb };
                    forgeries_now.push(forged(&h, &c, codec.unwrap_or(c.codec), kb));
                }
            }
            true
        });
        for data in forgeries_now {
            for rx in 0..2 {
                r.h.deliver(Node::Receiver(rx), Node::Sender.addr(), &data);
            }
        }
    }
    assert_eq!(seen.len(), 4, "every forgery went in");
    r.check_all("forged codings");
    for i in 0..2 {
        let s = r.rx(i);
        assert_eq!(s.decompress_failures, 1, "K_b = 1: decoded, refused, fetched again: {s:?}");
        assert_eq!(s.dropped_codec, 1, "lz4 in a zstd session: dropped on arrival");
        assert_eq!(s.symbols_conflicting, 2, "the K_b = K - 1 and raw forgeries met genuine ones");
        assert_eq!(s.hash_failures, 0, "nothing wrong was handed out to be written");
        assert_eq!(s.dropped_foreign, 0, "every forgery reached a locked session");
    }
}

// ---- The codec in the manifest ----

const SENDER_ADDR: ([u8; 4], u16) = ([198, 18, 0, 1], 7000);

/// A two-block single-file session: its header (`flagged`: [`FLAG_COMPRESSED`]), its
/// announcement and its manifest's bytes, the manifest naming `codec`.
fn session(codec: Option<BlockCodec>, flagged: bool) -> (Header, Announce, Vec<u8>) {
    let size = 2 * u64::from(K) * u64::from(T);
    let m = Manifest::single_file("disk.bin".parse().unwrap(), size, T, K).unwrap();
    let bytes = m.with_compression(codec).unwrap().encode();
    let a = Announce {
        object_size: size,
        symbol_size: T,
        block_symbols: K,
        manifest_len: bytes.len() as u32,
        manifest_hash: *blake3::hash(&bytes).as_bytes(),
        hashes_len: 0,
        hashes_hash: [0; 32],
        rate_bps: 1_000_000,
        grtt_us: 1000,
    };
    let flags = if flagged { FLAG_COMPRESSED } else { 0 };
    (Header { flags, session: 9, node: 1 }, a, bytes)
}

fn send(r: &mut Receiver, h: &Header, p: &Packet<'_>) {
    let mut b = Vec::new();
    wire::emit(h, p, &mut b);
    r.handle_datagram(Instant::ZERO, SENDER_ADDR.into(), &b);
}

/// Announce the session to `r` and deliver its manifest.
fn announce_and_manifest(r: &mut Receiver, h: &Header, a: &Announce, bytes: &[u8]) {
    send(r, h, &Packet::Announce(*a));
    let mut block = bytes.to_vec();
    let layout = a.manifest_layout();
    assert_eq!(layout.block_count(), 1, "a small manifest");
    block.resize(usize::from(layout.source_symbols(0).unwrap()) * usize::from(T), 0);
    for (esi, symbol) in block.chunks(usize::from(T)).enumerate() {
        let data = Data { object: ObjectId::Manifest, block: 0, esi: esi as u32, seq: 0, symbol };
        send(r, h, &Packet::Data(data));
    }
}

/// A payload symbol of `block` travelling as `codec` in a FEC block of `kb` symbols.
fn coded(block: u32, esi: u32, codec: BlockCodec, kb: u16) -> Packet<'static> {
    static SYMBOL: [u8; T as usize] = [7; T as usize];
    let data = Data { object: ObjectId::Payload, block, esi, seq: 0, symbol: &SYMBOL };
    Packet::CData(CData { data, codec, kb })
}

fn decodes(r: &mut Receiver) -> Vec<u32> {
    std::iter::from_fn(|| r.poll_event())
        .filter_map(|e| match e {
            Event::Decode(job) => Some(job.block),
            _ => None,
        })
        .collect()
}

#[test]
fn cdata_of_another_codec_than_the_manifest_names_is_dropped_and_counted() {
    let (h, a, bytes) = session(Some(BlockCodec::Zstd), true);
    let mut r = Receiver::new(ReceiverConfig { node: 5, ..ReceiverConfig::default() });
    send(&mut r, &h, &Packet::Announce(a));
    // Before the manifest says the codec: an lz4 symbol for block 0 (forged) and a zstd one
    // for block 1 are both held by the candidate.
    send(&mut r, &h, &coded(0, 0, BlockCodec::Lz4, 3));
    send(&mut r, &h, &coded(1, 0, BlockCodec::Zstd, 3));
    announce_and_manifest(&mut r, &h, &a, &bytes);
    assert_eq!(r.session_id(), Some(9), "the manifest names the flagged session's codec");
    let m = std::iter::from_fn(|| r.poll_event()).find_map(|e| match e {
        Event::Manifest(m) => Some(m),
        _ => None,
    });
    assert_eq!(m.map(|m| m.compression), Some(Some(BlockCodec::Zstd)));
    // Locked: the held lz4 block is forgotten, the zstd one kept.
    assert_eq!(r.stats().dropped_codec, 1, "{:?}", r.stats());
    // After the lock, lz4 is dropped on arrival; zstd and raw blocks are taken.
    send(&mut r, &h, &coded(0, 1, BlockCodec::Lz4, 3));
    assert_eq!(r.stats().dropped_codec, 2);
    for esi in 0..3 {
        send(&mut r, &h, &coded(0, esi, BlockCodec::Zstd, 3));
    }
    for esi in 1..3 {
        send(&mut r, &h, &coded(1, esi, BlockCodec::Zstd, 3));
    }
    assert_eq!(decodes(&mut r), vec![0, 1], "both blocks complete in zstd");
    assert_eq!(r.stats().symbols_conflicting, 0, "no lz4 symbol was left in block 0");
    let (hr, ar, br) = session(Some(BlockCodec::Lz4), true);
    let mut raw = Receiver::new(ReceiverConfig { node: 5, ..ReceiverConfig::default() });
    announce_and_manifest(&mut raw, &hr, &ar, &br);
    for esi in 0..u32::from(K) {
        send(&mut raw, &hr, &coded(1, esi, BlockCodec::Raw, K));
    }
    assert_eq!(decodes(&mut raw), vec![1], "a raw block is taken in any compressed session");
    assert_eq!(raw.stats().dropped_codec, 0);
}

#[test]
fn a_manifest_that_disagrees_with_the_session_flag_is_refused() {
    for (codec, flagged) in [(None, true), (Some(BlockCodec::Zstd), false)] {
        let (h, a, bytes) = session(codec, flagged);
        let mut r = Receiver::new(ReceiverConfig { node: 5, ..ReceiverConfig::default() });
        announce_and_manifest(&mut r, &h, &a, &bytes);
        assert_eq!(r.session_id(), None, "{codec:?} flagged {flagged}: not locked onto");
        assert_eq!(r.stats().candidates_refused, 1, "{codec:?} flagged {flagged}");
    }
    // Raw names how a block travels, never a session's codec.
    let m = Manifest::single_file("f".parse().unwrap(), 10, T, K).unwrap();
    assert!(m.clone().with_compression(Some(BlockCodec::Raw)).is_err());
    let forged = Manifest { compression: Some(BlockCodec::Raw), ..m };
    let (_, a, _) = session(None, false);
    let bytes = forged.encode();
    let a = Announce {
        object_size: 10,
        manifest_len: bytes.len() as u32,
        manifest_hash: *blake3::hash(&bytes).as_bytes(),
        ..a
    };
    assert!(Manifest::decode(&bytes, &a).is_err(), "raw as the session codec is refused");
    // The codec is in the bytes the announcement's hash (and a signature) covers.
    let zstd = session(Some(BlockCodec::Zstd), true).1.manifest_hash;
    let lz4 = session(Some(BlockCodec::Lz4), true).1.manifest_hash;
    let none = session(None, false).1.manifest_hash;
    assert!(zstd != lz4 && zstd != none && lz4 != none);
}

#[test]
fn the_sender_compresses_only_with_the_codec_its_manifest_names() {
    let bytes = half_text(2, 4);
    let zstd = Object::new(bytes.clone(), T, K).unwrap();
    let zstd = zstd.with_compression(Some(BlockCodec::Zstd)).unwrap();
    let cfg = SenderConfig::default;
    let mut s = zstd.sender(cfg(), Instant::ZERO).unwrap();
    assert!(s.set_compression(Codec::Lz4).is_err());
    // The level is the sender's business: any zstd level fits a zstd manifest.
    assert!(s.set_compression(Codec::Zstd { level: 9 }).is_ok());
    let plain = Object::new(bytes, T, K).unwrap();
    let mut s = plain.sender(cfg(), Instant::ZERO).unwrap();
    assert!(s.set_compression(Codec::Zstd { level: 3 }).is_err());
}

// ---- Real binaries in a private network namespace ----

const NS_PUSHES: &str = r#"
G=239.255.45.1:7400
recv() { # $1: name, $2: output, $3...: more flags
    local n=$1 out=$2; shift 2
    "$RECV" --group $G --interface 127.0.0.1 --output "$out" --once --json --timeout 60s \
        --ready-file "$n.ready" "$@" > "$n.json" 2> "$n.log" &
}
wait_ready() { for _ in $(seq 100); do [ -e "$1.ready" ] && break; sleep 0.1; done; }
recv f1 out1; p1=$!; recv f2 out2 --drop-rate 0.02 --drop-seed 3; p2=$!
wait_ready f1; wait_ready f2
"$SEND" file.bin --group $G --interface 127.0.0.1 --rate 300M --receivers 2 --timeout 60s \
    --compress zstd --json > fsend.json 2> fsend.log; echo $? > fsend.rc
wait $p1; echo $? > f1.rc; wait $p2; echo $? > f2.rc
recv t1 tree1; p1=$!; recv t2 tree2 --drop-rate 0.02 --drop-seed 4; p2=$!
wait_ready t1; wait_ready t2
"$SEND" tree --group $G --interface 127.0.0.1 --rate 300M --receivers 2 --timeout 60s \
    --compress lz4 --json > tsend.json 2> tsend.log; echo $? > tsend.rc
wait $p1; echo $? > t1.rc; wait $p2; echo $? > t2.rc
"#;

/// `len` bytes of words from [`WORDS`], every fourth MiB random instead.
fn compressible(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        if (out.len() >> 20) % 4 == 3 {
            out.push(rng.gen());
        } else {
            out.extend_from_slice(WORDS[rng.gen_range(0..WORDS.len())].as_bytes());
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

fn json(path: &std::path::Path) -> serde_json::Value {
    let text = common::read_text(path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

/// Every regular file under `root`, relative path and contents, sorted.
fn files(root: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push((p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn compressed_file_and_tree_pushes_with_real_binaries() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let size = 16 << 20;
    let file = compressible(size, 11);
    std::fs::write(d.join("file.bin"), &file).unwrap();
    std::fs::create_dir_all(d.join("tree/docs/deep")).unwrap();
    std::fs::write(d.join("tree/docs/a.txt"), compressible(3 << 20, 12)).unwrap();
    std::fs::write(d.join("tree/docs/deep/b.txt"), compressible(100_000, 13)).unwrap();
    std::fs::write(d.join("tree/small.txt"), b"tiny").unwrap();
    let noise: Vec<u8> =
        (0..500_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(d.join("tree/noise.bin"), &noise).unwrap();
    for o in ["out1", "out2"] {
        std::fs::create_dir(d.join(o)).unwrap();
    }
    common::in_namespace(d, 150, NS_PUSHES);
    let log = |f: &str| common::read_text(&d.join(f));
    for rc in ["fsend", "f1", "f2", "tsend", "t1", "t2"] {
        assert_eq!(log(&format!("{rc}.rc")).trim(), "0", "{rc}:\n{}", log(&format!("{rc}.log")));
    }
    // The file: identical at both receivers, well under its size on the wire.
    for o in ["out1", "out2"] {
        assert!(std::fs::read(d.join(o).join("file.bin")).unwrap() == file, "{o}/file.bin differs");
    }
    let sent = json(&d.join("fsend.json"));
    let c = &sent["compression"];
    assert_eq!(c["codec"], "zstd:3");
    assert_eq!(c["payload_bytes"].as_u64(), Some(size as u64));
    let wire = sent["stats"]["bytes_sent"].as_u64().unwrap();
    println!(
        "file: {size} B payload, {} B compressed, {wire} B on the wire",
        c["wire_payload_bytes"]
    );
    // A quarter is random (raw); the text shrinks several times.
    assert!(wire < size as u64 / 2, "{wire} bytes on the wire for {size}");
    assert!(log("fsend.log").contains("compressed (zstd:3): 16.0 MiB of payload as "));
    // The tree: every file identical.
    let want = files(&d.join("tree"));
    for o in ["tree1", "tree2"] {
        assert!(files(&d.join(o)) == want, "{o} differs from the source tree");
    }
    let sent = json(&d.join("tsend.json"));
    assert_eq!(sent["compression"]["codec"], "lz4");
    let total: usize = want.iter().map(|(_, b)| b.len()).sum();
    let wire = sent["stats"]["bytes_sent"].as_u64().unwrap();
    println!("tree: {total} B payload, {wire} B on the wire");
    assert!(wire < total as u64 * 3 / 4, "{wire} bytes on the wire for {total}");
}
