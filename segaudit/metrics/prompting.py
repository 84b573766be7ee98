"""CAM-prompted segmentation: turn a class activation map into prompts for a promptable segmenter, segment,
and score the segment against the label.

The pipeline (the seed's "CAM points as prompts"), per (image, class, CAM method) map ``L`` over the valid
pixels ``V`` of the model's square input frame::

    foreground point   p+ = weighted centroid of L above 0.6 x max L     (point="centroid")
                         or argmax L                                     (point="max")
    background point   p- = argmin L                                     (prompts="fg+bg" only)
    region             R  = {L~ >= t} & V,   L~ = (L - min_V L) / (max_V L - min_V L),   t = 0.5
    box                the bounding box of R (SAM, optional)
    segment            S  = segmenter(image, p+, [p-], R)
    scores             IoU(S, G) = |S & G & V| / |(S | G) & V|,   Dice(S, G) = 2 |S & G & V| / (|S & V| + |G & V|)

The points are those of :mod:`segaudit.metrics.scores` (:func:`~segaudit.metrics.scores.weighted_centroid`,
:func:`~segaudit.metrics.scores.max_point`, :func:`~segaudit.metrics.scores.background_point`), computed over the valid
pixels as there, so ``point_hit`` here equals ``centroid_hit`` / ``max_point_hit`` of the scores table; ``R``
is the region whose IoU the scores table reports as ``iou_at_0_5``. Two promptable segmenters implement
:class:`Segmenter`:

* :class:`GrabCutSegmenter` (default, offline, no weights): OpenCV's GrabCut (Rother, Kolmogorov & Blake
  2004, "GrabCut: Interactive foreground extraction using iterated graph cuts", ACM SIGGRAPH / ToG 23(3)),
  initialised from the prompts instead of a user's rectangle.
* :class:`SamSegmenter`: Segment Anything (Kirillov et al. 2023, "Segment Anything", ICCV), the
  ``segment-anything`` package's ``SamPredictor`` with point prompts (and optionally the box of ``R``), for
  users who have a SAM checkpoint (``pip install "segaudit[sam]"``; weights are not downloaded by segaudit).

NaN rules (as in :mod:`segaudit.metrics.scores`): ``point_hit`` / ``point_distance`` are NaN for an empty label or
a map with no positive value. No segment is made (``iou_with_gt``, ``dice_with_gt`` NaN, ``mask_pixels``
null) for a map that cannot prompt: no positive value or constant over the valid pixels (then it has no
region and no background point). ``iou_with_gt`` / ``dice_with_gt`` are also NaN for an empty label (a
class only the model predicts): the segment is made and counted (``mask_pixels``), there is nothing to
score it against. A segmenter that fails on an image becomes a row of the errors table (stage
``"prompt"``) and NaN scores; the audit goes on.

Coordinates are ``(row, col)`` pixel indices of the ``S x S`` frame, like the rest of segaudit; SAM's
``(x, y)`` order is produced only inside :class:`SamSegmenter`.

The modules: :mod:`segaudit.metrics.cam_prompts` makes the prompts from the maps,
:mod:`segaudit.metrics.segmenters` holds the segmenters, and this one segments the maps of a batch and
makes the rows of the ``prompts`` table (:func:`prompt_rows`); it re-exports the names of the other two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from segaudit.data.preprocess import Letterbox
from segaudit.metrics.cam_prompts import (
    POINT_KINDS,
    PROMPT_KINDS,
    REGION_THRESHOLD,
    MapPrompts,
    Prompt,
    map_prompts,
    thresholded_region,
)
from segaudit.metrics.scores import (
    CENTROID_CUTOFF,
    point_hit_and_distance,
    segmentation_dice,
    segmentation_iou,
)
from segaudit.metrics.segmenters import SAM_MODEL_TYPES, GrabCutSegmenter, SamSegmenter, Segmenter

__all__ = [
    "POINT_KINDS",
    "PROMPT_KINDS",
    "REGION_THRESHOLD",
    "SAM_MODEL_TYPES",
    "Prompt",
    "MapPrompts",
    "map_prompts",
    "thresholded_region",
    "Segmenter",
    "GrabCutSegmenter",
    "SamSegmenter",
    "PromptRows",
    "prompt_rows",
    "inside_from_boxes",
]


@dataclass
class PromptRows:
    """Rows of the ``prompts`` table (:data:`segaudit.runs.tables.SCHEMAS`) and of the errors table."""

    prompts: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def inside_from_boxes(boxes: Sequence[Letterbox]) -> torch.Tensor:
    """``(B, S, S)`` bool, the pixels of each letterboxed image proper (False on the padding)."""
    if not boxes:
        raise ValueError("expected at least one Letterbox")
    size = boxes[0].size
    inside = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    for b, box in enumerate(boxes):
        inside[b, box.top : box.top + box.new_height, box.left : box.left + box.new_width] = True
    return inside


def _as_numpy_views(views: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(views, torch.Tensor):
        views = views.detach().cpu().numpy()
    return np.ascontiguousarray(views)


def _checked(masks: Any, count: int, side: tuple[int, int]) -> np.ndarray:
    """A segmenter's output as ``(count, *side)`` bool, or ValueError."""
    masks = np.asarray(masks)
    if masks.shape != (count, *side):
        raise ValueError(f"the segmenter returned masks {masks.shape} for {count} prompts on a {side} image")
    return masks.astype(bool, copy=False)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def prompt_rows(
    views: np.ndarray | torch.Tensor,
    maps: torch.Tensor,
    pairs: torch.Tensor,
    gt_masks: torch.Tensor,
    valid: torch.Tensor,
    *,
    image_ids: Sequence[str],
    method: str,
    layer: str,
    segmenter: Segmenter | None = None,
    points: Sequence[str] = POINT_KINDS,
    prompts: Sequence[str] = PROMPT_KINDS,
    threshold: float = REGION_THRESHOLD,
    cutoff: float = CENTROID_CUTOFF,
    inside: torch.Tensor | None = None,
    file_names: Sequence[str] | None = None,
) -> PromptRows:
    """Segment every map of a batch from its CAM prompts and score the segments against the labels.

    One row per map x ``points`` x ``prompts``, in that order, with the columns of the ``prompts`` table:
    ``image_id, class_id, method, layer, segmenter, point, prompts, point_hit, point_distance,
    iou_with_gt, dice_with_gt, mask_pixels`` (see the module docstring for the formulas and NaN rules;
    ``mask_pixels`` = ``|S & V|``, the segment's valid pixels).

    Parameters
    ----------
    views : np.ndarray or torch.Tensor
        ``(B, S, S, 3)`` uint8 RGB, the letterboxed images (``PreparedBatch.views``).
    maps : torch.Tensor
        ``(N, S, S)`` float, the CAMs upsampled to the input frame, one per (image, class) pair.
    pairs : torch.Tensor
        ``(N, 2)`` int64 ``(image index b, class id k)`` of each map.
    gt_masks, valid : torch.Tensor
        ``(N, S, S)`` bool, the label of class ``k`` in image ``b`` and the non-void pixels.
    image_ids : sequence of str
        ``(B,)`` ids of the images.
    method, layer : str
        The CAM method and layer of the maps (written into the rows).
    segmenter : Segmenter, optional
        Default :class:`GrabCutSegmenter` with its defaults.
    points, prompts : sequence of str
        Subsets of :data:`POINT_KINDS` and :data:`PROMPT_KINDS`.
    threshold, cutoff : float
        Region threshold (:func:`thresholded_region`) and weighted-centroid cutoff.
    inside : torch.Tensor, optional
        ``(B, S, S)`` bool, pixels of the image proper (:func:`inside_from_boxes`); the rest (letterbox
        padding) is given to the segmenter as ``outside``. None: no padding.
    file_names : sequence of str, optional
        ``(B,)`` file names, for error rows.

    Returns
    -------
    PromptRows
        The rows, and one error row (stage ``"prompt"``) per image on which the segmenter failed.
    """
    views = _as_numpy_views(views)
    _check_batch(views, maps, pairs, gt_masks, valid, image_ids, file_names, inside)
    bad = sorted(set(points) - set(POINT_KINDS)) + sorted(set(prompts) - set(PROMPT_KINDS))
    if bad or not points or not prompts:
        raise ValueError(f"points must be from {POINT_KINDS} and prompts from {PROMPT_KINDS}; got {bad or 'none'}")
    segmenter = segmenter if segmenter is not None else GrabCutSegmenter()

    maps, gt_masks, valid = maps.detach().cpu(), gt_masks.cpu(), valid.cpu()
    b_idx, k_idx = pairs[:, 0].cpu().tolist(), pairs[:, 1].cpu().tolist()
    combos = [(p, q) for p in points for q in prompts]
    per_point = {p: map_prompts(maps, valid, p, threshold, cutoff) for p in points}
    out = PromptRows()
    segments, made = _segment_images(views, b_idx, per_point, combos, segmenter, inside, out.errors,
                                     image_ids=image_ids, file_names=file_names)
    hits = {p: point_hit_and_distance(mp.foreground, mp.foreground_ok, gt_masks, valid) for p, mp in per_point.items()}
    out.prompts = _table_rows(
        _scored(segments, made, gt_masks, valid),
        {p: (h.tolist(), d.tolist()) for p, (h, d) in hits.items()},
        [image_ids[b] for b in b_idx],
        k_idx,
        {"method": method, "layer": layer, "segmenter": segmenter.name},
    )
    return out


