#!/usr/bin/env bash
# The lab: one sender namespace and N receiver namespaces on a Linux bridge that lives in its own
# namespace, with shaped links, random loss and optional multicast snooping. Needs root.
#
# This script owns (and only ever touches):
#   network namespaces  ${LAB_PREFIX}br  ${LAB_PREFIX}s  ${LAB_PREFIX}r1 .. ${LAB_PREFIX}rN
#                       (LAB_PREFIX defaults to "mcl-"), everything inside them (veths, the
#                       bridge br0, tc qdiscs, the nftables table "mcl_lab"), and the processes
#                       running in them (killed by PID from `ip netns pids`, on `down` only).
# Nothing is connected to the main namespace: every veth is created directly between two lab
# namespaces, so no lab packet can reach a real interface.
#
# Topology (addresses from 198.18.0.0/15, the RFC 2544 benchmarking range):
#
#   ${LAB_PREFIX}s   lab0 198.18.0.1/24  ──veth──  s0 ┐
#   ${LAB_PREFIX}r1  lab0 198.18.0.11/24 ──veth──  r1 ├─ br0 in ${LAB_PREFIX}br
#   ${LAB_PREFIX}rI  lab0 198.18.0.(10+I)/24 ─veth─ rI ┘
#
# Every node has a route for 239.0.0.0/8 on lab0 and no default route. A link's rate applies in
# both directions: sender uplink = egress of lab0 in the sender namespace, the sender's downlink =
# egress of bridge port s0; receiver I's downlink = egress of bridge port rI, its uplink = egress
# of lab0 in its namespace (htb, one class, pfifo of --qlen packets). Loss is an nftables rule per
# bridge port and direction in the bridge's forward hook (`numgen random`); multicast frames are
# cloned per output port before that hook, so each receiver loses independently.
#
# Frames, not batches: a UDP GSO send (up to 64 KB, ~45 datagrams) would cross a veth and the
# bridge as one packet, so the loss rule would drop all of it or none. A switch drops frames, so
# every node's lab0 segments in software before the bridge (`ethtool -K lab0 tso off
# tx-udp-segmentation off`; without ethtool, `gso_max_segs 1`, which also stops TCP from
# building large segments). `--offload on` keeps the kernel default for comparison.
set -Eeuo pipefail

