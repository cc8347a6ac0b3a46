#!/usr/bin/env bash
# The routed lab: two Linux bridges (segment A with the sender, segment B with N receivers)
# joined by a router namespace with a leg on each, unicast routing on (so TCP tools such as
# BitTorrent work across it) and multicast routing by smcroute, pimd or nothing at all. Without
# multicast routing only a relay (mcast-relay, run on the router) carries a push from A to B.
# Needs root. Reuses lab.sh's shaping, loss and node set-up functions (sourced).
#
# This script owns (and only ever touches):
#   network namespaces  ${LAB_PREFIX}bra ${LAB_PREFIX}brb (bridges), ${LAB_PREFIX}rt (router),
#                       ${LAB_PREFIX}s (sender), ${LAB_PREFIX}a1..aM, ${LAB_PREFIX}b1..bN
#                       (LAB_PREFIX defaults to "mcl-rt-"), everything inside them, the
#                       processes running in them (killed by PID from `ip netns pids`, on `down`),
#   the state directory /tmp/${LAB_PREFIX}routed/ (config, logs and PID files of the routing
#                       daemon, the lab's parameters; removed on `down`).
# Nothing is connected to the main namespace: every veth is created between two lab namespaces.
#
# Topology (198.18.0.0/15, the RFC 2544 benchmarking range):
#
#   s   198.18.0.1  ─┐                               ┌─ b1 198.18.1.11
#   a1  198.18.0.11 ─┤ br0 in bra ── rt ── br0 in brb ├─ b2 198.18.1.12
#   aI  198.18.0.(10+I)┘  lega 198.18.0.254          └─ bI 198.18.1.(10+I)
#                         legb 198.18.1.254
#
# Hosts: lab0 with a /24, 239.0.0.0/8 on lab0, 198.18.0.0/15 via the router's leg. The router
# forwards unicast (ip_forward=1). Bridge ports: `s`, `aI` and `rt` on bra; `rt` and `bI` on
# brb; the router's ports are permanent multicast-router ports (mcast_router 2), so snooping
# bridges hand it every group. Loss (nftables, per bridge port and direction, each port drawing
# on its own): --loss-a on every port of A except the sender's (the A receivers and the router's
# leg, i.e. what the relay or the routed stream receives), --loss-b on every receiver port of B.
# A link's rate applies in both directions (htb on both ends of each veth, as in lab.sh).
#
# Multicast routing (--mrouting):
#   smcroute  static routes in the router: (*,G) for 239.255.0.0/16 from lega to legb (data) and
#             from legb to lega (the receivers' NAKs and reports, which go to the group's port+1).
#             The kernel forwards only datagrams whose TTL is > 1: run mcast-send and mcast-recv
#             with --ttl 2 or more.
#   pimd      PIM-SM with the router as its own RP for 239.255.0.0/16 (IGMP on both legs). Debian
#             has pimd and smcroute conflict: installing one removes the other.
#   none      no routing daemon: the kernel forwards no multicast at all. `selfcheck` proves it:
#             a plain push on A must not reach B; with mcast-relay on the router, it must.
set -Eeuo pipefail

export LAB_PREFIX=${LAB_PREFIX:-mcl-rt-}
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=netns-scripts/lab.sh
source "$here/lab.sh"

usage() {
    cat <<'EOF'
Usage: netns-scripts/routed.sh up [options] | down | status | exec NODE CMD... | counters
                              | selfcheck [--bin-dir DIR] | --help

  up         (re)create the routed lab; runs `down` first, so it is safe to repeat
  down       kill the processes in the lab namespaces, delete them and the state directory
  status     namespaces, addresses, routes, multicast routes, loss rules, daemon
  exec       run CMD in NODE's namespace: s, aI, bI, rt (router), bra, brb (bridges)
  counters   print "A_BYTES B_BYTES": rx+tx bytes summed over every port of each bridge
  selfcheck  unicast across the router; a short mcast push from s with --ttl 8: with smcroute
             or pimd it must reach every host on A and B (and with --ttl 1 only A); with none
             it must reach A only, and then (if mcast-relay exists) every B host through a
             relay on rt, with the origin's report counting them.
             Binaries from MCAST_BIN_DIR (default target/debug); exit 0 only if all holds

Options for `up`:
  --receivers-a M        receivers on segment A beside the sender (0..100)      [0]
  -n, --receivers-b N    receivers on segment B (1..200)                        [4]
  --mrouting MODE        smcroute | pimd | none                                 [smcroute]
  --rate-a RATE          every link on segment A, both directions (1G, 500M; 0 = unshaped) [1G]
  --rate-b RATE          every link on segment B                                [1G]
  --loss-a PCT           random loss on A's receiving ports (A receivers, the router's leg) [0]
  --loss-b PCT           random loss on every B receiver's port, both directions [0]
  --clean-b N            ... except the first N B receivers' ports (b1..bN: clean)  [0]
  --snooping on|off      multicast snooping on both bridges (each is an IGMPv3 querier) [on]
  --qlen PACKETS         queue length of each shaped link                       [1000]
  --offload on|off       as lab.sh: off = segmentation in software, loss per frame [off]
  --no-install           do not apt-get the routing daemon if it is missing

