// Augmentation study page: numbers, verdict, curves and tables; refreshes while runs train.
"use strict";

(function () {
  const { el, table, plot, fmt } = dom;
  const initial = JSON.parse(document.getElementById("study-data").textContent);
  const meanSd = (s) => (s.mean == null ? "–" : `${fmt.fixed(s.mean, 1)}%${s.sd == null ? "" : ` ± ${fmt.fixed(s.sd, 1)}`}`);

  function bind(key, text) {
    const node = document.querySelector(`[data-bind="${key}"]`);
    if (node) node.textContent = text;
  }

  const runLink = (id, text) => el("a", { href: `/runs/${id}` }, text);

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
    bind("diff.accuracy", fmt.pts(acc.mean));
    bind("diff.ci", acc.low == null ? "needs 2+ seed pairs" : `${fmt.pts(acc.low)} to ${fmt.pts(acc.high)}`);
    const t = d.difference.t_test;
    bind("diff.t", t ? `t(${t.df}) = ${fmt.fixed(t.t, 2)}, ${fmt.pValue(t.p)}` : "needs 2+ seed pairs");
    bind("diff.balanced", fmt.pts(d.difference.balanced_accuracy.mean));

    const curves = document.getElementById("curves");
    // Every container first, then draw, so each plot gets its own column's width.
    const divs = d.curves.map((c) => {
      let div = curves.querySelector(`[data-key="${CSS.escape(c.metric)}"]`);
      if (!div) { div = el("div", { class: "plot", "data-key": c.metric }); curves.appendChild(div); }
      return div;
    });
    d.curves.forEach((c, i) => plot(divs[i], c.figure));

    const pairRows = d.pairs.map((p) => {
      const m = p.mcnemar;
      return [p.seed, runLink(p.off.id, fmt.pct(p.off.accuracy)), runLink(p.on.id, fmt.pct(p.on.accuracy)),
        fmt.pts(p.difference), m ? m.only_a : "–", m ? m.only_b : "–",
        m ? fmt.pValue(m.p_exact) : (p.problem || "–")];
    });
    document.getElementById("pairs").replaceChildren(pairRows.length
      ? table([["seed"], ["off", "num"], ["on", "num"], ["on − off", "num"],
        ["only off right", "num"], ["only on right", "num"], ["McNemar (exact)", "num"]], pairRows)
      : el("p", { class: "muted" }, "No seed has finished both runs yet."));

    const runRows = d.runs.map((r) => {
      const badge = el("span", { class: `badge ${r.status}` }, r.status);
      const pr = r.progress || {};
      const progress = r.status === "running" && pr.epochs
        ? `epoch ${pr.epoch}/${pr.epochs}, ETA ${fmt.duration(pr.eta_seconds)}` : "";
      return [runLink(r.id, `#${r.id} ${r.name}`), r.arm, r.seed, badge, progress,
        fmt.pct(r.accuracy), fmt.pct(r.balanced_accuracy)];
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
