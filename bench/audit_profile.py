"""Where a whole audit's time goes, stage by stage, against the CAM engine alone and forward-only inference.

    python bench/audit_profile.py [--model demo] [--weights none] [--size 320] [--layers L] [--methods gradcam,gradcampp]
                                  [--data DIR] [--images 96] [--batch-size 16] [--repeats 3] [--prefect]
                                  [--evidence none|sampled|full]

The audit core without Prefect (``read_samples`` -> ``explain_batch`` -> ``score_batch`` -> writing the
shard's tables), on the demo data (generated into ``--data`` if absent; a torchvision model reads its
classes through a demo-to-VOC mapping). Each round times, batch by batch and back to back on the same
images: plain inference (``model(images)`` under ``inference_mode``, inputs prepared beforehand), the
engine alone (``explain_batch`` on samples read beforehand) and the audit at evidence level ``none`` (and
at ``--evidence`` and ``sampled`` once the evidence stages exist). Inside the audit the stages are timed by
wrapping the functions the auditor calls: the model's forward (module hooks), the backwards
(``torch.autograd.grad``), the maps (the rest of ``explain_batch``: input preparation, targets, methods),
the map-vs-mask scores (``score_masks``; ``mask_scores`` per mask kind in an older checkout), instances
(``instance_scores``), thumbnails, the evidence stages where importable (faithfulness
``segaudit.auditors.faithfulness_rows``, context and class templates ``segaudit.auditors.context_rows``,
patched by name through getattr, so the profile runs before and after they land), the rest of
``score_batch`` (label quality, rows) and writing (``write_shard``).

A warm-up batch (forward, explain, scores) runs first, outside the rounds; its scores' time is printed (a
process's first scores load the compiled loops). Medians over ``--repeats`` rounds. ``--prefect`` also runs
the Prefect flow on the same images once (report off) and counts its wall time beyond the audit's as the
Prefect stage (with aggregation). The machine's speed drifts within seconds (it is shared), so the final
ratios are medians of per-batch ratios (each batch timed back to back), and the load average is printed. Ends
with ``audit_vs_forward_only: X`` (audit throughput / forward-only throughput), ``audit_vs_engine_only: Y``
and ``scores_share_of_engine: Z`` (scores time / engine time), all at evidence ``none`` (issue 19: scores and
tables vs the engine), and ``audit_vs_engine_only_sampled`` (the default evidence level) once the evidence
stages exist.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
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
#: The evidence stages (issues 16-18), timed where they are importable: stage -> (module, function names). The
#: functions are patched where the segmentation auditor looks them up and in their own module.
EVIDENCE_STAGES = {
    "faithfulness": ("segaudit.auditors.faithfulness_rows", ("faithfulness_rows", "add_faithfulness_rows")),
    "context": ("segaudit.auditors.context_rows", ("context_rows", "add_context_rows")),
    "class templates": ("segaudit.auditors.context_rows", ("class_template_rows",)),
}


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def evidence_patches(clock: Clock) -> dict[tuple[object, str], object]:
    """Timing wrappers of the evidence stages that exist (none before those modules land)."""
    patches = {}
    for stage, (module_name, names) in EVIDENCE_STAGES.items():
        module = _module(module_name)
        for owner in (module, segmentation_module) if module is not None else ():
            for name in names:
                if getattr(owner, name, None) is not None:
                    patches[(owner, name)] = clock.wrap(stage, getattr(owner, name))
    return patches


def evidence_stages_present() -> list[str]:
    """The evidence stages whose functions exist."""
    return [stage for stage, (module_name, names) in EVIDENCE_STAGES.items()
            if any(getattr(_module(module_name), name, None) is not None for name in names)]


class Clock:
    """Seconds per stage of the current round (and per batch, once the round is done)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.per_batch: list[dict[str, float]] = []
        self.inside: list[str] = []  # the wrapped stages running now (a nested call counts once, outermost)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start

    def in_evidence(self) -> bool:
        """Whether an evidence stage runs now (its forwards and backwards are its own, not the engine's)."""
        return any(stage in EVIDENCE_STAGES for stage in self.inside)

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            if stage in self.inside or (stage == "backwards" and self.in_evidence()):
                return fn(*args, **kwargs)
            self.inside.append(stage)
            try:
                with self(stage):
                    return fn(*args, **kwargs)
            finally:
                self.inside.pop()
        return timed

    def forward_done(self, start: float) -> None:
        """Count a forward of the model that started at ``start``, unless an evidence stage ran it."""
        if not self.in_evidence():
            self.seconds["forward"] += time.perf_counter() - start


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k].nan_to_num(-7.0), b[k].nan_to_num(-7.0)) for k in a)


