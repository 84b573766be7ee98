"""Compare two runs (two models, two layers, two settings on the same data): per-class deltas and the
images whose scores changed most, as one self-contained HTML page (``segaudit compare RUN_A RUN_B``).

Read from the two runs' tables alone (:func:`segaudit.runs.tables.load_run`). Classes are matched by name
(case-insensitive), images by ``image_id`` or by file name, whichever pairs more (:mod:`reports.pairing`:
the same images read as COCO and as VOC pair up), methods by name; each run's maps are taken at its
primary layer (the first of its ``layer``), so two runs of one model at two layers compare layer against
layer. Every delta is ``B - A``. The page opens with a warning for every difference beyond the model
(format, dataset, split, classes, methods, layer, unpaired images), lists the findings new in B and
resolved since A, and links each image to its card in both runs' reports.

An image "changed" when, on the chosen method (the first common one by default), its label quality or
its mean consistency over its classes moved by at least 0.0005 (what the page shows as a non-zero
delta); images whose every delta rounds to 0.000 are not listed.

Examples
--------
>>> from reports.compare import compare_runs
>>> compare_runs("runs/model_a", "runs/model_b", "compare.html")           # doctest: +SKIP
PosixPath('compare.html')
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup
from segaudit.reports.overlay import (
    blend,
    colorize_cam,
    colorize_labels,
    decode_image,
    decode_labels,
    normalize_map,
    resize_labels,
    resize_rgb,
    to_data_uri,
    upsample_map,
)
from segaudit.reports.page import METRIC_LABELS, static_text, template_environment
from segaudit.reports.pairing import finding_changes, match_images, run_warnings
from segaudit.reports.review_list import images_in_review_order
from segaudit.reports.summary import CLASS_METRICS, class_facts, class_scores, layer_order
from segaudit.reports.values import as_int, as_text

from segaudit.runs.tables import RunTables, filesystem, is_url, join, load_run
from segaudit.schema import COLUMN_DOCS, VOID_LABEL

__all__ = ["compare_runs", "class_deltas", "image_deltas", "primary_layer"]

#: Metrics where a lower value is better (their deltas are coloured the other way round).
_LOWER_IS_BETTER = frozenset({"background_point_hit", "suspicion"})

#: Picture side in the comparison's image rows.
_SIDE = 160
_TEMPLATE = "compare.html.j2"
#: Smallest change shown as non-zero (deltas are printed with 3 decimals).
_SHOWN = 5e-4


def primary_layer(run: dict[str, Any], scores: pd.DataFrame) -> str:
    """The run's primary layer: the first of its ``layer`` setting, else the first scored (natural order)."""
    first = as_text(run.get("layer")).split(",")[0]
    if first or scores.empty:
        return first
    return layer_order(scores["layer"].dropna().astype(str))[0]


def class_deltas(a: RunTables, b: RunTables) -> tuple[pd.DataFrame, list[str]]:
    """Per class (matched by name): A, B and B - A of seg IoU and label quality, and of every metric of
    :data:`segaudit.reports.summary.CLASS_METRICS` for each method both runs have, at each run's primary layer.

    Returns
    -------
    (pd.DataFrame, list of str)
        One row per class present in either run (``class_name``, ``images_a``, ``images_b``, then
        ``<col>_a``, ``<col>_b``, ``<col>_delta`` for ``seg_iou``, ``label_quality`` and
        ``<method>/<metric>``), sorted by name; and the common methods, in A's order.
    """
    methods = [m for m in _methods(a) if m in set(_methods(b))]
    sides = {}
    for tag, run in (("a", a), ("b", b)):
        facts = class_facts(run.scores, run.class_names)
        facts = facts[facts["class_id"] > 0].assign(key=lambda f: f["class_name"].str.lower())
        frame = facts.set_index("key")[["class_name", "n_images", "seg_iou", "label_quality"]]
        means = class_scores(run.scores, run.instances)
        layer = primary_layer(run.run, run.scores)
        names = dict(zip(facts["class_id"], facts["key"], strict=True))
        for method in methods:
            mine = means[(means["method"] == method) & (means["layer"] == layer)]
            mine = mine.assign(key=mine["class_id"].map(names)).dropna(subset=["key"]).set_index("key")
            for metric in CLASS_METRICS:
                frame[f"{method}/{metric}"] = mine[metric].reindex(frame.index).astype(float)
        sides[tag] = frame
    keys = sorted(set(sides["a"].index) | set(sides["b"].index))
    out = pd.DataFrame(index=keys)
    out["class_name"] = sides["a"]["class_name"].reindex(keys).fillna(sides["b"]["class_name"].reindex(keys))
    out["images_a"] = sides["a"]["n_images"].reindex(keys).fillna(0).astype(int)
    out["images_b"] = sides["b"]["n_images"].reindex(keys).fillna(0).astype(int)
    for col in ["seg_iou", "label_quality", *[f"{m}/{x}" for m in methods for x in CLASS_METRICS]]:
        va = sides["a"][col].reindex(keys).astype(float) if col in sides["a"] else pd.Series(np.nan, index=keys)
        vb = sides["b"][col].reindex(keys).astype(float) if col in sides["b"] else pd.Series(np.nan, index=keys)
        out[f"{col}_a"], out[f"{col}_b"], out[f"{col}_delta"] = va, vb, vb - va
    return out.reset_index(drop=True), methods


