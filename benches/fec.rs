//! FEC benchmarks: preparing a block for sending (RaptorQ encoder construction), generating one
//! repair symbol, and recovering a block by copy (no loss) and by decoding (5 % loss).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mcast::proto::fec::{BlockEncoder, BlockSymbols};
use mcast::proto::layout::Layout;

const T: u16 = 1400;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
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
    g.bench_function("systematic_copy", |b| {
        b.iter(|| {
            let mut s = BlockSymbols::new(T, k).unwrap();
            for esi in 0..u32::from(k) {
                s.insert(esi, enc.source_symbol(esi).unwrap()).unwrap();
            }
            s.decode().unwrap()
        })
    });
    for loss_pct in [5u32, 20] {
        // Every (100/loss)-th source symbol lost, replaced by repair symbols (plus one spare).
        let mut s = BlockSymbols::new(T, k).unwrap();
        let step = 100 / loss_pct;
        let mut lost = 0;
        for esi in 0..u32::from(k) {
            if esi % step == 0 {
                lost += 1;
            } else {
                s.insert(esi, enc.source_symbol(esi).unwrap()).unwrap();
            }
        }
        let mut out = Vec::new();
        for esi in u32::from(k)..u32::from(k) + lost {
            enc.repair_symbol(esi, &mut out).unwrap();
            s.insert(esi, &out).unwrap();
        }
        g.bench_with_input(BenchmarkId::new("decode_loss_pct", loss_pct), &s, |b, s| {
            b.iter(|| s.clone().decode().unwrap())
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
