#!/usr/bin/env bash
# bench/sessions.sh — many sessions at once: 1,000 concurrent client
# sessions held through the gateway doing light queries (select-only at a
# fixed total rate), against the same run made directly; the gateway's
# memory per session, p50/p99 latency under that load, and connection setup
# time (pgbench -C) through the gateway and directly.
#
#   bash bench/sessions.sh                       # 1,000 sessions, 20 s
#   SESSIONS=500 DURATION=10 RATE=1000 bash bench/sessions.sh
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
SESSIONS=${SESSIONS:-1000}
DURATION=${DURATION:-20}
RATE=${RATE:-2000}        # transactions per second, all sessions together
ulimit -n 16384

start_cluster 10 "-c max_connections=$((SESSIONS + 100)) -c shared_buffers=256MB -c fsync=off"
start_taskgate read "max_connections = $((SESSIONS + 100))
max_connections_per_task = $((SESSIONS + 100))" ""

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
