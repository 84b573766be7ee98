"""The whole-run step of an audit: per-image suspicion and review ranks, and the findings.

Both need every image of the run (ranks are global; findings are ranked within each kind), so a sharded run
computes them once all shards are written (:func:`segaudit.runs.run.aggregate_run`) and a one-shot run in
:func:`segaudit.auditors.batch.finish_tables`; both call :func:`rank_and_find`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from segaudit.findings.rules import FindingRules, find, suspicion

__all__ = ["FINDING_SCORE_COLUMNS", "FINDING_INSTANCE_COLUMNS", "review_ranks", "rank_and_find"]

#: The columns of the scores and instances tables that :func:`segaudit.findings.rules.find` reads (enough to
#: aggregate a large run without loading every score).
FINDING_SCORE_COLUMNS = ("image_id", "class_id", "class_name", "method", "layer", "target", "mask", "mask_pixels",
                         "seg_iou", "label_quality", "energy_in_mask", "relevance_rank")
FINDING_INSTANCE_COLUMNS = ("image_id", "class_id", "class_name", "method", "layer", "target", "n_instances",
                            "instance_coverage")


def review_ranks(suspicion: np.ndarray, consistency: np.ndarray, tie_break: bool = True) -> np.ndarray:
    """Review ranks (1 = first to review): by ``suspicion`` descending; among images of exactly equal
    suspicion by CAM ``consistency`` ascending (the least consistent first; undefined = 1) when
    ``tie_break``; then by position (dataset order).

    ``consistency`` never moves an image past one of a different suspicion, so the order is label
    quality's wherever label quality decides (see :mod:`segaudit.findings.rules`).
    """
    suspicion = np.asarray(suspicion, dtype=float)
    keys = [np.arange(len(suspicion))]
    if tie_break:
        keys.append(np.nan_to_num(np.asarray(consistency, dtype=float), nan=1.0))
    keys.append(-suspicion)
    order = np.lexsort(keys)
    ranks = np.empty(len(suspicion), dtype=np.int64)
    ranks[order] = np.arange(1, len(suspicion) + 1)
    return ranks


def rank_and_find(
    images: pd.DataFrame,
    scores: pd.DataFrame,
    instances: pd.DataFrame | None,
    rules: FindingRules | None = None,
    methods: Sequence[str] = (),
    layers: Sequence[str] = (),
    context: pd.DataFrame | None = None,
    class_templates: pd.DataFrame | None = None,
    confusion: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The images table with ``suspicion`` and ``review_rank`` set, and the findings table.

    ``suspicion = 1 - Q`` (:func:`segaudit.findings.rules.suspicion`); ``review_rank`` is 1 for the most
    suspicious image, exact ties broken by CAM consistency when ``rules.consistency_weight > 0`` (the
    least consistent first), then by dataset order (the order of ``images``): :func:`review_ranks`.
    Findings are :func:`segaudit.findings.rules.find` on the run's rows, decided on the primary map of
    ``methods`` and ``layers``, with the causal context tests, class templates and confusion where given
    (:mod:`segaudit.findings.causal`).
    """
    rules = rules or FindingRules()
    if not 0.0 <= rules.consistency_weight <= 1.0:
        raise ValueError(f"consistency_weight must be in [0, 1], got {rules.consistency_weight}")
    images = images.copy()
    images["suspicion"] = suspicion(images["label_quality"].to_numpy(dtype=float))
    images["review_rank"] = review_ranks(images["suspicion"].to_numpy(dtype=float),
                                         images["consistency"].to_numpy(dtype=float),
                                         tie_break=rules.consistency_weight > 0)
    return images, find(images, scores, instances, rules, methods, layers, context=context,
                        class_templates=class_templates, confusion=confusion)
