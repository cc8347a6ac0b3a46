#!/usr/bin/env bash
# Side-by-side benchmark on the lab (netns-scripts/lab.sh): the same file pushed to N receivers
# with mcast, udpcast, UFTP and BitTorrent (as Twitter's Murder did it: opentracker in the
# sender's namespace, the sender seeding, every receiver downloading and seeding at once with
# aria2c; DHT, peer exchange, local peer discovery and encryption off). Needs root.
#
# This script owns: the lab (it runs `lab.sh up` per (N, loss) and `lab.sh down` on exit), a work
# directory /tmp/mcast-lab.XXXXXX (removed on exit), the processes it starts inside the lab
# namespaces (stopped by PID), and its outputs: OUT/bench.csv (appended), OUT/bench.svg and
# OUT/bench.md (this invocation's table and plot). It installs missing peers with apt-get.
#
# Each run prints one line:
#   tool=mcast n=8 loss=1% rate=1G seconds=3.21 ok=8/8 bytes_on_wire=... recv_cpu_s_per_gb=...
# seconds: from the start of the push (including per-tool set-up such as creating the .torrent
#   and starting the tracker; receivers/daemons that wait for a push are started before) until
#   the last receiver's tool says it holds the whole file: mcast-recv and udp-receiver exit,
#   aria2c runs its download-complete hook, the uftp server exits after every client's COMPLETE. Every copy is then checked with
#   sha256sum against the source, outside the timed window; ok = copies that match.
# Exit status: 0 if every run verified on every receiver, 1 if some did not, 2 on bad usage.
# bytes_on_wire: sum of rx+tx bytes over every bridge port (s0, r1..rN) during the run, i.e.
#   every byte that crossed any link in either direction: the fabric cost.
# recv_cpu_s_per_gb: CPU seconds (user + system) the receiver processes used, summed over the N
#   receivers, divided by the GB (10^9 bytes) each received and by N: what one receiver pays per
#   GB. Each receiver runs under a small wrapper (python3, os.wait4) that records its rusage,
#   children included, when it exits or is stopped; a receiver killed before it could record
#   makes the figure "-". It is also the last CSV column.
# The CSV also has cpu_busy_s (CPU seconds the whole machine was busy during the run; near
# CPUs x seconds means CPU-bound) and rcvbuf_drops (datagrams the receivers' kernels dropped for
# a full socket buffer, i.e. a receiver that did not keep up).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: netns-scripts/bench.sh [options]

  --size SIZE          file size, with K/M/G suffix (binary)                 [256M]
  --receivers LIST     comma-separated receiver counts N                     [4,8]
  --loss LIST          comma-separated random loss in % per receiver link and direction  [0,1]
  --rate RATE          sender uplink and receiver link rate (and each tool's send rate)  [1G]
  --tool-rate RATE     send rate given to mcast, udpcast and uftp (default: --rate)
  --tools LIST         any of mcast,udpcast,uftp,bittorrent                  [all four]
  --snooping on|off    bridge multicast snooping                             [on]
  --offload on|off     keep segmentation offload on the lab veths (loss then hits whole GSO
                       batches); off = the lab segments per frame, as a switch sees it  [off]
  --timeout SECONDS    bound of each single push                             [300]
  --out DIR            where bench.csv (appended), bench.md and bench.svg go [./bench-out]
  --keep               keep the work directory (logs, JSON reports; not the copies)
  --no-install         do not apt-get missing peers; skip tools that are missing
  -h, --help           this text

Environment: MCAST_BIN_DIR (mcast-send/mcast-recv; default: target/release, built with cargo),
LAB_PREFIX (namespace prefix for lab.sh, default "mcl-").

Examples:
  # The README's table (take the shared benchmark lock so runs do not overlap):
  flock /tmp/mcast-bench.lock netns-scripts/bench.sh --size 256M --receivers 4,8 --loss 0,1 --rate 1G
  # Quick smoke, mcast only, no nftables needed:
  netns-scripts/bench.sh --tools mcast --receivers 2 --size 8M --loss 0 --timeout 40
EOF
}

die() {
    echo "bench: $*" >&2
    exit 2
}