usage() {
    cat <<'EOF'
Usage: netns-scripts/lab.sh up [options] | down | status | exec NODE CMD... | --help

  up      (re)create the lab; runs `down` first, so it is safe to repeat
  down    kill the processes in the lab namespaces and delete them (idempotent; safe after a crash)
  status  list the lab namespaces, addresses, qdiscs, loss rules and snooping state
  exec    run CMD in NODE's namespace: NODE is s (sender), rI (receiver I) or br (bridge)

Options for `up`:
  -n, --receivers N      receiver namespaces (1..200)                          [4]
  --send-rate RATE       sender link rate, both directions (e.g. 1G, 500M; 0 = unshaped)  [1G]
  --recv-rate RATE       each receiver link's rate, both directions            [1G]
  --loss PCT             random loss on every receiver link, both directions (e.g. 1, 0.5) [0]
  --loss-down PCT        ... only towards the receivers (bridge -> receiver)
  --loss-up PCT          ... only from the receivers (receiver -> bridge)
  --loss-override I:DOWN[:UP]   per-receiver override (repeatable), e.g. 3:5 or 3:5:0
  --snooping on|off      bridge multicast snooping (the bridge is the IGMPv3 querier)  [on]
  --qlen PACKETS         queue length of each shaped link                      [1000]
  --offload on|off       keep segmentation offload on the lab veths, so GSO batches cross
                         the bridge (and its loss rule) whole; off = per-frame loss  [off]
  --rate-override I:RATE receiver I's link rate instead of --recv-rate (repeatable), e.g. 3:100M
  --aqm pfifo|ecn        leaf queue of every shaped link: pfifo of --qlen packets, or
                         fq_codel with ECN marking (CE instead of drops for ECT traffic)  [pfifo]
                         (needs the kernel's fq_codel; some kernels have only pfifo, htb, tbf)
  --ce-override I:PCT    mark PCT % of the ECN-capable (ECT(0)) frames towards receiver I
                         Congestion Experienced (repeatable; an nftables rule, as the loss:
                         a stand-in for a marking AQM where the kernel has none)

Environment: LAB_PREFIX (namespace prefix, must start with "mcl-"; default "mcl-").

Examples:
  sudo netns-scripts/lab.sh up -n 8 --send-rate 1G --recv-rate 1G --loss 1
  sudo netns-scripts/lab.sh up -n 4 --loss-down 2 --loss-override 1:10 --snooping off
  sudo netns-scripts/lab.sh exec r1 ip -br addr
  sudo netns-scripts/lab.sh status
  sudo netns-scripts/lab.sh down

Needs root, iproute2 (ip, tc), nft only when some loss is configured, and ethtool for
per-frame segmentation (falls back to `ip link ... gso_max_segs 1` without it).
EOF
}

die() {
    echo "lab: $*" >&2
    exit 2
}

P=${LAB_PREFIX:-mcl-}
[[ $P =~ ^mcl-[a-z0-9-]*$ ]] || die "LAB_PREFIX must match ^mcl-[a-z0-9-]*\$, got '$P'"
NS_BR=${P}br
NS_S=${P}s
NFT_TABLE=mcl_lab
SUBNET=198.18.0
SENDER_IP=$SUBNET.1

# Every external command is bounded in time.
t() { timeout -k 2 20 "$@"; }

# Lab namespaces that exist now (exact names only, so another prefix is never touched).
lab_namespaces() {
    t ip netns list | awk '{ print $1 }' | grep -E "^${P}(br|s|r[0-9]+)\$" || true
}

receiver_ip() { echo "$SUBNET.$((10 + $1))"; }

# "1G" -> "1gbit", "500M" -> "500mbit", "0"/"none" -> "" (unshaped).
tc_rate() {
    local r=$1
    case $r in
    0 | none | off | "") echo "" ;;
    *[kK]) echo "${r%?}kbit" ;;
    *[mM]) echo "${r%?}mbit" ;;
    *[gG]) echo "${r%?}gbit" ;;
    *bit) echo "$r" ;;
    *) [[ $r =~ ^[0-9]+$ ]] || die "bad rate '$r'"; echo "${r}bit" ;;
    esac
}

