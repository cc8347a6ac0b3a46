#!/usr/bin/env bash
# Automatic rate (`mcast-send` without `--rate`) on the lab (netns-scripts/lab.sh): the cases of
# issue 17's "Done when", each printing mcast's settled rate as a fraction of the link. Needs root.
#
# Cases (--cases, in this order):
#   fixed  reference: `--rate LINK` fixed, no loss (what this machine can push at all)
#   a      sender uplink LINK, no `--rate`, no loss                       target >= 90 % of LINK
#   b      the same with LOSS % random loss on every receiver link        target >= 85 %,
#          and UFTP with TFMCC (`uftp -C tfmcc`) and UFTP at a fixed LINK on the same lab
#   bfixed reference for b: `--rate LINK` fixed with the same loss (what this machine pushes
#          with the receivers' repair work; b's ratio against it is the controller's share)
#   c      receiver 1's link at SLOW: the group follows it (default); prints who limited
#   d      an iperf3 TCP flow (sender -> receiver 1, so it shares the sender's uplink) for
#          IPERF_S seconds, the push starting 2 s into it: iperf3's throughput during the
#          overlap as a fraction of LINK (target >= 1/3) and mcast's rate meanwhile
#   e      ECN: receiver 1's link marks CE_PCT % of the sender's ECT(0) frames Congestion
#          Experienced (`lab.sh --ce-override`, an nftables rule: a stand-in for a marking AQM,
#          which kernels without fq_codel lack); nothing is dropped, yet the group backs off
#          and receiver 1 limits the rate (compare a); prints the marks the receivers counted
#   cf     case c with `--straggler-fraction 0.5`: receiver 1 limits the group, is tried out
#          after 3 s and excluded once the others take twice its rate; the straggler policy
#          then drops it (ok=2/3 expected), and the rest of the push runs near the link
# Per run it also prints what the receivers say about where loss happened (drops, rxloss,
# softnet_drops) and the controller's host_holds and hiccups (see below).
#
# Per mcast run one line, e.g.
#   rate: case=a n=3 link=1G loss=0% seconds=2.95 bytes=268435456 ok=3/3 steady=905.3Mbit/s
#         (0.905 of link) wire=880.1Mbit/s (0.880) mean=850.2Mbit/s decreases=4 limited_by=r2
#         excluded=- host_holds=0 drops=0 rxloss=0.2% softnet_drops=0 ce=0
# steady: the controller's time-weighted mean rate over the middle half of the push
#   (`rate.steady_bps` in mcast-send's --json report); wire: bytes the sender put on its link
#   (bridge port s0, sampled every 100 ms) over the middle half of the push, per second;
#   mean: the controller's mean over the whole push (slow start and tail included);
#   limited_by: host name of the receiver that limited the rate longest (`rate_limited_by`);
#   excluded: receivers dropped from rate decisions; host_holds: control intervals the rate was
#   held for a receiver's socket overflow; drops: datagrams the receivers' kernels dropped at
#   their sockets (receive buffer full: `kernel_drops`, summed); rxloss: the highest first-pass
#   loss of any receiver (path and socket together); softnet_drops: the machine's softirq
#   backlog drops during the run (/proc/net/softnet_stat, all CPUs; loss inside this host that
#   no socket sees); ce: datagrams the receivers got marked CE (`io.datagrams_ce`, summed);
#   stamped: datagrams that carried a kernel receive timestamp of those received, receivers
#   summed (`io.datagrams_stamped` / `io.datagrams_received`), and the sender's; early: of the
#   receivers' stamped arrivals, those placed before a time already given to the role
#   (`io.arrivals_early`), raised/lowered: moved up or down (`arrivals_raised`/`_lowered`).
#
# This script owns: the lab with LAB_PREFIX (default mcl-ra-; `lab.sh up` per case, `lab.sh
# down` on exit), a work directory /tmp/mcast-rate.XXXXXX (removed on exit unless --keep), and
# the processes it starts inside the lab namespaces (stopped by PID). Timed runs: take
# /tmp/mcast-bench.lock (see the example).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: netns-scripts/rate.sh [options] [-- extra mcast-send options]

  --cases LIST       any of fixed,a,b,bfixed,c,cf,d,e                     [fixed,a,b,c,d]
  --receivers N      receiver namespaces                                  [3]
  --size SIZE        file size, K/M/G suffix (binary)                     [256M]
  --link RATE        sender uplink and receiver link rate (tc syntax: 1G, 500M)  [1G]
  --loss PCT         random loss per receiver link and direction in case b [1]
  --slow RATE        receiver 1's link in case c                          [100M]
  --ce PCT           CE marks on receiver 1's link in case e              [0.1]
  --iperf-seconds S  length of the iperf3 flow in case d                  [20]
  --timeout SECONDS  bound of each push                                   [120]
  --no-uftp          skip UFTP in case b
  --keep             keep the work directory (JSON reports, logs, samples)

