"""The audit of one batch, as pure functions the Prefect tasks wrap: explain, score, and finish a run.

``explain_batch``  samples -> model input, predictions and CAMs (isolating images that fail)
``score_batch``    CAMs + masks -> rows of the images, scores, maps and thumbnails tables
``finish_tables``  all batches' rows -> DataFrames, with the per-image review rank
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from segaudit.cam import (
    ALL_METHODS,
    METHODS,
    SCORE_KINDS,
    TARGET_KINDS,
    TARGET_NONE,
    CamResult,
    compute_cams,
    upsample_maps,
)
from segaudit.classmap import ClassMap
from segaudit.models import LoadedModel
from segaudit.preprocess import PreparedBatch, prepare_batch
from segaudit.sample import IGNORE, ErrorRow, Sample
from segaudit.scores import (
    CENTROID_CUTOFF,
    agreement_consistency,
    auroc,
    background_point,
    confusion_counts,
    energy_in_mask,
    iou_and_dice_at,
    max_point,
    point_hit_and_distance,
    pointing_game,
    relevance_rank_accuracy,
    segmentation_dice,
    segmentation_iou,
    weighted_centroid,
)
from segaudit.tables import SCHEMAS

__all__ = ["AuditConfig", "BatchRows", "explain_batch", "score_batch", "image_consistency_of", "check_config", "finish_tables"]


@dataclass(frozen=True)
class AuditConfig:
    """Settings of an audit that change its numbers (all recorded in the run's metadata).

    Parameters
    ----------
    methods : tuple of str
        CAM methods, from :data:`segaudit.cam.ALL_METHODS`.
    layers : tuple of str
        Feature layers; empty = the model's default. The first is the primary layer: image consistency
        and review ranks use its maps; the others are a layer sweep (rows in the scores table).
    target : str
        Seg-Grad-CAM target kind (:data:`segaudit.cam.TARGET_KINDS`).
    score : str
        ``"logits"`` or ``"softmax"``.
    roi : tuple of float or None
        ``(top, left, bottom, right)`` fractions of the input, for ``target="roi"``.
    score_cam_channels : int or None
        Score-CAM channel budget (None: every channel).
    amp : bool
        Mixed-precision forward (see :func:`segaudit.cam.compute_cams`; not advised with Grad-CAM++).
    batch_size : int
        Images per batch (one forward pass).
    iou_threshold : float
        Threshold of the normalised map for ``iou_at_0_5``.
    centroid_cutoff : float
        Weighted-centroid cutoff (share of the map's max).
    thumbnail_size : int
        Longest side of the pictures stored for the report.
    """

    methods: tuple[str, ...] = METHODS
    layers: tuple[str, ...] = ()
    target: str = "pred"
    score: str = "logits"
    roi: tuple[float, float, float, float] | None = None
    score_cam_channels: int | None = None
    amp: bool = False
    batch_size: int = 16
    iou_threshold: float = 0.5
    centroid_cutoff: float = CENTROID_CUTOFF
    thumbnail_size: int = 256

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def layers_of(self, model: LoadedModel) -> tuple[str, ...]:
        """The layers to use with ``model``."""
        return self.layers or (model.default_layer,)


@dataclass
class Explained:
    """A batch after the model: its input, the CAMs, and the images that could not be processed."""

    batch: PreparedBatch | None
    cams: CamResult | None
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

    def extend(self, other: BatchRows) -> None:
        for name in ("images", "scores", "maps", "thumbnails", "confusion", "errors"):
            getattr(self, name).extend(getattr(other, name))


def _explain(samples: list[Sample], model: LoadedModel, class_map: ClassMap, config: AuditConfig) -> Explained:
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
            raise ValueError(f"layer {layer!r} not in {model.arch}; see segaudit.models.candidate_layers")
    if config.target not in TARGET_KINDS or config.score not in SCORE_KINDS:
        raise ValueError(f"target must be one of {TARGET_KINDS} and score one of {SCORE_KINDS}")
    if config.target == "roi" and config.roi is None:
        raise ValueError("target 'roi' needs roi=(top, left, bottom, right) fractions")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")


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


def _mask_scores(
    maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, config: AuditConfig
) -> dict[str, torch.Tensor]:
    top, top_ok = max_point(maps, valid)
    centre, centre_ok = weighted_centroid(maps, valid, config.centroid_cutoff)
    bottom, bottom_ok = background_point(maps, valid)
    top_hit, top_distance = point_hit_and_distance(top, top_ok, masks, valid)
    centre_hit, centre_distance = point_hit_and_distance(centre, centre_ok, masks, valid)
    bottom_hit, _ = point_hit_and_distance(bottom, bottom_ok, masks, valid)
    iou, dice = iou_and_dice_at(maps, masks, valid, (config.iou_threshold,))
    return {
        "mask_pixels": (masks & valid).flatten(1).sum(1),
        "energy_in_mask": energy_in_mask(maps, masks, valid),
        "pointing_hit": pointing_game(maps, masks, valid),
        "relevance_rank": relevance_rank_accuracy(maps, masks, valid),
        "auroc": auroc(maps, masks, valid),
        "iou_at_0_5": iou[:, 0],
        "dice_at_0_5": dice[:, 0],
        "max_point_hit": top_hit,
        "max_point_distance": top_distance,
        "centroid_hit": centre_hit,
        "centroid_distance": centre_distance,
        "background_point_hit": bottom_hit,
    }


def score_batch(explained: Explained, model: LoadedModel, config: AuditConfig) -> BatchRows:
    """Score every (image, class, method) of an explained batch against the GT and predicted masks.

    Returns the rows of the images (without ``review_rank``, set by :func:`finish_tables`), scores, maps,
    thumbnails and errors tables.
    """
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
    consistency_sum = torch.zeros(len(pairs), dtype=torch.float64)
    consistency_count = 0
    pair_list = pairs.tolist()
    targets = [CamResult.target_name(cams.target_source[b, k]) for b, k in pair_list]
    for layer, method in cams.maps:
        raw = cams.maps[(layer, method)][b_idx, k_idx]
        full = upsample_maps(raw, tuple(size))
        per_mask = {
            "gt": _mask_scores(full, gt_masks, valid, config),
            "pred": _mask_scores(full, pred_masks, valid, config),
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
                  "consistency": consistency.tolist()}
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
    confusion = confusion_counts(cams.pred, gt_all, len(names)).cpu()
    for b, i, j in torch.nonzero(confusion).tolist():
        rows.confusion.append({"image_id": batch.samples[b].image_id, "gt_class_id": i, "pred_class_id": j,
                               "pixels": int(confusion[b, i, j])})
    labelled = confusion.flatten(1).sum(1).double()
    accuracy = torch.where(labelled > 0, confusion.diagonal(dim1=1, dim2=2).sum(1) / labelled.clamp(min=1),
                           torch.full_like(labelled, float("nan"))).tolist()
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
                "review_rank": 0,
                "worst_class_id": worst,
            }
        )
    rows.thumbnails = _thumbnail_rows(batch, cams.pred, config.thumbnail_size)
    return rows


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


def finish_tables(rows: BatchRows) -> dict[str, pd.DataFrame]:
    """DataFrames of all tables (except ``run``) in dataset order, with ``review_rank`` set:
    1 = the least consistent image (ties broken by dataset order)."""
    frames = {name: pd.DataFrame(getattr(rows, name), columns=SCHEMAS[name].names) for name in SCHEMAS if name != "run"}
    images = frames["images"]
    order = np.lexsort((np.arange(len(images)), images["consistency"].to_numpy(dtype=float)))
    ranks = np.empty(len(images), dtype=np.int64)
    ranks[order] = np.arange(1, len(images) + 1)
    images["review_rank"] = ranks
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
