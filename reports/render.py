"""Render a run's self-contained HTML audit report from its Parquet tables alone.

The report never reads the dataset and never recomputes a CAM or a score: everything it shows comes from
the tables of :mod:`segaudit.tables` (the pictures from ``thumbnails`` and ``maps``). The page is one
file with its CSS, a few lines of JavaScript (table sorting) and every picture inline as ``data:`` URIs,
so it opens offline from a ``file://`` URL.

Sections: run summary, per-class mean scores per method, a gallery of the least consistent images
(image, GT and prediction overlays, the CAM of every method for the image's worst class) and the errors.

Examples
--------
>>> from reports import render_report
>>> render_report("runs/demo")                                    # doctest: +SKIP
PosixPath('runs/demo/report.html')
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from reports.overlay import (
    blend,
    colorize_cam,
    colorize_labels,
    decode_image,
    decode_labels,
    label_colors,
    normalize_map,
    resize_labels,
    resize_rgb,
    to_data_uri,
    upsample_map,
)
from segaudit.tables import COLUMN_DOCS, empty_frame, load_run

__all__ = ["render_report", "class_summary", "CLASS_METRICS", "DISPLAY_SIZE"]

#: Metrics of the per-class table, scored against the GT mask, averaged per class and method.
CLASS_METRICS: tuple[str, ...] = ("energy_in_mask", "pointing_hit", "iou_at_0_5", "centroid_hit")

#: Longest side, in pixels, of the pictures embedded in the gallery (thumbnails are shrunk to it).
DISPLAY_SIZE = 224

_METRIC_LABELS = {
    "energy_in_mask": "energy in GT",
    "pointing_hit": "pointing hit",
    "iou_at_0_5": "IoU@0.5",
    "centroid_hit": "centroid hit",
}
_LABEL_ALPHA = 0.55
_CAM_ALPHA = 0.5
_JPEG_QUALITY = 85
_TEMPLATE = "report.html.j2"
_DASH = "\u2013"


def render_report(run_dir: str | Path, out_path: str | Path | None = None, gallery_size: int = 12) -> Path:
    """Write the run's HTML audit report.

    Parameters
    ----------
    run_dir : path
        ``runs/<run_id>/``, holding at least ``run.parquet``.
    out_path : path, optional
        Where to write; ``<run_dir>/report.html`` by default.
    gallery_size : int
        How many of the least consistent images (by ``review_rank``) the gallery shows.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no ``run.parquet``.
    """
    run_dir = Path(run_dir)
    out = Path(out_path) if out_path is not None else run_dir / "report.html"
    tables = load_run(run_dir, tables=("images", "scores", "errors"))
    run = tables.run
    class_names = [str(n) for n in (run.get("class_names") or [])]
    scores = tables.scores
    methods = _methods(run, scores)

    summary = class_summary(scores, methods)
    gallery_images = _gallery_order(tables.images).head(max(int(gallery_size), 0))
    ids = [str(i) for i in gallery_images["image_id"]]
    thumbs = _read_subset(run_dir, "thumbnails", ids)
    maps = _read_subset(run_dir, "maps", ids)
    if not maps.empty:
        extra = [m for m in pd.unique(maps["method"]) if isinstance(m, str) and m not in methods]
        methods = methods + sorted(extra)

    context = {
        "title": f"segaudit report {_text(run.get('run_id'))}".strip(),
        "header": _header(run, tables.images, tables.errors),
        "versions": _versions(run),
        "config_json": _pretty_json(run.get("config_json")),
        "class_table": _class_table(summary, methods, class_names),
        # with a layer sweep ("a,b,c") the gallery shows the primary (first) layer's maps
        "gallery": _gallery(gallery_images, thumbs, maps, scores, class_names, methods,
                            (_text(run.get("layer")) or "").split(",")[0] or None),
        "gallery_size": int(gallery_size),
        "n_ranked": len(tables.images),
        "errors": _errors(tables.errors),
        "column_docs": COLUMN_DOCS,
    }
    html = _environment().get_template(_TEMPLATE).render(**context)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def class_summary(scores: pd.DataFrame, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean scores per class: the data of the report's per-class table.

    Parameters
    ----------
    scores : pd.DataFrame
        The ``scores`` table.
    methods : sequence of str, optional
        Methods to report, in this order; by default those found in ``scores``.

    Returns
    -------
    pd.DataFrame
        One row per class present in ``scores`` except background (``class_id`` 0), sorted by
        ``class_id``, with columns ``class_id``, ``class_name``, ``n_images`` (images scored for the
        class), ``seg_iou`` (mean over those images) and ``"<method>/<metric>"`` for every method and
        every metric of :data:`CLASS_METRICS`: the mean against the GT mask, NaN where never defined.
    """
    if methods is None:
        methods = sorted(m for m in pd.unique(scores["method"]) if isinstance(m, str)) if len(scores) else []
    metric_cols = [f"{m}/{metric}" for m in methods for metric in CLASS_METRICS]
    columns = ["class_id", "class_name", "n_images", "seg_iou", *metric_cols]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    frame = scores[scores["class_id"] != 0]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    per_class = frame.groupby("class_id", sort=True)
    out = pd.DataFrame(
        {
            "class_name": per_class["class_name"].first(),
            "n_images": per_class["image_id"].nunique(),
        }
    )
    seg = frame.groupby(["class_id", "image_id"])["seg_iou"].mean().groupby(level="class_id").mean()
    out["seg_iou"] = seg.reindex(out.index)
    gt = frame[frame["mask"] == "gt"]
    for method in methods:
        means = gt[gt["method"] == method].groupby("class_id")[list(CLASS_METRICS)].mean()
        for metric in CLASS_METRICS:
            out[f"{method}/{metric}"] = means[metric].reindex(out.index) if metric in means else np.nan
    out = out.reset_index()
    return out[columns]


