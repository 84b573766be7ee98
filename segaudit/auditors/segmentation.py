"""The auditor of segmentation models (``model.task == "segmentation"``): per-pixel logits, one map per
explained (image, class) pair, scored against the pair's GT mask and its predicted mask."""

from __future__ import annotations

import functools

import torch

from segaudit.auditors.base import Auditor, BatchRows, Explained, explain_with_cam_engine
from segaudit.auditors.context_rows import add_context_rows, class_template_rows
from segaudit.auditors.faithfulness_rows import faithfulness_rows
from segaudit.auditors.rows import (
    PrimaryConsistency,
    ScoredPairs,
    add_confusion_rows,
    add_map_rows,
    cam_max,
    classes_in_confusion,
    fixation_rows,
    image_consistency_of,
    image_row,
    instance_rows,
    pair_instances,
    thumbnail_rows,
)
from segaudit.cam import CamResult
from segaudit.data.preprocess import PreparedBatch
from segaudit.data.sample import Sample
from segaudit.metrics.label_quality import pixel_label_quality, softmin_pool_images_and_regions
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
    overlap_iou_and_dice,
    pair_overlap_counts,
    score_masks,
)
from segaudit.settings import AuditConfig

__all__ = ["AUDITOR", "SegmentationAuditor"]


class SegmentationAuditor(Auditor):
    """Scores every (image, class, method) of a batch against the GT and predicted masks.

    Per pair: :func:`~segaudit.metrics.scores.mask_scores` of its map against each mask (``mask="gt"``,
    ``"pred"``), ``seg_iou``/``seg_dice`` of the predicted and GT masks, the pair's ``label_quality``
    (:func:`~segaudit.metrics.label_quality.softmin_pool` over both masks) and its consistency
    (:func:`~segaudit.metrics.scores.agreement_consistency`). An image's consistency is
    :func:`~segaudit.auditors.rows.image_consistency_of` over its pairs (extent ``|G | P|``) with the
    primary layer's maps (:class:`~segaudit.auditors.rows.PrimaryConsistency`). Also writes the instances,
    prompts (with ``config.prompts``), fixations, confusion and thumbnails rows.
    """

    traces_fixations = True

    @staticmethod
    def check_config(config: AuditConfig) -> None:
        """No rule beyond the general ones: a segmentation model honours every setting."""

    def explain(self, samples: list[Sample]) -> Explained:
        return explain_with_cam_engine(samples, self.model, self.class_map, self.config)

    def add_rows(self, rows: BatchRows, batch: PreparedBatch, cams: CamResult) -> None:
        names, config = self.model.class_names, self.config
        pairs = ScoredPairs.of(batch, cams)
        b_idx, k_idx, valid, gt_masks = pairs.b_idx, pairs.k_idx, pairs.valid, pairs.gt_masks
        pred_masks = cams.pred[b_idx] == k_idx[:, None, None]
        confusion = confusion_counts(cams.pred, pairs.gt_all, len(names))  # (B, K, K): the masks' pixel counts
        overlap = pair_overlap_counts(confusion, b_idx, k_idx)  # |P & G|, |P|, |G|
        seg_iou, seg_dice = overlap_iou_and_dice(*overlap)
        pixel_quality = pixel_label_quality(cams.logits, pairs.gt_all)  # (B, S, S), NaN on void
        image_quality, pair_quality = (pooled.tolist() for pooled in softmin_pool_images_and_regions(
            pixel_quality, b_idx, gt_masks | pred_masks))
        mean = PrimaryConsistency(list(cams.maps), cams.layers[0], len(pairs))
        labelled = pair_instances(batch, pairs.pair_list, cams.pred.device)  # for the instances table
        prompted = (cams.layers[0], _first_method(config, cams)) if config.prompts else None  # the map prompted
        keys = pairs.keys(batch)
        primary, outside = (cams.layers[0], _first_method(config, cams)), {}  # the context rows' CAM evidence
        for layer, method, raw, full in pairs.maps(batch, cams):
            rows.instances.extend(instance_rows(labelled, full, valid, pairs.pair_list, batch, names, pairs.targets,
                                                layer, method))
            if (layer, method) == prompted:
                _add_prompt_rows(rows, batch, full, pairs.pairs, gt_masks, valid, layer, method, config)
            per_mask = score_masks(full, {"gt": gt_masks, "pred": pred_masks}, valid, config.iou_threshold,
                                   config.centroid_cutoff)
            consistency = agreement_consistency(seg_iou, per_mask["gt"]["energy_in_mask"],
                                                per_mask["pred"]["energy_in_mask"])
            mean.add((layer, method), consistency)
            if (layer, method) == primary:
                outside_values = (1.0 - per_mask["gt"]["relevance_rank"]).tolist()
                outside = dict(zip(map(tuple, pairs.pair_list), outside_values, strict=True))
            common = {"seg_iou": seg_iou.tolist(), "seg_dice": seg_dice.tolist(), "cam_max": cam_max(raw),
                      "consistency": consistency.tolist(), "label_quality": pair_quality}
            add_map_rows(rows, keys, names, layer, method, raw, per_mask, common)
        per_pair = mean.mean()
        accuracy = add_confusion_rows(rows, batch, confusion)
        extent = (overlap[1] + overlap[2] - overlap[0]).double().cpu().numpy()  # |G | P| (void excluded)
        images_of, class_ids = b_idx.cpu().numpy(), k_idx.cpu().numpy()
        gt_present, pred_present = classes_in_confusion(confusion)
        for b in range(len(batch.samples)):
            mine = images_of == b
            consistency_b, worst = image_consistency_of(per_pair[mine], extent[mine], class_ids[mine])
            rows.images.append(image_row(
                batch, b, names, pairs.gt_all[b], pred_classes=[names[c] for c in pred_present[b] if 0 < c],
                pixel_accuracy=accuracy[b], consistency=consistency_b, worst_class_id=worst,
                label_quality=image_quality[b], gt_class_ids=gt_present[b]))
        rows.thumbnails = thumbnail_rows(batch, cams.pred, config.thumbnail_size)
        rows.fixations = fixation_rows(batch, cams)
        rows.class_templates = class_template_rows(cams.logits, pairs.gt_all, len(names))
        add_context_rows(rows, self.model, batch, config, outside)
        rows.extend(faithfulness_rows(batch, cams, self.model, config))  # deletion/insertion of the maps


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
    """Prompt a segmenter with each pair's map (:func:`segaudit.metrics.prompting.prompt_rows`)."""
    segmenter = _segmenter(config.prompts, config.sam_checkpoint, config.sam_model_type, str(maps.device))
    found = prompt_rows(
        batch.views, maps.cpu(), pairs.cpu(), gt_masks.cpu(), valid.cpu(),
        image_ids=[s.image_id for s in batch.samples], method=method, layer=layer, segmenter=segmenter,
        cutoff=config.centroid_cutoff, inside=inside_from_boxes(batch.boxes),
        file_names=[s.file_name for s in batch.samples],
    )
    rows.prompts.extend(found.prompts)
    rows.errors.extend(found.errors)


AUDITOR = SegmentationAuditor
