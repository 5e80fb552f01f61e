// The Valerix dashboard: plain JavaScript against the gateway's JSON API.
"use strict";

const GOOD = new Set(["healthy", "connected", "reachable"]);
const SERVICES = ["inventory", "payment", "order"];
const $ = (sel) => document.querySelector(sel);

// The operator token: from the link `valerix up` prints (`#token=...`, a
// fragment, so it never reaches a server or a log), kept for this tab only
// (the browser's per-tab storage, gone when the tab closes), sent as
// `Authorization: Bearer` on the operator's calls.
const TOKEN_KEY = "valerix-operator-token";
const tabStorage = window.sessionStorage;
const operatorToken = () => tabStorage.getItem(TOKEN_KEY);

function takeTokenFromAddress() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (!token) return;
  tabStorage.setItem(TOKEN_KEY, token);
  params.delete("token");
  const rest = params.toString();
  // Out of the address bar, the history and any bookmark made from now on.
  history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
}

// anonymous: no token; operator: a token, not refused so far; refused: the
// gateway answered 401 to it.
function showOperator(state) {
  const section = $("#operator");
  if (section.dataset.state === state) return;
  section.dataset.state = state;
  const message = {
    anonymous: "You see the shop. The order list and the gremlins need the operator token " +
      "(valerix up prints a dashboard link carrying it).",
    operator: "Signed in as the operator for this tab.",
    refused: "The gateway refused that operator token: give the current one.",
  }[state];
  text($("#operator-state"), message);
  $("#token-form").hidden = state === "operator";
  $("#forget-token").hidden = state !== "operator";
  $("#orders-locked").hidden = state === "operator";
  if (state !== "operator") $("#orders").replaceChildren();
}

function forgetToken(state) {
  tabStorage.removeItem(TOKEN_KEY);
  showOperator(state);
}

async function api(path, options = {}, operator = false) {
  const headers = { "content-type": "application/json", ...(options.headers || {}) };
  const token = operator && operatorToken();
  if (token) headers.authorization = `Bearer ${token}`;
  try {
    const r = await fetch(path, { ...options, headers });
    const body = await r.json().catch(() => null);
    if (token && r.status === 401 && operatorToken() === token) forgetToken("refused");
    return { ok: r.ok, status: r.status, body };
  } catch (err) {
    return { ok: false, status: 0, body: { detail: String(err) } };
  }
}

function text(el, value) {
  el.textContent = value;
  return el;
}

function cell(row, value, className) {
  const td = row.insertCell();
  text(td, value);
  if (className) td.className = className;
  return td;
}

function money(cents) {
  return (cents / 100).toFixed(2);
}

// The SLA's limit in seconds, as the order service states it.
let slaLimit = 1;

// How long a restarted service's dot keeps its amber ring.
const RESTART_SHOWN_MS = 30_000;
// Restarts seen on this page, marked on the charts: {t, label}.
const restartMarks = [];
const lastRestarts = {};

function clock(time) {
  return new Date(time).toLocaleTimeString();
}

// The restart count beside a service, and a mark on the charts for each
// restart the page sees happen.
function showProcess(li, process) {
  const restarts = (process && process.restarts) || 0;
  li.dataset.restarts = String(restarts);
  text(li.querySelector(".restarts"), restarts ? `↻ ${restarts}` : "");
  const last = process && process.last_restart ? Date.parse(process.last_restart) : null;
  if (last && Date.now() - last < RESTART_SHOWN_MS) li.classList.add("restarted");
  const since = process && process.up_since ? `up since ${clock(process.up_since)}` : "";
  const again = restarts ? `, restarted ${restarts}× (last at ${clock(last)})` : "";
  if (since) li.title += ` — ${since}${again}`;
  const service = li.dataset.service;
  if (last && lastRestarts[service] !== last) {
    restartMarks.push({ t: last, label: `${service.replace("-service", "")} restarted` });
    // A new process forgot its gremlins: show the settings it has now.
    if (service in lastRestarts) gremlinsLoaded = false;
  }
  lastRestarts[service] = last;
}

