//! `mcast-send`: push a file, or a directory tree, to every receiver on a multicast group.

use anyhow::Context;
use clap::Parser;
use mcast::cli;
use mcast::net::io::{fmt_bytes, fmt_rate};
use mcast::net::send::{
    self, RosterLists, SendConfig, SendReport, SendStatus, SignSettings, DEFAULT_CACHE_BLOCKS,
};
use mcast::net::signing;
use mcast::net::{group_scope_warning, parse_group, parse_rate, SocketOptions};
use mcast::proto::compress::Codec;
use mcast::proto::layout::{MAX_SYMBOL_SIZE, MIN_SYMBOL_SIZE};
use mcast::proto::sender::{Expected, StragglerPolicy};
use mcast::proto::wire::HostName;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # Push a release to 3 receivers on eth0 at 1 Gbit/s and wait for all of them:
  mcast-send release.tar.gz --group 239.255.0.1:7000 --interface eth0 --rate 1G --receivers 3

  # Push a directory tree (files, empty directories, symlinks, modes); receivers build it at
  # their --output (mcast-recv --output /srv/app/releases/v42):
  mcast-send build/v42 --group 239.255.0.1:7000 --interface eth0 --rate 1G --receivers 3

  # Only some paths of a tree (relative to it; the directories leading to them come too):
  mcast-send build/v42 bin/app etc/app.conf --group 239.255.0.1:7000 --interface eth0

  # Same, by interface address, with 10 % proactive repair and a JSON report:
  mcast-send disk.img --group 239.255.0.1:7000 --interface 198.18.0.1 --rate 800M \\
      --fec-overhead 10% --receivers 200 --timeout 5m --json > report.json

  # Over IPv6, to a transient site-local group on eth0:
  mcast-send release.tar.gz --group '[ff15::1]:7000' --interface eth0 --rate 1G --receivers 3

  # A disk image or a block device: only its data travels (holes and zero runs left out):
  mcast-send --image /dev/sdb --group 239.255.0.1:7000 --interface eth0 --rate 1G --receivers 4

  # A disk image from a pipe, sent as it is read (--max-size, at least the stream's length,
  # is required: it is the size announced; zero blocks, and those past the end, cost one
  # symbol each):
  partclone.ext4 -c -s /dev/sdb -o - | mcast-send --image - --max-size 64G --compress zstd \\
      --group 239.255.0.1:7000 --interface eth0 --rate 1G --receivers 4
  # The same, but a producer that fails (or is killed) fails the push instead of ending it:
  mcast-send --image - --max-size 64G --image-from 'partclone.ext4 -c -s /dev/sdb -o -' \\
      --compress zstd --group 239.255.0.1:7000 --interface eth0 --rate 1G --receivers 4

  # Carousel for hosts that boot at any time: repeat until stopped (Ctrl-C):
  mcast-send image.raw --group 239.255.0.1:7000 --interface eth0 --rate 500M --repeat

A push stopped early (Ctrl-C/SIGTERM, --timeout, an error) first tells the receivers with a
few Abort datagrams (within 0.2 s), so they stop at once with 'the sender stopped' instead of
waiting for their --session-timeout.
  # Wait for exactly the hosts listed (one host name or node id per line, # comments):
  mcast-send release.tar.gz --group 239.255.0.1:7000 --interface eth0 --expect hosts.txt

Exit status: 0 done (with --receivers N: N receivers reported a verified copy; without:
every receiver that reported has one), 1 error, 2 bad arguments (nothing sent), 3 not
confirmed (a receiver failed, fewer than N complete before --timeout, or without --receivers
no receiver reported), 130 interrupted (SIGINT or SIGTERM; the receivers are told).
With --expect FILE, 0 means every listed host reported a verified copy; 3 (not confirmed)
that one failed or never answered before the linger or --timeout (the summary names them).";

