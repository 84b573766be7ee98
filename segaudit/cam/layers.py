"""Hooking a feature layer: its output becomes a leaf that requires grad, for the duration of a block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["capture_layer", "find_module"]


def find_module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        sample = [n for n in modules if n][-8:]
        raise KeyError(f"layer {layer!r} not in model; e.g. {', '.join(sample)} (see candidate_layers)")
    return modules[layer]


@contextmanager
def capture_layer(model: nn.Module, layer: str) -> Iterator[list[torch.Tensor]]:
    """Within the block, the output of ``layer`` becomes a grad-requiring leaf, appended to the yielded list.

    The hook is removed on exit, so no state outlives the call.
    """
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer {layer!r} returns {type(output).__name__}, not a tensor; pick another layer")
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf

    handle = find_module(model, layer).register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()
