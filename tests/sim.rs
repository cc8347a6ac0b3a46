//! Simulator scenarios: every receiver ends with the exact object under loss, and runs are
//! deterministic.

use mcast::sim::{run, SimConfig};

#[test]
fn smoke() {
    for (n, loss) in [(1, 0.0), (3, 0.05), (10, 0.2)] {
        let r = run(&SimConfig::small(n, loss, 7));
        println!(
            "n={n} loss={loss} complete={} end={:?} events={} sender={:?}",
            r.complete(),
            r.end,
            r.events,
            r.sender
        );
        for rr in &r.receivers {
            println!("  {:?} {:?} {:?}", rr.outcome, rr.completed_at, rr.stats);
        }
        assert_eq!(r.complete(), n);
    }
}
