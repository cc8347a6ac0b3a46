//! Forged feedback against the sender in open mode (issue 11): a push to 4 receivers in the
//! in-memory [`Harness`] while an attacker on the link, who sees every datagram the sender
//! multicasts, hands the sender forged NAKs and echoes from its own address. For each forgery
//! the push still completes in bounded virtual time, and one maximal NAK costs exactly the
//! documented number of repair symbols (`src/proto/sender/budget.rs`).
//!
//! The forgeries go to the sender only: what the same datagrams do to receivers that hear them
//! is the receiver's business (and its tests').
//!
//! The last test checks the sockets with real datagrams, inside a private user + network
//! namespace (`unshare -rn`, skipped where that is unavailable): a socket takes only what is
//! sent to its group, not unicast to the host at the port, nor another group on the port.
//!
//! `cargo test --test forged_feedback -- --nocapture` prints the figures.

mod common;

use mcast::net::{feedback_addr, open_multicast, resolve_interface, SocketOptions};
use mcast::proto::receiver::{Outcome, Receiver, ReceiverConfig};
use mcast::proto::sender::SenderConfig;
use mcast::proto::time::{Duration, Instant};
use mcast::proto::wire::{self, Echo, Header, Need, NeedList, ObjectId, Packet, MAX_NEEDS};
use mcast::sim::{Datagram, FecModel, Harness, Link, LossModel, MemSource, Network, Node, Object};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;

const T: u16 = 1000;
const K: u16 = 100;
/// 80 blocks of 100 symbols.
const BLOCKS: u32 = 80;
const RECEIVERS: u32 = 4;
const SESSION: u32 = 1;
/// The receivers' node ids are FIRST_NODE.. .
const FIRST_NODE: u32 = 101;
/// 40 Mbit/s: the payload's source symbols alone take 1.6 s.
const RATE: u64 = 40_000_000;
const LIMIT: Duration = Duration::from_secs(120);

/// The attacker's own address.
fn forger() -> SocketAddr {
    SocketAddr::from(([198, 18, 9, 9], 7000))
}

fn config() -> SenderConfig {
    SenderConfig {
        session: SESSION,
        rate_bps: RATE,
        expected_receivers: Some(RECEIVERS),
        ..SenderConfig::default()
    }
}

/// A push of `BLOCKS` blocks to `RECEIVERS` receivers losing `loss` of the datagrams.
fn push(cfg: SenderConfig, loss: f64) -> Harness {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let bytes: Vec<u8> =
        (0..BLOCKS as usize * usize::from(K) * usize::from(T)).map(|_| rng.gen()).collect();
    let object = Arc::new(Object::new(bytes, T, K).unwrap());
    let sender = object.sender(cfg, Instant::ZERO).unwrap();
    let net = Network {
        latency: Duration::from_micros(200),
        loss: LossModel::Independent(loss),
        ..Network::default()
    };
    let mut h = Harness::new(
        net,
        sender,
        MemSource::new(object),
        FecModel::Ideal,
        ChaCha8Rng::seed_from_u64(3),
    );
    for i in 0..RECEIVERS {
        let rx =
            Receiver::new(ReceiverConfig { node: FIRST_NODE + i, ..ReceiverConfig::default() });
        h.add_receiver(rx, Link::default());
    }
    h
}

/// What the attacker has seen the sender multicast.
#[derive(Debug, Default)]
struct Seen {
    /// Highest data sequence number.
    seq: u32,
    /// Highest payload block with a symbol out.
    block: Option<u32>,
    /// Probe send times, in order.
    probes: Vec<u64>,
}

/// How a forged push ended.
#[derive(Debug)]
struct Ended {
    /// When the sender had every report (None: not within LIMIT).
    finished: Option<Instant>,
    /// Largest GRTT estimate seen during the push.
    max_grtt: Duration,
}

