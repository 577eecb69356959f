// The fleet tiers' live updates (the monolith's and the controller's console): their small
// standard-library server does not stream, so this stands in for EventSource, before
// console.js and bot.js use it. It asks the same /console/api/stream URL every 2 s for the
// events a stream would have sent ({events: [{event, data}]}) and hands them to the page's
// listeners: one request per open page for the whole fleet, never one per bot.
"use strict";

(function () {
  const INTERVAL_MS = 2000;

  class PollingSource {
    constructor(url) {
      this.url = url;
      this.listeners = {};
      this.onerror = null;
      this.closed = false;
      this.timer = null;
      this.poll();
    }

    addEventListener(name, fn) { (this.listeners[name] = this.listeners[name] || []).push(fn); }

    close() { this.closed = true; clearTimeout(this.timer); }

    async poll() {
      if (this.closed) return;
      try {
        const resp = await fetch(this.url, { credentials: "same-origin",
          headers: { "Accept": "application/json" } });
        if (resp.status === 401) { this.emit("signedout", "{}"); return; }
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        const body = await resp.json();
        for (const ev of body.events || []) this.emit(ev.event, JSON.stringify(ev.data));
      } catch (e) {
        if (this.onerror && !this.closed) this.onerror(e);
      }
      if (!this.closed) this.timer = setTimeout(() => this.poll(), INTERVAL_MS);
    }

    emit(name, data) {
      if (this.closed) return;
      for (const fn of this.listeners[name] || []) fn({ data });
    }
  }

  window.EventSource = PollingSource;
  // The sign-in takes the fleet's control token (WABOT_CONTROLLER_TOKEN): console.js words its
  // form for that when this is set.
  window.WABOT_FLEET_CONSOLE = true;
})();
