// Ablation study page: verdict, what it covers, exact power, per-arm and per-seed numbers,
// the per-image tests (apart: they do not test the factor), curves and runs; refreshes while runs train and when asked for another effect.
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
    const cap = (n) => (n == null ? `more than ${d.seeds_cap}` : String(n));
    const seeds = d.seeds_needed == null ? `more than ${d.seeds_cap}` : `about ${d.seeds_needed}`;
    const range = d.seeds_range ? ` (rough guide: ${cap(d.seeds_range.fewest)} to ${cap(d.seeds_range.most)} over the sd's 95% interval)` : "";
    return `${seeds} seeds would detect an effect of ${one(d.effect)} points${range}`;
  }

  function sdText(diff) {
    if (diff.sd == null) return DASH;
    if (!diff.floored) return `${one(diff.sd)} pts`;
    return `${fmt.fixed(diff.sd, 2)} pts observed, below the metric's step: ${fmt.fixed(diff.resolution, 2)} pts used`;
  }

  function testSetText(d) {
    const b = d.test_set;
    if (!b || !b.available) return b ? `not counted: ${b.why}` : DASH;
    return `${fmt.pts(b.low)} to ${fmt.pts(b.high)} (bootstrap over test images, ${b.replicates} replicates)`;
  }

  function combinedText(d) {
    const b = d.test_set;
    if (!b || !b.available || b.combined_low == null) return DASH;
    return `${fmt.pts(b.combined_low)} to ${fmt.pts(b.combined_high)}: ${d.verdicts.words[b.combined_outcome]}`;
  }

  function drawDifference(d, metric) {
    const diff = d.difference;
    const t = diff.t_test;
    const flip = d.pooled.sign_flip;
    const ci = diff.low == null ? "needs 2+ seed pairs with a spread" : `${fmt.pts(diff.low)} to ${fmt.pts(diff.high)}`;
    const judged = new Set(d.verdicts.judged).has(d.verdict.outcome);
    const rows = [
      [`mean d (${metric}, pre-registered)`, diff.mean == null ? DASH : fmt.pts(diff.mean)],
      ["95% CI of mean d (seeds)", ci],
      ["sd of d over seeds", sdText(diff)],
      ["n (seed pairs)", String(diff.n)],
      ["paired t-test over seeds", !t ? DASH : `t(${t.df}) = ${fmt.fixed(t.t, 2)}, ${fmt.pValue(t.p)}`],
      ["sign-flip test over seeds", !flip ? DASH
        : `${fmt.pValue(flip.p)} (${flip.exact ? "exact" : "sampled"}; smallest possible with ${flip.n} seeds: ${fmt.general(flip.p_min, 3)})`],
    ];
    if (judged) {
      rows.push(["test-set sampling alone", testSetText(d)], ["seeds and test set together", combinedText(d)]);
    }
    rows.push(
      ["smallest detectable effect", diff.mde == null ? DASH : `${one(diff.mde)} pts (exact power 80%, α = 0.05)`],
      ["power for the effect", diff.power_at_effect == null ? DASH : `${fmt.fixed(100 * diff.power_at_effect, 0)}% at ${one(diff.effect)} pts`
        + (diff.effect_from === "observed" ? " (the observed difference: post-hoc, no evidence of its own)" : "")],
      ["seeds for an effect", seedsText(diff)],
    );
    document.getElementById("difference").replaceChildren(...kv(rows));
    document.getElementById("effect-answer").textContent = diff.effect_asked ? seedsText(diff) : "";
  }

  function drawArms(d) {
    const [base, treat] = d.arms;
    const label = (m) => `${m.label} (${m.name === d.metric.name ? "pre-registered" : "exploratory"})`;
    const rows = d.metrics.map((m) => [label(m), meanSd(base.metrics[m.name]), meanSd(treat.metrics[m.name])]);
    base.rare_recall.forEach((r, i) => rows.push([`recall of ${r.class} (rarest; exploratory)`, meanSd(r), meanSd(treat.rare_recall[i])]));
    rows.push(["finished runs", `${base.finished} of ${base.runs}`, `${treat.finished} of ${treat.runs}`]);
    const node = table([["metric"], [`${base.label} (baseline)`, "num"], [`${treat.label} (treatment)`, "num"]], rows);
    const chosen = d.metrics.findIndex((m) => m.name === d.metric.name);
    if (chosen >= 0) node.tBodies[0].rows[chosen].className = "chosen";
    document.getElementById("arms").replaceChildren(node);
  }

  function drawPairs(d) {
    const [base, treat] = d.arms;
    const rows = d.pairs.map((p) => [p.seed, runLink(p.baseline.id, `${one(p.baseline.value)}%`),
      runLink(p.treatment.id, `${one(p.treatment.value)}%`), fmt.pts(p.difference)]);
    document.getElementById("pairs").replaceChildren(rows.length
      ? table([["seed"], [base.label, "num"], [treat.label, "num"], ["d = treatment − baseline", "num"]], rows)
      : el("p", { class: "muted" }, "No seed has finished both arms yet."));
  }

  // Every p value of a per-image test carries the sentence that it does not test the factor.
  const notFactor = (text) => el("span", { class: "muted small not-the-factor" }, ` ${text}`);

  function drawImagePairs(d) {
    const rows = d.pairs.map((p) => {
      const m = p.mcnemar;
      return [p.seed, m ? m.only_a : DASH, m ? m.only_b : DASH, m ? fmt.pValue(m.p_exact) : (p.problem || DASH)];
    });
    document.getElementById("image-pairs").replaceChildren(rows.length
      ? table([["seed"], ["only baseline right", "num"], ["only treatment right", "num"],
        ["McNemar, these two networks (exact; not a test of the factor)", "num"]], rows)
      : el("p", { class: "muted" }, "No seed has finished both arms yet."));
  }

  function pooledItems(d) {
    const cmh = d.pooled.mcnemar, seeds = d.pooled.seed_cmh;
    const p = (text, test) => el("span", {}, text, notFactor(test.not_the_factor));
    const items = [];
    if (cmh) {
      items.push(
        ["images only the baseline got right (all seeds)", String(cmh.only_baseline)],
        ["images only the treatment got right (all seeds)", String(cmh.only_treatment)],
        ["pooled McNemar (one stratum per seed-and-image), no correction", p(`χ²(1) = ${fmt.fixed(cmh.chi2, 2)}, ${fmt.pValue(cmh.p)}.`, cmh)],
        ["pooled McNemar, continuity-corrected", p(`χ²(1) = ${fmt.fixed(cmh.chi2_corrected, 2)}, ${fmt.pValue(cmh.p_corrected)}.`, cmh)],
      );
    }
    if (seeds) {
      items.push(
        ["CMH over seeds (one stratum per seed), no correction", p(`χ²(1) = ${fmt.fixed(seeds.chi2, 2)}, ${fmt.pValue(seeds.p)}.`, seeds)],
        ["CMH over seeds, corrected", p(`χ²(1) = ${fmt.fixed(seeds.chi2_corrected, 2)}, ${fmt.pValue(seeds.p_corrected)}.`, seeds)],
        ["seeds pooled", `${d.pooled.mcnemar_seeds} (${seeds.images} test images in all, each counted as a replicate)`],
      );
    }
    return items;
  }

  function drawPooled(d) {
    const cmh = d.pooled.mcnemar;
    const items = pooledItems(d);
    const problem = (d.pairs.find((p) => p.problem) || {}).problem || "no stored test predictions";
    const empty = d.pairs.length ? `No pooled per-image test (${problem}).` : "No seed has finished both arms yet.";
    const node = items.length ? el("dl", { class: "kv" }, ...kv(items)) : el("p", { class: "muted" }, empty);
    const what = cmh ? [d.pooled.mcnemar, d.pooled.seed_cmh].filter(Boolean).map((t) => el("p", { class: "muted small" }, t.tests)) : [];
    const about = d.pooled.about_accuracy && cmh
      ? el("p", { class: "ablation-warning" }, `Per-image correctness is about accuracy, not ${d.metric.label}.`) : null;
    const chance = d.chance.applies && d.pairs.length
      ? el("p", { class: "ablation-warning" }, "Both arms are at chance level: these tests compare models that learnt nothing, whatever their p.") : null;
    document.getElementById("pooled").replaceChildren(...[chance, node, ...what, about].filter(Boolean));
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
      const eta = pr.eta_seconds != null ? fmt.duration(pr.eta_seconds) : (pr.eta_note || "unknown");
      const silent = pr.worker_silent ? ` · silent · last heard ${fmt.duration(pr.heard_seconds_ago)} ago` : "";
      const progress = r.status === dom.status.RUN.RUNNING && pr.epochs
        ? `epoch ${pr.epoch}/${pr.epochs}, ETA ${eta}${silent}` : "";
      return [runLink(r.id, `#${r.id} ${r.name}`), r.arm_label, r.seed, badge, progress,
        r.value == null ? DASH : `${one(r.value)}%`, fmt.pct(r.accuracy)];
    });
    document.getElementById("runs").replaceChildren(table(
      [["run"], ["arm"], ["seed", "num"], ["status"], ["progress"], [d.metric.label, "num"],
        ["test acc.", "num"]], rows));
  }

  // The step the verdict names: its words, the links, and the add-seeds offer (the count
  // the reader typed is kept while polls redraw; the suggestion only fills an untouched box).
  let countTouched = false;
  function drawNext(d) {
    const next = d.next, offer = next.add_seeds;
    document.getElementById("next").dataset.primary = next.primary;
    document.getElementById("next-words").textContent = next.text;
    const form = document.getElementById("add-seeds-form");
    form.hidden = !offer.allowed;
    const why = document.getElementById("add-seeds-why");
    why.hidden = offer.allowed;
    why.textContent = offer.allowed ? "" : `No more seeds: ${offer.why}.`;
    const count = document.getElementById("add-seeds");
    count.max = String(offer.max);
    if (!countTouched) count.value = String(offer.suggested);
    document.getElementById("add-seeds-first").textContent = String(offer.first_seed);
    document.getElementById("add-seeds-max").textContent = String(offer.max);
    document.getElementById("add-seeds-button").className = offer.primary ? "primary" : "";
    document.getElementById("next-links").replaceChildren(...next.links.map((l) =>
      el("a", { class: l.primary ? "button primary" : "button", href: l.href, "data-action": l.action }, l.label)));
    document.getElementById("effect-form").hidden = d.verdict.outcome === d.verdicts.names.CHANCE;
  }

  function draw(d) {
    const verdict = document.getElementById("verdict");
    verdict.className = `verdict ${d.verdict.outcome}`;
    verdict.textContent = d.verdict.text;
    document.getElementById("seed-count").textContent = `${d.seeds.length} seeds`;
    document.getElementById("counts").textContent =
      Object.entries(d.counts).map(([s, n]) => `${n} ${s}`).join(", ");
    drawNext(d);
    drawDifference(d, d.metric.label);
    drawArms(d);
    drawPairs(d);
    drawImagePairs(d);
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

  // One poll at a time, while runs train; adding seeds starts it again.
  let polling = false;
  function follow() {
    if (polling) return;
    polling = true;
    api.poll(async () => {
      const d = await fetchStudy();
      draw(d);
      polling = d.running;
      return d.running;
    }, 2000);
  }

  document.getElementById("add-seeds").addEventListener("input", () => { countTouched = true; });
  document.getElementById("add-seeds-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("add-seeds");
    const answer = document.getElementById("add-seeds-answer");
    const button = document.getElementById("add-seeds-button");
    const add = Number(input.value);
    const most = Number(input.max);
    if (!Number.isInteger(add) || add < 1 || add > most) {
      answer.textContent = `a whole number of seeds from 1 to ${most}`;
      return;
    }
    button.disabled = true;
    answer.textContent = "Queuing…";
    try {
      const added = await api.post(`/api/groups/${initial.group.id}/seeds`, { add });
      const seeds = added.seeds;
      const which = seeds.length === 1 ? `seed ${seeds[0]}` : `seeds ${seeds[0]}–${seeds[seeds.length - 1]}`;
      answer.textContent = `Queued ${which} (${added.run_ids.length} runs); the verdict is recomputed as they finish.`;
      countTouched = false;
      draw(await fetchStudy());
      follow();
    } catch (err) {
      const errors = (err.data && (err.data.errors || err.data.detail)) || [];
      answer.textContent = Array.isArray(errors) && errors.length
        ? `Not added: ${errors.map((e) => e.msg).join("; ")}`
        : `Not added (${err.status || err.message}).`;
    } finally {
      button.disabled = false;
    }
  });

  draw(initial);
  if (initial.running) follow();
})();
