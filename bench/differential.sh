#!/usr/bin/env bash
# The differential adversarial suite (crates/taskgate/tests/differential.rs)
# run longer than CI runs it: several seeds, each a fresh cluster and
# gateway, SEQUENCES pipelined sequences per seed, and as many token-soup
# statements (100,000 over the default five seeds).
#   bash bench/differential.sh [SEQUENCES] [FIRST_SEED] [SEEDS]
#   (defaults: 20000 sequences, seeds 100..104)
# Prints each seed's summary line; a failing seed stops the run and its
# every sequence and answer are in /tmp/differential-SEED.trace.
set -euo pipefail
cd "$(dirname "$0")/.."
sequences=${1:-20000}
first=${2:-100}
seeds=${3:-5}
total=0
for seed in $(seq "$first" $((first + seeds - 1))); do
  log=$(mktemp)
  if TASKGATE_DIFF_SEQUENCES=$sequences TASKGATE_DIFF_SEED=$seed \
    TASKGATE_SOUP_CASES=$sequences TASKGATE_SOUP_SEED=$seed \
    TASKGATE_DIFF_TRACE=/tmp/differential-$seed.trace \
    cargo test -q --release -p taskgate --test differential -- --nocapture >"$log" 2>&1; then
    grep -E '^(differential|token soups):' "$log"
    total=$((total + sequences))
    rm -f "/tmp/differential-$seed.trace"
  else
    grep -A40 'panicked' "$log" | head -60
    echo "seed $seed FAILED: trace in /tmp/differential-$seed.trace, log in $log"
    exit 1
  fi
  rm -f "$log"
done
echo "differential: $total sequences and $total token soups over $seeds seeds, every statement the database ran recorded first"
