"""The auditor of classifiers (``model.task == "classification"``): per-image class scores, no predicted
mask; each explained (image, class) pair's map is scored against the GT mask only."""

from __future__ import annotations

import numpy as np
import torch

from segaudit.auditors.base import Auditor, BatchRows, Explained, explain_with_cam_engine
from segaudit.auditors.faithfulness_rows import faithfulness_rows
from segaudit.auditors.rows import (
    PrimaryConsistency,
    ScoredPairs,
    add_map_rows,
    cam_max,
    image_consistency_of,
    image_row,
    instance_rows,
    pair_instances,
    thumbnail_rows,
)
from segaudit.cam import CamResult
from segaudit.data.preprocess import PreparedBatch
from segaudit.data.sample import Sample
from segaudit.metrics.scores import mask_scores
from segaudit.settings import AuditConfig

__all__ = ["AUDITOR", "ClassificationAuditor", "classifier_consistency"]


def classifier_consistency(
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


class ClassificationAuditor(Auditor):
    """Scores every (image, class, method) of a classifier's batch against the GT mask only.

    A classifier predicts which classes an image holds, not where: scores rows have ``mask="gt"`` only
    (a class the model predicts but nobody labelled has an empty GT mask, so NaN localisation metrics),
    ``seg_iou``/``seg_dice`` and ``label_quality`` are NaN, the images table's ``pred_classes`` are the
    classes predicted present and ``pixel_accuracy`` is NaN, there are no confusion rows, and the
    thumbnails' prediction picture is empty. Consistency: :func:`classifier_consistency`, averaged over
    the primary layer's methods; an image's is the unweighted mean over its explained classes (a class
    has no pixel extent in a classifier's eyes), its worst class the least consistent one.
    """

    @staticmethod
    def check_config(config: AuditConfig) -> None:
        """A classifier scores whole images: no ``roi`` target."""
        if config.target == "roi":
            raise ValueError("a classifier scores whole images: target 'roi' does not apply (use pred, gt or all)")

    def explain(self, samples: list[Sample]) -> Explained:
        return explain_with_cam_engine(samples, self.model, self.class_map, self.config)

    def add_rows(self, rows: BatchRows, batch: PreparedBatch, cams: CamResult) -> None:
        names, config, nan = self.model.class_names, self.config, float("nan")
        pairs = ScoredPairs.of(batch, cams)
        b_idx, k_idx, valid, gt_masks = pairs.b_idx, pairs.k_idx, pairs.valid, pairs.gt_masks
        labelled = (gt_masks & valid).flatten(1).any(1)
        probability = cams.logits[b_idx, k_idx].sigmoid()
        instances = pair_instances(batch, pairs.pair_list, cams.logits.device)
        mean = PrimaryConsistency(list(cams.maps), cams.layers[0], len(pairs))
        keys = pairs.keys(batch)
        for layer, method, raw, full in pairs.maps(batch, cams):
            rows.instances.extend(instance_rows(instances, full, valid, pairs.pair_list, batch, names, pairs.targets,
                                                layer, method))
            scores = mask_scores(full, gt_masks, valid, config.iou_threshold, config.centroid_cutoff)
            consistency = classifier_consistency(probability, labelled, scores["energy_in_mask"]).cpu()
            mean.add((layer, method), consistency)
            common = {"seg_iou": [nan] * len(pairs), "seg_dice": [nan] * len(pairs), "cam_max": cam_max(raw),
                      "consistency": consistency.tolist(), "label_quality": [nan] * len(pairs)}
            add_map_rows(rows, keys, names, layer, method, raw, {"gt": scores}, common)
        per_pair = mean.mean()
        images_of, class_ids = b_idx.cpu().numpy(), k_idx.cpu().numpy()
        for b in range(len(batch.samples)):
            mine = images_of == b
            consistency_b, worst = image_consistency_of(per_pair[mine], np.ones(int(mine.sum())), class_ids[mine])
            present = torch.nonzero(cams.pred[b]).flatten().tolist()
            rows.images.append(image_row(
                batch, b, names, pairs.gt_all[b], pred_classes=[names[c] for c in present if c > 0],
                pixel_accuracy=nan, consistency=consistency_b, worst_class_id=worst))
        rows.thumbnails = thumbnail_rows(batch, None, config.thumbnail_size)
        rows.extend(faithfulness_rows(batch, cams, self.model, config))  # deletion/insertion of the maps


AUDITOR = ClassificationAuditor
