//! `mcast-recv`: join a multicast group and receive, verify and place what is pushed to it.

use anyhow::Context;
use clap::Parser;
use mcast::cli;
use mcast::net::parse_group;
use mcast::net::recv::{run_once, RecvConfig, RecvReport, RecvStatus};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # Receive one object into /srv/releases and exit:
  mcast-recv --group 239.255.0.1:7000 --interface eth0 --output /srv/releases --once

  # Lab: discard 5 % of datagrams on purpose, JSON report, give up after a minute:
  mcast-recv --group 239.255.0.1:7000 --interface 127.0.0.1 --output /tmp/in --once \\
      --drop-rate 0.05 --drop-seed 7 --timeout 60s --json

Nothing appears at the destination until the whole object has verified (BLAKE3); an
interrupted or failed receive leaves any previous file in place.
Exit status: 0 complete, 1 failed, 3 timed out, 130 interrupted.";

/// Receive files pushed with mcast-send: join, decode, verify, place atomically.
#[derive(Parser, Debug)]
#[command(name = "mcast-recv", version, after_help = EXAMPLES)]
struct Args {
    /// Multicast group and port, e.g. 239.255.0.1:7000.
    #[arg(long, value_parser = |s: &str| parse_group(s).map_err(|e| e.to_string()))]
    group: SocketAddrV4,
    /// Interface to join on: an IPv4 address or a name.
    #[arg(long)]
    interface: String,
    /// Directory to place received files in (must exist).
    #[arg(long)]
    output: PathBuf,
    /// Exit after one object.
    #[arg(long)]
    once: bool,
    /// Print a JSON report on stdout for each object.
    #[arg(long)]
    json: bool,
    /// Discard this share of incoming datagrams at random (tests and the lab), e.g. 0.05.
    #[arg(long, default_value = "0", value_parser = |s: &str| cli::parse_share(s, 1.0))]
    drop_rate: f64,
    /// Seed for --drop-rate.
    #[arg(long, default_value_t = 1)]
    drop_seed: u64,
    /// Give up after this long (e.g. 60s).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Create this file once the group is joined (for scripts).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Threads decoding blocks that lost symbols.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Multicast TTL of NAKs and reports.
    #[arg(long, default_value_t = 1)]
    ttl: u32,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn summary(r: &RecvReport) {
    let path = r.path.as_ref().map_or("-".to_string(), |p| p.display().to_string());
    eprintln!(
        "{:?}: {} ({} bytes) in {:.2} s; {} NAKs sent, {} suppressed{}",
        r.status,
        path,
        r.bytes,
        r.seconds,
        r.naks_sent,
        r.naks_suppressed,
        r.error.as_ref().map_or(String::new(), |e| format!("; error: {e}")),
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    cli::init_logging(args.verbose);
    let shutdown = cli::shutdown_flag().context("installing signal handlers")?;
    let mut cfg = RecvConfig {
        group: args.group,
        interface: args.interface,
        output: args.output.clone(),
        drop_rate: args.drop_rate,
        drop_seed: args.drop_seed,
        timeout: args.timeout,
        ready_file: args.ready_file,
        progress: cli::stderr_is_terminal(),
        workers: args.workers,
        skip_sessions: Vec::new(),
        ttl: args.ttl,
    };
    loop {
        let report = run_once(&cfg, &shutdown)
            .with_context(|| format!("receiving into {}", args.output.display()))?;
        summary(&report);
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        }
        let code = match report.status {
            RecvStatus::Complete | RecvStatus::Unacknowledged => 0,
            RecvStatus::Failed => 1,
            RecvStatus::Timeout => cli::EXIT_INCOMPLETE,
            RecvStatus::Interrupted => cli::EXIT_INTERRUPTED,
        };
        if args.once || code != 0 {
            std::process::exit(code);
        }
        cfg.skip_sessions.extend(report.session);
        cfg.ready_file = None;
    }
}
