#!/usr/bin/env bash
# One push of a file or a directory tree over IPv4 loopback multicast, to be run INSIDE a
# private network namespace:
#
#   unshare -rn env MCAST_SEND_BIN=... MCAST_RECV_BIN=... SRC=DIR WORK=... bash ns-tree.sh
#
# Brings lo up with multicast and a 239.0.0.0/8 route, starts RECEIVERS mcast-recv processes
# with --output "$OUTPUT-I" (I = 1..RECEIVERS; for a tree that is the tree's root, which may be
# absent: only its parent must exist), waits for their ready files, runs mcast-send SRC with
# --receivers RECEIVERS, then collects every exit code. Several pushes can share one WORK (and
# one OUTPUT, e.g. a second push with RECV_ARGS=--replace) under different TAGs. Used by
# tests/netns_tree.rs; by hand, e.g. for timing a tree against a single file.
#
# Inputs (environment):
#   MCAST_SEND_BIN, MCAST_RECV_BIN  paths of the binaries (required)
#   SRC                             file or directory to send (required)
#   WORK                            directory for logs and reports (required)
#   TAG=push                        prefix of this push's files in WORK
#   OUTPUT=$WORK/dest               receiver I gets --output "$OUTPUT-I"
#   MKDIR_OUTPUT=0                  1: create each "$OUTPUT-I" first (a single file needs it)
#   RECV_ARGS=                      extra mcast-recv arguments, split on spaces (e.g. --replace)
#   RECEIVERS=3  GROUP=239.255.42.1:7000  RATE=400M  DROP=0.02  SEED_BASE=1
#   TIMEOUT=120 (seconds, each process)  READY_WAIT=10 (seconds for the ready files)
#
# Outputs in WORK:
#   TAG-send.json TAG-send.log TAG-send.rc          sender report (stdout), log (stderr), exit code
#   TAG-recv-I.json TAG-recv-I.log TAG-recv-I.rc    per receiver I
#   TAG-elapsed                                     seconds from sender start to last receiver exit
# Exit status: 0 if the sender and every receiver exited 0, 1 otherwise, 2 on bad setup.
#
# Safety: refuses to run while any interface other than lo is up (i.e. outside a private
# namespace). Every process it starts is bounded by `timeout`, and only those PIDs are killed.

set -uo pipefail

die() {
    echo "ns-tree: $*" >&2
    exit 2
}

: "${MCAST_SEND_BIN:?path of mcast-send}" "${MCAST_RECV_BIN:?path of mcast-recv}"
: "${SRC:?file or directory to send}" "${WORK:?output directory}"
TAG=${TAG:-push}
OUTPUT=${OUTPUT:-$WORK/dest}
MKDIR_OUTPUT=${MKDIR_OUTPUT:-0}
RECV_ARGS=${RECV_ARGS:-}
RECEIVERS=${RECEIVERS:-3}
GROUP=${GROUP:-239.255.42.1:7000}
RATE=${RATE:-400M}
DROP=${DROP:-0.02}
SEED_BASE=${SEED_BASE:-1}
TIMEOUT=${TIMEOUT:-120}
READY_WAIT=${READY_WAIT:-10}

[[ -x $MCAST_SEND_BIN ]] || die "not executable: $MCAST_SEND_BIN"
[[ -x $MCAST_RECV_BIN ]] || die "not executable: $MCAST_RECV_BIN"
[[ -e $SRC ]] || die "no such file or directory: $SRC"
[[ -d $WORK ]] || die "no such directory: $WORK"
[[ $TAG =~ ^[A-Za-z0-9_-]+$ ]] || die "TAG must be letters, digits, - or _, got $TAG"
[[ $RECEIVERS =~ ^[1-9][0-9]?$ ]] || die "RECEIVERS must be 1..99, got $RECEIVERS"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT must be whole seconds, got $TIMEOUT"
[[ $GROUP == 239.255.* ]] || die "GROUP must be in 239.255.0.0/16, got $GROUP"
command -v ip >/dev/null || die "ip (iproute2) not found"

