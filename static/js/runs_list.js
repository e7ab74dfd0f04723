// Runs page: the table of runs as its URL says (filters and the filter language, sort by any
// column, built-in, parameter and metric columns, keyset pages), live rows (status,
// progress, best, duration), the queue panel, saved views, and selection for Compare and
// bulk actions. Rows are updated in place from /api/runs/table; text goes in via
// textContent. The view's URL and storage rules live in runs_view.js, the drawing of the
// head and of a row in runs_table.js.
"use strict";

(() => {
  const state = JSON.parse(document.getElementById("runs-state").textContent);
  const body = document.getElementById("runs-body");
  const table = body.closest("table");
  const headRow = table.tHead.rows[0];
  const selected = new Set();
  const { ACTIVE: LIVE, RUN } = dom.status;
  const FAST = 2000, SLOW = 10000;
  const BUILTIN = state.columns;
  const { el, cell, row, fmt } = dom;
  const V = runsView;

  // Header titles the server wrote (the Best column's explanation), kept across redraws.
  const titles = Object.fromEntries([...headRow.querySelectorAll("th[data-col][title]")]
    .map((th) => [th.dataset.col, th.title]));
  const selectAllCell = headRow.cells[0];

  // ---- the view: the URL's query; `stack`: the cursors of the pages before this one ----
  let view = V.read(location.search);
  let stack = (history.state && Array.isArray(history.state.stack)) ? history.state.stack : [];
  let chosen = V.columnsOf(view, BUILTIN);
  let latest = null;  // the last page of rows drawn from JSON
  let catalog = null;  // /api/runs/columns: {key: {label, group, type}} once fetched
  const shown = (key) => chosen.includes(key);
  const dynamic = () => chosen.filter(V.isDynamic);

  const pageUrl = (v = view) => `/runs?${V.query(v)}`;
  // The URL always names its columns, so a link shows the same table in any browser.
  function commit(mode) {
    view = { ...view, columns: chosen };
    history[mode === "push" ? "pushState" : "replaceState"]({ stack }, "", pageUrl());
  }

  // ---- errors the server found in the query (422), shown next to the filter ----
  const filterInput = document.getElementById("f-filter");
  const filterError = document.getElementById("filter-error");
  function showError(text) {
    filterError.textContent = text || "";
    filterError.hidden = !text;
    filterInput.classList.toggle("invalid", Boolean(text));
    if (text) filterInput.setAttribute("aria-invalid", "true"); else filterInput.removeAttribute("aria-invalid");
  }
  // A FastAPI 422's detail as one line: "filter: expected a value at 12".
  function errorText(detail) {
    if (!Array.isArray(detail)) return String(detail || "The server refused this view.");
    return detail.map((d) => {
      const field = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "query").join(".") : "";
      return field && field !== "filter" ? `${field}: ${d.msg}` : d.msg;
    }).join("; ");
  }
  // api.get's error as {status, data}.
  function failure(err) {
    const m = /^(\d{3}) ([\s\S]*)$/.exec(err.message || "");
    if (!m) return { status: 0, data: null };
    try { return { status: Number(m[1]), data: JSON.parse(m[2]) }; } catch { return { status: Number(m[1]), data: null }; }
  }

  // ---- the catalog of columns (built-ins, every param.* and metric.*), fetched when needed ----
  let catalogLoad = null;
  function loadCatalog() {
    catalogLoad = catalogLoad || api.get("/api/runs/columns").then((answer) => {
      catalog = Object.fromEntries(answer.columns.map((c) => [c.key, c]));
      fillPicker(answer.columns);
      fillBuilder(answer.columns);
      renderHead(true);
      return catalog;
    }).catch((err) => {
      catalogLoad = null;
      const note = document.getElementById("columns-note");
      note.hidden = false;
      note.textContent = `Parameter and metric columns could not be listed (${err.message.slice(0, 80)}).`;
    });
    return catalogLoad;
  }
  const bare = (key) => key.replace(/^(param|metric)\./, "");
  const labelOf = (key) => (catalog && catalog[key] ? catalog[key].label : bare(key));
  const typeOf = (key) => (catalog && catalog[key] ? catalog[key].type : null);

  // ---- the head: every column sortable by a button, aria-sort on each (runs_table.js) ----
  let headSig = "";
  function renderHead(force = false) {
    const sig = JSON.stringify([chosen, view.sort, view.order]);
    if (sig === headSig && !force) return;
    headSig = sig;
    runsTable.head(headRow, { first: selectAllCell, builtin: BUILTIN, shown, extra: dynamic(),
      sort: view.sort, order: view.order, titles, labelOf, typeOf });
  }
  headRow.addEventListener("click", (e) => {
    const button = e.target.closest("button.sort");
    if (!button) return;
    const key = button.dataset.sort;
    const order = view.sort === key && view.order === "desc" ? "asc" : "desc";
    show({ ...view, sort: key, order, cursor: "", offset: 0 }, { mode: "push", nextStack: [] });
  });

  // ---- one row (runs_table.js draws it, as list.html does) ----
  const fillRow = (tr, r) => runsTable.fillRow(tr, r, { builtin: BUILTIN, shown, extra: dynamic(), selected });

  function emptyRow(...content) {
    const empty = el("td", { class: "empty" }, ...content);
    empty.colSpan = 4 + BUILTIN.length + dynamic().length;
    body.replaceChildren(el("tr", {}, empty));
  }

  // "1,234 runs", or "10,000+ runs" where the server stopped counting.
  const totalText = (page, noun) => `${page.total}${page.total_is_lower_bound ? "+" : ""} ${noun}${page.total === 1 && !page.total_is_lower_bound ? "" : "s"}`;

  function renderRows(page) {
    const existing = new Map([...body.querySelectorAll("tr[data-id]")].map((tr) => [tr.dataset.id, tr]));
    const rows = page.items.map((r) => {
      const tr = existing.get(String(r.id)) || el("tr");
      fillRow(tr, r);
      return tr;
    });
    if (rows.length) body.replaceChildren(...rows);
    else emptyRow("No runs match. ", el("a", { href: "/runs/new" }, "Launch one"), ".");
    const shownIds = new Set(page.items.map((r) => String(r.id)));
    [...selected].forEach((id) => { if (!shownIds.has(id)) selected.delete(id); });
    updateSelection();
    document.getElementById("runs-total").textContent = totalText(page, "run");
    return page.items.some((r) => LIVE.has(r.status));
  }

  // ---- pages: keyset (next_cursor) where the server gives one, else offsets ----
  const prevLink = document.getElementById("page-prev");
  const nextLink = document.getElementById("page-next");
  let pager = { prev: null, next: null };  // the views the two buttons open
  function renderPager(page) {
    const count = page.items.length;
    const keyset = "next_cursor" in page;
    let first = null;
    if (keyset) {
      pager.prev = view.cursor ? { ...view, cursor: stack.length ? stack.at(-1) : "", offset: 0, stack: stack.slice(0, -1) } : null;
      pager.next = page.next_cursor ? { ...view, cursor: page.next_cursor, offset: 0, stack: [...stack, view.cursor] } : null;
      // A page opened from a link has no pages before it here: where it starts is unknown.
      first = !view.cursor ? 0 : (stack.length ? stack.length * page.limit : null);
    } else {
      const offset = page.offset || 0;
      first = offset;
      pager.prev = offset > 0 ? { ...view, cursor: "", offset: Math.max(0, offset - page.limit), stack: [] } : null;
      pager.next = offset + page.limit < page.total ? { ...view, cursor: "", offset: offset + page.limit, stack: [] } : null;
    }
    document.getElementById("pager-range").textContent = first == null
      ? `${count} shown of ${page.total}${page.total_is_lower_bound ? "+" : ""}`
      : `${count ? first + 1 : 0}–${first + count} of ${page.total}${page.total_is_lower_bound ? "+" : ""}`;
    for (const [link, target] of [[prevLink, pager.prev], [nextLink, pager.next]]) {
      link.hidden = !target;
      if (target) link.href = pageUrl(target);
    }
  }
  for (const [link, which] of [[prevLink, "prev"], [nextLink, "next"]]) {
    link.addEventListener("click", (e) => {
      const target = pager[which];
      if (!target || e.ctrlKey || e.metaKey || e.shiftKey) return;  // a new tab: the link itself
      e.preventDefault();
      const { stack: nextStack, ...next } = target;
      show(next, { mode: "push", nextStack }).then(() => table.scrollIntoView({ block: "nearest" }));
    });
  }

  // ---- the CSV link: the same runs in the same order ----
  const csv = document.getElementById("csv-export");
  function renderCsv(total) {
    csv.href = `/api/runs/table.csv?${V.csvQuery(view)}`;
    const tooMany = total > state.csv_max;
    csv.title = tooMany ? `More than ${state.csv_max} runs match: narrow the filters to export them.`
      : "Every run that matches the filters, in this order, as CSV";
    if (tooMany) csv.setAttribute("aria-disabled", "true"); else csv.removeAttribute("aria-disabled");
  }

  // ---- fetching the view: the latest request wins ----
  let asked = 0;
  async function fetchPage(v) {
    const mine = ++asked;
    try {
      const page = await api.get(`/api/runs/table?${V.apiQuery(v, chosen, state.limit)}`);
      return { page, current: mine === asked };
    } catch (err) {
      const { status, data } = failure(err);
      if (status === 422) return { error: errorText(data && data.detail), current: mine === asked };
      throw err;
    }
  }

  function draw(page) {
    latest = page;
    renderHead();
    const live = renderRows(page);
    renderPager(page);
    renderCsv(page.total);
    return live;
  }

  // Shows `next` (a new sort, filter, page): the URL changes only once the server took it;
  // a refusal stays next to the filter and the table keeps what it showed.
  let showing = 0;  // views asked for and not answered yet: the poll waits for them
  async function show(next, { mode = "push", nextStack = [] } = {}) {
    const before = view;
    view = next;  // the columns and head follow at once; the rows when they come
    let got;
    showing += 1;
    try { got = await fetchPage(next); } catch (err) { view = before; showError(`The runs could not be loaded: ${err.message.slice(0, 200)}`); return false; } finally { showing -= 1; }
    if (!got.current) return false;  // a later view was asked for: it shows instead
    if (got.error) { view = before; renderHead(); showError(got.error); return false; }
    showError("");
    refused = null;
    stack = nextStack;
    commit(mode);
    syncForm();
    draw(got.page);
    markViews();
    return true;
  }

  // ---- filters: the form's fields and the filter expression, applied in place ----
  const form = document.getElementById("filters");
  function syncForm() {
    for (const field of V.FIELDS) {
      const input = form.elements[field];
      if (input) input.value = view.filters[field] || (field === "archived" ? "hide" : "");
    }
    form.elements.sort.value = view.sort;
    form.elements.order.value = view.order;
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const filters = {};
    for (const field of V.FIELDS) {
      const input = form.elements[field];
      const value = input ? input.value.trim() : "";
      if (value && !(field === "archived" && value === "hide")) filters[field] = value;
    }
    show({ ...view, filters, cursor: "", offset: 0 }, { mode: "push", nextStack: [] });
  });
  form.querySelectorAll(".filter-fields select").forEach((s) => s.addEventListener("change", () => form.requestSubmit()));
  filterInput.addEventListener("input", () => { if (!filterError.hidden) showError(""); });

  // The builder writes a clause of the filter language and applies the filter.
  function fillBuilder(columns) {
    const select = document.getElementById("fb-field");
    for (const group of ["param", "metric"]) {
      const holder = select.querySelector(`optgroup[data-group="${group}"]`);
      holder.replaceChildren(...columns.filter((c) => c.group === group)
        .map((c) => el("option", { value: c.key, title: c.key }, c.key)));
    }
  }
  document.getElementById("fb-add").addEventListener("click", () => {
    const value = document.getElementById("fb-value");
    const op = document.getElementById("fb-op").value;
    if (!value.value.trim()) { value.focus(); return; }
    const text = V.clause(document.getElementById("fb-field").value, op, value.value);
    filterInput.value = filterInput.value.trim() ? `${filterInput.value.trim()} and ${text}` : text;
    value.value = "";
    document.getElementById("filter-builder").open = false;
    form.requestSubmit();
  });
  document.getElementById("filter-builder").addEventListener("toggle", (e) => { if (e.target.open) loadCatalog(); });

  // ---- columns: built-ins, parameters and metrics; kept in this browser and in the URL ----
  const picker = document.getElementById("columns-picker");
  const search = document.getElementById("columns-search");
  function fillPicker(columns) {
    for (const group of ["param", "metric"]) {
      const set = picker.querySelector(`fieldset[data-group="${group}"]`);
      const legend = set.querySelector("legend");
      const boxes = columns.filter((c) => c.group === group).map((c) =>
        el("label", { title: c.key }, el("input", { type: "checkbox", name: "col", value: c.key }), ` ${c.label}`,
          c.label === bare(c.key) ? null : el("span", { class: "small muted" }, ` ${c.key}`)));
      set.replaceChildren(legend, ...boxes);
      set.hidden = !boxes.length;
    }
    const note = document.getElementById("columns-note");
    note.hidden = columns.some((c) => c.group !== "builtin");
    note.textContent = "No parameter or metric recorded yet.";
    syncPicker();
    filterPicker();
  }
  function syncPicker() {
    const full = dynamic().length >= V.COLUMNS_MAX;
    picker.querySelectorAll("input[name=col]").forEach((box) => {
      box.checked = shown(box.value);
      box.disabled = full && !box.checked && V.isDynamic(box.value);
    });
  }
  function filterPicker() {
    const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    picker.querySelectorAll("fieldset").forEach((set) => {
      let any = false;
      set.querySelectorAll("label").forEach((label) => {
        const text = `${label.textContent} ${label.querySelector("input").value}`.toLowerCase();
        label.hidden = !words.every((w) => text.includes(w));
        any = any || !label.hidden;
      });
      if (set.dataset.group !== "builtin" || words.length) set.hidden = !any || !set.querySelector("label");
      else set.hidden = false;
    });
  }
  search.addEventListener("input", filterPicker);
  picker.addEventListener("toggle", () => { if (picker.open) { loadCatalog(); search.focus(); } });

  // Applies `keys` as the shown columns: keeps them, puts them in the URL, redraws.
  function setColumns(keys) {
    const before = dynamic();
    chosen = V.cleanColumns(keys, BUILTIN);
    V.keepColumns(chosen, BUILTIN);
    commit("replace");
    syncPicker();
    renderHead();
    markViews();
    const added = dynamic().some((k) => !before.includes(k));
    if (added || !latest) {
      // Built-ins are in every row already; a new parameter or metric needs its values.
      if (!added) table.querySelectorAll("[data-col]").forEach((node) => { node.hidden = !shown(node.dataset.col); });
      else tick();
    } else {
      draw(latest);
    }
  }
  picker.addEventListener("change", (e) => {
    if (!e.target.matches("input[name=col]")) return;
    const key = e.target.value;
    setColumns(e.target.checked ? [...chosen, key] : chosen.filter((k) => k !== key));
  });
  document.getElementById("columns-reset").addEventListener("click", () => setColumns(V.defaults(BUILTIN)));

  // ---- saved views ----
  const viewsList = document.getElementById("views-list");
  function markViews() {
    const here = V.query(view, { page: false }).toString();
    viewsList.querySelectorAll("a").forEach((a) => {
      if (a.dataset.query === here) a.setAttribute("aria-current", "true"); else a.removeAttribute("aria-current");
    });
  }
  function renderViews() {
    const saved = V.views();
    viewsList.replaceChildren(...saved.map((v) => el("li", {},
      el("a", { href: `/runs?${v.query}`, title: v.query, "data-query": v.query, class: "clip" }, v.name),
      el("button", { type: "button", class: "link danger", "data-delete": v.name, "aria-label": `Delete the view ${v.name}`, title: "Delete" }, "×"))));
    document.getElementById("views-empty").hidden = saved.length > 0;
    markViews();
  }
  const viewName = document.getElementById("view-name");
  viewName.maxLength = V.NAME_MAX;
  document.getElementById("view-save").addEventListener("submit", (e) => {
    e.preventDefault();
    // A view keeps its columns even when they are the defaults: it opens the same anywhere.
    const error = V.saveView(viewName.value, V.query({ ...view, columns: chosen }, { page: false }).toString());
    viewName.setCustomValidity(error);
    if (error) { viewName.reportValidity(); return; }
    viewName.value = "";
    renderViews();
  });
  viewName.addEventListener("input", () => viewName.setCustomValidity(""));
  viewsList.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-delete]");
    if (!button) return;
    V.deleteView(button.dataset.delete);
    renderViews();
  });
  window.addEventListener("storage", (e) => { if (e.key === V.VIEWS_KEY) renderViews(); });

  // Menus close on a click elsewhere or on Escape.
  const menus = [...document.querySelectorAll("details.menu-button")];
  document.addEventListener("click", (e) => { menus.forEach((m) => { if (m.open && !m.contains(e.target)) m.open = false; }); });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    menus.forEach((m) => { if (m.open) { m.open = false; m.querySelector("summary").focus(); } });
  });

  // ---- queue panel ----
  const runLink = (id, name) => el("a", { href: `/runs/${id}` }, name || `#${id}`);

  const prio = (p) => (p ? [" ", el("span", { class: "tag prio", title: "priority" }, `p${p}`)] : []);

  function renderQueue(q) {
    dom.fill(document.getElementById("queue-workers"), q.workers.map((w) => {
      const tr = row([w.host, cell(`${w.device}${w.lane_note ? ` · ${w.lane_note}` : ""}`, "muted"),
        w.current_run_id ? runLink(w.current_run_id, w.current_run_name) : el("span", { class: "muted" }, "idle"),
        el("td", { class: `num small ${w.silent ? "warn" : "muted"}`, title: `last heartbeat ${w.last_seen}` },
          `${w.silent ? "silent · " : ""}last heard ${fmt.duration(w.heard_seconds_ago)} ago`)]);
      if (w.silent) tr.classList.add("silent");
      return tr;
    }), "No worker online.");
    dom.fill(document.getElementById("queue-running"), q.running.map((r) => row([
      el("td", {}, runLink(r.id, r.name), ...prio(r.priority),
        r.set_aside_for ? el("span", { class: "small muted" }, " stepping aside for ", runLink(r.set_aside_for, `#${r.set_aside_for}`)) : ""),
      cell(`ETA ${r.eta_seconds == null ? (r.eta_note || "unknown") : fmt.duration(r.eta_seconds)}`, "num muted")])), "Nothing running.");
    // Listed in the order workers will take them (`place`); a held run says why, no time.
    dom.fill(document.getElementById("queue-queued"), q.queued.map((r) => row([
      cell(r.place == null ? "–" : `${r.place}.`, "muted"), el("td", {}, runLink(r.id, r.name), ...prio(r.priority)),
      cell(r.retry ? `${r.waiting} · ${r.retry}` : r.waiting, "small muted reason"),
      el("td", { class: "num muted", title: r.starts_at || "" }, r.starts_in_seconds == null ? "" : `starts in ${fmt.duration(r.starts_in_seconds)}`),
      // An unknown length says so for that run alone; the times after it leave it out (*).
      el("td", { class: "num muted", title: r.finishes_at || "" }, r.estimated_seconds == null ? "length unknown"
        : r.finishes_in_seconds == null ? `takes ${fmt.duration(r.estimated_seconds)}` : `done in ${fmt.duration(r.finishes_in_seconds)}${r.leaves_out && r.leaves_out.length ? "*" : ""}`)])),
    "The queue is empty.");
    const imports = document.getElementById("queue-imports");
    if (imports) {
      dom.fill(imports, (q.imports || []).map((i) => row([cell(i.place == null ? "" : `${i.place}.`, "muted"),
        el("a", { href: "/datasets" }, i.name), cell(i.waiting, "small muted reason"),
        cell(i.finishes_in_seconds == null ? "length unknown"
          : `done in ${fmt.duration(i.finishes_in_seconds)} (${i.estimate_source} ${i.rate_mb_per_second} MB/s)`, "num muted")])),
      "No import waiting.");
    }
    const note = document.getElementById("queue-note");
    if (note) { note.hidden = !q.note; note.textContent = q.note ? `* ${q.note}` : ""; }
    return q.running.length + q.queued.length + (q.imports || []).length > 0;
  }

  // ---- selection: Compare and bulk actions ----
  const compare = document.getElementById("compare-button");
  const bulkButtons = document.querySelectorAll("#bulk-bar button[data-action]");
  function updateSelection() {
    const ids = [...selected];
    document.getElementById("compare-count").textContent = ids.length;
    document.getElementById("bulk-count").textContent = ids.length;
    compare.href = ids.length ? `/compare?ids=${ids.join(",")}` : "/compare";
    compare.classList.toggle("primary", ids.length >= 2);
    compare.setAttribute("aria-disabled", ids.length >= 2 ? "false" : "true");
    bulkButtons.forEach((b) => { b.disabled = !ids.length || ids.length > state.bulk_max; });
  }
  body.addEventListener("change", (e) => {
    if (!e.target.matches("input.pick")) return;
    if (e.target.checked) selected.add(e.target.value); else selected.delete(e.target.value);
    e.target.closest("tr").classList.toggle("selected", e.target.checked);
    updateSelection();
  });
  document.getElementById("select-all").addEventListener("change", (e) => {
    body.querySelectorAll("input.pick").forEach((box) => {
      box.checked = e.target.checked;
      if (box.checked) selected.add(box.value); else selected.delete(box.value);
      box.closest("tr").classList.toggle("selected", box.checked);
    });
    updateSelection();
  });

  // A bulk cancel leaves each run cancelled (a running one once it stops at its next batch).
  const VERBS = { cancel: RUN.CANCELLED, tag: "tagged", untag: "untagged", archive: "archived", unarchive: "unarchived", delete: "deleted" };
  const result = document.getElementById("bulk-result");
  async function bulk(action) {
    const ids = [...selected].map(Number);
    const tag = document.getElementById("bulk-tag").value.trim();
    if ((action === "tag" || action === "untag") && !tag) { result.textContent = "Type a tag first."; return; }
    if (action === "delete" && !window.confirm(
      `Delete ${ids.length} run${ids.length === 1 ? "" : "s"} with ${ids.length === 1 ? "its" : "their"} metrics, files and checkpoints? This cannot be undone.`)) return;
    bulkButtons.forEach((b) => { b.disabled = true; });
    result.textContent = "Working…";
    try {
      const answer = await api.post("/api/runs/bulk", { action, ids, ...(tag ? { tag } : {}) });
      const refused = answer.results.filter((r) => !r.ok);
      result.replaceChildren(`${answer.done} ${VERBS[action]}`, refused.length ? `; ${refused.length} refused: ` : ".",
        ...refused.slice(0, 5).map((r) => el("span", { class: "refusal" }, `#${r.id}: ${r.error}`)));
      if (action === "delete") answer.results.filter((r) => r.ok).forEach((r) => selected.delete(String(r.id)));
    } catch (err) {
      const detail = err.data && err.data.detail;
      result.textContent = `Failed: ${Array.isArray(detail) ? detail.map((d) => d.msg).join("; ") : (detail || err.message)}`;
    }
    clearTimeout(timer);
    await tick();
  }
  bulkButtons.forEach((b) => b.addEventListener("click", () => bulk(b.dataset.action)));

  // ---- polling: fast while anything is live, slow otherwise (to notice new work) ----
  let timer = null;
  let refused = state.filter_error ? (view.filters.filter || "") : null;
  async function tick() {
    clearTimeout(timer);
    let live = false;
    if (!document.hidden) {
      try {
        // A filter the server refused is not asked again (its error stays beside it).
        const ask = !showing && (refused === null || (view.filters.filter || "") !== refused);
        const [got, queue] = await Promise.all([ask ? fetchPage(view) : null, api.get("/api/queue")]);
        live = renderQueue(queue);
        if (got && got.error) {
          refused = view.filters.filter || "";
          showError(got.error);
          emptyRow("Fix the filter to see runs.");
        } else if (got && got.current) live = draw(got.page) || live;
      } catch (err) { console.warn(err); }
    }
    timer = setTimeout(tick, live ? FAST : SLOW);
  }

  window.addEventListener("popstate", (e) => {
    view = V.read(location.search);
    stack = (e.state && Array.isArray(e.state.stack)) ? e.state.stack : [];
    chosen = V.columnsOf(view, BUILTIN);
    syncForm();
    syncPicker();
    renderHead();
    markViews();
    tick();
  });

  // ---- first paint: the server's rows; redrawn at once where the URL asks for more ----
  commit("replace");  // the view in full, this browser's columns included: the shareable form
  const server = state.query || {};
  const servedAsAsked = (view.filters.filter || "") === (server.filter || "")
    && view.sort === state.sort && view.order === state.order
    && (view.cursor || "") === (server.cursor || "") && V.same(dynamic(), state.value_columns || []);
  renderHead();
  syncPicker();
  renderViews();
  table.querySelectorAll("[data-col]").forEach((node) => { node.hidden = !shown(node.dataset.col); });
  dom.localTimes(document);
  dom.localTimes(table, runsTable.shortWhen);
  updateSelection();
  renderCsv(state.total);
  if (dynamic().length) loadCatalog();  // their labels
  const liveNow = [...body.querySelectorAll("tr[data-status]")].some((tr) => LIVE.has(tr.dataset.status));
  if (servedAsAsked) {
    // The server's page as the pager's: its rows, total and next cursor.
    renderPager({ items: [...body.querySelectorAll("tr[data-id]")], total: state.total,
      total_is_lower_bound: state.total_is_lower_bound, limit: state.limit, offset: state.offset, next_cursor: state.next_cursor });
    timer = setTimeout(tick, liveNow ? FAST : SLOW);
  } else tick();
  document.addEventListener("visibilitychange", () => { if (!document.hidden) { clearTimeout(timer); tick(); } });
})();
