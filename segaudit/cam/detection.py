"""Per-detection CAMs for torchvision Mask R-CNN: one forward, one backward per detection *slot*.

What a map explains
-------------------
For detection ``n`` of an image, the target is that detection's class score ``y_n = s_n`` exactly as
torchvision reports it: ``softmax(z_i)[c_n]`` of the box-head logits ``z_i`` of the proposal it came from,
``c_n`` its label (pytorch-grad-cam's ``FasterRCNNBoxScoreTarget`` adds the IoU of the re-detected box to
the score; we explain the score alone, so a map does not mix "what class" with "where the box edges
are"). The score stays differentiable through ``RoIHeads.postprocess_detections`` (softmax, then only
indexing: background column dropped, score threshold, small-box removal, per-class NMS, top-k), while the
RPN detaches its proposals, so the gradient reaches the feature layer through RoIAlign of the box head
only. Every gradient method of :data:`segaudit.cam.gradient.GRADIENT_METHODS` is computed from the same
(activations, gradients); Eigen-CAM (class-agnostic) gives each detection its image's map.

Cost per batch: one forward with every requested layer captured (:mod:`segaudit.cam.layers`) and
``J = max_b (detections of image b)`` backwards: slot ``j`` sums the ``j``-th detection's score of every
image (images are independent in eval mode, so each image's slice of the gradient is its own
detection's). On CUDA the ``J`` slots go in one vmapped backward (:func:`segaudit.cam.engine.score_gradients`).

Which detections
----------------
Every detection the model returns is explained: its ``roi_heads.score_thresh`` and
``roi_heads.detections_per_img`` decide how many (:func:`detection_settings`). Detections come per image in
torchvision's order (decreasing score); ``index`` is that rank. A detection's instance mask is its mask
probability ``>= MASK_THRESHOLD`` (0.5, torchvision's and the COCO evaluation's binarisation). The
semantic prediction ``pred`` paints, per image, the instance masks of the detections scoring at least
``paint_threshold`` (default :data:`PAINT_SCORE_THRESHOLD`, 0.5) in increasing score order, so where
masks overlap the higher-scoring detection wins; unpainted pixels are background (0). It lets the
segmentation scores (``seg_iou``, the confusion table, thumbnails) work unchanged.

Input frame
-----------
torchvision's ``GeneralizedRCNNTransform`` normalises and resizes every image (shorter side to
``min_size``, longer at most ``max_size``) and pads the batch to a multiple of ``size_divisible`` (32).
segaudit feeds letterboxed squares already normalised by :func:`segaudit.data.preprocess.prepare_batch` (ImageNet
mean and std, the statistics torchvision's Mask R-CNN weights expect), so
:func:`configure_detection_transform` sets ``min_size = max_size = S`` (scale factor 1: bilinear
resampling at scale 1 with half-pixel centres returns the image unchanged, checked in the tests),
``image_mean = 0``, ``image_std = 1`` (normalisation happens once), and requires ``S`` to be a multiple of
``size_divisible`` (no padding). Boxes, masks and maps are then in the letterbox frame; the feature layer's
grid covers exactly the ``S x S`` input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from segaudit.cam.engine import gradient_maps_by_slot
from segaudit.cam.gradient import GRADIENT_METHODS
from segaudit.cam.gradient_free import eigen_cam
from segaudit.cam.layers import capture_layers

__all__ = [
    "DEFAULT_DETECTION_LAYER",
    "DETECTION_METHODS",
    "DETECTION_SETTINGS",
    "MASK_THRESHOLD",
    "PAINT_SCORE_THRESHOLD",
    "TARGET_DETECTION",
    "DetectionCams",
    "apply_detection_settings",
    "compute_detection_cams",
    "configure_detection_transform",
    "detection_settings",
    "paint_semantic",
]

#: Default feature layer of the ResNet-FPN Mask R-CNNs: the backbone's last stage (stride 32), the deepest
#: layer every detection's score depends on (through the FPN's top-down path into every RoIAlign level).
#: ``backbone.fpn`` returns a dict of levels, not a tensor, so it cannot be hooked as one layer.
DEFAULT_DETECTION_LAYER = "backbone.body.layer4"
#: Methods computed for detections: every gradient method, and Eigen-CAM (the image's map for each detection).
DETECTION_METHODS = (*GRADIENT_METHODS, "eigencam")
#: The ``target`` name of a per-detection map in the tables.
TARGET_DETECTION = "detection"
#: Mask probability at or above which a pixel belongs to a detection's instance mask.
MASK_THRESHOLD = 0.5
#: Score at or above which a detection is painted into the semantic prediction.
PAINT_SCORE_THRESHOLD = 0.5
#: Inference settings a segaudit checkpoint records for a detector (see :func:`detection_settings`).
DETECTION_SETTINGS = ("box_score_thresh", "box_nms_thresh", "box_detections_per_img", "rpn_pre_nms_top_n_test",
                      "rpn_post_nms_top_n_test")


def configure_detection_transform(model: nn.Module, input_size: int) -> nn.Module:
    """Make ``model.transform`` the identity on ``input_size`` squares that are already normalised.

    Raises ValueError if ``input_size`` is not a multiple of the transform's ``size_divisible`` (the
    batch would be padded and the maps would not cover the input frame exactly).
    """
    transform = model.transform
    divisible = int(getattr(transform, "size_divisible", 1))
    if input_size % divisible:
        raise ValueError(f"detection input size {input_size} must be a multiple of {divisible}")
    transform.min_size = (int(input_size),)
    transform.max_size = int(input_size)
    transform.image_mean = [0.0, 0.0, 0.0]
    transform.image_std = [1.0, 1.0, 1.0]
    return model


def detection_settings(model: nn.Module) -> dict[str, float | int]:
    """The inference settings of a torchvision Mask R-CNN, named as its builder's keyword arguments."""
    heads, rpn = model.roi_heads, model.rpn
    return {
        "box_score_thresh": float(heads.score_thresh),
        "box_nms_thresh": float(heads.nms_thresh),
        "box_detections_per_img": int(heads.detections_per_img),
        "rpn_pre_nms_top_n_test": int(rpn._pre_nms_top_n["testing"]),
        "rpn_post_nms_top_n_test": int(rpn._post_nms_top_n["testing"]),
    }