Environment: LAB_PREFIX (namespace prefix, ^mcl-[a-z0-9-]*$, default "mcl-rt-"),
MCAST_BIN_DIR (selfcheck), RELAY_ARGS (extra mcast-relay arguments in selfcheck),
PIMD_STARTUP / PIMD_SETTLE (seconds `up` waits after starting pimd, default 15; seconds
between the receivers' joins and a push with pimd, default 3).

Examples:
  sudo netns-scripts/routed.sh up -n 4 --mrouting smcroute --loss-b 5
  sudo netns-scripts/routed.sh selfcheck
  sudo netns-scripts/routed.sh up -n 4 --receivers-a 1 --mrouting none
  sudo MCAST_BIN_DIR=/path/with/mcast-relay netns-scripts/routed.sh selfcheck
  sudo netns-scripts/routed.sh exec rt ip mroute show
  sudo netns-scripts/routed.sh down

Needs root, iproute2, nft when some loss is set, smcroute or pimd for those modes (installed
with apt-get unless --no-install, saying so). The race on this lab: routed-bench.sh.
EOF
}

die() {
    echo "routed: $*" >&2
    exit 2
}

NFT_TABLE=mcl_routed
NET_A=198.18.0
NET_B=198.18.1
RT_A=$NET_A.254
RT_B=$NET_B.254
SENDER_IP=$NET_A.1
STATE_DIR=/tmp/${P}routed
MGROUPS=239.255.0.0/16

host_ip() { # host_ip a|b I
    if [[ $1 == a ]]; then echo "$NET_A.$((10 + $2))"; else echo "$NET_B.$((10 + $2))"; fi
}

routed_namespaces() {
    t ip netns list | awk '{ print $1 }' | grep -E "^${P}(s|rt|bra|brb|a[0-9]+|b[0-9]+)\$" || true
}

# Hosts of a segment that exist now, in order: "a1 a2" / "b1 b2 b3".
hosts_of() {
    routed_namespaces | sed -n "s/^${P}\($1[0-9]*\)\$/\1/p" | sort -V
}

state_get() { sed -n "s/^$1=//p" "$STATE_DIR/state" 2>/dev/null; }

# Install a Debian package for a missing command (bench.sh's way), unless --no-install.
need_cmd() { # need_cmd CMD PACKAGE
    command -v "$1" >/dev/null && return 0
    ((INSTALL)) || die "$1 missing (package $2; drop --no-install to apt-get it)"
    echo "routed: installing $2 (for $1)" >&2
    timeout 600 apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends "$2" >&2 ||
        die "apt-get install $2 failed"
    command -v "$1" >/dev/null || die "$1 still missing after installing $2"
}

cmd_down() {
    local nss
    nss=$(routed_namespaces)
    if [[ -n $nss ]]; then
        remove_namespaces routed "$nss"
    fi
    rm -rf "$STATE_DIR"
    nss=$(routed_namespaces)
    [[ -z $nss ]] || die "down: still there: $nss"
    echo "routed: down: removed the ${P}* namespaces"
}

bridge_ns() { # bridge_ns NS SNOOPING
    local ns=$1
    t ip netns add "$ns"
    t ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    t ip -n "$ns" link set lo up
    t ip -n "$ns" link add br0 type bridge stp_state 0
    if [[ $2 == on ]]; then
        t ip -n "$ns" link set br0 type bridge mcast_snooping 1 mcast_querier 1 mcast_igmp_version 3
    else
        t ip -n "$ns" link set br0 type bridge mcast_snooping 0
    fi
}

