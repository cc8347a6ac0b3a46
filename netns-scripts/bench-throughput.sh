#!/usr/bin/env bash
# Throughput benchmark: mcast against iperf3 -u on the same veth path.
#
#   sudo netns-scripts/bench-throughput.sh            # (root: it creates network namespaces)
#   sudo netns-scripts/bench-throughput.sh --first-datagram 8G   # start-to-first-datagram only
#
# Builds (unless MCAST_BIN_DIR is given) the release binaries, creates two private network
# namespaces joined by one veth pair (both ends created inside the namespaces, never in the
# caller's), with addresses from 198.18.0.0/15 (RFC 2544 benchmarking range) and a multicast
# route to 239.0.0.0/8 over the veth. Then, one line per run:
#
#   1. iperf3 -u (unlimited bitrate, 1432-byte datagrams = one mcast data datagram) from the
#      sender namespace to the receiver namespace: the practical UDP ceiling of the path,
#      counted as datagrams that arrived.
#   2. mcast-send -> 1 mcast-recv, no loss, at --rate = that ceiling.
#   3. mcast-send -> 4 mcast-recv, each discarding DROP (1 %) of datagrams on purpose.
#
# For each mcast run it prints: transfer goodput (file bytes over the time from each receiver's
# first datagram to its last block, slowest receiver), end-to-end goodput (file bytes over the
# whole push, source hashing and receivers' verification included), goodput / iperf3 ceiling,
# CPU seconds (user + system) per GB of file for the sender and per receiver, the receivers'
# peak RSS, the largest GSO batch and the kernel drop counters, and the time from the sender's
# start to the first datagram at the receivers. A last `summary:` line repeats the figures
# issue 10 asks for: end-to-end ratio to the iperf3 ceiling and CPU-s/GB on both sides.
#
# --first-datagram SIZE (e.g. 8G): no iperf3 and no full push; a sparse file of SIZE is pushed
# to one receiver that stops after FIRST_WAIT seconds (default 5), and the script prints the
# time from mcast-send's start to the receiver's first datagram (the receiver's report
# `first_datagram_seconds`, anchored at its ready file's mtime). The receiver counts any
# datagram: the sender's first ones are its announce, sent before any block is read.
#
# Knobs (environment): SIZE_MB=1024 DROP=0.01 RECEIVERS_MANY=4 FEC_CLEAN=0% FEC_LOSSY=3%
#   RATE= (default: the measured iperf3 ceiling) IPERF_SECONDS=5 TIMEOUT=180 (per run, s)
#   SRC= (a file to send instead of a generated random one)  SPARSE_GB= (push a sparse file of
#   this many GiB to one receiver instead, to measure receiver RSS)  OUT=dir (keeps logs)
#   MCAST_BIN_DIR= (directory with mcast-send and mcast-recv; default: cargo build --release)
#   LAB_PREFIX=mcp-<pid> (namespace name prefix)  FIRST_WAIT=5 (s, --first-datagram mode)
#
# Safety: every namespace is named $LAB_PREFIX-*, removed on exit (also on Ctrl-C); every process
# runs under `timeout` and only the PIDs started here are signalled.

set -uo pipefail

die() {
    echo "bench-throughput: $*" >&2
    exit 2
}

[[ $(id -u) == 0 ]] || die "needs root (ip netns add); run under sudo"
command -v ip >/dev/null || die "ip (iproute2) not found"
command -v iperf3 >/dev/null || die "iperf3 not found (apt-get install -y iperf3)"
command -v python3 >/dev/null || die "python3 not found (used to read the JSON reports)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install -y time)"

FIRST_DATAGRAM=
case ${1:-} in
    --first-datagram)
        [[ -n ${2:-} ]] || die "--first-datagram needs a size (e.g. 8G)"
        FIRST_DATAGRAM=$2
        ;;
    "") ;;
    *) die "unknown argument $1 (only --first-datagram SIZE)" ;;
