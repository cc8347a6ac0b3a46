//! `mcast-relay`: receive a push on one network and send it on as a push of its own on
//! another, forwarding the far receivers' completion reports to the origin.

use anyhow::Context;
use clap::Parser;
use mcast::cli;
use mcast::net::identity::{self, RESERVED_NODE_IDS};
use mcast::net::relay::{self, RelayConfig, RelayReport};
use mcast::net::send::SendConfig;
use mcast::net::{group_scope_warning, parse_group, parse_rate, SocketOptions};
use mcast::proto::receiver::TrustConfig;
use mcast::proto::sender::parse_node_id;
use mcast::proto::wire::HostName;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # Carry a push from the data centre network (eth0) to a rack behind a router (eth1):
  mcast-relay --upstream 239.255.0.1:7000 --upstream-interface eth0 \\
      --downstream 239.255.1.1:7000 --downstream-interface eth1 --spool /var/tmp

  # IPv4 in, IPv6 out, wait for 40 receivers behind the relay, JSON report:
  mcast-relay --upstream 239.255.0.1:7000 --upstream-interface 198.18.0.2 \\
      --downstream '[ff15::1]:7000' --downstream-interface eth1 --spool /var/tmp \\
      --receivers 40 --json

  # Receivers behind the relay join the relay's group as usual:
  mcast-recv --group 239.255.1.1:7000 --interface eth0 --output /srv/releases --once

  # Signed end to end: accept only the origin's key, re-sign downstream with the relay's;
  # the far receivers trust the relay's public key (mcast-send --print-public-key):
  mcast-relay --upstream 239.255.0.1:7000 --upstream-interface eth0 \
      --downstream 239.255.1.1:7000 --downstream-interface eth1 --spool /var/tmp \
      --trust /etc/mcast/origin.pub --sign-key /etc/mcast/relay.key

The relay joins the origin's push as a receiver: what it decodes goes into a spool file in
--spool DIR (removed at the end), the most recent --window blocks also in memory; it asks the
origin (NAKs) only for what it lacks. As soon as the manifest is known it sends the push again
downstream as a session of its own, streaming the blocks it holds (a block it does not hold
yet waits) and repairing downstream losses itself. Nothing downstream is placed before the
origin's hash list verified at the relay: the downstream hash list waits for it. Downstream
completion reports are forwarded to the origin as those hosts' own, so mcast-send --expect and
its report list them (each once). Relays chain: a relay's downstream group can be another
relay's upstream. The relay exits once upstream is verified and downstream is done (every
--receivers reported, or --linger without NAKs), or after --timeout.
Exit status: 0 complete (verified upstream, every downstream receiver that reported has a
verified copy, and --receivers of them if given), 1 error or failed (upstream failed, or the
downstream session had to be stopped), 2 bad arguments (nothing joined), 3 incomplete (a
downstream receiver failed, or fewer than --receivers completed) or timed out, 130
interrupted (SIGINT or SIGTERM; the downstream receivers are told).";