# --- safety: only ever run in a private namespace -------------------------------------------
NS_SCRIPT=ns-tree
# shellcheck source=ns-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ns-lib.sh"
ns_require_private
ip link set lo multicast on || die "ip link set lo multicast on failed"
ip route add 239.0.0.0/8 dev lo 2>/dev/null || ip route replace 239.0.0.0/8 dev lo ||
    die "cannot add multicast route"

# --- process bookkeeping (ns-lib.sh) ---------------------------------------------------------
ns_trap_started

hard_limit=$((TIMEOUT + 30))

# --- receivers ---------------------------------------------------------------------------------
read -r -a extra <<<"$RECV_ARGS"
for ((i = 1; i <= RECEIVERS; i++)); do
    ((MKDIR_OUTPUT)) && mkdir -p "$OUTPUT-$i"
    ready=$WORK/$TAG-recv-$i.ready
    rm -f "$ready"
    args=(--group "$GROUP" --interface 127.0.0.1 --output "$OUTPUT-$i" --once --json
        --timeout "${TIMEOUT}s" --ready-file "$ready" "${extra[@]}")
    if [[ $DROP != 0 && $DROP != 0.0 ]]; then
        args+=(--drop-rate "$DROP" --drop-seed "$((SEED_BASE + i - 1))")
    fi
    timeout -k 5 "$hard_limit" "$MCAST_RECV_BIN" "${args[@]}" \
        >"$WORK/$TAG-recv-$i.json" 2>"$WORK/$TAG-recv-$i.log" &
    recv_pids+=("$!")
done

deadline=$((SECONDS + READY_WAIT))
while :; do
    ready=0
    for ((i = 1; i <= RECEIVERS; i++)); do
        if [[ -e $WORK/$TAG-recv-$i.ready ]]; then
            ready=$((ready + 1))
        elif ! kill -0 "${recv_pids[i - 1]}" 2>/dev/null; then
            echo "ns-tree: receiver $i exited before it was ready; its log:" >&2
            tail -n 20 "$WORK/$TAG-recv-$i.log" >&2
            kill_started
            exit 1
        fi
    done
    ((ready == RECEIVERS)) && break
    if ((SECONDS >= deadline)); then
        echo "ns-tree: only $ready of $RECEIVERS receivers ready after ${READY_WAIT}s" >&2
        kill_started
        exit 1
    fi
    sleep 0.1
done
echo "ns-tree: $TAG: $RECEIVERS receivers joined $GROUP; sending $SRC at $RATE" >&2

# --- sender ------------------------------------------------------------------------------------
t0=$(now_ns)
timeout -k 5 "$hard_limit" "$MCAST_SEND_BIN" "$SRC" --group "$GROUP" --interface 127.0.0.1 \
    --rate "$RATE" --receivers "$RECEIVERS" --timeout "${TIMEOUT}s" --json \
    >"$WORK/$TAG-send.json" 2>"$WORK/$TAG-send.log" &
send_pid=$!
wait "$send_pid"
send_rc=$?
send_pid=""
echo "$send_rc" >"$WORK/$TAG-send.rc"

# Receivers that reported exit promptly; a bounded grace period, then stop the rest.
if ((send_rc == 0)); then grace=30; else grace=10; fi
deadline=$((SECONDS + grace))
while ((SECONDS < deadline)); do
    alive=0
    for pid in "${recv_pids[@]}"; do
        kill -0 "$pid" 2>/dev/null && alive=$((alive + 1))
    done
    ((alive == 0)) && break
    sleep 0.1
done
kill_started

failed=0
((send_rc == 0)) || failed=1
status="sender=$send_rc"
for ((i = 1; i <= RECEIVERS; i++)); do
    wait "${recv_pids[i - 1]}"
    rc=$?
    echo "$rc" >"$WORK/$TAG-recv-$i.rc"
    ((rc == 0)) || failed=1
    status+=" recv-$i=$rc"
done
recv_pids=()
t1=$(now_ns)
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
echo "$elapsed" >"$WORK/$TAG-elapsed"
echo "ns-tree: $TAG: exit codes: $status; ${elapsed}s" >&2
exit "$failed"
