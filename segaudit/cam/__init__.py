"""The CAM engine: Seg-Grad-CAM targets, feature-layer capture, CAM methods, and map post-processing.

``engine``    one forward, one batched backward, every method from the same (activations, gradients)
``cam_settings`` the method names, and ``CamSettings``: what one engine call computes
``targets``   which pixels' class scores a map explains (pred, gt, all, roi; logits or softmax)
``gradient``  methods computed from activations and gradients (Grad-CAM, Grad-CAM++, HiResCAM, ...)
``layers``    capturing feature layers without state that outlives the call
``maps``      normalising and upsampling raw maps
``upsampling`` targets pulled back through a model's final bilinear upsampling (the backward starts low-res)
``detection`` per-detection maps of torchvision Mask R-CNN (target: each detection's class score)
"""

from segaudit.cam.cam_settings import SettingsError, UnknownLayer
from segaudit.cam.detection import DETECTION_METHODS, DetectionCams, compute_detection_cams
from segaudit.cam.engine import (
    ALL_METHODS,
    GRADIENT_FREE_METHODS,
    GUIDED_METHODS,
    INPUT_LAYER,
    METHODS,
    CamResult,
    CamSettings,
    compute_cams,
    compute_cams_with,
    score_gradients,
)
from segaudit.cam.gradient import GRADIENT_METHODS, grad_cam_plus_plus_weights, grad_cam_weights
from segaudit.cam.layers import capture_layer, capture_layers, find_module
from segaudit.cam.maps import normalize_maps, upsample_maps
from segaudit.cam.targets import (
    SCORE_KINDS,
    TARGET_ALL,
    TARGET_GT,
    TARGET_KINDS,
    TARGET_NAMES,
    TARGET_NONE,
    TARGET_PRED,
    TARGET_ROI,
    model_logits,
    seg_grad_cam_targets,
    target_scores,
)

__all__ = [
    "SettingsError",
    "UnknownLayer",
    "ALL_METHODS",
    "DETECTION_METHODS",
    "DetectionCams",
    "compute_detection_cams",
    "GRADIENT_FREE_METHODS",
    "GRADIENT_METHODS",
    "GUIDED_METHODS",
    "INPUT_LAYER",
    "METHODS",
    "SCORE_KINDS",
    "TARGET_ALL",
    "TARGET_GT",
    "TARGET_KINDS",
    "TARGET_NAMES",
    "TARGET_NONE",
    "TARGET_PRED",
    "TARGET_ROI",
    "CamResult",
    "CamSettings",
    "capture_layer",
    "capture_layers",
    "compute_cams",
    "compute_cams_with",
    "find_module",
    "grad_cam_plus_plus_weights",
    "grad_cam_weights",
    "model_logits",
    "normalize_maps",
    "score_gradients",
    "seg_grad_cam_targets",
    "target_scores",
    "upsample_maps",
]
