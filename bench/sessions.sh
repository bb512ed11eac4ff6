#!/usr/bin/env bash
# bench/sessions.sh — many sessions at once: 1,000 concurrent client
# sessions held through the gateway doing light queries (select-only at a
# fixed total rate), against the same run made directly; the gateway's
# memory per session, p50/p99 latency under that load, and connection setup
# time (pgbench -C) through the gateway and directly.
#
#   bash bench/sessions.sh                       # 1,000 sessions, 20 s
#   SESSIONS=500 DURATION=10 RATE=1000 bash bench/sessions.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
SESSIONS=${SESSIONS:-1000}
DURATION=${DURATION:-20}
RATE=${RATE:-2000}        # transactions per second, all sessions together
bindir=${TASKGATE_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
ulimit -n 16384

work=$(mktemp -d /tmp/tg-sessions.XXXXXX)
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$bindir/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres "$work"

cargo build --release -q -p taskgate --manifest-path "$root/Cargo.toml"
pg_port=$(free_port)
as_pg "$bindir/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
{ echo "local all all trust"; echo "host all all 127.0.0.1/32 scram-sha-256"; } | as_pg tee "$work/data/pg_hba.conf" >/dev/null
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/pg.log" -w \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c max_connections=$((SESSIONS + 100)) -c shared_buffers=256MB -c fsync=off" start >/dev/null
psql -X -q -h "$work" -p "$pg_port" -U postgres -d postgres \
  -c "CREATE ROLE bench LOGIN PASSWORD 'benchpw'" -c "CREATE DATABASE bench OWNER bench"
PGPASSWORD=benchpw pgbench -i -q -s 10 -h 127.0.0.1 -p "$pg_port" -U bench bench >/dev/null 2>&1

echo "bench-agent-token-$(date +%s%N)" > "$work/agent.token"
cat > "$work/taskgate.toml" <<TOML
[server]
api_listen = "127.0.0.1:0"
postgres_listen = "127.0.0.1:0"
max_connections = $((SESSIONS + 100))
max_connections_per_task = $((SESSIONS + 100))

[store]
path = "taskgate.db"

[[identity.dev]]
subject = "bench-agent"
kind = "agent"
token_file = "agent.token"

[[connections]]
name = "bench"
kind = "postgres"
address = "127.0.0.1:$pg_port"
database = "bench"
read = { user = "bench", password_env = "BENCH_DB_PASSWORD" }

[[policies]]
who = ["kind:agent"]
connections = ["bench"]
access = ["read"]
max_window = "24h"
TOML
BENCH_DB_PASSWORD=benchpw TASKGATE_LOG=warn "$root/target/release/taskgate" serve --config "$work/taskgate.toml" > "$work/taskgate.out" 2> "$work/taskgate.log" &
pids+=($!)
gateway_pid=$!
for _ in $(seq 100); do [ "$(wc -l < "$work/taskgate.out")" -ge 2 ] && break; sleep 0.1; done
api=$(sed -n 's/^taskgate api listening on //p' "$work/taskgate.out")
gw_port=$(sed -n 's/^taskgate postgres listening on .*://p' "$work/taskgate.out")
task=$(curl -s -H "Authorization: Bearer $(cat "$work/agent.token")" -H 'content-type: application/json' \
  -d '{"name":"sessions","connection":"bench","access":"read","window":"12h"}' "$api/v1/tasks")
task_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$task")
token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$task")

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Runs SESSIONS sessions at RATE tx/s in total; prints "p50 p99 failed".
held() {
  local port=$1 user=$2 password=$3 label=$4
  mkdir -p "$work/$label"
  (cd "$work/$label" && PGPASSWORD=$password pgbench -n -S -c "$SESSIONS" -j 2 -R "$RATE" -T "$DURATION" \
      -l -h 127.0.0.1 -p "$port" -U "$user" bench > out.txt 2> err.txt) || true
  python3 - "$work/$label" <<'PY'
import glob, sys
lat = []
for f in glob.glob(sys.argv[1] + "/pgbench_log.*"):
    for line in open(f):
        parts = line.split()
        if len(parts) > 2 and parts[2].isdigit():
            lat.append(int(parts[2]) / 1000)
lat.sort()
failed = open(sys.argv[1] + "/out.txt").read().count("failed")
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
print(f"{pick(0.5):.3f} {pick(0.99):.3f} {len(lat)}")
PY
}

before=$(rss_kib "$gateway_pid")
held "$gw_port" "$task_id" "$token" gateway > "$work/gw.txt" &
runner=$!
peak=$before
while kill -0 $runner 2>/dev/null; do
  now=$(rss_kib "$gateway_pid"); [ "$now" -gt "$peak" ] && peak=$now; sleep 0.5
done
read -r gw_p50 gw_p99 gw_n < "$work/gw.txt"
read -r d_p50 d_p99 d_n < <(held "$pg_port" bench benchpw direct)

connect_ms() {
  PGPASSWORD=$3 pgbench -n -S -C -c 1 -T 10 -h 127.0.0.1 -p "$1" -U "$2" bench 2>/dev/null |
    sed -n 's/^average connection time = \([0-9.]*\) ms/\1/p'
}
gw_conn=$(connect_ms "$gw_port" "$task_id" "$token")
d_conn=$(connect_ms "$pg_port" bench benchpw)

echo "# $(date -u +%FT%TZ) $SESSIONS sessions, $RATE tx/s in total, ${DURATION}s, $(nproc) cores"
echo "| measure | direct | through taskgate |"
echo "|---|---:|---:|"
echo "| transactions | $d_n | $gw_n |"
echo "| p50 latency ms | $d_p50 | $gw_p50 |"
echo "| p99 latency ms | $d_p99 | $gw_p99 |"
echo "| gateway memory | | $((before / 1024)) MiB idle, $((peak / 1024)) MiB peak: $(( (peak - before) / SESSIONS )) KiB per session |"
echo "| connection setup (pgbench -C), ms | $d_conn | $gw_conn |"