Environment: MCAST_BIN_DIR (default: target/release, built with cargo), LAB_PREFIX [mcl-ra-].

Example (the figures of issue 17, a few minutes):
  flock /tmp/mcast-bench.lock netns-scripts/rate.sh
EOF
}

die() {
    echo "rate: $*" >&2
    exit 2
}

script=$(readlink -f "${BASH_SOURCE[0]}")
here=$(dirname "$script")
root=$(dirname "$here")
LAB=$here/lab.sh
# shellcheck source=netns-scripts/lab-lib.sh
source "$here/lab-lib.sh"
export LAB_PREFIX=${LAB_PREFIX:-mcl-ra-}
P=$LAB_PREFIX

cases=fixed,a,b,c,d n=3 size=256M link=1G loss=1 slow=100M ce_pct=0.1 iperf_s=20 run_timeout=120
uftp=1 keep=0
extra=()
while (($#)); do
    case $1 in
    --cases) cases=${2:?}; shift 2 ;;
    --receivers) n=${2:?}; shift 2 ;;
    --size) size=${2:?}; shift 2 ;;
    --link) link=${2:?}; shift 2 ;;
    --loss) loss=${2:?}; shift 2 ;;
    --slow) slow=${2:?}; shift 2 ;;
    --ce) ce_pct=${2:?}; shift 2 ;;
    --iperf-seconds) iperf_s=${2:?}; shift 2 ;;
    --timeout) run_timeout=${2:?}; shift 2 ;;
    --no-uftp) uftp=0; shift ;;
    --keep) keep=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

[[ $EUID == 0 ]] || die "needs root (network namespaces, bridge, tc, nftables)"
[[ $size =~ ^([0-9]+)([KMG]?)$ ]] || die "bad --size '$size'"
case ${BASH_REMATCH[2]} in
K) size_bytes=$((BASH_REMATCH[1] << 10)) ;;
M) size_bytes=$((BASH_REMATCH[1] << 20)) ;;
G) size_bytes=$((BASH_REMATCH[1] << 30)) ;;
*) size_bytes=${BASH_REMATCH[1]} ;;
esac
# Link rate in bit/s, for the fractions.
bps_of() {
    [[ $1 =~ ^([0-9]+)([kMG]?)$ ]] || die "bad rate '$1' (e.g. 1G, 100M)"
    case ${BASH_REMATCH[2]} in
    k) echo $((BASH_REMATCH[1] * 1000)) ;;
    M) echo $((BASH_REMATCH[1] * 1000000)) ;;
    G) echo $((BASH_REMATCH[1] * 1000000000)) ;;
    *) echo "${BASH_REMATCH[1]}" ;;
    esac
}
link_bps=$(bps_of "$link")
slow_bps=$(bps_of "$slow")
if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n < 2 || n > 50)); then die "--receivers must be 2..50"; fi
[[ $iperf_s =~ ^[1-9][0-9]*$ ]] || die "bad --iperf-seconds"
[[ $run_timeout =~ ^[1-9][0-9]*$ ]] || die "bad --timeout"
IFS=, read -r -a case_list <<<"$cases"
for c in "${case_list[@]}"; do [[ $c =~ ^(fixed|a|b|bfixed|c|cf|d|e)$ ]] || die "unknown case '$c'"; done
for c in ip tc nft ethtool python3 iperf3; do command -v "$c" >/dev/null || die "$c not found"; done
((uftp == 0)) || { command -v uftp >/dev/null && command -v uftpd >/dev/null; } ||
    die "uftp/uftpd not found (apt-get install uftp, or --no-uftp)"

