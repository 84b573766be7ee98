"""Adapter: segmentation_models_pytorch (``pip install "segaudit[smp]"``).

``--model smp:Unet --model-args '{"encoder_name": "resnet18", "classes": 6}' --weights my.pth
--classes classes.txt``: the model is built as ``smp.create_model("Unet", **model_args)`` with
``encoder_weights=None`` (nothing is downloaded; the weights come from ``--weights``, a
``torch.save(model.state_dict())`` file) and loaded strictly. ``--model-args`` are exactly the constructor's
keyword arguments, as JSON (inline or a ``.json`` file).

Default CAM layer: ``decoder``, the decoder's output, which every path from the encoder (skip connections
included) passes through before the segmentation head. smp's heads upsample with
``nn.UpsamplingBilinear2d`` (``align_corners=True``) when the decoder works below the input's resolution
(FPN, DeepLabV3+): that is not the ``align_corners=False`` upsampling the engine's closed form covers, so
these models take its full-resolution path (Unet's decoder already ends at full resolution).
"""

from __future__ import annotations

from pathlib import Path

import torch

from segaudit.models import loaded
from segaudit.models.adapters.state_dicts import read_state_dict
from segaudit.models.adapters.wrapper import SegmentationAdapter, read_class_names
from segaudit.models.checkpoint import state_dict_mismatch
from segaudit.models.loaded import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, ModelLoadError

__all__ = ["load_smp"]

#: smp's decoders expect sides divisible by 32 (five encoder stages); a common training size
SMP_INPUT_SIZE = 512


def load_smp(arch: str, model_args: dict | None, weights: str | None, classes, device: str | torch.device,
             require_classes: bool = True, input_size: int = SMP_INPUT_SIZE) -> LoadedModel:
    """An smp model ``arch`` built from ``model_args`` with the weights in ``weights`` (see the module docstring)."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise ModelLoadError("smp models need segmentation_models_pytorch: pip install 'segaudit[smp]'") from None
    args = {"encoder_weights": None, **(model_args or {})}
    try:
        module = smp.create_model(arch, **args)
    except Exception as exc:  # noqa: BLE001 (KeyError/TypeError/ValueError for unknown arch, encoder or argument)
        first = loaded.first_line(exc)
        raise ModelLoadError(f"cannot build smp:{arch} with --model-args {model_args or {}} "
                             f"({type(exc).__name__}: {first})") from None
    num_classes = int(args.get("classes", 1))
    random_weights = weights is None or str(weights).lower() == "none"
    if classes is None and not require_classes:
        names = tuple(f"class_{i}" for i in range(num_classes))
    else:
        names = read_class_names(classes, num_classes, f"smp:{arch} (classes={num_classes} in --model-args)")
    if not random_weights:
        state = read_state_dict(weights, f"smp:{arch}")
        problem = state_dict_mismatch(module, state, num_classes)
        if problem:
            raise ModelLoadError(f"{weights} does not fit smp:{arch} with --model-args {model_args or {}}: {problem}")
        module.load_state_dict(state, strict=False)
    adapter = loaded.freeze(SegmentationAdapter(module), device)
    return LoadedModel(
        name=f"smp:{arch}:{Path(weights).name}" if not random_weights else f"smp:{arch}:random", module=adapter,
        class_names=names, input_size=input_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, default_layer="decoder",
        sha256="" if random_weights else loaded.sha256_file(weights), arch=f"smp:{arch}",
    )
