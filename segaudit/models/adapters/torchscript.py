"""Adapter: TorchScript files (``torch.jit.save``), ``--model torchscript:model.ts --classes classes.txt``.

PyTorch runs no Python forward hooks inside a TorchScript module ("register_forward_hook is not supported
on ScriptModules"), and CAMs hook a layer. The layers *can* be reached where the scripted forward runs its
top-level modules one after another (a scripted or traced ``nn.Sequential``, or any model whose forward is
that chain): :class:`ScriptedChain` then runs those modules from Python, each behind a small Python
module that hooks work on, under their own names (``"0"``, ``"1"``, ... or the ``OrderedDict`` keys).
That the chain *is* the model is checked on a probe input before anything is audited (outputs equal to
1e-5); a model for which it is not is refused with a one-line reason, not audited wrongly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from segaudit.models import loaded
from segaudit.models.adapters.wrapper import (
    SegmentationAdapter,
    guess_default_layer,
    logits_of,
    read_class_names,
)
from segaudit.models.checkpoint import check_preprocessing
from segaudit.models.loaded import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, ModelLoadError

__all__ = ["ScriptedChain", "load_torchscript"]


class _ScriptedLayer(nn.Module):
    """One scripted module behind a Python ``forward`` (so forward hooks run). Its tensors are frozen (CAMs
    take gradients with respect to feature maps only) and exposed as parameters sharing their storage, so
    ``parameters()`` and ``LoadedModel.device`` see them."""

    def __init__(self, scripted: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.__dict__["scripted"] = scripted
        self._share()

    def _share(self) -> None:
        for name, tensor in self.scripted.named_parameters():
            tensor.requires_grad_(False)
            self._parameters[name.replace(".", "_")] = nn.Parameter(tensor, requires_grad=False)

    def _apply(self, fn, *args, **kwargs):
        self.scripted._apply(fn, *args, **kwargs)
        self._share()
        return self

    def train(self, mode: bool = True):
        self.scripted.train(mode)
        self.training = mode
        return self

    def forward(self, x):
        return self.scripted(x)


class ScriptedChain(nn.Module):
    """The top-level modules of a TorchScript model, run one after another from Python."""

    def __init__(self, scripted: torch.jit.ScriptModule) -> None:
        super().__init__()
        for name, child in scripted.named_children():
            self.add_module(name, _ScriptedLayer(child))

    def forward(self, x):
        for layer in self.children():
            x = layer(x)
        return x


def load_torchscript(path: str, classes, device: str | torch.device, require_classes: bool = True,
                     input_size: int = 512, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> LoadedModel:
    """The TorchScript model in ``path`` with hookable layers (see the module docstring)."""
    input_size, mean, std = check_preprocessing(input_size, mean, std, where=f"torchscript:{path}")
    if not Path(path).is_file():
        raise ModelLoadError(f"TorchScript file not found: {path}")
    try:
        scripted = torch.jit.load(path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 (RuntimeError for a file that is not a TorchScript archive)
        first = loaded.first_line(exc)
        raise ModelLoadError(f"{path} is not a TorchScript file loadable with torch.jit.load ({first})") from None
    scripted.eval()
    chain = ScriptedChain(scripted)
    probe = torch.rand(1, 3, input_size, input_size)
    with torch.no_grad():
        try:
            whole = logits_of(scripted(probe))
        except Exception as exc:  # noqa: BLE001 (any failure of the user's model is reported in one line)
            first = loaded.first_line(exc)
            raise ModelLoadError(f"{path}: a probe forward at {input_size} px failed ({first})") from None
        try:
            chained = logits_of(chain(probe)) if len(chain._modules) else None
        except Exception:  # noqa: BLE001 (a chain that does not even run is not the model)
            chained = None
    if chained is None or chained.shape != whole.shape or not torch.allclose(chained, whole, atol=1e-5, rtol=1e-5):
        raise ModelLoadError(
            f"{path}: its layers cannot be hooked (TorchScript runs no Python hooks, and its forward is not a "
            "chain of its top-level modules); audit the nn.Module itself (its state dict, or segaudit.models.adapt)"
        )
    names = read_class_names(classes, int(whole.shape[1]), path) if (classes is not None or require_classes) \
        else tuple(f"class_{i}" for i in range(int(whole.shape[1])))
    last = list(chain._modules)[-1]  # its output is what the adapter upsamples, if smaller than the input
    adapter = loaded.freeze(SegmentationAdapter(chain, logits_module=last), device)
    return LoadedModel(
        name=f"torchscript:{path}", module=adapter, class_names=names, input_size=input_size, mean=mean, std=std,
        default_layer=guess_default_layer(adapter, input_size, len(names)), sha256=loaded.sha256_file(path),
        arch="torchscript",
    )
