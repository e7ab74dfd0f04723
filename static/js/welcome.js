// First-run page: one button queues the demo (POST /api/demo) and opens its pretrain's page;
// after the demo, the page says what it found and what to do next.
"use strict";

(() => {
  // While the demo runs, its pretrain and study are watched; once none of their runs is
  // active (the server's done flag, over the same runs) the page reloads to say what the demo
  // found and what to do next.
  const next = document.getElementById("demo-next");
  if (next && next.dataset.done === "false") {
    const { pretrain, group } = next.dataset;
    api.poll(async () => {
      const run = await api.get(`/api/runs/${pretrain}`);
      if (dom.status.ACTIVE.has(run.status)) return true;
      if (group && (await api.get(`/api/groups/${group}/ablation`)).running) return true;
      window.location.reload();
      return false;
    }, 5000);
  }
})();

(() => {
  const button = document.getElementById("launch-demo");
  if (!button) return;
  const error = document.getElementById("demo-error");
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.textContent = "Queuing the demo…";
    error.replaceChildren();
    try {
      const demo = await api.post("/api/demo", { dataset: document.getElementById("demo-dataset").value });
      window.location.assign(demo.url);
    } catch (err) {
      const detail = err.data && err.data.detail;
      const messages = Array.isArray(detail) ? detail.map((d) => d.msg) : [detail || `The demo could not start (${err.message}).`];
      error.replaceChildren(...messages.map((m) => dom.el("div", {}, m)));
      button.disabled = false;
      button.textContent = "Run the demo";
    }
  });
})();
