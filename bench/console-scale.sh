#!/usr/bin/env bash
# bench/console-scale.sh — how long the console's pages take to render
# server-side over a ten-million-event store: the tasks list and the story
# page of a task with 10,000 statements. The store comes from audit-scale
# (with a task row for each generated task); a release gateway serves it;
# an auditor signs in with a dev token; each page is fetched RUNS times and
# the gateway's own request log gives the server-side time.
#
#   STORE=/tmp/scale.db EVENTS=10000000 RUNS=7 bash bench/console-scale.sh
# (an existing STORE is reused; without one a temporary one is built.)
source "$(dirname "$0")/lib.sh"
events=${EVENTS:-10000000}
runs=${RUNS:-7}
store=${STORE:-$work/scale.db}
cargo build --release -q -p taskgate -p taskgate-bench --manifest-path "$root/Cargo.toml"
if [ ! -f "$store" ]; then
  "$root/target/release/audit-scale" --events "$events" --store "$store" --task-rows
fi
token="bench-auditor-token-$(date +%s%N)"
echo "$token" > "$work/auditor.token"
cat > "$work/taskgate.toml" <<TOML
[server]
api_listen = "127.0.0.1:0"
postgres_listen = "127.0.0.1:0"

[store]
path = "$store"
durability = "normal"

[[identity.dev]]
subject = "bench-auditor"
kind = "human"
groups = ["security"]
token_file = "auditor.token"

[roles]
auditors = ["group:security"]
admins = ["subject:bench-admin"]
TOML
TASKGATE_LOG=info "$root/target/release/taskgate" serve --config "$work/taskgate.toml" \
  > "$work/taskgate.out" 2> "$work/taskgate.log" &
pids+=("$!")
for _ in $(seq 600); do [ "$(wc -l < "$work/taskgate.out")" -ge 2 ] && break; sleep 0.5; done
api=$(sed -n 's/^taskgate api listening on //p' "$work/taskgate.out")
curl -s -c "$work/jar" -o /dev/null -d "token=$token" "$api/ui/login/token"
# Let the indexer catch up with what the gateway appended at start.
curl -s -b "$work/jar" -o /dev/null "$api/ui/tasks/tsk_big"
sleep 2
for path in /ui/tasks /ui/tasks/tsk_big; do
  for _ in $(seq "$runs"); do
    curl -s -b "$work/jar" -o "$work/page.html" -w '%{http_code} %{size_download}\n' "$api$path" >> "$work/codes"
  done
  grep -F "path=$path status=200" "$work/taskgate.log" | tail -n "$runs" |
    sed -n 's/.*micros=\([0-9]*\).*/\1/p' | sort -n |
    awk -v p="$path" -v bytes="$(wc -c < "$work/page.html")" '{ t[NR] = $1 } END {
      printf "%-18s %d runs: min %.1f ms, median %.1f ms, max %.1f ms (%d bytes of HTML)\n",
        p, NR, t[1] / 1000, t[int((NR + 1) / 2)] / 1000, t[NR] / 1000, bytes }'
done
sort "$work/codes" | uniq -c | sed 's/^/  answers: /'
