"""Where a whole audit's time goes, stage by stage, against the CAM engine alone and forward-only inference.

    python bench/audit_profile.py [--model demo] [--weights none] [--size 320] [--layers L] [--methods gradcam,gradcampp]
                                  [--data DIR] [--images 96] [--batch-size 16] [--repeats 3] [--prefect]

The audit core without Prefect (``read_samples`` -> ``explain_batch`` -> ``score_batch`` -> writing the
shard's tables), on the demo data (generated into ``--data`` if absent; a torchvision model reads its
classes through a demo-to-VOC mapping). Each round times, batch by batch and back to back on the same
images: plain inference (``model(images)`` under ``inference_mode``, inputs prepared beforehand), the
engine alone (``explain_batch`` on samples read beforehand) and the audit. Inside the audit the stages are timed by
wrapping the functions the auditor calls: the model's forward (module hooks), the backwards
(``torch.autograd.grad``), the maps (the rest of ``explain_batch``: input preparation, targets, methods),
the map-vs-mask scores (``mask_scores``, called once per mask kind), instances (``instance_scores``),
thumbnails, the rest of ``score_batch`` (label quality, rows) and writing (``write_shard``).

``score_masks`` (both mask kinds in one call, the proposed call site) is timed on the very inputs of each
pair of ``mask_scores`` calls and checked equal to them; the ratios use it when it exists (run against an
older checkout it does not, and the current call counts). Medians over ``--repeats`` rounds. ``--prefect``
also runs the Prefect flow on the same images once (report off) and counts its wall time beyond the
audit's as the Prefect stage (with aggregation). The machine's speed drifts within seconds, so the final
ratios are medians of per-batch ratios (each batch timed three ways back to back). Ends with ``audit_vs_forward_only: X`` (audit throughput /
forward-only throughput), ``audit_vs_engine_only: Y`` and ``scores_share_of_engine: Z`` (scores time /
engine time).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

import segaudit.auditors.batch as batch_module
import segaudit.auditors.rows as rows_module
import segaudit.auditors.segmentation as segmentation_module
import segaudit.metrics.scores as scores_module
from segaudit.auditors.batch import explain_batch, score_batch
from segaudit.data.classmap import build_class_map
from segaudit.data.preprocess import prepare_batch
from segaudit.data.readers import open_dataset, read_samples
from segaudit.devtools.demo import ensure_demo_data
from segaudit.models.registry import (
    DEFAULT_LAYERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedModel,
    _freeze,
    build_architecture,
    load_model,
)
from segaudit.runs.run import plan_batches
from segaudit.runs.tables import SHARD_TABLES, write_shard
from segaudit.settings import AuditConfig

#: Demo classes read as Pascal VOC classes by a torchvision model (so that its targets have labels).
VOC_MAPPING = {"disc": "aeroplane", "square": "bicycle", "triangle": "bird", "star": "boat", "boat": "bottle"}
STAGES = ("read", "forward", "backwards", "maps", "scores", "instances", "thumbnails", "rows", "writing")


class Clock:
    """Seconds per stage of the current round (and per batch, once the round is done)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.per_batch: list[dict[str, float]] = []

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            with self(stage):
                return fn(*args, **kwargs)
        return timed


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k].nan_to_num(-7.0), b[k].nan_to_num(-7.0)) for k in a)


def _instrument(clock: Clock, module: torch.nn.Module) -> contextlib.ExitStack:
    """Time the stages inside ``explain_batch`` / ``score_batch`` while the returned stack is open."""
    stack = contextlib.ExitStack()
    starts: list[float] = []
    pre = module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
    post = module.register_forward_hook(
        lambda *_: clock.seconds.__setitem__("forward", clock.seconds["forward"] + time.perf_counter() - starts.pop())
    )
    stack.callback(pre.remove)
    stack.callback(post.remove)
    # where the segmentation auditor looks them up (segaudit.auditors.segmentation / .rows)
    patches = {(torch.autograd, "grad"): clock.wrap("backwards", torch.autograd.grad),
               (rows_module, "instance_scores"): clock.wrap("instances", rows_module.instance_scores),
               (segmentation_module, "thumbnail_rows"): clock.wrap("thumbnails", segmentation_module.thumbnail_rows)}
    if hasattr(segmentation_module, "score_masks"):  # the auditor scores both mask kinds in one call
        patches[(segmentation_module, "score_masks")] = clock.wrap("scores (score_masks)",
                                                                   segmentation_module.score_masks)
    else:
        patches[(segmentation_module, "mask_scores")] = _paired_scores(clock)
    for (owner, name), patched in patches.items():
        stack.callback(setattr, owner, name, getattr(owner, name))
        setattr(owner, name, patched)
    return stack


