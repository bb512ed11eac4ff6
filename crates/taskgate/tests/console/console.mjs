// The web console in a real browser: Debian's chromium driven by
// playwright-core, against a real gateway, IdP (oidc-provider) and cluster
// that tests/console.rs starts. The agent acts through the CLI and
// node-postgres; the approver and the auditor through the console.
//
// Env: TG_UI (the API's URL), TG_BIN, TG_STATE_DIR, TG_SHOTS (a folder for
// screenshots), and the dev tokens TG_AGENT, TG_ALICE, TG_AUDITOR.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import pg from "pg";
import { chromium } from "playwright-core";

const env = process.env;
const UI = env.TG_UI;

function step(name, detail = {}) {
  console.log(JSON.stringify({ step: name, ...detail }));
}

function cli(token, ...args) {
  return execFileSync(env.TG_BIN, args, {
    env: { ...env, TASKGATE_SERVER: UI, TASKGATE_TOKEN: token, TASKGATE_STATE_DIR: env.TG_STATE_DIR },
    encoding: "utf8",
  });
}

function request(token, name, connection, access) {
  return JSON.parse(cli(token, "task", "request", "--name", name, "--connection", connection,
    "--access", access, "--window", "10m", "--reason", `console test: ${name}`,
    "--ref", "acme/shop#1234", "--format", "json"));
}

async function shot(page, name) {
  await page.screenshot({ path: `${env.TG_SHOTS}/${name}.png`, fullPage: true });
}