/// Relay a push from one multicast network to another, as a session of its own.
#[derive(Parser, Debug)]
#[command(name = "mcast-relay", version, after_help = EXAMPLES)]
struct Args {
    /// The origin's group and port, IPv4 or IPv6.
    #[arg(long, value_name = "GROUP:PORT", value_parser = |s: &str| parse_group(s).map_err(|e| e.to_string()))]
    upstream: SocketAddr,
    /// Interface to join the origin's group on: a name or one of its addresses.
    #[arg(long, value_name = "IFACE")]
    upstream_interface: String,
    /// The group and port to send on downstream, IPv4 or IPv6 (another group than upstream's
    /// if both networks can hear each other).
    #[arg(long, value_name = "GROUP:PORT", value_parser = |s: &str| parse_group(s).map_err(|e| e.to_string()))]
    downstream: SocketAddr,
    /// Interface to send on downstream: a name or one of its addresses.
    #[arg(long, value_name = "IFACE")]
    downstream_interface: String,
    /// Directory for the spool file (the payload, as far as it arrived); needs the push's size.
    #[arg(long, value_name = "DIR")]
    spool: PathBuf,
    /// Blocks kept in memory (~1 MiB each); older ones are read back from the spool.
    #[arg(long, default_value_t = relay::DEFAULT_WINDOW)]
    window: usize,
    /// Downstream send rate: `auto` (starts at --min-rate, follows the limiting downstream
    /// receiver) or a fixed rate in bit/s (k, M, G suffixes).
    #[arg(long, default_value = "auto")]
    rate: String,
    /// With --rate auto: the floor (and the start) in bit/s.
    #[arg(long, default_value = "10M", value_parser = |s: &str| parse_rate(s).map_err(|e| e.to_string()))]
    min_rate: u64,
    /// With --rate auto: the ceiling in bit/s.
    #[arg(long, default_value = "10G", value_parser = |s: &str| parse_rate(s).map_err(|e| e.to_string()))]
    max_rate: u64,
    /// Downstream proactive repair per block: `auto` follows the loss downstream receivers
    /// report, a share (e.g. 10%) fixes it.
    #[arg(long, default_value = "auto")]
    fec_overhead: String,
    /// Downstream: finish once this many receivers reported (else after --linger without NAKs).
    #[arg(long)]
    receivers: Option<u32>,
    /// Downstream, without --receivers: how long to stay after the last NAK.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Give up after this long (e.g. 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Upstream: give up (exit 3) when no session is announced this long after the start; 0
    /// waits forever.
    #[arg(long, default_value = "10min", value_parser = cli::parse_wait_limit)]
    idle_timeout: cli::WaitLimit,
    /// Upstream: give up when the origin is not heard for this long while receiving.
    #[arg(long, default_value = "30s", value_parser = cli::parse_wait_limit)]
    session_timeout: cli::WaitLimit,
    /// Print one JSON report on stdout at the end.
    #[arg(long)]
    json: bool,
    /// Multicast TTL / IPv6 hop limit on both sides.
    #[arg(long, default_value_t = 1)]
    ttl: u32,
    /// Worker threads per side (decoding upstream, encoding downstream).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Encoded blocks the downstream sender keeps (~2 MiB each).
    #[arg(long, default_value_t = mcast::net::send::DEFAULT_CACHE_BLOCKS)]
    cache_blocks: usize,
    /// Create this file once both groups are joined (for scripts).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// The relay's node id (decimal, or hex with 0x; not 0 or 1), upstream and downstream.
    /// Default: derived from /etc/machine-id (or the host name) and the --spool path.
    #[arg(long, value_name = "N", value_parser = parse_node)]
    node_id: Option<u32>,
    /// The host name the origin lists the relay under (default: the system's).
    #[arg(long, value_name = "NAME", value_parser = |s: &str| HostName::new(s).map_err(|e| e.to_string()))]
    host_name: Option<HostName>,
    /// Keyed mode (both sides use the key; see mcast-send --gen-key).
    #[command(flatten)]
    keyed: cli::KeyedArgs,
    /// Signed mode upstream: accept only pushes signed by this ed25519 public key (repeat for
    /// several). The downstream session is the relay's own: unsigned unless --sign-key.
    #[arg(long, value_name = "PUBKEY")]
    trust: Vec<String>,
    /// Sign the downstream session with this ed25519 secret key (see mcast-send
    /// --gen-sign-key), at the origin's version; needs --trust (the relay signs only what it
    /// verified against a trusted origin). Far receivers --trust the relay's public key.
    #[arg(long, value_name = "FILE", requires = "trust")]
    sign_key: Option<PathBuf>,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// `--node-id`: a node id that is not reserved.
fn parse_node(s: &str) -> Result<u32, String> {
    match parse_node_id(s) {
        Some(id) if !RESERVED_NODE_IDS.contains(&id) => Ok(id),
        _ => Err(format!(
            "{s:?} is not a node id: a number from 2 to 4294967295, decimal or hex with 0x"
        )),
    }
}

fn main() {
    let args = Args::parse();
    cli::init_logging(args.verbose);
    let code = run(args).unwrap_or_else(|e| cli::report_error("mcast-relay", &e));
    std::process::exit(code);
}

fn config(args: &Args) -> anyhow::Result<RelayConfig> {
    let usage = |s: String| anyhow::Error::new(cli::UsageError(s));
    if !args.spool.is_dir() {
        return Err(usage(format!(
            "--spool {} is not an existing directory",
            args.spool.display()
        )));
    }
    let downstream_signer = match &args.sign_key {
        None => None,
        Some(path) => {
            let signer = mcast::net::signing::load_signer(path)
                .map_err(|e| usage(format!("--sign-key {e}")))?;
            Some(std::sync::Arc::new(signer))
        }
    };
    cli::check_interface(&args.upstream_interface)?;
    cli::check_interface(&args.downstream_interface)?;
    for g in [&args.upstream, &args.downstream] {
        if let Some(w) = group_scope_warning(g) {
            tracing::warn!("{w}");
        }
    }
    let spool = std::path::absolute(&args.spool).context("--spool")?;
    let me = identity::resolve(args.node_id, args.host_name.clone(), &spool)
        .map_err(|e| usage(e.to_string()))?;
    tracing::info!("node id {:#010x}, host name {}", me.node, me.host);
    let mut sender = SendConfig::new(&spool, args.downstream).sender;
    sender.node = me.node;
    if args.rate == "auto" {
        if args.min_rate > args.max_rate {
            return Err(usage("--min-rate is above --max-rate".into()));
        }
        sender.rate_bps = args.min_rate;
        sender.rate_control =
            mcast::proto::rate::RateControl::Auto(mcast::proto::rate::AutoConfig {
                min_bps: args.min_rate,
                start_bps: args.min_rate,
                max_bps: args.max_rate,
                ..Default::default()
            });
    } else {
        sender.rate_bps = parse_rate(&args.rate).map_err(|e| usage(format!("--rate: {e}")))?;
    }
    if args.fec_overhead == "auto" {
        sender.auto_parity = true;
    } else {
        sender.auto_parity = false;
        sender.fec_overhead = cli::parse_share(&args.fec_overhead, 10.0)
            .map_err(|e| usage(format!("--fec-overhead: {e}")))?;
    }
    sender.expected_receivers = args.receivers;
    sender.linger = args.linger;
    sender.cache_blocks = args.cache_blocks.max(1);
    let mut receiver = mcast::net::recv::RecvConfig::new(args.upstream, &spool).receiver;
    receiver.node = me.node;
    receiver.host = Some(me.host);
    receiver.idle_timeout = args.idle_timeout.0;
    receiver.session_timeout = args.session_timeout.0;
    let keys = args.trust.iter().map(|t| mcast::net::signing::parse_trusted(t));
    let keys = keys.collect::<Result<Vec<_>, _>>().map_err(|e| usage(e.to_string()))?;
    receiver.trust = (!keys.is_empty()).then(|| TrustConfig {
        keys,
        held: Default::default(),
        allow_downgrade: true,
    });
    let key = args.keyed.key_config()?;
    Ok(RelayConfig {
        upstream: args.upstream,
        upstream_interface: args.upstream_interface.clone(),
        downstream: args.downstream,
        downstream_interface: args.downstream_interface.clone(),
        spool,
        window: args.window.max(1),
        receiver,
        sender,
        upstream_key: key.clone(),
        downstream_key: key,
        downstream_signer,
        timeout: args.timeout,
        workers: args.workers.max(1),
        socket: SocketOptions { ttl: args.ttl, ..SocketOptions::default() },
        progress: true,
        ready_file: args.ready_file.clone(),
        driver: Default::default(),
    })
}

fn run(args: Args) -> anyhow::Result<i32> {
    let cfg = config(&args)?;
    let rt = cli::runtime().context("starting the runtime")?;
    rt.block_on(async {
        let shutdown = cli::shutdown_on_signals().context("installing signal handlers")?;
        let report = relay::run(&cfg, &shutdown)
            .await
            .with_context(|| format!("relaying {} to {}", cfg.upstream, cfg.downstream))?;
        eprintln!("{}", summary(&report));
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        }
        Ok(report.status.exit_code())
    })
}

/// The line printed on stderr at the end.
fn summary(r: &RelayReport) -> String {
    let status = format!("{:?}", r.status).to_lowercase();
    let up = &r.upstream;
    let d = &r.downstream;
    let error =
        up.error.as_ref().or(d.aborted.as_ref()).map_or(String::new(), |e| format!("; {e}"));
    format!(
        "{status}: upstream {} ({} B of {}, {} NAKs); downstream {} of {} receivers complete, \
         {} data + {} repair packets, {} NAKs; {} reports forwarded, {} acknowledged, in \
         {:.2} s{error}",
        up.status,
        up.bytes,
        up.size.map_or("?".to_string(), |s| format!("{s} B")),
        up.naks_sent,
        d.complete,
        d.receivers.len(),
        d.data_packets,
        d.repair_packets,
        d.naks_received,
        r.forwarded,
        r.forwarded_acknowledged,
        r.seconds
    )
}
