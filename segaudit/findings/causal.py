"""The findings that ask the model rather than the map: causal context reliance, context hallucination and class
entanglement, from the ``context``, ``class_templates`` and ``confusion`` tables (pandas and numpy only).

``context_reliance`` (causal)
    Where the causal context test ran on a pair (:mod:`segaudit.metrics.context`, Hoyer et al., "Grid Saliency
    for Context Explanations of Semantic Segmentation", NeurIPS 2019): a right prediction (``seg_iou >=
    rules.right_iou``) whose class score on its object falls by at least ``rules.context_drop`` when the
    context is replaced, ``context_reliance = s(x) - s(x_obj) >= rules.context_drop``. Score: the drop. The
    CAM's ``outside_share`` (``1 - RRA``) is kept as supporting evidence. Where no test ran, the map rule of
    :mod:`segaudit.findings.rules` decides, and the finding's ``context_reliance`` column is NaN ("from the
    map only").
``context_hallucination``
    The class is still predicted over at least ``rules.hallucination`` of its object's (dilated) region once
    the object is replaced by an imputation of its surroundings: the model finds it from context alone.
    Score: that share, ``hallucination``.
``class_entanglement``
    Seg-Unravel: two foreground classes ``a < b`` whose centred class templates correlate (``rho_ab >=
    rules.entanglement_correlation``, :func:`segaudit.metrics.entanglement.template_correlation` of the run's
    summed templates) *and* that the model confuses (``confusion_share >= rules.entanglement_confusion``,
    :func:`~segaudit.metrics.entanglement.confusion_shares` of the run's confusion table). One finding per
    pair with ``image_id`` ``""``, ``class_id`` ``a`` and ``class_name`` ``"a ~ b"``; score ``sqrt(rho_ab x
    confusion_share)`` (both must be high for a strong finding), both numbers as evidence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segaudit.findings.thresholds import FindingRules

__all__ = ["CONTEXT_COLUMNS", "TEMPLATE_COLUMNS", "CONFUSION_COLUMNS", "with_causal_test", "causal_context",
           "hallucinations", "entanglements", "causal_class_reliance"]

#: The columns of the ``context``, ``class_templates`` and ``confusion`` tables the findings read.
CONTEXT_COLUMNS = ("image_id", "class_id", "class_name", "context_reliance", "hallucination", "iou")
TEMPLATE_COLUMNS = ("class_id", "pixels", "logit_sums")
CONFUSION_COLUMNS = ("gt_class_id", "pred_class_id", "pixels")


def with_causal_test(pairs: pd.DataFrame, context: pd.DataFrame | None) -> pd.DataFrame:
    """``pairs`` (one row per (image, class) of the primary map) with the test's ``context_reliance`` and
    ``hallucination`` (NaN where it did not run)."""
    out = pairs.drop(columns=["context_reliance", "hallucination"], errors="ignore")
    if context is None or context.empty:
        return out.assign(context_reliance=np.nan, hallucination=np.nan)
    tested = context[["image_id", "class_id", "context_reliance", "hallucination"]].drop_duplicates(
        ["image_id", "class_id"])
    return out.merge(tested.astype({"class_id": out["class_id"].dtype}), on=["image_id", "class_id"], how="left")


def causal_context(pairs: pd.DataFrame, rules: FindingRules) -> tuple[pd.Series, pd.Series]:
    """Which pairs are ``context_reliance`` findings and their scores (module docstring): the causal drop where
    the test ran, the map's ``outside_share`` rule elsewhere (``pairs`` from :func:`with_causal_test`)."""
    right = pairs["seg_iou"].astype(float) >= rules.right_iou
    drop = pairs["context_reliance"].astype(float)
    tested = drop.notna()
    causal = tested & (drop >= rules.context_drop)
    from_map = ~tested & (pairs["outside_share"] > rules.outside_share)
    chosen = right & (causal | from_map)
    score = drop.where(tested, pairs["outside_share"]).clip(0.0, 1.0)
    return chosen, score[chosen]


