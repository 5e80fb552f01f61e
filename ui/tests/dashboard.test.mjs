// The dashboard in a real headless Chromium against a running stack.
// BASE_URL: the gateway (default http://127.0.0.1:5000). OPERATOR_LINK: the
// link `valerix up` prints (`BASE_URL/#token=...`). Screenshots go to
// SCREENSHOT_DIR (default test-results/). Waits are on page conditions.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const BASE = process.env.BASE_URL || "http://127.0.0.1:5000";
const SHOTS = process.env.SCREENSHOT_DIR || "test-results";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const OPERATOR_LINK = process.env.OPERATOR_LINK;
assert.ok(OPERATOR_LINK && OPERATOR_LINK.includes("#token="), "OPERATOR_LINK: the link valerix up prints");
mkdirSync(SHOTS, { recursive: true });

let browser;
let page;
// Every Content-Security-Policy violation any page of the run reported,
// from its `securitypolicyviolation` event or Chromium's console.
const violations = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  page.on("pageerror", (err) => console.error("page error:", err));
  await page.exposeBinding("reportCspViolation", (_source, v) => violations.push(v));
  // Before any script of the page runs, on every navigation.
  await page.addInitScript(() => {
    window.cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      const v = { directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample };
      window.cspViolations.push(v);
      window.reportCspViolation(v);
    });
  });
  page.on("console", (msg) => {
    if (/Content Security Policy/i.test(msg.text())) violations.push({ console: msg.text() });
  });
});

after(async () => {
  await browser?.close();
});

const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

async function placeOrder(product, quantity) {
  await page.selectOption("#product", product);
  await page.fill("#quantity", String(quantity));
  await page.click("#place");
  await page.waitForFunction(
    () => !document.querySelector("#place").disabled && document.querySelector("#order-result").dataset.status,
    null,
    { timeout: 15_000 },
  );
  const result = page.locator("#order-result");
  return {
    status: await result.getAttribute("data-status"),
    id: await result.getAttribute("data-order-id"),
    text: await result.textContent(),
  };
}

// The token as the page keeps it for its tab.
const storedToken = () => page.evaluate(() => window.sessionStorage.getItem("valerix-operator-token"));

// What the chart drew for a series: how many points, and the highest value.
const drawn = (chart, series) =>
  page.evaluate(([chart, series]) => {
    const path = document.querySelector(`#${chart} path[data-series=${series}]`);
    return path ? { points: Number(path.dataset.points), max: Number(path.dataset.max) } : null;
  }, [chart, series]);

const orderStatus = (id) =>
  page.locator(`#orders tr[data-order-id="${id}"] td.status`).getAttribute("data-status");

// What the gateway must send with every file of the page.
function assertHardened(url, headers) {
  const csp = headers["content-security-policy"] || "";
  const directives = Object.fromEntries(
    csp.split(";").map((d) => d.trim().split(/\s+/)).filter((d) => d[0]).map(([k, ...v]) => [k, v]),
  );
  assert.deepEqual(directives["frame-ancestors"], ["'none'"], `${url}: ${csp}`);
  assert.deepEqual(directives["connect-src"], ["'self'"], `${url}: ${csp}`);
  assert.deepEqual(directives["default-src"], ["'none'"], `${url}: ${csp}`);
  for (const d of ["script-src", "style-src"]) {
    assert.deepEqual(directives[d], ["'self'"], `${url}: ${d} allows only the page's own files: ${csp}`);
  }
  assert.ok(!csp.includes("unsafe-"), `${url}: ${csp}`);
  assert.equal(headers["x-content-type-options"], "nosniff", url);
  assert.equal(headers["referrer-policy"], "no-referrer", url);
}

test("the page is served hardened, and its policy holds", async () => {
  const response = await page.goto(BASE);
  assert.equal(response.status(), 200);
  assertHardened(BASE, response.headers());
  for (const file of ["app.js", "chart.js", "style.css", "index.html"]) {
    const r = await page.request.get(`${BASE}/${file}`);
    assert.equal(r.status(), 200, file);
    assertHardened(file, r.headers());
  }
  // The page's own scripts ran (the products came) ...
  await page.waitForSelector("#product option", { state: "attached", timeout: 10_000 });
  // ... but an injected one does not, and the browser reports it: the
  // check for violations at the end of the run is not blind.
  const ran = await page.evaluate(() => {
    const script = document.createElement("script");
    script.textContent = "window.injectedRan = true";
    document.head.append(script);
    const style = document.createElement("style");
    style.textContent = "body { display: none }";
    document.head.append(style);
    return window.injectedRan === true;
  });
  assert.equal(ran, false, "an inline script ran under the policy");
  await page.waitForFunction(() => window.cspViolations.length >= 2, null, { timeout: 5_000 });
  const caught = await page.evaluate(() => window.cspViolations.map((v) => v.directive).sort());
  assert.deepEqual(caught, ["script-src-elem", "style-src-elem"]);
  assert.ok(await page.locator("#health").isVisible(), "the injected style was not applied");
  // Not a violation of the page's own: forgotten.
  violations.length = 0;

  // Framed by another page, it is not shown (the frame's load ends in
  // Chromium's error page, so `load` fires either way).
  const framing = await browser.newPage();
  await framing.setContent(`<iframe src="${BASE}/"></iframe>`, { waitUntil: "load", timeout: 10_000 });
  const framed = framing.frames().find((f) => f !== framing.mainFrame());
  assert.ok(framed, "the framing page has its frame");
  const shown = await framed.locator("#health").count().catch(() => 0);
  assert.equal(shown, 0, `the dashboard rendered inside a frame (${framed.url()})`);
  await framing.close();
});

