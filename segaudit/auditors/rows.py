"""The row builders every auditor shares: one way to write each table's rows, whatever the model family.

``image_row``            the images table's row of one image (17 columns)
``classes_in_confusion`` the classes each image's labels and predictions hold, from its confusion matrix
``add_map_rows``         scores rows (one per scored unit and mask) and maps rows of one (layer, method)
``PrimaryConsistency``   the "primary layer" rule: an image's consistency averages the primary layer's maps
``image_consistency_of`` an image's consistency and worst class from its classes'
``thumbnail_rows``       the letterboxed view, GT and prediction of each image, as JPEG/PNG bytes
``add_confusion_rows``   per-image confusion cells, and each image's pixel accuracy
``pair_instances``, ``instance_rows``  the instances table (labelled instances of each scored class)
``fixation_rows``        the fixations table (CNN-Fixations points)
``ScoredPairs``          the (image, class) pairs a CamResult explains, with their GT masks

A *scored unit* is an (image, class) pair for segmentation models and classifiers, a detection for
detectors; its *key* holds ``image_id``, ``class_id`` and ``target`` (and ``detection`` for detectors).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from segaudit.auditors.base import BatchRows
from segaudit.cam import TARGET_NONE, CamResult, upsample_maps
from segaudit.data.preprocess import PreparedBatch, letterbox_labels
from segaudit.data.sample import IGNORE
from segaudit.metrics.instances import instance_scores

__all__ = ["PrimaryConsistency", "PairInstances", "ScoredPairs", "add_confusion_rows", "add_map_rows", "cam_max",
           "classes_in_confusion", "fixation_rows", "image_consistency_of", "image_row", "instance_rows", "jpeg_bytes",
           "pair_instances",
           "thumbnail_rows"]


def image_row(
    batch: PreparedBatch, b: int, names: Sequence[str], gt: torch.Tensor, *, pred_classes: list[str],
    pixel_accuracy: float, consistency: float, worst_class_id: int, label_quality: float = float("nan"),
    gt_class_ids: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The images table's row of image ``b`` of ``batch``; ``gt`` ``(S, S)`` its letterboxed labels, or
    ``gt_class_ids`` the classes they hold when the caller has them (:func:`classes_present`).

    ``suspicion`` and ``review_rank`` are placeholders set over the whole run
    (:func:`segaudit.auditors.batch.finish_tables`).
    """
    sample = batch.samples[b]
    unknown = batch.unknown_classes[b] if batch.unknown_classes else {}
    return {
        "image_id": sample.image_id,
        "file_name": sample.file_name,
        "width": int(sample.image.shape[1]),
        "height": int(sample.image.shape[0]),
        "n_instances": sum(1 for inst in sample.instances if not inst.iscrowd),
        "gt_classes": [names[c] for c in (torch.unique(gt).tolist() if gt_class_ids is None else gt_class_ids)
                       if 0 < c < len(names)],
        "pred_classes": pred_classes,
        "pixel_accuracy": pixel_accuracy,
        "consistency": consistency,
        "label_quality": label_quality,
        "suspicion": float("nan"),
        "review_rank": 0,
        "worst_class_id": worst_class_id,
        "unknown_classes": list(unknown),
        "unknown_pixels": list(unknown.values()),
    }


def classes_in_confusion(confusion: torch.Tensor) -> tuple[list[list[int]], list[list[int]]]:
    """Per image, the classes its labels hold and the classes predicted on its labelled (non-void) pixels,
    ascending, read off its confusion matrix (:func:`~segaudit.metrics.scores.confusion_counts`, ``(B, K, K)``):
    the rows and the columns with a pixel. What ``torch.unique(gt[b])`` and ``torch.unique(pred[b][valid[b]])``
    list in ``[0, K)``."""
    labelled, predicted = (counts.tolist() for counts in (confusion.sum(2) > 0, confusion.sum(1) > 0))
    return ([[c for c, n in enumerate(row) if n] for row in labelled],
            [[c for c, n in enumerate(row) if n] for row in predicted])


def cam_max(raw: torch.Tensor) -> list[float]:
    """Each raw map's maximum (``raw`` ``(N, h, w)``), as float64 values."""
    return raw.flatten(1).max(1).values.double().tolist() if len(raw) else []