esac
FIRST_WAIT=${FIRST_WAIT:-5}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
SIZE_MB=${SIZE_MB:-1024}
DROP=${DROP:-0.01}
RECEIVERS_MANY=${RECEIVERS_MANY:-4}
FEC_CLEAN=${FEC_CLEAN:-0%}
FEC_LOSSY=${FEC_LOSSY:-3%}
IPERF_SECONDS=${IPERF_SECONDS:-5}
TIMEOUT=${TIMEOUT:-180}
GROUP=239.255.51.1:7400

if [[ -z ${MCAST_BIN_DIR:-} ]]; then
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
    MCAST_BIN_DIR=$repo/target/release
fi
SEND=$MCAST_BIN_DIR/mcast-send
RECV=$MCAST_BIN_DIR/mcast-recv
[[ -x $SEND && -x $RECV ]] || die "no mcast-send/mcast-recv in $MCAST_BIN_DIR"

OUT=${OUT:-$(mktemp -d /tmp/mcast-bench.XXXXXX)}
mkdir -p "$OUT" || die "cannot create $OUT"
LAB_PREFIX=${LAB_PREFIX:-mcp-$$}
NS_S=$LAB_PREFIX-s
NS_R=$LAB_PREFIX-r
declare -a pids=()

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    ip netns del "$NS_S" 2>/dev/null || true
    ip netns del "$NS_R" 2>/dev/null || true
    # The logs stay in $OUT; the file this script generated (1 GiB by default) does not.
    [[ -n ${GENERATED:-} ]] && rm -f "$GENERATED"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- topology ---------------------------------------------------------------------------------
ip netns add "$NS_S" || die "ip netns add failed"
ip netns add "$NS_R" || die "ip netns add failed"
ip -n "$NS_S" link add veth-s type veth peer name veth-r netns "$NS_R" || die "veth failed"
ip -n "$NS_S" addr add 198.18.0.1/24 dev veth-s
ip -n "$NS_R" addr add 198.18.0.2/24 dev veth-r
for ns in "$NS_S" "$NS_R"; do
    ip -n "$ns" link set lo up
done
ip -n "$NS_S" link set veth-s up
ip -n "$NS_R" link set veth-r up
ip -n "$NS_S" route add 239.0.0.0/8 dev veth-s
ip -n "$NS_R" route add 239.0.0.0/8 dev veth-r
in_s() { ip netns exec "$NS_S" "$@"; }
in_r() { ip netns exec "$NS_R" "$@"; }

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# namespaces $NS_S, $NS_R; veth 198.18.0.1 <-> 198.18.0.2; logs in $OUT"

# Seconds from the epoch time $1 (the sender's start) to receiver report $2's first datagram,
# anchored at ready file $3's mtime (written when the receiver's clock starts).
first_after() {
    python3 - "$1" "$2" "$3" <<'EOF'
import json, os, sys
start, report, ready = float(sys.argv[1]), sys.argv[2], sys.argv[3]
first = json.load(open(report)).get("first_datagram_seconds")
print("none" if first is None else f"{os.stat(ready).st_mtime + first - start:.3f}")
EOF
}

if [[ -n $FIRST_DATAGRAM ]]; then
    SRC=$OUT/sparse-$FIRST_DATAGRAM.img
    GENERATED=$SRC
    truncate -s "$FIRST_DATAGRAM" "$SRC" || die "cannot create a sparse $FIRST_DATAGRAM file"
    dir=$OUT/first
    mkdir -p "$dir/out"
    in_r timeout $((FIRST_WAIT + 10)) "$RECV" --group $GROUP --interface 198.18.0.2 \
        --output "$dir/out" --once --json --timeout "${FIRST_WAIT}s" \
        --ready-file "$dir/recv.ready" >"$dir/recv.json" 2>"$dir/recv.log" &
    rpid=$!
    pids+=($rpid)
    for _ in $(seq 100); do
        [[ -f $dir/recv.ready ]] && break
        sleep 0.1
    done
    [[ -f $dir/recv.ready ]] || die "the receiver did not start"
    start=$(date +%s.%N)
    in_s timeout $((FIRST_WAIT + 10)) "$SEND" "$SRC" --group $GROUP --interface 198.18.0.1 \
        --rate 1G --receivers 1 --timeout "$((FIRST_WAIT + 5))s" --json \
        >"$dir/send.json" 2>"$dir/send.log" &
    spid=$!
    pids+=($spid)
    wait "$rpid"
    kill -TERM "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    rm -rf "$dir/out"
    echo "first datagram: $(first_after "$start" "$dir/recv.json" "$dir/recv.ready") s from" \
        "mcast-send's start to the receiver's first datagram, $FIRST_DATAGRAM sparse file" \
        "($(stat -c %s "$SRC") bytes)"
    exit 0
