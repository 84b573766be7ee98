"""What the report's gallery filters on, per image card, and the run's confusion matrix.

Per card (in review order) the page gets its *facets*: the finding kinds of the image, the classes it
concerns (labelled, predicted or named by a finding) and the confusion cells it holds (``confusion``
table: label ``g`` predicted ``p``, coded ``g * K + p`` with ``K`` the number of classes). The gallery
filters and sorts cards on these and on the image scores of the index, without loading any page of
cards.

The confusion matrix is ``C[g, p]`` = pixels labelled ``g`` and predicted ``p`` over the run (void and
out-of-range ids left out, as :meth:`segaudit.runs.tables.RunTables.confusion_matrix`); the page shows the
counts or the row-normalised matrix ``C[g, p] / sum_q C[g, q]`` (the share of class ``g``'s labelled pixels
predicted as ``p``; its diagonal is the per-class recall).

A small thumbnail (:data:`MINI_SIDE` px, JPEG) of every image with a finding goes in each findings row.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from segaudit.reports.values import as_int, as_text

__all__ = ["MINI_SIDE", "card_facets", "confusion_data", "mini_thumbnail"]

#: Side (px) of a findings row's thumbnail.
MINI_SIDE = 40


def card_facets(
    order: pd.DataFrame, findings: pd.DataFrame, confusion: pd.DataFrame, class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """Per card of ``order``: ``{"k": kinds, "c": class ids, "x": confusion cell codes}``."""
    k = len(class_names)
    name_to_id = {str(n): i for i, n in enumerate(class_names)}
    kinds: dict[str, list[str]] = {}
    classes: dict[str, set[int]] = {}
    for rec in findings.to_dict("records") if len(findings) else []:
        image_id = str(rec["image_id"])
        kind = as_text(rec.get("kind"))
        if kind and kind not in kinds.setdefault(image_id, []):
            kinds[image_id].append(kind)
        cid = as_int(rec.get("class_id"))
        if cid is not None and cid >= 0:
            classes.setdefault(image_id, set()).add(cid)
    cells: dict[str, list[int]] = {}
    if len(confusion) and k:
        frame = confusion[(confusion["gt_class_id"].between(0, k - 1)) & (confusion["pred_class_id"].between(0, k - 1))
                          & (confusion["pixels"] > 0)]
        codes = (frame["gt_class_id"].to_numpy(np.int64) * k + frame["pred_class_id"].to_numpy(np.int64)).tolist()
        for image_id, code in zip(frame["image_id"].astype(str).tolist(), codes, strict=True):
            cells.setdefault(image_id, []).append(int(code))
    out = []
    for rec in order.to_dict("records"):
        image_id = str(rec["image_id"])
        mine = set(classes.get(image_id, set()))
        for column in ("gt_classes", "pred_classes"):
            values = rec.get(column)
            if values is not None and not isinstance(values, (str, bytes)) and np.ndim(values) > 0:
                mine.update(name_to_id[str(v)] for v in values if str(v) in name_to_id)
        mine.update(c // k for c in cells.get(image_id, []) if c // k > 0)
        out.append({"k": kinds.get(image_id, []), "c": sorted(mine), "x": sorted(set(cells.get(image_id, [])))})
    return out


def confusion_data(confusion: pd.DataFrame, class_names: Sequence[str]) -> dict[str, Any]:
    """The run's confusion matrix as ``{"n": class names, "m": K x K pixel counts}`` (empty without rows)."""
    k = len(class_names)
    if confusion.empty or not k:
        return {"n": [str(c) for c in class_names], "m": []}
    frame = confusion[(confusion["gt_class_id"].between(0, k - 1)) & (confusion["pred_class_id"].between(0, k - 1))]
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (frame["gt_class_id"].to_numpy(np.int64), frame["pred_class_id"].to_numpy(np.int64)),
              frame["pixels"].to_numpy(np.int64))
    return {"n": [str(c) for c in class_names], "m": matrix.tolist()}


def mini_thumbnail(jpeg: Any) -> str | None:
    """A ``data:`` URI of the thumbnail JPEG shrunk to :data:`MINI_SIDE` px (None if it cannot be read)."""
    if not isinstance(jpeg, (bytes, bytearray, memoryview)) or len(jpeg) == 0:
        return None
    try:
        with Image.open(io.BytesIO(bytes(jpeg))) as img:
            small = img.convert("RGB")
            small.thumbnail((MINI_SIDE, MINI_SIDE))
            buf = io.BytesIO()
            small.save(buf, format="JPEG", quality=70)
    except Exception:  # an unreadable picture: the row goes without a thumbnail
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
