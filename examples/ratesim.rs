//! Rate-over-time plots of automatic rate control in the simulator (issue 17's four cases:
//! one slow receiver link, a link that halves mid-push, random loss without congestion, a
//! competing TCP-like flow; and a receiver whose host, not its link, is the limit). Writes one SVG per case into the given directory and prints a
//! line of figures per case.
//!
//! ```sh
//! cargo run --example ratesim -- target/ratesim
//! ```

use anyhow::Context;
use mcast::sim::rate::{cases, plot, run};

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "target/ratesim".into());
    std::fs::create_dir_all(&dir).with_context(|| format!("create {dir}"))?;
    for (name, sc) in cases::all(1) {
        let r = run(&sc);
        let path = format!("{dir}/{name}.svg");
        std::fs::write(&path, plot::svg(name, &r)).with_context(|| format!("write {path}"))?;
        let late = sc.duration.as_secs_f64() / 2.0;
        let end = sc.duration.as_secs_f64();
        println!(
            "{name}: mean rate {:.1} Mbit/s over the second half (bottleneck {:.1}), TCP {:.1} \
             Mbit/s, {} decreases, {} host holds, socket drops {:?}, limited by {:?}, excluded \
             {:?}, completed {:?} -> {path}",
            r.mean(late, end, |s| s.rate_bps as f64) / 1e6,
            r.mean(late, end, |s| s.capacity_bps as f64) / 1e6,
            r.mean(late, end, |s| s.tcp_bps as f64) / 1e6,
            r.summary.decreases,
            r.summary.host_holds,
            r.socket_drops,
            r.summary.limited_by,
            r.summary.excluded,
            r.completed,
        );
    }
    Ok(())
}
