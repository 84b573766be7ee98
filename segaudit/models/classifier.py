"""Image classifiers as audit models: ImageNet CNNs read over dataset classes, and the demo classifier.

Every classification module segaudit audits maps ``(B, 3, H, W)`` images to per-image **presence
log-odds** ``s`` of shape ``(B, K)`` over the *dataset-facing* class names (index 0 = background, as for
the segmentation models): ``sigmoid(s_c)`` is the probability that class ``c`` is in the image, and ``c``
is predicted present when ``s_c > 0`` (:func:`segaudit.cam.targets.classifier_presence`). One reading
serves single-label ImageNet classifiers and multi-label ones trained with a binary cross-entropy.

``ImageNetClassifier``
    A torchvision ImageNet-1k classifier (VGG16/19, ResNet50/101/152) and a mapping from dataset classes
    to ImageNet classes (:func:`load_imagenet_mapping`; ``assets/voc_to_imagenet.json`` for Pascal VOC).
``SmallGmpCNN``
    The demo classifier's architecture: five convolution blocks, global max pooling and one linear layer,
    trained on the synthetic shapes by ``scripts/train_demo_classifier.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "IMAGENET_CLASSIFIERS",
    "IMAGENET_INPUT_SIZE",
    "CHECKPOINT_CLASSIFIERS",
    "ImageNetClassifier",
    "SmallGmpCNN",
    "build_imagenet_backbone",
    "build_checkpoint_classifier",
    "imagenet_categories",
    "load_imagenet_mapping",
    "voc_mapping_path",
]

#: torchvision ImageNet classifiers segaudit wraps, and their default CAM layer inside
#: :class:`ImageNetClassifier` (the torchvision model is its ``backbone``). ResNet: ``layer4``, the last
#: residual stage (Grad-CAM's "last convolutional layer"). VGG: ``features``, the last convolution block's
#: rectified, max-pooled output (pytorch-grad-cam's ``model.features[-1]``); its unpooled input
#: ``backbone.features.29`` (VGG16) / ``.35`` (VGG19) has twice the resolution and can be given with
#: ``layers=`` through the Python API (the CLI offers only modules with parameters or children).
IMAGENET_CLASSIFIERS: dict[str, str] = {
    "vgg16": "backbone.features",
    "vgg19": "backbone.features",
    "resnet50": "backbone.layer4",
    "resnet101": "backbone.layer4",
    "resnet152": "backbone.layer4",
}

#: Side of the letterbox the ImageNet classifiers see: torchvision's evaluation crop size.
IMAGENET_INPUT_SIZE = 224

#: Classifier architectures a segaudit checkpoint can hold, and their default CAM layer.
CHECKPOINT_CLASSIFIERS: dict[str, str] = {"small_gmp_cnn": "features.6"}


def voc_mapping_path() -> Path:
    """The shipped Pascal VOC -> ImageNet mapping (``segaudit/assets/voc_to_imagenet.json``)."""
    return Path(__file__).resolve().parents[1] / "assets" / "voc_to_imagenet.json"


def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order, as torchvision's weights metadata spells them."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def load_imagenet_mapping(
    source: str | Path | Mapping[str, Sequence[int | str]] | None = None,
    categories: Sequence[str] | None = None,
) -> dict[str, list[int]]:
    """A mapping from dataset class names to ImageNet class indices, checked.

    Parameters
    ----------
    source : path, dict, or None
        A JSON file or a dict: either ``{"classes": {name: [...]}}`` (the shipped file's layout, other
        top-level keys are comments) or ``{name: [...]}``. Each list holds ImageNet indices (0-999) or
        ImageNet category names as torchvision spells them (``"tabby"``, ``"crane bird"``).
        ``None``: the shipped Pascal VOC mapping (:func:`voc_mapping_path`).
    categories : sequence of str, optional
        The 1000 ImageNet names names are resolved against (default :func:`imagenet_categories`).

    Returns
    -------
    dict of str to list of int
        Dataset class -> sorted ImageNet indices, in the file's order; background is not a key.

    Raises
    ------
    ValueError
        Unreadable file, unknown name, index out of range, a class with no ImageNet class, a
        background entry, or a mapping that covers all 1000 classes (background would be empty).
    """
    if source is None:
        source = voc_mapping_path()
    if isinstance(source, (str, Path)):
        try:
            raw: Any = json.loads(Path(source).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read the ImageNet class mapping {source}: {exc}") from None
    else:
        raw = dict(source)
    classes = raw.get("classes", raw) if isinstance(raw, dict) else None
    if not isinstance(classes, dict) or not classes:
        raise ValueError("an ImageNet class mapping is a JSON object {dataset class: [ImageNet indices or names]}")
    names = tuple(categories) if categories is not None else imagenet_categories()
    index_of = {name: i for i, name in enumerate(names)}
    mapping: dict[str, list[int]] = {}
    for dataset_class, members in classes.items():
        if str(dataset_class).strip().lower() in {"background", "_background_", "__background__"}:
            raise ValueError("background is not mapped: it is every ImageNet class no dataset class takes")
        if isinstance(members, (str, int)) or not isinstance(members, Sequence) or not members:
            raise ValueError(f"{dataset_class!r}: expected a non-empty list of ImageNet indices or names")
        indices = set()
        for member in members:
            if isinstance(member, bool) or not isinstance(member, (int, str)):
                raise ValueError(f"{dataset_class!r}: {member!r} is neither an ImageNet index nor a name")
            if isinstance(member, str):
                if member not in index_of:
                    raise ValueError(f"{dataset_class!r}: unknown ImageNet class name {member!r}")
                member = index_of[member]
            if not 0 <= member < len(names):
                raise ValueError(f"{dataset_class!r}: ImageNet index {member} out of range 0-{len(names) - 1}")
            indices.add(member)
        mapping[str(dataset_class)] = sorted(indices)
    if len(set().union(*mapping.values())) == len(names):
        raise ValueError("the mapping takes every ImageNet class, which leaves background empty")
    return mapping


class ImageNetClassifier(nn.Module):
    """An ImageNet-1k classifier read as a presence classifier over dataset classes.

    With ``z`` the backbone's 1000 ImageNet logits, ``p = softmax(z)`` and ``M_c`` the ImageNet classes
    mapped to dataset class ``c`` (``M_0``, background: those mapped to no dataset class), the class score
    is the log-odds of the probability mass of ``M_c``::

        P_c = sum_{i in M_c} p_i
        s_c = log(P_c / (1 - P_c)) = logsumexp_{i in M_c} z_i - logsumexp_{i not in M_c} z_i

    so ``sigmoid(s_c) = P_c`` (the ``score="softmax"`` target is exactly the summed ImageNet softmax
    probability of the mapped classes) and ``c`` is predicted present when ``P_c > 1/2``. The right-hand
    side is how it is computed: stable for ``P_c`` near 0 or 1. A Grad-CAM of ``s_c`` equals, up to a
    positive factor per image, the Grad-CAM of ``P_c``; pytorch-grad-cam's ``ClassifierOutputTarget(i)``
    explains the single logit ``z_i`` instead, which is ``s_c`` only for a one-class ``M_c`` up to terms
    from the other logits.

    Parameters
    ----------
    backbone : nn.Module
        ``x -> (B, 1000)`` ImageNet logits (a torchvision classifier).
    mapping : dict of str to list of int
        Dataset class -> ImageNet indices (:func:`load_imagenet_mapping`); the module's classes are
        ``("background", *mapping)``.
    """

    def __init__(self, backbone: nn.Module, mapping: Mapping[str, Sequence[int]], num_imagenet: int = 1000) -> None:
        super().__init__()
        self.backbone = backbone
        self.class_names = ("background", *mapping)
        members = torch.zeros(len(self.class_names), num_imagenet, dtype=torch.bool)
        for row, indices in enumerate(mapping.values(), start=1):
            members[row, list(indices)] = True
        members[0] = ~members[1:].any(0)
        if not members.any(1).all() or members.all(1).any():
            raise ValueError("every class needs at least one ImageNet class and must leave at least one out")
        self.register_buffer("members", members, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.backbone(x)
        if z.ndim != 2 or z.shape[1] != self.members.shape[1]:
            raise ValueError(f"backbone returned {tuple(z.shape)}, expected (B, {self.members.shape[1]})")
        spread = z.unsqueeze(1)  # (B, 1, N) against members (K, N)
        inside = spread.masked_fill(~self.members, float("-inf")).logsumexp(-1)
        outside = spread.masked_fill(self.members, float("-inf")).logsumexp(-1)
        return inside - outside


def build_imagenet_backbone(arch: str, weights: Any = None) -> nn.Module:
    """A torchvision ImageNet classifier; ``weights`` a weights enum member or ``None`` (random)."""
    if arch not in IMAGENET_CLASSIFIERS:
        raise ValueError(f"unknown ImageNet classifier {arch!r}; known: {', '.join(IMAGENET_CLASSIFIERS)}")
    import torchvision.models as tvm

    return getattr(tvm, arch)(weights=weights)


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class SmallGmpCNN(nn.Module):
    """A small convolutional classifier with a global-max-pooling head, for the offline demo.

    Convolution blocks, then each channel's maximum over positions, then one linear layer:
    ``s_c = sum_k W_ck max_ij A^k_ij + b_c``. Max pooling suits *presence* (is the class anywhere?) better
    than the mean of Zhou et al. 2016 (CVPR, arXiv:1512.04150), which dilutes a small object's evidence
    over the whole image (Oquab et al. 2015, "Is object localization for free?", CVPR, pool class score
    maps the same way): trained alike on the synthetic shapes for 5 epochs, validation mAP 0.99 with max
    pooling, 0.77 with the mean. Grad-CAM at the last block is still the CAM: the gradient of ``s_c`` is
    ``W_ck`` at each channel's maximum, so its spatial mean weights channel ``k`` by ``W_ck / (h w)``.
    Blocks (3x3 convolution, batch norm, ReLU) and resolutions for a 128 px input::

        features.0  3 -> 24, stride 2    64 px
        features.1  24 -> 32             64 px,  features.2 max-pool -> 32 px
        features.3  32 -> 64             32 px,  features.4 max-pool -> 16 px
        features.5  64 -> 128            16 px
        features.6  128 -> 128           16 px   (default CAM layer; receptive field 53 px)
        head        maximum over positions, linear 128 -> K

    Parameters
    ----------
    num_classes : int
        ``K`` outputs: presence log-odds (train with a binary cross-entropy).
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(3, 24, stride=2),
            _block(24, 32),
            nn.MaxPool2d(2),
            _block(32, 64),
            nn.MaxPool2d(2),
            _block(64, 128),
            _block(128, 128),
        )
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_checkpoint_classifier(arch: str, num_classes: int) -> nn.Module:
    """A classifier architecture of :data:`CHECKPOINT_CLASSIFIERS` with random weights."""
    if arch != "small_gmp_cnn":
        raise ValueError(f"unknown classifier architecture {arch!r}; known: {', '.join(CHECKPOINT_CLASSIFIERS)}")
    return SmallGmpCNN(num_classes)
