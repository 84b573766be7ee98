"""Does the sharded audit scale? Throughput and peak memory of a small and a 10x larger synthetic dataset.

Generates one synthetic dataset of ``--large`` images (``segaudit.devtools.synth``), then audits its first ``--small``
images and all of them, each in a fresh process (so peak RSS is the run's own), with the demo model,
Grad-CAM only, no report, shards of ``--shard-size``. Per run it reports:

* throughput: images per second of shard processing (the shards' own seconds, from their markers: read,
  model, CAMs, scores), and end to end (images / wall seconds of the ``audit`` flow call, which includes
  fixed costs: Prefect's temporary server, loading the model, planning, aggregating);
* peak RSS of the process (``ru_maxrss``; DataLoader workers, if any, are counted separately as children);
* Prefect overhead per shard: (flow wall time - the shards' processing seconds) / shards, and its marginal
  value between the two runs, (extra wall - extra processing) / extra shards, which cancels the fixed
  costs: task orchestration and writing each shard's parts.

Memory must not grow with the dataset (a shard's rows are written and dropped; only the aggregation reads
the images table and the few score columns the findings need). It ends with::

    throughput_ratio_10k_vs_1k: X      (large / small shard-processing throughput; 1.0 = same speed)
    rss_ratio_10k_vs_1k: Y             (large / small; 1.0 = same peak memory)

Usage: ``python bench/scale.py`` (1k vs 10k; about 1 h on 2 CPU cores) or ``--small 200 --large 2000``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = """
import json, resource, sys, time
from segaudit.flows.audit import audit
from segaudit.runs.tables import load_run, shard_markers
dataset, out, limit, shard_size, batch_size, workers = sys.argv[1:7]
start = time.perf_counter()
run_dir = audit(dataset=dataset, out=out, run_id=f"n{limit}", limit=int(limit), model="demo", methods=["gradcam"],
                shard_size=int(shard_size), batch_size=int(batch_size), loader_workers=int(workers), report=False)
wall = time.perf_counter() - start
markers = shard_markers(run_dir)
print(json.dumps({"images": len(load_run(run_dir, tables=("images",)).images), "wall_s": wall,
                  "shard_s": sum(m["seconds"] for m in markers.values()), "shards": len(markers),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _audit(dataset: Path, out: Path, limit: int, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_LOGGING_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(dataset), str(out), str(limit), str(args.shard_size),
                           str(args.batch_size), str(args.loader_workers)],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"audit of {limit} images failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--size", type=int, default=128, help="side of the synthetic images")
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--loader-workers", type=int, default=0)
    parser.add_argument("--work", help="folder for the data and runs (default: a temporary one)")
    args = parser.parse_args()

    from segaudit.devtools.synth import generate_dataset

    work = Path(args.work or tempfile.mkdtemp(prefix="segaudit-scale-"))
    data = work / "data"
    start = time.perf_counter()
    if not (data / "annotations" / "instances_val.json").is_file():
        generate_dataset(data, n_train=0, n_val=args.large, size=args.size, seed=0, plant_errors=0.1)
    print(f"data: {args.large} synthetic {args.size}px images in {time.perf_counter() - start:.0f} s ({data})")
    dataset = data / "annotations" / "instances_val.json"
    results = {}
    for n in (args.small, args.large):
        r = _audit(dataset, work / "runs", n, args)
        r["images_per_s"] = r["images"] / r["shard_s"]
        r["end_to_end_per_s"] = r["images"] / r["wall_s"]
        r["overhead_per_shard_s"] = (r["wall_s"] - r["shard_s"]) / r["shards"]
        results[n] = r
        print(f"{n:>6} images: {r['images_per_s']:.2f} images/s in shards, {r['end_to_end_per_s']:.2f} end to end "
              f"({r['wall_s']:.0f} s, {r['shards']} shards of {args.shard_size}), peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"Prefect overhead per shard {r['overhead_per_shard_s']:.2f} s")
    small, large = results[args.small], results[args.large]
    marginal = ((large["wall_s"] - small["wall_s"]) - (large["shard_s"] - small["shard_s"])) / max(
        1, large["shards"] - small["shards"])
    print(f"marginal_overhead_per_shard_s: {marginal:.2f}")
    print(f"throughput_ratio_10k_vs_1k: {large['images_per_s'] / small['images_per_s']:.3f}")
    print(f"rss_ratio_10k_vs_1k: {large['peak_rss_mb'] / small['peak_rss_mb']:.3f}")


if __name__ == "__main__":
    main()