def image_deltas(a: RunTables, b: RunTables, top: int = 50, method: str | None = None) -> pd.DataFrame:
    """The images whose scores changed most between the runs.

    Images are paired by :func:`reports.pairing.match_images`. With ``method`` (a method both runs have),
    the change is ``max(|delta label quality|, |delta consistency of the method|)``, the method's
    consistency being the image's mean over its classes at each run's primary layer; without, it is
    ``max(|delta suspicion|, |delta consistency|)``. Images that changed by less than 0.0005 are left out;
    ties keep A's review order.

    Returns
    -------
    pd.DataFrame
        Up to ``top`` rows, largest change first: ``image_id_a``, ``image_id_b``, ``file_name``,
        ``suspicion_a/_b/_delta``, ``consistency_a/_b/_delta``, ``label_quality_a/_b/_delta``,
        ``method_consistency_a/_b/_delta`` (NaN without ``method``), ``review_rank_a/_b``, ``change``.
    """
    cols = ["image_id", "file_name", "suspicion", "consistency", "label_quality", "review_rank"]
    ia, ib = a.images[cols].copy(), b.images[cols].copy()
    if ia.empty or ib.empty:
        return pd.DataFrame(columns=["image_id_a", "image_id_b", "file_name", "change"])
    _, ia["_key"], ib["_key"] = match_images(ia, ib)
    ia["method_consistency"] = _method_consistency(a, method).reindex(ia["image_id"].astype(str)).to_numpy()
    ib["method_consistency"] = _method_consistency(b, method).reindex(ib["image_id"].astype(str)).to_numpy()
    joined = ia.merge(ib, on="_key", suffixes=("_a", "_b"))
    for col in ("suspicion", "consistency", "label_quality", "method_consistency"):
        joined[f"{col}_delta"] = joined[f"{col}_b"].astype(float) - joined[f"{col}_a"].astype(float)
    joined["file_name"] = joined["file_name_a"].fillna(joined["file_name_b"])
    if method is not None:
        change = np.fmax(joined["label_quality_delta"].abs(), joined["method_consistency_delta"].abs())
    else:
        change = np.fmax(joined["suspicion_delta"].abs(), joined["consistency_delta"].abs())
    joined["change"] = change
    joined = joined[joined["change"] >= _SHOWN]
    joined = joined.sort_values(["change", "review_rank_a"], ascending=[False, True], kind="stable", na_position="last")
    return joined.head(max(int(top), 0)).reset_index(drop=True)


def _method_consistency(run: RunTables, method: str | None) -> pd.Series:
    """Per image id: the mean consistency over its classes of ``method`` at the run's primary layer."""
    if method is None or run.scores.empty:
        return pd.Series(dtype=float)
    s = run.scores
    layer = primary_layer(run.run, s)
    mine = s[(s["method"] == method) & (s["layer"] == layer) & (s["mask"] == "gt") & (s["class_id"] > 0)]
    return pd.to_numeric(mine["consistency"], errors="coerce").groupby(mine["image_id"].astype(str)).mean()


