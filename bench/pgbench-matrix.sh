#!/usr/bin/env bash
# bench/pgbench-matrix.sh — the standard pgbench matrix, in one run, against
# the same throwaway PostgreSQL cluster four ways: directly, through
# pgbouncer (session pooling, records nothing), through a bare tokio relay
# that only copies bytes (`relay-floor`: the floor under any proxy here),
# and through taskgate (full recording: every statement's command.started
# committed to the audit log before it is forwarded, plus its
# command.completed).
#
#   bash bench/pgbench-matrix.sh                 # all cases, 20 s each
#   DURATION=10 CASES="S-simple-c16 tpcb-c8" bash bench/pgbench-matrix.sh
#   DURABILITY=normal bash bench/pgbench-matrix.sh   # the store's faster mode
#   STORE=postgres bash bench/pgbench-matrix.sh      # a fleet node's store: PostgreSQL
#     (database taskgate_store in the same throwaway cluster as the target)
#
# Needs PostgreSQL's server binaries, pgbench, psql and pgbouncer (apt-get
# install postgresql pgbouncer). Prints each endpoint's rows and a ratio table.
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
export DURATION=${DURATION:-20}
DURABILITY=${DURABILITY:-full}
STORE=${STORE:-sqlite}
SCALE=${SCALE:-10}
command -v pgbouncer >/dev/null || { echo "pgbouncer is missing: apt-get install pgbouncer" >&2; exit 1; }

start_cluster "$SCALE" "-c max_connections=200 -c shared_buffers=256MB"
bouncer_port=$(free_port)

# pgbouncer in session mode, so every pgbench mode works through it.
cat > "$work/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 40
unix_socket_dir =
logfile = $work/pgbouncer.log
INI
echo '"bench" "benchpw"' > "$work/userlist.txt"
[ "$(id -u)" = 0 ] && chown postgres "$work/pgbouncer.ini" "$work/userlist.txt"
as_pg pgbouncer "$work/pgbouncer.ini" >/dev/null 2>&1 &
pids+=($!)
# Its own pid, not the `runuser` wrapper's, for the CPU column.
bouncer_pid=
for _ in $(seq 50); do
  bouncer_pid=$(pgrep -n -f "^pgbouncer $work/pgbouncer.ini" || true)
  [ -n "$bouncer_pid" ] && break
  sleep 0.1
done
pids+=("$bouncer_pid")

# The floor: a relay that copies bytes and does nothing else.
cargo build --release -q -p taskgate-bench --bin relay-floor --manifest-path "$root/Cargo.toml"
relay_port=$(free_port)
"$root/target/release/relay-floor" "127.0.0.1:$relay_port" "127.0.0.1:$pg_port" > "$work/relay.out" 2>&1 &
relay_pid=$!
pids+=("$relay_pid")

# taskgate with one connection and an agent allowed to write without approval.
case "$STORE" in
  sqlite) store_lines="durability = \"$DURABILITY\"" ;;
  postgres) shared_store; store_lines=$shared_store_lines ;;
  *) echo "STORE is sqlite or postgres" >&2; exit 1 ;;
esac
start_taskgate write "max_connections_per_task = 100" "$store_lines"

echo "# $(date -u +%FT%TZ) scale=$SCALE duration=${DURATION}s store=$STORE durability=$DURABILITY $(nproc) cores" >&2
rows="$work/rows.tsv"
TSV=1 PGUSER=bench PGPASSWORD=benchpw PGDATABASE=bench bash "$here/pgbench-cases.sh" "$pg_port" direct | tee -a "$rows"
TSV=1 PGUSER=bench PGPASSWORD=benchpw PGDATABASE=bench PROXY_PIDS="$bouncer_pid" bash "$here/pgbench-cases.sh" "$bouncer_port" pgbouncer | tee -a "$rows"
TSV=1 PGUSER=bench PGPASSWORD=benchpw PGDATABASE=bench PROXY_PIDS="$relay_pid" bash "$here/pgbench-cases.sh" "$relay_port" relay | tee -a "$rows"
TSV=1 PGUSER="$task_id" PGPASSWORD="$token" PGDATABASE=bench PROXY_PIDS="$gateway_pid" bash "$here/pgbench-cases.sh" "$gw_port" taskgate | tee -a "$rows"

events=$(recorded_events)
echo
echo "# ratios to direct TPS (audit events recorded by taskgate: $events)"
python3 - "$rows" <<'PY'
import sys, collections
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    label, case, tps, lat, failed, pgb, prx, busy, conn = line.rstrip("\n").split("\t")
    rows[case][label] = (tps, lat, prx, failed)
print(f"{'case':15} {'direct tps':>11} {'pgbouncer':>10} {'relay':>8} {'taskgate':>10} {'pgb/direct':>10} {'relay/dir':>9} {'tg/direct':>10} {'tg/pgb':>8} {'tg +lat ms':>10} {'pgb cpu%':>8} {'relay cpu%':>10} {'tg cpu%':>8}")
for case, by in rows.items():
    def f(label, i=0):
        try: return float(by[label][i])
        except (KeyError, ValueError): return float("nan")
    d, b, r, t = f("direct"), f("pgbouncer"), f("relay"), f("taskgate")
    cpu = lambda label: by.get(label, ('', '', '-'))[2]
    print(f"{case:15} {d:11.0f} {b:10.0f} {r:8.0f} {t:10.0f} {b/d:10.2f} {r/d:9.2f} {t/d:10.2f} {t/b:8.2f} {f('taskgate',1)-f('direct',1):10.3f} {cpu('pgbouncer'):>8} {cpu('relay'):>10} {cpu('taskgate'):>8}")
PY
