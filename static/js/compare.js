// Compare page: draws the server-built figures and tables, refreshes while a run is running.
"use strict";

(function () {
  const CONFIG = { displaylogo: false, responsive: true };
  const initial = JSON.parse(document.getElementById("compare-data").textContent);
  const ids = initial.runs.map((r) => r.id).join(",");

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(v) {
    if (v == null) return "–";
    if (typeof v !== "number") return String(v);
    return Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : v.toPrecision(4);
  }

  // Plot containers are kept between polls so Plotly.react only updates what changed.
  function drawFigures(container, items, keyOf) {
    const seen = new Set(items.map(keyOf));
    container.querySelectorAll("[data-key]").forEach((d) => { if (!seen.has(d.dataset.key)) d.remove(); });
    // Every container first, then draw: a plot drawn before its neighbours exist takes the
    // whole row's width and keeps it.
    const divs = items.map((item) => {
      const key = keyOf(item);
      let div = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
      if (!div) { div = el("div", { class: "plot", "data-key": key }); container.appendChild(div); }
      return div;
    });
    items.forEach((item, i) => Plotly.react(divs[i], item.figure.data, item.figure.layout, CONFIG));
  }

  function table(runs, rows, labelOf, cellText) {
    const t = el("table");
    const head = el("tr");
    head.appendChild(el("th", {}, "metric"));
    runs.forEach((r) => head.appendChild(el("th", { class: "num" }, `#${r.id} ${r.name}`)));
    t.appendChild(el("thead")).appendChild(head);
    const body = t.appendChild(el("tbody"));
    rows.forEach((row) => {
      const tr = body.appendChild(el("tr"));
      tr.appendChild(el("td", { class: "mono" }, labelOf(row)));
      runs.forEach((r) => {
        const cell = row.cells[String(r.id)];
        const td = tr.appendChild(el("td", { class: "num" }, cell ? cellText(cell, row) : "–"));
        if (row.best_run === String(r.id)) td.style.fontWeight = "700";
      });
    });
    return t;
  }

  function draw(data) {
    data.runs.forEach((r) => {
      const badge = document.querySelector(`[data-status-of="${r.id}"]`);
      if (badge) { badge.className = `badge ${r.status}`; badge.textContent = r.status; }
    });
    drawFigures(document.getElementById("curves"), data.curves, (c) => c.metric);
    document.getElementById("no-curves").hidden = data.curves.length > 0;

    const tests = document.getElementById("tests");
    tests.replaceChildren();
    if (data.tests.length) {
      tests.appendChild(table(data.runs, data.tests, (r) => r.label,
        (c, row) => (row.goal === "max" ? `${(c.value * 100).toFixed(1)}%` : fmt(c.value))));
    }
    document.getElementById("metrics").replaceChildren(
      table(data.runs, data.metrics, (r) => r.key,
        (c) => `${fmt(c.final)} · best ${fmt(c.best)} @${c.best_epoch}`));

    const conf = data.confusion;
    drawFigures(document.getElementById("confusion"), conf.matrices, (m) => `m${m.run_id}`);
    const diffs = document.getElementById("differences");
    diffs.replaceChildren();
    conf.differences.forEach((d) => {
      const box = diffs.appendChild(el("div", { class: "grid" }));
      if (d.problem) { box.appendChild(el("p", { class: "muted" }, `${d.title}: ${d.problem}`)); return; }
      const plot = box.appendChild(el("div", { class: "plot" }));
      const list = box.appendChild(el("ul", { class: "recall-changes" }));
      d.sentences.forEach((s) => list.appendChild(el("li", { class: s.verb }, s.text)));
      Plotly.react(plot, d.figure.data, d.figure.layout, CONFIG);
    });
    document.getElementById("no-confusion").hidden = conf.matrices.length > 0;
  }

  draw(initial);
  if (initial.running) {
    api.poll(async () => {
      const data = await api.get(`/api/compare?ids=${encodeURIComponent(ids)}`);
      draw(data);
      return data.running;
    }, 2000);
  }

  const onlyDiff = document.getElementById("only-diff");
  onlyDiff.addEventListener("change", () => {
    document.querySelectorAll("#params tr.same").forEach((tr) => { tr.hidden = onlyDiff.checked; });
  });
})();
