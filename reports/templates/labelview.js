/* segaudit report: the label-error view of an image card. GT | prediction | disagreement of the chosen
   class side by side (disagreement: false positive pixels, predicted c but labelled otherwise, in red;
   false negative pixels, labelled c but predicted otherwise, in blue; void excluded), a legend of the
   classes present, a hover readout (class in GT, in the prediction, the CAM value) and a one-line reading
   of the larger disagreement ("model predicts X here; the label says Y"). Open by default on cards with a
   label-error finding. Defines window.segauditLabelView(api, card, open). */
window.segauditLabelView = function (api, card, open) {
  "use strict";
  var el = api.el, META = api.META, NAMES = META.class_names || [], VOID = 255;
  function name(k) { return k === VOID ? "void" : (NAMES[k] !== undefined ? NAMES[k] : "class " + k); }
  function rgb(k) { var c = api.palette[k]; return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }
  function stack(title) {
    var canvas = el("canvas", {"class": "labels", "aria-hidden": "true"});
    var box = el("div", {"class": "stack"}, [card.img ? el("img", {src: card.img, alt: ""}) : el("div", {"class": "placeholder", text: "no view"}), canvas]);
    return {canvas: canvas, node: el("figure", {"class": "lv-panel"}, [box, el("figcaption", {text: title})])};
  }
  var gt = stack("label (GT)"), pred = stack("prediction"), diff = stack("disagreement");
  var legend = el("div", {"class": "lv-legend", "data-role": "legend"});
  var readout = el("div", {"class": "lv-readout mono", "data-role": "readout", "aria-live": "polite", text: "hover a picture for the pixel's classes and CAM value"});
  var reading = el("div", {"class": "lv-reading", "data-role": "reading"});
  var details = el("details", {"class": "label-view", "data-role": "label-view", open: open}, [
    el("summary", {text: "GT | prediction | disagreement"}), reading,
    el("div", {"class": "lv-row"}, [gt.node, pred.node, diff.node]),
    el("div", {"class": "lv-key muted small", text: "disagreement of the shown class: red = predicted, not labelled (false positive) \u00b7 blue = labelled, not predicted (false negative)"}),
    legend, readout]);
  var last = {labels: null, cam: null};

  function paint(canvas, labels, colour) {
    canvas.width = labels.w; canvas.height = labels.h;
    var ctx = canvas.getContext("2d"), out = ctx.createImageData(labels.w, labels.h);
    for (var i = 0; i < labels.w * labels.h; i++) {
      var c = colour(i);
      if (!c) { continue; }
      out.data[4 * i] = c[0]; out.data[4 * i + 1] = c[1]; out.data[4 * i + 2] = c[2]; out.data[4 * i + 3] = c[3] === undefined ? 200 : c[3];
    }
    ctx.putImageData(out, 0, 0);
  }
  function most(counts, skip) {
    var best = -1, n = 0;
    Object.keys(counts).forEach(function (k) { if (+k !== skip && counts[k] > n) { best = +k; n = counts[k]; } });
    return [best, n];
  }
  function update(labels, classId, cam) {
    if (!labels.gt || !labels.pred || labels.gt.w !== labels.pred.w || labels.gt.h !== labels.pred.h) { return; }
    last.labels = labels; last.cam = cam;
    var g = labels.gt.ids, p = labels.pred.ids, fnBy = {}, fpBy = {}, present = {};
    paint(gt.canvas, labels.gt, function (i) { present[g[i]] = 1; return g[i] === 0 ? null : (g[i] === VOID ? [128, 128, 128, 160] : api.palette[g[i]]); });
    paint(pred.canvas, labels.pred, function (i) { present[p[i]] = 1; return p[i] === 0 || p[i] === VOID ? null : api.palette[p[i]]; });
    paint(diff.canvas, labels.gt, function (i) {
      if (classId === null || g[i] === VOID) { return null; }
      if (p[i] === classId && g[i] !== classId) { fpBy[g[i]] = (fpBy[g[i]] || 0) + 1; return [255, 40, 40, 230]; }
      if (g[i] === classId && p[i] !== classId) { fnBy[p[i]] = (fnBy[p[i]] || 0) + 1; return [40, 120, 255, 230]; }
      return null;
    });
    while (legend.firstChild) { legend.removeChild(legend.firstChild); }
    Object.keys(present).map(Number).sort(function (a, b) { return a - b; }).forEach(function (k) {
      legend.appendChild(el("span", {"class": "lv-item"}, [el("span", {"class": "swatch", style: {background: k === VOID ? "rgb(128,128,128)" : rgb(k)}}), name(k)]));
    });
    var fn = most(fnBy, classId), fp = most(fpBy, classId), c = classId === null ? "?" : name(classId);
    if (classId === null || (fn[1] === 0 && fp[1] === 0)) { reading.textContent = "The prediction agrees with the label of " + c + " here."; }
    else if (fn[1] >= fp[1]) { reading.textContent = "The model predicts " + name(fn[0]) + " here; the label says " + c + " (" + fn[1] + " px)."; }
    else { reading.textContent = "The model predicts " + c + " here; the label says " + name(fp[0]) + " (" + fp[1] + " px)."; }
  }
  function hover(ev) {
    var labels = last.labels;
    if (!labels || !labels.gt) { return; }
    var r = ev.currentTarget.getBoundingClientRect();
    var x = Math.floor((ev.clientX - r.left) / r.width * labels.gt.w), y = Math.floor((ev.clientY - r.top) / r.height * labels.gt.h);
    if (x < 0 || y < 0 || x >= labels.gt.w || y >= labels.gt.h) { return; }
    var i = y * labels.gt.w + x, cam = last.cam && last.cam.W === labels.gt.w && last.cam.H === labels.gt.h ? last.cam.up[i] : null;
    readout.textContent = "row " + y + ", col " + x + ": GT " + name(labels.gt.ids[i]) + " \u00b7 prediction " + name(labels.pred.ids[i]) +
      " \u00b7 CAM " + (cam === null ? "\u2013" : cam.toPrecision(3));
  }
  [gt, pred, diff].forEach(function (s) { s.node.firstChild.addEventListener("mousemove", hover); });
  return {node: details, update: update};
};
