//! `mcast-recv`: join a multicast group and receive, verify and place what is pushed to it.

use anyhow::Context;
use clap::Parser;
use mcast::cli;
use mcast::net::daemon::{self, DaemonArgs, DaemonConfig};
use mcast::net::identity::{self, RESERVED_NODE_IDS};
use mcast::net::io::{fmt_bytes, fmt_rate};
use mcast::net::recv::{self, RecvConfig, RecvReport, RecvStatus};
use mcast::net::{group_scope_warning, parse_group, SocketOptions};
use mcast::proto::receiver::SenderFilter;
use mcast::proto::receiver::TrustConfig;
use mcast::proto::sender::parse_node_id;
use mcast::proto::wire::HostName;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # Receive one object into /srv/releases and exit:
  mcast-recv --group 239.255.0.1:7000 --interface eth0 --output /srv/releases --once

  # The same over IPv6:
  mcast-recv --group '[ff15::1]:7000' --interface eth0 --output /srv/releases --once

  # Receive a tree (mcast-send DIR) as /srv/app/releases/v42, swapping out any previous one:
  mcast-recv --group 239.255.0.1:7000 --interface eth0 --output /srv/app/releases/v42 \\
      --once --replace

  # Lab: discard 5 % of datagrams on purpose, JSON report, give up after a minute:
  mcast-recv --group 239.255.0.1:7000 --interface 127.0.0.1 --output /tmp/in --once \\
      --drop-rate 0.05 --drop-seed 7 --timeout 60s --json

An image push (mcast-send --image) goes to a sparse file (--output) or onto a device
(--to-device /dev/sdY, written in place; see docs/images.md).
A single file is placed inside --output DIR (which must exist) as DIR/<name>. A tree's root
is --output DEST itself: DEST may be absent (its parent must exist) or an empty directory; an
existing tree is refused unless --replace, which swaps the new tree in with one
renameat2(RENAME_EXCHANGE) of the staging directory beside DEST, then removes the old tree.
Nothing appears at the destination until the whole object has verified (BLAKE3); an
interrupted or failed receive leaves any previous file or tree in place.
Faults end a receive at once: the first storage error (no space left, a read-only disk),
or less free space than the object when its manifest arrives (unless --no-space-check),
fails it, removes what was staged and reports the reason to the sender; a sender that is
stopped (Ctrl-C) tells its receivers, which fail with 'the sender stopped'. --output is
checked for writability (a probe file, removed at once) before the group is joined.
While no sender has announced a session, a line on stderr says so every 10 s; after
--idle-timeout (default 10 min) the receiver gives up. Once receiving, a sender silent for
--session-timeout (default 30 s; a killed sender) ends it with 'the sender went silent'.
Without --once each next push gets --idle-timeout again: use --idle-timeout 0 for a service.
Exit status: 0 complete (verified and placed, also when the sender never acknowledged the
report), 1 error or failed (nothing placed; also another mcast-recv receiving into the same
--output), 2 bad arguments (nothing joined; also an --output that cannot be written), 3 timed
out (--timeout, --idle-timeout or --session-timeout passed first), 130 interrupted (SIGINT or
SIGTERM; what is staged stays for a resume).

Receiver service (docs/daemon.md; contrib/mcast-recv.service is a systemd unit):
  mcast-recv --daemon --output-root /srv/drops --keep 2 --group 239.255.0.1:7000 \\
      --interface eth0 --on-complete 'systemctl reload app' --json
stays joined and receives push after push: a single file into /srv/drops/<file name>, a
tree pushed as `mcast-send PARENT NAME` into /srv/drops/NAME. Each push is received into
/srv/drops/.mcast-versions/<name>/<n> and /srv/drops/<name>, a symlink, is flipped to it
once it verified; --keep old versions stay. A failed push leaves the current version; a
session is received once (a --repeat carousel too), and a push identical to the current
version is not placed again. --on-complete runs `sh -c CMD` (MCAST_PATH, MCAST_NAME,
MCAST_OBJECT_HASH, MCAST_VERSION ... in its environment), never a command from the sender;
its failure is logged. sd_notify: READY=1, STATUS=, WATCHDOG=1, STOPPING=1. --json prints
one line per push. SIGTERM/SIGINT end it with exit 0 (a push in flight is not placed);
--idle-timeout does not apply.";

