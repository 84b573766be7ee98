"""The CAM engine: Seg-Grad-CAM targets, feature-layer capture, CAM methods, and map post-processing.

``engine``    one forward, one backward per class, every method from the same (activations, gradients)
``targets``   which pixels' class scores a map explains
``gradient``  methods computed from activations and gradients (Grad-CAM, Grad-CAM++, ...)
``layers``    hooking a feature layer without state that outlives the call
``maps``      normalising and upsampling raw maps
"""

from segaudit.cam.engine import METHODS, CamResult, compute_cams, model_logits
from segaudit.cam.gradient import grad_cam_plus_plus_weights, grad_cam_weights
from segaudit.cam.layers import capture_layer, find_module
from segaudit.cam.maps import normalize_maps, upsample_maps
from segaudit.cam.targets import TARGET_GT, TARGET_NAMES, TARGET_NONE, TARGET_PRED, seg_grad_cam_targets

__all__ = [
    "METHODS",
    "TARGET_GT",
    "TARGET_NAMES",
    "TARGET_NONE",
    "TARGET_PRED",
    "CamResult",
    "capture_layer",
    "compute_cams",
    "find_module",
    "grad_cam_plus_plus_weights",
    "grad_cam_weights",
    "model_logits",
    "normalize_maps",
    "seg_grad_cam_targets",
    "upsample_maps",
]
