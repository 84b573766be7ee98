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
``"<torchvision name>"`` with ``weights="my.pth"``, ``"smp:<Arch>"``, ``"hf:<folder>"``, ``"torchscript:<file>"``
    A user's own model through an adapter (:mod:`segaudit.models.adapters`; class names with ``classes=``,
    constructor arguments with ``model_args=``, or both in a JSON spec, :mod:`segaudit.models.specs`).

Every loaded model is in ``eval()`` mode with ``requires_grad`` off on all parameters: CAMs take gradients
with respect to feature maps only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segaudit.models.checkpoint import (
    CHECKPOINT_FORMAT,
    check_preprocessing,
    state_dict_mismatch,
    validate_checkpoint,
)
from segaudit.models.classifier import (
    CHECKPOINT_CLASSIFIERS,
    IMAGENET_CLASSIFIERS,
    IMAGENET_INPUT_SIZE,
    ImageNetClassifier,
    build_checkpoint_classifier,
    build_imagenet_backbone,
    load_imagenet_mapping,
)
from segaudit.models.loaded import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PYTHON_MODELS,
    LoadedModel,
    ModelLoadError,
    register_model,
    sha256_file,
)
from segaudit.models.loaded import freeze as _freeze
from segaudit.models.shipped import (
    _DEMO_MODELS,
    demo_checkpoint_path,
    demo_classifier_path,
    demo_detector_path,
    demo_fcn_checkpoint_path,
)
from segaudit.models.vgg_fcn import VGG_FCN_DEFAULT_LAYER, vgg_fcn

__all__ = [
    "register_model",
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
    "CHECKPOINT_ARCHITECTURES",
]

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
    """Names of the modules a CAM can hook, depth-first order: those with parameters or children, and the
    parameter-free layers that output feature maps (activations, pooling, upsampling: ``features.22``, the
    ReLU ending the VGG-FCN's last block, is its default layer)."""
    return [name for name, child in module.named_modules()
            if name and (any(True for _ in child.parameters()) or not isinstance(child, _NOT_FEATURE_MAPS))]


