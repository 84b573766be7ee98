"""The auditor of detection models (``model.task == "detection"``): one map per detection
(:mod:`segaudit.cam.detection`), scored against the GT mask of its class and its own instance mask."""

from __future__ import annotations

import numpy as np
import torch

from segaudit.auditors.base import Auditor, BatchRows, Explained
from segaudit.auditors.rows import (
    PrimaryConsistency,
    add_confusion_rows,
    add_map_rows,
    cam_max,
    image_consistency_of,
    image_row,
    thumbnail_rows,
)
from segaudit.cam import upsample_maps
from segaudit.cam.detection import DETECTION_METHODS, DetectionCams, compute_detection_cams
from segaudit.data.preprocess import PreparedBatch, prepare_batch
from segaudit.data.sample import Sample
from segaudit.metrics.scores import (
    agreement_consistency,
    confusion_counts,
    score_masks,
    segmentation_dice,
    segmentation_iou,
)
from segaudit.settings import AuditConfig

__all__ = ["AUDITOR", "DetectionAuditor"]


class DetectionAuditor(Auditor):
    """Scores every detection's maps against the GT mask of its class (``mask="gt"``) and its own predicted
    instance mask (``mask="pred"``).

    ``seg_iou``/``seg_dice`` compare the detection's mask with its matched labelled instance
    (:func:`_detection_references`); a detection's consistency is
    :func:`~segaudit.metrics.scores.agreement_consistency` of that IoU and its map's energies, averaged over
    the primary layer's methods. An image's consistency is
    :func:`~segaudit.auditors.rows.image_consistency_of` over its detections (extent: mask or matched
    instance) and its missed instances (consistency 0, extent: their pixels). The semantic prediction
    painted from the detections (:func:`segaudit.cam.detection.paint_semantic`) gives the confusion table,
    pixel accuracy and thumbnails. ``label_quality`` needs per-pixel class probabilities, which a detector
    does not give: NaN.
    """

    @staticmethod
    def check_config(config: AuditConfig) -> None:
        """Settings a detector cannot honour: methods beyond :data:`DETECTION_METHODS`, pixel-set targets, amp."""
        unsupported = sorted(set(config.methods) - set(DETECTION_METHODS))
        if unsupported:
            raise ValueError(f"methods {unsupported} are not available for detection models; use "
                             f"{', '.join(DETECTION_METHODS)}")
        if config.target != "pred":
            raise ValueError(f"detection models explain each detection's class score; target {config.target!r} "
                             "does not apply (use the default, 'pred')")
        if config.amp:
            raise ValueError("amp is not supported for detection models")

    def explain(self, samples: list[Sample]) -> Explained:
        model = self.model
        batch = prepare_batch(samples, self.class_map, model.input_size, model.mean, model.std)
        cams = compute_detection_cams(model.module, batch.images.to(model.device), self.config.layers_of(model),
                                      self.config.methods)
        return Explained(batch, cams)

    def add_rows(self, rows: BatchRows, batch: PreparedBatch, det: DetectionCams) -> None:
        names, config = self.model.class_names, self.config
        device = det.pred.device
        valid_all, gt_all = batch.valid.to(device), batch.gt.to(device)
        b_idx, k_idx = det.image, det.labels
        valid = valid_all[b_idx]
        gt_masks = gt_all[b_idx] == k_idx[:, None, None]
        matched, missed = _detection_references(det, batch, gt_masks, valid)
        seg_iou = segmentation_iou(det.masks, matched, valid)
        seg_dice = segmentation_dice(det.masks, matched, valid)
        mean = PrimaryConsistency(list(det.maps), det.layers[0], len(det))
        keys = [{"image_id": batch.samples[b].image_id, "class_id": k, "target": det.target, "detection": d}
                for b, k, d in zip(b_idx.tolist(), k_idx.tolist(), det.index.tolist(), strict=True)]
        for layer, method in det.maps:
            raw = det.maps[(layer, method)]
            full = upsample_maps(raw, tuple(batch.images.shape[-2:]))
            per_mask = score_masks(full, {"gt": gt_masks, "pred": det.masks}, valid, config.iou_threshold,
                                   config.centroid_cutoff)
            consistency = agreement_consistency(seg_iou, per_mask["gt"]["energy_in_mask"],
                                                per_mask["pred"]["energy_in_mask"])
            mean.add((layer, method), consistency)
            common = {"seg_iou": seg_iou.tolist(), "seg_dice": seg_dice.tolist(), "cam_max": cam_max(raw),
                      "consistency": consistency.tolist(), "label_quality": [float("nan")] * len(det)}
            add_map_rows(rows, keys, names, layer, method, raw, per_mask, common)
        per_detection = mean.mean()
        extent = ((det.masks | matched) & valid).flatten(1).sum(1).double().cpu().numpy()
        accuracy = add_confusion_rows(rows, batch, confusion_counts(det.pred, gt_all, len(names)))
        images_of, class_ids = b_idx.cpu().numpy(), k_idx.cpu().numpy()
        for b in range(len(batch.samples)):
            lost = [(cls, pixels) for image, cls, pixels in missed if image == b]
            consistency_b, worst = image_consistency_of(
                np.concatenate([per_detection[images_of == b], np.zeros(len(lost))]),
                np.concatenate([extent[images_of == b], [float(p) for _, p in lost]]),
                np.concatenate([class_ids[images_of == b], [c for c, _ in lost]]).astype(np.int64),
            )
            predicted = torch.unique(det.pred[b][valid_all[b]]).tolist()
            rows.images.append(image_row(
                batch, b, names, gt_all[b], pred_classes=[names[c] for c in predicted if 0 < c < len(names)],
                pixel_accuracy=accuracy[b], consistency=consistency_b, worst_class_id=worst))
        rows.thumbnails = thumbnail_rows(batch, det.pred, config.thumbnail_size)


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


AUDITOR = DetectionAuditor
