// The runs page's view: what its URL query says (filters, the `filter` expression, sort,
// order, columns, page) and what the browser keeps of it (the chosen columns, the saved
// views, both in localStorage). No drawing here: runs_list.js draws; this is the one place
// that reads and writes the query, so a saved view, a shared link and the page agree.
// A classic script loaded before runs_list.js; it exposes one global, `runsView`.
"use strict";

const runsView = (() => {
  // The filter fields of the page (RunFilter's, plus the filter language's expression).
  const FIELDS = ["filter", "kind", "status", "dataset", "tag", "q", "archived"];
  const COLUMNS_KEY = "stacklab.runs.columns";
  const VIEWS_KEY = "stacklab.runs.views";
  const VIEWS_MAX = 50;  // saved views kept in one browser
  const NAME_MAX = 80;  // a saved view's name
  const QUERY_MAX = 4000;  // a saved view's query (a filter is capped far below this)
  const COLUMNS_MAX = 30;  // parameter and metric columns shown at once
  const KEY_MAX = 210;  // "metric." + a 200-character key
  // A parameter or metric column's key (the server's `param.<name>` / `metric.<key>`).
  const DYNAMIC = /^(param|metric)\.[^\s,]+$/;

  const isDynamic = (key) => typeof key === "string" && key.length <= KEY_MAX && DYNAMIC.test(key);

  // The keys of `keys` that name a column, built-ins first in the table's order, then the
  // parameter and metric columns in the order chosen (at most COLUMNS_MAX of them).
  function cleanColumns(keys, builtin) {
    const known = new Set(builtin.map((c) => c.key));
    const wanted = new Set(keys);
    const dynamic = [...new Set(keys.filter(isDynamic))].slice(0, COLUMNS_MAX);
    return [...builtin.map((c) => c.key).filter((k) => known.has(k) && wanted.has(k)), ...dynamic];
  }

  const defaults = (builtin) => builtin.filter((c) => c.default).map((c) => c.key);
  const same = (a, b) => a.length === b.length && a.every((k, i) => k === b[i]);

  // ---- the URL ----
  // {filters: {field: text}, sort, order, columns: [keys] | null (none asked), cursor, offset}
  function read(search) {
    const p = new URLSearchParams(search);
    const filters = {};
    for (const field of FIELDS) {
      const value = (p.get(field) || "").trim();
      if (value && !(field === "archived" && value === "hide")) filters[field] = value;
    }
    return {
      filters,
      sort: p.get("sort") || "created",
      order: p.get("order") === "asc" ? "asc" : "desc",
      columns: p.has("columns") ? p.get("columns").split(",").map((k) => k.trim()).filter(Boolean) : null,
      cursor: p.get("cursor") || "",
      offset: Math.max(0, Number.parseInt(p.get("offset"), 10) || 0),
    };
  }

  // The page's own query: what a link, a saved view or a reload needs to show the same.
  // `page: false` leaves the position out (a saved view opens at its first page).
  function query(view, { page = true } = {}) {
    const p = new URLSearchParams(view.filters);
    p.set("sort", view.sort);
    p.set("order", view.order);
    if (view.columns) p.set("columns", view.columns.join(","));
    if (page && view.cursor) p.set("cursor", view.cursor);
    else if (page && view.offset) p.set("offset", String(view.offset));
    return p;
  }

  // /api/runs/table's query for the view: the parameter and metric columns it must fill.
  function apiQuery(view, shown, limit) {
    const p = query({ ...view, columns: null });
    const dynamic = shown.filter(isDynamic);
    if (dynamic.length) p.set("columns", dynamic.join(","));
    p.set("limit", String(limit));
    return p;
  }

  // The wide CSV's query: the same runs in the same order (every parameter and metric).
  const csvQuery = (view) => query({ ...view, columns: null }, { page: false });

  // ---- the filter language (store/runs/search.py): a clause the builder writes ----
  // A plain ASCII word (a number, a date, a name) stays bare; anything else is quoted, with
  // \" and \\ escaped (search.py's _WORD and _quoted): a quoted value is always text.
  const BARE = /^[A-Za-z0-9_.:\/+@-]+$/;
  const KEYWORD = /^(and|in|all)$/i;
  const literal = (v) => (BARE.test(v) && !KEYWORD.test(v) ? v : `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`);
  // `field op value`; `in` and `all` take the comma-separated values as a list.
  function clause(field, op, value) {
    if (op === "in" || op === "all") {
      const items = String(value).split(",").map((s) => s.trim()).filter(Boolean).map(literal);
      return `${field} ${op} (${items.join(", ")})`;
    }
    return `${field} ${op} ${literal(String(value).trim())}`;
  }

  // ---- storage ----
  function load(key, fallback) {
    try { const v = JSON.parse(localStorage.getItem(key)); return v == null ? fallback : v; } catch { return fallback; }
  }
  function store(key, value) {
    try {
      if (value == null) localStorage.removeItem(key); else localStorage.setItem(key, JSON.stringify(value));
      return true;
    } catch (err) { return false; }  // storage full or off: the URL still carries the view
  }

  // The columns this browser last chose: a list of keys, or the older {key: shown} toggles.
  function storedColumns(builtin) {
    const kept = load(COLUMNS_KEY, null);
    if (Array.isArray(kept)) return cleanColumns(kept.filter((k) => typeof k === "string"), builtin);
    if (kept && typeof kept === "object") {
      const shown = builtin.filter((c) => (c.key in kept ? Boolean(kept[c.key]) : c.default));
      return shown.map((c) => c.key);
    }
    return null;
  }

  // The columns to show: the URL's, else this browser's, else the defaults.
  function columnsOf(view, builtin) {
    if (view.columns) return cleanColumns(view.columns, builtin);
    return storedColumns(builtin) || defaults(builtin);
  }

  // Keeps a choice of columns; the defaults are no choice (the URL leaves them out).
  function keepColumns(keys, builtin) {
    const isDefault = same(keys, defaults(builtin));
    store(COLUMNS_KEY, isDefault ? null : keys);
    return isDefault ? null : keys;
  }

  // ---- saved views: [{name, query}], newest last ----
  function views() {
    const kept = load(VIEWS_KEY, []);
    if (!Array.isArray(kept)) return [];
    return kept.filter((v) => v && typeof v.name === "string" && typeof v.query === "string")
      .slice(0, VIEWS_MAX);
  }

  // Saves `search` under `name` (replacing a view of that name); returns an error text or "".
  function saveView(name, search) {
    const clean = String(name).trim();
    if (!clean) return "Name the view first.";
    if (clean.length > NAME_MAX) return `A view's name is ${NAME_MAX} characters at most.`;
    if (search.length > QUERY_MAX) return `This view is too long to keep (${QUERY_MAX} characters at most).`;
    const others = views().filter((v) => v.name !== clean);
    if (others.length >= VIEWS_MAX) return `${VIEWS_MAX} views at most: delete one first.`;
    return store(VIEWS_KEY, [...others, { name: clean, query: search }]) ? "" : "This browser does not keep data for this page.";
  }

  function deleteView(name) { store(VIEWS_KEY, views().filter((v) => v.name !== name)); }

  return {
    FIELDS, COLUMNS_MAX, NAME_MAX, VIEWS_KEY, isDynamic, cleanColumns, defaults, same,
    read, query, apiQuery, csvQuery, literal, clause, columnsOf, keepColumns, views, saveView, deleteView,
  };
})();
