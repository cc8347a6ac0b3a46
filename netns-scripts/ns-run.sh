#!/usr/bin/env bash
# One multicast push, to be run INSIDE a private network namespace:
#
#   unshare -rn env MCAST_SEND_BIN=... MCAST_RECV_BIN=... SRC=... WORK=... bash ns-run.sh
#
# FAMILY=4 (default): brings lo up with multicast and a 239.0.0.0/8 route; every process uses
# lo (127.0.0.1). FAMILY=6: IPv6 multicast does not work on lo, so it creates a veth pair
# mc6s <-> mc6r (DAD off, 2001:2::1/64 and 2001:2::2/64 from the IPv6 benchmarking range); the
# sender uses mc6s, the receivers mc6r, and the group is IPv6 (default [ff15::4d43]:7000).
# It starts RECEIVERS mcast-recv processes (each with its own --drop-seed), waits for their
# ready files, runs mcast-send with --receivers RECEIVERS, then collects every exit code. Used by
# tests/netns.rs and demo.sh.
#
# Inputs (environment):
#   MCAST_SEND_BIN, MCAST_RECV_BIN  paths of the binaries (required)
#   SRC                             file to send (required)
#   WORK                            empty directory for outputs and logs (required)
#   FAMILY=4  RECEIVERS=3  GROUP=239.255.42.1:7000 ([ff15::4d43]:7000 with FAMILY=6)
#   RATE=400M  DROP=0.05  SEED_BASE=1  TIMEOUT=120 (seconds)
#   READY_WAIT=10 (seconds to wait for the receivers' ready files)
#
# Outputs in WORK:
#   send.json send.log send.rc            sender report (stdout), log (stderr), exit code
#   recv-I/ recv-I.json recv-I.log recv-I.rc recv-I.ready   per receiver I = 1..RECEIVERS
#   elapsed                               seconds from sender start to last receiver exit
# Exit status: 0 if the sender and every receiver exited 0, 1 otherwise, 2 on bad setup.
#
# Safety: refuses to run while any interface other than lo is up, i.e. in a namespace with a
# real uplink (it checks before creating its own veth pair). Every process it starts is bounded by `timeout`, and only those PIDs are killed.

set -uo pipefail

die() {
    echo "ns-run: $*" >&2
    exit 2
}

: "${MCAST_SEND_BIN:?path of mcast-send}" "${MCAST_RECV_BIN:?path of mcast-recv}"
: "${SRC:?file to send}" "${WORK:?output directory}"
FAMILY=${FAMILY:-4}
RECEIVERS=${RECEIVERS:-3}
case $FAMILY in
4) GROUP=${GROUP:-239.255.42.1:7000} ;;
6) GROUP=${GROUP:-[ff15::4d43]:7000} ;;
*) die "FAMILY must be 4 or 6, got $FAMILY" ;;
esac
RATE=${RATE:-400M}
DROP=${DROP:-0.05}
SEED_BASE=${SEED_BASE:-1}
TIMEOUT=${TIMEOUT:-120}
READY_WAIT=${READY_WAIT:-10}

[[ -x $MCAST_SEND_BIN ]] || die "not executable: $MCAST_SEND_BIN"
[[ -x $MCAST_RECV_BIN ]] || die "not executable: $MCAST_RECV_BIN"
[[ -f $SRC ]] || die "no such file: $SRC"
[[ -d $WORK ]] || die "no such directory: $WORK"
[[ $RECEIVERS =~ ^[1-9][0-9]?$ ]] || die "RECEIVERS must be 1..99, got $RECEIVERS"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT must be whole seconds, got $TIMEOUT"
if ((FAMILY == 4)); then
    [[ $GROUP == 239.255.* ]] || die "GROUP must be in 239.255.0.0/16, got $GROUP"
else
    [[ $GROUP == "[ff15:"* ]] || die "GROUP must be in ff15::/16 (as [ff15::x]:port), got $GROUP"
fi
command -v ip >/dev/null || die "ip (iproute2) not found"

# --- safety: only ever run in a private namespace -------------------------------------------
NS_SCRIPT=ns-run
# shellcheck source=ns-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ns-lib.sh"
ns_require_private

