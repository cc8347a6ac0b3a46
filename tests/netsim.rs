//! Feedback at scale, smoltcp `netsim` style: seeded pushes to {1, 10, 100, 1000} receivers
//! under each loss model (bursts: Gilbert–Elliott, mean 10; and independent loss of 0.1 %, row
//! `indep-0.1%`), and a 10,000-receiver run, with the result tables kept as snapshots
//! (`tests/snapshots/netsim.txt` and `netsim-10k.txt`; `MCAST_UPDATE_SNAPSHOTS=1` rewrites
//! them). A change in NAK or repair behaviour shows up as a diff of a table; the DESIGN.md §6
//! targets are asserted. The two tests run side by side (one test thread each).
//!
//! Columns: NAK datagrams the sender received per lossy block, repair symbols sent per symbol
//! the worst receiver lacked (summed per block), time for all to complete over time for one
//! receiver, NAK rounds suppressed. Pushes are [`SimConfig::scaled`] (1400-byte symbols, 1 MiB
//! blocks, 1 Gbit/s, rack latency) of 64 MiB, as `examples/sim.rs` runs them.

use mcast::proto::receiver::Outcome;
use mcast::sim::{run, LossModel, SimConfig, SimResult};
use std::fmt::Write;

const SIZE: u64 = 64 << 20;
const SEED: u64 = 7;

struct Row {
    n: usize,
    model: &'static str,
    r: SimResult,
    time_ratio: f64,
}

fn models() -> [LossModel; 4] {
    [
        LossModel::Independent(0.01),
        LossModel::Shared(0.01),
        LossModel::Burst { loss: 0.01, burst: LossModel::DEFAULT_BURST },
        LossModel::Independent(0.001),
    ]
}

fn seconds(r: &SimResult) -> f64 {
    r.last_completion().expect("every receiver completed").as_secs_f64()
}

#[test]
fn feedback_scales_to_a_thousand_receivers() {
    let mut rows = Vec::new();
    for model in models() {
        let one = seconds(&run(&SimConfig::scaled(1, model.clone(), SEED, SIZE)));
        for n in [1usize, 10, 100, 1000] {
            let r = run(&SimConfig::scaled(n, model.clone(), SEED, SIZE));
            assert_eq!(r.complete(), n, "{} n={n}: every copy exact", model.name());
            assert!(r.receivers.iter().all(|x| x.outcome == Some(Outcome::Complete)));
            assert_eq!(r.reports, n, "{} n={n}: the sender holds every report", model.name());
            let time_ratio = seconds(&r) / one;
            let name = match model {
                LossModel::Independent(p) if p < 0.01 => "indep-0.1%",
                _ => model.name(),
            };
            rows.push(Row { n, model: name, r, time_ratio });
        }
    }
    let table = table(&rows);
    print!("{table}");
    check_snapshot("netsim.txt", &table);

    // DESIGN.md §6 at 1000 receivers.
    let at = |model: &str| rows.iter().find(|r| r.n == 1000 && r.model == model).unwrap();
    let ind = at("independent");
    assert!(ind.r.naks_per_lossy_block() <= 3.0, "NAK implosion: {}", ind.r.naks_per_lossy_block());
    assert!(ind.r.repair_ratio() <= 1.15, "repair ratio {}", ind.r.repair_ratio());
    assert!(ind.time_ratio <= 1.05, "time ratio {}", ind.time_ratio);
    // Low loss costs little (issue 15): a repair margin only where a repair is likely to be
    // lost (`sender::feedback::repair_margin`), so 0.1 % loss does not pay a symbol per NAK.
    let low = at("indep-0.1%");
    assert!(low.r.repair_ratio() <= 1.15, "0.1 % loss: repair ratio {}", low.r.repair_ratio());
    assert!(low.time_ratio <= 1.05, "0.1 % loss: time ratio {}", low.time_ratio);
    // Bursts (issue 15): the interleaved windows spread a burst over their blocks, so the
    // group's needs stay alike and suppression works; the end game does not wait on a whole
    // group's backoff for the last few receivers.
    let burst = at("burst");
    assert!(burst.r.naks_per_lossy_block() <= 3.0, "bursts: {}", burst.r.naks_per_lossy_block());
    assert!(burst.time_ratio <= 1.05, "bursts: time ratio {}", burst.time_ratio);
    let shared = at("shared");
    assert!(
        shared.r.naks_per_lossy_block() <= 2.0 * ind.r.naks_per_lossy_block().max(0.5),
        "shared loss: {} NAKs per lossy block",
        shared.r.naks_per_lossy_block()
    );
}

/// The result table of `rows`, one line each.
fn table(rows: &[Row]) -> String {
    let mut table = String::from(
        "model        receivers  lossy_blocks  naks  naks/lossy_block  repair_ratio  time_ratio  suppressed\n",
    );
    for row in rows {
        writeln!(
            table,
            "{:<12} {:>9} {:>13} {:>5} {:>17.2} {:>13.3} {:>11.3} {:>11}",
            row.model,
            row.n,
            row.r.lossy_blocks,
            row.r.sender.naks_received,
            row.r.naks_per_lossy_block(),
            row.r.repair_ratio(),
            row.time_ratio,
            row.r.naks_suppressed()
        )
        .unwrap();
    }
    table
}

/// `table` against the snapshot `tests/snapshots/<name>` (rewritten with
/// `MCAST_UPDATE_SNAPSHOTS=1`).
fn check_snapshot(name: &str, table: &str) {
    let path = format!("{}/tests/snapshots/{name}", env!("CARGO_MANIFEST_DIR"));
    let path = path.as_str();
    if std::env::var_os("MCAST_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
        std::fs::write(path, table).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run with MCAST_UPDATE_SNAPSHOTS=1 to create it)"));
    assert_eq!(
        table, want,
        "the scale table changed; if intended, rerun with MCAST_UPDATE_SNAPSHOTS=1 and commit {path}"
    );
}

/// The 10,000-receiver row (issue 15), in its own snapshot so that it runs beside the table
/// above: this file takes about two and a quarter minutes in CI on two cores (a test build;
/// the two tests then share the cores the simulator's threads would otherwise take), the
/// simulator being bound by the work every copy costs at that scale. `examples/sim` gives the same numbers (`--receivers 10000 --seed 7`); seed 3 gives
/// 0.75 NAKs per lossy block, repair ratio 1.121, time ratio 1.034 (1.052 before the end
/// game's extra parity: the last receivers waited one or two NAK rounds after the pass for the
/// last, short block).
#[test]
fn feedback_scales_to_ten_thousand_receivers() {
    let model = LossModel::Independent(0.01);
    let one = seconds(&run(&SimConfig::scaled(1, model.clone(), SEED, SIZE)));
    let r = run(&SimConfig::scaled(10_000, model.clone(), SEED, SIZE));
    assert_eq!(r.complete(), 10_000, "every copy exact");
    assert!(r.receivers.iter().all(|x| x.outcome == Some(Outcome::Complete)));
    assert_eq!(r.reports, 10_000, "the sender holds every report");
    let time_ratio = seconds(&r) / one;
    let row = Row { n: 10_000, model: model.name(), r, time_ratio };
    let table = table(std::slice::from_ref(&row));
    print!("{table}");
    check_snapshot("netsim-10k.txt", &table);
    let r = &row.r;
    assert!(r.naks_per_lossy_block() <= 3.0, "NAK implosion: {}", r.naks_per_lossy_block());
    assert!(r.repair_ratio() <= 1.15, "repair ratio {}", r.repair_ratio());
    assert!(time_ratio <= 1.05, "time ratio {time_ratio}");
}
