#!/usr/bin/env bash
# The user-table scaling curve: Latchkey's throughput, latency, errors and
# memory as the database grows from a thousand to a million users, each with a
# live session. For each size it builds a fresh data directory (a base user,
# exported, grown by bench/seed.py, imported under the same master key),
# starts `latchkey serve` on it, runs latchkey-bench scenario by scenario,
# stops the server and moves on; then it draws bench/plot_scaling.py's chart
# and prints the table. Everything it starts it stops; the reports stay in
# bench/results/scaling-<date>-<commit>/.
#
# Needs python3, this repository, and cargo unless --no-build is given. See
# docs/benchmarks.md for what the figures mean.
set -euo pipefail

usage() {
    cat <<EOF
usage: bench/scaling.sh [options]

  --sizes LIST         comma-separated seeded users (each with one live
                       session) [\$SIZES, 1000,10000,100000,1000000]
  --scenarios LIST     latchkey-bench scenarios, run one by one [\$SCENARIOS, login,refresh,me]
  --concurrency N      virtual users, each on its own connection [\$CONCURRENCY, 64]
  --duration D         measured time per scenario, e.g. 5s [\$DURATION, 5s]
  --port P             where the server listens [\$SCALING_PORT, 18095]
  --results DIR        where reports go [bench/results/scaling-<date>-<commit>]
  --no-build           use the binaries as they are (no cargo build)
  -h, --help           this text

Environment: LATCHKEY_BIN_DIR holds latchkey and latchkey-bench (default
target/release); PYTHON (default python3) runs bench/seed.py and the plotter;
TMPDIR gets the scratch data (a million users need about 2 GB there).
EOF
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- options ------------------------------------------------------------
SIZES=${SIZES:-1000,10000,100000,1000000}
SCENARIOS=${SCENARIOS:-login,refresh,me}
CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-5s}
SCALING_PORT=${SCALING_PORT:-18095}
RESULTS=${RESULTS:-}
PYTHON=${PYTHON:-python3}
BUILD=1

while (($#)); do
    case $1 in
        --sizes) SIZES=${2:?}; shift ;;
        --scenarios) SCENARIOS=${2:?}; shift ;;
        --concurrency) CONCURRENCY=${2:?}; shift ;;
        --duration) DURATION=${2:?}; shift ;;
        --port) SCALING_PORT=${2:?}; shift ;;
        --results) RESULTS=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done
IFS=, read -ra size_list <<<"$SIZES"
IFS=, read -ra scenario_list <<<"$SCENARIOS"
for size in "${size_list[@]}"; do
    [[ $size =~ ^[0-9]+$ ]] || die "--sizes takes whole numbers, not '$size'"
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${LATCHKEY_BIN_DIR:-target/release}
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo nocommit)
RESULTS=${RESULTS:-bench/results/scaling-$(date -u +%Y-%m-%dT%H%M%SZ)-$COMMIT}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-scaling.XXXXXX")
SERVER_PID=''
CHILD_PID=''
# The base user's password: every seeded user shares its hash, so it logs
# them all in.
PASSWORD='scaling curve lantern 7'
DOMAIN=scale.example.com

# Settings from the caller's environment would point the server elsewhere (a
# configured master key or database); each run here configures its own.
while read -r name; do
    case $name in LATCHKEY_BIN_DIR | LATCHKEY_BENCH_*) ;; *) unset "$name" ;; esac
done < <(compgen -e | grep '^LATCHKEY_' || true)