/// Run `h` in steps of `every`; after each, `forge` returns datagrams the attacker hands the
/// sender from its own address.
fn run(
    h: &mut Harness,
    every: Duration,
    mut forge: impl FnMut(&Seen, Instant) -> Vec<Vec<u8>>,
) -> Ended {
    let mut seen = Seen::default();
    let mut max_grtt = Duration::ZERO;
    while !h.is_done() && h.now() < Instant::ZERO + LIMIT {
        let until = h.now() + every;
        h.run_until_with(until, &mut |d: &mut Datagram| {
            if d.from == Node::Sender {
                match wire::parse(&d.data) {
                    Ok((_, Packet::Data(x))) => {
                        seen.seq = x.seq;
                        if x.object == ObjectId::Payload {
                            seen.block = Some(seen.block.map_or(x.block, |b| b.max(x.block)));
                        }
                    }
                    Ok((_, Packet::Probe(p))) => seen.probes.push(p.send_time_us),
                    _ => {}
                }
            }
            true
        });
        max_grtt = max_grtt.max(h.sender().grtt());
        for d in forge(&seen, h.now()) {
            h.deliver(Node::Sender, forger(), &d);
        }
    }
    for r in 0..RECEIVERS as usize {
        assert_eq!(h.sink(r).outcome(), Some(&Outcome::Complete), "receiver {r}");
    }
    Ended { finished: h.sender_log().finished_at, max_grtt }
}

fn emit(node: u32, packet: &Packet) -> Vec<u8> {
    let mut b = Vec::new();
    wire::emit(&Header { flags: 0, session: SESSION, node }, packet, &mut b);
    b
}

/// The most a NAK can ask for: every block seen so far (at most MAX_NEEDS) at u16::MAX, quoting
/// the latest sequence number so that nothing counts as in flight.
fn max_nak(node: u32, seen: &Seen, loss_ppm: u32) -> Option<Vec<u8>> {
    let last = seen.block?;
    let needs = (0..=last)
        .take(MAX_NEEDS)
        .map(|block| Need { object: ObjectId::Payload, block, count: u16::MAX })
        .collect();
    Some(emit(node, &Packet::Nak(NeedList { seq: seen.seq, loss_ppm, needs })))
}

fn echo(node: u32, probe_time_us: u64, loss_ppm: u32) -> Vec<u8> {
    emit(node, &Packet::Echo(Echo { probe_time_us, delay_us: 0, loss_ppm }))
}

fn seconds(e: &Ended) -> f64 {
    e.finished.expect("the push finished within the limit").as_micros() as f64 / 1e6
}

fn clean(cfg: SenderConfig, loss: f64) -> f64 {
    seconds(&run(&mut push(cfg, loss), Duration::from_millis(10), |_, _| Vec::new()))
}

/// Repair symbols one maximal NAK, sent once when block 40 has gone out, makes the sender send
/// (no loss, no proactive repair: every repair is the NAK's).
fn repairs_of_one_max_nak(cfg: SenderConfig) -> (u64, Harness) {
    let cfg = SenderConfig { auto_parity: false, fec_overhead: 0.0, ..cfg };
    let mut h = push(cfg, 0.0);
    let mut sent = false;
    run(&mut h, Duration::from_millis(1), |seen, _| {
        if sent || seen.block < Some(40) {
            return Vec::new();
        }
        sent = true;
        max_nak(9999, seen, 0).into_iter().collect()
    });
    assert!(sent);
    (h.sender().stats().repair_packets, h)
}

