"""Train the shipped demo detector: segaudit's compact Mask R-CNN (MobileNetV3-Small FPN) from scratch on
segaudit's synthetic shapes.

    python scripts/train_demo_detector.py         # writes segaudit/assets/demo_maskrcnn_*.pt and its card

Deterministic: the data comes from ``generate_dataset(seed=0)`` (the demo model's recipe), every random draw
from one seeded generator, one CPU thread (the thread count changes float summation order, hence the bytes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.ops import masks_to_boxes

from segaudit.cam.detection import (
    MASK_THRESHOLD,
    apply_detection_settings,
    configure_detection_transform,
    paint_semantic,
)
from segaudit.data.classmap import build_class_map
from segaudit.data.preprocess import prepare_batch
from segaudit.data.readers import open_dataset, read_samples
from segaudit.devtools.synth import CLASS_NAMES, generate_dataset
from segaudit.metrics.scores import mean_iou
from segaudit.models.registry import IMAGENET_MEAN, IMAGENET_STD, build_architecture, save_checkpoint

DATA = {"n_train": 600, "n_val": 100, "size": 128, "seed": 0, "plant_errors": 0.0}
ARCH = "maskrcnn_mobilenet_v3_small_fpn"
ASSET = Path(__file__).resolve().parents[1] / "segaudit" / "assets" / f"demo_{ARCH}.pt"
#: what the shipped model reports (and an audit explains): detections scoring >= 0.5, at most 20 per image
INFERENCE = {"box_score_thresh": 0.5, "box_nms_thresh": 0.5, "box_detections_per_img": 20,
             "rpn_pre_nms_top_n_test": 500, "rpn_post_nms_top_n_test": 200}


@dataclass(frozen=True)
class DetectorConfig:
    """Training recipe (recorded in the model card)."""

    input_size: int = 128
    epochs: int = 12
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    rpn_train_proposals: int = 300
    roi_samples: int = 64
    seed: int = 0


def load_split(root: str, split: str, size: int):
    """Images ``(N, 3, S, S)`` and per image the (labels, masks) of its labelled instances."""
    data = open_dataset(str(Path(root) / "annotations" / f"instances_{split}.json"))
    samples, errors = read_samples(data, data.refs())
    if errors:
        raise ValueError(f"{split}: {len(errors)} unreadable items, first: {errors[0].reason}")
    batch = prepare_batch(samples, build_class_map(data.category_names, CLASS_NAMES), size, IMAGENET_MEAN,
                          IMAGENET_STD)
    targets = []
    for instances in batch.instances:
        kept = [(c, m) for c, m in instances if m.any()]
        labels = torch.tensor([c for c, _ in kept], dtype=torch.int64)
        masks = torch.stack([m for _, m in kept]) if kept else torch.zeros((0, size, size), dtype=torch.bool)
        targets.append((labels, masks))
    return batch.images, targets, batch.gt


def _target(labels: torch.Tensor, masks: torch.Tensor, flip: bool) -> dict[str, torch.Tensor]:
    masks = masks.flip(-1) if flip else masks
    return {"boxes": masks_to_boxes(masks).float() if len(masks) else torch.zeros((0, 4)),
            "labels": labels, "masks": masks.to(torch.uint8)}


def train(images: torch.Tensor, targets: list, config: DetectorConfig, log=print) -> nn.Module:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = configure_detection_transform(build_architecture(ARCH, len(CLASS_NAMES)), config.input_size)
    model.rpn._pre_nms_top_n["training"] = 2 * config.rpn_train_proposals
    model.rpn._post_nms_top_n["training"] = config.rpn_train_proposals
    model.roi_heads.fg_bg_sampler.batch_size_per_image = config.roi_samples
    steps = int(np.ceil(len(images) / config.batch_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * steps,
                                                   pct_start=0.15)
    model.train()
    start = time.perf_counter()
    for epoch in range(config.epochs):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for step in range(steps):
            index = order[step * config.batch_size : (step + 1) * config.batch_size].tolist()
            flips = (torch.rand(len(index), generator=generator) < 0.5).tolist()
            x = [images[i].flip(-1) if f else images[i] for i, f in zip(index, flips, strict=True)]
            y = [_target(*targets[i], f) for i, f in zip(index, flips, strict=True)]
            loss = sum(model(x, y).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        log(f"epoch {epoch + 1}/{config.epochs}: loss {total / steps:.4f} ({time.perf_counter() - start:.0f} s)")
    recalibrate_batchnorm(model, images, config.batch_size)
    return model.eval()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """BatchNorm running statistics as exact averages over ``images`` with the final weights (see
    :func:`segaudit.devtools.train.recalibrate_batchnorm`); the rest of the detector runs in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for start in range(0, len(images), batch_size):
        model(list(images[start : start + batch_size]))
    for m in norms:
        m.momentum = 0.1
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, targets: list, gt: torch.Tensor) -> dict:
    """Detection precision and recall at IoU 0.5 (mask IoU, same class, greedy by score) and the mIoU of the
    semantic prediction painted from the detections (segaudit.cam.detection.paint_semantic)."""
    model.eval()
    matched = predicted = labelled = 0
    confusion = np.zeros((len(CLASS_NAMES),) * 2, dtype=np.int64)
    for start in range(0, len(images), 16):
        outputs = model(list(images[start : start + 16]))
        for b, out in enumerate(outputs):
            labels, masks = targets[start + b]
            found = out["masks"][:, 0] >= MASK_THRESHOLD
            labelled += len(labels)
            predicted += len(out["labels"])
            used = set()
            for n in range(len(out["labels"])):
                same = torch.nonzero(labels == out["labels"][n]).flatten().tolist()
                if not same:
                    continue
                inter = (masks[same] & found[n]).flatten(1).sum(1).float()
                union = (masks[same] | found[n]).flatten(1).sum(1).float()
                iou = inter / union.clamp(min=1)
                best = int(iou.argmax())
                if iou[best] >= 0.5 and same[best] not in used:
                    used.add(same[best])
                    matched += 1
            painted = paint_semantic(found, out["labels"], out["scores"], torch.zeros(len(found), dtype=torch.int64), 1)
            g, p = gt[start + b], painted[0]
            keep = g != 255
            confusion += np.bincount((g[keep] * len(CLASS_NAMES) + p[keep]).numpy(),
                                     minlength=len(CLASS_NAMES) ** 2).reshape(confusion.shape)
    miou, per_class = mean_iou(confusion)
    return {"precision": round(matched / max(predicted, 1), 4), "recall": round(matched / max(labelled, 1), 4),
            "painted_miou": round(miou, 4),
            "painted_iou": {n: round(float(v), 4) for n, v in zip(CLASS_NAMES, per_class, strict=True)}}


