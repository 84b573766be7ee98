"""The ``faithfulness`` table's rows: deletion and insertion curves of every map of the checked images.

For the images of a batch that :func:`segaudit.auditors.sampling.evidence_images` picks (setting
``evidence``, share ``evidence_share``), every map the audit computed (each explained (image, class) pair,
method and layer) is tested against the model with
:func:`segaudit.metrics.faithfulness.deletion_insertion` (Petsiuk et al., RISE, BMVC 2018, with ROAD's
linear imputation, Rong et al., ICML 2022): the map's top pixels are removed (deletion) or kept alone
(insertion) at the shares ``F = (0.1, 0.3, 0.5, 0.7, 0.9)`` (:data:`AUDIT_FRACTIONS`, every other share
of ROAD's grid, to halve the cost), the model runs on each perturbed image, and

    deletion_auc  = mean_{f in F} s(x with the top f removed)
    insertion_auc = mean_{f in F} s(x with all but the top f removed)
    faithfulness  = insertion_auc - deletion_auc

The explained score ``s`` of a segmentation pair is the mean softmax probability of its class over its
*target pixels* (:func:`segaudit.metrics.faithfulness.segmentation_class_score`), the pixel set its CAM
explained (:func:`segaudit.cam.targets.seg_grad_cam_pixels`: with ``target="pred"`` the pair's predicted
mask, or its labelled mask where the model predicts none of it); the target pixels stay fixed while the
input is perturbed. A classifier's is its presence probability ``sigmoid(s_k)`` (the whole image is the
target: ``pixels`` counts its valid pixels). Removed pixels are imputed without noise (``noise = 0``, the
plain linear imputation) so that a pair's curve does not depend on the batch or shard it ran in, with at
most :data:`IMPUTATION_STEPS` conjugate-gradient steps in float32 from the pull-push fill (an
approximation of ROAD's converged fill, measured there).

Cost: ``2 * len(F) = 10`` forwards per map (batched ``chunk`` perturbed images per model call, no gradient)
plus the imputation; the ``evidence`` level bounds it (``sampled``: about ``evidence_share`` of the images).
A failure of this stage for a batch becomes one error row (stage ``"faithfulness"``) per checked image;
the batch's other rows are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from segaudit.auditors.base import BatchRows
from segaudit.auditors.sampling import evidence_images
from segaudit.cam import CamResult, upsample_maps
from segaudit.cam.targets import TARGET_NAMES, TARGET_NONE, logits_at_input, model_logits, seg_grad_cam_pixels
from segaudit.data.preprocess import PreparedBatch
from segaudit.metrics.faithfulness import deletion_insertion, segmentation_class_score
from segaudit.models.registry import LoadedModel
from segaudit.settings import AuditConfig

__all__ = ["AUDIT_FRACTIONS", "FAITHFULNESS_STAGE", "IMPUTATION", "IMPUTATION_STEPS", "curve_rows", "faithfulness_rows"]

#: The ``stage`` of this step's error rows.
FAITHFULNESS_STAGE = "faithfulness"

#: Maps per call of :func:`deletion_insertion` (each makes ``2 * len(AUDIT_FRACTIONS)`` perturbed images), and perturbed images
#: per model call: bounds the memory of the removal masks and of one forward.
_MAPS_PER_CALL = 16
_IMAGES_PER_FORWARD = 32

#: Conjugate-gradient steps of the imputation from its pull-push start (ROAD's exact fill needs hundreds on
#: large removed regions). On the demo's maps (10 pairs, shares 0.2 / 0.5 / 0.8) 30 steps change the
#: explained score by at most about 1e-4 against the converged fill, 10 steps by up to 0.015.
IMPUTATION_STEPS = 30
IMPUTATION = {"max_iterations": IMPUTATION_STEPS, "tolerance": 1e-4, "dtype": torch.float32}

#: Removal shares of the audit's curves: every other share of ROAD's grid
#: (:data:`segaudit.metrics.faithfulness.ROAD_FRACTIONS`), 10 forwards per map instead of 18.
AUDIT_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _classifier_score(module: torch.nn.Module, classes: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A classifier pair's explained score ``sigmoid(s_k(x))`` for :func:`deletion_insertion`."""

    def score(x: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        logits = model_logits(module(x)).float()
        return logits[torch.arange(len(pair), device=logits.device), classes[pair]].sigmoid()

    return score


def _checked_pairs(batch: PreparedBatch, cams: CamResult, config: AuditConfig) -> torch.Tensor:
    """``(N, 2)`` (image, class) of the explained pairs of the images the ``evidence`` setting picks."""
    ids = [s.image_id for s in batch.samples]
    picked = torch.tensor(evidence_images(ids, config.evidence, config.evidence_share), dtype=torch.bool)
    explained = cams.target_source.cpu() != TARGET_NONE
    return torch.nonzero(explained & picked[:, None])


def _curves(
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images: torch.Tensor, maps: torch.Tensor,
    image_of: torch.Tensor, valid: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """:func:`deletion_insertion` of all ``maps`` in calls of at most :data:`_MAPS_PER_CALL` maps (``score``
    takes indices into all of them)."""
    parts = []
    for start in range(0, len(maps), _MAPS_PER_CALL):
        sl = slice(start, start + _MAPS_PER_CALL)
        offset = start

        def shifted(x: torch.Tensor, pair: torch.Tensor, offset: int = offset) -> torch.Tensor:
            return score(x, pair + offset)

        parts.append(deletion_insertion(shifted, images, maps[sl], image_of[sl], valid, AUDIT_FRACTIONS,
                                        chunk=_IMAGES_PER_FORWARD, imputation=IMPUTATION))
    keys = ("base", "deletion_score", "insertion_score", "faithfulness")
    return {k: torch.cat([p[k] for p in parts]) for k in keys}


def curve_rows(batch: PreparedBatch, cams: CamResult, model: LoadedModel, config: AuditConfig,
               checked: torch.Tensor, keys: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """The ``faithfulness`` rows of the ``checked`` (image, class) pairs ``(N, 2)`` for the maps ``keys``
    (default: every map of ``cams``), in the order of ``keys`` then the pairs; raises on any failure
    (:func:`faithfulness_rows` catches; the pre-pass, :mod:`segaudit.auditors.calibration`, records it)."""
    device = cams.logits.device
    images = batch.images.to(device)
    valid = batch.valid.to(device)
    b_idx, k_idx = checked[:, 0].to(device), checked[:, 1].to(device)
    keys = list(cams.maps) if keys is None else keys
    size = tuple(images.shape[-2:])
    maps = torch.cat([upsample_maps(cams.maps[key][b_idx, k_idx].float(), size) for key in keys])
    n = len(checked)
    image_of, classes = b_idx.repeat(len(keys)), k_idx.repeat(len(keys))
    if model.task == "classification":
        pixels = valid[image_of]
        score = _classifier_score(model.module, classes)
    else:
        target = seg_grad_cam_pixels(cams.pred, batch.gt.to(device), cams.target_source, b_idx, k_idx, config.roi)
        pixels = (target & valid[b_idx]).repeat(len(keys), 1, 1)
        score = segmentation_class_score(logits_at_input(model.module), classes, pixels)
    curves = _curves(score, images, maps, image_of, valid)
    counts = pixels.flatten(1).sum(1).tolist()
    values = {k: v.tolist() for k, v in curves.items()}
    rows = []
    for j, (layer, method) in enumerate(keys):
        for i, (b, k) in enumerate(checked.tolist()):
            m = j * n + i
            rows.append({"image_id": batch.samples[b].image_id, "class_id": k, "class_name": model.class_names[k],
                         "method": method, "layer": layer,
                         "target": TARGET_NAMES[int(cams.target_source[b, k])], "pixels": int(counts[m]),
                         "target_score": values["base"][m], "deletion_auc": values["deletion_score"][m],
                         "insertion_auc": values["insertion_score"][m], "faithfulness": values["faithfulness"][m]})
    return rows


def faithfulness_rows(batch: PreparedBatch, cams: CamResult, model: LoadedModel, config: AuditConfig) -> BatchRows:
    """Rows of the ``faithfulness`` table for the checked images of an explained batch (module docstring).

    Parameters
    ----------
    batch : PreparedBatch
        The model's input and labels.
    cams : CamResult
        What the engine computed for the batch (its maps, predictions and target codes).
    model : LoadedModel
        The audited model (a segmentation model or a classifier).
    config : AuditConfig
        ``evidence`` and ``evidence_share`` pick the images; ``roi`` is the target box of ``target="roi"``.

    Returns
    -------
    BatchRows
        ``faithfulness``: one row per (checked image, explained class, method, layer), in the order of
        ``cams.maps`` then the pairs; or, if the stage failed for this batch, ``errors``: one row per checked
        image (stage ``"faithfulness"``) with the reason.
    """
    checked = _checked_pairs(batch, cams, config)
    if len(checked) == 0 or not cams.maps:
        return BatchRows()
    try:
        with torch.no_grad():
            return BatchRows(faithfulness=curve_rows(batch, cams, model, config, checked))
    except Exception as exc:  # noqa: BLE001 (an audit never crashes on one stage: the reason is recorded)
        reason = f"deletion/insertion curves failed: {type(exc).__name__}: {exc}".splitlines()[0][:500]
        failed = sorted({int(b) for b in checked[:, 0].tolist()})
        return BatchRows(errors=[{"image_id": batch.samples[b].image_id, "file_name": batch.samples[b].file_name,
                                  "stage": FAITHFULNESS_STAGE, "reason": reason} for b in failed])