/// Receive files pushed with mcast-send: join, decode, verify, place atomically.
#[derive(Parser, Debug)]
#[command(name = "mcast-recv", version, after_help = EXAMPLES)]
struct Args {
    /// Multicast group and port, IPv4 or IPv6 (the help text gives examples).
    #[arg(
        long,
        help = "Multicast group and port, e.g. 239.255.0.1:7000 or '[ff15::1]:7000'",
        value_parser = |s: &str| parse_group(s).map_err(|e| e.to_string())
    )]
    group: SocketAddr,
    /// Interface to join on: a name or one of its addresses.
    #[arg(long)]
    interface: String,
    /// Where to place what arrives: the directory a single file goes into (must exist), or
    /// the root of a tree (absent, an empty directory, or with --replace an existing tree).
    /// An image push (mcast-send --image) is written as a sparse file: DEST/<name> when DEST is
    /// a directory, else DEST itself.
    #[arg(long, value_name = "DEST", required_unless_present_any = ["daemon", "to_device"])]
    output: Option<PathBuf>,
    /// Write an image push (mcast-send --image) in place onto this block device. Refused if it
    /// is mounted, held (LVM, dm-crypt, md), opened exclusively elsewhere or smaller than the
    /// image, unless --force. Its first 4 KiB hold an "incomplete" marker until every block
    /// verified; the first 1 MiB of the image is written last.
    #[arg(long, value_name = "DEV", conflicts_with_all = ["output", "replace"])]
    to_device: Option<PathBuf>,
    /// With --to-device: write even to a mounted, held, busy or smaller device, or to a
    /// regular file standing in for a device (grown to the image's size).
    #[arg(long, requires = "to_device")]
    force: bool,
    /// With --to-device: zero the image's holes on the device (BLKZEROOUT) instead of leaving
    /// the old contents there.
    #[arg(long, requires = "to_device")]
    zero_fill: bool,
    /// A tree may replace an existing tree at --output: swapped atomically (RENAME_EXCHANGE),
    /// then the old one is removed. Without it, an existing non-empty DEST fails the push.
    #[arg(long)]
    replace: bool,
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
    /// Give up (exit 3) when no sender announces a session this long after the start (for
    /// each object without --once); 0 waits forever.
    #[arg(long, default_value = "10min", value_parser = cli::parse_wait_limit)]
    idle_timeout: cli::WaitLimit,
    /// Give up (exit 3, "the sender went silent") when the sender is not heard for this long
    /// while receiving; 0 waits forever. Keep it well above the group round-trip time (at most
    /// 5 s) and the sender's announcement interval (100 ms).
    #[arg(long, default_value = "30s", value_parser = cli::parse_wait_limit)]
    session_timeout: cli::WaitLimit,
    /// Do not compare the free space where the object is staged with its size when the
    /// manifest arrives (a sparse file may need less than its size).
    #[arg(long)]
    no_space_check: bool,
    /// From a --changed-only (or signed) sender, do not take the blocks that match from the
    /// version already at --output: fetch every block.
    #[arg(long)]
    no_reuse: bool,
    /// Create this file once the group is joined (for scripts).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Threads decoding blocks that lost symbols.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Multicast TTL / IPv6 hop limit of NAKs and reports.
    #[arg(long, default_value_t = 1)]
    ttl: u32,
    /// Blocks held in memory at most (collecting or decoding).
    #[arg(long, default_value_t = mcast::proto::receiver::ReceiverConfig::default().max_pending_blocks)]
    max_pending_blocks: usize,
    /// Take a push only from this sender: an IP address, or IP:PORT to pin its source port
    /// too. Announcements from anyone else are counted and ignored (open mode on a shared
    /// link: anyone can announce).
    #[arg(long, value_name = "ADDR")]
    sender: Option<SenderFilter>,
    /// Refuse a push whose payload is larger than this (e.g. 500G, units K, M, G), before anything is sized
    /// by it, and a disk image (mcast-send --image) whose size, holes included, is larger.
    /// Default: no limit but the protocol's (512 Ki blocks).
    #[arg(long, value_name = "BYTES", value_parser = cli::parse_size)]
    max_size: Option<u64>,
    /// Before placing the file, read it back and check every block against the verified hashes.
    #[arg(long)]
    verify_readback: bool,
    #[command(flatten)]
    keyed: cli::KeyedArgs,
    #[command(flatten)]
    service: DaemonArgs,
    /// This receiver's node id (decimal, or hex with 0x; not 0 or 1). Default: derived from
    /// /etc/machine-id (or the host name) and the absolute --output path, so it is stable
    /// across runs and two receivers on one host with different --output differ.
    #[arg(long, value_name = "N", value_parser = parse_node)]
    node_id: Option<u32>,
    /// The host name the sender lists this receiver under (default: the system's). 1 to 64
    /// of A-Z a-z 0-9 . - _
    #[arg(long, value_name = "NAME", value_parser = |s: &str| HostName::new(s).map_err(|e| e.to_string()))]
    host_name: Option<HostName>,
    /// Signed mode: accept only pushes signed by this ed25519 public key (a file, or the key as
    /// 64 hex digits or base64; repeat for several keys). Unsigned pushes, other keys' and a
    /// version not newer than the one already held for this --output are refused, and the
    /// receiver keeps waiting.
    #[arg(long, value_name = "PUBKEY")]
    trust: Vec<String>,
    /// Signed mode: also accept a version not newer than the one already held (a rollback).
    #[arg(long, requires = "trust")]
    allow_downgrade: bool,
    /// Local repairer: also answer the NAKs other receivers send for blocks this one holds
    /// and verified, with repair symbols of its own (an ESI slot the sender assigns), after a
    /// short GRTT-scaled backoff, unless someone else covers the need first. It stays after
    /// its own copy is placed while the push goes on (see --linger). Not for compressed pushes.
    #[arg(long)]
    repairer: bool,
    /// With --repairer: rate cap of its repair symbols, bit/s with k/M/G suffix.
    #[arg(long, value_name = "RATE", default_value = "50M", requires = "repairer",
          value_parser = |s: &str| mcast::net::parse_rate(s).map_err(|e| e.to_string()))]
    repair_rate: u64,
    /// With --repairer: blocks kept in memory to repair from; older ones are read back from the
    /// staging file or tree (or, once placed, the destination) and checked against their hash.
    #[arg(long, value_name = "BLOCKS", default_value_t = 64, requires = "repairer",
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    repair_window: u32,
    /// With --repairer: stay at most this long after the copy is placed (default: until the
    /// sender stops: an Abort, or 1 s without hearing it).
    #[arg(long, value_name = "DURATION", requires = "repairer", value_parser = humantime::parse_duration)]
    linger: Option<Duration>,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// Where the push goes: `--output` or `--to-device`.
