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

  function drawBest(best, request) {
    const box = document.getElementById("best");
    document.getElementById("pretrain").disabled = !request;
    if (!best) { box.replaceChildren(el("p", { class: "muted" }, "No trial has completed yet.")); return; }
    const dl = el("dl", { class: "kv" }, el("dt", {}, "Trial"), el("dd", {}, `#${best.number}`),
      el("dt", {}, "Value"), el("dd", {}, fmt.general(best.value, 5)));
    for (const [k, v] of Object.entries(best.params)) dl.append(el("dt", {}, k), el("dd", {}, fmt.py(v)));
    box.replaceChildren(dl);
  }

  function draw(data) {
    drawRuns(data.runs);
    drawTrials(data.trials);
    drawBest(data.best, data.pretrain_request);
    if (data.figures) drawFigures(data.figures, data.missing || {});
    document.getElementById("live").hidden = !data.live;
    view = { ...data, figures: data.figures || view.figures };
  }

  document.getElementById("pretrain").addEventListener("click", async (event) => {
    const button = event.currentTarget, msg = document.getElementById("pretrain-msg");
    button.disabled = true;
    msg.textContent = "";
    try {
      const runs = await api.post("/api/runs", view.pretrain_request);
      window.location.href = `/runs/${runs[0].id}`;
    } catch (err) {
      const detail = err.data && err.data.detail;
      msg.textContent = Array.isArray(detail)
        ? detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ")
        : `Could not queue the run (${detail || err.message}).`;
      button.disabled = false;
    }
  });

  drawFigures(view.figures || {}, view.missing || {});
  if (view.live) {
    api.poll(async () => {
      const data = await api.get(`/api/studies/${view.run_id}?version=${encodeURIComponent(view.version)}`);
      draw(data);
      return data.live;
    }, 2000);
  }
})();
