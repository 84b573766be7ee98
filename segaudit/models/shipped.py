"""The models segaudit ships (``segaudit/assets/``): where their checkpoints are and how each is rebuilt."""

from __future__ import annotations

from pathlib import Path

__all__ = ["demo_checkpoint_path", "demo_fcn_checkpoint_path", "demo_detector_path", "demo_classifier_path"]


def demo_checkpoint_path() -> Path:
    """Path of the shipped demo checkpoint."""
    return Path(__file__).resolve().parents[1] / "assets" / "demo_lraspp_mobilenet_v3_large.pt"


def demo_fcn_checkpoint_path() -> Path:
    """Path of the shipped VGG-FCN checkpoint (``load_model("demo-fcn")``, the model CNN-Fixations can trace)."""
    return Path(__file__).resolve().parents[1] / "assets" / "demo_vgg_fcn.pt"


def demo_detector_path() -> Path:
    """Path of the shipped demo detector (``load_model("demo-detector")``, ``scripts/train_demo_detector.py``)."""
    return Path(__file__).resolve().parents[1] / "assets" / "demo_maskrcnn_mobilenet_v3_small_fpn.pt"


def demo_classifier_path() -> Path:
    """Path of the shipped demo classifier checkpoint."""
    return Path(__file__).resolve().parents[1] / "assets" / "demo_classifier_small_gmp_cnn.pt"


#: the shipped models: name -> (checkpoint path, how to rebuild it)
_DEMO_MODELS = {
    "demo": (demo_checkpoint_path, "scripts/train_demo_model.py"),
    "demo-fcn": (demo_fcn_checkpoint_path, "scripts/train_demo_model.py --arch vgg_fcn"),
    "demo-detector": (demo_detector_path, "scripts/train_demo_detector.py"),
    "demo-classifier": (demo_classifier_path, "scripts/train_demo_classifier.py"),
}
