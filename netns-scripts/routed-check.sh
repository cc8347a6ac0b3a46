# shellcheck shell=bash
# The routed lab's selfcheck (sourced by netns-scripts/routed.sh, not run): unicast across the
# router, then short pushes that must (smcroute, pimd; the relay) or must not (none) reach the
# far segment. Uses routed.sh's names (P, hosts_of, host_ip, state_get, die); owns the work
# directory /tmp/${LAB_PREFIX}check.XXXXXX (kept as .failed on failure) and the processes it
# starts in the lab namespaces (stopped by PID).

declare -a CHECK_PIDS=()
check_stop() { # TERM, then KILL (bounded), the processes selfcheck started, by PID
    local pid deadline alive
    for pid in "${CHECK_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
        alive=0
        for pid in "${CHECK_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${CHECK_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${CHECK_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    CHECK_PIDS=()
}

# With pimd, give it time to turn the receivers' fresh IGMP joins into (*,G) state before the
# first datagram (measured: a push right after the joins did not cross; one 4 s later did). pimd
# offers no query of that state to wait on (`pimd -r` lists no (*,G) for a local RP), so this is
# a fixed pause, PIMD_SETTLE seconds (default 3).
pim_settle() {
    [[ $(state_get mrouting) == pimd ]] || return 0
    sleep "${PIMD_SETTLE:-3}"
}

