// First-run page: one button queues the demo (POST /api/demo) and opens its pretrain's page.
"use strict";

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
