"""CNN-Fixations (Seg-Unravel) vs Grad-CAM / Grad-CAM++ on the shipped VGG-FCN: cost and localisation.

    python bench/fixations.py [--n-val 100]

On the demo data's clean val images, for every class the model predicts: the share of fixation points
(weighted) inside the class's predicted mask, and the same map-vs-mask scores for the fixation density,
Grad-CAM and Grad-CAM++ at the default layer (pointing game, energy share, relevance rank, centroid hit),
against the GT mask. Time per image of each method, measured side by side (interleaved, best of 3).
Ends with ``fixations_seconds_per_image``, ``gradcam_seconds_per_image``, ``fixations_in_pred_mask``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from segaudit.auditors.batch import BatchRows, explain_batch, finish_tables, score_batch
from segaudit.cam import compute_cams
from segaudit.data.classmap import build_class_map
from segaudit.data.readers import open_dataset, read_samples
from segaudit.devtools.demo import ensure_demo_data, planted_errors
from segaudit.models.registry import load_model
from segaudit.settings import AuditConfig


def fixation_mask_rate(fixations, pred_png_masks) -> float:
    """Weighted share of fixation points inside their class's predicted mask."""
    inside = total = 0.0
    for row in fixations.itertuples(index=False):
        mask = pred_png_masks[row.image_id]
        total += row.weight
        inside += row.weight * float(mask[row.y, row.x] == row.class_id)
    return inside / total if total else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-val", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_demo_data(Path(tmp) / "data", n_val=args.n_val)
        data = open_dataset(str(root), split="val")
        planted = {m["file_name"] for m in planted_errors(root)}
        refs = [r for r in data.refs() if r.file_name.rsplit("/", 1)[-1] not in planted]
        model = load_model("demo-fcn")
        class_map = build_class_map(data.category_names, model.class_names, None)
        config = AuditConfig(methods=("gradcam", "gradcampp", "fixations"), thumbnail_size=32)
        rows, preds, timing = BatchRows(), {}, {"fixations": [], "gradcam": []}
        for i in range(0, len(refs), args.batch_size):
            samples, errors = read_samples(data, refs[i : i + args.batch_size])
            explained = explain_batch(samples, model, class_map, config, errors)
            rows.extend(score_batch(explained, model, config))
            for b, s in enumerate(explained.batch.samples):
                preds[s.image_id] = explained.cams.pred[b].numpy()
            images = explained.batch.images
            for method in ("fixations", "gradcam"):  # interleaved, best of 3
                best = float("inf")
                for _ in range(3):
                    start = time.perf_counter()
                    compute_cams(model.module, images, model.default_layer, methods=(method,))
                    best = min(best, time.perf_counter() - start)
                timing[method].append(best / len(images))
    frames = finish_tables(rows, config.rules, config.methods, (model.default_layer,))
    scores = frames["scores"]
    gt = scores[(scores["mask"] == "gt") & (scores["mask_pixels"] > 0)]
    table = gt.groupby("method")[["pointing_hit", "energy_in_mask", "relevance_rank", "auroc", "centroid_hit",
                                  "max_point_hit"]].mean()
    rate = fixation_mask_rate(frames["fixations"], preds)
    per_image = {m: sum(t) / len(t) for m, t in timing.items()}
    print(f"{len(preds)} clean val images, {frames['fixations']['image_id'].nunique()} with fixations, "
          f"{len(frames['fixations'])} fixation points")
    print("map vs GT mask (mean over classes present in the label):")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"time per image: fixations {per_image['fixations'] * 1e3:.1f} ms, Grad-CAM {per_image['gradcam'] * 1e3:.1f} ms "
          f"(ratio {per_image['fixations'] / per_image['gradcam']:.2f})")
    print()
    print(f"fixations_seconds_per_image: {per_image['fixations']:.4f}")
    print(f"gradcam_seconds_per_image: {per_image['gradcam']:.4f}")
    print(f"fixations_in_pred_mask: {rate:.3f}")


if __name__ == "__main__":
    main()
