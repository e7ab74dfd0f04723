// Compare page: draws the server-built figures and tables, refreshes while a run is running.
"use strict";

(function () {
  const { el, cell, row, plot, fmt } = dom;
  const initial = JSON.parse(document.getElementById("compare-data").textContent);
  const ids = initial.runs.map((r) => r.id).join(",");

  // Plot containers are kept between polls so Plotly only redraws what changed.
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
    items.forEach((item, i) => plot(divs[i], item.figure));
  }

  // One row per metric, one column per run; the best run's cell in bold.
  function table(runs, rows, labelOf, cellText) {
    const head = row([cell("metric", null, "th"), ...runs.map((r) => cell(`#${r.id} ${r.name}`, "num", "th"))]);
    const body = rows.map((line) => row([cell(labelOf(line), "mono"), ...runs.map((r) => {
      const value = line.cells[String(r.id)];
      return cell(value ? cellText(value, line) : "–", line.best_run === String(r.id) ? "num lead" : "num");
    })]));
    return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
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
        (c, line) => (line.goal === "max" ? fmt.pct(c.value) : fmt.metric(c.value))));
    }
    document.getElementById("metrics").replaceChildren(
      table(data.runs, data.metrics, (r) => r.key,
        (c) => `${fmt.metric(c.final)} · kept ${fmt.metric(c.best)} @${c.best_epoch}`));

    const conf = data.confusion;
    drawFigures(document.getElementById("confusion"), conf.matrices, (m) => `m${m.run_id}`);
    const diffs = document.getElementById("differences");
    diffs.replaceChildren();
    conf.differences.forEach((d) => {
      const box = diffs.appendChild(el("div", { class: "grid" }));
      if (d.problem) { box.appendChild(el("p", { class: "muted" }, `${d.title}: ${d.problem}`)); return; }
      const chart = box.appendChild(el("div", { class: "plot" }));
      const list = box.appendChild(el("ul", { class: "recall-changes" }));
      d.sentences.forEach((s) => list.appendChild(el("li", { class: s.verb }, s.text)));
      plot(chart, d.figure);
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