def compare_runs(run_a: str | Path, run_b: str | Path, out_path: str | Path | None = None, top: int = 50,
                 method: str | None = None) -> Path | str:
    """Write the comparison page of two runs (local folders or fsspec URLs); ``<run_b>/compare.html`` by
    default. Returns its path (its URL, a ``str``, when written to object storage).

    ``method``: the method of the per-image deltas (default: the first both runs have)."""
    a, b = load_run(run_a), load_run(run_b)
    out = str(out_path) if out_path is not None else join(run_b, "compare.html")
    deltas, methods = class_deltas(a, b)
    method = method if method in methods else (methods[0] if methods else None)
    changed = image_deltas(a, b, top, method)
    how, key_a, key_b = match_images(a.images, b.images) if len(a.images) and len(b.images) else \
        ("id", pd.Series(dtype=str), pd.Series(dtype=str))
    shared = len(set(key_a) & set(key_b))
    warnings = run_warnings(a.run, b.run, _methods(a), _methods(b),
                            (primary_layer(a.run, a.scores), primary_layer(b.run, b.scores)),
                            (how, shared, len(a.images), len(b.images)))
    ids_a = dict(zip(a.images["image_id"].astype(str), key_a, strict=True))
    ids_b = dict(zip(b.images["image_id"].astype(str), key_b, strict=True))
    new, resolved = finding_changes(a.findings, b.findings, ids_a, ids_b)
    cards = (_card_links(a, run_a, out), _card_links(b, run_b, out))
    context = {
        "title": f"segaudit comparison {as_text(a.run.get('run_id'))} vs {as_text(b.run.get('run_id'))}",
        "runs": [_run_card("A", a, run_a), _run_card("B", b, run_b)],
        "warnings": warnings,
        "pairing": {"how": how, "shared": shared},
        "method": method,
        "class_tables": [_class_table(deltas, m, colour=shared > 0) for m in methods],
        "base_table": _class_table(deltas, None, colour=shared > 0),
        "images": _image_rows(_Indexed(a), _Indexed(b), changed, methods, method, cards),
        "new_findings": _finding_rows(new, cards[1]),
        "resolved_findings": _finding_rows(resolved, cards[0]),
        "top": int(top),
        "css": Markup(static_text("report.css")),
        "script": Markup(static_text("sortable.js")),
    }
    html = template_environment().get_template(_TEMPLATE).render(**context)
    if is_url(out):
        fs, path = filesystem(out)
        fs.pipe_file(path, html.encode("utf-8"))
        return out
    local = Path(out.removeprefix("file://"))
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(local)
    return local


# ------------------------------------------------------------------------------------------------ parts


def _methods(run: RunTables) -> list[str]:
    names = [str(m) for m in (run.run.get("methods") or [])]
    if len(run.scores):
        names += [m for m in pd.unique(run.scores["method"].astype(str)) if m not in names]
    return names


def _run_card(tag: str, run: RunTables, path: str | Path) -> dict[str, Any]:
    meta = run.run
    consistency = pd.to_numeric(run.images["consistency"], errors="coerce")
    return {
        "tag": tag,
        "path": str(path),
        "run_id": as_text(meta.get("run_id")),
        "model": as_text(meta.get("model_name")),
        "sha": as_text(meta.get("model_sha256"))[:12],
        "layer": primary_layer(meta, run.scores),
        "layers": as_text(meta.get("layer")),
        "methods": ", ".join(_methods(run)),
        "dataset": f"{as_text(meta.get('dataset_kind'))} {as_text(meta.get('dataset_path'))}".strip(),
        "images": len(run.images),
        "findings": len(run.findings),
        "errors": len(run.errors),
        "consistency": _fmt(float(consistency.mean()) if consistency.notna().any() else math.nan),
    }


def _card_links(run: RunTables, run_dir: str | Path, out: str) -> tuple[str, dict[str, int]]:
    """``(report href, image id -> card index)``: where the run's report is seen from the comparison page,
    and each image's card in it (cards are in review order, as :func:`reports.render.render_report`)."""
    report = join(run_dir, "report.html")
    if not is_url(report) and not is_url(out):
        report = os.path.relpath(report.removeprefix("file://"), Path(out.removeprefix("file://")).parent)
    order = images_in_review_order(run.images)
    return Path(report).as_posix() if not is_url(report) else report, \
        {str(i): k for k, i in enumerate(order["image_id"])} if len(order) else {}


def _finding_rows(findings: pd.DataFrame, cards: tuple[str, dict[str, int]]) -> list[dict[str, Any]]:
    report, index = cards
    rows = []
    for rec in findings.to_dict("records"):
        card = index.get(str(rec.get("image_id")))
        rows.append({"kind": as_text(rec.get("kind")).replace("_", " "), "class_name": as_text(rec.get("class_name")),
                     "file_name": as_text(rec.get("file_name")), "score": _fmt(rec.get("score")),
                     "href": f"{report}#card-{card}" if card is not None else None})
    return rows