fi

# --- 1. iperf3 ceiling --------------------------------------------------------------------------
in_r timeout $((IPERF_SECONDS + 20)) iperf3 -s -1 -p 5301 >"$OUT/iperf3-server.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    in_r ss -lun 2>/dev/null | grep -q ':5301' && break
    in_r ss -ltn 2>/dev/null | grep -q ':5301' && break
    sleep 0.1
done
in_s timeout $((IPERF_SECONDS + 15)) iperf3 -u -c 198.18.0.2 -p 5301 -b 0 -l 1432 \
    -t "$IPERF_SECONDS" -J >"$OUT/iperf3.json" 2>"$OUT/iperf3.err" || die "iperf3 failed"
ceiling=$(python3 - "$OUT/iperf3.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
s = j["end"]["sum"]
got = s["packets"] - s["lost_packets"]
secs = s["seconds"]
cpu = j["end"].get("cpu_utilization_percent", {})
print(f"{got * 1432 * 8 / secs:.0f} {s['lost_percent']:.1f} {cpu.get('host_total', 0):.0f} {cpu.get('remote_total', 0):.0f}")
EOF
) || die "cannot read iperf3 result"
read -r ceiling_bps iperf_lost iperf_cpu_s iperf_cpu_r <<<"$ceiling"
printf 'iperf3 -u -l 1432 -b 0: %.0f Mbit/s received (%s %% lost at the receiver), CPU sender %s %% receiver %s %%\n' \
    "$(echo "$ceiling_bps / 1000000" | bc -l)" "$iperf_lost" "$iperf_cpu_s" "$iperf_cpu_r"
RATE=${RATE:-$ceiling_bps}

# --- source file --------------------------------------------------------------------------------
if [[ -n ${SPARSE_GB:-} ]]; then
    SRC=$OUT/sparse-${SPARSE_GB}GiB.img
    GENERATED=$SRC
    truncate -s "${SPARSE_GB}G" "$SRC"
elif [[ -z ${SRC:-} ]]; then
    SRC=$OUT/random-${SIZE_MB}MiB.bin
    GENERATED=$SRC
    head -c $((SIZE_MB << 20)) /dev/urandom >"$SRC" || die "cannot write $SRC"
fi
bytes=$(stat -c %s "$SRC")