# --------------------------------------------------------------------------------------------- sections


def _header(run: dict[str, Any], images: pd.DataFrame, errors: pd.DataFrame) -> dict[str, Any]:
    sha = _text(run.get("model_sha256"))
    fingerprint = _text(run.get("dataset_fingerprint"))
    n_errors = run.get("n_errors")
    consistency = pd.to_numeric(images["consistency"], errors="coerce") if len(images) else pd.Series([])
    mean_consistency = float(consistency.mean()) if consistency.notna().any() else math.nan
    return {
        "run_id": _text(run.get("run_id")),
        "created_at": _text(run.get("created_at")),
        "duration": _duration(run.get("duration_s")),
        "dataset_kind": _text(run.get("dataset_kind")),
        "dataset_path": _text(run.get("dataset_path")),
        "split": _text(run.get("split")),
        "fingerprint": fingerprint,
        "fingerprint_short": fingerprint[:12],
        "n_images": _int_or_none(run.get("n_images")),
        "n_rows": len(images),
        "n_errors": _int_or_none(n_errors) if _int_or_none(n_errors) is not None else len(errors),
        "model_name": _text(run.get("model_name")),
        "model_sha256": sha,
        "model_sha_short": sha[:12],
        "input_size": _int_or_none(run.get("input_size")),
        "layer": _text(run.get("layer")),
        "methods": [_text(m) for m in (run.get("methods") or [])],
        "n_classes": len(run.get("class_names") or []),
        "schema_version": _int_or_none(run.get("schema_version")),
        "mean_consistency": _fmt(mean_consistency),
        "mean_consistency_style": _score_style(mean_consistency),
    }


def _versions(run: dict[str, Any]) -> list[tuple[str, str]]:
    raw = run.get("versions_json")
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return [("versions_json", _text(raw))]
    if not isinstance(data, dict):
        return [("versions_json", _text(raw))]
    return [(str(k), _text(v)) for k, v in sorted(data.items())]


