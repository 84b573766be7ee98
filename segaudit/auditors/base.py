"""The interface every model family's auditor implements, and the one place an auditor is picked.

An :class:`Auditor` audits batches of one model under one configuration in two steps:

``explain(samples) -> Explained``   the model and the CAM methods on the batch (no failure handling: that is
                                   :mod:`segaudit.auditors.failures`)
``score(explained) -> BatchRows``  the maps and masks -> rows of the tables (:mod:`segaudit.auditors.rows`);
                                   a family implements ``add_rows(rows, batch, cams)``

:func:`auditor_for` picks the auditor from ``model.task``: the auditor of task ``t`` is the class
``AUDITOR`` of the module ``segaudit.auditors.<t>`` (``segmentation``, ``detection``, ``classification``).
Adding a model family is adding one such module.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from segaudit.cam import CamResult, DetectionCams
from segaudit.cam.engine import CamSettings, compute_cams_with
from segaudit.data.classmap import ClassMap
from segaudit.data.preprocess import PreparedBatch, prepare_batch
from segaudit.data.sample import ErrorRow, Sample
from segaudit.models.registry import LoadedModel
from segaudit.settings import AuditConfig

__all__ = ["Auditor", "BatchRows", "Explained", "auditor_for", "auditor_class", "cam_settings",
           "explain_with_cam_engine"]


@dataclass
class Explained:
    """A batch after the model: its input, the CAMs, and the images that could not be processed."""

    batch: PreparedBatch | None
    cams: CamResult | DetectionCams | None
    errors: list[ErrorRow] = field(default_factory=list)


@dataclass
class BatchRows:
    """Table rows produced by one batch (lists of dicts keyed by the tables' columns)."""

    images: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    maps: list[dict[str, Any]] = field(default_factory=list)
    thumbnails: list[dict[str, Any]] = field(default_factory=list)
    confusion: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    instances: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    fixations: list[dict[str, Any]] = field(default_factory=list)
    faithfulness: list[dict[str, Any]] = field(default_factory=list)
    context: list[dict[str, Any]] = field(default_factory=list)
    class_templates: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of_errors(cls, errors: Iterable[ErrorRow]) -> BatchRows:
        """Rows holding only these error rows."""
        return cls(errors=[asdict(e) for e in errors])

    def extend(self, other: BatchRows) -> None:
        for name in ("images", "scores", "maps", "thumbnails", "confusion", "errors", "instances", "prompts",
                     "fixations", "faithfulness", "context", "class_templates"):
            getattr(self, name).extend(getattr(other, name))


class Auditor(ABC):
    """The audit of one model family: explain a batch, then score it.

    Parameters
    ----------
    model : LoadedModel
    config : AuditConfig
    class_map : ClassMap, optional
        Dataset classes -> model classes; needed by :meth:`explain` only.
    """

    #: Whether CNN-Fixations (``--methods fixations``) can trace this family's models.
    traces_fixations: ClassVar[bool] = False

    def __init__(self, model: LoadedModel, config: AuditConfig, class_map: ClassMap | None = None) -> None:
        self.model, self.config, self.class_map = model, config, class_map

    @staticmethod
    @abstractmethod
    def check_config(config: AuditConfig) -> None:
        """Raise ValueError for settings this family cannot honour (beyond
        :func:`segaudit.auditors.batch.check_config`'s general ones)."""

    @abstractmethod
    def explain(self, samples: list[Sample]) -> Explained:
        """The model's output and the CAMs of a non-empty batch; raises on any failure."""

    def score(self, explained: Explained) -> BatchRows:
        """Rows of every table (but ``findings``) of an explained batch, its error rows first."""
        rows = BatchRows.of_errors(explained.errors)
        if explained.batch is not None and explained.cams is not None:
            self.add_rows(rows, explained.batch, explained.cams)
        return rows

    @abstractmethod
    def add_rows(self, rows: BatchRows, batch: PreparedBatch, cams: CamResult | DetectionCams) -> None:
        """Append the rows of a batch the model explained (``cams``: what :meth:`explain` computed)."""


def auditor_class(task: str) -> type[Auditor]:
    """The auditor of models of ``task`` (``LoadedModel.task``): ``segaudit.auditors.<task>.AUDITOR``.

    Raises
    ------
    ValueError
        No auditor module for ``task``.
    """
    if not task.isidentifier():  # a module name of this package, nothing else
        raise ValueError(f"no auditor for models of task {task!r}")
    try:
        module = importlib.import_module(f"segaudit.auditors.{task}")
    except ModuleNotFoundError as exc:
        if exc.name != f"segaudit.auditors.{task}":
            raise
        raise ValueError(f"no auditor for models of task {task!r} (no module segaudit.auditors.{task})") from None
    auditor = getattr(module, "AUDITOR", None)
    if not (isinstance(auditor, type) and issubclass(auditor, Auditor)):
        raise ValueError(f"no auditor for models of task {task!r} (segaudit.auditors.{task} has no AUDITOR)")
    return auditor


def auditor_for(model: LoadedModel, config: AuditConfig, class_map: ClassMap | None = None) -> Auditor:
    """The auditor of ``model``'s family under ``config`` (:func:`auditor_class` of ``model.task``)."""
    return auditor_class(model.task)(model, config, class_map)


def cam_settings(model: LoadedModel, config: AuditConfig) -> CamSettings:
    """What the CAM engine computes for an audit of ``model`` under ``config``."""
    return CamSettings(config.layers_of(model), config.methods, target=config.target, score=config.score,
                       roi=config.roi, score_cam_channels=config.score_cam_channels, amp=config.amp)


def explain_with_cam_engine(
    samples: list[Sample], model: LoadedModel, class_map: ClassMap, config: AuditConfig
) -> Explained:
    """Letterbox a batch and run :func:`segaudit.cam.engine.compute_cams_with` on it (segmentation models
    and classifiers, whose CAMs the engine computes alike)."""
    batch = prepare_batch(samples, class_map, model.input_size, model.mean, model.std)
    gt = batch.gt.to(model.device)
    cams = compute_cams_with(model.module, batch.images.to(model.device), cam_settings(model, config), gt)
    return Explained(batch, cams)
