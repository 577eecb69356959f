// The wabot console: one script for the sign-in, the fleet view and a bot's page.
// Built with DOM calls and textContent only (never innerHTML of data), served from this
// origin under a Content-Security-Policy that allows nothing else.
"use strict";

const API = "/console/api";
const state = { me: null, source: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function announce(text) {
  const live = document.getElementById("live");
  live.textContent = "";
  setTimeout(() => { live.textContent = text; }, 50);
}

function ago(stamp) {
  if (!stamp) return "never";
  const t = Date.parse(stamp);
  if (Number.isNaN(t)) return stamp;
  const s = Math.round((Date.now() - t) / 1000);
  if (s < -5) return "in " + span(-s);
  if (s < 5) return "just now";
  return span(s) + " ago";
}

function span(s) {
  if (s < 60) return s + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 86400) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}

async function call(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.me) headers["X-CSRF-Token"] = state.me.csrf;
  const resp = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  return { status: resp.status, data };
}

function main() { return document.getElementById("main"); }

function show(...nodes) {
  const m = main();
  m.replaceChildren(...nodes);
}

function closeStream() {
  if (state.source) { state.source.close(); state.source = null; }
}

// --- sign-in ---------------------------------------------------------------------------------

function renderLogin(message) {
  closeStream();
  document.getElementById("who").textContent = "";
  document.getElementById("signout").hidden = true;
  const error = el("p", { id: "login-error", class: "error", role: "alert", text: message || "" });
  const input = el("input", { id: "credential", name: "credential", type: "password",
    autocomplete: "off", required: true, "aria-describedby": "cred-help" });
  // The monolith and the controller (poll.js) take their control token only.
  const fleetMode = Boolean(window.WABOT_FLEET_CONSOLE);
  const kinds = fleetMode
    ? el("input", { type: "hidden", name: "kind", value: "token", id: "kind-token" })
    : el("fieldset", {},
      el("legend", { text: "Sign in with" }),
      el("label", { class: "choice" }, el("input", { type: "radio", name: "kind", value: "key",
        checked: true, id: "kind-key" }), " a tenant's API key"),
      el("label", { class: "choice" }, el("input", { type: "radio", name: "kind", value: "token",
        id: "kind-token" }), " a Kubernetes bearer token"));
  const form = el("form", { id: "login", class: "card narrow" },
    el("h1", { text: "Sign in" }), kinds,
    el("label", { for: "credential", text: fleetMode
      ? "Control token (WABOT_CONTROLLER_TOKEN)" : "Key or token" }), input,
    el("p", { id: "cred-help", class: "muted", text: "It is checked by the " +
      (fleetMode ? "server" : "gateway") + " and never stored in this page or in its cookie." }),
    error,
    el("button", { type: "submit", id: "signin", class: "primary", text: "Sign in" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const kind = (form.querySelector("input[name=kind]:checked") ||
      form.querySelector("input[name=kind]")).value;
    const r = await call("POST", API + "/login", { kind, credential: input.value });
    input.value = "";
    if (r.status === 200) { state.me = r.data; route(); }
    else { error.textContent = (r.data && r.data.error) || "Sign-in failed."; input.focus(); }
  });
  show(form);
  input.focus();
}

async function signOut() {
  await call("POST", API + "/logout");
  state.me = null;
  history.pushState(null, "", "/console/");
  renderLogin("You are signed out.");
}

// --- the fleet -------------------------------------------------------------------------------

const COLUMNS = [
  ["name", "Bot"], ["tenant", "Tenant"], ["phase", "Phase"], ["account", "Account"],
  ["ready", "Ready"], ["lastConnected", "Last connected"], ["restarts", "Restarts"],
  ["messagesIn", "In (1 h)"], ["messagesOut", "Out (1 h)"],
];
const fleet = { rows: new Map(), nodes: new Map(), sort: "name", dir: 1,
  filter: { text: "", tenant: "", phase: "" }, pending: false, rendered: 0, timer: null };

function renderFleet() {
  closeStream();
  fleet.rows.clear();
  fleet.nodes.clear();
  clearInterval(fleet.timer);
  fleet.timer = setInterval(() => { fleet.nodes.clear(); schedule(); }, 30000);
  const text = el("input", { id: "filter-name", type: "search", placeholder: "name or account",
    "aria-label": "Filter by name or account" });
  const tenant = el("select", { id: "filter-tenant", "aria-label": "Filter by tenant" });
  const phase = el("select", { id: "filter-phase", "aria-label": "Filter by phase" });
  text.addEventListener("input", () => { fleet.filter.text = text.value.trim().toLowerCase(); draw(); });
  tenant.addEventListener("change", () => { fleet.filter.tenant = tenant.value; draw(); });
  phase.addEventListener("change", () => { fleet.filter.phase = phase.value; draw(); });
  const head = el("tr", {}, COLUMNS.map(([key, label]) => el("th", { scope: "col",
    "aria-sort": "none", "data-col": key },
    el("button", { type: "button", class: "sort", text: label, onclick: () => sortBy(key) }))));
  const table = el("table", { id: "fleet", class: "fleet" },
    el("caption", { class: "sr-only", text: "Bots, sortable by each column" }),
    el("thead", {}, head), el("tbody", { id: "fleet-body" }));
  show(el("section", { class: "toolbar", "aria-label": "Filters" }, text, tenant, phase,
    el("span", { id: "fleet-count", class: "muted", role: "status" , text: "connecting…" })),
    el("p", { id: "fleet-empty", class: "empty", hidden: true }),
    table,
    el("p", { class: "muted small", text: "In/Out (1 h): messages received and sent over the " +
      "last hour of each bot's current worker (from zero after a restart), up to a minute " +
      "old; — : not reported yet." }));
  const source = new EventSource(API + "/stream");
  state.source = source;
  source.addEventListener("rows", (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.snapshot) fleet.rows.clear();
    for (const item of msg.items) {
      const key = item.namespace + "/" + item.name;
      if (item.gone) { fleet.rows.delete(key); fleet.nodes.delete(key); }
      else fleet.rows.set(key, item);
    }
    schedule();
  });
  source.addEventListener("signedout", () => renderLogin("Your session ended; sign in again."));
  source.onerror = () => { setCount("reconnecting…"); };
}

