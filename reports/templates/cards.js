/* segaudit report: one image card (reports/cards.py's data drawn by the page). The map math of the card:
   the jet colours and the bilinear resampling of reports/overlay.py, the point prompts of
   segaudit.metrics.scores on the upsampled map; then the card itself: the model's view with GT, prediction,
   CAM, GT outline and points as overlays, the methods side by side, the layer sweep, instance coverage,
   CAM-prompted segments, the label-error view (labelview.js) and the review buttons (review.js).
   Defines window.segauditCards(api) -> {renderCard}, called by report.js with its helpers. */
window.segauditCards = function (api) {
  "use strict";
  var el = api.el, svg = api.svg, clear = api.clear, fmt = api.fmt, fmtG = api.fmtG, num = api.num, label = api.label,
      doc = api.doc, option = api.option, kindBadge = api.kindBadge, scoreStyle = api.scoreStyle, PALETTE = api.palette,
      META = api.META, REVIEW = api.REVIEW, API = api, DASH = "\u2013";

  /* Jet colour of x in [0, 1], as reports.overlay.colorize_cam. */
  function jet(x) {
    function f(v) { return Math.round(Math.min(Math.max(v, 0), 1) * 255); }
    return [f(1.5 - Math.abs(4 * x - 3)), f(1.5 - Math.abs(4 * x - 2)), f(1.5 - Math.abs(4 * x - 1))];
  }
  var JET = (function () { var t = []; for (var i = 0; i < 256; i++) { t.push(jet(i / 255)); } return t; })();

  /* Bilinear resampling with half-pixel centres (torch's align_corners=False), as reports.overlay.upsample_map. */
  function axis(outSize, inSize) {
    var i0 = new Int32Array(outSize), i1 = new Int32Array(outSize), w = new Float32Array(outSize);
    var scale = inSize / outSize;
    for (var o = 0; o < outSize; o++) {
      var src = Math.max((o + 0.5) * scale - 0.5, 0);
      var a = Math.min(Math.floor(src), inSize - 1);
      i0[o] = a; i1[o] = Math.min(a + 1, inSize - 1); w[o] = src - a;
    }
    return {i0: i0, i1: i1, w: w};
  }
  function upsample(values, h, w, outH, outW) {
    var ys = axis(outH, h), xs = axis(outW, w), out = new Float32Array(outH * outW);
    for (var y = 0; y < outH; y++) {
      var r0 = ys.i0[y] * w, r1 = ys.i1[y] * w, wy = ys.w[y];
      for (var x = 0; x < outW; x++) {
        var a = values[r0 + xs.i0[x]] * (1 - wy) + values[r1 + xs.i0[x]] * wy;
        var b = values[r0 + xs.i1[x]] * (1 - wy) + values[r1 + xs.i1[x]] * wy;
        out[y * outW + x] = a * (1 - xs.w[x]) + b * xs.w[x];
      }
    }
    return out;
  }
  /* A map's raw values: base64 of little-endian float32, row-major. */
  function decodeMap(entry) {
    var raw = atob(entry.v), view = new DataView(new ArrayBuffer(raw.length)), n = raw.length / 4;
    for (var i = 0; i < raw.length; i++) { view.setUint8(i, raw.charCodeAt(i)); }
    var values = new Float32Array(n);
    for (var k = 0; k < n; k++) { values[k] = view.getFloat32(4 * k, true); }
    return values;
  }

  /* The point prompts of segaudit.metrics.scores on an upsampled map: max_point, weighted_centroid (cutoff x max
     of the positive part) and background_point, over valid pixels (valid: Uint8Array or null = all).
     Returns [[row, col] | null] x 3, null where segaudit.metrics.scores says undefined. */
  function mapPoints(up, H, W, valid, cutoff) {
    var best = -Infinity, bestAt = -1, low = Infinity, lowAt = -1, peak = 0, i;
    for (i = 0; i < up.length; i++) {
      if (valid && !valid[i]) { continue; }
      var v = up[i];
      if (v > best) { best = v; bestAt = i; }
      if (v < low) { low = v; lowAt = i; }
      if (v > peak) { peak = v; }
    }
    var out = [null, null, null];
    if (bestAt >= 0 && best > 0) { out[0] = [Math.floor(bestAt / W), bestAt % W]; }
    if (peak > 0) {
      var sw = 0, sr = 0, sc = 0, cut = cutoff * peak;
      for (i = 0; i < up.length; i++) {
        if (valid && !valid[i]) { continue; }
        var p = up[i];
        if (p > 0 && p >= cut) { sw += p; sr += p * Math.floor(i / W); sc += p * (i % W); }
      }
      sw = Math.max(sw, 1e-30);
      out[1] = [sr / sw, sc / sw];
    }
    if (lowAt >= 0 && best > low && best > 0) { out[2] = [Math.floor(lowAt / W), lowAt % W]; }
    return out;
  }


  // ---------------------------------------------------------------------------------------- one card
  var labelCache = new WeakMap();
  function decodeLabels(uri) {
    return new Promise(function (resolve) {
      if (!uri) { resolve(null); return; }
      var img = new Image();
      img.onload = function () {
        var c = document.createElement("canvas"); c.width = img.naturalWidth; c.height = img.naturalHeight;
        var ctx = c.getContext("2d"); ctx.drawImage(img, 0, 0);
        var rgba = ctx.getImageData(0, 0, c.width, c.height).data, ids = new Uint8Array(c.width * c.height);
        for (var i = 0; i < ids.length; i++) { ids[i] = rgba[4 * i]; }
        resolve({w: c.width, h: c.height, ids: ids});
      };
      img.onerror = function () { resolve(null); };
      img.src = uri;
    });
  }
  function drawLabels(canvas, labels) {
    canvas.width = labels.w; canvas.height = labels.h;
    var ctx = canvas.getContext("2d"), out = ctx.createImageData(labels.w, labels.h);
    for (var i = 0; i < labels.ids.length; i++) {
      var k = labels.ids[i];
      if (k === 0 || k === 255) { continue; }
      var c = PALETTE[k];
      out.data[4 * i] = c[0]; out.data[4 * i + 1] = c[1]; out.data[4 * i + 2] = c[2]; out.data[4 * i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
  }
  function drawOutline(canvas, labels, classId) {
    canvas.width = labels.w; canvas.height = labels.h;
    var ctx = canvas.getContext("2d"), out = ctx.createImageData(labels.w, labels.h), w = labels.w, h = labels.h, ids = labels.ids;
    if (classId === null || classId <= 0) { ctx.putImageData(out, 0, 0); return; }
    for (var y = 0; y < h; y++) {
      for (var x = 0; x < w; x++) {
        var i = y * w + x;
        if (ids[i] !== classId) { continue; }
        var edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 || ids[i - 1] !== classId || ids[i + 1] !== classId ||
                   ids[i - w] !== classId || ids[i + w] !== classId;
        if (edge) { out.data[4 * i] = 255; out.data[4 * i + 1] = 255; out.data[4 * i + 2] = 255; out.data[4 * i + 3] = 255; }
      }
    }
    ctx.putImageData(out, 0, 0);
  }
  function drawCam(canvas, up, H, W) {
    if (!up) { canvas.width = 1; canvas.height = 1; canvas.getContext("2d").clearRect(0, 0, 1, 1); return; }
    canvas.width = W; canvas.height = H;
    var lo = Infinity, hi = -Infinity, i;
    for (i = 0; i < up.length; i++) { if (up[i] < lo) { lo = up[i]; } if (up[i] > hi) { hi = up[i]; } }
    var span = hi > lo ? hi - lo : 1, ctx = canvas.getContext("2d"), out = ctx.createImageData(W, H);
    for (i = 0; i < up.length; i++) {
      var c = JET[Math.round(hi > lo ? (up[i] - lo) / span * 255 : 0)];
      out.data[4 * i] = c[0]; out.data[4 * i + 1] = c[1]; out.data[4 * i + 2] = c[2]; out.data[4 * i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
  }
  function drawPoints(node, pts, H, W) {
    while (node.firstChild) { node.removeChild(node.firstChild); }
    node.setAttribute("viewBox", "0 0 " + W + " " + H);
    if (!pts) { return; }
    var r = Math.max(W, H) / 32, sw = Math.max(W, H) / 160;
    var styles = [["max", "#ff2d55"], ["centroid", "#ffd60a"], ["background", "#30d5ff"]];
    pts.forEach(function (p, k) {
      if (!p) { return; }
      var x = p[1] + 0.5, y = p[0] + 0.5, shape;
      if (k === 0) { shape = svg("polygon", {points: [x, y - r, x - r * 0.9, y + r * 0.7, x + r * 0.9, y + r * 0.7].join(" ")}); }
      else if (k === 1) { shape = svg("circle", {cx: x, cy: y, r: r * 0.75}); }
      else { shape = svg("path", {d: "M" + (x - r * 0.7) + " " + (y - r * 0.7) + "L" + (x + r * 0.7) + " " + (y + r * 0.7) + "M" + (x + r * 0.7) + " " + (y - r * 0.7) + "L" + (x - r * 0.7) + " " + (y + r * 0.7), "stroke-width": sw * 3.2}); }
      shape.setAttribute("class", "pt pt-" + styles[k][0]);
      shape.setAttribute("fill", k === 2 ? "none" : styles[k][1]);
      shape.setAttribute("stroke", k === 2 ? styles[k][1] : "#000");
      if (k !== 2) { shape.setAttribute("stroke-width", sw); }
      var tip = svg("title", {}); tip.textContent = styles[k][0] + " point (row " + p[0].toFixed(1) + ", col " + p[1].toFixed(1) + ")";
      shape.appendChild(tip);
      node.appendChild(shape);
    });
  }

  /* CNN-Fixations points (fixations table, model input frame of side S) as dots sized by weight */
  function drawFixations(node, fix, subject, S, H) {
    var mine = (fix || []).filter(function (f) { return f.s === subject; })[0];
    if (!mine) { return; }
    var scale = H / S, top = 0;
    mine.p.forEach(function (q) { top = Math.max(top, q[2]); });
    mine.p.forEach(function (q) {
      var dot = svg("circle", {cx: (q[1] + 0.5) * scale, cy: (q[0] + 0.5) * scale,
                               r: scale * (0.6 + 1.4 * Math.sqrt(top > 0 ? q[2] / top : 0))});
      dot.setAttribute("class", "pt pt-fixation");
      dot.setAttribute("fill", "#7CFC00");
      dot.setAttribute("fill-opacity", "0.8");
      node.appendChild(dot);
    });
  }

  function renderCard(card) {
    var byKey = {}, computed = {};
    card.maps.forEach(function (m) { byKey[m.s + "|" + m.m + "|" + m.l] = m; });
    var methods = META.methods.filter(function (m) { return card.maps.some(function (x) { return x.m === m; }); });
    card.maps.forEach(function (x) { if (methods.indexOf(x.m) < 0) { methods.push(x.m); } });
    var layers = META.layers.filter(function (l) { return card.maps.some(function (x) { return x.l === l; }); });
    card.maps.forEach(function (x) { if (layers.indexOf(x.l) < 0) { layers.push(x.l); } });
    var state = {s: 0, m: methods.indexOf(META.primary_method) >= 0 ? META.primary_method : methods[0],
                 l: layers.indexOf(META.primary_layer) >= 0 ? META.primary_layer : layers[0],
                 opacity: 0.5, show: {gt: false, pred: false, cam: true, outline: true, points: true}};
    function subjectOf(classId) {
      for (var i = 0; i < card.subjects.length; i++) { if (card.subjects[i].c === classId) { return i; } }
      return -1;
    }
    // first shown: the class of the image's strongest finding, else its worst class
    var strongest = card.find.slice().sort(function (a, b) { return (b.score || 0) - (a.score || 0); })[0];
    var start = strongest && strongest.c !== null ? subjectOf(strongest.c) : -1;
    if (start < 0) { start = subjectOf(card.worst); }
    state.s = start >= 0 ? start : 0;
    var labelError = card.find.some(function (f) { return f.kind === "label_error"; });
    if (labelError) { state.show.gt = true; state.show.pred = true; state.show.cam = false; }
    var labels = {gt: null, pred: null};
    /* The shown frame: the thumbnail's size (else the map's); each map upsampled to it once, its points
       found once the GT (the void mask) is known. */
    function frameOf(entry) { return [card.th || entry.h, card.tw || entry.w]; }
    function compute(entry) {
      if (!entry) { return null; }
      var key = entry.s + "|" + entry.m + "|" + entry.l, hit = computed[key], f = frameOf(entry);
      if (!hit) {
        hit = computed[key] = {H: f[0], W: f[1], up: upsample(decodeMap(entry), entry.h, entry.w, f[0], f[1]), pts: null, ptsValid: undefined};
      }
      var valid = null;
      if (labels.gt && labels.gt.h === hit.H && labels.gt.w === hit.W) {
        valid = new Uint8Array(labels.gt.ids.length);
        for (var i = 0; i < valid.length; i++) { valid[i] = labels.gt.ids[i] !== 255 ? 1 : 0; }
      }
      if (hit.pts === null || (valid && !hit.ptsValid)) { hit.pts = mapPoints(hit.up, hit.H, hit.W, valid, META.cutoff); hit.ptsValid = !!valid; }
      return hit;
    }

    // head
    var head = el("div", {"class": "card-head"}, [
      el("span", {"class": "rank", text: "#" + (card.rank === null ? DASH : card.rank)}),
      el("span", {"class": "file", title: "image id " + card.id, text: card.file}),
      el("span", {title: doc("suspicion"), text: "suspicion " + fmt(card.susp)}),
      el("span", {title: doc("label_quality"), text: "label quality " + fmt(card.lq)}),
      el("span", {title: META.docs.consistency || "", text: "consistency " + fmt(card.cons)}),
      el("span", {"class": "muted", text: (card.w || "?") + "\u00d7" + (card.h || "?") + " px"})
    ]);
    var findings = el("span", {"class": "card-findings"});
    card.find.forEach(function (f) {
      var b = el("button", {type: "button", "class": "chip", title: "score " + fmt(f.score) + "; show this class"}, [kindBadge(f.kind), " " + (f.name || DASH)]);
      b.addEventListener("click", function () { if (f.c !== null) { node.selectClass(f.c); } });
      findings.appendChild(el("span", {"class": "finding-chip"}, [b, REVIEW.buttons(card.id + "|" + (f.c === null ? "" : f.c) + "|" + f.kind)]));
    });
    head.appendChild(findings);
    head.appendChild(el("div", {"class": "classes", text: "GT: " + (card.gtc.join(", ") || DASH) + " \u00b7 predicted: " +
      (card.prc.join(", ") || DASH) + (card.unk.length ? " \u00b7 unknown to the model: " + card.unk.join(", ") : "")}));

    // viewer
    var viewer = el("div", {"class": "viewer", "data-role": "viewer"});
    var base = card.img ? el("img", {src: card.img, alt: "input view of " + card.file}) : el("div", {"class": "placeholder", text: "no thumbnail"});
    var layerNodes = {
      gt: el("canvas", {"class": "labels", "data-layer": "gt"}),
      pred: el("canvas", {"class": "labels", "data-layer": "pred"}),
      cam: el("canvas", {"class": "cam", "data-layer": "cam"}),
      outline: el("canvas", {"class": "labels", "data-layer": "outline"}),
      points: svg("svg", {"data-layer": "points", preserveAspectRatio: "none"})
    };
    viewer.appendChild(base);
    ["gt", "pred", "cam", "outline"].forEach(function (k) { viewer.appendChild(layerNodes[k]); });
    viewer.appendChild(layerNodes.points);
    var toggles = el("div", {"class": "toggles"});
    [["gt", "GT"], ["pred", "prediction"], ["cam", "CAM"], ["outline", "GT outline"], ["points", "points"]].forEach(function (t) {
      var box = el("input", {type: "checkbox", "data-toggle": t[0], checked: state.show[t[0]]});
      box.addEventListener("change", function () { state.show[t[0]] = box.checked; applyVisibility(); });
      toggles.appendChild(el("label", null, [box, t[1]]));
    });
    var slider = el("input", {type: "range", min: 0, max: 100, value: 50, "data-role": "opacity", "aria-label": "overlay opacity"});
    slider.addEventListener("input", function () { state.opacity = slider.value / 100; applyVisibility(); });
    toggles.appendChild(el("label", null, ["opacity ", slider]));
    var legend = el("div", {"class": "legend-pts", text: "\u25B2 CAM maximum \u00b7 \u25CF weighted centroid \u00b7 \u2715 background point"});
    var viewerCaption = el("div", {"class": "muted small", "data-role": "caption"});
    var viewerCol = el("div", {"class": "viewer-col"}, [viewer, toggles, legend, viewerCaption]);

    // side: selectors, scores, strips, instances, prompts
    var subjectSel = el("select", {"data-role": "subject", "aria-label": "class"});
    card.subjects.forEach(function (s, i) {
      subjectSel.appendChild(option(i, s.name + (s.d !== null ? " \u00b7 detection " + s.d : "") + (s.c === card.worst ? " (worst)" : ""), i === state.s));
    });
    var methodSel = el("select", {"data-role": "method", "aria-label": "method"});
    methods.forEach(function (m) { methodSel.appendChild(option(m, m, m === state.m)); });
    var layerSel = el("select", {"data-role": "layer", "aria-label": "layer"});
    layers.forEach(function (l) { layerSel.appendChild(option(l, l, l === state.l)); });
    subjectSel.addEventListener("change", function () { state.s = parseInt(subjectSel.value, 10); update(); });
    methodSel.addEventListener("change", function () {
      state.m = methodSel.value;
      // a method computed at one layer only (fixations, guided backprop: the input) brings its layer along
      if (!card.maps.some(function (x) { return x.m === state.m && x.l === state.l; })) {
        var alt = card.maps.filter(function (x) { return x.m === state.m; })[0];
        if (alt) { state.l = alt.l; layerSel.value = alt.l; }
      }
      update();
    });
    layerSel.addEventListener("change", function () { state.l = layerSel.value; update(); });
    var selectors = el("div", {"class": "controls"}, [el("label", null, ["class ", subjectSel]), el("label", null, ["method ", methodSel]),
                                                       layers.length > 1 ? el("label", null, ["layer ", layerSel]) : null]);
    var scores = el("table", {"class": "scores plain"});
    var methodStrip = el("div", {"class": "strip", "data-role": "methods"});
    var layerStrip = el("div", {"class": "strip", "data-role": "layers"});
    var inst = el("div", {"data-role": "instances"});
    var prompts = el("div", {"data-role": "prompts"});
    var contextBox = el("div", {"data-role": "context"});
    var side = el("div", {"class": "side"}, [selectors, scores, contextBox,
      el("h3", {text: "Methods side by side"}), methodStrip,
      layers.length > 1 ? el("h3", {text: "Layer sweep (early \u2192 late)"}) : null, layers.length > 1 ? layerStrip : null,
      inst, prompts]);
    var compareView = window.segauditLabelView ? window.segauditLabelView(API, card, labelError) : null;
    var node = el("article", {"class": "img-card", id: "card-" + card.i, "data-rank": card.rank === null ? "" : card.rank, tabindex: -1,
                              "aria-label": "image " + (card.rank === null ? "" : "#" + card.rank + " ") + card.file},
                  [head, compareView ? compareView.node : null, el("div", {"class": "card-body"}, [viewerCol, side])]);
    node.toggleLayer = function (layer) {
      var box = toggles.querySelector("input[data-toggle='" + layer + "']");
      if (box) { box.checked = !box.checked; state.show[layer] = box.checked; applyVisibility(); }
    };
    node.nextMethod = function () {
      var at = methods.indexOf(state.m);
      methodSel.value = methods[(at + 1) % methods.length];
      methodSel.dispatchEvent(new Event("change"));
    };
    /* the finding the decision keys act on: the shown class's strongest, else the image's strongest */
    node.findingKey = function () {
      var subject = card.subjects[state.s], mine = card.find.filter(function (f) { return subject && f.c === subject.c; });
      var f = (mine.length ? mine : card.find).slice().sort(function (a, b) { return (b.score || 0) - (a.score || 0); })[0];
      return f ? card.id + "|" + (f.c === null ? "" : f.c) + "|" + f.kind : null;
    };
    /* the page's point prompts of the card's k-th map (tests compare them with segaudit.metrics.scores) */
    node.mapPoints = function (k) { var got = compute(card.maps[k]); return got ? got.pts : null; };
    node.selectClass = function (classId) {
      var i = subjectOf(classId);
      if (i >= 0) { state.s = i; subjectSel.value = String(i); update(); }
    };

    function applyVisibility() {
      Object.keys(layerNodes).forEach(function (k) {
        layerNodes[k].classList.toggle("layer-hidden", !state.show[k]);
        if (k === "gt" || k === "pred" || k === "cam") { layerNodes[k].style.opacity = String(state.opacity); }
      });
    }
    function panel(title, entry, selected, onPick, detail) {
      var stack = el("div", {"class": "stack"}, [card.img ? el("img", {src: card.img, alt: ""}) : el("div", {"class": "placeholder", text: "no view"})]);
      var cam = el("canvas", {"class": "cam"}), outline = el("canvas", {"class": "labels"}), pts = svg("svg", {preserveAspectRatio: "none"});
      cam.style.opacity = "0.55";
      stack.appendChild(cam); stack.appendChild(outline); stack.appendChild(pts);
      var got = compute(entry);
      if (got) { drawCam(cam, got.up, got.H, got.W); drawPoints(pts, got.pts, got.H, got.W); } else { stack.appendChild(el("div", {"class": "placeholder", text: "no map"})); }
      if (labels.gt) { drawOutline(outline, labels.gt, card.subjects[state.s] ? card.subjects[state.s].c : null); }
      var p = el("div", {"class": "panel" + (selected ? " sel" : ""), title: "show this map above"}, [stack,
        el("div", {"class": "cap"}, [el("b", {text: title}), el("div", {"class": "muted", text: detail})])]);
      p.addEventListener("click", onPick);
      return p;
    }
    function detailOf(entry) {
      if (!entry) { return "no map"; }
      var sc = entry.sc || {};
      return "energy in GT " + fmt(sc.energy_in_mask, 2) + " \u00b7 max " + fmtG(entry.hi);
    }
    function update() {
      var subject = card.subjects[state.s];
      var entry = subject ? byKey[state.s + "|" + state.m + "|" + state.l] : null;
      var got = compute(entry);
      drawCam(layerNodes.cam, got ? got.up : null, got ? got.H : 1, got ? got.W : 1);
      drawPoints(layerNodes.points, got ? got.pts : null, got ? got.H : 1, got ? got.W : 1);
      if (got && state.m === "fixations") { drawFixations(layerNodes.points, card.fix, state.s, entry.h, got.H); }
      if (labels.gt) { drawOutline(layerNodes.outline, labels.gt, subject ? subject.c : null); }
      if (compareView) { compareView.update(labels, subject ? subject.c : null, got); }
      viewerCaption.textContent = entry ? (state.m + " @ " + state.l + " \u00b7 target " + (entry.t || DASH) + " \u00b7 raw range " +
        fmtG(entry.lo) + " \u2026 " + fmtG(entry.hi)) : (subject ? "no map for " + subject.name + " with " + state.m + " @ " + state.l : "no map");
      // scores of the shown map
      clear(scores);
      var sc = entry ? entry.sc || {} : {};
      var row1 = el("tr"), row2 = el("tr");
      [["seg_iou", subject ? subject.iou : null], ["label_quality", subject ? subject.lq : null]].concat(
        Object.keys(sc).map(function (k) { return [k, sc[k]]; })).forEach(function (kv) {
        row1.appendChild(el("th", {title: doc(kv[0]), text: label(kv[0])}));
        var td = el("td", {text: fmt(kv[1], 2)}); var st = scoreStyle(kv[1]); if (st) { td.style.backgroundColor = st.backgroundColor; }
        row2.appendChild(td);
      });
      scores.appendChild(el("thead", null, [row1])); scores.appendChild(el("tbody", null, [row2]));
      // methods side by side at the chosen layer
      clear(methodStrip);
      methods.forEach(function (m) {
        // a method computed at another layer only (guided backprop and fixations at the input) shows its own
        var at = byKey[state.s + "|" + m + "|" + state.l] ? state.l : layers.filter(function (l) { return byKey[state.s + "|" + m + "|" + l]; })[0];
        var e = at === undefined ? undefined : byKey[state.s + "|" + m + "|" + at];
        methodStrip.appendChild(panel(at === undefined || at === state.l ? m : m + " @ " + at, e, m === state.m, function () {
          state.m = m; methodSel.value = m;
          if (at !== undefined) { state.l = at; layerSel.value = at; }
          update();
        }, detailOf(e)));
      });
      // the layer sweep for the chosen method
      clear(layerStrip);
      if (layers.length > 1) {
        layers.forEach(function (l) {
          var e = byKey[state.s + "|" + state.m + "|" + l];
          layerStrip.appendChild(panel(l, e, l === state.l, function () { state.l = l; layerSel.value = l; update(); }, detailOf(e)));
        });
      }
      // instance coverage
      clear(inst);
      var rows = card.inst.filter(function (x) { return x.s === state.s && x.m === state.m && x.l === state.l; })[0];
      if (rows) {
        var n = rows.rows.length;
        inst.appendChild(el("h3", {title: doc("instance_coverage"), text: n < 2 ? "Instance coverage: one instance (the rule needs 2 or more)" :
          "Instance coverage " + fmt(rows.cov, 2) + " (" + n + " instances)"}));
        var chips = el("div", {"class": "inst"});
        rows.rows.forEach(function (r) {
          /* segaudit.metrics.instances: covered = peak >= 0.5 or share of the class's mass >= 1 / (2n); with one
             instance the share is 1 and the rule says nothing, so no badge: the map's mass share is shown */
          var undef = num(r.cov) || n < 2, yes = !undef && r.cov === 1;
          var why = undef ? "" : (!num(r.pk) && r.pk >= 0.5 ? "peak " + fmt(r.pk, 2) + " \u2265 0.50" :
            "class mass share " + fmt(r.cms, 2) + (yes ? " \u2265 " : " < ") + fmt(1 / (2 * n), 2));
          var verdict = n < 2 ? "single instance, energy in it " + fmt(r.ms, 2) : (num(r.cov) ? "?" : (yes ? "\u2713 covered" : "\u2717 dark") + ": " + why);
          chips.appendChild(el("span", {"class": undef ? "" : (yes ? "yes" : "no"), "data-covered": undef ? "" : (yes ? "1" : "0"),
            title: "mass share " + fmt(r.ms, 2) + ", share of the class's mass " + fmt(r.cms, 2) + ", peak " + fmt(r.pk, 2) + ", " + (r.px === null ? "?" : r.px) + " px",
            text: "#" + r.k + (r.a ? " (ann " + r.a + ")" : "") + " " + verdict}));
        });
        inst.appendChild(chips);
      }
      // the causal context test (segaudit.metrics.context): the model asked, not the map
      clear(contextBox);
      var test = (card.ctx || []).filter(function (x) { return x.s === state.s; })[0];
      if (test) {
        var caption = function (text) { return el("figcaption", {"class": "muted small", text: text}); };
        contextBox.appendChild(el("h3", {text: "Causal context test"}));
        contextBox.appendChild(el("div", {"class": "context-views"}, [
          el("figure", null, [test.obj ? el("img", {src: test.obj, alt: "object only"}) : null,
            caption("object only: score " + fmt(test.sc, 2) + " → " + fmt(test.so, 2) + ", IoU " + fmt(test.iou, 2) + " → " + fmt(test.io, 2))]),
          el("figure", null, [test.ctx ? el("img", {src: test.ctx, alt: "context only"}) : null,
            caption("context only: " + fmt(test.hal, 2) + " of the object's place still predicted")])]));
        contextBox.appendChild(el("div", {"class": "small", "data-role": "context-drop",
          title: "score drop s(x) - s(x_obj) without the context, averaged over neutral fills (Hoyer et al. 2019); the map's outside share beside it",
          text: "score drop without context " + fmt(test.drop, 2) + " · IoU drop " + fmt(test.idrop, 2) + " · map outside share " + fmt(test.out, 2)}));
      }
      // CAM-prompted segments
      clear(prompts);
      var mine = card.prompts.filter(function (p) { return p.s === state.s; });
      if (mine.length) {
        prompts.appendChild(el("h3", {text: "CAM-prompted segments (" + mine[0].seg + ", " + mine[0].m + " @ " + mine[0].l + ")"}));
        var t = el("table", {"class": "scores plain"}, [el("thead", null, [el("tr", null, [el("th", {"class": "text", text: "point"}), el("th", {"class": "text", text: "prompts"}),
          el("th", {text: "point hit"}), el("th", {text: "IoU with GT"}), el("th", {text: "Dice"})])])]);
        var body = el("tbody");
        mine.forEach(function (p) {
          body.appendChild(el("tr", null, [el("td", {"class": "text", text: p.pt}), el("td", {"class": "text", text: p.pr}),
            el("td", {text: fmt(p.hit, 0)}), el("td", {text: fmt(p.iou, 2)}), el("td", {text: fmt(p.dice, 2)})]));
        });
        t.appendChild(body); prompts.appendChild(t);
      }
    }
    applyVisibility();
    update();
    Promise.all([decodeLabels(card.gt), decodeLabels(card.pred)]).then(function (res) {
      labels.gt = res[0]; labels.pred = res[1];
      if (labels.gt) { drawLabels(layerNodes.gt, labels.gt); }
      if (labels.pred) { drawLabels(layerNodes.pred, labels.pred); }
      update();
      node.setAttribute("data-ready", "1");
    });
    return node;
  }

  return {renderCard: renderCard};
};