if [[ -z ${MCAST_BIN_DIR:-} ]]; then
    MCAST_BIN_DIR=${CARGO_TARGET_DIR:-$root/target}/release
    echo "rate: cargo build --release --bins" >&2
    (cd "$root" && cargo build --release --bins >&2)
fi
for b in mcast-send mcast-recv; do [[ -x $MCAST_BIN_DIR/$b ]] || die "$MCAST_BIN_DIR/$b missing"; done

work=$(mktemp -d /tmp/mcast-rate.XXXXXX)
declare -a pids=()
# shellcheck disable=SC2317  # invoked by trap
cleanup() {
    stop_pids
    "$LAB" down >/dev/null 2>&1 || true
    if ((keep)); then rm -f "$work/src.bin"; echo "rate: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { echo "$EPOCHREALTIME"; }

# Sample the bytes the sender put on its link (bridge port s0, rx) every 100 ms into FILE, for
# at most the run timeout; one process, so the samples are cheap and evenly spaced.
start_sampler() {
    local file=$1
    # shellcheck disable=SC2016  # the loop runs in the bridge namespace's bash
    in_ns br bash -c 'end=$((SECONDS + $1)); while ((SECONDS < end)); do
        read -r b </sys/class/net/s0/statistics/rx_bytes; echo "$EPOCHREALTIME $b"; sleep 0.1
    done' sampler "$run_timeout" >"$file" &
    sampler_pid=$!
    pids+=("$sampler_pid")
}

# mcast push: receivers r1..rN, the sender with SEND_ARGS; sets t_start, t_end; returns the
# sender's exit status (3: not everyone confirmed).
run_mcast() {
    local d=$1 i tries ready rc=0
    shift
    local -a rp=()
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$d/r$i"
        in_ns "r$i" "$MCAST_BIN_DIR/mcast-recv" --group 239.255.78.1:7000 --interface lab0 \
            --output "$d/r$i" --once --json --timeout "${run_timeout}s" --host-name "r$i" \
            --ready-file "$d/r$i.ready" >"$d/recv-$i.json" 2>"$d/recv-$i.log" &
        rp+=("$!")
    done
    pids+=("${rp[@]}")
    for ((tries = 0; ; tries++)); do
        ready=0
        for ((i = 1; i <= n; i++)); do [[ -e $d/r$i.ready ]] && ready=$((ready + 1)); done
        ((ready == n)) && break
        ((tries < 200)) || { echo "rate: $ready/$n receivers ready after 10 s" >&2; return 1; }
        sleep 0.05
    done
    t_start=$(now)
    in_ns s "$MCAST_BIN_DIR/mcast-send" "$work/src.bin" --group 239.255.78.1:7000 \
        --interface lab0 --receivers "$n" --timeout "${run_timeout}s" --json "$@" "${extra[@]}" \
        >"$d/send.json" 2>"$d/send.log" || rc=$?
    t_end=$(now)
    for i in "${rp[@]}"; do wait "$i" 2>/dev/null || true; done
    return "$rc"
}

# One result line from a run directory (see the header).
summarize() {
    local case=$1 d=$2 lossl=$3
    python3 - "$case" "$d" "$n" "$link_bps" "$lossl" "$t_start" "$t_end" "$link" <<'PY'
import json, sys
case, d, n, link_bps, loss, t0, t1, link = sys.argv[1:9]
n, link_bps, t0, t1 = int(n), float(link_bps), float(t0), float(t1)
try:
    r = json.load(open(f"{d}/send.json"))
except (OSError, ValueError) as e:
    print(f"rate: case={case} no report ({e})"); sys.exit(0)
hosts = {e["id"]: e["host"] or f"{e['id']:08x}" for e in r["receivers"]}
name = lambda node: hosts.get(node, f"{node:08x}")
rate = r["rate"]
# Wire rate over the middle half of the push, from the s0 samples.
lo, hi = t0 + (t1 - t0) / 4, t0 + 3 * (t1 - t0) / 4
s = [tuple(map(float, l.split())) for l in open(f"{d}/samples") if len(l.split()) == 2]
s = [x for x in s if lo <= x[0] <= hi]
wire = (s[-1][1] - s[0][1]) * 8 / (s[-1][0] - s[0][0]) if len(s) > 2 else 0.0
ce = 0
ok = 0
drops = 0
rxloss = 0.0
stamps = {k: 0 for k in ("datagrams_stamped", "datagrams_received", "arrivals_early",
                         "arrivals_raised", "arrivals_lowered")}
sio = r.get("io", {})
for i in range(1, n + 1):
    try:
        for line in open(f"{d}/recv-{i}.json"):
            rr = json.loads(line)
            for k in stamps:
                stamps[k] += (rr.get("io") or {}).get(k, 0)
            ok += rr.get("status") == "complete"
            st = rr.get("stats", {})
            ce += (rr.get("io") or {}).get("datagrams_ce", 0)
            drops += rr.get("kernel_drops") or 0
            exp = st.get("first_pass_expected", 0)
            if exp:
                rxloss = max(rxloss, st.get("first_pass_missing", 0) / exp)
    except (OSError, ValueError):
        pass
def softnet(f):
    try:
        return sum(int(l.split()[1], 16) for l in open(f) if l.strip())
    except (OSError, ValueError, IndexError):
        return None
sn0, sn1 = softnet(f"{d}/softnet.0"), softnet(f"{d}/softnet.1")
softnet_drops = sn1 - sn0 if sn0 is not None and sn1 is not None else "?"
steady = rate.get("steady_bps", rate["mean_bps"])
lim = r.get("rate_limited_by")
exc = ",".join(name(x) for x in rate["excluded"]) or "-"
limiting = " ".join(f"{name(a)}:{b:.1f}s" for a, b in rate["limiting"]) or "-"
print(f"rate: case={case} n={n} link={link} loss={loss}% seconds={r['seconds']:.2f} "
      f"bytes={r['bytes']} status={r['status']} ok={ok}/{n} "
      f"steady={steady / 1e6:.1f}Mbit/s ({steady / link_bps:.3f} of link) "
      f"wire={wire / 1e6:.1f}Mbit/s ({wire / link_bps:.3f}) mean={rate['mean_bps'] / 1e6:.1f}Mbit/s "
      f"min={rate['min_bps'] / 1e6:.1f} max={rate['max_bps'] / 1e6:.1f} "
      f"decreases={rate['decreases']} reports={rate['reports']} "
      f"limited_by={name(lim) if lim is not None else '-'} limiting=[{limiting}] excluded={exc} "
      f"dropped={len(r['dropped'])} host_holds={rate.get('host_holds', 0)} hiccups={rate.get('hiccups', 0)} drops={drops} "
      f"rxloss={rxloss * 100:.1f}% softnet_drops={softnet_drops} ce={ce} "
      f"stamped={stamps['datagrams_stamped']}/{stamps['datagrams_received']} "
      f"sender_stamped={sio.get('datagrams_stamped', 0)}/{sio.get('datagrams_received', 0)} "
      f"early={stamps['arrivals_early']} raised={stamps['arrivals_raised']} "
      f"lowered={stamps['arrivals_lowered']} sender_limited={rate.get('sender_limited', 0)}")
PY
}

lab_up() { "$LAB" up -n "$n" --send-rate "$link" --recv-rate "$link" "$@" >&2; }

# One mcast case: lab options, then "--" and mcast-send options.
mcast_case() {
    local case=$1 lossl=$2
    shift 2
    local -a labopts=()
    while (($#)) && [[ $1 != -- ]]; do labopts+=("$1"); shift; done
    shift
    local d=$work/$case rc=0
    mkdir -p "$d"
    lab_up "${labopts[@]}"
    start_sampler "$d/samples"
    cat /proc/net/softnet_stat >"$d/softnet.0" 2>/dev/null || true
    run_mcast "$d" "$@" || rc=$?
    cat /proc/net/softnet_stat >"$d/softnet.1" 2>/dev/null || true
    stop_pids
    summarize "$case" "$d" "$lossl"
    ((rc == 0)) || echo "rate: case=$case mcast-send exit status $rc (tail of its log below)" >&2
    ((rc == 0)) || tail -n 5 "$d/send.log" >&2
}

uid_of() { printf '0x%08X' "$((0xC6120000 + 10 + $1))"; } # 198.18.0.(10+I) as a UFTP id

# UFTP with congestion control CC (tfmcc or none at LINK) on the lab that is up.
uftp_case() {
    local label=$1 cc=$2 d=$work/uftp-$1 i hosts="" rc=0 t0 t1
    mkdir -p "$d"
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$d/r$i"
        in_ns "r$i" uftpd -d -I lab0 -M 239.255.78.21 -U "$(uid_of "$i")" -D "$d/r$i" \
            >"$d/recv-$i.log" 2>&1 </dev/null &
        pids+=("$!")
        hosts+=${hosts:+,}$(uid_of "$i")
    done
    local tries
    for ((i = 1; i <= n; i++)); do
        for ((tries = 0; ; tries++)); do
            ip netns exec "${P}r$i" ss -Hlun "sport = :1044" | grep -q . && break
            ((tries < 100)) || { echo "rate: uftpd $i never bound" >&2; return 1; }
            sleep 0.05
        done
    done
    start_sampler "$d/samples"
    t0=$(now)
    in_ns s uftp -I lab0 -M 239.255.78.21 -P 239.255.78.22 -C "$cc" -R "$((link_bps / 1000))" \
        -H "$hosts" "$work/src.bin" >"$d/send.log" 2>&1 </dev/null || rc=$?
    t1=$(now)
    stop_pids
    local ok=0
    for ((i = 1; i <= n; i++)); do cmp -s "$work/src.bin" "$d/r$i/src.bin" && ok=$((ok + 1)); done
    python3 - "$label" "$t0" "$t1" "$size_bytes" "$link_bps" "$ok" "$n" "$d/samples" <<'PY'
import sys
label, t0, t1, size, link, ok, n, f = sys.argv[1:9]
t0, t1, size, link = float(t0), float(t1), int(size), float(link)
lo, hi = t0 + (t1 - t0) / 4, t0 + 3 * (t1 - t0) / 4
s = [tuple(map(float, l.split())) for l in open(f) if len(l.split()) == 2]
s = [x for x in s if lo <= x[0] <= hi]
wire = (s[-1][1] - s[0][1]) * 8 / (s[-1][0] - s[0][0]) if len(s) > 2 else 0.0
good = size * 8 / (t1 - t0)
print(f"rate: case=b tool=uftp-{label} seconds={t1 - t0:.2f} ok={ok}/{n} "
      f"goodput={good / 1e6:.1f}Mbit/s ({good / link:.3f} of link) "
      f"wire={wire / 1e6:.1f}Mbit/s ({wire / link:.3f})")
PY
    ((rc == 0)) || echo "rate: uftp exit status $rc" >&2
}

# Case d: iperf3 TCP from the sender to receiver 1 across the sender's uplink, the push 2 s in.
iperf_case() {
    local d=$work/d rc=0 ip0
    mkdir -p "$d"
    lab_up
    in_ns r1 iperf3 -s -1 -B 198.18.0.11 >"$d/iperf-server.log" 2>&1 &
    pids+=("$!")
    local tries
    for ((tries = 0; ; tries++)); do
        ip netns exec "${P}r1" ss -Hltn "sport = :5201" | grep -q . && break
        ((tries < 100)) || { echo "rate: iperf3 server did not start" >&2; return 1; }
        sleep 0.05
    done
    start_sampler "$d/samples"
    ip0=$(now)
    in_ns s iperf3 -c 198.18.0.11 -t "$iperf_s" -i 0.5 -J >"$d/iperf.json" 2>"$d/iperf.log" &
    local ipid=$!
    pids+=("$ipid")
    sleep 2 # the TCP flow is in steady state before the push starts (not a synchronisation)
    run_mcast "$d" || rc=$?
    wait "$ipid" || echo "rate: iperf3 client failed" >&2
    stop_pids
    summarize d "$d" 0
    python3 - "$d" "$ip0" "$t_start" "$t_end" "$link_bps" <<'PY'
import json, sys
d, ip0, t0, t1, link = sys.argv[1], *map(float, sys.argv[2:6])
try:
    j = json.load(open(f"{d}/iperf.json"))
except (OSError, ValueError) as e:
    print(f"rate: case=d no iperf3 report ({e})"); sys.exit(0)
# Intervals wholly inside the push (iperf3's times are from its own start, ip0).
tcp = sec = 0.0
for iv in j["intervals"]:
    s = iv["sum"]
    a, b = ip0 + s["start"], ip0 + s["end"]
    if a >= t0 and b <= t1:
        tcp += s["bytes"]; sec += s["seconds"]
if sec == 0:
    print("rate: case=d no iperf3 interval inside the push"); sys.exit(0)
lo, hi = max(t0, ip0 + j["intervals"][0]["sum"]["start"]), min(t1, ip0 + j["intervals"][-1]["sum"]["end"])
smp = [tuple(map(float, l.split())) for l in open(f"{d}/samples") if len(l.split()) == 2]
smp = [x for x in smp if lo <= x[0] <= hi]
total = (smp[-1][1] - smp[0][1]) * 8 / (smp[-1][0] - smp[0][0]) if len(smp) > 2 else 0.0
tcp_bps = tcp * 8 / sec
print(f"rate: case=d overlap={sec:.1f}s iperf3_tcp={tcp_bps / 1e6:.1f}Mbit/s "
      f"({tcp_bps / link:.3f} of link, target >= 0.333) "
      f"mcast_approx={max(0.0, total - tcp_bps * 1.04) / 1e6:.1f}Mbit/s "
      f"(s0 total {total / 1e6:.1f} minus TCP with headers)")
PY
    ((rc == 0)) || echo "rate: case=d mcast-send exit status $rc" >&2
}

echo "rate: generating $size of random data; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
head -c "$size_bytes" /dev/urandom >"$work/src.bin"
for c in "${case_list[@]}"; do
    echo "rate: case $c (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    case $c in
    fixed) mcast_case fixed 0 -- --rate "$link" ;;
    a) mcast_case a 0 -- ;;
    b)
        mcast_case b "$loss" --loss "$loss" --
        if ((uftp)); then
            lab_up --loss "$loss"
            uftp_case tfmcc tfmcc
            uftp_case fixed none
        fi
        ;;
    bfixed) mcast_case bfixed "$loss" --loss "$loss" -- --rate "$link" ;;
    c) mcast_case c 0 --rate-override "1:$slow" -- ;;
    cf) mcast_case cf 0 --rate-override "1:$slow" -- --straggler-fraction 0.5 ;;
    e) mcast_case e 0 --ce-override "1:$ce_pct" -- ;;
    d) iperf_case ;;
    esac
    "$LAB" down >/dev/null 2>&1 || true
done
echo "rate: slow link in c: $((slow_bps / 1000000)) Mbit/s; link $((link_bps / 1000000)) Mbit/s" >&2
