#!/usr/bin/env bash
# Demo push: one mcast-send and RECEIVERS mcast-recv on loopback multicast, in a private user +
# network namespace (no root, nothing leaves this host), with injected receive loss.
#
#   netns-scripts/demo.sh                      # 256 MiB to 3 receivers at 1 Gbit/s, 2 % loss
#   SIZE_MB=1024 RECEIVERS=5 RATE=2G DROP=0.01 netns-scripts/demo.sh
#   FAMILY=6 netns-scripts/demo.sh             # the same over IPv6 (ff15::/16 on a veth pair)
#
# Environment: SIZE_MB (256), RECEIVERS (3), RATE (1G), DROP (0.02), TIMEOUT (120 seconds),
# FAMILY (4; 6 for IPv6), GROUP (239.255.0.1:7000, or [ff15::1]:7000 with FAMILY=6),
# MCAST_BIN_DIR (default: target/release, built here with `cargo build --release --bins`).

set -euo pipefail

SIZE_MB=${SIZE_MB:-256}
RECEIVERS=${RECEIVERS:-3}
RATE=${RATE:-1G}
DROP=${DROP:-0.02}
TIMEOUT=${TIMEOUT:-120}
FAMILY=${FAMILY:-4}
if [[ $FAMILY == 6 ]]; then GROUP=${GROUP:-[ff15::1]:7000}; else GROUP=${GROUP:-239.255.0.1:7000}; fi

script=$(readlink -f "${BASH_SOURCE[0]}")
here=$(dirname "$script")
root=$(dirname "$here")

[[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] || { echo "demo: SIZE_MB must be a positive integer" >&2; exit 2; }

if [[ ${MCAST_DEMO_IN_NS:-} != 1 ]]; then
    # Outside the namespace: build (cargo is a no-op when the binaries are fresh), then re-exec.
    if [[ -z ${MCAST_BIN_DIR:-} ]]; then
        MCAST_BIN_DIR=${CARGO_TARGET_DIR:-$root/target}/release
        echo "demo: cargo build --release --bins (several minutes the first time)" >&2
        (cd "$root" && cargo build --release --bins)
    fi
    MCAST_BIN_DIR=$(readlink -f "$MCAST_BIN_DIR")
    for b in mcast-send mcast-recv; do
        [[ -x $MCAST_BIN_DIR/$b ]] || { echo "demo: $MCAST_BIN_DIR/$b missing" >&2; exit 1; }
    done
    if ! unshare -rn true 2>/dev/null; then
        echo "demo: 'unshare -rn' failed: unprivileged user namespaces are disabled here" >&2
        echo "      (see sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces, or" >&2
        echo "      kernel.apparmor_restrict_unprivileged_userns on Ubuntu)" >&2
        exit 1
    fi
    export MCAST_BIN_DIR MCAST_DEMO_IN_NS=1
    exec unshare -rn bash "$script" "$@"
fi

# ---- inside the private namespace from here on ----------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/mcast-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

src=$work/demo-${SIZE_MB}MiB.bin
echo "demo: generating $SIZE_MB MiB of random data" >&2
head -c "$((SIZE_MB * 1048576))" /dev/urandom >"$src"
mkdir "$work/run"

rc=0
MCAST_SEND_BIN=$MCAST_BIN_DIR/mcast-send MCAST_RECV_BIN=$MCAST_BIN_DIR/mcast-recv \
    SRC=$src WORK=$work/run FAMILY=$FAMILY RECEIVERS=$RECEIVERS GROUP=$GROUP RATE=$RATE DROP=$DROP \
    SEED_BASE=11 TIMEOUT=$TIMEOUT bash "$here/ns-run.sh" || rc=$?

show_json() {
    if command -v python3 >/dev/null; then
        python3 -c '
import json, sys
text = open(sys.argv[1]).read()
dec, i = json.JSONDecoder(), 0
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i == len(text):
        break
    obj, i = dec.raw_decode(text, i)
    print(json.dumps(obj, indent=2))
' "$1" 2>/dev/null || cat "$1"
    else
        cat "$1"
    fi
}

echo "== sender report"
show_json "$work/run/send.json"
for ((i = 1; i <= RECEIVERS; i++)); do
    echo "== receiver $i report"
    show_json "$work/run/recv-$i.json"
done

if ((rc != 0)); then
    echo "demo: FAILED (ns-run exit $rc); see the messages above" >&2
    exit 1
fi

ok=0
for ((i = 1; i <= RECEIVERS; i++)); do
    copy=$work/run/recv-$i/$(basename "$src")
    if cmp -s "$src" "$copy"; then
        ok=$((ok + 1))
    else
        echo "demo: receiver $i: $copy differs from the source (or is missing)" >&2
    fi
done

elapsed=$(cat "$work/run/elapsed")
send_secs=$(grep -o '"seconds":[ ]*[0-9.eE+-]*' "$work/run/send.json" | head -n 1 | sed 's/.*:[ ]*//')
# The units of the README's tables: seconds, payload goodput in Mbit/s (bit/s as --rate takes
# it), sizes in MiB.
summary=$(awk -v mb="$SIZE_MB" -v t="$elapsed" -v st="${send_secs:-0}" 'BEGIN {
    bytes = mb * 1048576
    printf "%.2f s end to end, payload goodput %.0f Mbit/s", t, bytes * 8 / t / 1e6
    if (st > 0) printf " (sender reports %.2f s, %.0f Mbit/s)", st, bytes * 8 / st / 1e6
}')
echo "demo: $SIZE_MB MiB to $ok/$RECEIVERS receivers over IPv$FAMILY verified with cmp, rate $RATE, drop $DROP: $summary"
((ok == RECEIVERS)) || exit 1
