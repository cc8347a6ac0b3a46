# Shared by ns-run.sh and ns-tree.sh (sourced, not run): the private-namespace safety check and
# the bookkeeping of the processes a script starts. The sourcing script defines die() and sets
# NS_SCRIPT (its name, for messages) before calling these.

# Refuse to run while any interface other than lo is up (a namespace with a real uplink), then
# bring lo up.
ns_require_private() {
    local up_links
    up_links=$(ip -o link show up | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep -vx lo || true)
    if [[ -n $up_links ]]; then
        die "refusing to run: interfaces other than lo are up ($(echo "$up_links" | tr '\n' ' ')); run me inside 'unshare -rn'"
    fi
    ip link set lo up || die "ip link set lo up failed"
}

# Processes started: receivers in recv_pids, the sender in send_pid. Only these are ever
# signalled, by PID.
declare -a recv_pids=()
send_pid=""

kill_started() {
    local pid
    for pid in "${recv_pids[@]}" $send_pid; do
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
}

# shellcheck disable=SC2317  # invoked by trap
on_signal() {
    echo "$NS_SCRIPT: interrupted ($1), stopping the processes I started" >&2
    kill_started
    # Die of the same signal, so that a calling shell sees the interruption too.
    trap - "$1" EXIT
    kill -s "$1" $$
    exit 130
}

# Install the traps: stop what was started on INT, TERM and at exit.
ns_trap_started() {
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM
    trap kill_started EXIT
}

now_ns() { date +%s%N; }
