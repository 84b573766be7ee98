"""Decoding one COCO segmentation (polygons, uncompressed or compressed RLE) into a bool mask.

Each segmentation is validated here before :mod:`pycocotools.mask` sees it (pycocotools misreads some
malformed input silently, e.g. a 2-point polygon as a box, and allocates memory in proportion to polygon
coordinates). A malformed segmentation raises :class:`AnnotationProblem`, whose message is the reason.

Compressed RLE (``counts`` a string) is COCO's LEB128-like encoding of run lengths, each run after the
second stored as the difference to the run two before (``maskApi.c``, ``rleFrString``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from segaudit.data.readers._text import display_text

__all__ = ["AnnotationProblem", "segmentation_to_mask", "POLYGON_MARGIN", "MAX_SEGMENTATION_VALUES"]

log = logging.getLogger("segaudit.data.readers")

#: Polygon vertices may lie up to this many image sizes (the longer side) outside the image; farther
#: ones make the annotation unusable ("coordinates far outside the image").
POLYGON_MARGIN = 4

#: Most numbers (polygon coordinates or RLE counts) one segmentation may hold; more is refused (a
#: 4096x4096 mask's worst-case RLE has 16.7M counts, real polygons a few thousand coordinates).
MAX_SEGMENTATION_VALUES = 1 << 22


class AnnotationProblem(Exception):
    """One annotation cannot be used; the message is the reason (without the annotation id)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def rle_string_counts(s: str) -> list[int]:
    """Decode COCO's compressed RLE string (LEB128-like, as in maskApi.c ``rleFrString``) to counts."""
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise AnnotationProblem("compressed RLE string ends in the middle of a number")
            c = ord(s[p]) - 48
            if c < 0 or c > 63:
                raise AnnotationProblem(f"compressed RLE string has an invalid character {s[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _check_counts(counts: Sequence[int], h: int, w: int) -> None:
    if any(c < 0 for c in counts):
        raise AnnotationProblem("RLE has negative run lengths")
    total = sum(counts)
    if total != h * w:
        raise AnnotationProblem(f"RLE run lengths sum to {total}, expected {h}*{w} = {h * w}")


def _rle_of_dict(segm: dict[str, Any], h: int, w: int) -> Any:
    """A validated RLE dict (``size`` must be the image's ``(h, w)``) as pycocotools' RLE object."""
    from pycocotools import mask as mask_utils

    if "counts" not in segm or "size" not in segm:
        raise AnnotationProblem(f"RLE segmentation needs 'counts' and 'size', got keys {sorted(segm)}")
    size = segm["size"]
    if not (isinstance(size, list | tuple) and len(size) == 2):
        raise AnnotationProblem(f"RLE 'size' must be [height, width], got {size!r}")
    try:
        sh, sw = (int(v) for v in size)
    except (TypeError, ValueError):
        raise AnnotationProblem(f"RLE 'size' must be [height, width], got {size!r}") from None
    if (sh, sw) != (h, w):
        raise AnnotationProblem(f"RLE size is {sw}x{sh} (WxH) but the image is {w}x{h}")
    counts = segm["counts"]
    if isinstance(counts, list | str | bytes) and len(counts) > MAX_SEGMENTATION_VALUES:
        raise AnnotationProblem(f"RLE has {len(counts)} counts, over the limit of {MAX_SEGMENTATION_VALUES}")
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            raise AnnotationProblem("uncompressed RLE counts must be integers")
        _check_counts(counts, h, w)
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str | bytes):
        text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
        _check_counts(rle_string_counts(text), h, w)
        return {"size": [h, w], "counts": text.encode("ascii")}
    raise AnnotationProblem(f"RLE counts must be a list or a string, got {type(counts).__name__}")


