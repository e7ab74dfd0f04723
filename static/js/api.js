// Talking to the JSON API, shared by every page: fetches (with the CSRF header on posts) and
// polling that pauses while the tab is hidden. Building nodes and formatting live in dom.js.
"use strict";

const api = {
  csrf() {
    const m = document.cookie.match(/(?:^|; )stacklab_csrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  },
  async get(path) {
    const r = await fetch(path, { headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
    return r.json();
  },
  async post(path, body) {
    const r = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": api.csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { const e = new Error(`${r.status}`); e.status = r.status; e.data = data; throw e; }
    return data;
  },
  // Calls fn every `ms` while the tab is visible; stops when fn returns false.
  poll(fn, ms) {
    let timer = null;
    const tick = async () => {
      let again = true;
      if (!document.hidden) { try { again = (await fn()) !== false; } catch (e) { console.error(e); } }
      if (again) timer = setTimeout(tick, ms);
    };
    tick();
    return () => clearTimeout(timer);
  },
};
