"""Findings: what an audit tells a user to look at, derived from the score tables alone.

Each finding is one (image, class) with a ``kind``, a ``score`` in [0, 1] (higher = stronger evidence) and
the evidence columns it was decided on. Kinds, decided on the primary map (first method, first layer):

``label_error``
    The label is probably wrong: the prediction disagrees with it (``seg_iou < rules.disagreement_iou``),
    the model is confident against the label on the class's pixels (label quality ``Q_c`` below
    ``rules.label_quality``, see :mod:`segaudit.metrics.label_quality`), at least ``rules.min_pixels`` pixels are in
    dispute (``|G xor P|``), and the CAM supports the prediction rather
    than the label (its mass share in the predicted mask is at least that in the GT mask; a side whose mask
    is empty does not count against). Score ``1 - Q_c``.
``context_reliance``
    Right for the wrong reason: the prediction is right (``seg_iou >= rules.right_iou``) and, where the causal
    context test ran (``context`` table), the class's score on its object falls by at least
    ``rules.context_drop`` without its context (score: the drop; :mod:`segaudit.findings.causal`); elsewhere,
    from the map only, most of the map's strongest pixels lie outside the object: ``1 - RRA`` (relevance
    rank accuracy, Arras et al. 2022) above ``rules.outside_share`` (score ``1 - RRA``, evidence
    ``context_reliance`` NaN).
``context_hallucination``, ``class_entanglement``
    The class is predicted from its context alone; two classes with correlated templates that the model
    confuses (:mod:`segaudit.findings.causal`).
``missed_object``
    The model misses most of a labelled object (recall ``|P_c & G_c| / |G_c| < rules.missed_recall``)
    without being confident that the label is wrong (not a ``label_error``). Score ``1 - recall``.
``neglected_instances``
    The map covers few of the class's instances (``instance_coverage < rules.instance_coverage`` with at
    least 2 instances, see :mod:`segaudit.metrics.instances`). Score ``1 - coverage``.
``out_of_label_space``
    The image has labelled pixels of a dataset class the model does not know. Score: that class's share
    of the image's pixels (at least ``rules.unknown_pixels`` pixels).

The per-image **suspicion** orders images for review. It is label quality alone, ``suspicion = 1 - Q``
(``Q`` the model's belief in the labels, softmin-pooled: cleanlab's label-quality score, Lad and Mueller
2023, :mod:`segaudit.metrics.label_quality`). CAM consistency ``C`` (prediction, label and map agree,
:func:`segaudit.metrics.scores.agreement_consistency`) only breaks exact ties of ``Q`` in the review order
(:func:`segaudit.findings.ranking.review_ranks`): it never moves an image past one with a different ``Q``.

Why not a blend: the earlier ``1 - Q^0.75 C^0.25`` (weight chosen on the project's own data) lowered the
average precision on an independent validation set (0.860 against label quality's 0.892, issue 16): ``C``
is a noisier signal of a label error than ``Q``. A tie-break changes the order only inside groups of
images with equal ``Q`` (undefined ``Q`` counts as 1: nothing labelled or predicted), so the AUROC and AP
of the review order differ from ``Q``'s only by how the ties are ordered; no weight is fitted to any
data. ``bench/evidence.py`` measures it on data segaudit has never seen (``bench/RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from segaudit.findings.causal import (
    causal_class_reliance,
    causal_context,
    entanglements,
    hallucinations,
    with_causal_test,
)
from segaudit.findings.thresholds import FindingRules
from segaudit.schema import EVIDENCE_COLUMNS, FINDING_KINDS

__all__ = ["FINDING_KINDS", "FindingRules", "primary_map", "suspicion", "find", "class_reliance"]



def primary_map(scores: pd.DataFrame, methods: Sequence[str] = (), layers: Sequence[str] = ()) -> tuple[str, str]:
    """The (method, layer) findings are decided on: the first requested method and layer that have scores
    (for a method only computed at the input, e.g. guided backprop, its one layer)."""
    if scores.empty:
        return (methods[0] if methods else "", layers[0] if layers else "")
    present = list(dict.fromkeys(scores["method"]))
    method = next((m for m in methods if m in present), present[0])
    mine = list(dict.fromkeys(scores.loc[scores["method"] == method, "layer"]))
    layer = next((layer for layer in layers if layer in mine), mine[0])
    return method, layer


def suspicion(label_quality: np.ndarray) -> np.ndarray:
    """Per-image review score ``1 - Q`` (see the module docstring), in [0, 1]; an undefined ``Q``
    (nothing labelled or predicted) counts as full agreement (suspicion 0)."""
    q = np.clip(np.nan_to_num(np.asarray(label_quality, dtype=float), nan=1.0), 0.0, 1.0)
    return 1.0 - q


def _pairs(scores: pd.DataFrame, method: str, layer: str) -> pd.DataFrame:
    """One row per (image, class) of the primary map with the GT-mask and predicted-mask scores side by side."""
    mine = scores[(scores["method"] == method) & (scores["layer"] == layer)]
    keys = ["image_id", "class_id"]
    gt = mine[mine["mask"] == "gt"].set_index(keys)
    pred = mine[mine["mask"] == "pred"].set_index(keys)
    out = pd.DataFrame(index=gt.index.union(pred.index))
    first = gt.combine_first(pred)
    for col in ("class_name", "target", "seg_iou", "label_quality"):
        out[col] = first[col] if col in first else np.nan
    g = gt["mask_pixels"].reindex(out.index).astype(float)
    p = pred["mask_pixels"].reindex(out.index).astype(float)
    iou = out["seg_iou"].astype(float)
    intersection = iou * (g + p) / (1.0 + iou)  # |P & G| from IoU = I / (|G| + |P| - I)
    out["gt_pixels"], out["pred_pixels"] = g, p
    out["recall"] = np.where(g > 0, intersection / g.where(g > 0), np.nan)
    out["disagreement"] = g.fillna(0) + p.fillna(0) - 2 * intersection.fillna(0)
    out["missed_pixels"] = g.fillna(0) - intersection.fillna(0)
    out["energy_in_gt"] = gt["energy_in_mask"].reindex(out.index)
    out["energy_in_pred"] = pred["energy_in_mask"].reindex(out.index)
    out["outside_share"] = 1.0 - gt["relevance_rank"].reindex(out.index)
    return out.reset_index()


def _rows(frame: pd.DataFrame, kind: str, score: pd.Series, method: str, layer: str) -> pd.DataFrame:
    out = frame.assign(kind=kind, score=score.astype(float), method=method, layer=layer)
    for col in EVIDENCE_COLUMNS:
        if col not in out:
            out[col] = np.nan
    return out


def _model_kinds(
    scores: pd.DataFrame, pairs: pd.DataFrame, context: pd.DataFrame | None, class_templates: pd.DataFrame | None,
    confusion: pd.DataFrame | None, rules: FindingRules, method: str, layer: str,
) -> list[pd.DataFrame]:
    """The ``context_hallucination`` and ``class_entanglement`` rows (:mod:`segaudit.findings.causal`)."""
    halluc = hallucinations(context, pairs, rules)
    known = scores[["class_id", "class_name"]].drop_duplicates("class_id") if not scores.empty else scores
    names = dict(zip(known.get("class_id", ()), known.get("class_name", ()), strict=True))
    entangled = entanglements(class_templates, confusion, names, rules)
    return [_rows(halluc.drop(columns="score"), "context_hallucination", halluc["score"], method, layer),
            _rows(entangled.drop(columns="score"), "class_entanglement", entangled["score"], "", "")]


def find(
    images: pd.DataFrame,
    scores: pd.DataFrame,
    instances: pd.DataFrame | None = None,
    rules: FindingRules = FindingRules(),
    methods: Sequence[str] = (),
    layers: Sequence[str] = (),
    context: pd.DataFrame | None = None,
    class_templates: pd.DataFrame | None = None,
    confusion: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The findings of a run (columns of the ``findings`` table), strongest first within each kind.

    Parameters
    ----------
    images, scores, instances : pd.DataFrame
        The run's tables (``images`` needs ``unknown_classes`` and ``unknown_pixels``; ``instances`` may be None or empty).
    rules : FindingRules
    methods, layers : sequence of str
        The run's methods and layers in order, to pick the primary map (:func:`primary_map`).
    context, class_templates, confusion : pd.DataFrame, optional
        The run's causal context tests and class templates, and its confusion table (columns
        :data:`segaudit.findings.causal.CONTEXT_COLUMNS`, ``TEMPLATE_COLUMNS``, ``CONFUSION_COLUMNS``); without
        them ``context_reliance`` is decided from the map alone and the causal kinds are not looked for.
    """
    method, layer = primary_map(scores, methods, layers)
    parts = []
    pairs = pd.DataFrame(columns=["image_id", "class_id"])
    if not scores.empty:
        pairs = with_causal_test(_pairs(scores, method, layer), context)
        iou = pairs["seg_iou"].astype(float)
        quality = pairs["label_quality"].astype(float)
        supports_pred = ~(pairs["energy_in_gt"] > pairs["energy_in_pred"])  # NaN on one side: no objection
        label_error = ((iou < rules.disagreement_iou) & (quality < rules.label_quality) & supports_pred
                       & (pairs["disagreement"] >= rules.min_pixels))
        parts.append(_rows(pairs[label_error], "label_error", 1.0 - quality[label_error], method, layer))
        relies, strength = causal_context(pairs, rules)
        parts.append(_rows(pairs[relies], "context_reliance", strength, method, layer))
        missed = (pairs["recall"] < rules.missed_recall) & ~label_error & (pairs["missed_pixels"] >= rules.min_pixels)
        parts.append(_rows(pairs[missed], "missed_object", 1.0 - pairs.loc[missed, "recall"], method, layer))
    parts += _model_kinds(scores, pairs, context, class_templates, confusion, rules, method, layer)
    if instances is not None and not instances.empty:
        mine = instances[(instances["method"] == method) & (instances["layer"] == layer)]
        per_class = mine.groupby(["image_id", "class_id"], as_index=False).agg(
            class_name=("class_name", "first"), target=("target", "first"),
            n_instances=("n_instances", "first"), instance_coverage=("instance_coverage", "first"))
        low = (per_class["n_instances"] >= 2) & (per_class["instance_coverage"] < rules.instance_coverage)
        hits = per_class[low].drop(columns="n_instances")
        parts.append(_rows(hits, "neglected_instances", 1.0 - hits["instance_coverage"], method, layer))
    unknown = []
    for row in images.itertuples(index=False):
        names = getattr(row, "unknown_classes", None)
        counts = getattr(row, "unknown_pixels", None)
        if not isinstance(names, (list, tuple, np.ndarray)) or not isinstance(counts, (list, tuple, np.ndarray)):
            continue  # no record (e.g. a classifier's or an older run's images table)
        for name, pixels in zip(names, counts, strict=True):
            if pixels >= rules.unknown_pixels:
                unknown.append({"image_id": row.image_id, "class_id": -1, "class_name": name,
                                "target": "", "score": min(1.0, pixels / max(1, row.width * row.height))})
    if unknown:
        frame = pd.DataFrame(unknown)
        parts.append(_rows(frame.drop(columns="score"), "out_of_label_space", frame["score"], "", ""))
    columns = ["image_id", "file_name", "class_id", "class_name", "kind", "score", "rank", "method", "layer",
               "target", *EVIDENCE_COLUMNS]
    if not parts:
        return pd.DataFrame(columns=columns)
    found = pd.concat([p for p in parts if not p.empty] or [parts[0]], ignore_index=True)
    found["file_name"] = found["image_id"].map(images.set_index("image_id")["file_name"]).fillna("")  # "": the run
    found["kind"] = pd.Categorical(found["kind"], FINDING_KINDS)
    found = found.sort_values(["kind", "score", "image_id", "class_id"], ascending=[True, False, True, True],
                              kind="stable")
    found["kind"] = found["kind"].astype(str)
    found["rank"] = found.groupby("kind").cumcount() + 1
    return found[columns].reset_index(drop=True)


