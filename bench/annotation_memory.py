"""Peak memory and time of a whole audit whose COCO file has very many annotations on few images (issue 15).

    python bench/annotation_memory.py [--annotations 400000] [--images 4] [--side 640]

Writes ``--images`` random ``side x 3/4 side`` PNGs and a COCO file with ``--annotations`` small polygons
(10 vertices, spread evenly over the images), then runs the ``audit`` flow on them in this process (demo
model, Grad-CAM, no report). Before issue 15, 400,000 annotations on 4 images took 18.7 GB and 417 s: every
annotation was decoded to a full-size mask. Now each image reads at most
:data:`~segaudit.data.readers.coco_json.MAX_ANNOTATIONS_PER_IMAGE` annotations and
:data:`~segaudit.data.readers.coco.MAX_MASK_BYTES` of masks; the rest are one ``annotation limit`` row.

``peak_rss_gb`` is this process's peak resident set (``getrusage``: parsing, indexing, the model, the audit;
the data are written by a child process, and Prefect's temporary server runs in another process: neither
is counted). Ends with ``key: value`` lines.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_dataset(root: Path, n_annotations: int, n_images: int, side: int) -> Path:
    """The images under ``root/images`` and the COCO file ``root/ann.json``; return the file."""
    w, h = side, side * 3 // 4
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    images = []
    for i in range(1, n_images + 1):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": h, "width": w})
    angles = np.linspace(0, 2 * math.pi, 10, endpoint=False)
    centres = rng.uniform(20, [w - 20, h - 20], size=(n_annotations, 2))
    anns = []
    for k, (cx, cy) in enumerate(centres):
        poly = np.stack([cx + 12 * np.cos(angles), cy + 12 * np.sin(angles)], 1).round(2).ravel().tolist()
        anns.append({"id": k + 1, "image_id": 1 + k % n_images, "category_id": 1 + k % 5, "iscrowd": 0,
                     "segmentation": [poly], "area": 450.0, "bbox": [round(cx - 12, 2), round(cy - 12, 2), 24, 24]})
    cats = [{"id": c, "name": n} for c, n in enumerate(("circle", "square", "triangle", "star", "ring"), 1)]
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=int, default=400_000)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--side", type=int, default=640)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # written by a child process, so that this process's peak is the audit's alone
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            ann = pool.apply(write_dataset, (Path(tmp), args.annotations, args.images, args.side))
        json_mb = ann.stat().st_size / 1e6
        from segaudit.flows.audit import audit

        from segaudit.runs.tables import load_run

        start = time.perf_counter()
        run_dir = audit(dataset=str(ann), image_root=str(Path(tmp) / "images"), model="demo", methods=["gradcam"],
                        out=str(Path(tmp) / "runs"), report=False, batch_size=4)
        seconds = time.perf_counter() - start
        run = load_run(run_dir)
        limit_rows = int(run.errors["reason"].str.startswith("annotation limit").sum())
        print(f"annotations: {args.annotations}")
        print(f"images: {args.images}")
        print(f"json_mb: {json_mb:.1f}")
        print(f"images_audited: {len(run.images)}")
        print(f"annotation_limit_rows: {limit_rows}")
        print(f"peak_rss_gb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f}")
        print(f"seconds: {seconds:.1f}")


if __name__ == "__main__":
    main()
