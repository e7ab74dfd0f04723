// Talking to the JSON API, shared by every page: fetches (with the CSRF header on posts) and
// polling that pauses while the tab is hidden. Building nodes and formatting live in dom.js.
"use strict";

const api = {
  csrf() {
    const m = document.cookie.match(/(?:^|; )stacklab_csrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  },
  // The last answer per path with its ETag: a poll sends If-None-Match and, on 304 (nothing
  // changed, no body), gets the body it had. Callers may mutate what they get: keep text.
  seen: new Map(),
  async get(path) {
    const headers = { Accept: "application/json" };
    const last = api.seen.get(path);
    if (last) headers["If-None-Match"] = last.etag;
    const r = await fetch(path, { headers });
    if (r.status === 304 && last) return JSON.parse(last.text);
    if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
    const text = await r.text();
    const etag = r.headers.get("ETag");
    api.seen.delete(path);
    if (etag) {
      api.seen.set(path, { etag, text });
      if (api.seen.size > 32) api.seen.delete(api.seen.keys().next().value);  // oldest first
    }
    return JSON.parse(text);
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
