# bench/lib.sh — sourced by the bench scripts: a work directory cleaned up on
# exit, a throwaway PostgreSQL cluster, and the release taskgate in front of
# it with one agent task. Sets: work, root, bindir, pg_port, api, gw_port,
# gateway_pid, task_id, token; appends background pids to `pids`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bindir=${TASKGATE_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
work=$(mktemp -d /tmp/tg-bench.XXXXXX)
chmod 755 "$work"
pids=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$bindir/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres "$work"

# start_cluster SCALE "POSTGRES OPTIONS": database `bench` owned by role
# `bench` (password benchpw), initialised by pgbench at SCALE.
start_cluster() {
  pg_port=$(free_port)
  as_pg "$bindir/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  { echo "local all all trust"; echo "host all all 127.0.0.1/32 scram-sha-256"; } |
    as_pg tee "$work/data/pg_hba.conf" >/dev/null
  as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/pg.log" -w \
    -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 $2" start >/dev/null
  psql -X -q -h "$work" -p "$pg_port" -U postgres -d postgres \
    -c "CREATE ROLE bench LOGIN PASSWORD 'benchpw'" -c "CREATE DATABASE bench OWNER bench"
  PGPASSWORD=benchpw pgbench -i -q -s "$1" -h 127.0.0.1 -p "$pg_port" -U bench bench >/dev/null 2>&1
}

# start_taskgate ACCESS "[server] LINES" "[store] LINES": the release gateway
# with connection `bench` and an agent task of ACCESS on it.
start_taskgate() {
  local access=$1
  cargo build --release -q -p taskgate --manifest-path "$root/Cargo.toml"
  echo "bench-agent-token-$(date +%s%N)" > "$work/agent.token"
  cat > "$work/taskgate.toml" <<TOML
[server]
api_listen = "127.0.0.1:0"
postgres_listen = "127.0.0.1:0"
$2

[store]
path = "taskgate.db"
$3

[[identity.dev]]
subject = "bench-agent"
kind = "agent"
token_file = "agent.token"

# Someone must be able to revoke the tasks the policy grants at once.
[roles]
admins = ["subject:bench-admin"]

[[connections]]
name = "bench"
kind = "postgres"
address = "127.0.0.1:$pg_port"
database = "bench"
$access = { user = "bench", password_env = "BENCH_DB_PASSWORD" }

[[policies]]
who = ["kind:agent"]
connections = ["bench"]
access = ["$access"]
max_window = "24h"
TOML
  BENCH_DB_PASSWORD=benchpw TASKGATE_LOG=warn "$root/target/release/taskgate" serve --config "$work/taskgate.toml" \
    > "$work/taskgate.out" 2> "$work/taskgate.log" &
  gateway_pid=$!
  pids+=("$gateway_pid")
  for _ in $(seq 100); do [ "$(wc -l < "$work/taskgate.out")" -ge 2 ] && break; sleep 0.1; done
  api=$(sed -n 's/^taskgate api listening on //p' "$work/taskgate.out")
  gw_port=$(sed -n 's/^taskgate postgres listening on .*://p' "$work/taskgate.out")
  local task
  task=$(curl -s -H "Authorization: Bearer $(cat "$work/agent.token")" -H 'content-type: application/json' \
    -d "{\"name\":\"bench\",\"connection\":\"bench\",\"access\":\"$access\",\"window\":\"12h\",\"reason\":\"benchmark\"}" "$api/v1/tasks")
  task_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$task")
  token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$task")
}
