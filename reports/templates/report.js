/* segaudit report script. Reads the inert JSON of the page (#sa-data, #sa-page-N or page scripts beside the
   report) and builds the review bar and findings list, the per-class table, the histograms, the confusion
   matrix and the gallery of image cards (parts in review.js, gallery.js, labelview.js, cards.js, loaded
   before this file) with DOM calls only: every run string is set with textContent or setAttribute, never
   parsed as markup. */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("sa-data").textContent);
  var META = DATA.meta;
  var DASH = "\u2013";

  // ------------------------------------------------------------------------------------------ helpers
  function el(tag, attrs, kids) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) { return; }
        if (k === "text") { node.textContent = String(v); }
        else if (k === "on") { Object.keys(v).forEach(function (e) { node.addEventListener(e, v[e]); }); }
        else if (k === "style") { Object.keys(v).forEach(function (p) { node.style[p] = v[p]; }); }
        else { node.setAttribute(k, v === true ? "" : String(v)); }
      });
    }
    (kids || []).forEach(function (kid) {
      if (kid === null || kid === undefined) { return; }
      node.appendChild(typeof kid === "string" ? document.createTextNode(kid) : kid);
    });
    return node;
  }
  function svg(tag, attrs) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; }
  function num(v) { return v === null || v === undefined || (typeof v === "number" && isNaN(v)); }
  function fmt(v, d) { return num(v) ? DASH : Number(v).toFixed(d === undefined ? 3 : d); }
  function fmtG(v) { return num(v) ? DASH : Number(v).toPrecision(3); }
  function label(key) { return META.labels[key] || key; }
  function doc(key) { return META.docs[key] || ""; }
  function option(value, text, selected) { return el("option", {value: value, text: text, selected: selected}); }
  function kindBadge(kind) { return el("span", {"class": "kind k-" + kind, text: kind.replace(/_/g, " ")}); }
  function scoreStyle(v) {
    return num(v) ? null : {backgroundColor: "rgba(46, 160, 67, " + (0.05 + 0.35 * Math.min(Math.max(v, 0), 1)).toFixed(3) + ")"};
  }

  /* Pascal VOC colour map: class k's bits spread over the high bits of R, G, B (as reports/overlay.py). */
  var PALETTE = (function () {
    var out = [];
    for (var i = 0; i < 256; i++) {
      var r = 0, g = 0, b = 0, c = i;
      for (var j = 0; j < 8; j++) {
        r |= ((c >> 0) & 1) << (7 - j); g |= ((c >> 1) & 1) << (7 - j); b |= ((c >> 2) & 1) << (7 - j);
        c >>= 3;
      }
      out.push([r, g, b]);
    }
    return out;
  })();
  function cssColor(k) { var c = PALETTE[((k % 256) + 256) % 256]; return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }
  var API = {el: el, option: option, DATA: DATA, META: META, palette: PALETTE, svg: svg, clear: clear, fmt: fmt, fmtG: fmtG,
             num: num, label: label, doc: doc, kindBadge: kindBadge, scoreStyle: scoreStyle};
  var REVIEW = API.REVIEW = window.segauditReview(API);
  var renderCard = window.segauditCards(API).renderCard;
  var GALLERY = window.segauditGallery(API, function () { showPage(0); });

  /* Generic sortable table. columns: [{key, label, title, numeric, cell(row) -> node|string, value(row)}]. */
  function renderTable(table, columns, rows, state, onSort, rowAttrs, footer) {
    clear(table);
    var head = el("tr");
    columns.forEach(function (col) {
      var th = el("th", {"data-col": col.sort === false ? null : col.key, "data-key": col.key, title: col.title || null, scope: "col",
                         "class": col.numeric ? "num" : "text", tabindex: col.sort === false ? null : 0,
                         "aria-sort": state.col === col.key ? (state.dir === "asc" ? "ascending" : "descending") : null}, [col.label]);
      if (state.col === col.key) { th.setAttribute("data-dir", state.dir); }
      function sortBy() {
        var first = col.first || (col.numeric ? "desc" : "asc");
        var dir = state.col === col.key ? (state.dir === "asc" ? "desc" : "asc") : first;
        state.col = col.key; state.dir = dir;
        onSort();
        var again = table.querySelector("th[data-key='" + col.key + "']");
        if (again) { again.focus(); }
      }
      if (col.sort !== false) {
        th.addEventListener("click", sortBy);
        th.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(); } });
      }
      head.appendChild(th);
    });
    table.appendChild(el("thead", null, [head]));
    var body = el("tbody");
    rows.forEach(function (row) {
      var tr = el("tr", rowAttrs ? rowAttrs(row) : null);
      columns.forEach(function (col) {
        var content = col.cell(row);
        var td = el("td", {"class": col.numeric ? "num" : (col.wrap ? "text wrap" : "text")});
        if (col.numeric) {
          var v = col.value(row);
          var style = col.shade ? scoreStyle(v) : null;
          if (style) { td.style.backgroundColor = style.backgroundColor; }
        }
        td.appendChild(typeof content === "string" ? document.createTextNode(content) : content);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    if (footer) {
      var tr = el("tr");
      columns.forEach(function (col, i) { tr.appendChild(el("td", {"class": col.numeric ? "num" : "text", text: footer(col, i)})); });
      table.appendChild(el("tfoot", null, [tr]));
    }
  }
  function sortRows(rows, columns, state) {
    var col = columns.filter(function (c) { return c.key === state.col; })[0];
    if (!col) { return rows; }
    var sign = state.dir === "asc" ? 1 : -1;
    return rows.map(function (r, i) { return [r, i]; }).sort(function (a, b) {
      var x = col.value(a[0]), y = col.value(b[0]);
      var nx = num(x) || x === "", ny = num(y) || y === "";
      if (nx || ny) { return (nx - ny) || a[1] - b[1]; }  // undefined last, either direction
      var d = typeof x === "string" ? x.localeCompare(y) : x - y;
      return d * sign || a[1] - b[1];
    }).map(function (p) { return p[0]; });
  }
  function pager(node, page, pages, go, extra) {
    clear(node);
    node.appendChild(el("button", {type: "button", "class": "prev", disabled: page <= 0, text: "\u25C0 previous",
                                   on: {click: function () { go(page - 1); }}}));
    var input = el("input", {type: "number", min: 1, max: Math.max(pages, 1), value: page + 1, "class": "page-no",
                             style: {width: "5em"}, "aria-label": "page"});
    input.addEventListener("change", function () {
      var p = Math.min(Math.max(parseInt(input.value, 10) || 1, 1), Math.max(pages, 1)) - 1; go(p);
    });
    node.appendChild(el("span", null, ["page ", input, " of " + Math.max(pages, 1)]));
    node.appendChild(el("button", {type: "button", "class": "next", disabled: page >= pages - 1, text: "next \u25B6",
                                   on: {click: function () { go(page + 1); }}}));
    if (extra) { node.appendChild(extra); }
  }

  // ----------------------------------------------------------------------------------------- findings
  var FIND_PAGE = 50;
  var findState = {kinds: {}, cls: "", col: "i", dir: "asc", page: 0};
  META.kinds.forEach(function (k) { findState.kinds[k] = true; });
  function classKey(f) { return f.c !== null && f.c > 0 ? "c" + f.c : "n" + f.n; }

  function findingColumns() {
    return [
      {key: "i", label: "review rank", numeric: true, first: "asc", title: doc("review_rank") + " Default order: review rank, then kind, then score.", cell: function (f) {
        var r = f.i === null ? null : DATA.index[f.i][1]; return r === null ? DASH : String(r);
      }, value: function (f) { return f.i === null ? null : DATA.index[f.i][1]; }},
      {key: "t", label: "image", sort: false, cell: function (f) {
        var uri = DATA.thumbs && DATA.thumbs[f.id];
        return uri ? el("img", {"class": "mini", src: uri, alt: "thumbnail of " + f.f}) : el("span", {"class": "muted", text: DASH});
      }, value: function () { return ""; }},
      {key: "k", label: "kind", title: doc("kind"), cell: function (f) { return kindBadge(f.k); }, value: function (f) { return META.kinds.indexOf(f.k); }},
      {key: "s", label: "score", numeric: true, shade: true, title: doc("score"), cell: function (f) { return fmt(f.s); }, value: function (f) { return f.s; }},
      {key: "n", label: "class", cell: function (f) {
        return el("span", null, [f.c > 0 ? el("span", {"class": "swatch", style: {background: cssColor(f.c)}}) : null, f.n || DASH]);
      }, value: function (f) { return (f.n || "").toLowerCase(); }},
      {key: "f", label: "file", cell: function (f) {
        return f.i === null ? (f.f || DASH) : el("a", {href: "#card-" + f.i + "-c" + (f.c === null ? -1 : f.c), text: f.f});
      }, value: function (f) { return (f.f || "").toLowerCase(); }},
      {key: "d", label: "decision", sort: false, cell: function (f) { return REVIEW.buttons(f.key, true); }, value: function () { return ""; }},
      {key: "e", label: "evidence", wrap: true, cell: function (f) {
        var span = el("span", {"class": "evidence"});
        Object.keys(f.e).forEach(function (k, j) {
          span.appendChild(el("span", {title: doc(k), text: (j ? " \u00b7 " : "") + label(k) + " " + fmt(f.e[k], 2)}));
        });
        if (f.k === "context_reliance" && !("context_reliance" in f.e)) { span.appendChild(el("span", {"class": "muted", text: " from the map only"})); }
        if (f.m) { span.appendChild(el("span", {"class": "muted", text: " (" + f.m + (f.l ? " @ " + f.l : "") + ")"})); }
        return span;
      }, value: function (f) { return ""; }}
    ];
  }
  function filteredFindings() {
    return DATA.findings.filter(function (f) {
      return findState.kinds[f.k] !== false && (!findState.cls || classKey(f) === findState.cls);
    });
  }
  function buildFindingControls() {
    var box = document.getElementById("finding-controls");
    var counts = {};
    DATA.findings.forEach(function (f) { counts[f.k] = (counts[f.k] || 0) + 1; });
    var chips = el("span", {"class": "kinds"});
    META.kinds.forEach(function (k) {
      var chip = el("button", {type: "button", "class": "chip", "data-kind": k, "aria-pressed": "true",
                               title: "show or hide " + k.replace(/_/g, " ")},
                    [kindBadge(k), " " + (counts[k] || 0)]);
      chip.addEventListener("click", function () {
        findState.kinds[k] = !findState.kinds[k];
        chip.setAttribute("aria-pressed", findState.kinds[k] ? "true" : "false");
        findState.page = 0; renderFindings();
      });
      chips.appendChild(chip);
    });
    box.appendChild(chips);
    var classes = {};
    DATA.findings.forEach(function (f) {
      var key = classKey(f);
      if (!classes[key]) { classes[key] = {name: f.n || DASH, n: 0}; }
      classes[key].n += 1;
    });
    var select = el("select", {id: "finding-class", "aria-label": "class"}, [option("", "all classes", true)]);
    Object.keys(classes).sort(function (a, b) { return classes[a].name.localeCompare(classes[b].name); }).forEach(function (key) {
      select.appendChild(option(key, classes[key].name + " (" + classes[key].n + ")"));
    });
    select.addEventListener("change", function () { findState.cls = select.value; findState.page = 0; renderFindings(); });
    box.appendChild(el("label", null, ["class ", select]));
    box.appendChild(el("span", {id: "finding-count", "class": "muted"}));
    box.appendChild(el("button", {type: "button", id: "findings-to-gallery", text: "show these images in the gallery", on: {click: function () {
      var on = META.kinds.filter(function (k) { return findState.kinds[k] !== false; });
      var cls = /^c\d+$/.test(findState.cls) ? findState.cls.slice(1) : "";
      GALLERY.set({kind: on.length === 1 ? on[0] : "", cls: cls}, true);
      document.getElementById("gallery").scrollIntoView();
    }}}));
    box.parentNode.insertBefore(REVIEW.bar(), box);
  }
  function renderFindings() {
    var table = document.getElementById("finding-table");
    if (!DATA.findings.length) {
      clear(table).appendChild(el("tbody", null, [el("tr", null, [el("td", {"class": "text empty", text: "No findings in this run."})])]));
      clear(document.getElementById("finding-pager"));
      document.getElementById("finding-count").textContent = "";
      return;
    }
    var cols = findingColumns();
    var rows = sortRows(filteredFindings(), cols, findState);
    var pages = Math.max(Math.ceil(rows.length / FIND_PAGE), 1);
    findState.page = Math.min(findState.page, pages - 1);
    var shown = rows.slice(findState.page * FIND_PAGE, (findState.page + 1) * FIND_PAGE);
    renderTable(table, cols, shown, findState, renderFindings, function (f) {
      function open() {
        if (f.i === null) { return; }
        var target = "#card-" + f.i + "-c" + (f.c === null ? -1 : f.c);
        if (location.hash === target) { openFromHash(); } else { location.hash = target; }
      }
      return {"class": "finding-row" + (f.i === null ? "" : " link"), "data-kind": f.k, "data-class": f.n, "data-key": f.key, tabindex: 0,
              on: {click: function (ev) {
                if (ev.target.closest && ev.target.closest("a, button")) { return; }
                open();
              }, keydown: function (ev) {
                if (ev.target !== ev.currentTarget) { return; }
                if (ev.key === "Enter") { ev.preventDefault(); open(); return; }
                if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
                  var next = ev.key === "ArrowDown" ? ev.currentTarget.nextElementSibling : ev.currentTarget.previousElementSibling;
                  if (next) { ev.preventDefault(); next.focus(); }
                  return;
                }
                REVIEW.handleKey(ev, f.key);
              }}};
    });
    document.getElementById("finding-count").textContent = rows.length + " of " + DATA.findings.length + " findings shown";
    pager(document.getElementById("finding-pager"), findState.page, pages, function (p) { findState.page = p; renderFindings(); });
  }

  // ------------------------------------------------------------------------------------ class table
  var classState = {view: "method", m: null, l: null, metric: "energy_in_mask", hist: "consistency", col: "n", dir: "asc"};
  var CLASSES = DATA.classes;
  function combosOf(method) { return CLASSES.combos.filter(function (c) { return c.m === method; }); }
  function combo(method, layer) { return CLASSES.combos.filter(function (c) { return c.m === method && c.l === layer; })[0]; }
  function comboMethods() {
    var seen = [];
    META.methods.concat(CLASSES.combos.map(function (c) { return c.m; })).forEach(function (m) {
      if (seen.indexOf(m) < 0 && combosOf(m).length) { seen.push(m); }
    });
    return seen;
  }
  function comboLayers(method) {
    var mine = combosOf(method).map(function (c) { return c.l; });
    return META.layers.filter(function (l) { return mine.indexOf(l) >= 0; }).concat(
      mine.filter(function (l) { return META.layers.indexOf(l) < 0; }));
  }
  function classColumns() {
    var cols = [
      {key: "n", label: "class", cell: function (r) {
        return el("span", {title: r.c > 0 ? "class id " + r.c : "a dataset class the model does not know"}, [
          r.c > 0 ? el("span", {"class": "swatch", style: {background: cssColor(r.c)}}) : null, r.n,
          r.c > 0 ? null : el("span", {"class": "tag", text: "unknown to the model"}),
          r.c > 0 ? el("button", {type: "button", "class": "to-gallery", "data-class-id": r.c, title: "show the images of " + r.n + " in the gallery",
                                  text: "images", on: {click: function () { GALLERY.set({cls: String(r.c)}, true); document.getElementById("gallery").scrollIntoView(); }}}) : null]);
      }, value: function (r) { return r.n.toLowerCase(); }},
      {key: "images", label: "images", numeric: true, title: "images scored for the class", cell: function (r) { return String(r.images); }, value: function (r) { return r.images; }},
      {key: "seg_iou", label: label("seg_iou"), numeric: true, shade: true, title: doc("seg_iou"), cell: function (r) { return fmt(r.seg_iou); }, value: function (r) { return r.seg_iou; }},
      {key: "label_quality", label: label("label_quality"), numeric: true, shade: true, title: doc("label_quality"), cell: function (r) { return fmt(r.label_quality); }, value: function (r) { return r.label_quality; }},
      {key: "findings", label: "findings", numeric: true, title: "findings of the class, by kind (hover a cell)", cell: function (r) {
        var total = 0, parts = [];
        META.kinds.forEach(function (k) { total += r.findings[k]; if (r.findings[k]) { parts.push(k + ": " + r.findings[k]); } });
        return el("span", {title: parts.join(", ") || "none", text: String(total)});
      }, value: function (r) { var t = 0; META.kinds.forEach(function (k) { t += r.findings[k]; }); return t; }}
    ];
    var rowIndex = function (r) { return CLASSES.rows.indexOf(r); };
    if (classState.view === "method") {
      var c = combo(classState.m, classState.l);
      META.metrics.forEach(function (metric) {
        cols.push({key: "m:" + metric, label: label(metric), numeric: true, shade: true,
                   title: classState.m + " @ " + classState.l + ": mean " + doc(metric),
                   cell: function (r) { return fmt(c ? c.v[metric][rowIndex(r)] : null); },
                   value: function (r) { return c ? c.v[metric][rowIndex(r)] : null; }});
      });
    } else {
      comboMethods().forEach(function (m) {
        var c = combo(m, classState.l);
        if (!c) { return; }
        cols.push({key: "x:" + m, label: m, numeric: true, shade: true,
                   title: m + " @ " + classState.l + ": mean " + doc(classState.metric),
                   cell: function (r) { return fmt(c.v[classState.metric][rowIndex(r)]); },
                   value: function (r) { return c.v[classState.metric][rowIndex(r)]; }});
      });
    }
    return cols;
  }
  function buildClassControls() {
    var box = document.getElementById("class-controls");
    var methods = comboMethods();
    if (!methods.length) { return; }
    classState.m = methods.indexOf(META.primary_method) >= 0 ? META.primary_method : methods[0];
    var layers = comboLayers(classState.m);
    classState.l = layers.indexOf(META.primary_layer) >= 0 ? META.primary_layer : layers[0];
    var view = el("select", {id: "class-view", "aria-label": "view"}, [
      option("method", "one method: every metric", true), option("metric", "one metric: every method")]);
    var method = el("select", {id: "class-method", "aria-label": "method"});
    methods.forEach(function (m) { method.appendChild(option(m, m, m === classState.m)); });
    var layer = el("select", {id: "class-layer", "aria-label": "layer"});
    var metric = el("select", {id: "class-metric", "aria-label": "metric"});
    META.metrics.forEach(function (m) { metric.appendChild(option(m, label(m), m === classState.metric)); });
    function fillLayers() {
      var names = classState.view === "method" ? comboLayers(classState.m) : META.layers.filter(function (l) {
        return methods.some(function (m) { return combo(m, l); });
      });
      if (names.indexOf(classState.l) < 0) { classState.l = names[0]; }
      clear(layer);
      names.forEach(function (l) { layer.appendChild(option(l, l + (l === META.primary_layer ? " (primary)" : ""), l === classState.l)); });
    }
    var methodLabel = el("label", null, ["method ", method]), metricLabel = el("label", {style: {display: "none"}}, ["metric ", metric]);
    view.addEventListener("change", function () {
      classState.view = view.value;
      methodLabel.style.display = classState.view === "method" ? "" : "none";
      metricLabel.style.display = classState.view === "metric" ? "" : "none";
      fillLayers(); renderClasses();
    });
    method.addEventListener("change", function () { classState.m = method.value; fillLayers(); renderClasses(); renderHistograms(); });
    layer.addEventListener("change", function () { classState.l = layer.value; renderClasses(); renderHistograms(); });
    metric.addEventListener("change", function () { classState.metric = metric.value; renderClasses(); });
    fillLayers();
    box.appendChild(el("label", null, ["show ", view]));
    box.appendChild(methodLabel);
    box.appendChild(metricLabel);
    box.appendChild(el("label", null, ["layer ", layer]));
  }
  function renderClasses() {
    var table = document.getElementById("class-table");
    if (!CLASSES.rows.length) {
      clear(table).appendChild(el("tbody", null, [el("tr", null, [el("td", {"class": "text empty", text: "No scores in this run."})])]));
      return;
    }
    var cols = classColumns();
    var rows = sortRows(CLASSES.rows.slice(), cols, classState);
    renderTable(table, cols, rows, classState, renderClasses, function (r) { return {"class": "class-row", "data-class": r.n}; },
      function (col, i) {
        if (i === 0) { return "mean over classes"; }
        if (!col.numeric || col.key === "images" || col.key === "findings") { return ""; }
        var s = 0, n = 0;
        CLASSES.rows.forEach(function (r) { var v = col.value(r); if (!num(v)) { s += v; n += 1; } });
        return n ? fmt(s / n) : DASH;
      });
  }

  // ------------------------------------------------------------------------------------- histograms
  function buildHistControls() {
    var box = document.getElementById("hist-controls");
    var select = el("select", {id: "hist-metric", "aria-label": "histogram metric"});
    META.hist_metrics.forEach(function (m) { select.appendChild(option(m, label(m), m === classState.hist)); });
    select.addEventListener("change", function () { classState.hist = select.value; renderHistograms(); });
    box.appendChild(el("label", null, ["score ", select]));
    box.appendChild(el("span", {"class": "muted", id: "hist-which"}));
  }
  function histogram(title, counts, sub, classId) {
    var W = 170, H = 64, bins = counts.length, max = Math.max.apply(null, counts.concat([1]));
    var total = counts.reduce(function (a, b) { return a + b; }, 0);
    var alt = "histogram of " + label(classState.hist) + " for " + title + ": " + counts.map(function (c, i) {
      return (i / bins).toFixed(1) + "\u2013" + ((i + 1) / bins).toFixed(1) + ": " + c; }).join(", ");
    var s = svg("svg", {width: W, height: H + 14, viewBox: "0 0 " + W + " " + (H + 14), role: "img", "aria-label": alt});
    var bw = W / bins;
    counts.forEach(function (c, i) {
      var h = Math.round(H * c / max);
      var bar = svg("rect", {"class": "bar", x: (i * bw + 0.5).toFixed(1), y: H - h, width: (bw - 1).toFixed(1), height: h});
      var tip = svg("title", {}); tip.textContent = (i / bins).toFixed(1) + "\u2013" + ((i + 1) / bins).toFixed(1) + ": " + c;
      bar.appendChild(tip); s.appendChild(bar);
    });
    s.appendChild(svg("line", {x1: 0, x2: W, y1: H + 0.5, y2: H + 0.5, stroke: "currentColor", "stroke-opacity": 0.3}));
    [["0", 0, "start"], ["0.5", W / 2, "middle"], ["1", W, "end"]].forEach(function (t) {
      var text = svg("text", {"class": "axis", x: t[1], y: H + 11, "text-anchor": t[2]}); text.textContent = t[0]; s.appendChild(text);
    });
    var t = svg("text", {"class": "axis", x: 2, y: 9}); t.textContent = "max " + max; s.appendChild(t);
    var box = el("div", {"class": "hist"}, [el("div", {"class": "t", text: title}), el("div", {"class": "muted small", text: "n = " + total + (sub || "") + " \u00b7 x: " + label(classState.hist)}), s]);
    if (classId !== undefined && classId > 0) {
      box.appendChild(el("button", {type: "button", "class": "to-gallery", text: "images", title: "show the images of " + title + " in the gallery",
                                    on: {click: function () { GALLERY.set({cls: String(classId)}, true); document.getElementById("gallery").scrollIntoView(); }}}));
    }
    return box;
  }
  function renderHistograms() {
    var box = clear(document.getElementById("histograms"));
    var entry = CLASSES.hist.filter(function (h) { return h.metric === classState.hist && h.m === classState.m && h.l === classState.l; })[0];
    document.getElementById("hist-which").textContent = classState.m ? classState.m + " @ " + classState.l : "";
    if (!entry) { box.appendChild(el("p", {"class": "empty", text: "No scores to draw."})); return; }
    if (entry.all) { box.appendChild(histogram("all classes", entry.all)); }
    CLASSES.rows.forEach(function (r, i) { if (entry.classes[i]) { box.appendChild(histogram(r.n, entry.classes[i], "", r.c)); } });
  }

  // ------------------------------------------------------------------------------------------ gallery
  var pageCache = {}, pageWaiters = {};
  window.segauditPage = function (page, data) {
    pageCache[page] = data;
    (pageWaiters[page] || []).forEach(function (w) { w[0](data); });
    delete pageWaiters[page];
  };
  function loadPage(page) {
    if (pageCache[page]) { return Promise.resolve(pageCache[page]); }
    if (META.inline) {
      var node = document.getElementById("sa-page-" + page);
      if (!node) { return Promise.reject(new Error("page " + (page + 1) + " is missing from the report")); }
      pageCache[page] = JSON.parse(node.textContent);
      return Promise.resolve(pageCache[page]);
    }
    return new Promise(function (resolve, reject) {
      var first = !pageWaiters[page];
      (pageWaiters[page] = pageWaiters[page] || []).push([resolve, reject]);
      if (!first) { return; }
      var name = META.files + "/page-" + String(page + 1).padStart(5, "0") + ".js";
      var script = el("script", {src: name});
      script.addEventListener("error", function () {
        (pageWaiters[page] || []).forEach(function (w) { w[1](new Error("cannot load " + name + " (keep the folder " + META.files + "/ beside the report)")); });
        delete pageWaiters[page];
      });
      document.body.appendChild(script);
    });
  }
  function findBox() {
    var input = el("input", {type: "search", id: "image-search", placeholder: "file name", "aria-label": "find image", style: {width: "14em"}});
    var status = el("span", {"class": "muted"});
    function go() {
      var q = input.value.trim().toLowerCase();
      if (!q) { return; }
      for (var i = 0; i < DATA.index.length; i++) {
        if (DATA.index[i][0].toLowerCase().indexOf(q) >= 0) { status.textContent = ""; location.hash = "#card-" + i; return; }
      }
      status.textContent = "no image matches";
    }
    input.addEventListener("keydown", function (e) { if (e.key === "Enter") { go(); } });
    return el("span", null, [" \u00b7 find ", input, el("button", {type: "button", text: "go", on: {click: go}}), " ", status]);
  }
  /* The gallery shows GALLERY.list() (card indices, filtered and sorted), META.page_size at a time; each
     card comes from its page of cards (loaded on demand), whatever the filter. */
  var view = {key: "", list: []};
  function showPage(page) {
    var cards = document.getElementById("cards");
    if (!META.n_cards) { clear(cards).appendChild(el("p", {"class": "empty", text: "No images in this run."})); return Promise.resolve(); }
    var list = view.list = GALLERY.list(), ps = META.page_size;
    var pages = Math.max(Math.ceil(list.length / ps), 1);
    page = Math.min(Math.max(page, 0), pages - 1);
    var go = function (p) { showPage(p).then(function () { document.getElementById("gallery").scrollIntoView(); }); };
    var first = page * ps, last = Math.min(first + ps, list.length);
    var info = el("span", {"class": "muted", id: "gallery-count", "aria-live": "polite", text: " images " + (list.length ? first + 1 : 0) + "\u2013" + last + " of " +
      list.length + (GALLERY.active() ? " matching " + GALLERY.describe() + " (" + META.n_cards + " in all)" : "")});
    pager(document.getElementById("gallery-pager"), page, pages, go, el("span", null, [info, findBox()]));
    pager(document.getElementById("gallery-pager-bottom"), page, pages, go);
    var want = list.slice(first, last), key = page + ":" + want.join(",");
    if (view.key === key) { return Promise.resolve(); }
    view.key = key;
    if (!want.length) { clear(cards).appendChild(el("p", {"class": "empty", text: "No image matches the filters."})); return Promise.resolve(); }
    var needed = [];
    want.forEach(function (i) { var p = Math.floor(i / ps); if (needed.indexOf(p) < 0) { needed.push(p); } });
    clear(cards).appendChild(el("p", {"class": "muted", text: "loading page " + (page + 1) + "\u2026"}));
    return Promise.all(needed.map(loadPage)).then(function () {
      if (view.key !== key) { return; }
      clear(cards);
      want.forEach(function (i) { cards.appendChild(renderCard(pageCache[Math.floor(i / ps)].cards[i % ps])); });
    }, function (err) {
      clear(cards).appendChild(el("p", {"class": "warn", text: String(err.message || err)}));
    });
  }
  function openFromHash() {
    var m = /^#card-(\d+)(?:-c(-?\d+))?$/.exec(location.hash);
    if (!m) { return; }
    var i = parseInt(m[1], 10), c = m[2] === undefined ? null : parseInt(m[2], 10);
    if (i >= META.n_cards) { return; }
    if (GALLERY.list().indexOf(i) < 0) { GALLERY.set({}, true); }  // a card the filters hide: show all again
    showPage(Math.floor(Math.max(GALLERY.list().indexOf(i), 0) / META.page_size)).then(function () {
      var node = document.getElementById("card-" + i);
      if (!node) { return; }
      if (c !== null && node.selectClass) { node.selectClass(c); }
      document.querySelectorAll(".img-card.hl").forEach(function (n) { n.classList.remove("hl"); });
      node.classList.add("hl");
      node.scrollIntoView({block: "start"});
      node.focus({preventScroll: true});
    });
  }
  /* The card the keys act on: the focused one, else the highlighted one, else the first shown. */
  function currentCard() {
    var a = document.activeElement, node = a && a.closest ? a.closest(".img-card") : null;
    return node || document.querySelector(".img-card.hl") || document.querySelector(".img-card");
  }
  function stepCard(delta) {
    var node = currentCard(), list = GALLERY.list();
    var at = node ? list.indexOf(parseInt(node.id.slice(5), 10)) : -1;
    var next = list[Math.min(Math.max(at + delta, 0), list.length - 1)];
    if (next === undefined) { return; }
    var target = "#card-" + next;
    if (location.hash === target) { openFromHash(); } else { location.hash = target; }
  }
  /* Gallery keys (not while typing in a field): j / k next / previous card, g / p / c toggle GT /
     prediction / CAM, m next method, f / o / u decide the card's finding. */
  function galleryKeys(ev) {
    var t = ev.target, tag = t && t.tagName;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || (t && t.isContentEditable)) { return; }
    if (t && t.closest && t.closest("tr.finding-row, th")) { return; }
    var node = currentCard(), k = ev.key.toLowerCase();
    if (k === "j" || k === "k") { ev.preventDefault(); stepCard(k === "j" ? 1 : -1); return; }
    if (!node || !(t === document.body || (t.closest && t.closest(".img-card")))) { return; }
    var layer = {g: "gt", p: "pred", c: "cam"}[k];
    if (layer) { ev.preventDefault(); node.toggleLayer(layer); return; }
    if (k === "m") { ev.preventDefault(); node.nextMethod(); return; }
    REVIEW.handleKey(ev, node.findingKey());
  }
  function buildGalleryControls() {
    var box = document.getElementById("gallery-filters");
    box.appendChild(GALLERY.controls());
    var cards = document.getElementById("cards");
    var grid = el("input", {type: "checkbox", id: "gallery-grid"});
    var size = el("input", {type: "range", id: "gallery-size", min: 120, max: 320, value: 200, "aria-label": "card size in the grid"});
    function apply() { cards.classList.toggle("grid", grid.checked); cards.style.setProperty("--grid-view", size.value + "px"); }
    grid.addEventListener("change", apply); size.addEventListener("input", apply);
    box.appendChild(el("div", {"class": "controls"}, [el("label", null, [grid, "grid"]), el("label", null, ["size ", size]),
      el("span", {"class": "muted small", text: "keys: j / k next / previous card \u00b7 g GT \u00b7 p prediction \u00b7 c CAM \u00b7 m next method \u00b7 f / o / u decide"})]));
    GALLERY.confusion(document.getElementById("confusion"), document.getElementById("confusion-controls"));
  }

  // ------------------------------------------------------------------------------------------- start
  buildGalleryControls();
  document.addEventListener("keydown", galleryKeys);
  buildFindingControls();
  renderFindings();
  buildClassControls();
  renderClasses();
  buildHistControls();
  renderHistograms();
  window.addEventListener("hashchange", openFromHash);
  document.addEventListener("click", function (ev) {  // a link to the card already in the URL: open it again
    var a = ev.target.closest ? ev.target.closest("a[href^='#card-']") : null;
    if (a && a.getAttribute("href") === location.hash) { openFromHash(); }
  });
  if (/^#card-/.test(location.hash)) { openFromHash(); } else { showPage(0); }
  document.documentElement.setAttribute("data-ready", "1");
})();
