"""The ``audit`` flow: read -> explain (model + CAMs) -> score, batch by batch; write the tables; report.

Runs with no Prefect server configured (Prefect starts a temporary local one).
"""

from __future__ import annotations

from prefect import flow

from segaudit.audit import AuditConfig
from segaudit.cam import METHODS
from segaudit.run import dataset_error_rows, plan_batches, run_directory, run_metadata
from tasks import (
    explain_batch_task,
    load_model_task,
    open_dataset_task,
    read_batch_task,
    render_report_task,
    score_batch_task,
    write_run_task,
)


@flow(name="audit", log_prints=True)
def audit(
    dataset: str,
    model: str = "demo",
    split: str | None = None,
    image_root: str | None = None,
    weights: str | None = "DEFAULT",
    layers: list[str] | None = None,
    methods: list[str] = list(METHODS),  # noqa: B006 - Prefect parameters must be JSON, not tuples
    target: str = "pred",
    score: str = "logits",
    roi: list[float] | None = None,
    score_cam_channels: int | None = None,
    amp: bool = False,
    batch_size: int = 16,
    mapping: dict[str, str] | None = None,
    device: str = "cpu",
    out: str = "runs",
    run_id: str | None = None,
    limit: int | None = None,
    report: bool = True,
) -> str:
    """Audit a COCO or VOC dataset with a segmentation model; return the run folder."""
    config = AuditConfig(
        methods=tuple(methods), layers=tuple(layers or ()), target=target, score=score,
        roi=tuple(roi) if roi else None, score_cam_channels=score_cam_channels, amp=amp,
        batch_size=batch_size,
    )
    data = open_dataset_task(dataset, split, image_root)
    loaded, class_map = load_model_task(model, weights, device, data.category_names, mapping)
    meta = run_metadata(
        data, loaded, config, dataset_path=dataset, split=split, weights=weights, mapping=mapping, limit=limit
    )
    refs = data.refs()[:limit] if limit else data.refs()
    rows = dataset_error_rows(data)
    for batch_refs in plan_batches(refs, batch_size):
        samples, read_errors = read_batch_task(data, batch_refs)
        explained = explain_batch_task(samples, read_errors, loaded, class_map, config)
        rows.extend(score_batch_task(explained, loaded, config))
    run_dir = write_run_task(rows, str(run_directory(out, run_id, meta)), meta)
    if report:
        render_report_task(run_dir)
    return run_dir
