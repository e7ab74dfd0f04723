// New-run form: tabs per kind, collect typed values, check them in the browser (the inputs'
// min/max/step, through the Constraint Validation API), post, and show every error next to
// its field at once, whether the browser or the server found it.
"use strict";

(function () {
  const forms = document.querySelectorAll("form.run-form");
  const tabs = document.querySelectorAll("[data-tab]");

  function showKind(kind) {
    forms.forEach((f) => { f.hidden = f.getAttribute("data-kind") !== kind; });
    tabs.forEach((t) => t.classList.toggle("active", t.dataset.tab === kind));
    const url = new URL(location.href);
    url.searchParams.set("kind", kind);
    history.replaceState(null, "", url);
  }
  tabs.forEach((t) => t.addEventListener("click", () => showKind(t.dataset.tab)));

  function typed(input, raw) {
    const type = input.dataset.type;
    if (raw === "" && input.hasAttribute("data-nullable")) return null;
    if (raw === "") return undefined; // left empty: the server's default applies
    if (type === "integer" || type === "number") return Number(raw);
    return raw;
  }

  function setPath(obj, parts, value) {
    let node = obj;
    parts.slice(0, -1).forEach((p) => { node = node[p] = node[p] || {}; });
    node[parts[parts.length - 1]] = value;
  }

  function collectParams(form) {
    const params = {};
    const lists = {};
    form.querySelectorAll("[name^='params.']").forEach((input) => {
      const parts = input.name.split(".").slice(1);
      if (input.hasAttribute("data-list")) {
        lists[input.name] = lists[input.name] || { parts, values: [] };
        if (input.checked) lists[input.name].values.push(typed(input, input.value));
      } else if (input.type === "checkbox") {
        setPath(params, parts, input.checked);
      } else {
        const value = typed(input, input.value);
        if (value !== undefined) setPath(params, parts, value);
      }
    });
    Object.values(lists).forEach((l) => setPath(params, l.parts, l.values));
    return params;
  }

  function value(form, name) {
    const input = form.querySelector(`[name="${name}"]`);
    return input ? input.value.trim() : "";
  }

  function body(form) {
    // form.dataset is shadowed by the <select name="dataset"> inside the form.
    const kind = form.getAttribute("data-kind");
    const parent = value(form, "parent_run_id");
    const out = {
      dataset: value(form, "dataset"),
      name: value(form, "name") || null,
      params: collectParams(form),
      parent_run_id: parent ? Number(parent) : null,
    };
    const priority = value(form, "priority");
    if (priority !== "") out.priority = Number(priority);
    if (form.querySelector("[data-study]")) {  // the server marks the study's fields
      // As typed: the server reads a bare number as a count and a list as the seeds.
      const seeds = value(form, "seeds");
      if (seeds) out.seeds = seeds;  // empty: the default count
      out.factor = value(form, "factor");
      out.metric = value(form, "metric") || null;  // "": auto, the server picks
      const mode = value(form, "split_mode");
      out.split_seed = mode === "per_seed" ? "per_seed"
        : mode === "number" ? Number(value(form, "split_seed") || 0) : null;
      return out;
    }
    out.kind = kind;
    out.tags = value(form, "tags").split(",").map((t) => t.trim()).filter(Boolean);
    if (form.querySelector('[name="parallel"]')) out.parallel = Number(value(form, "parallel") || 1);
    const source = value(form, "source_run_id");
    if (source) out.source_run_id = Number(source);
    return out;
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error], [data-form-error]").forEach((e) => { e.textContent = ""; });
    form.querySelectorAll(".invalid").forEach((e) => e.classList.remove("invalid"));
  }

  // A 422's loc ["body", "params", "ae01", "kernel_size"] -> the field "params.ae01.kernel_size";
  // shorter prefixes are tried so errors on a whole object land on its fieldset.
  function fieldFor(form, loc) {
    const parts = loc[0] === "body" ? loc.slice(1) : loc.slice();
    for (let n = parts.length; n > 0; n--) {
      const field = form.querySelector(`[data-field="${CSS.escape(parts.slice(0, n).join("."))}"]`);
      if (field) return field;
    }
    return null;
  }

  // Each error beside its field (several on one field are joined), the rest on top.
  function markErrors(form, errors) {
    const general = form.querySelector("[data-form-error]");
    let first = null;
    errors.forEach((d) => {
      const field = fieldFor(form, d.loc || []);
      const slot = field && field.querySelector(":scope > [data-error]");
      const text = `${d.msg}`;
      if (!slot) { general.textContent += (general.textContent ? " · " : "") + `${(d.loc || []).join(".")}: ${text}`; return; }
      slot.textContent += (slot.textContent ? " · " : "") + text;
      field.querySelectorAll("input, select").forEach((i) => i.classList.add("invalid"));
      first = first || field;
    });
    (first || general).scrollIntoView({ behavior: "smooth", block: "center" });
  }

  function showErrors(form, err) {
    const data = err.data || {};
    const errors = Array.isArray(data.errors) ? data.errors : data.detail;
    if (err.status !== 422 || !Array.isArray(errors)) {
      form.querySelector("[data-form-error]").textContent = `Could not launch (${err.status || err.message}): ${
        typeof data.detail === "string" ? data.detail : "see the server log"}`;
      return;
    }
    markErrors(form, errors);
  }

  // The browser's own checks (min, max, step, a number at all) of every visible input, all
  // at once, in the server's error shape; disabled inputs are not checked.
  function browserErrors(form) {
    const errors = [];
    form.querySelectorAll("input, select").forEach((input) => {
      if (!input.name || input.closest("[hidden]") || input.checkValidity()) return;
      errors.push({ loc: ["body", ...input.name.split(".")], msg: input.validationMessage });
    });
    return errors;
  }

  // Typing into a field clears its error once the browser finds the value valid.
  function watchValidity(form) {
    form.addEventListener("input", (event) => {
      const input = event.target;
      const field = input.closest("[data-field]");
      if (!field || !input.name) return;
      const slot = field.querySelector(":scope > [data-error]");
      if (input.checkValidity()) {
        input.classList.remove("invalid");
        if (slot && !field.querySelector(".invalid")) slot.textContent = "";
      } else {
        input.classList.add("invalid");
        if (slot) slot.textContent = input.validationMessage;
      }
    });
  }

  // A parent pretrain brings its data set along; another data set than the encoder's is
  // allowed but said (the server says so too, in the launch's warnings).
  function parentDataset(form) {
    const parent = form.querySelector("[name='parent_run_id']");
    const dataset = form.querySelector("[name='dataset']");
    const note = dataset && dataset.closest("[data-field]").querySelector("[data-warning]");
    if (!parent || !dataset || !note) return;
    const trainedOn = () => {
      const option = parent.selectedOptions[0];
      return option ? option.getAttribute("data-dataset") || "" : "";
    };
    function check() {
      const theirs = trainedOn();
      note.hidden = !parent.value || !theirs || theirs === dataset.value;
      note.textContent = note.hidden ? "" : `Pretrain run #${parent.value} learnt its encoder on data set "${
        theirs}", not "${dataset.value}": its features were fitted to other images.`;
    }
    function follow() {
      const theirs = trainedOn();
      if (theirs && theirs !== dataset.value && [...dataset.options].some((o) => o.value === theirs)) {
        dataset.value = theirs;
        dataset.dispatchEvent(new Event("change"));
      }
      check();
    }
    parent.addEventListener("change", follow);
    dataset.addEventListener("change", check);
    // A clone keeps its own data set (and is warned about); a fresh form follows its parent.
    if (dataset.hasAttribute("data-prefilled")) check();
    else follow();
  }

  // Augmentation's settings mean nothing while augmentation is off: disabled, not hidden.
  function augmentSwitch(form) {
    const augment = form.querySelector("[name='params.augment']");
    const settings = form.querySelector("fieldset[data-field='params.augmentation']");
    if (!augment || !settings) return;
    // In an augmentation study the factor sets `augment` (its field hidden): the treatment
    // arm uses these settings, so they stay editable.
    const sync = () => { settings.disabled = !augment.checked && !augment.closest("[hidden]"); };
    augment.addEventListener("change", sync);
    const factor = form.querySelector("[name='factor']");
    if (factor) factor.addEventListener("change", sync);
    sync();
  }

  // A launch's warnings (the pretrain split or data set differs), shown before its page
  // opens; false when there are none.
  function showWarnings(form, warnings, url, what) {
    const box = form.querySelector("[data-warnings]");
    if (!box || !warnings || !warnings.length) return false;
    box.replaceChildren(
      ...warnings.map((w) => dom.el("p", {}, w)),
      dom.el("a", { class: "button", href: url }, `Open the ${what} now`),
    );
    box.hidden = false;
    form.querySelector("[data-status]").textContent = `Launched; opening the ${what}…`;
    setTimeout(() => { location.href = url; }, 4000);
    return true;
  }

  // The study tab: the factor's question as help, the field its arms set hidden, what
  // "auto" picks for the chosen data set, and the split seed's number only when asked for.
  function studyControls(form) {
    const factor = form.querySelector("[name='factor']");
    if (!factor) return;
    const metric = form.querySelector("[name='metric']");
    const dataset = form.querySelector("[name='dataset']");
    const mode = form.querySelector("[name='split_mode']");
    const splitSeed = form.querySelector("[name='split_seed']");
    const labels = Object.fromEntries([...metric.options].map((o) => [o.value, o.textContent]));
    function onFactor() {
      const chosen = factor.selectedOptions[0];
      const note = chosen.getAttribute("data-note");
      form.querySelector("[data-factor-help]").textContent =
        `${chosen.getAttribute("data-question")}${note ? ` ${note}` : ""}`;
      const sets = chosen.getAttribute("data-sets");
      form.querySelectorAll("[data-field^='params.']").forEach((f) => {
        f.hidden = Boolean(sets) && f.getAttribute("data-field") === sets;
      });
    }
    function onDataset() {
      const option = dataset.selectedOptions[0];
      const pick = option && option.getAttribute("data-default-metric");
      const auto = metric.querySelector("[data-auto]");
      auto.textContent = pick
        ? `auto: ${labels[pick]} (${pick === "accuracy" ? "balanced" : "imbalanced"} test classes)`
        : "auto";
    }
    const onMode = () => { splitSeed.hidden = mode.value !== "number"; };
    factor.addEventListener("change", onFactor);
    dataset.addEventListener("change", onDataset);
    mode.addEventListener("change", onMode);
    onFactor(); onDataset(); onMode();
  }

  // Presets (the server's, jobspec/presets.py): a button sets every field its preset names
  // (firing their input events, so errors clear and switches follow); the preset whose
  // values the fields hold is shown pressed, none of them "custom". Nothing is applied on
  // load: a clone's or a study's prefilled values stay as they came.
  function presetControls(form) {
    const box = form.querySelector("[data-presets]");
    if (!box) return;
    const buttons = [...box.querySelectorAll("[data-preset]")];
    const state = box.querySelector("[data-preset-state]");
    const note = box.querySelector("[data-preset-note]");
    const firstNote = note.textContent;
    let edited = false;
    const sets = (b) => Object.entries(JSON.parse(b.getAttribute("data-sets")));
    const input = (name) => form.querySelector(`[name="${CSS.escape(name)}"]`);
    function holds(name, want) {
      const i = input(name);
      if (!i) return false;
      if (i.type === "checkbox") return i.checked === Boolean(want);
      const raw = i.value.trim();
      if (want === null) return raw === "";
      if (typeof want === "number") return raw !== "" && Number(raw) === want;
      return raw === String(want);
    }
    function sync() {
      const active = buttons.find((b) => sets(b).every(([name, want]) => holds(name, want)));
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b === active)));
      state.textContent = active ? active.textContent : "custom";
      note.textContent = active ? `${active.getAttribute("data-note")} Sets ${active.getAttribute("data-summary")}.`
        : edited ? "Custom values: a preset sets the fields it names and leaves the rest as they are."
          : firstNote;
    }
    buttons.forEach((b) => b.addEventListener("click", () => {
      sets(b).forEach(([name, want]) => {
        const i = input(name);
        if (!i) return;
        if (i.type === "checkbox") i.checked = Boolean(want);
        else i.value = want === null ? "" : String(want);
        i.dispatchEvent(new Event("input", { bubbles: true }));
        i.dispatchEvent(new Event("change", { bubbles: true }));
      });
      sync();
    }));
    const edit = () => { edited = true; sync(); };
    form.addEventListener("input", edit);
    form.addEventListener("change", edit);
    sync();
  }

  forms.forEach((form) => {
    studyControls(form);
    watchValidity(form);
    augmentSwitch(form);
    presetControls(form);
    // "from scratch" and the encoder select mean the same thing: keep them in step.
    const parent = form.querySelector("[name='parent_run_id']");
    const encoder = form.querySelector("[name='params.encoder']");
    if (parent && encoder) {
      // Pretrained weights by default, when there are some and the params do not say scratch.
      if (!parent.value && encoder.value !== "scratch" && parent.options.length > 1) {
        parent.selectedIndex = 1;
      }
      parent.addEventListener("change", () => {
        if (!parent.value) encoder.value = "scratch";
        else if (encoder.value === "scratch") encoder.value = "stacked";
      });
      encoder.addEventListener("change", () => { if (encoder.value === "scratch") parent.value = ""; });
    }
    parentDataset(form);  // after the default parent is chosen: its data set comes along
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const invalid = browserErrors(form);
      if (invalid.length) { markErrors(form, invalid); return; }  // no round trip needed
      const status = form.querySelector("[data-status]");
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      status.textContent = "Launching…";
      try {
        if (form.querySelector("[data-study]")) {
          const group = await api.post("/api/ablations", body(form));
          if (!showWarnings(form, group.warnings, group.url, "study")) location.href = group.url;
        } else {
          const runs = await api.post("/api/runs", body(form));
          const url = `/runs/${runs[0].id}`;
          if (!showWarnings(form, runs[0].warnings, url, "run")) location.href = url;
        }
      } catch (err) {
        showErrors(form, err);
        status.textContent = "";
        button.disabled = false;
      }
    });
  });
})();
