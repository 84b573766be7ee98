"""Adapter: a fine-tuned torchvision segmentation model saved as ``torch.save(model.state_dict(), path)``.

``--model deeplabv3_mobilenet_v3_large --weights my.pth --classes classes.txt``. The number of classes is
read from the weights (the classifier's last convolution), the architecture is rebuilt with it and the
weights loaded strictly, except the auxiliary head (``aux_classifier.*``, trained with ``aux_loss=True``):
it is accepted and dropped, the audit explains the main output only. The module is torchvision's own, so
its layer names, default layer and the engine's fast path are those of the pretrained models.
"""

from __future__ import annotations

from pathlib import Path

import torch

from segaudit.models import loaded
from segaudit.models.adapters.state_dicts import read_state_dict
from segaudit.models.adapters.wrapper import read_class_names
from segaudit.models.checkpoint import state_dict_mismatch
from segaudit.models.loaded import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, ModelLoadError

__all__ = ["CLASSIFIER_WEIGHT", "load_torchvision_state_dict"]

#: the state-dict key of each architecture's last classifier convolution, (K, C, 1, 1)
CLASSIFIER_WEIGHT = {
    "fcn_resnet50": "classifier.4.weight",
    "fcn_resnet101": "classifier.4.weight",
    "deeplabv3_resnet50": "classifier.4.weight",
    "deeplabv3_resnet101": "classifier.4.weight",
    "deeplabv3_mobilenet_v3_large": "classifier.4.weight",
    "lraspp_mobilenet_v3_large": "classifier.high_classifier.weight",
}
#: torchvision's segmentation weights were trained and evaluated at this resize (their transforms' resize_size).
TORCHVISION_INPUT_SIZE = 520


def load_torchvision_state_dict(
    arch: str, weights: str | None, classes, device: str | torch.device, require_classes: bool = True,
    input_size: int = TORCHVISION_INPUT_SIZE,
) -> LoadedModel:
    """``arch`` rebuilt around the state dict in ``weights`` (``None``/"none": random weights, 21 classes
    unless ``classes`` says otherwise, to list layers)."""
    from segaudit.models.registry import DEFAULT_LAYERS, build_architecture

    random_weights = weights is None or str(weights).lower() == "none"
    state = {} if random_weights else read_state_dict(weights, f"{arch} state dict")
    key = CLASSIFIER_WEIGHT[arch]
    if not random_weights and key not in state:
        raise ModelLoadError(f"{weights} is not a {arch} state dict (no {key}); is it another architecture?")
    num_classes = int(state[key].shape[0]) if state else None
    if classes is None and not require_classes:
        names = tuple(f"class_{i}" for i in range(num_classes or 21))
    else:
        names = read_class_names(classes, num_classes, f"{weights or arch}")
    module = build_architecture(arch, len(names))
    if state:
        problem = state_dict_mismatch(module, state, len(names), ignore=("aux_classifier.",))
        if problem:
            raise ModelLoadError(f"{weights} does not fit {arch}: {problem}")
        module.load_state_dict({k: v for k, v in state.items() if not k.startswith("aux_classifier.")},
                               strict=False)
    return LoadedModel(
        name=f"{arch}:{Path(weights).name}" if state else f"{arch}:random", module=loaded.freeze(module, device),
        class_names=names, input_size=input_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        default_layer=DEFAULT_LAYERS[arch], sha256=loaded.sha256_file(weights) if state else "", arch=arch,
    )
