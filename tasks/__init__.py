"""Prefect tasks: thin wrappers of segaudit's core functions, one batch per task run."""

from tasks.audit import (
    explain_batch_task,
    load_model_task,
    open_dataset_task,
    read_batch_task,
    render_report_task,
    score_batch_task,
    write_run_task,
)

__all__ = [
    "explain_batch_task",
    "load_model_task",
    "open_dataset_task",
    "read_batch_task",
    "render_report_task",
    "score_batch_task",
    "write_run_task",
]
