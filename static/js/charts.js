// Curve controls shared by the run page and the compare page: smoothing (an EMA, the raw
// series kept faintly behind), the x axis (epoch or wall time), a log y axis and a panel
// picker, remembered per page type in localStorage ("stacklab.charts.run", ".compare").
// They work in the browser on the figure the server sent (already downsampled): a trace the
// server marked `meta: "curve"` carries its points' wall times (seconds since the run's
// first epoch ended) in `customdata`. Which panels show is the page's business (`onChange`).
"use strict";

window.charts = (() => {
  const SMOOTH_MAX = 0.99;
  const X_AXES = ["epoch", "wall"];
  const DEFAULTS = { smooth: 0, x: "epoch", logy: false, hidden: [] };
  const MAX_HIDDEN = 64;  // the server's MAX_HIDDEN_PANELS
  const storageKey = (page) => `stacklab.charts.${page}`;

  // What was kept for this page type, each field checked (a stale or edited entry falls back).
  function load(page) {
    let kept = {};
    try { kept = JSON.parse(window.localStorage.getItem(storageKey(page)) || "{}") || {}; } catch { kept = {}; }
    const smooth = Number(kept.smooth);
    return {
      smooth: Number.isFinite(smooth) ? Math.min(Math.max(smooth, 0), SMOOTH_MAX) : DEFAULTS.smooth,
      x: X_AXES.includes(kept.x) ? kept.x : DEFAULTS.x,
      logy: kept.logy === true,
      hidden: Array.isArray(kept.hidden)
        ? kept.hidden.filter((k) => typeof k === "string" && k.length <= 80).slice(0, MAX_HIDDEN) : [],
    };
  }

  function save(page, settings) {
    try { window.localStorage.setItem(storageKey(page), JSON.stringify(settings)); } catch { /* private mode */ }
  }

  // TensorBoard's smoothing: an exponential moving average, debiased so the first points
  // are not pulled towards zero; gaps (null, NaN) stay gaps.
  function ema(ys, weight) {
    let last = 0, count = 0;
    return ys.map((y) => {
      if (y == null || !Number.isFinite(y)) return y;
      last = last * weight + (1 - weight) * y;
      count += 1;
      return last / (1 - weight ** count);
    });
  }

  const isCurve = (t) => t.meta === "curve" && t.type !== "bar";
  const axisKey = (ref, letter) => `${letter}axis${(ref || letter).slice(1)}`;  // "x2" -> "xaxis2"

  // Seconds, minutes or hours: whichever keeps the longest time under a few hundred.
  function timeUnit(seconds) {
    if (seconds < 180) return { name: "s", size: 1 };
    if (seconds < 3 * 3600) return { name: "min", size: 60 };
    return { name: "h", size: 3600 };
  }

  // The wall-time version of the curve traces: x = time, the epoch kept for the hover.
  function toWallTime(data, layout) {
    const timed = data.filter((t) => isCurve(t) && Array.isArray(t.customdata));
    const longest = Math.max(0, ...timed.flatMap((t) => t.customdata.filter(Number.isFinite)));
    const unit = timeUnit(longest);
    const moved = new Map();  // x axis key -> {epoch: time} of its traces, for the best-epoch line
    const out = data.map((t) => {
      if (!timed.includes(t)) return t;
      const key = axisKey(t.xaxis, "x");
      const times = moved.get(key) || new Map();
      t.x.forEach((epoch, i) => times.set(epoch, t.customdata[i] / unit.size));
      moved.set(key, times);
      return {
        ...t,
        x: t.customdata.map((s) => (s == null ? null : s / unit.size)),
        customdata: t.x,
        mode: "lines+markers",
        hovertemplate: (t.hovertemplate || "").replace("epoch %{x}", `epoch %{customdata} · %{x:.3~f} ${unit.name}`),
      };
    });
    // An axis keeps epochs where a one-epoch stage's bars stand.
    data.filter((t) => !isCurve(t)).forEach((t) => moved.delete(axisKey(t.xaxis, "x")));
    for (const [key, times] of moved) {
      const axis = layout[key] || {};
      const stage = ((axis.title && axis.title.text) || "").replace(/\s*epoch$/, "");
      layout[key] = {
        domain: axis.domain, anchor: axis.anchor, autorange: true, rangemode: "tozero",
        title: { text: `${stage ? `${stage} · ` : ""}wall time (${unit.name} since the first epoch)` },
      };
      const suffix = key.slice(5);
      const mark = (item) => {  // the best-epoch line and its note follow their epoch's time
        if (item.xref !== `x${suffix}`) return item;
        const at = times.get(item.x0 ?? item.x);
        if (at == null) return null;
        return "x0" in item ? { ...item, x0: at, x1: at } : { ...item, x: at };
      };
      layout.shapes = (layout.shapes || []).map(mark).filter(Boolean);
      layout.annotations = (layout.annotations || []).map(mark).filter(Boolean);
    }
    return out;
  }

  // The figure as the controls want it; the server's figure is left as it was.
  function transform(figure, settings) {
    // A new axis kind starts from its own full range, not the zoom kept for the other one.
    const layout = { ...figure.layout, uirevision: `${figure.layout.uirevision || "chart"}-${settings.x}-${settings.logy}` };
    let data = figure.data;
    if (settings.x === "wall") data = toWallTime(data, layout);
    if (settings.smooth > 0) {
      data = data.flatMap((t) => {
        if (!isCurve(t) || !Array.isArray(t.y) || t.y.length < 3) return [t];
        const raw = {
          ...t, name: `${t.name} (raw)`, showlegend: false, hoverinfo: "skip", hovertemplate: null,
          opacity: 0.25, mode: "lines",
        };
        return [raw, { ...t, y: ema(t.y, settings.smooth), mode: "lines" }];
      });
    }
    if (settings.logy) {
      for (const key of Object.keys(layout)) {
        if (/^yaxis\d*$/.test(key)) layout[key] = { ...layout[key], type: "log", autorange: true };
      }
    }
    return { data, layout };
  }

  // The controls above a chart card: node gets them; onChange(settings) on every change.
  // panels: [{key, label}] for the picker (setPanels replaces them as a run grows stages).
  function toolbar(node, page, onChange) {
    const settings = load(page);
    const changed = () => { save(page, settings); onChange(settings); };
    const { el } = dom;
    const id = (name) => `${node.id || page}-${name}`;

    const slider = el("input", {
      type: "range", id: id("smooth"), min: "0", max: String(SMOOTH_MAX), step: "0.01",
      value: String(settings.smooth), "aria-describedby": id("smooth-value"),
    });
    const shown = el("output", { id: id("smooth-value"), for: id("smooth") }, settings.smooth ? dom.fmt.fixed(settings.smooth, 2) : "off");
    slider.addEventListener("input", () => {
      settings.smooth = Math.min(Math.max(Number(slider.value) || 0, 0), SMOOTH_MAX);
      shown.textContent = settings.smooth ? dom.fmt.fixed(settings.smooth, 2) : "off";
      changed();
    });

    const xSelect = el("select", { id: id("x") },
      el("option", { value: "epoch" }, "epoch"), el("option", { value: "wall" }, "wall time"));
    xSelect.value = settings.x;
    xSelect.addEventListener("change", () => { settings.x = xSelect.value; changed(); });

    const log = el("input", { type: "checkbox", id: id("logy"), checked: settings.logy ? "" : null });
    log.addEventListener("change", () => { settings.logy = log.checked; changed(); });

    const list = el("div", { class: "panel-list" });
    const summary = el("summary", {}, "Panels");
    const picker = el("details", { class: "panel-picker", id: id("panels") }, summary, list);
    function setPanels(panels) {
      const count = panels.filter((p) => !settings.hidden.includes(p.key)).length;
      summary.textContent = `Panels (${count} of ${panels.length})`;
      picker.hidden = panels.length < 2;
      const boxes = panels.map((p) => {
        const box = el("input", { type: "checkbox", value: p.key, checked: settings.hidden.includes(p.key) ? null : "" });
        box.addEventListener("change", () => {
          const rest = settings.hidden.filter((k) => k !== p.key);
          // the newest kept when full: keys of other runs' panels go first, never this click
          settings.hidden = (box.checked ? rest : [...rest, p.key]).slice(-MAX_HIDDEN);
          setPanels(panels);
          changed();
        });
        return el("label", { class: "panel-choice" }, box, ` ${p.label}`);
      });
      list.replaceChildren(...boxes);
    }

    node.classList.add("chart-controls");
    node.replaceChildren(
      el("label", { for: id("smooth") }, "Smoothing"), slider, shown,
      el("label", { for: id("x") }, "x axis"), xSelect,
      el("label", { class: "check" }, log, " log y"),
      picker,
    );
    return { settings, setPanels };
  }

  return { load, save, ema, transform, toolbar };
})();