def _instrument(clock: Clock, module: torch.nn.Module) -> contextlib.ExitStack:
    """Time the stages inside ``explain_batch`` / ``score_batch`` while the returned stack is open."""
    stack = contextlib.ExitStack()
    starts: list[float] = []
    pre = module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
    post = module.register_forward_hook(lambda *_: clock.forward_done(starts.pop()))
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
    patches.update(evidence_patches(clock))
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


def _round(batches, read, inputs, dataset, model, class_map, configs, out_dir: Path) -> dict[str, Clock]:
    """One round, batch by batch: forward only, the engine alone and the audit of each batch at each
    evidence level of ``configs`` back to back (so all see the same machine), then writing each level's
    tables. Returns a clock per level; the engine and forward-only timings are on every clock."""
    clocks = {level: Clock() for level in configs}
    rows = {level: batch_module.BatchRows() for level in configs}
    per_batch: dict[str, list] = {level: [] for level in configs}
    engine_config = configs["none"]
    for refs, (samples, errors), images in zip(batches, read, inputs, strict=True):
        start = time.perf_counter()
        with torch.inference_mode():
            model.module(images)
        forward_only = time.perf_counter() - start
        start = time.perf_counter()
        explain_batch(samples, model, class_map, engine_config, errors)
        engine_only = time.perf_counter() - start
        for level, config in configs.items():
            clock = clocks[level]
            before = dict(clock.seconds)
            clock.seconds["forward_only"] += forward_only
            clock.seconds["engine_only"] += engine_only
            with _instrument(clock, model.module):
                with clock("read"):
                    fresh, fresh_errors = read_samples(dataset, refs)
                with clock("explain"):
                    explained = explain_batch(fresh, model, class_map, config, fresh_errors)
                with clock("score_batch"):
                    rows[level].extend(score_batch(explained, model, config))
            per_batch[level].append({k: v - before.get(k, 0.0) for k, v in clock.seconds.items()})
    for level, clock in clocks.items():
        with clock("writing"):
            write_shard(out_dir / level, "shard-0", {t: getattr(rows[level], t) for t in SHARD_TABLES}, {})
        _derive(clock, per_batch[level])
    return clocks