# Percentage -> threshold out of 1,000,000 for `numgen random mod 1000000 < X`.
loss_ppm() {
    [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad loss percentage '$1'"
    awk -v p="$1" 'BEGIN { if (p > 100) exit 1; printf "%d", p * 10000 + 0.5 }' ||
        die "loss over 100 %: $1"
}

shape() { # shape NS DEV TCRATE QLEN
    local ns=$1 dev=$2 rate=$3 qlen=$4
    [[ -n $rate ]] || return 0
    t ip netns exec "$ns" tc qdisc replace dev "$dev" root handle 1: htb default 10
    t ip netns exec "$ns" tc class add dev "$dev" parent 1: classid 1:10 htb \
        rate "$rate" ceil "$rate" burst 256k cburst 256k quantum 60000
    if [[ ${AQM:-pfifo} == ecn ]]; then
        t ip netns exec "$ns" tc qdisc add dev "$dev" parent 1:10 handle 10: fq_codel \
            limit "$qlen" ecn
    else
        t ip netns exec "$ns" tc qdisc add dev "$dev" parent 1:10 handle 10: pfifo limit "$qlen"
    fi
}

node_setup() { # node_setup NS ADDR
    local ns=$1 addr=$2
    t ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
        net.ipv4.conf.all.force_igmp_version=3 net.ipv4.conf.default.force_igmp_version=3
    t ip -n "$ns" link set lo up
    t ip -n "$ns" link set lab0 up multicast on
    t ip -n "$ns" addr add "$addr/24" dev lab0
    t ip -n "$ns" route add 239.0.0.0/8 dev lab0
    if [[ $OFFLOAD == off ]]; then
        if command -v ethtool >/dev/null; then
            t ip netns exec "$ns" ethtool -K lab0 tso off tx-udp-segmentation off >/dev/null
        else
            t ip -n "$ns" link set dev lab0 gso_max_segs 1
        fi
    fi
}

# remove_namespaces WHO "NS...": stop the processes that run inside the namespaces NS (only
# those, by PID: TERM, then KILL after at most 5 s) and delete the namespaces. WHO names the
# caller in messages. Shared with routed.sh, which sources this file.
remove_namespaces() {
    local who=$1 nss=$2 ns pid pids left deadline sig
    for sig in TERM KILL; do
        left=0
        for ns in $nss; do
            pids=$(t ip netns pids "$ns" 2>/dev/null || true)
            for pid in $pids; do
                kill -s "$sig" "$pid" 2>/dev/null || true
                left=1
            done
        done
        ((left)) || break
        deadline=$((SECONDS + 5))
        while ((SECONDS < deadline)); do
            left=0
            for ns in $nss; do
                [[ -n $(t ip netns pids "$ns" 2>/dev/null || true) ]] && left=1
            done
            ((left)) || break
            sleep 0.1
        done
    done
    for ns in $nss; do
        t ip netns del "$ns" 2>/dev/null || echo "$who: down: could not delete $ns" >&2
    done
}

cmd_down() {
    local nss
    nss=$(lab_namespaces)
    [[ -n $nss ]] || { echo "lab: down: no ${P}* namespaces"; return 0; }
    remove_namespaces lab "$nss"
    nss=$(lab_namespaces)
    [[ -z $nss ]] || die "down: still there: $nss"
    echo "lab: down: removed the ${P}* namespaces"
}

cmd_up() {
    local n=4 send_rate=1G recv_rate=1G loss_down=0 loss_up=0 snooping=on qlen=1000
    OFFLOAD=off AQM=pfifo
    local -a overrides=() rate_overrides=() ce_overrides=()
    while (($#)); do
        case $1 in
        -n | --receivers) n=${2:?}; shift 2 ;;
        --send-rate) send_rate=${2:?}; shift 2 ;;
        --recv-rate) recv_rate=${2:?}; shift 2 ;;
        --loss) loss_down=${2:?}; loss_up=$2; shift 2 ;;
        --loss-down) loss_down=${2:?}; shift 2 ;;
        --loss-up) loss_up=${2:?}; shift 2 ;;
        --loss-override) overrides+=("${2:?}"); shift 2 ;;
        --snooping) snooping=${2:?}; shift 2 ;;
        --qlen) qlen=${2:?}; shift 2 ;;
        --offload) OFFLOAD=${2:?}; shift 2 ;;
        --rate-override) rate_overrides+=("${2:?}"); shift 2 ;;
        --aqm) AQM=${2:?}; shift 2 ;;
        --ce-override) ce_overrides+=("${2:?}"); shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "up: unknown option '$1' (see --help)" ;;
        esac
    done
    if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > 200)); then die "receivers must be 1..200, got '$n'"; fi
    [[ $snooping == on || $snooping == off ]] || die "--snooping on|off, got '$snooping'"
    [[ $qlen =~ ^[1-9][0-9]*$ ]] || die "bad --qlen '$qlen'"
    [[ $OFFLOAD == on || $OFFLOAD == off ]] || die "--offload on|off, got '$OFFLOAD'"
    [[ $AQM == pfifo || $AQM == ecn ]] || die "--aqm pfifo|ecn, got '$AQM'"
    local s_rate r_rate
    s_rate=$(tc_rate "$send_rate")
    r_rate=$(tc_rate "$recv_rate")
    local -a link_rate=()
    for ((i = 1; i <= n; i++)); do link_rate[i]=$r_rate; done
    for o in "${rate_overrides[@]}"; do
        [[ $o =~ ^([0-9]+):([0-9]+[kKmMgG]?)$ ]] || die "bad --rate-override '$o' (I:RATE)"
        ((BASH_REMATCH[1] >= 1 && BASH_REMATCH[1] <= n)) || die "--rate-override: no receiver ${BASH_REMATCH[1]}"
        link_rate[BASH_REMATCH[1]]=$(tc_rate "${BASH_REMATCH[2]}")
    done

    # Per-receiver loss, in ppm, per direction.
    local -a down_ppm=() up_ppm=()
    local i d u o
    d=$(loss_ppm "$loss_down")
    u=$(loss_ppm "$loss_up")
    for ((i = 1; i <= n; i++)); do
        down_ppm[i]=$d
        up_ppm[i]=$u
    done
    for o in "${overrides[@]}"; do
        [[ $o =~ ^([0-9]+):([0-9.]+)(:([0-9.]+))?$ ]] || die "bad --loss-override '$o' (I:DOWN[:UP])"
        i=${BASH_REMATCH[1]}
        ((i >= 1 && i <= n)) || die "--loss-override: no receiver $i"
        down_ppm[i]=$(loss_ppm "${BASH_REMATCH[2]}")
        up_ppm[i]=$(loss_ppm "${BASH_REMATCH[4]:-${BASH_REMATCH[2]}}")
    done
    # Per-receiver CE marking, in ppm of its ECT(0) frames.
    local -a ce_ppm=()
    for ((i = 1; i <= n; i++)); do ce_ppm[i]=0; done
    for o in "${ce_overrides[@]}"; do
        [[ $o =~ ^([0-9]+):([0-9.]+)$ ]] || die "bad --ce-override '$o' (I:PCT)"
        i=${BASH_REMATCH[1]}
        ((i >= 1 && i <= n)) || die "--ce-override: no receiver $i"
        ce_ppm[i]=$(loss_ppm "${BASH_REMATCH[2]}")
    done
    local any_loss=0
    for ((i = 1; i <= n; i++)); do
        ((down_ppm[i] > 0 || up_ppm[i] > 0 || ce_ppm[i] > 0)) && any_loss=1
    done
    if ((any_loss)) && ! command -v nft >/dev/null; then
        die "loss needs nft (apt-get install nftables)"
    fi

    cmd_down >/dev/null
    trap 'echo "lab: up failed; cleaning up" >&2; cmd_down >&2 || true' ERR

    # Bridge namespace: br0 with no address, ports s0 and r1..rN.
    t ip netns add "$NS_BR"
    t ip netns exec "$NS_BR" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    t ip -n "$NS_BR" link set lo up
    t ip -n "$NS_BR" link add br0 type bridge stp_state 0
    if [[ $snooping == on ]]; then
        # IGMPv3 querier: with the default v2 queries, hosts fall back to IGMPv2, whose report
        # suppression (the bridge forwards one member's report to the others) lets ports of
        # still-joined receivers expire after another receiver leaves the group.
        t ip -n "$NS_BR" link set br0 type bridge mcast_snooping 1 mcast_querier 1 mcast_igmp_version 3
    else
        t ip -n "$NS_BR" link set br0 type bridge mcast_snooping 0
    fi

    # Sender.
    t ip netns add "$NS_S"
    t ip -n "$NS_BR" link add s0 type veth peer name lab0 netns "$NS_S"
    t ip -n "$NS_BR" link set s0 master br0 up
    node_setup "$NS_S" "$SENDER_IP"
    shape "$NS_S" lab0 "$s_rate" "$qlen"
    shape "$NS_BR" s0 "$s_rate" "$qlen"

    # Receivers.
    for ((i = 1; i <= n; i++)); do
        local ns=${P}r$i
        t ip netns add "$ns"
        t ip -n "$NS_BR" link add "r$i" type veth peer name lab0 netns "$ns"
        t ip -n "$NS_BR" link set "r$i" master br0 up
        node_setup "$ns" "$(receiver_ip "$i")"
        shape "$ns" lab0 "${link_rate[i]}" "$qlen"
        shape "$NS_BR" "r$i" "${link_rate[i]}" "$qlen"
    done
    t ip -n "$NS_BR" link set br0 up

    # Loss.
    if ((any_loss)); then
        {
            echo "table bridge $NFT_TABLE {"
            echo "  chain forward_loss {"
            echo "    type filter hook forward priority 0; policy accept;"
            for ((i = 1; i <= n; i++)); do
                ((down_ppm[i] > 0)) &&
                    echo "    oifname \"r$i\" numgen random mod 1000000 < ${down_ppm[i]} counter drop"
                ((up_ppm[i] > 0)) &&
                    echo "    iifname \"r$i\" numgen random mod 1000000 < ${up_ppm[i]} counter drop"
                ((ce_ppm[i] > 0)) &&
                    echo "    oifname \"r$i\" ip ecn ect0 numgen random mod 1000000 < ${ce_ppm[i]} ip ecn set ce counter"
            done
            echo "  }"
            echo "}"
        } >"/tmp/${P}nft.$$"
        t ip netns exec "$NS_BR" nft -f "/tmp/${P}nft.$$"
        rm -f "/tmp/${P}nft.$$"
    fi
    trap - ERR

    # Wait (bounded) until every bridge port forwards and every node's lab0 is up.
    local tries fwd up
    for ((tries = 0; ; tries++)); do
        fwd=$(t bridge -n "$NS_BR" link show | grep -c 'state forwarding' || true)
        up=0
        for ns in "$NS_S" $(for ((i = 1; i <= n; i++)); do echo "${P}r$i"; done); do
            t ip -n "$ns" -o link show lab0 | grep -q 'state UP' && up=$((up + 1))
        done
        ((fwd == n + 1 && up == n + 1)) && break
        ((tries < 100)) || die "up: links not ready after 10 s ($fwd/$((n + 1)) ports forwarding, $up up)"
        sleep 0.1
    done
    echo "lab: up: sender $SENDER_IP + $n receivers ($(receiver_ip 1)..$(receiver_ip "$n")) on br0;" \
        "send-rate=${send_rate} recv-rate=${recv_rate} loss-down=${loss_down}% loss-up=${loss_up}%" \
        "${overrides[*]:+overrides=${overrides[*]} }${rate_overrides[*]:+rate-overrides=${rate_overrides[*]} }snooping=$snooping offload=$OFFLOAD aqm=$AQM"
}

