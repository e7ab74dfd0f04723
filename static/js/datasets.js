// Data set pages: the class distribution chart, and on the list the imports being tracked.
"use strict";

const datasetPages = (() => {
  const { el, cell, row, plot, fmt } = dom;
  const { IMPORT, IMPORT_PHASE, RUN } = dom.status;

  const chart = document.getElementById("class-distribution");
  if (chart) plot(chart, JSON.parse(document.getElementById("class-distribution-data").textContent));

  async function refreshList() {
    const body = document.getElementById("datasets");
    const datasets = await api.get("/api/datasets");
    body.replaceChildren(...datasets.map((d) => row([
      el("a", { href: `/datasets/${encodeURIComponent(d.name)}` }, d.name), d.source,
      cell(d.n_train, "num"), cell(d.n_test, "num"), cell(d.n_classes, "num"),
      el("td", { class: "mono", title: d.fingerprint }, d.fingerprint.slice(0, 12)), fmt.stamp(d.created_at),
    ])));
  }

  // One row per import; polled until the worker registers the data set or says why not.
  function track(item) {
    const card = document.getElementById("imports-card");
    const body = document.getElementById("imports");
    if (!body) return;
    card.hidden = false;
    // Its words come from its row of the queue panel (backend/runs/panel_imports.py): the
    // place, reason and times the panel shows, never a guess made here.
    const state = cell(item.words || item.detail || IMPORT.QUEUED);
    body.prepend(row([item.name, item.file || "", state]));
    api.poll(async () => {
      const status = await api.get(`/api/datasets/imports/${item.import_id}`);
      if (status.state === IMPORT_PHASE.PENDING) {
        state.textContent = status.words || status.detail;
        return true;
      }
      state.replaceChildren();
      if (status.state === IMPORT_PHASE.DONE) {
        const link = el("a", { href: `/datasets/${encodeURIComponent(item.name)}` }, "open the data set");
        state.append(el("span", { class: `badge ${RUN.SUCCEEDED}` }, "imported"), " ", link);
        refreshList().catch(console.error);
      } else {
        state.append(el("span", { class: `badge ${IMPORT_PHASE.FAILED}` }, IMPORT_PHASE.FAILED), el("div", { class: "error" }, status.message || ""));
      }
      return false;
    }, 1500);
  }

  const pending = document.getElementById("pending-imports");
  if (pending) JSON.parse(pending.textContent).forEach(track);
  return { track };
})();
