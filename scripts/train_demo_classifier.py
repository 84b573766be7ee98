"""Train the shipped demo classifier: a small multi-label CNN on segaudit's synthetic shapes, then measure it.

    python scripts/train_demo_classifier.py      # writes segaudit/assets/ (checkpoint, metrics, card section)

Same data as the demo segmentation model (``generate_dataset(seed=0)``, clean ``train`` split), labels
reduced to class presence; training from ``ClassifierTrainConfig(seed=0)`` with two threads and
deterministic algorithms (the number of threads changes float summation order, hence the weights' bytes).

After training it measures, on the clean ``val`` split, the per-class average precision and accuracy, and
the seed study: how well the classifier's Grad-CAM / Grad-CAM++ maps fall inside the labelled objects,
against the demo segmentation model's Grad-CAM / Grad-CAM++ on the same images and classes (pointing game
and energy in the GT mask, every labelled (image, class) pair, ``target="gt"``, logits).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from segaudit.cam import compute_cams, upsample_maps
from segaudit.cam.targets import TARGET_NONE
from segaudit.data.readers import VocDataset
from segaudit.devtools.classifier_train import (
    ClassifierTrainConfig,
    average_precision,
    predict_scores,
    presence_labels,
    train_classifier,
)
from segaudit.devtools.synth import CLASS_NAMES, generate_dataset
from segaudit.devtools.train import load_tensors
from segaudit.metrics.scores import energy_in_mask, pointing_game
from segaudit.models.classifier import CHECKPOINT_CLASSIFIERS
from segaudit.models.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    demo_classifier_path,
    load_model,
    save_checkpoint,
)

#: The demo segmentation model's data (scripts/train_demo_model.py), so both models saw the same scenes.
DATA = {"n_train": 600, "n_val": 100, "size": 128, "seed": 0, "plant_errors": 0.0}
METHODS = ("gradcam", "gradcampp")
BEGIN, END = "<!-- demo-classifier: begin -->", "<!-- demo-classifier: end -->"

SECTION = """{begin}
## Demo classifier: `{file}`

A multi-label classifier trained by segaudit so that classifier CAMs are measured offline too
(`load_model("demo-classifier")`, `task="classification"`); it knows only the synthetic shapes.

| field | value |
|---|---|
| architecture | `segaudit.models.classifier.SmallGmpCNN` (`{arch}`: five conv blocks, global max pooling, linear; {params} parameters), default CAM layer `{layer}` |
| output | per-image presence log-odds over {classes}; present when > 0 |
| input | letterboxed to {size}x{size} RGB, ImageNet mean/std normalisation |
| training data | `segaudit.devtools.synth.generate_dataset({data})`, split `train` ({n_train} images), labels = class presence (a pixel labelled with the class) |
| recipe | {recipe} |
| validation mAP | **{map:.4f}** (mean over the 5 shape classes) on the clean `val` split ({n_val} images) |
| per-class AP | {ap} |
| per-class accuracy | {acc} (threshold: log-odds > 0); all classes right in {exact:.0%} of the images |
| training time | {minutes:.1f} min on {threads} CPU threads |
| SHA-256 | `{sha}` |
| size | {mb:.2f} MB |

Seed study, same {n_val} validation images, every labelled (image, class) pair ({n_pairs}), maps of the
labelled class (`target="gt"`, logits) upsampled to 128 px, scored against its GT mask (void ignored; a map
with no positive value counts as a miss with energy 0):

| model, layer | method | pointing game | energy in GT mask | boat: pointing / energy |
|---|---|---|---|---|
{study}

Made by `python scripts/train_demo_classifier.py` (torch {torch}). Loaded with `torch.load(..., weights_only=True)`.
{end}"""


def _seed_study(
    val_x: torch.Tensor, val_y: torch.Tensor, classifier, segmenter
) -> dict[str, dict[str, dict[str, float]]]:
    """Pointing game and energy in the GT mask of each model's maps of the labelled classes."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    boat = CLASS_NAMES.index("boat")
    for model in (classifier, segmenter):
        layer = model.default_layer
        hits = {m: [] for m in METHODS}
        energy = {m: [] for m in METHODS}
        classes = []
        for start in range(0, len(val_x), 25):
            x, y = val_x[start : start + 25], val_y[start : start + 25]
            cams = compute_cams(model.module, x, layer, y, METHODS, target="gt")
            b, k = torch.nonzero((cams.target_source != TARGET_NONE) & (presence_labels(y, len(CLASS_NAMES)) > 0),
                                 as_tuple=True)
            masks, valid = y[b] == k[:, None, None], y[b] != 255
            classes.append(k)
            for method in METHODS:
                full = upsample_maps(cams.map(method)[b, k], tuple(x.shape[-2:]))
                hits[method].append(pointing_game(full, masks, valid))
                energy[method].append(energy_in_mask(full, masks, valid))
        k = torch.cat(classes)
        rows = {}
        for method in METHODS:
            # the masks are never empty here: NaN means a map without positive mass, a miss with no energy
            hit = torch.cat(hits[method]).double().nan_to_num(0.0)
            share = torch.cat(energy[method]).double().nan_to_num(0.0)
            rows[method] = {
                "pointing_game": round(float(hit.mean()), 4),
                "energy_in_mask": round(float(share.mean()), 4),
                "boat_pointing_game": round(float(hit[k == boat].mean()), 4),
                "boat_energy_in_mask": round(float(share[k == boat].mean()), 4),
                "pairs": len(k),
            }
        out[f"{model.name}, {layer}"] = rows
    return out