# --- stopping what we started --------------------------------------------
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    stop "$CHILD_PID"
    stop "$SERVER_PID"
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers --------------------------------------------------------------
# Runs a long command in the background and waits for it, so that Ctrl-C or
# TERM reach the trap at once rather than when the command ends.
run() {
    local status=0
    "$@" &
    CHILD_PID=$!
    wait "$CHILD_PID" || status=$?
    CHILD_PID=
    return "$status"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
file_bytes() { if [[ -e $1 ]]; then stat -c %s "$1"; else echo 0; fi; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

machine() {
    machine_basics
    echo "python: $("$PYTHON" --version 2>&1)"
    echo "binaries: $BIN ($("$BIN/latchkey" version 2>/dev/null || echo unknown))"
    echo "sizes: $SIZES"
    echo "scenarios: $SCENARIOS"
    echo "concurrency: $CONCURRENCY"
    echo "duration: $DURATION"
    echo "database: SQLite (the default, in the data directory)"
}

# Answers /healthz, logs in as the last seeded user with the shared password
# and reads /v1/me back: the imported rows are usable, not just present.
check_server() { # size
    "$PYTHON" - "http://127.0.0.1:$SCALING_PORT" "seed$1@$DOMAIN" "$PASSWORD" <<'EOF'
import json, sys, urllib.request
base, email, password = sys.argv[1:]
def call(path, body=None, token=None):
    req = urllib.request.Request(base + path, data=body and json.dumps(body).encode())
    if body:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()
assert call("/healthz")[0] == 200, "/healthz"
status, body = call("/v1/login", {"email": email, "password": password})
token = json.loads(body)["access_token"]
me = json.loads(call("/v1/me", token=token)[1])
assert me.get("email") == email, me
EOF
}

# One latchkey-bench JSON report as rows of scaling.tsv.
tsv_rows() { # size scenario json
    "$PYTHON" - "$@" <<'EOF'
import json, sys
size, scenario, path = sys.argv[1:]
for s in json.load(open(path))["scenarios"]:
    if s["scenario"] != scenario or not s.get("total"):
        continue
    t, mem = s["total"], s.get("server_memory") or {}
    print("\t".join(str(v) for v in (
        size, scenario, f"{t['rps']:.1f}", f"{t['latency_ms']['p50']:.3f}",
        f"{t['latency_ms']['p99']:.3f}", t["errors"],
        mem.get("rss_kib", ""), mem.get("peak_rss_kib", ""))))
EOF
}

# --- one size -------------------------------------------------------------
run_size() { # size
    local size=$1 dir=$SCRATCH/$1 log status t0 t1 seed_s import_s idle_rss db_bytes
    local base=$SCRATCH/$1/base data=$SCRATCH/$1/data
    log=$dir/latchkey.log
    mkdir -p "$dir"
    mkdir -m 700 "$base" "$data"
    echo "$size users"

    # The base: master key, signing key and one user with a known password.
    printf '%s\n' "$PASSWORD" |
        "$BIN/latchkey" --data-dir "$base" users add --email "base@$DOMAIN" --password-stdin >>"$log" 2>&1 ||
        { tail -5 "$log" >&2; die "could not create the base user"; }
    "$BIN/latchkey" --data-dir "$base" export --output "$dir/base.json" >>"$log" 2>&1 ||
        { tail -5 "$log" >&2; die "export failed"; }

    printf '  seed     '
    t0=$(now)
    run "$PYTHON" bench/seed.py "$dir/base.json" "$dir/seeded.json" --users "$size" 2>>"$log"
    t1=$(now)
    seed_s=$(elapsed "$t0" "$t1")
    echo "${seed_s} s, $(mib "$(file_bytes "$dir/seeded.json")") MiB"

    # Import needs an empty database and the exported deployment's master
    # key, which lives in the data directory as master.key.
    install -m 600 "$base/master.key" "$data/master.key"
    printf '  import   '
    t0=$(now)
    run "$BIN/latchkey" --data-dir "$data" import --input "$dir/seeded.json" >>"$log" 2>&1 ||
        { tail -5 "$log" >&2; die "import of $size users failed (log: $log)"; }
    t1=$(now)
    import_s=$(elapsed "$t0" "$t1")
    echo "${import_s} s"
    local snapshot_bytes
    snapshot_bytes=$(file_bytes "$dir/seeded.json")
    rm -f "$dir/seeded.json" "$dir/base.json"
    # The last seeded user has exactly its one session.
    (("$("$BIN/latchkey" --data-dir "$data" sessions list --user "seed$size@$DOMAIN" | tail -n +2 | wc -l)" == 1)) ||
        die "seed$size@$DOMAIN does not have its session after the import"

    port_open "$SCALING_PORT" && die "port $SCALING_PORT is taken (--port)"
    "$BIN/latchkey" --data-dir "$data" serve --listen "127.0.0.1:$SCALING_PORT" \
        --ip-rate-limit 0 --token-rate-limit 0 --account-failure-limit 0 >>"$log" 2>&1 &
    SERVER_PID=$!
    wait_for_port "$SCALING_PORT" "$SERVER_PID" "$log" 60
    check_server "$size" 2>>"$log" || { tail -20 "$log" >&2; die "the server on $size users does not log a seeded user in"; }
    sleep 1
    idle_rss=$(rss_kib "$SERVER_PID")

    for scenario in "${scenario_list[@]}"; do
        local out=$RESULTS/size-$size-$scenario
        status=0
        printf '  %-8s ' "$scenario"
        run "$BIN/latchkey-bench" --url "http://127.0.0.1:$SCALING_PORT" --profile latchkey \
            --pid "$SERVER_PID" --scenario "$scenario" --concurrency "$CONCURRENCY" \
            --duration "$DURATION" --json "$out.json" >"$out.txt" 2>&1 || status=$?
        bench_outcome "$status" "$out.txt" || continue
        tsv_rows "$size" "$scenario" "$out.json" >>"$RESULTS/scaling.tsv"
    done

    stop "$SERVER_PID"
    SERVER_PID=
    # Fold the write-ahead log back into the file, so its size is the data's.
    "$PYTHON" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()' \
        "$data/latchkey.db" 2>>"$log" || echo "  (could not checkpoint the database; its size includes the WAL)"
    db_bytes=$(($(file_bytes "$data/latchkey.db") + $(file_bytes "$data/latchkey.db-wal")))
    printf '  database %s MiB\n' "$(mib "$db_bytes")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$((size + 1))" "$seed_s" "$import_s" \
        "$snapshot_bytes" "$db_bytes" "$idle_rss" >>"$RESULTS/sizes.tsv"
    cat >"$RESULTS/size-$size.json" <<EOF
{"seeded_users": $size, "users_after_import": $((size + 1)), "sessions_after_import": $size,
 "seed_s": $seed_s, "import_s": $import_s, "snapshot_bytes": $snapshot_bytes,
 "db_bytes": $db_bytes, "idle_rss_kib": ${idle_rss:-0},
 "scenarios": "$SCENARIOS", "concurrency": $CONCURRENCY, "duration": "$DURATION"}
EOF
    ((FAILED)) && cp "$log" "$RESULTS/latchkey-$size.log"
    rm -rf "$dir"
}

# --- the run ----------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON)"
if ((BUILD)); then
    command -v cargo >/dev/null || die "cargo not found (or pass --no-build)"
    echo "building latchkey and latchkey-bench (release)"
    cargo build --release --quiet -p latchkey -p latchkey-bench
fi
[[ -x $BIN/latchkey && -x $BIN/latchkey-bench ]] ||
    die "no latchkey and latchkey-bench in $BIN (set LATCHKEY_BIN_DIR, or drop --no-build)"

warn_if_compiling
mkdir -p "$RESULTS"
machine >"$RESULTS/machine.txt"
printf 'size\tscenario\trps\tp50_ms\tp99_ms\terrors\trss_kib\tpeak_kib\n' >"$RESULTS/scaling.tsv"
printf 'size\tusers\tseed_s\timport_s\tsnapshot_bytes\tdb_bytes\tidle_rss_kib\n' >"$RESULTS/sizes.tsv"

echo "sizes $SIZES; $SCENARIOS at concurrency $CONCURRENCY, $DURATION each"
FAILED=0
for size in "${size_list[@]}"; do
    run_size "$size"
done

echo
"$PYTHON" bench/plot_scaling.py "$RESULTS" | tee "$RESULTS/summary.md"
echo
echo "reports: $RESULTS/"
exit "$FAILED"
