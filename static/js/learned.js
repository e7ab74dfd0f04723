// What the autoencoders learned (templates/runs/_learned.html): draws the server's PCA
// figure of test features (its dropdown picks the encoder). While the run goes on, the
// section waits for the run to end, then takes the page's fresh section, scores included.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  function draw() {
    const source = $("learned-pca-figure"), node = $("learned-pca");
    if (source && node && typeof Plotly !== "undefined") dom.plot(node, JSON.parse(source.textContent));
  }

  async function refresh() {
    const response = await fetch(window.location.pathname, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("learned-card"), now = $("learned-card");
    if (fresh && now) { now.replaceWith(document.adoptNode(fresh)); draw(); }
  }

  draw();
  const card = $("learned-card");
  if (card && card.dataset.waiting === "true") {
    const { id } = JSON.parse($("run-state").textContent);
    api.poll(async () => {
      const run = await api.get(`/api/runs/${id}`);
      if (!dom.status.FINISHED.has(run.status)) return true;
      await refresh();
      return false;  // the run ended: nothing more comes
    }, 5000);
  }
})();
