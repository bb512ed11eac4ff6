#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis
# (installed from PyPI if missing): every operation, with generated valid and
# invalid input, as an agent and as an auditor. Fails on any 5xx answer.
#   bash bench/api-fuzz.sh [MAX_EXAMPLES]      (default 100 per operation)
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-100}
python3 -c 'import schemathesis' 2>/dev/null ||
  python3 -m pip install -q --root-user-action=ignore schemathesis
cargo build -q --release -p taskgate
work=$(mktemp -d)
trap 'kill $gateway 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r examples/dev-tokens "$work/"
sed -e 's|^api_listen = .*|api_listen = "127.0.0.1:0"|' \
    -e 's|^postgres_listen = .*|postgres_listen = "127.0.0.1:0"|' \
    examples/taskgate.toml >"$work/taskgate.toml"
./target/release/taskgate serve --config "$work/taskgate.toml" >"$work/out" 2>"$work/log" &
gateway=$!
for _ in $(seq 100); do
  grep -q "api listening" "$work/out" 2>/dev/null && break
  sleep 0.1
done
api=$(grep -o 'http://[0-9.:]*' "$work/out" | head -1)
status=0
for who in copilot sam; do
  token=$(cat "$work/dev-tokens/$who")
  echo "== as $who"
  python3 -m schemathesis.cli run "$api/v1/openapi.json" \
    --checks not_a_server_error --max-examples "$examples" \
    --header "Authorization: Bearer $token" --max-time 120 || status=1
done
kill -0 $gateway 2>/dev/null || { echo "the gateway died"; status=1; }
exit $status
