#!/usr/bin/env bash
# Runs every fuzz target for a fixed budget and prints what each did:
#   bash bench/fuzz.sh [SECONDS]     (default 60 per target)
# Targets: the wire decoders (startup, frontend, backend messages, SCRAM)
# and the config parser. A crash leaves its input under the crate's
# fuzz/artifacts/ and makes this script exit 1; turn it into a regression
# test before fixing it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz needs nightly features; the stable toolchain allows them here.
export RUSTC_BOOTSTRAP=1
failed=0
run() {
  local dir=$1 target=$2
  local log
  log=$(mktemp)
  if (cd "$dir" && cargo fuzz run -O "$target" -- -max_total_time="$seconds" -print_final_stats=1) >"$log" 2>&1; then
    runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
    echo "$target: $runs executions in ${seconds}s, no crash"
  else
    echo "$target: CRASH (see $dir/artifacts/$target and $log)"
    failed=1
  fi
}
for target in startup frontend backend scram; do
  run crates/wire-pg/fuzz "$target"
done
run crates/policy/fuzz config
exit $failed
