"""Deterministic training and evaluation of a segmentation model on a dataset segaudit can read.

Used to make the shipped demo model (``scripts/train_demo_model.py``) and by the tests at toy scale.
Cross-entropy with void (255) ignored, AdamW, one-cycle learning rate, horizontal flips; every random draw
comes from one seeded generator, so a run is repeatable on the same machine and thread count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segaudit.cam import model_logits
from segaudit.data.classmap import build_class_map
from segaudit.data.preprocess import prepare_batch
from segaudit.data.readers import SegmentationDataset, read_samples
from segaudit.models.registry import IMAGENET_MEAN, IMAGENET_STD, build_architecture
from segaudit.schema import VOID_LABEL

__all__ = ["TrainConfig", "load_tensors", "train_model", "fit", "recalibrate_batchnorm", "confusion_matrix"]


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe (recorded in the model card)."""

    arch: str = "lraspp_mobilenet_v3_large"
    input_size: int = 128
    epochs: int = 16
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


def load_tensors(
    dataset: SegmentationDataset, class_names: tuple[str, ...], size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a dataset as ``(N, 3, S, S)`` normalised floats and ``(N, S, S)`` int64 labels."""
    class_map = build_class_map(dataset.category_names, class_names)
    samples, errors = read_samples(dataset, dataset.refs())
    if errors:
        raise ValueError(f"training data has {len(errors)} unreadable items, first: {errors[0].reason}")
    batch = prepare_batch(samples, class_map, size, IMAGENET_MEAN, IMAGENET_STD)
    return batch.images, batch.gt


def train_model(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, config: TrainConfig, log=print
) -> nn.Module:
    """Train ``config.arch`` from scratch (no pretrained weights) and return it in eval mode."""

    def loss(output: torch.Tensor | dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model_logits(output), y, ignore_index=255)

    return fit(lambda: build_architecture(config.arch, num_classes), images, labels, loss, config,
               flip_targets=True, log=log)


def fit(
    build: Callable[[], nn.Module],
    images: torch.Tensor,
    targets: torch.Tensor,
    loss: Callable[[object, torch.Tensor], torch.Tensor],
    config: TrainConfig,
    flip_targets: bool,
    log=print,
) -> nn.Module:
    """The training loop of every shipped model: ``build()`` a model after seeding, then ``config.epochs``
    epochs of AdamW with a one-cycle learning rate over shuffled batches of ``(images, targets)`` with random
    horizontal flips (of the targets too when ``flip_targets``: per-pixel labels), then exact BatchNorm
    statistics (:func:`recalibrate_batchnorm`); eval mode. Every random draw comes from ``config.seed``.

    ``config``: :class:`TrainConfig` or :class:`segaudit.devtools.classifier_train.ClassifierTrainConfig`.
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build()
    steps_per_epoch = int(np.ceil(len(images) / config.batch_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    model.train()
    start = time.perf_counter()
    for epoch in range(config.epochs):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            x, y = images[index], targets[index]
            flip = torch.rand(len(index), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            if flip_targets:
                y = torch.where(flip[:, None, None], y.flip(-1), y)
            batch_loss = loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            schedule.step()
            total += float(batch_loss.detach())
        log(f"epoch {epoch + 1}/{config.epochs}: loss {total / steps_per_epoch:.4f} "
            f"({time.perf_counter() - start:.0f} s)")
    recalibrate_batchnorm(model, images, config.batch_size)
    return model.eval()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """Recompute BatchNorm running statistics as exact averages over ``images`` with the final weights.

    torchvision's MobileNetV3 uses BN momentum 0.01, so after a short training with a fast-changing
    schedule the running statistics still describe earlier weights and eval-mode predictions collapse
    (measured on the demo model: 0.26 val mIoU before, see the model card for after).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the exact mean over the batches seen
    model.train()
    for start in range(0, len(images), batch_size):
        model(images[start : start + batch_size])
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def confusion_matrix(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, batch_size: int = 32
) -> np.ndarray:
    """``(K, K)`` int64 pixel counts, rows = label, columns = prediction; void pixels excluded."""
    matrix = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    model.eval()
    for start in range(0, len(images), batch_size):
        pred = model_logits(model(images[start : start + batch_size])).argmax(1)
        y = labels[start : start + batch_size]
        keep = y != VOID_LABEL
        matrix += torch.bincount(y[keep] * num_classes + pred[keep], minlength=num_classes * num_classes)
    return matrix.view(num_classes, num_classes).numpy()
