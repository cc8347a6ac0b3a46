#!/usr/bin/env bash
# The disk-image lab case (issue 14): a raw image (qemu-img, else truncate) of --size bytes
# holding --data bytes (half compressible text, half random, in several runs, some in the first
# MiB, the rest holes), pushed over the lab (lab.sh: namespaces on a bridge, 198.18.0.0/15) to N
# receivers by each tool in turn:
#
#   mcast          mcast-send --image IMG (holes and zero runs left out) [+ extra flags]
#   mcast-full     mcast-send --image IMG --no-sparse (every byte: the baseline)
#   udpcast        udp-sender --file IMG (raw)
#   udpcast-zstd   udp-sender --pipe 'zstd -c' --file IMG, receivers --pipe 'zstd -dc'
#   mcast-pipe     cat IMG | mcast-send --image - --max-size SIZE [+ extra flags]
#   mcast-pipe-zstd  zstd -dc IMG.zst | mcast-send --image - --max-size SIZE [+ extra flags]
#                  (IMG.zst made once beforehand, not timed)
#
# --pipe runs mcast and mcast-pipe (the same image from the file and through a pipe, the
# same extra flags) unless --tools says otherwise.
#
# Every target is compared with `cmp` against the image (mcast's sparse copies read their holes
# as zero). One line per tool: seconds, bytes on the wire (every bridge port, rx + tx; and
# mcast's own count of symbols sent, from its JSON report), CPU seconds per receiver (rusage of
# each receiver process) and the ratio of seconds to mcast-full's.
#
# Needs root (lab.sh). Installs qemu-utils, udpcast and zstd with apt-get when missing (unless
# --no-install). Only the lab's namespaces and the processes this script starts are touched.
#
# Usage: netns-scripts/image.sh [--size 4G] [--data 600M] [--receivers 4] [--rate 1G] [--loss 0]
#            [--tools mcast,mcast-full,udpcast,udpcast-zstd] [--pipe] [--timeout 900] [--no-install]
#            [-- EXTRA mcast-send FLAGS, e.g. --compress zstd]
# Env: MCAST_BIN_DIR (default: target/release, built if missing), LAB_PREFIX, WORK (default /tmp).
set -Eeuo pipefail

die() {
    echo "image: $*" >&2
    exit 2
}

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
root=$(dirname "$here")
LAB=$here/lab.sh
# shellcheck source=netns-scripts/lab-lib.sh
source "$here/lab-lib.sh"
P=${LAB_PREFIX:-mcl-}
export LAB_PREFIX=$P

size=4G data=600M n=4 rate=1G loss=0 tools=mcast,mcast-full,udpcast,udpcast-zstd
run_timeout=900 install=1 pipe=0 tools_given=0
extra=()
while (($#)); do
    case $1 in
    --size) size=${2:?}; shift 2 ;;
    --data) data=${2:?}; shift 2 ;;
    --receivers) n=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    --loss) loss=${2:?}; shift 2 ;;
    --tools) tools=${2:?}; tools_given=1; shift 2 ;;
    --pipe) pipe=1; shift ;;
    --timeout) run_timeout=${2:?}; shift 2 ;;
    --no-install) install=0; shift ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

bytes_of() { # 4G -> bytes
    [[ $1 =~ ^([0-9]+)([KMG]?)$ ]] || die "bad size '$1' (e.g. 600M, 4G)"
    case ${BASH_REMATCH[2]} in
    K) echo $((BASH_REMATCH[1] << 10)) ;; M) echo $((BASH_REMATCH[1] << 20)) ;;
    G) echo $((BASH_REMATCH[1] << 30)) ;; *) echo "${BASH_REMATCH[1]}" ;;
    esac
}
size_b=$(bytes_of "$size")
data_b=$(bytes_of "$data")
((data_b + (8 << 20) <= size_b)) || die "--data must leave at least 8 MiB of holes in --size"
[[ $n =~ ^[1-9][0-9]*$ ]] && ((n <= 64)) || die "bad --receivers '$n'"
[[ $rate =~ ^([0-9]+)([kMG])$ ]] || die "bad --rate '$rate' (e.g. 1G)"
case ${BASH_REMATCH[2]} in
k) rate_mbit=$((BASH_REMATCH[1] / 1000)) ;; M) rate_mbit=${BASH_REMATCH[1]} ;;
G) rate_mbit=$((BASH_REMATCH[1] * 1000)) ;;
esac
[[ $EUID == 0 ]] || die "needs root (network namespaces, bridge, tc)"
((pipe && !tools_given)) && tools=mcast,mcast-pipe
IFS=, read -r -a tool_list <<<"$tools"

# ---- prerequisites ---------------------------------------------------------------------------
declare -A pkg_of=([qemu-img]=qemu-utils [udp-sender]=udpcast [udp-receiver]=udpcast [zstd]=zstd
    [nft]=nftables [ethtool]=ethtool)
