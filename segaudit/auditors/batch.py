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

from segaudit.auditors.base import BatchRows, Explained, auditor_for
from segaudit.auditors.failures import explain_isolating_failures
from segaudit.auditors.rows import image_consistency_of
from segaudit.data.classmap import ClassMap
from segaudit.data.sample import ErrorRow, Sample
from segaudit.findings.ranking import rank_and_find
from segaudit.findings.rules import FindingRules
from segaudit.findings.trust import trusted_primary
from segaudit.models.registry import LoadedModel
from segaudit.runs.tables import SCHEMAS
from segaudit.settings import AuditConfig, validate

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
    The settings are checked once per audit before any batch (:func:`segaudit.settings.validate`, which
    :func:`segaudit.runs.shards.process_shard` and the flow call), not on every micro-batch.
    """
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
    """Raise ValueError for settings no data can fix: :func:`segaudit.settings.validate` (the one place the
    rules live; the model family's own rules are its auditor's ``check_config``)."""
    validate(config, model)


def finish_tables(
    rows: BatchRows,
    rules: FindingRules | None = None,
    methods: Sequence[str] = (),
    layers: Sequence[str] = (),
    primary: str = "faithful",
) -> dict[str, pd.DataFrame]:
    """DataFrames of all tables (except ``run``) in dataset order, with the findings
    (:func:`segaudit.findings.rules.find`), each image's ``suspicion`` and its ``review_rank``: 1 = the most
    suspicious image (ties broken by dataset order), and the ``method_trust`` table.

    ``rules`` are the findings' thresholds (default :class:`FindingRules`); ``methods`` and ``layers`` the
    run's, in order, and ``primary`` the setting, to pick the map findings are decided on
    (:func:`segaudit.findings.trust.trusted_primary`).
    """
    frames = {name: pd.DataFrame(getattr(rows, name, []), columns=SCHEMAS[name].names)  # sanity: run-level, none
              for name in SCHEMAS if name not in ("run", "findings", "method_trust")}
    frames["method_trust"], methods, layers = trusted_primary(frames["faithfulness"], frames.get("sanity"),
                                                              frames["scores"], methods, layers, primary)
    frames["images"], frames["findings"] = rank_and_find(
        frames["images"], frames["scores"], frames["instances"], rules, methods, layers, context=frames["context"],
        class_templates=frames["class_templates"], confusion=frames["confusion"])
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
