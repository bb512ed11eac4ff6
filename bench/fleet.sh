#!/usr/bin/env bash
# bench/fleet.sh — a fleet of two gateways against one, on the same shared
# PostgreSQL store and target, in one run: pgbench with CLIENTS clients
# through one node, then the same clients split over two nodes at once
# (their TPS summed), and directly for the ratio. Every statement is
# recorded in the shared store before it is forwarded, either way.
#
#   bash bench/fleet.sh                      # 20 s per case
#   DURATION=10 CLIENTS=16 bash bench/fleet.sh
#
# The store is database taskgate_store in the target's throwaway cluster,
# so the target, the store, both gateways and pgbench share the machine.
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-16}
start_cluster 10 "-c max_connections=300 -c shared_buffers=256MB"
shared_store
start_taskgate write "max_connections_per_task = 200
node = \"gw-a\"" "$shared_store_lines"
start_node gw-b

# bench PORT CLIENTS USER PASSWORD MODE: pgbench's TPS.
bench() {
  PGPASSWORD=$4 PGSSLMODE=disable pgbench -h 127.0.0.1 -p "$1" -U "$3" -n -S -M "$5" \
    -c "$2" -j 2 -T "$DURATION" bench 2>/dev/null |
    sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

echo "# $(date -u +%FT%TZ) scale=10 duration=${DURATION}s clients=$CLIENTS $(nproc) cores" >&2
printf '| mode | direct TPS | one node | two nodes (sum) | two/one | one/direct | two/direct |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
half=$((CLIENTS / 2))
for mode in simple prepared; do
  direct=$(bench "$pg_port" "$CLIENTS" bench benchpw "$mode")
  one=$(bench "$gw_port" "$CLIENTS" "$task_id" "$token" "$mode")
  bench "$gw_port" "$half" "$task_id" "$token" "$mode" > "$work/a.tps" &
  a=$!
  bench "$node_port" "$half" "$task_id" "$token" "$mode" > "$work/b.tps"
  wait "$a"
  two=$(python3 -c "print(float(open('$work/a.tps').read() or 0) + float(open('$work/b.tps').read() or 0))")
  python3 -c "
d, o, t = $direct, $one, $two
print(f'| S-$mode-c$CLIENTS | {d:,.0f} | {o:,.0f} | {t:,.0f} | {t/o:.2f} | {o/d:.2f} | {t/d:.2f} |')"
done
echo "# events recorded in the shared store: $(recorded_events)" >&2