/// Push a file or a directory tree to every receiver on an IP multicast group, reliably
/// (RaptorQ FEC + NAK repair).
#[derive(Parser, Debug)]
#[command(name = "mcast-send", version, after_help = EXAMPLES)]
struct Args {
    /// What to send: one regular file, or a directory (its whole tree), optionally followed by
    /// paths relative to that directory to send only those.
    #[arg(required = true, num_args = 1.., value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// PATH is a raw disk image or a block device: only its data travels, holes and all-zero
    /// 64 KiB runs are left out and described in the manifest; receivers write a sparse file
    /// or a device (mcast-recv --to-device). `-` reads the image from standard input as it is
    /// sent (needs --max-size; not with --sign-key or --changed-only, which hash everything
    /// first): every block is sent compressed (lz4 unless --compress), so all-zero blocks cost
    /// one symbol, and the stream's real length travels at the end, covered by the hash list.
    #[arg(long)]
    image: bool,
    /// With --image -: the most bytes standard input may hold (K, M, G, T suffixes, binary),
    /// announced as the image's size; receivers need a device (and a --max-size) at least this
    /// large. A longer stream fails the push (no receiver places anything).
    #[arg(long, requires = "image", value_name = "BYTES", value_parser = cli::parse_size)]
    max_size: Option<u64>,
    /// With --image -: read the stream from the standard output of `sh -c COMMAND` instead of
    /// standard input. Its end counts as the image's end only if COMMAND exits 0; if it fails
    /// or is killed, so does the push (through a plain pipe a producer that dies looks like a
    /// normal end, and receivers would place the shorter image).
    #[arg(long, requires = "max_size", value_name = "COMMAND")]
    image_from: Option<String>,
    /// With --image: send every byte, holes and zeros included (the baseline).
    #[arg(long, requires = "image")]
    no_sparse: bool,
    /// Multicast group and port, IPv4 or IPv6 (the help text gives examples).
    #[arg(
        long,
        help = "Multicast group and port, e.g. 239.255.0.1:7000 or '[ff15::1]:7000'",
        value_parser = |s: &str| parse_group(s).map_err(|e| e.to_string())
    )]
    group: SocketAddr,
    /// Interface to send on: a name or one of its addresses (never the default route).
    #[arg(long)]
    interface: String,
    /// Send rate: `auto` (the default) starts at --min-rate and follows the limiting receiver's
    /// congestion (queueing delay, loss above its random-loss baseline; see
    /// docs/rate-control.md), or a fixed rate in bit/s (k, M, G suffixes), e.g. 200M.
    #[arg(long, default_value = "auto", value_parser = parse_rate_arg)]
    rate: RateArg,
    /// With --rate auto: the floor (and the start) in bit/s. A receiver congested at the floor
    /// for 3 s, while it is a minority of the group, no longer slows the group down.
    #[arg(long, default_value = "10M", value_parser = |s: &str| parse_rate(s).map_err(|e| e.to_string()))]
    min_rate: u64,
    /// With --rate auto: a receiver that has limited the group for 3 s is tried out: its rate
    /// reports are set aside for 3 s while the rate probes; if the others then take at least
    /// its rate divided by F (0.5: twice its rate), it no longer slows the group down (the
    /// straggler policy handles it), else it steers again (a shared bottleneck). Off unless
    /// given; 0 < F < 1.
    #[arg(long, value_name = "F", value_parser = parse_fraction)]
    straggler_fraction: Option<f64>,
    /// With --rate auto: the ceiling in bit/s.
    #[arg(long, default_value = "10G", value_parser = |s: &str| parse_rate(s).map_err(|e| e.to_string()))]
    max_rate: u64,
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
    #[arg(long, conflicts_with = "expect")]
    receivers: Option<u32>,
    /// Wait for exactly the receivers listed in FILE: one host name (as the receiver reports
    /// it, see mcast-recv --host-name) or node id (decimal, or hex with 0x) per line; blank
    /// lines and # comments are skipped. The push ends once every one reported, else after
    /// --linger without NAKs (or --timeout); the summary says who completed, who failed (and
    /// why) and who never answered.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
    /// Only what changed: hash every block first (on all cores), send the hash list before the
    /// payload, wait up to --sync-wait for the receivers to report which blocks they can build
    /// from the version already at their destination, and skip the blocks every expected
    /// receiver holds (NAKs for them are still answered). Needs --expect or --receivers.
    #[arg(long)]
    changed_only: bool,
    /// With --changed-only: the longest wait for the receivers' reports before the payload
    /// (if one is missing by then, every block is sent).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    sync_wait: Duration,
    /// Give up after this long (e.g. 60s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Print one JSON report on stdout at the end.
    #[arg(long)]
    json: bool,
    /// Symbol size in bytes (1400 fits a 1500-byte MTU; larger with jumbo frames).
    #[arg(long, default_value_t = 1400)]
    symbol_size: u16,
    /// Target block size (one RaptorQ source block), e.g. 1MiB. Default 1MiB, or 32KiB with
    /// --changed-only (a block holding any byte of a changed file is sent whole, so smaller
    /// blocks send less of what did not change).
    #[arg(long, value_parser = cli::parse_size)]
    block_size: Option<u64>,
    /// Multicast TTL / IPv6 hop limit (1 keeps datagrams on the local link).
    #[arg(long, default_value_t = 1)]
    ttl: u32,
    /// Encoded blocks kept in memory (~2 MiB each) for repairs; an evicted block is read and
    /// encoded again if a late NAK asks for it. With 20 or more (the default) the symbols of
    /// windows of 8 blocks are interleaved, so a burst of loss costs each block a symbol or
    /// two; fewer sends block by block.
    #[arg(long, default_value_t = DEFAULT_CACHE_BLOCKS)]
    cache_blocks: usize,
    /// Without --receivers: how long to stay after the last NAK once the data is sent.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Threads reading and FEC-encoding blocks.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Compress each block on its own before FEC: zstd (level 3), zstd:LEVEL (1-19) or lz4
    /// (for links of 10 Gbit/s and more). Blocks that do not shrink travel raw; receivers
    /// decompress any block alone and verify the uncompressed bytes.
    #[arg(long, value_name = "CODEC", value_parser = parse_codec)]
    compress: Option<Codec>,
    #[command(flatten)]
    keyed: cli::KeyedArgs,
    /// Write a new random key to PATH (mode 0600, never overwriting) and exit. Give it alone:
    /// `mcast-send --gen-key PATH`.
    #[arg(long, value_name = "PATH")]
    gen_key: Option<PathBuf>,
    /// Signed mode: sign the push with this ed25519 secret key (see --gen-sign-key); every
    /// block is hashed, on all cores, before the first datagram.
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    /// Signed mode: the push's version; receivers refuse one not newer than what they hold
    /// (default: the wall clock in milliseconds).
    #[arg(long, value_name = "N", requires = "sign_key")]
    sign_version: Option<u64>,
    /// Write a new ed25519 secret key to PATH (mode 0600, never overwritten), print its public
    /// key for `mcast-recv --trust` and exit (given alone).
    #[arg(long, value_name = "PATH")]
    gen_sign_key: Option<PathBuf>,
    /// Print the public key of --sign-key FILE and exit (given with --sign-key alone).
    #[arg(long)]
    print_public_key: bool,
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

