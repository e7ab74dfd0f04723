// Data set pages: the class distribution chart, and on the list the imports being tracked.
"use strict";

const datasetPages = (() => {
  const el = (tag, text, cls) => {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  };

  const chart = document.getElementById("class-distribution");
  if (chart) {
    const fig = JSON.parse(document.getElementById("class-distribution-data").textContent);
    Plotly.react(chart, fig.data, fig.layout, { displaylogo: false, responsive: true });
  }

  async function refreshList() {
    const body = document.getElementById("datasets");
    const datasets = await api.get("/api/datasets");
    body.replaceChildren(...datasets.map((d) => {
      const tr = el("tr"), link = el("a", d.name), name = el("td");
      link.href = `/datasets/${encodeURIComponent(d.name)}`;
      name.append(link);
      const fp = el("td", d.fingerprint.slice(0, 12), "mono");
      fp.title = d.fingerprint;
      tr.append(name, el("td", d.source), el("td", d.n_train, "num"), el("td", d.n_test, "num"),
        el("td", d.class_names.length, "num"), fp, el("td", d.created_at.slice(0, 19).replace("T", " ")));
      return tr;
    }));
  }

  // One row per import; polled until the worker registers the data set or says why not.
  function track(item) {
    const card = document.getElementById("imports-card");
    const body = document.getElementById("imports");
    if (!body) return;
    card.hidden = false;
    const tr = el("tr"), state = el("td", "queued: waiting for a worker");
    tr.append(el("td", item.name), el("td", item.file || ""), state);
    body.prepend(tr);
    api.poll(async () => {
      const status = await api.get(`/api/datasets/imports/${item.import_id}`);
      if (status.state === "pending") {
        if (status.detail === "running") state.textContent = "importing on a worker";
        return true;
      }
      state.replaceChildren();
      if (status.state === "done") {
        const link = el("a", "open the data set");
        link.href = `/datasets/${encodeURIComponent(item.name)}`;
        state.append(el("span", "imported", "badge succeeded"), " ", link);
        refreshList().catch(console.error);
      } else {
        state.append(el("span", "failed", "badge failed"), el("div", status.message || "", "error"));
      }
      return false;
    }, 1500);
  }

  const pending = document.getElementById("pending-imports");
  if (pending) JSON.parse(pending.textContent).forEach(track);
  return { track };
})();
