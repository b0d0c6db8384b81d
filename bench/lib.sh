# shellcheck shell=bash
# Helpers shared by bench/compare.sh and bench/scaling.sh: sourced, not run.
# machine_basics reads COMMIT; bench_outcome sets FAILED.

die() { echo "${0##*/}: $*" >&2; exit 1; }

# Stops a process we started: TERM, then KILL after 10 s.
stop() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() { # port pid log [seconds, 30]
    local seconds=${4:-30}
    for _ in $(seq $((seconds * 10))); do
        port_open "$1" && return 0
        kill -0 "$2" 2>/dev/null || { tail -20 "$3" >&2; die "the server on port $1 exited"; }
        sleep 0.1
    done
    die "nothing listens on port $1 after $seconds s (log: $3)"
}

# Says how a latchkey-bench run ended, from its exit status and its text
# report; FAILED=1 unless it passed. Returns 1 when it did not run at all.
bench_outcome() { # status report.txt
    # shellcheck disable=SC2034 # FAILED is the sourcing script's
    case $1 in
        0) echo ok ;;
        1) echo "finished with failed requests (see $2)"; FAILED=1 ;;
        *) echo "did not run:"; tail -5 "$2" | sed 's/^/    /'; FAILED=1; return 1 ;;
    esac
}

warn_if_compiling() {
    if command -v pgrep >/dev/null && pgrep -x rustc >/dev/null; then
        echo "warning: other rustc processes are running; they share the cores and lower the figures" >&2
    fi
}

# The lines of machine.txt both scripts write: when, which code, what machine.
machine_basics() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    local dirty=
    [[ $COMMIT != nocommit ]] && ! git diff --quiet HEAD 2>/dev/null && dirty=' (work tree differs from it)'
    echo "commit: $COMMIT$dirty"
    echo "nproc: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "memory: $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
}
