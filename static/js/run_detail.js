// One run's page: live status and progress, curves re-drawn when a new epoch lands,
// evaluation and downloads filled in once it finishes, cancel and re-run buttons.
"use strict";

(() => {
  const state = JSON.parse(document.getElementById("run-state").textContent);
  const id = state.id;
  const LIVE = new Set(["queued", "running"]);
  const { el, cell, row, plot, fmt } = dom;
  const $ = (sel) => document.getElementById(sel);
  const show = (node, on) => { if (node) node.hidden = !on; };
  let lastEpochKey = null;
  let stopPolling = null;

  async function drawCurves() {
    const data = await api.get(`/api/runs/${id}/curves?max_points=500`);
    if (!data.points) return;
    show($("curves-empty"), false);
    plot($("curves"), data.figure);
  }

  async function drawConfusion() {
    let data;
    try { data = await api.get(`/api/runs/${id}/confusion`); } catch { return; }
    show($("eval-card"), true);
    plot($("confusion"), data.figure);
    $("eval-acc").textContent = fmt.fixed(data.accuracy, 4);
    $("eval-bacc").textContent = fmt.fixed(data.balanced_accuracy, 4);
    $("per-class").replaceChildren(...Object.entries(data.per_class).map(([cls, s]) => row([cls,
      cell(fmt.fixed(s.precision, 3), "num"), cell(fmt.fixed(s.recall, 3), "num"),
      cell(fmt.fixed(s.f1, 3), "num"), cell(s.support, "num")])));
  }

  async function showFiles() {
    const files = await api.get(`/api/runs/${id}/artifacts`);
    const wanted = files.filter((a) => a.name.endsWith(".weights.h5") || a.name.endsWith(".keras"));
    $("downloads").replaceChildren(...wanted.map((a) => el("a",
      { class: "button", href: `/api/runs/${id}/artifacts/${encodeURIComponent(a.name)}`, download: "" },
      `${a.name} `, el("span", { class: "muted small" }, fmt.mib(a.size)))));
    if (state.kind === "pretrain" && files.some((a) => a.name === "reconstructions.npz") && !$("recon-img")) {
      // The page was rendered before the file existed: reload once to get its row labels.
      window.location.reload();
    }
  }

  function renderProgress(run) {
    const p = run.progress || {};
    const epochs = Math.max(p.epochs || 1, 1), steps = Math.max(p.steps || 1, 1);
    const within = ((p.epoch || 1) - 1 + (p.step || 0) / steps) / epochs;
    const count = Math.max(p.stage_count || 1, 1);
    const fraction = Math.min(1, Math.max(0, ((p.stage_index || 1) - 1 + within) / count));
    $("p-bar").style.width = `${fmt.fixed(fraction * 100, 1)}%`;
    $("p-stage").textContent = p.stage ? `${p.stage}${p.stage_count ? ` (${p.stage_index}/${p.stage_count})` : ""}` : "–";
    $("p-epoch").textContent = p.epoch ? `${p.epoch}/${p.epochs}` : "–";
    $("p-step").textContent = p.step ? `${p.step}/${p.steps}` : "–";
    $("p-rate").textContent = p.images_per_sec ? fmt.int(p.images_per_sec) : "–";
    $("p-eta").textContent = fmt.duration(p.eta_seconds);
    $("p-pct").textContent = `${fmt.int(fraction * 100)}%`;
    return `${p.stage}:${p.epoch}`;
  }

  function renderRun(run) {
    const badge = $("run-status");
    badge.className = `badge ${run.status}`;
    badge.textContent = run.status;
    show($("btn-cancel"), LIVE.has(run.status));
    const ended = run.status === "failed" || run.status === "cancelled";
    show($("btn-requeue"), ended);
    show($("btn-restart"), ended && !!run.checkpoint);
    $("btn-requeue").textContent = run.checkpoint ? "Resume" : "Re-run";
    if (run.attempts !== state.attempts && !LIVE.has(run.status)) {
      state.attempts = run.attempts;
      window.location.reload();  // a new attempt ended: show its row (rare)
    }
    show($("live"), run.status === "running");
    $("run-worker").textContent = run.worker_host ? `${run.worker_host}${run.device ? ` · ${run.device}` : ""}` : "–";
    if (run.started_at) {
      const end = run.finished_at ? new Date(run.finished_at) : new Date();
      $("run-duration").textContent = fmt.duration((end - new Date(run.started_at)) / 1000);
      if ($("run-started").textContent === "–") $("run-started").textContent = fmt.localLong(run.started_at);
    }
    show($("error-card"), !!run.error);
    $("error-msg").textContent = run.error || "";
    $("error-tb").textContent = run.traceback || "";
    show($("error-tb"), !!run.traceback);
  }

  async function tick() {
    const run = await api.get(`/api/runs/${id}`);
    const before = state.status;
    state.status = run.status;
    renderRun(run);
    if (run.status === "running") {
      const key = renderProgress(run);
      if (key !== lastEpochKey) { lastEpochKey = key; await drawCurves(); }
    }
    if (!LIVE.has(run.status)) {
      if (LIVE.has(before)) {  // it just finished: show what it produced
        await drawCurves();
        await Promise.all([drawConfusion(), showFiles()]);
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

  $("btn-cancel").addEventListener("click", () => act(`/api/runs/${id}/cancel`, "Cancel this run? A running job stops after its current batch."));
  $("btn-requeue").addEventListener("click", () => act(`/api/runs/${id}/requeue`, "Run it again? It resumes from its last checkpoint when it has one, keeping the epochs before it."));
  $("btn-restart").addEventListener("click", () => act(`/api/runs/${id}/requeue?fresh=true`, "Start over? Its metrics and files so far are cleared when a worker picks it up."));

  dom.localTimes(document, fmt.localLong);
  drawCurves().catch(console.error);
  if (state.kind === "finetune" && $("eval-card") && !$("eval-card").hidden) drawConfusion();
  if (LIVE.has(state.status)) startPolling();
})();
