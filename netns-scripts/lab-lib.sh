# shellcheck shell=bash disable=SC2154  # pids, P and run_timeout belong to the sourcing script
# Shared by the lab benchmarks (bench.sh, routed-bench.sh, rate.sh, image.sh; sourced, not run):
# stopping the processes a script started, and running a command in a lab node. The sourcing
# script keeps the PIDs it starts in the array `pids`, and sets P (the lab's namespace prefix)
# and run_timeout (seconds, the bound of every command run with in_ns).

# TERM the processes this script started (only those, by PID), then KILL what is left after at
# most 5 s, and reap them.
stop_pids() {
    local pid deadline alive
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}

# Run CMD in lab node NODE (namespace ${P}NODE), bounded by run_timeout. Started with `&`, the
# function runs in a subshell: it execs there, so that $! is timeout's PID.
in_ns() {
    local node=$1
    shift
    if [[ $BASHPID != "$$" ]]; then
        exec timeout -k 5 "$run_timeout" ip netns exec "${P}$node" "$@"
    fi
    timeout -k 5 "$run_timeout" ip netns exec "${P}$node" "$@"
}
