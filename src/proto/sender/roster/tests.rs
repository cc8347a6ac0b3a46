//! Roster rules: who counts, from where, and the `--expect` tally.

use super::*;
use crate::sim::manifest_for;

fn at(last: u8) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, last], 7001))
}

fn host(name: &str) -> HostName {
    HostName::new(name).unwrap()
}

fn report(status: ReportStatus, hash: [u8; 32], reason: &str) -> Report {
    Report {
        status,
        bytes: 1000,
        object_hash: hash,
        naks_sent: 0,
        naks_suppressed: 0,
        elapsed_ms: 1,
        reason: reason.into(),
    }
}

const HASH: [u8; 32] = [7; 32];
const OBJECT: (Option<[u8; 32]>, u64) = (Some(HASH), 1000);

fn ok() -> Report {
    report(ReportStatus::Complete, HASH, "")
}

#[test]
fn a_report_counts_only_from_a_node_heard_at_its_address() {
    let mut r = Roster::default();
    let t = Instant::ZERO;
    assert!(!r.on_report(5, at(5), t, &ok(), OBJECT), "never heard");
    assert_eq!(r.unsolicited_reports(), 1);
    assert!(r.get(5).is_none(), "an unsolicited report does not make a node heard");
    r.on_join(5, at(5), t, host("web-5"));
    assert!(!r.on_report(5, at(6), t, &ok(), OBJECT), "heard, but from another address");
    assert_eq!((r.unsolicited_reports(), r.get(5).unwrap().outcome.clone()), (2, None));
    let later = t + Duration::from_millis(3);
    assert!(r.on_report(5, at(5), later, &ok(), OBJECT));
    let e = r.get(5).unwrap();
    assert_eq!(
        (e.outcome.clone(), e.last_heard, e.first_heard),
        (Some(NodeOutcome::Complete), later, t)
    );
    // A NAK or an echo is enough to be heard (no name then).
    assert!(r.heard(6, at(6), t));
    assert!(r.on_report(6, at(6), t, &report(ReportStatus::Failed, [0; 32], "disk full"), OBJECT));
    assert_eq!(r.get(6).unwrap().outcome, Some(NodeOutcome::Failed("disk full".into())));
    assert_eq!(r.get(6).unwrap().host, None);
}

#[test]
fn the_first_address_and_name_stay() {
    let mut r = Roster::default();
    r.on_join(5, at(5), Instant::ZERO, host("a"));
    r.on_join(5, at(9), Instant::ZERO, host("b"));
    assert!(!r.heard(5, at(9), Instant::ZERO));
    assert_eq!(r.address_conflicts(), 2);
    r.on_join(5, at(5), Instant::ZERO, host("c"));
    let e = r.get(5).unwrap();
    assert_eq!((e.addr, e.host.as_ref().map(HostName::as_str)), (at(5), Some("a")));
}

#[test]
fn outcomes_are_judged_against_the_senders_copy() {
    let mut r = Roster::default();
    for n in 1..=4 {
        r.heard(n, at(n as u8), Instant::ZERO);
    }
    r.on_report(1, at(1), Instant::ZERO, &report(ReportStatus::Complete, [1; 32], ""), OBJECT);
    r.on_report(2, at(2), Instant::ZERO, &Report { bytes: 999, ..ok() }, OBJECT);
    r.on_report(3, at(3), Instant::ZERO, &report(ReportStatus::Failed, [0; 32], ""), OBJECT);
    r.on_report(4, at(4), Instant::ZERO, &ok(), OBJECT);
    // Only the first report sets the outcome.
    r.on_report(4, at(4), Instant::ZERO, &report(ReportStatus::Failed, [0; 32], "x"), OBJECT);
    let outcome = |n| r.get(n).unwrap().outcome.clone().unwrap();
    let wrong =
        NodeOutcome::Failed("reported a copy whose hash or size is not the sender's".into());
    assert_eq!(outcome(1), wrong);
    assert_eq!(outcome(2), wrong);
    assert_eq!(outcome(3), NodeOutcome::Failed("failed (no reason given)".into()));
    assert_eq!(outcome(4), NodeOutcome::Complete);
}

#[test]
fn the_roster_is_bounded() {
    let mut r = Roster::default();
    let t = Instant::ZERO;
    for n in 1..=MAX_ROSTER as u32 {
        assert!(r.heard(n, at(1), t));
    }
    assert_eq!(r.refused_full(), 0, "exactly MAX_ROSTER fit");
    assert!(!r.heard(MAX_ROSTER as u32 + 1, at(1), t), "one more does not");
    assert_eq!(r.refused_full(), 1);
    assert!(r.heard(1, at(1), t), "known nodes are still heard");
    assert!(!r.on_report(MAX_ROSTER as u32 + 1, at(1), t, &ok(), OBJECT));
}

#[test]
fn node_ids_read_as_decimal_or_0x_hex() {
    assert_eq!(parse_node_id("42"), Some(42));
    assert_eq!(parse_node_id("0x0a0B0c0d"), Some(0x0a0b_0c0d));
    assert_eq!(parse_node_id("4294967295"), Some(u32::MAX));
    for bad in ["0", "0x0", "4294967296", "0x100000000", "", "0x", "web-1", "1e3", "-1", "+1"] {
        assert_eq!(parse_node_id(bad), None, "{bad:?}");
    }
}

