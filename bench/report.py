"""Speed of the HTML report at 5k images: render time, and first paint in Chromium.

    python bench/report.py [--images 5000] [--source RUN_DIR] [--out DIR]

The 5k-image run is synthetic: a real audit is too slow on 2 shared cores for a benchmark, so the tables
are built from a small real one. Without ``--source``, the demo data (``segaudit.devtools.demo``) is audited on its
first 24 images with the shipped demo model (Grad-CAM and Grad-CAM++ at two layers, a layer sweep), through
the core functions the flow calls; its rows are then replicated to ``--images`` images (new image ids and
file names; per-image scores jittered so that the ranking and the histograms are not copies) and written
as a run (one Parquet file per table). Every table the report reads is there at 5k-image scale: pictures,
maps of every class x method x layer, scores, instances, findings.

Measured:

* ``report_render_seconds_5k``: wall time of :func:`reports.render_report` on the run (tables read,
  cards built, files written), in this process, after the imports;
* ``first_paint_seconds``: Chromium's ``first-contentful-paint`` of the report opened from its file://
  URL, the median of 3 fresh pages (also printed: the time until the first image card is drawn);
* ``gallery_filter_seconds``: from a click on an off-diagonal cell of the confusion matrix to the first
  card of the filtered gallery drawn (its pages of cards loaded from ``report_files/``), median of the 3.

Ends with the lines ``report_render_seconds_5k: X``, ``first_paint_seconds: Y`` and
``gallery_filter_seconds: Z``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from segaudit.reports import render_report
from segaudit.reports.render import assets_dir

from segaudit.runs.tables import SCHEMAS, load_run, write_table


def real_run(out: Path, n_images: int = 24) -> Path:
    """A real audit of the demo data's first ``n_images`` images (no Prefect)."""
    from segaudit.auditors.batch import BatchRows, explain_batch, score_batch
    from segaudit.data.classmap import build_class_map
    from segaudit.data.readers import open_dataset, read_samples
    from segaudit.devtools.demo import ensure_demo_data
    from segaudit.models.registry import load_model
    from segaudit.runs.run import plan_batches, run_metadata, write_run_rows
    from segaudit.settings import AuditConfig

    root = ensure_demo_data(out / "demo_data")
    data = open_dataset(str(root / "annotations" / "instances_val.json"))
    model = load_model("demo")
    class_map = build_class_map(data.category_names, model.class_names, None)
    config = AuditConfig(methods=("gradcam", "gradcampp"), layers=("backbone.4", "backbone.8"), batch_size=8)
    rows = BatchRows()
    for batch in plan_batches(data.refs()[:n_images], config.batch_size):
        samples, errors = read_samples(data, batch)
        rows.extend(score_batch(explain_batch(samples, model, class_map, config, errors), model, config))
    meta = run_metadata(data, model, config, dataset_path=str(root), split=None)
    run_dir = out / "runs" / "source"
    write_run_rows(rows, run_dir, meta)
    return run_dir