# --- mcast runs ---------------------------------------------------------------------------------
# run NAME RECEIVERS DROP FEC
run() {
    local name=$1 n=$2 drop=$3 fec=$4 dir=$OUT/$1 i
    mkdir -p "$dir"
    local -a rpids=()
    for i in $(seq "$n"); do
        mkdir -p "$dir/out-$i"
        in_r timeout $((TIMEOUT + 10)) /usr/bin/time -f '%e %U %S %M' -o "$dir/recv-$i.time" \
            "$RECV" --group $GROUP --interface 198.18.0.2 --output "$dir/out-$i" --once --json \
            --drop-rate "$drop" --drop-seed $((i + 100)) --timeout "${TIMEOUT}s" \
            --ready-file "$dir/recv-$i.ready" >"$dir/recv-$i.json" 2>"$dir/recv-$i.log" &
        rpids+=($!)
        pids+=($!)
    done
    for _ in $(seq 100); do
        local ready=0
        for i in $(seq "$n"); do [[ -f $dir/recv-$i.ready ]] && ready=$((ready + 1)); done
        [[ $ready == "$n" ]] && break
        sleep 0.1
    done
    local load
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    local start
    start=$(date +%s.%N)
    in_s timeout $((TIMEOUT + 10)) /usr/bin/time -f '%e %U %S %M' -o "$dir/send.time" \
        "$SEND" "$SRC" --group $GROUP --interface 198.18.0.1 --rate "$RATE" \
        --fec-overhead "$fec" --receivers "$n" --timeout "${TIMEOUT}s" --json \
        >"$dir/send.json" 2>"$dir/send.log"
    local send_rc=$?
    for i in "${rpids[@]}"; do wait "$i"; done
    local firsts=()
    for i in $(seq "$n"); do
        firsts+=("$(first_after "$start" "$dir/recv-$i.json" "$dir/recv-$i.ready")")
    done
    for i in $(seq "$n"); do
        cmp -s "$SRC" "$dir/out-$i/$(basename "$SRC")" || echo "$name: receiver $i copy differs!" >&2
        rm -rf "$dir/out-$i"
    done
    python3 - "$dir" "$n" "$bytes" "$ceiling_bps" "$name" "$load" "$send_rc" "${firsts[*]}" <<'EOF'
import json, sys
d, n, size, ceiling, name, load, rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
firsts = sys.argv[8].split()
def times(p):
    e, u, s, m = open(p).read().split()[-4:]
    return float(e), float(u) + float(s), int(m)
send = json.load(open(f"{d}/send.json"))
_, scpu, srss = times(f"{d}/send.time")
recv = [json.load(open(f"{d}/recv-{i}.json")) for i in range(1, n + 1)]
rt = [times(f"{d}/recv-{i}.time") for i in range(1, n + 1)]
transfer = max(r["received_seconds"] - r["first_datagram_seconds"] for r in recv)
gb = size / 1e9
good = size * 8 / transfer
e2e = size * 8 / send["seconds"]
print(f"{name}: {n} receiver(s), {sum(r['status'] in ('complete', 'unacknowledged') for r in recv)}/{n} ok, "
      f"sender exit {rc}, load {load}")
print(f"  transfer goodput {good / 1e6:.0f} Mbit/s = {good / ceiling:.3f} x iperf3 ceiling; "
      f"end to end {e2e / 1e6:.0f} Mbit/s = {e2e / ceiling:.3f} x ceiling ({send['seconds']:.2f} s, "
      f"hashing {send['hash_seconds']:.2f} s)")
print(f"  first datagram at the receivers {', '.join(firsts)} s after mcast-send started")
print(f"  CPU per GB: sender {scpu / gb:.2f} s; receivers {', '.join(f'{c / gb:.2f}' for _, c, _ in rt)} s; "
      f"peak RSS sender {srss / 1024:.0f} MiB, receivers {', '.join(f'{m / 1024:.0f}' for _, _, m in rt)} MiB")
io = send.get("io", {})
loop_s = send.get("loop_cpu_seconds", 0) / gb
loop_r = ", ".join(f"{r.get('loop_cpu_seconds', 0) / gb:.2f}" for r in recv)
print(f"  send loop thread alone: {loop_s:.2f} CPU s per GB (= {8 / max(loop_s, 1e-9):.1f} Gbit/s "
      f"per core at this cost); receive loop threads: {loop_r} s per GB")
print(f"  packets: {send['data_packets']} data + {send['repair_packets']} repair, {send['naks_received']} NAKs; "
      f"GSO max {send.get('gso_segments')} segments, {io.get('datagrams_sent', 0) / max(io.get('send_calls', 1), 1):.1f} datagrams/sendmsg, "
      f"{io.get('gso_fallbacks', 0)} fallbacks; kernel drops {[r.get('kernel_drops') for r in recv]}, "
      f"rcvbuf {[r.get('recv_buffer') for r in recv]}")
print(f"summary {name}: end-to-end {e2e / ceiling:.3f} x iperf3 ceiling, CPU-s/GB sender {scpu / gb:.2f}, "
      f"receiver {max(c for _, c, _ in rt) / gb:.2f} (largest), first datagram {max((float(f) for f in firsts if f != 'none'), default=float('nan')):.3f} s (latest)")
EOF
}

run "clean" 1 0 "$FEC_CLEAN"
[[ -n ${SPARSE_GB:-} ]] || run "lossy" "$RECEIVERS_MANY" "$DROP" "$FEC_LOSSY"