def add_map_rows(
    rows: BatchRows, keys: Sequence[dict[str, Any]], names: Sequence[str], layer: str, method: str,
    raw: torch.Tensor, per_mask: dict[str, dict[str, torch.Tensor]], common: dict[str, Sequence[Any]],
) -> None:
    """Append the scores and maps rows of one (layer, method).

    Parameters
    ----------
    keys : sequence of dict
        Per scored unit ``n``, its key (``image_id``, ``class_id``, ``target``, ...).
    raw : torch.Tensor
        ``(N, h, w)`` the units' raw maps (one maps row each).
    per_mask : dict
        ``mask`` (``"gt"``, ``"pred"``) -> :func:`segaudit.metrics.scores.mask_scores` of the units' maps
        against that mask: one scores row per unit and mask, in this order.
    common : dict
        Column -> ``N`` values shared by the unit's rows of every mask (``seg_iou``, ``consistency``, ...).
    """
    columns = {mask: {col: values.tolist() for col, values in scores.items()} for mask, scores in per_mask.items()}
    for n, key in enumerate(keys):
        keyed = {**key, "method": method, "layer": layer}
        for mask, values in columns.items():
            rows.scores.append({**keyed, "class_name": names[key["class_id"]], "mask": mask,
                                **{col: values[col][n] for col in values}, **{col: common[col][n] for col in common}})
        rows.maps.append({**keyed, "height": raw.shape[-2], "width": raw.shape[-1],
                          "values": raw[n].float().flatten().cpu().numpy()})


class PrimaryConsistency:
    """The mean consistency of each scored unit over the maps of the *primary layer* (the first requested
    one); over every map if none is there (e.g. only guided backprop, whose maps live at the input). The
    review ranking, and so an image's consistency, uses that layer only: a layer sweep does not change it.

    Parameters
    ----------
    maps : iterable of (layer, method)
        Keys of the batch's maps.
    first_layer : str
    units : int
        Number of scored units.
    """

    def __init__(self, maps: Sequence[tuple[str, str]], first_layer: str, units: int) -> None:
        self.primary = {key for key in maps if key[0] == first_layer} or set(maps)
        self.total = torch.zeros(units, dtype=torch.float64)

    def add(self, key: tuple[str, str], consistency: torch.Tensor) -> None:
        """Count the units' ``consistency`` of map ``key`` if it is a primary one."""
        if key in self.primary:
            self.total += consistency.cpu()

    def mean(self) -> np.ndarray:
        """``(units,)`` mean over the primary maps."""
        return (self.total / max(len(self.primary), 1)).numpy()


def image_consistency_of(
    consistency: np.ndarray, extent: np.ndarray, class_ids: np.ndarray
) -> tuple[float, int]:
    """An image's consistency and its worst class from its classes' consistencies.

    The image score is the mean of the class consistencies weighted by each class's extent
    ``|G_c | P_c|`` (valid pixels labelled or predicted as ``c``), so a few stray predicted pixels weigh
    little and a whole mislabelled object weighs a lot::

        C_image = sum_c |G_c | P_c| C_c / sum_c |G_c | P_c|

    The worst class is the one that loses the most weighted agreement, ``argmax_c |G_c | P_c| (1 - C_c)``.
    An image with nothing labelled or predicted scores 1 (label and model agree) with worst class -1.

    Parameters
    ----------
    consistency, extent, class_ids : np.ndarray
        ``(n,)`` per class of the image.
    """
    if extent.sum() <= 0:
        return 1.0, -1
    score = float(np.average(consistency, weights=extent))
    return score, int(class_ids[np.argmax(extent * (1.0 - consistency))])