# A host NAME (s, aI, bI) on bridge namespace BR with address ADDR, routed via GW.
add_host() { # add_host NAME BR ADDR GW TCRATE
    local ns=${P}$1 br=$2 addr=$3 gw=$4 rate=$5
    t ip netns add "$ns"
    t ip -n "$br" link add "$1" type veth peer name lab0 netns "$ns"
    t ip -n "$br" link set "$1" master br0 up
    node_setup "$ns" "$addr"
    t ip -n "$ns" route add 198.18.0.0/15 via "$gw" dev lab0
    shape "$ns" lab0 "$rate" "$QLEN"
    shape "$br" "$1" "$rate" "$QLEN"
}

# The router's leg LEG (lega, legb) on bridge namespace BR with address ADDR.
add_leg() { # add_leg LEG BR ADDR TCRATE
    local leg=$1 br=$2 addr=$3 rate=$4 ns=${P}rt
    t ip -n "$br" link add rt type veth peer name "$leg" netns "$ns"
    t ip -n "$br" link set rt master br0 up
    t bridge -n "$br" link set dev rt mcast_router 2
    t ip -n "$ns" link set "$leg" up multicast on
    t ip -n "$ns" addr add "$addr/24" dev "$leg"
    if [[ $OFFLOAD == off ]]; then
        if command -v ethtool >/dev/null; then
            t ip netns exec "$ns" ethtool -K "$leg" tso off tx-udp-segmentation off >/dev/null
        else
            t ip -n "$ns" link set dev "$leg" gso_max_segs 1
        fi
    fi
    shape "$ns" "$leg" "$rate" "$QLEN"
    shape "$br" rt "$rate" "$QLEN"
}

# nftables loss in bridge namespace BR on PORTS (both directions), PPM out of 10^6.
add_loss() { # add_loss BR PPM PORT...
    local br=$1 ppm=$2 port f
    shift 2
    ((ppm > 0)) || return 0
    f=$STATE_DIR/nft-$br
    {
        echo "table bridge $NFT_TABLE {"
        echo "  chain forward_loss {"
        echo "    type filter hook forward priority 0; policy accept;"
        for port in "$@"; do
            echo "    oifname \"$port\" numgen random mod 1000000 < $ppm counter drop"
            echo "    iifname \"$port\" numgen random mod 1000000 < $ppm counter drop"
        done
        echo "  }"
        echo "}"
    } >"$f"
    t ip netns exec "$br" nft -f "$f"
}

start_smcroute() {
    local ns=${P}rt conf=$STATE_DIR/smcroute.conf
    cat >"$conf" <<EOF
# routed.sh: static (*,G) routes for the push's groups, data A -> B, feedback B -> A.
phyint lega enable
phyint legb enable
mroute from lega group $MGROUPS to legb
mroute from legb group $MGROUPS to lega
EOF
    # Not under `t`: the daemon lives until `down` (which kills it by PID from `ip netns pids`).
    setsid ip netns exec "$ns" smcrouted -n -N -l info -f "$conf" -P "$STATE_DIR/smcroute.pid" \
        -u "$STATE_DIR/smcroute.sock" -i "${P}smcroute" >"$STATE_DIR/smcroute.log" 2>&1 </dev/null &
    disown
    # Ready once it answers on its socket (bounded).
    local tries
    for ((tries = 0; ; tries++)); do
        t ip netns exec "$ns" smcroutectl -u "$STATE_DIR/smcroute.sock" show routes >/dev/null 2>&1 && break
        ((tries < 100)) || die "smcrouted not ready after 10 s (see $STATE_DIR/smcroute.log)"
        sleep 0.1
    done
}

start_pimd() {
    local ns=${P}rt conf=$STATE_DIR/pimd.conf
    cat >"$conf" <<EOF
# routed.sh: PIM-SM, the router is the RP of the push's groups.
phyint lega enable
phyint legb enable
rp-address $RT_A $MGROUPS
EOF
    setsid ip netns exec "$ns" pimd -f -N -c "$conf" -s info >"$STATE_DIR/pimd.log" 2>&1 </dev/null &
    disown
    local tries
    for ((tries = 0; ; tries++)); do
        [[ -n $(t ip netns pids "$ns") ]] && t ip -n "$ns" -o link show pimreg >/dev/null 2>&1 && break
        ((tries < 100)) || die "pimd not ready after 10 s (see $STATE_DIR/pimd.log)"
        sleep 0.1
    done
    # Measured: pushes started 10 s after pimd's start did not cross, from 16 s on they did; it
    # offers no state to wait on, so `up` waits PIMD_STARTUP seconds (default 15).
    echo "routed: up: giving pimd ${PIMD_STARTUP:-15} s to settle" >&2
    sleep "${PIMD_STARTUP:-15}"
}