def _derive(clock: Clock, per_batch: list[dict[str, float]]) -> None:
    """The derived stages (maps, rows, scores, the audit's total) of the round and of each batch."""
    for s in (clock.seconds, *per_batch):
        s["score_batch"] -= s.get("bench's own work", 0.0)
        s["maps"] = s["explain"] - s["forward"] - s["backwards"]
        called = s.get("scores (per mask kind)", 0.0) or s.get("scores (score_masks)", 0.0)
        evidence = sum(s.get(stage, 0.0) for stage in EVIDENCE_STAGES)
        s["rows"] = s["score_batch"] - called - s["instances"] - s["thumbnails"] - evidence
        s["scores"] = s.get("scores (score_masks)", called)
        s["audit"] = (s["read"] + s["explain"] + s["score_batch"] - called + s["scores"]
                      + clock.seconds["writing"] / len(per_batch))
    clock.per_batch = per_batch


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
    parser.add_argument("--evidence", choices=("none", "sampled", "full"), default="none",
                        help="evidence level of the stage table (the ratio keys are always measured at 'none'; "
                             "'sampled' is added as audit_vs_engine_only_sampled once the evidence stages exist)")
    args = parser.parse_args()
    weights = None if args.weights.lower() == "none" else args.weights
    stages = evidence_stages_present()
    levels = ["none"] + [level for level in dict.fromkeys((args.evidence, "sampled")) if level != "none" and stages]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        data = ensure_demo_data(args.data or Path(tmp) / "data")
        dataset = open_dataset(data / "annotations" / "instances_val.json")
        model = _model(args.model, weights, args.size)
        mapping = None if args.model.startswith("demo") else VOC_MAPPING
        class_map = build_class_map(dataset.category_names, model.class_names, mapping)
        configs = {level: AuditConfig(methods=tuple(args.methods.split(",")), batch_size=args.batch_size,
                                      layers=tuple(filter(None, args.layers.split(","))), evidence=level)
                   for level in levels}
        config = configs["none"]
        batches = plan_batches(dataset.refs()[: args.images], args.batch_size)
        read = [read_samples(dataset, refs) for refs in batches]
        inputs = [prepare_batch(s, class_map, model.input_size, model.mean, model.std).images.to(model.device)
                  for s, _ in read]

        with torch.inference_mode():  # warm-up
            model.module(inputs[0])
        explained = explain_batch(read[0][0], model, class_map, config, read[0][1])
        started = time.perf_counter()  # the first scores of a process load the compiled loops (numba's cache)
        score_batch(explained, model, config)
        first_scores = time.perf_counter() - started
        rounds = {level: defaultdict(list) for level in levels}
        for r in range(args.repeats):
            clocks = _round(batches, read, inputs, dataset, model, class_map, configs, Path(tmp) / f"run{r}")
            for level, clock in clocks.items():
                for stage, seconds in clock.seconds.items():
                    rounds[level][stage].append(seconds)
                for b in clock.per_batch:  # ratios of each batch's back-to-back timings
                    rounds[level]["ratio forward"].append(b["forward_only"] / b["audit"])
                    rounds[level]["ratio engine"].append(b["engine_only"] / b["audit"])
                    rounds[level]["ratio scores"].append(b["scores"] / b["engine_only"])
        prefect = _prefect_seconds(args, data, weights, Path(tmp) / "flow") if args.prefect else None
    n = sum(len(s) for s, _ in read)
    print(f"model {args.model} ({model.arch}), layer {config.layers_of(model)[0]}, methods {args.methods}, "
          f"{model.input_size} px, {n} images in batches of {args.batch_size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; medians of {args.repeats} interleaved rounds; load average "
          f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after (a shared machine: other processes run too)")
    print(f"warm-up (not in the rounds): the first batch's scores took {first_scores:.2f} s (once per process: "
          f"imports, compiled loops read from numba's cache or compiled)")
    shown = args.evidence if args.evidence in rounds else "none"
    _print_stages({stage: statistics.median(v) for stage, v in rounds[shown].items()}, shown, stages, prefect, n)
    med = {stage: statistics.median(values) for stage, values in rounds["none"].items()}
    print(f"audit_vs_forward_only: {med['ratio forward']:.3f}")
    print(f"audit_vs_engine_only: {med['ratio engine']:.3f}")
    print(f"scores_share_of_engine: {med['ratio scores']:.3f}")
    if "sampled" in rounds:
        print(f"audit_vs_engine_only_sampled: {statistics.median(rounds['sampled']['ratio engine']):.3f}")


def _print_stages(med: dict[str, float], level: str, stages: list[str], prefect: float | None, n: int) -> None:
    """The stage table of the audit at evidence ``level`` (medians) and the ratios of its medians."""
    audit = med["audit"] + (max(prefect - med["audit"], 0.0) if prefect else 0.0)
    print(f"stages of the audit at evidence level {level!r} (evidence stages present: {', '.join(stages) or 'none'})")
    for stage in (*STAGES[:-2], *stages, *STAGES[-2:], "prefect"):
        seconds = (max(prefect - med["audit"], 0.0) if prefect else None) if stage == "prefect" else med.get(stage, 0.0)
        if seconds is None:
            print(f"  {stage:<15} not measured (--prefect)")
        else:
            print(f"  {stage:<15}{seconds:8.3f} s {100 * seconds / audit:5.1f}%")
    if "scores (score_masks)" in med and "scores (per mask kind)" in med:
        print(f"  scores as called now (mask_scores per kind): {med['scores (per mask kind)']:.3f} s; "
              f"one score_masks call: {med['scores (score_masks)']:.3f} s (equal results)")
    print(f"audit {med['audit']:.3f} s ({n / med['audit']:.1f} img/s); engine only {med['engine_only']:.3f} s "
          f"({n / med['engine_only']:.1f} img/s); forward only {med['forward_only']:.3f} s "
          f"({n / med['forward_only']:.1f} img/s)")
    print(f"ratios of the medians above: forward only / audit {med['forward_only'] / med['audit']:.3f}, engine only / "
          f"audit {med['engine_only'] / med['audit']:.3f}, scores / engine only {med['scores'] / med['engine_only']:.3f}; "
          f"the keys below: medians of the per-batch ratios (each batch's timings back to back) at evidence 'none'")


if __name__ == "__main__":
    main()