def _class_table(summary: pd.DataFrame, methods: Sequence[str], class_names: Sequence[str]) -> dict[str, Any]:
    """Headers, rows and a macro-average footer for the per-class table (sortable by ``data-col``)."""
    leaf: list[dict[str, Any]] = [
        {"label": "class", "title": "model class (background excluded)", "numeric": False},
        {"label": "images", "title": "images scored for the class", "numeric": True},
        {"label": "seg IoU", "title": COLUMN_DOCS["seg_iou"], "numeric": True},
    ]
    for method in methods:
        for metric in CLASS_METRICS:
            leaf.append(
                {
                    "label": _METRIC_LABELS[metric],
                    "title": f"{method}: mean {COLUMN_DOCS[metric]} (GT mask)",
                    "numeric": True,
                    "method_start": metric == CLASS_METRICS[0],
                }
            )
    for i, cell in enumerate(leaf):
        cell["col"] = i
    rows = []
    for rec in summary.to_dict("records"):
        class_id = int(rec["class_id"])
        name = _text(rec.get("class_name")) or _class_name(class_id, class_names)
        color = label_colors(256)[class_id % 256]
        cells: list[dict[str, Any]] = [
            {"text": name, "sort": name.lower(), "swatch": _css_rgb(color), "title": f"class id {class_id}"},
            {"text": str(int(rec["n_images"])), "sort": int(rec["n_images"])},
            _metric_cell(rec["seg_iou"]),
        ]
        for method in methods:
            for i, metric in enumerate(CLASS_METRICS):
                cell = _metric_cell(rec[f"{method}/{metric}"])
                cell["method_start"] = i == 0
                cells.append(cell)
        rows.append(cells)
    footer: list[dict[str, Any]] = []
    if rows:
        footer = [{"text": "mean over classes"}, {"text": ""}, _metric_cell(_nanmean(summary["seg_iou"]))]
        for method in methods:
            for i, metric in enumerate(CLASS_METRICS):
                cell = _metric_cell(_nanmean(summary[f"{method}/{metric}"]))
                cell["method_start"] = i == 0
                footer.append(cell)
    return {
        "methods": list(methods),
        "n_metrics": len(CLASS_METRICS),
        "leaf": leaf,
        "rows": rows,
        "footer": footer,
    }


def _gallery(
    images: pd.DataFrame,
    thumbs: pd.DataFrame,
    maps: pd.DataFrame,
    scores: pd.DataFrame,
    class_names: Sequence[str],
    methods: Sequence[str],
    layer: str | None,
) -> list[dict[str, Any]]:
    """One dict per gallery row: text fields and the pictures (data URIs or placeholders)."""
    thumb_by_id = {str(r["image_id"]): r for r in thumbs.to_dict("records")}
    map_index = _index_maps(maps, layer)
    energy = _energy_index(scores)
    rows = []
    for rec in images.to_dict("records"):
        image_id = str(rec["image_id"])
        worst = _int_or_none(rec.get("worst_class_id"))
        worst = worst if worst is not None and worst >= 0 else None
        consistency = _float(rec.get("consistency"))
        row: dict[str, Any] = {
            "image_id": image_id,
            "file_name": _text(rec.get("file_name")) or image_id,
            "rank": _int_or_none(rec.get("review_rank")),
            "consistency": _fmt(consistency),
            "consistency_style": _score_style(consistency),
            "worst_class": _class_name(worst, class_names) if worst is not None else None,
            "worst_class_id": worst,
            "size": f"{_int_or_none(rec.get('width'))}\u00d7{_int_or_none(rec.get('height'))}",
            "gt_classes": _str_list(rec.get("gt_classes")),
            "pred_classes": _str_list(rec.get("pred_classes")),
            "pictures": [],
        }
        thumb = thumb_by_id.get(image_id)
        rgb = _decode_or_none(thumb.get("image_jpeg") if thumb else None, decode_image)
        pictures: list[dict[str, Any]] = row["pictures"]
        if rgb is None:
            pictures.append(_placeholder("image", "no thumbnail"))
        else:
            rgb = resize_rgb(rgb, _display_size(rgb.shape[:2]))
            pictures.append(
                {"title": "image", "uri": to_data_uri(rgb, "JPEG", _JPEG_QUALITY), "caption": "input view"}
            )
        for kind, column in (("ground truth", "gt_png"), ("prediction", "pred_png")):
            labels = _decode_or_none(thumb.get(column) if thumb else None, decode_labels)
            if labels is None or rgb is None:
                pictures.append(_placeholder(kind, "no mask"))
                continue
            pictures.append(_label_picture(kind, rgb, labels, class_names))
        if worst is not None:
            for method in methods:
                pictures.append(
                    _cam_picture(
                        method,
                        map_index.get((image_id, worst, method)),
                        rgb,
                        energy.get((image_id, worst, method)),
                    )
                )
        rows.append(row)
    return rows