def apply_detection_settings(model: nn.Module, settings: dict[str, Any]) -> nn.Module:
    """Set the inference settings of :func:`detection_settings` (unknown keys raise ValueError)."""
    unknown = sorted(set(settings) - set(DETECTION_SETTINGS))
    if unknown:
        raise ValueError(f"unknown detection settings {unknown}; known: {', '.join(DETECTION_SETTINGS)}")
    heads, rpn = model.roi_heads, model.rpn
    if "box_score_thresh" in settings:
        heads.score_thresh = float(settings["box_score_thresh"])
    if "box_nms_thresh" in settings:
        heads.nms_thresh = float(settings["box_nms_thresh"])
    if "box_detections_per_img" in settings:
        heads.detections_per_img = int(settings["box_detections_per_img"])
    if "rpn_pre_nms_top_n_test" in settings:
        rpn._pre_nms_top_n["testing"] = int(settings["rpn_pre_nms_top_n_test"])
    if "rpn_post_nms_top_n_test" in settings:
        rpn._post_nms_top_n["testing"] = int(settings["rpn_post_nms_top_n_test"])
    return model


@dataclass
class DetectionCams:
    """What :func:`compute_detection_cams` computed for a batch; ``N`` detections over all images.

    Attributes
    ----------
    image : torch.Tensor
        ``(N,)`` int64 image of each detection in the batch.
    index : torch.Tensor
        ``(N,)`` int64 rank of the detection within its image (0 = highest score).
    labels : torch.Tensor
        ``(N,)`` int64 model class ids (never 0, background).
    scores : torch.Tensor
        ``(N,)`` detached class scores (the targets).
    boxes : torch.Tensor
        ``(N, 4)`` ``(x1, y1, x2, y2)`` in input pixels.
    masks : torch.Tensor
        ``(N, H, W)`` bool instance masks (probability ``>= MASK_THRESHOLD``).
    pred : torch.Tensor
        ``(B, H, W)`` int64 semantic prediction painted from the instance masks (see the module docstring).
    maps : dict of (str, str) to torch.Tensor
        ``(layer, method)`` -> ``(N, h, w)`` raw maps.
    layers, methods : tuple of str
    target : str
        :data:`TARGET_DETECTION`.
    """

    image: torch.Tensor
    index: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor
    pred: torch.Tensor
    maps: dict[tuple[str, str], torch.Tensor]
    layers: tuple[str, ...]
    methods: tuple[str, ...] = field(default=())
    target: str = TARGET_DETECTION

    def __len__(self) -> int:
        return len(self.labels)

    def map(self, method: str, layer: str | None = None) -> torch.Tensor:
        """``(N, h, w)`` maps of ``method`` at ``layer`` (default: the first layer)."""
        return self.maps[(layer or self.layers[0], method)]


def paint_semantic(
    masks: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    image: torch.Tensor,
    batch: int,
    threshold: float = PAINT_SCORE_THRESHOLD,
) -> torch.Tensor:
    """``(B, H, W)`` int64 labels: per image, the masks of detections scoring ``>= threshold`` painted in
    increasing score order (the higher score wins an overlap), background 0 elsewhere."""
    pred = torch.zeros((batch, *masks.shape[-2:]), dtype=torch.int64, device=masks.device)
    keep = torch.nonzero(scores >= threshold).flatten()
    for n in keep[torch.argsort(scores[keep], stable=True)].tolist():
        pred[int(image[n])][masks[n]] = int(labels[n])
    return pred