def hallucinations(context: pd.DataFrame | None, pairs: pd.DataFrame, rules: FindingRules) -> pd.DataFrame:
    """The ``context_hallucination`` findings' rows (``score`` included), with the pair's map evidence from
    ``pairs`` where it has the pair."""
    if context is None or context.empty:
        return pd.DataFrame(columns=["image_id", "class_id", "class_name", "target", "score"])
    hits = context[context["hallucination"].astype(float) >= rules.hallucination]
    hits = hits[["image_id", "class_id", "class_name", "context_reliance", "hallucination"]]
    evidence = [c for c in ("image_id", "class_id", "target", "seg_iou", "label_quality", "recall",
                            "energy_in_gt", "energy_in_pred", "outside_share") if c in pairs]
    if not pairs.empty:
        hits = hits.merge(pairs[evidence].astype({"class_id": hits["class_id"].dtype}), on=["image_id", "class_id"],
                          how="left")
    target = hits["target"].fillna("") if "target" in hits else ""
    return hits.assign(target=target, score=hits["hallucination"].astype(float).clip(0.0, 1.0))


def _class_matrices(templates: pd.DataFrame, confusion: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's summed template sums ``(K, K)``, pixel counts ``(K,)`` and confusion ``(K, K)``."""
    k = max(len(templates["logit_sums"].iloc[0]), int(templates["class_id"].max()) + 1)
    sums, counts = np.zeros((k, k)), np.zeros(k)
    for row in templates.itertuples(index=False):
        sums[row.class_id] += np.asarray(row.logit_sums, dtype=float)
        counts[row.class_id] += row.pixels
    matrix = np.zeros((k, k))
    if confusion is not None and not confusion.empty:
        inside = (confusion["gt_class_id"] < k) & (confusion["pred_class_id"] < k)
        cells = confusion[inside].groupby(["gt_class_id", "pred_class_id"])["pixels"].sum()
        for (i, j), n in cells.items():
            matrix[int(i), int(j)] = n
    return sums, counts, matrix


def entanglements(
    templates: pd.DataFrame | None, confusion: pd.DataFrame | None, names: dict[int, str], rules: FindingRules
) -> pd.DataFrame:
    """The ``class_entanglement`` findings' rows (module docstring), ``score`` included; ``names``: class id ->
    name (ids without one are named by their number)."""
    from segaudit.metrics.entanglement import confusion_shares, template_correlation

    columns = ["image_id", "class_id", "class_name", "target", "template_correlation", "confusion_share", "score"]
    if templates is None or templates.empty:
        return pd.DataFrame(columns=columns)
    sums, counts, matrix = _class_matrices(templates, confusion)
    rho, shares = template_correlation(sums, counts), confusion_shares(matrix)
    found = []
    for a in range(1, len(counts)):
        for b in range(a + 1, len(counts)):
            if rho[a, b] >= rules.entanglement_correlation and shares[a, b] >= rules.entanglement_confusion:
                found.append({"image_id": "", "class_id": a, "target": "",
                              "class_name": f"{names.get(a, str(a))} ~ {names.get(b, str(b))}",
                              "template_correlation": float(rho[a, b]), "confusion_share": float(shares[a, b]),
                              "score": float(np.sqrt(max(rho[a, b], 0.0) * min(shares[a, b], 1.0)))})
    return pd.DataFrame(found, columns=columns)


def causal_class_reliance(pairs: pd.DataFrame, rules: FindingRules) -> pd.DataFrame:
    """Per class, the mean causal ``context_reliance`` over its right predictions the test ran on
    (``reliance``, count ``n``) beside the map's mean ``outside_share`` over all its right predictions
    (``cam_reliance``, count ``cam_n``); ``pairs`` from :func:`with_causal_test`."""
    right = pairs[pairs["seg_iou"].astype(float) >= rules.right_iou]
    return right.groupby(["class_id", "class_name"], as_index=False).agg(
        reliance=("context_reliance", "mean"), n=("context_reliance", "count"),
        cam_reliance=("outside_share", "mean"), cam_n=("outside_share", "count"))
