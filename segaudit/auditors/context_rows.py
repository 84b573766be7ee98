"""Rows of the ``context`` and ``class_templates`` tables: the causal context test and the class templates of a batch.

``context_rows``         the causal context test (:func:`segaudit.metrics.context.context_effects`, Hoyer et al.
                         2019) of every labelled (image, class) pair of the images the ``evidence`` setting picks
                         (:func:`segaudit.auditors.sampling.evidence_images`): one ``context`` row per pair
``class_template_rows``  per batch, every image: the per-class sums of the logit vectors over the labelled pixels
                         (:func:`segaudit.metrics.entanglement.template_sums`), summed over the run into the class
                         templates of the ``class_entanglement`` finding (Seg-Unravel)

A pair's ``outside_share`` is the CAM side of the same question, ``1 - RRA`` of the primary map (first layer,
first method) against the class's GT mask: the map's evidence that the model looks at the context, set beside
the model's answer when the context is taken away. ``object_only_jpeg`` and ``context_only_jpeg`` show ``x_obj``
and ``x_ctx`` with the ``"baseline"`` fill (the normalisation mean), normalisation undone, for the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from PIL import Image

from segaudit.auditors.base import BatchRows
from segaudit.auditors.failures import is_out_of_memory, reason
from segaudit.auditors.rows import jpeg_bytes
from segaudit.auditors.sampling import evidence_images
from segaudit.cam.targets import logits_at_input
from segaudit.data.preprocess import PreparedBatch
from segaudit.data.sample import ErrorRow
from segaudit.metrics.context import context_effects, context_only, dilate, fill_images, object_only
from segaudit.metrics.entanglement import template_sums
from segaudit.models.registry import LoadedModel
from segaudit.schema import VOID_LABEL
from segaudit.settings import AuditConfig

__all__ = ["CONTEXT_RADIUS", "CONTEXT_CHUNK", "labelled_pairs", "inside_letterbox", "context_rows", "add_context_rows",
           "class_template_rows"]

#: Dilation (pixels, in the model's input frame) of an object into the region kept / replaced.
CONTEXT_RADIUS = 3
#: Images per forward of the context test.
CONTEXT_CHUNK = 16


def labelled_pairs(gt: torch.Tensor, num_classes: int, chosen: Sequence[bool]) -> list[tuple[int, int]]:
    """The ``(image, class)`` pairs of the chosen images with labelled pixels of a foreground class (not
    background 0, not void, a class of the model), in batch then class order."""
    pairs = []
    for b, take in enumerate(chosen):
        if take:
            present = torch.unique(gt[b]).tolist()
            pairs.extend((b, k) for k in present if 0 < k < num_classes and k != VOID_LABEL)
    return pairs


def inside_letterbox(batch: PreparedBatch, picked: Sequence[int]) -> torch.Tensor:
    """``(len(picked), S, S)`` bool: the picked images' pixels inside the letterbox (not padding).

    The context test perturbs these, not only the non-void pixels: a dataset's void ring around an object
    (Pascal VOC's 5-pixel borders) is part of the object's region ``D``; left in place it would keep the
    object's outline, from which an imputation spreads the object's colours back in. The measures (scores,
    IoUs, hallucination) count the non-void pixels only, as the audit's ``seg_iou`` does."""
    side = batch.gt.shape[-1]
    inside = torch.zeros((len(picked), side, side), dtype=torch.bool)
    for i, b in enumerate(picked):
        box = batch.boxes[b]
        inside[i, box.top : box.top + box.new_height, box.left : box.left + box.new_width] = True
    return inside


def _views(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], size: int) -> list[bytes]:
    """JPEG bytes of normalised ``(N, 3, S, S)`` images, normalisation undone, at most ``size`` a side."""
    m = torch.tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    rgb = ((images.cpu() * s + m).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    side = rgb.shape[1]
    out = []
    for view in rgb:
        if size < side:
            view = np.asarray(Image.fromarray(view).resize((size, size), Image.BILINEAR))
        out.append(jpeg_bytes(np.ascontiguousarray(view)))
    return out


def context_rows(
    model: LoadedModel,
    batch: PreparedBatch,
    config: AuditConfig,
    outside_share: dict[tuple[int, int], float] | None = None,
) -> list[dict[str, Any]]:
    """Rows of the ``context`` table of a batch (module docstring): the causal context test of each labelled
    (image, class) pair of the images ``evidence_images(ids, config.evidence, config.evidence_share)`` picks.

    Parameters
    ----------
    model : LoadedModel
        Its ``module`` is run again (no gradient, in chunks of :data:`CONTEXT_CHUNK`) on the perturbed images.
    batch : PreparedBatch
    config : AuditConfig
        ``evidence``, ``evidence_share`` and ``thumbnail_size``.
    outside_share : dict, optional
        ``(b, k) -> 1 - RRA`` of the primary map of the pair against its GT mask (NaN where absent).

    Returns
    -------
    list of dict
        One row per tested pair (no row for images not picked, or at level ``"none"``).
    """
    chosen = evidence_images([s.image_id for s in batch.samples], config.evidence, config.evidence_share)
    pairs = labelled_pairs(batch.gt, len(model.class_names), chosen)
    if not pairs:
        return []
    device = model.device
    picked = sorted({b for b, _ in pairs})
    local = {b: i for i, b in enumerate(picked)}  # only the picked images go through the model again
    images = batch.images[picked].to(device)
    gt, valid = batch.gt[picked].to(device), inside_letterbox(batch, picked).to(device)
    image_of = torch.tensor([local[b] for b, _ in pairs], dtype=torch.long, device=device)
    classes = torch.tensor([k for _, k in pairs], dtype=torch.long, device=device)
    objects = gt[image_of] == classes[:, None, None]
    effects = context_effects(logits_at_input(model.module), images, valid, image_of, classes, objects,
                              radius=CONTEXT_RADIUS, chunk=CONTEXT_CHUNK, measured=gt != VOID_LABEL)
    values = {key: tensor.tolist() for key, tensor in effects.items()}
    regions = dilate(objects, CONTEXT_RADIUS)
    baseline = fill_images(images, valid, "baseline")
    object_views = _views(object_only(images, baseline, image_of, regions, valid), model.mean, model.std,
                          config.thumbnail_size)
    context_views = _views(context_only(images, baseline, image_of, regions, valid), model.mean, model.std,
                           config.thumbnail_size)
    pixels = (objects & valid[image_of]).flatten(1).sum(1).tolist()
    outside_share = outside_share or {}
    rows = []
    for n, (b, k) in enumerate(pairs):
        rows.append({
            "image_id": batch.samples[b].image_id, "class_id": k, "class_name": model.class_names[k],
            "object_pixels": int(pixels[n]), "score": values["score"][n],
            "score_object_only": values["object_only_score"][n], "context_reliance": values["context_reliance"][n],
            "iou": values["iou"][n], "iou_object_only": values["object_only_iou"][n],
            "context_iou_drop": values["context_iou_drop"][n], "hallucination": values["hallucination"][n],
            "outside_share": float(outside_share.get((b, k), float("nan"))),
            "object_only_jpeg": object_views[n], "context_only_jpeg": context_views[n],
        })
    return rows


def add_context_rows(
    rows: BatchRows, model: LoadedModel, batch: PreparedBatch, config: AuditConfig,
    outside_share: dict[tuple[int, int], float] | None = None,
) -> None:
    """Append :func:`context_rows` of a batch to ``rows``; if the stage fails, an error row (stage
    ``"context"``) for each image it would have tested instead, the batch's other rows kept (out-of-memory
    errors propagate, as everywhere in an audit)."""
    try:
        rows.context.extend(context_rows(model, batch, config, outside_share))
    except Exception as exc:  # noqa: BLE001 - any failure of the test becomes rows with the reason
        if is_out_of_memory(exc):
            raise
        chosen = evidence_images([s.image_id for s in batch.samples], config.evidence, config.evidence_share)
        why = f"context test failed: {reason(exc)}"
        rows.errors.extend(asdict(ErrorRow(s.image_id, s.file_name, "context", why))
                           for s, take in zip(batch.samples, chosen, strict=True) if take)


def class_template_rows(logits: torch.Tensor, gt: torch.Tensor, num_classes: int) -> list[dict[str, Any]]:
    """Rows of the ``class_templates`` table of a batch: per class with labelled pixels, their count and the sum
    of their logit vectors (:func:`segaudit.metrics.entanglement.template_sums`; ``logits`` ``(B, K, S, S)``
    and ``gt`` ``(B, S, S)`` at the same size)."""
    sums, counts = template_sums(logits.detach(), gt.to(logits.device), num_classes)
    sums, counts = sums.cpu().numpy(), counts.cpu().numpy()
    return [{"class_id": k, "pixels": int(counts[k]), "logit_sums": sums[k].tolist()}
            for k in range(num_classes) if counts[k] > 0]