def _png(labels: np.ndarray) -> bytes:
    """Lossless PNG of a label image. zlib's run-length strategy suits label images (long runs of one
    class): ~10x faster to encode than ``optimize=True`` (zlib level 9 with per-row filter trials) for
    ~10% more bytes, the same pixels."""
    buffer = io.BytesIO()
    Image.fromarray(labels.astype(np.uint8), mode="L").save(buffer, format="PNG", compress_level=9,
                                                            compress_type=zlib.Z_RLE)
    return buffer.getvalue()


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    """JPEG (quality 90) bytes of an ``(H, W, 3)`` uint8 RGB image."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def thumbnail_rows(batch: PreparedBatch, pred: torch.Tensor | None, size: int) -> list[dict[str, Any]]:
    """The thumbnails table's rows: each image's letterboxed view (JPEG), GT and prediction (PNG, the
    padding void), at most ``size`` pixels a side; ``pred`` ``(B, S, S)``, or None for a model that predicts
    no mask (empty ``pred_png``)."""
    rows = []
    side = batch.views.shape[1]
    thumb = min(size, side)
    for b, sample in enumerate(batch.samples):
        box = batch.boxes[b]
        inside = np.zeros((side, side), dtype=bool)
        inside[box.top : box.top + box.new_height, box.left : box.left + box.new_width] = True
        gt = batch.gt[b].cpu().numpy().astype(np.uint8)
        shown_pred = None if pred is None else np.where(inside, pred[b].cpu().numpy(), IGNORE).astype(np.uint8)
        view = batch.views[b]
        if thumb != side:
            view = np.asarray(Image.fromarray(view).resize((thumb, thumb), Image.BILINEAR))
            gt = np.asarray(Image.fromarray(gt).resize((thumb, thumb), Image.NEAREST))
            if shown_pred is not None:
                shown_pred = np.asarray(Image.fromarray(shown_pred).resize((thumb, thumb), Image.NEAREST))
        rows.append({"image_id": sample.image_id, "image_jpeg": jpeg_bytes(view), "gt_png": _png(gt),
                     "pred_png": b"" if shown_pred is None else _png(shown_pred)})
    return rows


def add_confusion_rows(rows: BatchRows, batch: PreparedBatch, confusion: torch.Tensor) -> list[float]:
    """Append the batch's confusion rows (the non-zero cells of ``confusion``, ``(B, K, K)`` from
    :func:`~segaudit.metrics.scores.confusion_counts`) and return each image's pixel accuracy (NaN with
    nothing labelled)."""
    confusion = confusion.cpu()
    cells = torch.nonzero(confusion)
    pixels = confusion[tuple(cells.T)].tolist()
    for (b, i, j), count in zip(cells.tolist(), pixels, strict=True):
        rows.confusion.append({"image_id": batch.samples[b].image_id, "gt_class_id": i, "pred_class_id": j,
                               "pixels": count})
    labelled = confusion.flatten(1).sum(1).double()
    return torch.where(labelled > 0, confusion.diagonal(dim1=1, dim2=2).sum(1) / labelled.clamp(min=1),
                       torch.full_like(labelled, float("nan"))).tolist()


@dataclass
class PairInstances:
    """The labelled instances of every scored (image, class) pair, stacked for :func:`instance_scores`."""

    masks: torch.Tensor  # (M, S, S) bool
    owner: torch.Tensor  # (M,) row of the pair
    index: list[int]  # the instance's index in PreparedBatch.instances[b]
    annotation_id: list[str | None]


def _annotation_ids(batch: PreparedBatch, b: int) -> list[str | None]:
    """The dataset's annotation id of each of ``batch.instances[b]``: the prepared instances are the
    sample's non-crowd instances of mapped classes, in order, so match them in order by their letterboxed
    mask (1:1 when none was dropped)."""
    sample, prepared = batch.samples[b], batch.instances[b]
    candidates = [inst for inst in sample.instances if not inst.iscrowd]
    if len(candidates) == len(prepared):
        return [inst.annotation_id for inst in candidates]
    ids: list[str | None] = []
    j = 0
    for _, mask in prepared:
        found = None
        while j < len(candidates) and found is None:
            boxed = letterbox_labels(candidates[j].mask, batch.boxes[b], fill=0).astype(bool)
            if torch.equal(torch.from_numpy(boxed), mask.cpu()):
                found = candidates[j].annotation_id
            j += 1
        ids.append(found)
    return ids


def pair_instances(batch: PreparedBatch, pair_list: list[list[int]], device: torch.device) -> PairInstances:
    """The labelled instances of the class of each ``(b, k)`` in ``pair_list``, owned by its row."""
    masks, owner, index, annotation = [], [], [], []
    ids = {b: _annotation_ids(batch, b) for b in {b for b, _ in pair_list} if batch.instances[b]}
    for row, (b, k) in enumerate(pair_list):
        for i, (cls, mask) in enumerate(batch.instances[b]):
            if cls == k:
                masks.append(mask)
                owner.append(row)
                index.append(i)
                annotation.append(ids[b][i])
    side = batch.gt.shape[-1]
    stacked = torch.stack(masks) if masks else torch.zeros((0, side, side), dtype=torch.bool)
    return PairInstances(stacked.to(device), torch.tensor(owner, dtype=torch.long, device=device), index, annotation)


def instance_rows(
    found: PairInstances, maps: torch.Tensor, valid: torch.Tensor, pair_list: list[list[int]],
    batch: PreparedBatch, names: Sequence[str], targets: list[str], layer: str, method: str,
) -> list[dict[str, Any]]:
    """Rows of the instances table for one (layer, method): each instance's mass share, peak and coverage."""
    scores = instance_scores(maps, valid, found.masks, found.owner)
    per_instance = {col: getattr(scores, col).tolist()
                    for col in ("pixels", "mass_share", "class_mass_share", "peak_height", "has_peak", "covered")}
    n_instances, coverage = scores.n_instances.tolist(), scores.instance_coverage.tolist()
    rows = []
    for j, row in enumerate(found.owner.tolist()):
        b, k = pair_list[row]
        rows.append({"image_id": batch.samples[b].image_id, "instance": found.index[j],
                     "annotation_id": found.annotation_id[j], "class_id": k, "class_name": names[k],
                     "method": method, "layer": layer, "target": targets[row],
                     **{col: values[j] for col, values in per_instance.items()},
                     "n_instances": n_instances[row], "instance_coverage": coverage[row]})
    return rows