def _polygon_parts(segm: list[Any]) -> list[list[float]]:
    """The usable parts of a polygon list (a flat list is one polygon); parts under 3 points are dropped."""
    if not segm:
        raise AnnotationProblem("segmentation is empty")
    if all(_is_number(v) for v in segm):
        segm = [segm]  # a single flat polygon
    parts: list[list[float]] = []
    short: list[int] = []
    total = 0
    for i, part in enumerate(segm):
        if not isinstance(part, list) or not all(_is_number(v) for v in part):
            raise AnnotationProblem(f"polygon part {i} is not a list of numbers")
        total += len(part)
        if total > MAX_SEGMENTATION_VALUES:
            raise AnnotationProblem(f"polygon has over {MAX_SEGMENTATION_VALUES} coordinates")
        if not all(math.isfinite(v) for v in part):
            raise AnnotationProblem(f"polygon part {i} has NaN or infinite coordinates")
        if len(part) % 2:
            raise AnnotationProblem(f"polygon part {i} has an odd number of coordinates ({len(part)})")
        if len(part) < 6:
            short.append(i)
            continue
        parts.append([float(v) for v in part])
    if not parts:
        npts = [len(p) // 2 for p in segm]
        raise AnnotationProblem(f"polygon has fewer than 3 points (points per part: {npts})")
    if short:
        # Degenerate parts of an otherwise valid polygon cover no area; dropping them changes nothing.
        log.debug("dropping degenerate polygon parts %s", short)
    return parts


def _rle_of_polygon(segm: list[Any], h: int, w: int, out_hw: tuple[int, int]) -> Any:
    """A validated polygon list rasterised at ``out_hw`` (coordinates scaled from ``(h, w)``)."""
    from pycocotools import mask as mask_utils

    parts = _polygon_parts(segm)
    margin = POLYGON_MARGIN * max(h, w)
    for i, part in enumerate(parts):
        xs, ys = part[0::2], part[1::2]
        if min(xs) < -margin or max(xs) > w + margin or min(ys) < -margin or max(ys) > h + margin:
            raise AnnotationProblem(
                f"polygon part {i} has coordinates far outside the {w}x{h} image "
                f"(x {min(xs):.6g}..{max(xs):.6g}, y {min(ys):.6g}..{max(ys):.6g})"
            )
    oh, ow = out_hw
    if (oh, ow) != (h, w):
        sx, sy = ow / w, oh / h
        parts = [[v * (sx if j % 2 == 0 else sy) for j, v in enumerate(part)] for part in parts]
    return mask_utils.merge(mask_utils.frPyObjects(parts, oh, ow))


def segmentation_to_mask(segm: Any, h: int, w: int, out_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Validate a COCO segmentation and decode it at ``(h, w)``, or resized to ``out_hw``.

    Parameters
    ----------
    segm : list or dict
        Polygon(s) ``[[x1, y1, x2, y2, ...], ...]`` (a flat list is one polygon), uncompressed RLE
        ``{"size": [h, w], "counts": [int, ...]}`` or compressed RLE (``counts`` a string).
    h, w : int
        Image size the annotation was drawn at (an RLE's ``size`` must equal it).
    out_hw : (int, int), optional
        Size to return the mask at (a downscaled image): polygons are scaled before rasterising, RLE
        masks are decoded at ``(h, w)`` and resized (nearest neighbour). Default ``(h, w)``.

    Returns
    -------
    np.ndarray
        ``out_hw`` bool mask.

    Raises
    ------
    AnnotationProblem
        The segmentation is malformed.
    """
    from pycocotools import mask as mask_utils

    oh, ow = out_hw if out_hw is not None else (h, w)
    if isinstance(segm, dict):
        rle = _rle_of_dict(segm, h, w)
    elif isinstance(segm, list):
        rle = _rle_of_polygon(segm, h, w, (oh, ow))
    else:
        raise AnnotationProblem(f"segmentation must be a polygon list or an RLE dict, got {type(segm).__name__}")
    try:
        mask = mask_utils.decode(rle)
    except Exception as exc:  # pycocotools raises ValueError / TypeError on bad RLE
        raise AnnotationProblem(f"cannot decode segmentation: {display_text(exc)}") from None
    if mask.ndim == 3:
        mask = mask[:, :, 0]
    if mask.shape != (oh, ow):  # an RLE of a downscaled image
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((ow, oh), Image.NEAREST))
    return np.ascontiguousarray(mask.astype(bool))
