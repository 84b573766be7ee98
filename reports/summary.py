"""Per-class numbers of the report: mean scores per class x method x layer, and their distributions.

Everything here is a pure function of a run's tables (pandas in, pandas or plain dicts out).

* :func:`class_scores` -- per class x (method, layer): the mean of each metric of :data:`CLASS_METRICS`
  over the class's scored images, against the GT mask (the per-class table of the report);
* :func:`class_summary` -- the same for one layer, one column per ``method/metric`` (a wide table);
* :func:`class_facts` -- per class, what does not depend on the method: images, mean segmentation IoU,
  mean label quality and the number of findings of each kind;
* :func:`histograms` -- bin counts of the key scores per class and (method, layer), for the report's
  small-multiple histograms.

Images per class are counted once per (image, class) even where a detector gives several rows
(one per detection) or where the scores table has rows for several targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CLASS_METRICS",
    "HISTOGRAM_METRICS",
    "HISTOGRAM_BINS",
    "layer_order",
    "class_scores",
    "class_summary",
    "class_facts",
    "histograms",
]

#: Metrics of the per-class table, each the mean over a class's images against the GT mask
#: (``instance_coverage`` from the instances table, over (image, class) maps with 2 or more instances).
CLASS_METRICS: tuple[str, ...] = (
    "consistency",
    "energy_in_mask",
    "pointing_hit",
    "relevance_rank",
    "auroc",
    "iou_at_0_5",
    "centroid_hit",
    "background_point_hit",
    "instance_coverage",
)

#: Scores whose distributions the report draws (all in [0, 1]); ``seg_iou`` and ``label_quality`` do not
#: depend on the method but are binned per (method, layer) like the others, from the same rows.
HISTOGRAM_METRICS: tuple[str, ...] = ("consistency", "energy_in_mask", "relevance_rank", "iou_at_0_5", "seg_iou",
                                      "label_quality")

#: Equal-width bins on [0, 1] of the histograms (the last bin includes 1).
HISTOGRAM_BINS = 10

_KEY = ["class_id", "method", "layer"]


def layer_order(layers: Sequence[str]) -> list[str]:
    """Layer names in natural order (digit runs compared as numbers): ``backbone.2 < backbone.10 <
    classifier``, which for torchvision models is early to late."""
    import re

    def key(name: str) -> list[tuple[int, Any]]:
        return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]

    return sorted(dict.fromkeys(str(x) for x in layers), key=key)


def _gt_rows(scores: pd.DataFrame) -> pd.DataFrame:
    if scores.empty:
        return scores
    rows = scores[(scores["mask"] == "gt") & (scores["class_id"] > 0)]
    return rows.assign(layer=rows["layer"].fillna("").astype(str), method=rows["method"].astype(str))


def _per_image(frame: pd.DataFrame, columns: Sequence[str], keys: Sequence[str]) -> pd.DataFrame:
    """Mean per (image, *keys) first, so an image with several rows for a class (detections) counts once."""
    numeric = frame[["image_id", *keys, *columns]].copy()
    for col in columns:
        numeric[col] = pd.to_numeric(numeric[col], errors="coerce").astype(float)
    return numeric.groupby(["image_id", *keys], sort=False, dropna=False)[list(columns)].mean().reset_index()


def _instance_coverage(instances: pd.DataFrame | None) -> pd.DataFrame:
    """Per (image, class, method, layer) with 2 or more instances: the map's instance coverage."""
    if instances is None or instances.empty:
        return pd.DataFrame(columns=["image_id", *_KEY, "instance_coverage"])
    multi = instances[pd.to_numeric(instances["n_instances"], errors="coerce") >= 2]
    multi = multi.assign(layer=multi["layer"].fillna("").astype(str), method=multi["method"].astype(str))
    per_map = multi.groupby(["image_id", *_KEY], sort=False)["instance_coverage"].first()
    return per_map.astype(float).reset_index()


