"""Validation of findings on data where the truth is known: synthetic images with planted label errors.

Used by ``bench/label_errors.py`` and its test: how well a per-image score separates the images whose
labels were corrupted (``planted_errors.json``, :mod:`segaudit.devtools.synth`) from the clean ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["binary_auroc", "average_precision", "planted_labels", "planted_error_metrics"]


def binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the ``positive`` labels (Mann-Whitney U with average
    ranks for ties); NaN if either class is absent."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve as a step function, like scikit-learn's
    ``average_precision_score``): ``sum_n (R_n - R_{n-1}) P_n`` over descending score thresholds."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    if not positive.any():
        return float("nan")
    order = np.argsort(-score, kind="stable")
    ranked_score, hits = score[order], positive[order]
    # one threshold per distinct score: the last index of each run of ties
    last = np.r_[np.nonzero(np.diff(ranked_score))[0], len(score) - 1]
    tp = np.cumsum(hits)[last]
    precision = tp / (last + 1)
    recall = tp / positive.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def planted_labels(file_names: pd.Series, manifest: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Per image: whether an error was planted, and its kind ("clean" if none); matched by base file name."""
    kinds = {m["file_name"].rsplit("/", 1)[-1]: m["kind"] for m in manifest}
    base = file_names.astype(str).str.rsplit("/", n=1).str[-1]
    kind = base.map(kinds).fillna("clean").to_numpy(dtype=object)
    return kind != "clean", kind


def planted_error_metrics(images: pd.DataFrame, score: np.ndarray, manifest: list[dict[str, Any]]) -> dict[str, Any]:
    """AUROC and AP of ``score`` (higher = more suspicious) for planted vs clean images, and the recall of
    each error kind among the ``N`` highest-scored images (``N`` = the number of planted images)."""
    planted, kind = planted_labels(images["file_name"], manifest)
    score = np.asarray(score, dtype=float)
    n = int(planted.sum())
    top = np.zeros(len(score), dtype=bool)
    top[np.argsort(-score, kind="stable")[:n]] = True
    recall = {str(k): float(top[kind == k].mean()) for k in sorted(set(kind) - {"clean"})}
    per_kind_auroc = {
        str(k): binary_auroc(planted[(kind == k) | ~planted], score[(kind == k) | ~planted])
        for k in sorted(set(kind) - {"clean"})
    }
    return {"auroc": binary_auroc(planted, score), "average_precision": average_precision(planted, score),
            "n_planted": n, "n_images": len(score), "found_in_top_n": int((top & planted).sum()),
            "recall_by_kind": recall, "auroc_by_kind": per_kind_auroc}
