"""The one interface every model adapter ends in: :class:`SegmentationAdapter` and :func:`adapt`.

An adapter turns a user's model into what the CAM engine expects of ``LoadedModel.module``: ``module(x)``
returns logits ``(B, K, H, W)`` at the input's resolution. :class:`SegmentationAdapter` wraps any
``nn.Module`` (or callable) and

* reads the logits out of whatever it returns (a tensor, ``{"out": ...}``, an object with ``.logits`` such
  as a Hugging Face ``SemanticSegmenterOutput``, a tuple whose first item is the logits, or a user function);
* upsamples logits smaller than the input bilinearly (``align_corners=False``, as Hugging Face's
  ``post_process_semantic_segmentation`` and torchvision's heads do). Such an adapter names the module
  whose output it upsamples (``logits_before_upsampling``), so the engine's closed-form pull-back
  (:mod:`segaudit.cam.upsampling`) serves it too; the engine still checks on every batch that the result
  *is* that upsampling before it takes the fast path;
* keeps the wrapped model's own layer names: the wrapped model's children are registered as the adapter's
  children (the same objects), so ``--layers encoder.layer4`` means what it means in the user's code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segaudit.models.loaded import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedModel,
    ModelLoadError,
    first_line,
    freeze,
)

__all__ = ["SegmentationAdapter", "adapt", "logits_of", "guess_default_layer", "read_class_names"]


def logits_of(output: Any) -> torch.Tensor:
    """The logits tensor in a model's output (see the module docstring); TypeError if there is none."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and isinstance(output.get("out"), torch.Tensor):
        return output["out"]
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the model returns {type(output).__name__}; expected logits (B, K, H, W), {{'out': logits}}, "
                    "an object with .logits, or pass output= to read them")


class SegmentationAdapter(nn.Module):
    """``model`` behind segaudit's interface: ``forward(x)`` returns ``(B, K, H, W)`` logits at ``x``'s size.

    Parameters
    ----------
    model : nn.Module or callable
        The user's model. An ``nn.Module``'s children (and its own parameters) become the adapter's, under
        the same names. A plain callable has no layers to hook (pass an ``nn.Module`` for CAMs).
    output : callable, optional
        Reads the logits out of ``model``'s output (default :func:`logits_of`).
    logits_module : str, optional
        Dotted name (in ``model``) of the module whose output are the logits before the final upsampling
        (``"decode_head"`` for SegFormer); exposed to the engine as ``logits_before_upsampling``.
    """

    def __init__(self, model: nn.Module | Callable, output: Callable[[Any], torch.Tensor] | None = None,
                 logits_module: str | None = None) -> None:
        super().__init__()
        self.__dict__["wrapped"] = model  # not a registered child: its children are ours (same names)
        self._output = output or logits_of
        if isinstance(model, nn.Module):
            for name, child in model.named_children():
                self.add_module(name, child)
            for name, param in model.named_parameters(recurse=False):
                self.register_parameter(name, param)
            for name, buffer in model.named_buffers(recurse=False):
                self.register_buffer(name, buffer)
        modules = dict(self.named_modules())
        if logits_module is not None and logits_module not in modules:
            raise ModelLoadError(f"logits module {logits_module!r} is not a layer of the model")
        self.__dict__["logits_before_upsampling"] = modules.get(logits_module) if logits_module else None

    def _apply(self, fn, *args, **kwargs):  # .to() / .float(): convert the wrapped model (our children with it)
        if isinstance(self.wrapped, nn.Module):
            self.wrapped._apply(fn, *args, **kwargs)
            for name, param in self.wrapped.named_parameters(recurse=False):
                self._parameters[name] = param
            for name, buffer in self.wrapped.named_buffers(recurse=False):
                self._buffers[name] = buffer
        return self

    def train(self, mode: bool = True) -> SegmentationAdapter:
        if isinstance(self.wrapped, nn.Module):
            self.wrapped.train(mode)
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self._output(self.wrapped(x))
        if logits.ndim != 4:
            raise TypeError(f"the model's logits have shape {tuple(logits.shape)}; expected (B, K, H, W)")
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


