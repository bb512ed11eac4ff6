// An agent's whole task over MCP, driven by the official TypeScript SDK
// against a real gateway (tests/mcp.rs starts it, with a throwaway
// cluster). People act through the taskgate CLI, as they would.
//
//   node agent.mjs stdio|http
//
// Env: TG_SERVER (the API's URL), TG_BIN (the taskgate binary), TG_STATE_DIR,
// and the dev tokens TG_AGENT, TG_ALICE (a DBA), TG_BOB, TG_ADMIN.
// Prints one JSON line per step; exits non-zero on the first surprise.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const mode = process.argv[2];
const env = process.env;

function step(name, detail) {
  console.log(JSON.stringify({ step: name, ...detail }));
}

async function connect(token) {
  const client = new Client({ name: "taskgate-test-agent", version: "1.0.0" });
  let transport;
  if (mode === "stdio") {
    transport = new StdioClientTransport({
      command: env.TG_BIN,
      args: ["mcp"],
      env: { ...env, TASKGATE_SERVER: env.TG_SERVER, TASKGATE_TOKEN: token },
      stderr: "inherit",
    });
  } else {
    transport = new StreamableHTTPClientTransport(new URL(`${env.TG_SERVER}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    });
  }
  await client.connect(transport);
  return client;
}

/// A person at the terminal.
function cli(token, ...args) {
  return execFileSync(env.TG_BIN, args, {
    env: {
      ...env,
      TASKGATE_SERVER: env.TG_SERVER,
      TASKGATE_TOKEN: token,
      TASKGATE_STATE_DIR: env.TG_STATE_DIR,
    },
    encoding: "utf8",
  });
}

async function call(client, name, args) {
  const result = await client.callTool({ name, arguments: args });
  const answer = result.structuredContent ?? JSON.parse(result.content[0].text);
  step(name, { args, isError: result.isError ?? false, answer });
  return { ok: !result.isError, answer };
}

async function refused(client, name, args, check) {
  const { ok, answer } = await call(client, name, args);
  assert.equal(ok, false, `${name} ${JSON.stringify(args)} should be refused: ${JSON.stringify(answer)}`);
  check?.(answer);
  return answer;
}

const agent = await connect(env.TG_AGENT);

const tools = (await agent.listTools()).tools.map((t) => t.name).sort();
assert.deepEqual(tools, [
  "describe", "end_task", "list_connections", "query", "request_access",
  "task_status", "wait_for_access", "wait_for_review",
]);
for (const tool of (await agent.listTools()).tools) {
  assert.ok(tool.description.length < 200, `${tool.name}: keep descriptions short`);
  assert.equal(tool.inputSchema.type, "object");
}

const offers = (await call(agent, "list_connections", {})).answer.connections;
const write = offers.find((o) => o.connection === "shop" && o.access === "write");
assert.equal(write.needs_approval, true);
assert.equal(write.max_window, "30m");

// Write access needs a DBA: pending, then alice approves at her terminal.
let { answer: task } = await call(agent, "request_access", {
  task: "migrate-orders", connection: "shop", access: "write", window: "10m",
  reason: "add a note column", ref: "acme/shop#1234",
});
assert.equal(task.status, "pending_approval");
assert.ok(task.review_id.startsWith("rev_"));
assert.ok(!JSON.stringify(task).includes("tgt_"), "no task token in an answer");
const pending = await call(agent, "wait_for_access", { task_id: task.task_id, timeout_seconds: 1 });
assert.equal(pending.answer.timed_out, true);
assert.equal(pending.answer.review_id, task.review_id);
cli(env.TG_ALICE, "review", "approve", task.review_id, "--comment", "go ahead");
const active = (await call(agent, "wait_for_access", { task_id: task.task_id, timeout_seconds: 30 })).answer;
assert.equal(active.status, "active");
assert.equal(active.approved_by, "alice");
const id = task.task_id;

// Reads, with and without parameters.
let { answer } = await call(agent, "query", { task_id: id, sql: "SELECT id, item, qty FROM orders ORDER BY id" });
assert.equal(answer.status, "ok");
assert.deepEqual(answer.result.rows, [[1, "apple", 3], [2, "pear", 5]]);
assert.deepEqual(answer.result.columns.map((c) => c.name), ["id", "item", "qty"]);
assert.equal(answer.result.command_tag, "SELECT 2");
assert.equal(answer.result.truncated, false);
({ answer } = await call(agent, "query", { task_id: id, sql: "SELECT item FROM orders WHERE qty > $1", params: [4] }));
assert.deepEqual(answer.result.rows, [["pear"]]);

// DDL is held for a DBA: the call answers at once, alice approves, it runs.
({ answer } = await call(agent, "query", { task_id: id, sql: "ALTER TABLE orders ADD COLUMN note text" }));
assert.equal(answer.status, "pending_review");
assert.ok(answer.approvers.includes("group:dba"));
const review = answer.review_id;
const notYet = (await call(agent, "wait_for_review", { review_id: review, timeout_seconds: 1 })).answer;
assert.equal(notYet.timed_out, true);
cli(env.TG_ALICE, "review", "approve", review, "--comment", "fine");
({ answer } = await call(agent, "wait_for_review", { review_id: review, timeout_seconds: 30 }));
assert.equal(answer.status, "ok");
assert.equal(answer.result.command_tag, "ALTER TABLE");

// A second statement smuggled after ';' and a denied one: nothing runs.
await refused(agent, "query", { task_id: id, sql: "SELECT 1; DROP TABLE customers" }, (a) =>
  assert.equal(a.error.sqlstate, "42601"));
await refused(agent, "query", { task_id: id, sql: "COMMIT; DROP TABLE customers" }, (a) =>
  assert.equal(a.error.sqlstate, "42601"));
await refused(agent, "query", { task_id: id, sql: "DROP TABLE orders" }, (a) =>
  assert.equal(a.error.sqlstate, "42501"));
// Judged as the server parses it: a leading ';' is an empty statement, and
// a three-part name is this database's table or refused.
await refused(agent, "query", { task_id: id, sql: ";DROP TABLE orders" }, (a) =>
  assert.equal(a.error.sqlstate, "42501"));
await refused(agent, "query", { task_id: id, sql: "SELECT * FROM other.public.orders" }, (a) =>
  assert.equal(a.error.sqlstate, "0A000"));

// What the database raised is an error, apart from the gateway's refusals.
({ answer } = await call(agent, "query", { task_id: id, sql: "SELECT * FROM no_such_table" }));
assert.equal(answer.status, "error");
assert.equal(answer.error.sqlstate, "42P01");
({ answer } = await call(agent, "query", { task_id: id, sql: "DROP TABLE orders" }));
assert.equal(answer.status, "refused");

// No transaction can span calls: BEGIN, ROLLBACK and savepoints are refused
// rather than answered ok having done nothing.
for (const sql of ["BEGIN", "ROLLBACK", "savepoint s1", "COMMIT"]) {
  await refused(agent, "query", { task_id: id, sql }, (a) => {
    assert.equal(a.error.code, "invalid_request");
    assert.match(a.error.message, /session of its own/);
  });
}

// describe reads through the same grant.
({ answer } = await call(agent, "describe", { task_id: id, table: "orders" }));
const columns = answer.result.rows.map((r) => r[1]);
assert.deepEqual(columns, ["id", "item", "qty", "note"]);
assert.match(answer.result.rows[0][5], /PRIMARY KEY/);
({ answer } = await call(agent, "describe", { task_id: id }));
assert.ok(answer.result.rows.some((r) => r[1] === "customers"));

// A result far larger than max_rows comes back cut.
({ answer } = await call(agent, "query", {
  task_id: id, sql: "SELECT g, repeat('x', 1000) FROM generate_series(1, 1000000) g", max_rows: 5,
}));
assert.equal(answer.result.rows.length, 5);
assert.deepEqual(answer.result.truncated, { reason: "rows", limit: 5 });
// max_rows 0 returns no row, and says the rows were cut.
({ answer } = await call(agent, "query", { task_id: id, sql: "SELECT id FROM orders", max_rows: 0 }));
assert.deepEqual(answer.result.rows, []);
assert.deepEqual(answer.result.truncated, { reason: "rows", limit: 0 });
// One value past the default budget (about 4,000 tokens): no rows, and why.
({ answer } = await call(agent, "query", { task_id: id, sql: "SELECT repeat('x', 20000) AS big" }));
assert.deepEqual(answer.result.rows, []);
assert.deepEqual(answer.result.truncated, { reason: "bytes", limit: 16384 });
({ answer } = await call(agent, "query", { task_id: id, sql: "SELECT repeat('x', 20000) AS big", max_bytes: 32768 }));
assert.equal(answer.result.rows[0][0].length, 20000);
assert.equal(answer.result.truncated, false);

// Another identity cannot use this task.
const bob = await connect(env.TG_BOB);
await refused(bob, "query", { task_id: id, sql: "SELECT 1" }, (a) => assert.equal(a.error.code, "forbidden"));
await bob.close();

// Ended: no more statements.
({ answer } = await call(agent, "end_task", { task_id: id }));
assert.equal(answer.status, "ended");
await refused(agent, "query", { task_id: id, sql: "SELECT 1" }, (a) => {
  assert.equal(a.error.sqlstate, "28000");
  assert.match(a.error.message, /ended/);
});

// A read task refuses writes; revoked, it refuses everything.
({ answer: task } = await call(agent, "request_access", {
  task: "look-at-orders", connection: "shop", access: "read", window: "10m", reason: "count orders",
}));
assert.equal(task.status, "active");
await refused(agent, "query", { task_id: task.task_id, sql: "INSERT INTO orders (item) VALUES ('plum')" });
cli(env.TG_ADMIN, "task", "revoke", task.task_id);
await refused(agent, "query", { task_id: task.task_id, sql: "SELECT count(*) FROM orders" }, (a) =>
  assert.match(a.error.message, /revoked/));

// The window ends: statements stop with it.
const { answer: brief } = await call(agent, "request_access", {
  task: "quick-look", connection: "shop", access: "read", window: "1s", reason: "one glance",
});
assert.equal(brief.status, "active");
await new Promise((resolve) => setTimeout(resolve, 1500));
await refused(agent, "query", { task_id: brief.task_id, sql: "SELECT 1" }, (a) =>
  assert.match(a.error.message, /window ended|expired/));

await agent.close();
step("done", { read_task: task.task_id, write_task: id });
