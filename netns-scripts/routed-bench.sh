#!/usr/bin/env bash
# The race across a router (netns-scripts/routed.sh): one file pushed from the sender on
# segment A to the hosts on segment B (and A, with --receivers-a) by
#   mcast       mcast-send/mcast-recv through multicast routing (smcroute or pimd), --ttl 8;
#   relay       no multicast routing: mcast-relay on the router re-sends the push on B;
#   repairers   as mcast, with --repairers R of the B receivers running `mcast-recv --repairer`
#               (their ports as lossy as the others');
#   repairers-clean  the same with the repairers' ports clean (routed.sh --clean-b R);
#   bittorrent  aria2c across the unicast router (in the --mrouting lab) (opentracker and the seed on the sender, every
#               receiver downloading and seeding at once; DHT, PEX, LPD and encryption off).
# Needs root. Each variant gets a fresh lab (`routed.sh up`), torn down on exit. A variant whose
# binary is missing (mcast-relay; mcast-recv without --repairer) is skipped with a message.
#
# This script owns: the routed lab while it runs (LAB_PREFIX, default "mcl-rt-"), a work
# directory /tmp/mcast-routed.XXXXXX (removed on exit unless --keep), the processes it starts
# inside the lab namespaces (stopped by PID), and its outputs OUT/routed.csv (appended) and
# OUT/routed.md (this invocation's table).
#
# Per run (one line, and a CSV row):
#   seconds     from the sender's start until the last (non-repairer) receiver holds the whole
#               file (mcast-recv exits; aria2c's download-complete hook); repairers stay until
#               the push ends by design, their copies are checked all the same;
#   ok          copies identical to the source (sha256), over every receiving host;
#   origin_complete    receivers the origin's JSON report counts complete (through the relay:
#               the relay's aggregated reports);
#   origin_repair      repair datagrams the origin sent (mcast-send --json repair_packets; in
#               brackets the proactive ones among them, stats.proactive_repair_packets);
#   relay_downstream_repair  repair datagrams the relay sent on B (its --json report);
#   first_pass_loss    datagrams the receivers missed on the first pass (their own count, as
#               bench.sh prints it): the loss they really saw;
#   repairer_dgrams    repair datagrams the repairers sent (their JSON reports);
#   wire_a, wire_b     rx+tx bytes over every port of bridge A / bridge B during the run (a
#               frame that crosses a bridge counts on its way in and on each way out, as in
#               bench.sh: the segment's fabric cost; the sender's stream to the router is 2x);
#   router_rcvbuf_drops  datagrams the router's kernel dropped for a full socket buffer (the
#               relay's sockets live there);
#   cpu_s       CPU seconds (user+system, children included) per receiver, mean over receivers
#               (rusage.py); cpu_s_per_gb divides it by the GB (10^9 B) received.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: netns-scripts/routed-bench.sh [options]

  --size SIZE          file size, K/M/G suffix (binary)                        [64M]
  -n, --receivers-b N  receivers on segment B                                  [4]
  --receivers-a M      receivers on segment A beside the sender                [0]
  --loss-a PCT         loss on A's receiving ports (routed.sh --loss-a)        [0]
  --loss-b PCT         loss on every B receiver's port, both directions        [5]
  --rate RATE          every link's rate (routed.sh --rate-a/--rate-b)        [1G]
  --tool-rate RATE     mcast-send --rate (and the relay's, via --relay-args)  [200M]
  --variants LIST      any of mcast,relay,repairers,repairers-clean,bittorrent
                                                       [mcast,relay,repairers,bittorrent]
  --repairers R        B receivers that run --repairer in the repairers variant [2]
  --mrouting MODE      multicast routing of the mcast, repairers and bittorrent labs:
                       smcroute | pimd (installing one removes the other)     [smcroute]
  --relay-args ARGS    extra mcast-relay arguments (one string, split on spaces) []
  --keyed              keyed mode for mcast, relay and repairers: one key (mcast-send
                       --gen-key) given to every mcast tool with --key-file; repairers then
                       serve decoded blocks at once instead of after the hash list
  --timeout SECONDS    bound of each single push                               [300]
  --out DIR            where routed.csv (appended) and routed.md go            [./bench-out]
  --keep               keep the work directory (logs, JSON reports; not the copies)
  --no-install         do not apt-get missing tools (smcroute, aria2, ...): fail instead
  -h, --help           this text

Environment: MCAST_BIN_DIR (mcast-send, mcast-recv, mcast-relay; default target/debug, built
with cargo), LAB_PREFIX (default "mcl-rt-").

Examples:
  # The issue's run: 64 MiB, 4 receivers behind the router, 5 % loss on B:
  flock /tmp/mcast-bench.lock netns-scripts/routed-bench.sh --size 64M -n 4 --loss-b 5
  # mcast and BitTorrent only, a relay from another build:
  MCAST_BIN_DIR=/path/to/target/debug netns-scripts/routed-bench.sh --variants relay,bittorrent
EOF
}