cmd_up() {
    local na=0 nb=4 mrouting=smcroute rate_a=1G rate_b=1G loss_a=0 loss_b=0 snooping=on clean_b=0
    QLEN=1000 OFFLOAD=off INSTALL=1
    while (($#)); do
        case $1 in
        --receivers-a) na=${2:?}; shift 2 ;;
        -n | --receivers-b) nb=${2:?}; shift 2 ;;
        --mrouting) mrouting=${2:?}; shift 2 ;;
        --rate-a) rate_a=${2:?}; shift 2 ;;
        --rate-b) rate_b=${2:?}; shift 2 ;;
        --loss-a) loss_a=${2:?}; shift 2 ;;
        --loss-b) loss_b=${2:?}; shift 2 ;;
        --clean-b) clean_b=${2:?}; shift 2 ;;
        --snooping) snooping=${2:?}; shift 2 ;;
        --qlen) QLEN=${2:?}; shift 2 ;;
        --offload) OFFLOAD=${2:?}; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "up: unknown option '$1' (see --help)" ;;
        esac
    done
    if ! [[ $na =~ ^[0-9]+$ ]] || ((na > 100)); then die "--receivers-a must be 0..100, got '$na'"; fi
    if ! [[ $nb =~ ^[1-9][0-9]*$ ]] || ((nb > 200)); then die "--receivers-b must be 1..200, got '$nb'"; fi
    if ! [[ $clean_b =~ ^[0-9]+$ ]] || ((clean_b > nb)); then die "--clean-b must be 0..$nb, got '$clean_b'"; fi
    [[ $mrouting =~ ^(smcroute|pimd|none)$ ]] || die "--mrouting smcroute|pimd|none, got '$mrouting'"
    [[ $snooping == on || $snooping == off ]] || die "--snooping on|off, got '$snooping'"
    [[ $QLEN =~ ^[1-9][0-9]*$ ]] || die "bad --qlen '$QLEN'"
    [[ $OFFLOAD == on || $OFFLOAD == off ]] || die "--offload on|off, got '$OFFLOAD'"
    local ra rb pa pb
    ra=$(tc_rate "$rate_a")
    rb=$(tc_rate "$rate_b")
    pa=$(loss_ppm "$loss_a")
    pb=$(loss_ppm "$loss_b")
    if ((pa > 0 || pb > 0)); then need_cmd nft nftables; fi
    [[ $mrouting == smcroute ]] && need_cmd smcrouted smcroute && need_cmd smcroutectl smcroute
    [[ $mrouting == pimd ]] && need_cmd pimd pimd

    cmd_down >/dev/null
    trap 'echo "routed: up failed; cleaning up" >&2; cmd_down >&2 || true' ERR
    mkdir -p "$STATE_DIR"
    chmod 700 "$STATE_DIR"

    bridge_ns "${P}bra" "$snooping"
    bridge_ns "${P}brb" "$snooping"
    t ip netns add "${P}rt"
    t ip netns exec "${P}rt" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1 net.ipv4.ip_forward=1 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
        net.ipv4.conf.all.force_igmp_version=3 net.ipv4.conf.default.force_igmp_version=3
    t ip -n "${P}rt" link set lo up
    add_leg lega "${P}bra" "$RT_A" "$ra"
    add_leg legb "${P}brb" "$RT_B" "$rb"
    add_host s "${P}bra" "$SENDER_IP" "$RT_A" "$ra"
    local i
    local -a ports_a=(rt) ports_b=()
    for ((i = 1; i <= na; i++)); do
        add_host "a$i" "${P}bra" "$(host_ip a "$i")" "$RT_A" "$ra"
        ports_a+=("a$i")
    done
    for ((i = 1; i <= nb; i++)); do
        add_host "b$i" "${P}brb" "$(host_ip b "$i")" "$RT_B" "$rb"
        ((i <= clean_b)) || ports_b+=("b$i") # the first --clean-b ports lose nothing
    done
    t ip -n "${P}bra" link set br0 up
    t ip -n "${P}brb" link set br0 up
    add_loss "${P}bra" "$pa" "${ports_a[@]}"
    add_loss "${P}brb" "$pb" "${ports_b[@]}"
    trap - ERR

    # Wait (bounded) until every bridge port forwards and every host's lab0 is up.
    local tries fa fb up ns
    for ((tries = 0; ; tries++)); do
        fa=$(t bridge -n "${P}bra" link show | grep -c 'state forwarding' || true)
        fb=$(t bridge -n "${P}brb" link show | grep -c 'state forwarding' || true)
        up=0
        for ns in s $(hosts_of a) $(hosts_of b); do
            t ip -n "${P}$ns" -o link show lab0 | grep -q 'state UP' && up=$((up + 1))
        done
        ((fa == na + 2 && fb == nb + 1 && up == na + nb + 1)) && break
        ((tries < 100)) || die "up: links not ready after 10 s (A $fa/$((na + 2)), B $fb/$((nb + 1)) forwarding, $up up)"
        sleep 0.1
    done

    case $mrouting in
    smcroute) start_smcroute ;;
    pimd) start_pimd ;;
    none) ;;
    esac
    {
        echo "mrouting=$mrouting"
        echo "na=$na"
        echo "nb=$nb"
        echo "loss_a=$loss_a"
        echo "loss_b=$loss_b"
        echo "rate_a=$rate_a"
        echo "rate_b=$rate_b"
    } >"$STATE_DIR/state"
    echo "routed: up: sender $SENDER_IP + $na receivers on A ($NET_A.0/24), $nb on B ($NET_B.0/24)," \
        "router $RT_A/$RT_B; mrouting=$mrouting rate-a=$rate_a rate-b=$rate_b loss-a=$loss_a%" \
        "loss-b=$loss_b% snooping=$snooping offload=$OFFLOAD"
}

