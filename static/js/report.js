// An experiment report: while its runs are going, status badges follow the JSON API, and
// when one finishes (or a new finetune appears) the sections with results are re-rendered
// from the server, leaving the notes and their editor alone. Notes: static/js/notes.js.
"use strict";

(() => {
  const state = JSON.parse(document.getElementById("report-state").textContent);
  const SECTIONS = ["summary-card", "pretrain-card", "tunes-card", "finetunes-card", "studies-card"];
  const { FINISHED } = dom.status;
  const $ = (sel) => document.getElementById(sel);

  const statuses = (data) => new Map(
    [data.root, ...data.tunes, ...data.finetunes].map((r) => [String(r.id), r.status]));
  let known = null;

  function setBadges(current) {
    document.querySelectorAll("[data-status-of]").forEach((badge) => {
      const status = current.get(badge.dataset.statusOf);
      if (status && badge.textContent !== status) {
        badge.textContent = status;
        badge.className = `badge ${status}`;
      }
    });
  }

  // The page's own HTML, rendered again: its result sections replace the ones shown.
  async function redrawSections() {
    const response = await fetch(window.location.pathname, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of SECTIONS) {
      const now = $(id), next = fresh.getElementById(id);
      if (now && next) now.replaceWith(document.adoptNode(next));
    }
    dom.localTimes(document);
  }

  async function tick() {
    const data = await api.get(`/api/experiments/${state.id}`);
    const current = statuses(data);
    setBadges(current);
    const changed = known && ([...current].some(([id, s]) => known.get(id) !== s && FINISHED.has(s))
      || current.size !== known.size);
    known = current;
    if (changed) await redrawSections();
    $("report-live").hidden = !data.running;
    return data.running;  // polling stops once nothing is going
  }

  dom.localTimes(document);
  if (state.running) api.poll(tick, 3000);
})();
