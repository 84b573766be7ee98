"""The audit of one batch, as pure functions the Prefect tasks wrap: explain, score, and finish a run.

``explain_batch``  samples -> model input, predictions and CAMs (isolating images that fail)
``score_batch``    CAMs + masks -> rows of the images, scores, maps and thumbnails tables
``finish_tables``  all batches' rows -> DataFrames, with the per-image review rank
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from segaudit.cam import (
    ALL_METHODS,
    SCORE_KINDS,
    TARGET_KINDS,
    TARGET_NONE,
    CamResult,
    compute_cams,
    upsample_maps,
)
from segaudit.cam.detection import DETECTION_METHODS, DetectionCams, compute_detection_cams
from segaudit.data.classmap import ClassMap
from segaudit.data.preprocess import PreparedBatch, letterbox_labels, prepare_batch
from segaudit.data.sample import IGNORE, ErrorRow, Sample
from segaudit.findings.ranking import rank_and_find
from segaudit.findings.rules import FindingRules
from segaudit.metrics.instances import instance_scores
from segaudit.metrics.label_quality import pixel_label_quality, softmin_pool
from segaudit.metrics.prompting import (
    GrabCutSegmenter,
    SamSegmenter,
    Segmenter,
    inside_from_boxes,
    prompt_rows,
)
from segaudit.metrics.scores import (
    agreement_consistency,
    confusion_counts,
    mask_scores,
    segmentation_dice,
    segmentation_iou,
)
from segaudit.models.registry import LoadedModel
from segaudit.runs.tables import SCHEMAS
from segaudit.settings import AuditConfig

__all__ = ["AuditConfig", "BatchRows", "explain_batch", "score_batch", "image_consistency_of", "check_config", "finish_tables"]


@dataclass
class Explained:
    """A batch after the model: its input, the CAMs, and the images that could not be processed."""

    batch: PreparedBatch | None
    cams: CamResult | DetectionCams | None
    errors: list[ErrorRow] = field(default_factory=list)


@dataclass
class BatchRows:
    """Table rows produced by one batch (lists of dicts keyed by the tables' columns)."""

    images: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    maps: list[dict[str, Any]] = field(default_factory=list)
    thumbnails: list[dict[str, Any]] = field(default_factory=list)
    confusion: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    instances: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    fixations: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: BatchRows) -> None:
        for name in ("images", "scores", "maps", "thumbnails", "confusion", "errors", "instances", "prompts",
                     "fixations"):
            getattr(self, name).extend(getattr(other, name))


def _explain(samples: list[Sample], model: LoadedModel, class_map: ClassMap, config: AuditConfig) -> Explained:
    if model.task == "detection":
        return _explain_detections(samples, model, class_map, config)
    batch = prepare_batch(samples, class_map, model.input_size, model.mean, model.std)
    gt = batch.gt.to(model.device)
    cams = compute_cams(
        model.module, batch.images.to(model.device), config.layers_of(model), gt, config.methods,
        target=config.target, score=config.score, roi=config.roi, score_cam_channels=config.score_cam_channels,
        amp=config.amp,
    )
    return Explained(batch, cams)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def explain_batch(
    samples: list[Sample],
    model: LoadedModel,
    class_map: ClassMap,
    config: AuditConfig,
    read_errors: list[ErrorRow] | tuple[ErrorRow, ...] = (),
) -> Explained:
    """Run the model and the CAM methods on a batch.

    ``read_errors`` (the batch's rows from reading) are carried along into the result's errors.

    If the batch fails as a whole (an image the model cannot take), each image is retried alone; those that
    still fail become error rows (stage ``"infer"``) and the others are processed. Configuration mistakes
    (unknown layer or method, see :func:`check_config`) are not data problems and raise.
    """
    explained = _explain_isolating_failures(samples, model, class_map, config)
    explained.errors = [*read_errors, *explained.errors]
    return explained


