//! Wire benchmarks: emitting and parsing a full-size data datagram and a NAK.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mcast::proto::wire::{self, Data, Header, Need, NeedList, ObjectId, Packet, MAX_NEEDS};

fn bench(c: &mut Criterion) {
    let header = Header { flags: 0, session: 7, node: 9 };
    let symbol = vec![0xa5u8; 1400];
    let data = Packet::Data(Data {
        object: ObjectId::Payload,
        block: 12,
        esi: 345,
        seq: 99,
        symbol: &symbol,
    });
    let mut buf = Vec::with_capacity(2048);
    wire::emit(&header, &data, &mut buf);
    let datagram = buf.clone();
    let mut g = c.benchmark_group("wire_data_1400");
    g.throughput(Throughput::Bytes(datagram.len() as u64));
    g.bench_function("emit", |b| b.iter(|| wire::emit(&header, &data, &mut buf)));
    g.bench_function("parse", |b| b.iter(|| wire::parse(&datagram).unwrap()));
    g.finish();

    let needs = (0..MAX_NEEDS as u32)
        .map(|block| Need { object: ObjectId::Payload, block, count: 3 })
        .collect();
    let nak = Packet::Nak(NeedList { seq: 1, loss_ppm: 0, needs });
    wire::emit(&header, &nak, &mut buf);
    let nak_bytes = buf.clone();
    let mut g = c.benchmark_group("wire_nak_full");
    g.bench_function("emit", |b| b.iter(|| wire::emit(&header, &nak, &mut buf)));
    g.bench_function("parse", |b| b.iter(|| wire::parse(&nak_bytes).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
