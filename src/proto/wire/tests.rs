//! Wire format tests: round trips, every truncation of every packet type, corruption and random
//! bytes (never a panic, never a false accept).

use super::*;
use proptest::prelude::*;

const HDR: Header = Header { flags: 0, session: 0xdead_beef, node: 42 };

fn samples() -> Vec<Packet<'static>> {
    static SYMBOL: [u8; 64] = [7u8; 64];
    let needs = NeedList {
        seq: 0x0102_0304,
        loss_ppm: 12_345,
        needs: vec![
            Need { object: ObjectId::Manifest, block: 0, count: 3 },
            Need { object: ObjectId::Payload, block: u32::MAX, count: u16::MAX },
        ],
    };
    vec![
        Packet::Announce(Announce {
            object_size: 1 << 33,
            symbol_size: 1400,
            block_symbols: 748,
            manifest_len: 4096,
            manifest_hash: [9; 32],
            hashes_len: ((1u64 << 33).div_ceil(1400 * 748) * 32) as u32,
            hashes_hash: [3; 32],
            rate_bps: 1_000_000_000,
            grtt_us: 1234,
        }),
        Packet::Data(Data {
            object: ObjectId::Payload,
            block: 77,
            esi: MAX_ESI,
            seq: u32::MAX,
            symbol: &SYMBOL,
        }),
        Packet::Nak(needs.clone()),
        Packet::RepairAdvert(needs),
        Packet::Probe(Probe { send_time_us: 99, grtt_us: 1000, group_size: 1000, echo_share: 655 }),
        Packet::Echo(Echo { probe_time_us: 99, delay_us: 5, loss_ppm: 10_000 }),
        Packet::Flush(Flush { seq: 3 }),
        Packet::Report(Report {
            status: ReportStatus::Complete,
            bytes: 12345,
            object_hash: [1; 32],
            naks_sent: 4,
            naks_suppressed: 5,
            elapsed_ms: 6,
            reason: String::new(),
        }),
        Packet::ReportAck(ReportAck { nodes: vec![1, 2, 3] }),
        Packet::Squelch(Squelch {
            reason: SquelchReason::Straggler,
            object: ObjectId::Payload,
            block: 0,
            nodes: vec![7],
        }),
        Packet::Squelch(Squelch {
            reason: SquelchReason::Unavailable,
            object: ObjectId::Payload,
            block: 5,
            nodes: vec![],
        }),
    ]
}

fn encode(p: &Packet<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    emit(&HDR, p, &mut buf);
    buf
}

/// Re-seal a datagram whose body was edited so that only the body check can reject it.
fn reseal(mut body_and_header: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&body_and_header);
    body_and_header.extend_from_slice(&crc.to_be_bytes());
    body_and_header
}

#[test]
fn round_trip_every_type() {
    for p in samples() {
        let buf = encode(&p);
        let (h, q) = parse(&buf).unwrap();
        assert_eq!(h, HDR);
        assert_eq!(q, p);
    }
}

#[test]
fn data_overhead_fits_mtu_at_default_symbol_size() {
    assert_eq!(DATA_OVERHEAD, 32);
    const { assert!(1400 + DATA_OVERHEAD + 28 <= 1500, "IPv4 + UDP headers are 28 bytes") };
}

#[test]
fn every_truncation_of_every_type_is_rejected() {
    for p in samples() {
        let buf = encode(&p);
        for cut in 0..buf.len() {
            // Plain truncation: the checksum no longer matches (or the datagram is too short).
            assert!(parse(&buf[..cut]).is_err(), "{:?} cut at {cut}", p.kind());
            // Truncated body with a valid checksum: the body parser must catch it.
            if cut >= HEADER_LEN {
                let resealed = reseal(buf[..cut.min(buf.len() - TRAILER_LEN)].to_vec());
                if resealed.len() < buf.len() {
                    match (parse(&resealed), &p) {
                        // A data symbol is the rest of the datagram: a shorter one still parses,
                        // and the receiver refuses it because it is not `T` bytes long.
                        (Ok((_, Packet::Data(d))), Packet::Data(orig)) => {
                            assert!(d.symbol.len() < orig.symbol.len())
                        }
                        (r, _) => assert!(r.is_err(), "{:?} resealed cut at {cut}", p.kind()),
                    }
                }
            }
        }
    }
}

