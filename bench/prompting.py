"""Seed study of issue 4: CAM points as prompts for a promptable segmenter (GrabCut by default, or SAM).

    python bench/prompting.py [--data DIR] [--limit N] [--out DIR] [--sam-checkpoint FILE --sam-model vit_b]

On the demo's validation scenes (generated into ``--data`` if absent; COCO annotations) with the shipped
demo model, Grad-CAM and Grad-CAM++ at the model's default layer (``explain_batch``, no Prefect), every
(image, class) map of the audit is turned into prompts (:mod:`segaudit.metrics.prompting`): the weighted centroid or
the maximum as the foreground point, the map's minimum as the background point, the map thresholded at 0.5
as the region. The segments are scored against the labels and written to a ``prompts`` Parquet table
(``--out`` keeps it), which the summary below is computed from with pandas.

Prints, per method: the hit rate of the centroid and of the max point (share of labelled classes whose
point lies inside the label), the mean IoU with the label of the segments from foreground-only and
foreground+background prompts for each point, and the IoU of the thresholded map itself (the scores
table's ``iou_at_0_5``). Images with a planted label error are left out of the summary (their labels are
wrong on purpose), and shown apart. Ends with Grad-CAM's (the seed's method) figures for the centroid
point: ``centroid_hit_rate: X``, ``max_point_hit_rate: Y``, ``iou_fg: A``, ``iou_fg_bg: B``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from segaudit.auditors.batch import explain_batch
from segaudit.cam import TARGET_NONE, upsample_maps
from segaudit.data.classmap import build_class_map
from segaudit.data.readers import open_dataset, read_samples
from segaudit.devtools.demo import ensure_demo_data, planted_errors
from segaudit.metrics.prompting import (
    GrabCutSegmenter,
    SamSegmenter,
    Segmenter,
    inside_from_boxes,
    prompt_rows,
)
from segaudit.metrics.scores import iou_at_threshold
from segaudit.models.registry import load_model
from segaudit.runs.run import plan_batches
from segaudit.runs.tables import write_table
from segaudit.settings import AuditConfig


def prompts_table(data: Path, segmenter: Segmenter, methods: tuple[str, ...], limit: int | None,
                  out: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """The prompts table (written to ``out`` and read back), the thresholded-map IoU per map, and timings."""
    dataset = open_dataset(data / "annotations" / "instances_val.json")
    model = load_model("demo")
    class_map = build_class_map(dataset.category_names, model.class_names)
    config = AuditConfig(methods=methods)
    refs = dataset.refs()[:limit] if limit else dataset.refs()
    rows, errors, thresholded = [], [], []
    seconds = {"explain": 0.0, "prompt": 0.0}
    for batch_refs in plan_batches(refs, config.batch_size):
        samples, read_errors = read_samples(dataset, batch_refs)
        start = time.perf_counter()
        explained = explain_batch(samples, model, class_map, config, read_errors)
        seconds["explain"] += time.perf_counter() - start
        batch, cams = explained.batch, explained.cams
        errors.extend(explained.errors)
        if batch is None or cams is None:
            continue
        # the (image, class) pairs score_batch scores: every class with a Seg-Grad-CAM target
        pairs = torch.nonzero(cams.target_source != TARGET_NONE)
        valid = batch.valid[pairs[:, 0]]
        gt = batch.gt[pairs[:, 0]] == pairs[:, 1, None, None]
        inside = inside_from_boxes(batch.boxes)
        ids = [s.image_id for s in batch.samples]
        for layer, method in cams.maps:
            maps = upsample_maps(cams.maps[(layer, method)][pairs[:, 0], pairs[:, 1]], tuple(batch.gt.shape[-2:]))
            start = time.perf_counter()
            found = prompt_rows(batch.views, maps, pairs, gt, valid, image_ids=ids, method=method, layer=layer,
                                segmenter=segmenter, inside=inside,
                                file_names=[s.file_name for s in batch.samples])
            seconds["prompt"] += time.perf_counter() - start
            rows.extend(found.prompts)
            errors.extend(found.errors)
            iou = iou_at_threshold(maps, gt, valid).tolist()
            thresholded.extend({"image_id": ids[b], "class_id": k, "method": method, "threshold_iou": iou[i]}
                               for i, (b, k) in enumerate(pairs.tolist()))
    if errors:
        print(f"errors: {len(errors)}, first: {errors[0]}")
    path = write_table(rows, out / "prompts.parquet", "prompts")
    return pd.read_parquet(path), pd.DataFrame(thresholded), seconds


def summary(table: pd.DataFrame, thresholded: pd.DataFrame) -> pd.DataFrame:
    """Per method: hit rates, IoU per point x prompts, and the thresholded-map IoU (labelled classes only)."""
    labelled = table[table["iou_with_gt"].notna() | table["point_hit"].notna()]
    hits = labelled[labelled["prompts"] == "fg"].pivot_table(index="method", columns="point", values="point_hit")
    hits.columns = [f"{c}_hit_rate" for c in hits.columns]
    iou = labelled.pivot_table(index="method", columns=["point", "prompts"], values="iou_with_gt")
    iou.columns = [f"iou_{p}_{q}" for p, q in iou.columns]
    made = labelled.pivot_table(index="method", columns="point", values="iou_with_gt", aggfunc="count")
    made.columns = [f"n_{c}" for c in made.columns]
    base = thresholded.groupby("method")["threshold_iou"].mean().rename("iou_threshold_0_5")
    return pd.concat([hits, iou, base, made], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="demo data folder (default: a temp folder)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--methods", default="gradcam,gradcampp")
    parser.add_argument("--out", type=Path, default=None, help="keep prompts.parquet in this folder")
    parser.add_argument("--sam-checkpoint", default=None, help="use SAM with this checkpoint instead of GrabCut")
    parser.add_argument("--sam-model", default="vit_h", help="SAM model type of the checkpoint")
    args = parser.parse_args()
    segmenter: Segmenter = (SamSegmenter(args.sam_checkpoint, args.sam_model) if args.sam_checkpoint
                            else GrabCutSegmenter())
    with tempfile.TemporaryDirectory() as tmp:
        data = ensure_demo_data(args.data or Path(tmp) / "data")
        planted = {str(m["file_name"]) for m in planted_errors(data)}
        files = {r.image_id: r.file_name for r in open_dataset(data / "annotations" / "instances_val.json").refs()}
        start = time.perf_counter()
        table, thresholded, seconds = prompts_table(data, segmenter, tuple(args.methods.split(",")), args.limit,
                                                    args.out or Path(tmp))
        total = time.perf_counter() - start
    is_planted = table["image_id"].map(files).isin(planted)
    thr_planted = thresholded["image_id"].map(files).isin(planted)
    n_maps = len(table) // 4
    print(f"segmenter: {segmenter.name}; images: {table['image_id'].nunique()} "
          f"({table.loc[is_planted, 'image_id'].nunique()} with a planted error, left out below); "
          f"maps: {n_maps}; segments: {table['mask_pixels'].notna().sum()}")
    print(f"time: {total:.1f} s (model + CAMs {seconds['explain']:.1f} s, prompting + {segmenter.name} "
          f"{seconds['prompt']:.1f} s, {1000 * seconds['prompt'] / max(1, table['mask_pixels'].notna().sum()):.1f} "
          f"ms per segment)")
    pd.set_option("display.width", 200)
    print("\nclean images (labelled classes; hit rate = share of points inside the label; IoU with the label):")
    clean = summary(table[~is_planted], thresholded[~thr_planted])
    print(clean.round(3).T.to_string())
    print("\nimages with a planted label error:")
    print(summary(table[is_planted], thresholded[thr_planted]).round(3).T.to_string())
    row = clean.loc["gradcam"] if "gradcam" in clean.index else clean.iloc[0]
    print(f"\ncentroid_hit_rate: {row['centroid_hit_rate']:.3f}")
    print(f"max_point_hit_rate: {row['max_hit_rate']:.3f}")
    print(f"iou_fg: {row['iou_centroid_fg']:.3f}")
    print(f"iou_fg_bg: {row['iou_centroid_fg+bg']:.3f}")


if __name__ == "__main__":
    main()