def _check_batch(
    views: np.ndarray,
    maps: torch.Tensor,
    pairs: torch.Tensor,
    gt_masks: torch.Tensor,
    valid: torch.Tensor,
    image_ids: Sequence[str],
    file_names: Sequence[str] | None,
    inside: torch.Tensor | None,
) -> None:
    """ValueError unless the arguments of :func:`prompt_rows` have the shapes and dtypes it documents."""
    n = len(maps)
    if views.ndim != 4 or views.shape[3] != 3 or views.dtype != np.uint8:
        raise ValueError(f"expected views (B, S, S, 3) uint8, got {views.shape} {views.dtype}")
    side = views.shape[1:3]
    if maps.dim() != 3 or tuple(maps.shape[1:]) != side:
        raise ValueError(f"expected maps (N, {side[0]}, {side[1]}) to match the views, got {tuple(maps.shape)}")
    if pairs.shape != (n, 2) or gt_masks.shape != maps.shape or valid.shape != maps.shape:
        raise ValueError(f"expected pairs ({n}, 2) and gt_masks, valid {tuple(maps.shape)}; got "
                         f"{tuple(pairs.shape)}, {tuple(gt_masks.shape)}, {tuple(valid.shape)}")
    if gt_masks.dtype != torch.bool or valid.dtype != torch.bool:
        raise ValueError(f"expected bool gt_masks and valid, got {gt_masks.dtype} and {valid.dtype}")
    if len(image_ids) != len(views) or (file_names is not None and len(file_names) != len(views)):
        raise ValueError(f"expected {len(views)} image ids (and file names), one per view")
    if inside is not None and tuple(inside.shape) != (len(views), *side):
        raise ValueError(f"expected inside ({len(views)}, {side[0]}, {side[1]}), got {tuple(inside.shape)}")


