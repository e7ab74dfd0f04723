// The researcher's notes on a run (a pretrain's are its experiment's), on the run page and
// the experiment report: edit the markdown, save it with PATCH /api/runs/{id}, and show the
// HTML the server rendered from it (raw HTML escaped there, links checked).
"use strict";

(() => {
  const { el } = dom;

  async function save(runId, text) {
    const r = await fetch(`/api/runs/${runId}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": api.csrf() },
      body: JSON.stringify({ notes: text }),
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      const detail = data.detail;
      throw new Error(Array.isArray(detail) ? detail.map((d) => d.msg).join("; ") : (detail || `${r.status}`));
    }
    return data;
  }

  function attach(card) {
    const runId = card.dataset.run;
    const view = card.querySelector(".notes-view");
    const form = card.querySelector(".notes-form");
    const box = form.querySelector("textarea");
    const error = form.querySelector(".notes-error");
    const edit = card.querySelector(".notes-edit");
    let saved = box.value;
    const editing = (on) => { form.hidden = !on; view.hidden = on; edit.hidden = on; };

    edit.addEventListener("click", () => { editing(true); box.focus(); });
    form.querySelector(".notes-cancel").addEventListener("click", () => {
      box.value = saved;
      error.hidden = true;
      editing(false);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const run = await save(runId, box.value);
        saved = run.notes || "";
        // notes_html is the server's rendering: CommonMark with raw HTML turned into text.
        if (run.notes_html) view.innerHTML = run.notes_html;
        else view.replaceChildren(el("p", { class: "muted" }, "No notes yet."));
        card.dispatchEvent(new CustomEvent("notes-saved", { bubbles: true, detail: run }));
        editing(false);
      } catch (err) {
        error.textContent = `Not saved: ${err.message}`;
        error.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
  }

  document.querySelectorAll(".notes-card[data-run]").forEach(attach);
})();