/// `--straggler-fraction`: a share strictly between 0 and 1 (`0.5` or `50%`).
fn parse_fraction(s: &str) -> Result<f64, String> {
    let f = cli::parse_share(s, 1.0)?;
    if f > 0.0 && f < 1.0 {
        Ok(f)
    } else {
        Err(format!("'{s}': a fraction between 0 and 1, exclusive"))
    }
}

fn parse_budget(s: &str) -> Result<f64, String> {
    if s == "off" {
        return Ok(f64::INFINITY);
    }
    cli::parse_share(s, 100.0)
}

/// The lines printed on stderr at the end of a push.
fn summary(r: &SendReport) -> Vec<String> {
    let status = format!("{:?}", r.status).to_lowercase();
    let rate = fmt_rate(r.goodput_mbps * 1e6);
    let mut amount = if r.payload_bytes_sent >= r.bytes {
        fmt_bytes(r.bytes)
    } else {
        format!("{} of {}", fmt_bytes(r.payload_bytes_sent), fmt_bytes(r.bytes))
    };
    if let Some(t) = &r.tree {
        amount = format!("{} ({t})", r.path.display());
        if r.payload_bytes_sent < r.bytes {
            amount.push_str(&format!(", {} of it", fmt_bytes(r.payload_bytes_sent)));
        }
    }
    let who = match (&r.roster.expected, r.expected_receivers) {
        (Some(list), _) => format!(
            "{} completed, {} failed, {} never answered of {} expected",
            r.roster.completed.len(),
            r.roster.failed.len(),
            r.roster.missing.len(),
            list.len()
        ),
        (None, Some(n)) => format!("{}/{n} receivers complete", r.complete),
        (None, None) if r.receivers.is_empty() => "no receiver reported".to_string(),
        (None, None) => {
            format!("{} of {} reporting receivers complete", r.complete, r.receivers.len())
        }
    };
    let mut lines = vec![format!(
        "{status}: sent {amount} in {:.2} s ({rate}); {who}; {} data + {} repair packets, {} NAKs",
        r.seconds, r.data_packets, r.repair_packets, r.naks_received,
    )];
    if r.skipped_blocks > 0 {
        lines.push(format!(
            "  only what changed: {} blocks ({}) every receiver held were not sent",
            r.skipped_blocks,
            fmt_bytes(r.skipped_bytes)
        ));
    }
    if r.status == SendStatus::Unconfirmed {
        lines.push(
            "  nobody is known to have this file (--receivers N waits for N receivers and fails \
             without them)"
                .to_string(),
        );
    }
    if let Some(why) = &r.auth_error {
        lines.push(format!("  {why}"));
    }
    if let Some(c) = &r.compression {
        lines.push(format!(
            "  compressed ({}): {} of payload as {} ({:.2}x)",
            c.codec,
            fmt_bytes(c.payload_bytes),
            fmt_bytes(c.wire_payload_bytes),
            c.ratio
        ));
    }
    for rx in &r.receivers {
        let why = rx.reason.as_ref().map_or(String::new(), |w| format!(": {w}"));
        lines.push(format!(
            "  {:08x} {} {} {} ({:.2} s, {} NAKs){why}",
            rx.id,
            rx.host.as_deref().unwrap_or("-"),
            rx.addr,
            rx.status,
            rx.seconds,
            rx.naks_sent
        ));
    }
    if r.roster.expected.is_some() {
        lines.extend(expect_lines(&r.roster));
    }
    for d in &r.dropped {
        lines.push(format!(
            "  {:08x} dropped as a straggler (loss {:.1} %, {} repairs asked for)",
            d.id,
            d.loss * 100.0,
            d.repairs_charged
        ));
    }
    lines
}

