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

# serve DIR: the release gateway on DIR/taskgate.toml, once it listens. Sets
# served_pid, served_api and served_port.
serve() {
  BENCH_DB_PASSWORD=benchpw TASKGATE_LOG=warn "$root/target/release/taskgate" serve --config "$1/taskgate.toml" \
    > "$1/taskgate.out" 2> "$1/taskgate.log" &
  served_pid=$!
  pids+=("$served_pid")
  for _ in $(seq 100); do [ "$(wc -l < "$1/taskgate.out")" -ge 2 ] && break; sleep 0.1; done
  served_api=$(sed -n 's/^taskgate api listening on //p' "$1/taskgate.out")
  served_port=$(sed -n 's/^taskgate postgres listening on .*://p' "$1/taskgate.out")
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
  serve "$work"
  gateway_pid=$served_pid
  api=$served_api
  gw_port=$served_port
  local task
  task=$(curl -s -H "Authorization: Bearer $(cat "$work/agent.token")" -H 'content-type: application/json' \
    -d "{\"name\":\"bench\",\"connection\":\"bench\",\"access\":\"$access\",\"window\":\"12h\",\"reason\":\"benchmark\"}" "$api/v1/tasks")
  task_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$task")
  token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$task")
}

# shared_store: database `taskgate_store` (owner bench) in the cluster, for a
# fleet node's PostgreSQL store; sets shared_store_lines for [store].
shared_store() {
  psql -X -q -h "$work" -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE taskgate_store OWNER bench"
  shared_store_lines="url = \"postgres://bench@127.0.0.1:$pg_port/taskgate_store\"
password_env = \"BENCH_DB_PASSWORD\""
}

# recorded_events: how many events the gateway's store holds (either kind).
recorded_events() {
  if [ -n "${shared_store_lines:-}" ]; then
    psql -X -q -At -h "$work" -p "$pg_port" -U postgres -d taskgate_store -c 'select count(*) from taskgate.events'
  else
    sqlite3 "$work/taskgate.db" 'select count(*) from events' 2>/dev/null || echo "?"
  fi
}

# start_node NAME: another fleet node on the same shared store as the one
# start_taskgate started (its config, its signing key, its agent token),
# named NAME, in $work/NAME. Sets node_pid and node_port.
start_node() {
  local dir="$work/$1"
  mkdir -p "$dir"
  sed "s/^node = .*/node = \"$1\"/" "$work/taskgate.toml" > "$dir/taskgate.toml"
  printf '\n[audit]\nsigning_key = "%s"\n' "$work/taskgate-audit.key" >> "$dir/taskgate.toml"
  cp "$work/agent.token" "$dir/agent.token"
  serve "$dir"
  node_pid=$served_pid
  node_port=$served_port
}
