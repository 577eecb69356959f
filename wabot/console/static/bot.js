// The wabot console: a bot's page (conditions, Events, the pairing QR code or code, actions).
// Loaded before console.js, which holds the helpers (el, call, show, ago) and the routing.
"use strict";

// --- one bot ---------------------------------------------------------------------------------

const bot = { ns: "", name: "", detail: null, extra: null, fetching: false, again: false, timer: null, qrImg: null };
const ACTION_TEXT = {
  suspend: ["Suspend", "Suspend this bot? Its pod stops; its WhatsApp session is kept."],
  resume: ["Resume", "Resume this bot? Its pod starts again and reconnects."],
  restart: ["Restart connection", "Restart this bot's WhatsApp connection? It reconnects at once."],
  pairing: ["New QR code", "Ask WhatsApp for a fresh QR code to link a phone?"],
  logout: ["Log out", "Log this bot out of WhatsApp? The phone is unlinked and the session " +
    "deleted; someone must pair a phone again."],
};

function actionText(a, d) {
  if (a === "pairing" && d && d.pairingMode === "code") {
    return ["New pairing code", "Ask WhatsApp for a fresh code to type on the phone?"];
  }
  return ACTION_TEXT[a] || [a, "Do this?"];
}

// Which of the actions the viewer may take make sense for the bot as it is now.
function applicable(a, d) {
  if (a === "resume") return d.suspended;
  if (d.suspended) return false;
  if (a === "pairing") return !d.account && d.phase !== "Connected";
  if (a === "logout") return Boolean(d.account) || d.phase === "Connected";
  return true;
}

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
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, el("a", { href: "/console/", id: "crumb-fleet", text: "Fleet" }), " / ", d.namespace, " / "),
    el("h1", {}, d.name, " ", el("span", { class: "badge phase-" + d.phase, id: "bot-phase", text: d.phase })),
    el("p", { id: "bot-summary", class: "summary", role: "status", text: d.summary }),
    pairingSection(d),
    el("section", { class: "card", "aria-labelledby": "h-account" },
      el("h2", { id: "h-account", text: "Account" }),
      el("dl", { class: "facts" },
        fact("Linked account", d.account ? d.account + (d.pushName ? " (" + d.pushName + ")" : "") : "none", "bot-account"),
        fact("Tenant", d.tenant),
        fact("Ready", d.ready === "True" ? "yes" : d.ready === "False" ? "no" : "unknown"),
        fact("Last connected", ago(d.lastConnected)), fact("Restarts", String(d.restarts)),
        fact("Reconnects", d.reconnects === null || d.reconnects === undefined ? "—" : String(d.reconnects)),
        fact("Pod", d.pod || "none"), fact("Worker reported", ago(d.reportedAt)))),
    errorsSection(d),
    actionsSection(x.actions || []),
    conditionsSection(d.conditions),
    eventsSection(x),
    activitySection(d));
  drawCountdown();
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  document.body.dataset.botVersion = String(Number(document.body.dataset.botVersion || 0) + 1);
}

// Messages over the last hour and the webhook's delivery state (status.worker.activity).
function activitySection(d) {
  const w = d.webhook || { state: "unknown", words: "not reported yet" };
  const num = (n) => (n === null || n === undefined ? "—" : String(n));
  return el("section", { class: "card", "aria-labelledby": "h-webhook", id: "activity" },
    el("h2", { id: "h-webhook", text: "Webhooks" }),
    el("p", { id: "webhook-state", class: "webhook-" + w.state, text: w.words }),
    el("dl", { class: "facts" },
      ...(w.state === "none" || w.state === "unknown" ? [] : [
        fact("Queue", num(w.queueDepth) + (w.queueDepth === 1 ? " event" : " events") +
          " waiting", "webhook-queue"),
        fact("Last delivery", w.lastDelivered ? ago(w.lastDelivered) : "none yet", "webhook-last"),
        fact("Last failure", w.lastFailure ? w.lastFailure + ", " + ago(w.lastFailed) : "none",
          "webhook-failure")]),
      fact("Messages in (1 h)", num(d.messagesIn), "bot-messages-in"),
      fact("Messages out (1 h)", num(d.messagesOut), "bot-messages-out")),
    el("p", { class: "muted small", text: d.messagesNote }));
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
  const shown = actions.filter((a) => applicable(a, d));
  if (!actions.length) {
    box.append(el("p", { class: "muted", text: bot.extra ? "You may not change this bot." : "…" }));
  } else if (!shown.length) {
    box.append(el("p", { class: "muted", text: "Nothing to do for this bot as it is now." }));
  } else {
    box.append(el("div", { class: "buttons" }, shown.map((a) =>
      el("button", { type: "button", id: "action-" + a,
        class: a === "suspend" || a === "logout" ? "danger" : "primary",
        text: actionText(a, d)[0], onclick: () => confirmAction(a) }))));
  }
  const last = d.sessionAction;
  if (last) {
    box.append(el("p", { id: "session-action", "data-request": last.requestId || "",
      "data-result": last.result || "",
      text: `Last session action: ${last.action}, ${last.result}` +
        (last.message ? `: ${last.message}` : "") + (last.at ? ` (${ago(last.at)})` : "") }));
  }
  return box;
}

function confirmAction(action) {
  const dialog = document.getElementById("confirm");
  const [label, text] = actionText(action, bot.detail);
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