test("a stranger's page places an order and asks for the operator token", async () => {
  await page.goto(BASE);
  await page.waitForFunction(
    () => [...document.querySelectorAll("#health li")].every((li) => li.className === "ok"),
    null,
    { timeout: 20_000 },
  );
  await page.waitForSelector("#sla[data-state=ok]", { timeout: 20_000 });
  await page.waitForSelector("#product option", { state: "attached", timeout: 10_000 });
  assert.equal(await page.locator("#operator").getAttribute("data-state"), "anonymous");
  assert.ok(await page.locator("#token-form").isVisible(), "the page asks for the token");
  await page.waitForSelector("#orders-locked", { state: "visible" });
  await page.waitForSelector("#gremlins-locked", { state: "visible", timeout: 10_000 });

  const placed = await placeOrder("PROD-1", 1);
  assert.equal(placed.status, "CONFIRMED", placed.text);
  assert.equal(await page.locator("#orders tr").count(), 0, "no order list without the token");
  await shot("00-anonymous");

  // A wrong token is refused, and the page says so.
  await page.fill("#token", "not-the-operator-token");
  await page.click("#token-form button");
  await page.waitForSelector("#operator[data-state=refused]", { timeout: 10_000 });
  assert.equal(await storedToken(), null);
});

test("a gremlin episode, caused and watched from the page", async () => {
  await page.goto(OPERATOR_LINK);
  // The token left the address bar for this tab's storage.
  await page.waitForSelector("#operator[data-state=operator]");
  assert.ok(!page.url().includes("token="), page.url());
  assert.ok(await storedToken());
  assert.ok(!(await page.locator("#token-form").isVisible()), "no token asked for once signed in");

  // Every indicator green, the SLA green.
  await page.waitForFunction(
    () => [...document.querySelectorAll("#health li")].every((li) => li.className === "ok"),
    null,
    { timeout: 20_000 },
  );
  await page.waitForSelector("#sla[data-state=ok]", { timeout: 20_000 });
  await page.waitForSelector("#product option", { state: "attached", timeout: 10_000 });
  await page.waitForSelector("#breaker-inventory-service[data-state=closed]");
  await shot("01-loaded");

  // An order is CONFIRMED, in the answer and in the list.
  const confirmed = await placeOrder("PROD-1", 1);
  assert.equal(confirmed.status, "CONFIRMED", confirmed.text);
  await page.waitForSelector("#orders td.status[data-status=CONFIRMED]", { timeout: 10_000 });
  await shot("02-confirmed");

  // The chart draws it: confirmed orders per second above 0, and a latency.
  await page.waitForFunction(
    () => Number(document.querySelector("#chart-orders path[data-series=confirmed]")?.dataset.max) > 0,
    null,
    { timeout: 15_000 },
  );
  const latency = await drawn("chart-latency", "p50");
  assert.ok(latency.points > 0 && latency.max > 0, JSON.stringify(latency));
  assert.equal(await page.locator("#chart-latency .limit").count(), 1, "the SLA's 1 s line");

  // The 3 s inventory gremlin: orders go PENDING, the SLA turns red.
  await page.waitForSelector("#inventory-latency");
  await page.fill("#inventory-delay_ms", "3000");
  await page.check("#inventory-latency");
  const pendingIds = [];
  for (let i = 0; i < 2; i++) {
    const r = await placeOrder("PROD-2", 1);
    assert.equal(r.status, "PENDING", r.text);
    pendingIds.push(r.id);
  }
  await page.waitForSelector("#orders td.status[data-status=PENDING_INVENTORY]", { timeout: 10_000 });
  await page.waitForSelector("#sla[data-state=breached]", { timeout: 30_000 });
  // The episode in pictures: orders answered pending, and seconds of latency.
  await page.waitForFunction(
    () => Number(document.querySelector("#chart-orders path[data-series=pending]")?.dataset.max) > 0,
    null,
    { timeout: 15_000 },
  );
  const slow = await drawn("chart-latency", "p99");
  assert.ok(slow.max > 1, `p99 above the SLA during the gremlin: ${JSON.stringify(slow)}`);
  await shot("03-gremlin-sla-red");

  // Lift it: the pending orders confirm by themselves, the SLA turns green.
  const lifted = Date.now();
  await page.uncheck("#inventory-latency");
  for (const id of pendingIds) {
    await page.waitForFunction(
      (id) => document.querySelector(`#orders tr[data-order-id="${id}"] td.status`)?.dataset.status === "CONFIRMED",
      id,
      { timeout: 60_000 },
    );
    assert.equal(await orderStatus(id), "CONFIRMED");
  }
  const confirmedAfter = (Date.now() - lifted) / 1000;
  await page.waitForSelector("#sla[data-state=ok]", { timeout: 60_000 });
  const greenAfter = (Date.now() - lifted) / 1000;
  console.log(`after lifting the gremlin: pending orders CONFIRMED in ${confirmedAfter.toFixed(1)} s, SLA green in ${greenAfter.toFixed(1)} s`);
  await shot("04-healed");
});

