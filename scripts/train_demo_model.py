"""Train a shipped demo segmentation model from scratch on segaudit's synthetic shapes.

    python scripts/train_demo_model.py                  # the demo model, LR-ASPP MobileNetV3-Large
    python scripts/train_demo_model.py --arch vgg_fcn   # the VGG-FCN that CNN-Fixations traces (demo-fcn)

Each writes its checkpoint, model card and metrics JSON into segaudit/assets/ (see ``SHIPPED``).

Deterministic: the data comes from ``generate_dataset(seed=0)``, training from ``TrainConfig(seed=0)``,
with two threads (the number of threads changes float summation order, hence the weights' bytes).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from segaudit.data.readers import VocDataset
from segaudit.devtools.synth import CLASS_NAMES, generate_dataset
from segaudit.devtools.train import TrainConfig, confusion_matrix, load_tensors, train_model
from segaudit.metrics.scores import mean_iou
from segaudit.models.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    demo_checkpoint_path,
    demo_fcn_checkpoint_path,
    save_checkpoint,
)

DATA = {"n_train": 600, "n_val": 100, "size": 128, "seed": 0, "plant_errors": 0.0}

#: Per architecture: checkpoint path, card and metrics file names, and the card's title, purpose and origin.
SHIPPED = {
    "lraspp_mobilenet_v3_large": {
        "out": demo_checkpoint_path(), "card": "MODEL_CARD.md", "metrics": "demo_model.json", "title": "Demo model",
        "about": "A segmentation model trained by segaudit for its offline demo; it knows only synthetic shapes.",
        "origin": "torchvision `{arch}` (`weights=None`, `weights_backbone=None`, trained from scratch)",
    },
    "vgg_fcn": {
        "out": demo_fcn_checkpoint_path(), "card": "MODEL_CARD_vgg_fcn.md", "metrics": "demo_vgg_fcn.json",
        "title": "Demo VGG-FCN model",
        "about": "A VGG-style FCN trained by segaudit so CNN-Fixations (`--methods fixations`) runs offline; it "
        "knows only\nsynthetic shapes.",
        "origin": "segaudit `{arch}` (`segaudit/vgg_fcn.py`, trained from scratch)",
    },
}

CARD = """# {title} card: `{file}`

{about}

| field | value |
|---|---|
| architecture | {origin} |
| classes | {classes} |
| input | letterboxed to {size}x{size} RGB, ImageNet mean/std normalisation |
| training data | `segaudit.devtools.synth.generate_dataset({data})`, split `train` (clean, {n_train} images) |
| recipe | {recipe} |
| validation mIoU | **{miou:.4f}** on the clean synthetic `val` split ({n_val} images, VOC labels, void ignored, background included) |
| per-class IoU | {per_class} |
| training time | {minutes:.1f} min on {threads} CPU threads |
| SHA-256 | `{sha}` |
| size | {mb:.1f} MB |

Made by `python scripts/train_demo_model.py{arch_flag}` (torch {torch}). Loaded with `torch.load(..., weights_only=True)`.
Known limits: it has only ever seen 128 px synthetic scenes; on real photos its predictions are meaningless.
The `boat` class was trained with a planted context cue (boats appear on the `water` background ~90% of the
time), on purpose, so audits can show a model that is right for partly the wrong reason.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=tuple(SHIPPED), default="lraspp_mobilenet_v3_large")
    parser.add_argument("--out", type=Path, help="checkpoint path (default: the shipped one of --arch)")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    shipped = SHIPPED[args.arch]
    args.out = args.out or shipped["out"]
    config = TrainConfig(arch=args.arch, epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, **DATA)
        train_x, train_y = load_tensors(VocDataset(tmp, split="train"), CLASS_NAMES, config.input_size)
        val_x, val_y = load_tensors(VocDataset(tmp, split="val"), CLASS_NAMES, config.input_size)
    start = time.perf_counter()
    model = train_model(train_x, train_y, len(CLASS_NAMES), config)
    minutes = (time.perf_counter() - start) / 60
    miou, per_class = mean_iou(confusion_matrix(model, val_x, val_y, len(CLASS_NAMES)))
    print(f"val mIoU {miou:.4f}: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(CLASS_NAMES, per_class, strict=True)))
    metrics = {"val_miou": round(miou, 4), "val_iou": {n: round(float(v), 4) for n, v in zip(CLASS_NAMES, per_class, strict=True)}}
    sha = save_checkpoint(
        model, args.out, arch=config.arch, class_names=CLASS_NAMES, input_size=config.input_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        extra={"train_config": json.dumps(asdict(config)), "data": json.dumps(DATA), "metrics": json.dumps(metrics)},
    )
    card = CARD.format(
        title=shipped["title"], about=shipped["about"], origin=shipped["origin"].format(arch=config.arch),
        arch_flag="" if args.arch == "lraspp_mobilenet_v3_large" else f" --arch {args.arch}",
        file=args.out.name, arch=config.arch, classes=", ".join(CLASS_NAMES), size=config.input_size, data=DATA,
        n_train=DATA["n_train"], n_val=DATA["n_val"], miou=miou, threads=torch.get_num_threads(),
        per_class=", ".join(f"{n} {v:.3f}" for n, v in zip(CLASS_NAMES, per_class, strict=True)),
        recipe=", ".join(f"{k}={v}" for k, v in asdict(config).items()) + ", AdamW, one-cycle LR, "
        "cross-entropy (void ignored), random horizontal flips",
        minutes=minutes, sha=sha, mb=args.out.stat().st_size / 2**20, torch=torch.__version__,
    )
    card_path = args.out.with_name(shipped["card"])
    card_path.write_text(card + _appended_sections(card_path))
    args.out.with_name(shipped["metrics"]).write_text(json.dumps({"sha256": sha, **metrics}, indent=1) + "\n")
    print(f"wrote {args.out} (sha256 {sha})")


def _appended_sections(card: Path) -> str:
    """The sections other scripts keep in this card between ``<!-- NAME: begin -->`` and ``<!-- NAME: end -->``
    (the demo classifier's, ``scripts/train_demo_classifier.py``): kept when this script rewrites the card."""
    text = card.read_text() if card.is_file() else ""
    kept = re.finditer(r"<!-- ([\w-]+): begin -->.*?<!-- \1: end -->", text, flags=re.DOTALL)
    return "".join("\n" + section.group(0) + "\n" for section in kept)


if __name__ == "__main__":
    main()
