// One run's page: live status and progress, curves re-drawn when a new epoch lands,
// reconstructions shown as each pretrain stage ends, evaluation and downloads filled in once
// it finishes, cancel and re-run buttons; a run stopped mid-training is marked partial (its
// weights carry a warning) and a partial finetune can be evaluated now; on a finetune, a
// click on a confusion-matrix cell lists its test images, and each class's most confident
// mistakes are shown.
"use strict";

(() => {
  const state = JSON.parse(document.getElementById("run-state").textContent);
  const partialState = JSON.parse(document.getElementById("run-partial-state").textContent);
  const id = state.id;
  const { ACTIVE: LIVE, STOPPED, RUN } = dom.status;
  const { el, cell, row, plot, fmt } = dom;
  const $ = (sel) => document.getElementById(sel);
  const show = (node, on) => { if (node) node.hidden = !on; };
  let lastEpochKey = null;
  let lastStage = null;
  let stopPolling = null;

  // ---- curves: the controls (static/js/charts.js) act on the figure in the browser; the
  // panel picker asks the server for the kept panels (it lays the small multiples out) ----
  const SYSTEM_PANEL = "system";
  const curveControls = charts.toolbar($("curve-controls"), "run", () => {
    const asked = curveControls.settings.hidden.join(",");
    if (asked !== drawnHidden) drawCurves().catch(console.error);
    else if (lastCurves) redrawCurves();
  });
  let lastCurves = null, drawnHidden = null;

  function redrawCurves() {
    const hidden = curveControls.settings.hidden;
    show($("curves-all-hidden"), lastCurves.data.length === 0 && hidden.length > 0);
    plot($("curves"), charts.transform(lastCurves, curveControls.settings));
  }

  async function drawCurves() {
    const hidden = curveControls.settings.hidden;
    const hide = hidden.filter((k) => k !== SYSTEM_PANEL).join(",");
    const data = await api.get(`/api/runs/${id}/curves?max_points=500${hide ? `&hide=${encodeURIComponent(hide)}` : ""}`);
    drawnHidden = hidden.join(",");
    curveControls.setPanels([...(data.panels || []),
      ...(data.system ? [{ key: SYSTEM_PANEL, label: "Worker process" }] : [])]);
    if (data.system) {  // the worker's samples (seconds, not epochs): shown once there are any
      show($("system-card"), !hidden.includes(SYSTEM_PANEL));
      plot($("system-curves"), data.system);
    }
    if (!data.points) return;  // no epoch yet
    show($("curves-empty"), false);
    lastCurves = data.figure;
    redrawCurves();
  }

  // ---- looking at the errors ----
  const image = (index) => el("img", {
    src: `/api/datasets/${encodeURIComponent(state.dataset)}/test-images/${index}.png?scale=2`,
    alt: `test image ${index}`, loading: "lazy", width: 64, height: 64,
  });

  // One test image with what the model made of it: "#12 cat 93%", then "true dog 2%".
  function thumb(item, names) {
    const pred = names[item.predicted], truth = names[item.true];
    const caption = [el("span", { class: "idx" }, `#${item.index}`), " ",
      el("b", {}, pred), item.p_predicted == null ? "" : ` ${fmt.pct(item.p_predicted, 0)}`];
    if (item.true !== item.predicted) {
      caption.push(el("br"), el("span", { class: "muted" },
        `true ${truth}${item.p_true == null ? "" : ` ${fmt.pct(item.p_true, 0)}`}`));
    }
    const title = item.top.map((t) => `${t.name} ${fmt.pct(t.p)}`).join(", ");
    return el("figure", { class: "thumb", title: title || null, "data-index": item.index },
      image(item.index), el("figcaption", {}, ...caption));
  }

  // A clicked cell lives in the URL (#confusion=3,5 and, past the first page, &offset=48),
  // so a reload or a shared link opens it again; its images come a page at a time, of the
  // size the server answers with (errors.CELL_PAGE: the script keeps no copy of it).
  const cellHash = (t, p, offset) => `#confusion=${t},${p}${offset ? `&offset=${offset}` : ""}`;
  function cellFromHash() {
    const m = /^#confusion=(\d{1,9}),(\d{1,9})(?:&offset=(\d{1,9}))?$/.exec(window.location.hash);
    return m ? { t: Number(m[1]), p: Number(m[2]), offset: Number(m[3] || 0) } : null;
  }
  function setHash(hash) {
    const url = `${window.location.pathname}${window.location.search}${hash}`;
    if (url !== `${window.location.pathname}${window.location.search}${window.location.hash}`) {
      window.history.replaceState(null, "", url);
    }
  }

  let openCell = null;
  async function showCell(trueClass, predClass, offset = 0) {
    const data = await api.get(`/api/runs/${id}/errors?true=${trueClass}&pred=${predClass}`
      + `&offset=${offset}`);
    const page = data.limit;
    openCell = { t: trueClass, p: predClass, offset, page };
    const names = data.class_names;
    $("cell-title").textContent = trueClass === predClass
      ? `${data.true.name}: correctly predicted (${data.total})`
      : `true ${data.true.name}, predicted ${data.pred.name} (${data.total})`;
    const last = offset + data.items.length;
    $("cell-note").textContent = !data.total ? "No test images in this cell."
      : data.items.length ? `Images ${offset + 1}–${last} of ${data.total}, most confident first.`
        : `No images past ${data.total}.`;
    $("cell-thumbs").replaceChildren(...data.items.map((item) => thumb(item, names)));
    show($("cell-pager"), data.total > page);
    $("cell-prev").disabled = offset <= 0;
    $("cell-next").disabled = last >= data.total;
    $("cell-page").textContent = `page ${Math.floor(offset / page) + 1} of ${Math.max(1, Math.ceil(data.total / page))}`;
    setHash(cellHash(trueClass, predClass, offset));
    markCell(trueClass, predClass);
    show($("cell-errors"), true);
    $("cell-errors").scrollIntoView({ block: "nearest" });
  }

  // The open cell outlined on the heatmap (in the --bad colour, so dark mode keeps it).
  function markCell(t, p) {
    const node = $("confusion");
    if (!node || !node.data) return;
    const shown = JSON.parse(node.dataset.shown || "[]");
    const r = shown.indexOf(t), c = shown.indexOf(p);
    const colour = getComputedStyle(document.documentElement).getPropertyValue("--bad").trim();  // always defined (app.css)
    const shapes = t == null || r < 0 || c < 0 ? [] : [{
      type: "rect", xref: "x", yref: "y", x0: c - 0.5, x1: c + 0.5, y0: r - 0.5, y1: r + 0.5,
      line: { color: colour, width: 3 },
    }];
    Plotly.relayout(node, { shapes });
  }

  function closeCell() {
    openCell = null;
    show($("cell-errors"), false);
    setHash("");
    markCell(null, null);
  }

  function turnCellPage(step) {
    if (!openCell) return;
    const offset = Math.max(0, openCell.offset + step * openCell.page);
    showCell(openCell.t, openCell.p, offset).catch(console.error);
  }

  function openCellFromUrl() {
    const asked = cellFromHash();
    if (asked && !(openCell && openCell.t === asked.t && openCell.p === asked.p && openCell.offset === asked.offset)) {
      showCell(asked.t, asked.p, asked.offset).catch(() => closeCell());  // a class that is not there
    }
  }

  async function drawMistakes() {
    const data = await api.get(`/api/runs/${id}/mistakes?per_class=5`);
    const rows = data.classes.filter((c) => c.items.length).map((c) => el("div", { class: "mistake-row" },
      el("div", { class: "mistake-class" }, el("b", {}, c.name), el("br"),
        el("span", { class: "muted small" }, `${c.errors} wrong`)),
      el("div", { class: "thumbs" }, ...c.items.map((item) => thumb(item, data.class_names)))));
    $("mistakes").replaceChildren(...rows);
    show($("mistakes-card"), rows.length > 0);
  }

  // Plotly reports the clicked heatmap cell by row and column of what it shows; `shown`
  // maps those back to class indices (a big data set's heatmap shows some classes only).
  function cellOf(point, shown) {
    const [r, c] = Array.isArray(point.pointIndex) ? point.pointIndex : [point.pointNumber[0], point.pointNumber[1]];
    return [shown[r], shown[c]];
  }

  let clickable = false;
  function listenForCells(node, data) {
    node.dataset.shown = JSON.stringify(data.shown || []);
    if (clickable || !data.errors_url) return;
    clickable = true;
    node.classList.add("clickable");
    node.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      if (!point) return;
      const [t, p] = cellOf(point, JSON.parse(node.dataset.shown));
      if (t != null && p != null) showCell(t, p).catch(console.error);
    });
  }

  async function drawConfusion() {
    let data;
    try { data = await api.get(`/api/runs/${id}/confusion`); } catch { return; }
    show($("eval-card"), true);
    await plot($("confusion"), data.figure);
    listenForCells($("confusion"), data);
    if (data.errors_url) {
      drawMistakes().catch(console.error);
      openCellFromUrl();
    }
    // Fractions read as percentages everywhere (the server's tables and charts too).
    $("eval-acc").textContent = fmt.pct(data.accuracy);
    $("eval-bacc").textContent = fmt.pct(data.balanced_accuracy);
    $("per-class").replaceChildren(...perClassRows(data.per_class));
    showPerClassNote(data.per_class_total);
  }

  // A table of many classes comes a page at a time (the server sends 100 rows per answer).
  const perClassRows = (perClass) => Object.entries(perClass).map(([cls, s]) => row([cls,
    cell(fmt.pct(s.precision), "num"), cell(fmt.pct(s.recall), "num"),
    cell(fmt.pct(s.f1), "num"), cell(s.support, "num")]));

  function showPerClassNote(total) {
    const shown = $("per-class").children.length;
    if (!$("per-class-note")) return;
    $("per-class-shown").textContent = shown;
    show($("per-class-note"), total > shown);
  }

  async function morePerClass() {
    const offset = $("per-class").children.length;
    const data = await api.get(`/api/runs/${id}/confusion?per_class_offset=${offset}`);
    $("per-class").append(...perClassRows(data.per_class));
    showPerClassNote(data.per_class_total);
  }

  // ---- a run stopped mid-training: the badge, its weights' warnings, "evaluate now" ----
  function evaluationNote(p) {
    if (p.evaluation && p.evaluation.partial) return "Evaluated on the test set as it stood (below).";
    if (p.evaluating) return "Already evaluating on the test set…";
    if (p.evaluation_error) return `Evaluation failed: ${p.evaluation_error.error}`;
    if (p.partial && !p.can_evaluate) return "No test evaluation: the run stored no classifier.";
    return p.partial ? "Not evaluated on the test set yet." : "";
  }

  function renderPartial(p) {
    Object.assign(partialState, p);
    const partial = p.partial;
    show($("run-partial"), !!partial);
    show($("partial-card"), !!partial);
    if (partial) {
      $("run-partial").title = partial.text;
      $("partial-text").textContent = partial.has_weights
        ? `This run was ${partial.text}: what it kept is a partial model from epoch `
          + `${partial.weights_epoch}, not a finished training.`
        : `This run was ${partial.text}: it stored no weights.`;
    }
    show($("btn-evaluate"), !!p.can_evaluate);
    if ($("evaluate-note")) $("evaluate-note").textContent = evaluationNote(p);
    const marked = p.evaluation && p.evaluation.partial;
    if ($("eval-partial")) {
      show($("eval-partial"), !!marked);
      if (marked) $("eval-partial").textContent = `partial model${p.evaluation.model_epoch ? ` from epoch ${p.evaluation.model_epoch}` : ""}`;
    }
  }

  async function refreshPartial() {
    renderPartial(await api.get(`/api/runs/${id}/partial`));
  }

  async function evaluateNow() {
    const button = $("btn-evaluate"), box = $("action-error");
    show(box, false);
    button.disabled = true;
    $("evaluate-note").textContent = "Evaluating on the test set…";
    try {
      const answer = await api.post(`/api/runs/${id}/evaluate`);
      if (answer.already_queued) $("evaluate-note").textContent = "Already evaluating on the test set…";
    } catch (err) {
      const detail = err.data && err.data.detail;
      box.textContent = Array.isArray(detail) ? detail.map((d) => d.msg).join("; ") : (detail || err.message);
      show(box, true);
      button.disabled = false;
      return;
    }
    awaitEvaluation();
  }

  function awaitEvaluation() {  // until the queued evaluation ends (stored, failed or skipped)
    api.poll(async () => {
      const p = await api.get(`/api/runs/${id}/partial`);
      if (p.evaluating) return true;  // still on its way
      $("btn-evaluate").disabled = false;
      renderPartial(p);
      if (p.evaluation) await drawConfusion();
      return false;
    }, 1500);
  }

  // ---- reconstructions, stored as each pretrain stage ends ----
  async function refreshRecon() {
    if (!state.features.reconstructions || !$("recon-img")) return;
    const info = await api.get(`/api/runs/${id}/reconstructions`);
    if (!info.url) return;
    const img = $("recon-img");
    if (img.getAttribute("src") !== info.url) img.setAttribute("src", info.url);
    $("recon-labels").replaceChildren(...info.rows.map((label) => el("span", {}, label)));
    show(img, true);
    show($("recon-card"), true);
  }

  async function showFiles() {
    const files = await api.get(`/api/runs/${id}/artifacts`);
    const wanted = files.filter((a) => a.name.endsWith(".weights.h5") || a.name.endsWith(".keras"));
    const notes = partialState.download_notes || {};
    $("downloads").replaceChildren(...wanted.map((a) => {
      const note = notes[a.name];
      return el("a", {
        class: note ? "button partial" : "button", download: "",
        href: `/api/runs/${id}/artifacts/${encodeURIComponent(a.name)}`,
        title: note ? `Partial: ${note}` : null,
      }, `${a.name} `, el("span", { class: "muted small" }, fmt.mib(a.size)),
      note ? el("span", { class: "partial-note" }, ` ⚠ ${note}`) : "");
    }));
    if (files.some((a) => a.name === "reconstructions.npz")) await refreshRecon();
  }

  function stageOf(p) {
    if (p.closing) return ` (after the ${p.stage_count} stages)`;
    return p.stage_count ? ` (${p.stage_index}/${p.stage_count})` : "";
  }

  function renderProgress(run) {
    const p = run.progress || {};
    const epochs = Math.max(p.epochs || 1, 1), steps = Math.max(p.steps || 1, 1);
    const within = ((p.epoch || 1) - 1 + (p.step || 0) / steps) / epochs;
    const count = Math.max(p.stage_count || 1, 1);
    // a closing stage after the planned ones (a pretrain's probe) keeps the bar full
    const fraction = p.closing ? 1 : Math.min(1, Math.max(0, ((p.stage_index || 1) - 1 + within) / count));
    $("p-bar").style.width = `${fmt.fixed(fraction * 100, 1)}%`;
    $("p-stage").textContent = p.stage ? `${p.stage}${stageOf(p)}` : "–";
    $("p-epoch").textContent = p.epoch ? `${p.epoch}/${p.epochs}` : "–";
    $("p-step").textContent = p.step ? `${p.step}/${p.steps}` : "–";
    $("p-rate").textContent = p.images_per_sec ? fmt.int(p.images_per_sec) : "–";
    // The run's one ETA (the queue panel's and the runs table's), or why it is unknown.
    $("p-eta").textContent = run.eta_seconds != null ? fmt.duration(run.eta_seconds) : (run.eta_note || "–");
    $("p-pct").textContent = `${fmt.int(fraction * 100)}%`;
    return `${p.stage}:${p.epoch}`;
  }

  function renderRun(run) {
    const badge = $("run-status");
    badge.className = `badge ${run.status}`;
    badge.textContent = run.status;
    show($("btn-cancel"), LIVE.has(run.status));
    const ended = STOPPED.has(run.status);
    show($("btn-requeue"), ended);
    show($("btn-restart"), ended && !!run.checkpoint);
    $("btn-requeue").textContent = run.checkpoint ? "Resume" : "Re-run";
    if (run.attempts !== state.attempts && !LIVE.has(run.status)) {
      state.attempts = run.attempts;
      window.location.reload();  // a new attempt ended: show its row (rare)
    }
    show($("live"), run.status === RUN.RUNNING);
    $("run-worker").textContent = run.worker_host ? `${run.worker_host}${run.device ? ` · ${run.device}` : ""}` : "–";
    const heard = $("run-heard");
    show(heard, run.status === RUN.RUNNING && run.heard_seconds_ago != null);
    heard.className = `small ${run.worker_silent ? "warn" : "muted"}`;
    heard.textContent = run.heard_seconds_ago == null ? ""
      : `${run.worker_silent ? "silent · " : ""}last heard ${fmt.duration(run.heard_seconds_ago)} ago`;
    show($("run-set-aside"), run.status === RUN.RUNNING && run.set_aside_for != null);
    if (run.set_aside_for != null) {
      $("set-aside-link").href = `/runs/${run.set_aside_for}`;
      $("set-aside-link").textContent = `run #${run.set_aside_for}`;
    }
    $("run-priority").textContent = String(run.priority);
    show($("priority-form"), run.status === RUN.QUEUED);
    if (run.started_at) {
      // The server's figure, by the database's clock (backend/runs/liveness.py duration):
      // to its end, to now while it runs, or to its last sign of life once its worker is
      // silent. The browser's clock never enters it: it may disagree with the database's.
      if (run.duration_seconds != null) $("run-duration").textContent = fmt.duration(run.duration_seconds);
      if ($("run-started").textContent === "–") $("run-started").textContent = fmt.localLong(run.started_at);
    }
    show($("error-card"), !!run.error);
    $("error-msg").textContent = run.error || "";
    $("error-tb").textContent = run.traceback || "";
    show($("error-tb"), !!run.traceback);
  }

  // A queued run's place, reason and start: its row of the queue panel (the same source).
  async function renderWaiting(run) {
    const queued = run.status === RUN.QUEUED;
    const found = queued ? (await api.get("/api/queue")).queued.find((r) => r.id === id) : null;
    show($("run-waiting-label"), !!found);
    show($("run-waiting"), !!found);
    $("run-waiting").textContent = found ? fmt.waiting(found) : "";
  }

  async function tick() {
    const run = await api.get(`/api/runs/${id}`);
    const before = state.status;
    state.status = run.status;
    renderRun(run);
    await renderWaiting(run);
    if (run.status === RUN.RUNNING) {
      const key = renderProgress(run);
      if (key !== lastEpochKey) { lastEpochKey = key; await drawCurves(); }
      const stage = (run.progress || {}).stage;
      if (stage !== lastStage) {  // a stage ended: its reconstructions are stored
        lastStage = stage;
        refreshRecon().catch(console.error);
      }
    }
    if (!LIVE.has(run.status)) {
      if (LIVE.has(before)) {  // it just finished: show what it produced
        await drawCurves();
        await refreshPartial();
        await Promise.all([state.features.evaluation ? drawConfusion() : null, showFiles()]);
      }
      return false;  // stop polling
    }
    return true;
  }

  function startPolling() { if (stopPolling) stopPolling(); stopPolling = api.poll(tick, 1500); }

  async function act(path, confirmText) {
    if (confirmText && !window.confirm(confirmText)) return;
    const box = $("action-error");
    show(box, false);
    try {
      const run = await api.post(path);
      state.status = run.status;
      renderRun(run);
      if (LIVE.has(run.status)) startPolling();
    } catch (err) {
      const detail = err.data && err.data.detail;
      box.textContent = Array.isArray(detail) ? detail.map((d) => d.msg).join("; ") : (detail || err.message);
      show(box, true);
    }
  }

  // A queued run's priority: PATCH /api/runs/{id}; refused (409) once it has started.
  $("priority-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const box = $("action-error");
    show(box, false);
    try {
      const r = await fetch(`/api/runs/${id}`, {
        method: "PATCH",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": api.csrf() },
        body: JSON.stringify({ priority: Number($("priority-input").value) }),
      });
      const data = await r.json().catch(() => ({}));
      if (!r.ok) {
        const detail = data.detail;
        throw new Error(Array.isArray(detail) ? detail.map((d) => d.msg).join("; ") : (detail || `${r.status}`));
      }
      renderRun(data);
    } catch (err) {
      box.textContent = err.message;
      show(box, true);
    }
  });

  if ($("cell-close")) {
    $("cell-close").addEventListener("click", closeCell);
    $("cell-prev").addEventListener("click", () => turnCellPage(-1));
    $("cell-next").addEventListener("click", () => turnCellPage(1));
    window.addEventListener("hashchange", () => { if ($("confusion").classList.contains("clickable")) openCellFromUrl(); });
  }
  if ($("per-class-more")) $("per-class-more").addEventListener("click", () => morePerClass().catch(console.error));
  if ($("btn-evaluate")) $("btn-evaluate").addEventListener("click", () => evaluateNow().catch(console.error));
  $("btn-cancel").addEventListener("click", () => act(`/api/runs/${id}/cancel`, "Cancel this run? A running job stops after its current batch."));
  $("btn-requeue").addEventListener("click", () => act(`/api/runs/${id}/requeue`, "Run it again? It resumes from its last checkpoint when it has one, keeping the epochs before it."));
  $("btn-restart").addEventListener("click", () => act(`/api/runs/${id}/requeue?fresh=true`, "Start over? Its metrics and files so far are cleared when a worker picks it up."));

  dom.localTimes(document, fmt.localLong);
  drawCurves().catch(console.error);
  if (state.features.evaluation && $("eval-card") && !$("eval-card").hidden) drawConfusion();
  if (LIVE.has(state.status)) startPolling();
  if (partialState.evaluating && $("btn-evaluate")) awaitEvaluation();
})();
