#!/usr/bin/env bash
# Latchkey against djoser + djangorestframework-simplejwt, on this machine, in
# one go: sets up the peer (bench/peer, in a local venv), builds Latchkey and
# latchkey-bench, starts both servers on loopback, runs the same scenarios
# against each in turn, and prints req/s, p50/p99, memory and the ratios.
# Everything it starts it stops; the reports stay in bench/results/.
#
# Needs only python3 (with venv), cargo and this repository. See
# docs/benchmarks.md for what the figures mean.
set -euo pipefail

ALL_SCENARIOS=register,login,refresh,me,verify,mixed

usage() {
    cat <<EOF
usage: bench/compare.sh [options]

  --quick              2 s per scenario (same as --duration 2s)
  --concurrency N      virtual users, each on its own connection [\$CONCURRENCY, 64]
  --duration D         measured time per scenario, e.g. 10s [\$DURATION, 10s]
  --scenarios LIST     comma-separated, or all: $ALL_SCENARIOS [\$SCENARIOS, all]
  --workers N          gunicorn sync workers [\$PEER_WORKERS, 2 × cores + 1]
  --latchkey-port P    [\$LATCHKEY_PORT, 18090]
  --peer-port P        [\$PEER_PORT, 18091]
  --results DIR        where reports go [bench/results/<date>-<commit>]
  --database KIND      sqlite (embedded, each server its own file) or postgres:
                       both servers on the local PostgreSQL, each in a database
                       made for the run and dropped after [\$DATABASE, sqlite]
  -h, --help           this text

Environment: PYTHON (default python3) makes the peer's venv; with --database
postgres, PGHOST/PGPORT/PGUSER (default 127.0.0.1, 5432, postgres) name a
server that lets this user create databases, reached with psql.
EOF
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- options ------------------------------------------------------------
CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-10s}
SCENARIOS=${SCENARIOS:-all}
PEER_WORKERS=${PEER_WORKERS:-$((2 * $(nproc) + 1))}
LATCHKEY_PORT=${LATCHKEY_PORT:-18090}
PEER_PORT=${PEER_PORT:-18091}
PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-}
DATABASE=${DATABASE:-sqlite}

while (($#)); do
    case $1 in
        --quick) DURATION=2s ;;
        --concurrency) CONCURRENCY=${2:?}; shift ;;
        --duration) DURATION=${2:?}; shift ;;
        --scenarios) SCENARIOS=${2:?}; shift ;;
        --workers) PEER_WORKERS=${2:?}; shift ;;
        --latchkey-port) LATCHKEY_PORT=${2:?}; shift ;;
        --peer-port) PEER_PORT=${2:?}; shift ;;
        --results) RESULTS=${2:?}; shift ;;
        --database) DATABASE=${2:?}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done
[[ $SCENARIOS == all ]] && SCENARIOS=$ALL_SCENARIOS
[[ $DATABASE == sqlite || $DATABASE == postgres ]] || die "--database is sqlite or postgres"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PEER=bench/peer
VENV=$PEER/.venv
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo nocommit)
RESULTS=${RESULTS:-bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-$COMMIT}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-compare.XXXXXX")
LATCHKEY_PID= PEER_PID=
PG_DATABASES=()
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
# The peer's sources stay free of __pycache__ folders.
export PYTHONDONTWRITEBYTECODE=1

# --- stopping what we started --------------------------------------------
cleanup() {
    stop "$LATCHKEY_PID"
    stop "$PEER_PID"
    local db
    for db in "${PG_DATABASES[@]}"; do
        psql -q -d postgres -c "DROP DATABASE IF EXISTS $db" || true
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers --------------------------------------------------------------
# Process ids of a process's children, from /proc (`ps` is not everywhere).
# The parent id is the second field after the parenthesised command name.
children() {
    cat /proc/[0-9]*/stat 2>/dev/null |
        awk -v parent="$1" '{ pid = $1; sub(/^.*\) /, ""); if ($2 == parent) print pid }'
}

# Resident memory of a process and its children, in KiB: the sum of VmRSS
# now and the sum of each process's own peak (VmHWM), then the process count.
tree_memory() {
    local pids=("$1") pid
    pids+=($(children "$1"))
    for pid in "${pids[@]}"; do cat "/proc/$pid/status" 2>/dev/null; done |
        awk -v n="${#pids[@]}" '/^VmRSS:/ { r += $2 } /^VmHWM:/ { h += $2 }
            END { printf "%d\t%d\t%d\n", r, h, n }'
}

record_memory() { # server scenario pid
    printf '%s\t%s\t%s\n' "$1" "$2" "$(tree_memory "$3")" >>"$RESULTS/memory.tsv"
}

# A database on the PostgreSQL server for this run, dropped on exit.
pg_database() { # name-prefix
    local db
    db="$1_$(date +%s)_$$"
    psql -q -d postgres -c "CREATE DATABASE $db" >/dev/null ||
        die "cannot create a database on $PGHOST:$PGPORT as $PGUSER (set PGHOST/PGUSER)"
    PG_DATABASES+=("$db")
    echo "$db"
}

# --- the peer's venv and database ----------------------------------------
setup_peer() {
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON)"
    if [[ ! -x $VENV/bin/python ]]; then
        echo "creating $VENV"
        "$PYTHON" -m venv "$VENV" ||
            die "cannot make a venv (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    local want have=
    want=$(sha256sum "$PEER/requirements.txt" | cut -d' ' -f1)
    [[ -f $VENV/requirements.sha256 ]] && have=$(cat "$VENV/requirements.sha256")
    if [[ $want != "$have" ]]; then
        echo "installing $PEER/requirements.txt"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$PEER/requirements.txt"
        echo "$want" >"$VENV/requirements.sha256"
    fi
    export PEER_DATA_DIR=$SCRATCH/peer PEER_SECRET_KEY
    PEER_SECRET_KEY=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))')
    mkdir -p "$PEER_DATA_DIR"
    if [[ $DATABASE == postgres ]]; then
        export PEER_DATABASE_URL
        PEER_DATABASE_URL="postgresql://$PGUSER@$PGHOST:$PGPORT/$(pg_database peer_bench)"
    fi
    "$VENV/bin/python" "$PEER/simplejwt_site/manage.py" migrate --noinput >"$SCRATCH/migrate.log"
}