/// `mcast-send --gen-key PATH` on its own (a push's arguments are not required then).
#[derive(Parser, Debug)]
#[command(name = "mcast-send")]
struct GenKey {
    #[arg(long, value_name = "PATH")]
    gen_key: PathBuf,
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn gen_key(path: &std::path::Path) -> anyhow::Result<i32> {
    mcast::net::keyfile::generate(path).with_context(|| "--gen-key".to_string())?;
    eprintln!("wrote a new key to {} (mode 0600); copy it to every receiver", path.display());
    Ok(0)
}

/// With `--expect`: who completed, who failed (why), who never answered, who was not listed.
fn expect_lines(l: &RosterLists) -> Vec<String> {
    let name = |host: &Option<String>, node: u32| match host {
        Some(h) => format!("{h} ({node:#010x})"),
        None => format!("{node:#010x}"),
    };
    let list = |v: Vec<String>| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    let mut lines = vec![
        format!(
            "  completed ({}): {}",
            l.completed.len(),
            list(l.completed.iter().map(|e| name(&e.host, e.node)).collect())
        ),
        format!("  failed ({}): {}", l.failed.len(), if l.failed.is_empty() { "none" } else { "" }),
    ];
    for f in &l.failed {
        lines.push(format!("    {}: {}", name(&f.host, f.node), f.reason));
    }
    let missing = l.missing.iter().map(|m| match m.node {
        Some(node) => format!("{} (heard as {node:#010x}, no report)", m.host),
        None => m.host.clone(),
    });
    lines.push(format!("  never answered ({}): {}", l.missing.len(), list(missing.collect())));
    if !l.unexpected.is_empty() {
        let extra = l.unexpected.iter().map(|u| format!("{} {}", name(&u.host, u.node), u.status));
        lines.push(format!("  not listed ({}): {}", l.unexpected.len(), list(extra.collect())));
    }
    lines.iter_mut().for_each(|line| *line = line.trim_end().to_string());
    lines
}

/// Read an `--expect` file: one host name or node id per line; blank lines and `#` comments
/// skipped. At least one entry; each must be a host name or a node id.
fn read_expect(path: &std::path::Path) -> Result<Vec<Expected>, cli::UsageError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| cli::UsageError(format!("--expect {shown}: {e}")))?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let x = Expected::new(entry);
        if x.node.is_none() && HostName::new(entry).is_err() {
            return Err(cli::UsageError(format!(
                "--expect {shown}: line {}: {entry:?} is neither a host name (1 to 64 of \
                 A-Z a-z 0-9 . - _) nor a node id",
                i + 1
            )));
        }
        if !entries.contains(&x) {
            entries.push(x);
        }
    }
    if entries.is_empty() {
        return Err(cli::UsageError(format!("--expect {shown}: no host listed")));
    }
    Ok(entries)
}

