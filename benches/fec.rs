//! FEC benchmarks for a 1 MiB block (K = 749, T = 1400): preparing a block for sending (RaptorQ
//! encoder construction), one repair symbol, and recovering a block against the number `e` of
//! lost source symbols: by copy (e = 0), through [`BlockSymbols::decode`] (the fast path for a
//! few losses, raptorq's decoder past that), and through raptorq's decoder alone on the same
//! symbols, for comparison.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use mcast::proto::fec::{BlockEncoder, BlockSymbols};
use mcast::proto::layout::Layout;
use raptorq::{EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder};

const T: u16 = 1400;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
}

/// `e` source symbols lost, spread over the block, and replaced by the first `e` repair symbols
/// (what proactive repair sends): the collector and the same symbols as raptorq packets.
fn lossy(enc: &BlockEncoder, e: u32) -> (BlockSymbols, Vec<EncodingPacket>) {
    let k = u32::from(enc.source_symbols());
    let lost: Vec<u32> = (0..e).map(|j| j * k / e.max(1) + 3).collect();
    let mut s = BlockSymbols::new(T, enc.source_symbols()).unwrap();
    let mut packets = Vec::new();
    for esi in (0..k).filter(|esi| !lost.contains(esi)) {
        let sym = enc.source_symbol(esi).unwrap();
        s.insert(esi, sym).unwrap();
        packets.push(EncodingPacket::new(PayloadId::new(0, esi), sym.to_vec()));
    }
    let mut out = Vec::new();
    for esi in k..k + e {
        enc.repair_symbol(esi, &mut out).unwrap();
        s.insert(esi, &out).unwrap();
        packets.push(EncodingPacket::new(PayloadId::new(0, esi), out.clone()));
    }
    assert!(s.ready());
    (s, packets)
}

fn bench(c: &mut Criterion) {
    let k = Layout::block_symbols_for(T, 1 << 20);
    let len = usize::from(k) * usize::from(T);
    let block = data(len);
    let mut g = c.benchmark_group("fec_1MiB_block");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("encode_prepare", |b| {
        b.iter(|| BlockEncoder::new(T, k, block.clone()).unwrap())
    });
    let enc = BlockEncoder::new(T, k, block.clone()).unwrap();
    let oti = ObjectTransmissionInformation::new(len as u64, T, 1, 1, 1);
    for e in [0u32, 1, 8, 32, 64] {
        let (s, packets) = lossy(&enc, e);
        // Through the public API: copy, fast path (e <= K / 20 = 37), or raptorq's decoder (64).
        g.bench_with_input(BenchmarkId::new("decode_lost", e), &s, |b, s| {
            b.iter_batched(|| s.clone(), |s| s.decode().unwrap(), BatchSize::LargeInput)
        });
        if e > 0 {
            g.bench_with_input(BenchmarkId::new("raptorq_decode_lost", e), &packets, |b, p| {
                b.iter_batched(
                    || p.clone(),
                    |p| SourceBlockDecoder::new(0, &oti, len as u64).decode(p).unwrap(),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    g.finish();
    // Block size against cost per byte at 1 % loss (e = K / 100 lost per block): the fast
    // path's work per block is about e * K * T, so per byte it grows with K.
    let mut g = c.benchmark_group("fec_block_size_1pct_loss");
    g.sample_size(10);
    for kib in [256usize, 512, 1024, 2048] {
        let k = Layout::block_symbols_for(T, kib as u64 * 1024);
        let len = usize::from(k) * usize::from(T);
        g.throughput(Throughput::Bytes(len as u64));
        let bytes = data(len);
        g.bench_with_input(BenchmarkId::new("encode_prepare_kib", kib), &bytes, |b, bytes| {
            b.iter(|| BlockEncoder::new(T, k, bytes.clone()).unwrap())
        });
        let enc = BlockEncoder::new(T, k, bytes).unwrap();
        let (s, _) = lossy(&enc, (u32::from(k) + 50) / 100);
        g.bench_with_input(BenchmarkId::new("decode_kib", kib), &s, |b, s| {
            b.iter_batched(|| s.clone(), |s| s.decode().unwrap(), BatchSize::LargeInput)
        });
    }
    g.finish();
    let mut g = c.benchmark_group("fec_symbol");
    g.throughput(Throughput::Bytes(u64::from(T)));
    let mut out = Vec::new();
    let mut esi = u32::from(k);
    g.bench_function("repair_symbol", |b| {
        b.iter(|| {
            esi += 1;
            enc.repair_symbol(esi, &mut out).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
