// Augmentation study page: numbers, verdict, curves and tables; refreshes while runs train.
"use strict";

(function () {
  const CONFIG = { displaylogo: false, responsive: true };
  const initial = JSON.parse(document.getElementById("study-data").textContent);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const pts = (v) => (v == null ? "–" : `${v >= 0 ? "+" : ""}${v.toFixed(1)} pts`);
  const pct = (v) => (v == null ? "–" : `${(v * 100).toFixed(1)}%`);
  const meanSd = (s) => (s.mean == null ? "–" : `${s.mean.toFixed(1)}%${s.sd == null ? "" : ` ± ${s.sd.toFixed(1)}`}`);
  const pText = (p) => (p == null ? "–" : p < 0.001 ? "p < 0.001" : `p = ${p.toFixed(3)}`);

  function bind(key, text) {
    const node = document.querySelector(`[data-bind="${key}"]`);
    if (node) node.textContent = text;
  }

  function table(headers, rows) {
    const t = el("table");
    const head = t.appendChild(el("thead")).appendChild(el("tr"));
    headers.forEach(([label, cls]) => head.appendChild(el("th", cls ? { class: cls } : {}, label)));
    const body = t.appendChild(el("tbody"));
    rows.forEach((cells) => {
      const tr = body.appendChild(el("tr"));
      cells.forEach((c, i) => {
        const td = tr.appendChild(el("td", headers[i][1] ? { class: headers[i][1] } : {}));
        if (c instanceof Node) td.appendChild(c); else td.textContent = c == null ? "–" : String(c);
      });
    });
    return t;
  }

  function runLink(id, text) { return el("a", { href: `/runs/${id}` }, text); }

  function draw(d) {
    const verdict = document.getElementById("verdict");
    verdict.className = `verdict ${d.verdict.outcome}`;
    verdict.textContent = d.verdict.text;
    document.getElementById("counts").textContent =
      Object.entries(d.counts).map(([s, n]) => `${n} ${s}`).join(", ");

    ["off", "on"].forEach((arm) => {
      const a = d.arms[arm];
      bind(`arms.${arm}.accuracy`, meanSd(a.accuracy));
      bind(`arms.${arm}.balanced_accuracy`, meanSd(a.balanced_accuracy));
      bind(`arms.${arm}.finished`, `${a.finished} of ${a.runs} runs`);
    });
    const acc = d.difference.accuracy;
    bind("diff.accuracy", pts(acc.mean));
    bind("diff.ci", acc.low == null ? "needs 2+ seed pairs" : `${pts(acc.low)} to ${pts(acc.high)}`);
    const t = d.difference.t_test;
    bind("diff.t", t ? `t(${t.df}) = ${t.t.toFixed(2)}, ${pText(t.p)}` : "needs 2+ seed pairs");
    bind("diff.balanced", pts(d.difference.balanced_accuracy.mean));

    const curves = document.getElementById("curves");
    // Every container first, then draw, so each plot gets its own column's width.
    const divs = d.curves.map((c) => {
      let div = curves.querySelector(`[data-key="${CSS.escape(c.metric)}"]`);
      if (!div) { div = el("div", { class: "plot", "data-key": c.metric }); curves.appendChild(div); }
      return div;
    });
    d.curves.forEach((c, i) => Plotly.react(divs[i], c.figure.data, c.figure.layout, CONFIG));

    const pairRows = d.pairs.map((p) => {
      const m = p.mcnemar;
      return [p.seed, runLink(p.off.id, pct(p.off.accuracy)), runLink(p.on.id, pct(p.on.accuracy)),
        pts(p.difference), m ? m.only_a : "–", m ? m.only_b : "–",
        m ? pText(m.p_exact) : (p.problem || "–")];
    });
    document.getElementById("pairs").replaceChildren(pairRows.length
      ? table([["seed"], ["off", "num"], ["on", "num"], ["on − off", "num"],
        ["only off right", "num"], ["only on right", "num"], ["McNemar (exact)", "num"]], pairRows)
      : el("p", { class: "muted" }, "No seed has finished both runs yet."));

    const runRows = d.runs.map((r) => {
      const badge = el("span", { class: `badge ${r.status}` }, r.status);
      const pr = r.progress || {};
      const progress = r.status === "running" && pr.epochs
        ? `epoch ${pr.epoch}/${pr.epochs}, ETA ${api.fmtSeconds(pr.eta_seconds)}` : "";
      return [runLink(r.id, `#${r.id} ${r.name}`), r.arm, r.seed, badge, progress,
        pct(r.accuracy), pct(r.balanced_accuracy)];
    });
    document.getElementById("runs").replaceChildren(table(
      [["run"], ["augment"], ["seed", "num"], ["status"], ["progress"], ["test acc.", "num"],
        ["balanced acc.", "num"]], runRows));
  }

  draw(initial);
  if (initial.running) {
    api.poll(async () => {
      const d = await api.get(`/api/groups/${initial.group.id}/augmentation`);
      draw(d);
      return d.running;
    }, 2000);
  }
})();
