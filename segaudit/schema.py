"""The contract shared by the core and the reports, torch-free: table schemas and column docs, the finding
kinds and their evidence columns, the void label, shared defaults and the label palette.

Everything here imports only numpy and pyarrow, so :mod:`segaudit.reports` (and anything that only reads a
run's tables) can use it without pulling in torch; the core imports the same names, so each is declared once.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = [
    "SCHEMA_VERSION",
    "SCHEMAS",
    "COLUMN_DOCS",
    "DATA_TABLES",
    "SHARD_TABLES",
    "RUN_LEVEL_TABLES",
    "FINDING_KINDS",
    "EVIDENCE_COLUMNS",
    "VOID_LABEL",
    "CENTROID_CUTOFF",
    "GRADIENT_METHOD_NAMES",
    "METHODS",
    "GRADIENT_FREE_METHODS",
    "GUIDED_METHODS",
    "TRACE_METHODS",
    "ALL_METHODS",
    "INPUT_LAYER",
    "TARGET_KINDS",
    "SCORE_KINDS",
    "EVIDENCE_LEVELS",
    "PRIMARY_CHOICES",
    "voc_colormap",
]

#: The CAM engine's vocabulary (:mod:`segaudit.cam` maps each name to its computation; the settings, the CLI's
#: help and the report name them without importing torch). Gradient methods: Grad-CAM, Grad-CAM++, HiResCAM,
#: XGrad-CAM, LayerCAM and element-wise Grad-CAM (:mod:`segaudit.cam.gradient`).
GRADIENT_METHOD_NAMES = ("gradcam", "gradcampp", "hirescam", "xgradcam", "layercam", "gradcam_elementwise")
#: Default methods of an audit.
METHODS = ("gradcam", "gradcampp")
#: Methods that need no gradient: Score-CAM (masked forwards) and Eigen-CAM (class-agnostic).
GRADIENT_FREE_METHODS = ("scorecam", "eigencam")
#: Methods that need the gradients with respect to the input (a second, guided backward pass).
GUIDED_METHODS = ("guided_backprop", "guided_gradcam")
#: Methods that unravel the forward pass instead (CNN-Fixations, :mod:`segaudit.cam.fixations`), at the input.
TRACE_METHODS = ("fixations",)
#: Every method the engine computes.
ALL_METHODS = (*GRADIENT_METHOD_NAMES, *GRADIENT_FREE_METHODS, *GUIDED_METHODS, *TRACE_METHODS)
#: Pseudo-layer name of maps computed at the input (guided backpropagation).
INPUT_LAYER = "input"
#: Seg-Grad-CAM target kinds (:mod:`segaudit.cam.targets`) and the per-pixel scores a target sums.
TARGET_KINDS = ("pred", "gt", "all", "roi")
SCORE_KINDS = ("logits", "softmax")

#: Label value of void / ignored pixels (Pascal VOC's convention, also used for COCO crowd regions and the
#: letterbox padding).
VOID_LABEL = 255

#: Weighted-centroid cutoff: only pixels with normalised value >= this share of the map's max count
#: (:func:`segaudit.metrics.scores.weighted_centroid`); a run's ``centroid_cutoff`` setting wins.
CENTROID_CUTOFF = 0.6

#: Finding kinds, in the order the findings table lists them (:mod:`segaudit.findings.rules`).
FINDING_KINDS: tuple[str, ...] = (
    "label_error", "context_reliance", "context_hallucination", "missed_object", "neglected_instances",
    "out_of_label_space", "class_entanglement",
)  # fmt: skip

#: Score columns copied onto each finding as its evidence (the report shows them with the finding).
EVIDENCE_COLUMNS: tuple[str, ...] = (
    "seg_iou", "label_quality", "recall", "energy_in_gt", "energy_in_pred", "outside_share", "instance_coverage",
    "context_reliance", "hallucination", "template_correlation", "confusion_share",
)  # fmt: skip

#: Levels of the causal checks (faithfulness curves, context tests): off, a hashed sample of images, all images.
EVIDENCE_LEVELS = ("none", "sampled", "full")

#: How the findings' primary map is picked: the most faithful method and layer (segaudit.findings.trust), or
#: the user's first method and layer.
PRIMARY_CHOICES = ("faithful", "first")

#: 1: one file per table (``<table>.parquet``, still read); 2: a plan (``run.json``) and one part per shard
#: and table (``<table>/part-<shard>.parquet``).
SCHEMA_VERSION = 2

_str = pa.string()
_f64 = pa.float64()
_i64 = pa.int64()

#: Column schemas of every table; writing checks frames against them so the contract cannot drift.
SCHEMAS: dict[str, pa.Schema] = {
    "run": pa.schema(
        [
            ("run_id", _str),
            ("schema_version", _i64),
            ("created_at", _str),
            ("duration_s", _f64),
            ("dataset_kind", _str),
            ("dataset_path", _str),
            ("split", _str),
            ("dataset_fingerprint", _str),
            ("n_images", _i64),
            ("n_errors", _i64),
            ("model_name", _str),
            ("model_sha256", _str),
            ("input_size", _i64),
            ("layer", _str),
            ("methods", pa.list_(_str)),
            ("class_names", pa.list_(_str)),
            ("config_json", _str),
            ("versions_json", _str),
        ]
    ),
    "images": pa.schema(
        [
            ("image_id", _str),
            ("file_name", _str),
            ("width", _i64),
            ("height", _i64),
            ("n_instances", _i64),
            ("gt_classes", pa.list_(_str)),
            ("pred_classes", pa.list_(_str)),
            ("pixel_accuracy", _f64),
            ("consistency", _f64),
            ("label_quality", _f64),
            ("suspicion", _f64),
            ("review_rank", _i64),
            ("worst_class_id", _i64),
            ("unknown_classes", pa.list_(_str)),
            ("unknown_pixels", pa.list_(_i64)),
        ]
    ),
    "scores": pa.schema(
        [
            ("image_id", _str),
            ("class_id", _i64),
            ("class_name", _str),
            ("method", _str),
            ("layer", _str),
            ("target", _str),
            ("detection", _i64),
            ("mask", _str),
            ("mask_pixels", _i64),
            ("energy_in_mask", _f64),
            ("pointing_hit", _f64),
            ("relevance_rank", _f64),
            ("auroc", _f64),
            ("iou_at_0_5", _f64),
            ("dice_at_0_5", _f64),
            ("max_point_hit", _f64),
            ("max_point_distance", _f64),
            ("centroid_hit", _f64),
            ("centroid_distance", _f64),
            ("background_point_hit", _f64),
            ("seg_iou", _f64),
            ("seg_dice", _f64),
            ("cam_max", _f64),
            ("consistency", _f64),
            ("label_quality", _f64),
        ]
    ),
    # one row per finding (see segaudit.findings.rules): what to look at, why, and the evidence
    "findings": pa.schema(
        [
            ("image_id", _str),
            ("file_name", _str),
            ("class_id", _i64),
            ("class_name", _str),
            ("kind", _str),
            ("score", _f64),
            ("rank", _i64),
            ("method", _str),
            ("layer", _str),
            ("target", _str),
            ("seg_iou", _f64),
            ("label_quality", _f64),
            ("recall", _f64),
            ("energy_in_gt", _f64),
            ("energy_in_pred", _f64),
            ("outside_share", _f64),
            ("instance_coverage", _f64),
            ("context_reliance", _f64),
            ("hallucination", _f64),
            ("template_correlation", _f64),
            ("confusion_share", _f64),
        ]
    ),
    "maps": pa.schema(
        [
            ("image_id", _str),
            ("class_id", _i64),
            ("method", _str),
            ("layer", _str),
            ("target", _str),
            ("detection", _i64),
            ("height", _i64),
            ("width", _i64),
            ("values", pa.list_(pa.float32())),
        ]
    ),
    "thumbnails": pa.schema(
        [
            ("image_id", _str),
            ("image_jpeg", pa.binary()),
            ("gt_png", pa.binary()),
            ("pred_png", pa.binary()),
        ]
    ),
    "confusion": pa.schema(
        [
            ("image_id", _str),
            ("gt_class_id", _i64),
            ("pred_class_id", _i64),
            ("pixels", _i64),
        ]
    ),
    "errors": pa.schema(
        [
            ("image_id", _str),
            ("file_name", _str),
            ("stage", _str),
            ("reason", _str),
        ]
    ),
    # one row per labelled instance x method x layer x target (see segaudit.metrics.instances); the per-map
    # instance_coverage is repeated on every instance row of its (image, class, method, layer, target)
    "instances": pa.schema(
        [
            ("image_id", _str),
            ("instance", _i64),
            ("annotation_id", _str),
            ("class_id", _i64),
            ("class_name", _str),
            ("method", _str),
            ("layer", _str),
            ("target", _str),
            ("pixels", _i64),
            ("n_instances", _i64),
            ("mass_share", _f64),
            ("class_mass_share", _f64),
            ("peak_height", _f64),
            ("has_peak", _f64),
            ("covered", _f64),
            ("instance_coverage", _f64),
        ]
    ),
    # CAM-prompted segmentation (segaudit.metrics.prompting), only with the audit's `prompts` option: one row per
    # (image, class) map of the primary (method, layer) x
    # point kind x prompt kind; mask_pixels = valid pixels of the segment, null when no segment was made
    # CNN-Fixations (segaudit.cam.fixations), only with the `fixations` method: one row per fixation point
    "fixations": pa.schema(
        [
            ("image_id", _str),
            ("class_id", _i64),
            ("y", _i64),
            ("x", _i64),
            ("weight", _f64),
        ]
    ),
    # deletion/insertion curves with ROAD imputation (segaudit.metrics.faithfulness) of each map of the images
    # the `evidence` setting picks: one row per (image, class, method, layer, target)
    "faithfulness": pa.schema(
        [
            ("image_id", _str),
            ("class_id", _i64),
            ("class_name", _str),
            ("method", _str),
            ("layer", _str),
            ("target", _str),
            ("pixels", _i64),
            ("target_score", _f64),
            ("deletion_auc", _f64),
            ("insertion_auc", _f64),
            ("faithfulness", _f64),
        ]
    ),
    # per (method, layer): the mean deletion/insertion AUCs of its checked maps, the sanity check, and whether
    # the findings use it (segaudit.findings.trust); written when the run is aggregated
    "method_trust": pa.schema(
        [
            ("method", _str),
            ("layer", _str),
            ("n_pairs", _i64),
            ("deletion_auc", _f64),
            ("insertion_auc", _f64),
            ("faithfulness", _f64),
            ("faithfulness_se", _f64),
            ("sanity_ssim", _f64),
            ("sanity_spearman", _f64),
            ("passes_sanity", pa.bool_()),
            ("chosen", pa.bool_()),
        ]
    ),
    # causal context test (segaudit.metrics.context) of each labelled class of the images the `evidence`
    # setting picks: one row per (image, class)
    "context": pa.schema(
        [
            ("image_id", _str),
            ("class_id", _i64),
            ("class_name", _str),
            ("object_pixels", _i64),
            ("score", _f64),
            ("score_object_only", _f64),
            ("context_reliance", _f64),
            ("iou", _f64),
            ("iou_object_only", _f64),
            ("context_iou_drop", _f64),
            ("hallucination", _f64),
            ("outside_share", _f64),
            ("object_only_jpeg", pa.binary()),
            ("context_only_jpeg", pa.binary()),
        ]
    ),
    # per batch, the sums of the logit vectors over each class's labelled pixels (segaudit.metrics.entanglement),
    # summed over the run into the class templates
    "class_templates": pa.schema(
        [
            ("class_id", _i64),
            ("pixels", _i64),
            ("logit_sums", pa.list_(_f64)),
        ]
    ),
    # the run's sanity check (segaudit.auditors.calibration, Adebayo et al. 2018): per cascading-randomisation
    # step and (method, layer), the means over the pre-pass sample's maps; written once per run, not per shard
    "sanity": pa.schema(
        [
            ("method", _str),
            ("layer", _str),
            ("step", _i64),
            ("block", _str),
            ("spearman", _f64),
            ("spearman_abs", _f64),
            ("ssim", _f64),
            ("n_maps", _i64),
        ]
    ),
    "prompts": pa.schema(
        [
            ("image_id", _str),
            ("class_id", _i64),
            ("method", _str),
            ("layer", _str),
            ("segmenter", _str),
            ("point", _str),
            ("prompts", _str),
            ("point_hit", _f64),
            ("point_distance", _f64),
            ("iou_with_gt", _f64),
            ("dice_with_gt", _f64),
            ("mask_pixels", _i64),
        ]
    ),
}

#: Column meanings, shown in the README and used by the report's tooltips.
COLUMN_DOCS: dict[str, str] = {
    "consistency": "agreement of label, prediction and CAM, 0..1 (higher is more consistent); "
    "per class: seg_iou x min(1, CAM energy in GT / CAM energy in prediction), averaged over methods; "
    "per image: mean over classes weighted by each class's extent |GT or predicted pixels|",
    "review_rank": "1 = the most suspicious image (highest suspicion), the first to review",
    "label_quality": "the model's belief in the labels: softmin over pixels of the predicted probability of each "
    "pixel's label (Lad & Mueller 2023, cleanlab's score; void left out); per image over all its pixels, in the "
    "scores table over the class's labelled or predicted pixels",
    "suspicion": "per-image review score 1 - label_quality (cleanlab's softmin label quality); in the review order "
    "CAM consistency only breaks exact ties, the least consistent first (segaudit.findings.rules)",
    "unknown_classes": "dataset classes labelled in the image that the model does not know (out of label space)",
    "unknown_pixels": "labelled pixels of each of unknown_classes, in the original image",
    "weight": "a fixation point's share of its (image, class) trace (they sum to 1 per image and class)",
    "y": "row of the fixation point in the model's input frame",
    "x": "column of the fixation point in the model's input frame",
    "kind": "finding kind: label_error, context_reliance, context_hallucination, missed_object, neglected_instances, "
    "out_of_label_space, class_entanglement",
    "score": "strength of the finding's evidence, 0..1 (see segaudit.findings.rules for each kind's formula)",
    "rank": "1 = the strongest finding of its kind",
    "recall": "share of the labelled object the model predicts, |P & G| / |G|",
    "energy_in_gt": "the primary map's positive mass share inside the GT mask",
    "energy_in_pred": "the primary map's positive mass share inside the predicted mask",
    "outside_share": "1 - relevance rank accuracy: share of the map's top-|G| pixels outside the object",
    "context_reliance": "causal context test (Hoyer et al. 2019): fall of the class's mean softmax score on its "
    "object when the context is replaced by neutral fills, s(x) - s(x_obj); NaN where the test did not run",
    "hallucination": "causal context test: share of the object's (dilated) region still predicted as the class "
    "once the object is replaced by an imputation of its surroundings (found from context alone)",
    "template_correlation": "correlation of two classes' centred pre-softmax class templates, the mean logit "
    "vectors over their labelled pixels (Seg-Unravel; segaudit.metrics.entanglement)",
    "confusion_share": "the two classes' symmetric pixel confusion, (C_ab / n_a + C_ba / n_b) / 2",
    "target": "pixels whose class logits were summed into the Seg-Grad-CAM target: 'pred' (predicted as the "
    "class) or 'gt' (labelled as the class, used when the model predicts none of it); 'detection' for a "
    "detector (Mask R-CNN): the detection's class score",
    "detection": "index of the detection within its image (0 = highest score) for a detector's per-detection "
    "maps; null for the class-level maps of other models",
    "mask": "the mask the map is scored against: 'gt' (label) or 'pred' (model prediction)",
    "energy_in_mask": "share of the positive CAM mass inside the mask",
    "pointing_hit": "1 if the CAM maximum lies inside the mask, 0 if not, NaN for an empty mask",
    "relevance_rank": "relevance rank accuracy: share of the |mask| highest-valued pixels inside the mask",
    "auroc": "AUROC of the map as a pixel classifier of the mask (0.5 = chance)",
    "iou_at_0_5": "IoU of the min-max normalised CAM thresholded at 0.5 with the mask",
    "dice_at_0_5": "Dice of the min-max normalised CAM thresholded at 0.5 with the mask",
    "max_point_hit": "1 if the CAM's maximum point is inside the mask",
    "max_point_distance": "distance in pixels from the maximum point to the nearest mask pixel (0 inside)",
    "centroid_hit": "1 if the weighted centroid of the map above 0.6 x max is inside the mask",
    "centroid_distance": "distance in pixels from that centroid to the nearest mask pixel (0 inside)",
    "background_point_hit": "1 if the map's minimum (the background prompt) falls inside the mask: it should not",
    "seg_iou": "IoU of the predicted mask with the GT mask for the class (void ignored); for a detection, of its "
    "instance mask with the labelled instance of its class it overlaps most",
    "seg_dice": "Dice of the predicted mask with the GT mask for the class (void ignored)",
    "pixel_accuracy": "share of the image's non-void pixels whose predicted class is the labelled one",
    "cam_max": "maximum of the raw (unnormalised) CAM: its magnitude",
    "instance": "index of the instance among the image's non-crowd instances of known classes (0-based)",
    "annotation_id": "the dataset's id of the instance (COCO annotation id, VOC SegmentationObject index); "
    "null when unknown",
    "pixels": "valid (non-void) pixels of the instance, in the model's input frame",
    "n_instances": "instances of this class in this image",
    "mass_share": "share of the map's positive mass inside the instance",
    "class_mass_share": "share of the map's positive mass on the class's instances that lies inside this one",
    "peak_height": "highest local maximum (3x3 window) of the map inside the instance, as a share of the "
    "map's max; 0 if none",
    "has_peak": "1 if the instance holds a local maximum of the map >= 0.5 x its max",
    "covered": "1 if has_peak or class_mass_share >= 1 / (2 n_instances): the map lights this instance",
    "instance_coverage": "share of the class's instances in the image that the map covers (repeated on each "
    "instance row; NaN without instances; trivially 0 or 1 for a single instance)",
    "target_score": "the explained score s(x) on the unperturbed image: mean softmax probability of the class "
    "over its target pixels (a classifier: its presence probability)",
    "deletion_auc": "mean of s over the ROAD deletion curve: the map's top 10..90% pixels imputed away (low = "
    "faithful; Petsiuk et al. 2018, Rong et al. 2022)",
    "insertion_auc": "mean of s over the ROAD insertion curve: only the map's top 10..90% pixels kept (high = "
    "faithful)",
    "faithfulness": "insertion_auc - deletion_auc (per map; in method_trust the mean over the checked maps)",
    "n_pairs": "checked maps (image x class) of this method and layer with a defined faithfulness",
    "faithfulness_se": "standard error of the mean faithfulness, sd / sqrt(n_pairs)",
    "sanity_ssim": "SSIM of the maps of the trained and the fully randomised model (last cascading step; "
    "Adebayo et al. 2018); NaN when the sanity check did not run",
    "sanity_spearman": "absolute rank correlation of those maps (last cascading step)",
    "passes_sanity": "sanity_ssim < 0.5: the maps change when the model's weights are randomised; null when "
    "not checked",
    "chosen": "the findings are decided on this method and layer (segaudit.findings.trust.choose_primary)",
    "segmenter": "the promptable segmenter the CAM prompts were given to: 'grabcut' (OpenCV) or 'sam'",
    "point": "the foreground point prompt: 'centroid' (weighted centroid of the map above 0.6 x max) or "
    "'max' (the map's maximum)",
    "prompts": "'fg': the foreground point and the map thresholded at 0.5; 'fg+bg': also the map's minimum "
    "as a background point",
    "point_hit": "1 if the foreground point lies inside the GT mask, NaN for an empty mask or map",
    "point_distance": "distance in pixels from the foreground point to the nearest GT mask pixel (0 inside)",
    "iou_with_gt": "IoU of the prompted segment with the GT mask (void ignored); NaN without a segment or GT",
    "dice_with_gt": "Dice of the prompted segment with the GT mask (void ignored); NaN without a segment or GT",
    "step": "sanity check: how many blocks are randomised (1 = the block nearest the output only)",
    "block": "sanity check: the block randomised at this step (a module name), in addition to those before it",
    "spearman": "sanity check: Spearman rank correlation of the trained and the randomised maps over the pixels, "
    "mean over the sampled maps (high after randomisation: the maps do not depend on the weights)",
    "spearman_abs": "sanity check: as spearman, on the maps' absolute values",
    "ssim": "sanity check: structural similarity (Wang et al. 2004) of the trained and the randomised maps, "
    "min-max normalised, mean over the sampled maps; 1 = unchanged",
    "n_maps": "sanity check: maps averaged (those with a defined rank correlation)",
}


#: Every table but ``run``, in writing order.
DATA_TABLES = ("images", "scores", "maps", "thumbnails", "confusion", "errors", "instances", "findings", "prompts", "fixations",
               "faithfulness", "context", "class_templates", "method_trust", "sanity")

#: Tables written once per run, not by the shards: ``findings`` and ``method_trust`` (and the images' ranks)
#: when the run is aggregated, ``sanity`` by the run's pre-pass (:mod:`segaudit.auditors.calibration`).
RUN_LEVEL_TABLES = ("findings", "method_trust", "sanity")

#: Tables a shard writes.
SHARD_TABLES = tuple(t for t in DATA_TABLES if t not in RUN_LEVEL_TABLES)


def voc_colormap(n: int = 256) -> np.ndarray:
    """The Pascal VOC label colour map (the palette of VOC label PNGs, and the report's class colours).

    Parameters
    ----------
    n : int
        Number of entries.

    Returns
    -------
    np.ndarray
        ``(n, 3)`` uint8; row ``k`` is the RGB colour of label ``k`` (``255`` -> ``(224, 224, 192)``).
    """
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap
