"""The audit of one batch, as pure functions the Prefect tasks wrap: explain, score, and finish a run.

``check_config``   settings no data can fix -> ValueError (general rules, then the model family's)
``explain_batch``  samples -> model input, predictions and CAMs (isolating images that fail)
``score_batch``    CAMs + masks -> rows of the images, scores, maps and thumbnails tables
``finish_tables``  all batches' rows -> DataFrames, with the per-image review rank

Each model family's work is done by its auditor (:func:`segaudit.auditors.base.auditor_for`); failures are
handled as :mod:`segaudit.auditors.failures` says.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from segaudit.auditors.base import BatchRows, Explained, auditor_class, auditor_for
from segaudit.auditors.failures import explain_isolating_failures
from segaudit.auditors.rows import image_consistency_of
from segaudit.cam import ALL_METHODS, SCORE_KINDS, TARGET_KINDS
from segaudit.data.classmap import ClassMap
from segaudit.data.sample import ErrorRow, Sample
from segaudit.findings.ranking import rank_and_find
from segaudit.findings.rules import FindingRules
from segaudit.models.registry import LoadedModel
from segaudit.runs.tables import SCHEMAS
from segaudit.settings import AuditConfig

__all__ = ["AuditConfig", "BatchRows", "Explained", "check_config", "config_json", "explain_batch", "finish_tables",
           "image_consistency_of", "score_batch", "versions"]


def explain_batch(
    samples: list[Sample],
    model: LoadedModel,
    class_map: ClassMap,
    config: AuditConfig,
    read_errors: list[ErrorRow] | tuple[ErrorRow, ...] = (),
) -> Explained:
    """Run the model and the CAM methods on a batch.

    ``read_errors`` (the batch's rows from reading) are carried along into the result's errors.

    If the batch fails as a whole (an image the model cannot take), each image is retried alone; those that
    still fail become error rows (stage ``"infer"``) and the others are processed
    (:func:`segaudit.auditors.failures.explain_isolating_failures`; out-of-memory errors propagate).
    Configuration mistakes (unknown layer or method, see :func:`check_config`) are not data problems and
    raise.
    """
    check_config(model, config)
    auditor = auditor_for(model, config, class_map)
    explained = explain_isolating_failures(auditor.explain, samples)
    explained.errors = [*read_errors, *explained.errors]
    return explained


def score_batch(explained: Explained, model: LoadedModel, config: AuditConfig) -> BatchRows:
    """Score every explained unit (an (image, class) pair, or a detection) of a batch against its masks.

    Returns the rows of the images (without ``review_rank``, set by :func:`finish_tables`), scores, maps,
    thumbnails, confusion, instances, prompts, fixations and errors tables (the auditor of ``model.task``).
    """
    return auditor_for(model, config).score(explained)


def check_config(model: LoadedModel, config: AuditConfig) -> None:
    """Raise ValueError for settings no data can fix: unknown CAM methods or feature layer, and what the
    model's family cannot honour (its auditor's ``check_config``)."""
    unknown = sorted(set(config.methods) - set(ALL_METHODS))
    if unknown or not config.methods:
        raise ValueError(f"unknown CAM methods {unknown}; available: {', '.join(ALL_METHODS)}")
    modules = dict(model.module.named_modules())
    for layer in config.layers_of(model):
        if layer not in modules:
            raise ValueError(f"layer {layer!r} not in {model.arch}; see segaudit.models.registry.candidate_layers")
    if config.target not in TARGET_KINDS or config.score not in SCORE_KINDS:
        raise ValueError(f"target must be one of {TARGET_KINDS} and score one of {SCORE_KINDS}")
    if config.target == "roi" and config.roi is None:
        raise ValueError("target 'roi' needs roi=(top, left, bottom, right) fractions")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    auditor = auditor_class(model.task)
    if "fixations" in config.methods:
        _check_fixations(model, traceable=auditor.traces_fixations)
    if config.prompts not in (None, "grabcut", "sam"):
        raise ValueError(f"prompts must be 'grabcut' or 'sam', got {config.prompts!r}")
    if config.prompts == "sam" and not config.sam_checkpoint:
        raise ValueError("prompts 'sam' needs sam_checkpoint (a Segment Anything .pth file)")
    auditor.check_config(config)


def _check_fixations(model: LoadedModel, traceable: bool) -> None:
    """CNN-Fixations traces plain chains of layers of segmentation models only."""
    from segaudit.cam.fixations import UnsupportedModel, sequential_layers

    if not traceable:
        raise ValueError("method fixations traces segmentation models only")
    try:
        sequential_layers(model.module)
    except UnsupportedModel as exc:
        raise ValueError(f"method fixations cannot run on {model.arch}: {exc} (try --model demo-fcn)") from None


def finish_tables(
    rows: BatchRows,
    rules: FindingRules | None = None,
    methods: Sequence[str] = (),
    layers: Sequence[str] = (),
) -> dict[str, pd.DataFrame]:
    """DataFrames of all tables (except ``run``) in dataset order, with the findings
    (:func:`segaudit.findings.rules.find`), each image's ``suspicion`` and its ``review_rank``: 1 = the most
    suspicious image (ties broken by dataset order).

    ``rules`` are the findings' thresholds (default :class:`FindingRules`); ``methods`` and ``layers`` the
    run's, in order, to pick the map findings are decided on.
    """
    frames = {name: pd.DataFrame(getattr(rows, name), columns=SCHEMAS[name].names)
              for name in SCHEMAS if name not in ("run", "findings")}
    frames["images"], frames["findings"] = rank_and_find(frames["images"], frames["scores"], frames["instances"],
                                                         rules, methods, layers)
    return frames


def versions() -> dict[str, str]:
    """Versions of the libraries that change an audit's numbers."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("segaudit", "torch", "torchvision", "numpy", "pandas", "pyarrow", "pycocotools", "prefect", "pillow"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def config_json(config: AuditConfig, **extra: Any) -> str:
    """The run's full configuration as canonical JSON."""
    return json.dumps({**config.to_json(), **extra}, sort_keys=True, default=str)
