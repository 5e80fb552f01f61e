// The Valerix dashboard: plain JavaScript against the gateway's JSON API.
"use strict";

const GOOD = new Set(["healthy", "connected", "reachable"]);
const SERVICES = ["inventory", "payment", "order"];
const $ = (sel) => document.querySelector(sel);

async function api(path, options = {}) {
  const init = { ...options, headers: { "content-type": "application/json", ...(options.headers || {}) } };
  try {
    const r = await fetch(path, init);
    const body = await r.json().catch(() => null);
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

async function refreshOverview() {
  const r = await api("/api/overview");
  const services = (r.ok && r.body && r.body.services) || {};
  for (const li of document.querySelectorAll("#health li")) {
    const state = r.ok ? services[li.dataset.service] : undefined;
    const good = li.dataset.service === "api-gateway" ? r.ok : GOOD.has(state);
    li.className = good ? "ok" : "bad";
    li.title = state || (r.ok ? "unknown" : "gateway unreachable");
  }
  const sla = $("#sla");
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
  for (const [name, state] of Object.entries((r.ok && r.body.breakers) || {})) {
    const el = document.getElementById(`breaker-${name}`);
    if (el) text(el, state).dataset.state = state;
  }
  // Controls only for the services that accept gremlins (--gremlins).
  const accepts = (r.ok && r.body.gremlins) || {};
  let any = false;
  for (const card of document.querySelectorAll("#gremlin-grid .gremlin")) {
    const on = Boolean(accepts[`${card.dataset.service}-service`]);
    card.hidden = !on;
    any ||= on;
  }
  $("#gremlins-off").hidden = any || !r.ok;
  $("#gremlin-grid").hidden = !any;
}

async function refreshOrders() {
  const r = await api("/api/orders?limit=20");
  if (!r.ok) return;
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
  for (const [id, el] of [["latency", field("latency")], ["delay_ms", field("delay_ms")]]) {
    el.id = `${service}-${id}`;
  }
  const post = (kind, payload) =>
    api(`/api/gremlin/${service}/${kind}`, { method: "POST", body: JSON.stringify(payload) });
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
    await api(`/api/gremlin/${service}`, { method: "DELETE" });
    for (const kind of ["latency", "noise", "crash"]) field(kind).checked = false;
  });
  return card;
}

async function loadGremlins() {
  const grid = $("#gremlin-grid");
  grid.replaceChildren(...SERVICES.map(gremlinCard));
  for (const service of SERVICES) {
    const r = await api(`/api/gremlin/${service}`);
    if (!r.ok) continue;
    const card = grid.querySelector(`[data-service=${service}]`);
    const s = r.body;
    card.querySelector("[name=latency]").checked = Boolean(s.latency && s.latency.enabled);
    if (s.latency) card.querySelector("[name=delay_ms]").value = s.latency.delay_ms;
    card.querySelector("[name=noise]").checked = Boolean(s.noise && s.noise.enabled);
    card.querySelector("[name=crash]").checked = Boolean(s.crash && s.crash.enabled);
  }
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

$("#order-form").addEventListener("submit", placeOrder);
loadGremlins();
every(1000, refreshOverview);
every(1000, refreshOrders);
every(2000, refreshStock);