# --- the servers ----------------------------------------------------------
start_latchkey() {
    local data=$SCRATCH/latchkey log=$SCRATCH/latchkey.log creds
    if [[ $DATABASE == postgres ]]; then
        export LATCHKEY_DATABASE_URL
        LATCHKEY_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$(pg_database latchkey_bench)"
    fi
    port_open "$LATCHKEY_PORT" && die "port $LATCHKEY_PORT is taken (--latchkey-port)"
    creds=$(target/release/latchkey --data-dir "$data" clients add bench 2>>"$log")
    export LATCHKEY_BENCH_CLIENT_ID LATCHKEY_BENCH_CLIENT_SECRET
    LATCHKEY_BENCH_CLIENT_ID=$(awk '/^client_id:/ { print $2 }' <<<"$creds")
    LATCHKEY_BENCH_CLIENT_SECRET=$(awk '/^client_secret:/ { print $2 }' <<<"$creds")
    [[ -n $LATCHKEY_BENCH_CLIENT_ID && -n $LATCHKEY_BENCH_CLIENT_SECRET ]] ||
        die "could not read the client credentials from 'latchkey clients add'"
    target/release/latchkey --data-dir "$data" serve --listen "127.0.0.1:$LATCHKEY_PORT" \
        --ip-rate-limit 0 --token-rate-limit 0 --account-failure-limit 0 >"$log" 2>&1 &
    LATCHKEY_PID=$!
    wait_for_port "$LATCHKEY_PORT" "$LATCHKEY_PID" "$log"
}

start_peer() {
    local log=$SCRATCH/simplejwt.log
    port_open "$PEER_PORT" && die "port $PEER_PORT is taken (--peer-port)"
    "$VENV/bin/gunicorn" --chdir "$PEER" --workers "$PEER_WORKERS" --worker-class sync \
        --bind "127.0.0.1:$PEER_PORT" --no-control-socket --error-logfile - \
        simplejwt_site.wsgi:application >"$log" 2>&1 &
    PEER_PID=$!
    wait_for_port "$PEER_PORT" "$PEER_PID" "$log"
    for _ in $(seq 300); do # every worker booted, so idle memory counts them
        (($(children "$PEER_PID" | wc -w) >= PEER_WORKERS)) && return 0
        sleep 0.1
    done
    die "gunicorn did not boot $PEER_WORKERS workers (log: $log)"
}

# --- one scenario against one server --------------------------------------
bench() { # server scenario
    local server=$1 scenario=$2 args status=0
    if [[ $server == latchkey ]]; then
        args=(--url "http://127.0.0.1:$LATCHKEY_PORT" --profile latchkey --pid "$LATCHKEY_PID")
    else
        args=(--url "http://127.0.0.1:$PEER_PORT" --profile simplejwt)
    fi
    printf '  %-9s %-9s ' "$scenario" "$server"
    target/release/latchkey-bench "${args[@]}" --scenario "$scenario" \
        --concurrency "$CONCURRENCY" --duration "$DURATION" \
        --json "$RESULTS/$server-$scenario.json" >"$RESULTS/$server-$scenario.txt" 2>&1 ||
        status=$?
    record_memory "$server" "$scenario" "$([[ $server == latchkey ]] && echo "$LATCHKEY_PID" || echo "$PEER_PID")"
    bench_outcome "$status" "$RESULTS/$server-$scenario.txt" || true
}

machine() {
    machine_basics
    echo "python: $("$VENV/bin/python" --version 2>&1)"
    echo "concurrency: $CONCURRENCY"
    echo "duration: $DURATION"
    echo "peer workers: $PEER_WORKERS (gunicorn sync)"
    echo "database: $DATABASE"
    if [[ $DATABASE == postgres ]]; then
        echo "postgresql: $(psql -Atq -d postgres -c 'SHOW server_version')"
    fi
}

# --- the run ----------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found"
[[ $DATABASE == sqlite ]] || command -v psql >/dev/null || die "psql not found (PostgreSQL client)"
setup_peer
echo "building latchkey and latchkey-bench (release)"
cargo build --release --quiet -p latchkey -p latchkey-bench

warn_if_compiling
mkdir -p "$RESULTS"
machine >"$RESULTS/machine.txt"
printf 'server\tscenario\trss_kib\tpeak_kib\tprocesses\n' >"$RESULTS/memory.tsv"
start_latchkey
start_peer
sleep 1
record_memory latchkey idle "$LATCHKEY_PID"
record_memory simplejwt idle "$PEER_PID"

echo "running $SCENARIOS at concurrency $CONCURRENCY, $DURATION each"
FAILED=0
IFS=, read -ra scenario_list <<<"$SCENARIOS"
for scenario in "${scenario_list[@]}"; do
    bench latchkey "$scenario"
    bench simplejwt "$scenario"
done

# The servers' logs are kept only when something failed.
((FAILED)) && cp "$SCRATCH/latchkey.log" "$SCRATCH/simplejwt.log" "$RESULTS/"
echo
"$VENV/bin/python" bench/summarize.py "$RESULTS" | tee "$RESULTS/summary.md"
echo
echo "reports: $RESULTS/"
exit "$FAILED"
