"""Checks of a segaudit checkpoint's fields (and of any model's preprocessing), before any work is done.

A segaudit checkpoint (:func:`segaudit.models.registry.save_checkpoint`) is a dict::

    format       "segaudit-checkpoint-v1"
    arch         an architecture segaudit can rebuild (registry.CHECKPOINT_ARCHITECTURES)
    class_names  K strings, background first; K must fit the weights' classifier
    input_size   positive int: the side of the square images are letterboxed to
    mean, std    3 numbers each (std > 0): per-channel normalisation of RGB in [0, 1]
    state_dict   name -> tensor
    extra        dict (detectors: their thresholds)

:func:`validate_checkpoint` refuses a malformed one with a :class:`ModelLoadError` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import torch

from segaudit.models.loaded import ModelLoadError

__all__ = ["CHECKPOINT_FORMAT", "check_preprocessing", "validate_checkpoint", "state_dict_mismatch"]

CHECKPOINT_FORMAT = "segaudit-checkpoint-v1"


def check_preprocessing(input_size, mean, std, where: str) -> tuple[int, tuple, tuple]:
    """``(input_size, mean, std)`` as ``(int, 3 floats, 3 floats)``; ModelLoadError naming the bad field."""
    if isinstance(input_size, bool) or not isinstance(input_size, (int, float)) or input_size != int(input_size) \
            or int(input_size) < 1:
        raise ModelLoadError(f"{where}: input_size must be a positive integer (pixels), got {input_size!r}")
    values = {}
    for field, value in (("mean", mean), ("std", std)):
        try:
            numbers = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise ModelLoadError(f"{where}: {field} must be 3 numbers (R, G, B), got {value!r}") from None
        if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers) or (
                field == "std" and min(numbers) <= 0):
            raise ModelLoadError(f"{where}: {field} must be 3 finite numbers (R, G, B){', > 0' if field == 'std' else ''}"
                                 f", got {value!r}")
        values[field] = numbers
    return int(input_size), values["mean"], values["std"]


def validate_checkpoint(payload: object, path: Path, architectures: Iterable[str]) -> dict:
    """The checkpoint's fields, checked (see the module docstring); ModelLoadError naming the first bad one."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelLoadError(
            f"{path} is not a segaudit checkpoint; for a state dict use --model <torchvision arch> (or smp:<Arch> "
            f"--model-args '{{...}}') --weights {path} --classes classes.txt (see `segaudit run --help`)"
        )
    known = sorted(architectures)
    arch = payload.get("arch")
    if not isinstance(arch, str) or not arch:
        raise ModelLoadError(f"{path}: field 'arch' is missing; it names the architecture, one of {', '.join(known)}")
    if arch not in known:
        raise ModelLoadError(f"{path}: field 'arch' = {arch!r} is not an architecture segaudit can rebuild "
                             f"({', '.join(known)})")
    names = payload.get("class_names")
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise ModelLoadError(f"{path}: field 'class_names' must be a non-empty list of strings")
    input_size, mean, std = check_preprocessing(payload.get("input_size"), payload.get("mean"),
                                                payload.get("std"), where=f"{path}: field")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path}: field 'state_dict' must be a dict of tensors")
    extra = payload.get("extra") or {}
    if not isinstance(extra, dict):
        raise ModelLoadError(f"{path}: field 'extra' must be a dict")
    return {**payload, "arch": arch, "class_names": list(names), "input_size": input_size, "mean": mean,
            "std": std, "extra": extra}


def state_dict_mismatch(module: torch.nn.Module, state: dict, num_classes: int, ignore=()) -> str | None:
    """Why ``state`` does not fit ``module`` (a rebuilt architecture with ``num_classes`` outputs), in one
    line, or None if it fits. Keys starting with a prefix in ``ignore`` are left out."""
    own = module.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore))}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    if shapes:
        key = shapes[0]
        got, want = tuple(state[key].shape), tuple(own[key].shape)
        if got[:1] != want[:1] and want[:1] == (num_classes,):
            return (f"the weights have {got[0]} classes ({key}: {got}) but {num_classes} class names were given")
        return f"{len(shapes)} tensors have other shapes (e.g. {key}: {got} in the file, {want} in the architecture)"
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:2])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2])})")
    return "keys do not match the architecture: " + "; ".join(parts)
