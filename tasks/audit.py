"""Tasks of the audit flows. Each wraps one core function; none holds logic of its own beyond logging.

Inputs are datasets, models and tensors passed in-process, so caching by input hash is off (``NO_CACHE``):
hashing a model or a batch would cost more than the work. Resumption does not need Prefect's cache: a
shard's completion marker on storage says it is done (:mod:`segaudit.runs.run`).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from segaudit.console import name_sample
from segaudit.data.classmap import ClassMap, build_class_map
from segaudit.data.download import DATA_CACHE, materialize
from segaudit.data.readers import SegmentationDataset, open_dataset
from segaudit.data.sample import ErrorRow, ImageRef
from segaudit.models.registry import LoadedModel, load_model
from segaudit.runs.run import aggregate_run, record_prepass, start_run, write_shard_rows
from segaudit.runs.shards import Shard, process_shard
from segaudit.settings import AuditConfig

#: Failures worth another try of a shard: I/O (storage, network file systems, object stores), timeouts.
#: Anything else (a bug, a configuration error) fails the same way again, so it is not retried. This is
#: the only retry of the audit's failure policy (:mod:`segaudit.auditors.failures`).
TRANSIENT_ERRORS = (OSError, TimeoutError, ConnectionError)


def _is_transient(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's retry_condition_fn signature
    try:
        state.result()
    except TRANSIENT_ERRORS:
        return True
    except BaseException:  # noqa: BLE001 - any other failure is final
        return False
    return False


@task(name="open-dataset", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=_is_transient)
def open_dataset_task(path: str, split: str | None, image_root: str | None,
                      cache: str = DATA_CACHE) -> SegmentationDataset:
    """Open a dataset; a dataset (or image root) at an fsspec URL is first copied to ``cache``."""
    dataset = open_dataset(materialize(path, cache), split=split,
                           image_root=materialize(image_root, cache) if image_root else None)
    get_run_logger().info("%s dataset %s: %d images", dataset.kind, path, len(dataset.refs()))
    return dataset


@task(name="load-model", cache_policy=NO_CACHE)
def load_model_task(
    spec: str, weights: str | None, device: str, dataset_names: tuple[str, ...], mapping: dict[str, str] | None
) -> tuple[LoadedModel, ClassMap]:
    model = load_model(spec, weights=weights, device=device)
    class_map = build_class_map(dataset_names, model.class_names, mapping)
    logger = get_run_logger()
    logger.info("model %s (%s), %d classes, sha256 %s", model.name, model.arch, model.num_classes, model.sha256[:12])
    if class_map.unmapped:
        logger.warning("dataset classes unknown to the model (void; --mapping pairs them): %s",
                       name_sample(class_map.unmapped))
    return model, class_map


@task(name="plan-run", cache_policy=NO_CACHE)
def plan_run_task(run_dir: str, meta: dict[str, Any], refs: list[ImageRef], shard_size: int,
                  inputs: dict[str, Any], resume: bool) -> dict[str, Any]:
    plan = start_run(run_dir, meta, refs, shard_size, inputs, resume)
    get_run_logger().info("run %s (key %s): %d images in %d shards", run_dir, plan["run_key"], len(refs),
                          len(plan["shards"]))
    return plan


@task(name="prepass", cache_policy=NO_CACHE)
def prepass_task(run_dir: str, plan: dict[str, Any], data: SegmentationDataset, refs: list[ImageRef],
                 model: LoadedModel, class_map: ClassMap, config: AuditConfig) -> dict[str, Any]:
    """The run's pre-pass (sanity check, layer calibration: :func:`segaudit.auditors.calibration.run_prepass`)
    once per run, unless the plan already records it (a resumed run) or ``evidence`` is ``"none"``; return
    the plan, updated with its result."""
    from segaudit.auditors.calibration import run_prepass

    if "prepass" in plan or config.evidence == "none":
        return plan
    start = time.perf_counter()
    prepass = run_prepass(data, refs, model, class_map, config)
    logger = get_run_logger()
    for line in prepass.lines:
        (logger.warning if prepass.errors else logger.info)(line)
    logger.info("pre-pass: %d sanity rows, %d faithfulness rows in %.1f s", len(prepass.sanity),
                len(prepass.faithfulness), time.perf_counter() - start)
    return record_prepass(run_dir, plan, prepass)


@task(name="process-shard", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=_is_transient, task_run_name="process-{shard.name}")
def process_shard_task(
    run_dir: str,
    key: str,
    shard: Shard,
    refs: list[ImageRef],
    data: SegmentationDataset,
    model: LoadedModel,
    class_map: ClassMap,
    config: AuditConfig,
    loader_workers: int,
    extra_errors: list[ErrorRow],
    on_batch: Any = None,
) -> dict[str, Any]:
    """Audit one shard and write its parts, then its completion marker; return ``{shard, images, errors,
    seconds}``."""
    start = time.perf_counter()
    rows = process_shard(data, refs, model, class_map, config,
                         loader_workers=loader_workers, extra_errors=extra_errors, on_batch=on_batch)
    seconds = time.perf_counter() - start
    counts = write_shard_rows(run_dir, shard, rows, key, seconds)
    get_run_logger().info("%s: %d images, %d error rows in %.1f s", shard.name, counts["images"], counts["errors"],
                          seconds)
    return {"shard": shard.name, "images": len(shard.image_ids), "errors": counts["errors"], "seconds": seconds}


@task(name="aggregate-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=_is_transient)
def aggregate_task(run_dir: str) -> dict[str, int]:
    counts = aggregate_run(run_dir)
    get_run_logger().info("aggregated %s: %s", run_dir, ", ".join(f"{n} {k}" for k, n in counts.items()))
    return counts


@task(name="render-report", cache_policy=NO_CACHE)
def render_report_task(run_dir: str) -> str:
    from segaudit.reports import render_report

    return str(render_report(run_dir))