def class_scores(scores: pd.DataFrame, instances: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean of each of :data:`CLASS_METRICS` per class x method x layer, against the GT mask.

    Parameters
    ----------
    scores : pd.DataFrame
        The ``scores`` table (rows with ``mask == "gt"`` and ``class_id > 0`` are used).
    instances : pd.DataFrame, optional
        The ``instances`` table, for ``instance_coverage``.

    Returns
    -------
    pd.DataFrame
        Columns ``class_id``, ``method``, ``layer``, ``n_images`` (images with a GT-mask row for the class
        and map) and one column per metric: the mean over images of the per-image mean (NaN where never
        defined). Sorted by class, method, layer.
    """
    columns = [*_KEY, "n_images", *CLASS_METRICS]
    gt = _gt_rows(scores)
    metrics = [m for m in CLASS_METRICS if m != "instance_coverage" and (gt.empty or m in gt.columns)]
    if gt.empty:
        return pd.DataFrame(columns=columns)
    per_image = _per_image(gt, metrics, _KEY)
    grouped = per_image.groupby(_KEY, sort=True)
    out = grouped[metrics].mean()
    out["n_images"] = grouped["image_id"].nunique()
    coverage = _instance_coverage(instances)
    if len(coverage):
        out["instance_coverage"] = coverage.groupby(_KEY)["instance_coverage"].mean().reindex(out.index)
    for metric in CLASS_METRICS:
        if metric not in out:
            out[metric] = np.nan
    return out.reset_index()[columns]


def class_summary(
    scores: pd.DataFrame,
    methods: Sequence[str] | None = None,
    layer: str | None = None,
    instances: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per class, one column per ``"<method>/<metric>"``: :func:`class_scores` at one layer, wide.

    Parameters
    ----------
    scores : pd.DataFrame
        The ``scores`` table.
    methods : sequence of str, optional
        Methods in this order; by default those in ``scores``, sorted.
    layer : str, optional
        The layer; by default each method's first layer in natural order (:func:`layer_order`).
    instances : pd.DataFrame, optional
        For ``instance_coverage``.

    Returns
    -------
    pd.DataFrame
        ``class_id``, ``class_name``, ``n_images`` (images scored for the class), ``seg_iou`` (mean over
        them) and the metric columns; background (class 0) left out; sorted by ``class_id``.
    """
    gt = _gt_rows(scores)
    if methods is None:
        methods = sorted(pd.unique(gt["method"])) if len(gt) else []
    metric_cols = [f"{m}/{metric}" for m in methods for metric in CLASS_METRICS]
    columns = ["class_id", "class_name", "n_images", "seg_iou", *metric_cols]
    if gt.empty:
        return pd.DataFrame(columns=columns)
    facts = class_facts(scores, class_names=())
    long = class_scores(scores, instances)
    out = facts.set_index("class_id")[["class_name", "n_images", "seg_iou"]]
    for method in methods:
        mine = long[long["method"] == method]
        if layer is not None:
            mine = mine[mine["layer"] == layer]
        elif len(mine):
            mine = mine[mine["layer"] == layer_order(mine["layer"])[0]]
        mine = mine.set_index("class_id")
        for metric in CLASS_METRICS:
            out[f"{method}/{metric}"] = mine[metric].reindex(out.index).astype(float)
    return out.reset_index()[columns]


def class_facts(
    scores: pd.DataFrame,
    class_names: Sequence[str],
    findings: pd.DataFrame | None = None,
    kinds: Sequence[str] = (),
) -> pd.DataFrame:
    """Per class, what does not depend on the CAM method.

    Returns
    -------
    pd.DataFrame
        ``class_id``, ``class_name``, ``n_images`` (images with a score row for the class, any mask),
        ``seg_iou`` and ``label_quality`` (means over those images of the per-image values), and
        ``findings/<kind>`` counts for each of ``kinds``. One row per class with scores (background left
        out), plus one per class that only has findings (``out_of_label_space``: class id -1, one row per
        dataset class name). Sorted by class id, then name.
    """
    cols = ["class_id", "class_name", "n_images", "seg_iou", "label_quality", *[f"findings/{k}" for k in kinds]]
    rows = scores[scores["class_id"] > 0] if len(scores) else scores
    if len(rows):
        per_image = _per_image(rows, ["seg_iou", "label_quality"] if "label_quality" in rows else ["seg_iou"],
                               ["class_id"])
        grouped = per_image.groupby("class_id", sort=True)
        out = grouped.mean(numeric_only=True)
        out["n_images"] = grouped["image_id"].nunique()
        names = rows.groupby("class_id")["class_name"].first()
        out["class_name"] = names.reindex(out.index)
        out = out.reset_index()
    else:
        out = pd.DataFrame(columns=["class_id", "class_name", "n_images", "seg_iou"])
    if "label_quality" not in out:
        out["label_quality"] = np.nan
    out["class_name"] = [
        _name(int(c), n, class_names) for c, n in zip(out["class_id"], out["class_name"], strict=True)
    ]
    if findings is not None and len(findings):
        ids = pd.to_numeric(findings["class_id"], errors="coerce").fillna(-1).astype(int).to_numpy()
        names = findings["class_name"].fillna("").astype(str).to_numpy()
        keys = [(int(c), "") if c > 0 else (-1, n) for c, n in zip(ids, names, strict=True)]
        have = {(int(c), "") if c > 0 else (-1, n) for c, n in zip(out["class_id"], out["class_name"], strict=True)}
        add = sorted({k: n for k, n in zip(keys, names, strict=True) if k not in have}.items())
        if add:
            extra = pd.DataFrame([{"class_id": k[0], "class_name": n} for k, n in add])
            out = pd.concat([out, extra], ignore_index=True)
        row_keys = [(int(c), "") if c > 0 else (-1, n) for c, n in zip(out["class_id"], out["class_name"], strict=True)]
        kind_of = findings["kind"].astype(str).to_numpy()
        for kind in kinds:
            counts: dict[tuple[int, str], int] = {}
            for key, k in zip(keys, kind_of, strict=True):
                if k == kind:
                    counts[key] = counts.get(key, 0) + 1
            out[f"findings/{kind}"] = [counts.get(key, 0) for key in row_keys]
    for col in cols:
        if col not in out:
            out[col] = 0 if col.startswith("findings/") else np.nan
    out["n_images"] = pd.to_numeric(out["n_images"], errors="coerce").fillna(0).astype(int)
    out["class_id"] = pd.to_numeric(out["class_id"], errors="coerce").fillna(-1).astype(int)
    out = out.assign(_unknown=out["class_id"] < 0, _lower=out["class_name"].astype(str).str.lower())
    out = out.sort_values(["_unknown", "class_id", "_lower"], kind="stable")
    return out.reset_index(drop=True)[cols]


def histograms(scores: pd.DataFrame, bins: int = HISTOGRAM_BINS) -> dict[tuple[str, str, str], dict[int, list[int]]]:
    """Bin counts of :data:`HISTOGRAM_METRICS` per (metric, method, layer) and class.

    Each (image, class) counts once (its per-image mean), against the GT mask; NaN values are left out.

    Returns
    -------
    dict
        ``{(metric, method, layer): {class_id: [count per bin]}}`` with ``bins`` equal bins on [0, 1]
        (values clipped to [0, 1]); class id 0 holds the counts over all classes.
    """
    gt = _gt_rows(scores)
    metrics = [m for m in HISTOGRAM_METRICS if m in gt.columns]
    out: dict[tuple[str, str, str], dict[int, list[int]]] = {}
    if gt.empty:
        return out
    per_image = _per_image(gt, metrics, _KEY)
    for (method, layer), frame in per_image.groupby(["method", "layer"], sort=True):
        class_ids = frame["class_id"].to_numpy()
        for metric in metrics:
            values = frame[metric].to_numpy(dtype=float)
            ok = np.isfinite(values)
            index = np.minimum((np.clip(values[ok], 0.0, 1.0) * bins).astype(int), bins - 1)
            ids = class_ids[ok]
            table: dict[int, list[int]] = {0: np.bincount(index, minlength=bins).tolist()}
            for c in np.unique(ids):
                table[int(c)] = np.bincount(index[ids == c], minlength=bins).tolist()
            out[(metric, str(method), str(layer))] = table
    return out


def _name(class_id: int, name: Any, class_names: Sequence[str]) -> str:
    if isinstance(name, str) and name:
        return name
    if 0 <= class_id < len(class_names):
        return str(class_names[class_id])
    return f"class {class_id}"