want=(python3 cmp)
[[ $loss != 0 ]] && want+=(nft ethtool)
[[ ",$tools," == *,udpcast* ]] && want+=(udp-sender udp-receiver zstd)
[[ ",$tools," == *,mcast-pipe-zstd,* ]] && want+=(zstd)
missing=()
for c in qemu-img "${want[@]}"; do
    command -v "$c" >/dev/null || missing+=("${pkg_of[$c]:-$c}")
done
if ((${#missing[@]})) && ((install)); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "image: installing ${missing[*]}" >&2
    timeout 600 apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2 || echo "image: apt-get install ${missing[*]} failed" >&2
fi
for c in "${want[@]}"; do command -v "$c" >/dev/null || die "$c not found"; done
if [[ -z ${MCAST_BIN_DIR:-} ]]; then
    MCAST_BIN_DIR=${CARGO_TARGET_DIR:-$root/target}/release
    [[ -x $MCAST_BIN_DIR/mcast-send ]] || (cd "$root" && cargo build --release --bins >&2)
fi
MCAST_BIN_DIR=$(readlink -f "$MCAST_BIN_DIR")

# ---- work directory, cleanup -----------------------------------------------------------------
work=$(mktemp -d "${WORK:-/tmp}/mcast-image.XXXXXX")
declare -a pids=()
# shellcheck disable=SC2317  # invoked by trap
cleanup() {
    stop_pids
    "$LAB" down >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the image -------------------------------------------------------------------------------
img=$work/disk.img
if command -v qemu-img >/dev/null; then
    qemu-img create -q -f raw "$img" "$size_b"
else
    truncate -s "$size_b" "$img"
fi
# Eight runs of data (even: text, odd: random) spread over the image; the first at 64 KiB, so
# the first MiB (partition table, superblocks) holds data too. A 64 MiB run of written zeros.
python3 - "$img" "$size_b" "$data_b" <<'PY'
import os, sys
path, size, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs, chunk = 8, 1 << 20
per = data // runs
words = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ".split()
with open(path, "r+b") as f:
    for r in range(runs):
        off = 64 << 10 if r == 0 else (size // runs) * r
        f.seek(off)
        left = per
        while left:
            n = min(chunk, left)
            if r % 2:
                buf = os.urandom(n)
            else:
                line = b" ".join(words[(i * 7 + r) % len(words)] for i in range(40)) + b"\n"
                buf = (line * (n // len(line) + 1))[:n]
            f.write(buf)
            left -= n
    f.seek(size // 2 + (size // runs) // 2)
    f.write(bytes(64 << 20) if size > (256 << 20) else bytes(1 << 20))
PY
echo "image: $img: $size_b bytes, $data_b of data" >&2
if [[ ",$tools," == *,mcast-pipe-zstd,* ]]; then
    zstd -q -T0 -c "$img" >"$img.zst"
    echo "image: $img.zst: $(stat -c %s "$img.zst") bytes" >&2
fi

wire_bytes() {
    local port total=0 rx tx
    for port in s0 $(seq -f 'r%g' 1 "$n"); do
        read -r rx tx <<<"$(ip netns exec "${P}br" cat "/sys/class/net/$port/statistics/rx_bytes" \
            "/sys/class/net/$port/statistics/tx_bytes" | tr '\n' ' ')"
        total=$((total + rx + tx))
    done
    echo "$total"
}
wait_udp_bound() {
    local i tries
    for ((i = 1; i <= n; i++)); do
        for ((tries = 0; tries < 200; tries++)); do
            ip netns exec "${P}r$i" ss -Hlun "sport = :$1" | grep -q . && break
            sleep 0.05
        done
    done
}

run_tool() { # run_tool TOOL DIR -> sets t_start t_end; returns non-zero on failure
    local tool=$1 d=$2 i rc=0 sp
    local -a rp=() flags=()
    case $tool in
    mcast | mcast-full | mcast-pipe | mcast-pipe-zstd)
        [[ $tool == mcast-full ]] && flags=(--no-sparse)
        [[ $tool != mcast-full ]] && flags=("${extra[@]}")
        for ((i = 1; i <= n; i++)); do
            in_ns "r$i" python3 "$here/rusage.py" "$d/cpu-$i" "$MCAST_BIN_DIR/mcast-recv" \
                --group 239.255.78.1:7000 --interface lab0 --output "$d/r$i/disk.img" --once \
                --json --no-space-check --timeout "${run_timeout}s" --ready-file "$d/r$i.ready" \
                >"$d/recv-$i.json" 2>"$d/recv-$i.log" &
            rp+=("$!")
        done
        pids+=("${rp[@]}")
        for ((i = 1; i <= n; i++)); do
            timeout 10 bash -c "until [[ -e '$d/r$i.ready' ]]; do sleep 0.05; done" || return 1
        done
        local -a src=(--image "$img") feed=(cat "$img")
        [[ $tool == mcast-pipe* ]] && src=(--image - --max-size "$size_b")
        [[ $tool == mcast-pipe-zstd ]] && feed=(zstd -q -dc "$img.zst")
        t_start=$(date +%s.%N)
        if [[ $tool == mcast-pipe* ]]; then
            # shellcheck disable=SC2016  # expanded by the inner bash
            in_ns s bash -c '"${@:2:$1}" | "${@:$1+2}"' feed "${#feed[@]}" "${feed[@]}" \
                "$MCAST_BIN_DIR/mcast-send" "${src[@]}" "${flags[@]}" --group 239.255.78.1:7000 \
                --interface lab0 --rate "$rate" --receivers "$n" --timeout "${run_timeout}s" \
                --json >"$d/send.json" 2>"$d/send.log" &
        else
            in_ns s "$MCAST_BIN_DIR/mcast-send" "${src[@]}" "${flags[@]}" \
                --group 239.255.78.1:7000 --interface lab0 --rate "$rate" --receivers "$n" \
                --timeout "${run_timeout}s" --json >"$d/send.json" 2>"$d/send.log" &
        fi
        sp=$! ;;
    udpcast | udpcast-zstd)
        local -a spipe=() rpipe=()
        [[ $tool == udpcast-zstd ]] && spipe=(--pipe "zstd -q -c -T0") && rpipe=(--pipe "zstd -q -dc")
        for ((i = 1; i <= n; i++)); do
            in_ns "r$i" python3 "$here/rusage.py" "$d/cpu-$i" udp-receiver --interface lab0 --nokbd \
                --portbase 9000 --mcast-rdv-address 239.255.78.12 "${rpipe[@]}" \
                --file "$d/r$i/disk.img" >"$d/recv-$i.log" 2>&1 </dev/null &
            rp+=("$!")
        done
        pids+=("${rp[@]}")
        wait_udp_bound 9000
        t_start=$(date +%s.%N)
        in_ns s udp-sender --interface lab0 --nokbd --full-duplex --portbase 9000 \
            --mcast-data-address 239.255.78.11 --mcast-rdv-address 239.255.78.12 \
            --rexmit-hello-interval 500 --retries-until-drop 200 "${spipe[@]}" \
            --min-receivers "$n" --max-bitrate "${rate_mbit}m" --file "$img" \
            >"$d/send.log" 2>&1 </dev/null &
        sp=$! ;;
    *) die "unknown tool '$tool'" ;;
    esac
    pids+=("$sp")
    for i in "${rp[@]}"; do wait "$i" || rc=1; done
    t_end=$(date +%s.%N)
    wait "$sp" || rc=1
    return "$rc"
}

# ---- the runs --------------------------------------------------------------------------------
declare -A secs=()
printf '%-13s %9s %16s %16s %14s %s\n' tool seconds "wire bytes" "mcast symbols B" "recv CPU s" "ok" >&2
for tool in "${tool_list[@]}"; do
    "$LAB" up -n "$n" --send-rate "$rate" --recv-rate "$rate" --loss "$loss" >/dev/null
    d=$work/run-$tool
    mkdir -p "$d"
    for ((i = 1; i <= n; i++)); do mkdir -p "$d/r$i"; done
    w0=$(wire_bytes)
    ok=ok
    run_tool "$tool" "$d" || ok="FAILED (logs: $d)"
    w1=$(wire_bytes)
    stop_pids
    for ((i = 1; i <= n; i++)); do
        cmp -s "$img" "$d/r$i/disk.img" || ok="cmp FAILED at r$i"
    done
    t=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.2f", b - a }')
    secs[$tool]=$t
    symbols=-
    if [[ $tool == mcast* && -s $d/send.json ]]; then
        symbols=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print((r["data_packets"]+r["repair_packets"])*1400)' "$d/send.json")
    fi
    cpu=$(cat "$d"/cpu-* 2>/dev/null | awk '{ s += $1 + $2; n++ } END { if (n) printf "%.2f", s / n; else print "-" }')
    printf '%-13s %9s %16s %16s %14s %s\n' "$tool" "$t" "$((w1 - w0))" "$symbols" "$cpu" "$ok"
    [[ $ok == ok ]] || { tail -n 5 "$d"/*.log >&2 || true; }
    rm -rf "${d:?}"/r*/
    "$LAB" down >/dev/null
done
if [[ -n ${secs[mcast-full]:-} ]]; then
    for tool in "${tool_list[@]}"; do
        awk -v a="${secs[$tool]}" -v b="${secs[mcast-full]}" -v t="$tool" \
            'BEGIN { if (b > 0) printf "%s: %.2f x mcast-full\n", t, a / b }'
    done
fi
