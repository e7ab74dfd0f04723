// The runs table's drawing: its head (a sort button in every header, aria-sort) and a row
// (every cell as templates/runs/list.html's macros draw it, so a row reads the same after a
// poll redraws it). No state here: runs_list.js says what to draw. A classic script loaded
// before runs_list.js; it exposes one global, `runsTable`.
"use strict";

const runsTable = (() => {
  const { el, cell, row, fmt } = dom;
  const NUMERIC = new Set(["best", "test_accuracy", "balanced_accuracy", "duration", "priority"]);

  // ---- the head: every column sortable by a button, aria-sort on each ----
  // A header that sorts: a button (the keyboard reaches it), aria-sort on the cell.
  function sortHead(key, label, cls, sort, order) {
    const on = sort === key;
    return el("th", { class: cls, "aria-sort": on ? (order === "desc" ? "descending" : "ascending") : "none" },
      el("button", { type: "button", class: on ? "sort on" : "sort", "data-sort": key }, label,
        el("span", { class: "arrow", "aria-hidden": "true" }, on ? (order === "desc" ? "▼" : "▲") : "")));
  }

  // Redraws the head row: `first` (the select-all cell, kept), #, name, status, the built-in
  // columns (hidden unless shown) and the `extra` parameter and metric columns; the focus
  // stays on the header it was on.
  function head(headRow, { first, builtin, shown, extra, sort, order, titles, labelOf, typeOf }) {
    const focused = document.activeElement && headRow.contains(document.activeElement)
      ? document.activeElement.dataset.sort : null;
    const by = (key, label, cls) => sortHead(key, label, cls, sort, order);
    const builtins = builtin.map((c) => {
      const th = by(c.key, c.label, NUMERIC.has(c.key) ? "num" : null);
      th.dataset.col = c.key;
      if (titles[c.key]) th.title = titles[c.key];
      th.hidden = !shown(c.key);
      return th;
    });
    const extras = extra.map((key) => {
      const th = by(key, labelOf(key), typeOf(key) === "number" ? "num" : null);
      th.dataset.col = key;
      th.title = key;
      return th;
    });
    headRow.replaceChildren(first, by("id", "#", "num"), by("name", "Name"), by("status", "Status"),
      ...builtins, ...extras);
    if (focused) { const again = headRow.querySelector(`button[data-sort="${CSS.escape(focused)}"]`); if (again) again.focus(); }
  }

  // ---- one row ----
  function statusCell(r) {
    const td = el("td", { class: "status" }, el("span", { class: `badge ${r.status}` }, r.status));
    const p = r.progress;
    if (p) {
      const bar = el("span");
      bar.style.width = `${fmt.fixed(p.fraction * 100, 1)}%`;
      td.append(el("div", { class: "progress", title: `${fmt.int(p.fraction * 100)}%` }, bar));
      const stage = p.stage
        ? `${p.stage}${p.closing ? ` (after the ${p.stage_count} stages)` : p.stage_count ? ` (${p.stage_index}/${p.stage_count})` : ""} · epoch ${p.epoch}/${p.epochs} · step ${p.step}/${p.steps}`
        : "starting…";
      // The ETA first: a narrow cell shows it, the rest is on hover.
      const eta = p.eta_seconds != null ? `ETA ${fmt.duration(p.eta_seconds)} · ` : (p.eta_note ? `ETA ${p.eta_note} · ` : "");
      // A silent worker says so (backend/runs/liveness.py: the panel's words).
      const silent = p.worker_silent ? `silent · last heard ${fmt.duration(p.heard_seconds_ago)} ago · ` : "";
      const text = eta + silent + stage;
      td.append(el("div", { class: p.worker_silent ? "sub warn" : "sub", title: text }, text));
    }
    return td;
  }

  // A time in the browser's zone, short: "12-06 20:44" this year, "2025-11-03" before.
  function shortWhen(iso) {
    const full = fmt.localWhen(iso);
    return full.startsWith(`${new Date().getFullYear()}-`) ? full.slice(5) : full.slice(0, 10);
  }
  const timeOf = (iso) => (iso ? el("time", { datetime: iso, title: iso }, shortWhen(iso)) : null);
  const clip = (title, ...children) => el("span", { class: "clip", title }, ...children);

  function bestOf(r) {
    if (!r.best) return el("span", { class: "muted" }, "–");
    const b = r.best, up = b.goal === "max";
    return [el("b", {}, fmt.fixed(b.value, 4)),
      el("div", { class: "small muted", title: `${up ? "higher" : "lower"} is better` },
        `${b.label} ${up ? "↑" : "↓"}${b.epoch ? ` @ ${b.epoch}` : ""}`)];
  }

  function paramsOf(r) {
    const title = r.key_params.map(([label, value]) => `${label} ${value}`).join(" · ");
    return clip(title, ...r.key_params.flatMap(([label, value], i) =>
      [`${label} `, el("b", {}, value), i < r.key_params.length - 1 ? " · " : null]));
  }

  function groupOf(r) {
    if (r.group) return el("a", { class: "clip", href: `/groups/${r.group.id}`, title: r.group.name }, r.group.name);
    return r.study_name ? el("a", { class: "clip", href: `/studies/${r.id}`, title: r.study_name }, r.study_name) : null;
  }

  // Each built-in column's cell, as list.html's col_cell macro draws it: [content, class].
  const CELLS = {
    kind: (r) => [r.kind, null],
    dataset: (r) => [clip(r.dataset, r.dataset), "ds"],
    params: (r) => [paramsOf(r), "params"],
    best: (r) => [bestOf(r), "num best"],
    test_accuracy: (r) => [fmt.pct(r.test_accuracy), "num"],
    balanced_accuracy: (r) => [fmt.pct(r.balanced_accuracy), "num"],
    tags: (r) => [clip(r.tags.join(", "), ...r.tags.map((t) => el("span", { class: "tag" }, t))), "tags"],
    parent: (r) => [r.parent_run_id ? el("a", { href: `/runs/${r.parent_run_id}`, title: r.parent_name || "" }, `#${r.parent_run_id}`) : null, null],
    group: (r) => [groupOf(r), "group"],
    launched_by: (r) => [r.launched_by, null],
    priority: (r) => [String(r.priority), "num prio"],
    duration: (r) => [fmt.duration(r.duration_seconds), "num dur"],
    created: (r) => [timeOf(r.created_at), "when"],
    finished: (r) => [timeOf(r.finished_at), "when"],
  };

  function columnCell(key, r, shown) {
    const [content, cls] = CELLS[key](r);
    const td = cell(Array.isArray(content) && !content.length ? "" : content, cls);
    td.dataset.col = key;
    td.hidden = !shown(key);
    return td;
  }

  // A parameter's or metric's value (list.html's value_cell): whole numbers whole, others as
  // "%.4g" (1e-05, 0.8123), flags as the filter language writes them (true/false), text
  // clipped with the whole on hover.
  function valueCell(key, r) {
    const v = r.values ? r.values[key] : undefined;
    let td;
    if (typeof v === "number") td = cell(Number.isInteger(v) && Math.abs(v) < 1e15 ? String(v) : fmt.general(v, 4), "num");
    else if (typeof v === "boolean") td = cell(v ? "true" : "false");
    else if (v == null) td = cell(null, "muted");
    else { const text = typeof v === "string" ? v : JSON.stringify(v); td = cell(clip(text, text), "text"); }
    td.dataset.col = key;
    return td;
  }

  // Redraws a row in place (its check box kept): the built-in columns (hidden unless shown),
  // then the `extra` parameter and metric columns.
  function fillRow(tr, r, { builtin, shown, extra, selected }) {
    const box = tr.querySelector("input.pick") || el("input", { type: "checkbox", class: "pick", value: r.id, "aria-label": `select run ${r.id}` });
    box.checked = selected.has(String(r.id));
    tr.dataset.id = r.id;
    tr.dataset.status = r.status;
    const line = el("span", { class: "name-line" }, el("a", { href: `/runs/${r.id}`, title: r.name }, r.name));
    if (r.archived) line.append(" ", el("span", { class: "tag archived" }, "archived"));
    const name = el("td", { class: "name" }, line);
    tr.replaceChildren(...row([
      box, cell(r.id, "num muted"), name, statusCell(r),
      ...builtin.map((c) => columnCell(c.key, r, shown)),
      ...extra.map((key) => valueCell(key, r)),
    ]).children);
    tr.classList.toggle("selected", box.checked);
  }

  return { head, fillRow, shortWhen };
})();
