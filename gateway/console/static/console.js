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
  const form = el("form", { id: "login", class: "card narrow" },
    el("h1", { text: "Sign in" }),
    el("fieldset", {},
      el("legend", { text: "Sign in with" }),
      el("label", { class: "choice" }, el("input", { type: "radio", name: "kind", value: "key",
        checked: true, id: "kind-key" }), " a tenant's API key"),
      el("label", { class: "choice" }, el("input", { type: "radio", name: "kind", value: "token",
        id: "kind-token" }), " a Kubernetes bearer token")),
    el("label", { for: "credential", text: "Key or token" }), input,
    el("p", { id: "cred-help", class: "muted", text: "It is checked by the gateway and never " +
      "stored in this page or in its cookie." }),
    error,
    el("button", { type: "submit", id: "signin", class: "primary", text: "Sign in" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const kind = form.querySelector("input[name=kind]:checked").value;
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
  ["messagesLastHour", "Messages (1 h)"],
];
const fleet = { rows: new Map(), sort: "name", dir: 1, filter: { text: "", tenant: "", phase: "" },
  pending: false, rendered: 0 };

function renderFleet() {
  closeStream();
  fleet.rows.clear();
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
    el("p", { class: "muted small", text: "Messages (1 h): not reported in the bot's status; " +
      "the counts are each worker's wabot_messages_received_total and wabot_messages_sent_total " +
      "(Prometheus, the Grafana dashboard)." }));
  const source = new EventSource(API + "/stream");
  state.source = source;
  source.addEventListener("rows", (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.snapshot) fleet.rows.clear();
    for (const item of msg.items) {
      const key = item.namespace + "/" + item.name;
      if (item.gone) fleet.rows.delete(key); else fleet.rows.set(key, item);
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
  if (x === null || x === undefined) x = "";
  if (y === null || y === undefined) y = "";
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

function fleetRow(r) {
  const href = `/console/bots/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}`;
  return el("tr", { "data-bot": r.namespace + "/" + r.name, "data-phase": r.phase },
    cell("Bot", "name", el("a", { href, text: r.name }), el("span", { class: "ns", text: r.namespace })),
    cell("Tenant", "tenant", r.tenant),
    cell("Phase", "phase", el("span", { class: "badge phase-" + r.phase, text: r.phase })),
    cell("Account", "account", r.account || "—"),
    cell("Ready", "ready", r.ready === "True" ? "yes" : r.ready === "False" ? "no" : "unknown"),
    cell("Last connected", "last", el("span", { title: r.lastConnected || "", text: ago(r.lastConnected) })),
    cell("Restarts", "restarts", String(r.restarts)),
    cell("Messages (1 h)", "messages", el("span", { title: "not reported in the bot's status",
      text: r.messagesLastHour === null ? "n/a" : String(r.messagesLastHour) })));
}

// --- one bot ---------------------------------------------------------------------------------

const bot = { ns: "", name: "", detail: null, extra: null, fetching: false, again: false, timer: null, qrImg: null };
const ACTION_TEXT = {
  suspend: ["Suspend", "Suspend this bot? Its pod stops; its WhatsApp session is kept."],
  resume: ["Resume", "Resume this bot? Its pod starts again and reconnects."],
};

function renderBot(ns, name) {
  closeStream();
  Object.assign(bot, { ns, name, detail: null, extra: null });
  show(el("p", { class: "muted", text: "Loading " + ns + "/" + name + "…" }));
  const source = new EventSource(API + "/stream?bot=" + encodeURIComponent(ns + "/" + name));
  state.source = source;
  source.addEventListener("bot", (ev) => {
    const msg = JSON.parse(ev.data);
    const item = msg.items[0];
    if (!item) return;
    if (item.gone) { renderMissing(); return; }
    bot.detail = item;
    drawBot();
    refreshExtra();
  });
  source.addEventListener("signedout", () => renderLogin("Your session ended; sign in again."));
  clearInterval(bot.timer);
  bot.timer = setInterval(() => { if (bot.detail) { drawCountdown(); } }, 1000);
}

function renderMissing() {
  closeStream();
  show(el("section", { class: "card" }, el("h1", { text: bot.ns + "/" + bot.name }),
    el("p", { class: "empty", id: "bot-missing", text: "There is no such bot, or you may not see it." }),
    el("a", { href: "/console/", text: "Back to the fleet" })));
}

async function refreshExtra() {
  if (bot.fetching) { bot.again = true; return; }
  bot.fetching = true;
  const r = await call("GET", `${API}/bots/${encodeURIComponent(bot.ns)}/${encodeURIComponent(bot.name)}`);
  bot.fetching = false;
  if (r.status === 200) { bot.extra = r.data; drawBot(); }
  else if (r.status === 404) renderMissing();
  else if (r.status === 401) renderLogin("Your session ended; sign in again.");
  if (bot.again) { bot.again = false; refreshExtra(); }
}

function drawBot() {
  const d = bot.detail;
  if (!d) return;
  const x = bot.extra || {};
  const focused = document.activeElement && document.activeElement.id;
  show(
    el("nav", { class: "crumbs" }, el("a", { href: "/console/", text: "Fleet" }), " / ", d.namespace, " / "),
    el("h1", {}, d.name, " ", el("span", { class: "badge phase-" + d.phase, id: "bot-phase", text: d.phase })),
    el("p", { id: "bot-summary", class: "summary", role: "status", text: d.summary }),
    pairingSection(d),
    el("section", { class: "card", "aria-labelledby": "h-account" },
      el("h2", { id: "h-account", text: "Account" }),
      el("dl", { class: "facts" },
        fact("Linked account", d.account ? d.account + (d.pushName ? " (" + d.pushName + ")" : "") : "none", "bot-account"),
        fact("Tenant", d.tenant), fact("Ready", d.ready),
        fact("Last connected", ago(d.lastConnected)), fact("Restarts", String(d.restarts)),
        fact("Reconnects", d.reconnects === null || d.reconnects === undefined ? "—" : String(d.reconnects)),
        fact("Pod", d.pod || "none"), fact("Worker reported", ago(d.reportedAt)))),
    errorsSection(d),
    actionsSection(x.actions || []),
    conditionsSection(d.conditions),
    eventsSection(x),
    el("section", { class: "card", "aria-labelledby": "h-webhook" },
      el("h2", { id: "h-webhook", text: "Webhook deliveries" }),
      el("p", { class: "muted", text: d.webhookNote })));
  drawCountdown();
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  document.body.dataset.botVersion = String(Number(document.body.dataset.botVersion || 0) + 1);
}

function fact(label, value, id) {
  return [el("dt", { text: label }), el("dd", { id: id || null, text: value })];
}

function pairingSection(d) {
  const box = el("section", { class: "card pairing", "aria-labelledby": "h-pair", id: "pairing" },
    el("h2", { id: "h-pair", text: "Pairing" }));
  if (d.phase === "Connected" || d.account && !d.pairingMethod) {
    box.append(el("p", { text: "Linked. Nothing to scan." }));
  } else if (d.pairingMethod === "code" && d.pairingCode) {
    box.append(el("p", { text: "On the phone: WhatsApp › Linked devices › Link a device › Link with phone number instead, then type:" }),
      el("p", { class: "code", id: "pairing-code", text: d.pairingCode }),
      el("p", { class: "expiry", id: "pairing-expiry", "data-expires": d.pairingExpires || "" }));
  } else if (d.qr) {
    const src = `${API}/bots/${encodeURIComponent(d.namespace)}/${encodeURIComponent(d.name)}/qr.svg?v=${d.qr}`;
    // The same image element while the payload is the same: a redraw does not refetch it.
    if (!bot.qrImg || bot.qrImg.dataset.version !== d.qr) {
      bot.qrImg = el("img", { id: "qr", src, alt: "QR code to link a phone to this bot",
        "data-version": d.qr, width: "320", height: "320" });
    }
    box.append(el("p", { text: "On the phone: WhatsApp › Settings › Linked devices › Link a device, and scan:" }),
      bot.qrImg,
      el("p", { class: "expiry", id: "pairing-expiry", "data-expires": d.pairingExpires || "" }));
  } else {
    box.append(el("p", { class: "empty", id: "pairing-none", text:
      "No QR code or pairing code right now: " + (d.phase === "Pending" ? "the bot is starting." :
      "the worker has not offered one (it shows here as soon as WhatsApp sends one).") }));
  }
  return box;
}

function drawCountdown() {
  const node = document.getElementById("pairing-expiry");
  if (!node) return;
  const at = Date.parse(node.dataset.expires || "");
  if (Number.isNaN(at)) { node.textContent = ""; return; }
  const s = Math.round((at - Date.now()) / 1000);
  node.textContent = s > 0 ? `Expires in ${s} s; a new one appears here by itself.` :
    "Expired; waiting for WhatsApp to send a new one.";
}

function errorsSection(d) {
  const items = [];
  if (d.lastError) items.push(el("li", { text: "Last error: " + d.lastError }));
  if (d.errorReason) items.push(el("li", { text: "Needs a fix by a person: " + d.errorReason }));
  for (const c of d.conditions || []) {
    if (c.type === "Degraded" && c.status === "True") items.push(el("li", { text: `Degraded (${c.reason}): ${c.message}` }));
  }
  return el("section", { class: "card", "aria-labelledby": "h-errors", id: "errors" },
    el("h2", { id: "h-errors", text: "Recent errors" }),
    items.length ? el("ul", {}, items) : el("p", { class: "muted", text: "No error reported." }));
}

function actionsSection(actions) {
  const box = el("section", { class: "card", "aria-labelledby": "h-actions", id: "actions" },
    el("h2", { id: "h-actions", text: "Actions" }));
  const d = bot.detail;
  const shown = actions.filter((a) => !(a === "suspend" && d.suspended) && !(a === "resume" && !d.suspended));
  if (!shown.length) {
    box.append(el("p", { class: "muted", text: bot.extra ? "You may not change this bot." : "…" }));
    return box;
  }
  box.append(el("div", { class: "buttons" }, shown.map((a) =>
    el("button", { type: "button", id: "action-" + a, class: a === "suspend" ? "danger" : "primary",
      text: (ACTION_TEXT[a] || [a])[0], onclick: () => confirmAction(a) }))));
  return box;
}

function confirmAction(action) {
  const dialog = document.getElementById("confirm");
  const [label, text] = ACTION_TEXT[action] || [action, "Do this?"];
  document.getElementById("confirm-title").textContent = label + " " + bot.name + "?";
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = label;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok") return;
    const r = await call("POST", `${API}/bots/${encodeURIComponent(bot.ns)}/${encodeURIComponent(bot.name)}/actions/${action}`);
    const msg = r.status === 200 ? `${label}: done.` : `${label} refused: ${(r.data && r.data.error) || r.status}`;
    announce(msg);
    const note = el("p", { id: "action-result", class: r.status === 200 ? "ok" : "error", role: "alert", text: msg });
    const old = document.getElementById("action-result");
    if (old) old.remove();
    document.getElementById("actions").append(note);
    refreshExtra();
  };
  dialog.showModal();
  document.getElementById("confirm-cancel").focus();
}

function conditionsSection(conds) {
  const rows = (conds || []).map((c) => el("tr", {},
    el("th", { scope: "row", text: c.type }),
    el("td", { text: c.status === "True" ? "yes" : c.status === "False" ? "no" : "unknown" }),
    el("td", { text: c.message || c.reason }),
    el("td", { title: c.since || "", text: ago(c.since) })));
  return el("section", { class: "card", "aria-labelledby": "h-conds" },
    el("h2", { id: "h-conds", text: "Conditions" }),
    rows.length ? el("table", { class: "plain", id: "conditions" },
      el("thead", {}, el("tr", {}, ["Condition", "", "What it means", "Since"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows)) : el("p", { class: "muted", text: "The operator has not reported yet." }));
}

function eventsSection(x) {
  const box = el("section", { class: "card", "aria-labelledby": "h-events", id: "events" },
    el("h2", { id: "h-events", text: "Recent events" }));
  if (x.eventsError) { box.append(el("p", { class: "muted", text: x.eventsError })); return box; }
  if (!x.events) { box.append(el("p", { class: "muted", text: "…" })); return box; }
  if (!x.events.length) { box.append(el("p", { class: "muted", text: "No recent event." })); return box; }
  box.append(el("ul", { class: "events" }, x.events.map((e) => el("li", { class: e.type === "Warning" ? "warn" : "" },
    el("span", { class: "when", title: e.last || "", text: ago(e.last) }), " ",
    el("strong", { text: e.reason }), e.object === "Pod" ? " (pod)" : "", ": ", e.message,
    e.count > 1 ? ` (${e.count}×)` : ""))));
  return box;
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
