/* segaudit report: the reviewer's decisions. Each finding (key "image id|class id|kind") can be marked
   "fix", "ok" or "unsure", with a note; decisions are kept in the browser (localStorage, one entry per run:
   "segaudit-review:" + run key) and exported as CSV, JSON (read back by `segaudit review RUN --decisions`)
   and a COCO-style list of the annotation ids to fix. Defines window.segauditReview(api), called by
   report.js with its helpers; every run string is set as text. */
window.segauditReview = function (api) {
  "use strict";
  var el = api.el, DATA = api.DATA, META = api.META;
  var DECISIONS = [["fix", "fix", "f"], ["ok", "OK", "o"], ["unsure", "unsure", "u"]];
  var STORE = "segaudit-review:" + META.run_key;
  var byKey = {};
  DATA.findings.forEach(function (f) { byKey[f.key] = f; });
  var state = load(), listeners = [];

  function load() {
    try {
      var raw = window.localStorage.getItem(STORE);
      var got = raw ? JSON.parse(raw) : {};
      return got && typeof got === "object" ? got : {};
    } catch (e) { return {}; }  // storage off (private mode, file:// policy): decisions live for this visit only
  }
  function save() {
    try { window.localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) { /* see load */ }
  }
  function get(key) { return state[key] ? state[key].d : ""; }
  function set(key, decision, note) {
    if (!byKey[key]) { return; }
    if (!decision || get(key) === decision && note === undefined) { delete state[key]; }
    else { state[key] = {d: decision, n: note !== undefined ? note : (state[key] ? state[key].n : ""), t: new Date().toISOString()}; }
    save();
    listeners.forEach(function (fn) { fn(key); });
  }
  function setNote(key, note) {
    if (state[key]) { state[key].n = note; save(); }
  }
  function counts() {
    var out = {fix: 0, ok: 0, unsure: 0, open: 0};
    DATA.findings.forEach(function (f) { var d = get(f.key); out[d || "open"] += 1; });
    return out;
  }

  /* Buttons fix / OK / unsure for one finding (aria-pressed shows the decision), and with withNote a note
     field, kept with the decision (enabled once the finding is decided). */
  function buttons(key, withNote) {
    var box = el("span", {"class": "decide", role: "group", "aria-label": "decision", "data-key": key});
    DECISIONS.forEach(function (d) {
      var b = el("button", {type: "button", "class": "dec dec-" + d[0], "data-decision": d[0], "aria-pressed": "false",
                            title: d[1] + " (key " + d[2] + ")", text: d[1]});
      b.addEventListener("click", function (ev) { ev.stopPropagation(); set(key, d[0]); });
      box.appendChild(b);
    });
    var note = withNote ? el("input", {type: "text", "class": "note", "aria-label": "note", placeholder: "note", size: 12}) : null;
    if (note) {
      note.addEventListener("change", function () { setNote(key, note.value); });
      note.addEventListener("click", function (ev) { ev.stopPropagation(); });
      note.addEventListener("keydown", function (ev) { ev.stopPropagation(); });
      box.appendChild(note);
    }
    function paint() {
      var now = get(key);
      box.querySelectorAll("button").forEach(function (b) { b.setAttribute("aria-pressed", b.getAttribute("data-decision") === now ? "true" : "false"); });
      if (note) { note.disabled = !now; note.value = state[key] ? state[key].n || "" : ""; }
    }
    paint();
    listeners.push(function (k) { if (k === key || k === null) { paint(); } });
    return box;
  }
  /* Key f / o / u marks the finding `key`; returns whether the key was one of them. */
  function handleKey(ev, key) {
    if (!key || ev.ctrlKey || ev.metaKey || ev.altKey) { return false; }
    var hit = DECISIONS.filter(function (d) { return d[2] === ev.key.toLowerCase(); })[0];
    if (!hit) { return false; }
    set(key, hit[0]);
    ev.preventDefault();
    return true;
  }

  // ---------------------------------------------------------------------------------------- exports
  var FIELDS = ["file_name", "path", "image_id", "class_id", "class_name", "kind", "score", "review_rank", "suggested_fix",
                "decision", "note", "annotation_ids", "decided_at"];
  function records(all) {
    return DATA.findings.filter(function (f) { return all || get(f.key); }).map(function (f) {
      var s = state[f.key] || {};
      return {file_name: f.f, path: f.p, image_id: f.id, class_id: f.c, class_name: f.n, kind: f.k, score: f.s,
              review_rank: f.i === null ? null : DATA.index[f.i][1], suggested_fix: f.x, decision: s.d || "",
              note: s.n || "", annotation_ids: f.a, decided_at: s.t || ""};
    });
  }
  function csvCell(v) {
    var t = v === null || v === undefined ? "" : (Array.isArray(v) ? v.join(" ") : String(v));
    if (/^[=+\-@\t\r]/.test(t)) { t = "'" + t; }  // no formula injection when opened in a spreadsheet
    return /[",\r\n]/.test(t) ? '"' + t.replace(/"/g, '""') + '"' : t;
  }
  function asCSV() {
    var lines = [FIELDS.join(",")];
    records(false).forEach(function (r) { lines.push(FIELDS.map(function (k) { return csvCell(r[k]); }).join(",")); });
    return lines.join("\r\n") + "\r\n";
  }
  function asJSON() {
    return JSON.stringify({format: "segaudit-review", version: 1, run_id: META.run_id, run_key: META.run_key,
                           exported_at: new Date().toISOString(), decisions: records(false)}, null, 1);
  }
  function asCOCO() {
    var ids = [], images = [];
    records(false).forEach(function (r) {
      if (r.decision !== "fix") { return; }
      r.annotation_ids.forEach(function (a) { if (ids.indexOf(a) < 0) { ids.push(a); } });
      if (images.indexOf(r.image_id) < 0) { images.push(r.image_id); }
    });
    var numeric = function (v) { return /^\d+$/.test(v) ? Number(v) : v; };
    return JSON.stringify({info: {description: "segaudit review: annotations to fix", run_id: META.run_id},
                           annotation_ids: ids.map(numeric), image_ids: images.map(numeric)}, null, 1);
  }
  function download(name, text, type) {
    var url = URL.createObjectURL(new Blob([text], {type: type}));
    var a = el("a", {href: url, download: name, style: {display: "none"}});
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 5000);
  }
  var base = "segaudit-review-" + (META.run_id || "run").replace(/[^A-Za-z0-9._-]+/g, "_");

  /* The review bar: counts and the export buttons. */
  function bar() {
    var count = el("span", {id: "review-counts", "class": "muted", "aria-live": "polite"});
    function paint() {
      var c = counts();
      count.textContent = "decided: fix " + c.fix + " \u00b7 OK " + c.ok + " \u00b7 unsure " + c.unsure + " \u00b7 open " + c.open;
    }
    paint();
    listeners.push(paint);
    var clearAll = el("button", {type: "button", id: "review-clear", text: "clear decisions"});
    clearAll.addEventListener("click", function () {
      if (!window.confirm("Forget every decision of this run?")) { return; }
      state = {}; save(); listeners.forEach(function (fn) { fn(null); });
    });
    return el("div", {"class": "controls review-bar", id: "review-bar"}, [el("b", {text: "Review"}), count,
      el("button", {type: "button", id: "export-csv", text: "export CSV", on: {click: function () { download(base + ".csv", asCSV(), "text/csv"); }}}),
      el("button", {type: "button", id: "export-json", text: "export JSON", on: {click: function () { download(base + ".json", asJSON(), "application/json"); }}}),
      el("button", {type: "button", id: "export-coco", text: "export COCO ids to fix", on: {click: function () { download(base + "-coco-fix.json", asCOCO(), "application/json"); }}}),
      clearAll,
      el("span", {"class": "muted small", text: "keys on a focused row or the open card: f fix \u00b7 o OK \u00b7 u unsure"})]);
  }
  function onChange(fn) { listeners.push(fn); }
  return {get: get, set: set, setNote: setNote, counts: counts, buttons: buttons, handleKey: handleKey, bar: bar,
          onChange: onChange, asCSV: asCSV, asJSON: asJSON, asCOCO: asCOCO};
};