die() {
    echo "routed-bench: $*" >&2
    exit 2
}

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
root=$(dirname "$here")
LAB=$here/routed.sh
# shellcheck source=netns-scripts/lab-lib.sh
source "$here/lab-lib.sh"
export LAB_PREFIX=${LAB_PREFIX:-mcl-rt-}
P=$LAB_PREFIX

size=64M nb=4 na=0 loss_a=0 loss_b=5 rate=1G tool_rate=200M variants=mcast,relay,repairers,bittorrent
n_rep=2 routed_mode=smcroute relay_args="" keyed=0 run_timeout=300 out=./bench-out keep=0 install=1
while (($#)); do
    case $1 in
    --size) size=${2:?}; shift 2 ;;
    -n | --receivers-b) nb=${2:?}; shift 2 ;;
    --receivers-a) na=${2:?}; shift 2 ;;
    --loss-a) loss_a=${2:?}; shift 2 ;;
    --loss-b) loss_b=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    --tool-rate) tool_rate=${2:?}; shift 2 ;;
    --variants) variants=${2:?}; shift 2 ;;
    --repairers) n_rep=${2:?}; shift 2 ;;
    --mrouting) routed_mode=${2:?}; shift 2 ;;
    --relay-args) relay_args=${2?}; shift 2 ;;
    --keyed) keyed=1; shift ;;
    --timeout) run_timeout=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    --no-install) install=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

[[ $EUID == 0 ]] || die "needs root (network namespaces, bridges, tc, nftables)"
[[ $size =~ ^([0-9]+)([KMG]?)$ ]] || die "bad --size '$size' (e.g. 64M)"
case ${BASH_REMATCH[2]} in
K) size_bytes=$((BASH_REMATCH[1] << 10)) ;;
M) size_bytes=$((BASH_REMATCH[1] << 20)) ;;
G) size_bytes=$((BASH_REMATCH[1] << 30)) ;;
*) size_bytes=${BASH_REMATCH[1]} ;;
esac
((size_bytes > 0)) || die "--size must be > 0"
[[ $tool_rate =~ ^[0-9]+[kMG]$ ]] || die "bad --tool-rate '$tool_rate' (e.g. 200M)"
[[ $run_timeout =~ ^[1-9][0-9]*$ ]] || die "bad --timeout '$run_timeout'"
if ! [[ $n_rep =~ ^[0-9]+$ ]] || ((n_rep > nb)); then die "--repairers must be 0..N ($nb), got '$n_rep'"; fi
[[ $routed_mode =~ ^(smcroute|pimd)$ ]] || die "--mrouting smcroute|pimd, got '$routed_mode'"
IFS=, read -r -a variant_list <<<"$variants"
for v in "${variant_list[@]}"; do
    [[ $v =~ ^(mcast|relay|repairers|repairers-clean|bittorrent)$ ]] || die "unknown variant '$v'"
done
up_args=(--receivers-a "$na" -n "$nb" --rate-a "$rate" --rate-b "$rate" --loss-a "$loss_a"
    --loss-b "$loss_b")
((install)) || up_args+=(--no-install)

# ---- prerequisites ------------------------------------------------------------------------------
want=()
for v in "${variant_list[@]}"; do
    [[ $v == bittorrent ]] && want+=(opentracker:opentracker aria2c:aria2 mktorrent:mktorrent)
done
missing=()
for w in "${want[@]}"; do command -v "${w%%:*}" >/dev/null || missing+=("${w#*:}"); done
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    ((install)) || die "missing packages: ${missing[*]} (drop --no-install to apt-get them)"
    echo "routed-bench: installing ${missing[*]}" >&2
    timeout 600 apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