def check_config(model: LoadedModel, config: AuditConfig) -> None:
    """Raise ValueError for settings no data can fix: unknown CAM methods or feature layer."""
    unknown = sorted(set(config.methods) - set(ALL_METHODS))
    if unknown or not config.methods:
        raise ValueError(f"unknown CAM methods {unknown}; available: {', '.join(ALL_METHODS)}")
    modules = dict(model.module.named_modules())
    for layer in config.layers_of(model):
        if layer not in modules:
            raise ValueError(f"layer {layer!r} not in {model.arch}; see segaudit.models.registry.candidate_layers")
    if config.target not in TARGET_KINDS or config.score not in SCORE_KINDS:
        raise ValueError(f"target must be one of {TARGET_KINDS} and score one of {SCORE_KINDS}")
    if config.target == "roi" and config.roi is None:
        raise ValueError("target 'roi' needs roi=(top, left, bottom, right) fractions")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    if "fixations" in config.methods:
        from segaudit.cam.fixations import UnsupportedModel, sequential_layers

        if model.task != "segmentation":
            raise ValueError("method fixations traces segmentation models only")
        try:
            sequential_layers(model.module)
        except UnsupportedModel as exc:
            raise ValueError(f"method fixations cannot run on {model.arch}: {exc} (try --model demo-fcn)") from None
    if config.prompts not in (None, "grabcut", "sam"):
        raise ValueError(f"prompts must be 'grabcut' or 'sam', got {config.prompts!r}")
    if config.prompts == "sam" and not config.sam_checkpoint:
        raise ValueError("prompts 'sam' needs sam_checkpoint (a Segment Anything .pth file)")
    if model.task == "detection":
        _check_detection_config(config)
    if model.task == "classification" and config.target == "roi":
        raise ValueError("a classifier scores whole images: target 'roi' does not apply (use pred, gt or all)")


def _explain_isolating_failures(
    samples: list[Sample], model: LoadedModel, class_map: ClassMap, config: AuditConfig
) -> Explained:
    check_config(model, config)
    if not samples:
        return Explained(None, None)
    try:
        return _explain(samples, model, class_map, config)
    except Exception as exc:  # noqa: BLE001 - retried image by image below
        first_error: BaseException = exc
    good, errors = [], []
    for sample in samples:
        try:
            _explain([sample], model, class_map, config)
            good.append(sample)
        except Exception as exc:  # noqa: BLE001 - any failure of one image becomes its error row
            errors.append(ErrorRow(sample.image_id, sample.file_name, "infer", _reason(exc)))
    if not good:
        if not errors:
            raise first_error
        return Explained(None, None, errors)
    explained = _explain(good, model, class_map, config)
    explained.errors = errors
    return explained


