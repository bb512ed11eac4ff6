#!/usr/bin/env bash
# pg_dump of a whole database with a bulk table of MB megabytes, directly
# and through a read grant of the gateway, plain and custom format, and the
# custom dump restored into a fresh database; the test compares all of
# them and prints the plain dump's times (direct vs through the gateway).
#   bash bench/pg-dump.sh [MB]   (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-100}
TASKGATE_DUMP_MB=$mb cargo test -q --release -p taskgate --test clients \
  a_whole_database_dumps_through_a_read_grant_as_it_does_directly -- --nocapture 2>&1 |
  grep -E '^pg_dump of|test result|panicked'
