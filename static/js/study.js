// Study page: trials table, best trial and Optuna's plots, polled while trials run.
"use strict";

(() => {
  const { el, cell, row, fill, plot, fmt } = dom;
  let view = JSON.parse(document.getElementById("study-data").textContent);

  function drawFigures(figures, missing) {
    for (const node of document.querySelectorAll("[id^='fig-']")) {
      const key = node.id.slice(4);
      const fig = figures[key];
      const note = document.getElementById(`missing-${key}`);
      note.textContent = missing[key] || "";
      node.hidden = !fig;
      if (fig) plot(node, fig);
      else dom.unplot(node);
    }
  }

  function drawRuns(runs) {
    document.getElementById("runs").replaceChildren(...runs.map((r) => row([
      el("a", { href: `/runs/${r.id}` }, r.name), el("span", { class: `badge ${r.status}` }, r.status),
      r.worker_host || "–"])));
  }

  function drawTrials(trials) {
    fill(document.getElementById("trials"), trials.map((t) => row([
      cell(t.number, "num"),
      Object.entries(t.params).map(([k, v]) => el("span", { class: "tag" }, `${k}=${fmt.py(v)}`)),
      cell(fmt.general(t.value, 5), "num"), t.state,
      cell(t.seconds == null ? "–" : `${fmt.fixed(t.seconds, 1)} s`, "num"),
      t.run_id ? el("a", { href: `/runs/${t.run_id}` }, t.run_name) : "–",
    ])), "No trials yet.", 6);
  }

  function drawBest(best, form) {
    const box = document.getElementById("best");
    const link = document.getElementById("pretrain-from-best");
    link.hidden = !form;
    if (form) link.href = form;
    if (!best) { box.replaceChildren(el("p", { class: "muted" }, "No trial has completed yet.")); return; }
    const dl = el("dl", { class: "kv" }, el("dt", {}, "Trial"), el("dd", {}, `#${best.number}`),
      el("dt", {}, "Value"), el("dd", {}, fmt.general(best.value, 5)));
    for (const [k, v] of Object.entries(best.params)) dl.append(el("dt", {}, k), el("dd", {}, fmt.py(v)));
    box.replaceChildren(dl);
  }

  function draw(data) {
    drawRuns(data.runs);
    drawTrials(data.trials);
    drawBest(data.best, data.pretrain_form);
    if (data.figures) drawFigures(data.figures, data.missing || {});
    document.getElementById("live").hidden = !data.live;
    view = { ...data, figures: data.figures || view.figures };
  }

  drawFigures(view.figures || {}, view.missing || {});
  if (view.live) {
    api.poll(async () => {
      const data = await api.get(`/api/studies/${view.run_id}?version=${encodeURIComponent(view.version)}`);
      draw(data);
      return data.live;
    }, 2000);
  }
})();
