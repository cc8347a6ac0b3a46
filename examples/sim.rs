//! One simulated push at scale, for the numbers in DESIGN.md §6: NAK datagrams per lossy block,
//! repair ratio, time ratio against a single receiver, NAKs suppressed.
//!
//! ```text
//! cargo run --release --example sim -- --receivers 1000 --loss 0.01 --loss-model independent --json
//! ```
//!
//! The push is [`SimConfig::scaled`]: the datagrams, blocks and timing of a real push of
//! `--size` at 1 Gbit/s on a rack, with 16-byte symbols standing in for 1400-byte ones.
//!
//! Topologies (`mcast::sim::topology`): `--repairers N` makes the first N receivers local
//! repairers; `--topology relay --downstream-receivers 50 --downstream-loss 0.05 [--no-relay]`
//! adds a downstream segment behind a relay (or, with `--no-relay`, reached directly through
//! the lossy segment). Either prints the topology's report (`complete`,
//! `sender_repair_datagrams`, `repairer_datagrams`, `duplicate_esis`, ...); with repairers it
//! also runs the same push without them and adds `alone_sender_repair_datagrams`,
//! `origin_repair_cut` (the share of the origin's repairs the repairers took) and `floor_cut`
//! (the most any repairers could take: see `repair_floor`).
//!
//! ```text
//! cargo run --release --example sim -- --receivers 50 --loss 0.05 --repairers 2 --json
//! ```

use clap::Parser;
use mcast::sim::topology::{self, Downstream, TopologyConfig};
use mcast::sim::{self, LossModel, SimConfig};
use serde::Serialize;

/// Simulate one push to many receivers and print the feedback-scaling numbers.
#[derive(Parser, Debug)]
struct Args {
    /// Number of receivers.
    #[arg(long, default_value_t = 1000)]
    receivers: usize,
    /// Average loss rate per copy (0.01 = 1 %).
    #[arg(long, default_value_t = 0.01)]
    loss: f64,
    /// independent, shared (upstream: a loss hits every receiver) or burst (Gilbert–Elliott).
    #[arg(long, default_value = "independent")]
    loss_model: String,
    /// Seed for the object, the losses and the receivers' backoffs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Object size in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Step event by event instead of window by window (the same results, slower; both keep
    /// memory flat per receiver).
    #[arg(long)]
    no_window: bool,
    /// Threads the receivers of a window run on (0: every core, at most 8); the results do not
    /// depend on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// `flat` (one segment) or `relay` (a downstream segment behind a relay).
    #[arg(long, default_value = "flat")]
    topology: String,
    /// Receivers on the downstream segment (`--topology relay`).
    #[arg(long, default_value_t = 50)]
    downstream_receivers: usize,
    /// Loss rate of each downstream receiver's link (`--topology relay`).
    #[arg(long, default_value_t = 0.05)]
    downstream_loss: f64,
    /// The downstream receivers hear the origin directly through the lossy segment.
    #[arg(long)]
    no_relay: bool,
    /// Local repairers among the origin segment's receivers.
    #[arg(long, default_value_t = 0)]
    repairers: usize,
    /// Loss rate of the repairers' own links (default: `--loss`).
    #[arg(long)]
    repairer_loss: Option<f64>,
    /// Repairers serve a block only once the hash list verified it (open mode; a streamed
    /// push sends the list at the end of its first pass). Default: as soon as decoded, as in
    /// keyed mode.
    #[arg(long)]
    open_repairers: bool,
    /// Proactive repair share of the topology runs: `auto`, or a share such as 0 (NAK-driven
    /// repair only: what the origin repairs is what it was asked).
    #[arg(long, default_value = "auto")]
    fec_overhead: String,
}