def _class_table(deltas: pd.DataFrame, method: str | None, colour: bool = True) -> dict[str, Any]:
    """Rows of one table: the method's metrics (A, B, delta), or seg IoU and label quality if None
    (deltas uncoloured when ``colour`` is false: the runs share no image)."""
    cols = ["seg_iou", "label_quality"] if method is None else [f"{method}/{m}" for m in CLASS_METRICS]
    heads = [{"label": METRIC_LABELS.get(c.split("/")[-1], c), "title": COLUMN_DOCS.get(c.split("/")[-1], "")}
             for c in cols]
    rows = []
    for rec in deltas.to_dict("records"):
        cells = []
        for col in cols:
            va, vb, d = rec[f"{col}_a"], rec[f"{col}_b"], rec[f"{col}_delta"]
            better = -1.0 if col.split("/")[-1] in _LOWER_IS_BETTER else 1.0
            cells.append({"a": _fmt(va), "b": _fmt(vb), "d": _signed(d), "sort": "" if _nan(d) else f"{d:.6g}",
                          "style": _delta_style(d, better) if colour else ""})
        rows.append({"name": as_text(rec["class_name"]), "images": f"{rec['images_a']} / {rec['images_b']}",
                     "images_sort": int(rec["images_a"]) + int(rec["images_b"]), "cells": cells})
    return {"method": method, "heads": heads, "rows": rows}


def _image_rows(a: _Indexed, b: _Indexed, changed: pd.DataFrame, methods: Sequence[str], method: str | None,
                cards: tuple[tuple[str, dict[str, int]], tuple[str, dict[str, int]]]) -> list[dict[str, Any]]:
    if changed.empty:
        return []
    layer_a, layer_b = primary_layer(a.run, a.scores), primary_layer(b.run, b.scores)
    rows = []
    for rec in changed.to_dict("records"):
        ida, idb = str(rec["image_id_a"]), str(rec["image_id_b"])
        class_id, class_name = _changed_class(a, b, ida, idb, method, layer_a, layer_b)
        view = _view(a, ida)
        view = view if view is not None else _view(b, idb)
        pictures = [_picture("image", view, None)]
        pictures.append(_picture("GT", view, _label_overlay(view, _thumb(a, ida, "gt_png"))))
        pictures.append(_picture("prediction A", view, _label_overlay(view, _thumb(a, ida, "pred_png"))))
        pictures.append(_picture("prediction B", view, _label_overlay(view, _thumb(b, idb, "pred_png"))))
        if method is not None and class_id is not None:
            pictures.append(_picture(f"A: {method} · {class_name}", view, _cam_overlay(view, a, ida, class_id, method, layer_a)))
            pictures.append(_picture(f"B: {method} · {class_name}", view, _cam_overlay(view, b, idb, class_id, method, layer_b)))
        links = [(tag, f"{report}#card-{index[i]}") for tag, (report, index), i in
                 (("A", cards[0], ida), ("B", cards[1], idb)) if i in index]
        rows.append({
            "file_name": as_text(rec.get("file_name")),
            "links": links,
            "change": _fmt(rec.get("change")),
            "rank_a": as_int(rec.get("review_rank_a")), "rank_b": as_int(rec.get("review_rank_b")),
            "values": [
                {"label": "suspicion", "a": _fmt(rec.get("suspicion_a")), "b": _fmt(rec.get("suspicion_b")),
                 "d": _signed(rec.get("suspicion_delta")), "style": _delta_style(rec.get("suspicion_delta"), -1.0)},
                {"label": "consistency", "a": _fmt(rec.get("consistency_a")), "b": _fmt(rec.get("consistency_b")),
                 "d": _signed(rec.get("consistency_delta")), "style": _delta_style(rec.get("consistency_delta"))},
                {"label": "label quality", "a": _fmt(rec.get("label_quality_a")), "b": _fmt(rec.get("label_quality_b")),
                 "d": _signed(rec.get("label_quality_delta")), "style": _delta_style(rec.get("label_quality_delta"))},
            ] + ([{"label": f"{method} consistency", "a": _fmt(rec.get("method_consistency_a")),
                   "b": _fmt(rec.get("method_consistency_b")), "d": _signed(rec.get("method_consistency_delta")),
                   "style": _delta_style(rec.get("method_consistency_delta"))}] if method is not None else []),
            "pictures": pictures,
        })
    return rows


