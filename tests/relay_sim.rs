//! Relays in the simulated topologies (`mcast::sim::topology`), seeded: the origin's repairs
//! with and without a relay in front of a lossy downstream segment, under automatic proactive
//! parity (the default), and relays in a chain.

use mcast::sim::topology::{self, Downstream, TopologyConfig, TopologyResult};

const MIB: u64 = 1 << 20;

/// Nobody on the origin's segment, 50 receivers losing 5 % behind the relay (or, with
/// `relay: false`, reached directly one hop further), default sender settings (auto parity).
fn relay_run(relay: bool) -> TopologyResult {
    let mut cfg = TopologyConfig::scaled(0, 0.0, 7, 4 * MIB);
    cfg.downstream = Some(Downstream { receivers: 50, loss: 0.05, relay });
    assert!(cfg.sender.auto_parity, "the default is automatic parity");
    topology::run(&cfg)
}

#[test]
fn with_auto_parity_a_relay_cuts_the_origin_repairs_by_80_percent() {
    let direct = relay_run(false);
    let relayed = relay_run(true);
    eprintln!("direct {direct:?}\nrelayed {relayed:?}");
    assert_eq!(direct.complete, 50);
    assert_eq!(relayed.complete, 50);
    assert_eq!(relayed.origin_reports, 51, "50 downstream through the relay, and the relay");
    assert!(direct.sender_proactive_datagrams > 0, "the direct run needs parity");
    assert!(relayed.relay_datagrams > 0);
    // The relay's upstream link loses nothing: once it has echoed its loss rate (0) the
    // origin sends no parity for the payload. Without its echoes the origin kept the fixed
    // share for the whole push (164 of 250 repairs, a 34 % cut).
    assert!(
        relayed.sender_repair_datagrams * 5 <= direct.sender_repair_datagrams,
        "origin repairs {} with the relay against {} without: less than an 80 % drop",
        relayed.sender_repair_datagrams,
        direct.sender_repair_datagrams
    );
}

/// Origin → relay 1 → relay 2 → 20 receivers losing 5 %: every far receiver completes, and the
/// origin holds each host's report once, listed via relay 1 (the relay whose address it sees:
/// relay 2 and the hosts behind it came through relay 1's forwarding).
#[test]
fn relays_chain_and_the_origin_lists_every_far_host_via_the_first_relay() {
    let run = |relays: usize| {
        let mut cfg = TopologyConfig::scaled(0, 0.0, 11, 2 * MIB);
        cfg.downstream = Some(Downstream { receivers: 20, loss: 0.05, relay: true });
        cfg.relays = relays;
        topology::run(&cfg)
    };
    let one = run(1);
    let two = run(2);
    eprintln!("one relay {one:?}\ntwo relays {two:?}");
    assert_eq!(one.complete, 20);
    assert_eq!(two.complete, 20);
    assert_eq!(one.origin_reports, 21, "20 far hosts and the relay");
    assert_eq!(two.origin_reports, 22, "20 far hosts and both relays");
    // Relay 1 is node 2 upstream; relay 2 is node 4; the far hosts 10000...
    let far: Vec<u32> = (10_000..10_020).collect();
    for (res, relays) in [(&one, 1), (&two, 2)] {
        let listed: Vec<u32> = res.via.keys().copied().filter(|n| *n >= 10_000).collect();
        assert_eq!(listed, far, "{relays} relays: every far host listed once, via a relay");
        assert!(res.via.values().all(|v| *v == 2), "{relays} relays: all via relay 1");
    }
    assert_eq!(two.via.get(&4), Some(&2), "relay 2 itself is listed via relay 1");
    assert!(!one.via.contains_key(&2), "a relay is not its own relay");
}