async function refreshOverview() {
  let r = await api("/api/overview", {}, true);
  // A refused token still leaves the public part to show.
  if (r.status === 401) r = await api("/api/overview");
  const services = (r.ok && r.body && r.body.services) || {};
  const processes = (r.ok && r.body && r.body.processes) || {};
  for (const li of document.querySelectorAll("#health li")) {
    const state = r.ok ? services[li.dataset.service] : undefined;
    const good = li.dataset.service === "api-gateway" ? r.ok : GOOD.has(state);
    li.className = good ? "ok" : "bad";
    li.title = state || (r.ok ? "unknown" : "gateway unreachable");
    if (li.querySelector(".restarts")) showProcess(li, processes[li.dataset.service]);
  }
  const sla = $("#sla");
  if (r.ok && r.body.sla && typeof r.body.sla.limit === "number") slaLimit = r.body.sla.limit;
  if (r.ok && r.body.sla && typeof r.body.sla.avg_latency_30s === "number") {
    const v = r.body.sla.avg_latency_30s;
    text($("#sla-value"), `${v.toFixed(3)} s`);
    sla.className = `pill ${r.body.sla.breached ? "bad" : "ok"}`;
    sla.dataset.state = r.body.sla.breached ? "breached" : "ok";
  } else {
    text($("#sla-value"), "–");
    sla.className = "pill unknown";
    sla.dataset.state = "unknown";
  }
  // The operator's part: breakers and which services take gremlins.
  const breakers = (r.ok && r.body.breakers) || {};
  for (const el of document.querySelectorAll(".breakers strong")) {
    const state = breakers[el.id.replace("breaker-", "")];
    text(el, state || "–");
    if (state) el.dataset.state = state;
    else delete el.dataset.state;
  }
  const operator = r.ok && Boolean(r.body.gremlins);
  // Controls only for the services that accept gremlins (--gremlins).
  const accepts = (operator && r.body.gremlins) || {};
  let any = false;
  for (const card of document.querySelectorAll("#gremlin-grid .gremlin")) {
    const on = Boolean(accepts[`${card.dataset.service}-service`]);
    card.hidden = !on;
    any ||= on;
  }
  if (operator && !gremlinsLoaded) await loadGremlins();
  $("#gremlins-off").hidden = any || !operator;
  $("#gremlins-locked").hidden = operator || !r.ok;
  $("#gremlin-grid").hidden = !any;
}

async function refreshOrders() {
  if (!operatorToken()) return;
  const r = await api("/api/orders?limit=20", {}, true);
  if (!r.ok) return;
  showOperator("operator");
  const tbody = $("#orders");
  tbody.replaceChildren();
  for (const o of r.body.orders) {
    const row = tbody.insertRow();
    row.dataset.orderId = o.id;
    cell(row, o.id.slice(0, 8), "id").title = o.id;
    cell(row, o.product_id);
    cell(row, String(o.quantity));
    const status = o.failure_reason ? `${o.status} (${o.failure_reason})` : o.status;
    cell(row, status, `status ${o.status}`).dataset.status = o.status;
  }
}

async function refreshStock() {
  const r = await api("/api/inventory");
  if (!r.ok) return;
  const select = $("#product");
  const chosen = select.value;
  select.replaceChildren();
  const tbody = $("#stock");
  tbody.replaceChildren();
  for (const p of r.body.products) {
    const option = new Option(`${p.product_id} — ${p.name} (${money(p.price_cents)})`, p.product_id);
    select.add(option);
    const row = tbody.insertRow();
    row.dataset.productId = p.product_id;
    cell(row, `${p.product_id} ${p.name}`);
    cell(row, money(p.price_cents));
    cell(row, String(p.available));
    cell(row, String(p.reserved));
    cell(row, String(p.stock));
  }
  if (chosen) select.value = chosen;
}

function describe(order) {
  switch (order.status) {
    case "CONFIRMED":
      return ["CONFIRMED", `CONFIRMED — order ${order.id.slice(0, 8)}, ${money(order.amount_cents)} charged`];
    case "FAILED":
      return ["FAILED", `FAILED — ${order.failure_reason || "unknown reason"}`];
    default:
      return ["PENDING", `${order.status} — processing, will confirm shortly (order ${order.id.slice(0, 8)})`];
  }
}

async function placeOrder(event) {
  event.preventDefault();
  const button = $("#place");
  const result = $("#order-result");
  button.disabled = true;
  delete result.dataset.status;
  delete result.dataset.orderId;
  text(result, "Placing order…").className = "result";
  const body = { product_id: $("#product").value, quantity: Number($("#quantity").value) };
  const r = await api("/api/orders", {
    method: "POST",
    headers: { "Idempotency-Key": crypto.randomUUID() },
    body: JSON.stringify(body),
  });
  button.disabled = false;
  if (r.ok) {
    const [kind, message] = describe(r.body);
    text(result, message).className = `result ${kind}`;
    result.dataset.orderId = r.body.id;
    result.dataset.status = kind;
  } else {
    const detail = (r.body && (r.body.detail || r.body.title)) || `HTTP ${r.status}`;
    text(result, `Error — ${detail}`).className = "result FAILED";
    result.dataset.status = "ERROR";
  }
  refreshOrders();
  refreshStock();
}