def _changed_class(a: _Indexed, b: _Indexed, ida: str, idb: str, method: str | None, la: str, lb: str
                   ) -> tuple[int | None, str]:
    """The class whose consistency changed most in this image (by name), else A's worst class."""
    def per_class(run: _Indexed, image_id: str, layer: str) -> pd.Series:
        if method is None:
            return pd.Series(dtype=float)
        mine = [r for r in _rows_of(run, "scores", image_id) if r["method"] == method and r["layer"] == layer
                and r["mask"] == "gt" and r["class_id"] > 0]
        if not mine:
            return pd.Series(dtype=float)
        return pd.DataFrame(mine).groupby("class_id")["consistency"].mean()

    ca, cb = per_class(a, ida, la), per_class(b, idb, lb)
    names_a = {i: n.lower() for i, n in enumerate(a.class_names)}
    ids_b = {n.lower(): i for i, n in enumerate(b.class_names)}
    best, best_change = None, -1.0
    for class_id, value in ca.items():
        other = ids_b.get(names_a.get(int(class_id), ""))
        if other is None or other not in cb.index:
            continue
        change = abs(float(cb[other]) - float(value))
        if np.isfinite(change) and change > best_change:
            best, best_change = int(class_id), change
    if best is None:
        worst = a.images.loc[a.images["image_id"].astype(str) == ida, "worst_class_id"]
        best = as_int(worst.iloc[0]) if len(worst) else None
        if best is not None and best < 0:
            best = None
    name = a.class_names[best] if best is not None and 0 <= best < len(a.class_names) else ""
    return best, name


def _thumb(run: _Indexed, image_id: str, column: str) -> Any:
    rows = _rows_of(run, "thumbnails", image_id)
    return rows[0].get(column) if rows else None


class _Indexed:
    """A run's tables (attributes passed through) with each table's records grouped by image on first use."""

    def __init__(self, tables: RunTables) -> None:
        self.tables = tables
        self._grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tables, name)

    def rows(self, table: str, image_id: str) -> list[dict[str, Any]]:
        if table not in self._grouped:
            grouped: dict[str, list[dict[str, Any]]] = {}
            for rec in getattr(self.tables, table).to_dict("records"):
                grouped.setdefault(str(rec["image_id"]), []).append(rec)
            self._grouped[table] = grouped
        return self._grouped[table].get(image_id, [])


def _rows_of(run: _Indexed, table: str, image_id: str) -> list[dict[str, Any]]:
    return run.rows(table, image_id)


def _view(run: _Indexed, image_id: str) -> np.ndarray | None:
    data = _thumb(run, image_id, "image_jpeg")
    if not isinstance(data, (bytes, bytearray)) or not data:
        return None
    try:
        rgb = decode_image(bytes(data))
    except Exception:  # a broken picture must not break the page
        return None
    h, w = rgb.shape[:2]
    scale = _SIDE / max(h, w)
    return resize_rgb(rgb, (max(1, round(h * scale)), max(1, round(w * scale))))


def _label_overlay(view: np.ndarray | None, png: Any) -> np.ndarray | None:
    if view is None or not isinstance(png, (bytes, bytearray)) or not png:
        return None
    try:
        labels = decode_labels(bytes(png))
    except Exception:  # a broken picture must not break the page
        return None
    labels = resize_labels(labels, view.shape[:2])
    return blend(view, colorize_labels(labels), 0.55, mask=(labels != 0) & (labels != VOID_LABEL))


def _cam_overlay(view: np.ndarray | None, run: _Indexed, image_id: str, class_id: int, method: str, layer: str
                 ) -> np.ndarray | None:
    if view is None:
        return None
    rows = [r for r in _rows_of(run, "maps", image_id) if r["class_id"] == class_id and r["method"] == method]
    exact = [r for r in rows if r["layer"] == layer]
    rows = exact or rows
    if not rows:
        return None
    rec = rows[0]
    values = np.asarray(rec["values"], dtype=np.float32)
    if values.size != int(rec["height"]) * int(rec["width"]) or values.size == 0:
        return None
    cam = values.reshape(int(rec["height"]), int(rec["width"]))
    return blend(view, colorize_cam(normalize_map(upsample_map(cam, view.shape[:2]))), 0.5)


def _picture(title: str, view: np.ndarray | None, overlay: np.ndarray | None) -> dict[str, Any]:
    picture = view if title == "image" else overlay
    return {"title": title, "uri": to_data_uri(picture, "JPEG", 85) if picture is not None else None}


def _nan(v: Any) -> bool:
    try:
        return v is None or math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def _fmt(v: Any) -> str:
    return "\u2013" if _nan(v) else f"{float(v):.3f}"


def _signed(v: Any) -> str:
    return "\u2013" if _nan(v) else f"{float(v):+.3f}"




def _delta_style(d: Any, better: float = 1.0) -> str:
    """Green where B is better than A, red where worse (``better`` = -1 for a lower-is-better metric)."""
    if _nan(d) or abs(float(d)) < 5e-4:  # shown as +0.000: no colour
        return ""
    strength = min(abs(float(d)) / 0.3, 1.0)
    color = "46, 160, 67" if float(d) * better > 0 else "207, 34, 46"
    return f"background-color: rgba({color}, {0.05 + 0.4 * strength:.3f})"