/// Run a topology (relay or repairers) and print its report.
fn run_topology(a: &Args) -> Result<(), String> {
    let mut cfg = TopologyConfig::scaled(a.receivers, a.loss, a.seed, a.size_mib << 20);
    cfg.repairers = a.repairers.min(a.receivers);
    cfg.repairer_loss = a.repairer_loss;
    cfg.repairer.serve_unverified = !a.open_repairers;
    if a.fec_overhead != "auto" {
        let share: f64 = a.fec_overhead.parse().map_err(|_| "--fec-overhead: auto or a share")?;
        cfg.sender.auto_parity = false;
        cfg.sender.fec_overhead = share;
    }
    cfg.downstream = match a.topology.as_str() {
        "relay" => Some(Downstream {
            receivers: a.downstream_receivers,
            loss: a.downstream_loss,
            relay: !a.no_relay,
        }),
        "flat" => None,
        other => return Err(format!("unknown topology {other:?} (flat or relay)")),
    };
    let r = topology::run(&cfg);
    // With repairers, the same run without them: what they saved the origin.
    let alone = (cfg.repairers > 0).then(|| topology::run(&TopologyConfig { repairers: 0, ..cfg }));
    let mut value = serde_json::to_value(&r).map_err(|e| e.to_string())?;
    if let (Some(alone), Some(map)) = (&alone, value.as_object_mut()) {
        let (with, without) =
            (r.sender_repair_datagrams as f64, alone.sender_repair_datagrams as f64);
        map.insert("alone_sender_repair_datagrams".into(), alone.sender_repair_datagrams.into());
        map.insert("alone_complete".into(), alone.complete.into());
        map.insert("origin_repair_cut".into(), (1.0 - with / without.max(1.0)).into());
        map.insert("floor_cut".into(), (1.0 - r.repair_floor as f64 / without.max(1.0)).into());
    }
    let text =
        if a.json { serde_json::to_string(&value) } else { serde_json::to_string_pretty(&value) };
    println!("{}", text.map_err(|e| e.to_string())?);
    if r.complete != r.receivers {
        return Err(format!("only {} of {} receivers complete", r.complete, r.receivers));
    }
    Ok(())
}

#[derive(Serialize)]
struct Report {
    receivers: usize,
    loss: f64,
    loss_model: &'static str,
    seed: u64,
    size_mib: u64,
    complete: usize,
    dropped: usize,
    lossy_blocks: u64,
    naks_received: u64,
    naks_per_lossy_block: f64,
    repair_symbols: u64,
    proactive_repairs: u64,
    max_lacked: u64,
    repair_ratio: f64,
    seconds: f64,
    seconds_one_receiver: f64,
    time_ratio: f64,
    naks_suppressed: u64,
    data_packets: u64,
    events: u64,
    wall_seconds: f64,
}

fn main() -> Result<(), String> {
    let a = Args::parse();
    if a.topology != "flat" || a.repairers > 0 {
        return run_topology(&a);
    }
    let model = LossModel::from_name(&a.loss_model, a.loss)?;
    let wall = std::time::Instant::now();
    let bytes = a.size_mib << 20;
    let config = |n| SimConfig {
        windowed: !a.no_window,
        threads: a.threads,
        ..SimConfig::scaled(n, model.clone(), a.seed, bytes)
    };
    let r = sim::run(&config(a.receivers));
    let one = sim::run(&config(1));
    let secs = |r: &sim::SimResult| r.last_completion().map_or(f64::NAN, |d| d.as_secs_f64());
    let report = Report {
        receivers: a.receivers,
        loss: a.loss,
        loss_model: model.name(),
        seed: a.seed,
        size_mib: a.size_mib,
        complete: r.complete(),
        dropped: r.dropped.len(),
        lossy_blocks: r.lossy_blocks,
        naks_received: r.sender.naks_received,
        naks_per_lossy_block: r.naks_per_lossy_block(),
        repair_symbols: r.payload_repairs,
        proactive_repairs: r.sender.proactive_repair_packets,
        max_lacked: r.max_lacked,
        repair_ratio: r.repair_ratio(),
        seconds: secs(&r),
        seconds_one_receiver: secs(&one),
        time_ratio: secs(&r) / secs(&one),
        naks_suppressed: r.naks_suppressed(),
        data_packets: r.sender.data_packets,
        events: r.events,
        wall_seconds: wall.elapsed().as_secs_f64(),
    };
    if a.json {
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    }
    if report.complete != a.receivers {
        return Err(format!("only {} of {} receivers complete", report.complete, a.receivers));
    }
    Ok(())
}