def _check(model: nn.Module, images: torch.Tensor, methods: tuple[str, ...], layers: tuple[str, ...]) -> None:
    unknown = sorted(set(methods) - set(DETECTION_METHODS))
    if unknown or not methods:
        raise ValueError(f"methods {unknown} are not available for detection models; "
                         f"use {', '.join(DETECTION_METHODS)}")
    if not layers:
        raise ValueError("at least one layer is needed")
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images must be letterboxed squares (B, 3, S, S), got {tuple(images.shape)}")
    if model.training:
        raise ValueError("the detector must be in eval mode (in training mode it returns losses)")
    transform = getattr(model, "transform", None)
    size = images.shape[-1]
    if (transform is None or tuple(transform.min_size) != (size,) or transform.max_size != size
            or any(m != 0 for m in transform.image_mean) or any(s != 1 for s in transform.image_std)):
        raise ValueError(f"the detector's transform is not the identity on {size}-pixel normalised squares; "
                         "call configure_detection_transform(model, input_size) first")


def compute_detection_cams(
    model: nn.Module,
    images: torch.Tensor,
    layers: str | Sequence[str] = DEFAULT_DETECTION_LAYER,
    methods: Sequence[str] = ("gradcam", "gradcampp"),
    *,
    paint_threshold: float = PAINT_SCORE_THRESHOLD,
) -> DetectionCams:
    """CAM maps of every method at every layer for every detection of a torchvision Mask R-CNN.

    Parameters
    ----------
    model : nn.Module
        A torchvision ``MaskRCNN`` in eval mode whose transform went through
        :func:`configure_detection_transform` for this input size; parameters may be frozen.
    images : torch.Tensor
        ``(B, 3, S, S)`` normalised letterboxed input.
    layers : str or sequence of str
        Dotted names of feature modules (each must output one tensor and run once per forward).
    methods : sequence of str
        From :data:`DETECTION_METHODS`.
    paint_threshold : float
        Lowest score painted into the semantic prediction.

    Returns
    -------
    DetectionCams
    """
    methods = tuple(dict.fromkeys(methods))
    layers = (layers,) if isinstance(layers, str) else tuple(dict.fromkeys(layers))
    _check(model, images, methods, layers)
    with torch.enable_grad(), capture_layers(model, layers) as captured:
        outputs = model(list(images))
        scores = torch.cat([out["scores"] for out in outputs])  # in the graph even when called under no_grad
    for name, outs in captured.items():
        if len(outs) != 1:
            raise RuntimeError(f"layer {name!r} ran {len(outs)} times in one forward; "
                               "pick a layer that runs once")
    activations = [captured[name][0] for name in layers]
    counts = [len(out["scores"]) for out in outputs]
    image = torch.repeat_interleave(torch.arange(len(images)), torch.tensor(counts, dtype=torch.int64))
    index = torch.cat([torch.arange(n) for n in counts]) if counts else torch.zeros(0, dtype=torch.int64)
    masks = torch.cat([out["masks"][:, 0] for out in outputs]).detach() >= MASK_THRESHOLD
    labels = torch.cat([out["labels"] for out in outputs]).to(torch.int64)
    boxes = torch.cat([out["boxes"] for out in outputs]).detach()
    image, index = image.to(scores.device), index.to(scores.device)
    total = len(scores)
    gradient_methods = [m for m in methods if m in GRADIENT_METHODS]
    maps = {
        (name, m): feats.new_zeros((total, *feats.shape[-2:]),
                                   dtype=torch.promote_types(feats.dtype, torch.float32))
        for name, feats in zip(layers, activations, strict=True)
        for m in gradient_methods
    }
    slots = max(counts, default=0)
    if gradient_methods and slots:
        # slot j: the j-th detection of every image that has one (rows of the flat detection list)
        picks = [torch.nonzero(index == j).flatten() for j in range(slots)]

        def cotangent(rows: torch.Tensor) -> torch.Tensor:
            onehot = torch.zeros_like(scores)
            onehot[rows] = 1.0
            return onehot

        dtype = maps[(layers[0], gradient_methods[0])].dtype
        by_slot = gradient_maps_by_slot(scores, (cotangent(rows) for rows in picks), layers, activations,
                                        gradient_methods, dtype)
        for rows, cams in zip(picks, by_slot, strict=True):
            for key, cam in cams.items():
                maps[key][rows] = cam[image[rows]]
    if "eigencam" in methods:
        for name, feats in zip(layers, activations, strict=True):
            feats = feats.detach().to(torch.promote_types(feats.dtype, torch.float32))
            maps[(name, "eigencam")] = eigen_cam(feats)[image]
    pred = paint_semantic(masks, labels, scores.detach(), image, len(images), paint_threshold)
    return DetectionCams(
        image=image, index=index, labels=labels, scores=scores.detach(), boxes=boxes, masks=masks, pred=pred,
        maps={key: value for key, value in maps.items() if key[1] in methods}, layers=layers, methods=methods,
    )