/// `--gen-sign-key PATH` or `--print-public-key --sign-key FILE`: key handling, no push.
#[derive(Parser, Debug)]
#[command(name = "mcast-send")]
struct KeyArgs {
    #[arg(long)]
    gen_sign_key: Option<PathBuf>,
    #[arg(long)]
    print_public_key: bool,
    #[arg(long)]
    sign_key: Option<PathBuf>,
}

/// Runs a key action if the command line asks for one (then its exit code).
fn key_action() -> Option<i32> {
    let wanted = std::env::args().any(|a| a == "--gen-sign-key" || a == "--print-public-key");
    if !wanted {
        return None;
    }
    let args = KeyArgs::parse();
    cli::init_logging(0);
    let run = || -> anyhow::Result<i32> {
        let signer = match (&args.gen_sign_key, &args.sign_key, args.print_public_key) {
            (Some(path), None, false) => signing::generate_key(path)?,
            (None, Some(path), true) => signing::load_signer(path)?,
            _ => {
                return Err(cli::UsageError(
                    "use --gen-sign-key PATH, or --print-public-key --sign-key FILE".into(),
                )
                .into())
            }
        };
        println!("{}", signing::hex_key(&signer.public_key()));
        Ok(0)
    };
    Some(run().unwrap_or_else(|e| cli::report_error("mcast-send", &e)))
}

fn main() {
    if let Some(code) = key_action() {
        std::process::exit(code);
    }
    if let Ok(g) = GenKey::try_parse() {
        cli::init_logging(g.verbose);
        let code = gen_key(&g.gen_key).unwrap_or_else(|e| cli::report_error("mcast-send", &e));
        std::process::exit(code);
    }
    let args = Args::parse();
    cli::init_logging(args.verbose);
    let code = run(args).unwrap_or_else(|e| cli::report_error("mcast-send", &e));
    std::process::exit(code);
}

