//! End-to-end pipeline benchmark, one 1 MiB block at a time, without sockets: encode (the
//! sender asks for the block and [`serve_sender_events`] prepares it, as the sender's worker
//! does) → packetize (the sender itself emits every datagram of the pass, its source symbols
//! and the proactive repair it chooses, into GSO-sized batches) → parse (checked wire parsing,
//! as the receiver does for each datagram; the network drops the lost source symbols) → decode
//! (the receiver's decode job: a copy for a block that lost nothing, a RaptorQ decode otherwise,
//! then BLAKE3) → write (positioned write into the receiver's temp file).
//!
//! Two cases: no loss and no repair (the systematic fast path), and 1 % loss with 2 % fixed
//! proactive repair (every block decoded). Throughput is reported in payload bytes, so the
//! result reads as the single-core ceiling of the whole pipeline.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mcast::net::batch::MAX_GSO_BYTES;
use mcast::proto::fec::BlockSymbols;
use mcast::proto::layout::Layout;
use mcast::proto::receiver::DecodeJob;
use mcast::proto::sender::SenderConfig;
use mcast::proto::time::{Duration, Instant};
use mcast::proto::wire::{self, ObjectId, Packet};
use mcast::sim::{serve_sender_events, MemSource, Object, SenderLog};
use mcast::storage::FileSink;
use std::sync::Arc;

const T: u16 = 1400;

/// Which source symbols (by ESI) the network loses.
type Loss = dyn Fn(u32) -> bool;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
}

/// Datagrams in one contiguous buffer, as the driver hands them to one `sendmsg`.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lens: Vec<usize>,
}

/// A one-block object and the sender settings of a case.
struct Case {
    source: MemSource,
    cfg: SenderConfig,
    k: u16,
}

impl Case {
    fn new(block: Vec<u8>, k: u16, fec_overhead: f64) -> Self {
        let object = Arc::new(Object::new(block, T, k).expect("one-block object"));
        let cfg = SenderConfig {
            fec_overhead,
            auto_parity: false,
            // Pacing only moves virtual time here: let each round fill a batch.
            rate_bps: 100_000_000_000,
            burst_bytes: MAX_GSO_BYTES,
            read_ahead: 0,
            ..SenderConfig::default()
        };
        Case { source: MemSource::new(object), cfg, k }
    }
}

/// Parse a batch, collect block 0's symbols and empty the batch; `true` if the sender's flush
/// (the end of the pass) was in it.
fn receive(batch: &mut Batch, k: u16, lose: &Loss, symbols: &mut BlockSymbols) -> bool {
    let mut flushed = false;
    let mut at = 0;
    for len in &batch.lens {
        let d = &batch.bytes[at..at + len];
        at += len;
        match wire::parse(d) {
            Ok((_, Packet::Data(d))) if d.object == ObjectId::Payload => {
                let source = d.esi < u32::from(k);
                if source && lose(d.esi) {
                    continue;
                }
                if !symbols.ready() || source {
                    symbols.insert(d.esi, d.symbol).expect("insert");
                }
            }
            Ok((_, Packet::Flush(_))) => flushed = true,
            Ok(_) => {}
            Err(e) => panic!("parse: {e}"),
        }
    }
    batch.bytes.clear();
    batch.lens.clear();
    flushed
}

/// One block through the whole pipeline; `lose(esi)` says which source symbols are lost.
fn one_block(case: &Case, lose: &Loss, batch: &mut Batch, sink: &mut FileSink) {
    let object = case.source.object();
    let mut sender = object.sender(case.cfg.clone(), Instant::ZERO).expect("sender");
    let mut log = SenderLog::default();
    let mut symbols = BlockSymbols::new(T, case.k).expect("symbols");
    let mut dgram = Vec::with_capacity(usize::from(T) + 64);
    let mut now = Instant::ZERO;
    let mut flushed = false;
    // A pass of one block takes a few dozen rounds; the bound only guards against a hang.
    for _ in 0..10_000 {
        sender.handle_timeout(now);
        // Encode: the block is read and prepared when the sender asks for it.
        serve_sender_events(&mut sender, now, &case.source, &mut log);
        // Packetize everything the pacer lets out now into GSO-sized batches, and parse each
        // batch as it is complete.
        while sender.poll_transmit(now, &mut dgram).is_some() {
            if batch.bytes.len() + dgram.len() > MAX_GSO_BYTES {
                flushed |= receive(batch, case.k, lose, &mut symbols);
            }
            batch.bytes.extend_from_slice(&dgram);
            batch.lens.push(dgram.len());
        }
        flushed |= receive(batch, case.k, lose, &mut symbols);
        if flushed && symbols.ready() {
            break;
        }
        now = sender.poll_timeout().unwrap_or(now).max(now + Duration::from_micros(1));
    }
    assert_eq!(log.blocks_served, 1, "the sender asked for its block once");
    // Decode (or copy) and hash, as the receiver's worker does.
    let len = object.bytes().len();
    let job = DecodeJob { object: ObjectId::Payload, block: 0, symbols, len };
    let (out, hash) = job.run().result.expect("decodes");
    assert_eq!(Some(hash), object.block_hash(0), "the block decoded right");
    // Write.
    sink.write_at(0, &out).expect("write");
}

fn bench(c: &mut Criterion) {
    let k = Layout::block_symbols_for(T, 1 << 20);
    let len = usize::from(k) * usize::from(T);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = FileSink::create(dir.path(), &"bench.bin".parse().expect("name"), len as u64)
        .expect("sink");
    let mut batch = Batch::default();
    let mut g = c.benchmark_group("pipeline_1MiB_block");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(len as u64));
    let cases: [(&str, f64, &Loss); 2] =
        [("no_loss", 0.0, &|_| false), ("loss_1pct", 0.02, &|esi: u32| esi % 100 == 17)];
    for (name, overhead, lose) in cases {
        let case = Case::new(data(len), k, overhead);
        g.bench_with_input(
            BenchmarkId::new("encode_packetize_parse_decode_write", name),
            &(),
            |b, _| b.iter(|| one_block(&case, lose, &mut batch, &mut sink)),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