def fixation_rows(batch: PreparedBatch, cams: CamResult) -> list[dict[str, Any]]:
    """Rows of the fixations table: each CNN-Fixations point with its weight (none without the method)."""
    if cams.fixation_points is None:
        return []
    points = cams.fixation_points.tolist()
    weights = cams.fixation_weights.tolist()
    return [{"image_id": batch.samples[b].image_id, "class_id": k, "y": y, "x": x, "weight": w}
            for (b, k, y, x), w in zip(points, weights, strict=True)]


@dataclass
class ScoredPairs:
    """The (image, class) pairs a :class:`CamResult` explains (targets other than ``TARGET_NONE``), with
    their labelled masks, for the auditors that score pairs (segmentation models, classifiers)."""

    pairs: torch.Tensor  # (N, 2) (image, class) of each pair
    b_idx: torch.Tensor  # (N,) image of each pair
    k_idx: torch.Tensor  # (N,) class of each pair
    pair_list: list[list[int]]
    targets: list[str]  # target kind of each pair
    valid_all: torch.Tensor  # (B, S, S) valid pixels of each image
    gt_all: torch.Tensor  # (B, S, S) letterboxed labels
    valid: torch.Tensor  # (N, S, S) valid pixels of each pair's image
    gt_masks: torch.Tensor  # (N, S, S) each pair's GT mask

    @classmethod
    def of(cls, batch: PreparedBatch, cams: CamResult) -> ScoredPairs:
        device = cams.pred.device
        valid_all, gt_all = batch.valid.to(device), batch.gt.to(device)
        pairs = torch.nonzero(cams.target_source != TARGET_NONE)
        b_idx, k_idx = pairs[:, 0], pairs[:, 1]
        pair_list = pairs.tolist()
        targets = [CamResult.target_name(cams.target_source[b, k]) for b, k in pair_list]
        return cls(pairs, b_idx, k_idx, pair_list, targets, valid_all, gt_all, valid_all[b_idx],
                   gt_all[b_idx] == k_idx[:, None, None])

    def __len__(self) -> int:
        return len(self.pair_list)

    def maps(self, batch: PreparedBatch, cams: CamResult) -> Iterator[tuple[str, str, torch.Tensor, torch.Tensor]]:
        """Each ``(layer, method)`` of ``cams`` with the pairs' raw maps ``(N, h, w)`` and those upsampled to
        the input's size ``(N, S, S)``."""
        for layer, method in cams.maps:
            raw = cams.maps[(layer, method)][self.b_idx, self.k_idx]
            yield layer, method, raw, upsample_maps(raw, tuple(batch.images.shape[-2:]))

    def keys(self, batch: PreparedBatch) -> list[dict[str, Any]]:
        """Each pair's key in the scores and maps tables."""
        return [{"image_id": batch.samples[b].image_id, "class_id": k, "target": self.targets[i]}
                for i, (b, k) in enumerate(self.pair_list)]