def _label_picture(
    kind: str, rgb: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    labels = resize_labels(labels, rgb.shape[:2])
    overlay = blend(rgb, colorize_labels(labels), _LABEL_ALPHA, mask=labels != 0)
    lut = label_colors(256)
    legend = [
        {"name": _class_name(int(k), class_names), "color": _css_rgb(lut[int(k)])}
        for k in np.unique(labels)
        if int(k) != 0
    ]
    caption = "background only" if not legend else None
    return {
        "title": kind,
        "uri": to_data_uri(overlay, "JPEG", _JPEG_QUALITY),
        "caption": caption,
        "legend": legend,
    }


def _cam_picture(
    method: str, rec: dict[str, Any] | None, rgb: np.ndarray | None, energy: float | None
) -> dict[str, Any]:
    title = f"CAM \u00b7 {method}"
    if rec is None:
        return _placeholder(title, "no map")
    h, w = _int_or_none(rec.get("height")), _int_or_none(rec.get("width"))
    values = np.asarray(rec.get("values") if rec.get("values") is not None else [], dtype=np.float32)
    if not h or not w or values.size != h * w:
        return _placeholder(title, f"bad map ({values.size} values for {h}\u00d7{w})")
    cam = values.reshape(h, w)
    raw_max = float(np.nanmax(cam)) if np.isfinite(cam).any() else math.nan
    size = rgb.shape[:2] if rgb is not None else (DISPLAY_SIZE, DISPLAY_SIZE)
    heat = colorize_cam(normalize_map(upsample_map(cam, size)))
    picture = blend(rgb, heat, _CAM_ALPHA) if rgb is not None else heat
    caption = f"max {_fmt_g(raw_max)}"
    detail = []
    target = _text(rec.get("target"))
    if target:
        detail.append(f"target {target}")
    if energy is not None and not math.isnan(energy):
        detail.append(f"energy in GT {energy:.2f}")
    return {
        "title": title,
        "uri": to_data_uri(picture, "JPEG", _JPEG_QUALITY),
        "caption": caption,
        "detail": ", ".join(detail),
    }


def _errors(errors: pd.DataFrame) -> list[dict[str, str]]:
    return [
        {
            "stage": _text(r.get("stage")),
            "file_name": _text(r.get("file_name")) or _text(r.get("image_id")),
            "image_id": _text(r.get("image_id")),
            "reason": _text(r.get("reason")),
        }
        for r in errors.to_dict("records")
    ]


# ---------------------------------------------------------------------------------------------- helpers


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _methods(run: dict[str, Any], scores: pd.DataFrame) -> list[str]:
    methods = [str(m) for m in (run.get("methods") or [])]
    if len(scores):
        methods += sorted(m for m in pd.unique(scores["method"]) if isinstance(m, str) and m not in methods)
    return methods


def _gallery_order(images: pd.DataFrame) -> pd.DataFrame:
    """Images by ``review_rank`` (missing ranks last, then by consistency, then by file name)."""
    if images.empty:
        return images
    key = images.assign(
        _rank=pd.to_numeric(images["review_rank"], errors="coerce").fillna(np.inf),
        _cons=pd.to_numeric(images["consistency"], errors="coerce").fillna(np.inf),
        _name=images["file_name"].astype(str),
    )
    key = key.sort_values(["_rank", "_cons", "_name"], kind="mergesort")
    return key.drop(columns=["_rank", "_cons", "_name"])


def _read_subset(run_dir: Path, table: str, image_ids: Iterable[str]) -> pd.DataFrame:
    """Read only the rows of ``image_ids`` from a heavy table (maps, thumbnails)."""
    ids = sorted(set(image_ids))
    path = run_dir / f"{table}.parquet"
    if not ids or not path.is_file():
        return empty_frame(table)
    return pq.read_table(path, filters=[("image_id", "in", ids)]).to_pandas()


def _index_maps(maps: pd.DataFrame, layer: str | None) -> dict[tuple[str, int, str], dict[str, Any]]:
    """Maps by (image, class, method); the run's layer wins when a key has several rows."""
    index: dict[tuple[str, int, str], dict[str, Any]] = {}
    for rec in maps.to_dict("records"):
        key = (str(rec["image_id"]), int(rec["class_id"]), str(rec["method"]))
        if key not in index or (layer and rec.get("layer") == layer and index[key].get("layer") != layer):
            index[key] = rec
    return index


def _energy_index(scores: pd.DataFrame) -> dict[tuple[str, int, str], float]:
    if scores.empty:
        return {}
    gt = scores[scores["mask"] == "gt"]
    means = gt.groupby(["image_id", "class_id", "method"])["energy_in_mask"].mean()
    return {(str(i), int(c), str(m)): float(v) for (i, c, m), v in means.items()}


def _display_size(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = int(shape[0]), int(shape[1])
    longest = max(h, w)
    if longest <= DISPLAY_SIZE:
        return h, w
    scale = DISPLAY_SIZE / longest
    return max(1, round(h * scale)), max(1, round(w * scale))


def _decode_or_none(data: Any, decoder: Any) -> np.ndarray | None:
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        return None
    try:
        return decoder(bytes(data))
    except Exception:  # a broken picture must not break the whole report
        return None


def _placeholder(title: str, caption: str) -> dict[str, Any]:
    return {"title": title, "uri": None, "caption": caption}


def _metric_cell(value: Any) -> dict[str, Any]:
    v = _float(value)
    if math.isnan(v):
        return {"text": _DASH, "sort": "", "title": "undefined (no GT pixels)"}
    return {
        "text": f"{v:.3f}",
        "sort": f"{v:.6g}",
        "style": f"background-color: rgba(46, 160, 67, {0.05 + 0.35 * min(max(v, 0.0), 1.0):.3f})",
    }


def _score_style(v: float) -> str:
    if math.isnan(v):
        return "background-color: #8b949e"
    hue = 120.0 * min(max(v, 0.0), 1.0)
    return f"background-color: hsl({hue:.0f}, 65%, 38%)"


def _class_name(class_id: int | None, class_names: Sequence[str]) -> str:
    if class_id is None:
        return ""
    if class_id == 255:
        return "void"
    if 0 <= class_id < len(class_names):
        return str(class_names[class_id])
    return f"class {class_id}"


def _css_rgb(color: np.ndarray) -> str:
    return f"rgb({int(color[0])}, {int(color[1])}, {int(color[2])})"


def _pretty_json(raw: Any) -> str:
    if not raw:
        return ""
    try:
        return json.dumps(json.loads(raw), indent=2, sort_keys=True)
    except (TypeError, ValueError):
        return _text(raw)


def _duration(seconds: Any) -> str:
    s = _float(seconds)
    if math.isnan(s):
        return _DASH
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _nanmean(values: pd.Series) -> float:
    v = pd.to_numeric(values, errors="coerce")
    return float(v.mean()) if v.notna().any() else math.nan


def _float(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _int_or_none(value: Any) -> int | None:
    v = _float(value)
    return None if math.isnan(v) else int(v)


def _fmt(v: float) -> str:
    return _DASH if math.isnan(v) else f"{v:.3f}"


def _fmt_g(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.3g}"


def _text(value: Any) -> str:
    if _missing(value):
        return ""
    return str(value)


def _str_list(value: Any) -> list[str]:
    if value is None or np.isscalar(value) or _missing(value):
        return []
    return [_text(v) for v in value]


def _missing(value: Any) -> bool:
    """None, NaN or pandas' NA (a scalar only: lists and arrays are never missing)."""
    if value is None:
        return True
    if np.ndim(value) != 0 or isinstance(value, (str, bytes)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