/// `--to-device DEV`: a block device, or with `--force` a regular file.
fn check_device(dev: &std::path::Path, force: bool) -> Result<(), cli::UsageError> {
    use std::os::unix::fs::FileTypeExt;
    let shown = dev.display();
    match std::fs::metadata(dev) {
        Ok(m) if m.file_type().is_block_device() => Ok(()),
        Ok(m) if m.is_file() && force => Ok(()),
        Ok(_) => Err(cli::UsageError(format!(
            "--to-device {shown} is not a block device (--force writes to a regular file)"
        ))),
        Err(e) => Err(cli::UsageError(format!("--to-device {shown}: {e}"))),
    }
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

/// The line printed on stderr at the end of each object.
fn summary(r: &RecvReport) -> String {
    let status = format!("{:?}", r.status).to_lowercase();
    let naks = format!("{} NAKs sent, {} suppressed", r.naks_sent, r.naks_suppressed);
    let error = r.error.as_ref().map_or(String::new(), |e| format!("; {e}"));
    let Some(t) = r.transfer_seconds else {
        return format!("{status}: nothing received from a sender in {:.2} s{error}", r.seconds);
    };
    let rate = fmt_rate(r.bytes as f64 * 8.0 / t.max(1e-3));
    let what = match &r.tree {
        Some(tree) => format!("tree: {tree}"),
        None => fmt_bytes(r.bytes),
    };
    match (&r.path, r.size) {
        (Some(p), _) => format!(
            "{status}: {} ({what}) in {t:.2} s from the first datagram ({rate}); {naks}",
            p.display(),
        ),
        (None, Some(size)) => format!(
            "{status}: held {} of {} after {t:.2} s from the first datagram (not placed: \
             nothing at the destination changed); {naks}{error}",
            fmt_bytes(r.bytes),
            fmt_bytes(size)
        ),
        (None, None) => format!("{status}: no manifest after {t:.2} s; {naks}{error}"),
    }
}

fn main() {
    let args = Args::parse();
    cli::init_logging(args.verbose);
    let code = run(args).unwrap_or_else(|e| cli::report_error("mcast-recv", &e));
    std::process::exit(code);
}

/// Check what can be checked before joining, then receive.
fn run(args: Args) -> anyhow::Result<i32> {
    let output = output_of(&args)?;
    match &args.to_device {
        Some(dev) => check_device(dev, args.force)?,
        None => cli::check_output(&output)?,
    }
    cli::check_interface(&args.interface)?;
    let me = identity::resolve(args.node_id, args.host_name.clone(), &output)
        .map_err(|e| cli::UsageError(e.to_string()))?;
    if let Some(w) = group_scope_warning(&args.group) {
        tracing::warn!("{w}");
    }
    let keys = args.trust.iter().map(|t| mcast::net::signing::parse_trusted(t));
    let keys = keys.collect::<Result<Vec<_>, _>>().map_err(|e| cli::UsageError(e.to_string()))?;
    let trust = (!keys.is_empty()).then(|| TrustConfig {
        keys,
        held: Default::default(),
        allow_downgrade: args.allow_downgrade,
    });
    let rt = cli::runtime().context("starting the runtime")?;
    rt.block_on(receive(args, output, me, trust))
}

/// `--output`, or with `--daemon` the `--output-root` (absolute: the service hands paths
/// under it to `--on-complete`).
fn output_of(args: &Args) -> anyhow::Result<PathBuf> {
    let Some(root) = &args.service.output_root else {
        if let Some(dev) = &args.to_device {
            return Ok(dev.clone());
        }
        return args.output.clone().context("--output is required");
    };
    if !root.is_dir() {
        let why = format!("--output-root {} is not an existing directory", root.display());
        return Err(cli::UsageError(why).into());
    }
    std::path::absolute(root).with_context(|| format!("--output-root {}", root.display()))
}

async fn receive(
    args: Args,
    output: PathBuf,
    me: identity::NodeIdentity,
    trust: Option<TrustConfig>,
) -> anyhow::Result<i32> {
    let shutdown = cli::shutdown_on_signals().context("installing signal handlers")?;
    let mut cfg = RecvConfig::new(args.group, &output);
    cfg.image = mcast::storage::image_sink::ImageTarget {
        device: args.to_device.is_some(),
        force: args.force,
        zero_fill: args.zero_fill,
    };
    cfg.replace = args.replace;
    cfg.drop_rate = args.drop_rate;
    cfg.drop_seed = args.drop_seed;
    cfg.timeout = args.timeout;
    cfg.interface = args.interface.clone();
    cfg.space_check = !args.no_space_check;
    cfg.reuse_previous = !args.no_reuse;
    cfg.receiver.idle_timeout = args.idle_timeout.0;
    cfg.receiver.session_timeout = args.session_timeout.0;
    cfg.ready_file = args.ready_file.clone();
    cfg.progress = true;
    cfg.workers = args.workers;
    cfg.verify_readback = args.verify_readback;
    cfg.receiver.max_pending_blocks = args.max_pending_blocks.max(1);
    cfg.key = args.keyed.key_config()?;
    tracing::info!("node id {:#010x}, host name {}", me.node, me.host);
    cfg.receiver.node = me.node;
    cfg.receiver.host = Some(me.host);
    cfg.receiver.sender = args.sender;
    cfg.receiver.max_size = args.max_size;
    cfg.receiver.trust = trust;
    cfg.repairer = args.repairer.then_some(recv::repairer::RepairSettings {
        rate_bps: args.repair_rate,
        window_blocks: args.repair_window as usize,
        linger: args.linger,
    });
    if args.repairer {
        // A repairer's receiver NAKs first: the sender repairs it before anyone else.
        cfg.receiver = mcast::proto::repairer::receiver_config(cfg.receiver);
    }
    let opts =
        SocketOptions { ttl: args.ttl, recv_buffer: cfg.recv_buffer, ..SocketOptions::default() };
    let mut sock = recv::open_socket(args.group, &args.interface, &opts)
        .with_context(|| format!("joining {} on {}", args.group, args.interface))?;
    if args.service.daemon {
        let d = DaemonConfig {
            root: output.clone(),
            keep: args.service.keep,
            on_complete: args.service.on_complete.clone(),
            on_complete_timeout: args.service.on_complete_timeout,
            json: args.json,
        };
        daemon::serve(&mut sock, cfg, &d, &shutdown)
            .await
            .with_context(|| format!("serving pushes into {}", output.display()))?;
        return Ok(0);
    }
    loop {
        let report = recv::run(&mut sock, &cfg, &shutdown)
            .await
            .with_context(|| format!("receiving into {}", output.display()))?;
        eprintln!("{}", summary(&report));
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
            return Ok(code);
        }
        cfg.receiver.skip_sessions.extend(report.session);
        cfg.ready_file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let base =
            ["mcast-recv", "--group", "239.255.0.1:7000", "--interface", "lo", "--output", "."];
        Args::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn node_ids_and_host_names_are_checked() {
        assert_eq!(parse(&["--node-id", "2"]).unwrap().node_id, Some(2));
        assert_eq!(parse(&["--node-id", "0xffffffff"]).unwrap().node_id, Some(u32::MAX));
        for reserved in ["0", "1", "0x1"] {
            assert!(parse(&["--node-id", reserved]).is_err(), "{reserved} is reserved");
        }
        assert!(parse(&["--node-id", "0x100000000"]).is_err());
        let a = parse(&["--host-name", "rack1-07"]).unwrap();
        assert_eq!(a.host_name.unwrap().as_str(), "rack1-07");
        assert!(parse(&["--host-name", &"h".repeat(64)]).is_ok());
        assert!(parse(&["--host-name", &"h".repeat(65)]).is_err());
        assert!(parse(&["--host-name", "a b"]).is_err());
        assert_eq!(parse(&[]).unwrap().node_id, None);
    }
}