#[test]
fn one_maximal_nak_costs_at_most_the_documented_repair_symbols() {
    // The NAK asks for blocks 0..=40 (or a few more, sent by the time it arrives), each
    // clamped to K + 16, plus the margin of 1: 117 a block, more than the budget.
    let (default_cost, h) = repairs_of_one_max_nak(config());
    let cfg = config();
    let budget = (cfg.node_repair_bytes / u64::from(T)).min(cfg.total_repair_bytes / u64::from(T));
    assert_eq!(default_cost, budget, "min(node, total) / T = 4 MiB / 1000 B");
    let stats = h.sender().stats();
    assert!(stats.needs_clamped >= 41 && stats.repairs_over_budget > 0, "{stats:?}");
    // Boundary pair on the per-node budget: with room for exactly what the NAK asks, all of it
    // goes; with one symbol less, one symbol less.
    let (asked, _) =
        repairs_of_one_max_nak(SenderConfig { node_repair_bytes: u64::MAX, ..config() });
    let room =
        |symbols: u64| SenderConfig { node_repair_bytes: symbols * u64::from(T), ..config() };
    assert!(asked >= 41 * 117 && asked % 117 == 0, "{asked}");
    assert_eq!(repairs_of_one_max_nak(room(asked)).0, asked);
    assert_eq!(repairs_of_one_max_nak(room(asked - 1)).0, asked - 1);
    println!("one maximal NAK: {asked} repair symbols unbounded, {default_cost} with the budget");
}

#[test]
fn ten_forged_naks_a_second_cannot_starve_the_push() {
    let base = clean(config(), 0.01);
    // One forger under one node id, and one with a new id every time.
    let mut h = push(config(), 0.01);
    let one = run(&mut h, Duration::from_millis(100), |seen, _| {
        max_nak(9999, seen, 0).into_iter().collect()
    });
    let over = h.sender().stats().repairs_over_budget;
    let mut h = push(config(), 0.01);
    let mut id = 50_000;
    let many = run(&mut h, Duration::from_millis(100), |seen, _| {
        id += 1;
        max_nak(id, seen, 0).into_iter().collect()
    });
    let (one, many) = (seconds(&one), seconds(&many));
    println!(
        "push: {base:.3} s clean, {one:.3} s under 10 forged NAKs/s, {many:.3} s with new ids"
    );
    assert!(over > 0);
    // One node's repairs take at most half the rate after its first 4 MiB; any number of ids
    // at most three quarters (data keeps a quarter), each NAK half the total budget left, and
    // the queued repairs are served round robin, so the real receivers' needs are not stuck
    // behind the forged ones. Measured: 3.0 x and 3.7 x the clean push.
    assert!(one < base * 3.5, "{one} against {base}");
    assert!(many < base * 4.5, "{many} against {base}");
}

#[test]
fn naks_and_echoes_in_a_receivers_name_from_elsewhere_cannot_get_it_dropped() {
    let base = clean(config(), 0.01);
    let mut h = push(config(), 0.01);
    // Receiver 0 (node 101) has echoed the first probes from its own address by 20 ms; from
    // then on, 50 forged NAKs and echoes a second in its name claim 90 % loss.
    let ended = run(&mut h, Duration::from_millis(20), |seen, now| {
        if now < Instant::ZERO + Duration::from_millis(20) {
            return Vec::new();
        }
        let mut out: Vec<Vec<u8>> = max_nak(FIRST_NODE, seen, 900_000).into_iter().collect();
        out.extend(seen.probes.last().map(|p| echo(FIRST_NODE, *p, 900_000)));
        out
    });
    let stats = h.sender().stats();
    println!("in a receiver's name: {:.3} s (clean {base:.3} s)", seconds(&ended));
    assert!(h.sender_log().dropped.is_empty(), "nobody dropped");
    assert!(stats.feedback_wrong_addr > 50, "{stats:?}");
    assert!(h.sender().group().get(FIRST_NODE).unwrap().loss_ppm < Some(100_000));
    assert!(seconds(&ended) < base * 1.5, "{} against {base}", seconds(&ended));
}

