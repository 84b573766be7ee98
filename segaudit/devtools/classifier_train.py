"""Deterministic training and evaluation of a multi-label presence classifier (the demo classifier).

A class is *present* in an image when at least one of its pixels is labelled with it (void ignored), so
any segmentation dataset segaudit reads is also a multi-label classification dataset. The classifier
(:class:`segaudit.models.classifier.SmallGmpCNN`) learns presence with a binary cross-entropy per class
(background included, index 0), AdamW, a one-cycle learning rate and horizontal flips; every random draw
comes from one seeded generator, as in :mod:`segaudit.devtools.train`. Used by ``scripts/train_demo_classifier.py``
and by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segaudit.devtools.train import TrainConfig, fit
from segaudit.models.classifier import build_checkpoint_classifier

__all__ = [
    "ClassifierTrainConfig",
    "presence_labels",
    "train_classifier",
    "predict_scores",
    "average_precision",
]


@dataclass(frozen=True)
class ClassifierTrainConfig(TrainConfig):
    """Training recipe (recorded in the model card): :class:`segaudit.devtools.train.TrainConfig`'s fields, with the
    demo classifier's defaults."""

    arch: str = "small_gmp_cnn"
    epochs: int = 8
    lr: float = 4e-3


def presence_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(N, H, W)`` int64 labels (255 void) -> ``(N, K)`` float32: 1 where the class has a labelled pixel."""
    if labels.ndim != 3:
        raise ValueError(f"labels must be (N, H, W), got {tuple(labels.shape)}")
    classes = torch.arange(num_classes, device=labels.device)
    return (labels.flatten(1).unsqueeze(-1) == classes).any(1).float()


def train_classifier(
    images: torch.Tensor, presence: torch.Tensor, config: ClassifierTrainConfig, log=print
) -> nn.Module:
    """Train ``config.arch`` from scratch on ``(N, 3, S, S)`` images and ``(N, K)`` presence; eval mode
    (the loop of :func:`segaudit.devtools.train.fit`, with a binary cross-entropy per class)."""
    return fit(lambda: build_checkpoint_classifier(config.arch, presence.shape[1]), images, presence,
               F.binary_cross_entropy_with_logits, config, flip_targets=False, log=log)


@torch.no_grad()
def predict_scores(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """``(N, K)`` presence log-odds of every image, in eval mode."""
    model.eval()
    return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of one class: the mean, over its positive images, of the precision at their rank.

    ``AP = (1 / P) sum_{k: y_k = 1} precision@k`` with images sorted by decreasing score, tied scores
    counted together at the last rank of the tie (the step-wise, non-interpolated definition of
    scikit-learn's ``average_precision_score``). NaN when there is no positive.

    Parameters
    ----------
    scores, positive : np.ndarray
        ``(N,)`` scores and bool labels.
    """
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ValueError(f"scores and positive must be (N,) alike, got {scores.shape} and {positive.shape}")
    n_positive = int(positive.sum())
    if n_positive == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], positive[order]
    # one threshold per distinct score: the last index of each run of equal scores
    ends = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(scores) - 1]
    true_pos = np.cumsum(hits)[ends]
    precision = true_pos / (ends + 1)
    recall_steps = np.diff(np.r_[0, true_pos]) / n_positive
    return float((precision * recall_steps).sum())
