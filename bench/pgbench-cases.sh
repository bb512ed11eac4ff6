#!/usr/bin/env bash
# pgbench-cases.sh PORT LABEL   (from ../../shared/bench/pgbench-matrix.sh, unchanged but for its name)
#
# Runs a fixed pgbench matrix against HOST:PORT and prints one compact row per
# case (TPS, average latency, failures, CPU use). Reusable against any
# PostgreSQL-wire endpoint: the database itself, a pooler, or an L7 gateway.
#
# Environment (all optional):
#   PGHOST      default 127.0.0.1
#   PGUSER      default bench          (a gateway may want e.g. "user#target")
#   PGDATABASE  default bench
#   PGPASSWORD  default benchpw
#   PGSSLMODE   default disable        (set "require" for TLS endpoints)
#   DURATION    seconds per case, default 20
#   CASES       space-separated subset of case names (default: all, see below)
#   INIT=1      run "pgbench -i -s 10" through this endpoint first
#   PROXY_PIDS  space-separated PIDs whose CPU use (utime+stime) is reported
#               as proxy_cpu% (100% = one full core)
#   TSV=1       print tab-separated rows only (no header/pretty table), for
#               aggregation by a driver script
#
# Cases (name -> pgbench flags):
#   S-simple-c1     -S -M simple   -c 1  -j 1
#   S-simple-c16    -S -M simple   -c 16 -j 2
#   S-extended-c1   -S -M extended -c 1  -j 1
#   S-extended-c16  -S -M extended -c 16 -j 2
#   S-prepared-c1   -S -M prepared -c 1  -j 1
#   S-prepared-c16  -S -M prepared -c 16 -j 2
#   tpcb-c8         (TPC-B-like)   -c 8  -j 2
#   S-connect-c1    -S -M simple -C -c 1 -j 1   (new connection per txn)
#   S-connect-c8    -S -M simple -C -c 8 -j 2
#
# Columns: label case tps lat_ms failed pgbench_cpu% proxy_cpu% sys_busy% conn_ms
#   sys_busy% is whole-machine busy time in % of ALL cores (2 cores => 100% = both
#   saturated); pgbench_cpu% and proxy_cpu% are in % of ONE core.
set -u
PORT=${1:?usage: pgbench-cases.sh PORT LABEL}
LABEL=${2:?usage: pgbench-cases.sh PORT LABEL}
export PGHOST=${PGHOST:-127.0.0.1}
export PGUSER=${PGUSER:-bench}
export PGDATABASE=${PGDATABASE:-bench}
export PGPASSWORD=${PGPASSWORD:-benchpw}
export PGSSLMODE=${PGSSLMODE:-disable}
export PGPORT=$PORT
DURATION=${DURATION:-20}
ALL_CASES="S-simple-c1 S-simple-c16 S-extended-c1 S-extended-c16 S-prepared-c1 S-prepared-c16 tpcb-c8 S-connect-c1 S-connect-c8"
CASES=${CASES:-$ALL_CASES}
CLK_TCK=$(getconf CLK_TCK)

flags_for() {
  case "$1" in
    S-simple-c1)    echo "-S -M simple -c 1 -j 1" ;;
    S-simple-c16)   echo "-S -M simple -c 16 -j 2" ;;
    S-extended-c1)  echo "-S -M extended -c 1 -j 1" ;;
    S-extended-c16) echo "-S -M extended -c 16 -j 2" ;;
    S-prepared-c1)  echo "-S -M prepared -c 1 -j 1" ;;
    S-prepared-c16) echo "-S -M prepared -c 16 -j 2" ;;
    tpcb-c8)        echo "-c 8 -j 2" ;;
    S-connect-c1)   echo "-S -M simple -C -c 1 -j 1" ;;
    S-connect-c8)   echo "-S -M simple -C -c 8 -j 2" ;;
    *) return 1 ;;
  esac
}