#[test]
fn echoes_of_probes_never_sent_do_not_move_the_grtt() {
    let mut h = push(config(), 0.01);
    let base = run(&mut h, Duration::from_millis(10), |_, _| Vec::new());
    let mut h = push(config(), 0.01);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // Every 10 ms: an echo of a "probe" 3 s back, one a microsecond off a real probe, and one
    // of a random time, each from a new id.
    let mut id = 70_000;
    let made_up = run(&mut h, Duration::from_millis(10), |seen, now| {
        let Some(&last) = seen.probes.last() else { return Vec::new() };
        id += 3;
        vec![
            echo(id, now.as_micros().wrapping_sub(3_000_000), 0),
            echo(id + 1, last + 1, 0),
            echo(id + 2, rng.gen(), 0),
        ]
    });
    let ignored = h.sender().stats().echoes_ignored;
    println!(
        "GRTT: clean at most {:?}, under made-up echoes {:?} ({ignored} ignored), push {:.3} s (clean {:.3} s)",
        base.max_grtt,
        made_up.max_grtt,
        seconds(&made_up),
        seconds(&base)
    );
    assert_eq!(made_up.max_grtt, base.max_grtt, "not moved at all");
    assert!(ignored >= 3 * 100, "{ignored}");
    assert!(seconds(&made_up) < seconds(&base) * 1.2);

    // Echoes of real probes, the oldest the sender still remembers (8 back), held for nothing:
    // the estimate rises at most 4 times per probe interval, and to the age of that probe.
    let mut h = push(config(), 0.01);
    let old = run(&mut h, Duration::from_millis(10), |seen, _| {
        let n = seen.probes.len();
        (n >= 8).then(|| echo(70_000, seen.probes[n - 8], 0)).into_iter().collect()
    });
    let probe_interval = config().probe_interval;
    println!(
        "GRTT under echoes of old real probes: at most {:?}, push {:.3} s",
        old.max_grtt,
        seconds(&old)
    );
    assert!(old.max_grtt <= probe_interval * 8, "{:?}", old.max_grtt);
    // Slower (the receivers' NAK backoff follows the GRTT), but bounded. Measured: 8.5 x
    // (14.4 s against 1.69 s); not solved (see the issue note).
    assert!(seconds(&old) < seconds(&base) * 10.0);
}

#[test]
fn sixty_five_thousand_made_up_ids_are_not_tracked_and_do_not_multiply_parity() {
    let base_h = {
        let mut h = push(config(), 0.01);
        run(&mut h, Duration::from_millis(10), |_, _| Vec::new());
        h
    };
    let mut h = push(config(), 0.01);
    // 65,536 ids echo the latest probe, claiming 1 % loss: 1000 of them every 10 ms.
    let mut next = 1u32 << 20;
    let ended = run(&mut h, Duration::from_millis(10), |seen, _| {
        let Some(&last) = seen.probes.last() else { return Vec::new() };
        let end = (next + 1000).min((1 << 20) + 65_536);
        let out = (next..end).map(|id| echo(id, last, 10_000)).collect();
        next = end;
        out
    });
    assert_eq!(next, (1 << 20) + 65_536, "all of them were sent");
    let s = h.sender();
    let max = config().max_members;
    println!(
        "65,536 ids: {} tracked, {} echoes from untracked ids, group size {}, proactive repair {} (clean {}), push {:.3} s",
        s.group().tracked(),
        s.group().untracked(),
        s.group().size(),
        s.stats().proactive_repair_packets,
        base_h.sender().stats().proactive_repair_packets,
        seconds(&ended)
    );
    assert_eq!(s.group().tracked(), max);
    assert_eq!(s.group().size(), max as u32);
    assert_eq!(s.group().untracked(), s.stats().feedback_untracked);
    assert_eq!(s.stats().feedback_untracked, 65_536 - (max as u64 - u64::from(RECEIVERS)));
    // Proactive repair is planned for at most max_members at the claimed loss: bounded by the
    // largest of 4096 receivers at 1 %, far below the max_parity cap of half the data.
    let data = s.stats().data_packets;
    assert!(s.stats().proactive_repair_packets < data / 5, "{:?}", s.stats());
}