#[test]
fn trailing_bytes_are_rejected_except_for_data() {
    for p in samples() {
        let buf = encode(&p);
        let mut longer = buf[..buf.len() - TRAILER_LEN].to_vec();
        longer.push(0);
        let resealed = reseal(longer);
        match p {
            // A data symbol's length is the rest of the datagram.
            Packet::Data(_) => assert!(parse(&resealed).is_ok()),
            _ => assert!(parse(&resealed).is_err(), "{:?}", p.kind()),
        }
    }
}

#[test]
fn every_single_bit_flip_is_caught() {
    for p in samples() {
        let buf = encode(&p);
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(parse(&b).is_err(), "{:?} bit {i}", p.kind());
        }
    }
}

#[test]
fn header_checks() {
    let buf = encode(&samples()[0]);
    let mut bad = buf.clone();
    bad[0] = b'X';
    assert_eq!(parse(&bad), Err(WireError::BadMagic));
    let mut bad = buf[..buf.len() - 4].to_vec();
    bad[4] = 2;
    assert_eq!(parse(&reseal(bad)), Err(WireError::BadVersion(2)));
    let mut bad = buf[..buf.len() - 4].to_vec();
    bad[5] = 200;
    assert_eq!(parse(&reseal(bad)), Err(WireError::UnknownType(200)));
    assert_eq!(parse(&buf[..HEADER_LEN + TRAILER_LEN - 1]), Err(WireError::Truncated));
}

