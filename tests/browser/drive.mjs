// Drives Debian's headless Chromium (playwright-core, no downloaded browser) through the rollout viewer and prints
// what it saw as one JSON object. Used by tests/test_viewer_browser.py and bench/viewer.py.
//
//   node drive.mjs '{"url": "file:///tmp/r.html", "search": "Boston", "screens": "/tmp/shots", "rollout": 3}'
//
// Options: url; search (a prompt fragment for the filter); expectTotal (wait until the overview shows this many
// rollouts: a live page); rollout (also open this rollout for the trajectory/token screenshots); screens (a folder
// for PNGs); chromium (default /usr/bin/chromium). Any console error, page error or request leaving the page's own
// origin is reported in `errors` / `offsite`.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const opts = JSON.parse(process.argv[2]);
const profile = fs.mkdtempSync(path.join(process.env.TMPDIR || "/tmp", "gg-chromium-"));
// A fresh profile (--user-data-dir) each run: playwright passes it to Chromium from launchPersistentContext.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: opts.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1440, height: 900 },
  deviceScaleFactor: 1,
});
const out = { errors: [], offsite: [], timings: {} };
try {
  const page = browser.pages()[0] || (await browser.newPage());
  page.setDefaultTimeout(opts.timeoutMs || 60000);
  page.on("console", (m) => { if (m.type() === "error") out.errors.push(m.text()); });
  page.on("pageerror", (e) => out.errors.push(String(e)));
  const origin = opts.url.startsWith("file:") ? "file://" : new URL(opts.url).origin;
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith("data:") && !u.startsWith("blob:")) out.offsite.push(u);
  });
  const shot = async (name) => {
    if (!opts.screens) return;
    fs.mkdirSync(opts.screens, { recursive: true });
    await page.screenshot({ path: path.join(opts.screens, name + ".png") });
  };
  const ready = (prefix) => page.waitForFunction((p) => (document.body.dataset.ready || "").startsWith(p), prefix);
  const readStats = () => page.$$eval("[data-testid^=stat-], [data-testid^=failed-]", (nodes) =>
    Object.fromEntries(nodes.map((n) => [n.dataset.testid, n.dataset.value])));

  const t0 = Date.now();
  await page.goto(opts.url, { waitUntil: "load" });
  await ready("overview");
  out.timings.overview_ready_ms = Date.now() - t0;
  out.timings.first_contentful_paint_ms = await page.evaluate(() =>
    (performance.getEntriesByType("paint").find((e) => e.name === "first-contentful-paint") || {}).startTime ?? null);
  if (opts.expectTotal !== undefined) {
    await page.waitForFunction((n) => {
      const node = document.querySelector("[data-testid=stat-total]");
      return node && Number(node.dataset.value) >= n;
    }, opts.expectTotal, { timeout: opts.timeoutMs || 60000 });
    out.live = await page.$eval("#live-text", (n) => n.textContent);
  }
  out.overview = await readStats();
  out.agents = await page.$$eval("[data-testid=agents] tr", (rows) => rows.slice(1).map((r) => [...r.cells].map((c) => c.textContent)));
  await shot("overview");

  await page.click("nav a[data-view=tasks]");
  await ready("tasks");
  const count = () => page.$eval("[data-testid=task-count]", (n) => Number(n.dataset.value));
  out.tasks = { all: await count(), rows_in_dom: await page.$$eval(".trow", (r) => r.length) };
  // Filtering: the time from the input event to the table showing the new count (includes a 60 ms debounce).
  const filter = (testid, value) => page.evaluate(([id, v]) => new Promise((resolve) => {
    const input = document.querySelector(`[data-testid=${id}]`);
    const counter = document.querySelector("[data-testid=task-count]");
    const before = counter.textContent;
    const t = performance.now();
    input.value = v;
    input.dispatchEvent(new Event("input"));
    const check = () => (counter.textContent !== before || performance.now() - t > 3000
      ? resolve(performance.now() - t) : requestAnimationFrame(check));
    setTimeout(check, 0);
  }), [testid, value]);
  if (opts.search) {
    out.timings.filter_ms = await filter("search", opts.search);
    out.tasks.search = await count();
    out.tasks.search_first_prompt = await page.$eval(".trow .prompt", (n) => n.textContent).catch(() => null);
    await filter("search", "");
  }
  await page.check("[data-testid=failed-only]");
  out.tasks.failed_only = await count();
  await page.uncheck("[data-testid=failed-only]");
  await page.check("[data-testid=tool-errors-only]");
  out.tasks.tool_errors_only = await count();
  await page.uncheck("[data-testid=tool-errors-only]");
  await page.fill("[data-testid=reward-min]", "1");
  await page.fill("[data-testid=reward-max]", "1");
  await page.waitForTimeout(150);
  out.tasks.reward_exactly_1 = await count();
  await page.fill("[data-testid=reward-min]", "");
  await page.fill("[data-testid=reward-max]", "");
  await page.waitForTimeout(150);
  await page.click("[data-sort=mean]");
  await page.click("[data-sort=mean]"); // descending
  await page.waitForTimeout(100);
  await page.locator("[data-testid=task-rows]").evaluate((n) => { n.scrollTop = n.scrollHeight; });
  await page.waitForTimeout(150);
  out.tasks.rows_in_dom_after_scroll = await page.$$eval(".trow", (r) => r.length);
  await page.locator("[data-testid=task-rows]").evaluate((n) => { n.scrollTop = 0; });
  await page.waitForTimeout(150);
  await shot("tasks");
  if (opts.search) await filter("search", opts.search);

  let t1 = Date.now();
  await page.click(".trow");
  await ready("group/");
  out.timings.open_group_ms = Date.now() - t1;
  out.group = {
    hash: await page.evaluate(() => location.hash),
    task: await page.$eval(".crumbs", (n) => n.textContent),
    members: await page.$$eval(".member", (ms) => ms.map((m) => ({
      rollout: Number(m.dataset.rollout),
      reward: (m.querySelector("[data-testid=member-reward]") || {}).textContent ?? null,
      advantage: m.querySelector("[data-testid=member-advantage]").dataset.value,
    }))),
    divergence: await page.$eval("[data-testid=divergence]", (n) => n.textContent),
  };
  await shot("group");

  t1 = Date.now();
  await page.click(".member");
  await ready("rollout/");
  out.timings.open_rollout_ms = Date.now() - t1;
  const readRollout = async () => ({
    hash: await page.evaluate(() => location.hash),
    items: await page.$$eval(".out-item", (n) => n.length),
    invalid_json: await page.$$eval("[data-testid=invalid-json]", (n) => n.length),
    failure: await page.$eval("[data-testid=failure]", (n) => n.textContent).catch(() => null),
  });
  out.rollout = await readRollout();
  const openTokens = async () => {
    if (await page.$eval("[data-testid=tab-tokens]", (n) => n.classList.contains("off"))) return null; // no token data
    await page.click("[data-testid=tab-tokens]");
    await ready(`rollout/`);
    await page.waitForFunction(() => (document.body.dataset.ready || "").endsWith("/tokens"));
    return {
      tokens: await page.$$eval(".tokens .tok:not(.mask0)", (n) => n.length),
      items: await page.$$eval("[data-testid=token-item]", (n) => n.length),
      segments: await page.$$eval("[data-testid=segment]", (n) => n.length),
    };
  };
  out.tokens = await openTokens();
  if (opts.rollout !== undefined) {
    await page.evaluate((i) => { location.hash = `#rollout/${i}`; }, opts.rollout);
    await page.waitForFunction((i) => document.body.dataset.ready === `rollout/${i}`, opts.rollout);
    out.chosen = await readRollout();
    await shot("trajectory");
    out.chosen_tokens = await openTokens();
    await shot("tokens");
  }
} catch (err) {
  out.exception = String(err && err.stack ? err.stack : err);
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(out) + "\n");