function setCount(text) {
  const c = document.getElementById("fleet-count");
  if (c) c.textContent = text;
}

function schedule() {
  if (fleet.pending) return;
  fleet.pending = true;
  requestAnimationFrame(() => { fleet.pending = false; draw(); });
}

function sortBy(key) {
  fleet.dir = fleet.sort === key ? -fleet.dir : 1;
  fleet.sort = key;
  draw();
}

function options(select, values, label) {
  const current = select.value;
  const wanted = [""].concat([...values].sort());
  if (select.options.length === wanted.length &&
      wanted.every((v, i) => select.options[i].value === v)) return;
  select.replaceChildren(...wanted.map((v) => el("option", { value: v, text: v || label })));
  select.value = wanted.includes(current) ? current : "";
}

function compare(a, b) {
  const k = fleet.sort;
  let x = a[k], y = b[k];
  // A count not reported yet sorts below every reported one.
  if (x === null || x === undefined) x = typeof y === "number" ? -1 : "";
  if (y === null || y === undefined) y = typeof x === "number" ? -1 : "";
  if (typeof x === "number" && typeof y === "number") return (x - y) * fleet.dir;
  return String(x).localeCompare(String(y)) * fleet.dir ||
    (a.namespace + a.name).localeCompare(b.namespace + b.name);
}

function draw() {
  const body = document.getElementById("fleet-body");
  if (!body) return;
  const all = [...fleet.rows.values()];
  options(document.getElementById("filter-tenant"), new Set(all.map((r) => r.tenant)), "All tenants");
  options(document.getElementById("filter-phase"), new Set(all.map((r) => r.phase)), "All phases");
  const f = fleet.filter;
  const shown = all.filter((r) => (!f.tenant || r.tenant === f.tenant) &&
    (!f.phase || r.phase === f.phase) &&
    (!f.text || r.name.toLowerCase().includes(f.text) ||
      (r.account || "").toLowerCase().includes(f.text))).sort(compare);
  body.replaceChildren(...shown.map(fleetRow));
  for (const th of document.querySelectorAll("#fleet th")) {
    th.setAttribute("aria-sort", th.dataset.col === fleet.sort
      ? (fleet.dir > 0 ? "ascending" : "descending") : "none");
  }
  const empty = document.getElementById("fleet-empty");
  empty.hidden = shown.length > 0;
  empty.textContent = all.length ? "No bot matches these filters." :
    "There is no bot you may see. A tenant sees its own bots; a cluster user those its RBAC lets it list.";
  setCount(`${shown.length} of ${all.length} bots · live`);
  fleet.rendered = Date.now();
  document.body.dataset.fleetVersion = String(Number(document.body.dataset.fleetVersion || 0) + 1);
}

function cell(label, cls, ...children) {
  return el("td", { "data-label": label, class: cls }, ...children);
}

// A row's element is kept while its bot's data is the same object: an update of one bot among
// 1,000 builds one row, not 1,000. The cache is dropped every 30 s (relative times).
function fleetRow(r) {
  const key = r.namespace + "/" + r.name;
  const cached = fleet.nodes.get(key);
  if (cached && cached.item === r) return cached.node;
  const node = buildRow(r);
  fleet.nodes.set(key, { item: r, node });
  return node;
}

function buildRow(r) {
  const href = `/console/bots/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}`;
  return el("tr", { "data-bot": r.namespace + "/" + r.name, "data-phase": r.phase },
    cell("Bot", "name", el("a", { href, text: r.name }), el("span", { class: "ns", text: r.namespace })),
    cell("Tenant", "tenant", r.tenant),
    cell("Phase", "phase", el("span", { class: "badge phase-" + r.phase, text: r.phase })),
    cell("Account", "account", r.account || "—"),
    cell("Ready", "ready", r.ready === "True" ? "yes" : r.ready === "False" ? "no" : "unknown"),
    cell("Last connected", "last", el("span", { title: r.lastConnected || "", text: ago(r.lastConnected) })),
    cell("Restarts", "restarts", String(r.restarts)),
    cell("In (1 h)", "messages-in", count(r.messagesIn)),
    cell("Out (1 h)", "messages-out", count(r.messagesOut)));
}

function count(n) {
  return n === null || n === undefined ? "—" : String(n);
}

// --- routing ---------------------------------------------------------------------------------

function route() {
  if (!state.me) { renderLogin(); return; }
  document.getElementById("who").textContent = (state.me.kind === "tenant" ? "tenant " : "") + state.me.name;
  document.getElementById("signout").hidden = false;
  const m = location.pathname.match(/^\/console\/bots\/([^/]+)\/([^/]+)$/);
  if (m) renderBot(decodeURIComponent(m[1]), decodeURIComponent(m[2]));
  else renderFleet();
  main().focus({ preventScroll: true });
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest && ev.target.closest("a[href^='/console/']");
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || a.classList.contains("skip")) return;
  ev.preventDefault();
  history.pushState(null, "", a.getAttribute("href"));
  route();
});
window.addEventListener("popstate", route);

async function boot() {
  document.getElementById("signout").addEventListener("click", signOut);
  const r = await call("GET", API + "/me");
  state.me = r.status === 200 ? r.data : null;
  route();
}

boot();