def _segment_images(
    views: np.ndarray,
    b_idx: list[int],
    per_point: dict[str, MapPrompts],
    combos: list[tuple[str, str]],
    segmenter: Segmenter,
    inside: torch.Tensor | None,
    errors: list[dict[str, Any]],
    *,
    image_ids: Sequence[str],
    file_names: Sequence[str] | None,
) -> tuple[dict[tuple[str, str], torch.Tensor], dict[tuple[str, str], torch.Tensor]]:
    """Segment every map that can prompt, image by image (one ``segment`` call per image).

    Returns, per ``(point, prompts)`` combination, the ``(N, S, S)`` bool segments and the ``(N,)`` bool
    "a segment was made"; an image on which the segmenter failed adds one row to ``errors``.
    """
    n, side = len(b_idx), views.shape[1:3]
    segments = {c: torch.zeros((n, *side), dtype=torch.bool) for c in combos}
    made = {c: torch.zeros(n, dtype=torch.bool) for c in combos}
    by_image: dict[int, list[int]] = {}
    for i, b in enumerate(b_idx):
        by_image.setdefault(b, []).append(i)
    for b, rows_of_b in by_image.items():
        jobs = [(i, c) for i in rows_of_b for c in combos if bool(per_point[c[0]].defined[i])]
        if not jobs:
            continue
        asked = [per_point[p].prompt(i, with_background=(q == "fg+bg")) for i, (p, q) in jobs]
        outside = None if inside is None else ~inside[b].cpu().numpy()
        results, failures = _segment_prompts(segmenter, views[b], asked, outside)
        if failures:
            errors.append({
                "image_id": image_ids[b],
                "file_name": "" if file_names is None else file_names[b],
                "stage": "prompt",
                "reason": f"{segmenter.name} failed on {len(failures)} of {len(asked)} prompts: {failures[0]}",
            })
        for (i, c), mask in zip(jobs, results, strict=True):
            if mask is not None:
                segments[c][i] = torch.from_numpy(mask)
                made[c][i] = True
    return segments, made


