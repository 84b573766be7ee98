"""What one call of the CAM engine asks of it (:class:`CamSettings`); the method names it knows come from
:mod:`segaudit.schema`.

Kept apart from :mod:`segaudit.cam.engine` so callers (the auditors) can build the settings of an audit
once, and pass one object instead of a dozen keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from segaudit.schema import (
    ALL_METHODS,
    GRADIENT_FREE_METHODS,
    GUIDED_METHODS,
    INPUT_LAYER,
    METHODS,
    TRACE_METHODS,
)

__all__ = ["SettingsError", "UnknownLayer", "METHODS", "GRADIENT_FREE_METHODS", "GUIDED_METHODS", "TRACE_METHODS", "ALL_METHODS", "INPUT_LAYER",
           "CamSettings"]

class SettingsError(ValueError):
    """A setting the engine cannot honour for any input (an unknown method or layer): the audit stops with
    it instead of turning every image into an error row."""


class UnknownLayer(SettingsError, KeyError):
    """A feature layer the model does not have (a KeyError too, as a name lookup)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class CamSettings:
    """What the engine computes for a batch: which maps, at which layers, explaining which targets.

    Attributes
    ----------
    layers : tuple of str
        Dotted names of feature modules; several make a layer sweep from the same forward. A single name
        may be given as a str; duplicates are dropped (first kept).
    methods : tuple of str
        From :data:`ALL_METHODS` (duplicates dropped, first kept).
    target, score, roi
        Target kind, score and box (see :mod:`segaudit.cam.targets`).
    micro_batch : int, optional
        At most this many images per forward (default: the whole batch). Out-of-memory errors propagate:
        the caller decides (an audit halves its micro-batches, :mod:`segaudit.auditors.failures`).
    class_chunk : int
        At most this many classes per batched backward (bounds gradient memory).
    guided_rule : str
        Activation rule of the guided methods (:data:`segaudit.cam.guided.ACTIVATION_RULES`).
    score_cam_channels : int, optional
        Score-CAM channel budget (see :func:`segaudit.cam.gradient_free.score_cam`).
    amp : bool
        Run the forward under autocast (float16 on CUDA, bfloat16 on CPU); maps are computed in float32.
        Measured on CPU (bfloat16, demo model): Grad-CAM's normalised maps within 0.002 of float32's on
        average, same peak in every map; Grad-CAM++ is not robust to it (0.17, same peak in 25%). On a CPU
        without native bfloat16 (AVX2 only) it is ~60x slower than float32 (``bench/amp_error.py``).

    Raises
    ------
    ValueError
        No layer.
    """

    layers: tuple[str, ...]
    methods: tuple[str, ...] = METHODS
    target: str = "pred"
    score: str = "logits"
    roi: tuple[float, float, float, float] | None = None
    micro_batch: int | None = None
    class_chunk: int = 16
    guided_rule: str = "relu"
    score_cam_channels: int | None = None
    amp: bool = False

    def __post_init__(self) -> None:
        layers = (self.layers,) if isinstance(self.layers, str) else tuple(dict.fromkeys(self.layers))
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "methods", tuple(dict.fromkeys(self.methods)))
        if not layers:
            raise ValueError("at least one layer is needed")
