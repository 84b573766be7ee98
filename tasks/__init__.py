"""Prefect tasks: thin wrappers of segaudit's core functions (one shard per task run), and the run's
artifacts."""

from segaudit.tasks.artifacts import ShardProgress, artifact_key, publish_summary_task
from segaudit.tasks.audit import (
    aggregate_task,
    load_model_task,
    open_dataset_task,
    plan_run_task,
    prepass_task,
    process_shard_task,
    render_report_task,
)
from segaudit.tasks.data import download_dataset_task

__all__ = [
    "ShardProgress",
    "aggregate_task",
    "artifact_key",
    "download_dataset_task",
    "load_model_task",
    "open_dataset_task",
    "plan_run_task",
    "prepass_task",
    "process_shard_task",
    "publish_summary_task",
    "render_report_task",
]