# sum of utime+stime (clock ticks) over the given PIDs; 0 if none
proc_ticks() {
  local t=0 pid f
  for pid in $PROXY_PIDS_LIST; do
    if [ -r /proc/$pid/stat ]; then
      # fields 14,15 after the ")" of comm
      f=$(sed 's/^.*) //' /proc/$pid/stat | awk '{print $12+$13}')
      t=$((t + f))
    fi
  done
  echo $t
}
# "busy total" jiffies from /proc/stat
sys_ticks() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; t=b+$5+$6; print b, t}' /proc/stat; }

PROXY_PIDS_LIST=${PROXY_PIDS:-}

if ! psql -qAtc 'select 1' >/dev/null 2>&1; then
  echo "cannot connect to $PGHOST:$PORT as $PGUSER/$PGDATABASE (sslmode=$PGSSLMODE)" >&2
  psql -qAtc 'select 1' >&2
  exit 1
fi
if [ "${INIT:-0}" = 1 ]; then
  pgbench -i -q -s 10 >/dev/null 2>&1 || { echo "pgbench -i failed" >&2; exit 1; }
fi

if [ "${TSV:-0}" != 1 ]; then
  echo "# $(pgbench --version)  host=$PGHOST port=$PORT user=$PGUSER sslmode=$PGSSLMODE duration=${DURATION}s nproc=$(nproc)"
  printf '%-14s %-15s %10s %9s %7s %8s %8s %8s %8s\n' label case tps lat_ms failed pgb_cpu% prx_cpu% sys_bsy% conn_ms
fi

for c in $CASES; do
  fl=$(flags_for "$c") || { echo "unknown case $c" >&2; continue; }
  out=$(mktemp)
  read -r sb0 st0 < <(sys_ticks)
  p0=$(proc_ticks)
  TIMEFORMAT='%U %S'
  # -n: no vacuum (works through poolers); -P 0: no progress lines
  { time pgbench -n -T "$DURATION" $fl >"$out" 2>&1 ; } 2>"$out.time"
  rc=$?
  read -r sb1 st1 < <(sys_ticks)
  p1=$(proc_ticks)
  tps=$(awk -F'= ' '/^tps = /{split($2,a," "); printf "%.1f", a[1]; exit}' "$out")
  lat=$(awk -F'= ' '/^latency average = /{split($2,a," "); print a[1]; exit}' "$out")
  conn=$(awk -F'= ' '/^average connection time = /{split($2,a," "); print a[1]; exit}' "$out")
  failed=$(awk -F': ' '/^number of failed transactions/{split($2,a," "); print a[1]; exit}' "$out")
  aborted=$(grep -c -i 'aborted\|error' "$out")
  [ -z "$failed" ] && failed=NA
  [ "$rc" != 0 ] && failed="${failed}!rc$rc"
  [ "$aborted" != 0 ] && [ "$rc" != 0 ] && failed="${failed}/err"
  read -r u s < <(tail -1 "$out.time")
  pgb_cpu=$(awk -v u="$u" -v s="$s" -v d="$DURATION" 'BEGIN{printf "%.0f", 100*(u+s)/d}')
  prx_cpu=$(awk -v a="$p0" -v b="$p1" -v hz="$CLK_TCK" -v d="$DURATION" 'BEGIN{ if (b-a>0) printf "%.0f", 100*(b-a)/hz/d; else print "-"}')
  sys_busy=$(awk -v a="$sb0" -v b="$sb1" -v x="$st0" -v y="$st1" 'BEGIN{ if (y>x) printf "%.0f", 100*(b-a)/(y-x); else print "-"}')
  if [ "${TSV:-0}" = 1 ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$LABEL" "$c" "${tps:-NA}" "${lat:-NA}" "$failed" "$pgb_cpu" "$prx_cpu" "$sys_busy" "${conn:--}"
  else
    printf '%-14s %-15s %10s %9s %7s %8s %8s %8s %8s\n' "$LABEL" "$c" "${tps:-NA}" "${lat:-NA}" "$failed" "$pgb_cpu" "$prx_cpu" "$sys_busy" "${conn:--}"
  fi
  if [ "$rc" != 0 ] && [ -n "${VERBOSE_ERRORS:-1}" ]; then
    grep -i -m3 'error\|abort\|fatal' "$out" | sed "s/^/#   $LABEL $c: /" >&2
  fi
  rm -f "$out" "$out.time"
done