// Gremlin controls: one card per service, each change applied at once.
function gremlinCard(service) {
  const card = document.createElement("div");
  card.className = "gremlin";
  card.dataset.service = service;
  card.innerHTML = `
    <fieldset>
      <legend>${service}</legend>
      <label><input type="checkbox" name="latency"> latency</label>
      <label>delay (ms) <input type="number" name="delay_ms" min="0" max="600000" step="100" value="3000"></label>
      <label><input type="checkbox" name="noise"> noise: 500 after commit</label>
      <label>noise rate <input type="number" name="noise_rate" min="0" max="1" step="0.05" value="0.2"></label>
      <label><input type="checkbox" name="crash"> crash after commit</label>
      <label>crash rate <input type="number" name="crash_rate" min="0" max="1" step="0.01" value="0.05"></label>
      <button type="button" class="secondary" name="clear">Clear all</button>
    </fieldset>`;
  const field = (name) => card.querySelector(`[name=${name}]`);
  for (const id of ["latency", "delay_ms", "noise", "noise_rate", "crash", "crash_rate"]) {
    field(id).id = `${service}-${id}`;
  }
  const post = (kind, payload) =>
    api(`/api/gremlin/${service}/${kind}`, { method: "POST", body: JSON.stringify(payload) }, true);
  const latency = () =>
    post("latency", { delay_ms: Number(field("delay_ms").value), enabled: field("latency").checked });
  field("latency").addEventListener("change", latency);
  field("delay_ms").addEventListener("change", () => field("latency").checked && latency());
  const afterCommit = (kind) => () =>
    post(kind, { enabled: field(kind).checked, rate: Number(field(`${kind}_rate`).value) });
  for (const kind of ["noise", "crash"]) {
    field(kind).addEventListener("change", afterCommit(kind));
    field(`${kind}_rate`).addEventListener("change", () => field(kind).checked && afterCommit(kind)());
  }
  field("clear").addEventListener("click", async () => {
    await api(`/api/gremlin/${service}`, { method: "DELETE" }, true);
    for (const kind of ["latency", "noise", "crash"]) field(kind).checked = false;
  });
  return card;
}

// The cards and their current settings, once the operator is signed in.
let gremlinsLoaded = false;

async function loadGremlins() {
  gremlinsLoaded = true;
  const grid = $("#gremlin-grid");
  for (const service of SERVICES) {
    const r = await api(`/api/gremlin/${service}`, {}, true);
    if (!r.ok) continue;
    const card = grid.querySelector(`[data-service=${service}]`);
    const s = r.body;
    card.querySelector("[name=latency]").checked = Boolean(s.latency && s.latency.enabled);
    if (s.latency) card.querySelector("[name=delay_ms]").value = s.latency.delay_ms;
    card.querySelector("[name=noise]").checked = Boolean(s.noise && s.noise.enabled);
    card.querySelector("[name=crash]").checked = Boolean(s.crash && s.crash.enabled);
  }
}

// The charts: the gateway's points, fetched as they come (`after` the
// newest one here), kept for the window it reports.
let activity = { points: [], windowMs: 300_000 };

async function refreshActivity() {
  const newest = activity.points.length ? activity.points[activity.points.length - 1].t : null;
  const r = await api(newest === null ? "/api/activity" : `/api/activity?after=${newest}`);
  if (r.ok && r.body) {
    activity.windowMs = r.body.window_seconds * 1000;
    const points = activity.points.concat(r.body.points);
    const end = points.length ? points[points.length - 1].t : Date.now();
    activity.points = points.filter((p) => p.t > end - activity.windowMs);
  }
  drawCharts();
}

function drawCharts() {
  const { points, windowMs } = activity;
  while (restartMarks.length && restartMarks[0].t < Date.now() - windowMs) restartMarks.shift();
  drawLineChart($("#chart-orders"), {
    points, windowMs, series: ["confirmed", "failed", "pending"], floor: 1, events: restartMarks,
  });
  drawLineChart($("#chart-latency"), {
    points, windowMs, series: ["p50", "p99", "avg_30s"], floor: 0.1, events: restartMarks,
    lines: [{ value: slaLimit, label: `SLA ${slaLimit} s`, className: "limit" }],
  });
}

function every(ms, fn) {
  const tick = async () => {
    try {
      await fn();
    } finally {
      setTimeout(tick, ms);
    }
  };
  tick();
}

function signedIn() {
  gremlinsLoaded = false;
  showOperator("operator");
  refreshOrders();
  refreshOverview();
}

function useToken(event) {
  event.preventDefault();
  const input = $("#token");
  const token = input.value.trim();
  if (!token) return;
  tabStorage.setItem(TOKEN_KEY, token);
  input.value = "";
  signedIn();
}

takeTokenFromAddress();
showOperator(operatorToken() ? "operator" : "anonymous");
$("#gremlin-grid").replaceChildren(...SERVICES.map(gremlinCard));
$("#order-form").addEventListener("submit", placeOrder);
$("#token-form").addEventListener("submit", useToken);
// The operator link opened in a tab that already shows the page.
window.addEventListener("hashchange", () => {
  const before = operatorToken();
  takeTokenFromAddress();
  if (operatorToken() !== before) signedIn();
});
$("#forget-token").addEventListener("click", () => {
  gremlinsLoaded = false;
  forgetToken("anonymous");
  refreshOverview();
});
every(1000, refreshOverview);
every(1000, refreshOrders);
every(2000, refreshStock);
every(1000, refreshActivity);