#[test]
fn a_nak_ahead_of_the_sender_or_for_blocks_not_sent_is_not_believed() {
    let mut h = push(config(), 0.0);
    let mut forged = 0;
    run(&mut h, Duration::from_millis(50), |seen, _| {
        let Some(last) = seen.block else { return Vec::new() };
        forged += 1;
        // Sequence number a thousand ahead of the sender's; and needs only for blocks not yet
        // sent, quoting a real position.
        let ahead = NeedList {
            seq: seen.seq.wrapping_add(1000),
            loss_ppm: 0,
            needs: vec![Need { object: ObjectId::Payload, block: 0, count: 50 }],
        };
        let unsent: Vec<Need> = (last + 5..BLOCKS)
            .map(|block| Need { object: ObjectId::Payload, block, count: 50 })
            .collect();
        let mut out = vec![emit(9999, &Packet::Nak(ahead))];
        if !unsent.is_empty() {
            let list = NeedList { seq: seen.seq, loss_ppm: 0, needs: unsent };
            out.push(emit(9999, &Packet::Nak(list)));
        }
        out
    });
    let s = h.sender().stats();
    assert!(forged > 10);
    assert_eq!(s.naks_seq_ahead, forged, "{s:?}");
    assert!(s.needs_unsent > 0);
    assert_eq!(s.repair_packets, s.proactive_repair_packets, "no repair for them: {s:?}");
}

/// Set in the child that runs inside the namespace.
const IN_NETNS: &str = "MCAST_FORGED_FEEDBACK_IN_NETNS";

/// Every datagram `sock` has now (it waits up to 200 ms for each).
fn drain(sock: &UdpSocket) -> Vec<String> {
    sock.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    for _ in 0..16 {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    got
}

#[test]
fn sockets_take_only_datagrams_sent_to_their_group() {
    let name = "sockets_take_only_datagrams_sent_to_their_group";
    if std::env::var_os(IN_NETNS).is_none() {
        if common::skip_without_netns() {
            return;
        }
        // Re-run only this test inside a private user + network namespace.
        let out = Command::new("timeout")
            .args(["-k", "5", "60", "unshare", "-rn"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(IN_NETNS, "1")
            .stdin(Stdio::null())
            .output()
            .expect("run unshare");
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("sockets: only the group's datagrams"), "the child ran: {text}");
        return;
    }
    // In the namespace: nothing but loopback may exist, and multicast stays on it.
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "a private namespace has only lo: {links}");
    for args in [
        &["link", "set", "lo", "up", "multicast", "on"][..],
        &["route", "add", "239.0.0.0/8", "dev", "lo"],
    ] {
        assert!(Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
    }
    let lo = resolve_interface("lo").unwrap();
    let group = SocketAddr::from((Ipv4Addr::new(239, 255, 7, 1), 47_400));
    let other = SocketAddr::from((Ipv4Addr::new(239, 255, 7, 2), 47_400));
    let feedback = feedback_addr(group).unwrap();
    let opts = SocketOptions::default();
    let (data, _) = open_multicast(group, &lo, &opts).unwrap();
    let (other_sock, _) = open_multicast(other, &lo, &opts).unwrap();
    let (fb, _) = open_multicast(feedback, &lo, &opts).unwrap();
    let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let unicast = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for (what, to) in [
        ("unicast", unicast(group.port())),
        ("other", other),
        ("group", group),
        ("unicast feedback", unicast(feedback.port())),
        ("feedback", feedback),
    ] {
        tx.send_to(what.as_bytes(), to).unwrap();
    }
    assert_eq!(drain(&data), ["group"], "the data socket");
    assert_eq!(drain(&other_sock), ["other"], "the other group's socket");
    assert_eq!(drain(&fb), ["feedback"], "the sender's feedback socket");
    println!("sockets: only the group's datagrams");
}