script=$(readlink -f "${BASH_SOURCE[0]}")
here=$(dirname "$script")
root=$(dirname "$here")
LAB=$here/lab.sh
# shellcheck source=netns-scripts/lab-lib.sh
source "$here/lab-lib.sh"
P=${LAB_PREFIX:-mcl-}
export LAB_PREFIX=$P

size=256M receivers=4,8 losses=0,1 rate=1G tools=mcast,udpcast,uftp,bittorrent snooping=on offload=off
run_timeout=300 out=./bench-out install=1 keep=0 tool_rate=""
while (($#)); do
    case $1 in
    --size) size=${2:?}; shift 2 ;;
    --receivers) receivers=${2:?}; shift 2 ;;
    --loss) losses=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    --tools) tools=${2:?}; shift 2 ;;
    --tool-rate) tool_rate=${2:?}; shift 2 ;;
    --snooping) snooping=${2:?}; shift 2 ;;
    --offload) offload=${2:?}; shift 2 ;;
    --timeout) run_timeout=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --no-install) install=0; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

[[ $EUID == 0 ]] || die "needs root (network namespaces, bridge, tc, nftables)"
[[ $size =~ ^([0-9]+)([KMG]?)$ ]] || die "bad --size '$size' (e.g. 256M)"
case ${BASH_REMATCH[2]} in
K) size_bytes=$((BASH_REMATCH[1] << 10)) ;;
M) size_bytes=$((BASH_REMATCH[1] << 20)) ;;
G) size_bytes=$((BASH_REMATCH[1] << 30)) ;;
*) size_bytes=${BASH_REMATCH[1]} ;;
esac
((size_bytes > 0)) || die "--size must be > 0"
[[ $rate =~ ^[0-9]+[kMG]$ ]] || die "bad --rate '$rate' (e.g. 1G, 500M)"
tool_rate=${tool_rate:-$rate}
[[ $tool_rate =~ ^([0-9]+)([kMG])$ ]] || die "bad --tool-rate '$tool_rate' (e.g. 1G, 500M)"
case ${BASH_REMATCH[2]} in
k) rate_kbps=${BASH_REMATCH[1]} ;;
M) rate_kbps=$((BASH_REMATCH[1] * 1000)) ;;
G) rate_kbps=$((BASH_REMATCH[1] * 1000000)) ;;
esac
[[ $run_timeout =~ ^[1-9][0-9]*$ ]] || die "bad --timeout '$run_timeout'"
IFS=, read -r -a n_list <<<"$receivers"
IFS=, read -r -a loss_list <<<"$losses"
IFS=, read -r -a tool_list <<<"$tools"
for n in "${n_list[@]}"; do
    if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > 200)); then die "bad N '$n'"; fi
done
for l in "${loss_list[@]}"; do [[ $l =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad loss '$l'"; done
for tool in "${tool_list[@]}"; do
    [[ $tool =~ ^(mcast|udpcast|uftp|bittorrent)$ ]] || die "unknown tool '$tool'"
done

# ---- prerequisites --------------------------------------------------------------------------
need_nft=0
for l in "${loss_list[@]}"; do awk -v l="$l" 'BEGIN { exit !(l > 0) }' && need_nft=1; done
declare -A pkg_of=([udp-sender]=udpcast [udp-receiver]=udpcast [uftp]=uftp [uftpd]=uftp
    [opentracker]=opentracker [aria2c]=aria2 [mktorrent]=mktorrent [nft]=nftables [ethtool]=ethtool)
want_cmds=(ip tc ss sha256sum python3)
# With loss, ethtool makes the lab segment per frame without costing TCP its GSO (lab.sh).
((need_nft)) && want_cmds+=(nft ethtool)
for tool in "${tool_list[@]}"; do
    case $tool in
    udpcast) want_cmds+=(udp-sender udp-receiver) ;;
    uftp) want_cmds+=(uftp uftpd) ;;
    bittorrent) want_cmds+=(opentracker aria2c mktorrent) ;;
    esac
done
missing_pkgs=()
for c in "${want_cmds[@]}"; do
    command -v "$c" >/dev/null && continue
    [[ -n ${pkg_of[$c]:-} ]] || die "$c not found (install iproute2/coreutils/python3)"
    missing_pkgs+=("${pkg_of[$c]}")
