"""Capturing feature layers during a forward pass, without state that outlives the call.

Inside :func:`capture_layers`, each named layer's output is recorded. An output that does not already
depend on a grad-requiring tensor (the first captured layer, with frozen parameters and an input that
does not require grad) is replaced by a detached copy that requires grad: autograd then records only the
network *after* it, and gradients reach every captured layer in one backward without touching any
parameter. Layers further down keep their place in the graph, so a layer sweep costs one forward. The
network continues on a copy of each captured output, so in-place operations after a layer cannot
change what was captured.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from segaudit.cam.cam_settings import UnknownLayer

__all__ = ["capture_layers", "capture_layer", "find_module"]


def find_module(model: nn.Module, layer: str) -> nn.Module:
    """The sub-module called ``layer``; :class:`~segaudit.cam.cam_settings.UnknownLayer` (a KeyError) naming
    some valid names if there is none."""
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        sample = [n for n in modules if n][-8:]
        raise UnknownLayer(f"layer {layer!r} not in model; e.g. {', '.join(sample)} (see candidate_layers)")
    return modules[layer]


@contextmanager
def capture_layers(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Within the block, every output of each layer in ``layers`` is appended to ``captured[layer]``.

    Hooks are removed on exit. A layer whose output is not a tensor raises TypeError.
    """
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor; pick another layer")
            if not output.requires_grad:
                output = output.detach().requires_grad_(True)
            captured[name].append(output)
            # downstream gets a copy: an in-place op after the layer (ReLU(inplace=True), ResNet's
            # `out += identity`) would otherwise crash on the leaf or overwrite what was captured
            return output.clone()

        return hook

    try:
        for name in dict.fromkeys(layers):
            handles.append(find_module(model, name).register_forward_hook(make_hook(name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_layer(model: nn.Module, layer: str) -> Iterator[list[torch.Tensor]]:
    """:func:`capture_layers` for one layer: yields the list of its outputs."""
    with capture_layers(model, [layer]) as captured:
        yield captured[layer]