def _paired_scores(clock: Clock):
    """``mask_scores`` timed as the auditor calls it (gt, then pred, on the same maps); on each pred call,
    ``score_masks`` of both timed on the same inputs and checked equal."""
    original, both = scores_module.mask_scores, getattr(scores_module, "score_masks", None)
    pending: dict[int, tuple] = {}

    def timed(maps, masks, valid, *args):
        with clock("scores (per mask kind)"):
            out = original(maps, masks, valid, *args)
        if both is not None and id(maps) in pending:
            gt_masks, gt_out = pending.pop(id(maps))
            with clock("bench's own work"):  # left out of score_batch's time
                with clock("scores (score_masks)"):
                    together = both(maps, {"gt": gt_masks, "pred": masks}, valid, *args)
                if not (_same(gt_out, together["gt"]) and _same(out, together["pred"])):
                    raise AssertionError("score_masks differs from mask_scores")
        elif both is not None:
            pending[id(maps)] = (masks, out)
        return out

    return timed


def _round(batches, read, inputs, dataset, model, class_map, config, out_dir: Path) -> Clock:
    """One round, batch by batch: forward only, the engine alone and the audit of each batch back to back
    (so the three see the same machine), then writing the round's tables."""
    clock = Clock()
    rows = batch_module.BatchRows()
    per_batch = []
    for refs, (samples, errors), images in zip(batches, read, inputs, strict=True):
        before = dict(clock.seconds)
        with clock("forward_only"), torch.inference_mode():
            model.module(images)
        with clock("engine_only"):
            explain_batch(samples, model, class_map, config, errors)
        with _instrument(clock, model.module):
            with clock("read"):
                fresh, fresh_errors = read_samples(dataset, refs)
            with clock("explain"):
                explained = explain_batch(fresh, model, class_map, config, fresh_errors)
            with clock("score_batch"):
                rows.extend(score_batch(explained, model, config))
        per_batch.append({k: v - before.get(k, 0.0) for k, v in clock.seconds.items()})
    with clock("writing"):
        write_shard(out_dir, "shard-0", {t: getattr(rows, t) for t in SHARD_TABLES}, {})
    for s in (clock.seconds, *per_batch):
        s["score_batch"] -= s.get("bench's own work", 0.0)
        s["maps"] = s["explain"] - s["forward"] - s["backwards"]
        called = s.get("scores (per mask kind)", 0.0) or s.get("scores (score_masks)", 0.0)
        s["rows"] = s["score_batch"] - called - s["instances"] - s["thumbnails"]
        s["scores"] = s.get("scores (score_masks)", called)
        s["audit"] = (s["read"] + s["explain"] + s["score_batch"] - called + s["scores"]
                      + clock.seconds["writing"] / len(per_batch))
    clock.per_batch = per_batch
    return clock


def _model(spec: str, weights: str | None, size: int | None) -> LoadedModel:
    """``load_model``, or with ``weights`` None a torchvision segmentation model with random weights (the
    registry refuses those: an audit needs trained weights; speed does not)."""
    if weights is None and spec in DEFAULT_LAYERS:
        from torchvision.models import get_model_weights

        module = build_architecture(spec, 21)
        module.aux_classifier = None
        names = get_model_weights(spec).DEFAULT.meta["categories"]
        model = LoadedModel(name=f"torchvision:{spec} (random weights)", module=_freeze(module, "cpu"),
                            class_names=tuple("background" if c == "__background__" else c for c in names),
                            input_size=size or 520, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                            default_layer=DEFAULT_LAYERS[spec], sha256="", arch=spec)
    else:
        model = load_model(spec, weights=weights)
    return dataclasses.replace(model, input_size=size) if size else model


def _prefect_seconds(args, data: Path, weights: str | None, out_dir: Path) -> float:
    from segaudit.flows.audit import audit

    start = time.perf_counter()
    audit(str(data / "annotations" / "instances_val.json"), model=args.model, weights=weights,
          layers=list(args.layers.split(",")) if args.layers else None, methods=args.methods.split(","),
          batch_size=args.batch_size, mapping=None if args.model.startswith("demo") else VOC_MAPPING,
          out=str(out_dir), limit=args.images, report=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--weights", default="DEFAULT", help="torchvision weights; 'none' for random weights")
    parser.add_argument("--size", type=int, default=None, help="input size (default: the model's)")
    parser.add_argument("--layers", default="", help="comma-separated; default: the model's default layer")
    parser.add_argument("--methods", default="gradcam,gradcampp")
    parser.add_argument("--data", type=Path, default=None, help="demo data folder (default: a temp folder)")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prefect", action="store_true", help="also time the Prefect flow once")
    args = parser.parse_args()
    weights = None if args.weights.lower() == "none" else args.weights
    with tempfile.TemporaryDirectory() as tmp:
        data = ensure_demo_data(args.data or Path(tmp) / "data")
        dataset = open_dataset(data / "annotations" / "instances_val.json")
        model = _model(args.model, weights, args.size)
        mapping = None if args.model.startswith("demo") else VOC_MAPPING
        class_map = build_class_map(dataset.category_names, model.class_names, mapping)
        config = AuditConfig(methods=tuple(args.methods.split(",")), layers=tuple(filter(None, args.layers.split(","))),
                             batch_size=args.batch_size)
        batches = plan_batches(dataset.refs()[: args.images], args.batch_size)
        read = [read_samples(dataset, refs) for refs in batches]
        inputs = [prepare_batch(s, class_map, model.input_size, model.mean, model.std).images.to(model.device)
                  for s, _ in read]

        with torch.inference_mode():  # warm-up
            model.module(inputs[0])
        explain_batch(read[0][0], model, class_map, config, read[0][1])
        rounds: dict[str, list[float]] = defaultdict(list)
        for r in range(args.repeats):
            clock = _round(batches, read, inputs, dataset, model, class_map, config, Path(tmp) / f"run{r}")
            for stage, seconds in clock.seconds.items():
                rounds[stage].append(seconds)
            for b in clock.per_batch:  # ratios of each batch's three back-to-back timings
                rounds["ratio forward"].append(b["forward_only"] / b["audit"])
                rounds["ratio engine"].append(b["engine_only"] / b["audit"])
                rounds["ratio scores"].append(b["scores"] / b["engine_only"])
        prefect = _prefect_seconds(args, data, weights, Path(tmp) / "flow") if args.prefect else None
    med = {stage: statistics.median(values) for stage, values in rounds.items()}
    n = sum(len(s) for s, _ in read)
    print(f"model {args.model} ({model.arch}), layer {config.layers_of(model)[0]}, methods {args.methods}, "
          f"{model.input_size} px, {n} images in batches of {args.batch_size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; medians of {args.repeats} interleaved rounds")
    audit = med["audit"] + (max(prefect - med["audit"], 0.0) if prefect else 0.0)
    for stage in (*STAGES, "prefect"):
        seconds = (max(prefect - med["audit"], 0.0) if prefect else None) if stage == "prefect" else med[stage]
        if seconds is None:
            print(f"  {stage:<11} not measured (--prefect)")
        else:
            print(f"  {stage:<11}{seconds:8.3f} s {100 * seconds / audit:5.1f}%")
    if "scores (score_masks)" in med and "scores (per mask kind)" in med:
        print(f"  scores as called now (mask_scores per kind): {med['scores (per mask kind)']:.3f} s; "
              f"one score_masks call: {med['scores (score_masks)']:.3f} s (equal results)")
    print(f"audit {med['audit']:.3f} s ({n / med['audit']:.1f} img/s); engine only {med['engine_only']:.3f} s "
          f"({n / med['engine_only']:.1f} img/s); forward only {med['forward_only']:.3f} s "
          f"({n / med['forward_only']:.1f} img/s)")
    print(f"ratios of the medians above: forward only / audit {med['forward_only'] / med['audit']:.3f}, engine only / "
          f"audit {med['engine_only'] / med['audit']:.3f}, scores / engine only {med['scores'] / med['engine_only']:.3f}; "
          f"below: medians of the {len(rounds['ratio engine'])} per-batch ratios (each batch's timings back to back)")
    print(f"audit_vs_forward_only: {med['ratio forward']:.3f}")
    print(f"audit_vs_engine_only: {med['ratio engine']:.3f}")
    print(f"scores_share_of_engine: {med['ratio scores']:.3f}")


if __name__ == "__main__":
    main()
