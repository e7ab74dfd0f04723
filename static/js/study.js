// Study page: trials table, best trial and the study's plots, polled while trials run; a
// trial's detail (?trial=N in the URL) opens from its row. A pruned trial's value is the
// last epoch's before the pruner stopped it: shown as such, never like a final value.
"use strict";

(() => {
  const { el, cell, row, fill, plot, fmt } = dom;
  let view = JSON.parse(document.getElementById("study-data").textContent);
  const PRUNED_NOTE = "the last epoch's value before the pruner stopped the trial, not a final value";

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

  const lastStep = (t) => (t.intermediate && t.intermediate.length ? t.intermediate[t.intermediate.length - 1] : null);

  // The value cell: a pruned trial's last intermediate value, labelled with its epoch.
  function valueOf(t) {
    if (t.pruned_at == null) return fmt.general(t.value, 5);
    const last = lastStep(t);
    if (!last) return el("span", { class: "pruned-value" }, t.state);
    return el("span", { class: "pruned-value", title: PRUNED_NOTE },
      `${fmt.general(last[1], 5)} `, el("small", {}, `pruned at epoch ${t.pruned_at}`));
  }

  const params = (t) => Object.entries(t.params).map(([k, v]) => el("span", { class: "tag" }, `${k}=${fmt.py(v)}`));
  const duration = (t) => (t.seconds == null ? "–" : `${fmt.fixed(t.seconds, 1)} s`);

  function drawTrials(trials) {
    fill(document.getElementById("trials"), trials.map((t) => row([
      cell(el("a", { href: `?trial=${t.number}#trial-detail`, "data-trial-link": t.number }, String(t.number)), "num"),
      params(t),
      cell(valueOf(t), "num"),
      el("span", { class: `badge trial-state ${t.state}` }, t.state),
      cell(duration(t), "num"),
      t.run_id ? el("a", { href: `/runs/${t.run_id}` }, t.run_name) : "–",
    ], { "data-trial": t.number, class: `trial-row ${t.state}` })), "No trials yet.", 6);
    markChosen();
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

  // ---- one trial's detail ----
  const chosen = () => {
    const n = new URL(location.href).searchParams.get("trial");
    return n === null || n === "" ? null : Number(n);
  };

  function markChosen() {
    const n = chosen();
    document.querySelectorAll("tr[data-trial]").forEach((tr) => {
      tr.classList.toggle("chosen", Number(tr.dataset.trial) === n);
    });
  }

  function detail(t) {
    const last = lastStep(t);
    const dl = el("dl", { class: "kv" },
      el("dt", {}, "State"), el("dd", {}, el("span", { class: `badge trial-state ${t.state}` }, t.state)));
    if (t.pruned_at != null) {  // the server's mark: a pruned trial, stopped after that epoch
      dl.append(el("dt", {}, "Value"), el("dd", { class: "pruned-value" },
        last ? `none: pruned at epoch ${last[0]} (validation loss then ${fmt.general(last[1], 5)}, ${PRUNED_NOTE})`
          : "none: pruned before its first epoch ended"));
    } else {
      dl.append(el("dt", {}, "Value"), el("dd", {}, t.value == null ? "– (no final value yet)" : fmt.general(t.value, 5)));
    }
    for (const [k, v] of Object.entries(t.params)) dl.append(el("dt", {}, k), el("dd", {}, fmt.py(v)));
    dl.append(el("dt", {}, "Duration"), el("dd", {}, duration(t)),
      el("dt", {}, "Run"), el("dd", {}, t.run_id ? el("a", { href: `/runs/${t.run_id}` }, t.run_name) : "–"));
    const steps = t.intermediate || [];
    const values = steps.length
      ? dom.table([["Epoch", "num"], ["Validation loss", "num"], ["", ""]], steps.map(([epoch, value], i) => [
        String(epoch), fmt.general(value, 5),
        t.pruned_at != null && i === steps.length - 1 ? el("span", { class: "pruned-value" }, "pruned here") : ""]))
      : el("p", { class: "muted" }, "No per-epoch value reported.");
    return [dl, el("h3", {}, "Intermediate values"), values];
  }

  function drawDetail() {
    const box = document.getElementById("trial-detail");
    const n = chosen();
    const t = n === null ? null : view.trials.find((x) => x.number === n);
    box.hidden = n === null;
    if (n === null) return;
    document.getElementById("trial-title").textContent = `Trial #${n}`;
    const body = document.getElementById("trial-body");
    if (!t) body.replaceChildren(el("p", { class: "muted" }, `This study has no trial #${n}.`));
    else body.replaceChildren(...detail(t));
  }

  function choose(n) {
    const url = new URL(location.href);
    if (n === null) url.searchParams.delete("trial");
    else url.searchParams.set("trial", String(n));
    url.hash = n === null ? "" : "trial-detail";
    history.replaceState(null, "", url);
    drawDetail();
    markChosen();
    if (n !== null) document.getElementById("trial-detail").scrollIntoView({ block: "nearest" });
  }

  // A row (or its number's link) opens its trial; other links in it keep their own way.
  document.getElementById("trials").addEventListener("click", (event) => {
    const link = event.target.closest("a");
    if (link && !link.hasAttribute("data-trial-link")) return;
    const tr = event.target.closest("tr[data-trial]");
    if (!tr) return;
    event.preventDefault();
    choose(Number(tr.dataset.trial));
  });
  document.getElementById("trial-close").addEventListener("click", () => choose(null));

  function draw(data) {
    view = { ...data, figures: data.figures || view.figures };
    drawRuns(data.runs);
    drawTrials(data.trials);
    drawBest(data.best, data.pretrain_form);
    if (data.figures) drawFigures(data.figures, data.missing || {});
    document.getElementById("live").hidden = !data.live;
    drawDetail();
  }

  drawFigures(view.figures || {}, view.missing || {});
  drawDetail();
  markChosen();
  if (view.live) {
    api.poll(async () => {
      const data = await api.get(`/api/studies/${view.run_id}?version=${encodeURIComponent(view.version)}`);
      draw(data);
      return data.live;
    }, 2000);
  }
})();