cmd_status() {
    local nss ns
    nss=$(lab_namespaces)
    if [[ -z $nss ]]; then
        echo "lab: no ${P}* namespaces"
        return 1
    fi
    for ns in $nss; do
        echo "== $ns"
        t ip -n "$ns" -br addr | grep -v '^lo ' || true
        [[ $ns == "$NS_BR" ]] || t ip -n "$ns" route show 239.0.0.0/8
        t ip netns exec "$ns" tc qdisc show | grep -E 'htb|pfifo|fq_codel' || true
    done
    if t ip netns exec "$NS_BR" true 2>/dev/null; then
        echo "== bridge"
        t ip -n "$NS_BR" -d link show br0 | grep -o 'mcast_snooping [01]' || true
        t ip -n "$NS_BR" -d link show br0 | grep -o 'mcast_querier [01]' || true
        if command -v nft >/dev/null; then
            t ip netns exec "$NS_BR" nft list table bridge "$NFT_TABLE" 2>/dev/null || echo "(no loss rules)"
        fi
        echo "pids: $(for ns in $nss; do t ip netns pids "$ns"; done | tr '\n' ' ')"
    fi
}

cmd_exec() {
    local node=${1:?exec NODE CMD...}
    shift
    [[ $node =~ ^(s|br|r[0-9]+)$ ]] || die "exec: NODE is s, br or rI"
    (($#)) || die "exec: no command"
    exec ip netns exec "${P}$node" "$@"
}

# Sourced (netns-scripts/routed.sh reuses tc_rate, loss_ppm, shape, node_setup): functions only.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

case ${1:-} in
up) shift; [[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }; [[ $EUID == 0 ]] || die "needs root"; cmd_up "$@" ;;
down) [[ $EUID == 0 ]] || die "needs root"; cmd_down ;;
status) cmd_status ;;
exec) shift; cmd_exec "$@" ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac
