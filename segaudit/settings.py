"""The settings of an audit that change its numbers, recorded in the run's metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from segaudit.cam import METHODS
from segaudit.findings.rules import FindingRules
from segaudit.schema import CENTROID_CUTOFF

if TYPE_CHECKING:
    from segaudit.models.registry import LoadedModel

__all__ = ["AuditConfig"]


@dataclass(frozen=True)
class AuditConfig:
    """Settings of an audit that change its numbers (all recorded in the run's metadata).

    Parameters
    ----------
    methods : tuple of str
        CAM methods, from :data:`segaudit.cam.ALL_METHODS`.
    layers : tuple of str
        Feature layers; empty = the model's default. The first is the primary layer: image consistency
        and review ranks use its maps; the others are a layer sweep (rows in the scores table).
    target : str
        Seg-Grad-CAM target kind (:data:`segaudit.cam.TARGET_KINDS`).
    score : str
        ``"logits"`` or ``"softmax"``.
    roi : tuple of float or None
        ``(top, left, bottom, right)`` fractions of the input, for ``target="roi"``.
    score_cam_channels : int or None
        Score-CAM channel budget (None: every channel).
    amp : bool
        Mixed-precision forward (see :func:`segaudit.cam.compute_cams`; not advised with Grad-CAM++).
    batch_size : int
        Images per batch (one forward pass).
    iou_threshold : float
        Threshold of the normalised map for ``iou_at_0_5``.
    centroid_cutoff : float
        Weighted-centroid cutoff (share of the map's max).
    thumbnail_size : int
        Longest side of the pictures stored for the report.
    rules : FindingRules
        Thresholds of the findings and the suspicion score's weight (:mod:`segaudit.findings.rules`).
    prompts : str or None
        CAM-prompted segmentation of the primary map (first method, first layer) into the ``prompts`` table:
        ``"grabcut"`` (OpenCV, offline) or ``"sam"`` (needs ``sam_checkpoint``); None = off (it costs about
        0.1 s per map and prompt kind with GrabCut on a CPU). See :mod:`segaudit.metrics.prompting`.
    sam_checkpoint, sam_model_type : str
        Segment Anything checkpoint file and its model type (``vit_h``, ``vit_l``, ``vit_b``).
    """

    methods: tuple[str, ...] = METHODS
    layers: tuple[str, ...] = ()
    target: str = "pred"
    score: str = "logits"
    roi: tuple[float, float, float, float] | None = None
    score_cam_channels: int | None = None
    amp: bool = False
    batch_size: int = 16
    iou_threshold: float = 0.5
    centroid_cutoff: float = CENTROID_CUTOFF
    thumbnail_size: int = 256
    rules: FindingRules = FindingRules()
    prompts: str | None = None
    sam_checkpoint: str | None = None
    sam_model_type: str = "vit_h"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def layers_of(self, model: LoadedModel) -> tuple[str, ...]:
        """The layers to use with ``model``."""
        return self.layers or (model.default_layer,)
