"""Reading a plain ``torch.save(model.state_dict(), path)`` file safely, as every adapter of weights does.

Loaded with ``torch.load(..., weights_only=True)`` (a file cannot run code when loaded). Accepted layouts:
the state dict itself, or a training checkpoint holding it under ``"model"`` or ``"state_dict"``
(torchvision's reference scripts, Lightning); a ``"module."`` prefix (``DataParallel``) is removed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from segaudit.models.loaded import ModelLoadError, first_line

__all__ = ["read_state_dict"]


def read_state_dict(weights: str | Path | None, what: str) -> dict[str, torch.Tensor]:
    """The state dict in the file ``weights`` (see the module docstring); ModelLoadError saying what is wrong."""
    if weights is None or str(weights).lower() in {"none", "default"}:
        raise ModelLoadError(f"{what} needs its weights file: pass --weights path/to/weights.pth "
                             "(or --weights none for random weights, e.g. to list layers)")
    path = Path(weights)
    if not path.is_file():
        raise ModelLoadError(f"--weights: file not found: {weights}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (pickle.UnpicklingError for code-carrying files, RuntimeError for junk)
        first = first_line(exc)
        raise ModelLoadError(f"refusing to load {path}: not a plain-tensor file loadable with weights_only=True "
                             f"({first})") from None
    if isinstance(payload, dict):
        for key in ("model", "state_dict"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ModelLoadError(f"{path} is not a state dict (a dict of tensors, as torch.save(model.state_dict()) "
                             "writes)")
    if all(k.startswith("module.") for k in payload):
        payload = {k.removeprefix("module."): v for k, v in payload.items()}
    return payload
