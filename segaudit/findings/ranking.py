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

__all__ = ["FINDING_SCORE_COLUMNS", "FINDING_INSTANCE_COLUMNS", "rank_and_find"]

#: The columns of the scores and instances tables that :func:`segaudit.findings.rules.find` reads (enough to
#: aggregate a large run without loading every score).
FINDING_SCORE_COLUMNS = ("image_id", "class_id", "class_name", "method", "layer", "target", "mask", "mask_pixels",
                         "seg_iou", "label_quality", "energy_in_mask", "relevance_rank")
FINDING_INSTANCE_COLUMNS = ("image_id", "class_id", "class_name", "method", "layer", "target", "n_instances",
                            "instance_coverage")


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

    ``suspicion = 1 - Q^(1-w) C^w`` (:func:`segaudit.findings.rules.suspicion`); ``review_rank`` is 1 for the most
    suspicious image, ties broken by dataset order (the order of ``images``). Findings are
    :func:`segaudit.findings.rules.find` on the run's rows, decided on the primary map of ``methods`` and
    ``layers``, with the causal context tests, class templates and confusion where given
    (:mod:`segaudit.findings.causal`).
    """
    rules = rules or FindingRules()
    images = images.copy()
    images["suspicion"] = suspicion(images["label_quality"].to_numpy(dtype=float),
                                    images["consistency"].to_numpy(dtype=float), rules.consistency_weight)
    order = np.lexsort((np.arange(len(images)), -images["suspicion"].to_numpy(dtype=float)))
    ranks = np.empty(len(images), dtype=np.int64)
    ranks[order] = np.arange(1, len(images) + 1)
    images["review_rank"] = ranks
    return images, find(images, scores, instances, rules, methods, layers, context=context,
                        class_templates=class_templates, confusion=confusion)