#[test]
fn expect_waits_for_every_entry_and_tallies_who_did_what() {
    let mut r = Roster::default();
    let t = Instant::ZERO;
    let list = ["web-1", "0x00000002", "web-3", "web-4"].map(Expected::new).to_vec();
    r.expect(list);
    assert_eq!(r.expect_met(), Some(false));
    r.on_join(1, at(1), t, host("WEB-1")); // names compare ASCII case-insensitively
    r.on_join(2, at(2), t, host("db"));
    r.on_join(3, at(3), t, host("web-3"));
    r.on_join(9, at(9), t, host("stray"));
    r.on_report(1, at(1), t, &ok(), OBJECT);
    r.on_report(2, at(2), t, &report(ReportStatus::Failed, [0; 32], "disk full"), OBJECT);
    r.on_report(9, at(9), t, &ok(), OBJECT);
    let tally = r.tally();
    assert_eq!(tally.completed.iter().map(|e| e.node).collect::<Vec<_>>(), [1]);
    assert_eq!(
        tally.failed.iter().map(|(e, why)| (e.node, *why)).collect::<Vec<_>>(),
        [(2, "disk full")]
    );
    assert_eq!(tally.unexpected.iter().map(|e| e.node).collect::<Vec<_>>(), [9]);
    let missing: Vec<_> =
        tally.missing.iter().map(|(x, heard)| (x.entry.as_str(), heard.map(|e| e.node))).collect();
    assert_eq!(
        missing,
        [("web-3", Some(3)), ("web-4", None)],
        "heard without a report, never heard"
    );
    assert_eq!(r.expect_met(), Some(false));
    r.on_report(3, at(3), t, &ok(), OBJECT);
    assert_eq!(r.expect_met(), Some(false), "web-4 still never answered");
    r.on_join(4, at(4), t, host("web-4"));
    // A second node of the same name, heard but not reported, keeps the entry open.
    r.on_join(5, at(5), t, host("web-4"));
    r.on_report(4, at(4), t, &ok(), OBJECT);
    assert_eq!(r.expect_met(), Some(false), "one web-4 is still without a report");
    r.on_report(5, at(5), t, &ok(), OBJECT);
    assert_eq!(r.expect_met(), Some(true));
    assert!(r.tally().missing.is_empty());
    // Without a list: no expectation, and every reporter is tallied by outcome.
    let mut plain = Roster::default();
    plain.on_join(1, at(1), t, host("a"));
    plain.on_report(1, at(1), t, &ok(), OBJECT);
    assert_eq!(plain.expect_met(), None);
    assert_eq!(plain.tally().completed.len(), 1);
    assert!(plain.tally().unexpected.is_empty());
}

fn datagram(node: u32, packet: &Packet) -> Vec<u8> {
    let mut b = Vec::new();
    wire::emit(&Header { flags: 0, session: 1, node }, packet, &mut b);
    b
}

#[test]
fn the_sender_welcomes_joins_and_ignores_reports_from_strangers() {
    let obj: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let mut s =
        Sender::new(SenderConfig::default(), &manifest_for(&obj, 100, 10), Instant::ZERO).unwrap();
    let mut buf = Vec::new();
    while s.poll_transmit(Instant::ZERO, &mut buf).is_some() {}
    let t = Instant::ZERO + Duration::from_millis(1);
    s.handle_datagram(t, at(3), &datagram(3, &Packet::Report(ok())));
    s.handle_datagram(t, at(4), &datagram(4, &Packet::Hello(Hello::Join { host: host("web-4") })));
    s.handle_datagram(t, at(5), &datagram(4, &Packet::Report(ok())));
    // Welcomes wait for the ack delay, so that joins arriving together share one.
    let t = t + crate::proto::sender::ack_delay(s.grtt());
    s.handle_timeout(t);
    let mut sent = Vec::new();
    while s.poll_transmit(t, &mut buf).is_some() {
        sent.push(wire::parse(&buf).map(|(_, p)| p.kind()).unwrap());
        if let Ok((_, Packet::Hello(Hello::Welcome { nodes }))) = wire::parse(&buf) {
            assert_eq!(nodes, [4]);
        }
    }
    assert_eq!(sent.first(), Some(&PacketType::Hello), "the welcome goes first: {sent:?}");
    assert!(!sent.contains(&PacketType::ReportAck), "neither report is acknowledged: {sent:?}");
    assert!(s.receivers().is_empty());
    assert_eq!(s.roster().unsolicited_reports(), 2);
    assert!(std::iter::from_fn(|| s.poll_event()).all(|e| !matches!(e, Event::ReceiverReport(_))));
    // From its own address it counts, and is acknowledged.
    s.handle_datagram(t, at(4), &datagram(4, &Packet::Report(ok())));
    assert_eq!(s.receivers().len(), 1);
    assert_eq!(s.roster().get(4).unwrap().host, Some(host("web-4")));
}

#[test]
fn a_relay_is_believed_only_for_nodes_at_its_own_address() {
    let mut r = Roster::default();
    let now = Instant::ZERO;
    // A claim from a relay not heard yet is refused.
    r.on_relayed(2, at(2), &[10]);
    assert_eq!(r.unsolicited_reports(), 1);
    r.on_join(2, at(2), now, host("relay1"));
    r.on_join(10, at(2), now, host("far1"));
    r.on_join(11, at(3), now, host("near1"));
    assert!(r.via(10).is_none(), "the earlier claim was not kept");
    // From another address than the relay's: refused.
    r.on_relayed(2, at(9), &[10]);
    assert_eq!(r.unsolicited_reports(), 2);
    r.on_relayed(2, at(2), &[10, 11, 2, 12]);
    assert_eq!(r.via(10).map(|e| e.node), Some(2));
    assert!(r.via(11).is_none(), "heard at another address than the relay");
    assert!(r.via(2).is_none(), "not its own relay");
    assert!(r.via(12).is_none(), "never heard");
    r.on_join(12, at(2), now, host("far2"));
    assert_eq!(r.via(12).map(|e| e.node), Some(2), "a claim made before the join counts");
}