#: parameter-free modules that are not a feature map worth a CAM (they pass their input through)
_NOT_FEATURE_MAPS = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Flatten)
#: architectures a segaudit checkpoint may name (:func:`save_checkpoint` refuses others: they could not be
#: loaded back); everything else is audited through an adapter (:mod:`segaudit.models.adapters`)
CHECKPOINT_ARCHITECTURES = (*DEFAULT_LAYERS, *SEGAUDIT_SEGMENTATION, *DETECTION_LAYERS, *CHECKPOINT_CLASSIFIERS)


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
    """Write a segaudit checkpoint (only tensors, strings and numbers) and return its SHA-256.

    Parameters
    ----------
    module : nn.Module
        The model; its ``state_dict()`` is saved.
    path : str or Path
        Where to write (folders are created).
    arch : str
        One of :data:`CHECKPOINT_ARCHITECTURES` (the architecture segaudit rebuilds when loading); any other
        model is audited through an adapter instead (``smp:``, ``hf:``, ``torchscript:``, ``adapt``).
    class_names : sequence of str
        The ``K`` class names, background first; ``K`` must be the model's number of outputs.
    input_size : int
        Side, in pixels, of the square every image is letterboxed to before the model sees it: use the
        size the model was trained or evaluated at (torchvision's segmentation weights: 520).
    mean, std : 3 floats
        Per-channel normalisation of RGB in [0, 1] the model was trained with.
    extra : dict, optional
        More plain values to keep (detectors: their thresholds, added automatically).

    Raises
    ------
    ModelLoadError
        An architecture segaudit cannot load back, bad preprocessing values, or weights that do not fit
        ``arch`` with ``len(class_names)`` classes: nothing is written then.
    """
    if arch not in CHECKPOINT_ARCHITECTURES:
        raise ModelLoadError(f"save_checkpoint: arch {arch!r} cannot be loaded back; use one of "
                             f"{', '.join(CHECKPOINT_ARCHITECTURES)}, or audit the module through an adapter "
                             "(segaudit.models.adapt, smp:, hf:, torchscript:)")
    input_size, mean, std = check_preprocessing(input_size, mean, std, where="save_checkpoint")
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if arch in DETECTION_LAYERS:  # a detector's thresholds decide what it reports: keep them with it
        from segaudit.cam.detection import detection_settings

        extra = {"detection": detection_settings(module), **(extra or {})}
    rebuilt = _rebuild(arch, len(class_names), meta=True)
    problem = state_dict_mismatch(rebuilt, state, len(class_names))
    if problem:
        raise ModelLoadError(f"save_checkpoint: the module does not fit {arch}: {problem}")
    payload = {
        "format": CHECKPOINT_FORMAT,
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


def _rebuild(arch: str, num_classes: int, meta: bool = False) -> nn.Module:
    """``arch`` with random weights (on the meta device: structure only, no memory, to compare shapes)."""
    build = build_checkpoint_classifier if arch in CHECKPOINT_CLASSIFIERS else build_architecture
    if meta:
        with torch.device("meta"):
            return build(arch, num_classes)
    return build(arch, num_classes)


def _load_checkpoint(path: Path, name: str, device: str | torch.device) -> LoadedModel:
    """A segaudit checkpoint, its fields checked (:func:`segaudit.models.checkpoint.validate_checkpoint`)
    and its weights matched to the architecture before anything is built on ``device``."""
    if _is_torchscript(path):
        raise ModelLoadError(f"{path} is a TorchScript file: use --model torchscript:{path} --classes classes.txt")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError for code-carrying files, RuntimeError for junk
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"refusing to load {path}: not a plain-tensor checkpoint loadable with weights_only=True ({first})"
        ) from None
    payload = validate_checkpoint(payload, path, CHECKPOINT_ARCHITECTURES)
    arch, class_names = payload["arch"], tuple(payload["class_names"])
    problem = state_dict_mismatch(_rebuild(arch, len(class_names), meta=True), payload["state_dict"],
                                  len(class_names))
    if problem:
        raise ModelLoadError(f"{path}: field 'state_dict' does not fit {arch} with {len(class_names)} "
                             f"'class_names': {problem}")
    if arch in DETECTION_LAYERS:
        return _load_detector_checkpoint(payload, path, name, device)
    module = _rebuild(arch, len(class_names))
    module.load_state_dict(payload["state_dict"], strict=False)  # fits: checked above
    return LoadedModel(
        name=name,
        module=_freeze(module, device),
        class_names=class_names,
        input_size=payload["input_size"],
        mean=payload["mean"],
        std=payload["std"],
        default_layer={**DEFAULT_LAYERS, **SEGAUDIT_SEGMENTATION, **CHECKPOINT_CLASSIFIERS}[arch],
        sha256=sha256_file(path),
        arch=arch,
        task="classification" if arch in CHECKPOINT_CLASSIFIERS else "segmentation",
    )


