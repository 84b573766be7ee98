"""The causal context test and class entanglement on the demo: does the test rank the planted cue class first,
what do the new findings say, and what does the test cost?

The demo's data (100 validation scenes of the demo recipe, boats drawn on water 88% of the time) is audited
in-process (no Prefect) with the shipped demo model, Grad-CAM + Grad-CAM++ at the default layer, at the given
evidence level (default ``full``: every image, so that every class has enough right predictions; the audit's
default ``sampled`` tests ~10% of the images). ``context_rows`` is timed on its own.

    python bench/context.py [--data /tmp/demo_data] [--evidence full|sampled] [--share 0.1]

Ends with ``key: value`` lines: the cue class's rank by the causal test and by the map, the per-class causal
``context_reliance``, the number of findings per kind, the context stage's seconds and the audit's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import segaudit.auditors.context_rows as context_stage
from segaudit.auditors.batch import BatchRows, explain_batch, finish_tables, score_batch
from segaudit.data.classmap import build_class_map
from segaudit.data.readers import open_dataset, read_samples
from segaudit.devtools.demo import ensure_demo_data
from segaudit.findings.rules import class_reliance
from segaudit.models.registry import load_model
from segaudit.settings import AuditConfig

CONTEXT_CUE_CLASS = "boat"


def audit(root: Path, evidence: str, share: float, batch_size: int = 16):
    """Audit the demo data in-process; return the tables, the config, the model and the context stage's seconds."""
    data = open_dataset(str(root))
    model = load_model("demo")
    class_map = build_class_map(data.category_names, model.class_names, None)
    config = AuditConfig(methods=("gradcam", "gradcampp"), thumbnail_size=64, batch_size=batch_size,
                         evidence=evidence, evidence_share=share)
    timed = {"s": 0.0}
    real = context_stage.context_rows

    def context_rows(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            timed["s"] += time.perf_counter() - start

    context_stage.context_rows = context_rows  # add_context_rows looks it up in its module
    try:
        rows, refs = BatchRows(), data.refs()
        for i in range(0, len(refs), batch_size):
            samples, errors = read_samples(data, refs[i : i + batch_size])
            rows.extend(score_batch(explain_batch(samples, model, class_map, config, errors), model, config))
    finally:
        context_stage.context_rows = real
    frames = finish_tables(rows, config.rules, config.methods, config.layers_of(model))
    return frames, config, model, timed["s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="the demo data folder (generated there if absent; default: a temporary one)")
    parser.add_argument("--evidence", default="full", choices=("sampled", "full"))
    parser.add_argument("--share", type=float, default=0.1)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_demo_data(Path(args.data or tmp) / ("" if args.data else "data"))
        start = time.perf_counter()
        frames, config, model, context_s = audit(root, args.evidence, args.share)
        audit_s = time.perf_counter() - start
    context, findings = frames["context"], frames["findings"]
    layers = config.layers_of(model)
    causal = class_reliance(frames["scores"], config.rules, config.methods, layers, context=context)
    print(f"{len(frames['images'])} images, {context['image_id'].nunique()} tested, {len(context)} (image, class) "
          f"pairs; evidence={args.evidence}")
    print("\nclass reliance on context (causal: mean score drop over right predictions tested; cam: 1 - RRA):")
    print(causal.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\ncontext test per class (all tested pairs, means):")
    per_class = context.groupby("class_name")[["score", "score_object_only", "context_reliance", "iou",
                                               "iou_object_only", "hallucination", "outside_share"]].mean()
    print(per_class.to_string(float_format=lambda v: f"{v:.3f}"))
    new = findings[findings["kind"].isin(["context_reliance", "context_hallucination", "class_entanglement"])]
    print("\nnew / changed findings:")
    print(new[["kind", "image_id", "class_name", "score", "seg_iou", "context_reliance", "hallucination",
               "outside_share", "template_correlation", "confusion_share"]].to_string(
                   index=False, float_format=lambda v: f"{v:.3f}"))
    by_map = causal.sort_values("cam_reliance", ascending=False, kind="stable").reset_index(drop=True)
    cue_causal = causal.index[causal["class_name"] == CONTEXT_CUE_CLASS]
    cue_map = by_map.index[by_map["class_name"] == CONTEXT_CUE_CLASS]
    context_findings = findings[findings["kind"] == "context_reliance"]
    print()
    print(f"cue_class_rank_causal: {int(cue_causal[0]) + 1 if len(cue_causal) else -1}")
    print(f"cue_class_rank_map: {int(cue_map[0]) + 1 if len(cue_map) else -1}")
    for row in causal.itertuples():
        print(f"context_reliance_{row.class_name}: {row.reliance:.4f}")
    for kind in ("context_reliance", "context_hallucination", "class_entanglement"):
        print(f"findings_{kind}: {int((findings['kind'] == kind).sum())}")
    print(f"findings_context_reliance_causal: {int(context_findings['context_reliance'].notna().sum())}")
    print(f"context_pairs: {len(context)}")
    print(f"context_stage_s: {context_s:.2f}")
    print(f"audit_s: {audit_s:.2f}")


if __name__ == "__main__":
    main()
