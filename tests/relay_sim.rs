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
