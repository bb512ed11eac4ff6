#!/usr/bin/env bash
# bench/mcp-memory.sh — how much memory the gateway uses while an MCP
# `query` meets a result far larger than its caps. A real gateway (release)
# and cluster; the official MCP SDK (crates/taskgate/tests/mcp, `npm ci`
# there first) calls `query` over HTTP. Three cases, each 1 GB if it were
# all produced: 10,000 rows of 100 kB cut by the byte cap (every row comes
# through the relay and is dropped), the same cut by max_rows = 1 (the
# database stops at 2), and a COPY of 1 GB (the row limit does not apply).
# Prints the gateway's resident memory before, its peak, and the time.
source "$(dirname "$0")/lib.sh"
start_cluster 1 ""
start_taskgate read "" ""
sdk="$root/crates/taskgate/tests/mcp"
[ -d "$sdk/node_modules/@modelcontextprotocol/sdk" ] || (cd "$sdk" && npm ci --silent --no-audit --no-fund)
rss() { awk '/^VmRSS/ {print $2}' "/proc/$gateway_pid/status"; }
peak() { awk '/^VmHWM/ {print $2}' "/proc/$gateway_pid/status"; }
cat > "$sdk/.bench-query.mjs" <<'JS'
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
const [url, token, task, sql, maxRows] = process.argv.slice(2);
const client = new Client({ name: "bench", version: "1" });
await client.connect(new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
const started = Date.now();
const r = await client.callTool({ name: "query", arguments: { task_id: task, sql, max_rows: Number(maxRows) } },
  undefined, { timeout: 600000 });
const a = r.structuredContent;
console.log(JSON.stringify({ ms: Date.now() - started, status: a.status, rows: a.result?.rows.length,
  truncated: a.result?.truncated, error: a.error }));
await client.close();
JS
trap 'rm -f "$sdk/.bench-query.mjs"; cleanup' EXIT
run() {
  local name=$1 sql=$2 max=$3
  local before; before=$(rss)
  local answer; answer=$(cd "$sdk" && node .bench-query.mjs "$api/mcp" "$(cat "$work/agent.token")" "$task_id" "$sql" "$max")
  printf '%-14s rss before %6d KiB  peak %6d KiB  after %6d KiB  %s\n' "$name" "$before" "$(peak)" "$(rss)" "$answer"
}
echo "gateway $(rss) KiB resident at start"
run byte-cap  "SELECT repeat('x', 100000) FROM generate_series(1, 10000)" 10000
run row-cap   "SELECT repeat('x', 100000) FROM generate_series(1, 10000)" 1
run copy      "COPY (SELECT repeat('x', 100000) FROM generate_series(1, 10000)) TO STDOUT" 100
