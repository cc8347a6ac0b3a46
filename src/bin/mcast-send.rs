//! `mcast-send`: push a file to every receiver on a multicast group.

use anyhow::Context;
use clap::Parser;
use mcast::cli;
use mcast::net::send::{run, SendConfig, SendReport, SendStatus};
use mcast::net::{parse_group, parse_rate};
use mcast::proto::sender::StragglerPolicy;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # Push a release to 3 receivers on eth0 at 1 Gbit/s and wait for all of them:
  mcast-send release.tar.gz --group 239.255.0.1:7000 --interface eth0 --rate 1G --receivers 3

  # Same, by interface address, with 10 % proactive repair and a JSON report:
  mcast-send disk.img --group 239.255.0.1:7000 --interface 198.18.0.1 --rate 800M \\
      --fec-overhead 10% --receivers 200 --timeout 5m --json > report.json

  # Carousel for hosts that boot at any time: repeat until stopped (Ctrl-C):
  mcast-send image.raw --group 239.255.0.1:7000 --interface eth0 --rate 500M --repeat

Exit status: 0 done (with --receivers: all reported a verified copy), 1 error,
3 not every expected receiver completed before --timeout, 130 interrupted.";

/// Push a file to every receiver on an IP multicast group, reliably (RaptorQ FEC + NAK repair).
#[derive(Parser, Debug)]
#[command(name = "mcast-send", version, after_help = EXAMPLES)]
struct Args {
    /// File to send.
    path: PathBuf,
    /// Multicast group and port, e.g. 239.255.0.1:7000.
    #[arg(long, value_parser = |s: &str| parse_group(s).map_err(|e| e.to_string()))]
    group: SocketAddrV4,
    /// Interface to send on: an IPv4 address or a name (never the default route).
    #[arg(long)]
    interface: String,
    /// Send rate in bit/s (k, M, G suffixes), e.g. 200M.
    #[arg(long, default_value = "100M", value_parser = |s: &str| parse_rate(s).map_err(|e| e.to_string()))]
    rate: u64,
    /// Proactive repair symbols per block, as a share of its source symbols: `auto` follows the
    /// loss receivers report (starting at 5 %), a number or percentage fixes it.
    #[arg(long, default_value = "auto", value_parser = parse_overhead)]
    fec_overhead: Overhead,
    /// Carousel: after the first pass, send the object again N more times (0 or no value:
    /// until stopped), for receivers that join at any time.
    #[arg(long, num_args = 0..=1, default_missing_value = "0", value_name = "N")]
    repeat: Option<u32>,
    /// Straggler policy: drop a receiver whose NAKs alone made the sender repeat more than this
    /// share of the object, if it also loses far more than the group (see --straggler-factor).
    /// `off` never drops anyone.
    #[arg(long, default_value = "10%", value_parser = parse_budget)]
    straggler_budget: f64,
    /// Straggler policy: how many times the group's median loss rate a receiver must exceed
    /// before it can be dropped.
    #[arg(long, default_value_t = 4.0)]
    straggler_factor: f64,
    /// Wait until this many receivers report completion (or --timeout passes).
    #[arg(long)]
    receivers: Option<u32>,
    /// Give up after this long (e.g. 60s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Print one JSON report on stdout at the end.
    #[arg(long)]
    json: bool,
    /// Symbol size in bytes (1400 fits a 1500-byte MTU; larger with jumbo frames).
    #[arg(long, default_value_t = 1400)]
    symbol_size: u16,
    /// Target block size (one RaptorQ source block), e.g. 1MiB.
    #[arg(long, default_value = "1MiB", value_parser = cli::parse_size)]
    block_size: u64,
    /// Multicast TTL (1 keeps datagrams on the local link).
    #[arg(long, default_value_t = 1)]
    ttl: u32,
    /// Without --receivers: how long to stay after the last NAK once the data is sent.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Threads reading and FEC-encoding blocks.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// `--fec-overhead`: follow the receivers' loss, or a fixed share.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Overhead {
    Auto,
    Fixed(f64),
}

fn parse_overhead(s: &str) -> Result<Overhead, String> {
    if s == "auto" {
        return Ok(Overhead::Auto);
    }
    cli::parse_share(s, 10.0).map(Overhead::Fixed)
}

fn parse_budget(s: &str) -> Result<f64, String> {
    if s == "off" {
        return Ok(f64::INFINITY);
    }
    cli::parse_share(s, 100.0)
}

fn summary(r: &SendReport) {
    eprintln!(
        "{:?}: {} bytes in {:.2} s ({:.0} Mbit/s); {} data + {} repair packets, {} NAKs; {}/{} receivers complete",
        r.status,
        r.bytes,
        r.seconds,
        r.goodput_mbps,
        r.data_packets,
        r.repair_packets,
        r.naks_received,
        r.complete,
        r.expected_receivers.map_or(r.receivers.len().to_string(), |n| n.to_string()),
    );
    for rx in &r.receivers {
        eprintln!(
            "  {:08x} {} {} ({:.2} s, {} NAKs)",
            rx.id, rx.addr, rx.status, rx.seconds, rx.naks_sent
        );
    }
    for d in &r.dropped {
        eprintln!(
            "  {:08x} dropped as a straggler (loss {:.1} %, {} repairs asked for)",
            d.id,
            d.loss * 100.0,
            d.repairs_charged
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    cli::init_logging(args.verbose);
    if !(16..=8900).contains(&args.symbol_size) {
        anyhow::bail!("--symbol-size must be between 16 and 8900");
    }
    let shutdown = cli::shutdown_flag().context("installing signal handlers")?;
    let cfg = SendConfig {
        path: args.path.clone(),
        group: args.group,
        interface: args.interface,
        rate_bps: args.rate,
        fec_overhead: match args.fec_overhead {
            Overhead::Auto => 0.05,
            Overhead::Fixed(v) => v,
        },
        auto_parity: args.fec_overhead == Overhead::Auto,
        repeat: args.repeat,
        straggler: StragglerPolicy { budget: args.straggler_budget, factor: args.straggler_factor },
        expected_receivers: args.receivers,
        timeout: args.timeout,
        symbol_size: args.symbol_size,
        block_bytes: args.block_size,
        ttl: args.ttl,
        linger: args.linger,
        progress: cli::stderr_is_terminal(),
        workers: args.workers,
    };
    let report =
        run(&cfg, &shutdown).with_context(|| format!("sending {}", args.path.display()))?;
    summary(&report);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    std::process::exit(match report.status {
        SendStatus::Complete => 0,
        SendStatus::Incomplete | SendStatus::Timeout => cli::EXIT_INCOMPLETE,
        SendStatus::Interrupted => cli::EXIT_INTERRUPTED,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = ["mcast-send", "f", "--group", "239.255.0.1:7000", "--interface", "lo"];
        Args::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn options_parse() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.fec_overhead, Overhead::Auto);
        assert_eq!(a.repeat, None);
        assert_eq!(a.straggler_budget, 0.1);
        let a = parse(&["--fec-overhead", "7%", "--repeat", "--straggler-budget", "off"]).unwrap();
        assert_eq!(a.fec_overhead, Overhead::Fixed(0.07));
        assert_eq!(a.repeat, Some(0));
        assert!(a.straggler_budget.is_infinite());
        assert_eq!(parse(&["--repeat", "3"]).unwrap().repeat, Some(3));
        assert!(parse(&["--fec-overhead", "2000%"]).is_err());
    }
}