/// A POST the page's own script sends, as a forged form would.
async function post(page, path, body) {
  return page.evaluate(async ([path, body]) => {
    const r = await fetch(path, {
      method: "POST", body, headers: { "content-type": "application/x-www-form-urlencoded" }, redirect: "manual",
    });
    return r.status;
  }, [path, body]);
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const viewport = { width: 1280, height: 860 };
try {
  // Alice, a DBA, signs in at the IdP (authorization code + PKCE).
  const alice = await (await browser.newContext({ viewport })).newPage();
  const first = await alice.goto(`${UI}/ui`);
  assert.equal(first.headers()["x-frame-options"], "DENY");
  assert.match(first.headers()["content-security-policy"], /default-src 'none'/);
  assert.match(alice.url(), /\/ui\/login$/);
  await shot(alice, "sign-in");
  await alice.click("text=Sign in with");
  await alice.fill('input[name="login"]', "alice-idp");
  await alice.fill('input[name="password"]', "any");
  await alice.click('button[type="submit"]');
  if (!alice.url().startsWith(UI)) {
    const proceed = alice.locator('button[type="submit"]');
    if (await proceed.count()) await proceed.first().click();
  }
  await alice.waitForURL(`${UI}/ui/reviews`);
  assert.match(await alice.textContent("header.top .who"), /alice-idp/);
  const cookies = await alice.context().cookies();
  const session = cookies.find((c) => c.name === "tg_console");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  await alice.waitForSelector('#reviews[data-connected="true"]');
  step("alice signed in");

  // The agent asks at its terminal; the review appears on the open page.
  const task = request(env.TG_AGENT, "migrate-orders", "shop", "write");
  assert.equal(task.status, "pending");
  const grant = alice.locator(`[data-review="${task.review}"]`);
  await grant.waitFor();
  assert.match(await grant.textContent(), /copilot-agent/);
  assert.match(await grant.textContent(), /console test: migrate-orders/);
  assert.match(await grant.textContent(), /acme\/shop#1234/);
  assert.match(await grant.textContent(), /group:dba/);
  await shot(alice, "reviews-grant");
  await grant.locator('input[name="comment"]').fill("go ahead");
  await grant.locator("button.approve").click();
  await alice.waitForURL(`${UI}/ui/reviews`);
  const shown = JSON.parse(cli(env.TG_AGENT, "task", "show", task.id, "--format", "json"));
  assert.equal(shown.status, "active");
  assert.equal(shown.approval.by.subject, "alice-idp");
  step("grant approved in the page", { task: task.id });

  // A held statement, approved in the page: the agent's session goes on.
  const db = new pg.Client({ connectionString: task.connection_string });
  await db.connect();
  assert.equal((await db.query("SELECT count(*)::int AS n FROM orders")).rows[0].n, 2);
  const held = db.query("ALTER TABLE orders ADD COLUMN note text");
  const statement = alice.locator("[data-review]", { hasText: "ALTER TABLE orders ADD COLUMN note text" });
  await statement.waitFor();
  assert.match(await statement.textContent(), /ddl/);
  assert.match(await statement.textContent(), /writes orders/);
  await shot(alice, "reviews-statement");
  await statement.locator("button.approve").click();
  await held;
  await db.query("UPDATE orders SET note = 'checked' WHERE id = 1");
  await db.end();
  step("held statement approved in the page");

  // The story shows the statement and who approved it.
  await alice.goto(`${UI}/ui/tasks/${task.id}`);
  const story = await alice.textContent("main");
  assert.match(story, /ALTER TABLE orders ADD COLUMN note text/);
  assert.match(story, /approved by alice-idp/);
  assert.match(story, /UPDATE orders SET note/);
  await shot(alice, "story");
  const text = await (await alice.request.get(`${UI}/ui/tasks/${task.id}/story.txt`)).text();
  assert.match(text, /ALTER TABLE orders ADD COLUMN note text\s+ddl/);
  await alice.goto(`${UI}/ui/tasks`);
  assert.match(await alice.textContent("table"), /migrate-orders/);
  await shot(alice, "tasks");

  // A POST without the session's CSRF token is refused.
  const other = request(env.TG_AGENT, "second-look", "shop", "write");
  assert.equal(await post(alice, `/ui/reviews/${other.review}/approve`, "comment=forged"), 403);
  step("a POST without CSRF refused");

  // Sam, an auditor, signs in with a dev token: sees everything, decides nothing.
  const sam = await (await browser.newContext({ viewport })).newPage();
  await sam.goto(`${UI}/ui/login`);
  await sam.fill("#token", env.TG_AUDITOR);
  await sam.click('form[action="/ui/login/token"] button');
  await sam.waitForURL(`${UI}/ui/reviews`);
  const pending = sam.locator(`[data-review="${other.review}"]`);
  await pending.waitFor();
  assert.equal(await pending.locator("button.approve").count(), 0);
  assert.match(await pending.textContent(), /may not decide/);
  const csrf = await sam.getAttribute('form[action="/ui/logout"] input[name="csrf"]', "value");
  assert.equal(await post(sam, `/ui/reviews/${other.review}/approve`, `csrf=${csrf}&comment=sneaky`), 403);
  step("the auditor cannot approve");

  // The auditor's question, answered and exported.
  await sam.goto(`${UI}/ui/search?table=orders&class=ddl`);
  const results = await sam.textContent("main");
  assert.match(results, /ALTER TABLE orders ADD COLUMN note text/);
  assert.match(results, /ALTER TABLE \(approved by alice-idp \d\d:\d\d\)/);
  await shot(sam, "search");
  const csv = await (await sam.request.get(`${UI}/ui/search/export.csv?table=orders&class=ddl`)).text();
  assert.match(csv, /^seq,time,type/);
  assert.match(csv, /ALTER TABLE orders ADD COLUMN note text/);
  const jsonl = await (await sam.request.get(`${UI}/ui/search/export.jsonl?table=orders`)).text();
  assert.ok(jsonl.trim().split("\n").every((l) => JSON.parse(l).event));
  await sam.click(`a[href="/ui/tasks/${task.id}"] >> nth=0`);
  await sam.waitForURL(`${UI}/ui/tasks/${task.id}`);
  await sam.goto(`${UI}/ui/integrity`);
  await sam.click("text=Verify now");
  await sam.waitForURL(`${UI}/ui/integrity`);
  assert.match(await sam.textContent("main"), /chain intact/);
  await shot(sam, "integrity");
  step("search, export and verify");

  // The agent signs in too: its own tasks only.
  const aliceTask = request(env.TG_ALICE, "dba-fix", "orders-db", "write");
  const agent = await (await browser.newContext({ viewport })).newPage();
  await agent.goto(`${UI}/ui/login`);
  await agent.fill("#token", env.TG_AGENT);
  await agent.click('form[action="/ui/login/token"] button');
  await agent.waitForURL(`${UI}/ui/reviews`);
  const refused = await agent.goto(`${UI}/ui/tasks/${aliceTask.id}`);
  assert.equal(refused.status(), 403);
  await agent.goto(`${UI}/ui/tasks`);
  const listed = await agent.textContent("main");
  assert.ok(!listed.includes(aliceTask.id));
  assert.match(listed, /migrate-orders/);
  const search = await agent.goto(`${UI}/ui/search?table=orders`);
  assert.equal(search.status(), 403);
  step("the agent sees only its own tasks");

  // Signing out ends the session on the gateway's side.
  await alice.goto(`${UI}/ui/reviews`);
  await alice.click("text=Sign out");
  await alice.waitForURL(`${UI}/ui/login`);
  const after = await alice.goto(`${UI}/ui/tasks`);
  assert.match(after.url(), /\/ui\/login$/);
  step("done", { task: task.id });
} finally {
  await browser.close();
}
