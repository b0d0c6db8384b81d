#!/usr/bin/env bash
# Several Latchkey instances on one PostgreSQL database, each driven by its
# own latchkey-bench at the same time: prints each instance's req/s and their
# sum per scenario. On one machine the instances, the drivers and PostgreSQL
# share the same cores, so the sum shows what running several instances
# costs, not how they scale on separate hosts. See docs/benchmarks.md.
set -euo pipefail

usage() {
    cat <<USAGE
usage: bench/instances.sh [options]

  --instances N        Latchkey instances on the one database [2]
  --concurrency N      virtual users per instance [8]
  --duration D         measured time per scenario [10s]
  --scenarios LIST     comma-separated: refresh,me,verify [refresh,me,verify]
  --first-port P       instance i listens on P + i [18100]

PGHOST/PGPORT/PGUSER (default 127.0.0.1, 5432, postgres) name the server; a
database is made for the run and dropped after.
USAGE
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTANCES=2 CONCURRENCY=8 DURATION=10s SCENARIOS=refresh,me,verify FIRST_PORT=18100
while (($#)); do
    case $1 in
        --instances) INSTANCES=${2:?}; shift ;;
        --concurrency) CONCURRENCY=${2:?}; shift ;;
        --duration) DURATION=${2:?}; shift ;;
        --scenarios) SCENARIOS=${2:?}; shift ;;
        --first-port) FIRST_PORT=${2:?}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
command -v psql >/dev/null || die "psql not found (PostgreSQL client)"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-instances.XXXXXX")
DB="latchkey_instances_$(date +%s)_$$"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop "$pid"; done
    psql -q -d postgres -c "DROP DATABASE IF EXISTS $DB" || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo build --release --quiet -p latchkey -p latchkey-bench
warn_if_compiling
psql -q -d postgres -c "CREATE DATABASE $DB" >/dev/null
export LATCHKEY_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"

# Every instance shares the master key (one data directory's key file),
# as instances of one deployment must.
creds=$(target/release/latchkey --data-dir "$SCRATCH/shared" clients add bench 2>"$SCRATCH/clients.log")
export LATCHKEY_BENCH_CLIENT_ID LATCHKEY_BENCH_CLIENT_SECRET
LATCHKEY_BENCH_CLIENT_ID=$(awk '/^client_id:/ { print $2 }' <<<"$creds")
LATCHKEY_BENCH_CLIENT_SECRET=$(awk '/^client_secret:/ { print $2 }' <<<"$creds")
for ((i = 0; i < INSTANCES; i++)); do
    port=$((FIRST_PORT + i))
    port_open "$port" && die "port $port is taken (--first-port)"
    target/release/latchkey --data-dir "$SCRATCH/shared" serve --listen "127.0.0.1:$port" \
        --ip-rate-limit 0 --token-rate-limit 0 --account-failure-limit 0 \
        >"$SCRATCH/latchkey-$i.log" 2>&1 &
    PIDS+=($!)
    wait_for_port "$port" "$!" "$SCRATCH/latchkey-$i.log"
done

echo "$INSTANCES instances on one PostgreSQL database, $CONCURRENCY connections each, $DURATION"
IFS=, read -ra scenario_list <<<"$SCENARIOS"
for scenario in "${scenario_list[@]}"; do
    drivers=()
    for ((i = 0; i < INSTANCES; i++)); do
        target/release/latchkey-bench --url "http://127.0.0.1:$((FIRST_PORT + i))" \
            --scenario "$scenario" --concurrency "$CONCURRENCY" --duration "$DURATION" \
            --json "$SCRATCH/$scenario-$i.json" >"$SCRATCH/$scenario-$i.txt" 2>&1 &
        drivers+=($!)
    done
    for pid in "${drivers[@]}"; do wait "$pid" || die "a driver failed: $(cat "$SCRATCH/$scenario"-*.txt)"; done
    python3 - "$scenario" "$SCRATCH/$scenario"-*.json <<'PY'
import json, sys
rates = [json.load(open(f))["scenarios"][0]["total"]["rps"] for f in sys.argv[2:]]
each = ", ".join(f"{r:,.0f}" for r in rates)
print(f"  {sys.argv[1]:<8} {sum(rates):>10,.0f} req/s in all ({each})")
PY
done
