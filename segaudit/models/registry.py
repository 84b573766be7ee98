"""Model registry: torchvision segmentation models by name, local checkpoints, and the shipped demo model.

Three ways to name a model (:func:`load_model`):

``"demo"``
    The LR-ASPP MobileNetV3 trained on segaudit's synthetic shapes (``segaudit/assets/``; see its model card).
``"<torchvision name>"`` or ``"torchvision:<name>"``
    One of :data:`TORCHVISION_SEGMENTATION` with a torchvision weights enum member (``weights="DEFAULT"``,
    ``"COCO_WITH_VOC_LABELS_V1"``, or a full ``"DeepLabV3_ResNet50_Weights.DEFAULT"``). Weights download as
    torchvision does; offline, the error names the URL and where to put the file.
``"maskrcnn_resnet50_fpn"``, ``"maskrcnn_resnet50_fpn_v2"``
    torchvision Mask R-CNN detectors (:data:`TORCHVISION_DETECTION`, ``task="detection"``) with their weights
    enums (``MaskRCNN_ResNet50_FPN_Weights``, ``MaskRCNN_ResNet50_FPN_V2_Weights``; COCO classes, index 0
    background), explained per detection by :mod:`segaudit.cam.detection`.
``"demo-classifier"``
    The small multi-label classifier trained on the same synthetic shapes (``task="classification"``).
``"<classifier>"``, ``"torchvision:<classifier>"`` or ``"<classifier>:<mapping.json>"``
    One of :data:`TORCHVISION_CLASSIFIERS` (VGG16/19, ResNet50/101/152, ``task="classification"``) with a
    torchvision ImageNet weights enum member, read over dataset classes through a mapping from dataset
    classes to ImageNet classes (:class:`segaudit.models.classifier.ImageNetClassifier`: class score = log-odds
    of the summed ImageNet softmax of the mapped classes). The mapping is a JSON file (``class_mapping=``,
    or after a colon in the name), by default the shipped Pascal VOC one (``assets/voc_to_imagenet.json``).
``"path/to/checkpoint.pt"``
    A segaudit checkpoint (:func:`save_checkpoint`): a dict of plain tensors and strings, loaded with
    ``torch.load(..., weights_only=True)`` so a file cannot run code when loaded.

Every loaded model is in ``eval()`` mode with ``requires_grad`` off on all parameters: CAMs take gradients
with respect to feature maps only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segaudit.models.classifier import (
    CHECKPOINT_CLASSIFIERS,
    IMAGENET_CLASSIFIERS,
    IMAGENET_INPUT_SIZE,
    ImageNetClassifier,
    build_checkpoint_classifier,
    build_imagenet_backbone,
    load_imagenet_mapping,
)
from segaudit.models.vgg_fcn import VGG_FCN_DEFAULT_LAYER, vgg_fcn

__all__ = [
    "TORCHVISION_SEGMENTATION",
    "TORCHVISION_CLASSIFIERS",
    "demo_classifier_path",
    "TORCHVISION_DETECTION",
    "DEFAULT_LAYERS",
    "DETECTION_LAYERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedModel",
    "ModelLoadError",
    "load_model",
    "build_architecture",
    "save_checkpoint",
    "demo_checkpoint_path",
    "demo_detector_path",
    "demo_fcn_checkpoint_path",
    "candidate_layers",
    "sha256_file",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision segmentation builders segaudit knows, and their default CAM layer: the deepest *backbone*
#: layer that every path from the input to the output passes through, so its gradients carry the whole
#: prediction (Grad-CAM's "last convolutional layer", generalised to decoders with skip branches). For FCN
#: and DeepLabV3 that is the backbone's last stage (the auxiliary head is removed). LR-ASPP adds a stride-8
#: branch taken at ``backbone.4`` straight to the classifier, so ``backbone.16`` would miss it: on the demo
#: model, Grad-CAM at ``backbone.16`` is zero after ReLU for every class, at ``backbone.4`` its maximum
#: lies inside the labelled object 93% of the time.
DEFAULT_LAYERS: dict[str, str] = {
    "fcn_resnet50": "backbone.layer4",
    "fcn_resnet101": "backbone.layer4",
    "deeplabv3_resnet50": "backbone.layer4",
    "deeplabv3_resnet101": "backbone.layer4",
    "deeplabv3_mobilenet_v3_large": "backbone.16",
    "lraspp_mobilenet_v3_large": "backbone.4",
}
TORCHVISION_SEGMENTATION = tuple(DEFAULT_LAYERS)
#: segaudit's own segmentation architectures (checkpoints only) and their default CAM layer:
#: ``vgg_fcn`` (:mod:`segaudit.models.vgg_fcn`), a plain chain of layers that CNN-Fixations can trace.
SEGAUDIT_SEGMENTATION: dict[str, str] = {"vgg_fcn": VGG_FCN_DEFAULT_LAYER}
#: torchvision ImageNet classifiers (default layers: :data:`segaudit.models.classifier.IMAGENET_CLASSIFIERS`).
TORCHVISION_CLASSIFIERS = tuple(IMAGENET_CLASSIFIERS)

#: torchvision's segmentation weights were trained and evaluated at this resize (their transforms' resize_size).
_TORCHVISION_INPUT_SIZE = 520

#: Mask R-CNN architectures (``task="detection"``) and their default CAM layer (see
#: :mod:`segaudit.cam.detection`). ResNet-FPN: the backbone's last stage, which every detection's score
#: depends on through the FPN's top-down path, whatever pyramid level its box is pooled from.
#: ``maskrcnn_mobilenet_v3_small_fpn`` is segaudit's compact detector (no torchvision weights; checkpoints
#: only, see :func:`build_architecture`): at its 128 px input every box is smaller than 224 px, so RoIAlign
#: pools every box from the finest level (``k = floor(4 + log2(sqrt(area) / 224))`` clamped to it), and that
#: level's output ``backbone.fpn.layer_blocks.0`` is the last feature map all scores are read from. Measured
#: on the shipped detector (demo val, first 40 images, map vs own instance mask), pointing game of LayerCAM /
#: HiResCAM / Grad-CAM: 0.84 / 0.76 / 0.23 there, 0.16 / 0.21 / 0.03 at the stride-32 ``backbone.body.12``.
DETECTION_LAYERS: dict[str, str] = {
    "maskrcnn_resnet50_fpn": "backbone.body.layer4",
    "maskrcnn_resnet50_fpn_v2": "backbone.body.layer4",
    "maskrcnn_mobilenet_v3_small_fpn": "backbone.fpn.layer_blocks.0",
}
TORCHVISION_DETECTION = ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2")
#: torchvision's Mask R-CNN weights were trained with shorter sides of 800 (at most 1333); segaudit feeds
#: 800-pixel letterboxed squares (a multiple of the transform's size_divisible, 32).
_DETECTION_INPUT_SIZE = 800
#: Detections a pretrained detector reports (and the audit explains): score >= 0.5, torchvision's box
#: score threshold being 0.05 (for mAP evaluation, up to 100 low-confidence boxes per image).
_DETECTION_SCORE_THRESHOLD = 0.5


class ModelLoadError(Exception):
    """A model cannot be loaded; the message says why and what to do, in one line."""


@dataclass
class LoadedModel:
    """A segmentation model ready for auditing.

    Parameters
    ----------
    name : str
        How the user named it (``"demo"``, ``"deeplabv3_resnet50"``, a path).
    module : nn.Module
        In eval mode, parameters frozen; ``module(x)`` returns logits ``(B, K, H, W)`` or torchvision's
        ``{"out": logits}`` (a classifier: per-image presence log-odds ``(B, K)``, :mod:`segaudit.models.classifier`).
    class_names : tuple of str
        ``K`` class names, index 0 = background.
    input_size : int
        Side of the square the images are letterboxed to.
    mean, std : tuple of float
        Per-channel normalisation of RGB in [0, 1].
    default_layer : str
        Dotted module name of the default CAM feature layer.
    sha256 : str
        SHA-256 of the weights file ("" for random weights).
    arch : str
        torchvision builder name.
    task : str
        What ``module`` outputs: ``"segmentation"`` (per-pixel class logits), ``"classification"`` (per-image
        class logits ``(B, K)``) or ``"detection"`` (instance detections).
    """

    name: str
    module: nn.Module
    class_names: tuple[str, ...]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_layer: str
    sha256: str
    arch: str
    task: str = "segmentation"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def build_architecture(arch: str, num_classes: int) -> nn.Module:
    """A torchvision segmentation architecture with random weights and ``num_classes`` outputs."""
    if arch in DETECTION_LAYERS:
        return _build_detector(arch, num_classes)
    if arch == "vgg_fcn":
        return vgg_fcn(num_classes)
    if arch not in DEFAULT_LAYERS:
        raise ModelLoadError(f"unknown architecture {arch!r}; known: {', '.join(TORCHVISION_SEGMENTATION)}")
    import torchvision.models.segmentation as seg

    builder = getattr(seg, arch)
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if not arch.startswith("lraspp"):
        kwargs["aux_loss"] = False
    return builder(**kwargs)


def _build_detector(arch: str, num_classes: int) -> nn.Module:
    """A Mask R-CNN with random weights (BatchNorm, not torchvision's frozen BatchNorm of pretrained backbones).

    ``maskrcnn_mobilenet_v3_small_fpn``, segaudit's compact detector (about 2.3 M parameters): the
    MobileNetV3-Small features with a 64-channel FPN on their stride-8, 16 and 32 stages (``3``, ``8``,
    ``12``) plus a max-pooled level, anchors 16-128 px, a 256-wide box head and a 64-channel mask head
    (torchvision's heads at a quarter of their width), RoIAlign with one sample per bin (its backward
    dominated a CPU training step with two).
    """
    from torchvision.models import detection

    if arch in TORCHVISION_DETECTION:
        return getattr(detection, arch)(weights=None, weights_backbone=None, num_classes=num_classes)
    from torchvision.models import mobilenet_v3_small
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    width, levels = 64, ["0", "1", "2"]
    backbone = BackboneWithFPN(mobilenet_v3_small(weights=None).features, {"3": "0", "8": "1", "12": "2"},
                               [24, 48, 576], width, extra_blocks=LastLevelMaxPool())
    return detection.MaskRCNN(  # num_classes is given to the predictors (MaskRCNN wants None with them)
        backbone, None,
        rpn_anchor_generator=AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4),
        box_roi_pool=MultiScaleRoIAlign(levels, 7, 1), box_head=TwoMLPHead(width * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes), mask_roi_pool=MultiScaleRoIAlign(levels, 14, 1),
        mask_head=MaskRCNNHeads(width, (width,) * 4, 1), mask_predictor=MaskRCNNPredictor(width, width, num_classes),
    )


def candidate_layers(module: nn.Module) -> list[str]:
    """Names of the modules a CAM can hook: those with parameters or children, depth-first order."""
    return [name for name, child in module.named_modules() if name and any(True for _ in child.parameters())]


def _freeze(module: nn.Module, device: str | torch.device) -> nn.Module:
    """Eval mode, frozen parameters, channels-last weights (faster convolutions forward and backward:
    measured on 2 CPU cores, deeplabv3_mobilenet_v3_large at 320 px, inference 0.30 s vs 0.49 s)."""
    module.eval().to(device=device, memory_format=torch.channels_last)
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def save_checkpoint(
    module: nn.Module,
    path: str | Path,
    *,
    arch: str,
    class_names: tuple[str, ...] | list[str],
    input_size: int,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write a segaudit checkpoint (only tensors, strings and numbers) and return its SHA-256."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if arch in DETECTION_LAYERS:  # a detector's thresholds decide what it reports: keep them with it
        from segaudit.cam.detection import detection_settings

        extra = {"detection": detection_settings(module), **(extra or {})}
    payload = {
        "format": "segaudit-checkpoint-v1",
        "arch": arch,
        "class_names": list(class_names),
        "input_size": int(input_size),
        "mean": list(mean),
        "std": list(std),
        "state_dict": state,
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return sha256_file(path)


def _load_checkpoint(path: Path, name: str, device: str | torch.device) -> LoadedModel:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError for code-carrying files, RuntimeError for junk
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"refusing to load {path}: not a plain-tensor checkpoint loadable with weights_only=True ({first})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != "segaudit-checkpoint-v1":
        raise ModelLoadError(
            f"{path} is not a segaudit checkpoint (expected a dict with format='segaudit-checkpoint-v1'); "
            "for a torchvision state dict use --model torchvision:<arch> --weights <file>"
        )
    arch = payload["arch"]
    if arch in DETECTION_LAYERS:
        return _load_detector_checkpoint(payload, path, name, device)
    if arch in CHECKPOINT_CLASSIFIERS:
        return _load_classifier_checkpoint(payload, path, name, device)
    class_names = tuple(payload["class_names"])
    module = build_architecture(arch, len(class_names))
    module.load_state_dict(payload["state_dict"])
    return LoadedModel(
        name=name,
        module=_freeze(module, device),
        class_names=class_names,
        input_size=int(payload["input_size"]),
        mean=tuple(payload["mean"]),
        std=tuple(payload["std"]),
        default_layer={**DEFAULT_LAYERS, **SEGAUDIT_SEGMENTATION}[arch],
        sha256=sha256_file(path),
        arch=arch,
    )


def _detector(
    module: nn.Module, name: str, arch: str, class_names: tuple[str, ...], input_size: int, sha256: str,
    device: str | torch.device, mean: tuple = IMAGENET_MEAN, std: tuple = IMAGENET_STD,
) -> LoadedModel:
    """A detector as a :class:`LoadedModel` whose transform is the identity on our normalised squares."""
    from segaudit.cam.detection import configure_detection_transform

    try:
        configure_detection_transform(module, input_size)
    except ValueError as exc:
        raise ModelLoadError(f"{name}: {exc}") from None
    return LoadedModel(
        name=name, module=_freeze(module, device), class_names=class_names, input_size=input_size,
        mean=tuple(mean), std=tuple(std), default_layer=DETECTION_LAYERS[arch], sha256=sha256, arch=arch,
        task="detection",
    )


def _load_detector_checkpoint(payload: dict, path: Path, name: str, device: str | torch.device) -> LoadedModel:
    from segaudit.cam.detection import apply_detection_settings

    arch, class_names = payload["arch"], tuple(payload["class_names"])
    module = build_architecture(arch, len(class_names))
    # a fine-tuned pretrained detector has FrozenBatchNorm2d (no num_batches_tracked); the rebuilt one has
    # BatchNorm2d, which computes the same in eval mode: only those counters may be missing
    missing, unexpected = module.load_state_dict(payload["state_dict"], strict=False)
    missing = [key for key in missing if not key.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ModelLoadError(f"{path}: state dict does not fit {arch} (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]})")
    apply_detection_settings(module, (payload.get("extra") or {}).get("detection", {}))
    return _detector(module, name, arch, class_names, int(payload["input_size"]), sha256_file(path), device,
                     payload["mean"], payload["std"])


def _load_torchvision_detector(arch: str, weights: str | None, device: str | torch.device) -> LoadedModel:
    from torchvision.models import detection

    if weights is None or weights.lower() == "none" or Path(weights).is_file():
        raise ModelLoadError(
            f"{arch} needs torchvision weights (--weights DEFAULT downloads them, or an enum member); for a "
            "fine-tuned state dict, write a segaudit checkpoint with segaudit.models.registry.save_checkpoint"
        )
    enum_member = _resolve_weights(arch, weights)
    url = enum_member.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    try:
        module = getattr(detection, arch)(weights=enum_member, weights_backbone=None,
                                          box_score_thresh=_DETECTION_SCORE_THRESHOLD)
    except OSError as exc:  # urllib.error.URLError is an OSError
        raise ModelLoadError(
            f"cannot download {arch} weights from {url} ({exc.__class__.__name__}); offline, place the file "
            f"at {cached} or pass a local checkpoint"
        ) from None
    class_names = tuple("background" if c == "__background__" else c for c in enum_member.meta["categories"])
    return _detector(module, f"torchvision:{arch}", arch, class_names, _DETECTION_INPUT_SIZE,
                     sha256_file(cached) if cached.is_file() else "", device)


def _load_classifier_checkpoint(payload: dict, path: Path, name: str, device: str | torch.device) -> LoadedModel:
    arch, class_names = payload["arch"], tuple(payload["class_names"])
    module = build_checkpoint_classifier(arch, len(class_names))
    module.load_state_dict(payload["state_dict"])
    return LoadedModel(
        name=name, module=_freeze(module, device), class_names=class_names, input_size=int(payload["input_size"]),
        mean=tuple(payload["mean"]), std=tuple(payload["std"]), default_layer=CHECKPOINT_CLASSIFIERS[arch],
        sha256=sha256_file(path), arch=arch, task="classification",
    )


def _load_torchvision_classifier(
    arch: str, weights: str | None, device: str | torch.device, class_mapping: str | Path | dict | None
) -> LoadedModel:
    if weights is None or weights.lower() == "none" or Path(weights).is_file():
        raise ModelLoadError(
            f"{arch} needs torchvision ImageNet weights: pass --weights DEFAULT (downloads) or an enum member; "
            "offline, place the weights file in torch's hub cache under the enum's file name"
        )
    try:
        mapping = load_imagenet_mapping(class_mapping)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    enum_member = _resolve_weights(arch, weights)
    if len(enum_member.meta.get("categories") or ()) != 1000:
        raise ModelLoadError(f"{enum_member} has no ImageNet-1k classifier head; use DEFAULT or IMAGENET1K_V1")
    url = enum_member.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    try:
        backbone = build_imagenet_backbone(arch, enum_member)
    except OSError as exc:  # urllib.error.URLError is an OSError
        raise ModelLoadError(
            f"cannot download {arch} weights from {url} ({exc.__class__.__name__}); offline, place the file "
            f"at {cached}"
        ) from None
    module = ImageNetClassifier(backbone, mapping)
    if class_mapping is None:
        source = "voc"
    else:
        source = Path(class_mapping).stem if isinstance(class_mapping, (str, Path)) else "custom-mapping"
    return LoadedModel(
        name=f"torchvision:{arch}:{source}", module=_freeze(module, device), class_names=module.class_names,
        input_size=IMAGENET_INPUT_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        default_layer=IMAGENET_CLASSIFIERS[arch], sha256=sha256_file(cached) if cached.is_file() else "",
        arch=arch, task="classification",
    )


def _resolve_weights(arch: str, weights: str):
    from torchvision.models import get_model_weights, get_weight

    if "." in weights:
        try:
            return get_weight(weights)
        except (ValueError, AttributeError, KeyError):
            raise ModelLoadError(f"unknown torchvision weights {weights!r}") from None
    enum = get_model_weights(arch)
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        valid = ", ".join(["DEFAULT", *enum.__members__])
        raise ModelLoadError(f"unknown weights {weights!r} for {arch}; valid: {valid}") from None


def _load_torchvision(arch: str, weights: str | None, device: str | torch.device) -> LoadedModel:
    import torchvision.models.segmentation as seg

    if weights is None or weights.lower() == "none":
        raise ModelLoadError(
            f"{arch} needs weights: pass --weights DEFAULT (downloads), a torchvision enum member, or a file"
        )
    if Path(weights).is_file():  # a torchvision state dict on disk, e.g. a fine-tuned model
        raise ModelLoadError(
            f"{weights}: raw torchvision state dicts need their class names; convert them with "
            "segaudit.models.registry.save_checkpoint and pass the resulting .pt as --model"
        )
    enum_member = _resolve_weights(arch, weights)
    url = enum_member.url
    try:
        module = getattr(seg, arch)(weights=enum_member, weights_backbone=None)
    except OSError as exc:  # urllib.error.URLError is an OSError
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        raise ModelLoadError(
            f"cannot download {arch} weights from {url} ({exc.__class__.__name__}); offline, place the file "
            f"at {cache} or pass a local checkpoint"
        ) from None
    if getattr(module, "aux_classifier", None) is not None:
        module.aux_classifier = None  # not needed to audit, costs time
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    return LoadedModel(
        name=f"torchvision:{arch}",
        module=_freeze(module, device),
        class_names=tuple("background" if c == "__background__" else c for c in enum_member.meta["categories"]),
        input_size=_TORCHVISION_INPUT_SIZE,
        mean=mean,
        std=std,
        default_layer=DEFAULT_LAYERS[arch],
        sha256=sha256_file(cached) if cached.is_file() else "",
        arch=arch,
    )


def load_model(
    spec: str,
    *,
    weights: str | None = "DEFAULT",
    device: str | torch.device = "cpu",
    class_mapping: str | Path | dict | None = None,
) -> LoadedModel:
    """Load a model by name (see the module docstring).

    ``class_mapping`` (ImageNet classifiers only): dataset class -> ImageNet classes, a JSON path or a
    dict (:func:`segaudit.models.classifier.load_imagenet_mapping`); the default is the path after ``:`` in
    ``spec`` (``"resnet50:my_classes.json"``), else the shipped Pascal VOC mapping.

    Raises
    ------
    ModelLoadError
        Unknown name, missing file, refused checkpoint, or weights that cannot be downloaded.
    """
    if spec == "demo":
        path = demo_checkpoint_path()
        if not path.is_file():
            raise ModelLoadError(f"the demo checkpoint is missing at {path}; run scripts/train_demo_model.py")
        return _load_checkpoint(path, "demo", device)
    if spec == "demo-fcn":
        path = demo_fcn_checkpoint_path()
        if not path.is_file():
            raise ModelLoadError(f"the demo VGG-FCN checkpoint is missing at {path}; run scripts/train_demo_model.py --arch vgg_fcn")
        return _load_checkpoint(path, "demo-fcn", device)
    if spec == "demo-detector":
        path = demo_detector_path()
        if not path.is_file():
            raise ModelLoadError(f"the demo detector is missing at {path}; run scripts/train_demo_detector.py")
        return _load_checkpoint(path, "demo-detector", device)
    if spec == "demo-classifier":
        path = demo_classifier_path()
        if not path.is_file():
            raise ModelLoadError(f"the demo classifier is missing at {path}; run scripts/train_demo_classifier.py")
        return _load_checkpoint(path, "demo-classifier", device)
    classifier, _, mapping_file = spec.removeprefix("torchvision:").partition(":")
    if classifier in IMAGENET_CLASSIFIERS:
        return _load_torchvision_classifier(classifier, weights, device, class_mapping or mapping_file or None)
    arch = spec.removeprefix("torchvision:")
    if arch in DEFAULT_LAYERS:
        return _load_torchvision(arch, weights, device)
    if arch in TORCHVISION_DETECTION:
        return _load_torchvision_detector(arch, weights, device)
    path = Path(spec)
    if path.suffix in {".pt", ".pth"} or path.exists():
        if not path.is_file():
            raise ModelLoadError(f"checkpoint not found: {path}")
        return _load_checkpoint(path, str(path), device)
    raise ModelLoadError(
        f"unknown model {spec!r}; use 'demo', 'demo-classifier', a checkpoint path, or one of: "
        f"{', '.join((*TORCHVISION_SEGMENTATION, *TORCHVISION_DETECTION, *TORCHVISION_CLASSIFIERS))}"
    )
