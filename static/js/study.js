// Study page: trials table, best trial and Optuna's plots, polled while trials run.
"use strict";

(() => {
  const PLOT_CONFIG = { displaylogo: false, responsive: true };
  let view = JSON.parse(document.getElementById("study-data").textContent);

  const el = (tag, text, cls) => {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  };
  const fmt = (v) => (v == null ? "–" : Number(v).toPrecision(5).replace(/\.?0+$/, ""));

  function drawFigures(figures, missing) {
    for (const node of document.querySelectorAll("[id^='fig-']")) {
      const key = node.id.slice(4);
      const fig = figures[key];
      const note = document.getElementById(`missing-${key}`);
      note.textContent = missing[key] || "";
      node.hidden = !fig;
      if (fig) Plotly.react(node, fig.data, fig.layout, PLOT_CONFIG);
      else Plotly.purge(node);
    }
  }

  function drawRuns(runs) {
    const body = document.getElementById("runs");
    body.replaceChildren(...runs.map((r) => {
      const tr = el("tr"), link = el("a", r.name);
      link.href = `/runs/${r.id}`;
      tr.append(el("td"), el("td"), el("td", r.worker_host || "–"));
      tr.children[0].append(link);
      tr.children[1].append(el("span", r.status, `badge ${r.status}`));
      return tr;
    }));
  }

  function drawTrials(trials) {
    const body = document.getElementById("trials");
    if (!trials.length) {
      const td = el("td", "No trials yet.", "muted");
      td.colSpan = 6;
      body.replaceChildren(el("tr"));
      body.firstChild.append(td);
      return;
    }
    body.replaceChildren(...trials.map((t) => {
      const tr = el("tr"), params = el("td"), run = el("td");
      for (const [k, v] of Object.entries(t.params)) params.append(el("span", `${k}=${v}`, "tag"));
      if (t.run_id) {
        const link = el("a", t.run_name);
        link.href = `/runs/${t.run_id}`;
        run.append(link);
      } else run.textContent = "–";
      tr.append(el("td", t.number, "num"), params, el("td", fmt(t.value), "num"),
        el("td", t.state), el("td", t.seconds == null ? "–" : `${t.seconds.toFixed(1)} s`, "num"), run);
      return tr;
    }));
  }

  function drawBest(best, request) {
    const box = document.getElementById("best");
    document.getElementById("pretrain").disabled = !request;
    if (!best) { box.replaceChildren(el("p", "No trial has completed yet.", "muted")); return; }
    const dl = el("dl", undefined, "kv");
    dl.append(el("dt", "Trial"), el("dd", `#${best.number}`), el("dt", "Value"), el("dd", fmt(best.value)));
    for (const [k, v] of Object.entries(best.params)) dl.append(el("dt", k), el("dd", String(v)));
    box.replaceChildren(dl);
  }

  function draw(data) {
    drawRuns(data.runs);
    drawTrials(data.trials);
    drawBest(data.best, data.pretrain_request);
    if (data.figures) drawFigures(data.figures, data.missing || {});
    document.getElementById("live").style.display = data.live ? "" : "none";  // .badge beats [hidden]
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