/// Check what can be checked before any socket opens, then push.
fn run(args: Args) -> anyhow::Result<i32> {
    if !(MIN_SYMBOL_SIZE..=MAX_SYMBOL_SIZE).contains(&args.symbol_size) {
        return Err(cli::UsageError(format!(
            "--symbol-size must be between {MIN_SYMBOL_SIZE} and {MAX_SYMBOL_SIZE}"
        ))
        .into());
    }
    if args.gen_key.is_some() {
        return Err(cli::UsageError("--gen-key PATH is given alone".to_string()).into());
    }
    if args.gen_sign_key.is_some() || args.print_public_key {
        return Err(cli::UsageError("--gen-sign-key and --print-public-key go alone".into()).into());
    }
    if args.changed_only && args.expect.is_none() && args.receivers.is_none() {
        return Err(cli::UsageError(
            "--changed-only needs --expect or --receivers (whose holdings to wait for)".into(),
        )
        .into());
    }
    if args.image {
        check_image(&args.paths)?;
        let stream = args.paths[0].as_os_str() == "-";
        let hashes_first =
            [("--sign-key", args.sign_key.is_some()), ("--changed-only", args.changed_only)];
        cli::check_stream(stream, args.max_size, &hashes_first, args.no_sparse)?;
    } else {
        cli::check_source(&args.paths[0], &args.paths[1..])?;
    }
    cli::check_interface(&args.interface)?;
    let expect = args.expect.as_deref().map(read_expect).transpose()?;
    if let Some(w) = group_scope_warning(&args.group) {
        tracing::warn!("{w}");
    }
    let rt = cli::runtime().context("starting the runtime")?;
    rt.block_on(push(args, expect))
}

/// `--image PATH`: one path, `-` or something that exists and is not a directory.
fn check_image(paths: &[PathBuf]) -> Result<(), cli::UsageError> {
    let [path] = paths else {
        return Err(cli::UsageError("--image takes one PATH (a file, a device or -)".into()));
    };
    if path.as_os_str() == "-" {
        return Ok(());
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            Err(cli::UsageError(format!("--image {}: a directory is not an image", path.display())))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(cli::UsageError(format!("--image {}: {e}", path.display()))),
    }
}

/// `--block-size` by default.
const DEFAULT_BLOCK_BYTES: u64 = 1 << 20;
/// `--block-size` by default with `--changed-only`.
const CHANGED_ONLY_BLOCK_BYTES: u64 = 32 << 10;

/// `--rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateArg {
    /// Automatic rate control.
    Auto,
    /// A fixed rate, bit/s.
    Fixed(u64),
}

/// `--rate`: `auto` or a fixed rate.
fn parse_rate_arg(s: &str) -> Result<RateArg, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(RateArg::Auto);
    }
    parse_rate(s).map(RateArg::Fixed).map_err(|e| e.to_string())
}

fn config(args: &Args) -> anyhow::Result<SendConfig> {
    let mut cfg = SendConfig::new(&args.paths[0], args.group);
    cfg.extra_paths = args.paths[1..].to_vec();
    let s = &mut cfg.sender;
    match args.rate {
        RateArg::Fixed(bps) => s.rate_bps = bps,
        RateArg::Auto => {
            if args.min_rate > args.max_rate {
                anyhow::bail!(cli::UsageError("--min-rate is above --max-rate".into()));
            }
            s.rate_bps = args.min_rate;
            s.rate_control =
                mcast::proto::rate::RateControl::Auto(mcast::proto::rate::AutoConfig {
                    min_bps: args.min_rate,
                    start_bps: args.min_rate,
                    max_bps: args.max_rate,
                    straggler_fraction: args.straggler_fraction,
                    ..Default::default()
                });
        }
    }
    s.fec_overhead = match args.fec_overhead {
        Overhead::Auto => 0.05,
        Overhead::Fixed(v) => v,
    };
    s.auto_parity = args.fec_overhead == Overhead::Auto;
    s.repeat = args.repeat;
    s.straggler = StragglerPolicy { budget: args.straggler_budget, factor: args.straggler_factor };
    s.expected_receivers = args.receivers;
    s.linger = args.linger;
    s.changed_only = args.changed_only.then_some(args.sync_wait);
    s.cache_blocks = args.cache_blocks.max(1);
    cfg.timeout = args.timeout;
    cfg.symbol_size = args.symbol_size;
    cfg.block_bytes = args.block_size.unwrap_or(if args.changed_only {
        CHANGED_ONLY_BLOCK_BYTES
    } else {
        DEFAULT_BLOCK_BYTES
    });
    cfg.progress = true;
    cfg.workers = args.workers;
    cfg.key = args.keyed.key_config()?;
    cfg.image = args.image.then(|| mcast::storage::ImageOptions {
        sparse: !args.no_sparse,
        stream_bound: args.max_size,
        stream_command: args.image_from.clone(),
        ..Default::default()
    });
    cfg.compress = args.compress;
    if args.max_size.is_some() && cfg.compress.is_none() {
        // A stream's zero blocks (and those past its end) must cost (almost) nothing: every
        // block of a stream travels compressed, with the cheapest codec unless told otherwise.
        cfg.compress = Some(Codec::Lz4);
    }
    Ok(cfg)
}