def guess_default_layer(module: nn.Module, input_size: int, num_classes: int) -> str:
    """A default CAM layer for a model segaudit knows nothing about: the last module to run (one probe
    forward at ``input_size``) that outputs a spatial feature map ``(B, C, h, w)`` with ``C != num_classes``,
    i.e. usually the decoder's last features before the classifier. A heuristic: ``--layers`` overrides it.
    """
    order: list[str] = []
    handles = []
    for name, child in module.named_modules():
        if not name:
            continue

        def hook(_m, _i, out, name=name):
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[1] != num_classes \
                    and min(out.shape[-2:]) > 1:
                order.append(name)

        handles.append(child.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, input_size, input_size, device=_device_of(module)))
    finally:
        for handle in handles:
            handle.remove()
    if not order:
        raise ModelLoadError("no layer of the model outputs a feature map (B, C, h, w); pass default_layer=")
    return order[-1]


def _device_of(module: nn.Module) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def read_class_names(classes: str | list | tuple | None, num_classes: int | None, what: str) -> tuple[str, ...]:
    """Class names from a list, or a text file with one name per line (background first); their number
    must be the model's ``num_classes`` (when known)."""
    from pathlib import Path

    if classes is None:
        raise ModelLoadError(f"{what} does not name its classes: pass --classes FILE (one name per line, "
                             "background first)")
    if isinstance(classes, str):
        path = Path(classes)
        if not path.is_file():
            raise ModelLoadError(f"--classes: file not found: {classes}")
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    else:
        names = tuple(str(name) for name in classes)
    if num_classes is not None and len(names) != num_classes:
        raise ModelLoadError(f"{what} has {num_classes} classes but {len(names)} class names were given")
    if len(set(names)) != len(names):
        raise ModelLoadError(f"--classes: duplicate class names in {classes}")
    return names


def adapt(
    module: nn.Module | Callable,
    *,
    class_names: tuple[str, ...] | list[str],
    input_size: int,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    default_layer: str | None = None,
    output: Callable[[Any], torch.Tensor] | None = None,
    logits_module: str | None = None,
    name: str = "python",
    arch: str = "python",
    sha256: str = "",
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Any ``nn.Module`` (or callable) from Python as a :class:`LoadedModel` the whole audit can use.

    ``module(x)`` may return logits at any resolution, ``{"out": ...}``, an object with ``.logits``, a tuple
    (logits first), or anything ``output`` reads logits from. ``default_layer`` defaults to
    :func:`guess_default_layer`. The module is put in eval mode with frozen parameters (in place).

    Raises
    ------
    ModelLoadError
        A bad ``input_size``, ``mean``/``std``, a class count that does not fit the logits, an unknown layer.
    """
    from segaudit.models.checkpoint import check_preprocessing

    input_size, mean, std = check_preprocessing(input_size, mean, std, where=name)
    wrapped = module if isinstance(module, SegmentationAdapter) else SegmentationAdapter(module, output, logits_module)
    wrapped = freeze(wrapped, device)
    with torch.no_grad():
        try:
            logits = wrapped(torch.zeros(1, 3, input_size, input_size, device=device))
        except Exception as exc:  # noqa: BLE001 (any failure of the user's model is reported in one line)
            first = first_line(exc)
            raise ModelLoadError(f"{name}: a probe forward at {input_size} px failed ({type(exc).__name__}: {first})") from None
    if logits.shape[1] != len(class_names):
        raise ModelLoadError(f"{name} outputs {logits.shape[1]} classes but {len(class_names)} class names were given")
    layers = dict(wrapped.named_modules())
    if default_layer is None:
        default_layer = guess_default_layer(wrapped, input_size, len(class_names))
    elif default_layer not in layers:
        raise ModelLoadError(f"{name}: default layer {default_layer!r} is not a layer of the model")
    return LoadedModel(name=name, module=wrapped, class_names=tuple(class_names), input_size=input_size,
                       mean=mean, std=std, default_layer=default_layer, sha256=sha256, arch=arch)