done
if ((${#missing_pkgs[@]})); then
    mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
    if ((install)); then
        echo "bench: installing ${missing_pkgs[*]}" >&2
        timeout 600 apt-get update -qq >&2 || true
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
            "${missing_pkgs[@]}" >&2 || die "apt-get install ${missing_pkgs[*]} failed"
    else
        die "missing packages: ${missing_pkgs[*]} (drop --no-install to apt-get them)"
    fi
fi

if [[ " ${tool_list[*]} " == *" mcast "* ]]; then
    if [[ -z ${MCAST_BIN_DIR:-} ]]; then
        MCAST_BIN_DIR=${CARGO_TARGET_DIR:-$root/target}/release
        echo "bench: cargo build --release --bins" >&2
        (cd "$root" && cargo build --release --bins >&2)
    fi
    MCAST_BIN_DIR=$(readlink -f "$MCAST_BIN_DIR")
    for b in mcast-send mcast-recv; do
        [[ -x $MCAST_BIN_DIR/$b ]] || die "$MCAST_BIN_DIR/$b missing"
    done
fi

# ---- work directory, cleanup ------------------------------------------------------------------
mkdir -p "$out"
out=$(readlink -f "$out")
work=$(mktemp -d /tmp/mcast-lab.XXXXXX)
chmod 755 "$work" # opentracker drops to "nobody" inside its chroot under here
declare -a pids=()

# shellcheck disable=SC2317  # invoked by trap
cleanup() {
    stop_pids
    "$LAB" down >/dev/null 2>&1 || true
    if ((keep)); then
        rm -rf "$work/src"
        echo "bench: kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_ns for receiver I of a run in DIR: its rusage goes to DIR/cpu-I (see rusage.py).
in_ns_recv() {
    local i=$1 d=$2
    shift 2
    in_ns "r$i" python3 "$here/rusage.py" "$d/cpu-$i" "$@"
}

# The receivers' CPU seconds per GB received per receiver (run DIR, N receivers, SIZE bytes),
# or "-" if a receiver left no record.
recv_cpu_per_gb() {
    local d=$1 n=$2 bytes=$3 i total=0 f
    for ((i = 1; i <= n; i++)); do
        f=$d/cpu-$i
        [[ -s $f ]] || { echo "-"; return; }
        total=$(awk -v t="$total" '{ printf "%.3f", t + $1 + $2 }' "$f")
    done
    awk -v t="$total" -v n="$n" -v b="$bytes" 'BEGIN { printf "%.3f", t / (b / 1e9) / n }'
}

now() { date +%s.%N; }

recv_ip() { echo "198.18.0.$((10 + $1))"; }

# Sum of rx+tx bytes over all bridge ports; and of the sender's port alone.
wire_bytes() {
    local n=$1 port total=0 sender=0 rx tx
    for port in s0 $(seq -f 'r%g' 1 "$n"); do
        read -r rx tx <<<"$(ip netns exec "${P}br" cat "/sys/class/net/$port/statistics/rx_bytes" \
            "/sys/class/net/$port/statistics/tx_bytes" | tr '\n' ' ')"
        total=$((total + rx + tx))
        [[ $port == s0 ]] && sender=$((rx + tx))
    done
    echo "$total $sender"
}

# UDP datagrams the receivers' kernels dropped for a full socket buffer (RcvbufErrors, summed).
rcvbuf_errors() {
    local n=$1 i total=0 v
    for ((i = 1; i <= n; i++)); do
        # shellcheck disable=SC2016  # awk program
        v=$(ip netns exec "${P}r$i" awk '/^Udp:/ { if (!h) { for (k = 1; k <= NF; k++) if ($k == "RcvbufErrors") c = k; h = 1 } else print $c }' /proc/net/snmp)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# CPU seconds (all CPUs, all processes: user+nice+system+irq+softirq) since boot.
cpu_busy() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8) / hz }' /proc/stat
}

# Wait (bounded) until UDP port PORT is bound in the namespace of every receiver 1..N.
wait_udp_bound() {
    local n=$1 port=$2 i tries
    for ((i = 1; i <= n; i++)); do
        for ((tries = 0; ; tries++)); do
            ip netns exec "${P}r$i" ss -Hlun "sport = :$port" | grep -q . && break
            ((tries < 100)) || { echo "bench: receiver $i never bound UDP $port" >&2; return 1; }
            sleep 0.05
        done
    done
}

# Wait (bounded by the run timeout) until every PID given has exited; fail if one failed.
wait_all() {
    local pid rc=0
    for pid in "$@"; do wait "$pid" || rc=1; done
    return "$rc"
}

# ---- the tools -----------------------------------------------------------------------------
# Each run_TOOL N DIR: receivers write to DIR/rI/; sets t_start and t_end; returns non-zero on
# failure (timeout, error exit). Logs go to DIR/*.log.

# The push's end: the sender (PID $1) has started and the receivers' PIDs are in rp. Time stops
# when the last receiver is done (mcast's sender then lingers briefly for late reports, which is
# not part of the push); fails if the sender or any receiver failed.
finish_push() {
    local sp=$1 rc=0
    pids+=("$sp")
    wait_all "${rp[@]}" || rc=1
    t_end=$(now)
    wait "$sp" || rc=1
    return "$rc"
}

run_mcast() {
    local n=$1 d=$2 i tries ready
    local -a rp=()
    for ((i = 1; i <= n; i++)); do
        in_ns_recv "$i" "$d" "$MCAST_BIN_DIR/mcast-recv" --group 239.255.77.1:7000 --interface lab0 \
            --output "$d/r$i" --once --json --timeout "${run_timeout}s" \
            --ready-file "$d/r$i.ready" >"$d/recv-$i.json" 2>"$d/recv-$i.log" &
        rp+=("$!")
    done
    pids+=("${rp[@]}")
    for ((tries = 0; ; tries++)); do
        ready=0
        for ((i = 1; i <= n; i++)); do [[ -e $d/r$i.ready ]] && ready=$((ready + 1)); done
        ((ready == n)) && break
        ((tries < 200)) || { echo "bench: mcast: $ready/$n receivers ready after 10 s" >&2; return 1; }
        sleep 0.05
    done
    t_start=$(now)
    in_ns s "$MCAST_BIN_DIR/mcast-send" "$src" --group 239.255.77.1:7000 --interface lab0 \
        --rate "$tool_rate" --receivers "$n" --timeout "${run_timeout}s" --json \
        >"$d/send.json" 2>"$d/send.log" &
    finish_push "$!"
}

# --rexmit-hello-interval: under loss a receiver's connect request can be lost, and without
# repeated HELLOs the sender waits for it forever. --retries-until-drop 200: the default drops a
# receiver whose acknowledgements were lost a few times in a row (seen at 1 % loss).
run_udpcast() {
    local n=$1 d=$2 i
    local -a rp=()
    for ((i = 1; i <= n; i++)); do
        in_ns_recv "$i" "$d" udp-receiver --interface lab0 --nokbd --portbase 9000 \
            --mcast-rdv-address 239.255.77.12 --file "$d/r$i/$(basename "$src")" \
            >"$d/recv-$i.log" 2>&1 </dev/null &
        rp+=("$!")
    done
    pids+=("${rp[@]}")
    wait_udp_bound "$n" 9000 || return 1
    t_start=$(now)
    in_ns s udp-sender --interface lab0 --nokbd --full-duplex --portbase 9000 \
        --mcast-data-address 239.255.77.11 --mcast-rdv-address 239.255.77.12 \
        --rexmit-hello-interval 500 --retries-until-drop 200 \
        --min-receivers "$n" --max-bitrate "$((rate_kbps / 1000))m" --file "$src" \
        >"$d/send.log" 2>&1 </dev/null &
    finish_push "$!"
}

uid_of() { printf '0x%08X' "$((0xC6120000 + 10 + $1))"; } # 198.18.0.(10+I) as a UFTP id

run_uftp() {
    local n=$1 d=$2 i hosts=""
    for ((i = 1; i <= n; i++)); do
        in_ns_recv "$i" "$d" uftpd -d -I lab0 -M 239.255.77.21 -U "$(uid_of "$i")" -D "$d/r$i" \
            >"$d/recv-$i.log" 2>&1 </dev/null &
        pids+=("$!")
        hosts+=${hosts:+,}$(uid_of "$i")
    done
    wait_udp_bound "$n" 1044 || return 1
    t_start=$(now)
    local rc=0
    in_ns s uftp -I lab0 -M 239.255.77.21 -P 239.255.77.22 -R "$rate_kbps" -H "$hosts" \
        "$src" >"$d/send.log" 2>&1 </dev/null || rc=$?
    t_end=$(now)
    # Exit 0 means "at least one client got it"; the hashes below say whether all did.
    grep -q 'Group complete' "$d/send.log" || rc=1
    return "$rc"
}

run_bittorrent() {
    local n=$1 d=$2 i tries done_count
    local -a aria=(aria2c --enable-dht=false --enable-dht6=false --enable-peer-exchange=false
        --bt-enable-lpd=false --bt-require-crypto=false --bt-min-crypto-level=plain
        --disable-ipv6=true --seed-ratio=0.0 --file-allocation=none --summary-interval=0
        --console-log-level=warn --bt-max-peers=0 --max-overall-upload-limit=0
        --follow-torrent=false --allow-overwrite=true --auto-file-renaming=false)
    mkdir -m 755 "$d/tracker"
    for ((i = 1; i <= n; i++)); do
        printf '#!/bin/sh\ntouch "%s"\n' "$d/r$i.done" >"$d/hook-$i.sh"
        chmod +x "$d/hook-$i.sh"
    done
    t_start=$(now)
    # Set-up inside the timed window: the .torrent (1 MiB pieces) and the tracker's whitelist.
    timeout "$run_timeout" mktorrent -a "http://198.18.0.1:6969/announce" -l 20 \
        -o "$d/f.torrent" "$src" >"$d/mktorrent.log" 2>&1 || return 1
    aria2c -S "$d/f.torrent" | awk -F': ' '/Info Hash/ { print $2 }' >"$d/tracker/whitelist"
    chmod 644 "$d/tracker/whitelist"
    in_ns s opentracker -i 198.18.0.1 -p 6969 -P 6969 -d "$d/tracker" -w /whitelist \
        >"$d/tracker.log" 2>&1 </dev/null &
    pids+=("$!")
    for ((tries = 0; ; tries++)); do
        ip netns exec "${P}s" ss -Hltn "sport = :6969" | grep -q . && break
        ((tries < 100)) || { echo "bench: opentracker did not start" >&2; return 1; }
        sleep 0.02
    done
    # The sender seeds the file in place (-V: check it against the .torrent first).
    in_ns s "${aria[@]}" -V -d "$(dirname "$src")" "$d/f.torrent" >"$d/send.log" 2>&1 </dev/null &
    pids+=("$!")
    for ((i = 1; i <= n; i++)); do
        in_ns_recv "$i" "$d" "${aria[@]}" --on-bt-download-complete="$d/hook-$i.sh" -d "$d/r$i" \
            "$d/f.torrent" >"$d/recv-$i.log" 2>&1 </dev/null &
        pids+=("$!")
    done
    # Everybody keeps seeding until the last receiver has the whole file (bounded).
    local deadline=$((SECONDS + run_timeout))
    while :; do
        done_count=0
        for ((i = 1; i <= n; i++)); do [[ -e $d/r$i.done ]] && done_count=$((done_count + 1)); done
        ((done_count == n)) && break
        ((SECONDS < deadline)) || { echo "bench: bittorrent: $done_count/$n done at timeout" >&2; return 1; }
        sleep 0.02
    done
    t_end=$(now)
}

# ---- main loop ----------------------------------------------------------------------------------
src=$work/src/payload-$size.bin
mkdir -p "$work/src"
echo "bench: generating $size of random data" >&2
head -c "$size_bytes" /dev/urandom >"$src"
src_hash=$(sha256sum "$src" | cut -d' ' -f1)

csv=$out/bench.csv
run_id=$(date -u +%Y%m%dT%H%M%SZ)
kernel=$(uname -r)
cpus=$(nproc)
if [[ ! -s $csv ]]; then
    echo "run,date,kernel,cpus,load1,tool,n,loss_pct,rate,size_bytes,seconds,ok,receivers,bytes_on_wire,sender_link_bytes,snooping,cpu_busy_s,rcvbuf_drops,tool_rate,recv_cpu_s_per_gb" >"$csv"
elif [[ $(head -n 1 "$csv") != *,recv_cpu_s_per_gb ]]; then
    # A CSV from before the column: name it (older rows simply have no value).
    sed -i '1s/$/,recv_cpu_s_per_gb/' "$csv"
fi
echo "bench: run $run_id on $(nproc) CPUs, kernel $kernel, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

rate_label=$rate
[[ $tool_rate == "$rate" ]] || rate_label="$rate(tool:$tool_rate)"
failures=0
for n in "${n_list[@]}"; do
    for loss in "${loss_list[@]}"; do
        "$LAB" up -n "$n" --send-rate "$rate" --recv-rate "$rate" --loss "$loss" \
            --snooping "$snooping" --offload "$offload" >&2
        for tool in "${tool_list[@]}"; do
            d=$work/run-$tool-$n-$loss
            mkdir -p "$d"
            for ((i = 1; i <= n; i++)); do mkdir -p "$d/r$i"; done
            load1=$(cut -d' ' -f1 /proc/loadavg)
            read -r wire0 sender0 < <(wire_bytes "$n")
            drops0=$(rcvbuf_errors "$n")
            cpu0=$(cpu_busy)
            t_start=$(now) t_end=""
            rc=0
            "run_$tool" "$n" "$d" || rc=$?
            [[ -n $t_end ]] || t_end=$(now)
            read -r wire1 sender1 < <(wire_bytes "$n")
            cpu1=$(cpu_busy)
            stop_pids
            drops=$(($(rcvbuf_errors "$n") - drops0))
            rcpu=$(recv_cpu_per_gb "$d" "$n" "$size_bytes")
            ok=0
            for ((i = 1; i <= n; i++)); do
                f=$d/r$i/$(basename "$src")
                if [[ -f $f ]] && [[ $(sha256sum "$f" | cut -d' ' -f1) == "$src_hash" ]]; then
                    ok=$((ok + 1))
                fi
            done
            secs=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.3f", b - a }')
            wire=$((wire1 - wire0))
            cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.1f", b - a }')
            line="tool=$tool n=$n loss=$loss% rate=$rate_label seconds=$secs ok=$ok/$n bytes_on_wire=$wire recv_cpu_s_per_gb=$rcpu"
            echo "bench: $tool: machine CPU busy ${cpu} s in ${secs} s on $cpus CPUs; receivers' socket-buffer drops: $drops" >&2
            if [[ $tool == mcast ]]; then
                # The receivers' own count of first-pass datagrams lost: with per-frame loss it
                # matches --loss, and most blocks need a decode (not a copy) at 1 %.
                python3 - "$d" "$n" <<'PY' >&2 || true
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
miss = exp = sysb = dec = 0
for i in range(1, n + 1):
    try:
        s = json.load(open(f"{d}/recv-{i}.json"))["stats"]
    except (OSError, ValueError, KeyError):
        continue
    miss += s["first_pass_missing"]; exp += s["first_pass_expected"]
    sysb += s["blocks_systematic"]; dec += s["blocks_decoded"]
if exp:
    print(f"bench: mcast: receivers measured {100 * miss / exp:.2f} % first-pass datagram loss; "
          f"{100 * dec / max(1, sysb + dec):.0f} % of blocks needed a decode")
PY
            fi
            ((rc == 0)) || line+=" (exit status $rc; logs: see below)"
            ((rc == 0 && ok == n)) || failures=$((failures + 1))
            echo "$line"
            if ((rc != 0 || ok != n)); then
                for log in "$d"/send.log "$d"/recv-1.log; do
                    [[ -f $log ]] && { echo "---- tail of $log" >&2; tail -n 8 "$log" >&2; }
                done
            fi
            echo "$run_id,$(date -u +%FT%TZ),$kernel,$cpus,$load1,$tool,$n,$loss,$rate,$size_bytes,$secs,$ok,$n,$wire,$((sender1 - sender0)),$snooping,$cpu,$drops,$tool_rate,${rcpu/-/}" >>"$csv"
            if ((keep)); then rm -rf "$d"/r[0-9]*/; else rm -rf "$d"; fi
        done
        "$LAB" down >&2
    done
done

python3 "$here/bench-plot.py" "$csv" "$run_id" "$out/bench.svg" | tee "$out/bench.md"
echo "bench: CSV $csv (run $run_id), table $out/bench.md, plot $out/bench.svg" >&2
if ((failures)); then
    echo "bench: $failures run(s) failed or had copies that did not verify" >&2
    exit 1
fi
