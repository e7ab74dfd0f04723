// Runs page: live rows (status, progress, best, duration), the queue panel, and selection
// for Compare. Rows are updated in place from /api/runs/table; text goes in via textContent.
"use strict";

(() => {
  const state = JSON.parse(document.getElementById("runs-state").textContent);
  const body = document.getElementById("runs-body");
  const selected = new Set();
  const LIVE = new Set(["queued", "running"]);
  const FAST = 2000, SLOW = 10000;

  const { el, cell, row, fill, fmt } = dom;

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
      const eta = p.eta_seconds != null ? ` · ETA ${fmt.duration(p.eta_seconds)}` : "";
      td.append(el("div", { class: "sub" }, stage + eta));
    }
    return td;
  }

  function fillRow(tr, r) {
    const box = tr.querySelector("input.pick") || el("input", { type: "checkbox", class: "pick", value: r.id, "aria-label": `select run ${r.id}` });
    box.checked = selected.has(String(r.id));
    tr.dataset.id = r.id;
    tr.dataset.status = r.status;
    const name = el("td", { class: "name" }, el("a", { href: `/runs/${r.id}` }, r.name));
    if (r.tags.length) name.append(el("div", { class: "tags" }, ...r.tags.map((t) => el("span", { class: "tag" }, t))));
    const params = el("td", { class: "params" });
    r.key_params.forEach(([label, value], i) => {
      params.append(`${label} `, el("b", {}, value), i < r.key_params.length - 1 ? " · " : "");
    });
    const best = el("td", { class: "num best" });
    if (r.best) {
      best.append(el("b", {}, fmt.fixed(r.best.value, 4)),
        el("div", { class: "small muted" }, r.best.label + (r.best.epoch ? ` @ ${r.best.epoch}` : "")));
    } else best.append(el("span", { class: "muted" }, "–"));
    tr.replaceChildren(...row([
      box, cell(r.id, "num muted"), r.kind, name, statusCell(r), cell(r.dataset, "ds"), params, best,
      cell(fmt.duration(r.duration_seconds), "num dur"),
      cell(el("time", { datetime: r.created_at, title: r.created_at }, fmt.localWhen(r.created_at)), "when"),
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
    const total = document.getElementById("runs-total");
    total.textContent = `${page.total} run${page.total === 1 ? "" : "s"}`;
    return page.items.some((r) => LIVE.has(r.status));
  }

  // ---- queue panel ----
  const runLink = (id, name) => el("a", { href: `/runs/${id}` }, name || `#${id}`);

  function renderQueue(q) {
    fill(document.getElementById("queue-workers"), q.workers.map((w) => row([w.host, cell(w.device, "muted"),
      w.current_run_id ? runLink(w.current_run_id, w.current_run_name) : el("span", { class: "muted" }, "idle")])),
    "No worker online.");
    fill(document.getElementById("queue-running"), q.running.map((r) => row([runLink(r.id, r.name),
      cell(`ETA ${fmt.duration(r.eta_seconds)}`, "num muted")])), "Nothing running.");
    fill(document.getElementById("queue-queued"), q.queued.map((r, i) => row([cell(`${i + 1}.`, "muted"), runLink(r.id, r.name),
      el("td", { class: "num muted", title: r.blocked ? "" : (r.starts_at || r.waiting) },
        r.blocked ? r.waiting : `starts in ${fmt.duration(r.starts_in_seconds)}`),
      el("td", { class: "num muted", title: r.finishes_at || "" }, `done in ${fmt.duration(r.finishes_in_seconds)}`)])),
    "The queue is empty.");
    return q.running.length + q.queued.length > 0;
  }

  // ---- selection and Compare ----
  const compare = document.getElementById("compare-button");
  function updateCompare() {
    const ids = [...selected];
    document.getElementById("compare-count").textContent = ids.length;
    compare.href = ids.length ? `/compare?ids=${ids.join(",")}` : "/compare";
    compare.classList.toggle("primary", ids.length >= 2);
    compare.setAttribute("aria-disabled", ids.length >= 2 ? "false" : "true");
  }
  body.addEventListener("change", (e) => {
    if (!e.target.matches("input.pick")) return;
    if (e.target.checked) selected.add(e.target.value); else selected.delete(e.target.value);
    e.target.closest("tr").classList.toggle("selected", e.target.checked);
    updateCompare();
  });
  document.getElementById("select-all").addEventListener("change", (e) => {
    body.querySelectorAll("input.pick").forEach((box) => {
      box.checked = e.target.checked;
      if (box.checked) selected.add(box.value); else selected.delete(box.value);
      box.closest("tr").classList.toggle("selected", box.checked);
    });
    updateCompare();
  });
  // Filters apply as soon as a select changes.
  document.querySelectorAll("#filters select").forEach((s) => s.addEventListener("change", () => s.form.submit()));

  // ---- polling: fast while anything is live, slow otherwise (to notice new work) ----
  const query = new URLSearchParams(Object.entries(state.query).filter(([, v]) => v !== null && v !== ""));
  let timer = null;
  async function tick() {
    let live = false;
    if (!document.hidden) {
      try {
        const [page, queue] = await Promise.all([api.get(`/api/runs/table?${query}`), api.get("/api/queue")]);
        live = renderRows(page) | renderQueue(queue);
      } catch (err) { console.error(err); }
    }
    timer = setTimeout(tick, live ? FAST : SLOW);
  }
  dom.localTimes(document);
  updateCompare();
  const liveNow = [...body.querySelectorAll("tr[data-status]")].some((tr) => LIVE.has(tr.dataset.status));
  timer = setTimeout(tick, liveNow ? FAST : SLOW);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) { clearTimeout(timer); tick(); } });
})();