def _png(labels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(labels.astype(np.uint8), mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _thumbnail_rows(batch: PreparedBatch, pred: torch.Tensor, size: int) -> list[dict[str, Any]]:
    rows = []
    side = batch.views.shape[1]
    thumb = min(size, side)
    for b, sample in enumerate(batch.samples):
        box = batch.boxes[b]
        inside = np.zeros((side, side), dtype=bool)
        inside[box.top : box.top + box.new_height, box.left : box.left + box.new_width] = True
        shown_pred = np.where(inside, pred[b].cpu().numpy(), IGNORE).astype(np.uint8)
        gt = batch.gt[b].cpu().numpy().astype(np.uint8)
        view = batch.views[b]
        if thumb != side:
            view = np.asarray(Image.fromarray(view).resize((thumb, thumb), Image.BILINEAR))
            gt = np.asarray(Image.fromarray(gt).resize((thumb, thumb), Image.NEAREST))
            shown_pred = np.asarray(Image.fromarray(shown_pred).resize((thumb, thumb), Image.NEAREST))
        rows.append(
            {"image_id": sample.image_id, "image_jpeg": _jpeg(view), "gt_png": _png(gt), "pred_png": _png(shown_pred)}
        )
    return rows


@dataclass
class _PairInstances:
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


def _pair_instances(batch: PreparedBatch, pair_list: list[list[int]], device: torch.device) -> _PairInstances:
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
    return _PairInstances(stacked.to(device), torch.tensor(owner, dtype=torch.long, device=device), index, annotation)


def _instance_rows(
    found: _PairInstances, maps: torch.Tensor, valid: torch.Tensor, pair_list: list[list[int]],
    batch: PreparedBatch, names: list[str], targets: list[str], layer: str, method: str,
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


def _first_method(config: AuditConfig, cams: CamResult) -> str | None:
    """The first requested method with maps at the primary layer."""
    return next((m for m in config.methods if (cams.layers[0], m) in cams.maps), None)


@functools.lru_cache(maxsize=2)
def _segmenter(kind: str, checkpoint: str | None, model_type: str, device: str) -> Segmenter:
    """The promptable segmenter of an audit, built once per process (SAM loads a large checkpoint)."""
    if kind == "grabcut":
        return GrabCutSegmenter()
    if kind == "sam":
        return SamSegmenter(checkpoint, model_type, device=device)
    raise ValueError(f"prompts must be 'grabcut' or 'sam', got {kind!r}")


def _add_prompt_rows(
    rows: BatchRows, batch: PreparedBatch, maps: torch.Tensor, pairs: torch.Tensor, gt_masks: torch.Tensor,
    valid: torch.Tensor, layer: str, method: str, config: AuditConfig,
) -> None:
    segmenter = _segmenter(config.prompts, config.sam_checkpoint, config.sam_model_type, str(maps.device))
    found = prompt_rows(
        batch.views, maps.cpu(), pairs.cpu(), gt_masks.cpu(), valid.cpu(),
        image_ids=[s.image_id for s in batch.samples], method=method, layer=layer, segmenter=segmenter,
        cutoff=config.centroid_cutoff, inside=inside_from_boxes(batch.boxes),
        file_names=[s.file_name for s in batch.samples],
    )
    rows.prompts.extend(found.prompts)
    rows.errors.extend(found.errors)


def score_batch(explained: Explained, model: LoadedModel, config: AuditConfig) -> BatchRows:
    """Score every (image, class, method) of an explained batch against the GT and predicted masks.

    Returns the rows of the images (without ``review_rank``, set by :func:`finish_tables`), scores, maps,
    thumbnails and errors tables.
    """
    if model.task == "detection":
        return _score_detection_batch(explained, model, config)
    if model.task == "classification":
        return _score_classifier_batch(explained, model, config)
    rows = BatchRows(errors=[asdict(e) for e in explained.errors])
    batch, cams = explained.batch, explained.cams
    if batch is None or cams is None:
        return rows
    names = model.class_names
    # image consistency averages the maps of the primary layer (all maps if none is there, e.g. only
    # guided backprop, whose maps live at the input)
    primary = {key for key in cams.maps if key[0] == cams.layers[0]} or set(cams.maps)
    size = batch.images.shape[-2:]
    valid_all = batch.valid.to(cams.pred.device)
    gt_all = batch.gt.to(cams.pred.device)
    pairs = torch.nonzero(cams.target_source != TARGET_NONE)
    b_idx, k_idx = pairs[:, 0], pairs[:, 1]
    valid = valid_all[b_idx]
    gt_masks = gt_all[b_idx] == k_idx[:, None, None]
    pred_masks = cams.pred[b_idx] == k_idx[:, None, None]
    seg_iou = segmentation_iou(pred_masks, gt_masks, valid)
    seg_dice = segmentation_dice(pred_masks, gt_masks, valid)
    pixel_quality = pixel_label_quality(cams.logits, gt_all)  # (B, S, S), NaN on void
    pair_quality = softmin_pool(pixel_quality[b_idx], gt_masks | pred_masks).tolist()
    image_quality = softmin_pool(pixel_quality).tolist()
    consistency_sum = torch.zeros(len(pairs), dtype=torch.float64)
    consistency_count = 0
    pair_list = pairs.tolist()
    targets = [CamResult.target_name(cams.target_source[b, k]) for b, k in pair_list]
    labelled = _pair_instances(batch, pair_list, cams.pred.device)  # for the instances table
    prompted = (cams.layers[0], _first_method(config, cams)) if config.prompts else None  # the map prompted
    for layer, method in cams.maps:
        raw = cams.maps[(layer, method)][b_idx, k_idx]
        full = upsample_maps(raw, tuple(size))
        rows.instances.extend(
            _instance_rows(labelled, full, valid, pair_list, batch, names, targets, layer, method)
        )
        if (layer, method) == prompted:
            _add_prompt_rows(rows, batch, full, pairs, gt_masks, valid, layer, method, config)
        per_mask = {
            "gt": mask_scores(full, gt_masks, valid, config.iou_threshold, config.centroid_cutoff),
            "pred": mask_scores(full, pred_masks, valid, config.iou_threshold, config.centroid_cutoff),
        }
        consistency = agreement_consistency(
            seg_iou, per_mask["gt"]["energy_in_mask"], per_mask["pred"]["energy_in_mask"]
        )
        if (layer, method) in primary:
            consistency_sum += consistency
            consistency_count += 1
        cam_max = raw.flatten(1).max(1).values.double()
        columns = {mask: {k: v.tolist() for k, v in scores.items()} for mask, scores in per_mask.items()}
        common = {"seg_iou": seg_iou.tolist(), "seg_dice": seg_dice.tolist(), "cam_max": cam_max.tolist(),
                  "consistency": consistency.tolist(), "label_quality": pair_quality}
        for i, (b, k) in enumerate(pair_list):
            image_id = batch.samples[b].image_id
            for mask, values in columns.items():
                rows.scores.append(
                    {
                        "image_id": image_id,
                        "class_id": k,
                        "class_name": names[k],
                        "method": method,
                        "layer": layer,
                        "target": targets[i],
                        "mask": mask,
                        **{col: values[col][i] for col in values},
                        **{col: common[col][i] for col in common},
                    }
                )
            rows.maps.append(
                {
                    "image_id": image_id,
                    "class_id": k,
                    "method": method,
                    "layer": layer,
                    "target": targets[i],
                    "height": raw.shape[-2],
                    "width": raw.shape[-1],
                    "values": raw[i].float().flatten().cpu().numpy(),
                }
            )
    per_pair = (consistency_sum / max(consistency_count, 1)).numpy()
    accuracy = _add_confusion_rows(rows, batch, cams.pred, gt_all, len(names))
    extent = ((gt_masks | pred_masks) & valid).flatten(1).sum(1).double().numpy()
    for b, sample in enumerate(batch.samples):
        mine = (b_idx == b).numpy()
        image_consistency, worst = image_consistency_of(per_pair[mine], extent[mine], k_idx.numpy()[mine])
        gt_present = torch.unique(gt_all[b]).tolist()
        pred_present = torch.unique(cams.pred[b][valid_all[b]]).tolist()
        rows.images.append(
            {
                "image_id": sample.image_id,
                "file_name": sample.file_name,
                "width": int(sample.image.shape[1]),
                "height": int(sample.image.shape[0]),
                "n_instances": sum(1 for inst in sample.instances if not inst.iscrowd),
                "gt_classes": [names[c] for c in gt_present if 0 < c < len(names)],
                "pred_classes": [names[c] for c in pred_present if 0 < c < len(names)],
                "pixel_accuracy": accuracy[b],
                "consistency": image_consistency,
                "label_quality": image_quality[b],
                "suspicion": float("nan"),  # set by finish_tables
                "review_rank": 0,
                "worst_class_id": worst,
                "unknown_classes": list(batch.unknown_classes[b]) if batch.unknown_classes else [],
                "unknown_pixels": list(batch.unknown_classes[b].values()) if batch.unknown_classes else [],
            }
        )
    rows.thumbnails = _thumbnail_rows(batch, cams.pred, config.thumbnail_size)
    rows.fixations = _fixation_rows(batch, cams)
    return rows


def _add_confusion_rows(
    rows: BatchRows, batch: PreparedBatch, pred: torch.Tensor, gt: torch.Tensor, num_classes: int
) -> list[float]:
    """Append the batch's confusion rows (non-zero cells) and return each image's pixel accuracy (NaN with
    nothing labelled)."""
    confusion = confusion_counts(pred, gt, num_classes).cpu()
    for b, i, j in torch.nonzero(confusion).tolist():
        rows.confusion.append({"image_id": batch.samples[b].image_id, "gt_class_id": i, "pred_class_id": j,
                               "pixels": int(confusion[b, i, j])})
    labelled = confusion.flatten(1).sum(1).double()
    return torch.where(labelled > 0, confusion.diagonal(dim1=1, dim2=2).sum(1) / labelled.clamp(min=1),
                       torch.full_like(labelled, float("nan"))).tolist()


def _fixation_rows(batch: PreparedBatch, cams: CamResult) -> list[dict[str, Any]]:
    """Rows of the fixations table: each CNN-Fixations point with its weight (none without the method)."""
    if cams.fixation_points is None:
        return []
    points = cams.fixation_points.tolist()
    weights = cams.fixation_weights.tolist()
    return [{"image_id": batch.samples[b].image_id, "class_id": k, "y": y, "x": x, "weight": w}
            for (b, k, y, x), w in zip(points, weights, strict=True)]


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


def finish_tables(
    rows: BatchRows,
    rules: FindingRules | None = None,
    methods: Sequence[str] = (),
    layers: Sequence[str] = (),
) -> dict[str, pd.DataFrame]:
    """DataFrames of all tables (except ``run``) in dataset order, with the findings
    (:func:`segaudit.findings.rules.find`), each image's ``suspicion`` and its ``review_rank``: 1 = the most
    suspicious image (ties broken by dataset order).

    ``rules`` are the findings' thresholds (default :class:`FindingRules`); ``methods`` and ``layers`` the
    run's, in order, to pick the map findings are decided on.
    """
    frames = {name: pd.DataFrame(getattr(rows, name), columns=SCHEMAS[name].names)
              for name in SCHEMAS if name not in ("run", "findings")}
    frames["images"], frames["findings"] = rank_and_find(frames["images"], frames["scores"], frames["instances"],
                                                         rules, methods, layers)
    return frames


def versions() -> dict[str, str]:
    """Versions of the libraries that change an audit's numbers."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("segaudit", "torch", "torchvision", "numpy", "pandas", "pyarrow", "pycocotools", "prefect", "pillow"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def config_json(config: AuditConfig, **extra: Any) -> str:
    """The run's full configuration as canonical JSON."""
    return json.dumps({**config.to_json(), **extra}, sort_keys=True, default=str)


# --------------------------------------------------------------------------------------------------
# detection models (``model.task == "detection"``): one map per detection (segaudit.cam.detection)


def _check_detection_config(config: AuditConfig) -> None:
    """Settings a detector cannot honour: methods beyond :data:`DETECTION_METHODS`, pixel-set targets, amp."""
    unsupported = sorted(set(config.methods) - set(DETECTION_METHODS))
    if unsupported:
        raise ValueError(f"methods {unsupported} are not available for detection models; use "
                         f"{', '.join(DETECTION_METHODS)}")
    if config.target != "pred":
        raise ValueError(f"detection models explain each detection's class score; target {config.target!r} does "
                         "not apply (use the default, 'pred')")
    if config.amp:
        raise ValueError("amp is not supported for detection models")


def _explain_detections(
    samples: list[Sample], model: LoadedModel, class_map: ClassMap, config: AuditConfig
) -> Explained:
    batch = prepare_batch(samples, class_map, model.input_size, model.mean, model.std)
    cams = compute_detection_cams(model.module, batch.images.to(model.device), config.layers_of(model), config.methods)
    return Explained(batch, cams)


def _detection_references(
    det: DetectionCams, batch: PreparedBatch, gt_masks: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """What each detection is compared with, and the labelled instances no detection found.

    Returns ``matched`` ``(N, S, S)`` bool: per detection, the labelled instance of its class in its image
    its mask overlaps most (IoU; the first on ties), or its class's GT mask where the image has no instance
    annotation of that class (e.g. VOC without SegmentationObject); and ``missed``: ``(image, class,
    valid pixels)`` of every labelled instance that no detection of its class overlaps with IoU >= 0.5
    (the COCO matching threshold).
    """
    matched = gt_masks.clone()
    found: dict[tuple[int, int], float] = {}
    for n, (b, cls) in enumerate(zip(det.image.tolist(), det.labels.tolist(), strict=True)):
        mine = [(i, mask.to(valid.device)) for i, (c, mask) in enumerate(batch.instances[b]) if c == cls]
        if not mine:
            continue
        stacked = torch.stack([mask for _, mask in mine])
        ious = torch.nan_to_num(segmentation_iou(det.masks[n].expand_as(stacked), stacked,
                                                 valid[n].expand_as(stacked)), nan=0.0)
        best = int(ious.argmax())
        matched[n] = stacked[best]
        for (i, _), iou in zip(mine, ious.tolist(), strict=True):
            found[(b, i)] = max(found.get((b, i), 0.0), iou)
    missed = []
    for b, instances in enumerate(batch.instances):
        inside = batch.valid[b].to(valid.device)
        for i, (cls, mask) in enumerate(instances):
            pixels = int((mask.to(valid.device) & inside).sum())
            if pixels and found.get((b, i), 0.0) < 0.5:
                missed.append((b, cls, pixels))
    return matched, missed


def _score_detection_batch(explained: Explained, model: LoadedModel, config: AuditConfig) -> BatchRows:
    """Score every detection's maps against the GT mask of its class (``mask="gt"``) and its own predicted
    instance mask (``mask="pred"``).

    ``seg_iou``/``seg_dice`` compare the detection's mask with its matched labelled instance
    (:func:`_detection_references`); a detection's consistency is :func:`agreement_consistency` of that
    IoU and its map's energies, averaged over the primary layer's methods. An image's consistency is
    :func:`image_consistency_of` over its detections (extent: mask or matched instance) and its missed
    instances (consistency 0, extent: their pixels). The semantic prediction painted from the detections
    (:func:`segaudit.cam.detection.paint_semantic`) gives the confusion table, pixel accuracy and thumbnails.
    ``label_quality`` needs per-pixel class probabilities, which a detector does not give: NaN.
    """
    rows = BatchRows(errors=[asdict(e) for e in explained.errors])
    batch, det = explained.batch, explained.cams
    if batch is None or det is None:
        return rows
    names = model.class_names
    device = det.pred.device
    size = tuple(batch.images.shape[-2:])
    valid_all, gt_all = batch.valid.to(device), batch.gt.to(device)
    b_idx, k_idx = det.image, det.labels
    valid = valid_all[b_idx]
    gt_masks = gt_all[b_idx] == k_idx[:, None, None]
    matched, missed = _detection_references(det, batch, gt_masks, valid)
    seg_iou = segmentation_iou(det.masks, matched, valid)
    seg_dice = segmentation_dice(det.masks, matched, valid)
    primary = {key for key in det.maps if key[0] == det.layers[0]} or set(det.maps)
    consistency_sum = torch.zeros(len(det), dtype=torch.float64)
    nan = float("nan")
    for layer, method in det.maps:
        raw = det.maps[(layer, method)]
        full = upsample_maps(raw, size)
        per_mask = {"gt": mask_scores(full, gt_masks, valid, config.iou_threshold, config.centroid_cutoff),
                    "pred": mask_scores(full, det.masks, valid, config.iou_threshold, config.centroid_cutoff)}
        consistency = agreement_consistency(seg_iou, per_mask["gt"]["energy_in_mask"],
                                            per_mask["pred"]["energy_in_mask"])
        if (layer, method) in primary:
            consistency_sum += consistency.cpu()
        columns = {mask: {k: v.tolist() for k, v in scores.items()} for mask, scores in per_mask.items()}
        common = {"seg_iou": seg_iou.tolist(), "seg_dice": seg_dice.tolist(),
                  "cam_max": raw.flatten(1).max(1).values.double().tolist() if len(det) else [],
                  "consistency": consistency.tolist()}
        for n, (b, k, d) in enumerate(zip(b_idx.tolist(), k_idx.tolist(), det.index.tolist(), strict=True)):
            image_id = batch.samples[b].image_id
            key = {"image_id": image_id, "class_id": k, "class_name": names[k], "method": method, "layer": layer,
                   "target": det.target, "detection": d}
            for mask, values in columns.items():
                rows.scores.append({**key, "mask": mask, **{col: values[col][n] for col in values},
                                    **{col: common[col][n] for col in common}, "label_quality": nan})
            rows.maps.append({**{c: key[c] for c in ("image_id", "class_id", "method", "layer", "target")},
                              "detection": d, "height": raw.shape[-2], "width": raw.shape[-1],
                              "values": raw[n].float().flatten().cpu().numpy()})
    per_detection = (consistency_sum / max(len(primary), 1)).numpy()
    extent = ((det.masks | matched) & valid).flatten(1).sum(1).double().cpu().numpy()
    accuracy = _add_confusion_rows(rows, batch, det.pred, gt_all, len(names))
    images_of = b_idx.cpu().numpy()
    for b, sample in enumerate(batch.samples):
        lost = [(cls, pixels) for image, cls, pixels in missed if image == b]
        image_consistency, worst = image_consistency_of(
            np.concatenate([per_detection[images_of == b], np.zeros(len(lost))]),
            np.concatenate([extent[images_of == b], [float(p) for _, p in lost]]),
            np.concatenate([k_idx.cpu().numpy()[images_of == b], [c for c, _ in lost]]).astype(np.int64),
        )
        gt_present = torch.unique(gt_all[b]).tolist()
        pred_present = torch.unique(det.pred[b][valid_all[b]]).tolist()
        unknown = batch.unknown_classes[b] if batch.unknown_classes else {}
        rows.images.append({
            "image_id": sample.image_id, "file_name": sample.file_name, "width": int(sample.image.shape[1]),
            "height": int(sample.image.shape[0]), "n_instances": sum(1 for inst in sample.instances if not inst.iscrowd),
            "gt_classes": [names[c] for c in gt_present if 0 < c < len(names)],
            "pred_classes": [names[c] for c in pred_present if 0 < c < len(names)],
            "pixel_accuracy": accuracy[b], "consistency": image_consistency, "label_quality": nan,
            "suspicion": nan, "review_rank": 0, "worst_class_id": worst,
            "unknown_classes": list(unknown), "unknown_pixels": list(unknown.values()),
        })
    rows.thumbnails = _thumbnail_rows(batch, det.pred, config.thumbnail_size)
    return rows


# --------------------------------------------------------------------------------------------------
# classifiers (``model.task == "classification"``): per-image class scores, no predicted mask


def _classifier_consistency(
    probability: torch.Tensor, labelled: torch.Tensor, energy_in_gt: torch.Tensor
) -> torch.Tensor:
    """Agreement of a classifier with the labels, per explained (image, class)::

        C_c = p_c * E_c      if c is labelled in the image
        C_c = 1 - p_c        if c is only predicted (no labelled pixel, p_c > 1/2)

    with ``p_c = sigmoid(s_c)`` the model's presence probability and ``E_c`` the share of the map's
    positive mass inside the GT mask (:func:`energy_in_mask`; 0 for a map without positive mass). High when
    the model finds the labelled class *and* its evidence lies on the labelled object; low for a label the
    model does not see (swapped class, spurious annotation), for evidence outside the label (shifted mask,
    context), and for a class the model sees that nobody labelled (deleted annotation).

    Parameters
    ----------
    probability, energy_in_gt : torch.Tensor
        ``(N,)`` float.
    labelled : torch.Tensor
        ``(N,)`` bool.
    """
    energy = torch.nan_to_num(energy_in_gt.double(), nan=0.0)
    return torch.where(labelled, probability.double() * energy, 1.0 - probability.double())


def _score_classifier_batch(explained: Explained, model: LoadedModel, config: AuditConfig) -> BatchRows:
    """Score every (image, class, method) of a classifier's batch against the GT mask only.

    A classifier predicts which classes an image holds, not where: scores rows have ``mask="gt"`` only
    (a class the model predicts but nobody labelled has an empty GT mask, so NaN localisation metrics),
    ``seg_iou``/``seg_dice`` and ``label_quality`` are NaN, the images table's ``pred_classes`` are the
    classes predicted present and ``pixel_accuracy`` is NaN, there are no confusion rows, and the
    thumbnails' prediction picture is empty. Consistency: :func:`_classifier_consistency`, averaged over
    the primary layer's methods; an image's is the unweighted mean over its explained classes (a class
    has no pixel extent in a classifier's eyes), its worst class the least consistent one.
    """
    rows = BatchRows(errors=[asdict(e) for e in explained.errors])
    batch, cams = explained.batch, explained.cams
    if batch is None or cams is None:
        return rows
    names = model.class_names
    nan = float("nan")
    primary = {key for key in cams.maps if key[0] == cams.layers[0]} or set(cams.maps)
    size = tuple(batch.images.shape[-2:])
    device = cams.logits.device
    valid_all, gt_all = batch.valid.to(device), batch.gt.to(device)
    pairs = torch.nonzero(cams.target_source != TARGET_NONE)
    b_idx, k_idx = pairs[:, 0], pairs[:, 1]
    valid = valid_all[b_idx]
    gt_masks = gt_all[b_idx] == k_idx[:, None, None]
    labelled = (gt_masks & valid).flatten(1).any(1)
    probability = cams.logits[b_idx, k_idx].sigmoid()
    pair_list = pairs.tolist()
    targets = [CamResult.target_name(cams.target_source[b, k]) for b, k in pair_list]
    instances = _pair_instances(batch, pair_list, device)
    consistency_sum = torch.zeros(len(pairs), dtype=torch.float64)
    for layer, method in cams.maps:
        raw = cams.maps[(layer, method)][b_idx, k_idx]
        full = upsample_maps(raw, size)
        rows.instances.extend(_instance_rows(instances, full, valid, pair_list, batch, names, targets, layer, method))
        scores = mask_scores(full, gt_masks, valid, config.iou_threshold, config.centroid_cutoff)
        consistency = _classifier_consistency(probability, labelled, scores["energy_in_mask"]).cpu()
        if (layer, method) in primary:
            consistency_sum += consistency
        values = {k: v.tolist() for k, v in scores.items()}
        cam_max = raw.flatten(1).max(1).values.double().tolist() if len(pairs) else []
        for i, (b, k) in enumerate(pair_list):
            key = {"image_id": batch.samples[b].image_id, "class_id": k, "method": method, "layer": layer,
                   "target": targets[i]}
            rows.scores.append({**key, "class_name": names[k], "mask": "gt", **{col: values[col][i] for col in values},
                                "seg_iou": nan, "seg_dice": nan, "cam_max": cam_max[i],
                                "consistency": float(consistency[i]), "label_quality": nan})
            rows.maps.append({**key, "height": raw.shape[-2], "width": raw.shape[-1],
                              "values": raw[i].float().flatten().cpu().numpy()})
    per_pair = (consistency_sum / max(len(primary), 1)).numpy()
    images_of, class_ids = b_idx.cpu().numpy(), k_idx.cpu().numpy()
    for b, sample in enumerate(batch.samples):
        mine = images_of == b
        image_consistency, worst = image_consistency_of(per_pair[mine], np.ones(int(mine.sum())), class_ids[mine])
        unknown = batch.unknown_classes[b] if getattr(batch, "unknown_classes", None) else {}
        rows.images.append({
            "image_id": sample.image_id, "file_name": sample.file_name, "width": int(sample.image.shape[1]),
            "height": int(sample.image.shape[0]), "n_instances": sum(1 for inst in sample.instances if not inst.iscrowd),
            "gt_classes": [names[c] for c in torch.unique(gt_all[b]).tolist() if 0 < c < len(names)],
            "pred_classes": [names[c] for c in torch.nonzero(cams.pred[b]).flatten().tolist() if c > 0],
            "pixel_accuracy": nan, "consistency": image_consistency, "label_quality": nan, "suspicion": nan,
            "review_rank": 0, "worst_class_id": worst,
            "unknown_classes": list(unknown), "unknown_pixels": list(unknown.values()),
        })
    no_prediction = torch.full(batch.gt.shape, IGNORE, dtype=torch.uint8)
    rows.thumbnails = [{**row, "pred_png": b""} for row in _thumbnail_rows(batch, no_prediction, config.thumbnail_size)]
    return rows
