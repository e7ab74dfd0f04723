// What every page script shares: building nodes and table rows, drawing a server-built
// Plotly figure, and formatting numbers, durations and times exactly as the server's Python
// does, so a cell Jinja rendered reads the same after the first poll (tests/web/test_dom_js.py).
// A classic script loaded before the page modules; it exposes one global, `dom`.
"use strict";

const dom = (() => {
  const DASH = "–";

  // el("td", { class: "num", title: "…" }, "text", node, null): attributes (null ones
  // skipped), then children; strings go in as text nodes, never as HTML.
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  // ---- tables ----
  // A cell: a node (or a list of nodes and strings) as is, any other value as text, "–" when missing.
  function cell(content, cls, tag = "td") {
    const node = el(tag, { class: cls || null });
    if (content instanceof Node) node.append(content);
    else if (Array.isArray(content)) node.append(...content.filter((c) => c != null));
    else node.textContent = content == null ? DASH : String(content);
    return node;
  }

  // A row from cells: <td>/<th> nodes as they are, anything else through cell().
  function row(cells, attrs = {}) {
    return el("tr", attrs, ...cells.map((c) => (c instanceof HTMLTableCellElement ? c : cell(c))));
  }

  // A whole table: columns as [label, class] (the class also goes on that column's cells),
  // rows as lists of cell contents.
  function table(columns, rows) {
    const head = row(columns.map(([label, cls]) => cell(label, cls, "th")));
    const body = el("tbody", {}, ...rows.map((cells) => row(cells.map((c, i) => cell(c, columns[i][1])))));
    return el("table", {}, el("thead", {}, head), body);
  }

  // Replaces a tbody's rows, or shows one muted row saying why there are none.
  function fill(tbody, rows, emptyText, colspan) {
    if (rows.length) { tbody.replaceChildren(...rows); return; }
    const only = cell(emptyText, "muted");
    if (colspan) only.colSpan = colspan;
    tbody.replaceChildren(el("tr", {}, only));
  }

  // ---- Plotly ----
  const plotConfig = Object.freeze({ displaylogo: false, responsive: true });

  // The page's colours (static/css/app.css variables, which dark mode redefines) as the
  // figure's background, text, grid and legend colours: the server's template (plotly_white)
  // keeps its fonts and sizes, the colours follow the page. Only colours the figure left to
  // its template change, bar a legend's backdrop (the page's card colour, never white).
  function themed(layout) {
    const css = getComputedStyle(document.documentElement);
    const v = (name) => css.getPropertyValue(name).trim();
    const card = v("--card"), ink = v("--ink"), muted = v("--muted"), line = v("--line");
    if (!card || !ink) return layout;
    const template = layout.template || {};
    const base = template.layout || {};
    const axis = (a) => ({ ...(a || {}), gridcolor: line, linecolor: line, zerolinecolor: line,
      tickfont: { ...((a || {}).tickfont || {}), color: muted } });
    const out = {
      ...layout,
      template: {
        ...template,
        layout: {
          ...base,
          paper_bgcolor: card, plot_bgcolor: card,
          font: { ...(base.font || {}), color: ink },
          title: { ...(base.title || {}), font: { ...((base.title || {}).font || {}), color: ink } },
          xaxis: axis(base.xaxis), yaxis: axis(base.yaxis),
          coloraxis: { ...(base.coloraxis || {}), colorbar: { ...((base.coloraxis || {}).colorbar || {}), tickfont: { color: muted } } },
          annotationdefaults: { ...(base.annotationdefaults || {}), font: { color: ink } },
        },
      },
    };
    for (const key of Object.keys(out)) {
      if (/^legend\d*$/.test(key) && out[key] && out[key].bgcolor) out[key] = { ...out[key], bgcolor: card };
    }
    return out;
  }

  // Draws (or updates in place) a figure built on the server; Plotly comes from
  // /vendor/plotly.min.js, loaded deferred before the page scripts on pages with charts.
  // A figure is drawn in the page's colours, and drawn again when the browser's colour
  // scheme changes.
  function plot(node, figure) {
    // Nodes a page dropped without unplot (a poll that rebuilds its charts) are let go here,
    // so the map holds the figures on the page, not every one a long-open page ever drew.
    for (const old of drawn.keys()) if (!old.isConnected) drawn.delete(old);
    drawn.set(node, figure);
    return Plotly.react(node, figure.data, themed(figure.layout || {}), { ...plotConfig });
  }

  const drawn = new Map();  // node -> its last figure, to re-colour on a scheme change
  const scheme = typeof window !== "undefined" && window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  if (scheme && scheme.addEventListener) {
    scheme.addEventListener("change", () => {
      for (const [node, figure] of drawn) {
        if (node.isConnected) plot(node, figure); else drawn.delete(node);
      }
    });
  }

  // Removes a drawn figure (and Plotly's listeners) from a node.
  function unplot(node) { drawn.delete(node); Plotly.purge(node); }

  // ---- numbers, the Python way ----
  // The double's decimal expansion: toExponential picks the digits by exact arithmetic,
  // and 100 of them settle every tie the formats below can meet.
  function decimal(ax) {
    const [mantissa, exp] = ax.toExponential(100).split("e");
    return { digits: mantissa.replace(".", ""), exp: Number(exp) };
  }

  // The first `keep` digits rounded half to even on the exact value (Python's rule; JS's
  // toFixed rounds an exact tie away from zero). Returns the digits and whether one was added.
  function roundDigits(digits, keep) {
    if (keep < 0) return { head: "0", carried: false };
    if (keep >= digits.length) return { head: digits.padEnd(keep, "0"), carried: false };
    const head = digits.slice(0, keep) || "0", rest = digits.slice(keep);
    const tail = rest.slice(1);
    const tie = rest[0] === "5" && !/[1-9]/.test(tail);
    const up = rest[0] > "5" || (rest[0] === "5" && !tie) || (tie && Number(head.at(-1)) % 2 === 1);
    if (!up) return { head, carried: false };
    const next = (BigInt(head) + 1n).toString();
    return { head: next, carried: next.length > head.length && head !== "0" };
  }

  const special = (x) => (Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf");
  const sign = (x) => (x < 0 || Object.is(x, -0) ? "-" : "");

  // Python's "%.{places}f" % x.
  function fixed(x, places) {
    if (!Number.isFinite(x)) return special(x);
    const ax = Math.abs(x);
    let body;
    if (ax >= 1e21) {  // an integer: Python prints every digit of it
      body = BigInt(ax).toString() + (places ? `.${"0".repeat(places)}` : "");
    } else if (ax === 0) {
      body = places ? `0.${"0".repeat(places)}` : "0";
    } else {
      const { digits, exp } = decimal(ax);
      const { head } = roundDigits(digits, exp + 1 + places);
      const padded = head.padStart(places + 1, "0");
      const whole = padded.slice(0, padded.length - places);
      body = places ? `${whole}.${padded.slice(-places)}` : whole;
    }
    return sign(x) + body;
  }

  // Python's "%.{precision}g" % x: fixed or exponent form, trailing zeros dropped.
  function general(x, precision) {
    if (!Number.isFinite(x)) return special(x);
    const p = precision || 1;
    const ax = Math.abs(x);
    if (ax === 0) return `${sign(x)}0`;
    const { digits, exp } = decimal(ax);
    const { head, carried } = roundDigits(digits, p);
    const e = exp + (carried ? 1 : 0);
    const sig = head.slice(0, p);
    const strip = (s) => (s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s);
    if (e < -4 || e >= p) {
      const mant = strip(sig.length > 1 ? `${sig[0]}.${sig.slice(1)}` : sig);
      const ex = String(Math.abs(e)).padStart(2, "0");
      return `${sign(x)}${mant}e${e < 0 ? "-" : "+"}${ex}`;
    }
    const text = e >= 0
      ? `${sig.slice(0, e + 1)}.${sig.slice(e + 1)}`
      : `0.${"0".repeat(-e - 1)}${sig}`;
    return sign(x) + strip(text);
  }

  // Python's round(x) as an int: half to even, never "-0".
  function roundInt(x) {
    const n = Number(fixed(x, 0));
    return n === 0 ? 0 : n;
  }

  // Python's str() of a value that came through JSON (Jinja's {{ v }}): True, None, 1e-05.
  // JSON cannot tell 3.0 from 3, so a whole float prints as Python prints the int.
  function pyStr(v) {
    if (v == null) return "None";
    if (typeof v === "boolean") return v ? "True" : "False";
    if (typeof v !== "number") return String(v);
    if (!Number.isFinite(v)) return special(v);
    if (Number.isInteger(v)) return BigInt(v).toString();
    const [mantissa, exp] = v.toExponential().split("e");  // the shortest digits, as repr's
    const e = Number(exp), digits = mantissa.replace(/^-/, "").replace(".", "");
    if (e < -4 || e >= 16) {
      const mant = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
      return `${sign(v)}${mant}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
    }
    const text = e >= 0
      ? `${digits.slice(0, e + 1).padEnd(e + 1, "0")}.${digits.slice(e + 1) || "0"}`
      : `0.${"0".repeat(-e - 1)}${digits}`;
    return sign(v) + text;
  }

  const missing = (v) => v == null;  // NaN prints "nan", as in Python

  const fmt = {
    // py(1e-05) -> "1e-05", py(true) -> "True": a parameter value as Jinja's {{ v }} shows it.
    py: pyStr,
    // fixed(0.12345, 4) -> "0.1235": Jinja's '%.4f'|format(v); "–" when missing.
    fixed: (v, places) => (missing(v) ? DASH : fixed(Number(v), places)),
    // general(0.000123456, 5) -> "0.00012346": Jinja's "%.5g"|format(v).
    general: (v, precision) => (missing(v) ? DASH : general(Number(v), precision)),
    // int(12.5) -> "12": Jinja's v|round|int.
    int: (v) => (missing(v) ? DASH : String(roundInt(Number(v)))),
    // pct(0.1234) -> "12.3%": Python's f"{v:.1%}".
    pct: (v, places = 1) => (missing(v) ? DASH : `${fixed(Number(v) * 100, places)}%`),
    // pts(1.25) -> "+1.2 pts": a difference in percentage points.
    pts: (v) => (missing(v) ? DASH : `${v >= 0 ? "+" : ""}${fixed(v + 0, 1)} pts`),
    // pValue(0.0123) -> "p = 0.012": backend/groups/verdict.py's format_p.
    pValue: (p) => (missing(p) ? DASH : p < 0.001 ? "p < 0.001" : `p = ${fixed(p, 3)}`),
    // A metric value in the compare tables: integers and large values whole, else 4 digits.
    metric(v) {
      if (v == null) return DASH;
      if (typeof v !== "number") return String(v);
      return Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : v.toPrecision(4);
    },
    // duration(3725) -> "1h 02m": backend/runs/pages.py's fmt_duration.
    duration(seconds) {
      if (typeof seconds !== "number" || !Number.isFinite(seconds)) return DASH;
      const s = roundInt(seconds);
      const div = (a, b) => [Math.floor(a / b), a - b * Math.floor(a / b)];  // Python's divmod
      const [hours, rest] = div(s, 3600), [minutes, secs] = div(rest, 60);
      const two = (n) => String(n).padStart(2, "0");
      if (hours) return `${hours}h ${two(minutes)}m`;
      return minutes ? `${minutes}m ${two(secs)}s` : `${secs}s`;
    },
    // when("2024-05-01T12:34:56+00:00") -> "2024-05-01 12:34": fmt_when, the server's UTC text.
    when: (iso) => (iso ? String(iso).slice(0, 16).split("T").join(" ") : DASH),
    // stamp("2024-05-01T12:34:56.789+00:00") -> "2024-05-01 12:34:56": Jinja's
    // created_at[:19]|replace("T", " ") on the data set pages.
    stamp: (iso) => String(iso).slice(0, 19).split("T").join(" "),
    // The same moment in the browser's time zone, "YYYY-MM-DD HH:MM" (tables).
    localWhen(iso) {
      if (!iso) return DASH;
      const d = new Date(iso), pad = (n) => String(n).padStart(2, "0");
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
    },
    // The same moment in the browser's own long form (one run's page).
    localLong: (iso) => (iso ? new Date(iso).toLocaleString() : DASH),
    // A queued run's row of the queue panel in words, as templates/runs/detail.html writes
    // it: "2. in line · waits for a free worker · starts in 1m 05s".
    waiting(r) {
      const place = r.place == null ? "" : `${r.place}. in line · `;
      const start = r.starts_in_seconds == null ? "" : ` · starts in ${fmt.duration(r.starts_in_seconds)}`;
      return `${place}${r.waiting}${r.retry ? ` · ${r.retry}` : ""}${start}`;
    },
    // A byte count in MiB with one decimal: Jinja's (size / 1048576)|round(1).
    mib: (bytes) => `${fixed(bytes / 1048576, 1)} MiB`,
  };

  // Every <time datetime> under root shows its moment in local time, the ISO text as a tooltip.
  function localTimes(root, format = fmt.localWhen) {
    root.querySelectorAll("time[datetime]").forEach((t) => {
      t.title = t.getAttribute("datetime");
      t.textContent = format(t.getAttribute("datetime"));
    });
  }

  // ---- the status vocabulary ----
  // jobspec/status.py, as base.html's JSON blob: run statuses (RUN.RUNNING...), their groups
  // as Sets (ACTIVE, FINISHED, STOPPED), attempt outcomes and data set import states. Read
  // on first use, so a page script never retypes a status name.
  let vocabulary = null;
  function statusVocabulary() {
    if (vocabulary) return vocabulary;
    const v = JSON.parse(document.getElementById("status-vocabulary").textContent);
    vocabulary = Object.freeze({
      RUN: Object.freeze(v.run),
      ACTIVE: new Set(v.active),
      FINISHED: new Set(v.finished),
      STOPPED: new Set(v.stopped),
      ATTEMPT: Object.freeze(v.attempt),
      CLEAN_ATTEMPT: new Set(v.cleanAttempt),
      IMPORT: Object.freeze(v.importState),
      IMPORT_PHASE: Object.freeze(v.importPhase),
    });
    return vocabulary;
  }

  return {
    DASH, el, cell, row, table, fill, plotConfig, plot, unplot, fmt, localTimes,
    get status() { return statusVocabulary(); },
  };
})();
