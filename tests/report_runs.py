"""Runs for the report tests: a fake but schema-correct run written with :func:`segaudit.runs.tables.write_table`
(no dataset, no model), with hostile strings in a class name, a file name and an error reason."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from segaudit.reports.overlay import label_colors

from segaudit.runs.tables import join, write_table

EVIL_CLASS = "<script>alert(1)</script>"
EVIL_FILE = "img_<script>.jpg"
EVIL_REASON = "cannot read </script><img src=x onerror=alert(2)>"
EVIL_UNKNOWN = "<b>unknown</b>"
CLASS_NAMES = ["background", "aeroplane", "bicycle", EVIL_CLASS, "dog"]
METHODS = ["gradcam", "gradcampp"]
LAYERS = ["backbone.layer4", "backbone.layer2"]  # primary first, as a run records them
SIZE = 64  # thumbnail side
FEAT = 8  # map side
EVIL_IMAGE = 3  # the image with EVIL_FILE as its file name


def png(labels: np.ndarray, palette: bool = False) -> bytes:
    img = Image.fromarray(labels.astype(np.uint8))
    if palette:
        img = img.convert("P")
        img.putpalette(label_colors(256).reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    return buf.getvalue()


def file_name(i: int) -> str:
    return EVIL_FILE if i == EVIL_IMAGE else f"JPEGImages/2007_{i:06d}.jpg"


def run_row(n_images: int, n_errors: int, run_id: str = "test-run", layers: list[str] = LAYERS) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "schema_version": 1,
        "created_at": "2025-01-01T12:00:00+00:00",
        "duration_s": 93.5,
        "dataset_kind": "voc",
        "dataset_path": "/data/VOC2012",
        "split": "val",
        "dataset_fingerprint": "f" * 64,
        "n_images": n_images + n_errors,
        "n_errors": n_errors,
        "model_name": "deeplabv3_resnet50",
        "model_sha256": "a1b2c3d4e5f6" + "0" * 52,
        "input_size": SIZE,
        "layer": ",".join(layers),
        "methods": METHODS,
        "class_names": CLASS_NAMES,
        "config_json": json.dumps({"batch_size": 4, "methods": METHODS, "target": "pred", "score": "logits",
                                   "centroid_cutoff": 0.6, "weights": "DEFAULT"}),
        "versions_json": json.dumps({"torch": "2.5.0", "numpy": "2.1.0", "segaudit": "0.1.0"}),
    }


def make_run(
    run_dir: str | Path,
    n_images: int = 6,
    n_errors: int = 2,
    with_scores: bool = True,
    seed: int = 0,
    run_id: str = "test-run",
    layers: list[str] = LAYERS,
) -> dict[str, Any]:
    """Write a complete fake run into ``run_dir`` (a path or an fsspec URL); return facts to check against.

    Per image: two of the four classes labelled (the second only in GT: the model misses it), maps and
    scores for every class x method x layer x mask, a GT void border, two instances of the first class;
    findings: a label error per image, one neglected-instances finding, one out-of-label-space finding of
    ``EVIL_UNKNOWN``; CAM-prompt rows for the primary map.
    """
    rng = np.random.default_rng(seed)
    images, scores, maps, thumbs, instances, findings, prompts, confusion = [], [], [], [], [], [], [], []
    suspicion = rng.uniform(0.05, 0.95, n_images)
    ranks = np.argsort(np.argsort(-suspicion)) + 1  # 1 = most suspicious
    nan = float("nan")
    for i in range(n_images):
        image_id = f"img{i}"
        classes = sorted(rng.choice([1, 2, 3, 4], size=2, replace=False).tolist())
        gt = np.zeros((SIZE, SIZE), np.uint8)
        gt[8:30, 8:30] = classes[0]
        gt[34:60, 30:60] = classes[1]
        gt[0:3, :] = 255  # void border
        pred = np.zeros_like(gt)
        pred[10:32, 6:28] = classes[0]
        worst = classes[1]
        images.append({
            "image_id": image_id, "file_name": file_name(i), "width": 500, "height": 375, "n_instances": 3,
            "gt_classes": [CLASS_NAMES[c] for c in classes], "pred_classes": [CLASS_NAMES[classes[0]]],
            "pixel_accuracy": float(rng.uniform(0.5, 1)), "consistency": float(1 - suspicion[i]),
            "label_quality": float(rng.uniform(0, 1)), "suspicion": float(suspicion[i]),
            "review_rank": int(ranks[i]), "worst_class_id": worst,
            "unknown_classes": [EVIL_UNKNOWN] if i == 0 else [], "unknown_pixels": [50] if i == 0 else [],
        })
        valid = gt != 255
        pairs, counts = np.unique(np.stack([gt[valid], pred[valid]]).astype(np.int64), axis=1, return_counts=True)
        confusion += [{"image_id": image_id, "gt_class_id": int(g), "pred_class_id": int(p), "pixels": int(n)}
                      for (g, p), n in zip(pairs.T, counts, strict=True)]
        rgb = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        thumbs.append({"image_id": image_id, "image_jpeg": jpeg(rgb), "gt_png": png(gt, palette=i % 2 == 0),
                       "pred_png": png(pred)})
        for layer in layers:
            for c in classes:
                for method in METHODS:
                    target = "gt" if c == worst else "pred"
                    maps.append({"image_id": image_id, "class_id": c, "method": method, "layer": layer,
                                 "target": target, "detection": None, "height": FEAT, "width": FEAT,
                                 "values": (rng.random(FEAT * FEAT, dtype=np.float32) - 0.2).tolist()})
                    for mask in ("gt", "pred"):
                        empty = mask == "pred" and c == worst
                        scores.append({
                            "image_id": image_id, "class_id": c, "class_name": CLASS_NAMES[c], "method": method,
                            "layer": layer, "target": target, "detection": None, "mask": mask,
                            "mask_pixels": 0 if empty else 400,
                            **{k: nan if empty else float(rng.random()) for k in (
                                "energy_in_mask", "relevance_rank", "auroc", "iou_at_0_5", "dice_at_0_5",
                                "max_point_distance", "centroid_distance")},
                            **{k: nan if empty else float(rng.integers(0, 2)) for k in (
                                "pointing_hit", "max_point_hit", "centroid_hit", "background_point_hit")},
                            "seg_iou": 0.0 if c == worst else 0.7, "seg_dice": 0.0 if c == worst else 0.8,
                            "cam_max": float(rng.random()), "consistency": float(rng.random()),
                            "label_quality": float(rng.random()),
                        })
                    coverage = 0.5 if method == "gradcam" else 1.0
                    for k in range(2 if c == classes[0] else 0):
                        instances.append({
                            "image_id": image_id, "instance": k, "annotation_id": f"{100 * i + k}",
                            "class_id": c, "class_name": CLASS_NAMES[c], "method": method, "layer": layer,
                            "target": target, "pixels": 200, "n_instances": 2, "mass_share": 0.3,
                            "class_mass_share": 0.8 if k == 0 else 0.2, "peak_height": 1.0 if k == 0 else 0.2,
                            "has_peak": 1.0 if k == 0 else 0.0, "covered": 1.0 if k == 0 or coverage == 1.0 else 0.0,
                            "instance_coverage": coverage,
                        })
        # background rows must not appear in the class table
        scores.append({**scores[-1], "class_id": 0, "class_name": "background"})
        findings.append({
            "image_id": image_id, "file_name": file_name(i), "class_id": worst, "class_name": CLASS_NAMES[worst],
            "kind": "label_error", "score": float(suspicion[i]), "rank": 0, "method": METHODS[0],
            "layer": layers[0], "target": "gt", "seg_iou": 0.0, "label_quality": 0.1, "recall": 0.0,
            "energy_in_gt": 0.2, "energy_in_pred": nan, "outside_share": 0.9, "instance_coverage": nan,
        })
        for point in ("centroid", "max"):
            prompts.append({"image_id": image_id, "class_id": classes[0], "method": METHODS[0], "layer": layers[0],
                            "segmenter": "grabcut", "point": point, "prompts": "fg", "point_hit": 1.0,
                            "point_distance": 0.0, "iou_with_gt": 0.6, "dice_with_gt": 0.75, "mask_pixels": 300})
    findings.sort(key=lambda f: -f["score"])
    for k, f in enumerate(findings):
        f["rank"] = k + 1
    first = images[0]
    findings.append({**findings[0], "image_id": "img0", "file_name": first["file_name"], "kind": "neglected_instances",
                     "class_id": int(CLASS_NAMES.index(first["gt_classes"][0])), "class_name": first["gt_classes"][0],
                     "score": 0.5, "rank": 1, "instance_coverage": 0.5})
    findings.append({**findings[0], "image_id": "img0", "file_name": first["file_name"], "kind": "out_of_label_space",
                     "class_id": -1, "class_name": EVIL_UNKNOWN, "score": 0.01, "rank": 1, "method": "", "layer": ""})
    errors = [
        {"image_id": f"bad{k}", "file_name": f"JPEGImages/broken_{k}.jpg", "stage": "read",
         "reason": EVIL_REASON if k == 0 else f"cannot identify image file (case {k})"}
        for k in range(n_errors)
    ]
    write_table([run_row(n_images, n_errors, run_id, layers)], join(run_dir, "run.parquet"), "run")
    write_table(images, join(run_dir, "images.parquet"), "images")
    write_table(scores if with_scores else [], join(run_dir, "scores.parquet"), "scores")
    write_table(maps, join(run_dir, "maps.parquet"), "maps")
    write_table(thumbs, join(run_dir, "thumbnails.parquet"), "thumbnails")
    write_table(errors, join(run_dir, "errors.parquet"), "errors")
    write_table(instances, join(run_dir, "instances.parquet"), "instances")
    write_table(findings if with_scores else [], join(run_dir, "findings.parquet"), "findings")
    write_table(prompts, join(run_dir, "prompts.parquet"), "prompts")
    write_table(confusion, join(run_dir, "confusion.parquet"), "confusion")
    return {
        "confusion": confusion,
        "images": sorted(images, key=lambda r: r["review_rank"]),
        "classes": sorted({c for r in images for c in r["gt_classes"]}),
        "errors": errors,
        "findings": findings,
    }


def rewrite_run(run_dir: Path, *, coco: bool = False, methods: list[str] | None = None) -> None:
    """Rewrite a run written by :func:`make_run` in place: as if read from COCO (numeric image ids, base
    file names, another dataset kind, path and fingerprint) and/or with only ``methods``."""
    from segaudit.runs.tables import SCHEMAS, load_run

    run = load_run(run_dir)
    ids = {f"img{i}": str(i + 1) for i in range(len(run.images))}
    for name in SCHEMAS:
        if name in ("run", "reviews") or not (run_dir / f"{name}.parquet").is_file():
            continue
        frame = getattr(run, name).copy()
        if coco and "image_id" in frame:
            frame["image_id"] = frame["image_id"].map(lambda i: ids.get(i, i))
        if coco and "file_name" in frame:
            frame["file_name"] = frame["file_name"].map(lambda f: f.rsplit("/", 1)[-1])
        if methods is not None and "method" in frame:
            frame = frame[frame["method"].isin(methods) | (frame["method"] == "")]
        write_table(frame.reset_index(drop=True), join(run_dir, f"{name}.parquet"), name)
    row = dict(run.run)
    if coco:
        row.update(dataset_kind="coco", dataset_path="/data/coco/annotations/instances_val.json",
                   dataset_fingerprint="c" * 64, split="")
    if methods is not None:
        row["methods"] = methods
    write_table([row], join(run_dir, "run.parquet"), "run")