def class_reliance(scores: pd.DataFrame, rules: FindingRules = FindingRules(), methods: Sequence[str] = (),
                   layers: Sequence[str] = (), context: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per class, how much its right predictions rely on context.

    With the run's ``context`` table (the causal test), ``reliance_c`` is the mean causal ``context_reliance``
    ``s(x) - s(x_obj)`` over the right predictions of class ``c`` the test ran on (``n`` of them): a class the
    model recognises by its surroundings (e.g. boats by water) loses most without them. ``cam_reliance`` (and
    its count ``cam_n``) is the map's view, the mean ``1 - RRA`` of the primary map over all right predictions;
    without ``context`` it is the ranking (``reliance = cam_reliance``). Columns ``class_id, class_name,
    reliance, n, cam_reliance, cam_n, rank``, highest reliance first (``rank`` 1).
    """
    method, layer = primary_map(scores, methods, layers)
    pairs = _pairs(scores, method, layer) if not scores.empty else pd.DataFrame(
        columns=["image_id", "class_id", "class_name", "seg_iou", "outside_share"])
    table = causal_class_reliance(with_causal_test(pairs, context), rules)
    if context is None or context.empty:
        table["reliance"], table["n"] = table["cam_reliance"], table["cam_n"]
    table = table.sort_values("reliance", ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table