CARD = """# Demo detector card: `{file}`

A Mask R-CNN trained by segaudit so its detection audit can run offline; it knows only synthetic shapes.

| field | value |
|---|---|
| architecture | segaudit `{arch}` (`segaudit.models.registry.build_architecture`): MobileNetV3-Small features, 64-channel FPN, torchvision Mask R-CNN heads at a quarter width; {params:,} parameters, trained from scratch |
| classes | {classes} |
| input | letterboxed to {size}x{size} RGB, ImageNet mean/std normalisation (done once, by segaudit) |
| training data | `segaudit.devtools.synth.generate_dataset({data})`, split `train` (clean, {n_train} images, COCO instances) |
| recipe | {recipe} |
| inference | {inference} |
| validation | on the clean `val` split ({n_val} images): precision {precision:.3f}, recall {recall:.3f} (mask IoU >= 0.5, same class); painted semantic mIoU **{miou:.4f}** ({per_class}) |
| training time | {minutes:.1f} min on {threads} CPU thread(s) |
| SHA-256 | `{sha}` |
| size | {mb:.1f} MB |

Made by `python scripts/train_demo_detector.py` (torch {torch}). Loaded with `torch.load(..., weights_only=True)`;
audit with `segaudit run DATA --model {rel}`. Known limits: it has only ever seen 128 px synthetic scenes.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ASSET)
    parser.add_argument("--epochs", type=int, default=DetectorConfig.epochs)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = DetectorConfig(epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, **DATA)
        train_x, train_t, _ = load_split(tmp, "train", config.input_size)
        val_x, val_t, val_gt = load_split(tmp, "val", config.input_size)
    start = time.perf_counter()
    model = train(train_x, train_t, config)
    minutes = (time.perf_counter() - start) / 60
    apply_detection_settings(model, INFERENCE)
    metrics = evaluate(model, val_x, val_t, val_gt)
    print(json.dumps(metrics))
    sha = save_checkpoint(model, args.out, arch=ARCH, class_names=CLASS_NAMES, input_size=config.input_size,
                          extra={"train_config": json.dumps(asdict(config)), "data": json.dumps(DATA),
                                 "metrics": json.dumps(metrics)})
    card = CARD.format(
        file=args.out.name, arch=ARCH, params=sum(p.numel() for p in model.parameters()),
        classes=", ".join(CLASS_NAMES), size=config.input_size, data=DATA, n_train=DATA["n_train"],
        n_val=DATA["n_val"], recipe=", ".join(f"{k}={v}" for k, v in asdict(config).items())
        + ", AdamW, one-cycle LR, torchvision's Mask R-CNN losses, random horizontal flips, BatchNorm recalibrated",
        inference=", ".join(f"{k}={v}" for k, v in INFERENCE.items()), precision=metrics["precision"],
        recall=metrics["recall"], miou=metrics["painted_miou"],
        per_class=", ".join(f"{k} {v:.3f}" for k, v in metrics["painted_iou"].items()), minutes=minutes,
        threads=torch.get_num_threads(), sha=sha, mb=args.out.stat().st_size / 2**20, torch=torch.__version__,
        rel=f"segaudit/assets/{args.out.name}",
    )
    args.out.with_name(f"{args.out.stem}.md").write_text(card)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MB, sha256 {sha[:12]})")


if __name__ == "__main__":
    main()
