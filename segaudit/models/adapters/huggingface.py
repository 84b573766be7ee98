"""Adapter: Hugging Face transformers semantic-segmentation models (``pip install "segaudit[hf]"``).

``--model hf:/path/to/folder``: a folder written by ``model.save_pretrained(folder)`` (``config.json`` and
the weights), loaded with ``AutoModelForSemanticSegmentation.from_pretrained(folder)`` offline
(``local_files_only=True``). Class names come from ``config.id2label``. The preprocessing comes from the
folder's ``preprocessor_config.json`` when present (``image_mean``, ``image_std``, ``size``), else ImageNet
statistics at 512 px (SegFormer's ADE20k setting).

The models return ``logits`` at 1/4 of the input's resolution (SegFormer's all-MLP decoder, Xie et al. 2021,
"SegFormer: Simple and Efficient Design for Semantic Segmentation with Transformers"); the adapter upsamples
them bilinearly (``align_corners=False``, as ``post_process_semantic_segmentation`` does), and names the
``decode_head`` as the module whose output it upsamples, so the engine's closed-form pull-back applies.
Default CAM layer: ``decode_head.linear_fuse`` (SegFormer: the 1x1 convolution fusing all four stages,
the last feature map every path passes through; BatchNorm and ReLU follow it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from segaudit.models import loaded
from segaudit.models.adapters.wrapper import SegmentationAdapter, guess_default_layer
from segaudit.models.checkpoint import check_preprocessing
from segaudit.models.loaded import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, ModelLoadError

__all__ = ["load_huggingface"]

HF_INPUT_SIZE = 512
#: default CAM layer per ``config.model_type`` (others: :func:`guess_default_layer`)
HF_DEFAULT_LAYERS = {"segformer": "decode_head.linear_fuse"}


def _preprocessing(folder: Path) -> tuple[int, tuple, tuple]:
    config_file = folder / "preprocessor_config.json"
    if not config_file.is_file():
        return HF_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config_file}: not JSON ({exc})") from None
    size = config.get("size", HF_INPUT_SIZE)
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or HF_INPUT_SIZE
    return check_preprocessing(size, config.get("image_mean", IMAGENET_MEAN), config.get("image_std", IMAGENET_STD),
                               where=str(config_file))


def load_huggingface(folder: str, device: str | torch.device, weights: str | None = None) -> LoadedModel:
    """The model saved in ``folder`` (see the module docstring). ``weights="none"``: the architecture from
    ``config.json`` with random weights (to list layers)."""
    try:
        from transformers import AutoConfig, AutoModelForSemanticSegmentation
    except ImportError:
        raise ModelLoadError("hf: models need transformers: pip install 'segaudit[hf]'") from None
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"hf:{folder}: not a save_pretrained folder (no config.json)")
    random_weights = weights is not None and str(weights).lower() == "none"
    try:
        if random_weights:
            module = AutoModelForSemanticSegmentation.from_config(AutoConfig.from_pretrained(path, local_files_only=True))
        else:
            module = AutoModelForSemanticSegmentation.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 (ValueError for a non-segmentation config, OSError for missing weights)
        first = loaded.first_line(exc)
        raise ModelLoadError(f"hf:{folder}: cannot load a semantic-segmentation model ({type(exc).__name__}: "
                             f"{first})") from None
    id2label = {int(k): v for k, v in module.config.id2label.items()}
    names = tuple(id2label[i] for i in sorted(id2label))
    input_size, mean, std = _preprocessing(path)
    has_head = any(name == "decode_head" for name, _ in module.named_children())
    adapter = loaded.freeze(SegmentationAdapter(module, logits_module="decode_head" if has_head else None), device)
    layer = HF_DEFAULT_LAYERS.get(module.config.model_type) or guess_default_layer(adapter, input_size, len(names))
    return LoadedModel(
        name=f"hf:{folder}", module=adapter, class_names=names, input_size=input_size, mean=mean, std=std,
        default_layer=layer, sha256="" if random_weights else loaded.sha256_file(path),
        arch=f"hf:{module.config.model_type}",
    )