def _segment_prompts(
    segmenter: Segmenter, view: np.ndarray, asked: list[Prompt], outside: np.ndarray | None
) -> tuple[list[np.ndarray | None], list[str]]:
    """The masks of the prompts of one image (None where the segmenter failed) and the failures' reasons:
    all prompts in one call, and if that fails, prompt by prompt."""
    side = view.shape[:2]
    try:
        masks = _checked(segmenter.segment(view, asked, outside), len(asked), side)
        results: list[np.ndarray | None] = list(masks)
        failures: list[str] = []
    except Exception:  # noqa: BLE001 - retried prompt by prompt, failures become an error row
        results, failures = [], []
        for prompt in asked:
            try:
                results.append(_checked(segmenter.segment(view, [prompt], outside), 1, side)[0])
            except Exception as exc:  # noqa: BLE001 - one failing prompt must not stop the others
                results.append(None)
                failures.append(_reason(exc))
    return results, failures


def _scored(
    segments: dict[tuple[str, str], torch.Tensor],
    made: dict[tuple[str, str], torch.Tensor],
    gt_masks: torch.Tensor,
    valid: torch.Tensor,
) -> dict[tuple[str, str], tuple[list[float], list[float], list[int], list[bool]]]:
    """Per combination: IoU and Dice with the label (NaN where no segment was made or the label is empty),
    the segment's valid pixels and whether it was made, as lists over the maps."""
    truth_empty = ~(gt_masks & valid).flatten(1).any(1)
    nan = torch.full((len(gt_masks),), float("nan"), dtype=torch.float64)
    scored = {}
    for c in segments:
        undefined = ~made[c] | truth_empty
        iou = torch.where(undefined, nan, segmentation_iou(segments[c], gt_masks, valid))
        dice = torch.where(undefined, nan, segmentation_dice(segments[c], gt_masks, valid))
        pixels = (segments[c] & valid).flatten(1).sum(1)
        scored[c] = (iou.tolist(), dice.tolist(), pixels.tolist(), made[c].tolist())
    return scored


def _table_rows(
    scored: dict[tuple[str, str], tuple[list[float], list[float], list[int], list[bool]]],
    hit_lists: dict[str, tuple[list[float], list[float]]],
    map_image_ids: list[str],
    k_idx: list[int],
    run: dict[str, str],
) -> list[dict[str, Any]]:
    """The ``prompts`` table's rows: one per map x combination, in that order (``run`` gives the method,
    layer and segmenter name)."""
    rows = []
    for i, image_id in enumerate(map_image_ids):
        for p, q in scored:
            iou, dice, pixels, ok = scored[(p, q)]
            rows.append({
                "image_id": image_id,
                "class_id": int(k_idx[i]),
                "method": run["method"],
                "layer": run["layer"],
                "segmenter": run["segmenter"],
                "point": p,
                "prompts": q,
                "point_hit": hit_lists[p][0][i],
                "point_distance": hit_lists[p][1][i],
                "iou_with_gt": iou[i],
                "dice_with_gt": dice[i],
                "mask_pixels": int(pixels[i]) if ok[i] else None,
            })
    return rows