if ((FAMILY == 4)); then
    ip link set lo multicast on || die "ip link set lo multicast on failed"
    ip route add 239.0.0.0/8 dev lo 2>/dev/null || ip route replace 239.0.0.0/8 dev lo ||
        die "cannot add multicast route"
    send_if=127.0.0.1
    recv_if=127.0.0.1
else
    # Addresses are usable at once without duplicate address detection.
    sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 ||
        die "cannot turn off IPv6 DAD"
    ip link add mc6s type veth peer name mc6r || die "cannot create the veth pair"
    ip link set mc6s up && ip link set mc6r up || die "cannot bring the veth pair up"
    ip -6 addr add 2001:2::1/64 dev mc6s nodad && ip -6 addr add 2001:2::2/64 dev mc6r nodad ||
        die "cannot address the veth pair"
    send_if=mc6s
    recv_if=mc6r
fi

# --- process bookkeeping (ns-lib.sh) ---------------------------------------------------------
ns_trap_started

# Bound every process in wall-clock time, beyond its own --timeout.
hard_limit=$((TIMEOUT + 30))


# --- receivers ---------------------------------------------------------------------------------
for ((i = 1; i <= RECEIVERS; i++)); do
    mkdir -p "$WORK/recv-$i"
    rm -f "$WORK/recv-$i.ready"
    args=(--group "$GROUP" --interface "$recv_if" --output "$WORK/recv-$i" --once --json
        --timeout "${TIMEOUT}s" --ready-file "$WORK/recv-$i.ready")
    if [[ $DROP != 0 && $DROP != 0.0 ]]; then
        args+=(--drop-rate "$DROP" --drop-seed "$((SEED_BASE + i - 1))")
    fi
    timeout -k 5 "$hard_limit" "$MCAST_RECV_BIN" "${args[@]}" \
        >"$WORK/recv-$i.json" 2>"$WORK/recv-$i.log" &
    recv_pids+=("$!")
done

# Wait (bounded) until every receiver has joined the group.
deadline=$((SECONDS + READY_WAIT))
while :; do
    ready=0
    for ((i = 1; i <= RECEIVERS; i++)); do
        if [[ -e $WORK/recv-$i.ready ]]; then
            ready=$((ready + 1))
        elif ! kill -0 "${recv_pids[i - 1]}" 2>/dev/null; then
            echo "ns-run: receiver $i exited before it was ready; its log:" >&2
            tail -n 20 "$WORK/recv-$i.log" >&2
            kill_started
            exit 1
        fi
    done
    ((ready == RECEIVERS)) && break
    if ((SECONDS >= deadline)); then
        echo "ns-run: only $ready of $RECEIVERS receivers ready after ${READY_WAIT}s" >&2
        kill_started
        exit 1
    fi
    sleep 0.1
done
echo "ns-run: $RECEIVERS receivers joined $GROUP; sending $(stat -c %s "$SRC") bytes at $RATE" >&2

# --- sender ------------------------------------------------------------------------------------
t0=$(now_ns)
timeout -k 5 "$hard_limit" "$MCAST_SEND_BIN" "$SRC" --group "$GROUP" --interface "$send_if" \
    --rate "$RATE" --receivers "$RECEIVERS" --timeout "${TIMEOUT}s" --json \
    >"$WORK/send.json" 2>"$WORK/send.log" &
send_pid=$!
wait "$send_pid"
send_rc=$?
send_pid=""
echo "$send_rc" >"$WORK/send.rc"

# Receivers that reported completion exit promptly; give them a bounded grace period, shorter
# if the sender failed, then stop the rest.
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
for ((i = 1; i <= RECEIVERS; i++)); do
    wait "${recv_pids[i - 1]}"
    rc=$?
    echo "$rc" >"$WORK/recv-$i.rc"
    ((rc == 0)) || failed=1
done
recv_pids=()
t1=$(now_ns)
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
echo "$elapsed" >"$WORK/elapsed"

status="sender=$send_rc"
for ((i = 1; i <= RECEIVERS; i++)); do
    status+=" recv-$i=$(cat "$WORK/recv-$i.rc")"
done
echo "ns-run: exit codes: $status; ${elapsed}s" >&2
if ((failed)); then
    for log in "$WORK"/send.log "$WORK"/recv-*.log; do
        echo "---- tail of $log" >&2
        tail -n 15 "$log" >&2
    done
    exit 1
fi
exit 0