def _write_card_section(card: Path, section: str) -> None:
    text = card.read_text() if card.is_file() else ""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    card.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=demo_classifier_path())
    parser.add_argument("--epochs", type=int, default=ClassifierTrainConfig.epochs)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    config = ClassifierTrainConfig(epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, **DATA)
        train_x, train_y = load_tensors(VocDataset(tmp, split="train"), CLASS_NAMES, config.input_size)
        val_x, val_y = load_tensors(VocDataset(tmp, split="val"), CLASS_NAMES, config.input_size)
    num_classes = len(CLASS_NAMES)
    start = time.perf_counter()
    model = train_classifier(train_x, presence_labels(train_y, num_classes), config)
    minutes = (time.perf_counter() - start) / 60

    truth = presence_labels(val_y, num_classes).numpy() > 0
    logits = predict_scores(model, val_x).numpy()
    shapes = CLASS_NAMES[1:]
    ap = {n: average_precision(logits[:, c], truth[:, c]) for c, n in enumerate(CLASS_NAMES) if c > 0}
    accuracy = {n: float(((logits[:, c] > 0) == truth[:, c]).mean()) for c, n in enumerate(CLASS_NAMES) if c > 0}
    exact = float(((logits[:, 1:] > 0) == truth[:, 1:]).all(1).mean())
    mean_ap = float(np.mean([ap[n] for n in shapes]))
    print(f"val mAP {mean_ap:.4f}: " + ", ".join(f"{n} {ap[n]:.3f}" for n in shapes))
    print("val accuracy: " + ", ".join(f"{n} {accuracy[n]:.3f}" for n in shapes) + f"; exact match {exact:.3f}")
    metrics = {
        "val_map": round(mean_ap, 4),
        "val_ap": {n: round(v, 4) for n, v in ap.items()},
        "val_accuracy": {n: round(v, 4) for n, v in accuracy.items()},
        "val_exact_match": round(exact, 4),
    }
    sha = save_checkpoint(
        model, args.out, arch=config.arch, class_names=CLASS_NAMES, input_size=config.input_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        extra={"train_config": json.dumps(asdict(config)), "data": json.dumps(DATA), "metrics": json.dumps(metrics)},
    )

    classifier = load_model(str(args.out))
    classifier.name = "demo-classifier"
    study = _seed_study(val_x, val_y, classifier, load_model("demo"))
    lines = []
    for model_layer, rows in study.items():
        for method, r in rows.items():
            lines.append(f"| {model_layer} | {method} | {r['pointing_game']:.3f} | {r['energy_in_mask']:.3f} | "
                         f"{r['boat_pointing_game']:.3f} / {r['boat_energy_in_mask']:.3f} |")
            print(f"{model_layer} {method}: {r}")
    section = SECTION.format(
        begin=BEGIN, end=END, file=args.out.name, arch=config.arch, layer=CHECKPOINT_CLASSIFIERS[config.arch],
        params=f"{sum(p.numel() for p in model.parameters()):,}", classes=", ".join(CLASS_NAMES),
        size=config.input_size, data=DATA, n_train=DATA["n_train"], n_val=DATA["n_val"],
        recipe=", ".join(f"{k}={v}" for k, v in asdict(config).items()) + ", AdamW, one-cycle LR, "
        "binary cross-entropy per class (background included), random horizontal flips, BatchNorm statistics "
        "recomputed on the training images",
        map=mean_ap, ap=", ".join(f"{n} {ap[n]:.3f}" for n in shapes),
        acc=", ".join(f"{n} {accuracy[n]:.2f}" for n in shapes), exact=exact, minutes=minutes,
        threads=torch.get_num_threads(), sha=sha, mb=args.out.stat().st_size / 2**20,
        n_pairs=next(iter(next(iter(study.values())).values()))["pairs"], study="\n".join(lines),
        torch=torch.__version__,
    )
    _write_card_section(args.out.with_name("MODEL_CARD.md"), section)
    args.out.with_name("demo_classifier.json").write_text(
        json.dumps({"sha256": sha, **metrics, "seed_study": study}, indent=1) + "\n"
    )
    print(f"wrote {args.out} (sha256 {sha})")


if __name__ == "__main__":
    main()
