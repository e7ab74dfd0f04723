// Ablation study page: verdict, detectable effect, per-arm and per-seed numbers, pooled
// tests, curves and runs; refreshes while runs train and when asked for another effect.
"use strict";

(function () {
  const { el, table, plot, fmt, DASH } = dom;
  const initial = JSON.parse(document.getElementById("study-data").textContent);
  const url = `/api/groups/${initial.group.id}/ablation`;
  let effect = null;  // the effect (points) the reader asked about; null: the study's own

  const one = (v) => fmt.fixed(v, 1);
  // Every ± says what it is: sd here (spread between seeds), CI where an interval is meant.
  const meanSd = (s) => (s.mean == null ? DASH : s.sd == null ? `${one(s.mean)}%` : `${one(s.mean)}% ± ${one(s.sd)} sd`);
  const runLink = (id, text) => el("a", { href: `/runs/${id}` }, text);
  const kv = (pairs) => pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]);

  function seedsText(d) {
    if (d.effect == null || d.mde == null) return "needs 2+ seed pairs with a spread";
    const seeds = d.seeds_needed == null ? `more than ${d.seeds_cap}` : `about ${d.seeds_needed}`;
    return `${seeds} seeds would detect an effect of ${one(d.effect)} points`;
  }

  function drawDifference(d, metric) {
    const diff = d.difference;
    const t = diff.t_test;
    const ci = diff.low == null ? "needs 2+ seed pairs" : `${fmt.pts(diff.low)} to ${fmt.pts(diff.high)}`;
    document.getElementById("difference").replaceChildren(...kv([
      [`mean d (${metric})`, diff.mean == null ? DASH : fmt.pts(diff.mean)],
      ["95% CI of mean d", ci],
      ["sd of d over seeds", diff.sd == null ? DASH : `${one(diff.sd)} pts`],
      ["n (seed pairs)", String(diff.n)],
      ["paired t-test", !t ? DASH : t.t == null ? `every seed the same d, ${fmt.pValue(t.p)}`
        : `t(${t.df}) = ${fmt.fixed(t.t, 2)}, ${fmt.pValue(t.p)}`],
      ["smallest detectable effect", diff.mde == null ? DASH : `${one(diff.mde)} pts (power 80%, α = 0.05)`],
      ["seeds for an effect", seedsText(diff)],
    ]));
    document.getElementById("effect-answer").textContent = diff.effect_asked ? seedsText(diff) : "";
  }

  function drawArms(d) {
    const [base, treat] = d.arms;
    const rows = d.metrics.map((m) => [m.label, meanSd(base.metrics[m.name]), meanSd(treat.metrics[m.name])]);
    base.rare_recall.forEach((r, i) => rows.push([`recall of ${r.class} (rarest)`, meanSd(r), meanSd(treat.rare_recall[i])]));
    rows.push(["finished runs", `${base.finished} of ${base.runs}`, `${treat.finished} of ${treat.runs}`]);
    const node = table([["metric"], [`${base.label} (baseline)`, "num"], [`${treat.label} (treatment)`, "num"]], rows);
    const chosen = d.metrics.findIndex((m) => m.name === d.metric.name);
    if (chosen >= 0) node.tBodies[0].rows[chosen].className = "chosen";
    document.getElementById("arms").replaceChildren(node);
  }

  function drawPairs(d) {
    const [base, treat] = d.arms;
    const rows = d.pairs.map((p) => {
      const m = p.mcnemar;
      return [p.seed, runLink(p.baseline.id, `${one(p.baseline.value)}%`),
        runLink(p.treatment.id, `${one(p.treatment.value)}%`), fmt.pts(p.difference),
        m ? m.only_a : DASH, m ? m.only_b : DASH, m ? fmt.pValue(m.p_exact) : (p.problem || DASH)];
    });
    document.getElementById("pairs").replaceChildren(rows.length
      ? table([["seed"], [base.label, "num"], [treat.label, "num"], ["d = treatment − baseline", "num"],
        ["only baseline right", "num"], ["only treatment right", "num"],
        ["McNemar, these two networks (exact)", "num"]], rows)
      : el("p", { class: "muted" }, "No seed has finished both arms yet."));
  }

  function drawPooled(d) {
    const flip = d.pooled.sign_flip, cmh = d.pooled.mcnemar;
    const items = [];
    if (flip) {
      items.push(["sign-flip permutation test over seeds",
        `${fmt.pValue(flip.p)} (${flip.exact ? "exact" : "sampled"}, ${flip.patterns} sign patterns; smallest possible p with ${flip.n} seeds: ${fmt.general(flip.p_min, 3)})`]);
    }
    if (cmh) {
      items.push(
        ["images only the baseline got right (all seeds)", String(cmh.only_baseline)],
        ["images only the treatment got right (all seeds)", String(cmh.only_treatment)],
        ["pooled McNemar (CMH), no correction", `χ²(1) = ${fmt.fixed(cmh.chi2, 2)}, ${fmt.pValue(cmh.p)}`],
        ["pooled McNemar (CMH), continuity-corrected", `χ²(1) = ${fmt.fixed(cmh.chi2_corrected, 2)}, ${fmt.pValue(cmh.p_corrected)}`],
        ["seeds pooled", `${d.pooled.mcnemar_seeds} (${cmh.images} test images in all)`],
      );
    }
    const node = items.length
      ? el("dl", { class: "kv" }, ...kv(items))
      : el("p", { class: "muted" }, "No seed has finished both arms yet.");
    const about = d.pooled.about_accuracy && cmh
      ? el("p", { class: "ablation-warning" }, `Per-image correctness is about accuracy, not ${d.metric.label}.`) : null;
    document.getElementById("pooled").replaceChildren(...[node, about].filter(Boolean));
  }

  function drawCurves(d) {
    const curves = document.getElementById("curves");
    // Every container first, then draw, so each plot gets its own column's width.
    const divs = d.curves.map((c) => {
      let div = curves.querySelector(`[data-key="${CSS.escape(c.metric)}"]`);
      if (!div) { div = el("div", { class: "plot", "data-key": c.metric }); curves.appendChild(div); }
      return div;
    });
    d.curves.forEach((c, i) => plot(divs[i], c.figure));
  }

  function drawRuns(d) {
    const rows = d.runs.map((r) => {
      const badge = el("span", { class: `badge ${r.status}` }, r.status);
      const pr = r.progress || {};
      const progress = r.status === dom.status.RUN.RUNNING && pr.epochs
        ? `epoch ${pr.epoch}/${pr.epochs}, ETA ${fmt.duration(pr.eta_seconds)}` : "";
      return [runLink(r.id, `#${r.id} ${r.name}`), r.arm_label, r.seed, badge, progress,
        r.value == null ? DASH : `${one(r.value)}%`, fmt.pct(r.accuracy)];
    });
    document.getElementById("runs").replaceChildren(table(
      [["run"], ["arm"], ["seed", "num"], ["status"], ["progress"], [d.metric.label, "num"],
        ["test acc.", "num"]], rows));
  }

  function draw(d) {
    const verdict = document.getElementById("verdict");
    verdict.className = `verdict ${d.verdict.outcome}`;
    verdict.textContent = d.verdict.text;
    document.getElementById("counts").textContent =
      Object.entries(d.counts).map(([s, n]) => `${n} ${s}`).join(", ");
    drawDifference(d, d.metric.label);
    drawArms(d);
    drawPairs(d);
    drawPooled(d);
    drawCurves(d);
    drawRuns(d);
  }

  const fetchStudy = () => api.get(effect == null ? url : `${url}?effect=${encodeURIComponent(effect)}`);

  document.getElementById("effect-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const raw = document.getElementById("effect").value.trim();
    const answer = document.getElementById("effect-answer");
    const value = Number(raw);
    if (raw && !(value > 0 && value <= 100)) { answer.textContent = "an effect between 0 and 100 points"; return; }
    effect = raw ? value : null;
    try { draw(await fetchStudy()); } catch (err) { answer.textContent = `could not estimate: ${err.message}`; }
  });

  draw(initial);
  if (initial.running) {
    api.poll(async () => {
      const d = await fetchStudy();
      draw(d);
      return d.running;
    }, 2000);
  }
})();
