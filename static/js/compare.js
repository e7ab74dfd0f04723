// Compare page: draws the server-built figures and tables (seed groups with mean ± sd, test
// scores, metrics), refreshes while a run is running. Fractions read as percentages.
"use strict";

(function () {
  const { el, cell, row, plot, fmt } = dom;
  const initial = JSON.parse(document.getElementById("compare-data").textContent);
  const ids = initial.runs.map((r) => r.id).join(",");

  // Curve controls (static/js/charts.js), remembered for every compare page: smoothing, the
  // x axis, log y on the figures as sent; the panel picker hides whole charts here.
  let lastCurves = [];
  const controls = charts.toolbar(document.getElementById("curve-controls"), "compare", () => drawCurves(lastCurves));

  function drawCurves(curves) {
    lastCurves = curves;
    controls.setPanels(curves.map((c) => ({ key: c.metric, label: c.label || c.metric })));
    const shown = curves.filter((c) => !controls.settings.hidden.includes(c.metric));
    drawFigures(document.getElementById("curves"), shown, (c) => c.metric,
      (figure) => charts.transform(figure, controls.settings));
    document.getElementById("no-curves").hidden = curves.length > 0;
    document.getElementById("curves-all-hidden").hidden = !(curves.length && !shown.length);
  }

  // Plot containers are kept between polls so Plotly only redraws what changed.
  function drawFigures(container, items, keyOf, shape = (figure) => figure) {
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
    items.forEach((item, i) => plot(divs[i], shape(item.figure)));
  }

  const value = (v, line) => (line.percent ? fmt.pct(v) : fmt.metric(v));

  // "80.0% ± 2.1%" (mean ± sd over the group's seeds); n when a cell has fewer runs.
  function meanSd(c, line, n) {
    const sd = c.sd == null ? " (1 seed)" : ` ± ${value(c.sd, line)}`;
    return `${value(c.mean, line)}${sd}${c.n !== n && c.sd != null ? ` (n=${c.n})` : ""}`;
  }

  function drawGroups(groups) {
    document.getElementById("groups-card").hidden = !groups;
    if (!groups) return;
    const head = row([cell("score", null, "th"),
      ...groups.groups.map((g) => cell(`${g.label} (n=${g.n})`, "num", "th"))]);
    const body = groups.rows.map((line) => row([cell(line.label, "mono"), ...groups.groups.map((g) => {
      const c = line.cells[g.key];
      return cell(c ? meanSd(c, line, g.n) : "–", line.best_group === g.key ? "num lead" : "num");
    })]));
    document.getElementById("groups").replaceChildren(
      el("table", { class: "seed-groups" }, el("thead", {}, head), el("tbody", {}, ...body)));
    const by = groups.by.length ? groups.by.join(", ") : "their shared settings";
    document.getElementById("groups-note").textContent =
      `Runs grouped by ${by}: ${groups.note}. Bold: the one best group on that row (none when several tie).`;
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
      const partial = document.querySelector(`[data-partial-of="${r.id}"]`);
      if (partial) { partial.hidden = !r.partial; partial.title = r.partial ? r.partial.text : ""; }
    });
    drawGroups(data.groups);
    drawCurves(data.curves);

    const tests = document.getElementById("tests");
    tests.replaceChildren();
    if (data.tests.length) {
      tests.appendChild(table(data.runs, data.tests, (r) => r.label,
        (c, line) => `${value(c.value, line)}${c.partial ? " (partial)" : ""}`));
    }
    document.getElementById("metrics").replaceChildren(
      table(data.runs, data.metrics, (r) => r.label || r.key,
        (c, line) => `${value(c.final, line)} · kept ${value(c.best, line)} @${c.best_epoch}`));

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