fn parse_codec(s: &str) -> Result<Codec, String> {
    Codec::parse(s).map_err(|e| e.to_string())
}

async fn push(args: Args, expect: Option<Vec<Expected>>) -> anyhow::Result<i32> {
    let shutdown = cli::shutdown_on_signals().context("installing signal handlers")?;
    let mut cfg = config(&args)?;
    cfg.expect = expect;
    if let Some(path) = &args.sign_key {
        let signer = signing::load_signer(path).context("loading the signing key")?;
        let version = args.sign_version.unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(0, |d| d.as_millis() as u64)
        });
        let hash_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        cfg.signing = Some(SignSettings { signer: Arc::new(signer), version, hash_threads });
    }
    let opts = SocketOptions { ttl: args.ttl, ..SocketOptions::default() };
    let mut sock = send::open_socket(args.group, &args.interface, &opts).with_context(|| {
        format!(
            "listening for feedback on UDP port {} (the sender's port: group port + 1) on {}",
            u32::from(args.group.port()) + 1,
            args.interface
        )
    })?;
    let report = send::run(&mut sock, &cfg, &shutdown)
        .await
        .with_context(|| format!("sending {}", args.paths[0].display()))?;
    for line in summary(&report) {
        eprintln!("{line}");
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(match report.status {
        SendStatus::Complete => 0,
        SendStatus::Incomplete | SendStatus::Unconfirmed | SendStatus::Timeout => {
            cli::EXIT_INCOMPLETE
        }
        SendStatus::Interrupted => cli::EXIT_INTERRUPTED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = ["mcast-send", "f", "--group", "239.255.0.1:7000", "--interface", "lo"];
        Args::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn a_stream_needs_a_bound_and_refuses_what_hashes_everything_first() {
        let stream = |extra: &[&str]| {
            let base = ["mcast-send", "-", "--image", "--group", "239.255.0.1:7000"];
            let a = Args::try_parse_from(base.iter().chain(&["--interface", "lo"]).chain(extra));
            let a = a.unwrap();
            let first = [("--sign-key", a.sign_key.is_some()), ("--changed-only", a.changed_only)];
            cli::check_stream(true, a.max_size, &first, a.no_sparse).map_err(|e| e.0)
        };
        assert!(stream(&[]).unwrap_err().contains("needs --max-size"));
        assert_eq!(stream(&["--max-size", "4G"]), Ok(()));
        let signed = stream(&["--max-size", "4G", "--sign-key", "k"]).unwrap_err();
        assert!(signed.contains("--sign-key cannot work on a stream"), "{signed}");
        let changed = stream(&["--max-size", "4G", "--changed-only", "--receivers", "2"]);
        assert!(changed.unwrap_err().contains("--changed-only cannot work on a stream"));
        assert!(stream(&["--max-size", "4G", "--no-sparse"]).is_err());
        // --max-size is for a pipe only, and needs --image.
        let file = parse(&["--image", "--max-size", "4G"]).unwrap();
        let refused = cli::check_stream(false, file.max_size, &[], false).unwrap_err().0;
        assert!(refused.contains("is for --image -"), "{refused}");
        assert!(parse(&["--max-size", "4G"]).is_err());
        // Without --compress a stream travels lz4-compressed; with it, as asked.
        let a = |extra: &[&str]| {
            let base = ["mcast-send", "-", "--image", "--max-size", "1T", "--group"];
            let args = base.iter().chain(&["239.255.0.1:7000", "--interface", "lo"]).chain(extra);
            config(&Args::try_parse_from(args).unwrap()).unwrap()
        };
        assert_eq!(a(&[]).compress, Some(Codec::Lz4));
        assert_eq!(a(&[]).image.unwrap().stream_bound, Some(1 << 40));
        assert_eq!(a(&["--compress", "zstd"]).compress, Some(Codec::Zstd { level: 3 }));
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
        assert_eq!(a.cache_blocks, DEFAULT_CACHE_BLOCKS);
    }

    #[test]
    fn expect_files_list_names_and_ids_and_refuse_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = |text: &str| {
            let p = dir.path().join("hosts.txt");
            std::fs::write(&p, text).unwrap();
            read_expect(&p)
        };
        let list = file("# fleet\nweb-1\n  0x0000002a  # by id\n\nweb-1\n17\n").unwrap();
        let got: Vec<_> = list.iter().map(|x| (x.entry.as_str(), x.node)).collect();
        assert_eq!(got, [("web-1", None), ("0x0000002a", Some(42)), ("17", Some(17))]);
        assert!(file("# nobody\n\n").unwrap_err().0.ends_with("no host listed"));
        let bad = file("web-1\nweb 2\n").unwrap_err().0;
        assert!(bad.contains("line 2: \"web 2\" is neither a host name"), "{bad}");
        assert!(file(&"h".repeat(64)).is_ok());
        assert!(file(&"h".repeat(65)).is_err(), "65 bytes is no host name");
        let missing = read_expect(&dir.path().join("nosuch")).unwrap_err().0;
        assert!(missing.starts_with("--expect ") && missing.contains("No such file"), "{missing}");
        assert!(parse(&["--expect", "hosts.txt"]).is_ok());
        assert!(parse(&["--expect", "hosts.txt", "--receivers", "2"]).is_err(), "one or the other");
    }

    #[test]
    fn rate_is_automatic_unless_given() {
        use mcast::proto::rate::RateControl;
        let auto = config(&parse(&["--min-rate", "20M", "--max-rate", "1G"]).unwrap()).unwrap();
        let RateControl::Auto(a) = &auto.sender.rate_control else { panic!("not auto") };
        assert_eq!((a.min_bps, a.start_bps, a.max_bps), (20_000_000, 20_000_000, 1_000_000_000));
        assert_eq!(auto.sender.rate_bps, 20_000_000);
        let fixed = config(&parse(&["--rate", "300M"]).unwrap()).unwrap();
        assert_eq!(fixed.sender.rate_control, RateControl::Fixed);
        assert_eq!(fixed.sender.rate_bps, 300_000_000);
        assert!(config(&parse(&["--rate", "AUTO"]).unwrap()).is_ok());
        // The floor may equal the ceiling, not exceed it.
        assert!(config(&parse(&["--min-rate", "1G", "--max-rate", "1G"]).unwrap()).is_ok());
        assert!(config(&parse(&["--min-rate", "1001M", "--max-rate", "1G"]).unwrap()).is_err());
        assert!(parse(&["--rate", "fast"]).is_err());
    }

    #[test]
    fn config_layers_the_core_settings() {
        let a = parse(&["--rate", "1G", "--receivers", "3", "--cache-blocks", "20"]).unwrap();
        let cfg = config(&a).unwrap();
        assert_eq!(cfg.sender.rate_bps, 1_000_000_000);
        assert_eq!(cfg.sender.expected_receivers, Some(3));
        assert_eq!(cfg.sender.cache_blocks, 20);
        assert!(cfg.sender.auto_parity);
        assert_eq!(cfg.sender.burst_bytes, mcast::net::batch::MAX_GSO_BYTES);
        let v6 = Args::try_parse_from([
            "mcast-send",
            "f",
            "--group",
            "[ff15::1]:7000",
            "--interface",
            "veth0",
        ])
        .unwrap();
        assert_eq!(config(&v6).unwrap().group, "[ff15::1]:7000".parse::<SocketAddr>().unwrap());
    }
}