#[test]
fn field_ranges_are_enforced() {
    // Need count 0 and MAX_NEEDS + 1 (boundary pair with MAX_NEEDS, which must pass).
    let need = Need { object: ObjectId::Payload, block: 1, count: 1 };
    let ok = NeedList { seq: 1, loss_ppm: 0, needs: vec![need; MAX_NEEDS] };
    assert!(parse(&encode(&Packet::Nak(ok))).is_ok());
    let over = NeedList { seq: 1, loss_ppm: 0, needs: vec![need; MAX_NEEDS + 1] };
    assert_eq!(parse(&encode(&Packet::Nak(over))), Err(WireError::BadField("need count")));
    let zero = NeedList { seq: 1, loss_ppm: 0, needs: vec![Need { count: 0, ..need }] };
    assert!(parse(&encode(&Packet::Nak(zero))).is_err());
    // Symbol length boundaries.
    let small = [0u8; crate::proto::layout::MIN_SYMBOL_SIZE as usize];
    let d = Data { object: ObjectId::Payload, block: 0, esi: 0, seq: 0, symbol: &small };
    assert!(parse(&encode(&Packet::Data(d))).is_ok());
    let d = Data { symbol: &small[1..], ..d };
    assert!(parse(&encode(&Packet::Data(d))).is_err());
    // Unknown object id.
    let mut b = encode(&Packet::Data(Data { symbol: &small, ..d }));
    b.truncate(b.len() - 4);
    b[HEADER_LEN] = ObjectId::COUNT as u8;
    assert_eq!(parse(&reseal(b)), Err(WireError::BadField("object")));
    // Announce with an impossible layout or manifest length.
    for (t, ml) in [(8u16, 10u32), (1400, 0), (1400, MAX_MANIFEST_LEN + 1)] {
        let a = Announce {
            object_size: 1,
            symbol_size: t,
            block_symbols: 10,
            manifest_len: ml,
            manifest_hash: [0; 32],
            hashes_len: 0,
            hashes_hash: [0; 32],
            rate_bps: 1,
            grtt_us: 1,
        };
        assert!(parse(&encode(&Packet::Announce(a))).is_err());
    }
    // Hash list: unknown means no length; known means exactly 32 bytes per block; the block
    // count is bounded by MAX_HASH_LIST_LEN.
    let a = Announce {
        object_size: 10 * 1400,
        symbol_size: 1400,
        block_symbols: 1,
        manifest_len: 100,
        manifest_hash: [1; 32],
        hashes_len: 0,
        hashes_hash: [0; 32],
        rate_bps: 1,
        grtt_us: 1,
    };
    let known = Announce { hashes_len: 320, hashes_hash: [2; 32], ..a };
    for ok in [a, known] {
        assert_eq!(parse(&encode(&Packet::Announce(ok))).unwrap().1, Packet::Announce(ok));
    }
    for bad in [
        Announce { hashes_len: 320, ..a },
        Announce { hashes_len: 319, ..known },
        Announce { hashes_len: 352, ..known },
        Announce { hashes_len: 0, ..known },
    ] {
        assert_eq!(
            parse(&encode(&Packet::Announce(bad))),
            Err(WireError::BadField("hash list length"))
        );
    }
    let max_blocks = u64::from(MAX_HASH_LIST_LEN) / BLOCK_HASH_LEN as u64;
    let at_max = Announce { object_size: max_blocks * 1400, ..a };
    assert!(parse(&encode(&Packet::Announce(at_max))).is_ok());
    let over = Announce { object_size: max_blocks * 1400 + 1, ..a };
    assert_eq!(
        parse(&encode(&Packet::Announce(over))),
        Err(WireError::BadField("too many blocks"))
    );
    // Ack list bounds.
    let acks = ReportAck { nodes: vec![1; MAX_ACK_NODES + 1] };
    assert!(parse(&encode(&Packet::ReportAck(acks))).is_err());
    // Squelch node lists: a straggler squelch names at least one node, none names too many.
    let q = Squelch {
        reason: SquelchReason::Straggler,
        object: ObjectId::Payload,
        block: 0,
        nodes: vec![1; MAX_ACK_NODES],
    };
    assert!(parse(&encode(&Packet::Squelch(q.clone()))).is_ok());
    let over = Squelch { nodes: vec![1; MAX_ACK_NODES + 1], ..q.clone() };
    assert!(parse(&encode(&Packet::Squelch(over))).is_err());
    let empty = Squelch { nodes: vec![], ..q.clone() };
    assert!(parse(&encode(&Packet::Squelch(empty))).is_err());
    let gone = Squelch { reason: SquelchReason::Unavailable, nodes: vec![], ..q };
    assert!(parse(&encode(&Packet::Squelch(gone))).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let _ = parse(&data);
    }

    #[test]
    fn random_bodies_with_valid_envelope_never_panic(
        kind in 0u8..12,
        body in proptest::collection::vec(any::<u8>(), 0..1600),
    ) {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[VERSION, kind, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]);
        b.extend_from_slice(&body);
        let sealed = reseal(b);
        if let Ok((_, p)) = parse(&sealed) {
            // Anything accepted must re-encode to the same bytes.
            let again = encode(&p);
            prop_assert_eq!(
                &again[HEADER_LEN..again.len() - TRAILER_LEN],
                &sealed[HEADER_LEN..sealed.len() - TRAILER_LEN]
            );
        }
    }

    #[test]
    fn need_lists_round_trip(needs in proptest::collection::vec((0..ObjectId::COUNT, any::<u32>(), 1u16..), 1..=MAX_NEEDS)) {
        let needs = needs.into_iter().map(|(o, block, count)| Need {
            object: ObjectId::ALL[o],
            block,
            count,
        }).collect();
        let p = Packet::Nak(NeedList { seq: 9, loss_ppm: 1, needs });
        let buf = encode(&p);
        prop_assert_eq!(parse(&buf).unwrap().1, p);
    }
}