cmd_counters() {
    local br port a=0 b=0 sum
    for br in bra brb; do
        sum=0
        for port in $(t ip -n "${P}$br" -o link show master br0 | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
            sum=$((sum + $(t ip netns exec "${P}$br" cat "/sys/class/net/$port/statistics/rx_bytes") +
                $(t ip netns exec "${P}$br" cat "/sys/class/net/$port/statistics/tx_bytes")))
        done
        if [[ $br == bra ]]; then a=$sum; else b=$sum; fi
    done
    echo "$a $b"
}

cmd_status() {
    local nss ns
    nss=$(routed_namespaces)
    [[ -n $nss ]] || { echo "routed: no ${P}* namespaces"; return 1; }
    [[ -f $STATE_DIR/state ]] && echo "state: $(tr '\n' ' ' <"$STATE_DIR/state")"
    for ns in $nss; do
        echo "== $ns"
        t ip -n "$ns" -br addr | grep -v '^lo ' || true
        t ip -n "$ns" route show | grep -v '^198\.18\.[01]\.0/24 dev' || true
        t ip netns exec "$ns" tc qdisc show | grep -E 'htb' || true
    done
    echo "== multicast routes on the router"
    t ip -n "${P}rt" mroute show || true
    if command -v nft >/dev/null; then
        for ns in bra brb; do
            echo "== loss rules on $ns"
            t ip netns exec "${P}$ns" nft list table bridge "$NFT_TABLE" 2>/dev/null || echo "(none)"
        done
    fi
    echo "pids: $(for ns in $nss; do t ip netns pids "$ns"; done | tr '\n' ' ')"
}

cmd_exec() {
    local node=${1:?exec NODE CMD...}
    shift
    [[ $node =~ ^(s|rt|bra|brb|a[0-9]+|b[0-9]+)$ ]] || die "exec: NODE is s, aI, bI, rt, bra or brb"
    (($#)) || die "exec: no command"
    exec ip netns exec "${P}$node" "$@"
}

# shellcheck source=netns-scripts/routed-check.sh
source "$here/routed-check.sh"

case ${1:-} in
up) shift; [[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }; [[ $EUID == 0 ]] || die "needs root"; cmd_up "$@" ;;
down) [[ $EUID == 0 ]] || die "needs root"; cmd_down ;;
status) cmd_status ;;
counters) cmd_counters ;;
selfcheck) shift; [[ $EUID == 0 ]] || die "needs root"; cmd_selfcheck "$@" ;;
exec) shift; cmd_exec "$@" ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac
