"""Seed study of issue 4: does Grad-CAM light only one of several objects of a class, and Grad-CAM++ all?

    python bench/instance_coverage.py [--data DIR] [--methods gradcam,gradcampp,layercam] [--layers L1,L2]

Chattopadhay et al. 2018 (Grad-CAM++, WACV, Fig. 1 and Sec. 1) show Grad-CAM lighting one of several
instances of a class and Grad-CAM++ lighting them all. This measures it on the demo's validation scenes
(generated into ``--data`` if absent; COCO annotations) with the shipped demo model: the audit core
(``explain_batch`` + ``score_batch``, no Prefect) writes the ``instances`` table, and we keep the
(image, class) pairs with >= 2 labelled instances, leaving out the images with a planted label error
(their instance labels are wrong on purpose). Per method it prints the mean ``instance_coverage`` (see
:mod:`segaudit.metrics.instances`), the share of instances holding a peak, the mean class mass share of the
least-lit instance of each pair, and paired comparisons with Grad-CAM; it ends with
``coverage_gradcam: X`` and ``coverage_gradcampp: Y``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from segaudit.auditors.batch import BatchRows, explain_batch, finish_tables, score_batch
from segaudit.data.classmap import build_class_map
from segaudit.data.readers import open_dataset, read_samples
from segaudit.devtools.demo import ensure_demo_data, planted_errors
from segaudit.models.registry import load_model
from segaudit.runs.run import plan_batches
from segaudit.settings import AuditConfig


def instances_table(data: Path, methods: tuple[str, ...], layers: tuple[str, ...]) -> pd.DataFrame:
    dataset = open_dataset(data / "annotations" / "instances_val.json")
    model = load_model("demo")
    class_map = build_class_map(dataset.category_names, model.class_names)
    config = AuditConfig(methods=methods, layers=layers)
    rows = BatchRows()
    for refs in plan_batches(dataset.refs(), config.batch_size):
        samples, errors = read_samples(dataset, refs)
        rows.extend(score_batch(explain_batch(samples, model, class_map, config, errors), model, config))
    frames = finish_tables(rows)
    assert frames["errors"].empty, frames["errors"]
    return frames["instances"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="demo data folder (default: a temp folder)")
    parser.add_argument("--methods", default="gradcam,gradcampp,layercam")
    parser.add_argument("--layers", default="", help="comma-separated; default: the model's default layer")
    args = parser.parse_args()
    methods = tuple(args.methods.split(","))
    layers = tuple(x for x in args.layers.split(",") if x)
    with tempfile.TemporaryDirectory() as tmp:
        data = ensure_demo_data(args.data or Path(tmp) / "data")
        planted = {str(m["file_name"]).rsplit(".", 1)[0] for m in planted_errors(data)}
        table = instances_table(data, methods, layers)
        files = {ref.image_id: ref.file_name for ref in open_dataset(data / "annotations" / "instances_val.json").refs()}

    table = table[~table["image_id"].map(files).str.rsplit(".", n=1).str[0].isin(planted)]
    multi = table[table["n_instances"] >= 2]
    keys = ["image_id", "class_id", "layer", "target"]
    pairs = multi.groupby([*keys, "method"]).agg(
        coverage=("instance_coverage", "first"), least_lit=("class_mass_share", "min"),
    ).reset_index()
    first = multi[(multi["layer"] == multi["layer"].iloc[0]) & (multi["method"] == methods[0])]
    print(f"images: {table['image_id'].nunique()} (planted-error images left out); "
          f"(image, class) pairs with >= 2 instances: {first.groupby(keys).ngroups}, holding {len(first)} instances")
    print("coverage: mean instance_coverage; has_peak: share of instances with a peak; least_lit: mean class mass")
    print("share of each pair's least-lit instance; all_covered: share of pairs with every instance covered;")
    print("undefined: pairs whose map has no positive mass (left out of the means)")
    print(f"{'layer':<14}{'method':<12}{'coverage':>9}{'has_peak':>9}{'least_lit':>10}{'all_covered':>12}{'undefined':>10}")
    layer_order = list(dict.fromkeys(multi["layer"]))
    for layer in layer_order:
        for method in methods:
            part = pairs[(pairs["layer"] == layer) & (pairs["method"] == method)]
            inst = multi[(multi["layer"] == layer) & (multi["method"] == method)]
            defined = part["coverage"].dropna()
            print(f"{layer:<14}{method:<12}{defined.mean():>9.3f}{inst['has_peak'].mean():>9.3f}"
                  f"{part['least_lit'].mean():>10.3f}{(defined == 1).mean():>12.3f}{part['coverage'].isna().sum():>10d}")
        wide = pairs[pairs["layer"] == layer].pivot_table(index=keys, columns="method", values="coverage")
        for method in methods:
            if method != "gradcam" and {"gradcam", method} <= set(wide.columns):
                diff = (wide[method] - wide["gradcam"]).dropna()
                print(f"  {layer} {method} vs gradcam, paired over {len(diff)} pairs: more covered in "
                      f"{(diff > 0).sum()}, fewer in {(diff < 0).sum()}, equal in {(diff == 0).sum()}; "
                      f"mean difference {diff.mean():+.3f}")
    primary = pairs[pairs["layer"] == layer_order[0]]
    print(f"primary layer: {layer_order[0]}")
    for method in methods:
        value = primary.loc[primary["method"] == method, "coverage"].mean()
        print(f"coverage_{method}: {value:.3f}")

if __name__ == "__main__":
    main()