fi
if [[ -z ${MCAST_BIN_DIR:-} ]]; then
    MCAST_BIN_DIR=${CARGO_TARGET_DIR:-$root/target}/debug
    echo "routed-bench: cargo build --bins" >&2
    (cd "$root" && cargo build --bins >&2)
fi
MCAST_BIN_DIR=$(readlink -f "$MCAST_BIN_DIR")
for b in mcast-send mcast-recv; do [[ -x $MCAST_BIN_DIR/$b ]] || die "$MCAST_BIN_DIR/$b missing"; done
# Variants whose binary is not there yet (mcast-relay, mcast-recv --repairer) are skipped, said.
kept=()
for v in "${variant_list[@]}"; do
    if [[ $v == relay && ! -x $MCAST_BIN_DIR/mcast-relay ]]; then
        echo "routed-bench: skipping relay: no $MCAST_BIN_DIR/mcast-relay" >&2
        continue
    fi
    if [[ $v == repairers* ]] && ! "$MCAST_BIN_DIR/mcast-recv" --help 2>/dev/null | grep -q -- '--repairer'; then
        echo "routed-bench: skipping repairers: $MCAST_BIN_DIR/mcast-recv has no --repairer" >&2
        continue
    fi
    kept+=("$v")
done
((${#kept[@]})) || die "no variant left to run"
variant_list=("${kept[@]}")

# ---- work directory, cleanup --------------------------------------------------------------------
mkdir -p "$out"
out=$(readlink -f "$out")
work=$(mktemp -d /tmp/mcast-routed.XXXXXX)
chmod 755 "$work" # opentracker drops to "nobody" inside its chroot under here
declare -a pids=()

# shellcheck disable=SC2317  # invoked by trap
cleanup() {
    stop_pids
    "$LAB" down >/dev/null 2>&1 || true
    if ((keep)); then
        rm -rf "$work/src"
        echo "routed-bench: kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }

hosts=()
for ((i = 1; i <= na; i++)); do hosts+=("a$i"); done
for ((i = 1; i <= nb; i++)); do hosts+=("b$i"); done
nh=${#hosts[@]}

# The B receivers that repair in the repairers variant: the first R of them.
is_repairer() { [[ $variant == repairers* && $1 =~ ^b([0-9]+)$ ]] && ((BASH_REMATCH[1] <= n_rep)); }

wait_ready() { # wait_ready DIR: every host's --ready-file (bounded)
    local d=$1 tries ready h
    for ((tries = 0; ; tries++)); do
        ready=0
        for h in "${hosts[@]}"; do [[ -e $d/$h.ready ]] && ready=$((ready + 1)); done
        ((ready == nh)) && return 0
        ((tries < 200)) || { echo "routed-bench: $ready/$nh receivers ready after 10 s" >&2; return 1; }
        sleep 0.05
    done
}

G=239.255.77.1:7000
G_DOWN=239.255.78.1:7000

# mcast, relay and repairers: receivers first, then (relay) the relay, then the origin.
run_mcast_family() {
    local d=$1 h grp rc=0 sp
    local -a rp=() extra key=()
    if ((keyed)); then
        "$MCAST_BIN_DIR/mcast-send" --gen-key "$d/key" >/dev/null || return 1
        key=(--key-file "$d/key")
    fi
    for h in "${hosts[@]}"; do
        grp=$G
        [[ $variant == relay && $h == b* ]] && grp=$G_DOWN
        extra=()
        is_repairer "$h" && extra=(--repairer)
        in_ns "$h" python3 "$here/rusage.py" "$d/cpu-$h" "$MCAST_BIN_DIR/mcast-recv" \
            --group "$grp" --interface lab0 --ttl 8 --output "$d/$h" --once --json \
            --timeout "${run_timeout}s" --ready-file "$d/$h.ready" "${extra[@]}" "${key[@]}" \
            >"$d/recv-$h.json" 2>"$d/recv-$h.log" &
        pids+=("$!")
        is_repairer "$h" || rp+=("$!")
    done
    wait_ready "$d" || return 1
    # pimd needs a moment to act on the fresh joins (routed.sh, pim_settle); not timed.
    [[ $mrouting == pimd ]] && sleep "${PIMD_SETTLE:-3}"
    if [[ $variant == relay ]]; then
        [[ -x $MCAST_BIN_DIR/mcast-relay ]] || { echo "routed-bench: $MCAST_BIN_DIR/mcast-relay missing" >&2; return 1; }
        mkdir -p "$d/spool"
        # shellcheck disable=SC2086  # relay_args: extra words on purpose
        in_ns rt python3 "$here/rusage.py" "$d/cpu-relay" "$MCAST_BIN_DIR/mcast-relay" \
            --upstream "$G" --upstream-interface lega --downstream "$G_DOWN" \
            --downstream-interface legb --spool "$d/spool" --receivers "$nb" \
            --rate "$tool_rate" --timeout "${run_timeout}s" --json --ready-file "$d/relay.ready" \
            "${key[@]}" $relay_args >"$d/relay.json" 2>"$d/relay.log" &
        pids+=("$!")
        # The relay must have joined upstream before the origin's first datagram, or it misses
        # the start of the push and NAKs it back from the origin (not timed, as the receivers).
        local tries
        for ((tries = 0; tries < 200; tries++)); do
            [[ -e $d/relay.ready ]] && break
            sleep 0.05
        done
        [[ -e $d/relay.ready ]] || { echo "routed-bench: the relay was not ready after 10 s" >&2; return 1; }
    fi
    t_start=$(now)
    in_ns s "$MCAST_BIN_DIR/mcast-send" "$src" --group "$G" --interface lab0 --ttl 8 \
        --rate "$tool_rate" --receivers "$nh" --timeout "${run_timeout}s" --json "${key[@]}" \
        >"$d/send.json" 2>"$d/send.log" &
    sp=$!
    pids+=("$sp")
    for h in "${rp[@]}"; do wait "$h" || rc=1; done
    t_end=$(now)
    wait "$sp" || rc=1
    return "$rc"
}

run_bittorrent() {
    local d=$1 h tries done_count
    local -a aria=(aria2c --enable-dht=false --enable-dht6=false --enable-peer-exchange=false
        --bt-enable-lpd=false --bt-require-crypto=false --bt-min-crypto-level=plain
        --disable-ipv6=true --seed-ratio=0.0 --file-allocation=none --summary-interval=0
        --console-log-level=warn --bt-max-peers=0 --max-overall-upload-limit=0
        --follow-torrent=false --allow-overwrite=true --auto-file-renaming=false)
    mkdir -m 755 "$d/tracker"
    for h in "${hosts[@]}"; do
        printf '#!/bin/sh\ntouch "%s"\n' "$d/$h.done" >"$d/hook-$h.sh"
        chmod +x "$d/hook-$h.sh"
    done
    t_start=$(now)
    timeout "$run_timeout" mktorrent -a "http://198.18.0.1:6969/announce" -l 20 \
        -o "$d/f.torrent" "$src" >"$d/mktorrent.log" 2>&1 || return 1
    aria2c -S "$d/f.torrent" | awk -F': ' '/Info Hash/ { print $2 }' >"$d/tracker/whitelist"
    chmod 644 "$d/tracker/whitelist"
    in_ns s opentracker -i 198.18.0.1 -p 6969 -P 6969 -d "$d/tracker" -w /whitelist \
        >"$d/tracker.log" 2>&1 </dev/null &
    pids+=("$!")
    for ((tries = 0; ; tries++)); do
        ip netns exec "${P}s" ss -Hltn "sport = :6969" | grep -q . && break
        ((tries < 100)) || { echo "routed-bench: opentracker did not start" >&2; return 1; }
        sleep 0.02
    done
    in_ns s "${aria[@]}" -V -d "$(dirname "$src")" "$d/f.torrent" >"$d/send.log" 2>&1 </dev/null &
    pids+=("$!")
    for h in "${hosts[@]}"; do
        in_ns "$h" python3 "$here/rusage.py" "$d/cpu-$h" "${aria[@]}" \
            --on-bt-download-complete="$d/hook-$h.sh" -d "$d/$h" "$d/f.torrent" \
            >"$d/recv-$h.log" 2>&1 </dev/null &
        pids+=("$!")
    done
    local deadline=$((SECONDS + run_timeout))
    while :; do
        done_count=0
        for h in "${hosts[@]}"; do [[ -e $d/$h.done ]] && done_count=$((done_count + 1)); done
        ((done_count == nh)) && break
        ((SECONDS < deadline)) || { echo "routed-bench: bittorrent: $done_count/$nh at timeout" >&2; return 1; }
        sleep 0.02
    done
    t_end=$(now)
}

# Figures from the JSON reports of run DIR, "-" where there is no report:
# "origin_complete origin_repair origin_proactive origin_data repairer_dgrams relay_down_repair
#  first_pass_loss_pct" (the last: what the receivers measured, summed over them, as bench.sh).
mcast_figures() {
    python3 - "$1" <<'PY'
import glob, json, sys
d = sys.argv[1]
def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None
s = load(f"{d}/send.json")
if s:
    out = [s["complete"], s["repair_packets"], s["stats"].get("proactive_repair_packets", "-"),
           s["data_packets"]]
else:
    out = ["-"] * 4
rep = None
miss = exp = 0
for p in glob.glob(f"{d}/recv-*.json"):
    r = load(p)
    if not isinstance(r, dict):
        continue
    st = r.get("stats") or {}
    miss += st.get("first_pass_missing", 0)
    exp += st.get("first_pass_expected", 0)
    if "repair_datagrams" in r:
        rep = (rep or 0) + int(r["repair_datagrams"])
    elif isinstance(r.get("repairer"), dict):
        rep = (rep or 0) + int(r["repairer"].get("repair_datagrams", 0))
out.append("-" if rep is None else rep)
rl = load(f"{d}/relay.json")
out.append(((rl or {}).get("downstream") or {}).get("repair_packets", "-"))
out.append(f"{100 * miss / exp:.2f}" if exp else "-")
print(" ".join(str(x) for x in out))
PY
}

# UDP datagrams the kernel of lab node NODE dropped for a full socket buffer (RcvbufErrors).
rcvbuf_errors() {
    # shellcheck disable=SC2016  # awk program
    ip netns exec "${P}$1" awk '/^Udp:/ { if (!h) { for (k = 1; k <= NF; k++) if ($k == "RcvbufErrors") c = k; h = 1 } else print $c }' /proc/net/snmp
}

# Mean CPU seconds per receiver of run DIR, or "-" if one left no record (rusage.py).
cpu_mean() {
    local d=$1 h total=0
    for h in "${hosts[@]}"; do
        [[ -s $d/cpu-$h ]] || { echo "-"; return; }
        total=$(awk -v t="$total" '{ printf "%.3f", t + $1 + $2 }' "$d/cpu-$h")
    done
    awk -v t="$total" -v n="$nh" 'BEGIN { printf "%.3f", t / n }'
}

# ---- main loop ----------------------------------------------------------------------------------
src=$work/src/payload-$size.bin
mkdir -p "$work/src"
echo "routed-bench: generating $size of random data" >&2
head -c "$size_bytes" /dev/urandom >"$src"
src_hash=$(sha256sum "$src" | cut -d' ' -f1)

csv=$out/routed.csv
header="run,date,kernel,cpus,load1,variant,mrouting,n_a,n_b,loss_a_pct,loss_b_pct,rate,tool_rate,size_bytes,seconds,ok,hosts,origin_complete,origin_repair_datagrams,origin_proactive_repair_datagrams,origin_data_datagrams,repairers,repairer_datagrams,relay_downstream_repair_datagrams,recv_first_pass_loss_pct,wire_a_bytes,wire_b_bytes,recv_cpu_s,recv_cpu_s_per_gb,exit,router_rcvbuf_drops"
if [[ ! -s $csv ]]; then
    echo "$header" >"$csv"
elif [[ $(head -n 1 "$csv") != "$header" ]]; then
    die "$csv has other columns than this version writes; move it away or give another --out"
fi
run_id=$(date -u +%Y%m%dT%H%M%SZ)
echo "routed-bench: run $run_id on $(nproc) CPUs, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
failures=0
rows=()
for variant in "${variant_list[@]}"; do
    mrouting=$routed_mode
    [[ $variant == relay ]] && mrouting=none
    clean=()
    [[ $variant == repairers-clean ]] && clean=(--clean-b "$n_rep")
    "$LAB" up "${up_args[@]}" "${clean[@]}" --mrouting "$mrouting" >&2
    d=$work/run-$variant
    mkdir -p "$d"
    for h in "${hosts[@]}"; do mkdir -p "$d/$h"; done
    load1=$(cut -d' ' -f1 /proc/loadavg)
    read -r wa0 wb0 < <("$LAB" counters)
    rt_drops0=$(rcvbuf_errors rt)
    t_start=$(now) t_end=""
    rc=0
    case $variant in
    bittorrent) run_bittorrent "$d" || rc=$? ;;
    *) run_mcast_family "$d" || rc=$? ;;
    esac
    [[ -n $t_end ]] || t_end=$(now)
    read -r wa1 wb1 < <("$LAB" counters)
    rt_drops=$(($(rcvbuf_errors rt) - rt_drops0))
    stop_pids
    ok=0
    for h in "${hosts[@]}"; do
        f=$d/$h/$(basename "$src")
        [[ -f $f && $(sha256sum "$f" | cut -d' ' -f1) == "$src_hash" ]] && ok=$((ok + 1))
    done
    secs=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.3f", b - a }')
    if [[ $variant == bittorrent ]]; then
        figs="- - - - - - -"
    else
        figs=$(mcast_figures "$d")
    fi
    read -r o_complete o_repair o_proactive o_data r_dgrams relay_repair fp_loss <<<"$figs"
    reps=0
    [[ $variant == repairers* ]] && reps=$n_rep
    cpu=$(cpu_mean "$d")
    cpu_gb=-
    [[ $cpu == - ]] || cpu_gb=$(awk -v c="$cpu" -v b="$size_bytes" 'BEGIN { printf "%.3f", c / (b / 1e9) }')
    wa=$((wa1 - wa0)) wb=$((wb1 - wb0))
    status=""
    ((rc == 0)) || status=" (exit status $rc)"
    echo "variant=$variant mrouting=$mrouting seconds=$secs ok=$ok/$nh origin_complete=$o_complete" \
        "origin_repair=$o_repair (proactive $o_proactive) repairer_dgrams=$r_dgrams" \
        "relay_downstream_repair=$relay_repair router_rcvbuf_drops=$rt_drops first_pass_loss=$fp_loss%" \
        "wire_a=$wa wire_b=$wb" \
        "recv_cpu_s=$cpu$status"
    ((rc == 0 && ok == nh)) || {
        failures=$((failures + 1))
        for log in "$d"/send.log "$d"/relay.log "$d"/recv-b1.log; do
            [[ -f $log ]] && { echo "---- tail of $log" >&2; tail -n 8 "$log" >&2; }
        done
    }
    row="$run_id,$(date -u +%FT%TZ),$(uname -r),$(nproc),$load1,$variant,$mrouting,$na,$nb,$loss_a,$loss_b,$rate,$tool_rate,$size_bytes,$secs,$ok,$nh,$o_complete,$o_repair,$o_proactive,$o_data,$reps,$r_dgrams,$relay_repair,$fp_loss,$wa,$wb,$cpu,$cpu_gb,$rc,$rt_drops"
    echo "$row" >>"$csv"
    rows+=("$row")
    if ((keep)); then rm -rf "$d"/[ab][0-9]*/; else rm -rf "$d"; fi
    "$LAB" down >&2
done

{
    echo "Routed lab, run $run_id: $size, $na receivers on A, $nb on B, loss A ${loss_a} % / B ${loss_b} %, links $rate, mcast --rate $tool_rate"
    echo
    echo "| variant | multicast routing | seconds | ok | origin's report complete | origin repair datagrams (proactive) | repairer datagrams | relay's downstream repairs | receivers' first-pass loss | wire A (MB) | wire B (MB) | CPU s / receiver |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for row in "${rows[@]}"; do
        IFS=, read -r -a c <<<"$row"
        printf '| %s | %s | %s | %s/%s | %s | %s (%s) | %s | %s | %s %% | %s | %s | %s |\n' "${c[5]}" "${c[6]}" \
            "${c[14]}" "${c[15]}" "${c[16]}" "${c[17]}" "${c[18]}" "${c[19]}" "${c[22]}" "${c[23]}" \
            "${c[24]}" "$(awk -v b="${c[25]}" 'BEGIN { printf "%.1f", b / 1e6 }')" \
            "$(awk -v b="${c[26]}" 'BEGIN { printf "%.1f", b / 1e6 }')" "${c[27]}"
    done
} | tee "$out/routed.md"
echo "routed-bench: CSV $csv (run $run_id), table $out/routed.md" >&2
if ((failures)); then
    echo "routed-bench: $failures run(s) failed or had copies that did not verify" >&2
    exit 1
fi
