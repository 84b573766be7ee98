"""Image cards: what the report shows for each image, as plain data for the page's script.

One card per image of the ``images`` table, made from the run's tables alone:

* the pictures: the model's view (the thumbnail JPEG as is), the GT and predicted label maps (the
  thumbnail PNGs as is: their pixel values are class ids, coloured by the page);
* one entry per map (image x class [x detection] x method x layer): the raw CAM at feature resolution
  (float32, little-endian, base64), its raw range and its scores against the GT mask. The page upsamples
  it bilinearly to the thumbnail (half-pixel centres, as :func:`segaudit.cam.maps.upsample_maps`), colours
  it min-max normalised like :func:`segaudit.reports.overlay.colorize_cam`, and finds the three point prompts of
  :mod:`segaudit.metrics.scores` on it -- the maximum (:func:`~segaudit.metrics.scores.max_point`), the weighted centroid
  above ``centroid_cutoff`` x max (:func:`~segaudit.metrics.scores.weighted_centroid`) and the background point
  (:func:`~segaudit.metrics.scores.background_point`), void (GT 255, e.g. letterbox padding) excluded -- only for
  the maps on screen, so a 5k-image report costs nothing per map here. The audit finds the points at the
  model's input resolution; they coincide when the thumbnail is that size (inputs up to 256 px) and
  differ by at most the scale factor otherwise. ``tests/test_report_browser.py`` checks the page's points
  against :mod:`segaudit.metrics.scores`;
* instance coverage per instance (instances table), findings and CAM-prompted segments (prompts table);
* where the causal context test ran (context table, :mod:`segaudit.metrics.context`): per class, the
  object-only and context-only views (JPEG as is) with the class's score and IoU on the object before and
  after the context is replaced, and how much of the object's place is still predicted from context alone.

Coordinates are ``(row, col)`` in thumbnail pixels (pixel centres at integers); ``th`` x ``tw`` is the
thumbnail's size.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from segaudit.reports.values import as_finite, as_int, as_text

from segaudit.schema import VOID_LABEL

__all__ = ["CARD_SCORES", "CardTables", "encode_map", "build_cards"]

#: Scores shown with each map (against the GT mask).
CARD_SCORES: tuple[str, ...] = ("energy_in_mask", "pointing_hit", "relevance_rank", "auroc", "iou_at_0_5",
                                "centroid_hit", "max_point_hit", "background_point_hit")


@dataclass
class CardTables:
    """The run's tables, as records grouped by image for fast card building (pandas only once per table).

    ``maps`` and ``thumbnails`` (the heavy tables) may hold only some images' rows, replaced batch by
    batch with :meth:`set_heavy` to bound memory.
    """

    images: pd.DataFrame
    thumbnails: pd.DataFrame
    maps: pd.DataFrame
    scores: pd.DataFrame
    instances: pd.DataFrame
    findings: pd.DataFrame
    prompts: pd.DataFrame
    fixations: pd.DataFrame | None = None
    context: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        self._by_image = {
            name: _records_by_image(getattr(self, name))
            for name in ("thumbnails", "maps", "scores", "instances", "findings", "prompts", "fixations", "context")
        }

    def set_context(self, context: pd.DataFrame | None) -> None:
        """Replace the rows of the context table (its views are pictures: read with the heavy tables)."""
        self.context = context
        self._by_image["context"] = _records_by_image(context)

    def set_heavy(self, maps: pd.DataFrame, thumbnails: pd.DataFrame) -> None:
        """Replace the rows of the maps and thumbnails tables (e.g. with the next batch of images')."""
        self.maps, self.thumbnails = maps, thumbnails
        self._by_image["maps"] = _records_by_image(maps)
        self._by_image["thumbnails"] = _records_by_image(thumbnails)

    def rows(self, table: str, image_id: str) -> list[dict[str, Any]]:
        """The records of ``table`` for one image, in table order."""
        return self._by_image[table].get(image_id, [])

    def gt_scores(self, image_id: str) -> list[dict[str, Any]]:
        """The image's scores records against the GT mask."""
        return [r for r in self.rows("scores", image_id) if r.get("mask") == "gt"]


def _records_by_image(frame: pd.DataFrame | None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    if frame is None or frame.empty or "image_id" not in frame:
        return out
    for rec in frame.to_dict("records"):
        out.setdefault(str(rec["image_id"]), []).append(rec)
    return out


def encode_map(values: np.ndarray) -> tuple[str, float | None, float | None]:
    """A map's values as base64 of little-endian float32 (row-major), and its raw minimum and maximum over
    finite values (None if none). Non-finite values are sent as 0."""
    arr = np.asarray(values, dtype=np.float32).ravel()
    finite = np.isfinite(arr)
    lo = float(arr[finite].min()) if finite.any() else None
    hi = float(arr[finite].max()) if finite.any() else None
    clean = np.where(finite, arr, np.float32(0)).astype("<f4")
    return base64.b64encode(clean.tobytes()).decode("ascii"), lo, hi


def build_cards(
    tables: CardTables,
    image_rows: pd.DataFrame,
    first_index: int,
    class_names: Sequence[str],
) -> list[dict[str, Any]]:
    """The cards of ``image_rows`` (rows of the images table, in display order).

    ``first_index`` is the position of the first row in the whole review order (the cards' ``i``).
    """
    cards: list[dict[str, Any]] = []
    for offset, rec in enumerate(image_rows.to_dict("records")):
        image_id = str(rec["image_id"])
        card = _card_head(rec, first_index + offset)
        thumb = tables.rows("thumbnails", image_id)
        if thumb:
            t = thumb[0]
            card["img"] = _data_uri(t.get("image_jpeg"), "image/jpeg")
            card["gt"] = _data_uri(t.get("gt_png"), "image/png")
            card["pred"] = _data_uri(t.get("pred_png"), "image/png")
            card["th"], card["tw"] = _frame(t.get("gt_png"), t.get("image_jpeg"))
        subjects = _subjects(tables, image_id, class_names)
        card["subjects"] = [s for s, _ in subjects]
        index = {key: i for i, (_, key) in enumerate(subjects)}
        card["maps"] = []
        score_of = _scores_by_map(tables.gt_scores(image_id))
        for row in tables.rows("maps", image_id):
            key = (int(row["class_id"]), _det(row.get("detection")))
            if key not in index:
                continue
            h, w = int(row["height"]), int(row["width"])
            values = np.asarray(row["values"] if row["values"] is not None else [], dtype=np.float32)
            if values.size != h * w or h <= 0 or w <= 0:
                continue
            encoded, lo, hi = encode_map(values)
            layer = as_text(row.get("layer"))
            card["maps"].append({
                "s": index[key], "m": as_text(row.get("method")), "l": layer, "t": as_text(row.get("target")),
                "h": h, "w": w, "v": encoded, "lo": lo, "hi": hi,
                "sc": score_of.get((key, as_text(row.get("method")), layer), {}),
            })
        card["inst"] = _instances(tables.rows("instances", image_id), index)
        card["find"] = _findings(tables.rows("findings", image_id))
        card["prompts"] = _prompts(tables.rows("prompts", image_id), index)
        card["fix"] = _fixations(tables.rows("fixations", image_id), index)
        card["ctx"] = _context(tables.rows("context", image_id), index)
        cards.append(card)
    return cards


def _card_head(rec: dict[str, Any], index: int) -> dict[str, Any]:
    return {
        "i": index,
        "id": str(rec["image_id"]),
        "file": as_text(rec.get("file_name")) or str(rec["image_id"]),
        "rank": as_int(rec.get("review_rank")),
        "w": as_int(rec.get("width")),
        "h": as_int(rec.get("height")),
        "susp": as_finite(rec.get("suspicion")),
        "lq": as_finite(rec.get("label_quality")),
        "cons": as_finite(rec.get("consistency")),
        "pa": as_finite(rec.get("pixel_accuracy")),
        "gtc": _strings(rec.get("gt_classes")),
        "prc": _strings(rec.get("pred_classes")),
        "unk": _strings(rec.get("unknown_classes")),
        "worst": as_int(rec.get("worst_class_id")),
        "img": None,
        "gt": None,
        "pred": None,
        "th": None,
        "tw": None,
    }


def _subjects(tables: CardTables, image_id: str, class_names: Sequence[str]) -> list[tuple[dict[str, Any], tuple]]:
    """The (class, detection) pairs of the image with maps or scores, by class id then detection."""
    found: dict[tuple[int, int | None], dict[str, Any]] = {}
    for records in (tables.gt_scores(image_id), tables.rows("scores", image_id), tables.rows("maps", image_id)):
        for row in records:
            key = (int(row["class_id"]), _det(row.get("detection")))
            if key in found:
                continue
            name = as_text(row.get("class_name")) or _class_name(key[0], class_names)
            found[key] = {"c": key[0], "d": key[1], "name": name, "t": as_text(row.get("target")),
                          "iou": as_finite(row.get("seg_iou")) if "seg_iou" in row else None,
                          "lq": as_finite(row.get("label_quality")) if "label_quality" in row else None}
    keys = sorted(found, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    return [(found[k], k) for k in keys]


def _scores_by_map(gt: list[dict[str, Any]]) -> dict[tuple, dict[str, float | None]]:
    out: dict[tuple, dict[str, float | None]] = {}
    if not gt:
        return out
    cols = [c for c in CARD_SCORES if c in gt[0]]
    for row in gt:
        key = ((int(row["class_id"]), _det(row.get("detection"))), as_text(row.get("method")), as_text(row.get("layer")))
        out.setdefault(key, {c: as_finite(row.get(c)) for c in cols})
    return out


def _instances(records: list[dict[str, Any]], index: dict[tuple, int]) -> list[dict[str, Any]]:
    """Instance rows grouped per map (class, method, layer, target), instances in order."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        key = (int(r["class_id"]), as_text(r.get("method")), as_text(r.get("layer")), as_text(r.get("target")))
        groups.setdefault(key, []).append(r)
    out = []
    for (class_id, method, layer, target), rows in sorted(groups.items()):
        subject = _class_subject(index, class_id)
        if subject is None:
            continue
        rows = sorted(rows, key=lambda r: as_int(r.get("instance")) or 0)
        out.append({
            "s": subject, "m": method, "l": layer, "t": target,
            "cov": as_finite(rows[0].get("instance_coverage")),
            "rows": [
                {"k": as_int(r.get("instance")), "a": as_text(r.get("annotation_id")), "px": as_int(r.get("pixels")),
                 "cov": as_finite(r.get("covered")), "cms": as_finite(r.get("class_mass_share")),
                 "ms": as_finite(r.get("mass_share")), "pk": as_finite(r.get("peak_height"))}
                for r in rows
            ],
        })
    return out


def _class_subject(index: dict[tuple, int], class_id: int) -> int | None:
    """The subject of a class-level row: the class's own, else its first detection's."""
    if (class_id, None) in index:
        return index[(class_id, None)]
    return next((i for (c, _), i in sorted(index.items(), key=lambda kv: kv[1]) if c == class_id), None)


def _findings(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"kind": as_text(r.get("kind")), "c": as_int(r.get("class_id")), "name": as_text(r.get("class_name")),
         "score": as_finite(r.get("score")), "m": as_text(r.get("method")), "l": as_text(r.get("layer"))}
        for r in records
    ]


def _prompts(records: list[dict[str, Any]], index: dict[tuple, int]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        subject = _class_subject(index, int(r["class_id"]))
        if subject is None:
            continue
        out.append({"s": subject, "m": as_text(r.get("method")), "l": as_text(r.get("layer")),
                    "seg": as_text(r.get("segmenter")), "pt": as_text(r.get("point")), "pr": as_text(r.get("prompts")),
                    "hit": as_finite(r.get("point_hit")), "iou": as_finite(r.get("iou_with_gt")),
                    "dice": as_finite(r.get("dice_with_gt"))})
    return out


def _context(records: list[dict[str, Any]], index: dict[tuple, int]) -> list[dict[str, Any]]:
    """The causal context test of each tested class: its two views and the numbers (``None`` where undefined)."""
    out = []
    for r in records:
        subject = _class_subject(index, int(r["class_id"]))
        if subject is None:
            continue
        out.append({"s": subject, "obj": _data_uri(r.get("object_only_jpeg"), "image/jpeg"),
                    "ctx": _data_uri(r.get("context_only_jpeg"), "image/jpeg"),
                    **{key: as_finite(r.get(col)) for key, col in (
                        ("sc", "score"), ("so", "score_object_only"), ("drop", "context_reliance"), ("iou", "iou"),
                        ("io", "iou_object_only"), ("idrop", "context_iou_drop"), ("hal", "hallucination"),
                        ("out", "outside_share"))}})
    return out


# ---------------------------------------------------------------------------------------------- helpers


def _data_uri(data: Any, mime: str) -> str | None:
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        return None
    return f"data:{mime};base64,{base64.b64encode(bytes(data)).decode('ascii')}"


def _frame(*pictures: Any) -> tuple[int | None, int | None]:
    """(height, width) of the thumbnail, from the first readable picture's header; (None, None) if none."""
    for data in pictures:
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
            continue
        try:
            with Image.open(io.BytesIO(bytes(data))) as img:
                return int(img.size[1]), int(img.size[0])
        except Exception:  # an unreadable picture: try the next one
            continue
    return None, None


def _fixations(records: list[dict[str, Any]], index: dict[tuple, int]) -> list[dict[str, Any]]:
    """CNN-Fixations points per subject: ``{"s": subject, "p": [[y, x, weight], ...]}`` (input frame)."""
    points: dict[int, list[list[float]]] = {}
    for r in records:
        subject = _class_subject(index, int(r["class_id"]))
        if subject is not None:
            points.setdefault(subject, []).append([int(r["y"]), int(r["x"]), round(float(r["weight"]), 6)])
    return [{"s": s, "p": p} for s, p in points.items()]


def _det(value: Any) -> int | None:
    v = as_finite(value)
    return None if v is None else int(v)


def _class_name(class_id: int, class_names: Sequence[str]) -> str:
    if class_id == VOID_LABEL:
        return "void"
    if 0 <= class_id < len(class_names):
        return str(class_names[class_id])
    return f"class {class_id}"








def _strings(value: Any) -> list[str]:
    if value is None or isinstance(value, (str, bytes)) or np.ndim(value) == 0:
        return []
    return [as_text(v) for v in value]
