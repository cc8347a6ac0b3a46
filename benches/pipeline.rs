//! End-to-end pipeline benchmark, one 1 MiB block at a time, without sockets: encode (RaptorQ
//! encoder construction, as the sender's worker does) → packetize (every source symbol, plus
//! repair symbols for the lost ones, emitted as wire datagrams into GSO-sized batches) → parse
//! (checked wire parsing, as the receiver does for each datagram) → decode (the receiver's
//! decode job: a copy for a block that lost nothing, a RaptorQ decode otherwise, then BLAKE3)
//! → write (positioned write into the receiver's temp file).
//!
//! Two cases: no loss (the systematic fast path) and 1 % loss (every block decoded). Throughput
//! is reported in payload bytes, so the result reads as the single-core ceiling of the whole
//! pipeline.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mcast::net::batch::MAX_GSO_BYTES;
use mcast::proto::fec::{BlockEncoder, BlockSymbols};
use mcast::proto::layout::Layout;
use mcast::proto::receiver::DecodeJob;
use mcast::proto::wire::{self, Data, Header, ObjectId, Packet};
use mcast::storage::FileSink;

const T: u16 = 1400;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
}

/// One block through the whole pipeline; `lose(esi)` says which source symbols are lost.
fn one_block(
    block: &[u8],
    k: u16,
    lose: &dyn Fn(u32) -> bool,
    batches: &mut Vec<Vec<u8>>,
    sink: &mut FileSink,
) {
    let header = Header { flags: 0, session: 7, node: 1 };
    // Encode.
    let enc = BlockEncoder::new(T, k, block.to_vec()).expect("encoder");
    // Packetize into GSO-sized batches (what the sender's driver hands to one sendmsg).
    let mut dgram = Vec::with_capacity(usize::from(T) + 64);
    let mut scratch = Vec::new();
    let mut batch = Vec::with_capacity(MAX_GSO_BYTES);
    batches.clear();
    let lost = (0..u32::from(k)).filter(|e| lose(*e)).count() as u32;
    let repairs = if lost > 0 { lost + 2 } else { 0 };
    for (seq, esi) in (0..u32::from(k)).chain(u32::from(k)..u32::from(k) + repairs).enumerate() {
        let symbol = match enc.source_symbol(esi) {
            Some(s) if esi < u32::from(k) => s,
            _ => {
                enc.repair_symbol(esi, &mut scratch).expect("repair");
                &scratch[..]
            }
        };
        let d = Data { object: ObjectId::Payload, block: 0, esi, seq: seq as u32, symbol };
        wire::emit(&header, &Packet::Data(d), &mut dgram);
        if batch.len() + dgram.len() > MAX_GSO_BYTES {
            batches.push(std::mem::replace(&mut batch, Vec::with_capacity(MAX_GSO_BYTES)));
        }
        batch.extend_from_slice(&dgram);
    }
    batches.push(batch);
    // Parse every datagram (the network drops the lost ones) and collect the symbols.
    let stride = dgram.len();
    let mut symbols = BlockSymbols::new(T, k).expect("symbols");
    for b in batches.iter() {
        for d in b.chunks(stride) {
            let Ok((_, Packet::Data(d))) = wire::parse(d) else { panic!("parse") };
            if d.esi < u32::from(k) && lose(d.esi) {
                continue;
            }
            if !symbols.ready() || d.esi < u32::from(k) {
                symbols.insert(d.esi, d.symbol).expect("insert");
            }
        }
    }
    // Decode (or copy) and hash, as the receiver's worker does.
    let job = DecodeJob { object: ObjectId::Payload, block: 0, symbols, len: block.len() };
    let done = job.run();
    let (out, _hash) = done.result.expect("decodes");
    // Write.
    sink.write_at(0, &out).expect("write");
}

fn bench(c: &mut Criterion) {
    let k = Layout::block_symbols_for(T, 1 << 20);
    let len = usize::from(k) * usize::from(T);
    let block = data(len);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = FileSink::create(dir.path(), &"bench.bin".parse().expect("name"), len as u64)
        .expect("sink");
    let mut batches = Vec::new();
    let mut g = c.benchmark_group("pipeline_1MiB_block");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(len as u64));
    let cases: [(&str, &dyn Fn(u32) -> bool); 2] =
        [("no_loss", &|_| false), ("loss_1pct", &|esi: u32| esi % 100 == 17)];
    for (name, lose) in cases {
        g.bench_with_input(
            BenchmarkId::new("encode_packetize_parse_decode_write", name),
            &(),
            |b, _| b.iter(|| one_block(&block, k, lose, &mut batches, &mut sink)),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
