// Runs page: live rows (status, progress, best, duration), the queue panel, the column
// picker (kept in localStorage), selection for Compare and for bulk actions. Rows are
// updated in place from /api/runs/table; text goes in via textContent.
"use strict";

(() => {
  const state = JSON.parse(document.getElementById("runs-state").textContent);
  const body = document.getElementById("runs-body");
  const table = body.closest("table");
  const selected = new Set();
  const { ACTIVE: LIVE, RUN } = dom.status;
  const FAST = 2000, SLOW = 10000;
  const COLUMNS_KEY = "stacklab.runs.columns";

  const { el, cell, row, fmt } = dom;

  // ---- columns: which show, kept across visits ----
  function storedColumns() {
    try { return JSON.parse(localStorage.getItem(COLUMNS_KEY)) || {}; } catch { return {}; }
  }
  let choice = storedColumns();  // {key: true|false} for the columns the user toggled
  const shown = (key) => {
    const column = state.columns.find((c) => c.key === key);
    return key in choice ? Boolean(choice[key]) : Boolean(column && column.default);
  };
  function applyColumns() {
    table.querySelectorAll("[data-col]").forEach((node) => { node.hidden = !shown(node.dataset.col); });
    document.querySelectorAll("#columns-picker input[name=col]").forEach((box) => { box.checked = shown(box.value); });
  }
  function saveColumns() {
    try { localStorage.setItem(COLUMNS_KEY, JSON.stringify(choice)); } catch (err) { console.error(err); }
    applyColumns();
  }
  document.getElementById("columns-picker").addEventListener("change", (e) => {
    if (!e.target.matches("input[name=col]")) return;
    choice = { ...choice, [e.target.value]: e.target.checked };
    saveColumns();
  });
  document.getElementById("columns-reset").addEventListener("click", () => { choice = {}; saveColumns(); });
  const picker = document.getElementById("columns-picker");
  document.addEventListener("click", (e) => { if (picker.open && !picker.contains(e.target)) picker.open = false; });

  // ---- one row ----
  function statusCell(r) {
    const td = el("td", { class: "status" }, el("span", { class: `badge ${r.status}` }, r.status));
    const p = r.progress;
    if (p) {
      const bar = el("span");
      bar.style.width = `${fmt.fixed(p.fraction * 100, 1)}%`;
      td.append(el("div", { class: "progress", title: `${fmt.int(p.fraction * 100)}%` }, bar));
      const stage = p.stage
        ? `${p.stage}${p.stage_count ? ` (${p.stage_index}/${p.stage_count})` : ""} · epoch ${p.epoch}/${p.epochs} · step ${p.step}/${p.steps}`
        : "starting…";
      const eta = p.eta_seconds != null ? ` · ETA ${fmt.duration(p.eta_seconds)}` : (p.eta_note ? ` · ETA ${p.eta_note}` : "");
      td.append(el("div", { class: "sub" }, stage + eta));
    }
    return td;
  }

  const timeOf = (iso) => (iso ? el("time", { datetime: iso, title: iso }, fmt.localWhen(iso)) : null);

  function bestOf(r) {
    if (!r.best) return el("span", { class: "muted" }, "–");
    const b = r.best, up = b.goal === "max";
    return [el("b", {}, fmt.fixed(b.value, 4)),
      el("div", { class: "small muted", title: `${up ? "higher" : "lower"} is better` },
        `${b.label} ${up ? "↑" : "↓"}${b.epoch ? ` @ ${b.epoch}` : ""}`)];
  }

  function paramsOf(r) {
    return r.key_params.flatMap(([label, value], i) =>
      [`${label} `, el("b", {}, value), i < r.key_params.length - 1 ? " · " : null]);
  }

  function groupOf(r) {
    if (r.group) return el("a", { href: `/groups/${r.group.id}` }, r.group.name);
    return r.study_name ? el("a", { href: `/studies/${r.id}` }, r.study_name) : null;
  }

  // Each picked column's cell, as list.html's col_cell macro draws it: [content, class].
  const CELLS = {
    kind: (r) => [r.kind, null],
    dataset: (r) => [r.dataset, "ds"],
    params: (r) => [paramsOf(r), "params"],
    best: (r) => [bestOf(r), "num best"],
    test_accuracy: (r) => [fmt.pct(r.test_accuracy), "num"],
    balanced_accuracy: (r) => [fmt.pct(r.balanced_accuracy), "num"],
    tags: (r) => [r.tags.map((t) => el("span", { class: "tag" }, t)), "tags"],
    parent: (r) => [r.parent_run_id ? el("a", { href: `/runs/${r.parent_run_id}`, title: r.parent_name || "" }, `#${r.parent_run_id}`) : null, null],
    group: (r) => [groupOf(r), "group"],
    launched_by: (r) => [r.launched_by, null],
    priority: (r) => [String(r.priority), "num prio"],
    duration: (r) => [fmt.duration(r.duration_seconds), "num dur"],
    created: (r) => [timeOf(r.created_at), "when"],
    finished: (r) => [timeOf(r.finished_at), "when"],
  };

  function columnCell(key, r) {
    const [content, cls] = CELLS[key](r);
    const td = cell(Array.isArray(content) && !content.length ? "" : content, cls);
    td.dataset.col = key;
    td.hidden = !shown(key);
    return td;
  }

  function fillRow(tr, r) {
    const box = tr.querySelector("input.pick") || el("input", { type: "checkbox", class: "pick", value: r.id, "aria-label": `select run ${r.id}` });
    box.checked = selected.has(String(r.id));
    tr.dataset.id = r.id;
    tr.dataset.status = r.status;
    const name = el("td", { class: "name" }, el("a", { href: `/runs/${r.id}` }, r.name));
    if (r.archived) name.append(" ", el("span", { class: "tag archived" }, "archived"));
    tr.replaceChildren(...row([
      box, cell(r.id, "num muted"), name, statusCell(r),
      ...state.columns.map((c) => columnCell(c.key, r)),
    ]).children);
    tr.classList.toggle("selected", box.checked);
  }

  function renderRows(page) {
    const existing = new Map([...body.querySelectorAll("tr[data-id]")].map((tr) => [tr.dataset.id, tr]));
    const rows = page.items.map((r) => {
      const tr = existing.get(String(r.id)) || el("tr");
      fillRow(tr, r);
      return tr;
    });
    if (rows.length) body.replaceChildren(...rows);
    else {
      const empty = el("td", { class: "empty" }, "No runs match. ", el("a", { href: "/runs/new" }, "Launch one"), ".");
      empty.colSpan = 4 + state.columns.length;
      body.replaceChildren(el("tr", {}, empty));
    }
    const shownIds = new Set(page.items.map((r) => String(r.id)));
    [...selected].forEach((id) => { if (!shownIds.has(id)) selected.delete(id); });
    updateSelection();
    const total = document.getElementById("runs-total");
    total.textContent = `${page.total} run${page.total === 1 ? "" : "s"}`;
    return page.items.some((r) => LIVE.has(r.status));
  }

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

  // Filters apply as soon as a select changes.
  document.querySelectorAll("#filters select").forEach((s) => s.addEventListener("change", () => s.form.submit()));

  // ---- polling: fast while anything is live, slow otherwise (to notice new work) ----
  const query = new URLSearchParams(Object.entries(state.query).filter(([, v]) => v !== null && v !== ""));
  let timer = null;
  async function tick() {
    clearTimeout(timer);
    let live = false;
    if (!document.hidden) {
      try {
        const [page, queue] = await Promise.all([api.get(`/api/runs/table?${query}`), api.get("/api/queue")]);
        live = renderRows(page) | renderQueue(queue);
      } catch (err) { console.error(err); }
    }
    timer = setTimeout(tick, live ? FAST : SLOW);
  }
  applyColumns();
  dom.localTimes(document);
  updateSelection();
  const liveNow = [...body.querySelectorAll("tr[data-status]")].some((tr) => LIVE.has(tr.dataset.status));
  timer = setTimeout(tick, liveNow ? FAST : SLOW);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) { clearTimeout(timer); tick(); } });
})();