def synthetic_run(source: Path, out: Path, n_images: int, seed: int = 0) -> Path:
    """Replicate ``source``'s tables to ``n_images`` images (see the module docstring)."""
    rng = np.random.default_rng(seed)
    src = load_run(source)
    ids = list(src.images["image_id"].astype(str))
    copies = -(-n_images // len(ids))
    plan = [(k, i) for k in range(copies) for i in ids][:n_images]
    new_id = {(k, i): f"s{k:04d}-{i}" for k, i in plan}

    def replicate(frame: pd.DataFrame, jitter: tuple[str, ...] = ()) -> pd.DataFrame:
        if frame.empty:
            return frame
        parts = []
        by_image = {i: g for i, g in frame.groupby(frame["image_id"].astype(str), sort=False)}
        for k in range(copies):
            keep = [i for (kk, i) in plan if kk == k]
            part = pd.concat([by_image[i] for i in keep if i in by_image], ignore_index=True) if keep else None
            if part is None or part.empty:
                continue
            part = part.copy()
            part["image_id"] = [new_id[(k, str(i))] for i in part["image_id"]]
            if "file_name" in part:
                part["file_name"] = [f"synthetic/{k:04d}/{f}" for f in part["file_name"]]
            for col in jitter:
                values = part[col].astype(float)
                part[col] = np.clip(values + rng.normal(0, 0.05, len(part)) * (k > 0), 0, 1).where(values.notna())
            parts.append(part)
        return pd.concat(parts, ignore_index=True)

    images = replicate(src.images, ("consistency", "label_quality", "suspicion"))
    images["review_rank"] = images["suspicion"].rank(ascending=False, method="first").astype("int64")
    scores = replicate(src.scores, ("energy_in_mask", "relevance_rank", "auroc", "iou_at_0_5", "consistency",
                                    "seg_iou", "label_quality"))
    findings = replicate(src.findings, ("score",))
    if len(findings):
        findings = findings.sort_values(["kind", "score"], ascending=[True, False], kind="stable")
        findings["rank"] = findings.groupby("kind").cumcount() + 1
    frames = {
        "images": images, "scores": scores, "findings": findings,
        "maps": replicate(src.maps), "thumbnails": replicate(src.thumbnails), "instances": replicate(src.instances),
        "confusion": replicate(src.confusion), "prompts": replicate(src.prompts), "errors": src.errors,
    }
    run_dir = out / "runs" / f"synthetic-{n_images}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    for name, frame in frames.items():
        frame = frame.reset_index(drop=True)
        write_table(frame[SCHEMAS[name].names] if len(frame) else [], run_dir / f"{name}.parquet", name)
    meta = {**src.run, "run_id": f"synthetic-{n_images}", "n_images": len(images), "n_errors": len(src.errors)}
    write_table([{c: meta[c] for c in SCHEMAS["run"].names}], run_dir / "run.parquet", "run")
    return run_dir


#: Click an off-diagonal confusion cell, resolve with the milliseconds until a card of the filtered gallery
#: is drawn (page.evaluate runs outside the report's CSP, which forbids Playwright's wait_for_function).
_FILTER_MS = """() => new Promise((resolve, reject) => {
  const cell = document.querySelector('#confusion-table td:not(.diag) button.cell');
  if (!cell) { reject(new Error('no off-diagonal confusion cell')); return; }
  const start = performance.now();
  cell.click();
  const poll = () => document.querySelector("#cards .img-card[data-ready='1']") ?
    resolve(performance.now() - start) : requestAnimationFrame(poll);
  poll();
})"""


def first_paint(report: Path, repeats: int = 3) -> tuple[list[float], list[float], list[float]]:
    """First contentful paint, first card drawn and the confusion-cell filter (seconds) of fresh pages."""
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("SEGAUDIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    paints, cards, filters = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))  # noqa: B023 - read right away
            page.goto(report.resolve().as_uri())
            page.wait_for_selector(".img-card[data-ready='1']", timeout=60_000)
            card_ms = page.evaluate("performance.now()")
            fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
            if errors:
                raise RuntimeError(f"page errors: {errors}")
            paints.append(fcp / 1000.0)
            cards.append(card_ms / 1000.0)
            filters.append(page.evaluate(_FILTER_MS) / 1000.0)
            if errors:
                raise RuntimeError(f"page errors: {errors}")
            page.close()
        browser.close()
    return paints, cards, filters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--source", help="a run to replicate (default: a 24-image audit of the demo data)")
    parser.add_argument("--out", help="working folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        start = time.perf_counter()
        source = Path(args.source) if args.source else real_run(out)
        print(f"source run: {source} ({time.perf_counter() - start:.1f} s)")
        start = time.perf_counter()
        run_dir = synthetic_run(source, out, args.images)
        tables = load_run(run_dir, tables=("images", "scores", "maps", "findings"))
        print(f"synthetic run: {run_dir} ({time.perf_counter() - start:.1f} s): {len(tables.images)} images, "
              f"{len(tables.scores)} score rows, {len(tables.maps)} maps, {len(tables.findings)} findings")
        cpu, start = time.process_time(), time.perf_counter()
        report = render_report(run_dir)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        html_mb = report.stat().st_size / 1e6
        pages = sorted(assets_dir(report).glob("page-*.js"))
        pages_mb = sum(p.stat().st_size for p in pages) / 1e6
        print(f"report: {report}: {html_mb:.1f} MB + {len(pages)} page files, {pages_mb:.0f} MB "
              f"(render {seconds:.1f} s wall, {cpu:.1f} s CPU, {os.cpu_count()} cores)")
        paints, cards, filters = first_paint(report)
        print("first contentful paint (s): " + ", ".join(f"{p:.3f}" for p in paints))
        print("first image card drawn (s): " + ", ".join(f"{c:.3f}" for c in cards))
        print(f"report_render_seconds_5k: {seconds:.1f}")
        print("confusion-cell filter to first card (s): " + ", ".join(f"{f:.3f}" for f in filters))
        print(f"first_paint_seconds: {statistics.median(paints):.3f}")
        print(f"gallery_filter_seconds: {statistics.median(filters):.3f}")


if __name__ == "__main__":
    main()
