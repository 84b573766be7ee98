"""Cost of the faithfulness stage (issue 16): deletion/insertion curves of every map of the images the
``evidence`` setting picks, on the demo data, split into imputation and model time.

    python bench/faithfulness_stage.py --data /tmp/demo_data [--evidence sampled] [--share 0.1]

Prints ``key: value`` lines at the end: checked images, rows, the stage's seconds and its imputation and
model shares, and the method trust summary (mean faithfulness per method and layer).
"""

from __future__ import annotations

import argparse
import time

import segaudit.metrics.faithfulness as faithfulness_metric
from segaudit.auditors import faithfulness_rows as stage
from segaudit.auditors.batch import explain_batch
from segaudit.auditors.sampling import evidence_images
from segaudit.data.classmap import build_class_map
from segaudit.data.readers import open_dataset, read_samples
from segaudit.findings.trust import method_trust
from segaudit.models.registry import load_model
from segaudit.settings import AuditConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo_data")
    parser.add_argument("--evidence", default="sampled")
    parser.add_argument("--share", type=float, default=0.1)
    args = parser.parse_args()
    data = open_dataset(f"{args.data}/annotations/instances_val.json")
    model = load_model("demo")
    class_map = build_class_map(data.category_names, model.class_names, None)
    config = AuditConfig(methods=("gradcam", "gradcampp"), evidence=args.evidence, evidence_share=args.share)
    refs = data.refs()
    picked = evidence_images([r.image_id for r in refs], args.evidence, args.share)
    refs = [r for r, p in zip(refs, picked, strict=True) if p]
    samples, errors = read_samples(data, refs)
    explained = explain_batch(samples, model, class_map, config, errors)
    spent = {"imputation": 0.0, "model": 0.0}

    def timed(name, function):
        def wrapper(*a, **k):
            start = time.perf_counter()
            out = function(*a, **k)
            spent[name] += time.perf_counter() - start
            return out
        return wrapper

    faithfulness_metric.linear_imputation = timed("imputation", faithfulness_metric.linear_imputation)
    model.module.forward = timed("model", model.module.forward)
    start = time.perf_counter()
    rows = stage.faithfulness_rows(explained.batch, explained.cams, model, config)
    seconds = time.perf_counter() - start
    import pandas as pd

    trust = method_trust(pd.DataFrame(rows.faithfulness))
    print(trust.to_string(index=False))
    print(f"checked_images: {len(refs)}")
    print(f"rows: {len(rows.faithfulness)}")
    print(f"errors: {len(rows.errors)}")
    print(f"stage_s: {seconds:.2f}")
    print(f"imputation_s: {spent['imputation']:.2f}")
    print(f"model_s: {spent['model']:.2f}")
    for r in trust.itertuples(index=False):
        print(f"faithfulness_{r.method}_{r.layer}: {r.faithfulness:.3f}")


if __name__ == "__main__":
    main()
