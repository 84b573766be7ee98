"""Do segaudit's findings find planted label errors, and better than cleanlab on the same model outputs?

Data: the demo recipe's validation scenes (the shipped demo model never saw them, it was trained on the
clean train split) with one planted label error in 20% of the images (shift, erode, dilate, swap_class,
delete, spurious). The audit runs its engine (Grad-CAM + Grad-CAM++ at the default layer); cleanlab's
``segmentation.rank.get_label_quality_scores`` (softmin) scores the same softmax outputs. Both are scored
by AUROC and average precision for planted vs clean images, and by recall per corruption kind among the N
top-ranked images (N = number of planted ones). The planted context cue (boats are drawn on water 88% of
the time) is checked by ranking the classes by their context-reliance score.

    python bench/label_errors.py [--n-val 300] [--seed 0]

Ends with ``auroc_segaudit: X``, ``auroc_cleanlab: Y`` and ``context_cue_class_rank: R``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from segaudit.auditors.batch import BatchRows, explain_batch, finish_tables, score_batch
from segaudit.data.classmap import build_class_map
from segaudit.data.readers import open_dataset, read_samples
from segaudit.devtools.demo import ensure_demo_data, planted_errors
from segaudit.devtools.validation import planted_error_metrics
from segaudit.findings.rules import class_reliance
from segaudit.models.registry import load_model
from segaudit.settings import AuditConfig

CONTEXT_CUE_CLASS = "boat"


def run_audit(root: Path, batch_size: int = 16):
    """Audit the val split in-process; return the tables and the softmax outputs with labels (for cleanlab)."""
    data = open_dataset(str(root), split="val")
    model = load_model("demo")
    class_map = build_class_map(data.category_names, model.class_names, None)
    config = AuditConfig(methods=("gradcam", "gradcampp"), thumbnail_size=32, batch_size=batch_size)
    rows, probs, labels = BatchRows(), [], []
    refs = data.refs()
    for i in range(0, len(refs), batch_size):
        samples, errors = read_samples(data, refs[i : i + batch_size])
        explained = explain_batch(samples, model, class_map, config, errors)
        rows.extend(score_batch(explained, model, config))
        probs.append(explained.cams.logits.softmax(1).numpy())
        labels.append(explained.batch.gt.numpy())
    frames = finish_tables(rows, config.rules, config.methods, config.layers_of(model))
    return frames, np.concatenate(probs), np.concatenate(labels), config, model


def cleanlab_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """cleanlab's per-image label quality (softmin). cleanlab has no void label: void pixels get the
    model's predicted class, i.e. a label the model agrees with (the most favourable choice for it)."""
    from cleanlab.segmentation.rank import get_label_quality_scores

    labels = labels.copy()
    void = labels == 255
    labels[void] = probs.argmax(1)[void]
    scores, _ = get_label_quality_scores(labels, probs, verbose=False)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-val", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="folder for the generated data (default: a temporary one)")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_demo_data(Path(args.data or tmp) / "data", n_val=args.n_val, seed=args.seed)
        start = time.perf_counter()
        frames, probs, labels, config, model = run_audit(root)
        audit_s = time.perf_counter() - start
        manifest = planted_errors(root)
    images = frames["images"]
    start = time.perf_counter()
    cleanlab = cleanlab_scores(probs, labels)
    cleanlab_s = time.perf_counter() - start
    candidates = {
        "segaudit suspicion": images["suspicion"].to_numpy(),
        "segaudit label quality only (1 - Q)": 1.0 - images["label_quality"].to_numpy(),
        "segaudit CAM consistency only (1 - C)": 1.0 - images["consistency"].to_numpy(),
        "cleanlab softmin (1 - score)": 1.0 - cleanlab,
    }
    print(f"{len(images)} val images, {len(manifest)} planted errors; audit {audit_s:.1f} s, cleanlab {cleanlab_s:.2f} s")
    print(f"{'score':40s} {'AUROC':>6s} {'AP':>6s} {'top-N':>6s}  recall by kind in top-N")
    results = {}
    for name, score in candidates.items():
        m = planted_error_metrics(images, score, manifest)
        results[name] = m
        kinds = " ".join(f"{k}:{v:.2f}" for k, v in m["recall_by_kind"].items())
        print(f"{name:40s} {m['auroc']:6.3f} {m['average_precision']:6.3f} {m['found_in_top_n']:3d}/{m['n_planted']}  {kinds}")
    findings = frames["findings"]
    print("\nfindings by kind (images with a planted error / all):")
    planted_files = {m["file_name"] for m in manifest}
    for kind, group in findings.groupby("kind"):
        on_planted = group["file_name"].str.rsplit("/", n=1).str[-1].isin(planted_files)
        print(f"  {kind:22s} {int(on_planted.sum()):4d} / {len(group)}")
    label_errors = findings[findings["kind"] == "label_error"].sort_values("rank")
    on_planted = label_errors["file_name"].str.rsplit("/", n=1).str[-1].isin(planted_files).to_numpy()
    precision = {k: float(on_planted[:k].mean()) for k in (10, 20, 40, 60) if len(on_planted) >= k}
    covered = label_errors.loc[on_planted, "file_name"].nunique()
    print("label_error findings: precision (on a planted image) among the k strongest: "
          + ", ".join(f"k={k}: {v:.2f}" for k, v in precision.items())
          + f"; planted images with a label_error finding: {covered} / {len(manifest)}")
    reliance = class_reliance(frames["scores"], config.rules, config.methods, config.layers_of(model))
    print("\nclass reliance on context (primary map: share of top-|G| pixels outside the object, right predictions):")
    print(reliance.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    cue = reliance.loc[reliance["class_name"] == CONTEXT_CUE_CLASS, "rank"]
    print()
    print(f"auroc_segaudit: {results['segaudit suspicion']['auroc']:.4f}")
    print(f"ap_segaudit: {results['segaudit suspicion']['average_precision']:.4f}")
    print(f"auroc_cleanlab: {results['cleanlab softmin (1 - score)']['auroc']:.4f}")
    print(f"ap_cleanlab: {results['cleanlab softmin (1 - score)']['average_precision']:.4f}")
    print(f"label_error_precision_at_40: {precision.get(40, float('nan')):.3f}")
    print(f"context_cue_class_rank: {int(cue.iloc[0]) if len(cue) else -1}")


if __name__ == "__main__":
    main()