test("a crash and the restart, as they happen", async () => {
  // Signed in from the previous test; every service up, none restarted.
  await page.waitForFunction(
    () => [...document.querySelectorAll("#health li")].every((li) => li.className === "ok"),
    null,
    { timeout: 20_000 },
  );
  const inventory = page.locator('#health li[data-service="inventory-service"]');
  assert.equal(await inventory.getAttribute("data-restarts"), "0");
  // Note every state the inventory dot takes from here on.
  await page.evaluate(() => {
    const li = document.querySelector('#health li[data-service="inventory-service"]');
    window.inventoryStates = [];
    new MutationObserver(() => window.inventoryStates.push(li.className))
      .observe(li, { attributes: true, attributeFilter: ["class"] });
  });

  // Crash after commit on every write: the next reservation kills inventory.
  await page.fill("#inventory-crash_rate", "1");
  await page.check("#inventory-crash");
  const placed = await placeOrder("PROD-1", 1);
  assert.ok(["CONFIRMED", "PENDING"].includes(placed.status), placed.text);

  // valerix up restarts it: green again, with its restart counted.
  await page.waitForSelector('#health li[data-service="inventory-service"][data-restarts="1"].ok', {
    timeout: 30_000,
  });
  assert.ok(await inventory.evaluate((li) => li.classList.contains("restarted")), "marked as restarted");
  assert.match(await inventory.textContent(), /↻ 1/);
  await page.waitForSelector("#chart-orders .restart", { state: "attached", timeout: 10_000 });
  // The new process has no gremlin: the page shows it.
  await page.waitForFunction(() => !document.querySelector("#inventory-crash").checked, null, {
    timeout: 10_000,
  });
  // The order settles by itself.
  await page.waitForFunction(
    (id) => document.querySelector(`#orders tr[data-order-id="${id}"] td.status`)?.dataset.status === "CONFIRMED",
    placed.id,
    { timeout: 60_000 },
  );
  const states = await page.evaluate(() => window.inventoryStates);
  console.log(`inventory's dot while it crashed and came back: ${states.join(" → ")}`);
  await shot("05-restarted");
});

test("usable at phone width", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(BASE);
  await page.waitForSelector("#product option", { state: "attached", timeout: 10_000 });
  for (const id of ["#product", "#quantity", "#place"]) {
    const box = await page.locator(id).boundingBox();
    assert.ok(box && box.width > 0 && box.x + box.width <= 390, `${id} fits: ${JSON.stringify(box)}`);
  }
  const labels = await page.locator("label[for=product], label[for=quantity]").count();
  assert.equal(labels, 2);
  // Nothing makes the page scroll sideways on a phone.
  const { width, wide } = await page.evaluate(() => ({
    width: document.documentElement.scrollWidth,
    wide: [...document.querySelectorAll("body *")]
      .filter((el) => el.getBoundingClientRect().right > 390)
      .map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`),
  }));
  assert.ok(width <= 390, `page is ${width}px wide at a 390px viewport: ${wide.join(", ")}`);
  // Every gremlin control has a label a screen reader can announce.
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("#gremlin-grid input")].filter((i) => !i.closest("label")).length,
  );
  assert.equal(unlabelled, 0);
  // The charts fit too, and still draw.
  const chart = await page.locator("#chart-orders").boundingBox();
  assert.ok(chart && chart.width > 200 && chart.x + chart.width <= 390, JSON.stringify(chart));
  await page.waitForSelector("#chart-orders path[data-series=confirmed]", { state: "attached" });
  await shot("06-phone");
});

test("no Content-Security-Policy violation while the page did all of the above", () => {
  assert.deepEqual(violations, []);
});
