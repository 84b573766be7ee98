"""The audit flows.

``audit``         plan (images -> shards) -> process the shards, here or fanned out to a work pool ->
                  aggregate (ranks, findings) -> report -> artifacts
``audit_shards``  a worker's share of a fanned-out run: the given shards of a planned run
``pull_data``     download and verify public datasets into a data root (when absent)

Both run with no Prefect server configured (Prefect starts a temporary local one).
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from segaudit.tasks import (
    ShardProgress,
    aggregate_task,
    download_dataset_task,
    load_model_task,
    open_dataset_task,
    plan_run_task,
    prepass_task,
    process_shard_task,
    publish_summary_task,
    render_report_task,
)
from segaudit.tasks.report import report_artifact_task

from segaudit.data.classmap import ClassMap
from segaudit.data.readers import SegmentationDataset
from segaudit.models.registry import LoadedModel
from segaudit.runs.run import (
    audit_config_from_json,
    pending_shards,
    planned_config,
    resume_message,
    run_directory,
    run_metadata,
)
from segaudit.runs.shards import Shard, shard_refs
from segaudit.runs.tables import read_plan, shard_markers
from segaudit.settings import AuditConfig, RunSettings, flow_parameter_docs, flow_signature, validate


def audit(**params: Any) -> str:
    """Audit a COCO or VOC dataset with a segmentation model; return the run folder (path or URL).

    ``findings`` overrides thresholds of :class:`segaudit.findings.rules.FindingRules` by name, e.g.
    ``{"label_quality": 0.3}``; ``prompts`` turns on CAM-prompted segmentation ("grabcut" or "sam").

    Scale: the images are cut into shards of ``shard_size``; each shard is one task (``loader_workers``
    processes read images ahead of the model; at most ``concurrency`` shards at a time, each with its own
    copy of the model) that writes its part of every table to ``out`` (a folder or an fsspec URL). A
    rerun with the same data, model and settings (``resume``) skips the shards already written. With
    ``deployment`` (e.g. ``"audit-shards/shard"``), the shards go to that deployment's work pool as
    ``child_runs`` flow runs (default: one per shard) on ``device``, and this flow waits, then
    aggregates and reports.

    The parameters are the fields of :class:`segaudit.settings.RunSettings` and
    :class:`segaudit.settings.AuditConfig`, with their defaults (:func:`segaudit.settings.flow_signature`).
    """
    settings = RunSettings.from_params(params)
    config = settings.config
    dataset, split, image_root, model = settings.dataset, settings.split, settings.image_root, settings.model
    weights, mapping, deployment, device = settings.weights, settings.mapping, settings.deployment, settings.device
    data = open_dataset_task(dataset, split, image_root)
    # a fanning-out parent only needs the model's identity; its workers load it on their devices
    loaded, class_map = load_model_task(model, weights, "cpu" if deployment else device, data.category_names, mapping)
    validate(settings, loaded)  # once per audit, before any image is read
    meta = run_metadata(
        data, loaded, config, dataset_path=dataset, split=split, weights=weights, mapping=mapping, limit=settings.limit
    )
    refs = data.refs()[:settings.limit] if settings.limit else data.refs()
    run_dir = run_directory(settings.out, settings.run_id, meta)
    inputs = {"dataset": dataset, "split": split, "image_root": image_root, "model": model, "weights": weights,
              "mapping": mapping}
    plan = plan_run_task(run_dir, meta, refs, settings.shard_size, inputs, settings.resume)
    # once per run, before the shards: the sanity check and, without user layers, the layer choice
    plan = prepass_task(run_dir, plan, data, refs, loaded, class_map, config)
    config = planned_config(config, plan)
    todo = pending_shards(run_dir, plan)
    if resume_message(plan, todo):  # issue 15: a resumed run says so (a warning, so that the CLI shows it)
        get_run_logger().warning(resume_message(plan, todo))
    tracker = ShardProgress(plan, todo)
    if deployment:
        _fan_out(deployment, run_dir, plan, todo, settings.child_runs, device, settings.loader_workers,
                 settings.concurrency, tracker, settings.poll_seconds)
    else:
        _process_here(run_dir, plan, todo, data, loaded, class_map, config, settings.loader_workers,
                      settings.concurrency, tracker)
    aggregate_task(run_dir)
    if settings.report:
        report_artifact_task(render_report_task(run_dir))
    publish_summary_task(run_dir, settings.report)
    return run_dir


# the parameters, their defaults and help come from the settings' one declaration (segaudit.settings)
audit.__signature__ = flow_signature()
audit.__annotations__ = {**{p.name: p.annotation for p in audit.__signature__.parameters.values()}, "return": str}
audit.__doc__ = f"{audit.__doc__.rstrip()}\n\n    {flow_parameter_docs().replace(chr(10), chr(10) + '    ')}\n"
audit = flow(name="audit", log_prints=True)(audit)


@flow(name="audit-shards", log_prints=True)
def audit_shards(
    run_dir: str,
    shards: list[str] | None = None,
    device: str = "cpu",
    loader_workers: int = 0,
    concurrency: int = 1,
) -> list[str]:
    """Process ``shards`` (default: all not yet complete) of the run planned in ``run_dir``, on ``device``;
    return the names of the shards written. Everything else (data, model, settings) comes from the run's
    plan, so any worker that can read the data and write to ``run_dir`` can take a share.
    """
    plan = read_plan(run_dir)
    if plan is None:
        raise FileNotFoundError(f"{run_dir} has no run plan (run.json); start the run with the audit flow")
    inputs, meta = plan["inputs"], plan["run"]
    data = open_dataset_task(inputs["dataset"], inputs["split"], inputs["image_root"])
    loaded, class_map = load_model_task(inputs["model"], inputs["weights"], device, data.category_names,
                                        inputs["mapping"])
    if loaded.sha256 != meta["model_sha256"]:
        raise ValueError(f"the model {inputs['model']!r} on this worker has sha256 {loaded.sha256[:12]}, the run "
                         f"was planned with {meta['model_sha256'][:12]}: give workers the same weights")
    if data.fingerprint() != meta["dataset_fingerprint"]:
        raise ValueError(f"the dataset {inputs['dataset']} on this worker differs from the planned run's "
                         "(fingerprint): give workers the same data")
    wanted = set(shards) if shards is not None else None
    todo = [s for s in pending_shards(run_dir, plan) if wanted is None or s.name in wanted]
    tracker = ShardProgress(plan, todo, own_share=True)  # this child's images, not the run's
    config = planned_config(audit_config_from_json(meta["config_json"]), plan)  # the pre-pass's layer
    _process_here(run_dir, plan, todo, data, loaded, class_map, config, loader_workers, concurrency, tracker)
    return [s.name for s in todo]


@flow(name="pull-data", log_prints=True)
def pull_data(root: str = "data", datasets: list[str] = ["coco2017-val", "voc2012"]) -> dict[str, str]:  # noqa: B006
    """Download, verify (MD5) and unpack ``datasets`` (keys of :data:`segaudit.data.download.DATASETS`:
    ``coco2017-val``, ``coco2017-train``, ``voc2012``) under ``root``, skipping those already there, one
    retried task each; return where each is."""
    futures = {name: download_dataset_task.submit(name, root) for name in datasets}
    return {name: future.result() for name, future in futures.items()}


def _process_here(
    run_dir: str,
    plan: dict[str, Any],
    shards: list[Shard],
    data: SegmentationDataset,
    loaded: LoadedModel,
    class_map: ClassMap,
    config: AuditConfig,
    loader_workers: int,
    concurrency: int,
    tracker: ShardProgress,
) -> None:
    """Run a task per shard, at most ``concurrency`` at a time, each on its own copy of the model (the CAM
    hooks of one shard must not see another's forward). A shard that fails (after its retries) does not
    stop the others; the flow fails at the end naming it, and a rerun resumes it."""
    refs_by_id = {ref.image_id: ref for ref in data.refs()}
    first = plan["shards"][0]["name"]
    free = [loaded] + [replace(loaded, module=copy.deepcopy(loaded.module)) for _ in range(1, max(1, concurrency))]
    queue, running, failed = list(shards), {}, []
    while queue or running:
        while queue and free:
            shard, replica = queue.pop(0), free.pop()
            dataset_errors = list(data.load_errors) if shard.name == first else []
            future = process_shard_task.submit(run_dir, plan["run_key"], shard, shard_refs(refs_by_id, shard), data,
                                               replica, class_map, config, loader_workers, dataset_errors,
                                               tracker.on_batch)
            running[future] = (shard, replica)
        future = next(as_completed(list(running)))
        shard, replica = running.pop(future)
        free.append(replica)
        future.wait()  # records the final state on the future (its .state would ask the API)
        if future.state.is_completed():
            tracker.shard_done(future.result())
        else:
            failed.append(f"{shard.name} ({future.state.message})")
    if failed:
        raise RuntimeError(f"{len(failed)} shard(s) failed: {'; '.join(failed[:3])}; the other shards are written, "
                           "run the same audit again to resume")


def _fan_out(
    deployment: str,
    run_dir: str,
    plan: dict[str, Any],
    shards: list[Shard],
    child_runs: int | None,
    device: str,
    loader_workers: int,
    concurrency: int,
    tracker: ShardProgress,
    poll_seconds: float,
) -> None:
    """Create flow runs of ``deployment`` (the ``audit_shards`` flow) for the shards, dealt round-robin into
    ``child_runs`` groups; wait for all of them, following the shards' completion markers."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    if not shards:
        return
    n = max(1, min(len(shards), child_runs or len(shards)))
    groups = [shards[i::n] for i in range(n)]
    runs = [
        run_deployment(deployment, timeout=0, flow_run_name=f"{plan['run']['run_id']}-{k}",
                       parameters={"run_dir": run_dir, "shards": [s.name for s in group], "device": device,
                                   "loader_workers": loader_workers, "concurrency": concurrency})
        for k, group in enumerate(groups)
    ]
    sizes = {s["name"]: len(s["image_ids"]) for s in plan["shards"]}
    waiting, failed = {run.id for run in runs}, []
    with get_client(sync_client=True) as client:
        while waiting:
            time.sleep(poll_seconds)
            for run_id in list(waiting):
                state = client.read_flow_run(run_id).state
                if state is not None and state.is_final():
                    waiting.discard(run_id)
                    if not state.is_completed():
                        failed.append(f"{run_id} {state.name}: {state.message}")
            done = [name for name, marker in shard_markers(run_dir).items()
                    if marker.get("run_key") == plan["run_key"] and name in sizes]
            tracker.sync(sum(sizes[name] for name in done), len(done))
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(runs)} shard runs did not complete ({'; '.join(failed[:3])}); the "
                           "shards they wrote are kept: run the audit again to resume the rest")
