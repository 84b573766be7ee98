/* segaudit report: which image cards the gallery shows, and the confusion matrix that can choose them.
   Filters (finding kind, class, confusion cell, a range of any image score, a review-rank range) and the
   sort run over the index and the cards' facets (DATA.index, DATA.facets), so no page of cards is loaded
   to decide. Defines window.segauditGallery(api, onChange), called by report.js with its helpers. */
window.segauditGallery = function (api, onChange) {
  "use strict";
  var el = api.el, option = api.option, DATA = api.DATA, META = api.META, DASH = "\u2013";
  var CONF = DATA.confusion || {n: [], m: []}, K = CONF.n.length;
  /* sortable / filterable image scores: [key, label, column of DATA.index] */
  var SCORES = [["rank", "review rank", 1], ["susp", "suspicion", 2], ["lq", "label quality", 3],
                ["cons", "consistency", 4], ["nfind", "findings", 5]];
  var f = {kind: "", cls: "", cell: null, score: "susp", lo: "", hi: "", rlo: "", rhi: "", sort: "rank", dir: "asc"};
  var inputs = {};

  function col(key) { return SCORES.filter(function (s) { return s[0] === key; })[0][2]; }
  function numberOr(text, fallback) { var v = parseFloat(text); return isNaN(v) ? fallback : v; }
  function list() {
    var out = [], lo = numberOr(f.lo, -Infinity), hi = numberOr(f.hi, Infinity);
    var rlo = numberOr(f.rlo, -Infinity), rhi = numberOr(f.rhi, Infinity), c = col(f.score);
    for (var i = 0; i < DATA.index.length; i++) {
      var row = DATA.index[i], facet = (DATA.facets || [])[i] || {k: [], c: [], x: []};
      if (f.kind && facet.k.indexOf(f.kind) < 0) { continue; }
      if (f.cls !== "" && facet.c.indexOf(+f.cls) < 0) { continue; }
      if (f.cell !== null && facet.x.indexOf(f.cell) < 0) { continue; }
      if ((f.lo !== "" || f.hi !== "") && (row[c] === null || row[c] < lo || row[c] > hi)) { continue; }
      if ((f.rlo !== "" || f.rhi !== "") && (row[1] === null || row[1] < rlo || row[1] > rhi)) { continue; }
      out.push(i);
    }
    var sc = col(f.sort), sign = f.dir === "asc" ? 1 : -1;
    out.sort(function (a, b) {
      var x = DATA.index[a][sc], y = DATA.index[b][sc];
      if (x === null || y === null) { return (x === null) - (y === null) || a - b; }
      return (x - y) * sign || a - b;
    });
    return out;
  }
  function active() {
    return !!(f.kind || f.cls !== "" || f.cell !== null || f.lo !== "" || f.hi !== "" || f.rlo !== "" || f.rhi !== "");
  }
  function cellName(code) { return CONF.n[Math.floor(code / K)] + " labelled, " + CONF.n[code % K] + " predicted"; }
  function describe() {
    var parts = [];
    if (f.kind) { parts.push(f.kind.replace(/_/g, " ")); }
    if (f.cls !== "") { parts.push("class " + (CONF.n[+f.cls] || f.cls)); }
    if (f.cell !== null) { parts.push(cellName(f.cell)); }
    if (f.lo !== "" || f.hi !== "") { parts.push(f.score + " in [" + (f.lo || DASH) + ", " + (f.hi || DASH) + "]"); }
    if (f.rlo !== "" || f.rhi !== "") { parts.push("rank " + (f.rlo || 1) + DASH + (f.rhi || "")); }
    return parts.join(" \u00b7 ");
  }
  /* Set some filters (others kept unless reset), update the controls, redraw. */
  function set(changes, reset) {
    var before = JSON.stringify(f);
    if (reset) { f.kind = ""; f.cls = ""; f.cell = null; f.lo = ""; f.hi = ""; f.rlo = ""; f.rhi = ""; }
    Object.keys(changes || {}).forEach(function (k) { f[k] = changes[k]; });
    Object.keys(inputs).forEach(function (k) { inputs[k].value = f[k] === null ? "" : String(f[k]); });
    cellChip.hidden = f.cell === null;
    cellChip.textContent = f.cell === null ? "" : "cell: " + cellName(f.cell) + " \u2715";
    if (JSON.stringify(f) !== before) { onChange(); }  // a field's late change event (on blur) redraws nothing
  }
  var cellChip = el("button", {type: "button", "class": "chip", id: "gallery-cell", hidden: true, title: "remove the confusion-cell filter"});
  cellChip.addEventListener("click", function () { set({cell: null}); });

  function controls() {
    var kind = el("select", {id: "gallery-kind", "aria-label": "finding kind"}, [option("", "any finding or none", true)]);
    META.kinds.forEach(function (k) { kind.appendChild(option(k, k.replace(/_/g, " "))); });
    var cls = el("select", {id: "gallery-class", "aria-label": "class"}, [option("", "any class", true)]);
    CONF.n.forEach(function (n, c) { if (c > 0) { cls.appendChild(option(String(c), n)); } });
    var score = el("select", {id: "gallery-score", "aria-label": "score to filter on"});
    SCORES.slice(1).forEach(function (s) { score.appendChild(option(s[0], s[1], s[0] === f.score)); });
    function box(id, label, width) { return el("input", {type: "number", step: "any", id: id, "aria-label": label, style: {width: width || "5em"}}); }
    var lo = box("gallery-lo", "score from"), hi = box("gallery-hi", "score to");
    var rlo = box("gallery-rank-lo", "review rank from", "4.5em"), rhi = box("gallery-rank-hi", "review rank to", "4.5em");
    var sort = el("select", {id: "gallery-sort", "aria-label": "sort by"});
    SCORES.forEach(function (s) { sort.appendChild(option(s[0], s[1], s[0] === f.sort)); });
    var dir = el("select", {id: "gallery-dir", "aria-label": "sort direction"}, [option("asc", "ascending", true), option("desc", "descending")]);
    inputs = {kind: kind, cls: cls, score: score, lo: lo, hi: hi, rlo: rlo, rhi: rhi, sort: sort, dir: dir};
    Object.keys(inputs).forEach(function (k) {
      inputs[k].addEventListener("change", function () { var ch = {}; ch[k] = inputs[k].value; set(ch); });
    });
    var reset = el("button", {type: "button", id: "gallery-reset", text: "show all", on: {click: function () { set({}, true); }}});
    return el("div", {"class": "controls", id: "gallery-controls"}, [
      el("label", null, ["kind ", kind]), el("label", null, ["class ", cls]), cellChip,
      el("label", null, [score, " from ", lo, " to ", hi]), el("label", null, ["rank ", rlo, " to ", rhi]),
      el("label", null, ["sort ", sort, dir]), reset]);
  }

  // --------------------------------------------------------------------------------- confusion matrix
  function confusion(node, controlsNode) {
    if (!CONF.m.length) { node.appendChild(el("p", {"class": "empty", text: "No confusion table in this run."})); return; }
    var rowSum = CONF.m.map(function (r) { return r.reduce(function (a, b) { return a + b; }, 0); });
    var colSum = CONF.n.map(function (_, p) { return CONF.m.reduce(function (a, r) { return a + r[p]; }, 0); });
    var shown = CONF.n.map(function (_, c) { return c; }).filter(function (c) { return rowSum[c] > 0 || colSum[c] > 0; });
    var norm = el("input", {type: "checkbox", id: "confusion-norm"});
    controlsNode.appendChild(el("label", null, [norm, "row-normalised (share of the label's pixels)"]));
    function draw() {
      while (node.firstChild) { node.removeChild(node.firstChild); }
      var table = el("table", {"class": "data confusion", id: "confusion-table"});
      var head = el("tr", null, [el("th", {"class": "text", scope: "col", text: "label \u2193 \u00b7 prediction \u2192"})]);
      shown.forEach(function (p) { head.appendChild(el("th", {scope: "col", text: CONF.n[p]})); });
      table.appendChild(el("thead", null, [head]));
      var body = el("tbody");
      shown.forEach(function (g) {
        var tr = el("tr", null, [el("th", {"class": "text", scope: "row", text: CONF.n[g]})]);
        shown.forEach(function (p) {
          var v = CONF.m[g][p], share = rowSum[g] ? v / rowSum[g] : 0;
          var td = el("td", {"class": "num" + (g === p ? " diag" : "")});
          td.style.backgroundColor = "rgba(" + (g === p ? "46, 160, 67, " : "207, 34, 46, ") + (v ? 0.06 + 0.5 * share : 0).toFixed(3) + ")";
          var text = norm.checked ? (100 * share).toFixed(1) + "%" : String(v);
          if (v > 0) {
            var b = el("button", {type: "button", "class": "cell", "data-gt": g, "data-pred": p, text: text,
                                  title: v + " px labelled " + CONF.n[g] + ", predicted " + CONF.n[p] + " (" + (100 * share).toFixed(1) + "% of the label's); show these images"});
            b.addEventListener("click", function () { set({cell: g * K + p}, true); document.getElementById("gallery").scrollIntoView(); });
            td.appendChild(b);
          } else { td.appendChild(document.createTextNode(text)); }
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
      table.appendChild(body);
      node.appendChild(table);
    }
    norm.addEventListener("change", draw);
    draw();
  }
  return {list: list, set: set, active: active, describe: describe, controls: controls, confusion: confusion, state: f};
};