# One short push from s to group G with --ttl CHECK_TTL (default 8), received by the hosts in RECV_A (on G) and
# RECV_B (on GB, which is G unless a relay re-sends on another group; they give up after
# B_TIMEOUT seconds); sets OK_HOSTS and FAILED_HOSTS. TAG names the work subdirectory.
check_push() { # check_push TAG G GB RECEIVERS_TO_WAIT_FOR B_TIMEOUT
    local tag=$1 g=$2 gb=$3 want=$4 b_timeout=$5 d=$CHECK_WORK/$1 h grp tries ready wait_s
    local -a hosts=("${RECV_A[@]}" "${RECV_B[@]}") rp=()
    mkdir -p "$d"
    for h in "${hosts[@]}"; do
        mkdir -p "$d/$h"
        grp=$g wait_s=12
        [[ $h == b* ]] && grp=$gb wait_s=$b_timeout
        timeout -k 2 20 ip netns exec "${P}$h" "$BIN/mcast-recv" --group "$grp" --interface lab0 \
            --ttl "${CHECK_TTL:-8}" --output "$d/$h" --once --timeout "${wait_s}s" --ready-file "$d/$h.ready" \
            >"$d/recv-$h.log" 2>&1 &
        rp+=("$!")
        CHECK_PIDS+=("$!")
    done
    for ((tries = 0; ; tries++)); do
        ready=0
        for h in "${hosts[@]}"; do [[ -e $d/$h.ready ]] && ready=$((ready + 1)); done
        ((ready == ${#hosts[@]})) && break
        ((tries < 200)) || die "selfcheck: $tag: $ready/${#hosts[@]} receivers ready after 10 s"
        sleep 0.05
    done
    pim_settle
    local -a until=()
    ((want > 0)) && until=(--receivers "$want")
    local src_rc=0
    timeout -k 2 20 ip netns exec "${P}s" "$BIN/mcast-send" "$CHECK_SRC" --group "$g" \
        --interface lab0 --ttl "${CHECK_TTL:-8}" --rate 100M --timeout 10s --json "${until[@]}" \
        >"$d/send.json" 2>"$d/send.log" || src_rc=$?
    for h in "${rp[@]}"; do wait "$h" 2>/dev/null || true; done
    OK_HOSTS=() FAILED_HOSTS=()
    for h in "${hosts[@]}"; do
        if [[ -f $d/$h/$(basename "$CHECK_SRC") ]] &&
            cmp -s "$CHECK_SRC" "$d/$h/$(basename "$CHECK_SRC")"; then
            OK_HOSTS+=("$h")
        else
            FAILED_HOSTS+=("$h")
        fi
    done
    echo "routed: selfcheck: $tag: sender exit $src_rc; copies verified on: ${OK_HOSTS[*]:-none};" \
        "not on: ${FAILED_HOSTS[*]:-none}"
}

cmd_selfcheck() {
    local root
    # shellcheck disable=SC2154  # here: set by routed.sh, which sources this file
    root=$(dirname "$here")
    BIN=${MCAST_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/debug}
    while (($#)); do
        case $1 in
        --bin-dir) BIN=${2:?}; shift 2 ;;
        *) die "selfcheck: unknown option '$1'" ;;
        esac
    done
    local mrouting b
    mrouting=$(state_get mrouting)
    [[ -n $mrouting ]] || die "selfcheck: no routed lab (run \`up\` first)"
    for b in mcast-send mcast-recv; do [[ -x $BIN/$b ]] || die "selfcheck: $BIN/$b missing"; done
    mapfile -t RECV_A < <(hosts_of a)
    mapfile -t RECV_B < <(hosts_of b)
    CHECK_WORK=$(mktemp -d "/tmp/${P}check.XXXXXX")
    trap 'check_stop; rm -rf "$CHECK_WORK"' EXIT
    trap 'exit 130' INT TERM
    local fail=0

    # 1. Unicast across the router, both ways (TCP, as BitTorrent uses it).
    local h
    for h in s b1; do
        local peer=$SENDER_IP
        [[ $h == s ]] && peer=$(host_ip b 1)
        local listener=b1
        [[ $h == b1 ]] && listener=s
        timeout -k 2 10 ip netns exec "${P}$listener" python3 -c '
import socket, sys
s = socket.create_server(("0.0.0.0", 5999)); s.settimeout(8)
open(sys.argv[1], "w").close()
c, _ = s.accept(); c.sendall(b"routed-ok")' "$CHECK_WORK/listen-$listener" &
        CHECK_PIDS+=("$!")
        local tries
        for ((tries = 0; tries < 100; tries++)); do
            [[ -e $CHECK_WORK/listen-$listener ]] && break
            sleep 0.05
        done
        if timeout -k 2 10 ip netns exec "${P}$h" python3 -c '
import socket, sys
c = socket.create_connection((sys.argv[1], 5999), timeout=5)
sys.exit(0 if c.recv(64) == b"routed-ok" else 1)' "$peer"; then
            echo "routed: selfcheck: unicast TCP $h -> $peer: ok"
        else
            echo "routed: selfcheck: unicast TCP $h -> $peer: FAILED"
            fail=1
        fi
        check_stop
    done

    # 2. A plain push from s (TTL 8) to the hosts of both segments.
    CHECK_SRC=$CHECK_WORK/check.bin
    head -c 1048576 /dev/urandom >"$CHECK_SRC"
    local g=239.255.77.1:7000 gb=239.255.78.1:7000
    if [[ $mrouting == none ]]; then
        check_push plain "$g" "$g" "${#RECV_A[@]}" 6
        local bad=0
        for h in "${RECV_A[@]}"; do [[ " ${OK_HOSTS[*]} " == *" $h "* ]] || bad=1; done
        for h in "${RECV_B[@]}"; do [[ " ${OK_HOSTS[*]} " == *" $h "* ]] && bad=1; done
        if ((bad)); then
            echo "routed: selfcheck: none: FAILED (A must all verify, B must get nothing)"
            fail=1
        else
            echo "routed: selfcheck: none: the push reached A only, as it must"
        fi
        check_stop
        # 3. The relay on the router carries it to B (on its own group).
        if [[ -x $BIN/mcast-relay ]]; then
            mkdir -p "$CHECK_WORK/spool"
            # shellcheck disable=SC2086  # RELAY_ARGS: extra words on purpose
            timeout -k 2 30 ip netns exec "${P}rt" "$BIN/mcast-relay" --upstream "$g" \
                --upstream-interface lega --downstream "$gb" --downstream-interface legb \
                --spool "$CHECK_WORK/spool" --receivers "${#RECV_B[@]}" --timeout 25s \
                --ready-file "$CHECK_WORK/relay.ready" ${RELAY_ARGS:-} >"$CHECK_WORK/relay.log" 2>&1 &
            CHECK_PIDS+=("$!")
            # Joined upstream before the origin starts (bounded), so it misses nothing.
            local tries
            for ((tries = 0; tries < 200; tries++)); do
                [[ -e $CHECK_WORK/relay.ready ]] && break
                sleep 0.05
            done
            check_push relay "$g" "$gb" "$((${#RECV_A[@]} + ${#RECV_B[@]}))" 12
            local origin_complete
            origin_complete=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["complete"])' \
                "$CHECK_WORK/relay/send.json" 2>/dev/null || echo 0)
            echo "routed: selfcheck: relay: the origin's report counts $origin_complete complete" \
                "(${#RECV_A[@]} on A + ${#RECV_B[@]} behind the relay expected)"
            ((origin_complete >= ${#RECV_A[@]} + ${#RECV_B[@]})) || FAILED_HOSTS+=(origin-report)
            if ((${#FAILED_HOSTS[@]})); then
                echo "routed: selfcheck: relay: FAILED (see $CHECK_WORK/relay.log)"
                tail -n 5 "$CHECK_WORK/relay.log" >&2 || true
                fail=1
            else
                echo "routed: selfcheck: relay: every host on A and B verified"
            fi
            check_stop
        else
            echo "routed: selfcheck: $BIN/mcast-relay missing: relay step skipped"
        fi
    else
        check_push "$mrouting" "$g" "$g" "$((${#RECV_A[@]} + ${#RECV_B[@]}))" 12
        if ((${#FAILED_HOSTS[@]})); then
            echo "routed: selfcheck: $mrouting: FAILED (every host must verify)"
            fail=1
        else
            echo "routed: selfcheck: $mrouting: every host on A and B verified"
        fi
        check_stop
        # The same with TTL 1: the router must not forward it (mcast's default keeps to the link).
        CHECK_TTL=1 check_push ttl1 "$g" "$g" "${#RECV_A[@]}" 6
        local leaked=0
        for h in "${RECV_B[@]}"; do [[ " ${OK_HOSTS[*]} " == *" $h "* ]] && leaked=1; done
        if ((leaked)); then
            echo "routed: selfcheck: $mrouting: FAILED (a TTL 1 push crossed the router)"
            fail=1
        else
            echo "routed: selfcheck: $mrouting: a TTL 1 push stayed on A, as it must"
        fi
        check_stop
    fi
    if ((fail)); then
        cp -r "$CHECK_WORK" "$CHECK_WORK.failed" 2>/dev/null || true
        echo "routed: selfcheck FAILED (logs: $CHECK_WORK.failed)" >&2
        return 1
    fi
    echo "routed: selfcheck passed ($mrouting)"
}

