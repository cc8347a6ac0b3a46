//! Roles in-process: `net::send::run` and `net::recv::run` as tokio tasks of this test process,
//! over real sockets in a private user + network namespace, with no binary spawned.
//!
//! A threaded test process cannot `unshare` itself, so each test re-executes this test binary
//! under `unshare -rn` (selecting just itself, marked by an environment variable); the child
//! sets up the namespace's links with `ip` and runs the roles on one tokio runtime. Outcomes are
//! checked (statuses, reports, bytes), never timings. Where user namespaces are unavailable the
//! tests print "SKIPPED" and pass, unless `MCAST_REQUIRE_NETNS=1`.

mod common;

use common::{in_private_namespace, ip};
use mcast::net::recv::{self, RecvConfig, RecvReport, RecvStatus};
use mcast::net::send::{self, SendConfig, SendReport, SendStatus};
use mcast::net::SocketOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Links for `family` in this (private) namespace; returns the sender's and the receivers'
/// interfaces.
fn set_up_links(family: u8) -> (&'static str, &'static str) {
    ip("link set lo up");
    if family == 4 {
        ip("link set lo multicast on");
        ip("route add 239.0.0.0/8 dev lo");
        return ("lo", "127.0.0.1");
    }
    let dad = Command::new("sysctl")
        .args(["-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
        .status()
        .expect("run sysctl");
    assert!(dad.success());
    ip("link add drv6s type veth peer name drv6r");
    ip("link set drv6s up");
    ip("link set drv6r up");
    ip("-6 addr add 2001:2::11/64 dev drv6s nodad");
    ip("-6 addr add 2001:2::12/64 dev drv6r nodad");
    ("drv6s", "2001:2::12")
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn sender_config(src: &Path, group: SocketAddr, rate: u64) -> SendConfig {
    let mut cfg = SendConfig::new(src, group);
    cfg.sender.rate_bps = rate;
    cfg.sender.linger = Duration::from_millis(500);
    cfg.timeout = Some(Duration::from_secs(60));
    cfg
}

fn receiver_config(group: SocketAddr, out: &Path, drop_seed: u64) -> RecvConfig {
    let mut cfg = RecvConfig::new(group, out);
    cfg.drop_rate = 0.03;
    cfg.drop_seed = drop_seed;
    cfg.timeout = Some(Duration::from_secs(60));
    cfg
}

/// One sender task and `n` receiver tasks; the reports.
async fn push(
    send_cfg: SendConfig,
    recv_cfgs: Vec<RecvConfig>,
    send_if: &str,
    recv_if: &str,
    shutdown: CancellationToken,
) -> (SendReport, Vec<RecvReport>) {
    let mut receivers = Vec::new();
    for cfg in recv_cfgs {
        // Joined before the sender starts: every receiver sees the push from the start.
        let opts = SocketOptions { recv_buffer: cfg.recv_buffer, ..SocketOptions::default() };
        let mut sock = recv::open_socket(cfg.group, recv_if, &opts).expect("receiver socket");
        let token = shutdown.clone();
        receivers.push(tokio::spawn(async move { recv::run(&mut sock, &cfg, &token).await }));
    }
    let mut sock = send::open_socket(send_cfg.group, send_if, &SocketOptions::default())
        .expect("sender socket");
    let token = shutdown.clone();
    let sender = tokio::spawn(async move { send::run(&mut sock, &send_cfg, &token).await });
    let send_report = sender.await.expect("sender task").expect("sender");
    let mut recv_reports = Vec::new();
    for r in receivers {
        recv_reports.push(r.await.expect("receiver task").expect("receiver"));
    }
    (send_report, recv_reports)
}

fn push_and_verify(family: u8, group: &str) {
    let (send_if, recv_if) = set_up_links(family);
    let group: SocketAddr = group.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(6 << 20, 0xd41e);
    let src = dir.path().join("in-process.bin");
    std::fs::write(&src, &data).unwrap();
    let outs: Vec<PathBuf> = (1..=2).map(|i| dir.path().join(format!("out-{i}"))).collect();
    let recv_cfgs = outs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            std::fs::create_dir(out).unwrap();
            receiver_config(group, out, i as u64 + 1)
        })
        .collect();
    let mut send_cfg = sender_config(&src, group, 200_000_000);
    send_cfg.sender.expected_receivers = Some(2);
    let (sent, received) =
        runtime().block_on(push(send_cfg, recv_cfgs, send_if, recv_if, CancellationToken::new()));
    println!("sender: {}", serde_json::to_string(&sent).unwrap());
    assert_eq!(sent.status, SendStatus::Complete);
    assert_eq!(sent.complete, 2);
    assert_eq!(sent.bytes, data.len() as u64);
    assert!(sent
        .receivers
        .iter()
        .all(|r| r.addr.parse::<SocketAddr>().unwrap().is_ipv6() == (family == 6)));
    for (r, out) in received.iter().zip(&outs) {
        println!("receiver: {}", serde_json::to_string(r).unwrap());
        assert_eq!(r.status, RecvStatus::Complete, "{:?}", r.error);
        assert!(r.dropped_on_purpose > 0, "3 % loss was injected");
        let placed = out.join("in-process.bin");
        assert_eq!(r.path.as_deref(), Some(placed.as_path()));
        assert!(std::fs::read(&placed).unwrap() == data, "{} differs", placed.display());
    }
}

#[test]
fn sender_and_receivers_in_process_over_ipv4() {
    if in_private_namespace("sender_and_receivers_in_process_over_ipv4") {
        push_and_verify(4, "239.255.51.1:7300");
    }
}

#[test]
fn sender_and_receivers_in_process_over_ipv6() {
    if in_private_namespace("sender_and_receivers_in_process_over_ipv6") {
        push_and_verify(6, "[ff15::51]:7310");
    }
}

/// Cancelling the shutdown token mid-push stops both roles with status "interrupted", and the
/// receiver leaves only its temp file and resume state (for the next run, docs/resume.md).
#[test]
fn shutdown_interrupts_both_roles() {
    if !in_private_namespace("shutdown_interrupts_both_roles") {
        return;
    }
    let (send_if, recv_if) = set_up_links(4);
    let group: SocketAddr = "239.255.51.2:7320".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("slow.bin");
    // 4 MiB at 10 Mbit/s takes over 3 s: long enough to be stopped in the middle.
    std::fs::write(&src, pseudo_random(4 << 20, 7)).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let shutdown = CancellationToken::new();
    let rt = runtime();
    let watcher = {
        let (out, token) = (out.clone(), shutdown.clone());
        // Cancel as soon as the receiver's temp file exists (bounded: 20 s).
        rt.spawn(async move {
            for _ in 0..2000 {
                let busy = std::fs::read_dir(&out).map(|d| d.count() > 0).unwrap_or(false);
                if busy {
                    token.cancel();
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            token.cancel();
            false
        })
    };
    let send_cfg = sender_config(&src, group, 10_000_000);
    let recv_cfg = vec![receiver_config(group, &out, 1)];
    let (sent, received) = rt.block_on(push(send_cfg, recv_cfg, send_if, recv_if, shutdown));
    assert!(rt.block_on(watcher).unwrap(), "the receiver never started a temp file");
    assert_eq!(sent.status, SendStatus::Interrupted);
    assert_eq!(received[0].status, RecvStatus::Interrupted);
    assert_eq!(received[0].path, None);
    let mut left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left.len(), 2, "left behind: {left:?}");
    assert!(left[0] == ".slow.bin.mcast-resume" && left[1].starts_with(".slow.bin.mcast-tmp-"));
}