def _is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip holding compiled ``code/``)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in entry for entry in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


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
    module.load_state_dict(payload["state_dict"], strict=False)  # checked by _load_checkpoint
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
            f"{arch} needs weights: pass --weights DEFAULT (downloads), a torchvision enum member, or a "
            "state-dict file with --classes"
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
    classes: str | list[str] | tuple[str, ...] | None = None,
    model_args: dict | str | None = None,
    layers_only: bool = False,
) -> LoadedModel:
    """Load a model by name, file or spec (see the module docstring and :mod:`segaudit.models.specs`).

    ``class_mapping`` (ImageNet classifiers only): dataset class -> ImageNet classes, a JSON path or a
    dict (:func:`segaudit.models.classifier.load_imagenet_mapping`); the default is the path after ``:`` in
    ``spec`` (``"resnet50:my_classes.json"``), else the shipped Pascal VOC mapping. ``classes``: the class
    names of a model that does not carry them (a list or a file, one name per line, background first);
    ``model_args``: constructor arguments (``smp:`` models). Both may also come inside ``spec``.
    ``layers_only``: the model is only looked at (``segaudit layers``): ``weights="none"`` builds the
    architecture with random weights, and class names may be missing.

    Raises
    ------
    ModelLoadError
        Unknown name, missing file, refused checkpoint (naming the bad field), weights that do not fit the
        architecture, or weights that cannot be downloaded: always one line saying what to do.
    """
    from segaudit.models.specs import parse_spec, read_model_args

    if spec in PYTHON_MODELS:  # registered in this process by segaudit.audit(model=<nn.Module>)
        return PYTHON_MODELS[spec]
    parsed = parse_spec(spec)
    spec, classes = parsed.model, classes if classes is not None else parsed.classes
    model_args = read_model_args(model_args) if model_args is not None else parsed.args
    if parsed.weights is not None and weights in (None, "DEFAULT"):
        weights = parsed.weights
    if spec in _DEMO_MODELS:
        path_of, hint = _DEMO_MODELS[spec]
        if not path_of().is_file():
            raise ModelLoadError(f"the {spec} checkpoint is missing at {path_of()}; run {hint}")
        return _load_checkpoint(path_of(), spec, device)
    adapted = _load_adapted(spec, weights, device, classes, model_args, layers_only)
    if adapted is not None and parsed.preprocessing:  # the spec's input_size / mean / std win
        chosen = {"input_size": adapted.input_size, "mean": adapted.mean, "std": adapted.std, **parsed.preprocessing}
        size, mean, std = check_preprocessing(chosen["input_size"], chosen["mean"], chosen["std"], where="model spec")
        adapted = dataclasses.replace(adapted, input_size=size, mean=mean, std=std)
    if adapted is not None:
        return adapted
    random_weights = weights is None or str(weights).lower() == "none"
    classifier, _, mapping_file = spec.removeprefix("torchvision:").partition(":")
    if classifier in IMAGENET_CLASSIFIERS:
        if layers_only and random_weights:
            return _random_for_layers(classifier, device, "classification")
        return _load_torchvision_classifier(classifier, weights, device, class_mapping or mapping_file or None)
    arch = spec.removeprefix("torchvision:")
    if arch in TORCHVISION_DETECTION:
        if layers_only and random_weights:
            return _random_for_layers(arch, device, "detection")
        return _load_torchvision_detector(arch, weights, device)
    path = Path(spec)
    if path.suffix in {".pt", ".pth", ".ts"} or path.exists():
        if not path.is_file():
            raise ModelLoadError(f"checkpoint not found: {path}")
        return _load_checkpoint(path, str(path), device)
    raise ModelLoadError(
        f"unknown model {spec!r}; use 'demo', 'demo-fcn', 'demo-classifier', 'demo-detector', a checkpoint path, "
        "smp:<Arch>, hf:<folder>, torchscript:<file>, or one of: "
        f"{', '.join((*TORCHVISION_SEGMENTATION, *TORCHVISION_DETECTION, *TORCHVISION_CLASSIFIERS))}"
    )




def _load_adapted(spec: str, weights, device, classes, model_args, layers_only: bool) -> LoadedModel | None:
    """The model through an adapter (:mod:`segaudit.models.adapters`), or None if ``spec`` names none."""
    from segaudit.models import adapters

    arch = spec.removeprefix("torchvision:")
    is_file = weights is not None and str(weights).lower() not in {"none", "default"} and (
        Path(weights).suffix in {".pt", ".pth", ".bin"} or Path(weights).is_file())
    if arch in DEFAULT_LAYERS:
        if is_file or (layers_only and (weights is None or str(weights).lower() == "none")):
            return adapters.load_torchvision_state_dict(arch, weights, classes, device, require_classes=not layers_only)
        return _load_torchvision(arch, weights, device)
    if spec.startswith("smp:"):
        return adapters.load_smp(spec.removeprefix("smp:"), model_args, weights, classes, device,
                                 require_classes=not layers_only)
    if spec.startswith("hf:"):
        return adapters.load_huggingface(spec.removeprefix("hf:"), device, weights=weights)
    if spec.startswith("torchscript:") or (Path(spec).is_file() and _is_torchscript(Path(spec))):
        return adapters.load_torchscript(spec.removeprefix("torchscript:"), classes, device,
                                         require_classes=not layers_only)
    return None


def _random_for_layers(arch: str, device, task: str) -> LoadedModel:
    """A torchvision detector or ImageNet classifier with random weights, only to list its layers."""
    if task == "detection":
        module, layer, names = build_architecture(arch, 91), DETECTION_LAYERS[arch], 91
    else:
        module = ImageNetClassifier(build_imagenet_backbone(arch), load_imagenet_mapping(None))
        layer, names = IMAGENET_CLASSIFIERS[arch], len(module.class_names)
    return LoadedModel(name=f"{arch}:random", module=_freeze(module, device),
                       class_names=tuple(f"class_{i}" for i in range(names)), input_size=IMAGENET_INPUT_SIZE,
                       mean=IMAGENET_MEAN, std=IMAGENET_STD, default_layer=layer, sha256="", arch=arch, task=task)
