"""Model registry: torchvision segmentation models by name, local checkpoints, and the shipped demo model.

Three ways to name a model (:func:`load_model`):

``"demo"``
    The LR-ASPP MobileNetV3 trained on segaudit's synthetic shapes (``segaudit/assets/``; see its model card).
``"<torchvision name>"`` or ``"torchvision:<name>"``
    One of :data:`TORCHVISION_SEGMENTATION` with a torchvision weights enum member (``weights="DEFAULT"``,
    ``"COCO_WITH_VOC_LABELS_V1"``, or a full ``"DeepLabV3_ResNet50_Weights.DEFAULT"``). Weights download as
    torchvision does; offline, the error names the URL and where to put the file.
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

__all__ = [
    "TORCHVISION_SEGMENTATION",
    "DEFAULT_LAYERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedModel",
    "ModelLoadError",
    "load_model",
    "build_architecture",
    "save_checkpoint",
    "demo_checkpoint_path",
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

#: torchvision's segmentation weights were trained and evaluated at this resize (their transforms' resize_size).
_TORCHVISION_INPUT_SIZE = 520


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
        ``{"out": logits}``.
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
    return Path(__file__).resolve().parent / "assets" / "demo_lraspp_mobilenet_v3_large.pt"


def build_architecture(arch: str, num_classes: int) -> nn.Module:
    """A torchvision segmentation architecture with random weights and ``num_classes`` outputs."""
    if arch not in DEFAULT_LAYERS:
        raise ModelLoadError(f"unknown architecture {arch!r}; known: {', '.join(TORCHVISION_SEGMENTATION)}")
    import torchvision.models.segmentation as seg

    builder = getattr(seg, arch)
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if not arch.startswith("lraspp"):
        kwargs["aux_loss"] = False
    return builder(**kwargs)


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
        default_layer=DEFAULT_LAYERS[arch],
        sha256=sha256_file(path),
        arch=arch,
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
            "segaudit.models.save_checkpoint and pass the resulting .pt as --model"
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


def load_model(spec: str, *, weights: str | None = "DEFAULT", device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model by name (see the module docstring).

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
    arch = spec.removeprefix("torchvision:")
    if arch in DEFAULT_LAYERS:
        return _load_torchvision(arch, weights, device)
    path = Path(spec)
    if path.suffix in {".pt", ".pth"} or path.exists():
        if not path.is_file():
            raise ModelLoadError(f"checkpoint not found: {path}")
        return _load_checkpoint(path, str(path), device)
    raise ModelLoadError(
        f"unknown model {spec!r}; use 'demo', a checkpoint path, or one of: {', '.join(TORCHVISION_SEGMENTATION)}"
    )
