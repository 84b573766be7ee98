"""Tasks of the audit flow. Each wraps one core function; none holds logic of its own beyond logging.

Inputs are datasets, models and tensors passed in-process, so caching by input hash is off (``NO_CACHE``):
hashing a model or a batch would cost more than the work.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from segaudit.audit import AuditConfig, BatchRows, Explained, explain_batch, score_batch
from segaudit.classmap import ClassMap, build_class_map
from segaudit.models import LoadedModel, load_model
from segaudit.readers import SegmentationDataset, open_dataset, read_samples
from segaudit.run import write_run_rows
from segaudit.sample import ErrorRow, ImageRef, Sample


@task(name="open-dataset", cache_policy=NO_CACHE)
def open_dataset_task(path: str, split: str | None, image_root: str | None) -> SegmentationDataset:
    dataset = open_dataset(path, split=split, image_root=image_root)
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
        logger.warning("dataset classes unknown to the model (ignored): %s", ", ".join(class_map.unmapped))
    return model, class_map


@task(name="read-batch", cache_policy=NO_CACHE)
def read_batch_task(dataset: SegmentationDataset, refs: list[ImageRef]) -> tuple[list[Sample], list[ErrorRow]]:
    return read_samples(dataset, refs)


@task(name="explain-batch", cache_policy=NO_CACHE)
def explain_batch_task(
    samples: list[Sample], read_errors: list[ErrorRow], model: LoadedModel, class_map: ClassMap, config: AuditConfig
) -> Explained:
    return explain_batch(samples, model, class_map, config, read_errors)


@task(name="score-batch", cache_policy=NO_CACHE)
def score_batch_task(explained: Explained, model: LoadedModel, config: AuditConfig) -> BatchRows:
    return score_batch(explained, model, config)


@task(name="write-run", cache_policy=NO_CACHE)
def write_run_task(rows: BatchRows, run_dir: str, meta: dict[str, Any]) -> str:
    counts = write_run_rows(rows, run_dir, meta)
    get_run_logger().info("wrote %s to %s", ", ".join(f"{n} {k}" for k, n in counts.items()), run_dir)
    return str(run_dir)


@task(name="render-report", cache_policy=NO_CACHE)
def render_report_task(run_dir: str) -> str:
    from reports import render_report

    return str(render_report(run_dir))
